//! `Controller::dry_run` against a local bare GitOps repository (file://): the report's
//! diffs and planned commit, an untouched remote and state store, the same result as the
//! real promotion afterwards, the same errors as `promote`, and `generateTargetBranch`.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::path::Path;
use std::sync::Arc;
use support::git;

use kargo::controller::{Controller, ControllerError, RefreshOutcome};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{MemoryStore, PipelineError};
use kargo::core::runner::StepExecutionStatus;
use kargo::core::source::SourceRegistry;
use kargo::core::{Runner, StepRegistry};
use kargo::sources::memory::{MemorySource, image};
use kargo::steps::{BuiltinOptions, register_builtins_with};
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
kind: PromotionTask
metadata: {name: update, namespace: demo}
spec:
  steps:
  - uses: git-clone
    config:
      repoURL: GITOPS_URL
      checkout: [{branch: main, path: ./repo}]
  - uses: yaml-update
    as: values
    config:
      path: ./repo/env/${{ ctx.stage }}/values.yaml
      updates:
      - key: image.tag
        value: ${{ imageFrom('ghcr.io/acme/app').Tag }}
  - uses: git-commit
    config:
      path: ./repo
      message: ${{ task.outputs.values.commitMessage }}
  - uses: git-push
    as: push
    config: {path: ./repo}
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
      - task: {name: update}
        as: update
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
      - task: {name: update}
        as: update
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: preview, namespace: demo}
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
        config:
          path: ./repo/env/dev/values.yaml
          updates: [{key: image.tag, value: "${{ imageFrom('ghcr.io/acme/app').Tag }}"}]
      - uses: git-commit
        config: {path: ./repo, message: preview}
      - uses: git-push
        as: push
        config: {path: ./repo, generateTargetBranch: true}
"#;

const VALUES: &str = "# dev values\nimage:\n  repository: ghcr.io/acme/app\n  tag: \"0.9.0\" # promoted\nreplicas: 1\n";

struct Setup {
    controller: Controller,
    remote: std::path::PathBuf,
    url: String,
    _tmp: TempDir,
}

/// A bare remote with `env/{dev,prod}/values.yaml`, a controller over it, and Freight
/// for `ghcr.io/acme/app:1.0.0` (alias returned).
async fn setup() -> (Setup, String) {
    let tmp = TempDir::new().unwrap();
    let seed = tmp.path().join("seed");
    for env in ["dev", "prod"] {
        std::fs::create_dir_all(seed.join("env").join(env)).unwrap();
        std::fs::write(seed.join("env").join(env).join("values.yaml"), VALUES).unwrap();
    }
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    let remote = tmp.path().join("gitops.git");
    git(
        tmp.path(),
        &["clone", "-q", "--bare", "seed", remote.to_str().unwrap()],
    );
    let url = format!("file://{}", remote.display());

    let mem = MemorySource::new();
    mem.set_images("ghcr.io/acme/app", vec![image("1.0.0", "sha256:a")]);
    let mut sources = SourceRegistry::new();
    mem.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    let options = BuiltinOptions::new(tmp.path().join("cache"));
    register_builtins_with(&mut steps, &options).unwrap();
    let set =
        ManifestSet::from_yaml_str("demo.yaml", &MANIFESTS.replace("GITOPS_URL", &url)).unwrap();
    let controller = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_work_root(tmp.path().join("work"));
    let RefreshOutcome::Created(f) = controller.refresh("app").await.unwrap() else {
        panic!("no Freight");
    };
    (
        Setup {
            controller,
            remote,
            url,
            _tmp: tmp,
        },
        f.alias.unwrap(),
    )
}

/// The unified diff of one file between two revisions of the remote, from `---` on (the
/// `diff --git` and `index` lines dropped).
fn remote_diff(remote: &Path, from: &str, to: &str, path: &str) -> String {
    let d = git(remote, &["diff", from, to, "--", path]);
    let start = d.find("--- ").unwrap();
    d[start..].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reports_the_diff_and_commit_and_changes_nothing() {
    let (s, alias) = setup().await;
    let c = &s.controller;
    let refs_before = git(&s.remote, &["show-ref"]);
    let state_before = c.state().await.unwrap();

    let report = c
        .dry_run("dev", &alias, Some("alice".into()))
        .await
        .unwrap();
    assert!(report.succeeded(), "{:#?}", report.result);
    assert_eq!(report.request.stage, "dev");
    assert_eq!(report.request.actor.as_deref(), Some("alice"));
    assert_eq!(
        report.result.step("update::push").unwrap().status,
        StepExecutionStatus::Skipped
    );

    // One file, with its unified diff.
    assert_eq!(report.files.len(), 1, "{:#?}", report.files);
    let file = &report.files[0];
    assert_eq!(file.repo_url, s.url);
    assert_eq!(file.path, "env/dev/values.yaml");
    assert_eq!(
        file.diff,
        "--- a/env/dev/values.yaml\n+++ b/env/dev/values.yaml\n@@ -1,5 +1,5 @@\n \
         # dev values\n image:\n   repository: ghcr.io/acme/app\n-  tag: \"0.9.0\" # promoted\n\
         +  tag: \"1.0.0\" # promoted\n replicas: 1\n"
    );

    // One planned commit to main.
    assert_eq!(report.pushes.len(), 1);
    let push = &report.pushes[0];
    assert_eq!(push.repo_url, s.url);
    assert_eq!(push.branch, "main");
    assert_eq!(push.tag, None);
    assert_eq!(push.step, "update::push");
    assert_eq!(
        report.result.state["update::push"]["commit"],
        serde_json::json!(push.commit)
    );
    assert!(push.message.contains("1.0.0"), "{}", push.message);

    // Nothing moved: the remote's refs and the state store are as they were.
    assert_eq!(git(&s.remote, &["show-ref"]), refs_before);
    assert_eq!(c.state().await.unwrap(), state_before);

    // The real promotion produces what the dry run announced.
    let reports = c.promote("dev", &alias, None).await.unwrap();
    assert!(reports[0].succeeded(), "{:#?}", reports[0].result);
    assert_eq!(
        remote_diff(&s.remote, "main~1", "main", "env/dev/values.yaml"),
        file.diff
    );
    let message = git(&s.remote, &["log", "-1", "--format=%B", "main"]);
    assert_eq!(message.trim_end(), push.message.trim_end());
    assert_eq!(
        git(&s.remote, &["diff", "--name-only", "main~1", "main"]).trim(),
        "env/dev/values.yaml"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_of_unavailable_freight_fails_like_promote() {
    let (s, alias) = setup().await;
    let c = &s.controller;
    let dry = c.dry_run("prod", &alias, None).await.unwrap_err();
    let real = c.promote("prod", &alias, None).await.unwrap_err();
    assert!(
        matches!(
            dry,
            ControllerError::Pipeline(PipelineError::NotAvailable { .. })
        ),
        "{dry}"
    );
    assert_eq!(dry.to_string(), real.to_string());
    let dry = c.dry_run("dev", "no-such-freight", None).await.unwrap_err();
    let real = c.promote("dev", "no-such-freight", None).await.unwrap_err();
    assert!(
        matches!(
            dry,
            ControllerError::Pipeline(PipelineError::UnknownFreight(_))
        ),
        "{dry}"
    );
    assert_eq!(dry.to_string(), real.to_string());
    let dry = c.dry_run("nowhere", &alias, None).await.unwrap_err();
    let real = c.promote("nowhere", &alias, None).await.unwrap_err();
    assert_eq!(dry.to_string(), real.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reports_the_generated_target_branch() {
    let (s, alias) = setup().await;
    let report = s.controller.dry_run("preview", &alias, None).await.unwrap();
    assert!(report.succeeded(), "{:#?}", report.result);
    assert_eq!(report.pushes.len(), 1);
    let branch = &report.pushes[0].branch;
    assert_eq!(branch, &format!("kargo/promotion/{}", report.request.name));
    assert!(branch.starts_with("kargo/promotion/preview."), "{branch}");
    assert_eq!(
        report.result.state["push"]["branch"],
        serde_json::json!(branch)
    );
    assert_eq!(report.files.len(), 1);
    assert!(
        !git(&s.remote, &["show-ref"]).contains("kargo/promotion"),
        "no branch was pushed"
    );
}
