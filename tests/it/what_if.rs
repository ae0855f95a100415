//! `cxone-ingest schemas what-if`: recent committed topic records and dead letters judged by a new
//! schema folder, against the stack's Kafka (tansu; noida-db for aborted transactions) and garage,
//! each test with its own topic and dead-letter prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use cxone_ingest::config::{Config, ConfigArgs};
use cxone_ingest::sinks::dead_letter::key;
use cxone_ingest::what_if::Places;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{Value, json};

use crate::dead_letter::put_record;
use crate::support::*;

/// The NEW folder of these tests: today's schemas with `interaction.completed`'s channel enum
/// changed from voice/chat/email/sms to voice/email/sms/fax: `chat` events become invalid
/// (tightened), `fax` dead letters become valid (loosened). `survey.completed` is unchanged.
fn new_schemas() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for entry in std::fs::read_dir(&schemas).expect("schemas/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("schema");
        let name = path.file_name().expect("name");
        let text = if name == "interaction-completed.json" {
            let mut schema: Value = serde_json::from_str(&text).expect("schema JSON");
            schema["$defs"]["Channel"]["enum"] = json!(["voice", "email", "sms", "fax"]);
            serde_json::to_string_pretty(&schema).expect("schema text")
        } else {
            text
        };
        std::fs::write(dir.path().join(name), text).expect("write schema");
    }
    dir
}

fn interaction(correlation_id: &str, channel: &str, agent_id: &str) -> Value {
    json!({
        "event": "interaction.completed",
        "timestamp": "2026-11-28T10:00:00Z",
        "correlation_id": correlation_id,
        "data": {
            "channel": channel,
            "duration_seconds": "120",
            "agent_id": agent_id,
            "customer_email": "Jane.Doe@Example.com",
            "metadata": {"priority": "high", "score": "4.5"}
        }
    })
}

fn survey(correlation_id: &str) -> Value {
    json!({
        "event": "survey.completed",
        "timestamp": "2026-11-28T10:05:00Z",
        "correlation_id": correlation_id,
        "data": {
            "survey_id": "post-call-csat",
            "contact_id": 584930211,
            "agent_id": "a-7",
            "channel": "sms",
            "scores": {"csat": 5, "nps": 9},
            "answers": [{"question_id": "q1", "kind": "rating", "rating": 9}]
        }
    })
}

/// `cxone-ingest schemas what-if --schemas NEW` on `brokers`/`topic` and the stack's bucket under
/// `prefix`, configured by flags and the environment only.
fn what_if(schemas: &Path, brokers: &str, topic: &str, prefix: &str) -> Command {
    what_if_at(schemas, brokers, topic, &stack_s3_endpoint(), prefix)
}

/// [`what_if`] with the S3 endpoint given.
fn what_if_at(schemas: &Path, brokers: &str, topic: &str, s3_endpoint: &str, prefix: &str) -> Command {
    let (id, secret) = stack_s3_credentials();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cxone-ingest"));
    command
        .args(["schemas", "what-if", "--schemas"])
        .arg(schemas)
        .args(["--s3-endpoint", s3_endpoint, "--s3-bucket", &stack_s3_bucket(), "--s3-prefix", prefix])
        .args(["--kafka-brokers", brokers, "--kafka-topic", topic])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", stack_s3_region())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("CXONE_INGEST_CONFIG");
    command
}

/// Runs the command (off the async runtime) and returns its output.
async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run cxone-ingest schemas what-if"))
        .await
        .expect("what-if thread")
}

/// Runs `command --json`, asserts exit 0, returns the report.
async fn json_report(mut command: Command) -> Value {
    command.arg("--json");
    let out = output(command).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "what-if failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"))
}

/// The report's row of `family` (`Null` when absent).
fn family<'a>(report: &'a Value, family: &str) -> &'a Value {
    report["families"]
        .as_array()
        .expect("families")
        .iter()
        .find(|row| row["family"] == family)
        .unwrap_or(&Value::Null)
}

/// The topic-side and dead-letter-side counts of a family row:
/// (records, still valid, newly invalid, letters, still rejected, would accept).
fn counts(row: &Value) -> [u64; 6] {
    let n = |value: &Value| value.as_u64().unwrap_or(0);
    [
        n(&row["topic"]["records"]),
        n(&row["topic"]["still_valid"]),
        n(&row["topic"]["newly_invalid"]),
        n(&row["dead_letters"]["letters"]),
        n(&row["dead_letters"]["still_rejected"]),
        n(&row["dead_letters"]["would_accept"]),
    ]
}

/// A valid canonical-enough event (the JSON as sent is valid under both folders).
fn voice_event(n: usize) -> Vec<u8> {
    serde_json::to_vec(&interaction(&unique(&format!("corr-window-{n}")), "voice", "a-7")).unwrap()
}

/// A known mix posted through the real service: 10 `interaction.completed` events (6 voice, 4 chat),
/// 5 `survey.completed`, and 6 dead letters (3 `fax` otherwise valid, 2 empty agent id, 1 not
/// JSON). The NEW folder refuses exactly the 4 chat events (at `/data/channel`, `enum`) and
/// accepts exactly the 3 fax dead letters; the replay command names the prefix and the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_counts_newly_invalid_records_and_replayable_dead_letters_per_family() {
    let brokers = stack_kafka_brokers();
    let options = ServiceOptions::new("what-if", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options.clone()).await;
    let client = e2e_client();
    let mut bodies: Vec<(String, &str)> = Vec::new();
    for n in 0..6 {
        bodies.push((interaction(&unique(&format!("voice-{n}")), "voice", "a-7").to_string(), "published"));
    }
    for n in 0..4 {
        bodies.push((interaction(&unique(&format!("chat-{n}")), "chat", "a-7").to_string(), "published"));
    }
    for n in 0..5 {
        bodies.push((survey(&unique(&format!("survey-{n}"))).to_string(), "published"));
    }
    for n in 0..3 {
        bodies.push((interaction(&unique(&format!("fax-{n}")), "fax", "a-7").to_string(), "dead_lettered"));
    }
    for n in 0..2 {
        bodies
            .push((interaction(&unique(&format!("noagent-{n}")), "voice", "").to_string(), "dead_lettered"));
    }
    bodies.push(("{\"event\": ".to_owned(), "dead_lettered"));
    for (body, want) in &bodies {
        let answer = e2e_post(&client, &service.webhook_url(), body, &e2e_sign(body.as_bytes()), None)
            .await
            .expect("post");
        assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, service.log_tail(4000));
        assert_eq!(answer.body["status"], *want, "{body}");
    }
    let new = new_schemas();

    let report = json_report({
        let mut command = what_if(new.path(), &brokers, &options.topic, &options.s3_prefix);
        command.args(["--since", "1h"]);
        command
    })
    .await;

    let interactions = family(&report, "interaction.completed");
    assert_eq!(counts(interactions), [10, 6, 4, 5, 2, 3], "interaction.completed: {report:#}");
    assert_eq!(
        interactions["topic"]["errors"],
        json!([{"instance_path": "/data/channel", "keyword": "enum", "count": 4}]),
        "the chat events fail at the channel enum"
    );
    assert_eq!(
        interactions["dead_letters"]["errors"][0],
        json!({"instance_path": "/data/agent_id", "keyword": "minLength", "count": 2})
    );
    assert_eq!(counts(family(&report, "survey.completed")), [5, 5, 0, 0, 0, 0], "{report:#}");
    assert_eq!(counts(family(&report, "(not an event)")), [0, 0, 0, 1, 1, 0], "{report:#}");
    assert_eq!(report["families"].as_array().unwrap().len(), 3, "no other family: {report:#}");
    assert_eq!(report["totals"]["topic_records"], 15, "the probe's aborted record is not counted");
    assert_eq!(report["totals"]["newly_invalid"], 4);
    assert_eq!(report["totals"]["dead_letters"], 6);
    assert_eq!(report["totals"]["would_accept"], 3);
    assert_eq!(report["topics"][0]["records"], 15);
    assert_eq!(report["topics"][0]["limited"], false);

    // The replay command: the NEW folder, the flags given, the prefix and the candidates' day.
    let days: Vec<String> = e2e_s3_keys(&options.s3_prefix)
        .await
        .iter()
        .filter_map(|key| key.split("/dt=").nth(1).map(|rest| rest[..10].to_owned()))
        .collect();
    let first_day = days.iter().min().expect("dead-letter keys");
    assert_eq!(report["replay"]["candidates"], 3);
    assert_eq!(report["replay"]["commands"][0]["candidates"], 3);
    let command = format!(
        "cxone-ingest replay --schemas {} --s3-endpoint {} --s3-bucket {} --kafka-brokers {brokers} \
         --kafka-topic {} --s3-prefix {} --since {first_day}",
        new.path().display(),
        stack_s3_endpoint(),
        stack_s3_bucket(),
        options.topic,
        options.s3_prefix
    );
    assert_eq!(report["replay"]["commands"][0]["command"], command.as_str());

    // The text form: a row per family and the command.
    let out = output({
        let mut command = what_if(new.path(), &brokers, &options.topic, &options.s3_prefix);
        command.args(["--since", "1h"]);
        command
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(
            "| interaction.completed | https://schemas.cxone-ingest.dev/events/interaction-completed/v1.json \
             1.0.0 | 10 | 6 | **4** | 5 | 2 | **3** |"
        ),
        "{text}"
    );
    assert!(text.contains("| `/data/channel` | enum | 4 |"), "{text}");
    assert!(text.contains(&format!("    {command}\n")), "{text}");

    // `--fail-on-newly-invalid`: exit 1 with NEW, 0 with today's folder (nothing newly invalid,
    // nothing to replay).
    let gate = |schemas: PathBuf| {
        let mut command = what_if(&schemas, &brokers, &options.topic, &options.s3_prefix);
        command.args(["--since", "1h", "--fail-on-newly-invalid"]);
        command
    };
    let out = output(gate(new.path().to_owned())).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let today = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let same = json_report(gate(today)).await;
    assert_eq!(counts(family(&same, "interaction.completed")), [10, 10, 0, 5, 5, 0], "{same:#}");
    assert_eq!(same["replay"]["commands"], json!([]));
}

/// `--since` and `--limit` bound what is read: records and dead letters older than the window are
/// not read, and at most `--limit` of each are per topic and per prefix; an already replayed dead
/// letter is set aside. On noida-db, whose
/// `offsets_for_times` finds the window start, and on tansu, whose answers offset 0 (the records'
/// timestamps cut the window there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_reads_only_the_window_and_at_most_limit_per_topic_and_prefix() {
    for brokers in [stack_filtering_kafka_brokers(), stack_kafka_brokers()] {
        window_and_limit_on(&brokers).await;
    }
}

async fn window_and_limit_on(brokers: &str) {
    let brokers = brokers.to_owned();
    let topic = unique("what-if-window");
    let prefix = unique("what-if-window");
    stack_create_topic(&brokers, &topic, 1).await;
    let now = Utc::now();
    let three_hours_ago = now - chrono::Duration::hours(3);
    let producer = stack_transactional_producer(&brokers);
    producer.begin_transaction().expect("begin");
    for n in 0..8 {
        let at = if n < 3 { three_hours_ago } else { now };
        let value = voice_event(n);
        producer
            .send(
                FutureRecord::to(&topic).key("k").payload(&value).timestamp(at.timestamp_millis()),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    }
    producer.commit_transaction(Duration::from_secs(30)).expect("commit");
    for n in 0..6 {
        let at = if n < 2 { three_hours_ago } else { now - chrono::Duration::minutes(1) };
        let payload = interaction(&unique(&format!("corr-window-dl-{n}")), "fax", "a-7");
        put_record(&prefix, &serde_json::to_vec(&payload).unwrap(), Some(payload), at).await;
    }
    // One more, already replayed (its marker exists): set aside, never a candidate.
    let payload = interaction(&unique("corr-window-replayed"), "fax", "a-7");
    let replayed = put_record(&prefix, &serde_json::to_vec(&payload).unwrap(), Some(payload), now).await;
    stack_s3_client()
        .put_object()
        .bucket(stack_s3_bucket())
        .key(key::marker_key(&prefix, &replayed))
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect("put marker");
    let new = new_schemas();
    let run = |extra: &'static [&'static str]| {
        let mut command = what_if(new.path(), &brokers, &topic, &prefix);
        command.args(extra);
        json_report(command)
    };
    let read = |report: &Value| {
        (
            report["topics"][0]["records"].as_u64().unwrap(),
            report["topics"][0]["limited"].as_bool().unwrap(),
            report["dead_letter_prefixes"][0]["letters"].as_u64().unwrap(),
            report["dead_letter_prefixes"][0]["limited"].as_bool().unwrap(),
        )
    };

    let last_hour = run(&["--since", "1h"]).await;
    assert_eq!(read(&last_hour), (5, false, 4, false), "{brokers}: {last_hour:#}");
    assert_eq!(last_hour["replay"]["candidates"], 4);
    assert_eq!(last_hour["dead_letter_prefixes"][0]["already_replayed"], 1);
    let limited = run(&["--since", "1h", "--limit", "2"]).await;
    assert_eq!(read(&limited), (2, true, 2, true), "{brokers}: {limited:#}");
    assert_eq!(limited["limit"], 2);
    let six_hours = run(&["--since", "6h"]).await;
    assert_eq!(read(&six_hours), (8, false, 6, false), "{brokers}: {six_hours:#}");
    assert_eq!(counts(family(&six_hours, "interaction.completed")), [8, 8, 0, 6, 0, 6], "{brokers}");
    assert_eq!(six_hours["totals"]["already_replayed"], 1);
}

/// On a broker that hides aborted records from `read_committed` readers (noida-db), records of
/// aborted transactions are not counted; records of an open transaction are not either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_does_not_count_aborted_transactional_records() {
    let brokers = stack_filtering_kafka_brokers();
    let topic = unique("what-if-aborted");
    let prefix = unique("what-if-aborted");
    stack_create_topic(&brokers, &topic, 1).await;
    let producer: FutureProducer = stack_transactional_producer(&brokers);
    let mut n = 0;
    for (records, commit) in [(2, true), (3, false), (1, true)] {
        producer.begin_transaction().expect("begin");
        for _ in 0..records {
            n += 1;
            producer
                .send(FutureRecord::to(&topic).key("k").payload(&voice_event(n)), Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("send: {e}"));
        }
        if commit {
            producer.commit_transaction(Duration::from_secs(30)).expect("commit");
        } else {
            producer.abort_transaction(Duration::from_secs(30)).expect("abort");
        }
    }
    // Left open while what-if runs: its records lie past the last stable offset.
    let open: FutureProducer = stack_transactional_producer(&brokers);
    open.begin_transaction().expect("begin");
    for _ in 0..2 {
        n += 1;
        open.send(FutureRecord::to(&topic).key("k").payload(&voice_event(n)), Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    }
    let new = new_schemas();
    let report = json_report({
        let mut command = what_if(new.path(), &brokers, &topic, &prefix);
        command.args(["--since", "1h"]);
        command
    })
    .await;
    drop(open);
    assert_eq!(report["topics"][0]["records"], 3, "only the committed records: {report:#}");
    assert_eq!(counts(family(&report, "interaction.completed")), [3, 3, 0, 0, 0, 0]);
}

/// A NEW folder that does not load stops the run before anything is read: exit 2, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_with_a_new_folder_that_does_not_load_exits_2_naming_the_file() {
    let new = new_schemas();
    std::fs::write(new.path().join("broken-family.json"), "{\"x-cxone-events\": [").unwrap();
    let out = output(what_if(new.path(), &stack_kafka_brokers(), &unique("unused"), &unique("unused"))).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("broken-family.json") && stderr.contains("not valid JSON"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// Kafka that cannot be reached, a topic that does not exist, S3 that cannot be reached: exit 2
/// with a message saying which, no report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_exits_2_when_kafka_or_s3_cannot_be_read() {
    let closed = format!("127.0.0.1:{}", free_loopback_port());
    let new = new_schemas();
    let prefix = unique("what-if-closed");
    let fails = |command: Command, want: String| async move {
        let out = output(command).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&want), "{want:?} not in {stderr}");
        assert!(out.stdout.is_empty());
    };
    fails(
        what_if(new.path(), &closed, &unique("what-if-closed"), &prefix),
        format!("Kafka at {closed} is unreachable"),
    )
    .await;
    let missing = unique("what-if-missing");
    fails(
        what_if(new.path(), &stack_kafka_brokers(), &missing, &prefix),
        format!("topic {missing} does not exist"),
    )
    .await;
    let topic = unique("what-if-s3-closed");
    stack_create_topic(&stack_kafka_brokers(), &topic, 1).await;
    fails(
        what_if_at(new.path(), &stack_kafka_brokers(), &topic, &format!("http://{closed}"), &prefix),
        format!("the dead letters under s3://{}/{prefix} cannot be read", stack_s3_bucket()),
    )
    .await;
}

/// With `[[sources]]` of their own topic and prefix, each topic and prefix is read, `--limit`
/// applying to each of them, and the replay command names each prefix with candidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_reads_each_sources_topic_and_prefix_with_the_limit_applying_to_each() {
    let brokers = stack_kafka_brokers();
    let (main_topic, east_topic) = (unique("what-if-main"), unique("what-if-east"));
    let (main_prefix, east_prefix) = (unique("what-if-main"), unique("what-if-east"));
    for (topic, records) in [(&main_topic, 2), (&east_topic, 3)] {
        stack_create_topic(&brokers, topic, 1).await;
        let values: Vec<Vec<u8>> = (0..records).map(voice_event).collect();
        let batch: Vec<(i32, &str, &[u8])> = values.iter().map(|v| (0, "k", v.as_slice())).collect();
        stack_produce_committed(&brokers, topic, &batch).await;
    }
    for (prefix, letters) in [(&main_prefix, 1), (&east_prefix, 3)] {
        for n in 0..letters {
            let payload = interaction(&unique(&format!("corr-sources-{n}")), "fax", "a-7");
            put_record(prefix, &serde_json::to_vec(&payload).unwrap(), Some(payload), Utc::now()).await;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sources.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nname = \"east\"\npath = \"/hooks/east\"\ntopic = \"{east_topic}\"\n\
             dead_letter_prefix = \"{east_prefix}\"\n[sources.bearer]\n\
             bearer_tokens = [\"east-token-0123456789abcdef0123456789\"]\n"
        ),
    )
    .unwrap();
    let new = new_schemas();
    let report = json_report({
        let mut command = what_if(new.path(), &brokers, &main_topic, &main_prefix);
        command.arg("--config").arg(&config).args(["--since", "1h", "--limit", "2"]);
        command
    })
    .await;
    let topics: Vec<(String, u64, bool)> = report["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["topic"].as_str().unwrap().to_owned(), t["records"].as_u64().unwrap(), t["limited"] == true)
        })
        .collect();
    let mut want = vec![(main_topic.clone(), 2, false), (east_topic.clone(), 2, true)];
    want.sort();
    assert_eq!(topics, want, "{report:#}");
    let prefixes: Vec<(String, u64, bool)> = report["dead_letter_prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["prefix"].as_str().unwrap().to_owned(), p["letters"].as_u64().unwrap(), p["limited"] == true)
        })
        .collect();
    let mut want = vec![(main_prefix.clone(), 1, false), (east_prefix.clone(), 2, true)];
    want.sort();
    assert_eq!(prefixes, want, "{report:#}");
    assert_eq!(report["replay"]["candidates"], 3);
    let commands: Vec<&str> = report["replay"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands.len(), 2, "{report:#}");
    for prefix in [&main_prefix, &east_prefix] {
        let command = commands.iter().find(|c| c.contains(&format!("--s3-prefix {prefix} "))).expect(prefix);
        assert!(command.contains(&format!("--config {}", config.display())), "{command}");
    }
}

/// With several `[[sources]]`, every source's topic and dead-letter prefix is read, each once.
#[test]
fn what_if_reads_every_sources_topic_and_dead_letter_prefix_once() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("cxone-ingest.toml");
    let source = |name: &str, topic: &str, prefix: &str| {
        format!(
            "[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\ntopic = \"{topic}\"\n\
             dead_letter_prefix = \"{prefix}\"\n[sources.bearer]\nbearer_tokens = [\"{name}-token-0123456789abcdef0123456789\"]\n"
        )
    };
    let text = format!(
        "[kafka]\ntopic = \"t-main\"\n[dead_letter]\nbucket = \"b\"\nprefix = \"p-main/\"\n{}{}",
        source("east", "t-east", "p-east"),
        source("west", "t-main", "/p-east/")
    );
    std::fs::write(&path, text).unwrap();
    let args = ConfigArgs::with_file(path);
    let config = Config::load(&args, |_| None).expect("config");
    assert_eq!(
        Places::of(&config),
        Places {
            topics: vec!["t-east".into(), "t-main".into()],
            prefixes: vec!["p-east".into(), "p-main".into()]
        }
    );
}
