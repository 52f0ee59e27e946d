//! Secrets and credentials, supplied by the embedder.
//!
//! Values are wrapped in [`Redacted`], whose `Debug` and `Display` print `***`, so a secret
//! cannot reach a log line or an error message by accident.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

mod layers;
mod manifests;

pub use layers::{CredentialChain, LayeredSecrets};
pub use manifests::{
    CREDENTIAL_TYPE_LABEL, ManifestSecrets, ManifestSecretsOptions, ProjectSecrets,
    SHARED_RESOURCES_NAMESPACE, SecretSummary,
};

/// A value that never prints itself.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value. Only call this where the value is handed to the party that
    /// needs it (an HTTP header, a credential helper).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Redacted<String> {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Redacted<String> {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Named secrets (and configuration) of a project, as the expression functions read them:
/// `secret(name)` and `sharedSecret(name)` return a Secret as a string map,
/// `configMap(name)` and `sharedConfigMap(name)` a ConfigMap. Only [`secret`](Self::secret)
/// must be implemented; the others default to "none" (an empty map in expressions).
///
/// [`ManifestSecrets::project`] gives the Secrets and ConfigMaps of a manifest directory
/// as a store; [`LayeredSecrets`] puts several stores in front of each other.
pub trait SecretStore: Send + Sync {
    /// The secret called `name` (in Kargo: in the Project's namespace), or `None` when
    /// there is none.
    fn secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>>;

    /// The shared secret called `name` (in Kargo: in the shared resources namespace,
    /// labelled `kargo.akuity.io/cred-type: generic`), or `None`.
    fn shared_secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>> {
        let _ = name;
        None
    }

    /// The ConfigMap called `name` (in the Project's namespace), or `None`.
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let _ = name;
        None
    }

    /// The shared ConfigMap called `name` (in the shared resources namespace), or `None`.
    fn shared_config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let _ = name;
        None
    }
}

impl SecretStore for BTreeMap<String, BTreeMap<String, String>> {
    fn secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>> {
        self.get(name).map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), Redacted::new(v.clone())))
                .collect()
        })
    }
}

/// What a credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialKind {
    /// A git repository.
    Git,
    /// A container image registry.
    Image,
    /// A Helm chart repository.
    Helm,
    /// Anything else (HTTP endpoints, APIs).
    Generic,
}

/// Credentials for a repository: a username and password (or token), or an SSH key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The user name (may be empty for token-only schemes).
    pub username: String,
    /// The password or token.
    pub password: Redacted<String>,
    /// For SSH git remotes: the private key (OpenSSH format).
    pub ssh_private_key: Option<Redacted<String>>,
    /// For SSH git remotes: `known_hosts` lines for the server.
    pub ssh_known_hosts: Option<String>,
}

impl Credentials {
    /// Username and password (or token).
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Redacted::new(password.into()),
            ..Self::default()
        }
    }

    /// An SSH private key, with optional `known_hosts` lines.
    pub fn ssh_key(private_key: impl Into<String>, known_hosts: Option<String>) -> Self {
        Self {
            ssh_private_key: Some(Redacted::new(private_key.into())),
            ssh_known_hosts: known_hosts,
            ..Self::default()
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ssh_private_key", &self.ssh_private_key)
            .finish()
    }
}

/// An error looking up credentials. The message must not contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential lookup failed: {0}")]
pub struct CredentialError(pub String);

/// Supplies credentials by kind and repository URL. Embedders implement this over their
/// own secret manager.
#[async_trait]
pub trait CredentialProvider: Send + Sync {
    /// Credentials for `repo_url`, or `None` for anonymous access.
    async fn credentials(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError>;
}

/// A provider that never has credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

#[async_trait]
impl CredentialProvider for NoCredentials {
    async fn credentials(
        &self,
        _kind: CredentialKind,
        _repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        Ok(None)
    }
}

/// A fixed table of credentials, matched by kind and the longest URL prefix.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    entries: Vec<(CredentialKind, String, Credentials)>,
}

impl StaticCredentials {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds arbitrary credentials (e.g. an SSH key) for URLs starting with `url_prefix`.
    pub fn with_credentials(
        mut self,
        kind: CredentialKind,
        url_prefix: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        self.entries.push((kind, url_prefix.into(), credentials));
        self
    }

    /// Adds credentials for every URL starting with `url_prefix`.
    pub fn with(
        mut self,
        kind: CredentialKind,
        url_prefix: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.entries.push((
            kind,
            url_prefix.into(),
            Credentials::basic(username, password),
        ));
        self
    }
}

#[async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credentials(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        Ok(self
            .entries
            .iter()
            .filter(|(k, p, _)| *k == kind && repo_url.starts_with(p.as_str()))
            .max_by_key(|(_, p, _)| p.len())
            .map(|(_, _, c)| c.clone()))
    }
}

/// Why a [`CredentialTable`] could not be built. Messages never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialTableError {
    /// The YAML is not a list of credential entries.
    #[error("{origin}: {message}")]
    Parse {
        /// Where the text came from (a file name).
        origin: String,
        /// What is wrong, with line and column when known.
        message: String,
    },
    /// An entry is incomplete or inconsistent.
    #[error("{origin}: entry {index}: {message}")]
    Entry {
        /// Where the text came from (a file name).
        origin: String,
        /// The 1-based position of the entry in the list.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// One entry of a credentials file, in the shape of Kargo's credential Secrets (the
/// label `kargo.akuity.io/cred-type` becomes `type`; the Secret's data keys stay).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CredentialEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "repoURL")]
    repo_url: Option<String>,
    #[serde(default, rename = "repoURLPattern")]
    repo_url_pattern: Option<String>,
    #[serde(default, rename = "repoURLIsRegex")]
    repo_url_is_regex: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ssh_private_key: Option<String>,
}

#[derive(Clone)]
enum UrlMatch {
    /// The normalised repository URL.
    Exact(String),
    Pattern(regex::Regex),
}

/// What an entry of a [`CredentialTable`] gives when it matches.
#[derive(Clone)]
enum EntryValue {
    /// These credentials.
    Static(Credentials),
    /// Credentials kargo-rs cannot use (a GitHub App): a lookup that finds the entry
    /// fails with this message, which names the entry but holds no secret.
    Unsupported(String),
}

#[derive(Clone)]
struct Entry {
    /// Tables joined with [`CredentialTable::then`] keep their order: every tier is
    /// searched (exact, then patterns) before the next one.
    tier: usize,
    kind: CredentialKind,
    url: UrlMatch,
    value: EntryValue,
}

/// A table of credentials that matches repository URLs the way Kargo matches its
/// credential Secrets:
///
/// 1. entries of the requested kind whose `repoURL` equals the requested URL, both
///    normalised per kind (git: [`normalize_git_url`](crate::freight::normalize_git_url),
///    so `https://host/org/repo.git` and `https://host/org/repo` are the same; image:
///    [`normalize_image_repo`](crate::freight::normalize_image_repo); Helm:
///    [`normalize_chart_repo`](crate::freight::normalize_chart_repo), trailing `/`
///    ignored); the first such
///    entry wins;
/// 2. otherwise entries whose `repoURLPattern` (a regular expression, unanchored unless
///    it says `^...$`) matches the URL as given or its normalised form, in the order they
///    were added.
///
/// A Helm lookup of an `oci://` URL that finds nothing then tries the `image` entries for
/// the same repository (OCI charts live in image registries; kargo-rs's convenience).
///
/// Tables joined with [`then`](CredentialTable::then) are searched one after the other,
/// each by the two rules above (Kargo searches the Project's namespace, then the shared
/// resources namespace, the same way).
///
/// Unlike Kargo, credentials are returned for plain `http://` URLs too (Kargo refuses
/// them; test servers and internal mirrors need them).
///
/// A credentials file ([`CredentialTable::from_yaml_str`]) is a YAML list:
///
/// ```yaml
/// - type: git                         # git | image | helm
///   repoURL: https://github.com/acme/gitops.git
///   username: kargo
///   password: ghp_xxx
/// - type: image
///   repoURLPattern: ^ghcr\.io/acme/   # or repoURL + repoURLIsRegex: true, as in Kargo
///   username: kargo
///   password: ghp_yyy
/// - type: git
///   repoURL: git@github.com:acme/infra.git
///   sshPrivateKey: |
///     -----BEGIN OPENSSH PRIVATE KEY-----
///     ...
/// ```
///
/// ```
/// # tokio_test_block_on(async {
/// use kargo_core::secret::{CredentialKind, CredentialProvider, CredentialTable};
///
/// let table = CredentialTable::from_yaml_str("creds.yaml", r#"
/// - {type: git, repoURLPattern: '^https://git\.example\.com/', username: any, password: a}
/// - {type: git, repoURL: 'https://git.example.com/team/app.git', username: app, password: b}
/// "#).unwrap();
/// let c = table.credentials(CredentialKind::Git, "https://git.example.com/team/app").await;
/// assert_eq!(c.unwrap().unwrap().username, "app"); // the exact entry wins over the pattern
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default)]
pub struct CredentialTable {
    entries: Vec<Entry>,
}

impl fmt::Debug for CredentialTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for e in &self.entries {
            let url = match &e.url {
                UrlMatch::Exact(u) => u.clone(),
                UrlMatch::Pattern(r) => format!("/{}/", r.as_str()),
            };
            let user = match &e.value {
                EntryValue::Static(c) => c.username.as_str(),
                EntryValue::Unsupported(_) => "(unsupported)",
            };
            list.entry(&(e.kind, url, user));
        }
        list.finish()
    }
}

fn normalize_for(kind: CredentialKind, url: &str) -> String {
    match kind {
        CredentialKind::Git => crate::freight::normalize_git_url(url),
        CredentialKind::Image => crate::freight::normalize_image_repo(url),
        CredentialKind::Helm => crate::freight::normalize_chart_repo(url.trim_end_matches('/')),
        CredentialKind::Generic => url.trim_end_matches('/').to_owned(),
    }
}

impl CredentialTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries the table has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds credentials for exactly `repo_url` (compared after normalisation).
    pub fn with_exact(
        mut self,
        kind: CredentialKind,
        repo_url: &str,
        credentials: Credentials,
    ) -> Self {
        self.push(
            kind,
            UrlMatch::Exact(normalize_for(kind, repo_url)),
            EntryValue::Static(credentials),
        );
        self
    }

    fn push(&mut self, kind: CredentialKind, url: UrlMatch, value: EntryValue) {
        let tier = self.entries.last().map_or(0, |e| e.tier);
        self.entries.push(Entry {
            tier,
            kind,
            url,
            value,
        });
    }

    /// Adds an entry for exactly `repo_url` (or, with `is_pattern`, for the URLs the
    /// regular expression matches) whose credentials cannot be used: a lookup that finds
    /// it fails with `reason` (which must not contain a secret).
    pub(crate) fn with_unsupported(
        mut self,
        kind: CredentialKind,
        repo_url: &str,
        is_pattern: bool,
        reason: String,
    ) -> Result<Self, regex::Error> {
        let url = if is_pattern {
            UrlMatch::Pattern(regex::Regex::new(repo_url)?)
        } else {
            UrlMatch::Exact(normalize_for(kind, repo_url))
        };
        self.push(kind, url, EntryValue::Unsupported(reason));
        Ok(self)
    }

    /// This table followed by `next`: a lookup searches all of this table (exact
    /// entries, then patterns) before any of `next`.
    pub fn then(mut self, next: CredentialTable) -> Self {
        let base = self.entries.last().map_or(0, |e| e.tier + 1);
        self.entries.extend(next.entries.into_iter().map(|mut e| {
            e.tier += base;
            e
        }));
        self
    }

    /// Adds credentials for every URL matching `pattern` (a regular expression).
    pub fn with_pattern(
        mut self,
        kind: CredentialKind,
        pattern: &str,
        credentials: Credentials,
    ) -> Result<Self, regex::Error> {
        let re = regex::Regex::new(pattern)?;
        self.push(kind, UrlMatch::Pattern(re), EntryValue::Static(credentials));
        Ok(self)
    }

    /// Parses a credentials file (see the type's documentation); `origin` names it in
    /// errors.
    pub fn from_yaml_str(origin: &str, text: &str) -> Result<Self, CredentialTableError> {
        if text.trim().is_empty() {
            return Ok(Self::new());
        }
        let entries: Vec<CredentialEntry> =
            yaml_serde::from_str(text).map_err(|e| CredentialTableError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        let mut table = Self::new();
        for (i, e) in entries.into_iter().enumerate() {
            let bad = |message: String| CredentialTableError::Entry {
                origin: origin.to_owned(),
                index: i + 1,
                message,
            };
            let kind = match e.kind.as_str() {
                "git" => CredentialKind::Git,
                "image" => CredentialKind::Image,
                "helm" => CredentialKind::Helm,
                "generic" => CredentialKind::Generic,
                other => {
                    return Err(bad(format!(
                        "unknown type {other:?} (expected git, image, helm or generic)"
                    )));
                }
            };
            let credentials = match (&e.ssh_private_key, &e.password) {
                (Some(key), _) => {
                    let mut c = Credentials::ssh_key(key.clone(), None);
                    c.username = e.username.clone().unwrap_or_default();
                    c
                }
                (None, Some(pw)) => Credentials::basic(e.username.clone().unwrap_or_default(), pw),
                (None, None) => {
                    return Err(bad("needs a password (or sshPrivateKey for git)".into()));
                }
            };
            table = match (e.repo_url, e.repo_url_pattern, e.repo_url_is_regex) {
                (Some(url), None, false) if !url.is_empty() => {
                    table.with_exact(kind, &url, credentials)
                }
                (Some(p), None, true) | (None, Some(p), false) if !p.is_empty() => table
                    .with_pattern(kind, &p, credentials)
                    .map_err(|err| bad(format!("invalid repoURLPattern {p:?}: {err}")))?,
                (Some(_), Some(_), _) => {
                    return Err(bad("has both repoURL and repoURLPattern".into()));
                }
                _ => return Err(bad("needs a non-empty repoURL or repoURLPattern".into())),
            };
        }
        Ok(table)
    }

    /// Reads and parses a credentials file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, CredentialTableError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CredentialTableError::Parse {
            origin: origin.clone(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_yaml_str(&origin, &text)
    }

    /// The credentials for `repo_url` by the rules of the type's documentation; `None`
    /// also when the entry that matches holds credentials kargo-rs cannot use (see
    /// [`try_lookup`](Self::try_lookup)).
    pub fn lookup(&self, kind: CredentialKind, repo_url: &str) -> Option<&Credentials> {
        self.try_lookup(kind, repo_url).ok().flatten()
    }

    /// The credentials for `repo_url` by the rules of the type's documentation, or an
    /// error when the entry that matches holds credentials kargo-rs cannot use (a GitHub
    /// App's key).
    pub fn try_lookup(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<&Credentials>, CredentialError> {
        let found = self.find(kind, repo_url).or_else(|| {
            let rest = repo_url.strip_prefix("oci://")?;
            (kind == CredentialKind::Helm)
                .then(|| self.find(CredentialKind::Image, rest))
                .flatten()
        });
        match found {
            None => Ok(None),
            Some(EntryValue::Static(c)) => Ok(Some(c)),
            Some(EntryValue::Unsupported(reason)) => Err(CredentialError(reason.clone())),
        }
    }

    fn find(&self, kind: CredentialKind, repo_url: &str) -> Option<&EntryValue> {
        let normalized = normalize_for(kind, repo_url);
        let mut tiers: Vec<usize> = self.entries.iter().map(|e| e.tier).collect();
        tiers.dedup();
        tiers.into_iter().find_map(|tier| {
            let of_tier = || {
                self.entries
                    .iter()
                    .filter(move |e| e.tier == tier && e.kind == kind)
            };
            of_tier()
                .find(|e| matches!(&e.url, UrlMatch::Exact(u) if *u == normalized))
                .or_else(|| {
                    of_tier().find(|e| {
                        matches!(&e.url, UrlMatch::Pattern(r)
                            if r.is_match(repo_url) || r.is_match(&normalized))
                    })
                })
                .map(|e| &e.value)
        })
    }
}

#[async_trait]
impl CredentialProvider for CredentialTable {
    async fn credentials(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        Ok(self.try_lookup(kind, repo_url)?.cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_never_prints() {
        let c = Credentials::basic("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(format!("{}", c.password), "***");
        assert_eq!(c.password.expose(), "hunter2");
    }

    #[tokio::test]
    async fn static_credentials_pick_longest_prefix() {
        let p = StaticCredentials::new()
            .with(CredentialKind::Git, "https://git.example.com/", "a", "1")
            .with(
                CredentialKind::Git,
                "https://git.example.com/team/",
                "b",
                "2",
            )
            .with(
                CredentialKind::Image,
                "https://git.example.com/team/",
                "c",
                "3",
            );
        let c = p
            .credentials(CredentialKind::Git, "https://git.example.com/team/repo.git")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "b");
        assert!(
            p.credentials(CredentialKind::Helm, "https://git.example.com/")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn credential_table_exact_before_patterns_in_order() {
        let t = CredentialTable::from_yaml_str(
            "c.yaml",
            r#"
- {type: git, repoURLPattern: 'example\.com', username: first, password: p1}
- {type: git, repoURLPattern: '^https://git\.example\.com/team/', username: second, password: p2}
- {type: git, repoURL: 'https://git.example.com/team/app.git', username: exact, password: p3}
- {type: image, repoURL: 'git.example.com/team/app', repoURLIsRegex: true, username: img, password: p4}
- {type: helm, repoURL: 'https://charts.example.com/', username: helm, password: p5}
"#,
        )
        .unwrap();
        let user = |k, u: &str| t.lookup(k, u).map(|c| c.username.clone());
        // Exact (normalised: no .git, case) wins over earlier patterns.
        assert_eq!(
            user(CredentialKind::Git, "https://Git.example.com/team/app").as_deref(),
            Some("exact")
        );
        // Patterns in order: the first matching one.
        assert_eq!(
            user(
                CredentialKind::Git,
                "https://git.example.com/team/other.git"
            )
            .as_deref(),
            Some("first")
        );
        assert_eq!(user(CredentialKind::Git, "https://elsewhere/x"), None);
        assert_eq!(
            user(CredentialKind::Image, "git.example.com/team/app").as_deref(),
            Some("img")
        );
        assert_eq!(
            user(CredentialKind::Helm, "https://charts.example.com").as_deref(),
            Some("helm")
        );
        // OCI charts fall back to image entries.
        assert_eq!(
            user(CredentialKind::Helm, "oci://git.example.com/team/app").as_deref(),
            Some("img")
        );
        assert!(!format!("{t:?}").contains("p3"));
    }

    #[test]
    fn credential_table_errors_name_the_entry() {
        let e = CredentialTable::from_yaml_str(
            "c.yaml",
            "- {type: git, repoURLPattern: '(', password: x}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.yaml: entry 1: invalid repoURLPattern"),
            "{e}"
        );
        let e = CredentialTable::from_yaml_str("c.yaml", "- {type: svn, repoURL: x, password: y}")
            .unwrap_err();
        assert!(e.to_string().contains("unknown type \"svn\""), "{e}");
        let e = CredentialTable::from_yaml_str("c.yaml", "- {type: git, repoURL: x}").unwrap_err();
        assert!(e.to_string().contains("needs a password"), "{e}");
        let e = CredentialTable::from_yaml_str("c.yaml", "- {type: git, url: x, password: y}")
            .unwrap_err();
        assert!(e.to_string().contains("c.yaml"), "{e}");
        assert!(!e.to_string().contains("password: y"));
    }
}
