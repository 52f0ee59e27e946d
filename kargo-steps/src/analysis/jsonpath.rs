//! The subset of Kubernetes JSONPath the `web` provider's `jsonPath` uses: one template
//! `{...}` of a path from the root: `{$}`, `{$.data.ok}`, `{.data}`, `{$.items[0].value}`,
//! `{$.items[-1]}`, `{$['key.with.dots']}`. Filters, wildcards, recursive descent, ranges
//! and several templates in one string are refused when the template is loaded.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    /// A field of an object.
    Field(String),
    /// An element of an array (negative: from the end).
    Index(i64),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses `{$.a.b[0]}` (an empty string is `{$}`, as in Argo Rollouts).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self {
                text: "{$}".into(),
                segments: Vec::new(),
            });
        }
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| {
                format!("JSONPath {text:?} must be one template in braces, such as {{$.data.ok}}")
            })?;
        if inner.contains('{') || inner.contains('}') {
            return Err(format!(
                "JSONPath {text:?}: only one template {{...}} is supported"
            ));
        }
        let mut rest = inner.trim();
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut segments = Vec::new();
        let unsupported = |what: &str| {
            Err(format!(
                "JSONPath {text:?}: {what} is not supported (supported: $, .field, ['field'], [n])"
            ))
        };
        while !rest.is_empty() {
            if rest.starts_with("..") {
                return unsupported("recursive descent `..`");
            }
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return Err(format!("JSONPath {text:?}: empty field name"));
                }
                if name == "*" {
                    return unsupported("the wildcard `*`");
                }
                segments.push(Segment::Field(name.to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("JSONPath {text:?}: `[` without `]`"))?;
                let body = after[..end].trim();
                if let Some(q) = body
                    .strip_prefix('\'')
                    .and_then(|b| b.strip_suffix('\''))
                    .or_else(|| body.strip_prefix('"').and_then(|b| b.strip_suffix('"')))
                {
                    segments.push(Segment::Field(q.to_owned()));
                } else if let Ok(n) = body.parse::<i64>() {
                    segments.push(Segment::Index(n));
                } else if body.starts_with('?') {
                    return unsupported("a filter `[?()]`");
                } else if body == "*" {
                    return unsupported("the wildcard `[*]`");
                } else if body.contains(':') {
                    return unsupported("a range `[a:b]`");
                } else {
                    return Err(format!("JSONPath {text:?}: cannot read `[{body}]`"));
                }
                rest = &after[end + 1..];
            } else {
                return Err(format!(
                    "JSONPath {text:?}: expected `.field` or `[...]` at {rest:?}"
                ));
            }
        }
        Ok(Self {
            text: trimmed.to_owned(),
            segments,
        })
    }

    /// The value at the path, or why there is none.
    pub(crate) fn find<'v>(&self, value: &'v Value) -> Result<&'v Value, String> {
        let mut cur = value;
        for seg in &self.segments {
            let next = match (seg, cur) {
                (Segment::Field(name), Value::Object(map)) => map.get(name),
                (Segment::Index(i), Value::Array(items)) => {
                    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                    let at = if *i < 0 { len + i } else { *i };
                    usize::try_from(at).ok().and_then(|at| items.get(at))
                }
                _ => None,
            };
            cur = match next {
                Some(v) => v,
                None => {
                    return Err(match seg {
                        Segment::Field(name) => format!("{name} is not found"),
                        Segment::Index(i) => format!("array index {i} is out of bounds"),
                    });
                }
            };
        }
        Ok(cur)
    }

    /// The path as written.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_fields_and_indices() {
        let v = json!({"data": {"ok": true, "items": [1, 2, 3]}, "a.b": 5, "500": 7});
        let get = |p: &str| JsonPath::parse(p).unwrap().find(&v).cloned();
        assert_eq!(get("{$.data.ok}"), Ok(json!(true)));
        assert_eq!(get("{.data.items[1]}"), Ok(json!(2)));
        assert_eq!(get("{$.data.items[-1]}"), Ok(json!(3)));
        assert_eq!(get("{$['a.b']}"), Ok(json!(5)));
        assert_eq!(get("{$.500}"), Ok(json!(7)));
        assert_eq!(get(""), Ok(v.clone()));
        assert_eq!(get("{$}"), Ok(v.clone()));
        assert_eq!(get("{$.nope}"), Err("nope is not found".into()));
        assert_eq!(
            get("{$.data.items[9]}"),
            Err("array index 9 is out of bounds".into())
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for p in [
            "$.a",
            "{$.a[*]}",
            "{$..a}",
            "{$.a[?(@.x)]}",
            "{$.a}{$.b}",
            "{$.a[1:2]}",
        ] {
            assert!(JsonPath::parse(p).is_err(), "{p}");
        }
    }
}
