//! Fuzz target: dead-letter record building from arbitrary bytes
//! (`sinks::dead_letter::DeadLetterRecord::build` on a `DeadLetter` made of the raw body and the
//! rejection `Contract::check` gives it).
//!
//! Oracles: no panic; the record's JSON parses back to the same record, validates against
//! `schemas/dead-letter-record.json`, never holds the signature header, and gives back the original
//! body (`original_payload`): the parsed value for JSON bodies, the exact bytes otherwise.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use cxone_ingest::contract::{Checked, Contract, FieldError, Reason, Rejection, SchemaRef};
use cxone_ingest::sinks::DeadLetter;
use cxone_ingest::sinks::dead_letter::record::{
    DeadLetterRecord, OriginalPayload, PayloadEncoding, RECORD_SCHEMA,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn record_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: serde_json::Value = serde_json::from_str(RECORD_SCHEMA).expect("record schema is JSON");
        jsonschema::options().should_validate_formats(true).build(&schema).expect("record schema compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let rejection = match Contract::builtin().check(data) {
        Checked::Invalid(rejection) => *rejection,
        // A valid body still exercises the builder: pretend the typed decode failed.
        Checked::Valid(event) => Rejection {
            reason: Reason::TypedDecode,
            schema: Some(SchemaRef::clone(&event.schema)),
            errors: vec![FieldError {
                instance_path: String::new(),
                schema_path: String::new(),
                keyword: "typed_decode".into(),
                message: "fuzz".into(),
            }],
            coercions: event.coercions,
            payload: serde_json::from_slice(data).ok(),
            correlation_id: Some(event.correlation_id),
        },
    };
    let raw = Bytes::copy_from_slice(data);
    let header_value = String::from_utf8_lossy(&data[..data.len().min(64)]).into_owned();
    let letter = DeadLetter {
        request_id: "fuzz-request".into(),
        received_at: "2026-11-28T10:00:00Z".parse().expect("timestamp"),
        body_sha256: Sha256::digest(data).into(),
        raw_body: raw,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-CXone-Signature".into(), "0".repeat(64)),
            ("User-Agent".into(), header_value.clone()),
            ("user-agent".into(), header_value),
        ],
        error_count: rejection.errors.len(),
        rejection,
        request_id_from_sender: false,
        trace: cxone_ingest::trace::TraceContext::start(),
        origin: Default::default(),
    };
    let record = DeadLetterRecord::build(&letter, "2026-11-28T10:00:01Z".parse().expect("timestamp"));
    let (json, digest) = record.to_json();
    assert!(!json.is_empty(), "record did not serialize");
    assert_eq!(digest, hex_sha256(&json));
    assert!(!record.headers.keys().any(|name| name.contains("signature")));
    assert_eq!(record.body_size, data.len() as u64);

    let back: DeadLetterRecord = match serde_json::from_slice(&json) {
        Ok(back) => back,
        Err(err) => panic!("record JSON does not parse back: {err}"),
    };
    assert_eq!(back, record, "record does not round-trip");
    let instance: serde_json::Value = serde_json::from_slice(&json).expect("parsed above");
    let errors: Vec<String> =
        record_validator().iter_errors(&instance).map(|e| format!("{} {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "record breaks its schema: {errors:?}");

    match back.original_payload() {
        Ok(OriginalPayload::Json(value)) => {
            assert_eq!(back.payload_encoding, PayloadEncoding::Json);
            assert_eq!(Some(&value), letter.rejection.payload.as_ref());
        }
        Ok(OriginalPayload::Raw(bytes)) => assert_eq!(bytes, data, "raw body not given back"),
        Err(err) => panic!("payload not recoverable: {err}"),
    }
    assert_eq!(back.body_sha256_bytes(), Some(letter.body_sha256));
});

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
