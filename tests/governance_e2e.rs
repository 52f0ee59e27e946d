//! Issue 20 end to end on the real smart-HTTP git server of `ci/test.sh`: a Warehouse on
//! an application repository, a Stage promoting its commits into a GitOps repository
//! (clone, yaml-update, commit, push with the credential Secret), automatic rollback after
//! a failing verification (a new commit on the server putting the good version back), and
//! the rollback's event delivered by the notifier to an HTTP receiver on 127.0.0.1 that
//! answers 500 the first time.
//!
//! Needs the servers of `ci/test.sh`; without their variables it prints a skip message,
//! except with `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use kargo::Controller;
use kargo::core::freight::FreightCollection;
use kargo::core::loader::ManifestSet;
use kargo::core::model::Stage;
use kargo::core::pipeline::{
    MemoryStore, PromotionTrigger, VerificationInfo, VerificationPhase, Verifier,
};
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::notifications::{Notifier, NotifierOptions};
use kargo::sources::git::GitSource;
use kargo::steps::{BuiltinOptions, register_builtins_with};
use serde_json::Value as Json;

/// What the HTTP receiver keeps: the bodies it got, and how many requests came.
type Received = (Arc<Mutex<Vec<Json>>>, Arc<AtomicUsize>);

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository `name` on the server (under `root`) holding `files`; returns a work
/// clone pushing to it.
fn repo(tmp: &Path, root: &str, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let work = tmp.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for (path, content) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "initial"]);
    let bare = Path::new(root).join(format!("{name}.git"));
    let _ = std::fs::remove_dir_all(&bare);
    git(
        tmp,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    work
}

/// Fails the verification of any collection whose commit is `bad` (set by the test).
#[derive(Debug, Default, Clone)]
struct FailsOn(Arc<Mutex<Option<String>>>);

impl Verifier for FailsOn {
    fn verify<'a, 'b, 'c, 'd>(
        &'a self,
        _stage: &'b Stage,
        collection: &'c FreightCollection,
    ) -> Pin<Box<dyn std::future::Future<Output = VerificationInfo> + Send + 'd>>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
        Self: 'd,
    {
        let bad = self.0.lock().unwrap().clone();
        let hit = collection
            .references()
            .iter()
            .any(|r| r.commits.iter().any(|c| Some(&c.id) == bad.as_ref()));
        Box::pin(std::future::ready(VerificationInfo {
            phase: if hit {
                VerificationPhase::Failed
            } else {
                VerificationPhase::Successful
            },
            message: if hit {
                "smoke test failed".into()
            } else {
                String::new()
            },
            finished_at: chrono::Utc::now(),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_failing_verification_on_the_git_server_with_a_notification() {
    let test = "rollback_after_a_failing_verification_on_the_git_server_with_a_notification";
    let vars: Vec<String> = [
        "TEST_GIT_HTTP_URL",
        "TEST_GIT_ROOT",
        "TEST_GIT_HTTP_USER",
        "TEST_GIT_HTTP_PASSWORD",
    ]
    .iter()
    .filter_map(|v| kargo_core::testing::server_env(test, v))
    .collect();
    let [http, root, user, password] = vars.as_slice() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let app = repo(
        tmp.path(),
        root,
        &format!("gov-app-{id}"),
        &[("VERSION", "1\n")],
    );
    let gitops_name = format!("gov-gitops-{id}");
    repo(
        tmp.path(),
        root,
        &gitops_name,
        &[(
            "env/staging/values.yaml",
            "commit: none # set by promotion\n",
        )],
    );
    let gitops_bare = Path::new(root).join(format!("{gitops_name}.git"));
    let app_url = format!("{http}/gov-app-{id}.git");
    let gitops_url = format!("{http}/{gitops_name}.git");

    // The HTTP receiver: 500 first, then 200.
    let requests: Arc<Mutex<Vec<Json>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let app_router = Router::new()
        .fallback(
            |State((requests, count)): State<Received>, body: Bytes| async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                requests
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Json::Null));
                if n == 0 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            },
        )
        .with_state((requests.clone(), count.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app_router).await.unwrap() });

    let manifests = format!(
        r#"apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {{name: gov}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {{name: gov, namespace: gov}}
spec:
  promotionPolicies:
  - stageSelector: {{name: staging}}
    autoPromotionEnabled: true
    autoRollback: {{}}
---
apiVersion: v1
kind: Secret
metadata:
  name: gitops
  namespace: gov
  labels: {{kargo.akuity.io/cred-type: git}}
stringData: {{repoURL: "{gitops_url}", username: "{user}", password: "{password}"}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {{name: app, namespace: gov}}
spec:
  subscriptions:
  - git: {{repoURL: "{app_url}", branch: main}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: staging, namespace: gov}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: "{gitops_url}"
          checkout: [{{branch: main, path: ./repo}}]
      - uses: yaml-update
        as: values
        config:
          path: ./repo/env/staging/values.yaml
          updates: [{{key: commit, value: "${{{{ commitFrom('{app_url}').ID }}}}"}}]
      - uses: git-commit
        config:
          path: ./repo
          message: "${{{{ ctx.meta.promotion.rollback ? 'roll back' : 'promote' }}}} ${{{{ commitFrom('{app_url}').ID }}}}"
      - uses: git-push
        config: {{path: ./repo}}
  verification:
    analysisTemplates: [{{name: smoke}}]
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: hook, namespace: gov}}
spec:
  http: {{url: "{receiver}/events"}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: rollbacks, namespace: gov}}
spec:
  types: [PromotionSucceeded]
  when: "event.rollback"
  channels: [{{name: hook, kind: MessageChannel}}]
"#
    );
    let set = ManifestSet::from_yaml_str("gov.yaml", &manifests).unwrap();
    let cache = tmp.path().join("cache");
    let mut sources = SourceRegistry::new();
    sources
        .register(GitSource::new(kargo::git::GitConfig::new(&cache)))
        .unwrap();
    let mut steps = StepRegistry::new();
    register_builtins_with(&mut steps, &BuiltinOptions::new(&cache)).unwrap();
    let verifier = FailsOn::default();
    let notifier = Notifier::builder(&set, "gov")
        .with_options(NotifierOptions {
            initial_backoff: std::time::Duration::from_millis(20),
            max_backoff: std::time::Duration::from_millis(100),
            ..NotifierOptions::default()
        })
        .build()
        .unwrap();
    let controller = Controller::new(
        set,
        "gov",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_verifier(Arc::new(verifier.clone()))
    .with_events(Arc::new(notifier.clone()))
    .with_work_root(tmp.path().join("promotions"));

    // The first commit: promoted and verified; it is the stable Freight.
    let good = git(&app, &["rev-parse", "HEAD"]);
    git(&app, &["push", "-q", "origin", "main"]);
    controller.reconcile(true).await.unwrap();
    let on_server = |path: &str| git(&gitops_bare, &["show", &format!("main:{path}")]);
    assert!(on_server("env/staging/values.yaml").contains(&good));

    // The second commit fails its verification: promoted, then rolled back.
    std::fs::write(app.join("VERSION"), "2\n").unwrap();
    git(&app, &["commit", "-q", "-am", "v2"]);
    let bad = git(&app, &["rev-parse", "HEAD"]);
    git(&app, &["push", "-q", "origin", "main"]);
    *verifier.0.lock().unwrap() = Some(bad.clone());
    controller.reconcile(true).await.unwrap();

    let values = on_server("env/staging/values.yaml");
    assert!(
        values.contains(&good),
        "rolled back on the server: {values}"
    );
    let log = git(&gitops_bare, &["log", "--format=%s", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects[..3],
        [
            format!("roll back {good}").as_str(),
            format!("promote {bad}").as_str(),
            format!("promote {good}").as_str()
        ],
        "three commits, the rollback a new one: {log}"
    );
    let state = controller.state().await.unwrap();
    let last = state.promotions.last().unwrap();
    assert_eq!(last.trigger, PromotionTrigger::Rollback);

    // The rollback's event reached the receiver after one retry; nothing else was sent.
    notifier.flush().await;
    let got = requests.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "a 500, then the retry: {got:?}");
    assert_eq!(got[0], got[1], "the same event again");
    assert_eq!(got[1]["type"], "io.kargo.event.PromotionSucceeded");
    assert_eq!(got[1]["data"]["rollback"], true);
    assert_eq!(got[1]["data"]["stageName"], "staging");
    assert_eq!(notifier.delivered(), 1);
}
