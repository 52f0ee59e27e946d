//! Reading history from a mirror for artifact discovery: commits newest first by commit
//! time (`git log`'s order), the paths a commit changed, and what a tag points to.

use std::ops::ControlFlow;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::{Mirror, commit_info};

/// What a tag points to, read from the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDetails {
    /// The commit the tag (after peeling annotated tags) points to.
    pub commit: crate::CommitInfo,
    /// For annotated tags: the tag object's data.
    pub annotation: Option<TagAnnotation>,
}

/// The data of an annotated tag object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagAnnotation {
    /// `Name <email>` of the tagger (empty when the tag object has none).
    pub tagger: String,
    /// When it was tagged, seconds since the epoch (`None` without a tagger).
    pub time: Option<i64>,
    /// The tag's message.
    pub message: String,
}

fn other(op: &str, e: impl std::fmt::Display) -> GitError {
    GitError::new(GitErrorKind::Other, op, e.to_string())
}

impl Mirror {
    /// Walks the history from `start` newest first by commit time (the order of `git log`),
    /// calling `visit` for each commit until it returns [`ControlFlow::Break`] or the
    /// history ends.
    pub fn walk_history(
        &self,
        start: ObjectId,
        visit: impl FnMut(crate::CommitInfo) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        self.walk_history_excluding(start, &[], visit)
    }

    /// [`walk_history`](Self::walk_history) of only the commits reachable from `start` and
    /// not from any of `hidden` (`git log start ^hidden...`): what is new on a branch since
    /// its tips were `hidden`.
    ///
    /// In a shallow mirror, a walk that goes on past the shallow boundary deepens the
    /// mirror to its full history ([`Mirror::unshallow`]) and continues there; `visit`
    /// sees every commit once.
    pub fn walk_history_excluding(
        &self,
        start: ObjectId,
        hidden: &[ObjectId],
        mut visit: impl FnMut(crate::CommitInfo) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let boundary = self.shallow_boundary()?;
        let shallow = !boundary.is_empty();
        let mut visited = std::collections::HashSet::new();
        let mut deepened = false;
        loop {
            let repo = self.open()?;
            let walk = repo
                .rev_walk([start])
                .with_hidden(hidden.iter().copied())
                .sorting(gix::revision::walk::Sorting::ByCommitTime(
                    gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
                ))
                .all()
                .map_err(|e| other("log", e))?;
            let mut crossed = false;
            for info in walk {
                let info = info.map_err(|e| other("log", e))?;
                // After deepening, the walk starts again: skip what `visit` saw.
                if shallow && !visited.insert(info.id) {
                    continue;
                }
                if visit(commit_info(&repo, info.id)?)?.is_break() {
                    return Ok(());
                }
                if !deepened && boundary.contains(&info.id) {
                    crossed = true;
                    break;
                }
            }
            if !crossed {
                return Ok(());
            }
            // The walk goes on past a commit whose parents the mirror does not hold.
            self.unshallow()?;
            deepened = true;
        }
    }

    /// Whether `ancestor` is `commit` or one of its ancestors (a fast-forward from
    /// `ancestor` to `commit`). Both must be in the mirror; a shallow mirror that does not
    /// hold `ancestor` is deepened to its full history first. Otherwise a shallow mirror
    /// answers from the history it holds (an ancestor beyond its shallow boundary is not
    /// found); call [`Mirror::unshallow`] first where that matters.
    pub fn is_ancestor(&self, ancestor: ObjectId, commit: ObjectId) -> Result<bool> {
        if ancestor == commit {
            return Ok(true);
        }
        if !self.open()?.has_object(ancestor) && self.is_shallow()? {
            self.unshallow()?;
        }
        let repo = self.open()?;
        let mut walk = repo
            .rev_walk([ancestor])
            .with_hidden([commit])
            .all()
            .map_err(|e| other("log", e))?;
        // Nothing left once `commit`'s history is hidden: `ancestor` is in it.
        match walk.next() {
            None => Ok(true),
            Some(Ok(_)) => Ok(false),
            Some(Err(e)) => Err(other("log", e)),
        }
    }

    /// The paths (files, not directories) that `commit` changed compared with its first
    /// parent, sorted; for a root commit, every file it holds. A rename lists both paths.
    /// A commit at a shallow mirror's boundary deepens the mirror first (its parent is
    /// beyond the boundary).
    pub fn changed_paths(&self, commit: ObjectId) -> Result<Vec<String>> {
        self.complete_trees()?;
        if self.shallow_boundary()?.contains(&commit) {
            self.unshallow()?;
        }
        let repo = self.open()?;
        let c = repo
            .find_commit(commit)
            .map_err(|e| GitError::new(GitErrorKind::NotFound, "read commit", e.to_string()))?;
        let new_tree = c.tree_id().map_err(|e| other("read commit", e))?.detach();
        let old_tree = match c.parent_ids().next() {
            Some(p) => Some(crate::mirror::commit_tree(&repo, p.detach())?),
            None => None,
        };
        let mut out = Vec::new();
        diff_trees(&repo, old_tree, Some(new_tree), "", &mut out)?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Reads the object a tag ref points to (`target`, as `ls-remote` shows it): annotated
    /// tags are peeled (through nested tags) to their commit.
    pub fn tag_details(&self, target: ObjectId) -> Result<TagDetails> {
        let repo = self.open()?;
        let op = "read tag";
        let obj = repo
            .find_object(target)
            .map_err(|e| GitError::new(GitErrorKind::NotFound, op, e.to_string()))?;
        let mut annotation = None;
        let mut current = obj;
        loop {
            match current.kind {
                gix::object::Kind::Commit => break,
                gix::object::Kind::Tag => {
                    let tag = current.clone().into_tag();
                    let decoded = tag.decode().map_err(|e| other(op, e))?;
                    if annotation.is_none() {
                        let tagger = decoded.tagger().map_err(|e| other(op, e))?;
                        annotation = Some(TagAnnotation {
                            tagger: tagger
                                .map(|s| format!("{} <{}>", s.name, s.email))
                                .unwrap_or_default(),
                            time: tagger.and_then(|s| s.time().ok()).map(|t| t.seconds),
                            message: decoded.message.to_str_lossy().into_owned(),
                        });
                    }
                    let next = decoded.target();
                    current = repo
                        .find_object(next)
                        .map_err(|e| GitError::new(GitErrorKind::NotFound, op, e.to_string()))?;
                }
                kind => {
                    return Err(GitError::new(
                        GitErrorKind::Invalid,
                        op,
                        format!("the tag points to a {kind}, not a commit"),
                    ));
                }
            }
        }
        Ok(TagDetails {
            commit: commit_info(&repo, current.id)?,
            annotation,
        })
    }
}

/// Git's order of tree entries: names compared bytewise, a tree's name as if followed by
/// `/` (so `a` the file, `a.txt`, then `a` the directory).
fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let common = a.len().min(b.len());
    match a[..common].cmp(&b[..common]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    let next = |name: &[u8], tree: bool| match name.get(common) {
        Some(c) => *c,
        None if tree => b'/',
        None => 0,
    };
    next(a, a_tree)
        .cmp(&next(b, b_tree))
        .then(a.len().cmp(&b.len()))
}

/// Appends to `out` every file path that differs between two trees (`None`: empty tree).
///
/// Both trees' entries are in git's order, so one merge of the two lists visits each name
/// once; only the paths that changed are allocated, and identical subtrees (same ID) are
/// skipped without being read. A file that became a directory (or back) lists the file
/// and every file under the directory; a mode change (the executable bit) is a change.
pub(crate) fn diff_trees(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<()> {
    use gix::objs::TreeRefIter;
    type Entry<'a> = (&'a [u8], ObjectId, gix::objs::tree::EntryMode);
    let read = |id: Option<ObjectId>| -> Result<Vec<u8>> {
        match id {
            Some(id) => Ok(repo
                .find_tree(id)
                .map_err(|e| other("read tree", e))?
                .detach()
                .data),
            None => Ok(Vec::new()),
        }
    };
    let (old_data, new_data) = (read(old)?, read(new)?);
    fn entries(data: &[u8], hash: gix::hash::Kind) -> Result<Vec<Entry<'_>>> {
        TreeRefIter::from_bytes(data, hash)
            .map(|e| {
                e.map(|e| (e.filename.as_bytes(), e.oid.to_owned(), e.mode))
                    .map_err(|e| other("read tree", e))
            })
            .collect()
    }
    let hash = repo.object_hash();
    let (old_entries, new_entries) = (entries(&old_data, hash)?, entries(&new_data, hash)?);
    let join = |name: &[u8]| {
        let name = name.to_str_lossy();
        if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        }
    };
    // One side of a changed name: its subtree to descend into, or whether it is a file.
    let side = |e: Option<&Entry<'_>>| match e {
        Some((_, id, mode)) if mode.is_tree() => (Some(*id), false),
        Some(_) => (None, true),
        None => (None, false),
    };
    let (mut i, mut j) = (0, 0);
    while i < old_entries.len() || j < new_entries.len() {
        let (o, n) = (old_entries.get(i), new_entries.get(j));
        let (o, n) = match (o, n) {
            (Some(a), Some(b)) => match git_order(a.0, a.2.is_tree(), b.0, b.2.is_tree()) {
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    if a.1 == b.1 && a.2 == b.2 {
                        continue;
                    }
                    (Some(a), Some(b))
                }
                std::cmp::Ordering::Less => {
                    i += 1;
                    (Some(a), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (None, Some(b))
                }
            },
            (Some(a), None) => {
                i += 1;
                (Some(a), None)
            }
            (None, Some(b)) => {
                j += 1;
                (None, Some(b))
            }
            (None, None) => break,
        };
        let name = o.or(n).map_or(&b""[..], |e| e.0);
        let path = join(name);
        let ((o_tree, o_file), (n_tree, n_file)) = (side(o), side(n));
        if o_file || n_file {
            out.push(path.clone());
        }
        if o_tree.is_some() || n_tree.is_some() {
            diff_trees(repo, o_tree, n_tree, &path, out)?;
        }
    }
    Ok(())
}
