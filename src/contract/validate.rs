//! Validation errors from `jsonschema`, turned into [`FieldError`]s a person can act on.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

use super::FieldError;
use super::coerce::push_pointer_segment;

/// Builds the validator for one schema: draft 2020-12, formats asserted (jsonschema's own checks;
/// an unknown format is an error), e-mail domains need at least two labels (`jane@localhost` is
/// refused, as the seed did).
pub fn build_validator(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .with_email_options(jsonschema::EmailOptions::default().with_minimum_sub_domains(2))
        .build(schema)
        .map_err(|err| format!("not a valid JSON Schema (draft 2020-12): {err}"))
}

/// Every error of an instance that failed `is_valid`, in the validator's order.
///
/// `required` and `additionalProperties` errors are split per property and point at the property
/// itself (`/data/agent_id`), so that every entry names exactly one thing to fix.
pub fn collect_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for error in validator.iter_errors(instance) {
        push_field_errors(&error, &mut errors);
    }
    errors
}

fn push_field_errors(error: &ValidationError<'_>, out: &mut Vec<FieldError>) {
    let instance_path = error.instance_path().as_str().to_owned();
    let schema_path = error.schema_path().as_str().to_owned();
    let keyword = error.kind().keyword().to_owned();
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
            let mut path = instance_path;
            push_pointer_segment(&mut path, &name);
            out.push(FieldError {
                instance_path: path,
                schema_path,
                keyword,
                message: format!("required property `{name}` is missing"),
            });
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                let mut path = instance_path.clone();
                push_pointer_segment(&mut path, name);
                out.push(FieldError {
                    instance_path: path,
                    schema_path: schema_path.clone(),
                    keyword: keyword.clone(),
                    message: format!(
                        "property `{name}` is not part of the contract (remove it, or add it to the schema)"
                    ),
                });
            }
        }
        kind => out.push(FieldError {
            instance_path,
            schema_path,
            keyword,
            message: message(kind, error.instance()),
        }),
    }
}

/// At most this many characters of a value are quoted in a message.
const EXCERPT_CHARS: usize = 60;

/// A short JSON rendering of a value for messages.
fn excerpt(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("an array of {} item{}", items.len(), plural(items.len())),
        Value::Object(members) => format!(
            "an object with {} propert{}",
            members.len(),
            if members.len() == 1 { "y" } else { "ies" }
        ),
        Value::String(text) if text.chars().count() > EXCERPT_CHARS => {
            let head: String = text.chars().take(EXCERPT_CHARS).collect();
            format!("\"{}…\" ({} characters)", head.escape_debug(), text.chars().count())
        }
        other => other.to_string(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_type_name(kind: JsonType) -> &'static str {
    match kind {
        JsonType::Null => "null",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "an array",
        JsonType::Object => "an object",
    }
}

/// The sentence for one error.
fn message(kind: &ValidationErrorKind, instance: &Value) -> String {
    match kind {
        ValidationErrorKind::Type { kind } => {
            let (expected, wants_number) = match kind {
                TypeKind::Single(single) => (
                    json_type_name(*single).to_owned(),
                    matches!(single, JsonType::Integer | JsonType::Number),
                ),
                TypeKind::Multiple(set) => {
                    let names: Vec<&str> = set.iter().map(json_type_name).collect();
                    let wants_number = set.contains(JsonType::Integer) || set.contains(JsonType::Number);
                    (names.join(" or "), wants_number)
                }
            };
            let mut text = match instance {
                Value::Null | Value::Array(_) | Value::Object(_) => {
                    format!("must be {expected}, but is {}", excerpt(instance))
                }
                _ => format!("must be {expected}, but is {} {}", type_name(instance), excerpt(instance)),
            };
            if wants_number && instance.is_string() {
                text.push_str(
                    " (a string is converted only when it holds a plain decimal number, e.g. \"120\" or \" 4.5 \")",
                );
            }
            if matches!(kind, TypeKind::Single(JsonType::Integer)) && instance.is_f64() {
                text.push_str(" (a whole number is required)");
            }
            text
        }
        ValidationErrorKind::Enum { options } => {
            let allowed = match &**options {
                Value::Array(values) => values.iter().map(Value::to_string).collect::<Vec<_>>().join(", "),
                other => other.to_string(),
            };
            format!("{} is not one of the allowed values: {allowed}", excerpt(instance))
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {expected_value}, but is {}", excerpt(instance))
        }
        ValidationErrorKind::Format { format } => match format.as_str() {
            "email" | "idn-email" => {
                format!("{} is not a valid e-mail address (expected name@domain.tld)", excerpt(instance))
            }
            "date-time" => format!(
                "{} is not an RFC 3339 date-time (expected e.g. \"2026-11-28T10:00:00Z\" or \"2026-11-28T10:00:00+01:00\")",
                excerpt(instance)
            ),
            "date" => format!("{} is not a date (expected YYYY-MM-DD)", excerpt(instance)),
            other => format!("{} is not a valid \"{other}\"", excerpt(instance)),
        },
        ValidationErrorKind::Minimum { limit } => {
            format!("{} is less than the minimum of {limit}", excerpt(instance))
        }
        ValidationErrorKind::Maximum { limit } => {
            format!("{} is greater than the maximum of {limit}", excerpt(instance))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("{} must be greater than {limit}", excerpt(instance))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("{} must be less than {limit}", excerpt(instance))
        }
        ValidationErrorKind::MinLength { limit } => {
            format!("{} is shorter than {limit} character{}", excerpt(instance), plural(*limit as usize))
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("{} is longer than {limit} character{}", excerpt(instance), plural(*limit as usize))
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("{} has fewer than {limit} item{}", excerpt(instance), plural(*limit as usize))
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("{} has more than {limit} item{}", excerpt(instance), plural(*limit as usize))
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("{} does not match the pattern {pattern:?}", excerpt(instance))
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            format!("{} matches none of the allowed shapes", excerpt(instance))
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            format!("{} matches more than one of the allowed shapes", excerpt(instance))
        }
        ValidationErrorKind::FalseSchema => {
            format!("no value is allowed here, but found {}", excerpt(instance))
        }
        _ => {
            let text = kind_fallback(kind, instance);
            if text.chars().count() > 300 { text.chars().take(300).collect::<String>() + "…" } else { text }
        }
    }
}

fn kind_fallback(kind: &ValidationErrorKind, instance: &Value) -> String {
    format!("{} breaks the schema's `{}` rule", excerpt(instance), kind.keyword())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// E-mail addresses are judged by jsonschema's own check, with domains of two labels at least.
    #[test]
    fn email_format_is_asserted_with_two_domain_labels() {
        let validator = build_validator(&json!({"type": "string", "format": "email"})).unwrap();
        for good in ["jane.doe@example.com", "a@b.co", "x!#$%&'*+-/=?^_`{|}~@ex-ample.org"] {
            assert!(validator.is_valid(&json!(good)), "{good:?}");
        }
        for bad in ["a@localhost", "nope", "a@", "@example.com", "a..b@example.com", ""] {
            assert!(!validator.is_valid(&json!(bad)), "{bad:?}");
        }
    }

    /// `required` and `additionalProperties` errors name each property at its own path.
    #[test]
    fn errors_name_each_missing_or_unexpected_property() {
        let schema = json!({
            "type": "object", "additionalProperties": false, "required": ["a", "b"],
            "properties": {"a": {"type": "integer"}, "b": {}}
        });
        let validator = build_validator(&schema).unwrap();
        let errors = collect_errors(&validator, &json!({"a": "x/y", "c/d": 1, "e": 2}));
        let found: Vec<(&str, &str)> =
            errors.iter().map(|e| (e.instance_path.as_str(), e.keyword.as_str())).collect();
        assert_eq!(found.len(), 4, "{found:?}");
        for expected in [
            ("/a", "type"),
            ("/b", "required"),
            ("/c~1d", "additionalProperties"),
            ("/e", "additionalProperties"),
        ] {
            assert!(found.contains(&expected), "{expected:?} missing from {found:?}");
        }
    }
}
