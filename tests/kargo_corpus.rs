//! The Kargo corpus: `tests/kargo-corpus/NN-name/` are manifest directories written the way
//! Kargo's published examples and documentation lay out a user's repository (Project,
//! Warehouses, Stages, PromotionTasks, Secrets, AnalysisTemplates, Argo CD Applications
//! beside them). Placeholders (`@@GITOPS_URL@@`, `@@REGISTRY@@`, `@@HELM_URL@@`,
//! credentials, `@@B64(...)@@` for base64 `data`) are filled with the test servers' values.
//!
//! - `every_directory_validates`: each directory passes `promoter validate -o json`, with
//!   the notices (skipped kinds) and warnings (repeated keys, deprecated fields) it has on
//!   purpose and no others, and lists every Secret, credential and ConfigMap beside it.
//! - `a_misspelt_step_kind_fails_naming_file_and_line`: a copy with one misspelt step
//!   kind fails validation naming the file, line and Stage.
//! - `e2e_*`: the directories with promotions run against the real git server (smart HTTP,
//!   authenticated with the directory's Secrets), the authenticated registry, the Helm
//!   repository and a local HTTP server; the commits land on the remote with the expected
//!   content. `e2e_39_github_webhook_refresh` runs `promoter serve` and posts a signed
//!   GitHub push event to the directory's receiver.
//!
//! `tests/kargo-corpus/README.md` says what each directory shows. Each run gets its own
//! repositories, image namespace and chart directory, so the tests run in parallel on the
//! shared servers. They need the servers of `ci/test.sh`; without their variables they print a skip
//! message, except with `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

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
        let app = format!("private-{id}-app");
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

/// The text of every YAML file below `dir`, each with a leading newline.
fn yaml_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(format!("\n{}", std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
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

/// Serves `routes` (path → JSON body; other paths answer 404) on 127.0.0.1 from a thread
/// until the process ends; returns its URL and the requests it received (method, path
/// with query, lower-cased headers, body), in order.
fn http_server(routes: Vec<(&'static str, Json)>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let requests = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_owned();
            let target = parts.next().unwrap_or("/").to_owned();
            let mut headers = Vec::new();
            let mut content_length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let h = h.trim().to_owned();
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
                headers.push(h);
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            let path = target.split('?').next().unwrap_or("/").to_owned();
            log.lock().unwrap().push(Request {
                method,
                target: target.clone(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
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
    (url, requests)
}

/// One request the HTTP server received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<String>,
    body: String,
}

// ---------------------------------------------------------------------------------------
// 1. Every directory validates

/// What a directory has on purpose: kinds the loader skips with a notice, and the fields
/// its warnings name.
fn expected_notes(dir: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match &dir[..2] {
        "01" => (&["AppProject", "ApplicationSet"], &[]),
        "02" | "04" | "05" | "06" | "22" => (&["Application"], &[]),
        "03" | "11" => (&["Namespace"], &[]),
        "17" => (&["AppProject", "Application", "RoleBinding"], &[]),
        "29" => (&[], &["spec.interval"]),
        "30" => (
            &[],
            &[
                "spec.promotionPolicies[0].stage",
                "spec.promotionTemplate.spec.steps[2].config.author",
                "spec.subscriptions[0].image.allowTags",
            ],
        ),
        "31" => (
            &[
                "AppProject",
                "Application",
                "ApplicationSet",
                "Deployment",
                "Kustomization",
                "Namespace",
                "Role",
                "RoleBinding",
                "ServiceAccount",
            ],
            &[],
        ),
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
        let mut skipped: Vec<&str> = doc["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        skipped.sort_unstable();
        skipped.dedup();
        assert_eq!(skipped, kinds, "{name}: skipped kinds: {doc:#}");
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
        assert_eq!(fields, warnings, "{name}: warnings: {doc:#}");
        // Every Secret and ConfigMap beside the pipeline is read; those labelled git,
        // image or helm are credentials.
        // (Secrets of Kargo's system resources namespace serve cluster receivers only.)
        let (mut secrets, mut config_maps, mut credentials) = (0, 0, 0);
        for text in yaml_files(&run.manifests) {
            for document in text.split("\n---") {
                let d: Json = yaml_serde::from_str(document).unwrap_or(Json::Null);
                match d["kind"].as_str() {
                    Some("Secret")
                        if d["metadata"]["namespace"] != json!("kargo-system-resources") =>
                    {
                        secrets += 1;
                        let label = &d["metadata"]["labels"]["kargo.akuity.io/cred-type"];
                        if ["git", "image", "helm"].iter().any(|t| label == t) {
                            credentials += 1;
                        }
                    }
                    Some("ConfigMap") => config_maps += 1,
                    _ => {}
                }
            }
        }
        let len = |key: &str| doc[key].as_array().map_or(0, Vec::len);
        let names = |key: &str| -> std::collections::BTreeSet<String> {
            doc[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap().rsplit(' ').next().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        // Expressions read the Project's Secrets and the shared generic ones; a shared
        // credential is a credential only.
        let read: std::collections::BTreeSet<String> = names("secrets")
            .union(&names("credentials"))
            .cloned()
            .collect();
        assert_eq!(read.len(), secrets, "{name}: Secrets: {doc:#}");
        assert_eq!(
            len("configMaps"),
            config_maps,
            "{name}: ConfigMaps: {doc:#}"
        );
        assert_eq!(
            len("credentials"),
            credentials,
            "{name}: credentials: {doc:#}"
        );
        for w in doc["warnings"].as_array().unwrap() {
            assert!(
                w["file"].as_str().unwrap().ends_with(".yaml") && w["line"].as_u64().unwrap() > 0,
                "{name}: a warning without its place: {w}"
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
    run.expect(0, &["refresh", "warehouse", "api"]);
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
        assert!(v.contains(&format!("  digest: \"{newest}\"")), "{env}: {v}");
        assert!(v.starts_with(&format!("# values for {env}\n")), "{v}");
    }
}

#[test]
fn e2e_05_helm_update_chart() {
    let Some((_s, run)) = e2e("e2e_05_helm_update_chart", "05-helm-update-chart") else {
        return;
    };
    publish_charts(&run.fill, "podinfo", &["5.2.0", "6.0.0", "6.1.3"]);
    run.seed_gitops(&[
        (
            "charts/platform/Chart.yaml",
            "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n- name: podinfo\n  version: 6.0.0\n  repository: @@HELM_URL@@\n",
        ),
        (
            "charts/platform/Chart.lock",
            "dependencies:\n- name: podinfo\n  repository: @@HELM_URL@@\n  version: 6.0.0\ndigest: sha256:2f8a3c1d5e6b7a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c\ngenerated: \"2026-01-01T00:00:00Z\"\n",
        ),
    ]);
    run.expect(0, &["refresh", "warehouse", "podinfo-chart"]);
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
    let message = git(&run.fill.gitops_bare, &["log", "-1", "--format=%B", "main"]);
    assert_eq!(
        message.trim_end(),
        "Updated chart dependencies for ./src/charts/platform\n\n- podinfo: 6.0.0 -> 6.1.3"
    );
}

/// Runs reconcile passes until one changes nothing on the GitOps remote (at most `max`).
fn run_until_settled(run: &Run, max: usize) {
    let head = || {
        git(
            &run.fill.gitops_bare,
            &["for-each-ref", "--format=%(objectname) %(refname)"],
        )
    };
    for _ in 0..max {
        let before = head();
        run.expect(0, &["run"]);
        if head() == before {
            return;
        }
    }
}

/// The alias of the Freight whose JSON satisfies `pred`.
fn alias_of(freight: &[Json], pred: impl Fn(&Json) -> bool) -> String {
    freight
        .iter()
        .find(|f| pred(f))
        .unwrap_or_else(|| panic!("no such Freight in {freight:#?}"))["alias"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Tags the application repository's `main` with `tag` (lightweight, or annotated with
/// `message`), at `date` as its committer/tagger date.
fn tag_app(run: &Run, files: &[(&str, &str)], tag: &str, date: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            run.fill.app_bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, run.fill.apply(text)).unwrap();
    }
    let dated = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Release")
            .env("GIT_AUTHOR_EMAIL", "release@example.com")
            .env("GIT_COMMITTER_NAME", "Release")
            .env("GIT_COMMITTER_EMAIL", "release@example.com")
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    dated(&["add", "-A"]);
    dated(&[
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        &format!("release {tag}"),
    ]);
    dated(&["tag", tag]);
    dated(&[
        "push",
        "-q",
        "origin",
        "HEAD:main",
        &format!("refs/tags/{tag}"),
    ]);
    git(&work, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn e2e_07_multi_warehouse() {
    let Some((s, run)) = e2e("e2e_07_multi_warehouse", "07-multi-warehouse") else {
        return;
    };
    run.seed_gitops(&[(
        "apps/storefront/qa.yaml",
        "# pins of the qa environment\nimage:\n  tag: none\nchart:\n  version: 0.0.0\nconfig:\n  revision: none\n",
    )]);
    run.seed_app(&[("config/settings.yaml", "featureX: false\n")]);
    let config_head = run.app_commit(&[("config/settings.yaml", "featureX: true\n")], "enable X");
    let reg = Registry::new(&s);
    reg.push(&run.fill, "storefront", "1.0.0", "2026-01-01T00:00:00Z");
    reg.push(&run.fill, "storefront", "1.1.0", "2026-01-02T00:00:00Z");
    publish_charts(&run.fill, "storefront", &["0.1.0", "0.2.0"]);
    run_until_settled(&run, 4);
    let f = run.freight();
    assert_eq!(f.len(), 3, "one Freight per Warehouse: {f:#?}");
    let qa = run.gitops_file("main", "apps/storefront/qa.yaml");
    assert_eq!(
        qa,
        format!(
            "# pins of the qa environment\nimage:\n  tag: 1.1.0\nchart:\n  version: 0.2.0\nconfig:\n  revision: {config_head}\n"
        ),
    );
    // A new chart version moves the chart only.
    publish_charts(&run.fill, "storefront", &["0.1.0", "0.2.0", "0.3.0"]);
    run.expect(0, &["run", "--refresh-all"]);
    let qa = run.gitops_file("main", "apps/storefront/qa.yaml");
    assert!(
        qa.contains("version: 0.3.0") && qa.contains("tag: 1.1.0"),
        "{qa}"
    );
}

#[test]
fn e2e_09_verification_web() {
    let Some(s) = servers("e2e_09_verification_web") else {
        return;
    };
    let (url, requests) = http_server(vec![(
        "/health",
        json!({"status": "healthy", "version": "v1.2.0"}),
    )]);
    let run = Run::new(&s, "09-verification-web", &url);
    let rollout = |env: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: rollouts-demo-{env}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: none\n"
        )
    };
    let (dev, prod) = (rollout("dev"), rollout("prod"));
    run.seed_gitops(&[("dev/rollout.yaml", &dev), ("prod/rollout.yaml", &prod)]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "rollouts-demo", "v1.2.0", "2026-01-01T00:00:00Z");
    // dev deploys v1.2.0, the health endpoint reports it: verified, so prod follows.
    run_until_settled(&run, 4);
    let image = format!("{}/rollouts-demo", run.fill.get("REGISTRY"));
    for env in ["dev", "prod"] {
        let f = run.gitops_file("main", &format!("{env}/rollout.yaml"));
        assert!(f.contains(&format!("image: {image}:v1.2.0")), "{env}: {f}");
    }
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.target == "/health"),
        "the analysis asked the health endpoint"
    );
    // v1.3.0 reaches dev, but the endpoint still reports v1.2.0: the analysis fails and
    // prod keeps v1.2.0.
    reg.push(&run.fill, "rollouts-demo", "v1.3.0", "2026-01-02T00:00:00Z");
    run.run(&["run", "--refresh-all"]);
    run.run(&["run"]);
    let f = run.gitops_file("main", "dev/rollout.yaml");
    assert!(f.contains(&format!("image: {image}:v1.3.0")), "{f}");
    let f = run.gitops_file("main", "prod/rollout.yaml");
    assert!(f.contains(&format!("image: {image}:v1.2.0")), "{f}");
}

#[test]
fn e2e_11_shared_credentials() {
    let Some((_s, run)) = e2e("e2e_11_shared_credentials", "11-shared-credentials") else {
        return;
    };
    run.seed_app(&[("src/main.go", "package main\n")]);
    let head = run.app_commit(
        &[("src/inventory.go", "package main\n")],
        "add inventory service",
    );
    run.seed_gitops(&[(
        "inventory/dev/source.yaml",
        "source:\n  revision: none\n  message: none\n",
    )]);
    run.expect(0, &["refresh", "warehouse", "inventory-source"]);
    let f = run.freight();
    assert_eq!(f[0]["commits"][0]["id"], json!(head), "{f:#?}");
    let alias = f[0]["alias"].as_str().unwrap().to_owned();
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
    assert_eq!(
        run.gitops_file("main", "inventory/dev/source.yaml"),
        format!("source:\n  revision: {head}\n  message: add inventory service\n")
    );
    assert!(
        run.gitops_log("main")
            .starts_with(&format!("dev: inventory at {head}"))
    );
}

#[test]
fn e2e_12_secrets_and_configmaps() {
    let Some((s, run)) = e2e("e2e_12_secrets_and_configmaps", "12-secrets-and-configmaps") else {
        return;
    };
    run.seed_gitops(&[(
        "billing/values-dev.yaml",
        "image:\n  tag: none\nregion: none\nreplicas: 1\nowner: none\nreleaseTrain: none\ncanary: false\n",
    )]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "billing", "1.0.0", "2026-01-01T00:00:00Z");
    run_until_settled(&run, 2);
    assert_eq!(
        run.gitops_file("main", "billing/values-dev.yaml"),
        "image:\n  tag: 1.0.0\nregion: eu-west-1\nreplicas: 3\nowner: platform-team\nreleaseTrain: \"2026.12\"\ncanary: true\n"
    );
}

#[test]
fn e2e_13_auto_promotion_policies() {
    let Some((s, run)) = e2e(
        "e2e_13_auto_promotion_policies",
        "13-auto-promotion-policies",
    ) else {
        return;
    };
    let envs = ["dev", "qa-east", "qa-west", "perf", "prod"];
    let files: Vec<(String, &str)> = envs
        .iter()
        .map(|e| (format!("envs/{e}.yaml"), "tag: none\n"))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    run.seed_gitops(&files);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "search", "1.0.0", "2026-01-01T00:00:00Z");
    run_until_settled(&run, 6);
    for env in ["dev", "qa-east", "qa-west", "perf"] {
        assert_eq!(
            run.gitops_file("main", &format!("envs/{env}.yaml")),
            "tag: 1.0.0\n",
            "{env} is auto-promoted"
        );
    }
    assert_eq!(
        run.gitops_file("main", "envs/prod.yaml"),
        "tag: none\n",
        "prod's policy comes first and says no"
    );
    // By hand, prod takes it: verified in both QA Stages.
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    run.expect(0, &["promote", "--stage", "prod", "--freight", &alias]);
    assert_eq!(run.gitops_file("main", "envs/prod.yaml"), "tag: 1.0.0\n");
}

#[test]
fn e2e_16_cluster_promotion_task() {
    let Some((s, run)) = e2e("e2e_16_cluster_promotion_task", "16-cluster-promotion-task") else {
        return;
    };
    run.seed_gitops(&[("catalog/staging.yaml", "image:\n  tag: none\nreplicas: 1\n")]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "catalog", "2.9.0", "2026-01-01T00:00:00Z");
    reg.push(&run.fill, "catalog", "3.1.0", "2026-01-02T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "catalog"]);
    let f = run.freight();
    assert_eq!(f[0]["images"][0]["tag"], json!("3.1.0"));
    let alias = f[0]["alias"].as_str().unwrap().to_owned();
    let out = run.expect(
        0,
        &[
            "promote",
            "--stage",
            "staging",
            "--freight",
            &alias,
            "-o",
            "json",
        ],
    );
    assert_eq!(
        run.gitops_file("main", "catalog/staging.yaml"),
        "image:\n  tag: 3.1.0\nreplicas: 3\n"
    );
    let log = run.gitops_log("main");
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("[scale] staging replicas=3"), "{log}");
    assert_eq!(
        lines.next(),
        Some("[kargo] staging image.tag=3.1.0"),
        "{log}"
    );
    let head = git(&run.fill.gitops_bare, &["rev-parse", "main"]);
    assert!(
        out.stdout.contains(head.trim()),
        "the composed output names the commit: {}",
        out.stdout
    );
}

#[test]
fn e2e_19_http_change_approval() {
    let Some(s) = servers("e2e_19_http_change_approval") else {
        return;
    };
    let (url, requests) = http_server(vec![
        (
            "/api/changes/CHG-1042",
            json!({"number": "CHG-1042", "state": "approved", "approvedBy": "alice"}),
        ),
        ("/api/notify", json!({"ok": true})),
    ]);
    let run = Run::new(&s, "19-http-change-approval", &url);
    run.seed_app(&[("ledger.yaml", "limits: {}\n")]);
    let head = run.app_commit(&[("ledger.yaml", "limits: {daily: 100}\n")], "raise limits");
    run.seed_gitops(&[(
        "ledger/production.yaml",
        "config:\n  revision: none\nchange:\n  ticket: none\n  approvedBy: none\n",
    )]);
    run.expect(0, &["refresh", "warehouse", "ledger-config"]);
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    run.expect(
        0,
        &["promote", "--stage", "production", "--freight", &alias],
    );
    assert_eq!(
        run.gitops_file("main", "ledger/production.yaml"),
        format!("config:\n  revision: {head}\nchange:\n  ticket: CHG-1042\n  approvedBy: alice\n")
    );
    assert!(
        run.gitops_log("main")
            .starts_with("CHG-1042: promote ledger config")
    );
    let requests = requests.lock().unwrap().clone();
    let ask = requests
        .iter()
        .find(|r| r.target.starts_with("/api/changes/CHG-1042"))
        .unwrap_or_else(|| panic!("no change request lookup: {requests:#?}"));
    assert_eq!(ask.method, "GET");
    assert!(ask.target.contains(&format!("revision={head}")), "{ask:?}");
    assert!(
        ask.headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer cm-api-token-7d1f")),
        "the token from the Secret: {ask:?}"
    );
    let notify = requests
        .iter()
        .find(|r| r.target == "/api/notify")
        .unwrap_or_else(|| panic!("no notification: {requests:#?}"));
    assert_eq!(notify.method, "POST");
    let body: Json = serde_json::from_str(&notify.body)
        .unwrap_or_else(|e| panic!("the notification is not JSON ({e}): {notify:?}"));
    assert_eq!(body, json!({"stage": "production", "ticket": "CHG-1042"}));
}

#[test]
fn e2e_20_compose_output() {
    let Some((s, run)) = e2e("e2e_20_compose_output", "20-compose-output") else {
        return;
    };
    run.seed_app(&[("notes.md", "notes\n")]);
    let head = git(&run.fill.app_bare, &["rev-parse", "main"])
        .trim()
        .to_owned();
    run.seed_gitops(&[(
        "notes/dev/release.yaml",
        "image:\n  tag: 0.1.0\nsource: none\n",
    )]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "notes", "0.2.0", "2026-01-01T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "notes"]);
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
    assert_eq!(
        run.gitops_file("main", "notes/dev/release.yaml"),
        format!("image:\n  tag: 0.2.0\nsource: {head}\n")
    );
    let changes: Json =
        yaml_serde::from_str(&run.gitops_file("main", "notes/dev/CHANGES.yaml")).unwrap();
    assert_eq!(changes["from"], json!("0.1.0"));
    assert_eq!(changes["to"], json!("0.2.0"));
    assert_eq!(changes["source"], json!(head));
    assert!(run.gitops_log("main").starts_with("notes 0.1.0 -> 0.2.0\n"));
}

#[test]
fn e2e_21_conditional_steps() {
    let Some((s, run)) = e2e("e2e_21_conditional_steps", "21-conditional-steps") else {
        return;
    };
    run.seed_gitops(&[(
        "flags/dev.yaml",
        "image:\n  tag: none\nchecks:\n  optional: pending\nmigrations:\n  required: false\n",
    )]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "flags", "1.3.0", "2026-01-01T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "flags"]);
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    // The optional check fails (continueOnError), its failure is recorded, the major-only
    // step is skipped, and the promotion succeeds.
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
    assert_eq!(
        run.gitops_file("main", "flags/dev.yaml"),
        "image:\n  tag: 1.3.0\nchecks:\n  optional: failed\nmigrations:\n  required: false\n"
    );
    let log = run.gitops_log("main");
    assert_eq!(log.lines().next(), Some("flags 1.3.0"), "{log}");
    // A new major version runs the migration step too.
    reg.push(&run.fill, "flags", "2.0.0", "2026-01-02T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "flags"]);
    let alias = alias_of(&run.freight(), |f| f["images"][0]["tag"] == "2.0.0");
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
    assert_eq!(
        run.gitops_file("main", "flags/dev.yaml"),
        "image:\n  tag: 2.0.0\nchecks:\n  optional: failed\nmigrations:\n  required: true\n"
    );
    let log = run.gitops_log("main");
    assert_eq!(log.lines().next(), Some("flags 2.0.0 (major)"), "{log}");
}

#[test]
fn e2e_23_freight_creation_criteria() {
    let Some((s, run)) = e2e(
        "e2e_23_freight_creation_criteria",
        "23-freight-creation-criteria",
    ) else {
        return;
    };
    run.seed_app(&[("deploy/app.yaml", "version: 0\n")]);
    tag_app(
        &run,
        &[("deploy/app.yaml", "version: 1.0.0\n")],
        "1.0.0",
        "2026-01-01T00:00:00Z",
    );
    let reg = Registry::new(&s);
    reg.push(&run.fill, "matched", "1.0.0", "2026-01-01T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "matched"]);
    assert_eq!(run.freight().len(), 1);
    // The image is ahead of the manifests: no Freight.
    reg.push(&run.fill, "matched", "1.1.0", "2026-01-02T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "matched"]);
    assert_eq!(run.freight().len(), 1, "criteria not met: no new Freight");
    // The manifests catch up.
    tag_app(
        &run,
        &[("deploy/app.yaml", "version: 1.1.0\n")],
        "1.1.0",
        "2026-01-02T00:00:00Z",
    );
    run.expect(0, &["refresh", "warehouse", "matched"]);
    let f = run.freight();
    assert_eq!(f.len(), 2, "{f:#?}");
    let alias = alias_of(&f, |f| {
        f["images"][0]["tag"] == "1.1.0" && f["commits"][0]["tag"] == "1.1.0"
    });
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
}

#[test]
fn e2e_24_include_exclude_paths() {
    let Some((_s, run)) = e2e("e2e_24_include_exclude_paths", "24-include-exclude-paths") else {
        return;
    };
    run.seed_app(&[
        ("services/orders/main.go", "package main\n"),
        ("services/payments/main.go", "package main\n"),
        ("README.md", "monorepo\n"),
    ]);
    run.seed_gitops(&[
        ("orders/dev.yaml", "revision: none\n"),
        ("payments/dev.yaml", "revision: none\n"),
    ]);
    let orders = run.app_commit(
        &[("services/orders/handler.go", "package main\n")],
        "orders: handler",
    );
    let payments = run.app_commit(
        &[("services/payments/refund.go", "package main\n")],
        "payments: refunds",
    );
    // Excluded for orders (docs and tests only), not payments' path.
    run.app_commit(
        &[
            ("services/orders/README.md", "# orders\n"),
            ("services/orders/handler_test.go", "package main\n"),
        ],
        "orders: docs and tests",
    );
    // payments' files, but the subject opts out.
    run.app_commit(
        &[("services/payments/notes.go", "package main\n")],
        "payments: notes [skip kargo]",
    );
    run.app_commit(&[("docs/guide.md", "guide\n")], "docs");
    run.expect(0, &["refresh", "warehouse", "orders"]);
    run.expect(0, &["refresh", "warehouse", "payments"]);
    let f = run.freight();
    let commit_of = |wh: &str| {
        f.iter().find(|x| x["origin"]["name"] == wh).unwrap()["commits"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(commit_of("orders"), orders);
    assert_eq!(commit_of("payments"), payments);
    let alias = alias_of(&f, |x| x["origin"]["name"] == "orders");
    run.expect(
        0,
        &["promote", "--stage", "orders-dev", "--freight", &alias],
    );
    assert_eq!(
        run.gitops_file("main", "orders/dev.yaml"),
        format!("revision: {orders}\n")
    );
    assert_eq!(
        run.gitops_file("main", "payments/dev.yaml"),
        "revision: none\n"
    );
}

#[test]
fn e2e_25_image_selection_strategies() {
    let Some((s, run)) = e2e(
        "e2e_25_image_selection_strategies",
        "25-image-selection-strategies",
    ) else {
        return;
    };
    let reg = Registry::new(&s);
    reg.push(&run.fill, "app", "1.0.0", "2026-01-01T00:00:00Z");
    reg.push(&run.fill, "app", "1.5.0", "2026-01-02T00:00:00Z");
    reg.push(&run.fill, "app", "nightly-20260101", "2026-01-03T00:00:00Z");
    reg.push(&run.fill, "app", "nightly-20260105", "2026-01-04T00:00:00Z");
    reg.push(&run.fill, "app", "2.0.0", "2026-01-05T00:00:00Z");
    let latest = reg.push(&run.fill, "app", "latest", "2026-01-06T00:00:00Z");
    for wh in ["semver", "lexical", "newest-build", "digest"] {
        run.expect(0, &["refresh", "warehouse", wh]);
    }
    let f = run.freight();
    let image_of = |wh: &str| {
        f.iter()
            .find(|x| x["origin"]["name"] == wh)
            .unwrap_or_else(|| panic!("no Freight from {wh}: {f:#?}"))["images"][0]
            .clone()
    };
    assert_eq!(image_of("semver")["tag"], json!("1.5.0"));
    assert_eq!(image_of("lexical")["tag"], json!("nightly-20260105"));
    assert_eq!(image_of("newest-build")["tag"], json!("2.0.0"));
    assert_eq!(image_of("digest")["tag"], json!("latest"));
    assert_eq!(image_of("digest")["digest"], json!(latest));
    // `latest` moves: the Digest Warehouse makes new Freight, the others do not.
    let moved = reg.push(&run.fill, "app", "latest", "2026-01-07T00:00:00Z");
    assert_ne!(moved, latest);
    for wh in ["semver", "digest"] {
        run.expect(0, &["refresh", "warehouse", wh]);
    }
    let f = run.freight();
    assert_eq!(f.len(), 5, "{f:#?}");
    assert!(f.iter().any(|x| x["images"][0]["digest"] == json!(moved)));
}

#[test]
fn e2e_26_git_tag_strategies() {
    let Some((_s, run)) = e2e("e2e_26_git_tag_strategies", "26-git-tag-strategies") else {
        return;
    };
    run.seed_app(&[("VERSION", "0\n")]);
    let v12 = tag_app(
        &run,
        &[("VERSION", "1.2\n")],
        "v1.2.0",
        "2026-01-01T00:00:00Z",
    );
    tag_app(
        &run,
        &[("VERSION", "1.1\n")],
        "v1.1.5",
        "2026-01-02T00:00:00Z",
    );
    tag_app(&run, &[("VERSION", "2\n")], "2.0.0", "2026-01-03T00:00:00Z");
    tag_app(&run, &[], "release-b", "2026-01-04T00:00:00Z");
    let newest = tag_app(&run, &[], "release-a", "2026-01-05T00:00:00Z");
    let beta = tag_app(&run, &[], "beta", "2026-01-06T00:00:00Z");
    tag_app(&run, &[], "alpha", "2026-01-07T00:00:00Z");
    tag_app(&run, &[], "zz-broken", "2026-01-08T00:00:00Z");
    for wh in ["semver-tags", "newest-tag", "lexical-tags"] {
        run.expect(0, &["refresh", "warehouse", wh]);
    }
    let f = run.freight();
    let commit_of =
        |wh: &str| f.iter().find(|x| x["origin"]["name"] == wh).unwrap()["commits"][0].clone();
    assert_eq!(commit_of("semver-tags")["tag"], json!("v1.2.0"));
    assert_eq!(commit_of("semver-tags")["id"], json!(v12));
    assert_eq!(commit_of("newest-tag")["tag"], json!("release-a"));
    assert_eq!(commit_of("newest-tag")["id"], json!(newest));
    assert_eq!(commit_of("lexical-tags")["tag"], json!("beta"));
    assert_eq!(commit_of("lexical-tags")["id"], json!(beta));
    // The Stage checks out the SemVer tag and composes the three.
    let out = run.expect(
        0,
        &[
            "promote",
            "--stage",
            "tagged",
            "--freight",
            &alias_of(&f, |x| x["origin"]["name"] == "semver-tags"),
        ],
    );
    assert!(out.stdout.contains("Succeeded"), "{}", out.stdout);
}

#[test]
fn e2e_28_control_flow_fan_out() {
    let Some((_s, run)) = e2e("e2e_28_control_flow_fan_out", "28-control-flow-fan-out") else {
        return;
    };
    run.seed_app(&[("edge.conf", "a\n")]);
    let head = git(&run.fill.app_bare, &["rev-parse", "main"])
        .trim()
        .to_owned();
    run.seed_gitops(&[
        ("edge/test.yaml", "configRevision: none\n"),
        ("edge/edge-eu.yaml", "configRevision: none\n"),
        ("edge/edge-ap.yaml", "configRevision: none\n"),
    ]);
    run_until_settled(&run, 6);
    for stage in ["test", "edge-eu", "edge-ap"] {
        assert_eq!(
            run.gitops_file("main", &format!("edge/{stage}.yaml")),
            format!("configRevision: {head}\n"),
            "{stage}"
        );
    }
    // The control-flow Stage ran no steps; the Freight counts as verified in it.
    let f = run.freight();
    assert!(
        f[0]["status"]["verifiedIn"].get("release-gate").is_some(),
        "{f:#?}"
    );
}

#[test]
fn e2e_33_oci_push_retag() {
    let Some((s, run)) = e2e("e2e_33_oci_push_retag", "33-oci-push-retag") else {
        return;
    };
    let reg = Registry::new(&s);
    let digest = reg.push(&run.fill, "ci/api", "1.4.0", "2026-01-01T00:00:00Z");
    run.expect(0, &["run"]);
    let repo = format!("{}/release/api", run.fill.image_prefix);
    let fetched = |tag: &str| {
        reg.rt.block_on(async {
            let r = oci_client::Reference::with_tag(reg.host.clone(), repo.clone(), tag.to_owned());
            reg.client
                .fetch_manifest_digest(&r, &reg.auth)
                .await
                .unwrap()
        })
    };
    assert_eq!(fetched("1.4.0"), digest, "copied byte for byte");
    assert_ne!(fetched("stable"), digest, "annotated: a new digest");
}

#[test]
fn e2e_34_json_toml_config() {
    let Some((s, run)) = e2e("e2e_34_json_toml_config", "34-json-toml-config") else {
        return;
    };
    run.seed_gitops(&[
        (
            "dev/deploy.json",
            "{\n  \"container\": {\n    \"version\": \"0.9.0\",\n    \"previous\": \"\"\n  }\n}\n",
        ),
        (
            "dev/proxy.toml",
            "# edge proxy\n[upstream]\nimage = \"none\" # set by Kargo\ntimeout = 30\n",
        ),
    ]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "edge-proxy", "1.0.0", "2026-01-01T00:00:00Z");
    run_until_settled(&run, 2);
    let deploy: Json = serde_json::from_str(&run.gitops_file("main", "dev/deploy.json")).unwrap();
    assert_eq!(
        deploy,
        json!({"container": {"version": "1.0.0", "previous": "0.9.0"}})
    );
    let toml = run.gitops_file("main", "dev/proxy.toml");
    let image = format!("{}/edge-proxy:1.0.0", run.fill.get("REGISTRY"));
    assert!(toml.contains(&format!("image = \"{image}\"")), "{toml}");
    assert!(
        toml.starts_with("# edge proxy\n") && toml.contains("timeout = 30"),
        "{toml}"
    );
}

#[test]
fn e2e_35_file_steps() {
    let Some((_s, run)) = e2e("e2e_35_file_steps", "35-file-steps") else {
        return;
    };
    run.seed_app(&[
        (
            "config/base.yaml",
            "log:\n  level: info\n  format: json\nreplicas: 1\n",
        ),
        ("config/staging.yaml", "log:\n  level: debug\nreplicas: 2\n"),
        ("static/index.html", "<h1>hi</h1>\n"),
        ("static/scratch.tmp", "tmp\n"),
        ("static/drafts/next.html", "draft\n"),
    ]);
    let head = git(&run.fill.app_bare, &["rev-parse", "main"])
        .trim()
        .to_owned();
    run.seed_gitops(&[
        ("staging/obsolete/old.yaml", "old: true\n"),
        ("staging/config.yaml.bak", "backup\n"),
        ("README.md", "gitops\n"),
    ]);
    run.expect(0, &["refresh", "warehouse", "bundle-source"]);
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    run.expect(0, &["promote", "--stage", "staging", "--freight", &alias]);
    let config: Json =
        yaml_serde::from_str(&run.gitops_file("main", "staging/config.yaml")).unwrap();
    assert_eq!(
        config,
        json!({"log": {"level": "debug", "format": "json"}, "replicas": 2})
    );
    let source: Json =
        yaml_serde::from_str(&run.gitops_file("main", "staging/source.yaml")).unwrap();
    assert_eq!(source, json!({"revision": head, "stage": "staging"}));
    let files = git(
        &run.fill.gitops_bare,
        &["ls-tree", "-r", "--name-only", "main"],
    );
    assert!(files.contains("staging/static/index.html"), "{files}");
    assert!(
        !files.contains("scratch.tmp") && !files.contains("drafts/"),
        "ignored: {files}"
    );
    assert!(
        !files.contains("staging/obsolete/") && !files.contains(".bak"),
        "deleted: {files}"
    );
    assert!(
        files
            .lines()
            .any(|l| l.starts_with("staging/unpacked/") && l.ends_with("index.html")),
        "unpacked: {files}"
    );
}

#[test]
fn e2e_36_git_tag_release() {
    let Some((s, run)) = e2e("e2e_36_git_tag_release", "36-git-tag-release") else {
        return;
    };
    run.seed_gitops(&[("production/notifier.yaml", "image:\n  tag: none\n")]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "notifier", "2.1.0", "2026-01-01T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "notifier"]);
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    run.expect(
        0,
        &["promote", "--stage", "production", "--freight", &alias],
    );
    assert_eq!(
        run.gitops_file("main", "production/notifier.yaml"),
        "image:\n  tag: 2.1.0\n"
    );
    let bare = &run.fill.gitops_bare;
    let tagged = git(bare, &["rev-parse", "notifier-2.1.0^{commit}"]);
    assert_eq!(
        tagged,
        git(bare, &["rev-parse", "main"]),
        "the tag names the release commit"
    );
    assert_eq!(
        git(bare, &["cat-file", "-t", "notifier-2.1.0"]).trim(),
        "tag",
        "annotated"
    );
    let msg = git(
        bare,
        &[
            "tag",
            "-l",
            "--format=%(contents:subject)",
            "notifier-2.1.0",
        ],
    );
    assert_eq!(msg.trim(), "notifier 2.1.0 in production");
    let author = git(bare, &["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author.trim(), "Release Train <release-train@example.com>");
}

// ---------------------------------------------------------------------------------------
// The negative: one misspelt step kind

#[test]
fn a_misspelt_step_kind_fails_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Servers {
        git_url: "http://127.0.0.1:1".into(),
        git_user: "git".into(),
        git_password: "not-used".into(),
        git_root: tmp.path().join("git"),
        registry: "127.0.0.1:1".into(),
        registry_user: "user".into(),
        registry_password: "not-used-either".into(),
        helm_dir: tmp.path().join("helm"),
        helm_url: "http://127.0.0.1:1".into(),
    };
    let run = Run::new(&s, "02-kustomize-set-image", "http://127.0.0.1:1");
    let stages = run.manifests.join("stages.yaml");
    let text = std::fs::read_to_string(&stages).unwrap();
    let line = text
        .lines()
        .position(|l| l.trim() == "- uses: kustomize-set-image")
        .unwrap()
        + 1;
    std::fs::write(
        &stages,
        text.replacen(
            "- uses: kustomize-set-image",
            "- uses: kustomize-set-imag",
            1,
        ),
    )
    .unwrap();
    let out = run.expect(2, &["validate", "-o", "json"]);
    let doc = out.json();
    assert_eq!(doc["valid"], json!(false));
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{doc:#}");
    let e = &errors[0];
    assert!(e["file"].as_str().unwrap().ends_with("stages.yaml"), "{e}");
    assert_eq!(e["line"], json!(line), "{e}");
    assert_eq!(e["resource"], json!("Stage guestbook/dev"), "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("kustomize-set-imag"),
        "{e}"
    );
}

#[test]
fn e2e_37_download_artifacts() {
    let Some(s) = servers("e2e_37_download_artifacts") else {
        return;
    };
    let (url, _requests) = http_server(vec![(
        "/schemas/policy-1.2.0.json",
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "policy 1.2.0"}),
    )]);
    let run = Run::new(&s, "37-download-artifacts", &url);
    run.seed_gitops(&[("policies/README.md", "vendored policies\n")]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "policy-bundle", "1.2.0", "2026-01-01T00:00:00Z");
    run_until_settled(&run, 2);
    assert_eq!(
        run.gitops_file("main", "policies/bundle.bin"),
        "layer of policy-bundle:1.2.0"
    );
    let schema: Json =
        serde_json::from_str(&run.gitops_file("main", "policies/schema.json")).unwrap();
    assert_eq!(schema["title"], json!("policy 1.2.0"));
    assert_eq!(
        run.gitops_log("main").lines().next(),
        Some("policies: bundle 1.2.0")
    );
}

#[test]
fn e2e_32_freight_metadata_and_alias() {
    let Some((s, run)) = e2e(
        "e2e_32_freight_metadata_and_alias",
        "32-freight-metadata-and-alias",
    ) else {
        return;
    };
    run.seed_app(&[("CHANGELOG.md", "# tracer\n")]);
    tag_app(
        &run,
        &[("CHANGELOG.md", "# tracer\n\n## v1.2.3\n")],
        "v1.2.3",
        "2026-01-01T00:00:00Z",
    );
    run.seed_gitops(&[(
        "prod/values.yaml",
        "image:\n  tag: none\nrelease: none\npreviousDevImage: none\n",
    )]);
    let reg = Registry::new(&s);
    reg.push(&run.fill, "tracer", "1.2.3", "2026-01-01T00:00:00Z");
    run.expect(0, &["refresh", "warehouse", "tracer"]);
    let alias = run.freight()[0]["alias"].as_str().unwrap().to_owned();
    // prod refuses Freight that dev has not seen (not available there at all).
    run.expect(2, &["promote", "--stage", "prod", "--freight", &alias]);
    run.expect(0, &["promote", "--stage", "dev", "--freight", &alias]);
    // dev renamed the Freight after its release and recorded its metadata.
    let f = run.freight();
    assert_eq!(f[0]["alias"], json!("tracer-1-2-3"), "{f:#?}");
    assert_eq!(
        f[0]["status"]["metadata"]["releaseTag"],
        json!("v1.2.3"),
        "{f:#?}"
    );
    run.expect(
        0,
        &["promote", "--stage", "prod", "--freight", "tracer-1-2-3"],
    );
    assert_eq!(
        run.gitops_file("main", "prod/values.yaml"),
        "image:\n  tag: 1.2.3\nrelease: v1.2.3\npreviousDevImage: 1.2.3\n"
    );
}

/// `promoter serve` on a corpus directory, stopped on drop.
struct Serve {
    child: std::process::Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(run: &Run) -> Serve {
        let mut child = Command::new(promoter_bin())
            .arg("--manifests")
            .arg(&run.manifests)
            .arg("--state")
            .arg(&run.state)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .env("KARGO_ACTOR", "corpus-tester")
            .env_remove("KARGO_LOG")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start:\n{}", log.lock().unwrap()));
        Serve { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// POSTs `body` to `path`; the status and the answer.
    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    /// Polls `done` (every 20 ms, at most 60 s).
    fn wait_for(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within 60 s\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn e2e_39_github_webhook_refresh() {
    use hmac::{Hmac, KeyInit, Mac};
    use kargo::sources::webhook::{Provider, receiver_path};
    let Some((_s, run)) = e2e("e2e_39_github_webhook_refresh", "39-github-webhook-refresh") else {
        return;
    };
    run.seed_app(&[("index.html", "<h1>v1</h1>\n")]);
    let first = git(&run.fill.app_bare, &["rev-parse", "main"])
        .trim()
        .to_owned();
    run.seed_gitops(&[("site/dev.yaml", "revision: none\n")]);
    let dev_file = || {
        let out = Command::new("git")
            .args(["show", "main:site/dev.yaml"])
            .current_dir(&run.fill.gitops_bare)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let serve = Serve::start(&run);
    // The first pass finds the first commit and promotes it.
    serve.wait_for("the first promotion", || {
        dev_file() == format!("revision: {first}\n")
    });
    // A push, then GitHub's push event: the Warehouse (interval 1h) refreshes at once.
    let second = run.app_commit(&[("index.html", "<h1>v2</h1>\n")], "v2");
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "after": second,
        "repository": {
            "clone_url": run.fill.get("APP_GIT_URL"),
            "html_url": run.fill.get("APP_GIT_URL").trim_end_matches(".git"),
            "default_branch": "main",
        },
        "commits": [{"id": second, "added": [], "modified": ["index.html"], "removed": []}],
    }))
    .unwrap();
    let secret = "corpus-webhook-s3cret";
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = receiver_path(Provider::GitHub, "hooked", "github-push", &[secret]);
    // A wrong signature is refused and refreshes nothing.
    let (status, _) = serve.post(
        &path,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &format!("sha256={}", "0".repeat(64))),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert!((400..500).contains(&status), "status {status}");
    let (status, answer) = serve.post(
        &path,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &format!("sha256={signature}")),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert!(
        (200..300).contains(&status),
        "status {status}: {answer}\n{}",
        serve.log()
    );
    serve.wait_for("the promotion the webhook caused", || {
        dev_file() == format!("revision: {second}\n")
    });
    assert!(!serve.log().contains(secret), "the secret is not logged");
}
