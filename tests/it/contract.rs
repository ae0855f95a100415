//! Integration tests: contract. The fixture walk, the generated-code snapshot, schema evolution
//! at run time, and the `validate` command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cxone_ingest::contract::{Checked, Contract, Reason, report, types};
use serde_json::{Value, json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The seed's example payload, with its string numbers.
const SEED_VALID: &str = r#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{"channel":"voice","duration_seconds":"120","agent_id":"a-7","customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5"}}}"#;
/// The seed's invalid example: channel, duration and e-mail are all wrong.
const SEED_INVALID: &str = r#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-2","data":{"channel":"fax","duration_seconds":"12x","agent_id":"a-7","customer_email":"nope"}}"#;

/// Payload files under `fixtures/`: every file except the `*.expected.json` expectations (and
/// except `fixtures/compat/`, the schema pairs of the compatibility gate).
fn payload_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path == crate_dir().join("fixtures/compat") {
            continue;
        } else if path.is_dir() {
            payload_files(&path, out);
        } else if !path.to_string_lossy().ends_with(".expected.json") {
            out.push(path);
        }
    }
}

fn expectation_path(payload: &Path) -> PathBuf {
    let stem = payload.file_stem().unwrap().to_string_lossy().into_owned();
    payload.with_file_name(format!("{stem}.expected.json"))
}

/// Compares one verdict with its expectation; returns what differs.
fn compare(payload: &Path, raw: &[u8], checked: &Checked, expected: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let actual = report::to_json(checked);
    let in_valid_dir = payload.components().any(|part| part.as_os_str() == "valid");
    if expected["valid"] != actual["valid"] || expected["valid"].as_bool() != Some(in_valid_dir) {
        problems.push(format!(
            "expected valid={} (folder says {in_valid_dir}), got {}",
            expected["valid"],
            report::to_text(checked)
        ));
        return problems;
    }
    match checked {
        Checked::Valid(event) => {
            if actual["event"] != expected["event"] {
                problems.push(format!(
                    "canonical event differs:\n  expected {}\n  actual   {}",
                    expected["event"], actual["event"]
                ));
            }
            if actual["coercions"] != expected["coercions"] {
                problems.push(format!(
                    "coercions differ: expected {} actual {}",
                    expected["coercions"], actual["coercions"]
                ));
            }
            if let Some(schema) = expected.get("schema")
                && *schema != actual["schema"]
            {
                problems.push(format!("schema differs: expected {schema} actual {}", actual["schema"]));
            }
            // The canonical event is a fixed point: checking it again changes nothing.
            match Contract::builtin().check(&event.canonical_json) {
                Checked::Valid(again)
                    if again.canonical_json == event.canonical_json && again.coercions.is_empty() => {}
                other => problems
                    .push(format!("canonical event is not a fixed point: {}", report::to_text(&other))),
            }
        }
        Checked::Invalid(rejection) => {
            if actual["reason"] != expected["reason"] {
                problems.push(format!("reason: expected {} actual {}", expected["reason"], actual["reason"]));
            }
            let set = |errors: &Value| -> BTreeSet<(String, String)> {
                errors
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|error| {
                        (
                            error["instance_path"].as_str().unwrap().to_owned(),
                            error["keyword"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            };
            let (expected_errors, actual_errors) = (set(&expected["errors"]), set(&actual["errors"]));
            if expected_errors != actual_errors {
                problems.push(format!(
                    "errors differ:\n  expected {expected_errors:?}\n  actual   {actual_errors:?}"
                ));
            }
            if actual["errors"].as_array().is_some_and(|errors| errors.len() != actual_errors.len()) {
                problems.push(format!("duplicate (instance_path, keyword) entries: {}", actual["errors"]));
            }
            if let Some(coercions) = expected.get("coercions")
                && *coercions != actual["coercions"]
            {
                problems
                    .push(format!("coercions differ: expected {coercions} actual {}", actual["coercions"]));
            }
            for error in &rejection.errors {
                if error.message.trim().is_empty() || error.message.len() > 400 {
                    problems
                        .push(format!("unhelpful message for {}: {:?}", error.instance_path, error.message));
                }
            }
            // The rejection keeps the payload as sent (before coercion) whenever it parsed.
            match serde_json::from_slice::<Value>(raw) {
                Ok(sent) if rejection.payload.as_ref() != Some(&sent) => {
                    problems.push("the rejection does not carry the payload as sent".to_owned())
                }
                Err(_) if rejection.reason != Reason::MalformedJson || rejection.payload.is_some() => {
                    problems.push("an unparsable body must be malformed_json without payload".to_owned())
                }
                _ => {}
            }
        }
    }
    problems
}

#[test]
fn fixtures_walk() {
    let mut payloads = Vec::new();
    payload_files(&crate_dir().join("fixtures"), &mut payloads);
    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for payload in &payloads {
        let name = payload.strip_prefix(crate_dir()).unwrap().display().to_string();
        let expectation = expectation_path(payload);
        let Ok(expected_text) = std::fs::read_to_string(&expectation) else {
            failures.push(format!("{name}: no expectation file {}", expectation.display()));
            continue;
        };
        let expected: Value =
            serde_json::from_str(&expected_text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let raw = std::fs::read(payload).unwrap();
        let checked = Contract::builtin().check(&raw);
        match checked {
            Checked::Valid(_) => valid += 1,
            Checked::Invalid(_) => invalid += 1,
        }
        for problem in compare(payload, &raw, &checked, &expected) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    // Every expectation belongs to a payload.
    let mut all = Vec::new();
    collect_all(&crate_dir().join("fixtures"), &mut all);
    for file in all.iter().filter(|file| file.to_string_lossy().ends_with(".expected.json")) {
        let stem = file.file_name().unwrap().to_string_lossy().trim_end_matches(".expected.json").to_owned();
        if !payloads.iter().any(|payload| {
            payload.parent() == file.parent() && payload.file_stem().unwrap().to_string_lossy() == stem
        }) {
            failures.push(format!("{}: expectation without a payload", file.display()));
        }
    }
    println!("fixtures: checked {} payloads ({valid} valid, {invalid} invalid)", payloads.len());
    assert!(failures.is_empty(), "{} fixture failure(s):\n{}", failures.len(), failures.join("\n"));
    assert!(payloads.len() >= 40, "only {} fixtures; the contract needs at least 40", payloads.len());
}

fn collect_all(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { collect_all(&path, out) } else { out.push(path) }
    }
}

#[test]
fn generated_code_matches_snapshot() {
    let snapshot = crate_dir().join("tests/snapshots/contract_types.rs");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
        std::fs::write(&snapshot, types::SOURCE).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&snapshot).unwrap_or_default();
    if committed != types::SOURCE {
        let first_difference =
            committed.lines().zip(types::SOURCE.lines()).position(|(a, b)| a != b).map_or_else(
                || "one is a prefix of the other".to_owned(),
                |line| format!("first difference at line {}", line + 1),
            );
        panic!(
            "the generated code changed ({first_difference}); review it and run \
             `UPDATE_SNAPSHOTS=1 cargo test --test it contract::generated_code_matches_snapshot` to accept it"
        );
    }
}

#[test]
fn builtin_registry_lists_both_families() {
    let schemas: Vec<_> = Contract::builtin().schemas().collect();
    let events: Vec<&str> = schemas.iter().flat_map(|info| info.events.iter().map(String::as_str)).collect();
    assert_eq!(events, ["interaction.completed", "survey.completed"]);
    assert!(schemas.iter().all(|info| info.typed && info.schema.version == "1.0.0"));
    assert_eq!(types::BUILTIN_SCHEMAS.len(), 2);
    // The validator's schema text is the exact file content.
    for builtin in types::BUILTIN_SCHEMAS {
        let file = std::fs::read_to_string(crate_dir().join("schemas").join(builtin.file_name)).unwrap();
        assert_eq!(file, builtin.text, "{} drifted from the embedded copy", builtin.file_name);
    }
}

#[test]
fn seed_examples_behave_as_the_issue_says() {
    let Checked::Valid(event) = Contract::builtin().check(SEED_VALID.as_bytes()) else {
        panic!("seed example rejected")
    };
    let canonical: Value = serde_json::from_slice(&event.canonical_json).unwrap();
    assert_eq!(canonical["data"]["duration_seconds"], json!(120));
    assert_eq!(canonical["data"]["metadata"]["score"], json!(4.5));
    assert_eq!(canonical["data"]["customer_email"], json!("jane.doe@example.com"));
    assert_eq!(event.correlation_id, "c-1");
    assert_eq!(&*event.event_type, "interaction.completed");
    assert_eq!(event.schema.id, "https://schemas.cxone-ingest.dev/events/interaction-completed/v1.json");
    let paths: Vec<&str> = event.coercions.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/data/customer_email", "/data/duration_seconds", "/data/metadata/score"]);

    let Checked::Invalid(rejection) = Contract::builtin().check(SEED_INVALID.as_bytes()) else {
        panic!("accepted")
    };
    assert_eq!(rejection.reason, Reason::SchemaValidation);
    assert_eq!(rejection.correlation_id.as_deref(), Some("c-2"));
    let paths: BTreeSet<&str> = rejection.errors.iter().map(|e| e.instance_path.as_str()).collect();
    assert_eq!(paths, BTreeSet::from(["/data/channel", "/data/duration_seconds", "/data/customer_email"]));
}

#[test]
fn check_value_agrees_with_check() {
    let value: Value = serde_json::from_str(SEED_VALID).unwrap();
    let (Checked::Valid(a), Checked::Valid(b)) =
        (Contract::builtin().check(SEED_VALID.as_bytes()), Contract::builtin().check_value(value))
    else {
        panic!("seed example rejected")
    };
    assert_eq!(a.canonical_json, b.canonical_json);
    assert_eq!(a.coercions, b.coercions);
}

/// The canonical event depends on what was sent, not on how it was written: pretty-printed, with
/// keys in reverse order, or with strings spelled in `\u` escapes, every fixture gets the same
/// verdict (same canonical bytes and coercions, or the same errors) as its compact original.
#[test]
fn layout_key_order_and_escapes_do_not_change_the_verdict() {
    let mut payloads = Vec::new();
    payload_files(&crate_dir().join("fixtures"), &mut payloads);
    let mut compared_valid = 0;
    for payload in &payloads {
        let name = payload.strip_prefix(crate_dir()).unwrap().display().to_string();
        let raw = std::fs::read(payload).unwrap();
        let Ok(value) = serde_json::from_slice::<Value>(&raw) else { continue };
        let mut reversed = String::new();
        write_reversed(&value, &mut reversed);
        let variants = [
            ("pretty", serde_json::to_vec_pretty(&value).unwrap()),
            ("reversed, escaped", reversed.into_bytes()),
        ];
        let original = Contract::builtin().check(&raw);
        for (variant, body) in variants {
            match (&original, Contract::builtin().check(&body)) {
                (Checked::Valid(a), Checked::Valid(b)) => {
                    compared_valid += 1;
                    assert_eq!(a.event_type, b.event_type, "{name} ({variant})");
                    assert_eq!(a.correlation_id, b.correlation_id, "{name} ({variant})");
                    assert_eq!(
                        String::from_utf8_lossy(&a.canonical_json),
                        String::from_utf8_lossy(&b.canonical_json),
                        "{name} ({variant})"
                    );
                    assert_eq!(a.coercions, b.coercions, "{name} ({variant})");
                }
                (Checked::Invalid(a), Checked::Invalid(b)) => {
                    assert_eq!(a.reason, b.reason, "{name} ({variant})");
                    assert_eq!(a.errors, b.errors, "{name} ({variant})");
                    assert_eq!(a.payload, b.payload, "{name} ({variant})");
                }
                (a, b) => panic!("{name} ({variant}): the original is {a:?}, the variant {b:?}"),
            }
        }
    }
    assert!(compared_valid >= 40, "only {compared_valid} valid variants compared");
}

/// Guards against a quadratic pass over an object's members (the removed hand-written parser
/// scanned for duplicate keys pairwise: 11 s for this body). A ~1 MiB body whose closed `data`
/// object holds 80,000 undeclared keys is judged invalid with one `additionalProperties` error per
/// key, and one whose open `data.metadata` holds them is valid and keeps them all. The time bound
/// is a complexity guard, not a timing benchmark.
#[test]
fn eighty_thousand_keys_in_one_object_are_judged_in_milliseconds_regression() {
    const KEYS: usize = 80_000;
    let keys: String = (0..KEYS).map(|i| format!(r#","k{i:06}":0"#)).collect();
    let closed = format!(
        r#"{{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{{"channel":"voice","duration_seconds":1,"agent_id":"a","customer_email":"a@b.co"{keys}}}}}"#
    );
    let open = format!(
        r#"{{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{{"channel":"voice","duration_seconds":1,"agent_id":"a","customer_email":"a@b.co","metadata":{{"score":1{keys}}}}}}}"#
    );
    assert!(closed.len() > 900 << 10 && closed.len() < 1 << 20, "{} bytes", closed.len());

    let start = std::time::Instant::now();
    let Checked::Invalid(rejection) = Contract::builtin().check(closed.as_bytes()) else {
        panic!("80,000 undeclared keys in `data` accepted")
    };
    let closed_took = start.elapsed();
    assert_eq!(rejection.reason, Reason::SchemaValidation);
    assert_eq!(rejection.errors.len(), KEYS);
    assert!(rejection.errors.iter().all(|error| error.keyword == "additionalProperties"));
    assert!(rejection.errors.iter().any(|error| error.instance_path == "/data/k079999"));

    let start = std::time::Instant::now();
    let Checked::Valid(event) = Contract::builtin().check(open.as_bytes()) else {
        panic!("80,000 extra keys in the open `metadata` rejected")
    };
    let open_took = start.elapsed();
    let canonical: Value = serde_json::from_slice(&event.canonical_json).unwrap();
    assert_eq!(canonical["data"]["metadata"].as_object().map(|extras| extras.len()), Some(KEYS + 1));

    println!("80,000 keys: closed object {closed_took:?} (invalid), open object {open_took:?} (valid)");
    // Measured: ~0.5 s / ~0.7 s in a debug build alone, ~0.16 s / ~0.25 s in a release build, on a
    // busy 2-core machine; the pairwise scan took 11 s. Debug builds running beside the other tests
    // get a wider bound (they passed 2 s there), still far below what a quadratic pass needs.
    let bound = std::time::Duration::from_secs(if cfg!(debug_assertions) { 8 } else { 2 });
    assert!(closed_took < bound && open_took < bound, "closed {closed_took:?}, open {open_took:?}");
}

/// JSON text of `value` with object members in reverse key order and every non-ASCII or `e`
/// character written as a `\u` escape.
fn write_reversed(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            out.push('{');
            for (index, (key, member)) in members.iter().rev().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_escaped(key, out);
                out.push(':');
                write_reversed(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_reversed(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_escaped(text, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_escaped(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            'e' | '"' | '\\' | '\u{0}'..='\u{1f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Item 8: the schema folder is the contract; a new field and a new enum value need no Rust change.
#[test]
fn schema_evolution_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate_dir().join("schemas")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    // Unchanged copies keep their generated types.
    let unchanged = Contract::from_dir(dir.path()).unwrap();
    assert!(unchanged.schemas().all(|info| info.typed));

    let file = dir.path().join("interaction-completed.json");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    schema["x-cxone-schema-version"] = json!("1.1.0");
    schema["$defs"]["Channel"]["enum"].as_array_mut().unwrap().push(json!("social"));
    schema["$defs"]["InteractionData"]["properties"]["wrapup_code"] =
        json!({"type": "integer", "minimum": 0, "description": "ACD disposition code."});
    std::fs::write(&file, serde_json::to_vec_pretty(&schema).unwrap()).unwrap();

    let evolved = Contract::from_dir(dir.path()).unwrap();
    let payload = json!({
        "event": "interaction.completed", "timestamp": "2026-11-28T10:00:00Z", "correlation_id": "c-9",
        "data": {"channel": "social", "duration_seconds": "30", "agent_id": "a-1",
                 "customer_email": "X@Example.com", "wrapup_code": "42"}
    });
    let raw = serde_json::to_vec(&payload).unwrap();
    let Checked::Valid(event) = evolved.check(&raw) else {
        panic!("evolved schema rejected the new field / enum value")
    };
    assert_eq!(event.schema.version, "1.1.0");
    let canonical: Value = serde_json::from_slice(&event.canonical_json).unwrap();
    assert_eq!(canonical["data"]["wrapup_code"], json!(42), "the new field is coerced from the schema alone");
    assert_eq!(canonical["data"]["channel"], json!("social"));
    assert_eq!(canonical["data"]["customer_email"], json!("x@example.com"));
    // The binary's own schemas do not know the change yet.
    let Checked::Invalid(old) = Contract::builtin().check(&raw) else {
        panic!("built-in schema accepted it")
    };
    let old_errors: BTreeSet<(&str, &str)> =
        old.errors.iter().map(|e| (e.instance_path.as_str(), e.keyword.as_str())).collect();
    assert_eq!(
        old_errors,
        BTreeSet::from([("/data/channel", "enum"), ("/data/wrapup_code", "additionalProperties")])
    );
    // Every existing valid fixture still passes the evolved contract.
    let mut payloads = Vec::new();
    payload_files(&crate_dir().join("fixtures/interaction-completed/valid"), &mut payloads);
    assert!(!payloads.is_empty());
    for path in payloads {
        assert!(
            matches!(evolved.check(&std::fs::read(&path).unwrap()), Checked::Valid(_)),
            "{}",
            path.display()
        );
    }
}

#[test]
fn unusable_schema_folders_are_refused_with_the_file() {
    let cases: [(&str, &str); 5] = [
        ("broken.json", "{ not json"),
        (
            "bad-ref.json",
            r##"{"$id":"x","x-cxone-schema-version":"1","x-cxone-events":["e"],"type":"object","required":["event","correlation_id"],"properties":{"event":{"type":"string"},"correlation_id":{"type":"string"},"a":{"$ref":"#/$defs/Nope"}}}"##,
        ),
        (
            "bad-normalize.json",
            r#"{"$id":"x","x-cxone-schema-version":"1","x-cxone-events":["e"],"type":"object","required":["event","correlation_id"],"properties":{"event":{"type":"string"},"correlation_id":{"type":"string","x-cxone-normalize":["shout"]}}}"#,
        ),
        (
            "no-envelope.json",
            r#"{"$id":"x","x-cxone-schema-version":"1","x-cxone-events":["e"],"type":"object"}"#,
        ),
        (
            "not-a-schema.json",
            r#"{"$id":"x","x-cxone-schema-version":"1","x-cxone-events":["e"],"type":"object","required":["event","correlation_id"],"properties":{"event":{"type":"string"},"correlation_id":{"type":"strin"}}}"#,
        ),
    ];
    for (name, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let err = Contract::from_dir(dir.path()).expect_err(name);
        assert!(err.path.ends_with(name), "{name}: error names {}", err.path);
        assert!(!err.message.is_empty());
    }
    // Two schemas claiming the same event.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(crate_dir().join("schemas/survey-completed.json")).unwrap();
    std::fs::write(dir.path().join("a.json"), &text).unwrap();
    std::fs::write(dir.path().join("b.json"), &text).unwrap();
    let err = Contract::from_dir(dir.path()).unwrap_err();
    assert!(err.message.contains("survey.completed"), "{err}");
}

// --- the command line ---

fn run_validate(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxone-ingest"))
        .arg("validate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn cli_prints_the_canonical_event_and_coercions() {
    let (code, stdout, _) = run_validate(&["-"], SEED_VALID.as_bytes());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("\"duration_seconds\": 120"), "{stdout}");
    assert!(stdout.contains("\"score\": 4.5"), "{stdout}");
    assert!(stdout.contains("jane.doe@example.com"), "{stdout}");
    assert!(stdout.contains("/data/duration_seconds: \"120\" -> 120"), "{stdout}");

    let (code, stdout, _) = run_validate(&["--json"], SEED_VALID.as_bytes());
    assert_eq!(code, 0);
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verdict["valid"], json!(true));
    assert_eq!(
        verdict["schema"],
        json!("https://schemas.cxone-ingest.dev/events/interaction-completed/v1.json")
    );
    assert_eq!(verdict["event"]["data"]["duration_seconds"], json!(120));
    assert_eq!(verdict["coercions"][1], json!({"path": "/data/duration_seconds", "from": "120", "to": 120}));
}

#[test]
fn cli_lists_every_error_and_exits_1() {
    let (code, stdout, _) = run_validate(&[], SEED_INVALID.as_bytes());
    assert_eq!(code, 1);
    for path in ["/data/channel", "/data/duration_seconds", "/data/customer_email"] {
        assert!(stdout.contains(path), "{path} missing from {stdout}");
    }
    let (code, stdout, _) = run_validate(&["--json"], SEED_INVALID.as_bytes());
    assert_eq!(code, 1);
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verdict["valid"], json!(false));
    assert_eq!(verdict["reason"], json!("schema_validation"));
    let keys: BTreeSet<&str> = verdict["errors"][0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["instance_path", "schema_path", "keyword", "message"]));
    assert_eq!(verdict["errors"].as_array().unwrap().len(), 3);
}

#[test]
fn cli_survives_hostile_input() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!(
        r#"{{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c","data":{{"channel":"voice","duration_seconds":1,"agent_id":"{}","customer_email":"a@b.co"}}}}"#,
        "x".repeat(50 * 1024 * 1024)
    );
    let cases: [(&[u8], &str, &str); 4] = [
        (deep.as_bytes(), "malformed_json", "128 levels"),
        (b"\xff\xfe\x00junk", "malformed_json", "UTF-8"),
        (b"{\"event\": ", "malformed_json", "EOF"),
        (huge.as_bytes(), "schema_validation", "longer than 128"),
    ];
    for (input, reason, hint) in cases {
        let (code, stdout, stderr) = run_validate(&["--json"], input);
        assert_eq!(code, 1, "{reason}: {stderr}");
        let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(verdict["reason"], json!(reason));
        let message = verdict["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(hint), "{message}");
        assert!(message.len() < 400, "message quotes too much: {} bytes", message.len());
    }
}

#[test]
fn cli_lines_mode_and_usage_errors() {
    let input = format!("{SEED_VALID}\n\n{SEED_INVALID}\r\nnot json\n");
    let (code, stdout, _) = run_validate(&["--lines", "--json", "-"], input.as_bytes());
    assert_eq!(code, 1);
    let verdicts: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let summary: Vec<(bool, u64)> =
        verdicts.iter().map(|v| (v["valid"].as_bool().unwrap(), v["line"].as_u64().unwrap())).collect();
    assert_eq!(summary, [(true, 1), (false, 3), (false, 4)]);

    let (code, _, _) = run_validate(&["--lines"], format!("{SEED_VALID}\n{SEED_VALID}\n").as_bytes());
    assert_eq!(code, 0);

    let (code, _, stderr) = run_validate(&["/definitely/not/here.json"], b"");
    assert_eq!(code, 2);
    assert!(stderr.contains("/definitely/not/here.json"), "{stderr}");
    let (code, _, _) = run_validate(&["--no-such-flag"], b"");
    assert_eq!(code, 2);
    let (code, _, stderr) = run_validate(&["--schemas", "/definitely/not/here"], SEED_VALID.as_bytes());
    assert_eq!(code, 2, "{stderr}");
}
