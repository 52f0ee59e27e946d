//! The ClusterConfig kind: Kargo's cluster-wide settings (one, named `cluster`).

use serde::{Deserialize, Serialize};

use super::project::{SharedConfig, validate_shared_config};
use super::{
    DeepLink, FieldError, FieldErrors, LocalObjectReference, ObjectMeta, PromotionWindow,
    ResourceKind, WebhookReceiverConfig, validate_type_meta,
};

/// The one name a ClusterConfig may have.
pub const CLUSTER_CONFIG_NAME: &str = "cluster";

/// Cluster-wide settings (`kind: ClusterConfig`, cluster-scoped, named `cluster`): webhook
/// receivers that refresh matching Warehouses of every Project, the git committer
/// identity, deep links shown for every Project, promotion windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `ClusterConfig`.
    pub kind: String,
    /// Its name: always `cluster`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The settings.
    #[serde(default)]
    pub spec: ClusterConfigSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The content of a ClusterConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfigSpec {
    /// Cluster-wide webhook receivers: a request refreshes the matching Warehouses of every
    /// Project. Their Secrets live in the system-resources namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_receivers: Vec<WebhookReceiverConfig>,
    /// The identity (and signing key) of commits made by the git steps, unless a
    /// `git-clone` step sets its own `author`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_client: Option<GitClientConfig>,
    /// Deep links for Freight, shown for every Project besides its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freight_links: Vec<DeepLink>,
    /// Deep links for Stages, shown for every Project besides its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_links: Vec<DeepLink>,
    /// Promotion windows for every Project (may narrow with `projectSelector`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotion_windows: Vec<PromotionWindow>,
}

/// The committer identity of the git steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitClientConfig {
    /// The name on commits.
    #[serde(default)]
    pub name: String,
    /// The email on commits.
    #[serde(default)]
    pub email: String,
    /// A Secret (system-resources namespace) whose `signingKey` is a GPG private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret: Option<LocalObjectReference>,
}

impl ClusterConfig {
    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::ClusterConfig,
        );
        self.metadata.validate(&mut errs, true);
        if !self.metadata.name.is_empty() && self.metadata.name != CLUSTER_CONFIG_NAME {
            errs.push(
                "metadata.name",
                format!(
                    "a ClusterConfig must be named {CLUSTER_CONFIG_NAME:?}, found {:?}",
                    self.metadata.name
                ),
            );
        }
        let spec = &self.spec;
        if let Some(git) = &spec.git_client {
            if git.name.trim().is_empty() {
                errs.push("spec.gitClient.name", "name is required");
            }
            let email = git.email.trim();
            if email.is_empty() {
                errs.push("spec.gitClient.email", "email is required");
            } else if !looks_like_email(email) {
                errs.push(
                    "spec.gitClient.email",
                    format!("{email:?} is not an email address"),
                );
            }
            if git.signing_key_secret.is_some() {
                errs.push(
                    "spec.gitClient.signingKeySecret",
                    "commit signing is not supported yet: remove signingKeySecret",
                );
            }
        }
        validate_shared_config(
            &mut errs,
            SharedConfig {
                webhook_receivers: &spec.webhook_receivers,
                freight_links: &spec.freight_links,
                stage_links: &spec.stage_links,
                promotion_windows: &spec.promotion_windows,
            },
            true,
        );
        errs.0
    }
}

/// `local@domain` with a dot in the domain, no spaces.
fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(looks_like_email("kargo@example.com"));
        assert!(!looks_like_email("kargo"));
        assert!(!looks_like_email("kargo@localhost"));
        assert!(!looks_like_email("a b@example.com"));
    }
}
