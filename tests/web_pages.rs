//! The web UI's pages over HTTP (the browser tests drive them in Chromium): logging in
//! makes a session cookie, every page renders for its caller with only the actions the
//! caller may take, writes with the cookie need the session's CSRF token, a router nested
//! under a path links under that path, unknown things answer 404 pages, and an insecure
//! server lets anyone in as `anonymous`.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use support::demo_steps::{Echo, listen};

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

const MANIFESTS: &str = r#"
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
      - as: render
        uses: echo
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
      - as: render
        uses: echo
        config: {tag: "${{ imageFrom('ghcr.io/acme/app').Tag }}"}
"#;

/// The handles of a served project: its address, its stop, its source, its service.
type Served = (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    MemorySource,
    kargo::service::ServiceHandle,
);

/// Serves the demo project (under `nest`, when given) and waits for its first pass.
async fn serve(options: ServerOptions, nest: Option<&str>) -> Served {
    serve_manifests(MANIFESTS, options, nest).await
}

/// Serves `manifests` (the demo project's shape) and waits for its first pass.
async fn serve_manifests(manifests: &str, options: ServerOptions, nest: Option<&str>) -> Served {
    let set = ManifestSet::from_yaml_str("demo.yaml", manifests).unwrap();
    let memory = MemorySource::new();
    memory.set_images(
        "ghcr.io/acme/app",
        vec![image("1.0.0", &format!("sha256:{:064}", 1))],
    );
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    steps.register(Echo).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(controller, ServiceOptions::default());
    let handle = service.handle();
    let routes = router(
        handle.clone(),
        WebhookRouter::from_receivers("demo", &[], &secrets),
        options,
    );
    let app = match nest {
        Some(path) => axum::Router::new().nest(path, routes),
        None => routes,
    };
    let addr = listen(app).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    handle.wait_until_sleeping(1).await;
    (addr, stop, memory, handle)
}

fn tokens() -> AccessTable {
    let text = format!(
        "tokens:\n\
         - {{name: ada, sha256: {}, roles: [{{role: admin, projects: [demo]}}]}}\n\
         - {{name: pete, sha256: {}, roles: [{{role: promoter, projects: [demo], stages: [dev]}}]}}\n\
         - {{name: vera, sha256: {}, roles: [{{role: viewer, projects: [demo]}}]}}\n",
        hash_token("ada-t0ken"),
        hash_token("pete-t0ken"),
        hash_token("vera-t0ken"),
    );
    AccessTable::from_yaml_str("tokens.yaml", &text).unwrap()
}

/// One HTTP/1.1 exchange: status, headers (lowercase names), body.
async fn http(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &str,
    headers: Vec<(String, String)>,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let (path, body) = (path.to_owned(), body.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut msg = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (n, v) in &headers {
            msg.push_str(&format!("{n}: {v}\r\n"));
        }
        msg.push_str("\r\n");
        msg.push_str(&body);
        s.write_all(msg.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    })
    .await
    .unwrap()
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Logs in with `token`; the session cookie (`name=value`) and the CSRF token.
async fn login(addr: std::net::SocketAddr, base: &str, token: &str) -> (String, String) {
    let form = format!("token={token}&next={base}%2Fui%2Fprojects%2Fdemo");
    let (status, headers, _) = http(
        addr,
        "POST",
        &format!("{base}/ui/login"),
        vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        &form,
    )
    .await;
    assert_eq!(status, 303, "login");
    assert_eq!(
        header(&headers, "location"),
        Some(format!("{base}/ui/projects/demo").as_str())
    );
    let set = header(&headers, "set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(set.contains(&format!("Path={base}/")), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, _, page) = http(
        addr,
        "GET",
        &format!("{base}/ui/projects/demo"),
        vec![("Cookie".into(), cookie.clone())],
        "",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(csrf.len(), 64, "a 32-byte token");
    (cookie, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_sessions_csrf_and_roles() {
    let (addr, _stop, memory, handle) =
        serve(ServerOptions::default().with_access(tokens()), None).await;

    // Without a session, a page sends to the login page, which comes back.
    let (status, headers, _) = http(addr, "GET", "/ui/projects/demo/stages/dev", vec![], "").await;
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some("/ui/login?next=%2Fui%2Fprojects%2Fdemo%2Fstages%2Fdev")
    );
    let (status, _, page) = http(
        addr,
        "GET",
        "/ui/login?next=%2Fui%2Fprojects%2Fdemo",
        vec![],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("name=\"token\""));
    // A wrong token: 401 with the form again, and no cookie.
    let (status, headers, page) = http(
        addr,
        "POST",
        "/ui/login",
        vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        "token=nope",
    )
    .await;
    assert_eq!(status, 401);
    assert!(page.contains("unknown token"));
    assert!(header(&headers, "set-cookie").is_none());
    // `next` never leaves the UI.
    let (_, headers, _) = http(
        addr,
        "POST",
        "/ui/login",
        vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        "token=vera-t0ken&next=https%3A%2F%2Fevil.example%2F",
    )
    .await;
    assert_eq!(header(&headers, "location"), Some("/ui/"));

    let (ada, ada_csrf) = login(addr, "", "ada-t0ken").await;
    let (vera, _) = login(addr, "", "vera-t0ken").await;
    let (pete, _) = login(addr, "", "pete-t0ken").await;
    let get = |path: &str, cookie: String| {
        let path = path.to_owned();
        async move { http(addr, "GET", &path, vec![("Cookie".into(), cookie)], "").await }
    };

    // Every page renders.
    for path in [
        "/ui/",
        "/ui/projects/demo",
        "/ui/projects/demo?view=list",
        "/ui/projects/demo/freight",
        "/ui/projects/demo/freight?stage=prod",
        "/ui/projects/demo/stages/dev",
        "/ui/projects/demo/stages/prod",
        "/ui/projects/demo/warehouses/app",
    ] {
        let (status, _, page) = get(path, ada.clone()).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.starts_with("<!doctype html>"), "{path}");
        assert!(page.contains("/ui/assets/app.js"), "{path}");
    }
    let (_, _, pipeline) = get("/ui/projects/demo", ada.clone()).await;
    assert!(pipeline.contains("data-stage=\"dev\""));
    assert!(pipeline.contains("data-warehouse=\"app\""));
    assert!(
        pipeline.contains("data-from=\"w/app\" data-to=\"dev\""),
        "an edge from the Warehouse"
    );
    assert!(
        pipeline.contains("data-from=\"s/dev\" data-to=\"prod\""),
        "an edge from dev to prod"
    );
    assert!(
        pipeline.contains("data-phase=\"ready\""),
        "dev was auto-promoted: {pipeline}"
    );
    // The last discovery says what it decided.
    let (_, _, warehouse) = get("/ui/projects/demo/warehouses/app", ada.clone()).await;
    assert!(warehouse.contains("created Freight"), "{warehouse}");
    // prod may receive the Freight (it is verified in dev); a fresh Stage would say why not.
    let (_, _, choose) = get("/ui/projects/demo/freight?stage=prod", ada.clone()).await;
    assert!(choose.contains("class=\"button choose\""), "{choose}");
    // The assets are ours and embedded.
    let (status, headers, js) = get("/ui/assets/app.js", String::new()).await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.contains("EventSource"));
    let (status, _, _) = get("/ui/assets/nope.js", String::new()).await;
    assert_eq!(status, 404);

    // Only the actions the caller may take: the admin sees them all; the viewer none; the
    // promoter of dev-only sees Promote on dev and not on prod.
    assert!(pipeline.contains("class=\"button promote\""));
    assert!(pipeline.contains("secondary hold"));
    assert!(pipeline.contains("secondary refresh"));
    let (_, _, seen) = get("/ui/projects/demo", vera.clone()).await;
    for button in [
        "button promote",
        "secondary hold",
        "secondary refresh",
        "class=\"action ",
    ] {
        assert!(!seen.contains(button), "the viewer sees {button}");
    }
    let (_, _, seen) = get("/ui/projects/demo?view=list", pete.clone()).await;
    let dev_row = seen
        .split("<tr id=\"stage-dev\"")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    let prod_row = seen
        .split("<tr id=\"stage-prod\"")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(dev_row.contains("button promote"), "{dev_row}");
    assert!(!prod_row.contains("button promote"), "{prod_row}");
    let (status, _, page) = get("/ui/projects/demo/stages/prod/promote", pete.clone()).await;
    assert_eq!(status, 403, "{page}");

    // A live refresh asks for `main` only.
    let (status, _, fragment) = http(
        addr,
        "GET",
        "/ui/projects/demo",
        vec![
            ("Cookie".into(), ada.clone()),
            ("X-Fragment".into(), "main".into()),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(!fragment.contains("<html") && fragment.contains("data-stage=\"dev\""));

    // Unknown things: 404 pages naming them.
    for (path, wanted) in [
        ("/ui/projects/nope", "project \"nope\" not found"),
        ("/ui/projects/demo/stages/qa", "stage \"qa\" not found"),
        (
            "/ui/projects/demo/warehouses/x",
            "warehouse \"x\" not found",
        ),
        (
            "/ui/projects/demo/promotions/x",
            "promotion \"x\" not found",
        ),
    ] {
        let (status, _, page) = get(path, ada.clone()).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            page.contains(&wanted.replace('"', "&quot;")),
            "{path}: {page}"
        );
    }

    // Writes with the cookie need the session's CSRF token.
    let freight_body = {
        let (_, _, list) = http(
            addr,
            "GET",
            "/v1beta1/projects/demo/freight",
            vec![("Cookie".into(), ada.clone())],
            "",
        )
        .await;
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        format!(
            r#"{{"freight": "{}"}}"#,
            list["items"][0]["freight"]["name"].as_str().unwrap()
        )
    };
    let promote = "/v1beta1/projects/demo/stages/prod/promotions";
    let (status, _, body) = http(
        addr,
        "POST",
        promote,
        vec![("Cookie".into(), ada.clone())],
        &freight_body,
    )
    .await;
    assert_eq!(status, 403, "no CSRF token: {body}");
    assert!(body.contains("X-CSRF-Token"));
    let (status, _, _) = http(
        addr,
        "POST",
        promote,
        vec![
            ("Cookie".into(), ada.clone()),
            ("X-CSRF-Token".into(), "0".repeat(64)),
        ],
        &freight_body,
    )
    .await;
    assert_eq!(status, 403, "a wrong CSRF token");
    let (status, _, body) = http(
        addr,
        "POST",
        promote,
        vec![
            ("Cookie".into(), ada.clone()),
            ("X-CSRF-Token".into(), ada_csrf.clone()),
        ],
        &freight_body,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let promoted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        promoted["actor"], "ada",
        "the session's caller is the actor"
    );
    let (status, _, page) = get(
        &format!(
            "/ui/projects/demo/promotions/{}",
            promoted["promotion"].as_str().unwrap()
        ),
        vera.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("class=\"actor\">ada<"), "{page}");

    // Freight dev does not take (held) is not available to prod: the page says why and
    // offers the approval to who may approve; approved, it offers Promote.
    let (status, _, body) = http(
        addr,
        "POST",
        "/v1beta1/projects/demo/stages/dev/hold",
        vec![
            ("Cookie".into(), ada.clone()),
            ("X-CSRF-Token".into(), ada_csrf.clone()),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    memory.push_image(
        "ghcr.io/acme/app",
        image("2.0.0", &format!("sha256:{:064}", 2)),
    );
    assert!(handle.refresh("app", "test"));
    support::demo_steps::until_freight(&handle, 2).await;
    let newest = handle.controller().state().await.unwrap();
    let newest = newest
        .freight
        .values()
        .find(|f| f.freight.images[0].tag == "2.0.0")
        .unwrap_or_else(|| {
            panic!(
                "no 2.0.0 Freight: {:?} {:?}",
                newest
                    .freight
                    .values()
                    .map(|f| &f.freight.images[0].tag)
                    .collect::<Vec<_>>(),
                newest.warehouses
            )
        })
        .freight
        .name
        .to_string();
    let row = |page: &str| {
        page.split(&format!("data-freight=\"{newest}\""))
            .nth(1)
            .unwrap()
            .split("</tr>")
            .next()
            .unwrap()
            .to_owned()
    };
    let (_, _, choose) = get("/ui/projects/demo/freight?stage=prod", ada.clone()).await;
    let unavailable = row(&choose);
    assert!(unavailable.contains("needs verification"), "{unavailable}");
    assert!(unavailable.contains("secondary approve"), "{unavailable}");
    assert!(!unavailable.contains("button choose"), "{unavailable}");
    let (_, _, seen) = get("/ui/projects/demo/freight?stage=prod", vera.clone()).await;
    assert!(!row(&seen).contains("approve"), "a viewer may not approve");
    let (status, _, body) = http(
        addr,
        "POST",
        &format!("/v1beta1/projects/demo/freight/{newest}/approve"),
        vec![
            ("Cookie".into(), ada.clone()),
            ("X-CSRF-Token".into(), ada_csrf.clone()),
        ],
        r#"{"stage": "prod"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, _, choose) = get("/ui/projects/demo/freight?stage=prod", ada.clone()).await;
    let available = row(&choose);
    assert!(available.contains("button choose"), "{available}");
    assert!(
        available.contains("prod <span class=\"muted\">by ada</span>"),
        "{available}"
    );

    // Logging out needs the CSRF token too, then the cookie is dead.
    let (status, _, _) = http(
        addr,
        "POST",
        "/ui/logout",
        vec![("Cookie".into(), ada.clone())],
        "csrf=x",
    )
    .await;
    assert_eq!(status, 403);
    let (status, headers, _) = http(
        addr,
        "POST",
        "/ui/logout",
        vec![("Cookie".into(), ada.clone())],
        &format!("csrf={ada_csrf}"),
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        header(&headers, "set-cookie")
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, body) = http(
        addr,
        "GET",
        "/v1beta1/projects/demo/stages",
        vec![("Cookie".into(), ada)],
        "",
    )
    .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_path_and_insecure_mode() {
    let (addr, _stop, _, _) = serve(
        ServerOptions::default().with_access(tokens()),
        Some("/kargo"),
    )
    .await;
    let (cookie, _) = login(addr, "/kargo", "ada-t0ken").await;
    let (status, _, page) = http(
        addr,
        "GET",
        "/kargo/ui/projects/demo",
        vec![("Cookie".into(), cookie)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("data-base=\"/kargo\""));
    assert!(
        page.contains("href=\"/kargo/ui/projects/demo/stages/dev\""),
        "links stay under the path"
    );
    assert!(!page.contains("href=\"/ui/"), "no link leaves the path");

    // Insecure: no token needed, the caller is `anonymous`, an admin.
    let (addr, _stop2, _, _) = serve(
        ServerOptions::default().with_insecure_anonymous_access(),
        None,
    )
    .await;
    let (status, _, page) = http(addr, "GET", "/ui/projects/demo", vec![], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("anonymous") && page.contains("button promote"));
    let (status, _, _) = http(addr, "GET", "/v1beta1/projects/demo/stages", vec![], "").await;
    assert_eq!(status, 200);
    // Without tokens and not insecure, there is no API or UI at all.
    let (addr, _stop3, _, _) = serve(ServerOptions::default(), None).await;
    let (status, _, _) = http(addr, "GET", "/ui/", vec![], "").await;
    assert_eq!(status, 404);
}

/// A Stage outside its promotion window says so, and a promotion waiting for approval
/// shows its count and the Approve / Reject buttons; approving from the page's endpoint
/// runs it once the window allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_page_shows_windows_and_approvals() {
    let manifests = MANIFESTS.replace(
        "  - stageSelector: {name: dev}\n    autoPromotionEnabled: true\n",
        "  - stageSelector: {name: dev}\n    autoPromotionEnabled: true\n  - stageSelector: {name: prod}\n    approvals: {minApprovals: 1}\n  promotionWindows:\n  - name: freeze\n    kind: Deny\n    stageSelector: {name: dev}\n    dtstart: 20200101T000000Z\n    dtend: 20990101T000000Z\n",
    );
    assert_ne!(manifests, MANIFESTS);
    let (addr, _stop, _, handle) = serve_manifests(
        &manifests,
        ServerOptions::default().with_insecure_anonymous_access(),
        None,
    )
    .await;
    let (status, _, page) = http(addr, "GET", "/ui/projects/demo/stages/dev", vec![], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("promotion window closed"), "{page}");
    assert!(page.contains("freeze"), "{page}");
    // A promotion of prod by someone else waits for approval.
    let c = handle.controller();
    let freight = c
        .state()
        .await
        .unwrap()
        .freight
        .keys()
        .next()
        .unwrap()
        .to_string();
    c.approve("prod", &freight, Some("ada".into()))
        .await
        .unwrap();
    let request = c
        .request_promotion("prod", &freight, Some("ada".into()))
        .await
        .unwrap();
    let (_, _, page) = http(addr, "GET", "/ui/projects/demo/stages/prod", vec![], "").await;
    assert!(page.contains("waits for approval: 0 of 1"), "{page}");
    assert!(
        page.contains("approve-promotion") && page.contains("reject-promotion"),
        "{page}"
    );
    assert!(
        page.contains(&format!("promotions/{}/approve", request.name)),
        "{page}"
    );
}
