//! The browser-test harness works end to end: a real headless Chromium, started through the
//! chromedriver `ci/test.sh` runs (`TEST_CHROMEDRIVER_URL`), opens a page this test serves
//! on 127.0.0.1, clicks a button whose inline script asks the server (fetch) and shows its
//! answer, and the helpers of `support::browser` see it, take a screenshot and read the
//! page's navigation timing.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use support::browser::{Browser, WINDOW_SIZE};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>kargo browser smoke</title>
<style>body { font: 16px sans-serif; margin: 2em; } #status { color: #075; }</style>
</head>
<body>
<h1>Browser smoke</h1>
<button id="go" type="button">Ask the server</button>
<p id="status">idle</p>
<script>
document.getElementById('go').addEventListener('click', async () => {
  const status = document.getElementById('status');
  status.textContent = 'asking…';
  const response = await fetch('/api/click', { method: 'POST' });
  status.textContent = response.ok ? 'server says: ' + await response.text() : 'failed: ' + response.status;
});
</script>
</body>
</html>
"#;

/// The page and `POST /api/click`, which counts the clicks it received.
async fn serve(clicks: Arc<AtomicU32>) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/api/click",
            post(|State(clicks): State<Arc<AtomicU32>>| async move {
                let n = clicks.fetch_add(1, Ordering::SeqCst) + 1;
                format!("click {n} received")
            }),
        )
        .with_state(clicks);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_chromium_clicks_a_button_and_sees_the_server_answer() {
    let Some(browser) =
        Browser::start("a_headless_chromium_clicks_a_button_and_sees_the_server_answer").await
    else {
        return;
    };
    let clicks = Arc::new(AtomicU32::new(0));
    let addr = serve(clicks.clone()).await;

    browser.goto(&format!("http://{addr}/")).await;
    browser.wait_for("#go").await;
    assert_eq!(browser.text("#status").await, "idle");
    assert_eq!(browser.text("h1").await, "Browser smoke");
    assert!(browser.exists("#go").await);
    assert!(!browser.exists("#no-such-element").await);
    assert_eq!(
        clicks.load(Ordering::SeqCst),
        0,
        "nothing asked the server yet"
    );

    browser.click("#go").await;
    let shown = browser
        .wait_for_text("#status", "server says: click 1 received")
        .await;
    assert_eq!(shown, "server says: click 1 received");
    assert_eq!(clicks.load(Ordering::SeqCst), 1, "one click, one request");

    // The fixed window size reaches the page.
    let width = browser.eval("return window.innerWidth;").await;
    assert_eq!(width.as_u64(), Some(u64::from(WINDOW_SIZE.0)), "{width}");

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shots/smoke.png");
    browser.screenshot(&png).await;
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &bytes[..bytes.len().min(8)]
    );
    // IHDR: width and height (big-endian) at bytes 16..24.
    assert!(bytes.len() > 24, "PNG of {} bytes", bytes.len());
    let png_width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let png_height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(png_width, WINDOW_SIZE.0, "screenshot width");
    assert!(
        png_height > 0 && png_height <= WINDOW_SIZE.1,
        "screenshot height {png_height}"
    );

    let tti = browser.time_to_interactive().await;
    assert!(tti > Duration::ZERO, "time to interactive {tti:?}");
    assert!(
        tti < Duration::from_secs(10),
        "a tiny page took {tti:?} to become interactive"
    );
    eprintln!("browser_smoke: time to interactive {tti:?}");

    browser.close().await;
}
