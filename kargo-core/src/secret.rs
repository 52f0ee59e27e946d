//! Secrets and credentials, supplied by the embedder.
//!
//! Values are wrapped in [`Redacted`], whose `Debug` and `Display` print `***`, so a secret
//! cannot reach a log line or an error message by accident.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

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

/// Named secrets of a project (Kargo's `secret(name)` returns one as a string map).
pub trait SecretStore: Send + Sync {
    /// The secret called `name`, or `None` when there is none.
    fn secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>>;
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
}
