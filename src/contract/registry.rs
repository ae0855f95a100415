//! The registry: event schemas loaded (built in or from a folder), routed by the payload's `event`,
//! and the `check` pipeline that runs one payload through them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::coerce::{self, Plan};
use super::types::BUILTIN_SCHEMAS;
use super::validate;
use super::{Checked, Coercion, ContractError, FieldError, Reason, Rejection, SchemaRef, ValidEvent};

/// Root annotation listing the `event` values a schema serves.
pub const EVENTS_ANNOTATION: &str = "x-cxone-events";
/// Root annotation carrying the schema's version (semver).
pub const VERSION_ANNOTATION: &str = "x-cxone-schema-version";

/// One event schema compiled into the binary: an entry of the table build.rs writes
/// ([`types::BUILTIN_SCHEMAS`](super::types::BUILTIN_SCHEMAS)).
#[derive(Debug)]
pub struct BuiltinSchema {
    /// File name in `schemas/`: how `from_dir` recognises an unchanged copy.
    pub file_name: &'static str,
    /// The schema's text: the very bytes the generated types were made from, so the validator is
    /// compiled from them too.
    pub text: &'static str,
    /// [`canonical_json`] for the schema's generated root type.
    pub canonicalize: fn(&Value) -> Result<Vec<u8>, serde_json::Error>,
}

/// The canonical event: a validated payload decoded into the generated type `T`, serialized back.
pub fn canonical_json<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &Value,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&T::deserialize(value)?)
}

/// Turns a validated payload into the canonical event bytes.
#[derive(Clone, Copy)]
enum Canonicalize {
    /// Through the build.rs-generated type (built-in schemas, and folder schemas byte-identical to one).
    Typed(fn(&Value) -> Result<Vec<u8>, serde_json::Error>),
    /// Run-time-only schema with no generated type: the coerced value itself, keys sorted.
    Untyped,
}

/// One event schema, ready to judge payloads.
struct EventSchema {
    /// `$id` and version, reported with every verdict.
    schema_ref: Arc<SchemaRef>,
    /// The `event` values routed here.
    events: Vec<String>,
    /// Where the schema came from (file name), for messages.
    origin: String,
    /// The compiled schema (jsonschema), built from the same bytes as the generated type.
    validator: jsonschema::Validator,
    /// Compiled coercion rules.
    plan: Plan,
    /// How the canonical event is produced.
    canonicalize: Canonicalize,
}

/// The compiled schemas, routed by the payload's `event` value.
pub struct Contract {
    /// Every schema, in file-name order.
    schemas: Vec<EventSchema>,
    /// `event` value -> its schema; ordered because, with a handful of events, a few comparisons
    /// per request beat hashing the key (and `known_events` lists them sorted).
    routes: BTreeMap<String, Route>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").field("schemas", &self.schemas().collect::<Vec<_>>()).finish()
    }
}

/// Where an `event` value leads.
struct Route {
    /// Index into [`Contract::schemas`].
    schema: usize,
    /// The `event` value itself, handed to every [`ValidEvent`] of this type.
    event_type: Arc<str>,
}

impl Route {
    /// The `event_type` of a valid event whose (coerced) `event` is `event`: the shared value, unless
    /// the schema normalised `event` into something else.
    fn event_type_of(&self, event: &str) -> Arc<str> {
        if *self.event_type == *event { Arc::clone(&self.event_type) } else { event.into() }
    }
}

/// A schema of the registry, as listed by [`Contract::schemas`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaInfo {
    /// `$id` and version.
    pub schema: SchemaRef,
    /// The `event` values it serves.
    pub events: Vec<String>,
    /// The file it was read from.
    pub file_name: String,
    /// Whether a build.rs-generated Rust type produces its canonical event.
    pub typed: bool,
}

impl Contract {
    /// The schemas compiled into this binary (built once, on first use).
    pub fn builtin() -> &'static Contract {
        builtin_shared()
    }

    /// [`Contract::builtin`] as a shared value, for holders that also hold contracts loaded at run
    /// time (the live schema sets of `serve`).
    pub fn shared_builtin() -> Arc<Contract> {
        Arc::clone(builtin_shared())
    }

    /// Schemas read from a folder at run time: every `*.json` with an `x-cxone-events` annotation.
    /// A file byte-identical to a built-in schema keeps its generated type; others produce the
    /// coerced value as their canonical event.
    pub fn from_dir(dir: &Path) -> Result<Contract, ContractError> {
        Contract::from_files(&read_folder(dir)?)
    }

    /// Schemas from files already read (path or name, bytes), as [`Contract::from_dir`] judges a
    /// folder's: a reload hashes and compiles the very same bytes.
    pub fn from_files(files: &[(String, Vec<u8>)]) -> Result<Contract, ContractError> {
        let sources = files.iter().map(|(path, bytes)| {
            let typed = BUILTIN_SCHEMAS
                .iter()
                .find(|builtin| builtin.text.as_bytes() == bytes.as_slice())
                .map_or(Canonicalize::Untyped, |builtin| Canonicalize::Typed(builtin.canonicalize));
            (path.clone(), bytes.as_slice(), typed)
        });
        Contract::from_sources(sources)
    }

    fn from_sources<'a>(
        sources: impl Iterator<Item = (String, &'a [u8], Canonicalize)>,
    ) -> Result<Contract, ContractError> {
        let mut schemas = Vec::new();
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        for (origin, bytes, canonicalize) in sources {
            let fail = |message: String| ContractError { path: origin.clone(), message };
            let schema: Value =
                serde_json::from_slice(bytes).map_err(|err| fail(format!("not valid JSON: {err}")))?;
            let Some(root) = schema.as_object() else {
                return Err(fail("the schema's root must be an object".into()));
            };
            let Some(events) = root.get(EVENTS_ANNOTATION) else { continue };
            let events: Vec<String> = events
                .as_array()
                .filter(|events| !events.is_empty())
                .and_then(|events| events.iter().map(|event| event.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| fail(format!("`{EVENTS_ANNOTATION}` must be a non-empty array of strings")))?;
            let id = root
                .get("$id")
                .and_then(Value::as_str)
                .ok_or_else(|| fail("an event schema needs a string `$id`".into()))?;
            let version = root
                .get(VERSION_ANNOTATION)
                .and_then(Value::as_str)
                .ok_or_else(|| fail(format!("an event schema needs a string `{VERSION_ANNOTATION}`")))?;
            check_envelope(root).map_err(fail)?;
            let validator = validate::build_validator(&schema).map_err(fail)?;
            let plan = coerce::compile(&schema).map_err(fail)?;
            let index = schemas.len();
            for event in &events {
                if let Some(other) = routes.get(event) {
                    let other: &EventSchema = &schemas[other.schema];
                    return Err(fail(format!("event {event:?} is already served by {}", other.origin)));
                }
                routes.insert(event.clone(), Route { schema: index, event_type: event.as_str().into() });
            }
            schemas.push(EventSchema {
                schema_ref: Arc::new(SchemaRef { id: id.to_owned(), version: version.to_owned() }),
                events,
                origin,
                validator,
                plan,
                canonicalize,
            });
        }
        if schemas.is_empty() {
            return Err(ContractError {
                path: "(schemas)".into(),
                message: format!(
                    "no event schema (a *.json file with a root `{EVENTS_ANNOTATION}` array) found"
                ),
            });
        }
        Ok(Contract { schemas, routes })
    }

    /// The schemas of this registry, in file-name order.
    pub fn schemas(&self) -> impl Iterator<Item = SchemaInfo> + '_ {
        self.schemas.iter().map(|schema| SchemaInfo {
            schema: SchemaRef::clone(&schema.schema_ref),
            events: schema.events.clone(),
            file_name: schema.origin.clone(),
            typed: matches!(schema.canonicalize, Canonicalize::Typed(..)),
        })
    }

    /// The schema serving an `event` value, if any.
    pub fn schema_for_event(&self, event: &str) -> Option<&SchemaRef> {
        self.routes.get(event).map(|route| &*self.schemas[route.schema].schema_ref)
    }

    /// Judges one raw request body: parse (serde_json), then [`Contract::check_value`].
    pub fn check(&self, raw: &[u8]) -> Checked {
        match serde_json::from_slice::<Value>(raw) {
            Ok(value) => self.check_value(value),
            Err(err) => reject(Reason::MalformedJson, None, vec![malformed(raw, &err)], Vec::new(), None),
        }
    }

    /// Judges an already-parsed payload (`check` after parsing, and replay): route by `event`,
    /// coerce, `is_valid` (every error collected only when not), canonical JSON through the
    /// generated type.
    pub fn check_value(&self, mut value: Value) -> Checked {
        let (route, schema) = match self.route(&value) {
            Ok(route) => (route, &self.schemas[route.schema]),
            Err(error) => {
                return reject(Reason::UnknownEvent, None, vec![error], Vec::new(), Some(value));
            }
        };
        let mut coercions = Vec::new();
        schema.plan.apply(&mut value, &mut coercions);

        if !schema.validator.is_valid(&value) {
            let errors = validate::collect_errors(&schema.validator, &value);
            let correlation_id = string_member(&value, "correlation_id");
            let original = uncoerce(value, &coercions);
            return reject_with(
                Reason::SchemaValidation,
                Some(schema),
                errors,
                coercions,
                original,
                correlation_id,
            );
        }

        let canonical = match schema.canonicalize {
            Canonicalize::Typed(canonicalize) => canonicalize(&value),
            Canonicalize::Untyped => serde_json::to_vec(&value),
        };
        let canonical_json = match canonical {
            Ok(bytes) => bytes,
            Err(err) => {
                let error = FieldError {
                    instance_path: String::new(),
                    schema_path: String::new(),
                    keyword: "typed_decode".into(),
                    message: format!(
                        "the payload passed the schema but not the generated type ({err}); this is a bug in the contract, the payload is kept for replay"
                    ),
                };
                let correlation_id = string_member(&value, "correlation_id");
                let original = uncoerce(value, &coercions);
                return reject_with(
                    Reason::TypedDecode,
                    Some(schema),
                    vec![error],
                    coercions,
                    original,
                    correlation_id,
                );
            }
        };
        let event_type = value.get("event").and_then(Value::as_str).map(|event| route.event_type_of(event));
        let (Some(event_type), Some(correlation_id)) = (event_type, string_member(&value, "correlation_id"))
        else {
            let error = FieldError {
                instance_path: "/correlation_id".into(),
                schema_path: String::new(),
                keyword: "required".into(),
                message: "an event needs a string `correlation_id` (it is the Kafka key)".into(),
            };
            let original = uncoerce(value, &coercions);
            return reject_with(
                Reason::SchemaValidation,
                Some(schema),
                vec![error],
                coercions,
                original,
                None,
            );
        };
        Checked::Valid(ValidEvent {
            event_type,
            schema: Arc::clone(&schema.schema_ref),
            correlation_id,
            canonical_json,
            coercions,
        })
    }

    /// Picks the schema for a payload by its `event`, or explains why none applies.
    fn route(&self, value: &Value) -> Result<&Route, FieldError> {
        let error = |instance_path: &str, keyword: &str, message: String| FieldError {
            instance_path: instance_path.into(),
            schema_path: String::new(),
            keyword: keyword.into(),
            message,
        };
        let Some(root) = value.as_object() else {
            return Err(error(
                "",
                "type",
                format!("the payload must be a JSON object, but is {}", describe(value)),
            ));
        };
        match root.get("event") {
            None => Err(error(
                "/event",
                "required",
                format!("required property `event` is missing; {}", self.known_events()),
            )),
            Some(Value::String(event)) => self.routes.get(event.as_str()).ok_or_else(|| {
                let shown: String = event.chars().take(80).collect();
                error("/event", "enum", format!("unknown event {shown:?}; {}", self.known_events()))
            }),
            Some(other) => {
                Err(error("/event", "type", format!("`event` must be a string, but is {}", describe(other))))
            }
        }
    }

    fn known_events(&self) -> String {
        let events: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        format!("known events: {}", events.join(", "))
    }
}

/// The one built-in contract, shared.
fn builtin_shared() -> &'static Arc<Contract> {
    static BUILTIN: OnceLock<Arc<Contract>> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let sources = BUILTIN_SCHEMAS.iter().map(|builtin| {
            (builtin.file_name.to_owned(), builtin.text.as_bytes(), Canonicalize::Typed(builtin.canonicalize))
        });
        // The texts were checked by build.rs and by the tests; failing here is a build bug.
        Arc::new(
            Contract::from_sources(sources)
                .unwrap_or_else(|err| panic!("built-in schema is unusable: {err}")),
        )
    })
}

/// Every `*.json` file of a schema folder (path, bytes), in path order. Entries that are not
/// `*.json` (a ConfigMap's `..data` link and `..<timestamp>` folders) are left out; a `*.json`
/// symlink (a ConfigMap's `name.json -> ..data/name.json`) is read through.
pub fn read_folder(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ContractError> {
    let entries = std::fs::read_dir(dir).map_err(|err| ContractError {
        path: dir.display().to_string(),
        message: format!("cannot read the schema folder: {err}"),
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|err| ContractError {
            path: path.display().to_string(),
            message: format!("cannot read: {err}"),
        })?;
        files.push((path.display().to_string(), bytes));
    }
    Ok(files)
}

/// The envelope every event schema must declare: a string `event` and a string `correlation_id`,
/// both required (routing and the Kafka key depend on them).
fn check_envelope(root: &serde_json::Map<String, Value>) -> Result<(), String> {
    let required: Vec<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in ["event", "correlation_id"] {
        let declared_string = root
            .get("properties")
            .and_then(|properties| properties.get(name))
            .and_then(|property| property.get("type"))
            .is_some_and(|kind| kind == "string");
        if !declared_string || !required.contains(&name) {
            return Err(format!(
                "an event schema must declare `{name}` as a required property of type \"string\""
            ));
        }
    }
    Ok(())
}

/// A string member of the root object, owned.
fn string_member(value: &Value, name: &str) -> Option<String> {
    value.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Explains why a body is not JSON.
fn malformed(raw: &[u8], err: &serde_json::Error) -> FieldError {
    let message = match std::str::from_utf8(raw) {
        Err(utf8) => {
            format!("the body is not valid UTF-8 (first invalid byte at offset {})", utf8.valid_up_to())
        }
        Ok(_) if err.to_string().starts_with("recursion limit exceeded") => format!(
            "the body nests arrays/objects more than 128 levels deep ({err}); no CXone payload is that deep"
        ),
        Ok(_) if raw.iter().all(u8::is_ascii_whitespace) => "the body is empty".to_owned(),
        Ok(_) => format!("the body is not valid JSON: {err}"),
    };
    FieldError { instance_path: String::new(), schema_path: String::new(), keyword: "json".into(), message }
}

/// Puts back the values coercion replaced, giving the payload as sent.
fn uncoerce(mut value: Value, coercions: &[Coercion]) -> Value {
    for coercion in coercions.iter().rev() {
        if let Some(slot) = value.pointer_mut(&coercion.path) {
            *slot = coercion.from.clone();
        }
    }
    value
}

fn reject(
    reason: Reason,
    schema: Option<&SchemaRef>,
    errors: Vec<FieldError>,
    coercions: Vec<Coercion>,
    payload: Option<Value>,
) -> Checked {
    let correlation_id = payload
        .as_ref()
        .and_then(|payload| payload.get("correlation_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Checked::Invalid(Box::new(Rejection {
        reason,
        schema: schema.cloned(),
        errors,
        coercions,
        payload,
        correlation_id,
    }))
}

fn reject_with(
    reason: Reason,
    schema: Option<&EventSchema>,
    errors: Vec<FieldError>,
    coercions: Vec<Coercion>,
    payload: Value,
    correlation_id: Option<String>,
) -> Checked {
    Checked::Invalid(Box::new(Rejection {
        reason,
        schema: schema.map(|schema| SchemaRef::clone(&schema.schema_ref)),
        errors,
        coercions,
        payload: Some(payload),
        correlation_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `event_type` is the routed value shared with the registry, unless the schema normalises
    /// `event`: then it is the value that was accepted.
    #[test]
    fn event_type_is_the_accepted_value() {
        let schema = |normalize: &str| {
            format!(
                r#"{{"$id": "ping", "x-cxone-schema-version": "1", "x-cxone-events": ["Ping"],
                    "type": "object", "required": ["event", "correlation_id"],
                    "properties": {{"event": {{"type": "string"{normalize}}}, "correlation_id": {{"type": "string"}}}}}}"#
            )
        };
        for (normalize, expected) in [("", "Ping"), (r#", "x-cxone-normalize": ["lowercase"]"#, "ping")] {
            let text = schema(normalize);
            let contract = Contract::from_sources(
                [("ping.json".to_owned(), text.as_bytes(), Canonicalize::Untyped)].into_iter(),
            )
            .unwrap();
            let Checked::Valid(event) = contract.check(br#"{"event": "Ping", "correlation_id": "c"}"#) else {
                panic!("not valid with {normalize:?}")
            };
            assert_eq!(&*event.event_type, expected);
            let shared = &contract.routes["Ping"].event_type;
            assert_eq!(Arc::ptr_eq(&event.event_type, shared), expected == "Ping");
        }
    }
}
