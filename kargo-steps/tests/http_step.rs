//! The `http` step against a local HTTP server on 127.0.0.1: expressions over the
//! response, outputs, polling, timeouts, SSRF refusals, and no credential in any message,
//! output or log line.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fake_http::{Req, Resp, capture_logs, logs, serve};
use kargo_core::runner::{Promotion, PromotionPhase, Runner, RunnerOptions};
use kargo_core::step::{
    Step, StepContext, StepError, StepErrorKind, StepOutcome, StepStatus, decode_config,
};
use kargo_core::workdir::WorkDir;
use kargo_steps::HttpRequest;
use serde_json::{Value as Json, json};
use tempfile::TempDir;

async fn run(cfg: Json) -> (Result<StepOutcome, StepError>, TempDir) {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("payload.json"), r#"{"from":"file"}"#).unwrap();
    let ctx = StepContext::new(WorkDir::new(dir.path()).unwrap());
    let cfg = decode_config(cfg).unwrap();
    (HttpRequest.run(&ctx, cfg).await, dir)
}

#[tokio::test]
async fn expressions_see_status_headers_header_and_body() {
    let srv = serve(Arc::new(|_r: &Req| {
        Resp::json(
            200,
            json!({"state": "done", "items": [{"id": "run-42"}], "count": 3}),
        )
        .header("X-Request-Id", "abc")
        .header("x-multi", "one")
        .header("x-multi", "two")
    }))
    .await;
    let (r, _d) = run(json!({
        "url": format!("{}/api/runs", srv.url),
        "headers": [{"name": "Accept", "value": "application/json"}],
        "queryParams": [{"name": "ref", "value": "a b&c"}, {"name": "n", "value": "1"}],
        "successExpression": "response.status == 200 && response.body.state == \"done\" && response.header(\"x-request-id\") == \"abc\"",
        "outputs": [
            {"name": "id", "fromExpression": "response.body.items[0].id"},
            {"name": "count", "fromExpression": "response.body.count + 1"},
            {"name": "multi", "fromExpression": "response.headers[\"X-Multi\"]"},
            {"name": "ct", "fromExpression": "response.header(\"Content-Type\")"},
            {"name": "missing", "fromExpression": "response.header(\"X-None\")"},
        ],
    }))
    .await;
    let out = r.unwrap();
    assert_eq!(out.status, StepStatus::Succeeded);
    assert_eq!(out.outputs["id"], json!("run-42"));
    assert_eq!(out.outputs["count"], json!(4));
    assert_eq!(out.outputs["multi"], json!(["one", "two"]));
    assert_eq!(out.outputs["ct"], json!("application/json"));
    assert_eq!(out.outputs["missing"], json!(""));
    let req = &srv.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/api/runs");
    assert_eq!(req.query("ref"), Some("a b&c"));
    assert_eq!(req.query("n"), Some("1"));
    assert_eq!(req.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn methods_and_bodies() {
    let srv = serve(Arc::new(|r: &Req| {
        Resp::json(
            201,
            json!({"method": r.method, "body": String::from_utf8_lossy(&r.body)}),
        )
    }))
    .await;
    let (r, _d) = run(json!({
        "url": srv.url, "method": "post", "body": "{\"a\":1}",
        "outputs": [{"name": "echo", "fromExpression": "response.body.body"},
                    {"name": "m", "fromExpression": "response.body.method"}],
    }))
    .await;
    let out = r.unwrap();
    assert_eq!(out.outputs["echo"], json!("{\"a\":1}"));
    assert_eq!(out.outputs["m"], json!("POST"));

    let (r, _d) = run(json!({
        "url": srv.url, "method": "PUT", "bodyFromFile": "payload.json",
        "outputs": [{"name": "echo", "fromExpression": "response.body.body"}],
    }))
    .await;
    assert_eq!(r.unwrap().outputs["echo"], json!("{\"from\":\"file\"}"));

    let (r, _d) = run(json!({"url": srv.url, "method": "TRACE"})).await;
    assert_eq!(r.unwrap_err().kind, StepErrorKind::InvalidConfig);
    let (r, _d) = run(json!({"url": srv.url, "body": "x", "bodyFromFile": "payload.json"})).await;
    assert_eq!(r.unwrap_err().kind, StepErrorKind::InvalidConfig);
    let (r, _d) = run(json!({"url": srv.url, "successExpression": "response.status =="})).await;
    assert_eq!(r.unwrap_err().kind, StepErrorKind::InvalidConfig);
    let (r, _d) = run(json!({"url": "ftp://127.0.0.1/x"})).await;
    assert_eq!(r.unwrap_err().kind, StepErrorKind::InvalidConfig);
}

#[tokio::test]
async fn without_expressions_2xx_succeeds_and_other_statuses_are_retryable() {
    let srv = serve(Arc::new(|r: &Req| match r.path.as_str() {
        "/ok" => Resp::text(204, ""),
        _ => Resp::text(503, "busy"),
    }))
    .await;
    let (r, _d) = run(json!({"url": format!("{}/ok", srv.url)})).await;
    assert_eq!(r.unwrap().status, StepStatus::Succeeded);
    let (r, _d) = run(json!({"url": format!("{}/busy", srv.url)})).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Retryable, "{e}");
    assert!(e.to_string().contains("503"), "{e}");
}

#[tokio::test]
async fn failure_wins_error_retries_and_undecided_is_running() {
    let srv = serve(Arc::new(|_r: &Req| {
        Resp::new(200)
            .header("Content-Type", "application/yaml")
            .body("state: failed\nretry: yes\n")
    }))
    .await;
    // Both true: failure wins.
    let (r, _d) = run(json!({
        "url": srv.url,
        "successExpression": "response.status == 200",
        "failureExpression": "response.body.state == 'failed'",
    }))
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Failed, "{e}");
    // errorExpression: retryable.
    let (r, _d) = run(json!({
        "url": srv.url,
        "successExpression": "false",
        "errorExpression": "response.body.retry == 'yes'",
    }))
    .await;
    assert_eq!(r.unwrap_err().kind, StepErrorKind::Retryable);
    // Neither true: Running after pollInterval.
    let (r, _d) = run(json!({
        "url": srv.url,
        "pollInterval": "7s",
        "successExpression": "response.body.state == 'done'",
        "failureExpression": "response.status >= 500",
    }))
    .await;
    assert_eq!(
        r.unwrap().status,
        StepStatus::Running {
            retry_after: Duration::from_secs(7)
        }
    );
    // responseContentType overrides the header: the YAML is read as text.
    let (r, _d) = run(json!({
        "url": srv.url,
        "responseContentType": "text/plain",
        "outputs": [{"name": "raw", "fromExpression": "response.body"}],
    }))
    .await;
    assert_eq!(
        r.unwrap().outputs["raw"],
        json!("state: failed\nretry: yes\n")
    );
}

#[tokio::test]
async fn timeouts_are_retryable_errors() {
    let srv = serve(Arc::new(|_r: &Req| {
        Resp::text(200, "late").delay(Duration::from_secs(3))
    }))
    .await;
    let started = std::time::Instant::now();
    let (r, _d) = run(json!({"url": srv.url, "timeout": "300ms"})).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Retryable, "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn link_local_and_metadata_destinations_are_refused() {
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/latest",
        "http://0xa9fea9fe/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let (r, _d) = run(json!({"url": url, "timeout": "2s"})).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{url}: {e}");
        assert!(e.to_string().contains("refusing"), "{url}: {e}");
    }
    // Redirects to blocked destinations are refused too; the redirect to a loopback
    // address is followed.
    let srv = serve(Arc::new(|r: &Req| match r.path.as_str() {
        "/meta" => Resp::new(302).header("Location", "http://169.254.169.254/latest/meta-data/"),
        "/meta6" => Resp::new(307).header("Location", "http://[fe80::a9fe:a9fe]/"),
        "/gcp" => Resp::new(302).header("Location", "http://metadata.google.internal/"),
        "/local" => Resp::new(302).header("Location", "/final"),
        _ => Resp::json(200, json!({"final": true})),
    }))
    .await;
    for p in ["/meta", "/meta6", "/gcp"] {
        let (r, _d) = run(json!({"url": format!("{}{p}", srv.url)})).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{p}: {e}");
        assert!(e.to_string().contains("refusing"), "{p}: {e}");
    }
    let (r, _d) = run(json!({
        "url": format!("{}/local", srv.url),
        "outputs": [{"name": "f", "fromExpression": "response.body.final"}],
    }))
    .await;
    assert_eq!(r.unwrap().outputs["f"], json!(true));
    // `localhost` resolves to loopback: allowed.
    let port = srv.url.rsplit(':').next().unwrap();
    let (r, _d) = run(json!({"url": format!("http://localhost:{port}/x")})).await;
    assert_eq!(r.unwrap().status, StepStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn polls_through_the_runner_until_success() {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let srv = serve(Arc::new(move |_r: &Req| {
        let i = c.fetch_add(1, Ordering::SeqCst);
        let state = if i < 2 { "running" } else { "done" };
        Resp::json(200, json!({"state": state, "attempt": i}))
    }))
    .await;
    let dir = TempDir::new().unwrap();
    let steps = serde_json::from_value(json!([
        {"alias": "wait", "uses": "http", "config": {
            "url": format!("{}/status", srv.url),
            "pollInterval": "10ms",
            "successExpression": "response.body.state == 'done'",
            "failureExpression": "response.body.state == 'failed'",
            "outputs": [{"name": "attempt", "fromExpression": "response.body.attempt"}],
        }},
        {"alias": "after", "uses": "compose-output", "config": {
            "seen": "${{ outputs.wait.attempt }}",
        }},
    ]))
    .unwrap();
    let p = Promotion::new(WorkDir::new(dir.path()).unwrap(), steps);
    let mut reg = kargo_core::StepRegistry::new();
    kargo_steps::register_builtins(
        &mut reg,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    let runner = Runner::new(reg)
        .with_options(RunnerOptions::default().with_min_retry_after(Duration::from_millis(10)));
    let r = runner.run(&p).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{:#?}", r.steps);
    assert_eq!(r.step("wait").unwrap().outputs["attempt"], json!(2));
    assert_eq!(r.step("after").unwrap().outputs["seen"], json!(2));
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credential_in_messages_outputs_or_logs() {
    let buf = capture_logs();
    let srv = serve(Arc::new(|r: &Req| {
        if r.header("authorization") == Some("Bearer tok-SECRET-1") {
            Resp::json(500, json!({"error": "boom"}))
        } else {
            Resp::json(401, json!({"error": "unauthorized"}))
        }
    }))
    .await;
    let url = srv.url.replace("http://", "http://user:pw-SECRET-2@");
    let mut messages = Vec::new();
    for extra in [
        json!({}),
        json!({"failureExpression": "response.status == 500"}),
        json!({"successExpression": "response.status == 200", "failureExpression": "false"}),
        json!({"timeout": "1ms"}),
    ] {
        let mut cfg = json!({
            "url": format!("{url}/api?token=q-SECRET-3"),
            "headers": [{"name": "Authorization", "value": "Bearer tok-SECRET-1"}],
            "queryParams": [{"name": "apikey", "value": "q-SECRET-4"}],
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (r, _d) = run(cfg).await;
        messages.push(match r {
            Ok(o) => format!("{o:?}"),
            Err(e) => format!("{e} {e:?}"),
        });
    }
    // The server did receive the credentials.
    assert!(
        srv.requests()
            .iter()
            .any(|r| r.header("authorization") == Some("Bearer tok-SECRET-1"))
    );
    let logged = logs(&buf);
    for text in messages.iter().chain(std::iter::once(&logged)) {
        assert!(!text.contains("SECRET"), "a credential leaked: {text}");
    }
    assert!(logged.contains("sending HTTP request"), "{logged}");
}

/// The step's execution ID goes out as an `Idempotency-Key` header (the same on a resumed
/// promotion's re-run), unless the configuration sets that header itself.
#[tokio::test]
async fn the_execution_id_is_sent_as_the_idempotency_key() {
    let srv = serve(Arc::new(|_r: &Req| Resp::text(200, "ok"))).await;
    let dir = TempDir::new().unwrap();
    let mut ctx = StepContext::new(WorkDir::new(dir.path()).unwrap());
    ctx.execution_id = "dev.01abc.deadbee/notify".into();
    let cfg = decode_config(json!({"url": srv.url, "method": "POST"})).unwrap();
    HttpRequest.run(&ctx, cfg).await.unwrap();
    let cfg = decode_config(json!({
        "url": srv.url, "method": "POST",
        "headers": [{"name": "idempotency-key", "value": "mine"}],
    }))
    .unwrap();
    HttpRequest.run(&ctx, cfg).await.unwrap();
    let (r, _d) = run(json!({"url": srv.url})).await;
    r.unwrap();
    let reqs = srv.requests();
    assert_eq!(
        reqs[0].header("Idempotency-Key"),
        Some("dev.01abc.deadbee/notify")
    );
    assert_eq!(reqs[1].header("idempotency-key"), Some("mine"));
    assert_eq!(
        reqs[2].header("idempotency-key"),
        None,
        "no execution ID, no header"
    );
}
