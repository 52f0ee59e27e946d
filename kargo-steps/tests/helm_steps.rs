//! End-to-end tests of `helm-update-chart`: an umbrella chart in a temporary work
//! directory whose dependencies live in a static Helm repository served by lighttpd
//! (`TEST_HELM_REPO_DIR` / `TEST_HELM_REPO_URL`) and in Debian's `docker-registry`
//! (`TEST_OCI_REGISTRY`), both started by `ci/test.sh`. Tests that need them print a skip
//! message when the variables are unset, except with `CI=true`, where they fail. The
//! `file://` and path-safety tests need no server.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kargo_core::secret::{CredentialError, CredentialKind, CredentialProvider, Credentials};
use kargo_core::step::{DynStep, StepContext, StepError, StepErrorKind, StepOutcome, StepRegistry};
use kargo_core::workdir::WorkDir;
use kargo_sources::chart::archive::read_metadata;
use kargo_sources::chart::{HELM_CHART_CONTENT_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE};
use kargo_steps::HelmUpdateChart;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value as Json, json};
use sha2::Digest as _;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Helpers

use kargo_core::testing::server_env;

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A real chart archive: `<name>/Chart.yaml`, `values.yaml` and a template.
fn chart_tgz(name: &str, version: &str) -> Vec<u8> {
    let files = [
        (
            "Chart.yaml".to_owned(),
            format!("apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n"),
        ),
        ("values.yaml".to_owned(), format!("tag: \"{version}\"\n")),
        (
            "templates/cm.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n".to_owned(),
        ),
    ];
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, contents) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(contents.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, format!("{name}/{path}"), contents.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Publishes `versions` of chart `name` in a fresh directory of the HTTP repository;
/// returns the repository URL and the archives by version.
fn publish_http(
    test: &str,
    name: &str,
    versions: &[&str],
) -> Option<(String, BTreeMap<String, Vec<u8>>)> {
    let root = server_env(test, "TEST_HELM_REPO_DIR")?;
    let base = server_env(test, "TEST_HELM_REPO_URL")?;
    let sub = unique(test);
    let dir = Path::new(&root).join(&sub);
    std::fs::create_dir_all(&dir).unwrap();
    let mut index = format!("apiVersion: v1\nentries:\n  {name}:\n");
    let mut archives = BTreeMap::new();
    for v in versions {
        let tgz = chart_tgz(name, v);
        std::fs::write(dir.join(format!("{name}-{v}.tgz")), &tgz).unwrap();
        index.push_str(&format!(
            "  - apiVersion: v2\n    name: {name}\n    version: {v}\n    digest: {}\n    urls:\n    - {name}-{v}.tgz\n",
            sha256_hex(&tgz)
        ));
        archives.insert((*v).to_owned(), tgz);
    }
    index.push_str("generated: \"2020-01-01T00:00:00Z\"\n");
    let tmp = dir.join("index.yaml.tmp");
    std::fs::write(&tmp, index).unwrap();
    std::fs::rename(tmp, dir.join("index.yaml")).unwrap();
    Some((format!("{base}/{sub}"), archives))
}

/// Pushes `versions` of chart `name` to `oci://<registry>/<unique>/<name>`; returns the
/// dependency repository (`oci://<registry>/<unique>`) and the archives by version.
async fn publish_oci(
    test: &str,
    name: &str,
    versions: &[&str],
) -> Option<(String, BTreeMap<String, Vec<u8>>)> {
    let registry = server_env(test, "TEST_OCI_REGISTRY")?;
    let path = unique(test);
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let mut archives = BTreeMap::new();
    for v in versions {
        let tgz = chart_tgz(name, v);
        let reference = Reference::with_tag(
            registry.clone(),
            format!("{path}/{name}"),
            v.replace('+', "_"),
        );
        let config = Config::new(
            serde_json::to_vec(&json!({"apiVersion": "v2", "name": name, "version": v})).unwrap(),
            HELM_CONFIG_MEDIA_TYPE.to_owned(),
            None,
        );
        let layers = vec![ImageLayer::new(
            tgz.clone(),
            HELM_CHART_CONTENT_MEDIA_TYPE.to_owned(),
            None,
        )];
        client
            .push(&reference, &layers, config, &RegistryAuth::Anonymous, None)
            .await
            .unwrap();
        archives.insert((*v).to_owned(), tgz);
    }
    Some((format!("oci://{registry}/{path}"), archives))
}

/// Records every credential lookup and answers none.
#[derive(Default)]
struct Recorder(Mutex<Vec<(CredentialKind, String)>>);

#[async_trait]
impl CredentialProvider for Recorder {
    async fn credentials(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        self.0.lock().unwrap().push((kind, repo_url.to_owned()));
        Ok(None)
    }
}

struct Env {
    dir: TempDir,
    ctx: StepContext,
    step: HelmUpdateChart,
    creds: Arc<Recorder>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let creds = Arc::new(Recorder::default());
        let ctx =
            StepContext::new(WorkDir::new(dir.path()).unwrap()).with_credentials(creds.clone());
        Self {
            dir,
            ctx,
            step: HelmUpdateChart::default(),
            creds,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, contents: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    async fn run(&self, cfg: Json) -> Result<StepOutcome, StepError> {
        DynStep::run_json(&self.step, &self.ctx, cfg).await
    }

    /// File name -> (modification time, bytes) of everything in `rel`.
    fn snapshot(&self, rel: &str) -> BTreeMap<String, (std::time::SystemTime, Vec<u8>)> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(self.path(rel)).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                (meta.modified().unwrap(), std::fs::read(e.path()).unwrap()),
            );
        }
        out
    }
}

fn commit_message(outcome: &StepOutcome) -> Option<&str> {
    outcome.outputs.get("commitMessage").and_then(Json::as_str)
}

/// Helm's digest computed independently: sha256 over Go's JSON of
/// `[chartYamlDependencies, lockDependencies]` (field order name, version, repository,
/// condition; HTML characters escaped).
fn helm_digest(req: &[(&str, &str, &str, Option<&str>)], lock: &[(&str, &str, &str)]) -> String {
    let req: Vec<Json> = req
        .iter()
        .map(|(n, v, r, c)| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), json!(n));
            m.insert("version".into(), json!(v));
            m.insert("repository".into(), json!(r));
            if let Some(c) = c {
                m.insert("condition".into(), json!(c));
            }
            Json::Object(m)
        })
        .collect();
    let lock: Vec<Json> = lock
        .iter()
        .map(|(n, r, v)| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), json!(n));
            m.insert("version".into(), json!(v));
            m.insert("repository".into(), json!(r));
            Json::Object(m)
        })
        .collect();
    let text = serde_json::to_string(&json!([req, lock]))
        .unwrap()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("sha256:{}", sha256_hex(text.as_bytes()))
}

fn lock_field<'a>(lock: &'a str, key: &str) -> &'a str {
    lock.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// End to end over HTTP and OCI

#[tokio::test]
async fn update_chart_over_http_and_oci() {
    let test = "update_chart_over_http_and_oci";
    let Some((http_repo, web)) = publish_http(test, "web", &["1.0.0", "1.1.0", "2.0.0"]) else {
        return;
    };
    let Some((oci_repo, db)) = publish_oci(test, "db", &["2.0.0", "2.1.0", "2.2.0-rc.1"]).await
    else {
        return;
    };
    let env = Env::new();
    let chart_yaml = format!(
        "apiVersion: v2\nname: umbrella # the app\nversion: 0.1.0\ndependencies:\n  # the front end\n  - name: web\n    version: \"1.0.0\"   # pinned by Kargo\n    repository: {http_repo}\n  - name: db\n    repository: {oci_repo}\n    version: ~2.0.0\n    condition: db.enabled\n"
    );
    env.write("umbrella/Chart.yaml", &chart_yaml);
    env.write("umbrella/charts/README.txt", "not a chart\n");

    // First run: no lock yet; the versions in Chart.yaml are resolved and locked.
    let out = env.run(json!({"path": "umbrella"})).await.unwrap();
    assert_eq!(
        commit_message(&out),
        Some("Updated chart dependencies for umbrella\n\n- db: 2.0.0\n- web: 1.0.0")
    );
    assert_eq!(env.read("umbrella/Chart.yaml"), chart_yaml);
    let lock = env.read("umbrella/Chart.lock");
    assert_eq!(
        lock_field(&lock, "digest"),
        helm_digest(
            &[
                ("web", "1.0.0", &http_repo, None),
                ("db", "~2.0.0", &oci_repo, Some("db.enabled")),
            ],
            &[("web", &http_repo, "1.0.0"), ("db", &oci_repo, "2.0.0")],
        )
    );
    assert_eq!(
        std::fs::read(env.path("umbrella/charts/web-1.0.0.tgz")).unwrap(),
        web["1.0.0"]
    );
    assert_eq!(
        std::fs::read(env.path("umbrella/charts/db-2.0.0.tgz")).unwrap(),
        db["2.0.0"]
    );

    // Second run: both dependencies move.
    let out = env
        .run(json!({"path": "umbrella", "charts": [
            {"repository": http_repo, "name": "web", "version": "1.1.0"},
            {"repository": oci_repo, "name": "db", "version": "2.1.0"},
        ]}))
        .await
        .unwrap();
    assert_eq!(
        commit_message(&out),
        Some(
            "Updated chart dependencies for umbrella\n\n- db: 2.0.0 -> 2.1.0\n- web: 1.0.0 -> 1.1.0"
        )
    );
    // Chart.yaml: only the two version values changed (quotes and comments kept).
    let expected_yaml = chart_yaml
        .replace(
            "version: \"1.0.0\"   # pinned",
            "version: \"1.1.0\"   # pinned",
        )
        .replace("version: ~2.0.0", "version: 2.1.0");
    assert_eq!(env.read("umbrella/Chart.yaml"), expected_yaml);
    // Chart.lock: Helm's layout and digest.
    let lock = env.read("umbrella/Chart.lock");
    let digest = helm_digest(
        &[
            ("web", "1.1.0", &http_repo, None),
            ("db", "2.1.0", &oci_repo, Some("db.enabled")),
        ],
        &[("web", &http_repo, "1.1.0"), ("db", &oci_repo, "2.1.0")],
    );
    let generated = lock_field(&lock, "generated");
    assert_eq!(
        lock,
        format!(
            "dependencies:\n- name: web\n  repository: {http_repo}\n  version: 1.1.0\n- name: db\n  repository: {oci_repo}\n  version: 2.1.0\ndigest: {digest}\ngenerated: {generated}\n"
        )
    );
    let generated = generated.trim_matches('"');
    assert!(
        chrono::DateTime::parse_from_rfc3339(generated).is_ok(),
        "generated: {generated}"
    );
    // charts/: new archives, old ones gone, other files kept.
    let files: Vec<String> = env.snapshot("umbrella/charts").into_keys().collect();
    assert_eq!(files, ["README.txt", "db-2.1.0.tgz", "web-1.1.0.tgz"]);
    assert_eq!(
        std::fs::read(env.path("umbrella/charts/web-1.1.0.tgz")).unwrap(),
        web["1.1.0"]
    );
    assert_eq!(
        std::fs::read(env.path("umbrella/charts/db-2.1.0.tgz")).unwrap(),
        db["2.1.0"]
    );

    // Credentials: asked for the OCI chart (`oci://<repository>/<name>`), not for the
    // plain-HTTP repository (as Kargo does).
    let asked = env.creds.0.lock().unwrap().clone();
    assert!(!asked.is_empty());
    for (kind, url) in &asked {
        assert_eq!(*kind, CredentialKind::Helm);
        assert_eq!(url, &format!("{}/db", oci_repo.to_lowercase()));
    }

    // Third run, same versions: nothing changes, not even the lock's `generated`.
    let before_lock = std::fs::read(env.path("umbrella/Chart.lock")).unwrap();
    let before_charts = env.snapshot("umbrella/charts");
    let out = env
        .run(json!({"path": "umbrella", "charts": [
            {"repository": http_repo, "name": "web", "version": "1.1.0"},
        ]}))
        .await
        .unwrap();
    assert_eq!(commit_message(&out), None);
    assert_eq!(
        std::fs::read(env.path("umbrella/Chart.lock")).unwrap(),
        before_lock
    );
    assert_eq!(env.snapshot("umbrella/charts"), before_charts);
    assert_eq!(env.read("umbrella/Chart.yaml"), expected_yaml);

    // A constraint resolves to the highest matching version (prereleases excluded).
    let out = env
        .run(json!({"path": "umbrella", "charts": [
            {"repository": http_repo, "name": "web", "version": "^1.0"},
            {"repository": oci_repo, "name": "db", "version": ">=2.0.0"},
        ]}))
        .await
        .unwrap();
    assert_eq!(
        commit_message(&out),
        None,
        "the locked versions did not change"
    );
    let lock = env.read("umbrella/Chart.lock");
    assert!(
        lock.contains("  version: 1.1.0\n") && lock.contains("  version: 2.1.0\n"),
        "{lock}"
    );
    assert_eq!(
        lock_field(&lock, "digest"),
        helm_digest(
            &[
                ("web", "^1.0", &http_repo, None),
                ("db", ">=2.0.0", &oci_repo, Some("db.enabled")),
            ],
            &[("web", &http_repo, "1.1.0"), ("db", &oci_repo, "2.1.0")],
        ),
        "a changed Chart.yaml gets a lock with the matching digest"
    );
}

#[tokio::test]
async fn unchanged_run_keeps_the_lock_byte_for_byte() {
    let test = "unchanged_run_keeps_the_lock_byte_for_byte";
    let Some((http_repo, _)) = publish_http(test, "web", &["1.0.0"]) else {
        return;
    };
    let env = Env::new();
    env.write(
        "app/Chart.yaml",
        &format!("apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: web\n  version: 1.0.0\n  repository: {http_repo}\n"),
    );
    // A lock as another Helm wrote it: other time zone, old digest format.
    let old_lock = format!(
        "dependencies:\n- name: web\n  repository: {http_repo}\n  version: 1.0.0\ndigest: sha256:0000\ngenerated: \"2021-05-02T15:07:22.1099921+02:00\"\n"
    );
    env.write("app/Chart.lock", &old_lock);
    let out = env
        .run(json!({"path": "app", "charts": [{"repository": http_repo, "name": "web", "version": "1.0.0"}]}))
        .await
        .unwrap();
    assert_eq!(commit_message(&out), None);
    assert_eq!(env.read("app/Chart.lock"), old_lock);
    // The missing archive was fetched, as Helm does.
    assert!(env.path("app/charts/web-1.0.0.tgz").is_file());
}

#[tokio::test]
async fn missing_version_is_a_clear_error_and_changes_nothing() {
    let test = "missing_version_is_a_clear_error_and_changes_nothing";
    let Some((http_repo, _)) = publish_http(test, "web", &["1.0.0"]) else {
        return;
    };
    let env = Env::new();
    let chart_yaml = format!(
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: web\n  version: 1.0.0\n  repository: {http_repo}\n"
    );
    env.write("app/Chart.yaml", &chart_yaml);
    let e = env
        .run(json!({"path": "app", "charts": [{"repository": http_repo, "name": "web", "version": "9.9.9"}]}))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("can't get a valid version for 1 subchart(s)")
            && msg.contains("\"web\"")
            && msg.contains("\"9.9.9\""),
        "{msg}"
    );
    assert_eq!(env.read("app/Chart.yaml"), chart_yaml);
    assert!(!env.path("app/Chart.lock").exists());

    let e = env
        .run(json!({"path": "app", "charts": [{"repository": "https://elsewhere.example", "name": "web", "version": "1.0.0"}]}))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "no dependency in Chart.yaml matches update with repository \"https://elsewhere.example\" and name \"web\""
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("config.charts[0]"), "{e}");
}

#[tokio::test]
async fn missing_oci_chart_is_not_found() {
    let test = "missing_oci_chart_is_not_found";
    let Some(registry) = server_env(test, "TEST_OCI_REGISTRY") else {
        return;
    };
    let env = Env::new();
    let repo = format!("oci://{registry}/{}", unique(test));
    env.write(
        "app/Chart.yaml",
        &format!("apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: nothing\n  version: 1.0.0\n  repository: {repo}\n"),
    );
    let e = env.run(json!({"path": "app"})).await.unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert!(e.to_string().contains(&format!("{repo}/nothing")), "{e}");
    assert!(!env.path("app/Chart.lock").exists());
}

// ---------------------------------------------------------------------------------------
// Without servers

#[tokio::test]
async fn file_dependencies_are_packaged() {
    let env = Env::new();
    env.write(
        "app/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: '>=0.1.0'\n  repository: file://../lib\n",
    );
    env.write(
        "lib/Chart.yaml",
        "apiVersion: v2\nname: lib\nversion: 0.3.0\n",
    );
    env.write("lib/templates/cm.yaml", "kind: ConfigMap\n");
    env.write("lib/notes.tmp", "scratch\n");
    env.write("lib/.helmignore", "*.tmp\n");
    let out = env.run(json!({"path": "app"})).await.unwrap();
    assert_eq!(
        commit_message(&out),
        Some("Updated chart dependencies for app\n\n- lib: 0.3.0")
    );
    let tgz = std::fs::read(env.path("app/charts/lib-0.3.0.tgz")).unwrap();
    let meta = read_metadata(&tgz).unwrap();
    assert_eq!(
        (meta.name.as_str(), meta.version.as_str()),
        ("lib", "0.3.0")
    );
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(
        names,
        ["lib/.helmignore", "lib/Chart.yaml", "lib/templates/cm.yaml"]
    );
    let lock = env.read("app/Chart.lock");
    assert!(
        lock.starts_with(
            "dependencies:\n- name: lib\n  repository: file://../lib\n  version: 0.3.0\n"
        ),
        "{lock}"
    );
    assert_eq!(
        lock_field(&lock, "digest"),
        helm_digest(
            &[("lib", ">=0.1.0", "file://../lib", None)],
            &[("lib", "file://../lib", "0.3.0")]
        )
    );

    // The local chart moves on: the archive is replaced, the old one removed.
    env.write(
        "lib/Chart.yaml",
        "apiVersion: v2\nname: lib\nversion: 0.4.0\n",
    );
    let out = env.run(json!({"path": "app"})).await.unwrap();
    assert_eq!(
        commit_message(&out),
        Some("Updated chart dependencies for app\n\n- lib: 0.3.0 -> 0.4.0")
    );
    let files: Vec<String> = env.snapshot("app/charts").into_keys().collect();
    assert_eq!(files, ["lib-0.4.0.tgz"]);

    // A constraint the local chart does not meet is the usual error.
    let e = env
        .run(json!({"path": "app", "charts": [{"repository": "file://../lib", "name": "lib", "version": "^1.0"}]}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("can't get a valid version"), "{e}");
}

#[tokio::test]
async fn registered_as_a_builtin_and_config_is_checked() {
    let mut registry = StepRegistry::new();
    kargo_steps::register_builtins(
        &mut registry,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    let step = registry.get("helm-update-chart").unwrap();
    let env = Env::new();
    let e = step
        .run_json(
            &env.ctx,
            json!({"path": "x", "charts": [{"name": "a", "version": "1"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::InvalidConfig);
    let e = step
        .run_json(&env.ctx, json!({"path": "x", "chart": []}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown field `chart`"), "{e}");
    let e = step
        .run_json(&env.ctx, json!({"path": "x"}))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("chart directory \"x\" does not exist"),
        "{e}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn paths_cannot_leave_the_work_directory() {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("Chart.yaml"),
        "apiVersion: v2\nname: evil\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: 0.1.0\n  repository: file://../lib\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), env.path("link")).unwrap();
    let outside_str = outside.path().to_string_lossy().into_owned();
    for path in ["../x", "app/../../x", outside_str.as_str(), "link"] {
        let e = env.run(json!({"path": path})).await.unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{path}: {e}");
        assert!(e.to_string().contains("path"), "{path}: {e}");
    }

    // A Chart.yaml that is a symbolic link out of the work directory.
    std::fs::create_dir_all(env.path("app")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("Chart.yaml"),
        env.path("app/Chart.yaml"),
    )
    .unwrap();
    let e = env.run(json!({"path": "app"})).await.unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");

    // file:// dependencies: absolute, `..` out, or through a link out.
    for repo in [
        format!("file://{outside_str}"),
        "file://../../../etc".to_owned(),
        "file://../link".to_owned(),
    ] {
        env.write(
            "chart/Chart.yaml",
            &format!("apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: 0.1.0\n  repository: {repo}\n"),
        );
        let e = env.run(json!({"path": "chart"})).await.unwrap_err();
        assert!(e.to_string().contains("invalid dependency"), "{repo}: {e}");
        assert!(!env.path("chart/Chart.lock").exists());
    }

    // A file inside a local chart that links out is refused while packaging.
    env.write(
        "lib/Chart.yaml",
        "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
    );
    std::os::unix::fs::symlink(outside.path().join("Chart.yaml"), env.path("lib/leak.yaml"))
        .unwrap();
    env.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: 0.1.0\n  repository: file://../lib\n",
    );
    let e = env.run(json!({"path": "chart"})).await.unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(!env.path("chart/charts/lib-0.1.0.tgz").exists());

    // A Chart.lock that is a symbolic link is refused, as Helm does.
    std::fs::remove_file(env.path("lib/leak.yaml")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("Chart.yaml"),
        env.path("chart/Chart.lock"),
    )
    .unwrap();
    let e = env.run(json!({"path": "chart"})).await.unwrap_err();
    assert!(
        e.to_string().contains("Chart.lock is a symbolic link"),
        "{e}"
    );
}
