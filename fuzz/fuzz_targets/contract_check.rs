//! Fuzz target: `Contract::builtin().check` on arbitrary bytes, the one path (serde_json parse,
//! schema-driven coercion, validation, typed decode, canonical JSON).
//!
//! Oracles: no panic; a body is judged valid only when serde_json parses it; a rejection always
//! explains itself (at least one error) and keeps the parsed payload exactly when the body was
//! JSON (coercions undone), malformed_json exactly when it was not; a valid event's canonical JSON
//! is itself a valid event of the same type and correlation id, with no coercion, and a fixed
//! point (checking it again gives the same bytes).
#![no_main]

use cxone_ingest::contract::{Checked, Contract, Reason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let contract = Contract::builtin();
    let parsed = serde_json::from_slice::<serde_json::Value>(data).ok();
    match contract.check(data) {
        Checked::Valid(event) => {
            assert!(parsed.is_some(), "non-JSON body judged valid");
            match contract.check(&event.canonical_json) {
                Checked::Valid(canonical) => {
                    assert_eq!(canonical.event_type, event.event_type);
                    assert_eq!(canonical.correlation_id, event.correlation_id);
                    assert!(canonical.coercions.is_empty(), "the canonical JSON still coerces");
                    assert_eq!(
                        canonical.canonical_json, event.canonical_json,
                        "canonical JSON is not a fixed point"
                    );
                }
                Checked::Invalid(rejection) => panic!(
                    "the canonical JSON of a valid event is rejected: {:?} {:?}",
                    rejection.reason, rejection.errors
                ),
            }
        }
        Checked::Invalid(rejection) => {
            assert!(!rejection.errors.is_empty(), "rejection without errors: {:?}", rejection.reason);
            match &parsed {
                None => {
                    assert_eq!(rejection.reason, Reason::MalformedJson);
                    assert!(rejection.payload.is_none());
                }
                Some(value) => {
                    assert_ne!(rejection.reason, Reason::MalformedJson);
                    // The payload kept for the dead letter is the payload as sent (coercions undone).
                    assert_eq!(rejection.payload.as_ref(), Some(value));
                }
            }
        }
    }
});
