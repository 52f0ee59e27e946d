//! `github-push`: pushes a checkout's commits through the GitHub API instead of `git push`,
//! so GitHub can attribute and sign them ("Verified"), as Kargo 1.10's step does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::secret::{CredentialKind, Redacted};
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use kargo_git::GitConfig;
use serde::Deserialize;
use serde_json::Value as Json;

use super::github_api::{ComparedCommit, GitHubClient, GitHubError};
use super::pr::repo_ref;
use super::push::{GitPushConfig, Target, dry_run, validate, with_commit};
use super::{GitProvider, PullRequestOptions, blocking, display_url, find_checkout, refresh_auth};

/// The ref namespace of the temporary staging refs (not listed as branches).
pub const STAGING_REF_PREFIX: &str = "refs/kargo/staging";

/// The operator's settings of `github-push` (Kargo's `GITHUB_PUSH_*` controller settings).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GitHubPushOptions {
    /// The most commits one push replays (Kargo's `GITHUB_PUSH_MAX_REVISIONS`, default
    /// 10); more is a terminal error.
    pub max_revisions: usize,
    /// Let GitHub attribute and sign every replayed commit, also untrusted ones (Kargo's
    /// `GITHUB_PUSH_VERIFY_UNTRUSTED_COMMITS`, default false); the original author is
    /// kept in a `Co-authored-by` trailer.
    pub verify_untrusted_commits: bool,
}

impl Default for GitHubPushOptions {
    fn default() -> Self {
        Self {
            max_revisions: 10,
            verify_untrusted_commits: false,
        }
    }
}

/// Kargo's `github-push` step: a drop-in for `git-push` (branch pushes) on GitHub.
///
/// ```yaml
/// - uses: github-push
///   as: push
///   config:
///     path: ./out
///     targetBranch: stage/prod        # or generateTargetBranch: true; default: the checkout's branch
///     force: false
///     maxAttempts: 10
///     insecureSkipTLSVerify: false
/// ```
///
/// Per attempt (up to `maxAttempts`, with the git settings' backoff in between): remote
/// changes on the target branch are integrated as `git-push` does (the operator's push
/// integration policy; not for forced pushes and `generateTargetBranch`, which forces);
/// the checkout's head is force-pushed with git to the hidden staging ref
/// `refs/kargo/staging/<promotion>`; the GitHub API compares the target branch (or, when it
/// does not exist yet, the checkout's branch) with the head; each commit that is new is
/// replayed with `POST /repos/{owner}/{repo}/git/commits` (same tree and message; parents
/// mapped onto the replayed ones); then the branch is created (`POST .../git/refs`) or
/// moved (`PATCH .../git/refs/heads/{branch}`, `force` as configured; a 422 — not a fast
/// forward — starts another attempt). The staging ref is deleted at the end, and the
/// checkout is reset to the branch's new tip (the replayed commits have new IDs).
///
/// Trust: kargo-rs does not sign commits, so every commit is untrusted as in Kargo without
/// a signing key: it is replayed with its original author and committer (GitHub does not
/// mark it verified) unless [`GitHubPushOptions::verify_untrusted_commits`] is on, in
/// which case GitHub attributes and signs it and a `Co-authored-by` trailer keeps the
/// author.
///
/// The token is the password of the repository's git credentials (a personal access
/// token or a GitHub App installation token); missing credentials or an SSH key alone are
/// terminal errors. The API URL is `https://api.github.com` for github.com,
/// `https://<host>/api/v3` otherwise, unless
/// [`PullRequestOptions::api_urls`] names one for the repository.
///
/// Outputs: `branch`, `commit` (the branch's new tip), `commitURL`.
///
/// **Dry run**: as `git-push` (records the push and the per-file diffs, pushes nothing,
/// `Skipped` with the same outputs).
#[derive(Debug, Clone)]
pub struct GitHubPush {
    git: Arc<GitConfig>,
    options: Arc<PullRequestOptions>,
    github: GitHubPushOptions,
}

impl GitHubPush {
    /// The step with the retry settings of `git`, the API URLs of `options` and default
    /// [`GitHubPushOptions`].
    pub fn new(git: Arc<GitConfig>, options: Arc<PullRequestOptions>) -> Self {
        Self {
            git,
            options,
            github: GitHubPushOptions::default(),
        }
    }

    /// This step with other operator settings.
    pub fn with_options(mut self, github: GitHubPushOptions) -> Self {
        self.github = github;
        self
    }
}

/// Configuration of [`GitHubPush`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitHubPushConfig {
    /// `path:` the checkout, relative to the work directory. Required.
    pub path: String,
    /// `targetBranch:` the branch to push to (default: the checked-out branch).
    #[serde(default)]
    pub target_branch: Option<String>,
    /// `generateTargetBranch:` push to `kargo/promotion/<promotion name>` (forced).
    #[serde(default)]
    pub generate_target_branch: bool,
    /// `force:` overwrite the branch's history instead of integrating remote changes.
    #[serde(default)]
    pub force: bool,
    /// `maxAttempts:` attempts, the first included (1 to 2^31-1, default 10).
    #[serde(default)]
    pub max_attempts: Option<u64>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate of the API.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
}

impl GitHubPushConfig {
    fn as_git_push(&self) -> GitPushConfig {
        GitPushConfig {
            path: self.path.clone(),
            target_branch: self.target_branch.clone(),
            generate_target_branch: self.generate_target_branch,
            tag: None,
            force: self.force,
            max_attempts: self.max_attempts,
            provider: Some("github".to_owned()),
        }
    }
}

/// Why an attempt ended without success.
enum AttemptError {
    /// Try again after the backoff.
    Retry(String),
    /// Give up.
    Fatal(StepError),
}

impl From<StepError> for AttemptError {
    fn from(e: StepError) -> Self {
        Self::Fatal(e)
    }
}

fn api_error(e: GitHubError) -> StepError {
    match e.status {
        Some(401 | 403) => StepError::new(StepErrorKind::Unauthorized, e.message),
        Some(400 | 404 | 409 | 422) => StepError::terminal(e.message),
        _ => StepError::retryable(e.message),
    }
}

/// A ref-name-safe form of the promotion's name.
fn staging_ref(promotion: &str, alias: &str) -> String {
    let name = if promotion.is_empty() {
        alias
    } else {
        promotion
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let safe = safe.trim_matches('.');
    format!(
        "{STAGING_REF_PREFIX}/{}",
        if safe.is_empty() { "step" } else { safe }
    )
}

/// The message of a replayed commit GitHub attributes: the author in a trailer.
fn co_authored(message: &str, author: &Json) -> String {
    let name = author.get("name").and_then(Json::as_str).unwrap_or("");
    let email = author.get("email").and_then(Json::as_str).unwrap_or("");
    if name.is_empty() || email.is_empty() {
        return message.to_owned();
    }
    format!("{}\n\nCo-authored-by: {name} <{email}>", message.trim_end())
}

struct Attempt<'a> {
    api: &'a GitHubClient,
    github: &'a GitHubPushOptions,
    branch: &'a str,
    /// The checkout's branch (the comparison base when the target does not exist).
    source_branch: Option<&'a str>,
    force: bool,
}

impl Attempt<'_> {
    /// Replays `head`'s new commits and moves the branch; the new tip.
    async fn push(&self, head: &str) -> Result<String, AttemptError> {
        let target = self.api.branch_head(self.branch).await.map_err(api_error)?;
        let base = match &target {
            Some(sha) => sha.clone(),
            None => {
                let source = self.source_branch.ok_or_else(|| {
                    StepError::terminal(format!(
                        "branch {:?} does not exist on GitHub and the checkout is not on a branch to start it from",
                        self.branch
                    ))
                })?;
                self.api
                    .branch_head(source)
                    .await
                    .map_err(api_error)?
                    .ok_or_else(|| {
                        StepError::terminal(format!(
                            "neither branch {:?} nor the checkout's branch {source:?} exists on GitHub",
                            self.branch
                        ))
                    })?
            }
        };
        let cmp = self.api.compare(&base, head).await.map_err(api_error)?;
        match (cmp.status.as_str(), self.force) {
            ("identical", _) => return Ok(head.to_owned()),
            ("ahead", _) | ("behind" | "diverged", true) => {}
            ("behind", false) => {
                return Err(AttemptError::Retry(
                    "the checkout is behind the target branch and force is not set".into(),
                ));
            }
            ("diverged", false) => {
                return Err(AttemptError::Retry(
                    "the checkout and the target branch have diverged and force is not set".into(),
                ));
            }
            (other, _) => {
                return Err(StepError::terminal(format!(
                    "unexpected comparison status {other:?} for {base}..{head}"
                ))
                .into());
            }
        }
        if cmp.commits.len() > self.github.max_revisions {
            return Err(StepError::terminal(format!(
                "commit range {}..{head} contains {} commits, which exceeds the configured maximum of {}",
                cmp.merge_base,
                cmp.commits.len(),
                self.github.max_revisions
            ))
            .into());
        }
        let new_tip = self.replay(&cmp.commits, &cmp.merge_base).await?;
        let moved = match target {
            None => self.api.create_branch(self.branch, &new_tip).await,
            Some(_) => {
                self.api
                    .update_branch(self.branch, &new_tip, self.force)
                    .await
            }
        };
        match moved {
            Ok(()) => Ok(new_tip),
            Err(e) if e.status == Some(422) => Err(AttemptError::Retry(format!(
                "updating branch {:?} was refused (not a fast forward): {}",
                self.branch, e.message
            ))),
            Err(e) => Err(api_error(e).into()),
        }
    }

    /// Creates each commit again through the API; returns the last one (or `base` when
    /// there is none).
    async fn replay(&self, commits: &[ComparedCommit], base: &str) -> Result<String, StepError> {
        let mut map: std::collections::HashMap<String, String> =
            std::collections::HashMap::from([(base.to_owned(), base.to_owned())]);
        let mut last = base.to_owned();
        for (i, c) in commits.iter().enumerate() {
            let parents: Vec<String> = if c.parents.len() <= 1 {
                vec![last.clone()]
            } else {
                c.parents
                    .iter()
                    .map(|p| map.get(p).cloned().unwrap_or_else(|| p.clone()))
                    .collect()
            };
            // Untrusted (kargo-rs signs nothing): keep the identity unless the operator
            // asked GitHub to sign every commit.
            let (message, identity) = if self.github.verify_untrusted_commits {
                (co_authored(&c.message, &c.author), None)
            } else {
                (c.message.clone(), Some((&c.author, &c.committer)))
            };
            let sha = self
                .api
                .create_commit(&message, &c.tree, &parents, identity)
                .await
                .map_err(|e| {
                    let mut se = api_error(e);
                    se.message = format!(
                        "creating commit {}/{} (original {}): {}",
                        i + 1,
                        commits.len(),
                        c.sha,
                        se.message
                    );
                    se
                })?;
            tracing::debug!(original = %c.sha, new = %sha, "github-push: replayed a commit");
            map.insert(c.sha.clone(), sha.clone());
            last = sha;
        }
        Ok(last)
    }
}

#[async_trait]
impl Step for GitHubPush {
    const KIND: &'static str = "github-push";
    type Config = GitHubPushConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::External)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: GitHubPushConfig,
    ) -> Result<StepOutcome, StepError> {
        let git_cfg = cfg.as_git_push();
        let (target, force, max_attempts) = validate(&git_cfg, &ctx.promotion)?;
        let info = find_checkout(ctx, &cfg.path)?;
        if let Some(dry) = ctx.dry_run() {
            return dry_run(ctx, &git_cfg, &info, target, &dry).await;
        }
        let Target::Branch(branch) = target else {
            return Err(StepError::invalid_config(
                "path",
                "github-push pushes branches only",
            ));
        };
        let source_branch = info.checkout.branch();
        let Some(branch) = branch.or_else(|| source_branch.clone()) else {
            return Err(StepError::invalid_config(
                "targetBranch",
                "the checkout is not on a branch: name a target branch",
            ));
        };
        let shown = display_url(&info.repo_url);
        let creds = ctx
            .credentials()
            .credentials(CredentialKind::Git, &info.repo_url)
            .await
            .map_err(|e| StepError::retryable(e.to_string()))?;
        let token = match creds {
            None => {
                return Err(StepError::terminal(format!(
                    "no credentials found for {shown}"
                )));
            }
            Some(c) if !c.password.expose().is_empty() => c.password.clone(),
            Some(c) if c.ssh_private_key.is_some() => {
                return Err(StepError::terminal(format!(
                    "found an SSH key for {shown}; it can be used for git operations only, not \
                     for GitHub API authentication: use a personal access token or a GitHub App"
                )));
            }
            Some(_) => {
                return Err(StepError::terminal(format!(
                    "the credentials for {shown} are missing a password/token"
                )));
            }
        };
        let repo = repo_ref(GitProvider::GitHub, &info.repo_url)
            .map_err(|m| StepError::terminal(format!("{shown}: {m}")))?;
        let api_url = self
            .options
            .api_url(GitProvider::GitHub, &info.repo_url)
            .ok_or_else(|| {
                StepError::terminal(format!("cannot derive the GitHub API URL of {shown}"))
            })?;
        let api = GitHubClient::new(
            &api_url,
            &repo.owner,
            &repo.name,
            Redacted::new(token.expose().clone()),
            cfg.insecure_skip_tls_verify,
        )
        .map_err(api_error)?;
        refresh_auth(ctx, &info).await?;
        let staging = staging_ref(&ctx.promotion, &ctx.alias);
        let attempt = Attempt {
            api: &api,
            github: &self.github,
            branch: &branch,
            source_branch: source_branch.as_deref(),
            force,
        };
        let max = max_attempts.unwrap_or(self.git.max_push_attempts).max(1);
        let mut delay = self.git.retry_initial;
        let mut result = Err(StepError::terminal("no push attempt was made"));
        for n in 1..=max {
            let outcome = async {
                if !force {
                    let (c, b) = (info.checkout.clone(), branch.clone());
                    blocking(&info.auth, move || c.integrate_remote_changes(&b)).await?;
                }
                let (c, s) = (info.checkout.clone(), staging.clone());
                let head = blocking(&info.auth, move || c.push_head_to_ref(&s)).await?;
                attempt.push(&head.to_string()).await
            };
            let outcome = tokio::select! {
                r = outcome => r,
                () = ctx.cancellation().cancelled() => {
                    Err(AttemptError::Fatal(StepError::new(StepErrorKind::Cancelled, "cancelled")))
                }
            };
            match outcome {
                Ok(tip) => {
                    result = Ok(tip);
                    break;
                }
                Err(AttemptError::Fatal(e)) => {
                    result = Err(e);
                    break;
                }
                Err(AttemptError::Retry(why)) => {
                    tracing::info!(attempt = n, reason = %why, "github-push: retrying");
                    result = Err(StepError::terminal(format!(
                        "the push did not land after {max} attempt(s): {why}"
                    )));
                    if n == max {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = ctx.cancellation().cancelled() => {
                            result = Err(StepError::new(StepErrorKind::Cancelled, "cancelled"));
                            break;
                        }
                    }
                    delay = delay
                        .mul_f64(1.5)
                        .min(self.git.retry_max.max(Duration::from_millis(1)));
                }
            }
        }
        let staging_name = staging.trim_start_matches("refs/").to_owned();
        if let Err(e) = api.delete_ref(&staging_name).await {
            tracing::warn!(error = %e, "github-push: cannot delete the staging ref (non-fatal)");
        }
        result?;
        let (c, b) = (info.checkout.clone(), branch.clone());
        let tip = blocking(&info.auth, move || c.reset_to_remote(&b)).await?;
        tracing::info!(%branch, commit = %tip, "github-push: pushed through the GitHub API");
        let outcome = StepOutcome::succeeded().with_output("branch", branch);
        Ok(with_commit(outcome, &git_cfg, &info, tip.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_refs_and_trailers() {
        assert_eq!(
            staging_ref("prod.01abc.x", "push"),
            "refs/kargo/staging/prod.01abc.x"
        );
        assert_eq!(
            staging_ref("", "task::push"),
            "refs/kargo/staging/task--push"
        );
        let a = serde_json::json!({"name": "Kargo", "email": "no-reply@kargo.io"});
        assert_eq!(
            co_authored("msg\n", &a),
            "msg\n\nCo-authored-by: Kargo <no-reply@kargo.io>"
        );
        assert_eq!(co_authored("msg", &Json::Null), "msg");
    }
}
