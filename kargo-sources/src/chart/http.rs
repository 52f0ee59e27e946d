//! Classic Helm chart repositories: `index.yaml` plus archives over HTTP(S).

use std::collections::BTreeMap;
use std::sync::Arc;

use kargo_core::secret::Credentials;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::version::{Constraint, Version, sort_descending};
use super::{ChartArchive, ChartClientOptions, ChartError, IndexCache, redact_url, sha256_digest};

/// One version of a chart in an `index.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The version string, as written.
    pub version: String,
    /// Where the archive can be downloaded (relative URLs are relative to the repository).
    pub urls: Vec<String>,
    /// The archive's SHA-256 (hex, as Helm writes it), when the index has one.
    pub digest: Option<String>,
}

/// The parts of a repository's `index.yaml` that chart resolution needs. Each chart's
/// entries are sorted like Helm sorts them: descending by version, unparseable versions
/// last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoIndex {
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    entries: Option<BTreeMap<String, Option<Vec<Option<RawEntry>>>>>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    version: Option<yaml_serde::Value>,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    digest: Option<String>,
}

fn scalar_string(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl RepoIndex {
    /// Parses an `index.yaml`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let raw: RawIndex = yaml_serde::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut entries = BTreeMap::new();
        for (name, list) in raw.entries.unwrap_or_default() {
            let mut parsed: Vec<(Option<Version>, IndexEntry)> = list
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let version = e.version.as_ref().and_then(scalar_string)?;
                    Some((
                        Version::parse_lenient(&version).ok(),
                        IndexEntry {
                            version,
                            urls: e.urls.unwrap_or_default(),
                            digest: e.digest.filter(|d| !d.is_empty()),
                        },
                    ))
                })
                .collect();
            // Helm: descending by version; an unparseable version sorts last. The sort is
            // stable, so equal versions keep the index's order.
            parsed.sort_by(|(a, _), (b, _)| match (a, b) {
                (Some(a), Some(b)) => b.cmp_precedence(a),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            entries.insert(name, parsed.into_iter().map(|(_, e)| e).collect());
        }
        Ok(Self { entries })
    }

    /// The entries of chart `name`, best first, or `None` if the index has no such chart.
    pub fn chart(&self, name: &str) -> Option<&[IndexEntry]> {
        self.entries.get(name).map(Vec::as_slice)
    }

    /// The chart names of the index, sorted.
    pub fn chart_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Kargo's version list of chart `name`: every version that parses leniently, descending,
    /// ties by original string descending. Empty when the chart is not in the index.
    pub fn versions(&self, name: &str) -> Vec<String> {
        let mut vs: Vec<Version> = self
            .chart(name)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| Version::parse_lenient(&e.version).ok())
            .collect();
        sort_descending(&mut vs);
        vs.into_iter().map(|v| v.original().to_owned()).collect()
    }

    /// Helm's resolution: the first entry of chart `name` (best first) whose version parses,
    /// has at least one URL and satisfies `constraint`.
    pub fn find(&self, name: &str, constraint: &Constraint) -> Option<&IndexEntry> {
        self.chart(name)?.iter().find(|e| {
            !e.urls.is_empty()
                && Version::parse_lenient(&e.version).is_ok_and(|v| constraint.matches(&v))
        })
    }
}

/// The outcome of [`HttpChartRepository::fetch_index`].
#[derive(Debug, Clone)]
pub struct IndexFetch {
    /// The parsed index.
    pub index: Arc<RepoIndex>,
    /// Whether the server answered `304 Not Modified` and the cached index was reused.
    pub not_modified: bool,
}

/// A chart version resolved to its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChart {
    /// The chart name.
    pub name: String,
    /// The version, as the index writes it.
    pub version: String,
    /// The absolute archive URL.
    pub url: String,
    /// The archive's expected SHA-256 (hex), when the index has one.
    pub digest: Option<String>,
}

/// A classic Helm chart repository.
///
/// ```no_run
/// # async fn demo() -> Result<(), kargo_sources::chart::ChartError> {
/// use std::sync::Arc;
/// use kargo_sources::chart::{ChartClientOptions, HttpChartRepository, IndexCache};
///
/// let repo = HttpChartRepository::new(
///     "https://charts.example.com",
///     None,
///     &ChartClientOptions::default(),
///     Arc::new(IndexCache::default()),
/// )?;
/// let versions = repo.versions("podinfo").await?; // best first
/// let chart = repo.resolve("podinfo", &versions[0]).await?;
/// let archive = repo.download(&chart).await?;
/// # let _ = archive; Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpChartRepository {
    base: Url,
    display: String,
    credentials: Option<Credentials>,
    client: reqwest::Client,
    cache: Arc<IndexCache>,
    max_index_bytes: u64,
    max_archive_bytes: u64,
}

impl std::fmt::Debug for HttpChartRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpChartRepository")
            .field("url", &self.display)
            .field("credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpChartRepository {
    /// A client for the repository at `repo_url` (`http://` or `https://`). Credentials in
    /// the URL's user info are used when `credentials` is `None`.
    pub fn new(
        repo_url: &str,
        credentials: Option<Credentials>,
        options: &ChartClientOptions,
        cache: Arc<IndexCache>,
    ) -> Result<Self, ChartError> {
        let display = redact_url(repo_url.trim_end_matches('/'));
        let invalid = |reason: String| ChartError::InvalidUrl {
            url: display.clone(),
            reason,
        };
        let mut base = Url::parse(repo_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("expected an http:// or https:// URL".to_owned()));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL has no host".to_owned()));
        }
        let mut credentials = credentials;
        if !base.username().is_empty() || base.password().is_some() {
            if credentials.is_none() {
                credentials = Some(Credentials::basic(
                    percent_decode(base.username()),
                    percent_decode(base.password().unwrap_or_default()),
                ));
            }
            // Neither can fail for http(s) URLs with a host.
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        // A trailing slash so relative references resolve inside the repository.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_fragment(None);
        let client = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .danger_accept_invalid_certs(options.insecure_skip_tls_verify)
            .build()
            .map_err(|e| ChartError::Transient {
                repo: display.clone(),
                message: format!("cannot create the HTTP client: {e}"),
            })?;
        Ok(Self {
            base,
            display,
            credentials,
            client,
            cache,
            max_index_bytes: options.max_index_bytes,
            max_archive_bytes: options.max_archive_bytes,
        })
    }

    /// The repository URL, without user info or query.
    pub fn url(&self) -> &str {
        &self.display
    }

    /// Resolves `reference` (an archive URL from the index) against the repository URL as
    /// Helm does: absolute URLs are kept; relative ones are resolved against the
    /// repository URL with a trailing `/`, keeping the repository URL's query.
    pub fn resolve_url(&self, reference: &str) -> Result<Url, ChartError> {
        if let Ok(abs) = Url::parse(reference) {
            return Ok(abs);
        }
        let mut url = self
            .base
            .join(reference)
            .map_err(|e| ChartError::BadResponse {
                repo: self.display.clone(),
                message: format!("invalid chart URL {reference:?} in the index: {e}"),
            })?;
        url.set_query(self.base.query());
        Ok(url)
    }

    fn index_url(&self) -> Result<Url, ChartError> {
        self.resolve_url("index.yaml")
    }

    fn cache_key(&self, url: &Url) -> (String, String) {
        let user = self
            .credentials
            .as_ref()
            .map(|c| c.username.clone())
            .unwrap_or_default();
        (url.to_string(), user)
    }

    fn authorize(&self, req: reqwest::RequestBuilder, url: &Url) -> reqwest::RequestBuilder {
        match &self.credentials {
            // Like Helm (passCredentialsAll off): credentials only go to the repository's
            // own origin.
            Some(c) if same_origin(url, &self.base) => {
                req.basic_auth(&c.username, Some(c.password.expose()))
            }
            _ => req,
        }
    }

    /// Downloads (or revalidates) the index. With a cached copy the request carries
    /// `If-None-Match` / `If-Modified-Since`; a `304` reuses the parsed index.
    pub async fn fetch_index(&self) -> Result<IndexFetch, ChartError> {
        let url = self.index_url()?;
        let key = self.cache_key(&url);
        let mut req = self.authorize(self.client.get(url.clone()), &url);
        let validators = self.cache.validators(&key);
        if let Some((etag, last_modified)) = &validators {
            if let Some(e) = etag {
                req = req.header(IF_NONE_MATCH, e);
            }
            if let Some(lm) = last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = req.send().await.map_err(|e| self.transport(&e))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED
            && validators.is_some()
            && let Some(index) = self.cache.hit(&key)
        {
            tracing::debug!(repo = %self.display, "index.yaml not modified");
            return Ok(IndexFetch {
                index,
                not_modified: true,
            });
        }
        self.check_status(status, "index.yaml")?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let body = read_limited(resp, self.max_index_bytes, "index.yaml", &self.display).await?;
        let index = RepoIndex::parse(&body).map_err(|e| ChartError::BadResponse {
            repo: self.display.clone(),
            message: format!("invalid index.yaml: {e}"),
        })?;
        let index = Arc::new(index);
        tracing::debug!(repo = %self.display, bytes = body.len(), "index.yaml downloaded");
        self.cache.store(key, etag, last_modified, index.clone());
        Ok(IndexFetch {
            index,
            not_modified: false,
        })
    }

    /// The index (see [`fetch_index`](Self::fetch_index)).
    pub async fn index(&self) -> Result<Arc<RepoIndex>, ChartError> {
        Ok(self.fetch_index().await?.index)
    }

    /// The versions of chart `name`, best first (see [`RepoIndex::versions`]); empty when
    /// the repository has no such chart.
    pub async fn versions(&self, name: &str) -> Result<Vec<String>, ChartError> {
        Ok(self.index().await?.versions(name))
    }

    /// The archive of chart `name` at `version`: the entry whose version is exactly
    /// `version`, else the best entry of equal precedence (build metadata ignored).
    pub async fn resolve(&self, name: &str, version: &str) -> Result<ResolvedChart, ChartError> {
        let index = self.index().await?;
        self.resolve_in(&index, name, version)
    }

    /// Like [`resolve`](Self::resolve), with an index already fetched.
    pub fn resolve_in(
        &self,
        index: &RepoIndex,
        name: &str,
        version: &str,
    ) -> Result<ResolvedChart, ChartError> {
        let not_found = || ChartError::NotFound {
            repo: self.display.clone(),
            what: format!("chart {name:?} version {version:?}"),
        };
        let entries = index.chart(name).ok_or_else(|| ChartError::NotFound {
            repo: self.display.clone(),
            what: format!("chart {name:?}"),
        })?;
        let wanted = Version::parse_lenient(version).ok();
        let entry = entries
            .iter()
            .find(|e| e.version == version && !e.urls.is_empty())
            .or_else(|| {
                let wanted = wanted.as_ref()?;
                entries.iter().find(|e| {
                    !e.urls.is_empty()
                        && Version::parse_lenient(&e.version)
                            .is_ok_and(|v| v.cmp_precedence(wanted).is_eq())
                })
            })
            .ok_or_else(not_found)?;
        self.resolved(name, entry)
    }

    /// The resolved archive of an index entry of chart `name`.
    pub fn resolved(&self, name: &str, entry: &IndexEntry) -> Result<ResolvedChart, ChartError> {
        let first = entry.urls.first().ok_or_else(|| ChartError::BadResponse {
            repo: self.display.clone(),
            message: format!("chart {name:?} version {:?} has no URL", entry.version),
        })?;
        Ok(ResolvedChart {
            name: name.to_owned(),
            version: entry.version.clone(),
            url: self.resolve_url(first)?.to_string(),
            digest: entry.digest.clone(),
        })
    }

    /// Downloads a resolved archive, verifying the index's digest when it has one.
    pub async fn download(&self, chart: &ResolvedChart) -> Result<ChartArchive, ChartError> {
        let url = Url::parse(&chart.url).map_err(|e| ChartError::BadResponse {
            repo: self.display.clone(),
            message: format!("invalid chart URL {:?}: {e}", redact_url(&chart.url)),
        })?;
        let what = format!("chart {:?} version {:?}", chart.name, chart.version);
        let resp = self
            .authorize(self.client.get(url.clone()), &url)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        self.check_status(resp.status(), &what)?;
        let bytes = read_limited(resp, self.max_archive_bytes, &what, &self.display).await?;
        let digest = sha256_digest(&bytes);
        if let Some(expected) = &chart.digest {
            let expected_hex = expected.strip_prefix("sha256:").unwrap_or(expected);
            if !digest[7..].eq_ignore_ascii_case(expected_hex) {
                return Err(ChartError::DigestMismatch {
                    repo: self.display.clone(),
                    what,
                    expected: format!("sha256:{expected_hex}"),
                    actual: digest,
                });
            }
        }
        tracing::debug!(repo = %self.display, chart = %chart.name, version = %chart.version, bytes = bytes.len(), "chart downloaded");
        Ok(ChartArchive { bytes, digest })
    }

    fn check_status(&self, status: StatusCode, what: &str) -> Result<(), ChartError> {
        status_error(status, what, &self.display).map_or(Ok(()), Err)
    }

    fn transport(&self, e: &reqwest::Error) -> ChartError {
        transport_error(e, &self.display)
    }
}

fn status_error(status: StatusCode, what: &str, repo: &str) -> Option<ChartError> {
    if status.is_success() {
        return None;
    }
    let repo = repo.to_owned();
    Some(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ChartError::Unauthorized {
            repo,
            detail: format!("HTTP {} for {what}", status.as_u16()),
        },
        StatusCode::NOT_FOUND | StatusCode::GONE => ChartError::NotFound {
            repo,
            what: what.to_owned(),
        },
        s if s == StatusCode::TOO_MANY_REQUESTS
            || s == StatusCode::REQUEST_TIMEOUT
            || s.is_server_error() =>
        {
            ChartError::Transient {
                repo,
                message: format!("HTTP {} for {what}", s.as_u16()),
            }
        }
        s => ChartError::BadResponse {
            repo,
            message: format!("unexpected HTTP {} for {what}", s.as_u16()),
        },
    })
}

/// A transport error without the request URL (which the repository name already covers).
pub(crate) fn transport_error(e: &reqwest::Error, repo: &str) -> ChartError {
    let mut message = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    // reqwest's Display includes the URL; its sources (hyper, io, rustls) do not.
    let mut first = true;
    while let Some(s) = source {
        if first {
            message.push_str(if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            });
            first = false;
        } else {
            message.push_str(": ");
            message.push_str(&s.to_string());
        }
        source = s.source();
    }
    ChartError::Transient {
        repo: repo.to_owned(),
        message,
    }
}

async fn read_limited(
    mut resp: reqwest::Response,
    limit: u64,
    what: &str,
    repo: &str,
) -> Result<Vec<u8>, ChartError> {
    let too_large = || ChartError::BadResponse {
        repo: repo.to_owned(),
        message: format!("{what} is larger than the limit of {limit} bytes"),
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e, repo))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"
apiVersion: v1
entries:
  app:
  - version: 1.0.0
    urls: [app-1.0.0.tgz]
    digest: abc
  - version: 1.10.0
    urls: ["https://cdn.example/app-1.10.0.tgz"]
  - version: v1.2
    urls: [sub/app-1.2.tgz]
  - version: not-a-version
    urls: [x.tgz]
  - version: 2.0.0-rc.1
    urls: []
  - version: 1.0
    urls: [app-1.0.tgz]
  other: ~
generated: "2020-01-01T00:00:00Z"
"#;

    fn repo(url: &str) -> HttpChartRepository {
        HttpChartRepository::new(
            url,
            None,
            &ChartClientOptions::default(),
            Arc::new(IndexCache::default()),
        )
        .unwrap()
    }

    #[test]
    fn index_parsing_and_versions() {
        let idx = RepoIndex::parse(INDEX.as_bytes()).unwrap();
        let order: Vec<&str> = idx
            .chart("app")
            .unwrap()
            .iter()
            .map(|e| e.version.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "2.0.0-rc.1",
                "1.10.0",
                "v1.2",
                "1.0.0",
                "1.0",
                "not-a-version"
            ]
        );
        assert_eq!(
            idx.versions("app"),
            ["2.0.0-rc.1", "1.10.0", "v1.2", "1.0.0", "1.0"]
        );
        assert!(idx.versions("missing").is_empty());
        assert!(idx.versions("other").is_empty());
        let c = Constraint::parse(">=1.0.0").unwrap();
        assert_eq!(idx.find("app", &c).unwrap().version, "1.10.0");
        let c = Constraint::parse(">=2.0.0-0").unwrap();
        assert!(
            idx.find("app", &c).is_none(),
            "entries without URLs are skipped"
        );
        assert!(RepoIndex::parse(b"entries: [").is_err());
        assert_eq!(RepoIndex::parse(b"{}").unwrap(), RepoIndex::default());
    }

    #[test]
    fn resolution_of_urls_and_versions() {
        let r = repo("http://u:p%40ss@h.example:8080/charts?x=1");
        assert_eq!(r.url(), "http://h.example:8080/charts");
        let creds = r.credentials.as_ref().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.expose().as_str()),
            ("u", "p@ss")
        );
        let idx = RepoIndex::parse(INDEX.as_bytes()).unwrap();
        let c = r.resolve_in(&idx, "app", "1.0.0").unwrap();
        assert_eq!(c.url, "http://h.example:8080/charts/app-1.0.0.tgz?x=1");
        assert_eq!(c.digest.as_deref(), Some("abc"));
        assert_eq!(r.resolve_in(&idx, "app", "1.0").unwrap().version, "1.0");
        assert_eq!(
            r.resolve_in(&idx, "app", "1.2.0").unwrap().url,
            "http://h.example:8080/charts/sub/app-1.2.tgz?x=1"
        );
        assert_eq!(
            r.resolve_in(&idx, "app", "1.10.0").unwrap().url,
            "https://cdn.example/app-1.10.0.tgz"
        );
        let e = r.resolve_in(&idx, "app", "9.9.9").unwrap_err();
        assert_eq!(e.kind(), super::super::ChartErrorKind::NotFound);
        assert!(e.to_string().contains("\"9.9.9\""), "{e}");
        assert!(!e.to_string().contains("p%40ss"), "{e}");
        let e = r.resolve_in(&idx, "nope", "1.0.0").unwrap_err();
        assert!(e.to_string().contains("chart \"nope\" not found"), "{e}");
        assert!(
            HttpChartRepository::new(
                "oci://x/y",
                None,
                &ChartClientOptions::default(),
                Arc::default()
            )
            .is_err()
        );
        assert!(
            HttpChartRepository::new(
                "nonsense",
                None,
                &ChartClientOptions::default(),
                Arc::default()
            )
            .is_err()
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        use super::super::ChartErrorKind as K;
        let k = |s: u16| status_error(StatusCode::from_u16(s).unwrap(), "x", "r").map(|e| e.kind());
        assert_eq!(k(200), None);
        assert_eq!(k(401), Some(K::Unauthorized));
        assert_eq!(k(403), Some(K::Unauthorized));
        assert_eq!(k(404), Some(K::NotFound));
        assert_eq!(k(503), Some(K::Transient));
        assert_eq!(k(429), Some(K::Transient));
        assert_eq!(k(400), Some(K::BadResponse));
    }
}
