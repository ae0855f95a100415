//! Integration tests: the local stack itself (scripts/start-stack; docs/stack.md).
//!
//! Smoke tests of the real servers the other tests run on: the tansu broker
//! does exactly-once transactions for librdkafka (rdkafka) and hides an open
//! transaction from `read_committed` readers; garage stores and returns
//! objects path-style and checks SigV4 (a wrong secret is refused). Every test
//! uses topics / keys of its own, so they run in parallel.
//!
//! The restart tests stop and start SHARED servers (scripts/stack-ctl), which
//! would break tests running beside them: they are `#[ignore]`d and
//! scripts/test runs them afterwards on their own, one at a time
//! (`cargo test --test it -- --ignored --test-threads=1`).

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use rdkafka::producer::{FutureRecord, Producer};

use crate::support::*;

const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn values(records: &[StackRecord]) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_transaction_commits_and_reads_back_with_read_committed() {
    let brokers = stack_kafka_brokers();
    let topic = unique("stack-smoke-tx");
    stack_create_topic(&brokers, &topic, 3).await;

    let records: Vec<(i32, String, Vec<u8>)> =
        (0..3).map(|p| (p, format!("key-{p}"), format!("value-{p}-{}", unique("v")).into_bytes())).collect();
    let refs: Vec<(i32, &str, &[u8])> =
        records.iter().map(|(p, k, v)| (*p, k.as_str(), v.as_slice())).collect();
    stack_produce_committed(&brokers, &topic, &refs).await;

    let (b, t) = (brokers.clone(), topic.clone());
    let got =
        tokio::task::spawn_blocking(move || stack_read_committed(&b, &t, 3, 3, READ_TIMEOUT)).await.unwrap();
    assert_eq!(got.len(), 3, "exactly the three committed records, got {got:?}");
    for (p, k, v) in &records {
        let r = got
            .iter()
            .find(|r| r.partition == *p)
            .unwrap_or_else(|| panic!("nothing read from partition {p}"));
        assert_eq!(r.key.as_deref(), Some(k.as_bytes()));
        assert_eq!(&r.value, v);
    }
}

/// tansu hides the records of a transaction that is still OPEN from
/// `read_committed` readers and shows them once it commits. (It does NOT hide
/// records of an ABORTED transaction, DESIGN.md §9: tests of that property use
/// rdkafka's MockCluster instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_open_transaction_is_invisible_until_commit() {
    let brokers = stack_kafka_brokers();
    let topic = unique("stack-smoke-open-tx");
    stack_create_topic(&brokers, &topic, 1).await;

    let producer = stack_transactional_producer(&brokers);
    producer.begin_transaction().expect("begin_transaction");
    producer
        .send(FutureRecord::to(&topic).partition(0).key("k").payload("pending"), Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("send: {e}"));

    // Delivered (in the log) but not committed: a read_committed reader that
    // reaches the end of the partition must have seen nothing.
    let (b, t) = (brokers.clone(), topic.clone());
    let before =
        tokio::task::spawn_blocking(move || stack_read_committed(&b, &t, 1, 0, Duration::from_secs(5)))
            .await
            .unwrap();
    assert!(before.is_empty(), "an open transaction's record was visible to read_committed: {before:?}");

    producer.commit_transaction(Duration::from_secs(30)).expect("commit_transaction");
    let (b, t) = (brokers.clone(), topic.clone());
    let after =
        tokio::task::spawn_blocking(move || stack_read_committed(&b, &t, 1, 1, READ_TIMEOUT)).await.unwrap();
    assert_eq!(values(&after), vec![b"pending".to_vec()]);
}

#[tokio::test]
async fn s3_put_get_list_path_style() {
    let s3 = stack_s3_client();
    let bucket = stack_s3_bucket();
    let prefix = unique("stack-smoke");
    let key = format!("{prefix}/dt=2026-11-28/hour=11/object.json");
    let body = format!(r#"{{"hello":"{prefix}"}}"#);

    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .content_type("application/json")
        .body(ByteStream::from(body.clone().into_bytes()))
        .send()
        .await
        .expect("PutObject");

    let got = s3.get_object().bucket(&bucket).key(&key).send().await.expect("GetObject");
    assert_eq!(got.content_type(), Some("application/json"));
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(bytes.as_ref(), body.as_bytes());

    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("{prefix}/"))
        .send()
        .await
        .expect("ListObjectsV2");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec![key.as_str()]);

    // A key that does not exist is a NoSuchKey, not an empty body.
    let missing = s3.get_object().bucket(&bucket).key(format!("{prefix}/missing")).send().await;
    let err = missing.expect_err("GetObject of a missing key must fail");
    assert_eq!(err.code(), Some("NoSuchKey"), "{err:?}");
}

#[tokio::test]
async fn s3_wrong_secret_is_refused() {
    let bucket = stack_s3_bucket();
    let key = format!("{}/refused.json", unique("stack-smoke-auth"));
    let (key_id, secret) = stack_s3_credentials();
    // Same key id, one character of the secret changed: SigV4 must not match.
    let mut wrong = secret.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();

    let bad = stack_s3_client_with(&key_id, &wrong);
    let put = bad.put_object().bucket(&bucket).key(&key).body(ByteStream::from_static(b"x")).send().await;
    let err = put.expect_err("PutObject with a wrong secret must be refused");
    let code = err.code().unwrap_or_default().to_string();
    assert!(
        matches!(code.as_str(), "AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId"),
        "expected an authentication error, got {code:?}: {err:?}"
    );
    let get = bad.get_object().bucket(&bucket).key("_stack/ready").send().await;
    assert!(get.is_err(), "GetObject with a wrong secret must be refused");

    // Nothing was stored; the right key sees no such object.
    let good = stack_s3_client();
    let head = good.head_object().bucket(&bucket).key(&key).send().await;
    assert!(head.is_err(), "the refused PutObject stored an object");
    // And the right secret works on the same bucket (the refusal was about the secret).
    good.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("PutObject with the right secret");
}

/// Committed Kafka records (durable broker, s3 storage in the kafka-store) and S3
/// objects are still there after the broker and garage are stopped and started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restart: stops shared servers; scripts/test runs it alone (--ignored --test-threads=1)"]
async fn restart_durable_broker_and_s3_keep_committed_data() {
    let brokers = stack_durable_kafka_brokers();
    let s3_endpoint = stack_s3_endpoint();
    let topic = unique("stack-restart");
    stack_create_topic(&brokers, &topic, 2).await;
    stack_produce_committed(&brokers, &topic, &[(0, "a", b"before-0"), (1, "b", b"before-1")]).await;

    let s3 = stack_s3_client();
    let bucket = stack_s3_bucket();
    let key = format!("{}/kept.json", unique("stack-restart"));
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from_static(b"{\"kept\":true}"))
        .send()
        .await
        .expect("PutObject");

    // Down: the durable broker (its records live in the kafka-store, which stays up) and garage.
    // Both ports closed.
    // (Dropping our client first closes its keep-alive connection; garage
    // otherwise waits 10 s for open connections before it exits.)
    drop(s3);
    tokio::task::spawn_blocking(|| {
        stack_ctl("stop", "kafka-durable");
        stack_ctl("stop", "garage");
    })
    .await
    .unwrap();
    assert!(!stack_port_open(&brokers), "durable broker still answers after stop");
    assert!(!stack_port_open(&s3_endpoint), "garage still answers after stop");

    tokio::task::spawn_blocking(|| {
        stack_ctl("start", "garage");
        stack_ctl("start", "kafka-durable");
    })
    .await
    .unwrap();

    // A fresh client (the old one's connections are gone) reads the object back.
    let s3 = stack_s3_client();
    let got = s3.get_object().bucket(&bucket).key(&key).send().await.expect("GetObject after restart");
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"{\"kept\":true}");

    let (b, t) = (brokers.clone(), topic.clone());
    let got =
        tokio::task::spawn_blocking(move || stack_read_committed(&b, &t, 2, 2, READ_TIMEOUT)).await.unwrap();
    assert_eq!(
        values(&got),
        vec![b"before-0".to_vec(), b"before-1".to_vec()],
        "records committed before the restart"
    );

    // And the restarted broker takes new transactions on the same topic.
    stack_produce_committed(&brokers, &topic, &[(0, "c", b"after-0")]).await;
    let (b, t) = (brokers.clone(), topic.clone());
    let got =
        tokio::task::spawn_blocking(move || stack_read_committed(&b, &t, 2, 3, READ_TIMEOUT)).await.unwrap();
    assert_eq!(values(&got), vec![b"after-0".to_vec(), b"before-0".to_vec(), b"before-1".to_vec()]);
}

/// A crash (SIGKILL) of the durable broker right after a commit loses nothing
/// that was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restart: kills a shared server; scripts/test runs it alone (--ignored --test-threads=1)"]
async fn restart_durable_broker_after_kill_keeps_committed_data() {
    let brokers = stack_durable_kafka_brokers();
    let topic = unique("stack-crash");
    stack_create_topic(&brokers, &topic, 1).await;
    stack_produce_committed(&brokers, &topic, &[(0, "k", b"committed-before-crash")]).await;

    tokio::task::spawn_blocking(|| stack_ctl("kill", "kafka-durable")).await.unwrap();
    assert!(!stack_port_open(&brokers), "durable broker still answers after kill");
    tokio::task::spawn_blocking(|| stack_ctl("start", "kafka-durable")).await.unwrap();

    let (b, t) = (brokers.clone(), topic.clone());
    let got =
        tokio::task::spawn_blocking(move || stack_read_committed(&b, &t, 1, 1, READ_TIMEOUT)).await.unwrap();
    assert_eq!(values(&got), vec![b"committed-before-crash".to_vec()]);
}
