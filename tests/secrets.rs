//! Secrets never leak: every credentialled path, once with the right secret (it must
//! succeed) and once with a wrong one (it must fail), and then a search for the secrets in
//! everything the library and the `promoter` program let out:
//!
//! - every tracing event of the test binary at TRACE level, all targets (a global
//!   subscriber writing to a buffer),
//! - the `Display` and `Debug` of every error, every step output and promotion result
//!   (serialized and `Debug`),
//! - every file left in the work directories and git caches (`.git/config` included),
//! - the `promoter` binary's stdout and stderr (`-v`, and `KARGO_LOG=trace`) and every
//!   file of its `--state` directory (a `FileStore`), for git over HTTP and the registry.
//!
//! Each secret is searched as is, URL-encoded, and (for basic auth) as the base64 of
//! `user:secret` and of the secret alone. Wrong secrets are distinctive
//! (`S3cr3t-<kind>-<random>` plus characters that URL-encoding changes); right secrets are
//! the test servers' passwords, the in-test tokens, or an SSH private key (searched line
//! by line).
//!
//! Paths: git over HTTP (basic auth) and SSH (key), registry basic auth (htpasswd
//! registry) and bearer tokens (an in-test token endpoint that wants basic auth), the
//! pull-request providers (fake GitHub/GitLab/Gitea/Bitbucket/Azure APIs over real bare
//! repositories of the git server) and Argo CD (a fake API server).
//!
//! Run with `ci/test.sh --test secrets` (the git, SSH and registry parts need its servers;
//! without them those parts are skipped, except with `CI=true`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod support;

#[path = "../kargo-steps/tests/support/fake_argocd.rs"]
mod fake_argocd;
#[path = "../kargo-steps/tests/support/fake_forge.rs"]
mod fake_forge;
#[path = "../kargo-steps/tests/support/fake_http.rs"]
mod fake_http;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fake_argocd::{FakeArgo, app};
use fake_forge::{Flavor, Forge, git_in};
use fake_http::{Req, Resp, serve};
use kargo_core::model::{ImageSelectionStrategy, ImageSubscription};
use kargo_core::runner::{Promotion, PromotionPhase, PromotionResult, Runner, RunnerOptions};
use kargo_core::secret::{CredentialKind, Credentials, Redacted, StaticCredentials};
use kargo_core::source::{DiscoveryContext, Source};
use kargo_core::testing::server_envs;
use kargo_core::workdir::WorkDir;
use kargo_git::GitConfig;
use kargo_sources::image::{ImageSource, ImageSourceOptions};
use kargo_steps::git::PullRequestOptions;
use kargo_steps::{ArgoCdOptions, BuiltinOptions, register_builtins_with};
use serde_json::{Value as Json, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Capturing and searching

/// A global TRACE subscriber (all targets) writing into a buffer; returns the buffer.
fn capture() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(b.clone()))
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&capture().lock().unwrap()).into_owned()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What must never be seen: a label and the texts a secret may be written as.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    /// A password or token (used with `user` in basic auth).
    fn add(&mut self, label: &str, user: &str, secret: &str) {
        let basic = format!("{user}:{secret}");
        for form in [
            secret.to_owned(),
            pct(secret),
            b64(basic.as_bytes()),
            b64(secret.as_bytes()),
            b64(format!(":{secret}").as_bytes()),
        ] {
            // The base64 of `user:secret` is searched without its padding and last
            // characters, which depend on what follows in a longer encoding.
            let form = form.trim_end_matches('=');
            let keep = form.len().saturating_sub(2).max(8.min(form.len()));
            self.0.push((label.to_owned(), form[..keep].to_owned()));
        }
    }

    /// An SSH private key: every base64 line of its body.
    fn add_key(&mut self, label: &str, pem: &str) {
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            self.0.push((label.to_owned(), line.to_owned()));
        }
    }
}

/// Everything that was let out, by where it came from.
#[derive(Default)]
struct Evidence(Vec<(String, String)>);

impl Evidence {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn result(&mut self, what: &str, r: &PromotionResult) {
        self.add(
            format!("{what}: result JSON"),
            serde_json::to_string(r).unwrap(),
        );
        self.add(format!("{what}: result Debug"), format!("{r:?}"));
        for s in &r.steps {
            self.add(
                format!("{what}: outputs of {}", s.alias),
                serde_json::to_string(&s.outputs).unwrap(),
            );
        }
    }

    fn error<E: std::error::Error>(&mut self, what: &str, e: &E) {
        self.add(format!("{what}: error Display"), e.to_string());
        self.add(format!("{what}: error Debug"), format!("{e:?}"));
        let mut source = e.source();
        while let Some(s) = source {
            self.add(format!("{what}: error source"), s.to_string());
            source = s.source();
        }
    }

    /// Every file under `dir` (links not followed), read as text.
    fn files(&mut self, what: &str, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.is_file() {
                    let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default())
                        .into_owned();
                    self.add(format!("{what}: file {}", p.display()), text);
                }
            }
        }
    }

    /// Fails when any form of any secret is in the evidence or in the logs so far.
    fn assert_clean(mut self, secrets: &Secrets) {
        let logs = logs();
        assert!(
            logs.contains("TRACE") && logs.contains("DEBUG"),
            "the subscriber captured no TRACE/DEBUG events"
        );
        self.add("tracing output (TRACE, all targets)", logs);
        let mut leaks = Vec::new();
        for (label, form) in &secrets.0 {
            for (what, text) in &self.0 {
                if let Some(at) = text.find(form.as_str()) {
                    let start = text[..at].char_indices().rev().nth(80).map_or(0, |c| c.0);
                    let end = (at + form.len() + 80).min(text.len());
                    let end = (end..=text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(text.len());
                    leaks.push(format!(
                        "{label} ({form:?}) in {what}: …{}…",
                        &text[start..end]
                    ));
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "secrets leaked:\n{}",
            leaks.join("\n---\n")
        );
        let total: usize = self.0.iter().map(|(_, t)| t.len()).sum();
        eprintln!(
            "searched {} forms of secrets in {} texts ({total} bytes): clean",
            secrets.0.len(),
            self.0.len()
        );
    }
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "secrets-{name}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A distinctive wrong secret, with characters URL-encoding changes.
fn wrong(kind: &str) -> String {
    format!(
        "S3cr3t-{kind}-{}+/@:%",
        unique("w").replace("secrets-w-", "")
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_in(dir, args).unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

/// A bare repository `rel` under the git server's root with `main` holding `values.yaml`
/// (and a `feature` branch one commit ahead); pushes over HTTP are allowed.
fn seed_repo(root: &Path, rel: &str) -> PathBuf {
    let bare = root.join(rel);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        bare.parent().unwrap(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(&bare, &["config", "http.receivepack", "true"]);
    let work = TempDir::new().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(work.path().join("values.yaml"), "image:\n  tag: old\n").unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "seed"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(work.path(), &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.path().join("values.yaml"), "image:\n  tag: new\n").unwrap();
    git(work.path(), &["commit", "-q", "-am", "feature"]);
    git(
        work.path(),
        &["push", "-q", bare.to_str().unwrap(), "feature"],
    );
    bare
}

fn runner(git_cache: &Path, builtin: impl FnOnce(&mut BuiltinOptions)) -> Runner {
    let mut git = GitConfig::new(git_cache);
    git.retry_initial = Duration::from_millis(20);
    let mut options = BuiltinOptions::with_git(git);
    builtin(&mut options);
    let mut reg = kargo_core::StepRegistry::new();
    register_builtins_with(&mut reg, &options).unwrap();
    let mut options = RunnerOptions::default();
    options.min_retry_after = Duration::from_millis(20);
    options.error_backoff = Duration::from_millis(20);
    Runner::new(reg).with_options(options)
}

/// Runs `steps` in a fresh work directory (kept in `keep` for the file search).
async fn promote(
    runner: &Runner,
    steps: Json,
    creds: StaticCredentials,
    keep: &mut Vec<TempDir>,
) -> (PromotionResult, PathBuf) {
    let dir = TempDir::new().unwrap();
    let mut p = Promotion::new(
        WorkDir::new(dir.path()).unwrap(),
        serde_json::from_value(steps).unwrap(),
    );
    p.project = "demo".into();
    p.stage = "prod".into();
    p.name = "prod.01secrets.abcdef0".into();
    p.credentials = Arc::new(creds);
    let r = tokio::time::timeout(Duration::from_secs(180), runner.run(&p))
        .await
        .expect("the promotion did not finish in 180 s");
    let path = dir.path().to_path_buf();
    keep.push(dir);
    (r, path)
}

fn assert_phase(r: &PromotionResult, ok: bool) {
    let summary = r
        .steps
        .iter()
        .map(|s| format!("{} {:?} {:?}", s.alias, s.status, s.message))
        .collect::<Vec<_>>();
    if ok {
        assert_eq!(r.phase, PromotionPhase::Succeeded, "{summary:#?}");
    } else {
        assert!(
            matches!(r.phase, PromotionPhase::Failed | PromotionPhase::Errored),
            "{:?}: {summary:#?}",
            r.phase
        );
    }
}

fn push_steps(repo_url: &str) -> Json {
    json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": repo_url, "checkout": [{"branch": "main", "path": "./out"}]}},
        {"alias": "update", "uses": "yaml-update", "config": {
            "path": "./out/values.yaml", "updates": [{"key": "image.tag", "value": "v2"}]}},
        {"alias": "commit", "uses": "git-commit", "config": {"path": "./out", "message": "v2"}},
        {"alias": "push", "uses": "git-push", "config": {"path": "./out"}},
    ])
}

/// The search finds every form a secret can take on the wire or in a URL.
#[test]
fn the_search_finds_every_form() {
    let secret = "S3cr3t-check+/@:%";
    let mut secrets = Secrets::default();
    secrets.add("s", "user", secret);
    let found = |text: &str| secrets.0.iter().any(|(_, f)| text.contains(f.as_str()));
    use base64::Engine as _;
    let std = base64::engine::general_purpose::STANDARD;
    for text in [
        format!("password={secret}"),
        format!("http://user:{}@host/x", pct(secret)),
        format!(
            "authorization: Basic {}",
            std.encode(format!("user:{secret}"))
        ),
        format!("Basic {}", std.encode(format!(":{secret}"))),
        format!("token {}", std.encode(secret)),
    ] {
        assert!(found(&text), "{text}");
    }
    assert!(!found("S3cr3t-check"), "a prefix alone is not a leak");
}

// ---------------------------------------------------------------------------------------
// git over HTTP and SSH

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_http_basic_auth() {
    capture();
    let Some(v) = server_envs(
        "git_http_basic_auth",
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    ) else {
        return;
    };
    let (root, url, user, password) = (PathBuf::from(&v[0]), &v[1], &v[2], &v[3]);
    let name = unique("http");
    seed_repo(&root, &format!("{name}.git"));
    let repo_url = format!("{url}/{name}.git");
    let bad = wrong("git-http");
    let mut secrets = Secrets::default();
    secrets.add("git HTTP password", user, password);
    secrets.add("wrong git HTTP password", user, &bad);
    let mut ev = Evidence::default();
    let mut keep = Vec::new();
    for (pw, ok) in [(password.as_str(), true), (bad.as_str(), false)] {
        let cache = TempDir::new().unwrap();
        let r = runner(cache.path(), |_| {});
        let creds = StaticCredentials::new().with(CredentialKind::Git, url, user, pw);
        ev.add("StaticCredentials Debug", format!("{creds:?}"));
        let (result, dir) = promote(&r, push_steps(&repo_url), creds, &mut keep).await;
        assert_phase(&result, ok);
        let what = if ok {
            "git HTTP right"
        } else {
            "git HTTP wrong"
        };
        ev.result(what, &result);
        ev.files(what, &dir);
        ev.files(&format!("{what} git cache"), cache.path());
        // The credentials are wrong in the URL too (user info in the repo URL).
        if !ok {
            let with_userinfo = repo_url.replacen("://", &format!("://{user}:{}@", pct(pw)), 1);
            let creds = StaticCredentials::new();
            let (result, dir) = promote(&r, push_steps(&with_userinfo), creds, &mut keep).await;
            assert_phase(&result, false);
            ev.result("git HTTP userinfo URL", &result);
            ev.files("git HTTP userinfo URL", &dir);
            ev.files("git HTTP userinfo URL cache", cache.path());
        }
    }
    ev.assert_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_ssh_key() {
    capture();
    let Some(v) = server_envs(
        "git_ssh_key",
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_SSH_URL",
            "TEST_GIT_SSH_KEY",
            "TEST_GIT_SSH_KNOWN_HOSTS",
        ],
    ) else {
        return;
    };
    let (root, url) = (PathBuf::from(&v[0]), &v[1]);
    let key = std::fs::read_to_string(&v[2]).unwrap();
    let known_hosts = std::fs::read_to_string(&v[3]).unwrap();
    let name = unique("ssh");
    seed_repo(&root, &format!("{name}.git"));
    let repo_url = format!("{url}/{name}.git");
    // A key the server does not know.
    let tmp = TempDir::new().unwrap();
    let wrong_key_path = tmp.path().join("wrong");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "wrong", "-f"])
        .arg(&wrong_key_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let wrong_key = std::fs::read_to_string(&wrong_key_path).unwrap();
    let mut secrets = Secrets::default();
    secrets.add_key("SSH private key", &key);
    secrets.add_key("wrong SSH private key", &wrong_key);
    let mut ev = Evidence::default();
    let mut keep = Vec::new();
    for (k, ok) in [(key.as_str(), true), (wrong_key.as_str(), false)] {
        let cache = TempDir::new().unwrap();
        let r = runner(cache.path(), |_| {});
        let creds = StaticCredentials::new().with_credentials(
            CredentialKind::Git,
            url.as_str(),
            Credentials::ssh_key(k, Some(known_hosts.clone())),
        );
        ev.add("StaticCredentials Debug", format!("{creds:?}"));
        let (result, dir) = promote(&r, push_steps(&repo_url), creds, &mut keep).await;
        assert_phase(&result, ok);
        let what = if ok { "git SSH right" } else { "git SSH wrong" };
        ev.result(what, &result);
        ev.files(what, &dir);
        ev.files(&format!("{what} git cache"), cache.path());
    }
    ev.assert_clean(&secrets);
}

// ---------------------------------------------------------------------------------------
// Registries: basic auth (htpasswd registry) and bearer tokens (in-test token endpoint)

async fn push_image(client: &oci_client::Client, host: &str, repo: &str, tag: &str) {
    use oci_client::Reference;
    let sha = |b: &[u8]| kargo_sources::chart::sha256_digest(b);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    let layer = format!("layer of {tag}").into_bytes();
    let r = |d: &str| Reference::with_digest(host.to_owned(), repo.to_owned(), d.to_owned());
    let (cd, ld) = (sha(&config), sha(&layer));
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
            &Reference::with_tag(host.to_owned(), repo.to_owned(), tag.to_owned()),
            manifest,
            "application/vnd.oci.image.manifest.v1+json"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
}

async fn pusher(host: &str, repo: &str, user: &str, password: &str) -> oci_client::Client {
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(host.to_owned(), repo.to_owned(), "x".into());
    client
        .auth(
            &r,
            &oci_client::secrets::RegistryAuth::Basic(user.to_owned(), password.to_owned()),
            oci_client::RegistryOperation::Push,
        )
        .await
        .unwrap();
    client
}

/// Discovers `image` with `user`/`password`; records the outcome.
async fn discover(
    image: &str,
    user: &str,
    password: &str,
    ok: bool,
    what: &str,
    ev: &mut Evidence,
) {
    let src = ImageSource::new({
        let mut o = ImageSourceOptions::default();
        o.rate_limit = 100_000.0;
        o
    });
    let creds = StaticCredentials::new().with(CredentialKind::Image, image, user, password);
    ev.add(
        format!("{what}: StaticCredentials Debug"),
        format!("{creds:?}"),
    );
    let ctx = DiscoveryContext::new("p", "w").with_credentials(Arc::new(creds));
    let mut sub = ImageSubscription::new(image);
    sub.image_selection_strategy = ImageSelectionStrategy::Lexical;
    let result = src.discover(&ctx, &sub).await;
    match (&result, ok) {
        (Ok(d), true) => {
            ev.add(
                format!("{what}: discovery JSON"),
                serde_json::to_string(d).unwrap(),
            );
            ev.add(format!("{what}: discovery Debug"), format!("{d:?}"));
        }
        (Err(e), false) => ev.error(what, e),
        _ => panic!("{what}: unexpected {result:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_basic_auth() {
    capture();
    let Some(v) = server_envs(
        "registry_basic_auth",
        &[
            "TEST_OCI_AUTH_REGISTRY",
            "TEST_OCI_AUTH_USER",
            "TEST_OCI_AUTH_PASSWORD",
        ],
    ) else {
        return;
    };
    let (host, user, password) = (&v[0], &v[1], &v[2]);
    let repo = format!("{}/app", unique("basic"));
    let client = pusher(host, &repo, user, password).await;
    push_image(&client, host, &repo, "1.0.0").await;
    let image = format!("{host}/{repo}");
    let bad = wrong("registry");
    let mut secrets = Secrets::default();
    secrets.add("registry password", user, password);
    secrets.add("wrong registry password", user, &bad);
    let mut ev = Evidence::default();
    discover(
        &image,
        user,
        password,
        true,
        "registry basic right",
        &mut ev,
    )
    .await;
    discover(&image, user, &bad, false, "registry basic wrong", &mut ev).await;
    ev.assert_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_bearer_token() {
    capture();
    let user = "robot";
    let password = format!("S3cr3t-bearer-pw-{}", unique("b"));
    let token = format!("S3cr3t-bearer-token-{}", unique("t"));
    let config = br#"{"created":"2026-01-01T00:00:00Z"}"#.to_vec();
    let cd = kargo_sources::chart::sha256_digest(&config);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": []
    })
    .to_string();
    let md = kargo_sources::chart::sha256_digest(manifest.as_bytes());
    let base = Arc::new(Mutex::new(String::new()));
    let (b, tok) = (base.clone(), token.clone());
    let want_basic = format!("Basic {}", b64(format!("{user}:{password}").as_bytes()));
    let srv = serve(Arc::new(move |r: &Req| {
        let auth = r.header("authorization").unwrap_or_default();
        if r.path == "/token" {
            if auth != want_basic {
                return Resp::json(401, json!({"errors": [{"code": "UNAUTHORIZED"}]}));
            }
            return Resp::json(200, json!({"token": tok, "expires_in": 300}));
        }
        if auth != format!("Bearer {tok}") {
            let realm = format!("{}/token", b.lock().unwrap());
            return Resp::json(401, json!({"errors": [{"code": "UNAUTHORIZED"}]})).header(
                "WWW-Authenticate",
                &format!(
                    "Bearer realm=\"{realm}\",service=\"stub\",scope=\"repository:team/app:pull\""
                ),
            );
        }
        if r.path.ends_with("/tags/list") {
            return Resp::json(200, json!({"name": "team/app", "tags": ["1.0.0"]}));
        }
        if r.path.contains("/manifests/") {
            return Resp::new(200)
                .header("Docker-Content-Digest", &md)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest.clone());
        }
        if r.path.ends_with(&cd) {
            return Resp::new(200).body(config.clone());
        }
        Resp::new(404)
    }))
    .await;
    srv.url.clone_into(&mut base.lock().unwrap());
    let image = format!("{}/team/app", srv.url.trim_start_matches("http://"));
    let bad = wrong("bearer");
    let mut secrets = Secrets::default();
    secrets.add("registry bearer password", user, &password);
    secrets.add("registry bearer token", "", &token);
    secrets.add("wrong registry bearer password", user, &bad);
    let mut ev = Evidence::default();
    discover(&image, user, &password, true, "bearer right", &mut ev).await;
    discover(&image, user, &bad, false, "bearer wrong", &mut ev).await;
    let requests = srv.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {token}"))),
        "the token was never used"
    );
    ev.assert_clean(&secrets);
}

// ---------------------------------------------------------------------------------------
// Pull-request providers and Argo CD

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_providers() {
    capture();
    let Some(v) = server_envs(
        "pull_request_providers",
        &["TEST_GIT_ROOT", "TEST_GIT_HTTP_URL"],
    ) else {
        return;
    };
    let (root, url) = (PathBuf::from(&v[0]), &v[1]);
    let mut secrets = Secrets::default();
    let mut ev = Evidence::default();
    let mut keep = Vec::new();
    for flavor in [
        Flavor::GitHub,
        Flavor::GitLab,
        Flavor::Gitea,
        Flavor::Bitbucket,
        Flavor::Azure,
    ] {
        let name = unique(flavor.name());
        let rel = match flavor {
            Flavor::Azure => format!("acme/proj/_git/{name}"),
            _ => format!("acme/{name}.git"),
        };
        let bare = seed_repo(&root, &rel);
        let repo_url = format!("{url}/{rel}");
        let user = "pr-user";
        let token = format!("S3cr3t-pr-{}-{}", flavor.name(), unique("t"));
        let bad = wrong(&format!("pr-{}", flavor.name()));
        secrets.add(&format!("{} token", flavor.name()), user, &token);
        secrets.add(&format!("wrong {} token", flavor.name()), user, &bad);
        let forge = Forge::new(flavor, bare, "acme", &name, user, &token);
        let f = forge.clone();
        let srv = serve(Arc::new(move |r: &Req| f.handle(r))).await;
        let api = format!("{}{}", srv.url, flavor.api_prefix());
        let cache = TempDir::new().unwrap();
        let r = runner(cache.path(), |o| {
            o.pull_requests = {
                let mut o = PullRequestOptions::default();
                o.api_urls = vec![(repo_url.clone(), api.clone())];
                o
            };
        });
        for (t, ok) in [(token.as_str(), true), (bad.as_str(), false)] {
            let steps = json!([
                {"alias": "open-pr", "uses": "git-open-pr", "config": {
                    "repoURL": repo_url, "provider": flavor.name(),
                    "sourceBranch": "feature", "targetBranch": "main"}},
            ]);
            let creds = StaticCredentials::new().with(CredentialKind::Git, &repo_url, user, t);
            let (result, dir) = promote(&r, steps, creds, &mut keep).await;
            assert_phase(&result, ok);
            let what = format!("{} {}", flavor.name(), if ok { "right" } else { "wrong" });
            ev.result(&what, &result);
            ev.files(&what, &dir);
        }
        assert_eq!(forge.prs().len(), 1, "{}", flavor.name());
    }
    ev.assert_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_token() {
    capture();
    let token = format!("S3cr3t-argocd-{}", unique("t"));
    let bad = wrong("argocd");
    let mut secrets = Secrets::default();
    secrets.add("Argo CD token", "", &token);
    secrets.add("wrong Argo CD token", "", &bad);
    let fake = Arc::new(FakeArgo::new(&token));
    fake.add(app(
        "argocd",
        "guestbook-prod",
        Some("demo:prod"),
        json!({}),
        json!({
            "project": "default",
            "source": {"repoURL": "https://github.com/acme/gitops.git", "path": "env/prod",
                       "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "prod"},
        }),
    ));
    let f = fake.clone();
    let srv = serve(Arc::new(move |r: &Req| f.handle(r))).await;
    let mut ev = Evidence::default();
    let mut keep = Vec::new();
    for (t, ok) in [(token.as_str(), true), (bad.as_str(), false)] {
        let cache = TempDir::new().unwrap();
        let options = {
            let mut o = ArgoCdOptions::default();
            o.server_url = Some(srv.url.clone());
            o.token = Redacted::new(t.to_owned());
            o.default_namespace = "argocd".into();
            o.insecure_skip_tls_verify = false;
            o.poll_interval = Duration::from_millis(10);
            o.refresh_after_push = true;
            o
        };
        ev.add("ArgoCdOptions Debug", format!("{options:?}"));
        let r = runner(cache.path(), |o| o.argocd = options);
        let steps = json!([
            {"alias": "update", "uses": "argocd-update", "config": {"apps": [{
                "name": "guestbook-prod",
                "sources": [{"repoURL": "https://github.com/acme/gitops",
                             "desiredRevision": "abc123", "updateTargetRevision": true}],
            }]}},
        ]);
        let (result, _) = promote(&r, steps, StaticCredentials::new(), &mut keep).await;
        assert_phase(&result, ok);
        ev.result(if ok { "argocd right" } else { "argocd wrong" }, &result);
    }
    ev.assert_clean(&secrets);
}

// ---------------------------------------------------------------------------------------
// The promoter program: git over HTTP and the registry, with a FileStore state directory

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: secrets}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: secrets, namespace: secrets}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: secrets}
spec:
  interval: 1s
  subscriptions:
  - image: {repoURL: IMAGE_REPO, imageSelectionStrategy: Lexical}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: secrets}
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
          path: ./src/values.yaml
          updates: [{key: image.tag, value: "${{ imageFrom('IMAGE_REPO').Tag }}"}]
      - uses: git-commit
        config: {path: ./src, message: "${{ outputs.update.commitMessage }}"}
      - uses: git-push
        config: {path: ./src}
"#;

fn promoter(root: &Path, creds: &Path, args: &[&str], trace: bool) -> (i32, String, String) {
    let mut cmd = Command::new(support::promoter_bin());
    cmd.arg("--manifests")
        .arg(root.join("kargo"))
        .arg("--state")
        .arg(root.join("state"))
        .arg("--credentials")
        .arg(creds)
        .arg("-v")
        .args(args)
        .env("NO_COLOR", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", root);
    if trace {
        cmd.env("KARGO_LOG", "trace");
    } else {
        cmd.env_remove("KARGO_LOG");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoter_program_git_http_and_registry() {
    capture();
    let Some(v) = server_envs(
        "promoter_program_git_http_and_registry",
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
            "TEST_OCI_AUTH_REGISTRY",
            "TEST_OCI_AUTH_USER",
            "TEST_OCI_AUTH_PASSWORD",
        ],
    ) else {
        return;
    };
    let (git_root, git_url, git_user, git_pw) = (PathBuf::from(&v[0]), &v[1], &v[2], &v[3]);
    let (reg, reg_user, reg_pw) = (&v[4], &v[5], &v[6]);
    let name = unique("cli");
    let bare = seed_repo(&git_root, &format!("{name}.git"));
    let gitops_url = format!("{git_url}/{name}.git");
    let repo = format!("{}/app", unique("cli"));
    let client = pusher(reg, &repo, reg_user, reg_pw).await;
    push_image(&client, reg, &repo, "1.0.0").await;
    let image = format!("{reg}/{repo}");
    let (bad_git, bad_reg) = (wrong("cli-git"), wrong("cli-registry"));
    let mut secrets = Secrets::default();
    secrets.add("git HTTP password", git_user, git_pw);
    secrets.add("registry password", reg_user, reg_pw);
    secrets.add("wrong git HTTP password", git_user, &bad_git);
    secrets.add("wrong registry password", reg_user, &bad_reg);
    let mut ev = Evidence::default();
    let manifests = MANIFESTS
        .replace("GITOPS_URL", &gitops_url)
        .replace("IMAGE_REPO", &image);
    let yaml_str = |s: &str| serde_json::to_string(s).unwrap();
    // The wrong secrets first: the remote must still be unchanged after them.
    for (gpw, rpw, ok) in [
        (bad_git.as_str(), reg_pw.as_str(), false),
        (git_pw.as_str(), bad_reg.as_str(), false),
        (git_pw.as_str(), reg_pw.as_str(), true),
    ] {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("kargo")).unwrap();
        std::fs::write(root.join("kargo/pipeline.yaml"), &manifests).unwrap();
        // The credentials file is the one place the secrets belong; it lives apart from
        // the directory searched below (manifests, state, HOME).
        let creds_dir = TempDir::new().unwrap();
        let creds = creds_dir.path().join("credentials.yaml");
        std::fs::write(
            &creds,
            format!(
                "- type: git\n  repoURL: {gitops_url}\n  username: {git_user}\n  password: {}\n\
                 - type: image\n  repoURL: {image}\n  username: {reg_user}\n  password: {}\n",
                yaml_str(gpw),
                yaml_str(rpw)
            ),
        )
        .unwrap();
        let table = kargo_core::secret::CredentialTable::from_file(&creds).unwrap();
        ev.add("CredentialTable Debug", format!("{table:?}"));
        let what = format!(
            "promoter ({})",
            match (ok, gpw == git_pw) {
                (true, _) => "right secrets",
                (false, false) => "wrong git password",
                (false, true) => "wrong registry password",
            }
        );
        let mut codes = Vec::new();
        for (args, trace) in [
            (&["run", "-o", "json"][..], false),
            (&["run", "--refresh-all"][..], true),
            (&["get", "freight", "-o", "json"][..], false),
            (&["get", "stages", "-o", "json"][..], true),
        ] {
            let (code, stdout, stderr) = promoter(root, &creds, args, trace);
            eprintln!("{what}: promoter {args:?} -> {code}\n{stdout}\n{stderr}");
            ev.add(format!("{what}: {args:?} stdout"), stdout);
            ev.add(format!("{what}: {args:?} stderr"), stderr);
            codes.push(code);
        }
        ev.files(&format!("{what}: state"), &root.join("state"));
        ev.files(&format!("{what}: home"), root);
        if ok {
            assert_eq!(codes, [0, 0, 0, 0], "{what}");
            let values = git_in(&bare, &["show", "main:values.yaml"]).unwrap();
            assert!(values.contains("tag: 1.0.0"), "{values}");
        } else {
            let values = git_in(&bare, &["show", "main:values.yaml"]).unwrap();
            assert!(values.contains("tag: old"), "{what}: {values}");
        }
    }
    ev.assert_clean(&secrets);
}
