//! The coercion step compared: every place where one version of a schema coerces a value and the
//! other does not (numeric strings to numbers, string normalisation), with the side it breaks.
//! Coercion follows the schema's shape, so a change that looks neutral keyword by keyword can
//! stop it (a number wrapped in an `anyOf` with a second non-null branch, an object losing its
//! `type` while only `additionalProperties` declares its members): numeric strings valid before
//! are then refused.

use std::collections::BTreeSet;

use serde_json::Value;

use super::walker::{accepts_all, only_keyword, resolve_pointer};
use super::{BOTH, CANNOT_JUDGE, Change, READERS, SENDERS, Side};
use crate::contract::coerce::{self, Effect};

/// Every coercion difference from `old` to `new` (two whole schema documents).
pub(super) fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let change = |path: &[String], change: String, breaks: &[Side]| Change {
        path: pointer(path),
        change,
        breaks: breaks.to_vec(),
    };
    let (old_plan, new_plan) = match (coerce::compile(old), coerce::compile(new)) {
        (Ok(old_plan), Ok(new_plan)) => (old_plan, new_plan),
        (Err(err), _) | (_, Err(err)) => {
            return vec![change(&[], format!("coercion rules do not compile ({err}); {CANNOT_JUDGE}"), BOTH)];
        }
    };
    let paths: BTreeSet<Vec<String>> =
        old_plan.effects().into_iter().chain(new_plan.effects()).map(|(path, _)| path).collect();
    let mut changes = Vec::new();
    for path in paths {
        let (before, after) = (old_plan.effect_at(&path), new_plan.effect_at(&path));
        let numeric = "numeric strings (\"12\")";
        let (what, breaks) = match (&before, &after) {
            _ if before == after => continue,
            (Some(Effect::Numeric { integer: true }), Some(Effect::Numeric { integer: false })) => (
                "numeric strings with a fraction or an exponent (\"1.5\") now converted to numbers".into(),
                READERS,
            ),
            (Some(Effect::Numeric { integer: false }), Some(Effect::Numeric { integer: true })) => (
                "numeric strings with a fraction or an exponent (\"1.0\") no longer converted to numbers"
                    .into(),
                SENDERS,
            ),
            // Strings are accepted as they are now: the keyword walk judges them.
            (Some(Effect::Numeric { .. }), None) if takes_strings(new, &path) => continue,
            (Some(Effect::Numeric { .. }), None) => (
                format!("{numeric} no longer converted to numbers: refused unless strings are allowed"),
                SENDERS,
            ),
            (None, Some(Effect::Numeric { .. })) if takes_strings(old, &path) => continue,
            (None, Some(Effect::Numeric { .. })) => (format!("{numeric} now converted to numbers"), READERS),
            _ => {
                (format!("coercion changed from {} to {}; {CANNOT_JUDGE}", show(&before), show(&after)), BOTH)
            }
        };
        changes.push(change(&path, what, breaks));
    }
    changes
}

/// Whether the schema at `path` of `document` surely lets a numeric string through unconverted.
fn takes_strings(document: &Value, path: &[String]) -> bool {
    schema_at(document, path).is_some_and(|schema| passes_strings(document, schema, 0))
}

/// Whether a schema accepts any string (`type` naming `string` and no keyword a string could
/// fail), or accepts anything, or is an `anyOf` with such a branch.
fn passes_strings(document: &Value, schema: &Value, depth: usize) -> bool {
    // Keywords a numeric string could fail as a string.
    const REFUSING: &[&str] = &[
        "allOf",
        "oneOf",
        "not",
        "if",
        "$ref",
        "enum",
        "const",
        "pattern",
        "format",
        "minLength",
        "maxLength",
    ];
    if accepts_all(schema) {
        return true;
    }
    let Some(map) = schema.as_object() else { return false };
    if depth > 8 || REFUSING.iter().any(|key| map.contains_key(*key)) {
        return false;
    }
    let names_string = match map.get("type") {
        None => true,
        Some(Value::String(name)) => name == "string",
        Some(Value::Array(names)) => names.iter().any(|name| name == "string"),
        _ => false,
    };
    let branch_passes = match map.get("anyOf").and_then(Value::as_array) {
        None => map.contains_key("type"),
        Some(branches) => branches
            .iter()
            .filter_map(|branch| follow(document, branch))
            .any(|branch| passes_strings(document, branch, depth + 1)),
    };
    names_string && branch_passes
}

/// The subschema judging the value at `path`, through `properties`, `prefixItems`,
/// `additionalProperties`, `items` and whole-schema `$ref`s; `None` when it is not that simple.
fn schema_at<'a>(document: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = follow(document, document)?;
    for segment in path {
        let map = at.as_object()?;
        let declared = map.get("properties").and_then(|properties| properties.get(segment.as_str()));
        let prefix = segment
            .parse::<usize>()
            .ok()
            .and_then(|index| map.get("prefixItems").and_then(|items| items.get(index)));
        let next = match (declared, prefix) {
            (Some(schema), _) if segment != "*" => schema,
            (_, Some(schema)) => schema,
            _ if map.contains_key("items") && !map.contains_key("additionalProperties") => &map["items"],
            _ if !map.contains_key("items") => map.get("additionalProperties")?,
            _ => return None,
        };
        at = follow(document, next)?;
    }
    Some(at)
}

fn follow<'a>(document: &'a Value, mut schema: &'a Value) -> Option<&'a Value> {
    for _ in 0..64 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) if schema.as_object().is_some_and(|map| only_keyword(map, "$ref")) => {
                schema = resolve_pointer(document, reference)?;
            }
            _ => return Some(schema),
        }
    }
    None
}

fn show(effect: &Option<Effect>) -> String {
    match effect {
        None => "none".into(),
        Some(Effect::Numeric { integer: true }) => "integer strings converted".into(),
        Some(Effect::Numeric { integer: false }) => "numeric strings converted".into(),
        Some(Effect::Normalize(steps)) => format!("normalised ({})", steps.join(", ")),
    }
}

fn pointer(path: &[String]) -> String {
    path.iter().map(|segment| format!("/{}", segment.replace('~', "~0").replace('/', "~1"))).collect()
}
