//! Commits without a work tree: edits applied directly in the object database, and the
//! push loop that re-runs them on a new tip when the remote moved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::Signature;
use crate::cli::PushResult;
use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::{FetchSpec, Mirror, commit_tree, read_blob_at};

/// A transformation of one file's content: `None` in means the file does not exist,
/// `None` out deletes it.
pub type TransformFn =
    dyn Fn(Option<&[u8]>) -> std::result::Result<Option<Vec<u8>>, String> + Send + Sync;

/// One change to a tree.
#[derive(Clone)]
pub enum Edit {
    /// Write a file with this content (creating directories as needed).
    Write {
        /// The path, relative to the repository root, with `/` separators.
        path: String,
        /// The new content.
        content: Vec<u8>,
    },
    /// Delete a file or directory.
    Delete {
        /// The path.
        path: String,
    },
    /// Compute the new content from the current one. This is what makes a retried push
    /// re-apply a change instead of overwriting a concurrent one: the function runs again
    /// on the new tip's content.
    Transform {
        /// The path.
        path: String,
        /// The transformation.
        f: Arc<TransformFn>,
    },
}

impl std::fmt::Debug for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Write { path, content } => write!(f, "Write({path:?}, {} bytes)", content.len()),
            Self::Delete { path } => write!(f, "Delete({path:?})"),
            Self::Transform { path, .. } => write!(f, "Transform({path:?})"),
        }
    }
}

impl Edit {
    /// A [`Edit::Transform`] from a closure.
    pub fn transform(
        path: impl Into<String>,
        f: impl Fn(Option<&[u8]>) -> std::result::Result<Option<Vec<u8>>, String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self::Transform {
            path: path.into(),
            f: Arc::new(f),
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::Write { path, .. } | Self::Delete { path } | Self::Transform { path, .. } => path,
        }
    }
}

/// What applying edits produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditResult {
    /// The edits changed nothing; `head` is the unchanged tip.
    Unchanged {
        /// The current tip.
        head: Option<ObjectId>,
    },
    /// A new commit.
    Committed {
        /// The new commit.
        commit: ObjectId,
        /// Its parent.
        parent: Option<ObjectId>,
    },
}

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The branch pushed to.
    pub branch: String,
    /// The commit the branch now points to.
    pub commit: ObjectId,
    /// How many push attempts it took (0 when there was nothing to push).
    pub attempts: u32,
    /// Whether nothing had to be committed.
    pub unchanged: bool,
    /// How many checkouts' commits the push that carried this one held (1: pushed
    /// alone; more: batched with other pushes to the branch from this process).
    pub batch: usize,
}

fn push_locks() -> &'static Mutex<HashMap<String, Arc<Mutex<()>>>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    LOCKS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The in-process lock that serialises pushes to one repository and branch.
pub(crate) fn branch_lock(mirror: &Mirror, branch: &str) -> Arc<Mutex<()>> {
    let key = format!("{}#{branch}", mirror.display_url());
    let mut map = push_locks()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(key).or_default().clone()
}

/// Exponential backoff (×1.5) with ±50 % jitter.
pub(crate) fn backoff(mirror: &Mirror, attempt: u32) -> Duration {
    let cfg = &mirror.git.config;
    let base = cfg.retry_initial.as_secs_f64() * 1.5f64.powi(i32::try_from(attempt).unwrap_or(30));
    let capped = base.min(cfg.retry_max.as_secs_f64());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 0.5 + f64::from(nanos % 1000) / 1000.0; // 0.5 .. 1.5
    Duration::from_secs_f64((capped * jitter).max(0.0))
}

impl Mirror {
    /// Applies `edits` to the tree of `parent` (the empty tree when `None`) and writes a
    /// commit with that parent. Only the blobs and the trees along the changed paths are
    /// written. No reference changes.
    pub fn write_commit(
        &self,
        parent: Option<ObjectId>,
        edits: &[Edit],
        message: &str,
        author: &Signature,
        committer: &Signature,
    ) -> Result<EditResult> {
        self.complete_trees()?;
        let repo = self.open()?;
        let base_tree = match parent {
            Some(p) => commit_tree(&repo, p)?,
            None => ObjectId::empty_tree(repo.object_hash()),
        };
        // A blobless mirror: gix writes a tree only when it holds every file it names.
        let paths: Vec<String> = edits
            .iter()
            .filter_map(|e| normalize(e.path()).ok())
            .collect();
        let repo = if self.ensure_siblings(&repo, &[base_tree], &paths)? {
            self.open()?
        } else {
            repo
        };
        let mut editor = repo
            .edit_tree(base_tree)
            .map_err(|e| GitError::new(GitErrorKind::Other, "edit tree", e.to_string()))?;
        for edit in edits {
            let path = normalize(edit.path())?;
            let new_content = match edit {
                Edit::Write { content, .. } => Some(content.clone()),
                Edit::Delete { .. } => None,
                Edit::Transform { f, .. } => {
                    let current = read_blob_at(self, &repo, base_tree, &path).or_else(|e| {
                        // A blob a blobless mirror could not fetch is no absent file.
                        if e.kind == GitErrorKind::Invalid || e.operation.starts_with("fetch") {
                            Err(e)
                        } else {
                            Ok(None)
                        }
                    })?;
                    f(current.as_deref()).map_err(|m| {
                        GitError::new(GitErrorKind::Invalid, format!("edit {path}"), m)
                    })?
                }
            };
            match new_content {
                Some(bytes) => {
                    let id = repo.write_blob(&bytes).map_err(|e| {
                        GitError::new(GitErrorKind::Io, "write blob", e.to_string())
                    })?;
                    editor
                        .upsert(path.as_str(), EntryKind::Blob, id.detach())
                        .map_err(|e| {
                            GitError::new(
                                GitErrorKind::Invalid,
                                format!("edit {path}"),
                                e.to_string(),
                            )
                        })?;
                }
                None => {
                    editor.remove(path.as_str()).map_err(|e| {
                        GitError::new(
                            GitErrorKind::Invalid,
                            format!("delete {path}"),
                            e.to_string(),
                        )
                    })?;
                }
            }
        }
        let tree = editor
            .write()
            .map_err(|e| GitError::new(GitErrorKind::Io, "write tree", e.to_string()))?
            .detach();
        if tree == base_tree && parent.is_some() {
            return Ok(EditResult::Unchanged { head: parent });
        }
        let commit = repo
            .new_commit_as(
                committer
                    .to_gix()
                    .to_ref(&mut gix::date::parse::TimeBuf::default()),
                author
                    .to_gix()
                    .to_ref(&mut gix::date::parse::TimeBuf::default()),
                message,
                tree,
                parent,
            )
            .map_err(|e| GitError::new(GitErrorKind::Io, "write commit", e.to_string()))?;
        Ok(EditResult::Committed {
            commit: commit.id,
            parent,
        })
    }

    /// Commits `edits` on the mirror's local `branch` and moves the branch with a
    /// compare-and-swap: if another writer moved it in between, the edits are re-applied
    /// on the new tip (up to the configured attempts).
    pub fn commit_edits(
        &self,
        branch: &str,
        edits: &[Edit],
        message: &str,
        author: &Signature,
        committer: &Signature,
    ) -> Result<EditResult> {
        let name = format!("refs/heads/{branch}");
        for _ in 0..self.git.config.max_push_attempts.max(1) {
            let repo = self.open()?;
            let current = repo
                .try_find_reference(name.as_str())
                .map_err(|e| GitError::new(GitErrorKind::Other, "read branch", e.to_string()))?
                .and_then(|r| r.target().try_id().map(ToOwned::to_owned));
            let result = self.write_commit(current, edits, message, author, committer)?;
            let EditResult::Committed { commit, .. } = result else {
                return Ok(result);
            };
            let expected = match current {
                Some(c) => gix::refs::transaction::PreviousValue::MustExistAndMatch(
                    gix::refs::Target::Object(c),
                ),
                None => gix::refs::transaction::PreviousValue::MustNotExist,
            };
            let full: gix::refs::FullName = name.as_str().try_into().map_err(|_| {
                GitError::new(
                    GitErrorKind::Invalid,
                    "commit",
                    format!("invalid branch {branch:?}"),
                )
            })?;
            // Under the mirror lock, like every write of the mirror's references (a lock
            // file found while holding it is stale, see `Mirror::new`).
            let _lock = self.lock()?;
            match repo.edit_reference(gix::refs::transaction::RefEdit {
                change: gix::refs::transaction::Change::Update {
                    log: Default::default(),
                    expected,
                    new: gix::refs::Target::Object(commit),
                },
                name: full,
                deref: false,
            }) {
                Ok(_) => return Ok(result),
                Err(e) => tracing::debug!(error = %e, "branch moved while committing; re-applying"),
            }
        }
        Err(GitError::new(
            GitErrorKind::NonFastForward,
            format!("commit to {branch}"),
            "the branch kept moving; gave up",
        ))
    }

    /// The fast path of a promotion: apply `edits` to the tip of `branch` in the object
    /// database, commit, push. When the mirror already has the branch, the first attempt
    /// builds on the cached tip without a fetch; a rejected push fetches and re-runs the
    /// edits on the new tip, with backoff, up to the configured attempts. With `create`, a
    /// missing branch is created (as an orphan) instead of being an error.
    pub fn push_edits(
        &self,
        branch: &str,
        edits: &[Edit],
        message: &str,
        author: &Signature,
        committer: &Signature,
        create: bool,
    ) -> Result<PushOutcome> {
        let lock = branch_lock(self, branch);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let op = format!("push {} {branch}", self.display_url());
        let max = self.git.config.max_push_attempts.max(1);
        let mut spec = FetchSpec::branch(branch);
        spec.depth = self.git.config.depth;
        // Optimistic first attempt: when the mirror already has the branch, build on its
        // tip without asking the remote; a stale tip costs one rejected push, after which
        // every attempt fetches first.
        let local_tip = self
            .open()?
            .try_find_reference(format!("refs/heads/{branch}").as_str())
            .ok()
            .flatten()
            .and_then(|r| r.target().try_id().map(ToOwned::to_owned));
        let mut optimistic = local_tip;
        for attempt in 1..=max {
            self.git.check_interrupted(&op)?;
            let tip = match optimistic.take() {
                Some(t) => Some(t),
                None => {
                    let fetched = match self.fetch(&spec) {
                        Ok(f) => f,
                        Err(e) if create && e.kind == GitErrorKind::NotFound => Default::default(),
                        Err(e) => return Err(e),
                    };
                    let tip = fetched.get(&format!("refs/heads/{branch}")).copied();
                    if tip.is_none() && !create {
                        return Err(GitError::new(
                            GitErrorKind::NotFound,
                            op,
                            format!("branch {branch:?} does not exist"),
                        ));
                    }
                    tip
                }
            };
            let was_optimistic = attempt == 1 && local_tip.is_some();
            let commit = match self.write_commit(tip, edits, message, author, committer)? {
                EditResult::Unchanged { head } if !was_optimistic => {
                    return Ok(PushOutcome {
                        branch: branch.to_owned(),
                        commit: head.unwrap_or_else(|| ObjectId::null(gix::hash::Kind::Sha1)),
                        attempts: 0,
                        unchanged: true,
                        batch: 0,
                    });
                }
                // Unchanged against a possibly stale tip: check against the real one.
                EditResult::Unchanged { .. } => continue,
                EditResult::Committed { commit, .. } => commit,
            };
            match self.push_raw(&[format!("{commit}:refs/heads/{branch}")], false)? {
                PushResult::Ok => {
                    let _lock = self.lock()?;
                    self.set_ref(&format!("refs/heads/{branch}"), commit)?;
                    return Ok(PushOutcome {
                        branch: branch.to_owned(),
                        commit,
                        attempts: attempt,
                        unchanged: false,
                        batch: 1,
                    });
                }
                PushResult::Rejected(why) => {
                    tracing::info!(attempt, reason = %why, "push rejected; fetching and re-applying");
                    if attempt < max && !was_optimistic {
                        self.git.sleep(backoff(self, attempt - 1), &op)?;
                    }
                }
            }
        }
        Err(GitError::new(
            GitErrorKind::NonFastForward,
            op,
            format!("the push was rejected {max} times; the branch keeps moving"),
        ))
    }
}

/// Validates and normalises a repository-relative path (`/` separators, no `..`).
pub(crate) fn normalize(path: &str) -> Result<String> {
    let p = path.trim_start_matches("./").trim_matches('/');
    if p.is_empty()
        || p.split('/')
            .any(|c| c == ".." || c == "." || c.is_empty() || c == ".git")
        || p.contains('\0')
        || path.starts_with('/')
    {
        return Err(GitError::new(
            GitErrorKind::Invalid,
            "edit",
            format!("invalid repository path {path:?}: expected a relative path without `..`"),
        ));
    }
    Ok(p.to_owned())
}
