//! A pull-request webhook wakes the promotion waiting on that pull request in
//! `git-wait-for-pr`, as Kargo 1.11 refreshes such Promotions: the service auto-promotes
//! into a Stage whose template waits on pull request #1 of an in-process GitHub fake with a
//! one-hour poll interval; the PR is merged in the fake and a signed `pull_request`
//! (`closed`, merged) webhook is posted to the server; the promotion completes at once,
//! without waiting for its poll interval.
#![cfg(all(feature = "server", feature = "pull-requests"))]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

#[path = "../kargo-steps/tests/support/fake_forge.rs"]
mod fake_forge;
#[path = "../kargo-steps/tests/support/fake_http.rs"]
mod fake_http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_forge::{Flavor, Forge};
use fake_http::{Req, serve};
use hmac::{KeyInit, Mac};
use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::{PromotionPhase, Runner};
use kargo::core::secret::{CredentialKind, StaticCredentials};
use kargo::core::source::SourceRegistry;
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use kargo::steps::git::PullRequestOptions;
use kargo::steps::{BuiltinOptions, register_builtins_with};
use serde_json::json;
use tempfile::TempDir;

const REPO_URL: &str = "https://github.com/acme/gitops.git";
const WEBHOOK_SECRET: &str = "gh-wh-s3cret";

fn manifests() -> String {
    format!(
        r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {{name: demo}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {{name: demo, namespace: demo}}
spec:
  promotionPolicies:
  - stageSelector: {{name: prod}}
    autoPromotionEnabled: true
  webhookReceivers:
  - name: github
    github: {{secretRef: {{name: github-webhook}}}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {{name: app, namespace: demo}}
spec:
  interval: 24h
  subscriptions:
  - image: {{repoURL: ghcr.io/acme/app}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: demo}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: git-wait-for-pr
        as: wait-for-pr
        config:
          repoURL: {REPO_URL}
          provider: github
          prNumber: 1
          pollInterval: 1h
"#
    )
}

fn signature(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_pull_request_webhook_wakes_the_waiting_promotion() {
    // The GitHub fake with an open pull request #1 (no git behind it: the wait only reads
    // the pull request).
    let bare = TempDir::new().unwrap();
    let forge = Forge::new(
        Flavor::GitHub,
        bare.path().to_path_buf(),
        "acme",
        "gitops",
        "kargo",
        "gh-t0ken",
    );
    forge.add_pr("kargo/promotion/prod", "main", "open");
    let f = forge.clone();
    let api = serve(Arc::new(move |r: &Req| f.handle(r))).await;
    let api_url = format!("{}{}", api.url, Flavor::GitHub.api_prefix());

    let set = ManifestSet::from_yaml_str("demo.yaml", &manifests()).unwrap();
    let memory = MemorySource::new();
    memory.set_images("ghcr.io/acme/app", vec![image("1.0.0", "sha256:a")]);
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let cache = TempDir::new().unwrap();
    let mut steps = kargo::core::step::StepRegistry::new();
    register_builtins_with(
        &mut steps,
        &BuiltinOptions::with_git(kargo::git::GitConfig::new(cache.path())).pull_requests({
            let mut o = PullRequestOptions::default();
            o.api_urls = vec![(REPO_URL.to_owned(), api_url)];
            o
        }),
    )
    .unwrap();
    let work = TempDir::new().unwrap();
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_work_root(work.path())
    .with_credentials(Arc::new(StaticCredentials::new().with(
        CredentialKind::Git,
        REPO_URL,
        "kargo",
        "gh-t0ken",
    )));
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([(
        "github-webhook".to_owned(),
        BTreeMap::from([("secret".to_owned(), WEBHOOK_SECRET.to_owned())]),
    )]);
    let config = controller
        .manifests()
        .project_config("demo")
        .unwrap()
        .clone();
    let webhooks = WebhookRouter::new("demo", &config, &secrets);
    let hook_path = webhooks.routes().next().unwrap().path.clone();

    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let app = router(handle.clone(), webhooks, ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));

    // The first pass auto-promotes; the wait step reads the open pull request once and
    // then waits (for an hour, unless woken).
    let pr_reads = || {
        api.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/pulls/1"))
            .count()
    };
    let polled = async {
        while pr_reads() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), polled)
        .await
        .expect("git-wait-for-pr never read the pull request");

    // The reviewer merges; GitHub posts the signed webhook.
    {
        let mut prs = forge.prs.lock().unwrap();
        prs[0].state = "merged".into();
        prs[0].merge_commit = Some("f00d".repeat(10));
    }
    let body = json!({
        "action": "closed",
        "number": 1,
        "pull_request": {"number": 1, "merged": true},
        "repository": {
            "html_url": "https://github.com/acme/gitops",
            "clone_url": REPO_URL,
            "ssh_url": "git@github.com:acme/gitops.git",
        },
    })
    .to_string();
    let signature = signature(body.as_bytes());
    let path = hook_path.clone();
    let (status, answer) = tokio::task::spawn_blocking(move || {
        support::http_request(
            addr,
            "POST",
            &path,
            &[
                ("X-GitHub-Event", "pull_request"),
                ("X-Hub-Signature-256", &signature),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["pullRequests"][0]["number"], json!(1), "{answer}");
    assert_eq!(answer["wokePromotions"], json!(true), "{answer}");

    // The promotion completes now, not in an hour: the first pass (which runs it) ends.
    tokio::time::timeout(Duration::from_secs(30), handle.wait_for_passes(1))
        .await
        .expect("the promotion was not woken by the webhook");
    let state = controller.state().await.unwrap();
    let last = state.stages["prod"]
        .last_promotion
        .as_ref()
        .expect("no promotion finished");
    assert_eq!(last.phase, PromotionPhase::Succeeded, "{last:?}");
    assert_eq!(pr_reads(), 2, "one read before the wake, one after");

    let _ = stop.send(());
    task.await.unwrap();
}
