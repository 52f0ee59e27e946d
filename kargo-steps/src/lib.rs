//! # kargo-steps
//!
//! The built-in promotion steps of kargo-rs, with Kargo's step names and configuration
//! fields so existing promotion templates run unchanged. [`register_builtins`] (default
//! options) and [`register_builtins_with`] are the one list of them.
//!
//! | step | what it does |
//! |---|---|
//! | `compose-output` | outputs its configuration as is; inside a task the outputs are also visible as the task's outputs |
//! | `fail` | fails the promotion with a message (use it with `if`) |
//! | `git-clone` | lazy checkouts of branches, tags or commits; files appear when a step opens them |
//! | `git-clear` | empties a checkout |
//! | `git-commit` | commits every change of a checkout (`Skipped` when there is none) |
//! | `git-tag` | tags a checkout's commit (in a dry run: only checks and notes it) |
//! | `git-push` | pushes a branch (rebasing onto remote changes and retrying) or a tag (in a dry run: records the commit and per-file diffs, pushes nothing) |
//! | `git-open-pr` / `git-wait-for-pr` / `git-merge-pr` | pull requests on GitHub, GitLab, Gitea, Bitbucket, Azure DevOps ([`git::pr`]) |
//! | `yaml-update` | sets scalar values in a YAML file, keeping every other byte ([`yaml::set_values`]) |
//! | `yaml-parse` | evaluates expressions over a YAML file's content into outputs |
//! | `yaml-merge` | deep-merges YAML files into one |
//! | `json-update` / `toml-update` | sets values in a JSON(C) / TOML file, keeping its formatting |
//! | `json-parse` / `toml-parse` | outputs values computed from a JSON / TOML file with expressions |
//! | `copy` | copies a file or directory (gitignore-style `ignore`, symbolic links skipped) |
//! | `delete` | deletes paths or glob matches (a symbolic link is deleted as a link) |
//! | `file-write` | writes a file from the configuration |
//! | `tar` / `untar` | creates / safely extracts a (gzipped) tar archive, with size caps |
//! | `helm-update-chart` | updates an umbrella chart's dependencies: `Chart.yaml` versions, `Chart.lock`, `charts/` archives |
//! | `kustomize-set-image` | sets image overrides in a Kustomization, keeping its formatting ([`kustomize::set_images`]) |
//! | `kustomize-build` | renders a Kustomization with `kustomize` / `kubectl kustomize` into a file or one file per resource |
//! | `helm-template` | renders a Helm chart with `helm template` into a file or a directory |
//! | `argocd-update` / `argocd-wait` | updates, refreshes and syncs Argo CD Applications / waits for their health ([`argocd`]) |
//! | `set-metadata` | upserts Stage / Freight metadata in the pipeline's state store; registered by the embedder with its store ([`metadata`]) |
//! | `http` | sends an HTTP request and decides from the response with expressions (link-local and metadata destinations refused) |
//!
//! **Dry runs** ([`kargo_core::step::DryRun`]): `git-push` records what it would push and
//! is `Skipped` with the outputs of a real push; `git-tag` does not write the tag into the
//! shared mirror; the steps that change things elsewhere (`git-open-pr`, `git-merge-pr`,
//! `argocd-update`, `set-metadata`, and `http` with a method other than `GET`, `HEAD` or
//! `OPTIONS`) and those that would wait for such changes (`git-wait-for-pr`, `argocd-wait`)
//! record a note of what they would do and are `Skipped` (`git-open-pr` outputs a
//! placeholder `pr` with `id` 0). The others only read the outside world (`git-clone`,
//! `helm-update-chart` downloading charts, `kustomize-build` / `helm-template` running local
//! tools) and write in the work directory, so they run as usual.
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
//! assert!(registry.get("git-clone").is_some());
//! assert!(registry.get("helm-update-chart").is_some());
//! ```
#![forbid(unsafe_code)]

pub mod argocd;
mod compose_output;
mod fail;
pub mod git;
pub mod helm;
pub mod http;
pub mod net;

pub mod files;
pub mod json;
pub mod kustomize;
pub mod metadata;
pub mod render;
pub mod toml;
pub mod verify;
pub mod yaml;

pub use argocd::{ArgoCdOptions, ArgoCdUpdate, ArgoCdWait};
pub use compose_output::ComposeOutput;
pub use fail::{Fail, FailConfig};
pub use files::{FileCopy, FileDelete, FileWrite, Tar, Untar};
pub use git::{
    CheckoutInfo, GitCheckouts, GitClear, GitClone, GitCommit, GitProvider, GitPush, GitTag,
};
pub use helm::{ChartUpdate, HelmUpdateChart, HelmUpdateChartConfig};
pub use http::{HttpConfig, HttpRequest};
pub use json::{JsonParse, JsonUpdate};
pub use kustomize::{KustomizeSetImage, KustomizeSetImageConfig, KustomizeSetImageEntry};
pub use metadata::{SetMetadata, SetMetadataConfig};
pub use render::{HelmTemplate, HelmTemplateConfig, KustomizeBuild, KustomizeBuildConfig};
pub use toml::{TomlParse, TomlUpdate};
pub use yaml::{
    YamlMerge, YamlMergeConfig, YamlParse, YamlParseConfig, YamlParseOutput, YamlUpdate,
    YamlUpdateConfig, YamlUpdateEntry,
};

use std::sync::Arc;

use kargo_core::step::{DuplicateStep, StepRegistry};

/// Settings of the built-in steps. Nothing here comes from the environment: a front end
/// that wants `KARGO_*` variables reads them and fills these in (see
/// [`ArgoCdOptions::from_lookup`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltinOptions {
    /// The git settings shared by the git steps: where mirrors are cached, push retries.
    pub git: kargo_git::GitConfig,
    /// The pull-request steps' settings: API URLs of self-hosted providers.
    pub pull_requests: git::PullRequestOptions,
    /// The Argo CD steps' server and token (default: none, the steps are off).
    pub argocd: ArgoCdOptions,
}

impl BuiltinOptions {
    /// Defaults with git mirrors under `git_cache_dir` (a directory of the caller's: the
    /// library never picks a shared temporary directory), no Argo CD server, the public
    /// pull-request APIs.
    pub fn new(git_cache_dir: impl Into<std::path::PathBuf>) -> Self {
        Self::with_git(kargo_git::GitConfig::new(git_cache_dir))
    }

    /// Defaults with these git settings.
    pub fn with_git(git: kargo_git::GitConfig) -> Self {
        Self {
            git,
            pull_requests: git::PullRequestOptions::default(),
            argocd: ArgoCdOptions::default(),
        }
    }

    /// These options with other Argo CD settings.
    pub fn argocd(mut self, argocd: ArgoCdOptions) -> Self {
        self.argocd = argocd;
        self
    }

    /// These options with other pull-request settings.
    pub fn pull_requests(mut self, pull_requests: git::PullRequestOptions) -> Self {
        self.pull_requests = pull_requests;
        self
    }
}

/// Registers every built-in step with default options and git mirrors under
/// `git_cache_dir` ([`BuiltinOptions::new`]). Fails if one of their names is already taken.
pub fn register_builtins(
    registry: &mut StepRegistry,
    git_cache_dir: impl Into<std::path::PathBuf>,
) -> Result<(), DuplicateStep> {
    register_builtins_with(registry, &BuiltinOptions::new(git_cache_dir))
}

/// Registers every built-in step with `options`. Fails if one of their names is already
/// taken.
pub fn register_builtins_with(
    registry: &mut StepRegistry,
    options: &BuiltinOptions,
) -> Result<(), DuplicateStep> {
    let git = Arc::new(options.git.clone());
    registry.register(ComposeOutput)?;
    registry.register(Fail)?;
    registry.register(GitClone::new(git))?;
    registry.register(GitClear)?;
    registry.register(GitCommit)?;
    registry.register(GitTag)?;
    registry.register(GitPush::with_argocd(options.argocd.clone()))?;
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
    registry.register(HelmUpdateChart::default())?;
    registry.register(KustomizeSetImage)?;
    registry.register(KustomizeBuild::default())?;
    registry.register(HelmTemplate::default())?;
    registry.register(HttpRequest)?;
    let prs = Arc::new(options.pull_requests.clone());
    registry.register(git::GitOpenPr::new(
        Arc::new(options.git.clone()),
        prs.clone(),
    ))?;
    registry.register(git::GitWaitForPr::new(prs.clone()))?;
    registry.register(git::GitMergePr::new(prs))?;
    registry.register(ArgoCdUpdate::new(options.argocd.clone()))?;
    registry.register(ArgoCdWait::new(options.argocd.clone()))?;
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
