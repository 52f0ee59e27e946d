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
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
    autoRollback: {onPromotion: [Failed]}
  - stageSelector: {name: qa}
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
kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
  verification:
    analysisTemplates:
    - name: smoke
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: qa, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {stages: [dev]}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
  verification:
    analysisTemplates:
    - name: smoke
"#;

struct Fixture {
    stages: Vec<Stage>,
    config: ProjectConfig,
}

fn fixture() -> Fixture {
    let set = ManifestSet::from_yaml_str("rollback.yaml", MANIFESTS).unwrap();
    Fixture {
        stages: set.stages("demo").cloned().collect(),
        config: set.project_config("demo").cloned().unwrap(),
    }
}

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Span::minutes(minutes)
}

fn freight(state: &mut ProjectState, tag: &str, at: i64) -> FreightId {
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
    let id = f.name.clone();
    record_freight(state, f);
    id
}

/// Runs `request` to its end with `phase`.
fn run(
    p: &Pipeline<'_>,
    state: &mut ProjectState,
    request: PromotionRequest,
    phase: PromotionPhase,
    now: DateTime<Utc>,
) {
    let stage = request.stage.clone();
    Pipeline::enqueue(state, request.clone(), false);
    let started = p.start_next(state, &stage, now).unwrap();
    assert_eq!(started.name, request.name);
    p.finish(state, &stage, &request.name, phase, "", now)
        .unwrap();
}

fn promote(
    p: &Pipeline<'_>,
    state: &mut ProjectState,
    id: &FreightId,
    phase: PromotionPhase,
    now: DateTime<Utc>,
) {
    let req = p
        .request_promotion(state, "dev", id.as_str(), PromotionTrigger::Auto, None, now)
        .unwrap();
    run(p, state, req, phase, now);
}

fn verify(
    p: &Pipeline<'_>,
    state: &mut ProjectState,
    phase: VerificationPhase,
    now: DateTime<Utc>,
) {
    p.record_verification(
        state,
        "dev",
        VerificationInfo {
            phase,
            message: String::new(),
            finished_at: now,
        },
    )
    .unwrap();
}

fn current(state: &ProjectState) -> Option<FreightId> {
    state
        .stages
        .get("dev")?
        .current()?
        .get(&FreightOrigin::warehouse("app"))
        .map(|r| r.name.clone())
}

/// A good 1.0 verified in dev, then 1.1 promoted and its verification failed at t(4).
fn failed_verification(p: &Pipeline<'_>) -> (ProjectState, FreightId, FreightId) {
    let mut state = ProjectState::default();
    let good = freight(&mut state, "1.0", 0);
    promote(p, &mut state, &good, PromotionPhase::Succeeded, t(1));
    verify(p, &mut state, VerificationPhase::Successful, t(2));
    let bad = freight(&mut state, "1.1", 2);
    promote(p, &mut state, &bad, PromotionPhase::Succeeded, t(3));
    verify(p, &mut state, VerificationPhase::Failed, t(4));
    (state, good, bad)
}

#[test]
fn policy_defaults_and_phase_names() {
    let f = fixture();
    let p = Pipeline::new(&f.stages, Some(&f.config));
    let dev = p.auto_rollback_policy(p.stage("dev").unwrap()).unwrap();
    assert_eq!(dev.on_verification, vec![VerificationPhase::Failed]);
    assert_eq!(dev.on_promotion, vec![PromotionPhase::Failed]);
    assert!(p.auto_rollback_policy(p.stage("qa").unwrap()).is_none());
    assert_eq!(
        verification_phase_named("Error"),
        Some(VerificationPhase::Error)
    );
    assert_eq!(
        promotion_phase_named("Errored"),
        Some(PromotionPhase::Errored)
    );
    assert_eq!(promotion_phase_named("Aborted"), None);
}

#[test]
fn a_failed_verification_rolls_back_to_the_stable_freight_once() {
    let f = fixture();
    let p = Pipeline::new(&f.stages, Some(&f.config));
    let (mut state, good, bad) = failed_verification(&p);
    let dev = state.stages.get("dev").unwrap();
    assert_eq!(
        stable_freight(dev, "Warehouse/app").map(|r| r.name),
        Some(good.clone()),
        "recorded when verification passed; the failed Freight is not stable"
    );
    assert_eq!(current(&state), Some(bad.clone()));

    let rollbacks = p.auto_rollbacks(&state, t(5));
    assert_eq!(rollbacks.len(), 1);
    let rb = rollbacks[0].clone();
    assert_eq!(rb.freight, good);
    assert_eq!(rb.trigger, PromotionTrigger::Rollback);
    assert_eq!(rb.actor.as_deref(), Some(AUTO_ROLLBACK_ACTOR));
    assert!(
        rb.hold,
        "pins the origin: auto-promotion must not bring 1.1 back"
    );
    // Not while anything is queued or running.
    let mut busy = state.clone();
    Pipeline::enqueue(&mut busy, rb.clone(), false);
    assert!(p.auto_rollbacks(&busy, t(5)).is_empty());

    run(&p, &mut state, rb, PromotionPhase::Succeeded, t(6));
    assert_eq!(current(&state), Some(good.clone()));
    assert!(
        p.auto_rollbacks(&state, t(7)).is_empty(),
        "once per failure"
    );
    assert!(
        p.auto_promotions(&state, t(7))
            .iter()
            .all(|r| r.stage != "dev"),
        "the hold keeps the failed Freight out"
    );
    // The rollback's own verification fails: never a rollback of a rollback.
    verify(&p, &mut state, VerificationPhase::Failed, t(8));
    assert!(p.auto_rollbacks(&state, t(9)).is_empty());
    // Downstream: qa never gets the Freight that failed in dev.
    assert!(!Pipeline::is_available(
        p.stage("qa").unwrap(),
        state.freight.get(&bad).unwrap(),
        t(9)
    ));
}

#[test]
fn old_failures_holds_and_missing_stable_freight_are_left_alone() {
    let f = fixture();
    let p = Pipeline::new(&f.stages, Some(&f.config));
    let (state, _good, _bad) = failed_verification(&p);
    // 20 minutes after the failure: still; a moment later: too old.
    assert_eq!(p.auto_rollbacks(&state, t(24)).len(), 1);
    assert!(
        p.auto_rollbacks(&state, t(24) + Span::seconds(1))
            .is_empty()
    );

    // A person pinned the origin.
    let mut held = state.clone();
    let req = p
        .request_promotion(
            &held,
            "dev",
            _bad.as_str(),
            PromotionTrigger::Manual,
            Some("alice".into()),
            t(5),
        )
        .unwrap();
    held.stages
        .get_mut("dev")
        .unwrap()
        .auto_promotion_holds
        .insert(
            "Warehouse/app".into(),
            AutoPromotionHold {
                freight_name: req.freight.clone(),
                origin: req.origin.clone(),
                promotion_name: req.name.clone(),
                actor: Some("alice".into()),
                created_at: t(5),
            },
        );
    assert!(p.auto_rollbacks(&held, t(5)).is_empty());

    // No Freight ever passed verification: nothing to go back to.
    let mut fresh = ProjectState::default();
    let first = freight(&mut fresh, "0.1", 0);
    promote(&p, &mut fresh, &first, PromotionPhase::Succeeded, t(1));
    verify(&p, &mut fresh, VerificationPhase::Failed, t(2));
    assert!(p.auto_rollbacks(&fresh, t(3)).is_empty());
}

#[test]
fn a_failed_promotion_rolls_its_origin_back_when_the_policy_says_so() {
    let f = fixture();
    let p = Pipeline::new(&f.stages, Some(&f.config));
    let mut state = ProjectState::default();
    let good = freight(&mut state, "1.0", 0);
    promote(&p, &mut state, &good, PromotionPhase::Succeeded, t(1));
    verify(&p, &mut state, VerificationPhase::Successful, t(2));
    let bad = freight(&mut state, "1.1", 2);
    promote(&p, &mut state, &bad, PromotionPhase::Failed, t(3));
    // The Stage still holds 1.0, but the failed promotion may have changed the
    // repository half-way: 1.0 is promoted again.
    assert_eq!(current(&state), Some(good.clone()));
    let rollbacks = p.auto_rollbacks(&state, t(4));
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0].freight, good);
    // Errored is not in this policy's onPromotion.
    let mut errored = ProjectState::default();
    let g = freight(&mut errored, "1.0", 0);
    promote(&p, &mut errored, &g, PromotionPhase::Succeeded, t(1));
    verify(&p, &mut errored, VerificationPhase::Successful, t(2));
    let b = freight(&mut errored, "1.1", 2);
    promote(&p, &mut errored, &b, PromotionPhase::Errored, t(3));
    assert!(p.auto_rollbacks(&errored, t(4)).is_empty());
}
