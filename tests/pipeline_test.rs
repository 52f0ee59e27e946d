//! `kargo::testing::PipelineTest`: whole pipelines offline, on the real controller
//! (needs `--features testing`). Most tests run `examples/fixtures/pipeline.yaml` (dev →
//! staging → prod, an hour's soak before prod) against `examples/fixtures/gitops`. Each
//! prints its time (`-- --nocapture`).

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::time::Instant;

use chrono::Duration;
use kargo::controller::ControllerError;
use kargo::core::PromotionPhase;
use kargo::core::pipeline::{PipelineError, PromotionTrigger, VerificationPhase};
use kargo::testing::{PipelineRun, PipelineTest, Verdict, Wait, WaitReason};

const MANIFESTS: &str = include_str!("../examples/fixtures/pipeline.yaml");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");
const APP: &str = "ghcr.io/acme/guestbook";

async fn pipeline() -> PipelineRun {
    PipelineTest::new(MANIFESTS)
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap()
}

/// Prints how long the test took since `start`.
fn took(name: &str, start: Instant) {
    eprintln!("{name}: {} ms", start.elapsed().as_millis());
}

fn tag_line(tag: &str) -> String {
    format!("tag: \"{tag}\"   # set by promotion")
}

#[tokio::test]
async fn auto_promotion_to_dev() {
    let t = Instant::now();
    let p = pipeline().await;
    p.verification("dev", Verdict::Pending); // keep the change in dev
    p.publish_image(APP, "1.0.0");
    let report = p.reconcile().await.unwrap();
    assert_eq!(report.promotions.len(), 1);
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    assert_eq!(p.image_tag("staging", APP), None);
    assert!(
        p.pushed_file("env/dev/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.0"))
    );
    assert!(
        p.pushed_file("env/staging/values.yaml")
            .unwrap()
            .contains(&tag_line("0.9.0"))
    );
    assert_eq!(p.commits().unwrap().len(), 1);
    let dev = p.promotions("dev");
    assert_eq!(
        (dev.len(), dev[0].trigger, dev[0].phase),
        (1, PromotionTrigger::Auto, PromotionPhase::Succeeded)
    );
    // Nothing new: nothing moves, even after the Warehouse's interval.
    assert!(
        p.advance(Duration::minutes(10))
            .await
            .unwrap()
            .promotions
            .is_empty()
    );
    took("auto_promotion_to_dev", t);
}

#[tokio::test]
async fn prod_only_after_dev_is_verified() {
    let t = Instant::now();
    let p = pipeline().await;
    p.verification("dev", Verdict::Pending);
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    let alias = p.freight_of(APP, "1.0.0").unwrap();
    let unverified = Wait {
        warehouse: "guestbook".into(),
        freight: alias.clone(),
        reason: WaitReason::Unverified {
            upstream: "dev".into(),
            failed: false,
        },
    };
    assert_eq!(p.waiting("staging"), [unverified]);
    p.advance(Duration::hours(2)).await.unwrap();
    assert_eq!(p.image_tag("staging", APP), None);
    assert_eq!(p.image_tag("prod", APP), None);
    let e = p.promote("prod", &alias).await.unwrap_err();
    assert!(
        matches!(
            e,
            ControllerError::Pipeline(PipelineError::NotAvailable { .. })
        ),
        "{e}"
    );

    // dev's verdict arrives: staging follows at once, prod an hour later.
    let promoted = p.verify("dev", true).await.unwrap();
    assert_eq!(
        promoted
            .iter()
            .map(|r| r.request.stage.as_str())
            .collect::<Vec<_>>(),
        ["staging"]
    );
    p.advance(Duration::hours(1)).await.unwrap();
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));
    assert!(
        p.pushed_file("env/prod/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.0"))
    );
    took("prod_only_after_dev_is_verified", t);
}

#[tokio::test]
async fn required_soak_time_is_honoured() {
    let t = Instant::now();
    let p = pipeline().await;
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"));
    let soaking = |minutes: u64| WaitReason::Soaking {
        upstream: "staging".into(),
        remaining: std::time::Duration::from_secs(minutes * 60),
    };
    assert_eq!(p.waiting("prod")[0].reason, soaking(60));
    p.advance(Duration::minutes(59)).await.unwrap();
    assert_eq!(p.image_tag("prod", APP), None);
    assert_eq!(p.waiting("prod")[0].reason, soaking(1));
    assert!(
        p.pushed_file("env/prod/values.yaml")
            .unwrap()
            .contains(&tag_line("0.9.0"))
    );
    let report = p.advance(Duration::minutes(1)).await.unwrap();
    assert_eq!(report.promotions.len(), 1);
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));
    assert!(
        p.pushed_file("env/prod/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.0"))
    );
    assert!(p.waiting("prod").is_empty());
    took("required_soak_time_is_honoured", t);
}

#[tokio::test]
async fn a_soak_that_ends_within_an_advance_promotes_at_its_end() {
    let t = Instant::now();
    let p = pipeline().await;
    p.publish_image(APP, "1.0.0");
    let start = p.now();
    p.advance(Duration::hours(3)).await.unwrap();
    // The Warehouse found the image at once, staging had it at once: prod an hour later,
    // not at the end of the three hours.
    let prod = p.promotions("prod");
    assert_eq!(prod.len(), 1);
    assert_eq!(prod[0].finished_at - start, Duration::hours(1));
    took("a_soak_that_ends_within_an_advance_promotes_at_its_end", t);
}

#[tokio::test]
async fn freight_must_be_approved_to_skip_upstream() {
    let t = Instant::now();
    let p = pipeline().await;
    // A hotfix: dev's verification never ends, so staging never gets it.
    p.verification("dev", Verdict::Pending);
    p.publish_image(APP, "1.0.1");
    p.reconcile().await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.0.1"));
    let hotfix = p.freight_of(APP, "1.0.1").unwrap();
    let waits = p.waiting("prod");
    assert_eq!(waits[0].freight, hotfix);
    assert_eq!(
        waits[0].reason,
        WaitReason::NotUpstream {
            stages: vec!["staging".into()]
        }
    );
    assert!(p.promote("prod", &hotfix).await.is_err());

    // Approved for prod, it is promoted there at once (auto-promotion is on), past staging.
    let promoted = p.approve("prod", &hotfix).await.unwrap();
    assert_eq!(promoted.len(), 1);
    assert_eq!(p.image_tag("prod", APP), Some("1.0.1"));
    assert_eq!(p.image_tag("staging", APP), None);
    assert!(
        p.pushed_file("env/prod/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.1"))
    );
    assert!(
        p.pushed_file("env/staging/values.yaml")
            .unwrap()
            .contains(&tag_line("0.9.0"))
    );
    took("freight_must_be_approved_to_skip_upstream", t);
}

#[tokio::test]
async fn a_manual_promotion_holds_auto_promotion() {
    let t = Instant::now();
    let p = pipeline().await;
    p.verification("dev", Verdict::Pending); // only dev matters here
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    p.publish_image(APP, "1.1.0");
    p.advance(Duration::minutes(5)).await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.1.0"));

    // Back to 1.0.0 by hand: dev stays there when 1.2.0 comes.
    let old = p.freight_of(APP, "1.0.0").unwrap();
    let manual = p.promote("dev", &old).await.unwrap();
    assert_eq!(manual[0].request.trigger, PromotionTrigger::Manual);
    p.publish_image(APP, "1.2.0");
    p.advance(Duration::minutes(5)).await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    let newest = p.freight_of(APP, "1.2.0").unwrap();
    let waits = p.waiting("dev");
    assert_eq!(waits[0].freight, newest);
    assert!(
        matches!(waits[0].reason, WaitReason::Held { ref promotion } if *promotion == manual[0].request.name)
    );
    assert!(
        p.pushed_file("env/dev/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.0"))
    );

    // Promoting the newest by hand lifts the hold: 1.3.0 then flows on its own.
    p.promote("dev", &newest).await.unwrap();
    p.publish_image(APP, "1.3.0");
    p.advance(Duration::minutes(5)).await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.3.0"));
    took("a_manual_promotion_holds_auto_promotion", t);
}

#[tokio::test]
async fn rollback_restores_the_previous_freight() {
    let t = Instant::now();
    let p = pipeline().await;
    p.verification("dev", Verdict::Pending);
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    p.publish_image(APP, "1.1.0");
    p.advance(Duration::minutes(5)).await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.1.0"));

    let r = p.rollback("dev").await.unwrap();
    assert_eq!(r[0].request.trigger, PromotionTrigger::Rollback);
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    assert!(
        p.pushed_file("env/dev/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.0"))
    );
    let triggers: Vec<_> = p.promotions("dev").iter().map(|r| r.trigger).collect();
    assert_eq!(
        triggers,
        [
            PromotionTrigger::Auto,
            PromotionTrigger::Auto,
            PromotionTrigger::Rollback
        ]
    );
    // A rollback is a new commit, never a rewrite.
    assert_eq!(p.commits().unwrap().len(), 3);
    took("rollback_restores_the_previous_freight", t);
}

#[tokio::test]
async fn a_failed_verification_blocks_downstream() {
    let t = Instant::now();
    let p = PipelineTest::new(MANIFESTS)
        .gitops_dir(FIXTURE)
        .verification("dev", Verdict::Fail)
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.advance(Duration::hours(2)).await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    assert_eq!(
        p.verification_of("dev").unwrap().phase,
        VerificationPhase::Failed
    );
    assert_eq!(p.image_tag("staging", APP), None);
    assert_eq!(p.image_tag("prod", APP), None);
    let waits = p.waiting("staging");
    assert_eq!(
        waits[0].reason,
        WaitReason::Unverified {
            upstream: "dev".into(),
            failed: true
        }
    );
    assert!(
        p.pushed_file("env/staging/values.yaml")
            .unwrap()
            .contains(&tag_line("0.9.0"))
    );
    assert!(p.promotions("staging").is_empty());

    // The next build passes: it goes all the way.
    p.verification("dev", Verdict::Pass);
    p.publish_image(APP, "1.0.1");
    p.advance(Duration::hours(2)).await.unwrap();
    assert_eq!(p.image_tag("prod", APP), Some("1.0.1"));
    took("a_failed_verification_blocks_downstream", t);
}

const TWO_WAREHOUSES: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: shop, namespace: shop}
spec:
  promotionPolicies:
  - stageSelector: {name: "glob:*"}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: shop}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: chart, namespace: shop}
spec:
  interval: 1h
  subscriptions:
  - chart: {repoURL: oci://ghcr.io/acme/charts/shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  - origin: {kind: Warehouse, name: chart}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: https://git.example/gitops.git
          checkout: [{branch: main, path: ./repo}]
      - uses: yaml-update
        config:
          path: ./repo/values.yaml
          updates:
          - {key: image.tag, value: "${{ imageFrom('ghcr.io/acme/shop').Tag }}"}
          - {key: chart.version, value: "${{ chartFrom('oci://ghcr.io/acme/charts/shop').Version }}"}
      - uses: git-commit
        config: {path: ./repo, message: "dev: image ${{ imageFrom('ghcr.io/acme/shop').Tag }}, chart ${{ chartFrom('oci://ghcr.io/acme/charts/shop').Version }}"}
      - uses: git-push
        config: {path: ./repo}
"#;

#[tokio::test]
async fn a_stage_takes_freight_from_two_warehouses() {
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("values.yaml"),
        "image:\n  tag: \"0\"\nchart:\n  version: \"0\"\n",
    )
    .unwrap();
    let p = PipelineTest::new(TWO_WAREHOUSES)
        .gitops_dir(dir.path())
        .build()
        .await
        .unwrap();
    let chart = "oci://ghcr.io/acme/charts/shop";
    p.publish_image("ghcr.io/acme/shop", "2.0.0");
    p.publish_chart(chart, "", "0.5.0");
    p.reconcile().await.unwrap();
    assert_eq!(p.image_tag("dev", "ghcr.io/acme/shop"), Some("2.0.0"));
    assert_eq!(p.chart_version("dev", chart, ""), Some("0.5.0"));
    assert_eq!(p.freight_in("dev").len(), 2);
    let values = p.pushed_file("values.yaml").unwrap();
    assert!(
        values.contains("tag: \"2.0.0\"") && values.contains("version: \"0.5.0\""),
        "{values}"
    );

    // A new chart: only the chart Warehouse is refreshed, the image stays.
    p.publish_chart(chart, "", "0.6.0");
    p.refresh("chart").await.unwrap();
    assert_eq!(p.chart_version("dev", chart, ""), Some("0.6.0"));
    assert_eq!(p.image_tag("dev", "ghcr.io/acme/shop"), Some("2.0.0"));
    assert_eq!(
        p.commits().unwrap().last().unwrap(),
        "dev: image 2.0.0, chart 0.6.0"
    );
    took("a_stage_takes_freight_from_two_warehouses", t);
}

#[tokio::test]
async fn a_manual_stage_waits_for_a_promotion() {
    let t = Instant::now();
    let manual_prod = MANIFESTS.replace("glob:*", "regex:^(dev|staging)$");
    let p = PipelineTest::new(manual_prod)
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.advance(Duration::hours(2)).await.unwrap();
    let alias = p.freight_of(APP, "1.0.0").unwrap();
    let waits = p.waiting("prod");
    assert_eq!(
        (waits[0].freight.as_str(), &waits[0].reason),
        (alias.as_str(), &WaitReason::ManualPromotion)
    );
    p.promote("prod", &alias).await.unwrap();
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));
    assert_eq!(p.promotions("prod")[0].trigger, PromotionTrigger::Manual);
    assert!(p.waiting("prod").is_empty());
    took("a_manual_stage_waits_for_a_promotion", t);
}

#[tokio::test]
async fn errors_name_what_is_missing() {
    use kargo::testing::TestError;
    let two = format!("{MANIFESTS}\n---\n{TWO_WAREHOUSES}");
    let e = PipelineTest::new(two.as_str()).build().await.unwrap_err();
    assert!(
        matches!(&e, TestError::NoProject(names) if names == &["guestbook", "shop"]),
        "{e}"
    );
    let e = PipelineTest::new(two.as_str())
        .project("nope")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, TestError::UnknownProject(_)), "{e}");
    let p = PipelineTest::new(two.as_str())
        .project("shop")
        .build()
        .await
        .unwrap();
    assert!(matches!(
        p.pushed_file("values.yaml"),
        Err(TestError::NoFixture)
    ));

    let p = pipeline().await;
    assert!(matches!(
        p.pushed_file("nope.yaml"),
        Err(TestError::NoFile { .. })
    ));
    assert!(matches!(p.commits_on("nope"), Err(TestError::NoBranch(_))));
    assert_eq!(p.commits().unwrap(), Vec::<String>::new());
    assert!(
        p.pushed_file("README.md")
            .unwrap()
            .starts_with("# GitOps repository")
    );
    assert!(p.waiting("dev").is_empty() && p.freight_in("dev").is_empty());
}
