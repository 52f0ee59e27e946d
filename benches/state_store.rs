//! State store benchmark: a project with 10,000 Freight and 100 Stages, in each backend,
//! measured side by side in one run:
//!
//! - **step bookkeeping**: the write a promotion makes after every step (one promotion's
//!   progress, under its Stage lease: [`StateStore::put_progress`]);
//! - **Freight available to one Stage**: read the state and list what `s0` (fed by the
//!   Warehouse: all of it) may receive (the CLI's `get freight --stage`);
//! - **read + list for all 100 Stages**: a UI's pipeline page;
//! - **peak memory of a reader**: a child process that opens the store, reads the state and
//!   lists for all 100 Stages, minus one that only opens the store (`VmHWM`);
//! - **seed**: writing the whole state once.
//!
//! Backends: the memory store (one document in memory), a baseline written here (the file
//! store as it was: one JSON document per project, rewritten whole on every write), the
//! file store (a snapshot per project and a journal of the writes since) and PostgreSQL (a row per Freight, Stage, promotion and
//! progress record), when `TEST_POSTGRES_URL` names a server. Run it with the servers:
//! `ci/test.sh --run cargo bench --bench state_store` (`KARGO_BENCH_FREIGHT`, default
//! 10000, sets the number of Freight).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a benchmark

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kargo::core::freight::{Freight, FreightCollection, FreightOrigin, Image};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{
    FileStore, MemoryStore, Pipeline, ProjectState, StageFreight, StateError, StateStore,
    VerifiedStage, record_freight,
};
use kargo::core::runner::{PromotionProgress, StepExecutionStatus, StepRecord};

const STAGES: usize = 100;
const PROJECT: &str = "bench";
/// Timed repetitions of each operation (the median and the slowest are reported).
const RUNS: usize = 15;

/// The baseline: the file store as it was before its journal, one JSON document per
/// project read, changed and rewritten whole (fsync, rename) on every write, with the
/// trait's default leases, fencing and `put_progress` (a whole-state update).
struct SingleDocumentFile {
    dir: std::path::PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    revision: u64,
    state: ProjectState,
}

impl SingleDocumentFile {
    fn path(&self, project: &str) -> std::path::PathBuf {
        self.dir.join(format!("{project}.json"))
    }
}

#[async_trait::async_trait]
impl StateStore for SingleDocumentFile {
    async fn load(&self, project: &str) -> Result<(ProjectState, u64), StateError> {
        match std::fs::read(self.path(project)) {
            Ok(bytes) => {
                let env: Envelope = serde_json::from_slice(&bytes)
                    .map_err(|e| StateError::Aborted(e.to_string()))?;
                Ok((env.state, env.revision))
            }
            Err(_) => Ok((ProjectState::default(), 0)),
        }
    }

    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: u64,
    ) -> Result<u64, StateError> {
        let (_, actual) = self.load(project).await?;
        if actual != expected {
            return Err(StateError::Conflict {
                project: project.to_owned(),
                expected,
                actual,
            });
        }
        let bytes = serde_json::to_vec_pretty(&Envelope {
            revision: actual + 1,
            state: state.clone(),
        })
        .map_err(|e| StateError::Aborted(e.to_string()))?;
        let tmp = self.dir.join(format!("{project}.json.tmp"));
        let io = |e: std::io::Error| StateError::Aborted(e.to_string());
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, self.path(project)).map_err(io)?;
        Ok(actual + 1)
    }
}

fn manifests() -> ManifestSet {
    let mut yaml = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: bench}\n---\n\
         apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: app, namespace: bench}\n\
         spec:\n  subscriptions:\n  - image: {repoURL: registry.example/app}\n",
    );
    // Ten chains of ten Stages: the first of each takes Freight from the Warehouse, the
    // others from the Stage before them.
    for i in 0..STAGES {
        let source = if i % 10 == 0 {
            "sources: {direct: true}".to_owned()
        } else {
            format!("sources: {{stages: [s{}]}}", i - 1)
        };
        yaml.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\n\
             metadata: {{name: s{i}, namespace: bench}}\nspec:\n  requestedFreight:\n\
             \x20 - origin: {{kind: Warehouse, name: app}}\n    {source}\n  promotionTemplate:\n\
             \x20   spec:\n      steps:\n      - uses: fail\n        config: {{message: x}}\n"
        ));
    }
    ManifestSet::from_yaml_str("bench.yaml", &yaml).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

/// 10,000 Freight (the newest 50 verified in every Stage), each Stage holding the newest.
fn state(freight: usize) -> ProjectState {
    let mut state = ProjectState::default();
    let mut ids = Vec::new();
    for n in 0..freight {
        let mut f = Freight::new(
            FreightOrigin::warehouse("app"),
            vec![],
            vec![Image {
                repo_url: "registry.example/app".into(),
                tag: format!("1.{}.{}", n / 1000, n % 1000),
                digest: format!("sha256:{n:064x}"),
                annotations: BTreeMap::new(),
                subscription_name: None,
            }],
            vec![],
            vec![],
        );
        f.discovered_at = Some(at(n as i64 * 60));
        f.alias = Some(format!("alias-{n}"));
        ids.push(f.name.clone());
        record_freight(&mut state, f);
    }
    let newest: Vec<_> = ids.iter().rev().take(50).cloned().collect();
    for i in 0..STAGES {
        let stage = format!("s{i}");
        for id in &newest {
            if let Some(rec) = state.freight.get_mut(id) {
                rec.status.verified_in.insert(
                    stage.clone(),
                    VerifiedStage {
                        verified_at: at(1),
                        longest_soak_seconds: 0,
                    },
                );
            }
        }
        let collection = {
            let mut c = FreightCollection::default();
            if let Some(rec) = state.freight.get(&newest[0]) {
                c.insert((&rec.freight).into());
            }
            c
        };
        state
            .stages
            .entry(stage.clone())
            .or_default()
            .freight_history
            .push(StageFreight {
                collection,
                promoted_at: at(2),
                promotion: format!("{stage}.p0"),
                verification_history: Vec::new(),
            });
    }
    state
}

fn progress(steps: usize) -> PromotionProgress {
    PromotionProgress {
        steps: (0..steps)
            .map(|i| StepRecord {
                alias: format!("step-{i}"),
                uses: "yaml-update".into(),
                status: StepExecutionStatus::Succeeded,
                message: None,
                started_at: Some(at(10)),
                finished_at: Some(at(11)),
                error_count: 0,
                attempts: 1,
                continue_on_error: false,
                outputs: Default::default(),
            })
            .collect(),
        state: BTreeMap::new(),
        started_at: at(10),
        updated_at: at(11),
    }
}

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn median_max(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    (d[d.len() / 2], d[d.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Row {
    backend: &'static str,
    seed: Duration,
    step: (Duration, Duration),
    list: (Duration, Duration),
    listed: usize,
    list_all: (Duration, Duration),
}

async fn measure(
    backend: &'static str,
    store: Arc<dyn StateStore>,
    state: &ProjectState,
    manifests: &ManifestSet,
) -> Row {
    let t = Instant::now();
    store.store(PROJECT, state, 0).await.unwrap();
    let seed = t.elapsed();
    let lease = store
        .acquire_lease(PROJECT, "s0", Duration::from_secs(600))
        .await
        .unwrap()
        .expect("the lease is free");
    let fence = lease.fence().cloned().unwrap();
    let mut step = Vec::new();
    for i in 0..RUNS {
        let p = progress(i % 8 + 1);
        let t = Instant::now();
        store.put_progress(&fence, "s0.p1", Some(&p)).await.unwrap();
        step.push(t.elapsed());
    }
    let stage = manifests
        .stages(PROJECT)
        .find(|s| s.metadata.name == "s0")
        .unwrap();
    let now = at(10_000_000);
    let mut list = Vec::new();
    let mut listed = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let (s, _) = store.load(PROJECT).await.unwrap();
        listed = Pipeline::available_to(stage, &s, now).len();
        list.push(t.elapsed());
    }
    // A UI's pipeline page: one read, then what each of the 100 Stages may receive.
    let mut list_all = Vec::new();
    for _ in 0..RUNS.min(5) {
        let t = Instant::now();
        let (s, _) = store.load(PROJECT).await.unwrap();
        let total: usize = manifests
            .stages(PROJECT)
            .map(|st| Pipeline::available_to(st, &s, now).len())
            .sum();
        std::hint::black_box(total);
        list_all.push(t.elapsed());
    }
    drop(lease);
    Row {
        backend,
        seed,
        step: median_max(step),
        list: median_max(list),
        listed,
        list_all: median_max(list_all),
    }
}

/// The environment variable that makes this binary a child measuring its own memory:
/// `file:<dir>` or `postgres:<url>`, with `+read` to read the state and list for every
/// Stage (without: only open the store, the baseline).
const CHILD: &str = "KARGO_BENCH_STATE_CHILD";

/// In a child: opens the store, reads and lists if asked, prints `VmHWM` in KiB.
fn child(spec: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (spec, read) = match spec.strip_suffix("+read") {
        Some(s) => (s, true),
        None => (spec, false),
    };
    rt.block_on(async {
        let store: Arc<dyn StateStore> = match spec.split_once(':') {
            Some(("file", dir)) => Arc::new(FileStore::open(dir).unwrap()),
            Some(("postgres", url)) => Arc::new(
                kargo::postgres::PostgresStore::connect(url, Default::default())
                    .await
                    .unwrap(),
            ),
            _ => panic!("{CHILD}={spec}: file:<dir> or postgres:<url>"),
        };
        let manifests = manifests();
        if read {
            let (s, _) = store.load(PROJECT).await.unwrap();
            let now = at(10_000_000);
            let total: usize = manifests
                .stages(PROJECT)
                .map(|st| Pipeline::available_to(st, &s, now).len())
                .sum();
            std::hint::black_box(total);
        }
    });
    println!("{}", kib("VmHWM:"));
}

/// The peak resident memory of a child process that reads the state in `spec` and lists
/// for every Stage, minus that of one that only opens the store (MiB).
fn child_peak(spec: &str) -> f64 {
    let run = |spec: String| -> u64 {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(CHILD, spec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let base = run(spec.to_owned());
    let read = run(format!("{spec}+read"));
    read.saturating_sub(base) as f64 / 1024.0
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let freight: usize = std::env::var("KARGO_BENCH_FREIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let manifests = manifests();
    let state = state(freight);
    let doc = serde_json::to_vec(&state).unwrap().len();
    println!(
        "state_store: {freight} Freight, {STAGES} Stages; the state is {:.1} MiB as one JSON document",
        doc as f64 / 1048576.0
    );
    let dir = tempfile::tempdir().unwrap();
    let single_dir = tempfile::tempdir().unwrap();
    let file_spec = format!("file:{}", dir.path().display());
    // (row, how to measure a reader's memory in a child process)
    let mut rows: Vec<(Row, Option<String>)> = Vec::new();
    rt.block_on(async {
        let memory = Arc::new(MemoryStore::new());
        rows.push((measure("memory (one document)", memory, &state, &manifests).await, None));
        let single = Arc::new(SingleDocumentFile {
            dir: single_dir.path().to_owned(),
        });
        rows.push((
            measure(
                "baseline: file, one document rewritten per write (the file store before its journal)",
                single,
                &state,
                &manifests,
            )
            .await,
            None,
        ));
        let file = Arc::new(FileStore::open(dir.path()).unwrap());
        rows.push((
            measure("file (snapshot + journal)", file, &state, &manifests)
                .await,
            Some(file_spec.clone()),
        ));
        match std::env::var("TEST_POSTGRES_URL") {
            Ok(url) => {
                let db = fresh_database(&url).await;
                let store = kargo::postgres::PostgresStore::connect(&db, Default::default())
                    .await
                    .unwrap();
                let row = measure("PostgreSQL (a row per record)", Arc::new(store), &state, &manifests)
                    .await;
                rows.push((row, Some(format!("postgres:{db}"))));
            }
            Err(_) => eprintln!(
                "state_store: TEST_POSTGRES_URL is not set: no PostgreSQL row (run with `ci/test.sh --run cargo bench --bench state_store`)"
            ),
        }
    });
    drop(rt);
    println!();
    println!(
        "| backend | step bookkeeping (median / max) | Freight available to one Stage (median / max) | read + list for all 100 Stages (median / max) | peak memory of a reader | seed (whole state) |"
    );
    println!("|---|---|---|---|---|---|");
    for (r, spec) in &rows {
        let peak = spec
            .as_deref()
            .map_or_else(|| "n/a".to_owned(), |s| format!("{:.1} MiB", child_peak(s)));
        println!(
            "| {} | {} / {} | {} / {} ({} Freight) | {} / {} | {peak} | {} |",
            r.backend,
            ms(r.step.0),
            ms(r.step.1),
            ms(r.list.0),
            ms(r.list.1),
            r.listed,
            ms(r.list_all.0),
            ms(r.list_all.1),
            ms(r.seed)
        );
    }
}

/// A new, empty database `kargo_bench` on the cluster at `url`; its URL.
async fn fresh_database(url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("DROP DATABASE IF EXISTS kargo_bench WITH (FORCE)")
        .await
        .unwrap();
    client
        .batch_execute("CREATE DATABASE kargo_bench")
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/kargo_bench")
}
