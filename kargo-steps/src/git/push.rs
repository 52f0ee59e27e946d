//! `git-push`: pushes a checkout's commits (rebasing onto remote changes) or a tag.

use std::fmt;

use async_trait::async_trait;
use kargo_core::step::{DryRun, DryRunFile, DryRunPush, Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

#[cfg(feature = "argocd")]
use std::sync::Arc;

#[cfg(feature = "argocd")]
use crate::argocd::{AppRefresher, ArgoCdOptions};

use super::{
    CheckoutInfo, blocking, cancellable, display_url, find_checkout, non_empty, refresh_auth,
};

/// Kargo's `git-push` step: pushes the commits of a checkout to its branch, to
/// `targetBranch`, or to `kargo/promotion/<promotion>` (`generateTargetBranch`, forced);
/// or pushes a tag made by `git-tag`. A push rejected because the remote branch moved
/// integrates the remote's commits and is retried (up to `maxAttempts`); how is the
/// operator's push integration policy, as in Kargo (not a step field):
/// [`GitConfig::push_integration_policy`](kargo_git::GitConfig) —
/// `AlwaysRebase` (default: our commits replayed on the new tip), `RebaseOrMerge` /
/// `RebaseOrFail` (rebase when safe: no signed or merge commit to replay; otherwise a merge
/// commit, or a failure pushing nothing), `AlwaysMerge` (a merge commit, our head as first
/// parent). Edits that overlap the remote's fail the step, naming the files, and nothing is
/// pushed.
///
/// Outputs: `branch` (branch pushes) or `tag` (tag pushes), `commit`, and `commitURL`
/// when the hosting provider is known (configured with `provider` or inferred from the
/// host name).
///
/// **Dry run** (the promotion's [`DryRun`] recorder is present): nothing is pushed and
/// nothing is asked of the network. The step records the push it would make (the
/// repository URL without credentials, the target branch, including the
/// `generateTargetBranch` name, or the tag, the commit and its message, every commit not
/// pushed yet) and, per file, the unified diff between the commit the checkout started
/// from (its upstream: the remote tip it was cloned at) and `HEAD`. It returns the same
/// outputs as a real push (`branch` or `tag`, `commit`, `commitURL`), so later steps still
/// render, with the status **`Skipped`** and a message saying it was a dry run: a
/// promotion whose only "failure" is a skipped push still ends `Succeeded`, and
/// `if: status('push') == 'Succeeded'` style conditions see that nothing was pushed. The
/// diff is against the checkout's starting point, not against a remote tip that may have
/// moved since (a real push would rebase onto it).
///
/// **Argo CD refresh** (feature `argocd`; [`GitPush::with_argocd`], which
/// [`register_builtins_with`](crate::register_builtins_with) uses with
/// [`BuiltinOptions::argocd`](crate::BuiltinOptions)): after a successful branch push,
/// when an Argo CD server is configured and [`ArgoCdOptions::refresh_after_push`] is on,
/// the Applications tracking the repository and branch get a refresh request
/// ([`AppRefresher`]), and their `namespace/name` are the extra output
/// `argocdRefreshed`. A failing Argo CD does not fail the push: it is a warning in the
/// log, and the output lists what was refreshed. A dry run only notes the refresh.
#[derive(Debug, Clone, Default)]
pub struct GitPush {
    #[cfg(feature = "argocd")]
    argocd: Option<Arc<ArgoCdOptions>>,
}

impl GitPush {
    /// The step without the Argo CD refresh.
    pub fn new() -> Self {
        Self::default()
    }

    /// The step refreshing Argo CD Applications after pushes as `options` say.
    #[cfg(feature = "argocd")]
    pub fn with_argocd(options: ArgoCdOptions) -> Self {
        Self {
            argocd: Some(Arc::new(options)),
        }
    }

    /// Asks Argo CD to refresh the Applications tracking `branch` of the checkout's
    /// repository; returns their `namespace/name`, `None` when the refresh is off.
    #[cfg(feature = "argocd")]
    async fn refresh_argocd(&self, info: &CheckoutInfo, branch: &str) -> Option<Vec<String>> {
        let refresher = match AppRefresher::new(self.argocd.as_deref()?)? {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "git-push: cannot reach Argo CD to refresh Applications");
                return Some(Vec::new());
            }
        };
        let apps = match refresher.applications().await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::warn!(error = %e, "git-push: cannot list Argo CD Applications to refresh");
                return Some(Vec::new());
            }
        };
        let default_branch = if AppRefresher::needs_default_branch(&apps, &info.repo_url) {
            let mirror = info.checkout.mirror().clone();
            match tokio::task::spawn_blocking(move || mirror.ls_remote()).await {
                Ok(Ok(refs)) => refs
                    .into_iter()
                    .find(|r| r.name == "HEAD")
                    .and_then(|r| r.symref_target),
                _ => None,
            }
        } else {
            None
        };
        let mut refreshed = Vec::new();
        for app in AppRefresher::tracking(&apps, &info.repo_url, branch, default_branch.as_deref())
        {
            match refresher.refresh(&app).await {
                Ok(()) => {
                    tracing::info!(app = %app, %branch, "git-push: asked Argo CD to refresh");
                    refreshed.push(app.to_string());
                }
                Err(e) => {
                    tracing::warn!(app = %app, error = %e, "git-push: the Argo CD refresh failed");
                }
            }
        }
        Some(refreshed)
    }
}

/// Configuration of [`GitPush`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitPushConfig {
    /// The checkout's path, relative to the work directory.
    pub path: String,
    /// The branch to push to (default: the checked-out branch).
    #[serde(default)]
    pub target_branch: Option<String>,
    /// Push to the new branch `kargo/promotion/<promotion name>` (forced).
    #[serde(default)]
    pub generate_target_branch: bool,
    /// Push this tag instead of a branch.
    #[serde(default)]
    pub tag: Option<String>,
    /// Overwrite the remote branch (or tag) instead of rebasing.
    #[serde(default, alias = "forcePush")]
    pub force: bool,
    /// Push attempts, the first included (1 to 2^31-1, default 10).
    #[serde(default)]
    pub max_attempts: Option<u64>,
    /// The hosting provider, for `commitURL`: `github`, `gitlab`, `gitea`, `bitbucket` or
    /// `azure` (default: inferred from the host).
    #[serde(default)]
    pub provider: Option<String>,
}

/// A git hosting provider, for commit URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitProvider {
    /// GitHub (`/commit/<sha>`).
    GitHub,
    /// GitLab (`/-/commit/<sha>`).
    GitLab,
    /// Gitea (`/commit/<sha>`).
    Gitea,
    /// Bitbucket (`/commits/<sha>`).
    Bitbucket,
    /// Azure DevOps (`/commit/<sha>`).
    Azure,
}

impl fmt::Display for GitProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
            Self::Azure => "azure",
        })
    }
}

impl GitProvider {
    /// Parses Kargo's provider name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "github" => Self::GitHub,
            "gitlab" => Self::GitLab,
            "gitea" => Self::Gitea,
            "bitbucket" => Self::Bitbucket,
            "azure" => Self::Azure,
            _ => return None,
        })
    }

    /// Infers the provider from a repository URL's host: `github.com` and `github.*`,
    /// `gitlab.com` and `gitlab.*`, `bitbucket.org`, `dev.azure.com` and
    /// `*.visualstudio.com`, and hosts whose name contains `gitea`.
    pub fn infer(repo_url: &str) -> Option<Self> {
        let (host, _) = split_url(repo_url)?;
        let host = host.to_ascii_lowercase();
        if host == "github.com" || host.starts_with("github.") {
            Some(Self::GitHub)
        } else if host == "gitlab.com" || host.starts_with("gitlab.") {
            Some(Self::GitLab)
        } else if host == "bitbucket.org" {
            Some(Self::Bitbucket)
        } else if host == "dev.azure.com"
            || host == "ssh.dev.azure.com"
            || host.ends_with(".visualstudio.com")
        {
            Some(Self::Azure)
        } else if host.contains("gitea") {
            Some(Self::Gitea)
        } else {
            None
        }
    }

    /// The web URL of `commit` in the repository at `repo_url`, if the URL has a host.
    pub fn commit_url(self, repo_url: &str, commit: &str) -> Option<String> {
        let base = web_url(repo_url, self)?;
        Some(match self {
            Self::GitHub | Self::Gitea | Self::Azure => format!("{base}/commit/{commit}"),
            Self::GitLab => format!("{base}/-/commit/{commit}"),
            Self::Bitbucket => format!("{base}/commits/{commit}"),
        })
    }
}

/// Host and path of an http(s), ssh or scp-style URL (user info and port dropped).
fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, url),
    };
    match scheme.as_deref() {
        Some("http" | "https" | "ssh" | "git" | "git+ssh" | "ssh+git") => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host_port = authority.rsplit('@').next().unwrap_or(authority);
            let host = host_port.split(':').next().unwrap_or(host_port);
            (!host.is_empty()).then(|| (host.to_owned(), path.to_owned()))
        }
        Some(_) => None,
        None => {
            // scp-like: [user@]host:path
            let (authority, path) = rest.split_once(':')?;
            let host = authority.rsplit('@').next().unwrap_or(authority);
            (!host.is_empty() && !host.contains('/'))
                .then(|| (host.to_owned(), path.trim_start_matches('/').to_owned()))
        }
    }
}

/// The repository's web URL: `https://<host>/<path without .git>` (plain-HTTP remotes,
/// typically self-hosted, keep `http` and their port).
fn web_url(repo_url: &str, provider: GitProvider) -> Option<String> {
    let (mut host, path) = split_url(repo_url)?;
    let mut path = path.trim_matches('/').trim_end_matches(".git").to_owned();
    if provider == GitProvider::Azure && host.eq_ignore_ascii_case("ssh.dev.azure.com") {
        // git@ssh.dev.azure.com:v3/<org>/<project>/<repo>
        let parts: Vec<&str> = path.split('/').collect();
        if let ["v3", org, project, repo] = parts.as_slice() {
            path = format!("{org}/{project}/_git/{repo}");
            host = "dev.azure.com".to_owned();
        }
    }
    if path.is_empty() {
        return None;
    }
    let plain = repo_url
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if plain {
        let rest = &repo_url[7..];
        let authority = rest.split('/').next().unwrap_or(rest);
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        return Some(format!("http://{host_port}/{path}"));
    }
    Some(format!("https://{host}/{path}"))
}

pub(super) enum Target {
    Branch(Option<String>),
    Tag(String),
}

pub(super) fn validate(
    cfg: &GitPushConfig,
    promotion: &str,
) -> Result<(Target, bool, Option<u32>), StepError> {
    let target_branch = non_empty(cfg.target_branch.as_deref());
    let tag = non_empty(cfg.tag.as_deref());
    let set: Vec<&str> = [
        target_branch.map(|_| "targetBranch"),
        cfg.generate_target_branch.then_some("generateTargetBranch"),
        tag.map(|_| "tag"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.len() > 1 {
        return Err(StepError::invalid_config(
            set[1],
            format!("{} are mutually exclusive", set.join(" and ")),
        ));
    }
    let max_attempts = match cfg.max_attempts {
        None => None,
        Some(n) if (1..=u64::from(i32::MAX.unsigned_abs())).contains(&n) => u32::try_from(n).ok(),
        Some(n) => {
            return Err(StepError::invalid_config(
                "maxAttempts",
                format!("must be between 1 and 2147483647, got {n}"),
            ));
        }
    };
    if let Some(p) = non_empty(cfg.provider.as_deref())
        && GitProvider::from_name(p).is_none()
    {
        return Err(StepError::invalid_config(
            "provider",
            format!("unknown provider {p:?}; expected azure, bitbucket, gitea, github or gitlab"),
        ));
    }
    let mut force = cfg.force;
    let target = if let Some(t) = tag {
        Target::Tag(t.to_owned())
    } else if cfg.generate_target_branch {
        if promotion.is_empty() {
            return Err(StepError::invalid_config(
                "generateTargetBranch",
                "the promotion has no name to derive a branch from",
            ));
        }
        force = true;
        Target::Branch(Some(format!("kargo/promotion/{promotion}")))
    } else {
        Target::Branch(target_branch.map(str::to_owned))
    };
    Ok((target, force, max_attempts))
}

#[async_trait]
impl Step for GitPush {
    const KIND: &'static str = "git-push";
    type Config = GitPushConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::External)
    }

    async fn run(&self, ctx: &StepContext, cfg: GitPushConfig) -> Result<StepOutcome, StepError> {
        let (target, force, max_attempts) = validate(&cfg, &ctx.promotion)?;
        let info = find_checkout(ctx, &cfg.path)?;
        if let Some(dry) = ctx.dry_run() {
            #[cfg(feature = "argocd")]
            let refresh = self
                .argocd
                .as_deref()
                .is_some_and(|o| o.refresh_after_push && o.server_url.is_some());
            #[cfg(feature = "argocd")]
            if refresh && matches!(target, Target::Branch(_)) {
                dry.note(
                    &ctx.alias,
                    "dry run: would ask Argo CD to refresh the Applications tracking the pushed branch",
                );
            }
            return dry_run(ctx, &cfg, &info, target, &dry).await;
        }
        refresh_auth(ctx, &info).await?;
        let checkout = info.checkout.clone();
        let mut outcome = StepOutcome::succeeded();
        let commit = match target {
            Target::Tag(tag) => {
                let t = tag.clone();
                blocking(&info.auth, move || checkout.push_tag(&t, force)).await?;
                tracing::info!(%tag, "git-push: pushed tag");
                outcome = outcome.with_output("tag", tag);
                info.checkout
                    .head()
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            }
            Target::Branch(branch) => {
                let git = checkout.mirror().git().clone();
                let pushed = cancellable(ctx, &git, &info.auth, move || {
                    checkout.push(branch.as_deref(), force, max_attempts)
                })
                .await?;
                tracing::info!(
                    branch = %pushed.branch,
                    commit = %pushed.commit,
                    attempts = pushed.attempts,
                    "git-push: pushed"
                );
                #[cfg(feature = "argocd")]
                if let Some(apps) = self.refresh_argocd(&info, &pushed.branch).await {
                    outcome = outcome.with_output("argocdRefreshed", apps);
                }
                outcome = outcome.with_output("branch", pushed.branch);
                pushed.commit.to_string()
            }
        };
        Ok(with_commit(outcome, &cfg, &info, commit))
    }
}

/// Adds the `commit` and (when the provider is known) `commitURL` outputs.
pub(super) fn with_commit(
    outcome: StepOutcome,
    cfg: &GitPushConfig,
    info: &CheckoutInfo,
    commit: String,
) -> StepOutcome {
    let provider = non_empty(cfg.provider.as_deref())
        .and_then(GitProvider::from_name)
        .or_else(|| GitProvider::infer(&info.repo_url));
    let url = provider.and_then(|p| p.commit_url(&info.repo_url, &commit));
    let outcome = outcome.with_output("commit", commit);
    match url {
        Some(url) => outcome.with_output("commitURL", url),
        None => outcome,
    }
}

/// What `git-push` does in a dry run (see [`GitPush`]): records, pushes nothing.
pub(super) async fn dry_run(
    ctx: &StepContext,
    cfg: &GitPushConfig,
    info: &CheckoutInfo,
    target: Target,
    dry: &DryRun,
) -> Result<StepOutcome, StepError> {
    let checkout = info.checkout.clone();
    let repo_url = display_url(&info.repo_url);
    let Some(head) = checkout.head() else {
        return Err(StepError::invalid_config(
            "path",
            format!("{:?} has no commit to push", cfg.path),
        ));
    };
    let (branch, tag) = match target {
        Target::Tag(t) => (String::new(), Some(t)),
        Target::Branch(b) => match b.or_else(|| checkout.branch()) {
            Some(b) => (b, None),
            None => {
                return Err(StepError::invalid_config(
                    "targetBranch",
                    "the checkout is not on a branch: name a target branch",
                ));
            }
        },
    };
    let upstream = checkout.upstream();
    let unpushed = checkout.unpushed();
    let c = checkout.clone();
    let (files, commits) = blocking(&info.auth, move || {
        let mirror = c.mirror();
        let files = mirror.diff_commits(upstream, head)?;
        let mut commits = Vec::with_capacity(unpushed.len());
        for id in &unpushed {
            let message = mirror
                .log(&id.to_string(), 1)?
                .into_iter()
                .next()
                .map(|i| i.message)
                .unwrap_or_default();
            commits.push((id.to_string(), message));
        }
        let head_message = mirror
            .log(&head.to_string(), 1)?
            .into_iter()
            .next()
            .map(|i| i.message)
            .unwrap_or_default();
        Ok((files, (commits, head_message)))
    })
    .await?;
    let (commits, message) = commits;
    let same_branch = tag.is_none() && checkout.branch().as_deref() == Some(branch.as_str());
    let nothing_new = same_branch && upstream == Some(head);
    for f in &files {
        dry.record_file(DryRunFile {
            step: ctx.alias.clone(),
            repo_url: repo_url.clone(),
            path: f.path.clone(),
            diff: f.diff.clone(),
        });
    }
    if !nothing_new {
        dry.record_push(DryRunPush {
            step: ctx.alias.clone(),
            repo_url: repo_url.clone(),
            branch: branch.clone(),
            tag: tag.clone(),
            commit: head.to_string(),
            message,
            commits: commits.clone(),
        });
    }
    let what = match &tag {
        Some(t) => format!("tag {t}"),
        None => format!("branch {branch}"),
    };
    let text = if nothing_new {
        format!("dry run: nothing to push to {what} of {repo_url}")
    } else {
        format!(
            "dry run: would push {} to {what} of {repo_url} ({} file(s) changed); nothing was pushed",
            head,
            files.len()
        )
    };
    tracing::info!(target = %what, commit = %head, files = files.len(), "git-push: dry run, not pushed");
    let mut outcome = StepOutcome::skipped().with_message(text);
    outcome = match tag {
        Some(t) => outcome.with_output("tag", t),
        None => outcome.with_output("branch", branch),
    };
    Ok(with_commit(outcome, cfg, info, head.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn url(repo: &str) -> Option<String> {
        GitProvider::infer(repo).and_then(|p| p.commit_url(repo, SHA))
    }

    #[test]
    fn commit_urls() {
        assert_eq!(
            url("https://github.com/acme/gitops.git").unwrap(),
            format!("https://github.com/acme/gitops/commit/{SHA}")
        );
        assert_eq!(
            url("git@github.com:acme/gitops.git").unwrap(),
            format!("https://github.com/acme/gitops/commit/{SHA}")
        );
        assert_eq!(
            url("ssh://git@gitlab.com:22/group/sub/repo.git").unwrap(),
            format!("https://gitlab.com/group/sub/repo/-/commit/{SHA}")
        );
        assert_eq!(
            url("https://user:pw@bitbucket.org/team/repo.git").unwrap(),
            format!("https://bitbucket.org/team/repo/commits/{SHA}")
        );
        assert_eq!(
            url("https://dev.azure.com/org/proj/_git/repo").unwrap(),
            format!("https://dev.azure.com/org/proj/_git/repo/commit/{SHA}")
        );
        assert_eq!(
            url("git@ssh.dev.azure.com:v3/org/proj/repo").unwrap(),
            format!("https://dev.azure.com/org/proj/_git/repo/commit/{SHA}")
        );
        assert_eq!(
            url("https://gitea.example.com/o/r.git").unwrap(),
            format!("https://gitea.example.com/o/r/commit/{SHA}")
        );
        assert_eq!(url("https://git.example.com/o/r.git"), None);
        assert_eq!(url("file:///tmp/r.git"), None);
        assert_eq!(
            GitProvider::Gitea
                .commit_url("http://127.0.0.1:3000/o/r.git", SHA)
                .unwrap(),
            format!("http://127.0.0.1:3000/o/r/commit/{SHA}")
        );
        assert_eq!(
            GitProvider::GitHub.commit_url("file:///tmp/r.git", SHA),
            None
        );
    }

    fn cfg(v: serde_json::Value) -> GitPushConfig {
        kargo_core::step::decode_config(v).unwrap()
    }

    #[test]
    fn validation_names_fields() {
        let e = validate(
            &cfg(
                serde_json::json!({"path": "a", "targetBranch": "x", "generateTargetBranch": true}),
            ),
            "p",
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().starts_with("config.generateTargetBranch"),
            "{e}"
        );
        let e = validate(
            &cfg(serde_json::json!({"path": "a", "maxAttempts": 0})),
            "p",
        )
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("config.maxAttempts"), "{e}");
        let e = validate(
            &cfg(serde_json::json!({"path": "a", "provider": "gh"})),
            "p",
        )
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("config.provider"), "{e}");
        let (t, force, _) = validate(
            &cfg(serde_json::json!({"path": "a", "generateTargetBranch": true})),
            "dev.01abc.1234567",
        )
        .unwrap();
        assert!(force);
        assert!(matches!(t, Target::Branch(Some(b)) if b == "kargo/promotion/dev.01abc.1234567"));
        let (_, force, _) = validate(
            &cfg(serde_json::json!({"path": "a", "forcePush": true})),
            "p",
        )
        .unwrap();
        assert!(force);
    }
}
