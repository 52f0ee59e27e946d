#![allow(clippy::unwrap_used)]

use chrono::{Duration as Span, TimeZone};

use super::*;
use crate::freight::Image;
use crate::loader::ManifestSet;

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
  - stageSelector: {name: "regex:^(dev|qa)$"}
    autoPromotionEnabled: true
  - stageSelector:
      name: "glob:stag*"
      matchLabels: {tier: pre-prod}
    autoPromotionEnabled: true
  - stageSelector: {name: "glob:*"}
    autoPromotionEnabled: false
  - stageSelector: {name: prod}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: chart, namespace: demo}
spec:
  subscriptions:
  - chart: {repoURL: oci://ghcr.io/acme/chart}
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
      - uses: fail
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: qa, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources:
      stages: [dev]
      autoPromotionOptions: {selectionPolicy: MatchUpstream}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: staging, namespace: demo, labels: {tier: pre-prod}}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {stages: [dev], requiredSoakTime: 1h}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: gate, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {stages: [dev, qa], availabilityStrategy: All}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {stages: [gate]}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
"#;

struct Fixture {
    stages: Vec<Stage>,
    config: ProjectConfig,
}

fn fixture() -> Fixture {
    let set = match ManifestSet::from_yaml_str("pipeline.yaml", MANIFESTS) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    Fixture {
        stages: set.stages("demo").cloned().collect(),
        config: set.project_config("demo").cloned().unwrap(),
    }
}

impl Fixture {
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline::new(&self.stages, Some(&self.config))
    }
}

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Span::minutes(minutes)
}

fn image_freight(tag: &str, at: i64) -> Freight {
    let mut f = Freight::new(
        FreightOrigin::warehouse("app"),
        vec![],
        vec![Image {
            repo_url: "ghcr.io/acme/app".into(),
            tag: tag.into(),
            digest: format!("sha256:{tag}"),
            annotations: Default::default(),
            subscription_name: None,
        }],
        vec![],
        vec![],
    );
    f.discovered_at = Some(t(at));
    f.alias = Some(format!("app-{tag}"));
    f
}

fn chart_freight(version: &str, at: i64) -> Freight {
    let mut f = Freight::new(
        FreightOrigin::warehouse("chart"),
        vec![],
        vec![],
        vec![crate::freight::Chart {
            repo_url: "oci://ghcr.io/acme/chart".into(),
            name: String::new(),
            version: version.into(),
            subscription_name: None,
        }],
        vec![],
    );
    f.discovered_at = Some(t(at));
    f
}

/// Requests, starts and finishes a promotion successfully.
fn promote(
    p: &Pipeline<'_>,
    state: &mut ProjectState,
    stage: &str,
    freight: &str,
    trigger: PromotionTrigger,
    now: DateTime<Utc>,
) -> PromotionRequest {
    let req = p
        .request_promotion(state, stage, freight, trigger, None, now)
        .unwrap();
    Pipeline::enqueue(state, req.clone(), false);
    let started = p.start_next(state, stage, now).unwrap();
    assert_eq!(started.name, req.name);
    p.finish(state, stage, &req.name, PromotionPhase::Succeeded, "", now)
        .unwrap();
    req
}

fn current(state: &ProjectState, stage: &str, origin: &str) -> Option<FreightId> {
    state
        .stages
        .get(stage)?
        .current()?
        .get(&FreightOrigin::warehouse(origin))
        .map(|r| r.name.clone())
}

#[test]
fn policies_first_match_wins() {
    let f = fixture();
    let p = f.pipeline();
    let on = |n: &str| p.auto_promotion_enabled(p.stage(n).unwrap());
    assert!(on("dev"));
    assert!(on("qa"));
    assert!(on("staging"), "glob plus labels");
    assert!(!on("prod"), "the glob:* policy comes first");
    assert!(!on("gate"));
    assert!(!Pipeline::new(&f.stages, None).auto_promotion_enabled(p.stage("dev").unwrap()));
    assert!(name_matches("", "x"));
    assert!(name_matches("regexp:ro", "prod"));
    assert!(
        !name_matches("regex:(", "prod"),
        "invalid patterns match nothing"
    );
}

#[test]
fn availability_direct_upstream_soak_all_and_approval() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("1.0.0", 0);
    record_freight(&mut state, a.clone());
    let rec = |s: &ProjectState| s.freight[&a.name].clone();
    let stage = |n: &str| p.stage(n).unwrap();

    assert!(Pipeline::is_available(stage("dev"), &rec(&state), t(0)));
    assert!(!Pipeline::is_available(stage("qa"), &rec(&state), t(0)));

    promote(
        &p,
        &mut state,
        "dev",
        "app-1.0.0",
        PromotionTrigger::Manual,
        t(10),
    );
    // dev has no verification: verified at once.
    assert!(rec(&state).status.verified_in.contains_key("dev"));
    assert!(Pipeline::is_available(stage("qa"), &rec(&state), t(10)));
    // staging needs an hour of soak in dev.
    assert!(!Pipeline::is_available(
        stage("staging"),
        &rec(&state),
        t(69)
    ));
    assert!(Pipeline::is_available(
        stage("staging"),
        &rec(&state),
        t(70)
    ));
    // gate needs dev AND qa.
    assert!(!Pipeline::is_available(stage("gate"), &rec(&state), t(70)));
    promote(
        &p,
        &mut state,
        "qa",
        a.name.as_str(),
        PromotionTrigger::Manual,
        t(20),
    );
    assert!(Pipeline::is_available(stage("gate"), &rec(&state), t(20)));

    // prod: only once verified in gate, unless approved.
    let b = image_freight("2.0.0", 30);
    record_freight(&mut state, b.clone());
    let err = p
        .request_promotion(
            &state,
            "prod",
            "app-2.0.0",
            PromotionTrigger::Manual,
            None,
            t(30),
        )
        .unwrap_err();
    assert!(matches!(err, PipelineError::NotAvailable { .. }), "{err}");
    assert!(err.to_string().contains("gate"), "{err}");
    p.approve(&mut state, "prod", "app-2.0.0", Some("alice".into()), t(31))
        .unwrap();
    p.request_promotion(
        &state,
        "prod",
        "app-2.0.0",
        PromotionTrigger::Manual,
        None,
        t(31),
    )
    .unwrap();

    // A chart is not requested by prod, even when approved.
    let c = chart_freight("0.1.0", 0);
    record_freight(&mut state, c.clone());
    let err = p
        .approve(&mut state, "prod", c.name.as_str(), None, t(0))
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::OriginNotRequested { .. }),
        "{err}"
    );
}

#[test]
fn soak_counts_finished_stays_after_freight_leaves() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("1.0.0", 0);
    let b = image_freight("1.1.0", 1);
    record_freight(&mut state, a.clone());
    record_freight(&mut state, b.clone());
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.0.0",
        PromotionTrigger::Manual,
        t(0),
    );
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.1.0",
        PromotionTrigger::Manual,
        t(90),
    );
    let rec = &state.freight[&a.name];
    assert!(!rec.status.currently_in.contains_key("dev"));
    assert_eq!(rec.status.verified_in["dev"].longest_soak_seconds, 90 * 60);
    // a left dev after 90 minutes: still soaked enough for staging later.
    assert!(Pipeline::is_available(
        p.stage("staging").unwrap(),
        rec,
        t(500)
    ));
    assert_eq!(
        Pipeline::longest_soak(&state.freight[&b.name], "dev", t(120)),
        Duration::from_secs(30 * 60)
    );
}

#[test]
fn auto_promotion_picks_newest_and_respects_holds() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    for (tag, at) in [("1.0.0", 0), ("1.1.0", 5)] {
        record_freight(&mut state, image_freight(tag, at));
    }
    let chart = chart_freight("0.1.0", 0);
    record_freight(&mut state, chart.clone());

    let reqs = p.auto_promotions(&state, t(10));
    // dev: one per origin; nothing else is available anywhere yet.
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let app = reqs.iter().find(|r| r.origin.name == "app").unwrap();
    assert_eq!(app.freight, image_freight("1.1.0", 5).name);
    assert!(!app.hold);
    // The first promotion of a multi-origin Stage gets both origins.
    assert_eq!(app.collection.len(), 2);
    assert!(app.collection.contains_freight(chart.name.as_str()));
    for r in reqs {
        Pipeline::enqueue(&mut state, r, false);
    }
    // Queued candidates are not requested twice.
    assert!(p.auto_promotions(&state, t(10)).is_empty());
    for _ in 0..2 {
        let r = p.start_next(&mut state, "dev", t(100)).unwrap();
        assert!(
            p.start_next(&mut state, "dev", t(100)).is_none(),
            "one at a time"
        );
        p.finish(
            &mut state,
            "dev",
            &r.name,
            PromotionPhase::Succeeded,
            "",
            t(11),
        )
        .unwrap();
    }
    assert_eq!(
        current(&state, "dev", "app"),
        Some(image_freight("1.1.0", 5).name)
    );

    // qa follows dev (MatchUpstream).
    let reqs = p.auto_promotions(&state, t(12));
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].stage, "qa");

    // A manual promotion of older Freight in dev holds the origin...
    let old = image_freight("1.0.0", 0).name;
    let r = promote(
        &p,
        &mut state,
        "dev",
        "app-1.0.0",
        PromotionTrigger::Manual,
        t(20),
    );
    assert!(r.hold);
    assert_eq!(current(&state, "dev", "app"), Some(old.clone()));
    assert!(
        state.stages["dev"]
            .auto_promotion_holds
            .contains_key("Warehouse/app")
    );
    // ...so even newer Freight does not move dev.
    record_freight(&mut state, image_freight("1.2.0", 30));
    assert!(
        p.auto_promotions(&state, t(31))
            .iter()
            .all(|r| r.stage != "dev"),
        "held"
    );
    // Promoting the candidate lifts the hold.
    let r = promote(
        &p,
        &mut state,
        "dev",
        "app-1.2.0",
        PromotionTrigger::Manual,
        t(32),
    );
    assert!(!r.hold);
    assert!(state.stages["dev"].auto_promotion_holds.is_empty());
}

#[test]
fn ties_on_discovery_time_break_by_id_descending() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("a", 0);
    let b = image_freight("b", 0);
    record_freight(&mut state, a.clone());
    record_freight(&mut state, b.clone());
    let expected = a.name.clone().max(b.name.clone());
    let dev = p.stage("dev").unwrap();
    assert_eq!(
        p.candidate(dev, &FreightOrigin::warehouse("app"), &state, t(1)),
        Some(expected)
    );
}

#[test]
fn superseding_drops_older_queued_requests_of_the_same_origin() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    for (tag, at) in [("1", 0), ("2", 1), ("3", 2)] {
        record_freight(&mut state, image_freight(tag, at));
    }
    let req = |s: &ProjectState, id: &str| {
        p.request_promotion(s, "dev", id, PromotionTrigger::Manual, None, t(5))
            .unwrap()
    };
    let r1 = req(&state, "app-1");
    Pipeline::enqueue(&mut state, r1.clone(), true);
    p.start_next(&mut state, "dev", t(100)).unwrap();
    let r2 = req(&state, "app-2");
    assert!(Pipeline::enqueue(&mut state, r2.clone(), true).is_empty());
    let r3 = req(&state, "app-3");
    let dropped = Pipeline::enqueue(&mut state, r3.clone(), true);
    assert_eq!(dropped, vec![r2]);
    let dev = &state.stages["dev"];
    assert_eq!(
        dev.current_promotion.as_ref().unwrap().name,
        r1.name,
        "running stays"
    );
    assert_eq!(dev.queue, vec![r3]);
    // Without superseding, everything queues.
    let r4 = req(&state, "app-2");
    assert!(Pipeline::enqueue(&mut state, r4, false).is_empty());
    assert_eq!(state.stages["dev"].queue.len(), 2);
    // Finishing something that is not running is refused.
    let err = p
        .finish(
            &mut state,
            "dev",
            "nope",
            PromotionPhase::Succeeded,
            "",
            t(6),
        )
        .unwrap_err();
    assert!(matches!(err, PipelineError::NotRunning { .. }));
}

#[test]
fn failed_promotion_changes_nothing_but_the_record() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    record_freight(&mut state, image_freight("1", 0));
    let r = p
        .request_promotion(&state, "dev", "app-1", PromotionTrigger::Manual, None, t(1))
        .unwrap();
    Pipeline::enqueue(&mut state, r.clone(), false);
    p.start_next(&mut state, "dev", t(100));
    let rec = p
        .finish(
            &mut state,
            "dev",
            &r.name,
            PromotionPhase::Failed,
            "boom",
            t(2),
        )
        .unwrap();
    assert_eq!(rec.phase, PromotionPhase::Failed);
    assert!(state.stages["dev"].freight_history.is_empty());
    assert!(
        state
            .freight
            .values()
            .all(|f| f.status.currently_in.is_empty())
    );
    assert_eq!(state.promotions.len(), 1);
    assert_eq!(
        state.stages["dev"].last_promotion.as_ref().unwrap().message,
        "boom"
    );
}

#[test]
fn rollback_re_promotes_the_previous_collection() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    record_freight(&mut state, image_freight("1", 0));
    record_freight(&mut state, image_freight("2", 1));
    let err = p.rollback(&state, "dev", None, t(0)).unwrap_err();
    assert_eq!(err, PipelineError::NothingToRollBack("dev".into()));
    promote(
        &p,
        &mut state,
        "dev",
        "app-1",
        PromotionTrigger::Manual,
        t(1),
    );
    let first = state.stages["dev"].current().unwrap().clone();
    promote(
        &p,
        &mut state,
        "dev",
        "app-2",
        PromotionTrigger::Manual,
        t(2),
    );
    let r = p.rollback(&state, "dev", Some("bob".into()), t(3)).unwrap();
    assert_eq!(r.trigger, PromotionTrigger::Rollback);
    assert_eq!(r.collection, first);
    assert_eq!(r.freight, image_freight("1", 0).name);
    assert!(
        r.hold,
        "rolling back to non-candidate Freight holds auto-promotion"
    );
    Pipeline::enqueue(&mut state, r.clone(), false);
    p.start_next(&mut state, "dev", t(100));
    p.finish(
        &mut state,
        "dev",
        &r.name,
        PromotionPhase::Succeeded,
        "",
        t(4),
    )
    .unwrap();
    let dev = &state.stages["dev"];
    assert_eq!(
        dev.freight_history.len(),
        3,
        "a new history entry, nothing rewritten"
    );
    assert_eq!(dev.current(), Some(&first));
    assert!(dev.auto_promotion_holds.contains_key("Warehouse/app"));
    assert!(
        p.auto_promotions(&state, t(5))
            .iter()
            .all(|r| r.stage != "dev")
    );
}

#[test]
fn control_flow_stages_verify_what_is_available() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("1", 0);
    record_freight(&mut state, a.clone());
    promote(
        &p,
        &mut state,
        "dev",
        "app-1",
        PromotionTrigger::Manual,
        t(0),
    );
    assert_eq!(
        p.reconcile_control_flow(&mut state, t(1)),
        0,
        "not yet in qa"
    );
    promote(
        &p,
        &mut state,
        "qa",
        "app-1",
        PromotionTrigger::Manual,
        t(1),
    );
    assert_eq!(p.reconcile_control_flow(&mut state, t(2)), 1);
    assert_eq!(p.reconcile_control_flow(&mut state, t(3)), 0, "idempotent");
    assert!(
        state.freight[&a.name]
            .status
            .verified_in
            .contains_key("gate")
    );
    // Now prod may have it.
    p.request_promotion(
        &state,
        "prod",
        "app-1",
        PromotionTrigger::Manual,
        None,
        t(3),
    )
    .unwrap();
    let err = p
        .request_promotion(
            &state,
            "gate",
            "app-1",
            PromotionTrigger::Manual,
            None,
            t(3),
        )
        .unwrap_err();
    assert!(matches!(err, PipelineError::ControlFlow(_)));
    assert_eq!(
        p.downstream_of("dev")
            .iter()
            .map(|s| s.metadata.name.as_str())
            .collect::<Vec<_>>(),
        ["qa", "staging", "gate"]
    );
}

#[test]
fn unknown_names_and_id_prefixes() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("1", 0);
    record_freight(&mut state, a.clone());
    assert!(!record_freight(&mut state, a.clone()), "recorded once");
    let err = p
        .request_promotion(
            &state,
            "nope",
            "app-1",
            PromotionTrigger::Manual,
            None,
            t(0),
        )
        .unwrap_err();
    assert_eq!(err, PipelineError::UnknownStage("nope".into()));
    let err = p
        .request_promotion(&state, "dev", "nope", PromotionTrigger::Manual, None, t(0))
        .unwrap_err();
    assert_eq!(err, PipelineError::UnknownFreight("nope".into()));
    let prefix = &a.name.as_str()[..8];
    assert_eq!(p.find_freight(&state, prefix).unwrap().freight.name, a.name);
    assert_eq!(state.warehouses["app"].last_freight.as_ref(), Some(&a.name));
}

#[test]
fn verification_failure_does_not_verify() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("1", 0);
    record_freight(&mut state, a.clone());
    promote(
        &p,
        &mut state,
        "dev",
        "app-1",
        PromotionTrigger::Manual,
        t(0),
    );
    // Re-verification with a failure is recorded, and does not remove the earlier success.
    p.record_verification(
        &mut state,
        "dev",
        VerificationInfo {
            phase: VerificationPhase::Failed,
            message: "5xx".into(),
            finished_at: t(1),
        },
    )
    .unwrap();
    let h = &state.stages["dev"].freight_history[0].verification_history;
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].phase, VerificationPhase::Failed);
}

#[tokio::test]
async fn memory_store_detects_conflicts() {
    let store = MemoryStore::new();
    let (mut s, rev) = store.load("demo").await.unwrap();
    assert_eq!(rev, 0);
    record_freight(&mut s, image_freight("1", 0));
    assert_eq!(store.store("demo", &s, 0).await.unwrap(), 1);
    let err = store.store("demo", &s, 0).await.unwrap_err();
    assert!(
        matches!(err, StateError::Conflict { actual: 1, .. }),
        "{err}"
    );
    let s = store
        .update("demo", &mut |s| {
            record_freight(s, image_freight("2", 1));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(s.freight.len(), 2);
    assert_eq!(store.load("demo").await.unwrap().1, 2);
}

#[tokio::test]
async fn stage_leases_are_exclusive_until_dropped() {
    // The file store: an OS lock per project and Stage, shared by every store value (and
    // process) on the directory.
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let held = a.try_lease("demo", "dev").await.unwrap().expect("free");
    assert!(
        b.try_lease("demo", "dev").await.unwrap().is_none(),
        "held by a"
    );
    assert!(
        a.try_lease("demo", "dev").await.unwrap().is_none(),
        "held by a"
    );
    assert!(
        b.try_lease("demo", "prod").await.unwrap().is_some(),
        "another Stage"
    );
    assert!(
        b.try_lease("other", "dev").await.unwrap().is_some(),
        "another project"
    );
    drop(held);
    assert!(
        b.try_lease("demo", "dev").await.unwrap().is_some(),
        "released"
    );
    assert!(matches!(
        a.try_lease("../x", "dev").await,
        Err(StateError::InvalidProject(_))
    ));
    // The default (memory store): per store value, within the process.
    let (m1, m2) = (MemoryStore::new(), MemoryStore::new());
    let held = m1.try_lease("demo", "dev").await.unwrap().expect("free");
    assert!(m1.try_lease("demo", "dev").await.unwrap().is_none());
    assert!(
        m2.try_lease("demo", "dev").await.unwrap().is_some(),
        "another store"
    );
    drop(held);
    assert!(m1.try_lease("demo", "dev").await.unwrap().is_some());
}

#[test]
fn promotions_queued_together_for_two_origins_do_not_undo_each_other() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    record_freight(&mut state, image_freight("1", 0));
    record_freight(&mut state, chart_freight("0.1.0", 0));
    for r in p.auto_promotions(&state, t(1)) {
        Pipeline::enqueue(&mut state, r, false);
    }
    while let Some(r) = p.start_next(&mut state, "dev", t(2)) {
        p.finish(
            &mut state,
            "dev",
            &r.name,
            PromotionPhase::Succeeded,
            "",
            t(2),
        )
        .unwrap();
    }
    // Both origins move in the same pass.
    let (img, chart) = (image_freight("2", 5), chart_freight("0.2.0", 5));
    record_freight(&mut state, img.clone());
    record_freight(&mut state, chart.clone());
    let reqs = p.auto_promotions(&state, t(6));
    assert_eq!(reqs.iter().filter(|r| r.stage == "dev").count(), 2);
    for r in reqs.into_iter().filter(|r| r.stage == "dev") {
        Pipeline::enqueue(&mut state, r, false);
    }
    while let Some(r) = p.start_next(&mut state, "dev", t(7)) {
        p.finish(
            &mut state,
            "dev",
            &r.name,
            PromotionPhase::Succeeded,
            "",
            t(7),
        )
        .unwrap();
    }
    assert_eq!(current(&state, "dev", "app"), Some(img.name.clone()));
    assert_eq!(current(&state, "dev", "chart"), Some(chart.name));

    // Rolling back to {new image, old chart} pins only the chart's origin: the image is
    // still auto-promotion's candidate.
    let r = p.rollback(&state, "dev", None, t(8)).unwrap();
    Pipeline::enqueue(&mut state, r, false);
    let r = p.start_next(&mut state, "dev", t(8)).unwrap();
    p.finish(
        &mut state,
        "dev",
        &r.name,
        PromotionPhase::Succeeded,
        "",
        t(8),
    )
    .unwrap();
    assert_eq!(current(&state, "dev", "app"), Some(img.name));
    assert_eq!(
        current(&state, "dev", "chart"),
        Some(chart_freight("0.1.0", 0).name)
    );
    let holds = &state.stages["dev"].auto_promotion_holds;
    assert!(holds.contains_key("Warehouse/chart"));
    assert!(!holds.contains_key("Warehouse/app"));
}

#[test]
fn soak_deadlines_name_the_moment_freight_becomes_available() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let a = image_freight("1.0.0", 0);
    record_freight(&mut state, a.clone());
    // Not in dev yet: nothing soaks.
    assert!(p.soak_deadlines(&state, t(0)).is_empty());
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.0.0",
        PromotionTrigger::Manual,
        t(10),
    );
    // staging requires 1h of soak in dev: available at t(70), and exactly then.
    let deadlines = p.soak_deadlines(&state, t(20));
    assert_eq!(
        deadlines,
        vec![SoakDeadline {
            stage: "staging".into(),
            freight: a.name.clone(),
            upstream: "dev".into(),
            at: t(70),
        }]
    );
    assert!(!Pipeline::is_available(
        p.stage("staging").unwrap(),
        &state.freight[&a.name],
        t(69)
    ));
    // Once the soak is over, no deadline is left.
    assert!(p.soak_deadlines(&state, t(70)).is_empty());
    // Freight that left dev before soaking long enough can soak no more.
    let b = image_freight("1.1.0", 11);
    let c = image_freight("1.2.0", 12);
    record_freight(&mut state, b.clone());
    record_freight(&mut state, c.clone());
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.1.0",
        PromotionTrigger::Manual,
        t(80),
    );
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.2.0",
        PromotionTrigger::Manual,
        t(90),
    );
    let names: Vec<FreightId> = p
        .soak_deadlines(&state, t(95))
        .into_iter()
        .map(|d| d.freight)
        .collect();
    assert_eq!(names, vec![c.name.clone()]);
}

#[test]
fn retention_keeps_what_is_in_use_and_twenty_generations_after_it() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    let day = 24 * 60;
    // 60 app Freight, one a day; 3 chart Freight.
    let app: Vec<Freight> = (0..60)
        .map(|i| image_freight(&format!("1.0.{i}"), i * day))
        .collect();
    for a in &app {
        record_freight(&mut state, a.clone());
    }
    for i in 0..3 {
        record_freight(&mut state, chart_freight(&format!("0.{i}.0"), i));
    }
    // dev held 1.0.30, then 1.0.31 (1.0.30 is its rollback target); prod holds 1.0.10.
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.0.30",
        PromotionTrigger::Manual,
        t(30 * day),
    );
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.0.31",
        PromotionTrigger::Manual,
        t(31 * day),
    );
    p.approve(&mut state, "prod", "app-1.0.10", None, t(31 * day))
        .unwrap();
    promote(
        &p,
        &mut state,
        "prod",
        "app-1.0.10",
        PromotionTrigger::Manual,
        t(32 * day),
    );
    let now = t(61 * day);
    let policy = RetentionPolicy::default();
    let before = state.freight.len();
    let report = apply_retention(&mut state, &policy, now);
    // Newest first: 1.0.59 .. 1.0.0. The oldest in use is 1.0.10 (index 49); the 20 after
    // it (1.0.9 .. 1.0.0, only 10) are all kept: nothing to delete for app.
    assert!(report.freight.is_empty(), "{report:?}");
    assert_eq!(state.freight.len(), before);

    // Once prod moves on, only 1.0.30/31 are in use (index 28/29): 20 more are kept
    // (1.0.29 .. 1.0.10), the 10 older ones are deleted.
    p.approve(&mut state, "prod", "app-1.0.31", None, t(61 * day))
        .unwrap();
    promote(
        &p,
        &mut state,
        "prod",
        "app-1.0.31",
        PromotionTrigger::Manual,
        t(61 * day),
    );
    state
        .stages
        .get_mut("prod")
        .unwrap()
        .freight_history
        .truncate(1);
    let report = apply_retention(&mut state, &policy, now);
    let mut deleted: Vec<String> = report
        .freight
        .iter()
        .map(|id| {
            app.iter().find(|a| a.name == *id).unwrap().images[0]
                .tag
                .clone()
        })
        .collect();
    deleted.sort();
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..10).map(|i| format!("1.0.{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(deleted, expected);
    assert!(
        state
            .freight
            .values()
            .any(|r| r.freight.images.first().is_some_and(|i| i.tag == "1.0.10"))
    );
    // Chart Freight: 3, under the limit.
    assert_eq!(
        state
            .freight
            .values()
            .filter(|r| r.freight.origin == FreightOrigin::warehouse("chart"))
            .count(),
        3
    );
    // Young Freight is never deleted, whatever the count.
    let mut young = state.clone();
    let report = apply_retention(
        &mut young,
        &RetentionPolicy::default().with_freight(0, Duration::from_secs(365 * 86_400)),
        now,
    );
    assert!(report.freight.is_empty());
    // With no generations kept and no minimum age, only what is in use stays.
    let report = apply_retention(
        &mut young,
        &RetentionPolicy::default().with_freight(0, Duration::ZERO),
        now,
    );
    assert!(!report.freight.is_empty());
    // Kept: everything up to the oldest Freight in use (1.0.30, dev's rollback target).
    let mut kept: Vec<u32> = young
        .freight
        .values()
        .filter(|r| r.freight.origin == FreightOrigin::warehouse("app"))
        .map(|r| {
            r.freight.images[0]
                .tag
                .trim_start_matches("1.0.")
                .parse()
                .unwrap()
        })
        .collect();
    kept.sort();
    assert_eq!(kept, (30..60).collect::<Vec<u32>>());
}

#[test]
fn retention_keeps_the_newest_promotion_records_per_stage() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    for i in 0..30 {
        let a = image_freight(&format!("2.0.{i}"), i);
        record_freight(&mut state, a.clone());
        promote(
            &p,
            &mut state,
            "dev",
            a.name.as_str(),
            PromotionTrigger::Manual,
            t(i * 60),
        );
    }
    let total = state.promotions.len();
    assert_eq!(total, 30);
    // Within 14 days: nothing goes.
    let report = apply_retention(&mut state, &RetentionPolicy::default(), t(31 * 60));
    assert!(report.promotions.is_empty());
    // A month later: the newest 20 stay.
    let report = apply_retention(&mut state, &RetentionPolicy::default(), t(40 * 24 * 60));
    assert_eq!(report.promotions.len(), 10);
    assert_eq!(state.promotions.len(), 20);
    let newest = state
        .promotions
        .iter()
        .map(|r| r.finished_at)
        .max()
        .unwrap();
    assert_eq!(newest, t(29 * 60));
}

#[test]
fn abort_dequeues_or_asks_the_runner_and_holds_pin_until_resumed() {
    let f = fixture();
    let p = f.pipeline();
    let mut state = ProjectState::default();
    for (tag, at) in [("1.0.0", 0), ("1.1.0", 5)] {
        record_freight(&mut state, image_freight(tag, at));
    }
    // Nothing queued or running: nothing to abort, and nothing held to hold at.
    assert!(matches!(
        p.abort(&mut state, "dev", None, None, t(1)),
        Err(PipelineError::NothingToAbort { .. })
    ));
    assert_eq!(
        p.hold_auto_promotion(&mut state, "dev", None, t(1)),
        Err(PipelineError::NothingToHold("dev".into()))
    );
    assert!(matches!(
        p.abort(&mut state, "nope", None, None, t(1)),
        Err(PipelineError::UnknownStage(_))
    ));

    // Two queued: the first starts; aborting the queued one by name records it Aborted.
    let a = p
        .request_promotion(
            &state,
            "dev",
            "app-1.0.0",
            PromotionTrigger::Manual,
            None,
            t(2),
        )
        .unwrap();
    Pipeline::enqueue(&mut state, a.clone(), false);
    let b = p
        .request_promotion(
            &state,
            "dev",
            "app-1.1.0",
            PromotionTrigger::Manual,
            None,
            t(3),
        )
        .unwrap();
    Pipeline::enqueue(&mut state, b.clone(), false);
    p.start_next(&mut state, "dev", t(4)).unwrap();
    let out = p
        .abort(&mut state, "dev", Some(&b.name), Some("ann".into()), t(5))
        .unwrap();
    let AbortOutcome::Dequeued(record) = out else {
        panic!("expected a dequeued promotion, got {out:?}");
    };
    assert_eq!(record.phase, PromotionPhase::Aborted);
    assert_eq!(record.actor.as_deref(), Some("ann"));
    assert!(state.stages["dev"].queue.is_empty());
    assert_eq!(state.promotions.last().unwrap().name, b.name);

    // The running one gets an abort request, cleared when it ends.
    let out = p
        .abort(&mut state, "dev", None, Some("ann".into()), t(6))
        .unwrap();
    assert_eq!(
        out,
        AbortOutcome::Requested {
            promotion: a.name.clone()
        }
    );
    assert_eq!(
        state.stages["dev"]
            .abort_requested
            .as_ref()
            .map(|r| &r.promotion),
        Some(&a.name)
    );
    p.finish(
        &mut state,
        "dev",
        &a.name,
        PromotionPhase::Aborted,
        "aborted",
        t(7),
    )
    .unwrap();
    assert!(state.stages["dev"].abort_requested.is_none());
    assert!(
        current(&state, "dev", "app").is_none(),
        "an abort changes nothing"
    );

    // Hold at the current Freight: newer Freight does not move the Stage until resumed.
    promote(
        &p,
        &mut state,
        "dev",
        "app-1.1.0",
        PromotionTrigger::Auto,
        t(8),
    );
    let held = p
        .hold_auto_promotion(&mut state, "dev", Some("ann".into()), t(9))
        .unwrap();
    assert_eq!(held, vec!["Warehouse/app".to_owned()]);
    record_freight(&mut state, image_freight("1.2.0", 10));
    assert!(
        p.auto_promotions(&state, t(11))
            .iter()
            .all(|r| r.stage != "dev"),
        "held"
    );
    assert_eq!(p.resume_auto_promotion(&mut state, "dev").unwrap(), 1);
    assert!(
        p.auto_promotions(&state, t(12))
            .iter()
            .any(|r| r.stage == "dev" && r.freight == image_freight("1.2.0", 10).name),
        "resumed"
    );
}
