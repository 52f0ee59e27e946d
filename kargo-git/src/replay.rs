//! Replaying a commit's changes onto another tree without a three-way merge.
//!
//! When a checkout rebases its commits onto a branch that moved (another promotion's
//! commit landed first), the two usually touched different files. Then the replayed tree
//! is the new base with this commit's changed entries set: a few tree lookups and the
//! trees along the changed paths written, instead of a merge of two whole trees (which,
//! on a repository of 80,000 files, costs a quarter of a second per commit).

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::history::diff_trees;
use crate::{GitError, GitErrorKind, Result};

/// More changed paths than this: merge instead (the lookups would cost more).
const MAX_PATHS: usize = 256;

fn gerr(e: impl std::fmt::Display) -> GitError {
    GitError::new(GitErrorKind::Other, "replay a commit", e.to_string())
}

/// The entry at `path` in `tree`: its kind and ID.
fn entry(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
) -> Result<Option<(EntryKind, ObjectId)>> {
    let tree = repo.find_tree(tree).map_err(gerr)?;
    Ok(tree
        .lookup_entry_by_path(path)
        .map_err(gerr)?
        .map(|e| (e.mode().kind(), e.object_id())))
}

/// The tree `onto` with the changes from `parent` to `ours` applied, when none of the
/// paths they change differs between `parent` and `onto`; `None` when a three-way merge
/// is needed (an overlapping path, a file that became a directory or back, too many
/// paths).
pub(crate) fn replay_disjoint(
    repo: &gix::Repository,
    parent: ObjectId,
    ours: ObjectId,
    onto: ObjectId,
) -> Result<Option<ObjectId>> {
    if parent == onto {
        return Ok(Some(ours));
    }
    let mut paths = Vec::new();
    diff_trees(repo, Some(parent), Some(ours), "", &mut paths)?;
    if paths.len() > MAX_PATHS {
        return Ok(None);
    }
    paths.sort();
    // A path under another changed path: a file became a directory (or back).
    if paths.windows(2).any(|w| {
        w[1].len() > w[0].len() && w[1].starts_with(&w[0]) && w[1].as_bytes()[w[0].len()] == b'/'
    }) {
        return Ok(None);
    }
    let mut changes = Vec::with_capacity(paths.len());
    for path in &paths {
        if entry(repo, parent, path)? != entry(repo, onto, path)? {
            return Ok(None);
        }
        changes.push((path, entry(repo, ours, path)?));
    }
    let mut editor = repo.edit_tree(onto).map_err(gerr)?;
    for (path, e) in changes {
        match e {
            Some((kind, id)) => {
                editor.upsert(path.as_str(), kind, id).map_err(gerr)?;
            }
            None => {
                editor.remove(path.as_str()).map_err(gerr)?;
            }
        }
    }
    Ok(Some(editor.write().map_err(gerr)?.detach()))
}
