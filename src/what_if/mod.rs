//! What-if: recent real traffic judged by a new schema set, tallied per family, read-only.
//!
//! `cxone-ingest schemas what-if --schemas NEW_DIR` reads, for the configured topics and
//! dead-letter prefixes (every `[[sources]]`' own included, each once), what arrived within the
//! window, and runs it through the NEW contract:
//!
//! - [`topic`]: the committed records of each topic (`read_committed`, partitions assigned, no
//!   group, nothing committed), from `offsets_for_times(window start)` up to the high watermark
//!   taken at start; the start-up probe's record (header `cxone_ingest_probe`) is skipped;
//! - [`dead_letters`]: the dead letters received within the window, read with replay's
//!   [`DeadLetterStore`](crate::replay::DeadLetterStore), already replayed ones set aside;
//! - [`tally`]: per family, still valid / newly invalid (with the most frequent error paths) and
//!   still rejected / NEW would accept (replay candidates);
//! - [`render`]: the tally as tables for people, or as one JSON object.
//!
//! Nothing is written anywhere: no offsets, no markers, no records.

pub mod dead_letters;
pub mod render;
pub mod report;
pub mod tally;
pub mod topic;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::contract::Contract;
use crate::replay::DeadLetterStore;
use crate::sinks::dead_letter::writer::{SdkRetries, build_client};
use report::{ReplayInvocation, Report};
use tally::{Judge, Tally};

/// Reads every place of `config` within `window` (topics on a thread of their own, dead letters on
/// `runtime`, at the same time), judges what it finds with `contract` (NEW) and reports.
/// `on_progress` is called once per record or dead letter judged. Kafka or S3 that cannot be
/// reached, a missing topic or bucket: an error naming it.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    contract: &Contract,
    invocation: &ReplayInvocation,
    window: Window,
    limit: Option<u64>,
    on_progress: &(dyn Fn() + Sync),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let places = Places::of(config);
    let judge = Judge::new(contract);
    // Set by the side that fails, so that the other stops early: the error is what is reported.
    let failed = AtomicBool::new(false);
    let failed = &failed;
    let (topics, prefixes) = std::thread::scope(|scope| {
        let topics = scope.spawn(|| {
            let mut tally = Tally::default();
            let mut reads = Vec::new();
            for topic in &places.topics {
                let mut on_value = |value: &[u8]| {
                    judge.topic_record(&mut tally, value);
                    on_progress();
                };
                let read = topic::read(&config.kafka, topic, &window, limit, failed, &mut on_value);
                failed.fetch_or(read.is_err(), Ordering::Relaxed);
                reads.push(read?);
            }
            anyhow::Ok((reads, tally))
        });
        let prefixes = runtime.block_on(async {
            let client = build_client(&config.dead_letter, SdkRetries::Standard).await?;
            let mut tally = Tally::default();
            let mut reads = Vec::new();
            for prefix in &places.prefixes {
                let store = DeadLetterStore {
                    client: client.clone(),
                    bucket: config.dead_letter.bucket.clone(),
                    prefix: prefix.clone(),
                };
                let read =
                    dead_letters::read(&store, &window, limit, &judge, &mut tally, failed, on_progress).await;
                reads.push(read.with_context(|| {
                    format!("the dead letters under s3://{}/{prefix} cannot be read", store.bucket)
                })?);
            }
            anyhow::Ok((reads, tally))
        });
        failed.fetch_or(prefixes.is_err(), Ordering::Relaxed);
        let topics = topics.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (topics, prefixes)
    });
    // A side stopped early by the other's failure reports its partial read as Ok: the failure is
    // the answer.
    let (prefix_reads, letters) = prefixes?;
    let (topic_reads, mut tally) = topics?;
    tally.merge(letters);
    Ok(Report::new(
        invocation,
        window,
        limit,
        started.elapsed().as_secs_f64(),
        topic_reads,
        prefix_reads,
        tally,
    ))
}

/// The stretch of time looked at: `since` up to `until` (the start of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// The window start (`now - --since`).
    pub since: DateTime<Utc>,
    /// When the run started: records arriving after it are not read.
    pub until: DateTime<Utc>,
}

impl Window {
    /// The window of the last `span`, ending now.
    pub fn last(span: Duration) -> Window {
        let until = Utc::now();
        let span = chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX);
        let since = until.checked_sub_signed(span).unwrap_or(DateTime::<Utc>::MIN_UTC);
        Window { since, until }
    }
}

/// Where recent traffic is read from: every topic events can go to and every dead-letter prefix,
/// each once (several `[[sources]]` may share one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// `kafka.topic`, the `kafka.topics` routes and every source's `topic`, sorted, deduplicated.
    pub topics: Vec<String>,
    /// `dead_letter.prefix` and every source's `dead_letter_prefix` (without surrounding `/`),
    /// sorted, deduplicated.
    pub prefixes: Vec<String>,
}

impl Places {
    /// The places of a loaded configuration.
    pub fn of(config: &Config) -> Places {
        let topics = config.kafka.all_topics();
        let mut prefixes: Vec<String> = std::iter::once(config.dead_letter.normalized_prefix())
            .chain(config.sources.iter().filter_map(|source| source.dead_letter_prefix.as_deref()))
            .map(|prefix| prefix.trim_matches('/').to_owned())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        Places { topics, prefixes }
    }
}

/// Parses a `--since` span: a whole number followed by `s`, `m`, `h` or `d` (`90m`, `24h`, `7d`).
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a whole number and a unit (s, m, h, d), e.g. 24h; got {text:?}"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use s, m, h or d (e.g. 24h)")),
    };
    let total = number.checked_mul(seconds).filter(|total| *total > 0 && *total <= 3_660 * 86_400);
    total.map(Duration::from_secs).ok_or_else(|| format!("{text:?} is out of range: from 1s to 3660d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_with_their_unit() {
        assert_eq!(parse_span("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_span("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_span("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_span("30s"), Ok(Duration::from_secs(30)));
        for bad in ["", "24", "h", "0h", "24x", "-1h", "99999d"] {
            assert!(parse_span(bad).is_err(), "{bad:?}");
        }
    }
}
