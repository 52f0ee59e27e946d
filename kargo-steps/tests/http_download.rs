//! The `http-download` step against a local HTTP server on 127.0.0.1: the file, headers and
//! query parameters, overwrite rules, status and size errors leaving no file behind, path
//! safety, and no header value in messages or logs.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::Arc;

use fake_http::{Req, Resp, capture_logs, logs, serve};
use kargo_core::step::{DynStep, Step, StepContext, StepErrorKind, StepStatus, decode_config};
use kargo_core::workdir::WorkDir;
use kargo_steps::HttpDownload;
use serde_json::json;
use tempfile::TempDir;

fn ctx(dir: &TempDir) -> StepContext {
    let mut c = StepContext::new(WorkDir::new(dir.path()).unwrap());
    c.alias = "fetch".into();
    c
}

/// The directory's entries (names), sorted, recursively below `sub`.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn downloads_with_headers_and_query_into_new_directories() {
    let srv = serve(Arc::new(|r: &Req| {
        if r.header("authorization") != Some("Bearer s3cr3t-token") {
            return Resp::new(401);
        }
        Resp::text(
            200,
            &format!(
                "arch={}&q={}",
                r.query("arch").unwrap_or(""),
                r.query("q").unwrap_or("")
            ),
        )
    }))
    .await;
    let dir = TempDir::new().unwrap();
    let cfg = decode_config(json!({
        "url": format!("{}/releases/app.txt", srv.url),
        "outPath": "artifacts/v1/app.txt",
        "headers": [{"name": "Authorization", "value": "Bearer s3cr3t-token"}],
        "queryParams": [{"name": "arch", "value": "amd64"}, {"name": "q", "value": "a b&c"}],
    }))
    .unwrap();
    let out = HttpDownload::new().run(&ctx(&dir), cfg).await.unwrap();
    assert_eq!(out.status, StepStatus::Succeeded);
    assert!(out.outputs.is_empty());
    let got = std::fs::read_to_string(dir.path().join("artifacts/v1/app.txt")).unwrap();
    assert_eq!(got, "arch=amd64&q=a b&c");
    assert_eq!(srv.requests()[0].method, "GET");
    assert!(
        srv.requests()[0].raw_query.contains("q=a+b%26c"),
        "{}",
        srv.requests()[0].raw_query
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("artifacts/v1/app.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Only the file: no temporary file left beside it.
    assert_eq!(entries(&dir.path().join("artifacts/v1")), vec!["app.txt"]);
}

#[tokio::test]
async fn existing_files_need_allow_overwrite() {
    let srv = serve(Arc::new(|_r: &Req| Resp::text(200, "new"))).await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("f.txt"), "old").unwrap();
    let step = HttpDownload::new();
    let e = step
        .run_json(&ctx(&dir), json!({"url": srv.url, "outPath": "f.txt"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Terminal);
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(
        srv.requests().is_empty(),
        "nothing is downloaded for a refused path"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("f.txt")).unwrap(),
        "old"
    );
    step.run_json(
        &ctx(&dir),
        json!({"url": srv.url, "outPath": "f.txt", "allowOverwrite": true}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("f.txt")).unwrap(),
        "new"
    );
}

#[tokio::test]
async fn bad_status_and_oversized_bodies_leave_no_file() {
    let srv = serve(Arc::new(|r: &Req| match r.path.as_str() {
        "/missing" => Resp::text(404, "nope"),
        _ => Resp::text(200, &"x".repeat(2048)),
    }))
    .await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "old").unwrap();
    let e = HttpDownload::new()
        .run_json(
            &ctx(&dir),
            json!({"url": format!("{}/missing", srv.url), "outPath": "a.txt"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Failed, "{e}");
    assert!(e.to_string().contains("status 404"), "{e}");
    let e = HttpDownload::with_max_bytes(1024)
        .run_json(
            &ctx(&dir),
            json!({"url": format!("{}/big", srv.url), "outPath": "keep.txt", "allowOverwrite": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Terminal, "{e}");
    assert!(e.to_string().contains("exceeds limit of 1024 bytes"), "{e}");
    assert_eq!(entries(dir.path()), vec!["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "old"
    );
    // Within the limit it works.
    HttpDownload::with_max_bytes(4096)
        .run_json(
            &ctx(&dir),
            json!({"url": format!("{}/big", srv.url), "outPath": "big.txt"}),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("big.txt")).unwrap().len(),
        2048
    );
}

#[tokio::test]
async fn paths_stay_in_the_work_directory() {
    let srv = serve(Arc::new(|_r: &Req| Resp::text(200, "x"))).await;
    let dir = TempDir::new().unwrap();
    let outside = TempDir::new().unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    for bad in [
        "../escape.txt",
        "/etc/passwd-copy",
        "link/x.txt",
        ".git/config",
        ".",
    ] {
        let e = HttpDownload::new()
            .run_json(&ctx(&dir), json!({"url": srv.url, "outPath": bad}))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.kind,
                StepErrorKind::Terminal | StepErrorKind::InvalidConfig
            ),
            "{bad}: {e}"
        );
        assert!(
            !e.to_string().contains(dir.path().to_str().unwrap()),
            "{bad}: {e}"
        );
    }
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    assert!(srv.requests().is_empty());
}

#[tokio::test]
async fn config_errors_name_the_key_and_secrets_stay_hidden() {
    let buf = capture_logs();
    let dir = TempDir::new().unwrap();
    for (cfg, key) in [
        (json!({"outPath": "a"}), "config"),
        (
            json!({"url": "http://127.0.0.1:1/", "outPath": "a", "timeot": "1s"}),
            "config.timeot",
        ),
        (json!({"url": "ftp://x/y", "outPath": "a"}), "config.url"),
        (
            json!({"url": "http://127.0.0.1:1/", "outPath": ""}),
            "config.outPath",
        ),
        (
            json!({"url": "http://127.0.0.1:1/", "outPath": "a", "headers": [{"name": "X", "value": ""}]}),
            "config.headers[0].value",
        ),
        (
            json!({"url": "http://127.0.0.1:1/", "outPath": "a", "timeout": "soon"}),
            "config.timeout",
        ),
    ] {
        let e = HttpDownload::new()
            .run_json(&ctx(&dir), cfg.clone())
            .await
            .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::InvalidConfig, "{cfg}: {e}");
        assert!(e.to_string().starts_with(key), "{cfg}: {e}");
    }
    // A refused connection is retryable; neither the header value nor the query shows.
    let e = HttpDownload::new()
        .run_json(
            &ctx(&dir),
            json!({
                "url": "http://127.0.0.1:1/file?token=qu3ry-s3cret",
                "outPath": "a",
                "headers": [{"name": "Authorization", "value": "Bearer h3ader-s3cret"}],
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Retryable, "{e}");
    let text = format!("{e} {}", logs(&buf));
    assert!(
        !text.contains("qu3ry-s3cret") && !text.contains("h3ader-s3cret"),
        "{text}"
    );
    // Link-local destinations are refused.
    let e = HttpDownload::new()
        .run_json(
            &ctx(&dir),
            json!({"url": "http://169.254.169.254/latest/meta-data/", "outPath": "m"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Terminal, "{e}");
    assert!(e.to_string().contains("refusing"), "{e}");
}
