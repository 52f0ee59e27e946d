//! Promotion execution: the runner that evaluates vars, `if` and config and runs each step
//! with retries, timeouts and cancellation, and the final phase.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use indexmap::IndexMap;
use minijinja::value::Value;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::inflate::{ALIAS_SEPARATOR, PlannedStep};
use super::plan::{StagePlan, promotion_name};
use super::progress::{ProgressError, ProgressSink};
use super::result::{
    PromotionPhase, PromotionProgress, PromotionResult, StepExecutionStatus, StepRecord,
};
use super::wake::{WakeBoard, woken};
use crate::expr::{EvalData, ExprEngine, OriginSubscriptions, Scope, StepStatusEntry, from_json};
use crate::freight::{FreightCollection, FreightReference};
use crate::model::ExpressionVariable;
use crate::secret::{CredentialProvider, NoCredentials, SecretStore};
use crate::step::{StepContext, StepEffect, StepErrorKind, StepRegistry, StepStatus};
use crate::workdir::WorkDir;

/// Runner settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl RunnerOptions {
    /// These options with another shortest wait before polling a `Running` step again.
    pub fn with_min_retry_after(mut self, wait: Duration) -> Self {
        self.min_retry_after = wait;
        self
    }

    /// These options with another first wait after a retryable error.
    pub fn with_error_backoff(mut self, wait: Duration) -> Self {
        self.error_backoff = wait;
        self
    }

    /// These options with Kargo's UI base URL (`ctx.uiBaseUrl`).
    pub fn with_ui_base_url(mut self, url: impl Into<String>) -> Self {
        self.ui_base_url = url.into();
        self
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
    /// Where the `wait-for-approval` step reads the answers to this promotion (set by a
    /// controller that collects them); `None`: that step cannot run.
    pub approvals: Option<Arc<dyn crate::pipeline::ApprovalInbox>>,
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
    /// Freight status by Freight name in Kargo's JSON shape, for `freightStatus()`
    /// ([`freight_status_json`](crate::expr::freight_status_json) of each record).
    pub freight_status: BTreeMap<String, Json>,
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
            approvals: None,
            dry_run: false,
            freight: FreightCollection::default(),
            target_freight: None,
            target_freight_alias: None,
            vars: Vec::new(),
            steps,
            requested: Vec::new(),
            freight_metadata: BTreeMap::new(),
            stage_metadata: BTreeMap::new(),
            freight_status: BTreeMap::new(),
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
    wakes: Arc<WakeBoard>,
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

/// How a step takes part in a run: all [`Fresh`](Mode::Fresh) in a new promotion; in a
/// resumed one, what its recorded progress says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not started yet: run normally (`if` first).
    Fresh,
    /// In flight when the previous runner stopped: run again (its `if` was already true).
    Rerun,
    /// A finished `Local` step: run again to rebuild the work directory, keeping its
    /// recorded status.
    Replay,
    /// Finished: not run again.
    Done,
}

impl Exec {
    fn progress(&self, started_at: chrono::DateTime<Utc>) -> PromotionProgress {
        PromotionProgress {
            steps: self.records.clone(),
            state: self.state.clone(),
            started_at,
            updated_at: Utc::now(),
        }
    }

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
            wakes: Arc::new(WakeBoard::default()),
        }
    }

    /// Polls at once the `Running` steps of this runner (and its clones) that wait for
    /// `key` ([`StepOutcome::with_wake_on`], e.g. a
    /// [`pull_request_wake_key`](super::pull_request_wake_key)) instead of after their
    /// poll interval. Returns whether any promotion of this runner is listening (a step
    /// waiting for another key ignores the wake).
    ///
    /// [`StepOutcome::with_wake_on`]: crate::step::StepOutcome::with_wake_on
    pub fn wake(&self, key: &str) -> bool {
        let listeners = self.wakes.wake(key);
        tracing::debug!(key, listeners, "wake");
        listeners > 0
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
        match self
            .run_inner(promotion, cancel, None, None)
            .instrument(span)
            .await
        {
            Ok(result) => result,
            // Only a progress sink fails a run, and there is none.
            Err(e) => unreachable!("a run without a progress sink failed: {e}"),
        }
    }

    /// Runs a promotion that can be resumed after its runner dies: its progress is
    /// reported to `sink` after each step ends and before each
    /// [`External`](StepEffect::External) step starts (so the record shows that step in
    /// flight), and cancelling `cancel` aborts it.
    ///
    /// With `resume`, a record of an earlier run of the same promotion (the last one
    /// `sink` accepted), the run goes on where that one stopped: finished steps are not
    /// run again and their outputs are restored (`outputs.<alias>`, task outputs); the
    /// finished [`Local`](StepEffect::Local) steps that succeeded are first replayed in
    /// order, to rebuild the work directory (their recorded status stays, their outputs
    /// are the replay's); a step that was in flight is run again, with the same
    /// [`StepContext::execution_id`] (it may or may not have taken effect). Records are
    /// matched to the promotion's steps by alias and `uses`; a step whose record does not
    /// match runs as a new one.
    ///
    /// An error of `sink` stops the run at once (no further step starts) and is returned.
    pub async fn run_resumable(
        &self,
        promotion: &Promotion,
        resume: Option<PromotionProgress>,
        sink: &dyn ProgressSink,
        cancel: CancellationToken,
    ) -> Result<PromotionResult, ProgressError> {
        let span = tracing::info_span!(
            "promotion",
            project = %promotion.project,
            stage = %promotion.stage,
            promotion = %promotion.name,
        );
        self.run_inner(promotion, cancel, resume, Some(sink))
            .instrument(span)
            .await
    }

    /// The effect of the step registered as `uses` ([`StepEffect::External`] when unknown).
    fn effect_of(&self, uses: &str) -> StepEffect {
        self.registry
            .get(uses)
            .map_or(StepEffect::External, |s| s.defaults().effect)
    }

    /// Takes the records and outputs of `progress` into `exec` and says how each step of
    /// `p` takes part in the resumed run.
    fn restore(&self, p: &Promotion, exec: &mut Exec, progress: PromotionProgress) -> Vec<Mode> {
        let mut recorded: BTreeMap<String, StepRecord> = progress
            .steps
            .into_iter()
            .map(|r| (r.alias.clone(), r))
            .collect();
        exec.state = progress.state;
        let mut modes: Vec<Mode> = p
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let Some(mut record) = recorded.remove(&step.alias) else {
                    return Mode::Fresh;
                };
                if record.uses != step.uses {
                    tracing::warn!(alias = %step.alias, recorded = %record.uses, uses = %step.uses, "the recorded step uses another kind: running it as a new step");
                    return Mode::Fresh;
                }
                let started = record.started_at.is_some();
                let mode = if !PromotionProgress::is_finished(&record) {
                    if started { Mode::Rerun } else { Mode::Fresh }
                } else if started
                    && matches!(
                        record.status,
                        StepExecutionStatus::Succeeded | StepExecutionStatus::Skipped
                    )
                    && self.effect_of(&step.uses) == StepEffect::Local
                {
                    Mode::Replay
                } else {
                    Mode::Done
                };
                if mode != Mode::Fresh {
                    record.continue_on_error = step.continue_on_error;
                    exec.records[i] = record;
                }
                mode
            })
            .collect();
        for alias in recorded.keys() {
            tracing::warn!(%alias, "a recorded step is not in the promotion any more: ignored");
        }
        // Replays rebuild the work directory for the steps still to run: none, none needed.
        if !modes.iter().any(|m| matches!(m, Mode::Fresh | Mode::Rerun)) {
            modes.iter_mut().for_each(|m| *m = Mode::Done);
        }
        modes
    }

    async fn run_inner(
        &self,
        p: &Promotion,
        cancel: CancellationToken,
        resume: Option<PromotionProgress>,
        sink: Option<&dyn ProgressSink>,
    ) -> Result<PromotionResult, ProgressError> {
        let mut started_at = Utc::now();
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
        let modes = match resume {
            Some(progress) => {
                started_at = progress.started_at;
                self.restore(p, &mut exec, progress)
            }
            None => vec![Mode::Fresh; p.steps.len()],
        };
        let base = self.base_data(p);
        let ctx_value = self.ctx_value(p);
        let extensions = crate::step::Extensions::default();
        // Steps that resolve artifacts the way `imageFrom` does (kustomize-set-image's
        // ambiguity rule) read the requested origins from here.
        extensions.get_or_insert_with(|| p.requested.clone());
        if let Some(inbox) = &p.approvals {
            extensions.get_or_insert_with(|| crate::pipeline::PromotionApprovals(inbox.clone()));
        }
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
                    return Ok(PromotionResult {
                        phase: PromotionPhase::Errored,
                        message: Some(msg),
                        steps: exec.records,
                        state: exec.state,
                        dry_run: dry_run.map(|d| d.log()),
                        started_at,
                        finished_at: Utc::now(),
                    });
                }
            };

        let mut aborted = false;
        let env = StepEnv {
            promo_vars: &promo_vars,
            ctx: &ctx_value,
            base: &base,
            cancel: &cancel,
            extensions: &extensions,
            sink,
            started_at,
        };
        for (i, step) in p.steps.iter().enumerate() {
            if cancel.is_cancelled() {
                aborted = true;
                break;
            }
            let mode = modes.get(i).copied().unwrap_or(Mode::Fresh);
            if mode == Mode::Done {
                continue;
            }
            let span = tracing::info_span!("step", alias = %step.alias, uses = %step.uses);
            let exec = &mut exec;
            let outcome = async {
                match mode {
                    Mode::Replay => self.replay_step(p, step, i, exec, &env).await,
                    _ => self.run_step(p, step, i, mode, exec, &env).await,
                }
            }
            .instrument(span)
            .await?;
            if outcome == StepExecutionStatus::Aborted {
                aborted = true;
                break;
            }
            if let Some(sink) = sink {
                sink.record(&exec.progress(started_at)).await?;
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
        Ok(PromotionResult {
            phase,
            message,
            steps: exec.records,
            state: exec.state,
            dry_run: dry_run.map(|d| d.log()),
            started_at,
            finished_at: Utc::now(),
        })
    }

    fn base_data(&self, p: &Promotion) -> EvalData {
        EvalData {
            freight: p.freight.clone(),
            requested: p.requested.clone(),
            secrets: Some(p.secrets.clone()),
            freight_metadata: p.freight_metadata.clone(),
            stage_metadata: p.stage_metadata.clone(),
            freight_status: p.freight_status.clone(),
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

    /// Replays a finished `Local` step of a resumed promotion: runs it again to rebuild
    /// the work directory, keeping its recorded status (its outputs become the replay's).
    async fn replay_step(
        &self,
        p: &Promotion,
        step: &PlannedStep,
        index: usize,
        exec: &mut Exec,
        env: &StepEnv<'_>,
    ) -> Result<StepExecutionStatus, ProgressError> {
        let original = exec.records[index].clone();
        tracing::info!("replaying a finished local step to rebuild the work directory");
        let status = self
            .run_step(p, step, index, Mode::Replay, exec, env)
            .await?;
        let r = &mut exec.records[index];
        match status {
            StepExecutionStatus::Succeeded | StepExecutionStatus::Skipped => {
                r.status = original.status;
                r.message = original.message;
                r.finished_at = original.finished_at;
            }
            StepExecutionStatus::Aborted | StepExecutionStatus::Running => {}
            StepExecutionStatus::Failed | StepExecutionStatus::Errored => {
                r.message = Some(format!(
                    "replaying the step to rebuild the work directory of the resumed promotion: {}",
                    r.message.as_deref().unwrap_or_default()
                ));
            }
        }
        Ok(status)
    }

    async fn run_step(
        &self,
        p: &Promotion,
        step: &PlannedStep,
        index: usize,
        mode: Mode,
        exec: &mut Exec,
        env: &StepEnv<'_>,
    ) -> Result<StepExecutionStatus, ProgressError> {
        let StepEnv {
            promo_vars,
            ctx,
            base,
            cancel,
            extensions,
            sink,
            started_at: promotion_started_at,
        } = *env;
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
            Err(e) => return Ok(finish(exec, StepExecutionStatus::Errored, Some(e))),
        };

        let mut data = base.clone();
        data.current_alias = step.alias.clone();
        data.steps = Some(exec.statuses());
        let data = Arc::new(data);

        // 2. `if` (only before the step first runs).
        match &step.if_expr {
            _ if mode != Mode::Fresh => {}
            None => {
                if exec.has_failure() {
                    return Ok(finish(
                        exec,
                        StepExecutionStatus::Skipped,
                        Some("skipped: an earlier step failed".into()),
                    ));
                }
            }
            Some(cond) => {
                let scope =
                    self.scope(ctx, Some(&step.alias), &step_vars, Some(exec), data.clone());
                match self.engine.render_str(cond, &scope) {
                    Ok(Json::Bool(true)) => {}
                    Ok(Json::Bool(false)) => {
                        return Ok(finish(
                            exec,
                            StepExecutionStatus::Skipped,
                            Some(format!("skipped: `if` {cond:?} is false")),
                        ));
                    }
                    Ok(other) => {
                        return Ok(finish(
                            exec,
                            StepExecutionStatus::Errored,
                            Some(format!("`if` must evaluate to a boolean, got {other}")),
                        ));
                    }
                    Err(e) => {
                        return Ok(finish(
                            exec,
                            StepExecutionStatus::Errored,
                            Some(format!("if: {e}")),
                        ));
                    }
                }
            }
        }

        // 3. The step implementation.
        let Some(imp) = self.registry.get(&step.uses).cloned() else {
            let msg = self.registry.unknown_message(&step.uses);
            return Ok(finish(exec, StepExecutionStatus::Errored, Some(msg)));
        };
        let defaults = imp.defaults();
        let threshold = match step.error_threshold {
            Some(0) | None => defaults.error_threshold.max(1),
            Some(n) => n,
        };
        let timeout = step.timeout.or(defaults.timeout).filter(|t| !t.is_zero());
        let compiled_config = match self.engine.compile_json(&Json::Object(step.config.clone())) {
            Ok(c) => c,
            Err(e) => {
                return Ok(finish(
                    exec,
                    StepExecutionStatus::Errored,
                    Some(config_error(&e)),
                ));
            }
        };
        let started = tokio::time::Instant::now();
        if mode == Mode::Fresh || exec.records[index].started_at.is_none() {
            exec.records[index].started_at = Some(Utc::now());
        }
        if mode != Mode::Replay
            && defaults.effect == StepEffect::External
            && let Some(sink) = sink
        {
            // Recorded in flight before it starts: if the runner dies during it, whoever
            // resumes the promotion knows it may have taken effect.
            sink.record(&exec.progress(promotion_started_at)).await?;
        }
        let execution_id = format!("{}/{}", p.name, step.alias);
        let mut consecutive_errors = 0u32;

        loop {
            if cancel.is_cancelled() {
                return Ok(finish(
                    exec,
                    StepExecutionStatus::Aborted,
                    Some("aborted".into()),
                ));
            }
            // Config is rendered for every attempt: outputs and statuses may have changed.
            let scope = self.scope(ctx, Some(&step.alias), &step_vars, Some(exec), data.clone());
            let config = match compiled_config.render(&scope) {
                Ok(c) => c,
                Err(e) => {
                    return Ok(finish(
                        exec,
                        StepExecutionStatus::Errored,
                        Some(config_error(&e)),
                    ));
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
            sctx.execution_id = execution_id.clone();
            exec.records[index].attempts += 1;
            // Listening from before the attempt: a wake during it is not lost.
            let mut wakes = self.wakes.listen();

            let result = tokio::select! {
                r = imp.run_json(&sctx, config) => Some(r),
                () = cancel.cancelled() => None,
            };
            let result = match result {
                Some(Err(e)) if e.kind == StepErrorKind::Cancelled || cancel.is_cancelled() => None,
                other => other,
            };
            let Some(result) = result else {
                return Ok(finish(
                    exec,
                    StepExecutionStatus::Aborted,
                    Some("aborted while running".into()),
                ));
            };

            let mut wake_on = Vec::new();
            let delay = match result {
                Ok(outcome) => {
                    wake_on = outcome.wake_on.clone();
                    self.record_outputs(
                        exec,
                        index,
                        step,
                        &outcome.outputs,
                        defaults.task_output_propagation,
                    );
                    match outcome.status {
                        StepStatus::Succeeded => {
                            return Ok(finish(
                                exec,
                                StepExecutionStatus::Succeeded,
                                outcome.message,
                            ));
                        }
                        StepStatus::Skipped => {
                            return Ok(finish(exec, StepExecutionStatus::Skipped, outcome.message));
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
                        return Ok(finish(exec, status, Some(msg)));
                    }
                    consecutive_errors += 1;
                    exec.records[index].error_count += 1;
                    if consecutive_errors >= threshold {
                        return Ok(finish(
                            exec,
                            StepExecutionStatus::Errored,
                            Some(format!("met error threshold of {threshold}: {msg}")),
                        ));
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
                    return Ok(finish(
                        exec,
                        StepExecutionStatus::Errored,
                        Some(format!(
                            "step timed out after {}",
                            crate::model::Duration(t)
                        )),
                    ));
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
                () = woken(&mut wakes, &wake_on) => {
                    tracing::debug!(step = %step.alias, "woken before the poll interval");
                }
                () = cancel.cancelled() => {
                    return Ok(finish(exec, StepExecutionStatus::Aborted, Some("aborted while waiting".into())));
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

/// What every step of one run shares.
#[derive(Clone, Copy)]
struct StepEnv<'a> {
    promo_vars: &'a serde_json::Map<String, Json>,
    ctx: &'a Json,
    base: &'a EvalData,
    cancel: &'a CancellationToken,
    extensions: &'a crate::step::Extensions,
    sink: Option<&'a dyn ProgressSink>,
    started_at: chrono::DateTime<Utc>,
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
