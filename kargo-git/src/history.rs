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
        mut visit: impl FnMut(crate::CommitInfo) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let repo = self.open()?;
        let walk = repo
            .rev_walk([start])
            .sorting(gix::revision::walk::Sorting::ByCommitTime(
                gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
            ))
            .all()
            .map_err(|e| other("log", e))?;
        for info in walk {
            let info = info.map_err(|e| other("log", e))?;
            if visit(commit_info(&repo, info.id)?)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The paths (files, not directories) that `commit` changed compared with its first
    /// parent, sorted; for a root commit, every file it holds. A rename lists both paths.
    pub fn changed_paths(&self, commit: ObjectId) -> Result<Vec<String>> {
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

/// Appends to `out` every file path that differs between two trees (`None`: empty tree).
pub(crate) fn diff_trees(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<()> {
    use std::collections::BTreeMap;
    // name -> (id, is tree, mode): a mode change (e.g. the executable bit) is a change.
    type Entries = BTreeMap<String, (ObjectId, bool, gix::objs::tree::EntryMode)>;
    let entries = |id: Option<ObjectId>| -> Result<Entries> {
        let mut map = BTreeMap::new();
        let Some(id) = id else { return Ok(map) };
        let tree = repo.find_tree(id).map_err(|e| other("read tree", e))?;
        for e in tree.iter() {
            let e = e.map_err(|e| other("read tree", e))?;
            map.insert(
                e.filename().to_str_lossy().into_owned(),
                (e.object_id(), e.mode().is_tree(), e.mode()),
            );
        }
        Ok(map)
    };
    let old_entries = entries(old)?;
    let new_entries = entries(new)?;
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    };
    let names: std::collections::BTreeSet<&String> =
        old_entries.keys().chain(new_entries.keys()).collect();
    for name in names {
        let o = old_entries.get(name);
        let n = new_entries.get(name);
        if o == n {
            continue;
        }
        let path = join(name);
        let (o_tree, o_file) = match o {
            Some((id, true, _)) => (Some(*id), false),
            Some((_, false, _)) => (None, true),
            None => (None, false),
        };
        let (n_tree, n_file) = match n {
            Some((id, true, _)) => (Some(*id), false),
            Some((_, false, _)) => (None, true),
            None => (None, false),
        };
        if o_file || n_file {
            out.push(path.clone());
        }
        if o_tree.is_some() || n_tree.is_some() {
            diff_trees(repo, o_tree, n_tree, &path, out)?;
        }
    }
    Ok(())
}
