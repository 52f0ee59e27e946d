use super::*;
use crate::secret::{CredentialProvider, LayeredSecrets};
use std::sync::Arc;

fn load(yaml: &str) -> Result<ManifestSecrets, ManifestErrors> {
    let set = ManifestSet::from_yaml_str("kargo/secrets.yaml", yaml).unwrap();
    ManifestSecrets::from_manifests(&set)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(ns: &str, name: &str, cred_type: Option<&str>, body: &str) -> String {
    let labels = cred_type
        .map(|t| format!("\n  labels: {{kargo.akuity.io/cred-type: {t}}}"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}{labels}\n{body}\n"
    )
}

fn user(t: &CredentialTable, kind: CredentialKind, url: &str) -> Option<String> {
    t.lookup(kind, url).map(|c| c.username.clone())
}

#[test]
fn string_data_and_base64_data_become_credentials() {
    let yaml = [
        secret(
            "demo",
            "a-git",
            Some("git"),
            "stringData:\n  repoURL: https://git.example.com/acme/gitops.git\n  username: sd-user\n  password: sd-pass",
        ),
        secret(
            "demo",
            "b-image",
            Some("image"),
            &format!(
                "data:\n  repoURL: {}\n  username: {}\n  password: {}",
                b64("ghcr.io/acme/app"),
                b64("data-user"),
                b64("data-pass")
            ),
        ),
        secret(
            "demo",
            "c-helm",
            Some("helm"),
            &format!(
                "data:\n  repoURL: {}\n  username: {}\n  password: {}\nstringData:\n  username: override",
                b64("https://charts.example.com"),
                b64("ignored"),
                b64("helm-pass")
            ),
        ),
        secret(
            "demo",
            "d-ssh",
            Some("git"),
            "stringData:\n  repoURL: ssh://git@git.example.com/acme/infra.git\n  sshPrivateKey: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    abc\n",
        ),
    ]
    .concat();
    let s = load(&yaml).unwrap();
    let t = s.credentials("demo");
    assert_eq!(t.len(), 4);
    assert_eq!(
        user(
            &t,
            CredentialKind::Git,
            "https://git.example.com/acme/gitops"
        )
        .as_deref(),
        Some("sd-user")
    );
    let img = t.lookup(CredentialKind::Image, "ghcr.io/acme/app").unwrap();
    assert_eq!(
        (img.username.as_str(), img.password.expose().as_str()),
        ("data-user", "data-pass")
    );
    // stringData wins over data for the same key.
    assert_eq!(
        user(&t, CredentialKind::Helm, "https://charts.example.com/").as_deref(),
        Some("override")
    );
    let ssh = t
        .lookup(
            CredentialKind::Git,
            "ssh://git@git.example.com/acme/infra.git",
        )
        .unwrap();
    assert!(
        ssh.ssh_private_key
            .as_ref()
            .unwrap()
            .expose()
            .contains("abc")
    );
    // Another kind or another project finds nothing.
    assert_eq!(
        user(
            &t,
            CredentialKind::Image,
            "https://git.example.com/acme/gitops"
        ),
        None
    );
    assert!(s.credentials("other").is_empty());
    let summary = s.summary("demo");
    assert_eq!(
        summary.credentials,
        [
            "git demo/a-git",
            "image demo/b-image",
            "helm demo/c-helm",
            "git demo/d-ssh"
        ]
    );
    assert_eq!(summary.secrets.len(), 4);
}

#[test]
fn regex_entries_come_after_exact_ones_in_name_order() {
    let yaml = [
        secret(
            "demo",
            "a-pattern",
            Some("git"),
            "stringData:\n  repoURL: '^https://git\\.example\\.com/acme/'\n  repoURLIsRegex: 'true'\n  username: pattern-a\n  password: x",
        ),
        secret(
            "demo",
            "b-pattern",
            Some("git"),
            "stringData:\n  repoURL: 'example'\n  repoURLIsRegex: 'true'\n  username: pattern-b\n  password: x",
        ),
        secret(
            "demo",
            "z-exact",
            Some("git"),
            "stringData:\n  repoURL: https://git.example.com/acme/app.git\n  username: exact\n  password: x",
        ),
        // repoURLIsRegex other than "true" is an exact URL, as in Kargo.
        secret(
            "demo",
            "y-not-regex",
            Some("git"),
            "stringData:\n  repoURL: https://other.example.com/x\n  repoURLIsRegex: 'false'\n  username: not-regex\n  password: x",
        ),
    ]
    .concat();
    let t = load(&yaml).unwrap().credentials("demo");
    let u = |url| user(&t, CredentialKind::Git, url);
    assert_eq!(
        u("https://git.example.com/acme/app").as_deref(),
        Some("exact")
    );
    assert_eq!(
        u("https://git.example.com/acme/other.git").as_deref(),
        Some("pattern-a")
    );
    assert_eq!(
        u("https://git.example.org/example/x").as_deref(),
        Some("pattern-b")
    );
    assert_eq!(
        u("https://other.example.com/x.git").as_deref(),
        Some("not-regex")
    );
}

#[test]
fn the_project_namespace_comes_before_the_shared_one() {
    let yaml = [
        secret(
            SHARED_RESOURCES_NAMESPACE,
            "shared-exact",
            Some("git"),
            "stringData:\n  repoURL: https://git.example.com/acme/app.git\n  username: shared\n  password: x",
        ),
        secret(
            SHARED_RESOURCES_NAMESPACE,
            "shared-only",
            Some("image"),
            "stringData:\n  repoURL: ghcr.io/acme/app\n  username: shared-image\n  password: x",
        ),
        // A project pattern beats a shared exact entry: namespaces first.
        secret(
            "demo",
            "own-pattern",
            Some("git"),
            "stringData:\n  repoURL: '^https://git\\.example\\.com/'\n  repoURLIsRegex: 'true'\n  username: own\n  password: x",
        ),
    ]
    .concat();
    let s = load(&yaml).unwrap();
    let t = s.credentials("demo");
    assert_eq!(
        user(&t, CredentialKind::Git, "https://git.example.com/acme/app").as_deref(),
        Some("own")
    );
    assert_eq!(
        user(&t, CredentialKind::Image, "ghcr.io/acme/app").as_deref(),
        Some("shared-image")
    );
    // Another project only sees the shared ones.
    let t = s.credentials("other");
    assert_eq!(
        user(&t, CredentialKind::Git, "https://git.example.com/acme/app").as_deref(),
        Some("shared")
    );
    assert_eq!(
        s.summary("other").credentials,
        [
            "git kargo-shared-resources/shared-exact",
            "image kargo-shared-resources/shared-only"
        ]
    );
    // Other shared namespaces (older Kargo's global credentials namespaces).
    let set = ManifestSet::from_yaml_str(
        "s.yaml",
        &secret(
            "kargo-global",
            "g",
            Some("git"),
            "stringData: {repoURL: 'https://g/x', username: global, password: x}",
        ),
    )
    .unwrap();
    let default = ManifestSecrets::from_manifests(&set).unwrap();
    assert!(default.credentials("demo").is_empty());
    let opts = ManifestSecretsOptions::default()
        .with_shared_namespaces([SHARED_RESOURCES_NAMESPACE, "kargo-global"]);
    let s = ManifestSecrets::from_manifests_with(&set, opts).unwrap();
    assert_eq!(
        user(&s.credentials("demo"), CredentialKind::Git, "https://g/x").as_deref(),
        Some("global")
    );
}

#[tokio::test]
async fn an_explicit_table_comes_first_in_a_chain() {
    let s = load(&secret(
        "demo",
        "dir",
        Some("git"),
        "stringData: {repoURL: 'https://git.example.com/a.git', username: dir, password: x}",
    ))
    .unwrap();
    let file = CredentialTable::from_yaml_str(
        "creds.yaml",
        "- {type: git, repoURL: 'https://git.example.com/a', username: file, password: y}",
    )
    .unwrap();
    let chain = crate::secret::CredentialChain::new()
        .then(Arc::new(file))
        .then(Arc::new(s.credentials("demo")));
    let c = chain
        .credentials(CredentialKind::Git, "https://git.example.com/a.git")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.username, "file");
    let only_dir = crate::secret::CredentialChain::new().then(Arc::new(s.credentials("demo")));
    let c = only_dir
        .credentials(CredentialKind::Git, "https://git.example.com/a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.username, "dir");
}

#[test]
fn expression_stores_follow_kargo() {
    let yaml = [
        secret("demo", "token", None, "stringData: {value: t0ken}"),
        secret(
            "demo",
            "repo",
            Some("git"),
            "stringData: {repoURL: 'https://g/x', username: u, password: repo-pw}",
        ),
        secret(
            SHARED_RESOURCES_NAMESPACE,
            "slack",
            Some("generic"),
            &format!("data: {{webhook: {}}}", b64("https://hooks/x")),
        ),
        secret(
            SHARED_RESOURCES_NAMESPACE,
            "shared-repo",
            Some("git"),
            "stringData: {repoURL: 'https://g/y', username: u, password: hidden}",
        ),
        secret(SHARED_RESOURCES_NAMESPACE, "unlabelled", None, "stringData: {a: b}"),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: demo}\ndata: {env: dev}\n".to_owned(),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: global, namespace: kargo-shared-resources}\ndata: {region: eu}\n".to_owned(),
    ]
    .concat();
    let s = load(&yaml).unwrap();
    let p = s.project("demo");
    assert_eq!(p.secret("token").unwrap()["value"].expose(), "t0ken");
    // secret() reads any Secret of the project, credentials included (Kargo's direct access).
    assert_eq!(p.secret("repo").unwrap()["password"].expose(), "repo-pw");
    assert!(p.secret("missing").is_none());
    // sharedSecret() reads only generic Secrets of the shared namespace.
    assert_eq!(
        p.shared_secret("slack").unwrap()["webhook"].expose(),
        "https://hooks/x"
    );
    assert!(p.shared_secret("shared-repo").is_none());
    assert!(p.shared_secret("unlabelled").is_none());
    assert!(p.secret("slack").is_none());
    assert_eq!(p.config_map("settings").unwrap()["env"], "dev");
    assert!(p.config_map("global").is_none());
    assert_eq!(p.shared_config_map("global").unwrap()["region"], "eu");
    let summary = s.summary("demo");
    assert_eq!(
        summary.secrets,
        ["demo/repo", "demo/token", "kargo-shared-resources/slack"]
    );
    assert_eq!(
        summary.config_maps,
        ["demo/settings", "kargo-shared-resources/global"]
    );
    // Debug shows names, never values.
    for text in [
        format!("{s:?}"),
        format!("{p:?}"),
        format!("{:?}", s.credentials("demo")),
    ] {
        for v in ["t0ken", "repo-pw", "hooks", "hidden"] {
            assert!(!text.contains(v), "{v} in {text}");
        }
    }
    // A layered store asks its layers in order.
    let explicit: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([(
        "token".to_owned(),
        BTreeMap::from([("value".to_owned(), "from-file".to_owned())]),
    )]);
    let layered = LayeredSecrets::new()
        .then(Arc::new(explicit))
        .then(Arc::new(p));
    assert_eq!(
        layered.secret("token").unwrap()["value"].expose(),
        "from-file"
    );
    assert_eq!(layered.secret("repo").unwrap()["username"].expose(), "u");
    assert_eq!(layered.shared_config_map("global").unwrap()["region"], "eu");
}

/// Every error names the file, line, Secret and key, and never the value.
#[test]
fn errors_name_the_place_and_never_the_value() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            secret(
                "demo",
                "no-url",
                Some("git"),
                "stringData: {username: u, password: pw-1-leak}",
            ),
            "data.repoURL",
            "needs a non-empty repoURL",
        ),
        (
            secret(
                "demo",
                "bad-regex",
                Some("git"),
                "stringData: {repoURL: '(', repoURLIsRegex: 'true', username: u, password: pw-2-leak}",
            ),
            "data.repoURL",
            "not a valid regular expression",
        ),
        (
            secret(
                "demo",
                "bad-b64",
                Some("git"),
                "data: {repoURL: aHR0cHM6Ly9nL3g=, username: dQ==, password: 'pw-3-leak!!'}",
            ),
            "data.password",
            "is not valid base64",
        ),
        (
            secret(
                "demo",
                "bad-type",
                Some("svn"),
                "stringData: {repoURL: 'https://g/x', username: u, password: pw-4-leak}",
            ),
            "metadata.labels[kargo.akuity.io/cred-type]",
            "unknown credential type \"svn\"",
        ),
        (
            secret(
                "demo",
                "no-creds",
                Some("image"),
                "stringData: {repoURL: 'ghcr.io/x'}",
            ),
            "data",
            "has no credentials",
        ),
        (
            secret(
                "demo",
                "half",
                Some("git"),
                "stringData: {repoURL: 'https://g/x', username: u}",
            ),
            "data",
            "has a username but no password",
        ),
        (
            secret(
                "demo",
                "not-a-string",
                Some("git"),
                "stringData: {repoURL: 'https://g/x', repoURLIsRegex: true, username: u, password: pw-5-leak}",
            ),
            "stringData.repoURLIsRegex",
            "must be a string, found a boolean",
        ),
        (
            secret(
                "demo",
                "app-half",
                Some("git"),
                "stringData: {repoURL: 'https://g/x', githubAppID: '1', githubAppPrivateKey: pw-6-leak}",
            ),
            "data.githubAppInstallationID",
            "incomplete GitHub App credentials",
        ),
    ];
    for (yaml, field, message) in cases {
        let doc = format!("# a comment line\n{yaml}");
        let errors = load(&doc).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        let e = &errors.0[0];
        let text = errors.to_string();
        assert_eq!(e.field, field, "{text}");
        assert!(text.contains(message), "{text}");
        // At the field's own line (or its nearest written parent), not above the document.
        assert!(text.starts_with("kargo/secrets.yaml:"), "{text}");
        assert!(e.location.line.is_some_and(|l| l >= 3), "{text}");
        if field == "data.password" {
            let line = doc.lines().position(|l| l.contains("pw-3-leak")).unwrap() + 1;
            assert_eq!(e.location.line, Some(line), "{text}");
        }
        assert!(text.contains("Secret demo/"), "{text}");
        assert!(!text.contains("leak"), "{text}");
        assert!(!format!("{errors:?}").contains("leak"));
    }
    // Several problems are reported at once.
    let both = [
        secret(
            "demo",
            "a",
            Some("git"),
            "stringData: {username: u, password: p}",
        ),
        secret("demo", "b", Some("nope"), "stringData: {}"),
    ]
    .concat();
    assert_eq!(load(&both).unwrap_err().len(), 2);
}

#[tokio::test]
async fn github_app_secrets_load_and_fail_clearly_when_used() {
    let s = load(&secret(
        "demo",
        "app",
        Some("git"),
        "stringData:\n  repoURL: https://github.com/acme/gitops\n  githubAppClientID: Iv1.abc\n  githubAppInstallationID: '42'\n  githubAppPrivateKey: private-key-leak",
    ))
    .unwrap();
    let t = s.credentials("demo");
    assert_eq!(s.summary("demo").credentials, ["git demo/app"]);
    assert_eq!(s.summary("demo").github_apps, ["demo/app"]);
    let e = t
        .credentials(CredentialKind::Git, "https://github.com/acme/gitops.git")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("Secret demo/app"), "{text}");
    assert!(text.contains("kargo/secrets.yaml:2"), "{text}");
    assert!(text.contains("GitHub App"), "{text}");
    assert!(!text.contains("leak"));
    // Other URLs are unaffected.
    assert!(
        t.credentials(CredentialKind::Git, "https://github.com/acme/other")
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn config_maps_and_unscoped_documents() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: demo}\ndata: {port: 8080}\n";
    let e = load(yaml).unwrap_err();
    assert!(e.to_string().contains("data.port: must be a string"), "{e}");
    let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: loose}\nstringData: {a: b}\n";
    let s = load(yaml).unwrap();
    assert_eq!(s.summary("demo").unscoped, ["Secret loose"]);
    assert!(s.project("demo").secret("loose").is_none());
}
