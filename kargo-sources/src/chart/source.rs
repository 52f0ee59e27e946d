//! [`ChartSource`]: the `chart` subscription source (reference §2.2) over the HTTP and OCI
//! repository clients of this module.

use std::sync::Arc;

use async_trait::async_trait;
use kargo_core::model::ChartSubscription;
use kargo_core::secret::CredentialKind;
use kargo_core::source::{Discovery, DiscoveryContext, Source, SourceError, SourceErrorKind};

use super::version::{Constraint, Version, select};
use super::{
    ChartClientOptions, ChartError, ChartErrorKind, HttpChartRepository, IndexCache,
    OciChartRepository, redact_url,
};

/// Discovers chart versions for `chart` subscriptions, as Kargo does:
///
/// - `http://` / `https://` repositories: `index.yaml` (revalidated with ETag /
///   Last-Modified through a shared [`IndexCache`], so an unchanged index costs one `304`),
///   the chart's versions parsed leniently; a chart missing from the index gives no
///   versions. `name` is required.
/// - `oci://registry/path/chart`: the repository's tags, `_` read as `+`, strict semantic
///   versions only; `name` must be empty.
///
/// Both keep the versions matching `semverConstraint`, sort them descending (ties by the
/// original string, descending) and keep `discoveryLimit`. Credentials are asked of the
/// context's provider as [`CredentialKind::Helm`] for the repository URL.
#[derive(Debug, Clone, Default)]
pub struct ChartSource {
    options: ChartClientOptions,
    cache: Arc<IndexCache>,
}

impl ChartSource {
    /// A source with default client options and its own index cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A source with `options` and a shared index `cache`.
    pub fn with_options(options: ChartClientOptions, cache: Arc<IndexCache>) -> Self {
        Self { options, cache }
    }

    /// The index cache (for its hit counters).
    pub fn cache(&self) -> &Arc<IndexCache> {
        &self.cache
    }
}

fn source_error(e: ChartError) -> SourceError {
    let kind = match e.kind() {
        ChartErrorKind::Invalid => SourceErrorKind::InvalidConfig,
        ChartErrorKind::Unauthorized => SourceErrorKind::Unauthorized,
        ChartErrorKind::NotFound => SourceErrorKind::NotFound,
        ChartErrorKind::BadResponse => SourceErrorKind::Other,
        ChartErrorKind::Transient => SourceErrorKind::Transient,
    };
    SourceError {
        kind,
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

fn invalid(message: String) -> SourceError {
    SourceError::new(SourceErrorKind::InvalidConfig, message)
}

#[async_trait]
impl Source for ChartSource {
    const KIND: &'static str = "chart";
    type Config = ChartSubscription;

    /// Discovers the versions; a cancelled context stops it at once, whatever the
    /// repository is doing (a server that accepts the connection and never answers, or
    /// trickles the index byte by byte, would otherwise hold it until the timeouts).
    async fn discover(
        &self,
        ctx: &DiscoveryContext,
        config: &ChartSubscription,
    ) -> Result<Discovery, SourceError> {
        let cancel = ctx.cancellation().clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let shown = redact_url(config.repo_url.trim());
                tracing::debug!(repo = %shown, "chart discovery cancelled");
                Err(SourceError::new(
                    SourceErrorKind::Other,
                    format!("discovery of chart {shown} was cancelled"),
                ))
            }
            r = self.run(ctx, config) => r,
        }
    }
}

impl ChartSource {
    async fn run(
        &self,
        ctx: &DiscoveryContext,
        config: &ChartSubscription,
    ) -> Result<Discovery, SourceError> {
        let url = config.repo_url.trim();
        let shown = redact_url(url);
        let constraint = if config.semver_constraint.trim().is_empty() {
            None
        } else {
            Some(
                Constraint::parse(&config.semver_constraint)
                    .map_err(|e| invalid(format!("chart {shown}: semverConstraint: {e}")))?,
            )
        };
        if !(1..=100).contains(&config.discovery_limit) {
            return Err(invalid(format!(
                "chart {shown}: discoveryLimit must be between 1 and 100, got {}",
                config.discovery_limit
            )));
        }
        let mut opts = self.options.clone();
        opts.insecure_skip_tls_verify |= config.insecure_skip_tls_verify;
        let credentials = ctx
            .credentials()
            .credentials(CredentialKind::Helm, url)
            .await
            .map_err(|e| {
                SourceError::new(
                    SourceErrorKind::Other,
                    format!("chart {shown}: credentials: {e}"),
                )
            })?;
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let versions: Vec<Version> = match scheme.as_deref() {
            Some("oci") => {
                if !config.name.is_empty() {
                    return Err(invalid(format!(
                        "chart {shown}: name must be empty for an oci:// repository (the \
                         URL names the chart), got {:?}",
                        config.name
                    )));
                }
                let repo =
                    OciChartRepository::new(url, credentials, &opts).map_err(source_error)?;
                repo.versions()
                    .await
                    .map_err(source_error)?
                    .iter()
                    .filter_map(|v| Version::parse_strict(v).ok())
                    .collect()
            }
            Some("http" | "https") => {
                if config.name.is_empty() {
                    return Err(invalid(format!(
                        "chart {shown}: name is required for an HTTP(S) repository"
                    )));
                }
                let repo = HttpChartRepository::new(url, credentials, &opts, self.cache.clone())
                    .map_err(source_error)?;
                repo.versions(&config.name)
                    .await
                    .map_err(source_error)?
                    .iter()
                    .filter_map(|v| Version::parse_lenient(v).ok())
                    .collect()
            }
            _ => {
                return Err(invalid(format!(
                    "chart {shown}: repoURL must start with http://, https:// or oci://"
                )));
            }
        };
        let versions = select(
            versions,
            constraint.as_ref(),
            config.discovery_limit as usize,
        );
        tracing::debug!(repo = %shown, chart = %config.name, found = versions.len(), "chart versions discovered");
        Ok(Discovery::Charts {
            repo_url: config.repo_url.clone(),
            name: config.name.clone(),
            versions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_core::source::DynSource;
    use serde_json::json;

    async fn err(config: serde_json::Value) -> SourceError {
        let ctx = DiscoveryContext::new("p", "w");
        match ChartSource::new().discover_json(&ctx, config).await {
            Err(e) => e,
            Ok(d) => panic!("expected an error, got {d:?}"),
        }
    }

    #[tokio::test]
    async fn bad_configurations_are_invalid_config() {
        let e = err(json!({"repoURL": "https://charts.example", "semverConstraint": ">>1"})).await;
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert!(e.message.contains("semverConstraint"), "{}", e.message);

        let e = err(json!({"repoURL": "https://charts.example"})).await;
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert!(e.message.contains("name is required"), "{}", e.message);

        let e = err(json!({"repoURL": "oci://reg.example/c", "name": "c"})).await;
        assert!(e.message.contains("name must be empty"), "{}", e.message);

        let e = err(json!({"repoURL": "ftp://u:secret@x/c", "name": "c"})).await;
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert!(!e.message.contains("secret"), "{}", e.message);

        let e = err(json!({"repoURL": "oci://reg.example/c", "discoveryLimit": 0})).await;
        assert!(e.message.contains("discoveryLimit"), "{}", e.message);
    }
}
