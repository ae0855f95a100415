//! The value keywords of the walk: `type`, `enum`/`const`, numeric bounds, `multipleOf`, lengths
//! and counts, `pattern`, `format`, `uniqueItems`. A keyword only judges values of its own type,
//! so a keyword class is skipped when either side's `type` admits none of those values (the type
//! change itself is reported).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{ALL_TYPES, BOTH, READERS, SENDERS, Walker};

/// Which kinds of value both sides may admit (by `type`; no `type` admits every kind).
pub(super) struct Classes {
    number: bool,
    string: bool,
    pub(super) array: bool,
    pub(super) object: bool,
}

/// A schema's `type` as a set, when present.
fn type_set(map: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match map.get("type")? {
        Value::String(name) => Some(BTreeSet::from([name.clone()])),
        Value::Array(names) => Some(names.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        _ => None,
    }
}

/// Whether a type set admits `name` (`number` admits `integer`).
fn covers(set: &BTreeSet<String>, name: &str) -> bool {
    set.contains(name) || (name == "integer" && set.contains("number"))
}

/// Whether a schema admits `value` by its `type` alone (1.0 is an integer, as for the validator).
fn type_admits(types: &Option<BTreeSet<String>>, value: &Value) -> bool {
    types.as_ref().is_none_or(|types| covers(types, type_name(value)))
}

/// The JSON Schema type of a value (`integer` for whole numbers).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.as_f64().is_some_and(|x| x.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Types with so few values that they are lists of values themselves.
const FEW_TYPES: &[&str] = &["null", "boolean"];
static FEW: [Value; 3] = [Value::Null, Value::Bool(false), Value::Bool(true)];

/// JSON equality as the validator sees it: numbers by value (1 equals 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| same(x, y)))
        }
        _ => a == b,
    }
}

/// Whether a type set admits integers only.
fn integers_only(types: &Option<BTreeSet<String>>) -> bool {
    types.as_ref().is_some_and(|types| types.len() == 1 && types.contains("integer"))
}

#[derive(Clone, Copy)]
pub(super) enum Bound {
    Lower,
    Upper,
}

impl Bound {
    fn name(self, lower: &'static str, upper: &'static str) -> &'static str {
        match self {
            Bound::Lower => lower,
            Bound::Upper => upper,
        }
    }

    /// Whether limit `a` admits strictly fewer values than limit `b`.
    fn tighter(self, a: (Num, bool), b: (Num, bool)) -> bool {
        let order = a.0.compare(b.0);
        let same_but_exclusive = order == Ordering::Equal && a.1 && !b.1;
        match self {
            Bound::Lower => order == Ordering::Greater || same_but_exclusive,
            Bound::Upper => order == Ordering::Less || same_but_exclusive,
        }
    }

    /// The same limit over the integers, inclusive (`> 0` is `>= 1`).
    fn over_integers(self, (limit, exclusive): (Num, bool)) -> (Num, bool) {
        let limit = match (self, exclusive, limit) {
            (Bound::Lower, false, Num::Float(x)) => Num::whole(x.ceil()),
            (Bound::Lower, true, Num::Float(x)) => Num::whole(x.floor() + 1.0),
            (Bound::Upper, false, Num::Float(x)) => Num::whole(x.floor()),
            (Bound::Upper, true, Num::Float(x)) => Num::whole(x.ceil() - 1.0),
            (Bound::Lower, true, Num::Int(x)) => Num::Int(x + 1),
            (Bound::Upper, true, Num::Int(x)) => Num::Int(x - 1),
            (_, false, limit) => limit,
        };
        (limit, false)
    }
}

/// A number as the validator compares it: integers exactly (beyond 2^53 too), others as floats.
#[derive(Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(value: &Value) -> Option<Num> {
        let number = value.as_number()?;
        let int = number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from));
        int.map(Num::Int).or_else(|| number.as_f64().map(Num::Float))
    }

    /// A whole float as an integer when it fits.
    fn whole(x: f64) -> Num {
        if x.is_finite() && x.abs() < 9.2e18 { Num::Int(x as i128) } else { Num::Float(x) }
    }

    fn compare(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            _ => self.float().partial_cmp(&other.float()).unwrap_or(Ordering::Equal),
        }
    }

    fn float(self) -> f64 {
        match self {
            Num::Int(x) => x as f64,
            Num::Float(x) => x,
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(x) => write!(f, "{x}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Walker<'_> {
    /// Every value keyword of a pair; returns which kinds of value both sides may admit.
    pub(super) fn assertions(
        &mut self,
        path: &str,
        om: &Map<String, Value>,
        nm: &Map<String, Value>,
    ) -> Classes {
        let (old_types, new_types) = (type_set(om), type_set(nm));
        let both_admit = |names: &[&str]| {
            [&old_types, &new_types]
                .iter()
                .all(|types| types.as_ref().is_none_or(|types| names.iter().any(|name| covers(types, name))))
        };
        let classes = Classes {
            number: both_admit(&["number", "integer"]),
            string: both_admit(&["string"]),
            array: both_admit(&["array"]),
            object: both_admit(&["object"]),
        };
        // A list of values, filtered by its side's type, says everything that type says: two
        // lists need no type comparison; one list stands for the types of its values.
        let (old_values, new_values) = (value_list(om, &old_types), value_list(nm, &new_types));
        self.values(path, &old_values, &new_values);
        if old_values.is_none() || new_values.is_none() {
            self.types(
                path,
                &types_of(&old_values).or(old_types.clone()),
                &types_of(&new_values).or(new_types.clone()),
            );
        }
        if classes.number {
            let integers = integers_only(&old_types) && integers_only(&new_types);
            self.number_bound(path, Bound::Lower, om, nm, integers);
            self.number_bound(path, Bound::Upper, om, nm, integers);
            self.multiple_of(path, om, nm, integers_only(&old_types), integers_only(&new_types));
        }
        let mut counts = Vec::new();
        if classes.string {
            counts.extend([("minLength", Bound::Lower), ("maxLength", Bound::Upper)]);
            for keyword in ["pattern", "format"] {
                match (om.get(keyword), nm.get(keyword)) {
                    (None, None) => {}
                    (Some(a), Some(b)) if a == b => {}
                    (None, Some(b)) => self.push(path, format!("`{keyword}` {b} added"), SENDERS),
                    (Some(a), None) => self.push(path, format!("`{keyword}` {a} removed"), READERS),
                    (Some(a), Some(b)) => {
                        self.cannot_judge(path, format!("`{keyword}` changed from {a} to {b}"));
                    }
                }
            }
        }
        if classes.array {
            counts.extend([("minItems", Bound::Lower), ("maxItems", Bound::Upper)]);
            let unique =
                |map: &Map<String, Value>| map.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
            match (unique(om), unique(nm)) {
                (false, true) => self.push(path, "array items must now be unique".into(), SENDERS),
                (true, false) => self.push(path, "array items need no longer be unique".into(), READERS),
                _ => {}
            }
        }
        if classes.object {
            counts.extend([("minProperties", Bound::Lower), ("maxProperties", Bound::Upper)]);
        }
        for (keyword, bound) in counts {
            self.count_bound(path, keyword, bound, om, nm);
        }
        classes
    }

    fn types(
        &mut self,
        path: &str,
        old_types: &Option<BTreeSet<String>>,
        new_types: &Option<BTreeSet<String>>,
    ) {
        // Only objects reach the root schema: the service routes a payload by its `event` member.
        let root_objects = |types: &Option<BTreeSet<String>>| {
            path.is_empty() && types.as_ref().is_none_or(|types| types.contains("object"))
        };
        if root_objects(old_types) && root_objects(new_types) {
            return;
        }
        let (old_set, new_set) = match (old_types, new_types) {
            (None, None) => return,
            (None, Some(new_set)) => {
                if ALL_TYPES.iter().any(|name| !covers(new_set, name)) {
                    self.push(path, format!("type constrained to {}", list(new_set)), SENDERS);
                }
                return;
            }
            (Some(old_set), None) => {
                if ALL_TYPES.iter().any(|name| !covers(old_set, name)) {
                    self.push(path, format!("type constraint {} removed", list(old_set)), READERS);
                }
                return;
            }
            (Some(old_set), Some(new_set)) => (old_set, new_set),
        };
        for name in old_set.iter().filter(|name| !covers(new_set, name)) {
            let change = if name == "number" && new_set.contains("integer") {
                "type narrowed from number to integer".to_owned()
            } else if name == "null" {
                "no longer nullable (type `null` removed)".to_owned()
            } else {
                format!("type `{name}` removed ({} -> {})", list(old_set), list(new_set))
            };
            self.push(path, change, SENDERS);
        }
        for name in new_set.iter().filter(|name| !covers(old_set, name)) {
            let change = if name == "number" && old_set.contains("integer") {
                "type widened from integer to number".to_owned()
            } else if name == "null" {
                "made nullable (type `null` added)".to_owned()
            } else {
                format!("type `{name}` added ({} -> {})", list(old_set), list(new_set))
            };
            self.push(path, change, READERS);
        }
    }

    /// `enum` and `const`: the allowed values (each side's list filtered by its `type`).
    fn values(&mut self, path: &str, old_values: &Option<Vec<&Value>>, new_values: &Option<Vec<&Value>>) {
        match (old_values, new_values) {
            (None, None) => {}
            (None, Some(new_values)) => {
                self.push(path, format!("values restricted to {}", show_values(new_values)), SENDERS);
            }
            (Some(old_values), None) => {
                self.push(path, format!("value restriction {} removed", show_values(old_values)), READERS);
            }
            (Some(old_values), Some(new_values)) => {
                let missing = |from: &[&Value], value: &Value| !from.iter().any(|other| same(other, value));
                for value in old_values.iter().filter(|value| missing(new_values, value)) {
                    self.push(path, format!("value {value} removed (enum/const)"), SENDERS);
                }
                for value in new_values.iter().filter(|value| missing(old_values, value)) {
                    self.push(path, format!("value {value} added (enum/const)"), READERS);
                }
            }
        }
    }

    fn number_bound(
        &mut self,
        path: &str,
        bound: Bound,
        om: &Map<String, Value>,
        nm: &Map<String, Value>,
        integers: bool,
    ) {
        // (limit, exclusive): the tightest of the inclusive and the exclusive keyword.
        let limit = |map: &Map<String, Value>| -> Option<(Num, bool)> {
            let (inclusive, exclusive) = match bound {
                Bound::Lower => ("minimum", "exclusiveMinimum"),
                Bound::Upper => ("maximum", "exclusiveMaximum"),
            };
            let inclusive = map.get(inclusive).and_then(Num::of).map(|limit| (limit, false));
            let exclusive = map.get(exclusive).and_then(Num::of).map(|limit| (limit, true));
            let limit = match (inclusive, exclusive) {
                (Some(a), Some(b)) => Some(if bound.tighter(b, a) { b } else { a }),
                (a, b) => a.or(b),
            };
            // Over the integers, `> 0` and `>= 1` are the same limit.
            limit.map(|limit| if integers { bound.over_integers(limit) } else { limit })
        };
        let show = |(limit, exclusive): (Num, bool)| {
            let operator = match (bound, exclusive) {
                (Bound::Lower, false) => ">=",
                (Bound::Lower, true) => ">",
                (Bound::Upper, false) => "<=",
                (Bound::Upper, true) => "<",
            };
            format!("{operator} {limit}")
        };
        let name = bound.name("minimum", "maximum");
        match (limit(om), limit(nm)) {
            (None, None) => {}
            (None, Some(b)) => self.push(path, format!("{name} {} added", show(b)), SENDERS),
            (Some(a), None) => self.push(path, format!("{name} {} removed", show(a)), READERS),
            (Some(a), Some(b)) if bound.tighter(b, a) => {
                self.push(path, format!("{name} tightened from {} to {}", show(a), show(b)), SENDERS);
            }
            (Some(a), Some(b)) if bound.tighter(a, b) => {
                self.push(path, format!("{name} loosened from {} to {}", show(a), show(b)), READERS);
            }
            _ => {}
        }
    }

    /// `multipleOf`; an integer-only side is a multiple of 1 already (`old_integers`, `new_integers`).
    fn multiple_of(
        &mut self,
        path: &str,
        om: &Map<String, Value>,
        nm: &Map<String, Value>,
        old_integers: bool,
        new_integers: bool,
    ) {
        let divides =
            |small: f64, big: f64| small != 0.0 && (big / small - (big / small).round()).abs() < 1e-9;
        let get = |map: &Map<String, Value>| map.get("multipleOf").and_then(Value::as_f64);
        match (get(om), get(nm)) {
            (None, None) => {}
            (None, Some(b)) if old_integers && divides(b, 1.0) => {}
            (Some(a), None) if new_integers && divides(a, 1.0) => {}
            (None, Some(b)) => self.push(path, format!("`multipleOf` {b} added"), SENDERS),
            (Some(a), None) => self.push(path, format!("`multipleOf` {a} removed"), READERS),
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let breaks = match (divides(a, b), divides(b, a)) {
                    (true, _) => SENDERS,
                    (false, true) => READERS,
                    (false, false) => BOTH,
                };
                self.push(path, format!("`multipleOf` changed from {a} to {b}"), breaks);
            }
        }
    }

    /// `minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/`maxProperties`.
    fn count_bound(
        &mut self,
        path: &str,
        keyword: &str,
        bound: Bound,
        om: &Map<String, Value>,
        nm: &Map<String, Value>,
    ) {
        let get = |map: &Map<String, Value>| map.get(keyword).and_then(Value::as_f64);
        // A missing lower bound is 0; a missing upper bound is none.
        let (old_limit, new_limit) = match bound {
            Bound::Lower => (get(om).or(Some(0.0)), get(nm).or(Some(0.0))),
            Bound::Upper => (get(om), get(nm)),
        };
        match (old_limit, new_limit) {
            (None, None) => {}
            (None, Some(b)) => self.push(path, format!("`{keyword}` {b} added"), SENDERS),
            (Some(a), None) => self.push(path, format!("`{keyword}` {a} removed"), READERS),
            (Some(a), Some(b)) if bound.tighter((Num::Float(b), false), (Num::Float(a), false)) => {
                self.push(path, format!("`{keyword}` tightened from {a} to {b}"), SENDERS);
            }
            (Some(a), Some(b)) if bound.tighter((Num::Float(a), false), (Num::Float(b), false)) => {
                self.push(path, format!("`{keyword}` loosened from {a} to {b}"), READERS);
            }
            _ => {}
        }
    }
}

/// The values a schema allows by `enum`/`const` (`null`/`boolean` types alone count as lists),
/// filtered by its `type`; `None` when it lists none.
fn value_list<'v>(map: &'v Map<String, Value>, types: &Option<BTreeSet<String>>) -> Option<Vec<&'v Value>> {
    let listed = map.get("enum").and_then(Value::as_array).map(|values| values.iter().collect::<Vec<_>>());
    let few_types =
        types.as_ref().is_some_and(|types| types.iter().all(|name| FEW_TYPES.contains(&name.as_str())));
    let values = match (map.get("const"), listed) {
        (Some(value), Some(listed)) => listed.into_iter().filter(|other| same(other, value)).collect(),
        (Some(value), None) => vec![value],
        (None, Some(listed)) => listed,
        (None, None) if few_types => FEW.iter().collect(),
        (None, None) => return None,
    };
    Some(values.into_iter().filter(|value| type_admits(types, value)).collect())
}

/// The types of a list of values (`integer` for whole numbers).
fn types_of(values: &Option<Vec<&Value>>) -> Option<BTreeSet<String>> {
    let names = values.as_ref()?.iter().map(|value| type_name(value).to_owned()).collect();
    Some(names)
}

fn list(types: &BTreeSet<String>) -> String {
    let names: Vec<&str> = types.iter().map(String::as_str).collect();
    format!("[{}]", names.join(", "))
}

fn show_values(values: &[&Value]) -> String {
    let shown: Vec<String> = values.iter().map(|value| value.to_string()).collect();
    format!("[{}]", shown.join(", "))
}
