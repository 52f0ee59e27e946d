//! The Kargo corpus: `tests/kargo-corpus/NN-name/` are manifest directories written the way
//! Kargo's published examples and documentation lay out a user's repository (Project,
//! Warehouses, Stages, PromotionTasks, Secrets, AnalysisTemplates, Argo CD Applications
//! beside them). Placeholders (`@@GITOPS_URL@@`, `@@REGISTRY@@`, `@@HELM_URL@@`,
//! credentials, `@@B64(...)@@` for base64 `data`) are filled with the test servers' values.
//!
//! - `every_directory_validates`: each directory passes `promoter validate -o json`, with
//!   the notices (skipped kinds) and warnings (repeated keys, deprecated fields) it has on
//!   purpose and no others; a copy with one misspelt step kind fails naming file and line.
//! - `e2e_*`: the directories with promotions run against the real git server (smart HTTP,
//!   authenticated with the directory's Secrets), the authenticated registry, the Helm
//!   repository and a local HTTP server; the commits land on the remote with the expected
//!   content.
//!
//! They need the servers of `ci/test.sh`; without their variables they print a skip
//! message, except with `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use kargo_core::testing::server_envs;
use serde_json::{Value as Json, json};
use support::{git, promoter_bin};

// ---------------------------------------------------------------------------------------
// The servers and the placeholders

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kargo-corpus");

/// The test servers.
struct Servers {
    git_url: String,
    git_user: String,
    git_password: String,
    git_root: PathBuf,
    registry: String,
    registry_user: String,
    registry_password: String,
    helm_dir: PathBuf,
    helm_url: String,
}

fn servers(test: &str) -> Option<Servers> {
    let v = server_envs(
        test,
        &[
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
            "TEST_GIT_ROOT",
            "TEST_OCI_AUTH_REGISTRY",
            "TEST_OCI_AUTH_USER",
            "TEST_OCI_AUTH_PASSWORD",
            "TEST_HELM_REPO_DIR",
            "TEST_HELM_REPO_URL",
        ],
    )?;
    let mut v = v.into_iter();
    let mut next = || v.next().unwrap();
    Some(Servers {
        git_url: next(),
        git_user: next(),
        git_password: next(),
        git_root: PathBuf::from(next()),
        registry: next(),
        registry_user: next(),
        registry_password: next(),
        helm_dir: PathBuf::from(next()),
        helm_url: next(),
    })
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The placeholder values of one run of one directory: its own repositories, image
/// namespace and chart directory.
struct Fill {
    vars: BTreeMap<&'static str, String>,
    gitops_bare: PathBuf,
    app_bare: PathBuf,
    /// The registry path prefix (after the host) of this run's images.
    image_prefix: String,
    chart_dir: PathBuf,
}

impl Fill {
    fn new(s: &Servers, dir_name: &str, http_url: &str) -> Fill {
        let id = unique(&format!("corpus-{}", &dir_name[..2]));
        let gitops = format!("private-{id}-gitops");
        let app = format!("{id}-app");
        let chart_sub = format!("{id}-charts");
        let chart_dir = s.helm_dir.join(&chart_sub);
        std::fs::create_dir_all(&chart_dir).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("GIT_URL", s.git_url.clone());
        vars.insert("GITOPS_URL", format!("{}/{gitops}.git", s.git_url));
        vars.insert("APP_GIT_URL", format!("{}/{app}.git", s.git_url));
        vars.insert("GIT_USER", s.git_user.clone());
        vars.insert("GIT_PASSWORD", s.git_password.clone());
        vars.insert("REGISTRY", format!("{}/{id}", s.registry));
        vars.insert("REGISTRY_USER", s.registry_user.clone());
        vars.insert("REGISTRY_PASSWORD", s.registry_password.clone());
        vars.insert("HELM_URL", format!("{}/{chart_sub}", s.helm_url));
        vars.insert("HTTP_URL", http_url.to_owned());
        Fill {
            vars,
            gitops_bare: s.git_root.join(format!("{gitops}.git")),
            app_bare: s.git_root.join(format!("{app}.git")),
            image_prefix: id,
            chart_dir,
        }
    }

    fn get(&self, key: &str) -> &str {
        &self.vars[key]
    }

    /// `text` with every `@@NAME@@` replaced, then every `@@B64(text)@@` by the base64 of
    /// the text.
    fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (k, v) in &self.vars {
            out = out.replace(&format!("@@{k}@@"), v);
        }
        let b64 = regex::Regex::new(r"@@B64\(([^)]*)\)@@").unwrap();
        let out = b64
            .replace_all(&out, |c: &regex::Captures<'_>| {
                base64::engine::general_purpose::STANDARD.encode(&c[1])
            })
            .into_owned();
        assert!(!out.contains("@@"), "a placeholder is left in:\n{out}");
        out
    }
}

/// Copies directory `src` to `dst`, filling placeholders in every file.
fn copy_filled(src: &Path, dst: &Path, fill: &Fill) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_filled(&entry.path(), &to, fill);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(to, fill.apply(&text)).unwrap();
        }
    }
}

fn corpus_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

// ---------------------------------------------------------------------------------------
// Running the promoter on a filled copy

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

/// One corpus directory, filled, with its own state.
struct Run {
    name: String,
    fill: Fill,
    manifests: PathBuf,
    state: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Run {
    fn new(s: &Servers, name: &str, http_url: &str) -> Run {
        let tmp = tempfile::tempdir().unwrap();
        let fill = Fill::new(s, name, http_url);
        let manifests = tmp.path().join(name);
        copy_filled(&Path::new(CORPUS).join(name), &manifests, &fill);
        Run {
            name: name.to_owned(),
            fill,
            manifests,
            state: tmp.path().join("state"),
            _tmp: tmp,
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(promoter_bin())
            .arg("--manifests")
            .arg(&self.manifests)
            .arg("--state")
            .arg(&self.state)
            .args(args)
            .env("NO_COLOR", "1")
            .env("KARGO_ACTOR", "corpus-tester")
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
            "[{}] $ promoter {}\n-> exit {}\n{}{}",
            self.name,
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }

    fn expect(&self, code: i32, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(
            out.code,
            code,
            "[{}] promoter {} exited {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.name,
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        for secret in [
            self.fill.get("GIT_PASSWORD"),
            self.fill.get("REGISTRY_PASSWORD"),
        ] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "[{}] a password appears in the output",
                self.name
            );
        }
        out
    }

    /// Seeds the GitOps repository (`@@GITOPS_URL@@`) with `files` (placeholders filled).
    fn seed_gitops(&self, files: &[(&str, &str)]) {
        seed(&self.fill, &self.fill.gitops_bare, files);
    }

    /// Seeds the application repository (`@@APP_GIT_URL@@`) with `files`.
    fn seed_app(&self, files: &[(&str, &str)]) {
        seed(&self.fill, &self.fill.app_bare, files);
    }

    /// A file on `branch` of the GitOps repository.
    fn gitops_file(&self, branch: &str, path: &str) -> String {
        git(
            &self.fill.gitops_bare,
            &["show", &format!("{branch}:{path}")],
        )
    }

    fn gitops_log(&self, branch: &str) -> String {
        git(&self.fill.gitops_bare, &["log", "--format=%s", branch])
    }

    /// Commits `files` to the application repository's `main` (a new commit) and returns
    /// its id.
    fn app_commit(&self, files: &[(&str, &str)], message: &str) -> String {
        commit_to(&self.fill, &self.fill.app_bare, files, message)
    }

    fn freight(&self) -> Vec<Json> {
        self.expect(0, &["get", "freight", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .clone()
    }
}

fn seed(fill: &Fill, bare: &Path, files: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("seed");
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, fill.apply(text)).unwrap();
    }
    support::seed_bare_repo(&work, bare);
}

fn commit_to(fill: &Fill, bare: &Path, files: &[(&str, &str)], message: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, fill.apply(text)).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", message]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    git(&work, &["rev-parse", "HEAD"]).trim().to_owned()
}

// ---------------------------------------------------------------------------------------
// Registry and Helm repository

/// Pushes small images to the authenticated registry.
struct Registry {
    rt: tokio::runtime::Runtime,
    client: oci_client::Client,
    host: String,
    auth: oci_client::secrets::RegistryAuth,
}

impl Registry {
    fn new(s: &Servers) -> Registry {
        Registry {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: oci_client::Client::new(oci_client::client::ClientConfig {
                protocol: oci_client::client::ClientProtocol::Http,
                ..Default::default()
            }),
            host: s.registry.clone(),
            auth: oci_client::secrets::RegistryAuth::Basic(
                s.registry_user.clone(),
                s.registry_password.clone(),
            ),
        }
    }

    /// Pushes `<prefix>/<name>:<tag>` built at `created`; returns its digest.
    fn push(&self, fill: &Fill, name: &str, tag: &str, created: &str) -> String {
        let repo = format!("{}/{name}", fill.image_prefix);
        self.rt.block_on(async {
            use oci_client::Reference;
            let r = |reference: &str| {
                if reference.starts_with("sha256:") {
                    Reference::with_digest(self.host.clone(), repo.clone(), reference.to_owned())
                } else {
                    Reference::with_tag(self.host.clone(), repo.clone(), reference.to_owned())
                }
            };
            self.client
                .auth(&r(tag), &self.auth, oci_client::RegistryOperation::Push)
                .await
                .unwrap();
            let config = serde_json::to_vec(&json!({
                "architecture": "amd64", "os": "linux", "created": created,
                "rootfs": {"type": "layers", "diff_ids": []},
                "config": {"Env": [format!("TAG={tag}")]},
            }))
            .unwrap();
            let layer = format!("layer of {name}:{tag}").into_bytes();
            let (cd, ld) = (sha256(&config), sha256(&layer));
            self.client
                .push_blob(&r(&cd), config.clone(), &cd)
                .await
                .unwrap();
            self.client
                .push_blob(&r(&ld), layer.clone(), &ld)
                .await
                .unwrap();
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
            }))
            .unwrap();
            let digest = sha256(&manifest);
            self.client
                .push_manifest_raw(
                    &r(tag),
                    manifest,
                    "application/vnd.oci.image.manifest.v1+json".parse().unwrap(),
                )
                .await
                .unwrap();
            digest
        })
    }
}

fn sha256(bytes: &[u8]) -> String {
    kargo::sources::chart::sha256_digest(bytes)
}

/// Publishes chart `name` in `versions` to the directory's Helm repository: one packaged
/// chart (`tar czf`) per version and an `index.yaml` naming them with their digests.
fn publish_charts(fill: &Fill, name: &str, versions: &[&str]) {
    let dir = &fill.chart_dir;
    let mut index = format!("apiVersion: v1\nentries:\n  {name}:\n");
    for v in versions {
        let work = tempfile::tempdir().unwrap();
        let chart = work.path().join(name);
        std::fs::create_dir_all(chart.join("templates")).unwrap();
        std::fs::write(
            chart.join("Chart.yaml"),
            format!("apiVersion: v2\nname: {name}\nversion: {v}\nappVersion: \"{v}\"\n"),
        )
        .unwrap();
        std::fs::write(chart.join("values.yaml"), "replicaCount: 1\n").unwrap();
        std::fs::write(
            chart.join("templates/configmap.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
        )
        .unwrap();
        let tgz = dir.join(format!("{name}-{v}.tgz"));
        let status = Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(work.path())
            .arg(name)
            .status()
            .unwrap();
        assert!(status.success());
        let digest = sha256(&std::fs::read(&tgz).unwrap());
        let digest = digest.trim_start_matches("sha256:");
        index.push_str(&format!(
            "  - apiVersion: v2\n    name: {name}\n    version: {v}\n    appVersion: \"{v}\"\n    created: \"2026-01-01T00:00:00Z\"\n    digest: {digest}\n    urls:\n    - {name}-{v}.tgz\n"
        ));
    }
    index.push_str("generated: \"2026-01-01T00:00:00Z\"\n");
    let tmp = dir.join("index.yaml.tmp");
    std::fs::write(&tmp, index).unwrap();
    std::fs::rename(tmp, dir.join("index.yaml")).unwrap();
}

// ---------------------------------------------------------------------------------------
// A small HTTP server (the `http` step's change-management API)

/// Serves `routes` (path → JSON body) on 127.0.0.1 from a thread, until the process ends.
fn http_server(routes: Vec<(&'static str, Json)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut content_length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            let path = path.split('?').next().unwrap_or("/");
            let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                Some((_, b)) => ("200 OK", b.to_string()),
                None => ("404 Not Found", "{}".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

// ---------------------------------------------------------------------------------------
// 1. Every directory validates

/// What a directory has on purpose: kinds the loader skips with a notice, and the fields
/// its warnings name.
fn expected_notes(dir: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match &dir[..2] {
        "01" => (&["AppProject", "ApplicationSet"], &[]),
        "02" | "04" | "05" => (&["Application"], &[]),
        "03" => (&["Namespace"], &[]),
        _ => (&[], &[]),
    }
}

#[test]
fn every_directory_validates() {
    let Some(s) = servers("every_directory_validates") else {
        return;
    };
    let dirs = corpus_dirs();
    assert!(
        dirs.len() >= 30,
        "the corpus has {} directories",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let run = Run::new(&s, name, "http://127.0.0.1:9/unused");
        let out = run.run(&["validate", "-o", "json"]);
        if out.code != 0 {
            failures.push(format!(
                "{name}: exit {}\n{}{}",
                out.code, out.stdout, out.stderr
            ));
            continue;
        }
        let doc = out.json();
        assert_eq!(doc["valid"], json!(true), "{name}: {doc:#}");
        let (kinds, warnings) = expected_notes(name);
        let skipped: Vec<&str> = doc["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        for kind in kinds {
            assert!(
                skipped.contains(kind),
                "{name}: {kind} not skipped: {doc:#}"
            );
        }
        for s in doc["skipped"].as_array().unwrap() {
            assert!(
                s["file"].as_str().unwrap().ends_with(".yaml") && s["line"].as_u64().unwrap() > 0,
                "{name}: a notice without its place: {s}"
            );
        }
        let fields: Vec<&str> = doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["field"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            fields.len(),
            warnings.len(),
            "{name}: warnings {fields:?}, expected {warnings:?}: {doc:#}"
        );
        for w in warnings {
            assert!(
                fields.iter().any(|f| f.contains(w)),
                "{name}: no warning on {w}: {doc:#}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "directories that do not validate:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// 2. End to end

/// The servers, or `None` (skip) without them.
fn e2e(test: &str, dir: &str) -> Option<(Servers, Run)> {
    let s = servers(test)?;
    let run = Run::new(&s, dir, "http://127.0.0.1:9/unused");
    Some((s, run))
}

const KUSTOMIZE_BASE: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: guestbook
spec:
  template:
    spec:
      containers:
      - name: guestbook
        image: @@REGISTRY@@/guestbook:0.0.0 # set by the overlays
";

fn kustomization(env: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n# {env} overlay\nnamespace: guestbook-{env}\nresources:\n- ../../base\nimages:\n- name: @@REGISTRY@@/guestbook\n  newTag: 0.0.0\n"
    )
}

#[test]
fn e2e_02_kustomize_set_image() {
    let Some((s, run)) = e2e("e2e_02_kustomize_set_image", "02-kustomize-set-image") else {
        return;
    };
    let (dev, prod) = (kustomization("dev"), kustomization("prod"));
    run.seed_gitops(&[
        ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        ("base/deployment.yaml", KUSTOMIZE_BASE),
        ("env/dev/kustomization.yaml", &dev),
        ("env/prod/kustomization.yaml", &prod),
    ]);
    let reg = Registry::new(&s);
    for (tag, day) in [("1.0.0", 1), ("1.1.0", 2), ("2.0.0", 3), ("1.2.0-rc.1", 4)] {
        reg.push(
            &run.fill,
            "guestbook",
            tag,
            &format!("2026-01-0{day}T00:00:00Z"),
        );
    }
    run.expect(0, &["validate"]);
    // dev is auto-promoted: the newest version within the constraint (not 2.0.0, not the
    // prerelease).
    run.expect(0, &["run"]);
    let dev_file = run.gitops_file("main", "env/dev/kustomization.yaml");
    assert!(dev_file.contains("newTag: 1.1.0"), "{dev_file}");
    assert!(
        dev_file.contains("# dev overlay"),
        "comments kept: {dev_file}"
    );
    let prod_file = run.gitops_file("main", "env/prod/kustomization.yaml");
    assert!(prod_file.contains("newTag: 0.0.0"), "{prod_file}");
    // prod on request, with the Freight dev holds.
    let f = run.freight();
    let alias = f[0]["alias"].as_str().unwrap().to_owned();
    run.expect(0, &["promote", "--stage", "prod", "--freight", &alias]);
    let prod_file = run.gitops_file("main", "env/prod/kustomization.yaml");
    assert!(prod_file.contains("newTag: 1.1.0"), "{prod_file}");
}

#[test]
fn e2e_03_promotion_task_vars() {
    let Some((s, run)) = e2e("e2e_03_promotion_task_vars", "03-promotion-task-vars") else {
        return;
    };
    let values = |env: &str| {
        format!("# {env}\nreplicas: 1\nimage:\n  repository: @@REGISTRY@@/api\n  tag: 0.0.0\n")
    };
    let (dev, staging) = (values("dev"), values("staging"));
    run.seed_gitops(&[
        ("env/dev/values.yaml", &dev),
        ("env/staging/values.yaml", &staging),
        ("README.md", "api environments\n"),
    ]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "api", "v1.4.2", "2026-01-01T00:00:00Z");
    reg.push(&run.fill, "api", "v1.5.0", "2026-01-02T00:00:00Z");
    run.expect(0, &["refresh"]);
    let f = run.freight();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["images"][0]["tag"], json!("v1.5.0"));
    let alias = f[0]["alias"].as_str().unwrap().to_owned();
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
    // The rendered branch holds the environment's files only, with the new tag.
    let out = run.gitops_file("stage/dev", "values.yaml");
    assert!(out.contains("  tag: v1.5.0"), "{out}");
    assert!(out.starts_with("# dev\n"), "{out}");
    assert!(
        run.gitops_log("stage/dev")
            .starts_with("render dev: v1.5.0"),
        "{}",
        run.gitops_log("stage/dev")
    );
    assert_eq!(
        run.gitops_file("main", "env/dev/values.yaml"),
        run.fill.apply(&dev)
    );
    // staging overrides the task's default branch prefix with its own variable.
    run.expect(0, &["promote", "--stage", "staging", "--freight", &alias]);
    let out = run.gitops_file("env/staging", "values.yaml");
    assert!(
        out.contains("  tag: v1.5.0") && out.starts_with("# staging\n"),
        "{out}"
    );
}

#[test]
fn e2e_04_helm_values_image() {
    let Some((s, run)) = e2e("e2e_04_helm_values_image", "04-helm-values-image") else {
        return;
    };
    let values = |env: &str| {
        format!(
            "# values for {env}\nimage:\n  repository: @@REGISTRY@@/frontend\n  tag: sha-0000000\n  digest: \"\"\nreplicaCount: 2\n"
        )
    };
    let (test_values, uat_values) = (values("test"), values("uat"));
    run.seed_gitops(&[
        (
            "charts/guestbook/Chart.yaml",
            "apiVersion: v2\nname: guestbook\nversion: 0.1.0\n",
        ),
        (
            "charts/guestbook/values.yaml",
            "image:\n  pullPolicy: IfNotPresent\n",
        ),
        ("charts/guestbook/values-test.yaml", &test_values),
        ("charts/guestbook/values-uat.yaml", &uat_values),
    ]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "frontend", "sha-1111111", "2026-01-01T00:00:00Z");
    let newest = reg.push(&run.fill, "frontend", "sha-2222222", "2026-01-03T00:00:00Z");
    reg.push(
        &run.fill,
        "frontend",
        "sha-3333333-debug",
        "2026-01-05T00:00:00Z",
    );
    reg.push(&run.fill, "frontend", "latest", "2026-01-05T00:00:00Z");
    // Every Stage auto-promotes (glob:*): test takes the newest build, then uat follows
    // once test has verified it.
    run.expect(0, &["run"]);
    run.expect(0, &["run"]);
    for env in ["test", "uat"] {
        let v = run.gitops_file("main", &format!("charts/guestbook/values-{env}.yaml"));
        assert!(v.contains("  tag: sha-2222222"), "{env}: {v}");
        assert!(v.contains(&format!("  digest: {newest}")), "{env}: {v}");
        assert!(v.starts_with(&format!("# values for {env}\n")), "{v}");
    }
}

#[test]
fn e2e_05_helm_update_chart() {
    let Some((_s, run)) = e2e("e2e_05_helm_update_chart", "05-helm-update-chart") else {
        return;
    };
    publish_charts(&run.fill, "podinfo", &["5.2.0", "6.0.0", "6.1.3"]);
    run.seed_gitops(&[(
        "charts/platform/Chart.yaml",
        "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n- name: podinfo\n  version: 6.0.0\n  repository: @@HELM_URL@@\n",
    )]);
    run.expect(0, &["refresh"]);
    let f = run.freight();
    assert_eq!(f[0]["charts"][0]["version"], json!("6.1.3"), "{f:?}");
    let alias = f[0]["alias"].as_str().unwrap().to_owned();
    run.expect(
        0,
        &["promote", "--stage", "integration", "--freight", &alias],
    );
    let chart = run.gitops_file("main", "charts/platform/Chart.yaml");
    assert!(chart.contains("  version: 6.1.3"), "{chart}");
    let lock = run.gitops_file("main", "charts/platform/Chart.lock");
    assert!(lock.contains("version: 6.1.3"), "{lock}");
    let files = git(
        &run.fill.gitops_bare,
        &["ls-tree", "-r", "--name-only", "main"],
    );
    assert!(
        files.contains("charts/platform/charts/podinfo-6.1.3.tgz"),
        "{files}"
    );
    assert!(
        run.gitops_log("main").contains("podinfo: 6.0.0 -> 6.1.3"),
        "{}",
        run.gitops_log("main")
    );
}
