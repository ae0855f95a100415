//! Object key layout: `<prefix>/dt=YYYY-MM-DD/hour=HH/<batch id>.jsonl` (Hive-style partitions that
//! Athena and Trino can prune; one record per line), the single-record layout written before
//! batching (`<request id>.json`, still read by replay), and the replay markers kept beside them
//! under `<prefix>/_replayed/`.

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

/// Longest object name kept from a request id (S3 keys may be 1024 bytes; prefixes need room).
const MAX_NAME_LEN: usize = 128;

/// Folder (under the prefix) holding one marker per replayed dead letter. Starts with `_`, which
/// Hive, Athena and Trino treat as hidden, so markers never show up as records.
pub const REPLAYED_DIR: &str = "_replayed";

/// Extension of a batch object (JSON lines).
pub const BATCH_EXTENSION: &str = ".jsonl";

/// Extension of a single-record object (the layout before batching).
pub const SINGLE_EXTENSION: &str = ".json";

/// The key of a batch object whose first record was received at `first_received_at`:
/// `<prefix>/dt=YYYY-MM-DD/hour=HH/<batch id>.jsonl`. The batch id is made by the service
/// (a UUIDv7), so nothing a sender chooses names or overwrites an object.
pub fn batch_key(prefix: &str, first_received_at: DateTime<Utc>, batch_id: &uuid::Uuid) -> String {
    format!(
        "{}{}{BATCH_EXTENSION}",
        partition_prefix(prefix, first_received_at.date_naive(), Some(first_received_at)),
        batch_id.as_hyphenated()
    )
}

/// The key of a single-record dead letter as written before batching (received at `received_at`
/// by request `request_id`): replay still reads this layout.
pub fn object_key(prefix: &str, received_at: DateTime<Utc>, request_id: &str) -> String {
    format!(
        "{}{}.json",
        partition_prefix(prefix, received_at.date_naive(), Some(received_at)),
        object_name(request_id)
    )
}

/// `<prefix>/dt=YYYY-MM-DD/` (with `hour=HH/` when an instant is given): where to list one day or hour.
pub fn partition_prefix(prefix: &str, day: NaiveDate, hour_of: Option<DateTime<Utc>>) -> String {
    let mut key = with_slash(prefix);
    key.push_str(&format!("dt={}/", day.format("%Y-%m-%d")));
    if let Some(at) = hour_of {
        key.push_str(&format!("hour={}/", at.format("%H")));
    }
    key
}

/// `<prefix>/` or the empty string.
pub fn with_slash(prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { String::new() } else { format!("{prefix}/") }
}

/// The day partition of a dead-letter object key (`.jsonl` batch or `.json` single record), or
/// `None` when the key is not a dead letter (a marker, a foreign object, another layout).
pub fn day_of_key(prefix: &str, key: &str) -> Option<NaiveDate> {
    let rest = key.strip_prefix(&with_slash(prefix))?;
    let mut parts = rest.split('/');
    let day = parts.next()?.strip_prefix("dt=")?;
    let hour = parts.next()?.strip_prefix("hour=")?;
    let name = parts.next()?;
    let stem = name.strip_suffix(BATCH_EXTENSION).or_else(|| name.strip_suffix(SINGLE_EXTENSION));
    let well_formed = hour.len() == 2
        && hour.bytes().all(|b| b.is_ascii_digit())
        && stem.is_some_and(|stem| !stem.is_empty())
        && parts.next().is_none();
    if !well_formed {
        return None;
    }
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// Whether `key` is a batch (JSON-lines) object.
pub fn is_batch(key: &str) -> bool {
    key.ends_with(BATCH_EXTENSION)
}

/// The name of one dead letter: the object key for a single-record object, `<key>#<line>`
/// (1-based) for a record in a batch object. Replay reports and marks dead letters by it.
pub fn letter_id(key: &str, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{key}#{line}"),
        None => key.to_owned(),
    }
}

/// The marker key recording that the dead letter `letter_id` (see [`letter_id`]) was replayed:
/// `<prefix>/_replayed/<letter id below prefix>`.
pub fn marker_key(prefix: &str, key: &str) -> String {
    let base = with_slash(prefix);
    let below = key.strip_prefix(&base).unwrap_or(key);
    format!("{base}{REPLAYED_DIR}/{below}")
}

/// The folder of markers for one day.
pub fn marker_day_prefix(prefix: &str, day: NaiveDate) -> String {
    marker_key(prefix, &partition_prefix(prefix, day, None))
}

/// A key-safe object name for a request id: `[A-Za-z0-9._-]` kept as is; anything else (or an
/// over-long or empty id) is replaced and a short hash of the original appended, so two different
/// ids never share a key.
pub fn object_name(request_id: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let clean = !request_id.is_empty()
        && request_id.len() <= MAX_NAME_LEN
        && request_id.chars().all(safe)
        && !request_id.starts_with('.');
    if clean {
        return request_id.to_owned();
    }
    let mut name: String =
        request_id.chars().take(MAX_NAME_LEN - 17).map(|c| if safe(c) { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, 'r');
    }
    let digest = hex::encode(&Sha256::digest(request_id.as_bytes())[..8]);
    format!("{name}-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        let at: DateTime<Utc> = "2026-11-28T07:05:00.123Z".parse().unwrap();
        assert_eq!(
            object_key("data-actions/errors/", at, "0193a1b2-c3d4"),
            "data-actions/errors/dt=2026-11-28/hour=07/0193a1b2-c3d4.json"
        );
        assert_eq!(object_key("", at, "r1"), "dt=2026-11-28/hour=07/r1.json");
        let key = object_key("/p/", at, "r1");
        assert_eq!(key, "p/dt=2026-11-28/hour=07/r1.json");
        assert_eq!(day_of_key("p", &key), NaiveDate::from_ymd_opt(2026, 11, 28));
        assert_eq!(marker_key("p", &key), "p/_replayed/dt=2026-11-28/hour=07/r1.json");
        assert_eq!(day_of_key("p", &marker_key("p", &key)), None);
        assert_eq!(day_of_key("p", "p/dt=2026-11-28/hour=7/r1.json"), None);
        assert_eq!(day_of_key("p", "p/dt=2026-11-28/hour=07/r1.json.replayed"), None);
        assert_eq!(
            marker_day_prefix("p", NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()),
            "p/_replayed/dt=2026-11-28/"
        );
    }

    #[test]
    fn batch_key_layout() {
        let at: DateTime<Utc> = "2026-11-28T07:05:00.123Z".parse().unwrap();
        let id = uuid::Uuid::now_v7();
        let key = batch_key("p/", at, &id);
        assert_eq!(key, format!("p/dt=2026-11-28/hour=07/{id}.jsonl"));
        assert!(is_batch(&key));
        assert_eq!(day_of_key("p", &key), NaiveDate::from_ymd_opt(2026, 11, 28));
        assert_eq!(letter_id(&key, Some(3)), format!("{key}#3"));
        assert_eq!(
            marker_key("p", &letter_id(&key, Some(3))),
            format!("p/_replayed/dt=2026-11-28/hour=07/{id}.jsonl#3")
        );
        assert_eq!(day_of_key("p", &marker_key("p", &key)), None);
        assert_eq!(day_of_key("p", "p/dt=2026-11-28/hour=07/.jsonl"), None);
        assert_eq!(day_of_key("p", "p/dt=2026-11-28/hour=07/x.jsonl#2"), None);
    }

    #[test]
    fn request_ids_are_made_key_safe_without_collisions() {
        assert_eq!(object_name("abc-123_X.y"), "abc-123_X.y");
        let a = object_name("../etc/passwd");
        let b = object_name("__/etc/passwd");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{a}");
        assert!(!a.starts_with('.'));
        assert_ne!(a, b);
        assert!(object_name("").starts_with('r'));
        assert!(object_name(&"x".repeat(500)).len() <= MAX_NAME_LEN);
    }
}
