//! [`PipelineTest`]: a whole project's pipeline, run offline on the real [`Controller`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, Utc};
use kargo_core::Runner;
use kargo_core::freight::FreightCollection;
use kargo_core::loader::ManifestSet;
use kargo_core::model::{FreightAvailabilityStrategy, FreightRequest, Stage, SubscriptionSource};
use kargo_core::pipeline::{
    FreightRecord, MemoryStore, Pipeline, ProjectState, PromotionRecord, VerificationInfo,
    VerificationPhase, Verifier,
};
use kargo_core::source::{DiscoveredCommit, DiscoveredImage, SourceRegistry};
use kargo_core::step::{DynStep, Step, StepRegistry};
use kargo_sources::memory::MemorySource;
use kargo_steps::{BuiltinOptions, register_builtins_with};

use super::fixture::{FixtureReader, seed_fixture, test_git_config};
use super::{FIXTURE_BRANCH, GITOPS_URL, TestError, io};
use crate::clock::{IntoTimeDelta, ManualClock};
use crate::controller::{Controller, ControllerError, PromotionReport, ReconcileReport};

/// A whole-pipeline test: the project's manifests (the same ones that are deployed) run
/// on the real [`Controller`], offline.
///
/// [`build`](Self::build) makes a [`PipelineRun`]: the controller with an in-memory state
/// store, an in-memory artifact source ([`MemorySource`]: every repository the
/// Warehouses subscribe to starts empty, tests publish into it), a [`ManualClock`], a
/// [`TestVerifier`] deciding the verification of Stages with `spec.verification` (pass,
/// unless the test says otherwise), the built-in steps (plus custom ones), and the fixture
/// GitOps repository of [`PromotionTest`](super::PromotionTest): the
/// [`gitops_dir`](Self::gitops_dir) committed into a temporary bare repository, every
/// occurrence of [`GITOPS_URL`] in the manifests replaced by its `file://` URL. Nothing
/// leaves the machine; the `git` command must be installed (pushes use it).
///
/// With `examples/fixtures/pipeline.yaml` (dev → staging → prod, an hour's soak in staging
/// before prod) and the fixture directory `examples/fixtures/gitops`:
///
/// ```
/// # const MANIFESTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/pipeline.yaml"));
/// # const GITOPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kargo::testing::PipelineTest;
/// const APP: &str = "ghcr.io/acme/guestbook";
///
/// let p = PipelineTest::new(MANIFESTS).gitops_dir(GITOPS).build().await?;
/// p.publish_image(APP, "1.2.3");
/// p.reconcile().await?; // the Warehouse finds 1.2.3: dev, then staging, auto-promote
/// assert_eq!(p.image_tag("staging", APP), Some("1.2.3"));
/// assert!(p.pushed_file("env/staging/values.yaml")?.contains("tag: \"1.2.3\""));
/// assert_eq!(p.image_tag("prod", APP), None); // prod wants an hour in staging
/// p.advance(chrono::Duration::minutes(59)).await?;
/// assert_eq!(p.image_tag("prod", APP), None);
/// p.advance(chrono::Duration::minutes(1)).await?;
/// assert_eq!(p.image_tag("prod", APP), Some("1.2.3"));
/// # Ok(())
/// # }
/// ```
pub struct PipelineTest {
    manifests: String,
    project: Option<String>,
    gitops_dir: Option<PathBuf>,
    placeholder: String,
    steps: Vec<Arc<dyn DynStep>>,
    start: Option<DateTime<Utc>>,
    verdicts: BTreeMap<String, Verdict>,
    default_verdict: Verdict,
}

impl std::fmt::Debug for PipelineTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineTest")
            .field("project", &self.project)
            .field("gitops_dir", &self.gitops_dir)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl PipelineTest {
    /// A test of `manifests` (a multi-document YAML string: the Project, its Warehouses,
    /// Stages, PromotionTasks, ProjectConfig).
    pub fn new(manifests: impl Into<String>) -> Self {
        Self {
            manifests: manifests.into(),
            project: None,
            gitops_dir: None,
            placeholder: GITOPS_URL.to_owned(),
            steps: Vec::new(),
            start: None,
            verdicts: BTreeMap::new(),
            default_verdict: Verdict::Pass,
        }
    }

    /// The project (default: the only one the manifests mention).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// The fixture directory that becomes the GitOps repository (its files, on `main`).
    pub fn gitops_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.gitops_dir = Some(dir.into());
        self
    }

    /// The placeholder URL replaced in the manifests (default [`GITOPS_URL`]).
    pub fn gitops_url(mut self, placeholder: impl Into<String>) -> Self {
        self.placeholder = placeholder.into();
        self
    }

    /// Registers a custom step besides the built-in ones.
    pub fn step<S: Step>(mut self, step: S) -> Self {
        self.steps.push(Arc::new(step));
        self
    }

    /// Where the clock starts (default [`ManualClock::default`]'s 2026-01-01T00:00:00Z).
    pub fn start_at(mut self, start: DateTime<Utc>) -> Self {
        self.start = Some(start);
        self
    }

    /// How the verification of `stage` ends (default [`Verdict::Pass`]); see
    /// [`PipelineRun::verification`].
    pub fn verification(mut self, stage: impl Into<String>, verdict: Verdict) -> Self {
        self.verdicts.insert(stage.into(), verdict);
        self
    }

    /// How the verification of Stages without their own verdict ends.
    pub fn default_verification(mut self, verdict: Verdict) -> Self {
        self.default_verdict = verdict;
        self
    }

    /// Seeds the fixture repository and makes the controller. Nothing runs yet: no
    /// Warehouse was refreshed, no Stage promoted.
    pub async fn build(self) -> Result<PipelineRun, TestError> {
        let tmp = tempfile::Builder::new()
            .prefix("kargo-pipeline-test-")
            .tempdir()
            .map_err(io("cannot create a temporary directory"))?;
        let git_config = test_git_config(&tmp.path().join("git-cache"));
        let bare = tmp.path().join("gitops.git");
        let fixture = match &self.gitops_dir {
            Some(dir) => Some(seed_fixture(dir, &bare, tmp.path())?),
            None => None,
        };
        let manifests = match &fixture {
            Some(f) => self.manifests.replace(&self.placeholder, &f.url),
            None => self.manifests.clone(),
        };
        let set = ManifestSet::from_yaml_str("manifests.yaml", &manifests)?;
        let project = match &self.project {
            Some(p) => p.clone(),
            None => match set.project_names().as_slice() {
                [one] => (*one).to_owned(),
                names => {
                    return Err(TestError::NoProject(
                        names.iter().map(|n| (*n).to_owned()).collect(),
                    ));
                }
            },
        };
        if set.project(&project).is_none() {
            return Err(TestError::UnknownProject(project));
        }

        // Every subscribed repository exists, empty, until the test publishes to it.
        let source = MemorySource::new();
        for w in set.warehouses(&project) {
            for s in &w.spec.subscriptions {
                match &s.source {
                    SubscriptionSource::Image(i) => source.set_images(&i.repo_url, Vec::new()),
                    SubscriptionSource::Chart(c) => {
                        source.set_chart_versions(&c.repo_url, &c.name, Vec::new());
                    }
                    SubscriptionSource::Git(g) => source.set_commits(&g.repo_url, Vec::new()),
                    SubscriptionSource::Generic(_) => {}
                }
            }
        }
        let mut sources = SourceRegistry::new();
        source.register_into(&mut sources)?;

        let mut registry = StepRegistry::new();
        register_builtins_with(&mut registry, &BuiltinOptions::with_git(git_config.clone()))?;
        for s in &self.steps {
            registry.register_dyn(s.clone())?;
        }

        let clock = match self.start {
            Some(start) => ManualClock::new(start),
            None => ManualClock::default(),
        };
        let verifier = TestVerifier::new(clock.clone());
        verifier.set_default(self.default_verdict);
        for (stage, verdict) in &self.verdicts {
            verifier.set(stage, *verdict);
        }
        let c = clock.clone();
        let store = Arc::new(MemoryStore::new());
        let events = kargo_core::events::CollectedEvents::new();
        let controller =
            Controller::new(set, &project, sources, Runner::new(registry), store.clone())?
                .with_clock(c)
                // No jitter: a test that advances by a Warehouse's interval sees it refreshed.
                .with_schedule(crate::schedule::ScheduleOptions::default().with_jitter(0.0))
                .with_verifier(Arc::new(verifier.clone()))
                .with_events(Arc::new(events.clone()))
                .with_work_root(tmp.path().join("work"));
        let published = clock.now();
        Ok(PipelineRun {
            controller,
            store,
            source,
            clock,
            verifier,
            events,
            fixture: fixture.map(|f| FixtureReader::new(&f, &bare)),
            last_published: Mutex::new(published),
            _tmp: tmp,
        })
    }
}

/// How a verification ends, as the test decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Verdict {
    /// The collection is good: its Freight is verified in the Stage.
    #[default]
    Pass,
    /// The collection is bad: its Freight is not verified there (downstream Stages do
    /// not get it).
    Fail,
    /// No verdict yet: recorded as [`VerificationPhase::Inconclusive`] (the model has no
    /// running phase); [`PipelineRun::verify`] gives the verdict later.
    Pending,
}

/// The message of verifications [`TestVerifier`] leaves pending.
const PENDING: &str = "pending: the test has not decided yet";

/// A [`Verifier`] that answers what the test decided, per Stage ([`Verdict`]), at the
/// time of its [`ManualClock`]. Clones share the verdicts.
#[derive(Debug, Clone)]
pub struct TestVerifier {
    verdicts: Arc<Mutex<(Verdict, BTreeMap<String, Verdict>)>>,
    clock: ManualClock,
}

impl TestVerifier {
    /// A verifier passing every Stage, timing its results with `clock`.
    pub fn new(clock: ManualClock) -> Self {
        Self {
            verdicts: Arc::new(Mutex::new((Verdict::Pass, BTreeMap::new()))),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, (Verdict, BTreeMap<String, Verdict>)> {
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verdict of `stage`'s next verifications.
    pub fn set(&self, stage: &str, verdict: Verdict) {
        self.lock().1.insert(stage.to_owned(), verdict);
    }

    /// The verdict of Stages without their own.
    pub fn set_default(&self, verdict: Verdict) {
        self.lock().0 = verdict;
    }

    /// The verdict `stage` gets now.
    pub fn verdict(&self, stage: &str) -> Verdict {
        let v = self.lock();
        v.1.get(stage).copied().unwrap_or(v.0)
    }

    /// The verification this verifier records for `stage`.
    pub fn info(&self, stage: &str) -> VerificationInfo {
        let (phase, message) = match self.verdict(stage) {
            Verdict::Pass => (VerificationPhase::Successful, "passed by the test"),
            Verdict::Fail => (VerificationPhase::Failed, "failed by the test"),
            Verdict::Pending => (VerificationPhase::Inconclusive, PENDING),
        };
        VerificationInfo {
            phase,
            message: message.to_owned(),
            finished_at: self.clock.now(),
        }
    }
}

// `Verifier` is an `async_trait` trait; this is the signature the macro generates.
impl Verifier for TestVerifier {
    fn verify<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        stage: &'life1 Stage,
        _collection: &'life2 FreightCollection,
    ) -> Pin<Box<dyn Future<Output = VerificationInfo> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let info = self.info(&stage.metadata.name);
        tracing::debug!(stage = %stage.metadata.name, phase = ?info.phase, "test verification");
        Box::pin(std::future::ready(info))
    }
}

/// The answer of a [`PipelineRun`] query for one value (an image tag, a chart
/// version...): an `Option<String>` (it dereferences to one) that compares equal to an
/// `Option<&str>`, so that `assert_eq!(p.image_tag("dev", APP), Some("1.2.3"))` and
/// `assert_eq!(p.image_tag("prod", APP), None)` read as they should.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Answer(Option<String>);

impl Answer {
    /// The value, owned.
    pub fn into_option(self) -> Option<String> {
        self.0
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::ops::Deref for Answer {
    type Target = Option<String>;
    fn deref(&self) -> &Option<String> {
        &self.0
    }
}

impl From<Option<String>> for Answer {
    fn from(v: Option<String>) -> Self {
        Self(v)
    }
}

impl From<Answer> for Option<String> {
    fn from(a: Answer) -> Self {
        a.0
    }
}

impl PartialEq<Option<&str>> for Answer {
    fn eq(&self, other: &Option<&str>) -> bool {
        self.0.as_deref() == *other
    }
}

/// Why a Stage does not hold the newest Freight of one of the Warehouses it requests from
/// ([`PipelineRun::waiting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// The Warehouse.
    pub warehouse: String,
    /// The Freight the Stage is waiting for (its alias, or its ID without one).
    pub freight: String,
    /// What it is waiting for.
    pub reason: WaitReason,
}

/// What a Stage is waiting for ([`Wait`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitReason {
    /// A promotion of the Freight is queued or running.
    Promoting,
    /// A manual promotion (or rollback) holds auto-promotion for this Warehouse; promoting
    /// auto-promotion's candidate by hand lifts the hold.
    Held {
        /// The promotion that set the hold.
        promotion: String,
    },
    /// The Freight is available, but auto-promotion is off for the Stage: someone must
    /// promote it.
    ManualPromotion,
    /// The Freight is available and auto-promotion is on: the next reconcile promotes it.
    NextReconcile,
    /// Verified upstream, the Freight has not yet soaked there for `requiredSoakTime`.
    Soaking {
        /// The upstream Stage.
        upstream: String,
        /// The soak time left.
        remaining: std::time::Duration,
    },
    /// The Freight is in the upstream Stage, not verified there.
    Unverified {
        /// The upstream Stage.
        upstream: String,
        /// Whether the last verification failed (`false`: none yet, or pending).
        failed: bool,
    },
    /// The Freight has not reached the upstream Stages it must be verified in: it must be
    /// promoted there first, or approved for this Stage.
    NotUpstream {
        /// The upstream Stages (those still missing it, with `availabilityStrategy: All`).
        stages: Vec<String>,
    },
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Freight {} ({}): ", self.freight, self.warehouse)?;
        match &self.reason {
            WaitReason::Promoting => f.write_str("being promoted"),
            WaitReason::Held { promotion } => {
                write!(f, "auto-promotion held since promotion {promotion}")
            }
            WaitReason::ManualPromotion => {
                f.write_str("available, awaiting a manual promotion (auto-promotion is off)")
            }
            WaitReason::NextReconcile => f.write_str("available, promoted at the next reconcile"),
            WaitReason::Soaking {
                upstream,
                remaining,
            } => write!(f, "soaking in {upstream}, {} left", span(*remaining)),
            WaitReason::Unverified { upstream, failed } => {
                if *failed {
                    write!(f, "its verification failed in {upstream}")
                } else {
                    write!(f, "awaiting verification in {upstream}")
                }
            }
            WaitReason::NotUpstream { stages } => write!(
                f,
                "not verified in {}: awaiting a promotion there, or an approval",
                stages.join(", ")
            ),
        }
    }
}

/// `1h30m`, `5m`, `42s`.
fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A built [`PipelineTest`]: publish artifacts, move time, promote, and ask what each Stage
/// holds and why (see [`PipelineTest`]). The temporary fixture repository lives as long as
/// this value.
pub struct PipelineRun {
    controller: Controller,
    store: Arc<MemoryStore>,
    source: MemorySource,
    clock: ManualClock,
    verifier: TestVerifier,
    events: kargo_core::events::CollectedEvents,
    fixture: Option<FixtureReader>,
    last_published: Mutex<DateTime<Utc>>,
    _tmp: tempfile::TempDir,
}

impl std::fmt::Debug for PipelineRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRun")
            .field("controller", &self.controller)
            .field("now", &self.clock.now())
            .field("repo_url", &self.repo_url())
            .finish_non_exhaustive()
    }
}

/// How many intermediate reconciles [`PipelineRun::advance`] runs at most.
const MAX_ADVANCE_STEPS: usize = 10_000;

/// A made-up, stable `sha256:` digest for `repo:tag` (64 hex digits; not a SHA-256).
fn digest_of(repo: &str, tag: &str) -> String {
    let mut out = String::from("sha256:");
    for seed in 0..4u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in repo.bytes().chain([b':']).chain(tag.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// Newest first: `discoveredAt` descending, then ID descending (the pipeline's order).
fn newest_first(a: &FreightRecord, b: &FreightRecord) -> std::cmp::Ordering {
    b.freight
        .discovered_at
        .cmp(&a.freight.discovered_at)
        .then_with(|| b.freight.name.cmp(&a.freight.name))
}

fn label(record: &FreightRecord) -> String {
    record
        .freight
        .alias
        .clone()
        .unwrap_or_else(|| record.freight.name.to_string())
}

fn merge(into: &mut ReconcileReport, more: ReconcileReport) {
    into.refreshed.extend(more.refreshed);
    into.promotions.extend(more.promotions);
}

impl PipelineRun {
    /// The controller (for what the harness does not wrap).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The in-memory artifact source the Warehouses discover from.
    pub fn source(&self) -> &MemorySource {
        &self.source
    }

    /// The clock (moving it does not reconcile; see [`advance`](Self::advance)).
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The verifier (verdicts per Stage).
    pub fn verifier(&self) -> &TestVerifier {
        &self.verifier
    }

    /// Every event the controller emitted so far, oldest first
    /// ([`Controller::with_events`]).
    pub fn events(&self) -> Vec<kargo_core::events::Event> {
        self.events.events()
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The fixture repository's `file://` URL, if there is one.
    pub fn repo_url(&self) -> Option<&str> {
        self.fixture.as_ref().map(FixtureReader::url)
    }

    /// The pipeline's state now.
    pub fn state(&self) -> ProjectState {
        // The store is in memory: read it without awaiting, so queries stay plain calls.
        self.store.snapshot(self.controller.project()).0
    }

    /// A publication time later than the previous one (and not before the clock).
    fn publication_time(&self) -> DateTime<Utc> {
        let mut last = self
            .last_published
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let t = self.clock.now().max(*last + TimeDelta::milliseconds(1));
        *last = t;
        t
    }

    /// Publishes image `repo:tag` (the newest build; its digest is made up from the repo
    /// and the tag). Warehouses see it at their next refresh.
    pub fn publish_image(&self, repo: &str, tag: &str) {
        self.source.push_image(
            repo,
            DiscoveredImage {
                tag: tag.to_owned(),
                digest: digest_of(repo, tag),
                annotations: BTreeMap::new(),
                created_at: Some(self.publication_time()),
            },
        );
    }

    /// Publishes version `version` of chart `name` (empty for an OCI repository) in `repo`.
    pub fn publish_chart(&self, repo: &str, name: &str, version: &str) {
        self.source.push_chart_version(repo, name, version);
    }

    /// Publishes commit `id` (with its subject) as the newest of `repo`.
    pub fn publish_commit(&self, repo: &str, id: &str, subject: &str) {
        self.source.push_commit(
            repo,
            DiscoveredCommit {
                id: id.to_owned(),
                branch: String::new(),
                tag: String::new(),
                subject: subject.to_owned(),
                author: String::new(),
                committer: String::new(),
                creator_date: Some(self.publication_time()),
            },
        );
    }

    /// One reconcile pass now: the Warehouses whose interval has elapsed (all, the first
    /// time) are refreshed, then auto-promotion runs until nothing moves.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ControllerError> {
        self.controller.reconcile(false).await
    }

    /// Refreshes `warehouse` now (as a webhook would), then runs auto-promotion.
    pub async fn refresh(&self, warehouse: &str) -> Result<ReconcileReport, ControllerError> {
        let outcome = self.controller.refresh(warehouse).await?;
        Ok(ReconcileReport {
            refreshed: vec![(warehouse.to_owned(), outcome)],
            failed: Vec::new(),
            promotions: self.controller.auto_promote().await?,
        })
    }

    /// Refreshes every Warehouse now, then runs auto-promotion.
    pub async fn refresh_all(&self) -> Result<ReconcileReport, ControllerError> {
        self.controller.reconcile(true).await
    }

    /// Lets `by` pass with the controller running: a reconcile pass now, then the clock
    /// stops at every moment something becomes due in between (a Warehouse's next refresh,
    /// once per Warehouse: nothing is published meanwhile; the end of a soak) to reconcile
    /// there, and a last pass at the end. Returns everything those passes did. A negative
    /// span does not move the clock back (see [`ManualClock::set`]).
    pub async fn advance(
        &self,
        by: impl IntoTimeDelta,
    ) -> Result<ReconcileReport, ControllerError> {
        let end = self.clock.now() + by.into_time_delta();
        // The controller reacts at once to what the test did before, then at each due time.
        let mut report = self.controller.reconcile(false).await?;
        let mut refreshed: std::collections::BTreeSet<String> =
            report.refreshed.iter().map(|(w, _)| w.clone()).collect();
        for step in 0..=MAX_ADVANCE_STEPS {
            let Some(at) = self.next_event(end, &refreshed).await else {
                break;
            };
            if step == MAX_ADVANCE_STEPS {
                tracing::warn!(
                    steps = step,
                    "advance: too many due times, jumping to the end"
                );
                break;
            }
            self.clock.set(at);
            tracing::debug!(%at, "advance: reconciling at a due time");
            let pass = self.controller.reconcile(false).await?;
            refreshed.extend(pass.refreshed.iter().map(|(w, _)| w.clone()));
            merge(&mut report, pass);
        }
        if self.clock.now() < end {
            self.clock.set(end);
        }
        merge(&mut report, self.controller.reconcile(false).await?);
        Ok(report)
    }

    /// The first moment after now and before `end` when a Warehouse not yet refreshed
    /// during this advance is due, Freight finishes soaking upstream, or a Stage's closed
    /// promotion windows open (the controller's own [`schedule`](Controller::schedule)).
    async fn next_event(
        &self,
        end: DateTime<Utc>,
        refreshed: &std::collections::BTreeSet<String>,
    ) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let schedule = self.controller.schedule().await.ok()?;
        let warehouses = schedule
            .warehouses
            .iter()
            .filter(|w| !refreshed.contains(&w.warehouse))
            .map(|w| w.due_at);
        let soaks = schedule.soaks.iter().map(|s| s.at);
        let openings = schedule.window_openings.iter().map(|o| o.at);
        warehouses
            .chain(soaks)
            .chain(openings)
            .filter(|t| *t > now && *t < end)
            .min()
    }

    /// Promotes Freight (alias, ID or unique ID prefix) to `stage` by hand, then runs the
    /// auto-promotion it enables. Returns every promotion run, this one first.
    pub async fn promote(
        &self,
        stage: &str,
        freight: &str,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.controller.promote(stage, freight, None).await
    }

    /// Promotes Freight to `stage` as `actor` (the requester, who cannot approve it).
    pub async fn promote_as(
        &self,
        stage: &str,
        freight: &str,
        actor: &str,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.controller
            .promote(stage, freight, Some(actor.to_owned()))
            .await
    }

    /// `who` approves (or rejects) the promotion at the head of `stage`'s queue, under the
    /// Stage's approval policy; runs the queue when that is enough.
    pub async fn answer_promotion(
        &self,
        stage: &str,
        who: &kargo_core::pipeline::Approver,
        decision: kargo_core::pipeline::ApprovalDecision,
    ) -> Result<(kargo_core::pipeline::ApprovalOutcome, Vec<PromotionReport>), ControllerError>
    {
        self.controller
            .answer_promotion(stage, None, who, decision, "")
            .await
    }

    /// Approves Freight for `stage` (bypassing upstream verification and soak), then runs
    /// auto-promotion (which may promote it there).
    pub async fn approve(
        &self,
        stage: &str,
        freight: &str,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        self.controller.approve(stage, freight, None).await?;
        self.controller.auto_promote().await
    }

    /// Re-promotes the Stage's previous collection (holding auto-promotion there), then
    /// runs the auto-promotion it enables.
    pub async fn rollback(&self, stage: &str) -> Result<Vec<PromotionReport>, ControllerError> {
        self.controller.rollback(stage, None).await
    }

    /// How the verifications of `stage` end from now on (default [`Verdict::Pass`]).
    pub fn verification(&self, stage: &str, verdict: Verdict) {
        self.verifier.set(stage, verdict);
    }

    /// Records a verdict on the collection `stage` holds now (e.g. after a
    /// [`Verdict::Pending`] one), then runs the auto-promotion it enables.
    pub async fn verify(
        &self,
        stage: &str,
        passed: bool,
    ) -> Result<Vec<PromotionReport>, ControllerError> {
        let (phase, message) = if passed {
            (VerificationPhase::Successful, "passed by the test")
        } else {
            (VerificationPhase::Failed, "failed by the test")
        };
        self.controller
            .record_verification(
                stage,
                VerificationInfo {
                    phase,
                    message: message.to_owned(),
                    finished_at: self.clock.now(),
                },
            )
            .await?;
        self.controller.auto_promote().await
    }

    /// The Freight `stage` holds (aliases, or IDs without one), by Warehouse name order.
    pub fn freight_in(&self, stage: &str) -> Vec<String> {
        let state = self.state();
        let Some(current) = state.stages.get(stage).and_then(|s| s.current()) else {
            return Vec::new();
        };
        current
            .references()
            .into_iter()
            .map(|r| match state.freight.get(&r.name) {
                Some(record) => label(record),
                None => r.name.to_string(),
            })
            .collect()
    }

    /// The collection `stage` holds, if any.
    pub fn collection(&self, stage: &str) -> Option<FreightCollection> {
        self.state().stages.get(stage)?.current().cloned()
    }

    /// The newest Freight (alias, or ID without one) holding image tag, chart version or
    /// commit ID (or tag) `version` of `repo`.
    pub fn freight_of(&self, repo: &str, version: &str) -> Option<String> {
        let state = self.state();
        let mut found: Vec<&FreightRecord> = state
            .freight
            .values()
            .filter(|r| {
                let f = &r.freight;
                f.images
                    .iter()
                    .any(|i| i.repo_url == repo && i.tag == version)
                    || f.charts
                        .iter()
                        .any(|c| c.repo_url == repo && c.version == version)
                    || f.commits
                        .iter()
                        .any(|c| c.repo_url == repo && (c.id == version || c.tag == version))
            })
            .collect();
        found.sort_by(|a, b| newest_first(a, b));
        found.first().map(|r| label(r))
    }

    /// The tag of image `repo` in the Freight `stage` holds.
    pub fn image_tag(&self, stage: &str, repo: &str) -> Answer {
        let Some(current) = self.collection(stage) else {
            return Answer(None);
        };
        Answer(
            current
                .images()
                .find(|(_, i)| i.repo_url == repo)
                .map(|(_, i)| i.tag.clone()),
        )
    }

    /// The version of chart `name` (empty for OCI) of `repo` in the Freight `stage` holds.
    pub fn chart_version(&self, stage: &str, repo: &str, name: &str) -> Answer {
        let Some(current) = self.collection(stage) else {
            return Answer(None);
        };
        Answer(
            current
                .charts()
                .find(|(_, c)| c.repo_url == repo && c.name == name)
                .map(|(_, c)| c.version.clone()),
        )
    }

    /// The commit ID of git repository `repo` in the Freight `stage` holds.
    pub fn commit_id(&self, stage: &str, repo: &str) -> Answer {
        let Some(current) = self.collection(stage) else {
            return Answer(None);
        };
        Answer(
            current
                .commits()
                .find(|(_, c)| c.repo_url == repo)
                .map(|(_, c)| c.id.clone()),
        )
    }

    /// The finished promotions of `stage`, oldest first.
    pub fn promotions(&self, stage: &str) -> Vec<PromotionRecord> {
        self.state()
            .promotions
            .into_iter()
            .filter(|p| p.stage == stage)
            .collect()
    }

    /// The last verification of the collection `stage` holds.
    pub fn verification_of(&self, stage: &str) -> Option<VerificationInfo> {
        self.state()
            .stages
            .get(stage)?
            .freight_history
            .first()?
            .verification_history
            .first()
            .cloned()
    }

    /// Why `stage` does not hold the newest Freight: per requested Warehouse with newer
    /// Freight than the Stage holds, what it waits for (a running or queued promotion, a
    /// hold, a manual promotion, the next reconcile, a soak, an upstream verification, an
    /// upstream promotion or an approval). Empty when the Stage is up to date, or unknown.
    pub fn waiting(&self, stage: &str) -> Vec<Wait> {
        let state = self.state();
        let now = self.clock.now();
        let pipeline = self.controller.pipeline();
        let Ok(st) = pipeline.stage(stage) else {
            return Vec::new();
        };
        if st.is_control_flow() {
            return Vec::new();
        }
        let stage_state = state.stages.get(stage);
        let current = stage_state.and_then(|s| s.current());
        let mut out = Vec::new();
        for req in &st.spec.requested_freight {
            let origin = &req.origin;
            let held = current.and_then(|c| c.get(origin)).map(|r| &r.name);
            let held_record = held.and_then(|id| state.freight.get(id));
            let wait = |freight: String, reason: WaitReason| Wait {
                warehouse: origin.name.clone(),
                freight,
                reason,
            };
            let name_of = |id: &kargo_core::FreightId| match state.freight.get(id) {
                Some(r) => label(r),
                None => id.to_string(),
            };
            // A promotion changing this origin's Freight.
            if let Some(p) = stage_state.and_then(|s| {
                s.pending()
                    .find(|p| p.collection.get(origin).map(|r| &r.name) != held)
            }) {
                let id = p.collection.get(origin).map_or(&p.freight, |r| &r.name);
                out.push(wait(name_of(id), WaitReason::Promoting));
                continue;
            }
            let mut newer: Vec<&FreightRecord> = state
                .freight
                .values()
                .filter(|r| r.freight.origin == *origin)
                .filter(|r| held_record.is_none_or(|h| newest_first(r, h).is_lt()))
                .collect();
            newer.sort_by(|a, b| newest_first(a, b));
            let Some(newest) = newer.first() else {
                continue;
            };
            let candidate = pipeline
                .candidate(st, origin, &state, now)
                .filter(|c| newer.iter().any(|r| r.freight.name == *c));
            if let Some(hold) = stage_state.and_then(|s| {
                s.auto_promotion_holds
                    .values()
                    .find(|h| h.origin == *origin)
            }) {
                let freight = candidate.as_ref().map_or_else(|| label(newest), name_of);
                out.push(wait(
                    freight,
                    WaitReason::Held {
                        promotion: hold.promotion_name.clone(),
                    },
                ));
                continue;
            }
            if let Some(c) = &candidate {
                let reason = if pipeline.auto_promotion_enabled(st) {
                    WaitReason::NextReconcile
                } else {
                    WaitReason::ManualPromotion
                };
                out.push(wait(name_of(c), reason));
                continue;
            }
            // The unavailable newer Freight closest to being available, newest first.
            let mut best: Option<(u8, String, WaitReason)> = None;
            for r in newer {
                if Pipeline::is_available(st, r, now) {
                    continue;
                }
                let (rank, reason) = upstream_wait(req, r, &state, now);
                if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                    best = Some((rank, label(r), reason));
                }
            }
            if let Some((_, freight, reason)) = best {
                out.push(wait(freight, reason));
            }
        }
        out
    }

    fn reader(&self) -> Result<&FixtureReader, TestError> {
        self.fixture.as_ref().ok_or(TestError::NoFixture)
    }

    /// The text of `path` on the fixture repository's `main` now.
    pub fn pushed_file(&self, path: &str) -> Result<String, TestError> {
        self.reader()?.file(FIXTURE_BRANCH, path)
    }

    /// The text of `path` on `branch` of the fixture repository.
    pub fn pushed_file_on(&self, branch: &str, path: &str) -> Result<String, TestError> {
        self.reader()?.file(branch, path)
    }

    /// The messages of the commits pushed to the fixture repository's `main`, oldest
    /// first.
    pub fn commits(&self) -> Result<Vec<String>, TestError> {
        self.reader()?.commits(FIXTURE_BRANCH)
    }

    /// The messages of the commits on `branch` of the fixture repository after the
    /// fixture's own, oldest first.
    pub fn commits_on(&self, branch: &str) -> Result<Vec<String>, TestError> {
        self.reader()?.commits(branch)
    }
}

/// Why `record` is not available through `req`'s upstream Stages, with a rank: the
/// higher, the closer to available (3 soaking, 2 unverified, 1 not there).
fn upstream_wait(
    req: &FreightRequest,
    record: &FreightRecord,
    state: &ProjectState,
    now: DateTime<Utc>,
) -> (u8, WaitReason) {
    let soak = req
        .sources
        .required_soak_time
        .map(std::time::Duration::from)
        .unwrap_or_default();
    let mut per_stage: Vec<(u8, WaitReason)> = Vec::new();
    let mut missing = Vec::new();
    for up in &req.sources.stages {
        if record.status.verified_in.contains_key(up) {
            let soaked = Pipeline::longest_soak(record, up, now);
            if soaked >= soak {
                continue; // satisfied
            }
            per_stage.push((
                3,
                WaitReason::Soaking {
                    upstream: up.clone(),
                    remaining: soak - soaked,
                },
            ));
        } else if let Some(entry) = state
            .stages
            .get(up)
            .and_then(|s| s.freight_history.first())
            .filter(|h| h.collection.contains_freight(record.freight.name.as_str()))
        {
            let failed = entry.verification_history.first().is_some_and(|v| {
                matches!(
                    v.phase,
                    VerificationPhase::Failed
                        | VerificationPhase::Error
                        | VerificationPhase::Aborted
                )
            });
            per_stage.push((
                2,
                WaitReason::Unverified {
                    upstream: up.clone(),
                    failed,
                },
            ));
        } else {
            missing.push(up.clone());
        }
    }
    let any_missing = !missing.is_empty();
    let not_upstream = (1, WaitReason::NotUpstream { stages: missing });
    // Higher is closer to available: the rank, then the soak time left (less is closer).
    let key = |(rank, reason): &(u8, WaitReason)| {
        let left = match reason {
            WaitReason::Soaking { remaining, .. } => *remaining,
            _ => std::time::Duration::ZERO,
        };
        (*rank, std::cmp::Reverse(left))
    };
    match req.sources.availability_strategy {
        // The most advanced upstream Stage decides.
        FreightAvailabilityStrategy::OneOf => per_stage
            .into_iter()
            .max_by_key(key)
            .unwrap_or(not_upstream),
        // The least advanced one does.
        FreightAvailabilityStrategy::All if any_missing => not_upstream,
        FreightAvailabilityStrategy::All => per_stage
            .into_iter()
            .min_by_key(key)
            .unwrap_or(not_upstream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable_and_distinct() {
        let a = digest_of("ghcr.io/acme/app", "1.0.0");
        assert_eq!(a, digest_of("ghcr.io/acme/app", "1.0.0"));
        assert_ne!(a, digest_of("ghcr.io/acme/app", "1.0.1"));
        assert_eq!(a.len(), "sha256:".len() + 64);
    }

    #[test]
    fn waits_read_well() {
        let w = Wait {
            warehouse: "app".into(),
            freight: "neat-cheetah".into(),
            reason: WaitReason::Soaking {
                upstream: "staging".into(),
                remaining: std::time::Duration::from_secs(5400),
            },
        };
        assert_eq!(
            w.to_string(),
            "Freight neat-cheetah (app): soaking in staging, 1h30m left"
        );
        assert_eq!(span(std::time::Duration::from_secs(61)), "1m1s");
        assert_eq!(span(std::time::Duration::ZERO), "0s");
    }

    #[test]
    fn runs_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<PipelineRun>();
        shared::<TestVerifier>();
    }

    #[test]
    fn answers_compare_with_options() {
        let a = Answer(Some("1.2.3".into()));
        assert_eq!(a, Some("1.2.3"));
        assert_ne!(a, None);
        assert_eq!(Answer(None), None);
        assert_eq!(a.as_deref(), Some("1.2.3"));
        assert_eq!(format!("{a:?}"), "Some(\"1.2.3\")");
    }
}
