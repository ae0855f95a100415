//! The verdict on a payload as the stable JSON object of `validate --json` (shared with the
//! dead-letter record), and as text for people.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Checked, Coercion};

/// The machine form of a verdict:
/// `{"valid": true, "schema", "event", "coercions"}` or
/// `{"valid": false, "reason", "schema", "errors", "coercions"}`.
pub fn to_json(checked: &Checked) -> Value {
    match checked {
        Checked::Valid(event) => {
            // The canonical bytes came from serde_json; reading them back cannot fail in practice,
            // and if it did the raw text is still shown.
            let canonical = serde_json::from_slice::<Value>(&event.canonical_json).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&event.canonical_json).into_owned())
            });
            json!({
                "valid": true,
                "schema": event.schema.id,
                "event": canonical,
                "coercions": event.coercions,
            })
        }
        Checked::Invalid(rejection) => json!({
            "valid": false,
            "reason": rejection.reason,
            "schema": rejection.schema.as_ref().map(|schema| schema.id.as_str()),
            "errors": rejection.errors,
            "coercions": rejection.coercions,
        }),
    }
}

/// The human form of a verdict: the canonical event (pretty) and coercions, or the error list.
pub fn to_text(checked: &Checked) -> String {
    let mut out = String::new();
    match checked {
        Checked::Valid(event) => {
            let _ = writeln!(
                out,
                "valid {} (schema {} v{})",
                event.event_type, event.schema.id, event.schema.version
            );
            let pretty = serde_json::from_slice::<Value>(&event.canonical_json)
                .ok()
                .and_then(|value| serde_json::to_string_pretty(&value).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&event.canonical_json).into_owned());
            let _ = writeln!(out, "{pretty}");
            write_coercions(&mut out, &event.coercions);
        }
        Checked::Invalid(rejection) => {
            let schema = rejection
                .schema
                .as_ref()
                .map(|schema| format!(" (schema {} v{})", schema.id, schema.version))
                .unwrap_or_default();
            let count = rejection.errors.len();
            let _ = writeln!(
                out,
                "invalid: {}{schema}, {count} error{}",
                rejection.reason.as_str(),
                if count == 1 { "" } else { "s" }
            );
            for error in &rejection.errors {
                let path =
                    if error.instance_path.is_empty() { "(root)" } else { error.instance_path.as_str() };
                let _ = writeln!(out, "  {path}: {} [{}]", error.message, error.keyword);
            }
            write_coercions(&mut out, &rejection.coercions);
        }
    }
    out
}

fn write_coercions(out: &mut String, coercions: &[Coercion]) {
    if coercions.is_empty() {
        return;
    }
    let _ = writeln!(out, "coercions:");
    for coercion in coercions {
        let _ = writeln!(out, "  {}: {} -> {}", coercion.path, coercion.from, coercion.to);
    }
}
