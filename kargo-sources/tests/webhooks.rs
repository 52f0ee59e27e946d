//! Webhook receivers: per provider, a payload shaped as the provider documents it (fixtures
//! under `tests/fixtures/webhooks/`), valid and invalid credentials, routing to exactly the
//! right Warehouses, and robustness against broken bodies.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use kargo_core::model::{ProjectConfig, Warehouse};
use kargo_sources::webhook::{
    MAX_BODY_BYTES, Provider, WebhookError, WebhookOutcome, WebhookRequest, WebhookRouter,
    receiver_path,
};
use serde_json::{Value, json};
use sha2::Sha256;

const PROJECT: &str = "demo";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
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

fn wh(name: &str, labels: Value, subs: Value) -> Warehouse {
    serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": name, "namespace": PROJECT, "labels": labels},
        "spec": {"subscriptions": subs},
    }))
    .unwrap()
}

fn git(name: &str, sub: Value) -> Warehouse {
    wh(name, json!({}), json!([{ "git": sub }]))
}

fn image(name: &str, sub: Value) -> Warehouse {
    wh(name, json!({}), json!([{ "image": sub }]))
}

fn chart(name: &str, sub: Value) -> Warehouse {
    wh(name, json!({}), json!([{ "chart": sub }]))
}

/// Every Warehouse of the project: several per provider, differing by repository, branch,
/// tag constraint and path filters.
fn warehouses() -> Vec<Warehouse> {
    let gh = "https://github.com/acme/app.git";
    let gl = "https://gitlab.example.com/mike/diaspora.git";
    let gl_tags = "https://gitlab.example.com/jsmith/example";
    let gitea = "https://gitea.example.com/acme/infra.git";
    let bb = "https://bitbucket.org/acme/deploy.git";
    let ado =
        "https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection/_git/Fabrikam-Fiber-Git";
    vec![
        // GitHub git
        git("gh-main", json!({"repoURL": gh})),
        git(
            "gh-ssh-main",
            json!({"repoURL": "git@github.com:acme/app.git", "branch": "main"}),
        ),
        git("gh-release", json!({"repoURL": gh, "branch": "release"})),
        git(
            "gh-tags",
            json!({"repoURL": gh, "commitSelectionStrategy": "SemVer"}),
        ),
        git(
            "gh-paths-dev",
            json!({"repoURL": gh, "branch": "main", "includePaths": ["env/dev"]}),
        ),
        git(
            "gh-paths-prod",
            json!({"repoURL": gh, "branch": "main", "includePaths": ["env/prod"]}),
        ),
        git(
            "gh-other",
            json!({"repoURL": "https://github.com/acme/other.git"}),
        ),
        // GHCR images and charts
        image(
            "ghcr-v1",
            json!({"repoURL": "ghcr.io/acme/app", "constraint": "^1"}),
        ),
        image(
            "ghcr-v2",
            json!({"repoURL": "ghcr.io/acme/app", "constraint": "^2"}),
        ),
        image(
            "ghcr-latest",
            json!({"repoURL": "ghcr.io/acme/app", "imageSelectionStrategy": "Digest", "constraint": "latest"}),
        ),
        image(
            "ghcr-lexical",
            json!({"repoURL": "ghcr.io/acme/app", "imageSelectionStrategy": "Lexical", "allowTagsRegexes": ["^1\\."]}),
        ),
        chart(
            "chart-03",
            json!({"repoURL": "oci://ghcr.io/acme/charts/app", "semverConstraint": "^0.3"}),
        ),
        chart(
            "chart-1",
            json!({"repoURL": "oci://ghcr.io/acme/charts/app", "semverConstraint": "^1"}),
        ),
        image(
            "ghcr-charts-as-image",
            json!({"repoURL": "ghcr.io/acme/charts/app"}),
        ),
        // GitLab
        git("gl-release", json!({"repoURL": gl, "branch": "release"})),
        git("gl-default", json!({"repoURL": gl})),
        git(
            "gl-release-excluded",
            json!({"repoURL": gl, "branch": "release", "excludePaths": ["glob:**/*.md", "docs"]}),
        ),
        git(
            "gl-release-readme",
            json!({"repoURL": gl, "branch": "release", "includePaths": ["regex:^README"]}),
        ),
        git(
            "gl-tags-v1",
            json!({"repoURL": gl_tags, "commitSelectionStrategy": "SemVer", "semverConstraint": "^1"}),
        ),
        git(
            "gl-tags-v2",
            json!({"repoURL": gl_tags, "commitSelectionStrategy": "SemVer", "semverConstraint": "^2"}),
        ),
        git(
            "gl-tags-rc",
            json!({"repoURL": gl_tags, "commitSelectionStrategy": "Lexical", "allowTagsRegexes": ["-rc"]}),
        ),
        git(
            "gl-example-main",
            json!({"repoURL": gl_tags, "branch": "main"}),
        ),
        // Gitea
        git("gt-main", json!({"repoURL": gitea})),
        git(
            "gt-main-apps",
            json!({"repoURL": gitea, "includePaths": ["apps/"]}),
        ),
        git(
            "gt-main-nodocs",
            json!({"repoURL": gitea, "excludePaths": ["docs"]}),
        ),
        // Bitbucket
        git(
            "bb-semver-2",
            json!({"repoURL": bb, "commitSelectionStrategy": "SemVer", "semverConstraint": "^2"}),
        ),
        git(
            "bb-semver-1",
            json!({"repoURL": bb, "commitSelectionStrategy": "SemVer", "semverConstraint": "^1"}),
        ),
        git("bb-main", json!({"repoURL": bb, "branch": "main"})),
        git(
            "bb-ssh-newest-tag",
            json!({"repoURL": "git@bitbucket.org:acme/deploy.git", "commitSelectionStrategy": "NewestTag"}),
        ),
        // Azure
        image(
            "acr-v1",
            json!({"repoURL": "acmeregistry.azurecr.io/team/api", "constraint": "^1"}),
        ),
        image(
            "acr-v2",
            json!({"repoURL": "acmeregistry.azurecr.io/team/api", "constraint": "^2"}),
        ),
        git("ado-default", json!({"repoURL": ado})),
        git("ado-dev", json!({"repoURL": ado, "branch": "dev"})),
        // Docker Hub
        image("dh-v2", json!({"repoURL": "acme/web", "constraint": "^2"})),
        image(
            "dh-docker-io-v2",
            json!({"repoURL": "docker.io/acme/web", "constraint": "^2"}),
        ),
        image("dh-v1", json!({"repoURL": "acme/web", "constraint": "^1"})),
        chart(
            "dh-chart",
            json!({"repoURL": "oci://registry-1.docker.io/acme/web", "semverConstraint": "^2"}),
        ),
        // Quay
        image(
            "quay-latest",
            json!({"repoURL": "quay.io/acme/worker", "imageSelectionStrategy": "Digest", "constraint": "latest"}),
        ),
        image(
            "quay-stable",
            json!({"repoURL": "quay.io/acme/worker", "imageSelectionStrategy": "Digest", "constraint": "stable"}),
        ),
        image(
            "quay-v1",
            json!({"repoURL": "quay.io/acme/worker", "constraint": "^1"}),
        ),
        image(
            "quay-v2",
            json!({"repoURL": "quay.io/acme/worker", "constraint": "^2"}),
        ),
        // Harbor
        image(
            "hb-v3",
            json!({"repoURL": "harbor.example.com/platform/gateway", "constraint": "^3"}),
        ),
        image(
            "hb-ignored",
            json!({"repoURL": "harbor.example.com/platform/gateway", "ignoreTagsRegexes": ["^3\\.2\\."]}),
        ),
        image(
            "hb-other",
            json!({"repoURL": "harbor.example.com/platform/other"}),
        ),
        // Artifactory
        image(
            "jf-local",
            json!({"repoURL": "acme.jfrog.io/docker-local/billing/api"}),
        ),
        image(
            "jf-virtual",
            json!({"repoURL": "acme.jfrog.io/docker/billing/api"}),
        ),
        // Distribution registry
        image("reg-dev", json!({"repoURL": "localhost:5000/team/dev-app"})),
        image(
            "reg-dev-v2",
            json!({"repoURL": "localhost:5000/team/dev-app", "constraint": "^2"}),
        ),
        image("reg-other", json!({"repoURL": "localhost:5000/team/other"})),
        // Generic (ECR through EventBridge)
        image(
            "ecr-payments",
            json!({"repoURL": "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments"}),
        ),
        image(
            "ecr-other",
            json!({"repoURL": "123456789012.dkr.ecr.us-east-1.amazonaws.com/other"}),
        ),
        wh(
            "ops-tools",
            json!({"team": "ops"}),
            json!([{ "image": {"repoURL": "ghcr.io/acme/ops-tools"} }]),
        ),
        wh(
            "ops-legacy",
            json!({"team": "legacy"}),
            json!([{ "image": {"repoURL": "ghcr.io/acme/ops-legacy"} }]),
        ),
    ]
}

/// Receiver name → (Secret key, value).
fn secrets() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for (name, key, value) in [
        ("github", "secret", "gh-s3cret"),
        ("gitlab", "secret-token", "gl-t0ken"),
        ("gitea", "secret", "gt-s3cret"),
        ("bitbucket", "secret", "bb-s3cret"),
        ("azure", "secret", "az-s3cret"),
        ("dockerhub", "secret", "dh-s3cret"),
        ("quay", "secret", "qy-s3cret"),
        ("harbor", "auth-header", "Bearer hb-t0ken"),
        ("artifactory", "secret-token", "jf-s3cret"),
        ("artifactory-virtual", "secret-token", "jfv-s3cret"),
        ("distribution", "auth-header", "Bearer reg-t0ken"),
        ("generic", "secret", "gen-s3cret"),
    ] {
        m.insert(
            format!("{name}-secret"),
            BTreeMap::from([(key.to_owned(), value.to_owned())]),
        );
    }
    m
}

fn secret_of(receiver: &str) -> String {
    secrets()[&format!("{receiver}-secret")]
        .values()
        .next()
        .unwrap()
        .clone()
}

fn project_config() -> ProjectConfig {
    let simple = |name: &str, ty: &str| json!({"name": name, ty: {"secretRef": {"name": format!("{name}-secret")}}});
    serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "ProjectConfig",
        "metadata": {"name": PROJECT, "namespace": PROJECT},
        "spec": {"webhookReceivers": [
            simple("github", "github"),
            simple("gitlab", "gitlab"),
            simple("gitea", "gitea"),
            simple("bitbucket", "bitbucket"),
            simple("azure", "azure"),
            simple("dockerhub", "dockerhub"),
            simple("quay", "quay"),
            simple("harbor", "harbor"),
            simple("artifactory", "artifactory"),
            {"name": "artifactory-virtual", "artifactory": {
                "secretRef": {"name": "artifactory-virtual-secret"},
                "virtualRepoName": "docker"
            }},
            simple("distribution", "distribution"),
            {"name": "generic", "generic": {
                "secretRef": {"name": "generic-secret"},
                "actions": [
                    {
                        "action": "Refresh",
                        "whenExpression": "request.header('X-Event-Source') == 'aws.ecr' && request.body.detail['action-type'] == 'PUSH'",
                        "targetSelectionCriteria": [{
                            "kind": "Warehouse",
                            "indexSelector": {"matchIndices": [{
                                "key": "subscribedURLs",
                                "operator": "Equals",
                                "value": "${{ normalizeImage(params.registry + '/' + request.body.detail['repository-name']) }}"
                            }]}
                        }],
                        "parameters": {"registry": "123456789012.dkr.ecr.us-east-1.amazonaws.com"}
                    },
                    {
                        "action": "Refresh",
                        "whenExpression": "request.params('team') == 'ops' && request.method == 'POST'",
                        "targetSelectionCriteria": [{
                            "kind": "Warehouse",
                            "name": "${{ 'ops-' + 'tools' }}",
                            "labelSelector": {"matchLabels": {"team": "ops"}}
                        }]
                    }
                ]
            }},
        ]},
    }))
    .unwrap()
}

struct Env {
    router: WebhookRouter,
    warehouses: Vec<Warehouse>,
}

impl Env {
    fn new() -> Self {
        let config = project_config();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let warehouses = warehouses();
        for w in &warehouses {
            assert!(
                w.validate().is_empty(),
                "{}: {:?}",
                w.metadata.name,
                w.validate()
            );
        }
        Self {
            router: WebhookRouter::new(PROJECT, &config, &secrets()),
            warehouses,
        }
    }

    fn path(&self, receiver: &str) -> String {
        self.router
            .routes()
            .find(|r| r.name == receiver)
            .unwrap_or_else(|| panic!("no route for {receiver}"))
            .path
            .clone()
    }

    fn post(
        &self,
        receiver: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<WebhookOutcome, WebhookError> {
        self.post_to(&self.path(receiver), headers, body)
    }

    fn post_to(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<WebhookOutcome, WebhookError> {
        let req = WebhookRequest::post(
            path,
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
            body,
        );
        self.router.handle(&req, &self.warehouses)
    }

    /// Posts `body` with valid credentials for `receiver` (whose provider is named in the
    /// receiver's name) plus `extra` headers.
    fn post_signed(
        &self,
        receiver: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<WebhookOutcome, WebhookError> {
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let secret = secret_of(receiver);
        match receiver {
            "github" => headers.push((
                "X-Hub-Signature-256".into(),
                format!("sha256={}", hmac_hex(&secret, body)),
            )),
            "bitbucket" => headers.push((
                "X-Hub-Signature".into(),
                format!("sha256={}", hmac_hex(&secret, body)),
            )),
            "gitea" => headers.push(("X-Gitea-Signature".into(), hmac_hex(&secret, body))),
            "artifactory" | "artifactory-virtual" => {
                headers.push(("X-JFrog-Event-Auth".into(), hmac_hex(&secret, body)));
            }
            "gitlab" => headers.push(("X-Gitlab-Token".into(), secret)),
            "harbor" | "distribution" => headers.push(("Authorization".into(), secret)),
            _ => {}
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.post(receiver, &refs, body)
    }
}

fn refreshed(o: &WebhookOutcome) -> Vec<&str> {
    o.warehouses_to_refresh.iter().map(String::as_str).collect()
}

fn status(r: Result<WebhookOutcome, WebhookError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

// ---- routing ----

#[test]
fn paths_are_the_documented_hash_and_unknown_paths_are_404() {
    let env = Env::new();
    let expected = receiver_path(Provider::GitHub, PROJECT, "github", &["gh-s3cret"]);
    assert_eq!(env.path("github"), expected);
    assert!(expected.starts_with("/webhook/github/"));
    assert_eq!(env.router.routes().count(), 12);
    let body = fixture("dockerhub-push.json");
    // A wrong secret gives another path.
    let wrong = receiver_path(Provider::DockerHub, PROJECT, "dockerhub", &["nope"]);
    assert_eq!(status(env.post_to(&wrong, &[], &body)), 404);
    assert_eq!(status(env.post_to("/webhook/dockerhub/", &[], &body)), 404);
    // Query strings and a trailing slash do not matter.
    let p = format!("{}/?x=1", env.path("dockerhub"));
    assert_eq!(status(env.post_to(&p, &[], &body)), 200);
    // Only POST.
    let mut req = WebhookRequest::post(env.path("dockerhub"), Vec::new(), body);
    req.method = "GET".into();
    assert_eq!(
        env.router
            .handle(&req, &env.warehouses)
            .unwrap_err()
            .status(),
        405
    );
}

#[test]
fn a_receiver_without_its_secret_key_is_not_routed() {
    let mut s = secrets();
    s.insert(
        "github-secret".into(),
        BTreeMap::from([("token".into(), "x".into())]),
    );
    let router = WebhookRouter::new(PROJECT, &project_config(), &s);
    assert!(router.routes().all(|r| r.name != "github"));
    assert_eq!(router.routes().count(), 11);
}

// ---- GitHub ----

#[test]
fn github_push_refreshes_matching_branch_and_path_subscriptions() {
    let env = Env::new();
    let body = fixture("github-push.json");
    let o = env
        .post_signed("github", &[("X-GitHub-Event", "push")], &body)
        .unwrap();
    assert_eq!(o.provider, Provider::GitHub);
    assert_eq!(o.event, "push");
    assert_eq!(refreshed(&o), ["gh-main", "gh-paths-dev", "gh-ssh-main"]);
    let a = &o.artifacts[0];
    assert_eq!(a.git_refs, ["refs/heads/main"]);
    assert_eq!(
        a.changed_files.as_deref(),
        Some(
            &[
                "env/dev/new.yaml".to_owned(),
                "env/dev/kustomization.yaml".to_owned()
            ][..]
        )
    );
}

#[test]
fn github_signatures() {
    let env = Env::new();
    let body = fixture("github-push.json");
    let ev = ("X-GitHub-Event", "push");
    assert_eq!(status(env.post("github", &[ev], &body)), 401);
    let wrong = format!("sha256={}", hmac_hex("other", &body));
    assert_eq!(
        status(env.post("github", &[ev, ("X-Hub-Signature-256", &wrong)], &body)),
        403
    );
    let bare = hmac_hex(&secret_of("github"), &body);
    assert_eq!(
        status(env.post("github", &[ev, ("X-Hub-Signature-256", &bare)], &body)),
        403
    );
    // A signature of another body.
    let other = format!("sha256={}", hmac_hex(&secret_of("github"), b"{}"));
    assert_eq!(
        status(env.post("github", &[ev, ("x-hub-signature-256", &other)], &body)),
        403
    );
}

#[test]
fn github_ping_and_unsupported_events() {
    let env = Env::new();
    let o = env
        .post_signed(
            "github",
            &[("X-GitHub-Event", "ping")],
            &fixture("github-ping.json"),
        )
        .unwrap();
    assert_eq!(o.event, "ping");
    assert!(o.warehouses_to_refresh.is_empty());
    let r = env.post_signed(
        "github",
        &[("X-GitHub-Event", "issues")],
        &fixture("github-ping.json"),
    );
    assert_eq!(status(r), 422);
    let r = env.post_signed("github", &[], &fixture("github-ping.json"));
    assert_eq!(status(r), 400);
}

#[test]
fn github_package_published_refreshes_image_subscriptions_whose_tag_rules_pass() {
    let env = Env::new();
    let o = env
        .post_signed(
            "github",
            &[("X-GitHub-Event", "package")],
            &fixture("github-package-published.json"),
        )
        .unwrap();
    assert_eq!(o.event, "package:published");
    assert_eq!(refreshed(&o), ["ghcr-lexical", "ghcr-v1"]);
    assert_eq!(o.artifacts[0].tags, ["1.4.0"]);
    assert_eq!(o.artifacts[0].repo_urls, ["ghcr.io/acme/app"]);
}

#[test]
fn github_registry_package_helm_chart_refreshes_chart_subscriptions_only() {
    let env = Env::new();
    let o = env
        .post_signed(
            "github",
            &[("X-GitHub-Event", "registry_package")],
            &fixture("github-registry-package-helm.json"),
        )
        .unwrap();
    assert_eq!(refreshed(&o), ["chart-03"]);
}

#[test]
fn github_package_other_actions_refresh_nothing() {
    let env = Env::new();
    let text = String::from_utf8(fixture("github-package-published.json")).unwrap();
    let body = text.replacen("\"published\"", "\"updated\"", 1);
    let o = env
        .post_signed("github", &[("X-GitHub-Event", "package")], body.as_bytes())
        .unwrap();
    assert!(o.warehouses_to_refresh.is_empty());
}

// ---- GitLab ----

#[test]
fn gitlab_push_matches_branch_and_paths() {
    let env = Env::new();
    let body = fixture("gitlab-push.json");
    let o = env
        .post_signed("gitlab", &[("X-Gitlab-Event", "Push Hook")], &body)
        .unwrap();
    assert_eq!(refreshed(&o), ["gl-release", "gl-release-readme"]);
}

#[test]
fn gitlab_tag_push_matches_semver_constraints() {
    let env = Env::new();
    let body = fixture("gitlab-tag-push.json");
    let o = env
        .post_signed("gitlab", &[("X-Gitlab-Event", "Tag Push Hook")], &body)
        .unwrap();
    assert_eq!(refreshed(&o), ["gl-tags-v1"]);
    assert_eq!(o.artifacts[0].git_refs, ["refs/tags/v1.0.0"]);
}

#[test]
fn gitlab_tokens() {
    let env = Env::new();
    let body = fixture("gitlab-push.json");
    let ev = ("X-Gitlab-Event", "Push Hook");
    assert_eq!(status(env.post("gitlab", &[ev], &body)), 401);
    assert_eq!(
        status(env.post("gitlab", &[ev, ("X-Gitlab-Token", "gl-t0ke")], &body)),
        403
    );
    assert_eq!(
        status(env.post("gitlab", &[ev, ("X-Gitlab-Token", "gl-t0ken")], &body)),
        200
    );
    let r = env.post_signed("gitlab", &[("X-Gitlab-Event", "Merge Request Hook")], &body);
    assert_eq!(status(r), 422);
}

// ---- Gitea / Forgejo ----

#[test]
fn gitea_push_respects_path_filters() {
    let env = Env::new();
    let body = fixture("gitea-push.json");
    let o = env
        .post_signed("gitea", &[("X-Gitea-Event", "push")], &body)
        .unwrap();
    assert_eq!(refreshed(&o), ["gt-main"]);
}

#[test]
fn gitea_and_forgejo_signatures() {
    let env = Env::new();
    let body = fixture("gitea-push.json");
    let sig = hmac_hex(&secret_of("gitea"), &body);
    let forgejo = [
        ("X-Forgejo-Event", "push"),
        ("X-Forgejo-Signature", sig.as_str()),
    ];
    assert_eq!(status(env.post("gitea", &forgejo, &body)), 200);
    let hub = format!("sha256={sig}");
    let hub = [
        ("X-Gitea-Event", "push"),
        ("X-Hub-Signature-256", hub.as_str()),
    ];
    assert_eq!(status(env.post("gitea", &hub, &body)), 200);
    assert_eq!(
        status(env.post("gitea", &[("X-Gitea-Event", "push")], &body)),
        401
    );
    let bad = hmac_hex("nope", &body);
    let bad = [
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Signature", bad.as_str()),
    ];
    assert_eq!(status(env.post("gitea", &bad, &body)), 403);
    let garbage = [("X-Gitea-Event", "push"), ("X-Gitea-Signature", "zz")];
    assert_eq!(status(env.post("gitea", &garbage, &body)), 403);
}

// ---- Bitbucket ----

#[test]
fn bitbucket_tag_push_matches_tag_strategies() {
    let env = Env::new();
    let body = fixture("bitbucket-push.json");
    let o = env
        .post_signed("bitbucket", &[("X-Event-Key", "repo:push")], &body)
        .unwrap();
    assert_eq!(refreshed(&o), ["bb-semver-2", "bb-ssh-newest-tag"]);
    assert_eq!(o.artifacts[0].git_refs, ["refs/tags/v2.1.0"]);
}

#[test]
fn bitbucket_signatures() {
    let env = Env::new();
    let body = fixture("bitbucket-push.json");
    let ev = ("X-Event-Key", "repo:push");
    assert_eq!(status(env.post("bitbucket", &[ev], &body)), 401);
    let bad = format!("sha256={}", hmac_hex("bb-s3cre", &body));
    assert_eq!(
        status(env.post("bitbucket", &[ev, ("X-Hub-Signature", &bad)], &body)),
        403
    );
    let r = env.post_signed(
        "bitbucket",
        &[("X-Event-Key", "pullrequest:created")],
        &body,
    );
    assert_eq!(status(r), 422);
}

// ---- Azure ----

#[test]
fn azure_acr_push_matches_constraints() {
    let env = Env::new();
    let o = env
        .post_signed("azure", &[], &fixture("azure-acr-push.json"))
        .unwrap();
    assert_eq!(refreshed(&o), ["acr-v1"]);
    assert_eq!(
        o.artifacts[0].digest.as_deref().map(|d| &d[..7]),
        Some("sha256:")
    );
}

#[test]
fn azure_devops_git_push_uses_the_default_branch() {
    let env = Env::new();
    let o = env
        .post_signed("azure", &[], &fixture("azure-devops-git-push.json"))
        .unwrap();
    assert_eq!(o.event, "git.push");
    assert_eq!(refreshed(&o), ["ado-default"]);
}

#[test]
fn azure_is_authenticated_by_its_url_only() {
    let env = Env::new();
    let wrong = receiver_path(Provider::Azure, PROJECT, "azure", &["az-s3cre"]);
    assert_eq!(
        status(env.post_to(&wrong, &[], &fixture("azure-acr-push.json"))),
        404
    );
    let ping = br#"{"id":"x","timestamp":"2024-05-14T23:18:52Z","action":"ping","target":{},"request":{"host":"acmeregistry.azurecr.io"}}"#;
    let o = env.post("azure", &[], ping).unwrap();
    assert!(o.warehouses_to_refresh.is_empty());
    let delete = br#"{"id":"x","action":"delete","target":{"repository":"team/api"},"request":{"host":"acmeregistry.azurecr.io"}}"#;
    assert_eq!(status(env.post("azure", &[], delete)), 422);
}

// ---- Docker Hub ----

#[test]
fn dockerhub_push_matches_images_and_oci_charts() {
    let env = Env::new();
    let o = env
        .post("dockerhub", &[], &fixture("dockerhub-push.json"))
        .unwrap();
    assert_eq!(refreshed(&o), ["dh-chart", "dh-docker-io-v2", "dh-v2"]);
    let wrong = receiver_path(Provider::DockerHub, PROJECT, "dockerhub", &["x"]);
    assert_eq!(
        status(env.post_to(&wrong, &[], &fixture("dockerhub-push.json"))),
        404
    );
}

// ---- Quay ----

#[test]
fn quay_push_with_several_tags() {
    let env = Env::new();
    let o = env
        .post("quay", &[], &fixture("quay-repo-push.json"))
        .unwrap();
    assert_eq!(refreshed(&o), ["quay-latest", "quay-v1"]);
    let wrong = receiver_path(Provider::Quay, PROJECT, "quay", &["x"]);
    assert_eq!(
        status(env.post_to(&wrong, &[], &fixture("quay-repo-push.json"))),
        404
    );
}

// ---- Harbor ----

#[test]
fn harbor_push_artifact() {
    let env = Env::new();
    let body = fixture("harbor-push-artifact.json");
    let o = env.post_signed("harbor", &[], &body).unwrap();
    assert_eq!(refreshed(&o), ["hb-v3"]);
    assert_eq!(status(env.post("harbor", &[], &body)), 401);
    assert_eq!(
        status(env.post("harbor", &[("Authorization", "Bearer hb-t0kem")], &body)),
        403
    );
    let pull = String::from_utf8(body)
        .unwrap()
        .replace("PUSH_ARTIFACT", "PULL_ARTIFACT");
    assert_eq!(status(env.post_signed("harbor", &[], pull.as_bytes())), 422);
}

// ---- Artifactory ----

#[test]
fn artifactory_pushed_uses_the_repository_key_or_the_virtual_repository() {
    let env = Env::new();
    let body = fixture("artifactory-pushed.json");
    let o = env.post_signed("artifactory", &[], &body).unwrap();
    assert_eq!(refreshed(&o), ["jf-local"]);
    let o = env.post_signed("artifactory-virtual", &[], &body).unwrap();
    assert_eq!(refreshed(&o), ["jf-virtual"]);
    assert_eq!(status(env.post("artifactory", &[], &body)), 401);
    let bad = hmac_hex("jf-s3cre", &body);
    assert_eq!(
        status(env.post("artifactory", &[("X-Jfrog-Event-Auth", &bad)], &body)),
        403
    );
}

// ---- distribution registry ----

#[test]
fn distribution_notifications_refresh_on_tagged_manifest_pushes() {
    let env = Env::new();
    let body = fixture("distribution-events.json");
    let ct = (
        "Content-Type",
        "application/vnd.docker.distribution.events.v1+json",
    );
    let o = env.post_signed("distribution", &[ct], &body).unwrap();
    assert_eq!(refreshed(&o), ["reg-dev"]);
    assert_eq!(o.artifacts.len(), 1);
    assert_eq!(o.artifacts[0].tags, ["1.5.0"]);
    assert_eq!(status(env.post("distribution", &[ct], &body)), 401);
    assert_eq!(
        status(env.post(
            "distribution",
            &[ct, ("Authorization", "Bearer nope")],
            &body
        )),
        403
    );
    // Pulls and blob-only envelopes refresh nothing (and are acknowledged).
    let pulls = String::from_utf8(body)
        .unwrap()
        .replace("\"push\"", "\"pull\"");
    let o = env
        .post_signed("distribution", &[ct], pulls.as_bytes())
        .unwrap();
    assert!(o.warehouses_to_refresh.is_empty());
}

// ---- generic ----

#[test]
fn generic_receiver_refreshes_by_index_and_by_name_and_labels() {
    let env = Env::new();
    let body = fixture("generic-ecr-eventbridge.json");
    let o = env
        .post("generic", &[("X-Event-Source", "aws.ecr")], &body)
        .unwrap();
    assert_eq!(refreshed(&o), ["ecr-payments"]);
    let o = env.post("generic", &[], &body).unwrap();
    assert!(o.warehouses_to_refresh.is_empty());
    let p = format!("{}?team=ops", env.path("generic"));
    let o = env
        .post_to(&p, &[("x-event-source", "aws.ecr")], &body)
        .unwrap();
    assert_eq!(refreshed(&o), ["ecr-payments", "ops-tools"]);
    let wrong = receiver_path(Provider::Generic, PROJECT, "generic", &["x"]);
    assert_eq!(status(env.post_to(&wrong, &[], &body)), 404);
}

#[test]
fn generic_receiver_request_environment() {
    let mut config = project_config();
    let generic = config
        .spec
        .webhook_receivers
        .iter_mut()
        .find(|r| r.name == "generic")
        .and_then(|r| r.generic.as_mut())
        .unwrap();
    generic.actions.truncate(1);
    generic.actions[0].when_expression = "len(request.headers('X-Multi')) == 2 && \
         request.headers('x-multi')[1] == 'b' && request.header('X-None') == '' && \
         request.url startsWith '/webhook/generic/' && request.params('q') == 'a b'"
        .into();
    let router = WebhookRouter::new(PROJECT, &config, &secrets());
    let path = format!(
        "{}?q=a%20b",
        router.routes().find(|r| r.name == "generic").unwrap().path
    );
    let req = WebhookRequest::post(
        path,
        [("X-Multi", "a"), ("x-multi", "b")].map(|(n, v)| (n.to_owned(), v.to_owned())),
        fixture("generic-ecr-eventbridge.json"),
    );
    let o = router.handle(&req, &warehouses()).unwrap();
    assert_eq!(refreshed(&o), ["ecr-payments"]);
}

// ---- robustness ----

/// A receiver, a fixture and the headers its event needs.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// Every provider with a fixture and the headers its event needs.
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
            "gitlab",
            "gitlab-push.json",
            vec![("X-Gitlab-Event", "Push Hook")],
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
        ("distribution", "distribution-events.json", vec![]),
        (
            "generic",
            "generic-ecr-eventbridge.json",
            vec![("X-Event-Source", "aws.ecr")],
        ),
    ]
}

#[test]
fn every_fixture_is_accepted_as_is() {
    let env = Env::new();
    for (receiver, file, headers) in cases() {
        let o = env
            .post_signed(receiver, &headers, &fixture(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!o.warehouses_to_refresh.is_empty(), "{file}");
    }
}

#[test]
fn broken_bodies_get_4xx_and_refresh_nothing() {
    let env = Env::new();
    for (receiver, file, headers) in cases() {
        let body = fixture(file);
        let truncated = &body[..body.len() / 2];
        assert_eq!(
            status(env.post_signed(receiver, &headers, truncated)),
            400,
            "{file} truncated"
        );
        let mut oversized = body.clone();
        oversized.resize(MAX_BODY_BYTES + 1, b' ');
        assert_eq!(
            status(env.post_signed(receiver, &headers, &oversized)),
            413,
            "{file} oversized"
        );
        let mut at_limit = body.clone();
        at_limit.resize(MAX_BODY_BYTES, b' ');
        assert_eq!(
            status(env.post_signed(receiver, &headers, &at_limit)),
            200,
            "{file} at the limit"
        );
        let mut not_utf8 = body.clone();
        let at = not_utf8.iter().position(|b| *b == b'"').unwrap() + 1;
        not_utf8.insert(at, 0xff);
        assert_eq!(
            status(env.post_signed(receiver, &headers, &not_utf8)),
            400,
            "{file} not UTF-8"
        );
        for malformed in [
            &b"{\"ref\": }"[..],
            b"",
            b"null",
            b"[1,2]",
            b"\"text\"",
            b"{}",
        ] {
            let s = status(env.post_signed(receiver, &headers, malformed));
            assert!(
                (400..500).contains(&s) || (s == 200 && receiver == "generic"),
                "{file} {:?}: {s}",
                String::from_utf8_lossy(malformed)
            );
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so the fuzz loop needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..=rng.below(4) {
        let len = b.len();
        match rng.below(6) {
            0 => {
                let i = rng.below(len);
                if i < len {
                    b[i] = u8::try_from(rng.next() & 0xff).unwrap();
                }
            }
            1 => b.truncate(rng.below(len)),
            2 => {
                let i = rng.below(len + 1);
                let junk = [
                    b"{" as &[u8],
                    b"}",
                    b"\"",
                    b"null",
                    b"[",
                    b"\\u00",
                    b"\xc3",
                    b",",
                ];
                let j = junk[rng.below(junk.len())];
                b.splice(i.min(len)..i.min(len), j.iter().copied());
            }
            3 => {
                let i = rng.below(len);
                let j = rng.below(len);
                let (lo, hi) = (i.min(j), i.max(j));
                b.drain(lo..hi);
            }
            4 => {
                // Swap one string value for a number: shapes change, syntax stays.
                let text = String::from_utf8_lossy(&b).into_owned();
                if let Some(pos) = text.find(": \"") {
                    let end = text[pos + 3..]
                        .find('"')
                        .map_or(text.len(), |e| pos + 3 + e + 1);
                    b = format!("{}: 42{}", &text[..pos], &text[end..]).into_bytes();
                }
            }
            _ => {
                let i = rng.below(len);
                let j = rng.below(len);
                let (lo, hi) = (i.min(j), i.max(j));
                let chunk: Vec<u8> = b[lo..hi].to_vec();
                b.splice(lo..lo, chunk);
            }
        }
    }
    b
}

#[test]
fn fuzzed_fixtures_never_panic_and_get_4xx_or_a_valid_outcome() {
    let env = Env::new();
    let all: Vec<String> = warehouses().into_iter().map(|w| w.metadata.name).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (receiver, file, headers) in cases() {
        let body = fixture(file);
        for _ in 0..300 {
            let m = mutate(&mut rng, &body);
            match env.post_signed(receiver, &headers, &m) {
                Ok(o) => {
                    assert!(
                        o.warehouses_to_refresh.iter().all(|w| all.contains(w)),
                        "{file}"
                    );
                }
                Err(e) => assert!(
                    (400..500).contains(&e.status()),
                    "{file}: {e} ({})",
                    e.status()
                ),
            }
            // Unsigned or badly signed mutations never get past authentication.
            if !matches!(receiver, "azure" | "dockerhub" | "quay" | "generic") {
                let s = status(env.post(receiver, &headers, &m));
                assert!(s == 401, "{file}: unsigned gave {s}");
            }
        }
    }
}

// ---- cluster-wide receivers (ClusterConfig) ----

/// A ClusterConfig's receiver, loaded from a manifest as Kargo users write it: its path is
/// Kargo's hash without a project, and a signed push refreshes the same Warehouses of the
/// Project as the Project's own GitHub receiver does.
#[test]
fn cluster_config_receivers_refresh_the_projects_warehouses() {
    let set = kargo_core::loader::ManifestSet::from_yaml_str(
        "cluster.yaml",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: ClusterConfig\nmetadata: {name: cluster}\nspec:\n  webhookReceivers:\n  - name: org-github\n    github:\n      secretRef: {name: org-github-secret}\n",
    )
    .unwrap();
    let cluster = set.cluster_config().expect("the ClusterConfig");
    let mut s = secrets();
    s.insert(
        "org-github-secret".into(),
        BTreeMap::from([("secret".into(), "org-s3cret".into())]),
    );
    let env = Env::new();
    let router = WebhookRouter::new(PROJECT, &project_config(), &s)
        .with_cluster_receivers(&cluster.spec.webhook_receivers, &s);
    let route = router
        .routes()
        .find(|r| r.name == "org-github")
        .expect("routed")
        .path
        .clone();
    assert_eq!(
        route,
        receiver_path(Provider::GitHub, "", "org-github", &["org-s3cret"])
    );
    assert_ne!(
        route,
        receiver_path(Provider::GitHub, PROJECT, "org-github", &["org-s3cret"])
    );
    let body = fixture("github-push.json");
    let req = WebhookRequest::post(
        &route,
        [
            ("X-GitHub-Event".to_owned(), "push".to_owned()),
            (
                "X-Hub-Signature-256".to_owned(),
                format!("sha256={}", hmac_hex("org-s3cret", &body)),
            ),
        ],
        body.clone(),
    );
    let o = router.handle(&req, &env.warehouses).unwrap();
    assert_eq!(o.receiver, "org-github");
    assert_eq!(refreshed(&o), ["gh-main", "gh-paths-dev", "gh-ssh-main"]);
    // Signed with the project receiver's secret instead: refused.
    let req = WebhookRequest::post(
        &route,
        [
            ("X-GitHub-Event".to_owned(), "push".to_owned()),
            (
                "X-Hub-Signature-256".to_owned(),
                format!("sha256={}", hmac_hex("gh-s3cret", &body)),
            ),
        ],
        body.clone(),
    );
    assert_eq!(status(router.handle(&req, &env.warehouses)), 403);
}

// ---- pull requests merged or closed: promotions waiting on them are woken ----

fn pr_event(o: &WebhookOutcome) -> (Vec<&str>, i64, bool) {
    assert_eq!(o.pull_requests.len(), 1, "{o:?}");
    let p = &o.pull_requests[0];
    (
        p.repo_urls.iter().map(String::as_str).collect(),
        p.number,
        p.merged,
    )
}

impl Env {
    /// Posts `body` to `receiver` with valid credentials and the event header `event`.
    fn post_event(
        &self,
        receiver: &str,
        event: (&str, &str),
        body: &Value,
    ) -> Result<WebhookOutcome, WebhookError> {
        self.post_signed(receiver, &[event], body.to_string().as_bytes())
    }
}

#[test]
fn pull_request_events_name_the_pull_request_and_refresh_no_warehouse() {
    let env = Env::new();
    let repo = json!({"html_url": "https://github.com/acme/gitops",
        "clone_url": "https://github.com/acme/gitops.git", "ssh_url": "git@github.com:acme/gitops.git"});
    let github = ("X-GitHub-Event", "pull_request");

    // GitHub: closed and merged.
    let body = json!({"action": "closed", "number": 42, "repository": repo,
        "pull_request": {"number": 42, "merged": true}});
    let o = env.post_event("github", github, &body).unwrap();
    assert_eq!(o.event, "pull_request:closed");
    assert!(o.warehouses_to_refresh.is_empty());
    let (urls, number, merged) = pr_event(&o);
    assert!(urls.contains(&"https://github.com/acme/gitops"), "{urls:?}");
    assert_eq!((number, merged), (42, true));
    assert_eq!(
        o.wake_keys()[0],
        kargo_core::runner::pull_request_wake_key("https://github.com/acme/gitops.git", 42)
    );
    // Opened: nothing to wake.
    let body = json!({"action": "opened", "number": 43, "repository": repo});
    let o = env.post_event("github", github, &body).unwrap();
    assert!(o.pull_requests.is_empty() && o.warehouses_to_refresh.is_empty());
    // Closed without a number: a bad request.
    let body = json!({"action": "closed", "repository": repo});
    assert_eq!(status(env.post_event("github", github, &body)), 400);

    // Gitea: closed without merging.
    let body = json!({"action": "closed", "number": 7,
        "pull_request": {"number": 7, "merged": false},
        "repository": {"html_url": "https://gitea.example.com/acme/infra"}});
    let o = env
        .post_event("gitea", ("X-Gitea-Event", "pull_request"), &body)
        .unwrap();
    assert_eq!(
        pr_event(&o),
        (vec!["https://gitea.example.com/acme/infra"], 7, false)
    );

    // GitLab: a merge request merged.
    let body = json!({"object_kind": "merge_request",
        "project": {"web_url": "https://gitlab.example.com/mike/diaspora"},
        "object_attributes": {"iid": 3, "action": "merge"}});
    let o = env
        .post_event("gitlab", ("X-Gitlab-Event", "Merge Request Hook"), &body)
        .unwrap();
    assert_eq!(o.event, "Merge Request Hook:merge");
    assert_eq!(
        pr_event(&o),
        (vec!["https://gitlab.example.com/mike/diaspora"], 3, true)
    );

    // Bitbucket: fulfilled (merged) and rejected (declined).
    let body = json!({"pullrequest": {"id": 9},
        "repository": {"full_name": "acme/deploy",
            "links": {"html": {"href": "https://bitbucket.org/acme/deploy"}}}});
    for (key, merged) in [
        ("pullrequest:fulfilled", true),
        ("pullrequest:rejected", false),
    ] {
        let o = env
            .post_event("bitbucket", ("X-Event-Key", key), &body)
            .unwrap();
        let (urls, number, m) = pr_event(&o);
        assert!(
            urls.contains(&"https://bitbucket.org/acme/deploy"),
            "{urls:?}"
        );
        assert_eq!((number, m), (9, merged));
    }

    // Azure DevOps: completed; an update that leaves it active wakes nothing.
    let pr = |status: &str| {
        json!({"eventType": "git.pullrequest.updated", "resource": {
            "pullRequestId": 11, "status": status,
            "repository": {"remoteUrl": "https://dev.azure.com/acme/proj/_git/gitops"}}})
        .to_string()
    };
    let o = env
        .post_signed("azure", &[], pr("completed").as_bytes())
        .unwrap();
    assert_eq!(pr_event(&o).1, 11);
    assert!(pr_event(&o).2);
    let o = env
        .post_signed("azure", &[], pr("active").as_bytes())
        .unwrap();
    assert!(o.pull_requests.is_empty());
}
