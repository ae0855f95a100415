//! The exactly-once judgement: what every sender was answered, against the topic's log as the
//! oracle ([`super::oracle`]) classifies it. One rule set for the e2e, chaos and replica tests:
//! - every event acknowledged `published` has exactly one record in a COMMITTED transaction, and
//!   it is the one its answers name (the attempt itself, or the one named by `duplicate_of`), at
//!   the partition and offset they name;
//! - a record of an attempt that was not answered `published` (503, no answer) may be in an
//!   aborted or still-open transaction; in a committed one only when a later attempt of the same
//!   event was answered `duplicate_of` it (its answer was a lie by timeout, and the dedupe caught
//!   the retry). An aborted transaction somewhere excuses nothing else;
//! - no committed record comes from a request nobody sent.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::oracle::{OracleRecord, TxnOutcome, oracle_aborted_markers};

/// What one attempt was answered, as far as the topic is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// 2xx `published`: where the event's record is, and which attempt wrote it when not this one.
    Published { partition: Option<i32>, offset: Option<i64>, duplicate_of: Option<String> },
    /// Anything else: 503, another status, a sink error, or no answer at all.
    NotPublished,
}

/// One attempt at delivering one event, with the request id its record carries.
#[derive(Debug, Clone)]
pub struct SentAttempt {
    pub request_id: String,
    /// What identifies the event (e.g. its correlation id): attempts of one event share it.
    pub event: String,
    pub answered: Answered,
}

impl SentAttempt {
    /// An HTTP attempt: `published` when the status is 2xx and the answer says so.
    pub fn from_http(request_id: &str, event: &str, status: Option<u16>, answer: &Value) -> SentAttempt {
        let published = status.is_some_and(|s| (200..300).contains(&s)) && answer["status"] == "published";
        let answered = if published {
            Answered::Published {
                partition: answer["partition"].as_i64().and_then(|p| i32::try_from(p).ok()),
                offset: answer["offset"].as_i64(),
                duplicate_of: answer["duplicate_of"].as_str().map(str::to_owned),
            }
        } else {
            Answered::NotPublished
        };
        SentAttempt { request_id: request_id.to_owned(), event: event.to_owned(), answered }
    }

    /// A direct call of the Kafka sink.
    pub fn from_sink(
        request_id: &str,
        event: &str,
        result: &Result<cxone_ingest::sinks::Committed, cxone_ingest::sinks::SinkError>,
    ) -> SentAttempt {
        let answered = match result {
            Ok(c) => Answered::Published {
                partition: Some(c.partition),
                offset: Some(c.offset),
                duplicate_of: c.duplicate_of.clone(),
            },
            Err(_) => Answered::NotPublished,
        };
        SentAttempt { request_id: request_id.to_owned(), event: event.to_owned(), answered }
    }

    fn writer(&self) -> Option<&str> {
        match &self.answered {
            Answered::Published { duplicate_of, .. } => {
                Some(duplicate_of.as_deref().unwrap_or(&self.request_id))
            }
            Answered::NotPublished => None,
        }
    }
}

/// The verdict, with counts for the test's closing line.
#[derive(Debug, Default)]
pub struct Judgement {
    pub events_acknowledged: usize,
    pub committed_records: usize,
    pub aborted_records: usize,
    pub open_records: usize,
    /// ABORT markers (one per partition an aborted transaction wrote to).
    pub aborted_markers: usize,
    /// Committed records of attempts answered otherwise, whose retry was answered `duplicate_of`
    /// them: commits that outlived their answer and were caught by the dedupe.
    pub late_commits: usize,
    /// Acknowledged events whose answered writer has no committed record.
    pub missing: Vec<String>,
    /// Events with more than one committed record, or acknowledged with two different writers.
    pub duplicated: Vec<String>,
    /// Committed records of attempts not answered `published` that no `duplicate_of` names.
    pub unacknowledged_commits: Vec<String>,
    /// Committed writers elsewhere than their answer says, or `duplicate_of` naming another event.
    pub wrong: Vec<String>,
    /// Committed records with a request id no attempt had.
    pub foreign: Vec<String>,
}

impl Judgement {
    /// Every rule broken, by name.
    pub fn problems(&self) -> Vec<String> {
        let named = [
            ("missing", &self.missing),
            ("duplicated", &self.duplicated),
            ("committed but not acknowledged", &self.unacknowledged_commits),
            ("wrong", &self.wrong),
            ("never sent", &self.foreign),
        ];
        named.iter().flat_map(|(name, list)| list.iter().map(move |p| format!("{name}: {p}"))).collect()
    }

    /// One line of counts.
    pub fn summary(&self) -> String {
        format!(
            "acknowledged events {}; records committed {}, aborted {} ({} ABORT markers), open {}; late commits \
             caught by duplicate_of {}; missing {}, duplicated {}, committed but not acknowledged {}, wrong {}, \
             never sent {}",
            self.events_acknowledged,
            self.committed_records,
            self.aborted_records,
            self.aborted_markers,
            self.open_records,
            self.late_commits,
            self.missing.len(),
            self.duplicated.len(),
            self.unacknowledged_commits.len(),
            self.wrong.len(),
            self.foreign.len(),
        )
    }

    /// Panics with the first problems (and the summary) unless there are none.
    pub fn assert_exactly_once(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "exactly-once broken ({} problems; {}): {:#?}",
            problems.len(),
            self.summary(),
            &problems[..problems.len().min(20)]
        );
    }
}

/// Judges `attempts` against `log` (the topic's records, all partitions, as the oracle read them).
pub fn judge_exactly_once(attempts: &[SentAttempt], log: &[OracleRecord]) -> Judgement {
    let mut j = Judgement { aborted_markers: oracle_aborted_markers(log), ..Judgement::default() };
    let by_id: HashMap<&str, &SentAttempt> = attempts.iter().map(|a| (a.request_id.as_str(), a)).collect();
    let mut committed_by_event: BTreeMap<&str, Vec<&OracleRecord>> = BTreeMap::new();
    for r in log {
        match r.outcome {
            TxnOutcome::Committed => j.committed_records += 1,
            TxnOutcome::Aborted => j.aborted_records += 1,
            TxnOutcome::Open => j.open_records += 1,
        }
        if r.outcome != TxnOutcome::Committed {
            continue;
        }
        match by_id.get(r.request_id()) {
            Some(a) => committed_by_event.entry(a.event.as_str()).or_default().push(r),
            None => j.foreign.push(format!("{:?} at {}/{}", r.request_id(), r.partition, r.offset)),
        }
    }
    let mut by_event: BTreeMap<&str, Vec<&SentAttempt>> = BTreeMap::new();
    for a in attempts {
        by_event.entry(a.event.as_str()).or_default().push(a);
    }
    for (event, tries) in &by_event {
        let committed = committed_by_event.get(event).map_or(&[][..], Vec::as_slice);
        let writers: HashSet<&str> = tries.iter().filter_map(|a| a.writer()).collect();
        let named_by_duplicate: HashSet<&str> = tries
            .iter()
            .filter_map(|a| match &a.answered {
                Answered::Published { duplicate_of: Some(d), .. } => Some(d.as_str()),
                _ => None,
            })
            .collect();
        for d in &named_by_duplicate {
            if by_id.get(d).is_none_or(|w| w.event != *event) {
                j.wrong.push(format!("event {event}: answered duplicate_of {d}, not an attempt of it"));
            }
        }
        if committed.len() > 1 {
            let at: Vec<String> = committed
                .iter()
                .map(|r| format!("{}@{}/{}", r.request_id(), r.partition, r.offset))
                .collect();
            j.duplicated.push(format!("event {event}: {} committed records {at:?}", committed.len()));
        }
        if writers.len() > 1 {
            j.duplicated.push(format!("event {event}: acknowledged with different writers {writers:?}"));
        }
        if !writers.is_empty() {
            j.events_acknowledged += 1;
        }
        for writer in &writers {
            let Some(record) = committed.iter().find(|r| r.request_id() == *writer) else {
                let other: Vec<String> = log
                    .iter()
                    .filter(|r| r.request_id() == *writer)
                    .map(|r| format!("{:?} at {}/{}", r.outcome, r.partition, r.offset))
                    .collect();
                j.missing
                    .push(format!("event {event}: writer {writer} not committed (its records: {other:?})"));
                continue;
            };
            for a in tries.iter().filter(|a| a.writer() == Some(*writer)) {
                if let Answered::Published { partition: Some(p), offset: Some(o), .. } = &a.answered
                    && (*p, *o) != (record.partition, record.offset)
                {
                    j.wrong.push(format!(
                        "{}: answered {p}/{o}, but {writer} is committed at {}/{}",
                        a.request_id, record.partition, record.offset
                    ));
                }
            }
        }
        for record in committed {
            let Some(attempt) = by_id.get(record.request_id()) else { continue };
            if attempt.answered == Answered::NotPublished {
                if named_by_duplicate.contains(record.request_id()) {
                    j.late_commits += 1;
                } else {
                    j.unacknowledged_commits.push(format!(
                        "event {event}: {} at {}/{} committed, answered not published, and no retry was \
                         answered duplicate_of it",
                        record.request_id(),
                        record.partition,
                        record.offset
                    ));
                }
            }
        }
    }
    j
}
