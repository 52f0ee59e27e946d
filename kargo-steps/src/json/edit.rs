//! Format-preserving JSON / JSONC edits with sjson's semantics, on jsonc-parser's CST.
//!
//! Only the edited value's text changes; comments, whitespace, key order, line endings and
//! every other byte are kept. Like sjson (which Kargo's `json-update` uses), setting a key
//! that does not exist creates it, with any missing parents: a missing parent becomes an
//! object, or an array when the next part is an index (padded with `null`s up to it); a
//! scalar standing where a parent is needed is replaced by one; `-` appends to an array.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstContainerNode, CstInputValue, CstLeafNode, CstNode, CstRootNode};

use super::gofmt;
use super::keypath::KeyPart;

/// A scalar value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string.
    String(String),
    /// A number, as its JSON text.
    Number(String),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    /// The scalar for a JSON value, or `None` for `null`, arrays and objects (Kargo accepts
    /// only strings, numbers and booleans).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(s) => Some(Self::String(s.clone())),
            serde_json::Value::Bool(b) => Some(Self::Bool(*b)),
            serde_json::Value::Number(n) => Some(Self::Number(number_text(n))),
            _ => None,
        }
    }

    /// The text sjson writes for this value.
    pub fn sjson_text(&self) -> String {
        match self {
            Self::String(s) => gofmt::sjson_string(s),
            Self::Number(n) => n.clone(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// A number's text as sjson writes it: integers as they are, other numbers as Go's
/// `strconv.FormatFloat(f, 'f', -1, 64)` (shortest, never an exponent).
pub fn number_text(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        n.to_string()
    } else {
        // Rust's `Display` for f64 is the shortest round-trip text without an exponent.
        n.as_f64()
            .map(|f| f.to_string())
            .unwrap_or_else(|| n.to_string())
    }
}

/// Why an edit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonEditError {
    /// The document does not parse.
    #[error("cannot parse JSON: {0}")]
    Parse(String),
    /// A non-numeric part addresses an array.
    #[error("key {key:?}: cannot set array element for non-numeric key {part:?}")]
    NonNumericIndex {
        /// The key as configured.
        key: String,
        /// The offending part.
        part: String,
    },
    /// The document's structure prevented the edit (e.g. the node found is not a value).
    #[error("key {key:?}: the value cannot be set in this document")]
    CannotSet {
        /// The key as configured.
        key: String,
    },
    /// An index too large to pad an array to.
    #[error("key {key:?}: array index {index} is too large")]
    IndexTooLarge {
        /// The key as configured.
        key: String,
        /// The index.
        index: usize,
    },
}

/// The largest number of `null`s an update may pad an array with.
const MAX_PADDING: usize = 10_000;

/// Applies `updates` (parsed key path, configured key, value) to `text` in order.
pub fn apply(
    text: &str,
    updates: &[(Vec<KeyPart>, String, Scalar)],
) -> Result<String, JsonEditError> {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let root = CstRootNode::parse(body, &ParseOptions::default())
        .map_err(|e| JsonEditError::Parse(e.to_string()))?;
    for (parts, key, value) in updates {
        set(&root, parts, key, value)?;
    }
    Ok(format!("{bom}{root}"))
}

/// Where the walk currently is.
enum Slot {
    /// The document root (no value yet, or a value to look into).
    Root(CstRootNode),
    /// A value node.
    Node(CstNode),
}

fn set(
    root: &CstRootNode,
    parts: &[KeyPart],
    key: &str,
    value: &Scalar,
) -> Result<(), JsonEditError> {
    let cannot = || JsonEditError::CannotSet {
        key: key.to_owned(),
    };
    let leaf = walk(root, parts, key)?.ok_or_else(cannot)?;
    if write_leaf(leaf, value) {
        Ok(())
    } else {
        Err(cannot())
    }
}

/// Follows `parts` and returns the node at the end of the path, creating the missing rest
/// of the path first (ending in a `null` placeholder). `None` if the document's structure
/// did not allow it.
fn walk(
    root: &CstRootNode,
    parts: &[KeyPart],
    key: &str,
) -> Result<Option<CstNode>, JsonEditError> {
    let mut slot = Slot::Root(root.clone());
    for (i, part) in parts.iter().enumerate() {
        let rest = &parts[i + 1..];
        let node = match &slot {
            Slot::Root(r) => match r.value() {
                Some(v) => v,
                None => {
                    r.set_value(build_container(&parts[i..], key)?);
                    return Ok(r.value().and_then(|v| descend(v, &parts[i..])));
                }
            },
            Slot::Node(n) => n.clone(),
        };
        if let Some(obj) = node.as_object() {
            match obj.get(&part.name) {
                Some(prop) => match prop.value() {
                    Some(v) => slot = Slot::Node(v),
                    None => {
                        prop.set_value(build(rest, key)?);
                        return Ok(prop.value().and_then(|v| descend(v, rest)));
                    }
                },
                None => {
                    let prop = obj.append(&part.name, build(rest, key)?);
                    return Ok(prop.value().and_then(|v| descend(v, rest)));
                }
            }
        } else if let Some(arr) = node.as_array() {
            if part.is_append() {
                let added = arr.append(build(rest, key)?);
                return Ok(descend(added, rest));
            }
            let Some(index) = part.index() else {
                return Err(JsonEditError::NonNumericIndex {
                    key: key.to_owned(),
                    part: part.name.clone(),
                });
            };
            let elements = arr.elements();
            match elements.get(index) {
                Some(el) => slot = Slot::Node(el.clone()),
                None => {
                    if index - elements.len() > MAX_PADDING {
                        return Err(JsonEditError::IndexTooLarge {
                            key: key.to_owned(),
                            index,
                        });
                    }
                    for _ in elements.len()..index {
                        arr.append(CstInputValue::Null);
                    }
                    let added = arr.append(build(rest, key)?);
                    return Ok(descend(added, rest));
                }
            }
        } else {
            // A scalar where a container is needed: sjson replaces it.
            let new = replace(node, build_container(&parts[i..], key)?);
            return Ok(new.and_then(|n| descend(n, &parts[i..])));
        }
    }
    match slot {
        Slot::Node(n) => Ok(Some(n)),
        // Only reachable with an empty path, which the key parser refuses.
        Slot::Root(_) => Ok(None),
    }
}

/// Follows `parts` through a structure [`build_container`] just made.
fn descend(mut node: CstNode, parts: &[KeyPart]) -> Option<CstNode> {
    for part in parts {
        node = if let Some(obj) = node.as_object() {
            obj.get(&part.name)?.value()?
        } else if let Some(arr) = node.as_array() {
            let elements = arr.elements();
            if part.is_append() {
                elements.last()?.clone()
            } else {
                elements.get(part.index()?)?.clone()
            }
        } else {
            return None;
        };
    }
    Some(node)
}

/// The value for the rest of a path: `null` at the end (the second pass fills it in), else
/// a container.
fn build(rest: &[KeyPart], key: &str) -> Result<CstInputValue, JsonEditError> {
    if rest.is_empty() {
        Ok(CstInputValue::Null)
    } else {
        build_container(rest, key)
    }
}

/// An array (when the first part is an index or `-`) or an object holding the rest.
fn build_container(parts: &[KeyPart], key: &str) -> Result<CstInputValue, JsonEditError> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(CstInputValue::Null);
    };
    let inner = build(rest, key)?;
    if first.is_append() {
        return Ok(CstInputValue::Array(vec![inner]));
    }
    if let Some(index) = first.index() {
        if index > MAX_PADDING {
            return Err(JsonEditError::IndexTooLarge {
                key: key.to_owned(),
                index,
            });
        }
        let mut items = vec![CstInputValue::Null; index];
        items.push(inner);
        return Ok(CstInputValue::Array(items));
    }
    Ok(CstInputValue::Object(vec![(first.name.clone(), inner)]))
}

/// Replaces a value node; returns the new node.
fn replace(node: CstNode, with: CstInputValue) -> Option<CstNode> {
    match node {
        CstNode::Container(CstContainerNode::Object(o)) => o.replace_with(with),
        CstNode::Container(CstContainerNode::Array(a)) => a.replace_with(with),
        CstNode::Leaf(CstLeafNode::StringLit(s)) => s.replace_with(with),
        CstNode::Leaf(CstLeafNode::NumberLit(n)) => n.replace_with(with),
        CstNode::Leaf(CstLeafNode::BooleanLit(b)) => b.replace_with(with),
        CstNode::Leaf(CstLeafNode::NullKeyword(n)) => n.replace_with(with),
        CstNode::Leaf(CstLeafNode::WordLit(w)) => w.replace_with(with),
        _ => None,
    }
}

/// Writes `value` into the existing node `leaf`, keeping its position and surroundings.
/// Returns false if the node could not be replaced.
fn write_leaf(leaf: CstNode, value: &Scalar) -> bool {
    match value {
        Scalar::String(_) => {
            let lit = match leaf.as_string_lit() {
                Some(lit) => Some(lit),
                None => replace(leaf, CstInputValue::String(String::new()))
                    .and_then(|n| n.as_string_lit()),
            };
            match lit {
                Some(lit) => {
                    lit.set_raw_value(value.sjson_text());
                    true
                }
                None => false,
            }
        }
        Scalar::Number(text) => match leaf.as_number_lit() {
            Some(lit) => {
                lit.set_raw_value(text.clone());
                true
            }
            None => replace(leaf, CstInputValue::Number(text.clone())).is_some(),
        },
        Scalar::Bool(b) => match leaf.as_boolean_lit() {
            Some(lit) => {
                lit.set_value(*b);
                true
            }
            None => replace(leaf, CstInputValue::Bool(*b)).is_some(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::keypath::parse_sjson;
    use super::*;

    fn set1(text: &str, key: &str, value: Scalar) -> String {
        let parts = parse_sjson(key).unwrap();
        apply(text, &[(parts, key.to_owned(), value)]).unwrap()
    }

    fn s(v: &str) -> Scalar {
        Scalar::String(v.to_owned())
    }

    #[test]
    fn replaces_existing_values_only() {
        let text = "{\n  // c\n  \"a\": {\"b\": \"x\"}, /* d */ \"n\": 1\n}\n";
        assert_eq!(
            set1(text, "a.b", s("y")),
            "{\n  // c\n  \"a\": {\"b\": \"y\"}, /* d */ \"n\": 1\n}\n"
        );
        assert_eq!(
            set1(text, "n", Scalar::Number("2.5".into())),
            "{\n  // c\n  \"a\": {\"b\": \"x\"}, /* d */ \"n\": 2.5\n}\n"
        );
        assert_eq!(
            set1(text, "a.b", Scalar::Bool(true)),
            "{\n  // c\n  \"a\": {\"b\": true}, /* d */ \"n\": 1\n}\n"
        );
    }

    #[test]
    fn creates_missing_keys_like_sjson() {
        let out = set1("{\n  \"a\": 1\n}\n", "b.c", s("v"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "b": {"c": "v"}}));
        let out = set1("{}", "l.2", Scalar::Bool(false));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"l": [null, null, false]}));
        let out = set1("{\"l\": [1]}", "l.-", Scalar::Number("2".into()));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"l": [1, 2]}));
        let out = set1("{\"l\": [1]}", "l.3", Scalar::Number("2".into()));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"l": [1, null, null, 2]}));
        let out = set1("{\"a\": 1}", "a.b", s("x"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a": {"b": "x"}}));
        let out = set1("", "a.:0", s("x"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a": {"0": "x"}}));
        let out = set1("{\"m\": {}}", "m.0", s("x"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"m": {"0": "x"}}));
    }

    #[test]
    fn array_errors() {
        let parts = parse_sjson("l.x").unwrap();
        let e = apply("{\"l\": []}", &[(parts, "l.x".into(), s("v"))]).unwrap_err();
        assert!(matches!(e, JsonEditError::NonNumericIndex { .. }), "{e}");
        let parts = parse_sjson("l.99999999").unwrap();
        let e = apply("{\"l\": []}", &[(parts, "l.99999999".into(), s("v"))]).unwrap_err();
        assert!(matches!(e, JsonEditError::IndexTooLarge { .. }), "{e}");
        assert!(matches!(
            apply("{", &[]).unwrap_err(),
            JsonEditError::Parse(_)
        ));
    }

    #[test]
    fn odd_documents_never_panic() {
        let docs = [
            "",
            "   ",
            "// only a comment\n",
            "null",
            "\"text\"",
            "42",
            "[]",
            "[1, [2, [3]]]",
            "{}",
            "{\"a\": 1, \"a\": 2}",
            "{a: 1, 'b': 'x', c: [1,],}",
            "{\"a\": {\"b\": null}}",
            "\u{feff}{\"a\": 1}",
            "{\r\n  \"a\": [\r\n    1\r\n  ]\r\n}\r\n",
            "/* c */ { /* d */ } /* e */",
        ];
        let keys = [
            "a",
            "a.b",
            "a.0",
            "a.-",
            "a.:1",
            "0",
            "-",
            "a.b.c.2.d",
            "x\\.y",
            "b",
        ];
        let values = [s("v"), Scalar::Number("1".into()), Scalar::Bool(false)];
        for doc in docs {
            for key in keys {
                for value in &values {
                    let parts = parse_sjson(key).unwrap();
                    if let Ok(out) = apply(doc, &[(parts, key.to_owned(), value.clone())]) {
                        // The result parses again.
                        let body = out.strip_prefix('\u{feff}').unwrap_or(&out);
                        assert!(
                            CstRootNode::parse(body, &ParseOptions::default()).is_ok(),
                            "{doc:?} {key}: {out:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            set1("\u{feff}{\"a\": 1}", "a", Scalar::Number("2".into())),
            "\u{feff}{\"a\": 2}"
        );
    }
}
