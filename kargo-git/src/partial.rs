//! Blobless mirrors (`git clone --filter=blob:none`): a new mirror's first fetch asks the
//! server for commits and trees only, and the blobs a checkout or an edit reads are
//! fetched when they are read, in one request per read (a materialised directory is one
//! request, whatever the number of files in it).
//!
//! gix 0.90 cannot ask for a filter: its fetch sends no `filter` argument (gix-protocol's
//! `Arguments::filter` exists, but `gix::remote::Connection`'s fetch offers no way to
//! reach it), it cannot fetch objects by ID, and its pack resolution cannot complete a thin
//! pack whose delta base is a blob the mirror never received. So a blobless mirror is
//! fetched into with the git binary, like pushes: the mirror is a promisor repository
//! (`remote.origin.promisor`), which lets git fetch a missing delta base by itself. Every
//! later fetch into a blobless mirror goes through the git binary as well (without a
//! filter, so new commits come with their blobs); the check whether anything moved stays
//! in gix. Without a usable git binary (or with credentials in the URL, which must not be
//! written to the mirror's configuration) the mirror is made by gix, with blobs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::process::Stdio;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::auth::redact_url;
use crate::cli;
use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::{FetchSpec, Mirror};

/// The file that marks a blobless mirror (the git configuration says the same to git; this
/// marker is read without re-opening the repository).
const MARKER: &str = "kargo-blobless";

/// What a fetch with the git binary leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Commits and trees (`--filter=blob:none`).
    Blobless,
    /// Commits only (`--filter=tree:0`).
    Treeless,
    /// Everything the new commits reach (`--no-filter`).
    None,
}

/// How a fetch into a blobless mirror treats history.
pub(crate) enum History {
    /// Only `depth` commits of the fetched refs (a new mirror, or refs it lacks).
    Depth(NonZeroU32),
    /// Everything between the new tips and what the mirror holds.
    Connected,
    /// The whole history (`--unshallow`).
    Unshallow,
}

impl Mirror {
    /// Whether this mirror is blobless: it may lack blobs, which [`Mirror::ensure_blobs`]
    /// fetches.
    pub(crate) fn is_blobless(&self) -> bool {
        self.path.join(MARKER).exists()
    }

    /// The first fetch of a new mirror, `depth` commits deep and without blobs, with the
    /// git binary. `Ok(None)`: not possible here (no git binary, credentials in the URL):
    /// the caller fetches with gix instead. With the mirror lock held.
    pub(crate) fn fetch_blobless_new(
        &self,
        spec: &FetchSpec,
        depth: NonZeroU32,
    ) -> Result<Option<BTreeMap<String, ObjectId>>> {
        if redact_url(&self.url) != self.url {
            return Ok(None);
        }
        if !self.is_blobless() {
            self.make_promisor()?;
        }
        // Written before the fetch: a mirror is never treeless without saying so.
        let filter = if self.git.config.treeless {
            self.mark_treeless()?;
            Filter::Treeless
        } else {
            Filter::Blobless
        };
        match self.fetch_cli(spec, History::Depth(depth), filter) {
            Ok(refs) => Ok(Some(refs)),
            Err(e) if e.kind == GitErrorKind::Io => {
                tracing::debug!(error = %e, "no git binary for a blobless fetch; fetching with gix");
                let _ = std::fs::remove_file(self.path.join(MARKER));
                self.unmark_treeless()?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Marks the mirror as a promisor repository of its remote (`origin`, the URL without
    /// credentials: they come from the credential helper of [`cli::command`]).
    fn make_promisor(&self) -> Result<()> {
        let io = |e: std::io::Error| GitError::io("configure a blobless mirror", &e);
        let url = self.url.replace('\\', "\\\\").replace('"', "\\\"");
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path.join("config"))
            .map_err(io)?;
        write!(
            config,
            "[remote \"origin\"]\n\turl = \"{url}\"\n\tpromisor = true\n"
        )
        .map_err(io)?;
        std::fs::write(self.path.join(MARKER), b"").map_err(io)
    }

    /// `git fetch` into the mirror from `origin`, with what `filter` lets through.
    /// Returns the fetched refs and their targets.
    pub(crate) fn fetch_cli(
        &self,
        spec: &FetchSpec,
        history: History,
        filter: Filter,
    ) -> Result<BTreeMap<String, ObjectId>> {
        match self.fetch_cli_once(spec, &history, filter) {
            // git's connectivity check walked into a directory this partial mirror never
            // fetched and no promisor pack names (seen once after a replica was killed
            // mid-promotion): fill in every directory of every commit held, then fetch again.
            Err(e) if lacks_objects(&e.message) && self.is_shallow().unwrap_or(false) => {
                tracing::warn!(url = %self.display_url(), error = %e, "the mirror lacks objects a fetch needed; filling in its directories and fetching again");
                self.fill_all_trees_locked()?;
                self.fetch_cli_once(spec, &history, filter)
            }
            other => other,
        }
    }

    fn fetch_cli_once(
        &self,
        spec: &FetchSpec,
        history: &History,
        filter: Filter,
    ) -> Result<BTreeMap<String, ObjectId>> {
        let op = format!("fetch {}", self.display_url());
        let refspecs = spec.refspecs();
        let auth = self.auth();
        let ssh = cli::SshSetup::new(auth.as_ref())?;
        let mut cmd = cli::command(&self.git, &self.path, auth.as_ref(), ssh.as_ref());
        cmd.args([
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "-c",
            "fetch.writeCommitGraph=false",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--recurse-submodules=no",
        ]);
        match *history {
            History::Depth(d) => {
                cmd.arg(format!("--depth={d}"));
            }
            History::Connected => {}
            History::Unshallow => {
                cmd.arg("--unshallow");
            }
        }
        cmd.arg(match filter {
            Filter::Blobless => "--filter=blob:none",
            Filter::Treeless => "--filter=tree:0",
            Filter::None => "--no-filter",
        });
        cmd.arg("origin").args(&refspecs);
        let before = self.local_refs(spec)?;
        let _span = tracing::debug_span!("git.fetch.cli", url = %self.display_url()).entered();
        let start = std::time::Instant::now();
        let out = cmd
            .output()
            .map_err(|e| GitError::new(GitErrorKind::Io, &op, format!("cannot run git: {e}")))?;
        let stderr = self.scrub(&String::from_utf8_lossy(&out.stderr));
        tracing::debug!(status = ?out.status.code(), elapsed_ms = start.elapsed().as_millis() as u64, stderr = %stderr.trim(), "git fetch");
        if !out.status.success() {
            let message = stderr.trim();
            return Err(GitError::classify(
                op,
                if message.is_empty() {
                    "git fetch failed"
                } else {
                    message
                },
            ));
        }
        self.reopen()?;
        let after = self.local_refs(spec)?;
        // A treeless mirror fills in whole trees before it rebases or merges
        // (`Mirror::complete_trees`), which covers the files next to what moved.
        if !self.is_treeless() {
            self.ensure_siblings_of_moves(&before, &after)?;
        }
        Ok(after)
    }

    /// The mirror's refs that `spec` names, with their targets.
    fn local_refs(&self, spec: &FetchSpec) -> Result<BTreeMap<String, ObjectId>> {
        let repo = self.open()?;
        let other = |e: &dyn std::fmt::Display| {
            GitError::new(GitErrorKind::Other, "read refs", e.to_string())
        };
        let mut out = BTreeMap::new();
        let mut prefixes = Vec::new();
        if spec.all_branches {
            prefixes.push("refs/heads/");
        }
        if spec.all_tags {
            prefixes.push("refs/tags/");
        }
        let mut names: Vec<String> = Vec::new();
        if !spec.all_branches {
            names.extend(spec.branches.iter().map(|b| format!("refs/heads/{b}")));
        }
        if !spec.all_tags {
            names.extend(spec.tags.iter().map(|t| format!("refs/tags/{t}")));
        }
        for name in names {
            if let Some(id) = repo
                .try_find_reference(name.as_str())
                .map_err(|e| other(&e))?
                .and_then(|r| r.target().try_id().map(ToOwned::to_owned))
            {
                out.insert(name, id);
            }
        }
        if !prefixes.is_empty() {
            let platform = repo.references().map_err(|e| other(&e))?;
            for r in platform.all().map_err(|e| other(&e))?.flatten() {
                let name = r.name().as_bstr().to_str_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p))
                    && let Some(id) = r.target().try_id()
                {
                    out.insert(name, id.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Makes sure the mirror holds the blobs `ids`: in a blobless mirror, the missing ones
    /// are fetched from the remote in one request (protocol v2 servers answer a `want` of
    /// any object ID). Nothing happens in a mirror with blobs, where a missing object is
    /// an error for the reader to report. Returns whether it fetched: then `repo` may not
    /// see the new objects; read them through a new [`Mirror::open`].
    pub(crate) fn ensure_blobs(
        &self,
        repo: &gix::Repository,
        ids: impl IntoIterator<Item = ObjectId>,
    ) -> Result<bool> {
        self.fill_blobs(repo, ids, false)
    }

    /// [`Mirror::ensure_blobs`]; `locked`: the caller holds the mirror lock (every writer
    /// of the mirror does: git's fetch rewrites the `shallow` file).
    fn fill_blobs(
        &self,
        repo: &gix::Repository,
        ids: impl IntoIterator<Item = ObjectId>,
        locked: bool,
    ) -> Result<bool> {
        if !self.is_blobless() {
            return Ok(false);
        }
        let mut missing: Vec<ObjectId> =
            ids.into_iter().filter(|id| !repo.has_object(id)).collect();
        if missing.is_empty() {
            return Ok(false);
        }
        let _lock = if locked { None } else { Some(self.lock()?) };
        // Another thread or process may have fetched them while this one waited.
        let current = self.reopen()?;
        missing.retain(|id| !current.has_object(id));
        if missing.is_empty() {
            return Ok(true);
        }
        missing.sort_unstable();
        missing.dedup();
        self.fetch_objects(&missing, "blob:none", "blobs")?;
        Ok(true)
    }

    /// Fetches the objects `ids` from `origin` by ID, in one request, as git does to fill
    /// in a partial clone (promisor-remote.c: no negotiation, `--stdin`): each with what
    /// `filter` lets through of what it reaches (`blob:none`: a tree with every tree below
    /// it; `tree:1`: a tree with the files directly in it; a blob alone). The caller holds
    /// the mirror lock. Fails if one of `ids` did not arrive.
    pub(crate) fn fetch_objects(&self, ids: &[ObjectId], filter: &str, what: &str) -> Result<()> {
        let op = format!("fetch {} {what} from {}", ids.len(), self.display_url());
        let auth = self.auth();
        let ssh = cli::SshSetup::new(auth.as_ref())?;
        let mut cmd = cli::command(&self.git, &self.path, auth.as_ref(), ssh.as_ref());
        cmd.args([
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "fetch",
            "--quiet",
            "origin",
            "--no-tags",
            "--no-write-fetch-head",
            "--recurse-submodules=no",
            &format!("--filter={filter}"),
            "--stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let _span = tracing::debug_span!("git.fetch.objects", url = %self.display_url(), what, count = ids.len()).entered();
        let start = std::time::Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| GitError::new(GitErrorKind::Io, &op, format!("cannot run git: {e}")))?;
        let mut input = String::with_capacity(ids.len() * 41);
        for id in ids {
            input.push_str(&id.to_string());
            input.push('\n');
        }
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| GitError::io(&op, &e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| GitError::io(&op, &e))?;
        let stderr = self.scrub(&String::from_utf8_lossy(&out.stderr));
        tracing::debug!(status = ?out.status.code(), elapsed_ms = start.elapsed().as_millis() as u64, "fetched missing objects");
        if !out.status.success() {
            return Err(GitError::classify(op, stderr.trim().to_owned()));
        }
        let current = self.reopen()?;
        if let Some(id) = ids.iter().find(|id| !current.has_object(*id)) {
            return Err(GitError::new(
                GitErrorKind::NotFound,
                op,
                format!("the remote did not send {id}"),
            ));
        }
        Ok(())
    }

    /// What a checkout needs before it writes `rel` (`""`: everything) of `head_tree` to
    /// disk: the blob of the file, or every blob under the directory (`subtree`), and the
    /// files next to it along its path, which a later commit of a change there rewrites.
    /// One request for all of them.
    pub(crate) fn ensure_for_materialize(
        &self,
        repo: &gix::Repository,
        head_tree: ObjectId,
        rel: &str,
        subtree: Option<ObjectId>,
    ) -> Result<bool> {
        if !self.is_blobless() {
            return Ok(false);
        }
        let mut ids = if rel.is_empty() {
            Vec::new()
        } else {
            sibling_blobs(repo, &[head_tree], &[rel.to_owned()])?
        };
        if let Some(tree) = subtree {
            ids.extend(blobs_under(repo, tree)?);
        }
        self.ensure_blobs(repo, ids)
    }

    /// [`Mirror::ensure_blobs`] for the files next to `paths` in each of `trees`: every
    /// blob entry of every directory along each path (the root included). gix writes a
    /// tree only when every entry it names is in the object database, and a commit or a
    /// merge rewrites exactly these directories.
    pub(crate) fn ensure_siblings(
        &self,
        repo: &gix::Repository,
        trees: &[ObjectId],
        paths: &[String],
    ) -> Result<bool> {
        self.fill_siblings(repo, trees, paths, false)
    }

    fn fill_siblings(
        &self,
        repo: &gix::Repository,
        trees: &[ObjectId],
        paths: &[String],
        locked: bool,
    ) -> Result<bool> {
        if !self.is_blobless() || paths.is_empty() {
            return Ok(false);
        }
        let blobs = sibling_blobs(repo, trees, paths)?;
        self.fill_blobs(repo, blobs, locked)
    }

    /// After a fetch moved refs of a blobless mirror from `before` to their new targets:
    /// the files next to what changed, in the old and the new trees, so that a rebase or
    /// merge onto the new tips can write its trees (see [`Mirror::ensure_siblings`]).
    fn ensure_siblings_of_moves(
        &self,
        before: &BTreeMap<String, ObjectId>,
        after: &BTreeMap<String, ObjectId>,
    ) -> Result<()> {
        let mut repo = self.open()?;
        for (name, new) in after {
            let Some(old) = before.get(name).filter(|old| *old != new) else {
                continue;
            };
            let (Ok(old_tree), Ok(new_tree)) = (
                crate::mirror::commit_tree(&repo, *old),
                crate::mirror::commit_tree(&repo, *new),
            ) else {
                continue; // a tag, or history the mirror does not hold
            };
            let mut paths = Vec::new();
            crate::history::diff_trees(&repo, Some(old_tree), Some(new_tree), "", &mut paths)?;
            // Called by a fetch, which holds the mirror lock.
            if self.fill_siblings(&repo, &[old_tree, new_tree], &paths, true)? {
                repo = self.open()?;
            }
        }
        Ok(())
    }
}

/// Whether a git error says the repository lacks objects it needed (a connectivity
/// check that walked into a missing directory).
fn lacks_objects(message: &str) -> bool {
    [
        "did not send all necessary objects",
        "bad tree object",
        "missing tree object",
        "bad object",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Every blob entry (file or symlink) of every directory along each of `paths` (the root
/// included) in each of `trees`.
fn sibling_blobs(
    repo: &gix::Repository,
    trees: &[ObjectId],
    paths: &[String],
) -> Result<Vec<ObjectId>> {
    let mut dirs: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for p in paths {
        let p = p.trim_matches('/');
        dirs.insert("");
        let mut end = 0;
        while let Some(i) = p[end..].find('/') {
            end += i;
            dirs.insert(&p[..end]);
            end += 1;
        }
    }
    let other =
        |e: &dyn std::fmt::Display| GitError::new(GitErrorKind::Other, "read tree", e.to_string());
    let mut blobs = Vec::new();
    for tree in trees {
        let root = repo.find_tree(*tree).map_err(|e| other(&e))?;
        for dir in &dirs {
            let id = if dir.is_empty() {
                *tree
            } else {
                match root.lookup_entry_by_path(*dir).map_err(|e| other(&e))? {
                    Some(e) if e.mode().is_tree() => e.object_id(),
                    _ => continue,
                }
            };
            let t = repo.find_tree(id).map_err(|e| other(&e))?;
            for e in t.iter() {
                let e = e.map_err(|e| other(&e))?;
                if !e.mode().is_tree() && !e.mode().is_commit() {
                    blobs.push(e.object_id());
                }
            }
        }
    }
    Ok(blobs)
}

/// Every blob under `tree`, in every subdirectory.
fn blobs_under(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<ObjectId>> {
    let other =
        |e: &dyn std::fmt::Display| GitError::new(GitErrorKind::Other, "read tree", e.to_string());
    let mut blobs = Vec::new();
    let mut trees = vec![tree];
    while let Some(t) = trees.pop() {
        let t = repo.find_tree(t).map_err(|e| other(&e))?;
        for e in t.iter() {
            let e = e.map_err(|e| other(&e))?;
            if e.mode().is_tree() {
                trees.push(e.object_id());
            } else if !e.mode().is_commit() {
                blobs.push(e.object_id());
            }
        }
    }
    Ok(blobs)
}
