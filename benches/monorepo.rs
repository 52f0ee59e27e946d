//! Monorepo scale (issue 19): many Warehouses and many Stages on one GitOps repository,
//! the generated fixture (`KARGO_BENCH_SIZE=large`, the default: 10,000 apps, 80,000
//! files, 20,000 commits) served over smart HTTP (lighttpd + git-http-backend on
//! 127.0.0.1), through the library's service loop and its HTTP router, beside the git
//! command line doing the same work in the same run.
//!
//! - **Warehouses**: 57 Warehouses, 54 with one app directory each (`includePaths`) and 3
//!   on shared paths (every app's dev overlay; every app's base; everything but dev
//!   overlays). Each round pushes one commit changing the dev overlay of 3 of the 54 apps
//!   and sends one GitLab push webhook (no file list, so all 57 Warehouses refresh) to the
//!   router: the time until the pass it started is over, checked to have given new
//!   Freight to exactly the 3 apps' Warehouses and the dev-overlay one. Baseline: 57
//!   `git fetch` of the branch in 57 separate bare clones (what one clone per Warehouse
//!   costs), after the same push.
//! - **Stages**: 57 Stages, one per app, promoting new Freight into `main` at once
//!   (git-clone, yaml-update of the app's staging overlay, git-commit, git-push), sharing
//!   the Warehouses' git cache: the time from the Freight's arrival until all 57 hold it,
//!   every commit then checked on the server one by one, the pushes counted in the
//!   server's reflog, and the process's peak memory. Baseline: the git command line
//!   making the same 57 commits in one warm sparse clone, pushing each (57 sequential
//!   pushes).
//!
//! Run: `cargo bench --bench monorepo` (`KARGO_BENCH_SIZE=small|medium|large`; the fixture
//! is generated once and cached under `<target>/bench-fixtures/`).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark reports on the console

#[path = "support/fixture_cache.rs"]
mod fixture_cache;
#[path = "support/git_http_server.rs"]
mod git_http_server;
#[path = "support/gitops_fixture.rs"]
mod gitops_fixture;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixture_cache::cached_fixture;
use git_http_server::{random_password, start_http};
use gitops_fixture::{FixtureSpec, overlay_patch_path, retag};
use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::{PromotionPhase, Runner};
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::server::{ServerOptions, router};
use kargo::service::{RefreshRequest, Service, ServiceHandle, ServiceOptions};
use kargo::sources::git::GitSource;
use kargo::sources::memory::MemorySource;
use kargo::sources::webhook::WebhookRouter;
use kargo::steps::{BuiltinOptions, register_builtins_with};

/// Rounds per part (each a new push or new Freight).
const ROUNDS: usize = 5;
/// Rounds of the command line's baseline for the Stages (57 pushes each: slow, steady).
const CLI_ROUNDS: usize = 3;
/// Warehouses and Stages.
const N: usize = 57;
/// Warehouses with one app directory each (the rest are on shared paths).
const APP_WAREHOUSES: usize = 54;
/// The push user of the served repository.
const USER: &str = "kargo";
/// The environment variable git's credential helper reads the password from.
const PASS_ENV: &str = "KARGO_BENCH_PASS";
/// The image the Stages' Warehouse subscribes to.
const IMAGE: &str = "ghcr.io/acme/bench";

fn main() {
    let size = std::env::var("KARGO_BENCH_SIZE").unwrap_or_else(|_| "large".into());
    let spec = match size.as_str() {
        "small" => FixtureSpec::SMALL,
        "medium" => FixtureSpec::MEDIUM,
        "large" => FixtureSpec::LARGE,
        other => panic!("KARGO_BENCH_SIZE must be small, medium or large, not {other:?}"),
    };
    assert!(spec.apps >= N, "the fixture needs at least {N} apps");
    let fixture = cached_fixture(&size, &spec);
    let root = tempfile::Builder::new()
        .prefix("monorepo-")
        .tempdir()
        .expect("create bench temp dir");
    let srv = root.path().join("srv");
    fs::create_dir_all(&srv).expect("create srv dir");
    let served = srv.join("fixture.git");
    run(Command::new("cp").arg("-a").arg(&fixture).arg(&served));
    // Every update of `main` goes to the server's reflog: it counts the pushes.
    git_ok(&served, &["config", "core.logAllRefUpdates", "always"]);
    git_ok(&served, &["config", "uploadpack.allowFilter", "true"]);
    let password = random_password();
    let server = start_http(
        &srv,
        &root.path().join("server"),
        Some((USER, &password)),
        "fixture.git",
    );
    let url = format!("{}/fixture.git", server.url);
    let apps: Vec<usize> = (0..N).map(|k| k * (spec.apps / N)).collect();
    println!(
        "\n`monorepo` size `{size}`: {} apps ({} files), {} commits; {N} Warehouses, {N} Stages; {ROUNDS} rounds each\n",
        spec.apps,
        spec.apps * 8,
        spec.commits
    );

    let env = Env {
        root: root.path().to_owned(),
        served,
        url,
        password,
        apps,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cache = root.path().join("cache");
    let work = env.sparse_clone();
    // `KARGO_BENCH_PARTS=stages` skips the Warehouses (the Stages then start on an empty
    // git cache).
    let parts = std::env::var("KARGO_BENCH_PARTS").unwrap_or_else(|_| "warehouses,stages".into());
    if parts.contains("warehouses") {
        rt.block_on(warehouses(&env, &cache, &work));
    }
    if parts.contains("stages") {
        rt.block_on(stages(&env, &cache, &work));
    }
    drop(server);
}

/// What both parts share.
struct Env {
    root: PathBuf,
    served: PathBuf,
    url: String,
    password: String,
    /// The apps of the 57 Warehouses and Stages.
    apps: Vec<usize>,
}

impl Env {
    /// `git <args>` in `dir` with no user configuration, a fixed identity and the push
    /// password for the credential helper (never in argv); returns stdout.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.args([
            "-c",
            "credential.helper=",
            "-c",
            "credential.helper=!f() { echo username=kargo; echo \"password=$KARGO_BENCH_PASS\"; }; f",
        ])
        .args(args)
        .current_dir(dir)
        .env(PASS_ENV, &self.password);
        run(git_env(&mut cmd))
    }

    /// A depth-1, blobless, sparse clone of the served repository (the command line's
    /// cheapest way to edit a few files of it).
    fn sparse_clone(&self) -> PathBuf {
        let work = self.root.join("cli-work");
        self.git(
            &self.root,
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                "--filter=blob:none",
                "--sparse",
                &self.url,
                work.to_str().expect("UTF-8 path"),
            ],
        );
        let mut set = vec!["sparse-checkout", "set"];
        let dirs: Vec<String> = self
            .apps
            .iter()
            .map(|a| format!("apps/app-{a:05}/overlays"))
            .collect();
        set.extend(dirs.iter().map(String::as_str));
        self.git(&work, &set);
        work
    }

    /// Sets the image tag of `app`'s `stage` overlay to `tag` in the work tree.
    fn retag(&self, work: &Path, app: usize, stage: &str, tag: &str) -> String {
        let rel = overlay_patch_path(app, stage);
        let path = work.join(&rel);
        let old = fs::read_to_string(&path).expect("read overlay");
        fs::write(&path, retag(&old, tag).expect("an image line")).expect("write overlay");
        rel
    }
}

fn git_env(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Kargo Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@kargo.invalid")
        .env("GIT_COMMITTER_NAME", "Kargo Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@kargo.invalid")
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    run(git_env(Command::new("git").args(args).current_dir(dir)))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Warehouses' manifests, and each Warehouse's name by app.
fn warehouse_manifests(env: &Env) -> String {
    let mut m = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: mono}\n---\napiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\nmetadata: {name: mono, namespace: mono}\nspec:\n  webhookReceivers:\n  - name: gitlab\n    gitlab: {secretRef: {name: gitlab-hook}}\n",
    );
    let warehouse = |name: &str, paths: &str| {
        format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {{name: {name}, namespace: mono}}\nspec:\n  interval: 24h\n  subscriptions:\n  - git: {{repoURL: \"{}\", {paths}}}\n",
            env.url
        )
    };
    for &app in &env.apps[..APP_WAREHOUSES] {
        m.push_str(&warehouse(
            &format!("app-{app:05}"),
            &format!("includePaths: [apps/app-{app:05}]"),
        ));
    }
    m.push_str(&warehouse(
        "shared-dev",
        "includePaths: [\"glob:apps/*/overlays/dev/*\"]",
    ));
    m.push_str(&warehouse(
        "shared-base",
        "includePaths: [\"glob:apps/*/base/*\"]",
    ));
    m.push_str(&warehouse(
        "shared-not-dev",
        "includePaths: [apps], excludePaths: [\"glob:apps/*/overlays/dev/*\"]",
    ));
    m
}

/// Serves `router` on a free loopback port.
async fn listen(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// POSTs `body` to `path` with `headers`; returns the status.
fn post(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    resp.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {resp}"))
}

/// Warehouses' last Freight, by name.
async fn last_freight(controller: &Controller) -> BTreeMap<String, Option<String>> {
    let state = controller.state().await.expect("state");
    state
        .warehouses
        .iter()
        .map(|(name, w)| {
            (
                name.clone(),
                w.last_freight.as_ref().map(ToString::to_string),
            )
        })
        .collect()
}

async fn warehouses(env: &Env, cache: &Path, work: &Path) {
    let source = GitSource::new(kargo::git::GitConfig::new(cache));
    let mut sources = SourceRegistry::new();
    sources.register(source.clone()).expect("register git");
    let controller = Controller::new(
        ManifestSet::from_yaml_str("mono.yaml", &warehouse_manifests(env)).expect("manifests"),
        "mono",
        sources,
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .expect("controller");
    let token = random_password();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([(
        "gitlab-hook".to_owned(),
        BTreeMap::from([("secret-token".to_owned(), token.clone())]),
    )]);
    let config = controller
        .manifests()
        .project_config("mono")
        .expect("ProjectConfig")
        .clone();
    let webhooks = WebhookRouter::new("mono", &config, &secrets);
    let hook = webhooks
        .routes()
        .next()
        .expect("a webhook route")
        .path
        .clone();
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let addr = listen(router(
        handle.clone(),
        webhooks,
        ServerOptions::default().with_insecure_anonymous_access(),
    ))
    .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    handle.wait_until_sleeping(1).await;
    let cold = started.elapsed();
    let mut before = last_freight(&controller).await;
    assert!(
        before.values().all(Option::is_some),
        "every Warehouse found Freight: {before:?}"
    );
    let cold_stats = source.stats();
    println!(
        "first pass (cold cache: clone, {N} Warehouses' first discovery): {} ({} fetches, {} tree diffs)",
        ms(cold),
        cold_stats.fetches,
        cold_stats.tree_diffs
    );

    // 57 separate bare clones for the command line's baseline (copies of one clone:
    // hard links, so no disk is wasted; every fetch writes its own pack).
    let clones = env.root.join("cli-clones");
    fs::create_dir_all(&clones).expect("create clones dir");
    let first = clones.join("w-0.git");
    env.git(
        &clones,
        &[
            "clone",
            "-q",
            "--bare",
            &env.url,
            first.to_str().expect("UTF-8"),
        ],
    );
    for i in 1..N {
        run(Command::new("cp")
            .arg("-al")
            .arg(&first)
            .arg(clones.join(format!("w-{i}.git"))));
    }

    let body = format!(
        "{{\"object_kind\":\"push\",\"ref\":\"refs/heads/main\",\"project\":{{\"git_http_url\":\"{}\",\"default_branch\":\"main\"}}}}",
        env.url
    );
    let mut ours = Vec::new();
    let mut cli = Vec::new();
    for round in 0..ROUNDS {
        // One commit changing the dev overlay of three of the 54 apps' Warehouses.
        let touched: Vec<usize> = (0..3)
            .map(|j| env.apps[(round * 3 + j * 17) % APP_WAREHOUSES])
            .collect();
        env.git(work, &["pull", "-q", "--rebase"]);
        let tag = format!("9.{round}.0");
        for &app in &touched {
            let rel = env.retag(work, app, "dev", &tag);
            env.git(work, &["add", &rel]);
        }
        env.git(
            work,
            &["commit", "-q", "-m", &format!("three apps to {tag}")],
        );
        env.git(work, &["push", "-q", "origin", "HEAD:main"]);

        let stats = source.stats();
        let passes = handle.status().passes;
        let t = Instant::now();
        let status = tokio::task::spawn_blocking({
            let (hook, body, token) = (hook.clone(), body.clone(), token.clone());
            move || {
                post(
                    addr,
                    &hook,
                    &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", &token)],
                    &body,
                )
            }
        })
        .await
        .expect("post");
        assert_eq!(status, 202, "the webhook was accepted");
        handle.wait_until_sleeping(passes + 1).await;
        ours.push(t.elapsed());
        let after = last_freight(&controller).await;
        let moved: Vec<&str> = after
            .iter()
            .filter(|(name, f)| before.get(*name) != Some(f))
            .map(|(name, _)| name.as_str())
            .collect();
        let mut expected: Vec<String> = touched.iter().map(|a| format!("app-{a:05}")).collect();
        expected.push("shared-dev".into());
        expected.sort();
        assert_eq!(moved, expected, "exactly the affected Warehouses moved");
        let now = source.stats();
        assert_eq!(now.fetches - stats.fetches, 1, "one fetch: {now:?}");
        assert_eq!(
            now.tree_diffs - stats.tree_diffs,
            1,
            "one tree diff: {now:?}"
        );
        before = after;

        let t = Instant::now();
        for i in 0..N {
            env.git(
                &clones.join(format!("w-{i}.git")),
                &["fetch", "-q", "origin", "+refs/heads/main:refs/heads/main"],
            );
        }
        cli.push(t.elapsed());
    }
    let _ = stop.send(());
    task.await.expect("service task");
    println!("\n| webhook to new Freight ({N} Warehouses, 3 + 1 affected) | median | min |");
    println!("|---|---|---|");
    println!(
        "| kargo: one webhook, one fetch, one tree diff | {} | {} |",
        ms(median(&ours)),
        ms(min(&ours))
    );
    println!(
        "| git: {N} `git fetch` in {N} bare clones, one after another | {} | {} |",
        ms(median(&cli)),
        ms(min(&cli))
    );
}

/// The Stages' manifests: one Warehouse (the in-memory image source) and 57 Stages, one
/// per app, each writing the new tag into its app's staging overlay.
fn stage_manifests(env: &Env) -> String {
    let mut m = format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {{name: stages}}\n---\napiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\nmetadata: {{name: stages, namespace: stages}}\nspec:\n  promotionPolicies:\n  - stageSelector: {{name: \"glob:*\"}}\n    autoPromotionEnabled: true\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: gitops\n  namespace: stages\n  labels: {{kargo.akuity.io/cred-type: git}}\nstringData: {{repoURL: \"{url}\", username: {USER}, password: \"{pw}\"}}\n---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {{name: image, namespace: stages}}\nspec:\n  interval: 24h\n  subscriptions:\n  - image: {{repoURL: {IMAGE}}}\n",
        url = env.url,
        pw = env.password
    );
    for &app in &env.apps {
        let file = overlay_patch_path(app, "staging");
        m.push_str(&format!(
            r#"---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: app-{app:05}, namespace: stages}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: image}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: "{url}"
          checkout: [{{branch: main, path: ./repo}}]
      - uses: yaml-update
        config:
          path: ./repo/{file}
          updates:
          - key: spec.template.spec.containers.0.image
            value: "ghcr.io/acme/app-{app:05}:${{{{ imageFrom('{IMAGE}').Tag }}}}"
      - uses: git-commit
        config: {{path: ./repo, message: "app-{app:05} to ${{{{ imageFrom('{IMAGE}').Tag }}}}"}}
      - uses: git-push
        config: {{path: ./repo}}
"#,
            url = env.url
        ));
    }
    m
}

fn image(tag: &str, n: usize) -> kargo::core::source::DiscoveredImage {
    kargo::sources::memory::image(tag, &format!("sha256:{n:064x}"))
}

/// Peak RSS of this process since the last reset, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

async fn until_all_promoted(controller: &Controller, handle: &ServiceHandle, freight: &str) {
    loop {
        let state = controller.state().await.expect("state");
        let done = state
            .stages
            .values()
            .filter(|s| {
                s.current()
                    .is_some_and(|c| c.items.values().any(|r| r.name.to_string() == freight))
            })
            .count();
        if done == N {
            return;
        }
        let failed: Vec<String> = state
            .stages
            .iter()
            .filter_map(|(name, s)| {
                let last = s.last_promotion.as_ref()?;
                matches!(
                    last.phase,
                    PromotionPhase::Failed | PromotionPhase::Errored | PromotionPhase::Aborted
                )
                .then(|| format!("{name}: {:?}", last.message))
            })
            .collect();
        assert!(failed.is_empty(), "promotions failed: {failed:?}");
        let next = handle.wait_until_sleeping(handle.status().passes + 1);
        if tokio::time::timeout(Duration::from_secs(120), next)
            .await
            .is_err()
        {
            let waiting: Vec<String> = state
                .stages
                .iter()
                .filter(|(_, s)| {
                    !s.current()
                        .is_some_and(|c| c.items.values().any(|r| r.name.to_string() == freight))
                })
                .map(|(name, s)| {
                    format!(
                        "{name}: running {:?}, queued {}, last {:?}",
                        s.current_promotion.as_ref().map(|p| p.freight.to_string()),
                        s.queue.len(),
                        s.last_promotion
                            .as_ref()
                            .map(|p| (p.phase, p.message.clone()))
                    )
                })
                .collect();
            panic!("{done} of {N} Stages hold {freight} after 2 minutes: {waiting:#?}");
        }
    }
}

async fn stages(env: &Env, cache: &Path, work: &Path) {
    let memory = MemorySource::new();
    memory.set_images(IMAGE, vec![image("1.0.0", 0)]);
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).expect("register memory");
    let mut steps = StepRegistry::new();
    register_builtins_with(&mut steps, &BuiltinOptions::new(cache)).expect("builtin steps");
    let controller = Controller::new(
        ManifestSet::from_yaml_str("stages.yaml", &stage_manifests(env)).expect("manifests"),
        "stages",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .expect("controller")
    .with_work_root(env.root.join("promotions"))
    .with_promotion_concurrency(N);
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    handle.wait_until_sleeping(1).await;
    let first = controller
        .state()
        .await
        .expect("state")
        .freight
        .keys()
        .next()
        .expect("Freight")
        .to_string();
    until_all_promoted(&controller, &handle, &first).await;

    let mut ours = Vec::new();
    let mut pushes = Vec::new();
    let mut peak: f64 = 0.0;
    for round in 1..=ROUNDS {
        let tag = format!("2.{round}.0");
        let reflog_before = reflog_len(&env.served);
        let _ = fs::write("/proc/self/clear_refs", "5");
        memory.push_image(IMAGE, image(&tag, round));
        let t = Instant::now();
        let passes = handle.status().passes;
        assert!(handle.request(RefreshRequest::new(vec!["image".into()], "new image")));
        handle.wait_until_sleeping(passes + 1).await;
        let state = controller.state().await.expect("state");
        let freight = state
            .freight
            .iter()
            .find(|(_, r)| r.freight.images.iter().any(|i| i.tag == tag))
            .map(|(name, _)| name.to_string())
            .expect("the new Freight");
        until_all_promoted(&controller, &handle, &freight).await;
        ours.push(t.elapsed());
        peak = peak.max(peak_rss_mib().unwrap_or(0.0));
        pushes.push(reflog_len(&env.served) - reflog_before);
        check_commits(env, &tag);
        let state = controller.state().await.expect("state");
        print_step_times(&state, round);
    }
    let _ = stop.send(());
    task.await.expect("service task");

    // The command line: the same 57 commits from one warm sparse clone, each pushed.
    let mut cli = Vec::new();
    for round in 1..=CLI_ROUNDS {
        let tag = format!("3.{round}.0");
        env.git(work, &["pull", "-q", "--rebase"]);
        let t = Instant::now();
        for &app in &env.apps {
            let rel = env.retag(work, app, "staging", &tag);
            env.git(work, &["add", &rel]);
            env.git(
                work,
                &["commit", "-q", "-m", &format!("app-{app:05} to {tag}")],
            );
            env.git(work, &["push", "-q", "origin", "HEAD:main"]);
        }
        cli.push(t.elapsed());
        check_commits(env, &tag);
    }
    println!("\n| {N} Stages promoting into `main` at once | median | min | pushes | peak RSS |");
    println!("|---|---|---|---|---|");
    pushes.sort_unstable();
    println!(
        "| kargo: service loop, {N} promotions at once | {} | {} | {} (median) | {peak:.1} MiB |",
        ms(median(&ours)),
        ms(min(&ours)),
        pushes[pushes.len() / 2]
    );
    println!(
        "| git: {N} commits, {N} sequential pushes, one warm sparse clone | {} | {} | {N} | |",
        ms(median(&cli)),
        ms(min(&cli))
    );
}

/// Where a round's time went: per step, the median and the longest duration over the
/// 57 promotions, and the span from the first start to the last end.
fn print_step_times(state: &kargo::core::pipeline::ProjectState, round: usize) {
    let mut by_step: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let (mut first, mut end) = (None, None);
    let last: std::collections::BTreeSet<&str> = state
        .stages
        .values()
        .filter_map(|s| s.last_promotion.as_ref().map(|p| p.name.as_str()))
        .collect();
    for record in state
        .promotions
        .iter()
        .filter(|p| last.contains(p.name.as_str()))
    {
        for step in &record.steps {
            let (Some(a), Some(b)) = (step.started_at, step.finished_at) else {
                continue;
            };
            first = Some(first.map_or(a, |f: chrono::DateTime<chrono::Utc>| f.min(a)));
            end = Some(end.map_or(b, |l: chrono::DateTime<chrono::Utc>| l.max(b)));
            by_step
                .entry(step.uses.clone())
                .or_default()
                .push((b - a).to_std().unwrap_or_default());
        }
    }
    let parts: Vec<String> = by_step
        .iter()
        .map(|(uses, d)| {
            let max = d.iter().copied().max().unwrap_or_default();
            format!("{uses} {} (max {})", ms(median(d)), ms(max))
        })
        .collect();
    let span = match (first, end) {
        (Some(a), Some(b)) => ms((b - a).to_std().unwrap_or_default()),
        _ => "?".into(),
    };
    eprintln!(
        "round {round}: steps took {span} from first start to last end; per step, median: {}",
        parts.join(", ")
    );
}

/// How many times `main` was updated on the server.
fn reflog_len(served: &Path) -> usize {
    git_ok(served, &["reflog", "show", "--format=%H", "main"])
        .lines()
        .count()
}

/// The newest 57 commits on the server each change exactly one app's staging overlay to
/// `tag`, one commit per app.
fn check_commits(env: &Env, tag: &str) {
    let log = git_ok(
        &env.served,
        &["log", "--format=%H", "-n", &N.to_string(), "main"],
    );
    let mut seen = std::collections::BTreeSet::new();
    for id in log.lines() {
        let changed = git_ok(
            &env.served,
            &["diff-tree", "--no-commit-id", "--name-only", "-r", id],
        );
        let file = changed.trim();
        assert!(!file.contains('\n'), "{id} changes one file: {changed}");
        let content = git_ok(&env.served, &["show", &format!("{id}:{file}")]);
        assert!(
            content.contains(&format!(":{tag}\n")),
            "{id}: {file} has {tag}"
        );
        assert!(seen.insert(file.to_owned()), "{file} changed twice");
    }
    let expected: std::collections::BTreeSet<String> = env
        .apps
        .iter()
        .map(|&a| overlay_patch_path(a, "staging"))
        .collect();
    assert_eq!(seen, expected, "one commit per app");
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
