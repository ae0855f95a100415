//! Criterion benchmarks of the request path, one group per stage.
//!
//! Group `contract`: parse + route + coerce + validate + typed decode + canonical JSON of the seed's
//! example payload (`Contract::check`), plus the stages on their own for orientation.
//! Run: `cargo bench --bench pipeline -- contract`. The whole request is measured elsewhere
//! (`scripts/bench-side-by-side`, `scripts/bench-instructions`): these are for orientation.
//!
//! Group `signature`: HMAC-SHA256 verification of the seed's payload (hex header, one secret).
//! Group `dead_letter`: building a dead-letter record from a rejection and serializing it.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use cxone_ingest::contract::{Checked, Contract, coerce, types};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The seed's example payload, string numbers and mixed-case e-mail included (three coercions).
const SEED_PAYLOAD: &[u8] = br#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{"channel":"voice","duration_seconds":"120","agent_id":"a-7","customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5"}}}"#;
/// The same event as a well-behaved sender would send it (no coercion needed).
const CLEAN_PAYLOAD: &[u8] = br#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{"channel":"voice","duration_seconds":120,"agent_id":"a-7","customer_email":"jane.doe@example.com","metadata":{"priority":"high","score":4.5}}}"#;
/// The seed's invalid example: three errors collected.
const INVALID_PAYLOAD: &[u8] = br#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-2","data":{"channel":"fax","duration_seconds":"12x","agent_id":"a-7","customer_email":"nope"}}"#;

fn contract(c: &mut Criterion) {
    let contract = Contract::builtin();
    assert!(matches!(contract.check(SEED_PAYLOAD), Checked::Valid(_)), "the seed payload must be valid");
    assert!(
        matches!(contract.check(INVALID_PAYLOAD), Checked::Invalid(_)),
        "the invalid payload must be rejected"
    );

    // Best of 5 rounds first (robust on a busy machine); criterion's statistics follow.
    for (name, payload) in [("seed_payload", SEED_PAYLOAD), ("clean_payload", CLEAN_PAYLOAD)] {
        let ns = best_of_rounds_ns(|| drop(black_box(contract.check(black_box(payload)))));
        println!("contract/check/{name}: {ns:.0} ns/payload (best of 5 rounds)");
    }

    let mut group = c.benchmark_group("contract");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check/seed_payload", |b| b.iter(|| contract.check(black_box(SEED_PAYLOAD))));
    group.bench_function("check/clean_payload", |b| b.iter(|| contract.check(black_box(CLEAN_PAYLOAD))));
    group.bench_function("check/invalid_payload", |b| b.iter(|| contract.check(black_box(INVALID_PAYLOAD))));
    group.bench_function("stage/parse_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(SEED_PAYLOAD)))
    });

    // The stages after parsing, on their own (same schema bytes, same validator options).
    let builtin = &types::BUILTIN_SCHEMAS[0];
    let schema: serde_json::Value = serde_json::from_str(builtin.text).unwrap();
    let plan = coerce::compile(&schema).unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_email_options(jsonschema::EmailOptions::default().with_minimum_sub_domains(2))
        .build(&schema)
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(SEED_PAYLOAD).unwrap();
    let mut coerced = parsed.clone();
    plan.apply(&mut coerced, &mut Vec::new());
    group.bench_function("stage/coerce", |b| {
        b.iter_batched_ref(
            || (parsed.clone(), Vec::new()),
            |(value, coercions)| plan.apply(value, coercions),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("stage/is_valid", |b| b.iter(|| validator.is_valid(black_box(&coerced))));
    group.bench_function("stage/canonicalize", |b| b.iter(|| (builtin.canonicalize)(black_box(&coerced))));
    group.finish();
}

/// Best of 5 rounds of ~0.4 s each, in ns per call.
fn best_of_rounds_ns(mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(400) {
            for _ in 0..1000 {
                f();
            }
            calls += 1000;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    best
}

fn signature(c: &mut Criterion) {
    use cxone_ingest::http::config::{Secret, SignatureConfig};
    use cxone_ingest::http::signature::{Verifier, now_unix, sign};

    let config = SignatureConfig { secrets: vec![Secret::new("bench-secret")], ..SignatureConfig::default() };
    let verifier = Verifier::new(&config).expect("verifier");
    let value = sign(&config, 0, SEED_PAYLOAD, None).expect("signature");
    let mut headers = warp::http::HeaderMap::new();
    headers.insert(verifier.signature_header().clone(), value.parse().expect("header value"));
    assert!(verifier.verify(&headers, SEED_PAYLOAD, now_unix()).is_ok(), "the signature must verify");

    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify/seed_payload", |b| {
        b.iter(|| verifier.verify(black_box(&headers), black_box(SEED_PAYLOAD), 0))
    });
    group.finish();
}

fn dead_letter(c: &mut Criterion) {
    use cxone_ingest::sinks::DeadLetter;
    use cxone_ingest::sinks::dead_letter::DeadLetterRecord;
    use sha2::{Digest, Sha256};

    let Checked::Invalid(rejection) = Contract::builtin().check(INVALID_PAYLOAD) else {
        panic!("the invalid payload must be rejected");
    };
    let letter = DeadLetter {
        request_id: "01a22261-fa80-705f-9f64-f652a47157f2".to_owned(),
        received_at: chrono::Utc::now(),
        raw_body: bytes::Bytes::from_static(INVALID_PAYLOAD),
        body_sha256: Sha256::digest(INVALID_PAYLOAD).into(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        error_count: rejection.errors.len(),
        rejection: *rejection,
        request_id_from_sender: false,
        trace: cxone_ingest::trace::TraceContext::start(),
        origin: Default::default(),
    };
    let mut group = c.benchmark_group("dead_letter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record/build_and_serialize", |b| {
        b.iter(|| DeadLetterRecord::build(black_box(&letter), chrono::Utc::now()).to_json())
    });
    group.finish();
}

criterion_group!(benches, contract, signature, dead_letter);

/// `CONTRACT_PROFILE_CALLS=N` runs `Contract::check` N times on one payload and nothing else, for
/// instruction counts that stay put on a busy machine (`CONTRACT_PROFILE_PAYLOAD` = `seed`, the
/// default, `clean` or `invalid`):
/// `CONTRACT_PROFILE_CALLS=2000 valgrind --tool=callgrind <bench binary> --bench`; the difference
/// of a 4,000- and a 2,000-call run, divided by 2,000, is the count per payload
/// (`callgrind_annotate --inclusive=yes` shows the stages).
fn main() {
    if let Some(calls) = std::env::var("CONTRACT_PROFILE_CALLS").ok().and_then(|n| n.parse::<u64>().ok()) {
        let payload = match std::env::var("CONTRACT_PROFILE_PAYLOAD").as_deref() {
            Ok("clean") => CLEAN_PAYLOAD,
            Ok("invalid") => INVALID_PAYLOAD,
            _ => SEED_PAYLOAD,
        };
        let contract = Contract::builtin();
        for _ in 0..calls {
            drop(black_box(contract.check(black_box(payload))));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
