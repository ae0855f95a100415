//! Integration tests: the schema compatibility gate (`schemas check`). Every folder of
//! `fixtures/compat/<case>/` (`old/`, `new/`, `expected.json`) is one case; witness payloads in a
//! case are judged by the service's own validator, so the expected verdicts are checked too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cxone_ingest::contract::compat::{self, Side};
use cxone_ingest::contract::{Checked, Contract};
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every case folder under `fixtures/compat`, sorted.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("fixtures/compat"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    cases
}

fn expected(case: &Path) -> Value {
    let text = std::fs::read_to_string(case.join("expected.json"))
        .unwrap_or_else(|err| panic!("{}: expected.json: {err}", case.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: expected.json: {err}", case.display()))
}

fn name(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

/// The verdicts of a report (library or `--json`) in the shape of `expected.json`'s `families`.
fn verdicts(families: &Value) -> Value {
    let families = families.as_array().unwrap();
    Value::Array(
        families
            .iter()
            .map(|family| {
                serde_json::json!({
                    "events": family["events"],
                    "breaks_senders": family["breaks_senders"],
                    "breaks_readers": family["breaks_readers"],
                })
            })
            .collect(),
    )
}

fn says_cannot_judge(report: &Value) -> bool {
    report["families"].as_array().unwrap().iter().any(|family| {
        family["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|change| change["change"].as_str().unwrap().contains("cannot judge"))
    })
}

#[test]
fn compat_fixtures_give_the_expected_verdicts() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let expected = expected(case);
        let report = compat::check_dirs(&case.join("old"), &case.join("new"))
            .unwrap_or_else(|err| panic!("{}: {err}", name(case)));
        let json = serde_json::to_value(&report).unwrap();
        let exit = if report.fails_gate() { 1 } else { 0 };
        if verdicts(&json["families"]) != expected["families"] {
            failures.push(format!(
                "{}: verdicts {} expected {}\n  changes: {}",
                name(case),
                verdicts(&json["families"]),
                expected["families"],
                serde_json::to_string(&json).unwrap()
            ));
        }
        if Some(exit) != expected["exit"].as_i64() {
            failures.push(format!("{}: exit {exit}, expected {}", name(case), expected["exit"]));
        }
        if Value::Bool(says_cannot_judge(&json)) != expected["cannot_judge"] {
            failures.push(format!("{}: \"cannot judge\" said: {}", name(case), says_cannot_judge(&json)));
        }
    }
    println!("compat: {} cases", cases.len());
    assert!(failures.is_empty(), "{} compat case(s) wrong:\n{}", failures.len(), failures.join("\n"));
    assert!(cases.len() >= 30, "only {} compat cases", cases.len());
}

/// The witnesses (`senders-witness.json`: valid under old, refused by new; `readers-witness.json`:
/// valid under new, refused by old) are judged by the service's validator (`Contract::from_dir`),
/// and the case's expected verdict must say the same.
#[test]
fn compat_witness_payloads_agree_with_the_service_validator() {
    let mut checked = 0;
    for case in cases() {
        let expected = expected(&case);
        for (file, side, valid_under, invalid_under) in [
            ("senders-witness.json", "breaks_senders", "old", "new"),
            ("readers-witness.json", "breaks_readers", "new", "old"),
        ] {
            let Ok(raw) = std::fs::read(case.join(file)) else { continue };
            let payload: Value = serde_json::from_slice(&raw).unwrap();
            let event = payload["event"].as_str().unwrap();
            let valid = Contract::from_dir(&case.join(valid_under)).unwrap();
            let invalid = Contract::from_dir(&case.join(invalid_under)).unwrap();
            assert!(
                matches!(valid.check(&raw), Checked::Valid(_)),
                "{}/{file}: refused by {valid_under}/",
                name(&case)
            );
            assert!(
                matches!(invalid.check(&raw), Checked::Invalid(_)),
                "{}/{file}: accepted by {invalid_under}/",
                name(&case)
            );
            let family = expected["families"]
                .as_array()
                .unwrap()
                .iter()
                .find(|family| family["events"].as_array().unwrap().iter().any(|e| e == event))
                .unwrap_or_else(|| panic!("{}: no expected family for {event}", name(&case)));
            assert_eq!(family[side], true, "{}/{file}: the witness shows {side}", name(&case));
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} witnesses");
}

fn run_check(args: &[&Path], json: bool) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cxone-ingest"));
    command.args(["schemas", "check"]).args(args);
    if json {
        command.arg("--json");
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value.as_object().unwrap().keys().map(String::as_str).collect()
}

/// The real binary on every case: the exit status, the exact `--json` shape, the verdicts, and
/// a failing gate's message naming the change.
#[test]
fn schemas_check_binary_exit_status_and_json_shape_on_every_fixture() {
    for case in cases() {
        let expected = expected(&case);
        let (code, stdout, stderr) = run_check(&[&case.join("old"), &case.join("new")], true);
        assert_eq!(Some(i64::from(code)), expected["exit"].as_i64(), "{}: stderr {stderr}", name(&case));
        let report: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{}: {err}", name(&case)));
        assert_eq!(keys(&report), BTreeSet::from(["families"]));
        for family in report["families"].as_array().unwrap() {
            assert_eq!(
                keys(family),
                BTreeSet::from(["events", "old", "new", "breaks_senders", "breaks_readers", "changes"]),
                "{}",
                name(&case)
            );
            for side in ["old", "new"] {
                assert!(
                    family[side].is_null() || keys(&family[side]) == BTreeSet::from(["id", "version"]),
                    "{}: {side} is {}",
                    name(&case),
                    family[side]
                );
            }
            let mut breaks = BTreeSet::new();
            for change in family["changes"].as_array().unwrap() {
                assert_eq!(keys(change), BTreeSet::from(["path", "change", "breaks"]));
                for side in change["breaks"].as_array().unwrap() {
                    let side = side.as_str().unwrap();
                    assert!(side == "senders" || side == "readers", "{}: breaks {side}", name(&case));
                    breaks.insert(side);
                }
            }
            assert_eq!(family["breaks_senders"], breaks.contains("senders"), "{}", name(&case));
            assert_eq!(family["breaks_readers"], breaks.contains("readers"), "{}", name(&case));
        }
        assert_eq!(verdicts(&report["families"]), expected["families"], "{}", name(&case));
        if code == 1 {
            let change = report["families"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|family| family["changes"].as_array().unwrap())
                .find(|change| change["breaks"].as_array().unwrap().iter().any(|side| side == "senders"))
                .unwrap();
            assert!(
                stderr.contains(change["change"].as_str().unwrap()),
                "{}: the message does not name the change: {stderr}",
                name(&case)
            );
        } else {
            assert!(stderr.is_empty(), "{}: {stderr}", name(&case));
        }
    }
}

#[test]
fn schemas_check_text_is_a_table_naming_the_change() {
    let case = crate_dir().join("fixtures/compat/enum-value-removed");
    let (code, stdout, stderr) = run_check(&[&case.join("old"), &case.join("new")], false);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("| family | old | new | breaks senders | breaks readers | gate |"), "{stdout}");
    assert!(stdout.contains("| order.placed | 1.0.0 | 1.0.0 | **yes** | no | **FAIL**"), "{stdout}");
    assert!(
        stdout.contains("| `/data/channel` | value \"phone\" removed (enum/const) | senders |"),
        "{stdout}"
    );
    assert!(stdout.contains("| refund.issued | 1.0.0 | 1.0.0 | no | no | ok |"), "{stdout}");
    assert!(stdout.ends_with("Verdict: FAIL (a family breaks senders without a new major version)\n"));
    assert!(stderr.contains("error: order.placed breaks senders without a new major version"), "{stderr}");
    assert!(stderr.contains("v2.json") && stderr.contains("2.0.0"), "{stderr}");

    let case = crate_dir().join("fixtures/compat/breaking-with-major-bump");
    let (code, stdout, _) = run_check(&[&case.join("old"), &case.join("new")], false);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("| order.placed | 1.0.0 | 2.0.0 | **yes** | no | ok: new major version |"),
        "{stdout}"
    );
}

#[test]
fn schemas_check_usage_and_load_errors_exit_2_naming_the_file() {
    let good = crate_dir().join("schemas");
    // Usage: a missing argument.
    let output =
        Command::new(env!("CARGO_BIN_EXE_cxone-ingest")).args(["schemas", "check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    // A folder that does not exist.
    let missing = crate_dir().join("fixtures/compat/no-such-folder");
    let (code, _, stderr) = run_check(&[&good, &missing], false);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no-such-folder") && stderr.contains("cannot read the schema folder"),
        "{stderr}"
    );
    // A folder whose schema is not JSON, or not a valid schema.
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(&good).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let broken = dir.path().join("survey-completed.json");
    std::fs::write(&broken, "{\"x-cxone-events\": [\"survey.completed\"], ").unwrap();
    let (code, stdout, stderr) = run_check(&[&good, dir.path()], true);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("survey-completed.json") && stderr.contains("not valid JSON"), "{stderr}");
    let text = std::fs::read_to_string(good.join("survey-completed.json")).unwrap();
    std::fs::write(&broken, text.replace("\"minimum\": 1,", "\"minimum\": \"one\",")).unwrap();
    let (code, _, stderr) = run_check(&[dir.path(), &good], false);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("survey-completed.json") && stderr.contains("not a valid JSON Schema"),
        "{stderr}"
    );
}

/// Every single tightening or loosening of the shipped schemas is caught, in the right direction:
/// each `enum` losing or gaining a value, each `maxLength` lowered or raised, each `minimum` raised.
#[test]
fn each_edit_of_the_shipped_schemas_is_judged_in_its_direction() {
    let shipped = crate_dir().join("schemas");
    let report = compat::check_dirs(&shipped, &shipped).unwrap();
    assert!(report.families.iter().all(|family| family.changes.is_empty()), "{report:?}");
    assert!(!report.fails_gate());

    let mut edits = 0;
    for file in ["interaction-completed.json", "survey-completed.json"] {
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(shipped.join(file)).unwrap()).unwrap();
        let mut pointers = Vec::new();
        keyword_pointers(&document, String::new(), &mut pointers);
        for (pointer, keyword) in pointers {
            let mut variants: Vec<(Value, Side)> = Vec::new();
            let value = document.pointer(&pointer).unwrap();
            match keyword.as_str() {
                "enum" => {
                    let values = value.as_array().unwrap();
                    if values.len() > 1 {
                        variants.push((Value::Array(values[1..].to_vec()), Side::Senders));
                    }
                    let mut more = values.clone();
                    more.push(Value::String("added-by-the-test".into()));
                    variants.push((Value::Array(more), Side::Readers));
                }
                "maxLength" => {
                    let limit = value.as_u64().unwrap();
                    variants.push(((limit - 1).into(), Side::Senders));
                    variants.push(((limit + 1).into(), Side::Readers));
                }
                "minimum" => variants.push(((value.as_f64().unwrap() + 1.0).into(), Side::Senders)),
                _ => continue,
            }
            for (replacement, side) in variants {
                let mut edited = document.clone();
                *edited.pointer_mut(&pointer).unwrap() = replacement;
                let dir = tempfile::tempdir().unwrap();
                for other in std::fs::read_dir(&shipped).unwrap() {
                    let other = other.unwrap().path();
                    std::fs::copy(&other, dir.path().join(other.file_name().unwrap())).unwrap();
                }
                std::fs::write(dir.path().join(file), serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
                let report = compat::check_dirs(&shipped, dir.path()).unwrap();
                let changed: Vec<_> =
                    report.families.iter().filter(|family| !family.changes.is_empty()).collect();
                assert_eq!(changed.len(), 1, "{file}{pointer} -> {side:?}: {report:?}");
                let family = changed[0];
                assert_eq!(family.breaks_senders, side == Side::Senders, "{file}{pointer}: {family:?}");
                assert_eq!(family.breaks_readers, side == Side::Readers, "{file}{pointer}: {family:?}");
                assert_eq!(report.fails_gate(), side == Side::Senders);
                edits += 1;
            }
        }
    }
    println!("compat: {edits} single edits of the shipped schemas judged");
    assert!(edits >= 20, "only {edits} edits");
}

/// JSON pointers to every `enum`, `maxLength` and `minimum` keyword of a schema (not inside `$defs`
/// names themselves, but inside every subschema).
fn keyword_pointers(value: &Value, pointer: String, out: &mut Vec<(String, String)>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            let child_pointer = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            if ["enum", "maxLength", "minimum"].contains(&key.as_str()) {
                out.push((child_pointer.clone(), key.clone()));
            }
            keyword_pointers(child, child_pointer, out);
        }
    }
}
