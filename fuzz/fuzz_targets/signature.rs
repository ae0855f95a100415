//! Fuzz target: signature header parsing and verification (`http::signature::Verifier`).
//!
//! Input layout: byte 0 picks the scheme (hex/base64, `sha256=` prefix or none, body or
//! `{timestamp}.{body}`, repeated signature header); the rest is split at the first two `\n`
//! into the signature header value, the timestamp header value and the body.
//! Oracles: no panic on any input; a forged header never verifies; a signature made by
//! `signature::sign` for the same body always verifies and stops verifying once the body changes.
#![no_main]

use cxone_ingest::http::config::{Secret, SignatureConfig, SignatureEncoding, SignedPayload};
use cxone_ingest::http::signature::{self, SignatureError, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fn config(flags: u8) -> SignatureConfig {
    SignatureConfig {
        encoding: if flags & 1 == 0 { SignatureEncoding::Hex } else { SignatureEncoding::Base64 },
        prefix: if flags & 2 == 0 { String::new() } else { "sha256=".to_owned() },
        signed: if flags & 4 == 0 { SignedPayload::Body } else { SignedPayload::TimestampDotBody },
        secrets: vec![Secret::new("fuzz-secret-old"), Secret::new("fuzz-secret-new")],
        ..SignatureConfig::default()
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let cfg = config(flags);
    let Ok(verifier) = Verifier::new(&cfg) else { panic!("a valid config must build a verifier") };
    let (signature_value, rest) = split_line(rest);
    let (timestamp_value, body) = split_line(rest);
    let signature_header = HeaderName::from_static("x-cxone-signature");
    let timestamp_header = HeaderName::from_static("x-cxone-timestamp");

    // 1. Arbitrary header values: never a panic, and (with overwhelming probability) never a pass.
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(signature_value) {
        headers.insert(signature_header.clone(), value.clone());
        if flags & 8 != 0 {
            // A second signature header: only the first one counts.
            headers.append(signature_header.clone(), value);
        }
    }
    if let Ok(value) = HeaderValue::from_bytes(timestamp_value) {
        headers.insert(timestamp_header.clone(), value);
    }
    let now = if flags & 16 == 0 { NOW } else { i64::from_le_bytes([flags; 8]) };
    if let Ok(verified) = verifier.verify(&headers, body, now) {
        panic!("forged header verified as key {}: {signature_value:?}", verified.key_index);
    }

    // 2. The round trip: what `sign` makes verifies; a changed body does not.
    let timestamp = (cfg.signed == SignedPayload::TimestampDotBody).then_some(NOW - i64::from(flags & 0x3f));
    for key_index in 0..2 {
        let Some(value) = signature::sign(&cfg, key_index, body, timestamp) else {
            panic!("sign failed for a configured key")
        };
        let mut headers = HeaderMap::new();
        headers.insert(signature_header.clone(), HeaderValue::from_str(&value).expect("sign makes ASCII"));
        if let Some(ts) = timestamp {
            headers.insert(timestamp_header.clone(), HeaderValue::from(ts));
        }
        match verifier.verify(&headers, body, NOW) {
            Ok(verified) => assert_eq!(verified.key_index, key_index),
            Err(err) => panic!("own signature refused: {err}"),
        }
        let mut changed = body.to_vec();
        match changed.first_mut() {
            Some(first) => *first ^= 1,
            None => changed.push(b' '),
        }
        assert_eq!(verifier.verify(&headers, &changed, NOW), Err(SignatureError::Mismatch));
    }
});
