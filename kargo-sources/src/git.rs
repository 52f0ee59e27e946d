//! Git subscriptions: [`GitSource`], the `git` [`Source`], with Kargo's commit selection.
//!
//! # Strategies
//!
//! - `NewestFromBranch` (default): the history of `branch` (or of the remote's default
//!   branch, from `HEAD` in `ls-remote`), newest first by commit time, stopping at the first
//!   commit older than `since`. Commits must pass `expressionFilter` and the path filters;
//!   the first `discoveryLimit` that do are kept. Recorded `branch` is the configured one
//!   (empty for the default branch).
//! - `SemVer`, `Lexical`, `NewestTag`: the remote's tags, filtered by name
//!   (`ignoreTagsRegexes`, `allowTagsRegexes`; for SemVer also Masterminds parsing,
//!   `strictSemvers` and `semverConstraint`, exactly as for images, see
//!   [`crate::selection`]), ordered (SemVer: version descending, ties by the original string
//!   descending; Lexical: byte-wise descending; NewestTag: creator date descending, the tagger
//!   date of an annotated tag and the commit date of a lightweight one, ties by tag name
//!   descending), then filtered by `expressionFilter` and by the paths the tagged commit
//!   changed, until `discoveryLimit`. Annotated tags are dereferenced to their commit.
//!
//! # Filters
//!
//! - `expressionFilter` is a bare expr-lang expression (e.g. `!(subject contains 'skip ci')`)
//!   evaluated by [`kargo_core::expr::ExprEngine::compile_kargo_expression`]. Branch commits
//!   see `id`, `commitDate`, `author`, `committer`, `subject`; tags see `tag`, `id`,
//!   `creatorDate`, `author`, `committer`, `subject`, `tagger`, `annotation`. Dates are RFC
//!   3339 strings in UTC (`2024-01-02T03:04:05Z`, so they compare as text and with
//!   `date('2024-01-02')`) that answer Go's time methods (`commitDate.Year() >= 2023`);
//!   names are `Name <email>`. The result must be a boolean, or a value whose text Go's
//!   `strconv.ParseBool` accepts (the numbers 1 and 0, `'true'`...), as Kargo reads it;
//!   anything else fails the discovery.
//! - `includePaths` / `excludePaths` select files by exact base path (the path itself or
//!   anything under it), `glob:` pattern (`**` crosses directories, `*` does not) or
//!   `regex:` / `regexp:` (unanchored). A commit qualifies when ANY file it changed
//!   (compared with its first parent; a root commit: all its files) is included (or there
//!   are no includes) and not excluded.
//!
//! # The ls-remote short-circuit
//!
//! Every discovery starts with `ls-remote`. Per repository URL and subscription
//! configuration the source remembers what it observed (the branch tip; for tag strategies
//! the name-filtered tags with their IDs, unless there are more than
//! [`MAX_OBSERVED_TAGS`]) and the commits it found. When `ls-remote` shows the same refs
//! again, the previous commits are returned without fetching; [`GitSource::stats`] counts
//! both paths.
//!
//! Mirrors live in the [`GitConfig`]'s cache directory and are reused between discoveries.
//! Credentials come from the [`DiscoveryContext`] ([`CredentialKind::Git`], by repository
//! URL) on every discovery and never appear in a message or log line.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use kargo_core::expr::{CompiledExpr, ExprEngine, Scope};
use kargo_core::model::{CommitSelectionStrategy, GitSubscription};
use kargo_core::secret::{CredentialKind, Credentials};
use kargo_core::source::{
    DiscoveredCommit, Discovery, DiscoveryContext, Source, SourceError, SourceErrorKind,
};
use kargo_git::{
    CommitInfo, FetchSpec, Git, GitAuth, GitConfig, GitError, GitErrorKind, Mirror, ObjectId,
    RemoteRef, Secret, StaticAuth, TagDetails,
};
use serde_json::{Map, Value as Json};
use tracing::Instrument;

use crate::chart::version::Constraint;
use crate::path_filter::PathFilter;
use crate::selection::{TagFilter, select_lexical, select_semver};

/// Above this many (name-filtered) tags, the ls-remote short-circuit is disabled for a tag
/// subscription (Kargo's limit).
pub const MAX_OBSERVED_TAGS: usize = 1000;

/// The longest subject kept, in bytes, before `...` is appended (Kargo's limit).
pub const SUBJECT_MAX_LEN: usize = 80;

/// The default `discoveryLimit`.
const DEFAULT_LIMIT: usize = 20;

/// Counters of what a [`GitSource`] did, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitSourceStats {
    /// `ls-remote` calls that succeeded.
    pub ls_remotes: u64,
    /// Fetches into a mirror (each discovery that was not short-circuited).
    pub fetches: u64,
    /// Discoveries answered from the previous result because no ref had moved.
    pub short_circuits: u64,
    /// Discoveries that used another discovery's `ls-remote` of the same repository,
    /// taken during the same pass (no request to the remote).
    pub shared_ls_remotes: u64,
    /// Fetches skipped because the mirror already held every advertised tip.
    pub fetches_skipped: u64,
    /// Commits whose changed paths were computed (a tree diff each); every other
    /// path-filter check was answered from the per-commit cache all subscriptions share.
    pub tree_diffs: u64,
    /// Commits a branch discovery looked at: after a push, a subscription whose branch
    /// moved forward walks only the new commits.
    pub commits_walked: u64,
}

/// How many commits' changed paths a [`GitSource`] keeps (a commit ID names the same
/// change in every repository, so they never go stale); past it the cache starts over.
pub const CHANGED_PATHS_CACHE: usize = 200_000;

/// The `git` source (see the module documentation).
#[derive(Clone)]
pub struct GitSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("cache_dir", &self.inner.config.cache_dir)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: GitConfig,
    engine: ExprEngine,
    observed: Mutex<HashMap<String, Observed>>,
    /// Each commit's changed paths, shared by every subscription and discovery.
    changed: Mutex<HashMap<ObjectId, Arc<[String]>>>,
    /// The last `ls-remote` of each repository (by URL and credentials), and when it
    /// started: discoveries that may use a view at least that fresh share it.
    remotes: Mutex<HashMap<u64, RemoteView>>,
    /// Keys `remotes` (a URL with the credentials that read it: a view read with one
    /// Secret is never shown to a discovery with another).
    remote_keys: std::collections::hash_map::RandomState,
    ls_remotes: AtomicU64,
    fetches: AtomicU64,
    short_circuits: AtomicU64,
    tree_diffs: AtomicU64,
    commits_walked: AtomicU64,
    shared_ls_remotes: AtomicU64,
    fetches_skipped: AtomicU64,
}

/// A repository's refs and when the `ls-remote` that read them started.
type RemoteView = (std::time::Instant, Arc<[RemoteRef]>);

/// What one subscription saw last time.
struct Observed {
    refs: Vec<(String, String)>,
    commits: Vec<DiscoveredCommit>,
}

impl GitSource {
    /// A source whose mirrors live in `config.cache_dir`.
    pub fn new(config: GitConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                engine: ExprEngine::new(),
                observed: Mutex::new(HashMap::new()),
                changed: Mutex::new(HashMap::new()),
                remotes: Mutex::new(HashMap::new()),
                remote_keys: std::collections::hash_map::RandomState::new(),
                ls_remotes: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                short_circuits: AtomicU64::new(0),
                tree_diffs: AtomicU64::new(0),
                commits_walked: AtomicU64::new(0),
                shared_ls_remotes: AtomicU64::new(0),
                fetches_skipped: AtomicU64::new(0),
            }),
        }
    }

    /// A source sharing `git`'s settings and mirror cache. `git`'s own credentials are not
    /// used: each discovery asks its [`DiscoveryContext`].
    pub fn from_git(git: &Git) -> Self {
        Self::new(git.config().clone())
    }

    /// What this source has done so far.
    pub fn stats(&self) -> GitSourceStats {
        GitSourceStats {
            ls_remotes: self.inner.ls_remotes.load(Ordering::Relaxed),
            fetches: self.inner.fetches.load(Ordering::Relaxed),
            short_circuits: self.inner.short_circuits.load(Ordering::Relaxed),
            tree_diffs: self.inner.tree_diffs.load(Ordering::Relaxed),
            commits_walked: self.inner.commits_walked.load(Ordering::Relaxed),
            shared_ls_remotes: self.inner.shared_ls_remotes.load(Ordering::Relaxed),
            fetches_skipped: self.inner.fetches_skipped.load(Ordering::Relaxed),
        }
    }

    /// Forgets every remembered observation, so the next discoveries fetch.
    pub fn clear_observations(&self) {
        self.inner.observed_lock().clear();
    }
}

#[async_trait]
impl Source for GitSource {
    const KIND: &'static str = "git";
    type Config = GitSubscription;

    async fn discover(
        &self,
        ctx: &DiscoveryContext,
        config: &GitSubscription,
    ) -> Result<Discovery, SourceError> {
        let span = tracing::debug_span!(
            "source.git",
            repo = %kargo_git::redact_url(&config.repo_url),
            strategy = ?config.commit_selection_strategy,
        );
        self.discover_in_span(ctx, config).instrument(span).await
    }
}

impl GitSource {
    async fn discover_in_span(
        &self,
        ctx: &DiscoveryContext,
        config: &GitSubscription,
    ) -> Result<Discovery, SourceError> {
        let plan = Plan::new(config)?;
        // Validate the expression before any network traffic.
        if !config.expression_filter.is_empty() {
            compile_filter(&self.inner.engine, &config.expression_filter)?;
        }
        let creds = ctx
            .credentials()
            .credentials(CredentialKind::Git, &config.repo_url)
            .await
            .map_err(|e| SourceError::new(SourceErrorKind::Transient, e.to_string()))?;
        let auth = creds.and_then(to_git_auth);
        let remote_key = self.inner.remote_key(&config.repo_url, auth.as_ref());
        let fresh_after = ctx.fresh_after;
        let table = match auth {
            Some(a) => StaticAuth::new().with(config.repo_url.clone(), a),
            None => StaticAuth::new(),
        };
        let git = Git::new(self.inner.config.clone(), Arc::new(table))
            .with_insecure_skip_tls_verify(config.insecure_skip_tls_verify);

        // Cancellation interrupts the blocking git operations.
        let flag = git.interrupt_flag();
        let token = ctx.cancellation().clone();
        let watcher = tokio::spawn(async move {
            token.cancelled().await;
            flag.store(true, Ordering::Relaxed);
        });
        let inner = self.inner.clone();
        let cfg = config.clone();
        let joined = tokio::task::spawn_blocking(move || {
            inner.discover_blocking(&git, &cfg, &plan, (remote_key, fresh_after))
        })
        .await;
        watcher.abort();
        let commits = joined.map_err(|e| {
            SourceError::new(
                SourceErrorKind::Other,
                format!("git discovery task failed: {e}"),
            )
        })??;
        Ok(Discovery::Commits {
            repo_url: config.repo_url.clone(),
            commits,
        })
    }
}

/// Kargo's credentials as kargo-git's: an SSH key when one is given, else basic auth
/// (nothing when both user name and password are empty). Shared with kargo-steps' git
/// steps, so discovery and promotion authenticate the same way.
pub fn to_git_auth(c: Credentials) -> Option<GitAuth> {
    if let Some(key) = c.ssh_private_key.filter(|k| !k.expose().is_empty()) {
        return Some(GitAuth::SshKey {
            private_key: Secret::new(key.expose().clone()),
            known_hosts: c.ssh_known_hosts,
        });
    }
    if c.username.is_empty() && c.password.expose().is_empty() {
        return None;
    }
    Some(GitAuth::Basic {
        username: c.username,
        password: Secret::new(c.password.expose().clone()),
    })
}

fn invalid(field: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::new(
        SourceErrorKind::InvalidConfig,
        format!("{field}: {message}"),
    )
}

fn compile_filter<'e>(engine: &'e ExprEngine, expr: &str) -> Result<CompiledExpr<'e>, SourceError> {
    engine
        .compile_kargo_expression(expr)
        .map_err(|e| invalid("expressionFilter", e))
}

/// A [`GitError`] as a [`SourceError`] of the matching kind. kargo-git's messages are
/// already free of credentials.
fn map_git_error(e: GitError, url: &str) -> SourceError {
    let kind = match e.kind {
        GitErrorKind::Unauthorized => SourceErrorKind::Unauthorized,
        GitErrorKind::NotFound => SourceErrorKind::NotFound,
        GitErrorKind::Network | GitErrorKind::NonFastForward | GitErrorKind::Interrupted => {
            SourceErrorKind::Transient
        }
        GitErrorKind::Invalid => SourceErrorKind::InvalidConfig,
        GitErrorKind::Conflict | GitErrorKind::Io | GitErrorKind::Other => SourceErrorKind::Other,
    };
    let message = format!("git repository {}: {e}", kargo_git::redact_url(url));
    SourceError {
        kind,
        message,
        source: Some(Box::new(e)),
    }
}

/// A subscription's validated configuration.
struct Plan {
    filter: TagFilter,
    constraint: Option<Constraint>,
    paths: PathFilter,
    limit: usize,
    since: Option<DateTime<FixedOffset>>,
    key: String,
}

impl Plan {
    fn new(cfg: &GitSubscription) -> Result<Self, SourceError> {
        if cfg.repo_url.trim().is_empty() {
            return Err(invalid("repoURL", "the repository URL is required"));
        }
        let filter = TagFilter::new(&cfg.allow_tags_regexes, &cfg.ignore_tags_regexes)
            .map_err(|e| SourceError::new(SourceErrorKind::InvalidConfig, e.to_string()))?;
        let constraint = if cfg.semver_constraint.is_empty() {
            None
        } else {
            Some(
                Constraint::parse(&cfg.semver_constraint)
                    .map_err(|e| invalid("semverConstraint", e))?,
            )
        };
        let paths = PathFilter::new(cfg)?;
        let limit = match cfg.discovery_limit {
            0 => DEFAULT_LIMIT,
            n => usize::try_from(n).unwrap_or(DEFAULT_LIMIT),
        };
        let key = serde_json::to_string(cfg).map_err(|e| invalid("git", e))?;
        Ok(Self {
            filter,
            constraint,
            paths,
            limit,
            since: cfg.since,
            key,
        })
    }

    fn has_path_filters(&self) -> bool {
        !self.paths.is_empty()
    }

    fn paths_match(&self, paths: &[String]) -> bool {
        self.paths.matches(paths)
    }
}

/// The first line of `message`, cut to [`SUBJECT_MAX_LEN`] bytes (at a character
/// boundary) with `...` appended when longer.
pub fn shorten_subject(message: &str) -> String {
    let line = first_line(message);
    if line.len() <= SUBJECT_MAX_LEN {
        return line.to_owned();
    }
    let mut end = SUBJECT_MAX_LEN;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim_end()
}

fn to_utc(seconds: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(seconds, 0).single()
}

fn rfc3339(d: Option<DateTime<Utc>>) -> Json {
    d.map(|d| Json::String(d.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Json::Null)
}

/// Evaluates the expression filter against `env`.
fn eval_filter(expr: &CompiledExpr<'_>, env: &Map<String, Json>) -> Result<bool, SourceError> {
    expr.eval_bool(&Scope::from_json(env))
        .map_err(|e| invalid("expressionFilter", e))
}

impl Inner {
    fn observed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Observed>> {
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The previous commits when `refs` equal what was observed last time.
    fn short_circuit(&self, key: &str, refs: &[(String, String)]) -> Option<Vec<DiscoveredCommit>> {
        let map = self.observed_lock();
        let prev = map.get(key)?;
        (prev.refs == refs).then(|| prev.commits.clone())
    }

    fn remember(
        &self,
        key: String,
        refs: Option<Vec<(String, String)>>,
        commits: &[DiscoveredCommit],
    ) {
        let mut map = self.observed_lock();
        match refs {
            Some(refs) => {
                map.insert(
                    key,
                    Observed {
                        refs,
                        commits: commits.to_vec(),
                    },
                );
            }
            None => {
                map.remove(&key);
            }
        }
    }

    /// The key of `url`'s remote view read with `auth`.
    fn remote_key(&self, url: &str, auth: Option<&GitAuth>) -> u64 {
        use std::hash::BuildHasher as _;
        let url = kargo_git::redact_url(url);
        let url = url
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_ascii_lowercase();
        match auth {
            None => self.remote_keys.hash_one((url, 0u8)),
            Some(GitAuth::Basic { username, password }) => {
                self.remote_keys
                    .hash_one((url, 1u8, username, password.expose()))
            }
            Some(GitAuth::SshKey {
                private_key,
                known_hosts,
            }) => self
                .remote_keys
                .hash_one((url, 2u8, private_key.expose(), known_hosts)),
        }
    }

    /// The remote's refs: another discovery's view taken at or after `fresh_after`, or
    /// a new `ls-remote`.
    fn remote_refs(
        &self,
        mirror: &Mirror,
        (key, fresh_after): (u64, Option<std::time::Instant>),
    ) -> Result<Arc<[RemoteRef]>, SourceError> {
        if let Some(after) = fresh_after {
            let shared = self
                .remotes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&key)
                .filter(|(taken, _)| *taken >= after)
                .map(|(_, refs)| refs.clone());
            if let Some(refs) = shared {
                self.shared_ls_remotes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("using this pass's ls-remote of the repository");
                return Ok(refs);
            }
        }
        let started = std::time::Instant::now();
        let refs: Arc<[RemoteRef]> = mirror
            .ls_remote()
            .map_err(|e| map_git_error(e, mirror.url()))?
            .into();
        self.ls_remotes.fetch_add(1, Ordering::Relaxed);
        self.remotes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (started, refs.clone()));
        Ok(refs)
    }

    fn discover_blocking(
        &self,
        git: &Git,
        cfg: &GitSubscription,
        plan: &Plan,
        remote: (u64, Option<std::time::Instant>),
    ) -> Result<Vec<DiscoveredCommit>, SourceError> {
        let url = cfg.repo_url.as_str();
        let gerr = |e: GitError| map_git_error(e, url);
        let mirror = git.mirror(url).map_err(gerr)?;
        let refs = self.remote_refs(&mirror, remote)?;
        let expr = if cfg.expression_filter.is_empty() {
            None
        } else {
            Some(compile_filter(&self.engine, &cfg.expression_filter)?)
        };
        match cfg.commit_selection_strategy {
            CommitSelectionStrategy::NewestFromBranch => {
                self.discover_branch(&mirror, cfg, plan, &refs, expr.as_ref())
            }
            CommitSelectionStrategy::SemVer
            | CommitSelectionStrategy::Lexical
            | CommitSelectionStrategy::NewestTag => {
                self.discover_tags(&mirror, cfg, plan, &refs, expr.as_ref())
            }
        }
    }

    /// Fetches `spec` into the mirror; returns the fetched refs and their targets.
    fn fetch(
        &self,
        mirror: &Mirror,
        spec: &FetchSpec,
    ) -> Result<std::collections::BTreeMap<String, ObjectId>, SourceError> {
        let refs = mirror
            .fetch(spec)
            .map_err(|e| map_git_error(e, mirror.url()))?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(refs = refs.len(), "fetched into the mirror");
        Ok(refs)
    }

    fn discover_branch(
        &self,
        mirror: &Mirror,
        cfg: &GitSubscription,
        plan: &Plan,
        refs: &[RemoteRef],
        expr: Option<&CompiledExpr<'_>>,
    ) -> Result<Vec<DiscoveredCommit>, SourceError> {
        let display = mirror.display_url();
        let (branch, ref_name, tip) = if cfg.branch.is_empty() {
            let Some(branch) = default_branch(refs) else {
                if refs.iter().any(|r| r.name.starts_with("refs/heads/")) {
                    return Err(SourceError::new(
                        SourceErrorKind::NotFound,
                        format!("git repository {display}: cannot tell its default branch"),
                    ));
                }
                // An empty repository: nothing to discover.
                tracing::debug!("the repository has no branches");
                return Ok(Vec::new());
            };
            let tip = refs
                .iter()
                .find(|r| r.name == format!("refs/heads/{branch}"))
                .and_then(|r| r.target);
            (branch, "HEAD".to_owned(), tip)
        } else {
            let name = format!("refs/heads/{}", cfg.branch);
            let tip = refs.iter().find(|r| r.name == name).and_then(|r| r.target);
            (cfg.branch.clone(), name, tip)
        };
        let Some(tip) = tip else {
            return Err(SourceError::new(
                SourceErrorKind::NotFound,
                format!("git repository {display}: branch {branch:?} not found"),
            ));
        };
        if let Some(prev) = self.short_circuit(&plan.key, &[(ref_name.clone(), tip.to_string())]) {
            self.short_circuits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(tip = %tip, "branch tip unchanged; reusing the previous discovery");
            return Ok(prev);
        }
        // The mirror may hold the advertised tip already (another Warehouse of this
        // repository fetched it in this pass): then there is nothing to fetch.
        let local = mirror.resolve(&format!("refs/heads/{branch}")).ok();
        let fetched = if local == Some(tip) {
            self.fetches_skipped.fetch_add(1, Ordering::Relaxed);
            std::collections::BTreeMap::from([(format!("refs/heads/{branch}"), tip)])
        } else {
            self.fetch(mirror, &FetchSpec::branch(branch.clone()))?
        };
        // The branch may have moved since ls-remote: walk from what was fetched.
        let tip = fetched
            .get(&format!("refs/heads/{branch}"))
            .copied()
            .unwrap_or(tip);
        let observed = vec![(ref_name.clone(), tip.to_string())];
        // A promotion's checkout may have made the mirror shallow (the branch tip only):
        // the walk and the fast-forward check below read history, so get all of it.
        if mirror
            .is_shallow()
            .map_err(|e| map_git_error(e, mirror.url()))?
        {
            mirror
                .unshallow()
                .map_err(|e| map_git_error(e, mirror.url()))?;
        }

        // When the branch only moved forward since this subscription's last discovery,
        // walk just the new commits and merge them with what it found then.
        let previous = self.previous_walk(&plan.key, &ref_name, mirror, tip);
        let hidden: Vec<ObjectId> = previous.iter().map(|(old, _)| *old).collect();
        let mut out = Vec::new();
        let mut failure = None;
        let since = plan.since.map(|s| s.timestamp());
        mirror
            .walk_history_excluding(tip, &hidden, |c| {
                if out.len() >= plan.limit {
                    return Ok(ControlFlow::Break(()));
                }
                if since.is_some_and(|s| c.time < s) {
                    return Ok(ControlFlow::Break(()));
                }
                self.commits_walked.fetch_add(1, Ordering::Relaxed);
                match self.branch_commit_passes(mirror, plan, expr, &c) {
                    Ok(true) => out.push(branch_commit(cfg, &c)),
                    Ok(false) => {}
                    Err(e) => {
                        failure = Some(e);
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(if out.len() >= plan.limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })
            .map_err(|e| map_git_error(e, mirror.url()))?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some((_, before)) = previous {
            out = newest_first_merge(out, before, plan.limit);
        }
        self.remember(plan.key.clone(), Some(observed), &out);
        Ok(out)
    }

    /// The tip and commits of this subscription's previous discovery of `ref_name`, when
    /// `tip` is a fast-forward of that tip (so the new history is the old one plus the
    /// commits between); `None` otherwise (first discovery, force push, another ref).
    fn previous_walk(
        &self,
        key: &str,
        ref_name: &str,
        mirror: &Mirror,
        tip: ObjectId,
    ) -> Option<(ObjectId, Vec<DiscoveredCommit>)> {
        let (old, commits) = {
            let map = self.observed_lock();
            let prev = map.get(key)?;
            match prev.refs.as_slice() {
                [(name, id)] if name == ref_name => {
                    (id.parse::<ObjectId>().ok()?, prev.commits.clone())
                }
                _ => return None,
            }
        };
        match mirror.is_ancestor(old, tip) {
            Ok(true) => Some((old, commits)),
            Ok(false) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether the branch moved forward; walking it all");
                None
            }
        }
    }

    fn branch_commit_passes(
        &self,
        mirror: &Mirror,
        plan: &Plan,
        expr: Option<&CompiledExpr<'_>>,
        c: &CommitInfo,
    ) -> Result<bool, SourceError> {
        if let Some(expr) = expr {
            let mut env = Map::new();
            env.insert("id".into(), Json::String(c.id.to_string()));
            env.insert("commitDate".into(), rfc3339(to_utc(c.time)));
            env.insert("author".into(), Json::String(c.author.clone()));
            env.insert("committer".into(), Json::String(c.committer.clone()));
            env.insert(
                "subject".into(),
                Json::String(first_line(&c.message).to_owned()),
            );
            if !eval_filter(expr, &env)? {
                return Ok(false);
            }
        }
        self.paths_pass(mirror, plan, c.id)
    }

    fn paths_pass(&self, mirror: &Mirror, plan: &Plan, id: ObjectId) -> Result<bool, SourceError> {
        if !plan.has_path_filters() {
            return Ok(true);
        }
        let cached = self
            .changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        let paths = match cached {
            Some(p) => p,
            None => {
                let p: Arc<[String]> = mirror
                    .changed_paths(id)
                    .map_err(|e| map_git_error(e, mirror.url()))?
                    .into();
                self.tree_diffs.fetch_add(1, Ordering::Relaxed);
                let mut cache = self
                    .changed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if cache.len() >= CHANGED_PATHS_CACHE {
                    cache.clear();
                }
                cache.insert(id, p.clone());
                p
            }
        };
        Ok(plan.paths_match(&paths))
    }

    fn discover_tags(
        &self,
        mirror: &Mirror,
        cfg: &GitSubscription,
        plan: &Plan,
        refs: &[RemoteRef],
        expr: Option<&CompiledExpr<'_>>,
    ) -> Result<Vec<DiscoveredCommit>, SourceError> {
        // Name-filtered tags with the object each points to (the tag object for annotated
        // tags), sorted by name.
        let mut tags: Vec<(String, ObjectId)> = refs
            .iter()
            .filter_map(|r| {
                let name = r.name.strip_prefix("refs/tags/")?;
                if name.ends_with("^{}") || !plan.filter.matches(name) {
                    return None;
                }
                Some((name.to_owned(), r.target?))
            })
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        tags.dedup_by(|a, b| a.0 == b.0);
        let observed: Option<Vec<(String, String)>> =
            (tags.len() <= MAX_OBSERVED_TAGS).then(|| {
                tags.iter()
                    .map(|(n, id)| (n.clone(), id.to_string()))
                    .collect()
            });
        if let Some(obs) = &observed
            && let Some(prev) = self.short_circuit(&plan.key, obs)
        {
            self.short_circuits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                tags = obs.len(),
                "tags unchanged; reusing the previous discovery"
            );
            return Ok(prev);
        }
        if tags.is_empty() {
            self.remember(plan.key.clone(), observed, &[]);
            return Ok(Vec::new());
        }
        self.fetch(
            mirror,
            &FetchSpec {
                all_tags: true,
                ..FetchSpec::default()
            },
        )?;
        let by_name: HashMap<&str, ObjectId> =
            tags.iter().map(|(n, id)| (n.as_str(), *id)).collect();
        let details = |name: &str| -> Result<TagDetails, SourceError> {
            let Some(id) = by_name.get(name) else {
                return Err(SourceError::new(
                    SourceErrorKind::Other,
                    format!("tag {name:?} vanished"),
                ));
            };
            mirror
                .tag_details(*id)
                .map_err(|e| map_git_error(e, mirror.url()))
        };

        // The order, with details read lazily where the order does not need them.
        let names: Vec<String> = tags.iter().map(|(n, _)| n.clone()).collect();
        let mut ordered: Vec<(String, Option<TagDetails>)> = match cfg.commit_selection_strategy {
            CommitSelectionStrategy::SemVer => select_semver(
                &names,
                &plan.filter,
                cfg.strict_semvers,
                plan.constraint.as_ref(),
            )
            .into_iter()
            .map(|n| (n, None))
            .collect(),
            CommitSelectionStrategy::Lexical => select_lexical(&names, &plan.filter)
                .into_iter()
                .map(|n| (n, None))
                .collect(),
            _ => {
                let mut all = Vec::with_capacity(names.len());
                for n in names {
                    match details(&n) {
                        Ok(d) => all.push((n, Some(d))),
                        Err(e) if e.kind == SourceErrorKind::NotFound => {
                            tracing::warn!(tag = %n, error = %e, "skipping a tag that vanished");
                        }
                        Err(e) => return Err(e),
                    }
                }
                all.sort_by(|(na, da), (nb, db)| {
                    let ta = da.as_ref().and_then(creator_time);
                    let tb = db.as_ref().and_then(creator_time);
                    tb.cmp(&ta).then_with(|| nb.as_bytes().cmp(na.as_bytes()))
                });
                all
            }
        };

        let mut out = Vec::new();
        for (name, d) in ordered.drain(..) {
            if out.len() >= plan.limit {
                break;
            }
            let d = match d {
                Some(d) => d,
                None => match details(&name) {
                    Ok(d) => d,
                    // Deleted between ls-remote and the fetch.
                    Err(e) if e.kind == SourceErrorKind::NotFound => {
                        tracing::warn!(tag = %name, error = %e, "skipping a tag that vanished");
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let c = tag_commit(&name, &d);
            if let Some(expr) = expr {
                let mut env = Map::new();
                env.insert("tag".into(), Json::String(name.clone()));
                env.insert("id".into(), Json::String(c.id.clone()));
                env.insert("creatorDate".into(), rfc3339(c.creator_date));
                env.insert("author".into(), Json::String(c.author.clone()));
                env.insert("committer".into(), Json::String(c.committer.clone()));
                env.insert(
                    "subject".into(),
                    Json::String(first_line(&d.commit.message).to_owned()),
                );
                let (tagger, annotation) = match &d.annotation {
                    Some(a) => (a.tagger.clone(), first_line(&a.message).to_owned()),
                    None => (String::new(), String::new()),
                };
                env.insert("tagger".into(), Json::String(tagger));
                env.insert("annotation".into(), Json::String(annotation));
                if !eval_filter(expr, &env)? {
                    continue;
                }
            }
            if !self.paths_pass(mirror, plan, d.commit.id)? {
                continue;
            }
            out.push(c);
        }
        self.remember(plan.key.clone(), observed, &out);
        Ok(out)
    }
}

/// The creator date: the tagger's for annotated tags, the commit's for lightweight ones.
fn creator_time(d: &TagDetails) -> Option<i64> {
    match &d.annotation {
        Some(a) => a.time,
        None => Some(d.commit.time),
    }
}

/// `new` and `old` (each newest first by commit date) as one list, newest first, at most
/// `limit` long; a commit in both is kept once.
fn newest_first_merge(
    new: Vec<DiscoveredCommit>,
    old: Vec<DiscoveredCommit>,
    limit: usize,
) -> Vec<DiscoveredCommit> {
    let mut out = Vec::with_capacity(limit.min(new.len() + old.len()));
    let (mut a, mut b) = (new.into_iter().peekable(), old.into_iter().peekable());
    while out.len() < limit {
        let take_new = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.creator_date >= y.creator_date,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_new { a.next() } else { b.next() };
        if let Some(c) = next
            && !out.iter().any(|o: &DiscoveredCommit| o.id == c.id)
        {
            out.push(c);
        }
    }
    out
}

fn branch_commit(cfg: &GitSubscription, c: &CommitInfo) -> DiscoveredCommit {
    DiscoveredCommit {
        id: c.id.to_string(),
        branch: cfg.branch.clone(),
        tag: String::new(),
        subject: shorten_subject(&c.message),
        author: c.author.clone(),
        committer: c.committer.clone(),
        creator_date: to_utc(c.time),
    }
}

fn tag_commit(name: &str, d: &TagDetails) -> DiscoveredCommit {
    DiscoveredCommit {
        id: d.commit.id.to_string(),
        branch: String::new(),
        tag: name.to_owned(),
        subject: shorten_subject(&d.commit.message),
        author: d.commit.author.clone(),
        committer: d.commit.committer.clone(),
        creator_date: creator_time(d).and_then(to_utc),
    }
}

/// The branch the remote's `HEAD` names: its symbolic target when advertised, else the
/// branch whose tip is `HEAD`'s commit (`main`, then `master`, then the first by name).
fn default_branch(refs: &[RemoteRef]) -> Option<String> {
    let head = refs.iter().find(|r| r.name == "HEAD")?;
    if let Some(b) = head
        .symref_target
        .as_deref()
        .and_then(|t| t.strip_prefix("refs/heads/"))
    {
        return Some(b.to_owned());
    }
    let target = head.target?;
    let mut matching: Vec<&str> = refs
        .iter()
        .filter(|r| r.target == Some(target))
        .filter_map(|r| r.name.strip_prefix("refs/heads/"))
        .collect();
    for preferred in ["main", "master"] {
        if matching.contains(&preferred) {
            return Some(preferred.to_owned());
        }
    }
    matching.sort_unstable();
    matching.first().map(|s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_rule_any_included_not_excluded() {
        let cfg: GitSubscription = serde_json::from_value(serde_json::json!({
            "repoURL": "https://example.com/r.git",
            "includePaths": ["apps"],
            "excludePaths": ["glob:**/*.md"],
        }))
        .unwrap();
        let plan = Plan::new(&cfg).unwrap();
        assert!(plan.paths_match(&["apps/a.yaml".into()]));
        assert!(!plan.paths_match(&["apps/README.md".into()]));
        assert!(plan.paths_match(&["apps/README.md".into(), "apps/b".into()]));
        assert!(!plan.paths_match(&["docs/x".into()]));
        assert!(!plan.paths_match(&[]));
    }

    #[test]
    fn subjects_are_cut_at_80_bytes() {
        assert_eq!(shorten_subject("short\n\nbody"), "short");
        let long = "x".repeat(100);
        assert_eq!(shorten_subject(&long), format!("{}...", "x".repeat(80)));
        let exact = "y".repeat(80);
        assert_eq!(shorten_subject(&exact), exact);
        // A multi-byte character straddling byte 80 is not split.
        let s = format!("{}é{}", "a".repeat(79), "b".repeat(10));
        assert_eq!(shorten_subject(&s), format!("{}...", "a".repeat(79)));
    }

    #[test]
    fn invalid_config_names_the_field() {
        let bad = |extra: Json| {
            let mut v = serde_json::json!({"repoURL": "https://example.com/r.git"});
            if let (Some(m), Json::Object(e)) = (v.as_object_mut(), extra) {
                m.extend(e);
            }
            let cfg: GitSubscription = serde_json::from_value(v).unwrap();
            match Plan::new(&cfg) {
                Err(e) => e,
                Ok(_) => panic!("accepted"),
            }
        };
        let e = bad(serde_json::json!({"semverConstraint": ">>1"}));
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert!(e.message.contains("semverConstraint"), "{}", e.message);
        let e = bad(serde_json::json!({"allowTagsRegexes": ["("]}));
        assert!(e.message.contains("allowTagsRegexes"), "{}", e.message);
        let e = bad(serde_json::json!({"includePaths": ["regex:("]}));
        assert!(e.message.contains("includePaths"), "{}", e.message);
        let engine = ExprEngine::new();
        let e = compile_filter(&engine, "subject contains (").unwrap_err();
        assert!(e.message.contains("expressionFilter"), "{}", e.message);
    }

    #[test]
    fn default_branch_from_head() {
        let id = ObjectId::from_hex(&[b'a'; 40]).unwrap();
        let refs = vec![
            RemoteRef {
                name: "HEAD".into(),
                target: Some(id),
                peeled: None,
                symref_target: Some("refs/heads/trunk".into()),
            },
            RemoteRef {
                name: "refs/heads/trunk".into(),
                target: Some(id),
                peeled: None,
                symref_target: None,
            },
        ];
        assert_eq!(default_branch(&refs).as_deref(), Some("trunk"));
        assert_eq!(default_branch(&refs[1..]), None);
    }
}
