//! Treeless mirrors (`git clone --filter=tree:0`): a new mirror's first fetch asks the
//! server for the commits only. A promotion's checkout reads and commits along a few
//! paths, so it fetches the directories along those paths, one request per directory
//! level, each directory with the files directly in it (`--filter=tree:1`): for a file
//! five directories deep in a repository of 80,000 files, five small requests instead of
//! a pack of every directory of the tip.
//!
//! Everything that needs whole trees (history reads, merges, rebases, a whole checkout,
//! reads at a revision) first makes the mirror an ordinary blobless one
//! ([`Mirror::complete_trees`]): every directory below every commit it holds is fetched,
//! in one request, and the mirror's treeless marker goes. Later fetches bring every tree
//! of the new commits (`--no-filter`), so a mirror once complete stays complete.
//!
//! gix writes a tree only when it holds every object the tree names; a commit in a
//! treeless mirror names directories the mirror never fetched, so its trees are written
//! with [`write_edited_tree`], which checks names but not presence (git's `mktree
//! --missing`).

use std::collections::HashSet;

use gix::ObjectId;
use gix::bstr::{BStr, ByteSlice};

use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::Mirror;

/// The file that marks a treeless mirror.
const MARKER: &str = "kargo-treeless";

/// How many rounds of fetching whole trees before giving up on a server that does not
/// send what it was asked for.
const MAX_ROUNDS: usize = 4;

fn other(op: &str, e: impl std::fmt::Display) -> GitError {
    GitError::new(GitErrorKind::Other, op, e.to_string())
}

impl Mirror {
    /// Whether this mirror is treeless: it may lack trees as well as blobs.
    pub(crate) fn is_treeless(&self) -> bool {
        self.path.join(MARKER).exists()
    }

    pub(crate) fn mark_treeless(&self) -> Result<()> {
        std::fs::write(self.path.join(MARKER), b"")
            .map_err(|e| GitError::io("configure a treeless mirror", &e))
    }

    pub(crate) fn unmark_treeless(&self) -> Result<()> {
        match std::fs::remove_file(self.path.join(MARKER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(GitError::io("configure a treeless mirror", &e))
            }
            _ => Ok(()),
        }
    }

    /// Makes sure the directories along each of `paths` (`a/b/c`: the root, `a`, `a/b`,
    /// and `a/b/c` when it is a directory) in `root` are in the mirror, each with the files
    /// directly in it, fetching what is missing one directory level at a time (one request
    /// per level for all paths). `whole_last`: a path that names a directory gets every
    /// directory below it as well (not their files). Nothing happens in a mirror that is
    /// not treeless. Returns whether it fetched: then read through a new [`Mirror::open`].
    pub(crate) fn ensure_trees(
        &self,
        repo: &gix::Repository,
        root: ObjectId,
        paths: &[&str],
        whole_last: bool,
    ) -> Result<bool> {
        if !self.is_treeless() {
            return Ok(false);
        }
        let op = "read tree";
        let mut repo = repo.clone();
        let mut fetched = false;
        let mut items: Vec<(Vec<&str>, usize, ObjectId)> = paths
            .iter()
            .map(|p| (p.split('/').filter(|c| !c.is_empty()).collect(), 0, root))
            .collect();
        let mut whole = Vec::new();
        while !items.is_empty() {
            let mut missing: Vec<ObjectId> = items
                .iter()
                .map(|i| i.2)
                .filter(|id| !repo.has_object(id))
                .collect();
            if !missing.is_empty() {
                let _lock = self.lock()?;
                repo = self.reopen()?;
                missing.retain(|id| !repo.has_object(id));
                missing.sort_unstable();
                missing.dedup();
                if !missing.is_empty() {
                    self.fetch_objects(&missing, "tree:1", "directories")?;
                    repo = self.reopen()?;
                    fetched = true;
                }
            }
            let mut next = Vec::new();
            for (components, i, id) in items {
                let Some(name) = components.get(i) else {
                    if whole_last {
                        whole.push(id);
                    }
                    continue;
                };
                let tree = repo.find_tree(id).map_err(|e| other(op, e))?;
                let entry = tree
                    .find_entry(*name)
                    .filter(|e| e.mode().is_tree())
                    .map(|e| e.object_id());
                if let Some(sub) = entry {
                    next.push((components, i + 1, sub));
                }
            }
            items = next;
        }
        for tree in whole {
            if self.fill_whole_tree(&repo, &[tree], false)? {
                repo = self.open()?;
                fetched = true;
            }
        }
        Ok(fetched)
    }

    /// Makes sure every directory below `trees` is in the mirror (not their files), in a
    /// treeless mirror. `locked`: the caller holds the mirror lock. Returns whether it
    /// fetched.
    fn fill_whole_tree(
        &self,
        repo: &gix::Repository,
        trees: &[ObjectId],
        locked: bool,
    ) -> Result<bool> {
        if !self.is_treeless() {
            return Ok(false);
        }
        let mut repo = repo.clone();
        if missing_below(&repo, trees)?.is_empty() {
            return Ok(false);
        }
        let _lock = if locked { None } else { Some(self.lock()?) };
        repo = self.reopen()?;
        for _ in 0..MAX_ROUNDS {
            let missing = missing_below(&repo, trees)?;
            if missing.is_empty() {
                return Ok(true);
            }
            // Each missing directory comes with every directory below it.
            self.fetch_objects(&missing, "blob:none", "directories")?;
            repo = self.reopen()?;
        }
        Err(GitError::new(
            GitErrorKind::NotFound,
            format!("fetch directories from {}", self.display_url()),
            "the remote did not send every directory it was asked for",
        ))
    }

    /// Makes a treeless mirror an ordinary blobless one: fetches every directory (not the
    /// files) below every commit the mirror holds, in one request, then drops the marker.
    /// Anything that reads whole trees (history, merges, rebases, a whole checkout, reads
    /// at a revision) calls it first; nothing happens in a mirror that is not treeless.
    pub fn complete_trees(&self) -> Result<()> {
        if !self.is_treeless() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if !self.is_treeless() {
            return Ok(());
        }
        self.fill_all_trees_locked()
    }

    /// [`complete_trees`](Self::complete_trees) whatever the marker says, with the mirror
    /// lock held: every missing directory of every commit the mirror holds, then the
    /// marker goes. Also the repair of a partial mirror a fetch found lacking.
    pub(crate) fn fill_all_trees_locked(&self) -> Result<()> {
        let op = "complete a treeless mirror";
        let repo = self.reopen()?;
        let mut roots = Vec::new();
        let ids = repo.objects.iter().map_err(|e| other(op, e))?;
        for id in ids {
            let id = id.map_err(|e| other(op, e))?;
            let header = repo.find_header(id).map_err(|e| other(op, e))?;
            if header.kind() == gix::object::Kind::Commit {
                roots.push(crate::mirror::commit_tree(&repo, id)?);
            }
        }
        roots.sort_unstable();
        roots.dedup();
        tracing::info!(url = %self.display_url(), commits = roots.len(), "filling in the directories of a partial mirror");
        if missing_below(&repo, &roots)?.is_empty() {
            return self.unmark_treeless();
        }
        // The filling itself needs the mirror's promisor fetches, marker or not.
        self.mark_treeless()?;
        self.fill_whole_tree(&repo, &roots, true)?;
        self.unmark_treeless()
    }
}

/// The directories below (and including) `trees` that the mirror lacks, each named once;
/// the walk does not go into what is missing.
fn missing_below(repo: &gix::Repository, trees: &[ObjectId]) -> Result<Vec<ObjectId>> {
    let op = "read tree";
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut missing = Vec::new();
    let mut stack: Vec<ObjectId> = trees.to_vec();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if !repo.has_object(id) {
            missing.push(id);
            continue;
        }
        let tree = repo.find_tree(id).map_err(|e| other(op, e))?;
        for entry in tree.iter() {
            let entry = entry.map_err(|e| other(op, e))?;
            if entry.mode().is_tree() {
                stack.push(entry.object_id());
            }
        }
    }
    missing.sort_unstable();
    Ok(missing)
}

/// An edit of a tree: set `path` to an entry of `kind` and `id`, or remove it (`None`).
pub(crate) type TreeEdit<'a> = (&'a str, Option<(gix::object::tree::EntryKind, ObjectId)>);

/// Applies `edits` to the tree `base` and writes the trees it changed, returning the new
/// root. Unlike gix's editor, it does not require the objects the written trees name to
/// be in the mirror (a treeless mirror lacks the directories next to the edited ones); it
/// checks the names it writes as gix does. The trees along every edited path must be in
/// the mirror ([`Mirror::ensure_trees`]).
pub(crate) fn write_edited_tree(
    repo: &gix::Repository,
    base: ObjectId,
    edits: &[TreeEdit<'_>],
    op: &str,
) -> Result<ObjectId> {
    let invalid =
        |e: &dyn std::fmt::Display| GitError::new(GitErrorKind::Invalid, op, e.to_string());
    let root: gix::objs::Tree = repo
        .find_tree(base)
        .map_err(|e| other(op, e))?
        .decode()
        .map_err(|e| other(op, e))?
        .into();
    let mut editor = gix::objs::tree::Editor::new(root, &repo.objects, repo.object_hash());
    for (path, entry) in edits {
        let components = path.split('/').map(|c| BStr::new(c.as_bytes()));
        match entry {
            Some((kind, id)) => {
                editor
                    .upsert(components, *kind, *id)
                    .map_err(|e| invalid(&e))?;
            }
            None => {
                editor.remove(components).map_err(|e| invalid(&e))?;
            }
        }
    }
    let validate = gix::validate::path::component::Options::default();
    editor.write(|tree| -> std::result::Result<ObjectId, GitError> {
        for entry in &tree.entries {
            let mode = entry
                .mode
                .is_link()
                .then_some(gix::validate::path::component::Mode::Symlink);
            gix::validate::path::component(entry.filename.as_ref(), mode, validate).map_err(
                |e| {
                    invalid(&format!(
                        "invalid file name {:?}: {e}",
                        entry.filename.to_str_lossy()
                    ))
                },
            )?;
        }
        repo.write_object(tree)
            .map(|id| id.detach())
            .map_err(|e| GitError::new(GitErrorKind::Io, op, e.to_string()))
    })
}
