//! `argocd-update` and `argocd-wait` through the promotion runner against an in-process
//! fake of Argo CD's application API.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/fake_argocd.rs"]
mod fake_argocd;
#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_argocd::{FakeArgo, app};
use fake_http::{Req, capture_logs, logs, serve};
use kargo_core::runner::{Promotion, PromotionPhase, PromotionResult, Runner, RunnerOptions};
use kargo_core::secret::Redacted;
use kargo_core::workdir::WorkDir;
use kargo_steps::{ArgoCdOptions, BuiltinOptions, register_builtins_with};
use serde_json::{Value as Json, json};
use tempfile::TempDir;

const TOKEN: &str = "argo-SECRET-token";

async fn start(fake: Arc<FakeArgo>, token: &str) -> Runner {
    let f = fake.clone();
    let srv = serve(Arc::new(move |r: &Req| f.handle(r))).await;
    let mut reg = kargo_core::StepRegistry::new();
    register_builtins_with(
        &mut reg,
        &BuiltinOptions::new(std::env::temp_dir().join("kargo-rs-test-git-cache")).argocd({
            let mut o = ArgoCdOptions::default();
            o.server_url = Some(srv.url.clone());
            o.token = Redacted::new(token.to_owned());
            o.default_namespace = "argocd".into();
            o.insecure_skip_tls_verify = false;
            o.poll_interval = Duration::from_millis(10);
            o.refresh_after_push = false;
            o
        }),
    )
    .unwrap();
    Runner::new(reg).with_options(
        RunnerOptions::default()
            .with_min_retry_after(Duration::from_millis(10))
            .with_error_backoff(Duration::from_millis(10)),
    )
}

async fn run(runner: &Runner, stage: &str, steps: Json) -> PromotionResult {
    let dir = TempDir::new().unwrap();
    let mut p = Promotion::new(
        WorkDir::new(dir.path()).unwrap(),
        serde_json::from_value(steps).unwrap(),
    );
    p.project = "demo".into();
    p.stage = stage.into();
    p.name = format!("{stage}.01xyz.abcdef0");
    runner.run(&p).await
}

fn assert_phase(r: &PromotionResult, phase: PromotionPhase) {
    assert_eq!(
        r.phase,
        phase,
        "{:#?}",
        r.steps
            .iter()
            .map(|s| (&s.alias, s.status, &s.message, &s.outputs))
            .collect::<Vec<_>>()
    );
}

fn message(r: &PromotionResult, alias: &str) -> String {
    r.step(alias).unwrap().message.clone().unwrap_or_default()
}

fn multi_source_spec() -> Json {
    json!({
        "project": "default",
        "sources": [
            {"repoURL": "https://github.com/acme/gitops.git", "path": "env/prod", "targetRevision": "main",
             "kustomize": {"images": ["ghcr.io/acme/app:1.0", "ghcr.io/acme/sidecar:3"]}},
            {"repoURL": "https://charts.example.com", "chart": "guestbook", "targetRevision": "1.0.0",
             "helm": {"parameters": [{"name": "replicas", "value": "2"}]}},
        ],
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "prod"},
    })
}

fn update_steps(name: &str) -> Json {
    json!([
        {"alias": "update", "uses": "argocd-update", "config": {"apps": [{
            "name": name,
            "sources": [
                {"repoURL": "https://github.com/acme/gitops", "desiredRevision": "abc123",
                 "updateTargetRevision": true,
                 "kustomize": {"images": [{"repoURL": "ghcr.io/acme/app", "tag": "2.0"}]}},
                {"repoURL": "https://charts.example.com", "chart": "guestbook",
                 "helm": {"images": [{"key": "image.tag", "value": "2.0"}]}},
            ],
        }]}},
        {"alias": "wait", "uses": "argocd-wait", "config": {"apps": [{"name": name}]}},
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn update_refresh_sync_and_wait() {
    let fake = Arc::new(FakeArgo::new(TOKEN));
    fake.add(app(
        "argocd",
        "guestbook-prod",
        Some("demo:prod"),
        json!({}),
        multi_source_spec(),
    ));
    fake.progressing_gets.store(2, Ordering::SeqCst);
    let runner = start(fake.clone(), TOKEN).await;
    let r = run(&runner, "prod", update_steps("guestbook-prod")).await;
    assert_phase(&r, PromotionPhase::Succeeded);

    let a = fake.get("argocd", "guestbook-prod");
    let src = &a["spec"]["sources"];
    assert_eq!(src[0]["targetRevision"], json!("abc123"));
    assert_eq!(
        src[0]["kustomize"]["images"],
        json!(["ghcr.io/acme/app:2.0", "ghcr.io/acme/sidecar:3"])
    );
    assert_eq!(src[1]["targetRevision"], json!("1.0.0"), "untouched");
    assert_eq!(
        src[1]["helm"]["parameters"],
        json!([{"name": "replicas", "value": "2"}, {"name": "image.tag", "value": "2.0"}])
    );
    assert_eq!(fake.puts.load(Ordering::SeqCst), 1);
    assert!(
        fake.refreshes
            .lock()
            .unwrap()
            .contains(&("guestbook-prod".into(), "hard".into()))
    );
    let syncs = fake.syncs.lock().unwrap().clone();
    assert_eq!(syncs.len(), 1, "one sync, followed to completion");
    assert_eq!(syncs[0]["appNamespace"], json!("argocd"));
    assert!(syncs[0]["infos"].to_string().contains("prod.01xyz.abcdef0"));
    let out = &r.step("update").unwrap().outputs["apps"];
    assert_eq!(out[0]["name"], json!("guestbook-prod"));
    assert_eq!(out[0]["namespace"], json!("argocd"));
    // argocd-wait polled until the app turned Healthy.
    let w = &r.step("wait").unwrap().outputs["apps"][0];
    assert_eq!(w["health"], json!("Healthy"));
    assert_eq!(w["sync"], json!("Synced"));
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_annotation_entries_and_globs() {
    let fake = Arc::new(FakeArgo::new(TOKEN));
    fake.add(app("argocd", "none", None, json!({}), multi_source_spec()));
    fake.add(app(
        "argocd",
        "other",
        Some("demo:staging"),
        json!({}),
        multi_source_spec(),
    ));
    fake.add(app(
        "argocd",
        "list",
        Some("x:y, demo:prod ,z:w"),
        json!({}),
        multi_source_spec(),
    ));
    fake.add(app(
        "argocd",
        "glob",
        Some("de*:prod-*"),
        json!({}),
        multi_source_spec(),
    ));
    fake.add(app(
        "argocd",
        "bad",
        Some("demo"),
        json!({}),
        multi_source_spec(),
    ));
    let runner = start(fake.clone(), TOKEN).await;
    for (name, stage, ok) in [
        ("none", "prod", false),
        ("other", "prod", false),
        ("list", "prod", true),
        ("glob", "prod-eu", true),
        ("glob", "staging-eu", false),
        ("bad", "prod", false),
    ] {
        let r = run(&runner, stage, update_steps(name)).await;
        if ok {
            assert_phase(&r, PromotionPhase::Succeeded);
        } else {
            assert_phase(&r, PromotionPhase::Errored);
            let m = message(&r, "update");
            assert!(
                m.contains("authorize") || m.contains("malformed"),
                "{name}: {m}"
            );
        }
    }
    // Refused apps were never changed.
    assert_eq!(
        fake.get("argocd", "other")["spec"]["sources"][0]["targetRevision"],
        json!("main")
    );
    assert_eq!(fake.puts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn selector_apps_are_all_checked_before_any_change() {
    let fake = Arc::new(FakeArgo::new(TOKEN));
    let team = json!({"team": "a"});
    fake.add(app(
        "apps",
        "a-1",
        Some("demo:prod"),
        team.clone(),
        multi_source_spec(),
    ));
    fake.add(app(
        "apps",
        "a-2",
        Some("demo:staging"),
        team.clone(),
        multi_source_spec(),
    ));
    fake.add(app(
        "apps",
        "b-1",
        Some("demo:prod"),
        json!({"team": "b"}),
        multi_source_spec(),
    ));
    let runner = start(fake.clone(), TOKEN).await;
    let steps = |sel: Json| {
        json!([{"alias": "update", "uses": "argocd-update", "config": {"apps": [{
            "selector": sel, "namespace": "apps",
            "sources": [{"repoURL": "https://github.com/acme/gitops.git",
                         "desiredRevision": "v2", "updateTargetRevision": true}],
        }]}}])
    };
    let r = run(
        &runner,
        "prod",
        steps(json!({"matchLabels": {"team": "a"}})),
    )
    .await;
    assert_phase(&r, PromotionPhase::Errored);
    assert_eq!(fake.puts.load(Ordering::SeqCst), 0, "nothing changed");
    // Authorise a-2 too: both are updated.
    fake.add(app(
        "apps",
        "a-2",
        Some("demo:*"),
        team,
        multi_source_spec(),
    ));
    let r = run(
        &runner,
        "prod",
        steps(json!({"matchLabels": {"team": "a"}})),
    )
    .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(fake.puts.load(Ordering::SeqCst), 2);
    let names: Vec<Json> = r.step("update").unwrap().outputs["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a-1"), json!("a-2")]);
    assert_eq!(
        fake.get("apps", "b-1")["spec"]["sources"][0]["targetRevision"],
        json!("main")
    );
    // A source the app does not have: an error, no change.
    let r = run(
        &runner,
        "prod",
        json!([{"alias": "update", "uses": "argocd-update", "config": {"apps": [{
            "name": "b-1", "namespace": "apps",
            "sources": [{"repoURL": "https://github.com/acme/other.git",
                         "desiredRevision": "v2", "updateTargetRevision": true}],
        }]}}]),
    )
    .await;
    assert_phase(&r, PromotionPhase::Errored);
    assert!(message(&r, "update").contains("has no source"));
    assert_eq!(fake.puts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sync_fails_and_foreign_operations_are_waited_for() {
    let fake = Arc::new(FakeArgo::new(TOKEN));
    let spec = json!({"source": {"repoURL": "https://github.com/acme/gitops.git", "targetRevision": "main"}});
    fake.add(app(
        "argocd",
        "single",
        Some("demo:prod"),
        json!({}),
        spec.clone(),
    ));
    fake.start_foreign_operation("argocd", "single");
    let runner = start(fake.clone(), TOKEN).await;
    let steps = json!([{"alias": "update", "uses": "argocd-update", "config": {"apps": [{
        "name": "single",
        "sources": [{"repoURL": "https://github.com/acme/gitops.git", "desiredRevision": "v3",
                     "updateTargetRevision": true}],
    }]}}]);
    let r = run(&runner, "prod", steps.clone()).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    // The step waited for the foreign operation (kept running for 3 GETs), then synced.
    assert!(
        r.step("update").unwrap().attempts >= 3,
        "{:?}",
        r.step("update")
    );
    assert_eq!(fake.syncs.lock().unwrap().len(), 1);
    assert_eq!(
        fake.get("argocd", "single")["status"]["sync"]["revision"],
        json!("v3")
    );

    fake.add(app("argocd", "single", Some("demo:prod"), json!({}), spec));
    fake.fail_syncs.store(true, Ordering::SeqCst);
    let r = run(&runner, "prod", steps).await;
    assert_phase(&r, PromotionPhase::Failed);
    assert!(
        message(&r, "update").contains("Failed"),
        "{}",
        message(&r, "update")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn argocd_wait_conditions() {
    let fake = Arc::new(FakeArgo::new(TOKEN));
    let spec = json!({"source": {"repoURL": "https://github.com/acme/gitops.git", "targetRevision": "main"}});
    let mut degraded = app("argocd", "deg", None, json!({}), spec);
    degraded["status"]["health"]["status"] = json!("Degraded");
    fake.add(degraded);
    let runner = start(fake.clone(), TOKEN).await;
    let wait = |wait_for: Json| {
        json!([{"alias": "wait", "uses": "argocd-wait",
                "config": {"apps": [{"name": "deg", "waitFor": wait_for}]}}])
    };
    let r = run(&runner, "prod", wait(json!(["degraded", "sync"]))).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let mut steps = wait(json!(["health"]));
    steps[0]["timeout"] = json!(0.3);
    let steps: Json = steps;
    let planned: Vec<kargo_core::runner::PlannedStep> = serde_json::from_value(steps).unwrap();
    let dir = TempDir::new().unwrap();
    let mut p = Promotion::new(WorkDir::new(dir.path()).unwrap(), planned);
    p.project = "demo".into();
    p.stage = "prod".into();
    let r = runner.run(&p).await;
    assert_phase(&r, PromotionPhase::Errored);
    assert!(
        message(&r, "wait").contains("timed out"),
        "{}",
        message(&r, "wait")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_in_outputs_messages_or_logs() {
    let buf = capture_logs();
    let fake = Arc::new(FakeArgo::new(TOKEN));
    fake.add(app(
        "argocd",
        "guestbook-prod",
        Some("demo:prod"),
        json!({}),
        multi_source_spec(),
    ));
    let runner = start(fake.clone(), TOKEN).await;
    let r = run(&runner, "prod", update_steps("guestbook-prod")).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let mut all = format!("{:?} {:?} {:?}", r.steps, r.state, r.message);
    // A wrong token: refused, Unauthorized, and the token is not printed.
    let bad = start(fake.clone(), "wrong-SECRET-token").await;
    let r = run(&bad, "prod", update_steps("guestbook-prod")).await;
    assert_phase(&r, PromotionPhase::Errored);
    assert!(
        message(&r, "update").contains("401"),
        "{}",
        message(&r, "update")
    );
    all.push_str(&format!("{:?} {:?}", r.steps, r.message));
    let logged = logs(&buf);
    assert!(logged.contains("Argo CD API call"));
    for text in [&all, &logged] {
        assert!(!text.contains("SECRET"), "a token leaked: {text}");
    }
    // The options' Debug output hides the token too.
    let o = {
        let mut o = ArgoCdOptions::default();
        o.token = Redacted::new(TOKEN.to_owned());
        o
    };
    assert!(!format!("{o:?}").contains("SECRET"));
}

// ---------------------------------------------------------------------------------------
// Refresh after push

fn git_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Seed")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "Seed")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository `<dir>/gitops.git` with `main` (the default) and `other`.
fn gitops_remote(dir: &std::path::Path) -> std::path::PathBuf {
    let bare = dir.join("gitops.git");
    git_cli(
        dir,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = dir.join("seed");
    std::fs::create_dir_all(&work).unwrap();
    git_cli(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("values.yaml"), "tag: v1\n").unwrap();
    git_cli(&work, &["add", "-A"]);
    git_cli(&work, &["commit", "-q", "-m", "seed"]);
    git_cli(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "main", "main:other"],
    );
    bare
}

fn git_app(ns: &str, name: &str, repo: &str, revision: Option<&str>) -> Json {
    let mut source = json!({"repoURL": repo, "path": "env/dev"});
    if let Some(r) = revision {
        source["targetRevision"] = json!(r);
    }
    app(
        ns,
        name,
        None,
        json!({}),
        json!({"project": "default", "source": source}),
    )
}

fn push_steps(repo: &str, branch: &str, tag: &str) -> Json {
    json!([
        {"alias": "clone", "uses": "git-clone", "config": {"repoURL": repo, "checkout": [{"branch": branch, "path": "./src"}]}},
        {"alias": "write", "uses": "file-write", "config": {"path": "./src/values.yaml", "contents": format!("tag: {tag}\n"), "overwrite": true}},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "./src", "message": format!("tag {tag}")}},
        {"alias": "push", "uses": "git-push", "config": {"path": "./src"}},
    ])
}

async fn start_refresh(
    fake: Arc<FakeArgo>,
    cache: &std::path::Path,
    server: Option<String>,
    on: bool,
) -> Runner {
    let url = match server {
        Some(u) => u,
        None => {
            let f = fake.clone();
            serve(Arc::new(move |r: &Req| f.handle(r)))
                .await
                .url
                .clone()
        }
    };
    let mut reg = kargo_core::StepRegistry::new();
    let mut options = BuiltinOptions::new(cache);
    options.argocd = {
        let mut o = ArgoCdOptions::default();
        o.server_url = Some(url);
        o.token = Redacted::new(TOKEN.to_owned());
        o.default_namespace = "argocd".into();
        o.insecure_skip_tls_verify = false;
        o.poll_interval = Duration::from_millis(10);
        o.refresh_after_push = on;
        o
    };
    register_builtins_with(&mut reg, &options).unwrap();
    Runner::new(reg)
}

fn refreshed_output(r: &PromotionResult) -> Option<Vec<String>> {
    r.step("push")
        .unwrap()
        .outputs
        .get("argocdRefreshed")
        .map(|v| serde_json::from_value(v.clone()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn push_refreshes_the_apps_tracking_the_branch() {
    let dir = TempDir::new().unwrap();
    let bare = gitops_remote(dir.path());
    let repo = format!("file://{}", bare.display());
    let repo_no_suffix = repo.trim_end_matches(".git").to_owned();

    let fake = Arc::new(FakeArgo::new(TOKEN));
    fake.add(git_app("argocd", "dev-main", &repo, Some("main")));
    fake.add(git_app("argocd", "dev-head", &repo_no_suffix, Some("HEAD")));
    fake.add(git_app("argocd", "dev-empty", &repo, None));
    fake.add(git_app(
        "team-a",
        "dev-refs",
        &format!("{repo}/"),
        Some("refs/heads/main"),
    ));
    fake.add(git_app("argocd", "dev-other", &repo, Some("other")));
    fake.add(git_app(
        "argocd",
        "elsewhere",
        "https://git.example/other.git",
        Some("main"),
    ));
    fake.add(git_app("argocd", "pinned", &repo, Some("v1.0.0")));
    // A chart source with the same URL is not a git source.
    fake.add(app(
        "argocd",
        "chart",
        None,
        json!({}),
        json!({"source": {"repoURL": repo, "chart": "guestbook", "targetRevision": "main"}}),
    ));
    // Multi-source: the second source tracks main.
    fake.add(app(
        "argocd",
        "multi",
        None,
        json!({}),
        json!({"sources": [
            {"repoURL": "https://charts.example.com", "chart": "x", "targetRevision": "1.0.0"},
            {"repoURL": repo, "targetRevision": "main", "ref": "values"},
        ]}),
    ));

    let runner = start_refresh(fake.clone(), &dir.path().join("cache"), None, true).await;
    let r = run(&runner, "dev", push_steps(&repo, "main", "v2")).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let mut got = refreshed_output(&r).unwrap();
    got.sort();
    assert_eq!(
        got,
        [
            "argocd/dev-empty",
            "argocd/dev-head",
            "argocd/dev-main",
            "argocd/multi",
            "team-a/dev-refs"
        ]
    );
    let mut asked: Vec<(String, String)> = fake.refreshes.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        [
            ("dev-empty".to_owned(), "normal".to_owned()),
            ("dev-head".into(), "normal".into()),
            ("dev-main".into(), "normal".into()),
            ("dev-refs".into(), "normal".into()),
            ("multi".into(), "normal".into()),
        ]
    );
    assert_eq!(git_cli(&bare, &["show", "main:values.yaml"]), "tag: v2");

    // A push to `other` refreshes only the app tracking `other` (not the HEAD followers:
    // `other` is not the default branch).
    fake.refreshes.lock().unwrap().clear();
    let r = run(&runner, "dev", push_steps(&repo, "other", "v3")).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(refreshed_output(&r).unwrap(), ["argocd/dev-other"]);
    assert_eq!(
        *fake.refreshes.lock().unwrap(),
        [("dev-other".to_owned(), "normal".to_owned())]
    );

    // Turned off: no request, no output.
    fake.refreshes.lock().unwrap().clear();
    let off = start_refresh(fake.clone(), &dir.path().join("cache"), None, false).await;
    let r = run(&off, "dev", push_steps(&repo, "main", "v4")).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(refreshed_output(&r), None);
    assert!(fake.refreshes.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_or_refusing_argocd_does_not_fail_the_push() {
    let dir = TempDir::new().unwrap();
    let bare = gitops_remote(dir.path());
    let repo = format!("file://{}", bare.display());
    let cache = dir.path().join("cache");
    let logs_buf = capture_logs();

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let fake = Arc::new(FakeArgo::new(TOKEN));
    let runner = start_refresh(fake.clone(), &cache, Some(dead), true).await;
    let r = run(&runner, "dev", push_steps(&repo, "main", "v2")).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(refreshed_output(&r).unwrap(), Vec::<String>::new());
    assert_eq!(git_cli(&bare, &["show", "main:values.yaml"]), "tag: v2");

    // A server refusing the token.
    let refusing = Arc::new(FakeArgo::new("another-token"));
    refusing.add(git_app("argocd", "dev-main", &repo, Some("main")));
    let runner = start_refresh(refusing.clone(), &cache, None, true).await;
    let r = run(&runner, "dev", push_steps(&repo, "main", "v3")).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(refreshed_output(&r).unwrap(), Vec::<String>::new());
    assert!(refusing.refreshes.lock().unwrap().is_empty());
    assert_eq!(git_cli(&bare, &["show", "main:values.yaml"]), "tag: v3");

    let text = logs(&logs_buf);
    assert!(text.contains("cannot list Argo CD Applications"), "{text}");
    assert!(!text.contains(TOKEN), "the token in the log:\n{text}");
}
