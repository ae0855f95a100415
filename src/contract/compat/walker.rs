//! The structural walk of two versions of one schema, keyword by keyword through local `$ref`s:
//! every change with the side it breaks (senders, readers, or both when it cannot tell).

use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{BOTH, CANNOT_JUDGE, Change, READERS, SENDERS, Side};
use crate::contract::{EVENTS_ANNOTATION, VERSION_ANNOTATION};

mod combinators;
mod object;
mod scalar;

/// Every change from `old` to `new` (two whole schema documents).
pub(super) fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut walker = Walker::new(old, new);
    walker.walk("", At { value: old, pointer: String::new() }, At { value: new, pointer: String::new() });
    walker.changes
}

/// A subschema and its JSON pointer in its document (the walk's cycle guard).
#[derive(Clone)]
struct At<'a> {
    value: &'a Value,
    pointer: String,
}

/// The schema `true`, standing in for an absent keyword (it accepts anything).
static TRUE: Value = Value::Bool(true);

impl<'a> At<'a> {
    /// `value`, found at `suffix` (already escaped) below this schema.
    fn below(&self, value: &'a Value, suffix: impl std::fmt::Display) -> At<'a> {
        At { value, pointer: format!("{}/{suffix}", self.pointer) }
    }

    /// Member `key` of this schema's object `map` (the same schema as a map).
    fn key(&self, map: &'a Map<String, Value>, key: &str) -> At<'a> {
        self.below(&map[key], escape(key))
    }

    /// Item `index` of this schema (an array of subschemas).
    fn item(&self, index: usize) -> At<'a> {
        self.below(&self.value[index], index)
    }

    /// The schema `true`, for a keyword absent on one side.
    fn anything() -> At<'a> {
        At { value: &TRUE, pointer: "true".into() }
    }
}

/// Keywords with no effect on validity (annotations, and the definitions reached through `$ref`).
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    EVENTS_ANNOTATION,
    VERSION_ANNOTATION,
];

/// Keywords the walk judges (everything else is compared as text: changed means cannot judge).
const JUDGED: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "pattern",
    "format",
    "uniqueItems",
    "required",
    "properties",
    "additionalProperties",
    "patternProperties",
    "items",
    "prefixItems",
    "allOf",
    "anyOf",
    "oneOf",
    "x-cxone-normalize",
];

/// Keywords holding one subschema whose effect the walk cannot place in one direction: any
/// change inside (or adding/removing them) is judged as breaking both ways.
const OPAQUE_SUBSCHEMAS: &[&str] =
    &["not", "if", "then", "else", "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties"];

/// The schema `{}` (and `true`) as a keyword map.
static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// The six JSON Schema types besides `integer` (which `number` includes).
const ALL_TYPES: &[&str] = &["array", "boolean", "null", "number", "object", "string"];

struct Walker<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// Pairs of (old, new) pointers being compared on the current path: recursive schemas end here.
    active: HashSet<(String, String)>,
    changes: Vec<Change>,
}

impl<'a> Walker<'a> {
    fn new(old_root: &'a Value, new_root: &'a Value) -> Self {
        Walker { old_root, new_root, active: HashSet::new(), changes: Vec::new() }
    }

    fn push(&mut self, path: &str, change: String, breaks: &[Side]) {
        self.changes.push(Change { path: path.to_owned(), change, breaks: breaks.to_vec() });
    }

    fn cannot_judge(&mut self, path: &str, what: String) {
        self.push(path, format!("{what}; {CANNOT_JUDGE}"), BOTH);
    }

    /// Walks a pair into a separate list of changes (the caller summarises them).
    fn walk_apart(&mut self, path: &str, old: At<'a>, new: At<'a>) -> Vec<Change> {
        let outer = std::mem::take(&mut self.changes);
        self.walk(path, old, new);
        std::mem::replace(&mut self.changes, outer)
    }

    /// Follows a `$ref` within the document (`#/json/pointer`, or the document's own `$id` before it).
    fn resolve(root: &'a Value, reference: &str) -> Option<At<'a>> {
        let pointer = ref_pointer(root, reference)?;
        root.pointer(&pointer).map(|value| At { value, pointer })
    }

    /// A schema that is only a `$ref` (plus annotations) is replaced by its target.
    fn follow(&mut self, path: &str, root: &'a Value, mut at: At<'a>) -> Option<At<'a>> {
        for _ in 0..64 {
            let Some(map) = at.value.as_object() else { return Some(at) };
            let Some(reference) = map.get("$ref") else { return Some(at) };
            if map.keys().any(|key| key != "$ref" && !ANNOTATIONS.contains(&key.as_str())) {
                return Some(at);
            }
            let Some(reference) = reference.as_str() else { return Some(at) };
            match Self::resolve(root, reference) {
                Some(target) => at = target,
                None => {
                    self.cannot_judge(path, format!("`$ref` {reference:?} does not resolve within the file"));
                    return None;
                }
            }
        }
        self.cannot_judge(path, "`$ref` chain too long".into());
        None
    }

    fn walk(&mut self, path: &str, old: At<'a>, new: At<'a>) {
        let (old_root, new_root) = (self.old_root, self.new_root);
        let Some(old) = self.follow(path, old_root, old) else { return };
        let Some(new) = self.follow(path, new_root, new) else { return };
        // A pair already being compared further up: a recursive schema, judged there.
        let pair = (old.pointer.clone(), new.pointer.clone());
        if !self.active.insert(pair.clone()) {
            return;
        }
        self.walk_schema(path, &old, &new);
        self.active.remove(&pair);
    }

    fn walk_schema(&mut self, path: &str, old: &At<'a>, new: &At<'a>) {
        let empty: &'a Map<String, Value> = &EMPTY;
        let (om, nm) = match (old.value, new.value) {
            (Value::Bool(false), Value::Bool(false)) => return,
            (Value::Bool(false), _) => {
                return self.push(path, "schema `false` (nothing allowed) now allows values".into(), READERS);
            }
            (_, Value::Bool(false)) => {
                return self.push(path, "schema now `false`: nothing allowed".into(), SENDERS);
            }
            (Value::Bool(true), Value::Bool(true)) => return,
            (Value::Bool(true), Value::Object(nm)) => (empty, nm),
            (Value::Object(om), Value::Bool(true)) => (om, empty),
            (Value::Object(om), Value::Object(nm)) => (om, nm),
            _ => return self.cannot_judge(path, "a schema is neither an object nor a boolean".into()),
        };
        if self.wrapped_in_any_of(path, old, new, om, nm) {
            return;
        }
        let o = |key: &str| old.key(om, key);
        let n = |key: &str| new.key(nm, key);

        // Changes from here that may change which members count as evaluated.
        let mark = self.changes.len();
        // Keywords compared as text, or judged as opaque subschemas.
        let keys: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
        for key in keys {
            let key = key.as_str();
            // `x-` keywords are annotations to the validator (`x-cxone-normalize`: the coercion pass).
            if ANNOTATIONS.contains(&key) || JUDGED.contains(&key) || key.starts_with("x-") {
                continue;
            }
            match (om.contains_key(key), nm.contains_key(key)) {
                (true, true) if OPAQUE_SUBSCHEMAS.contains(&key) => {
                    if !self.walk_apart(path, o(key), n(key)).is_empty() {
                        self.cannot_judge(path, format!("`{key}` changed"));
                    }
                }
                (true, true) if om[key] == nm[key] => {}
                (true, true) => self.cannot_judge(path, format!("`{key}` changed")),
                (true, false) => self.cannot_judge(path, format!("`{key}` removed")),
                (false, true) => self.cannot_judge(path, format!("`{key}` added")),
                (false, false) => {}
            }
        }

        // `$ref` next to other keywords: one more conjunct.
        match (om.get("$ref"), nm.get("$ref")) {
            (Some(_), Some(_)) => {
                let targets = (
                    om["$ref"].as_str().and_then(|reference| Self::resolve(self.old_root, reference)),
                    nm["$ref"].as_str().and_then(|reference| Self::resolve(self.new_root, reference)),
                );
                match targets {
                    (Some(old_target), Some(new_target)) => self.walk(path, old_target, new_target),
                    _ => self.cannot_judge(path, "`$ref` does not resolve within the file".into()),
                }
            }
            (None, None) => {}
            _ => self.cannot_judge(path, "`$ref` next to other keywords added or removed".into()),
        }

        let applied_changes = self.changes.len() - mark;
        let classes = self.assertions(path, om, nm);
        // Object and array keywords say nothing when a side admits no object (array).
        if classes.object {
            self.object(path, old, new, om, nm);
        }
        if classes.array {
            self.array(path, om, nm, &o, &n);
        }
        let mark = self.changes.len();
        self.combinators(path, old, new, om, nm);
        self.unevaluated(path, om, nm, applied_changes + self.changes.len() - mark);
    }

    /// `unevaluatedProperties`/`unevaluatedItems` judge what the other keywords did not evaluate:
    /// when those changed (`applied_changes`: changes found in the node's subschema keywords and
    /// `$ref`), the members they leave over changed too.
    fn unevaluated(
        &mut self,
        path: &str,
        om: &Map<String, Value>,
        nm: &Map<String, Value>,
        applied_changes: usize,
    ) {
        const UNEVALUATED: &[&str] = &["unevaluatedProperties", "unevaluatedItems"];
        const EVALUATING: &[&str] = &[
            "additionalProperties",
            "patternProperties",
            "prefixItems",
            "items",
            "contains",
            "allOf",
            "anyOf",
            "oneOf",
            "if",
            "then",
            "else",
            "dependentSchemas",
            "$ref",
        ];
        if !UNEVALUATED.iter().any(|key| om.contains_key(*key) || nm.contains_key(*key)) {
            return;
        }
        let names = |map: &Map<String, Value>| -> Vec<String> {
            map.get("properties")
                .and_then(Value::as_object)
                .map(|map| map.keys().cloned().collect())
                .unwrap_or_default()
        };
        if applied_changes > 0
            || names(om) != names(nm)
            || EVALUATING.iter().any(|key| om.get(*key) != nm.get(*key))
        {
            self.cannot_judge(
                path,
                "what `unevaluatedProperties`/`unevaluatedItems` applies to changed".into(),
            );
        }
    }

    /// The old schema kept as one branch of a new `anyOf` (e.g. made nullable with
    /// `anyOf: [<old>, {"type": "null"}]`): wider, nothing refused; or the reverse. Reports it and
    /// returns true; false when the pair is not of that shape.
    fn wrapped_in_any_of(
        &mut self,
        path: &str,
        old: &At<'a>,
        new: &At<'a>,
        om: &'a Map<String, Value>,
        nm: &'a Map<String, Value>,
    ) -> bool {
        let branches = |map: &'a Map<String, Value>, at: &At<'a>| -> Option<Vec<At<'a>>> {
            let list = map.get("anyOf")?.as_array()?;
            only_keyword(map, "anyOf").then(|| {
                (0..list.len()).map(|index| at.below(&list[index], format!("anyOf/{index}"))).collect()
            })
        };
        if !om.contains_key("anyOf") {
            if let Some(branches) = branches(nm, new) {
                if branches.into_iter().any(|branch| self.walk_apart(path, old.clone(), branch).is_empty()) {
                    self.push(path, "alternatives added next to the old schema (`anyOf`)".into(), READERS);
                    return true;
                }
            }
        }
        if !nm.contains_key("anyOf") {
            if let Some(branches) = branches(om, old) {
                if branches.into_iter().any(|branch| self.walk_apart(path, branch, new.clone()).is_empty()) {
                    self.push(path, "alternatives removed: one `anyOf` branch kept".into(), SENDERS);
                    return true;
                }
            }
        }
        false
    }

    /// `prefixItems` and `items`.
    fn array(
        &mut self,
        path: &str,
        om: &'a Map<String, Value>,
        nm: &'a Map<String, Value>,
        o: &impl Fn(&str) -> At<'a>,
        n: &impl Fn(&str) -> At<'a>,
    ) {
        match (
            om.get("prefixItems").and_then(Value::as_array),
            nm.get("prefixItems").and_then(Value::as_array),
        ) {
            (None, None) => {}
            (Some(a), Some(b)) if a.len() == b.len() => {
                for index in 0..a.len() {
                    let (a, b) = (o("prefixItems"), n("prefixItems"));
                    self.walk(&child(path, &index.to_string()), a.item(index), b.item(index));
                }
            }
            _ => self.cannot_judge(path, "`prefixItems` changed in length".into()),
        }
        let any = At::anything;
        match (om.contains_key("items"), nm.contains_key("items")) {
            (false, false) => {}
            (true, true) => self.walk(&child(path, "*"), o("items"), n("items")),
            (true, false) => self.walk(&child(path, "*"), o("items"), any()),
            (false, true) => self.walk(&child(path, "*"), any(), n("items")),
        }
    }
}

/// The JSON pointer a local `$ref` names (`#/json/pointer`, or the document's own `$id` before it).
fn ref_pointer(root: &Value, reference: &str) -> Option<String> {
    let id = root.get("$id").and_then(Value::as_str).unwrap_or_default();
    let fragment = reference.strip_prefix(id).unwrap_or(reference).strip_prefix('#')?;
    percent_decode(fragment)
}

/// The subschema a local `$ref` names, if it resolves within the document.
pub(super) fn resolve_pointer<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(&ref_pointer(root, reference)?)
}

/// Whether `keyword` is the only assertion of a schema (the others are annotations).
pub(super) fn only_keyword(map: &Map<String, Value>, keyword: &str) -> bool {
    map.keys().all(|key| key == keyword || ANNOTATIONS.contains(&key.as_str()))
}

/// Whether a schema accepts every value (`true`, `{}`, or annotations only).
pub(super) fn accepts_all(schema: &Value) -> bool {
    match schema {
        Value::Bool(flag) => *flag,
        Value::Object(map) => map.keys().all(|key| ANNOTATIONS.contains(&key.as_str())),
        _ => false,
    }
}

/// Who a list of changes breaks, together.
fn union(changes: &[Change]) -> Vec<Side> {
    let sides: BTreeSet<Side> = changes.iter().flat_map(|change| change.breaks.iter().copied()).collect();
    sides.into_iter().collect()
}

fn child(path: &str, name: &str) -> String {
    format!("{path}/{}", escape(name))
}

/// A JSON pointer segment.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The `%XX` escapes of a URI fragment decoded (a `$ref` is a URI).
fn percent_decode(fragment: &str) -> Option<String> {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = fragment.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}
