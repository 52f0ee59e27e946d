//! The OpenAPI document the server serves at `/openapi.json` and the server itself agree:
//!
//! - the document parses, every `$ref` resolves, every operation has a unique
//!   `operationId`, and its path parameters are the path template's;
//! - every path and method of the document is answered by one of our handlers (not by
//!   axum's bare 404/405 fallback), with a status the document lists;
//! - every `.route("...", method(...))` of `src/server.rs` and `src/server/*.rs` is in the
//!   document (read from the source, so a new route without its documentation fails);
//! - schemathesis (PyPI, `TEST_SCHEMATHESIS`, installed by `ci/servers.d/60-schemathesis.sh`)
//!   finds no 5xx and no answer that breaks the document (status, content type, schema)
//!   against a live server with a Warehouse, Freight and two Stages.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kargo::Controller;
use kargo::core::freight::FreightCollection;
use kargo::core::loader::ManifestSet;
use kargo::core::model::Stage;
use kargo::core::pipeline::{MemoryStore, VerificationInfo, VerificationPhase, Verifier};
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::openapi::DOCUMENT;
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use kargo_core::testing::server_env;
use serde_json::Value as Json;

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
  verification:
    analysisTemplates: [{name: smoke}]
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

/// The admin's token (also the refresh token) and the viewer's.
const ADMIN_TOKEN: &str = "ada-t0ken";
const VIEWER_TOKEN: &str = "vera-t0ken";

/// Answers its `tag` as an output.
struct Echo;

#[derive(serde::Deserialize)]
struct EchoConfig {
    tag: String,
}

#[async_trait]
impl Step for Echo {
    const KIND: &'static str = "echo";
    type Config = EchoConfig;

    async fn run(&self, _ctx: &StepContext, cfg: EchoConfig) -> Result<StepOutcome, StepError> {
        Ok(StepOutcome::succeeded().with_output("tag", cfg.tag))
    }
}

/// Always successful.
struct Smoke;

#[async_trait]
impl Verifier for Smoke {
    async fn verify(&self, _stage: &Stage, _c: &FreightCollection) -> VerificationInfo {
        VerificationInfo {
            phase: VerificationPhase::Successful,
            message: "smoke ok".into(),
            finished_at: chrono::Utc::now(),
        }
    }
}

/// A server on a loopback port for the project above (an image in its Warehouse, an
/// admin and a viewer), with its service running when `run` (otherwise only the routes
/// answer).
struct Server {
    addr: std::net::SocketAddr,
    memory: MemorySource,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(run: bool) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kargo=info")
        .try_init();
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
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
    .unwrap()
    .with_verifier(Arc::new(Smoke));
    let tokens = format!(
        "tokens:\n\
         - {{name: ada, sha256: {}, roles: [{{role: admin, projects: [demo]}}]}}\n\
         - {{name: vera, sha256: {}, roles: [{{role: viewer, projects: [demo]}}]}}\n",
        hash_token(ADMIN_TOKEN),
        hash_token(VIEWER_TOKEN),
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(controller, ServiceOptions::default());
    let app = router(
        service.handle(),
        WebhookRouter::from_receivers("demo", &[], &secrets),
        ServerOptions::default()
            .with_access(access)
            .with_refresh_token(Some(ADMIN_TOKEN.to_owned())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if run {
        tokio::spawn(service.run(async move {
            let _ = stopped.await;
        }));
    }
    Server {
        addr,
        memory,
        _stop: stop,
    }
}

/// One request (blocking, on a worker thread): its status and body.
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let (method, path) = (method.to_owned(), path.to_owned());
    let auth = token.map(|t| format!("Bearer {t}"));
    tokio::task::spawn_blocking(move || {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        support::http_request(addr, &method, &path, &headers, "{}")
    })
    .await
    .unwrap()
}

/// A POST with a JSON body, as the admin.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let (path, body) = (path.to_owned(), body.to_owned());
    tokio::task::spawn_blocking(move || {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        support::http_request(
            addr,
            "POST",
            &path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &body,
        )
    })
    .await
    .unwrap()
}

fn document() -> Json {
    serde_json::from_str(DOCUMENT).expect("src/server/openapi.json is not JSON")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the document: (path, method, operation).
fn operations(doc: &Json) -> Vec<(String, String, Json)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    out
}

/// What `reference` (`#/a/b`) points at in `doc`.
fn resolve<'d>(doc: &'d Json, reference: &str) -> Option<&'d Json> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` in `value`, with the JSON pointer of where it is.
fn refs(value: &Json, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push((at.to_owned(), v.as_str().unwrap_or("").to_owned()));
                } else {
                    refs(v, &format!("{at}/{k}"), out);
                }
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The `{name}`s of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\{\*?([^}]+)\}").unwrap();
    re.captures_iter(path).map(|c| c[1].to_owned()).collect()
}

#[test]
fn document_parses_and_every_ref_resolves() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi: expected a 3.x version"
    );
    let mut all = Vec::new();
    refs(&doc, "", &mut all);
    assert!(
        all.len() > 50,
        "the document uses $ref ({} found)",
        all.len()
    );
    let broken: Vec<_> = all
        .iter()
        .filter(|(_, r)| resolve(&doc, r).is_none())
        .collect();
    assert!(broken.is_empty(), "unresolved $ref (at, ref): {broken:?}");

    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        // The path parameters declared are exactly the template's.
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => resolve(&doc, r).unwrap().clone(),
                None => p.clone(),
            })
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            declared,
            template_params(&path),
            "{method} {path}: path parameters"
        );
    }
}

/// Whether an answer comes from one of our handlers rather than axum's fallback (a 404
/// or 405 without a body) or any other catch-all: not 404/405, or a JSON
/// `{"error": ...}`.
fn answered_by_a_handler(status: u16, body: &str) -> bool {
    if status != 404 && status != 405 {
        return true;
    }
    serde_json::from_str::<Json>(body).is_ok_and(|j| j["error"].is_string())
}

/// `path` with every `{param}` replaced by a plain value.
fn concrete(path: &str) -> String {
    let re = regex::Regex::new(r"\{[^}]+\}").unwrap();
    re.replace_all(path, "x").into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let s = server(false).await;
    let doc = document();
    // The checks can fail: the fallback and a wrong method are told apart from a handler.
    let (status, body) = call(s.addr, "GET", "/v1beta1/nowhere", None).await;
    assert!(
        !answered_by_a_handler(status, &body),
        "a path no route has: {status} {body}"
    );
    let (status, body) = call(s.addr, "DELETE", "/v1beta1/projects/x/stages", None).await;
    assert!(
        !answered_by_a_handler(status, &body),
        "a method the route does not have: {status} {body}"
    );

    let mut wrong = Vec::new();
    for (path, method, op) in operations(&doc) {
        let url = concrete(&path);
        let (status, body) = call(s.addr, &method.to_uppercase(), &url, None).await;
        if !answered_by_a_handler(status, &body) {
            wrong.push(format!(
                "{method} {path} is in src/server/openapi.json but no route answers it \
                 ({method} {url}: {status} {body:?})"
            ));
        } else if op["responses"].get(status.to_string()).is_none() {
            wrong.push(format!(
                "{method} {path}: the server answered {status} ({body:?}), which the \
                 document does not list"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The document served is the one embedded, as JSON, without a token.
    let (status, body) = call(s.addr, "GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Json>(&body).unwrap(), doc);
}

/// The status and `Content-Type` of a GET of `path` as the admin, read within 10 s; the
/// connection is dropped after the head (a watch's body never ends).
async fn head_of(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let read = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let msg = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
        );
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut reader = tokio::io::BufReader::new(s);
        let (mut status, mut content_type) = (0, String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap() == 0 || line.trim().is_empty() {
                return (status, content_type);
            }
            if status == 0 {
                status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-type")
            {
                content_type = value.trim().to_owned();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_answer_event_streams_as_documented() {
    let s = server(false).await;
    let doc = document();
    let mut watches = 0;
    for (path, method, op) in operations(&doc) {
        let content = &op["responses"]["200"]["content"];
        if method != "get" || content.get("text/event-stream").is_none() {
            continue;
        }
        watches += 1;
        let url = path
            .replace("{project}", "demo")
            .replace("{stage}", "dev")
            .replace("{promotion}", "dev.none");
        let (status, kind) = head_of(s.addr, &format!("{url}?watch=true")).await;
        assert_eq!(status, 200, "GET {url}?watch=true");
        assert!(
            kind.starts_with("text/event-stream"),
            "GET {url}?watch=true: Content-Type {kind:?}"
        );
        if content.get("application/json").is_some() {
            let (status, kind) = head_of(s.addr, &format!("{url}?watch=false")).await;
            let wanted = if url.ends_with("dev.none") { 404 } else { 200 };
            assert_eq!(status, wanted, "GET {url}?watch=false");
            assert!(
                kind.starts_with("application/json"),
                "GET {url}: Content-Type {kind:?}"
            );
        }
    }
    assert_eq!(watches, 6, "the document's operations with an event stream");
}

/// One `.route(...)` of the server's source: its path and methods (`any` for every one).
#[derive(Debug)]
struct SourceRoute {
    file: String,
    path: String,
    methods: Vec<String>,
}

/// The argument list of the call whose `(` is at `open` in `text`: up to its matching `)`,
/// skipping string literals.
fn call_args(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    let (mut depth, mut i, mut in_str) = (0usize, open, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced parentheses after byte {open}");
}

/// Every route `src/server.rs` and `src/server/*.rs` register, including the multi-line
/// `.route(\n "path",\n post(x),\n)` form and method chains (`get(a).post(b)`).
fn source_routes() -> Vec<SourceRoute> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.join("server.rs")];
    let mut dir: Vec<_> = std::fs::read_dir(root.join("server"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    dir.sort();
    files.extend(dir);
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)"\s*,"#).unwrap();
    let method =
        regex::Regex::new(r"(?:^|[\s.:])(get|post|put|delete|patch|head|options|trace|any)\s*\(")
            .unwrap();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for m in route.captures_iter(&text) {
            let whole = m.get(0).unwrap();
            let open = whole.start() + ".route".len();
            let args = call_args(&text, open);
            let handler = &args[args.find(',').unwrap() + 1..];
            // Only the top level of the handler expression names methods (not a closure's
            // body): drop every nested argument list first.
            let mut top = String::new();
            let mut depth = 0usize;
            for c in handler.chars() {
                match c {
                    '(' => {
                        if depth == 0 {
                            top.push('(');
                        }
                        depth += 1;
                    }
                    ')' => depth = depth.saturating_sub(1),
                    _ if depth == 0 => top.push(c),
                    _ => {}
                }
            }
            let methods: Vec<String> = method
                .captures_iter(&top)
                .map(|c| c[1].to_owned())
                .collect();
            assert!(
                !methods.is_empty(),
                "{}: cannot tell the methods of route {:?} from {handler:?}",
                file.display(),
                &m[1]
            );
            out.push(SourceRoute {
                file: file
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .display()
                    .to_string(),
                path: m[1].to_owned(),
                methods,
            });
        }
    }
    out
}

/// A path template with its parameters' names left out (`/a/{}/b`), for comparing the
/// router's and the document's.
fn shape(path: &str) -> String {
    let re = regex::Regex::new(r"\{[^}*]+\}").unwrap();
    re.replace_all(path, "{}").into_owned()
}

/// Routes the document leaves out on purpose: (path, method, why). Each must still be
/// registered in the source (a stale entry fails).
const NOT_IN_THE_DOCUMENT: &[(&str, &str, &str)] = &[];

/// The web UI's pages, assets and login form (`src/server/ui.rs`) are HTML for browsers,
/// not the JSON API the document describes; their routes start here (tests/web_pages.rs
/// and tests/web_ui.rs test them).
const BROWSER_PAGES: &str = "/ui";

#[test]
fn every_route_in_the_source_is_documented() {
    let doc = document();
    let documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(p, m, _)| (shape(&p), m))
        .collect();
    let routes = source_routes();
    // The extraction sees the forms the server uses (a single line, several lines, a
    // closure handler, a catch-all); if it stopped seeing them this count would drop.
    assert!(
        routes.len() >= 20,
        "only {} routes found in src/server*: {routes:?}",
        routes.len()
    );
    for wanted in ["/healthz", "/webhook/{*rest}", "/openapi.json"] {
        assert!(
            routes.iter().any(|r| r.path == wanted),
            "route {wanted} not found in the source: {routes:?}"
        );
    }
    let mut missing = Vec::new();
    assert!(
        routes.iter().any(|r| r.path.starts_with(BROWSER_PAGES)),
        "the UI's routes were not seen: {routes:?}"
    );
    for r in routes
        .iter()
        .filter(|r| r.path != BROWSER_PAGES && !r.path.starts_with(&format!("{BROWSER_PAGES}/")))
    {
        for m in &r.methods {
            if NOT_IN_THE_DOCUMENT
                .iter()
                .any(|(p, pm, _)| *p == r.path && (*pm == m || *pm == "any"))
            {
                continue;
            }
            let found = match r.path.split_once("{*") {
                // A catch-all: the document has at least one operation under its prefix.
                Some((prefix, _)) => documented
                    .iter()
                    .any(|(p, dm)| p.starts_with(prefix) && (m == "any" || dm == m)),
                None => documented
                    .iter()
                    .any(|(p, dm)| *p == shape(&r.path) && (m == "any" || dm == m)),
            };
            if !found {
                missing.push(format!("{} {} ({})", m.to_uppercase(), r.path, r.file));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes the server registers but src/server/openapi.json does not describe:\n{}",
        missing.join("\n")
    );
    for (path, method, why) in NOT_IN_THE_DOCUMENT {
        assert!(
            routes
                .iter()
                .any(|r| r.path == *path && r.methods.iter().any(|m| m == method)),
            "NOT_IN_THE_DOCUMENT lists {method} {path} ({why}), which no longer exists"
        );
    }
}

/// Polls `path` (as the admin) until `done` holds for its JSON answer.
async fn wait_for(addr: std::net::SocketAddr, path: &str, done: impl Fn(&Json) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call(addr, "GET", path, Some(ADMIN_TOKEN)).await;
        let json: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
        if status == 200 && done(&json) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: still {status} {body} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The schemathesis configuration: every watch parameter is `false`, since a watch
/// (`?watch=true`) is an event stream that never ends (`GET .../watch`, always a stream,
/// is excluded on the command line); names of what exists (`dictionaries`) are drawn for
/// the path parameters, the `freight` query and the bodies' fields with probability
/// 0.7, so the tests reach the handlers' logic and not only their 404s.
fn schemathesis_config(names: &BTreeMap<&str, Vec<String>>) -> String {
    let mut out = String::new();
    for (dict, values) in names {
        let list: Vec<String> = values
            .iter()
            .map(|v| Json::from(v.as_str()).to_string())
            .collect();
        out.push_str(&format!(
            "[dictionaries.{dict}]\nvalues = [{}]\n\n",
            list.join(", ")
        ));
    }
    out.push_str("[parameters]\n\"query.watch\" = \"false\"\n");
    for (key, dict) in [
        ("path.project", "projects"),
        ("path.stage", "stages"),
        ("path.warehouse", "warehouses"),
        ("path.name", "warehouses"),
        ("path.freight", "freight"),
        ("path.promotion", "promotions"),
        ("query.freight", "freight"),
        ("body.freight", "freight"),
        ("body.stage", "stages"),
    ] {
        out.push_str(&format!(
            "\"{key}\" = {{ dictionary = \"{dict}\", probability = 0.7 }}\n"
        ));
    }
    out
}

/// `field` of every item of the list at `path` (as the admin).
async fn names_in(addr: std::net::SocketAddr, path: &str, field: &[&str]) -> Vec<String> {
    let (status, body) = call(addr, "GET", path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    let json: Json = serde_json::from_str(&body).unwrap();
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| {
            field
                .iter()
                .try_fold(item, |v, k| v.get(k))
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_fault() {
    let Some(st) = server_env("schemathesis_finds_no_fault", "TEST_SCHEMATHESIS") else {
        return;
    };
    let s = server(true).await;
    // Two Freight, both promoted to dev (auto-promotion) and the first to prod, so the
    // reads have something to answer and the actions (rollback too) something to act on.
    let dev_holds = |n: usize| {
        move |j: &Json| {
            j["status"]["freightHistory"]
                .as_array()
                .is_some_and(|h| h.len() >= n)
        }
    };
    wait_for(s.addr, "/v1beta1/projects/demo/stages/dev", dev_holds(1)).await;
    let (status, body) = call(
        s.addr,
        "GET",
        "/v1beta1/projects/demo/freight",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let first = serde_json::from_str::<Json>(&body).unwrap()["items"][0]["freight"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    s.memory.set_images(
        "ghcr.io/acme/app",
        vec![
            image("1.0.0", &format!("sha256:{:064}", 1)),
            image("1.1.0", &format!("sha256:{:064}", 2)),
        ],
    );
    let (status, body) = call(
        s.addr,
        "POST",
        "/v1beta1/projects/demo/warehouses/app/refresh",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_for(s.addr, "/v1beta1/projects/demo/stages/dev", dev_holds(2)).await;
    let (status, body) = post(
        s.addr,
        "/v1beta1/projects/demo/stages/prod/promotions",
        &format!(r#"{{"freight": "{first}"}}"#),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_for(s.addr, "/v1beta1/projects/demo/stages/prod", |j| {
        j["status"]["freightHistory"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    })
    .await;

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    let mut names: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let freight = "/v1beta1/projects/demo/freight";
    let mut ids = names_in(s.addr, freight, &["freight", "name"]).await;
    ids.extend(names_in(s.addr, freight, &["freight", "alias"]).await);
    let prefixes: Vec<String> = ids.iter().take(2).map(|id| id[..7].to_owned()).collect();
    ids.extend(prefixes);
    names.insert("freight", ids);
    let mut promotions = Vec::new();
    for stage in ["dev", "prod"] {
        let path = format!("/v1beta1/projects/demo/stages/{stage}/promotions");
        promotions.extend(names_in(s.addr, &path, &["name"]).await);
    }
    names.insert("promotions", promotions);
    names.insert("projects", vec!["demo".into()]);
    names.insert("stages", vec!["dev".into(), "prod".into()]);
    names.insert("warehouses", vec!["app".into()]);
    std::fs::write(&config, schemathesis_config(&names)).unwrap();
    let url = format!("http://{}/openapi.json", s.addr);
    let documented = operations(&document()).len();
    // The admin reaches every handler's logic; the viewer, fewer examples, its refusals.
    for (who, token, examples) in [("admin", ADMIN_TOKEN, "30"), ("viewer", VIEWER_TOKEN, "8")] {
        let report = schemathesis(&st, work.path(), &config, &url, token, examples).await;
        let count = |re: &str| -> Vec<usize> {
            regex::Regex::new(re)
                .unwrap()
                .captures(&report)
                .map(|c| {
                    c.iter()
                        .skip(1)
                        .map(|m| m.unwrap().as_str().parse().unwrap())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (selected, tested) = (count(r"Selected:\s+(\d+)/(\d+)"), count(r"Tested:\s+(\d+)"));
        // Every operation but the stream excluded was tested (schemathesis's total leaves
        // out GET /openapi.json, the document it loaded).
        assert!(
            selected.len() == 2
                && selected[1] + 1 >= documented
                && selected[0] + 1 == selected[1]
                && tested == [selected[0]],
            "schemathesis as the {who} did not test every operation of the {documented} \
             (selected {selected:?}, tested {tested:?}):\n{report}"
        );
    }
}

/// Runs schemathesis against the document at `url` with `token`, at most `examples`
/// cases per operation and phase; panics with its report when it finds a fault, else
/// answers the report.
async fn schemathesis(
    st: &str,
    dir: &Path,
    config: &Path,
    url: &str,
    token: &str,
    examples: &str,
) -> String {
    let mut cmd = std::process::Command::new(st);
    cmd.current_dir(dir)
        .arg("--config-file")
        .arg(config)
        .args(["run", url])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,negative_data_rejection,\
             positive_data_acceptance,missing_required_header,unsupported_method,\
             allow_header_conformance,ignored_auth",
        ])
        // Always an event stream: a request would never end.
        .args(["--exclude-operation-id", "watchProject"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", examples, "--seed", "18"])
        // One worker: with several, the Python 3.11.7 CI runs it on crashes in hypothesis
        // (`ast.parse` from two threads: "AST constructor recursion depth mismatch").
        .args(["--request-timeout", "10", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {st}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis ran for {:.1} s, exit {:?}:\n{stdout}",
        started.elapsed().as_secs_f64(),
        out.status.code()
    );
    assert!(
        out.status.success(),
        "schemathesis found faults (exit {:?}; its report is above):\n{stderr}",
        out.status.code()
    );
    stdout
}
