//! # kargo-git
//!
//! Git for GitOps promotion, on gitoxide (gix) with the `git` binary for push (gix cannot
//! push), except to repositories on this file system, which are pushed to in-process (see
//! [`GitConfig::local_push`]), and for the fetches of blobless mirrors (gix cannot ask for
//! a filter; see [`GitConfig::blobless`]). It depends on no other kargo crate.
//!
//! - [`Git`]: the entry point, holding a cache directory and a [`CredentialSource`].
//! - [`Mirror`]: a bare mirror of one remote in the cache: the first use fetches, later uses
//!   fetch only what is new; a lock file makes a cache safe for several processes. Mirrors
//!   made for promotions are shallow and blobless by default ([`GitConfig::depth`],
//!   [`GitConfig::blobless`]): history reads deepen them ([`Mirror::unshallow`]), and blobs
//!   are fetched when a checkout or an edit reads them.
//! - [`Mirror::commit_edits`] / [`Mirror::push_edits`]: commits without a work tree. The
//!   edits are applied to the branch tip's tree in the object database (new blobs, and new
//!   trees only along the changed paths); a rejected push fetches and re-runs the same edits
//!   on the new tip.
//! - [`Mirror::diff_commits`]: per-file unified diffs between two commits (what a push
//!   would change; dry runs report it without pushing).
//! - [`Mirror::walk_history`], [`Mirror::changed_paths`], [`Mirror::tag_details`]: reading
//!   history for artifact discovery (commits newest first, the files a commit changed, the
//!   commit and annotation behind a tag).
//! - [`Checkout`]: a work tree made from the mirror. It is lazy by default: files appear on
//!   disk when something asks for them ([`Checkout::materialize`]), so a promotion that
//!   touches three files of an 80,000-file repository writes three files. Commits compare
//!   what is on disk with the tree they came from; a rejected push rebases them onto the new
//!   tip (a three-way tree merge per commit) and retries.
//!
//! Credentials never appear on a command line, in a logged URL, in an error or in a log
//! line: HTTP passwords reach gix through a callback and the git binary through a
//! credential helper that reads an environment variable; SSH keys are written to a private
//! temporary file named in `GIT_SSH_COMMAND`. Like the git binary (and Kargo), HTTP basic
//! credentials are sent over plain `http://` too when the server asks for them (gix-transport's
//! `http-client-insecure-credentials`); use `https://` to keep them off the wire.
//!
//! All operations are blocking; async callers run them on a blocking thread.
#![forbid(unsafe_code)]

mod auth;
mod checkout;
mod cli;
mod diff;
mod edits;
mod error;
mod fetch_sharing;
mod history;
mod integration;
mod local_push;
mod mirror;
mod partial;
mod push_group;
mod replay;
mod treeless;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{CredentialSource, GitAuth, NoAuth, Secret, StaticAuth, redact_url};
pub use checkout::{Change, ChangeKind, Checkout, CheckoutOptions, CheckoutTarget, CommitOutcome};
pub use diff::FileDiff;
pub use edits::{Edit, EditResult, PushOutcome};
pub use error::{GitError, GitErrorKind, Result};
pub use gix::ObjectId;
pub use history::{TagAnnotation, TagDetails};
pub use integration::{Integration, PushIntegrationPolicy};
pub use mirror::{CommitInfo, FetchSpec, Mirror, RemoteRef, TreeEntryInfo};

/// Settings of a [`Git`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GitConfig {
    /// Where mirrors live.
    pub cache_dir: PathBuf,
    /// The git binary used for push.
    pub git_binary: PathBuf,
    /// Push to repositories on this file system (`file://` URLs and absolute paths)
    /// in-process instead of running `git push` (default true). Whenever receive-pack would
    /// do more than store objects and move references there (hooks, `receive.*` options, a
    /// non-bare target, …) the git binary is used anyway; see `ARCHITECTURE.md`.
    pub local_push: bool,
    /// How often a rejected push is retried (Kargo's `maxAttempts`, default 10).
    pub max_push_attempts: u32,
    /// The first retry delay; each retry multiplies it by 1.5, with ±50 % jitter.
    pub retry_initial: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// History depth of a mirror made by a checkout or a commit ([`Mirror::checkout`],
    /// [`Mirror::push_edits`]): default 1, the branch tip only, which is all a promotion
    /// needs. A mirror that already holds full history stays full; reads that need more
    /// history ([`Mirror::walk_history`], [`Mirror::log`], [`Mirror::changed_paths`])
    /// deepen a shallow mirror to its full history ([`Mirror::unshallow`]). `None`: full
    /// history from the start.
    pub depth: Option<std::num::NonZeroU32>,
    /// Make new shallow mirrors blobless (default true): their first fetch gets commits
    /// and trees only (`--filter=blob:none`, with the git binary, which gix cannot do), and
    /// the blobs a checkout writes or an edit reads are fetched when needed, one request
    /// per read. Every later fetch into such a mirror runs the git binary. Without the git
    /// binary, or with credentials in the URL, mirrors get their blobs as before.
    pub blobless: bool,
    /// Make new blobless mirrors treeless as well (default true; no effect without
    /// [`GitConfig::blobless`]): their first fetch gets commits only
    /// (`--filter=tree:0`). A checkout fetches the directories along a path when it reads
    /// or commits there, one request per directory level (each with the files directly in
    /// it), and the whole trees when something needs them: history reads, merges and
    /// rebases, a whole checkout, reads at a revision ([`Mirror::complete_trees`]). That
    /// keeps a promotion's first clone of a large repository down to a few small
    /// requests, where a blobless clone has the server pack every directory of the tip.
    pub treeless: bool,
    /// The identity of commits made when a step names none (Kargo: ClusterConfig's
    /// `spec.gitClient`); `None`: the built-in `Kargo <no-reply@kargo.io>`.
    pub default_author: Option<Signature>,
    /// How a rejected branch push integrates the remote's new commits before retrying
    /// (Kargo's push integration policy; default [`PushIntegrationPolicy::AlwaysRebase`]).
    pub push_integration_policy: PushIntegrationPolicy,
}

impl GitConfig {
    /// Defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            git_binary: PathBuf::from("git"),
            local_push: true,
            max_push_attempts: 10,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            depth: std::num::NonZeroU32::new(1),
            blobless: true,
            treeless: true,
            default_author: None,
            push_integration_policy: PushIntegrationPolicy::AlwaysRebase,
        }
    }
}

/// The entry point: a mirror cache plus credentials.
#[derive(Clone)]
pub struct Git {
    pub(crate) config: Arc<GitConfig>,
    pub(crate) credentials: Arc<dyn CredentialSource>,
    pub(crate) interrupt: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) insecure_skip_tls_verify: bool,
}

impl std::fmt::Debug for Git {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Git")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Git {
    /// A client with `config` and credentials from `credentials`.
    pub fn new(config: GitConfig, credentials: Arc<dyn CredentialSource>) -> Self {
        Self {
            config: Arc::new(config),
            credentials,
            interrupt: Arc::default(),
            insecure_skip_tls_verify: false,
        }
    }

    /// This client without TLS certificate verification for `https://` remotes when
    /// `skip` is set (Kargo's `insecureSkipTLSVerify`: a server with a self-signed
    /// certificate): fetches and ls-remote accept any certificate, and pushes run `git`
    /// with `http.sslVerify=false`. Off by default.
    pub fn with_insecure_skip_tls_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_tls_verify = skip;
        self
    }

    /// The flag that interrupts this client's operations: once set, fetches stop as soon
    /// as gix notices, and push loops give up before their next attempt or during their
    /// backoff with [`GitErrorKind::Interrupted`]. Shared by every mirror and checkout made
    /// from this client.
    pub fn interrupt_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.interrupt.clone()
    }

    pub(crate) fn check_interrupted(&self, op: &str) -> Result<()> {
        if self.interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(GitError::new(GitErrorKind::Interrupted, op, "interrupted"));
        }
        Ok(())
    }

    /// Sleeps `d` in short slices, returning early with an error when interrupted.
    pub(crate) fn sleep(&self, d: Duration, op: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + d;
        loop {
            self.check_interrupted(op)?;
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// The settings.
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// The mirror of `url` (created empty on first use; call [`Mirror::fetch`] to fill it).
    pub fn mirror(&self, url: &str) -> Result<Mirror> {
        Mirror::new(self.clone(), url)
    }

    /// Lists the references of a remote.
    pub fn ls_remote(&self, url: &str) -> Result<Vec<RemoteRef>> {
        self.mirror(url)?.ls_remote()
    }
}

/// A commit author or committer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The name.
    pub name: String,
    /// The e-mail address.
    pub email: String,
    /// Seconds since the epoch (`None`: now).
    pub time: Option<i64>,
}

impl Signature {
    /// A signature with the current time.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            email: email.into(),
            time: None,
        }
    }

    pub(crate) fn to_gix(&self) -> gix::actor::Signature {
        let seconds = self.time.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
                .unwrap_or(0)
        });
        gix::actor::Signature {
            name: self.name.clone().into(),
            email: self.email.clone().into(),
            time: gix::date::Time::new(seconds, 0),
        }
    }
}
