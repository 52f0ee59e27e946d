//! Helm chart repositories: classic HTTP(S) repositories (`index.yaml` plus archives) and
//! OCI registries, with Kargo's version semantics.
//!
//! - [`HttpChartRepository`]: `GET <repoURL>/index.yaml` with basic auth when credentials
//!   are given, conditional requests (ETag / Last-Modified) against an [`IndexCache`] so an
//!   unchanged index is neither downloaded nor parsed again; versions of a chart (lenient
//!   semver, descending); resolution of a version to its archive URL; downloads verified
//!   against the index's `digest`.
//! - [`OciChartRepository`]: `oci://registry/path/chart`; tags listed page by page, `_` read
//!   as `+`, strict semver; pulls the chart layer
//!   (`application/vnd.cncf.helm.chart.content.v1.tar+gzip`) of a version. Plain HTTP is
//!   used only for loopback registries or when [`ChartClientOptions::plain_http`] is set.
//! - [`ChartSource`]: the `chart` subscription source (discovery for Warehouses).
//! - [`version`]: Masterminds-compatible versions and constraints.
//! - [`archive`]: reading the `Chart.yaml` of an archive and packaging a chart directory.
//!
//! Errors ([`ChartError`]) name the repository with any user info and query string of its
//! URL removed, so credentials never reach a message; HTTP 401 and 403 are
//! [`ChartErrorKind::Unauthorized`], 404 is [`ChartErrorKind::NotFound`].
//!
//! **Feature `chart`** (default): everything above. Without it only [`version`] (used by
//! every source's version selection) and [`redact_url`] are here; the `image` feature also
//! keeps [`sha256_digest`].

#[cfg(feature = "chart")]
pub mod archive;
#[cfg(feature = "chart")]
mod http;
#[cfg(feature = "chart")]
mod oci;
#[cfg(feature = "chart")]
mod source;
pub mod version;

#[cfg(feature = "chart")]
pub use http::{HttpChartRepository, IndexEntry, IndexFetch, RepoIndex, ResolvedChart};
#[cfg(feature = "chart")]
pub use oci::{
    HELM_CHART_CONTENT_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE, HELM_LEGACY_CHART_CONTENT_MEDIA_TYPE,
    OciChartRepository,
};
#[cfg(feature = "chart")]
pub use source::ChartSource;

#[cfg(feature = "chart")]
use std::collections::HashMap;
#[cfg(feature = "chart")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "chart")]
use std::sync::{Arc, Mutex};
#[cfg(feature = "chart")]
use std::time::Duration;

/// A downloaded chart archive (a gzipped tar).
#[cfg(feature = "chart")]
#[derive(Clone, PartialEq, Eq)]
pub struct ChartArchive {
    /// The archive's bytes.
    pub bytes: Vec<u8>,
    /// Its SHA-256 digest, `sha256:<hex>`.
    pub digest: String,
}

#[cfg(feature = "chart")]
impl std::fmt::Debug for ChartArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartArchive")
            .field("len", &self.bytes.len())
            .field("digest", &self.digest)
            .finish()
    }
}

/// Settings shared by the chart repository clients.
#[cfg(feature = "chart")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChartClientOptions {
    /// Accept invalid TLS certificates (Kargo's `insecureSkipTLSVerify`).
    pub insecure_skip_tls_verify: bool,
    /// OCI only: talk plain HTTP to the registry even when it is not on a loopback
    /// address (loopback registries always get plain HTTP).
    pub plain_http: bool,
    /// Connect timeout, and the longest wait for any response data (Kargo: 30 s).
    pub timeout: Duration,
    /// The largest `index.yaml` accepted, in bytes.
    pub max_index_bytes: u64,
    /// The largest chart archive accepted, in bytes.
    pub max_archive_bytes: u64,
}

#[cfg(feature = "chart")]
impl Default for ChartClientOptions {
    /// Certificates verified, HTTPS except for loopback registries, 30 s timeouts, 100 MiB
    /// limits.
    fn default() -> Self {
        Self {
            insecure_skip_tls_verify: false,
            plain_http: false,
            timeout: Duration::from_secs(30),
            max_index_bytes: 100 << 20,
            max_archive_bytes: 100 << 20,
        }
    }
}

/// The class of a [`ChartError`].
#[cfg(feature = "chart")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartErrorKind {
    /// The caller's input is invalid (a URL, a version); retrying cannot help.
    Invalid,
    /// The repository refused the credentials (HTTP 401 or 403).
    Unauthorized,
    /// The repository, chart, version or archive does not exist (HTTP 404).
    NotFound,
    /// The repository answered with something unusable (bad YAML, wrong digest).
    BadResponse,
    /// A network error, a timeout, HTTP 429 or 5xx: retrying may help.
    Transient,
}

/// An error talking to a chart repository. `repo` is the repository URL without user info
/// or query.
#[cfg(feature = "chart")]
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The repository URL is not usable.
    #[error("invalid chart repository URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (redacted).
        url: String,
        /// Why.
        reason: String,
    },
    /// The repository refused the request.
    #[error("chart repository {repo}: unauthorized ({detail}); check the credentials for it")]
    Unauthorized {
        /// The repository.
        repo: String,
        /// E.g. `HTTP 401`.
        detail: String,
    },
    /// Something does not exist.
    #[error("chart repository {repo}: {what} not found")]
    NotFound {
        /// The repository.
        repo: String,
        /// What was missing (`index.yaml`, `chart "x" version "1.2.3"`, ...).
        what: String,
    },
    /// The repository answered with something unusable.
    #[error("chart repository {repo}: {message}")]
    BadResponse {
        /// The repository.
        repo: String,
        /// What was wrong.
        message: String,
    },
    /// A downloaded archive does not match its expected digest.
    #[error(
        "chart repository {repo}: digest mismatch for {what}: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// The repository.
        repo: String,
        /// The archive.
        what: String,
        /// The expected digest.
        expected: String,
        /// The digest of what was received.
        actual: String,
    },
    /// A network failure, a timeout or a server error.
    #[error("chart repository {repo}: {message}")]
    Transient {
        /// The repository.
        repo: String,
        /// What happened.
        message: String,
    },
    /// Bad input that is not a URL (e.g. an invalid version).
    #[error("chart repository {repo}: {message}")]
    Invalid {
        /// The repository.
        repo: String,
        /// What is wrong.
        message: String,
    },
}

#[cfg(feature = "chart")]
impl ChartError {
    /// The class of the error.
    pub fn kind(&self) -> ChartErrorKind {
        match self {
            Self::InvalidUrl { .. } | Self::Invalid { .. } => ChartErrorKind::Invalid,
            Self::Unauthorized { .. } => ChartErrorKind::Unauthorized,
            Self::NotFound { .. } => ChartErrorKind::NotFound,
            Self::BadResponse { .. } | Self::DigestMismatch { .. } => ChartErrorKind::BadResponse,
            Self::Transient { .. } => ChartErrorKind::Transient,
        }
    }
}

/// Removes the user info and the query string of a URL, for messages and logs.
///
/// ```
/// use kargo_sources::chart::redact_url;
/// assert_eq!(redact_url("https://u:p@h.example/charts?token=x"), "https://h.example/charts");
/// assert_eq!(redact_url("oci://u:p@reg.example/c"), "oci://reg.example/c");
/// ```
pub fn redact_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let Some((scheme, rest)) = no_query.split_once("://") else {
        return no_query.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// Whether `host` (`name`, `name:port`, `[v6]:port`) is a loopback host.
#[cfg(any(feature = "chart", feature = "image"))]
pub(crate) fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `sha256:<hex>` of `bytes`.
#[cfg(any(feature = "chart", feature = "image"))]
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(any(feature = "chart", feature = "image"))]
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A parsed index kept with the validators of the response it came from.
#[cfg(feature = "chart")]
#[derive(Debug)]
struct CachedIndex {
    etag: Option<String>,
    last_modified: Option<String>,
    index: Arc<RepoIndex>,
    last_used: u64,
}

/// Parsed `index.yaml` files by URL (and user), kept with their ETag / Last-Modified so the
/// next fetch is a conditional request; a `304 Not Modified` reuses the parsed index. The
/// cache holds at most `capacity` indexes and drops the least recently used one first.
/// Share one (in an `Arc`) between the repositories that should use it.
#[cfg(feature = "chart")]
#[derive(Debug)]
pub struct IndexCache {
    capacity: usize,
    entries: Mutex<HashMap<(String, String), CachedIndex>>,
    clock: AtomicU64,
    not_modified: AtomicU64,
    downloaded: AtomicU64,
}

#[cfg(feature = "chart")]
impl Default for IndexCache {
    /// A cache of 32 indexes.
    fn default() -> Self {
        Self::new(32)
    }
}

#[cfg(feature = "chart")]
impl IndexCache {
    /// A cache holding at most `capacity` indexes (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
        }
    }

    /// How many fetches were answered `304 Not Modified` (the cached index was reused).
    pub fn not_modified_count(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }

    /// How many fetches downloaded and parsed an index.
    pub fn downloaded_count(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Forgets every index.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CachedIndex>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The validators and index cached for `key`.
    fn validators(&self, key: &(String, String)) -> Option<(Option<String>, Option<String>)> {
        let now = self.tick();
        let mut map = self.lock();
        let e = map.get_mut(key)?;
        e.last_used = now;
        Some((e.etag.clone(), e.last_modified.clone()))
    }

    fn hit(&self, key: &(String, String)) -> Option<Arc<RepoIndex>> {
        let now = self.tick();
        let mut map = self.lock();
        let e = map.get_mut(key)?;
        e.last_used = now;
        self.not_modified.fetch_add(1, Ordering::Relaxed);
        Some(e.index.clone())
    }

    fn store(
        &self,
        key: (String, String),
        etag: Option<String>,
        last_modified: Option<String>,
        index: Arc<RepoIndex>,
    ) {
        self.downloaded.fetch_add(1, Ordering::Relaxed);
        let now = self.tick();
        let mut map = self.lock();
        if etag.is_none() && last_modified.is_none() {
            map.remove(&key);
            return;
        }
        if !map.contains_key(&key)
            && map.len() >= self.capacity
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            key,
            CachedIndex {
                etag,
                last_modified,
                index,
                last_used: now,
            },
        );
    }
}

#[cfg(all(test, feature = "chart"))]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "::1",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "registry.example",
            "ghcr.io",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("http://h/x"), "http://h/x");
        assert_eq!(redact_url("https://user@h:8443"), "https://h:8443");
        assert_eq!(redact_url("https://h/x#frag"), "https://h/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn digest_format() {
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let c = IndexCache::new(2);
        let idx = Arc::new(RepoIndex::default());
        let k = |s: &str| (s.to_owned(), String::new());
        c.store(k("a"), Some("1".into()), None, idx.clone());
        c.store(k("b"), Some("1".into()), None, idx.clone());
        assert!(c.hit(&k("a")).is_some());
        c.store(k("c"), Some("1".into()), None, idx.clone());
        assert!(c.hit(&k("b")).is_none());
        assert!(c.hit(&k("a")).is_some());
        assert!(c.hit(&k("c")).is_some());
        c.store(k("d"), None, None, idx);
        assert!(
            c.hit(&k("d")).is_none(),
            "responses without validators are not cached"
        );
    }
}
