//! The set builder: parses every document of every file into a typed resource, with the
//! location of each problem, and collects the resources and the errors.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::duplicates::{RepeatedKey, parse_last_wins};
use super::foreign::{self, ForeignDocument};
use super::positions::{locate, locate_key, position, reader_position, root_position};
use super::skipped::API_GROUP_PREFIX;
use super::{
    Entry, Key, ManifestError, ManifestErrors, ManifestSet, ManifestWarning, SkippedDocument,
    SourceLocation, SourceText,
};
use crate::model::{API_VERSION, EE_API_GROUP_PREFIX, Resource, ResourceKind};

/// A document that declared a resource (even one that then failed to parse), so that
/// references to it are not reported as missing.
type Declared = HashSet<Key>;

#[derive(Clone)]
pub(super) struct DocRef {
    pub(super) file: usize,
    pub(super) index: usize,
}

/// Builds a manifest set file by file, keeping every error with the file it belongs to.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) set: ManifestSet,
    /// Where each entry of `set` came from.
    docs: Vec<DocRef>,
    /// Texts by file index (`None` for the pseudo-file of directory errors).
    pub(super) files: Vec<Option<(PathBuf, Arc<str>)>>,
    /// Errors by file index.
    pub(super) errors: Vec<Vec<ManifestError>>,
    pub(super) declared: Declared,
}

/// What a document's header says it is.
pub(super) struct Header {
    pub(super) kind: String,
    pub(super) api_version: String,
    pub(super) name: Option<String>,
    pub(super) namespace: Option<String>,
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

pub(super) fn resource_label(r: &Resource) -> String {
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

/// Reads a document of `kind` into its typed resource.
fn parse_resource<'de, D>(kind: ResourceKind, doc: D) -> Result<Resource, TypedError>
where
    D: serde::Deserializer<'de, Error = yaml_serde::Error>,
{
    match kind {
        ResourceKind::Project => parse_typed(doc).map(Resource::Project),
        ResourceKind::ProjectConfig => parse_typed(doc).map(Resource::ProjectConfig),
        ResourceKind::Warehouse => parse_typed(doc).map(Resource::Warehouse),
        ResourceKind::Stage => parse_typed(doc).map(Resource::Stage),
        ResourceKind::PromotionTask => parse_typed(doc).map(Resource::PromotionTask),
        ResourceKind::ClusterPromotionTask => parse_typed(doc).map(Resource::ClusterPromotionTask),
        ResourceKind::ClusterConfig => parse_typed(doc).map(Resource::ClusterConfig),
    }
}

/// A typed parse failure: field path, message, position.
type TypedError = (String, String, Option<(usize, usize)>);

pub(super) fn parse_typed<'de, T, D>(doc: D) -> Result<T, TypedError>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de, Error = yaml_serde::Error>,
{
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let message = clean_message(&inner, &path);
        (path, message, position(&inner))
    })
}

impl Builder {
    pub(super) fn push_error(&mut self, file: usize, error: ManifestError) {
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

    pub(super) fn locate_in(&self, doc: &DocRef, path: &str) -> Option<(usize, usize)> {
        self.text(doc.file)
            .and_then(|text| locate(text, doc.index, path))
    }

    pub(super) fn add_file(&mut self, path: PathBuf, text: String) {
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
            let mut track = serde_path_to_error::Track::new();
            let parsed = parse_last_wins(serde_path_to_error::Deserializer::new(
                value_doc, &mut track,
            ));
            let (value, repeated) = match parsed {
                Ok(v) => v,
                Err(e) => {
                    let path = track.path().to_string();
                    let field = if path == "." { String::new() } else { path };
                    let message = clean_message(&e, &field);
                    let pos = position(&e);
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
            let root = root_position(root_doc);
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
            self.warn_repeated(&header, &repeated, &docref, &location);
            if foreign::is_kept(&header.kind, &header.api_version) {
                self.keep_foreign(&header, &value, &docref, &location);
                continue;
            }
            if header.api_version.starts_with(EE_API_GROUP_PREFIX) {
                if repeated.is_empty() {
                    self.keep_notification(&header, typed_doc, &docref, &location);
                } else {
                    self.keep_notification(&header, value, &docref, &location);
                }
                continue;
            }
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
            // A document that repeats keys is read from its last-wins value (the text
            // reader refuses repeats); errors then get their lines from the paths.
            let parsed = if repeated.is_empty() {
                parse_resource(kind, typed_doc)
            } else {
                parse_resource(kind, value)
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
            for d in resource.deprecations() {
                let pos = self.locate_in(&docref, &d.path).or(root);
                let warning = ManifestWarning {
                    location: location.at(pos),
                    resource: Some(label.clone()),
                    field: d.path,
                    message: d.message,
                };
                tracing::warn!(%warning, "deprecated field");
                self.set.warnings.push(warning);
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
        let kargo_group = header.api_version.starts_with(API_GROUP_PREFIX);
        if kind.is_none()
            && !header.kind.is_empty()
            && !header.api_version.is_empty()
            && !kargo_group
        {
            // Another API's resource (a Secret, an Argo CD Application, a Namespace...):
            // what `kubectl apply -f dir` takes beside Kargo's. Skipped, with a notice.
            let skipped = SkippedDocument {
                kind: header.kind.clone(),
                api_version: header.api_version.clone(),
                name: header.name.clone(),
                location: location.at(location.line.zip(location.column)),
            };
            tracing::info!(%skipped, "skipped a resource that is not Kargo's");
            self.set.skipped.push(skipped);
            return None;
        }
        if header.kind.is_empty() {
            problem = Some(("kind", "kind is required".to_owned()));
        } else if kind.is_none() {
            problem = Some((
                "kind",
                format!(
                    "unsupported kind {:?} (apiVersion {:?}): the Kargo kinds are \
                     Project, ProjectConfig, Warehouse, Stage, PromotionTask, \
                     ClusterPromotionTask and ClusterConfig of {API_VERSION}",
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
                        resource: (!header.kind.is_empty()).then(|| header.label(kind)),
                        field: field.to_owned(),
                        message,
                    },
                );
                None
            }
        }
    }

    /// One warning per key a mapping repeats: the last value wins, as with `kubectl apply`.
    fn warn_repeated(
        &mut self,
        header: &Header,
        repeated: &[RepeatedKey],
        doc: &DocRef,
        location: &SourceLocation,
    ) {
        for r in repeated {
            let pos = self
                .text(doc.file)
                .and_then(|text| locate_key(text, doc.index, &r.parent, &r.key, r.count));
            let resource = header
                .name
                .as_ref()
                .map(|_| header.label(header.kind.parse::<ResourceKind>().ok()));
            let warning = ManifestWarning {
                location: location.at(pos.or(location.line.zip(location.column))),
                resource,
                field: r.path(),
                message: format!(
                    "the key {:?} appears {} times in this mapping: the last value is used, \
                     as kubectl apply does",
                    r.key, r.count
                ),
            };
            tracing::warn!(%warning, "repeated mapping key");
            self.set.warnings.push(warning);
        }
    }

    /// Keeps a Secret, ConfigMap or AnalysisTemplate, as JSON, with its place. A second
    /// document of the same kind, namespace and name is an error, as for Kargo's kinds.
    fn keep_foreign(
        &mut self,
        header: &Header,
        value: &yaml_serde::Value,
        doc: &DocRef,
        location: &SourceLocation,
    ) {
        let label = header.label(None);
        let Some(name) = header.name.clone().filter(|n| !n.is_empty()) else {
            let pos = self.locate_in(doc, "metadata");
            self.push_error(
                doc.file,
                ManifestError {
                    location: location.at(pos.or(location.line.zip(location.column))),
                    resource: Some(label),
                    field: "metadata.name".to_owned(),
                    message: "metadata.name is required".to_owned(),
                },
            );
            return;
        };
        let json = match serde_json::to_value(value) {
            Ok(json) => json,
            Err(e) => {
                self.push_error(
                    doc.file,
                    ManifestError {
                        location: location.clone(),
                        resource: Some(label),
                        field: String::new(),
                        message: format!("cannot read this {}: {e}", header.kind),
                    },
                );
                return;
            }
        };
        let namespace = match header.kind.as_str() {
            "ClusterAnalysisTemplate" => None,
            _ => header.namespace.clone(),
        };
        if let Some(first) = self
            .set
            .foreign
            .iter()
            .find(|d| d.kind == header.kind && d.namespace == namespace && d.name == name)
        {
            let pos = self.locate_in(doc, "metadata.name");
            let error = ManifestError {
                location: location.at(pos.or(location.line.zip(location.column))),
                resource: Some(first.label()),
                field: "metadata.name".to_owned(),
                message: format!(
                    "duplicate {}: first defined at {}, defined again at {location}",
                    first.label(),
                    first.location
                ),
            };
            self.push_error(doc.file, error);
            return;
        }
        self.set.foreign.push(ForeignDocument {
            kind: header.kind.clone(),
            api_version: header.api_version.clone(),
            name,
            namespace,
            location: location.clone(),
            value: json,
            text: self
                .files
                .get(doc.file)
                .and_then(|f| f.as_ref())
                .map(|(_, t)| SourceText(Arc::clone(t))),
        });
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
        let text = self
            .files
            .get(docref.file)
            .and_then(|f| f.as_ref())
            .map(|(_, t)| SourceText(Arc::clone(t)));
        self.set.entries.push(Entry {
            resource,
            location,
            text,
        });
        self.docs.push(docref);
    }

    pub(super) fn entry_error(&mut self, entry: usize, field: String, message: String) {
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

    /// The index of the file `location` is in.
    pub(super) fn file_of(&self, location: &SourceLocation) -> usize {
        self.files
            .iter()
            .position(|f| f.as_ref().is_some_and(|(p, _)| *p == location.file))
            .unwrap_or(0)
    }

    pub(super) fn known(&self, kind: ResourceKind, ns: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = self
            .declared
            .iter()
            .filter(|(k, n, _)| *k == kind && n.as_deref() == ns)
            .map(|(_, _, name)| name.clone())
            .collect();
        names.sort();
        names
    }

    pub(super) fn is_declared(&self, kind: ResourceKind, ns: Option<&str>, name: &str) -> bool {
        self.declared
            .contains(&(kind, ns.map(str::to_owned), name.to_owned()))
    }

    pub(super) fn finish(mut self) -> Result<ManifestSet, ManifestErrors> {
        self.check_references();
        self.check_cycles();
        self.check_notifications();
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
