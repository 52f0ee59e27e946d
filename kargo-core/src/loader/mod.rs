//! Loading sets of Kargo manifests from multi-document YAML, with every error at once.
//!
//! A [`ManifestSet`] is built from a directory ([`ManifestSet::load_dir`]: every `*.yaml` /
//! `*.yml` file below it, recursively, in sorted path order, skipping hidden directories
//! such as `.git`), from `(path, text)` pairs ([`ManifestSet::from_files`]) or from one
//! string ([`ManifestSet::from_yaml_str`]). Each file may hold several `---`-separated
//! documents; documents that are empty or only comments are skipped.
//!
//! Loading never stops at the first problem. It reports, as one [`ManifestErrors`]:
//!
//! - YAML syntax errors (the rest of that file is skipped: the parser cannot resume);
//! - documents that are not Kargo resources (unknown `apiVersion` / `kind`, e.g. a stray
//!   `ConfigMap`);
//! - unknown fields and wrong types, with the field path and line/column;
//! - semantic errors found by each resource's `validate()`;
//! - namespaced kinds without `metadata.namespace` (the namespace names the Project;
//!   `Project` and `ClusterPromotionTask` are cluster-scoped);
//! - duplicate resources (same kind, namespace and name), naming both locations;
//! - Stages naming a Warehouse, an upstream Stage, or a (Cluster)PromotionTask that the set
//!   does not contain, and cycles between Stages through `sources.stages`;
//! - the notification kinds of Kargo's commercial edition (`ee.kargo.akuity.io/v1alpha1`:
//!   `MessageChannel`, `ClusterMessageChannel`, `EventRouter`) are read typed, with the
//!   same checks, and routers naming channels the set does not contain are errors (see
//!   [`ManifestSet::event_routers`]);
//! - resources of a Project the set does not define, **when the set defines any Project**.
//!   A set without Projects is taken to be a slice of existing Projects and is not checked;
//!   a set with Projects must be complete, so a `ProjectConfig` (or any other namespaced
//!   resource) whose Project is missing is an error.
//!
//! Errors found after parsing carry the line of the offending field when it exists in the
//! document, else the document's first line.
//!
//! ```
//! use kargo_core::loader::ManifestSet;
//!
//! let set = ManifestSet::from_yaml_str("demo.yaml", r#"
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Warehouse
//! metadata: {name: app, namespace: demo}
//! spec:
//!   subscriptions:
//!   - image: {repoURL: ghcr.io/example/app}
//! ---
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Stage
//! metadata: {name: dev, namespace: demo}
//! spec:
//!   requestedFreight:
//!   - origin: {kind: Warehouse, name: app}
//!     sources: {direct: true}
//! "#).unwrap();
//! assert_eq!(set.warehouse("demo", "app").unwrap().spec.interval.to_string(), "5m0s");
//! assert_eq!(set.location(kargo_core::model::ResourceKind::Stage, Some("demo"), "dev")
//!     .unwrap().document, 2);
//! ```

mod build;
mod duplicates;
mod error;
mod foreign;
mod notifications;
mod positions;
mod references;
mod skipped;

pub use error::{ManifestError, ManifestErrors, ManifestWarning, SourceLocation};
pub use foreign::ForeignDocument;
pub use notifications::NotificationResource;
pub use skipped::SkippedDocument;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{
    ClusterConfig, ClusterPromotionTask, Project, ProjectConfig, PromotionTask, Resource,
    ResourceKind, Stage, Warehouse,
};
use build::{Builder, resource_label};

type Key = (ResourceKind, Option<String>, String);

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    resource: Resource,
    location: SourceLocation,
    /// The text of its file, to find the line of any of its fields later.
    text: Option<SourceText>,
}

/// A manifest file's text, kept to locate fields; its `Debug` form is only its size (the
/// file may hold a Secret).
#[derive(Clone, PartialEq)]
pub(crate) struct SourceText(Arc<str>);

impl std::fmt::Debug for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// A validated set of Kargo resources, each with the place it was loaded from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestSet {
    entries: Vec<Entry>,
    index: HashMap<Key, usize>,
    skipped: Vec<SkippedDocument>,
    foreign: Vec<ForeignDocument>,
    notifications: Vec<notifications::NotificationEntry>,
    warnings: Vec<ManifestWarning>,
}

impl ManifestSet {
    /// The documents of other APIs that were skipped (Secrets, Applications, ...), in the
    /// order they were read.
    pub fn skipped(&self) -> &[SkippedDocument] {
        &self.skipped
    }

    /// What loaded but deserves a look, in the order found: repeated mapping keys (the
    /// last value wins, as with `kubectl apply`), deprecated fields.
    pub fn warnings(&self) -> &[ManifestWarning] {
        &self.warnings
    }

    /// The documents of other APIs a project uses, in the order they were read: Secrets
    /// and ConfigMaps (`v1`), Argo Rollouts `AnalysisTemplate`s and
    /// `ClusterAnalysisTemplate`s (`argoproj.io/`). They are not in [`skipped`](Self::skipped).
    pub fn foreign_documents(&self) -> &[ForeignDocument] {
        &self.foreign
    }

    /// The kept document of `kind` called `name` in `namespace` (`None` for cluster-scoped
    /// kinds such as `ClusterAnalysisTemplate`).
    pub fn foreign(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&ForeignDocument> {
        self.foreign
            .iter()
            .find(|d| d.kind == kind && d.namespace.as_deref() == namespace && d.name == name)
    }

    /// Loads every `*.yaml` / `*.yml` file below `dir` (recursively, sorted by path, hidden
    /// directories skipped). A directory without such files is an error.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<ManifestSet, ManifestErrors> {
        let dir = dir.as_ref();
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        collect_yaml_files(dir, true, &mut paths, &mut errors);
        if errors.is_empty() && paths.is_empty() {
            errors.push(ManifestError {
                location: SourceLocation::file(dir),
                resource: None,
                field: String::new(),
                message: "no *.yaml or *.yml files found".to_owned(),
            });
        }
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            match crate::limits::read_limited(&path, crate::limits::MAX_MANIFEST_FILE_BYTES) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => files.push((path, text)),
                    Err(e) => errors.push(ManifestError {
                        location: SourceLocation::file(&path),
                        resource: None,
                        field: String::new(),
                        message: format!("file is not valid UTF-8: {e}"),
                    }),
                },
                Err(crate::limits::ReadLimitError::Io(e)) => errors.push(ManifestError {
                    location: SourceLocation::file(&path),
                    resource: None,
                    field: String::new(),
                    message: format!("cannot read file: {e}"),
                }),
                Err(e @ crate::limits::ReadLimitError::TooLarge { .. }) => {
                    errors.push(ManifestError {
                        location: SourceLocation::file(&path),
                        resource: None,
                        field: String::new(),
                        message: format!("file too large for a manifest file: {e}"),
                    })
                }
            }
        }
        let mut builder = Builder::default();
        builder.errors.push(errors);
        builder.files.push(None);
        for (path, text) in files {
            builder.add_file(path, text);
        }
        builder.finish()
    }

    /// Loads `(path, text)` pairs, in the order given. The paths are only used in
    /// locations and messages.
    pub fn from_files(
        files: impl IntoIterator<Item = (PathBuf, String)>,
    ) -> Result<ManifestSet, ManifestErrors> {
        let mut builder = Builder::default();
        for (path, text) in files {
            builder.add_file(path, text);
        }
        builder.finish()
    }

    /// Loads one multi-document YAML string; `name` stands for its file name.
    pub fn from_yaml_str(name: &str, text: &str) -> Result<ManifestSet, ManifestErrors> {
        Self::from_files([(PathBuf::from(name), text.to_owned())])
    }

    /// Builds a set from resources made in code, by serialising them to YAML (one
    /// document each, in the pseudo-file `name`) and loading that, so the same checks apply.
    pub fn from_resources(
        name: &str,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Result<ManifestSet, ManifestErrors> {
        let mut text = String::new();
        for (i, resource) in resources.into_iter().enumerate() {
            match yaml_serde::to_string(&resource) {
                Ok(doc) => {
                    text.push_str("---\n");
                    text.push_str(&doc);
                }
                Err(e) => {
                    return Err(ManifestErrors(vec![ManifestError {
                        location: SourceLocation {
                            document: i + 1,
                            ..SourceLocation::file(Path::new(name))
                        },
                        resource: Some(resource_label(&resource)),
                        field: String::new(),
                        message: format!("cannot serialise resource: {e}"),
                    }]));
                }
            }
        }
        Self::from_yaml_str(name, &text)
    }

    /// How many resources the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every resource with its location, in load order.
    pub fn resources(&self) -> impl Iterator<Item = (&Resource, &SourceLocation)> {
        self.entries.iter().map(|e| (&e.resource, &e.location))
    }

    fn get(&self, kind: ResourceKind, namespace: Option<&str>, name: &str) -> Option<&Entry> {
        let key = (kind, namespace.map(str::to_owned), name.to_owned());
        self.index.get(&key).and_then(|i| self.entries.get(*i))
    }

    /// Where a resource was loaded from. `namespace` is `None` for cluster-scoped kinds.
    pub fn location(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&SourceLocation> {
        let namespace = if kind.is_namespaced() {
            namespace
        } else {
            None
        };
        self.get(kind, namespace, name).map(|e| &e.location)
    }

    /// Where the field at `path` (`spec.promotionTemplate.spec.steps[2].uses`) of a
    /// resource is: its line and column, or those of its longest existing prefix, or the
    /// resource's first line.
    pub fn field_location(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
        path: &str,
    ) -> Option<SourceLocation> {
        let namespace = if kind.is_namespaced() {
            namespace
        } else {
            None
        };
        let entry = self.get(kind, namespace, name)?;
        Some(field_location(
            &entry.location,
            entry.text.as_ref().map(|t| &*t.0),
            path,
        ))
    }

    /// The Project named `name`.
    pub fn project(&self, name: &str) -> Option<&Project> {
        match self.get(ResourceKind::Project, None, name) {
            Some(Entry {
                resource: Resource::Project(p),
                ..
            }) => Some(p),
            _ => None,
        }
    }

    /// Every Project, in load order.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.entries.iter().filter_map(|e| match &e.resource {
            Resource::Project(p) => Some(p),
            _ => None,
        })
    }

    /// The names of all Projects the set mentions (defined Projects and the namespaces of
    /// namespaced resources), sorted.
    pub fn project_names(&self) -> Vec<&str> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for e in &self.entries {
            match &e.resource {
                Resource::Project(p) => {
                    names.insert(&p.metadata.name);
                }
                r => {
                    if let Some(ns) = r.namespace() {
                        names.insert(ns);
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    /// The ProjectConfig of `project`.
    pub fn project_config(&self, project: &str) -> Option<&ProjectConfig> {
        self.entries.iter().find_map(|e| match &e.resource {
            Resource::ProjectConfig(c) if c.metadata.namespace.as_deref() == Some(project) => {
                Some(c)
            }
            _ => None,
        })
    }

    /// The Warehouse `name` of `project`.
    pub fn warehouse(&self, project: &str, name: &str) -> Option<&Warehouse> {
        match self.get(ResourceKind::Warehouse, Some(project), name) {
            Some(Entry {
                resource: Resource::Warehouse(w),
                ..
            }) => Some(w),
            _ => None,
        }
    }

    /// The Warehouses of `project`, in load order.
    pub fn warehouses<'a>(&'a self, project: &'a str) -> impl Iterator<Item = &'a Warehouse> {
        self.entries.iter().filter_map(move |e| match &e.resource {
            Resource::Warehouse(w) if w.metadata.namespace.as_deref() == Some(project) => Some(w),
            _ => None,
        })
    }

    /// The Stage `name` of `project`.
    pub fn stage(&self, project: &str, name: &str) -> Option<&Stage> {
        match self.get(ResourceKind::Stage, Some(project), name) {
            Some(Entry {
                resource: Resource::Stage(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }

    /// The Stages of `project`, in load order.
    pub fn stages<'a>(&'a self, project: &'a str) -> impl Iterator<Item = &'a Stage> {
        self.entries.iter().filter_map(move |e| match &e.resource {
            Resource::Stage(s) if s.metadata.namespace.as_deref() == Some(project) => Some(s),
            _ => None,
        })
    }

    /// The PromotionTask `name` of `project`.
    pub fn promotion_task(&self, project: &str, name: &str) -> Option<&PromotionTask> {
        match self.get(ResourceKind::PromotionTask, Some(project), name) {
            Some(Entry {
                resource: Resource::PromotionTask(t),
                ..
            }) => Some(t),
            _ => None,
        }
    }

    /// The PromotionTasks of `project`, in load order.
    pub fn promotion_tasks<'a>(
        &'a self,
        project: &'a str,
    ) -> impl Iterator<Item = &'a PromotionTask> {
        self.entries.iter().filter_map(move |e| match &e.resource {
            Resource::PromotionTask(t) if t.metadata.namespace.as_deref() == Some(project) => {
                Some(t)
            }
            _ => None,
        })
    }

    /// The ClusterPromotionTask `name`.
    pub fn cluster_promotion_task(&self, name: &str) -> Option<&ClusterPromotionTask> {
        match self.get(ResourceKind::ClusterPromotionTask, None, name) {
            Some(Entry {
                resource: Resource::ClusterPromotionTask(t),
                ..
            }) => Some(t),
            _ => None,
        }
    }

    /// The ClusterConfig (there is at most one: it must be named `cluster`).
    pub fn cluster_config(&self) -> Option<&ClusterConfig> {
        self.entries.iter().find_map(|e| match &e.resource {
            Resource::ClusterConfig(c) => Some(c),
            _ => None,
        })
    }

    /// Every ClusterPromotionTask, in load order.
    pub fn cluster_promotion_tasks(&self) -> impl Iterator<Item = &ClusterPromotionTask> {
        self.entries.iter().filter_map(|e| match &e.resource {
            Resource::ClusterPromotionTask(t) => Some(t),
            _ => None,
        })
    }

    /// Serialises every resource, in load order (the notification kinds last), as one
    /// multi-document YAML stream.
    pub fn to_yaml(&self) -> Result<String, yaml_serde::Error> {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str("---\n");
            out.push_str(&yaml_serde::to_string(&e.resource)?);
        }
        for e in &self.notifications {
            out.push_str("---\n");
            out.push_str(&match &e.resource {
                NotificationResource::MessageChannel(r) => yaml_serde::to_string(r)?,
                NotificationResource::ClusterMessageChannel(r) => yaml_serde::to_string(r)?,
                NotificationResource::EventRouter(r) => yaml_serde::to_string(r)?,
            });
        }
        Ok(out)
    }
}

fn collect_yaml_files(
    dir: &Path,
    root: bool,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<ManifestError>,
) {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => {
            errors.push(ManifestError {
                location: SourceLocation::file(dir),
                resource: None,
                field: String::new(),
                message: if root {
                    format!("cannot read manifest directory: {e}")
                } else {
                    format!("cannot read directory: {e}")
                },
            });
            return;
        }
    };
    for entry in read {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(ManifestError {
                    location: SourceLocation::file(dir),
                    resource: None,
                    field: String::new(),
                    message: format!("cannot list directory: {e}"),
                });
                continue;
            }
        };
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if file_type.is_dir() {
            // Symlinked directories are not followed (no loops); hidden ones are skipped.
            if !hidden {
                collect_yaml_files(&path, false, out, errors);
            }
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
            && (file_type.is_file() || path.is_file())
        {
            out.push(path);
        }
    }
}

/// The place of `path` in the document at `location` of `text`.
pub(crate) fn field_location(
    location: &SourceLocation,
    text: Option<&str>,
    path: &str,
) -> SourceLocation {
    let pos = text
        .zip(location.document.checked_sub(1))
        .and_then(|(text, index)| positions::locate(text, index, path));
    location.at(pos.or(location.line.zip(location.column)))
}
