//! `promoter`: a command-line promoter over a directory of Kargo manifests, with verbs
//! modelled on the `kargo` CLI. It is the library assembled the way an internal platform
//! tool would assemble it: the OCI image, Helm chart and git sources, the built-in steps,
//! a credentials file and a state directory.
//!
//! ```text
//! promoter [--manifests DIR] [--state DIR] [--credentials FILE] [--output text|json|yaml]
//!          [--project NAME] [-v] <command>
//!
//!   validate                                   check the manifests (errors with file:line)
//!   refresh warehouse NAME                     discover now; print new Freight
//!   get freight [--stage S]                    all Freight, or the Freight available to S
//!   get stages                                 Stages with their current Freight and history
//!   promote --stage S --freight ID|ALIAS [--dry-run]
//!   approve --stage S --freight ID|ALIAS       make Freight available to S
//!   rollback --stage S                         re-promote S's previous Freight (a new commit)
//!   run [--watch] [--max-sleep SECS]           refresh due Warehouses, then auto-promote
//!   serve [--listen ADDR] [--secrets FILE] [--refresh-token TOKEN] [--max-sleep SECS]
//!                                              HTTP: webhooks, refresh API, health; plus
//!                                              the `run --watch` loop
//! ```
//!
//! - `--manifests` (default `./kargo`): every `*.yaml` / `*.yml` below it. Stages may use
//!   the PromotionTasks and ClusterPromotionTasks of the directory.
//! - `--state` (default `./.kargo-state`): the project's state (`<project>.json`), git
//!   mirrors (`cache/git`) and promotion work directories (`work`).
//! - `--credentials FILE`: a YAML list of `{type: git|image|helm, repoURL | repoURLPattern,
//!   username, password}` entries, matched as Kargo matches its credential Secrets (see
//!   [`kargo::core::secret::CredentialTable`]).
//! - `--project` (default: the only Project of the manifests).
//!
//! `serve` hosts, on `--listen` (default `127.0.0.1:8080`; port 0 picks one, and the bound
//! address is printed on stderr as `listening on http://ADDR`):
//!
//! - `POST /webhook/<provider>/<token>`: the Project's webhook receivers
//!   (`ProjectConfig.spec.webhookReceivers`, see [`kargo::sources::webhook`]), whose
//!   `secretRef`s are read from `--secrets FILE` (YAML: `name: {key: value}`). At most
//!   2 MiB + 1 bytes of a body are read; a rejection answers the receiver's status (401,
//!   403, 404, 413, 400, 422) with `{"error": ...}` and is logged without the body. An
//!   accepted request answers 202 with the Warehouses it queued (200 when none), and the
//!   worker refreshes exactly those Warehouses, then runs auto-promotion at once.
//! - `POST /refresh/warehouse/<name>`: queues a refresh of one Warehouse (then
//!   auto-promotion); needs `Authorization: Bearer <token>` with the token of
//!   `--refresh-token` or `KARGO_REFRESH_TOKEN`, and is refused (403) when neither is set.
//! - `GET /healthz`: 200 `ok`.
//!
//! One worker task does all reconcile work (the interval loop of `run --watch` and the
//! refreshes requested over HTTP), so two passes never run at once; requests that arrive
//! during a pass are merged into the next one. Ctrl-C stops accepting requests and stops
//! after the current pass.
//!
//! Exit status: 0 on success; 1 when a promotion failed (or discovery, git, the state
//! store failed); 2 on bad input: bad flags, manifest errors, an unknown Stage, Warehouse
//! or Freight, Freight not available to the Stage, nothing to roll back.
//!
//! Progress goes to stderr, results to stdout; colours only on a terminal and never with
//! `NO_COLOR`. `-v` (or `KARGO_LOG=<filter>`) shows the library's log lines.
//!
//! Run: `cargo run --example promoter -- --help`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use kargo::controller::{
    Controller, ControllerError, PromotionReport, ReconcileReport, RefreshOutcome,
};
use kargo::core::freight::{Freight, FreightCollection};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{FileStore, FreightRecord, Pipeline, PipelineError, ProjectState};
use kargo::core::runner::Runner;
use kargo::core::secret::{CredentialTable, NoCredentials};
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::core::validate::validate;
use kargo::git::GitConfig;
use kargo::sources::chart::ChartSource;
use kargo::sources::git::GitSource;
use kargo::sources::image::{ImageSource, ImageSourceOptions};
use kargo::sources::warehouse::FreightDecision;
use kargo::steps::{BuiltinOptions, register_builtins_with};
use serde_json::{Value as Json, json};

// ---------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Parser)]
#[command(
    name = "promoter",
    version,
    about = "GitOps promotion over a directory of Kargo manifests",
    long_about = "GitOps promotion over a directory of Kargo manifests: Warehouses discover \
                  images, charts and commits as Freight; Stages receive Freight by \
                  auto-promotion or on request, through their promotion steps.\n\n\
                  Exit status: 0 success, 1 a promotion (or discovery, git, state) failed, \
                  2 bad input."
)]
struct Cli {
    /// The directory of Kargo manifests (every *.yaml / *.yml below it).
    #[arg(long, global = true, value_name = "DIR", default_value = "./kargo")]
    manifests: PathBuf,
    /// The state directory (pipeline state, git mirrors, work directories).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "./.kargo-state"
    )]
    state: PathBuf,
    /// A YAML list of credentials: {type: git|image|helm, repoURL | repoURLPattern,
    /// username, password}.
    #[arg(long, global = true, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// How results are printed on stdout.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The project (default: the only Project in the manifests).
    #[arg(long, global = true, value_name = "NAME")]
    project: Option<String>,
    /// Show the library's log lines on stderr (KARGO_LOG=<filter> for more control).
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate the manifests.
    Validate,
    /// Run discovery now.
    Refresh {
        #[command(subcommand)]
        target: RefreshTarget,
    },
    /// Show Freight or Stages.
    Get {
        #[command(subcommand)]
        target: GetTarget,
    },
    /// Promote Freight to a Stage now (then whatever auto-promotion follows).
    Promote {
        /// The Stage.
        #[arg(long)]
        stage: String,
        /// The Freight: its ID, a unique ID prefix (7+ characters) or its alias.
        #[arg(long, value_name = "ID_OR_ALIAS")]
        freight: String,
        /// Show what the promotion would change, without pushing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Approve Freight for a Stage (makes it available there).
    Approve {
        /// The Stage.
        #[arg(long)]
        stage: String,
        /// The Freight: its ID, a unique ID prefix (7+ characters) or its alias.
        #[arg(long, value_name = "ID_OR_ALIAS")]
        freight: String,
    },
    /// Re-promote the Stage's previous Freight (a new promotion, a new commit).
    Rollback {
        /// The Stage.
        #[arg(long)]
        stage: String,
    },
    /// One reconcile pass: refresh every Warehouse whose interval is due, then run
    /// auto-promotions.
    Run {
        /// Keep going: sleep until the next Warehouse is due (Ctrl-C stops).
        #[arg(long)]
        watch: bool,
        /// Refresh every Warehouse now, whether or not its interval has elapsed (first
        /// pass only with --watch).
        #[arg(long)]
        refresh_all: bool,
        /// With --watch: the longest sleep between passes, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        max_sleep: u64,
    },
    /// Serve webhooks, a refresh API and a health check over HTTP, and run the `run
    /// --watch` loop in the background.
    Serve {
        /// The address to listen on (port 0: any free port; the bound address is printed).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A YAML map of Secrets, `name: {key: value}`, for the webhook receivers'
        /// `secretRef`s (and the steps' `secret()`).
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        /// The bearer token of `POST /refresh/warehouse/NAME` (default: the
        /// KARGO_REFRESH_TOKEN environment variable; without either the endpoint refuses).
        #[arg(long, value_name = "TOKEN")]
        refresh_token: Option<String>,
        /// The longest sleep between interval passes, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        max_sleep: u64,
    },
}

#[derive(Debug, Subcommand)]
enum RefreshTarget {
    /// Discover a Warehouse's artifacts now.
    Warehouse {
        /// The Warehouse.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum GetTarget {
    /// List Freight, newest first.
    Freight {
        /// Only the Freight available to this Stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// List the Stages with their current Freight and history.
    Stages,
}

// ---------------------------------------------------------------------------------------
// Failures and exit status

#[derive(Debug)]
enum Failure {
    /// Bad input: exit 2.
    Input(String),
    /// Something failed while running: exit 1.
    Runtime(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Input(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }
}

impl From<ControllerError> for Failure {
    fn from(e: ControllerError) -> Self {
        let input = matches!(
            &e,
            ControllerError::UnknownProject(_)
                | ControllerError::UnknownWarehouse(_)
                | ControllerError::Plan(_)
                | ControllerError::Pipeline(
                    PipelineError::UnknownStage(_)
                        | PipelineError::UnknownFreight(_)
                        | PipelineError::OriginNotRequested { .. }
                        | PipelineError::NotAvailable { .. }
                        | PipelineError::NothingToRollBack(_)
                        | PipelineError::ControlFlow(_)
                )
        );
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !msg.contains(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            source = s.source();
        }
        if input {
            Failure::Input(msg)
        } else {
            Failure::Runtime(msg)
        }
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Terminal output

/// ANSI colours, on only for a terminal and without `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn detect(terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Paint(terminal && !no_color)
    }
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }
}

#[derive(Clone, Copy)]
struct Ui {
    output: Output,
    out: Paint,
    err: Paint,
}

impl Ui {
    fn progress(&self, msg: &str) {
        eprintln!("{} {msg}", self.err.dim("•"));
    }

    /// Prints `value` as JSON or YAML, or calls `text` for the text form.
    fn emit(&self, value: &Json, text: impl FnOnce()) -> Result<()> {
        match self.output {
            Output::Text => text(),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value)
                    .map_err(|e| Failure::Runtime(format!("cannot encode JSON: {e}")))?
            ),
            Output::Yaml => print!(
                "{}",
                yaml_serde::to_string(value)
                    .map_err(|e| Failure::Runtime(format!("cannot encode YAML: {e}")))?
            ),
        }
        Ok(())
    }

    /// Awaits `fut`, telling stderr what is going on: a start line, a heartbeat every
    /// 5 seconds, the time taken.
    async fn with_progress<T>(&self, what: &str, fut: impl std::future::Future<Output = T>) -> T {
        self.progress(&format!("{what}…"));
        let start = Instant::now();
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = tick.tick() => {
                    self.progress(&format!("{what}: still working ({}s)", start.elapsed().as_secs()));
                }
            }
        };
        self.progress(&format!(
            "{what}: finished after {:.1}s",
            start.elapsed().as_secs_f64()
        ));
        out
    }
}

// ---------------------------------------------------------------------------------------
// Assembly

fn load_manifests(dir: &Path) -> Result<ManifestSet> {
    if !dir.is_dir() {
        return Err(Failure::Input(format!(
            "manifest directory {} does not exist (use --manifests DIR)",
            dir.display()
        )));
    }
    ManifestSet::load_dir(dir)
        .map_err(|errors| Failure::Input(format!("{} manifest error(s):\n{errors}", errors.len())))
}

fn pick_project(manifests: &ManifestSet, wanted: Option<&str>) -> Result<String> {
    let names = manifests.project_names();
    match wanted {
        Some(p) if names.contains(&p) => Ok(p.to_owned()),
        Some(p) => Err(Failure::Input(format!(
            "project {p:?} is not defined in the manifests (projects: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ))),
        None => match names.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(Failure::Input(
                "the manifests define no Project (a `kind: Project` resource)".into(),
            )),
            several => Err(Failure::Input(format!(
                "the manifests define several projects ({}): choose one with --project",
                several.join(", ")
            ))),
        },
    }
}

fn runner(state: &Path) -> Result<Runner> {
    let mut steps = StepRegistry::new();
    // Argo CD comes from KARGO_ARGOCD_SERVER / _TOKEN / _NAMESPACE (BuiltinOptions' default);
    // with a server set, every branch push also refreshes the Applications tracking the
    // branch (KARGO_ARGOCD_REFRESH_AFTER_PUSH=false turns that off).
    let options = BuiltinOptions {
        git: GitConfig::new(state.join("cache").join("git")),
        ..BuiltinOptions::default()
    };
    register_builtins_with(&mut steps, &options)
        .map_err(|e| Failure::Runtime(format!("cannot register the steps: {e}")))?;
    // set-metadata writes to the same state directory as the pipeline.
    let store = FileStore::open(state).map_err(|e| Failure::Runtime(e.to_string()))?;
    steps
        .register(kargo::steps::metadata::SetMetadata::new(Arc::new(store)))
        .map_err(|e| Failure::Runtime(format!("cannot register the steps: {e}")))?;
    Ok(Runner::new(steps))
}

fn sources(state: &Path) -> Result<SourceRegistry> {
    let mut sources = SourceRegistry::new();
    let dup = |e: kargo::core::step::DuplicateStep| {
        Failure::Runtime(format!("cannot register the sources: {e}"))
    };
    // Kargo's knobs: IMAGE_REGISTRY_RATE_LIMIT (requests/s per registry, default 20).
    let mut image_options = ImageSourceOptions::default();
    if let Ok(v) = std::env::var("IMAGE_REGISTRY_RATE_LIMIT") {
        image_options.rate_limit = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0)
            .ok_or_else(|| {
                Failure::Input(format!(
                    "IMAGE_REGISTRY_RATE_LIMIT must be a positive number, got {v:?}"
                ))
            })?;
    }
    sources
        .register(ImageSource::new(image_options))
        .map_err(dup)?;
    sources.register(ChartSource::new()).map_err(dup)?;
    sources
        .register(GitSource::new(GitConfig::new(
            state.join("cache").join("git"),
        )))
        .map_err(dup)?;
    Ok(sources)
}

/// Loads and validates the manifests; returns them, the project and the runner.
fn checked(cli: &Cli) -> Result<(ManifestSet, String, Runner)> {
    let manifests = load_manifests(&cli.manifests)?;
    let project = pick_project(&manifests, cli.project.as_deref())?;
    let runner = runner(&cli.state)?;
    validate(&manifests, runner.engine(), Some(runner.registry())).map_err(|errors| {
        Failure::Input(format!("{} manifest error(s):\n{errors}", errors.len()))
    })?;
    Ok((manifests, project, runner))
}

fn controller(cli: &Cli) -> Result<Controller> {
    let (manifests, project, runner) = checked(cli)?;
    let store = FileStore::open(&cli.state).map_err(|e| Failure::Runtime(e.to_string()))?;
    let credentials: Arc<dyn kargo::core::secret::CredentialProvider> = match &cli.credentials {
        Some(path) => {
            Arc::new(CredentialTable::from_file(path).map_err(|e| Failure::Input(e.to_string()))?)
        }
        None => Arc::new(NoCredentials),
    };
    let c = Controller::new(
        manifests,
        &project,
        sources(&cli.state)?,
        runner,
        Arc::new(store),
    )?
    .with_credentials(credentials)
    .with_work_root(cli.state.join("work"));
    Ok(c)
}

fn actor() -> Option<String> {
    std::env::var("KARGO_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------
// Rendering

fn artifacts(f: &Freight) -> Vec<String> {
    let mut parts: Vec<String> = f
        .images
        .iter()
        .map(|i| format!("{}:{}", i.repo_url, i.tag))
        .collect();
    parts.extend(f.charts.iter().map(|c| {
        if c.name.is_empty() {
            format!("{}@{}", c.repo_url, c.version)
        } else {
            format!("{}/{}@{}", c.repo_url, c.name, c.version)
        }
    }));
    parts.extend(f.commits.iter().map(|c| {
        let id = c.id.get(..7).unwrap_or(&c.id);
        if c.tag.is_empty() {
            format!("{}#{id}", c.repo_url)
        } else {
            format!("{}#{} ({id})", c.repo_url, c.tag)
        }
    }));
    parts.extend(
        f.artifacts
            .iter()
            .map(|a| format!("{}/{}@{}", a.artifact_type, a.subscription_name, a.version)),
    );
    parts
}

fn alias_or_id(f: &Freight) -> String {
    f.alias.clone().unwrap_or_else(|| f.name.short().to_owned())
}

/// Freight with Kargo's field names (`alias`, `origin`, `images`, `charts`, `commits`,
/// `status.currentlyIn/verifiedIn/approvedFor`), plus `id`.
fn freight_json(rec: &FreightRecord) -> Json {
    let f = &rec.freight;
    let mut v = json!({
        "id": f.name,
        "alias": f.alias,
        "origin": f.origin,
        "discoveredAt": f.discovered_at,
        "images": f.images,
        "charts": f.charts,
        "commits": f.commits,
        "status": rec.status,
    });
    if !f.artifacts.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.insert("artifacts".into(), json!(f.artifacts));
    }
    v
}

fn collection_json(c: &FreightCollection, state: &ProjectState) -> Json {
    Json::Array(
        c.references()
            .into_iter()
            .map(|r| {
                json!({
                    "id": r.name,
                    "alias": state.freight.get(&r.name).and_then(|f| f.freight.alias.clone()),
                    "origin": r.origin,
                })
            })
            .collect(),
    )
}

fn collection_text(c: &FreightCollection, state: &ProjectState) -> String {
    let parts: Vec<String> = c
        .references()
        .into_iter()
        .map(|r| match state.freight.get(&r.name) {
            Some(rec) => format!(
                "{} ({})",
                alias_or_id(&rec.freight),
                artifacts(&rec.freight).join(", ")
            ),
            None => r.name.short().to_owned(),
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" + ")
    }
}

fn report_json(r: &PromotionReport) -> Json {
    json!({
        "name": r.request.name,
        "stage": r.request.stage,
        "freight": r.request.freight,
        "trigger": r.request.trigger,
        "phase": r.result.phase,
        "message": r.result.message,
        "steps": r.result.steps.iter().map(|s| json!({
            "as": s.alias, "uses": s.uses, "status": s.status, "message": s.message,
            "outputs": s.outputs,
        })).collect::<Vec<_>>(),
    })
}

fn print_reports(ui: &Ui, reports: &[PromotionReport], state: &ProjectState) {
    for r in reports {
        let ok = r.succeeded();
        let phase = r.result.phase.to_string();
        let phase = if ok {
            ui.out.green(&phase)
        } else {
            ui.out.red(&phase)
        };
        let freight = state
            .freight
            .get(&r.request.freight)
            .map(|f| alias_or_id(&f.freight))
            .unwrap_or_else(|| r.request.freight.short().to_owned());
        let trigger = format!("{:?}", r.request.trigger).to_lowercase();
        println!(
            "promotion {} ({trigger}): Freight {} -> Stage {}: {phase}",
            r.request.name,
            ui.out.bold(&freight),
            ui.out.bold(&r.request.stage)
        );
        for s in &r.result.steps {
            let status = format!("{:?}", s.status);
            let msg = s.message.as_deref().unwrap_or("");
            println!("  {:<28} {:<18} {status:<10} {msg}", s.alias, s.uses);
        }
        if !ok && let Some(m) = &r.result.message {
            println!("  {}", ui.out.red(m));
        }
    }
}

fn outcome_json(warehouse: &str, o: &RefreshOutcome) -> Json {
    match o {
        RefreshOutcome::Created(f) => json!({
            "warehouse": warehouse, "outcome": "Created",
            "freight": {"id": f.name, "alias": f.alias, "origin": f.origin,
                        "images": f.images, "charts": f.charts, "commits": f.commits},
        }),
        RefreshOutcome::Unchanged(id) => {
            json!({"warehouse": warehouse, "outcome": "Unchanged", "freight": {"id": id}})
        }
        RefreshOutcome::NotCreated(d) => {
            json!({"warehouse": warehouse, "outcome": "NotCreated", "reason": decision_text(d)})
        }
    }
}

fn decision_text(d: &FreightDecision) -> String {
    match d {
        FreightDecision::Created(f) => format!("Freight {} would be created", f.name.short()),
        FreightDecision::MissingArtifacts { subscription } => {
            format!("subscription {subscription} found nothing")
        }
        FreightDecision::Manual => "the Warehouse's freightCreationPolicy is Manual".into(),
        FreightDecision::CriteriaNotMet => "freightCreationCriteria not met".into(),
    }
}

fn outcome_text(ui: &Ui, warehouse: &str, o: &RefreshOutcome) -> String {
    match o {
        RefreshOutcome::Created(f) => format!(
            "Warehouse {warehouse}: new Freight {} ({}) {}",
            ui.out.bold(&alias_or_id(f)),
            f.name.short(),
            artifacts(f).join(", ")
        ),
        RefreshOutcome::Unchanged(id) => format!(
            "Warehouse {warehouse}: no new Freight (the newest artifacts are Freight {})",
            id.short()
        ),
        RefreshOutcome::NotCreated(d) => {
            format!("Warehouse {warehouse}: no Freight: {}", decision_text(d))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands

fn cmd_validate(cli: &Cli, ui: &Ui) -> Result<()> {
    let (manifests, project, _) = checked(cli)?;
    let warehouses = manifests.warehouses(&project).count();
    let stages = manifests.stages(&project).count();
    let tasks = manifests.promotion_tasks(&project).count();
    let cluster_tasks = manifests.cluster_promotion_tasks().count();
    ui.emit(
        &json!({
            "valid": true, "project": project, "resources": manifests.len(),
            "warehouses": warehouses, "stages": stages, "promotionTasks": tasks,
            "clusterPromotionTasks": cluster_tasks,
        }),
        || {
            println!(
                "{} {} resources; project {project}: {warehouses} Warehouse(s), {stages} Stage(s), \
                 {tasks} PromotionTask(s), {cluster_tasks} ClusterPromotionTask(s)",
                ui.out.green("valid:"),
                manifests.len()
            )
        },
    )
}

async fn cmd_refresh(cli: &Cli, ui: &Ui, warehouse: &str) -> Result<()> {
    let c = controller(cli)?;
    let outcome = ui
        .with_progress(
            &format!("refreshing Warehouse {warehouse}"),
            c.refresh(warehouse),
        )
        .await?;
    ui.emit(&outcome_json(warehouse, &outcome), || {
        println!("{}", outcome_text(ui, warehouse, &outcome))
    })
}

fn cmd_get_freight(cli: &Cli, ui: &Ui, stage: Option<&str>) -> Result<()> {
    let c = controller(cli)?;
    let state = c.state()?;
    let now = Utc::now();
    let mut list: Vec<&FreightRecord> = match stage {
        Some(s) => {
            let st = c.pipeline().stage(s).map_err(ControllerError::from)?;
            Pipeline::available_to(st, &state, now)
        }
        None => state.freight.values().collect(),
    };
    list.sort_by(|a, b| {
        b.freight
            .discovered_at
            .cmp(&a.freight.discovered_at)
            .then_with(|| b.freight.name.cmp(&a.freight.name))
    });
    let value = Json::Array(list.iter().map(|r| freight_json(r)).collect());
    ui.emit(&value, || {
        if list.is_empty() {
            match stage {
                Some(s) => println!("no Freight is available to Stage {s}"),
                None => println!("no Freight yet (try `run` or `refresh warehouse NAME`)"),
            }
            return;
        }
        println!(
            "{}",
            ui.out.bold(&format!(
                "{:<24} {:<8} {:<22} {:<24} ARTIFACTS",
                "ALIAS", "ID", "ORIGIN", "IN STAGES"
            ))
        );
        for r in &list {
            let f = &r.freight;
            let mut stages: Vec<String> = r.status.currently_in.keys().cloned().collect();
            for s in r.status.approved_for.keys() {
                if !r.status.currently_in.contains_key(s) {
                    stages.push(format!("{s}(approved)"));
                }
            }
            println!(
                "{:<24} {:<8} {:<22} {:<24} {}",
                f.alias.as_deref().unwrap_or("-"),
                f.name.short(),
                f.origin.to_string(),
                if stages.is_empty() {
                    "-".into()
                } else {
                    stages.join(",")
                },
                artifacts(f).join(", ")
            );
        }
    })
}

fn cmd_get_stages(cli: &Cli, ui: &Ui) -> Result<()> {
    let c = controller(cli)?;
    let state = c.state()?;
    let pipeline = c.pipeline();
    let stages: Vec<_> = c.manifests().stages(c.project()).collect();
    let empty = Default::default();
    let value = Json::Array(
        stages
            .iter()
            .map(|s| {
                let name = &s.metadata.name;
                let st = state.stages.get(name).unwrap_or(&empty);
                json!({
                    "name": name,
                    "autoPromotionEnabled": pipeline.auto_promotion_enabled(s),
                    "requestedFreight": s.spec.requested_freight.iter().map(|r| json!({
                        "origin": r.origin, "direct": r.sources.direct, "stages": r.sources.stages,
                    })).collect::<Vec<_>>(),
                    "currentFreight": st.current().map(|c| collection_json(c, &state)).unwrap_or(json!([])),
                    "freightHistory": st.freight_history.iter().map(|h| json!({
                        "promotedAt": h.promoted_at, "promotion": h.promotion,
                        "freight": collection_json(&h.collection, &state),
                    })).collect::<Vec<_>>(),
                    "lastPromotion": st.last_promotion,
                    "currentPromotion": st.current_promotion.as_ref().map(|p| &p.name),
                    "queue": st.queue.iter().map(|p| &p.name).collect::<Vec<_>>(),
                    "autoPromotionHolds": st.auto_promotion_holds,
                })
            })
            .collect(),
    );
    ui.emit(&value, || {
        for s in &stages {
            let name = &s.metadata.name;
            let st = state.stages.get(name).unwrap_or(&empty);
            let auto = if pipeline.auto_promotion_enabled(s) {
                "auto-promotion on"
            } else {
                "auto-promotion off"
            };
            let last = st
                .last_promotion
                .as_ref()
                .map(|p| {
                    let phase = p.phase.to_string();
                    let phase = if phase == "Succeeded" {
                        ui.out.green(&phase)
                    } else {
                        ui.out.red(&phase)
                    };
                    format!("last promotion {} {phase}", p.name)
                })
                .unwrap_or_else(|| "never promoted".into());
            println!("{} ({auto}; {last})", ui.out.bold(&format!("Stage {name}")));
            match st.current() {
                Some(c) => println!("  current: {}", collection_text(c, &state)),
                None => println!("  current: -"),
            }
            for hold in st.auto_promotion_holds.values() {
                println!(
                    "  {} {} pinned at {}",
                    ui.out.yellow("hold:"),
                    hold.origin,
                    state
                        .freight
                        .get(&hold.freight_name)
                        .map(|f| alias_or_id(&f.freight))
                        .unwrap_or_else(|| hold.freight_name.short().to_owned())
                );
            }
            for (i, h) in st.freight_history.iter().enumerate().skip(1) {
                println!(
                    "  {} {} {}",
                    ui.out.dim(&format!("history[{i}]")),
                    h.promoted_at.format("%Y-%m-%d %H:%M:%S"),
                    collection_text(&h.collection, &state)
                );
            }
        }
    })
}

/// Prints promotion reports; a failed one is exit status 1.
fn finish_promotions(ui: &Ui, c: &Controller, reports: &[PromotionReport]) -> Result<()> {
    let state = c.state()?;
    ui.emit(
        &Json::Array(reports.iter().map(report_json).collect()),
        || print_reports(ui, reports, &state),
    )?;
    let failed: Vec<&PromotionReport> = reports.iter().filter(|r| !r.succeeded()).collect();
    if let Some(first) = failed.first() {
        return Err(Failure::Runtime(format!(
            "{} promotion(s) failed; first: {} in Stage {}: {}",
            failed.len(),
            first.request.name,
            first.request.stage,
            first.result.message.as_deref().unwrap_or("(no message)")
        )));
    }
    Ok(())
}

async fn cmd_promote(cli: &Cli, ui: &Ui, stage: &str, freight: &str, dry_run: bool) -> Result<()> {
    let c = controller(cli)?;
    if dry_run {
        let report = ui
            .with_progress(
                &format!("dry run of Freight {freight} to Stage {stage}"),
                c.dry_run(stage, freight, actor()),
            )
            .await?;
        let value = json!({
            "dryRun": true,
            "promotion": report_json(&kargo::controller::PromotionReport {
                request: report.request.clone(),
                result: report.result.clone(),
                record: kargo::core::pipeline::PromotionRecord {
                    name: report.request.name.clone(),
                    stage: report.request.stage.clone(),
                    freight: report.request.freight.clone(),
                    collection_id: report.request.collection.id(),
                    trigger: report.request.trigger,
                    phase: report.result.phase,
                    message: report.result.message.clone().unwrap_or_default(),
                    finished_at: report.result.finished_at,
                },
            }),
            "pushes": report.pushes.iter().map(|p| json!({
                "repoURL": p.repo_url, "branch": p.branch, "tag": p.tag,
                "commit": p.commit, "message": p.message, "step": p.step,
            })).collect::<Vec<_>>(),
            "files": report.files.iter().map(|f| json!({
                "repoURL": f.repo_url, "path": f.path, "diff": f.diff,
            })).collect::<Vec<_>>(),
        });
        ui.emit(&value, || {
            println!(
                "dry run of promotion {} to Stage {}: {} (nothing was pushed)",
                report.request.name,
                ui.out.bold(stage),
                report.result.phase
            );
            for s in &report.result.steps {
                let msg = s.message.as_deref().unwrap_or("");
                println!(
                    "  {:<28} {:<18} {:<10} {msg}",
                    s.alias,
                    s.uses,
                    format!("{:?}", s.status)
                );
            }
            for p in &report.pushes {
                let target = p
                    .tag
                    .as_deref()
                    .map_or_else(|| format!("branch {}", p.branch), |t| format!("tag {t}"));
                println!(
                    "would push {} to {} of {}",
                    &p.commit[..p.commit.len().min(12)],
                    target,
                    p.repo_url
                );
                for line in p.message.lines() {
                    println!("    {line}");
                }
            }
            for f in &report.files {
                println!("{}", ui.out.bold(&format!("{} {}", f.repo_url, f.path)));
                for line in f.diff.lines() {
                    let line = if line.starts_with('+') && !line.starts_with("+++") {
                        ui.out.green(line)
                    } else if line.starts_with('-') && !line.starts_with("---") {
                        ui.out.red(line)
                    } else {
                        line.to_owned()
                    };
                    println!("{line}");
                }
            }
        })?;
        if !report.succeeded() {
            return Err(Failure::Runtime(format!(
                "the dry run of {} failed: {}",
                report.request.name,
                report.result.message.as_deref().unwrap_or("(no message)")
            )));
        }
        return Ok(());
    }
    let reports = ui
        .with_progress(
            &format!("promoting Freight {freight} to Stage {stage}"),
            c.promote(stage, freight, actor()),
        )
        .await?;
    finish_promotions(ui, &c, &reports)
}

fn cmd_approve(cli: &Cli, ui: &Ui, stage: &str, freight: &str) -> Result<()> {
    let c = controller(cli)?;
    let id = c.approve(stage, freight, actor())?;
    let state = c.state()?;
    let alias = state.freight.get(&id).and_then(|f| f.freight.alias.clone());
    ui.emit(
        &json!({"approved": true, "stage": stage, "freight": {"id": id, "alias": alias}}),
        || {
            println!(
                "Freight {} ({}) approved for Stage {stage}",
                ui.out.bold(alias.as_deref().unwrap_or(id.short())),
                id.short()
            )
        },
    )
}

async fn cmd_rollback(cli: &Cli, ui: &Ui, stage: &str) -> Result<()> {
    let c = controller(cli)?;
    let reports = ui
        .with_progress(
            &format!("rolling back Stage {stage}"),
            c.rollback(stage, actor()),
        )
        .await?;
    finish_promotions(ui, &c, &reports)
}

fn reconcile_json(r: &ReconcileReport) -> Json {
    json!({
        "refreshed": r.refreshed.iter().map(|(w, o)| outcome_json(w, o)).collect::<Vec<_>>(),
        "promotions": r.promotions.iter().map(report_json).collect::<Vec<_>>(),
    })
}

fn print_pass(ui: &Ui, c: &Controller, pass: &ReconcileReport) -> Result<()> {
    let state = c.state()?;
    ui.emit(&reconcile_json(pass), || {
        for (w, o) in &pass.refreshed {
            println!("{}", outcome_text(ui, w, o));
        }
        print_reports(ui, &pass.promotions, &state);
        if pass.refreshed.is_empty() && pass.promotions.is_empty() {
            println!("nothing to do: no Warehouse is due and no Stage needs promoting");
        }
    })
}

fn pass_failure(pass: &ReconcileReport) -> Option<Failure> {
    let failed: Vec<&PromotionReport> = pass.promotions.iter().filter(|r| !r.succeeded()).collect();
    failed.first().map(|f| {
        Failure::Runtime(format!(
            "{} promotion(s) failed; first: {} in Stage {}: {}",
            failed.len(),
            f.request.name,
            f.request.stage,
            f.result.message.as_deref().unwrap_or("(no message)")
        ))
    })
}

/// How long until the next Warehouse is due, between 1 s and `max`.
fn next_due(c: &Controller, max: Duration) -> Duration {
    let Ok(state) = c.state() else {
        return max;
    };
    let now = Utc::now();
    let mut wait = max;
    for w in c.manifests().warehouses(c.project()) {
        let interval = Duration::from(w.spec.interval);
        let due_in = match state
            .warehouses
            .get(&w.metadata.name)
            .and_then(|s| s.last_discovery)
        {
            None => Duration::ZERO,
            Some(last) => chrono::Duration::from_std(interval)
                .ok()
                .and_then(|i| (last + i - now).to_std().ok())
                .unwrap_or(Duration::ZERO),
        };
        wait = wait.min(due_in);
    }
    wait.max(Duration::from_secs(1))
}

async fn cmd_run(cli: &Cli, ui: &Ui, watch: bool, refresh_all: bool, max_sleep: u64) -> Result<()> {
    let c = controller(cli)?;
    if !watch {
        let pass = ui
            .with_progress("reconciling", c.reconcile(refresh_all))
            .await?;
        print_pass(ui, &c, &pass)?;
        return match pass_failure(&pass) {
            Some(f) => Err(f),
            None => Ok(()),
        };
    }
    let max = Duration::from_secs(max_sleep.max(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    ui.progress("watching (Ctrl-C stops)");
    let mut force = refresh_all;
    loop {
        // A pass is not interrupted half-way (a promotion in flight would be left
        // running in the state): the first Ctrl-C stops after it, a second one now.
        let pass = c.reconcile(std::mem::take(&mut force));
        tokio::pin!(pass);
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                r = &mut pass => break r,
                _ = &mut ctrl_c => {
                    if stopping {
                        ui.progress("aborted");
                        return Err(Failure::Runtime("aborted during a pass".into()));
                    }
                    stopping = true;
                    ui.progress("stopping after the current pass (Ctrl-C again to abort)");
                    ctrl_c.set(tokio::signal::ctrl_c());
                }
            }
        };
        let mut failed = false;
        match result {
            Ok(pass) => {
                if !pass.refreshed.is_empty() || !pass.promotions.is_empty() {
                    print_pass(ui, &c, &pass)?;
                }
                if let Some(Failure::Runtime(m) | Failure::Input(m)) = pass_failure(&pass) {
                    eprintln!("{} {m}", ui.err.red("error:"));
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{} {}", ui.err.red("error:"), Failure::from(e).message());
            }
        }
        if stopping {
            ui.progress("stopped");
            return Ok(());
        }
        let mut wait = next_due(&c, max);
        if failed {
            wait = wait.max(Duration::from_secs(10).min(max));
        }
        ui.progress(&format!("next pass in {}s", wait.as_secs()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut ctrl_c => {
                ui.progress("stopped");
                return Ok(());
            }
        }
        ctrl_c.set(tokio::signal::ctrl_c());
    }
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Input(m) | Failure::Runtime(m) => m,
        }
    }
}

// ---------------------------------------------------------------------------------------
// main

fn init_logging(verbose: bool) {
    let filter = match std::env::var("KARGO_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ if verbose => "info".into(),
        _ => "warn".into(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(Paint::detect(std::io::stderr().is_terminal()).0)
        .with_target(false)
        .try_init();
}

async fn dispatch(cli: &Cli, ui: &Ui) -> Result<()> {
    match &cli.command {
        Command::Validate => cmd_validate(cli, ui),
        Command::Refresh {
            target: RefreshTarget::Warehouse { name },
        } => cmd_refresh(cli, ui, name).await,
        Command::Get {
            target: GetTarget::Freight { stage },
        } => cmd_get_freight(cli, ui, stage.as_deref()),
        Command::Get {
            target: GetTarget::Stages,
        } => cmd_get_stages(cli, ui),
        Command::Promote {
            stage,
            freight,
            dry_run,
        } => cmd_promote(cli, ui, stage, freight, *dry_run).await,
        Command::Approve { stage, freight } => cmd_approve(cli, ui, stage, freight),
        Command::Rollback { stage } => cmd_rollback(cli, ui, stage).await,
        Command::Run {
            watch,
            refresh_all,
            max_sleep,
        } => cmd_run(cli, ui, *watch, *refresh_all, *max_sleep).await,
        Command::Serve {
            listen,
            secrets,
            refresh_token,
            max_sleep,
        } => {
            let token = refresh_token
                .clone()
                .or_else(|| std::env::var("KARGO_REFRESH_TOKEN").ok())
                .filter(|t| !t.is_empty());
            serve::cmd_serve(cli, ui, *listen, secrets.as_deref(), token, *max_sleep).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let ui = Ui {
        output: cli.output,
        out: Paint::detect(std::io::stdout().is_terminal()),
        err: Paint::detect(std::io::stderr().is_terminal()),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{} cannot start the runtime: {e}", ui.err.red("error:"));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(&cli, &ui)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{} {}", ui.err.red("error:"), f.message());
            ExitCode::from(f.code())
        }
    }
}

// ---------------------------------------------------------------------------------------
// serve

mod serve {
    use super::*;
    use axum::body::Body;
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{any, get, post};
    use kargo::core::model::Warehouse;
    use kargo::sources::webhook::{MAX_BODY_BYTES, WebhookRequest, WebhookRouter};
    use tokio::sync::{mpsc, watch};

    /// Secrets as read from `--secrets`: name → key → value.
    type Secrets = BTreeMap<String, BTreeMap<String, String>>;

    /// Work for the worker: refresh these Warehouses, then auto-promote.
    #[derive(Debug)]
    struct Job {
        warehouses: Vec<String>,
        /// The tags the event named (an incremental refresh), or `None` for a full one.
        tags: Option<BTreeSet<String>>,
        /// What asked for it (for the log line): `webhook <receiver>`, `refresh API`.
        why: String,
        received: Instant,
    }

    /// What the HTTP handlers share.
    struct App {
        router: WebhookRouter,
        warehouses: Vec<Warehouse>,
        refresh_token: Option<String>,
        jobs: mpsc::UnboundedSender<Job>,
        ui: Ui,
    }

    fn load_secrets(path: &Path) -> Result<Secrets> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Input(format!("cannot read {}: {e}", path.display())))?;
        if text.trim().is_empty() {
            return Ok(Secrets::new());
        }
        yaml_serde::from_str(&text).map_err(|e| {
            Failure::Input(format!(
                "{}: not a map of Secrets (`name: {{key: value}}`): {e}",
                path.display()
            ))
        })
    }

    pub(super) async fn cmd_serve(
        cli: &Cli,
        ui: &Ui,
        listen: SocketAddr,
        secrets: Option<&Path>,
        refresh_token: Option<String>,
        max_sleep: u64,
    ) -> Result<()> {
        let secrets = match secrets {
            Some(p) => load_secrets(p)?,
            None => Secrets::new(),
        };
        let c = controller(cli)?.with_secrets(Arc::new(secrets.clone()));
        let project = c.project().to_owned();
        let router = match c.manifests().project_config(&project) {
            Some(cfg) => WebhookRouter::new(&project, cfg, &secrets),
            None => WebhookRouter::from_receivers(&project, &[], &secrets),
        };
        for r in router.routes() {
            ui.progress(&format!(
                "webhook receiver {} ({}) at {}",
                r.name, r.provider, r.path
            ));
        }
        if refresh_token.is_none() {
            ui.progress("the refresh API is off (no --refresh-token or KARGO_REFRESH_TOKEN)");
        }
        let warehouses: Vec<Warehouse> = c.manifests().warehouses(&project).cloned().collect();
        let (jobs, rx) = mpsc::unbounded_channel();
        let app = Arc::new(App {
            router,
            warehouses,
            refresh_token,
            jobs,
            ui: *ui,
        });
        let routes = axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/refresh/warehouse/{name}", post(refresh))
            .route("/webhook/{*rest}", any(webhook))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
        ui.progress(&format!("listening on http://{addr} (Ctrl-C stops)"));

        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = stop_tx.send(true);
                })
                .await
        });
        // The worker runs here, on this task: all reconcile work goes through it.
        worker(&c, ui, rx, Duration::from_secs(max_sleep.max(1)), stop_rx).await;
        ui.progress("stopped");
        match server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Runtime(format!("the HTTP server failed: {e}"))),
            Err(e) => Err(Failure::Runtime(format!("the HTTP server failed: {e}"))),
        }
    }

    /// The one task that reconciles: interval passes (like `run --watch`) and the
    /// refreshes queued by webhooks and the refresh API, one at a time. Jobs that arrive
    /// during a pass are merged into the next one.
    async fn worker(
        c: &Controller,
        ui: &Ui,
        mut rx: mpsc::UnboundedReceiver<Job>,
        max: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut next_pass = tokio::time::Instant::now();
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.changed() => return,
                job = rx.recv() => match job {
                    Some(job) => Some(job),
                    None => return,
                },
                _ = tokio::time::sleep_until(next_pass) => None,
            };
            let mut failed = false;
            match first {
                None => match c.reconcile(false).await {
                    Ok(pass) => {
                        report(ui, c, &pass);
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("{} {}", ui.err.red("error:"), Failure::from(e).message());
                    }
                },
                Some(job) => {
                    let mut jobs = vec![job];
                    while let Ok(more) = rx.try_recv() {
                        jobs.push(more);
                    }
                    failed = !run_jobs(c, ui, jobs).await;
                }
            }
            if *stop.borrow() {
                return;
            }
            let mut wait = next_due(c, max);
            if failed {
                wait = wait.max(Duration::from_secs(10).min(max));
            }
            next_pass = tokio::time::Instant::now() + wait;
        }
    }

    fn report(ui: &Ui, c: &Controller, pass: &ReconcileReport) {
        if (!pass.refreshed.is_empty() || !pass.promotions.is_empty())
            && let Err(f) = print_pass(ui, c, pass)
        {
            eprintln!("{} {}", ui.err.red("error:"), f.message());
        }
        if let Some(f) = pass_failure(pass) {
            eprintln!("{} {}", ui.err.red("error:"), f.message());
        }
    }

    /// Refreshes exactly the Warehouses the jobs name, then runs auto-promotion. False
    /// when something failed.
    async fn run_jobs(c: &Controller, ui: &Ui, jobs: Vec<Job>) -> bool {
        // Per Warehouse: the union of the named tags, or a full refresh when any job asks
        // for one.
        let mut names: BTreeMap<&str, Option<BTreeSet<String>>> = BTreeMap::new();
        for j in &jobs {
            for w in &j.warehouses {
                let entry = names
                    .entry(w.as_str())
                    .or_insert_with(|| Some(BTreeSet::new()));
                match (entry.as_mut(), &j.tags) {
                    (Some(all), Some(tags)) => all.extend(tags.iter().cloned()),
                    _ => *entry = None,
                }
            }
        }
        let mut ok = true;
        let mut pass = ReconcileReport::default();
        for (w, tags) in &names {
            let hints = tags
                .as_ref()
                .filter(|t| !t.is_empty())
                .map(|t| kargo::core::source::DiscoveryHints { tags: t.clone() });
            match c.refresh_with_hints(w, hints).await {
                Ok(o) => pass.refreshed.push(((*w).to_owned(), o)),
                Err(e) => {
                    ok = false;
                    eprintln!("{} {}", ui.err.red("error:"), Failure::from(e).message());
                }
            }
        }
        match c.auto_promote().await {
            Ok(p) => pass.promotions = p,
            Err(e) => {
                ok = false;
                eprintln!("{} {}", ui.err.red("error:"), Failure::from(e).message());
            }
        }
        report(ui, c, &pass);
        ok &= pass_failure(&pass).is_none();
        for j in &jobs {
            ui.progress(&format!(
                "{}: refreshed {} and auto-promoted ({} promotion(s)) {} ms after the request",
                j.why,
                j.warehouses.join(", "),
                pass.promotions.len(),
                j.received.elapsed().as_millis()
            ));
        }
        ok
    }

    fn json_response(status: StatusCode, body: Json) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{body}\n"),
        )
            .into_response()
    }

    fn error(status: StatusCode, msg: &str) -> Response {
        json_response(status, json!({ "error": msg }))
    }

    /// Reads at most `limit` bytes of `body`.
    async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, axum::Error> {
        use futures::StreamExt as _;
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if buf.len() >= limit {
                break;
            }
        }
        Ok(buf)
    }

    async fn webhook(
        State(app): State<Arc<App>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Response {
        let received = Instant::now();
        // Only the provider segment is logged: the rest of the path is a secret.
        let provider: String = uri
            .path()
            .trim_start_matches("/webhook/")
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(32)
            .collect();
        let body = match read_limited(body, MAX_BODY_BYTES + 1).await {
            Ok(b) => b,
            Err(e) => {
                app.ui.progress(&format!(
                    "webhook rejected ({provider}): 400 cannot read the body: {e}"
                ));
                return error(StatusCode::BAD_REQUEST, "cannot read the request body");
            }
        };
        let req = WebhookRequest {
            method: method.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        };
        match app.router.handle(&req, &app.warehouses) {
            Ok(o) => {
                let queued = !o.warehouses_to_refresh.is_empty();
                app.ui.progress(&format!(
                    "webhook {} ({}) {}: {}",
                    o.receiver,
                    o.provider,
                    o.event,
                    if queued {
                        format!("refreshing {}", o.warehouses_to_refresh.join(", "))
                    } else {
                        "nothing to refresh".to_owned()
                    }
                ));
                if queued {
                    let _ = app.jobs.send(Job {
                        warehouses: o.warehouses_to_refresh.clone(),
                        tags: Some(
                            o.artifacts
                                .iter()
                                .flat_map(|a| a.tags.iter().cloned())
                                .collect(),
                        ),
                        why: format!("webhook {}", o.receiver),
                        received,
                    });
                }
                json_response(
                    if queued {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::OK
                    },
                    json!({
                        "receiver": o.receiver,
                        "provider": o.provider.as_str(),
                        "event": o.event,
                        "refreshing": o.warehouses_to_refresh,
                    }),
                )
            }
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                app.ui.progress(&format!(
                    "webhook rejected ({provider}): {} {e}",
                    status.as_u16()
                ));
                error(status, &e.to_string())
            }
        }
    }

    async fn refresh(
        State(app): State<Arc<App>>,
        UrlPath(name): UrlPath<String>,
        headers: HeaderMap,
    ) -> Response {
        let received = Instant::now();
        let Some(token) = &app.refresh_token else {
            return error(
                StatusCode::FORBIDDEN,
                "the refresh API is off: start `promoter serve` with --refresh-token or \
                 KARGO_REFRESH_TOKEN",
            );
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return error(StatusCode::UNAUTHORIZED, "missing bearer token");
        };
        // Constant-time: compare the digests (equal lengths).
        use sha2::Digest as _;
        use subtle::ConstantTimeEq as _;
        let (a, b) = (sha2::Sha256::digest(given), sha2::Sha256::digest(token));
        if !bool::from(a.as_slice().ct_eq(b.as_slice())) {
            app.ui
                .progress("refresh API: rejected a request with a wrong bearer token");
            return error(StatusCode::FORBIDDEN, "invalid bearer token");
        }
        if !app.warehouses.iter().any(|w| w.metadata.name == name) {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no Warehouse {name:?} in the project"),
            );
        }
        app.ui
            .progress(&format!("refresh API: refreshing Warehouse {name}"));
        let _ = app.jobs.send(Job {
            warehouses: vec![name.clone()],
            tags: None,
            why: "refresh API".to_owned(),
            received,
        });
        json_response(StatusCode::ACCEPTED, json!({ "refreshing": [name] }))
    }
}
