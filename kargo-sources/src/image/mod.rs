//! Container image subscriptions: [`ImageSource`] discovers the images of one repository
//! the way Kargo's image subscriber does.
//!
//! # Strategies
//!
//! - `SemVer` (default): list every tag, apply the tag filter, keep semantic versions
//!   ([`crate::selection::select_semver`]: lenient Masterminds parsing, strict `X.Y.Z` with
//!   `strictSemvers`, the `constraint`), sort descending (ties by the original string,
//!   descending); then read manifests in that order until `discoveryLimit` images pass the
//!   platform filter.
//! - `Lexical`: filter, sort byte-wise descending, then as `SemVer`.
//! - `NewestBuild`: filter, read the metadata of EVERY remaining tag (bounded concurrency),
//!   sort by build time descending, ties by tag descending, images without a build time
//!   last ([`crate::selection::order_newest_build`]); truncate.
//! - `Digest`: `constraint` names one mutable tag; its current digest is looked up on every
//!   discovery (never cached by tag); a missing tag gives an empty result.
//!
//! Tag filter: `ignoreTagsRegexes` (any match drops a tag) and `allowTagsRegexes` (when
//! given, a tag must match one), unanchored. The deprecated fields are honoured as well:
//! `allowTags` is one more allow regex, `ignoreTags` lists exact tags to ignore (Kargo's
//! admission rejects both; a source receiving them applies them).
//!
//! # Metadata
//!
//! Build time: an image manifest's `org.opencontainers.image.created` or
//! `org.label-schema.build-date` annotation (the first parseable RFC 3339 value), else the
//! later of the config blob's `created` and the same labels in the config. An index: its
//! own annotation, else the newest of its platform entries (the entry descriptor's
//! annotation, else the child image's time). Entries whose platform is missing, empty or
//! `unknown` (attestations) are skipped; an index with no other entry is an error.
//!
//! `platform` (`os/arch[/variant]`): only images whose INDEX has an entry matching all
//! three parts exactly are kept; a plain (single-platform) manifest is rejected, as in
//! Kargo. Recorded per image: tag, digest (of the manifest or index the tag names),
//! annotations (the manifest's or index's own, overridden by the matching platform entry's
//! descriptor annotations when `platform` is set; a tag has no descriptor annotations of
//! its own in the distribution API), build time when known. The build time of an index
//! stays the index's, also with `platform`.
//!
//! # Signatures (`verification.cosign`)
//!
//! With `verification.cosign.publicKey` (ECDSA P-256 keys, PEM), every candidate image
//! must carry a cosign signature by one of the keys over the digest Freight would record
//! (the tag's manifest or index digest), in either format cosign writes: a Sigstore
//! bundle attached as an OCI 1.1 referrer (cosign 3; found through the referrers API, or
//! the referrers tag `sha256-<hex>` on registries without it) or the legacy
//! `sha256-<hex>.sig` tag (simple signing). See `signatures` for the lookup and `cosign`
//! for the checks (signature first, then the digest binding).
//!
//! - Candidates are taken in the strategy's order; a rejected one is skipped and the next
//!   one is read, until `discoveryLimit` images are accepted or as many are rejected. The
//!   tags cosign writes (`sha256-<hex>[.sig|.att|.sbom]`) are not candidates.
//! - No accepted image but some rejected: the discovery fails
//!   ([`SourceErrorKind::Other`]) naming each rejected tag, digest and reason; some
//!   accepted: each rejection is logged (`warn`).
//! - Verdicts are cached per repository, digest and key set: a signed digest is never
//!   asked about again, a rejected one after [`ImageSourceOptions::signature_recheck`] or
//!   when a webhook's hints name its tag. Concurrent discoveries of one digest (many
//!   Warehouses, one repository) wait for the first one's verdict. Requests are counted in
//!   [`RequestStats::signature_gets`]; without `verification` none is made.
//!
//! # Requests and caching
//!
//! The tag list is read page by page, following `Link: <…>; rel="next"`
//! ([`ImageSourceOptions::tag_page_size`] asks for pages of `n` tags; registries that page
//! by `n` without a `Link` header are continued with `last`).
//!
//! One [`ImageSource`] keeps a metadata cache shared by all its discoveries:
//! manifest/index metadata and config build times by digest (content addressed, so always
//! valid), and the digest each `<repoURL>:<tag>` had when last read.
//!
//! - With `cacheByTag: true` that tag → digest mapping is trusted: a discovery in which no
//!   tag is new makes ONLY tag-list requests; a new tag costs one manifest GET and one
//!   config GET. This is unsafe with mutable tags (a re-pushed tag keeps its old digest
//!   until the entry is evicted), exactly as in Kargo.
//! - Without it (the default), a tag read before costs one `HEAD` of its manifest per
//!   discovery (tags are mutable: the tag list says nothing about where a tag points, so
//!   trusting the list as a validity signal would be wrong); when the digest is
//!   unchanged no manifest or config is fetched. A tag never seen costs one GET by tag
//!   (digest and body in one response) plus its config. So `NewestBuild` over N unchanged
//!   tags costs N HEADs per discovery instead of Kargo's N manifest GETs (HEADs carry no
//!   body, and Docker Hub does not count them against its pull limit).
//! - `Digest` always asks the registry (HEAD) where its tag points.
//! - An incremental refresh ([`DiscoveryContext::hints`](kargo_core::source::DiscoveryContext),
//!   set when a webhook names the tags it pushed) reads only the named tags; the others keep
//!   the digest this source last saw, as with `cacheByTag`. One new tag then costs the tag
//!   list, its manifest and its config.
//!
//! The cache holds at most [`ImageSourceOptions::max_cache_entries`] entries (default
//! 100,000, like Kargo's `MAX_IMAGE_CACHE_ENTRIES`), the oldest dropped first.
//!
//! # Many Warehouses, one repository
//!
//! A discovery whose context has
//! [`fresh_after`](kargo_core::source::DiscoveryContext::fresh_after) (set by the service
//! at the start of each pass) reuses what another discovery of the same source read from
//! the same repository, with the same credentials and transport, since that instant:
//!
//! - the tag list (all pages): 500 Warehouses subscribed to one repository cost one tag
//!   list per pass ([`RequestStats::shared_tag_lists`] counts the reuses);
//! - where a tag points (the HEAD or GET of its manifest, with its metadata): each tag is
//!   asked about once per pass ([`RequestStats::shared_tags`]).
//!
//! Reads are single-flight: discoveries asking for the same list or tag at the same time
//! wait for the one read in flight and use its result (or its error: a failed read is not
//! kept, a discovery arriving after it reads again). Without `fresh_after` (a direct
//! call, a webhook-driven refresh) a discovery reads on its own, as before; what it read
//! is kept for the others. Keys are hashes (no credential is kept in clear); at most
//! [`ImageSourceOptions::max_shared_tag_lists`] lists (default 1,000) and
//! `max_cache_entries` tag resolutions are kept, the oldest dropped first.
//!
//! # Limits
//!
//! Requests of one source run at most [`ImageSourceOptions::concurrency`] at a time
//! (default 8) and at most [`ImageSourceOptions::rate_limit`] per second per registry
//! (default 20, bursts of the same size; Kargo's `IMAGE_REGISTRY_RATE_LIMIT`). The limit
//! is one token bucket per registry host for the whole source (all subscriptions, all
//! Warehouses), keyed by the host in lower case without the scheme's default port
//! ([`ImageSource::rate_limit_key`]); every request takes a token from it: tag-list
//! pages, manifest GETs and HEADs, blobs, the retry after a bearer challenge, and the
//! token-service request itself. Two names of one host that differ otherwise
//! (`localhost` and `127.0.0.1`, a CNAME) are two registries. Concurrent sessions that
//! meet the same bearer challenge ask the token service once.
//! [`ImageSource::stats`] counts the requests made.
//!
//! # Authentication and transport
//!
//! Credentials come from the discovery context ([`CredentialKind::Image`], the
//! subscription's `repoURL`), else, when [`ImageSourceOptions::docker_config`] says so,
//! from a Docker `config.json` ([`DockerConfig`]: `auth` or `username`/`password`; no
//! credential helpers). They are sent as HTTP basic auth; a registry answering with a
//! `WWW-Authenticate: Bearer` challenge gets the token flow (the token service is asked
//! with the same credentials, tokens are cached per registry, repository and user).
//!
//! Plain HTTP is used only for loopback registries (`localhost`, `127.0.0.0/8`, `::1`) and
//! those listed in [`ImageSourceOptions::insecure_registries`]; an explicit `http://` in
//! `repoURL` for any other registry is refused. `insecureSkipTLSVerify` accepts invalid
//! certificates.
//!
//! Errors: an unknown repository is [`SourceErrorKind::NotFound`], refused credentials
//! [`SourceErrorKind::Unauthorized`], HTTP 429 [`SourceErrorKind::RateLimited`], network
//! errors and 5xx [`SourceErrorKind::Transient`], a bad regex, constraint, platform or
//! limit [`SourceErrorKind::InvalidConfig`] naming the field. No message contains a
//! credential.

mod client;
mod cosign;
pub mod docker_config;
mod meta;
pub mod rate_limit;
mod shared_views;
mod signatures;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use kargo_core::model::{ImageSelectionStrategy, ImageSubscription};
use kargo_core::secret::{CredentialKind, Credentials};
use kargo_core::source::{
    DiscoveredImage, Discovery, DiscoveryContext, Source, SourceError, SourceErrorKind,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use docker_config::{DockerConfig, DockerConfigError, DockerConfigLocation};
pub use meta::Platform;

use crate::chart::version::Constraint;
use crate::selection::{TagFilter, order_newest_build, select_lexical, select_semver};
use client::{BearerToken, Resolved, Session, err};
use cosign::CosignKeys;
use meta::MetaCache;
use rate_limit::TokenBucket;
use shared_views::SharedViews;
use signatures::{Verdict, VerdictCache};

/// Settings of an [`ImageSource`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImageSourceOptions {
    /// Registries (`host[:port]`) reached over plain HTTP although not on loopback.
    pub insecure_registries: Vec<String>,
    /// Requests in flight at most per source (default 8, at least 1).
    pub concurrency: usize,
    /// Requests per second per registry (default 20; bursts of the same size).
    pub rate_limit: f64,
    /// Cache entries kept at most (default 100,000). Also bounds the tag resolutions
    /// shared within a pass.
    pub max_cache_entries: usize,
    /// Tag lists (one per registry, repository and credentials) kept for the discoveries
    /// of a pass to share (default 1,000); the oldest is dropped first.
    pub max_shared_tag_lists: usize,
    /// Tags asked for per tag-list page (`n`); `None` (default) leaves the page size to
    /// the registry.
    pub tag_page_size: Option<usize>,
    /// Where to read a Docker `config.json` for credentials (default: nowhere).
    pub docker_config: DockerConfigLocation,
    /// Connect timeout, and the longest wait for response data (default 30 s).
    pub timeout: Duration,
    /// How long an image rejected by `verification` (unsigned, wrongly signed) is not
    /// asked about again (default 5 min): a signature may be pushed after its image. A
    /// signed image is never asked about again (its digest cannot change).
    pub signature_recheck: Duration,
}

impl Default for ImageSourceOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            concurrency: 8,
            rate_limit: 20.0,
            max_cache_entries: 100_000,
            max_shared_tag_lists: 1_000,
            tag_page_size: None,
            docker_config: DockerConfigLocation::None,
            timeout: Duration::from_secs(30),
            signature_recheck: Duration::from_secs(300),
        }
    }
}

/// Requests an [`ImageSource`] has made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Tag-list pages.
    pub tag_lists: u64,
    /// Manifest GETs (by tag or digest).
    pub manifest_gets: u64,
    /// Manifest HEADs.
    pub manifest_heads: u64,
    /// Blob (config) GETs.
    pub blob_gets: u64,
    /// Token-service requests.
    pub tokens: u64,
    /// Signature lookups of `verification` (referrers, signature manifests and blobs).
    pub signature_gets: u64,
    /// Tag lists NOT requested: another discovery's list of the same repository (same
    /// credentials) taken during the pass was reused (not counted in [`Self::total`]).
    pub shared_tag_lists: u64,
    /// Tags NOT asked about: another discovery's resolution of the same tag (same
    /// credentials) made during the pass was reused (not counted in [`Self::total`]).
    pub shared_tags: u64,
}

impl RequestStats {
    /// All requests to the registry and its token service.
    pub fn total(&self) -> u64 {
        self.tag_lists
            + self.manifest_gets
            + self.manifest_heads
            + self.blob_gets
            + self.tokens
            + self.signature_gets
    }
}

#[derive(Debug, Default)]
struct Counters {
    tag_lists: AtomicU64,
    manifest_gets: AtomicU64,
    manifest_heads: AtomicU64,
    blob_gets: AtomicU64,
    tokens: AtomicU64,
    signature_gets: AtomicU64,
    shared_tag_lists: AtomicU64,
    shared_tags: AtomicU64,
}

/// State shared by all discoveries of one source.
struct Inner {
    options: ImageSourceOptions,
    cache: Mutex<MetaCache>,
    /// What `verification` decided per repository, digest and key set.
    verdicts: Mutex<VerdictCache>,
    /// One verification at a time per verdict key: concurrent discoveries of one image
    /// (many Warehouses, one repository) wait for the first one's verdict.
    verdict_flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    limiters: Mutex<HashMap<String, Arc<TokenBucket>>>,
    tokens: Mutex<HashMap<String, BearerToken>>,
    clients: Mutex<HashMap<bool, reqwest::Client>>,
    semaphore: Arc<Semaphore>,
    stats: Counters,
    /// Tag lists shared by the discoveries of a pass (see [`shared_views`]).
    tag_lists: SharedViews<Arc<[String]>>,
    /// Tag resolutions (`None`: no such tag) shared by the discoveries of a pass.
    tag_views: SharedViews<Option<Resolved>>,
    /// Hashes the keys of both: registry, repository, transport and credentials (a view
    /// read with one Secret is never shown to a discovery with another, and no key holds
    /// a credential in clear).
    view_keys: std::collections::hash_map::RandomState,
    /// One token request at a time per token key; the others use its token.
    token_flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, MetaCache> {
        lock(&self.cache)
    }

    fn token(&self, key: &str) -> Option<BearerToken> {
        let mut tokens = lock(&self.tokens);
        match tokens.get(key) {
            Some(t) if t.until > Instant::now() => Some(t.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    fn put_token(&self, key: String, token: BearerToken) {
        lock(&self.tokens).insert(key, token);
    }

    /// The mutex serializing token requests for `key`.
    fn token_flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.token_flights)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The rate limiter of a registry host (`RepoRef::host_key`): one per host for the
    /// whole source, whatever scheme, default port or subscription names it.
    fn limiter(&self, registry: &str) -> Arc<TokenBucket> {
        let rate = self.options.rate_limit;
        let burst = if rate.is_finite() {
            rate.clamp(1.0, f64::from(u32::MAX)) as u32
        } else {
            u32::MAX
        };
        lock(&self.limiters)
            .entry(registry.to_owned())
            .or_insert_with(|| Arc::new(TokenBucket::new(rate, burst)))
            .clone()
    }

    fn client(&self, skip_tls_verify: bool) -> Result<reqwest::Client, SourceError> {
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(&skip_tls_verify) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .connect_timeout(self.options.timeout)
            .read_timeout(self.options.timeout)
            .danger_accept_invalid_certs(skip_tls_verify)
            .build()
            .map_err(|e| {
                err(
                    SourceErrorKind::Other,
                    format!("cannot create the HTTP client: {e}"),
                )
            })?;
        clients.insert(skip_tls_verify, c.clone());
        Ok(c)
    }
}

/// Where a subscription's repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoRef {
    /// `scheme://host[:port]` requests go to.
    base: String,
    /// The registry host as one rate limit counts it: lower case, without the scheme's
    /// default port (`registry.example.com`, `127.0.0.1:5000`).
    host_key: String,
    /// The registry as written (`docker.io` for Docker Hub names), for credentials.
    registry: String,
    /// The repository path (`library/nginx`).
    repository: String,
    /// The repository as the user wrote it, for messages.
    display: String,
    /// Cache key prefix: `base/repository`.
    cache_name: String,
}

/// The image source (subscription kind `image`). Cheap to clone; clones share the cache,
/// rate limits and tokens.
#[derive(Clone)]
pub struct ImageSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSource")
            .field("options", &self.inner.options)
            .field("cache_entries", &self.inner.cache().len())
            .finish_non_exhaustive()
    }
}

impl Default for ImageSource {
    fn default() -> Self {
        Self::new(ImageSourceOptions::default())
    }
}

impl ImageSource {
    /// A source with these options.
    pub fn new(options: ImageSourceOptions) -> Self {
        let max = options.max_cache_entries;
        let options_lists = options.max_shared_tag_lists;
        let permits = options.concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                options,
                cache: Mutex::new(MetaCache::new(max)),
                verdicts: Mutex::new(VerdictCache::new(max)),
                verdict_flights: Mutex::new(HashMap::new()),
                limiters: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                clients: Mutex::new(HashMap::new()),
                semaphore: Arc::new(Semaphore::new(permits)),
                stats: Counters::default(),
                tag_lists: SharedViews::new(options_lists),
                tag_views: SharedViews::new(max),
                view_keys: std::collections::hash_map::RandomState::new(),
                token_flights: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The options.
    pub fn options(&self) -> &ImageSourceOptions {
        &self.inner.options
    }

    /// Requests made so far.
    pub fn stats(&self) -> RequestStats {
        let s = &self.inner.stats;
        RequestStats {
            tag_lists: s.tag_lists.load(Ordering::Relaxed),
            manifest_gets: s.manifest_gets.load(Ordering::Relaxed),
            manifest_heads: s.manifest_heads.load(Ordering::Relaxed),
            blob_gets: s.blob_gets.load(Ordering::Relaxed),
            tokens: s.tokens.load(Ordering::Relaxed),
            signature_gets: s.signature_gets.load(Ordering::Relaxed),
            shared_tag_lists: s.shared_tag_lists.load(Ordering::Relaxed),
            shared_tags: s.shared_tags.load(Ordering::Relaxed),
        }
    }

    /// Tag lists kept for sharing within a pass.
    pub fn shared_tag_lists_len(&self) -> usize {
        self.inner.tag_lists.len()
    }

    /// The registry host whose rate limit requests for `repo_url` count against (lower
    /// case, without the default port of the scheme): subscriptions naming one registry
    /// differently (`Registry.example.com:443/a`, `https://registry.example.com/b`) share
    /// one limit. Fails like [`Self::endpoint`].
    pub fn rate_limit_key(&self, repo_url: &str) -> Result<String, SourceError> {
        Ok(parse_repo_url(repo_url, &self.inner.options)?.host_key)
    }

    /// Entries in the metadata cache.
    pub fn cache_len(&self) -> usize {
        self.inner.cache().len()
    }

    /// Where requests for `repo_url` go: `scheme://host[:port]/v2/<repository>`. Fails
    /// (with [`SourceErrorKind::InvalidConfig`]) for malformed URLs and for plain HTTP to a
    /// registry that is neither loopback nor listed as insecure.
    pub fn endpoint(&self, repo_url: &str) -> Result<String, SourceError> {
        let r = parse_repo_url(repo_url, &self.inner.options)?;
        Ok(format!("{}/v2/{}", r.base, r.repository))
    }

    async fn credentials(
        &self,
        ctx: &DiscoveryContext,
        repo: &RepoRef,
        repo_url: &str,
    ) -> Result<Option<Credentials>, SourceError> {
        let c = ctx
            .credentials()
            .credentials(CredentialKind::Image, repo_url)
            .await
            .map_err(|e| err(SourceErrorKind::Other, format!("{}: {e}", repo.display)))?;
        if c.is_some() {
            return Ok(c);
        }
        let cfg = self
            .inner
            .options
            .docker_config
            .load()
            .map_err(|e| err(SourceErrorKind::Other, format!("{}: {e}", repo.display)))?;
        Ok(cfg.and_then(|c| c.credentials_for(&repo.registry)))
    }

    async fn run(
        &self,
        ctx: &DiscoveryContext,
        cfg: &ImageSubscription,
    ) -> Result<Discovery, SourceError> {
        let plan = Plan::new(cfg)?;
        let repo = parse_repo_url(&cfg.repo_url, &self.inner.options)?;
        let creds = self.credentials(ctx, &repo, &cfg.repo_url).await?;
        let session = Session {
            inner: &self.inner,
            http: self.inner.client(cfg.insecure_skip_tls_verify)?,
            limiter: self.inner.limiter(&repo.host_key),
            skip_tls_verify: cfg.insecure_skip_tls_verify,
            fresh_after: ctx.fresh_after,
            creds,
            repo,
        };
        let limit = plan.limit;
        // An incremental refresh (a webhook named some tags): the other tags keep the
        // digest this source last saw (no HEAD), as with cacheByTag; the named ones are
        // read as usual. The next regular poll checks every tag again.
        let trusted = |tag: &str| {
            cfg.cache_by_tag || ctx.hints.as_ref().is_some_and(|h| !h.tags.contains(tag))
        };
        let named = |tag: &str| ctx.hints.as_ref().is_some_and(|h| h.tags.contains(tag));
        // With `verification`: the images rejected, in order (tag, digest, why). At most
        // `limit` are rejected per discovery (then it stops looking further).
        let mut rejected: Vec<(String, String, String)> = Vec::new();
        let references = match cfg.image_selection_strategy {
            ImageSelectionStrategy::Digest => {
                let tag = cfg.constraint.trim();
                let found: Vec<DiscoveredImage> = match session.resolve(tag, false).await? {
                    Some(r) => plan.to_image(&r).into_iter().collect(),
                    None => Vec::new(),
                };
                self.keep_signed(&session, &plan, found, &named, &mut rejected)
                    .await?
            }
            ImageSelectionStrategy::SemVer | ImageSelectionStrategy::Lexical => {
                let tags = session.tags().await?;
                let tags = plan.candidate_tags(&tags);
                let ordered = if cfg.image_selection_strategy == ImageSelectionStrategy::SemVer {
                    select_semver(
                        &tags,
                        &plan.filter,
                        cfg.strict_semvers,
                        plan.constraint.as_ref(),
                    )
                } else {
                    select_lexical(&tags, &plan.filter)
                };
                // In order, in rounds of as many tags as images are still missing (read
                // concurrently, kept in order): no manifest beyond what the sequential
                // algorithm reads is fetched. A tag that vanished, fails the platform
                // filter or (with verification) is not signed makes room for the next one.
                let mut out = Vec::new();
                let mut rest = ordered.into_iter();
                while out.len() < limit && rejected.len() < limit {
                    let batch: Vec<String> = rest.by_ref().take(limit - out.len()).collect();
                    if batch.is_empty() {
                        break;
                    }
                    let results: Vec<Result<Option<Resolved>, SourceError>> =
                        futures::stream::iter(batch)
                            .map(|tag| {
                                let trust = trusted(&tag);
                                self.fetch(&session, tag, trust)
                            })
                            .buffered(self.inner.options.concurrency.max(1))
                            .collect()
                            .await;
                    let mut found = Vec::new();
                    for r in results {
                        if let Some(img) = r?.as_ref().and_then(|r| plan.to_image(r)) {
                            found.push(img);
                        }
                    }
                    out.extend(
                        self.keep_signed(&session, &plan, found, &named, &mut rejected)
                            .await?,
                    );
                }
                out
            }
            ImageSelectionStrategy::NewestBuild => {
                let tags = session.tags().await?;
                let filtered: Vec<String> = plan
                    .candidate_tags(&tags)
                    .into_iter()
                    .filter(|t| plan.filter.matches(t))
                    .collect();
                let results: Vec<Result<Option<Resolved>, SourceError>> =
                    futures::stream::iter(filtered)
                        .map(|tag| {
                            let trust = trusted(&tag);
                            self.fetch(&session, tag, trust)
                        })
                        .buffer_unordered(self.inner.options.concurrency.max(1))
                        .collect()
                        .await;
                let mut by_tag: BTreeMap<String, DiscoveredImage> = BTreeMap::new();
                for r in results {
                    if let Some(img) = r?.as_ref().and_then(|r| plan.to_image(r)) {
                        by_tag.insert(img.tag.clone(), img);
                    }
                }
                let order = order_newest_build(
                    by_tag
                        .values()
                        .map(|i| (i.tag.clone(), i.created_at))
                        .collect(),
                );
                let mut ordered = order.into_iter().filter_map(|t| by_tag.remove(&t));
                let mut out = Vec::new();
                while out.len() < limit && rejected.len() < limit {
                    let batch: Vec<DiscoveredImage> =
                        ordered.by_ref().take(limit - out.len()).collect();
                    if batch.is_empty() {
                        break;
                    }
                    out.extend(
                        self.keep_signed(&session, &plan, batch, &named, &mut rejected)
                            .await?,
                    );
                }
                out
            }
        };
        if plan.keys.is_some() && !rejected.is_empty() {
            if references.is_empty() {
                return Err(signatures::none_signed(&session.repo.display, &rejected));
            }
            for (tag, digest, why) in &rejected {
                tracing::warn!(
                    repo = %session.repo.display,
                    tag = %tag,
                    digest = %digest,
                    reason = %why,
                    "image rejected by verification.cosign: it does not become Freight"
                );
            }
        }
        tracing::debug!(
            repo = %session.repo.display,
            strategy = ?cfg.image_selection_strategy,
            found = references.len(),
            "image discovery done"
        );
        let rejected = rejected
            .iter()
            .map(|(tag, digest, why)| kargo_core::source::RejectedArtifact {
                reference: format!("{}:{tag}@{digest}", session.repo.display),
                reason: format!("verification.cosign: {why}"),
            })
            .collect();
        Ok(Discovery::Images {
            repo_url: cfg.repo_url.clone(),
            platform: (!cfg.platform.is_empty()).then(|| cfg.platform.clone()),
            references,
            rejected,
        })
    }

    async fn fetch(
        &self,
        session: &Session<'_>,
        tag: String,
        cache_by_tag: bool,
    ) -> Result<Option<Resolved>, SourceError> {
        let _permit = self
            .inner
            .semaphore
            .acquire()
            .await
            .map_err(|_| err(SourceErrorKind::Other, "the source is shut down".to_owned()))?;
        session.resolve(&tag, cache_by_tag).await
    }

    /// With `verification`: `images` (in order) less those without a valid signature by
    /// the configured keys, which are added to `rejected` (in order). Verdicts come from
    /// the cache when known (a rejected one only within `signature_recheck` and when no
    /// webhook named its tag); the others are read concurrently. Without `verification`:
    /// `images` unchanged, no request.
    async fn keep_signed(
        &self,
        session: &Session<'_>,
        plan: &Plan,
        images: Vec<DiscoveredImage>,
        named: &(dyn Fn(&str) -> bool + Sync),
        rejected: &mut Vec<(String, String, String)>,
    ) -> Result<Vec<DiscoveredImage>, SourceError> {
        let Some(keys) = &plan.keys else {
            return Ok(images);
        };
        let asks: Vec<(String, bool)> = images
            .iter()
            .map(|i| (i.digest.clone(), named(&i.tag)))
            .collect();
        let verdicts: Vec<Result<Verdict, SourceError>> = futures::stream::iter(asks)
            .map(|(digest, named)| self.verdict(session, keys, digest, named))
            .buffered(self.inner.options.concurrency.max(1))
            .collect()
            .await;
        let mut kept = Vec::new();
        for (img, v) in images.into_iter().zip(verdicts) {
            match v? {
                Verdict::Signed(_) => kept.push(img),
                Verdict::Rejected(why) => {
                    rejected.push((img.tag.clone(), img.digest.clone(), why));
                }
            }
        }
        Ok(kept)
    }

    /// The verdict on `digest`: cached, else read (see [`Self::keep_signed`]).
    async fn verdict(
        &self,
        session: &Session<'_>,
        keys: &CosignKeys,
        digest: String,
        named: bool,
    ) -> Result<Verdict, SourceError> {
        let key = session.verdict_key(&digest, keys);
        let recheck = self.inner.options.signature_recheck;
        if let Some(v) = lock(&self.inner.verdicts).get(&key, recheck, !named) {
            return Ok(v);
        }
        // Single flight: whoever verifies this key first, the others wait and take its
        // verdict (a rejection too, unless their webhook named the tag).
        let flight = lock(&self.inner.verdict_flights)
            .entry(key.clone())
            .or_default()
            .clone();
        let result = async {
            let _turn = flight.lock().await;
            if let Some(v) = lock(&self.inner.verdicts).get(&key, recheck, !named) {
                return Ok(v);
            }
            let _permit =
                self.inner.semaphore.acquire().await.map_err(|_| {
                    err(SourceErrorKind::Other, "the source is shut down".to_owned())
                })?;
            let v = session.verify_image(&digest, keys).await?;
            tracing::debug!(
                repo = %session.repo.display,
                digest = %digest,
                verdict = ?v,
                "cosign verification"
            );
            lock(&self.inner.verdicts).put(key.clone(), v.clone());
            Ok(v)
        }
        .await;
        // The map holds one reference, this call another: nobody else waits.
        let mut flights = lock(&self.inner.verdict_flights);
        if flights.get(&key).is_some_and(|f| Arc::strong_count(f) <= 2) {
            flights.remove(&key);
        }
        result
    }
}

#[async_trait]
impl Source for ImageSource {
    const KIND: &'static str = "image";
    type Config = ImageSubscription;

    async fn discover(
        &self,
        ctx: &DiscoveryContext,
        config: &ImageSubscription,
    ) -> Result<Discovery, SourceError> {
        let cancel = ctx.cancellation().clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(err(
                SourceErrorKind::Other,
                format!("discovery of {} was cancelled", config.repo_url),
            )),
            r = self.run(ctx, config) => r,
        }
    }
}

/// The validated, compiled parts of a subscription.
struct Plan {
    filter: TagFilter,
    constraint: Option<Constraint>,
    platform: Option<Platform>,
    limit: usize,
    /// `verification.cosign`'s keys, when signatures are required.
    keys: Option<CosignKeys>,
}

impl Plan {
    fn new(cfg: &ImageSubscription) -> Result<Self, SourceError> {
        let invalid = |field: &str, msg: String| {
            err(
                SourceErrorKind::InvalidConfig,
                format!("image subscription {}: {field}: {msg}", cfg.repo_url),
            )
        };
        if cfg.semver_constraint.is_some() {
            return Err(invalid(
                "semverConstraint",
                "removed in Kargo v1.9: use constraint".to_owned(),
            ));
        }
        if !(1..=100).contains(&cfg.discovery_limit) {
            return Err(invalid(
                "discoveryLimit",
                format!("{} is not in 1..=100", cfg.discovery_limit),
            ));
        }
        let filter = TagFilter::with_deprecated(
            &cfg.allow_tags_regexes,
            &cfg.ignore_tags_regexes,
            cfg.allow_tags.as_deref(),
            cfg.ignore_tags.as_deref().unwrap_or_default(),
        )
        .map_err(|e| {
            let crate::selection::SelectionError::InvalidRegex { field, .. } = &e;
            invalid(field, e.to_string())
        })?;
        let constraint = match cfg.image_selection_strategy {
            ImageSelectionStrategy::SemVer if !cfg.constraint.trim().is_empty() => Some(
                Constraint::parse(cfg.constraint.trim())
                    .map_err(|e| invalid("constraint", e.to_string()))?,
            ),
            ImageSelectionStrategy::Digest if cfg.constraint.trim().is_empty() => {
                return Err(invalid(
                    "constraint",
                    "the tag to follow is required with imageSelectionStrategy Digest".to_owned(),
                ));
            }
            _ => None,
        };
        let platform = if cfg.platform.is_empty() {
            None
        } else {
            Some(Platform::parse(&cfg.platform).ok_or_else(|| {
                invalid(
                    "platform",
                    format!("{:?} is not os/arch[/variant]", cfg.platform),
                )
            })?)
        };
        let keys = match &cfg.verification {
            Some(v) => Some(
                CosignKeys::new(&v.cosign)
                    .map_err(|e| invalid("verification.cosign.publicKey", e))?,
            ),
            None => None,
        };
        Ok(Self {
            filter,
            constraint,
            platform,
            limit: cfg.discovery_limit as usize,
            keys,
        })
    }

    /// The tags that may name images: all of them, less (when signatures are required)
    /// the tags cosign writes itself (`sha256-<hex>[.sig|.att|.sbom]`).
    fn candidate_tags(&self, tags: &[String]) -> Vec<String> {
        tags.iter()
            .filter(|t| self.keys.is_none() || !signatures::is_cosign_tag(t))
            .cloned()
            .collect()
    }

    /// The discovered image for `r`, or `None` when it fails the platform filter.
    fn to_image(&self, r: &Resolved) -> Option<DiscoveredImage> {
        let mut annotations = r.meta.annotations.clone();
        if let Some(p) = &self.platform {
            let entry = r.meta.entries.as_ref()?.iter().find(|e| e.platform == *p)?;
            annotations.extend(entry.annotations.clone());
        }
        Some(DiscoveredImage {
            tag: r.tag.clone(),
            digest: r.digest.clone(),
            annotations,
            created_at: r.meta.created,
        })
    }
}

/// Parses `[http(s)://][registry/]path` into where requests go.
fn parse_repo_url(url: &str, options: &ImageSourceOptions) -> Result<RepoRef, SourceError> {
    let invalid = |m: String| {
        err(
            SourceErrorKind::InvalidConfig,
            format!("image subscription: repoURL: {m}"),
        )
    };
    let trimmed = url.trim().trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("http") => (Some("http"), r),
        Some((s, r)) if s.eq_ignore_ascii_case("https") => (Some("https"), r),
        Some((s, _)) => return Err(invalid(format!("unsupported scheme {s:?}"))),
        None => (None, trimmed),
    };
    if rest.is_empty() || rest.contains('@') || rest.contains('?') || rest.contains('#') {
        // Not echoed: user info may hold a password.
        return Err(invalid(
            "expected [registry/]repository (no user info, digest or query)".to_owned(),
        ));
    }
    let (first, tail) = rest.split_once('/').unwrap_or(("", rest));
    let is_host = !first.is_empty()
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.starts_with('['));
    let (registry, path) = if is_host {
        (first.to_owned(), tail.to_owned())
    } else {
        ("docker.io".to_owned(), rest.to_owned())
    };
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return Err(invalid(format!("{rest:?} has no repository path")));
    }
    if path.contains(':') {
        return Err(invalid(format!("{rest:?} must not have a tag")));
    }
    let (host, repository) = if registry == "docker.io" || registry == "index.docker.io" {
        let repo = if path.contains('/') {
            path.clone()
        } else {
            format!("library/{path}")
        };
        ("registry-1.docker.io".to_owned(), repo)
    } else {
        (registry.clone(), path.clone())
    };
    let insecure_ok = crate::chart::is_loopback_host(&host)
        || options
            .insecure_registries
            .iter()
            .any(|r| r.trim().eq_ignore_ascii_case(&host));
    let scheme = match scheme {
        Some("https") => "https",
        Some(_) if insecure_ok => "http",
        Some(_) => {
            return Err(invalid(format!(
                "plain HTTP to {host} refused: it is not a loopback registry and not listed \
                 in the insecure registries"
            )));
        }
        None if insecure_ok => "http",
        None => "https",
    };
    let base = format!("{scheme}://{host}");
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host_lower = host.to_ascii_lowercase();
    let host_key = host_lower
        .strip_suffix(default_port)
        .unwrap_or(&host_lower)
        .to_owned();
    Ok(RepoRef {
        cache_name: format!("{base}/{repository}"),
        host_key,
        base,
        registry,
        repository,
        display: rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(insecure: &[&str]) -> ImageSourceOptions {
        ImageSourceOptions {
            insecure_registries: insecure.iter().map(|s| (*s).to_owned()).collect(),
            ..ImageSourceOptions::default()
        }
    }

    #[test]
    fn repo_urls() {
        let o = opts(&[]);
        let r = parse_repo_url("ghcr.io/org/app", &o).unwrap();
        assert_eq!(
            (r.base.as_str(), r.repository.as_str()),
            ("https://ghcr.io", "org/app")
        );
        let r = parse_repo_url("nginx", &o).unwrap();
        assert_eq!(r.base, "https://registry-1.docker.io");
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.registry, "docker.io");
        let r = parse_repo_url("bitnami/redis", &o).unwrap();
        assert_eq!(r.repository, "bitnami/redis");
        let r = parse_repo_url("127.0.0.1:5000/team/app", &o).unwrap();
        assert_eq!(r.base, "http://127.0.0.1:5000");
        let r = parse_repo_url("localhost:5000/app/", &o).unwrap();
        assert_eq!(r.base, "http://localhost:5000");
        let r = parse_repo_url("[::1]:5000/app", &o).unwrap();
        assert_eq!(r.base, "http://[::1]:5000");
        let r = parse_repo_url("https://127.0.0.1:5000/app", &o).unwrap();
        assert_eq!(r.base, "https://127.0.0.1:5000");
        for bad in [
            "",
            "ghcr.io/org/app:1.0",
            "user:pw@ghcr.io/org/app",
            "ghcr.io/org/app@sha256:abc",
            "ftp://ghcr.io/app",
            "ghcr.io//app",
        ] {
            let e = parse_repo_url(bad, &o).unwrap_err();
            assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{bad}");
            assert!(!e.message.contains("pw"), "{e}");
        }
    }

    #[test]
    fn one_rate_limit_key_per_registry_host() {
        // (Listed insecure registries match host and port as written.)
        let o = opts(&["registry.example.com", "registry.example.com:80"]);
        let key = |u: &str| parse_repo_url(u, &o).unwrap().host_key;
        for u in [
            "registry.example.com/a",
            "Registry.Example.COM/b",
            "registry.example.com:443/c",
            "https://registry.example.com/d",
            "HTTPS://registry.example.com:443/e",
            "http://registry.example.com/f",
            "http://registry.example.com:80/g",
        ] {
            assert_eq!(key(u), "registry.example.com", "{u}");
        }
        assert_eq!(
            key("registry.example.com:5000/a"),
            "registry.example.com:5000"
        );
        assert_eq!(key("http://127.0.0.1:5000/a"), "127.0.0.1:5000");
        assert_eq!(key("127.0.0.1:5000/b"), "127.0.0.1:5000");
        for u in [
            "nginx",
            "library/nginx",
            "docker.io/library/nginx",
            "index.docker.io/bitnami/redis",
            "registry-1.docker.io/library/nginx",
        ] {
            assert_eq!(key(u), "registry-1.docker.io", "{u}");
        }
        // Different names of possibly one host are different registries.
        assert_ne!(key("localhost:5000/a"), key("127.0.0.1:5000/a"));
        let src = ImageSource::new(opts(&[]));
        assert_eq!(
            src.rate_limit_key("ghcr.io:443/org/app").unwrap(),
            src.rate_limit_key("https://GHCR.io/org/other").unwrap()
        );
        // The key names a limiter, one per host for the whole source.
        let a = src.inner.limiter(&key("registry.example.com:443/a"));
        let b = src.inner.limiter(&key("Registry.Example.com/b"));
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn plain_http_only_for_loopback_or_listed_registries() {
        let o = opts(&[]);
        let e = parse_repo_url("http://registry.example.com/app", &o).unwrap_err();
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert!(e.message.contains("plain HTTP"), "{e}");
        assert_eq!(
            parse_repo_url("registry.example.com/app", &o).unwrap().base,
            "https://registry.example.com"
        );
        assert_eq!(
            parse_repo_url("10.0.0.1:5000/app", &o).unwrap().base,
            "https://10.0.0.1:5000"
        );
        let o = opts(&["registry.example.com", "10.0.0.1:5000"]);
        assert_eq!(
            parse_repo_url("http://registry.example.com/app", &o)
                .unwrap()
                .base,
            "http://registry.example.com"
        );
        assert_eq!(
            parse_repo_url("10.0.0.1:5000/app", &o).unwrap().base,
            "http://10.0.0.1:5000"
        );
        // Listed hosts match with their port only.
        assert_eq!(
            parse_repo_url("10.0.0.1:5001/app", &o).unwrap().base,
            "https://10.0.0.1:5001"
        );
        let src = ImageSource::new(opts(&[]));
        assert_eq!(
            src.endpoint("127.0.0.2:80/a/b").unwrap(),
            "http://127.0.0.2:80/v2/a/b"
        );
        assert!(src.endpoint("http://example.com/a").is_err());
    }

    fn sub(f: impl FnOnce(&mut ImageSubscription)) -> ImageSubscription {
        let mut s = ImageSubscription::new("127.0.0.1:1/app");
        f(&mut s);
        s
    }

    #[test]
    fn invalid_config_names_the_field() {
        let cases: Vec<(ImageSubscription, &str)> = vec![
            (
                sub(|s| s.allow_tags_regexes = vec!["(".into()]),
                "allowTagsRegexes",
            ),
            (
                sub(|s| s.ignore_tags_regexes = vec!["[".into()]),
                "ignoreTagsRegexes",
            ),
            (sub(|s| s.allow_tags = Some("(".into())), "allowTags"),
            (
                sub(|s| s.constraint = "not a constraint!".into()),
                "constraint",
            ),
            (sub(|s| s.platform = "linux".into()), "platform"),
            (sub(|s| s.discovery_limit = 0), "discoveryLimit"),
            (sub(|s| s.discovery_limit = 101), "discoveryLimit"),
            (
                sub(|s| s.image_selection_strategy = ImageSelectionStrategy::Digest),
                "constraint",
            ),
            (
                sub(|s| s.semver_constraint = Some("^1".into())),
                "semverConstraint",
            ),
            (
                sub(|s| {
                    s.verification = Some(kargo_core::model::ImageVerification {
                        cosign: kargo_core::model::CosignVerification {
                            public_key: "not PEM".into(),
                        },
                    });
                }),
                "verification.cosign.publicKey",
            ),
        ];
        for (cfg, field) in cases {
            let e = Plan::new(&cfg).err().unwrap();
            assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{field}");
            assert!(e.message.contains(field), "{field}: {e}");
        }
        // Lexical ignores the constraint (as Kargo does).
        assert!(
            Plan::new(&sub(|s| {
                s.image_selection_strategy = ImageSelectionStrategy::Lexical;
                s.constraint = "whatever".into();
            }))
            .is_ok()
        );
    }

    #[tokio::test]
    async fn a_cancelled_discovery_stops() {
        let src = ImageSource::default();
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = DiscoveryContext::new("p", "w").with_cancellation(cancel.clone());
        cancel.cancel();
        let e = src.discover(&ctx, &sub(|_| {})).await.unwrap_err();
        assert!(e.message.contains("cancelled"), "{e}");
        assert_eq!(src.stats().total(), 0);
    }

    #[tokio::test]
    async fn invalid_config_fails_before_any_request() {
        let src = ImageSource::default();
        let ctx = DiscoveryContext::new("p", "w");
        let e = src
            .discover(&ctx, &sub(|s| s.constraint = ">=>".into()))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert_eq!(src.stats().total(), 0);
    }
}
