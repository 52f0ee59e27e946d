//! The command line: verbs, flags, and how failures map to exit statuses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kargo::controller::ControllerError;
use kargo::core::pipeline::{PipelineError, StateError};

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
pub(crate) struct Cli {
    /// The directory of Kargo manifests (every *.yaml / *.yml below it).
    #[arg(long, global = true, value_name = "DIR", default_value = "./kargo")]
    pub(crate) manifests: PathBuf,
    /// Where pipeline state lives: a directory, or a PostgreSQL URL
    /// (postgres://user:password@host:port/dbname) that several promoters may share.
    #[arg(
        long,
        global = true,
        value_name = "DIR|URL",
        default_value = "./.kargo-state"
    )]
    pub(crate) state: String,
    /// Git mirrors and promotion work directories (default: the state directory; with a
    /// database, ./.kargo-work).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) work_dir: Option<PathBuf>,
    /// The time limit, in seconds, of the leases a promoter holds on a Warehouse's refresh
    /// and a Stage's promotions; renewed while it works, taken over by another replica
    /// when it stalls longer.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub(crate) lease_ttl: u64,
    /// A YAML list of credentials: {type: git|image|helm, repoURL | repoURLPattern,
    /// username, password}. Searched before the credential Secrets of the manifests.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// A namespace whose Secrets and ConfigMaps in the manifests serve every project
    /// (Kargo's shared resources namespace); repeat for several, searched in order after
    /// the project's own.
    #[arg(
        long = "shared-namespace",
        global = true,
        value_name = "NS",
        default_value = kargo::core::secret::SHARED_RESOURCES_NAMESPACE
    )]
    pub(crate) shared_namespaces: Vec<String>,
    /// How results are printed on stdout.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// The project (default: the only Project in the manifests).
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) project: Option<String>,
    /// Show the library's log lines on stderr (KARGO_LOG=<filter> for more control).
    #[arg(long, short = 'v', global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// Queue the promotion and return: a running `promoter run --watch` or `serve`
        /// (on this machine or any replica sharing the state) runs it.
        #[arg(long, conflicts_with = "dry_run")]
        queue: bool,
        /// Promote even though the Stage's promotion windows are closed; the reason is
        /// kept in the promotion's record.
        #[arg(long, value_name = "REASON", conflicts_with_all = ["dry_run", "queue"])]
        force_window: Option<String>,
    },
    /// Approve Freight for a Stage (makes it available there), or, with `--promotion`,
    /// approve or reject a promotion waiting for approval under the Stage's approval
    /// policy (as `KARGO_ACTOR`, member of the comma-separated `KARGO_GROUPS`).
    Approve {
        /// The Stage.
        #[arg(long)]
        stage: String,
        /// The Freight: its ID, a unique ID prefix (7+ characters) or its alias.
        #[arg(
            long,
            value_name = "ID_OR_ALIAS",
            required_unless_present = "promotion",
            conflicts_with = "promotion"
        )]
        freight: Option<String>,
        /// A queued promotion's name; without a value, the one at the head of the queue.
        #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
        promotion: Option<String>,
        /// Reject the promotion instead (it leaves the queue).
        #[arg(long, requires = "promotion")]
        reject: bool,
        /// What to record with the answer.
        #[arg(long, requires = "promotion", default_value = "")]
        message: String,
    },
    /// Re-promote the Stage's previous Freight (a new promotion, a new commit).
    Rollback {
        /// The Stage.
        #[arg(long)]
        stage: String,
        /// Roll back even though the Stage's promotion windows are closed; the reason is
        /// kept in the promotion's record.
        #[arg(long, value_name = "REASON")]
        force_window: Option<String>,
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
    /// Serve webhooks, a refresh API, a health check, and with --tokens (or
    /// --insecure-no-auth) the REST API and the web UI at /ui/ over HTTP, and run the
    /// `run --watch` loop in the background.
    Serve {
        /// The address to listen on (port 0: any free port; the bound address is printed).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A YAML map of Secrets, `name: {key: value}`, for the webhook receivers'
        /// `secretRef`s (and the steps' `secret()`), read before the Secrets of the
        /// manifests.
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        /// The bearer token of `POST /refresh/warehouse/NAME` (default: the
        /// KARGO_REFRESH_TOKEN environment variable; without either the endpoint refuses).
        #[arg(long, value_name = "TOKEN")]
        refresh_token: Option<String>,
        /// A token file (`tokens: [{name, sha256, roles: [{role, projects, stages}]}]`,
        /// see `kargo::server::access`): serves the REST API at /v1beta1/... to the callers
        /// it names. Without it the API is not served.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
        /// Serve the REST API and the web UI (/ui/) to callers without a token, as an
        /// admin named `anonymous`. Refused unless --listen is a loopback address.
        #[arg(long)]
        insecure_no_auth: bool,
        /// The longest sleep between interval passes, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        max_sleep: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RefreshTarget {
    /// Discover a Warehouse's artifacts now.
    Warehouse {
        /// The Warehouse.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GetTarget {
    /// List Freight, newest first.
    Freight {
        /// Only the Freight available to this Stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// List the Stages with their current Freight and history.
    Stages,
    /// When each Warehouse is due for a refresh and why, and when soak times end.
    Schedule,
}

// ---------------------------------------------------------------------------------------
// Failures and exit status

#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad input: exit 2.
    Input(String),
    /// Manifests that do not load or validate: exit 2, each error with its place.
    Manifests(kargo::core::loader::ManifestErrors),
    /// Something failed while running: exit 1.
    Runtime(String),
}

impl Failure {
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Input(m) | Failure::Runtime(m) => m.clone(),
            Failure::Manifests(errors) => format!("{} manifest error(s):\n{errors}", errors.len()),
        }
    }

    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Input(_) | Failure::Manifests(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    /// The failure as a document for `--output json|yaml`: `valid: false` and each
    /// manifest error with its place, or the message.
    pub(crate) fn document(&self) -> serde_json::Value {
        match self {
            Failure::Manifests(errors) => serde_json::json!({
                "valid": false,
                "exitCode": self.code(),
                "errors": errors.iter().map(|e| serde_json::json!({
                    "file": e.location.file.display().to_string(),
                    "document": e.location.document,
                    "line": e.location.line,
                    "column": e.location.column,
                    "resource": e.resource,
                    "field": e.field,
                    "message": e.message,
                })).collect::<Vec<_>>(),
            }),
            _ => serde_json::json!({"error": self.message(), "exitCode": self.code()}),
        }
    }
}

impl From<ControllerError> for Failure {
    fn from(e: ControllerError) -> Self {
        if let ControllerError::Analysis(errors) | ControllerError::Secrets(errors) = e {
            return Failure::Manifests(errors);
        }
        let input = matches!(
            &e,
            ControllerError::UnknownProject(_)
                | ControllerError::UnknownWarehouse(_)
                | ControllerError::Secrets(_)
                | ControllerError::Plan(_)
                | ControllerError::Analysis(_)
                | ControllerError::Pipeline(
                    PipelineError::UnknownStage(_)
                        | PipelineError::UnknownFreight(_)
                        | PipelineError::OriginNotRequested { .. }
                        | PipelineError::NotAvailable { .. }
                        | PipelineError::NothingToRollBack(_)
                        | PipelineError::ControlFlow(_)
                )
                // A state written by a newer version, or a damaged one: nothing was written.
                | ControllerError::State(StateError::Corrupt { .. } | StateError::InvalidProject(_))
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

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;
