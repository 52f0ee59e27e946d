//! An existing Kargo directory runs unchanged: the Secrets and ConfigMaps beside the
//! Kargo resources are the `promoter`'s credentials and its expressions' data, with no
//! `--credentials` file.
//!
//! The directory holds a Project, a Warehouse subscribed to an image of the authenticated
//! registry, a Stage whose promotion clones the authenticated smart-HTTP git server and
//! pushes to it, a `cred-type: git` Secret (`stringData`) and a `cred-type: image` Secret
//! (base64 `data`) with the servers' passwords, and the Secrets and ConfigMaps that the
//! Stage's `file-write` step reads through `secret()`, `sharedSecret()`, `configMap()` and
//! `sharedConfigMap()`. The promotion must push the new tag and the values read; with a
//! wrong password in the git Secret it must fail and leave the repository as it was. No
//! secret may appear in the program's stdout or stderr (`-v`, `KARGO_LOG=trace`).
//!
//! Run with `ci/test.sh --test manifest_secrets` (it starts the servers; without them the
//! tests are skipped, except with `CI=true`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod support;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use kargo_core::testing::server_envs;
use serde_json::json;
use tempfile::TempDir;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("manifest-secrets-{name}-{}-{nanos:x}", std::process::id())
}

/// A bare repository `rel` under the git server's root, `main` holding `values.yaml`;
/// pushes over HTTP are allowed.
fn seed_repo(root: &Path, rel: &str) -> std::path::PathBuf {
    let bare = root.join(rel);
    let seed = TempDir::new().unwrap();
    std::fs::write(seed.path().join("values.yaml"), "image:\n  tag: old\n").unwrap();
    support::seed_bare_repo(seed.path(), &bare);
    support::git(&bare, &["config", "http.receivepack", "true"]);
    bare
}

fn show(bare: &Path, what: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["show", what])
        .current_dir(bare)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

/// Pushes a tiny image `repo:tag`.
async fn push_image(client: &oci_client::Client, host: &str, repo: &str, tag: &str) {
    use oci_client::Reference;
    let sha = |b: &[u8]| kargo::sources::chart::sha256_digest(b);
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

/// The Kargo resources: the Stage writes what the expression functions read into
/// `config.txt` (no step output carries it) and the new tag into `values.yaml`.
const PIPELINE: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: demo, namespace: demo}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  interval: 1s
  subscriptions:
  - image: {repoURL: IMAGE_REPO, imageSelectionStrategy: Lexical}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: demo}
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
      - uses: file-write
        config:
          path: ./src/config.txt
          overwrite: true
          contents: |
            env=${{ configMap('settings').env }}
            token=${{ secret('app-token').token }}
            region=${{ sharedConfigMap('global').region }}
            webhook=${{ sharedSecret('notifications').webhook }}
            missing=${{ len(configMap('nope')) }}
      - uses: git-commit
        config: {path: ./src, message: "${{ outputs.update.commitMessage }}"}
      - uses: git-push
        config: {path: ./src}
"#;

/// The Secrets and ConfigMaps beside them, as a Kargo user keeps them.
fn secrets_yaml(
    gitops_url: &str,
    git_user: &str,
    git_pw: &str,
    image: &str,
    reg_user: &str,
    reg_pw: &str,
    token: &str,
    webhook: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: gitops-repo
  namespace: demo
  labels:
    kargo.akuity.io/cred-type: git
stringData:
  repoURL: {gitops_url}
  username: {git_user}
  password: {git_pw}
---
apiVersion: v1
kind: Secret
metadata:
  name: registry
  namespace: demo
  labels:
    kargo.akuity.io/cred-type: image
type: Opaque
data:
  repoURL: {image_b64}
  username: {reg_user_b64}
  password: {reg_pw_b64}
---
apiVersion: v1
kind: Secret
metadata:
  name: app-token
  namespace: demo
data:
  token: {token_b64}
---
apiVersion: v1
kind: Secret
metadata:
  name: notifications
  namespace: kargo-shared-resources
  labels:
    kargo.akuity.io/cred-type: generic
stringData:
  webhook: {webhook}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  env: development
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: global
  namespace: kargo-shared-resources
data:
  region: eu-west-1
"#,
        git_pw = q(git_pw),
        git_user = q(git_user),
        image_b64 = b64(image),
        reg_user_b64 = b64(reg_user),
        reg_pw_b64 = b64(reg_pw),
        token_b64 = b64(token),
        webhook = q(webhook),
    )
}

fn promoter(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::promoter_bin())
        .arg("--manifests")
        .arg(root.join("kargo"))
        .arg("--state")
        .arg(root.join("state"))
        .arg("-v")
        .args(args)
        .env("NO_COLOR", "1")
        .env("KARGO_LOG", "trace")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows a secret value:\n{text}");
        let pct: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        assert!(
            !text.contains(&pct),
            "{what} shows a secret value (URL-encoded):\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kargo_directory_with_secrets_promotes_without_a_credentials_file() {
    let Some(v) = server_envs(
        "a_kargo_directory_with_secrets_promotes_without_a_credentials_file",
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
    let (git_root, git_url, git_user, git_pw) = (Path::new(&v[0]), &v[1], &v[2], &v[3]);
    let (reg, reg_user, reg_pw) = (&v[4], &v[5], &v[6]);
    let name = unique("repo");
    let bare = seed_repo(git_root, &format!("{name}.git"));
    let gitops_url = format!("{git_url}/{name}.git");
    let repo = format!("{}/app", unique("img"));
    let client = pusher(reg, &repo, reg_user, reg_pw).await;
    push_image(&client, reg, &repo, "1.0.0").await;
    let image = format!("{reg}/{repo}");
    let token = format!("tok-{}", unique("t"));
    let webhook = format!("https://hooks.example.com/{}", unique("w"));
    let wrong_pw = format!("Wr0ng-{}", unique("pw"));
    let pipeline = PIPELINE
        .replace("GITOPS_URL", &gitops_url)
        .replace("IMAGE_REPO", &image);
    let never_shown = [
        git_pw.as_str(),
        reg_pw.as_str(),
        token.as_str(),
        webhook.as_str(),
        wrong_pw.as_str(),
    ];

    // A wrong git password in the Secret: discovery works (the registry Secret is
    // right), the push is refused, the repository is unchanged.
    for (password, ok) in [(wrong_pw.as_str(), false), (git_pw.as_str(), true)] {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("kargo")).unwrap();
        std::fs::write(root.join("kargo/pipeline.yaml"), &pipeline).unwrap();
        std::fs::write(
            root.join("kargo/secrets.yaml"),
            secrets_yaml(
                &gitops_url,
                git_user,
                password,
                &image,
                reg_user,
                reg_pw,
                &token,
                &webhook,
            ),
        )
        .unwrap();
        let what = if ok {
            "right password"
        } else {
            "wrong password"
        };

        let (code, stdout, stderr) = promoter(root, &["validate", "-o", "json"]);
        eprintln!("{what}: validate -> {code}\n{stdout}\n{stderr}");
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            report["credentials"],
            json!(["git demo/gitops-repo", "image demo/registry"])
        );
        assert_eq!(
            report["secrets"],
            json!([
                "demo/app-token",
                "demo/gitops-repo",
                "demo/registry",
                "kargo-shared-resources/notifications"
            ])
        );
        assert_eq!(
            report["configMaps"],
            json!(["demo/settings", "kargo-shared-resources/global"])
        );
        assert_no_secret(
            &format!("{what}: validate"),
            &(stdout + &stderr),
            &never_shown,
        );

        let (code, stdout, stderr) = promoter(root, &["run", "-o", "json"]);
        eprintln!("{what}: run -> {code}\n{stdout}\n{stderr}");
        assert_no_secret(
            &format!("{what}: run"),
            &format!("{stdout}{stderr}"),
            &never_shown,
        );
        let (_, freight, freight_err) = promoter(root, &["get", "freight", "-o", "json"]);
        assert_no_secret(
            &format!("{what}: get freight"),
            &format!("{freight}{freight_err}"),
            &never_shown,
        );
        // Discovery used the image Secret: the Freight exists either way.
        assert!(
            freight.contains("1.0.0"),
            "{what}: {freight}\n{freight_err}"
        );
        let values = show(&bare, "main:values.yaml").unwrap();
        if ok {
            assert_eq!(code, 0, "{what}: {stderr}");
            assert!(values.contains("tag: 1.0.0"), "{values}");
            let config = show(&bare, "main:config.txt").unwrap();
            assert_eq!(
                config,
                format!(
                    "env=development\ntoken={token}\nregion=eu-west-1\nwebhook={webhook}\nmissing=0\n"
                )
            );
        } else {
            assert_ne!(code, 0, "{what}: the push must fail\n{stdout}\n{stderr}");
            assert!(values.contains("tag: old"), "{what}: {values}");
            assert_eq!(show(&bare, "main:config.txt"), None);
        }
    }
}

/// A malformed credential Secret is a validation error naming the file, line, Secret and
/// key, and the program never reaches the servers.
#[test]
fn a_malformed_credential_secret_is_reported_with_its_place() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("kargo")).unwrap();
    let pipeline = PIPELINE
        .replace("GITOPS_URL", "https://git.example.com/acme/gitops.git")
        .replace("IMAGE_REPO", "ghcr.io/acme/app");
    std::fs::write(root.join("kargo/pipeline.yaml"), pipeline).unwrap();
    std::fs::write(
        root.join("kargo/secrets.yaml"),
        "# credentials\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: gitops-repo\n  namespace: demo\n  labels: {kargo.akuity.io/cred-type: git}\n\
         data:\n  repoURL: aHR0cHM6Ly9naXQuZXhhbXBsZS5jb20vYWNtZS9naXRvcHMuZ2l0\n  username: a2FyZ28=\n  password: 'n0t-b4se64-S3CRET!'\n\
         ---\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: no-url\n  namespace: demo\n  labels: {kargo.akuity.io/cred-type: image}\n\
         stringData: {username: u, password: Another-S3CRET}\n",
    )
    .unwrap();
    for command in [&["validate"][..], &["run"][..]] {
        let (code, stdout, stderr) = promoter(root, command);
        eprintln!("{command:?} -> {code}\n{stdout}\n{stderr}");
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(
                "kargo/secrets.yaml:11:3: document 1: Secret demo/gitops-repo: data.password: is \
                 not valid base64"
            ),
            "{stderr}"
        );
        assert!(
            stderr
                .contains("kargo/secrets.yaml:13:1: document 2: Secret demo/no-url: data.repoURL"),
            "{stderr}"
        );
        assert_no_secret("validate", &(stdout + &stderr), &["S3CRET"]);
    }
}

/// A GitHub App credential Secret loads (as in Kargo) and `validate` says, by name, that
/// kargo-rs cannot use it; its key never shows.
#[test]
fn a_github_app_secret_is_named_as_unusable() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("kargo")).unwrap();
    let pipeline = PIPELINE
        .replace("GITOPS_URL", "https://github.com/acme/gitops.git")
        .replace("IMAGE_REPO", "ghcr.io/acme/app");
    std::fs::write(root.join("kargo/pipeline.yaml"), pipeline).unwrap();
    std::fs::write(
        root.join("kargo/secrets.yaml"),
        "apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: github\n  namespace: demo\n  labels: {kargo.akuity.io/cred-type: git}\n\
         stringData:\n  repoURL: https://github.com/acme/gitops\n  githubAppClientID: Iv1.abc\n  \
         githubAppInstallationID: '42'\n  githubAppPrivateKey: PRIVATE-KEY-S3CRET\n",
    )
    .unwrap();
    let (code, stdout, stderr) = promoter(root, &["validate", "-o", "json"]);
    eprintln!("validate -> {code}\n{stdout}\n{stderr}");
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["githubApps"], json!(["demo/github"]));
    assert_eq!(report["credentials"], json!(["git demo/github"]));
    assert!(
        stderr.contains("the credential Secret demo/github holds a GitHub App"),
        "{stderr}"
    );
    assert_no_secret("validate", &(stdout + &stderr), &["S3CRET"]);
}

/// The library's wiring: a Controller uses the manifests' Secrets behind whatever
/// `with_credentials` / `with_secrets` put in front of them.
#[tokio::test]
async fn the_controller_puts_explicit_sources_before_the_manifests() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kargo::controller::Controller;
    use kargo_core::loader::ManifestSet;
    use kargo_core::pipeline::MemoryStore;
    use kargo_core::runner::Runner;
    use kargo_core::secret::{CredentialKind, CredentialTable, ManifestSecrets};
    use kargo_core::source::SourceRegistry;
    use kargo_core::step::StepRegistry;

    let manifests = ManifestSet::from_yaml_str(
        "kargo.yaml",
        r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: v1
kind: Secret
metadata:
  name: repo
  namespace: demo
  labels: {kargo.akuity.io/cred-type: git}
stringData: {repoURL: 'https://git.example.com/a.git', username: from-dir, password: p1}
---
apiVersion: v1
kind: Secret
metadata:
  name: shared
  namespace: kargo-shared-resources
  labels: {kargo.akuity.io/cred-type: git}
stringData: {repoURL: 'https://git.example.com/b.git', username: from-shared, password: p2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
data: {env: dev}
"#,
    )
    .unwrap();
    let controller = || {
        Controller::new(
            manifests.clone(),
            "demo",
            SourceRegistry::new(),
            Runner::new(StepRegistry::new()),
            Arc::new(MemoryStore::new()),
        )
        .unwrap()
    };
    let user = |c: &Controller, url: &'static str| {
        let p = c.credentials().clone();
        async move {
            p.credentials(CredentialKind::Git, url)
                .await
                .unwrap()
                .map(|c| c.username)
        }
    };
    let c = controller();
    assert_eq!(
        user(&c, "https://git.example.com/a").await.as_deref(),
        Some("from-dir")
    );
    assert_eq!(
        user(&c, "https://git.example.com/b").await.as_deref(),
        Some("from-shared")
    );
    assert_eq!(c.secrets().config_map("settings").unwrap()["env"], "dev");

    let file = CredentialTable::from_yaml_str(
        "creds.yaml",
        "- {type: git, repoURL: 'https://git.example.com/a', username: from-file, password: x}",
    )
    .unwrap();
    let explicit: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([(
        "repo".to_owned(),
        BTreeMap::from([("password".to_owned(), "override".to_owned())]),
    )]);
    let c = controller()
        .with_credentials(Arc::new(file))
        .with_secrets(Arc::new(explicit));
    assert_eq!(
        user(&c, "https://git.example.com/a").await.as_deref(),
        Some("from-file")
    );
    assert_eq!(
        user(&c, "https://git.example.com/b").await.as_deref(),
        Some("from-shared")
    );
    assert_eq!(
        c.secrets().secret("repo").unwrap()["password"].expose(),
        "override"
    );
    assert_eq!(c.secrets().config_map("settings").unwrap()["env"], "dev");

    // No manifest Secrets at all.
    let c = controller().with_manifest_secrets(ManifestSecrets::default());
    assert_eq!(user(&c, "https://git.example.com/a").await, None);
    assert!(c.secrets().config_map("settings").is_none());

    // A malformed credential Secret stops the controller with the place and no value.
    let bad = ManifestSet::from_yaml_str(
        "kargo.yaml",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: demo}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: r\n  namespace: demo\n  \
         labels: {kargo.akuity.io/cred-type: helm}\ndata: {repoURL: '%%', password: 'S3CRET'}\n",
    )
    .unwrap();
    let e = Controller::new(
        bad,
        "demo",
        SourceRegistry::new(),
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("kargo.yaml:11:8: document 2: Secret demo/r: data.repoURL: is not valid base64"),
        "{e}"
    );
    assert!(!e.contains("S3CRET"), "{e}");
}
