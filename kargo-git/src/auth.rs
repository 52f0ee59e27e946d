//! Credentials for git remotes, supplied by the embedder.

use std::fmt;
use std::sync::Arc;

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret value; only for handing it to the party that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to authenticate to a remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitAuth {
    /// HTTP(S) basic auth: a user name and a password or token.
    Basic {
        /// The user name (`x-access-token`, `oauth2`, ... for token schemes).
        username: String,
        /// The password or token.
        password: Secret,
    },
    /// SSH with a private key (OpenSSH format).
    SshKey {
        /// The private key's text.
        private_key: Secret,
        /// `known_hosts` lines for the server; `None` accepts any host key (logged as a
        /// warning).
        known_hosts: Option<String>,
    },
}

/// Supplies credentials for a repository URL. Embedders implement this over their secret
/// store; [`NoAuth`] and [`StaticAuth`] cover tests and simple setups.
pub trait CredentialSource: Send + Sync {
    /// Credentials for `url`, or `None` for anonymous access.
    fn credentials(&self, url: &str) -> Option<GitAuth>;
}

/// Anonymous access everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

impl CredentialSource for NoAuth {
    fn credentials(&self, _url: &str) -> Option<GitAuth> {
        None
    }
}

/// Fixed credentials by URL prefix (the longest matching prefix wins).
#[derive(Debug, Clone, Default)]
pub struct StaticAuth {
    entries: Vec<(String, GitAuth)>,
}

impl StaticAuth {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds credentials for URLs starting with `prefix`.
    pub fn with(mut self, prefix: impl Into<String>, auth: GitAuth) -> Self {
        self.entries.push((prefix.into(), auth));
        self
    }
}

impl CredentialSource for StaticAuth {
    fn credentials(&self, url: &str) -> Option<GitAuth> {
        self.entries
            .iter()
            .filter(|(p, _)| url.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, a)| a.clone())
    }
}

impl<T: CredentialSource + ?Sized> CredentialSource for Arc<T> {
    fn credentials(&self, url: &str) -> Option<GitAuth> {
        (**self).credentials(url)
    }
}

/// Removes credentials from a URL for logs and errors: all user info of `http(s)` URLs
/// (a token is often given as the user name), the password of others (`ssh://git@host`
/// keeps its user, which is not a secret).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let host_and_path = &rest[at + 1..];
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
                format!("{scheme}://{host_and_path}")
            } else {
                let user = authority[..at].split(':').next().unwrap_or("");
                format!("{scheme}://{user}@{host_and_path}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(redact_url("https://u:p@h/x.git"), "https://h/x.git");
        assert_eq!(
            redact_url("https://ghp_token@github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(redact_url("ssh://git:pw@h/x"), "ssh://git@h/x");
        assert_eq!(redact_url("https://h/x.git"), "https://h/x.git");
        assert_eq!(redact_url("ssh://git@h:22/x"), "ssh://git@h:22/x");
        assert_eq!(redact_url("file:///tmp/x"), "file:///tmp/x");
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
