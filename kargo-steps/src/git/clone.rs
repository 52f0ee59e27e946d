//! `git-clone`: lazy checkouts of branches, tags or commits, mounted in the work directory.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use kargo_git::{CheckoutOptions, CheckoutTarget, GitConfig, RemoteRef};
use serde::Deserialize;

use super::{
    AuthorConfig, CheckoutInfo, CheckoutMaterializer, GitCheckouts, SharedAuth, blocking,
    cancellable, client, default_author, lexical_path, lookup_auth, non_empty,
};

/// Kargo's `git-clone` step: checks out one or more branches, tags or commits of a
/// repository into the work directory.
///
/// Checkouts are lazy: nothing but the `sparse` directories is written up front, and a
/// later step that resolves a path inside a checkout (through `ctx.path()`) gets that file
/// or directory written on demand. Output: `commits`, a map from each checkout's `as` (or
/// its `path`) to the commit checked out (empty for a new orphan branch).
#[derive(Debug, Clone)]
pub struct GitClone {
    config: Arc<GitConfig>,
}

impl GitClone {
    /// The step, with mirrors in `config`'s cache.
    pub fn new(config: Arc<GitConfig>) -> Self {
        Self { config }
    }
}

/// Configuration of [`GitClone`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitCloneConfig {
    /// The repository URL.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// What to check out where (at least one).
    pub checkout: Vec<CheckoutConfig>,
    /// The author of commits made in these checkouts (default `Kargo <no-reply@kargo.io>`).
    #[serde(default)]
    pub author: Option<AuthorConfig>,
    /// Accept any TLS certificate of an `https://` repository (a self-signed one):
    /// fetches and later pushes through this clone skip certificate verification.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// Accepted for compatibility; submodules are not checked out.
    #[serde(default)]
    pub recurse_submodules: bool,
    /// Accepted for compatibility: a new mirror is blobless anyway (and shallow, see
    /// `GitConfig::depth` and `GitConfig::blobless`), and checkouts are lazy.
    #[serde(default)]
    pub blobless: bool,
}

/// One entry of [`GitCloneConfig::checkout`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutConfig {
    /// Where to check out, relative to the work directory.
    pub path: String,
    /// A branch (exclusive with `commit` and `tag`; none of them: the default branch).
    #[serde(default)]
    pub branch: Option<String>,
    /// A commit ID.
    #[serde(default)]
    pub commit: Option<String>,
    /// A tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Start an empty orphan branch when `branch` does not exist.
    #[serde(default)]
    pub create: bool,
    /// The key of this checkout in the `commits` output (default: `path`).
    #[serde(default, rename = "as")]
    pub alias: Option<String>,
    /// Directories written up front (relative, no `..`, no globs).
    #[serde(default)]
    pub sparse: Vec<String>,
}

/// What a validated checkout entry asks for.
enum Wanted {
    Target(CheckoutTarget),
    DefaultBranch,
}

fn validate_sparse(i: usize, j: usize, dir: &str) -> Result<(), StepError> {
    let field = format!("checkout[{i}].sparse[{j}]");
    let bad = |why: &str| Err(StepError::invalid_config(&field, format!("{dir:?}: {why}")));
    if dir.trim_matches('/').is_empty() {
        return bad("the directory is empty");
    }
    if dir.starts_with('/') {
        return bad("expected a path relative to the repository root");
    }
    if dir.contains(['*', '?', '[', ']', '\\', '\0']) {
        return bad("glob patterns are not supported");
    }
    if dir.split('/').any(|c| c == ".." || c == ".git") {
        return bad("`..` and `.git` are not allowed");
    }
    Ok(())
}

fn validate(cfg: &GitCloneConfig) -> Result<(Vec<Wanted>, Vec<String>), StepError> {
    if cfg.repo_url.trim().is_empty() {
        return Err(StepError::invalid_config("repoURL", "the URL is empty"));
    }
    if cfg.checkout.is_empty() {
        return Err(StepError::invalid_config(
            "checkout",
            "at least one checkout is required",
        ));
    }
    let mut wanted = Vec::new();
    let mut keys = Vec::new();
    let mut seen_keys = BTreeSet::new();
    let mut seen_paths = BTreeSet::new();
    for (i, co) in cfg.checkout.iter().enumerate() {
        if co.path.is_empty() {
            return Err(StepError::invalid_config(
                format!("checkout[{i}].path"),
                "the path is empty",
            ));
        }
        let branch = non_empty(co.branch.as_deref());
        let commit = non_empty(co.commit.as_deref());
        let tag = non_empty(co.tag.as_deref());
        let w = match (branch, commit, tag) {
            (None, None, None) => Wanted::DefaultBranch,
            (Some(b), None, None) => Wanted::Target(CheckoutTarget::Branch(b.to_owned())),
            (None, Some(c), None) => Wanted::Target(CheckoutTarget::Commit(c.to_owned())),
            (None, None, Some(t)) => Wanted::Target(CheckoutTarget::Tag(t.to_owned())),
            _ => {
                return Err(StepError::invalid_config(
                    format!("checkout[{i}]"),
                    "branch, commit and tag are mutually exclusive",
                ));
            }
        };
        for (j, dir) in co.sparse.iter().enumerate() {
            validate_sparse(i, j, dir)?;
        }
        let key = non_empty(co.alias.as_deref())
            .unwrap_or(co.path.as_str())
            .to_owned();
        if !seen_keys.insert(key.clone()) {
            return Err(StepError::invalid_config(
                format!("checkout[{i}]"),
                format!("two checkouts have the output key {key:?} (set distinct `as` values)"),
            ));
        }
        if !seen_paths.insert(co.path.trim_start_matches("./").trim_end_matches('/')) {
            return Err(StepError::invalid_config(
                format!("checkout[{i}].path"),
                format!("{:?} is used by two checkouts", co.path),
            ));
        }
        wanted.push(w);
        keys.push(key);
    }
    Ok((wanted, keys))
}

/// The branch `HEAD` of a remote points to: the branch whose tip is `HEAD`'s commit
/// (`main`, then `master`, then the first by name), else `main`/`master`/the only branch.
pub(crate) fn default_branch(refs: &[RemoteRef]) -> Option<String> {
    // The symbolic target, when the server advertises it (protocol v2 does).
    if let Some(b) = refs
        .iter()
        .find(|r| r.name == "HEAD")
        .and_then(|r| r.symref_target.as_deref())
        .and_then(|t| t.strip_prefix("refs/heads/"))
    {
        return Some(b.to_owned());
    }
    let head = refs
        .iter()
        .find(|r| r.name == "HEAD")
        .and_then(|r| r.target);
    let branches: Vec<(&str, Option<kargo_git::ObjectId>)> = refs
        .iter()
        .filter_map(|r| r.name.strip_prefix("refs/heads/").map(|b| (b, r.target)))
        .collect();
    let pick = |candidates: Vec<&str>| -> Option<String> {
        for preferred in ["main", "master"] {
            if candidates.contains(&preferred) {
                return Some(preferred.to_owned());
            }
        }
        let mut c = candidates;
        c.sort_unstable();
        c.first().map(|s| (*s).to_owned())
    };
    if let Some(h) = head {
        let matching: Vec<&str> = branches
            .iter()
            .filter(|(_, t)| *t == Some(h))
            .map(|(b, _)| *b)
            .collect();
        if !matching.is_empty() {
            return pick(matching);
        }
    }
    let names: Vec<&str> = branches.iter().map(|(b, _)| *b).collect();
    if names.contains(&"main") || names.contains(&"master") || names.len() == 1 {
        return pick(names);
    }
    None
}

#[async_trait]
impl Step for GitClone {
    const KIND: &'static str = "git-clone";
    type Config = GitCloneConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: GitCloneConfig) -> Result<StepOutcome, StepError> {
        let (wanted, keys) = validate(&cfg)?;
        let author = match &cfg.author {
            Some(a) => a.signature("author")?,
            None => default_author(&self.config),
        };
        if cfg.recurse_submodules {
            tracing::warn!("git-clone: recurseSubmodules is not supported; submodules are skipped");
        }
        let url = cfg.repo_url.clone();
        let auth = Arc::new(SharedAuth::new(&url, lookup_auth(ctx, &url).await?));
        let git =
            client(&self.config, &auth).with_insecure_skip_tls_verify(cfg.insecure_skip_tls_verify);
        let checkouts = ctx.extensions().get_or_insert_with(GitCheckouts::default);
        let mut default_branch_name: Option<String> = None;
        let mut commits = serde_json::Map::new();

        for (i, (co, want)) in cfg.checkout.iter().zip(wanted).enumerate() {
            let field = format!("checkout[{i}].path");
            let key = lexical_path(ctx, &field, &co.path)?;
            // A retried step finds the checkouts its earlier attempt made.
            if let Some(existing) = checkouts.get(&key) {
                if existing.repo_url != url {
                    return Err(StepError::invalid_config(
                        field,
                        format!("{:?} is already a checkout of another repository", co.path),
                    ));
                }
                let head = existing.checkout.head().map(|h| h.to_string());
                commits.insert(keys[i].clone(), head.unwrap_or_default().into());
                continue;
            }
            let dest = ctx.path(&co.path).map_err(|e| e.context(field.clone()))?;
            let target = match want {
                Wanted::Target(t) => t,
                Wanted::DefaultBranch => {
                    let name = match &default_branch_name {
                        Some(n) => n.clone(),
                        None => {
                            let g = git.clone();
                            let u = url.clone();
                            let refs = blocking(&auth, move || g.ls_remote(&u)).await?;
                            let name = match default_branch(&refs) {
                                Some(n) => n,
                                None if co.create || refs.is_empty() => "main".to_owned(),
                                None => {
                                    return Err(StepError::terminal(format!(
                                        "cannot tell the default branch of {}: name a branch",
                                        super::display_url(&url)
                                    )));
                                }
                            };
                            tracing::debug!(branch = %name, "git-clone: default branch");
                            default_branch_name = Some(name.clone());
                            name
                        }
                    };
                    CheckoutTarget::Branch(name)
                }
            };
            let options = CheckoutOptions {
                create: co.create,
                sparse: co.sparse.clone(),
                eager: false,
            };
            let g = git.clone();
            let u = url.clone();
            let d = dest.clone();
            let checkout = cancellable(ctx, &git, &auth, move || {
                let mirror = g.mirror(&u)?;
                mirror.checkout(&target, &d, &options)
            })
            .await
            .map_err(|e| e.context(format!("checkout[{i}]")))?;
            ctx.work_dir()
                .mount(&dest, Arc::new(CheckoutMaterializer(checkout.clone())));
            let head = checkout.head().map(|h| h.to_string()).unwrap_or_default();
            tracing::info!(path = %co.path, commit = %head, "git-clone: checked out");
            checkouts.insert(
                key,
                CheckoutInfo {
                    checkout,
                    repo_url: url.clone(),
                    author: author.clone(),
                    auth: auth.clone(),
                },
            );
            commits.insert(keys[i].clone(), head.into());
        }
        Ok(StepOutcome::succeeded().with_output("commits", serde_json::Value::Object(commits)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_git::ObjectId;

    fn id(n: u8) -> Option<ObjectId> {
        Some(ObjectId::from_bytes_or_panic(&[n; 20]))
    }

    fn r(name: &str, n: u8) -> RemoteRef {
        RemoteRef {
            name: name.into(),
            target: id(n),
            peeled: None,
            symref_target: None,
        }
    }

    #[test]
    fn default_branch_follows_head() {
        let refs = vec![
            r("HEAD", 2),
            r("refs/heads/main", 1),
            r("refs/heads/trunk", 2),
        ];
        assert_eq!(default_branch(&refs).as_deref(), Some("trunk"));
        let refs = vec![
            r("HEAD", 1),
            r("refs/heads/main", 1),
            r("refs/heads/dev", 1),
        ];
        assert_eq!(default_branch(&refs).as_deref(), Some("main"));
        let refs = vec![r("refs/heads/master", 1), r("refs/heads/x", 2)];
        assert_eq!(default_branch(&refs).as_deref(), Some("master"));
        let refs = vec![r("refs/heads/a", 1), r("refs/heads/b", 2)];
        assert_eq!(default_branch(&refs), None);
        let mut head = r("HEAD", 1);
        head.symref_target = Some("refs/heads/dev".into());
        let refs = vec![head, r("refs/heads/main", 1), r("refs/heads/dev", 1)];
        assert_eq!(default_branch(&refs).as_deref(), Some("dev"));
    }

    fn cfg(v: serde_json::Value) -> GitCloneConfig {
        kargo_core::step::decode_config(v).unwrap()
    }

    #[test]
    fn validation_names_fields() {
        let e = validate(&cfg(serde_json::json!({
            "repoURL": "file:///x", "checkout": [{"path": "a", "branch": "b", "tag": "t"}]
        })))
        .err()
        .unwrap();
        assert!(e.to_string().contains("config.checkout[0]"), "{e}");
        let e = validate(&cfg(serde_json::json!({
            "repoURL": "file:///x", "checkout": [{"path": "a", "sparse": ["apps/*"]}]
        })))
        .err()
        .unwrap();
        assert!(e.to_string().contains("checkout[0].sparse[0]"), "{e}");
        let e = validate(&cfg(serde_json::json!({
            "repoURL": "file:///x", "checkout": [{"path": "a"}, {"path": "./a/"}]
        })))
        .err()
        .unwrap();
        assert!(e.to_string().contains("checkout[1]"), "{e}");
        let e = AuthorConfig {
            name: Some("a".into()),
            email: Some("b".into()),
            signing_key: Some("KEY".into()),
        }
        .signature("author")
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.author.signingKey: commit signing is not supported yet"
        );
    }
}
