//! End-to-end tests of the git steps through the promotion runner: over file:// always,
//! and over smart HTTP, git daemon and SSH when the test servers' `TEST_GIT_*` variables
//! are set (`ci/test.sh` starts them). Without them these transports are skipped, except
//! with `CI=true`, where a missing variable fails the test.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::runner::{
    PlannedStep, Promotion, PromotionPhase, PromotionResult, Runner, StepExecutionStatus,
};
use kargo_core::secret::{
    CredentialKind, CredentialProvider, Credentials, NoCredentials, StaticCredentials,
};
use kargo_core::step::{
    Extensions, Step, StepContext, StepError, StepErrorKind, StepOutcome, StepRegistry,
};
use kargo_core::workdir::WorkDir;
use kargo_git::GitConfig;
use kargo_steps::{BuiltinOptions, register_builtins_with};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Test steps

/// Edits one file through `ctx.path()`: replaces its contents or appends to it.
struct EditFile;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditConfig {
    path: String,
    #[serde(default)]
    contents: Option<String>,
    #[serde(default)]
    append: Option<String>,
}

#[async_trait]
impl Step for EditFile {
    const KIND: &'static str = "test-edit";
    type Config = EditConfig;

    async fn run(&self, ctx: &StepContext, cfg: EditConfig) -> Result<StepOutcome, StepError> {
        let path = ctx.path(&cfg.path)?;
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match (cfg.contents, cfg.append) {
            (Some(c), _) => c,
            (None, Some(a)) => old + &a,
            (None, None) => old,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StepError::terminal(e.to_string()))?;
        }
        std::fs::write(&path, new).map_err(|e| StepError::terminal(e.to_string()))?;
        Ok(StepOutcome::succeeded())
    }
}

/// Waits until every promotion sharing the barrier reached it.
struct BarrierStep(Arc<tokio::sync::Barrier>);

#[async_trait]
impl Step for BarrierStep {
    const KIND: &'static str = "test-barrier";
    type Config = Json;

    async fn run(&self, _ctx: &StepContext, _cfg: Json) -> Result<StepOutcome, StepError> {
        self.0.wait().await;
        Ok(StepOutcome::succeeded())
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn git_config(cache: &Path) -> GitConfig {
    let mut git = GitConfig::new(cache);
    git.retry_initial = Duration::from_millis(20);
    git.retry_max = Duration::from_millis(200);
    git
}

fn registry(cache: &Path, barrier: Option<Arc<tokio::sync::Barrier>>) -> StepRegistry {
    let mut reg = StepRegistry::new();
    register_builtins_with(&mut reg, &BuiltinOptions::with_git(git_config(cache))).unwrap();
    reg.register(EditFile).unwrap();
    if let Some(b) = barrier {
        reg.register(BarrierStep(b)).unwrap();
    }
    reg
}

fn runner(cache: &Path, barrier: Option<Arc<tokio::sync::Barrier>>) -> Runner {
    Runner::new(registry(cache, barrier))
}

fn steps(v: Json) -> Vec<PlannedStep> {
    serde_json::from_value(v).unwrap()
}

fn promotion(
    work: &Path,
    name: &str,
    steps: Vec<PlannedStep>,
    creds: Arc<dyn CredentialProvider>,
) -> Promotion {
    let mut p = Promotion::new(WorkDir::new(work).unwrap(), steps);
    p.project = "demo".into();
    p.stage = "dev".into();
    p.name = name.into();
    p.credentials = creds;
    p
}

fn assert_phase(r: &PromotionResult, phase: PromotionPhase) {
    assert_eq!(
        r.phase,
        phase,
        "promotion: {:?}; steps: {:#?}",
        r.message,
        r.steps
            .iter()
            .map(|s| (&s.alias, s.status, &s.message))
            .collect::<Vec<_>>()
    );
}

fn output<'a>(r: &'a PromotionResult, alias: &str, key: &str) -> &'a Json {
    r.step(alias)
        .and_then(|s| s.outputs.get(key))
        .unwrap_or_else(|| panic!("no output {alias}.{key}: {:#?}", r.steps))
}

/// Runs the git CLI with a fixed identity and no user configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Seed")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "Seed")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository of 3 + 2×60 files.
fn many_files() -> Vec<(String, String)> {
    let mut files = vec![
        ("README.md".to_owned(), "# gitops\n".to_owned()),
        (
            "base/kustomization.yaml".to_owned(),
            "resources: []\n".to_owned(),
        ),
        ("env/prod/values.yaml".to_owned(), "image: v1\n".to_owned()),
    ];
    for i in 0..60 {
        files.push((
            format!("apps/app-{i}/values.yaml"),
            format!("image: v1\napp: {i}\n"),
        ));
        files.push((format!("docs/page-{i}.md"), format!("page {i}\n")));
    }
    files
}

/// Makes `bare` a bare repository on `main` holding `files`; returns the commit ID.
fn seed(bare: &Path, files: &[(String, String)]) -> String {
    let parent = bare.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    git(
        parent,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(bare, &["config", "http.receivepack", "true"]);
    std::fs::write(bare.join("git-daemon-export-ok"), "").unwrap();
    let work = TempDir::new().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    for (path, contents) in files {
        let p = work.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "seed"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(bare, &["rev-parse", "main"])
}

/// A fresh clone of `bare` at `branch`.
fn fresh_clone(bare: &Path, branch: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    let url = format!("file://{}", bare.display());
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "-b",
            branch,
            &url,
            dir.path().to_str().unwrap(),
        ],
    );
    dir
}

/// Every file (not directory) under `dir`, relative, with `/` separators.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_owned();
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    File,
    Http,
    Daemon,
    Ssh,
}

/// A seeded remote: its URL, the bare repository behind it, and credentials for it.
struct Remote {
    url: String,
    bare: PathBuf,
    seed: String,
    creds: Arc<dyn CredentialProvider>,
    _tmp: Option<TempDir>,
}

use kargo_core::testing::server_envs as server_env;

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

fn remote(t: Transport, name: &str, files: &[(String, String)]) -> Option<Remote> {
    let name = unique(name);
    let (url, bare, creds, tmp): (String, PathBuf, Arc<dyn CredentialProvider>, _) = match t {
        Transport::File => {
            let tmp = TempDir::new().unwrap();
            let bare = tmp.path().join(format!("{name}.git"));
            (
                format!("file://{}", bare.display()),
                bare,
                Arc::new(NoCredentials),
                Some(tmp),
            )
        }
        Transport::Http => {
            let v = server_env(
                "http",
                &[
                    "TEST_GIT_ROOT",
                    "TEST_GIT_HTTP_URL",
                    "TEST_GIT_HTTP_USER",
                    "TEST_GIT_HTTP_PASSWORD",
                ],
            )?;
            let url = format!("{}/{name}.git", v[1]);
            let creds = StaticCredentials::new().with(CredentialKind::Git, &v[1], &v[2], &v[3]);
            (
                url,
                Path::new(&v[0]).join(format!("{name}.git")),
                Arc::new(creds),
                None,
            )
        }
        Transport::Daemon => {
            let v = server_env("daemon", &["TEST_GIT_ROOT", "TEST_GIT_DAEMON_URL"])?;
            (
                format!("{}/{name}.git", v[1]),
                Path::new(&v[0]).join(format!("{name}.git")),
                Arc::new(NoCredentials),
                None,
            )
        }
        Transport::Ssh => {
            let v = server_env(
                "ssh",
                &[
                    "TEST_GIT_ROOT",
                    "TEST_GIT_SSH_URL",
                    "TEST_GIT_SSH_KEY",
                    "TEST_GIT_SSH_KNOWN_HOSTS",
                ],
            )?;
            let key = std::fs::read_to_string(&v[2]).unwrap();
            let known_hosts = std::fs::read_to_string(&v[3]).unwrap();
            let creds = StaticCredentials::new().with_credentials(
                CredentialKind::Git,
                &v[1],
                Credentials::ssh_key(key, Some(known_hosts)),
            );
            (
                format!("{}/{name}.git", v[1]),
                Path::new(&v[0]).join(format!("{name}.git")),
                Arc::new(creds),
                None,
            )
        }
    };
    let seed = seed(&bare, files);
    Some(Remote {
        url,
        bare,
        seed,
        creds,
        _tmp: tmp,
    })
}

fn file_remote(name: &str) -> Remote {
    remote(Transport::File, name, &many_files()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Clone → edit one file → commit → push, over every transport

async fn clone_edit_commit_push(t: Transport) {
    let files = many_files();
    let Some(remote) = remote(t, "e2e", &files) else {
        return;
    };
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let edited = "apps/app-7/values.yaml";
    // No branch: the remote's default branch is checked out.
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url,
            "checkout": [{"path": "./repo"}],
            "author": {"name": "Promoter", "email": "promoter@example.com"},
        }},
        {"alias": "edit", "uses": "test-edit", "config": {
            "path": format!("repo/{edited}"), "contents": "image: v2\napp: 7\n",
        }},
        {"alias": "commit", "uses": "git-commit", "config": {
            "path": "./repo", "message": "Promote v2 to dev",
        }},
        {"alias": "push", "uses": "git-push", "config": {"path": "./repo"}},
    ]));
    let p = promotion(
        work.path(),
        "dev.01promo.abcdef0",
        plan,
        remote.creds.clone(),
    );
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);

    assert_eq!(
        output(&r, "clone", "commits"),
        &json!({"./repo": remote.seed})
    );
    let head = git(&remote.bare, &["rev-parse", "main"]);
    assert_eq!(output(&r, "push", "commit"), &json!(head));
    assert_eq!(output(&r, "push", "branch"), &json!("main"));
    assert_eq!(output(&r, "commit", "commit"), &json!(head));
    assert!(r.step("push").unwrap().outputs.get("commitURL").is_none());

    // Only the edited file was ever written to disk.
    let on_disk = files_under(&work.path().join("repo"));
    assert_eq!(on_disk, BTreeSet::from([edited.to_owned()]), "{t:?}");

    // A fresh clone has the change, the message, the author and every other file.
    let clone = fresh_clone(&remote.bare, "main");
    assert_eq!(
        std::fs::read_to_string(clone.path().join(edited)).unwrap(),
        "image: v2\napp: 7\n"
    );
    assert_eq!(
        git(
            clone.path(),
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"]
        ),
        "Promoter <promoter@example.com>|Promoter <promoter@example.com>|Promote v2 to dev"
    );
    assert_eq!(
        git(clone.path(), &["rev-parse", "HEAD~1"]),
        remote.seed,
        "the promotion commit's parent is the seed"
    );
    let tracked = git(clone.path(), &["ls-files"]);
    assert_eq!(tracked.lines().count(), files.len());
    assert_eq!(
        std::fs::read_to_string(clone.path().join("apps/app-8/values.yaml")).unwrap(),
        "image: v1\napp: 8\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_clone_edit_commit_push() {
    clone_edit_commit_push(Transport::File).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_clone_edit_commit_push() {
    clone_edit_commit_push(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_clone_edit_commit_push() {
    clone_edit_commit_push(Transport::Daemon).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_clone_edit_commit_push() {
    clone_edit_commit_push(Transport::Ssh).await;
}

// ---------------------------------------------------------------------------------------
// Step behaviour (file://)

#[tokio::test(flavor = "multi_thread")]
async fn commit_without_changes_is_skipped_with_head() {
    let remote = file_remote("noop");
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url,
            "checkout": [{"path": "repo", "branch": "main", "as": "src", "sparse": ["docs"]}],
        }},
        {"alias": "read", "uses": "test-edit", "config": {"path": "repo/README.md"}},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": "nothing"}},
    ]));
    let p = promotion(work.path(), "p", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(output(&r, "clone", "commits"), &json!({"src": remote.seed}));
    let commit = r.step("commit").unwrap();
    assert_eq!(
        commit.status,
        kargo_core::runner::StepExecutionStatus::Skipped
    );
    assert_eq!(commit.outputs.get("commit"), Some(&json!(remote.seed)));
    assert_eq!(git(&remote.bare, &["rev-parse", "main"]), remote.seed);
    // The sparse directory was written up front, plus the one file a step opened.
    let on_disk = files_under(&work.path().join("repo"));
    let mut expected: BTreeSet<String> = (0..60).map(|i| format!("docs/page-{i}.md")).collect();
    expected.insert("README.md".into());
    assert_eq!(on_disk, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_branch_the_remotes_default_branch_is_checked_out() {
    let remote = file_remote("head");
    // HEAD -> trunk, one commit ahead of main.
    git(&remote.bare, &["branch", "trunk", "main"]);
    let work = TempDir::new().unwrap();
    let c = fresh_clone(&remote.bare, "trunk");
    std::fs::write(c.path().join("README.md"), "trunk\n").unwrap();
    git(c.path(), &["commit", "-q", "-am", "trunk"]);
    git(c.path(), &["push", "-q", "origin", "trunk"]);
    git(&remote.bare, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    let trunk = git(&remote.bare, &["rev-parse", "trunk"]);
    let cache = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo", "as": "gitops"}],
        }},
        {"alias": "read", "uses": "test-edit", "config": {"path": "repo/README.md"}},
    ]));
    let p = promotion(work.path(), "p", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(output(&r, "clone", "commits"), &json!({"gitops": trunk}));
    assert_eq!(
        std::fs::read_to_string(work.path().join("repo/README.md")).unwrap(),
        "trunk\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_target_branch_pushes_to_promotion_branch() {
    let remote = file_remote("gen");
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let name = "prod.01jz8k3m.abc1234";
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
        }},
        {"alias": "edit", "uses": "test-edit", "config": {
            "path": "repo/env/prod/values.yaml", "contents": "image: v3\n",
        }},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": "v3"}},
        {"alias": "push", "uses": "git-push", "config": {
            "path": "repo", "generateTargetBranch": true, "provider": "github",
        }},
    ]));
    let p = promotion(work.path(), name, plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let branch = format!("kargo/promotion/{name}");
    assert_eq!(output(&r, "push", "branch"), &json!(branch));
    let head = git(&remote.bare, &["rev-parse", &branch]);
    assert_eq!(output(&r, "push", "commit"), &json!(head));
    // main is untouched; a file:// URL has no web URL even with a provider.
    assert_eq!(git(&remote.bare, &["rev-parse", "main"]), remote.seed);
    assert!(r.step("push").unwrap().outputs.get("commitURL").is_none());
    assert_eq!(
        git(
            &remote.bare,
            &["show", &format!("{branch}:env/prod/values.yaml")]
        ),
        "image: v3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_and_push_tag() {
    let remote = file_remote("tag");
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
            "author": {"name": "Releaser", "email": "rel@example.com"},
        }},
        {"alias": "edit", "uses": "test-edit", "config": {"path": "repo/README.md", "append": "v1.0.0\n"}},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": "release"}},
        {"alias": "tag", "uses": "git-tag", "config": {
            "path": "repo", "tag": "v1.0.0", "message": "Release 1.0.0",
        }},
        {"alias": "push", "uses": "git-push", "config": {"path": "repo", "tag": "v1.0.0"}},
    ]));
    let p = promotion(work.path(), "p", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    let commit = output(&r, "commit", "commit").as_str().unwrap().to_owned();
    assert_eq!(output(&r, "tag", "commit"), &json!(commit));
    assert_eq!(output(&r, "push", "commit"), &json!(commit));
    assert_eq!(output(&r, "push", "tag"), &json!("v1.0.0"));
    assert_eq!(git(&remote.bare, &["cat-file", "-t", "v1.0.0"]), "tag");
    assert_eq!(git(&remote.bare, &["rev-parse", "v1.0.0^{commit}"]), commit);
    assert_eq!(
        git(
            &remote.bare,
            &[
                "tag",
                "-l",
                "--format=%(contents:subject)|%(taggername)",
                "v1.0.0"
            ]
        ),
        "Release 1.0.0|Releaser"
    );
    // Only the tag was pushed.
    assert_eq!(git(&remote.bare, &["rev-parse", "main"]), remote.seed);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_push_records_instead_of_pushing() {
    let remote = file_remote("dry");
    let cache = TempDir::new().unwrap();
    let refs_before = git(&remote.bare, &["show-ref"]);
    let plan = |push: Json| {
        steps(json!([
            {"alias": "clone", "uses": "git-clone", "config": {
                "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
            }},
            {"alias": "edit", "uses": "test-edit", "config": {
                "path": "repo/env/prod/values.yaml", "contents": "image: v2\n",
            }},
            {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": "v2\n\nbody"}},
            {"alias": "tag", "uses": "git-tag", "config": {"path": "repo", "tag": "v2"}},
            {"alias": "push", "uses": "git-push", "config": push},
            {"alias": "after", "uses": "compose-output", "config": {
                "pushed": "${{ outputs.push.commit }}",
                "status": "${{ status('push') }}",
            }},
        ]))
    };
    for (push, branch) in [
        (json!({"path": "repo"}), "main".to_owned()),
        (
            json!({"path": "repo", "generateTargetBranch": true}),
            "kargo/promotion/dev.01dry.abc1234".to_owned(),
        ),
        (json!({"path": "repo", "tag": "v2"}), String::new()),
    ] {
        let work = TempDir::new().unwrap();
        let mut p = promotion(
            work.path(),
            "dev.01dry.abc1234",
            plan(push),
            remote.creds.clone(),
        );
        p.dry_run = true;
        let r = runner(cache.path(), None).run(&p).await;
        assert_phase(&r, PromotionPhase::Succeeded);
        let commit = output(&r, "commit", "commit").as_str().unwrap().to_owned();
        let push = r.step("push").unwrap();
        assert_eq!(push.status, StepExecutionStatus::Skipped);
        assert!(
            push.message.as_deref().unwrap().starts_with("dry run"),
            "{push:?}"
        );
        assert_eq!(output(&r, "push", "commit"), &json!(commit));
        assert_eq!(
            r.state["after"],
            json!({"pushed": commit, "status": "Skipped"})
        );
        assert_eq!(r.step("tag").unwrap().status, StepExecutionStatus::Skipped);
        let log = r.dry_run.as_ref().unwrap();
        assert_eq!(log.files.len(), 1, "{log:#?}");
        assert_eq!(log.files[0].path, "env/prod/values.yaml");
        assert_eq!(log.files[0].repo_url, remote.url);
        assert_eq!(
            log.files[0].diff,
            "--- a/env/prod/values.yaml\n+++ b/env/prod/values.yaml\n@@ -1 +1 @@\n-image: v1\n+image: v2\n"
        );
        assert_eq!(log.pushes.len(), 1);
        let planned = &log.pushes[0];
        assert_eq!(planned.branch, branch);
        assert_eq!(planned.tag.is_some(), branch.is_empty());
        assert_eq!(planned.commit, commit);
        assert_eq!(planned.message, "v2\n\nbody");
        assert_eq!(
            planned.commits,
            vec![(commit.clone(), "v2\n\nbody".to_owned())]
        );
        assert_eq!(planned.step, "push");
        if branch.is_empty() {
            assert_eq!(output(&r, "push", "tag"), &json!("v2"));
        } else {
            assert_eq!(output(&r, "push", "branch"), &json!(branch));
        }
        // Nothing reached the remote.
        assert_eq!(git(&remote.bare, &["show-ref"]), refs_before);
    }
    // The dry runs left no tag in the mirror: a real run can still create it.
    let work = TempDir::new().unwrap();
    let p = promotion(
        work.path(),
        "dev.01real.abc1234",
        plan(json!({"path": "repo"})),
        remote.creds.clone(),
    );
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(
        r.step("push").unwrap().status,
        StepExecutionStatus::Succeeded
    );
    assert_eq!(r.dry_run, None);
    assert_eq!(
        git(&remote.bare, &["show", "main:env/prod/values.yaml"]),
        "image: v2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_makes_an_orphan_branch_that_push_creates() {
    let remote = file_remote("orphan");
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url,
            "checkout": [
                {"path": "src", "branch": "main"},
                {"path": "out", "branch": "stage/prod", "create": true},
            ],
        }},
        {"alias": "render", "uses": "test-edit", "config": {
            "path": "out/manifest.yaml", "contents": "kind: ConfigMap\n",
        }},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "out", "message": "render"}},
        {"alias": "push", "uses": "git-push", "config": {"path": "out"}},
    ]));
    let p = promotion(work.path(), "p", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(
        output(&r, "clone", "commits"),
        &json!({"src": remote.seed, "out": ""})
    );
    assert_eq!(output(&r, "push", "branch"), &json!("stage/prod"));
    let head = git(&remote.bare, &["rev-parse", "stage/prod"]);
    assert_eq!(output(&r, "push", "commit"), &json!(head));
    // A root commit holding only the rendered file.
    assert_eq!(
        git(
            &remote.bare,
            &["rev-list", "--parents", "-n", "1", "stage/prod"]
        ),
        head
    );
    assert_eq!(
        git(
            &remote.bare,
            &["ls-tree", "-r", "--name-only", "stage/prod"]
        ),
        "manifest.yaml"
    );
    assert!(files_under(&work.path().join("src")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_then_commit_replaces_the_tree() {
    let remote = file_remote("clear");
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "out", "branch": "main", "sparse": ["docs"]}],
        }},
        {"alias": "clear", "uses": "git-clear", "config": {"path": "out"}},
        {"alias": "render", "uses": "test-edit", "config": {
            "path": "out/all.yaml", "contents": "rendered: true\n",
        }},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "out", "message": "render"}},
        {"alias": "push", "uses": "git-push", "config": {"path": "out", "targetBranch": "rendered"}},
    ]));
    let p = promotion(work.path(), "p", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(output(&r, "push", "branch"), &json!("rendered"));
    assert_eq!(
        git(&remote.bare, &["ls-tree", "-r", "--name-only", "rendered"]),
        "all.yaml"
    );
    assert_eq!(git(&remote.bare, &["rev-parse", "rendered~1"]), remote.seed);
}

/// Two promotions clone the same tip, commit, and push at the same time.
async fn race(edit_a: (&str, &str), edit_b: (&str, &str)) -> (Remote, Vec<PromotionResult>) {
    let remote = file_remote("race");
    let cache = TempDir::new().unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let runner = runner(cache.path(), Some(barrier));
    let plan = |(path, contents): (&str, &str), msg: &str| {
        steps(json!([
            {"alias": "clone", "uses": "git-clone", "config": {
                "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
            }},
            {"alias": "edit", "uses": "test-edit", "config": {
                "path": format!("repo/{path}"), "contents": contents,
            }},
            {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": msg}},
            {"alias": "wait", "uses": "test-barrier"},
            {"alias": "push", "uses": "git-push", "config": {"path": "repo", "maxAttempts": 3}},
        ]))
    };
    let (wa, wb) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let pa = promotion(
        wa.path(),
        "a",
        plan(edit_a, "promote a"),
        remote.creds.clone(),
    );
    let pb = promotion(
        wb.path(),
        "b",
        plan(edit_b, "promote b"),
        remote.creds.clone(),
    );
    let (ra, rb) = tokio::join!(runner.run(&pa), runner.run(&pb));
    (remote, vec![ra, rb])
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_promotions_on_one_branch_both_land() {
    let (remote, results) = race(
        ("apps/app-1/values.yaml", "image: a\n"),
        ("apps/app-2/values.yaml", "image: b\n"),
    )
    .await;
    for r in &results {
        assert_phase(r, PromotionPhase::Succeeded);
    }
    let head = git(&remote.bare, &["rev-parse", "main"]);
    let pushed: Vec<&str> = results
        .iter()
        .map(|r| output(r, "push", "commit").as_str().unwrap())
        .collect();
    assert!(pushed.contains(&head.as_str()));
    // The later push was rejected and rebased: its commit was rewritten onto the other.
    let (first, second) = if pushed[0] == head { (1, 0) } else { (0, 1) };
    assert_ne!(
        output(&results[second], "commit", "commit"),
        output(&results[second], "push", "commit"),
        "the second push should carry a rebased commit"
    );
    assert_eq!(
        output(&results[first], "commit", "commit"),
        output(&results[first], "push", "commit")
    );
    assert_eq!(git(&remote.bare, &["rev-parse", "main~1"]), pushed[first]);
    assert_eq!(git(&remote.bare, &["rev-parse", "main~2"]), remote.seed);
    assert_eq!(
        git(&remote.bare, &["show", "main:apps/app-1/values.yaml"]),
        "image: a"
    );
    assert_eq!(
        git(&remote.bare, &["show", "main:apps/app-2/values.yaml"]),
        "image: b"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_edits_fail_naming_the_file() {
    let file = "apps/app-3/values.yaml";
    let (remote, results) = race((file, "image: a\n"), (file, "image: b\n")).await;
    let phases: Vec<PromotionPhase> = results.iter().map(|r| r.phase).collect();
    assert!(
        phases.contains(&PromotionPhase::Succeeded) && phases.contains(&PromotionPhase::Failed),
        "{phases:?}: {:?}",
        results.iter().map(|r| &r.message).collect::<Vec<_>>()
    );
    let failed = results
        .iter()
        .find(|r| r.phase == PromotionPhase::Failed)
        .unwrap();
    let push = failed.step("push").unwrap();
    assert_eq!(push.status, kargo_core::runner::StepExecutionStatus::Failed);
    let msg = push.message.clone().unwrap_or_default();
    assert!(msg.contains(file), "{msg}");
    // The remote holds the winner's change only.
    let winner = results
        .iter()
        .find(|r| r.phase == PromotionPhase::Succeeded)
        .unwrap();
    assert_eq!(
        git(&remote.bare, &["rev-parse", "main"]),
        output(winner, "push", "commit").as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_keys_are_refused() {
    let remote = file_remote("sign");
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo"}],
            "author": {"name": "a", "email": "a@example.com", "signingKey": "KEY"},
        }},
    ]));
    let p = promotion(work.path(), "p", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Errored);
    let msg = r.step("clone").unwrap().message.clone().unwrap();
    assert!(msg.contains("commit signing is not supported yet"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Credentials (smart HTTP)

#[tokio::test(flavor = "multi_thread")]
async fn http_wrong_password_is_unauthorized() {
    let Some(mut remote) = remote(Transport::Http, "auth", &many_files()) else {
        return;
    };
    let v = server_env("http", &["TEST_GIT_HTTP_URL", "TEST_GIT_HTTP_USER"]).unwrap();
    let wrong = "wr0ng-Passw0rd-7f3a9c";
    remote.creds =
        Arc::new(StaticCredentials::new().with(CredentialKind::Git, &v[0], &v[1], wrong));
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let registry = registry(cache.path(), None);
    let ctx = StepContext::new(WorkDir::new(work.path()).unwrap())
        .with_credentials(remote.creds.clone())
        .with_extensions(Extensions::default());
    let run = |kind: &'static str, config: Json| {
        let step = registry.get(kind).unwrap().clone();
        let ctx = ctx.clone();
        async move { step.run_json(&ctx, config).await }
    };
    // Reads are anonymous on the test server: the clone works, the push is refused.
    run(
        "git-clone",
        json!({"repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}]}),
    )
    .await
    .unwrap();
    std::fs::write(ctx.path("repo/README.md").unwrap(), "changed\n").unwrap();
    run("git-commit", json!({"path": "repo", "message": "m"}))
        .await
        .unwrap();
    let e = run("git-push", json!({"path": "repo"})).await.unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Unauthorized, "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    assert_eq!(git(&remote.bare, &["rev-parse", "main"]), remote.seed);
}

/// Replaying `git-tag` (a resumed promotion rebuilding its work directory) on a commit that
/// the tag names already is `Skipped` with the same output; on another commit it is still
/// refused without `force`.
#[tokio::test(flavor = "multi_thread")]
async fn git_tag_on_a_commit_tagged_so_already_is_skipped() {
    let remote = file_remote("retag");
    let cache = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
        }},
        {"alias": "tag", "uses": "git-tag", "config": {"path": "repo", "tag": "v1", "message": "v1"}},
    ]));
    let mut commits = Vec::new();
    for expected in [StepExecutionStatus::Succeeded, StepExecutionStatus::Skipped] {
        let work = TempDir::new().unwrap();
        let p = promotion(
            work.path(),
            "dev.01tag.abc1234",
            plan.clone(),
            remote.creds.clone(),
        );
        let r = runner(cache.path(), None).run(&p).await;
        assert_phase(&r, PromotionPhase::Succeeded);
        assert_eq!(r.step("tag").unwrap().status, expected, "{r:#?}");
        commits.push(output(&r, "tag", "commit").clone());
    }
    assert_eq!(commits[0], commits[1]);

    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "repo", "branch": "main"}],
        }},
        {"alias": "edit", "uses": "test-edit", "config": {"path": "repo/new.txt", "contents": "x\n"}},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "repo", "message": "new"}},
        {"alias": "tag", "uses": "git-tag", "config": {"path": "repo", "tag": "v1"}},
    ]));
    let p = promotion(work.path(), "dev.01tag.abc1234", plan, remote.creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Errored);
}

// ---------------------------------------------------------------------------------------
// The default committer identity (Kargo's ClusterConfig `spec.gitClient`)

/// With `GitConfig::default_author` set, a clone that names no `author` commits as that
/// identity; one that names an author keeps its own.
#[tokio::test(flavor = "multi_thread")]
async fn default_author_applies_when_the_clone_names_none() {
    let remote = remote(Transport::File, "default-author", &many_files()).unwrap();
    let cache = TempDir::new().unwrap();
    let mut git_cfg = git_config(cache.path());
    git_cfg.default_author = Some(kargo_git::Signature::new(
        "Platform Bot",
        "bot@platform.example",
    ));
    let mut reg = StepRegistry::new();
    register_builtins_with(&mut reg, &BuiltinOptions::with_git(git_cfg)).unwrap();
    reg.register(EditFile).unwrap();
    let runner = Runner::new(reg);
    for (n, author) in [
        (1, None),
        (2, Some(json!({"name": "Own", "email": "own@example.com"}))),
    ] {
        let work = TempDir::new().unwrap();
        let mut clone = json!({"repoURL": remote.url, "checkout": [{"path": "./repo"}]});
        if let Some(a) = &author {
            clone["author"] = a.clone();
        }
        let plan = steps(json!([
            {"alias": "clone", "uses": "git-clone", "config": clone},
            {"alias": "edit", "uses": "test-edit", "config": {
                "path": "repo/apps/app-1/values.yaml", "contents": format!("image: v{n}\n"),
            }},
            {"alias": "commit", "uses": "git-commit", "config": {"path": "./repo", "message": "m"}},
            {"alias": "push", "uses": "git-push", "config": {"path": "./repo"}},
        ]));
        let p = promotion(
            work.path(),
            "dev.01promo.abcdef0",
            plan,
            remote.creds.clone(),
        );
        let r = runner.run(&p).await;
        assert_phase(&r, PromotionPhase::Succeeded);
        let clone = fresh_clone(&remote.bare, "main");
        let who = git(clone.path(), &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]);
        let expected = match author {
            None => "Platform Bot <bot@platform.example>|Platform Bot <bot@platform.example>",
            Some(_) => "Own <own@example.com>|Own <own@example.com>",
        };
        assert_eq!(who, expected);
    }
}

// ---------------------------------------------------------------------------------------
// insecureSkipTLSVerify against the HTTPS server with a self-signed certificate

#[tokio::test(flavor = "multi_thread")]
async fn https_self_signed_clone_needs_insecure_skip_tls_verify() {
    let Some(v) = server_env(
        "https",
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTPS_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    ) else {
        return;
    };
    let name = unique("tls");
    let bare = Path::new(&v[0]).join(format!("{name}.git"));
    let seeded = seed(&bare, &many_files());
    let url = format!("{}/{name}.git", v[1]);
    let creds: Arc<dyn CredentialProvider> =
        Arc::new(StaticCredentials::new().with(CredentialKind::Git, &v[1], &v[2], &v[3]));
    let plan = |insecure: bool| {
        steps(json!([
            {"alias": "clone", "uses": "git-clone", "config": {
                "repoURL": url, "insecureSkipTLSVerify": insecure,
                "checkout": [{"branch": "main", "path": "./repo"}],
            }},
            {"alias": "edit", "uses": "test-edit", "config": {
                "path": "repo/apps/app-1/values.yaml", "contents": "image: tls\n",
            }},
            {"alias": "commit", "uses": "git-commit", "config": {
                "path": "./repo", "message": "Over TLS",
            }},
            {"alias": "push", "uses": "git-push", "config": {"path": "./repo"}},
        ]))
    };

    // Verified (the default): the clone fails with a certificate error.
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let p = promotion(work.path(), "dev.01tls.0000001", plan(false), creds.clone());
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Errored);
    let clone = r.step("clone").unwrap();
    let message = clone.message.clone().unwrap_or_default();
    assert!(
        message.to_ascii_lowercase().contains("certificate"),
        "not a certificate error: {message}"
    );
    assert_eq!(git(&bare, &["rev-parse", "main"]), seeded);

    // insecureSkipTLSVerify: clone, commit and push succeed over the same server.
    let work = TempDir::new().unwrap();
    let p = promotion(work.path(), "dev.01tls.0000002", plan(true), creds);
    let r = runner(cache.path(), None).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(output(&r, "clone", "commits"), &json!({"./repo": seeded}));
    let head = git(&bare, &["rev-parse", "main"]);
    assert_ne!(head, seeded);
    assert_eq!(output(&r, "push", "commit"), &json!(head));
}

// ---------------------------------------------------------------------------------------
// Shallow mirrors (issue 19): a cold clone fetches the branch tip only

/// Commits `contents` to `file` on `main` of the bare repository `bare` with the git CLI
/// (another writer moving the remote in the middle of a promotion).
struct MoveRemote;

#[derive(Deserialize)]
struct MoveRemoteConfig {
    bare: String,
    file: String,
    contents: String,
}

#[async_trait]
impl Step for MoveRemote {
    const KIND: &'static str = "test-move-remote";
    type Config = MoveRemoteConfig;

    async fn run(
        &self,
        _ctx: &StepContext,
        cfg: MoveRemoteConfig,
    ) -> Result<StepOutcome, StepError> {
        let clone = fresh_clone(Path::new(&cfg.bare), "main");
        let p = clone.path().join(&cfg.file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, cfg.contents).unwrap();
        git(clone.path(), &["commit", "-q", "-am", "another writer"]);
        git(clone.path(), &["push", "-q", "origin", "main"]);
        Ok(StepOutcome::succeeded())
    }
}

/// Over the real smart-HTTP server: a git-clone with an empty cache makes a depth-1,
/// blobless mirror (its shallow boundary is the tip it cloned, whose parent it does not
/// hold; it holds only the blobs the promotion read);
/// the remote moves between the commit and the push; the push lands on the remote's new
/// tip (rebased), the remote accepts it and its history is intact.
#[tokio::test(flavor = "multi_thread")]
async fn http_cold_clone_is_shallow_and_pushes_after_the_remote_moved() {
    let Some(remote) = remote(Transport::Http, "shallow", &many_files()) else {
        return;
    };
    // Three commits of history, so depth 1 is visibly less than all of it.
    for i in 0..2 {
        let clone = fresh_clone(&remote.bare, "main");
        std::fs::write(clone.path().join("README.md"), format!("# gitops {i}\n")).unwrap();
        git(
            clone.path(),
            &["commit", "-q", "-am", &format!("history {i}")],
        );
        git(clone.path(), &["push", "-q", "origin", "main"]);
    }
    let cloned_tip = git(&remote.bare, &["rev-parse", "main"]);
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": remote.url, "checkout": [{"path": "./repo", "branch": "main"}],
        }},
        {"alias": "edit", "uses": "test-edit", "config": {
            "path": "repo/apps/app-3/values.yaml", "contents": "image: v9\napp: 3\n",
        }},
        {"alias": "commit", "uses": "git-commit", "config": {
            "path": "./repo", "message": "promote v9",
        }},
        {"alias": "move", "uses": "test-move-remote", "config": {
            "bare": remote.bare.to_str().unwrap(), "file": "docs/page-1.md", "contents": "moved\n",
        }},
        {"alias": "push", "uses": "git-push", "config": {"path": "./repo"}},
    ]));
    let mut reg = registry(cache.path(), None);
    reg.register(MoveRemote).unwrap();
    let p = promotion(work.path(), "dev.shallow", plan, remote.creds.clone());
    let r = Runner::new(reg).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);

    // The mirror is shallow: its one boundary commit is the tip the clone fetched.
    let mirrors: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "git"))
        .collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
    let shallow = std::fs::read_to_string(mirrors[0].join("shallow")).unwrap();
    assert_eq!(shallow.trim(), cloned_tip, "depth 1: only the cloned tip");
    let parent_of_tip = git(&remote.bare, &["rev-parse", &format!("{cloned_tip}~1")]);
    // (GIT_NO_LAZY_FETCH: the mirror is a promisor repository, git would fetch it.)
    let holds = |id: &str| {
        Command::new("git")
            .args(["cat-file", "-e", id])
            .current_dir(&mirrors[0])
            .env("GIT_NO_LAZY_FETCH", "1")
            .status()
            .unwrap()
            .success()
    };
    assert!(
        !holds(&parent_of_tip),
        "the mirror must not hold history behind the tip"
    );
    // Blobless: the files no step read are not in the mirror.
    let untouched = git(&remote.bare, &["rev-parse", "main:apps/app-8/values.yaml"]);
    assert!(!holds(&untouched), "a file nobody read was fetched");
    let edited_before = git(
        &remote.bare,
        &["rev-parse", &format!("{cloned_tip}:apps/app-3/values.yaml")],
    );
    assert!(
        holds(&edited_before),
        "the file the promotion read is there"
    );

    // The remote: the promotion on top of the other writer's commit, on top of the tip.
    let head = git(&remote.bare, &["rev-parse", "main"]);
    assert_eq!(output(&r, "push", "commit"), &json!(head));
    let moved = git(&remote.bare, &["rev-parse", "main~1"]);
    assert_eq!(git(&remote.bare, &["rev-parse", "main~2"]), cloned_tip);
    assert_eq!(
        git(&remote.bare, &["log", "-1", "--format=%s", &moved]),
        "another writer"
    );
    git(&remote.bare, &["fsck", "--no-progress"]);
    let clone = fresh_clone(&remote.bare, "main");
    assert_eq!(
        std::fs::read_to_string(clone.path().join("apps/app-3/values.yaml")).unwrap(),
        "image: v9\napp: 3\n"
    );
    assert_eq!(
        std::fs::read_to_string(clone.path().join("docs/page-1.md")).unwrap(),
        "moved\n"
    );
    assert_eq!(git(clone.path(), &["rev-list", "--count", "HEAD"]), "5");
}
