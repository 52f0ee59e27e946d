//! `promoter serve`, run as a program and talked to over real HTTP on 127.0.0.1 (the
//! binary is found and built as in `tests/promoter.rs`).
//!
//! - `serve_providers_signatures_and_broken_bodies`: every provider's fixture of
//!   `kargo-sources/tests/fixtures/webhooks/` with valid and invalid credentials; broken
//!   bodies; the health and refresh endpoints. Each fixture is routed among 30 Warehouses
//!   (pairs on one repository) and must refresh exactly its own; their discovery then fails
//!   offline and no Freight appears.
//! - `serve_webhook_to_commit_end_to_end`: an image Warehouse on the authenticated
//!   registry, dev auto-promoting into the HTTP git server; a new image plus a
//!   distribution notification moves dev at once. Measures the time from sending the
//!   webhook to the pushed commit (BENCHMARKS.md, "Webhook to commit"), and to the
//!   refresh request reaching Argo CD (an in-process fake of Argo CD's application API,
//!   the one of `kargo-steps/tests/support/`). Needs the servers of `ci/test.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../kargo-steps/tests/support/fake_argocd.rs"]
mod fake_argocd;
#[path = "../kargo-steps/tests/support/fake_http.rs"]
mod fake_http;
mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{git, promoter_bin};

use hmac::{Hmac, KeyInit, Mac};
use kargo::sources::webhook::{MAX_BODY_BYTES, Provider, receiver_path};
use kargo_core::testing::server_envs;
use serde_json::{Value as Json, json};
use sha2::Sha256;

fn base_command(root: &Path, credentials: Option<&Path>) -> Command {
    let mut cmd = Command::new(promoter_bin());
    cmd.arg("--manifests")
        .arg(root.join("kargo"))
        .arg("--state")
        .arg(root.join("state"));
    if let Some(c) = credentials {
        cmd.arg("--credentials").arg(c);
    }
    cmd.env("NO_COLOR", "1")
        .env("KARGO_ACTOR", "tester")
        .env_remove("KARGO_LOG")
        .env_remove("KARGO_REFRESH_TOKEN")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

/// `promoter get freight -o json`.
fn freight(root: &Path) -> Json {
    let out = base_command(root, None)
        .args(["get", "freight", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A running `promoter serve`; killed on drop. Its stderr is collected in `log`.
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(
        root: &Path,
        credentials: Option<&Path>,
        secrets: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_with(root, credentials, secrets, env, &[])
    }

    /// [`Server::start`] with more `serve` arguments.
    fn start_with(
        root: &Path,
        credentials: Option<&Path>,
        secrets: &Path,
        env: &[(&str, &str)],
        args: &[&std::ffi::OsStr],
    ) -> Self {
        let mut cmd = base_command(root, credentials);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--secrets"])
            .arg(secrets)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
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
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start:\n{}", log.lock().unwrap()));
        let server = Server { child, addr, log };
        // Ready when /healthz answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = server.try_request("GET", "/healthz", &[], b"") {
                break;
            }
            assert!(Instant::now() < deadline, "no /healthz:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// One HTTP/1.1 request on a fresh connection; the status and the body.
    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_nodelay(true)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        // The server may answer (and close) before reading everything: ignore write errors.
        let _ = s.write_all(&msg);
        read_response(s)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// A POST whose Content-Length promises more than is sent: the connection's write side
    /// is closed after `sent` bytes of `body`.
    fn truncated_post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(&body[..body.len() / 2]);
        s.write_all(&msg).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_response(s).map(|(st, _)| st).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- promoter serve stderr ---\n{}", self.log());
        }
    }
}

fn read_response(mut s: TcpStream) -> std::io::Result<(u16, String)> {
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out)
        && out.is_empty()
    {
        return Err(e);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "promoter-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------
// Every provider through the server

const PROJECT: &str = "hooks";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/kargo-sources/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Receiver (named after its type) → (Secret key, value).
const SECRETS: &[(&str, &str, &str)] = &[
    ("github", "secret", "gh-s3cret"),
    ("gitlab", "secret-token", "gl-t0ken"),
    ("gitea", "secret", "gt-s3cret"),
    ("bitbucket", "secret", "bb-s3cret"),
    ("azure", "secret", "az-s3cret"),
    ("dockerhub", "secret", "dh-s3cret"),
    ("quay", "secret", "qy-s3cret"),
    ("harbor", "auth-header", "Bearer hb-t0ken"),
    ("artifactory", "secret-token", "jf-s3cret"),
    ("distribution", "auth-header", "Bearer reg-t0ken"),
    ("generic", "secret", "gen-s3cret"),
];

fn secret_of(receiver: &str) -> &'static str {
    SECRETS.iter().find(|(r, _, _)| *r == receiver).unwrap().2
}

fn provider_of(receiver: &str) -> Provider {
    match receiver {
        "github" => Provider::GitHub,
        "gitlab" => Provider::GitLab,
        "gitea" => Provider::Gitea,
        "bitbucket" => Provider::Bitbucket,
        "azure" => Provider::Azure,
        "dockerhub" => Provider::DockerHub,
        "quay" => Provider::Quay,
        "harbor" => Provider::Harbor,
        "artifactory" => Provider::Artifactory,
        "distribution" => Provider::Distribution,
        _ => Provider::Generic,
    }
}

fn path_of(receiver: &str) -> String {
    receiver_path(
        provider_of(receiver),
        PROJECT,
        receiver,
        &[secret_of(receiver)],
    )
}

/// The credential headers of `receiver` for `body`, signed with `secret`.
fn credentials(receiver: &str, secret: &str, body: &[u8]) -> Vec<(String, String)> {
    match receiver {
        "github" => vec![(
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_hex(secret, body)),
        )],
        "bitbucket" => vec![(
            "X-Hub-Signature".into(),
            format!("sha256={}", hmac_hex(secret, body)),
        )],
        "gitea" => vec![("X-Gitea-Signature".into(), hmac_hex(secret, body))],
        "artifactory" => vec![("X-JFrog-Event-Auth".into(), hmac_hex(secret, body))],
        "gitlab" => vec![("X-Gitlab-Token".into(), secret.into())],
        "harbor" | "distribution" => vec![("Authorization".into(), secret.into())],
        _ => Vec::new(),
    }
}

/// A receiver, a fixture and the headers its event needs.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

fn cases() -> Vec<Case> {
    vec![
        (
            "github",
            "github-push.json",
            vec![("X-GitHub-Event", "push")],
        ),
        (
            "github",
            "github-package-published.json",
            vec![("X-GitHub-Event", "package")],
        ),
        (
            "github",
            "github-registry-package-helm.json",
            vec![("X-GitHub-Event", "registry_package")],
        ),
        (
            "github",
            "github-ping.json",
            vec![("X-GitHub-Event", "ping")],
        ),
        (
            "gitlab",
            "gitlab-push.json",
            vec![("X-Gitlab-Event", "Push Hook")],
        ),
        (
            "gitlab",
            "gitlab-tag-push.json",
            vec![("X-Gitlab-Event", "Tag Push Hook")],
        ),
        ("gitea", "gitea-push.json", vec![("X-Gitea-Event", "push")]),
        (
            "bitbucket",
            "bitbucket-push.json",
            vec![("X-Event-Key", "repo:push")],
        ),
        ("azure", "azure-acr-push.json", vec![]),
        ("azure", "azure-devops-git-push.json", vec![]),
        ("dockerhub", "dockerhub-push.json", vec![]),
        ("quay", "quay-repo-push.json", vec![]),
        ("harbor", "harbor-push-artifact.json", vec![]),
        ("artifactory", "artifactory-pushed.json", vec![]),
        (
            "distribution",
            "distribution-events.json",
            vec![(
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            )],
        ),
        (
            "generic",
            "generic-ecr-eventbridge.json",
            vec![("X-Event-Source", "aws.ecr")],
        ),
    ]
}

/// Per fixture: the Warehouses its event must refresh (each fixture also has a Warehouse on
/// the same repository that it must not refresh; see `WAREHOUSES`).
fn expected_refresh(file: &str) -> Vec<&'static str> {
    match file {
        "github-push.json" => vec!["gh-main"],
        "github-package-published.json" => vec!["ghcr-v1"],
        "github-registry-package-helm.json" => vec!["chart-03"],
        "gitlab-push.json" => vec!["gl-release"],
        "gitlab-tag-push.json" => vec!["gl-tags-v1"],
        "gitea-push.json" => vec!["gt-main"],
        "bitbucket-push.json" => vec!["bb-semver-2"],
        "azure-acr-push.json" => vec!["acr-v1"],
        "azure-devops-git-push.json" => vec!["ado-default"],
        "dockerhub-push.json" => vec!["dh-v2"],
        "quay-repo-push.json" => vec!["quay-v1"],
        "harbor-push-artifact.json" => vec!["hb-v3"],
        "artifactory-pushed.json" => vec!["jf-local"],
        "distribution-events.json" => vec!["reg-dev"],
        "generic-ecr-eventbridge.json" => vec!["ecr-payments"],
        _ => vec![],
    }
}

/// (name, subscription) of the Warehouses the fixtures are routed among: pairs on one
/// repository that differ by branch, constraint or path, so only one of each pair matches.
const WAREHOUSES: &[(&str, &str)] = &[
    (
        "gh-main",
        "git: {repoURL: 'https://github.com/acme/app.git'}",
    ),
    (
        "gh-release",
        "git: {repoURL: 'https://github.com/acme/app.git', branch: release}",
    ),
    (
        "ghcr-v1",
        "image: {repoURL: ghcr.io/acme/app, constraint: '^1'}",
    ),
    (
        "ghcr-v2",
        "image: {repoURL: ghcr.io/acme/app, constraint: '^2'}",
    ),
    (
        "chart-03",
        "chart: {repoURL: 'oci://ghcr.io/acme/charts/app', semverConstraint: '^0.3'}",
    ),
    (
        "chart-1",
        "chart: {repoURL: 'oci://ghcr.io/acme/charts/app', semverConstraint: '^1'}",
    ),
    (
        "gl-release",
        "git: {repoURL: 'https://gitlab.example.com/mike/diaspora.git', branch: release}",
    ),
    (
        "gl-default",
        "git: {repoURL: 'https://gitlab.example.com/mike/diaspora.git'}",
    ),
    (
        "gl-tags-v1",
        "git: {repoURL: 'https://gitlab.example.com/jsmith/example', commitSelectionStrategy: SemVer, semverConstraint: '^1'}",
    ),
    (
        "gl-tags-v2",
        "git: {repoURL: 'https://gitlab.example.com/jsmith/example', commitSelectionStrategy: SemVer, semverConstraint: '^2'}",
    ),
    (
        "gt-main",
        "git: {repoURL: 'https://gitea.example.com/acme/infra.git'}",
    ),
    (
        "gt-apps",
        "git: {repoURL: 'https://gitea.example.com/acme/infra.git', includePaths: [apps/]}",
    ),
    (
        "bb-semver-2",
        "git: {repoURL: 'https://bitbucket.org/acme/deploy.git', commitSelectionStrategy: SemVer, semverConstraint: '^2'}",
    ),
    (
        "bb-semver-1",
        "git: {repoURL: 'https://bitbucket.org/acme/deploy.git', commitSelectionStrategy: SemVer, semverConstraint: '^1'}",
    ),
    (
        "acr-v1",
        "image: {repoURL: acmeregistry.azurecr.io/team/api, constraint: '^1'}",
    ),
    (
        "acr-v2",
        "image: {repoURL: acmeregistry.azurecr.io/team/api, constraint: '^2'}",
    ),
    (
        "ado-default",
        "git: {repoURL: 'https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection/_git/Fabrikam-Fiber-Git'}",
    ),
    (
        "ado-dev",
        "git: {repoURL: 'https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection/_git/Fabrikam-Fiber-Git', branch: dev}",
    ),
    ("dh-v2", "image: {repoURL: acme/web, constraint: '^2'}"),
    ("dh-v1", "image: {repoURL: acme/web, constraint: '^1'}"),
    (
        "quay-v1",
        "image: {repoURL: quay.io/acme/worker, constraint: '^1'}",
    ),
    (
        "quay-v2",
        "image: {repoURL: quay.io/acme/worker, constraint: '^2'}",
    ),
    (
        "hb-v3",
        "image: {repoURL: harbor.example.com/platform/gateway, constraint: '^3'}",
    ),
    (
        "hb-other",
        "image: {repoURL: harbor.example.com/platform/other}",
    ),
    (
        "jf-local",
        "image: {repoURL: acme.jfrog.io/docker-local/billing/api}",
    ),
    (
        "jf-virtual",
        "image: {repoURL: acme.jfrog.io/docker/billing/api}",
    ),
    ("reg-dev", "image: {repoURL: 'localhost:5000/team/dev-app'}"),
    ("reg-other", "image: {repoURL: 'localhost:5000/team/other'}"),
    (
        "ecr-payments",
        "image: {repoURL: 123456789012.dkr.ecr.us-east-1.amazonaws.com/payments}",
    ),
    (
        "ecr-other",
        "image: {repoURL: 123456789012.dkr.ecr.us-east-1.amazonaws.com/other}",
    ),
];

fn hooks_manifests() -> String {
    let mut warehouses = String::new();
    for (name, subscription) in WAREHOUSES {
        warehouses.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\n\
             metadata: {{name: {name}, namespace: {PROJECT}}}\n\
             spec:\n  freightCreationPolicy: Manual\n  subscriptions:\n  - {subscription}\n"
        ));
    }
    let mut receivers = String::new();
    for (name, _, _) in SECRETS {
        if *name == "generic" {
            receivers.push_str(
                "  - name: generic\n    generic:\n      secretRef: {name: generic-secret}\n      \
                 actions:\n      - action: Refresh\n        whenExpression: \"request.header('X-Event-Source') == 'aws.ecr'\"\n        \
                 targetSelectionCriteria:\n        - kind: Warehouse\n          name: ecr-payments\n",
            );
        } else {
            receivers.push_str(&format!(
                "  - name: {name}\n    {name}: {{secretRef: {{name: {name}-secret}}}}\n"
            ));
        }
    }
    format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {{name: {PROJECT}}}\n---\n\
         apiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\n\
         metadata: {{name: {PROJECT}, namespace: {PROJECT}}}\nspec:\n  webhookReceivers:\n{receivers}{warehouses}"
    )
}

fn secrets_yaml(entries: &[(&str, &str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, key, value)| format!("{name}-secret:\n  {key}: \"{value}\"\n"))
        .collect()
}

#[test]
fn serve_providers_signatures_and_broken_bodies() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("kargo")).unwrap();
    std::fs::write(root.join("kargo/project.yaml"), hooks_manifests()).unwrap();
    let secrets = root.join("secrets.yaml");
    // A cluster-wide receiver (ClusterConfig), beside the Project's own.
    std::fs::write(
        root.join("kargo/cluster.yaml"),
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: ClusterConfig\nmetadata: {name: cluster}\n\
         spec:\n  webhookReceivers:\n  - name: org-hub\n    dockerhub: {secretRef: {name: org-hub-secret}}\n",
    )
    .unwrap();
    let mut all_secrets = SECRETS.to_vec();
    all_secrets.push(("org-hub", "secret", "org-s3cret"));
    std::fs::write(&secrets, secrets_yaml(&all_secrets)).unwrap();
    // The REST API for one viewer token (the file holds its SHA-256 only).
    let tokens = root.join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "tokens:\n- {{name: ops, sha256: {}, roles: [{{role: viewer}}]}}\n",
            kargo::server::access::hash_token("ops-t0ken")
        ),
    )
    .unwrap();
    let server = Server::start_with(
        root,
        None,
        &secrets,
        &[],
        &["--tokens".as_ref(), tokens.as_os_str()],
    );
    let before = freight(root);
    let (status, text) = server.request(
        "GET",
        "/v1beta1/projects",
        &[("Authorization", "Bearer ops-t0ken")],
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let reply: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["items"][0]["name"], json!(PROJECT), "{reply}");
    let (status, _) = server.request("GET", "/v1beta1/projects/hooks/stages", &[], b"");
    assert_eq!(status, 401, "no token, no API");

    // The cluster receiver's path is Kargo's hash without a project.
    let cluster_path = receiver_path(Provider::DockerHub, "", "org-hub", &["org-s3cret"]);
    let (status, text) =
        server.request("POST", &cluster_path, &[], &fixture("dockerhub-push.json"));
    assert_eq!(status, 202, "{text}");
    let reply: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["receiver"], json!("org-hub"), "{reply}");
    assert_eq!(reply["refreshing"], json!(["dh-v2"]), "{reply}");
    let project_scoped = receiver_path(Provider::DockerHub, PROJECT, "org-hub", &["org-s3cret"]);
    let (status, _) = server.request(
        "POST",
        &project_scoped,
        &[],
        &fixture("dockerhub-push.json"),
    );
    assert_eq!(status, 404, "a cluster receiver has no project path");

    for (receiver, file, event) in cases() {
        let body = fixture(file);
        let path = path_of(receiver);
        let post = |extra: &[(String, String)], body: &[u8]| -> (u16, String) {
            let mut headers: Vec<(&str, &str)> = event.clone();
            headers.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            server.request("POST", &path, &headers, body)
        };
        let signed = |body: &[u8]| post(&credentials(receiver, secret_of(receiver), body), body);

        // Valid credentials: accepted, and exactly the matching Warehouses refresh (their
        // discovery then fails: these hosts do not exist here, and no Freight appears).
        let (status, text) = signed(&body);
        assert!((200..300).contains(&status), "{file}: {status} {text}");
        let reply: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["receiver"], json!(receiver), "{file}: {reply}");
        assert_eq!(
            reply["refreshing"],
            json!(expected_refresh(file)),
            "{file}: {reply}"
        );

        // Invalid credentials.
        let wrong = credentials(receiver, "not-the-secret", &body);
        if wrong.is_empty() {
            // The URL is the credential: another secret is another path.
            let other = receiver_path(provider_of(receiver), PROJECT, receiver, &["nope"]);
            let mut headers = event.clone();
            headers.push(("X-Extra", "1"));
            let (status, _) = server.request("POST", &other, &headers, &body);
            assert_eq!(status, 404, "{file}: wrong path");
        } else {
            let (status, text) = post(&wrong, &body);
            assert_eq!(status, 403, "{file}: wrong credentials: {text}");
            let (status, text) = post(&[], &body);
            assert_eq!(status, 401, "{file}: no credentials: {text}");
        }

        // Broken bodies, validly signed: 4xx.
        let truncated = &body[..body.len() / 2];
        assert_eq!(signed(truncated).0, 400, "{file}: truncated JSON");
        let mut oversized = body.clone();
        oversized.resize(MAX_BODY_BYTES + 1, b' ');
        assert_eq!(signed(&oversized).0, 413, "{file}: oversized");
        let mut not_utf8 = body.clone();
        let at = not_utf8.iter().position(|b| *b == b'"').unwrap() + 1;
        not_utf8.insert(at, 0xff);
        assert_eq!(signed(&not_utf8).0, 400, "{file}: not UTF-8");
        for malformed in [&b"{\"ref\": }"[..], b"{", b"", b"\xff\xfe"] {
            let (status, text) = signed(malformed);
            assert_eq!(status, 400, "{file}: {malformed:?}: {text}");
        }
        // The connection ends before the promised Content-Length.
        let mut headers: Vec<(&str, &str)> = event.clone();
        let creds = credentials(receiver, secret_of(receiver), &body);
        headers.extend(creds.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert_eq!(
            server.truncated_post(&path, &headers, &body),
            400,
            "{file}: cut connection"
        );
    }

    // Not a receiver, not POST.
    let body = fixture("dockerhub-push.json");
    assert_eq!(
        server
            .request("POST", "/webhook/dockerhub/0000", &[], &body)
            .0,
        404
    );
    assert_eq!(
        server.request("GET", &path_of("dockerhub"), &[], b"").0,
        405
    );
    assert_eq!(server.request("GET", "/nope", &[], b"").0, 404);
    // The refresh API is off without a token.
    let (status, text) = server.request(
        "POST",
        "/refresh/warehouse/x",
        &[("Authorization", "Bearer x")],
        b"",
    );
    assert_eq!(status, 403, "{text}");

    assert_eq!(freight(root), before, "no trace in state");
    let log = server.log();
    for (_, _, value) in SECRETS {
        assert!(
            !log.contains(&format!("\"{value}\"")),
            "a secret in the log"
        );
    }
    // Text found only in the bodies (commit messages, user names), never in the log.
    for marker in [
        "Catalan translation",
        "John Smith",
        "Update the dev overlay",
    ] {
        assert!(!log.contains(marker), "a body in the log:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------
// End to end: registry push + distribution notification → dev overlay commit

const DEV_OVERLAY: &str = "env/dev/values.yaml";

fn dev_values(tag: &str) -> String {
    format!("# dev\nimage:\n  repository: backend\n  tag: {tag}  # promoted\n")
}

/// The bare repository's `main`, read from the ref file as the git server wrote it (no
/// process, so it can be polled every few milliseconds).
fn main_ref(bare: &Path) -> String {
    match std::fs::read_to_string(bare.join("refs/heads/main")) {
        Ok(s) => s.trim().to_owned(),
        Err(_) => git(bare, &["rev-parse", "main"]).trim().to_owned(),
    }
}

/// Pushes a tiny image `repo:tag`; returns the manifest's digest and size.
async fn push_image(
    client: &oci_client::Client,
    host: &str,
    repo: &str,
    tag: &str,
) -> (String, usize) {
    use oci_client::Reference;
    let sha = |b: &[u8]| kargo::sources::chart::sha256_digest(b);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Env": [format!("TAG={tag}")]},
    }))
    .unwrap();
    let layer = format!("layer of {tag}").into_bytes();
    let (cd, ld) = (sha(&config), sha(&layer));
    let blob = |d: &str| Reference::with_digest(host.to_owned(), repo.to_owned(), d.to_owned());
    client
        .push_blob(&blob(&cd), config.clone(), &cd)
        .await
        .unwrap();
    client
        .push_blob(&blob(&ld), layer.clone(), &ld)
        .await
        .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let (digest, size) = (sha(&manifest), manifest.len());
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
    (digest, size)
}

/// A distribution registry's notification envelope for the push of `repo:tag`, as the
/// registry sends it (a blob event, then the tagged manifest's).
fn distribution_envelope(host: &str, repo: &str, tag: &str, digest: &str, size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"events": [
        {
            "id": "b1", "timestamp": "2026-01-01T00:00:00Z", "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 10,
                "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "length": 10, "repository": repo,
                "url": format!("http://{host}/v2/{repo}/blobs/sha256:00"),
            },
            "request": {"id": "r1", "addr": "127.0.0.1:1", "host": host, "method": "PUT", "useragent": "oci-client"},
            "actor": {"name": "ci"}, "source": {"addr": "registry:5000", "instanceID": "i1"},
        },
        {
            "id": "m1", "timestamp": "2026-01-01T00:00:01Z", "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": size,
                "digest": digest, "length": size, "repository": repo,
                "url": format!("http://{host}/v2/{repo}/manifests/{digest}"), "tag": tag,
            },
            "request": {"id": "r2", "addr": "127.0.0.1:1", "host": host, "method": "PUT", "useragent": "oci-client"},
            "actor": {"name": "ci"}, "source": {"addr": "registry:5000", "instanceID": "i1"},
        },
    ]}))
    .unwrap()
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
  webhookReceivers:
  - name: registry
    distribution: {secretRef: {name: registry-hook}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: backend, namespace: payments}
spec:
  interval: 1h
  subscriptions:
  - image: {repoURL: IMAGE_REPO, constraint: ">=1.0.0"}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: payments}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: backend}
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
          path: ./src/env/dev/values.yaml
          updates:
          - key: image.tag
            value: ${{ imageFrom("IMAGE_REPO").Tag }}
      - uses: git-commit
        config:
          path: ./src
          message: ${{ outputs.update.commitMessage }}
      - uses: git-push
        config: {path: ./src}
"#;

#[test]
fn serve_webhook_to_commit_end_to_end() {
    let t = "serve_webhook_to_commit_end_to_end";
    let Some(vars) = server_envs(
        t,
        &[
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
            "TEST_GIT_ROOT",
            "TEST_OCI_AUTH_REGISTRY",
            "TEST_OCI_AUTH_USER",
            "TEST_OCI_AUTH_PASSWORD",
        ],
    ) else {
        return;
    };
    let [git_url, git_user, git_pw, git_root, reg, reg_user, reg_pw] = &vars[..] else {
        unreachable!()
    };
    let iterations: usize = std::env::var("KARGO_WEBHOOK_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    // The GitOps repository.
    let name = unique("serve-gitops");
    let bare = PathBuf::from(git_root).join(format!("{name}.git"));
    let seed = root.join("seed");
    std::fs::create_dir_all(seed.join("env/dev")).unwrap();
    std::fs::write(seed.join(DEV_OVERLAY), dev_values("none")).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "Initial layout"]);
    git(
        root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let gitops_url = format!("{git_url}/{name}.git");
    let dev_file = || git(&bare, &["show", &format!("main:{DEV_OVERLAY}")]);

    // The image repository: a dozen tags already.
    let image_path = format!("{}/backend", unique("serve-img"));
    let image_repo = format!("{reg}/{image_path}");
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
    let push = |tag: &str| rt.block_on(push_image(&client, reg, &image_path, tag));
    for i in 0..12 {
        push(&format!("1.0.{i}"));
    }

    std::fs::create_dir_all(root.join("kargo")).unwrap();
    std::fs::write(
        root.join("kargo/pipeline.yaml"),
        E2E_MANIFESTS
            .replace("GITOPS_URL", &gitops_url)
            .replace("IMAGE_REPO", &image_repo),
    )
    .unwrap();
    let creds = root.join("credentials.yaml");
    std::fs::write(
        &creds,
        format!(
            "- type: git\n  repoURL: {gitops_url}\n  username: {git_user}\n  password: {git_pw}\n\
             - type: image\n  repoURL: {image_repo}\n  username: {reg_user}\n  password: {reg_pw}\n"
        ),
    )
    .unwrap();
    let hook_secret = "Bearer e2e-t0ken";
    let secrets = root.join("secrets.yaml");
    std::fs::write(
        &secrets,
        format!("registry-hook:\n  auth-header: \"{hook_secret}\"\n"),
    )
    .unwrap();
    let hook_path = receiver_path(
        Provider::Distribution,
        "payments",
        "registry",
        &[hook_secret],
    );
    let ct = (
        "Content-Type",
        "application/vnd.docker.distribution.events.v1+json",
    );
    let auth = ("Authorization", hook_secret);

    // Argo CD: one Application tracks the dev branch of the GitOps repository, one another
    // branch.
    let argo_rt = tokio::runtime::Runtime::new().unwrap();
    let argo = Arc::new(fake_argocd::FakeArgo::new("argo-t0ken"));
    let source = |rev: &str| json!({"source": {"repoURL": gitops_url, "targetRevision": rev, "path": "env/dev"}});
    argo.add(fake_argocd::app(
        "argocd",
        "payments-dev",
        None,
        json!({}),
        source("main"),
    ));
    argo.add(fake_argocd::app(
        "argocd",
        "payments-prod",
        None,
        json!({}),
        source("prod"),
    ));
    let a = argo.clone();
    let argo_srv = argo_rt.block_on(fake_http::serve(Arc::new(move |r: &fake_http::Req| {
        a.handle(r)
    })));
    let refreshes = || argo.refreshes.lock().unwrap().len();

    let server = Server::start(
        root,
        Some(&creds),
        &secrets,
        &[
            ("KARGO_REFRESH_TOKEN", "refresh-t0ken"),
            ("KARGO_ARGOCD_SERVER", &argo_srv.url),
            ("KARGO_ARGOCD_TOKEN", "argo-t0ken"),
        ],
    );
    assert!(
        server.log().contains(&hook_path),
        "the receiver's path is announced:\n{}",
        server.log()
    );

    // The first pass (the loop's, at start) takes 1.0.11 to dev.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dev_file() != dev_values("1.0.11") {
        assert!(
            Instant::now() < deadline,
            "no first promotion:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and records it (the commit is pushed before the promotion is recorded).
    let freight_before = loop {
        let list = freight(root);
        if list[0]["status"]["currentlyIn"]["dev"].is_object() {
            break list;
        }
        assert!(Instant::now() < deadline, "{list:#}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        freight_before.as_array().unwrap().len(),
        1,
        "{freight_before:#}"
    );

    // The refresh API: authenticated, known Warehouses only.
    let refresh = |headers: &[(&str, &str)], wh: &str| {
        server
            .request("POST", &format!("/refresh/warehouse/{wh}"), headers, b"")
            .0
    };
    assert_eq!(refresh(&[], "backend"), 401);
    assert_eq!(refresh(&[("Authorization", "Bearer nope")], "backend"), 403);
    assert_eq!(
        refresh(&[("Authorization", "Bearer refresh-t0ken")], "nope"),
        404
    );

    // A new image, then broken notifications: all 4xx, nothing discovered.
    let (digest, size) = push("1.1.0");
    let good = distribution_envelope(reg, &image_path, "1.1.0", &digest, size);
    let mut oversized = good.clone();
    oversized.resize(MAX_BODY_BYTES + 1, b' ');
    let mut not_utf8 = good.clone();
    not_utf8.insert(3, 0xff);
    for (what, body) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("oversized", oversized),
        ("not UTF-8", not_utf8),
        ("malformed", b"{\"events\": [}".to_vec()),
        ("not an envelope", b"[1, 2]".to_vec()),
    ] {
        let (status, text) = server.request("POST", &hook_path, &[ct, auth], &body);
        assert!((400..500).contains(&status), "{what}: {status} {text}");
    }
    assert_eq!(server.truncated_post(&hook_path, &[ct, auth], &good), 400);
    let (status, _) = server.request(
        "POST",
        &hook_path,
        &[ct, ("Authorization", "Bearer x")],
        &good,
    );
    assert_eq!(status, 403);
    assert_eq!(
        freight(root),
        freight_before,
        "rejected webhooks leave no trace"
    );
    assert_eq!(dev_file(), dev_values("1.0.11"));

    // The first promotion's push asked Argo CD to refresh the dev app (only).
    while refreshes() == 0 {
        assert!(
            Instant::now() < deadline,
            "no Argo CD refresh:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        *argo.refreshes.lock().unwrap(),
        [("payments-dev".to_owned(), "normal".to_owned())]
    );

    // Webhook → commit, timed: from sending the request to the new commit on `main`, and on
    // to Argo CD's refresh request.
    let mut times = Vec::new();
    let mut argo_times = Vec::new();
    for i in 0..iterations {
        let tag = format!("1.1.{i}");
        let body = if i == 0 {
            good.clone()
        } else {
            let (digest, size) = push(&tag);
            distribution_envelope(reg, &image_path, &tag, &digest, size)
        };
        let head = main_ref(&bare);
        let refreshed = refreshes();
        let start = Instant::now();
        let (status, text) = server.request("POST", &hook_path, &[ct, auth], &body);
        assert_eq!(status, 202, "{text}");
        let reply: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["refreshing"], json!(["backend"]));
        let deadline = start + Duration::from_secs(60);
        while main_ref(&bare) == head {
            assert!(Instant::now() < deadline, "no commit:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = start.elapsed();
        while refreshes() == refreshed {
            assert!(
                Instant::now() < deadline,
                "no Argo CD refresh:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        argo_times.push(start.elapsed());
        assert_eq!(dev_file(), dev_values(&tag));
        times.push(elapsed);
    }
    assert!(
        argo.refreshes
            .lock()
            .unwrap()
            .iter()
            .all(|(app, kind)| app == "payments-dev" && kind == "normal"),
        "{:?}",
        argo.refreshes.lock().unwrap()
    );
    let mut sorted = times.clone();
    sorted.sort();
    let ms = |d: &Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    println!(
        "webhook to commit: median {} ms over {} runs ({} ms)",
        ms(&sorted[sorted.len() / 2]),
        sorted.len(),
        times.iter().map(ms).collect::<Vec<_>>().join(", ")
    );
    let mut sorted_argo = argo_times.clone();
    sorted_argo.sort();
    println!(
        "webhook to Argo CD refresh: median {} ms over {} runs ({} ms)",
        ms(&sorted_argo[sorted_argo.len() / 2]),
        sorted_argo.len(),
        argo_times.iter().map(ms).collect::<Vec<_>>().join(", ")
    );
    // The server's own view (request received → pass finished), for the record.
    for line in server
        .log()
        .lines()
        .filter(|l| l.contains("after the request"))
    {
        eprintln!("serve: {line}");
    }
    let list = freight(root);
    assert_eq!(
        list.as_array().unwrap().len(),
        1 + iterations,
        "one Freight per webhook: {list:#}"
    );

    // The refresh API with the token: queued (nothing new to find, nothing pushed).
    let head = main_ref(&bare);
    assert_eq!(
        refresh(&[("Authorization", "Bearer refresh-t0ken")], "backend"),
        202
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("refresh API: refreshed backend") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(main_ref(&bare), head);
}
