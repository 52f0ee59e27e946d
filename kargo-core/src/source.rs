//! Artifact sources: the typed [`Source`] trait behind a Warehouse subscription, its
//! object-safe twin [`DynSource`], and the [`SourceRegistry`].
//!
//! A source turns one subscription's configuration into a [`Discovery`]: the artifacts it
//! found, best first (element 0 is what new Freight gets). Implementations live in
//! `kargo-sources` (OCI images, Helm charts, git) and in embedders' code.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::freight::GenericArtifact;
use crate::secret::{CredentialProvider, NoCredentials};
use crate::step::decode_config;

/// One discovered image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredImage {
    /// The tag.
    pub tag: String,
    /// The manifest (or index) digest.
    pub digest: String,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Build time, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// One discovered git commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredCommit {
    /// The commit ID.
    pub id: String,
    /// The branch it was discovered on (empty for the default branch or tags).
    #[serde(default)]
    pub branch: String,
    /// The tag, for tag strategies.
    #[serde(default)]
    pub tag: String,
    /// The subject line (≤ 80 characters).
    #[serde(default)]
    pub subject: String,
    /// `Name <email>`.
    #[serde(default)]
    pub author: String,
    /// `Name <email>`.
    #[serde(default)]
    pub committer: String,
    /// The commit's (or annotated tag's) date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_date: Option<DateTime<Utc>>,
}

/// An artifact a discovery found and left out, with why: the Warehouse shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedArtifact {
    /// What was left out (e.g. `ghcr.io/acme/app:1.2.0@sha256:...`).
    pub reference: String,
    /// Why.
    pub reason: String,
}

/// What one subscription's discovery found, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Discovery {
    /// Image references of one repository.
    Images {
        /// The repository.
        repo_url: String,
        /// The platform constraint, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        /// References, best first.
        references: Vec<DiscoveredImage>,
        /// Images the source left out, with why (e.g. `verification.cosign`: no valid
        /// signature by the key); they never become Freight.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rejected: Vec<RejectedArtifact>,
    },
    /// Chart versions.
    Charts {
        /// The repository.
        repo_url: String,
        /// The chart name (empty for OCI).
        name: String,
        /// Versions, best first.
        versions: Vec<String>,
    },
    /// Git commits.
    Commits {
        /// The repository.
        repo_url: String,
        /// Commits, best first.
        commits: Vec<DiscoveredCommit>,
    },
    /// Artifacts of a generic subscription.
    Generic {
        /// Artifacts, best first.
        artifacts: Vec<GenericArtifact>,
    },
}

impl Discovery {
    /// Images of `repo_url` (no platform constraint), best first.
    pub fn images(repo_url: impl Into<String>, references: Vec<DiscoveredImage>) -> Self {
        Self::Images {
            repo_url: repo_url.into(),
            platform: None,
            references,
            rejected: Vec::new(),
        }
    }

    /// What the discovery left out, with why.
    pub fn rejected(&self) -> &[RejectedArtifact] {
        match self {
            Self::Images { rejected, .. } => rejected,
            _ => &[],
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Images { references, .. } => references.is_empty(),
            Self::Charts { versions, .. } => versions.is_empty(),
            Self::Commits { commits, .. } => commits.is_empty(),
            Self::Generic { artifacts } => artifacts.is_empty(),
        }
    }
}

/// What an event (a webhook) says changed, so a source may read only that: an
/// incremental refresh. Sources may ignore hints; one that uses them must still return a
/// complete, correct discovery for everything the event named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryHints {
    /// Tags (image tags, chart versions, git tags) the event named as new or moved.
    pub tags: std::collections::BTreeSet<String>,
}

/// What a source receives besides its configuration.
#[derive(Clone)]
pub struct DiscoveryContext {
    /// The project.
    pub project: String,
    /// The Warehouse.
    pub warehouse: String,
    /// The subscription's name, if it has one.
    pub subscription_name: Option<String>,
    /// The previous discovery of this subscription, for short-circuits.
    pub previous: Option<Discovery>,
    /// What the event that triggered this discovery says changed (incremental refresh).
    pub hints: Option<DiscoveryHints>,
    /// A view of the remote taken at or after this instant answers this discovery: a
    /// source may reuse what it read from the same remote since (one `ls-remote` for the
    /// many Warehouses of one repository refreshed in one pass). `None`: read it now.
    pub fresh_after: Option<std::time::Instant>,
    credentials: Arc<dyn CredentialProvider>,
    cancel: CancellationToken,
}

impl fmt::Debug for DiscoveryContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryContext")
            .field("project", &self.project)
            .field("warehouse", &self.warehouse)
            .field("subscription_name", &self.subscription_name)
            .finish_non_exhaustive()
    }
}

impl DiscoveryContext {
    /// A context with no credentials.
    pub fn new(project: impl Into<String>, warehouse: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            warehouse: warehouse.into(),
            subscription_name: None,
            previous: None,
            hints: None,
            fresh_after: None,
            credentials: Arc::new(NoCredentials),
            cancel: CancellationToken::new(),
        }
    }

    /// Sets the credential provider.
    pub fn with_credentials(mut self, credentials: Arc<dyn CredentialProvider>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets the hints of an incremental refresh.
    pub fn with_hints(mut self, hints: DiscoveryHints) -> Self {
        self.hints = Some(hints);
        self
    }

    /// Lets the source answer from what it read of a remote at or after `at`.
    pub fn with_fresh_after(mut self, at: std::time::Instant) -> Self {
        self.fresh_after = Some(at);
        self
    }

    /// Sets the cancellation token.
    pub fn with_cancellation(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The credential provider.
    pub fn credentials(&self) -> &dyn CredentialProvider {
        self.credentials.as_ref()
    }

    /// The cancellation token.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// The class of a [`SourceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// The repository or reference does not exist.
    NotFound,
    /// Credentials were missing or refused.
    Unauthorized,
    /// The registry asked us to slow down.
    RateLimited,
    /// A transient network or server error.
    Transient,
    /// The subscription's configuration is invalid.
    InvalidConfig,
    /// Anything else.
    Other,
}

/// An error from a source. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// The kind.
    pub kind: SourceErrorKind,
    /// What went wrong, with the repository it concerns.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SourceError {
    /// An error of `kind`.
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }
}

/// A typed artifact source for one subscription type.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// The subscription type key (`image`, `chart`, `git`, or a generic type).
    const KIND: &'static str;
    /// The subscription's configuration.
    type Config: DeserializeOwned + Send + Sync + 'static;

    /// Discovers artifacts.
    async fn discover(
        &self,
        ctx: &DiscoveryContext,
        config: &Self::Config,
    ) -> Result<Discovery, SourceError>;
}

/// The object-safe twin of [`Source`].
#[async_trait]
pub trait DynSource: Send + Sync {
    /// The subscription type key.
    fn kind(&self) -> &str;
    /// Deserialises `config` and discovers.
    async fn discover_json(
        &self,
        ctx: &DiscoveryContext,
        config: Json,
    ) -> Result<Discovery, SourceError>;
}

#[async_trait]
impl<S: Source> DynSource for S {
    fn kind(&self) -> &str {
        S::KIND
    }

    async fn discover_json(
        &self,
        ctx: &DiscoveryContext,
        config: Json,
    ) -> Result<Discovery, SourceError> {
        let cfg: S::Config = decode_config(config)
            .map_err(|e| SourceError::new(SourceErrorKind::InvalidConfig, e.to_string()))?;
        self.discover(ctx, &cfg).await
    }
}

/// Sources by subscription type. A plain value, like [`crate::step::StepRegistry`].
#[derive(Clone, Default, Debug)]
pub struct SourceRegistry {
    sources: crate::registry::Named<dyn DynSource>,
}

impl SourceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source; a second source of the same kind is refused.
    pub fn register<S: Source>(
        &mut self,
        source: S,
    ) -> Result<&mut Self, crate::step::DuplicateStep> {
        self.register_dyn(Arc::new(source))
    }

    /// Registers a source object.
    pub fn register_dyn(
        &mut self,
        source: Arc<dyn DynSource>,
    ) -> Result<&mut Self, crate::step::DuplicateStep> {
        self.sources.insert(source.kind().to_owned(), source)?;
        Ok(self)
    }

    /// The source for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn DynSource>> {
        self.sources.get(kind)
    }

    /// Registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.sources.names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[derive(serde::Deserialize)]
    struct FixedConfig {
        tags: Vec<String>,
    }

    #[async_trait]
    impl Source for Fixed {
        const KIND: &'static str = "fixed";
        type Config = FixedConfig;
        async fn discover(
            &self,
            _ctx: &DiscoveryContext,
            config: &FixedConfig,
        ) -> Result<Discovery, SourceError> {
            Ok(Discovery::Images {
                repo_url: "example/app".into(),
                platform: None,
                references: config
                    .tags
                    .iter()
                    .map(|t| DiscoveredImage {
                        tag: t.clone(),
                        digest: format!("sha256:{t}"),
                        annotations: BTreeMap::new(),
                        created_at: None,
                    })
                    .collect(),
                rejected: Vec::new(),
            })
        }
    }

    #[tokio::test]
    async fn dyn_source_decodes_config_and_rejects_unknown_fields() {
        let mut reg = SourceRegistry::new();
        reg.register(Fixed).unwrap();
        assert!(reg.register(Fixed).is_err());
        let src = reg.get("fixed").unwrap();
        let ctx = DiscoveryContext::new("p", "w");
        let d = src
            .discover_json(&ctx, serde_json::json!({"tags": ["1.0.0"]}))
            .await
            .unwrap();
        assert!(!d.is_empty());
        let e = src
            .discover_json(&ctx, serde_json::json!({"tags": [], "tgas": 1}))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
        assert!(e.message.contains("tgas"), "{}", e.message);
    }
}
