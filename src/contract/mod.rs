//! The contract: `schemas/*.json` turned into a registry that checks raw payloads.
//!
//! `check` runs, in order, on one `serde_json::Value`: parse -> pick the schema by the payload's
//! `event` -> schema-driven coercion (recorded) -> `is_valid` (every error collected only when it
//! fails) -> decode into the build.rs-generated type -> canonical JSON of that typed value.
//!
//! - [`config`]: `[contract]`: where the schemas come from (built in, or a folder) and how a
//!   folder is reloaded.
//! - [`live`]: the schema sets in force while serving, one per folder in use, each swapped whole
//!   by a reload; a request judges under one snapshot from start to finish.
//! - [`watch`]: when to reload: SIGHUP, or a change in a folder (debounced).

pub mod coerce;
pub mod compat;
pub mod config;
pub mod live;
mod registry;
pub mod report;
pub mod types;
mod validate;
pub mod watch;

use serde::Serialize;
use serde_json::Value;

/// Why a payload was not accepted as an event. Serialized snake_case; this is the
/// `reason` of the `validate --json` output, of the HTTP answer and of the dead-letter record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The body is not JSON (or not UTF-8, or nested too deep).
    MalformedJson,
    /// The body is JSON but not an object with a string `event` the registry knows.
    UnknownEvent,
    /// The payload breaks its schema; `errors` says where.
    SchemaValidation,
    /// The payload passed the schema but not the generated type: a bug in the contract, kept for replay.
    TypedDecode,
    /// The event is valid but Kafka will never take it as it is (larger than the producer's
    /// `message.max.bytes`); replay it after raising the limit. Set by the pipeline, not the contract.
    KafkaRefused,
    /// The payload is valid, but its `event` is not the event type the sender declared in its
    /// delivery header (`X-Nexus-Event-Type`). Set by the pipeline, not the contract.
    EventTypeMismatch,
}

impl Reason {
    /// The snake_case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::UnknownEvent => "unknown_event",
            Reason::SchemaValidation => "schema_validation",
            Reason::TypedDecode => "typed_decode",
            Reason::KafkaRefused => "kafka_refused",
            Reason::EventTypeMismatch => "event_type_mismatch",
        }
    }
}

/// Which schema judged a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaRef {
    /// The schema's `$id`.
    pub id: String,
    /// The schema's version annotation.
    pub version: String,
}

/// One value the coercion step changed, so that downstream readers can see what was not sent as-is.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Coercion {
    /// JSON pointer to the value in the payload.
    pub path: String,
    /// The value as sent.
    pub from: Value,
    /// The value after coercion.
    pub to: Value,
}

/// One way a payload breaks its schema, precise enough to fix the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    /// JSON pointer into the payload (`/data/channel`; empty for the root).
    pub instance_path: String,
    /// JSON pointer into the schema to the keyword that failed.
    pub schema_path: String,
    /// The failing keyword (`enum`, `type`, `required`, `format`, ...).
    pub keyword: String,
    /// A sentence a person can act on.
    pub message: String,
}

/// A payload that passed the contract.
#[derive(Debug, Clone)]
pub struct ValidEvent {
    /// The payload's `event` value (e.g. `interaction.completed`), shared with the registry's
    /// routes: no copy per event.
    pub event_type: std::sync::Arc<str>,
    /// The schema that accepted it (shared with the registry: no copy per event).
    pub schema: std::sync::Arc<SchemaRef>,
    /// The payload's `correlation_id`: the Kafka key.
    pub correlation_id: String,
    /// The typed value serialized back to JSON: what goes to Kafka.
    pub canonical_json: Vec<u8>,
    /// What coercion changed on the way.
    pub coercions: Vec<Coercion>,
}

/// A payload that did not pass, with everything needed to explain and replay it.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why it was not accepted: the dead letter's `reason`.
    pub reason: Reason,
    /// The schema that judged it, when one was picked.
    pub schema: Option<SchemaRef>,
    /// Every error found. For `malformed_json`, `unknown_event` and `typed_decode` one entry
    /// explains the problem (keyword `json`, `required`/`type`/`enum` at `/event`, `typed_decode`).
    pub errors: Vec<FieldError>,
    /// Coercions applied before validation failed.
    pub coercions: Vec<Coercion>,
    /// The payload as sent, when it parsed as JSON (before coercion).
    pub payload: Option<Value>,
    /// The payload's `correlation_id`, when it had a string one.
    pub correlation_id: Option<String>,
}

/// The verdict on one payload.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Passed: publish it.
    Valid(ValidEvent),
    /// Did not pass: dead-letter it (boxed: a rejection is twice the size of a valid event).
    Invalid(Box<Rejection>),
}

/// A schema set that can't be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ContractError {
    /// The schema file (or folder) at fault.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

pub use config::ContractConfig;
pub use live::{ContractLookup, SchemaSet, Schemas};
pub use registry::{
    BuiltinSchema, Contract, EVENTS_ANNOTATION, SchemaInfo, VERSION_ANNOTATION, canonical_json, read_folder,
};
