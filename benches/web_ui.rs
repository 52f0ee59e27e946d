//! Web UI and REST API benchmark: the server time of the pages and lists of a project of
//! 600 Stages and 5,000 Freight (`support/big_project.rs`), served over loopback by the
//! real router (`kargo::server::router`, a bearer token of an admin in an `AccessTable`)
//! in a tokio runtime kept across iterations. Each iteration is one request round trip on
//! a keep-alive HTTP/1.1 connection:
//!
//! - `pages::pipeline_graph`: `/ui/projects/bench` (all 600 cards);
//! - `pages::pipeline_list`: `/ui/projects/bench?view=list` (page 1, 100 rows);
//! - `pages::freight_timeline`: `/ui/projects/bench/freight` (page 1, 50 rows);
//! - `api::stages_limit_100`, `api::freight_limit_100`: the REST lists, first page;
//!
//! and, as baselines in the same run, `floor::healthz` (a request through the same server
//! that does nothing) and `floor::state_load` (`Controller::state()`: the copy of the
//! state every page and list starts with, no HTTP; divan drops the returned copy outside
//! the timing, `floor::state_load_and_drop` inside it). `parts::*` time pieces of the pages
//! in process, to show where the time goes: a Stage's summary for all 600 Stages, the
//! JSON of all Stages and of all Freight.
//!
//! Run: `cargo bench --bench web_ui` (`KARGO_BENCH_FREIGHT`, default 5000, sets the
//! number of Freight).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a benchmark

#[path = "support/big_project.rs"]
mod big_project;
#[path = "support/http_client.rs"]
mod http_client;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use big_project::PROJECT;
use divan::Bencher;
use http_client::Client;
use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{MemoryStore, StateStore as _};
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::ui::stage_summary::{NewestFreight, summarize};
use kargo::server::views::{resource, to_json};
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceHandle, ServiceOptions};
use kargo::sources::webhook::WebhookRouter;

fn main() {
    let f = &*FIXTURE;
    println!(
        "web_ui: {} Stages, {} Freight, served on {}",
        f.stages, f.freight, f.addr
    );
    divan::main();
}

const AUTH: &str = "Bearer bench-admin-t0ken";

/// A step that succeeds at once (the manifests need a registered step).
struct Noop;

#[derive(serde::Deserialize)]
struct NoConfig {}

#[async_trait]
impl Step for Noop {
    const KIND: &'static str = "noop";
    type Config = NoConfig;

    async fn run(&self, _ctx: &StepContext, _cfg: NoConfig) -> Result<StepOutcome, StepError> {
        Ok(StepOutcome::succeeded())
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    handle: ServiceHandle,
    stages: usize,
    freight: usize,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let freight: usize = std::env::var("KARGO_BENCH_FREIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let set = ManifestSet::from_yaml_str("bench.yaml", &big_project::manifests_yaml()).unwrap();
    let stages = set.stages(PROJECT).count();
    let state = big_project::state(freight, chrono::Utc::now());
    let (addr, handle) = runtime.block_on(async move {
        let store = Arc::new(MemoryStore::new());
        store.store(PROJECT, &state, 0).await.unwrap();
        let mut steps = StepRegistry::new();
        steps.register(Noop).unwrap();
        let controller = Controller::new(
            set,
            PROJECT,
            SourceRegistry::new(),
            Runner::new(steps),
            store,
        )
        .unwrap();
        let tokens = format!(
            "tokens:\n- {{name: ada, sha256: {}, roles: [{{role: admin, projects: [{PROJECT}]}}]}}\n",
            hash_token("bench-admin-t0ken"),
        );
        let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
        let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        // The service is not run: nothing changes the state while pages are measured.
        let service = Service::new(controller, ServiceOptions::default());
        let handle = service.handle();
        let app = router(
            handle.clone(),
            WebhookRouter::from_receivers(PROJECT, &[], &secrets),
            ServerOptions::default().with_access(access),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        std::mem::forget(service);
        (addr, handle)
    });
    let f = Fixture {
        runtime,
        addr,
        handle,
        stages,
        freight,
    };
    check(&f);
    f
});

fn count(body: &[u8], needle: &str) -> usize {
    String::from_utf8_lossy(body).matches(needle).count()
}

/// The answers have the content they are measured for.
fn check(f: &Fixture) {
    let mut c = Client::connect(f.addr, AUTH);
    let p = format!("/ui/projects/{PROJECT}");
    let (s, body) = c.get(&p);
    assert_eq!(s, 200);
    assert_eq!(count(&body, "class=\"card stage"), f.stages, "graph cards");
    assert!(count(&body, "class=\"line\">Freight <b") >= f.stages);
    let (s, body) = c.get(&format!("{p}?view=list"));
    assert_eq!(s, 200);
    assert_eq!(count(&body, "<tr id=\"stage-"), 100, "list rows");
    let (s, body) = c.get(&format!("{p}/freight"));
    assert_eq!(s, 200);
    assert_eq!(count(&body, "<tr id=\"freight-"), 50, "timeline rows");
    assert!(count(&body, "</td><td>dev-") > 0, "currently_in shown");
    for list in ["stages", "freight"] {
        let (s, body) = c.get(&format!("/v1beta1/projects/{PROJECT}/{list}?limit=100"));
        assert_eq!(s, 200);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["items"].as_array().unwrap().len(), 100, "{list}");
    }
    for (path, _) in ROUTES {
        let (s, body) = c.get(&path.replace("{p}", PROJECT));
        eprintln!("{path}: {s}, {} bytes", body.len());
    }
}

const ROUTES: [(&str, &str); 6] = [
    ("/healthz", "healthz"),
    ("/ui/projects/{p}", "pipeline_graph"),
    ("/ui/projects/{p}?view=list", "pipeline_list"),
    ("/ui/projects/{p}/freight", "freight_timeline"),
    ("/v1beta1/projects/{p}/stages?limit=100", "stages_limit_100"),
    (
        "/v1beta1/projects/{p}/freight?limit=100",
        "freight_limit_100",
    ),
];

fn get(bencher: Bencher<'_, '_>, path: &str) {
    let f = &*FIXTURE;
    let path = path.replace("{p}", PROJECT);
    let mut c = Client::connect(f.addr, AUTH);
    bencher.bench_local(|| {
        let (status, body) = c.get(&path);
        assert_eq!(status, 200);
        black_box(body)
    });
}

/// The baselines: what every request and every page pays before its own work.
mod floor {
    use super::*;

    /// `GET /healthz` through the same server and connection: the floor of a request.
    #[divan::bench]
    fn healthz(b: Bencher<'_, '_>) {
        get(b, ROUTES[0].0);
    }

    /// `Controller::state()` in process: the copy of the state each page starts with.
    #[divan::bench]
    fn state_load(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        b.bench_local(|| black_box(f.runtime.block_on(c.state()).unwrap()));
    }

    /// The same with the copy dropped inside the timing, as a request handler does.
    #[divan::bench]
    fn state_load_and_drop(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        b.bench_local(|| {
            let state = f.runtime.block_on(c.state()).unwrap();
            black_box(&state);
            drop(state);
        });
    }
}

/// The UI pages.
mod pages {
    use super::*;

    #[divan::bench(sample_count = 30)]
    fn pipeline_graph(b: Bencher<'_, '_>) {
        get(b, ROUTES[1].0);
    }

    #[divan::bench(sample_count = 30)]
    fn pipeline_list(b: Bencher<'_, '_>) {
        get(b, ROUTES[2].0);
    }

    #[divan::bench(sample_count = 30)]
    fn freight_timeline(b: Bencher<'_, '_>) {
        get(b, ROUTES[3].0);
    }
}

/// The REST API lists.
mod api {
    use super::*;

    #[divan::bench(sample_count = 30)]
    fn stages_limit_100(b: Bencher<'_, '_>) {
        get(b, ROUTES[4].0);
    }

    #[divan::bench(sample_count = 30)]
    fn freight_limit_100(b: Bencher<'_, '_>) {
        get(b, ROUTES[5].0);
    }
}

/// Pieces of the pages, in process, on a state loaded once.
mod parts {
    use super::*;

    fn loaded() -> kargo::core::pipeline::ProjectState {
        let f = &*FIXTURE;
        f.runtime.block_on(f.handle.controller().state()).unwrap()
    }

    /// The summary of every Stage (the graph's 600 cards), with its per-page indexes.
    #[divan::bench(sample_count = 30)]
    fn summarize_600_stages(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        let state = loaded();
        let stages: Vec<_> = c.manifests().stages(PROJECT).collect();
        b.bench_local(|| {
            let now = c.now();
            let pipeline = c.pipeline();
            let newest = NewestFreight::of(&state);
            let soaks = pipeline.soak_deadlines(&state, now);
            for s in &stages {
                black_box(summarize(&pipeline, s, &state, &newest, &soaks, now));
            }
        });
    }

    /// The per-page indexes alone: the newest Freight of each origin and the soak
    /// deadlines.
    #[divan::bench(sample_count = 30)]
    fn page_indexes(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        let state = loaded();
        b.bench_local(|| {
            let now = c.now();
            let pipeline = c.pipeline();
            black_box(NewestFreight::of(&state));
            black_box(pipeline.soak_deadlines(&state, now));
        });
    }

    /// The JSON of every Stage (what the Stage list builds before it pages).
    #[divan::bench(sample_count = 30)]
    fn stage_json_600(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        let state = loaded();
        b.bench_local(|| {
            for s in c.manifests().stages(PROJECT) {
                black_box(resource(
                    &s.metadata.name,
                    &s.spec,
                    &state.stages.get(&s.metadata.name),
                ));
            }
        });
    }

    /// The JSON of the first 100 Stages by name only (what paging before building would
    /// cost).
    #[divan::bench(sample_count = 30)]
    fn stage_json_100(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        let state = loaded();
        let mut stages: Vec<_> = c.manifests().stages(PROJECT).collect();
        stages.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        b.bench_local(|| {
            for s in stages.iter().take(100) {
                black_box(resource(
                    &s.metadata.name,
                    &s.spec,
                    &state.stages.get(&s.metadata.name),
                ));
            }
        });
    }

    /// Writing one page of 100 Stages' JSON as text (the response body).
    #[divan::bench(sample_count = 30)]
    fn stage_page_to_text(b: Bencher<'_, '_>) {
        let f = &*FIXTURE;
        let c = f.handle.controller();
        let state = loaded();
        let items: Vec<_> = c
            .manifests()
            .stages(PROJECT)
            .take(100)
            .map(|s| {
                resource(
                    &s.metadata.name,
                    &s.spec,
                    &state.stages.get(&s.metadata.name),
                )
            })
            .collect();
        let page = serde_json::json!({ "items": items });
        b.bench_local(|| black_box(page.to_string()));
    }

    /// The state's copy, by part: the 5,000 Freight records.
    #[divan::bench(sample_count = 30)]
    fn clone_freight(b: Bencher<'_, '_>) {
        let state = loaded();
        b.bench_local(|| black_box(state.freight.clone()));
    }

    /// The state's copy, by part: the 600 Stages' states (ten history entries each).
    #[divan::bench(sample_count = 30)]
    fn clone_stages(b: Bencher<'_, '_>) {
        let state = loaded();
        b.bench_local(|| black_box(state.stages.clone()));
    }

    /// The JSON of every Freight (what the Freight list builds before it pages).
    #[divan::bench(sample_count = 30)]
    fn freight_json_all(b: Bencher<'_, '_>) {
        let state = loaded();
        b.bench_local(|| {
            for r in state.freight.values() {
                black_box(to_json(r));
            }
        });
    }
}
