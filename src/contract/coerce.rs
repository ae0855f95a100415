//! Schema-driven coercion: numeric strings become numbers where the schema says `integer`/`number`,
//! and strings carrying `x-cxone-normalize` are trimmed / lower-cased. Every change is recorded.
//!
//! The schema is compiled once into a [`Plan`] (an arena of nodes; local `$ref`s are resolved at
//! compile time and may be recursive), then each payload is walked alongside the plan, in place:
//! a `serde_json::Value` ([`Plan::apply`], the reference path) or a borrowed [`Doc`]
//! ([`Plan::apply_doc`], the fast path), with the same rules and the same records in the same order.

use std::collections::HashMap;

use bumpalo::Bump;
use serde_json::{Map, Number, Value};

use super::Coercion;
use super::doc::Doc;

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
        /// Declared properties, sorted by name (binary search beats hashing for a handful of keys).
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
    /// Placeholder while a `$ref` cycle is being compiled; resolved before compilation ends.
    Ref(NodeId),
}

/// A string normalisation named in `x-cxone-normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Normalize {
    /// Strip leading and trailing whitespace.
    Trim,
    /// Lower-case (Unicode).
    Lowercase,
}

/// The coercion rules of one schema, compiled.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Arena of nodes; the root is node 0.
    nodes: Vec<Node>,
    /// Per node: its JSON pointer when one path of declared properties is the only way to reach it
    /// (most leaves), so that a coercion there copies the pointer instead of building it.
    fixed_pointers: Vec<Option<String>>,
}

/// Compiles a schema into a plan. Fails only on annotations it does not understand or unresolvable `$ref`s.
pub fn compile(schema: &Value) -> Result<Plan, String> {
    let mut compiler = Compiler { root: schema, nodes: vec![Node::Any], refs: HashMap::new() };
    let root = compiler.node(schema, "#")?;
    compiler.nodes[0] = compiler.nodes[root].clone();
    if root != 0 {
        // Keep references to the root (`"$ref": "#"`) pointing at node 0.
        for node in &mut compiler.nodes {
            if let Node::Ref(target) = node
                && *target == root
            {
                *target = 0;
            }
        }
    }
    let mut nodes = compiler.nodes;
    // Collapse `Ref` chains so that walking never meets one that points at another `Ref`.
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
    prune(&mut nodes);
    let fixed_pointers = fixed_pointers(&nodes);
    Ok(Plan { nodes, fixed_pointers })
}

/// The node itself, or the one its `Ref` points at (once `compile` has collapsed `Ref` chains).
fn target(nodes: &[Node], id: NodeId) -> NodeId {
    match nodes[id] {
        Node::Ref(target) => target,
        _ => id,
    }
}

/// Drops what a walk would visit only to do nothing: an `additionalProperties` whose schema coerces
/// nothing (`Any`, also through a `Ref`), and then, where no such schema is left, the declared
/// properties that coerce nothing (where one is left, a declared property must stay declared, or
/// the walk would give it the `additionalProperties` schema).
fn prune(nodes: &mut [Node]) {
    let inert: Vec<bool> = (0..nodes.len()).map(|id| matches!(nodes[target(nodes, id)], Node::Any)).collect();
    for node in nodes.iter_mut() {
        if let Node::Object { properties, additional } = node {
            if additional.is_some_and(|child| inert[child]) {
                *additional = None;
            }
            if additional.is_none() {
                properties.retain(|&(_, child)| !inert[child]);
            }
        }
    }
}

/// Where [`fixed_pointers`] has got to with a node.
#[derive(Clone)]
enum Reach {
    Unvisited,
    /// Reached by exactly one path so far: this one.
    Once(String),
    /// Reached by several paths, through a cycle, or under `additionalProperties` or an array.
    Varies,
}

/// The JSON pointer of every node that only one path of declared properties reaches. A node met a
/// second time becomes `Varies`, and so does everything under it; each node changes state at most
/// twice, so cycles end.
fn fixed_pointers(nodes: &[Node]) -> Vec<Option<String>> {
    let mut reach = vec![Reach::Unvisited; nodes.len()];
    let mut pending: Vec<(NodeId, Option<String>)> = vec![(0, Some(String::new()))];
    while let Some((id, pointer)) = pending.pop() {
        let id = target(nodes, id);
        let pointer = match (&reach[id], pointer) {
            (Reach::Varies, _) => continue,
            (Reach::Unvisited, Some(pointer)) => Some(pointer),
            _ => None,
        };
        reach[id] = match &pointer {
            Some(pointer) => Reach::Once(pointer.clone()),
            None => Reach::Varies,
        };
        match &nodes[id] {
            Node::Object { properties, additional } => {
                for (name, child) in properties {
                    let child_pointer = pointer.as_ref().map(|pointer| {
                        let mut child_pointer = pointer.clone();
                        push_pointer_segment(&mut child_pointer, name);
                        child_pointer
                    });
                    pending.push((*child, child_pointer));
                }
                pending.extend(additional.iter().map(|&child| (child, None)));
            }
            Node::Array { prefix, items } => {
                pending.extend(prefix.iter().chain(items).map(|&child| (child, None)));
            }
            Node::Any | Node::Numeric { .. } | Node::String { .. } | Node::Ref(_) => {}
        }
    }
    reach
        .into_iter()
        .map(|reach| match reach {
            Reach::Once(pointer) => Some(pointer),
            Reach::Unvisited | Reach::Varies => None,
        })
        .collect()
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
    /// Coerces `value` in place, appending every change to `coercions`.
    pub fn apply(&self, value: &mut Value, coercions: &mut Vec<Coercion>) {
        let mut path = String::new();
        self.walk(0, value, &mut path, coercions);
    }

    /// The node itself, or the one a `Ref` points at (chains were collapsed by `compile`).
    fn resolve(&self, node: NodeId) -> &Node {
        &self.nodes[self.resolve_id(node)]
    }

    fn resolve_id(&self, node: NodeId) -> NodeId {
        target(&self.nodes, node)
    }

    fn walk(&self, node: NodeId, value: &mut Value, path: &mut String, coercions: &mut Vec<Coercion>) {
        let node = self.resolve(node);
        match (node, value) {
            (Node::Any, _) => {}
            (Node::Numeric { integer }, value @ Value::String(_)) => {
                let Value::String(text) = &*value else { return };
                if let Some(number) = parse_number(text, *integer) {
                    let to = Value::Number(number);
                    let from = std::mem::replace(value, to.clone());
                    coercions.push(Coercion { path: path.clone(), from, to });
                }
            }
            (Node::Numeric { integer: true }, value @ Value::Number(_)) => {
                // JSON Schema counts 120.0 as an integer; the typed event wants 120.
                let Value::Number(number) = &*value else { return };
                if let Some(whole) = integral_float(number) {
                    let to = Value::Number(whole);
                    let from = std::mem::replace(value, to.clone());
                    coercions.push(Coercion { path: path.clone(), from, to });
                }
            }
            (Node::String { normalize }, value @ Value::String(_)) => {
                let Value::String(text) = &*value else { return };
                if let Some(normalized) = normalize_string(text, normalize) {
                    let to = Value::String(normalized);
                    let from = std::mem::replace(value, to.clone());
                    coercions.push(Coercion { path: path.clone(), from, to });
                }
            }
            (Node::Object { properties, additional }, Value::Object(members)) => {
                for (name, member) in members.iter_mut() {
                    let declared = properties.binary_search_by(|(key, _)| key.as_str().cmp(name.as_str()));
                    let child = match declared {
                        Ok(index) => properties[index].1,
                        Err(_) => match additional {
                            Some(child) => *child,
                            None => continue,
                        },
                    };
                    if matches!(self.resolve(child), Node::Any) {
                        continue;
                    }
                    let len = path.len();
                    push_pointer_segment(path, name);
                    self.walk(child, member, path, coercions);
                    path.truncate(len);
                }
            }
            (Node::Array { prefix, items }, Value::Array(elements)) => {
                for (index, element) in elements.iter_mut().enumerate() {
                    let Some(&child) = prefix.get(index).or(items.as_ref()) else { continue };
                    let len = path.len();
                    path.push('/');
                    path.push_str(&index.to_string());
                    self.walk(child, element, path, coercions);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// Where the fast walk is, as a chain of stack frames: the JSON pointer is only written out when a
/// coercion is recorded (most members visited need none), so walking allocates nothing.
#[derive(Clone, Copy)]
enum Place<'p> {
    Root,
    Member(&'p Place<'p>, &'p str),
    Index(&'p Place<'p>, usize),
}

impl Place<'_> {
    /// The JSON pointer of this place (same text as the reference walk builds).
    fn pointer(&self) -> String {
        let mut pointer = String::with_capacity(32);
        self.write_to(&mut pointer);
        pointer
    }

    fn write_to(&self, pointer: &mut String) {
        match *self {
            Place::Root => {}
            Place::Member(parent, name) => {
                parent.write_to(pointer);
                push_pointer_segment(pointer, name);
            }
            Place::Index(parent, index) => {
                parent.write_to(pointer);
                use std::fmt::Write as _;
                // Writing into a `String` cannot fail.
                let _ = write!(pointer, "/{index}");
            }
        }
    }
}

/// Members of one object the fast walk descends into, kept on the stack (objects rarely have more
/// than this many coercible members; more spill to the heap).
const INLINE_CHILDREN: usize = 16;

impl Plan {
    /// Coerces a borrowed document in place exactly as [`Plan::apply`] coerces the same payload as a
    /// `Value`: same rules, same records, in the same order (members in key order, as a `Value`'s
    /// sorted map yields them).
    /// Normalised strings are copied into `arena`, where the document keeps its own.
    pub fn apply_doc<'a>(&self, doc: &mut Doc<'a>, arena: &'a Bump, coercions: &mut Vec<Coercion>) {
        self.walk_doc(0, doc, arena, Place::Root, coercions);
    }

    fn walk_doc<'a>(
        &self,
        node: NodeId,
        doc: &mut Doc<'a>,
        arena: &'a Bump,
        place: Place<'_>,
        coercions: &mut Vec<Coercion>,
    ) {
        let node = self.resolve_id(node);
        // The JSON pointer of this place, for a coercion record.
        let pointer = || self.fixed_pointers[node].clone().unwrap_or_else(|| place.pointer());
        match (&self.nodes[node], doc) {
            (Node::Any, _) => {}
            (Node::Numeric { integer }, doc @ Doc::String(_)) => {
                let Doc::String(text) = &*doc else { return };
                if let Some(number) = parse_number(text, *integer) {
                    let from = Value::String(text.to_string());
                    *doc = Doc::Number(number.clone());
                    coercions.push(Coercion { path: pointer(), from, to: Value::Number(number) });
                }
            }
            (Node::Numeric { integer: true }, doc @ Doc::Number(_)) => {
                let Doc::Number(number) = &*doc else { return };
                if let Some(whole) = integral_float(number) {
                    let from = Value::Number(number.clone());
                    *doc = Doc::Number(whole.clone());
                    coercions.push(Coercion { path: pointer(), from, to: Value::Number(whole) });
                }
            }
            (Node::String { normalize }, doc @ Doc::String(_)) => {
                let Doc::String(text) = &*doc else { return };
                if let Some(normalized) = normalize_string(text, normalize) {
                    let from = Value::String(text.to_string());
                    let to = Value::String(normalized.clone());
                    *doc = Doc::String(arena.alloc_str(&normalized));
                    coercions.push(Coercion { path: pointer(), from, to });
                }
            }
            (Node::Object { properties, additional: None }, Doc::Object(members)) => {
                // Only declared properties are walked, and they are sorted by name: visiting them in
                // that order gives the records in the Value walk's order (key order).
                for (name, child) in properties {
                    if let Some((key, member)) = members.iter_mut().find(|(key, _)| key == name) {
                        self.walk_doc(*child, member, arena, Place::Member(&place, key), coercions);
                    }
                }
            }
            (Node::Object { properties, additional: Some(additional) }, Doc::Object(members)) => {
                // Members in key order, each with its plan node: on the stack unless many.
                let mut inline: [(usize, NodeId); INLINE_CHILDREN] = [(0, 0); INLINE_CHILDREN];
                let mut count = 0;
                let mut spilled: Vec<(usize, NodeId)> = Vec::new();
                for (index, (name, _)) in members.iter().enumerate() {
                    let child = find_property(properties, name).unwrap_or(*additional);
                    if count < INLINE_CHILDREN {
                        inline[count] = (index, child);
                    } else {
                        if spilled.is_empty() {
                            spilled.extend_from_slice(&inline);
                        }
                        spilled.push((index, child));
                    }
                    count += 1;
                }
                let children = if count > INLINE_CHILDREN { &mut spilled[..] } else { &mut inline[..count] };
                children.sort_unstable_by(|a, b| members[a.0].0.cmp(members[b.0].0));
                for &(index, child) in children.iter() {
                    let (name, member) = &mut members[index];
                    self.walk_doc(child, member, arena, Place::Member(&place, name), coercions);
                }
            }
            (Node::Array { prefix, items }, Doc::Array(elements)) => {
                for (index, element) in elements.iter_mut().enumerate() {
                    let Some(&child) = prefix.get(index).or(items.as_ref()) else { continue };
                    self.walk_doc(child, element, arena, Place::Index(&place, index), coercions);
                }
            }
            _ => {}
        }
    }
}

/// A declared property's node. Few properties: equality checks (length first) are cheaper than the
/// ordered comparisons of a binary search, which always compare bytes.
fn find_property(properties: &[(String, NodeId)], name: &str) -> Option<NodeId> {
    if properties.len() <= 12 {
        properties.iter().find(|(key, _)| key == name).map(|&(_, node)| node)
    } else {
        let found = properties.binary_search_by(|(key, _)| key.as_str().cmp(name)).ok()?;
        Some(properties[found].1)
    }
}

/// Appends `/segment` to a JSON pointer, escaping `~` as `~0` and `/` as `~1` (RFC 6901).
pub fn push_pointer_segment(pointer: &mut String, segment: &str) {
    pointer.reserve(segment.len() + 1);
    pointer.push('/');
    let mut rest = segment;
    while let Some(at) = rest.bytes().position(|b| b == b'~' || b == b'/') {
        pointer.push_str(&rest[..at]);
        pointer.push_str(if rest.as_bytes()[at] == b'~' { "~0" } else { "~1" });
        rest = &rest[at + 1..];
    }
    pointer.push_str(rest);
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
/// number syntax (optionally with a leading `+`). Anything else (`"12x"`, `""`, `"NaN"`, `"1e400"`,
/// `"4.5"` for an integer, `"0x10"`) is left alone and then fails validation.
fn parse_number(text: &str, integer: bool) -> Option<Number> {
    let trimmed = trim(text);
    let unsigned = trimmed.strip_prefix(['-', '+']).unwrap_or(trimmed);
    if unsigned.is_empty() || !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let digits_only = unsigned.bytes().all(|b| b.is_ascii_digit());
    if digits_only {
        if unsigned.len() <= 18 {
            // Below 10^18 < 2^63: no overflow, and the same value `str::parse::<i64>` gives.
            let magnitude = unsigned.bytes().fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
            let n = if trimmed.starts_with('-') { -magnitude } else { magnitude };
            return Some(if integer { Number::from(n) } else { Number::from_f64(n as f64)? });
        }
        let signless = trimmed.strip_prefix('+').unwrap_or(trimmed);
        if let Ok(n) = signless.parse::<i64>() {
            return Some(if integer { Number::from(n) } else { Number::from_f64(n as f64)? });
        }
        if let Ok(n) = signless.parse::<u64>() {
            return Some(if integer { Number::from(n) } else { Number::from_f64(n as f64)? });
        }
        if integer {
            return None;
        }
    }
    if integer {
        return None;
    }
    if let Some(magnitude) = short_decimal(unsigned) {
        return Number::from_f64(if trimmed.starts_with('-') { -magnitude } else { magnitude });
    }
    if !json_number_syntax(unsigned) {
        return None;
    }
    let parsed: f64 = trimmed.strip_prefix('+').unwrap_or(trimmed).parse().ok()?;
    if !parsed.is_finite() {
        return None;
    }
    Number::from_f64(parsed)
}

/// `digits.digits` with at most 15 digits in all, as the nearest `f64`: the digits form an integer
/// below 2^53 and the divisor is a power of ten below 2^53, both exact, so the one division rounds
/// once, to the same value `str::parse::<f64>` gives (Clinger's fast path). `None` for other shapes.
fn short_decimal(unsigned: &str) -> Option<f64> {
    const POWERS_OF_TEN: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (whole, fraction) = unsigned.split_once('.')?;
    if whole.is_empty() || fraction.is_empty() || whole.len() + fraction.len() > 15 {
        return None;
    }
    let mut digits: u64 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        if !byte.is_ascii_digit() {
            return None;
        }
        digits = digits * 10 + u64::from(byte - b'0');
    }
    Some(digits as f64 / POWERS_OF_TEN[fraction.len()])
}

/// `int frac? exp?` of RFC 8259 (without the sign), except that leading zeros are tolerated.
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

/// `str::trim`, skipping its Unicode scan when both ends are printable ASCII (the usual case):
/// every character `char::is_whitespace` knows is a control or space below `!`, or not ASCII.
fn trim(text: &str) -> &str {
    let solid = |byte: Option<&u8>| byte.is_some_and(|&b| (b'!'..=b'~').contains(&b));
    let bytes = text.as_bytes();
    if solid(bytes.first()) && solid(bytes.last()) { text } else { text.trim() }
}

/// Applies the normalisations; `None` when the string is already normal.
fn normalize_string(text: &str, normalize: &[Normalize]) -> Option<String> {
    let mut current: std::borrow::Cow<'_, str> = std::borrow::Cow::Borrowed(text);
    for step in normalize {
        match step {
            Normalize::Trim => {
                let trimmed = trim(&current);
                if trimmed.len() != current.len() {
                    current = std::borrow::Cow::Owned(trimmed.to_owned());
                }
            }
            Normalize::Lowercase => {
                // ASCII text (most addresses) lower-cases the same byte by byte, without the tables.
                if current.is_ascii() {
                    if current.bytes().any(|b| b.is_ascii_uppercase()) {
                        current = std::borrow::Cow::Owned(current.to_ascii_lowercase());
                    }
                } else if current.chars().any(char::is_uppercase) {
                    current = std::borrow::Cow::Owned(current.to_lowercase());
                }
            }
        }
    }
    match current {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(owned) => (owned != text).then_some(owned),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_parse_only_when_unambiguous() {
        assert_eq!(parse_number("120", true), Some(Number::from(120)));
        assert_eq!(parse_number(" -7 ", true), Some(Number::from(-7)));
        assert_eq!(parse_number("+7", true), Some(Number::from(7)));
        assert_eq!(parse_number(" 4.5 ", false), Number::from_f64(4.5));
        assert_eq!(parse_number("5", false), Number::from_f64(5.0));
        assert_eq!(parse_number("1e3", false), Number::from_f64(1000.0));
        for bad in
            ["12x", "", " ", "NaN", "nan", "inf", "-inf", "1e400", "0x10", ".5", "5.", "1_000", "--1", "+"]
        {
            assert_eq!(parse_number(bad, false), None, "{bad:?} as number");
            assert_eq!(parse_number(bad, true), None, "{bad:?} as integer");
        }
        assert_eq!(parse_number("4.5", true), None);
        assert_eq!(parse_number("4.0", true), None);
        assert_eq!(parse_number("99999999999999999999", true), None);
    }

    /// The short-integer shortcut gives exactly what the integer parsers give.
    #[test]
    fn short_integers_parse_as_the_integer_parser_does() {
        let reference = |text: &str, integer: bool| {
            let signless = text.strip_prefix('+').unwrap_or(text);
            if let Ok(n) = signless.parse::<i64>() {
                return if integer { Some(Number::from(n)) } else { Number::from_f64(n as f64) };
            }
            let n = signless.parse::<u64>().ok()?;
            if integer { Some(Number::from(n)) } else { Number::from_f64(n as f64) }
        };
        for digits in 1..=18 {
            for lead in ["", "0", "00"] {
                for sign in ["", "-", "+"] {
                    for top in ['1', '5', '9'] {
                        let text = format!("{sign}{lead}{}", top.to_string().repeat(digits));
                        for integer in [true, false] {
                            assert_eq!(parse_number(&text, integer), reference(&text, integer), "{text}");
                        }
                    }
                }
            }
        }
    }

    /// The short-decimal shortcut gives exactly what the general float parser gives.
    #[test]
    fn short_decimals_parse_as_the_float_parser_does() {
        let mut texts: Vec<String> = [
            "4.5",
            "0.1",
            "0.3",
            "123456789.012345",
            "99999999999999.9",
            "0.00000000000001",
            "007.50",
            "1.0",
        ]
        .iter()
        .map(|text| text.to_string())
        .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let whole_len = 1 + (seed % 8) as usize;
            let fraction_len = 1 + ((seed >> 8) % (15 - whole_len as u64)) as usize;
            let digits: String = (0..whole_len + fraction_len)
                .map(|i| char::from(b'0' + ((seed >> (i * 3 % 60)) % 10) as u8))
                .collect();
            texts.push(format!("{}.{}", &digits[..whole_len], &digits[whole_len..]));
        }
        for text in &texts {
            let expected: f64 = text.parse().expect("decimal");
            assert_eq!(short_decimal(text).map(f64::to_bits), Some(expected.to_bits()), "{text}");
            assert_eq!(parse_number(&format!("-{text}"), false), Number::from_f64(-expected), "-{text}");
        }
        for other in ["1e5", "1.", ".5", "1.2.3", "1234567890.1234567", "1_0.5"] {
            assert_eq!(short_decimal(other), None, "{other}");
        }
    }

    /// Only nodes that one path of declared properties reaches get a fixed pointer: not shared
    /// `$ref` targets, not recursive ones, nothing under arrays or `additionalProperties`.
    #[test]
    fn fixed_pointers_only_where_one_path_leads() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"$ref": "#/$defs/Shared"},
                "c": {"$ref": "#/$defs/Shared"},
                "d": {"type": "object", "properties": {"e~/": {"type": "number"}}},
                "list": {"type": "array", "items": {"type": "integer"}},
                "map": {"type": "object", "additionalProperties": {"type": "integer"}},
                "tree": {"$ref": "#/$defs/Tree"}
            },
            "$defs": {
                "Shared": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "Tree": {"type": "object", "properties": {"v": {"type": "integer"}, "child": {"$ref": "#/$defs/Tree"}}}
            }
        });
        let plan = compile(&schema).unwrap();
        let fixed: std::collections::BTreeSet<&str> =
            plan.fixed_pointers.iter().flatten().map(String::as_str).collect();
        assert_eq!(fixed, ["", "/a", "/d", "/d/e~0~1", "/list", "/map"].into());
    }

    #[test]
    fn trim_agrees_with_str_trim() {
        let ends = [
            "", " ", "\t", "\u{b}", "\u{c}", "\r\n", "\u{85}", "\u{a0}", "\u{2003}", "\u{3000}", "\u{1c}",
            "\u{7f}", "x", "é",
        ];
        for start in ends {
            for end in ends {
                let text = format!("{start}12{end}");
                assert_eq!(trim(&text), text.trim(), "{text:?}");
            }
        }
    }

    #[test]
    fn pointers_escape_tilde_and_slash() {
        let mut pointer = String::new();
        push_pointer_segment(&mut pointer, "a/b~c");
        assert_eq!(pointer, "/a~1b~0c");
    }

    /// Both walks (on a `Value` and on a borrowed document) give the same result and the same
    /// records; a declared property keeps its own schema next to `additionalProperties` (`either`
    /// stays a string though undeclared members become numbers).
    #[test]
    fn walks_refs_arrays_and_additional_properties() {
        let schema = json!({
            "type": "object",
            "properties": {
                "list": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "opt": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "either": {"oneOf": [{"type": "integer"}, {"type": "string"}]}
            },
            "additionalProperties": {"type": "number"},
            "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}, "child": {"$ref": "#/$defs/Item"}}}}
        });
        let plan = compile(&schema).unwrap();
        let body = r#"{"list": [{"n": "1", "child": {"n": "2"}}], "opt": "3", "either": "4", "a/b": "5.5"}"#;
        let mut value: Value = serde_json::from_str(body).unwrap();
        let mut coercions = Vec::new();
        plan.apply(&mut value, &mut coercions);
        let arena = Bump::new();
        let mut doc = Doc::parse(body.as_bytes(), &arena).unwrap();
        let mut doc_coercions = Vec::new();
        plan.apply_doc(&mut doc, &arena, &mut doc_coercions);
        assert_eq!(doc.to_value(), value);
        assert_eq!(doc_coercions, coercions);
        assert_eq!(
            value,
            json!({"list": [{"n": 1, "child": {"n": 2}}], "opt": 3, "either": "4", "a/b": 5.5})
        );
        let paths: Vec<&str> = coercions.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/a~1b", "/list/0/child/n", "/list/0/n", "/opt"]);
    }
}
