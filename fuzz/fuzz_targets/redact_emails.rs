//! Fuzz target: e-mail redaction in logs (`telemetry::redact_emails`).
//!
//! Oracles: no panic (it slices by byte offsets); the output never contains an `@` that was part of
//! an address (redacting the output again changes nothing); text without `@` is returned as is.
#![no_main]

use std::borrow::Cow;

use cxone_ingest::telemetry::redact_emails;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let once = redact_emails(text);
    if !text.contains('@') {
        assert!(matches!(once, Cow::Borrowed(_)));
    }
    let twice = redact_emails(&once);
    assert_eq!(twice, once, "redaction is not idempotent for {text:?}");
});
