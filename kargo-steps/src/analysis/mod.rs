//! Argo Rollouts analysis for Stage verification: a Stage's `spec.verification` names
//! `AnalysisTemplate`s (in its Project) and `ClusterAnalysisTemplate`s kept beside the
//! Kargo resources ([`ManifestSet::foreign_documents`]); [`AnalysisVerifier`] runs them
//! after each promotion as Argo Rollouts runs an `AnalysisRun`, with the `web` and
//! `prometheus` metric providers, and records the verdict.
//!
//! # What is read
//!
//! - The Stage: `verification.analysisTemplates[]` (`name`, `kind`) and
//!   `verification.args[]`, whose values may hold Kargo expressions, evaluated with
//!   `ctx.project`, `ctx.stage`, `vars` (the Stage's `spec.vars`) and the functions over
//!   the verified Freight collection (`imageFrom(...).Tag`, `commitFrom(...).ID`, ...);
//!   `secret(name)` reads the Project's Secrets in the same manifests. Values of those
//!   Secrets never appear in measurement values or messages (replaced by `*****`).
//! - The templates: `spec.args[]` (`name`, `value` default, `valueFrom.secretKeyRef` read
//!   from a `Secret` of the Project in the same manifests; `valueFrom.fieldRef` is refused:
//!   there is no Rollout to read it from), `spec.metrics[]` (see [`template`]) and
//!   `spec.dryRun[].metricName`. Several templates merge into one run: their metrics and
//!   arguments are combined; two metrics of one name, or one argument with two values, are
//!   errors. The Stage's arguments override the templates' defaults; an argument left
//!   without a value is an error. `{{args.NAME}}` is replaced in every string of a metric.
//!
//! # How a run goes
//!
//! See [`run`] for scheduling and the assessment of metrics and the run, [`condition`] for
//! `successCondition` / `failureCondition`, [`provider_web`] and [`provider_prometheus`]
//! for the measurements. The run's phase becomes the verification's phase; the
//! verification message lists every metric with its counters and last value
//! ([`AnalysisRunReport::summary`]).
//!
//! A metric with an `interval` and no `count` runs until a limit is exceeded, as in Argo
//! Rollouts; since nothing else would stop it here, a run ends after
//! [`AnalysisOptions::max_duration`] (one hour by default), and such metrics are then
//! assessed as Argo Rollouts assesses them when a run is terminated (`Successful` unless
//! a limit was exceeded).
//!
//! # Validation
//!
//! [`AnalysisVerifier::from_manifests`] (and [`validate`]) report, in the loader's
//! [`ManifestError`] form: a Stage naming a template the manifests do not hold, a
//! template using a provider other than `web` and `prometheus` (naming the Stage, the
//! template, the metric and the provider), malformed metrics (durations, limits, conditions,
//! JSONPath, URLs), arguments without a value, unknown `{{args.NAME}}`, and Stage argument
//! expressions that do not parse. Templates no Stage uses are not checked (an Argo
//! Rollouts installation may keep its own beside Kargo's resources).
//!
//! # Timing
//!
//! Waits go through an [`AnalysisClock`] ([`TokioClock`] by default), so intervals and
//! initial delays can be tested without sleeping; HTTP calls are real.
//!
//! ```
//! use kargo_core::loader::ManifestSet;
//! use kargo_steps::analysis::AnalysisVerifier;
//!
//! let set = ManifestSet::from_yaml_str("demo.yaml", r#"
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Project
//! metadata: {name: demo}
//! ---
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Warehouse
//! metadata: {name: app, namespace: demo}
//! spec:
//!   subscriptions:
//!   - image: {repoURL: ghcr.io/acme/app}
//! ---
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Stage
//! metadata: {name: dev, namespace: demo}
//! spec:
//!   requestedFreight:
//!   - origin: {kind: Warehouse, name: app}
//!     sources: {direct: true}
//!   promotionTemplate:
//!     spec:
//!       steps:
//!       - uses: fail
//!   verification:
//!     analysisTemplates:
//!     - name: health
//!     args:
//!     - name: tag
//!       value: ${{ imageFrom("ghcr.io/acme/app").Tag }}
//! ---
//! apiVersion: argoproj.io/v1alpha1
//! kind: AnalysisTemplate
//! metadata: {name: health, namespace: demo}
//! spec:
//!   args:
//!   - name: tag
//!   metrics:
//!   - name: version
//!     successCondition: result.version == "{{args.tag}}"
//!     provider:
//!       web:
//!         url: http://app.dev.svc/version
//!         jsonPath: "{$}"
//! "#).unwrap();
//! let verifier = AnalysisVerifier::from_manifests(&set, "demo").unwrap();
//! assert_eq!(verifier.stages(), vec!["dev"]);
//! ```

mod args;
pub mod clock;
pub mod condition;
mod jsonpath;
mod measure;
pub mod provider_prometheus;
pub mod provider_web;
pub mod report;
pub mod run;
pub mod template;

pub use clock::{AnalysisClock, ClockSleep, TokioClock};
pub use report::{AnalysisPhase, AnalysisRunReport, MAX_MEASUREMENTS, Measurement, MetricReport};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::FreightCollection;
use kargo_core::expr::{EvalData, ExprEngine, OriginSubscriptions, Scope, from_json};
use kargo_core::loader::{ManifestError, ManifestErrors, ManifestSet, SourceLocation};
use kargo_core::model::{AnalysisTemplateKind, ResourceKind, Stage};
use kargo_core::pipeline::{VerificationInfo, VerificationPhase, Verifier};
use serde_json::Value as Json;

use self::args::{Flattened, flatten, placeholders, resolve, substitute};
use self::measure::HttpClients;
use self::run::RunMetric;
use self::template::{ArgSource, Template, parse_metric, read_template};

/// How runs are timed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnalysisOptions {
    /// The wait before measuring again after an `Error` measurement (Argo Rollouts: 10 s).
    pub error_retry_interval: Duration,
    /// The longest a run may take before it is terminated (see the module
    /// documentation); `None`: no limit. Default: one hour.
    pub max_duration: Option<Duration>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            error_retry_interval: Duration::from_secs(10),
            max_duration: Some(Duration::from_secs(3600)),
        }
    }
}

impl AnalysisOptions {
    /// Sets [`error_retry_interval`](Self::error_retry_interval).
    pub fn with_error_retry_interval(mut self, d: Duration) -> Self {
        self.error_retry_interval = d;
        self
    }

    /// Sets [`max_duration`](Self::max_duration).
    pub fn with_max_duration(mut self, d: Option<Duration>) -> Self {
        self.max_duration = d;
        self
    }
}

/// What a Stage's verification runs.
#[derive(Clone, Debug)]
struct StagePlan {
    stage: Stage,
    templates: Vec<Template>,
    flattened: Flattened,
    requested: Vec<OriginSubscriptions>,
}

/// Runs the AnalysisTemplates of the Stages' `verification` (see the module
/// documentation).
#[derive(Clone)]
pub struct AnalysisVerifier {
    project: String,
    plans: BTreeMap<String, StagePlan>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    clock: Arc<dyn AnalysisClock>,
    options: AnalysisOptions,
    engine: Arc<ExprEngine>,
    clients: Arc<OnceLock<Result<HttpClients, String>>>,
}

impl std::fmt::Debug for AnalysisVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisVerifier")
            .field("project", &self.project)
            .field("stages", &self.plans.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The kind names of Argo Rollouts analysis templates.
pub const TEMPLATE_KINDS: [&str; 2] = ["AnalysisTemplate", "ClusterAnalysisTemplate"];

/// Whether any Stage of `project` names analysis templates in its `verification`.
pub fn uses_analysis(set: &ManifestSet, project: &str) -> bool {
    set.stages(project).any(|s| {
        s.spec
            .verification
            .as_ref()
            .is_some_and(|v| !v.analysis_templates.is_empty())
    })
}

/// Whether the manifests hold an `AnalysisTemplate` of `project` or a
/// `ClusterAnalysisTemplate`.
pub fn holds_templates(set: &ManifestSet, project: &str) -> bool {
    set.foreign_documents().iter().any(|d| {
        (d.kind == "AnalysisTemplate" && d.namespace.as_deref() == Some(project))
            || d.kind == "ClusterAnalysisTemplate"
    })
}

/// Checks the analysis of every Stage of `project` (see the module documentation).
pub fn validate(set: &ManifestSet, project: &str) -> Result<(), ManifestErrors> {
    AnalysisVerifier::from_manifests(set, project).map(|_| ())
}

fn stage_location(set: &ManifestSet, project: &str, stage: &str) -> SourceLocation {
    set.location(ResourceKind::Stage, Some(project), stage)
        .cloned()
        .unwrap_or(SourceLocation {
            file: Default::default(),
            document: 0,
            line: None,
            column: None,
        })
}

impl AnalysisVerifier {
    /// A verifier for the Stages of `project` in `set` that name analysis templates;
    /// every problem is reported at once (see the module documentation).
    pub fn from_manifests(set: &ManifestSet, project: &str) -> Result<Self, ManifestErrors> {
        let engine = condition::condition_engine();
        let mut errors = Vec::new();
        let mut plans = BTreeMap::new();
        // The Project's Secrets, read as everywhere else (a malformed one is reported by
        // the manifests' validation, and gives no values here).
        let secrets: BTreeMap<String, BTreeMap<String, String>> =
            kargo_core::secret::ManifestSecrets::from_manifests(set)
                .map(|all| {
                    all.project(project)
                        .own_secrets()
                        .map(|(name, data)| {
                            let values = data
                                .iter()
                                .map(|(k, v)| (k.clone(), v.expose().clone()))
                                .collect();
                            (name.to_owned(), values)
                        })
                        .collect()
                })
                .unwrap_or_default();
        for stage in set.stages(project) {
            let Some(v) = &stage.spec.verification else {
                continue;
            };
            if v.analysis_templates.is_empty() {
                continue;
            }
            let sname = &stage.metadata.name;
            let resource = format!("Stage {project}/{sname}");
            let loc = stage_location(set, project, sname);
            let stage_err = |field: String, message: String| ManifestError {
                location: set
                    .field_location(ResourceKind::Stage, Some(project), sname, &field)
                    .unwrap_or_else(|| loc.clone()),
                resource: Some(resource.clone()),
                field,
                message,
            };
            let context = format!("{resource} verifies with this template");
            let mut missing = false;
            let mut templates = Vec::new();
            for (i, r) in v.analysis_templates.iter().enumerate() {
                let doc = match r.kind {
                    AnalysisTemplateKind::AnalysisTemplate => {
                        set.foreign("AnalysisTemplate", Some(project), &r.name)
                    }
                    AnalysisTemplateKind::ClusterAnalysisTemplate => {
                        set.foreign("ClusterAnalysisTemplate", None, &r.name)
                    }
                };
                let Some(doc) = doc else {
                    let (kind, place) = match r.kind {
                        AnalysisTemplateKind::AnalysisTemplate => {
                            ("AnalysisTemplate", format!(" in namespace {project:?}"))
                        }
                        AnalysisTemplateKind::ClusterAnalysisTemplate => {
                            ("ClusterAnalysisTemplate", String::new())
                        }
                    };
                    errors.push(stage_err(
                        format!("spec.verification.analysisTemplates[{i}].name"),
                        format!(
                            "{kind} {:?}{place} is not in the manifests (expected a document \
                             with apiVersion argoproj.io/v1alpha1, kind {kind}); the Stage's \
                             verification cannot run without it",
                            r.name
                        ),
                    ));
                    missing = true;
                    continue;
                };
                templates.push(read_template(doc, &engine, &context, &mut errors));
            }
            for (i, a) in v.args.iter().enumerate() {
                if let Err(e) = engine.compile(&a.value) {
                    errors.push(stage_err(
                        format!("spec.verification.args[{i}].value"),
                        e.to_string(),
                    ));
                }
            }
            if missing {
                continue;
            }
            let flattened = match flatten(&templates) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(stage_err("spec.verification.analysisTemplates".into(), e));
                    continue;
                }
            };
            let given: BTreeSet<&str> = v.args.iter().map(|a| a.name.as_str()).collect();
            for arg in &flattened.args {
                if given.contains(arg.name.as_str()) || arg.value.is_some() {
                    continue;
                }
                let owner = templates
                    .iter()
                    .find(|t| t.args.iter().any(|a| a.name == arg.name));
                let err_at = |message: String| match owner {
                    Some(t) => t.error("spec.args", format!("{message}; {context}")),
                    None => stage_err("spec.verification.args".into(), message),
                };
                match &arg.value_from {
                    None => errors.push(stage_err(
                        "spec.verification.args".into(),
                        format!(
                            "{} needs argument {:?}, which has no default: give it in \
                             spec.verification.args",
                            owner.map_or("the analysis", |t| t.label.as_str()),
                            arg.name
                        ),
                    )),
                    Some(ArgSource::Secret { name, key }) => {
                        match secrets.get(name) {
                            None => errors.push(err_at(format!(
                                "argument {:?} reads Secret {project}/{name}, which is not in the manifests",
                                arg.name
                            ))),
                            Some(data) if !data.contains_key(key) => errors.push(err_at(format!(
                                "argument {:?} reads key {key:?} of Secret {project}/{name}, which has no such key",
                                arg.name
                            ))),
                            Some(_) => {}
                        }
                    }
                    Some(ArgSource::Field(path)) => errors.push(err_at(format!(
                        "argument {:?}: valueFrom.fieldRef ({path}) is not supported (Argo \
                         Rollouts reads it from a Rollout); give the value in the Stage's \
                         spec.verification.args",
                        arg.name
                    ))),
                }
            }
            for (ti, m) in &flattened.metrics {
                let mut used = Vec::new();
                placeholders(m, &mut used);
                for name in used {
                    if !flattened.args.iter().any(|a| a.name == name)
                        && let Some(t) = templates.get(*ti)
                    {
                        errors.push(t.error(
                            "spec.metrics",
                            format!(
                                "{{{{args.{name}}}}} is used but no template declares argument \
                                 {name:?} in spec.args; {context}"
                            ),
                        ));
                    }
                }
            }
            plans.insert(
                sname.clone(),
                StagePlan {
                    stage: stage.clone(),
                    templates,
                    flattened,
                    requested: kargo_core::runner::requested_subscriptions(set, project, stage),
                },
            );
        }
        if !errors.is_empty() {
            return Err(ManifestErrors(errors));
        }
        Ok(Self {
            project: project.to_owned(),
            plans,
            secrets,
            clock: Arc::new(TokioClock),
            options: AnalysisOptions::default(),
            engine: Arc::new(engine),
            clients: Arc::new(OnceLock::new()),
        })
    }

    /// Uses `clock` for the waits of runs (default [`TokioClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn AnalysisClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the run options.
    pub fn with_options(mut self, options: AnalysisOptions) -> Self {
        self.options = options;
        self
    }

    /// The Stages this verifier runs analyses for, by name.
    pub fn stages(&self) -> Vec<&str> {
        self.plans.keys().map(String::as_str).collect()
    }

    /// The final values of the Stage's `verification.args` for `collection`.
    fn stage_args(
        &self,
        plan: &StagePlan,
        collection: &FreightCollection,
    ) -> Result<Vec<(String, String)>, String> {
        let secrets: Arc<dyn kargo_core::secret::SecretStore> = Arc::new(self.secrets.clone());
        let data = Arc::new(EvalData {
            freight: collection.clone(),
            requested: plan.requested.clone(),
            secrets: Some(secrets),
            ..EvalData::default()
        });
        let ctx = serde_json::json!({"project": self.project, "stage": plan.stage.metadata.name});
        let mut vars = serde_json::Map::new();
        let scope_with = |vars: &serde_json::Map<String, Json>| {
            let mut top = BTreeMap::new();
            top.insert("ctx".to_owned(), from_json(&ctx));
            top.insert("vars".to_owned(), from_json(&Json::Object(vars.clone())));
            Scope::new(top, data.clone())
        };
        for var in &plan.stage.spec.vars {
            let value = self
                .engine
                .render_str(&var.value, &scope_with(&vars))
                .map_err(|e| format!("spec.vars {:?}: {e}", var.name))?;
            vars.insert(var.name.clone(), value);
        }
        let scope = scope_with(&vars);
        let mut out = Vec::new();
        if let Some(v) = &plan.stage.spec.verification {
            for (i, a) in v.args.iter().enumerate() {
                let value = self
                    .engine
                    .render_str(&a.value, &scope)
                    .map_err(|e| format!("spec.verification.args[{i}] ({}): {e}", a.name))?;
                let text = match value {
                    Json::String(s) => s,
                    Json::Null => String::new(),
                    other => other.to_string(),
                };
                out.push((a.name.clone(), text));
            }
        }
        Ok(out)
    }

    /// Runs the analysis of `stage` for `collection` and reports every metric. A Stage
    /// without analysis templates is `Successful` at once.
    pub async fn run(&self, stage: &Stage, collection: &FreightCollection) -> AnalysisRunReport {
        let sname = stage.metadata.name.as_str();
        let id = collection.id();
        let name = format!("{sname}.{}", id.get(..7).unwrap_or(&id));
        let now = self.clock.now();
        let failed = |message: String| AnalysisRunReport {
            name: name.clone(),
            phase: AnalysisPhase::Error,
            message,
            metrics: Vec::new(),
            started_at: now,
            finished_at: now,
        };
        let Some(plan) = self.plans.get(sname) else {
            let uses = stage
                .spec
                .verification
                .as_ref()
                .is_some_and(|v| !v.analysis_templates.is_empty());
            if uses {
                return failed(format!(
                    "Stage {}/{sname} was not in the manifests this verifier was built from",
                    self.project
                ));
            }
            return AnalysisRunReport {
                name: name.clone(),
                phase: AnalysisPhase::Successful,
                message: "no analysis templates".into(),
                metrics: Vec::new(),
                started_at: now,
                finished_at: now,
            };
        };
        let incoming = match self.stage_args(plan, collection) {
            Ok(a) => a,
            Err(e) => return failed(e),
        };
        // Every value of the Project's Secrets is hidden from messages (they reach
        // arguments through secretKeyRef or `secret()`).
        let secret_values: Vec<String> = self
            .secrets
            .values()
            .flat_map(|d| d.values().cloned())
            .collect();
        let secret = |name: &str, key: &str| -> Result<String, String> {
            self.secrets
                .get(name)
                .and_then(|d| d.get(key))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "key {key:?} of Secret {}/{name} is not in the manifests",
                        self.project
                    )
                })
        };
        let values = match resolve(&plan.flattened.args, &incoming, &secret) {
            Ok(v) => v,
            Err(e) => return failed(e),
        };
        let mut metrics = Vec::new();
        for (ti, raw) in &plan.flattened.metrics {
            let label = plan
                .templates
                .get(*ti)
                .map(|t| t.label.clone())
                .unwrap_or_default();
            let filled = match substitute(raw, &values) {
                Ok(f) => f,
                Err(e) => return failed(format!("{label}: {e}")),
            };
            let spec = match parse_metric(&filled, false, &self.engine) {
                Ok(s) => s,
                Err((field, message)) => {
                    let name = raw.get("name").and_then(Json::as_str).unwrap_or_default();
                    return failed(format!("{label}: metric {name:?}: {field}: {message}"));
                }
            };
            let dry_run = plan
                .flattened
                .dry_run
                .iter()
                .any(|d| d == "*" || *d == spec.name);
            metrics.push(RunMetric {
                spec,
                template: label,
                dry_run,
            });
        }
        let clients = match self.clients.get_or_init(HttpClients::new) {
            Ok(c) => c,
            Err(e) => return failed(e.clone()),
        };
        tracing::info!(stage = %sname, run = %name, metrics = metrics.len(), "analysis run started");
        let report = run::run(
            name,
            metrics,
            self.clock.as_ref(),
            &self.options,
            clients,
            &self.engine,
            &secret_values,
        )
        .await;
        tracing::info!(stage = %sname, run = %report.name, phase = %report.phase, "analysis run finished");
        report
    }
}

#[async_trait]
impl Verifier for AnalysisVerifier {
    async fn verify(&self, stage: &Stage, collection: &FreightCollection) -> VerificationInfo {
        let report = self.run(stage, collection).await;
        let mut info = report.verification_info();
        if report.metrics.is_empty() && report.phase == AnalysisPhase::Successful {
            info.phase = VerificationPhase::Successful;
        }
        info
    }
}
