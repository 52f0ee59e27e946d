//! Notifications: a project's pipeline events, routed by its `EventRouter`s to its
//! `MessageChannel`s and `ClusterMessageChannel`s (Kargo's commercial-edition kinds, read by
//! the loader) and delivered to Slack, Slack-compatible incoming webhooks, HTTP endpoints
//! (CloudEvents 1.0 by default) and SMTP mail.
//!
//! A [`Notifier`] is an [`EventSink`]: [`emit`](EventSink::emit) only puts the event in a
//! bounded queue (when it is full, the event is dropped with a warning; a promotion never
//! waits for a notification). A background task routes each event: its type must be in a
//! router's `types` and the router's `when` (an expression over `event`, the event's
//! [`payload`](kargo_core::events::Event::payload)) true; renders the message (the channel's
//! or router's `output`, with `${{ }}` expressions, read as plain text, JSON, YAML or XML per
//! `encodingType`; a default text per event type when there is none), and delivers it with
//! retries and exponential backoff. A delivery that keeps failing is logged and dropped.
//! No token, password or webhook URL appears in a log, an error or a `Debug` form.
//!
//! ```no_run
//! # async fn demo(set: kargo_core::loader::ManifestSet) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kargo::notifications::Notifier;
//! use kargo_core::events::{Event, EventSink, EventType};
//!
//! let notifier = Notifier::builder(&set, "demo").build()?;
//! let sink: Arc<dyn EventSink> = Arc::new(notifier.clone());
//! sink.emit(&Event::new(EventType::FreightCreated, chrono::Utc::now(), "demo", "new Freight"));
//! notifier.shutdown().await; // waits for the queued deliveries
//! # Ok(()) }
//! ```

mod deliver;
mod http;
mod routes;
mod slack;
mod smtp;
mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use kargo_core::events::{Event, EventSink};
use kargo_core::loader::{ManifestErrors, ManifestSet};
use kargo_core::model::CLUSTER_SECRETS_NAMESPACE;
use kargo_core::secret::{LayeredSecrets, ManifestSecrets, SecretStore};
use tokio::sync::{Notify, Semaphore, mpsc};

use deliver::Deliverer;
use routes::Routes;

/// Slack's Web API base URL.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// How a [`Notifier`] queues and retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierOptions {
    /// How many events may wait to be routed (default 1024); more are dropped.
    pub queue_capacity: usize,
    /// How many times a delivery is tried before it is dropped (default 5).
    pub max_attempts: u32,
    /// The wait after the first failed attempt (default 1 s); it doubles each time.
    pub initial_backoff: Duration,
    /// The longest wait between attempts (default 60 s).
    pub max_backoff: Duration,
    /// Slack's Web API base URL (default [`SLACK_API_URL`]); `chat.postMessage` is
    /// appended.
    pub slack_api_url: String,
    /// The namespace of the Secrets `ClusterMessageChannel`s name (default
    /// [`CLUSTER_SECRETS_NAMESPACE`]).
    pub cluster_secrets_namespace: String,
    /// How many deliveries run at once (default 8).
    pub max_concurrent_deliveries: usize,
    /// How long an SMTP exchange may take (default 30 s).
    pub smtp_timeout: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            slack_api_url: SLACK_API_URL.to_owned(),
            cluster_secrets_namespace: CLUSTER_SECRETS_NAMESPACE.to_owned(),
            max_concurrent_deliveries: 8,
            smtp_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a [`Notifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// Built outside a tokio runtime: the notifier spawns its delivery task.
    #[error("a Notifier must be built inside a tokio runtime (it spawns its delivery task)")]
    NoRuntime,
    /// The manifests' Secrets did not read.
    #[error("the manifests' Secrets: {0}")]
    Secrets(ManifestErrors),
    /// A router names a channel the manifests do not hold.
    #[error("EventRouter {project}/{router}: {message}")]
    Router {
        /// The project.
        project: String,
        /// The router.
        router: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be made.
    #[error("cannot make the HTTP client: {0}")]
    Client(String),
}

/// Builds a [`Notifier`] for one project of a manifest set.
pub struct NotifierBuilder<'a> {
    manifests: &'a ManifestSet,
    project: String,
    secrets: Option<Arc<dyn SecretStore>>,
    cluster_secrets: Option<Arc<dyn SecretStore>>,
    manifest_secrets: Option<ManifestSecrets>,
    options: NotifierOptions,
}

impl std::fmt::Debug for NotifierBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierBuilder")
            .field("project", &self.project)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a> NotifierBuilder<'a> {
    /// Secrets asked before the manifests' for the project's `MessageChannel`s (as
    /// [`Controller::with_secrets`](crate::Controller::with_secrets); pass
    /// `controller.secrets()` to share the controller's).
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Secrets asked before the manifests' for `ClusterMessageChannel`s.
    pub fn with_cluster_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.cluster_secrets = Some(secrets);
        self
    }

    /// Other Secrets in place of those read from the manifests with the default options
    /// (as [`Controller::with_manifest_secrets`](crate::Controller::with_manifest_secrets)).
    pub fn with_manifest_secrets(mut self, secrets: ManifestSecrets) -> Self {
        self.manifest_secrets = Some(secrets);
        self
    }

    /// Other options.
    pub fn with_options(mut self, options: NotifierOptions) -> Self {
        self.options = options;
        self
    }

    /// Resolves the routers' channels and starts the delivery task (on the current tokio
    /// runtime).
    pub fn build(self) -> Result<Notifier, NotifierError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| NotifierError::NoRuntime)?;
        let manifest_secrets = match self.manifest_secrets {
            Some(s) => s,
            None => {
                ManifestSecrets::from_manifests(self.manifests).map_err(NotifierError::Secrets)?
            }
        };
        let mut project_store = LayeredSecrets::new();
        if let Some(s) = self.secrets {
            project_store = project_store.then(s);
        }
        let project_store = project_store.then(Arc::new(manifest_secrets.project(&self.project)));
        let mut cluster_store = LayeredSecrets::new();
        if let Some(s) = self.cluster_secrets {
            cluster_store = cluster_store.then(s);
        }
        let cluster_store = cluster_store.then(Arc::new(
            manifest_secrets.project(&self.options.cluster_secrets_namespace),
        ));
        let routes = Routes::from_manifests(
            self.manifests,
            &self.project,
            Arc::new(project_store),
            Arc::new(cluster_store),
        )?;
        let options = self.options;
        let deliverer = Arc::new(Deliverer::new(&self.project, options.clone())?);
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            rx,
            routes: Arc::new(routes),
            deliverer,
            shared: Arc::clone(&shared),
            permits: Arc::new(Semaphore::new(options.max_concurrent_deliveries.max(1))),
        };
        handle.spawn(worker.run());
        tracing::debug!(project = %self.project, "notifier started");
        Ok(Notifier {
            project: Arc::from(self.project.as_str()),
            tx,
            shared,
        })
    }
}

/// Counters shared by the notifier and its task.
#[derive(Debug, Default)]
struct Shared {
    /// Events queued or being routed, plus deliveries not finished.
    pending: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn start(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// Delivers a project's events to its routers' channels; see the [module](self) docs.
/// Clones share one queue and task.
#[derive(Clone)]
pub struct Notifier {
    project: Arc<str>,
    tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("project", &self.project)
            .field("pending", &self.shared.pending.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A builder for the notifier of `project` in `manifests`.
    pub fn builder<'a>(manifests: &'a ManifestSet, project: &str) -> NotifierBuilder<'a> {
        NotifierBuilder {
            manifests,
            project: project.to_owned(),
            secrets: None,
            cluster_secrets: None,
            manifest_secrets: None,
            options: NotifierOptions::default(),
        }
    }

    /// Events queued or being routed plus deliveries not finished.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Events dropped because the queue was full or the notifier shut down.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::SeqCst)
    }

    /// Deliveries given up so far (after their last attempt, or at once for a problem
    /// no retry can fix, such as a missing Secret).
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Waits until every event emitted so far is routed and every delivery finished
    /// (delivered or given up).
    pub async fn flush(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Stops taking events (later ones are dropped with a warning) and waits for the
    /// queued deliveries.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.flush().await;
    }
}

impl EventSink for Notifier {
    fn emit(&self, event: &Event) {
        if self.shared.closed.load(Ordering::SeqCst) {
            self.shared.dropped.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(project = %self.project, event = %event.kind, id = %event.id,
                "notifier is shut down: event not delivered");
            return;
        }
        self.shared.start();
        if let Err(e) = self.tx.try_send(event.clone()) {
            self.shared.done();
            self.shared.dropped.fetch_add(1, Ordering::SeqCst);
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the notification queue is full",
                mpsc::error::TrySendError::Closed(_) => "the notification task has stopped",
            };
            tracing::warn!(project = %self.project, event = %event.kind, id = %event.id,
                "{why}: event dropped");
        }
    }
}

/// The background task: routes each event and starts its deliveries.
struct Worker {
    rx: mpsc::Receiver<Event>,
    routes: Arc<Routes>,
    deliverer: Arc<Deliverer>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
}

impl Worker {
    async fn run(mut self) {
        while let Some(event) = self.rx.recv().await {
            let deliveries = self.routes.route(&event, self.deliverer.engine());
            for delivery in deliveries {
                self.shared.start();
                let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                    self.shared.done();
                    continue;
                };
                let deliverer = Arc::clone(&self.deliverer);
                let shared = Arc::clone(&self.shared);
                tokio::spawn(async move {
                    if deliverer.deliver_with_retries(&delivery).await {
                        shared.delivered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        shared.failed.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(permit);
                    shared.done();
                });
            }
            self.shared.done();
        }
    }
}
