//! What the sender is told: [`Outcome`], its status and `Retry-After`, and its JSON answer,
//! kept within 32 KiB whatever the payload (CXone Studio reads no more).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::contract::{FieldError, Reason, SchemaRef};
use crate::metrics as m;
use crate::sinks::{Committed, Stored};

/// Why a delivery must be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// A sink reported it could not make the write durable.
    SinkUnavailable { sink: &'static str, detail: String },
    /// The request deadline passed before a sink confirmed the write.
    DeadlineExceeded,
}

/// How a delivery ended. Exactly one per request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Valid, and the Kafka transaction holding it committed.
    Published { event_type: Arc<str>, correlation_id: String, committed: Committed },
    /// Not valid (or not JSON, or refused by Kafka), and the dead-letter object is stored;
    /// retrying would not help.
    DeadLettered {
        reason: Reason,
        schema: Option<SchemaRef>,
        correlation_id: Option<String>,
        /// The first `max_reported_errors` errors.
        errors: Vec<FieldError>,
        /// How many errors were found in all.
        error_count: usize,
        stored: Stored,
    },
    /// Nothing was acknowledged anywhere; the sender should try again after `retry_after`.
    Retry { reason: RetryReason, retry_after: Duration },
    /// A bound was reached: every in-flight slot was taken (nothing was looked at), or a sink's
    /// bounded queue was full (nothing was written).
    Overloaded { retry_after: Duration },
}

impl Outcome {
    /// The HTTP status the sender gets.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Published { .. } | Outcome::DeadLettered { .. } => 200,
            Outcome::Retry { .. } | Outcome::Overloaded { .. } => 503,
        }
    }

    /// The `Retry-After` to send, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Outcome::Retry { retry_after, .. } | Outcome::Overloaded { retry_after } => Some(*retry_after),
            Outcome::Published { .. } | Outcome::DeadLettered { .. } => None,
        }
    }

    /// The outcome's name in the answer, the log and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Published { .. } => "published",
            Outcome::DeadLettered { .. } => "dead_lettered",
            Outcome::Retry { reason: RetryReason::SinkUnavailable { .. }, .. } => "sink_unavailable",
            Outcome::Retry { reason: RetryReason::DeadlineExceeded, .. } => "deadline_exceeded",
            Outcome::Overloaded { .. } => "overloaded",
        }
    }

    /// The JSON answer body (see docs/server.md, "Response contract"): at most
    /// [`MAX_ANSWER_BYTES`] whatever the payload. An answer that would be longer has its long texts
    /// shortened and as many errors as fit, and says `answer_truncated` (the dead letter keeps
    /// every detail).
    pub fn response_json(&self, request_id: &str) -> Vec<u8> {
        let full = self.render(request_id, None);
        if full.len() <= MAX_ANSWER_BYTES {
            return full;
        }
        m::count(m::ANSWERS_TRUNCATED, &[], 1);
        let shortened = self.shortened(request_id);
        if shortened.len() <= MAX_ANSWER_BYTES {
            return shortened;
        }
        // Unreachable with the bounds above; never send more than the sender reads.
        serde_json::to_vec(&AnswerBody::Retry { request_id, reason: self.label(), retry_after_secs: 0 })
            .unwrap_or_default()
    }

    /// The answer with every sender-chosen text cut to [`SHORTENED_TEXT_CHARS`] and the errors
    /// that fit.
    fn shortened(&self, request_id: &str) -> Vec<u8> {
        let correlation_id = match self {
            Outcome::Published { correlation_id, .. } => Some(correlation_id.as_str()),
            Outcome::DeadLettered { correlation_id, .. } => correlation_id.as_deref(),
            Outcome::Retry { .. } | Outcome::Overloaded { .. } => None,
        }
        .map(|id| shorten_text(id, SHORTENED_TEXT_CHARS));
        let Outcome::DeadLettered { errors, .. } = self else {
            return self.render(request_id, Some(Shortened { correlation_id, errors: Vec::new() }));
        };
        let empty = self.render(
            request_id,
            Some(Shortened { correlation_id: correlation_id.clone(), errors: Vec::new() }),
        );
        // Each error costs its JSON and a comma; keep the first ones that fit (with room to spare).
        let mut room = MAX_ANSWER_BYTES.saturating_sub(empty.len() + 64);
        let mut kept = Vec::new();
        for error in errors {
            let error = FieldError {
                instance_path: shorten_text(&error.instance_path, SHORTENED_TEXT_CHARS),
                schema_path: shorten_text(&error.schema_path, SHORTENED_TEXT_CHARS),
                keyword: shorten_text(&error.keyword, SHORTENED_TEXT_CHARS),
                message: shorten_text(&error.message, SHORTENED_TEXT_CHARS),
            };
            let cost = serde_json::to_vec(&error).map_or(usize::MAX, |json| json.len() + 1);
            if cost > room {
                break;
            }
            room -= cost;
            kept.push(error);
        }
        self.render(request_id, Some(Shortened { correlation_id, errors: kept }))
    }

    /// Serializes the answer, with `shortened` texts and errors in place of the outcome's own.
    fn render(&self, request_id: &str, shortened: Option<Shortened>) -> Vec<u8> {
        let answer_truncated = shortened.is_some();
        let short = shortened.unwrap_or_default();
        let body = match self {
            Outcome::Published { event_type, correlation_id, committed } => AnswerBody::Published {
                request_id,
                correlation_id: match &short.correlation_id {
                    Some(id) if answer_truncated => id.as_str(),
                    _ => correlation_id.as_str(),
                },
                event: event_type,
                topic: &committed.topic,
                partition: committed.partition,
                offset: committed.offset,
                duplicate_of: committed.duplicate_of.as_deref(),
                answer_truncated,
            },
            Outcome::DeadLettered { reason, schema, correlation_id, errors, error_count, stored } => {
                let errors: &[FieldError] = if answer_truncated { &short.errors } else { errors };
                AnswerBody::DeadLettered {
                    request_id,
                    key: &stored.key,
                    line: stored.line,
                    reason: *reason,
                    correlation_id: if answer_truncated {
                        short.correlation_id.as_deref()
                    } else {
                        correlation_id.as_deref()
                    },
                    schema: schema.as_ref(),
                    errors,
                    error_count: *error_count,
                    errors_truncated: *error_count > errors.len(),
                    answer_truncated,
                }
            }
            Outcome::Retry { retry_after, .. } | Outcome::Overloaded { retry_after } => AnswerBody::Retry {
                request_id,
                reason: self.label(),
                retry_after_secs: retry_after.as_secs(),
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"status":"error"}"#.to_vec())
    }
}

/// Largest webhook answer body, in bytes: CXone Studio's REST API action reads at most 32 KB.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024;

/// Longest sender-chosen text (a path, a message, a correlation id) in a shortened answer, in characters.
const SHORTENED_TEXT_CHARS: usize = 120;

/// What a shortened answer says instead of the outcome's own texts.
#[derive(Default)]
struct Shortened {
    correlation_id: Option<String>,
    errors: Vec<FieldError>,
}

/// `text` cut to `max` characters, ending in `…` when cut.
fn shorten_text(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The wire shape of [`Outcome::response_json`].
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum AnswerBody<'a> {
    Published {
        request_id: &'a str,
        correlation_id: &'a str,
        event: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        duplicate_of: Option<&'a str>,
        /// Set when the answer had to be shortened to fit [`MAX_ANSWER_BYTES`].
        #[serde(skip_serializing_if = "is_false")]
        answer_truncated: bool,
    },
    DeadLettered {
        request_id: &'a str,
        /// The object holding the record (a batch of dead letters, one per line).
        key: &'a str,
        /// The record's line in that object, from 1.
        line: u64,
        reason: Reason,
        #[serde(skip_serializing_if = "Option::is_none")]
        correlation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        schema: Option<&'a SchemaRef>,
        errors: &'a [FieldError],
        error_count: usize,
        errors_truncated: bool,
        /// Set when the answer had to be shortened to fit [`MAX_ANSWER_BYTES`].
        #[serde(skip_serializing_if = "is_false")]
        answer_truncated: bool,
    },
    Retry {
        request_id: &'a str,
        reason: &'a str,
        retry_after_secs: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_lettered(errors: usize, text: &str) -> Outcome {
        let error = FieldError {
            instance_path: format!("/data/{text}"),
            schema_path: "/properties/data/additionalProperties".to_owned(),
            keyword: "additionalProperties".to_owned(),
            message: format!("{text:?} was unexpected"),
        };
        Outcome::DeadLettered {
            reason: Reason::SchemaValidation,
            schema: None,
            correlation_id: Some(text.to_owned()),
            errors: vec![error; errors],
            error_count: errors * 3,
            stored: Stored { bucket: "b".to_owned(), key: "k".to_owned(), line: 1 },
        }
    }

    #[test]
    fn small_answers_are_untouched() {
        let answer: serde_json::Value =
            serde_json::from_slice(&dead_lettered(3, "short").response_json("r")).unwrap();
        assert_eq!(answer["errors"].as_array().map(Vec::len), Some(3));
        assert!(answer.get("answer_truncated").is_none());
        assert_eq!(answer["correlation_id"], "short");
    }

    /// The worst cases: long texts, texts that grow sixfold when escaped, many errors.
    #[test]
    fn every_answer_fits_32_kib_and_says_when_it_was_shortened() {
        for (errors, text) in [
            (100, "k".repeat(8_000)),
            (10_000, "k".repeat(10)),
            (100, "\u{1}".repeat(100_000)),
            (0, "c".repeat(1_000_000)),
        ] {
            let json = dead_lettered(errors, &text).response_json("r");
            assert!(
                json.len() <= MAX_ANSWER_BYTES,
                "{errors} errors of {} chars: {} bytes",
                text.len(),
                json.len()
            );
            let answer: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(answer["answer_truncated"], true);
            assert_eq!(answer["errors_truncated"], errors > 0);
            assert!(
                answer["correlation_id"]
                    .as_str()
                    .is_some_and(|id| id.chars().count() <= SHORTENED_TEXT_CHARS + 1)
            );
            if errors > 0 {
                assert!(!answer["errors"].as_array().unwrap().is_empty(), "some errors still fit");
            }
        }
    }
}
