//! Issue 20 in whole pipelines, offline (`kargo::testing::PipelineTest`, needs
//! `--features testing`): automatic rollback on the real controller, with the fixture
//! pipeline of `examples/fixtures/pipeline.yaml` (dev → staging → prod, an hour's soak in
//! staging before prod) and `autoRollback` switched on for every Stage.

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use chrono::Duration;
use kargo::core::pipeline::{AUTO_ROLLBACK_ACTOR, PromotionTrigger};
use kargo::testing::{PipelineRun, PipelineTest, Verdict};

const MANIFESTS: &str = include_str!("../examples/fixtures/pipeline.yaml");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");
const APP: &str = "ghcr.io/acme/guestbook";

fn with_auto_rollback() -> String {
    let m = MANIFESTS.replace(
        "    autoPromotionEnabled: true\n",
        "    autoPromotionEnabled: true\n    autoRollback: {}\n",
    );
    assert_ne!(m, MANIFESTS, "the fixture's policy moved");
    m
}

async fn pipeline() -> PipelineRun {
    PipelineTest::new(with_auto_rollback())
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap()
}

fn tag_line(tag: &str) -> String {
    format!("tag: \"{tag}\"   # set by promotion")
}

#[tokio::test]
async fn failed_verification_rolls_back_and_downstream_never_gets_the_freight() {
    let p = pipeline().await;
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"));
    p.advance(Duration::hours(1)).await.unwrap();
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));

    // 1.1.0 passes dev and breaks staging's verification.
    p.verification("staging", Verdict::Fail);
    p.publish_image(APP, "1.1.0");
    p.refresh_all().await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.1.0"));
    assert_eq!(
        p.image_tag("staging", APP),
        Some("1.0.0"),
        "rolled back to the stable Freight"
    );
    let staging = p.promotions("staging");
    let last = staging.last().unwrap();
    assert_eq!(last.trigger, PromotionTrigger::Rollback);
    assert_eq!(last.actor.as_deref(), Some(AUTO_ROLLBACK_ACTOR));
    assert!(
        p.pushed_file("env/staging/values.yaml")
            .unwrap()
            .contains(&tag_line("1.0.0")),
        "the rollback is a new commit putting 1.0.0 back"
    );
    let rollbacks = |p: &PipelineRun| {
        p.promotions("staging")
            .iter()
            .filter(|r| r.trigger == PromotionTrigger::Rollback)
            .count()
    };
    assert_eq!(rollbacks(&p), 1);

    // The rollback's own verification fails too (the verdict stays Fail): no rollback of
    // a rollback, and auto-promotion does not bring 1.1.0 back (the rollback holds it).
    p.reconcile().await.unwrap();
    p.advance(Duration::minutes(5)).await.unwrap();
    assert_eq!(rollbacks(&p), 1, "never a rollback of a rollback");
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"));

    // Downstream never receives the failed Freight, however long it waits.
    p.advance(Duration::hours(3)).await.unwrap();
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));
    let state = p.state();
    assert!(
        p.promotions("prod")
            .iter()
            .all(|r| state.freight[&r.freight]
                .freight
                .images
                .iter()
                .all(|i| i.tag != "1.1.0")),
        "prod was never asked to take 1.1.0"
    );
}

#[tokio::test]
async fn without_a_policy_a_failed_verification_stays() {
    let p = PipelineTest::new(MANIFESTS)
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    p.advance(Duration::minutes(1)).await.unwrap();
    p.verification("staging", Verdict::Fail);
    p.publish_image(APP, "1.1.0");
    p.refresh_all().await.unwrap();
    assert_eq!(p.image_tag("staging", APP), Some("1.1.0"));
    assert!(
        p.promotions("staging")
            .iter()
            .all(|r| r.trigger != PromotionTrigger::Rollback)
    );
}

#[tokio::test]
async fn events_follow_the_pipeline_with_kargos_fields() {
    use kargo::core::events::EventType as E;
    let p = pipeline().await;
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    p.advance(Duration::minutes(1)).await.unwrap();
    p.verification("staging", Verdict::Fail);
    p.publish_image(APP, "1.1.0");
    p.refresh_all().await.unwrap();
    let events = p.events();
    let kinds: Vec<E> = events.iter().map(|e| e.kind).collect();
    let first = |k: E| kinds.iter().position(|x| *x == k);
    // The first Freight: created, queued for dev, promoted, verified, then staging.
    assert_eq!(kinds[0], E::FreightCreated);
    assert!(first(E::PromotionCreated) < first(E::PromotionSucceeded));
    assert!(first(E::PromotionSucceeded) < first(E::FreightVerificationSucceeded));
    // The failed verification in staging, then the automatic rollback's promotion.
    let failed = events
        .iter()
        .position(|e| e.kind == E::FreightVerificationFailed)
        .expect("staging's verification failed");
    assert_eq!(events[failed].stage.as_deref(), Some("staging"));
    let payload = events[failed].payload();
    assert_eq!(payload["type"], "FreightVerificationFailed");
    assert_eq!(payload["project"], "guestbook");
    assert_eq!(payload["stageName"], "staging");
    assert_eq!(payload["images"][0]["tag"], "1.1.0");
    let rollback = events[failed..]
        .iter()
        .find(|e| e.kind == E::PromotionSucceeded)
        .expect("the rollback succeeded");
    let payload = rollback.payload();
    assert_eq!(payload["rollback"], true);
    assert_eq!(payload["actor"], AUTO_ROLLBACK_ACTOR);
    assert_eq!(payload["freight"]["images"][0]["tag"], "1.0.0");
    assert_eq!(payload["verificationPending"], true);
    // Every promotion that was created finished, each event once.
    let created = kinds.iter().filter(|k| **k == E::PromotionCreated).count();
    let finished = kinds
        .iter()
        .filter(|k| {
            matches!(
                k,
                E::PromotionSucceeded | E::PromotionFailed | E::PromotionErrored
            )
        })
        .count();
    assert_eq!(created, finished, "{kinds:?}");
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
}

/// prod needs two approvals from alice, bob or the `sre` group, each good for 24 hours;
/// the person who asked cannot approve.
fn with_approvals() -> String {
    let m = MANIFESTS.replace(
        "  - stageSelector: {name: \"glob:*\"}\n    autoPromotionEnabled: true\n",
        "  - stageSelector: {name: prod}\n    autoPromotionEnabled: false\n    approvals:\n      minApprovals: 2\n      approvers: [{user: alice}, {user: bob}, {group: sre}]\n      expiry: 24h\n  - stageSelector: {name: \"glob:*\"}\n    autoPromotionEnabled: true\n",
    );
    assert_ne!(m, MANIFESTS, "the fixture's policy moved");
    m
}

/// The approvals pipeline with 1.0.0 through dev and staging and an hour's soak: ready
/// for prod. Returns the run and the Freight.
async fn ready_for_prod() -> (PipelineRun, String) {
    let p = PipelineTest::new(with_approvals())
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    p.advance(Duration::hours(1)).await.unwrap();
    let freight = p.freight_of(APP, "1.0.0").unwrap();
    (p, freight)
}

#[tokio::test]
async fn approvals_too_few_self_approval_and_expiry() {
    use kargo::controller::ControllerError;
    use kargo::core::pipeline::{ApprovalDecision as D, ApprovalOutcome, Approver, PipelineError};
    let (p, freight) = ready_for_prod().await;
    // carol asks; nothing runs until two others approve.
    let reports = p.promote_as("prod", &freight, "carol").await.unwrap();
    assert!(reports.iter().all(|r| r.request.stage != "prod"));
    assert_eq!(p.image_tag("prod", APP), None);
    let refused = |r: Result<_, ControllerError>| match r {
        Err(ControllerError::Pipeline(PipelineError::Approval { reason, .. })) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let why = refused(
        p.answer_promotion("prod", &Approver::named("carol"), D::Approve)
            .await,
    );
    assert!(why.contains("requested this promotion"), "{why}");
    let why = refused(
        p.answer_promotion("prod", &Approver::named("mallory"), D::Approve)
            .await,
    );
    assert!(why.contains("not one of the Stage's approvers"), "{why}");
    // One approval is too few.
    let (outcome, reports) = p
        .answer_promotion("prod", &Approver::named("alice"), D::Approve)
        .await
        .unwrap();
    match outcome {
        ApprovalOutcome::Recorded(s) => {
            assert_eq!(s.approved_by, ["alice"]);
            assert_eq!(s.required, 2);
            assert!(!s.satisfied());
        }
        other => panic!("{other:?}"),
    }
    assert!(reports.is_empty());
    p.reconcile().await.unwrap();
    assert_eq!(
        p.image_tag("prod", APP),
        None,
        "waits for a second approval"
    );
    // alice approving again does not count twice.
    p.answer_promotion("prod", &Approver::named("alice"), D::Approve)
        .await
        .unwrap();
    assert_eq!(p.image_tag("prod", APP), None);
    // A day later alice's approval expired: the sre member's is the only one that counts.
    p.advance(Duration::hours(25)).await.unwrap();
    let dave = Approver::named("dave").in_groups(["sre"]);
    let (outcome, _) = p.answer_promotion("prod", &dave, D::Approve).await.unwrap();
    match outcome {
        ApprovalOutcome::Recorded(s) => assert_eq!(s.approved_by, ["dave"], "alice's expired"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.image_tag("prod", APP), None);
    // bob makes two: it runs, and the history keeps who approved and when.
    let (_, reports) = p
        .answer_promotion("prod", &Approver::named("bob"), D::Approve)
        .await
        .unwrap();
    assert!(reports.iter().any(|r| r.request.stage == "prod"));
    assert_eq!(p.image_tag("prod", APP), Some("1.0.0"));
    let run = reports.iter().find(|r| r.request.stage == "prod").unwrap();
    let who: Vec<&str> = run
        .request
        .approvals
        .iter()
        .map(|a| a.actor.as_str())
        .collect();
    assert_eq!(who, ["alice", "dave", "bob"]);
    assert_eq!(run.request.actor.as_deref(), Some("carol"));
}

#[tokio::test]
async fn a_rejection_takes_the_promotion_off_the_queue() {
    use kargo::core::PromotionPhase;
    use kargo::core::pipeline::{ApprovalDecision as D, ApprovalOutcome, Approver};
    let (p, freight) = ready_for_prod().await;
    p.promote_as("prod", &freight, "carol").await.unwrap();
    let (outcome, _) = p
        .answer_promotion("prod", &Approver::named("bob"), D::Reject)
        .await
        .unwrap();
    let ApprovalOutcome::Rejected(record) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(record.phase, PromotionPhase::Aborted);
    assert!(record.message.contains("rejected by bob"));
    assert!(p.state().stages["prod"].queue.is_empty());
    assert_eq!(p.image_tag("prod", APP), None);
    assert!(p.events().iter().any(
        |e| e.kind == kargo::core::events::EventType::PromotionAborted
            && e.actor.as_deref() == Some("bob")
    ));
}

/// staging may be promoted 09:00-17:00 New York time, every day (8 hours from 09:00 local,
/// whatever the season).
fn with_business_hours(extra_policy: &str) -> String {
    let m = MANIFESTS.replace(
        "  - stageSelector: {name: \"glob:*\"}\n    autoPromotionEnabled: true\n",
        &format!(
            "{extra_policy}  - stageSelector: {{name: \"glob:*\"}}\n    autoPromotionEnabled: true\n  promotionWindows:\n  - name: business-hours\n    kind: Allow\n    stageSelector: {{name: staging}}\n    rrule: FREQ=DAILY\n    dtstart: TZID=America/New_York:20260101T090000\n    dtend: TZID=America/New_York:20260101T170000\n"
        ),
    );
    assert_ne!(m, MANIFESTS, "the fixture's policy moved");
    m
}

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn auto_promotion_waits_for_the_window_across_a_dst_change() {
    use kargo::controller::ControllerError;
    // Saturday 2026-03-07, 18:00 in New York (EST): closed. Clocks go forward on Sunday
    // 2026-03-08 at 02:00, so Sunday's 09:00 is 13:00 UTC, not 14:00.
    let p = PipelineTest::new(with_business_hours(""))
        .gitops_dir(FIXTURE)
        .start_at(utc("2026-03-07T23:00:00Z"))
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    assert_eq!(p.image_tag("staging", APP), None, "outside business hours");
    let status = p.state().stages["staging"]
        .promotion_window_status
        .clone()
        .expect("the Stage says why it waits");
    assert!(status.closed);
    assert!(
        status.reason.contains("business-hours"),
        "{}",
        status.reason
    );
    assert_eq!(status.next_open, Some(utc("2026-03-08T13:00:00Z")));

    p.advance(utc("2026-03-08T12:59:00Z") - p.now())
        .await
        .unwrap();
    assert_eq!(p.image_tag("staging", APP), None, "08:59 EDT: still closed");
    p.advance(Duration::minutes(1)).await.unwrap();
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"), "09:00 EDT");
    let promoted = p.promotions("staging").last().unwrap().finished_at;
    assert_eq!(promoted, utc("2026-03-08T13:00:00Z"));
    let status = p.state().stages["staging"]
        .promotion_window_status
        .clone()
        .unwrap();
    assert!(!status.closed);
    assert_eq!(
        status.next_close,
        Some(utc("2026-03-08T21:00:00Z")),
        "17:00 EDT"
    );

    // 18:00 EDT: a manual promotion is refused with the next opening...
    p.advance(utc("2026-03-08T22:00:00Z") - p.now())
        .await
        .unwrap();
    p.publish_image(APP, "1.1.0");
    p.refresh_all().await.unwrap();
    let freight = p.freight_of(APP, "1.1.0").unwrap();
    match p
        .controller()
        .promote("staging", &freight, Some("ann".into()))
        .await
    {
        Err(e @ ControllerError::WindowClosed { .. }) => {
            let text = e.to_string();
            assert!(text.contains("next opening 2026-03-09T13:00:00Z"), "{text}");
        }
        other => panic!("expected the window to refuse, got {other:?}"),
    }
    // ...unless forced with a reason, which the history keeps.
    assert!(matches!(
        p.controller()
            .promote_forcing_window("staging", &freight, Some("ann".into()), "  ")
            .await,
        Err(ControllerError::WindowClosed { .. })
    ));
    p.controller()
        .promote_forcing_window("staging", &freight, Some("ann".into()), "hotfix for INC-42")
        .await
        .unwrap();
    assert_eq!(p.image_tag("staging", APP), Some("1.1.0"));
    let last = p.promotions("staging").last().unwrap().clone();
    assert_eq!(last.window_override.as_deref(), Some("hotfix for INC-42"));
}

#[tokio::test]
async fn a_queued_promotion_is_discarded_when_its_window_closes() {
    use kargo::core::events::EventType;
    // staging also needs one approval: a promotion queued at 16:30 waits for it, and the
    // window closes at 17:00 first.
    let approvals = "  - stageSelector: {name: staging}\n    autoPromotionEnabled: false\n    approvals: {minApprovals: 1}\n";
    let p = PipelineTest::new(with_business_hours(approvals))
        .gitops_dir(FIXTURE)
        .start_at(utc("2026-03-09T20:30:00Z")) // Monday 16:30 EDT
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    let freight = p.freight_of(APP, "1.0.0").unwrap();
    p.promote_as("staging", &freight, "ann").await.unwrap();
    assert_eq!(
        p.state().stages["staging"].queue.len(),
        1,
        "waits for approval"
    );
    p.advance(Duration::minutes(31)).await.unwrap(); // 17:01 EDT
    let st = p.state().stages["staging"].clone();
    assert!(st.queue.is_empty(), "discarded when the window closed");
    let last = p.promotions("staging").last().unwrap().clone();
    assert!(
        last.message.contains("promotion window closed"),
        "{}",
        last.message
    );
    assert!(
        p.events()
            .iter()
            .any(|e| e.kind == EventType::PromotionDiscarded
                && e.stage.as_deref() == Some("staging"))
    );
    assert_eq!(p.image_tag("staging", APP), None);
}

/// The fixture's task with a `wait-for-approval` step first, for staging only.
fn with_wait_step() -> String {
    let m = MANIFESTS.replace(
        "  steps:\n  - uses: git-clone\n",
        "  steps:\n  - uses: wait-for-approval\n    as: approval\n    if: ${{ ctx.stage == 'staging' }}\n    config:\n      minApprovals: 2\n      approvers: [{claim: email, value: alice@acme.example}, {role: sre}]\n  - uses: git-clone\n",
    );
    assert_ne!(m, MANIFESTS, "the fixture's task moved");
    m
}

async fn until_running(p: &PipelineRun, stage: &str) {
    for _ in 0..500 {
        if p.state()
            .stages
            .get(stage)
            .is_some_and(|s| s.current_promotion.is_some())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no promotion of {stage} started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_approval_step_waits_for_two_allowed_people() {
    use kargo::core::pipeline::{ApprovalDecision as D, ApprovalOutcome, Approver};
    let p = PipelineTest::new(with_wait_step())
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    let c = p.controller().clone();
    let pass = tokio::spawn(async move { c.reconcile(false).await });
    until_running(&p, "staging").await;
    assert_eq!(p.image_tag("dev", APP), Some("1.0.0"));
    let answer = |who: Approver, d: D| {
        let c = p.controller().clone();
        async move { c.record_answer("staging", None, &who, d, "").await }
    };
    // mallory is not an approver: her answer is kept but does not count.
    let out = answer(Approver::named("mallory"), D::Approve)
        .await
        .unwrap();
    assert!(matches!(out, ApprovalOutcome::ForRunningPromotion(_)));
    answer(Approver::named("alice@acme.example"), D::Approve)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!pass.is_finished(), "one allowed approval of two");
    assert_eq!(p.image_tag("staging", APP), None);
    answer(Approver::named("bob").in_groups(["sre"]), D::Approve)
        .await
        .unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(20), pass)
        .await
        .expect("the step finished once approved")
        .unwrap()
        .unwrap();
    assert_eq!(p.image_tag("staging", APP), Some("1.0.0"));
    let run = report
        .promotions
        .iter()
        .find(|r| r.request.stage == "staging")
        .unwrap();
    let step = &run.result.steps[0];
    assert!(step.alias.ends_with("approval"), "{}", step.alias);
    let responses = step.outputs["responses"].as_array().unwrap();
    let users: Vec<&str> = responses
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["alice@acme.example", "bob"],
        "only the allowed answers"
    );
    assert_eq!(responses[0]["action"], "approve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_approval_step_fails_on_a_rejection() {
    use kargo::core::PromotionPhase;
    use kargo::core::pipeline::{ApprovalDecision as D, Approver};
    let p = PipelineTest::new(with_wait_step())
        .gitops_dir(FIXTURE)
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    let c = p.controller().clone();
    let pass = tokio::spawn(async move { c.reconcile(false).await });
    until_running(&p, "staging").await;
    p.controller()
        .record_answer(
            "staging",
            None,
            &Approver::named("dave").in_groups(["sre"]),
            D::Reject,
            "not during the sale",
        )
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), pass)
        .await
        .expect("the step ended")
        .unwrap()
        .unwrap();
    let last = p.promotions("staging").last().unwrap().clone();
    assert_eq!(last.phase, PromotionPhase::Failed);
    assert!(
        last.message
            .contains("rejected by dave: not during the sale"),
        "{}",
        last.message
    );
    assert_eq!(p.image_tag("staging", APP), None);
}

#[tokio::test]
async fn the_schedule_wakes_when_the_window_opens() {
    let p = PipelineTest::new(with_business_hours(""))
        .gitops_dir(FIXTURE)
        .start_at(utc("2026-03-07T23:00:00Z"))
        .build()
        .await
        .unwrap();
    p.publish_image(APP, "1.0.0");
    p.reconcile().await.unwrap();
    let schedule = p.controller().schedule().await.unwrap();
    let opening = &schedule.window_openings[0];
    assert_eq!(
        (opening.stage.as_str(), opening.at),
        ("staging", utc("2026-03-08T13:00:00Z"))
    );
    // One long advance: the pass at the opening promotes, not the one at the end.
    p.advance(Duration::hours(20)).await.unwrap();
    let promoted = p.promotions("staging").last().unwrap().finished_at;
    assert_eq!(promoted, utc("2026-03-08T13:00:00Z"));
}
