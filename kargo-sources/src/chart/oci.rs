//! Helm charts stored as OCI artifacts.

use std::collections::HashSet;

use kargo_core::secret::Credentials;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::version::{Version, sort_descending};
use super::{
    ChartArchive, ChartClientOptions, ChartError, is_loopback_host, redact_url, sha256_digest,
};

/// Media type of a Helm chart's content layer.
pub const HELM_CHART_CONTENT_MEDIA_TYPE: &str =
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// Media type of the chart layer of artifacts pushed by Helm before 3.8.
pub const HELM_LEGACY_CHART_CONTENT_MEDIA_TYPE: &str = "application/tar+gzip";

/// Media type of a Helm chart's config blob (the chart metadata as JSON).
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";

/// Tags asked for per page when listing, by default.
const TAG_PAGE_SIZE: usize = 1000;

/// Pages read at most when listing tags (a guard against registries that ignore `last`).
const MAX_TAG_PAGES: usize = 1000;

/// A chart in an OCI registry: `oci://registry[:port]/path/chart`.
///
/// ```no_run
/// # async fn demo() -> Result<(), kargo_sources::chart::ChartError> {
/// use kargo_sources::chart::{ChartClientOptions, OciChartRepository};
///
/// let repo = OciChartRepository::new("oci://127.0.0.1:5000/charts/app", None, &ChartClientOptions::default())?;
/// let versions = repo.versions().await?; // strict semver, best first
/// let archive = repo.pull(&versions[0]).await?;
/// # let _ = archive; Ok(()) }
/// ```
pub struct OciChartRepository {
    reference: Reference,
    display: String,
    client: Client,
    auth: RegistryAuth,
    max_archive_bytes: u64,
    page_size: usize,
}

impl std::fmt::Debug for OciChartRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciChartRepository")
            .field("url", &self.display)
            .field(
                "authenticated",
                &!matches!(self.auth, RegistryAuth::Anonymous),
            )
            .finish_non_exhaustive()
    }
}

impl OciChartRepository {
    /// A client for the chart at `repo_url` (`oci://registry/path/chart`, no tag).
    pub fn new(
        repo_url: &str,
        credentials: Option<Credentials>,
        options: &ChartClientOptions,
    ) -> Result<Self, ChartError> {
        let display = redact_url(repo_url.trim_end_matches('/'));
        let invalid = |reason: String| ChartError::InvalidUrl {
            url: display.clone(),
            reason,
        };
        let rest = strip_scheme(repo_url)
            .ok_or_else(|| invalid("expected an oci:// URL".to_owned()))?
            .trim_end_matches('/');
        if rest.contains('@') || rest.contains('?') {
            return Err(invalid(
                "user info, digests and queries are not supported in chart URLs".to_owned(),
            ));
        }
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected oci://registry/path/chart".to_owned()))?;
        if host.is_empty() || path.is_empty() {
            return Err(invalid("expected oci://registry/path/chart".to_owned()));
        }
        if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            return Err(invalid("the URL must not have a tag".to_owned()));
        }
        let parsed: Reference = rest
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(e.to_string()))?;
        let reference = Reference::with_tag(
            parsed.registry().to_owned(),
            parsed.repository().to_owned(),
            "latest".to_owned(),
        );
        let registry = reference.resolve_registry().to_owned();
        let plain = options.plain_http || is_loopback_host(&registry);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry.clone(), reference.registry().to_owned()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: options.insecure_skip_tls_verify,
            connect_timeout: Some(options.timeout),
            read_timeout: Some(options.timeout),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| ChartError::Transient {
            repo: display.clone(),
            message: format!("cannot create the registry client: {e}"),
        })?;
        let auth = match credentials {
            Some(c) if !c.username.is_empty() || !c.password.expose().is_empty() => {
                RegistryAuth::Basic(c.username.clone(), c.password.expose().clone())
            }
            _ => RegistryAuth::Anonymous,
        };
        Ok(Self {
            reference,
            display,
            client,
            auth,
            max_archive_bytes: options.max_archive_bytes,
            page_size: TAG_PAGE_SIZE,
        })
    }

    /// Sets how many tags are asked for per page when listing (default 1000, at least 1).
    pub fn with_tag_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The chart URL (`oci://registry/path/chart`).
    pub fn url(&self) -> &str {
        &self.display
    }

    /// The registry host (with port).
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The repository path inside the registry (`path/chart`).
    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    fn tagged(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.reference.registry().to_owned(),
            self.reference.repository().to_owned(),
            tag.to_owned(),
        )
    }

    /// Every tag of the repository, as the registry returns them, page by page (`n` and
    /// `last`; the `Link` header is not needed). Registries that ignore `n` and `last`
    /// (distribution 2.8 does) return everything at once; a page with no new tag ends the
    /// listing.
    pub async fn tags(&self) -> Result<Vec<String>, ChartError> {
        let mut all: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut last: Option<String> = None;
        for _ in 0..MAX_TAG_PAGES {
            let page = self
                .client
                .list_tags(
                    &self.reference,
                    &self.auth,
                    Some(self.page_size),
                    last.as_deref(),
                )
                .await
                .map_err(|e| self.error(e, "repository"))?;
            let count = page.tags.len();
            let mut new = 0;
            for t in page.tags {
                if seen.insert(t.clone()) {
                    all.push(t);
                    new += 1;
                }
            }
            if count < self.page_size || new == 0 {
                break;
            }
            last = all.last().cloned();
        }
        Ok(all)
    }

    /// Kargo's version list: the tags with `_` read as `+` that are strict semantic
    /// versions, descending (ties by string, descending).
    pub async fn versions(&self) -> Result<Vec<String>, ChartError> {
        let mut vs: Vec<Version> = self
            .tags()
            .await?
            .iter()
            .filter_map(|t| Version::parse_strict(&t.replace('_', "+")).ok())
            .collect();
        sort_descending(&mut vs);
        Ok(vs.into_iter().map(|v| v.original().to_owned()).collect())
    }

    /// The descriptor of the chart layer of `version` (`+` is written `_` in the tag).
    pub async fn chart_layer(&self, version: &str) -> Result<OciDescriptor, ChartError> {
        let what = format!("chart version {version:?}");
        if version.is_empty() {
            return Err(ChartError::Invalid {
                repo: self.display.clone(),
                message: "empty chart version".to_owned(),
            });
        }
        let reference = self.tagged(&version.replace('+', "_"));
        let (manifest, _digest) = self
            .client
            .pull_image_manifest(&reference, &self.auth)
            .await
            .map_err(|e| self.error(e, &what))?;
        manifest
            .layers
            .iter()
            .find(|l| l.media_type == HELM_CHART_CONTENT_MEDIA_TYPE)
            .or_else(|| {
                manifest
                    .layers
                    .iter()
                    .find(|l| l.media_type == HELM_LEGACY_CHART_CONTENT_MEDIA_TYPE)
            })
            .cloned()
            .ok_or_else(|| ChartError::BadResponse {
                repo: self.display.clone(),
                message: format!(
                    "{what} has no Helm chart layer ({HELM_CHART_CONTENT_MEDIA_TYPE})"
                ),
            })
    }

    /// Pulls the chart archive (the chart layer) of `version`, verifying its digest.
    pub async fn pull(&self, version: &str) -> Result<ChartArchive, ChartError> {
        let layer = self.chart_layer(version).await?;
        let what = format!("chart version {version:?}");
        if u64::try_from(layer.size).is_ok_and(|s| s > self.max_archive_bytes) {
            return Err(ChartError::BadResponse {
                repo: self.display.clone(),
                message: format!(
                    "{what} is larger than the limit of {} bytes",
                    self.max_archive_bytes
                ),
            });
        }
        let reference = self.tagged(&version.replace('+', "_"));
        let mut bytes: Vec<u8> = Vec::new();
        self.client
            .pull_blob(&reference, &layer, &mut bytes)
            .await
            .map_err(|e| self.error(e, &what))?;
        let digest = sha256_digest(&bytes);
        if layer.digest.starts_with("sha256:") && digest != layer.digest {
            return Err(ChartError::DigestMismatch {
                repo: self.display.clone(),
                what,
                expected: layer.digest.clone(),
                actual: digest,
            });
        }
        if bytes.len() as u64 > self.max_archive_bytes {
            return Err(ChartError::BadResponse {
                repo: self.display.clone(),
                message: format!(
                    "{what} is larger than the limit of {} bytes",
                    self.max_archive_bytes
                ),
            });
        }
        tracing::debug!(repo = %self.display, %version, bytes = bytes.len(), "chart pulled");
        Ok(ChartArchive { bytes, digest })
    }

    fn error(&self, e: OciDistributionError, what: &str) -> ChartError {
        oci_error(e, what, &self.display)
    }
}

fn strip_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    scheme.eq_ignore_ascii_case("oci").then_some(rest)
}

fn oci_error(e: OciDistributionError, what: &str, repo: &str) -> ChartError {
    let repo = repo.to_owned();
    let unauthorized = |detail: String| ChartError::Unauthorized {
        repo: repo.clone(),
        detail,
    };
    let not_found = || ChartError::NotFound {
        repo: repo.clone(),
        what: what.to_owned(),
    };
    match e {
        OciDistributionError::UnauthorizedError { .. } => unauthorized("HTTP 401".to_owned()),
        OciDistributionError::AuthenticationFailure(m) => unauthorized(m),
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let text: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(text.join("; "))
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::NameUnknown
                        | OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                not_found()
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                ChartError::Transient {
                    repo,
                    message: text.join("; "),
                }
            } else {
                ChartError::BadResponse {
                    repo,
                    message: text.join("; "),
                }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 | 403 => unauthorized(format!("HTTP {code}")),
            404 => not_found(),
            c if c == 429 || c >= 500 => ChartError::Transient {
                repo,
                message: format!("HTTP {c} for {what}: {}", truncate(&message)),
            },
            c => ChartError::BadResponse {
                repo,
                message: format!("HTTP {c} for {what}: {}", truncate(&message)),
            },
        },
        OciDistributionError::RequestError(r) => super::http::transport_error(&r, &repo),
        OciDistributionError::IoError(io) => ChartError::Transient {
            repo,
            message: io.to_string(),
        },
        OciDistributionError::DigestError(d) => ChartError::BadResponse {
            repo,
            message: format!("digest check failed for {what}: {d}"),
        },
        other => ChartError::BadResponse {
            repo,
            message: format!("{what}: {other}"),
        },
    }
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ChartClientOptions {
        ChartClientOptions::default()
    }

    #[test]
    fn urls() {
        let r = OciChartRepository::new("oci://127.0.0.1:5000/charts/app", None, &opts()).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "charts/app");
        assert_eq!(r.url(), "oci://127.0.0.1:5000/charts/app");
        let r = OciChartRepository::new("OCI://ghcr.io/org/app/", None, &opts()).unwrap();
        assert_eq!(r.repository(), "org/app");
        for bad in [
            "https://ghcr.io/org/app",
            "oci://ghcr.io",
            "oci:///app",
            "oci://ghcr.io/org/app:1.0.0",
            "oci://user:pw@ghcr.io/org/app",
            "oci://ghcr.io/org/app@sha256:abc",
        ] {
            let e = OciChartRepository::new(bad, None, &opts()).unwrap_err();
            assert!(!e.to_string().contains("pw"), "{e}");
            assert_eq!(e.kind(), super::super::ChartErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn error_mapping() {
        use super::super::ChartErrorKind as K;
        let e = oci_error(
            OciDistributionError::UnauthorizedError { url: "u".into() },
            "x",
            "r",
        );
        assert_eq!(e.kind(), K::Unauthorized);
        let env: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .unwrap();
        let e = oci_error(
            OciDistributionError::RegistryError {
                envelope: env,
                url: "u".into(),
            },
            "chart version \"9\"",
            "r",
        );
        assert_eq!(e.kind(), K::NotFound);
        assert_eq!(
            e.to_string(),
            "chart repository r: chart version \"9\" not found"
        );
        let e = oci_error(
            OciDistributionError::ServerError {
                code: 403,
                url: "u".into(),
                message: String::new(),
            },
            "x",
            "r",
        );
        assert_eq!(e.kind(), K::Unauthorized);
        let e = oci_error(
            OciDistributionError::ServerError {
                code: 502,
                url: "u".into(),
                message: String::new(),
            },
            "x",
            "r",
        );
        assert_eq!(e.kind(), K::Transient);
    }
}
