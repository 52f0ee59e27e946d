//! The promotion runner: runs a Stage's promotion template for a Freight collection with
//! Kargo's rules.
//!
//! - **Inflation** ([`inflate_steps`]): `task:` steps are replaced by the steps of their
//!   PromotionTask / ClusterPromotionTask. Aliases are the step's `as` or `step-<n>` /
//!   `task-<n>` (1-based); a task's steps are `<task alias>::<inner alias>`. A task variable
//!   with a value is a default (skipped when a promotion variable of that name has a
//!   value); one without a value must be supplied by the task step or a promotion variable.
//! - **Variables**: Stage vars, then template vars (these see `ctx` and earlier vars), then
//!   per step: task defaults, the task step's vars, the step's own vars (these also see
//!   `outputs` and `task.outputs`). Later definitions win.
//! - **`if`**: evaluated once, before the step first runs; must be a boolean. An absent
//!   `if` runs the step only while no earlier step (without `continueOnError`) failed.
//!   `always()`, `failure()`, `success()` and `status(alias)` are available there and in
//!   `config`.
//! - **Errors**: an unknown `uses`, an `if` that fails or is not boolean, or a config that
//!   does not render makes the step `Errored` and execution continues, so `if: always()`
//!   clean-up steps still run.
//! - **Retries**: a retryable error is retried until `retry.errorThreshold` consecutive
//!   errors (default: the step's, else 1); `retry.timeout` bounds the time since the step
//!   first started, checked after each attempt; `Running` steps are polled again after
//!   their `retry_after` (never sooner than [`RunnerOptions::min_retry_after`]).
//! - **Phase**: the worst status among steps without `continueOnError`
//!   (Succeeded < Skipped < Running < Aborted < Failed < Errored; Skipped counts as
//!   Succeeded). Cancelling aborts the current step and yields `Aborted`.
//!
//! Every step's outputs and status are recorded in the [`PromotionResult`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::MAX_TEMPLATE_STEPS;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use minijinja::value::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::expr::{EvalData, ExprEngine, OriginSubscriptions, Scope, StepStatusEntry, from_json};
use crate::freight::{FreightCollection, FreightReference};
use crate::loader::ManifestSet;
use crate::model::{
    ExpressionVariable, PromotionStep, PromotionTaskKind, PromotionTaskReference,
    PromotionTaskSpec, SubscriptionSource,
};
use crate::secret::{CredentialProvider, NoCredentials, SecretStore};
use crate::step::{StepContext, StepErrorKind, StepRegistry, StepStatus};
use crate::workdir::WorkDir;

/// The separator between a task's alias and its steps' aliases.
pub const ALIAS_SEPARATOR: &str = "::";

/// A step after task inflation: what the runner executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The full alias (`step-2`, `update::commit`).
    pub alias: String,
    /// The step kind.
    pub uses: String,
    /// The `if` template, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_expr: Option<String>,
    /// Whether a failure of this step is ignored for `failure()` and the final phase.
    #[serde(default)]
    pub continue_on_error: bool,
    /// `retry.errorThreshold`, when set (0 means "the step's default").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<u32>,
    /// `retry.timeout`, when set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Step variables in evaluation order (task defaults, task step vars, own vars).
    #[serde(default)]
    pub vars: Vec<ExpressionVariable>,
    /// The configuration template.
    #[serde(default)]
    pub config: serde_json::Map<String, Json>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs: Option<f64> = Option::deserialize(d)?;
        Ok(secs.and_then(|s| Duration::try_from_secs_f64(s).ok()))
    }
}

/// Why a template could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// A task step names a task that does not exist.
    #[error("step {alias:?}: {kind} {name:?} not found")]
    TaskNotFound {
        /// The task step's alias.
        alias: String,
        /// The task kind.
        kind: String,
        /// The task name.
        name: String,
    },
    /// A task variable has no default and no value was supplied.
    #[error("step {alias:?}: missing value for variable {var:?} of task {task:?}")]
    MissingVariable {
        /// The task step's alias.
        alias: String,
        /// The task.
        task: String,
        /// The variable.
        var: String,
    },
    /// A step has neither `uses` nor `task`, or a task's step references another task.
    #[error("step {alias:?}: {message}")]
    InvalidStep {
        /// The step's alias.
        alias: String,
        /// What is wrong.
        message: String,
    },
    /// Two steps share an alias.
    #[error("duplicate step alias {0:?}")]
    DuplicateAlias(String),
}

fn default_alias(step: &PromotionStep, i: usize) -> String {
    match (&step.alias, &step.task) {
        (Some(a), _) if !a.is_empty() => a.clone(),
        (_, Some(_)) => format!("task-{}", i + 1),
        _ => format!("step-{}", i + 1),
    }
}

/// Expands `task:` steps of a template into the task's steps (Kargo's `InflateSteps`).
///
/// `promotion_vars` are the Stage's vars followed by the template's vars; `lookup` finds a
/// PromotionTask (in the Stage's project) or ClusterPromotionTask.
pub fn inflate_steps<'t>(
    steps: &[PromotionStep],
    promotion_vars: &[ExpressionVariable],
    lookup: impl Fn(&PromotionTaskReference) -> Option<&'t PromotionTaskSpec>,
) -> Result<Vec<PlannedStep>, InflateError> {
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let alias = default_alias(step, i);
        match (&step.uses, &step.task) {
            (Some(_), None) if out.len() >= MAX_TEMPLATE_STEPS => {
                return Err(too_many_steps(alias));
            }
            (Some(uses), None) => out.push(planned(step, alias, uses.clone(), step.vars.clone())),
            (None, Some(task_ref)) => {
                let kind = match task_ref.kind {
                    PromotionTaskKind::ClusterPromotionTask => "ClusterPromotionTask",
                    _ => "PromotionTask",
                };
                let task = lookup(task_ref).ok_or_else(|| InflateError::TaskNotFound {
                    alias: alias.clone(),
                    kind: kind.to_owned(),
                    name: task_ref.name.clone(),
                })?;
                let vars = task_vars(&task.vars, promotion_vars, &step.vars).map_err(|var| {
                    InflateError::MissingVariable {
                        alias: alias.clone(),
                        task: task_ref.name.clone(),
                        var,
                    }
                })?;
                for (j, inner) in task.steps.iter().enumerate() {
                    let inner_alias = default_alias(inner, j);
                    let full = format!("{alias}{ALIAS_SEPARATOR}{inner_alias}");
                    let Some(uses) = &inner.uses else {
                        return Err(InflateError::InvalidStep {
                            alias: full,
                            message: "steps of a task must set `uses` (tasks cannot reference other tasks)".into(),
                        });
                    };
                    if out.len() >= MAX_TEMPLATE_STEPS {
                        return Err(too_many_steps(full));
                    }
                    let mut v = vars.clone();
                    v.extend(inner.vars.iter().cloned());
                    out.push(planned(inner, full, uses.clone(), v));
                }
            }
            _ => {
                return Err(InflateError::InvalidStep {
                    alias,
                    message: "a step must set exactly one of `uses` and `task`".into(),
                });
            }
        }
    }
    let mut seen = HashSet::new();
    for s in &out {
        if !seen.insert(s.alias.as_str()) {
            return Err(InflateError::DuplicateAlias(s.alias.clone()));
        }
    }
    Ok(out)
}

/// The error of a template that inflates to more than [`MAX_TEMPLATE_STEPS`] steps.
fn too_many_steps(alias: String) -> InflateError {
    InflateError::InvalidStep {
        alias,
        message: format!(
            "the template inflates to more than {MAX_TEMPLATE_STEPS} steps (the limit; \
             see kargo_core::limits)"
        ),
    }
}

fn planned(
    step: &PromotionStep,
    alias: String,
    uses: String,
    vars: Vec<ExpressionVariable>,
) -> PlannedStep {
    PlannedStep {
        alias,
        uses,
        if_expr: step.if_expr.clone().filter(|s| !s.is_empty()),
        continue_on_error: step.continue_on_error,
        error_threshold: step.retry.as_ref().and_then(|r| r.error_threshold),
        timeout: step
            .retry
            .as_ref()
            .and_then(|r| r.timeout.as_ref())
            .map(|d| d.0),
        vars,
        config: step.config.clone().unwrap_or_default(),
    }
}

/// Kargo's `promotionTaskVarsToStepVars`: task defaults unless a promotion var with a value
/// overrides them, required task vars must come from the task step (or a promotion var),
/// then the task step's vars.
fn task_vars(
    task: &[ExpressionVariable],
    promotion: &[ExpressionVariable],
    step: &[ExpressionVariable],
) -> Result<Vec<ExpressionVariable>, String> {
    let promo: HashSet<&str> = promotion
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    let given: HashSet<&str> = step
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    let mut out = Vec::new();
    for v in task {
        if promo.contains(v.name.as_str()) {
            continue;
        }
        if !v.value.is_empty() {
            out.push(v.clone());
        } else if !given.contains(v.name.as_str()) {
            return Err(v.name.clone());
        }
    }
    out.extend(step.iter().cloned());
    Ok(out)
}

/// What a Stage's promotion needs besides the Freight: its variables, its inflated steps
/// and the origins it requests (with their Warehouses' subscriptions).
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// The project.
    pub project: String,
    /// The Stage.
    pub stage: String,
    /// Stage vars followed by template vars.
    pub vars: Vec<ExpressionVariable>,
    /// The inflated steps.
    pub steps: Vec<PlannedStep>,
    /// The requested origins and the subscriptions of their Warehouses.
    pub requested: Vec<OriginSubscriptions>,
}

/// Why a Stage's promotion could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No such Stage.
    #[error("Stage {project}/{stage} not found")]
    StageNotFound {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
    },
    /// The Stage has no promotion steps (a control-flow Stage).
    #[error("Stage {project}/{stage} has no promotion template")]
    NoPromotionTemplate {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
    },
    /// Task inflation failed.
    #[error("Stage {project}/{stage}: {source}")]
    Inflate {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
        /// The inflation error.
        source: Box<InflateError>,
    },
}

/// Plans the promotion of a Stage from a manifest set: vars, inflated steps and requested
/// origins.
pub fn plan_stage(set: &ManifestSet, project: &str, stage: &str) -> Result<StagePlan, PlanError> {
    let s = set
        .stage(project, stage)
        .ok_or_else(|| PlanError::StageNotFound {
            project: project.to_owned(),
            stage: stage.to_owned(),
        })?;
    let template = s
        .spec
        .promotion_template
        .as_ref()
        .filter(|t| !t.spec.steps.is_empty())
        .ok_or_else(|| PlanError::NoPromotionTemplate {
            project: project.to_owned(),
            stage: stage.to_owned(),
        })?;
    let mut vars = s.spec.vars.clone();
    vars.extend(template.spec.vars.iter().cloned());
    let steps = inflate_steps(&template.spec.steps, &vars, |r| match r.kind {
        PromotionTaskKind::ClusterPromotionTask => {
            set.cluster_promotion_task(&r.name).map(|t| &t.spec)
        }
        _ => set.promotion_task(project, &r.name).map(|t| &t.spec),
    })
    .map_err(|source| PlanError::Inflate {
        project: project.to_owned(),
        stage: stage.to_owned(),
        source: Box::new(source),
    })?;
    let requested = s
        .spec
        .requested_freight
        .iter()
        .map(|req| {
            let mut subs = OriginSubscriptions {
                origin: req.origin.clone(),
                ..OriginSubscriptions::default()
            };
            if let Some(wh) = set.warehouse(project, &req.origin.name) {
                for sub in &wh.spec.subscriptions {
                    match &sub.source {
                        SubscriptionSource::Image(i) => subs.images.push(i.repo_url.clone()),
                        SubscriptionSource::Chart(c) => {
                            subs.charts.push((c.repo_url.clone(), c.name.clone()));
                        }
                        SubscriptionSource::Git(g) => subs.git.push(g.repo_url.clone()),
                        SubscriptionSource::Generic(_) => {
                            subs.generic.push(sub.name.clone().unwrap_or_default());
                        }
                    }
                }
            }
            subs
        })
        .collect();
    Ok(StagePlan {
        project: project.to_owned(),
        stage: stage.to_owned(),
        vars,
        steps,
        requested,
    })
}

/// A promotion name as Kargo makes them: `<stage>.<ULID>.<first 7 characters of the
/// Freight ID>`, lowercase; the ULID makes lexical order creation order.
pub fn promotion_name(stage: &str, freight: &str) -> String {
    use sha1::{Digest, Sha1};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let now = Utc::now();
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    let mut h = Sha1::new();
    h.update(now.timestamp_nanos_opt().unwrap_or(0).to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let rand = h.finalize();
    // 48-bit time + 80 random bits = 128 bits = 26 base-32 characters (first one 3 bits).
    let mut value: u128 = u128::from(ms) << 80;
    for (i, b) in rand.iter().take(10).enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut ulid = [0u8; 26];
    for (i, c) in ulid.iter_mut().enumerate().rev() {
        *c = ALPHABET[(value & 31) as usize];
        value >>= 5;
        let _ = i;
    }
    let short: String = freight.chars().take(7).collect();
    format!(
        "{}.{}.{}",
        stage.to_lowercase(),
        String::from_utf8_lossy(&ulid),
        short.to_lowercase()
    )
}

/// The phase of a promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromotionPhase {
    /// Not started.
    Pending,
    /// Running.
    Running,
    /// Every counted step succeeded or was skipped.
    Succeeded,
    /// A counted step failed.
    Failed,
    /// A counted step errored.
    Errored,
    /// The promotion was cancelled.
    Aborted,
}

impl PromotionPhase {
    /// Whether the phase is final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Errored | Self::Aborted
        )
    }
}

impl fmt::Display for PromotionPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The status of one step execution, as recorded (Kargo's `PromotionStepStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StepExecutionStatus {
    /// Succeeded.
    Succeeded,
    /// Skipped (its `if` was false, an earlier step failed, or nothing to do).
    Skipped,
    /// Still running (only seen in results of aborted promotions).
    Running,
    /// Cancelled while running.
    Aborted,
    /// Failed (business failure).
    Failed,
    /// Errored (technical failure).
    Errored,
}

impl StepExecutionStatus {
    /// Kargo's status string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Skipped => "Skipped",
            Self::Running => "Running",
            Self::Aborted => "Aborted",
            Self::Failed => "Failed",
            Self::Errored => "Errored",
        }
    }

    fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Errored)
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The alias.
    pub alias: String,
    /// The step kind.
    pub uses: String,
    /// The final status.
    pub status: StepExecutionStatus,
    /// A message (errors, skip reasons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the step first started (absent for steps that never ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Errors counted against the threshold.
    pub error_count: u32,
    /// How many times the step ran.
    pub attempts: u32,
    /// Whether the step had `continueOnError`.
    pub continue_on_error: bool,
    /// The step's outputs.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, Json>,
}

/// The outcome of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionResult {
    /// The final phase.
    pub phase: PromotionPhase,
    /// A summary message for non-successful phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every step, in order.
    pub steps: Vec<StepRecord>,
    /// Shared state: outputs by alias (including propagated task outputs).
    pub state: BTreeMap<String, Json>,
    /// For a dry run ([`Promotion::dry_run`]): what the steps recorded instead of
    /// performing outside effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<crate::step::DryRunLog>,
    /// When the promotion started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

impl PromotionResult {
    /// The record of the step with `alias`.
    pub fn step(&self, alias: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.alias == alias)
    }
}

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The shortest wait before polling a `Running` step again (Kargo: 10 s).
    pub min_retry_after: Duration,
    /// The wait before retrying a step that returned a retryable error; doubles per
    /// consecutive error, up to [`RunnerOptions::max_error_backoff`].
    pub error_backoff: Duration,
    /// The longest wait between error retries.
    pub max_error_backoff: Duration,
    /// Kargo's UI base URL, exposed as `ctx.uiBaseUrl`.
    pub ui_base_url: String,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            min_retry_after: Duration::from_secs(10),
            error_backoff: Duration::from_secs(1),
            max_error_backoff: Duration::from_secs(60),
            ui_base_url: String::new(),
        }
    }
}

/// One promotion to run.
#[derive(Clone)]
pub struct Promotion {
    /// The project.
    pub project: String,
    /// The Stage.
    pub stage: String,
    /// The promotion's name.
    pub name: String,
    /// Who asked for it.
    pub actor: Option<String>,
    /// Whether it is a rollback (`ctx.meta.promotion.rollback`).
    pub rollback: bool,
    /// Whether it is a dry run (`ctx.meta.promotion.dryRun`): the runner puts a
    /// [`DryRun`](crate::step::DryRun) recorder into the steps' extensions, steps with
    /// outside effects record them there instead of performing them, and the result's
    /// [`PromotionResult::dry_run`] holds what they recorded.
    pub dry_run: bool,
    /// The Freight collection to promote.
    pub freight: FreightCollection,
    /// The Freight that triggered the promotion.
    pub target_freight: Option<FreightReference>,
    /// The alias of the target Freight.
    pub target_freight_alias: Option<String>,
    /// Stage vars followed by template vars.
    pub vars: Vec<ExpressionVariable>,
    /// The inflated steps.
    pub steps: Vec<PlannedStep>,
    /// The Stage's requested origins and their subscriptions (for `imageFrom` & co).
    pub requested: Vec<OriginSubscriptions>,
    /// Freight metadata, for `freightMetadata()`.
    pub freight_metadata: BTreeMap<String, serde_json::Map<String, Json>>,
    /// Stage metadata, for `stageMetadata()`.
    pub stage_metadata: BTreeMap<String, serde_json::Map<String, Json>>,
    /// The work directory.
    pub work_dir: WorkDir,
    /// Secrets.
    pub secrets: Arc<dyn SecretStore>,
    /// Credentials.
    pub credentials: Arc<dyn CredentialProvider>,
}

impl fmt::Debug for Promotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promotion")
            .field("project", &self.project)
            .field("stage", &self.stage)
            .field("name", &self.name)
            .field("steps", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl Promotion {
    /// A promotion of a planned Stage for `freight`, triggered by `target`.
    pub fn from_plan(
        plan: &StagePlan,
        work_dir: WorkDir,
        freight: FreightCollection,
        target: Option<FreightReference>,
    ) -> Self {
        let name = promotion_name(
            &plan.stage,
            target.as_ref().map(|t| t.name.as_str()).unwrap_or(""),
        );
        Self {
            project: plan.project.clone(),
            stage: plan.stage.clone(),
            name,
            vars: plan.vars.clone(),
            requested: plan.requested.clone(),
            freight,
            target_freight: target,
            ..Self::new(work_dir, plan.steps.clone())
        }
    }

    /// A promotion of `steps` in `work_dir` with no Freight, vars, secrets or credentials.
    pub fn new(work_dir: WorkDir, steps: Vec<PlannedStep>) -> Self {
        Self {
            project: String::new(),
            stage: String::new(),
            name: String::new(),
            actor: None,
            rollback: false,
            dry_run: false,
            freight: FreightCollection::default(),
            target_freight: None,
            target_freight_alias: None,
            vars: Vec::new(),
            steps,
            requested: Vec::new(),
            freight_metadata: BTreeMap::new(),
            stage_metadata: BTreeMap::new(),
            work_dir,
            secrets: Arc::new(BTreeMap::<String, BTreeMap<String, String>>::new()),
            credentials: Arc::new(NoCredentials),
        }
    }
}

/// Runs promotions with a step registry and an expression engine.
#[derive(Clone)]
pub struct Runner {
    registry: Arc<StepRegistry>,
    engine: Arc<ExprEngine>,
    options: RunnerOptions,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("registry", &self.registry)
            .field("options", &self.options)
            .finish()
    }
}

struct Exec {
    records: Vec<StepRecord>,
    state: BTreeMap<String, Json>,
}

impl Exec {
    fn statuses(&self) -> Vec<StepStatusEntry> {
        self.records
            .iter()
            .filter(|r| r.started_at.is_some() || r.status != StepExecutionStatus::Running)
            .map(|r| StepStatusEntry {
                alias: r.alias.clone(),
                status: r.status.as_str().to_owned(),
                continue_on_error: r.continue_on_error,
            })
            .collect()
    }

    fn has_failure(&self) -> bool {
        self.records
            .iter()
            .any(|r| !r.continue_on_error && r.status.is_failure())
    }
}

impl Runner {
    /// A runner with default options.
    pub fn new(registry: StepRegistry) -> Self {
        Self {
            registry: Arc::new(registry),
            engine: Arc::new(ExprEngine::new()),
            options: RunnerOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the expression engine.
    pub fn with_engine(mut self, engine: Arc<ExprEngine>) -> Self {
        self.engine = engine;
        self
    }

    /// The step registry.
    pub fn registry(&self) -> &StepRegistry {
        &self.registry
    }

    /// The expression engine.
    pub fn engine(&self) -> &ExprEngine {
        &self.engine
    }

    /// Runs a promotion to completion.
    pub async fn run(&self, promotion: &Promotion) -> PromotionResult {
        self.run_with_cancel(promotion, CancellationToken::new())
            .await
    }

    /// Runs a promotion; cancelling `cancel` aborts it.
    pub async fn run_with_cancel(
        &self,
        promotion: &Promotion,
        cancel: CancellationToken,
    ) -> PromotionResult {
        let span = tracing::info_span!(
            "promotion",
            project = %promotion.project,
            stage = %promotion.stage,
            promotion = %promotion.name,
        );
        self.run_inner(promotion, cancel).instrument(span).await
    }

    async fn run_inner(&self, p: &Promotion, cancel: CancellationToken) -> PromotionResult {
        let started_at = Utc::now();
        let mut exec = Exec {
            records: p
                .steps
                .iter()
                .map(|s| StepRecord {
                    alias: s.alias.clone(),
                    uses: s.uses.clone(),
                    status: StepExecutionStatus::Running,
                    message: None,
                    started_at: None,
                    finished_at: None,
                    error_count: 0,
                    attempts: 0,
                    continue_on_error: s.continue_on_error,
                    outputs: IndexMap::new(),
                })
                .collect(),
            state: BTreeMap::new(),
        };
        let base = self.base_data(p);
        let ctx_value = self.ctx_value(p);
        let extensions = crate::step::Extensions::default();
        // Steps that resolve artifacts the way `imageFrom` does (kustomize-set-image's
        // ambiguity rule) read the requested origins from here.
        extensions.get_or_insert_with(|| p.requested.clone());
        let dry_run = p
            .dry_run
            .then(|| extensions.get_or_insert_with(crate::step::DryRun::new));

        // Promotion-level vars: ctx and earlier vars only.
        let promo_vars =
            match self.eval_vars(&p.vars, &ctx_value, &base, serde_json::Map::new(), None) {
                Ok(v) => v,
                Err(msg) => {
                    tracing::warn!(error = %msg, "promotion variables failed to evaluate");
                    for r in &mut exec.records {
                        r.status = StepExecutionStatus::Skipped;
                    }
                    return PromotionResult {
                        phase: PromotionPhase::Errored,
                        message: Some(msg),
                        steps: exec.records,
                        state: exec.state,
                        dry_run: dry_run.map(|d| d.log()),
                        started_at,
                        finished_at: Utc::now(),
                    };
                }
            };

        let mut aborted = false;
        for (i, step) in p.steps.iter().enumerate() {
            if cancel.is_cancelled() {
                aborted = true;
                break;
            }
            let span = tracing::info_span!("step", alias = %step.alias, uses = %step.uses);
            let outcome = self
                .run_step(
                    p,
                    step,
                    i,
                    &mut exec,
                    &promo_vars,
                    &ctx_value,
                    &base,
                    &cancel,
                    &extensions,
                )
                .instrument(span)
                .await;
            if outcome == StepExecutionStatus::Aborted {
                aborted = true;
                break;
            }
        }

        let (phase, message) = if aborted {
            for r in &mut exec.records {
                if r.started_at.is_none() && r.status == StepExecutionStatus::Running {
                    r.status = StepExecutionStatus::Skipped;
                    r.message = Some("not run: the promotion was aborted".into());
                }
            }
            (
                PromotionPhase::Aborted,
                Some("the promotion was aborted".to_owned()),
            )
        } else {
            final_phase(&exec.records)
        };
        tracing::info!(phase = %phase, "promotion finished");
        PromotionResult {
            phase,
            message,
            steps: exec.records,
            state: exec.state,
            dry_run: dry_run.map(|d| d.log()),
            started_at,
            finished_at: Utc::now(),
        }
    }

    fn base_data(&self, p: &Promotion) -> EvalData {
        EvalData {
            freight: p.freight.clone(),
            requested: p.requested.clone(),
            secrets: Some(p.secrets.clone()),
            freight_metadata: p.freight_metadata.clone(),
            stage_metadata: p.stage_metadata.clone(),
            steps: None,
            current_alias: String::new(),
        }
    }

    fn ctx_value(&self, p: &Promotion) -> Json {
        let target = p.target_freight.as_ref();
        serde_json::json!({
            "uiBaseUrl": self.options.ui_base_url,
            "project": p.project,
            "stage": p.stage,
            "promotion": p.name,
            "targetFreight": {
                "name": target.map(|t| t.name.to_string()).unwrap_or_default(),
                "alias": p.target_freight_alias.clone().unwrap_or_default(),
                "origin": {"name": target.map(|t| t.origin.name.clone()).unwrap_or_default()},
            },
            "meta": {
                "promotion": {
                    "actor": p.actor.clone().unwrap_or_default(),
                    "rollback": p.rollback,
                    "dryRun": p.dry_run,
                },
                "step": {"alias": ""},
            },
        })
    }

    fn scope(
        &self,
        ctx: &Json,
        alias: Option<&str>,
        vars: &serde_json::Map<String, Json>,
        exec: Option<&Exec>,
        data: Arc<EvalData>,
    ) -> Scope {
        Self::with_vars(self.scope_top(ctx, alias, exec), vars, data)
    }

    /// A scope from the variables shared by every expression of a step (`ctx`, `outputs`,
    /// `stepMetas`, `task`) plus `vars`.
    fn with_vars(
        mut top: BTreeMap<String, Value>,
        vars: &serde_json::Map<String, Json>,
        data: Arc<EvalData>,
    ) -> Scope {
        top.insert("vars".into(), from_json(&Json::Object(vars.clone())));
        Scope::new(top, data)
    }

    /// Everything of a scope but `vars`; built once per step (per attempt), not per
    /// expression or variable.
    fn scope_top(
        &self,
        ctx: &Json,
        alias: Option<&str>,
        exec: Option<&Exec>,
    ) -> BTreeMap<String, Value> {
        let mut top: BTreeMap<String, Value> = BTreeMap::new();
        let mut ctx = ctx.clone();
        if let (Some(a), Some(meta)) = (alias, ctx.pointer_mut("/meta/step/alias")) {
            *meta = Json::String(a.to_owned());
        }
        top.insert("ctx".into(), from_json(&ctx));
        if let Some(exec) = exec {
            top.insert(
                "outputs".into(),
                Value::from(minijinja::value::Serde(&exec.state)),
            );
            let metas: BTreeMap<&str, Json> = exec
                .records
                .iter()
                .filter(|r| r.started_at.is_some() || r.status != StepExecutionStatus::Running)
                .map(|r| {
                    (
                        r.alias.as_str(),
                        serde_json::json!({
                            "alias": r.alias,
                            "status": r.status.as_str(),
                            "message": r.message.clone().unwrap_or_default(),
                            "errorCount": r.error_count,
                            "continueOnError": r.continue_on_error,
                            "startedAt": r.started_at,
                            "finishedAt": r.finished_at,
                        }),
                    )
                })
                .collect();
            top.insert(
                "stepMetas".into(),
                Value::from(minijinja::value::Serde(&metas)),
            );
            if let Some((ns, _)) = alias.and_then(|a| a.split_once(ALIAS_SEPARATOR)) {
                let prefix = format!("{ns}{ALIAS_SEPARATOR}");
                let task_outputs: BTreeMap<&str, &Json> = exec
                    .state
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix(prefix.as_str()).map(|s| (s, v)))
                    .collect();
                top.insert(
                    "task".into(),
                    from_json(&serde_json::json!({ "outputs": task_outputs })),
                );
            }
        }
        top
    }

    /// Evaluates a list of variables in order, each seeing the previous ones.
    fn eval_vars(
        &self,
        list: &[ExpressionVariable],
        ctx: &Json,
        base: &EvalData,
        mut vars: serde_json::Map<String, Json>,
        step: Option<(&str, &Exec)>,
    ) -> Result<serde_json::Map<String, Json>, String> {
        let data = Arc::new(base.clone());
        let top = self.scope_top(ctx, step.map(|s| s.0), step.map(|s| s.1));
        for v in list {
            let scope = Self::with_vars(top.clone(), &vars, data.clone());
            let value = self
                .engine
                .render_str(&v.value, &scope)
                .map_err(|e| format!("variable {:?}: {e}", v.name))?;
            vars.insert(v.name.clone(), value);
        }
        Ok(vars)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        p: &Promotion,
        step: &PlannedStep,
        index: usize,
        exec: &mut Exec,
        promo_vars: &serde_json::Map<String, Json>,
        ctx: &Json,
        base: &EvalData,
        cancel: &CancellationToken,
        extensions: &crate::step::Extensions,
    ) -> StepExecutionStatus {
        let finish = |exec: &mut Exec, status, message: Option<String>| {
            let r = &mut exec.records[index];
            r.status = status;
            r.message = message;
            r.finished_at = Some(Utc::now());
            if status.is_failure() {
                tracing::warn!(
                    status = status.as_str(),
                    message = r.message.as_deref().unwrap_or(""),
                    "step finished"
                );
            } else {
                tracing::info!(status = status.as_str(), "step finished");
            }
            status
        };

        // 1. Step vars (no status functions).
        let step_vars = match self.eval_vars(
            &step.vars,
            ctx,
            base,
            promo_vars.clone(),
            Some((&step.alias, exec)),
        ) {
            Ok(v) => v,
            Err(e) => return finish(exec, StepExecutionStatus::Errored, Some(e)),
        };

        let mut data = base.clone();
        data.current_alias = step.alias.clone();
        data.steps = Some(exec.statuses());
        let data = Arc::new(data);

        // 2. `if`.
        match &step.if_expr {
            None => {
                if exec.has_failure() {
                    return finish(
                        exec,
                        StepExecutionStatus::Skipped,
                        Some("skipped: an earlier step failed".into()),
                    );
                }
            }
            Some(cond) => {
                let scope =
                    self.scope(ctx, Some(&step.alias), &step_vars, Some(exec), data.clone());
                match self.engine.render_str(cond, &scope) {
                    Ok(Json::Bool(true)) => {}
                    Ok(Json::Bool(false)) => {
                        return finish(
                            exec,
                            StepExecutionStatus::Skipped,
                            Some(format!("skipped: `if` {cond:?} is false")),
                        );
                    }
                    Ok(other) => {
                        return finish(
                            exec,
                            StepExecutionStatus::Errored,
                            Some(format!("`if` must evaluate to a boolean, got {other}")),
                        );
                    }
                    Err(e) => {
                        return finish(
                            exec,
                            StepExecutionStatus::Errored,
                            Some(format!("if: {e}")),
                        );
                    }
                }
            }
        }

        // 3. The step implementation.
        let Some(imp) = self.registry.get(&step.uses).cloned() else {
            let msg = self.registry.unknown_message(&step.uses);
            return finish(exec, StepExecutionStatus::Errored, Some(msg));
        };
        let defaults = imp.defaults();
        let threshold = match step.error_threshold {
            Some(0) | None => defaults.error_threshold.max(1),
            Some(n) => n,
        };
        let timeout = step.timeout.or(defaults.timeout).filter(|t| !t.is_zero());
        let compiled_config = match self.engine.compile_json(&Json::Object(step.config.clone())) {
            Ok(c) => c,
            Err(e) => return finish(exec, StepExecutionStatus::Errored, Some(config_error(&e))),
        };
        let started = tokio::time::Instant::now();
        exec.records[index].started_at = Some(Utc::now());
        let mut consecutive_errors = 0u32;

        loop {
            if cancel.is_cancelled() {
                return finish(exec, StepExecutionStatus::Aborted, Some("aborted".into()));
            }
            // Config is rendered for every attempt: outputs and statuses may have changed.
            let scope = self.scope(ctx, Some(&step.alias), &step_vars, Some(exec), data.clone());
            let config = match compiled_config.render(&scope) {
                Ok(c) => c,
                Err(e) => {
                    return finish(exec, StepExecutionStatus::Errored, Some(config_error(&e)));
                }
            };
            let mut sctx = StepContext::new(p.work_dir.clone())
                .with_extensions(extensions.clone())
                .with_secrets(p.secrets.clone())
                .with_credentials(p.credentials.clone())
                .with_cancellation(cancel.child_token());
            sctx.project = p.project.clone();
            sctx.stage = p.stage.clone();
            sctx.promotion = p.name.clone();
            sctx.alias = step.alias.clone();
            sctx.actor = p.actor.clone();
            sctx.freight = p.freight.clone();
            sctx.target_freight = p.target_freight.clone();
            sctx.vars = step_vars.clone();
            sctx.outputs = exec.state.clone();
            sctx.attempt = exec.records[index].attempts;
            exec.records[index].attempts += 1;

            let result = tokio::select! {
                r = imp.run_json(&sctx, config) => Some(r),
                () = cancel.cancelled() => None,
            };
            let result = match result {
                Some(Err(e)) if e.kind == StepErrorKind::Cancelled || cancel.is_cancelled() => None,
                other => other,
            };
            let Some(result) = result else {
                return finish(
                    exec,
                    StepExecutionStatus::Aborted,
                    Some("aborted while running".into()),
                );
            };

            let delay = match result {
                Ok(outcome) => {
                    self.record_outputs(
                        exec,
                        index,
                        step,
                        &outcome.outputs,
                        defaults.task_output_propagation,
                    );
                    match outcome.status {
                        StepStatus::Succeeded => {
                            return finish(exec, StepExecutionStatus::Succeeded, outcome.message);
                        }
                        StepStatus::Skipped => {
                            return finish(exec, StepExecutionStatus::Skipped, outcome.message);
                        }
                        StepStatus::Running { retry_after } => {
                            consecutive_errors = 0;
                            exec.records[index].message = outcome.message;
                            retry_after.max(self.options.min_retry_after)
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let failed = e.kind == StepErrorKind::Failed;
                    if !e.kind.is_retryable() {
                        let status = if failed {
                            StepExecutionStatus::Failed
                        } else {
                            StepExecutionStatus::Errored
                        };
                        return finish(exec, status, Some(msg));
                    }
                    consecutive_errors += 1;
                    exec.records[index].error_count += 1;
                    if consecutive_errors >= threshold {
                        return finish(
                            exec,
                            StepExecutionStatus::Errored,
                            Some(format!("met error threshold of {threshold}: {msg}")),
                        );
                    }
                    tracing::debug!(error = %msg, attempt = consecutive_errors, "step will be retried");
                    exec.records[index].message = Some(format!("{msg}; step will be retried"));
                    let factor = 1u32 << (consecutive_errors - 1).min(16);
                    self.options
                        .error_backoff
                        .saturating_mul(factor)
                        .min(self.options.max_error_backoff)
                }
            };
            // Soft timeout, checked after each attempt.
            if let Some(t) = timeout {
                let elapsed = started.elapsed();
                if elapsed > t {
                    return finish(
                        exec,
                        StepExecutionStatus::Errored,
                        Some(format!(
                            "step timed out after {}",
                            crate::model::Duration(t)
                        )),
                    );
                }
            }
            let wait = match timeout {
                // Wake up no later than the deadline, so the timeout is noticed promptly.
                Some(t) => {
                    delay.min(t.saturating_sub(started.elapsed()) + Duration::from_millis(1))
                }
                None => delay,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {
                    return finish(exec, StepExecutionStatus::Aborted, Some("aborted while waiting".into()));
                }
            }
        }
    }

    fn record_outputs(
        &self,
        exec: &mut Exec,
        index: usize,
        step: &PlannedStep,
        outputs: &IndexMap<String, Json>,
        propagate: bool,
    ) {
        exec.records[index].outputs = outputs.clone();
        let as_map: serde_json::Map<String, Json> = outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        exec.state
            .insert(step.alias.clone(), Json::Object(as_map.clone()));
        if propagate && let Some((ns, _)) = step.alias.split_once(ALIAS_SEPARATOR) {
            let entry = exec
                .state
                .entry(ns.to_owned())
                .or_insert_with(|| Json::Object(serde_json::Map::new()));
            if let Json::Object(m) = entry {
                m.extend(as_map);
            }
        }
    }
}

fn config_error(e: &crate::expr::PathedExprError) -> String {
    if e.path.is_empty() {
        format!("config: {}", e.error)
    } else {
        format!("config.{}: {}", e.path, e.error)
    }
}

/// Kargo's final phase: the worst status among steps without `continueOnError`.
fn final_phase(records: &[StepRecord]) -> (PromotionPhase, Option<String>) {
    let worst = records
        .iter()
        .filter(|r| !r.continue_on_error)
        .max_by_key(|r| r.status);
    match worst {
        None => (PromotionPhase::Succeeded, None),
        Some(r) => match r.status {
            StepExecutionStatus::Succeeded | StepExecutionStatus::Skipped => {
                (PromotionPhase::Succeeded, None)
            }
            StepExecutionStatus::Running => (PromotionPhase::Running, None),
            StepExecutionStatus::Aborted => (PromotionPhase::Aborted, r.message.clone()),
            StepExecutionStatus::Failed => (
                PromotionPhase::Failed,
                Some(format!(
                    "step {:?} failed: {}",
                    r.alias,
                    r.message.clone().unwrap_or_default()
                )),
            ),
            StepExecutionStatus::Errored => (
                PromotionPhase::Errored,
                Some(format!(
                    "step {:?} errored: {}",
                    r.alias,
                    r.message.clone().unwrap_or_default()
                )),
            ),
        },
    }
}

#[cfg(test)]
mod tests;
