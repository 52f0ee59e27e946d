//! The service loop: one project run continuously, the way `promoter run --watch` and
//! `promoter serve` run it, for any embedder.
//!
//! A [`Service`] owns a [`Controller`] and repeats *passes*. A pass
//!
//! 1. refreshes every Warehouse that is due ([`Controller::schedule`]: its interval plus a
//!    jitter since the last discovery, or a backoff after a failure) and every Warehouse
//!    asked for through a [`ServiceHandle`] (webhooks, a refresh button), concurrently,
//!    within [`ServiceOptions`]' limits per registry host and per git repository;
//! 2. verifies the Stages whose current Freight was never verified (a verifier added later,
//!    a process that died between a promotion and its verification);
//! 3. runs control-flow Stages, queued promotions and auto-promotion until nothing moves.
//!
//! Between passes it sleeps on the controller's [`Clock`](crate::clock::Clock) until the
//! next Warehouse is due or the next soak time ends ([`Schedule::next_wake`]), at most
//! [`ServiceOptions::max_sleep`], and wakes at once when a refresh is requested, or when
//! the state store hears of a write by another replica
//! ([`StateStore::changes`](kargo_core::pipeline::StateStore::changes): new
//! Freight, a promotion requested). With a
//! [`ManualClock`](crate::clock::ManualClock), a test runs a day of schedule in
//! milliseconds.
//!
//! **Several replicas** may run the same project on one shared store (PostgreSQL): a
//! Warehouse is refreshed under the lease `warehouse.<name>` and a Stage's promotions run
//! under the Stage's lease ([`Controller::drain`]), so each runs on one replica at a time;
//! a replica that finds a lease held leaves that work to its holder.
//!
//! When `shutdown` completes, no new pass and no new promotion starts; running Warehouse
//! refreshes are cancelled (discovery only reads, so nothing is lost; a repository that is
//! slow to answer does not hold the shutdown); a promotion that is running finishes (so
//! nothing is left half-pushed), and promotions not yet started stay queued in the state
//! store for the next start.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kargo::prelude::*;
//! use kargo::service::{Service, ServiceOptions};
//!
//! let manifests = ManifestSet::from_yaml_str("demo.yaml", r#"
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
//! "#)?;
//! let memory = kargo::sources::memory::MemorySource::new();
//! memory.set_images("ghcr.io/acme/app", vec![kargo::sources::memory::image("1.0.0", "sha256:a")]);
//! let mut sources = SourceRegistry::new();
//! memory.register_into(&mut sources)?;
//! let controller = Controller::new(manifests, "demo", sources, Runner::new(StepRegistry::new()),
//!     Arc::new(MemoryStore::new()))?;
//! let service = Service::new(controller, ServiceOptions::default());
//! let handle = service.handle();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = tokio::spawn(service.run(async { let _ = stopped.await; }));
//! handle.wait_for_passes(1).await;
//! assert_eq!(handle.controller().state().await?.freight.len(), 1);
//! let _ = stop.send(());
//! task.await?;
//! # Ok(())
//! # }
//! ```

mod limits;

pub use limits::{Permits, RefreshLimits, resource_keys};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kargo_core::pipeline::{RetentionPolicy, RetentionReport};
use kargo_core::source::DiscoveryHints;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::controller::{Controller, ControllerError, PromotionReport, RefreshOutcome};
use crate::schedule::{Schedule, Wake, later};

/// How the service loop runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// The longest sleep between passes, whatever the schedule says (default 5 minutes; at
    /// least 1 ms).
    pub max_sleep: Duration,
    /// The wait before the next pass when a pass could not even read the state (default
    /// 10 s).
    pub error_backoff: Duration,
    /// Warehouse refreshes running at once (default 8).
    pub refresh_concurrency: usize,
    /// Refreshes at once that talk to one registry host (default 2).
    pub per_registry: usize,
    /// Refreshes at once that fetch one git repository (default 1).
    pub per_repository: usize,
    /// What history to keep (Kargo's garbage collection: 20 Freight per Warehouse after
    /// the oldest in use, 20 promotion records per Stage, nothing younger than 14 days);
    /// `None` keeps everything.
    pub retention: Option<RetentionPolicy>,
    /// How often retention runs (default hourly, at the end of a pass).
    pub retention_interval: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_sleep: Duration::from_secs(300),
            error_backoff: Duration::from_secs(10),
            refresh_concurrency: 8,
            per_registry: 2,
            per_repository: 1,
            retention: Some(RetentionPolicy::default()),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

impl ServiceOptions {
    /// These options with another longest sleep.
    pub fn with_max_sleep(mut self, max_sleep: Duration) -> Self {
        self.max_sleep = max_sleep;
        self
    }

    /// These options with another retention policy (`None` keeps everything).
    pub fn with_retention(mut self, retention: Option<RetentionPolicy>) -> Self {
        self.retention = retention;
        self
    }

    /// These options with other concurrency limits (overall, per registry host, per git
    /// repository).
    pub fn with_limits(
        mut self,
        overall: usize,
        per_registry: usize,
        per_repository: usize,
    ) -> Self {
        self.refresh_concurrency = overall;
        self.per_registry = per_registry;
        self.per_repository = per_repository;
        self
    }
}

/// A refresh asked for from outside the schedule.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    /// The Warehouses to refresh.
    pub warehouses: Vec<String>,
    /// The tags the event named, for an incremental refresh ([`DiscoveryHints`]); `None`
    /// for a full one.
    pub tags: Option<BTreeSet<String>>,
    /// What asked for it (for logs and [`PassReport::requests`]): `webhook github`,
    /// `refresh API`, ...
    pub why: String,
    /// When it was received (to report the latency).
    pub received: Instant,
}

impl RefreshRequest {
    /// A full refresh of `warehouses`, asked for by `why`.
    pub fn new(warehouses: Vec<String>, why: impl Into<String>) -> Self {
        Self {
            warehouses,
            tags: None,
            why: why.into(),
            received: Instant::now(),
        }
    }

    /// This request limited to the tags an event named.
    pub fn with_tags(mut self, tags: BTreeSet<String>) -> Self {
        self.tags = Some(tags);
        self
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PassReport {
    /// The pass number (1 for the first).
    pub number: u64,
    /// When it started, by the controller's clock.
    pub started_at: Option<DateTime<Utc>>,
    /// The requests it served (received before it started).
    pub requests: Vec<RefreshRequest>,
    /// Warehouses refreshed and their outcomes.
    pub refreshed: Vec<(String, RefreshOutcome)>,
    /// Warehouses whose refresh failed, with the error (retried after a backoff).
    pub failed: Vec<(String, String)>,
    /// Stages verified because their Freight never was.
    pub verified: Vec<String>,
    /// Promotions run, in order.
    pub promotions: Vec<PromotionReport>,
    /// What retention deleted (when it ran in this pass).
    pub pruned: RetentionReport,
    /// An error that cut the pass short (the state store failed).
    pub error: Option<String>,
    /// What the service will wake for next (after this pass), if anything is scheduled.
    pub next_wake: Option<Wake>,
    /// The project's state after the pass (for front ends that show what happened).
    pub state: Option<kargo_core::pipeline::ProjectState>,
}

impl PassReport {
    /// Whether the pass did anything worth showing.
    pub fn is_empty(&self) -> bool {
        self.refreshed.is_empty()
            && self.failed.is_empty()
            && self.verified.is_empty()
            && self.promotions.is_empty()
            && self.pruned.is_empty()
            && self.error.is_none()
    }

    /// Whether something failed: a refresh, a promotion or the pass itself.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
            || self.error.is_some()
            || self.promotions.iter().any(|p| !p.succeeded())
    }
}

/// What the service is doing, for front ends.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// Passes completed.
    pub passes: u64,
    /// When the service will wake next, by the controller's clock (`None` while a pass
    /// runs or before the first).
    pub sleeping_until: Option<DateTime<Utc>>,
    /// What it will wake for.
    pub next_wake: Option<Wake>,
    /// Whether it has stopped.
    pub stopped: bool,
}

type PassCallback = Arc<dyn Fn(&PassReport) + Send + Sync>;

/// Talks to a running [`Service`]: asks for refreshes, reads its status, waits for passes.
/// Cheap to clone; usable from HTTP handlers.
#[derive(Clone)]
pub struct ServiceHandle {
    controller: Controller,
    requests: mpsc::UnboundedSender<RefreshRequest>,
    status: watch::Receiver<ServiceStatus>,
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("project", &self.controller.project())
            .finish_non_exhaustive()
    }
}

impl ServiceHandle {
    /// The controller the service runs (for reads, manual promotions, approvals).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Asks for a refresh; the service wakes at once and serves it in its next pass
    /// (requests that arrive during a pass are merged into the next one). Returns false
    /// when the service has stopped.
    pub fn request(&self, request: RefreshRequest) -> bool {
        self.requests.send(request).is_ok()
    }

    /// Wakes the service for a pass that refreshes nothing (it runs what is queued, e.g.
    /// a promotion just requested through the API). Returns false when it has stopped.
    pub fn wake(&self, why: &str) -> bool {
        self.request(RefreshRequest::new(Vec::new(), why))
    }

    /// Asks for a full refresh of one Warehouse.
    pub fn refresh(&self, warehouse: &str, why: &str) -> bool {
        self.request(RefreshRequest::new(vec![warehouse.to_owned()], why))
    }

    /// What the service is doing.
    pub fn status(&self) -> ServiceStatus {
        self.status.borrow().clone()
    }

    /// Passes completed so far.
    pub fn passes(&self) -> u64 {
        self.status.borrow().passes
    }

    /// Waits until at least `n` passes have completed (or the service stopped).
    pub async fn wait_for_passes(&self, n: u64) {
        self.wait_for(|s| s.passes >= n).await;
    }

    /// Waits until at least `n` passes have completed and the service sleeps (or stopped):
    /// then [`ServiceStatus::sleeping_until`] says until when. A test with a
    /// [`ManualClock`](crate::clock::ManualClock) steps the schedule with it.
    pub async fn wait_until_sleeping(&self, n: u64) -> ServiceStatus {
        self.wait_for(|s| s.passes >= n && s.sleeping_until.is_some())
            .await
    }

    /// Waits until `ready(status)` holds or the service has stopped; returns the status.
    pub async fn wait_for(&self, ready: impl Fn(&ServiceStatus) -> bool) -> ServiceStatus {
        let mut rx = self.status.clone();
        let found = rx
            .wait_for(|s| s.stopped || ready(s))
            .await
            .map(|s| s.clone());
        // Err: the service is gone; its last status.
        found.unwrap_or_else(|_| rx.borrow().clone())
    }
}

/// The service loop (see the module documentation).
pub struct Service {
    controller: Controller,
    options: ServiceOptions,
    limits: Arc<RefreshLimits>,
    inbox: mpsc::UnboundedReceiver<RefreshRequest>,
    pending: Vec<RefreshRequest>,
    handle: ServiceHandle,
    status: watch::Sender<ServiceStatus>,
    on_pass: Option<PassCallback>,
    stopping: Arc<AtomicBool>,
    /// Cancelled at shutdown: stops the running refreshes.
    refreshes: CancellationToken,
    last_retention: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("project", &self.controller.project())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Runs this project continuously with default [`ServiceOptions`] until `shutdown`
    /// completes (see [`Service`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        Service::new(self, ServiceOptions::default())
            .run(shutdown)
            .await;
    }
}

impl Service {
    /// A service running `controller`.
    pub fn new(controller: Controller, options: ServiceOptions) -> Self {
        let (tx, inbox) = mpsc::unbounded_channel();
        let (status, status_rx) = watch::channel(ServiceStatus::default());
        let limits = Arc::new(RefreshLimits::new(
            options.refresh_concurrency,
            options.per_registry,
            options.per_repository,
        ));
        let handle = ServiceHandle {
            controller: controller.clone(),
            requests: tx,
            status: status_rx,
        };
        Self {
            controller,
            options,
            limits,
            inbox,
            pending: Vec::new(),
            handle,
            status,
            on_pass: None,
            stopping: Arc::new(AtomicBool::new(false)),
            refreshes: CancellationToken::new(),
            last_retention: None,
        }
    }

    /// A handle to ask for refreshes and read the status.
    pub fn handle(&self) -> ServiceHandle {
        self.handle.clone()
    }

    /// Calls `callback` after every pass (a CLI prints what happened; a UI pushes it).
    pub fn on_pass(mut self, callback: impl Fn(&PassReport) + Send + Sync + 'static) -> Self {
        self.on_pass = Some(Arc::new(callback));
        self
    }

    /// The controller.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    fn set_status(&self, change: impl FnOnce(&mut ServiceStatus)) {
        self.status.send_modify(change);
    }

    /// Runs passes until `shutdown` completes (see the module documentation).
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let project = self.controller.project().to_owned();
        tokio::pin!(shutdown);
        let mut changes = self.controller.store().changes();
        tracing::info!(project, notified = changes.is_some(), "service started");
        loop {
            let stopping = self.stopping.clone();
            let refreshes = self.refreshes.clone();
            let mut shut = false;
            let report = {
                let pass = self.pass();
                tokio::pin!(pass);
                loop {
                    tokio::select! {
                        report = &mut pass => break report,
                        () = &mut shutdown, if !shut => {
                            // Let the pass finish its running promotion, start nothing more.
                            tracing::info!(project, "shutdown requested: finishing the running work");
                            stopping.store(true, Ordering::SeqCst);
                            refreshes.cancel();
                            shut = true;
                        }
                    }
                }
            };
            let failed_hard = report.error.is_some();
            let next = report.next_wake.clone();
            if shut || self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let now = self.controller.now();
            // A zero max_sleep would spin: sleep at least a millisecond.
            let cap = later(now, self.options.max_sleep.max(Duration::from_millis(1)));
            let mut until = next.as_ref().map_or(cap, |w| w.at().min(cap));
            if failed_hard {
                // The state could not be read: wait at least the error backoff.
                until = until.max(later(now, self.options.error_backoff));
            }
            self.set_status(|s| {
                s.sleeping_until = Some(until);
                s.next_wake = next.clone();
            });
            tracing::debug!(project, until = %until, next = ?next.as_ref().map(ToString::to_string), "sleeping");
            let clock = self.controller.clock().clone();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                request = self.inbox.recv() => match request {
                    Some(r) => self.pending.push(r),
                    // Every handle is gone (the service holds one itself, so this does
                    // not happen); keep the schedule going.
                    None => clock.sleep_until(until).await,
                },
                () = clock.sleep_until(until) => {}
                changed = store_changed(&mut changes) => {
                    if !changed {
                        tracing::warn!(project, "the state store stopped notifying; polling");
                        changes = None;
                    }
                }
            }
            self.set_status(|s| s.sleeping_until = None);
        }
        self.set_status(|s| {
            s.stopped = true;
            s.sleeping_until = None;
        });
        tracing::info!(project, "service stopped");
    }

    /// Runs one pass now: what is due, what was requested, verification, promotions. `run`
    /// calls it in a loop; an embedder with its own loop (or a test stepping a manual
    /// clock) may call it directly.
    pub async fn pass(&mut self) -> PassReport {
        while let Ok(r) = self.inbox.try_recv() {
            self.pending.push(r);
        }
        let requests = std::mem::take(&mut self.pending);
        let number = self.status.borrow().passes + 1;
        let span = tracing::info_span!("pass", project = %self.controller.project(), number);
        let mut report = self.pass_inner(requests).instrument(span).await;
        report.number = number;
        self.retain(&mut report).await;
        if let Some(cb) = &self.on_pass {
            cb(&report);
        }
        self.set_status(|s| {
            s.passes = number;
            s.next_wake = report.next_wake.clone();
        });
        report
    }

    /// Runs retention when it is due (see [`ServiceOptions::retention_interval`]).
    async fn retain(&mut self, report: &mut PassReport) {
        let Some(policy) = &self.options.retention else {
            return;
        };
        let now = self.controller.now();
        if self
            .last_retention
            .is_some_and(|last| now < later(last, self.options.retention_interval))
        {
            return;
        }
        match self.controller.apply_retention(policy).await {
            Ok(pruned) => {
                self.last_retention = Some(now);
                report.pruned = pruned;
            }
            Err(e) => tracing::warn!(error = %e, "retention failed; retried next pass"),
        }
    }

    async fn pass_inner(&self, requests: Vec<RefreshRequest>) -> PassReport {
        let mut report = PassReport {
            started_at: Some(self.controller.now()),
            ..PassReport::default()
        };
        let schedule = match self.controller.schedule().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the schedule");
                report.error = Some(e.to_string());
                report.requests = requests;
                return report;
            }
        };
        let work = refresh_work(&schedule, &requests);
        report.requests = requests;
        // Every look at a remote from now on is fresh enough for this pass's refreshes
        // (the requests in it came before): Warehouses of one repository share one.
        let (refreshed, failed) = self.refresh_all(work, Instant::now()).await;
        report.refreshed = refreshed;
        report.failed = failed;

        let stopping = self.stopping.clone();
        let stop = move || stopping.load(Ordering::SeqCst);
        if !stop() {
            match self.controller.verify_unverified().await {
                Ok(stages) => report.verified = stages,
                Err(e) => {
                    tracing::error!(error = %e, "verification re-check failed");
                    report.error = Some(e.to_string());
                }
            }
        }
        match self.controller.auto_promote_until(&stop).await {
            Ok(p) => report.promotions = p,
            Err(e) => {
                tracing::error!(error = %e, "auto-promotion failed");
                report.error = Some(e.to_string());
            }
        }
        match self.controller.state().await {
            Ok(state) => {
                report.next_wake = self.controller.schedule_for(&state).next_wake();
                report.state = Some(state);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the state after the pass"),
        }
        for r in &report.requests {
            tracing::info!(
                why = %r.why,
                warehouses = %r.warehouses.join(","),
                promotions = report.promotions.len(),
                latency_ms = r.received.elapsed().as_millis() as u64,
                "request served"
            );
        }
        report
    }

    /// Refreshes the Warehouses concurrently within the limits; outcomes in `work` order.
    async fn refresh_all(
        &self,
        work: Vec<(String, Option<DiscoveryHints>)>,
        fresh_after: Instant,
    ) -> (Vec<(String, RefreshOutcome)>, Vec<(String, String)>) {
        let tasks = work.into_iter().map(|(name, hints)| {
            let keys = self
                .controller
                .manifests()
                .warehouse(self.controller.project(), &name)
                .map(resource_keys)
                .unwrap_or_default();
            let limits = self.limits.clone();
            let controller = self.controller.clone();
            let cancel = self.refreshes.child_token();
            let span = tracing::info_span!("refresh", warehouse = %name);
            async move {
                let _permits = limits.acquire(&keys).await;
                // One replica at a time refreshes a Warehouse; the others leave it be.
                let lease = match controller.lease(&warehouse_lease(&name)).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => {
                        tracing::debug!("another replica is refreshing this Warehouse");
                        return (name, Ok(None));
                    }
                    Err(e) => return (name, Err(e)),
                };
                let result = controller
                    .refresh_as_of(&name, hints, cancel, Some(fresh_after))
                    .await
                    .map(Some);
                drop(lease);
                (name, result)
            }
            .instrument(span)
        });
        let mut refreshed = Vec::new();
        let mut failed = Vec::new();
        for (name, result) in futures::future::join_all(tasks).await {
            match result {
                Ok(Some(o)) => refreshed.push((name, o)),
                Ok(None) => {}
                Err(e @ ControllerError::UnknownWarehouse(_)) => {
                    tracing::warn!(error = %e, "refresh requested for an unknown Warehouse");
                    failed.push((name, e.to_string()));
                }
                Err(e) => failed.push((name, e.to_string())),
            }
        }
        (refreshed, failed)
    }
}

/// The lease a Warehouse's refresh runs under.
fn warehouse_lease(warehouse: &str) -> String {
    format!("warehouse.{warehouse}")
}

/// Waits for the store's next change notification: `true` when one came, `false` when
/// the store stopped notifying; never, when it does not notify.
async fn store_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match changes {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The Warehouses to refresh in a pass: those due, and those requested. A Warehouse is
/// refreshed incrementally (with the union of the tags events named) only when every
/// request for it named tags and it is not due anyway.
fn refresh_work(
    schedule: &Schedule,
    requests: &[RefreshRequest],
) -> Vec<(String, Option<DiscoveryHints>)> {
    let mut work: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for due in schedule.due() {
        work.insert(due.warehouse.clone(), None);
    }
    for r in requests {
        for w in &r.warehouses {
            match (work.get_mut(w), &r.tags) {
                (None, Some(tags)) => {
                    work.insert(w.clone(), Some(tags.clone()));
                }
                (None, None) => {
                    work.insert(w.clone(), None);
                }
                (Some(Some(all)), Some(tags)) => all.extend(tags.iter().cloned()),
                (Some(entry), None) => *entry = None,
                (Some(None), Some(_)) => {}
            }
        }
    }
    work.into_iter()
        .map(|(w, tags)| {
            let hints = tags
                .filter(|t| !t.is_empty())
                .map(|tags| DiscoveryHints { tags });
            (w, hints)
        })
        .collect()
}
