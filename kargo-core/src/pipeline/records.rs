//! A [`ProjectState`] as records of their own: one per Freight, per Stage, per
//! Warehouse, per finished promotion, per promotion in progress, per lease counter, so a
//! write touches only the records it changed and each record carries its own revision.
//!
//! The split follows the state's JSON form: a field holding a map gives one record per
//! entry (kind = the field's name, key = the entry's key), a field holding a list gives one
//! record per element (keyed by the element's `name`, ordered by a sequence number), and a
//! field holding a plain value gives one record of kind `meta`. A field added to the state
//! later is stored without a change here.
//!
//! Used by the stores that keep records of their own: the PostgreSQL store (one row per
//! record) and the [`FileStore`](super::FileStore)'s journal (one line per write, holding
//! the records it set and deleted).

use std::collections::BTreeMap;

use super::{ProjectState, StateError};
use serde_json::Value as Json;

/// The kind of the records holding plain fields (the format version).
const META: &str = "meta";

/// A record's identity: (kind, key).
pub type RecordId = (String, String);

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its place in a list (0 for map entries and plain fields).
    pub seq: i64,
    /// Its revision: 1 when inserted, one more per write.
    pub revision: i64,
    /// The record, as JSON text.
    pub body: String,
}

/// One record as the new state has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Its place among its list's elements (0 for map entries and plain fields); a new
    /// element is numbered after the stored ones.
    pub position: Option<usize>,
    /// The record, as JSON text.
    pub body: String,
}

/// A write of one record, guarded by the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A record that did not exist.
    Insert {
        /// kind, key
        id: RecordId,
        /// Place in its list.
        seq: i64,
        /// JSON text.
        body: String,
    },
    /// A record changed since it was read at `revision`.
    Update {
        /// kind, key
        id: RecordId,
        /// The revision read.
        revision: i64,
        /// JSON text.
        body: String,
    },
    /// A record removed since it was read at `revision`.
    Delete {
        /// kind, key
        id: RecordId,
        /// The revision read.
        revision: i64,
    },
}

/// Splits `state` into records, keyed by (kind, key).
///
/// Fails with [`StateError::Aborted`] only if the state cannot be encoded as JSON.
pub fn split(state: &ProjectState) -> Result<BTreeMap<RecordId, NewRecord>, StateError> {
    let json = serde_json::to_value(state)
        .map_err(|e| StateError::Aborted(format!("cannot encode the state: {e}")))?;
    let Json::Object(fields) = json else {
        return Err(StateError::Aborted("the state is not a JSON object".into()));
    };
    let mut out = BTreeMap::new();
    for (field, value) in fields {
        match value {
            Json::Object(entries) => {
                for (key, entry) in entries {
                    out.insert(
                        (field.clone(), key),
                        NewRecord {
                            position: None,
                            body: entry.to_string(),
                        },
                    );
                }
            }
            Json::Array(items) => {
                let keys = list_keys(&items);
                for (i, (key, item)) in keys.into_iter().zip(items).enumerate() {
                    out.insert(
                        (field.clone(), key),
                        NewRecord {
                            position: Some(i),
                            body: item.to_string(),
                        },
                    );
                }
            }
            plain => {
                out.insert(
                    (META.to_owned(), field),
                    NewRecord {
                        position: None,
                        body: plain.to_string(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Keys for a list's elements: their `name` when every element has a distinct one (a
/// promotion's name), else their position.
fn list_keys(items: &[Json]) -> Vec<String> {
    let names: Vec<Option<&str>> = items
        .iter()
        .map(|i| i.get("name").and_then(Json::as_str))
        .collect();
    let distinct: std::collections::BTreeSet<_> = names.iter().flatten().collect();
    if names.iter().all(Option::is_some) && distinct.len() == names.len() {
        names.into_iter().flatten().map(str::to_owned).collect()
    } else {
        (0..items.len()).map(|i| format!("#{i:08}")).collect()
    }
}

/// Rebuilds the state from its records; `describe` names a record for errors.
///
/// The records' JSON texts are joined into the state's JSON form and parsed once (no
/// intermediate JSON tree); when that fails, each record is parsed on its own to name the
/// damaged one.
pub fn assemble(
    records: &BTreeMap<RecordId, StoredRecord>,
    describe: &dyn Fn(&RecordId) -> String,
) -> Result<ProjectState, StateError> {
    // kind -> its records: plain fields, map entries (key order), list elements (seq order).
    let mut plain: Vec<(&str, &str)> = Vec::new();
    let mut maps: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut lists: BTreeMap<&str, Vec<(i64, &str, &str)>> = BTreeMap::new();
    for ((kind, key), rec) in records {
        if kind == META {
            plain.push((key, &rec.body));
        } else if rec.seq > 0 {
            lists
                .entry(kind)
                .or_default()
                .push((rec.seq, key, &rec.body));
        } else {
            maps.entry(kind).or_default().push((key, &rec.body));
        }
    }
    if let Some(kind) = maps.keys().find(|k| lists.contains_key(*k)) {
        return Err(StateError::Corrupt {
            path: describe(&((*kind).to_owned(), String::new())),
            message: format!("{kind:?} holds both map entries and list elements"),
        });
    }
    let size: usize = records.values().map(|r| r.body.len() + 64).sum();
    let mut text = String::with_capacity(size + 16);
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    text.push('{');
    let mut first = true;
    let mut field = |text: &mut String, name: &str| {
        if !std::mem::take(&mut first) {
            text.push(',');
        }
        text.push_str(&quote(name));
        text.push(':');
    };
    for (key, body) in &plain {
        field(&mut text, key);
        text.push_str(body);
    }
    for (kind, entries) in &maps {
        field(&mut text, kind);
        text.push('{');
        for (i, (key, body)) in entries.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&quote(key));
            text.push(':');
            text.push_str(body);
        }
        text.push('}');
    }
    for (kind, items) in &mut lists {
        items.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        field(&mut text, kind);
        text.push('[');
        for (i, (_, _, body)) in items.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(body);
        }
        text.push(']');
    }
    text.push('}');
    serde_json::from_str(&text).map_err(|e| {
        // Name the record that is not JSON, if one is not; else the state as a whole.
        for (id, rec) in records {
            if let Err(bad) = serde_json::from_str::<Json>(&rec.body) {
                return StateError::Corrupt {
                    path: describe(id),
                    message: format!("not JSON: {bad}"),
                };
            }
        }
        StateError::Corrupt {
            path: describe(&(String::new(), String::new())),
            message: format!("the records do not form a state: {e}"),
        }
    })
}

/// The writes that turn the stored records `old` into `new`: an insert for a record
/// `old` lacks (list elements numbered after the stored ones of their kind), an update
/// for one whose JSON text changed, a delete for one `new` lacks. Unchanged records give
/// nothing, so `diff(old, new)` is empty when the states are equal.
pub fn diff(
    old: &BTreeMap<RecordId, StoredRecord>,
    new: &BTreeMap<RecordId, NewRecord>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut next_seq: BTreeMap<&str, i64> = BTreeMap::new();
    for ((kind, _), rec) in old {
        let s = next_seq.entry(kind.as_str()).or_insert(0);
        *s = (*s).max(rec.seq);
    }
    for (id, rec) in new {
        match old.get(id) {
            Some(stored) if stored.body == rec.body => {}
            Some(stored) => changes.push(Change::Update {
                id: id.clone(),
                revision: stored.revision,
                body: rec.body.clone(),
            }),
            None => {
                let seq = match rec.position {
                    Some(_) => {
                        let s = next_seq.entry(id.0.as_str()).or_insert(0);
                        *s += 1;
                        *s
                    }
                    None => 0,
                };
                changes.push(Change::Insert {
                    id: id.clone(),
                    seq,
                    body: rec.body.clone(),
                });
            }
        }
    }
    for (id, stored) in old {
        if !new.contains_key(id) {
            changes.push(Change::Delete {
                id: id.clone(),
                revision: stored.revision,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::freight::{Freight, FreightOrigin, Image};
    use crate::pipeline::record_freight;

    fn freight(n: usize) -> Freight {
        Freight::new(
            FreightOrigin::warehouse("app"),
            vec![],
            vec![Image {
                repo_url: "registry.example/app".into(),
                tag: format!("1.0.{n}"),
                digest: format!("sha256:{n:064}"),
                annotations: BTreeMap::new(),
                subscription_name: None,
            }],
            vec![],
            vec![],
        )
    }

    fn stored(new: &BTreeMap<RecordId, NewRecord>) -> BTreeMap<RecordId, StoredRecord> {
        let mut seq = 0;
        new.iter()
            .map(|(id, r)| {
                let s = match r.position {
                    Some(_) => {
                        seq += 1;
                        seq
                    }
                    None => 0,
                };
                (
                    id.clone(),
                    StoredRecord {
                        seq: s,
                        revision: 1,
                        body: r.body.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_state_splits_and_assembles_unchanged() {
        let mut state = ProjectState::default();
        record_freight(&mut state, freight(1));
        record_freight(&mut state, freight(2));
        state.fences.insert("dev".into(), 3);
        let records = split(&state).unwrap();
        assert!(records.keys().any(|(k, _)| k == "freight"));
        let back = assemble(&stored(&records), &|id| format!("{id:?}")).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn a_change_to_one_record_writes_only_that_record() {
        let mut state = ProjectState::default();
        record_freight(&mut state, freight(1));
        record_freight(&mut state, freight(2));
        let old = stored(&split(&state).unwrap());
        let mut changed = state.clone();
        changed.fences.insert("dev".into(), 1);
        let changes = diff(&old, &split(&changed).unwrap());
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(matches!(&changes[0], Change::Insert { id, .. } if id.0 == "fences"));
        let id = state.freight.keys().next().unwrap().clone();
        changed.freight.remove(&id);
        let changes = diff(&old, &split(&changed).unwrap());
        assert!(changes.iter().any(|c| matches!(c, Change::Delete { id: (k, key), revision: 1 } if k == "freight" && *key == id.to_string())));
        assert_eq!(diff(&old, &split(&state).unwrap()), vec![]);
    }

    #[test]
    fn a_damaged_record_is_named() {
        let mut state = ProjectState::default();
        record_freight(&mut state, freight(1));
        let mut old = stored(&split(&state).unwrap());
        let id = old.keys().find(|(k, _)| k == "freight").unwrap().clone();
        old.get_mut(&id).unwrap().body = "{ not json".into();
        let err = assemble(&old, &|(k, key)| format!("record {k}/{key}")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("record freight/{}", id.1)),
            "{err}"
        );
    }
}
