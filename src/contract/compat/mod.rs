//! The compatibility gate: what an edit of a schema folder does to the payloads it accepts, per
//! event family: whether senders break (a payload valid before is refused now) and whether readers
//! break (a payload valid now was refused before).
//!
//! Families are matched by their `x-cxone-events`. Two schemas are compared by a structural walk
//! over their JSON, keyword by keyword, following local `$ref`s (`walker`), and by their coercion
//! plans, path by path (`coercion`). Both are conservative: every change they cannot place in one
//! direction (a changed `pattern`, `if`/`then`, `not`, `oneOf`, a keyword the walk does not know,
//! ...) is reported as breaking both ways, and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{Contract, ContractError, SchemaRef};

mod coercion;
mod walker;

/// Who a change breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Some payload valid under the old schema is refused by the new one.
    Senders,
    /// Some payload valid under the new schema was refused by the old one (consumers receive
    /// records they were never promised).
    Readers,
}

const SENDERS: &[Side] = &[Side::Senders];
const READERS: &[Side] = &[Side::Readers];
const BOTH: &[Side] = &[Side::Senders, Side::Readers];

/// Suffix of every change the walk cannot place in one direction.
pub const CANNOT_JUDGE: &str = "cannot judge: counted as breaking both ways";

/// One change of a family's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Where in the payload the change applies: a JSON pointer (`/data/channel`; empty for the
    /// root), `*` standing for every array item or every undeclared property.
    pub path: String,
    /// What changed, in words.
    pub change: String,
    /// Who it breaks (empty: nobody).
    pub breaks: Vec<Side>,
}

/// The verdict on one event family.
#[derive(Debug, Clone, Serialize)]
pub struct Family {
    /// The `event` values of the family (old and new together), sorted.
    pub events: Vec<String>,
    /// The old schema's `$id` and version; `None` when the family is new.
    pub old: Option<SchemaRef>,
    /// The new schema's `$id` and version; `None` when the family was removed.
    pub new: Option<SchemaRef>,
    /// Whether some change breaks senders.
    pub breaks_senders: bool,
    /// Whether some change breaks readers.
    pub breaks_readers: bool,
    /// Every change found, in walk order.
    pub changes: Vec<Change>,
}

impl Family {
    /// Whether the new schema is a new major version of the old one: `$id` ending in `/vN.json`
    /// and `x-cxone-schema-version` `N.0.0`, with N greater than the old version's major.
    pub fn is_new_major(&self) -> bool {
        let (Some(old), Some(new)) = (&self.old, &self.new) else { return false };
        let Some(old_major) = old.version.split('.').next().and_then(|major| major.parse::<u64>().ok())
        else {
            return false;
        };
        let id_major = new
            .id
            .rsplit('/')
            .next()
            .and_then(|name| name.strip_prefix('v'))
            .and_then(|name| name.strip_suffix(".json"))
            .and_then(|major| major.parse::<u64>().ok());
        id_major.is_some_and(|major| major > old_major && new.version == format!("{major}.0.0"))
    }

    /// Whether this family fails the gate: it breaks senders without a new major version.
    pub fn fails_gate(&self) -> bool {
        self.breaks_senders && !self.is_new_major()
    }
}

/// The verdict on two schema folders.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per family, ordered by its first event.
    pub families: Vec<Family>,
}

impl Report {
    /// Whether any family fails the gate (the command's exit status 1).
    pub fn fails_gate(&self) -> bool {
        self.families.iter().any(Family::fails_gate)
    }
}

/// One event schema of a folder, as text and metadata.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// `$id` and version.
    pub schema: SchemaRef,
    /// Its `x-cxone-events`.
    pub events: Vec<String>,
    /// The schema document.
    pub document: Value,
}

/// Loads a folder's event schemas exactly as the service would (every file must load), then keeps
/// their documents for the comparison.
pub fn load_dir(dir: &Path) -> Result<Vec<SchemaFile>, ContractError> {
    let contract = Contract::from_dir(dir).map_err(|err| {
        if err.path == "(schemas)" { ContractError { path: dir.display().to_string(), ..err } } else { err }
    })?;
    let mut files = Vec::new();
    for info in contract.schemas() {
        let fail = |message: String| ContractError { path: info.file_name.clone(), message };
        let bytes = std::fs::read(&info.file_name).map_err(|err| fail(format!("cannot read: {err}")))?;
        let document: Value =
            serde_json::from_slice(&bytes).map_err(|err| fail(format!("not valid JSON: {err}")))?;
        files.push(SchemaFile { schema: info.schema, events: info.events, document });
    }
    Ok(files)
}

/// Compares two folders: [`load_dir`] on both, then [`compare`].
pub fn check_dirs(old: &Path, new: &Path) -> Result<Report, ContractError> {
    Ok(compare(&load_dir(old)?, &load_dir(new)?))
}

/// Compares two schema sets family by family. Schemas sharing an event belong to one family.
pub fn compare(old: &[SchemaFile], new: &[SchemaFile]) -> Report {
    // Union-find over old (0..old.len()) and new (old.len()..) schemas, joined by shared events.
    let mut parent: Vec<usize> = (0..old.len() + new.len()).collect();
    fn find(parent: &mut [usize], mut at: usize) -> usize {
        while parent[at] != at {
            parent[at] = parent[parent[at]];
            at = parent[at];
        }
        at
    }
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, file) in old.iter().chain(new).enumerate() {
        for event in &file.events {
            match owner.get(event.as_str()) {
                Some(&other) => {
                    let (a, b) = (find(&mut parent, other), find(&mut parent, index));
                    parent[a] = b;
                }
                None => {
                    owner.insert(event, index);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, (Vec<&SchemaFile>, Vec<&SchemaFile>)> = BTreeMap::new();
    for index in 0..old.len() + new.len() {
        let root = find(&mut parent, index);
        let group = groups.entry(root).or_default();
        if index < old.len() { group.0.push(&old[index]) } else { group.1.push(&new[index - old.len()]) }
    }
    let mut families: Vec<Family> =
        groups.into_values().map(|(old, new)| compare_family(&old, &new)).collect();
    families.sort_by(|a, b| a.events.cmp(&b.events));
    Report { families }
}

fn compare_family(old: &[&SchemaFile], new: &[&SchemaFile]) -> Family {
    let events_of = |files: &[&SchemaFile]| -> BTreeSet<String> {
        files.iter().flat_map(|file| file.events.iter().cloned()).collect()
    };
    let (old_events, new_events) = (events_of(old), events_of(new));
    let mut changes = Vec::new();
    let mut push = |change: String, breaks: &[Side]| {
        changes.push(Change { path: String::new(), change, breaks: breaks.to_vec() });
    };
    match (old, new) {
        ([], _) => push("family added: its events now reach the topic".into(), READERS),
        (_, []) => push("family removed: its events are refused as unknown".into(), SENDERS),
        _ => changes = per_event(old, new, &old_events, &new_events),
    }
    let breaks = |side: Side| changes.iter().any(|change| change.breaks.contains(&side));
    Family {
        events: old_events.union(&new_events).cloned().collect(),
        old: old.first().map(|file| file.schema.clone()),
        new: new.first().map(|file| file.schema.clone()),
        breaks_senders: breaks(Side::Senders),
        breaks_readers: breaks(Side::Readers),
        changes,
    }
}

/// Each payload is judged by the schema its `event` routes it to: each event of the family is
/// compared from the schema that served it to the one that serves it now (events may also have
/// moved between files), for its own `event` value only (a schema's `event` property may list
/// other files' events, or refuse an event its `x-cxone-events` names).
fn per_event(
    old: &[&SchemaFile],
    new: &[&SchemaFile],
    old_events: &BTreeSet<String>,
    new_events: &BTreeSet<String>,
) -> Vec<Change> {
    let mut changes: Vec<Change> = Vec::new();
    let serving = |files: &[&'_ SchemaFile], event: &str| -> Option<Value> {
        files
            .iter()
            .find(|file| file.events.iter().any(|served| served == event))
            .map(|file| file.document.clone())
    };
    for event in old_events.union(new_events) {
        let (before, after) = (serving(old, event), serving(new, event));
        let admits = |document: &Option<Value>| {
            document.as_ref().is_some_and(|document| admits_event(document, event))
        };
        let change = |change: String, breaks: &[Side]| Change {
            path: "/event".into(),
            change,
            breaks: breaks.to_vec(),
        };
        let found = match (admits(&before), admits(&after)) {
            (false, false) if before.is_none() && after.is_some() => {
                vec![change(
                    format!("event {event:?} now routed here, but refused by the schema's `event`"),
                    &[],
                )]
            }
            (false, false) => Vec::new(),
            (true, false) if after.is_none() => {
                vec![change(format!("event {event:?} no longer served: refused as unknown"), SENDERS)]
            }
            (true, false) => {
                vec![change(format!("event {event:?} refused by the new schema's `event`"), SENDERS)]
            }
            (false, true) if before.is_none() => vec![change(format!("event {event:?} now served"), READERS)],
            (false, true) => {
                vec![change(format!("event {event:?} now accepted by the schema's `event`"), READERS)]
            }
            (true, true) => {
                let (Some(before), Some(after)) = (before, after) else { continue };
                let mut found = walker::diff(&before, &after);
                found.extend(coercion::diff(&before, &after));
                found.retain(|change| change.path != "/event");
                found
            }
        };
        for change in found {
            if !changes.contains(&change) {
                changes.push(change);
            }
        }
    }
    changes
}

/// Whether a schema's own `event` property lets `event` through (its `const`, `enum`, `pattern`).
fn admits_event(document: &Value, event: &str) -> bool {
    let mut schema = document.pointer("/properties/event");
    for _ in 0..64 {
        match schema.and_then(|at| at.get("$ref")).and_then(Value::as_str) {
            Some(reference) => schema = walker::resolve_pointer(document, reference),
            None => break,
        }
    }
    let Some(schema) = schema else { return true };
    if schema == &Value::Bool(false) {
        return false;
    }
    let value = Value::String(event.to_owned());
    let const_ok = schema.get("const").is_none_or(|allowed| allowed == &value);
    let enum_ok = schema.get("enum").and_then(Value::as_array).is_none_or(|allowed| allowed.contains(&value));
    let pattern_ok = schema
        .get("pattern")
        .and_then(Value::as_str)
        .and_then(|pattern| regex::Regex::new(pattern).ok())
        .is_none_or(|pattern| pattern.is_match(event));
    const_ok && enum_ok && pattern_ok
}
