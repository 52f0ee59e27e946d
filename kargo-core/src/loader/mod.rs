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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer};

use crate::model::{
    API_VERSION, ClusterPromotionTask, Project, ProjectConfig, PromotionTask, PromotionTaskKind,
    Resource, ResourceKind, Stage, Warehouse,
};

/// Where a resource (or an error) is: file, document and, when known, line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// The file, as given (for [`ManifestSet::load_dir`]: the directory joined with the
    /// file's relative path).
    pub file: PathBuf,
    /// The 1-based index of the YAML document in the file (0: the file as a whole).
    pub document: usize,
    /// The 1-based line, absolute within the file.
    pub line: Option<usize>,
    /// The 1-based column.
    pub column: Option<usize>,
}

impl SourceLocation {
    fn file(file: &Path) -> Self {
        SourceLocation {
            file: file.to_path_buf(),
            document: 0,
            line: None,
            column: None,
        }
    }

    fn at(&self, pos: Option<(usize, usize)>) -> Self {
        SourceLocation {
            file: self.file.clone(),
            document: self.document,
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
        }
    }
}

impl fmt::Display for SourceLocation {
    /// `file:line:col (document N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.document > 0 {
            write!(f, " (document {})", self.document)?;
        }
        Ok(())
    }
}

/// One problem in a manifest set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// Where the problem is.
    pub location: SourceLocation,
    /// The resource, e.g. `Stage kargo-demo/dev`, when the document names one.
    pub resource: Option<String>,
    /// The field path, e.g. `spec.promotionTemplate.spec.steps[2].task.name` (empty when
    /// the problem is the document or file as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    /// `file:line:col: document N: Stage kargo-demo/dev: spec.x.y: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = &self.location;
        write!(f, "{}", loc.file.display())?;
        if let Some(line) = loc.line {
            write!(f, ":{line}")?;
            if let Some(col) = loc.column {
                write!(f, ":{col}")?;
            }
        }
        if loc.document > 0 {
            write!(f, ": document {}", loc.document)?;
        }
        if let Some(resource) = &self.resource {
            write!(f, ": {resource}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Every problem found while loading a manifest set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl ManifestErrors {
    /// The errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ManifestErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

impl<'a> IntoIterator for &'a ManifestErrors {
    type Item = &'a ManifestError;
    type IntoIter = std::slice::Iter<'a, ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

type Key = (ResourceKind, Option<String>, String);

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    resource: Resource,
    location: SourceLocation,
}

/// A validated set of Kargo resources, each with the place it was loaded from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestSet {
    entries: Vec<Entry>,
    index: HashMap<Key, usize>,
}

impl ManifestSet {
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

    /// Every ClusterPromotionTask, in load order.
    pub fn cluster_promotion_tasks(&self) -> impl Iterator<Item = &ClusterPromotionTask> {
        self.entries.iter().filter_map(|e| match &e.resource {
            Resource::ClusterPromotionTask(t) => Some(t),
            _ => None,
        })
    }

    /// Serialises every resource, in load order, as one multi-document YAML stream.
    pub fn to_yaml(&self) -> Result<String, yaml_serde::Error> {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str("---\n");
            out.push_str(&yaml_serde::to_string(&e.resource)?);
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

/// A document that declared a resource (even one that then failed to parse), so that
/// references to it are not reported as missing.
type Declared = HashSet<Key>;

#[derive(Clone)]
struct DocRef {
    file: usize,
    index: usize,
}

#[derive(Default)]
struct Builder {
    set: ManifestSet,
    /// Where each entry of `set` came from.
    docs: Vec<DocRef>,
    /// Texts by file index (`None` for the pseudo-file of directory errors).
    files: Vec<Option<(PathBuf, Arc<str>)>>,
    /// Errors by file index.
    errors: Vec<Vec<ManifestError>>,
    declared: Declared,
}

/// What a document's header says it is.
struct Header {
    kind: String,
    api_version: String,
    name: Option<String>,
    namespace: Option<String>,
}

impl Header {
    fn label(&self, kind: Option<ResourceKind>) -> String {
        let name = self.name.as_deref().unwrap_or("<unnamed>");
        match (kind.map(ResourceKind::is_namespaced), &self.namespace) {
            (Some(true), Some(ns)) => format!("{} {ns}/{name}", self.kind),
            _ => format!("{} {name}", self.kind),
        }
    }
}

fn resource_label(r: &Resource) -> String {
    match r.namespace() {
        Some(ns) => format!("{} {ns}/{}", r.kind(), r.name()),
        None => format!("{} {}", r.kind(), r.name()),
    }
}

fn header_of(value: &yaml_serde::Value) -> Header {
    let get = |v: &yaml_serde::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let meta = value.get("metadata");
    Header {
        kind: get(value, "kind").unwrap_or_default(),
        api_version: get(value, "apiVersion").unwrap_or_default(),
        name: meta.and_then(|m| get(m, "name")),
        namespace: meta.and_then(|m| get(m, "namespace")),
    }
}

fn value_type(value: &yaml_serde::Value) -> &'static str {
    match value {
        yaml_serde::Value::Null => "null",
        yaml_serde::Value::Bool(_) => "a boolean",
        yaml_serde::Value::Number(_) => "a number",
        yaml_serde::Value::String(_) => "a string",
        yaml_serde::Value::Sequence(_) => "a sequence",
        yaml_serde::Value::Mapping(_) => "a mapping",
        yaml_serde::Value::Tagged(_) => "a tagged value",
    }
}

fn position(err: &yaml_serde::Error) -> Option<(usize, usize)> {
    err.location().map(|l| (l.line(), l.column()))
}

/// The line and column of a reader error (invalid characters: `... at position <byte>`),
/// whose own mark is the start of the input.
fn reader_position(text: &str, err: &yaml_serde::Error) -> Option<(usize, usize)> {
    let msg = err.to_string();
    let (_, tail) = msg.rsplit_once(" at position ")?;
    let offset: usize = tail.trim().parse().ok()?;
    let before = text.as_bytes().get(..offset.min(text.len()))?;
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    Some((line, offset - line_start + 1))
}

/// The error's message without the position suffix and path prefix yaml_serde adds.
fn clean_message(err: &yaml_serde::Error, path: &str) -> String {
    let mut msg = err.to_string();
    if let Some(loc) = err.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = msg.strip_suffix(&suffix) {
            msg = stripped.to_owned();
        }
    }
    // yaml_serde prefixes the path of the node it was in, which is the path (or, for an
    // unknown field, the parent of the path) that the caller reports separately.
    if let Some((prefix, rest)) = msg.split_once(": ")
        && !prefix.is_empty()
        && path.starts_with(prefix)
    {
        msg = rest.to_owned();
    }
    msg
}

/// A typed parse failure: field path, message, position.
type TypedError = (String, String, Option<(usize, usize)>);

fn parse_typed<T: DeserializeOwned>(doc: yaml_serde::Deserializer<'_>) -> Result<T, TypedError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let message = clean_message(&inner, &path);
        (path, message, position(&inner))
    })
}

impl Builder {
    fn push_error(&mut self, file: usize, error: ManifestError) {
        if let Some(bucket) = self.errors.get_mut(file) {
            bucket.push(error);
        }
    }

    fn text(&self, file: usize) -> Option<&str> {
        self.files
            .get(file)
            .and_then(|f| f.as_ref())
            .map(|(_, t)| &**t)
    }

    fn locate_in(&self, doc: &DocRef, path: &str) -> Option<(usize, usize)> {
        self.text(doc.file)
            .and_then(|text| locate(text, doc.index, path))
    }

    fn add_file(&mut self, path: PathBuf, text: String) {
        let file = self.files.len();
        let text: Arc<str> = Arc::from(text);
        self.files.push(Some((path.clone(), Arc::clone(&text))));
        self.errors.push(Vec::new());
        let file_loc = SourceLocation::file(&path);

        // Limits first: the parser's time and memory grow with the size and flow depth.
        let limit = crate::limits::MAX_MANIFEST_FILE_BYTES;
        if u64::try_from(text.len()).unwrap_or(u64::MAX) > limit {
            self.push_error(
                file,
                ManifestError {
                    location: file_loc,
                    resource: None,
                    field: String::new(),
                    message: format!(
                        "file too large for a manifest file: the file has {} bytes; the limit \
                         is {limit} bytes",
                        text.len()
                    ),
                },
            );
            return;
        }
        if let Err(e) = crate::limits::check_yaml_flow_depth(&text, crate::limits::MAX_FLOW_DEPTH) {
            self.push_error(
                file,
                ManifestError {
                    location: file_loc.at(Some((e.line, e.column))),
                    resource: None,
                    field: String::new(),
                    message: format!("invalid YAML: {e}"),
                },
            );
            return;
        }

        // Pass 1: syntax. libyaml cannot resume after an error, so stop at the first one.
        let mut good = 0;
        for (i, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
            match IgnoredAny::deserialize(doc) {
                Ok(_) => good += 1,
                Err(e) => {
                    let loc = SourceLocation {
                        document: i + 1,
                        ..file_loc.at(reader_position(&text, &e).or_else(|| position(&e)))
                    };
                    self.push_error(
                        file,
                        ManifestError {
                            location: loc,
                            resource: None,
                            field: String::new(),
                            message: format!("invalid YAML: {}", clean_message(&e, "")),
                        },
                    );
                    break;
                }
            }
        }

        // Passes 2-4 in lockstep: untyped value (header), root position, typed resource.
        let values = yaml_serde::Deserializer::from_str(&text).take(good);
        let roots = yaml_serde::Deserializer::from_str(&text).take(good);
        let typed = yaml_serde::Deserializer::from_str(&text).take(good);
        for (index, ((value_doc, root_doc), typed_doc)) in values.zip(roots).zip(typed).enumerate()
        {
            let doc_loc = SourceLocation {
                document: index + 1,
                ..file_loc.clone()
            };
            let value = match parse_typed::<yaml_serde::Value>(value_doc) {
                Ok(v) => v,
                Err((field, message, pos)) => {
                    self.push_error(
                        file,
                        ManifestError {
                            location: doc_loc.at(pos),
                            resource: None,
                            field,
                            message,
                        },
                    );
                    continue;
                }
            };
            if value.is_null() {
                continue;
            }
            let root = Locate(&[])
                .deserialize(root_doc)
                .err()
                .and_then(|e| position(&e));
            let location = doc_loc.at(root);
            let docref = DocRef { file, index };
            if !value.is_mapping() {
                self.push_error(
                    file,
                    ManifestError {
                        location,
                        resource: None,
                        field: String::new(),
                        message: format!(
                            "a document must be a mapping (a Kubernetes resource), found {}",
                            value_type(&value)
                        ),
                    },
                );
                continue;
            }
            let header = header_of(&value);
            let Some(kind) = self.check_header(&header, &docref, &location) else {
                continue;
            };
            let label = header.label(Some(kind));
            if let Some(name) = &header.name {
                let ns = if kind.is_namespaced() {
                    header.namespace.clone()
                } else {
                    None
                };
                self.declared.insert((kind, ns, name.clone()));
            }
            let parsed = match kind {
                ResourceKind::Project => parse_typed(typed_doc).map(Resource::Project),
                ResourceKind::ProjectConfig => parse_typed(typed_doc).map(Resource::ProjectConfig),
                ResourceKind::Warehouse => parse_typed(typed_doc).map(Resource::Warehouse),
                ResourceKind::Stage => parse_typed(typed_doc).map(Resource::Stage),
                ResourceKind::PromotionTask => parse_typed(typed_doc).map(Resource::PromotionTask),
                ResourceKind::ClusterPromotionTask => {
                    parse_typed(typed_doc).map(Resource::ClusterPromotionTask)
                }
            };
            let resource = match parsed {
                Ok(r) => r,
                Err((field, message, pos)) => {
                    let pos = pos.or_else(|| self.locate_in(&docref, &field));
                    self.push_error(
                        file,
                        ManifestError {
                            location: location.at(pos.or(root)),
                            resource: Some(label),
                            field,
                            message,
                        },
                    );
                    continue;
                }
            };
            for fe in resource.validate() {
                let pos = self.locate_in(&docref, &fe.path).or(root);
                self.push_error(
                    file,
                    ManifestError {
                        location: location.at(pos),
                        resource: Some(label.clone()),
                        field: fe.path,
                        message: fe.message,
                    },
                );
            }
            if kind.is_namespaced() && resource.metadata().namespace.is_none() {
                let pos = self.locate_in(&docref, "metadata").or(root);
                self.push_error(
                    file,
                    ManifestError {
                        location: location.at(pos),
                        resource: Some(label.clone()),
                        field: "metadata.namespace".to_owned(),
                        message: format!(
                            "metadata.namespace is required: it names the Project this {kind} \
                             belongs to"
                        ),
                    },
                );
                continue;
            }
            self.insert(resource, location, docref);
        }
    }

    /// Resolves the kind, reporting unknown kinds and API versions.
    fn check_header(
        &mut self,
        header: &Header,
        doc: &DocRef,
        location: &SourceLocation,
    ) -> Option<ResourceKind> {
        let mut problem = None;
        let kind = header.kind.parse::<ResourceKind>().ok();
        if header.kind.is_empty() {
            problem = Some(("kind", "kind is required".to_owned()));
        } else if kind.is_none() {
            problem = Some((
                "kind",
                format!(
                    "unsupported kind {:?} (apiVersion {:?}): a manifest set may only hold \
                     Project, ProjectConfig, Warehouse, Stage, PromotionTask and \
                     ClusterPromotionTask resources of {API_VERSION}",
                    header.kind, header.api_version
                ),
            ));
        } else if header.api_version.is_empty() {
            problem = Some(("apiVersion", "apiVersion is required".to_owned()));
        } else if header.api_version != API_VERSION {
            problem = Some((
                "apiVersion",
                format!(
                    "unsupported apiVersion {:?} for kind {}: expected {API_VERSION}",
                    header.api_version, header.kind
                ),
            ));
        }
        match problem {
            None => kind,
            Some((field, message)) => {
                let pos = self.locate_in(doc, field);
                self.push_error(
                    doc.file,
                    ManifestError {
                        location: location.at(pos.or(location.line.zip(location.column))),
                        resource: header.name.as_ref().map(|_| header.label(kind)),
                        field: field.to_owned(),
                        message,
                    },
                );
                None
            }
        }
    }

    fn insert(&mut self, resource: Resource, location: SourceLocation, docref: DocRef) {
        let key: Key = (
            resource.kind(),
            resource.namespace().map(str::to_owned),
            resource.name().to_owned(),
        );
        if let Some(first) = self
            .set
            .index
            .get(&key)
            .and_then(|i| self.set.entries.get(*i))
        {
            let label = resource_label(&resource);
            let pos = self.locate_in(&docref, "metadata.name");
            let error = ManifestError {
                location: location.at(pos.or(location.line.zip(location.column))),
                resource: Some(label.clone()),
                field: "metadata.name".to_owned(),
                message: format!(
                    "duplicate {label}: first defined at {}, defined again at {}",
                    first.location, location
                ),
            };
            self.push_error(docref.file, error);
            return;
        }
        self.set.index.insert(key, self.set.entries.len());
        self.set.entries.push(Entry { resource, location });
        self.docs.push(docref);
    }

    fn entry_error(&mut self, entry: usize, field: String, message: String) {
        let (Some(e), Some(doc)) = (self.set.entries.get(entry), self.docs.get(entry)) else {
            return;
        };
        let pos = self
            .locate_in(doc, &field)
            .or(e.location.line.zip(e.location.column));
        let error = ManifestError {
            location: e.location.at(pos),
            resource: Some(resource_label(&e.resource)),
            field,
            message,
        };
        let file = doc.file;
        self.push_error(file, error);
    }

    fn known(&self, kind: ResourceKind, ns: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = self
            .declared
            .iter()
            .filter(|(k, n, _)| *k == kind && n.as_deref() == ns)
            .map(|(_, _, name)| name.clone())
            .collect();
        names.sort();
        names
    }

    fn is_declared(&self, kind: ResourceKind, ns: Option<&str>, name: &str) -> bool {
        self.declared
            .contains(&(kind, ns.map(str::to_owned), name.to_owned()))
    }

    fn check_references(&mut self) {
        let mut problems: Vec<(usize, String, String)> = Vec::new();
        let have_projects = self
            .declared
            .iter()
            .any(|(k, _, _)| *k == ResourceKind::Project);
        let projects = self.known(ResourceKind::Project, None);
        for (i, e) in self.set.entries.iter().enumerate() {
            let r = &e.resource;
            if let Some(ns) = r.namespace()
                && have_projects
                && !self.is_declared(ResourceKind::Project, None, ns)
            {
                problems.push((
                    i,
                    "metadata.namespace".to_owned(),
                    format!(
                        "Project {ns:?} is not defined in this manifest set (a set that defines \
                         Projects must define the Project of every resource; defined: {})",
                        projects.join(", ")
                    ),
                ));
            }
            let Resource::Stage(stage) = r else {
                continue;
            };
            let ns = stage.metadata.namespace.as_deref();
            for (j, req) in stage.spec.requested_freight.iter().enumerate() {
                let wh = &req.origin.name;
                if !wh.is_empty() && !self.is_declared(ResourceKind::Warehouse, ns, wh) {
                    problems.push((
                        i,
                        format!("spec.requestedFreight[{j}].origin.name"),
                        format!(
                            "Warehouse {wh:?} not found in Project {:?}{}",
                            ns.unwrap_or_default(),
                            known_list("Warehouses", &self.known(ResourceKind::Warehouse, ns))
                        ),
                    ));
                }
                for (k, up) in req.sources.stages.iter().enumerate() {
                    if up.is_empty()
                        || *up == stage.metadata.name
                        || self.is_declared(ResourceKind::Stage, ns, up)
                    {
                        continue;
                    }
                    problems.push((
                        i,
                        format!("spec.requestedFreight[{j}].sources.stages[{k}]"),
                        format!(
                            "upstream Stage {up:?} not found in Project {:?}{}",
                            ns.unwrap_or_default(),
                            known_list("Stages", &self.known(ResourceKind::Stage, ns))
                        ),
                    ));
                }
            }
            if let Some(template) = &stage.spec.promotion_template {
                for (j, step) in template.spec.steps.iter().enumerate() {
                    let Some(task) = &step.task else { continue };
                    if task.name.is_empty() {
                        continue;
                    }
                    let (kind, task_ns, scope) = match task.kind {
                        PromotionTaskKind::PromotionTask => (
                            ResourceKind::PromotionTask,
                            ns,
                            format!(" in Project {:?}", ns.unwrap_or_default()),
                        ),
                        PromotionTaskKind::ClusterPromotionTask => {
                            (ResourceKind::ClusterPromotionTask, None, String::new())
                        }
                    };
                    if !self.is_declared(kind, task_ns, &task.name) {
                        problems.push((
                            i,
                            format!("spec.promotionTemplate.spec.steps[{j}].task.name"),
                            format!(
                                "{kind} {:?} not found{scope}{}",
                                task.name,
                                known_list(&format!("{kind}s"), &self.known(kind, task_ns))
                            ),
                        ));
                    }
                }
            }
        }
        for (entry, field, message) in problems {
            self.entry_error(entry, field, message);
        }
    }

    /// Finds cycles between Stages of a Project through `sources.stages`.
    fn check_cycles(&mut self) {
        // Per project: stage name -> (entry index, edges (upstream, request idx, stage idx)).
        type Edges<'a> = Vec<(&'a str, usize, usize)>;
        let mut graphs: BTreeMap<&str, BTreeMap<&str, (usize, Edges<'_>)>> = BTreeMap::new();
        for (i, e) in self.set.entries.iter().enumerate() {
            let Resource::Stage(stage) = &e.resource else {
                continue;
            };
            let Some(ns) = stage.metadata.namespace.as_deref() else {
                continue;
            };
            let mut edges = Vec::new();
            for (j, req) in stage.spec.requested_freight.iter().enumerate() {
                for (k, up) in req.sources.stages.iter().enumerate() {
                    // Self-references are reported by Stage validation.
                    if *up != stage.metadata.name {
                        edges.push((up.as_str(), j, k));
                    }
                }
            }
            graphs
                .entry(ns)
                .or_default()
                .insert(stage.metadata.name.as_str(), (i, edges));
        }
        let mut problems = Vec::new();
        for graph in graphs.values() {
            for cycle in find_cycles(graph) {
                let (Some(first), Some(second)) = (cycle.first(), cycle.get(1)) else {
                    continue;
                };
                let Some((entry, edges)) = graph.get(first) else {
                    continue;
                };
                let field = edges
                    .iter()
                    .find(|(up, _, _)| up == second)
                    .map(|(_, j, k)| format!("spec.requestedFreight[{j}].sources.stages[{k}]"))
                    .unwrap_or_default();
                let mut path: Vec<&str> = cycle.clone();
                path.push(first);
                problems.push((
                    *entry,
                    field,
                    format!(
                        "Stages form a cycle through sources.stages: {}",
                        path.join(" -> ")
                    ),
                ));
            }
        }
        for (entry, field, message) in problems {
            self.entry_error(entry, field, message);
        }
    }

    fn finish(mut self) -> Result<ManifestSet, ManifestErrors> {
        self.check_references();
        self.check_cycles();
        let mut all = Vec::new();
        for mut bucket in std::mem::take(&mut self.errors) {
            bucket.sort_by_key(|e| (e.location.document, e.location.line, e.location.column));
            all.extend(bucket);
        }
        if all.is_empty() {
            Ok(self.set)
        } else {
            Err(ManifestErrors(all))
        }
    }
}

fn known_list(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!(" (the Project has no {what})")
    } else {
        format!(" (known {what}: {})", names.join(", "))
    }
}

/// An edge to an upstream Stage: (name, request index, index in `sources.stages`).
type Edge<'a> = (&'a str, usize, usize);
/// Stage name -> (payload, edges).
type Graph<'a, T> = BTreeMap<&'a str, (T, Vec<Edge<'a>>)>;

/// Cycles in a graph of `node -> (entry, [(successor, ..)])`, each reported once, rotated so
/// that it starts at its smallest node. Iterative, so deep graphs cannot overflow the stack.
fn find_cycles<'a, T>(graph: &Graph<'a, T>) -> Vec<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Gray,
        Black,
    }
    let mut color: HashMap<&str, Color> = graph.keys().map(|k| (*k, Color::White)).collect();
    let mut seen: HashSet<Vec<&str>> = HashSet::new();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        if color.get(start) != Some(&Color::White) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        color.insert(start, Color::Gray);
        while let Some((node, next)) = stack.last().copied() {
            let succ = graph
                .get(node)
                .and_then(|(_, edges)| edges.get(next))
                .map(|e| e.0);
            let Some(succ) = succ else {
                color.insert(node, Color::Black);
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match color.get(succ) {
                Some(Color::White) => {
                    color.insert(succ, Color::Gray);
                    stack.push((succ, 0));
                }
                Some(Color::Gray) => {
                    if let Some(pos) = stack.iter().position(|(n, _)| *n == succ) {
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        if let Some(min) = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map(|(i, _)| i)
                        {
                            cycle.rotate_left(min);
                        }
                        if seen.insert(cycle.clone()) {
                            cycles.push(cycle);
                        }
                    }
                }
                // Black: fully explored; None: unknown Stage (reported as a reference error).
                _ => {}
            }
        }
    }
    cycles
}

// ----------------------------------------------------------------------------------------
// Locating a field path in a document.
//
// yaml_serde has no span API, but an error raised by a visitor gets the position of the
// node being visited. `Locate` walks a document along a path and raises an error at the
// target (at the key, for a mapping entry); the error's location is the answer.

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_owned()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(n) = inner[..end].parse() {
                segs.push(Seg::Index(n));
            }
            rest = &inner[end + 1..];
        }
    }
    segs
}

/// The 1-based line and column of `path` in document `index` of `text`, or of its longest
/// existing prefix (the document root for an empty path).
fn locate(text: &str, index: usize, path: &str) -> Option<(usize, usize)> {
    let segs = parse_path(path);
    for depth in (0..=segs.len()).rev() {
        let doc = yaml_serde::Deserializer::from_str(text).nth(index)?;
        if let Err(e) = Locate(&segs[..depth]).deserialize(doc) {
            return position(&e);
        }
    }
    None
}

struct Locate<'a>(&'a [Seg]);

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.split_first() {
            None => d.deserialize_any(Here),
            Some((seg, rest)) => d.deserialize_any(Walk { seg, rest }),
        }
    }
}

/// Fails on whatever node it visits (every default `visit_*` is an error).
struct Here;

impl Visitor<'_> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (locating a field)")
    }
}

struct Walk<'a> {
    seg: &'a Seg,
    rest: &'a [Seg],
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let target = match self.seg {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        };
        let last = self.rest.is_empty();
        while let Some(hit) = map.next_key_seed(KeyMatch { target, last })? {
            if hit {
                map.next_value_seed(Locate(self.rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Seg::Index(n) = self.seg {
            for _ in 0..*n {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
            }
            if seq.next_element_seed(Locate(self.rest))?.is_none() {
                return Ok(());
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Deserialises a mapping key: `Ok(true)` when it is the target, an error at the key when
/// it is the final target.
struct KeyMatch<'a> {
    target: Option<&'a str>,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match self.target {
            Some(t) if t == v && self.last => Err(E::custom("found")),
            Some(t) => Ok(t == v),
            None => Ok(false),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = "a: 1\n---\n# comment\nkind: x\nspec:\n  list:\n  - name: p\n  - name: q\n    deep: {k: v}\n";

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("spec.steps[2].task.name"),
            vec![
                Seg::Key("spec".into()),
                Seg::Key("steps".into()),
                Seg::Index(2),
                Seg::Key("task".into()),
                Seg::Key("name".into())
            ]
        );
        assert_eq!(parse_path(""), vec![]);
    }

    #[test]
    fn locates_fields_with_absolute_lines() {
        assert_eq!(locate(DOCS, 0, ""), Some((1, 1)));
        assert_eq!(locate(DOCS, 1, ""), Some((4, 1)));
        assert_eq!(locate(DOCS, 1, "spec"), Some((5, 1)));
        assert_eq!(locate(DOCS, 1, "spec.list[1]"), Some((8, 5)));
        assert_eq!(locate(DOCS, 1, "spec.list[1].name"), Some((8, 5)));
        assert_eq!(locate(DOCS, 1, "spec.list[1].deep.k"), Some((9, 12)));
        // Missing tail: the longest existing prefix.
        assert_eq!(locate(DOCS, 1, "spec.list[1].nope.x"), Some((8, 5)));
        assert_eq!(locate(DOCS, 1, "spec.list[7]"), Some((6, 3)));
        assert_eq!(locate(DOCS, 5, "spec"), None);
    }

    #[test]
    fn cycles_are_found_once() {
        let mut g: Graph<'_, ()> = BTreeMap::new();
        g.insert("a", ((), vec![("b", 0, 0)]));
        g.insert("b", ((), vec![("c", 0, 0)]));
        g.insert("c", ((), vec![("a", 0, 0), ("d", 0, 1)]));
        g.insert("d", ((), vec![]));
        assert_eq!(find_cycles(&g), vec![vec!["a", "b", "c"]]);
    }
}
