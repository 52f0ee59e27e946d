//! The REST API live: `?watch=true` streams (server-sent events) that follow a promotion
//! step by step and resume from `Last-Event-ID`; abort (queued and running), hold and
//! resume auto-promotion, re-verify, each recorded with its actor, refused with 403 for
//! a viewer and 409 naming the rule.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kargo::Controller;
use kargo::core::freight::FreightCollection;
use kargo::core::loader::ManifestSet;
use kargo::core::model::Stage;
use kargo::core::pipeline::{MemoryStore, VerificationInfo, VerificationPhase, Verifier};
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use serde_json::Value as Json;
use support::demo_steps::{Echo, listen};
use support::sse::{SseClient, SseEvent};

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: demo, namespace: demo}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  interval: 24h
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  verification:
    analysisTemplates: [{name: smoke}]
  promotionTemplate:
    spec:
      steps:
      - as: render
        uses: echo
        config: {tag: "${{ imageFrom('ghcr.io/acme/app').Tag }}"}
      - as: wait
        uses: gate
"#;

/// A step that waits until the test lets one run through.
#[derive(Clone)]
struct Gate(Arc<tokio::sync::Semaphore>);

#[derive(serde::Deserialize)]
struct GateConfig {}

#[async_trait]
impl Step for Gate {
    const KIND: &'static str = "gate";
    type Config = GateConfig;

    async fn run(&self, _ctx: &StepContext, _cfg: GateConfig) -> Result<StepOutcome, StepError> {
        let permit = self
            .0
            .acquire()
            .await
            .map_err(|e| StepError::terminal(e.to_string()))?;
        permit.forget();
        Ok(StepOutcome::succeeded())
    }
}

/// Counts its verifications; always successful.
struct Counting(Arc<AtomicUsize>);

#[async_trait]
impl Verifier for Counting {
    async fn verify(&self, _stage: &Stage, _c: &FreightCollection) -> VerificationInfo {
        self.0.fetch_add(1, Ordering::SeqCst);
        VerificationInfo {
            phase: VerificationPhase::Successful,
            message: "smoke ok".into(),
            finished_at: chrono::Utc::now(),
        }
    }
}

struct Fixture {
    addr: std::net::SocketAddr,
    handle: kargo::service::ServiceHandle,
    memory: MemorySource,
    gate: Gate,
    verified: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const ADA: &str = "Bearer ada-t0ken";
const VERA: &str = "Bearer vera-t0ken";

async fn fixture() -> Fixture {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kargo=debug")
        .try_init();
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    let memory = MemorySource::new();
    memory.set_images(
        "ghcr.io/acme/app",
        vec![image("1.0.0", &format!("sha256:{:064}", 1))],
    );
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let gate = Gate(Arc::new(tokio::sync::Semaphore::new(0)));
    let mut steps = StepRegistry::new();
    steps.register(gate.clone()).unwrap();
    steps.register(Echo).unwrap();
    let verified = Arc::new(AtomicUsize::new(0));
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_verifier(Arc::new(Counting(verified.clone())));
    let tokens = format!(
        "tokens:\n\
         - {{name: ada, sha256: {}, roles: [{{role: admin, projects: [demo]}}]}}\n\
         - {{name: vera, sha256: {}, roles: [{{role: viewer, projects: [demo]}}]}}\n",
        hash_token("ada-t0ken"),
        hash_token("vera-t0ken"),
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(controller, ServiceOptions::default());
    let handle = service.handle();
    let app = router(
        handle.clone(),
        WebhookRouter::from_receivers("demo", &[], &secrets),
        ServerOptions::default().with_access(access),
    );
    let addr = listen(app).await;
    // A list before the service starts: the live view has read the state, and every
    // change from here on has an event (`resourceVersion=0` replays them all).
    let (status, _) = tokio::task::spawn_blocking(move || {
        support::http_request(
            addr,
            "GET",
            "/v1beta1/projects/demo/stages",
            &[("Authorization", ADA)],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    Fixture {
        addr,
        handle,
        memory,
        gate,
        verified,
        _stop: stop,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: &'static str,
        path: &str,
        auth: &'static str,
        body: &str,
    ) -> (u16, Json) {
        let (addr, path, body) = (self.addr, path.to_owned(), body.to_owned());
        tokio::task::spawn_blocking(move || {
            let (status, text) = support::http_request(
                addr,
                method,
                &path,
                &[
                    ("Authorization", auth),
                    ("Content-Type", "application/json"),
                ],
                &body,
            );
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
            (status, json)
        })
        .await
        .unwrap()
    }

    async fn watch(&self, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut all = vec![("Authorization", ADA)];
        all.extend_from_slice(headers);
        let client = SseClient::connect(self.addr, path, &all).await;
        assert_eq!(client.status, 200, "watch {path}");
        client
    }
}

fn promotion_event<'e>(e: &'e SseEvent, name: &str) -> Option<Json> {
    let _: &'e SseEvent = e;
    (e.event == "Promotion")
        .then(|| e.json())
        .filter(|j| j["name"] == name)
}

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_follows_a_promotion_step_by_step_and_resumes_from_last_event_id() {
    let f = fixture().await;
    // The first pass finds Freight and auto-promotes dev, which waits at the gate.
    // Every change since the service started (the fixture listed before it).
    let version = "0";
    let mut all = f
        .watch(
            &format!("/v1beta1/projects/demo/watch?resourceVersion={version}"),
            &[],
        )
        .await;
    // Whatever happened since the list: the auto-promotion reaches the gate.
    let seen = all
        .until(LIMIT, |e| {
            e.event == "Promotion" && e.json()["object"]["steps"][1]["status"] == "Running"
        })
        .await;
    let promotion = seen.last().unwrap().json()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids: Vec<u64> = seen
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids go up: {ids:?}");
    assert!(
        seen.iter()
            .any(|e| e.event == "Freight" && e.json()["type"] == "ADDED"),
        "the new Freight was announced"
    );
    let running = seen.last().unwrap().json();
    assert_eq!(running["object"]["phase"], "Running");
    assert_eq!(running["object"]["steps"][0]["status"], "Succeeded");
    assert_eq!(
        running["object"]["steps"][0]["config"]["tag"],
        "${{ imageFrom('ghcr.io/acme/app').Tag }}"
    );

    // A second client on the one promotion, from the list's version.
    let mut one = f
        .watch(
            &format!(
                "/v1beta1/projects/demo/promotions/{promotion}?watch=true&resourceVersion={version}"
            ),
            &[],
        )
        .await;
    f.gate.0.add_permits(1);
    let done = |e: &SseEvent| {
        promotion_event(e, &promotion).is_some_and(|j| j["object"]["finished"] == true)
    };
    let tail = all.until(LIMIT, done).await;
    let finished = tail.last().unwrap().json();
    assert_eq!(finished["object"]["phase"], "Succeeded");
    assert!(
        finished["object"]["steps"][1]["durationMs"]
            .as_i64()
            .unwrap()
            >= 0
    );
    let only = one.until(LIMIT, done).await;
    assert!(
        only.iter()
            .all(|e| e.event == "Promotion" && e.json()["name"] == promotion.as_str()),
        "a promotion's watch shows only that promotion"
    );
    // The read agrees with the last event.
    let (status, read) = f
        .call(
            "GET",
            &format!("/v1beta1/projects/demo/promotions/{promotion}"),
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(read, finished["object"]);

    // Reconnecting with Last-Event-ID replays exactly what came after it.
    let from = seen[0].id.clone().unwrap();
    let mut again = f
        .watch(
            "/v1beta1/projects/demo/watch",
            &[("Last-Event-ID", from.as_str())],
        )
        .await;
    let replay = again.until(LIMIT, done).await;
    let replay_ids: Vec<&str> = replay.iter().map(|e| e.id.as_deref().unwrap()).collect();
    let original: Vec<&str> = seen[1..]
        .iter()
        .chain(tail.iter())
        .map(|e| e.id.as_deref().unwrap())
        .collect();
    assert_eq!(replay_ids, original, "nothing lost, nothing twice");

    // A viewer may watch; no token may not.
    let viewer = SseClient::connect(
        f.addr,
        "/v1beta1/projects/demo/watch",
        &[("Authorization", VERA)],
    )
    .await;
    assert_eq!(viewer.status, 200);
    let anonymous = SseClient::connect(f.addr, "/v1beta1/projects/demo/watch", &[]).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_hold_resume_and_reverify_through_the_api() {
    let f = fixture().await;
    let mut all = f
        .watch(
            "/v1beta1/projects/demo/watch?kinds=Promotion,Stage&resourceVersion=0",
            &[],
        )
        .await;
    // The auto-promotion of 1.0.0 runs into the gate.
    let seen = all
        .until(LIMIT, |e| {
            e.event == "Promotion" && e.json()["object"]["phase"] == "Running"
        })
        .await;
    let first = seen.last().unwrap().json()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, freight) = f
        .call("GET", "/v1beta1/projects/demo/freight", ADA, "")
        .await;
    assert_eq!(status, 200);
    let alias = freight["items"][0]["freight"]["alias"]
        .as_str()
        .unwrap()
        .to_owned();

    // A second, manual promotion queues behind it; aborting it dequeues it at once.
    let (status, queued) = f
        .call(
            "POST",
            "/v1beta1/projects/demo/stages/dev/promotions",
            ADA,
            &format!(r#"{{"freight": "{alias}"}}"#),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let second = queued["promotion"].as_str().unwrap().to_owned();
    let (status, body) = f
        .call(
            "POST",
            &format!("/v1beta1/projects/demo/promotions/{second}/abort"),
            VERA,
            "",
        )
        .await;
    assert_eq!(status, 403, "a viewer may not abort: {body}");
    let (status, body) = f
        .call(
            "POST",
            &format!("/v1beta1/projects/demo/promotions/{second}/abort"),
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "dequeued");
    let (_, read) = f
        .call(
            "GET",
            &format!("/v1beta1/projects/demo/promotions/{second}"),
            ADA,
            "",
        )
        .await;
    assert_eq!(read["phase"], "Aborted");
    assert_eq!(read["actor"], "ada");

    // Aborting the running one stops it at the gate; it ends Aborted, naming who.
    let (status, body) = f
        .call(
            "POST",
            &format!("/v1beta1/projects/demo/promotions/{first}/abort"),
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "aborting");
    let ended = all
        .until(LIMIT, |e| {
            promotion_event(e, &first).is_some_and(|j| j["object"]["finished"] == true)
        })
        .await;
    let ended = ended.last().unwrap().json();
    assert_eq!(ended["object"]["phase"], "Aborted");
    assert_eq!(ended["object"]["message"], "aborted by ada");
    let (status, body) = f
        .call(
            "POST",
            &format!("/v1beta1/projects/demo/promotions/{first}/abort"),
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 409, "a finished promotion: {body}");
    let (status, _) = f
        .call(
            "POST",
            "/v1beta1/projects/demo/promotions/nope/abort",
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 404);

    // Nothing held yet: holding needs Freight in the Stage.
    let (status, body) = f
        .call("POST", "/v1beta1/projects/demo/stages/dev/hold", ADA, "")
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("holds no Freight"),
        "{body}"
    );
    let (status, body) = f
        .call(
            "POST",
            "/v1beta1/projects/demo/stages/dev/reverify",
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Promote it for real, then hold: a newer build does not move dev.
    let (status, body) = f
        .call(
            "POST",
            "/v1beta1/projects/demo/stages/dev/promotions",
            ADA,
            &format!(r#"{{"freight": "{alias}"}}"#),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let third = body["promotion"].as_str().unwrap().to_owned();
    f.gate.0.add_permits(1);
    all.until(LIMIT, |e| {
        promotion_event(e, &third).is_some_and(|j| j["object"]["phase"] == "Succeeded")
    })
    .await;
    let (status, body) = f
        .call("POST", "/v1beta1/projects/demo/stages/dev/hold", VERA, "")
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = f
        .call("POST", "/v1beta1/projects/demo/stages/dev/hold", ADA, "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"][0], "Warehouse/app");
    let (_, stage) = f
        .call("GET", "/v1beta1/projects/demo/stages/dev", ADA, "")
        .await;
    assert_eq!(
        stage["status"]["autoPromotionHolds"]["Warehouse/app"]["actor"],
        "ada"
    );

    f.memory.push_image(
        "ghcr.io/acme/app",
        image("1.1.0", &format!("sha256:{:064}", 2)),
    );
    assert!(f.handle.refresh("app", "test"));
    support::demo_steps::until_freight(&f.handle, 2).await;
    let state = f.handle.controller().state().await.unwrap();
    assert_eq!(state.freight.len(), 2, "the new build is Freight");
    assert!(
        state.stages["dev"].pending().next().is_none(),
        "held: no auto-promotion of the new build"
    );

    // Resume: the new build is auto-promoted.
    let (status, body) = f
        .call("POST", "/v1beta1/projects/demo/stages/dev/resume", ADA, "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"], 1);
    all.until(LIMIT, |e| {
        e.event == "Promotion" && e.json()["object"]["phase"] == "Running"
    })
    .await;
    f.gate.0.add_permits(1);
    all.until(LIMIT, |e| {
        e.event == "Promotion" && e.json()["object"]["phase"] == "Succeeded"
    })
    .await;

    // Re-verify: 202, then the Stage's verification history grows.
    let before = f.verified.load(Ordering::SeqCst);
    let (status, body) = f
        .call(
            "POST",
            "/v1beta1/projects/demo/stages/dev/reverify",
            VERA,
            "",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = f
        .call(
            "POST",
            "/v1beta1/projects/demo/stages/dev/reverify",
            ADA,
            "",
        )
        .await;
    assert_eq!(status, 202, "{body}");
    all.until(LIMIT, |e| {
        e.event == "Stage"
            && e.json()["object"]["status"]["freightHistory"][0]["verificationHistory"]
                .as_array()
                .is_some_and(|h| h.len() >= 2)
    })
    .await;
    assert_eq!(f.verified.load(Ordering::SeqCst), before + 1);
    let (status, _) = f
        .call("POST", "/v1beta1/projects/demo/stages/qa/reverify", ADA, "")
        .await;
    assert_eq!(status, 404);
}
