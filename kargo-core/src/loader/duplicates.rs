//! Mappings that repeat a key. `kubectl apply` takes the last value and warns; so does the
//! loader. [`parse_last_wins`] reads a document into a value where each repeated key holds
//! its last value, and lists every repeated key with the path of its mapping.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use yaml_serde::{Mapping, Number, Value};

/// A key a mapping holds more than once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RepeatedKey {
    /// The path of the mapping (`metadata`, `spec.steps[2].config`; empty: the root).
    pub(super) parent: String,
    /// The key.
    pub(super) key: String,
    /// How many times it appears.
    pub(super) count: usize,
}

impl RepeatedKey {
    /// The key's full path.
    pub(super) fn path(&self) -> String {
        if self.parent.is_empty() {
            self.key.clone()
        } else {
            format!("{}.{}", self.parent, self.key)
        }
    }
}

/// Reads one document; repeated keys keep their last value and are listed in document
/// order.
pub(super) fn parse_last_wins<'de, D: Deserializer<'de>>(
    doc: D,
) -> Result<(Value, Vec<RepeatedKey>), D::Error> {
    let mut repeated = Vec::new();
    let value = Node {
        path: String::new(),
        repeated: &mut repeated,
    }
    .deserialize(doc)?;
    Ok((value, repeated))
}

struct Node<'a> {
    path: String,
    repeated: &'a mut Vec<RepeatedKey>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| "<key>".to_owned()),
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let node = Node {
                path: format!("{}[{}]", self.path, items.len()),
                repeated: &mut *self.repeated,
            };
            match seq.next_element_seed(node)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Sequence(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        let mut repeats: Vec<RepeatedKey> = Vec::new();
        while let Some(key) = map.next_key::<Value>()? {
            let text = key_text(&key);
            let path = if self.path.is_empty() {
                text.clone()
            } else {
                format!("{}.{text}", self.path)
            };
            let value = map.next_value_seed(Node {
                path,
                repeated: &mut *self.repeated,
            })?;
            if out.insert(key, value).is_some() {
                match repeats.iter_mut().find(|r| r.key == text) {
                    Some(r) => r.count += 1,
                    None => repeats.push(RepeatedKey {
                        parent: self.path.clone(),
                        key: text,
                        count: 2,
                    }),
                }
            }
        }
        self.repeated.extend(repeats);
        Ok(Value::Mapping(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Value, Vec<RepeatedKey>) {
        let doc = yaml_serde::Deserializer::from_str(text)
            .next()
            .expect("a document");
        parse_last_wins(doc).expect("parses")
    }

    #[test]
    fn last_value_wins_and_each_repeat_is_listed() {
        let (value, repeated) = parse(
            "metadata:\n  name: a\n  name: b\n  name: c\nspec:\n  steps:\n  - {as: x, as: y}\n",
        );
        assert_eq!(value["metadata"]["name"], "c");
        assert_eq!(value["spec"]["steps"][0]["as"], "y");
        assert_eq!(
            repeated,
            [
                RepeatedKey {
                    parent: "metadata".into(),
                    key: "name".into(),
                    count: 3
                },
                RepeatedKey {
                    parent: "spec.steps[0]".into(),
                    key: "as".into(),
                    count: 2
                },
            ]
        );
        assert_eq!(repeated[1].path(), "spec.steps[0].as");
    }

    #[test]
    fn documents_without_repeats_read_as_usual() {
        let (value, repeated) = parse("a: [1, 2.5, true, null, x]\nb: {c: d}\n");
        assert!(repeated.is_empty());
        let plain: Value =
            yaml_serde::from_str("a: [1, 2.5, true, null, x]\nb: {c: d}\n").expect("parses");
        assert_eq!(value, plain);
    }
}
