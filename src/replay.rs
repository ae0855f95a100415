//! Replay: dead letters -> current schemas -> Kafka, exactly once per dead letter.
//!
//! For every dead letter under the prefix (limited to `dt=` partitions when dates are given) that has
//! no replay marker: fetch the record, judge its original payload with the current contract, publish
//! the ones that now pass through an [`EventSink`] (the exactly-once Kafka path), then write the marker
//! `<prefix>/_replayed/<letter id below prefix>` so that a second run skips it.
//!
//! Both object layouts are read: batch objects (`<batch id>.jsonl`, one record per line; a letter's
//! id is `<key>#<line>`, lines from 1) and the single-record objects written before batching
//! (`<request id>.json`; the letter id is the key). A single-record object already marked is not
//! fetched again; a batch object is read once to count its letters and once to replay them.
//!
//! Guarantee: each dead letter is published once per publish-then-mark. The one gap is a crash (or
//! a failed marker write) after the Kafka commit and before the marker: a re-run publishes that event
//! again — unless a shared dedupe store is configured (`dedupe.store = "redis://…"`): then every
//! publish claims the delivery (correlation id + original body hash) in the same store as the live
//! service, so a re-run, a second dead letter of the same delivery, or a live retry racing the
//! replay is answered `duplicate_of` instead of published again (within the dedupe window), and
//! `cxone-ingest replay` holds a lock ([`crate::dedupe::lock`]) so a second concurrent run refuses to
//! start. With the `memory` store the duplicate memory is per process: consumers recognise a repeat
//! by its `request_id` and `replayed_from` headers, and runs must not overlap.
//!
//! [`DeadLetterStore`] (`replay/store.rs`) is the bucket as replay reads and marks it; this file
//! decides what each letter becomes.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, SecondsFormat, Utc};
use futures::StreamExt as _;
use serde::Serialize;

use crate::contract::{Checked, ContractLookup, FieldError};
use crate::sinks::dead_letter::key;
use crate::sinks::dead_letter::{DeadLetterRecord, OriginalPayload};
use crate::sinks::{EventRecord, EventSink, Readiness};

mod store;

pub use store::DeadLetterStore;
use store::ReplayMarker;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// First `dt=` day to look at (inclusive); `None` = the oldest.
    pub since: Option<NaiveDate>,
    /// Last `dt=` day to look at (inclusive); `None` = no upper bound.
    pub until: Option<NaiveDate>,
    /// Judge only: publish nothing, mark nothing.
    pub dry_run: bool,
    /// Dead letters handled at once (fetch, check, publish, mark).
    pub concurrency: usize,
    /// How long one publish may wait for its Kafka commit.
    pub publish_timeout: Duration,
}

/// The end-of-run report, printed as JSON on stdout.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Whether this was a dry run (nothing published or marked).
    pub dry_run: bool,
    /// Dead letters found under the prefix in the date range.
    pub scanned: u64,
    /// Dead letters that already had a replay marker (not published again).
    pub skipped_already_replayed: u64,
    /// Payloads that pass the current contract.
    pub now_valid: u64,
    /// Of those, published to Kafka and marked in this run (including ones Kafka recognised as
    /// duplicates of an earlier delivery; see `duplicates`).
    pub published: u64,
    /// Published ones the Kafka sink answered as a repeat of an already committed delivery.
    pub duplicates: u64,
    /// Payloads that still fail, by reason.
    pub still_invalid_by_reason: BTreeMap<String, u64>,
    /// Dead letters that could not be fetched, parsed, published or marked.
    pub failed: u64,
    /// Per dead letter that still fails: its current errors.
    pub still_invalid: Vec<InvalidItem>,
    /// Per dead letter that passes: where it went (or would go, in a dry run).
    pub replayable: Vec<ReplayableItem>,
    /// Per failure: what went wrong.
    pub failures: Vec<FailedItem>,
}

/// A dead letter that still fails the contract.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InvalidItem {
    /// The dead letter's key.
    pub key: String,
    /// Today's reason.
    pub reason: String,
    /// Today's errors.
    pub errors: Vec<FieldError>,
}

/// A dead letter that passes the contract now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplayableItem {
    /// The dead letter's key.
    pub key: String,
    /// The event type it was recognised as.
    pub event_type: String,
    /// `topic/partition@offset` once committed; `None` in a dry run.
    pub committed_at: Option<String>,
    /// Set when Kafka already had this delivery: the request id of the first one.
    pub duplicate_of: Option<String>,
}

/// A dead letter this run could not handle.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedItem {
    /// The dead letter's key.
    pub key: String,
    /// What failed.
    pub error: String,
}

/// What happened to one dead letter.
enum Outcome {
    Skipped,
    Invalid(InvalidItem),
    Replayable(ReplayableItem),
    /// `now_valid`: the payload passed the contract and only the publish or the marker failed.
    Failed {
        item: FailedItem,
        now_valid: bool,
    },
}

/// Replays the dead letters `store` holds, each judged by the contract `contracts` gives its
/// source (a [`crate::contract::Contract`] judges all alike). `sink` may be `None` only for a dry run. `on_progress` is
/// called with the number of dead letters found, then once per dead letter handled.
pub async fn replay(
    store: &DeadLetterStore,
    contracts: &dyn ContractLookup,
    sink: Option<&dyn EventSink>,
    options: &ReplayOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<Summary> {
    anyhow::ensure!(options.dry_run || sink.is_some(), "replay needs an event sink unless it is a dry run");
    if let (false, Some(sink)) = (options.dry_run, sink) {
        wait_until_ready(sink, options.publish_timeout).await?;
    }
    let keys = store.list_dead_letters(options).await?;
    let markers = store.list_markers(options).await?;
    let (objects, total) = count_letters(store, keys, options.concurrency).await;
    on_progress(Progress::Found(total));
    let mut summary = Summary { dry_run: options.dry_run, scanned: total, ..Summary::default() };
    let markers = &markers;
    let mut outcomes = futures::stream::iter(objects)
        .map(|object| letters_to_replay(store, object, markers))
        .buffered(2)
        .flat_map(futures::stream::iter)
        .map(|letter| async move {
            match letter {
                Letter::Marked => Outcome::Skipped,
                Letter::Unreadable { id, error } => {
                    Outcome::Failed { item: FailedItem { key: id, error }, now_valid: false }
                }
                Letter::Record { id, record } => {
                    replay_one(store, contracts, sink, options, id, *record).await
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some(outcome) = outcomes.next().await {
        on_progress(Progress::Handled);
        match outcome {
            Outcome::Skipped => summary.skipped_already_replayed += 1,
            Outcome::Invalid(item) => {
                *summary.still_invalid_by_reason.entry(item.reason.clone()).or_default() += 1;
                summary.still_invalid.push(item);
            }
            Outcome::Replayable(item) => {
                summary.now_valid += 1;
                if item.committed_at.is_some() {
                    summary.published += 1;
                }
                if item.duplicate_of.is_some() {
                    summary.duplicates += 1;
                }
                summary.replayable.push(item);
            }
            Outcome::Failed { item, now_valid } => {
                summary.now_valid += u64::from(now_valid);
                tracing::warn!(key = %item.key, error = %item.error, "replay failed for a dead letter");
                summary.failed += 1;
                summary.failures.push(item);
            }
        }
    }
    summary.still_invalid.sort_by(|a, b| a.key.cmp(&b.key));
    summary.replayable.sort_by(|a, b| a.key.cmp(&b.key));
    summary.failures.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(summary)
}

/// Waits for the event sink to report ready (a fresh Kafka producer needs a moment to initialise its
/// transactions), so that the first publishes are not refused for that alone.
async fn wait_until_ready(sink: &dyn EventSink, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match sink.readiness() {
            Readiness::Ready => return Ok(()),
            Readiness::NotReady(why) if Instant::now() >= deadline => {
                anyhow::bail!("the event sink is not ready after {} ms: {why}", timeout.as_millis())
            }
            Readiness::NotReady(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Progress events for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// The listing is done: this many dead letters to handle.
    Found(u64),
    /// One more handled.
    Handled,
}

/// A dead-letter object found by the listing, with how many letters it holds.
struct FoundObject {
    /// The object's key.
    key: String,
    /// Letters in it: 1 for a single-record object; for a batch object the lines counted when
    /// listing (`None` when it could not be read then: it is read again, and fails again or not).
    letters: Option<u64>,
}

/// One dead letter on its way to [`replay_one`].
enum Letter {
    /// Already replayed (its marker exists).
    Marked,
    /// Its object or its line could not be read.
    Unreadable { id: String, error: String },
    /// To judge and publish.
    Record { id: String, record: Box<DeadLetterRecord> },
}

/// Counts the letters of every object (reading each batch object once, `concurrency` at a time):
/// the run's total for the progress report and `scanned`.
async fn count_letters(
    store: &DeadLetterStore,
    keys: Vec<String>,
    concurrency: usize,
) -> (Vec<FoundObject>, u64) {
    let objects: Vec<FoundObject> = futures::stream::iter(keys)
        .map(|key| async move {
            if !key::is_batch(&key) {
                return FoundObject { key, letters: Some(1) };
            }
            let letters = store.letters(&key).await.ok().map(|letters| letters.len() as u64);
            FoundObject { key, letters }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let total = objects.iter().map(|object| object.letters.unwrap_or(1)).sum();
    (objects, total)
}

/// The letters of one object, each marked, unreadable or to replay. A single-record object that is
/// already marked is not fetched.
async fn letters_to_replay(
    store: &DeadLetterStore,
    object: FoundObject,
    markers: &HashSet<String>,
) -> Vec<Letter> {
    let is_marked = |id: &str| markers.contains(&key::marker_key(&store.prefix, id));
    if !key::is_batch(&object.key) && is_marked(&object.key) {
        return vec![Letter::Marked];
    }
    match store.letters(&object.key).await {
        Ok(letters) => letters
            .into_iter()
            .map(|(id, record)| match record {
                _ if is_marked(&id) => Letter::Marked,
                Ok(record) => Letter::Record { id, record: Box::new(record) },
                Err(err) => Letter::Unreadable { id, error: format!("{err:#}") },
            })
            .collect(),
        Err(err) => {
            let error = format!("{err:#}");
            let count = object.letters.unwrap_or(1).max(1);
            (0..count).map(|_| Letter::Unreadable { id: object.key.clone(), error: error.clone() }).collect()
        }
    }
}

async fn replay_one(
    store: &DeadLetterStore,
    contracts: &dyn ContractLookup,
    sink: Option<&dyn EventSink>,
    options: &ReplayOptions,
    key: String,
    record: DeadLetterRecord,
) -> Outcome {
    let failed = |key: &str, error: String| Outcome::Failed {
        item: FailedItem { key: key.to_owned(), error },
        now_valid: false,
    };
    let failed_valid = |key: &str, error: String| Outcome::Failed {
        item: FailedItem { key: key.to_owned(), error },
        now_valid: true,
    };
    let Some(body_sha256) = record.body_sha256_bytes() else {
        return failed(&key, "record has no valid body_sha256".to_owned());
    };
    let contract = contracts.for_source(record.source.as_deref());
    let checked = match record.original_payload() {
        Ok(OriginalPayload::Json(value)) => contract.check_value(value),
        Ok(OriginalPayload::Raw(bytes)) => contract.check(&bytes),
        Err(err) => return failed(&key, err.to_string()),
    };
    let event = match checked {
        Checked::Invalid(rejection) => {
            return Outcome::Invalid(InvalidItem {
                key,
                reason: rejection.reason.as_str().to_owned(),
                errors: rejection.errors,
            });
        }
        Checked::Valid(event) => event,
    };
    let event_type = event.event_type.to_string();
    let sink = match (options.dry_run, sink) {
        (false, Some(sink)) => sink,
        _ => {
            return Outcome::Replayable(ReplayableItem {
                key,
                event_type,
                committed_at: None,
                duplicate_of: None,
            });
        }
    };
    let event_record = EventRecord {
        request_id: record.request_id.clone(),
        received_at: record.received_at,
        body_sha256,
        event,
        replayed_from: Some(key.clone()),
        // A replay is one more hop of the delivery's trace, when the record kept one.
        trace: crate::trace::TraceContext::continue_or_start(
            record.trace.as_ref().map(|trace| trace.traceparent.as_bytes()),
            record.trace.as_ref().and_then(|trace| trace.tracestate.as_deref()).map(str::as_bytes),
        ),
        origin: Default::default(),
    };
    let committed = match sink.publish(event_record, Instant::now() + options.publish_timeout).await {
        Ok(committed) => committed,
        Err(err) => return failed_valid(&key, format!("publish: {err}")),
    };
    let marker = ReplayMarker {
        dead_letter_key: &key,
        request_id: &record.request_id,
        replayed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        topic: &committed.topic,
        partition: committed.partition,
        offset: committed.offset,
        duplicate_of: committed.duplicate_of.as_deref(),
    };
    if let Err(err) = store.mark(&key, &marker).await {
        return failed_valid(&key, format!("{err:#}"));
    }
    tracing::info!(key = %key, request_id = %record.request_id, topic = %committed.topic,
        partition = committed.partition, offset = committed.offset, "dead letter replayed");
    Outcome::Replayable(ReplayableItem {
        key,
        event_type,
        committed_at: Some(format!("{}/{}@{}", committed.topic, committed.partition, committed.offset)),
        duplicate_of: committed.duplicate_of,
    })
}

/// Parses a `--since`/`--until` day (`YYYY-MM-DD`, UTC).
pub fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|err| format!("expected YYYY-MM-DD: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse() {
        assert_eq!(parse_day("2026-11-28"), Ok(NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()));
        assert!(parse_day("28/11/2026").is_err());
    }

    #[test]
    fn summary_json_has_the_documented_fields() {
        let summary = Summary { scanned: 3, ..Summary::default() };
        let json = serde_json::to_value(&summary).unwrap();
        for field in [
            "scanned",
            "now_valid",
            "published",
            "still_invalid_by_reason",
            "skipped_already_replayed",
            "failed",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }
}
