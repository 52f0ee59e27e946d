//! `github-push` through the promotion runner, against the real git test server (smart
//! HTTP, `TEST_GIT_*` from `ci/test.sh`) for the staging-ref push and fetches, and an
//! in-process fake of GitHub's Git database and compare APIs backed by the same bare
//! repository. Without the git server these tests are skipped, except with `CI=true`.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

#[path = "support/fake_forge.rs"]
mod fake_forge;
#[path = "support/fake_github_git.rs"]
mod fake_github_git;
#[path = "support/fake_http.rs"]
mod fake_http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fake_forge::{Flavor, Forge, git_in};
use fake_github_git::{APP_NAME, GitData};
use fake_http::{Req, capture_logs, logs, serve};
use kargo_core::runner::{Promotion, PromotionPhase, PromotionResult, Runner, RunnerOptions};
use kargo_core::secret::{CredentialKind, CredentialProvider, StaticCredentials};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use kargo_core::testing::server_envs;
use kargo_core::workdir::WorkDir;
use kargo_git::GitConfig;
use kargo_steps::git::{GitHubPushOptions, PullRequestOptions};
use kargo_steps::{BuiltinOptions, register_builtins_with};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tempfile::TempDir;

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_in(dir, args).unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

/// Writes one file.
struct Write;

#[derive(Deserialize)]
struct WriteConfig {
    path: String,
    contents: String,
}

#[async_trait]
impl Step for Write {
    const KIND: &'static str = "test-write";
    type Config = WriteConfig;
    async fn run(&self, ctx: &StepContext, cfg: WriteConfig) -> Result<StepOutcome, StepError> {
        std::fs::write(ctx.path(&cfg.path)?, cfg.contents).unwrap();
        Ok(StepOutcome::succeeded())
    }
}

/// Commits to `main` of the bare repository from another clone (the branch moves).
struct MoveRemote(PathBuf);

#[async_trait]
impl Step for MoveRemote {
    const KIND: &'static str = "test-move-remote";
    type Config = Json;
    async fn run(&self, _ctx: &StepContext, _cfg: Json) -> Result<StepOutcome, StepError> {
        let work = TempDir::new().unwrap();
        let url = format!("file://{}", self.0.display());
        git(
            work.path(),
            &[
                "clone",
                "-q",
                "-b",
                "main",
                &url,
                work.path().to_str().unwrap(),
            ],
        );
        std::fs::write(work.path().join("README.md"), "# moved\n").unwrap();
        git(
            work.path(),
            &["commit", "-q", "-am", "moved by someone else"],
        );
        git(work.path(), &["push", "-q", "origin", "main"]);
        Ok(
            StepOutcome::succeeded()
                .with_output("commit", git(work.path(), &["rev-parse", "HEAD"])),
        )
    }
}

struct Setup {
    repo_url: String,
    bare: PathBuf,
    data: Arc<GitData>,
    runner: Runner,
    creds: Arc<dyn CredentialProvider>,
    _cache: TempDir,
}

async fn setup(test: &str, github: GitHubPushOptions) -> Option<Setup> {
    let v = server_envs(
        test,
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    )?;
    let name = unique("ghpush");
    let rel = format!("acme/{name}.git");
    let bare = Path::new(&v[0]).join(&rel);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        bare.parent().unwrap(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(&bare, &["config", "http.receivepack", "true"]);
    let work = TempDir::new().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(work.path().join("env/prod")).unwrap();
    std::fs::write(work.path().join("env/prod/values.yaml"), "image: v1\n").unwrap();
    std::fs::write(work.path().join("README.md"), "# gitops\n").unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "seed"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
    let repo_url = format!("{}/{rel}", v[1]);

    let forge = Forge::new(Flavor::GitHub, bare.clone(), "acme", &name, &v[2], &v[3]);
    let data = GitData::new(forge);
    let d = data.clone();
    let srv = serve(Arc::new(move |r: &Req| {
        d.handle(r).unwrap_or_else(|| d.forge.handle(r))
    }))
    .await;
    let api = format!("{}{}", srv.url, Flavor::GitHub.api_prefix());
    let cache = TempDir::new().unwrap();
    let mut config = GitConfig::new(cache.path());
    config.retry_initial = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(50);
    let mut reg = kargo_core::StepRegistry::new();
    let mut prs = PullRequestOptions::default();
    prs.api_urls = vec![(repo_url.clone(), api)];
    register_builtins_with(
        &mut reg,
        &BuiltinOptions::with_git(config)
            .pull_requests(prs)
            .github_push(github),
    )
    .unwrap();
    reg.register(Write).unwrap();
    reg.register(MoveRemote(bare.clone())).unwrap();
    let runner = Runner::new(reg).with_options(
        RunnerOptions::default()
            .with_min_retry_after(Duration::from_millis(10))
            .with_error_backoff(Duration::from_millis(10)),
    );
    let creds = Arc::new(StaticCredentials::new().with(CredentialKind::Git, &v[1], &v[2], &v[3]));
    Some(Setup {
        repo_url,
        bare,
        data,
        runner,
        creds,
        _cache: cache,
    })
}

fn promotion(
    work: &Path,
    name: &str,
    steps: Json,
    creds: Arc<dyn CredentialProvider>,
) -> Promotion {
    let mut p = Promotion::new(
        WorkDir::new(work).unwrap(),
        serde_json::from_value(steps).unwrap(),
    );
    p.project = "demo".into();
    p.stage = "prod".into();
    p.name = name.into();
    p.credentials = creds;
    p
}

fn assert_phase(r: &PromotionResult, phase: PromotionPhase) {
    assert_eq!(
        r.phase,
        phase,
        "{:?} {:#?}",
        r.message,
        r.steps
            .iter()
            .map(|s| (&s.alias, s.status, &s.message, &s.outputs))
            .collect::<Vec<_>>()
    );
}

fn out(r: &PromotionResult, alias: &str, key: &str) -> String {
    r.step(alias)
        .and_then(|s| s.outputs.get(key))
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no output {alias}.{key}: {:#?}", r.steps))
        .to_owned()
}

/// clone → edit → commit → [move the remote] → github-push (`push` config) → edit →
/// commit → github-push again (the checkout follows the replayed commits).
fn steps(s: &Setup, push: Json, move_remote: bool) -> Json {
    let mut v = vec![
        json!({"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": s.repo_url, "checkout": [{"path": "out", "branch": "main"}],
        }}),
        json!({"alias": "edit", "uses": "test-write", "config": {
            "path": "out/env/prod/values.yaml", "contents": "image: v2\n",
        }}),
        json!({"alias": "commit", "uses": "git-commit", "config": {"path": "out", "message": "promote v2"}}),
    ];
    if move_remote {
        v.push(json!({"alias": "move", "uses": "test-move-remote"}));
    }
    v.push(json!({"alias": "push", "uses": "github-push", "config": push}));
    Json::Array(v)
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_commits_through_the_api_and_follows_them() {
    let Some(s) = setup(
        "replays_commits_through_the_api_and_follows_them",
        GitHubPushOptions::default(),
    )
    .await
    else {
        return;
    };
    let buf = capture_logs();
    let seed = git(&s.bare, &["rev-parse", "main"]);
    let work = TempDir::new().unwrap();
    let mut plan = steps(&s, json!({"path": "out"}), false);
    plan.as_array_mut().unwrap().extend([
        json!({"alias": "edit2", "uses": "test-write", "config": {
            "path": "out/README.md", "contents": "# second\n",
        }}),
        json!({"alias": "commit2", "uses": "git-commit", "config": {"path": "out", "message": "second"}}),
        json!({"alias": "push2", "uses": "github-push", "config": {"path": "out"}}),
    ]);
    let r = s
        .runner
        .run(&promotion(
            work.path(),
            "prod.01abc.1",
            plan,
            s.creds.clone(),
        ))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let head = git(&s.bare, &["rev-parse", "main"]);
    assert_eq!(out(&r, "push2", "commit"), head);
    assert_eq!(out(&r, "push2", "branch"), "main");
    assert!(
        out(&r, "push", "commitURL").ends_with(&format!("/commit/{}", out(&r, "push", "commit")))
    );
    // Replayed: new IDs, same trees, the original author kept (untrusted commits).
    let first = out(&r, "push", "commit");
    assert_ne!(first, out(&r, "commit", "commit"));
    assert_eq!(
        git(&s.bare, &["rev-parse", &format!("{first}^{{tree}}")]),
        git(
            &s.bare,
            &[
                "rev-parse",
                &format!("{}^{{tree}}", out(&r, "commit", "commit"))
            ]
        )
    );
    assert_eq!(git(&s.bare, &["rev-parse", &format!("{first}~1")]), seed);
    assert_eq!(git(&s.bare, &["rev-parse", "main~1"]), first);
    assert_eq!(
        git(&s.bare, &["log", "-1", "--format=%an <%ae>", &first]),
        "Kargo <no-reply@kargo.io>"
    );
    assert_eq!(
        git(&s.bare, &["log", "-1", "--format=%s", "main"]),
        "second"
    );
    assert_eq!(
        git(&s.bare, &["show", "main:env/prod/values.yaml"]),
        "image: v2"
    );
    assert_eq!(git(&s.bare, &["show", "main:README.md"]), "# second");
    let created = s.data.created.lock().unwrap().clone();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["author"]["name"], "Kargo");
    assert_eq!(created[0]["parents"], json!([seed]));
    // The staging ref was deleted; no branch appeared besides main.
    assert_eq!(
        git(&s.bare, &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main"
    );
    let calls = s.data.calls.lock().unwrap().clone();
    assert!(
        calls
            .iter()
            .any(|c| c == "DELETE git/refs/kargo/staging/prod.01abc.1"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("PATCH git/refs/heads/main")),
        "{calls:?}"
    );
    // No token in any log line.
    let password = std::env::var("TEST_GIT_HTTP_PASSWORD").unwrap();
    assert!(!logs(&buf).contains(&password));
}

#[tokio::test(flavor = "multi_thread")]
async fn integrates_a_moved_branch_then_replays() {
    let Some(s) = setup(
        "integrates_a_moved_branch_then_replays",
        GitHubPushOptions::default(),
    )
    .await
    else {
        return;
    };
    let work = TempDir::new().unwrap();
    let r = s
        .runner
        .run(&promotion(
            work.path(),
            "prod.01abc.2",
            steps(&s, json!({"path": "out"}), true),
            s.creds.clone(),
        ))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let head = git(&s.bare, &["rev-parse", "main"]);
    assert_eq!(out(&r, "push", "commit"), head);
    assert_eq!(
        git(&s.bare, &["rev-parse", "main~1"]),
        out(&r, "move", "commit")
    );
    assert_eq!(git(&s.bare, &["show", "main:README.md"]), "# moved");
    assert_eq!(
        git(&s.bare, &["show", "main:env/prod/values.yaml"]),
        "image: v2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_branches_are_created_and_untrusted_commits_can_be_verified() {
    let Some(s) = setup(
        "generated_branches_are_created_and_untrusted_commits_can_be_verified",
        {
            let mut o = GitHubPushOptions::default();
            o.verify_untrusted_commits = true;
            o
        },
    )
    .await
    else {
        return;
    };
    let work = TempDir::new().unwrap();
    let r = s
        .runner
        .run(&promotion(
            work.path(),
            "prod.01abc.3",
            steps(
                &s,
                json!({"path": "out", "generateTargetBranch": true}),
                false,
            ),
            s.creds.clone(),
        ))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(out(&r, "push", "branch"), "kargo/promotion/prod.01abc.3");
    let tip = git(&s.bare, &["rev-parse", "kargo/promotion/prod.01abc.3"]);
    assert_eq!(out(&r, "push", "commit"), tip);
    // GitHub's identity (it signs), the author in a trailer.
    assert_eq!(git(&s.bare, &["log", "-1", "--format=%an", &tip]), APP_NAME);
    let msg = git(&s.bare, &["log", "-1", "--format=%B", &tip]);
    assert!(
        msg.ends_with("Co-authored-by: Kargo <no-reply@kargo.io>"),
        "{msg}"
    );
    let created = s.data.created.lock().unwrap().clone();
    assert!(created[0].get("author").is_none());
    let calls = s.data.calls.lock().unwrap().clone();
    assert!(calls.iter().any(|c| c == "POST git/refs"), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_clear_and_dry_runs_push_nothing() {
    let Some(s) = setup(
        "errors_are_clear_and_dry_runs_push_nothing",
        GitHubPushOptions::default(),
    )
    .await
    else {
        return;
    };
    let seed = git(&s.bare, &["rev-parse", "main"]);
    // Configuration errors name the step and the key.
    for (push, key) in [
        (
            json!({"path": "out", "targetBranch": "x", "generateTargetBranch": true}),
            "config.generateTargetBranch",
        ),
        (json!({"path": "out", "tag": "v1"}), "config.tag"),
        (
            json!({"path": "out", "maxAttempts": 0}),
            "config.maxAttempts",
        ),
    ] {
        let work = TempDir::new().unwrap();
        let r = s
            .runner
            .run(&promotion(
                work.path(),
                "p",
                steps(&s, push.clone(), false),
                s.creds.clone(),
            ))
            .await;
        assert_phase(&r, PromotionPhase::Errored);
        let m = r.message.clone().unwrap_or_default();
        assert!(m.contains("push") && m.contains(key), "{push}: {m}");
    }
    // A dry run records and pushes nothing, and calls no API.
    let work = TempDir::new().unwrap();
    let mut p = promotion(
        work.path(),
        "p",
        steps(&s, json!({"path": "out"}), false),
        s.creds.clone(),
    );
    p.dry_run = true;
    let r = s.runner.run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), seed);
    assert!(s.data.calls.lock().unwrap().is_empty());
    assert_eq!(r.dry_run.unwrap().pushes.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_branch_moved_during_the_api_push_is_retried() {
    let Some(s) = setup(
        "a_branch_moved_during_the_api_push_is_retried",
        GitHubPushOptions::default(),
    )
    .await
    else {
        return;
    };
    s.data
        .race_next_update
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let work = TempDir::new().unwrap();
    let r = s
        .runner
        .run(&promotion(
            work.path(),
            "prod.01abc.4",
            steps(&s, json!({"path": "out", "maxAttempts": 3}), false),
            s.creds.clone(),
        ))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let calls = s.data.calls.lock().unwrap().clone();
    let patches = calls.iter().filter(|c| c.starts_with("PATCH")).count();
    assert_eq!(patches, 2, "{calls:?}");
    // Our commit sits on top of the racing one.
    assert_eq!(
        out(&r, "push", "commit"),
        git(&s.bare, &["rev-parse", "main"])
    );
    assert_eq!(
        git(&s.bare, &["log", "-1", "--format=%s", "main~1"]),
        "racing push"
    );
    assert_eq!(
        git(&s.bare, &["show", "main:env/prod/values.yaml"]),
        "image: v2"
    );
}
