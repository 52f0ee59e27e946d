//! `promoter`: a command-line promoter over a directory of Kargo manifests, with verbs
//! modelled on the `kargo` CLI. It is the library assembled the way an internal platform
//! tool would assemble it: the OCI image, Helm chart and git sources, the built-in steps,
//! a credentials file and a state directory.
//!
//! ```text
//! promoter [--manifests DIR] [--state DIR] [--credentials FILE] [--output text|json|yaml]
//!          [--project NAME] [--shared-namespace NS]... [-v] <command>
//!
//!   validate                                   check the manifests (errors with file:line)
//!   refresh warehouse NAME                     discover now; print new Freight
//!   get freight [--stage S]                    all Freight, or the Freight available to S
//!   get stages                                 Stages with their current Freight and history
//!   promote --stage S --freight ID|ALIAS [--dry-run] [--force-window REASON]
//!   approve --stage S --freight ID|ALIAS       make Freight available to S
//!   approve --stage S --promotion [NAME] [--reject] [--message M]
//!                                              answer a promotion waiting for approval
//!                                              (as KARGO_ACTOR, in groups KARGO_GROUPS)
//!   rollback --stage S [--force-window REASON] re-promote S's previous Freight (a new commit)
//!   get schedule                               when each Warehouse is due, and why
//!   run [--watch] [--max-sleep SECS]           refresh due Warehouses, then auto-promote
//!   serve [--listen ADDR] [--secrets FILE] [--refresh-token TOKEN] [--tokens FILE] [--insecure-no-auth] [--max-sleep SECS]
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
//! - Secrets and ConfigMaps (`apiVersion: v1`) in the manifest directory are used as Kargo
//!   uses them ([`kargo::core::secret::ManifestSecrets`]): Secrets labelled
//!   `kargo.akuity.io/cred-type: git|helm|image` are credentials for their namespace's
//!   project, searched after `--credentials FILE`; those in `kargo-shared-resources` (or
//!   each `--shared-namespace NS`) serve every project. Promotion steps read Secrets and
//!   ConfigMaps with `secret()`, `sharedSecret()`, `configMap()` and `sharedConfigMap()`.
//!   `validate` lists what it found, by name.
//! - `--project` (default: the only Project of the manifests).
//!
//! `serve` hosts, on `--listen` (default `127.0.0.1:8080`; port 0 picks one, and the bound
//! address is printed on stderr as `listening on http://ADDR`):
//!
//! - `POST /webhook/<provider>/<token>`: the Project's webhook receivers
//!   (`ProjectConfig.spec.webhookReceivers`, see [`kargo::sources::webhook`]), whose
//!   `secretRef`s are read from `--secrets FILE` (YAML: `name: {key: value}`), then from
//!   the Secrets of the manifests in the project's namespace. At most
//!   2 MiB + 1 bytes of a body are read; a rejection answers the receiver's status (401,
//!   403, 404, 413, 400, 422) with `{"error": ...}` and is logged without the body. An
//!   accepted request answers 202 with the Warehouses it queued (200 when none), and the
//!   worker refreshes exactly those Warehouses, then runs auto-promotion at once.
//! - `POST /refresh/warehouse/<name>`: queues a refresh of one Warehouse (then
//!   auto-promotion); needs `Authorization: Bearer <token>` with the token of
//!   `--refresh-token` or `KARGO_REFRESH_TOKEN`, and is refused (403) when neither is set.
//! - `GET /healthz`: 200 `ok`.
//!
//! `run --watch` and `serve` are the library's service loop ([`kargo::service::Service`]):
//! one pass at a time (Warehouses due by interval plus jitter, refreshes requested over
//! HTTP, auto-promotion); requests that arrive during a pass are merged into the next one.
//! `serve`'s routes are [`kargo::server::router`]. Ctrl-C stops accepting requests and
//! stops once the running promotion has finished; a second Ctrl-C aborts.
//!
//! Environment (read here, never by the library): `KARGO_ARGOCD_SERVER`,
//! `KARGO_ARGOCD_TOKEN`, `KARGO_ARGOCD_NAMESPACE`, `KARGO_ARGOCD_INSECURE`,
//! `KARGO_ARGOCD_REFRESH_AFTER_PUSH` (Argo CD for the steps), `GIT_PUSH_INTEGRATION_POLICY`
//! (`AlwaysRebase` default, `RebaseOrMerge`, `RebaseOrFail`, `AlwaysMerge`),
//! `GITHUB_PUSH_MAX_REVISIONS` (default 10), `GITHUB_PUSH_VERIFY_UNTRUSTED_COMMITS`
//! (github-push), `IMAGE_REGISTRY_RATE_LIMIT`
//! (requests per second per registry, default 20), `KARGO_REFRESH_TOKEN`, `KARGO_ACTOR`
//! (else `USER`), `KARGO_LOG`, `NO_COLOR`.
//!
//! Exit status: 0 on success; 1 when a promotion failed (or discovery, git, the state
//! store failed); 2 on bad input: bad flags, manifest errors, an unknown Stage, Warehouse
//! or Freight, Freight not available to the Stage, nothing to roll back.
//!
//! Progress goes to stderr, results to stdout; colours only on a terminal and never with
//! `NO_COLOR`. `-v` (or `KARGO_LOG=<filter>`) shows the library's log lines.
//!
//! Run: `cargo run --release --example promoter -- --help` (an optimised build: git work
//! in a debug build is many times slower).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod render;
mod serve;
mod state;
mod ui;
mod watch;

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use kargo::controller::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{MemoryStore, StateStore};
use kargo::core::runner::Runner;
use kargo::core::secret::{CredentialTable, ManifestSecrets, ManifestSecretsOptions};
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::core::validate::validate;
use kargo::sources::builtin::SourceOptions;
use kargo::sources::image::ImageSourceOptions;
use kargo::steps::{ArgoCdOptions, BuiltinOptions, register_builtins_with};

use cli::{Cli, Command, Failure, GetTarget, Output, RefreshTarget, Result};
use state::StateLocation;
use ui::{Paint, Ui};

// ---------------------------------------------------------------------------------------
// Assembly: the library's built-in sources and steps, with options from flags and the
// environment.

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn load_manifests(dir: &Path) -> Result<ManifestSet> {
    if !dir.is_dir() {
        return Err(Failure::Input(format!(
            "manifest directory {} does not exist (use --manifests DIR)",
            dir.display()
        )));
    }
    let manifests = ManifestSet::load_dir(dir).map_err(Failure::Manifests)?;
    // Loaded, but worth a look: repeated keys (last value used), deprecated fields.
    for warning in manifests.warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(manifests)
}

fn pick_project(manifests: &ManifestSet, wanted: Option<&str>) -> Result<String> {
    let names = manifests.project_names();
    match (wanted, names.as_slice()) {
        (Some(p), _) if names.contains(&p) => Ok(p.to_owned()),
        (Some(p), _) => Err(Failure::Input(format!(
            "project {p:?} is not defined in the manifests (projects: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ))),
        (None, [one]) => Ok((*one).to_owned()),
        (None, []) => Err(Failure::Input(
            "the manifests define no Project (a `kind: Project` resource)".into(),
        )),
        (None, several) => Err(Failure::Input(format!(
            "the manifests define several projects ({}): choose one with --project",
            several.join(", ")
        ))),
    }
}

fn runner(work: &Path, store: Arc<dyn StateStore>, manifests: &ManifestSet) -> Result<Runner> {
    let mut steps = StepRegistry::new();
    // With an Argo CD server, every branch push also refreshes the Applications tracking
    // the branch (KARGO_ARGOCD_REFRESH_AFTER_PUSH=false turns that off).
    let mut options = BuiltinOptions::new(work.join("cache").join("git"))
        .argocd(ArgoCdOptions::from_lookup(|k| std::env::var(k).ok()));
    // ClusterConfig's gitClient: the identity of commits whose git-clone names no author.
    if let Some(git) = manifests
        .cluster_config()
        .and_then(|c| c.spec.git_client.as_ref())
    {
        options.git.default_author = Some(kargo::git::Signature::new(&git.name, &git.email));
    }
    // Kargo's controller knobs for git-push / github-push.
    if let Some(v) = env("GIT_PUSH_INTEGRATION_POLICY") {
        options.git.push_integration_policy =
            kargo::git::PushIntegrationPolicy::from_name(v.trim()).ok_or_else(|| {
                Failure::Input(format!(
                    "GIT_PUSH_INTEGRATION_POLICY must be AlwaysRebase, RebaseOrMerge, \
                     RebaseOrFail or AlwaysMerge, got {v:?}"
                ))
            })?;
    }
    if let Some(v) = env("GITHUB_PUSH_MAX_REVISIONS") {
        options.github_push.max_revisions = v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Failure::Input(format!(
                    "GITHUB_PUSH_MAX_REVISIONS must be a positive integer, got {v:?}"
                ))
            })?;
    }
    if let Some(v) = env("GITHUB_PUSH_VERIFY_UNTRUSTED_COMMITS") {
        options.github_push.verify_untrusted_commits = v.trim().parse::<bool>().map_err(|_| {
            Failure::Input(format!(
                "GITHUB_PUSH_VERIFY_UNTRUSTED_COMMITS must be true or false, got {v:?}"
            ))
        })?;
    }
    let fail = |e: kargo::core::step::DuplicateStep| {
        Failure::Runtime(format!("cannot register the steps: {e}"))
    };
    register_builtins_with(&mut steps, &options).map_err(fail)?;
    // set-metadata and set-freight-alias write to the same state store as the pipeline.
    steps
        .register(kargo::steps::metadata::SetMetadata::new(store.clone()))
        .map_err(fail)?;
    steps
        .register(kargo::steps::SetFreightAlias::new(store))
        .map_err(fail)?;
    Ok(Runner::new(steps))
}

fn sources(work: &Path) -> Result<SourceRegistry> {
    // Kargo's knob: IMAGE_REGISTRY_RATE_LIMIT (requests/s per registry, default 20).
    let mut image = ImageSourceOptions::default();
    if let Some(v) = env("IMAGE_REGISTRY_RATE_LIMIT") {
        image.rate_limit = v
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
    let mut sources = SourceRegistry::new();
    kargo::sources::builtin::register_builtins(
        &mut sources,
        &SourceOptions::new(work.join("cache").join("git")).image(image),
    )
    .map_err(|e| Failure::Runtime(format!("cannot register the sources: {e}")))?;
    Ok(sources)
}

/// Loads and validates the manifests (without opening the state); returns them, the
/// project and a runner for validation.
fn checked(cli: &Cli) -> Result<(ManifestSet, String, Runner)> {
    let manifests = load_manifests(&cli.manifests)?;
    let project = pick_project(&manifests, cli.project.as_deref())?;
    let work = StateLocation::parse(&cli.state).work_dir(cli.work_dir.as_deref());
    let runner = runner(&work, Arc::new(MemoryStore::new()), &manifests)?;
    let mut errors = validate(&manifests, runner.engine(), Some(runner.registry()))
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    // The AnalysisTemplates the Stages' verification names (kargo::steps::analysis).
    #[cfg(feature = "analysis")]
    if let Err(e) = kargo::steps::analysis::validate(&manifests, &project) {
        errors.extend(e.0);
    }
    if !errors.is_empty() {
        return Err(Failure::Manifests(kargo::core::loader::ManifestErrors(
            errors,
        )));
    }
    Ok((manifests, project, runner))
}

/// The manifests' Secrets and ConfigMaps, with the shared namespaces of the command line.
fn manifest_secrets(cli: &Cli, manifests: &ManifestSet) -> Result<ManifestSecrets> {
    let options =
        ManifestSecretsOptions::default().with_shared_namespaces(cli.shared_namespaces.clone());
    ManifestSecrets::from_manifests_with(manifests, options)
        .map_err(|errors| Failure::Input(format!("{} manifest error(s):\n{errors}", errors.len())))
}

/// The `--credentials` file, if one was given.
fn credentials_file(cli: &Cli) -> Result<Option<CredentialTable>> {
    cli.credentials
        .as_deref()
        .map(|path| CredentialTable::from_file(path).map_err(|e| Failure::Input(e.to_string())))
        .transpose()
}

async fn controller(cli: &Cli) -> Result<Controller> {
    let location = StateLocation::parse(&cli.state);
    let work = location.work_dir(cli.work_dir.as_deref());
    // The manifests first: a bad manifest is reported without touching the state.
    let (manifests, project, _) = checked(cli)?;
    let store = location.open().await?;
    let runner = runner(&work, store.clone(), &manifests)?;
    let secrets = manifest_secrets(cli, &manifests)?;
    let mut c = Controller::new(manifests, &project, sources(&work)?, runner, store)?
        .with_manifest_secrets(secrets);
    // The explicit file first, then the credential Secrets of the manifests.
    if let Some(table) = credentials_file(cli)? {
        c = c.with_credentials(Arc::new(table));
    }
    let mut c = c
        .with_lease_ttl(std::time::Duration::from_secs(cli.lease_ttl.max(1)))
        .with_work_root(work.join("work"));
    // The project's EventRouters (Kargo's `ee.kargo.akuity.io` manifests): its events go
    // to their channels, with the Secrets the controller reads.
    if c.manifests().event_routers(&project).next().is_some() {
        let notifier = kargo::notifications::Notifier::builder(c.manifests(), &project)
            .with_secrets(c.secrets().clone())
            .build()
            .map_err(|e| Failure::Runtime(format!("notifications: {e}")))?;
        c = c.with_events(Arc::new(notifier.clone()));
        let _ = NOTIFIER.set(notifier);
    }
    Ok(c)
}

/// The notifier of this run, if the project routes events: a command waits for its
/// deliveries before it exits (at most [`NOTIFY_GRACE`]).
static NOTIFIER: std::sync::OnceLock<kargo::notifications::Notifier> = std::sync::OnceLock::new();

/// How long a finished command waits for its notifications.
const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

async fn dispatch_and_notify(cli: &Cli, ui: &Ui) -> Result<()> {
    let result = dispatch(cli, ui).await;
    if let Some(n) = NOTIFIER.get()
        && tokio::time::timeout(NOTIFY_GRACE, n.shutdown())
            .await
            .is_err()
    {
        tracing::warn!(
            pending = n.pending(),
            "notifications still being delivered at exit; dropped"
        );
    }
    result
}

fn actor() -> Option<String> {
    env("KARGO_ACTOR").or_else(|| env("USER"))
}

/// The actor's groups (`KARGO_GROUPS`, comma-separated), for approval policies.
fn actor_groups() -> Vec<String> {
    env("KARGO_GROUPS")
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// main

fn init_logging(verbose: bool) {
    let filter = match env("KARGO_LOG") {
        Some(f) => f,
        None if verbose => "info".into(),
        None => "warn".into(),
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
        Command::Validate => commands::validate(cli, ui),
        Command::Refresh {
            target: RefreshTarget::Warehouse { name },
        } => commands::refresh(cli, ui, name).await,
        Command::Get {
            target: GetTarget::Freight { stage },
        } => commands::get_freight(cli, ui, stage.as_deref()).await,
        Command::Get {
            target: GetTarget::Stages,
        } => commands::get_stages(cli, ui).await,
        Command::Get {
            target: GetTarget::Schedule,
        } => commands::get_schedule(cli, ui).await,
        Command::Promote {
            stage,
            freight,
            queue: true,
            ..
        } => commands::queue_promotion(cli, ui, stage, freight).await,
        Command::Promote {
            stage,
            freight,
            dry_run,
            queue: false,
            force_window,
        } => commands::promote(cli, ui, stage, freight, *dry_run, force_window.as_deref()).await,
        Command::Approve {
            stage,
            freight: Some(freight),
            ..
        } => commands::approve(cli, ui, stage, freight).await,
        Command::Approve {
            stage,
            promotion,
            reject,
            message,
            ..
        } => {
            let promotion = promotion.as_deref().filter(|p| !p.is_empty());
            commands::answer_promotion(cli, ui, stage, promotion, *reject, message).await
        }
        Command::Rollback {
            stage,
            force_window,
        } => commands::rollback(cli, ui, stage, force_window.as_deref()).await,
        Command::Run {
            watch,
            refresh_all,
            max_sleep,
        } => watch::run(cli, ui, *watch, *refresh_all, *max_sleep).await,
        Command::Serve {
            listen,
            secrets,
            refresh_token,
            tokens,
            insecure_no_auth,
            max_sleep,
        } => {
            let token = refresh_token.clone().or_else(|| env("KARGO_REFRESH_TOKEN"));
            serve::serve(
                cli,
                ui,
                *listen,
                secrets.as_deref(),
                (token, tokens.as_deref(), *insecure_no_auth),
                *max_sleep,
            )
            .await
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
    match rt.block_on(dispatch_and_notify(&cli, &ui)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{} {}", ui.err.red("error:"), f.message());
            // Scripts reading --output json|yaml get a document on stdout for failures too.
            if !matches!(ui.output, Output::Text) {
                let _ = ui.emit(&f.document(), || {});
            }
            ExitCode::from(f.code())
        }
    }
}
