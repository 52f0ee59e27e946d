//! The Secrets and ConfigMaps of a manifest directory, read the way Kargo reads them from
//! its cluster: credential Secrets become a [`CredentialTable`], and every Secret and
//! ConfigMap backs the expression functions `secret()`, `sharedSecret()`, `configMap()` and
//! `sharedConfigMap()`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::Value as Json;

use super::{CredentialKind, CredentialTable, Credentials, Redacted, SecretStore};
use crate::loader::{ForeignDocument, ManifestError, ManifestErrors, ManifestSet};

/// The label that makes a Secret a credential: `kargo.akuity.io/cred-type`.
pub const CREDENTIAL_TYPE_LABEL: &str = "kargo.akuity.io/cred-type";

/// Kargo's default shared resources namespace (`global.sharedResources.namespace` of its
/// Helm chart): Secrets and ConfigMaps there serve every Project.
pub const SHARED_RESOURCES_NAMESPACE: &str = "kargo-shared-resources";

const REPO_URL: &str = "repoURL";
const REPO_URL_IS_REGEX: &str = "repoURLIsRegex";
const USERNAME: &str = "username";
const PASSWORD: &str = "password";
const SSH_PRIVATE_KEY: &str = "sshPrivateKey";
const GITHUB_APP_CLIENT_ID: &str = "githubAppClientID";
const GITHUB_APP_ID: &str = "githubAppID";
const GITHUB_APP_INSTALLATION_ID: &str = "githubAppInstallationID";
const GITHUB_APP_PRIVATE_KEY: &str = "githubAppPrivateKey";

/// Keys whose values must be text (they become URLs, user names, passwords, keys).
const CREDENTIAL_KEYS: [&str; 9] = [
    REPO_URL,
    REPO_URL_IS_REGEX,
    USERNAME,
    PASSWORD,
    SSH_PRIVATE_KEY,
    GITHUB_APP_CLIENT_ID,
    GITHUB_APP_ID,
    GITHUB_APP_INSTALLATION_ID,
    GITHUB_APP_PRIVATE_KEY,
];

/// How a manifest directory's Secrets are read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestSecretsOptions {
    /// The namespaces whose Secrets and ConfigMaps serve every Project, searched in this
    /// order after the Project's own (default: [`SHARED_RESOURCES_NAMESPACE`]).
    pub shared_namespaces: Vec<String>,
}

impl Default for ManifestSecretsOptions {
    fn default() -> Self {
        Self {
            shared_namespaces: vec![SHARED_RESOURCES_NAMESPACE.to_owned()],
        }
    }
}

impl ManifestSecretsOptions {
    /// These options with other shared namespaces (replacing the default).
    pub fn with_shared_namespaces(
        mut self,
        namespaces: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.shared_namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }
}

/// What a credential Secret gives.
#[derive(Clone)]
enum Usable {
    Credentials(Credentials),
    /// A GitHub App: the message of the error a lookup gives.
    GitHubApp(String),
}

#[derive(Clone)]
struct CredentialSpec {
    kind: CredentialKind,
    repo_url: String,
    is_regex: bool,
    usable: Usable,
}

#[derive(Clone)]
struct SecretEntry {
    namespace: String,
    name: String,
    generic: bool,
    data: BTreeMap<String, Redacted<String>>,
    credential: Option<CredentialSpec>,
}

#[derive(Clone)]
struct ConfigMapEntry {
    namespace: String,
    name: String,
    data: BTreeMap<String, String>,
}

/// The Secrets and ConfigMaps of a [`ManifestSet`], parsed and checked. `Debug` shows
/// names only.
///
/// - A Secret's namespace is the Project it serves. Secrets and ConfigMaps in a **shared
///   resources namespace** (Kargo's default: [`SHARED_RESOURCES_NAMESPACE`]; older Kargo
///   versions had a list of "global credentials namespaces", which
///   [`ManifestSecretsOptions::shared_namespaces`] stands for) serve every Project.
/// - A Secret labelled [`CREDENTIAL_TYPE_LABEL`] `git`, `helm` or `image` is a repository
///   credential: `repoURL` (exact, or a regular expression with `repoURLIsRegex: "true"`)
///   and `username` + `password`, or `sshPrivateKey`, or a GitHub App
///   (`githubAppClientID` or `githubAppID`, `githubAppInstallationID`,
///   `githubAppPrivateKey`; loaded, but using one is an error: kargo-rs does not exchange
///   GitHub App keys for installation tokens). A `generic` Secret is a credential only when
///   it has a `repoURL`.
/// - Values come from `data` (base64) and `stringData` (plain; a key in both takes
///   `stringData`'s value, as the Kubernetes API server does).
/// - Lookups (Kargo's order): the Project's namespace, then each shared namespace; within
///   one, exact `repoURL`s before regular expressions, each in the lexical order of the
///   Secrets' names; the first match wins. (Kargo's documentation states this order; its
///   code tries the Secrets in name order only, exact and pattern alike.)
/// - `secret(name)` reads any Secret of the Project's namespace (credentials included);
///   `sharedSecret(name)` only the shared Secrets labelled `cred-type: generic`, so shared
///   repository credentials are never readable by expressions; `configMap(name)` and
///   `sharedConfigMap(name)` read ConfigMaps' `data`. A missing one is an empty map.
///
/// Problems (a credential Secret without `repoURL`, a bad regular expression, bad base64,
/// an unknown `cred-type`, a value that is not a string) are [`ManifestErrors`] naming the
/// file, line, Secret and key, never a value.
///
/// ```
/// use kargo_core::loader::ManifestSet;
/// use kargo_core::secret::{CredentialKind, ManifestSecrets, SecretStore};
///
/// let set = ManifestSet::from_yaml_str("kargo.yaml", r#"
/// apiVersion: v1
/// kind: Secret
/// metadata:
///   name: repo
///   namespace: demo
///   labels: {kargo.akuity.io/cred-type: git}
/// stringData:
///   repoURL: https://git.example.com/acme/gitops.git
///   username: kargo
///   password: s3cret
/// ---
/// apiVersion: v1
/// kind: ConfigMap
/// metadata: {name: settings, namespace: demo}
/// data: {env: dev}
/// "#).unwrap();
/// let secrets = ManifestSecrets::from_manifests(&set).unwrap();
/// let table = secrets.credentials("demo");
/// let c = table.lookup(CredentialKind::Git, "https://git.example.com/acme/gitops").unwrap();
/// assert_eq!(c.username, "kargo");
/// let store = secrets.project("demo");
/// assert_eq!(store.config_map("settings").unwrap()["env"], "dev");
/// assert_eq!(store.secret("repo").unwrap()["password"].expose(), "s3cret");
/// ```
#[derive(Clone, Default)]
pub struct ManifestSecrets {
    options: ManifestSecretsOptions,
    /// Sorted by namespace, then name.
    secrets: Vec<SecretEntry>,
    /// Sorted by namespace, then name.
    config_maps: Vec<ConfigMapEntry>,
    /// Secrets and ConfigMaps without a namespace (they serve no Project).
    unscoped: Vec<String>,
}

impl fmt::Debug for ManifestSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: Vec<String> = self
            .secrets
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        let config_maps: Vec<String> = self
            .config_maps
            .iter()
            .map(|c| format!("{}/{}", c.namespace, c.name))
            .collect();
        f.debug_struct("ManifestSecrets")
            .field("shared_namespaces", &self.options.shared_namespaces)
            .field("secrets", &secrets)
            .field("config_maps", &config_maps)
            .finish()
    }
}

/// What a manifest directory holds for one Project: names only, never values (for
/// `promoter validate`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SecretSummary {
    /// Credential Secrets the Project's lookups search, in search order, as
    /// `git demo/repo-creds` (kind, namespace, name).
    pub credentials: Vec<String>,
    /// Secrets expressions can read: `secret()` (the Project's namespace) and
    /// `sharedSecret()` (shared, `generic` ones), as `namespace/name`.
    pub secrets: Vec<String>,
    /// ConfigMaps expressions can read (`configMap()`, `sharedConfigMap()`), as
    /// `namespace/name`.
    pub config_maps: Vec<String>,
    /// Secrets and ConfigMaps that serve no Project: without `metadata.namespace`.
    pub unscoped: Vec<String>,
    /// Credential Secrets among [`credentials`](Self::credentials) that hold a GitHub
    /// App, which kargo-rs loads but cannot use (a lookup that finds one fails), as
    /// `namespace/name`.
    pub github_apps: Vec<String>,
}

impl ManifestSecrets {
    /// Reads the Secrets and ConfigMaps of `set` with the default options.
    pub fn from_manifests(set: &ManifestSet) -> Result<Self, ManifestErrors> {
        Self::from_manifests_with(set, ManifestSecretsOptions::default())
    }

    /// Reads the Secrets and ConfigMaps of `set`; every problem is reported at once.
    pub fn from_manifests_with(
        set: &ManifestSet,
        options: ManifestSecretsOptions,
    ) -> Result<Self, ManifestErrors> {
        let mut out = ManifestSecrets {
            options,
            ..Self::default()
        };
        let mut errors = Vec::new();
        for doc in set.foreign_documents() {
            let is_secret = match doc.kind.as_str() {
                "Secret" => true,
                "ConfigMap" => false,
                _ => continue,
            };
            let Some(namespace) = doc.namespace.clone() else {
                tracing::warn!(
                    resource = %doc.label(),
                    location = %doc.location,
                    "no metadata.namespace: it serves no Project"
                );
                out.unscoped.push(doc.label());
                continue;
            };
            if is_secret {
                if let Some(s) = read_secret(doc, namespace, &mut errors) {
                    out.secrets.push(s);
                }
            } else if let Some(data) = string_map(doc, "data", &mut errors) {
                out.config_maps.push(ConfigMapEntry {
                    namespace,
                    name: doc.name.clone(),
                    data,
                });
            }
        }
        if !errors.is_empty() {
            return Err(ManifestErrors(errors));
        }
        out.secrets
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.config_maps
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(out)
    }

    /// The options these were read with.
    pub fn options(&self) -> &ManifestSecretsOptions {
        &self.options
    }

    /// Whether `namespace` is a shared resources namespace.
    pub fn is_shared(&self, namespace: &str) -> bool {
        self.options
            .shared_namespaces
            .iter()
            .any(|n| n == namespace)
    }

    /// The namespaces a Project's lookups search, in order: its own, then the shared
    /// ones.
    fn search_order<'a>(&'a self, project: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(project).chain(
            self.options
                .shared_namespaces
                .iter()
                .map(String::as_str)
                .filter(move |n| *n != project),
        )
    }

    /// The credential table of `project`: its namespace's credential Secrets, then the
    /// shared namespaces' (see the module documentation for the order).
    pub fn credentials(&self, project: &str) -> CredentialTable {
        let mut table = CredentialTable::new();
        for ns in self.search_order(project) {
            let mut tier = CredentialTable::new();
            for s in self.secrets.iter().filter(|s| s.namespace == ns) {
                let Some(c) = &s.credential else { continue };
                // The pattern compiled when the Secret was read.
                let added = match &c.usable {
                    Usable::Credentials(creds) if c.is_regex => {
                        tier.clone()
                            .with_pattern(c.kind, &c.repo_url, creds.clone())
                    }
                    Usable::Credentials(creds) => {
                        Ok(tier.clone().with_exact(c.kind, &c.repo_url, creds.clone()))
                    }
                    Usable::GitHubApp(reason) => tier.clone().with_unsupported(
                        c.kind,
                        &c.repo_url,
                        c.is_regex,
                        reason.clone(),
                    ),
                };
                match added {
                    Ok(t) => tier = t,
                    Err(e) => {
                        tracing::warn!(secret = %s.name, error = %e, "credential Secret skipped")
                    }
                }
            }
            table = table.then(tier);
        }
        table
    }

    /// The Secrets and ConfigMaps `project`'s expressions read, as a [`SecretStore`].
    pub fn project(&self, project: &str) -> ProjectSecrets {
        let own = |ns: &str| ns == project;
        let mut store = ProjectSecrets::default();
        for s in self.secrets.iter().filter(|s| own(&s.namespace)) {
            store.secrets.insert(s.name.clone(), s.data.clone());
        }
        for c in self.config_maps.iter().filter(|c| own(&c.namespace)) {
            store.config_maps.insert(c.name.clone(), c.data.clone());
        }
        for ns in self.options.shared_namespaces.iter().rev() {
            for s in self
                .secrets
                .iter()
                .filter(|s| &s.namespace == ns && s.generic)
            {
                store.shared_secrets.insert(s.name.clone(), s.data.clone());
            }
            for c in self.config_maps.iter().filter(|c| &c.namespace == ns) {
                store
                    .shared_config_maps
                    .insert(c.name.clone(), c.data.clone());
            }
        }
        store
    }

    /// What `project` gets from these Secrets and ConfigMaps, by name.
    pub fn summary(&self, project: &str) -> SecretSummary {
        let mut summary = SecretSummary {
            unscoped: self.unscoped.clone(),
            ..SecretSummary::default()
        };
        for ns in self.search_order(project) {
            let shared = ns != project;
            for s in self.secrets.iter().filter(|s| s.namespace == ns) {
                if let Some(c) = &s.credential {
                    if matches!(c.usable, Usable::GitHubApp(_)) {
                        summary
                            .github_apps
                            .push(format!("{}/{}", s.namespace, s.name));
                    }
                    summary.credentials.push(format!(
                        "{} {}/{}",
                        kind_name(c.kind),
                        s.namespace,
                        s.name
                    ));
                }
                if !shared || s.generic {
                    summary.secrets.push(format!("{}/{}", s.namespace, s.name));
                }
            }
            for c in self.config_maps.iter().filter(|c| c.namespace == ns) {
                summary
                    .config_maps
                    .push(format!("{}/{}", c.namespace, c.name));
            }
        }
        summary
    }
}

fn kind_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Git => "git",
        CredentialKind::Helm => "helm",
        CredentialKind::Image => "image",
        CredentialKind::Generic => "generic",
    }
}

/// The Secrets and ConfigMaps one Project's expressions read (from
/// [`ManifestSecrets::project`]). `Debug` shows names only.
#[derive(Clone, Default)]
pub struct ProjectSecrets {
    secrets: BTreeMap<String, BTreeMap<String, Redacted<String>>>,
    shared_secrets: BTreeMap<String, BTreeMap<String, Redacted<String>>>,
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    shared_config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl ProjectSecrets {
    /// The Project's own Secrets (not the shared ones), by name.
    pub fn own_secrets(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, Redacted<String>>)> {
        self.secrets.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl fmt::Debug for ProjectSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectSecrets")
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field(
                "shared_secrets",
                &self.shared_secrets.keys().collect::<Vec<_>>(),
            )
            .field("config_maps", &self.config_maps.keys().collect::<Vec<_>>())
            .field(
                "shared_config_maps",
                &self.shared_config_maps.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SecretStore for ProjectSecrets {
    fn secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>> {
        self.secrets.get(name).cloned()
    }

    fn shared_secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>> {
        self.shared_secrets.get(name).cloned()
    }

    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.config_maps.get(name).cloned()
    }

    fn shared_config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.shared_config_maps.get(name).cloned()
    }
}

// ---------------------------------------------------------------------------------------
// Reading one document

fn error(
    doc: &ForeignDocument,
    field: impl Into<String>,
    message: impl Into<String>,
) -> ManifestError {
    let field = field.into();
    ManifestError {
        location: doc.field_location(&field),
        resource: Some(doc.label()),
        field,
        message: message.into(),
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// `section` (`data`, `stringData`) as a map of strings; `None` after reporting a problem.
/// The problem never quotes a value.
fn string_map(
    doc: &ForeignDocument,
    section: &str,
    errors: &mut Vec<ManifestError>,
) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match doc.value.get(section) {
        None | Some(Json::Null) => Some(out),
        Some(Json::Object(map)) => {
            let before = errors.len();
            for (k, v) in map {
                match v {
                    Json::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => errors.push(error(
                        doc,
                        format!("{section}.{k}"),
                        format!(
                            "must be a string, found {} (quote it: Kubernetes keeps only strings here)",
                            json_type(other)
                        ),
                    )),
                }
            }
            (errors.len() == before).then_some(out)
        }
        Some(other) => {
            errors.push(error(
                doc,
                section,
                format!(
                    "must be a mapping of keys to strings, found {}",
                    json_type(other)
                ),
            ));
            None
        }
    }
}

/// Why a base64 value does not decode, without quoting it.
fn base64_problem(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("an invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("an invalid length ({len} symbols)"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("an invalid last symbol at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
    }
}

fn read_secret(
    doc: &ForeignDocument,
    namespace: String,
    errors: &mut Vec<ManifestError>,
) -> Option<SecretEntry> {
    let before = errors.len();
    // The type label first: its problems are reported with the data's.
    let cred_type = match doc.label_value(CREDENTIAL_TYPE_LABEL) {
        None => None,
        Some("git") => Some(CredentialKind::Git),
        Some("helm") => Some(CredentialKind::Helm),
        Some("image") => Some(CredentialKind::Image),
        Some("generic") => Some(CredentialKind::Generic),
        Some(other) => {
            errors.push(error(
                doc,
                format!("metadata.labels[{CREDENTIAL_TYPE_LABEL}]"),
                format!("unknown credential type {other:?} (expected git, helm, image or generic)"),
            ));
            None
        }
    };
    let encoded = string_map(doc, "data", errors);
    let plain = string_map(doc, "stringData", errors);
    let (Some(encoded), Some(plain)) = (encoded, plain) else {
        return None;
    };
    let mut data = BTreeMap::new();
    for (key, value) in encoded {
        // Go's base64 decoder, which the API server uses, skips line breaks.
        let compact: String = value.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        let bytes = match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
            Ok(b) => b,
            Err(e) => {
                errors.push(error(
                    doc,
                    format!("data.{key}"),
                    format!("is not valid base64: {}", base64_problem(&e)),
                ));
                continue;
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) if CREDENTIAL_KEYS.contains(&key.as_str()) => {
                errors.push(error(
                    doc,
                    format!("data.{key}"),
                    "decodes to bytes that are not UTF-8 text",
                ));
                continue;
            }
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        data.insert(key, text);
    }
    // stringData wins over data, as when the API server merges them.
    data.extend(plain);
    if errors.len() > before {
        return None;
    }
    let credential = match cred_type {
        Some(kind) => match credential_spec(doc, kind, &data) {
            Ok(c) => c,
            Err(e) => {
                errors.push(*e);
                return None;
            }
        },
        None => None,
    };
    Some(SecretEntry {
        namespace,
        name: doc.name.clone(),
        generic: cred_type == Some(CredentialKind::Generic),
        data: data
            .into_iter()
            .map(|(k, v)| (k, Redacted::new(v)))
            .collect(),
        credential,
    })
}

/// The credential of a Secret labelled `kind`; `None` for a `generic` Secret without a
/// `repoURL` (a secret for expressions only).
fn credential_spec(
    doc: &ForeignDocument,
    kind: CredentialKind,
    data: &BTreeMap<String, String>,
) -> Result<Option<CredentialSpec>, Box<ManifestError>> {
    let get = |k: &str| data.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(repo_url) = get(REPO_URL) else {
        if kind == CredentialKind::Generic {
            return Ok(None);
        }
        return Err(Box::new(error(
            doc,
            "data.repoURL",
            format!(
                "a credential Secret ({CREDENTIAL_TYPE_LABEL}: {}) needs a non-empty repoURL \
                 in data or stringData",
                kind_name(kind)
            ),
        )));
    };
    let is_regex = match get(REPO_URL_IS_REGEX) {
        Some("true") => true,
        None | Some("false") => false,
        Some(other) => {
            // Kargo reads anything but "true" as false.
            tracing::warn!(
                resource = %doc.label(),
                location = %doc.location,
                value = other,
                "repoURLIsRegex is neither \"true\" nor \"false\": read as false"
            );
            false
        }
    };
    if is_regex && let Err(e) = regex::Regex::new(repo_url) {
        return Err(Box::new(error(
            doc,
            "data.repoURL",
            format!("is not a valid regular expression (repoURLIsRegex is \"true\"): {e}"),
        )));
    }
    let app_keys = [
        GITHUB_APP_CLIENT_ID,
        GITHUB_APP_ID,
        GITHUB_APP_INSTALLATION_ID,
        GITHUB_APP_PRIVATE_KEY,
    ];
    let has_app_id = get(GITHUB_APP_CLIENT_ID).is_some() || get(GITHUB_APP_ID).is_some();
    let usable = if has_app_id
        && get(GITHUB_APP_INSTALLATION_ID).is_some()
        && get(GITHUB_APP_PRIVATE_KEY).is_some()
    {
        if kind != CredentialKind::Git {
            return Err(Box::new(error(
                doc,
                "data.githubAppPrivateKey",
                "GitHub App credentials are for git repositories only (cred-type: git)",
            )));
        }
        Usable::GitHubApp(format!(
            "the credential {} ({}) is a GitHub App: kargo-rs does not exchange GitHub App \
             keys for installation tokens; put an installation or personal access token in \
             `password` (with a `username`) instead",
            doc.label(),
            doc.location
        ))
    } else if let Some(key) = get(SSH_PRIVATE_KEY) {
        let mut c = Credentials::ssh_key(key, None);
        c.username = get(USERNAME).unwrap_or_default().to_owned();
        Usable::Credentials(c)
    } else if let (Some(user), Some(password)) = (get(USERNAME), get(PASSWORD)) {
        Usable::Credentials(Credentials::basic(user, password))
    } else {
        let present: Vec<&str> = app_keys
            .iter()
            .copied()
            .filter(|k| get(k).is_some())
            .collect();
        let message = if !present.is_empty() {
            "has incomplete GitHub App credentials: it needs githubAppClientID (or githubAppID), \
             githubAppInstallationID and githubAppPrivateKey"
                .to_owned()
        } else if get(USERNAME).is_some() {
            "has a username but no password".to_owned()
        } else if get(PASSWORD).is_some() {
            "has a password but no username (Kargo needs both)".to_owned()
        } else {
            "has no credentials: it needs username and password, sshPrivateKey, or \
             githubAppClientID (or githubAppID), githubAppInstallationID and \
             githubAppPrivateKey"
                .to_owned()
        };
        let field = if present.is_empty() {
            "data"
        } else {
            "data.githubAppInstallationID"
        };
        return Err(Box::new(error(doc, field, message)));
    };
    Ok(Some(CredentialSpec {
        kind,
        repo_url: repo_url.to_owned(),
        is_regex,
        usable,
    }))
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;
