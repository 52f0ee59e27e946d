//! Kargo's whole-value type coercion of rendered templates.
//!
//! After every expression of a template has been rendered to text (strings as they are,
//! everything else as JSON) and joined with the literal parts, the whole text is coerced:
//!
//! 1. one trailing `\n` is set aside;
//! 2. text wrapped in double quotes (`"..."`, two characters or more) loses the outer quotes
//!    and stays a string (this is how `quote()` forces a string);
//! 3. text that parses as a number becomes a number (`"12"`, `"1.5"`, `"1e3"`, `"007"`);
//! 4. text Go's `strconv.ParseBool` accepts becomes a bool (`true`, `True`, `TRUE`, `t`,
//!    `T`, and the same for false);
//! 5. valid JSON becomes that value (object, array, `null`);
//! 6. anything else stays a string, with the newline restored.
//!
//! One deliberate difference from Kargo: `NaN`, `Inf` and `Infinity` stay strings, because
//! JSON has no such numbers (Kargo accepts them and then fails to encode the config).

use serde_json::Value as Json;

/// Coerces rendered template text into a JSON value, as Kargo does.
pub fn coerce(text: &str) -> Json {
    let (body, newline) = match text.strip_suffix('\n') {
        Some(b) => (b, true),
        None => (text, false),
    };
    let restore = |s: &str| {
        if newline {
            format!("{s}\n")
        } else {
            s.to_owned()
        }
    };
    if body.len() > 1 && body.starts_with('"') && body.ends_with('"') {
        return Json::String(restore(&body[1..body.len() - 1]));
    }
    if let Some(n) = parse_number(body) {
        return n;
    }
    match body {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => return Json::Bool(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => return Json::Bool(false),
        _ => {}
    }
    if looks_like_json(body)
        && let Ok(v) = serde_json::from_str::<Json>(body)
    {
        return v;
    }
    Json::String(restore(body))
}

/// Parses text the way Go's `strconv.ParseFloat` would accept it (decimal forms only),
/// returning an integer JSON number when the value is integral and exactly representable.
fn parse_number(s: &str) -> Option<Json> {
    let b = s.as_bytes();
    let first = *b.first()?;
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None;
    }
    // Reject forms Rust accepts but Go does not, and the non-finite spellings.
    if !s
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    // Integers that fit keep full precision.
    let digits = s.strip_prefix('+').unwrap_or(s);
    if let Ok(i) = digits.parse::<i64>() {
        return Some(Json::from(i));
    }
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Json::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Json::Number)
}

fn looks_like_json(s: &str) -> bool {
    matches!(
        s.trim_start().as_bytes().first(),
        Some(b'{' | b'[' | b'n' | b'"')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coercion_table() {
        let cases: Vec<(&str, Json)> = vec![
            ("12", json!(12)),
            ("-3", json!(-3)),
            ("+4", json!(4)),
            ("007", json!(7)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000)),
            ("1.10", json!(1.1)),
            (".5", json!(0.5)),
            ("true", json!(true)),
            ("True", json!(true)),
            ("TRUE", json!(true)),
            ("t", json!(true)),
            ("F", json!(false)),
            ("false", json!(false)),
            ("null", Json::Null),
            ("[1,2]", json!([1, 2])),
            ("{\"a\":1}", json!({"a": 1})),
            ("\"42\"", json!("42")),
            ("\"true\"", json!("true")),
            ("\"\"", json!("")),
            ("\"", json!("\"")),
            ("v1", json!("v1")),
            ("1.2.3", json!("1.2.3")),
            ("NaN", json!("NaN")),
            ("Inf", json!("Inf")),
            ("infinity", json!("infinity")),
            ("0x10", json!("0x10")),
            ("1_000", json!("1_000")),
            ("abc\n", json!("abc\n")),
            ("12\n", json!(12)),
            ("\"x\"\n", json!("x\n")),
            ("{not json", json!("{not json")),
            ("", json!("")),
            ("yes", json!("yes")),
            ("9007199254740993", json!(9007199254740993_i64)),
        ];
        for (input, want) in cases {
            assert_eq!(coerce(input), want, "input {input:?}");
        }
    }
}
