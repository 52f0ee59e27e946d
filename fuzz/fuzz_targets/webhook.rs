//! Every webhook receiver (kargo-sources/src/webhook/): github, gitlab, gitea, bitbucket,
//! azure, dockerhub, quay, harbor, artifactory (plain and virtual), distribution, generic.
//!
//! Input: an HTTP-like text. The first line names the receiver (an unknown name picks one
//! by its first byte), then `Name: value` header lines (a line starting with `?` is the
//! query string), an empty line, and the body. The harness signs the body with the
//! receiver's secret the way the provider does (HMAC header, token or Authorization
//! header, or the secret path), so every input reaches the provider's payload parser.
//! Checks: nothing panics; an error has an HTTP status of 4xx/5xx; a success names the
//! right receiver and provider and refreshes only Warehouses that exist.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hmac::{Hmac, KeyInit, Mac};
use kargo_core::model::{ProjectConfig, Warehouse};
use kargo_sources::webhook::{WebhookRequest, WebhookRouter};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sha2::Sha256;

const PROJECT: &str = "demo";

/// (receiver name, type, Secret key, secret value).
const RECEIVERS: [(&str, &str, &str, &str); 12] = [
    ("github", "github", "secret", "gh-s3cret"),
    ("gitlab", "gitlab", "secret-token", "gl-t0ken"),
    ("gitea", "gitea", "secret", "gt-s3cret"),
    ("bitbucket", "bitbucket", "secret", "bb-s3cret"),
    ("azure", "azure", "secret", "az-s3cret"),
    ("dockerhub", "dockerhub", "secret", "dh-s3cret"),
    ("quay", "quay", "secret", "qy-s3cret"),
    ("harbor", "harbor", "auth-header", "Bearer hb-t0ken"),
    ("artifactory", "artifactory", "secret-token", "jf-s3cret"),
    (
        "artifactory-virtual",
        "artifactory",
        "secret-token",
        "jfv-s3cret",
    ),
    (
        "distribution",
        "distribution",
        "auth-header",
        "Bearer reg-t0ken",
    ),
    ("generic", "generic", "secret", "gen-s3cret"),
];

struct Env {
    router: WebhookRouter,
    warehouses: Vec<Warehouse>,
    paths: Vec<String>,
}

fn warehouse(name: &str, labels: Value, sub: Value) -> Warehouse {
    serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": name, "namespace": PROJECT, "labels": labels},
        "spec": {"subscriptions": [sub]},
    }))
    .expect("fixture Warehouse")
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut receivers = Vec::new();
        for (name, ty, key, value) in RECEIVERS {
            let secret = format!("{name}-secret");
            secrets.insert(secret.clone(), BTreeMap::from([(key.into(), value.into())]));
            let mut cfg = json!({"secretRef": {"name": secret}});
            if name == "artifactory-virtual" {
                cfg["virtualRepoName"] = json!("docker");
            }
            if ty == "generic" {
                cfg["actions"] = json!([
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
                            "name": "${{ 'ops-' + request.header('X-Suffix') }}",
                            "labelSelector": {"matchLabels": {"team": "ops"}}
                        }]
                    }
                ]);
            }
            receivers.push(json!({"name": name, ty: cfg}));
        }
        let config: ProjectConfig = serde_json::from_value(json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "ProjectConfig",
            "metadata": {"name": PROJECT, "namespace": PROJECT},
            "spec": {"webhookReceivers": receivers},
        }))
        .expect("fixture ProjectConfig");
        let git = |url: &str, extra: Value| {
            let mut g = json!({"repoURL": url});
            if let (Some(g), Some(e)) = (g.as_object_mut(), extra.as_object()) {
                g.extend(e.clone());
            }
            json!({"git": g})
        };
        let image = |url: &str, extra: Value| {
            let mut g = json!({"repoURL": url});
            if let (Some(g), Some(e)) = (g.as_object_mut(), extra.as_object()) {
                g.extend(e.clone());
            }
            json!({"image": g})
        };
        let none = json!({});
        let warehouses = vec![
            warehouse("gh-main", none.clone(), git("https://github.com/acme/app.git", json!({}))),
            warehouse("gh-paths", none.clone(), git("https://github.com/acme/app.git", json!({"branch": "main", "includePaths": ["env/dev"], "excludePaths": ["glob:**/*.md", "regex:^docs"]}))),
            warehouse("gh-tags", none.clone(), git("https://github.com/acme/app.git", json!({"commitSelectionStrategy": "SemVer", "semverConstraint": "^1"}))),
            warehouse("gh-lexical", none.clone(), git("git@github.com:acme/app.git", json!({"commitSelectionStrategy": "Lexical", "allowTagsRegexes": ["-rc"]}))),
            warehouse("ghcr", none.clone(), image("ghcr.io/acme/app", json!({"constraint": "^1"}))),
            warehouse("ghcr-digest", none.clone(), image("ghcr.io/acme/app", json!({"imageSelectionStrategy": "Digest", "constraint": "latest"}))),
            warehouse("ghcr-lexical", none.clone(), image("ghcr.io/acme/app", json!({"imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["^1\\."]}))),
            warehouse("chart", none.clone(), json!({"chart": {"repoURL": "oci://ghcr.io/acme/charts/app", "semverConstraint": "^0.3"}})),
            warehouse("gl", none.clone(), git("https://gitlab.example.com/mike/diaspora.git", json!({"branch": "release"}))),
            warehouse("gl-tags", none.clone(), git("https://gitlab.example.com/jsmith/example", json!({"commitSelectionStrategy": "SemVer"}))),
            warehouse("gitea", none.clone(), git("https://gitea.example.com/acme/infra.git", json!({"includePaths": ["apps/"]}))),
            warehouse("bb", none.clone(), git("https://bitbucket.org/acme/deploy.git", json!({"commitSelectionStrategy": "NewestTag"}))),
            warehouse("acr", none.clone(), image("acmeregistry.azurecr.io/team/api", json!({"constraint": "^2"}))),
            warehouse("ado", none.clone(), git("https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection/_git/Fabrikam-Fiber-Git", json!({"branch": "dev"}))),
            warehouse("dh", none.clone(), image("acme/web", json!({"constraint": "^2"}))),
            warehouse("dh-chart", none.clone(), json!({"chart": {"repoURL": "oci://registry-1.docker.io/acme/web"}})),
            warehouse("quay", none.clone(), image("quay.io/acme/worker", json!({"imageSelectionStrategy": "Digest", "constraint": "stable"}))),
            warehouse("harbor", none.clone(), image("harbor.example.com/platform/gateway", json!({"constraint": "^3", "strictSemvers": true}))),
            warehouse("jf", none.clone(), image("acme.jfrog.io/docker-local/billing/api", json!({}))),
            warehouse("jf-virtual", none.clone(), image("acme.jfrog.io/docker/billing/api", json!({}))),
            warehouse("reg", none.clone(), image("localhost:5000/team/dev-app", json!({"constraint": ">=2.0.0-0 <3"}))),
            warehouse("ecr", none.clone(), image("123456789012.dkr.ecr.us-east-1.amazonaws.com/payments", json!({}))),
            warehouse("ops-tools", json!({"team": "ops"}), image("ghcr.io/acme/ops-tools", json!({}))),
        ];
        let router = WebhookRouter::new(PROJECT, &config, &secrets);
        let paths = RECEIVERS
            .iter()
            .map(|(name, ..)| {
                router
                    .routes()
                    .find(|r| r.name == *name)
                    .map(|r| r.path.clone())
                    .expect("every receiver is routed")
            })
            .collect();
        Env {
            router,
            warehouses,
            paths,
        }
    })
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let env = env();
    // The head (receiver line and headers) must be text; the body may be any bytes.
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or((data, &[][..]), |i| (&data[..i], &data[i + 2..]));
    let (head, body) = split;
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let which = RECEIVERS
        .iter()
        .position(|(name, ..)| *name == first.trim())
        .unwrap_or_else(|| usize::from(first.bytes().next().unwrap_or(0)) % RECEIVERS.len());
    let (name, ty, _, secret) = RECEIVERS[which];
    // The credentials come first: `Headers::get` reads the first value, so a fuzzed header
    // of the same name cannot replace them.
    let mut headers: Vec<(String, String)> = Vec::new();
    match ty {
        "github" => headers.push((
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_hex(secret, body)),
        )),
        "bitbucket" => headers.push((
            "X-Hub-Signature".into(),
            format!("sha256={}", hmac_hex(secret, body)),
        )),
        "gitea" => headers.push(("X-Gitea-Signature".into(), hmac_hex(secret, body))),
        "artifactory" => headers.push(("X-JFrog-Event-Auth".into(), hmac_hex(secret, body))),
        "gitlab" => headers.push(("X-Gitlab-Token".into(), secret.into())),
        "harbor" | "distribution" => headers.push(("Authorization".into(), secret.into())),
        _ => {}
    }
    let mut query = String::new();
    for line in lines {
        if let Some(q) = line.strip_prefix('?') {
            query = q.to_owned();
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut path = env.paths[which].clone();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    let req = WebhookRequest::post(path, headers, body);
    match env.router.handle(&req, &env.warehouses) {
        Ok(outcome) => {
            assert_eq!(outcome.receiver, name);
            assert_eq!(outcome.provider.as_str(), ty);
            for w in &outcome.warehouses_to_refresh {
                assert!(
                    env.warehouses.iter().any(|x| &x.metadata.name == w),
                    "refreshes an unknown Warehouse {w:?}"
                );
            }
        }
        Err(e) => {
            let status = e.status();
            assert!((400..600).contains(&status), "status {status} for {e}");
            assert!(
                status != 401 && status != 403 && status != 404,
                "a signed request to {name} was rejected: {e}"
            );
            let _ = e.to_string();
        }
    }
});
