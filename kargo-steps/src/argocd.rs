//! `argocd-update` and `argocd-wait`: Argo CD Applications through Argo CD's REST API
//! (`GET`/`PUT /api/v1/applications/{name}?appNamespace=…`, `POST …/{name}/sync`,
//! `GET …?refresh=hard`, `GET /api/v1/applications?selector=…`).
//!
//! The server and its token come from [`ArgoCdOptions`] (in
//! [`BuiltinOptions::argocd`](crate::BuiltinOptions); by default from the environment
//! variables `KARGO_ARGOCD_SERVER`, `KARGO_ARGOCD_TOKEN`, `KARGO_ARGOCD_NAMESPACE` and
//! `KARGO_ARGOCD_INSECURE`). The token is sent as a bearer token and never printed.
//!
//! ```yaml
//! - uses: argocd-update
//!   config:
//!     apps:
//!     - name: guestbook-prod
//!       sources:
//!       - repoURL: https://github.com/acme/gitops.git
//!         desiredRevision: ${{ outputs['wait-for-pr'].commit }}
//!         updateTargetRevision: true
//!       - repoURL: https://charts.example.com
//!         chart: guestbook
//!         helm:
//!           images:
//!           - key: image.tag
//!             value: ${{ imageFrom('ghcr.io/acme/guestbook').Tag }}
//! - uses: argocd-wait
//!   config:
//!     apps:
//!     - name: guestbook-prod
//!       waitFor: [health, sync]
//! ```
//!
//! # Authorisation
//!
//! An Application may only be changed by a Stage it authorises with the annotation
//! `kargo.akuity.io/authorized-stage: "<project>:<stage>"`. Beyond Kargo, the value may
//! hold several comma-separated entries, and each side of an entry may be a glob pattern
//! (`*`, `?`, `[...]`), e.g. `"team-a:prod-*,platform:*"`, so an app-of-apps setup can
//! authorise a family of Stages. Whitespace around entries is ignored; a malformed entry
//! is an error. `argocd-wait` only reads and needs no authorisation.
//!
//! # `argocd-update`
//!
//! For each app (by `name`, or every app matching `selector`), every source update must
//! match one of the Application's sources (Helm charts: exact `repoURL` + `chart`; git:
//! the normalised `repoURL`); all apps are checked before any is changed. Then, per app:
//! if an operation not started for this promotion is running, the step waits; otherwise
//! the Application is updated (`targetRevision` when `updateTargetRevision`, kustomize
//! images, helm parameters) if anything changed, hard-refreshed, and synced with an
//! operation tagged with the promotion's name. The step is `Running` until that operation
//! finished: a failed operation fails the step; a successful one whose synced revision is
//! not the `desiredRevision` is an error. Outputs: `apps[]{name, namespace, health,
//! sync}` (Kargo's `name` and `namespace`, plus the health and sync status observed at
//! the end). Kargo's lasting health checks of the Stage are not implemented here.
//!
//! # `argocd-wait`
//!
//! Waits until every app satisfies `waitFor` (default `health`, `sync`, `operation`):
//! `health` = Healthy, `suspended` = Suspended, `degraded` = Degraded (these three are
//! ORed), `sync` = Synced, `operation` = no operation running (ANDed with the rest).

use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use kargo_core::freight::{normalize_chart_repo, normalize_git_url};
use kargo_core::model::LabelSelector;
use kargo_core::secret::Redacted;
use kargo_core::step::{Step, StepContext, StepDefaults, StepError, StepErrorKind, StepOutcome};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::net;

/// The authorising annotation.
pub const AUTHORIZED_STAGE_ANNOTATION: &str = "kargo.akuity.io/authorized-stage";
/// The `name` of the sync operation info entry that tags Kargo's operations.
pub const PROMOTION_INFO: &str = "kargo.akuity.io/promotion";
/// The default timeout of both steps.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The wait between polls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Where the Argo CD API is and how to authenticate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ArgoCdOptions {
    /// The Argo CD server's base URL (e.g. `https://argocd.example.com`); `None` disables
    /// the steps (they fail with a message saying so).
    pub server_url: Option<String>,
    /// A bearer token (an Argo CD account or project token).
    pub token: Redacted<String>,
    /// The namespace of apps without `namespace` (default `argocd`).
    pub default_namespace: String,
    /// Accept any TLS certificate from the server.
    pub insecure_skip_tls_verify: bool,
    /// The wait between polls of the operations / states.
    pub poll_interval: Duration,
    /// After every successful `git-push` of a branch, ask Argo CD to refresh the
    /// Applications that track that repository and branch (see [`AppRefresher`]), so the
    /// change is picked up at once instead of at Argo CD's next poll. On by default; it
    /// does nothing while `server_url` is `None`.
    pub refresh_after_push: bool,
}

impl Default for ArgoCdOptions {
    /// No server (the steps are off), namespace `argocd`, certificates verified, refresh
    /// after pushes on (it does nothing without a server).
    fn default() -> Self {
        Self {
            server_url: None,
            token: Redacted::new(String::new()),
            default_namespace: "argocd".into(),
            insecure_skip_tls_verify: false,
            poll_interval: POLL_INTERVAL,
            refresh_after_push: true,
        }
    }
}

impl ArgoCdOptions {
    /// The options named by `KARGO_ARGOCD_SERVER`, `KARGO_ARGOCD_TOKEN`,
    /// `KARGO_ARGOCD_NAMESPACE` (default `argocd`), `KARGO_ARGOCD_INSECURE` (`true`) and
    /// `KARGO_ARGOCD_REFRESH_AFTER_PUSH` (`false` turns the refresh after pushes off), as
    /// `lookup` answers them. The library never reads the environment itself: a front end
    /// passes `|k| std::env::var(k).ok()`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        Self {
            server_url: var("KARGO_ARGOCD_SERVER"),
            token: Redacted::new(var("KARGO_ARGOCD_TOKEN").unwrap_or_default()),
            default_namespace: var("KARGO_ARGOCD_NAMESPACE").unwrap_or_else(|| "argocd".into()),
            insecure_skip_tls_verify: var("KARGO_ARGOCD_INSECURE").as_deref() == Some("true"),
            poll_interval: POLL_INTERVAL,
            refresh_after_push: var("KARGO_ARGOCD_REFRESH_AFTER_PUSH").as_deref() != Some("false"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Authorisation

/// Whether the annotation value authorises `project:stage` (see the module
/// documentation). `Err` for a malformed value.
pub fn authorizes(annotation: &str, project: &str, stage: &str) -> Result<bool, String> {
    let mut any = false;
    for entry in annotation.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (p, s) = entry
            .split_once(':')
            .map(|(p, s)| (p.trim(), s.trim()))
            .filter(|(p, s)| !p.is_empty() && !s.is_empty() && !s.contains(':'))
            .ok_or_else(|| {
                format!("malformed {AUTHORIZED_STAGE_ANNOTATION} entry {entry:?} (expected <project>:<stage>)")
            })?;
        let glob = |pat: &str| {
            globset::GlobBuilder::new(pat)
                .literal_separator(false)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("bad pattern {pat:?} in {AUTHORIZED_STAGE_ANNOTATION}: {e}"))
        };
        if glob(p)?.is_match(project) && glob(s)?.is_match(stage) {
            any = true;
        }
    }
    Ok(any)
}

// ---------------------------------------------------------------------------------------
// Configuration

/// How an app entry names its Applications.
struct AppKey<'a> {
    name: Option<&'a str>,
    selector: Option<&'a LabelSelector>,
    namespace: Option<&'a str>,
}

/// `kustomize.images[]` of a source update.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeImageUpdate {
    /// `repoURL:` the image repository to override. Required.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `tag:` the tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// `digest:` the digest (wins over `tag`).
    #[serde(default)]
    pub digest: Option<String>,
    /// `newName:` a replacement image name.
    #[serde(default)]
    pub new_name: Option<String>,
}

/// `kustomize:` of a source update.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeUpdate {
    /// `images:` image overrides.
    #[serde(default)]
    pub images: Vec<KustomizeImageUpdate>,
}

/// `helm.images[]` of a source update: a Helm parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameterUpdate {
    /// `key:` the parameter name (e.g. `image.tag`). Required.
    pub key: String,
    /// `value:` its value. Required.
    pub value: String,
}

/// `helm:` of a source update.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmUpdate {
    /// `images:` parameters to set.
    #[serde(default)]
    pub images: Vec<HelmParameterUpdate>,
}

/// `sources[]` of an `argocd-update` app.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceUpdate {
    /// `repoURL:` identifies the source. Required.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `chart:` for Helm chart sources.
    #[serde(default)]
    pub chart: Option<String>,
    /// `desiredRevision:` the revision the app must end up synced to.
    #[serde(default)]
    pub desired_revision: Option<String>,
    /// `updateTargetRevision:` set the source's `targetRevision` to `desiredRevision`.
    #[serde(default)]
    pub update_target_revision: bool,
    /// `kustomize:` kustomize image overrides.
    #[serde(default)]
    pub kustomize: Option<KustomizeUpdate>,
    /// `helm:` Helm parameters.
    #[serde(default)]
    pub helm: Option<HelmUpdate>,
}

/// One app of `argocd-update`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateApp {
    /// `name:` the Application's name (or `selector`).
    #[serde(default)]
    pub name: Option<String>,
    /// `selector: {matchLabels, matchExpressions}`: every Application whose labels match.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// `namespace:` the Application's namespace (default: [`ArgoCdOptions::default_namespace`]).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `sources:` updates of the app's sources.
    #[serde(default)]
    pub sources: Vec<SourceUpdate>,
}

impl UpdateApp {
    fn key(&self) -> AppKey<'_> {
        AppKey {
            name: self.name.as_deref(),
            selector: self.selector.as_ref(),
            namespace: self.namespace.as_deref(),
        }
    }
}

/// Configuration of [`ArgoCdUpdate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdUpdateConfig {
    /// `apps:` the Applications to update. Required, at least one.
    pub apps: Vec<UpdateApp>,
}

/// One app of `argocd-wait`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitApp {
    /// `name:` the Application's name (or `selector`).
    #[serde(default)]
    pub name: Option<String>,
    /// `selector: {matchLabels, matchExpressions}`: every Application whose labels match.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// `namespace:` the Application's namespace (default: [`ArgoCdOptions::default_namespace`]).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `waitFor:` `health`, `sync`, `operation`, `suspended`, `degraded` (default
    /// `[health, sync, operation]`).
    #[serde(default)]
    pub wait_for: Vec<String>,
}

impl WaitApp {
    fn key(&self) -> AppKey<'_> {
        AppKey {
            name: self.name.as_deref(),
            selector: self.selector.as_ref(),
            namespace: self.namespace.as_deref(),
        }
    }
}

/// Configuration of [`ArgoCdWait`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdWaitConfig {
    /// `apps:` the Applications to wait for. Required, at least one.
    pub apps: Vec<WaitApp>,
}

// ---------------------------------------------------------------------------------------
// Client

/// An Argo CD API error (no token in it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ArgoCdError {
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
}

impl From<ArgoCdError> for StepError {
    fn from(e: ArgoCdError) -> Self {
        match e.status {
            Some(401 | 403) => StepError::new(StepErrorKind::Unauthorized, e.message),
            Some(404) => StepError::terminal(e.message),
            _ => StepError::retryable(e.message),
        }
    }
}

#[derive(Debug)]
struct Client {
    base: String,
    http: reqwest::Client,
    token: Redacted<String>,
}

impl Client {
    fn new(o: &ArgoCdOptions) -> Result<Self, StepError> {
        Self::with_timeout(o, Duration::from_secs(30))
    }

    fn with_timeout(o: &ArgoCdOptions, timeout: Duration) -> Result<Self, StepError> {
        let base = o.server_url.clone().ok_or_else(|| {
            StepError::terminal(
                "no Argo CD server is configured (BuiltinOptions.argocd / KARGO_ARGOCD_SERVER)",
            )
        })?;
        let http = net::guarded_client_builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(o.insecure_skip_tls_verify)
            .build()
            .map_err(|e| StepError::terminal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            token: o.token.clone(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Json>,
    ) -> Result<Json, ArgoCdError> {
        let mut url = Url::parse(&format!("{}{path}", self.base)).map_err(|_| ArgoCdError {
            status: None,
            message: "invalid Argo CD server URL".into(),
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        net::check_url(&url).map_err(|e| ArgoCdError {
            status: None,
            message: e.to_string(),
        })?;
        let shown = net::shown_url(&url);
        let mut req = self.http.request(method.clone(), url);
        if !self.token.expose().is_empty() {
            let mut v =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
                    .map_err(|_| ArgoCdError {
                        status: None,
                        message: "the Argo CD token cannot be sent in an HTTP header".into(),
                    })?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        tracing::debug!(%method, url = %shown, "Argo CD API call");
        let scrub = |s: String| {
            let t = self.token.expose();
            if t.is_empty() {
                s
            } else {
                s.replace(t.as_str(), "***")
            }
        };
        let resp = req.send().await.map_err(|e| ArgoCdError {
            status: None,
            message: scrub(format!(
                "{method} {shown}: {}",
                net::describe_reqwest_error(e).0
            )),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status.is_success() {
            return Ok(json);
        }
        let detail = json
            .get("message")
            .or_else(|| json.get("error"))
            .and_then(Json::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(ArgoCdError {
            status: Some(status.as_u16()),
            message: scrub(format!(
                "{method} {shown}: {} {}",
                status.as_u16(),
                detail.trim()
            )),
        })
    }

    async fn get(&self, ns: &str, name: &str, refresh: Option<&str>) -> Result<Json, ArgoCdError> {
        let mut q = vec![("appNamespace", ns)];
        if let Some(r) = refresh {
            q.push(("refresh", r));
        }
        self.call(
            Method::GET,
            &format!("/api/v1/applications/{}", enc(name)),
            &q,
            None,
        )
        .await
    }

    async fn list(&self, ns: &str, selector: &LabelSelector) -> Result<Vec<Json>, ArgoCdError> {
        let labels: Vec<String> = selector
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let sel = labels.join(",");
        let mut q = vec![("appNamespace", ns)];
        if !sel.is_empty() {
            q.push(("selector", sel.as_str()));
        }
        let v = self
            .call(Method::GET, "/api/v1/applications", &q, None)
            .await?;
        let items = v
            .get("items")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(items
            .into_iter()
            .filter(|app| selector.matches(&labels_of(app)))
            .collect())
    }

    async fn put(&self, ns: &str, app: &Json) -> Result<Json, ArgoCdError> {
        let name = str_at(app, "/metadata/name");
        self.call(
            Method::PUT,
            &format!("/api/v1/applications/{}", enc(&name)),
            &[("appNamespace", ns)],
            Some(app),
        )
        .await
    }

    async fn sync(&self, ns: &str, name: &str, promotion: &str) -> Result<Json, ArgoCdError> {
        let body = json!({
            "name": name,
            "appNamespace": ns,
            "prune": false,
            "infos": [
                {"name": PROMOTION_INFO, "value": promotion},
                {"name": "Reason", "value": "Promotion triggered a sync of this Application resource."},
            ],
        });
        self.call(
            Method::POST,
            &format!("/api/v1/applications/{}/sync", enc(name)),
            &[],
            Some(&body),
        )
        .await
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn str_at(v: &Json, p: &str) -> String {
    v.pointer(p)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `url` without the password of its user info (https: without the user info at all),
/// like `kargo_git::redact_url`, which the Argo CD steps do not depend on.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let host_and_path = &rest[at + 1..];
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
                format!("{scheme}://{host_and_path}")
            } else {
                let user = authority[..at].split(':').next().unwrap_or("");
                format!("{scheme}://{user}@{host_and_path}")
            }
        }
        None => url.to_owned(),
    }
}

fn labels_of(app: &Json) -> IndexMap<String, String> {
    app.pointer("/metadata/labels")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The Applications an app entry names, each with its namespace.
async fn resolve_apps(
    client: &Client,
    key: AppKey<'_>,
    default_ns: &str,
    field: &str,
) -> Result<Vec<(String, Json)>, StepError> {
    let ns = key
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or(default_ns)
        .to_owned();
    match (key.name.filter(|n| !n.is_empty()), key.selector) {
        (Some(name), None) => Ok(vec![(ns.clone(), client.get(&ns, name, None).await?)]),
        (None, Some(sel)) => {
            let apps = client.list(&ns, sel).await?;
            if apps.is_empty() {
                return Err(StepError::terminal(format!(
                    "{field}: no Application in namespace {ns:?} matches the selector"
                )));
            }
            Ok(apps.into_iter().map(|a| (ns.clone(), a)).collect())
        }
        _ => Err(StepError::invalid_config(
            field,
            "exactly one of name and selector is required",
        )),
    }
}

fn check_authorized(app: &Json, ctx: &StepContext) -> Result<(), StepError> {
    let name = str_at(app, "/metadata/name");
    let ann = app
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTHORIZED_STAGE_ANNOTATION))
        .and_then(Json::as_str);
    let Some(ann) = ann else {
        return Err(StepError::new(
            StepErrorKind::Unauthorized,
            format!(
                "Application {name:?} does not authorize Stage {}:{} (no {AUTHORIZED_STAGE_ANNOTATION} annotation)",
                ctx.project, ctx.stage
            ),
        ));
    };
    match authorizes(ann, &ctx.project, &ctx.stage) {
        Ok(true) => Ok(()),
        Ok(false) => Err(StepError::new(
            StepErrorKind::Unauthorized,
            format!(
                "Application {name:?} does not authorize Stage {}:{} ({AUTHORIZED_STAGE_ANNOTATION}: {ann:?})",
                ctx.project, ctx.stage
            ),
        )),
        Err(m) => Err(StepError::terminal(format!("Application {name:?}: {m}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Source updates

/// The app's sources as (JSON pointer, source) pairs.
fn sources(app: &Json) -> Vec<(String, Json)> {
    if let Some(list) = app.pointer("/spec/sources").and_then(Json::as_array)
        && !list.is_empty()
    {
        return list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("/spec/sources/{i}"), s.clone()))
            .collect();
    }
    app.pointer("/spec/source")
        .map(|s| vec![("/spec/source".to_owned(), s.clone())])
        .unwrap_or_default()
}

fn source_matches(src: &Json, upd: &SourceUpdate) -> bool {
    let repo = str_at(src, "/repoURL");
    match upd.chart.as_deref().filter(|c| !c.is_empty()) {
        Some(chart) => {
            str_at(src, "/chart") == chart
                && normalize_chart_repo(&repo) == normalize_chart_repo(&upd.repo_url)
        }
        None => {
            str_at(src, "/chart").is_empty()
                && normalize_git_url(&repo) == normalize_git_url(&upd.repo_url)
        }
    }
}

/// `repo=newName:tag` / `repo:tag` / `repo@digest` (Argo CD's kustomize image syntax).
fn kustomize_image(i: &KustomizeImageUpdate) -> String {
    let target = i
        .new_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&i.repo_url);
    let reference = match (
        i.digest.as_deref().filter(|d| !d.is_empty()),
        i.tag.as_deref().filter(|t| !t.is_empty()),
    ) {
        (Some(d), _) => format!("{target}@{d}"),
        (None, Some(t)) => format!("{target}:{t}"),
        (None, None) => target.to_owned(),
    };
    if i.new_name.as_deref().is_some_and(|n| !n.is_empty()) {
        format!("{}={reference}", i.repo_url)
    } else {
        reference
    }
}

/// The image name an Argo CD kustomize image entry overrides.
fn kustomize_image_name(entry: &str) -> &str {
    if let Some((name, _)) = entry.split_once('=') {
        return name;
    }
    let no_digest = entry.split('@').next().unwrap_or(entry);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Applies `upd` to `src`; returns whether something changed.
fn apply_source_update(src: &mut Json, upd: &SourceUpdate) -> Result<bool, String> {
    let before = src.clone();
    let Some(obj) = src.as_object_mut() else {
        return Err("the source is not an object".into());
    };
    if upd.update_target_revision {
        let rev = upd
            .desired_revision
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or("updateTargetRevision needs desiredRevision")?;
        obj.insert("targetRevision".into(), json!(rev));
    }
    if let Some(k) = &upd.kustomize
        && !k.images.is_empty()
    {
        let kz = obj.entry("kustomize").or_insert_with(|| json!({}));
        let images = kz
            .as_object_mut()
            .ok_or("spec.source.kustomize is not an object")?
            .entry("images")
            .or_insert_with(|| json!([]));
        let list = images
            .as_array_mut()
            .ok_or("kustomize.images is not a list")?;
        for i in &k.images {
            let entry = kustomize_image(i);
            match list
                .iter_mut()
                .find(|e| e.as_str().map(kustomize_image_name) == Some(i.repo_url.as_str()))
            {
                Some(e) => *e = json!(entry),
                None => list.push(json!(entry)),
            }
        }
    }
    if let Some(h) = &upd.helm
        && !h.images.is_empty()
    {
        let helm = obj.entry("helm").or_insert_with(|| json!({}));
        let params = helm
            .as_object_mut()
            .ok_or("spec.source.helm is not an object")?
            .entry("parameters")
            .or_insert_with(|| json!([]));
        let list = params
            .as_array_mut()
            .ok_or("helm.parameters is not a list")?;
        for p in &h.images {
            match list
                .iter_mut()
                .find(|e| e.get("name").and_then(Json::as_str) == Some(p.key.as_str()))
            {
                Some(e) => e["value"] = json!(p.value),
                None => list.push(json!({"name": p.key, "value": p.value})),
            }
        }
    }
    Ok(*src != before)
}

/// The app with every update applied, and whether it changed.
fn updated_app(
    app: &Json,
    updates: &[SourceUpdate],
    field: &str,
) -> Result<(Json, bool), StepError> {
    let mut out = app.clone();
    let srcs = sources(app);
    let mut changed = false;
    for (i, upd) in updates.iter().enumerate() {
        if upd.repo_url.is_empty() {
            return Err(StepError::invalid_config(
                format!("{field}.sources[{i}].repoURL"),
                "must not be empty",
            ));
        }
        let Some((ptr, _)) = srcs.iter().find(|(_, s)| source_matches(s, upd)) else {
            return Err(StepError::terminal(format!(
                "{field}.sources[{i}]: Application {:?} has no source for {}{}",
                str_at(app, "/metadata/name"),
                redact_url(&upd.repo_url),
                upd.chart
                    .as_deref()
                    .map(|c| format!(" chart {c}"))
                    .unwrap_or_default()
            )));
        };
        let src = out
            .pointer_mut(ptr)
            .ok_or_else(|| StepError::terminal("the Application changed shape"))?;
        changed |= apply_source_update(src, upd)
            .map_err(|m| StepError::invalid_config(format!("{field}.sources[{i}]"), m))?;
    }
    Ok((out, changed))
}

fn health(app: &Json) -> String {
    str_at(app, "/status/health/status")
}

fn sync_status(app: &Json) -> String {
    str_at(app, "/status/sync/status")
}

fn op_phase(app: &Json) -> String {
    str_at(app, "/status/operationState/phase")
}

fn op_is_ours(app: &Json, promotion: &str) -> bool {
    app.pointer("/status/operationState/operation/info")
        .or_else(|| app.pointer("/operation/info"))
        .and_then(Json::as_array)
        .is_some_and(|infos| {
            infos.iter().any(|i| {
                i.get("name").and_then(Json::as_str) == Some(PROMOTION_INFO)
                    && i.get("value").and_then(Json::as_str) == Some(promotion)
            })
        })
}

/// The revisions the last sync applied (one per source).
fn synced_revisions(app: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for p in [
        "/status/operationState/syncResult/revision",
        "/status/sync/revision",
    ] {
        if let Some(r) = app.pointer(p).and_then(Json::as_str) {
            out.push(r.to_owned());
        }
    }
    for p in [
        "/status/operationState/syncResult/revisions",
        "/status/sync/revisions",
    ] {
        if let Some(rs) = app.pointer(p).and_then(Json::as_array) {
            out.extend(rs.iter().filter_map(Json::as_str).map(str::to_owned));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Refresh after push

/// Asks Argo CD to refresh the Applications that track a repository branch right after
/// something was pushed to it, so Argo CD sees the new commit now rather than at its next
/// poll of the repository (three minutes by default). `git-push` uses it after every
/// successful branch push when [`ArgoCdOptions::refresh_after_push`] is on and a server is
/// configured.
///
/// An Application tracks the push when one of its git sources (no `chart`) has the same
/// repository (URLs compared normalised, as Argo CD does: scheme, `.git` suffix, case of
/// the host) and a `targetRevision` that is the branch (`main` or `refs/heads/main`), or
/// `HEAD` / empty while the branch is the repository's default branch, which is how Argo
/// CD's own webhook handler decides. Apps are listed across every namespace the token can
/// see (`GET /api/v1/applications` without `appNamespace`) and refreshed with a normal
/// refresh (`GET /api/v1/applications/{name}?appNamespace=…&refresh=normal`). No
/// authorisation annotation is needed: a refresh changes nothing in the Application.
#[derive(Debug)]
pub struct AppRefresher {
    client: Client,
}

/// An Application found by [`AppRefresher::tracking`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The branch a git `targetRevision` names, if it names one the way a push can move it:
/// `Some("")` for `HEAD` / empty (the default branch).
fn tracked_branch(target_revision: &str) -> &str {
    let t = target_revision.trim();
    if t == "HEAD" {
        return "";
    }
    t.strip_prefix("refs/heads/").unwrap_or(t)
}

impl AppRefresher {
    /// A refresher for `options`; `None` when no server is configured or
    /// [`ArgoCdOptions::refresh_after_push`] is off. Calls time out after 10 s.
    pub fn new(options: &ArgoCdOptions) -> Option<Result<Self, ArgoCdError>> {
        if !options.refresh_after_push || options.server_url.is_none() {
            return None;
        }
        Some(
            Client::with_timeout(options, Duration::from_secs(10))
                .map(|client| Self { client })
                .map_err(|e| ArgoCdError {
                    status: None,
                    message: e.message,
                }),
        )
    }

    /// Every Application the token can list, in every namespace.
    pub async fn applications(&self) -> Result<Vec<Json>, ArgoCdError> {
        let v = self
            .client
            .call(Method::GET, "/api/v1/applications", &[], None)
            .await?;
        Ok(v.get("items")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Whether one of `apps` follows `repo_url`'s default branch (`HEAD` or no
    /// `targetRevision`), so [`tracking`](Self::tracking) needs to know which branch that is.
    pub fn needs_default_branch(apps: &[Json], repo_url: &str) -> bool {
        let repo = normalize_git_url(repo_url);
        apps.iter().any(|app| {
            sources(app).iter().any(|(_, s)| {
                str_at(s, "/chart").is_empty()
                    && normalize_git_url(&str_at(s, "/repoURL")) == repo
                    && tracked_branch(&str_at(s, "/targetRevision")).is_empty()
            })
        })
    }

    /// The Applications among `apps` that track `branch` of `repo_url` (see the type's
    /// documentation). `default_branch` is the repository's default branch; when it is
    /// unknown, apps following `HEAD` are included (a needless refresh is harmless, a
    /// missed one is what this is for).
    pub fn tracking(
        apps: &[Json],
        repo_url: &str,
        branch: &str,
        default_branch: Option<&str>,
    ) -> Vec<AppRef> {
        let repo = normalize_git_url(repo_url);
        let branch = tracked_branch(branch);
        apps.iter()
            .filter(|app| {
                sources(app).iter().any(|(_, s)| {
                    if !str_at(s, "/chart").is_empty()
                        || normalize_git_url(&str_at(s, "/repoURL")) != repo
                    {
                        return false;
                    }
                    match tracked_branch(&str_at(s, "/targetRevision")) {
                        "" => default_branch.is_none_or(|d| tracked_branch(d) == branch),
                        t => t == branch,
                    }
                })
            })
            .map(|app| AppRef {
                namespace: str_at(app, "/metadata/namespace"),
                name: str_at(app, "/metadata/name"),
            })
            .filter(|a| !a.name.is_empty())
            .collect()
    }

    /// Requests a normal refresh of one Application.
    pub async fn refresh(&self, app: &AppRef) -> Result<(), ArgoCdError> {
        self.client
            .get(&app.namespace, &app.name, Some("normal"))
            .await
            .map(|_| ())
    }
}

// ---------------------------------------------------------------------------------------
// argocd-update

/// Kargo's `argocd-update` (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct ArgoCdUpdate {
    options: ArgoCdOptions,
}

impl ArgoCdUpdate {
    /// The step with `options`.
    pub fn new(options: ArgoCdOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl Step for ArgoCdUpdate {
    const KIND: &'static str = "argocd-update";
    type Config = ArgoCdUpdateConfig;

    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            effect: kargo_core::step::StepEffect::Idempotent,
            timeout: Some(DEFAULT_TIMEOUT),
            ..StepDefaults::default()
        }
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: ArgoCdUpdateConfig,
    ) -> Result<StepOutcome, StepError> {
        if cfg.apps.is_empty() {
            return Err(StepError::invalid_config(
                "apps",
                "at least one app is required",
            ));
        }
        if let Some(skip) = crate::dry_run_skip(
            ctx,
            &format!("update and sync {} Argo CD Application(s)", cfg.apps.len()),
        ) {
            return Ok(skip);
        }
        let client = Client::new(&self.options)?;
        // 1. Resolve, authorise and compute every update before changing anything.
        let mut plan = Vec::new();
        for (i, a) in cfg.apps.iter().enumerate() {
            let field = format!("apps[{i}]");
            for (ns, app) in
                resolve_apps(&client, a.key(), &self.options.default_namespace, &field).await?
            {
                check_authorized(&app, ctx)?;
                let (new, changed) = updated_app(&app, &a.sources, &field)?;
                let desired: Vec<String> = a
                    .sources
                    .iter()
                    .filter_map(|s| s.desired_revision.clone())
                    .filter(|r| !r.is_empty())
                    .collect();
                plan.push((ns, app, new, changed, desired));
            }
        }
        // 2. Per app: wait for foreign operations, update, refresh, sync, follow ours.
        let mut pending = Vec::new();
        let mut outputs = Vec::new();
        for (ns, app, new, changed, desired) in plan {
            let name = str_at(&app, "/metadata/name");
            let phase = op_phase(&app);
            let ours = op_is_ours(&app, &ctx.promotion);
            if ours {
                match phase.as_str() {
                    "Running" | "Terminating" => {
                        pending.push(format!("{name}: sync operation running"));
                    }
                    "Failed" | "Error" => {
                        let msg = str_at(&app, "/status/operationState/message");
                        return Err(StepError::failed(format!(
                            "Application {name:?}: the sync operation ended with {phase}: {msg}"
                        )));
                    }
                    _ => {
                        let synced = synced_revisions(&app);
                        if let Some(missing) = desired.iter().find(|d| !synced.contains(d)) {
                            return Err(StepError::retryable(format!(
                                "Application {name:?} was synced, but not to the desired revision {missing}"
                            )));
                        }
                    }
                }
            } else if phase == "Running" {
                pending.push(format!(
                    "{name}: waiting for an operation not started by this promotion"
                ));
            } else {
                if changed {
                    tracing::info!(app = %name, namespace = %ns, "updating the Argo CD Application");
                    client.put(&ns, &new).await?;
                }
                client.get(&ns, &name, Some("hard")).await?;
                tracing::info!(app = %name, namespace = %ns, "syncing the Argo CD Application");
                client.sync(&ns, &name, &ctx.promotion).await?;
                pending.push(format!("{name}: sync operation started"));
            }
            outputs.push(json!({
                "name": name, "namespace": ns,
                "health": health(&app), "sync": sync_status(&app),
            }));
        }
        let outcome = if pending.is_empty() {
            StepOutcome::succeeded()
        } else {
            StepOutcome::running(self.options.poll_interval).with_message(pending.join("; "))
        };
        Ok(outcome.with_output("apps", Json::Array(outputs)))
    }
}

// ---------------------------------------------------------------------------------------
// argocd-wait

/// Kargo's `argocd-wait` (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct ArgoCdWait {
    options: ArgoCdOptions,
}

impl ArgoCdWait {
    /// The step with `options`.
    pub fn new(options: ArgoCdOptions) -> Self {
        Self { options }
    }
}

fn unmet(app: &Json, wait_for: &[String]) -> Result<Vec<String>, String> {
    let defaults = [
        "health".to_owned(),
        "sync".to_owned(),
        "operation".to_owned(),
    ];
    let conds = if wait_for.is_empty() {
        &defaults[..]
    } else {
        wait_for
    };
    let mut health_conds = Vec::new();
    let mut missing = Vec::new();
    for c in conds {
        match c.as_str() {
            "health" => health_conds.push("Healthy"),
            "suspended" => health_conds.push("Suspended"),
            "degraded" => health_conds.push("Degraded"),
            "sync" => {
                if sync_status(app) != "Synced" {
                    missing.push(format!("sync is {:?}", sync_status(app)));
                }
            }
            "operation" => {
                if matches!(op_phase(app).as_str(), "Running" | "Terminating") {
                    missing.push("an operation is running".into());
                }
            }
            other => return Err(format!("unknown waitFor condition {other:?}")),
        }
    }
    if !health_conds.is_empty() && !health_conds.contains(&health(app).as_str()) {
        missing.push(format!(
            "health is {:?}, waiting for {}",
            health(app),
            health_conds.join(" or ")
        ));
    }
    Ok(missing)
}

#[async_trait]
impl Step for ArgoCdWait {
    const KIND: &'static str = "argocd-wait";
    type Config = ArgoCdWaitConfig;

    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            effect: kargo_core::step::StepEffect::Idempotent,
            timeout: Some(DEFAULT_TIMEOUT),
            ..StepDefaults::default()
        }
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: ArgoCdWaitConfig,
    ) -> Result<StepOutcome, StepError> {
        if let Some(skip) = crate::dry_run_skip(ctx, "wait for Argo CD Applications") {
            return Ok(skip);
        }
        if cfg.apps.is_empty() {
            return Err(StepError::invalid_config(
                "apps",
                "at least one app is required",
            ));
        }
        let client = Client::new(&self.options)?;
        let mut waiting = Vec::new();
        let mut outputs = Vec::new();
        for (i, a) in cfg.apps.iter().enumerate() {
            let field = format!("apps[{i}]");
            for (ns, app) in
                resolve_apps(&client, a.key(), &self.options.default_namespace, &field).await?
            {
                let name = str_at(&app, "/metadata/name");
                let missing = unmet(&app, &a.wait_for)
                    .map_err(|m| StepError::invalid_config(format!("{field}.waitFor"), m))?;
                if !missing.is_empty() {
                    waiting.push(format!("{name}: {}", missing.join(", ")));
                }
                outputs.push(json!({
                    "name": name, "namespace": ns,
                    "health": health(&app), "sync": sync_status(&app),
                }));
            }
        }
        let outcome = if waiting.is_empty() {
            StepOutcome::succeeded()
        } else {
            StepOutcome::running(self.options.poll_interval).with_message(waiting.join("; "))
        };
        Ok(outcome.with_output("apps", Json::Array(outputs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_in_messages_lose_their_credentials() {
        assert_eq!(redact_url("https://u:p@h/x.git"), "https://h/x.git");
        assert_eq!(redact_url("ssh://git:pw@h/x"), "ssh://git@h/x");
        assert_eq!(redact_url("https://h/x.git"), "https://h/x.git");
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }

    #[test]
    fn authorization_entries_and_globs() {
        assert_eq!(authorizes("demo:prod", "demo", "prod"), Ok(true));
        assert_eq!(authorizes("demo:prod", "demo", "staging"), Ok(false));
        assert_eq!(
            authorizes(" other:x , demo:prod ", "demo", "prod"),
            Ok(true)
        );
        assert_eq!(authorizes("team-*:prod-*", "team-a", "prod-eu"), Ok(true));
        assert_eq!(
            authorizes("team-*:prod-*", "team-a", "staging-eu"),
            Ok(false)
        );
        assert_eq!(authorizes("*:*", "any", "thing"), Ok(true));
        assert_eq!(authorizes("demo:prod-?", "demo", "prod-1"), Ok(true));
        assert!(authorizes("demo", "demo", "prod").is_err());
        assert!(authorizes("demo:", "demo", "prod").is_err());
        assert!(authorizes("a:b:c", "a", "b").is_err());
        assert_eq!(authorizes("", "demo", "prod"), Ok(false));
    }

    #[test]
    fn kustomize_images() {
        let i = |repo: &str, tag: Option<&str>, digest: Option<&str>, new: Option<&str>| {
            kustomize_image(&KustomizeImageUpdate {
                repo_url: repo.into(),
                tag: tag.map(Into::into),
                digest: digest.map(Into::into),
                new_name: new.map(Into::into),
            })
        };
        assert_eq!(i("ghcr.io/a/b", Some("1.2"), None, None), "ghcr.io/a/b:1.2");
        assert_eq!(
            i("ghcr.io/a/b", Some("1.2"), Some("sha256:x"), None),
            "ghcr.io/a/b@sha256:x"
        );
        assert_eq!(i("a/b", Some("1"), None, Some("c/d")), "a/b=c/d:1");
        assert_eq!(kustomize_image_name("ghcr.io/a/b:1.2"), "ghcr.io/a/b");
        assert_eq!(
            kustomize_image_name("localhost:5000/a:1"),
            "localhost:5000/a"
        );
        assert_eq!(kustomize_image_name("a/b=c/d:1"), "a/b");
        assert_eq!(kustomize_image_name("a/b@sha256:x"), "a/b");
    }

    #[test]
    fn wait_conditions() {
        let app =
            json!({"status": {"health": {"status": "Degraded"}, "sync": {"status": "Synced"}}});
        assert!(
            unmet(&app, &[])
                .unwrap()
                .iter()
                .any(|m| m.contains("health"))
        );
        assert!(
            unmet(&app, &["degraded".into(), "sync".into()])
                .unwrap()
                .is_empty()
        );
        assert!(
            unmet(&app, &["health".into(), "degraded".into()])
                .unwrap()
                .is_empty()
        );
        assert!(unmet(&app, &["bogus".into()]).is_err());
    }
}
