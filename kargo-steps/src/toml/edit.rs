//! Format-preserving TOML edits: the byte range of each addressed scalar (found with
//! toml_edit's span-keeping parser) is replaced by the new value's text; every other byte
//! is kept. This is what Kargo's `pkg/toml` does with go-toml's unstable parser.

use toml_edit::{Document, Item, Value};

use crate::json::gofmt;

/// A scalar value to write into a TOML document.
#[derive(Debug, Clone, PartialEq)]
pub enum TomlScalar {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl TomlScalar {
    /// The scalar for a JSON value; `Err` names the problem for `null`, lists, maps and
    /// integers outside TOML's 64-bit signed range.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, &'static str> {
        match value {
            serde_json::Value::String(s) => Ok(Self::String(s.clone())),
            serde_json::Value::Bool(b) => Ok(Self::Bool(*b)),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Self::Integer(i))
                } else if n.is_u64() {
                    Err("integer is outside TOML's 64-bit signed range")
                } else {
                    n.as_f64().map(Self::Float).ok_or("not a finite number")
                }
            }
            _ => Err("value is not a TOML scalar type"),
        }
    }

    /// The text go-toml writes for this value (Kargo's commit message format): strings as
    /// literal strings when possible, whole floats with `.0`.
    pub fn kargo_text(&self) -> String {
        match self {
            Self::String(s) => gofmt::go_toml_string(s),
            Self::Integer(i) => i.to_string(),
            Self::Float(f) => float_text(*f),
            Self::Bool(b) => b.to_string(),
        }
    }

    /// The text to splice over `original` (the replaced value's text): a string keeps the
    /// original's quoting style where it can (basic `"..."` or literal `'...'`);
    /// everything else is written as [`kargo_text`](Self::kargo_text).
    fn text_replacing(&self, original: &str) -> String {
        let Self::String(s) = self else {
            return self.kargo_text();
        };
        let literal_ok = !s.chars().any(|c| c == '\'' || gofmt::toml_needs_escape(c));
        if original.starts_with('"') {
            gofmt::toml_basic_string(s)
        } else if original.starts_with('\'') && literal_ok {
            format!("'{s}'")
        } else if original.starts_with('\'') {
            gofmt::toml_basic_string(s)
        } else {
            gofmt::go_toml_string(s)
        }
    }
}

/// go-toml's float text: whole numbers with one decimal (`100.0`), others shortest.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if f.trunc() == f {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// Why an edit failed (messages follow Kargo's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TomlEditError {
    /// The document does not parse.
    #[error("error parsing input: {0}")]
    Parse(String),
    /// Nothing at the key path.
    #[error("error finding key {0}: key path not found")]
    NotFound(String),
    /// The key path addresses a table or an array.
    #[error("error finding key {key}: key path addresses {kind} instead of a scalar node")]
    NotScalar {
        /// The key as configured.
        key: String,
        /// `Table`, `ArrayTable`, `Array` or `InlineTable`.
        kind: &'static str,
    },
    /// The parser kept no position for the value.
    #[error("error finding key {0}: the value's position in the file is unknown")]
    NoSpan(String),
}

/// Where the walk is.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

impl Node<'_> {
    fn kind(self) -> &'static str {
        match self {
            Node::Item(Item::Table(_)) | Node::Table(_) => "Table",
            Node::Item(Item::ArrayOfTables(_)) => "ArrayTable",
            Node::Item(Item::Value(v)) | Node::Value(v) => match v {
                Value::Array(_) => "Array",
                Value::InlineTable(_) => "InlineTable",
                _ => "scalar",
            },
            Node::Item(Item::None) => "nothing",
        }
    }
}

/// Applies `updates` (key parts, configured key, value) to `text`. A key must exist and
/// address a scalar. When several updates address the same value, the last one wins.
pub fn apply(
    text: &str,
    updates: &[(Vec<String>, String, TomlScalar)],
) -> Result<String, TomlEditError> {
    let doc = Document::parse(text).map_err(|e| TomlEditError::Parse(e.to_string()))?;
    // (start, end, replacement), at most one per span.
    let mut changes: Vec<(usize, usize, String)> = Vec::new();
    for (parts, key, value) in updates {
        let mut node = Node::Item(doc.as_item());
        for part in parts {
            node = child(node, part).ok_or_else(|| TomlEditError::NotFound(key.clone()))?;
        }
        let scalar = match node {
            Node::Item(Item::Value(v)) | Node::Value(v) => match v {
                Value::Array(_) | Value::InlineTable(_) => None,
                v => Some(v),
            },
            _ => None,
        };
        let Some(scalar) = scalar else {
            return Err(TomlEditError::NotScalar {
                key: key.clone(),
                kind: node.kind(),
            });
        };
        let span = scalar
            .span()
            .filter(|s| {
                s.start <= s.end
                    && s.end <= text.len()
                    && text.is_char_boundary(s.start)
                    && text.is_char_boundary(s.end)
            })
            .ok_or_else(|| TomlEditError::NoSpan(key.clone()))?;
        let replacement = value.text_replacing(&text[span.clone()]);
        changes.retain(|(s, _, _)| *s != span.start);
        changes.push((span.start, span.end, replacement));
    }
    changes.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut out = text.to_owned();
    let mut limit = out.len();
    for (start, end, replacement) in changes {
        // Spans of distinct scalars never overlap; refuse rather than splice if they did.
        if end > limit || !out.is_char_boundary(start) || !out.is_char_boundary(end) {
            return Err(TomlEditError::NoSpan(format!("at byte {start}")));
        }
        out.replace_range(start..end, &replacement);
        limit = start;
    }
    Ok(out)
}

fn child<'a>(node: Node<'a>, part: &str) -> Option<Node<'a>> {
    match node {
        Node::Item(Item::Table(t)) | Node::Table(t) => t.get(part).map(Node::Item),
        Node::Item(Item::ArrayOfTables(a)) => a.get(index(part)?).map(Node::Table),
        Node::Item(Item::Value(v)) | Node::Value(v) => match v {
            Value::Array(a) => a.get(index(part)?).map(Node::Value),
            Value::InlineTable(t) => t.get(part).map(Node::Value),
            _ => None,
        },
        Node::Item(Item::None) => None,
    }
}

fn index(part: &str) -> Option<usize> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Converts a parsed TOML document to JSON: tables become objects (in file order), arrays
/// and arrays of tables become arrays, date-times become their TOML text, and the
/// non-finite floats `nan`, `inf` and `-inf` become those strings.
pub fn to_json(doc: &toml_edit::Table) -> serde_json::Value {
    serde_json::Value::Object(table_to_json(doc.iter()))
}

fn table_to_json<'a>(
    iter: impl Iterator<Item = (&'a str, &'a Item)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for (k, item) in iter {
        if let Some(v) = item_to_json(item) {
            map.insert(k.to_owned(), v);
        }
    }
    map
}

fn item_to_json(item: &Item) -> Option<serde_json::Value> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_to_json(v)),
        Item::Table(t) => Some(serde_json::Value::Object(table_to_json(t.iter()))),
        Item::ArrayOfTables(a) => Some(serde_json::Value::Array(
            a.iter()
                .map(|t| serde_json::Value::Object(table_to_json(t.iter())))
                .collect(),
        )),
    }
}

fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => serde_json::Value::String(s.value().clone()),
        Value::Integer(i) => serde_json::Value::from(*i.value()),
        Value::Float(f) => {
            let f = *f.value();
            serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(float_text(f)))
        }
        Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
        Value::Datetime(d) => serde_json::Value::String(d.value().to_string()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(value_to_json).collect()),
        Value::InlineTable(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_owned(), value_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::keypath::parse_kargo;

    fn set(text: &str, updates: &[(&str, TomlScalar)]) -> Result<String, TomlEditError> {
        let ups: Vec<_> = updates
            .iter()
            .map(|(k, v)| (parse_kargo(k).unwrap(), (*k).to_owned(), v.clone()))
            .collect();
        apply(text, &ups)
    }

    fn s(v: &str) -> TomlScalar {
        TomlScalar::String(v.to_owned())
    }

    #[test]
    fn kargo_cases() {
        assert_eq!(
            set("title = 'old'\nactive = true\n", &[("title", s("new"))]).unwrap(),
            "title = 'new'\nactive = true\n"
        );
        assert_eq!(
            set(
                "\"example.com/version\" = \"1.0.0\"\n",
                &[(r"example\.com/version", s("2.0.0"))]
            )
            .unwrap(),
            "\"example.com/version\" = \"2.0.0\"\n"
        );
        assert_eq!(
            set("[a.b]\nc = 1\n", &[("a.b.c", TomlScalar::Integer(99))]).unwrap(),
            "[a.b]\nc = 99\n"
        );
        assert_eq!(
            set(
                "values = [1, 2, 3]\n",
                &[("values.1", TomlScalar::Integer(42))]
            )
            .unwrap(),
            "values = [1, 42, 3]\n"
        );
        assert_eq!(
            set(
                "service = { name = \"api\", port = 8080 }\n",
                &[("service.port", TomlScalar::Integer(9090))]
            )
            .unwrap(),
            "service = { name = \"api\", port = 9090 }\n"
        );
        assert_eq!(
            set(
                "[[services]]\nname = \"api\"\nport = 8080\n\n[[services]]\nname = \"web\"\nport = 8081\n",
                &[("services.1.port", TomlScalar::Integer(9090))]
            )
            .unwrap(),
            "[[services]]\nname = \"api\"\nport = 8080\n\n[[services]]\nname = \"web\"\nport = 9090\n"
        );
        assert_eq!(
            set("title = \"old\" # keep me\n", &[("title", s("new"))]).unwrap(),
            "title = \"new\" # keep me\n"
        );
        assert_eq!(
            set(
                "v = 1\n",
                &[("v", TomlScalar::Integer(2)), ("v", TomlScalar::Integer(3))]
            )
            .unwrap(),
            "v = 3\n"
        );
        assert_eq!(
            set("a.b = 'x'\n", &[("a.b", TomlScalar::Float(2.0))]).unwrap(),
            "a.b = 2.0\n"
        );
    }

    #[test]
    fn kargo_errors() {
        assert!(matches!(set("key = \n", &[]), Err(TomlEditError::Parse(_))));
        let e = set("title = \"old\"\n", &[("missing", s("new"))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error finding key missing: key path not found"
        );
        let e = set("[service]\nname = \"api\"\n", &[("service", s("x"))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error finding key service: key path addresses Table instead of a scalar node"
        );
        let e = set("a = [1]\n", &[("a", s("x"))]).unwrap_err();
        assert!(e.to_string().contains("addresses Array"), "{e}");
    }

    #[test]
    fn string_styles() {
        assert_eq!(
            set("a = 'x'\n", &[("a", s("it's"))]).unwrap(),
            "a = \"it's\"\n"
        );
        assert_eq!(
            set("a = \"x\"\n", &[("a", s("q\"\\"))]).unwrap(),
            "a = \"q\\\"\\\\\"\n"
        );
        assert_eq!(set("a = 1\n", &[("a", s("v"))]).unwrap(), "a = 'v'\n");
        assert_eq!(
            set("a = \"\"\"\nx\"\"\"\n", &[("a", s("v"))]).unwrap(),
            "a = \"v\"\n"
        );
    }

    #[test]
    fn kargo_text_like_go_toml() {
        assert_eq!(s("1.0.1").kargo_text(), "'1.0.1'");
        assert_eq!(TomlScalar::Float(100.0).kargo_text(), "100.0");
        assert_eq!(TomlScalar::Float(0.5).kargo_text(), "0.5");
        assert_eq!(TomlScalar::Integer(-7).kargo_text(), "-7");
    }
}
