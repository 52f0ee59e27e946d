//! The REST API's reads (`kargo::server::api`) over a running `Service`: Kargo-shaped
//! paths, bearer tokens with roles scoped by Project (401 without a known token, 403
//! without the viewer role), 404 naming what is missing, 400 naming a bad parameter,
//! pages that together list everything once.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use serde_json::Value as Json;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  interval: 24h
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
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
      - uses: compose-output
        config: {tag: "${{ imageFrom('ghcr.io/acme/app').Tag }}"}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {stages: [dev]}
  promotionTemplate:
    spec:
      steps:
      - uses: compose-output
        config: {tag: "${{ imageFrom('ghcr.io/acme/app').Tag }}"}
"#;

/// Runs `controller`'s service behind the router with the API on, until the returned
/// sender is dropped; answers after the first pass.
async fn serve(
    controller: &Controller,
    access: AccessTable,
) -> (
    std::net::SocketAddr,
    kargo::service::ServiceHandle,
    tokio::sync::oneshot::Sender<()>,
) {
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let app = router(
        handle.clone(),
        WebhookRouter::from_receivers("demo", &[], &secrets),
        ServerOptions::default().with_access(access),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    handle.wait_until_sleeping(1).await;
    (addr, handle, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_with_tokens_roles_pages_and_errors() {
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    let memory = MemorySource::new();
    memory.set_images(
        "ghcr.io/acme/app",
        (1..=5)
            .map(|i| image(&format!("1.0.{i}"), &format!("sha256:{i:064}")))
            .collect(),
    );
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let tokens = format!(
        "tokens:\n\
         - {{name: vera, sha256: {}, roles: [{{role: viewer, projects: [demo]}}]}}\n\
         - {{name: olaf, sha256: {}, roles: [{{role: admin, projects: [other]}}]}}\n",
        hash_token("vera-t0ken"),
        hash_token("olaf-t0ken"),
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let (addr, handle, _stop) = serve(&controller, access).await;
    // Three more builds, one refresh each: four Freight to page through.
    for (pass, i) in (6..=8).enumerate() {
        memory.push_image(
            "ghcr.io/acme/app",
            image(&format!("1.0.{i}"), &format!("sha256:{i:064}")),
        );
        assert!(handle.refresh("app", "test"));
        handle.wait_until_sleeping(pass as u64 + 2).await;
    }
    let freight_count = controller.state().await.unwrap().freight.len();
    assert_eq!(freight_count, 4, "one Freight per refresh");

    let get = |path: String, token: Option<&'static str>| {
        tokio::task::spawn_blocking(move || {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            let (status, body) = support::http_request(addr, "GET", &path, &headers, "");
            let json: Json = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
            (status, json)
        })
    };
    let vera = Some("vera-t0ken");

    // Tokens: none, unknown, and a role on another Project only.
    let (status, body) = get("/v1beta1/projects/demo/stages".into(), None)
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, _) = get("/v1beta1/projects/demo/stages".into(), Some("nope"))
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, body) = get("/v1beta1/projects/demo/stages".into(), Some("olaf-t0ken"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("olaf"), "{body}");
    let (_, body) = get("/v1beta1/projects".into(), Some("olaf-t0ken"))
        .await
        .unwrap();
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        0,
        "olaf sees no project"
    );

    // Reads.
    let (status, body) = get("/v1beta1/projects".into(), vera).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["name"], "demo");
    assert_eq!(body["items"][0]["stages"], 2);
    let (status, body) = get("/v1beta1/projects/demo/stages".into(), vera)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "prod"]);
    let (status, body) = get("/v1beta1/projects/demo/stages/prod".into(), vera)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body["spec"]["requestedFreight"][0]["sources"]["stages"][0],
        "dev"
    );
    let (status, body) = get("/v1beta1/projects/demo/warehouses/app".into(), vera)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body["spec"]["subscriptions"][0]["image"]["repoURL"],
        "ghcr.io/acme/app"
    );
    let (status, body) = get("/v1beta1/projects/demo/stages/dev/promotions".into(), vera)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 0);

    // Freight pages of 1: every Freight once, newest first, then no continue token.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(token) => format!("/v1beta1/projects/demo/freight?limit=1&continue={token}"),
            None => "/v1beta1/projects/demo/freight?limit=1".to_owned(),
        };
        let (status, body) = get(path, vera).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        seen.push(items[0]["freight"]["name"].as_str().unwrap().to_owned());
        match body["continue"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), freight_count);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), freight_count, "no Freight twice: {seen:?}");
    let (status, body) = get(format!("/v1beta1/projects/demo/freight/{}", seen[0]), vera)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["freight"]["name"], seen[0].as_str());

    // Errors name what is wrong.
    for (path, wanted_status, wanted) in [
        ("/v1beta1/projects/nope/stages", 404, "project \"nope\""),
        ("/v1beta1/projects/demo/stages/qa", 404, "stage \"qa\""),
        (
            "/v1beta1/projects/demo/stages/qa/promotions",
            404,
            "stage \"qa\"",
        ),
        (
            "/v1beta1/projects/demo/warehouses/x",
            404,
            "warehouse \"x\"",
        ),
        ("/v1beta1/projects/demo/freight/abc", 404, "freight \"abc\""),
        ("/v1beta1/projects/demo/freight?limit=0", 400, "limit"),
        ("/v1beta1/projects/demo/freight?limit=x", 400, "limit"),
        ("/v1beta1/projects/demo/stages?continue=zz", 400, "continue"),
        ("/v1beta1/projects/demo/stages?limit=%FF", 400, "limit"),
        // A path segment that is not UTF-8: JSON like every other error, naming it.
        ("/v1beta1/projects/%FF/stages", 400, "project"),
        ("/v1beta1/projects/demo/stages/%FF", 400, "stage"),
    ] {
        let (status, body) = get(path.into(), vera).await.unwrap();
        assert_eq!(status, wanted_status, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(wanted),
            "{path}: {body}"
        );
    }
}

/// Query values are percent-decoded as browsers write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_values_are_decoded() {
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        SourceRegistry::new(),
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let tokens = format!(
        "tokens: [{{name: vera, sha256: {}, roles: [{{role: viewer}}]}}]\n",
        hash_token("vera-t0ken")
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let (addr, _handle, _stop) = serve(&controller, access).await;
    let (status, body) = tokio::task::spawn_blocking(move || {
        support::http_request(
            addr,
            "GET",
            "/v1beta1/projects/demo/stages?limit=%31",
            &[("Authorization", "Bearer vera-t0ken")],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "limit=%31 is 1");
    assert_eq!(body["continue"], "1");
}

/// Without an access table the API is not served at all.
#[tokio::test]
async fn no_access_table_no_api() {
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        SourceRegistry::new(),
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(controller, ServiceOptions::default());
    let app = router(
        service.handle(),
        WebhookRouter::from_receivers("demo", &[], &secrets),
        ServerOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, _) = tokio::task::spawn_blocking(move || {
        support::http_request(addr, "GET", "/v1beta1/projects", &[], "")
    })
    .await
    .unwrap();
    assert_eq!(status, 404);
}

/// Polls the state until `done` holds (the running service works in the background).
async fn until(
    controller: &Controller,
    what: &str,
    done: impl Fn(&kargo::core::pipeline::ProjectState) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if done(&controller.state().await.unwrap()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The demo project on the memory source (one image, `1.0.1`) with the built-in steps.
fn demo_controller(manifests: &str) -> (Controller, MemorySource, tempfile::TempDir) {
    let set = ManifestSet::from_yaml_str("demo.yaml", manifests).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut steps = StepRegistry::new();
    kargo::steps::register_builtins(&mut steps, cache.path()).unwrap();
    let memory = MemorySource::new();
    memory.set_images("ghcr.io/acme/app", vec![image("1.0.1", "sha256:1")]);
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    (controller, memory, cache)
}

/// POSTs `body` (JSON) to `path` with a bearer `token`; the status and the JSON answer.
fn post_json(
    addr: std::net::SocketAddr,
    path: String,
    token: &'static str,
    body: String,
) -> tokio::task::JoinHandle<(u16, Json)> {
    tokio::task::spawn_blocking(move || {
        let auth = format!("Bearer {token}");
        let (status, body) = support::http_request(
            addr,
            "POST",
            &path,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &body,
        );
        let json: Json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        (status, json)
    })
}

/// The actions through the same library calls as the CLI: the caller's name is the
/// actor; a promoter of `dev` cannot promote `prod`; the pipeline's rules answer 409
/// naming the rule; malformed bodies answer 400 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_check_roles_and_rules() {
    let (controller, memory, _cache) = demo_controller(MANIFESTS);
    let tokens = format!(
        "tokens:\n\
         - {{name: vera, sha256: {}, roles: [{{role: viewer}}]}}\n\
         - {{name: pete, sha256: {}, roles: [{{role: promoter, stages: [dev]}}, {{role: viewer}}]}}\n\
         - {{name: ada, sha256: {}, roles: [{{role: admin, projects: [demo]}}]}}\n",
        hash_token("vera-t0ken"),
        hash_token("pete-t0ken"),
        hash_token("ada-t0ken"),
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let (addr, handle, _stop) = serve(&controller, access).await;
    let first = controller
        .state()
        .await
        .unwrap()
        .freight
        .keys()
        .next()
        .unwrap()
        .to_string();
    memory.push_image("ghcr.io/acme/app", image("1.0.2", "sha256:2"));
    assert!(handle.refresh("app", "test"));
    handle.wait_until_sleeping(2).await;
    let second = controller
        .state()
        .await
        .unwrap()
        .freight
        .keys()
        .map(ToString::to_string)
        .find(|f| *f != first)
        .unwrap();

    let post = |path: String, token: &'static str, body: String| post_json(addr, path, token, body);
    let promote = |stage: &str, freight: &str| {
        (
            format!("/v1beta1/projects/demo/stages/{stage}/promotions"),
            format!("{{\"freight\": \"{freight}\"}}"),
        )
    };

    // pete promotes dev; the service runs it; he is the actor.
    let (path, body) = promote("dev", &first);
    let (status, answer) = post(path, "pete-t0ken", body).await.unwrap();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["actor"], "pete");
    let name = answer["promotion"].as_str().unwrap().to_owned();
    until(&controller, "dev's promotion", |s| {
        s.promotions.iter().any(|p| p.name == name)
    })
    .await;
    let state = controller.state().await.unwrap();
    let record = state.promotions.iter().find(|p| p.name == name).unwrap();
    assert_eq!(record.actor.as_deref(), Some("pete"));

    // pete may not promote prod; vera may not promote at all.
    let (path, body) = promote("prod", &first);
    let (status, answer) = post(path.clone(), "pete-t0ken", body.clone())
        .await
        .unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("Stage \"prod\""),
        "{answer}"
    );
    let (status, _) = post(path, "vera-t0ken", body).await.unwrap();
    assert_eq!(status, 403);

    // The rules: the second Freight never went through dev, so prod may not have it.
    let (path, body) = promote("prod", &second);
    let (status, answer) = post(path, "ada-t0ken", body).await.unwrap();
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("not available"),
        "{answer}"
    );

    // Approved for prod by ada, it may.
    let (status, answer) = post(
        format!("/v1beta1/projects/demo/freight/{second}/approve"),
        "ada-t0ken",
        "{\"stage\": \"prod\"}".into(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let (path, body) = promote("prod", &second);
    let (status, answer) = post(path, "ada-t0ken", body).await.unwrap();
    assert_eq!(status, 202, "{answer}");

    // dev gets the second Freight, then pete rolls it back to the first.
    let (path, body) = promote("dev", &second);
    let (status, answer) = post(path, "pete-t0ken", body).await.unwrap();
    assert_eq!(status, 202, "{answer}");
    let name = answer["promotion"].as_str().unwrap().to_owned();
    until(&controller, "dev's second promotion", |s| {
        s.promotions.iter().any(|p| p.name == name)
    })
    .await;
    let (status, answer) = post(
        "/v1beta1/projects/demo/stages/dev/rollback".into(),
        "pete-t0ken",
        String::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["freight"],
        first.as_str(),
        "back to the first Freight"
    );

    // Refresh: promoters may, viewers may not.
    let (status, answer) = post(
        "/v1beta1/projects/demo/warehouses/app/refresh".into(),
        "pete-t0ken",
        String::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    let (status, _) = post(
        "/v1beta1/projects/demo/warehouses/app/refresh".into(),
        "vera-t0ken",
        String::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 403);

    // Bad input names what is wrong.
    for (path, token, body, wanted_status, wanted) in [
        (
            "/v1beta1/projects/demo/stages/dev/promotions",
            "pete-t0ken",
            "{",
            400,
            "not JSON",
        ),
        (
            "/v1beta1/projects/demo/stages/dev/promotions",
            "pete-t0ken",
            "{}",
            400,
            "freight: required",
        ),
        (
            "/v1beta1/projects/demo/stages/dev/promotions",
            "pete-t0ken",
            "{\"freight\": 3}",
            400,
            "freight: expected a string",
        ),
        (
            "/v1beta1/projects/demo/stages/dev/promotions",
            "pete-t0ken",
            "{\"freight\": \"zzz\"}",
            404,
            "unknown Freight",
        ),
        (
            "/v1beta1/projects/demo/stages/qa/promotions",
            "ada-t0ken",
            "{\"freight\": \"zzz\"}",
            404,
            "unknown Stage",
        ),
        (
            "/v1beta1/projects/demo/warehouses/nope/refresh",
            "ada-t0ken",
            "",
            404,
            "warehouse \"nope\"",
        ),
        (
            "/v1beta1/projects/demo/stages/dev/promotions",
            "wrong",
            "{}",
            401,
            "unknown token",
        ),
    ] {
        let (status, answer) = post(path.into(), token, body.into()).await.unwrap();
        assert_eq!(status, wanted_status, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(wanted),
            "{path} {body}: {answer}"
        );
    }
}

/// Approval policies over the API: a promotion queued by pete waits; pete cannot approve
/// his own; ada (admin: her roles count as groups) and sam approve; the service runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_wait_for_approvals_given_over_the_api() {
    let manifests = format!(
        "{MANIFESTS}---\napiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\nmetadata: {{name: demo, namespace: demo}}\nspec:\n  promotionPolicies:\n  - stageSelector: {{name: dev}}\n    approvals:\n      minApprovals: 2\n      approvers: [{{user: sam}}, {{user: pete}}, {{group: admin}}]\n"
    );
    let (controller, _memory, _cache) = demo_controller(&manifests);
    let tokens = format!(
        "tokens:\n\
         - {{name: pete, sha256: {}, roles: [{{role: promoter}}]}}\n\
         - {{name: sam, sha256: {}, roles: [{{role: promoter}}]}}\n\
         - {{name: ada, sha256: {}, roles: [{{role: admin, projects: [demo]}}]}}\n",
        hash_token("pete-t0ken"),
        hash_token("sam-t0ken"),
        hash_token("ada-t0ken"),
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let (addr, _handle, _stop) = serve(&controller, access).await;
    let freight = controller
        .state()
        .await
        .unwrap()
        .freight
        .keys()
        .next()
        .unwrap()
        .to_string();
    let post = |path: String, token: &'static str, body: String| post_json(addr, path, token, body);
    let (status, answer) = post(
        "/v1beta1/projects/demo/stages/dev/promotions".into(),
        "pete-t0ken",
        format!("{{\"freight\": \"{freight}\"}}"),
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    let name = answer["promotion"].as_str().unwrap().to_owned();
    let approve = |who: &'static str, body: &str| {
        post(
            format!("/v1beta1/projects/demo/stages/dev/promotions/{name}/approve"),
            who,
            body.to_owned(),
        )
    };
    let (status, answer) = approve("pete-t0ken", "").await.unwrap();
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("requested this promotion"),
        "{answer}"
    );
    let (status, answer) = approve("ada-t0ken", "{\"message\": \"ok by me\"}")
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["approvedBy"], serde_json::json!(["ada"]));
    assert_eq!(answer["satisfied"], false);
    let state = controller.state().await.unwrap();
    assert_eq!(state.stages["dev"].queue.len(), 1, "still waiting");
    assert!(state.promotions.iter().all(|p| p.name != name));
    let (status, answer) = approve("sam-t0ken", "{}").await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["satisfied"], true);
    until(&controller, "the approved promotion", |s| {
        s.promotions.iter().any(|p| p.name == name)
    })
    .await;
    let (status, answer) = post(
        format!("/v1beta1/projects/demo/stages/dev/promotions/{name}/reject"),
        "sam-t0ken",
        String::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 409, "nothing left to reject: {answer}");
}
