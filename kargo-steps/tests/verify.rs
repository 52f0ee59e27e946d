//! The built-in HTTP verifier against a local HTTP server.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kargo_core::FreightCollection;
use kargo_core::freight::{Freight, FreightOrigin, FreightReference, Image};
use kargo_core::model::Stage;
use kargo_core::pipeline::{VerificationPhase, Verifier};
use kargo_steps::verify::{HttpProbe, HttpVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `GET /version`: status 503 for the first `warmup` requests, then 200 with
/// `body`. Returns the base URL and the request counter.
async fn server(warmup: usize, body: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let (status, text) = if n < warmup {
                ("503 Service Unavailable", "starting")
            } else {
                ("200 OK", body)
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), count)
}

fn stage(name: &str) -> Stage {
    let mut s = Stage::default();
    s.metadata.name = name.into();
    s
}

fn collection(tag: &str) -> FreightCollection {
    let f = Freight::new(
        FreightOrigin::warehouse("app"),
        vec![],
        vec![Image {
            repo_url: "ghcr.io/acme/app".into(),
            tag: tag.into(),
            digest: "sha256:1".into(),
            ..Image::default()
        }],
        vec![],
        vec![],
    );
    let mut c = FreightCollection::new();
    c.insert(FreightReference::from(&f));
    c
}

fn probe(url: &str) -> HttpProbe {
    HttpProbe::new(format!("{url}/version")).interval(Duration::from_millis(10))
}

#[tokio::test]
async fn passes_when_the_endpoint_reports_the_promoted_tag() {
    let (url, count) = server(2, "{\"version\":\"1.2.3\"}").await;
    let v = HttpVerifier::new().with_probe("dev", probe(&url).expect_body("\"{tag}\"").attempts(5));
    let info = v.verify(&stage("dev"), &collection("1.2.3")).await;
    assert_eq!(
        info.phase,
        VerificationPhase::Successful,
        "{}",
        info.message
    );
    assert_eq!(count.load(Ordering::SeqCst), 3, "two 503s, then success");
}

#[tokio::test]
async fn fails_on_the_wrong_version_or_status() {
    let (url, _) = server(0, "{\"version\":\"1.2.2\"}").await;
    let v = HttpVerifier::new().with_probe("dev", probe(&url).expect_body("{tag}").attempts(2));
    let info = v.verify(&stage("dev"), &collection("1.2.3")).await;
    assert_eq!(info.phase, VerificationPhase::Failed);
    assert!(
        info.message.contains("does not contain \"1.2.3\""),
        "{}",
        info.message
    );

    let (url, _) = server(usize::MAX, "").await;
    let v = HttpVerifier::new().with_probe("dev", probe(&url).attempts(2));
    let info = v.verify(&stage("dev"), &collection("1.2.3")).await;
    assert_eq!(info.phase, VerificationPhase::Failed);
    assert!(info.message.contains("status 503"), "{}", info.message);
}

#[tokio::test]
async fn unreachable_is_an_error_and_credentials_are_not_shown() {
    // A port with nothing listening: bind, note it, drop.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let v = HttpVerifier::new().with_probe(
        "dev",
        HttpProbe::new(format!("http://user:s3cret@{addr}/health?token=t0ken")),
    );
    let info = v.verify(&stage("dev"), &collection("1")).await;
    assert_eq!(info.phase, VerificationPhase::Error);
    assert!(
        !info.message.contains("s3cret") && !info.message.contains("t0ken"),
        "{}",
        info.message
    );
    // Stages without probes verify at once.
    let info = v.verify(&stage("prod"), &collection("1")).await;
    assert_eq!(info.phase, VerificationPhase::Successful);
}
