//! `kargo::testing::PromotionTest`: custom steps, Freight builders, generated branches,
//! dry runs and errors (needs `--features testing`; ci/test.sh passes `--all-features`).

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, missing_docs)]

use async_trait::async_trait;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome};
use kargo::testing::{PromotionTest, TestError};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");

/// A Stage and its task only (no Project, no Warehouse): the project is the Stage's
/// namespace. `stamp` is a custom step writing a file.
const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: PromotionTask
metadata: {name: bump, namespace: shop}
spec:
  steps:
  - uses: git-clone
    config:
      repoURL: https://git.example/gitops.git
      checkout: [{branch: main, path: ./repo}]
  - uses: yaml-update
    config:
      path: ./repo/env/prod/values.yaml
      updates:
      - {key: image.tag, value: "${{ imageFrom('ghcr.io/acme/guestbook').Tag }}"}
  - uses: stamp
    config:
      path: ./repo/STAMP
      text: "${{ ctx.meta.promotion.actor }} chart ${{ chartFrom('oci://ghcr.io/acme/charts/guestbook').Version }}"
  - uses: git-commit
    config: {path: ./repo, message: "bump prod"}
  - uses: git-push
    as: push
    config: {path: ./repo, generateTargetBranch: true}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: guestbook}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - task: {name: bump}
        as: bump
"#;

struct Stamp;

#[derive(serde::Deserialize)]
struct StampConfig {
    path: String,
    text: String,
}

#[async_trait]
impl Step for Stamp {
    const KIND: &'static str = "stamp";
    type Config = StampConfig;
    async fn run(&self, ctx: &StepContext, cfg: StampConfig) -> Result<StepOutcome, StepError> {
        std::fs::write(ctx.path(&cfg.path)?, format!("{}\n", cfg.text))
            .map_err(|e| StepError::terminal(e.to_string()))?;
        Ok(StepOutcome::succeeded())
    }
}

fn test() -> PromotionTest {
    PromotionTest::new(MANIFESTS)
        .stage("prod")
        .image("ghcr.io/acme/guestbook", "2.0.0")
        .chart("oci://ghcr.io/acme/charts/guestbook", "", "0.5.0")
        .gitops_dir(FIXTURE)
        .step(Stamp)
        .actor("alice")
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_steps_builders_and_generated_branches() {
    let o = test().run().await.unwrap();
    assert!(o.succeeded(), "{:#?}", o.result);
    let branch = o.branch.clone().unwrap();
    assert!(branch.starts_with("kargo/promotion/prod."), "{branch}");
    assert_eq!(
        o.output("bump::push", "branch").unwrap(),
        &serde_json::json!(branch)
    );
    assert_eq!(o.files["STAMP"], "alice chart 0.5.0\n");
    let values = &o.files["env/prod/values.yaml"];
    assert!(values.contains("tag: \"2.0.0\""), "{values}");
    // The fixture's other files are in the tree, unchanged.
    assert_eq!(
        o.files["env/dev/values.yaml"],
        std::fs::read_to_string(format!("{FIXTURE}/env/dev/values.yaml")).unwrap()
    );
    assert_eq!(
        o.diffs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["STAMP", "env/prod/values.yaml"]
    );
    assert!(o.diffs["STAMP"].starts_with("--- /dev/null\n+++ b/STAMP\n"));
    assert_eq!(o.commits, ["bump prod"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reports_the_same_change() {
    let real = test().run().await.unwrap();
    let dry = test().dry_run(true).run().await.unwrap();
    assert!(dry.succeeded(), "{:#?}", dry.result);
    assert_eq!(dry.diffs, real.diffs);
    assert_eq!(dry.files, real.files);
    assert_eq!(dry.commits, real.commits);
    assert!(dry.branch.unwrap().starts_with("kargo/promotion/prod."));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_what_is_missing() {
    let e = PromotionTest::new(MANIFESTS).run().await.unwrap_err();
    assert!(matches!(e, TestError::NoStage), "{e}");
    let e = PromotionTest::new(MANIFESTS)
        .stage("qa")
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e, TestError::UnknownStage(_)), "{e}");
    let e = PromotionTest::new("kind: Nonsense")
        .stage("prod")
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e, TestError::Manifests(_)), "{e}");
    // Without the custom step, the promotion runs and errors on the unknown step.
    let o = PromotionTest::new(MANIFESTS)
        .stage("prod")
        .image("ghcr.io/acme/guestbook", "2.0.0")
        .chart("oci://ghcr.io/acme/charts/guestbook", "", "0.5.0")
        .gitops_dir(FIXTURE)
        .run()
        .await
        .unwrap();
    assert!(!o.succeeded());
    assert!(o.commits.is_empty() && o.diffs.is_empty() && o.branch.is_none());
}
