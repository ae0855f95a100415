//! Fuzz target: JSON parse + schema-driven coercion + validation (`Contract::builtin().check`).
//!
//! Oracles: no panic; a rejection always explains itself (at least one error) and keeps the
//! parsed payload exactly when the body was JSON; `check` and `check_value` agree; a valid
//! event's canonical JSON is itself a valid event of the same type and correlation id (and a
//! fixed point: checking it again gives the same bytes).
#![no_main]

use cxone_ingest::contract::{Checked, Contract, Reason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let contract = Contract::builtin();
    let parsed = serde_json::from_slice::<serde_json::Value>(data).ok();
    match contract.check(data) {
        Checked::Valid(event) => {
            let Some(value) = parsed else { panic!("non-JSON body judged valid") };
            let Checked::Valid(again) = contract.check_value(value) else {
                panic!("check says valid, check_value does not")
            };
            assert_eq!(again.canonical_json, event.canonical_json);
            match contract.check(&event.canonical_json) {
                Checked::Valid(canonical) => {
                    assert_eq!(canonical.event_type, event.event_type);
                    assert_eq!(canonical.correlation_id, event.correlation_id);
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
                    let Checked::Invalid(again) = contract.check_value(value.clone()) else {
                        panic!("check says invalid, check_value does not")
                    };
                    assert_eq!(again.reason, rejection.reason);
                    assert_eq!(again.errors, rejection.errors);
                }
            }
        }
    }
});
