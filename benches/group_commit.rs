//! Criterion benchmark of group-commit batch assembly: the CPU a Kafka transaction costs on our
//! side before librdkafka, without a broker.
//!
//! Group `group_commit`: `producer::assemble` over N waiting events (the seed's example payload
//! checked by the contract, each with its own request and correlation id): key, canonical JSON
//! value and the seven headers per record, for N = 1, 64 and 1,000 (one event, a 64-connection
//! batch, `batch_max_events`). Throughput is per event.
//! Run: `cargo bench --bench group_commit`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cxone_ingest::contract::{Checked, Contract};
use cxone_ingest::sinks::EventRecord;
use cxone_ingest::sinks::kafka::producer::{self, OutRecord};
use sha2::{Digest, Sha256};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The seed's example payload (three coercions, so the `coercions` header is not empty).
const SEED_PAYLOAD: &str = r#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"CORR","data":{"channel":"voice","duration_seconds":"120","agent_id":"a-7","customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5"}}}"#;

/// `n` checked events as the pipeline hands them to the Kafka sink.
fn waiting_events(n: usize) -> Vec<EventRecord> {
    let contract = Contract::builtin();
    (0..n)
        .map(|i| {
            let body = SEED_PAYLOAD.replace("CORR", &format!("bench-{i:010}"));
            let Checked::Valid(event) = contract.check(body.as_bytes()) else {
                panic!("the seed payload must be valid")
            };
            EventRecord {
                request_id: format!("bench-r{i}"),
                received_at: chrono::Utc::now(),
                body_sha256: Sha256::digest(body.as_bytes()).into(),
                event,
                replayed_from: None,
                trace: cxone_ingest::trace::TraceContext::start(),
                origin: Default::default(),
            }
        })
        .collect()
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    for n in [1usize, 64, 1_000] {
        let events = waiting_events(n);
        let coercions: Vec<_> =
            events.iter().map(|record| producer::coercions_header(&record.event)).collect();
        let batch: Vec<OutRecord<'_>> = events
            .iter()
            .zip(&coercions)
            .map(|(record, coercions)| OutRecord { topic: "cxone.validated.events", record, coercions })
            .collect();
        assert_eq!(producer::assemble(&batch).len(), n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("assemble/{n}"), |b| b.iter(|| producer::assemble(black_box(&batch))));
        group.bench_function(format!("headers/{n}"), |b| {
            b.iter(|| events.iter().for_each(|r| drop(black_box(producer::headers(black_box(r), "[]")))))
        });
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
