//! The `promoter` example, run as a program (`cargo test` builds the examples; the binary
//! is found next to this test's executable, in `target/<profile>/examples/`).
//!
//! - `verbs_and_error_paths`: a git-subscription Warehouse on the HTTP git server (Kargo's
//!   manifests accept only http(s) and ssh git URLs) and a `file://` GitOps remote.
//! - `end_to_end_against_git_server_and_registries`: the HTTP git server with auth, the
//!   authenticated OCI registry and the HTTP Helm repository.
//!
//! Both need the servers of `ci/test.sh`; without their variables they print a skip
//! message, except with `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::{git, promoter_bin};

use serde_json::{Value as Json, json};

// ---------------------------------------------------------------------------------------
// Running the binary

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Json {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

struct Promoter {
    bin: PathBuf,
    manifests: PathBuf,
    state: PathBuf,
    credentials: Option<PathBuf>,
}

impl Promoter {
    fn new(root: &Path) -> Self {
        let manifests = root.join("kargo");
        std::fs::create_dir_all(&manifests).unwrap();
        Promoter {
            bin: promoter_bin(),
            manifests,
            state: root.join("state"),
            credentials: None,
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--manifests")
            .arg(&self.manifests)
            .arg("--state")
            .arg(&self.state);
        if let Some(c) = &self.credentials {
            cmd.arg("--credentials").arg(c);
        }
        let out = cmd
            .args(args)
            .env("NO_COLOR", "1")
            .env("KARGO_ACTOR", "tester")
            .env_remove("KARGO_LOG")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        let out = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ promoter {}\n-> exit {}\n{}{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }

    /// Runs and expects exit status `code`.
    fn expect(&self, code: i32, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(
            out.code,
            code,
            "promoter {} exited {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }
}

// ---------------------------------------------------------------------------------------
// git

/// The Argo CD Application patch of one environment. Only `tag` and `targetRevision`
/// change on promotion; everything else (comments, quoting, indentation, the document
/// marker) must stay byte for byte.
fn overlay(env: &str, tag: &str, revision: &str) -> String {
    format!(
        "---\n\
         # Argo CD Application for backend in {env}.   Kargo edits two values only.\n\
         apiVersion: argoproj.io/v1alpha1\n\
         kind: Application\n\
         metadata:\n\
         \x20 name: 'backend-{env}'    # keep the quotes\n\
         \x20 annotations: {{team: \"payments\", tier: backend}}\n\
         spec:\n\
         \x20 project: default\n\
         \x20 source:\n\
         \x20   repoURL: oci://charts.example.com/backend\n\
         \x20   chart: backend\n\
         \x20   targetRevision: {revision}   # chart version, promoted\n\
         \x20   helm:\n\
         \x20     valuesObject:\n\
         \x20       replicas: 2\n\
         \x20       image:\n\
         \x20         repository: \"registry.example.com/backend\"\n\
         \x20         tag: {tag}  # image tag, promoted\n\
         \x20         pullPolicy: IfNotPresent\n\
         \x20 destination: {{server: \"https://kubernetes.default.svc\", namespace: backend-{env}}}\n\
         # trailing comment\n"
    )
}

const OVERLAY_PATH: &str = "applications/overlays/ENV/backend/patches.yaml";

fn overlay_path(env: &str) -> String {
    OVERLAY_PATH.replace("ENV", env)
}

/// A bare repository at `bare` with the dev and prod overlays, pushed from a seed clone.
fn seed_gitops(root: &Path, bare: &Path) {
    let seed = root.join(format!(
        "seed-{}",
        bare.file_name().unwrap().to_string_lossy()
    ));
    for env in ["dev", "prod"] {
        let p = seed.join(overlay_path(env));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, overlay(env, "aaaa0000", "0.1.0")).unwrap();
    }
    std::fs::write(seed.join("README.md"), "GitOps\n").unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "Initial layout"]);
    git(
        root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
}

/// A file on `main` of a bare repository.
fn remote_file(bare: &Path, path: &str) -> String {
    git(bare, &["show", &format!("main:{path}")])
}

fn remote_head(bare: &Path) -> String {
    git(bare, &["rev-parse", "main"]).trim().to_owned()
}

fn remote_commits(bare: &Path) -> usize {
    git(bare, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .unwrap()
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "promoter-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn freight_by(list: &Json, pred: impl Fn(&Json) -> bool) -> &Json {
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| pred(f))
        .unwrap_or_else(|| panic!("no such Freight in {list:#}"))
}

// ---------------------------------------------------------------------------------------
// Verbs and error paths: a git-subscription Warehouse, a file:// GitOps remote

const OFFLINE_MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: shop, namespace: shop}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: shop}
spec:
  interval: 1s
  subscriptions:
  - git: {repoURL: "APP_URL", branch: main}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: PromotionTask
metadata: {name: set-revision, namespace: shop}
spec:
  vars:
  - name: overlay
  steps:
  - uses: git-clone
    config:
      repoURL: GITOPS_URL
      checkout: [{branch: main, path: ./src}]
  - uses: yaml-update
    as: update
    config:
      path: ./src/applications/overlays/${{ vars.overlay }}/backend/patches.yaml
      updates:
      - key: spec.source.targetRevision
        value: $<< commitFrom("APP_URL").ID >>
  - uses: git-commit
    config:
      path: ./src
      message: ${{ task.outputs.update.commitMessage }}
  - uses: git-push
    config: {path: ./src}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - task: {name: set-revision}
        vars: [{name: overlay, value: dev}]
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {stages: [dev]}
  promotionTemplate:
    spec:
      steps:
      - task: {name: set-revision}
        vars: [{name: overlay, value: prod}]
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: broken, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: GITOPS_URL
          checkout: [{branch: main, path: ./src}]
      - uses: yaml-update
        as: update
        config:
          path: ./src/applications/overlays/dev/backend/patches.yaml
          updates: [{key: spec.source.targetRevision, value: broken}]
      - uses: git-commit
        config: {path: ./src, message: must never be pushed}
      - uses: fail
        config: {message: the smoke test failed}
      - uses: git-push
        config: {path: ./src}
"#;

fn app_commit(app_seed: &Path, n: u32) -> String {
    std::fs::write(app_seed.join("version.txt"), format!("{n}\n")).unwrap();
    git(app_seed, &["add", "."]);
    git(app_seed, &["commit", "-q", "-m", &format!("build {n}")]);
    git(app_seed, &["push", "-q", "origin", "main"]);
    git(app_seed, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn verbs_and_error_paths() {
    let t = "verbs_and_error_paths";
    let (Some(git_url), Some(git_root)) = (
        server_env(t, "TEST_GIT_HTTP_URL"),
        server_env(t, "TEST_GIT_ROOT"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let gitops = root.join("gitops.git");
    seed_gitops(root, &gitops);
    let app_name = unique("app");
    let app = PathBuf::from(git_root).join(format!("{app_name}.git"));
    git(
        root,
        &["init", "-q", "--bare", "-b", "main", app.to_str().unwrap()],
    );
    let app_seed = root.join("app");
    git(
        root,
        &[
            "clone",
            "-q",
            app.to_str().unwrap(),
            app_seed.to_str().unwrap(),
        ],
    );
    git(&app_seed, &["checkout", "-q", "-b", "main"]);
    let c1 = app_commit(&app_seed, 1);

    let p = Promoter::new(root);
    let app_url = format!("{git_url}/{app_name}.git");
    let gitops_url = format!("file://{}", gitops.display());
    std::fs::write(
        p.manifests.join("shop.yaml"),
        OFFLINE_MANIFESTS
            .replace("APP_URL", &app_url)
            .replace("GITOPS_URL", &gitops_url),
    )
    .unwrap();

    // validate
    let out = p.expect(0, &["validate"]);
    assert!(out.stdout.contains("valid"), "{}", out.stdout);
    assert_eq!(p.expect(0, &["validate", "-o", "json"]).json()["stages"], 3);

    // Nothing yet.
    assert_eq!(
        p.expect(0, &["get", "freight", "-o", "json"]).json(),
        json!([])
    );

    // One pass: Freight for c1, dev auto-promoted; prod and broken untouched.
    let head0 = remote_head(&gitops);
    let out = p.expect(0, &["run"]);
    assert!(out.stdout.contains("new Freight"), "{}", out.stdout);
    assert!(
        out.stderr.contains("reconciling"),
        "progress on stderr: {}",
        out.stderr
    );
    assert_eq!(
        remote_file(&gitops, &overlay_path("dev")),
        overlay("dev", "aaaa0000", &c1)
    );
    assert_eq!(
        remote_file(&gitops, &overlay_path("prod")),
        overlay("prod", "aaaa0000", "0.1.0")
    );
    assert_ne!(remote_head(&gitops), head0);

    // get freight: Kargo's field names.
    let list = p.expect(0, &["get", "freight", "-o", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let f1 = &list[0];
    let id1 = f1["id"].as_str().unwrap().to_owned();
    assert_eq!(id1.len(), 40);
    let alias1 = f1["alias"].as_str().unwrap().to_owned();
    assert_eq!(f1["origin"], json!({"kind": "Warehouse", "name": "app"}));
    assert_eq!(f1["commits"][0]["repoURL"], json!(app_url));
    assert_eq!(f1["commits"][0]["id"], json!(c1));
    assert_eq!(f1["images"], json!([]));
    assert_eq!(f1["charts"], json!([]));
    assert!(f1["status"]["currentlyIn"]["dev"].is_object(), "{f1:#}");
    // YAML and text outputs work too.
    let yaml = p.expect(0, &["get", "freight", "-o", "yaml"]).stdout;
    assert!(yaml.contains(&format!("id: {id1}")), "{yaml}");
    let text = p.expect(0, &["get", "freight"]).stdout;
    assert!(text.contains(&alias1) && text.contains("dev"), "{text}");

    // get stages
    let stages = p.expect(0, &["get", "stages", "-o", "json"]).json();
    let dev = freight_by(&stages, |s| s["name"] == "dev");
    assert_eq!(dev["autoPromotionEnabled"], json!(true));
    assert_eq!(dev["currentFreight"][0]["id"], json!(id1));
    assert_eq!(dev["currentFreight"][0]["alias"], json!(alias1));
    assert_eq!(dev["freightHistory"].as_array().unwrap().len(), 1);
    let prod = freight_by(&stages, |s| s["name"] == "prod");
    assert_eq!(prod["currentFreight"], json!([]));
    assert_eq!(prod["autoPromotionEnabled"], json!(false));
    let text = p.expect(0, &["get", "stages"]).stdout;
    assert!(
        text.contains("Stage dev") && text.contains(&alias1),
        "{text}"
    );

    let head1 = remote_head(&gitops);
    // A failed step: exit 1, the message, nothing pushed.
    let out = p.expect(1, &["promote", "--stage", "broken", "--freight", &alias1]);
    assert!(
        out.stderr.contains("the smoke test failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("Failed") || out.stdout.contains("Errored"),
        "{}",
        out.stdout
    );
    assert_eq!(remote_head(&gitops), head1, "nothing pushed");

    // A second commit, discovered by `refresh` (which does not promote): F2 is in no Stage.
    let c2 = app_commit(&app_seed, 2);
    let out = p
        .expect(0, &["refresh", "warehouse", "app", "-o", "json"])
        .json();
    assert_eq!(out["outcome"], "Created");
    let id2 = out["freight"]["id"].as_str().unwrap().to_owned();
    let alias2 = out["freight"]["alias"].as_str().unwrap().to_owned();
    assert_eq!(out["freight"]["commits"][0]["id"], json!(c2));
    let head = remote_head(&gitops);

    // Error paths: clear message, exit 2, nothing pushed.
    let out = p.expect(2, &["promote", "--stage", "nope", "--freight", &alias1]);
    assert!(
        out.stderr.contains("unknown Stage \"nope\""),
        "{}",
        out.stderr
    );
    let out = p.expect(
        2,
        &["promote", "--stage", "dev", "--freight", "no-such-freight"],
    );
    assert!(
        out.stderr.contains("unknown Freight \"no-such-freight\""),
        "{}",
        out.stderr
    );
    let out = p.expect(2, &["promote", "--stage", "prod", "--freight", &alias2]);
    assert!(
        out.stderr.contains("not available to Stage \"prod\""),
        "{}",
        out.stderr
    );
    let out = p.expect(2, &["approve", "--stage", "nope", "--freight", &alias2]);
    assert!(out.stderr.contains("unknown Stage"), "{}", out.stderr);
    let out = p.expect(2, &["rollback", "--stage", "prod"]);
    assert!(out.stderr.contains("no previous Freight"), "{}", out.stderr);
    let out = p.expect(2, &["refresh", "warehouse", "nope"]);
    assert!(out.stderr.contains("unknown Warehouse"), "{}", out.stderr);
    let out = p.expect(2, &["get", "freight", "--project", "other"]);
    assert!(out.stderr.contains("project \"other\""), "{}", out.stderr);
    // Bad flags (clap): exit 2.
    p.expect(2, &["promote", "--stage", "dev"]);
    p.expect(2, &["get", "freight", "--output", "xml"]);
    p.expect(2, &["frobnicate"]);
    // --dry-run never pushes (whether or not this build has dry runs).
    let out = p.run(&[
        "promote",
        "--stage",
        "dev",
        "--freight",
        &alias2,
        "--dry-run",
    ]);
    assert!(out.code == 0 || out.code == 2, "{out:?}");
    assert_eq!(remote_head(&gitops), head, "nothing pushed");

    // Approval makes F2 available to prod; then prod can have it.
    let fs = p
        .expect(0, &["get", "freight", "--stage", "prod", "-o", "json"])
        .json();
    let ids: Vec<&str> = fs
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![id1.as_str()],
        "only F1 (verified in dev) is available to prod"
    );
    let out = p.expect(
        0,
        &[
            "approve",
            "--stage",
            "prod",
            "--freight",
            &alias2,
            "-o",
            "json",
        ],
    );
    assert_eq!(out.json()["freight"]["id"], json!(id2));
    let fs = p
        .expect(0, &["get", "freight", "--stage", "prod", "-o", "json"])
        .json();
    let f2 = freight_by(&fs, |f| f["id"] == json!(id2));
    assert!(f2["status"]["approvedFor"]["prod"].is_object(), "{f2:#}");
    let out = p.expect(0, &["promote", "--stage", "prod", "--freight", &id2[..12]]);
    assert!(out.stdout.contains("Succeeded"), "{}", out.stdout);
    assert_eq!(
        remote_file(&gitops, &overlay_path("prod")),
        overlay("prod", "aaaa0000", &c2)
    );
    // The controller runs pending auto-promotions after a promotion: dev got F2 too.
    assert_eq!(
        remote_file(&gitops, &overlay_path("dev")),
        overlay("dev", "aaaa0000", &c2)
    );

    // `get schedule`: every Warehouse, when it is due and why (the library's schedule).
    let schedule = p.expect(0, &["get", "schedule", "-o", "json"]).json();
    let warehouses = schedule["warehouses"].as_array().unwrap();
    assert!(!warehouses.is_empty(), "{schedule:#}");
    for w in warehouses {
        let reason = w["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("interval 1s + jitter 0s after the last discovery at "),
            "{schedule:#}"
        );
    }
    assert!(schedule["nextWake"].is_object() || warehouses.iter().all(|w| w["dueAt"] == "now"));
    let text = p.expect(0, &["get", "schedule"]).stdout;
    assert!(
        text.contains("WAREHOUSE") && text.contains("interval 1s"),
        "{text}"
    );

    // `run --watch`: a new commit reaches dev without another command; Ctrl-C (SIGINT)
    // stops it cleanly with status 0.
    let c3 = app_commit(&app_seed, 3);
    let log = root.join("watch.log");
    let mut child = Command::new(&p.bin)
        .args(["--manifests".as_ref(), p.manifests.as_os_str()])
        .args(["--state".as_ref(), p.state.as_os_str()])
        .args(["run", "--watch", "--max-sleep", "1"])
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(root.join("watch.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while remote_file(&gitops, &overlay_path("dev")) != overlay("dev", "aaaa0000", &c3) {
        assert!(
            std::time::Instant::now() < deadline,
            "run --watch did not promote {c3} to dev within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("run --watch did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    eprintln!("run --watch stderr:\n{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("stopped"), "{err}");

    // A state from a newer version, or a damaged one: exit 2 naming the file; nothing is
    // written over it.
    let other = Promoter {
        state: root.join("state-newer"),
        ..Promoter::new(root)
    };
    std::fs::create_dir_all(&other.state).unwrap();
    let newer = r#"{"revision": 7, "state": {"format": 99}}"#;
    std::fs::write(other.state.join("shop.json"), newer).unwrap();
    for args in [&["get", "stages"][..], &["run"]] {
        let out = other.expect(2, args);
        assert!(
            out.stderr.contains("shop.json") && out.stderr.contains("newer version"),
            "{}",
            out.stderr
        );
    }
    std::fs::write(other.state.join("shop.json"), "{ not json").unwrap();
    let out = other.expect(2, &["get", "freight"]);
    assert!(out.stderr.contains("shop.json"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(other.state.join("shop.json")).unwrap(),
        "{ not json"
    );

    // A manifest error: exit 2 with file and line, for every verb.
    std::fs::write(
        p.manifests.join("zz-bad.yaml"),
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {name: qa, namespace: shop}\nspec:\n  requestedFreight:\n  - origin: {kind: Warehouse, name: app}\n    sources: {direct: true}\n    colour: blue\n",
    )
    .unwrap();
    let head = remote_head(&gitops);
    for args in [&["validate"][..], &["run"], &["get", "stages"]] {
        let out = p.expect(2, args);
        assert!(out.stderr.contains("zz-bad.yaml:8"), "{}", out.stderr);
        assert!(out.stderr.contains("colour"), "{}", out.stderr);
    }
    // With --output json, the failure is a JSON document on stdout: each error with its
    // place, for scripts.
    let doc = p.expect(2, &["validate", "-o", "json"]).json();
    assert_eq!(doc["valid"], false, "{doc}");
    assert_eq!(doc["exitCode"], 2, "{doc}");
    let first = &doc["errors"][0];
    assert!(
        first["file"].as_str().unwrap().ends_with("zz-bad.yaml"),
        "{doc}"
    );
    assert_eq!(first["line"], 8, "{doc}");
    assert_eq!(first["resource"], "Stage shop/qa", "{doc}");
    assert!(
        first["message"].as_str().unwrap().contains("colour"),
        "{doc}"
    );
    // A typo in a step name: placed at its `uses:` line, with the nearest name.
    std::fs::write(
        p.manifests.join("zz-bad.yaml"),
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {name: qa, namespace: shop}\nspec:\n  requestedFreight:\n  - origin: {kind: Warehouse, name: app}\n    sources: {direct: true}\n  promotionTemplate:\n    spec:\n      steps:\n      - as: clone\n        uses: git-clonne\n",
    )
    .unwrap();
    let out = p.expect(2, &["validate"]);
    assert!(
        out.stderr.contains("zz-bad.yaml:12:")
            && out.stderr.contains("did you mean \"git-clone\"?"),
        "{}",
        out.stderr
    );
    // A repeated key and a deprecated field load, with a warning each naming the place.
    std::fs::write(
        p.manifests.join("zz-bad.yaml"),
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: extra, namespace: shop}\nspec:\n  interval: 5m\n  interval: 10m\n  subscriptions:\n  - image: {repoURL: ghcr.io/example/extra, allowTags: '^v1'}\n",
    )
    .unwrap();
    let out = p.expect(0, &["validate", "-o", "json"]);
    assert!(
        out.stderr.contains("zz-bad.yaml:6:3: document 1: Warehouse shop/extra: spec.interval: the key \"interval\" appears 2 times"),
        "{}",
        out.stderr
    );
    let warnings = &out.json()["warnings"];
    assert_eq!(warnings.as_array().unwrap().len(), 2, "{warnings}");
    assert_eq!(
        warnings[1]["field"], "spec.subscriptions[0].image.allowTags",
        "{warnings}"
    );
    assert_eq!(warnings[1]["line"], 8, "{warnings}");
    std::fs::remove_file(p.manifests.join("zz-bad.yaml")).unwrap();
    assert_eq!(remote_head(&gitops), head, "nothing pushed");
}

// ---------------------------------------------------------------------------------------
// End to end: HTTP git server with auth, authenticated registry, HTTP Helm repository

use kargo_core::testing::server_env;

fn sha256(bytes: &[u8]) -> String {
    kargo::sources::chart::sha256_digest(bytes)
}

/// Pushes a tiny image `repo:tag` with the config's `created` time.
async fn push_image(client: &oci_client::Client, host: &str, repo: &str, tag: &str, created: &str) {
    use oci_client::Reference;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Env": [format!("TAG={tag}")]},
    }))
    .unwrap();
    let layer = format!("layer of {tag}").into_bytes();
    let r = |reference: &str| {
        if reference.starts_with("sha256:") {
            Reference::with_digest(host.to_owned(), repo.to_owned(), reference.to_owned())
        } else {
            Reference::with_tag(host.to_owned(), repo.to_owned(), reference.to_owned())
        }
    };
    let (cd, ld) = (sha256(&config), sha256(&layer));
    client
        .push_blob(&r(&cd), config.clone(), &cd)
        .await
        .unwrap();
    client.push_blob(&r(&ld), layer.clone(), &ld).await.unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    client
        .push_manifest_raw(
            &r(tag),
            manifest,
            "application/vnd.oci.image.manifest.v1+json"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
}

/// Writes the Helm repository's `index.yaml` (atomically) with `versions` of `backend`.
fn write_chart_index(dir: &Path, versions: &[&str]) {
    let mut index = String::from("apiVersion: v1\nentries:\n  backend:\n");
    for v in versions {
        index.push_str(&format!(
            "  - apiVersion: v2\n    name: backend\n    version: {v}\n    created: \"2026-01-01T00:00:00Z\"\n    urls:\n    - backend-{v}.tgz\n"
        ));
    }
    index.push_str("generated: \"2026-01-01T00:00:00Z\"\n");
    let tmp = dir.join("index.yaml.tmp");
    std::fs::write(&tmp, index).unwrap();
    std::fs::rename(tmp, dir.join("index.yaml")).unwrap();
}

const E2E_MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: payments}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: payments, namespace: payments}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: backend, namespace: payments}
spec:
  interval: 1s
  subscriptions:
  - image:
      repoURL: IMAGE_REPO
      imageSelectionStrategy: NewestBuild
      allowTagsRegexes: ['^[a-f0-9]{8}$']
      ignoreTagsRegexes: ['^latest$']
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: backend-chart, namespace: payments}
spec:
  interval: 1s
  subscriptions:
  - chart: {repoURL: "CHART_REPO", name: backend, semverConstraint: ">=1.0.0"}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: payments}
spec:
  vars:
  - {name: overlay, value: dev}
  requestedFreight:
  - origin: {kind: Warehouse, name: backend}
    sources: {direct: true}
  - origin: {kind: Warehouse, name: backend-chart}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - task: {name: set-image-tag, kind: ClusterPromotionTask}
        as: image
        vars: [{name: overlay, value: "${{ vars.overlay }}"}]
      - task: {name: set-chart-version, kind: ClusterPromotionTask}
        as: chart
        vars: [{name: overlay, value: "$<< vars.overlay >>"}]
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: payments}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: backend}
    sources: {stages: [dev]}
  - origin: {kind: Warehouse, name: backend-chart}
    sources: {stages: [dev]}
  promotionTemplate:
    spec:
      steps:
      - task: {name: set-image-tag, kind: ClusterPromotionTask}
        as: image
        vars: [{name: overlay, value: prod}]
      - task: {name: set-chart-version, kind: ClusterPromotionTask}
        as: chart
        vars: [{name: overlay, value: prod}]
"#;

const E2E_TASKS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: ClusterPromotionTask
metadata: {name: set-image-tag}
spec:
  vars:
  - {name: repoURL, value: "GITOPS_URL"}
  - {name: image, value: "IMAGE_REPO"}
  - name: overlay
  steps:
  - uses: git-clone
    config:
      repoURL: ${{ vars.repoURL }}
      checkout: [{branch: main, path: ./image-src}]
  - uses: yaml-update
    as: update
    config:
      path: ./image-src/applications/overlays/${{ vars.overlay }}/backend/patches.yaml
      updates:
      - key: spec.source.helm.valuesObject.image.tag
        value: ${{ imageFrom(vars.image).Tag }}
  - uses: git-commit
    as: commit
    config:
      path: ./image-src
      message: ${{ task.outputs.update.commitMessage }}
  - uses: git-push
    config: {path: ./image-src}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ClusterPromotionTask
metadata: {name: set-chart-version}
spec:
  vars:
  - {name: repoURL, value: "GITOPS_URL"}
  - {name: chartRepo, value: "CHART_REPO"}
  - name: overlay
  steps:
  - uses: git-clone
    config:
      repoURL: $<< vars.repoURL >>
      checkout: [{branch: main, path: ./chart-src}]
  - uses: yaml-update
    as: update
    config:
      path: ./chart-src/applications/overlays/$<< vars.overlay >>/backend/patches.yaml
      updates:
      - key: spec.source.targetRevision
        value: $<< chartFrom(vars.chartRepo, "backend").Version >>
  - uses: git-commit
    as: commit
    config:
      path: ./chart-src
      message: $<< task.outputs.update.commitMessage >>
  - uses: git-push
    config: {path: ./chart-src}
"#;

#[test]
fn end_to_end_against_git_server_and_registries() {
    let t = "end_to_end_against_git_server_and_registries";
    let (
        Some(git_url),
        Some(git_user),
        Some(git_pw),
        Some(git_root),
        Some(reg),
        Some(reg_user),
        Some(reg_pw),
        Some(helm_dir),
        Some(helm_url),
    ) = (
        server_env(t, "TEST_GIT_HTTP_URL"),
        server_env(t, "TEST_GIT_HTTP_USER"),
        server_env(t, "TEST_GIT_HTTP_PASSWORD"),
        server_env(t, "TEST_GIT_ROOT"),
        server_env(t, "TEST_OCI_AUTH_REGISTRY"),
        server_env(t, "TEST_OCI_AUTH_USER"),
        server_env(t, "TEST_OCI_AUTH_PASSWORD"),
        server_env(t, "TEST_HELM_REPO_DIR"),
        server_env(t, "TEST_HELM_REPO_URL"),
    )
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let name = unique("gitops");
    let bare = PathBuf::from(&git_root).join(format!("{name}.git"));
    seed_gitops(root, &bare);
    let gitops_url = format!("{git_url}/{name}.git");
    let image_path = format!("{}/backend", unique("img"));
    let image_repo = format!("{reg}/{image_path}");
    let chart_sub = unique("charts");
    let chart_dir = PathBuf::from(&helm_dir).join(&chart_sub);
    std::fs::create_dir_all(&chart_dir).unwrap();
    let chart_repo = format!("{helm_url}/{chart_sub}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    rt.block_on(async {
        let r = oci_client::Reference::with_tag(reg.clone(), image_path.clone(), "x".into());
        client
            .auth(
                &r,
                &oci_client::secrets::RegistryAuth::Basic(reg_user.clone(), reg_pw.clone()),
                oci_client::RegistryOperation::Push,
            )
            .await
            .unwrap();
    });
    let push = |tag: &str, created: &str| {
        rt.block_on(push_image(&client, &reg, &image_path, tag, created));
    };
    // The newest build matching the allow regex is bbbb0002: `latest` is ignored and
    // `v9.9.9` does not match, although both are newer.
    push("aaaa0001", "2026-01-01T00:00:00Z");
    push("bbbb0002", "2026-01-02T00:00:00Z");
    push("latest", "2026-01-09T00:00:00Z");
    push("v9.9.9", "2026-01-08T00:00:00Z");
    write_chart_index(&chart_dir, &["0.9.0", "1.0.0", "1.1.0"]);

    let mut p = Promoter::new(root);
    let creds = root.join("credentials.yaml");
    std::fs::write(
        &creds,
        format!(
            "# Kargo-style credentials\n\
             - type: git\n  repoURLPattern: '^http://127\\.0\\.0\\.1:[0-9]+/promoter-'\n  username: {git_user}\n  password: {git_pw}\n\
             - type: image\n  repoURL: {image_repo}\n  username: {reg_user}\n  password: {reg_pw}\n"
        ),
    )
    .unwrap();
    p.credentials = Some(creds);
    let fill = |s: &str| {
        s.replace("GITOPS_URL", &gitops_url)
            .replace("IMAGE_REPO", &image_repo)
            .replace("CHART_REPO", &chart_repo)
    };
    std::fs::write(p.manifests.join("pipeline.yaml"), fill(E2E_MANIFESTS)).unwrap();
    std::fs::create_dir_all(p.manifests.join("shared")).unwrap();
    std::fs::write(p.manifests.join("shared/tasks.yaml"), fill(E2E_TASKS)).unwrap();

    let dev_file = || remote_file(&bare, &overlay_path("dev"));
    let prod_file = || remote_file(&bare, &overlay_path("prod"));

    p.expect(0, &["validate"]);

    // 1. First pass: Freight from both Warehouses; dev gets both, prod nothing.
    let out = p.expect(0, &["run", "-o", "json"]).json();
    assert_eq!(out["refreshed"].as_array().unwrap().len(), 2, "{out:#}");
    assert_eq!(dev_file(), overlay("dev", "bbbb0002", "1.1.0"));
    assert_eq!(prod_file(), overlay("prod", "aaaa0000", "0.1.0"));
    let list = p.expect(0, &["get", "freight", "-o", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list:#}");
    let img1 = freight_by(&list, |f| f["origin"]["name"] == "backend");
    assert_eq!(img1["images"][0]["repoURL"], json!(image_repo));
    assert_eq!(img1["images"][0]["tag"], json!("bbbb0002"));
    assert!(
        img1["images"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let chart1 = freight_by(&list, |f| f["origin"]["name"] == "backend-chart");
    assert_eq!(chart1["charts"][0]["version"], json!("1.1.0"));
    assert_eq!(chart1["charts"][0]["name"], json!("backend"));

    // 2. CI pushes cccc0003: the next pass takes it to dev only.
    push("cccc0003", "2026-01-03T00:00:00Z");
    let commits = remote_commits(&bare);
    p.expect(0, &["run", "--refresh-all"]);
    assert_eq!(dev_file(), overlay("dev", "cccc0003", "1.1.0"));
    assert_eq!(prod_file(), overlay("prod", "aaaa0000", "0.1.0"));
    assert!(remote_commits(&bare) > commits);
    let list = p.expect(0, &["get", "freight", "-o", "json"]).json();
    let img2 = freight_by(&list, |f| f["images"][0]["tag"] == "cccc0003");
    let img2_alias = img2["alias"].as_str().unwrap().to_owned();

    // 2b. A new chart version flows to dev on its own too.
    write_chart_index(&chart_dir, &["0.9.0", "1.0.0", "1.1.0", "1.2.0"]);
    p.expect(0, &["run", "--refresh-all"]);
    assert_eq!(dev_file(), overlay("dev", "cccc0003", "1.2.0"));
    assert_eq!(prod_file(), overlay("prod", "aaaa0000", "0.1.0"));

    // 3. prod only on `promote` (its chart origin is filled with the newest chart
    // verified in dev). A dry run first: the diff and the commit, nothing pushed.
    let head = remote_head(&bare);
    let out = p.expect(
        0,
        &[
            "promote",
            "--stage",
            "prod",
            "--freight",
            &img2_alias,
            "--dry-run",
        ],
    );
    assert!(out.stdout.contains("nothing was pushed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("+") && out.stdout.contains("cccc0003"),
        "{}",
        out.stdout
    );
    assert_eq!(remote_head(&bare), head, "a dry run pushes nothing");
    let dry = p
        .expect(
            0,
            &[
                "promote",
                "--stage",
                "prod",
                "--freight",
                &img2_alias,
                "--dry-run",
                "-o",
                "json",
            ],
        )
        .json();
    assert_eq!(dry["dryRun"], json!(true));
    assert!(!dry["files"].as_array().unwrap().is_empty(), "{dry:#}");
    assert_eq!(dry["pushes"][0]["branch"], json!("main"), "{dry:#}");
    assert_eq!(remote_head(&bare), head, "a dry run pushes nothing");
    let out = p.expect(0, &["promote", "--stage", "prod", "--freight", &img2_alias]);
    assert!(out.stdout.contains("Succeeded"), "{}", out.stdout);
    assert_eq!(prod_file(), overlay("prod", "cccc0003", "1.2.0"));
    assert_eq!(dev_file(), overlay("dev", "cccc0003", "1.2.0"));

    // 4. Rollback of dev: the previous values again, with a new commit, history kept.
    let commits = remote_commits(&bare);
    let head = remote_head(&bare);
    p.expect(0, &["rollback", "--stage", "dev"]);
    assert_eq!(dev_file(), overlay("dev", "cccc0003", "1.1.0"));
    assert_eq!(prod_file(), overlay("prod", "cccc0003", "1.2.0"));
    assert!(remote_commits(&bare) > commits, "a new commit");
    assert_eq!(
        git(&bare, &["merge-base", "--is-ancestor", &head, "main"]),
        "",
        "history kept"
    );
    let stages = p.expect(0, &["get", "stages", "-o", "json"]).json();
    let dev = freight_by(&stages, |s| s["name"] == "dev");
    // Only the chart's origin is held: the image rolled back to is still the newest.
    let holds = dev["autoPromotionHolds"].as_object().unwrap();
    assert_eq!(holds.len(), 1, "{dev:#}");
    assert!(holds.contains_key("Warehouse/backend-chart"), "{dev:#}");
    assert!(
        dev["currentFreight"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["alias"] == json!(img2_alias)),
        "{dev:#}"
    );

    // 5. A new image, discovered but not yet promoted anywhere: not available to prod.
    push("dddd0004", "2026-01-04T00:00:00Z");
    let head = remote_head(&bare);
    p.expect(0, &["refresh", "warehouse", "backend"]);
    assert_eq!(remote_head(&bare), head, "refresh alone pushes nothing");
    let list = p.expect(0, &["get", "freight", "-o", "json"]).json();
    let img3 = freight_by(&list, |f| f["images"][0]["tag"] == "dddd0004");
    let img3_alias = img3["alias"].as_str().unwrap().to_owned();
    let out = p.expect(2, &["promote", "--stage", "prod", "--freight", &img3_alias]);
    assert!(out.stderr.contains("not available"), "{}", out.stderr);
    assert_eq!(remote_head(&bare), head, "nothing pushed");

    // 6. Approval makes it available to prod.
    let fs = p
        .expect(0, &["get", "freight", "--stage", "prod", "-o", "json"])
        .json();
    assert!(
        fs.as_array()
            .unwrap()
            .iter()
            .all(|f| f["alias"] != json!(img3_alias))
    );
    p.expect(0, &["approve", "--stage", "prod", "--freight", &img3_alias]);
    let fs = p
        .expect(0, &["get", "freight", "--stage", "prod", "-o", "json"])
        .json();
    freight_by(&fs, |f| f["alias"] == json!(img3_alias));
    p.expect(0, &["promote", "--stage", "prod", "--freight", &img3_alias]);
    assert_eq!(prod_file(), overlay("prod", "dddd0004", "1.2.0"));

    // 7. The next pass takes the new image to dev (its origin is not held), while the
    // chart stays at the rolled-back version until someone promotes the newest chart.
    p.expect(0, &["run"]);
    assert_eq!(dev_file(), overlay("dev", "dddd0004", "1.1.0"));
    let chart2 = freight_by(&list, |f| f["charts"][0]["version"] == "1.2.0");
    let chart2_alias = chart2["alias"].as_str().unwrap().to_owned();
    p.expect(
        0,
        &["promote", "--stage", "dev", "--freight", &chart2_alias],
    );
    assert_eq!(dev_file(), overlay("dev", "dddd0004", "1.2.0"));
    let stages = p.expect(0, &["get", "stages", "-o", "json"]).json();
    let dev = freight_by(&stages, |s| s["name"] == "dev");
    assert!(
        dev["autoPromotionHolds"].as_object().unwrap().is_empty(),
        "{dev:#}"
    );

    // The commits carry yaml-update's messages.
    let log = git(&bare, &["log", "--format=%s", "main"]);
    assert!(
        log.contains("Updated ./image-src/applications/overlays/prod/backend/patches.yaml"),
        "{log}"
    );

    // 8. Wrong registry credentials: discovery fails with exit 1, nothing promoted.
    std::fs::write(
        p.credentials.as_ref().unwrap(),
        format!(
            "- {{type: image, repoURL: {image_repo}, username: {reg_user}, password: wrong}}\n"
        ),
    )
    .unwrap();
    let out = p.expect(1, &["refresh", "warehouse", "backend"]);
    assert!(out.stderr.contains("backend"), "{}", out.stderr);
}

/// Issue 20 on the command line, without servers: a Stage inside a Deny window (a freeze
/// that never ends) is shown closed by `get stages`, a promotion is refused with the
/// reason, forcing needs a reason; `approve --promotion` on a Stage without an approval
/// policy is refused.
#[test]
fn promotion_windows_and_approvals_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Promoter::new(tmp.path());
    std::fs::write(
        p.manifests.join("project.yaml"),
        r#"apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: shop, namespace: shop}
spec:
  promotionWindows:
  - name: freeze
    kind: Deny
    stageSelector: {name: prod}
    dtstart: 20200101T000000Z
    dtend: 20990101T000000Z
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: shop, namespace: shop}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: shop}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
"#,
    )
    .unwrap();
    p.expect(0, &["validate"]);
    let out = p.expect(0, &["get", "stages"]);
    assert!(out.stdout.contains("window closed:"), "{}", out.stdout);
    assert!(out.stdout.contains("freeze"), "{}", out.stdout);
    let json = p.expect(0, &["-o", "json", "get", "stages"]).json();
    assert_eq!(json[0]["promotionWindowStatus"]["closed"], true);
    let out = p.run(&[
        "promote",
        "--stage",
        "prod",
        "--freight",
        "0123456789abcdef",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("outside its promotion windows") && out.stderr.contains("freeze"),
        "{}",
        out.stderr
    );
    let out = p.run(&[
        "promote",
        "--stage",
        "prod",
        "--freight",
        "0123456789abcdef",
        "--force-window",
        " ",
    ]);
    assert!(
        out.stderr.contains("forcing needs a reason"),
        "{}",
        out.stderr
    );
    // Forced with a reason, the window lets it through: the Freight is what fails now.
    let out = p.run(&[
        "promote",
        "--stage",
        "prod",
        "--freight",
        "0123456789abcdef",
        "--force-window",
        "INC-1",
    ]);
    assert!(
        !out.stderr.contains("is outside its promotion windows"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unknown Freight"), "{}", out.stderr);
    assert!(out.stderr.contains("0123456789abcdef"), "{}", out.stderr);
    let out = p.run(&["approve", "--stage", "prod", "--promotion"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("asks for no approvals"),
        "{}",
        out.stderr
    );
}
