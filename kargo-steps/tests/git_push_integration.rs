//! `git-push` when the remote branch moved between the clone and the push, under each of
//! Kargo's push integration policies (`GitConfig::push_integration_policy`), against real
//! git repositories (file:// always; smart HTTP when `ci/test.sh` runs the servers): the
//! branch moves through a separate `git` clone in the middle of the promotion.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::runner::{PlannedStep, Promotion, PromotionPhase, PromotionResult, Runner};
use kargo_core::secret::{CredentialKind, CredentialProvider, NoCredentials, StaticCredentials};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo_core::testing::server_envs;
use kargo_core::workdir::WorkDir;
use kargo_git::{GitConfig, PushIntegrationPolicy};
use kargo_steps::{BuiltinOptions, register_builtins_with};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tempfile::TempDir;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Other")
        .env("GIT_AUTHOR_EMAIL", "other@example.com")
        .env("GIT_COMMITTER_NAME", "Other")
        .env("GIT_COMMITTER_EMAIL", "other@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bare repository on `main` with `a.txt` and `b.txt`; returns the seed commit.
fn seed(bare: &Path) -> String {
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        bare.parent().unwrap(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(bare, &["config", "http.receivepack", "true"]);
    let work = TempDir::new().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(work.path().join("a.txt"), "a: 1\n").unwrap();
    std::fs::write(work.path().join("b.txt"), "b: 1\n").unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "seed"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(bare, &["rev-parse", "main"])
}

/// Commits `contents` to `path` on `main` of the bare repository from another clone (the
/// branch moves under the running promotion).
struct MoveRemote;

#[derive(Deserialize)]
struct MoveConfig {
    bare: PathBuf,
    path: String,
    contents: String,
}

#[async_trait]
impl Step for MoveRemote {
    const KIND: &'static str = "test-move-remote";
    type Config = MoveConfig;

    async fn run(&self, _ctx: &StepContext, cfg: MoveConfig) -> Result<StepOutcome, StepError> {
        let work = TempDir::new().unwrap();
        let url = format!("file://{}", cfg.bare.display());
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
        std::fs::write(work.path().join(&cfg.path), &cfg.contents).unwrap();
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

struct Remote {
    url: String,
    bare: PathBuf,
    creds: Arc<dyn CredentialProvider>,
    _tmp: Option<TempDir>,
}

fn file_remote() -> Remote {
    let tmp = TempDir::new().unwrap();
    let bare = tmp.path().join(format!("{}.git", unique("integrate")));
    seed(&bare);
    Remote {
        url: format!("file://{}", bare.display()),
        bare,
        creds: Arc::new(NoCredentials),
        _tmp: Some(tmp),
    }
}

fn http_remote() -> Option<Remote> {
    let v = server_envs(
        "git_push_integration (http)",
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    )?;
    let name = unique("integrate");
    let bare = Path::new(&v[0]).join(format!("{name}.git"));
    seed(&bare);
    Some(Remote {
        url: format!("{}/{name}.git", v[1]),
        bare,
        creds: Arc::new(StaticCredentials::new().with(CredentialKind::Git, &v[1], &v[2], &v[3])),
        _tmp: None,
    })
}

/// Clone → edit `ours` → commit → the remote moves (`theirs`) → push, with `policy`.
async fn promote(
    remote: &Remote,
    policy: PushIntegrationPolicy,
    ours: (&str, &str),
    theirs: (&str, &str),
) -> PromotionResult {
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let mut config = GitConfig::new(cache.path());
    config.retry_initial = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(50);
    config.push_integration_policy = policy;
    let mut reg = StepRegistry::new();
    register_builtins_with(&mut reg, &BuiltinOptions::with_git(config)).unwrap();
    reg.register(MoveRemote).unwrap();
    reg.register(Write).unwrap();
    let steps: Vec<PlannedStep> = serde_json::from_value(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
        }},
        {"alias": "edit", "uses": "test-write", "config": {
            "path": format!("repo/{}", ours.0), "contents": ours.1,
        }},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": "promote"}},
        {"alias": "move", "uses": "test-move-remote", "config": {
            "bare": remote.bare, "path": theirs.0, "contents": theirs.1,
        }},
        {"alias": "push", "uses": "git-push", "config": {"path": "repo", "maxAttempts": 3}},
    ]))
    .unwrap();
    let mut p = Promotion::new(WorkDir::new(work.path()).unwrap(), steps);
    p.project = "demo".into();
    p.stage = "dev".into();
    p.name = unique("promo");
    p.credentials = remote.creds.clone();
    Runner::new(reg).run(&p).await
}

fn out(r: &PromotionResult, alias: &str, key: &str) -> String {
    r.step(alias)
        .and_then(|s| s.outputs.get(key))
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no output {alias}.{key}: {:#?}", r.steps))
        .to_owned()
}

fn assert_succeeded(r: &PromotionResult) {
    assert_eq!(
        r.phase,
        PromotionPhase::Succeeded,
        "{:?} {:#?}",
        r.message,
        r.steps
    );
}

/// Rebase policies (and the safe case of the conditional ones): our commit replayed on
/// top of theirs, linear history, both changes on the branch.
async fn rebases(remote: &Remote, policy: PushIntegrationPolicy) {
    let r = promote(remote, policy, ("a.txt", "a: 2\n"), ("b.txt", "b: 2\n")).await;
    assert_succeeded(&r);
    let head = git(&remote.bare, &["rev-parse", "main"]);
    assert_eq!(out(&r, "push", "commit"), head, "{policy}");
    assert_ne!(
        out(&r, "commit", "commit"),
        head,
        "{policy}: the commit was rewritten"
    );
    assert_eq!(
        git(&remote.bare, &["rev-parse", "main~1"]),
        out(&r, "move", "commit")
    );
    assert_eq!(
        git(&remote.bare, &["log", "-1", "--format=%P", "main"])
            .split(' ')
            .count(),
        1
    );
    assert_eq!(git(&remote.bare, &["show", "main:a.txt"]), "a: 2");
    assert_eq!(git(&remote.bare, &["show", "main:b.txt"]), "b: 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn always_rebase_lands_on_top() {
    rebases(&file_remote(), PushIntegrationPolicy::AlwaysRebase).await;
    if let Some(remote) = http_remote() {
        rebases(&remote, PushIntegrationPolicy::AlwaysRebase).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rebase_or_merge_and_rebase_or_fail_rebase_unsigned_commits() {
    rebases(&file_remote(), PushIntegrationPolicy::RebaseOrMerge).await;
    rebases(&file_remote(), PushIntegrationPolicy::RebaseOrFail).await;
}

async fn merges(remote: &Remote) {
    let r = promote(
        remote,
        PushIntegrationPolicy::AlwaysMerge,
        ("a.txt", "a: 2\n"),
        ("b.txt", "b: 2\n"),
    )
    .await;
    assert_succeeded(&r);
    let head = git(&remote.bare, &["rev-parse", "main"]);
    assert_eq!(out(&r, "push", "commit"), head);
    // A merge commit: first parent our commit (unchanged), second parent theirs.
    let parents = git(&remote.bare, &["log", "-1", "--format=%P", "main"]);
    let parents: Vec<&str> = parents.split(' ').collect();
    assert_eq!(
        parents,
        vec![out(&r, "commit", "commit"), out(&r, "move", "commit")]
    );
    let subject = git(&remote.bare, &["log", "-1", "--format=%s", "main"]);
    assert!(subject.starts_with("Merge branch 'main' of "), "{subject}");
    assert_eq!(git(&remote.bare, &["show", "main:a.txt"]), "a: 2");
    assert_eq!(git(&remote.bare, &["show", "main:b.txt"]), "b: 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn always_merge_makes_a_merge_commit() {
    merges(&file_remote()).await;
    if let Some(remote) = http_remote() {
        merges(&remote).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_fail_naming_the_file_and_push_nothing() {
    for policy in [
        PushIntegrationPolicy::AlwaysMerge,
        PushIntegrationPolicy::AlwaysRebase,
    ] {
        let remote = file_remote();
        let r = promote(
            &remote,
            policy,
            ("a.txt", "a: ours\n"),
            ("a.txt", "a: theirs\n"),
        )
        .await;
        assert_eq!(r.phase, PromotionPhase::Failed, "{policy}: {:#?}", r.steps);
        let msg = r.step("push").unwrap().message.clone().unwrap_or_default();
        assert!(msg.contains("a.txt"), "{policy}: {msg}");
        assert_eq!(
            git(&remote.bare, &["rev-parse", "main"]),
            out(&r, "move", "commit")
        );
    }
}
