//! Per-file unified diffs between two commits of a mirror (what a push would change on
//! the remote), and the unified-diff formatting shared with [`Checkout::diff`](crate::Checkout::diff).

use gix::ObjectId;

use crate::checkout::ChangeKind;
use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::{Mirror, commit_tree};

/// One file that differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// The path, relative to the repository root.
    pub path: String,
    /// Added, modified or deleted.
    pub kind: ChangeKind,
    /// The unified diff: `--- a/<path>` (or `/dev/null`), `+++ b/<path>` (or `/dev/null`)
    /// and the hunks with three lines of context; for binary content (a NUL byte on either
    /// side) the single line `Binary files a/<path> and b/<path> differ`.
    pub diff: String,
}

impl Mirror {
    /// The files that differ between the trees of commit `from` (`None`: the empty tree,
    /// e.g. for a new orphan branch) and commit `to`, sorted by path, each with its unified
    /// diff. Only objects in the mirror are read; a blobless mirror fetches the blobs of
    /// the changed files it lacks, in one request.
    pub fn diff_commits(&self, from: Option<ObjectId>, to: ObjectId) -> Result<Vec<FileDiff>> {
        self.complete_trees()?;
        let mut repo = self.open()?;
        let old_tree = match from {
            Some(c) => Some(commit_tree(&repo, c)?),
            None => None,
        };
        let new_tree = commit_tree(&repo, to)?;
        let mut paths = Vec::new();
        crate::history::diff_trees(&repo, old_tree, Some(new_tree), "", &mut paths)?;
        paths.sort();
        paths.dedup();
        if self.is_blobless() {
            let mut ids = Vec::new();
            for path in &paths {
                for tree in old_tree.iter().chain([&new_tree]) {
                    if let Some(id) = blob_id_at(&repo, *tree, path)? {
                        ids.push(id);
                    }
                }
            }
            if self.ensure_blobs(&repo, ids)? {
                repo = self.open()?;
            }
        }
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let old = match old_tree {
                Some(t) => blob_at(&repo, t, &path)?,
                None => None,
            };
            let new = blob_at(&repo, new_tree, &path)?;
            let kind = match (&old, &new) {
                (None, None) => continue,
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Deleted,
                (Some(_), Some(_)) => ChangeKind::Modified,
            };
            let diff = unified(&path, old.as_deref(), new.as_deref());
            out.push(FileDiff { path, kind, diff });
        }
        Ok(out)
    }
}

/// The blob ID of the file (not directory, not submodule) at `path` in `tree`.
fn blob_id_at(repo: &gix::Repository, tree: ObjectId, path: &str) -> Result<Option<ObjectId>> {
    let t = repo
        .find_tree(tree)
        .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?;
    Ok(t.lookup_entry_by_path(path)
        .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?
        .filter(|e| !e.mode().is_tree() && !e.mode().is_commit())
        .map(|e| e.object_id()))
}

/// The content of the file (not directory, not submodule) at `path` in `tree`.
fn blob_at(repo: &gix::Repository, tree: ObjectId, path: &str) -> Result<Option<Vec<u8>>> {
    let op = "read tree";
    let t = repo
        .find_tree(tree)
        .map_err(|e| GitError::new(GitErrorKind::Other, op, e.to_string()))?;
    let Some(entry) = t
        .lookup_entry_by_path(path)
        .map_err(|e| GitError::new(GitErrorKind::Other, op, e.to_string()))?
    else {
        return Ok(None);
    };
    if entry.mode().is_tree() || entry.mode().is_commit() {
        return Ok(None);
    }
    let blob = repo
        .find_object(entry.object_id())
        .map_err(|e| GitError::new(GitErrorKind::Other, "read blob", e.to_string()))?;
    Ok(Some(blob.data.clone()))
}

/// A unified diff of one file (`None`: the file does not exist on that side).
pub(crate) fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let a = if old.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".into()
    };
    let b = if new.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".into()
    };
    let binary = |d: Option<&[u8]>| d.is_some_and(|d| d.contains(&0));
    if binary(old) || binary(new) {
        return format!("Binary files {a} and {b} differ\n");
    }
    let old_s = String::from_utf8_lossy(old.unwrap_or_default());
    let new_s = String::from_utf8_lossy(new.unwrap_or_default());
    similar::TextDiff::from_lines(old_s.as_ref(), new_s.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn unified_diffs() {
        let d = unified("a.yaml", Some(b"x: 1\ny: 2\n"), Some(b"x: 1\ny: 3\n"));
        assert_eq!(
            d,
            "--- a/a.yaml\n+++ b/a.yaml\n@@ -1,2 +1,2 @@\n x: 1\n-y: 2\n+y: 3\n"
        );
        let d = unified("n.txt", None, Some(b"hi\n"));
        assert!(d.starts_with("--- /dev/null\n+++ b/n.txt\n"), "{d}");
        let d = unified("bin", Some(b"\0\x01"), None);
        assert_eq!(d, "Binary files a/bin and /dev/null differ\n");
    }
}
