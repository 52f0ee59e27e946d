//! Kubernetes metadata and selector types shared by every Kargo resource.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{FieldErrors, is_dns1123_label, is_dns1123_subdomain};

/// Standard Kubernetes object metadata.
///
/// `name`, `namespace`, `labels` and `annotations` are what Kargo manifests use. The
/// read-only fields that `kubectl get -o yaml` adds (`uid`, `resourceVersion`, ...) are
/// accepted and kept as opaque JSON so that exported manifests load and round-trip.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The resource's name, unique per kind within its namespace (or cluster).
    #[serde(default)]
    pub name: String,
    /// The namespace, which for Kargo is the Project. Absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
    /// Prefix for server-generated names (opaque; not used by kargo-rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Server-assigned UID (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<serde_json::Value>,
    /// Server-assigned resource version (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<serde_json::Value>,
    /// Server-assigned generation (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<serde_json::Value>,
    /// Server-assigned creation time (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<serde_json::Value>,
    /// Deletion time, set while the object is being deleted (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<serde_json::Value>,
    /// Deletion grace period (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<serde_json::Value>,
    /// Legacy self link (read-only, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<serde_json::Value>,
    /// Finalizers (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<serde_json::Value>,
    /// Owner references (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<serde_json::Value>,
    /// Server-side-apply field ownership (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<serde_json::Value>,
}

impl ObjectMeta {
    /// Metadata with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        }
    }

    /// Metadata with a name and a namespace (Project).
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        }
    }

    /// Checks the name (and namespace, when present) against Kubernetes naming rules.
    /// `label_name` requires the stricter DNS-1123 label form (Projects become namespaces).
    pub(crate) fn validate(&self, errs: &mut FieldErrors, label_name: bool) {
        if self.name.is_empty() {
            errs.push("metadata.name", "name is required");
        } else if label_name && !is_dns1123_label(&self.name) {
            errs.push(
                "metadata.name",
                format!(
                    "invalid name {:?}: must be a lowercase RFC 1123 label (at most 63 of \
                     a-z, 0-9 and '-', starting and ending alphanumeric)",
                    self.name
                ),
            );
        } else if !label_name && !is_dns1123_subdomain(&self.name) {
            errs.push(
                "metadata.name",
                format!(
                    "invalid name {:?}: must be a lowercase RFC 1123 subdomain (at most 253 \
                     of a-z, 0-9, '-' and '.', starting and ending alphanumeric)",
                    self.name
                ),
            );
        }
        if let Some(ns) = &self.namespace
            && !is_dns1123_label(ns)
        {
            errs.push(
                "metadata.namespace",
                format!("invalid namespace {ns:?}: must be a lowercase RFC 1123 label"),
            );
        }
    }
}

/// A Kubernetes label selector (`matchLabels` AND `matchExpressions`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must all be present with exactly these values.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub match_labels: IndexMap<String, String>,
    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// Whether the selector has no requirements (and so selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every `matchLabels` entry and every requirement.
    pub fn matches(&self, labels: &IndexMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    LabelSelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    LabelSelectorOperator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                    LabelSelectorOperator::Exists => value.is_some(),
                    LabelSelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    pub(crate) fn validate(&self, errs: &mut FieldErrors, path: &str) {
        for (i, req) in self.match_expressions.iter().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            if req.key.is_empty() {
                errs.push(format!("{p}.key"), "key is required");
            }
            match req.operator {
                LabelSelectorOperator::In | LabelSelectorOperator::NotIn => {
                    if req.values.is_empty() {
                        errs.push(
                            format!("{p}.values"),
                            format!("values must be non-empty for operator {:?}", req.operator),
                        );
                    }
                }
                LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist => {
                    if !req.values.is_empty() {
                        errs.push(
                            format!("{p}.values"),
                            format!("values must be empty for operator {:?}", req.operator),
                        );
                    }
                }
            }
        }
    }
}

/// One set-based label requirement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the key relates to the values.
    pub operator: LabelSelectorOperator,
    /// Values for `In` / `NotIn`; empty for `Exists` / `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a [`LabelSelectorRequirement`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    /// The label's value is one of `values`.
    #[default]
    In,
    /// The label is absent or its value is not one of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A reference to an object (usually a Secret) in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectReference {
    /// The referenced object's name.
    #[serde(default)]
    pub name: String,
}
