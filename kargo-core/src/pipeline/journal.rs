//! The [`FileStore`](super::FileStore)'s journal: `<project>.journal`, append-only, one
//! JSON line per write made after the snapshot (`<project>.json`). A line holds the
//! write's new revision and the records (see [`records`](super::records)) it set and
//! deleted:
//!
//! ```text
//! {"revision":8,"set":[{"kind":"progress","key":"dev-1","body":"{\"step\":2}"}],"deleted":[{"kind":"freight","key":"abc"}]}
//! ```
//!
//! A list element set for the first time carries its place in the list (`"seq"`, after
//! the stored ones); map entries and plain fields have none. A line is appended with one
//! `write_all` and `sync_data`, so a writer killed in the middle leaves at most a torn last
//! line (no newline, or not JSON): that write never happened, readers ignore it and the
//! next writer truncates it before appending.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StateError;
use super::records::{Change, RecordId, StoredRecord};
use super::state::ProjectState;
use super::store::Revision;

/// One line: a write's new revision and the records it set and deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The state's revision after the write.
    pub revision: Revision,
    /// Records inserted or changed.
    #[serde(default)]
    pub set: Vec<SetRecord>,
    /// Records removed.
    #[serde(default)]
    pub deleted: Vec<DeletedRecord>,
}

/// A record set by a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SetRecord {
    /// Its kind (the state's field).
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Its place in its list (0, left out: a map entry or plain field).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: i64,
    /// The record, as JSON text.
    pub body: String,
}

/// A record deleted by a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeletedRecord {
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
}

/// The state's fields that hold maps, whose entries a line may set or delete without
/// rebuilding the state.
const MAP_KINDS: [&str; 5] = ["freight", "stages", "warehouses", "fences", "progress"];

/// The kind of the records holding plain fields ([`records`](super::records)).
const META: &str = "meta";

fn map_key<K: DeserializeOwned>(key: &str) -> Result<K, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(key.to_owned()))
}

fn insert<K: DeserializeOwned + Ord, V: DeserializeOwned>(
    map: &mut BTreeMap<K, V>,
    key: &str,
    body: &str,
) -> Result<(), serde_json::Error> {
    map.insert(map_key(key)?, serde_json::from_str(body)?);
    Ok(())
}

fn remove<K: DeserializeOwned + Ord, V>(
    map: &mut BTreeMap<K, V>,
    key: &str,
) -> Result<(), serde_json::Error> {
    map.remove(&map_key::<K>(key)?);
    Ok(())
}

fn corrupt(path: &Path, line: usize, kind: &str, key: &str, e: &serde_json::Error) -> StateError {
    StateError::Corrupt {
        path: path.display().to_string(),
        message: format!("line {line}: record {kind}/{key}: {e}"),
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Entry {
    /// The line for the write `changes` (from [`records::diff`](super::records::diff)
    /// against `old`, the records read), giving the state `revision`.
    pub fn new(
        revision: Revision,
        changes: Vec<Change>,
        old: &BTreeMap<RecordId, StoredRecord>,
    ) -> Self {
        let mut entry = Entry {
            revision,
            set: Vec::new(),
            deleted: Vec::new(),
        };
        for change in changes {
            match change {
                Change::Insert { id, seq, body } => entry.set.push(SetRecord {
                    kind: id.0,
                    key: id.1,
                    seq,
                    body,
                }),
                Change::Update { id, body, .. } => {
                    let seq = old.get(&id).map_or(0, |r| r.seq);
                    entry.set.push(SetRecord {
                        kind: id.0,
                        key: id.1,
                        seq,
                        body,
                    });
                }
                Change::Delete { id, .. } => entry.deleted.push(DeletedRecord {
                    kind: id.0,
                    key: id.1,
                }),
            }
        }
        entry
    }

    /// Applies the write to `records`.
    pub fn apply(&self, records: &mut BTreeMap<RecordId, StoredRecord>) {
        for d in &self.deleted {
            records.remove(&(d.kind.clone(), d.key.clone()));
        }
        for s in &self.set {
            records.insert(
                (s.kind.clone(), s.key.clone()),
                StoredRecord {
                    seq: s.seq,
                    revision: i64::try_from(self.revision).unwrap_or(i64::MAX),
                    body: s.body.clone(),
                },
            );
        }
    }

    /// Whether [`apply_to_state`](Self::apply_to_state) can apply this line: it touches
    /// only map entries of the state and its format.
    pub fn applies_to_state(&self) -> bool {
        let known =
            |kind: &str, key: &str| MAP_KINDS.contains(&kind) || (kind == META && key == "format");
        self.set.iter().all(|s| known(&s.kind, &s.key))
            && self.deleted.iter().all(|d| known(&d.kind, &d.key))
    }

    /// Applies the write to `state` directly, parsing only the records it set (when
    /// [`applies_to_state`](Self::applies_to_state)); a record that does not parse is
    /// [`StateError::Corrupt`] naming `path` and `line`.
    pub fn apply_to_state(
        &self,
        state: &mut ProjectState,
        path: &Path,
        line: usize,
    ) -> Result<(), StateError> {
        for d in &self.deleted {
            let key = d.key.as_str();
            let bad = |e: serde_json::Error| corrupt(path, line, &d.kind, key, &e);
            match d.kind.as_str() {
                "freight" => remove(&mut state.freight, key).map_err(bad)?,
                "stages" => remove(&mut state.stages, key).map_err(bad)?,
                "warehouses" => remove(&mut state.warehouses, key).map_err(bad)?,
                "fences" => remove(&mut state.fences, key).map_err(bad)?,
                "progress" => remove(&mut state.progress, key).map_err(bad)?,
                _ => state.format = 0,
            }
        }
        for s in &self.set {
            let (key, body) = (s.key.as_str(), s.body.as_str());
            let bad = |e: serde_json::Error| corrupt(path, line, &s.kind, key, &e);
            match s.kind.as_str() {
                "freight" => insert(&mut state.freight, key, body).map_err(bad)?,
                "stages" => insert(&mut state.stages, key, body).map_err(bad)?,
                "warehouses" => insert(&mut state.warehouses, key, body).map_err(bad)?,
                "fences" => insert(&mut state.fences, key, body).map_err(bad)?,
                "progress" => insert(&mut state.progress, key, body).map_err(bad)?,
                _ => state.format = serde_json::from_str(body).map_err(bad)?,
            }
        }
        Ok(())
    }

    /// The line's bytes, newline included.
    pub fn encode(&self, path: &Path) -> Result<Vec<u8>, StateError> {
        let mut line = serde_json::to_vec(self).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            message: format!("cannot encode a journal line: {e}"),
        })?;
        line.push(b'\n');
        Ok(line)
    }
}

/// A journal as read.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Its complete lines, in order, with their line numbers (from 1).
    pub entries: Vec<(usize, Entry)>,
    /// The length of its complete lines: where a torn tail starts.
    pub valid_len: u64,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the journal at `path` (empty when there is none). A last line without a newline
/// or that is not JSON is a torn append and left out; any other line that is not an entry
/// is [`StateError::Corrupt`], naming the file and the line.
pub(crate) fn read(path: &Path) -> Result<Journal, StateError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io_error(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::default()),
        Err(e) => return Err(io_error(path)(e)),
    }
    let mut journal = Journal::default();
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let Some(end) = bytes[start..].iter().position(|&b| b == b'\n') else {
            break; // no newline: torn
        };
        let line = &bytes[start..start + end];
        let next = start + end + 1;
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) => journal.entries.push((number, entry)),
            Err(_) if bytes[next..].iter().all(|&b| b == b'\n' || b == 0) => break, // torn
            Err(e) => {
                return Err(StateError::Corrupt {
                    path: path.display().to_string(),
                    message: format!("line {number}: {e}"),
                });
            }
        }
        start = next;
        journal.valid_len = next as u64;
    }
    Ok(journal)
}

/// Appends `line` to the journal at `path` under the project's lock: first cuts a torn
/// tail (the file's bytes after `valid_len`), then writes the line at once and syncs it.
pub(crate) fn append(path: &Path, journal: &Journal, line: &[u8]) -> Result<(), StateError> {
    let io = io_error(path);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(&io)?;
    let len = f.metadata().map_err(&io)?.len();
    if len > journal.valid_len {
        f.set_len(journal.valid_len).map_err(&io)?;
    }
    f.write_all(line).map_err(&io)?;
    f.sync_data().map_err(&io)
}

/// Empties the journal at `path` (after a compaction wrote its lines into the snapshot).
pub(crate) fn truncate(path: &Path) -> Result<(), StateError> {
    let io = io_error(path);
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => {
            f.set_len(0).map_err(&io)?;
            f.sync_data().map_err(&io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(revision: Revision) -> Entry {
        Entry {
            revision,
            set: vec![SetRecord {
                kind: "progress".into(),
                key: "p\n1".into(),
                seq: 0,
                body: "{\"a\":\"x\\ny\"}".into(),
            }],
            deleted: vec![DeletedRecord {
                kind: "freight".into(),
                key: "abc".into(),
            }],
        }
    }

    #[test]
    fn a_line_is_one_line_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.journal");
        let line = entry(3).encode(&path).unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        append(&path, &Journal::default(), &line).unwrap();
        let j = read(&path).unwrap();
        assert_eq!(j.entries, vec![(1, entry(3))]);
        assert_eq!(j.valid_len, line.len() as u64);
    }

    #[test]
    fn a_torn_tail_is_left_out_and_cut_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.journal");
        let mut bytes = entry(1).encode(&path).unwrap();
        let good = bytes.len() as u64;
        let second = entry(2).encode(&path).unwrap();
        bytes.extend_from_slice(&second[..second.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let j = read(&path).unwrap();
        assert_eq!(j.entries, vec![(1, entry(1))]);
        assert_eq!(j.valid_len, good);
        append(&path, &j, &entry(2).encode(&path).unwrap()).unwrap();
        assert_eq!(
            read(&path).unwrap().entries,
            vec![(1, entry(1)), (2, entry(2))]
        );
    }

    #[test]
    fn a_damaged_middle_line_is_corrupt_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.journal");
        let mut bytes = entry(1).encode(&path).unwrap();
        bytes.extend_from_slice(b"{ damaged\n");
        bytes.extend_from_slice(&entry(3).encode(&path).unwrap());
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("p.journal") && err.contains("line 2"), "{err}");
    }
}
