//! A small reader of Docker's `config.json` (`auths` only).
//!
//! Supported: `auths.<registry>.auth` (base64 of `user:password`) and
//! `auths.<registry>.username` / `password`. Registry keys may be written `host[:port]`,
//! `https://host[:port]` or `https://host[:port]/v1/`; Docker Hub's key
//! `https://index.docker.io/v1/` serves `docker.io`, `index.docker.io` and
//! `registry-1.docker.io`. Credential helpers (`credsStore`, `credHelpers`) and identity
//! tokens are NOT supported: they are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kargo_core::secret::Credentials;
use serde::Deserialize;

/// Why a Docker config could not be read. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The file could not be read.
    #[error("cannot read Docker config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid Docker config.
    #[error("invalid Docker config {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (positions only, never values).
        reason: String,
    },
}

/// Where [`super::ImageSource`] looks for a Docker `config.json` when the discovery
/// context has no credentials for a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DockerConfigLocation {
    /// Do not read a Docker config (the default).
    #[default]
    None,
    /// This file; a missing file means no credentials.
    Path(PathBuf),
}

impl DockerConfigLocation {
    /// The file this location names, if any.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::None => None,
            Self::Path(p) => Some(p.clone()),
        }
    }

    /// Where the Docker CLI looks: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`, given the values of those two variables (the library
    /// never reads the environment itself: a front end passes them). `None` when neither
    /// is set.
    pub fn docker_cli(
        docker_config: Option<std::ffi::OsString>,
        home: Option<std::ffi::OsString>,
    ) -> Self {
        match (
            docker_config.filter(|d| !d.is_empty()),
            home.filter(|h| !h.is_empty()),
        ) {
            (Some(dir), _) => Self::Path(PathBuf::from(dir).join("config.json")),
            (None, Some(home)) => {
                Self::Path(PathBuf::from(home).join(".docker").join("config.json"))
            }
            (None, None) => Self::None,
        }
    }

    /// Reads the config this location names; `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<DockerConfig>, DockerConfigError> {
        match self.path() {
            Some(p) if p.exists() => DockerConfig::load(&p).map(Some),
            _ => Ok(None),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The `auths` of a Docker `config.json`.
#[derive(Clone, Default)]
pub struct DockerConfig {
    /// Normalised registry host → credentials.
    auths: BTreeMap<String, Credentials>,
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerConfig")
            .field("registries", &self.auths.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DockerConfig {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, DockerConfigError> {
        let bytes = std::fs::read(path).map_err(|source| DockerConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes).map_err(|reason| DockerConfigError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses the JSON text of a config. Entries whose `auth` is not base64 of
    /// `user:password` are an error; entries with neither `auth` nor a username/password
    /// pair are skipped.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_slice(json).map_err(|e| {
            // serde_json's messages carry positions, not the offending values.
            format!(
                "line {} column {}: {:?}",
                e.line(),
                e.column(),
                e.classify()
            )
        })?;
        let mut auths = BTreeMap::new();
        for (key, entry) in raw.auths {
            let host = normalize_host(&key);
            let creds = match (&entry.auth, &entry.username, &entry.password) {
                (Some(a), _, _) if !a.trim().is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(a.trim())
                        .map_err(|_| format!("auths.{key}.auth is not valid base64"))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                    let (user, pass) = text
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                    Credentials::basic(user, pass)
                }
                (_, Some(u), Some(p)) => Credentials::basic(u.clone(), p.clone()),
                _ => continue,
            };
            auths.insert(host, creds);
        }
        Ok(Self { auths })
    }

    /// Credentials for `registry` (`host[:port]`), if the config has some.
    pub fn credentials_for(&self, registry: &str) -> Option<Credentials> {
        self.auths.get(&normalize_host(registry)).cloned()
    }

    /// The registries the config has credentials for (normalised hosts).
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.auths.keys().map(String::as_str)
    }
}

/// `https://host:port/v1/` → `host:port`; Docker Hub's names → `docker.io`; lower case.
fn normalize_host(key: &str) -> String {
    let k = key.trim();
    let k = k.split_once("://").map_or(k, |(_, rest)| rest);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_username_password() {
        let cfg = DockerConfig::parse(
            br#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
                "127.0.0.1:5000":{"username":"alice","password":"s3cret"},
                "http://Registry.Example.com/v2/":{"auth":"Ym9iOnB3"},
                "empty.example.com":{}
            },"credsStore":"desktop"}"#,
        )
        .unwrap();
        let hub = cfg.credentials_for("registry-1.docker.io").unwrap();
        assert_eq!(hub.username, "user");
        assert_eq!(hub.password.expose(), "pa:ss");
        let local = cfg.credentials_for("127.0.0.1:5000").unwrap();
        assert_eq!(local.username, "alice");
        assert_eq!(local.password.expose(), "s3cret");
        assert_eq!(
            cfg.credentials_for("registry.example.com")
                .unwrap()
                .username,
            "bob"
        );
        assert!(cfg.credentials_for("empty.example.com").is_none());
        assert!(cfg.credentials_for("127.0.0.1:5001").is_none());
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("pa:ss"), "{dbg}");
    }

    #[test]
    fn bad_auth_is_an_error_without_the_value() {
        let e = DockerConfig::parse(br#"{"auths":{"h":{"auth":"!!notbase64"}}}"#)
            .err()
            .unwrap();
        assert!(e.contains("auths.h.auth"), "{e}");
        assert!(!e.contains("notbase64"), "{e}");
        let e = DockerConfig::parse(br#"{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}"#)
            .err()
            .unwrap();
        assert!(e.contains("user:password"), "{e}");
        let e = DockerConfig::parse(br#"{"auths":{"h":{"auth":"c2VjcmV0"}} "#)
            .err()
            .unwrap();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn locations() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let loc = DockerConfigLocation::Path(p.clone());
        assert!(loc.load().unwrap().is_none(), "a missing file is no config");
        std::fs::write(&p, br#"{"auths":{"r.example":{"auth":"dTpw"}}}"#).unwrap();
        let cfg = loc.load().unwrap().unwrap();
        assert_eq!(cfg.registries().collect::<Vec<_>>(), ["r.example"]);
        assert!(DockerConfigLocation::None.load().unwrap().is_none());
    }
}
