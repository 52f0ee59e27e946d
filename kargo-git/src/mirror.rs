//! The local mirror cache: one bare repository per remote URL under a cache directory.
//!
//! The first use of a remote creates the mirror and fetches into it; later uses fetch only
//! what is new. Work trees ([`crate::Checkout`]) and object-database commits
//! ([`Mirror::commit_edits`]) are made from the mirror. A lock file per mirror makes it
//! safe for several processes to share one cache.

use std::collections::BTreeMap;
use std::fs::File;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::remote::Direction;

use crate::Git;
use crate::auth::{GitAuth, redact_url};
use crate::cli;
use crate::error::{GitError, GitErrorKind, Result};

/// A reference on a remote, as `ls-remote` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// The full name (`refs/heads/main`, `refs/tags/v1.0.0`, `HEAD`).
    pub name: String,
    /// The object it points to (the tag object for annotated tags).
    pub target: Option<ObjectId>,
    /// For annotated tags: the peeled commit.
    pub peeled: Option<ObjectId>,
    /// For symbolic refs (`HEAD`): the ref it points to, e.g. `refs/heads/main`.
    pub symref_target: Option<String>,
}

/// What a fetch should get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSpec {
    /// Branches to fetch (short names); empty with `all_branches` false fetches nothing but tags.
    pub branches: Vec<String>,
    /// Fetch every branch.
    pub all_branches: bool,
    /// Tags to fetch (short names).
    pub tags: Vec<String>,
    /// Fetch every tag.
    pub all_tags: bool,
    /// Limit history to this many commits. Applied when the mirror is new (it then becomes
    /// shallow), and, in a shallow mirror, to a fetch that brings refs the mirror does not
    /// have yet. A fetch that updates refs a shallow mirror already has gets everything
    /// between the new tips and what the mirror holds (like `git fetch` in a shallow
    /// clone), so the history stays connected; a full mirror stays full.
    pub depth: Option<NonZeroU32>,
}

impl FetchSpec {
    /// One branch.
    pub fn branch(name: impl Into<String>) -> Self {
        Self {
            branches: vec![name.into()],
            ..Self::default()
        }
    }

    pub(crate) fn refspecs(&self) -> Vec<String> {
        let mut specs = Vec::new();
        if self.all_branches {
            specs.push("+refs/heads/*:refs/heads/*".to_owned());
        } else {
            for b in &self.branches {
                specs.push(format!("+refs/heads/{b}:refs/heads/{b}"));
            }
        }
        if self.all_tags {
            specs.push("+refs/tags/*:refs/tags/*".to_owned());
        } else {
            for t in &self.tags {
                specs.push(format!("+refs/tags/{t}:refs/tags/{t}"));
            }
        }
        specs
    }
}

/// A commit's metadata, as `log` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit ID.
    pub id: ObjectId,
    /// The full message.
    pub message: String,
    /// `Name <email>`.
    pub author: String,
    /// `Name <email>`.
    pub committer: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// Parent IDs.
    pub parents: Vec<ObjectId>,
}

/// An entry of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntryInfo {
    /// The path relative to the repository root.
    pub path: String,
    /// The object ID.
    pub id: ObjectId,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A bare mirror of one remote in the cache directory.
#[derive(Clone)]
pub struct Mirror {
    pub(crate) git: Git,
    pub(crate) url: String,
    pub(crate) path: PathBuf,
    /// The opened repository, shared by clones of this handle (gix re-reads refs and
    /// discovers new packs on its own, so one open serves every later operation).
    /// Dropped after the git binary wrote objects into the mirror ([`Mirror::reopen`]):
    /// gix notices new packs by itself, but not reliably when several appear within the
    /// same second.
    cached: std::sync::Arc<std::sync::Mutex<Option<gix::ThreadSafeRepository>>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("url", &redact_url(&self.url))
            .field("path", &self.path)
            .finish()
    }
}

/// An exclusive lock on a mirror, released on drop.
pub(crate) struct MirrorLock {
    _file: File,
}

impl Mirror {
    pub(crate) fn new(git: Git, url: &str) -> Result<Self> {
        let key = {
            use sha1::{Digest, Sha1};
            let mut h = Sha1::new();
            h.update(redact_url(url).trim_end_matches('/').as_bytes());
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let path = git.config.cache_dir.join(format!("{key}.git"));
        std::fs::create_dir_all(&git.config.cache_dir)
            .map_err(|e| GitError::io("create the cache directory", &e))?;
        let m = Self {
            git,
            url: url.to_owned(),
            path,
            cached: Default::default(),
        };
        {
            let _lock = m.lock()?;
            if m.path.join("HEAD").exists() {
                m.remove_stale_locks();
            } else {
                m.create()?;
            }
        }
        Ok(m)
    }

    /// Creates the bare repository in a scratch directory next to it and renames it into
    /// place, so a process killed half-way leaves no half-made mirror (which would make
    /// every later creation fail on a non-empty directory). With the mirror lock held.
    fn create(&self) -> Result<()> {
        let io = |what: &str, e: std::io::Error| GitError::io(what, &e);
        let scratch = self.path.with_extension("git.init");
        for dir in [&scratch, &self.path] {
            // Left by a process killed while creating the mirror (no HEAD yet).
            if dir.exists() {
                tracing::warn!(path = %dir.display(), "removing a half-made git mirror");
                std::fs::remove_dir_all(dir).map_err(|e| io("remove a half-made mirror", e))?;
            }
        }
        gix::init_bare(&scratch)
            .map_err(|e| GitError::new(GitErrorKind::Io, "create mirror", e.to_string()))?;
        std::fs::rename(&scratch, &self.path).map_err(|e| io("create mirror", e))
    }

    /// Removes the lock files that a process killed in the middle of a reference,
    /// `shallow` or `packed-refs` update leaves in the mirror: gix would wait for them and
    /// then fail every later fetch with "might need manual deletion". Called with the
    /// mirror lock held; every writer of the mirror holds it, so such a file is stale.
    fn remove_stale_locks(&self) {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&p, found),
                    Ok(_) if p.extension().is_some_and(|x| x == "lock") => found.push(p),
                    _ => {}
                }
            }
        }
        let mut found: Vec<PathBuf> = [
            "HEAD.lock",
            "packed-refs.lock",
            "shallow.lock",
            "config.lock",
            "FETCH_HEAD.lock",
        ]
        .iter()
        .map(|n| self.path.join(n))
        .filter(|p| p.exists())
        .collect();
        walk(&self.path.join("refs"), &mut found);
        for p in found {
            tracing::warn!(path = %p.display(), "removing a stale lock file from the git mirror (left by a killed process)");
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a stale lock file");
            }
        }
    }

    /// The remote URL (may hold credentials: do not log; see [`Mirror::display_url`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client this mirror belongs to.
    pub fn git(&self) -> &Git {
        &self.git
    }

    /// The URL without credentials, for messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The mirror's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn lock(&self) -> Result<MirrorLock> {
        let lock_path = self.path.with_extension("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| GitError::io("open the mirror lock", &e))?;
        file.lock()
            .map_err(|e| GitError::io("lock the mirror", &e))?;
        Ok(MirrorLock { _file: file })
    }

    pub(crate) fn auth(&self) -> Option<GitAuth> {
        self.git.credentials.credentials(&self.url)
    }

    /// Opens the mirror with gix (isolated from user and system configuration).
    pub(crate) fn open(&self) -> Result<gix::Repository> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ts) = cached.as_ref() {
            return Ok(ts.to_thread_local());
        }
        let repo = self.open_with_ssh(None)?;
        *cached = Some(repo.clone().into_sync());
        Ok(repo)
    }

    /// Forgets the opened repository, so that the next [`Mirror::open`] sees every pack
    /// the git binary wrote; returns a new one.
    pub(crate) fn reopen(&self) -> Result<gix::Repository> {
        *self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.open()
    }

    /// Opens the mirror, with `core.sshCommand` set when SSH credentials are in use.
    pub(crate) fn open_with_ssh(&self, ssh: Option<&cli::SshSetup>) -> Result<gix::Repository> {
        let mut overrides: Vec<String> = vec![
            "core.bare=true".into(),
            "user.name=kargo".into(),
            "user.email=kargo@localhost".into(),
        ];
        if let Some(ssh) = ssh {
            overrides.push(format!("core.sshCommand={}", ssh.command()));
        }
        gix::open_opts(
            &self.path,
            gix::open::Options::isolated().config_overrides(overrides),
        )
        .map_err(|e| GitError::new(GitErrorKind::Io, "open mirror", e.to_string()))
    }

    fn op(&self, what: &str) -> String {
        format!("{what} {}", self.display_url())
    }

    /// Fetches into the mirror and returns the fetched refs with their new targets.
    ///
    /// A caller that waited for the mirror's lock while a fetch of the same refs ran,
    /// which began after this call, gets that fetch's result without fetching again.
    pub fn fetch(&self, spec: &FetchSpec) -> Result<BTreeMap<String, ObjectId>> {
        let asked = std::time::Instant::now();
        let _lock = self.lock()?;
        if let Some(refs) = crate::fetch_sharing::fresh_result(&self.path, spec, asked) {
            tracing::debug!(url = %self.display_url(), "sharing a fetch that began after this one was asked for");
            return Ok(refs);
        }
        let began = std::time::Instant::now();
        let refs = self.fetch_locked(spec)?;
        crate::fetch_sharing::record(&self.path, spec, began, &refs);
        Ok(refs)
    }

    pub(crate) fn fetch_locked(&self, spec: &FetchSpec) -> Result<BTreeMap<String, ObjectId>> {
        self.fetch_with(spec, false)
    }

    /// Whether the mirror is shallow (made with a [`FetchSpec::depth`]): commits at its
    /// shallow boundary have parents it does not hold.
    pub fn is_shallow(&self) -> Result<bool> {
        self.open()?
            .is_shallow()
            .map_err(|e| GitError::new(GitErrorKind::Other, "read the shallow file", e.to_string()))
    }

    /// The commits at the shallow boundary (whose parents the mirror does not hold); empty
    /// for a full mirror.
    pub(crate) fn shallow_boundary(&self) -> Result<std::collections::HashSet<ObjectId>> {
        let repo = self.open()?;
        let commits = repo.shallow_commits().map_err(|e| {
            GitError::new(GitErrorKind::Other, "read the shallow file", e.to_string())
        })?;
        Ok(commits
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default())
    }

    /// Makes a shallow mirror full (`git fetch --unshallow`): fetches the whole history of
    /// every branch and tag it holds. Nothing happens for a full mirror. History reads
    /// ([`Mirror::walk_history`], [`Mirror::log`], [`Mirror::changed_paths`]) call it when
    /// they would cross the shallow boundary.
    pub fn unshallow(&self) -> Result<()> {
        // The history fetched next is complete relative to the commits held: make those so.
        self.complete_trees()?;
        let _lock = self.lock()?;
        if !self.is_shallow()? {
            return Ok(());
        }
        let repo = self.open()?;
        let mut spec = FetchSpec::default();
        let refs = repo
            .references()
            .map_err(|e| GitError::new(GitErrorKind::Other, "list refs", e.to_string()))?;
        for r in refs
            .all()
            .map_err(|e| GitError::new(GitErrorKind::Other, "list refs", e.to_string()))?
            .flatten()
        {
            let name = r.name().as_bstr().to_str_lossy();
            if let Some(b) = name.strip_prefix("refs/heads/") {
                spec.branches.push(b.to_owned());
            } else if let Some(t) = name.strip_prefix("refs/tags/") {
                spec.tags.push(t.to_owned());
            }
        }
        tracing::info!(url = %self.display_url(), branches = spec.branches.len(), tags = spec.tags.len(), "deepening a shallow mirror to its full history");
        match self.fetch_with(&spec, true) {
            // A branch or tag deleted on the remote since: unshallow what is left.
            Err(e) if e.kind == GitErrorKind::NotFound => {
                let all = FetchSpec {
                    all_branches: true,
                    all_tags: !spec.tags.is_empty(),
                    ..FetchSpec::default()
                };
                self.fetch_with(&all, true)?;
            }
            other => {
                other?;
            }
        }
        Ok(())
    }

    /// A fetch; `unshallow`: get the whole history (`--unshallow`), even when every tip is
    /// already in the mirror.
    fn fetch_with(&self, spec: &FetchSpec, unshallow: bool) -> Result<BTreeMap<String, ObjectId>> {
        let op = self.op("fetch");
        self.git.check_interrupted(&op)?;
        let specs = spec.refspecs();
        if specs.is_empty() {
            return Ok(BTreeMap::new());
        }
        let auth = self.auth();
        let ssh = cli::SshSetup::new(auth.as_ref())?;
        let repo = self.open_with_ssh(ssh.as_ref())?;
        let _span = tracing::debug_span!("git.fetch", url = %self.display_url()).entered();
        let limit = match spec.depth {
            Some(d) if !unshallow && wants_depth(&repo, spec) => Some(d),
            _ => None,
        };
        let blobless = self.is_blobless();
        // A new mirror: commits and trees only, when the git binary can fetch them.
        if let Some(d) = limit
            && self.git.config.blobless
            && (blobless || !has_refs(&repo))
            && let Some(refs) = self.fetch_blobless_new(spec, d)?
        {
            return Ok(refs);
        }
        let shallow = if unshallow {
            gix::remote::fetch::Shallow::undo()
        } else {
            match limit {
                Some(d) => gix::remote::fetch::Shallow::DepthAtRemote(d),
                None => gix::remote::fetch::Shallow::NoChange,
            }
        };
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| GitError::new(GitErrorKind::Invalid, &op, self.scrub(&e.to_string())))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
            .map_err(|e| GitError::new(GitErrorKind::Invalid, &op, e.to_string()))?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| GitError::classify(&op, self.scrub(&error_chain(&e))))?;
        let connection = with_basic_credentials(connection, auth.as_ref());
        let connection = self.with_tls_options(&repo, connection, &op)?;
        let prepared = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| GitError::classify(&op, self.scrub(&error_chain(&e))))?;
        // Nothing moved: every advertised tip is already what the mirror has. Skip the
        // negotiation (which, for a shallow mirror, makes the server walk history).
        let mut current = BTreeMap::new();
        let mut up_to_date = !unshallow && !prepared.ref_map().mappings.is_empty();
        for m in &prepared.ref_map().mappings {
            let (Some(local), Some(id)) = (m.local.as_ref(), m.remote.as_id()) else {
                up_to_date = false;
                break;
            };
            let name = local.to_str_lossy().into_owned();
            let have = repo
                .try_find_reference(name.as_str())
                .ok()
                .flatten()
                .and_then(|r| r.target().try_id().map(ToOwned::to_owned));
            if have.as_deref() != Some(id) || !repo.has_object(id) {
                up_to_date = false;
                break;
            }
            current.insert(name, id.to_owned());
        }
        if up_to_date {
            tracing::debug!("mirror is up to date; nothing to fetch");
            return Ok(current);
        }
        if blobless {
            // gix cannot complete a thin pack against a blob the mirror lacks: git can.
            drop(prepared);
            let history = match (unshallow, limit) {
                (true, _) => crate::partial::History::Unshallow,
                (false, Some(d)) => crate::partial::History::Depth(d),
                (false, None) => crate::partial::History::Connected,
            };
            return self.fetch_cli(spec, history, crate::partial::Filter::None);
        }
        let outcome = prepared
            .with_shallow(shallow)
            .receive(gix::progress::Discard, &self.git.interrupt)
            .map_err(|e| GitError::classify(&op, self.scrub(&error_chain(&e))))?;
        let mut out = BTreeMap::new();
        for m in &outcome.ref_map.mappings {
            if let (Some(local), Some(id)) = (m.local.as_ref(), m.remote.as_id()) {
                out.insert(local.to_str_lossy().into_owned(), id.to_owned());
            }
        }
        Ok(out)
    }

    /// Lists the remote's references (`git ls-remote`), without fetching objects.
    pub fn ls_remote(&self) -> Result<Vec<RemoteRef>> {
        let op = self.op("ls-remote");
        let auth = self.auth();
        let ssh = cli::SshSetup::new(auth.as_ref())?;
        let repo = self.open_with_ssh(ssh.as_ref())?;
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| GitError::new(GitErrorKind::Invalid, &op, self.scrub(&e.to_string())))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(Some("+refs/*:refs/kargo-ls/*"), Direction::Fetch)
            .map_err(|e| GitError::new(GitErrorKind::Invalid, &op, e.to_string()))?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| GitError::classify(&op, self.scrub(&error_chain(&e))))?;
        let connection = with_basic_credentials(connection, auth.as_ref());
        let connection = self.with_tls_options(&repo, connection, &op)?;
        let (map, _) = connection
            .ref_map(
                gix::progress::Discard,
                gix::remote::ref_map::Options {
                    prefix_from_spec_as_filter_on_remote: false,
                    ..Default::default()
                },
            )
            .map_err(|e| GitError::classify(&op, self.scrub(&error_chain(&e))))?;
        Ok(map
            .remote_refs
            .iter()
            .map(|r| {
                let (name, target, peeled) = r.unpack();
                let symref_target = match r {
                    gix::protocol::handshake::Ref::Symbolic { target, .. } => {
                        Some(target.to_str_lossy().into_owned())
                    }
                    _ => None,
                };
                RemoteRef {
                    name: name.to_str_lossy().into_owned(),
                    target: target.map(ToOwned::to_owned),
                    peeled: peeled.map(ToOwned::to_owned),
                    symref_target,
                }
            })
            .collect())
    }

    /// Resolves a revision (`main`, `refs/tags/v1`, a commit ID) in the mirror to a commit.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        let repo = self.open()?;
        resolve_commit(&repo, rev)
    }

    /// Reads a file at a revision; `None` when the path does not exist there.
    pub fn read_file(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>> {
        self.complete_trees()?;
        let repo = self.open()?;
        let commit = resolve_commit(&repo, rev)?;
        let tree = commit_tree(&repo, commit)?;
        read_blob_at(self, &repo, tree, path)
    }

    /// Lists a directory (`""` for the root) at a revision.
    pub fn list_tree(&self, rev: &str, dir: &str) -> Result<Vec<TreeEntryInfo>> {
        self.complete_trees()?;
        let repo = self.open()?;
        let commit = resolve_commit(&repo, rev)?;
        let mut tree_id = commit_tree(&repo, commit)?;
        let dir = dir.trim_matches('/');
        if !dir.is_empty() {
            let tree = repo
                .find_tree(tree_id)
                .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?;
            let entry = tree
                .lookup_entry_by_path(dir)
                .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?
                .ok_or_else(|| {
                    GitError::new(
                        GitErrorKind::NotFound,
                        "list tree",
                        format!("no directory {dir:?} at {rev}"),
                    )
                })?;
            if !entry.mode().is_tree() {
                return Err(GitError::new(
                    GitErrorKind::Invalid,
                    "list tree",
                    format!("{dir:?} is not a directory"),
                ));
            }
            tree_id = entry.object_id();
        }
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?;
        let mut out = Vec::new();
        for e in tree.iter() {
            let e =
                e.map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?;
            let name = e.filename().to_str_lossy();
            out.push(TreeEntryInfo {
                path: if dir.is_empty() {
                    name.into_owned()
                } else {
                    format!("{dir}/{name}")
                },
                id: e.object_id(),
                is_dir: e.mode().is_tree(),
            });
        }
        Ok(out)
    }

    /// The history from `rev`, newest first, at most `limit` commits. A shallow mirror
    /// whose history ends before `limit` commits is deepened to its full history first
    /// ([`Mirror::unshallow`]).
    pub fn log(&self, rev: &str, limit: usize) -> Result<Vec<CommitInfo>> {
        let boundary = self.shallow_boundary()?;
        let ids = self.log_ids(rev, limit)?;
        let crosses = ids
            .iter()
            .enumerate()
            .any(|(i, id)| i + 1 < limit && boundary.contains(id));
        let ids = if crosses {
            self.unshallow()?;
            self.log_ids(rev, limit)?
        } else {
            ids
        };
        let repo = self.open()?;
        ids.into_iter().map(|id| commit_info(&repo, id)).collect()
    }

    fn log_ids(&self, rev: &str, limit: usize) -> Result<Vec<ObjectId>> {
        let repo = self.open()?;
        let start = resolve_commit(&repo, rev)?;
        let walk = repo
            .rev_walk([start])
            .all()
            .map_err(|e| GitError::new(GitErrorKind::Other, "log", e.to_string()))?;
        walk.take(limit)
            .map(|info| {
                info.map(|i| i.id)
                    .map_err(|e| GitError::new(GitErrorKind::Other, "log", e.to_string()))
            })
            .collect()
    }

    /// Creates a tag in the mirror: annotated when `message` is given (tagger as given),
    /// lightweight otherwise. Fails if the tag exists, unless `force`.
    pub fn tag(
        &self,
        name: &str,
        target: ObjectId,
        message: Option<&str>,
        tagger: &crate::Signature,
        force: bool,
    ) -> Result<ObjectId> {
        let _lock = self.lock()?;
        let repo = self.open()?;
        let constraint = if force {
            gix::refs::transaction::PreviousValue::Any
        } else {
            gix::refs::transaction::PreviousValue::MustNotExist
        };
        let op = format!("tag {name}");
        let r = match message {
            Some(m) => {
                let sig = tagger.to_gix();
                let mut buf = gix::date::parse::TimeBuf::default();
                repo.tag(
                    name,
                    target,
                    gix::objs::Kind::Commit,
                    Some(sig.to_ref(&mut buf)),
                    m,
                    constraint,
                )
            }
            None => repo.tag_reference(name, target, constraint),
        }
        .map_err(|e| GitError::new(GitErrorKind::Invalid, &op, e.to_string()))?;
        Ok(r.id().detach())
    }

    /// Pushes `refspec` (e.g. `<commit>:refs/heads/main`) with the git binary.
    pub(crate) fn push_raw(&self, refspecs: &[String], force: bool) -> Result<cli::PushResult> {
        cli::push(&self.git, self, refspecs, force)
    }

    /// Sets a local ref of the mirror (after a successful push).
    pub(crate) fn set_ref(&self, name: &str, id: ObjectId) -> Result<()> {
        let repo = self.open()?;
        let full: gix::refs::FullName = name.try_into().map_err(|_| {
            GitError::new(
                GitErrorKind::Invalid,
                "update ref",
                format!("invalid ref {name:?}"),
            )
        })?;
        repo.edit_reference(gix::refs::transaction::RefEdit {
            change: gix::refs::transaction::Change::Update {
                log: Default::default(),
                expected: gix::refs::transaction::PreviousValue::Any,
                new: gix::refs::Target::Object(id),
            },
            name: full,
            deref: false,
        })
        .map_err(|e| GitError::new(GitErrorKind::Other, "update ref", e.to_string()))?;
        Ok(())
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut s = text.replace(&self.url, &self.display_url());
        match self.auth() {
            Some(GitAuth::Basic { password, .. }) if !password.expose().is_empty() => {
                s = s.replace(password.expose(), "***");
            }
            Some(GitAuth::SshKey { private_key, .. }) => {
                for line in private_key.expose().lines().filter(|l| l.len() > 16) {
                    s = s.replace(line, "***");
                }
            }
            _ => {}
        }
        s
    }
}

/// Whether a fetch of `spec` with a depth should limit history: when the mirror is new
/// (no refs), or shallow and the fetch asks for refs it does not have yet (their history
/// would otherwise come in full). Updating refs a shallow mirror has fetches without a
/// depth, which keeps the history between old and new tips connected.
fn wants_depth(repo: &gix::Repository, spec: &FetchSpec) -> bool {
    if !has_refs(repo) {
        return true;
    }
    if !repo.is_shallow().unwrap_or(false) {
        return false;
    }
    let missing = |name: String| {
        repo.try_find_reference(name.as_str())
            .ok()
            .flatten()
            .is_none()
    };
    spec.all_branches
        || spec.all_tags
        || spec
            .branches
            .iter()
            .any(|b| missing(format!("refs/heads/{b}")))
        || spec.tags.iter().any(|t| missing(format!("refs/tags/{t}")))
}

/// Whether the repository has any reference (a new mirror has none).
fn has_refs(repo: &gix::Repository) -> bool {
    repo.references()
        .map(|r| r.all().map(|mut i| i.next().is_some()).unwrap_or(false))
        .unwrap_or(false)
}

/// An error with its sources, `outer: inner: innermost` (gix's top-level messages, such as
/// "Transport handshake failed", hide the HTTP status or the missing repository).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

impl Mirror {
    /// With [`Git::with_insecure_skip_tls_verify`] and an `https://` remote: the
    /// repository's HTTP options (from its git configuration) with certificate
    /// verification off, for gix's reqwest client too (which reads no `sslVerify`).
    ///
    /// [`Git::with_insecure_skip_tls_verify`]: crate::Git::with_insecure_skip_tls_verify
    fn with_tls_options<'a, 'r, T: gix::protocol::transport::client::blocking_io::Transport>(
        &self,
        repo: &gix::Repository,
        connection: gix::remote::Connection<'a, 'static, 'r, T>,
        op: &str,
    ) -> Result<gix::remote::Connection<'a, 'static, 'r, T>> {
        use gix::protocol::transport::client::blocking_io::http;
        if !self.git.insecure_skip_tls_verify
            || !self.url.to_ascii_lowercase().starts_with("https://")
        {
            return Ok(connection);
        }
        let configured = repo
            .transport_options(self.url.as_str(), None)
            .map_err(|e| GitError::new(GitErrorKind::Invalid, op, self.scrub(&e.to_string())))?;
        let mut options = configured
            .and_then(|o| o.downcast::<http::Options>().ok())
            .map(|o| *o)
            .unwrap_or_default();
        options.ssl_verify = false;
        let configure_client: Box<http::reqwest::ConfigureClientFn> =
            Box::new(|builder| Ok(builder.danger_accept_invalid_certs(true)));
        let backend = http::reqwest::Options {
            configure_client: Some(configure_client),
            configure_request: None,
        };
        options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
        tracing::warn!(url = %self.display_url(), "TLS certificate verification is off for this remote (insecureSkipTLSVerify)");
        Ok(connection.with_transport_options(Box::new(options)))
    }
}

fn with_basic_credentials<'a, 'r, T: gix::protocol::transport::client::blocking_io::Transport>(
    connection: gix::remote::Connection<'a, 'static, 'r, T>,
    auth: Option<&GitAuth>,
) -> gix::remote::Connection<'a, 'static, 'r, T> {
    match auth {
        Some(GitAuth::Basic { username, password }) => {
            let username = username.clone();
            let password = password.clone();
            connection.with_credentials(move |action| match action {
                gix::credentials::helper::Action::Get(ctx) => {
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: gix::sec::identity::Account {
                            username: username.clone(),
                            password: password.expose().to_owned(),
                            oauth_refresh_token: None,
                        },
                        next: ctx.into(),
                    }))
                }
                _ => Ok(None),
            })
        }
        // No helper and no prompt: anonymous.
        _ => connection.with_credentials(|_| Ok(None)),
    }
}

pub(crate) fn resolve_commit(repo: &gix::Repository, rev: &str) -> Result<ObjectId> {
    let op = format!("resolve {rev:?}");
    let candidates = [
        rev.to_owned(),
        format!("refs/heads/{rev}"),
        format!("refs/tags/{rev}"),
    ];
    for c in &candidates {
        if let Ok(id) = repo.rev_parse_single(c.as_str()) {
            let obj = id
                .object()
                .map_err(|e| GitError::new(GitErrorKind::Other, &op, e.to_string()))?;
            let commit = obj
                .peel_to_commit()
                .map_err(|e| GitError::new(GitErrorKind::Invalid, &op, e.to_string()))?;
            return Ok(commit.id);
        }
    }
    Err(GitError::new(
        GitErrorKind::NotFound,
        op,
        "no such branch, tag or commit",
    ))
}

pub(crate) fn commit_tree(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let c = repo
        .find_commit(commit)
        .map_err(|e| GitError::new(GitErrorKind::NotFound, "read commit", e.to_string()))?;
    c.tree_id()
        .map(|t| t.detach())
        .map_err(|e| GitError::new(GitErrorKind::Other, "read commit", e.to_string()))
}

pub(crate) fn read_blob_at(
    mirror: &Mirror,
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
) -> Result<Option<Vec<u8>>> {
    let tree = repo
        .find_tree(tree)
        .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?;
    let Some(entry) = tree
        .lookup_entry_by_path(path.trim_matches('/'))
        .map_err(|e| GitError::new(GitErrorKind::Other, "read tree", e.to_string()))?
    else {
        return Ok(None);
    };
    if entry.mode().is_tree() {
        return Err(GitError::new(
            GitErrorKind::Invalid,
            "read file",
            format!("{path:?} is a directory"),
        ));
    }
    let fresh;
    let repo = if mirror.ensure_blobs(repo, [entry.object_id()])? {
        fresh = mirror.open()?;
        &fresh
    } else {
        repo
    };
    let blob = repo
        .find_object(entry.object_id())
        .map_err(|e| GitError::new(GitErrorKind::Other, "read blob", e.to_string()))?;
    Ok(Some(blob.data.clone()))
}

pub(crate) fn commit_info(repo: &gix::Repository, id: ObjectId) -> Result<CommitInfo> {
    let c = repo
        .find_commit(id)
        .map_err(|e| GitError::new(GitErrorKind::Other, "read commit", e.to_string()))?;
    let decoded = c
        .decode()
        .map_err(|e| GitError::new(GitErrorKind::Other, "read commit", e.to_string()))?;
    let sig = |s: gix::actor::SignatureRef<'_>| format!("{} <{}>", s.name, s.email);
    let author = decoded
        .author()
        .map_err(|e| GitError::new(GitErrorKind::Other, "read commit", e.to_string()))?;
    let committer = decoded
        .committer()
        .map_err(|e| GitError::new(GitErrorKind::Other, "read commit", e.to_string()))?;
    let time = committer.time().map(|t| t.seconds).unwrap_or_default();
    Ok(CommitInfo {
        id,
        message: decoded.message.to_str_lossy().into_owned(),
        author: sig(author),
        committer: sig(committer),
        time,
        parents: decoded.parents().collect(),
    })
}
