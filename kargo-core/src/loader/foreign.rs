//! Documents of other APIs that a Kargo project uses, kept beside its resources: Secrets
//! and ConfigMaps (credentials, `secret()`, `configMap()`) and Argo Rollouts
//! `AnalysisTemplate` / `ClusterAnalysisTemplate` (Stage verification). The loader keeps
//! them as untyped JSON with their place; the parts of the library that use them read the
//! fields they need and report problems with that place.

use std::fmt;

use serde_json::Value;

use super::SourceLocation;

/// A document of another API the loader kept because a Kargo project uses its kind. Its
/// `Debug` form leaves out a Secret's content and the file's text.
#[derive(Clone, PartialEq)]
pub struct ForeignDocument {
    /// Its `kind` (`Secret`, `ConfigMap`, `AnalysisTemplate`, `ClusterAnalysisTemplate`).
    pub kind: String,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `metadata.name`.
    pub name: String,
    /// Its `metadata.namespace` (the Project), if it has one.
    pub namespace: Option<String>,
    /// Where it is.
    pub location: SourceLocation,
    /// The whole document.
    pub value: Value,
    /// The text of its file, to find the line of any of its fields.
    pub(super) text: Option<super::SourceText>,
}

impl fmt::Debug for ForeignDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ForeignDocument");
        d.field("kind", &self.kind)
            .field("api_version", &self.api_version)
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("location", &self.location);
        if self.kind == "Secret" {
            d.field("value", &"***");
        } else {
            d.field("value", &self.value);
        }
        d.finish_non_exhaustive()
    }
}

impl ForeignDocument {
    /// A label for messages: `Secret demo/git-creds`.
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// Where the field at `path` (`spec.metrics[0].provider`, `stringData.password`) is:
    /// its line and column, or those of its longest existing prefix.
    pub fn field_location(&self, path: &str) -> SourceLocation {
        super::field_location(&self.location, self.text.as_ref().map(|t| &*t.0), path)
    }

    /// The value of `metadata.labels[key]`, if it is a string.
    pub fn label_value(&self, key: &str) -> Option<&str> {
        self.value
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    }

    /// The value of `metadata.annotations[key]`, if it is a string.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    }
}

/// Whether a document of `kind` in `api_version` is one the loader keeps.
pub(super) fn is_kept(kind: &str, api_version: &str) -> bool {
    match kind {
        "Secret" | "ConfigMap" => api_version == "v1",
        "AnalysisTemplate" | "ClusterAnalysisTemplate" => api_version.starts_with("argoproj.io/"),
        _ => false,
    }
}
