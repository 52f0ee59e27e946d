//! Text encodings Kargo's Go code produces, reproduced so outputs match byte for byte:
//! `fmt`'s `%q` and `%v`, `encoding/json` string escaping as sjson uses it, and go-toml's
//! string encoding.

use std::fmt::Write as _;

pub use kargo_core::expr::go_quote;

/// Go's `%v` for a `float64` (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest digits
/// that round-trip, in exponent form (`1e+06`, `1.5e-07`) when the decimal exponent is
/// below -4 or at least 6.
pub fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Shortest round-trip digits and the decimal exponent, from Rust's `{:e}`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let mut out = format!("{sign}{first}");
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{esign}{:02}", exp.unsigned_abs());
        out
    } else {
        format!("{sign}{}", plain_decimal(&digits, exp))
    }
}

/// Places the decimal point in `digits` (d.ddd × 10^exp) without an exponent.
fn plain_decimal(digits: &str, exp: i32) -> String {
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = (-exp - 1) as usize;
        format!("0.{}{}", "0".repeat(zeros), digits)
    } else if exp + 1 >= n {
        format!("{}{}", digits, "0".repeat((exp + 1 - n) as usize))
    } else {
        let (int, frac) = digits.split_at((exp + 1) as usize);
        format!("{int}.{frac}")
    }
}

/// How sjson writes a string value: as is between quotes when it is plain printable ASCII
/// without `"` or `\`, otherwise through Go's `json.Marshal` (which also escapes `<`, `>`,
/// `&`, U+2028 and U+2029).
pub fn sjson_string(s: &str) -> String {
    let plain = s
        .bytes()
        .all(|b| (b' '..=0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        format!("\"{s}\"")
    } else {
        go_json_string(s)
    }
}

/// Go's `json.Marshal` of a string (HTML-safe escaping, as of Go 1.22).
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// go-toml v2's encoding of a string value: a literal string (`'...'`) unless the text
/// contains `'`, a line break or another control character except tab, in which case a
/// basic string (`"..."`) with escapes.
pub fn go_toml_string(s: &str) -> String {
    if s.chars().any(|c| c == '\'' || toml_needs_escape(c)) {
        toml_basic_string(s)
    } else {
        format!("'{s}'")
    }
}

/// Whether `c` cannot appear as is in a TOML literal string (control characters other
/// than tab, including line breaks).
pub fn toml_needs_escape(c: char) -> bool {
    (c != '\t' && (c as u32) < 0x20) || c == '\u{7f}'
}

/// A TOML basic string (`"..."`) with go-toml's escapes.
pub fn toml_basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if toml_needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(go_quote("v1.2.3"), r#""v1.2.3""#);
        assert_eq!(go_quote("a\"b\\c\n\t"), r#""a\"b\\c\n\t""#);
        assert_eq!(go_quote("héllo ✓"), "\"héllo ✓\"");
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("\u{200b}\u{a0}"), r#""\u200b\u00a0""#);
    }

    #[test]
    fn float_v_like_go() {
        for (f, want) in [
            (1.5, "1.5"),
            (100.0, "100"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (0.1, "0.1"),
        ] {
            assert_eq!(go_float_v(f), want, "{f}");
        }
    }

    #[test]
    fn sjson_strings() {
        assert_eq!(sjson_string("a<b"), "\"a<b\"");
        assert_eq!(sjson_string("é<"), r#""é\u003c""#);
        assert_eq!(sjson_string("say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(sjson_string("a\u{1}"), r#""a\u0001""#);
    }

    #[test]
    fn toml_strings() {
        assert_eq!(go_toml_string("1.0.1"), "'1.0.1'");
        assert_eq!(go_toml_string("it's"), r#""it's""#);
        assert_eq!(go_toml_string("a\nb"), r#""a\nb""#);
        assert_eq!(go_toml_string("tab\there"), "'tab\there'");
    }
}
