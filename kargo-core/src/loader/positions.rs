//! Line and column of YAML nodes and errors, for the loader's error messages.
//!
//! yaml_serde has no span API, but an error raised by a visitor gets the position of the
//! node being visited. `Locate` walks a document along a path and raises an error at the
//! target (at the key, for a mapping entry); the error's location is the answer.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The 1-based line and column of a yaml_serde error, when it has one.
pub(super) fn position(err: &yaml_serde::Error) -> Option<(usize, usize)> {
    err.location().map(|l| (l.line(), l.column()))
}

/// The line and column of a reader error (invalid characters: `... at position <byte>`),
/// whose own mark is the start of the input.
pub(super) fn reader_position(text: &str, err: &yaml_serde::Error) -> Option<(usize, usize)> {
    let msg = err.to_string();
    let (_, tail) = msg.rsplit_once(" at position ")?;
    let offset: usize = tail.trim().parse().ok()?;
    let before = text.as_bytes().get(..offset.min(text.len()))?;
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    Some((line, offset - line_start + 1))
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_owned()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(n) = inner[..end].parse() {
                segs.push(Seg::Index(n));
            }
            rest = &inner[end + 1..];
        }
    }
    segs
}

/// The 1-based line and column of `path` in document `index` of `text`, or of its longest
/// existing prefix (the document root for an empty path).
pub(super) fn locate(text: &str, index: usize, path: &str) -> Option<(usize, usize)> {
    let segs = parse_path(path);
    for depth in (0..=segs.len()).rev() {
        let doc = yaml_serde::Deserializer::from_str(text).nth(index)?;
        if let Err(e) = Locate::path(&segs[..depth]).deserialize(doc) {
            return position(&e);
        }
    }
    None
}

/// The 1-based line and column of the `occurrence`-th (1-based) key `key` of the mapping at
/// `parent` in document `index` of `text` (a mapping may repeat a key: see
/// [`super::duplicates`]).
pub(super) fn locate_key(
    text: &str,
    index: usize,
    parent: &str,
    key: &str,
    occurrence: usize,
) -> Option<(usize, usize)> {
    let segs = parse_path(parent);
    let doc = yaml_serde::Deserializer::from_str(text).nth(index)?;
    let seed = Locate {
        segs: &segs,
        nth_key: Some((key, occurrence)),
    };
    seed.deserialize(doc).err().and_then(|e| position(&e))
}

/// The 1-based line and column of the root node of `doc`.
pub(super) fn root_position(doc: yaml_serde::Deserializer<'_>) -> Option<(usize, usize)> {
    Locate::path(&[])
        .deserialize(doc)
        .err()
        .and_then(|e| position(&e))
}

/// Walks to `segs` and fails there (or, with `nth_key`, at that occurrence of a key of the
/// mapping there).
#[derive(Clone, Copy)]
struct Locate<'a> {
    segs: &'a [Seg],
    nth_key: Option<(&'a str, usize)>,
}

impl<'a> Locate<'a> {
    fn path(segs: &'a [Seg]) -> Self {
        Locate {
            segs,
            nth_key: None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match (self.segs.split_first(), self.nth_key) {
            (None, None) => d.deserialize_any(Here),
            (None, Some((key, n))) => d.deserialize_any(NthKey { key, n }),
            (Some((seg, rest)), nth_key) => d.deserialize_any(Walk {
                seg,
                rest: Locate {
                    segs: rest,
                    nth_key,
                },
            }),
        }
    }
}

/// Fails at the `n`-th key `key` of a mapping.
struct NthKey<'a> {
    key: &'a str,
    n: usize,
}

impl<'de> Visitor<'de> for NthKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0;
        loop {
            let last = seen + 1 == self.n;
            let Some(hit) = map.next_key_seed(KeyMatch {
                target: Some(self.key),
                last,
            })?
            else {
                return Ok(());
            };
            if hit {
                seen += 1;
            }
            map.next_value::<IgnoredAny>()?;
        }
    }
}

/// Fails on whatever node it visits (every default `visit_*` is an error).
struct Here;

impl Visitor<'_> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (locating a field)")
    }
}

struct Walk<'a> {
    seg: &'a Seg,
    rest: Locate<'a>,
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let target = match self.seg {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        };
        let last = self.rest.segs.is_empty() && self.rest.nth_key.is_none();
        while let Some(hit) = map.next_key_seed(KeyMatch { target, last })? {
            if hit {
                map.next_value_seed(self.rest)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Seg::Index(n) = self.seg {
            for _ in 0..*n {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
            }
            if seq.next_element_seed(self.rest)?.is_none() {
                return Ok(());
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Deserialises a mapping key: `Ok(true)` when it is the target, an error at the key when
/// it is the final target.
struct KeyMatch<'a> {
    target: Option<&'a str>,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match self.target {
            Some(t) if t == v && self.last => Err(E::custom("found")),
            Some(t) => Ok(t == v),
            None => Ok(false),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = "a: 1\n---\n# comment\nkind: x\nspec:\n  list:\n  - name: p\n  - name: q\n    deep: {k: v}\n";

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("spec.steps[2].task.name"),
            vec![
                Seg::Key("spec".into()),
                Seg::Key("steps".into()),
                Seg::Index(2),
                Seg::Key("task".into()),
                Seg::Key("name".into())
            ]
        );
        assert_eq!(parse_path(""), vec![]);
    }

    #[test]
    fn locates_fields_with_absolute_lines() {
        assert_eq!(locate(DOCS, 0, ""), Some((1, 1)));
        assert_eq!(locate(DOCS, 1, ""), Some((4, 1)));
        assert_eq!(locate(DOCS, 1, "spec"), Some((5, 1)));
        assert_eq!(locate(DOCS, 1, "spec.list[1]"), Some((8, 5)));
        assert_eq!(locate(DOCS, 1, "spec.list[1].name"), Some((8, 5)));
        assert_eq!(locate(DOCS, 1, "spec.list[1].deep.k"), Some((9, 12)));
        // Missing tail: the longest existing prefix.
        assert_eq!(locate(DOCS, 1, "spec.list[1].nope.x"), Some((8, 5)));
        assert_eq!(locate(DOCS, 1, "spec.list[7]"), Some((6, 3)));
        assert_eq!(locate(DOCS, 5, "spec"), None);
    }

    #[test]
    fn locates_repeated_keys() {
        let text = "a: 1\n---\nmetadata:\n  name: x\n  other: 1\n  name: y\nspec: {k: 1, k: 2}\n";
        assert_eq!(locate_key(text, 1, "metadata", "name", 1), Some((4, 3)));
        assert_eq!(locate_key(text, 1, "metadata", "name", 2), Some((6, 3)));
        assert_eq!(locate_key(text, 1, "spec", "k", 2), Some((7, 14)));
        assert_eq!(locate_key(text, 1, "", "spec", 1), Some((7, 1)));
    }
}
