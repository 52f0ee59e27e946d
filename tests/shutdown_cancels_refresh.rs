//! A service shutting down cancels its running Warehouse refreshes: a chart repository
//! that accepts the connection and then trickles `index.yaml` one byte at a time (which no
//! read timeout catches) does not hold the shutdown, and the refresh ends as cancelled.
#![cfg(feature = "chart")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::schedule::DueReason;
use kargo::service::{Service, ServiceOptions};
use kargo::sources::chart::ChartSource;

#[path = "../kargo-sources/tests/support/stalling_http.rs"]
mod stalling_http;
use stalling_http::{Stall, stalling_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_refresh_stuck_on_a_slow_chart_repository() {
    let (base, mut accepted) = stalling_server(Stall::Trickle).await;
    let url = format!("{base}/charts");
    let manifests = format!(
        r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {{name: demo}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {{name: charts, namespace: demo}}
spec:
  subscriptions:
  - chart: {{repoURL: "{url}", name: app}}
"#
    );
    let set = ManifestSet::from_yaml_str("demo.yaml", &manifests).unwrap();
    let mut sources = SourceRegistry::new();
    sources.register(ChartSource::new()).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));

    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("the refresh never asked the repository for index.yaml")
        .unwrap();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the service did not stop within 10 s: the refresh held the shutdown")
        .unwrap();
    assert!(handle.status().stopped);
    // The refresh ended as a cancelled failure (retried after a backoff on the next start).
    let schedule = controller.schedule().await.unwrap();
    let due = schedule
        .warehouses
        .iter()
        .find(|w| w.warehouse == "charts")
        .unwrap();
    match &due.reason {
        DueReason::RetryAfterFailure { failure, .. } => {
            assert!(failure.message.contains("cancelled"), "{}", failure.message);
        }
        other => panic!("not a failed refresh: {other}"),
    }
    assert!(controller.state().await.unwrap().freight.is_empty());
}
