//! # kargo-steps
//!
//! The built-in promotion steps of kargo-rs, with Kargo's step names and configuration
//! fields so existing promotion templates run unchanged. [`register_builtins`] (default
//! options) and [`register_builtins_with`] are the one list of them.
//!
//! | step | what it does | feature |
//! |---|---|---|
//! | `compose-output` | outputs its configuration as is; inside a task the outputs are also visible as the task's outputs | always |
//! | `fail` | fails the promotion with a message (use it with `if`) | always |
//! | `wait-for-approval` | waits until enough people allowed by `approvers` approved the running promotion (Kargo's commercial step; answers through the controller) | always |
//! | `git-clone` | lazy checkouts of branches, tags or commits; files appear when a step opens them | `git` |
//! | `git-clear` | empties a checkout | `git` |
//! | `git-commit` | commits every change of a checkout (`Skipped` when there is none) | `git` |
//! | `git-tag` | tags a checkout's commit (in a dry run: only checks and notes it) | `git` |
//! | `git-push` | pushes a branch (rebasing onto remote changes and retrying) or a tag (in a dry run: records the commit and per-file diffs, pushes nothing); with `argocd` also refreshes the Argo CD Applications tracking the branch | `git` |
//! | `git-open-pr` / `git-wait-for-pr` / `git-merge-pr` | pull requests on GitHub, GitLab, Gitea, Bitbucket, Azure DevOps ([`git::pr`]) | `pull-requests` |
//! | `github-push` | pushes a checkout's commits through the GitHub API (replayed commits GitHub can sign) instead of `git push` ([`git::GitHubPush`]) | `pull-requests` |
//! | `yaml-update` | sets scalar values in a YAML file, keeping every other byte ([`yaml::set_values`]) | always |
//! | `yaml-parse` | evaluates expressions over a YAML file's content into outputs | always |
//! | `yaml-merge` | deep-merges YAML files into one | always |
//! | `flux-update-images` | sets the fields marked with Flux `$imagepolicy` setter comments from the Freight's images, keeping every other byte ([`flux`]) | always |
//! | `json-update` / `toml-update` | sets values in a JSON(C) / TOML file, keeping its formatting | always |
//! | `json-parse` / `toml-parse` | outputs values computed from a JSON / TOML file with expressions | always |
//! | `copy` | copies a file or directory (gitignore-style `ignore`, symbolic links skipped) | always |
//! | `delete` | deletes paths or glob matches (a symbolic link is deleted as a link) | always |
//! | `file-write` | writes a file from the configuration | always |
//! | `tar` / `untar` | creates / safely extracts a (gzipped) tar archive, with size caps | always |
//! | `helm-update-chart` | updates an umbrella chart's dependencies: `Chart.yaml` versions, `Chart.lock`, `charts/` archives | `helm` |
//! | `kustomize-set-image` | sets image overrides in a Kustomization, keeping its formatting ([`kustomize::set_images`]) | `kustomize` |
//! | `kustomize-build` | renders a Kustomization with `kustomize` / `kubectl kustomize` into a file or one file per resource | `kustomize` |
//! | `helm-template` | renders a Helm chart with `helm template` into a file or a directory | `helm` |
//! | `argocd-update` / `argocd-wait` | updates, refreshes and syncs Argo CD Applications / waits for their health ([`argocd`]) | `argocd` |
//! | `set-metadata` | upserts Stage / Freight metadata in the pipeline's state store; registered by the embedder with its store ([`metadata`]) | always |
//! | `set-freight-alias` | changes a Freight's alias (unique within the project) in the pipeline's state store; registered by the embedder with its store ([`set_freight_alias`]) | always |
//! | `http` | sends an HTTP request and decides from the response with expressions (link-local and metadata destinations refused) | `http` |
//! | `http-download` | downloads a URL to a file of the work directory (100 MiB cap, atomic write) | `http` |
//! | `oci-push` | copies or retags an OCI image, index or artifact (Helm charts too) between repositories, with annotations ([`oci`]) | `oci` |
//! | `oci-download` | downloads one layer of an OCI artifact to a file of the work directory ([`oci`]) | `oci` |
//!
//! # Cargo features
//!
//! Each group of steps that needs more than the file editors is a feature; all are on by
//! default. [`register_builtins`] / [`register_builtins_with`] register exactly the steps
//! of the enabled features (the table's last column), and [`BuiltinOptions`] only has the
//! fields of enabled features.
//!
//! | feature | steps | brings |
//! |---|---|---|
//! | `git` | `git-clone`, `git-clear`, `git-commit`, `git-tag`, `git-push` ([`git`]) | kargo-git (gix), kargo-sources' `git` |
//! | `pull-requests` | `git-open-pr`, `git-wait-for-pr`, `git-merge-pr` ([`git::pr`]), `github-push`; implies `git` | reqwest |
//! | `helm` | `helm-update-chart` ([`helm`]), `helm-template` ([`render`]) | kargo-sources' `chart` (reqwest, oci-client) |
//! | `kustomize` | `kustomize-set-image` ([`kustomize`]), `kustomize-build` ([`render`]) | tokio's `process` |
//! | `argocd` | `argocd-update`, `argocd-wait` ([`argocd`]) and `git-push`'s Argo CD refresh | reqwest |
//! | `http` | `http` ([`http`]), `http-download` ([`http_download`]) and the [`verify::HttpVerifier`] | reqwest |
//! | `oci` | `oci-push`, `oci-download` ([`oci`]) | oci-client (reqwest) |
//! | `analysis` | the [`analysis::AnalysisVerifier`]: Argo Rollouts AnalysisTemplates (`web`, `prometheus`) for Stage verification | reqwest |
//!
//! Without any of them (`default-features = false`) the crate is the file-editing steps
//! (`yaml-*`, `json-*`, `toml-*`, `copy`, `delete`, `file-write`, `tar`, `untar`,
//! `flux-update-images`) plus
//! `compose-output`, `fail`, `set-metadata` and `set-freight-alias`, and pulls no gix,
//! reqwest, oci-client or hyper.
//!
//! **Dry runs** ([`kargo_core::step::DryRun`]): `git-push` and `github-push` record what
//! they would push and are `Skipped` with the outputs of a real push; `git-tag` does not
//! write the tag into the shared mirror; `oci-push` reads the source but pushes nothing
//! (`Skipped`, with the outputs a push would give); the steps that change things elsewhere
//! (`git-open-pr`, `git-merge-pr`, `argocd-update`, `set-metadata`, `set-freight-alias`,
//! and `http` with a method other than `GET`, `HEAD` or `OPTIONS`) and those that would
//! wait for such changes (`git-wait-for-pr`, `argocd-wait`) record a note of what they
//! would do and are `Skipped` (`git-open-pr` outputs a placeholder `pr` with `id` 0). The
//! others only read the outside world (`git-clone`, `helm-update-chart` downloading
//! charts, `http-download`, `oci-download`, `kustomize-build` / `helm-template` running
//! local tools) and write in the work directory, so they run as usual.
//!
//! The git steps keep mirrors of the remotes in one cache directory, given by the caller
//! ([`BuiltinOptions::new`]),
//! and ask the promotion's credential provider for git credentials before each network
//! operation.
//!
//! ```
//! let cache = tempfile::tempdir().unwrap();
//! let mut registry = kargo_core::StepRegistry::new();
//! kargo_steps::register_builtins(&mut registry, cache.path()).unwrap();
//! assert!(registry.get("compose-output").is_some());
//! assert!(registry.get("yaml-update").is_some());
//! assert!(registry.get("flux-update-images").is_some());
//! # #[cfg(feature = "git")]
//! assert!(registry.get("git-clone").is_some());
//! # #[cfg(feature = "helm")]
//! assert!(registry.get("helm-update-chart").is_some());
//! ```
#![forbid(unsafe_code)]

#[cfg(feature = "analysis")]
pub mod analysis;
#[cfg(feature = "argocd")]
pub mod argocd;
mod compose_output;
mod fail;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "helm")]
pub mod helm;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod http_download;
#[cfg(any(
    feature = "pull-requests",
    feature = "argocd",
    feature = "http",
    feature = "analysis"
))]
pub mod net;
mod wait_for_approval;

pub mod files;
pub mod flux;
pub mod json;
#[cfg(feature = "kustomize")]
pub mod kustomize;
pub mod metadata;
#[cfg(feature = "oci")]
pub mod oci;
#[cfg(any(feature = "helm", feature = "kustomize"))]
pub mod render;
pub mod set_freight_alias;
pub mod toml;
#[cfg(feature = "http")]
pub mod verify;
pub mod yaml;

#[cfg(feature = "argocd")]
pub use argocd::{ArgoCdOptions, ArgoCdUpdate, ArgoCdWait};
pub use compose_output::ComposeOutput;
pub use fail::{Fail, FailConfig};
pub use files::{FileCopy, FileDelete, FileWrite, Tar, Untar};
pub use flux::{FluxImagePolicy, FluxUpdateImages, FluxUpdateImagesConfig};
#[cfg(feature = "git")]
pub use git::{
    CheckoutInfo, GitCheckouts, GitClear, GitClone, GitCommit, GitProvider, GitPush, GitTag,
};
#[cfg(feature = "helm")]
pub use helm::{ChartUpdate, HelmUpdateChart, HelmUpdateChartConfig};
#[cfg(feature = "http")]
pub use http::{HttpConfig, HttpRequest};
#[cfg(feature = "http")]
pub use http_download::{HttpDownload, HttpDownloadConfig};
pub use json::{JsonParse, JsonUpdate};
#[cfg(feature = "kustomize")]
pub use kustomize::{KustomizeSetImage, KustomizeSetImageConfig, KustomizeSetImageEntry};
pub use metadata::{SetMetadata, SetMetadataConfig};
#[cfg(feature = "oci")]
pub use oci::{OciDownload, OciDownloadConfig, OciPush, OciPushConfig};
#[cfg(feature = "helm")]
pub use render::{HelmTemplate, HelmTemplateConfig};
#[cfg(feature = "kustomize")]
pub use render::{KustomizeBuild, KustomizeBuildConfig};
pub use set_freight_alias::{SetFreightAlias, SetFreightAliasConfig};
pub use toml::{TomlParse, TomlUpdate};
pub use wait_for_approval::{
    APPROVAL_POLL_INTERVAL, ApproverRule, WaitForApproval, WaitForApprovalConfig,
};
pub use yaml::{
    YamlMerge, YamlMergeConfig, YamlParse, YamlParseConfig, YamlParseOutput, YamlUpdate,
    YamlUpdateConfig, YamlUpdateEntry,
};

#[cfg(feature = "git")]
use std::sync::Arc;

use kargo_core::step::{DuplicateStep, StepRegistry};

/// Settings of the built-in steps. Only the fields of the enabled features exist. Nothing
/// here comes from the environment: a front end that wants `KARGO_*` variables reads them
/// and fills these in (see `ArgoCdOptions::from_lookup`, feature `argocd`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltinOptions {
    /// The git settings shared by the git steps: where mirrors are cached, push retries
    /// (feature `git`).
    #[cfg(feature = "git")]
    pub git: kargo_git::GitConfig,
    /// The pull-request steps' settings: API URLs of self-hosted providers (feature
    /// `pull-requests`).
    #[cfg(feature = "pull-requests")]
    pub pull_requests: git::PullRequestOptions,
    /// `github-push`'s operator settings (feature `pull-requests`).
    #[cfg(feature = "pull-requests")]
    pub github_push: git::GitHubPushOptions,
    /// The Argo CD steps' server and token (default: none, the steps are off; feature
    /// `argocd`).
    #[cfg(feature = "argocd")]
    pub argocd: ArgoCdOptions,
}

impl BuiltinOptions {
    /// Defaults with git mirrors under `git_cache_dir` (a directory of the caller's: the
    /// library never picks a shared temporary directory; unused without the `git`
    /// feature), no Argo CD server, the public pull-request APIs.
    pub fn new(git_cache_dir: impl Into<std::path::PathBuf>) -> Self {
        let git_cache_dir = git_cache_dir.into();
        #[cfg(not(feature = "git"))]
        let _ = git_cache_dir;
        Self {
            #[cfg(feature = "git")]
            git: kargo_git::GitConfig::new(git_cache_dir),
            #[cfg(feature = "pull-requests")]
            pull_requests: git::PullRequestOptions::default(),
            #[cfg(feature = "pull-requests")]
            github_push: git::GitHubPushOptions::default(),
            #[cfg(feature = "argocd")]
            argocd: ArgoCdOptions::default(),
        }
    }

    /// Defaults with these git settings (feature `git`).
    #[cfg(feature = "git")]
    pub fn with_git(git: kargo_git::GitConfig) -> Self {
        let mut options = Self::new(git.cache_dir.clone());
        options.git = git;
        options
    }

    /// These options with other Argo CD settings (feature `argocd`).
    #[cfg(feature = "argocd")]
    pub fn argocd(mut self, argocd: ArgoCdOptions) -> Self {
        self.argocd = argocd;
        self
    }

    /// These options with other pull-request settings (feature `pull-requests`).
    #[cfg(feature = "pull-requests")]
    pub fn pull_requests(mut self, pull_requests: git::PullRequestOptions) -> Self {
        self.pull_requests = pull_requests;
        self
    }

    /// These options with other `github-push` settings (feature `pull-requests`).
    #[cfg(feature = "pull-requests")]
    pub fn github_push(mut self, github_push: git::GitHubPushOptions) -> Self {
        self.github_push = github_push;
        self
    }
}

/// Registers every built-in step of the enabled features with default options and git
/// mirrors under `git_cache_dir` ([`BuiltinOptions::new`]). Fails if one of their names is
/// already taken.
pub fn register_builtins(
    registry: &mut StepRegistry,
    git_cache_dir: impl Into<std::path::PathBuf>,
) -> Result<(), DuplicateStep> {
    register_builtins_with(registry, &BuiltinOptions::new(git_cache_dir))
}

/// Registers every built-in step of the enabled features (see the crate documentation's
/// table) with `options`. Fails if one of their names is already taken.
#[cfg_attr(
    not(any(feature = "git", feature = "argocd")),
    allow(
        unused_variables,
        reason = "only the git and Argo CD steps take options"
    )
)]
pub fn register_builtins_with(
    registry: &mut StepRegistry,
    options: &BuiltinOptions,
) -> Result<(), DuplicateStep> {
    registry.register(ComposeOutput)?;
    registry.register(Fail)?;
    registry.register(WaitForApproval)?;
    #[cfg(feature = "git")]
    {
        let git = Arc::new(options.git.clone());
        registry.register(GitClone::new(git))?;
        registry.register(GitClear)?;
        registry.register(GitCommit)?;
        registry.register(GitTag)?;
        #[cfg(feature = "argocd")]
        registry.register(GitPush::with_argocd(options.argocd.clone()))?;
        #[cfg(not(feature = "argocd"))]
        registry.register(GitPush::new())?;
    }
    registry.register(JsonUpdate)?;
    registry.register(JsonParse)?;
    registry.register(TomlUpdate)?;
    registry.register(TomlParse)?;
    registry.register(FileCopy)?;
    registry.register(FileDelete)?;
    registry.register(FileWrite)?;
    registry.register(Tar::new())?;
    registry.register(Untar::new())?;
    registry.register(YamlUpdate)?;
    registry.register(YamlParse)?;
    registry.register(YamlMerge)?;
    registry.register(FluxUpdateImages)?;
    #[cfg(feature = "helm")]
    registry.register(HelmUpdateChart::default())?;
    #[cfg(feature = "kustomize")]
    registry.register(KustomizeSetImage)?;
    #[cfg(feature = "kustomize")]
    registry.register(KustomizeBuild::default())?;
    #[cfg(feature = "helm")]
    registry.register(HelmTemplate::default())?;
    #[cfg(feature = "http")]
    registry.register(HttpRequest)?;
    #[cfg(feature = "http")]
    registry.register(HttpDownload::new())?;
    #[cfg(feature = "oci")]
    registry.register(OciPush::new())?;
    #[cfg(feature = "oci")]
    registry.register(OciDownload)?;
    #[cfg(feature = "pull-requests")]
    {
        let prs = Arc::new(options.pull_requests.clone());
        registry.register(git::GitOpenPr::new(
            Arc::new(options.git.clone()),
            prs.clone(),
        ))?;
        registry.register(git::GitWaitForPr::new(prs.clone()))?;
        registry.register(
            git::GitHubPush::new(Arc::new(options.git.clone()), prs.clone())
                .with_options(options.github_push.clone()),
        )?;
        registry.register(git::GitMergePr::new(prs))?;
    }
    #[cfg(feature = "argocd")]
    {
        registry.register(ArgoCdUpdate::new(options.argocd.clone()))?;
        registry.register(ArgoCdWait::new(options.argocd.clone()))?;
    }
    Ok(())
}

/// In a dry run, notes that the step `would` do something and returns the `Skipped`
/// outcome it should end with; `None` outside dry runs.
pub(crate) fn dry_run_skip(
    ctx: &kargo_core::StepContext,
    would: &str,
) -> Option<kargo_core::StepOutcome> {
    let dry = ctx.dry_run()?;
    let text = format!("dry run: would {would}");
    dry.note(&ctx.alias, &text);
    Some(kargo_core::StepOutcome::skipped().with_message(text))
}

/// The default step settings with `effect` (see [`kargo_core::step::StepEffect`]).
pub(crate) fn with_effect(effect: kargo_core::step::StepEffect) -> kargo_core::step::StepDefaults {
    kargo_core::step::StepDefaults {
        effect,
        ..kargo_core::step::StepDefaults::default()
    }
}
