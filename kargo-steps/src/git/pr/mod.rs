//! The pull-request steps: `git-open-pr`, `git-wait-for-pr` and `git-merge-pr`, for GitHub,
//! GitLab, Gitea/Forgejo, Bitbucket Cloud and Azure DevOps.
//!
//! ```yaml
//! - uses: git-push
//!   as: push
//!   config: {path: ./out, generateTargetBranch: true}
//! - uses: git-open-pr
//!   as: open-pr
//!   config:
//!     repoURL: https://github.com/acme/gitops.git
//!     sourceBranch: ${{ outputs.push.branch }}
//!     targetBranch: main
//! - uses: git-wait-for-pr
//!   as: wait-for-pr
//!   config:
//!     repoURL: https://github.com/acme/gitops.git
//!     prNumber: ${{ outputs['open-pr'].pr.id }}
//! ```
//!
//! The provider is `provider` (`github`, `gitlab`, `gitea`, `bitbucket`, `azure`) or is
//! inferred from the repository's host ([`GitProvider::infer`]). The API is reached at the
//! provider's default API URL (`https://api.github.com`, `<host>/api/v3` for GitHub
//! Enterprise, `<host>/api/v4` for GitLab, `<host>/api/v1` for Gitea,
//! `https://api.bitbucket.org/2.0`, `https://dev.azure.com/<org>`), unless
//! [`PullRequestOptions::api_urls`] maps the repository URL to another one (self-hosted
//! servers behind another name, tests). The token is the password of the repository's git
//! credentials ([`CredentialKind::Git`]); it never appears in outputs, messages or logs.
//!
//! Only http(s) repository URLs are supported.
//!
//! Differences from Kargo: `git-open-pr` adopts a merged pull request only when its head
//! commit is the source branch's current tip (so a re-run after the merge finds it), does
//! not append a "View in Kargo UI" link, and ignores `labels` on Bitbucket Cloud (its pull requests have none; Gitea labels
//! are looked up by name). Looking a pull request up by its branches follows the list's
//! pages as each provider documents them (GitHub, GitLab, Bitbucket and Azure DevOps filter
//! by branch on the server; Gitea's lists are filtered here).
//!
//! While `git-wait-for-pr` waits, a pull-request webhook for that pull request (merged or
//! closed) wakes it at once through the runner
//! ([`pull_request_wake_key`](kargo_core::runner::pull_request_wake_key)), as Kargo
//! refreshes the Promotions waiting on a pull request when its webhook arrives.

mod client;
mod pages;

pub use client::{MergeResult, PrClient, PrError, PullRequest, RepoRef, default_api_url, repo_ref};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::model::Duration as KargoDuration;
use kargo_core::secret::{CredentialKind, Redacted};
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use kargo_git::{FetchSpec, GitConfig};
use serde::Deserialize;
use serde_json::json;

use super::{GitProvider, SharedAuth, blocking, display_url, lookup_auth};

/// Settings of the pull-request steps.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PullRequestOptions {
    /// API base URLs by repository URL prefix (the longest matching prefix wins), e.g.
    /// `("https://git.corp/", "https://git-api.corp/api/v1")`. Repositories that match
    /// none use their provider's default API URL.
    pub api_urls: Vec<(String, String)>,
}

impl PullRequestOptions {
    /// The API base URL for `repo_url`.
    pub fn api_url(&self, provider: GitProvider, repo_url: &str) -> Option<String> {
        self.api_urls
            .iter()
            .filter(|(prefix, _)| repo_url.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, api)| api.clone())
            .or_else(|| default_api_url(provider, repo_url))
    }
}

/// The default poll interval of `git-wait-for-pr`.
pub const WAIT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// The default poll interval of `git-merge-pr` with `wait: true`.
pub const MERGE_POLL_INTERVAL: Duration = Duration::from_secs(10);

fn provider_of(provider: Option<&str>, repo_url: &str) -> Result<GitProvider, StepError> {
    match provider.map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => GitProvider::from_name(p).ok_or_else(|| {
            StepError::invalid_config(
                "provider",
                format!("unknown provider {p:?} (azure, bitbucket, gitea, github or gitlab)"),
            )
        }),
        None => GitProvider::infer(repo_url).ok_or_else(|| {
            StepError::invalid_config(
                "provider",
                format!(
                    "cannot infer the git provider of {}; set provider",
                    display_url(repo_url)
                ),
            )
        }),
    }
}

fn pr_error(e: PrError) -> StepError {
    match e.status {
        Some(401 | 403) => StepError::new(StepErrorKind::Unauthorized, e.message),
        Some(400 | 404 | 422) => StepError::terminal(e.message),
        _ => StepError::retryable(e.message),
    }
}

/// Builds the API client for a repository, with the token from its git credentials.
async fn client(
    ctx: &StepContext,
    options: &PullRequestOptions,
    repo_url: &str,
    provider: Option<&str>,
    insecure: bool,
) -> Result<PrClient, StepError> {
    if repo_url.trim().is_empty() {
        return Err(StepError::invalid_config("repoURL", "must not be empty"));
    }
    let provider = provider_of(provider, repo_url)?;
    let repo = repo_ref(provider, repo_url).map_err(|m| StepError::invalid_config("repoURL", m))?;
    let api = options.api_url(provider, repo_url).ok_or_else(|| {
        StepError::invalid_config("repoURL", "cannot derive the provider's API URL")
    })?;
    let creds = ctx
        .credentials()
        .credentials(CredentialKind::Git, repo_url)
        .await
        .map_err(|e| StepError::retryable(e.to_string()))?;
    let (user, token) = match creds {
        Some(c) => (c.username, c.password),
        None => (String::new(), Redacted::default()),
    };
    PrClient::new(provider, &api, repo, &user, token, insecure).map_err(pr_error)
}

fn pr_output(pr: &PullRequest) -> serde_json::Value {
    json!({"id": pr.number, "url": pr.url})
}

fn pr_status_output(pr: &PullRequest) -> serde_json::Value {
    json!({"id": pr.number, "url": pr.url, "open": pr.open, "merged": pr.merged})
}

// ---------------------------------------------------------------------------------------
// git-open-pr

/// Kargo's `git-open-pr`: opens a pull request from `sourceBranch` into `targetBranch`.
///
/// Idempotent: a previous output of the same step (a retried or re-run promotion) is
/// reused; an open pull request for the same branches is adopted, and so is a merged one
/// whose head is the source branch's current tip; nothing is opened (the step is
/// `Skipped`) when the two branches have the same content. The target branch
/// must exist. The title defaults to the subject of the source branch's head commit and
/// the description to the rest of its message.
///
/// Output: `pr: {id, url}`.
#[derive(Debug, Clone)]
pub struct GitOpenPr {
    git: Arc<GitConfig>,
    options: Arc<PullRequestOptions>,
}

impl GitOpenPr {
    /// The step, with the git cache of `git` (to compare the branches) and `options`.
    pub fn new(git: Arc<GitConfig>, options: Arc<PullRequestOptions>) -> Self {
        Self { git, options }
    }
}

/// Configuration of [`GitOpenPr`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitOpenPrConfig {
    /// `repoURL:` the repository (http or https). Required.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `sourceBranch:` the branch with the changes (the pull request's head). Required.
    pub source_branch: String,
    /// `targetBranch:` the branch to merge into (the base). Required.
    pub target_branch: String,
    /// `title:` the title (default: the head commit's subject).
    #[serde(default)]
    pub title: Option<String>,
    /// `description:` the description (default: the rest of the head commit's message).
    #[serde(default)]
    pub description: Option<String>,
    /// `labels:` labels to add.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `provider:` `azure`, `bitbucket`, `gitea`, `github` or `gitlab` (default: inferred
    /// from the host).
    #[serde(default)]
    pub provider: Option<String>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate from the API.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// `createTargetBranch:` accepted for compatibility with older Kargo templates; the
    /// target branch must exist.
    #[serde(default)]
    pub create_target_branch: bool,
}

/// What the source and target branches look like.
struct BranchState {
    same_content: bool,
    source_tip: String,
    subject: String,
    body: String,
}

fn compare_branches(
    git: &GitConfig,
    auth: Arc<SharedAuth>,
    url: &str,
    source: &str,
    target: &str,
) -> kargo_git::Result<Result<BranchState, String>> {
    let client = kargo_git::Git::new(git.clone(), auth);
    let refs = client.ls_remote(url)?;
    let tip = |b: &str| {
        let name = format!("refs/heads/{b}");
        refs.iter().find(|r| r.name == name).and_then(|r| r.target)
    };
    let Some(target_tip) = tip(target) else {
        return Ok(Err(format!("the target branch {target:?} does not exist")));
    };
    let Some(source_tip) = tip(source) else {
        return Ok(Err(format!("the source branch {source:?} does not exist")));
    };
    let mirror = client.mirror(url)?;
    mirror.fetch(&FetchSpec {
        branches: vec![source.to_owned(), target.to_owned()],
        depth: git.depth,
        ..FetchSpec::default()
    })?;
    let same_content = source_tip == target_tip || {
        let a = mirror.list_tree(&source_tip.to_string(), "")?;
        let b = mirror.list_tree(&target_tip.to_string(), "")?;
        a == b
    };
    let message = mirror
        .log(&source_tip.to_string(), 1)?
        .into_iter()
        .next()
        .map(|c| c.message)
        .unwrap_or_default();
    let (subject, body) = match message.split_once('\n') {
        Some((s, b)) => (s.trim().to_owned(), b.trim().to_owned()),
        None => (message.trim().to_owned(), String::new()),
    };
    Ok(Ok(BranchState {
        same_content,
        source_tip: source_tip.to_string(),
        subject,
        body,
    }))
}

#[async_trait]
impl Step for GitOpenPr {
    const KIND: &'static str = "git-open-pr";
    type Config = GitOpenPrConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::External)
    }

    async fn run(&self, ctx: &StepContext, cfg: GitOpenPrConfig) -> Result<StepOutcome, StepError> {
        if let Some(skip) = crate::dry_run_skip(
            ctx,
            &format!(
                "open a pull request from {} into {} of {}",
                cfg.source_branch,
                cfg.target_branch,
                kargo_git::redact_url(&cfg.repo_url)
            ),
        ) {
            return Ok(skip.with_output(
                "pr",
                serde_json::json!({"id": 0, "url": "", "open": false, "merged": false}),
            ));
        }
        if cfg.source_branch.trim().is_empty() {
            return Err(StepError::invalid_config(
                "sourceBranch",
                "must not be empty",
            ));
        }
        if cfg.target_branch.trim().is_empty() {
            return Err(StepError::invalid_config(
                "targetBranch",
                "must not be empty",
            ));
        }
        // Idempotence: the output of an earlier run of this very step.
        if let Some(pr) = ctx.outputs.get(&ctx.alias).and_then(|o| o.get("pr"))
            && pr.get("id").is_some()
        {
            return Ok(StepOutcome::succeeded()
                .with_output("pr", pr.clone())
                .with_message("reusing the pull request opened earlier"));
        }
        let api = client(
            ctx,
            &self.options,
            &cfg.repo_url,
            cfg.provider.as_deref(),
            cfg.insecure_skip_tls_verify,
        )
        .await?;
        if let Some(pr) = api
            .find_open(&cfg.source_branch, &cfg.target_branch)
            .await
            .map_err(pr_error)?
        {
            tracing::info!(
                pr = pr.number,
                "adopting the open pull request for the same branches"
            );
            return Ok(StepOutcome::succeeded()
                .with_output("pr", pr_output(&pr))
                .with_message(format!("adopted open pull request {}", pr.number)));
        }
        let auth = Arc::new(SharedAuth::new(
            &cfg.repo_url,
            lookup_auth(ctx, &cfg.repo_url).await?,
        ));
        let (git, a, url) = (self.git.clone(), auth.clone(), cfg.repo_url.clone());
        let (src, dst) = (cfg.source_branch.clone(), cfg.target_branch.clone());
        let state = blocking(&auth, move || compare_branches(&git, a, &url, &src, &dst))
            .await?
            .map_err(StepError::terminal)?;
        // A merged pull request of exactly this head: the promotion's change is in already
        // (a re-run after the merge); adopt it so `git-wait-for-pr` sees it merged.
        if let Some(pr) = api
            .find_merged(&cfg.source_branch, &cfg.target_branch)
            .await
            .map_err(pr_error)?
            .filter(|pr| pr.head_sha.as_deref() == Some(state.source_tip.as_str()))
        {
            tracing::info!(
                pr = pr.number,
                "adopting the merged pull request of the same head"
            );
            return Ok(StepOutcome::succeeded()
                .with_output("pr", pr_output(&pr))
                .with_message(format!("adopted merged pull request {}", pr.number)));
        }
        if state.same_content {
            return Ok(StepOutcome::skipped().with_message(format!(
                "{} and {} have the same content: no pull request opened",
                cfg.source_branch, cfg.target_branch
            )));
        }
        let title = cfg
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(state.subject);
        let description = cfg
            .description
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(state.body);
        let pr = api
            .create(
                &cfg.source_branch,
                &cfg.target_branch,
                &title,
                &description,
                &cfg.labels,
            )
            .await
            .map_err(pr_error)?;
        tracing::info!(pr = pr.number, "opened a pull request");
        Ok(StepOutcome::succeeded()
            .with_output("pr", pr_output(&pr))
            .with_message(format!("opened pull request {}", pr.number)))
    }
}

// ---------------------------------------------------------------------------------------
// git-wait-for-pr

/// Kargo's `git-wait-for-pr`: `Running` while the pull request is open, `Failed` when it
/// was closed without merging, `Succeeded` once merged. While `Running` it waits for its
/// poll interval or for a webhook about the pull request
/// ([`Runner::wake`](kargo_core::runner::Runner::wake) with its
/// [`pull_request_wake_key`](kargo_core::runner::pull_request_wake_key)).
///
/// Outputs: `commit` (the merge commit) and `pr: {id, url, open, merged}`.
#[derive(Debug, Clone)]
pub struct GitWaitForPr {
    options: Arc<PullRequestOptions>,
}

impl GitWaitForPr {
    /// The step with `options`.
    pub fn new(options: Arc<PullRequestOptions>) -> Self {
        Self { options }
    }
}

/// Configuration of [`GitWaitForPr`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitWaitForPrConfig {
    /// `repoURL:` the repository (http or https). Required.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `prNumber:` the pull request's number (`${{ outputs['open-pr'].pr.id }}`). Required.
    pub pr_number: i64,
    /// `provider:` as for `git-open-pr`.
    #[serde(default)]
    pub provider: Option<String>,
    /// `pollInterval:` the wait between checks (default `30s`).
    #[serde(default)]
    pub poll_interval: Option<KargoDuration>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate from the API.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
}

#[async_trait]
impl Step for GitWaitForPr {
    const KIND: &'static str = "git-wait-for-pr";
    type Config = GitWaitForPrConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Idempotent)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: GitWaitForPrConfig,
    ) -> Result<StepOutcome, StepError> {
        if let Some(skip) = crate::dry_run_skip(ctx, "wait for the pull request to be merged") {
            return Ok(skip);
        }
        let api = client(
            ctx,
            &self.options,
            &cfg.repo_url,
            cfg.provider.as_deref(),
            cfg.insecure_skip_tls_verify,
        )
        .await?;
        let pr = api.get(cfg.pr_number).await.map_err(pr_error)?;
        let poll = cfg.poll_interval.map_or(WAIT_POLL_INTERVAL, |d| d.0);
        if pr.merged {
            let mut out = StepOutcome::succeeded().with_output("pr", pr_status_output(&pr));
            if let Some(c) = &pr.merge_commit {
                out = out.with_output("commit", c.clone());
            }
            return Ok(out.with_message(format!("pull request {} was merged", pr.number)));
        }
        if pr.open {
            // A pull-request webhook for this PR (merged or closed) polls again at once.
            return Ok(StepOutcome::running(poll)
                .with_wake_on(kargo_core::runner::pull_request_wake_key(
                    &cfg.repo_url,
                    pr.number,
                ))
                .with_output("pr", pr_status_output(&pr))
                .with_message(format!("pull request {} is not merged yet", pr.number)));
        }
        Err(StepError::failed(format!(
            "pull request {} was closed without being merged",
            pr.number
        )))
    }
}

// ---------------------------------------------------------------------------------------
// git-merge-pr

/// Kargo's `git-merge-pr`: merges a pull request. When it cannot be merged yet, `wait:
/// true` keeps the step `Running`; otherwise the step fails. An already merged pull
/// request succeeds without a new merge.
///
/// Output: `commit` (the merge commit).
#[derive(Debug, Clone)]
pub struct GitMergePr {
    options: Arc<PullRequestOptions>,
}

impl GitMergePr {
    /// The step with `options`.
    pub fn new(options: Arc<PullRequestOptions>) -> Self {
        Self { options }
    }
}

/// Configuration of [`GitMergePr`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitMergePrConfig {
    /// `repoURL:` the repository (http or https). Required.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `prNumber:` the pull request's number. Required.
    pub pr_number: i64,
    /// `provider:` as for `git-open-pr`.
    #[serde(default)]
    pub provider: Option<String>,
    /// `mergeMethod:` provider-specific: GitHub `merge` / `squash` / `rebase`; GitLab
    /// `merge` / `squash`; Gitea `merge` / `rebase` / `rebase-merge` / `squash`;
    /// Bitbucket `merge_commit` / `squash` / `fast_forward`; Azure `noFastForward` /
    /// `squash` / `rebase` / `rebaseMerge`. Default: a merge commit.
    #[serde(default)]
    pub merge_method: Option<String>,
    /// `wait:` keep polling while the pull request cannot be merged (default false).
    #[serde(default)]
    pub wait: bool,
    /// `pollInterval:` the wait between attempts with `wait: true` (default `10s`).
    #[serde(default)]
    pub poll_interval: Option<KargoDuration>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate from the API.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
}

#[async_trait]
impl Step for GitMergePr {
    const KIND: &'static str = "git-merge-pr";
    type Config = GitMergePrConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::External)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: GitMergePrConfig,
    ) -> Result<StepOutcome, StepError> {
        if let Some(skip) = crate::dry_run_skip(
            ctx,
            &format!(
                "merge the pull request of {}",
                kargo_git::redact_url(&cfg.repo_url)
            ),
        ) {
            return Ok(skip);
        }
        let api = client(
            ctx,
            &self.options,
            &cfg.repo_url,
            cfg.provider.as_deref(),
            cfg.insecure_skip_tls_verify,
        )
        .await?;
        let poll = cfg.poll_interval.map_or(MERGE_POLL_INTERVAL, |d| d.0);
        let pr = api.get(cfg.pr_number).await.map_err(pr_error)?;
        let merged = |commit: Option<String>| {
            let mut out = StepOutcome::succeeded();
            if let Some(c) = commit {
                out = out.with_output("commit", c);
            }
            out
        };
        if pr.merged {
            return Ok(merged(pr.merge_commit).with_message("already merged"));
        }
        if !pr.open {
            return Err(StepError::failed(format!(
                "pull request {} is closed",
                pr.number
            )));
        }
        let not_yet = |why: String| {
            if cfg.wait {
                Ok(StepOutcome::running(poll).with_message(why))
            } else {
                Err(StepError::failed(why))
            }
        };
        if pr.mergeable == Some(false) {
            return not_yet(format!("pull request {} is not mergeable", pr.number));
        }
        match api
            .merge(&pr, cfg.merge_method.as_deref().filter(|m| !m.is_empty()))
            .await
            .map_err(pr_error)?
        {
            MergeResult::Merged(commit) => {
                Ok(merged(commit).with_message(format!("merged pull request {}", pr.number)))
            }
            MergeResult::NotMergeable(why) => not_yet(format!(
                "pull request {} cannot be merged yet: {why}",
                pr.number
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_core::workdir::WorkDir;

    #[tokio::test]
    async fn open_pr_reuses_its_own_earlier_output() {
        let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let mut ctx = StepContext::new(WorkDir::new(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        ctx.alias = "open-pr".into();
        ctx.outputs.insert(
            "open-pr".into(),
            json!({"pr": {"id": 7, "url": "https://github.com/acme/gitops/pull/7"}}),
        );
        let step = GitOpenPr::new(
            Arc::new(GitConfig::new(dir.path().join("cache"))),
            Arc::new(PullRequestOptions::default()),
        );
        // An unreachable API: the step must not call it.
        let cfg = GitOpenPrConfig {
            repo_url: "https://github.invalid/acme/gitops.git".into(),
            source_branch: "kargo/promotion/p".into(),
            target_branch: "main".into(),
            title: None,
            description: None,
            labels: vec![],
            provider: Some("github".into()),
            insecure_skip_tls_verify: false,
            create_target_branch: false,
        };
        let out = step.run(&ctx, cfg).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.outputs["pr"],
            json!({"id": 7, "url": "https://github.com/acme/gitops/pull/7"})
        );
    }

    #[test]
    fn api_url_overrides_pick_the_longest_prefix() {
        let o = PullRequestOptions {
            api_urls: vec![
                ("https://git.corp/".into(), "https://api-a".into()),
                ("https://git.corp/team/".into(), "https://api-b".into()),
            ],
        };
        let u = |r: &str| o.api_url(GitProvider::Gitea, r).unwrap_or_default();
        assert_eq!(u("https://git.corp/team/x.git"), "https://api-b");
        assert_eq!(u("https://git.corp/other/x.git"), "https://api-a");
        assert_eq!(u("https://gitea.io/o/x.git"), "https://gitea.io/api/v1");
    }

    #[test]
    fn providers_are_given_or_inferred() {
        assert_eq!(
            provider_of(None, "https://gitlab.com/a/b.git").ok(),
            Some(GitProvider::GitLab)
        );
        assert_eq!(
            provider_of(Some("azure"), "https://x/y").ok(),
            Some(GitProvider::Azure)
        );
        assert!(provider_of(None, "https://git.corp/a/b.git").is_err());
        assert!(provider_of(Some("svn"), "https://github.com/a/b").is_err());
    }
}
