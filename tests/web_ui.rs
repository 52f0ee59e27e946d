//! The web UI in a real headless Chromium, as a newcomer uses it (issue 18's "Must show"):
//!
//! - `a_newcomer_promotes_to_prod_through_the_ui`: the quickstart project (its GitOps
//!   repository on the real smart-HTTP git server, pushed with credentials) served with
//!   an admin (ada) and a viewer (vera). Ada logs in with her token, watches dev receive
//!   Freight, publishes a new image and refreshes the Warehouse from its card, watches dev
//!   get it, holds dev and discovers one more (which prod may not receive yet), chooses
//!   Freight for prod from the list that says why the rest is unavailable, reads the
//!   comparison and the file diff, confirms, watches the promotion's steps finish without
//!   reloading, finds its commit on the git server, rolls prod back from its Stage page and
//!   finds the file back. Vera sees no action buttons, and the API refuses her (403).
//! - `big_pipeline_pages_become_interactive_quickly`: 600 Stages and 5,000 Freight; the
//!   pipeline graph, the list and the Freight timeline become interactive within a bound
//!   (printed as `TTI <page> <ms> ms`).
//!
//! Screenshots of every page go to `docs/screenshots/<page>.png` with
//! `KARGO_UPDATE_SCREENSHOTS=1` (a tempdir otherwise: CI never dirties the tree). Run them
//! with the servers: `ci/test.sh --test web_ui`.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kargo::Controller;
use kargo::core::freight::{Freight, FreightCollection, FreightOrigin, Image};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{
    CurrentStage, MemoryStore, ProjectState, StageFreight, VerifiedStage, record_freight,
};
use kargo::core::runner::Runner;
use kargo::core::secret::{CredentialKind, StaticCredentials};
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceHandle, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use kargo::steps::{BuiltinOptions, register_builtins_with};
use serde_json::Value as Json;
use support::browser::Browser;
use support::git;

const IMAGE: &str = "ghcr.io/acme/guestbook";
const CHART: &str = "oci://ghcr.io/acme/charts/guestbook";
const MANIFESTS: &str = include_str!("../examples/fixtures/quickstart.yaml");
const ADA_TOKEN: &str = "ada-t0ken";
const VERA_TOKEN: &str = "vera-t0ken";

/// Every browser test ends well within this.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// The quickstart's values file, for `env` with `replicas`.
fn values(env: &str, replicas: u32) -> String {
    format!(
        "# Guestbook in {env}. Kargo-rs changes only the values it promotes:\n\
         # comments, quotes and order stay as they are.\n\
         replicas: {replicas}\n\
         image:\n  repository: ghcr.io/acme/guestbook\n  tag: \"0.9.0\"   # set by promotion\n\
         chart:\n  version: 0.0.1\n"
    )
}

/// Where a screenshot of `page` goes: `docs/screenshots/` in the repository with
/// `KARGO_UPDATE_SCREENSHOTS=1`, `tmp` otherwise.
fn screenshot_path(tmp: &Path, page: &str) -> PathBuf {
    let dir = if std::env::var("KARGO_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        tmp.join("screenshots")
    };
    dir.join(format!("{page}.png"))
}

/// Takes the screenshot of `page` and checks it is a PNG.
async fn shot(browser: &Browser, tmp: &Path, page: &str) {
    let path = screenshot_path(tmp, page);
    browser.screenshot(&path).await;
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{} is no PNG",
        path.display()
    );
}

/// The page's scripts reported no error (app.js collects them in `window.__errors`).
async fn assert_no_js_errors(browser: &Browser, page: &str) {
    let errors = browser.eval("return window.__errors || [];").await;
    assert_eq!(errors, Json::Array(vec![]), "JavaScript errors on {page}");
}

/// An HTTP call with a bearer token (blocking, off the runtime).
async fn call(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &str,
    token: &'static str,
    body: &str,
) -> (u16, String) {
    let (path, body) = (path.to_owned(), body.to_owned());
    tokio::task::spawn_blocking(move || {
        support::http_request(
            addr,
            method,
            &path,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
    })
    .await
    .unwrap()
}

/// Polls `check` (every 50 ms) until it answers `Some`, for at most `limit`.
async fn poll<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The access table: ada administers `project`, vera only reads it.
fn tokens(project: &str) -> AccessTable {
    let yaml = format!(
        "tokens:\n\
         - {{name: ada, sha256: {}, roles: [{{role: admin, projects: [{project}]}}]}}\n\
         - {{name: vera, sha256: {}, roles: [{{role: viewer, projects: [{project}]}}]}}\n",
        hash_token(ADA_TOKEN),
        hash_token(VERA_TOKEN),
    );
    AccessTable::from_yaml_str("tokens.yaml", &yaml).unwrap()
}

/// Serves the routes for `handle` with `tokens` on a free port.
async fn serve(handle: ServiceHandle, project: &str) -> std::net::SocketAddr {
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let app = router(
        handle,
        WebhookRouter::from_receivers(project, &[], &secrets),
        ServerOptions::default().with_access(tokens(project)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Logs in through the login page with `token` and lands on `next`.
async fn log_in(browser: &Browser, addr: std::net::SocketAddr, token: &str, next: &str) {
    browser
        .goto(&format!("http://{addr}/ui/login?next={next}"))
        .await;
    let input = browser.wait_for("#token").await;
    input.send_keys(token).await.unwrap();
    browser.click("form.login button[type=submit]").await;
    browser.wait_for("header .who").await;
}

/// The newest Freight's ID whose image has `tag`.
async fn freight_with_tag(c: &Controller, tag: &str) -> Option<(String, String)> {
    let state = c.state().await.ok()?;
    state.freight.values().find_map(|r| {
        r.freight.images.iter().any(|i| i.tag == tag).then(|| {
            (
                r.freight.name.as_str().to_owned(),
                r.freight.alias.clone().unwrap_or_default(),
            )
        })
    })
}

/// What `path` holds on `main` in the bare repository.
fn remote_file(bare: &Path, path: &str) -> String {
    git(bare, &["show", &format!("main:{path}")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_promotes_to_prod_through_the_ui() {
    let t = "a_newcomer_promotes_to_prod_through_the_ui";
    let Some(vars) = kargo_core::testing::server_envs(
        t,
        &[
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
            "TEST_GIT_ROOT",
        ],
    ) else {
        return;
    };
    let [git_url, git_user, git_pw, git_root] = &vars[..] else {
        unreachable!()
    };
    let Some(browser) = Browser::start(t).await else {
        return;
    };
    let started = Instant::now();
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kargo=info")
        .try_init();
    let tmp = tempfile::tempdir().unwrap();

    // The GitOps repository, seeded like the quickstart's, on the smart-HTTP server.
    let name = format!(
        "web-ui-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let bare = PathBuf::from(git_root).join(format!("{name}.git"));
    let seed = tmp.path().join("seed");
    for (env, replicas) in [("dev", 1), ("prod", 3)] {
        std::fs::create_dir_all(seed.join("env").join(env)).unwrap();
        std::fs::write(
            seed.join("env").join(env).join("values.yaml"),
            values(env, replicas),
        )
        .unwrap();
    }
    support::seed_bare_repo(&seed, &bare);
    let gitops_url = format!("{git_url}/{name}.git");

    // The registry: one build of the image and one chart version.
    let registry = MemorySource::new();
    registry.set_images(IMAGE, vec![image("1.0.0", &format!("sha256:{:064}", 1))]);
    registry.set_chart_versions(CHART, "", vec!["0.4.0".into()]);
    let mut sources = SourceRegistry::new();
    registry.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    register_builtins_with(
        &mut steps,
        &BuiltinOptions::new(tmp.path().join("git-cache")),
    )
    .unwrap();
    let manifests = ManifestSet::from_yaml_str(
        "guestbook.yaml",
        &MANIFESTS.replace("GITOPS_URL", &gitops_url),
    )
    .unwrap();
    let controller = Controller::new(
        manifests,
        "guestbook",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_work_root(tmp.path().join("work"))
    .with_credentials(Arc::new(StaticCredentials::new().with(
        CredentialKind::Git,
        git_url.as_str(),
        git_user.as_str(),
        git_pw.as_str(),
    )));
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let addr = serve(service.handle(), "guestbook").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    let ui = format!("http://{addr}/ui");
    let pipeline = format!("{ui}/projects/guestbook");

    // dev receives the first Freight on its own; prod gets it through the API, so that it
    // has something to roll back to later.
    let (first, _) = poll("dev to hold 1.0.0", Duration::from_secs(20), async || {
        let state = controller.state().await.ok()?;
        state.stages.get("dev")?.current()?;
        freight_with_tag(&controller, "1.0.0").await
    })
    .await;
    let (status, body) = call(
        addr,
        "POST",
        "/v1beta1/projects/guestbook/stages/prod/promotions",
        ADA_TOKEN,
        &format!("{{\"freight\": \"{first}\"}}"),
    )
    .await;
    assert!(status < 300, "promoting to prod: {status} {body}");

    // The login page, then ada's pipeline.
    browser.goto(&format!("{ui}/login")).await;
    browser.wait_for("#token").await;
    shot(&browser, tmp.path(), "login").await;
    log_in(&browser, addr, ADA_TOKEN, "/ui/projects/guestbook").await;
    browser.wait_for("#stage-dev").await;
    assert!(browser.text("header .who").await.contains("ada"));
    browser
        .wait_for_text("#stage-dev .artifacts", "1.0.0")
        .await;
    browser
        .wait_for_text("#stage-prod .artifacts", "1.0.0")
        .await;
    browser.wait_for("body[data-live=on]").await;

    // CI publishes 1.1.0; the Warehouse's Refresh button finds it and dev gets it.
    registry.push_image(IMAGE, image("1.1.0", &format!("sha256:{:064}", 2)));
    browser.click("#warehouse-guestbook button.refresh").await;
    browser
        .wait_for_text("#stage-dev .artifacts", "1.1.0")
        .await;
    let (second, _) = freight_with_tag(&controller, "1.1.0").await.unwrap();
    assert_no_js_errors(&browser, "the pipeline").await;

    // Hold dev, then one more build: its Freight is not verified in dev, so prod may not
    // receive it yet.
    browser.click("#stage-dev button.hold").await;
    browser.wait_for("#stage-dev button.resume").await;
    registry.push_image(IMAGE, image("1.2.0", &format!("sha256:{:064}", 3)));
    browser.click("#warehouse-guestbook button.refresh").await;
    let (third, third_alias) = poll("Freight of 1.2.0", Duration::from_secs(15), async || {
        freight_with_tag(&controller, "1.2.0").await
    })
    .await;
    browser
        .wait_for_text("#warehouse-guestbook", &third_alias)
        .await;
    assert!(
        browser
            .text("#stage-dev .artifacts")
            .await
            .contains("1.1.0"),
        "held dev stays at 1.1.0"
    );
    shot(&browser, tmp.path(), "pipeline").await;

    // prod's Promote: the Freight list for prod.
    browser.click("#stage-prod a.promote").await;
    browser
        .wait_for_text(".toolbar h1", "Promote to prod")
        .await;
    let unavailable = format!("tr[data-freight=\"{third}\"]");
    let row = browser
        .wait_for_text(&format!("{unavailable}.unavailable td.reason"), "")
        .await;
    assert!(!row.trim().is_empty(), "the unavailable row says why");
    assert!(
        !browser.exists(&format!("{unavailable} a.choose")).await,
        "unavailable Freight cannot be chosen"
    );
    eprintln!("{t}: 1.2.0 unavailable for prod: {row}");
    shot(&browser, tmp.path(), "freight").await;

    // Choose 1.1.0: the comparison and the diff.
    browser
        .click(&format!("tr[data-freight=\"{second}\"] a.choose"))
        .await;
    browser.wait_for("#preview[data-ready]").await;
    let preview = browser.text("#preview").await;
    assert!(
        preview.contains("1.0.0") && preview.contains("1.1.0"),
        "the comparison shows both tags: {preview}"
    );
    let diff = browser.text("#preview pre.diff").await;
    assert!(
        diff.contains("env/prod/values.yaml") || preview.contains("env/prod/values.yaml"),
        "the diff names the file: {preview}"
    );
    let added = browser.text("#preview pre.diff .add").await;
    assert!(
        diff.contains("+  tag: \"1.1.0\"") || added.contains("1.1.0"),
        "the diff adds the new tag: {diff}"
    );
    assert_no_js_errors(&browser, "the promote page").await;
    shot(&browser, tmp.path(), "promote").await;

    // Confirm: the promotion page follows the steps live.
    browser.click("#confirm").await;
    browser.wait_for("#phase").await;
    browser.eval("window.__noReload = 1; return null;").await;
    let phase_at_load = browser
        .eval("return document.getElementById('phase').dataset.phase;")
        .await;
    browser.wait_for("#phase[data-phase=Succeeded]").await;
    assert_eq!(
        browser.eval("return window.__noReload || null;").await,
        Json::from(1),
        "the promotion page reloaded"
    );
    eprintln!("{t}: the promotion page opened in phase {phase_at_load}");
    if phase_at_load != "Succeeded" {
        let updates = browser
            .eval("return document.body.dataset.updates || '0';")
            .await;
        assert_ne!(
            updates,
            Json::from("0"),
            "the page went from {phase_at_load} to Succeeded without a live update"
        );
    }
    let values_now = remote_file(&bare, "env/prod/values.yaml");
    assert!(
        values_now.contains("tag: \"1.1.0\""),
        "prod's values on the git server: {values_now}"
    );
    let head = git(&bare, &["rev-parse", "main"]).trim().to_owned();
    let shown = browser.text("code.commit").await;
    assert_eq!(
        shown, head,
        "the commit the page shows is the remote's main"
    );
    assert_no_js_errors(&browser, "the promotion page").await;
    shot(&browser, tmp.path(), "promotion").await;

    // Roll prod back from its Stage page.
    browser.goto(&format!("{pipeline}/stages/prod")).await;
    browser.click("button.rollback").await;
    browser.wait_for("#phase").await;
    browser.wait_for("#phase[data-phase=Succeeded]").await;
    let values_back = remote_file(&bare, "env/prod/values.yaml");
    assert!(
        values_back.contains("tag: \"1.0.0\""),
        "prod's values went back on the git server: {values_back}"
    );
    assert_ne!(git(&bare, &["rev-parse", "main"]).trim(), head);
    browser.goto(&format!("{pipeline}/stages/prod")).await;
    browser.wait_for_text(".facts", "1.0.0").await;
    browser.wait_for_text("table.promotions", "yes").await;
    shot(&browser, tmp.path(), "stage").await;

    // The other pages.
    browser
        .goto(&format!("{pipeline}/warehouses/guestbook"))
        .await;
    browser.wait_for_text(".outcome", "").await;
    browser.wait_for_text("main", "1.2.0").await;
    shot(&browser, tmp.path(), "warehouse").await;
    browser.goto(&format!("{pipeline}?view=list")).await;
    browser.wait_for("table.stages tr#stage-prod").await;
    shot(&browser, tmp.path(), "pipeline-list").await;
    browser.goto(&format!("{ui}/")).await;
    browser.wait_for_text(".card.project", "guestbook").await;
    shot(&browser, tmp.path(), "projects").await;
    assert_no_js_errors(&browser, "the projects page").await;

    // Vera, a viewer: no actions anywhere, and the API refuses her.
    browser.click("header form button.link").await;
    browser.wait_for("#token").await;
    log_in(&browser, addr, VERA_TOKEN, "/ui/projects/guestbook").await;
    for page in [
        pipeline.clone(),
        format!("{pipeline}?view=list"),
        format!("{pipeline}/stages/prod"),
        format!("{pipeline}/stages/dev"),
        format!("{pipeline}/warehouses/guestbook"),
        format!("{pipeline}/freight?stage=prod"),
    ] {
        browser.goto(&page).await;
        browser.wait_for_text("header .who", "vera").await;
        browser.wait_for("main h1").await;
        for action in [
            ".promote",
            ".rollback",
            ".hold",
            ".resume",
            ".refresh",
            ".choose",
            ".repromote",
        ] {
            assert!(
                !browser.exists(action).await,
                "vera sees {action} on {page}"
            );
        }
        assert!(
            !browser.exists("button.action").await,
            "vera sees an action button on {page}"
        );
    }
    let (status, body) = call(
        addr,
        "POST",
        "/v1beta1/projects/guestbook/stages/prod/promotions",
        VERA_TOKEN,
        &format!("{{\"freight\": \"{second}\"}}"),
    )
    .await;
    assert_eq!(status, 403, "vera's promotion: {body}");

    browser.close().await;
    let _ = stop.send(());
    let took = started.elapsed();
    eprintln!("{t}: {took:?}");
    assert!(took < TEST_LIMIT, "the browser test took {took:?}");
}

/// Warehouses, Stages fed straight from them, and Stages fed from those.
const BIG_WAREHOUSES: usize = 3;
const BIG_FIRST: usize = 10;
const BIG_SECOND: usize = 19;
const BIG_FREIGHT: usize = 5_000;

/// 3 Warehouses → 30 test Stages → 570 Stages (600 in all).
fn big_manifests() -> ManifestSet {
    let mut yaml = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: big}\n",
    );
    let mut stage = |name: &str, requested: &str| {
        yaml.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {{name: {name}, namespace: big}}\n\
             spec:\n  requestedFreight:\n  - {requested}\n  promotionTemplate:\n    spec:\n      steps:\n      - uses: git-clone\n        config: {{repoURL: 'https://git.example/big.git', checkout: [{{branch: main, path: ./src}}]}}\n"
        ));
    };
    for w in 0..BIG_WAREHOUSES {
        for i in 0..BIG_FIRST {
            stage(
                &format!("test-{w}-{i}"),
                &format!(
                    "{{origin: {{kind: Warehouse, name: app-{w}}}, sources: {{direct: true}}}}"
                ),
            );
            for j in 0..BIG_SECOND {
                stage(
                    &format!("prod-{w}-{i}-{j:02}"),
                    &format!(
                        "{{origin: {{kind: Warehouse, name: app-{w}}}, sources: {{stages: [test-{w}-{i}]}}}}"
                    ),
                );
            }
        }
    }
    for w in 0..BIG_WAREHOUSES {
        yaml.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {{name: app-{w}, namespace: big}}\n\
             spec:\n  subscriptions:\n  - image: {{repoURL: registry.example/app-{w}}}\n"
        ));
    }
    ManifestSet::from_yaml_str("big.yaml", &yaml).unwrap()
}

/// 5,000 Freight over the Warehouses; each Stage holds one of the newest of its
/// Warehouse, verified in its upstream test Stage.
fn big_state(state: &mut ProjectState) {
    let base = chrono::Utc::now() - chrono::Duration::days(3);
    let mut newest: Vec<Vec<Freight>> = vec![Vec::new(); BIG_WAREHOUSES];
    for n in 0..BIG_FREIGHT {
        let w = n % BIG_WAREHOUSES;
        let mut f = Freight::new(
            FreightOrigin::warehouse(format!("app-{w}")),
            vec![],
            vec![Image {
                repo_url: format!("registry.example/app-{w}"),
                tag: format!("1.{}.{}", n / 1000, n % 1000),
                digest: format!("sha256:{n:064x}"),
                annotations: BTreeMap::new(),
                subscription_name: None,
            }],
            vec![],
            vec![],
        );
        f.discovered_at = Some(base + chrono::Duration::seconds(n as i64 * 30));
        f.alias = Some(format!("freight-{n}"));
        if n + 40 >= BIG_FREIGHT {
            newest[w].push(f.clone());
        }
        record_freight(state, f);
    }
    let promoted_at = chrono::Utc::now() - chrono::Duration::hours(1);
    let hold = |state: &mut ProjectState, stage: String, f: &Freight, upstream: &[String]| {
        let record = state.freight.get_mut(&f.name).unwrap();
        record
            .status
            .currently_in
            .insert(stage.clone(), CurrentStage { since: promoted_at });
        for s in upstream.iter().chain([&stage]) {
            record.status.verified_in.insert(
                s.clone(),
                VerifiedStage {
                    verified_at: promoted_at,
                    longest_soak_seconds: 0,
                },
            );
        }
        let mut collection = FreightCollection::default();
        collection.insert(f.into());
        state
            .stages
            .entry(stage.clone())
            .or_default()
            .freight_history
            .push(StageFreight {
                collection,
                promoted_at,
                promotion: format!("{stage}.p0"),
                verification_history: Vec::new(),
            });
    };
    for (w, fresh) in newest.iter().enumerate() {
        for i in 0..BIG_FIRST {
            let test = format!("test-{w}-{i}");
            let f = &fresh[fresh.len() - 1 - i % 3];
            hold(state, test.clone(), f, &[]);
            for j in 0..BIG_SECOND {
                let f = &fresh[fresh.len() - 1 - (i + j) % 5];
                hold(
                    state,
                    format!("prod-{w}-{i}-{j:02}"),
                    f,
                    std::slice::from_ref(&test),
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_pipeline_pages_become_interactive_quickly() {
    let t = "big_pipeline_pages_become_interactive_quickly";
    let Some(browser) = Browser::start(t).await else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let controller = Controller::new(
        big_manifests(),
        "big",
        SourceRegistry::new(),
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    controller
        .store()
        .update("big", &mut |state| {
            big_state(state);
            Ok(())
        })
        .await
        .unwrap();
    // The service is not run: nothing should change the state while pages are measured.
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let addr = serve(service.handle(), "big").await;
    log_in(&browser, addr, ADA_TOKEN, "/ui/").await;
    browser.wait_for(".card.project").await;

    let bound = Duration::from_secs(5);
    let project = format!("http://{addr}/ui/projects/big");
    for (page, url, ready) in [
        ("graph", project.clone(), "#stage-prod-2-9-18"),
        (
            "list",
            format!("{project}?view=list"),
            "table.stages tr#stage-prod-0-4-18",
        ),
        (
            "freight",
            format!("{project}/freight"),
            "table.freight tr[data-alias=freight-4999]",
        ),
    ] {
        browser.goto(&url).await;
        browser.wait_for(ready).await;
        let tti = browser.time_to_interactive().await;
        println!("TTI {page} {} ms", tti.as_millis());
        assert!(
            tti < bound,
            "the {page} page took {tti:?} (bound {bound:?})"
        );
        assert_no_js_errors(&browser, page).await;
        if page == "graph" {
            let cards = browser
                .eval("return document.querySelectorAll('.graph .card.stage').length;")
                .await;
            assert_eq!(cards, Json::from(600), "every Stage has a card");
            // For a look only, never into the repository.
            browser.screenshot(&tmp.path().join("big-graph.png")).await;
        }
    }
    browser.close().await;
    let took = started.elapsed();
    assert!(took < TEST_LIMIT, "the browser test took {took:?}");
}
