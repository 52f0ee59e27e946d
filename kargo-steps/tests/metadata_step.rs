//! `set-metadata` against the pipeline's in-memory state store, through the runner, and
//! read back with `stageMetadata()` / `freightMetadata()` in a later promotion.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use kargo_core::freight::{Freight, FreightOrigin, GitCommit};
use kargo_core::pipeline::{MemoryStore, StateStore, record_freight};
use kargo_core::runner::{Promotion, PromotionPhase, Runner};
use kargo_core::workdir::WorkDir;
use kargo_steps::SetMetadata;
use serde_json::{Value as Json, json};
use tempfile::TempDir;

fn runner(store: Arc<MemoryStore>) -> Runner {
    let mut reg = kargo_core::StepRegistry::new();
    kargo_steps::register_builtins(
        &mut reg,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    reg.register(SetMetadata::new(store)).unwrap();
    Runner::new(reg)
}

fn promotion(dir: &TempDir, steps: Json) -> Promotion {
    let mut p = Promotion::new(
        WorkDir::new(dir.path()).unwrap(),
        serde_json::from_value(steps).unwrap(),
    );
    p.project = "demo".into();
    p.stage = "prod".into();
    p
}

#[tokio::test]
async fn set_metadata_upserts_and_reads_back() {
    let store = Arc::new(MemoryStore::new());
    let commit = GitCommit {
        repo_url: "https://github.com/acme/app.git".into(),
        id: "0123456789abcdef0123456789abcdef01234567".into(),
        ..GitCommit::default()
    };
    let mut freight = Freight::new(
        FreightOrigin::warehouse("app"),
        vec![commit],
        vec![],
        vec![],
        vec![],
    );
    freight.alias = Some("fluffy-bunny".into());
    let id = freight.name.clone();
    store
        .update("demo", &mut |s| {
            record_freight(s, freight.clone());
            s.stages
                .entry("prod".into())
                .or_default()
                .metadata
                .insert("old".into(), json!(1));
            s.stages
                .get_mut("prod")
                .unwrap()
                .metadata
                .insert("gone".into(), json!("x"));
            Ok(())
        })
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    let r = runner(store.clone())
        .run(&promotion(
            &dir,
            json!([{"alias": "meta", "uses": "set-metadata", "config": {"updates": [
                {"kind": "Stage", "name": "${{ ctx.stage }}",
                 "values": {"prURL": "https://forge/pull/7", "replicas": 3, "gone": null}},
                {"kind": "Freight", "name": "fluffy-bunny", "values": {"tested": {"suite": "e2e", "ok": true}}},
                {"kind": "Stage", "name": "qa", "values": {"seen": true}},
            ]}}]),
        ))
        .await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{:#?}", r.steps);
    let (state, _) = store.load("demo").await.unwrap();
    let prod = &state.stages["prod"].metadata;
    assert_eq!(prod.get("old"), Some(&json!(1)), "other keys are kept");
    assert_eq!(prod.get("prURL"), Some(&json!("https://forge/pull/7")));
    assert_eq!(prod.get("replicas"), Some(&json!(3)));
    assert!(!prod.contains_key("gone"), "null removes a key");
    assert_eq!(state.stages["qa"].metadata.get("seen"), Some(&json!(true)));
    assert_eq!(
        state.freight[&id].status.metadata.get("tested"),
        Some(&json!({"suite": "e2e", "ok": true}))
    );

    // A later promotion reads it back (the controller copies state metadata into the
    // promotion, as src/controller.rs does).
    let mut p = promotion(
        &dir,
        json!([{"alias": "read", "uses": "compose-output", "config": {
            "pr": "${{ stageMetadata('prod').prURL }}",
            "suite": "${{ freightMetadata('".to_owned() + id.as_str() + "').tested.suite }}",
        }}]),
    );
    p.stage_metadata
        .insert("prod".into(), prod.clone().into_iter().collect());
    p.freight_metadata.insert(
        id.to_string(),
        state.freight[&id]
            .status
            .metadata
            .clone()
            .into_iter()
            .collect(),
    );
    let r = runner(store.clone()).run(&p).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{:#?}", r.steps);
    assert_eq!(
        r.step("read").unwrap().outputs["pr"],
        json!("https://forge/pull/7")
    );
    assert_eq!(r.step("read").unwrap().outputs["suite"], json!("e2e"));

    // Unknown Freight: an error, and nothing written.
    let before = store.load("demo").await.unwrap();
    let r = runner(store.clone())
        .run(&promotion(
            &dir,
            json!([{"alias": "meta", "uses": "set-metadata", "config": {"updates": [
                {"kind": "Stage", "name": "prod", "values": {"x": 1}},
                {"kind": "Freight", "name": "nope", "values": {"x": 1}},
            ]}}]),
        ))
        .await;
    assert_eq!(r.phase, PromotionPhase::Errored);
    assert!(
        r.step("meta")
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("no Freight")
    );
    assert_eq!(store.load("demo").await.unwrap(), before);
    // Bad kind: invalid config.
    let r = runner(store.clone())
        .run(&promotion(
            &dir,
            json!([{"alias": "meta", "uses": "set-metadata", "config": {"updates": [
                {"kind": "Warehouse", "name": "x", "values": {}},
            ]}}]),
        ))
        .await;
    assert_eq!(r.phase, PromotionPhase::Errored);
}
