//! Two replicas on one PostgreSQL database (the real server `ci/test.sh` starts): a watch
//! on one replica's API shows what the other replica writes (the store's notifications
//! reach the live view), and an abort asked on one replica stops the promotion the other
//! one runs.
#![cfg(all(feature = "server", feature = "postgres"))]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{AbortOutcome, StateStore};
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::postgres::{PostgresOptions, PostgresStore};
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use support::sse::SseClient;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
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
  promotionTemplate:
    spec:
      steps:
      - as: wait
        uses: forever
"#;

/// A step that never finishes on its own.
struct Forever;

#[derive(serde::Deserialize)]
struct NoConfig {}

#[async_trait]
impl Step for Forever {
    const KIND: &'static str = "forever";
    type Config = NoConfig;

    async fn run(&self, _ctx: &StepContext, _cfg: NoConfig) -> Result<StepOutcome, StepError> {
        std::future::pending::<()>().await;
        Ok(StepOutcome::succeeded())
    }
}

async fn fresh_database(url: &str, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn replica(url: &str, memory: &MemorySource) -> Controller {
    let store: Arc<dyn StateStore> = Arc::new(
        PostgresStore::connect(
            url,
            PostgresOptions {
                pool_size: 2,
                connect_timeout: Duration::from_secs(5),
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    steps.register(Forever).unwrap();
    Controller::new(
        ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap(),
        "demo",
        sources,
        Runner::new(steps),
        store,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_hears_the_other_replica_and_an_abort_reaches_the_runner() {
    let Some(url) = kargo_core::testing::server_env(
        "a_watch_hears_the_other_replica_and_an_abort_reaches_the_runner",
        "TEST_POSTGRES_URL",
    ) else {
        return;
    };
    let url = fresh_database(&url, "kargo_server_replicas").await;
    let memory = MemorySource::new();
    memory.set_images(
        "ghcr.io/acme/app",
        vec![image("1.0.0", &format!("sha256:{:064}", 1))],
    );
    let a = replica(&url, &memory).await;
    let b = replica(&url, &memory).await;

    // Replica A serves the API and runs the service (and so the promotions).
    let tokens = format!(
        "tokens: [{{name: ada, sha256: {}, roles: [{{role: admin}}]}}]\n",
        hash_token("ada-t0ken")
    );
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(
        a.clone(),
        ServiceOptions::default().with_max_sleep(Duration::from_secs(3600)),
    );
    let handle = service.handle();
    let app = router(
        handle.clone(),
        WebhookRouter::from_receivers("demo", &[], &secrets),
        ServerOptions::default()
            .with_access(AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap()),
    );
    let addr = support::demo_steps::listen(app).await;
    // The live view has read the state before anything happens.
    let (status, _) = tokio::task::spawn_blocking(move || {
        support::http_request(
            addr,
            "GET",
            "/v1beta1/projects/demo/stages",
            &[("Authorization", "Bearer ada-t0ken")],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let mut watch = SseClient::connect(
        addr,
        "/v1beta1/projects/demo/watch?resourceVersion=0",
        &[("Authorization", "Bearer ada-t0ken")],
    )
    .await;
    assert_eq!(watch.status, 200);

    // Replica B discovers Freight: A's watch shows it (through PostgreSQL's notification).
    b.refresh("app").await.unwrap();
    let seen = watch
        .until(Duration::from_secs(20), |e| e.event == "Freight")
        .await;
    let freight = seen.last().unwrap().json()["object"]["freight"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // B asks for a promotion; A's service runs it (woken by the notification) and it
    // reaches its step that never ends.
    let request = b
        .request_promotion("dev", &freight, Some("bob".into()))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    watch
        .until(Duration::from_secs(20), |e| {
            e.event == "Promotion"
                && e.json()["name"] == request.name.as_str()
                && e.json()["object"]["steps"][0]["status"] == "Running"
        })
        .await;

    // B aborts it: A's runner stops it, and A's watch shows it Aborted by bob.
    let outcome = b.abort("dev", None, Some("bob".into())).await.unwrap();
    assert!(
        matches!(outcome, AbortOutcome::Requested { .. }),
        "{outcome:?}"
    );
    let ended = watch
        .until(Duration::from_secs(20), |e| {
            e.event == "Promotion"
                && e.json()["name"] == request.name.as_str()
                && e.json()["object"]["finished"] == true
        })
        .await;
    let ended = ended.last().unwrap().json();
    assert_eq!(ended["object"]["phase"], "Aborted");
    assert_eq!(ended["object"]["message"], "aborted by bob");
    let state = b.state().await.unwrap();
    assert!(state.stages["dev"].current_promotion.is_none());
    assert!(state.stages["dev"].abort_requested.is_none());
    let _ = stop.send(());
    run.await.unwrap();
}
