//! The git steps: `git-clone`, `git-clear`, `git-commit`, `git-tag` and `git-push`, and
//! the pull-request steps of [`pr`].
//!
//! They share one [`GitConfig`] (the mirror cache) and, per promotion, a [`GitCheckouts`]
//! table in the step extensions: `git-clone` makes a lazy [`Checkout`] for each configured
//! path and mounts it in the promotion's work directory, so later steps that resolve a
//! path inside it through `ctx.path()` get exactly the files they ask for; the other git
//! steps find the checkout by its path.
//!
//! Credentials are asked from the promotion's credential provider
//! ([`CredentialKind::Git`]) before every network operation; every git call runs on a
//! blocking thread.

mod clear;
mod clone;
mod commit;
#[cfg(feature = "pull-requests")]
mod github_api;
#[cfg(feature = "pull-requests")]
mod github_push;
#[cfg(feature = "pull-requests")]
pub mod pr;
mod push;
mod tag;

pub use clear::{GitClear, GitClearConfig};
pub use clone::{CheckoutConfig, GitClone, GitCloneConfig};
pub use commit::{GitCommit, GitCommitConfig};
#[cfg(feature = "pull-requests")]
pub use github_push::{GitHubPush, GitHubPushConfig, GitHubPushOptions, STAGING_REF_PREFIX};
#[cfg(feature = "pull-requests")]
pub use pr::{GitMergePr, GitOpenPr, GitWaitForPr, PullRequestOptions};
pub use push::{GitProvider, GitPush, GitPushConfig};
pub use tag::{GitTag, GitTagConfig};

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use kargo_core::secret::CredentialKind;
use kargo_core::step::{StepContext, StepError, StepErrorKind};
use kargo_core::workdir::Materializer;
use kargo_git::{
    Checkout, CredentialSource, Git, GitAuth, GitConfig, GitError, GitErrorKind, Signature,
    StaticAuth,
};
use serde::Deserialize;

/// The default author of commits made by the git steps.
pub const DEFAULT_AUTHOR_NAME: &str = "Kargo";

/// The default author e-mail of commits made by the git steps.
pub const DEFAULT_AUTHOR_EMAIL: &str = "no-reply@kargo.io";

/// The `author` block of `git-clone` and `git-commit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorConfig {
    /// The author's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The author's e-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// A GPG signing key: not supported yet (refused).
    #[serde(default)]
    pub signing_key: Option<String>,
}

impl AuthorConfig {
    /// The signature this block describes; `field` names the block in errors
    /// (e.g. `author`).
    fn signature(&self, field: &str) -> Result<Signature, StepError> {
        if self.signing_key.as_deref().is_some_and(|k| !k.is_empty()) {
            return Err(StepError::invalid_config(
                format!("{field}.signingKey"),
                "commit signing is not supported yet",
            ));
        }
        let name = non_empty(self.name.as_deref());
        let email = non_empty(self.email.as_deref());
        match (name, email) {
            (Some(n), Some(e)) => Ok(Signature::new(n, e)),
            (None, _) => Err(StepError::invalid_config(
                format!("{field}.name"),
                "the author's name is required",
            )),
            (_, None) => Err(StepError::invalid_config(
                format!("{field}.email"),
                "the author's e-mail is required",
            )),
        }
    }
}

/// What `git-clone` recorded about one checkout, for the later git steps.
#[derive(Clone)]
pub struct CheckoutInfo {
    /// The lazy work tree.
    pub checkout: Checkout,
    /// The remote it was cloned from (may hold credentials: do not log; see
    /// [`kargo_git::redact_url`]).
    pub repo_url: String,
    /// The author (and committer) of commits made in it.
    pub author: Signature,
    auth: Arc<SharedAuth>,
}

impl std::fmt::Debug for CheckoutInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutInfo")
            .field("root", &self.checkout.root())
            .field("repo_url", &display_url(&self.repo_url))
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

/// The git checkouts of one promotion, by absolute path, stored in the step extensions
/// (`ctx.extensions().get_or_insert_with(GitCheckouts::default)`).
#[derive(Debug, Default)]
pub struct GitCheckouts {
    map: Mutex<HashMap<PathBuf, CheckoutInfo>>,
}

impl GitCheckouts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, CheckoutInfo>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The checkout at `path` (absolute), if `git-clone` made one there.
    pub fn get(&self, path: &Path) -> Option<CheckoutInfo> {
        self.lock().get(path).cloned()
    }

    /// The paths of every checkout, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    fn insert(&self, path: PathBuf, info: CheckoutInfo) {
        self.lock().insert(path, info);
    }
}

/// Credentials for one remote that can be refreshed before each operation (a checkout
/// keeps the [`Git`] it was made with, so its credentials must be replaceable in place).
#[derive(Debug)]
struct SharedAuth {
    url: String,
    table: RwLock<StaticAuth>,
    /// Strings to scrub from messages (passwords), kept beside the table.
    secrets: RwLock<Vec<String>>,
}

impl SharedAuth {
    fn new(url: &str, auth: Option<GitAuth>) -> Self {
        let s = Self {
            url: url.to_owned(),
            table: RwLock::new(StaticAuth::new()),
            secrets: RwLock::new(Vec::new()),
        };
        s.set(auth);
        s
    }

    fn set(&self, auth: Option<GitAuth>) {
        let mut secrets = Vec::new();
        let table = match auth {
            Some(a) => {
                match &a {
                    GitAuth::Basic { password, .. } => secrets.push(password.expose().to_owned()),
                    GitAuth::SshKey { private_key, .. } => {
                        secrets.push(private_key.expose().to_owned());
                    }
                }
                StaticAuth::new().with(self.url.clone(), a)
            }
            None => StaticAuth::new(),
        };
        secrets.retain(|s| !s.is_empty());
        if let Ok(mut t) = self.table.write() {
            *t = table;
        }
        if let Ok(mut s) = self.secrets.write() {
            *s = secrets;
        }
    }

    /// `text` without the secrets and with the remote's URL shown by [`display_url`].
    fn scrub(&self, text: &str) -> String {
        let shown = display_url(&self.url);
        let mut out = text.replace(&self.url, &shown);
        if let Ok(secrets) = self.secrets.read() {
            for s in secrets.iter() {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

impl CredentialSource for SharedAuth {
    fn credentials(&self, url: &str) -> Option<GitAuth> {
        self.table.read().ok().and_then(|t| t.credentials(url))
    }
}

/// A URL for messages: no password, and for http(s) no user name either (tokens are often
/// given as the user name, e.g. `https://<token>@github.com/...`); kargo-git's redaction.
pub(crate) fn display_url(url: &str) -> String {
    kargo_git::redact_url(url)
}

/// Asks the promotion's credential provider for git credentials for `url`.
async fn lookup_auth(ctx: &StepContext, url: &str) -> Result<Option<GitAuth>, StepError> {
    let creds = ctx
        .credentials()
        .credentials(CredentialKind::Git, url)
        .await
        .map_err(|e| StepError::retryable(e.to_string()))?;
    Ok(creds.and_then(kargo_sources::git::to_git_auth))
}

/// A [`Git`] whose credentials for `url` come from `auth`.
fn client(config: &GitConfig, auth: &Arc<SharedAuth>) -> Git {
    Git::new(config.clone(), auth.clone())
}

/// Turns a [`GitError`] into a [`StepError`] of the matching kind, without secrets.
fn map_git_error(e: &GitError, auth: &SharedAuth) -> StepError {
    let text = auth.scrub(&e.to_string());
    match e.kind {
        GitErrorKind::Unauthorized => StepError::new(
            StepErrorKind::Unauthorized,
            format!("the git server refused the credentials: {text}"),
        ),
        GitErrorKind::Conflict => {
            let files = if e.conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    "merge conflict in {}: ",
                    auth.scrub(&e.conflicts.join(", "))
                )
            };
            StepError::failed(format!("{files}{text}"))
        }
        GitErrorKind::NonFastForward => StepError::terminal(text),
        GitErrorKind::Interrupted => StepError::new(StepErrorKind::Cancelled, text),
        GitErrorKind::Network => StepError::retryable(text),
        GitErrorKind::Invalid => StepError::new(StepErrorKind::InvalidConfig, text),
        GitErrorKind::NotFound | GitErrorKind::Io | GitErrorKind::Other => {
            StepError::terminal(text)
        }
    }
}

/// Runs a blocking git operation on the blocking thread pool.
async fn blocking<T: Send + 'static>(
    auth: &SharedAuth,
    f: impl FnOnce() -> kargo_git::Result<T> + Send + 'static,
) -> Result<T, StepError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(map_git_error(&e, auth)),
        Err(e) => Err(StepError::terminal(format!(
            "the git operation did not finish: {e}"
        ))),
    }
}

/// Like [`blocking`], but the promotion's cancellation interrupts the git client (fetches
/// stop, push retry loops give up before their next attempt or during their backoff).
async fn cancellable<T: Send + 'static>(
    ctx: &StepContext,
    git: &Git,
    auth: &SharedAuth,
    f: impl FnOnce() -> kargo_git::Result<T> + Send + 'static,
) -> Result<T, StepError> {
    let flag = git.interrupt_flag();
    let cancel = ctx.cancellation().clone();
    let watcher = tokio::spawn(async move {
        cancel.cancelled().await;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let result = blocking(auth, f).await;
    watcher.abort();
    result
}

/// The absolute path a configured step path names, folded lexically (no file-system
/// access, so resolving a checkout's root does not materialise the whole checkout).
fn lexical_path(ctx: &StepContext, field: &str, path: &str) -> Result<PathBuf, StepError> {
    if path.is_empty() {
        return Err(StepError::invalid_config(field, "the path is empty"));
    }
    if path.contains('\0') {
        return Err(StepError::invalid_config(
            field,
            format!("path {path:?} contains a NUL byte"),
        ));
    }
    let p = Path::new(path);
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(StepError::invalid_config(
                        field,
                        format!("path {path:?} leads outside the work directory"),
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(StepError::invalid_config(
                    field,
                    format!(
                        "path {path:?} is absolute; expected a path relative to the work directory"
                    ),
                ));
            }
        }
    }
    let mut out = ctx.work_dir().root().to_path_buf();
    out.extend(parts);
    Ok(out)
}

/// The checkout `git-clone` made at the configured `path`.
fn find_checkout(ctx: &StepContext, path: &str) -> Result<CheckoutInfo, StepError> {
    let key = lexical_path(ctx, "path", path)?;
    ctx.extensions()
        .get::<GitCheckouts>()
        .and_then(|c| c.get(&key))
        .ok_or_else(|| {
            StepError::invalid_config(
                "path",
                format!("{path:?} is not a git checkout of this promotion (run git-clone first)"),
            )
        })
}

/// Refreshes a checkout's credentials from the provider before a network operation.
async fn refresh_auth(ctx: &StepContext, info: &CheckoutInfo) -> Result<(), StepError> {
    let auth = lookup_auth(ctx, &info.repo_url).await?;
    info.auth.set(auth);
    Ok(())
}

/// Puts the files of a lazy checkout on disk when a step resolves them.
struct CheckoutMaterializer(Checkout);

impl Materializer for CheckoutMaterializer {
    fn materialize(&self, path: &Path) -> std::io::Result<()> {
        self.0.materialize(path)
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// The configured default identity (ClusterConfig's `gitClient`), else Kargo's.
fn default_author(config: &kargo_git::GitConfig) -> Signature {
    config
        .default_author
        .clone()
        .unwrap_or_else(|| Signature::new(DEFAULT_AUTHOR_NAME, DEFAULT_AUTHOR_EMAIL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_core::secret::Credentials;
    use kargo_git::Secret;

    #[test]
    fn scrub_removes_passwords_and_user_info() {
        let auth = SharedAuth::new(
            "https://u:hunter2@git.example.com/r.git",
            Some(GitAuth::Basic {
                username: "u".into(),
                password: Secret::new("s3cret"),
            }),
        );
        let s = auth.scrub("push https://u:hunter2@git.example.com/r.git: s3cret refused");
        assert!(!s.contains("hunter2") && !s.contains("s3cret"), "{s}");
        let e = GitError::new(GitErrorKind::Unauthorized, "push", "bad password s3cret");
        let se = map_git_error(&e, &auth);
        assert_eq!(se.kind, StepErrorKind::Unauthorized);
        assert!(!se.to_string().contains("s3cret"));
    }

    #[test]
    fn tokens_in_user_names_are_hidden() {
        let url = "https://ghp_T0ken@github.com/acme/gitops.git";
        assert_eq!(display_url(url), "https://github.com/acme/gitops.git");
        assert_eq!(display_url("ssh://git@h/x.git"), "ssh://git@h/x.git");
        let auth = SharedAuth::new(url, None);
        let e = GitError::new(
            GitErrorKind::NotFound,
            format!("fetch {}", kargo_git::redact_url(url)),
            format!("repository '{url}' not found"),
        );
        let msg = map_git_error(&e, &auth).to_string();
        assert!(!msg.contains("ghp_T0ken"), "{msg}");
    }

    #[test]
    fn error_kinds_map() {
        let auth = SharedAuth::new("file:///x", None);
        let kind = |k| map_git_error(&GitError::new(k, "op", "m"), &auth).kind;
        assert_eq!(kind(GitErrorKind::Conflict), StepErrorKind::Failed);
        assert_eq!(kind(GitErrorKind::NonFastForward), StepErrorKind::Terminal);
        assert_eq!(kind(GitErrorKind::Network), StepErrorKind::Retryable);
        assert_eq!(kind(GitErrorKind::Invalid), StepErrorKind::InvalidConfig);
        assert_eq!(kind(GitErrorKind::Io), StepErrorKind::Terminal);
        let mut e = GitError::new(GitErrorKind::Conflict, "rebase", "same content");
        e.conflicts = vec!["apps/a.yaml".into()];
        assert!(
            map_git_error(&e, &auth)
                .to_string()
                .contains("merge conflict in apps/a.yaml")
        );
    }

    #[test]
    fn credentials_convert() {
        assert_eq!(
            kargo_sources::git::to_git_auth(Credentials::default()),
            None
        );
        assert!(matches!(
            kargo_sources::git::to_git_auth(Credentials::basic("u", "p")),
            Some(GitAuth::Basic { .. })
        ));
        assert!(matches!(
            kargo_sources::git::to_git_auth(Credentials::ssh_key("KEY", None)),
            Some(GitAuth::SshKey { .. })
        ));
    }
}
