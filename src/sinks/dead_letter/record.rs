//! The dead-letter record: what is written to S3 for a payload that failed the contract
//! (documented by `schemas/dead-letter-record.json`).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::contract::{Coercion, FieldError, Reason};
use crate::sinks::DeadLetter;

/// The record layout written by this build; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// The record's own JSON Schema (draft 2020-12), for consumers and tests.
pub const RECORD_SCHEMA: &str = include_str!("../../../schemas/dead-letter-record.json");

/// One dead letter, as stored. Field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// Layout version ([`FORMAT_VERSION`]), so readers can tell old records from new ones.
    pub format_version: u32,
    /// When the record was built (as the letter joined its batch, just before the batch's put).
    #[serde(serialize_with = "rfc3339_utc", deserialize_with = "from_rfc3339")]
    pub dead_lettered_at: DateTime<Utc>,
    /// When the service received the request; the key's `dt=`/`hour=` partition comes from it.
    #[serde(serialize_with = "rfc3339_utc", deserialize_with = "from_rfc3339")]
    pub received_at: DateTime<Utc>,
    /// The request that delivered the payload: how a dead letter is found inside its batch object.
    pub request_id: String,
    /// The payload's `correlation_id`, when one could be read.
    pub correlation_id: Option<String>,
    /// Why the payload was rejected.
    pub reason: Reason,
    /// The schema that judged it, when one was picked.
    pub schema: Option<RecordSchemaRef>,
    /// The validation errors, with JSON pointers into the payload and the schema: all of them, or
    /// the first `server.max_reported_errors` when `errors_truncated`.
    pub errors: Vec<FieldError>,
    /// How many errors were found in all (`None` in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_count: Option<u64>,
    /// Whether `errors` lists only some of `error_count`.
    #[serde(default)]
    pub errors_truncated: bool,
    /// The delivery's trace context (`None` in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<RecordTrace>,
    /// The webhook source it came in through (`None` in records written before sources existed,
    /// and for letters made outside a live delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What the sender said about the delivery in its headers, when it said anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<RecordDelivery>,
    /// Coercions applied before validation failed.
    pub coercions: Vec<Coercion>,
    /// How `payload` holds the original body.
    pub payload_encoding: PayloadEncoding,
    /// The original payload: the JSON value as sent (before coercion) when it parsed, otherwise the raw
    /// body as text (UTF-8) or base64.
    pub payload: Value,
    /// Hex SHA-256 of the raw body exactly as received (what the sender signed).
    pub body_sha256: String,
    /// Size of the raw body in bytes.
    pub body_size: u64,
    /// Selected request headers, lower-case names; never signatures, credentials or cookies.
    pub headers: BTreeMap<String, String>,
    /// Which build wrote the record.
    pub service: ServiceInfo,
}

/// Which schema judged the payload (serializable twin of `contract::SchemaRef`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSchemaRef {
    /// The schema's `$id`.
    pub id: String,
    /// The schema's version annotation.
    pub version: String,
}

/// The W3C trace context kept in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordTrace {
    /// `00-<trace id>-<this service's span id>-<flags>`.
    pub traceparent: String,
    /// The sender's `tracestate`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// The sender's delivery metadata kept in a record (`X-Nexus-Delivery-Id`, `X-Nexus-Event-Type`
/// or the source's configured header names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordDelivery {
    /// The sender's id of this delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The event type the sender declared in its header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
}

/// How the original body is held in `payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// `payload` is the parsed JSON value.
    Json,
    /// `payload` is a string: the body was UTF-8 but not JSON.
    Text,
    /// `payload` is a base64 (standard alphabet, padded) string: the body was not UTF-8.
    Base64,
}

/// The service that wrote a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Crate name.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl ServiceInfo {
    /// This build.
    pub fn current() -> ServiceInfo {
        ServiceInfo { name: env!("CARGO_PKG_NAME").to_owned(), version: env!("CARGO_PKG_VERSION").to_owned() }
    }
}

/// The original body recovered from a record, ready to be judged again.
#[derive(Debug, Clone, PartialEq)]
pub enum OriginalPayload {
    /// It parsed as JSON when received.
    Json(Value),
    /// It did not: the raw bytes.
    Raw(Vec<u8>),
}

/// A record whose payload cannot be recovered.
#[derive(Debug, thiserror::Error)]
#[error("payload of a {encoding:?} record is not usable: {message}")]
pub struct PayloadError {
    encoding: PayloadEncoding,
    message: String,
}

impl DeadLetterRecord {
    /// Builds the record for one dead letter.
    pub fn build(letter: &DeadLetter, dead_lettered_at: DateTime<Utc>) -> DeadLetterRecord {
        let rejection = &letter.rejection;
        let (payload_encoding, payload) = match (&rejection.payload, std::str::from_utf8(&letter.raw_body)) {
            (Some(value), _) => (PayloadEncoding::Json, value.clone()),
            (None, Ok(text)) => (PayloadEncoding::Text, Value::String(text.to_owned())),
            (None, Err(_)) => (
                PayloadEncoding::Base64,
                Value::String(base64::engine::general_purpose::STANDARD.encode(&letter.raw_body)),
            ),
        };
        DeadLetterRecord {
            format_version: FORMAT_VERSION,
            dead_lettered_at,
            received_at: letter.received_at,
            request_id: letter.request_id.clone(),
            correlation_id: rejection.correlation_id.clone(),
            reason: rejection.reason,
            schema: rejection
                .schema
                .as_ref()
                .map(|schema| RecordSchemaRef { id: schema.id.clone(), version: schema.version.clone() }),
            errors: rejection.errors.clone(),
            error_count: Some(letter.error_count.max(rejection.errors.len()) as u64),
            errors_truncated: letter.error_count > rejection.errors.len(),
            trace: Some(RecordTrace {
                traceparent: letter.trace.traceparent(),
                tracestate: letter.trace.tracestate.clone(),
            }),
            source: Some(letter.origin.source.to_string()).filter(|name| !name.is_empty()),
            delivery: (letter.origin.delivery_id.is_some() || letter.origin.sender_event_type.is_some())
                .then(|| RecordDelivery {
                    id: letter.origin.delivery_id.clone(),
                    event_type: letter.origin.sender_event_type.clone(),
                }),
            coercions: rejection.coercions.clone(),
            payload_encoding,
            payload,
            body_sha256: hex::encode(letter.body_sha256),
            body_size: letter.raw_body.len() as u64,
            headers: kept_headers(&letter.headers),
            service: ServiceInfo::current(),
        }
    }

    /// The record as one line of a batch object: compact JSON (never contains a newline).
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing plain data (string keys, no maps with non-string keys) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record as a single-record object (the layout before batching): compact JSON, and its
    /// hex SHA-256 (object metadata).
    pub fn to_json(&self) -> (Vec<u8>, String) {
        // Serializing plain data (string keys, no maps with non-string keys) cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(&json));
        (json, digest)
    }

    /// The original body, for replay.
    pub fn original_payload(&self) -> Result<OriginalPayload, PayloadError> {
        let fail =
            |message: &str| PayloadError { encoding: self.payload_encoding, message: message.to_owned() };
        match (self.payload_encoding, &self.payload) {
            (PayloadEncoding::Json, value) => Ok(OriginalPayload::Json(value.clone())),
            (PayloadEncoding::Text, Value::String(text)) => {
                Ok(OriginalPayload::Raw(text.clone().into_bytes()))
            }
            (PayloadEncoding::Base64, Value::String(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(OriginalPayload::Raw)
                .map_err(|err| fail(&err.to_string())),
            (_, _) => Err(fail("payload is not a string")),
        }
    }

    /// The raw body's SHA-256, for the replayed event's dedupe key.
    pub fn body_sha256_bytes(&self) -> Option<[u8; 32]> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&self.body_sha256, &mut digest).ok()?;
        Some(digest)
    }
}

/// Whether a header may be kept in a record: anything that smells of a credential is dropped, even
/// though the pipeline already filters (defence in depth).
pub fn is_storable_header(name: &str) -> bool {
    const SECRET_WORDS: [&str; 8] =
        ["signature", "authorization", "cookie", "secret", "token", "password", "api-key", "apikey"];
    let name = name.to_ascii_lowercase();
    !SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// Lower-cased names; repeated headers joined with `, ` (HTTP's list syntax).
fn kept_headers(headers: &[(String, String)]) -> BTreeMap<String, String> {
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers.iter().filter(|(name, _)| is_storable_header(name)) {
        kept.entry(name.to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    kept
}

fn rfc3339_utc<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn from_rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text).map(|at| at.with_timezone(&Utc)).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Rejection, SchemaRef};
    use bytes::Bytes;
    use serde_json::json;

    fn letter(raw: &[u8], payload: Option<Value>, reason: Reason) -> DeadLetter {
        DeadLetter {
            request_id: "req-1".into(),
            request_id_from_sender: false,
            error_count: 1,
            trace: crate::trace::TraceContext::start(),
            origin: Default::default(),
            received_at: "2026-11-28T23:59:58.5Z".parse().unwrap(),
            raw_body: Bytes::copy_from_slice(raw),
            body_sha256: Sha256::digest(raw).into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-CXone-Signature".into(), "abc".into()),
                ("Authorization".into(), "Bearer x".into()),
                ("Cookie".into(), "s=1".into()),
                ("X-Forwarded-For".into(), "10.0.0.1".into()),
                ("x-forwarded-for".into(), "10.0.0.2".into()),
            ],
            rejection: Rejection {
                reason,
                schema: payload.as_ref().map(|_| SchemaRef { id: "urn:s".into(), version: "1".into() }),
                errors: vec![FieldError {
                    instance_path: "/data/channel".into(),
                    schema_path: "/properties/data/properties/channel/enum".into(),
                    keyword: "enum".into(),
                    message: "not one of voice, chat".into(),
                }],
                coercions: vec![],
                correlation_id: payload.as_ref().map(|_| "c-1".into()),
                payload,
            },
        }
    }

    fn schema_errors(record: &DeadLetterRecord) -> Vec<String> {
        let schema: Value = serde_json::from_str(RECORD_SCHEMA).unwrap();
        let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
        let (json, _) = record.to_json();
        let instance: Value = serde_json::from_slice(&json).unwrap();
        validator.iter_errors(&instance).map(|e| format!("{} {}", e.instance_path(), e)).collect()
    }

    #[test]
    fn json_payload_record_validates_and_round_trips() {
        let payload = json!({"event": "interaction.completed", "data": {"channel": "fax"}});
        let raw = serde_json::to_vec(&payload).unwrap();
        let record = DeadLetterRecord::build(
            &letter(&raw, Some(payload.clone()), Reason::SchemaValidation),
            "2026-11-29T00:00:01Z".parse().unwrap(),
        );
        assert_eq!(record.payload_encoding, PayloadEncoding::Json);
        assert_eq!(record.original_payload().unwrap(), OriginalPayload::Json(payload));
        assert_eq!(
            record.headers.keys().collect::<Vec<_>>(),
            ["content-type", "x-forwarded-for"],
            "secrets dropped, names lower-cased"
        );
        assert_eq!(record.headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
        assert_eq!(schema_errors(&record), Vec::<String>::new());
        let (json, digest) = record.to_json();
        assert_eq!(digest, hex::encode(Sha256::digest(&json)));
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"received_at\":\"2026-11-28T23:59:58.500Z\""), "{text}");
        let back: DeadLetterRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.body_sha256_bytes().unwrap(), <[u8; 32]>::from(Sha256::digest(&raw)));
    }

    #[test]
    fn text_and_base64_payloads() {
        let text = DeadLetterRecord::build(&letter(b"{not json", None, Reason::MalformedJson), Utc::now());
        assert_eq!(text.payload_encoding, PayloadEncoding::Text);
        assert_eq!(text.payload, json!("{not json"));
        assert_eq!(text.original_payload().unwrap(), OriginalPayload::Raw(b"{not json".to_vec()));
        assert_eq!(schema_errors(&text), Vec::<String>::new());

        let raw = [0xff, 0xfe, b'{', 0x80];
        let binary = DeadLetterRecord::build(&letter(&raw, None, Reason::MalformedJson), Utc::now());
        assert_eq!(binary.payload_encoding, PayloadEncoding::Base64);
        assert_eq!(binary.original_payload().unwrap(), OriginalPayload::Raw(raw.to_vec()));
        assert_eq!(binary.body_size, 4);
        assert_eq!(binary.schema, None);
        assert_eq!(schema_errors(&binary), Vec::<String>::new());
    }

    #[test]
    fn schema_rejects_a_broken_record() {
        let mut record = DeadLetterRecord::build(&letter(b"x", None, Reason::MalformedJson), Utc::now());
        record.body_sha256 = "nothex".into();
        record.headers.insert("x-cxone-signature".into(), "abc".into());
        let errors = schema_errors(&record);
        assert!(errors.iter().any(|e| e.starts_with("/body_sha256")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("x-cxone-signature")), "{errors:?}");
    }

    #[test]
    fn record_schema_is_not_an_event_schema() {
        let schema: Value = serde_json::from_str(RECORD_SCHEMA).unwrap();
        assert!(schema.get("x-cxone-events").is_none());
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }
}
