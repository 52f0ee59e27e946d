//! The library's service loop (`kargo::service`): schedule with jitter over a manual clock
//! (a day in milliseconds), wake-up on requests and at the end of soak times, concurrency
//! limits per registry and repository, verification re-checks, and a clean shutdown that
//! leaves unstarted promotions queued for the next start.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use kargo::Controller;
use kargo::clock::{Clock, ManualClock};
use kargo::core::freight::FreightCollection;
use kargo::core::loader::ManifestSet;
use kargo::core::model::{ImageSubscription, Stage};
use kargo::core::pipeline::{
    MemoryStore, StateStore, VerificationInfo, VerificationPhase, Verifier,
};
use kargo::core::runner::Runner;
use kargo::core::source::{Discovery, DiscoveryContext, Source, SourceError, SourceRegistry};
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::schedule::{ScheduleOptions, Wake};
use kargo::service::{RefreshRequest, Service, ServiceHandle, ServiceOptions};
use kargo::sources::memory::image;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

const PROJECT: &str =
    "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: demo}\n";

fn warehouse(name: &str, repo: &str, interval: &str) -> String {
    format!(
        "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  interval: {interval}\n  subscriptions:\n  - image: {{repoURL: {repo}}}\n"
    )
}

/// An image source that records every discovery (Warehouse, clock time), answers the tags
/// set for each repository, and optionally holds each discovery for a while (tokio time).
type Calls = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

#[derive(Clone, Default)]
struct Recording {
    calls: Calls,
    tags: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    clock: Arc<Mutex<Option<Arc<dyn Clock>>>>,
    hold: Option<Duration>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<Mutex<BTreeMap<String, usize>>>,
    in_flight_by_key: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Recording {
    fn publish(&self, repo: &str, tag: &str) {
        self.tags
            .lock()
            .unwrap()
            .entry(repo.to_owned())
            .or_default()
            .insert(0, tag.to_owned());
    }

    fn calls_for(&self, warehouse: &str) -> Vec<DateTime<Utc>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(w, _)| w == warehouse)
            .map(|(_, t)| *t)
            .collect()
    }

    fn host(repo: &str) -> String {
        repo.split('/').next().unwrap_or_default().to_owned()
    }
}

#[async_trait]
impl Source for Recording {
    const KIND: &'static str = "image";
    type Config = ImageSubscription;

    async fn discover(
        &self,
        ctx: &DiscoveryContext,
        config: &ImageSubscription,
    ) -> Result<Discovery, SourceError> {
        let now = self
            .clock
            .lock()
            .unwrap()
            .as_ref()
            .map_or_else(Utc::now, |c| c.now());
        self.calls
            .lock()
            .unwrap()
            .push((ctx.warehouse.clone(), now));
        if let Some(hold) = self.hold {
            let host = Self::host(&config.repo_url);
            let mine = {
                let mut by_key = self.in_flight_by_key.lock().unwrap();
                let n = by_key.entry(host.clone()).or_default();
                *n += 1;
                *n
            };
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            {
                let mut max = self.max_in_flight.lock().unwrap();
                let m = max.entry(host.clone()).or_default();
                *m = (*m).max(mine);
                let all = max.entry("*".into()).or_default();
                *all = (*all).max(self.in_flight.load(Ordering::SeqCst));
            }
            tokio::time::sleep(hold).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            *self
                .in_flight_by_key
                .lock()
                .unwrap()
                .get_mut(&host)
                .unwrap() -= 1;
        }
        let tags = self
            .tags
            .lock()
            .unwrap()
            .get(&config.repo_url)
            .cloned()
            .unwrap_or_else(|| vec!["1.0.0".into()]);
        Ok(Discovery::Images {
            repo_url: config.repo_url.clone(),
            platform: None,
            references: tags
                .iter()
                .map(|t| image(t, &format!("sha256:{t}")))
                .collect(),
            rejected: Vec::new(),
        })
    }
}

/// A service running on its own task until it is asked to stop.
struct Running {
    handle: ServiceHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(service: Service) -> Self {
        let handle = service.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service.run(async move {
            let _ = stopped.await;
        }));
        Self {
            handle,
            stop: Some(stop),
            task,
        }
    }

    fn ask_to_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn stop(mut self) {
        self.ask_to_stop();
        self.task.await.unwrap();
    }
}

fn controller(manifests: &str, source: &Recording, store: Arc<dyn StateStore>) -> Controller {
    let set = ManifestSet::from_yaml_str("service.yaml", manifests).unwrap();
    let mut sources = SourceRegistry::new();
    sources.register(source.clone()).unwrap();
    let mut steps = StepRegistry::new();
    steps.register(Gate::default()).unwrap();
    Controller::new(set, "demo", sources, Runner::new(steps), store).unwrap()
}

fn with_manual_clock(c: Controller, source: &Recording) -> (Controller, ManualClock) {
    let clock = ManualClock::new(t0());
    *source.clock.lock().unwrap() = Some(Arc::new(clock.clone()));
    (c.with_clock(clock.clone()), clock)
}

#[tokio::test]
async fn a_day_of_schedule_runs_in_milliseconds_with_jitter_and_no_early_refresh() {
    let manifests = format!(
        "{PROJECT}{}{}",
        warehouse("fast", "ghcr.io/acme/fast", "5m"),
        warehouse("slow", "ghcr.io/acme/slow", "1h")
    );
    let source = Recording::default();
    let (c, clock) = with_manual_clock(
        controller(&manifests, &source, Arc::new(MemoryStore::new())),
        &source,
    );
    let running = Running::start(Service::new(c, ServiceOptions::default()));
    let handle = running.handle.clone();
    let started = std::time::Instant::now();
    let end = t0() + chrono::Duration::hours(24);
    let mut passes = 1;
    loop {
        let status = handle.wait_until_sleeping(passes).await;
        let until = status.sleeping_until.unwrap();
        if until > end {
            break;
        }
        assert!(until > clock.now(), "the service must sleep forward");
        clock.set(until);
        passes = status.passes + 1;
    }
    let elapsed = started.elapsed();
    running.stop().await;
    eprintln!("a day of schedule: {passes} passes in {elapsed:?}");

    for (name, interval, expected) in [("fast", 300, 262..=289), ("slow", 3600, 22..=25)] {
        let calls = source.calls_for(name);
        assert!(
            expected.contains(&calls.len()),
            "{name}: {} refreshes",
            calls.len()
        );
        assert_eq!(calls[0], t0(), "{name}: refreshed at start");
        for pair in calls.windows(2) {
            let gap = (pair[1] - pair[0]).num_milliseconds();
            let lo = interval * 1000;
            // The interval, plus at most 10 % jitter.
            assert!(
                gap >= lo && gap <= lo + lo / 10,
                "{name}: {gap} ms between refreshes"
            );
        }
    }
    // The jitter varies from round to round.
    let fast = source.calls_for("fast");
    let gaps: std::collections::BTreeSet<i64> = fast
        .windows(2)
        .map(|p| (p[1] - p[0]).num_seconds())
        .collect();
    assert!(gaps.len() > 5, "{gaps:?}");
}

#[tokio::test]
async fn fifty_warehouses_with_one_interval_spread_out_after_the_first_round() {
    let mut manifests = PROJECT.to_owned();
    for i in 0..50 {
        manifests.push_str(&warehouse(
            &format!("w{i}"),
            &format!("ghcr.io/acme/a{i}"),
            "5m",
        ));
    }
    let source = Recording::default();
    let (c, _clock) = with_manual_clock(
        controller(&manifests, &source, Arc::new(MemoryStore::new())),
        &source,
    );
    let mut service = Service::new(c.clone(), ServiceOptions::default());
    let first = service.pass().await;
    assert_eq!(first.refreshed.len(), 50, "all due at start");
    let schedule = c.schedule().await.unwrap();
    let due: std::collections::BTreeSet<_> = schedule.warehouses.iter().map(|w| w.due_at).collect();
    assert!(due.len() >= 45, "due times: {}", due.len());
    let first_due = schedule.warehouses[0].due_at;
    let last_due = schedule.warehouses[49].due_at;
    assert!(first_due >= t0() + chrono::Duration::minutes(5));
    assert!(
        last_due - first_due >= chrono::Duration::seconds(15),
        "spread over the jitter window"
    );

    // Without jitter, they stay in one burst.
    let source = Recording::default();
    let (c, _clock) = with_manual_clock(
        controller(&manifests, &source, Arc::new(MemoryStore::new()))
            .with_schedule(ScheduleOptions::default().with_jitter(0.0)),
        &source,
    );
    Service::new(c.clone(), ServiceOptions::default())
        .pass()
        .await;
    let due: std::collections::BTreeSet<_> = c
        .schedule()
        .await
        .unwrap()
        .warehouses
        .iter()
        .map(|w| w.due_at)
        .collect();
    assert_eq!(due.len(), 1);
}

#[tokio::test]
async fn a_refresh_request_wakes_the_service_at_once_and_reads_only_the_named_tag() {
    let manifests = format!("{PROJECT}{}", warehouse("app", "ghcr.io/acme/app", "24h"));
    let source = Recording::default();
    let (c, clock) = with_manual_clock(
        controller(&manifests, &source, Arc::new(MemoryStore::new())),
        &source,
    );
    let running = Running::start(Service::new(c, ServiceOptions::default()));
    let handle = running.handle.clone();
    let status = handle.wait_until_sleeping(1).await;
    assert_eq!(source.calls_for("app").len(), 1);
    // Asleep for a day (the interval plus jitter), bounded by max_sleep (5 minutes).
    assert_eq!(
        status.sleeping_until,
        Some(t0() + chrono::Duration::minutes(5))
    );
    match status.next_wake {
        Some(Wake::Warehouse(w)) => {
            assert_eq!(w.warehouse, "app");
            assert!(w.due_at >= t0() + chrono::Duration::hours(24));
        }
        other => panic!("{other:?}"),
    }
    source.publish("ghcr.io/acme/app", "1.1.0");
    assert!(
        handle.request(
            RefreshRequest::new(vec!["app".into()], "webhook test")
                .with_tags(["1.1.0".to_owned()].into())
        )
    );
    handle.wait_until_sleeping(2).await;
    assert_eq!(clock.now(), t0(), "no time passed");
    assert_eq!(source.calls_for("app").len(), 2);
    assert_eq!(handle.controller().state().await.unwrap().freight.len(), 2);
    // Unknown Warehouses are reported, not fatal.
    handle.refresh("nope", "test");
    handle.wait_until_sleeping(3).await;
    running.stop().await;
    assert!(handle.status().stopped);
}

#[tokio::test(start_paused = true)]
async fn refreshes_are_limited_per_registry_and_overall() {
    let mut manifests = PROJECT.to_owned();
    for i in 0..6 {
        manifests.push_str(&warehouse(
            &format!("same{i}"),
            &format!("ghcr.io/acme/a{i}"),
            "5m",
        ));
        manifests.push_str(&warehouse(
            &format!("other{i}"),
            &format!("registry{i}.example/acme/a"),
            "5m",
        ));
    }
    let source = Recording {
        hold: Some(Duration::from_millis(50)),
        ..Recording::default()
    };
    let c = controller(&manifests, &source, Arc::new(MemoryStore::new()));
    let mut service = Service::new(c, ServiceOptions::default().with_limits(5, 2, 1));
    let pass = service.pass().await;
    assert_eq!(pass.refreshed.len(), 12, "{:?}", pass.failed);
    let max = source.max_in_flight.lock().unwrap().clone();
    assert_eq!(max["ghcr.io"], 2, "{max:?}");
    assert_eq!(max["*"], 5, "{max:?}");
    for i in 0..6 {
        assert_eq!(max[&format!("registry{i}.example")], 1);
    }
}

/// A step that waits until the test lets it finish (and counts its runs).
#[derive(Clone)]
struct Gate {
    runs: Arc<AtomicUsize>,
    open: Arc<tokio::sync::Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            runs: Arc::default(),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

#[derive(serde::Deserialize)]
struct GateConfig {}

#[async_trait]
impl Step for Gate {
    const KIND: &'static str = "gate";
    type Config = GateConfig;

    async fn run(&self, _ctx: &StepContext, _cfg: GateConfig) -> Result<StepOutcome, StepError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let permit = self
            .open
            .acquire()
            .await
            .map_err(|e| StepError::terminal(e.to_string()))?;
        permit.forget();
        Ok(StepOutcome::succeeded())
    }
}

fn stage(name: &str, sources: &str, verification: bool) -> String {
    format!(
        "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  requestedFreight:\n  - origin: {{kind: Warehouse, name: app}}\n    sources: {sources}\n{}  promotionTemplate:\n    spec:\n      steps:\n      - uses: gate\n",
        if verification {
            "  verification: {analysisTemplates: [{name: smoke}]}\n"
        } else {
            ""
        }
    )
}

const AUTO: &str = "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\nmetadata: {name: demo, namespace: demo}\nspec:\n  promotionPolicies:\n  - stageSelector: {name: \"glob:*\"}\n    autoPromotionEnabled: true\n";

fn gated_controller(
    manifests: &str,
    source: &Recording,
    store: Arc<dyn StateStore>,
    gate: &Gate,
) -> Controller {
    let set = ManifestSet::from_yaml_str("service.yaml", manifests).unwrap();
    let mut sources = SourceRegistry::new();
    sources.register(source.clone()).unwrap();
    let mut steps = StepRegistry::new();
    steps.register(gate.clone()).unwrap();
    Controller::new(set, "demo", sources, Runner::new(steps), store).unwrap()
}

#[tokio::test]
async fn shutdown_finishes_the_running_promotion_and_leaves_the_rest_queued() {
    let manifests = format!(
        "{PROJECT}{AUTO}{}{}{}",
        warehouse("app", "ghcr.io/acme/app", "24h"),
        stage("dev-a", "{direct: true}", false),
        stage("dev-b", "{direct: true}", false),
    );
    let source = Recording::default();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let gate = Gate::default();
    // One Stage's promotions at a time: the second Stage's waits in the queue.
    let c =
        gated_controller(&manifests, &source, store.clone(), &gate).with_promotion_concurrency(1);
    let mut running = Running::start(Service::new(c.clone(), ServiceOptions::default()));
    let handle = running.handle.clone();
    // The first promotion is running (its step waits on the gate): ask to stop.
    while gate.runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    running.ask_to_stop();
    tokio::task::yield_now().await;
    assert!(
        !running.task.is_finished(),
        "waits for the running promotion"
    );
    gate.open.add_permits(1);
    running.task.await.unwrap();
    assert!(handle.status().stopped);
    assert_eq!(
        gate.runs.load(Ordering::SeqCst),
        1,
        "no second promotion started"
    );
    let state = c.state().await.unwrap();
    let finished: Vec<&str> = state
        .stages
        .values()
        .filter_map(|s| s.last_promotion.as_ref())
        .map(|p| p.stage.as_str())
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    let queued: usize = state.stages.values().map(|s| s.queue.len()).sum();
    let running = state
        .stages
        .values()
        .filter(|s| s.current_promotion.is_some())
        .count();
    assert_eq!(running, 0, "nothing left half-done");

    // The next start (another process, the same store) runs what was left.
    gate.open.add_permits(10);
    let c2 = gated_controller(&manifests, &source, store, &gate);
    let mut service = Service::new(c2.clone(), ServiceOptions::default());
    let pass = service.pass().await;
    assert_eq!(pass.promotions.len(), 1, "queued before: {queued}");
    let state = c2.state().await.unwrap();
    assert!(state.stages["dev-a"].current().is_some());
    assert!(state.stages["dev-b"].current().is_some());
}

#[tokio::test]
async fn stages_promote_at_once_and_shutdown_waits_for_every_running_promotion() {
    let manifests = format!(
        "{PROJECT}{AUTO}{}{}{}{}",
        warehouse("app", "ghcr.io/acme/app", "24h"),
        stage("dev-a", "{direct: true}", false),
        stage("dev-b", "{direct: true}", false),
        stage("dev-c", "{direct: true}", false),
    );
    let source = Recording::default();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let gate = Gate::default();
    let c = gated_controller(&manifests, &source, store, &gate).with_promotion_concurrency(2);
    let mut running = Running::start(Service::new(c.clone(), ServiceOptions::default()));
    // Two Stages' promotions run at once (both wait on the gate); the third waits its turn.
    while gate.runs.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    running.ask_to_stop();
    tokio::task::yield_now().await;
    assert!(
        !running.task.is_finished(),
        "waits for both running promotions"
    );
    gate.open.add_permits(2);
    running.task.await.unwrap();
    assert_eq!(
        gate.runs.load(Ordering::SeqCst),
        2,
        "no third promotion started"
    );
    let state = c.state().await.unwrap();
    let finished = state
        .stages
        .values()
        .filter(|s| s.last_promotion.is_some())
        .count();
    assert_eq!(finished, 2);
    assert_eq!(
        state.stages.values().map(|s| s.queue.len()).sum::<usize>(),
        1,
        "the third Stage's promotion stays queued"
    );
}

/// A verifier whose verdict the test sets.
#[derive(Clone)]
struct Verdict(Arc<Mutex<VerificationPhase>>);

#[async_trait]
impl Verifier for Verdict {
    async fn verify(&self, _stage: &Stage, _c: &FreightCollection) -> VerificationInfo {
        VerificationInfo {
            phase: *self.0.lock().unwrap(),
            message: String::new(),
            finished_at: t0(),
        }
    }
}

#[tokio::test]
async fn the_service_wakes_when_a_soak_time_ends_and_verifies_what_never_was() {
    let manifests = format!(
        "{PROJECT}{AUTO}{}{}{}",
        warehouse("app", "ghcr.io/acme/app", "24h"),
        stage("dev", "{direct: true}", true),
        stage("staging", "{stages: [dev], requiredSoakTime: 1h}", false),
    );
    let source = Recording::default();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let gate = Gate::default();
    gate.open.add_permits(100);
    // A first controller without a verifier: dev is promoted but not verified.
    let (c, clock) = with_manual_clock(
        gated_controller(&manifests, &source, store.clone(), &gate),
        &source,
    );
    Service::new(c, ServiceOptions::default()).pass().await;
    // The next one has a verifier: its first pass verifies dev.
    let (c, _) = with_manual_clock(gated_controller(&manifests, &source, store, &gate), &source);
    let c = c
        .with_clock(clock.clone())
        .with_verifier(Arc::new(Verdict(Arc::new(Mutex::new(
            VerificationPhase::Successful,
        )))));
    let running = Running::start(Service::new(
        c.clone(),
        ServiceOptions::default().with_max_sleep(Duration::from_secs(86_400)),
    ));
    let handle = running.handle.clone();
    let status = handle.wait_until_sleeping(1).await;
    let state = c.state().await.unwrap();
    assert!(
        state.stages["dev"].freight_history[0].verification_history[0].phase
            == VerificationPhase::Successful
    );
    assert!(
        state
            .stages
            .get("staging")
            .and_then(|s| s.current())
            .is_none()
    );
    // It sleeps until exactly the end of the soak: an hour after dev got the Freight.
    let since = state.stages["dev"].freight_history[0].promoted_at;
    assert_eq!(
        status.sleeping_until,
        Some(since + chrono::Duration::hours(1))
    );
    assert!(matches!(status.next_wake, Some(Wake::SoakEnds(ref s)) if s.stage == "staging"));
    clock.set(since + chrono::Duration::minutes(59));
    tokio::task::yield_now().await;
    assert_eq!(handle.passes(), 1, "no wake-up before the soak ends");
    clock.set(since + chrono::Duration::hours(1));
    handle.wait_until_sleeping(2).await;
    assert!(
        c.state().await.unwrap().stages["staging"]
            .current()
            .is_some(),
        "promoted when the soak ended"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_zero_max_sleep_does_not_spin() {
    let manifests = format!("{PROJECT}{}", warehouse("app", "ghcr.io/acme/app", "1h"));
    let source = Recording::default();
    let (c, clock) = with_manual_clock(
        controller(&manifests, &source, Arc::new(MemoryStore::new())),
        &source,
    );
    let running = Running::start(Service::new(
        c,
        ServiceOptions::default().with_max_sleep(Duration::ZERO),
    ));
    let handle = running.handle.clone();
    let status = handle.wait_until_sleeping(1).await;
    assert_eq!(
        status.sleeping_until,
        Some(clock.now() + chrono::Duration::milliseconds(1))
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.passes(), 1, "no pass until the clock moves");
    running.stop().await;
}

#[tokio::test]
async fn retention_runs_in_passes_at_its_interval() {
    let manifests = format!("{PROJECT}{}", warehouse("app", "ghcr.io/acme/app", "1m"));
    let source = Recording::default();
    let (c, clock) = with_manual_clock(
        controller(&manifests, &source, Arc::new(MemoryStore::new())),
        &source,
    );
    let mut options = ServiceOptions::default().with_retention(Some(
        kargo::core::pipeline::RetentionPolicy::default().with_freight(1, Duration::ZERO),
    ));
    options.retention_interval = Duration::from_secs(120);
    let mut service = Service::new(c.clone(), options);
    let mut pruned = Vec::new();
    for i in 0..6 {
        source.publish("ghcr.io/acme/app", &format!("1.0.{i}"));
        let pass = service.pass().await;
        assert_eq!(pass.refreshed.len(), 1, "pass {i}");
        pruned.push(pass.pruned.freight.len());
        clock.advance(chrono::Duration::seconds(70));
    }
    // Retention ran in passes 0, 2 and 4 (every 140 s ≥ 120 s), deleting all but the newest.
    assert_eq!(pruned, vec![0, 0, 2, 0, 2, 0]);
    assert_eq!(c.state().await.unwrap().freight.len(), 2);
    // Off: nothing is deleted.
    let mut keep_all = Service::new(c.clone(), ServiceOptions::default().with_retention(None));
    source.publish("ghcr.io/acme/app", "2.0.0");
    clock.advance(chrono::Duration::minutes(2));
    assert!(keep_all.pass().await.pruned.is_empty());
    assert_eq!(c.state().await.unwrap().freight.len(), 3);
}
