//! Webhook receivers: parse and verify an inbound webhook request, and name the Warehouses
//! it should refresh. No HTTP framework is involved: a server hands over a plain
//! [`WebhookRequest`] and turns the result into a response ([`WebhookError::status`]).
//!
//! # Flow
//!
//! 1. [`WebhookRouter::new`] reads a Project's receivers (`ProjectConfig.spec.webhookReceivers`)
//!    and their Secrets, and computes each receiver's path with [`receiver_path`]:
//!    `/webhook/<type>/<hex SHA-256(project + receiverName + secret value)>`. A receiver
//!    whose Secret (or the Secret's key) is missing gets no route; it is logged.
//! 2. [`WebhookRouter::handle`] finds the receiver by path (unknown path: 404), requires
//!    `POST` (405), enforces the [`MAX_BODY_BYTES`] limit (413), authenticates the request
//!    as the provider specifies (missing credentials: 401, wrong ones: 403), parses the
//!    payload (not UTF-8, not JSON or missing fields: 400), and reads the event (an event the
//!    provider sends but this receiver does not handle: 422; a ping: 200 with nothing to
//!    refresh).
//! 3. The event becomes a list of [`PushedArtifact`]s: repository URLs (normalised like
//!    Kargo's `subscribedURLs` index) plus qualifiers (git refs, tags or versions, changed
//!    files), and [`warehouses_to_refresh`] picks the Warehouses with a subscription that
//!    the push can affect (see there).
//! 4. A pull request merged or closed becomes a [`PullRequestEvent`]: the server wakes the
//!    promotions waiting on it in `git-wait-for-pr` ([`WebhookOutcome::wake_keys`]), as
//!    Kargo refreshes them; it refreshes no Warehouse (the merge's push event does).
//!
//! Rejections are logged through `tracing` with the receiver, provider and reason, never
//! with the body, a header value or a secret.
//!
//! # Providers and authentication
//!
//! | type | Secret key | authentication | events handled |
//! |---|---|---|---|
//! | `github` | `secret` | `X-Hub-Signature-256: sha256=<HMAC-SHA256 hex>` | `push`, `package` / `registry_package` (`published`, GHCR images and Helm OCI charts), `pull_request` (`closed`), `ping` |
//! | `gitlab` | `secret-token` | `X-Gitlab-Token` equals the token | `Push Hook`, `Tag Push Hook`, `Merge Request Hook` (`merge`, `close`) |
//! | `gitea` | `secret` | `X-Gitea-Signature` / `X-Forgejo-Signature` / `X-Gogs-Signature` (HMAC-SHA256 hex) or `X-Hub-Signature-256` | `push`, `pull_request` (`closed`) |
//! | `bitbucket` | `secret` | `X-Hub-Signature: sha256=<HMAC-SHA256 hex>` | `repo:push`, `pullrequest:fulfilled`, `pullrequest:rejected`, `diagnostics:ping` |
//! | `azure` | `secret` | the URL only | ACR `push` / `ping`; Azure DevOps `git.push`, `git.pullrequest.merged`, `git.pullrequest.updated` |
//! | `dockerhub` | `secret` | the URL only | push |
//! | `quay` | `secret` | the URL only | repository push |
//! | `harbor` | `auth-header` | `Authorization` equals the value | `PUSH_ARTIFACT` |
//! | `artifactory` | `secret-token` | `X-Jfrog-Event-Auth: <HMAC-SHA256 hex>` | `pushed` (Docker / OCI repositories; `virtualRepoName` replaces the repository key) |
//! | `distribution` | `auth-header` | `Authorization` equals the value (set it in the registry's notification endpoint `headers`) | `push` events of the envelope |
//! | `generic` | `secret` | the URL only | any: `whenExpression` decides ([`generic`]) |
//!
//! Every comparison of a secret, token or signature is constant-time.

pub mod generic;
mod matching;
mod providers;

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use kargo_core::model::{ProjectConfig, Warehouse, WebhookReceiverConfig};
use kargo_core::secret::{Redacted, SecretStore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use matching::{
    chart_version_matches, image_tag_matches, matches_ref, subscribed_urls, warehouses_to_refresh,
};

/// The largest request body a receiver accepts (2 MiB, as Kargo).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The prefix of every receiver path.
pub const PATH_PREFIX: &str = "/webhook/";

/// Request headers: an ordered multimap with case-insensitive names.
#[derive(Clone, Default)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl fmt::Debug for Headers {
    /// Names only: values may hold tokens or signatures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value for `name` (kept after any earlier value of the same name).
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` pair, in order, names as given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

/// An inbound request, as plain data. Its `Debug` shows the method, the header names and
/// the body's length only: the path, header values and body may carry secrets.
#[derive(Clone, Default)]
pub struct WebhookRequest {
    /// The HTTP method (`POST`).
    pub method: String,
    /// The request target: the path, optionally followed by `?query`.
    pub path: String,
    /// The headers.
    pub headers: Headers,
    /// The raw body. A server should stop reading after [`MAX_BODY_BYTES`] + 1 bytes; a
    /// longer body is rejected here anyway.
    pub body: Vec<u8>,
}

impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl WebhookRequest {
    /// A `POST` of `body` to `path` with `headers`.
    pub fn post(
        path: impl Into<String>,
        headers: impl IntoIterator<Item = (String, String)>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            method: "POST".to_owned(),
            path: path.into(),
            headers: headers.into_iter().collect(),
            body: body.into(),
        }
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// The query string (empty when there is none).
    pub fn query(&self) -> &str {
        self.path.split_once('?').map_or("", |(_, q)| q)
    }
}

/// The platform a receiver serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// GitHub (repositories and GHCR packages).
    GitHub,
    /// GitLab.
    GitLab,
    /// Gitea, Forgejo and Gogs.
    Gitea,
    /// Bitbucket Cloud.
    Bitbucket,
    /// Azure Container Registry and Azure DevOps Repos.
    Azure,
    /// Docker Hub.
    DockerHub,
    /// Quay.
    Quay,
    /// Harbor.
    Harbor,
    /// JFrog Artifactory.
    Artifactory,
    /// A CNCF Distribution registry's notifications (kargo-rs extension).
    Distribution,
    /// The generic receiver.
    Generic,
}

impl Provider {
    /// The receiver type as written in a manifest and in the path (`github`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
            Provider::Azure => "azure",
            Provider::DockerHub => "dockerhub",
            Provider::Quay => "quay",
            Provider::Harbor => "harbor",
            Provider::Artifactory => "artifactory",
            Provider::Distribution => "distribution",
            Provider::Generic => "generic",
        }
    }

    /// The Secret key holding the receiver's secret.
    pub fn secret_key(self) -> &'static str {
        match self {
            Provider::GitLab | Provider::Artifactory => "secret-token",
            Provider::Harbor | Provider::Distribution => "auth-header",
            _ => "secret",
        }
    }

    /// The provider of a receiver configuration and its Secret's name, when exactly one
    /// type is set.
    pub fn of(cfg: &WebhookReceiverConfig) -> Option<(Provider, &str)> {
        fn s(o: &Option<kargo_core::model::SecretWebhookReceiverConfig>) -> Option<&str> {
            o.as_ref().map(|c| c.secret_ref.name.as_str())
        }
        let candidates = [
            (Provider::GitHub, s(&cfg.github)),
            (Provider::GitLab, s(&cfg.gitlab)),
            (Provider::Gitea, s(&cfg.gitea)),
            (Provider::Bitbucket, s(&cfg.bitbucket)),
            (Provider::Azure, s(&cfg.azure)),
            (Provider::DockerHub, s(&cfg.dockerhub)),
            (Provider::Quay, s(&cfg.quay)),
            (Provider::Harbor, s(&cfg.harbor)),
            (Provider::Distribution, s(&cfg.distribution)),
            (
                Provider::Artifactory,
                cfg.artifactory.as_ref().map(|c| c.secret_ref.name.as_str()),
            ),
            (
                Provider::Generic,
                cfg.generic.as_ref().map(|c| c.secret_ref.name.as_str()),
            ),
        ];
        let found: Vec<(Provider, &str)> = candidates
            .into_iter()
            .filter_map(|(p, n)| Some((p, n?)))
            .collect();
        match found.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was pushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// A git repository (refs and, when known, changed files).
    #[default]
    Git,
    /// A container image repository.
    Image,
    /// A Helm chart in an OCI repository.
    Chart,
    /// An OCI repository that may hold images or Helm charts (the payload does not say).
    Oci,
}

/// One pushed artifact: the repository and its qualifiers.
///
/// These are the "qualifiers" of Kargo's webhook processing; a discovery that wants to be
/// incremental can fetch only the named tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushedArtifact {
    /// What kind of repository.
    pub kind: ArtifactKind,
    /// The repository's URLs, normalised (git: [`normalize_git_url`], every form the payload
    /// gives, e.g. HTTPS and SSH; OCI: [`normalize_image_repo`]).
    ///
    /// [`normalize_git_url`]: kargo_core::freight::normalize_git_url
    /// [`normalize_image_repo`]: kargo_core::freight::normalize_image_repo
    pub repo_urls: Vec<String>,
    /// Git: the updated refs (`refs/heads/main`, `refs/tags/v1.2.3`).
    pub git_refs: Vec<String>,
    /// Git: the repository's default branch, when the payload names it.
    pub default_branch: Option<String>,
    /// Git: the files the pushed commits added, modified or removed; `None` when the
    /// payload does not list them (or lists only part of them).
    pub changed_files: Option<Vec<String>>,
    /// OCI: the pushed tags (image tags; chart versions, with `_` for `+`).
    pub tags: Vec<String>,
    /// OCI: the pushed manifest's digest, when given.
    pub digest: Option<String>,
}

/// A pull request a webhook says was merged or closed (GitHub and Gitea `pull_request`
/// `closed`, GitLab merge request `merge` / `close`, Bitbucket `pullrequest:fulfilled` /
/// `pullrequest:rejected`, Azure DevOps `git.pullrequest.merged` / `updated` to
/// `completed` or `abandoned`). Promotions waiting on it in `git-wait-for-pr` are woken
/// through [`PullRequestEvent::wake_keys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequestEvent {
    /// The repository's URLs, normalised like [`PushedArtifact::repo_urls`].
    pub repo_urls: Vec<String>,
    /// The pull request's number (GitLab: its IID; Bitbucket and Azure DevOps: its ID).
    pub number: i64,
    /// Whether it was merged (else closed without merging).
    pub merged: bool,
}

impl PullRequestEvent {
    /// The runner wake keys of this pull request, one per repository URL
    /// ([`kargo_core::runner::pull_request_wake_key`]).
    pub fn wake_keys(&self) -> Vec<String> {
        self.repo_urls
            .iter()
            .map(|u| kargo_core::runner::pull_request_wake_key(u, self.number))
            .collect()
    }
}

/// The result of a handled request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// The receiver's name.
    pub receiver: String,
    /// Its provider.
    pub provider: Provider,
    /// The event as the provider names it (`push`, `Tag Push Hook`, `PUSH_ARTIFACT`, ...).
    pub event: String,
    /// What was pushed, with its qualifiers (empty for pings and ignored events).
    pub artifacts: Vec<PushedArtifact>,
    /// The Warehouses to refresh, by name, sorted, without duplicates.
    pub warehouses_to_refresh: Vec<String>,
    /// Pull requests merged or closed (whose waiting promotions to wake).
    pub pull_requests: Vec<PullRequestEvent>,
}

impl WebhookOutcome {
    /// The runner wake keys of every pull request of this event.
    pub fn wake_keys(&self) -> Vec<String> {
        self.pull_requests
            .iter()
            .flat_map(PullRequestEvent::wake_keys)
            .collect()
    }
}

/// Why a request was rejected; [`WebhookError::status`] is the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No receiver has this path (404).
    #[error("no webhook receiver at this path")]
    NotFound,
    /// The method is not `POST` (405).
    #[error("method {0} not allowed: webhooks are POSTed")]
    MethodNotAllowed(String),
    /// The body is larger than [`MAX_BODY_BYTES`] (413).
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The credential (signature, token, header) is missing (401).
    #[error("missing {0}")]
    Unauthenticated(&'static str),
    /// The credential is wrong (403).
    #[error("invalid {0}")]
    Forbidden(&'static str),
    /// The body or a header is malformed: not UTF-8, not JSON, missing fields (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The provider sent an event this receiver does not handle (422). The name is cut to
    /// 64 characters.
    #[error("unsupported event {0:?}")]
    UnsupportedEvent(String),
    /// The receiver's own configuration is broken, e.g. a generic receiver's expression does
    /// not compile or evaluate (500).
    #[error("receiver misconfigured: {0}")]
    Misconfigured(String),
}

impl WebhookError {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::NotFound => 404,
            WebhookError::MethodNotAllowed(_) => 405,
            WebhookError::PayloadTooLarge { .. } => 413,
            WebhookError::Unauthenticated(_) => 401,
            WebhookError::Forbidden(_) => 403,
            WebhookError::BadRequest(_) => 400,
            WebhookError::UnsupportedEvent(_) => 422,
            WebhookError::Misconfigured(_) => 500,
        }
    }
}

/// The path of a receiver: `/webhook/<type>/<hex SHA-256(project + receiver_name +
/// concatenated secret values)>` (`project` is empty for cluster-wide receivers). Rotating
/// the secret changes the path.
pub fn receiver_path(
    provider: Provider,
    project: &str,
    receiver_name: &str,
    secret_values: &[&str],
) -> String {
    let mut h = Sha256::new();
    h.update(project.as_bytes());
    h.update(receiver_name.as_bytes());
    for v in secret_values {
        h.update(v.as_bytes());
    }
    format!("{PATH_PREFIX}{}/{}", provider.as_str(), hex(&h.finalize()))
}

/// The routes of `receivers`, with paths for `project` (empty: cluster-wide).
fn routes_of(
    project: &str,
    receivers: &[WebhookReceiverConfig],
    secrets: &dyn SecretStore,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for r in receivers {
        let Some((provider, secret_name)) = Provider::of(r) else {
            tracing::warn!(receiver = %r.name, "webhook receiver must have exactly one type; not routed");
            continue;
        };
        let key = provider.secret_key();
        let Some(value) = secrets
            .secret(secret_name)
            .and_then(|mut m| m.remove(key))
            .filter(|v| !v.expose().is_empty())
        else {
            tracing::warn!(
                receiver = %r.name,
                provider = %provider,
                secret = %secret_name,
                key,
                "webhook receiver's Secret or key is missing or empty; not routed"
            );
            continue;
        };
        let path = receiver_path(provider, project, &r.name, &[value.expose()]);
        routes.push(Route {
            info: RouteInfo {
                name: r.name.clone(),
                provider,
                path,
            },
            secret: value,
            config: r.clone(),
        });
    }
    routes
}

/// A routable receiver, for listing (no secret in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The receiver's name.
    pub name: String,
    /// Its provider.
    pub provider: Provider,
    /// Its path ([`receiver_path`]).
    pub path: String,
}

#[derive(Clone, Debug)]
struct Route {
    info: RouteInfo,
    secret: Redacted<String>,
    config: WebhookReceiverConfig,
}

/// A Project's receivers, ready to route and handle requests.
#[derive(Clone, Debug, Default)]
pub struct WebhookRouter {
    project: String,
    routes: Vec<Route>,
}

impl WebhookRouter {
    /// The receivers of `config` (the ProjectConfig of `project`), with their secrets read
    /// from `secrets`. A receiver without exactly one type, or whose Secret or Secret key is
    /// missing, gets no route (a warning is logged, naming the receiver and the key).
    pub fn new(project: &str, config: &ProjectConfig, secrets: &dyn SecretStore) -> Self {
        Self::from_receivers(project, &config.spec.webhook_receivers, secrets)
    }

    /// Like [`WebhookRouter::new`] from a list of receivers (e.g. a ClusterConfig's, with an
    /// empty `project`).
    pub fn from_receivers(
        project: &str,
        receivers: &[WebhookReceiverConfig],
        secrets: &dyn SecretStore,
    ) -> Self {
        Self {
            project: project.to_owned(),
            routes: routes_of(project, receivers, secrets),
        }
    }

    /// Adds a ClusterConfig's receivers (Kargo's cluster-wide receivers), with their
    /// Secrets read from `secrets` (Kargo keeps them in its system-resources namespace).
    /// Their paths are computed without a project, as Kargo does, and a request to one
    /// refreshes the matching Warehouses of this router's Project like its own receivers.
    pub fn with_cluster_receivers(
        mut self,
        receivers: &[WebhookReceiverConfig],
        secrets: &dyn SecretStore,
    ) -> Self {
        self.routes.extend(routes_of("", receivers, secrets));
        self
    }

    /// The project.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The routed receivers.
    pub fn routes(&self) -> impl Iterator<Item = &RouteInfo> {
        self.routes.iter().map(|r| &r.info)
    }

    /// Handles one request against the Project's Warehouses (see the module documentation).
    pub fn handle(
        &self,
        req: &WebhookRequest,
        warehouses: &[Warehouse],
    ) -> Result<WebhookOutcome, WebhookError> {
        let path = req.path_only();
        let path = path.strip_suffix('/').unwrap_or(path);
        // Compare every route in constant time: the path is a secret.
        let mut found: Option<&Route> = None;
        for r in &self.routes {
            if bool::from(r.info.path.as_bytes().ct_eq(path.as_bytes())) {
                found = Some(r);
            }
        }
        let Some(route) = found else {
            tracing::info!(project = %self.project, "webhook rejected: unknown path");
            return Err(WebhookError::NotFound);
        };
        let result = handle_route(route, req, warehouses);
        match &result {
            Ok(o) => tracing::info!(
                project = %self.project,
                receiver = %o.receiver,
                provider = %o.provider,
                event = %o.event,
                refresh = ?o.warehouses_to_refresh,
                "webhook handled"
            ),
            Err(e) => tracing::warn!(
                project = %self.project,
                receiver = %route.info.name,
                provider = %route.info.provider,
                status = e.status(),
                reason = %e,
                "webhook rejected"
            ),
        }
        result
    }
}

/// One-shot convenience: builds a [`WebhookRouter`] and handles `req`.
pub fn handle_request(
    project: &str,
    config: &ProjectConfig,
    warehouses: &[Warehouse],
    secrets: &dyn SecretStore,
    req: &WebhookRequest,
) -> Result<WebhookOutcome, WebhookError> {
    WebhookRouter::new(project, config, secrets).handle(req, warehouses)
}

fn handle_route(
    route: &Route,
    req: &WebhookRequest,
    warehouses: &[Warehouse],
) -> Result<WebhookOutcome, WebhookError> {
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::MethodNotAllowed(
            req.method.chars().take(16).collect(),
        ));
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let provider = route.info.provider;
    let secret = route.secret.expose().as_bytes();
    let outcome =
        |event: String, artifacts: Vec<PushedArtifact>, refresh: Vec<String>| WebhookOutcome {
            receiver: route.info.name.clone(),
            provider,
            event,
            artifacts,
            warehouses_to_refresh: refresh,
            pull_requests: Vec::new(),
        };
    if provider == Provider::Generic {
        let Some(cfg) = &route.config.generic else {
            return Err(WebhookError::Misconfigured("not a generic receiver".into()));
        };
        let body = parse_json(&req.body)?;
        let refresh = generic::handle(cfg, req, &body, warehouses)?;
        return Ok(outcome("generic".to_owned(), Vec::new(), refresh));
    }
    providers::authenticate(provider, req, secret)?;
    let body = parse_json(&req.body)?;
    let parsed = providers::parse(provider, &route.config, req, &body)?;
    let refresh = warehouses_to_refresh(&parsed.artifacts, warehouses);
    Ok(WebhookOutcome {
        pull_requests: parsed.pull_requests,
        ..outcome(parsed.event, parsed.artifacts, refresh)
    })
}

/// The body as JSON: it must be UTF-8 and parse.
fn parse_json(body: &[u8]) -> Result<serde_json::Value, WebhookError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| WebhookError::BadRequest(format!("body is not UTF-8: {e}")))?;
    serde_json::from_str(text)
        .map_err(|e| WebhookError::BadRequest(format!("body is not JSON: {e}")))
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Decodes hex (either case); `None` if malformed.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Verifies a hex HMAC-SHA256 `signature` of `body` under `secret`, in constant time.
fn verify_hmac_sha256(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Some(sig) = unhex(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Whether two secrets (tokens, header values) are equal, in time that depends on neither
/// where they differ nor their lengths: their SHA-256 digests are compared in constant
/// time. For receivers and for HTTP front ends checking their own tokens.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// The secret value of a receiver (its Secret's key for the provider, see
/// [`Provider::secret_key`]), for callers that compute [`receiver_path`] themselves.
pub fn secret_value(
    secrets: &dyn SecretStore,
    cfg: &WebhookReceiverConfig,
) -> Option<Redacted<String>> {
    let (provider, name) = Provider::of(cfg)?;
    let mut m: BTreeMap<String, Redacted<String>> = secrets.secret(name)?;
    m.remove(provider.secret_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(secrets_equal("t0ken", "t0ken"));
        assert!(!secrets_equal("t0ke", "t0ken"));
        assert!(!secrets_equal("", "t0ken"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let sig = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(verify_hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing?",
            sig
        ));
        assert!(!verify_hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing!",
            sig
        ));
    }

    #[test]
    fn path_is_the_documented_hash() {
        let p = receiver_path(Provider::GitHub, "demo", "gh", &["s3cr3t"]);
        let mut h = Sha256::new();
        h.update(b"demoghs3cr3t");
        assert_eq!(p, format!("/webhook/github/{}", hex(&h.finalize())));
    }
}
