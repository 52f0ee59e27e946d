//! The controller end to end with the in-memory source and built-in steps: Freight,
//! auto-promotion to dev, manual promotion to prod fed only from dev, a hold, rollback,
//! errors, and the file state store across controller instances.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use kargo::controller::{Controller, ControllerError, RefreshOutcome};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::{FileStore, MemoryStore, PipelineError, PromotionTrigger, StateStore};
use kargo::core::{PromotionPhase, Runner, StepRegistry};
use kargo::sources::memory::{MemorySource, image};
use kargo_core::source::SourceRegistry;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: demo, namespace: demo}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  interval: 5m
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: chart, namespace: demo}
spec:
  interval: 1h
  subscriptions:
  - chart: {repoURL: https://charts.acme.io, name: app}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  - origin: {kind: Warehouse, name: chart}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - as: out
        uses: compose-output
        config:
          tag: ${{ imageFrom('ghcr.io/acme/app').Tag }}
          chart: ${{ chartFrom('https://charts.acme.io', 'app').Version }}
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
      - as: out
        uses: compose-output
        config:
          tag: $<< imageFrom('ghcr.io/acme/app').Tag >>
          verifiedInDev: ${{ freightStatus(ctx.targetFreight.name).verifiedIn?.dev?.verifiedAt != nil }}
          inDevSince: ${{ freightStatus(ctx.targetFreight.name).currentlyIn.dev.since }}
          unknown: ${{ freightStatus('no-such-freight') }}
      - uses: fail
        if: $<< imageFrom('ghcr.io/acme/app').Tag == '6.6.6' >>
        config: {message: "bad build"}
"#;

struct Setup {
    mem: MemorySource,
    clock: Arc<Mutex<DateTime<Utc>>>,
}

fn controller(store: Arc<dyn StateStore>) -> (Controller, Setup) {
    let set = ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    let mem = MemorySource::new();
    mem.set_images("ghcr.io/acme/app", vec![image("1.0.0", "sha256:a")]);
    mem.set_chart_versions("https://charts.acme.io", "app", vec!["0.1.0".into()]);
    let mut sources = SourceRegistry::new();
    mem.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    kargo::steps::register_builtins(
        &mut steps,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    let clock = Arc::new(Mutex::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    ));
    let c = clock.clone();
    let controller = Controller::new(set, "demo", sources, Runner::new(steps), store)
        .unwrap()
        .with_clock(move || *c.lock().unwrap());
    (controller, Setup { mem, clock })
}

impl Setup {
    fn advance(&self, minutes: i64) {
        *self.clock.lock().unwrap() += Duration::minutes(minutes);
    }
}

fn output(report: &kargo::controller::PromotionReport, key: &str) -> String {
    report.result.state["out"][key].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn warehouse_to_dev_to_prod_hold_and_rollback() {
    let (c, s) = controller(Arc::new(MemoryStore::new()));

    // First pass: two Warehouses make Freight; dev auto-promotes both origins at once.
    let r = c.reconcile(false).await.unwrap();
    assert_eq!(r.refreshed.len(), 2);
    assert!(
        r.refreshed
            .iter()
            .all(|(_, o)| matches!(o, RefreshOutcome::Created(_)))
    );
    let dev: Vec<_> = r
        .promotions
        .iter()
        .filter(|p| p.request.stage == "dev")
        .collect();
    assert!(!dev.is_empty());
    let last = dev.last().unwrap();
    assert!(last.succeeded(), "{:?}", last.result);
    assert_eq!(output(last, "tag"), "1.0.0");
    assert_eq!(output(last, "chart"), "0.1.0");
    assert!(
        r.promotions.iter().all(|p| p.request.stage != "prod"),
        "prod is manual"
    );

    // Nothing new: nothing happens (and the interval is not due).
    let r = c.reconcile(false).await.unwrap();
    assert!(r.refreshed.is_empty() && r.promotions.is_empty());

    // A new image: after the interval, dev moves on its own.
    s.mem
        .push_image("ghcr.io/acme/app", image("1.1.0", "sha256:b"));
    s.advance(6);
    let r = c.reconcile(false).await.unwrap();
    assert_eq!(r.refreshed.len(), 1, "only the due Warehouse");
    assert_eq!(r.promotions.len(), 1);
    assert_eq!(output(&r.promotions[0], "tag"), "1.1.0");
    assert_eq!(
        r.promotions[0].request.collection.len(),
        2,
        "the chart stays in the collection"
    );

    // prod gets Freight only once it was verified in dev, and only on request.
    let state = c.state().await.unwrap();
    let alias_110 = state
        .freight
        .values()
        .find(|f| f.freight.images.first().is_some_and(|i| i.tag == "1.1.0"))
        .and_then(|f| f.freight.alias.clone())
        .unwrap();
    let reports = c
        .promote("prod", &alias_110, Some("alice".into()))
        .await
        .unwrap();
    assert_eq!(output(&reports[0], "tag"), "1.1.0");
    // freightStatus() sees the Freight's status in Kargo's shape.
    let out = &reports[0].result.state["out"];
    assert_eq!(out["verifiedInDev"], serde_json::json!(true), "{out}");
    assert_eq!(
        out["inDevSince"],
        serde_json::json!("2026-01-01T00:06:00Z"),
        "{out}"
    );
    assert_eq!(out["unknown"], serde_json::Value::Null, "{out}");

    // Manual promotion of older Freight in dev holds auto-promotion there.
    let reports = c.promote("dev", "1.0.0-not-an-alias", None).await;
    assert!(matches!(
        reports,
        Err(ControllerError::Pipeline(PipelineError::UnknownFreight(_)))
    ));
    let r = c.rollback("dev", Some("bob".into())).await.unwrap();
    assert_eq!(r[0].request.trigger, PromotionTrigger::Rollback);
    assert_eq!(output(&r[0], "tag"), "1.0.0");
    s.mem
        .push_image("ghcr.io/acme/app", image("1.2.0", "sha256:c"));
    s.advance(6);
    let r = c.reconcile(false).await.unwrap();
    assert!(r.promotions.is_empty(), "held by the rollback");
    let dev_state = &c.state().await.unwrap().stages["dev"];
    assert!(dev_state.auto_promotion_holds.contains_key("Warehouse/app"));
    assert_eq!(
        dev_state.freight_history.len(),
        4,
        "every promotion is a new entry"
    );

    // A failing promotion is recorded as Failed and changes nothing in prod.
    s.mem
        .push_image("ghcr.io/acme/app", image("6.6.6", "sha256:d"));
    s.advance(6);
    c.reconcile(false).await.unwrap();
    let bad = c
        .state()
        .await
        .unwrap()
        .freight
        .values()
        .find(|f| f.freight.images[0].tag == "6.6.6")
        .unwrap()
        .freight
        .name
        .clone();
    c.promote("dev", bad.as_str(), None).await.unwrap();
    let prod_before = c.state().await.unwrap().stages["prod"].current().cloned();
    let r = c.promote("prod", bad.as_str(), None).await.unwrap();
    assert_eq!(r[0].result.phase, PromotionPhase::Failed);
    let state = c.state().await.unwrap();
    assert_eq!(state.stages["prod"].current().cloned(), prod_before);
    assert_eq!(
        state.stages["prod"].last_promotion.as_ref().unwrap().phase,
        PromotionPhase::Failed
    );

    // Freight never in dev is not available to prod.
    let err = c.promote("prod", "no-such", None).await.unwrap_err();
    assert!(err.to_string().contains("unknown Freight"), "{err}");
    let err = c.promote("nowhere", bad.as_str(), None).await.unwrap_err();
    assert!(err.to_string().contains("unknown Stage"), "{err}");
}

#[tokio::test]
async fn state_survives_a_new_controller_on_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
    let (c, _s) = controller(store.clone());
    c.reconcile(true).await.unwrap();
    let before = c.state().await.unwrap();
    assert!(before.stages["dev"].current().is_some());
    let (c2, _s2) = controller(Arc::new(FileStore::open(dir.path()).unwrap()));
    let after = c2.state().await.unwrap();
    assert_eq!(after, before);
    // Same artifacts: no new Freight, no new promotion.
    let r = c2.reconcile(true).await.unwrap();
    assert!(
        r.refreshed
            .iter()
            .all(|(_, o)| matches!(o, RefreshOutcome::Unchanged(_)))
    );
    assert!(r.promotions.is_empty());
}

/// A promotion the state shows as running while nobody holds its Stage's lease was left
/// by a runner that died (a killed process): the next pass resumes it under its name
/// instead of leaving the Stage stuck. While a live runner holds the lease, it is left
/// alone. (Found by tests/crash_safety.rs: before, a SIGKILL during a promotion left
/// `currentPromotion` set forever and nothing was ever promoted to the Stage again.)
#[tokio::test]
async fn a_promotion_left_running_by_a_dead_runner_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let (c, s) = controller(store.clone());
    c.reconcile(true).await.unwrap();
    s.mem
        .push_image("ghcr.io/acme/app", image("1.1.0", "sha256:b"));
    c.refresh("app").await.unwrap();
    // The dead runner: it started dev's promotion of 1.1.0 and never finished it.
    let now = *s.clock.lock().unwrap();
    let freight = c
        .state()
        .await
        .unwrap()
        .freight
        .values()
        .find(|f| f.freight.images.first().is_some_and(|i| i.tag == "1.1.0"))
        .unwrap()
        .freight
        .name
        .to_string();
    let mut started = None;
    store
        .update("demo", &mut |state| {
            let p = c.pipeline();
            let r = p
                .request_promotion(state, "dev", &freight, PromotionTrigger::Auto, None, now)
                .map_err(|e| kargo::core::pipeline::StateError::Aborted(e.to_string()))?;
            kargo::core::pipeline::Pipeline::enqueue(state, r, false);
            started = p.start_next(state, "dev", now);
            Ok(())
        })
        .await
        .unwrap();
    let name = started.unwrap().name;

    // A live runner holds the lease: a pass leaves its promotion alone.
    let held = store.try_lease("demo", "dev").await.unwrap().unwrap();
    let (c2, _s2) = controller(Arc::new(FileStore::open(dir.path()).unwrap()));
    let r = c2.auto_promote().await.unwrap();
    assert!(r.iter().all(|p| p.request.stage != "dev"), "{r:?}");
    let dev = &c2.state().await.unwrap().stages["dev"];
    assert_eq!(dev.current_promotion.as_ref().map(|p| &p.name), Some(&name));

    // The runner is gone: the next pass resumes the promotion, under the same name.
    drop(held);
    let r = c2.auto_promote().await.unwrap();
    assert_eq!(r[0].request.name, name);
    assert!(r[0].succeeded(), "{:?}", r[0].result);
    assert_eq!(output(&r[0], "tag"), "1.1.0");
    let state = c2.state().await.unwrap();
    let dev = &state.stages["dev"];
    assert!(dev.current_promotion.is_none() && dev.queue.is_empty());
    assert_eq!(dev.freight_history[0].promotion, name);
    assert!(
        state
            .promotions
            .iter()
            .any(|p| p.name == name && p.phase == PromotionPhase::Succeeded)
    );

    // A manual promotion behind a dead runner's promotion runs after it is resumed.
    let mut stale = None;
    store
        .update("demo", &mut |state| {
            let p = c.pipeline();
            let r = p
                .request_promotion(state, "dev", &freight, PromotionTrigger::Auto, None, now)
                .map_err(|e| kargo::core::pipeline::StateError::Aborted(e.to_string()))?;
            kargo::core::pipeline::Pipeline::enqueue(state, r, false);
            stale = p.start_next(state, "dev", now);
            Ok(())
        })
        .await
        .unwrap();
    let stale = stale.unwrap().name;
    let r = c2.promote("dev", &freight, None).await.unwrap();
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0].request.name, stale);
    assert!(r.iter().all(|p| p.succeeded()));
    assert!(
        c2.state().await.unwrap().stages["dev"]
            .current_promotion
            .is_none()
    );
}

/// A verifier that says yes to one tag only.
struct OnlyTag(&'static str);

#[async_trait::async_trait]
impl kargo::core::pipeline::Verifier for OnlyTag {
    async fn verify(
        &self,
        _stage: &kargo::core::model::Stage,
        collection: &kargo::core::FreightCollection,
    ) -> kargo::core::pipeline::VerificationInfo {
        let ok = collection
            .references()
            .iter()
            .any(|r| r.images.iter().any(|i| i.tag == self.0));
        kargo::core::pipeline::VerificationInfo {
            phase: if ok {
                kargo::core::pipeline::VerificationPhase::Successful
            } else {
                kargo::core::pipeline::VerificationPhase::Failed
            },
            message: String::new(),
            finished_at: Utc::now(),
        }
    }
}

#[tokio::test]
async fn verification_gates_downstream_availability() {
    let yaml = MANIFESTS.replace(
        "metadata: {name: dev, namespace: demo}\nspec:\n",
        "metadata: {name: dev, namespace: demo}\nspec:\n  verification: {}\n",
    );
    let set = ManifestSet::from_yaml_str("demo.yaml", &yaml).unwrap();
    let mem = MemorySource::new();
    mem.set_images("ghcr.io/acme/app", vec![image("1.0.0", "sha256:a")]);
    mem.set_chart_versions("https://charts.acme.io", "app", vec!["0.1.0".into()]);
    let mut sources = SourceRegistry::new();
    mem.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    kargo::steps::register_builtins(
        &mut steps,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    let c = Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_verifier(Arc::new(OnlyTag("1.1.0")));
    c.reconcile(true).await.unwrap();
    let state = c.state().await.unwrap();
    let id = state
        .freight
        .values()
        .find(|f| f.freight.origin.name == "app")
        .unwrap()
        .freight
        .name
        .clone();
    assert_eq!(
        state.stages["dev"].freight_history[0].verification_history[0].phase,
        kargo::core::pipeline::VerificationPhase::Failed
    );
    let err = c.promote("prod", id.as_str(), None).await.unwrap_err();
    assert!(err.to_string().contains("not available"), "{err}");

    mem.push_image("ghcr.io/acme/app", image("1.1.0", "sha256:b"));
    c.reconcile(true).await.unwrap();
    let state = c.state().await.unwrap();
    let id = state
        .freight
        .values()
        .find(|f| f.freight.images.first().is_some_and(|i| i.tag == "1.1.0"))
        .unwrap()
        .freight
        .name
        .clone();
    assert!(state.freight[&id].status.verified_in.contains_key("dev"));
    c.promote("prod", id.as_str(), None).await.unwrap();
}
