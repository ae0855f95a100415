//! The tally: each record or dead letter judged by the NEW contract and counted under its family
//! (the `x-cxone-events` of the NEW schema serving its `event`), with the most frequent errors.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::contract::{Checked, Contract, FieldError, SchemaRef};
use crate::sinks::dead_letter::OriginalPayload;

/// The family of an event NEW has no schema for.
pub const UNKNOWN_IN_NEW: &str = "unknown in NEW";
/// The "family" of a payload that is not a JSON object with a string `event`.
pub const NOT_AN_EVENT: &str = "(not an event)";
/// How many error paths are reported per family and side.
pub const TOP_ERRORS: usize = 5;

/// Judges payloads with the NEW contract and knows each event's family.
pub struct Judge<'a> {
    contract: &'a Contract,
    /// `event` value -> (family label, events, schema).
    families: HashMap<String, (String, Vec<String>, SchemaRef)>,
}

/// One family's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FamilyTally {
    /// The family's `event` values in NEW (empty for [`UNKNOWN_IN_NEW`] and [`NOT_AN_EVENT`]).
    pub events: Vec<String>,
    /// The NEW schema serving it, if any.
    pub schema: Option<SchemaRef>,
    /// Committed topic records.
    pub topic: TopicCounts,
    /// Dead letters (not yet replayed).
    pub dead_letters: LetterCounts,
}

/// Topic records of a family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicCounts {
    /// Records read.
    pub records: u64,
    /// Records NEW accepts.
    pub still_valid: u64,
    /// Records NEW refuses: once published as valid, they would be dead-lettered under NEW.
    pub newly_invalid: u64,
    /// Why, most frequent first.
    pub errors: ErrorPaths,
}

/// Dead letters of a family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LetterCounts {
    /// Dead letters read.
    pub letters: u64,
    /// Dead letters NEW refuses too.
    pub still_rejected: u64,
    /// Dead letters NEW accepts: candidates for `replay` with the NEW schemas.
    pub would_accept: u64,
    /// Why the rejected ones still are, most frequent first.
    pub errors: ErrorPaths,
}

/// Error counts by (instance path, keyword); serialized as the top [`TOP_ERRORS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPaths(HashMap<(String, String), u64>);

/// One error path and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorPath {
    /// JSON pointer into the payload (`/data/channel`; empty for the root).
    pub instance_path: String,
    /// The failing keyword (`enum`, `required`, ...).
    pub keyword: String,
    /// Payloads failing there (an error is counted once per payload).
    pub count: u64,
}

impl ErrorPaths {
    fn add(&mut self, errors: &[FieldError]) {
        let mut seen: Vec<(&str, &str)> = Vec::with_capacity(errors.len());
        for error in errors {
            let path = (error.instance_path.as_str(), error.keyword.as_str());
            if !seen.contains(&path) {
                seen.push(path);
                *self.0.entry((path.0.to_owned(), path.1.to_owned())).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: ErrorPaths) {
        for (path, count) in other.0 {
            *self.0.entry(path).or_default() += count;
        }
    }

    /// The `n` most frequent, ties by path and keyword.
    pub fn top(&self, n: usize) -> Vec<ErrorPath> {
        let mut all: Vec<ErrorPath> = self
            .0
            .iter()
            .map(|((instance_path, keyword), count)| ErrorPath {
                instance_path: instance_path.clone(),
                keyword: keyword.clone(),
                count: *count,
            })
            .collect();
        all.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.instance_path, &a.keyword).cmp(&(&b.instance_path, &b.keyword)))
        });
        all.truncate(n);
        all
    }
}

impl Serialize for ErrorPaths {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.top(TOP_ERRORS).serialize(serializer)
    }
}

/// Every family's counts, by family label (its events joined with `, `).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub families: BTreeMap<String, FamilyTally>,
}

impl Tally {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: Tally) {
        for (label, theirs) in other.families {
            let mine = self.families.entry(label).or_default();
            if mine.schema.is_none() {
                mine.events = theirs.events;
                mine.schema = theirs.schema;
            }
            mine.topic.records += theirs.topic.records;
            mine.topic.still_valid += theirs.topic.still_valid;
            mine.topic.newly_invalid += theirs.topic.newly_invalid;
            mine.topic.errors.merge(theirs.topic.errors);
            mine.dead_letters.letters += theirs.dead_letters.letters;
            mine.dead_letters.still_rejected += theirs.dead_letters.still_rejected;
            mine.dead_letters.would_accept += theirs.dead_letters.would_accept;
            mine.dead_letters.errors.merge(theirs.dead_letters.errors);
        }
    }
}

impl<'a> Judge<'a> {
    /// A judge for the NEW contract.
    pub fn new(contract: &'a Contract) -> Judge<'a> {
        let mut families = HashMap::new();
        for info in contract.schemas() {
            let label = info.events.join(", ");
            for event in &info.events {
                families.insert(event.clone(), (label.clone(), info.events.clone(), info.schema.clone()));
            }
        }
        Judge { contract, families }
    }

    /// The family entry of a payload, by its `event`.
    fn family<'t>(&self, tally: &'t mut Tally, payload: Option<&Value>) -> &'t mut FamilyTally {
        let event = payload.and_then(|value| value.get("event")).and_then(Value::as_str);
        match event.map(|event| self.families.get(event)) {
            Some(Some((label, events, schema))) => tally.families.entry(label.clone()).or_insert_with(|| {
                FamilyTally { events: events.clone(), schema: Some(schema.clone()), ..FamilyTally::default() }
            }),
            Some(None) => tally.families.entry(UNKNOWN_IN_NEW.to_owned()).or_default(),
            None => tally.families.entry(NOT_AN_EVENT.to_owned()).or_default(),
        }
    }

    /// Judges one topic record's value (a canonical event) and counts it.
    pub fn topic_record(&self, tally: &mut Tally, value: &[u8]) {
        let parsed = serde_json::from_slice::<Value>(value).ok();
        let family = self.family(tally, parsed.as_ref());
        let checked = match parsed {
            Some(value) => self.contract.check_value(value),
            None => self.contract.check(value),
        };
        family.topic.records += 1;
        match checked {
            Checked::Valid(_) => family.topic.still_valid += 1,
            Checked::Invalid(rejection) => {
                family.topic.newly_invalid += 1;
                family.topic.errors.add(&rejection.errors);
            }
        }
    }

    /// Judges one dead letter's original payload and counts it; true when NEW accepts it.
    pub fn dead_letter(&self, tally: &mut Tally, payload: OriginalPayload) -> bool {
        let parsed = match payload {
            OriginalPayload::Json(value) => Ok(value),
            OriginalPayload::Raw(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|_| bytes),
        };
        let family = self.family(tally, parsed.as_ref().ok());
        let checked = match parsed {
            Ok(value) => self.contract.check_value(value),
            Err(bytes) => self.contract.check(&bytes),
        };
        family.dead_letters.letters += 1;
        match checked {
            Checked::Valid(_) => {
                family.dead_letters.would_accept += 1;
                true
            }
            Checked::Invalid(rejection) => {
                family.dead_letters.still_rejected += 1;
                family.dead_letters.errors.add(&rejection.errors);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &str, keyword: &str) -> FieldError {
        FieldError {
            instance_path: path.into(),
            schema_path: String::new(),
            keyword: keyword.into(),
            message: String::new(),
        }
    }

    #[test]
    fn top_errors_are_the_most_frequent_counted_once_per_payload() {
        let mut paths = ErrorPaths::default();
        paths.add(&[error("/a", "enum"), error("/a", "enum"), error("/b", "type")]);
        paths.add(&[error("/a", "enum")]);
        paths.add(&[error("/c", "required")]);
        let top = paths.top(2);
        assert_eq!(top[0], ErrorPath { instance_path: "/a".into(), keyword: "enum".into(), count: 2 });
        assert_eq!(top[1], ErrorPath { instance_path: "/b".into(), keyword: "type".into(), count: 1 });
        assert_eq!(top.len(), 2);
    }

    #[test]
    fn unknown_events_and_non_events_have_their_own_rows() {
        let judge = Judge::new(Contract::builtin());
        let mut tally = Tally::default();
        judge.topic_record(&mut tally, br#"{"event": "call.started", "correlation_id": "c"}"#);
        judge.topic_record(&mut tally, b"not json");
        assert!(!judge.dead_letter(&mut tally, OriginalPayload::Raw(b"{\"event\": ".to_vec())));
        assert_eq!(tally.families[UNKNOWN_IN_NEW].topic.newly_invalid, 1);
        assert_eq!(tally.families[NOT_AN_EVENT].topic.newly_invalid, 1);
        assert_eq!(tally.families[NOT_AN_EVENT].dead_letters.still_rejected, 1);
    }
}
