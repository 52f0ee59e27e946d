//! Documents of other APIs in a manifest directory (Secrets, Argo CD Applications,
//! Namespaces, ConfigMaps...): what `kubectl apply -f dir` and Argo CD take beside Kargo's
//! resources. The loader skips them, and says so, one notice each.

use std::fmt;

use super::SourceLocation;

/// The API group every Kargo resource's `apiVersion` starts with; a document of that
/// group with an unknown kind is an error (a typo), not another API's resource.
pub(crate) const API_GROUP_PREFIX: &str = "kargo.akuity.io/";

/// A document the loader skipped because it is not a Kargo resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedDocument {
    /// Its `kind`.
    pub kind: String,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `metadata.name`, if it has one.
    pub name: Option<String>,
    /// Where it is.
    pub location: SourceLocation,
}

impl fmt::Display for SkippedDocument {
    /// `skipped ConfigMap settings (v1) at dir/a.yaml:1 (document 2): not a Kargo resource`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipped {} {} ({}) at {}: not a Kargo resource",
            self.kind,
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.api_version,
            self.location
        )
    }
}
