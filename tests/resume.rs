//! A promotion whose runner dies after an outside effect is resumed by another
//! controller on the same state store without repeating it: a real git remote (a bare
//! repository over file://) and a local HTTP server that counts requests. The first
//! controller's promotion (git-clone, yaml-update, git-commit, git-push, http) is dropped
//! right after the state recorded the push; a second controller resumes it: the remote
//! gets exactly one new commit, the server exactly one request, and the promotion ends
//! Succeeded exactly once.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

#[path = "../kargo-steps/tests/support/fake_http.rs"]
mod fake_http;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fake_http::{Req, Resp, serve};
use kargo::controller::{Controller, RefreshOutcome};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{
    FileStore, ProjectState, Revision, StageLease, StateError, StateStore,
};
use kargo::core::runner::{PromotionProgress, StepExecutionStatus};
use kargo::core::source::SourceRegistry;
use kargo::core::{PromotionPhase, Runner, StepRegistry};
use kargo::sources::memory::{MemorySource, image};
use kargo::steps::{BuiltinOptions, register_builtins_with};
use support::git;
use tempfile::TempDir;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
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
      - uses: git-clone
        config:
          repoURL: GITOPS_URL
          checkout: [{branch: main, path: ./repo}]
      - uses: yaml-update
        as: values
        config:
          path: ./repo/env/dev/values.yaml
          updates: [{key: image.tag, value: "${{ imageFrom('ghcr.io/acme/app').Tag }}"}]
      - uses: git-commit
        as: commit
        config: {path: ./repo, message: "${{ outputs.values.commitMessage }}"}
      - uses: git-push
        as: push
        config: {path: ./repo}
      - uses: http
        as: notify
        config:
          method: POST
          url: HTTP_URL/deployed
          body: 'commit=${{ outputs.push.commit }}'
"#;

const VALUES: &str = "image:\n  repository: ghcr.io/acme/app\n  tag: \"0.9.0\"\n";

/// A state store that "kills" its writer right after the write that records the step
/// `after` as finished: that write is made, then the write never returns (the test drops
/// the promotion's future there, as a dying process would stop).
struct DieAfter {
    after: &'static str,
    inner: FileStore,
    armed: AtomicBool,
    died: tokio::sync::Notify,
}

#[async_trait]
impl StateStore for DieAfter {
    async fn load(&self, project: &str) -> Result<(ProjectState, Revision), StateError> {
        self.inner.load(project).await
    }

    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: Revision,
    ) -> Result<Revision, StateError> {
        self.inner.store(project, state, expected).await
    }

    async fn try_lease(
        &self,
        project: &str,
        stage: &str,
    ) -> Result<Option<StageLease>, StateError> {
        self.inner.try_lease(project, stage).await
    }

    async fn update(
        &self,
        project: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        let state = self.inner.update(project, change).await?;
        let pushed = state.progress.values().any(|p| {
            p.step(self.after)
                .is_some_and(PromotionProgress::is_finished)
        });
        if pushed && self.armed.swap(false, Ordering::SeqCst) {
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(state)
    }
}

struct Setup {
    tmp: TempDir,
    remote: std::path::PathBuf,
    manifests: String,
}

impl Setup {
    fn controller(&self, store: Arc<dyn StateStore>) -> Controller {
        let mem = MemorySource::new();
        mem.set_images("ghcr.io/acme/app", vec![image("1.0.0", "sha256:a")]);
        let mut sources = SourceRegistry::new();
        mem.register_into(&mut sources).unwrap();
        let mut steps = StepRegistry::new();
        register_builtins_with(
            &mut steps,
            &BuiltinOptions::new(self.tmp.path().join("cache")),
        )
        .unwrap();
        let set = ManifestSet::from_yaml_str("demo.yaml", &self.manifests).unwrap();
        Controller::new(set, "demo", sources, Runner::new(steps), store)
            .unwrap()
            .with_work_root(self.tmp.path().join("work"))
    }

    fn state_dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("state")
    }
}

fn setup(http_url: &str) -> Setup {
    let tmp = TempDir::new().unwrap();
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(seed.join("env/dev")).unwrap();
    std::fs::write(seed.join("env/dev/values.yaml"), VALUES).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    let remote = tmp.path().join("gitops.git");
    git(
        tmp.path(),
        &["clone", "-q", "--bare", "seed", remote.to_str().unwrap()],
    );
    let manifests = MANIFESTS
        .replace("GITOPS_URL", &format!("file://{}", remote.display()))
        .replace("HTTP_URL", http_url);
    Setup {
        tmp,
        remote,
        manifests,
    }
}

fn commits_on_main(remote: &Path) -> Vec<String> {
    git(remote, &["rev-list", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_dropped_after_its_push_resumes_without_pushing_or_calling_again() {
    dropped_after_then_resumed("push").await;
}

/// Dropped after its last step: resuming records the end without running anything again
/// (a restart from the first step would send the request a second time).
#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_dropped_after_its_http_call_resumes_without_calling_again() {
    dropped_after_then_resumed("notify").await;
}

async fn dropped_after_then_resumed(after: &'static str) {
    let srv = serve(Arc::new(|_r: &Req| Resp::text(200, "ok"))).await;
    let s = setup(&srv.url);
    let store = Arc::new(DieAfter {
        after,
        inner: FileStore::open(s.state_dir()).unwrap(),
        armed: AtomicBool::new(true),
        died: tokio::sync::Notify::new(),
    });
    let c1 = s.controller(store.clone());
    let RefreshOutcome::Created(f) = c1.refresh("app").await.unwrap() else {
        panic!("no Freight");
    };
    let freight = f.name.to_string();

    // The first runner: dropped right after the state recorded its push.
    let running = tokio::spawn({
        let c1 = c1.clone();
        async move { c1.promote("dev", &freight, None).await }
    });
    tokio::time::timeout(Duration::from_secs(120), store.died.notified())
        .await
        .expect("the promotion never recorded its push");
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());

    assert_eq!(commits_on_main(&s.remote).len(), 2, "seed + the promotion");
    let pushed = commits_on_main(&s.remote)[0].clone();
    let calls_before = usize::from(after == "notify");
    assert_eq!(
        srv.requests().len(),
        calls_before,
        "the http step ran iff it was reached"
    );
    let state = c1.state().await.unwrap();
    let name = state.stages["dev"]
        .current_promotion
        .as_ref()
        .expect("the promotion is left running")
        .name
        .clone();
    let progress = state.progress[&name].clone();
    let resume_at = (after == "push").then_some("notify");
    assert_eq!(progress.resume_point().map(|r| r.alias.as_str()), resume_at);

    // The second runner, on the same state directory, resumes it.
    let c2 = s.controller(Arc::new(FileStore::open(s.state_dir()).unwrap()));
    let reports = c2.auto_promote().await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.request.name, name);
    assert!(r.succeeded(), "{:#?}", r.result);
    assert!(
        r.result
            .steps
            .iter()
            .all(|s| s.status == StepExecutionStatus::Succeeded),
        "{:#?}",
        r.result.steps
    );
    assert_eq!(r.result.state["push"]["commit"], pushed.as_str());
    // The finished steps keep their first run's record (run again from its first step,
    // git-commit would have found nothing to commit).
    for alias in ["commit", "push"] {
        assert_eq!(
            r.result.step(alias).unwrap().started_at,
            progress.step(alias).unwrap().started_at,
            "{alias}"
        );
    }

    // Exactly one new commit, with the change; exactly one request, naming it.
    let commits = commits_on_main(&s.remote);
    assert_eq!(commits.len(), 2, "no second commit was pushed");
    assert_eq!(commits[0], pushed);
    let values = git(&s.remote, &["show", "main:env/dev/values.yaml"]);
    assert!(values.contains("tag: \"1.0.0\""), "{values}");
    let requests = srv.requests();
    assert_eq!(requests.len(), 1, "the http step ran once");
    assert_eq!(
        requests[0].header("idempotency-key"),
        Some(format!("{name}/notify").as_str())
    );
    assert_eq!(
        String::from_utf8_lossy(&requests[0].body),
        format!("commit={pushed}")
    );

    // Recorded Succeeded once; no progress left behind; nothing running.
    let state = c2.state().await.unwrap();
    let records: Vec<_> = state.promotions.iter().filter(|p| p.name == name).collect();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].phase, PromotionPhase::Succeeded);
    assert!(state.progress.is_empty(), "{:#?}", state.progress);
    assert!(state.stages["dev"].current_promotion.is_none());
    assert_eq!(state.stages["dev"].freight_history[0].promotion, name);
}
