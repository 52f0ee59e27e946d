//! In a dry run, the steps that change things outside the promotion (pull requests, Argo
//! CD, metadata, non-GET HTTP) and those that wait for such changes do nothing but note
//! what they would do, and end Skipped. Every target here is unreachable, so a step that
//! did not honour the dry run would fail.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use kargo_core::pipeline::{MemoryStore, StateStore};
use kargo_core::runner::{PlannedStep, Promotion, PromotionPhase, Runner, StepExecutionStatus};
use kargo_core::step::StepRegistry;
use kargo_core::workdir::WorkDir;
use serde_json::json;

fn step(alias: &str, uses: &str, config: serde_json::Value) -> PlannedStep {
    serde_json::from_value(json!({"alias": alias, "uses": uses, "config": config})).unwrap()
}

#[tokio::test]
async fn outside_effects_are_skipped_and_noted_in_a_dry_run() {
    let mut registry = StepRegistry::new();
    kargo_steps::register_builtins(
        &mut registry,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    registry
        .register(kargo_steps::metadata::SetMetadata::new(store.clone()))
        .unwrap()
        .register(kargo_steps::SetFreightAlias::new(store.clone()))
        .unwrap();
    let runner = Runner::new(registry);
    let work = tempfile::tempdir().unwrap();
    let dead = "http://127.0.0.1:9";
    let steps = vec![
        step(
            "post",
            "http",
            json!({"url": format!("{dead}/hook"), "method": "POST"}),
        ),
        step(
            "open",
            "git-open-pr",
            json!({
                "repoURL": format!("{dead}/org/repo.git"), "provider": "github",
                "sourceBranch": "kargo/promo", "targetBranch": "main",
            }),
        ),
        step(
            "wait",
            "git-wait-for-pr",
            json!({
                "repoURL": format!("{dead}/org/repo.git"), "provider": "github",
                "prNumber": "${{ outputs.open.pr.id }}",
            }),
        ),
        step(
            "merge",
            "git-merge-pr",
            json!({
                "repoURL": format!("{dead}/org/repo.git"), "provider": "github", "prNumber": 1,
            }),
        ),
        step(
            "argo",
            "argocd-update",
            json!({"apps": [{"name": "guestbook"}]}),
        ),
        step(
            "argo-wait",
            "argocd-wait",
            json!({"apps": [{"name": "guestbook"}]}),
        ),
        step(
            "meta",
            "set-metadata",
            json!({
                "updates": [{"kind": "Stage", "name": "dev", "values": {"k": "v"}}],
            }),
        ),
        step(
            "alias",
            "set-freight-alias",
            json!({"name": "0123456789abcdef0123456789abcdef01234567", "alias": "v1"}),
        ),
    ];
    let mut p = Promotion::new(WorkDir::new(work.path()).unwrap(), steps);
    p.project = "demo".into();
    p.stage = "dev".into();
    p.name = "dev.01dryrun.abcdef0".into();
    p.dry_run = true;
    let r = runner.run(&p).await;
    assert_eq!(
        r.phase,
        PromotionPhase::Succeeded,
        "{:?} {:#?}",
        r.message,
        r.steps
    );
    for s in &r.steps {
        assert_eq!(
            s.status,
            StepExecutionStatus::Skipped,
            "{}: {:?}",
            s.alias,
            s.message
        );
        assert!(
            s.message
                .as_deref()
                .unwrap_or("")
                .starts_with("dry run: would"),
            "{}: {:?}",
            s.alias,
            s.message
        );
    }
    let log = r.dry_run.unwrap();
    assert_eq!(log.notes.len(), 8, "{:#?}", log.notes);
    assert!(
        store.load("demo").await.unwrap().0.stages.is_empty(),
        "no metadata written"
    );
}
