//! Work trees made from the mirror, lazily materialised.
//!
//! A [`Checkout`] is a plain directory (no `.git`) plus what it came from: the commit, and
//! which files and directories have been written to disk. Files appear when something asks
//! for them through [`Checkout::materialize`]; kargo-steps wires that into the promotion's
//! path sandbox, so a step that opens `overlays/dev/values.yaml` gets that one file and a
//! step that walks the whole tree gets the whole tree. Commits compare the disk with the
//! tree the files came from, so their cost follows what was touched, not the repository's
//! size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
#[cfg(unix)]
use kargo_fs::nofollow;

use crate::Signature;
use crate::cli::PushResult;
use crate::edits::{backoff, branch_lock};
use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::{FetchSpec, Mirror, commit_tree, resolve_commit};
use crate::push_group::{BatchOutcome, push_group};

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutTarget {
    /// A branch (its remote tip).
    Branch(String),
    /// A commit ID.
    Commit(String),
    /// A tag.
    Tag(String),
}

/// How to check out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutOptions {
    /// For a branch that does not exist: start an empty (orphan) branch instead of failing.
    pub create: bool,
    /// Write only these directories up front (cone mode); other paths still appear on
    /// demand.
    pub sparse: Vec<String>,
    /// Write the whole tree up front instead of on demand.
    pub eager: bool,
}

/// A changed path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The path, relative to the checkout root.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// The kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A new file.
    Added,
    /// A changed file.
    Modified,
    /// A removed file.
    Deleted,
}

/// The result of [`Checkout::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// There was nothing to commit; `head` is the current commit (if any).
    NothingToCommit {
        /// The current commit.
        head: Option<ObjectId>,
    },
    /// A new commit.
    Committed {
        /// The new commit.
        commit: ObjectId,
    },
}

#[derive(Debug, Clone)]
struct FileState {
    id: ObjectId,
    kind: EntryKind,
    size: u64,
    mtime: Option<SystemTime>,
    /// When the stat data was taken. A file whose mtime is not clearly older than this
    /// is "racy" (git's term): a rewrite in the same clock tick keeps its size and mtime,
    /// so only its content can tell.
    recorded: SystemTime,
}

/// How long a member of a push group waits before looking at the group again (a batch's
/// end wakes it at once; this bounds a missed wake-up).
const GROUP_POLL: Duration = Duration::from_millis(200);

/// How much older than the snapshot an mtime must be for stat data to be trusted:
/// covers coarse file-system timestamps (2 s on FAT, a clock tick elsewhere).
const RACY_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

impl FileState {
    /// Whether size and mtime prove the file unchanged since it was recorded.
    fn unchanged(&self, kind: EntryKind, size: u64, mtime: Option<SystemTime>) -> bool {
        self.kind == kind
            && self.size == size
            && self.mtime.is_some()
            && self.mtime == mtime
            && self
                .mtime
                .and_then(|m| m.checked_add(RACY_MARGIN))
                .is_some_and(|m| m < self.recorded)
    }
}

#[derive(Debug)]
struct State {
    branch: Option<String>,
    /// The remote commit the checkout (or its last rebase) started from.
    upstream: Option<ObjectId>,
    head: Option<ObjectId>,
    head_tree: ObjectId,
    /// Commits made here that the remote does not have yet, oldest first.
    own: Vec<ObjectId>,
    /// Materialised files, by path.
    files: HashMap<String, FileState>,
    /// Fully materialised directories ("" is the root).
    dirs: BTreeSet<String>,
    /// The tree was cleared (`git-clear`): commits start from the empty tree.
    cleared: bool,
}

/// A lazily materialised work tree. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Checkout {
    mirror: Mirror,
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("mirror", &self.mirror)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn gerr(kind: GitErrorKind, op: &str, e: impl std::fmt::Display) -> GitError {
    GitError::new(kind, op, e.to_string())
}

/// The three-way merge of `ours` and `theirs` from `base`, written; a conflict is a
/// [`GitErrorKind::Conflict`] for `what`, naming the conflicting files.
fn merge_trees_or_conflict(
    repo: &gix::Repository,
    base: ObjectId,
    ours: ObjectId,
    theirs: ObjectId,
    what: &str,
    op: &str,
) -> Result<ObjectId> {
    let mut outcome = repo
        .merge_trees(
            base,
            ours,
            theirs,
            Default::default(),
            repo.tree_merge_options()
                .map_err(|e| gerr(GitErrorKind::Other, op, e))?,
        )
        .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
    let how = gix::merge::tree::TreatAsUnresolved::default();
    if outcome.has_unresolved_conflicts(how) {
        let mut files: Vec<String> = outcome
            .conflicts
            .iter()
            .filter(|c| c.is_unresolved(how))
            .map(|c| c.ours.location().to_str_lossy().into_owned())
            .collect();
        files.sort();
        files.dedup();
        let mut e = GitError::new(
            GitErrorKind::Conflict,
            what.to_owned(),
            "the remote changed the same content",
        );
        e.conflicts = files;
        return Err(e);
    }
    Ok(outcome
        .tree
        .write()
        .map_err(|e| gerr(GitErrorKind::Io, op, e))?
        .detach())
}

impl Mirror {
    /// Fetches what `target` needs and makes a checkout of it at `dest` (created if
    /// missing; must be empty).
    pub fn checkout(
        &self,
        target: &CheckoutTarget,
        dest: &Path,
        options: &CheckoutOptions,
    ) -> Result<Checkout> {
        let op = format!("checkout {}", self.display_url());
        let mut spec = FetchSpec {
            depth: self.git.config.depth,
            ..FetchSpec::default()
        };
        match target {
            CheckoutTarget::Branch(b) => spec.branches.push(b.clone()),
            CheckoutTarget::Tag(t) => spec.tags.push(t.clone()),
            CheckoutTarget::Commit(_) => spec.all_branches = true,
        }
        let fetched = self.fetch(&spec);
        let (branch, head) = match (target, fetched) {
            (CheckoutTarget::Branch(b), Ok(f)) => match f.get(&format!("refs/heads/{b}")) {
                Some(id) => (Some(b.clone()), Some(*id)),
                None if options.create => (Some(b.clone()), None),
                None => {
                    return Err(GitError::new(
                        GitErrorKind::NotFound,
                        op,
                        format!("branch {b:?} does not exist"),
                    ));
                }
            },
            (CheckoutTarget::Branch(b), Err(e))
                if options.create && e.kind == GitErrorKind::NotFound =>
            {
                (Some(b.clone()), None)
            }
            (_, Err(e)) => return Err(e),
            (CheckoutTarget::Tag(t), Ok(_)) => {
                let repo = self.open()?;
                (
                    None,
                    Some(resolve_commit(&repo, &format!("refs/tags/{t}"))?),
                )
            }
            (CheckoutTarget::Commit(c), Ok(_)) => {
                let repo = self.open()?;
                match resolve_commit(&repo, c) {
                    Ok(id) => (None, Some(id)),
                    // A commit behind the branch tips of a shallow mirror: get the history.
                    Err(e) if e.kind == GitErrorKind::NotFound && self.is_shallow()? => {
                        self.unshallow()?;
                        (None, Some(resolve_commit(&self.open()?, c)?))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let repo = self.open()?;
        let head_tree = match head {
            Some(h) => commit_tree(&repo, h)?,
            None => ObjectId::empty_tree(repo.object_hash()),
        };
        create_dirs(dest).map_err(|e| GitError::io(format!("create {}", dest.display()), &e))?;
        if fs::read_dir(dest)
            .map_err(|e| GitError::io("read checkout directory", &e))?
            .next()
            .is_some()
        {
            return Err(GitError::new(
                GitErrorKind::Invalid,
                op,
                format!("{} is not empty", dest.display()),
            ));
        }
        let checkout = Checkout {
            mirror: self.clone(),
            root: dest.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                branch,
                upstream: head,
                head,
                head_tree,
                own: Vec::new(),
                files: HashMap::new(),
                dirs: BTreeSet::new(),
                cleared: false,
            })),
        };
        if options.eager {
            checkout.materialize_rel("")?;
        } else {
            for dir in &options.sparse {
                let d = crate::edits::normalize(dir)?;
                checkout.materialize_rel(&d)?;
            }
        }
        Ok(checkout)
    }
}

impl Checkout {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The checkout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mirror it was made from.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The current commit (`None` for a new orphan branch without commits).
    pub fn head(&self) -> Option<ObjectId> {
        self.lock().head
    }

    /// The branch checked out, if any.
    pub fn branch(&self) -> Option<String> {
        self.lock().branch.clone()
    }

    /// The remote commit this checkout started from (or was last rebased onto, or last
    /// pushed); `None` for a new orphan branch. What a push would add on the remote is
    /// the difference between this commit and [`Checkout::head`] (see
    /// [`Mirror::diff_commits`]).
    pub fn upstream(&self) -> Option<ObjectId> {
        self.lock().upstream
    }

    /// The commits made in this checkout that were not pushed yet, oldest first.
    pub fn unpushed(&self) -> Vec<ObjectId> {
        self.lock().own.clone()
    }

    /// Makes sure `path` (absolute, inside the root, or relative to it) is on disk: a file
    /// is written, a directory is written with everything below it, a path that does not
    /// exist in the tree gets its parent directories. Paths outside the root are ignored.
    pub fn materialize(&self, path: &Path) -> std::io::Result<()> {
        let rel = if path.is_absolute() {
            match path.strip_prefix(&self.root) {
                Ok(r) => r.to_path_buf(),
                Err(_) => return Ok(()),
            }
        } else {
            path.to_path_buf()
        };
        let rel = rel
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("/");
        self.materialize_rel(&rel)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Writes the whole tree.
    pub fn materialize_all(&self) -> Result<()> {
        self.materialize_rel("")
    }

    fn materialize_rel(&self, rel: &str) -> Result<()> {
        let mut st = self.lock();
        if st.cleared || covered(&st.dirs, rel) || st.files.contains_key(rel) {
            return Ok(());
        }
        let repo = self.mirror.open()?;
        let op = "materialize";
        let repo = if self
            .mirror
            .ensure_trees(&repo, st.head_tree, &[rel], true)?
        {
            self.mirror.open()?
        } else {
            repo
        };
        let tree = repo
            .find_tree(st.head_tree)
            .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
        let entry = if rel.is_empty() {
            None
        } else {
            tree.lookup_entry_by_path(rel)
                .map_err(|e| gerr(GitErrorKind::Other, op, e))?
        };
        match entry {
            None if rel.is_empty() => {
                let head = st.head_tree;
                let repo = if self
                    .mirror
                    .ensure_for_materialize(&repo, head, "", Some(head))?
                {
                    self.mirror.open()?
                } else {
                    repo.clone()
                };
                write_tree(&repo, st.head_tree, &self.root, "", &mut st)?;
                st.dirs.insert(String::new());
            }
            None => {
                // Not in the tree: make its parent directories so it can be created.
                if let Some(parent) = Path::new(rel).parent() {
                    create_dirs(&self.root.join(parent))
                        .map_err(|e| GitError::io("create directories", &e))?;
                }
            }
            Some(e) if e.mode().is_tree() => {
                let repo = if self.mirror.ensure_for_materialize(
                    &repo,
                    st.head_tree,
                    rel,
                    Some(e.object_id()),
                )? {
                    self.mirror.open()?
                } else {
                    repo.clone()
                };
                write_tree(&repo, e.object_id(), &self.root.join(rel), rel, &mut st)?;
                st.dirs.insert(rel.to_owned());
            }
            Some(e) => {
                let kind = e.mode().kind();
                let repo = if self
                    .mirror
                    .ensure_for_materialize(&repo, st.head_tree, rel, None)?
                {
                    self.mirror.open()?
                } else {
                    repo.clone()
                };
                write_file(&repo, e.object_id(), kind, &self.root, rel, &mut st)?;
            }
        }
        Ok(())
    }

    /// Deletes everything in the work tree (Kargo's `git-clear`): the next commit starts
    /// from an empty tree plus whatever is written afterwards.
    pub fn clear(&self) -> Result<()> {
        let mut st = self.lock();
        #[cfg(unix)]
        nofollow::clear_dir(&self.root).map_err(|e| GitError::io("clear", &e))?;
        #[cfg(not(unix))]
        for entry in fs::read_dir(&self.root).map_err(|e| GitError::io("clear", &e))? {
            let entry = entry.map_err(|e| GitError::io("clear", &e))?;
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| GitError::io("clear", &e))?;
            if ft.is_dir() {
                fs::remove_dir_all(&p).map_err(|e| GitError::io("clear", &e))?;
            } else {
                fs::remove_file(&p).map_err(|e| GitError::io("clear", &e))?;
            }
        }
        st.files.clear();
        st.dirs.clear();
        st.cleared = true;
        Ok(())
    }

    /// The changes on disk relative to the current commit (`git status`).
    pub fn status(&self) -> Result<Vec<Change>> {
        let st = self.lock();
        let (changes, _) = self.scan(&st, false)?;
        Ok(changes.into_iter().map(|(c, _)| c).collect())
    }

    /// A unified diff of the changes on disk against the current commit.
    pub fn diff(&self) -> Result<String> {
        let st = self.lock();
        let (changes, _) = self.scan(&st, false)?;
        let repo = self.mirror.open()?;
        let mut out = String::new();
        for (c, _) in changes {
            let old = if st.cleared {
                None
            } else {
                crate::mirror::read_blob_at(&self.mirror, &repo, st.head_tree, &c.path)
                    .ok()
                    .flatten()
            };
            let new = if c.kind == ChangeKind::Deleted {
                None
            } else {
                fs::read(self.root.join(&c.path)).ok()
            };
            out.push_str(&format!("diff --git a/{0} b/{0}\n", c.path));
            out.push_str(&crate::diff::unified(
                &c.path,
                old.as_deref(),
                new.as_deref(),
            ));
        }
        Ok(out)
    }

    /// Compares the disk with the head tree. With `write`, new content is stored as blobs.
    /// Returns the changes and, per changed path, the new entry (`None` for deletions).
    #[allow(clippy::type_complexity)]
    fn scan(
        &self,
        st: &State,
        write: bool,
    ) -> Result<(
        Vec<(
            Change,
            Option<(ObjectId, EntryKind, u64, Option<SystemTime>)>,
        )>,
        (),
    )> {
        let repo = self.mirror.open()?;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut changes = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(GitError::io("scan work tree", &e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| GitError::io("scan work tree", &e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let meta = entry
                    .metadata()
                    .map_err(|e| GitError::io("scan work tree", &e))?;
                let ft = entry
                    .file_type()
                    .map_err(|e| GitError::io("scan work tree", &e))?;
                if ft.is_dir() {
                    if name == ".git" {
                        continue;
                    }
                    stack.push((entry.path(), path));
                    continue;
                }
                seen.insert(path.clone());
                let kind = if ft.is_symlink() {
                    EntryKind::Link
                } else if is_executable(&meta) {
                    EntryKind::BlobExecutable
                } else {
                    EntryKind::Blob
                };
                let mtime = meta.modified().ok();
                let size = meta.len();
                if st
                    .files
                    .get(&path)
                    .is_some_and(|prev| prev.unchanged(kind, size, mtime))
                {
                    continue;
                }
                let bytes = if ft.is_symlink() {
                    fs::read_link(entry.path())
                        .map_err(|e| GitError::io("read link", &e))?
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes()
                } else {
                    fs::read(entry.path()).map_err(|e| GitError::io(format!("read {path}"), &e))?
                };
                let id = if write {
                    repo.write_blob(&bytes)
                        .map_err(|e| gerr(GitErrorKind::Io, "write blob", e))?
                        .detach()
                } else {
                    gix::objs::compute_hash(repo.object_hash(), gix::objs::Kind::Blob, &bytes)
                        .map_err(|e| gerr(GitErrorKind::Other, "hash", e))?
                };
                let base = match st.files.get(&path) {
                    Some(f) => Some((f.id, f.kind)),
                    None if st.cleared => None,
                    None => base_entry(&repo, st.head_tree, &path)?,
                };
                match base {
                    Some((bid, bkind)) if bid == id && bkind == kind => {}
                    Some(_) => changes.push((
                        Change {
                            path,
                            kind: ChangeKind::Modified,
                        },
                        Some((id, kind, size, mtime)),
                    )),
                    None => changes.push((
                        Change {
                            path,
                            kind: ChangeKind::Added,
                        },
                        Some((id, kind, size, mtime)),
                    )),
                }
            }
        }
        for path in st.files.keys() {
            if !seen.contains(path) {
                changes.push((
                    Change {
                        path: path.clone(),
                        kind: ChangeKind::Deleted,
                    },
                    None,
                ));
            }
        }
        // Files of fully materialised directories that vanished together with their
        // directory are covered by `files`; directories never written need no check.
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((changes, ()))
    }

    /// Commits everything that changed on disk (`git add -A && git commit`). Reports
    /// "nothing to commit" as [`CommitOutcome::NothingToCommit`].
    pub fn commit(
        &self,
        message: &str,
        author: &Signature,
        committer: &Signature,
    ) -> Result<CommitOutcome> {
        let mut st = self.lock();
        let (changes, _) = self.scan(&st, true)?;
        if changes.is_empty()
            && !(st.cleared && st.head.is_some() && st.head_tree != empty(&self.mirror)?)
        {
            return Ok(CommitOutcome::NothingToCommit { head: st.head });
        }
        let repo = self.mirror.open()?;
        let base = if st.cleared {
            ObjectId::empty_tree(repo.object_hash())
        } else {
            st.head_tree
        };
        let paths: Vec<String> = changes.iter().map(|(c, _)| c.path.clone()).collect();
        let tree = if self.mirror.is_treeless() {
            // The directories along the changed paths; the ones next to them stay on the
            // remote, named by the new trees all the same.
            let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            let repo = if self.mirror.ensure_trees(&repo, base, &path_refs, false)? {
                self.mirror.open()?
            } else {
                repo
            };
            let edits: Vec<crate::treeless::TreeEdit<'_>> = changes
                .iter()
                .map(|(c, entry)| (c.path.as_str(), entry.as_ref().map(|e| (e.1, e.0))))
                .collect();
            crate::treeless::write_edited_tree(&repo, base, &edits, "commit")?
        } else {
            // A blobless mirror: gix writes a tree only when it holds every file it names.
            let repo = if self.mirror.ensure_siblings(&repo, &[base], &paths)? {
                self.mirror.open()?
            } else {
                repo
            };
            let mut editor = repo
                .edit_tree(base)
                .map_err(|e| gerr(GitErrorKind::Other, "commit", e))?;
            for (c, entry) in &changes {
                match entry {
                    Some((id, kind, _, _)) => {
                        editor
                            .upsert(c.path.as_str(), *kind, *id)
                            .map_err(|e| gerr(GitErrorKind::Invalid, "commit", e))?;
                    }
                    None => {
                        editor
                            .remove(c.path.as_str())
                            .map_err(|e| gerr(GitErrorKind::Invalid, "commit", e))?;
                    }
                }
            }
            editor
                .write()
                .map_err(|e| gerr(GitErrorKind::Io, "write tree", e))?
                .detach()
        };
        let repo = self.mirror.open()?;
        if tree == st.head_tree && st.head.is_some() {
            return Ok(CommitOutcome::NothingToCommit { head: st.head });
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
                st.head,
            )
            .map_err(|e| gerr(GitErrorKind::Io, "write commit", e))?
            .id;
        for (c, entry) in changes {
            match entry {
                Some((id, kind, size, mtime)) => {
                    st.files.insert(
                        c.path,
                        FileState {
                            id,
                            kind,
                            size,
                            mtime,
                            recorded: SystemTime::now(),
                        },
                    );
                }
                None => {
                    st.files.remove(&c.path);
                }
            }
        }
        st.head = Some(commit);
        st.head_tree = tree;
        st.own.push(commit);
        if st.cleared {
            // Everything now on disk is tracked; the tree is what was written.
            st.cleared = false;
            st.dirs.insert(String::new());
        }
        Ok(CommitOutcome::Committed { commit })
    }

    /// Tags the current commit in the mirror (annotated when `message` is given).
    pub fn tag(
        &self,
        name: &str,
        message: Option<&str>,
        tagger: &Signature,
        force: bool,
    ) -> Result<ObjectId> {
        let head = self.head().ok_or_else(|| {
            GitError::new(
                GitErrorKind::Invalid,
                format!("tag {name}"),
                "there is no commit to tag",
            )
        })?;
        self.mirror.tag(name, head, message, tagger, force)
    }

    /// Pushes a tag created with [`Checkout::tag`].
    pub fn push_tag(&self, name: &str, force: bool) -> Result<()> {
        match self
            .mirror
            .push_raw(&[format!("refs/tags/{name}:refs/tags/{name}")], force)?
        {
            PushResult::Ok => Ok(()),
            PushResult::Rejected(why) => Err(GitError::new(
                GitErrorKind::Conflict,
                format!("push tag {name}"),
                format!("the tag exists on the remote with another target ({why})"),
            )),
        }
    }

    /// Pushes the current commit to `branch` (default: the checked-out branch).
    ///
    /// Checkouts of one mirror pushing to one branch at once share pushes: each one's
    /// commits are rebased onto the commits already waiting (one commit per checkout,
    /// in a chain) and one push carries the chain. A rejected push fetches the branch,
    /// rebases this checkout's commits onto the new tip (a three-way merge per commit;
    /// overlapping edits are a [`GitErrorKind::Conflict`] naming the files), updates the
    /// files on disk, and retries, with backoff from the second rejection, up to
    /// `max_attempts` (default: the configured 10). `force` overwrites the remote branch.
    pub fn push(
        &self,
        branch: Option<&str>,
        force: bool,
        max_attempts: Option<u32>,
    ) -> Result<crate::PushOutcome> {
        let branch = match branch.map(str::to_owned).or_else(|| self.branch()) {
            Some(b) => b,
            None => {
                return Err(GitError::new(
                    GitErrorKind::Invalid,
                    "push",
                    "the checkout is not on a branch: name a target branch",
                ));
            }
        };
        let max = max_attempts
            .unwrap_or(self.mirror.git.config.max_push_attempts)
            .max(1);
        let op = format!("push {} {branch}", self.mirror.display_url());
        if force {
            self.force_push(branch, max, &op)
        } else {
            self.push_in_group(branch, max, &op)
        }
    }

    /// Overwrites the remote branch with this checkout's head (no chain, no rebase).
    fn force_push(&self, branch: String, max: u32, op: &str) -> Result<crate::PushOutcome> {
        let lock = branch_lock(&self.mirror, &branch);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for attempt in 1..=max {
            self.mirror.git.check_interrupted(op)?;
            let head = self.head_to_push(op)?;
            match self
                .mirror
                .push_raw(&[format!("{head}:refs/heads/{branch}")], true)?
            {
                PushResult::Ok => {
                    self.landed(&branch, head)?;
                    return Ok(crate::PushOutcome {
                        branch,
                        commit: head,
                        attempts: attempt,
                        unchanged: false,
                        batch: 1,
                    });
                }
                PushResult::Rejected(why) => {
                    tracing::info!(attempt, reason = %why, "forced push rejected");
                    if attempt < max {
                        self.mirror
                            .git
                            .sleep(backoff(&self.mirror, attempt - 1), op)?;
                    }
                }
            }
        }
        Err(GitError::new(
            GitErrorKind::NonFastForward,
            op,
            format!("the forced push was rejected {max} times"),
        ))
    }

    /// The commit to push.
    fn head_to_push(&self, op: &str) -> Result<ObjectId> {
        self.head()
            .ok_or_else(|| GitError::new(GitErrorKind::Invalid, op, "there is no commit to push"))
    }

    /// After `head` reached the remote's `branch`: the mirror's branch follows, and this
    /// checkout has nothing left to push.
    fn landed(&self, branch: &str, head: ObjectId) -> Result<()> {
        {
            let _l = self.mirror.lock()?;
            self.mirror.set_ref(&format!("refs/heads/{branch}"), head)?;
        }
        let mut st = self.lock();
        st.own.clear();
        st.upstream = Some(head);
        Ok(())
    }

    /// Pushes through this mirror's push group of `branch` ([`crate::push_group`]): this
    /// checkout's commits join the chain of commits waiting to be pushed (rebased onto
    /// it), and one push carries the whole chain. A batch the remote refuses is replayed
    /// on the fetched tip, with backoff from the second refusal on.
    fn push_in_group(&self, branch: String, max: u32, op: &str) -> Result<crate::PushOutcome> {
        let group = push_group(self.mirror.path(), &branch);
        let refname = format!("refs/heads/{branch}");
        let mut joins = 0u32;
        let mut refusals = 0u32;
        loop {
            self.mirror.git.check_interrupted(op)?;
            let mut st = group.lock();
            let base = st
                .chain_tip()
                .or_else(|| self.mirror.resolve(&refname).ok());
            if let Some(base) = base {
                self.catch_up_to(base, &branch, op)?;
            }
            let head = self.head_to_push(op)?;
            if let Some(tip) = st.chain_tip()
                && tip != head
                && !self.mirror.is_ancestor(tip, head).unwrap_or(false)
            {
                // This checkout saw a newer tip than the chain was built on: the chain
                // will be refused and rebuilt; join after that.
                drop(group.wait(st, GROUP_POLL));
                continue;
            }
            joins += 1;
            let ticket = st.join(head);
            let outcome = loop {
                if let Some(o) = st.outcomes.remove(&ticket) {
                    break o;
                }
                if let Some((tip, members)) = st.start_batch() {
                    drop(st);
                    let outcome = self.push_batch(tip, members.len(), &branch, op);
                    st = group.lock();
                    st.finish_batch(members, &outcome);
                    group.notify();
                    continue;
                }
                st = group.wait(st, GROUP_POLL);
            };
            drop(st);
            let tip = match outcome {
                BatchOutcome::Landed { tip, size } => {
                    tracing::debug!(%head, %tip, batch = size, "pushed");
                    let mut s = self.lock();
                    s.own.clear();
                    s.upstream = Some(head);
                    return Ok(crate::PushOutcome {
                        branch,
                        commit: head,
                        attempts: joins,
                        unchanged: false,
                        batch: size,
                    });
                }
                BatchOutcome::Failed(e) => return Err(e),
                BatchOutcome::Refused { reason, tip } => {
                    refusals += 1;
                    tracing::info!(attempt = joins, %reason, "push rejected; rebasing onto the new tip");
                    tip
                }
                BatchOutcome::Rebuild { tip } => tip,
            };
            if joins >= max {
                return Err(GitError::new(
                    GitErrorKind::NonFastForward,
                    op,
                    format!("the push was rejected {joins} times; the branch keeps moving"),
                ));
            }
            // The first refusal only says the branch moved: rebase at once. Later ones
            // mean others keep pushing: back off between tries.
            if refusals > 1 {
                self.mirror
                    .git
                    .sleep(backoff(&self.mirror, refusals - 2), op)?;
            }
            let tip = match tip {
                Some(t) => Some(t),
                None => self.fetch_tip(&branch)?,
            };
            if let Some(tip) = tip {
                self.integrate(tip, &branch, op)?;
            }
        }
    }

    /// Pushes `tip`, the newest commit of a batch of `size` checkouts' commits, and says
    /// what became of it (after a refusal, with the branch's fetched tip).
    fn push_batch(&self, tip: ObjectId, size: usize, branch: &str, op: &str) -> BatchOutcome {
        let lock = branch_lock(&self.mirror, branch);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tracing::debug!(%tip, batch = size, "pushing a batch");
        if let Err(e) = self.mirror.git.check_interrupted(op) {
            return BatchOutcome::Failed(e);
        }
        match self
            .mirror
            .push_raw(&[format!("{tip}:refs/heads/{branch}")], false)
        {
            Ok(PushResult::Ok) => {
                let set = {
                    let _l = self.mirror.lock();
                    self.mirror.set_ref(&format!("refs/heads/{branch}"), tip)
                };
                if let Err(e) = set {
                    tracing::warn!(error = %e, "the mirror's branch did not follow the push");
                }
                BatchOutcome::Landed { tip, size }
            }
            Ok(PushResult::Rejected(reason)) => BatchOutcome::Refused {
                reason,
                tip: self.fetch_tip(branch).ok().flatten(),
            },
            Err(e) => BatchOutcome::Failed(e),
        }
    }

    /// Fetches `branch` and returns its tip (`None` when the remote has no such branch).
    fn fetch_tip(&self, branch: &str) -> Result<Option<ObjectId>> {
        let mut spec = FetchSpec::branch(branch.to_owned());
        spec.depth = self.mirror.git.config.depth;
        let fetched = self.mirror.fetch(&spec)?;
        Ok(fetched.get(&format!("refs/heads/{branch}")).copied())
    }

    /// When `local` (the chain of commits waiting to be pushed, or the mirror's branch
    /// that another push of this process moved forward) descends from this checkout's
    /// base, rebases (or merges, per the policy) onto it before pushing: no rejected
    /// push, no wait.
    fn catch_up_to(&self, local: ObjectId, branch: &str, op: &str) -> Result<()> {
        let Some(base) = self.lock().upstream else {
            return Ok(());
        };
        if local == base || !self.mirror.is_ancestor(base, local).unwrap_or(false) {
            return Ok(());
        }
        if self
            .head()
            .is_some_and(|h| h == local || self.mirror.is_ancestor(local, h).unwrap_or(false))
        {
            return Ok(());
        }
        tracing::debug!(%base, %local, "the branch moved in this process since the checkout; rebasing before pushing");
        self.integrate(local, branch, op)
    }

    /// Brings the remote's new commits on `branch` into this checkout before a push made
    /// by other means than `git push` (`github-push`): fetches the branch and, when its tip
    /// is not already part of this checkout's history, integrates it per the configured
    /// push integration policy (rebase, merge or fail; overlapping edits are a
    /// [`GitErrorKind::Conflict`]). Returns whether anything was integrated (`false` also
    /// when the branch does not exist on the remote).
    pub fn integrate_remote_changes(&self, branch: &str) -> Result<bool> {
        let op = format!("integrate {} {branch}", self.mirror.display_url());
        let Some(head) = self.head() else {
            return Err(GitError::new(
                GitErrorKind::Invalid,
                op,
                "there is no commit to push",
            ));
        };
        let mut spec = FetchSpec::branch(branch.to_owned());
        spec.depth = self.mirror.git.config.depth;
        let fetched = match self.mirror.fetch(&spec) {
            Ok(f) => f,
            Err(e) if e.kind == GitErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(tip) = fetched.get(&format!("refs/heads/{branch}")).copied() else {
            return Ok(false);
        };
        if tip == head || Some(tip) == self.upstream() && self.unpushed().is_empty() {
            return Ok(false);
        }
        let repo = self.mirror.open()?;
        let contained = repo
            .merge_base(head, tip)
            .ok()
            .flatten()
            .is_some_and(|b| b.detach() == tip);
        if contained {
            return Ok(false);
        }
        self.integrate(tip, branch, &op)?;
        Ok(true)
    }

    /// Force-pushes this checkout's head to `refname` (a full ref name such as
    /// `refs/kargo/staging/<promotion>`) with the git binary, so the remote has every
    /// object of it; returns the head.
    pub fn push_head_to_ref(&self, refname: &str) -> Result<ObjectId> {
        let op = format!("push {} {refname}", self.mirror.display_url());
        let Some(head) = self.head() else {
            return Err(GitError::new(
                GitErrorKind::Invalid,
                op,
                "there is no commit to push",
            ));
        };
        match self.mirror.push_raw(&[format!("{head}:{refname}")], true)? {
            PushResult::Ok => Ok(head),
            PushResult::Rejected(why) => Err(GitError::new(
                GitErrorKind::Conflict,
                op,
                format!("the remote refused the push ({why})"),
            )),
        }
    }

    /// Makes `branch`'s tip on the remote this checkout's head, dropping this checkout's
    /// unpushed commits (after they were replayed on the remote under new IDs, as
    /// `github-push` does) and bringing the files on disk along; returns the tip.
    pub fn reset_to_remote(&self, branch: &str) -> Result<ObjectId> {
        let op = format!("sync {} {branch}", self.mirror.display_url());
        let mut spec = FetchSpec::branch(branch.to_owned());
        spec.depth = self.mirror.git.config.depth;
        let fetched = self.mirror.fetch(&spec)?;
        let tip = fetched
            .get(&format!("refs/heads/{branch}"))
            .copied()
            .ok_or_else(|| {
                GitError::new(
                    GitErrorKind::NotFound,
                    &op,
                    format!("branch {branch:?} does not exist"),
                )
            })?;
        self.mirror.complete_trees()?;
        let repo = self.mirror.open()?;
        let tree = commit_tree(&repo, tip)?;
        let mut st = self.lock();
        self.sync_files(&repo, tree, &mut st)?;
        st.upstream = Some(tip);
        st.head = Some(tip);
        st.head_tree = tree;
        st.own.clear();
        Ok(tip)
    }

    /// Integrates the remote's new tip per the configured push integration policy
    /// ([`PushIntegrationPolicy`](crate::PushIntegrationPolicy)): rebase, merge, or fail
    /// without pushing.
    fn integrate(&self, tip: ObjectId, branch: &str, op: &str) -> Result<()> {
        // Rebases and merges read whole trees.
        self.mirror.complete_trees()?;
        let policy = self.mirror.git.config.push_integration_policy;
        let safe = self.rebase_is_safe()?;
        match policy.decide(safe) {
            crate::Integration::Rebase => self.rebase_onto(tip),
            crate::Integration::Merge => {
                tracing::info!(%policy, rebase_is_safe = safe, "merging the remote's changes");
                self.merge_with(tip, branch)
            }
            crate::Integration::Fail => Err(GitError::new(
                GitErrorKind::Conflict,
                op,
                format!(
                    "the remote branch moved and rebasing this checkout's commits is not safe \
                     (a commit to replay is signed, or is a merge); the push integration policy \
                     {policy} does not merge, so nothing was pushed"
                ),
            )),
        }
    }

    /// Kargo's rebase-safety check without a signing key: every commit to replay is
    /// unsigned (no `gpgsig` header) and has one parent.
    fn rebase_is_safe(&self) -> Result<bool> {
        let own = self.lock().own.clone();
        if own.is_empty() {
            return Ok(true);
        }
        let repo = self.mirror.open()?;
        for c in own {
            let commit = repo
                .find_commit(c)
                .map_err(|e| gerr(GitErrorKind::Other, "rebase check", e))?;
            if commit.parent_ids().count() > 1 {
                return Ok(false);
            }
            let head_end = commit
                .data
                .windows(2)
                .position(|w| w == b"\n\n")
                .unwrap_or(commit.data.len());
            let signed = commit.data[..head_end]
                .split(|b| *b == b'\n')
                .any(|line| line.starts_with(b"gpgsig"));
            if signed {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes a merge commit of this checkout's head (first parent) and `tip` (second
    /// parent), with the head's committer as author and committer (current time), and
    /// brings the files on disk along. Overlapping edits are a [`GitErrorKind::Conflict`]
    /// naming the files.
    fn merge_with(&self, tip: ObjectId, branch: &str) -> Result<()> {
        let mut st = self.lock();
        let repo = self.mirror.open()?;
        let op = "merge";
        let Some(head) = st.head else {
            return Err(GitError::new(
                GitErrorKind::Invalid,
                op,
                "there is no commit to merge",
            ));
        };
        let base = repo
            .merge_base(head, tip)
            .map_err(|e| gerr(GitErrorKind::Other, op, e))?
            .map(|id| id.detach())
            .ok_or_else(|| {
                GitError::new(
                    GitErrorKind::Conflict,
                    format!("merge {tip}"),
                    "the remote branch shares no history with this checkout",
                )
            })?;
        let base_tree = commit_tree(&repo, base)?;
        let ours = commit_tree(&repo, head)?;
        let theirs = commit_tree(&repo, tip)?;
        let tree =
            merge_trees_or_conflict(&repo, base_tree, ours, theirs, &format!("merge {tip}"), op)?;
        let head_commit = repo
            .find_commit(head)
            .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
        let decoded = head_commit
            .decode()
            .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
        let committer = decoded
            .committer()
            .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
        let identity = crate::Signature::new(
            committer.name.to_str_lossy().into_owned(),
            committer.email.to_str_lossy().into_owned(),
        )
        .to_gix();
        let message = format!("Merge branch '{branch}' of {}\n", self.mirror.display_url());
        let mut time_buf = gix::date::parse::TimeBuf::default();
        let sig = identity.to_ref(&mut time_buf);
        let merge = repo
            .new_commit_as(sig, sig, message, tree, [head, tip])
            .map_err(|e| gerr(GitErrorKind::Io, op, e))?
            .id;
        self.sync_files(&repo, tree, &mut st)?;
        st.upstream = Some(tip);
        st.head = Some(merge);
        st.head_tree = tree;
        st.own.push(merge);
        Ok(())
    }

    /// Replays this checkout's own commits on `tip` and brings the files on disk along.
    fn rebase_onto(&self, tip: ObjectId) -> Result<()> {
        let mut st = self.lock();
        let repo = self.mirror.open()?;
        let op = "rebase";
        let old_head_tree = st.head_tree;
        let mut new_head = tip;
        let mut new_tree = commit_tree(&repo, tip)?;
        for &c in &st.own.clone() {
            let commit = repo
                .find_commit(c)
                .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
            let parent_tree = match commit.parent_ids().next() {
                Some(p) => commit_tree(&repo, p.detach())?,
                None => ObjectId::empty_tree(repo.object_hash()),
            };
            let ours = commit_tree(&repo, c)?;
            let tree = match crate::replay::replay_disjoint(&repo, parent_tree, ours, new_tree)? {
                Some(tree) => tree,
                None => merge_trees_or_conflict(
                    &repo,
                    parent_tree,
                    new_tree,
                    ours,
                    &format!("rebase onto {tip}"),
                    op,
                )?,
            };
            let decoded = commit
                .decode()
                .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
            let author = decoded
                .author()
                .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
            let committer = decoded
                .committer()
                .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
            let message = decoded.message.to_str_lossy().into_owned();
            new_head = repo
                .new_commit_as(committer, author, message, tree, Some(new_head))
                .map_err(|e| gerr(GitErrorKind::Io, op, e))?
                .id;
            new_tree = tree;
        }
        self.sync_files(&repo, new_tree, &mut st)?;
        let _ = old_head_tree;
        st.upstream = Some(tip);
        st.head = Some(new_head);
        st.head_tree = new_tree;
        let n = st.own.len();
        st.own = Vec::with_capacity(n);
        // The rebased commits are reachable from the new head; only the newest is needed
        // for the next push, but keep them all for a further rebase.
        let mut walk = Some(new_head);
        let mut chain = Vec::new();
        for _ in 0..n {
            let Some(c) = walk else { break };
            chain.push(c);
            walk = repo
                .find_commit(c)
                .ok()
                .and_then(|cm| cm.parent_ids().next().map(|p| p.detach()));
        }
        chain.reverse();
        st.own = chain;
        Ok(())
    }

    /// Brings the materialised files and fully materialised directories up to date with
    /// `new_tree` (after a rebase or a merge).
    fn sync_files(&self, repo: &gix::Repository, new_tree: ObjectId, st: &mut State) -> Result<()> {
        let op = "update files";
        let paths: Vec<String> = st.files.keys().cloned().collect();
        for path in paths {
            match base_entry(repo, new_tree, &path)? {
                Some((id, kind)) => {
                    if st.files.get(&path).map(|f| f.id) != Some(id) {
                        write_file(repo, id, kind, &self.root, &path, st)?;
                    }
                }
                None => {
                    let _ = remove_file(&self.root.join(&path));
                    st.files.remove(&path);
                }
            }
        }
        // New files the remote added inside fully materialised directories.
        let dirs: Vec<String> = st.dirs.iter().cloned().collect();
        for d in dirs {
            let entry = if d.is_empty() {
                Some(new_tree)
            } else {
                let tree = repo
                    .find_tree(new_tree)
                    .map_err(|e| gerr(GitErrorKind::Other, op, e))?;
                tree.lookup_entry_by_path(&d)
                    .map_err(|e| gerr(GitErrorKind::Other, op, e))?
                    .filter(|e| e.mode().is_tree())
                    .map(|e| e.object_id())
            };
            if let Some(t) = entry {
                write_tree(repo, t, &self.root.join(&d), &d, st)?;
            }
        }
        Ok(())
    }

    /// The files written to disk so far (for tests and diagnostics).
    pub fn materialized_files(&self) -> BTreeMap<String, ObjectId> {
        self.lock()
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.id))
            .collect()
    }
}

fn empty(mirror: &Mirror) -> Result<ObjectId> {
    Ok(ObjectId::empty_tree(mirror.open()?.object_hash()))
}

fn covered(dirs: &BTreeSet<String>, rel: &str) -> bool {
    if dirs.contains("") {
        return true;
    }
    let mut p = rel;
    loop {
        if dirs.contains(p) {
            return true;
        }
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => return false,
        }
    }
}

fn base_entry(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
) -> Result<Option<(ObjectId, EntryKind)>> {
    let t = repo
        .find_tree(tree)
        .map_err(|e| gerr(GitErrorKind::Other, "read tree", e))?;
    Ok(t.lookup_entry_by_path(path)
        .map_err(|e| gerr(GitErrorKind::Other, "read tree", e))?
        .filter(|e| !e.mode().is_tree())
        .map(|e| (e.object_id(), e.mode().kind())))
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

fn write_file(
    repo: &gix::Repository,
    id: ObjectId,
    kind: EntryKind,
    root: &Path,
    rel: &str,
    st: &mut State,
) -> Result<()> {
    let path = root.join(rel);
    let obj = repo
        .find_object(id)
        .map_err(|e| gerr(GitErrorKind::Other, "read blob", e))?;
    let content = match kind {
        EntryKind::Commit => return Ok(()), // submodules are not checked out
        EntryKind::Link => Entry::Link(&obj.data),
        EntryKind::BlobExecutable => Entry::File {
            data: &obj.data,
            executable: true,
        },
        _ => Entry::File {
            data: &obj.data,
            executable: false,
        },
    };
    write_entry(&path, content).map_err(|e| GitError::io(format!("write {rel}"), &e))?;
    let meta = fs::symlink_metadata(&path).map_err(|e| GitError::io(format!("stat {rel}"), &e))?;
    st.files.insert(
        rel.to_owned(),
        FileState {
            id,
            kind,
            size: meta.len(),
            mtime: meta.modified().ok(),
            recorded: SystemTime::now(),
        },
    );
    Ok(())
}

fn write_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    dir: &Path,
    rel: &str,
    st: &mut State,
) -> Result<()> {
    create_dirs(dir).map_err(|e| GitError::io("create directories", &e))?;
    let t = repo
        .find_tree(tree)
        .map_err(|e| gerr(GitErrorKind::Other, "read tree", e))?;
    let entries: Vec<(String, ObjectId, gix::objs::tree::EntryMode)> = t
        .iter()
        .map(|e| {
            e.map(|e| {
                (
                    e.filename().to_str_lossy().into_owned(),
                    e.object_id(),
                    e.mode(),
                )
            })
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| gerr(GitErrorKind::Other, "read tree", e))?;
    for (name, id, mode) in entries {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.eq_ignore_ascii_case(".git")
            || name.contains('/')
            || name.contains('\\')
            || name.contains('\0')
        {
            return Err(GitError::new(
                GitErrorKind::Invalid,
                "materialize",
                format!("the tree holds an unsafe entry name {name:?} under {rel:?}"),
            ));
        }
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if mode.is_tree() {
            write_tree(repo, id, &dir.join(&name), &child, st)?;
        } else if !st.files.contains_key(&child) {
            let root = dir
                .ancestors()
                .nth(rel.split('/').filter(|s| !s.is_empty()).count())
                .unwrap_or(dir);
            write_file(repo, id, mode.kind(), root, &child, st)?;
        }
    }
    Ok(())
}

/// What [`write_entry`] puts on disk.
enum Entry<'a> {
    /// A regular file.
    File { data: &'a [u8], executable: bool },
    /// A symbolic link with this target (a plain file where there are no links).
    Link(&'a [u8]),
}

/// Creates `dir` and its missing parents (on Unix without following links on the way).
fn create_dirs(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        nofollow::open_dir(dir, Some(0o777)).map(drop)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// Removes the file or link `path` (on Unix relative to its non-followed parent).
fn remove_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        nofollow::remove_file(path)
    }
    #[cfg(not(unix))]
    {
        fs::remove_file(path)
    }
}

/// Replaces whatever file or link is at `path` with `entry`, creating missing parent
/// directories. On Unix the parent is opened without following links and the entry is
/// created relative to it (`O_EXCL|O_NOFOLLOW`), so a directory swapped for a link while
/// the work tree is written cannot redirect the write.
fn write_entry(path: &Path, entry: Entry<'_>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        write_entry_nofollow(path, entry)
    }
    #[cfg(not(unix))]
    {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let _ = fs::remove_file(path);
        match entry {
            Entry::File { data, .. } | Entry::Link(data) => fs::write(path, data),
        }
    }
}

/// See [`write_entry`]: the parent is opened (and created) without following links, the
/// old entry unlinked, the new one created relative to the parent's handle.
#[cfg(unix)]
fn write_entry_nofollow(path: &Path, entry: Entry<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let (dir, name) = nofollow::split(path)?;
    let fd = nofollow::open_dir(dir, Some(0o777))?;
    nofollow::unlink(&fd, name)?;
    match entry {
        Entry::Link(target) => nofollow::symlink(&fd, std::ffi::OsStr::from_bytes(target), name),
        Entry::File { data, executable } => {
            let mut file = nofollow::create_new(&fd, name, 0o666)?;
            file.write_all(data)?;
            if executable {
                use std::os::unix::fs::PermissionsExt as _;
                file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "checkout_integration_tests.rs"]
mod integration_tests;
