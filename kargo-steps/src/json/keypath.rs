//! Key paths: the dotted paths `json-update` and `toml-update` take in `updates[].key`.
//!
//! Two dialects exist in Kargo and both are reproduced here:
//!
//! * [`parse_sjson`]: [sjson](https://github.com/tidwall/sjson#path-syntax)'s syntax, which
//!   Kargo's `json-update` hands its keys to. `.` separates parts, `\` makes the next
//!   character literal (`a\.b` is the one key `a.b`), a part starting with `:` is always an
//!   object key even when it looks like a number (`:0`), `-` as an array part appends, and
//!   the wildcards `*` and `?` are refused.
//! * [`parse_kargo`]: Kargo's own `SplitKey` (used by `toml-update`): the same `.` / `\.`
//!   rules, but only `\.` and `\:` are valid escapes, empty parts are errors and the key is
//!   trimmed first.
//!
//! | key | parts |
//! |---|---|
//! | `image.tag` | `image`, `tag` |
//! | `list.0.x` | `list`, `0`, `x` |
//! | `labels.example\.com/version` | `labels`, `example.com/version` |
//! | `map.:0` | `map`, `0` (an object key, never an index) |

/// One part of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPart {
    /// The part, with escapes resolved.
    pub name: String,
    /// Whether the part was written with a leading `:`: it names an object key even if it
    /// looks like an array index.
    pub force_key: bool,
}

impl KeyPart {
    /// The array index this part denotes, if it is a plain decimal number and not forced
    /// to be a key.
    pub fn index(&self) -> Option<usize> {
        if self.force_key || self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        self.name.parse().ok()
    }

    /// Whether this part is sjson's "append to the array" marker `-`.
    pub fn is_append(&self) -> bool {
        !self.force_key && self.name == "-"
    }
}

/// Why a key path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPathError {
    /// The key is empty.
    #[error("empty key")]
    Empty,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("empty key part in key {0:?}")]
    EmptyPart(String),
    /// A `:` that does not start a part.
    #[error("unexpected colon in key {0:?}")]
    UnexpectedColon(String),
    /// A `\` followed by a character that needs no escaping (Kargo dialect), or by nothing.
    #[error("invalid escape sequence in key {0:?}")]
    InvalidEscape(String),
    /// `*` or `?` (sjson refuses wildcards when setting values).
    #[error("wildcard characters are not allowed in key {0:?}")]
    Wildcard(String),
}

/// Splits `key` with sjson's rules (see the module documentation).
pub fn parse_sjson(key: &str) -> Result<Vec<KeyPart>, KeyPathError> {
    if key.is_empty() {
        return Err(KeyPathError::Empty);
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut force_key = false;
    let mut at_part_start = true;
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        if at_part_start && c == ':' {
            force_key = true;
            at_part_start = false;
            continue;
        }
        at_part_start = false;
        match c {
            '\\' => match chars.next() {
                Some(escaped) => current.push(escaped),
                None => return Err(KeyPathError::InvalidEscape(key.to_owned())),
            },
            '.' => {
                parts.push(KeyPart {
                    name: std::mem::take(&mut current),
                    force_key,
                });
                force_key = false;
                at_part_start = true;
            }
            '*' | '?' => return Err(KeyPathError::Wildcard(key.to_owned())),
            other => current.push(other),
        }
    }
    parts.push(KeyPart {
        name: current,
        force_key,
    });
    Ok(parts)
}

/// Splits `key` with Kargo's `SplitKey` rules (see the module documentation).
pub fn parse_kargo(key: &str) -> Result<Vec<String>, KeyPathError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(KeyPathError::Empty);
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in key.chars() {
        if escaped {
            match c {
                '.' | ':' => current.push(c),
                _ => return Err(KeyPathError::InvalidEscape(key.to_owned())),
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '.' => {
                if current.is_empty() {
                    return Err(KeyPathError::EmptyPart(key.to_owned()));
                }
                parts.push(std::mem::take(&mut current));
            }
            ':' => {
                if !current.is_empty() {
                    return Err(KeyPathError::UnexpectedColon(key.to_owned()));
                }
            }
            other => current.push(other),
        }
    }
    if escaped {
        return Err(KeyPathError::InvalidEscape(key.to_owned()));
    }
    if current.is_empty() {
        return Err(KeyPathError::EmptyPart(key.to_owned()));
    }
    parts.push(current);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parts: &[KeyPart]) -> Vec<&str> {
        parts.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn sjson_paths() {
        assert_eq!(names(&parse_sjson("a.b.c").unwrap()), ["a", "b", "c"]);
        assert_eq!(
            names(&parse_sjson(r"labels.example\.com/v").unwrap()),
            ["labels", "example.com/v"]
        );
        let p = parse_sjson("m.:0.x").unwrap();
        assert!(p[1].force_key && p[1].index().is_none());
        assert_eq!(parse_sjson("l.3").unwrap()[1].index(), Some(3));
        assert!(parse_sjson("l.-").unwrap()[1].is_append());
        assert_eq!(names(&parse_sjson(r"a\*b").unwrap()), ["a*b"]);
        assert!(matches!(parse_sjson("a.*"), Err(KeyPathError::Wildcard(_))));
        assert!(matches!(parse_sjson(""), Err(KeyPathError::Empty)));
        assert!(matches!(
            parse_sjson("a\\"),
            Err(KeyPathError::InvalidEscape(_))
        ));
    }

    #[test]
    fn kargo_paths() {
        assert_eq!(parse_kargo("foo.bar.bat").unwrap(), ["foo", "bar", "bat"]);
        assert_eq!(
            parse_kargo(r"foo\.bar.bat\.baz").unwrap(),
            ["foo.bar", "bat.baz"]
        );
        assert_eq!(
            parse_kargo(r"foo.bar\:bat.baz").unwrap(),
            ["foo", "bar:bat", "baz"]
        );
        assert_eq!(
            parse_kargo("foo.bar.:2.baz").unwrap(),
            ["foo", "bar", "2", "baz"]
        );
        for bad in [".foo", "foo.", "foo..bar", r"foo\nbar", "foo:bar", "", "  "] {
            assert!(parse_kargo(bad).is_err(), "{bad}");
        }
    }
}
