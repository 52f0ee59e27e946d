//! The pull-request steps through the promotion runner, against an in-process fake of the
//! GitHub, GitLab and Gitea APIs backed by the real git test server (`TEST_GIT_*`, started
//! by `ci/test.sh`): branches are real, and merges are real merge commits in the bare
//! repository. Without the git server these tests are skipped, except with `CI=true`.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

#[path = "support/fake_argocd.rs"]
mod fake_argocd;
#[path = "support/fake_forge.rs"]
mod fake_forge;
#[path = "support/fake_http.rs"]
mod fake_http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fake_forge::{Flavor, Forge, git_in};
use fake_http::{Req, capture_logs, logs, serve};
use kargo_core::runner::{Promotion, PromotionPhase, PromotionResult, Runner, RunnerOptions};
use kargo_core::secret::{CredentialKind, StaticCredentials};
use kargo_core::workdir::WorkDir;
use kargo_git::GitConfig;
use kargo_steps::git::PullRequestOptions;
use kargo_steps::{ArgoCdOptions, BuiltinOptions, register_builtins_with};
use serde_json::{Value as Json, json};
use tempfile::TempDir;

struct Env {
    root: PathBuf,
    http_url: String,
    user: String,
    password: String,
}

fn server_env(test: &str) -> Option<Env> {
    let mut v = Vec::new();
    for name in [
        "TEST_GIT_ROOT",
        "TEST_GIT_HTTP_URL",
        "TEST_GIT_HTTP_USER",
        "TEST_GIT_HTTP_PASSWORD",
    ] {
        match std::env::var(name) {
            Ok(x) if !x.is_empty() => v.push(x),
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!(
                        "{test}: {name} is not set; with CI=true the git test servers are required (ci/test.sh)"
                    );
                }
                eprintln!("skipping {test}: {name} is not set (run ci/test.sh)");
                return None;
            }
        }
    }
    Some(Env {
        root: PathBuf::from(&v[0]),
        http_url: v[1].clone(),
        user: v[2].clone(),
        password: v[3].clone(),
    })
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{name}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_in(dir, args).unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

/// A bare repository `acme/<name>.git` under the git server's root with `main` holding
/// `env/prod/values.yaml`; returns (repo URL, bare path, name).
fn seed(env: &Env, flavor: Flavor) -> (String, PathBuf, String) {
    let name = unique(flavor.name());
    // Azure DevOps URLs are <org>/<project>/_git/<repo>.
    let rel = match flavor {
        Flavor::Azure => format!("acme/proj/_git/{name}"),
        _ => format!("acme/{name}.git"),
    };
    let bare = env.root.join(&rel);
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
    (format!("{}/{rel}", env.http_url), bare, name)
}

struct Setup {
    repo_url: String,
    bare: PathBuf,
    forge: Arc<Forge>,
    api: String,
    runner: Runner,
    creds: Arc<StaticCredentials>,
    _cache: TempDir,
}

async fn setup(env: &Env, flavor: Flavor) -> Setup {
    setup_with(env, flavor, ArgoCdOptions::default()).await
}

async fn setup_with(env: &Env, flavor: Flavor, argocd: ArgoCdOptions) -> Setup {
    let (repo_url, bare, name) = seed(env, flavor);
    let forge = Forge::new(
        flavor,
        bare.clone(),
        "acme",
        &name,
        &env.user,
        &env.password,
    );
    let f = forge.clone();
    let srv = serve(Arc::new(move |r: &Req| f.handle(r))).await;
    let api = format!("{}{}", srv.url, flavor.api_prefix());
    let cache = TempDir::new().unwrap();
    let mut git = GitConfig::new(cache.path());
    git.retry_initial = Duration::from_millis(20);
    let mut reg = kargo_core::StepRegistry::new();
    register_builtins_with(
        &mut reg,
        &BuiltinOptions::with_git(git)
            .pull_requests({
                let mut o = PullRequestOptions::default();
                o.api_urls = vec![(repo_url.clone(), api.clone())];
                o
            })
            .argocd(argocd),
    )
    .unwrap();
    let runner = Runner::new(reg).with_options(
        RunnerOptions::default()
            .with_min_retry_after(Duration::from_millis(20))
            .with_error_backoff(Duration::from_millis(20)),
    );
    let creds = Arc::new(StaticCredentials::new().with(
        CredentialKind::Git,
        &env.http_url,
        &env.user,
        &env.password,
    ));
    Setup {
        repo_url,
        bare,
        forge,
        api,
        runner,
        creds,
        _cache: cache,
    }
}

fn promotion(work: &Path, name: &str, steps: Json, s: &Setup) -> Promotion {
    let mut p = Promotion::new(
        WorkDir::new(work).unwrap(),
        serde_json::from_value(steps).unwrap(),
    );
    p.project = "demo".into();
    p.stage = "prod".into();
    p.name = name.into();
    p.credentials = s.creds.clone();
    p
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

/// The prod template: push to a generated branch, open a PR, wait for it to merge.
fn prod_steps(s: &Setup, flavor: Flavor) -> Json {
    json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": s.repo_url, "checkout": [{"branch": "main", "path": "./out"}],
        }},
        {"alias": "update", "uses": "yaml-update", "config": {
            "path": "./out/env/prod/values.yaml", "updates": [{"key": "image", "value": "v2"}],
        }},
        {"alias": "commit", "uses": "git-commit", "config": {
            "path": "./out", "message": "Promote v2 to prod\n\nImage v2 passed staging.",
        }},
        {"alias": "push", "uses": "git-push", "config": {"path": "./out", "generateTargetBranch": true}},
        {"alias": "open-pr", "uses": "git-open-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "sourceBranch": "${{ outputs.push.branch }}", "targetBranch": "main",
            "labels": ["promotion"],
        }},
        {"alias": "wait-for-pr", "uses": "git-wait-for-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "prNumber": "${{ outputs['open-pr'].pr.id }}", "pollInterval": "50ms",
        }},
    ])
}

/// Merges the first PR through the fake's API, the way a reviewer's click would.
async fn merge_through_api(
    s: &Setup,
    flavor: Flavor,
    token: &str,
    promotion: &mut tokio::task::JoinHandle<PromotionResult>,
) {
    // Wait until the promotion opened the PR (or report why it ended without one).
    let started = std::time::Instant::now();
    while s.forge.prs().is_empty() {
        if promotion.is_finished() {
            let r = promotion.await.unwrap();
            assert_phase(&r, PromotionPhase::Running);
            panic!("the promotion ended without opening a pull request");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pull request was opened"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let n = s.forge.prs()[0].number;
    let client = reqwest::Client::new();
    let pulls = match flavor {
        Flavor::Bitbucket => format!("{}/repositories/acme/{}/pullrequests", s.api, s.forge.name),
        _ => format!(
            "{}/proj/_apis/git/repositories/{}/pullrequests",
            s.api, s.forge.name
        ),
    };
    let req = match flavor {
        Flavor::Bitbucket => client
            .post(format!("{pulls}/{n}/merge"))
            .header("authorization", fake_forge::basic(&s.forge.user, token))
            .json(&json!({"merge_strategy": "merge_commit"})),
        Flavor::Azure => client
            .patch(format!("{pulls}/{n}?api-version=7.1"))
            .header("authorization", fake_forge::basic("", token))
            .json(&json!({"status": "completed"})),
        Flavor::GitHub => client
            .put(format!(
                "{}/repos/acme/{}/pulls/{n}/merge",
                s.api, s.forge.name
            ))
            .bearer_auth(token)
            .json(&json!({"merge_method": "merge"})),
        Flavor::Gitea => client
            .post(format!(
                "{}/repos/acme/{}/pulls/{n}/merge",
                s.api, s.forge.name
            ))
            .header("authorization", format!("token {token}"))
            .json(&json!({"Do": "merge"})),
        Flavor::GitLab => client
            .put(format!(
                "{}/projects/acme%2F{}/merge_requests/{n}/merge",
                s.api, s.forge.name
            ))
            .header("private-token", token),
    };
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "merge: {}", resp.status());
}

async fn generated_branch_pr_flow(flavor: Flavor) {
    let Some(env) = server_env(flavor.name()) else {
        return;
    };
    let s = setup(&env, flavor).await;
    let work = TempDir::new().unwrap();
    let p = promotion(
        work.path(),
        "prod.01abc.1234567",
        prod_steps(&s, flavor),
        &s,
    );
    let runner = s.runner.clone();
    let mut handle = tokio::spawn(async move { runner.run(&p).await });
    merge_through_api(&s, flavor, &env.password, &mut handle).await;
    let r = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .unwrap()
        .unwrap();
    assert_phase(&r, PromotionPhase::Succeeded);

    let prs = s.forge.prs();
    assert_eq!(prs.len(), 1);
    let pr = &prs[0];
    assert_eq!(pr.head, "kargo/promotion/prod.01abc.1234567");
    assert_eq!(pr.base, "main");
    assert_eq!(pr.title, "Promote v2 to prod", "title from the head commit");
    assert_eq!(pr.body, "Image v2 passed staging.");
    if flavor != Flavor::Bitbucket {
        // Bitbucket Cloud pull requests have no labels.
        assert_eq!(pr.labels, vec!["promotion".to_owned()]);
    }
    let open = &r.step("open-pr").unwrap().outputs["pr"];
    assert_eq!(open["id"], json!(pr.number));
    assert!(
        open["url"]
            .as_str()
            .unwrap()
            .contains(&pr.number.to_string())
    );

    // The merge is a real merge commit on main, with the promoted change.
    let main = git(&s.bare, &["rev-parse", "main"]);
    let wait = &r.step("wait-for-pr").unwrap().outputs;
    assert_eq!(wait["commit"], json!(main));
    assert_eq!(wait["pr"]["merged"], json!(true));
    assert_eq!(wait["pr"]["open"], json!(false));
    let parents = git(&s.bare, &["rev-list", "--parents", "-n", "1", "main"]);
    assert_eq!(parents.split(' ').count(), 3, "a merge commit: {parents}");
    assert_eq!(
        git(&s.bare, &["show", "main:env/prod/values.yaml"]),
        "image: v2"
    );
    // The wait step polled while the PR was open.
    assert!(r.step("wait-for-pr").unwrap().attempts >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn github_generated_branch_open_wait_merge() {
    generated_branch_pr_flow(Flavor::GitHub).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_generated_branch_open_wait_merge() {
    generated_branch_pr_flow(Flavor::GitLab).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_generated_branch_open_wait_merge() {
    generated_branch_pr_flow(Flavor::Gitea).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bitbucket_generated_branch_open_wait_merge() {
    generated_branch_pr_flow(Flavor::Bitbucket).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_generated_branch_open_wait_merge() {
    generated_branch_pr_flow(Flavor::Azure).await;
}

/// Opening twice adopts the open PR; a branch with main's content is Skipped; a missing
/// target branch errors; git-merge-pr merges for real and is idempotent.
async fn idempotence_and_merge(flavor: Flavor) {
    let Some(env) = server_env(flavor.name()) else {
        return;
    };
    let s = setup(&env, flavor).await;
    // A branch with a change, and a branch with main's content.
    let work = TempDir::new().unwrap();
    let url = s
        .repo_url
        .replacen("://", &format!("://{}:{}@", env.user, env.password), 1);
    git(work.path(), &["clone", "-q", &url, "."]);
    git(work.path(), &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.path().join("README.md"), "# changed\n").unwrap();
    git(work.path(), &["commit", "-qam", "Change the readme"]);
    git(work.path(), &["push", "-q", "origin", "feature"]);
    git(work.path(), &["push", "-q", "origin", "main:same"]);

    let open = |alias: &str, src: &str, dst: &str| {
        json!({"alias": alias, "uses": "git-open-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "sourceBranch": src, "targetBranch": dst, "title": "Explicit title",
        }})
    };
    let steps = json!([
        open("first", "feature", "main"),
        open("second", "feature", "main"),
        open("same", "same", "main"),
        {"alias": "merge", "uses": "git-merge-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "prNumber": "${{ outputs.first.pr.id }}",
        }},
        {"alias": "merge-again", "uses": "git-merge-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "prNumber": "${{ outputs.first.pr.id }}",
        }},
        open("missing", "feature", "no-such-branch"),
    ]);
    let dir = TempDir::new().unwrap();
    let r = s
        .runner
        .run(&promotion(dir.path(), "prod.02.abc", steps, &s))
        .await;
    let status = |a: &str| r.step(a).unwrap().status.as_str().to_owned();
    assert_eq!(status("first"), "Succeeded", "{:#?}", r.steps);
    assert_eq!(status("second"), "Succeeded");
    assert_eq!(
        r.step("first").unwrap().outputs["pr"],
        r.step("second").unwrap().outputs["pr"],
        "the open PR is adopted"
    );
    assert_eq!(status("same"), "Skipped", "{:#?}", r.step("same"));
    assert_eq!(status("merge"), "Succeeded", "{:#?}", r.step("merge"));
    assert_eq!(status("merge-again"), "Succeeded");
    assert_eq!(status("missing"), "Errored");
    assert!(
        r.step("missing")
            .unwrap()
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("does not exist")
    );
    let prs = s.forge.prs();
    assert_eq!(prs.len(), 1, "one PR, adopted once");
    assert_eq!(prs[0].title, "Explicit title");
    let main = git(&s.bare, &["rev-parse", "main"]);
    assert_eq!(r.step("merge").unwrap().outputs["commit"], json!(main));
    assert_eq!(
        r.step("merge-again").unwrap().outputs["commit"],
        json!(main)
    );
    assert_eq!(git(&s.bare, &["show", "main:README.md"]), "# changed");

    // A re-run after the merge (no earlier output): the merged PR of the same head is
    // adopted, and waiting for it succeeds at once with the merge commit.
    let steps = json!([
        open("again", "feature", "main"),
        {"alias": "wait", "uses": "git-wait-for-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "prNumber": "${{ outputs.again.pr.id }}",
        }},
    ]);
    let r = s
        .runner
        .run(&promotion(dir.path(), "prod.02.def", steps, &s))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(
        r.step("again").unwrap().outputs["pr"]["id"],
        json!(prs[0].number)
    );
    assert_eq!(r.step("wait").unwrap().outputs["commit"], json!(main));
    assert_eq!(s.forge.prs().len(), 1, "no new PR");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_idempotence_and_merge() {
    idempotence_and_merge(Flavor::GitHub).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_idempotence_and_merge() {
    idempotence_and_merge(Flavor::GitLab).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_idempotence_and_merge() {
    idempotence_and_merge(Flavor::Gitea).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bitbucket_idempotence_and_merge() {
    idempotence_and_merge(Flavor::Bitbucket).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_idempotence_and_merge() {
    idempotence_and_merge(Flavor::Azure).await;
}

/// A PR closed without merging fails git-wait-for-pr; wrong credentials are refused
/// without printing them; no credential appears in outputs, messages or logs.
#[tokio::test(flavor = "multi_thread")]
async fn closed_pr_fails_and_credentials_never_leak() {
    let buf = capture_logs();
    let Some(env) = server_env("credentials") else {
        return;
    };
    let s = setup(&env, Flavor::GitHub).await;
    let dir = TempDir::new().unwrap();
    let mut steps = prod_steps(&s, Flavor::GitHub);
    steps.as_array_mut().unwrap().pop(); // no wait: nobody merges
    let r = s
        .runner
        .run(&promotion(dir.path(), "prod.03.abc", steps, &s))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let mut all = format!("{:?} {:?}", r.steps, r.state);
    {
        let mut prs = s.forge.prs.lock().unwrap();
        prs[0].state = "closed".into();
    }
    let steps = json!([{"alias": "wait", "uses": "git-wait-for-pr", "config": {
        "repoURL": s.repo_url, "provider": "github", "prNumber": 1, "pollInterval": "10ms",
    }}]);
    let r = s
        .runner
        .run(&promotion(dir.path(), "prod.04.abc", steps.clone(), &s))
        .await;
    assert_phase(&r, PromotionPhase::Failed);
    all.push_str(&format!("{:?}", r.steps));
    // Wrong token: 401, Unauthorized, no secret in the message.
    let mut p = promotion(dir.path(), "prod.05.abc", steps, &s);
    p.credentials = Arc::new(StaticCredentials::new().with(
        CredentialKind::Git,
        &env.http_url,
        "kargo",
        "wrong-SECRET-token",
    ));
    let r = s.runner.run(&p).await;
    assert_phase(&r, PromotionPhase::Errored);
    all.push_str(&format!("{:?} {:?}", r.steps, r.state));
    let logged = logs(&buf);
    assert!(logged.contains("pull-request API call"), "{logged}");
    for text in [&all, &logged] {
        assert!(
            !text.contains(&env.password),
            "the git password leaked: {text}"
        );
        assert!(
            !text.contains("wrong-SECRET-token"),
            "a token leaked: {text}"
        );
    }
}

/// The prod template end to end: push to a generated branch, open a PR, wait for it to be
/// merged (by the test, through the fake API: a real merge commit), then point the Argo
/// CD Application at the merge commit and sync it.
#[tokio::test(flavor = "multi_thread")]
async fn prod_template_pr_then_argocd_update() {
    let Some(env) = server_env("prod template") else {
        return;
    };
    let argo = Arc::new(fake_argocd::FakeArgo::new("argo-token"));
    let a = argo.clone();
    let argo_srv = serve(Arc::new(move |r: &Req| a.handle(r))).await;
    let s = setup_with(&env, Flavor::GitHub, {
        let mut o = ArgoCdOptions::default();
        o.server_url = Some(argo_srv.url.clone());
        o.token = kargo_core::secret::Redacted::new("argo-token".to_owned());
        o.default_namespace = "argocd".into();
        o.insecure_skip_tls_verify = false;
        o.poll_interval = Duration::from_millis(20);
        o.refresh_after_push = true;
        o
    })
    .await;
    argo.add(fake_argocd::app(
        "argocd",
        "guestbook-prod",
        Some("demo:prod"),
        json!({}),
        json!({"source": {"repoURL": s.repo_url, "path": "env/prod", "targetRevision": "main"}}),
    ));
    let mut steps = prod_steps(&s, Flavor::GitHub);
    steps.as_array_mut().unwrap().push(json!(
        {"alias": "deploy", "uses": "argocd-update", "config": {"apps": [{
            "name": "guestbook-prod",
            "sources": [{"repoURL": s.repo_url,
                         "desiredRevision": "${{ outputs['wait-for-pr'].commit }}",
                         "updateTargetRevision": true}],
        }]}}
    ));
    let work = TempDir::new().unwrap();
    let p = promotion(work.path(), "prod.01def.7654321", steps, &s);
    let runner = s.runner.clone();
    let mut handle = tokio::spawn(async move { runner.run(&p).await });
    merge_through_api(&s, Flavor::GitHub, &env.password, &mut handle).await;
    let r = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .unwrap()
        .unwrap();
    assert_phase(&r, PromotionPhase::Succeeded);
    let main = git(&s.bare, &["rev-parse", "main"]);
    let app = argo.get("argocd", "guestbook-prod");
    assert_eq!(app["spec"]["source"]["targetRevision"], json!(main));
    assert_eq!(app["status"]["sync"]["revision"], json!(main));
    assert_eq!(
        r.step("deploy").unwrap().outputs["apps"][0]["name"],
        json!("guestbook-prod")
    );
    let parents = git(&s.bare, &["rev-list", "--parents", "-n", "1", "main"]);
    assert_eq!(parents.split(' ').count(), 3, "a merge commit: {parents}");
}

/// A pull request that cannot be merged (a conflict): `git-merge-pr` fails, or with
/// `wait: true` keeps polling until its timeout.
async fn merge_conflict(flavor: Flavor) {
    let Some(env) = server_env(flavor.name()) else {
        return;
    };
    let s = setup(&env, flavor).await;
    let work = TempDir::new().unwrap();
    let url = s
        .repo_url
        .replacen("://", &format!("://{}:{}@", env.user, env.password), 1);
    git(work.path(), &["clone", "-q", &url, "."]);
    git(work.path(), &["checkout", "-q", "-b", "conflict"]);
    std::fs::write(work.path().join("README.md"), "# branch\n").unwrap();
    git(work.path(), &["commit", "-qam", "Branch side"]);
    git(work.path(), &["push", "-q", "origin", "conflict"]);
    git(work.path(), &["checkout", "-q", "main"]);
    std::fs::write(work.path().join("README.md"), "# main\n").unwrap();
    git(work.path(), &["commit", "-qam", "Main side"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    let main_before = git(&s.bare, &["rev-parse", "main"]);

    let steps = json!([
        {"alias": "open", "uses": "git-open-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "sourceBranch": "conflict", "targetBranch": "main",
        }},
        {"alias": "merge", "uses": "git-merge-pr", "config": {
            "repoURL": s.repo_url, "provider": flavor.name(),
            "prNumber": "${{ outputs.open.pr.id }}",
        }},
    ]);
    let dir = TempDir::new().unwrap();
    let r = s
        .runner
        .run(&promotion(dir.path(), "prod.06.abc", steps, &s))
        .await;
    assert_phase(&r, PromotionPhase::Failed);
    let msg = r.step("merge").unwrap().message.clone().unwrap_or_default();
    assert!(msg.contains("cannot be merged"), "{msg}");

    let n = s.forge.prs()[0].number;
    let mut steps: Json = json!([{"alias": "merge", "uses": "git-merge-pr", "timeout": 0.5,
    "config": {
        "repoURL": s.repo_url, "provider": flavor.name(), "prNumber": n,
        "wait": true, "pollInterval": "20ms",
    }}]);
    steps[0]["config"]["mergeMethod"] = json!("merge");
    let r = s
        .runner
        .run(&promotion(dir.path(), "prod.07.abc", steps, &s))
        .await;
    assert_phase(&r, PromotionPhase::Errored);
    let rec = r.step("merge").unwrap();
    assert!(
        rec.message
            .as_deref()
            .unwrap_or_default()
            .contains("timed out"),
        "{rec:?}"
    );
    assert!(rec.attempts >= 2, "it kept polling: {rec:?}");
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), main_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn github_merge_conflict_fails_or_waits() {
    merge_conflict(Flavor::GitHub).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_merge_conflict_fails_or_waits() {
    merge_conflict(Flavor::GitLab).await;
}

// ---------------------------------------------------------------------------------------
// Pagination: lookups follow the list past its first page, as each service documents.

/// A client of `flavor`'s fake (two items a page) holding, before the pull requests of
/// `feature` → `main`, open pull requests of other branches and closed, unmerged ones of
/// `feature`. Returns the server, the client, and the numbers of the merged and the open
/// pull request of `feature`.
async fn paginated_forge(
    flavor: Flavor,
) -> (
    fake_http::Server,
    kargo_steps::git::pr::PrClient,
    i64,
    i64,
    TempDir,
) {
    use kargo_steps::git::GitProvider;
    let bare = TempDir::new().unwrap();
    let forge = Forge::new(
        flavor,
        bare.path().to_path_buf(),
        "acme",
        "gitops",
        "kargo",
        "t0ken",
    );
    forge.set_page_size(2);
    for i in 0..5 {
        forge.add_pr(&format!("other-{i}"), "main", "open");
    }
    for _ in 0..3 {
        forge.add_pr("feature", "main", "closed");
    }
    let merged = forge.add_pr("feature", "main", "merged");
    let open = forge.add_pr("feature", "main", "open");
    let f = forge.clone();
    let srv = serve(Arc::new(move |r: &Req| f.handle(r))).await;
    let api = format!("{}{}", srv.url, flavor.api_prefix());
    let (provider, repo_url) = match flavor {
        Flavor::GitHub => (GitProvider::GitHub, "https://forge.example/acme/gitops.git"),
        Flavor::GitLab => (GitProvider::GitLab, "https://forge.example/acme/gitops.git"),
        Flavor::Gitea => (GitProvider::Gitea, "https://forge.example/acme/gitops.git"),
        Flavor::Bitbucket => (GitProvider::Bitbucket, "https://bitbucket.org/acme/gitops"),
        Flavor::Azure => (
            GitProvider::Azure,
            "https://dev.azure.com/acme/proj/_git/gitops",
        ),
    };
    let client = kargo_steps::git::pr::PrClient::new(
        provider,
        &api,
        kargo_steps::git::pr::repo_ref(provider, repo_url).unwrap(),
        "kargo",
        kargo_core::secret::Redacted::new("t0ken".to_owned()),
        false,
    )
    .unwrap();
    (srv, client, merged, open, bare)
}

/// The list requests the fake served.
fn list_requests(srv: &fake_http::Server) -> usize {
    srv.requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && ["/pulls", "/merge_requests", "/pullrequests"]
                    .iter()
                    .any(|p| r.path.ends_with(p))
        })
        .count()
}

#[tokio::test]
async fn github_merged_lookup_reads_past_the_first_page() {
    // The closed list holds three unmerged pull requests of the branch first: the merged
    // one is on page 2 (Link: rel="next").
    let (srv, client, merged, open, _bare) = paginated_forge(Flavor::GitHub).await;
    let found = client.find_merged("feature", "main").await.unwrap();
    assert_eq!(found.map(|p| p.number), Some(merged));
    assert_eq!(list_requests(&srv), 2);
    let found = client.find_open("feature", "main").await.unwrap();
    assert_eq!(found.map(|p| p.number), Some(open));
}

#[tokio::test]
async fn gitea_lookups_read_past_the_first_page() {
    // Gitea's list cannot filter by branch: the open pull request of `feature` is the
    // sixth open one (page 3), the merged one the fourth closed one (page 2).
    let (srv, client, merged, open, _bare) = paginated_forge(Flavor::Gitea).await;
    let found = client.find_open("feature", "main").await.unwrap();
    assert_eq!(found.map(|p| p.number), Some(open));
    assert_eq!(list_requests(&srv), 3);
    let found = client.find_merged("feature", "main").await.unwrap();
    assert_eq!(found.map(|p| p.number), Some(merged));
    assert_eq!(list_requests(&srv), 5);
    // Nothing for another branch: every page read, then None.
    assert!(client.find_open("nope", "main").await.unwrap().is_none());
    assert_eq!(list_requests(&srv), 8);
}

/// GitLab, Bitbucket and Azure DevOps filter by branch and state on the server, so a
/// match is on the first page; a lookup with nothing to find still ends (the last page
/// says so) and the lookups find what is there.
async fn server_filtered_lookups(flavor: Flavor) {
    let (srv, client, merged, open, _bare) = paginated_forge(flavor).await;
    let found = client.find_merged("feature", "main").await.unwrap();
    assert_eq!(found.map(|p| p.number), Some(merged));
    let found = client.find_open("feature", "main").await.unwrap();
    assert_eq!(found.map(|p| p.number), Some(open));
    assert!(client.find_open("nope", "main").await.unwrap().is_none());
    assert_eq!(list_requests(&srv), 3);
}

#[tokio::test]
async fn gitlab_bitbucket_azure_lookups_with_small_pages() {
    for flavor in [Flavor::GitLab, Flavor::Bitbucket, Flavor::Azure] {
        server_filtered_lookups(flavor).await;
    }
}
