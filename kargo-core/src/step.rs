//! Promotion steps: the typed [`Step`] trait, its object-safe twin [`DynStep`], the
//! [`StepRegistry`], and what a step receives ([`StepContext`]) and returns ([`StepOutcome`]
//! or [`StepError`]).
//!
//! A step is registered under its `uses` name ([`Step::KIND`]). The runner renders the
//! step's `config` (expressions included), then deserialises it into [`Step::Config`];
//! fields the config type does not know are rejected, whatever the type's serde attributes,
//! so a typo in a manifest is an error instead of a silently ignored setting.
//!
//! ```
//! use kargo_core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
//!
//! /// Writes a greeting file into the work directory.
//! struct Greet;
//!
//! #[derive(serde::Deserialize)]
//! struct GreetConfig { path: String, name: String }
//!
//! #[async_trait::async_trait]
//! impl Step for Greet {
//!     const KIND: &'static str = "greet";
//!     type Config = GreetConfig;
//!     async fn run(&self, ctx: &StepContext, cfg: GreetConfig) -> Result<StepOutcome, StepError> {
//!         let path = ctx.path(&cfg.path)?;
//!         std::fs::write(&path, format!("hello {}\n", cfg.name))
//!             .map_err(|e| StepError::terminal(format!("cannot write {}: {e}", cfg.path)))?;
//!         Ok(StepOutcome::succeeded().with_output("greeted", cfg.name))
//!     }
//! }
//!
//! let mut registry = StepRegistry::new();
//! registry.register(Greet).unwrap();
//! assert!(registry.get("greet").is_some());
//! assert!(registry.register(Greet).is_err()); // duplicates are refused
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::freight::{FreightCollection, FreightReference};
use crate::secret::{CredentialProvider, NoCredentials, SecretStore};
use crate::workdir::{PathError, WorkDir};

/// A promotion step with a typed configuration.
///
/// Implement this for each step; the blanket implementation of [`DynStep`] lets the
/// [`StepRegistry`] hold it as a trait object.
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// The name manifests use in `uses:` (e.g. `yaml-update`).
    const KIND: &'static str;
    /// The step's configuration, deserialised from the rendered `config` block.
    type Config: DeserializeOwned + Send + 'static;

    /// Defaults for retries and timeouts, used when the manifest's `retry` does not say.
    fn defaults(&self) -> StepDefaults {
        StepDefaults::default()
    }

    /// Runs the step once. A [`StepStatus::Running`] outcome asks the runner to call again
    /// after `retry_after`.
    async fn run(&self, ctx: &StepContext, config: Self::Config) -> Result<StepOutcome, StepError>;
}

/// Per-step defaults for the retry policy (Kargo's `DefaultErrorThreshold` and
/// `DefaultTimeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDefaults {
    /// Consecutive errors tolerated before the step gives up (at least 1).
    pub error_threshold: u32,
    /// Soft limit on the time since the step first started; `None` means no limit.
    pub timeout: Option<Duration>,
    /// Whether the step's outputs are also copied to its enclosing task's alias (Kargo's
    /// "task output propagation" capability, used by `compose-output`).
    pub task_output_propagation: bool,
    /// What running the step does beyond its outputs, which decides how a resumed
    /// promotion treats it (see [`StepEffect`]). Defaults to [`StepEffect::External`], the
    /// safe choice for a step that does not say.
    pub effect: StepEffect,
}

impl Default for StepDefaults {
    fn default() -> Self {
        Self {
            error_threshold: 1,
            timeout: None,
            task_output_propagation: false,
            effect: StepEffect::External,
        }
    }
}

/// The kind of effect a step has, as far as resuming an interrupted promotion is
/// concerned ([`Runner::run_resumable`](crate::runner::Runner::run_resumable)).
///
/// A promotion resumed after its runner died does not run its finished steps again,
/// except [`Local`](StepEffect::Local) ones, which are replayed in order to rebuild the
/// work directory that died with the runner. A step that was in flight when the runner
/// died is run again, with the same [`StepContext::execution_id`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum StepEffect {
    /// Changes only the promotion's work directory (or produces outputs): running it again
    /// is harmless, and a resumed promotion replays it to rebuild the work directory (a
    /// clone, a file edit, a local commit, a render).
    Local,
    /// Acts outside the work directory, but running it again has the same result (setting
    /// an Argo CD Application's sources, waiting for a pull request, recording metadata).
    /// Not replayed once finished; run again if it was interrupted.
    Idempotent,
    /// Acts outside the work directory, and the effect must not be repeated once the step
    /// finished (a push, opening or merging a pull request, an HTTP call). The default for
    /// steps that do not say. Never run again once finished; when it was in flight at a
    /// crash it is run again (whether it took effect cannot be known) with the same
    /// [`StepContext::execution_id`], so the receiving side can de-duplicate.
    #[default]
    External,
}

/// The object-safe twin of [`Step`]: configuration arrives as JSON.
#[async_trait]
pub trait DynStep: Send + Sync {
    /// The `uses` name.
    fn kind(&self) -> &str;
    /// Retry defaults.
    fn defaults(&self) -> StepDefaults;
    /// Deserialises `config` and runs the step.
    async fn run_json(&self, ctx: &StepContext, config: Json) -> Result<StepOutcome, StepError>;
}

#[async_trait]
impl<S: Step> DynStep for S {
    fn kind(&self) -> &str {
        S::KIND
    }

    fn defaults(&self) -> StepDefaults {
        Step::defaults(self)
    }

    async fn run_json(&self, ctx: &StepContext, config: Json) -> Result<StepOutcome, StepError> {
        let cfg = decode_config::<S::Config>(config)?;
        self.run(ctx, cfg).await
    }
}

/// Deserialises a rendered step configuration, rejecting unknown fields and naming the
/// key path of the first problem.
pub fn decode_config<T: DeserializeOwned>(config: Json) -> Result<T, StepError> {
    let mut unknown: Vec<String> = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(config, &mut record);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        StepError::invalid_config(path, e.into_inner().to_string())
    })?;
    if let Some(first) = unknown.first() {
        return Err(StepError::invalid_config(
            first.clone(),
            if unknown.len() == 1 {
                format!("unknown field `{first}`")
            } else {
                format!("unknown fields {}", unknown.join(", "))
            },
        ));
    }
    Ok(value)
}

/// Everything a step may use while it runs.
#[derive(Clone)]
pub struct StepContext {
    /// The project (Kubernetes namespace in Kargo).
    pub project: String,
    /// The Stage being promoted.
    pub stage: String,
    /// The promotion's name.
    pub promotion: String,
    /// This step's alias (`step-3`, `update::commit`, ...).
    pub alias: String,
    /// Who asked for the promotion, when known.
    pub actor: Option<String>,
    /// The Freight collection being promoted (one Freight per origin).
    pub freight: FreightCollection,
    /// The Freight that triggered the promotion.
    pub target_freight: Option<FreightReference>,
    /// The step's variables, rendered.
    pub vars: serde_json::Map<String, Json>,
    /// Outputs of the steps that ran before this one, by alias.
    pub outputs: BTreeMap<String, Json>,
    /// How many times this step has been attempted before (0 on the first run).
    pub attempt: u32,
    /// An identifier of this step's execution that stays the same across attempts and
    /// across a resumed run of the promotion (`<promotion name>/<step alias>`): steps with
    /// outside effects send it where the receiving side can de-duplicate (the `http` step
    /// sends it as an `Idempotency-Key` header). Empty when the context was not made by the
    /// runner.
    pub execution_id: String,
    work_dir: WorkDir,
    extensions: Extensions,
    secrets: Arc<dyn SecretStore>,
    credentials: Arc<dyn CredentialProvider>,
    cancel: CancellationToken,
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("project", &self.project)
            .field("stage", &self.stage)
            .field("promotion", &self.promotion)
            .field("alias", &self.alias)
            .field("work_dir", &self.work_dir.root())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl StepContext {
    /// A context for `work_dir` with empty names, no Freight, no secrets and no credentials.
    /// Tests and embedders fill in what they need with the `with_*` methods.
    pub fn new(work_dir: WorkDir) -> Self {
        Self {
            project: String::new(),
            stage: String::new(),
            promotion: String::new(),
            alias: String::new(),
            actor: None,
            freight: FreightCollection::default(),
            target_freight: None,
            vars: serde_json::Map::new(),
            outputs: BTreeMap::new(),
            attempt: 0,
            execution_id: String::new(),
            work_dir,
            extensions: Extensions::default(),
            secrets: Arc::new(BTreeMap::new()),
            credentials: Arc::new(NoCredentials),
            cancel: CancellationToken::new(),
        }
    }

    /// Sets the secret store.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Sets the credential provider.
    pub fn with_credentials(mut self, credentials: Arc<dyn CredentialProvider>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets the cancellation token.
    pub fn with_cancellation(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Shares `extensions` (the promotion-wide state) with this context.
    pub fn with_extensions(mut self, extensions: Extensions) -> Self {
        self.extensions = extensions;
        self
    }

    /// State shared by every step of the promotion, by type (e.g. the git checkouts that
    /// `git-clone` made and `git-commit` uses).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The dry-run recorder when the promotion is a dry run, `None` otherwise. Steps with
    /// effects outside the work directory must check it (see [`DryRun`]).
    pub fn dry_run(&self) -> Option<Arc<DryRun>> {
        self.extensions.get::<DryRun>()
    }

    /// The work directory.
    pub fn work_dir(&self) -> &WorkDir {
        &self.work_dir
    }

    /// Resolves a configured path inside the work directory (see [`WorkDir::resolve`]).
    pub fn path(&self, path: &str) -> Result<std::path::PathBuf, StepError> {
        self.work_dir.resolve(path).map_err(StepError::from)
    }

    /// The project's secrets.
    pub fn secrets(&self) -> &dyn SecretStore {
        self.secrets.as_ref()
    }

    /// The credential provider.
    pub fn credentials(&self) -> &dyn CredentialProvider {
        self.credentials.as_ref()
    }

    /// Cancelled when the promotion is aborted; long-running steps should watch it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// The dry-run marker and recorder.
///
/// When a promotion runs as a dry run ([`Promotion::dry_run`](crate::runner::Promotion)),
/// the runner puts one `DryRun` into the promotion's [`Extensions`]; steps find it with
/// [`StepContext::dry_run`]. **Every step with an effect outside the promotion's work
/// directory (pushing, opening pull requests, calling an API, notifying) must consult it**
/// and, when it is present, not perform the effect: record what it would have done
/// ([`DryRun::record_push`], [`DryRun::record_file`], [`DryRun::note`]) and return the
/// outputs it would have returned (so later steps still render), or refuse with an error
/// if it cannot tell. Steps that only read the outside world (clone, fetch a chart) and
/// write in the work directory need not care.
///
/// The runner copies what was recorded into [`PromotionResult::dry_run`](crate::runner::PromotionResult).
#[derive(Debug, Default)]
pub struct DryRun {
    log: std::sync::Mutex<DryRunLog>,
}

impl DryRun {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DryRunLog> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a file change that would be published.
    pub fn record_file(&self, file: DryRunFile) {
        self.lock().files.push(file);
    }

    /// Records a push that was not made.
    pub fn record_push(&self, push: DryRunPush) {
        self.lock().pushes.push(push);
    }

    /// Records any other effect that was not performed, in words.
    pub fn note(&self, step: impl Into<String>, message: impl Into<String>) {
        self.lock().notes.push(DryRunNote {
            step: step.into(),
            message: message.into(),
        });
    }

    /// What was recorded so far.
    pub fn log(&self) -> DryRunLog {
        self.lock().clone()
    }
}

/// What the steps of a dry run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunLog {
    /// Files that would change, in the order they were recorded.
    #[serde(default)]
    pub files: Vec<DryRunFile>,
    /// Pushes that were not made.
    #[serde(default)]
    pub pushes: Vec<DryRunPush>,
    /// Other effects that were not performed.
    #[serde(default)]
    pub notes: Vec<DryRunNote>,
}

/// One file a dry run would change in a repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunFile {
    /// The alias of the step that recorded it.
    pub step: String,
    /// The repository (credentials removed).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The path in the repository.
    pub path: String,
    /// The unified diff (`--- a/path`, `+++ b/path`, hunks).
    pub diff: String,
}

/// A push a dry run did not make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunPush {
    /// The alias of the step that recorded it.
    pub step: String,
    /// The repository (credentials removed).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The branch it would be pushed to (empty for a tag push).
    pub branch: String,
    /// The tag it would push, for tag pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The commit that would become the branch's tip (or that the tag points to).
    pub commit: String,
    /// That commit's message.
    pub message: String,
    /// Every commit the push would add, oldest first, with its message.
    #[serde(default)]
    pub commits: Vec<(String, String)>,
}

/// An effect of a dry run's step that was not performed, in words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DryRunNote {
    /// The alias of the step.
    pub step: String,
    /// What it would have done.
    pub message: String,
}

/// A type-keyed store shared by the steps of one promotion.
#[derive(Clone, Default)]
pub struct Extensions {
    map: Arc<
        std::sync::Mutex<
            std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
        >,
    >,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions").finish_non_exhaustive()
    }
}

impl Extensions {
    /// The value of type `T`, created with `init` on first use.
    pub fn get_or_insert_with<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = std::any::TypeId::of::<T>();
        if let Some(existing) = map.get(&key).cloned()
            && let Ok(v) = existing.downcast::<T>()
        {
            return v;
        }
        let value = Arc::new(init());
        map.insert(key, value.clone());
        value
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&std::any::TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }
}

/// The status a step run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// The step did its work.
    Succeeded,
    /// There was nothing to do (e.g. nothing to commit).
    Skipped,
    /// The step is waiting on something; call it again after `retry_after`.
    Running {
        /// Suggested delay before the next call.
        retry_after: Duration,
    },
}

/// What a successful step run returns: a status, an optional message and ordered outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// The status.
    pub status: StepStatus,
    /// A human-readable note.
    pub message: Option<String>,
    /// Outputs, readable by later steps as `outputs['<alias>'].<key>`.
    pub outputs: IndexMap<String, Json>,
    /// For `Running`: events that end the wait early ([`Runner::wake`] with one of these
    /// keys polls the step again at once).
    ///
    /// [`Runner::wake`]: crate::runner::Runner::wake
    pub wake_on: Vec<String>,
}

impl StepOutcome {
    fn with_status(status: StepStatus) -> Self {
        Self {
            status,
            message: None,
            outputs: IndexMap::new(),
            wake_on: Vec::new(),
        }
    }

    /// Adds an event key that ends a `Running` wait early (see
    /// [`Runner::wake`](crate::runner::Runner::wake) and
    /// [`pull_request_wake_key`](crate::runner::pull_request_wake_key)).
    pub fn with_wake_on(mut self, key: impl Into<String>) -> Self {
        self.wake_on.push(key.into());
        self
    }

    /// A `Succeeded` outcome without outputs.
    pub fn succeeded() -> Self {
        Self::with_status(StepStatus::Succeeded)
    }

    /// A `Skipped` outcome.
    pub fn skipped() -> Self {
        Self::with_status(StepStatus::Skipped)
    }

    /// A `Running` outcome asking to be polled again after `retry_after`.
    pub fn running(retry_after: Duration) -> Self {
        Self::with_status(StepStatus::Running { retry_after })
    }

    /// Adds an output.
    pub fn with_output(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.outputs.insert(key.into(), value.into());
        self
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// The class of a [`StepError`]; it decides whether the runner retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// The promotion's own logic failed (Kargo's `Failed`, e.g. the `fail` step); not retried.
    Failed,
    /// A technical error that retrying cannot fix; not retried.
    Terminal,
    /// A transient error; retried up to the error threshold.
    Retryable,
    /// The rendered configuration is invalid; not retried.
    InvalidConfig,
    /// Credentials were missing or refused; not retried.
    Unauthorized,
    /// A conflicting concurrent change (e.g. a rejected push); retried.
    Conflict,
    /// The step was cancelled.
    Cancelled,
}

impl StepErrorKind {
    /// Whether the runner may retry an error of this kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable | Self::Conflict)
    }
}

/// An error from a step, with its kind and the context it happened in.
#[derive(Debug, thiserror::Error)]
pub struct StepError {
    /// The kind.
    pub kind: StepErrorKind,
    /// What went wrong.
    pub message: String,
    /// Where: outermost first (e.g. `config.updates[1].key`, a file path).
    pub context: Vec<String>,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl StepError {
    /// An error of `kind`.
    pub fn new(kind: StepErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Vec::new(),
            source: None,
        }
    }

    /// A business failure (`Failed`).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Failed, message)
    }

    /// A terminal technical error.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Terminal, message)
    }

    /// A retryable error.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Retryable, message)
    }

    /// An invalid configuration at `path` (a key path such as `updates[0].key`).
    pub fn invalid_config(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        let mut e = Self::new(StepErrorKind::InvalidConfig, message);
        if !path.is_empty() && path != "." {
            e.context.push(format!("config.{path}"));
        } else {
            e.context.push("config".to_owned());
        }
        e
    }

    /// Adds context (outermost last call ends up first).
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context.insert(0, context.into());
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

impl From<PathError> for StepError {
    fn from(e: PathError) -> Self {
        StepError::terminal(e.to_string())
    }
}

pub use crate::registry::DuplicateStep;

/// The steps a runner can use, by `uses` name. A plain value: build one per runner.
#[derive(Clone, Default, Debug)]
pub struct StepRegistry {
    steps: crate::registry::Named<dyn DynStep>,
}

impl StepRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a typed step under [`Step::KIND`].
    pub fn register<S: Step>(&mut self, step: S) -> Result<&mut Self, DuplicateStep> {
        self.register_dyn(Arc::new(step))
    }

    /// Registers a step object under its [`DynStep::kind`].
    pub fn register_dyn(&mut self, step: Arc<dyn DynStep>) -> Result<&mut Self, DuplicateStep> {
        self.steps.insert(step.kind().to_owned(), step)?;
        Ok(self)
    }

    /// The step registered as `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn DynStep>> {
        self.steps.get(kind)
    }

    /// Registered names, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.steps.names()
    }

    /// The error message for an unknown `uses`: the nearest registered name when it looks
    /// like a typo, a note when the step exists only in Kargo's commercial edition, and
    /// the registered names.
    pub fn unknown_message(&self, kind: &str) -> String {
        crate::unknown_step::unknown_step_message(kind, self.kinds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Cfg {
        path: String,
        #[serde(default)]
        updates: Vec<Upd>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Upd {
        key: String,
        value: Json,
    }

    #[test]
    fn decode_rejects_unknown_fields_with_path() {
        let e = decode_config::<Cfg>(serde_json::json!({"path": "a", "pth": 1})).unwrap_err();
        assert_eq!(e.kind, StepErrorKind::InvalidConfig);
        assert!(e.to_string().contains("unknown field `pth`"), "{e}");
        let e = decode_config::<Cfg>(
            serde_json::json!({"path": "a", "updates": [{"key": "k", "value": 1, "vaule": 2}]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("updates.0.vaule"), "{e}");
    }

    #[test]
    fn decode_names_the_path_of_a_type_error() {
        let e = decode_config::<Cfg>(
            serde_json::json!({"path": "a", "updates": [{"key": 3, "value": 1}]}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("config.updates[0].key"), "{e}");
    }

    #[test]
    fn unknown_kind_lists_known_steps() {
        struct A;
        #[async_trait]
        impl Step for A {
            const KIND: &'static str = "a-step";
            type Config = Json;
            async fn run(&self, _: &StepContext, _: Json) -> Result<StepOutcome, StepError> {
                Ok(StepOutcome::succeeded())
            }
        }
        let mut r = StepRegistry::new();
        r.register(A).unwrap();
        assert_eq!(r.register(A).unwrap_err(), DuplicateStep("a-step".into()));
        assert!(r.unknown_message("b").contains("registered steps: a-step"));
    }
}
