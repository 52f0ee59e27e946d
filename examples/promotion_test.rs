//! Unit-testing a PromotionTask offline with `kargo::testing`.
//!
//! `examples/fixtures/manifests.yaml` holds a PromotionTask (`update-image`: clone the
//! GitOps repository, set the image tag in `env/<stage>/values.yaml`, commit, push) and two
//! Stages using it. `examples/fixtures/gitops/` is a copy of the GitOps repository's
//! layout. The harness turns the directory into a temporary git repository, points the
//! task's `https://git.example/gitops.git` at it, runs the `dev` promotion for a Freight
//! with `ghcr.io/acme/guestbook:1.2.3`, and returns what was pushed. The same checks
//! written as a `#[tokio::test]` make a unit test of the task; here they print the diff.
//!
//! Run: `cargo run --example promotion_test --features testing` (needs the `git` command).
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use kargo::testing::PromotionTest;

const MANIFESTS: &str = include_str!("fixtures/manifests.yaml");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let outcome = PromotionTest::new(MANIFESTS)
        .stage("dev")
        .image("ghcr.io/acme/guestbook", "1.2.3")
        .gitops_dir(FIXTURE)
        .run()
        .await?;

    // What a unit test of the task asserts.
    if !outcome.succeeded() {
        return Err(format!("the promotion failed: {:?}", outcome.result.message).into());
    }
    let values = &outcome.files["env/dev/values.yaml"];
    assert!(
        values.contains("tag: \"1.2.3\"   # set by promotion"),
        "{values}"
    );
    assert_eq!(
        outcome.diffs.keys().collect::<Vec<_>>(),
        ["env/dev/values.yaml"],
        "only the dev overlay changes"
    );
    assert_eq!(outcome.branch.as_deref(), Some("main"));
    assert_eq!(outcome.commits.len(), 1);

    println!("steps:");
    for s in &outcome.result.steps {
        println!("  {:<20} {:<12} {:?}", s.alias, s.uses, s.status);
    }
    println!("\npushed to {}:", outcome.branch.as_deref().unwrap_or("-"));
    for message in &outcome.commits {
        println!("  commit: {}", message.lines().next().unwrap_or(""));
    }
    for diff in outcome.diffs.values() {
        println!("\n{diff}");
    }

    // The same task as a dry run: nothing pushed, the same diff announced.
    let dry = PromotionTest::new(MANIFESTS)
        .stage("dev")
        .image("ghcr.io/acme/guestbook", "1.2.3")
        .gitops_dir(FIXTURE)
        .dry_run(true)
        .run()
        .await?;
    assert_eq!(dry.diffs, outcome.diffs);
    assert_eq!(dry.files, outcome.files);
    println!("dry run: the same diff, nothing pushed.");
    Ok(())
}
