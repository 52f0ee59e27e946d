//! Testing a whole pipeline offline with `kargo::testing::PipelineTest`.
//!
//! `examples/fixtures/pipeline.yaml` is a project as it is deployed: a Warehouse watching
//! `ghcr.io/acme/guestbook`, Stages dev → staging → prod (verification in dev and staging,
//! an hour's soak in staging before prod) sharing a PromotionTask that sets the image tag
//! in `env/<stage>/values.yaml` of the GitOps repository, commits and pushes.
//! `examples/fixtures/gitops/` is that repository's layout. The harness runs the real
//! controller with an in-memory state store, an in-memory registry the example publishes
//! to, a manual clock and verifications decided here, and pushes to a temporary copy of
//! the repository. The same checks written as `#[tokio::test]`s make the pipeline's test
//! suite (see `tests/pipeline_test.rs`); here they also print what happened.
//!
//! Run: `cargo run --example pipeline_test --features testing` (needs the `git` command).
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use chrono::Duration;
use kargo::testing::{PipelineRun, PipelineTest, Verdict};

const MANIFESTS: &str = include_str!("fixtures/pipeline.yaml");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");
const APP: &str = "ghcr.io/acme/guestbook";

fn show(p: &PipelineRun, when: &str) {
    println!("\n{when} (t = {}):", p.now().format("%H:%M"));
    for stage in ["dev", "staging", "prod"] {
        let tag = p.image_tag(stage, APP);
        println!("  {stage:<8} {}", tag.as_deref().unwrap_or("-"));
        for wait in p.waiting(stage) {
            println!("           waiting: {wait}");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let p = PipelineTest::new(MANIFESTS)
        .gitops_dir(FIXTURE)
        .build()
        .await?;

    // 1.0.0 is built: dev and staging take it at once, prod after an hour in staging.
    p.publish_image(APP, "1.0.0");
    p.reconcile().await?;
    show(&p, "1.0.0 published");
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"));
    assert_eq!(p.image_tag("prod", APP), None);
    p.advance(Duration::hours(1)).await?;
    show(&p, "an hour later");
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));

    // 1.1.0 fails its smoke test in dev: it goes no further.
    p.verification("dev", Verdict::Fail);
    p.publish_image(APP, "1.1.0");
    p.advance(Duration::minutes(5)).await?;
    show(&p, "1.1.0 published, its verification fails in dev");
    assert_eq!(p.image_tag("dev", APP), Some("1.1.0"));
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"));

    // 1.1.1 fixes it.
    p.verification("dev", Verdict::Pass);
    p.publish_image(APP, "1.1.1");
    p.advance(Duration::hours(2)).await?;
    show(&p, "1.1.1 published, two hours later");
    assert_eq!(p.image_tag("prod", APP), Some("1.1.1"));

    // What reached the GitOps repository.
    println!("\ncommits pushed to main:");
    for message in p.commits()? {
        // yaml-update's message: "Updated <file>", a blank line, "- <key>: <value>".
        let lines: Vec<&str> = message.lines().filter(|l| !l.is_empty()).collect();
        println!("  {}", lines.join("  "));
    }
    let prod = p.pushed_file("env/prod/values.yaml")?;
    assert!(
        prod.contains("tag: \"1.1.1\"   # set by promotion"),
        "{prod}"
    );
    println!("\nenv/prod/values.yaml:\n{prod}");
    println!(
        "promotions: dev {}, staging {}, prod {}",
        p.promotions("dev").len(),
        p.promotions("staging").len(),
        p.promotions("prod").len()
    );
    println!("took {} ms", started.elapsed().as_millis());
    Ok(())
}
