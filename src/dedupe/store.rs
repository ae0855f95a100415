//! What a shared claim is: its key, its two states as stored (JSON), and the store's errors.
//!
//! A delivery (correlation id + raw-body SHA-256) has at most one claim in the shared store,
//! created atomically by the replica that publishes it. It is *pending* while that replica's
//! transaction runs (with the record's offsets once the delivery report gave them, written before
//! the commit), *committed* after (what every repeat is answered with), and deleted by its owner
//! when the transaction definitely did not commit.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sinks::Committed;

/// Prefix of every claim key.
pub const KEY_PREFIX: &str = "cxone-ingest:dedupe:";

/// `cxone-ingest:dedupe:` + hex SHA-256 of (correlation id, 0x00, body SHA-256).
pub fn claim_key(correlation_id: &str, body_sha256: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(correlation_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(body_sha256);
    format!("{KEY_PREFIX}{}", hex::encode(hasher.finalize()))
}

/// Where the claimed record landed in Kafka (from its delivery report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// When they were written (Unix ms), just before the commit was asked for: the claim's
    /// transaction has surely ended `kafka.call_timeout_ms` + `kafka.transaction_timeout_ms` after
    /// this. Absent in claims written by 0.1 (read as `claimed_at` + the longest request deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<u64>,
}

/// A claim's value in the store. Fields this build does not know are ignored, so that a later
/// version's claims are still read during a rolling upgrade (and this one's by 0.1, which ignores
/// unknown fields inside `offsets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClaimState {
    /// Being published by `owner`; the outcome is not known yet.
    Pending {
        /// The replica publishing it (`kafka.instance_id`, else the transactional id): a claim
        /// of this very replica with no request of it in flight is an orphan it may take back.
        owner: String,
        /// The request that claimed it: the `request_id` header of its record, and the
        /// `duplicate_of` every repeat is answered with once it committed.
        request_id: String,
        /// When it was claimed (Unix ms): a claim without offsets older than the transaction
        /// timeout belongs to an owner that is gone (a commit needs its offsets written first, so
        /// taking it over never duplicates).
        claimed_at: u64,
        /// Set just before the commit: where the record is, for reading it back.
        offsets: Option<Offsets>,
    },
    /// Its transaction committed.
    Committed {
        /// The request whose record it is (`duplicate_of` for repeats).
        request_id: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
}

impl ClaimState {
    /// The value as stored.
    pub fn to_json(&self) -> String {
        // Plain strings and integers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored value; `None` for anything this build does not understand.
    pub fn parse(text: &str) -> Option<ClaimState> {
        serde_json::from_str(text).ok()
    }

    /// A committed claim as the answer to a repeat (`duplicate_of` = the first request).
    pub fn as_duplicate(&self) -> Option<Committed> {
        match self {
            ClaimState::Committed { request_id, topic, partition, offset } => Some(Committed {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                duplicate_of: Some(request_id.clone()),
            }),
            ClaimState::Pending { .. } => None,
        }
    }
}

/// Milliseconds since the Unix epoch (the `claimed_at` clock: wall time, shared by replicas).
pub fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// Why a call to the shared store failed. Every one means "not known": the request is answered
/// 503 and the sender retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Not connected, refused, timed out, or an error reply.
    #[error("dedupe store unavailable: {0}")]
    Unavailable(String),
    /// A value this build cannot read (another version's, or not ours).
    #[error("dedupe store holds an unreadable value under {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_states_round_trip() {
        let key = claim_key("c-1", &[7; 32]);
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64, "{key}");
        assert_ne!(key, claim_key("c-1", &[8; 32]));
        assert_ne!(key, claim_key("c-2", &[7; 32]));
        let pending = ClaimState::Pending {
            owner: "a".into(),
            request_id: "r".into(),
            claimed_at: 5,
            offsets: Some(Offsets { topic: "t".into(), partition: 1, offset: 9, written_at: Some(7) }),
        };
        let json = pending.to_json();
        assert!(json.contains("\"state\":\"pending\""), "{json}");
        assert_eq!(ClaimState::parse(&json), Some(pending.clone()));
        assert_eq!(pending.as_duplicate(), None);
        let committed =
            ClaimState::Committed { request_id: "r".into(), topic: "t".into(), partition: 1, offset: 9 };
        assert_eq!(committed.as_duplicate().and_then(|c| c.duplicate_of), Some("r".to_owned()));
        assert_eq!(ClaimState::parse("not json"), None);
    }

    /// Rolling upgrade: claims written by 0.1 (no `written_at`) are read, and so are claims of a
    /// later version carrying fields this one does not know.
    #[test]
    fn claims_of_the_previous_and_the_next_version_are_read() {
        let v0_1 = r#"{"state":"pending","owner":"a","request_id":"r","claimed_at":5,"offsets":{"topic":"t","partition":1,"offset":9}}"#;
        let Some(ClaimState::Pending { offsets: Some(offsets), .. }) = ClaimState::parse(v0_1) else {
            panic!("0.1 claim not read: {v0_1}");
        };
        assert_eq!(offsets, Offsets { topic: "t".into(), partition: 1, offset: 9, written_at: None });
        let later =
            r#"{"state":"committed","request_id":"r","topic":"t","partition":1,"offset":9,"epoch":3}"#;
        assert!(matches!(ClaimState::parse(later), Some(ClaimState::Committed { .. })), "{later}");
        // What 0.1 needs to read this version's claims: no new field outside `offsets`.
        let pending = ClaimState::Pending {
            owner: "a".into(),
            request_id: "r".into(),
            claimed_at: 5,
            offsets: Some(Offsets { topic: "t".into(), partition: 1, offset: 9, written_at: Some(6) }),
        };
        let json: serde_json::Value = serde_json::from_str(&pending.to_json()).unwrap();
        let mut fields: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["claimed_at", "offsets", "owner", "request_id", "state"]);
    }
}
