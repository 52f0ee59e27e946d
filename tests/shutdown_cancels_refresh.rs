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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts connections, reads the request, answers headers for a long body and then
/// writes one byte every 200 ms. Each accepted request is announced on the channel.
async fn trickling_repository() -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(());
                let headers = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
                if sock.write_all(headers.as_bytes()).await.is_err() {
                    return;
                }
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    if sock.write_all(b"#").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{}/charts", addr.port()), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_refresh_stuck_on_a_slow_chart_repository() {
    let (url, mut accepted) = trickling_repository().await;
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
