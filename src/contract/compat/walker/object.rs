//! The object keywords of the walk: `required`, `properties`, `patternProperties` and
//! `additionalProperties`, name by name (a name a pattern matches is not judged by
//! `additionalProperties`).

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::{Map, Value};

use super::{At, Change, EMPTY, READERS, SENDERS, Side, Walker, accepts_all, child, escape, union};

/// The `patternProperties` of one side, compiled.
struct Patterns<'a> {
    map: &'a Map<String, Value>,
    compiled: Vec<Regex>,
}

impl<'a> Patterns<'a> {
    /// `Err(pattern)` when a pattern does not compile here.
    fn of(map: &'a Map<String, Value>) -> Result<Self, String> {
        let map = map.get("patternProperties").and_then(Value::as_object).unwrap_or(&EMPTY);
        let compiled = map
            .keys()
            .map(|pattern| Regex::new(pattern).map_err(|_| pattern.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Patterns { map, compiled })
    }

    /// The patterns matching `name`.
    fn matching(&self, name: &str) -> Vec<&'a String> {
        self.map
            .keys()
            .zip(&self.compiled)
            .filter(|(_, regex)| regex.is_match(name))
            .map(|(key, _)| key)
            .collect()
    }
}

impl<'a> Walker<'a> {
    pub(super) fn object(
        &mut self,
        path: &str,
        old: &At<'a>,
        new: &At<'a>,
        om: &'a Map<String, Value>,
        nm: &'a Map<String, Value>,
    ) {
        let required = |map: &Map<String, Value>| -> BTreeSet<String> {
            map.get("required")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let (old_required, new_required) = (required(om), required(nm));
        for name in new_required.difference(&old_required) {
            self.push(&child(path, name), format!("property `{name}` now required"), SENDERS);
        }
        for name in old_required.difference(&new_required) {
            self.push(&child(path, name), format!("property `{name}` no longer required"), READERS);
        }

        let extra = |map: &'a Map<String, Value>, at: &At<'a>| -> At<'a> {
            match map.get("additionalProperties") {
                Some(value) => at.below(value, "additionalProperties"),
                None => At::anything(),
            }
        };
        let (old_extra, new_extra) = (extra(om, old), extra(nm, new));
        let (old_patterns, new_patterns) = match (Patterns::of(om), Patterns::of(nm)) {
            (Ok(old_patterns), Ok(new_patterns)) => (old_patterns, new_patterns),
            (Err(pattern), _) | (_, Err(pattern)) => {
                return self
                    .cannot_judge(path, format!("`patternProperties` pattern {pattern:?} not understood"));
            }
        };
        let extras_accept_all = accepts_all(old_extra.value) && accepts_all(new_extra.value);
        let same_patterns = old_patterns.map.keys().eq(new_patterns.map.keys());
        if !same_patterns && !extras_accept_all {
            // Which names `additionalProperties` judges changed with the patterns.
            return self
                .cannot_judge(path, "`patternProperties` changed next to `additionalProperties`".into());
        }
        self.patterns(path, old, new, &old_patterns, &new_patterns);

        let properties = |map: &'a Map<String, Value>| map.get("properties").and_then(Value::as_object);
        let (old_properties, new_properties) =
            (properties(om).unwrap_or(&EMPTY), properties(nm).unwrap_or(&EMPTY));
        let names: BTreeSet<&String> = old_properties.keys().chain(new_properties.keys()).collect();
        let property = |properties: &'a Map<String, Value>, at: &At<'a>, name: &str| -> Option<At<'a>> {
            properties.get(name).map(|value| at.below(value, format!("properties/{}", escape(name))))
        };
        // An undeclared name is judged by the patterns it matches (compared on their own above),
        // else by `additionalProperties`.
        // A name one pattern matches (the same pattern on both sides) meets that pattern's schema
        // before and after: only the property's own schema against it can matter, one way.
        let undeclared =
            |patterns: &Patterns<'a>, extra: &At<'a>, side: &At<'a>, name: &str| -> (At<'a>, bool) {
                match patterns.matching(name).as_slice() {
                    [] => (extra.clone(), false),
                    [pattern] if same_patterns => (
                        side.below(
                            &patterns.map[pattern.as_str()],
                            format!("patternProperties/{}", escape(pattern)),
                        ),
                        true,
                    ),
                    _ => (At::anything(), false),
                }
            };
        let keep = |inner: Vec<Change>, pattern: bool, side: Side| -> Vec<Change> {
            inner
                .into_iter()
                .filter(|change| !pattern || change.breaks.contains(&side))
                .map(|mut change| {
                    if pattern && change.breaks.len() == 1 {
                        change.breaks = vec![side];
                    }
                    change
                })
                .collect()
        };
        for name in names {
            let path = child(path, name);
            match (property(old_properties, old, name), property(new_properties, new, name)) {
                (Some(a), Some(b)) => self.walk(&path, a, b),
                (Some(a), None) => {
                    let (now, pattern) = undeclared(&new_patterns, &new_extra, new, name);
                    if now.value == &Value::Bool(false) && a.value != &Value::Bool(false) && !pattern {
                        self.push(
                            &path,
                            "property removed from a closed object: now refused".into(),
                            SENDERS,
                        );
                    } else {
                        // Old: the property and the pattern; new: the pattern alone.
                        let inner = keep(self.walk_apart(&path, a, now), pattern, Side::Readers);
                        if !inner.is_empty() {
                            let change = "property no longer declared: judged by `additionalProperties` or `patternProperties` now";
                            self.push(&path, change.into(), &union(&inner));
                        }
                    }
                }
                (None, Some(b)) => {
                    let (before, pattern) = undeclared(&old_patterns, &old_extra, old, name);
                    if before.value == &Value::Bool(false) && b.value != &Value::Bool(false) && !pattern {
                        self.push(&path, "property added to a closed object".into(), READERS);
                    } else {
                        // Old: the pattern alone; new: the pattern and the property.
                        let inner = keep(self.walk_apart(&path, before, b), pattern, Side::Senders);
                        if !inner.is_empty() {
                            let reasons: Vec<&str> =
                                inner.iter().map(|change| change.change.as_str()).collect();
                            let change = format!(
                                "property declared on an object that already accepted it undeclared ({})",
                                reasons.join("; ")
                            );
                            self.push(&path, change, &union(&inner));
                        }
                    }
                }
                (None, None) => {}
            }
        }
        let extra_path = child(path, "*");
        match (accepts_all(old_extra.value), accepts_all(new_extra.value)) {
            (true, true) => {}
            (true, false) if new_extra.value == &Value::Bool(false) => {
                self.push(path, "object closed (`additionalProperties: false`)".into(), SENDERS);
            }
            (false, true) if old_extra.value == &Value::Bool(false) => {
                self.push(path, "object opened (undeclared properties accepted)".into(), READERS);
            }
            _ => self.walk(&extra_path, old_extra, new_extra),
        }
    }

    /// `patternProperties` pattern by pattern (a missing pattern is `true`): every name a pattern
    /// matches must meet its schema, whatever else judges it.
    fn patterns(&mut self, path: &str, old: &At<'a>, new: &At<'a>, o: &Patterns<'a>, n: &Patterns<'a>) {
        let patterns: BTreeSet<&String> = o.map.keys().chain(n.map.keys()).collect();
        let at = |patterns: &Patterns<'a>, side: &At<'a>, pattern: &str| -> At<'a> {
            match patterns.map.get(pattern) {
                Some(value) => side.below(value, format!("patternProperties/{}", escape(pattern))),
                None => At::anything(),
            }
        };
        for pattern in patterns {
            let inner = self.walk_apart(&child(path, "*"), at(o, old, pattern), at(n, new, pattern));
            if !inner.is_empty() {
                let reasons: Vec<&str> = inner.iter().map(|change| change.change.as_str()).collect();
                let change = format!("properties matching {pattern:?}: {}", reasons.join("; "));
                self.push(&child(path, "*"), change, &union(&inner));
            }
        }
    }
}
