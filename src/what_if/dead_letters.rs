//! Reading one prefix's recent dead letters, read-only, through replay's [`DeadLetterStore`]: the
//! `dt=` partitions the window touches, each letter kept when its `received_at` is within the
//! window, already replayed ones (with a marker) set aside, at most `limit` judged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use futures::StreamExt as _;
use serde::Serialize;

use super::Window;
use super::tally::{Judge, Tally};
use crate::replay::{DeadLetterStore, ReplayOptions};
use crate::sinks::dead_letter::key;

/// Objects fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// What was read under one prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrefixRead {
    /// The dead-letter prefix.
    pub prefix: String,
    /// Dead letters judged (received within the window, not replayed yet).
    pub letters: u64,
    /// Of those, the ones NEW accepts: replay candidates.
    pub would_accept: u64,
    /// Dead letters within the window that already have a replay marker: not judged.
    pub already_replayed: u64,
    /// Objects or lines that could not be read or parsed as dead-letter records.
    pub unreadable: u64,
    /// Whether `--limit` stopped the read before the end of the window.
    pub limited: bool,
    /// The `dt=` partition (UTC day) of the oldest replay candidate: where `replay --since` starts.
    pub first_candidate_day: Option<NaiveDate>,
}

/// Reads the dead letters of `window` under `store.prefix`, judging each with `judge` into `tally`
/// and calling `on_letter` after each, until `stop` is set. A listing that fails (S3 unreachable, no such bucket) is an
/// error; an object or line that cannot be read is counted in `unreadable`.
pub async fn read(
    store: &DeadLetterStore,
    window: &Window,
    limit: Option<u64>,
    judge: &Judge<'_>,
    tally: &mut Tally,
    stop: &AtomicBool,
    on_letter: &(dyn Fn() + Sync),
) -> anyhow::Result<PrefixRead> {
    let options = ReplayOptions {
        since: Some(window.since.date_naive()),
        until: Some(window.until.date_naive()),
        dry_run: true,
        concurrency: FETCH_CONCURRENCY,
        publish_timeout: Duration::ZERO,
    };
    let keys = store.list_dead_letters(&options).await?;
    let markers: HashSet<String> = store.list_markers(&options).await?;
    let mut read = PrefixRead { prefix: store.prefix.clone(), ..PrefixRead::default() };
    let mut objects = futures::stream::iter(keys)
        .map(|key| async move {
            let letters = store.letters(&key).await;
            (key, letters)
        })
        .buffered(FETCH_CONCURRENCY);
    'objects: while let Some((object, letters)) = objects.next().await {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(letters) = letters else {
            read.unreadable += 1;
            continue;
        };
        for (id, record) in letters {
            let Ok(record) = record else {
                read.unreadable += 1;
                continue;
            };
            if record.received_at < window.since || record.received_at > window.until {
                continue;
            }
            if markers.contains(&key::marker_key(&store.prefix, &id)) {
                read.already_replayed += 1;
                continue;
            }
            if limit.is_some_and(|limit| read.letters >= limit) {
                read.limited = true;
                break 'objects;
            }
            let Ok(payload) = record.original_payload() else {
                read.unreadable += 1;
                continue;
            };
            read.letters += 1;
            if judge.dead_letter(tally, payload) {
                read.would_accept += 1;
                // Replay selects by the object's `dt=` partition (its first record's day).
                let day = key::day_of_key(&store.prefix, &object).unwrap_or(record.received_at.date_naive());
                read.first_candidate_day = Some(read.first_candidate_day.map_or(day, |first| first.min(day)));
            }
            on_letter();
        }
    }
    Ok(read)
}
