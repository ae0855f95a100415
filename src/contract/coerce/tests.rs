//! Tests of `coerce` (kept apart so the module itself stays short).

use serde_json::json;

use super::*;

#[test]
fn numbers_parse_only_when_unambiguous() {
    assert_eq!(parse_number("120", true), Some(Number::from(120)));
    assert_eq!(parse_number(" -7 ", true), Some(Number::from(-7)));
    assert_eq!(parse_number("+7", true), Some(Number::from(7)));
    assert_eq!(parse_number("18446744073709551615", true), Some(Number::from(u64::MAX)));
    assert_eq!(parse_number(" 4.5 ", false), Number::from_f64(4.5));
    assert_eq!(parse_number("5", false), Number::from_f64(5.0));
    assert_eq!(parse_number("-2.5", false), Number::from_f64(-2.5));
    assert_eq!(parse_number("1e3", false), Number::from_f64(1000.0));
    assert_eq!(parse_number("99999999999999999999", false), Number::from_f64(1e20));
    for bad in ["12x", "", " ", "NaN", "nan", "inf", "-inf", "1e400", "0x10", ".5", "5.", "1_000", "--1", "+"]
    {
        assert_eq!(parse_number(bad, false), None, "{bad:?} as number");
        assert_eq!(parse_number(bad, true), None, "{bad:?} as integer");
    }
    assert_eq!(parse_number("4.5", true), None);
    assert_eq!(parse_number("4.0", true), None);
    assert_eq!(parse_number("1e3", true), None);
    assert_eq!(parse_number("99999999999999999999", true), None);
}

#[test]
fn strings_normalise_in_the_listed_order() {
    let both = [Normalize::Trim, Normalize::Lowercase];
    assert_eq!(normalize_string(" Jane@Example.COM\t", &both).as_deref(), Some("jane@example.com"));
    assert_eq!(normalize_string("\u{3000}ÉLAN", &both).as_deref(), Some("élan"));
    assert_eq!(normalize_string("jane@example.com", &both), None, "already normal: no record");
    assert_eq!(normalize_string(" A ", &[Normalize::Lowercase]).as_deref(), Some(" a "));
}

/// The borrowed shortcuts change exactly what `str::trim` and `str::to_lowercase` change
/// (title case, final sigma, the Kelvin sign, Unicode spaces included).
#[test]
fn normalising_agrees_with_trim_and_to_lowercase() {
    let steps: [&[Normalize]; 4] = [
        &[Normalize::Trim],
        &[Normalize::Lowercase],
        &[Normalize::Trim, Normalize::Lowercase],
        &[Normalize::Lowercase, Normalize::Trim],
    ];
    let texts = [
        "",
        " ",
        "plain",
        " padded\t",
        "UPPER",
        "MiXeD ",
        "\u{3000}É",
        "ǅ",
        "ΟΔΟΣ",
        "\u{212A}elvin",
        "ß",
        "ǆ",
        "日本",
        " \u{2003}x\u{2003} ",
        "a\u{0}b",
        "İ",
    ];
    for normalize in steps {
        for text in texts {
            let mut expected = text.to_owned();
            for step in normalize {
                expected = match step {
                    Normalize::Trim => expected.trim().to_owned(),
                    Normalize::Lowercase => expected.to_lowercase(),
                };
            }
            let expected = (expected != text).then_some(expected);
            assert_eq!(normalize_string(text, normalize), expected, "{text:?} with {normalize:?}");
        }
    }
}

#[test]
fn pointers_escape_tilde_and_slash() {
    let mut pointer = String::new();
    push_pointer_segment(&mut pointer, "a/b~c");
    assert_eq!(pointer, "/a~1b~0c");
    push_pointer_segment(&mut pointer, "plain");
    assert_eq!(pointer, "/a~1b~0c/plain");
}

/// `$ref`s (recursive ones too), arrays, `oneOf`/`anyOf` and `additionalProperties` are
/// followed; a declared property keeps its own schema next to `additionalProperties` (`either`
/// stays a string though undeclared members become numbers); records come in key order.
#[test]
fn walks_refs_arrays_and_additional_properties() {
    let schema = json!({
        "type": "object",
        "properties": {
            "list": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "opt": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "either": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            "self": {"$ref": "#"}
        },
        "additionalProperties": {"type": "number"},
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}, "child": {"$ref": "#/$defs/Item"}}}}
    });
    let plan = compile(&schema).unwrap();
    let mut value = json!({
        "list": [{"n": "1", "child": {"n": "2"}}], "opt": "3", "either": "4", "a/b": "5.5",
        "self": {"opt": "6"}
    });
    let mut coercions = Vec::new();
    plan.apply(&mut value, &mut coercions);
    assert_eq!(
        value,
        json!({"list": [{"n": 1, "child": {"n": 2}}], "opt": 3, "either": "4", "a/b": 5.5, "self": {"opt": 6}})
    );
    let paths: Vec<&str> = coercions.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/a~1b", "/list/0/child/n", "/list/0/n", "/opt", "/self/opt"]);
    assert_eq!(coercions[0].from, json!("5.5"));
    assert_eq!(coercions[0].to, json!(5.5));
}
