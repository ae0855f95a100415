//! Schema-driven coercion: numeric strings become numbers where the schema says `integer`/`number`,
//! and strings carrying `x-cxone-normalize` are trimmed / lower-cased. Every change is recorded.
//!
//! The schema is compiled once into a [`Plan`] (a list of nodes; local `$ref`s are resolved at
//! compile time and may be recursive), then each payload's `serde_json::Value` is walked alongside
//! the plan and changed in place.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use super::Coercion;

/// Index of a node in [`Plan::nodes`].
type NodeId = usize;

/// What coercion may do to a value at one place in the schema.
#[derive(Debug, Clone, Default)]
enum Node {
    /// Nothing is coerced here (no schema, or a schema whose target type is ambiguous).
    #[default]
    Any,
    /// The value should be a number: a numeric string is converted.
    Numeric {
        /// `integer` only (no `number` in the type set): only whole-number strings convert.
        integer: bool,
    },
    /// The value should be a string: the listed normalisations apply.
    String { normalize: Vec<Normalize> },
    /// The value should be an object: walk its members.
    Object {
        /// Declared properties, sorted by name (looked up by binary search, walked in key order).
        properties: Vec<(String, NodeId)>,
        /// Schema for undeclared properties (`additionalProperties`), when it is an object schema.
        additional: Option<NodeId>,
    },
    /// The value should be an array: walk its items.
    Array {
        /// `prefixItems`, by position.
        prefix: Vec<NodeId>,
        /// `items`: every item after the prefix.
        items: Option<NodeId>,
    },
    /// Another node (a `$ref`, or the one branch of a `oneOf`/`anyOf`/`allOf` worth following).
    Ref(NodeId),
}

/// A string normalisation named in `x-cxone-normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Normalize {
    /// Strip leading and trailing whitespace (Unicode).
    Trim,
    /// Lower-case (Unicode).
    Lowercase,
}

/// The coercion rules of one schema, compiled.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every node; the root is node 0, and no `Ref` points at another `Ref`.
    nodes: Vec<Node>,
}

/// Compiles a schema into a plan. Fails only on annotations it does not understand or unresolvable `$ref`s.
pub fn compile(schema: &Value) -> Result<Plan, String> {
    let mut compiler = Compiler { root: schema, nodes: vec![Node::Any], refs: HashMap::new() };
    let root = compiler.node(schema, "#")?;
    // Node 0 is the root: a `"$ref": "#"` is compiled as a `Ref` to node 0.
    compiler.nodes[0] = Node::Ref(root);
    let mut nodes = compiler.nodes;
    // Collapse `Ref` chains so that a walk never meets a `Ref` pointing at another `Ref`.
    for index in 0..nodes.len() {
        let mut target = index;
        let mut hops = 0;
        while let Node::Ref(next) = nodes[target] {
            target = next;
            hops += 1;
            if hops > nodes.len() {
                return Err("a `$ref` cycle never reaches a schema".to_owned());
            }
        }
        if target != index {
            nodes[index] = Node::Ref(target);
        }
    }
    Ok(Plan { nodes })
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    /// `$ref` targets already compiled (or being compiled), by reference string.
    refs: HashMap<String, NodeId>,
}

impl<'a> Compiler<'a> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Compiles the schema at `location` (a JSON pointer fragment, for messages) into a new node.
    fn node(&mut self, schema: &'a Value, location: &str) -> Result<NodeId, String> {
        let Some(object) = schema.as_object() else {
            return Ok(self.push(Node::Any));
        };
        if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
            return self.reference(reference, location);
        }
        let node = self.object_node(object, location)?;
        Ok(self.push(node))
    }

    fn reference(&mut self, reference: &str, location: &str) -> Result<NodeId, String> {
        if reference == "#" {
            return Ok(self.push(Node::Ref(0)));
        }
        if let Some(&id) = self.refs.get(reference) {
            return Ok(self.push(Node::Ref(id)));
        }
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(format!(
                "{location}: only local `$ref`s (starting with `#`) are supported, found {reference:?}"
            ));
        };
        let target = self
            .root
            .pointer(pointer)
            .ok_or_else(|| format!("{location}: `$ref` {reference:?} points at nothing in this schema"))?;
        let placeholder = self.push(Node::Any);
        self.refs.insert(reference.to_owned(), placeholder);
        let compiled = self.node(target, reference)?;
        self.nodes[placeholder] = Node::Ref(compiled);
        Ok(placeholder)
    }

    fn object_node(&mut self, object: &'a Map<String, Value>, location: &str) -> Result<Node, String> {
        let normalize = normalizations(object, location)?;
        // oneOf / anyOf: coerce only when the target is unambiguous: one branch besides `null`.
        for keyword in ["oneOf", "anyOf"] {
            if let Some(branches) = object.get(keyword).and_then(Value::as_array) {
                let non_null: Vec<&Value> =
                    branches.iter().filter(|branch| !is_null_schema(branch)).collect();
                if let [only] = non_null.as_slice() {
                    let id = self.node(only, &format!("{location}/{keyword}"))?;
                    return Ok(Node::Ref(id));
                }
                if !non_null.is_empty() && non_null.iter().all(|branch| numeric_kind(branch).is_some()) {
                    let integer = non_null.iter().all(|branch| numeric_kind(branch) == Some(true));
                    return Ok(Node::Numeric { integer });
                }
                return Ok(Node::Any);
            }
        }
        if let Some(branches) = object.get("allOf").and_then(Value::as_array)
            && let [only] = branches.as_slice()
            && object.get("type").is_none()
            && object.get("properties").is_none()
        {
            let id = self.node(only, &format!("{location}/allOf/0"))?;
            return Ok(Node::Ref(id));
        }

        let types = type_set(object);
        let has = |name: &str| types.as_ref().is_some_and(|types| types.contains(&name));
        if has("string") {
            // A string is acceptable as is: never turn it into a number.
            return Ok(if normalize.is_empty() { Node::Any } else { Node::String { normalize } });
        }
        if has("integer") || has("number") {
            return Ok(Node::Numeric { integer: !has("number") });
        }
        let object_like = has("object") || (types.is_none() && object.contains_key("properties"));
        if object_like {
            let mut properties = Vec::new();
            if let Some(declared) = object.get("properties").and_then(Value::as_object) {
                for (name, schema) in declared {
                    let id = self.node(schema, &format!("{location}/properties/{name}"))?;
                    properties.push((name.clone(), id));
                }
            }
            properties.sort_by(|a, b| a.0.cmp(&b.0));
            let additional = match object.get("additionalProperties") {
                Some(schema @ Value::Object(_)) => {
                    Some(self.node(schema, &format!("{location}/additionalProperties"))?)
                }
                _ => None,
            };
            return Ok(Node::Object { properties, additional });
        }
        let array_like = has("array") || (types.is_none() && object.contains_key("items"));
        if array_like {
            let mut prefix = Vec::new();
            if let Some(schemas) = object.get("prefixItems").and_then(Value::as_array) {
                for (index, schema) in schemas.iter().enumerate() {
                    prefix.push(self.node(schema, &format!("{location}/prefixItems/{index}"))?);
                }
            }
            let items = match object.get("items") {
                Some(schema @ Value::Object(_)) => Some(self.node(schema, &format!("{location}/items"))?),
                _ => None,
            };
            return Ok(Node::Array { prefix, items });
        }
        Ok(Node::Any)
    }
}

/// The schema's `type` as a list, when present.
fn type_set(object: &Map<String, Value>) -> Option<Vec<&str>> {
    match object.get("type")? {
        Value::String(name) => Some(vec![name.as_str()]),
        Value::Array(names) => Some(names.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn is_null_schema(schema: &Value) -> bool {
    schema.as_object().and_then(type_set).is_some_and(|types| types == ["null"])
}

/// `Some(true)` for an integer-only schema, `Some(false)` for a number schema, `None` otherwise.
fn numeric_kind(schema: &Value) -> Option<bool> {
    let types = schema.as_object().and_then(type_set)?;
    if types.contains(&"string") {
        return None;
    }
    let integer = types.contains(&"integer");
    let number = types.contains(&"number");
    (integer || number).then_some(!number)
}

fn normalizations(object: &Map<String, Value>, location: &str) -> Result<Vec<Normalize>, String> {
    let Some(value) = object.get("x-cxone-normalize") else { return Ok(Vec::new()) };
    let names = value
        .as_array()
        .ok_or_else(|| format!("{location}: `x-cxone-normalize` must be an array of names"))?;
    names
        .iter()
        .map(|name| match name.as_str() {
            Some("trim") => Ok(Normalize::Trim),
            Some("lowercase") => Ok(Normalize::Lowercase),
            _ => Err(format!(
                "{location}: unknown normalisation {name} in `x-cxone-normalize` (known: \"trim\", \"lowercase\")"
            )),
        })
        .collect()
}

impl Plan {
    /// Coerces `value` in place, appending every change to `coercions` (in key order, depth first).
    pub fn apply(&self, value: &mut Value, coercions: &mut Vec<Coercion>) {
        let mut path = String::new();
        self.walk(0, value, &mut path, coercions);
    }

    /// The node itself, or the one its `Ref` points at (`compile` collapsed the chains).
    fn resolve(&self, node: NodeId) -> &Node {
        match self.nodes[node] {
            Node::Ref(target) => &self.nodes[target],
            ref node => node,
        }
    }

    fn walk(&self, node: NodeId, value: &mut Value, path: &mut String, coercions: &mut Vec<Coercion>) {
        let replacement = match (self.resolve(node), &*value) {
            (Node::Numeric { integer }, Value::String(text)) => {
                parse_number(text, *integer).map(Value::Number)
            }
            // JSON Schema counts 120.0 as an integer; the typed event wants 120.
            (Node::Numeric { integer: true }, Value::Number(number)) => {
                integral_float(number).map(Value::Number)
            }
            (Node::String { normalize }, Value::String(text)) => {
                normalize_string(text, normalize).map(Value::String)
            }
            (Node::Object { properties, additional }, Value::Object(_)) => {
                let Value::Object(members) = value else { return };
                match additional {
                    // Only declared properties can coerce: look each one up (a closed object with
                    // many undeclared members costs nothing more).
                    None => {
                        for (name, child) in properties {
                            if let Some(member) = members.get_mut(name) {
                                self.walk_member(*child, name, member, path, coercions);
                            }
                        }
                    }
                    Some(additional) => {
                        for (name, member) in members.iter_mut() {
                            let child = properties
                                .binary_search_by(|(key, _)| key.as_str().cmp(name))
                                .map_or(*additional, |index| properties[index].1);
                            self.walk_member(child, name, member, path, coercions);
                        }
                    }
                }
                return;
            }
            (Node::Array { prefix, items }, Value::Array(_)) => {
                let Value::Array(elements) = value else { return };
                for (index, element) in elements.iter_mut().enumerate() {
                    let Some(&child) = prefix.get(index).or(items.as_ref()) else { continue };
                    let len = path.len();
                    // Writing to a String cannot fail.
                    let _ = write!(path, "/{index}");
                    self.walk(child, element, path, coercions);
                    path.truncate(len);
                }
                return;
            }
            _ => return,
        };
        if let Some(to) = replacement {
            let from = std::mem::replace(value, to.clone());
            coercions.push(Coercion { path: path.clone(), from, to });
        }
    }

    /// Walks one object member, its name appended to `path` meanwhile.
    fn walk_member(
        &self,
        node: NodeId,
        name: &str,
        member: &mut Value,
        path: &mut String,
        coercions: &mut Vec<Coercion>,
    ) {
        if matches!(self.resolve(node), Node::Any) {
            return;
        }
        let len = path.len();
        push_pointer_segment(path, name);
        self.walk(node, member, path, coercions);
        path.truncate(len);
    }
}

/// What coercion does to a value at one place of the payload (the compatibility check compares
/// these between two versions of a schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Numeric strings become numbers (`integer`: whole numbers only); integral floats become integers.
    Numeric { integer: bool },
    /// Strings are normalised: the `x-cxone-normalize` names, in order.
    Normalize(Vec<&'static str>),
}

impl Plan {
    /// Every place where coercion changes a scalar, as JSON-pointer segments (`*` for every
    /// undeclared property or every array item after the prefix), with what it does there. A
    /// recursive schema is listed once around each cycle.
    pub fn effects(&self) -> Vec<(Vec<String>, Effect)> {
        let mut out = Vec::new();
        self.list_effects(0, &mut Vec::new(), &mut Vec::new(), &mut out);
        out
    }

    fn list_effects(
        &self,
        node: NodeId,
        path: &mut Vec<String>,
        active: &mut Vec<NodeId>,
        out: &mut Vec<(Vec<String>, Effect)>,
    ) {
        let target = match self.nodes[node] {
            Node::Ref(target) => target,
            _ => node,
        };
        if active.contains(&target) {
            return;
        }
        let mut children: Vec<(String, NodeId)> = Vec::new();
        match &self.nodes[target] {
            Node::Object { properties, additional } => {
                children.extend(properties.iter().cloned());
                children.extend(additional.map(|id| ("*".to_owned(), id)));
            }
            Node::Array { prefix, items } => {
                children.extend(prefix.iter().enumerate().map(|(index, id)| (index.to_string(), *id)));
                children.extend(items.map(|id| ("*".to_owned(), id)));
            }
            _ => {
                if let Some(effect) = self.effect_of(target) {
                    out.push((path.clone(), effect));
                }
                return;
            }
        }
        active.push(target);
        for (segment, child) in children {
            path.push(segment);
            self.list_effects(child, path, active, out);
            path.pop();
        }
        active.pop();
    }

    /// What coercion does at `path` (segments as [`Plan::effects`] gives them; a property name
    /// not declared is judged by `additionalProperties`, an index past the prefix by `items`).
    pub fn effect_at(&self, path: &[String]) -> Option<Effect> {
        let mut node = 0;
        for segment in path {
            node = match self.resolve(node) {
                Node::Object { properties, additional } => {
                    let declared = (segment != "*")
                        .then(|| properties.binary_search_by(|(key, _)| key.as_str().cmp(segment)).ok())
                        .flatten();
                    match declared {
                        Some(index) => properties[index].1,
                        None => (*additional)?,
                    }
                }
                Node::Array { prefix, items } => {
                    match segment.parse::<usize>().ok().and_then(|index| prefix.get(index)) {
                        Some(id) => *id,
                        None => (*items)?,
                    }
                }
                _ => return None,
            };
        }
        let target = match self.nodes[node] {
            Node::Ref(target) => target,
            _ => node,
        };
        self.effect_of(target)
    }

    fn effect_of(&self, node: NodeId) -> Option<Effect> {
        match &self.nodes[node] {
            Node::Numeric { integer } => Some(Effect::Numeric { integer: *integer }),
            Node::String { normalize } if !normalize.is_empty() => Some(Effect::Normalize(
                normalize
                    .iter()
                    .map(|step| match step {
                        Normalize::Trim => "trim",
                        Normalize::Lowercase => "lowercase",
                    })
                    .collect(),
            )),
            _ => None,
        }
    }
}

/// Appends `/segment` to a JSON pointer, escaping `~` as `~0` and `/` as `~1` (RFC 6901).
pub fn push_pointer_segment(pointer: &mut String, segment: &str) {
    pointer.push('/');
    if segment.contains(['~', '/']) {
        pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(segment);
    }
}

/// A float with no fractional part that fits in 64 bits, as an integer (`120.0` -> `120`).
fn integral_float(number: &Number) -> Option<Number> {
    if number.is_i64() || number.is_u64() {
        return None;
    }
    let float = number.as_f64()?;
    if float.fract() != 0.0 || !float.is_finite() {
        return None;
    }
    // 2^63 and 2^64 are exactly representable; the casts below are exact inside these bounds.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float) {
        Some(Number::from(float as i64))
    } else if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
        Some(Number::from(float as u64))
    } else {
        None
    }
}

/// Parses a numeric string the way the contract promises: surrounding whitespace allowed; for
/// integers an optional sign and digits that fit in 64 bits; for numbers a finite decimal in JSON
/// number syntax (optionally with a leading `+`), always a float. Anything else (`"12x"`, `""`,
/// `"NaN"`, `"1e400"`, `"4.5"` for an integer, `"0x10"`) is left alone and then fails validation.
fn parse_number(text: &str, integer: bool) -> Option<Number> {
    let trimmed = text.trim();
    let signless = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let unsigned = trimmed.strip_prefix(['-', '+']).unwrap_or(trimmed);
    if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if unsigned.bytes().all(|b| b.is_ascii_digit()) {
        let whole =
            signless.parse::<i64>().map(Number::from).or_else(|_| signless.parse::<u64>().map(Number::from));
        match (whole, integer) {
            (Ok(whole), true) => return Some(whole),
            (Ok(whole), false) => return Number::from_f64(whole.as_f64()?),
            (Err(_), true) => return None,
            // Too many digits for 64 bits: a number still, as a float.
            (Err(_), false) => {}
        }
    }
    if integer || !json_number_syntax(unsigned) {
        return None;
    }
    let parsed: f64 = signless.parse().ok()?;
    if parsed.is_finite() { Number::from_f64(parsed) } else { None }
}

/// `int frac? exp?` of RFC 8259 (without the sign), except that leading zeros are tolerated.
/// (Rust's float parser alone would also take `.5`, `5.`, `inf` and `NaN`.)
fn json_number_syntax(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == bytes.len()
}

/// Applies the normalisations in order; `None` when the string is already normal.
fn normalize_string(text: &str, normalize: &[Normalize]) -> Option<String> {
    // Borrowed until a step changes something: most strings are already normal.
    let mut current = Cow::Borrowed(text);
    for step in normalize {
        current = match (step, current) {
            (Normalize::Trim, Cow::Borrowed(text)) => Cow::Borrowed(text.trim()),
            (Normalize::Trim, Cow::Owned(text)) if text.trim().len() == text.len() => Cow::Owned(text),
            (Normalize::Trim, Cow::Owned(text)) => Cow::Owned(text.trim().to_owned()),
            // Only upper-case ASCII or non-ASCII text can change (Unicode lower-casing rules).
            (Normalize::Lowercase, current)
                if current.bytes().any(|byte| byte.is_ascii_uppercase() || !byte.is_ascii()) =>
            {
                Cow::Owned(current.to_lowercase())
            }
            (Normalize::Lowercase, current) => current,
        };
    }
    (current != text).then(|| current.into_owned())
}

#[cfg(test)]
mod tests;
