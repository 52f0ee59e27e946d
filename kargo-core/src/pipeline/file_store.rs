//! [`FileStore`]: pipeline state in a directory, as a snapshot per project and a journal of
//! the writes made since (see [`journal`](super::journal)).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::journal::{self, Entry, Journal};
use super::records::{self, NewRecord, RecordId, StoredRecord};
use super::state::{ProjectState, STATE_FORMAT};
use super::store::{Fence, Revision, StageLease, StateError, StateStore, check_fence};
use crate::runner::PromotionProgress;

/// The journal is folded into a new snapshot once it is larger than the snapshot and
/// than this.
const COMPACT_MIN: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    revision: Revision,
    state: S,
}

/// State in a directory: per project a snapshot, `<dir>/<project>.json` =
/// `{"revision": N, "state": {...}}`, and a journal, `<dir>/<project>.journal`, one JSON
/// line per write made after the snapshot: the write's new revision and the records (see
/// [`records`](super::records)) it set and deleted. A promotion's progress after a step
/// ([`StateStore::put_progress`]) thus appends one short line instead of rewriting every
/// Freight of the project, and a reader applies such lines to the map entries they set
/// without rebuilding the state.
///
/// **Reading** (no lock): the snapshot, then the journal's lines in order, each applied
/// when its revision is the next one (a line at or below the snapshot's revision, or a
/// duplicate, is skipped), stopping at a torn last line (no newline, or not JSON: a writer
/// killed in the middle of its append; that write never happened).
///
/// **Writing**: a write takes an exclusive lock on `<dir>/<project>.lock` (an OS file
/// lock, released when the process dies) and holds it from its read to its write. It
/// cuts a torn tail off the journal, then appends its line with one `write_all` and
/// `sync_data`, so a line is all or nothing. When the journal has grown larger than the
/// snapshot (and than 64 KiB), or a write changes a list (the finished promotions: once
/// per promotion, not per step), the writer writes a new snapshot instead
/// (`<project>.json.tmp`, synced, renamed over the snapshot, directory synced) and then
/// empties the journal; a crash between the two leaves lines at or below the new
/// snapshot's revision, which readers skip.
/// [`StateStore::store`] keeps its whole-state compare-and-swap on the revision.
///
/// **Migration**: a directory written by an earlier version (snapshots only, rewritten on
/// every write) is read unchanged, as a snapshot with an empty journal; its next write
/// starts the journal.
///
/// A Stage's lease ([`StateStore::try_lease`]) is an exclusive OS lock on
/// `<dir>/<project>.stage-<stage>.lock`, so it is shared by every process using the
/// directory and given up when its holder dies.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

/// A project as read: its state and revision, and what a writer needs besides.
struct Loaded {
    state: ProjectState,
    revision: Revision,
    /// The state's records (for a writer; `None` when not asked for).
    records: Option<BTreeMap<RecordId, StoredRecord>>,
    /// The snapshot's length in bytes (0: none).
    snapshot_len: u64,
    journal: Journal,
}

/// What identifies one version of the snapshot file.
type Stamp = Option<(u64, Option<SystemTime>)>;

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    Some((meta.len(), meta.modified().ok()))
}

/// The records of a state split by [`records::split`], numbered as stored: list elements
/// from 1 in their order, others 0.
fn numbered(new: BTreeMap<RecordId, NewRecord>) -> BTreeMap<RecordId, StoredRecord> {
    new.into_iter()
        .map(|(id, r)| {
            let seq = r
                .position
                .map_or(0, |p| i64::try_from(p + 1).unwrap_or(i64::MAX));
            (
                id,
                StoredRecord {
                    seq,
                    revision: 0,
                    body: r.body,
                },
            )
        })
        .collect()
}

impl FileStore {
    /// A store in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, project: &str, ext: &str) -> Result<PathBuf, StateError> {
        let ok = !project.is_empty()
            && !project.starts_with('.')
            && project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(StateError::InvalidProject(project.to_owned()));
        }
        Ok(self.dir.join(format!("{project}.{ext}")))
    }

    /// Reads the snapshot at `path`: `None` when there is none.
    fn read_snapshot(
        &self,
        path: &Path,
    ) -> Result<Option<(Envelope<ProjectState>, u64, Stamp)>, StateError> {
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut text = String::new();
        let meta = match File::open(path) {
            Ok(mut f) => {
                let meta = f.metadata().map_err(io)?;
                f.read_to_string(&mut text).map_err(io)?;
                meta
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let env: Envelope<ProjectState> =
            serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        check_format(&env.state, path)?;
        Ok(Some((env, text.len() as u64, stamp(&meta))))
    }

    /// Reads a project: the snapshot, then the journal. With `with_records`, also the
    /// state's records (for a write). Without the lock, a compaction may replace the
    /// snapshot between the two reads; the read is then made again.
    fn read_project(&self, project: &str, with_records: bool) -> Result<Loaded, StateError> {
        let snapshot_path = self.path(project, "json")?;
        let journal_path = self.path(project, "journal")?;
        let mut attempt = 0;
        loop {
            let snapshot = self.read_snapshot(&snapshot_path)?;
            let journal = journal::read(&journal_path)?;
            let now = match std::fs::metadata(&snapshot_path) {
                Ok(m) => stamp(&m),
                Err(_) => None,
            };
            let before = snapshot.as_ref().and_then(|s| s.2);
            if now != before && attempt < 8 {
                attempt += 1;
                continue;
            }
            let (mut state, mut revision, snapshot_len) = match snapshot {
                Some((env, len, _)) => (env.state, env.revision, len),
                None => (
                    ProjectState {
                        format: STATE_FORMAT,
                        ..Default::default()
                    },
                    0,
                    0,
                ),
            };
            let mut applicable = Vec::new();
            for (line, entry) in &journal.entries {
                if entry.revision == revision + 1 {
                    revision += 1;
                    applicable.push((*line, entry));
                }
            }
            let records = if applicable.iter().all(|(_, e)| e.applies_to_state()) {
                // Map entries and the format only: applied to the state as it is.
                for (line, entry) in &applicable {
                    entry.apply_to_state(&mut state, &journal_path, *line)?;
                }
                with_records
                    .then(|| records::split(&state).map(numbered))
                    .transpose()?
            } else {
                let mut records = numbered(records::split(&state)?);
                for (_, entry) in &applicable {
                    entry.apply(&mut records);
                }
                state = records::assemble(&records, &|(kind, key)| {
                    if kind.is_empty() {
                        journal_path.display().to_string()
                    } else {
                        format!("{} (record {kind}/{key})", journal_path.display())
                    }
                })?;
                Some(records)
            };
            check_format(&state, &journal_path)?;
            return Ok(Loaded {
                state,
                revision,
                records,
                snapshot_len,
                journal,
            });
        }
    }

    /// Reads the project, checks the revision (`expected`), applies `change` and writes
    /// the new state as a journal line or a new snapshot; the caller holds the project's
    /// lock ([`lock_project`](Self::lock_project)).
    fn write_locked(
        &self,
        project: &str,
        expected: Option<Revision>,
        change: &mut (dyn FnMut(&mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<(ProjectState, Revision), StateError> {
        let loaded = self.read_project(project, true)?;
        if let Some(expected) = expected
            && expected != loaded.revision
        {
            return Err(StateError::Conflict {
                project: project.to_owned(),
                expected,
                actual: loaded.revision,
            });
        }
        let old = match loaded.records {
            Some(r) => r,
            None => numbered(records::split(&loaded.state)?),
        };
        let mut state = loaded.state;
        change(&mut state)?;
        state.format = STATE_FORMAT;
        let changes = records::diff(&old, &records::split(&state)?);
        let entry = Entry::new(loaded.revision + 1, changes, &old);
        let revision = self.commit(project, &loaded.journal, loaded.snapshot_len, &state, entry)?;
        Ok((state, revision))
    }

    /// Writes `state`, the project's next state, whose changes to `loaded` are `entry`:
    /// appends the entry to the journal, or writes a new snapshot when the entry touches
    /// a list (so the journal holds map entries and plain fields only) or the journal
    /// would grow larger than the snapshot (and than [`COMPACT_MIN`]). The caller holds
    /// the project's lock.
    fn commit(
        &self,
        project: &str,
        journal: &Journal,
        snapshot_len: u64,
        state: &ProjectState,
        entry: Entry,
    ) -> Result<Revision, StateError> {
        let journal_path = self.path(project, "journal")?;
        let line = entry.encode(&journal_path)?;
        let grown = journal.valid_len + line.len() as u64;
        if !entry.applies_to_state() || grown > snapshot_len.max(COMPACT_MIN) {
            self.write_snapshot(project, state, entry.revision)?;
            journal::truncate(&journal_path)?;
        } else {
            journal::append(&journal_path, journal, &line)?;
        }
        Ok(entry.revision)
    }

    /// Replaces the snapshot with `state` at `revision`: `<project>.json.tmp`, synced,
    /// renamed over `<project>.json`, directory synced.
    fn write_snapshot(
        &self,
        project: &str,
        state: &ProjectState,
        revision: Revision,
    ) -> Result<(), StateError> {
        let path = self.path(project, "json")?;
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| StateError::Io { path: p, source }
        };
        let bytes = serde_json::to_vec_pretty(&Envelope { revision, state }).map_err(|e| {
            StateError::Corrupt {
                path: path.display().to_string(),
                message: format!("cannot encode the state: {e}"),
            }
        })?;
        let tmp = self.path(project, "json.tmp")?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = File::open(&self.dir) {
            // Durability of the rename; not all platforms can sync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Takes the exclusive OS lock on `<project>.lock`, waiting for it; released when the
    /// returned file is dropped.
    fn lock_project(&self, project: &str) -> Result<File, StateError> {
        let lock_path = self.path(project, "lock")?;
        let io = |source| StateError::Io {
            path: lock_path.display().to_string(),
            source,
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        Ok(lock)
    }
}

/// The text of one promotion's progress record, as [`records::split`] gives it.
fn progress_record(progress: &PromotionProgress) -> Result<String, StateError> {
    serde_json::to_value(progress)
        .map(|v| v.to_string())
        .map_err(|e| StateError::Aborted(format!("cannot encode the progress: {e}")))
}

/// Refuses a state written in a newer format, naming the file.
fn check_format(state: &ProjectState, path: &Path) -> Result<(), StateError> {
    if state.format > STATE_FORMAT {
        return Err(StateError::Corrupt {
            path: path.display().to_string(),
            message: format!(
                "written in format {} by a newer version (this one reads up to {STATE_FORMAT})",
                state.format
            ),
        });
    }
    Ok(())
}

/// The file store does its (small, local) file operations inline: reads of one project's
/// files, an append or a rename.
#[async_trait]
impl StateStore for FileStore {
    async fn try_lease(
        &self,
        project: &str,
        stage: &str,
    ) -> Result<Option<StageLease>, StateError> {
        self.path(project, "json")?;
        let path = self.path(&format!("{project}.stage-{stage}"), "lock")?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.display().to_string(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(StageLease::new(lock))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    async fn load(&self, project: &str) -> Result<(ProjectState, Revision), StateError> {
        let loaded = self.read_project(project, false)?;
        Ok((loaded.state, loaded.revision))
    }

    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: Revision,
    ) -> Result<Revision, StateError> {
        let _lock = self.lock_project(project)?;
        self.write_locked(project, Some(expected), &mut |s| {
            s.clone_from(state);
            Ok(())
        })
        .map(|(_, revision)| revision)
    }

    /// Writes the one progress record (a journal line of one record, as
    /// [`records::diff`] gives it), under the project's lock, after checking the fence;
    /// the state's other records are neither split nor compared.
    async fn put_progress(
        &self,
        fence: &Fence,
        promotion: &str,
        progress: Option<&PromotionProgress>,
    ) -> Result<(), StateError> {
        let project = fence.project.as_str();
        let _lock = self.lock_project(project)?;
        let loaded = self.read_project(project, false)?;
        check_fence(&loaded.state, fence)?;
        let id: RecordId = ("progress".to_owned(), promotion.to_owned());
        let mut old = BTreeMap::new();
        if let Some(p) = loaded.state.progress.get(promotion) {
            let body = progress_record(p)?;
            old.insert(
                id.clone(),
                StoredRecord {
                    seq: 0,
                    revision: 0,
                    body,
                },
            );
        }
        let mut new = BTreeMap::new();
        if let Some(p) = progress {
            let body = progress_record(p)?;
            new.insert(
                id,
                NewRecord {
                    position: None,
                    body,
                },
            );
        }
        let changes = records::diff(&old, &new);
        let entry = Entry::new(loaded.revision + 1, changes, &old);
        let mut state = loaded.state;
        match progress {
            Some(p) => {
                state.progress.insert(promotion.to_owned(), p.clone());
            }
            None => {
                state.progress.remove(promotion);
            }
        }
        state.format = STATE_FORMAT;
        self.commit(project, &loaded.journal, loaded.snapshot_len, &state, entry)
            .map(|_| ())
    }

    /// Holds the project's write lock from the read to the write, so writers in other
    /// processes wait for each other instead of conflicting and retrying.
    async fn update(
        &self,
        project: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        let _lock = self.lock_project(project)?;
        self.write_locked(project, None, change)
            .map(|(state, _)| state)
    }
}
