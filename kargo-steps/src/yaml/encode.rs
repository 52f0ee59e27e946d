//! Scalar encodings for the editor: when a string may be written plain, single-quoted,
//! double-quoted or as a block scalar, and Kargo's own quoting rule (`QuoteIfNecessary`).

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Kargo's `yaml.QuoteIfNecessary` test: a string that Go's `strconv.ParseFloat` or
/// `strconv.ParseBool` accepts, or that is valid JSON, is written double-quoted.
pub(crate) fn kargo_quotes(s: &str) -> bool {
    go_float_syntax(s) || go_bool(s) || json_valid(s)
}

/// Whether a plain scalar `s` would be read as something other than a string by a YAML 1.2
/// core-schema reader, a YAML 1.1 reader (Helm, `sigs.k8s.io/yaml`), or Kargo's rule.
pub(crate) fn resolves_non_string(s: &str) -> bool {
    kargo_quotes(s) || yaml_null_or_bool(s) || yaml_number(s) || yaml11_timestamp(s)
}

fn go_bool(s: &str) -> bool {
    matches!(
        s,
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    )
}

fn json_valid(s: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

fn yaml_null_or_bool(s: &str) -> bool {
    matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "y"
            | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
            | "="
            | "<<"
    )
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['+', '-']).unwrap_or(s)
}

fn eq_ignore_case_prefix(s: &str, word: &str) -> bool {
    s.len() == word.len() && s.eq_ignore_ascii_case(word)
}

/// Go's `ParseFloat` syntax (range errors ignored): decimal or hexadecimal floats with
/// `_` digit separators, `inf`, `infinity` (signed) and `nan`, any case.
fn go_float_syntax(s: &str) -> bool {
    let unsigned = strip_sign(s);
    if eq_ignore_case_prefix(unsigned, "inf") || eq_ignore_case_prefix(unsigned, "infinity") {
        return true;
    }
    if eq_ignore_case_prefix(s, "nan") {
        return true;
    }
    let b = unsigned.as_bytes();
    if b.len() > 2 && b[0] == b'0' && (b[1] | 0x20) == b'x' {
        // Hexadecimal: mantissa digits, optional fraction, mandatory p exponent.
        let rest = &unsigned[2..];
        let Some(p) = rest.find(['p', 'P']) else {
            return false;
        };
        let (mant, exp) = (&rest[..p], &rest[p + 1..]);
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let hex = |t: &str| t.bytes().all(|c| c.is_ascii_hexdigit() || c == b'_');
        let has_digit = mant.bytes().any(|c| c.is_ascii_hexdigit());
        return has_digit && hex(int) && hex(frac) && digits_with_sign(exp);
    }
    decimal_float(unsigned, true)
}

fn digits_with_sign(s: &str) -> bool {
    let d = strip_sign(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit() || c == b'_') && d.as_bytes()[0] != b'_'
}

/// `digits[.digits][e[sign]digits]` or `.digits[...]`, with `_` allowed between digits.
fn decimal_float(s: &str, allow_underscore: bool) -> bool {
    let digit = |c: u8| c.is_ascii_digit() || (allow_underscore && c == b'_');
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let has_digit = mant.bytes().any(|c| c.is_ascii_digit());
    has_digit
        && int.bytes().all(digit)
        && frac.bytes().all(digit)
        && !mant.starts_with('_')
        && exp.is_none_or(digits_with_sign)
}

/// Integers and floats of YAML 1.2 (core) and 1.1 (underscores, `0b`, `0o`, `0x`, leading-zero
/// octals, sexagesimal `1:30`, `.inf`, `.nan`).
fn yaml_number(s: &str) -> bool {
    let u = strip_sign(s);
    if matches!(u, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let b = u.as_bytes();
    if b.len() > 2 && b[0] == b'0' && b[1].is_ascii_alphabetic() {
        let body = u.get(2..).unwrap_or_default();
        let ok = |f: fn(u8) -> bool| body.bytes().all(|c| f(c) || c == b'_') && body.bytes().any(f);
        match b[1] {
            b'x' | b'X' => return ok(|c| c.is_ascii_hexdigit()),
            b'o' | b'O' => return ok(|c| (b'0'..=b'7').contains(&c)),
            b'b' | b'B' => return ok(|c| c == b'0' || c == b'1'),
            _ => {}
        }
    }
    if decimal_float(u, true) {
        return true;
    }
    // Sexagesimal (YAML 1.1): 1:20, 190:20:30.15
    if u.contains(':') {
        let (whole, frac) = u.split_once('.').unwrap_or((u, ""));
        let mut parts = whole.split(':');
        let first_ok = parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit() || c == b'_'));
        let rest_ok =
            parts.all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|c| c.is_ascii_digit()));
        return first_ok && rest_ok && frac.bytes().all(|c| c.is_ascii_digit() || c == b'_');
    }
    false
}

/// YAML 1.1 timestamps start with `YYYY-M`.
fn yaml11_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 6 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

/// Characters that may not appear raw in any scalar we write (other than as escapes in a
/// double-quoted one): non-printable characters, line separators, the BOM.
fn is_unsafe_char(c: char) -> bool {
    match c {
        '\t' => false,
        '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => true,
        c if c.is_control() => true,
        '\u{fffe}' | '\u{ffff}' => true,
        _ => false,
    }
}

/// The plain encoding of `s`, if `s` can be written plain without changing its value or
/// type. `flow`: inside a flow collection (`[...]`, `{...}`).
pub(crate) fn plain(s: &str, flow: bool) -> Option<String> {
    if resolves_non_string(s) {
        return None;
    }
    let first = s.chars().next()?;
    let last = s.chars().next_back()?;
    if first.is_whitespace() || last.is_whitespace() || last == ':' {
        return None;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return None;
    }
    let flow_indicator = |c: char| matches!(c, ',' | '[' | ']' | '{' | '}');
    match first {
        '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' | ',' | '[' | ']'
        | '{' | '}' => return None,
        // libyaml refuses `:x` in flow collections; stay on the safe side there.
        '-' | '?' | ':' if flow => return None,
        '-' | '?' | ':' => {
            let second = s.chars().nth(1)?;
            if second.is_whitespace() || flow_indicator(second) {
                return None;
            }
        }
        _ => {}
    }
    let mut prev = ' ';
    for c in s.chars() {
        if c == '\n' || c == '\r' || c == '\t' || is_unsafe_char(c) {
            return None;
        }
        if c == '#' && prev.is_whitespace() {
            return None;
        }
        if prev == ':' && (c.is_whitespace() || (flow && flow_indicator(c))) {
            return None;
        }
        if flow && (flow_indicator(c) || c == ':') {
            return None;
        }
        prev = c;
    }
    Some(s.to_owned())
}

/// The single-quoted encoding of `s`, if it is a one-line printable string.
pub(crate) fn single_quoted(s: &str) -> Option<String> {
    if s.chars()
        .any(|c| c == '\n' || c == '\r' || is_unsafe_char(c))
    {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    Some(out)
}

/// The double-quoted encoding of `s`; always possible.
pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) < 0x100 && is_unsafe_char(c) => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Block scalar style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// `|`
    Literal,
    /// `>`
    Folded,
}

/// A block scalar encoding: the new header indicator (`|-`, `>+`, `|2`...) and the content
/// lines, each ending with `nl` except where the old content ended the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockEncoding {
    /// The indicator, from the style character to the chomping indicator.
    pub header: String,
    /// The content lines.
    pub body: String,
    /// Whether the chomping is `+` (trailing empty lines are content).
    pub keep: bool,
}

/// Encodes `s` as a block scalar of `style` with content at column `indent` (at least 1).
/// `digit`: the old explicit indentation indicator, kept as it was. `final_nl`: whether
/// the content ends with a line break (false only at the end of a file without one).
pub(crate) fn block(
    s: &str,
    style: Block,
    indent: usize,
    digit: Option<char>,
    nl: &str,
    final_nl: bool,
) -> Option<BlockEncoding> {
    if indent == 0
        || s.chars()
            .any(|c| c == '\r' || (c != '\n' && is_unsafe_char(c)))
    {
        return None;
    }
    let body_text = s.trim_end_matches('\n');
    let trailing = s.len() - body_text.len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    if body_text.is_empty() && trailing > 0 {
        return None;
    }
    let lines: Vec<&str> = if body_text.is_empty() {
        Vec::new()
    } else {
        body_text.split('\n').collect()
    };
    if digit.is_none()
        && lines
            .iter()
            .find(|l| !l.is_empty())
            .is_some_and(|l| l.starts_with(' '))
    {
        return None;
    }
    // libyaml refuses a tab right after the indentation of a block scalar line.
    if lines.iter().any(|l| l.starts_with('\t')) {
        return None;
    }
    let pad = " ".repeat(indent);
    let mut out_lines: Vec<String> = Vec::new();
    match style {
        Block::Literal => {
            for l in &lines {
                out_lines.push(if l.is_empty() {
                    String::new()
                } else {
                    format!("{pad}{l}")
                });
            }
        }
        Block::Folded => {
            if lines.iter().any(|l| l.starts_with([' ', '\t'])) {
                return None;
            }
            // Leading empty lines are kept as they are; between two content lines separated
            // by m line breaks, m empty lines.
            let mut pending_breaks = 0usize;
            let mut seen_content = false;
            for l in &lines {
                if l.is_empty() {
                    pending_breaks += 1;
                    if !seen_content {
                        out_lines.push(String::new());
                    }
                    continue;
                }
                if seen_content {
                    for _ in 0..pending_breaks + 1 {
                        out_lines.push(String::new());
                    }
                }
                pending_breaks = 0;
                seen_content = true;
                out_lines.push(format!("{pad}{l}"));
            }
        }
    }
    for _ in 1..trailing {
        out_lines.push(String::new());
    }
    let mut body = out_lines.join(nl);
    if final_nl && !out_lines.is_empty() {
        body.push_str(nl);
    }
    let style_char = match style {
        Block::Literal => '|',
        Block::Folded => '>',
    };
    let mut header = String::from(style_char);
    if let Some(d) = digit {
        header.push(d);
    }
    header.push_str(chomp);
    Some(BlockEncoding {
        header,
        body,
        keep: chomp == "+",
    })
}

/// The style a verified snippet must come back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Plain,
    Single,
    Double,
    Literal,
    Folded,
}

/// Parses `doc` (a tiny document holding one value) and checks that its first non-key
/// scalar is `value` in `style`.
pub(crate) fn verify(doc: &str, value: &str, style: Expect) -> bool {
    let mut scalars = 0usize;
    let mut in_flow_seq = false;
    for item in Parser::new_from_str(doc) {
        let Ok((event, _)) = item else {
            return false;
        };
        match event {
            Event::SequenceStart(..) => in_flow_seq = true,
            Event::Scalar(v, st, _, _) => {
                scalars += 1;
                if in_flow_seq || scalars == 2 {
                    let got = match st {
                        ScalarStyle::Plain => Expect::Plain,
                        ScalarStyle::SingleQuoted => Expect::Single,
                        ScalarStyle::DoubleQuoted => Expect::Double,
                        ScalarStyle::Literal => Expect::Literal,
                        ScalarStyle::Folded => Expect::Folded,
                    };
                    return got == style && v == value;
                }
            }
            _ => {}
        }
    }
    false
}

/// Formats a JSON value the way Go's `fmt` `%v` prints what Kargo's
/// `yaml.QuoteIfNecessary` returns (used for commit messages).
pub(crate) fn go_display(v: &serde_json::Value, top: bool) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "<nil>".to_owned(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => go_float(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) if top && kargo_quotes(s) => kargo_core::expr::go_quote(s),
        J::String(s) => s.clone(),
        J::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| go_display(x, false)).collect();
            format!("[{}]", items.join(" "))
        }
        J::Object(m) => {
            let mut items: Vec<(&String, &serde_json::Value)> = m.iter().collect();
            items.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = items
                .into_iter()
                .map(|(k, x)| format!("{k}:{}", go_display(x, false)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go's `%v` of a float64 (Kargo decodes every JSON number as one):
/// `strconv.FormatFloat(f, 'g', -1, 64)`, the shortest representation, in exponent form
/// when the decimal exponent is below -4 or at least 6 (`1e+06`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}`.
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = exp as usize + 1;
    if digits.len() <= point {
        format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kargo_quote_rule() {
        for s in [
            "123",
            "1.10",
            "true",
            "false",
            "null",
            "[1, 2, 3]",
            r#"{"key": "value"}"#,
        ] {
            assert!(kargo_quotes(s), "{s}");
        }
        for s in [
            "1e5", "-Inf", "nan", "0x1p-2", "t", "F", "1_000", ".5", "5.", "1e400",
        ] {
            assert!(kargo_quotes(s), "{s}");
        }
        for s in [
            "string", "v1.2.3", "1.2.3", "0x1F", "+nan", "e5", ".", "abc1", "it's",
        ] {
            assert!(!kargo_quotes(s), "{s}");
        }
    }

    #[test]
    fn yaml_types() {
        for s in [
            "yes",
            "Off",
            "~",
            "",
            "0o17",
            "0b101",
            "0x1F",
            "012",
            "1:30",
            "190:20:30.15",
        ] {
            assert!(resolves_non_string(s), "{s}");
        }
        for s in [
            ".inf",
            "-.INF",
            ".NaN",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "<<",
        ] {
            assert!(resolves_non_string(s), "{s}");
        }
        for s in [
            "1.2.3",
            "v1",
            "yess",
            "1:3x",
            "abc",
            "1-2",
            "ghcr.io/a/b:1.0",
        ] {
            assert!(!resolves_non_string(s), "{s}");
        }
    }

    #[test]
    fn plain_rules() {
        assert_eq!(plain("v1.2.3", false).as_deref(), Some("v1.2.3"));
        assert_eq!(plain("it's info", false).as_deref(), Some("it's info"));
        assert_eq!(plain("a:b", false).as_deref(), Some("a:b"));
        assert_eq!(plain("-x", false).as_deref(), Some("-x"));
        assert_eq!(
            plain("ghcr.io/a/b:1.0", false).as_deref(),
            Some("ghcr.io/a/b:1.0")
        );
        for s in [
            "a: b", "a #b", "#a", " a", "a ", "a:", "- a", "*a", "1.10", "on", "a\nb", "", "a\tb",
        ] {
            assert_eq!(plain(s, false), None, "{s:?}");
        }
        assert_eq!(plain("a,b", true), None);
        assert_eq!(plain("a,b", false).as_deref(), Some("a,b"));
    }

    #[test]
    fn quoting() {
        assert_eq!(single_quoted("it's").as_deref(), Some("'it''s'"));
        assert_eq!(single_quoted("a\nb"), None);
        assert_eq!(double_quoted("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        for s in ["a\"b\\c\n\u{1}é\u{2028}\u{85}\u{feff}\t\r", "", " x "] {
            assert!(
                verify(&format!("k: {}", double_quoted(s)), s, Expect::Double),
                "{s:?}"
            );
        }
    }

    #[test]
    fn blocks() {
        let b = block("a\nb\n", Block::Literal, 2, None, "\n", true).unwrap();
        assert_eq!((b.header.as_str(), b.body.as_str()), ("|", "  a\n  b\n"));
        let b = block("a\nb", Block::Literal, 4, None, "\r\n", true).unwrap();
        assert_eq!(
            (b.header.as_str(), b.body.as_str()),
            ("|-", "    a\r\n    b\r\n")
        );
        let b = block("a\n\n", Block::Literal, 2, None, "\n", true).unwrap();
        assert_eq!(
            (b.header.as_str(), b.body.as_str(), b.keep),
            ("|+", "  a\n\n", true)
        );
        let b = block("a b\nc\n\nd", Block::Folded, 2, None, "\n", true).unwrap();
        assert_eq!(
            (b.header.as_str(), b.body.as_str()),
            (">-", "  a b\n\n  c\n\n\n  d\n")
        );
        assert!(verify(
            &format!("k: {}\n{}", b.header, b.body),
            "a b\nc\n\nd",
            Expect::Folded
        ));
        assert!(block(" lead", Block::Literal, 2, None, "\n", true).is_none());
        assert!(block(" lead", Block::Folded, 2, Some('2'), "\n", true).is_none());
        assert!(block("x", Block::Literal, 0, None, "\n", true).is_none());
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_display(&json!(42), true), "42");
        assert_eq!(go_display(&json!(1.5), true), "1.5");
        assert_eq!(go_display(&json!(1_000_000), true), "1e+06");
        assert_eq!(go_display(&json!(123_456), true), "123456");
        assert_eq!(go_display(&json!(0.0001), true), "0.0001");
        assert_eq!(go_display(&json!(0.00001), true), "1e-05");
        assert_eq!(go_display(&json!(-2.5e-7), true), "-2.5e-07");
        assert_eq!(go_display(&json!(1_234_567), true), "1.234567e+06");
        assert_eq!(go_display(&json!(null), true), "<nil>");
        assert_eq!(go_display(&json!("42"), true), "\"42\"");
        assert_eq!(go_display(&json!("fake-tag"), true), "fake-tag");
        assert_eq!(go_display(&json!({"b": 1, "a": "x"}), true), "map[a:x b:1]");
        assert_eq!(go_display(&json!([1, "2"]), true), "[1 2]");
    }
}
