//! `set-freight-alias` against the pipeline's in-memory state store, through the runner:
//! the alias changes, a duplicate alias is refused naming the Freight that has it, a
//! dry run changes nothing, and configuration errors name the step and key.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use kargo_core::freight::{Freight, FreightOrigin, GitCommit};
use kargo_core::pipeline::{MemoryStore, StateStore, record_freight};
use kargo_core::runner::{Promotion, PromotionPhase, Runner};
use kargo_core::workdir::WorkDir;
use kargo_steps::SetFreightAlias;
use serde_json::{Value as Json, json};
use tempfile::TempDir;

fn runner(store: Arc<MemoryStore>) -> Runner {
    let mut reg = kargo_core::StepRegistry::new();
    kargo_steps::register_builtins(
        &mut reg,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    reg.register(SetFreightAlias::new(store)).unwrap();
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

fn freight(commit: &str, alias: &str) -> Freight {
    let mut f = Freight::new(
        FreightOrigin::warehouse("app"),
        vec![GitCommit {
            repo_url: "https://github.com/acme/app.git".into(),
            id: commit.into(),
            ..GitCommit::default()
        }],
        vec![],
        vec![],
        vec![],
    );
    f.alias = Some(alias.into());
    f
}

fn message(r: &kargo_core::runner::PromotionResult, alias: &str) -> String {
    r.step(alias).unwrap().message.clone().unwrap_or_default()
}

#[tokio::test]
async fn sets_the_alias_and_refuses_duplicates() {
    let store = Arc::new(MemoryStore::new());
    let a = freight("0123456789abcdef0123456789abcdef01234567", "fluffy-bunny");
    let b = freight("89abcdef0123456789abcdef0123456789abcdef", "brave-otter");
    let (a_id, b_id) = (a.name.clone(), b.name.clone());
    store
        .update("demo", &mut |s| {
            record_freight(s, a.clone());
            record_freight(s, b.clone());
            Ok(())
        })
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    let r = runner(store.clone())
        .run(&promotion(
            &dir,
            json!([{"alias": "alias", "uses": "set-freight-alias", "config": {
                "name": a_id.as_str(), "alias": "v1.2.3",
            }}]),
        ))
        .await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{:#?}", r.steps);
    assert!(message(&r, "alias").contains("from \"fluffy-bunny\" to \"v1.2.3\""));
    let (state, _) = store.load("demo").await.unwrap();
    assert_eq!(
        state.freight[&a_id].freight.alias.as_deref(),
        Some("v1.2.3")
    );

    // The same alias again on the same Freight: fine, nothing changes.
    let r = runner(store.clone())
        .run(&promotion(
            &dir,
            json!([{"alias": "alias", "uses": "set-freight-alias", "config": {
                "name": a_id.as_str(), "alias": "v1.2.3",
            }}]),
        ))
        .await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{:#?}", r.steps);

    // Another Freight's alias: refused, naming it; nothing written.
    let before = store.load("demo").await.unwrap();
    let r = runner(store.clone())
        .run(&promotion(
            &dir,
            json!([{"alias": "alias", "uses": "set-freight-alias", "config": {
                "name": b_id.as_str(), "alias": "v1.2.3",
            }}]),
        ))
        .await;
    assert_eq!(r.phase, PromotionPhase::Failed, "{:#?}", r.steps);
    let m = message(&r, "alias");
    assert!(
        m.contains("already used by Freight") && m.contains(a_id.as_str()),
        "{m}"
    );
    assert_eq!(store.load("demo").await.unwrap(), before);

    // Unknown Freight, or an alias by its alias (Kargo names Freight by name only).
    for name in ["nope", "brave-otter"] {
        let r = runner(store.clone())
            .run(&promotion(
                &dir,
                json!([{"alias": "alias", "uses": "set-freight-alias", "config": {
                    "name": name, "alias": "x",
                }}]),
            ))
            .await;
        assert_eq!(r.phase, PromotionPhase::Failed, "{:#?}", r.steps);
        assert!(message(&r, "alias").contains("not found in project \"demo\""));
    }

    // A dry run changes nothing.
    let mut p = promotion(
        &dir,
        json!([{"alias": "alias", "uses": "set-freight-alias", "config": {
            "name": b_id.as_str(), "alias": "dry",
        }}]),
    );
    p.dry_run = true;
    let r = runner(store.clone()).run(&p).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{:#?}", r.steps);
    assert_eq!(store.load("demo").await.unwrap(), before);

    // Configuration errors name the step alias and the key.
    for (cfg, key) in [
        (json!({"name": b_id.as_str()}), "config"),
        (
            json!({"name": b_id.as_str(), "alias": "-bad-"}),
            "config.alias",
        ),
        (json!({"name": "", "alias": "ok"}), "config.name"),
        (
            json!({"name": b_id.as_str(), "alias": "ok", "freight": "x"}),
            "config.freight",
        ),
    ] {
        let r = runner(store.clone())
            .run(&promotion(
                &dir,
                json!([{"alias": "set-it", "uses": "set-freight-alias", "config": cfg}]),
            ))
            .await;
        assert_eq!(r.phase, PromotionPhase::Errored, "{:#?}", r.steps);
        let m = message(&r, "set-it");
        assert!(m.contains(key), "{cfg}: {m}");
        let e = r.message.clone().unwrap_or_default();
        assert!(e.contains("set-it"), "{cfg}: {e}");
    }
}
