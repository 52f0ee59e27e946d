//! [`Controller`]: one project's pipeline run end to end, the way Kargo's controllers run
//! it, in one process: Warehouse refresh → Freight (with alias, de-duplicated) →
//! auto-promotion or manual promotion → the promotion steps → history, verification,
//! holds → downstream Stages. State lives in a [`StateStore`]; discovery in a
//! [`SourceRegistry`]; steps in the [`Runner`]'s registry.
//!
//! Credentials and the data of `secret()`, `configMap()` and friends come from the
//! manifests' Secrets and ConfigMaps ([`ManifestSecrets`]: credential Secrets of the
//! Project's namespace and of `kargo-shared-resources`), after whatever
//! [`Controller::with_credentials`] and [`Controller::with_secrets`] add in front of them.
//!
//! Time comes from a [`Clock`] (default [`SystemClock`]; a closure returning the time
//! works too), so embedders and tests can drive soak times and Warehouse intervals without
//! sleeping. To run a project continuously, hand the controller to a
//! [`Service`](crate::service::Service).

mod approvals;
mod events;
mod progress;
mod stage_controls;
mod windows;

pub use stage_controls::Reverification;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::schedule::{RefreshFailure, Schedule, ScheduleOptions};
use kargo_core::Runner;
use kargo_core::expr::ExprEngine;
use kargo_core::freight::{AliasGenerator, Freight, FreightId, FreightReference};
use kargo_core::loader::ManifestErrors;
use kargo_core::loader::ManifestSet;
use kargo_core::model::Stage;
use kargo_core::pipeline::{
    ChangeFeed, Fence, ObservedStore, Pipeline, PipelineError, ProjectState, PromotionRecord,
    PromotionRequest, PromotionTrigger, RetentionPolicy, RetentionReport, StageLease, StateError,
    StateStore, VerificationPhase, Verifier, apply_retention, record_freight,
};
use kargo_core::runner::{
    PlanError, Promotion, PromotionPhase, PromotionProgress, PromotionResult, plan_stage,
};
use kargo_core::secret::{
    CredentialChain, CredentialProvider, LayeredSecrets, ManifestSecrets, SecretStore,
};
use kargo_core::source::{DiscoveryContext, DiscoveryHints, SourceRegistry};
use kargo_core::step::DryRunNote;
use kargo_core::workdir::WorkDir;
use kargo_sources::warehouse::{
    DiscoverError, FreightDecision, FreightError, discover, freight_from,
};

/// Why the controller could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The project is not in the manifests.
    #[error("project {0:?} is not defined in the manifests")]
    UnknownProject(String),
    /// No Warehouse of that name.
    #[error("unknown Warehouse {0:?}")]
    UnknownWarehouse(String),
    /// A pipeline rule refused.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The Stage's promotion windows are closed (and the promotion was not forced with a
    /// reason).
    #[error("Stage {stage:?} is outside its promotion windows: {reason}; {}", match next_open {
        Some(t) => format!("next opening {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => "no opening within the next 400 days".to_owned(),
    })]
    WindowClosed {
        /// The Stage.
        stage: String,
        /// Which windows keep it closed.
        reason: String,
        /// When it opens next, if known.
        next_open: Option<DateTime<Utc>>,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Discovery failed.
    #[error("Warehouse {warehouse}: {source}")]
    Discover {
        /// The Warehouse.
        warehouse: String,
        /// The error.
        #[source]
        source: DiscoverError,
    },
    /// `freightCreationCriteria` failed.
    #[error("Warehouse {warehouse}: {source}")]
    Criteria {
        /// The Warehouse.
        warehouse: String,
        /// The error.
        #[source]
        source: FreightError,
    },
    /// The Stage's promotion could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The work directory could not be made.
    #[error("cannot create a work directory: {0}")]
    WorkDir(#[source] std::io::Error),
    /// The analysis templates the Stages' `verification` names are missing or invalid
    /// (see [`kargo_steps::analysis`]).
    #[error("{count} problem(s) with the Stages' analysis templates:\n{0}", count = .0.len())]
    Analysis(kargo_core::loader::ManifestErrors),
    /// Re-verification needs a Stage with `verification` and a verifier.
    #[error("Stage {stage:?} cannot be verified: {why}")]
    NotVerifiable {
        /// The Stage.
        stage: String,
        /// Why not.
        why: String,
    },
    /// Another runner holds the Stage's lease (it is promoting or verifying).
    #[error("Stage {0:?} is busy promoting or verifying; try again when it is done")]
    StageBusy(String),
    /// The manifests' Secrets or ConfigMaps are malformed (each error names the file,
    /// line, Secret and key).
    #[error("{count} problem(s) with the manifests' Secrets:\n{0}", count = .0.len())]
    Secrets(ManifestErrors),
}

/// What a Warehouse refresh did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// New Freight was created.
    Created(Freight),
    /// The newest artifacts make Freight that exists already.
    Unchanged(FreightId),
    /// No Freight: a subscription found nothing, the policy is Manual, or the criteria
    /// said no.
    NotCreated(FreightDecision),
}

/// One promotion that ran.
#[derive(Debug, Clone)]
pub struct PromotionReport {
    /// What was promoted, and why.
    pub request: PromotionRequest,
    /// The runner's result (steps, outputs).
    pub result: PromotionResult,
    /// What the pipeline recorded.
    pub record: PromotionRecord,
}

impl PromotionReport {
    /// Whether the promotion succeeded.
    pub fn succeeded(&self) -> bool {
        self.result.phase == PromotionPhase::Succeeded
    }
}

/// What one reconcile pass did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Warehouses refreshed and their outcomes.
    pub refreshed: Vec<(String, RefreshOutcome)>,
    /// Warehouses whose refresh failed, with the error (retried after a backoff).
    pub failed: Vec<(String, String)>,
    /// Promotions run, in order.
    pub promotions: Vec<PromotionReport>,
}

/// How many Stages' promotions a controller runs at once by default (Kargo's
/// `maxConcurrentReconciles` default for Promotions).
pub const DEFAULT_PROMOTION_CONCURRENCY: usize = 4;

/// The default time limit of a controller's leases.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// One project's pipeline (see the module documentation).
#[derive(Clone)]
pub struct Controller {
    manifests: Arc<ManifestSet>,
    project: String,
    stages: Arc<Vec<Stage>>,
    sources: SourceRegistry,
    runner: Runner,
    store: Arc<dyn StateStore>,
    /// What steps and discovery use: `explicit_credentials`, then the manifests'.
    credentials: Arc<dyn CredentialProvider>,
    /// What expressions read: `explicit_secrets`, then the manifests'.
    secrets: Arc<dyn SecretStore>,
    explicit_credentials: Option<Arc<dyn CredentialProvider>>,
    explicit_secrets: Option<Arc<dyn SecretStore>>,
    manifest_secrets: Arc<ManifestSecrets>,
    verifier: Option<Arc<dyn Verifier>>,
    /// The verifier made from the manifests' AnalysisTemplates, when no other was given.
    #[cfg(feature = "analysis")]
    analysis: Option<kargo_steps::analysis::AnalysisVerifier>,
    clock: SharedClock,
    supersede: bool,
    work_root: Option<PathBuf>,
    aliases: AliasGenerator,
    schedule: ScheduleOptions,
    failures: Arc<Mutex<BTreeMap<String, RefreshFailure>>>,
    lease_ttl: std::time::Duration,
    /// The promotions this process runs now, by name, with what stops them.
    running: Arc<Mutex<BTreeMap<String, CancellationToken>>>,
    /// The store's changes (this process's writes and the store's notifications).
    feed: ChangeFeed,
    /// The store, as the wrapper that keeps the last snapshot.
    observed: Arc<ObservedStore>,
    /// How many Stages' promotions run at once.
    promotion_concurrency: usize,
    /// Where events go ([`Controller::with_events`]).
    events: Arc<dyn kargo_core::events::EventSink>,
    /// The promotion windows of the Stages any window matches.
    windows: Arc<windows::StageWindows>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("project", &self.project)
            .field("stages", &self.stages.len())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for `project` of `manifests`, discovering with `sources`, promoting
    /// with `runner` and keeping state in `store`.
    pub fn new(
        manifests: ManifestSet,
        project: &str,
        sources: SourceRegistry,
        runner: Runner,
        store: Arc<dyn StateStore>,
    ) -> Result<Self, ControllerError> {
        if manifests.project(project).is_none() {
            return Err(ControllerError::UnknownProject(project.to_owned()));
        }
        let manifest_secrets =
            ManifestSecrets::from_manifests(&manifests).map_err(ControllerError::Secrets)?;
        let stages = manifests.stages(project).cloned().collect();
        let stage_windows = windows::stage_windows(&manifests, project);
        let observed = Arc::new(ObservedStore::new(store));
        let feed = observed.feed();
        let store: Arc<dyn StateStore> = observed.clone();
        let mut c = Self {
            manifests: Arc::new(manifests),
            project: project.to_owned(),
            stages: Arc::new(stages),
            sources,
            runner,
            store,
            credentials: Arc::new(CredentialChain::new()),
            secrets: Arc::new(LayeredSecrets::new()),
            explicit_credentials: None,
            explicit_secrets: None,
            manifest_secrets: Arc::new(manifest_secrets),
            verifier: None,
            #[cfg(feature = "analysis")]
            analysis: None,
            clock: Arc::new(SystemClock),
            supersede: false,
            work_root: None,
            aliases: AliasGenerator::default(),
            schedule: ScheduleOptions::default(),
            failures: Arc::default(),
            lease_ttl: DEFAULT_LEASE_TTL,
            running: Arc::default(),
            feed,
            observed,
            promotion_concurrency: DEFAULT_PROMOTION_CONCURRENCY,
            events: Arc::new(kargo_core::events::NoEvents),
            windows: Arc::new(stage_windows),
        };
        c.wire_secrets();
        #[cfg(feature = "analysis")]
        let c = c.with_analysis_from_manifests()?;
        Ok(c)
    }

    /// Puts the explicit credentials and secrets in front of the manifests'.
    fn wire_secrets(&mut self) {
        let from_manifests = self.manifest_secrets.credentials(&self.project);
        tracing::debug!(
            project = %self.project,
            credentials = from_manifests.len(),
            explicit = self.explicit_credentials.is_some(),
            "credentials wired"
        );
        let mut chain = CredentialChain::new();
        if let Some(explicit) = &self.explicit_credentials {
            chain = chain.then(explicit.clone());
        }
        self.credentials = Arc::new(chain.then(Arc::new(from_manifests)));
        let mut layers = LayeredSecrets::new();
        if let Some(explicit) = &self.explicit_secrets {
            layers = layers.then(explicit.clone());
        }
        self.secrets =
            Arc::new(layers.then(Arc::new(self.manifest_secrets.project(&self.project))));
    }

    /// When the Stages name analysis templates and the manifests hold AnalysisTemplates
    /// (of the project) or ClusterAnalysisTemplates, verifies with them
    /// ([`AnalysisVerifier`](kargo_steps::analysis::AnalysisVerifier), on the controller's
    /// clock); their problems are [`ControllerError::Analysis`].
    #[cfg(feature = "analysis")]
    fn with_analysis_from_manifests(mut self) -> Result<Self, ControllerError> {
        use kargo_steps::analysis::{AnalysisVerifier, holds_templates, uses_analysis};
        if !uses_analysis(&self.manifests, &self.project)
            || !holds_templates(&self.manifests, &self.project)
        {
            return Ok(self);
        }
        let verifier = AnalysisVerifier::from_manifests(&self.manifests, &self.project)
            .map_err(ControllerError::Analysis)?;
        tracing::info!(project = %self.project, stages = ?verifier.stages(), "Stages verify with their AnalysisTemplates");
        self.set_analysis(verifier);
        Ok(self)
    }

    #[cfg(feature = "analysis")]
    fn set_analysis(&mut self, verifier: kargo_steps::analysis::AnalysisVerifier) {
        let verifier = verifier.with_clock(Arc::new(AnalysisClockOf(self.clock.clone())));
        self.verifier = Some(Arc::new(verifier.clone()));
        self.analysis = Some(verifier);
    }

    /// Runs the promotions of up to `n` Stages at once (default
    /// [`DEFAULT_PROMOTION_CONCURRENCY`]; at least 1). One Stage's promotions still run one
    /// at a time, in order, under its lease; Stages pushing to one branch of one
    /// repository take turns pushing, each on the tip the one before pushed.
    pub fn with_promotion_concurrency(mut self, n: usize) -> Self {
        self.promotion_concurrency = n.max(1);
        self
    }

    /// The time limit of the leases this controller takes (default 30 s): renewed while
    /// it works; when its process stalls longer (a GC pause, SIGSTOP), stores whose leases
    /// expire ([`StateStore::leases_expire`]) let another replica take over, and the
    /// fencing token refuses the stalled one's late writes.
    pub fn with_lease_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The time limit of this controller's leases.
    pub fn lease_ttl(&self) -> std::time::Duration {
        self.lease_ttl
    }

    /// The state store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Takes the project's lease `name` for [`lease_ttl`](Self::lease_ttl) (see
    /// [`StateStore::acquire_lease`]): `None` when another runner holds it.
    pub async fn lease(&self, name: &str) -> Result<Option<StageLease>, ControllerError> {
        Ok(self
            .store
            .acquire_lease(&self.project, name, self.lease_ttl)
            .await?)
    }

    /// Credentials for discovery and steps, asked before the manifests' credential
    /// Secrets (replacing credentials given before).
    pub fn with_credentials(mut self, credentials: Arc<dyn CredentialProvider>) -> Self {
        self.explicit_credentials = Some(credentials);
        self.wire_secrets();
        self
    }

    /// Secrets for steps and webhook receivers (`secret()`, `sharedSecret()`,
    /// `configMap()`, `sharedConfigMap()`), asked before the manifests' Secrets and
    /// ConfigMaps (replacing secrets given before).
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.explicit_secrets = Some(secrets);
        self.wire_secrets();
        self
    }

    /// Other Secrets and ConfigMaps in place of those [`Controller::new`] read from the
    /// manifests with the default options: read with other shared namespaces
    /// ([`ManifestSecrets::from_manifests_with`]), or `ManifestSecrets::default()` to use
    /// none.
    pub fn with_manifest_secrets(mut self, secrets: ManifestSecrets) -> Self {
        self.manifest_secrets = Arc::new(secrets);
        self.wire_secrets();
        self
    }

    /// The manifests' Secrets and ConfigMaps this controller uses.
    pub fn manifest_secrets(&self) -> &ManifestSecrets {
        &self.manifest_secrets
    }

    /// The secrets steps, expressions and webhook receivers read: those of
    /// [`with_secrets`](Self::with_secrets), then the manifests'.
    pub fn secrets(&self) -> &Arc<dyn SecretStore> {
        &self.secrets
    }

    /// The credentials discovery and steps use: those of
    /// [`with_credentials`](Self::with_credentials), then the manifests'.
    pub fn credentials(&self) -> &Arc<dyn CredentialProvider> {
        &self.credentials
    }

    /// The verifier for Stages with `verification` (without one, such Stages verify
    /// nothing until [`Controller::record_verification`] is called). With the `analysis`
    /// feature, a controller whose manifests hold the AnalysisTemplates its Stages name
    /// has one already ([`kargo_steps::analysis::AnalysisVerifier`]); this replaces it.
    pub fn with_verifier(mut self, verifier: Arc<dyn Verifier>) -> Self {
        self.verifier = Some(verifier);
        #[cfg(feature = "analysis")]
        {
            self.analysis = None;
        }
        self
    }

    /// The clock (default: [`SystemClock`]): a [`Clock`] such as
    /// [`ManualClock`](crate::clock::ManualClock), or any `Fn() -> DateTime<Utc>`.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        #[cfg(feature = "analysis")]
        if let Some(v) = self.analysis.take() {
            self.set_analysis(v);
        }
        self
    }

    /// The controller's clock (the service loop waits on it).
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// How Warehouse refreshes are spread (jitter) and retried after failures (see
    /// [`crate::schedule`]).
    pub fn with_schedule(mut self, options: ScheduleOptions) -> Self {
        self.schedule = options;
        self
    }

    /// Whether a newer queued promotion drops older queued ones of the same origin.
    pub fn with_superseding(mut self, on: bool) -> Self {
        self.supersede = on;
        self
    }

    /// Where promotion work directories are made (default: the system temp directory).
    pub fn with_work_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_root = Some(dir.into());
        self
    }

    /// The project's state, shared with other readers until the store changes
    /// ([`ObservedStore::snapshot`]): for readers that only look (pages, API reads, live
    /// views), which would otherwise each clone the whole state.
    pub async fn snapshot(&self) -> Result<Arc<ProjectState>, ControllerError> {
        Ok(self.observed.snapshot(&self.project).await?)
    }

    /// A feed of the project state's changes: every write through this controller (or
    /// any clone of it) and the store's own notifications of other processes' writes
    /// ([`StateStore::changes`]). What live views wait on.
    pub fn change_feed(&self) -> ChangeFeed {
        self.feed.clone()
    }

    /// The Warehouses whose last refresh in this process failed, with the error, when
    /// and how many times in a row (cleared by a successful refresh).
    pub fn refresh_failures(&self) -> BTreeMap<String, RefreshFailure> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A refresh's outcome in words ([`WarehouseState::last_outcome`]).
    ///
    /// [`WarehouseState::last_outcome`]: kargo_core::pipeline::WarehouseState::last_outcome
    fn outcome_words(outcome: &RefreshOutcome) -> String {
        match outcome {
            RefreshOutcome::Created(f) => format!(
                "created Freight {}{}",
                f.alias.as_deref().unwrap_or(""),
                if f.alias.is_some() {
                    format!(" ({})", f.name)
                } else {
                    f.name.to_string()
                }
            ),
            RefreshOutcome::Unchanged(id) => {
                format!("nothing new: the newest artifacts are already Freight {id}")
            }
            RefreshOutcome::NotCreated(FreightDecision::MissingArtifacts { subscription }) => {
                format!("no Freight: subscription {subscription} found no artifacts")
            }
            RefreshOutcome::NotCreated(FreightDecision::Manual) => {
                "no Freight: the Warehouse's freightCreationPolicy is Manual".to_owned()
            }
            RefreshOutcome::NotCreated(FreightDecision::CriteriaNotMet) => {
                "no Freight: freightCreationCriteria evaluated to false".to_owned()
            }
            RefreshOutcome::NotCreated(FreightDecision::Created(f)) => {
                format!("no Freight: {} was not recorded", f.name)
            }
        }
    }

    /// The manifests.
    pub fn manifests(&self) -> &ManifestSet {
        &self.manifests
    }

    /// The project's name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The pipeline rules over this project's Stages.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline::new(&self.stages, self.manifests.project_config(&self.project))
    }

    /// The current state.
    pub async fn state(&self) -> Result<ProjectState, ControllerError> {
        Ok(self.store.load(&self.project).await?.0)
    }

    /// The current time, by the controller's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Applies `change` to the stored state (retried on write conflicts); a pipeline error
    /// aborts the write and is returned as is.
    async fn update<T: Send>(
        &self,
        change: impl FnMut(&mut ProjectState) -> Result<T, PipelineError> + Send,
    ) -> Result<T, ControllerError> {
        self.update_under(None, change).await
    }

    /// [`update`](Self::update) under a Stage lease's fencing token, when given: refused
    /// with [`StateError::StaleLease`] once the lease was granted to another runner.
    async fn update_under<T: Send>(
        &self,
        fence: Option<&Fence>,
        mut change: impl FnMut(&mut ProjectState) -> Result<T, PipelineError> + Send,
    ) -> Result<T, ControllerError> {
        let mut out = None;
        let mut failure = None;
        let mut apply = |state: &mut ProjectState| match change(state) {
            Ok(v) => {
                out = Some(v);
                Ok(())
            }
            Err(e) => {
                failure = Some(e);
                Err(StateError::Aborted(String::new()))
            }
        };
        let written = match fence {
            Some(fence) => self.store.update_fenced(fence, &mut apply).await,
            None => self.store.update(&self.project, &mut apply).await,
        };
        if let Some(e) = failure {
            return Err(e.into());
        }
        written?;
        out.ok_or_else(|| StateError::Aborted("state update did not run".into()).into())
    }

    /// Wakes the running promotions of this controller whose `Running` step waits for one
    /// of `keys` (a pull-request webhook's `WebhookOutcome::wake_keys`): they poll at
    /// once instead of after their poll interval ([`Runner::wake`]). Returns whether any
    /// promotion was listening. Only this process's promotions are reached (another
    /// replica's promotion polls at its interval).
    pub fn wake_promotions(&self, keys: &[String]) -> bool {
        let mut heard = false;
        for key in keys {
            heard |= self.runner.wake(key);
        }
        heard
    }

    /// Runs discovery for `warehouse` and records new Freight (with a generated alias).
    pub async fn refresh(&self, warehouse: &str) -> Result<RefreshOutcome, ControllerError> {
        self.refresh_with_hints(warehouse, None).await
    }

    /// [`refresh`](Self::refresh) after an event that says what changed (a webhook naming
    /// the tags it pushed): sources may read only that ([`DiscoveryHints`]).
    pub async fn refresh_with_hints(
        &self,
        warehouse: &str,
        hints: Option<DiscoveryHints>,
    ) -> Result<RefreshOutcome, ControllerError> {
        self.refresh_until_cancelled(warehouse, hints, CancellationToken::new())
            .await
    }

    /// [`refresh_with_hints`](Self::refresh_with_hints) that stops as soon as `cancel` is
    /// cancelled (the service cancels running refreshes when it shuts down): discovery ends
    /// with a "cancelled" error even while a repository is slow to answer, and nothing is
    /// recorded for the Warehouse but the failure.
    pub async fn refresh_until_cancelled(
        &self,
        warehouse: &str,
        hints: Option<DiscoveryHints>,
        cancel: CancellationToken,
    ) -> Result<RefreshOutcome, ControllerError> {
        self.refresh_as_of(warehouse, hints, cancel, None).await
    }

    /// [`refresh_until_cancelled`](Self::refresh_until_cancelled) whose sources may answer
    /// from what they read of a remote at or after `fresh_after`
    /// ([`DiscoveryContext::fresh_after`]): the service passes the start of its pass, so
    /// the Warehouses of one repository refreshed in one pass share one look at it.
    pub async fn refresh_as_of(
        &self,
        warehouse: &str,
        hints: Option<DiscoveryHints>,
        cancel: CancellationToken,
        fresh_after: Option<std::time::Instant>,
    ) -> Result<RefreshOutcome, ControllerError> {
        let result = self
            .refresh_once(warehouse, hints, cancel, fresh_after)
            .await;
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result {
            Ok(_) | Err(ControllerError::UnknownWarehouse(_)) => {
                failures.remove(warehouse);
            }
            Err(e) => {
                let attempts = failures.get(warehouse).map_or(0, |f| f.attempts) + 1;
                tracing::warn!(warehouse, attempts, error = %e, "Warehouse refresh failed");
                failures.insert(
                    warehouse.to_owned(),
                    RefreshFailure {
                        at: self.now(),
                        attempts,
                        message: e.to_string(),
                    },
                );
            }
        }
        result
    }

    async fn refresh_once(
        &self,
        warehouse: &str,
        hints: Option<DiscoveryHints>,
        cancel: CancellationToken,
        fresh_after: Option<std::time::Instant>,
    ) -> Result<RefreshOutcome, ControllerError> {
        let wh = self
            .manifests
            .warehouse(&self.project, warehouse)
            .ok_or_else(|| ControllerError::UnknownWarehouse(warehouse.to_owned()))?;
        let mut ctx = DiscoveryContext::new(&self.project, warehouse)
            .with_credentials(self.credentials.clone())
            .with_cancellation(cancel);
        ctx.hints = hints;
        ctx.fresh_after = fresh_after;
        let found = discover(wh, &self.project, &self.sources, &ctx)
            .await
            .map_err(|source| ControllerError::Discover {
                warehouse: warehouse.to_owned(),
                source,
            })?;
        let decision = freight_from(wh, &found, &ExprEngine::new()).map_err(|source| {
            ControllerError::Criteria {
                warehouse: warehouse.to_owned(),
                source,
            }
        })?;
        let now = self.now();
        let mut outcome = None;
        self.store
            .update(&self.project, &mut |state| {
                state
                    .warehouses
                    .entry(warehouse.to_owned())
                    .or_default()
                    .last_discovery = Some(now);
                outcome = Some(match &decision {
                    FreightDecision::Created(f) => {
                        if state.freight.contains_key(&f.name) {
                            RefreshOutcome::Unchanged(f.name.clone())
                        } else {
                            let mut f = f.clone();
                            // Discovered now by the controller's clock (not the wall clock), so
                            // ordering, soak and retention follow the same time.
                            f.discovered_at = Some(now);
                            let taken = kargo_core::pipeline::aliases(state);
                            f.alias =
                                Some(self.aliases.generate(&f.name, |a| taken.contains_key(a)));
                            record_freight(state, f.clone());
                            RefreshOutcome::Created(f)
                        }
                    }
                    other => RefreshOutcome::NotCreated(other.clone()),
                });
                let said = outcome.as_ref().map(|o| {
                    let mut words = Self::outcome_words(o);
                    // What the sources left out (an unsigned image), so the Warehouse says why.
                    let left_out: Vec<String> = found
                        .subscriptions
                        .iter()
                        .flat_map(|sd| sd.discovery.rejected())
                        .map(|r| format!("{} ({})", r.reference, r.reason))
                        .collect();
                    if !left_out.is_empty() {
                        words.push_str(&format!("; left out: {}", left_out.join("; ")));
                    }
                    words
                });
                state
                    .warehouses
                    .entry(warehouse.to_owned())
                    .or_default()
                    .last_outcome = said;
                Ok(())
            })
            .await?;
        let outcome = outcome.unwrap_or(RefreshOutcome::NotCreated(FreightDecision::Manual));
        if let RefreshOutcome::Created(f) = &outcome {
            tracing::info!(warehouse, freight = %f.name, alias = f.alias.as_deref().unwrap_or(""), "new Freight");
            self.emit(self.freight_event(
                kargo_core::events::EventType::FreightCreated,
                f,
                None,
                None,
                format!("Warehouse {warehouse} created Freight {}", f.name),
            ));
        }
        Ok(outcome)
    }

    /// Approves Freight for a Stage.
    pub async fn approve(
        &self,
        stage: &str,
        freight: &str,
        actor: Option<String>,
    ) -> Result<FreightId, ControllerError> {
        let now = self.now();
        let mut approved = None;
        let id = self
            .update(|state| {
                let id = self
                    .pipeline()
                    .approve(state, stage, freight, actor.clone(), now)?;
                approved = state.freight.get(&id).map(|r| r.freight.clone());
                Ok(id)
            })
            .await?;
        if let Some(f) = approved {
            self.emit(self.freight_event(
                kargo_core::events::EventType::FreightApproved,
                &f,
                Some(stage),
                actor,
                format!("Freight {} approved for {stage}", f.name),
            ));
        }
        Ok(id)
    }

    /// Promotes Freight (ID, ID prefix or alias) to a Stage now, then runs whatever
    /// auto-promotion that enables downstream. Returns every promotion run, the requested
    /// one first.
    pub async fn promote(
        &self,
        stage: &str,
        freight: &str,
        actor: Option<String>,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.promote_with(stage, freight, actor, None).await
    }

    /// [`promote`](Self::promote) while the Stage's promotion windows are closed: runs all
    /// the same, and the promotion's record keeps `reason` (which must not be empty).
    pub async fn promote_forcing_window(
        &self,
        stage: &str,
        freight: &str,
        actor: Option<String>,
        reason: &str,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.promote_with(stage, freight, actor, Some(reason)).await
    }

    async fn promote_with(
        &self,
        stage: &str,
        freight: &str,
        actor: Option<String>,
        force: Option<&str>,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.admit(stage, force)?;
        let (state, _) = self.store.load(&self.project).await?;
        let mut request = self.pipeline().request_promotion(
            &state,
            stage,
            freight,
            PromotionTrigger::Manual,
            actor,
            self.now(),
        )?;
        request.window_override = force.map(|r| r.trim().to_owned());
        self.queue_and_run(request).await
    }

    /// Queues a promotion of Freight (ID, ID prefix or alias) to a Stage and returns at
    /// once: a running [`Service`](crate::service::Service), on this replica or another
    /// sharing the store, runs it (the store's change notification wakes it). Checked
    /// exactly as [`promote`](Self::promote) checks it.
    pub async fn request_promotion(
        &self,
        stage: &str,
        freight: &str,
        actor: Option<String>,
    ) -> Result<PromotionRequest, ControllerError> {
        self.admit(stage, None)?;
        let now = self.now();
        let supersede = self.supersede;
        let mut events = Vec::new();
        let request = self
            .update(|state| {
                let request = self.pipeline().request_promotion(
                    state,
                    stage,
                    freight,
                    PromotionTrigger::Manual,
                    actor.clone(),
                    now,
                )?;
                let dropped = Pipeline::enqueue(state, request.clone(), supersede);
                events = self.queued_events(std::slice::from_ref(&request), &dropped, state);
                Ok(request)
            })
            .await?;
        self.emit_all(events);
        Ok(request)
    }

    /// Re-promotes the Stage's previous collection.
    pub async fn rollback(
        &self,
        stage: &str,
        actor: Option<String>,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.rollback_with(stage, actor, None).await
    }

    /// [`rollback`](Self::rollback) while the Stage's promotion windows are closed; the
    /// record keeps `reason` (which must not be empty).
    pub async fn rollback_forcing_window(
        &self,
        stage: &str,
        actor: Option<String>,
        reason: &str,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.rollback_with(stage, actor, Some(reason)).await
    }

    async fn rollback_with(
        &self,
        stage: &str,
        actor: Option<String>,
        force: Option<&str>,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.admit(stage, force)?;
        let (state, _) = self.store.load(&self.project).await?;
        let mut request = self.pipeline().rollback(&state, stage, actor, self.now())?;
        request.window_override = force.map(|r| r.trim().to_owned());
        self.queue_and_run(request).await
    }

    /// Queues a rollback of a Stage to its previous collection and returns at once, as
    /// [`request_promotion`](Self::request_promotion) does; checked as
    /// [`rollback`](Self::rollback) checks it.
    pub async fn request_rollback(
        &self,
        stage: &str,
        actor: Option<String>,
    ) -> Result<PromotionRequest, ControllerError> {
        self.admit(stage, None)?;
        let now = self.now();
        let supersede = self.supersede;
        let mut events = Vec::new();
        let request = self
            .update(|state| {
                let request = self.pipeline().rollback(state, stage, actor.clone(), now)?;
                let dropped = Pipeline::enqueue(state, request.clone(), supersede);
                events = self.queued_events(std::slice::from_ref(&request), &dropped, state);
                Ok(request)
            })
            .await?;
        self.emit_all(events);
        Ok(request)
    }

    async fn queue_and_run(
        &self,
        request: PromotionRequest,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        let stage = request.stage.clone();
        let supersede = self.supersede;
        let mut events = Vec::new();
        self.store
            .update(&self.project, &mut |state| {
                let dropped = Pipeline::enqueue(state, request.clone(), supersede);
                events = self.queued_events(std::slice::from_ref(&request), &dropped, state);
                Ok(())
            })
            .await?;
        self.emit_all(events);
        let mut reports = self.drain(&stage).await?;
        reports.extend(self.auto_promote().await?);
        Ok(reports)
    }

    /// The schedule now: when each Warehouse is due and why, and when soak times end
    /// (see [`crate::schedule`]).
    pub async fn schedule(&self) -> Result<Schedule, ControllerError> {
        let state = self.state().await?;
        Ok(self.schedule_for(&state))
    }

    /// [`schedule`](Self::schedule) over a state already read.
    pub fn schedule_for(&self, state: &ProjectState) -> Schedule {
        let now = self.now();
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut schedule = crate::schedule::schedule(
            &self.project,
            self.manifests.warehouses(&self.project),
            state,
            self.pipeline().soak_deadlines(state, now),
            &failures,
            &self.schedule,
            now,
        );
        schedule.window_openings = self.window_openings(now);
        schedule
    }

    /// The Warehouses due now (all of them with `force`), in schedule order.
    pub async fn due_warehouses(&self, force: bool) -> Result<Vec<String>, ControllerError> {
        if force {
            return Ok(self
                .manifests
                .warehouses(&self.project)
                .map(|w| w.metadata.name.clone())
                .collect());
        }
        Ok(self
            .schedule()
            .await?
            .due()
            .map(|w| w.warehouse.clone())
            .collect())
    }

    /// One reconcile pass: refreshes every Warehouse that is due ([`Controller::schedule`];
    /// all of them with `force`), then control-flow Stages and auto-promotion until nothing
    /// moves. A failed refresh is reported in the pass and retried after a backoff; it
    /// does not stop the other Warehouses.
    pub async fn reconcile(&self, force: bool) -> Result<ReconcileReport, ControllerError> {
        let mut report = ReconcileReport::default();
        for w in self.due_warehouses(force).await? {
            match self.refresh(&w).await {
                Ok(outcome) => report.refreshed.push((w, outcome)),
                Err(e) => report.failed.push((w, e.to_string())),
            }
        }
        report.promotions = self.auto_promote().await?;
        Ok(report)
    }

    /// Runs control-flow Stages and auto-promotion until nothing more is requested (a
    /// promotion verified in dev can make Freight available to the next Stage).
    /// Promotions left running or queued (by a runner that is gone, or requested while
    /// another one ran) are run first.
    pub async fn auto_promote(&self) -> Result<Vec<PromotionReport>, ControllerError> {
        self.auto_promote_until(&|| false).await
    }

    /// [`auto_promote`](Self::auto_promote) that starts no further promotion once `stop()`
    /// returns true: a running promotion always finishes (nothing is left half-pushed), and
    /// the requests not started stay queued in the state for the next call (of this or any
    /// other process).
    pub async fn auto_promote_until(
        &self,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        let mut reports = Vec::new();
        let state = self.state().await?;
        let pending: Vec<String> = self
            .stages
            .iter()
            .map(|s| &s.metadata.name)
            .filter(|name| {
                state
                    .stages
                    .get(*name)
                    .is_some_and(|st| st.pending().next().is_some())
            })
            .cloned()
            .collect();
        if stop() {
            return Ok(reports);
        }
        reports.extend(self.drain_stages(pending, stop).await?);
        for _ in 0..(self.stages.len() * 4 + 4) {
            if stop() {
                break;
            }
            let now = self.now();
            let mut requests = Vec::new();
            let supersede = self.supersede;
            let mut events = Vec::new();
            self.store
                .update(&self.project, &mut |state| {
                    let p = self.pipeline();
                    p.reconcile_control_flow(state, now);
                    requests = p.auto_promotions(state, now);
                    requests.extend(p.auto_rollbacks(state, now));
                    self.gate_auto(state, &mut requests, now);
                    let mut dropped = Vec::new();
                    for r in &requests {
                        dropped.extend(Pipeline::enqueue(state, r.clone(), supersede));
                    }
                    events = self.queued_events(&requests, &dropped, state);
                    Ok(())
                })
                .await?;
            self.emit_all(events);
            if requests.is_empty() {
                break;
            }
            let mut stages: Vec<String> = requests.iter().map(|r| r.stage.clone()).collect();
            stages.dedup();
            reports.extend(self.drain_stages(stages, stop).await?);
        }
        Ok(reports)
    }

    /// Drains `stages`, up to [`with_promotion_concurrency`](Self::with_promotion_concurrency)
    /// of them at once; every drain runs to its end (none is dropped half-way), then the
    /// first error, if any, is returned.
    async fn drain_stages(
        &self,
        stages: Vec<String>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        use futures::StreamExt as _;
        let results: Vec<_> = futures::stream::iter(stages)
            .map(|stage| async move {
                if stop() {
                    return Ok(Vec::new());
                }
                self.drain_until(&stage, stop).await
            })
            .buffered(self.promotion_concurrency)
            .collect()
            .await;
        let mut reports = Vec::new();
        for r in results {
            reports.extend(r?);
        }
        Ok(reports)
    }

    /// Runs the Stage's queued promotions one at a time, holding the Stage's lease
    /// ([`StateStore::acquire_lease`], renewed while a promotion runs). A promotion the state shows as running while the lease
    /// is free was left by a runner that is gone (a killed process): it is resumed first,
    /// under the same name, from the progress that runner recorded
    /// ([`ProjectState::progress`]): finished steps are not run again (the finished local
    /// ones are replayed to rebuild the work directory), and the step that was in flight
    /// runs again (see [`Runner::run_resumable`]). When another runner
    /// holds the lease, it also runs what is queued behind its promotion, and this returns.
    pub async fn drain(&self, stage: &str) -> Result<Vec<PromotionReport>, ControllerError> {
        self.drain_until(stage, &|| false).await
    }

    /// [`drain`](Self::drain) that starts no further promotion once `stop()` returns true
    /// (a promotion left running by a dead runner is still resumed: it was started).
    pub async fn drain_until(
        &self,
        stage: &str,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        let mut reports = Vec::new();
        let lease = loop {
            if let Some(lease) = self.lease(stage).await? {
                break lease;
            }
            // The holder is running a promotion (and will run the queue after it), or is
            // between taking the lease and starting one, or about to let go: only then
            // could a queued request be left behind, so wait for the lease.
            let (state, _) = self.store.load(&self.project).await?;
            match state.stages.get(stage) {
                Some(st) if st.current_promotion.is_none() && !st.queue.is_empty() => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                _ => return Ok(reports),
            }
        };
        loop {
            let (state, _) = self.store.load(&self.project).await?;
            let stale = state
                .stages
                .get(stage)
                .and_then(|s| s.current_promotion.clone());
            let (request, resume) = match stale {
                Some(request) => {
                    let progress = state.progress.get(&request.name).cloned();
                    match progress.as_ref().map(|p| (p, p.resume_point())) {
                        None => {
                            tracing::warn!(promotion = %request.name, stage, "resuming a promotion whose runner is gone (a killed process?): no progress was recorded, running it from its first step")
                        }
                        Some((p, None)) => {
                            tracing::warn!(promotion = %request.name, stage, "resuming a promotion whose runner is gone (a killed process?): all {} steps had finished, recording its end", p.steps.len())
                        }
                        Some((p, Some(at))) => tracing::warn!(
                            promotion = %request.name,
                            stage,
                            resume_at = %at.alias,
                            in_flight = at.started_at.is_some(),
                            "resuming a promotion whose runner is gone (a killed process?) at step {:?} ({}), step {} of {}: {} finished steps are not run again (the finished local ones are replayed first, to rebuild the work directory){}",
                            at.alias,
                            at.uses,
                            p.finished() + 1,
                            p.steps.len(),
                            p.finished(),
                            if at.started_at.is_some() { "; it was in flight and runs again with the same execution ID" } else { "" },
                        ),
                    }
                    self.remove_work_dirs(&request.name);
                    (request, progress)
                }
                None if stop() => break,
                None => {
                    let now = self.now();
                    let mut events = Vec::new();
                    let next = self
                        .update_under(lease.fence(), |state| {
                            let discarded = self.discard_closed(state, stage, now);
                            events = self.discarded_events(&discarded, state);
                            Ok(self.pipeline().start_next(state, stage, now))
                        })
                        .await?;
                    self.emit_all(events);
                    match next {
                        Some(request) => (request, None),
                        None => break,
                    }
                }
            };
            reports.push(self.run_promotion(request, lease.fence(), resume).await?);
        }
        Ok(reports)
    }

    /// The prefix of a promotion's work directory under the work root.
    fn work_dir_prefix(promotion: &str) -> String {
        format!("promotion-{promotion}-")
    }

    /// Removes the work directories a dead runner left for `promotion` (best effort).
    fn remove_work_dirs(&self, promotion: &str) {
        let Some(root) = &self.work_root else {
            return;
        };
        let prefix = Self::work_dir_prefix(promotion);
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix)
                && let Err(err) = std::fs::remove_dir_all(e.path())
            {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a stale work directory");
            }
        }
    }

    /// A fresh work directory under the work root (removed when dropped).
    fn work_dir(&self, prefix: &str) -> Result<(tempfile::TempDir, WorkDir), ControllerError> {
        let dir = match &self.work_root {
            Some(root) => {
                std::fs::create_dir_all(root).map_err(ControllerError::WorkDir)?;
                tempfile::Builder::new().prefix(prefix).tempdir_in(root)
            }
            None => tempfile::Builder::new().prefix(prefix).tempdir(),
        }
        .map_err(ControllerError::WorkDir)?;
        let work_dir = WorkDir::new(dir.path()).map_err(ControllerError::WorkDir)?;
        Ok((dir, work_dir))
    }

    /// The runner's view of `request`: the Stage's plan, the Freight, metadata, secrets.
    fn promotion(
        &self,
        request: &PromotionRequest,
        state: &ProjectState,
        work_dir: WorkDir,
    ) -> Result<Promotion, ControllerError> {
        let plan = plan_stage(&self.manifests, &self.project, &request.stage)?;
        let target = state.freight.get(&request.freight);
        let mut promotion = Promotion::from_plan(
            &plan,
            work_dir,
            request.collection.clone(),
            target.map(|r| FreightReference::from(&r.freight)),
        );
        promotion.name = request.name.clone();
        promotion.actor = request.actor.clone();
        promotion.rollback = request.trigger == PromotionTrigger::Rollback;
        promotion.approvals = Some(Arc::new(approvals::StoreInbox {
            store: self.store.clone(),
            project: self.project.clone(),
        }));
        promotion.target_freight_alias = target.and_then(|r| r.freight.alias.clone());
        promotion.credentials = self.credentials.clone();
        promotion.secrets = self.secrets.clone();
        for (id, rec) in &state.freight {
            promotion.freight_status.insert(
                id.to_string(),
                kargo_core::expr::freight_status_json(&rec.status),
            );
            if !rec.status.metadata.is_empty() {
                promotion.freight_metadata.insert(
                    id.to_string(),
                    rec.status.metadata.clone().into_iter().collect(),
                );
            }
        }
        for (name, st) in &state.stages {
            if !st.metadata.is_empty() {
                promotion
                    .stage_metadata
                    .insert(name.clone(), st.metadata.clone().into_iter().collect());
            }
        }
        Ok(promotion)
    }

    /// Runs `request` (from `resume`, the progress its previous runner recorded, when
    /// given), recording its progress in the state as it goes, then its end (which drops
    /// the progress). A progress write the store refuses (a lease granted to another
    /// runner) stops the promotion and is returned; the state still shows it running.
    /// Renews the lease `fence` was granted with every third of the lease's time limit,
    /// for stores whose leases expire. Returns only when the lease was lost (granted to
    /// another runner after this one stalled), having cancelled `cancel`: the promotion
    /// stops, and its new holder resumes it.
    async fn keep_lease(&self, fence: Option<&Fence>, cancel: &CancellationToken) {
        let Some(fence) = fence.filter(|_| self.store.leases_expire()) else {
            return std::future::pending().await;
        };
        let every = (self.lease_ttl / 3).max(std::time::Duration::from_millis(10));
        loop {
            // Real time: a lease's time limit is the store's (a database's clock).
            tokio::time::sleep(every).await;
            match self.store.renew_lease(fence, self.lease_ttl).await {
                Ok(()) => {}
                Err(e @ StateError::StaleLease { .. }) => {
                    tracing::error!(lease = %fence.stage, token = fence.token, error = %e, "lost the lease: stopping the promotion; the lease's new holder resumes it");
                    cancel.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %fence.stage, error = %e, "cannot renew the lease; trying again");
                }
            }
        }
    }

    async fn run_promotion(
        &self,
        request: PromotionRequest,
        fence: Option<&Fence>,
        resume: Option<PromotionProgress>,
    ) -> Result<PromotionReport, ControllerError> {
        let state = self.state().await?;
        let (dir, work_dir) = self.work_dir(&Self::work_dir_prefix(&request.name))?;
        let promotion = self.promotion(&request, &state, work_dir)?;
        tracing::info!(promotion = %request.name, stage = %request.stage, freight = %request.freight, resumed = resume.is_some(), "promotion started");
        let sink = progress::StateProgress::new(self, fence, &request.name);
        let cancel = CancellationToken::new();
        let _running = self.register_running(&request, &state, &cancel);
        let run = self
            .runner
            .run_resumable(&promotion, resume, &sink, cancel.clone());
        let run = {
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => r,
                () = self.keep_lease(fence, &cancel) => run.await,
                () = self.watch_abort(&request, &cancel) => run.await,
            }
        };
        drop(dir);
        let result = match run {
            Ok(result) => result,
            Err(e) => {
                return Err(sink
                    .take_failure()
                    .unwrap_or_else(|| StateError::Aborted(e.to_string()).into()));
            }
        };
        let now = self.now();
        let message = result.message.clone().unwrap_or_default();
        let record = self
            .update_under(fence, |state| {
                let message = Self::abort_message(state, &request, result.phase)
                    .unwrap_or_else(|| message.clone());
                let record = self.pipeline().finish(
                    state,
                    &request.stage,
                    &request.name,
                    result.phase,
                    &message,
                    now,
                )?;
                state.progress.remove(&request.name);
                if let Some(kept) = state
                    .promotions
                    .last_mut()
                    .filter(|r| r.name == record.name)
                {
                    kept.steps = result.steps.clone();
                }
                Ok(record)
            })
            .await?;
        let verification_pending = result.phase == PromotionPhase::Succeeded
            && self.verifier.is_some()
            && self
                .pipeline()
                .stage(&request.stage)
                .is_ok_and(|s| s.spec.verification.is_some());
        if let Some(kind) = events::promotion_finished(result.phase) {
            let mut e = self.promotion_event(kind, &request, &state, record.message.clone());
            if let Some(p) = e
                .promotion
                .as_mut()
                .filter(|_| kind == kargo_core::events::EventType::PromotionSucceeded)
            {
                p.verification_pending = Some(verification_pending);
            }
            self.emit(e);
        }
        if result.phase == PromotionPhase::Succeeded
            && let Some(verifier) = &self.verifier
            && let Ok(stage) = self.pipeline().stage(&request.stage)
            && stage.spec.verification.is_some()
        {
            // An analysis may measure for minutes: the Stage's lease is kept meanwhile, and
            // the verdict is written only while it is still held.
            let verify = verifier.verify(stage, &request.collection);
            let info = {
                tokio::pin!(verify);
                let cancel = CancellationToken::new();
                tokio::select! {
                    info = &mut verify => info,
                    () = self.keep_lease(fence, &cancel) => verify.await,
                }
            };
            let ok = info.phase == VerificationPhase::Successful;
            let mut events = Vec::new();
            self.update_under(fence, |state| {
                self.pipeline()
                    .record_verification(state, &request.stage, info.clone())?;
                events = self.verification_events(&request.stage, &info, state);
                Ok(())
            })
            .await?;
            self.emit_all(events);
            tracing::info!(stage = %request.stage, verified = ok, "verification finished");
        }
        tracing::info!(promotion = %request.name, phase = ?result.phase, "promotion finished");
        Ok(PromotionReport {
            request,
            result,
            record,
        })
    }

    /// Simulates promoting Freight (ID, ID prefix or alias) to a Stage: the request is built
    /// exactly as [`Controller::promote`] builds it (same availability rules, same errors),
    /// then the Stage's steps run as a dry run ([`Promotion::dry_run`]) in a scratch work
    /// directory. Steps with outside effects record them instead: `git-push` reports the
    /// commit it would push and the per-file diffs, and pushes nothing.
    ///
    /// Nothing is written to the state store (no queue entry, no history, no verification),
    /// and nothing reaches a remote. The git mirror cache may keep the objects of the
    /// simulated commits (unreferenced, like any local object).
    pub async fn dry_run(
        &self,
        stage: &str,
        freight: &str,
        actor: Option<String>,
    ) -> Result<DryRunReport, ControllerError> {
        let (state, _) = self.store.load(&self.project).await?;
        let request = self.pipeline().request_promotion(
            &state,
            stage,
            freight,
            PromotionTrigger::Manual,
            actor,
            self.now(),
        )?;
        let (dir, work_dir) = self.work_dir("dry-run-")?;
        let mut promotion = self.promotion(&request, &state, work_dir)?;
        promotion.dry_run = true;
        tracing::info!(promotion = %request.name, stage = %request.stage, freight = %request.freight, "dry run started");
        let result = self.runner.run(&promotion).await;
        drop(dir);
        tracing::info!(promotion = %request.name, phase = ?result.phase, "dry run finished");
        let log = result.dry_run.clone().unwrap_or_default();
        let files = log
            .files
            .into_iter()
            .map(|f| FileChange {
                repo_url: f.repo_url,
                path: f.path,
                diff: f.diff,
            })
            .collect();
        let pushes = log
            .pushes
            .into_iter()
            .map(|p| PlannedPush {
                repo_url: p.repo_url,
                branch: p.branch,
                commit: p.commit,
                message: p.message,
                tag: p.tag,
                step: p.step,
            })
            .collect();
        Ok(DryRunReport {
            request,
            result,
            files,
            pushes,
            notes: log.notes,
        })
    }

    /// Verifies, with the controller's verifier, every Stage with `verification` whose
    /// current Freight was never verified and that is not promoting: a verifier added
    /// after the promotion, or a process that stopped between a promotion and its
    /// verification. Returns the Stages verified; nothing without a verifier.
    pub async fn verify_unverified(&self) -> Result<Vec<String>, ControllerError> {
        let Some(verifier) = &self.verifier else {
            return Ok(Vec::new());
        };
        let state = self.state().await?;
        let mut done = Vec::new();
        for stage in self.stages.iter() {
            if stage.spec.verification.is_none() {
                continue;
            }
            let name = &stage.metadata.name;
            let Some(st) = state.stages.get(name) else {
                continue;
            };
            let Some(entry) = st.freight_history.first() else {
                continue;
            };
            if !entry.verification_history.is_empty() || st.pending().next().is_some() {
                continue;
            }
            let info = verifier.verify(stage, &entry.collection).await;
            tracing::info!(stage = %name, phase = ?info.phase, "verified Freight that had not been verified");
            self.record_verification(name, info).await?;
            done.push(name.clone());
        }
        Ok(done)
    }

    /// Deletes the Freight and promotion records `policy` does not keep (Kargo's garbage
    /// collection: see [`kargo_core::pipeline::apply_retention`]); writes only when there
    /// is something to delete.
    pub async fn apply_retention(
        &self,
        policy: &RetentionPolicy,
    ) -> Result<RetentionReport, ControllerError> {
        let now = self.now();
        let mut probe = self.state().await?;
        if apply_retention(&mut probe, policy, now).is_empty() {
            return Ok(RetentionReport::default());
        }
        let mut report = RetentionReport::default();
        self.store
            .update(&self.project, &mut |state| {
                report = apply_retention(state, policy, now);
                Ok(())
            })
            .await?;
        Ok(report)
    }

    /// Records a verification of the Stage's current collection (for verifiers that run
    /// outside the controller).
    pub async fn record_verification(
        &self,
        stage: &str,
        info: kargo_core::pipeline::VerificationInfo,
    ) -> Result<(), ControllerError> {
        let mut events = Vec::new();
        self.update(|state| {
            self.pipeline()
                .record_verification(state, stage, info.clone())?;
            events = self.verification_events(stage, &info, state);
            Ok(())
        })
        .await?;
        self.emit_all(events);
        Ok(())
    }
}

/// One file a dry run would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The repository (as configured in the promotion, credentials removed).
    pub repo_url: String,
    /// The file's path in the repository.
    pub path: String,
    /// Its unified diff (`--- a/path`, `+++ b/path`, hunks).
    pub diff: String,
}

/// A commit a dry run would push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPush {
    /// The repository (credentials removed).
    pub repo_url: String,
    /// The branch it would be pushed to.
    pub branch: String,
    /// The commit's ID (it exists only in the local mirror).
    pub commit: String,
    /// The commit message.
    pub message: String,
    /// For a tag push: the tag (`branch` is then empty).
    pub tag: Option<String>,
    /// The alias of the step that would push.
    pub step: String,
}

/// What a promotion would do, run against scratch copies without pushing anything.
#[derive(Debug, Clone)]
pub struct DryRunReport {
    /// The promotion that was simulated.
    pub request: PromotionRequest,
    /// The runner's result (steps that would push are `Skipped` with a dry-run message).
    pub result: PromotionResult,
    /// Every file changed, per repository.
    pub files: Vec<FileChange>,
    /// Every commit that would be pushed.
    pub pushes: Vec<PlannedPush>,
    /// Other effects steps did not perform, in their words.
    pub notes: Vec<DryRunNote>,
}

impl DryRunReport {
    /// Whether the simulated promotion succeeded.
    pub fn succeeded(&self) -> bool {
        self.result.phase == PromotionPhase::Succeeded
    }
}

/// The controller's clock as an analysis run's clock.
#[cfg(feature = "analysis")]
struct AnalysisClockOf(SharedClock);

#[cfg(feature = "analysis")]
impl kargo_steps::analysis::AnalysisClock for AnalysisClockOf {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    fn sleep(&self, duration: std::time::Duration) -> kargo_steps::analysis::ClockSleep<'_> {
        let deadline = chrono::TimeDelta::from_std(duration)
            .ok()
            .and_then(|d| self.0.now().checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.0.sleep_until(deadline)
    }
}
