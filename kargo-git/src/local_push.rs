//! Pushing to a repository on this file system in-process, with gix.
//!
//! `git push` to a `file://` URL or a plain path starts about seven processes (push, a
//! shell, receive-pack, pack-objects, unpack-objects, rev-list, for-each-ref); tests that
//! run whole pipelines against a temporary bare repository spend most of their time there.
//! This module does what `git push` and `git receive-pack` do for the pushes Kargo makes
//! (`<commit>:refs/heads/<branch>` and `refs/tags/<tag>:refs/tags/<tag>`, optionally
//! forced), without a process:
//!
//! 1. Like the `git push` client, each ref is checked against the remote's current value
//!    `R`: equal is up to date; without force, an existing tag is rejected
//!    (`already exists`), a branch whose `R` the mirror lacks is rejected (`fetch first`)
//!    and one whose `R` is not an ancestor of the new commit is rejected
//!    (`non-fast-forward`).
//! 2. Every object reachable from the new tips that the remote lacks is copied into its
//!    object database as a loose object, before any reference moves. Objects are written
//!    dependencies first (blobs and trees before the commit naming them, parents before
//!    children), so an object the remote has is always complete and the walk stops there.
//! 3. Each reference is moved in its own gix transaction that expects `R` (or expects the
//!    reference to be absent): if another writer moved it in between, or holds its lock,
//!    the push is [`PushResult::Rejected`], as `git push` reports it, and the caller's
//!    retry loop fetches and re-applies.
//!
//! Whenever receive-pack would do more than that, the caller falls back to the git binary
//! (see [`push`]): the target runs hooks (an executable file in `hooks/` not ending in
//! `.sample`, or `core.hooksPath` is set), is not bare (`receive.denyCurrentBranch`), sets
//! a `receive.*` option that could change the outcome (e.g. `denyNonFastForwards`,
//! `fsckObjects`, `updateServerInfo`, `hideRefs`, `maxInputSize`; `autogc` and the like
//! are fine), `transfer.fsckObjects`, `transfer.hideRefs` or `core.sharedRepository`, is
//! shallow, uses another object
//! format or reference storage, is a partial clone, or is not owned by this user; or the
//! URL is relative, has a host or escapes; or a refspec is of a form Kargo does not use.
//! What is not reproduced: receive-pack's `gc --auto` after the push, and packing pushes
//! of 100 objects or more (everything is written loose).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::Kind;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use crate::cli::PushResult;
use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::Mirror;

/// Pushes `refspecs` from `mirror` to its URL in-process when the URL names a repository
/// on this file system that receive-pack would treat no differently (see the module
/// documentation); `Ok(None)` means the git binary must do it.
pub(crate) fn push(
    mirror: &Mirror,
    refspecs: &[String],
    force: bool,
) -> Result<Option<PushResult>> {
    if !mirror.git.config.local_push {
        return Ok(None);
    }
    let Some(path) = local_path(mirror.url()) else {
        return Ok(None);
    };
    let op = format!("push {}", mirror.display_url());
    let started = std::time::Instant::now();
    let plan = match Plan::new(mirror, &path, refspecs, force, &op)? {
        Ok(plan) => plan,
        Err(reason) => {
            tracing::debug!(url = %mirror.display_url(), %reason, "local push: using the git binary");
            return Ok(None);
        }
    };
    let result = plan.run(mirror, &op)?;
    match &result {
        Some(r) => tracing::debug!(
            url = %mirror.display_url(),
            refspecs = ?refspecs,
            result = ?r,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "local push"
        ),
        None => tracing::debug!(
            url = %mirror.display_url(),
            reason = "the mirror is shallow and the remote lacks history behind its boundary",
            "local push: using the git binary"
        ),
    }
    Ok(result)
}

/// The absolute path named by a `file://` URL or a plain path; `None` for anything else
/// (remote URLs, relative paths, `file://host/…`, percent escapes).
fn local_path(url: &str) -> Option<PathBuf> {
    if url.contains('%') {
        return None;
    }
    let parsed = gix::url::parse(gix::bstr::BStr::new(url)).ok()?;
    if parsed.scheme != gix::url::Scheme::File || parsed.host().is_some() {
        return None;
    }
    let path = gix::path::from_bstring(parsed.path).ok()?;
    path.is_absolute().then_some(path)
}

/// What one refspec asks for, resolved against both repositories.
struct Update {
    /// The refspec as given (for messages).
    spec: String,
    /// The remote reference.
    dst: gix::refs::FullName,
    /// The object to point it to (a commit, or a tag object for annotated tags).
    new: ObjectId,
    /// The remote's current value.
    old: Option<ObjectId>,
}

/// A checked push: the open target and the updates the `git push` client would send.
struct Plan {
    target: gix::Repository,
    /// Refs to move.
    updates: Vec<Update>,
    /// Porcelain-style lines for refs rejected before anything was sent.
    rejected: Vec<String>,
}

/// Why the git binary has to do a push.
type Fallback = String;

impl Plan {
    /// Opens the target, decides whether receive-pack would behave specially for it (an
    /// `Err(reason)` inside), and applies the client's per-ref rules.
    fn new(
        mirror: &Mirror,
        path: &Path,
        refspecs: &[String],
        force: bool,
        op: &str,
    ) -> Result<std::result::Result<Self, Fallback>> {
        if !path.is_dir() {
            return Ok(Err("the path is not a directory".into()));
        }
        let Ok(target) = open_target(path) else {
            return Ok(Err("gix cannot open the repository".into()));
        };
        if let Some(reason) = needs_receive_pack(&target) {
            return Ok(Err(reason));
        }
        let source = mirror.open()?;
        if source.object_hash() != target.object_hash() {
            return Ok(Err("the repositories use different object formats".into()));
        }
        let mut updates = Vec::new();
        let mut rejected = Vec::new();
        for spec in refspecs {
            let Some((forced, src, dst)) = parse_refspec(spec) else {
                return Ok(Err(format!("unsupported refspec {spec:?}")));
            };
            let force = force || forced;
            let Ok(dst_name) = gix::refs::FullName::try_from(dst) else {
                return Ok(Err(format!("unsupported destination {dst:?}")));
            };
            let is_tag = dst.starts_with("refs/tags/");
            if !is_tag && !dst.starts_with("refs/heads/") {
                return Ok(Err(format!("unsupported destination {dst:?}")));
            }
            let Some(new) = resolve_source(&source, src) else {
                return Ok(Err(format!("cannot resolve {src:?} in the mirror")));
            };
            let Some(new_kind) = kind_of(&source, new) else {
                return Ok(Err(format!("the mirror lacks {new}")));
            };
            if !is_tag && new_kind != Kind::Commit {
                return Ok(Err(format!("{src:?} is not a commit")));
            }
            let old = match target.try_find_reference(dst) {
                Ok(None) => None,
                Ok(Some(r)) => match r.target().try_id() {
                    Some(id) => Some(id.to_owned()),
                    None => return Ok(Err(format!("{dst} is a symbolic reference"))),
                },
                Err(e) => {
                    return Err(GitError::new(
                        GitErrorKind::Other,
                        op,
                        mirror.scrub(&format!("cannot read {dst}: {e}")),
                    ));
                }
            };
            let reject = |reason: &str| format!("!\t{spec}\t[rejected] ({reason})");
            match old {
                Some(old) if old == new => continue, // up to date
                Some(_) if force => {}
                Some(_) if is_tag => {
                    rejected.push(reject("already exists"));
                    continue;
                }
                Some(old) => match kind_of(&source, old) {
                    None => {
                        rejected.push(reject("fetch first"));
                        continue;
                    }
                    // git says "needs force": its error is the binary's to produce.
                    Some(k) if k != Kind::Commit => {
                        return Ok(Err(format!("{dst} does not point to a commit")));
                    }
                    Some(_) => match is_ancestor(&source, old, new, op) {
                        Ok(true) => {}
                        Ok(false) => {
                            rejected.push(reject("non-fast-forward"));
                            continue;
                        }
                        // History cut off by a shallow boundary: git's own walk decides.
                        Err(_) if source.is_shallow().unwrap_or(false) => {
                            return Ok(Err("the mirror is shallow".into()));
                        }
                        Err(e) => return Err(e),
                    },
                },
                None => {}
            }
            updates.push(Update {
                spec: spec.clone(),
                dst: dst_name,
                new,
                old,
            });
        }
        Ok(Ok(Self {
            target,
            updates,
            rejected,
        }))
    }

    /// Copies the objects, then moves each reference. `None`: the git binary must do it
    /// (a shallow mirror whose boundary the remote does not have).
    fn run(mut self, mirror: &Mirror, op: &str) -> Result<Option<PushResult>> {
        let source = mirror.open()?;
        if !self.updates.is_empty() {
            let mut copier = Copier {
                source: &source,
                target: &self.target,
                seen: HashSet::new(),
                written: 0,
            };
            for u in &self.updates {
                if !copier.copy_closure(u.new, mirror, op)? {
                    return Ok(None);
                }
            }
            tracing::debug!(objects = copier.written, "local push: objects copied");
        }
        let committer = reflog_identity(&self.target);
        let mut time = gix::date::parse::TimeBuf::default();
        for u in std::mem::take(&mut self.updates) {
            let expected = match u.old {
                Some(old) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(old)),
                None => PreviousValue::MustNotExist,
            };
            let edit = RefEdit {
                change: Change::Update {
                    log: LogChange {
                        mode: RefLog::AndReference,
                        force_create_reflog: false,
                        message: "push".into(),
                    },
                    expected,
                    new: gix::refs::Target::Object(u.new),
                },
                name: u.dst.clone(),
                deref: false,
            };
            if let Err(e) = self
                .target
                .edit_references_as(Some(edit), Some(committer.to_ref(&mut time)))
            {
                // Moved by another writer (conflict), deleted meanwhile (not found), or its
                // lock is held (retryable): receive-pack's "failed to update ref".
                if e.is_conflict() || e.is_not_found() || e.is_retryable() {
                    self.rejected.push(format!(
                        "!\t{}\t[remote rejected] (failed to update ref); cannot lock ref '{}': {}",
                        u.spec,
                        u.dst.as_bstr(),
                        mirror.scrub(&e.to_string())
                    ));
                    continue;
                }
                return Err(GitError::new(
                    GitErrorKind::Io,
                    op,
                    mirror.scrub(&format!("cannot update {}: {e}", u.dst.as_bstr())),
                ));
            }
        }
        if self.rejected.is_empty() {
            Ok(Some(PushResult::Ok))
        } else {
            Ok(Some(PushResult::Rejected(format!(
                "error: failed to push some refs to '{}'; {}",
                mirror.display_url(),
                self.rejected.join("; ")
            ))))
        }
    }
}

/// Opens the target with the configuration receive-pack would see: the repository's, the
/// user's and includes, not the system's (Kargo runs git with `GIT_CONFIG_NOSYSTEM`) and
/// not the environment's (git clears it for local transports).
fn open_target(path: &Path) -> gix::Result<gix::Repository> {
    let mut permissions = gix::open::Permissions::isolated();
    permissions.config.user = true;
    permissions.config.git = true;
    permissions.config.includes = true;
    permissions.env.home = gix::sec::Permission::Allow;
    permissions.env.xdg_config_home = gix::sec::Permission::Allow;
    gix::open_opts(
        path,
        gix::open::Options::default()
            .permissions(permissions)
            .open_path_as_is(true),
    )
}

/// Why receive-pack would do more than update refs here, if it would.
fn needs_receive_pack(repo: &gix::Repository) -> Option<String> {
    if !repo.is_bare() {
        return Some("not a bare repository (receive.denyCurrentBranch)".into());
    }
    if repo.git_dir_trust() != gix::sec::Trust::Full {
        return Some("the repository is owned by another user".into());
    }
    let config = repo.config_snapshot();
    if config.string("core.hooksPath").is_some() {
        return Some("core.hooksPath is set: receive-pack would run hooks".into());
    }
    if let Some(hook) = active_hook(&repo.git_dir().join("hooks")) {
        return Some(format!("hook {hook:?}: receive-pack would run it"));
    }
    if let Some(reason) = receive_options(&config) {
        return Some(reason);
    }
    if config.string("transfer.fsckObjects").is_some()
        && config.boolean("transfer.fsckObjects") != Some(false)
    {
        return Some("transfer.fsckObjects is set".into());
    }
    if config.string("core.sharedRepository").is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_slice(),
            b"false" | b"umask" | b"0"
        )
    }) {
        return Some("core.sharedRepository is set".into());
    }
    for key in ["transfer.hideRefs", "extensions.partialClone"] {
        if config.string(key).is_some() {
            return Some(format!("{key} is set"));
        }
    }
    if config
        .string("extensions.refStorage")
        .is_some_and(|v| v != "files")
    {
        return Some("the repository does not store references in files".into());
    }
    if repo.is_shallow().unwrap_or(true) {
        return Some("the repository is shallow".into());
    }
    None
}

/// `receive.*` options that cannot change the outcome of a push Kargo makes to a bare
/// repository here: garbage collection and pack storage (we write loose objects and never
/// collect), the current branch of a work tree (bare only), deletions (never made), shallow
/// updates (left to the binary), and protocol details. Lower case.
const NEUTRAL_RECEIVE_OPTIONS: &[&str] = &[
    "autogc",
    "unpacklimit",
    "denycurrentbranch",
    "denydeletecurrent",
    "denydeletes",
    "shallowupdate",
    "keepalive",
    "advertiseatomic",
    "advertisepushoptions",
    "certnonceseed",
    "certnonceslop",
];

/// Boolean `receive.*` options that change nothing when false (their default).
const NEUTRAL_WHEN_FALSE: &[&str] = &["denynonfastforwards", "fsckobjects", "updateserverinfo"];

/// The first `receive.*` option that could make receive-pack decide otherwise than
/// [`push`] does (e.g. `denyNonFastForwards = true`, `fsckObjects = true`, `hideRefs`,
/// `maxInputSize`, anything unknown), if one is set.
fn receive_options(config: &gix::config::Snapshot<'_>) -> Option<String> {
    for section in config.plumbing().sections_by_name("receive")? {
        if let Some(sub) = section.header().subsection_name() {
            return Some(format!("receive.{sub}.* options are set"));
        }
        for name in section.value_names() {
            let lower = name.to_ascii_lowercase();
            if NEUTRAL_RECEIVE_OPTIONS.contains(&lower.as_str()) {
                continue;
            }
            if NEUTRAL_WHEN_FALSE.contains(&lower.as_str())
                && config.boolean(format!("receive.{lower}").as_str()) == Some(false)
            {
                continue;
            }
            return Some(format!("receive.{name} is set"));
        }
    }
    None
}

/// The first hook receive-pack would run: an executable file (following links) whose
/// name does not end in `.sample`. An unreadable directory counts as a hook.
fn active_hook(dir: &Path) -> Option<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("unreadable hooks directory: {e}")),
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return Some("unreadable hooks directory".into());
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sample") {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue; // a dangling link runs nothing
        };
        if !meta.is_file() {
            continue;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 == 0 {
                continue; // git ignores hooks that are not executable
            }
        }
        return Some(name);
    }
    None
}

/// `[+]<src>:<dst>`; `None` for other forms (deletions, patterns, missing destination).
fn parse_refspec(spec: &str) -> Option<(bool, &str, &str)> {
    let (forced, rest) = match spec.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let (src, dst) = rest.split_once(':')?;
    if src.is_empty() || dst.is_empty() || rest.contains('*') || dst.contains(':') {
        return None;
    }
    Some((forced, src, dst))
}

/// A full object ID, or a full reference name of the mirror (not peeled).
fn resolve_source(repo: &gix::Repository, src: &str) -> Option<ObjectId> {
    if src.len() == repo.object_hash().len_in_hex()
        && let Ok(id) = ObjectId::from_hex(src.as_bytes())
    {
        return Some(id);
    }
    if !src.starts_with("refs/") {
        return None;
    }
    let r = repo.try_find_reference(src).ok()??;
    r.target().try_id().map(ToOwned::to_owned)
}

fn kind_of(repo: &gix::Repository, id: ObjectId) -> Option<Kind> {
    repo.try_find_header(id).ok().flatten().map(|h| h.kind())
}

/// Whether `old` is an ancestor of (or equal to) `new`, in `repo`.
fn is_ancestor(repo: &gix::Repository, old: ObjectId, new: ObjectId, op: &str) -> Result<bool> {
    if old == new {
        return Ok(true);
    }
    match repo.merge_base(new, old) {
        Ok(base) => Ok(base.is_some_and(|b| b.detach() == old)),
        Err(e) => Err(GitError::new(
            GitErrorKind::Other,
            op,
            format!("cannot compare {old} with {new}: {e}"),
        )),
    }
}

/// The identity for the target's reference log (written only where it is enabled):
/// the target's committer, as receive-pack would use, else Kargo's.
fn reflog_identity(repo: &gix::Repository) -> gix::actor::Signature {
    match repo.committer() {
        Some(Ok(sig)) => sig.into(),
        _ => gix::actor::Signature {
            name: "kargo".into(),
            email: "kargo@localhost".into(),
            time: gix::date::Time::now_local_or_utc(),
        },
    }
}

/// Copies objects from the mirror into the target, dependencies first.
struct Copier<'a> {
    source: &'a gix::Repository,
    target: &'a gix::Repository,
    /// Objects already visited in this push.
    seen: HashSet<ObjectId>,
    written: usize,
}

impl Copier<'_> {
    /// Writes every object reachable from `tip` that the target lacks, each after all the
    /// objects it names. `false`: the mirror lacks an object the target lacks too, at a
    /// shallow boundary (the git binary decides what to make of that).
    fn copy_closure(&mut self, tip: ObjectId, mirror: &Mirror, op: &str) -> Result<bool> {
        let hash = self.source.object_hash();
        // Depth-first; an object's entry goes back on the stack (`true`) under its
        // children and is written when it surfaces again, after all of them.
        let mut stack: Vec<(ObjectId, bool)> = vec![(tip, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                self.write(id, mirror, op)?;
                continue;
            }
            if !self.seen.insert(id) || self.target.has_object(id) {
                continue;
            }
            let object = match self.source.try_find_object(id) {
                Ok(Some(o)) => o,
                Ok(None) if self.source.is_shallow().unwrap_or(false) => return Ok(false),
                Ok(None) => {
                    return Err(GitError::new(
                        GitErrorKind::Other,
                        op,
                        format!("the mirror lacks object {id}"),
                    ));
                }
                Err(e) => return Err(read_error(id, &e, op)),
            };
            stack.push((id, true));
            let corrupt = |e: &dyn std::fmt::Display| read_error(id, e, op);
            match object.kind {
                Kind::Blob => {}
                Kind::Commit => {
                    let mut iter = gix::objs::CommitRefIter::from_bytes(&object.data, hash);
                    stack.push((iter.tree_id().map_err(|e| corrupt(&e))?, false));
                    stack.extend(iter.parent_ids().map(|p| (p, false)));
                }
                Kind::Tree => {
                    for entry in gix::objs::TreeRefIter::from_bytes(&object.data, hash) {
                        let entry = entry.map_err(|e| corrupt(&e))?;
                        // Submodule commits live in another repository.
                        if !entry.mode.is_commit() {
                            stack.push((entry.oid.to_owned(), false));
                        }
                    }
                }
                Kind::Tag => {
                    let target = gix::objs::TagRefIter::from_bytes(&object.data, hash)
                        .target_id()
                        .map_err(|e| corrupt(&e))?;
                    stack.push((target, false));
                }
            }
        }
        Ok(true)
    }

    fn write(&mut self, id: ObjectId, mirror: &Mirror, op: &str) -> Result<()> {
        use gix::objs::Write as _;
        let object = self
            .source
            .find_object(id)
            .map_err(|e| read_error(id, &e, op))?;
        let written = self
            .target
            .objects
            .write_buf(object.kind, &object.data)
            .map_err(|e| {
                GitError::new(
                    GitErrorKind::Io,
                    op,
                    mirror.scrub(&format!("cannot write object {id}: {e}")),
                )
            })?;
        if written != id {
            return Err(GitError::new(
                GitErrorKind::Other,
                op,
                format!("object {id} is corrupt in the mirror (its content hashes to {written})"),
            ));
        }
        self.written += 1;
        Ok(())
    }
}

fn read_error(id: ObjectId, e: &dyn std::fmt::Display, op: &str) -> GitError {
    GitError::new(
        GitErrorKind::Other,
        op,
        format!("cannot read object {id} from the mirror: {e}"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_absolute_local_urls_are_local() {
        assert_eq!(
            local_path("file:///tmp/a/repo.git"),
            Some(PathBuf::from("/tmp/a/repo.git"))
        );
        assert_eq!(
            local_path("/tmp/a/repo.git"),
            Some(PathBuf::from("/tmp/a/repo.git"))
        );
        for url in [
            "https://example.com/a.git",
            "http://user:pw@example.com/a.git",
            "ssh://git@example.com/a.git",
            "git@example.com:a.git",
            "git://example.com/a.git",
            "relative/repo.git",
            "./repo.git",
            "file://host/tmp/repo.git",
            "file:///tmp/with%20space.git",
        ] {
            assert_eq!(local_path(url), None, "{url}");
        }
    }

    #[test]
    fn refspecs() {
        assert_eq!(
            parse_refspec("abc:refs/heads/main"),
            Some((false, "abc", "refs/heads/main"))
        );
        assert_eq!(
            parse_refspec("+refs/tags/v1:refs/tags/v1"),
            Some((true, "refs/tags/v1", "refs/tags/v1"))
        );
        for bad in [":refs/heads/x", "main", "refs/heads/*:refs/heads/*", "a:"] {
            assert_eq!(parse_refspec(bad), None, "{bad}");
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        remote: PathBuf,
        mirror: Mirror,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote.git");
        gix::init_bare(&remote).unwrap();
        let git = crate::Git::new(
            crate::GitConfig::new(dir.path().join("cache")),
            std::sync::Arc::new(crate::NoAuth),
        );
        let mirror = git.mirror(&format!("file://{}", remote.display())).unwrap();
        Fixture {
            _dir: dir,
            remote,
            mirror,
        }
    }

    fn commit(m: &Mirror, parent: Option<ObjectId>, content: &str) -> ObjectId {
        let sig = crate::Signature::new("t", "t@example.com");
        let edits = [crate::Edit::Write {
            path: "dir/file.txt".into(),
            content: content.as_bytes().to_vec(),
        }];
        match m.write_commit(parent, &edits, content, &sig, &sig).unwrap() {
            crate::EditResult::Committed { commit, .. } => commit,
            other => panic!("{other:?}"),
        }
    }

    fn remote_main(f: &Fixture) -> Option<ObjectId> {
        let repo = gix::open(&f.remote).unwrap();
        repo.try_find_reference("refs/heads/main")
            .unwrap()
            .and_then(|r| r.target().try_id().map(ToOwned::to_owned))
    }

    fn spec(id: ObjectId) -> Vec<String> {
        vec![format!("{id}:refs/heads/main")]
    }

    #[test]
    fn a_ref_moved_after_the_check_is_rejected_and_kept() {
        let f = fixture();
        let base = commit(&f.mirror, None, "base");
        assert_eq!(
            push(&f.mirror, &spec(base), false).unwrap(),
            Some(PushResult::Ok)
        );
        assert_eq!(remote_main(&f), Some(base));
        let ours = commit(&f.mirror, Some(base), "ours");
        let theirs = commit(&f.mirror, Some(base), "theirs");
        let op = "push test";
        // Checked against `base`; then another writer moves the branch.
        let plan = Plan::new(&f.mirror, &f.remote, &spec(ours), false, op)
            .unwrap()
            .unwrap();
        assert_eq!(
            push(&f.mirror, &spec(theirs), false).unwrap(),
            Some(PushResult::Ok)
        );
        let Some(PushResult::Rejected(why)) = plan.run(&f.mirror, op).unwrap() else {
            panic!("expected a rejection");
        };
        assert!(why.contains("failed to update ref"), "{why}");
        assert_eq!(remote_main(&f), Some(theirs));
        // The same race on a branch that did not exist yet.
        let plan = Plan::new(
            &f.mirror,
            &f.remote,
            &[format!("{ours}:refs/heads/new")],
            false,
            op,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            push(&f.mirror, &[format!("{theirs}:refs/heads/new")], false).unwrap(),
            Some(PushResult::Ok)
        );
        assert!(matches!(
            plan.run(&f.mirror, op).unwrap(),
            Some(PushResult::Rejected(_))
        ));
    }

    #[test]
    fn a_held_ref_lock_is_a_rejection() {
        let f = fixture();
        let base = commit(&f.mirror, None, "base");
        push(&f.mirror, &spec(base), false).unwrap();
        let next = commit(&f.mirror, Some(base), "next");
        let lock = f.remote.join("refs/heads/main.lock");
        std::fs::write(&lock, "").unwrap();
        let Some(PushResult::Rejected(why)) = push(&f.mirror, &spec(next), false).unwrap() else {
            panic!("expected a rejection");
        };
        assert!(why.contains("failed to update ref"), "{why}");
        assert_eq!(remote_main(&f), Some(base));
        std::fs::remove_file(&lock).unwrap();
        assert_eq!(
            push(&f.mirror, &spec(next), false).unwrap(),
            Some(PushResult::Ok)
        );
        assert_eq!(remote_main(&f), Some(next));
    }

    #[test]
    fn objects_are_complete_before_the_ref_moves() {
        let f = fixture();
        let base = commit(&f.mirror, None, "base");
        let next = commit(&f.mirror, Some(base), "next");
        push(&f.mirror, &spec(next), false).unwrap();
        let remote = gix::open(&f.remote).unwrap();
        for id in [base, next] {
            let c = remote.find_commit(id).unwrap();
            let tree = c.tree().unwrap();
            let entry = tree.lookup_entry_by_path("dir/file.txt").unwrap().unwrap();
            assert!(remote.has_object(entry.object_id()));
        }
        // Up to date: nothing to do, still Ok.
        assert_eq!(
            push(&f.mirror, &spec(next), false).unwrap(),
            Some(PushResult::Ok)
        );
        // Backwards without force is a non-fast-forward, with force it lands.
        let Some(PushResult::Rejected(why)) = push(&f.mirror, &spec(base), false).unwrap() else {
            panic!("expected a rejection");
        };
        assert!(why.contains("[rejected] (non-fast-forward)"), "{why}");
        assert_eq!(
            push(&f.mirror, &spec(base), true).unwrap(),
            Some(PushResult::Ok)
        );
        assert_eq!(remote_main(&f), Some(base));
    }

    #[test]
    fn remote_urls_and_unusual_targets_use_the_git_binary() {
        let f = fixture();
        let base = commit(&f.mirror, None, "base");
        let op = "push test";
        // A refspec kargo does not make.
        assert!(
            Plan::new(&f.mirror, &f.remote, &["main".into()], false, op)
                .unwrap()
                .is_err()
        );
        // receive.* options.
        let config = f.remote.join("config");
        let original = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            format!("{original}[receive]\n\tdenyNonFastForwards = true\n"),
        )
        .unwrap();
        let fallback = Plan::new(&f.mirror, &f.remote, &spec(base), false, op)
            .unwrap()
            .err()
            .unwrap();
        assert!(fallback.contains("denyNonFastForwards"), "{fallback}");
        // Options that change nothing here keep the push in-process (PipelineTest's
        // fixture turns off receive.autogc).
        std::fs::write(
            &config,
            format!(
                "{original}[receive]\n\tautogc = false\n\tdenyNonFastForwards = false\n[gc]\n\tauto = 0\n"
            ),
        )
        .unwrap();
        assert!(
            Plan::new(&f.mirror, &f.remote, &spec(base), false, op)
                .unwrap()
                .is_ok()
        );
        std::fs::write(&config, &original).unwrap();
        assert!(
            Plan::new(&f.mirror, &f.remote, &spec(base), false, op)
                .unwrap()
                .is_ok()
        );
        // Switched off.
        let mut config = f.mirror.git.config().clone();
        config.local_push = false;
        let git = crate::Git::new(config, std::sync::Arc::new(crate::NoAuth));
        let m = git.mirror(f.mirror.url()).unwrap();
        assert_eq!(push(&m, &spec(base), false).unwrap(), None);
    }

    #[test]
    fn hooks_are_executable_files_not_ending_in_sample() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(active_hook(&dir.path().join("missing")), None);
        std::fs::write(dir.path().join("pre-receive.sample"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("update"), "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in ["pre-receive.sample", "update"] {
                std::fs::set_permissions(
                    dir.path().join(name),
                    std::fs::Permissions::from_mode(0o644),
                )
                .unwrap();
            }
            std::fs::set_permissions(
                dir.path().join("pre-receive.sample"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            // Not executable: git ignores it.
            assert_eq!(active_hook(dir.path()), None);
            std::fs::set_permissions(
                dir.path().join("update"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        assert_eq!(active_hook(dir.path()), Some("update".into()));
    }
}
