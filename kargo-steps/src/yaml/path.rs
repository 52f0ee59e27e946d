//! Kargo key paths: the dotted keys of `yaml-update` (a subset of sjson's path syntax).

use std::fmt;

/// Why a key path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key path {key:?}: {reason}")]
pub struct KeyPathError {
    /// The key path as given.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed key path such as `image.tag`, `env.0.value` or `annotations.kargo\.akuity\.io/x`.
///
/// The syntax is Kargo's (`pkg/sjson.SplitKey`, the subset of sjson it documents):
///
/// * `.` separates segments; surrounding whitespace of the whole key is trimmed;
/// * `\.` is a literal dot and `\:` a literal colon inside a segment; any other escape is
///   an error;
/// * an unescaped `:` is only allowed as the first character of a segment, where it is
///   dropped (in sjson it marks a numeric-looking segment as a mapping key; Kargo ignores
///   the hint and so does this type);
/// * empty segments (`a..b`, `.a`, `a.`) are errors.
///
/// A segment addresses a mapping key by its text, or a sequence item by its index
/// (decimal digits, an optional leading `+`).
///
/// ```
/// use kargo_steps::yaml::KeyPath;
/// let p = KeyPath::parse(r"metadata.annotations.kargo\.akuity\.io/promote").unwrap();
/// assert_eq!(p.segments(), ["metadata", "annotations", "kargo.akuity.io/promote"]);
/// assert!(KeyPath::parse("a..b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPath {
    raw: String,
    segments: Vec<String>,
}

impl KeyPath {
    /// Parses a key path.
    pub fn parse(key: &str) -> Result<Self, KeyPathError> {
        let err = |reason: &str| KeyPathError {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = key.trim();
        if trimmed.is_empty() {
            return Err(err("the key is empty"));
        }
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut escaped = false;
        for c in trimmed.chars() {
            if escaped {
                match c {
                    '.' | ':' => current.push(c),
                    _ => return Err(err(&format!("invalid escape sequence `\\{c}`"))),
                }
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '.' => {
                    if current.is_empty() {
                        return Err(err("empty key part"));
                    }
                    segments.push(std::mem::take(&mut current));
                }
                ':' => {
                    if !current.is_empty() {
                        return Err(err("unexpected colon (escape it as `\\:`)"));
                    }
                }
                _ => current.push(c),
            }
        }
        if escaped {
            return Err(err("the key ends with a lone `\\`"));
        }
        if current.is_empty() {
            return Err(err("empty key part"));
        }
        segments.push(current);
        Ok(Self {
            raw: key.to_owned(),
            segments,
        })
    }

    /// The key path as it was given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The segments, unescaped.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The first `n` segments, re-escaped and joined with dots (for messages).
    pub fn prefix(&self, n: usize) -> String {
        let mut out = String::new();
        for (i, s) in self.segments.iter().take(n).enumerate() {
            if i > 0 {
                out.push('.');
            }
            for c in s.chars() {
                if c == '.' || c == ':' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        out
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for KeyPath {
    type Err = KeyPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Parses a sequence index the way Kargo does (Go's `strconv.Atoi`, negatives refused).
pub(crate) fn parse_index(segment: &str) -> Option<usize> {
    let digits = segment.strip_prefix('+').unwrap_or(segment);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_kargo() {
        let ok = |k: &str| KeyPath::parse(k).unwrap().segments().to_vec();
        assert_eq!(ok("foo.bar.bat.baz"), ["foo", "bar", "bat", "baz"]);
        assert_eq!(ok(r"foo\.bar.bat\.baz"), ["foo.bar", "bat.baz"]);
        assert_eq!(ok(r"foo.bar\:bat.baz"), ["foo", "bar:bat", "baz"]);
        assert_eq!(ok("foo.bar.:2.baz"), ["foo", "bar", "2", "baz"]);
        assert_eq!(ok("  a.b "), ["a", "b"]);
        assert_eq!(ok("ünï.cödé"), ["ünï", "cödé"]);
        for bad in [
            "",
            "  ",
            ".foo",
            "foo.",
            "foo..bar",
            r"foo\nbar",
            "foo:bar",
            "a\\",
        ] {
            assert!(KeyPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let e = KeyPath::parse("foo:bar").unwrap_err();
        assert!(e.to_string().contains("unexpected colon"), "{e}");
    }

    #[test]
    fn prefix_re_escapes() {
        let p = KeyPath::parse(r"a\.b.c.d").unwrap();
        assert_eq!(p.prefix(2), r"a\.b.c");
        assert_eq!(p.to_string(), r"a\.b.c.d");
    }

    #[test]
    fn indexes() {
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("+12"), Some(12));
        assert_eq!(parse_index("007"), Some(7));
        assert_eq!(parse_index("-1"), None);
        assert_eq!(parse_index("x"), None);
        assert_eq!(parse_index(""), None);
        assert_eq!(parse_index("99999999999999999999999"), None);
    }
}
