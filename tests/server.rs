//! `kargo::server::router` nested under a path of an embedder's own axum service: a Quay
//! webhook (secret in the URL) and the refresh API reach the running `Service`, which
//! refreshes exactly the Warehouses they name; wrong secrets, tokens and names are refused.
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
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: demo, namespace: demo}
spec:
  webhookReceivers:
  - name: quay
    quay: {secretRef: {name: quay-secret}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: worker, namespace: demo}
spec:
  interval: 24h
  subscriptions:
  - image: {repoURL: quay.io/acme/worker}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: other, namespace: demo}
spec:
  interval: 24h
  subscriptions:
  - image: {repoURL: quay.io/acme/other}
"#;

const QUAY_PUSH: &str = r#"{"name": "worker", "repository": "acme/worker", "namespace": "acme",
  "docker_url": "quay.io/acme/worker", "updated_tags": ["1.1.0"]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_nested_under_a_path_feeds_the_service() {
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    let memory = MemorySource::new();
    memory.set_images("quay.io/acme/worker", vec![image("1.0.0", "sha256:a")]);
    memory.set_images("quay.io/acme/other", vec![image("1.0.0", "sha256:b")]);
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
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([(
        "quay-secret".to_owned(),
        BTreeMap::from([("secret".to_owned(), "qy-s3cret".to_owned())]),
    )]);
    let config = controller
        .manifests()
        .project_config("demo")
        .unwrap()
        .clone();
    let webhooks = WebhookRouter::new("demo", &config, &secrets);
    let hook_path = webhooks.routes().next().unwrap().path.clone();
    assert!(hook_path.starts_with("/webhook/quay/"), "{hook_path}");

    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { "the embedder's own page" }),
        )
        .nest(
            "/kargo",
            router(
                handle.clone(),
                webhooks,
                ServerOptions::default().with_refresh_token(Some("t0ken".into())),
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    handle.wait_until_sleeping(1).await;
    assert_eq!(controller.state().await.unwrap().freight.len(), 2);

    let call = |method: &'static str,
                path: String,
                headers: Vec<(&'static str, &'static str)>,
                body: &'static str| {
        tokio::task::spawn_blocking(move || {
            support::http_request(addr, method, &path, &headers, body)
        })
    };
    assert_eq!(call("GET", "/".into(), vec![], "").await.unwrap().0, 200);
    assert_eq!(
        call("GET", "/kargo/healthz".into(), vec![], "")
            .await
            .unwrap(),
        (200, "ok\n".into())
    );

    // A new tag on quay.io/acme/worker: the webhook asks for exactly that Warehouse.
    memory.push_image("quay.io/acme/worker", image("1.1.0", "sha256:c"));
    memory.push_image("quay.io/acme/other", image("9.9.9", "sha256:d"));
    let (status, body) = call("POST", format!("/kargo{hook_path}"), vec![], QUAY_PUSH)
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"refreshing\":[\"worker\"]"), "{body}");
    handle.wait_until_sleeping(2).await;
    let state = controller.state().await.unwrap();
    let tags: Vec<&str> = state
        .freight
        .values()
        .flat_map(|r| r.freight.images.iter().map(|i| i.tag.as_str()))
        .collect();
    assert!(tags.contains(&"1.1.0"), "{tags:?}");
    assert!(
        !tags.contains(&"9.9.9"),
        "the other Warehouse was not refreshed: {tags:?}"
    );

    // A wrong secret in the URL: not found, nothing queued.
    let (status, _) = call("POST", "/kargo/webhook/quay/0000".into(), vec![], QUAY_PUSH)
        .await
        .unwrap();
    assert_eq!(status, 404);

    // The refresh API: token required and checked; unknown Warehouses refused.
    assert_eq!(
        call("POST", "/kargo/refresh/warehouse/other".into(), vec![], "")
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        call(
            "POST",
            "/kargo/refresh/warehouse/other".into(),
            vec![("Authorization", "Bearer nope")],
            ""
        )
        .await
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        call(
            "POST",
            "/kargo/refresh/warehouse/nope".into(),
            vec![("Authorization", "Bearer t0ken")],
            ""
        )
        .await
        .unwrap()
        .0,
        404
    );
    let passes = handle.passes();
    assert_eq!(handle.passes(), 2, "no pass for refused requests");
    let (status, body) = call(
        "POST",
        "/kargo/refresh/warehouse/other".into(),
        vec![("Authorization", "Bearer t0ken")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");
    handle.wait_until_sleeping(passes + 1).await;
    let state = controller.state().await.unwrap();
    assert!(
        state
            .freight
            .values()
            .any(|r| r.freight.images.iter().any(|i| i.tag == "9.9.9")),
        "the refresh API refreshed the other Warehouse"
    );
    let _ = stop.send(());
    task.await.unwrap();
}
