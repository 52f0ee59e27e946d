//! Tests of the promotion window evaluator, the windows' validation and the Stage state
//! field. Instants are exact UTC values; New York is UTC-5 in winter (EST) and UTC-4 in
//! summer (EDT), Berlin UTC+1 / UTC+2.

use chrono::{DateTime, TimeDelta, Utc};
use indexmap::IndexMap;

use super::*;
use crate::loader::ManifestSet;
use crate::pipeline::StageState;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn project_config(windows: &str) -> ProjectConfig {
    let text = format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\n\
         metadata: {{name: demo, namespace: demo}}\nspec:\n  promotionWindows:\n{windows}"
    );
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn cluster_config(windows: &str) -> ClusterConfig {
    let text = format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: ClusterConfig\n\
         metadata: {{name: cluster}}\nspec:\n  promotionWindows:\n{windows}"
    );
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Monday to Friday, 09:00 to 17:00 in New York.
const BUSINESS_HOURS: &str = "  - name: business-hours
    kind: Allow
    rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
    dtstart: TZID=America/New_York:20260105T090000
    dtend: TZID=America/New_York:20260105T170000
";

/// Saturday 00:00 to Monday 00:00 in Berlin.
const WEEKEND_FREEZE: &str = "  - name: weekend-freeze
    kind: Deny
    rrule: FREQ=WEEKLY
    dtstart: TZID=Europe/Berlin:20260103T000000
    dtend: TZID=Europe/Berlin:20260105T000000
";

/// Christmas, once.
const CHRISTMAS: &str = "  - name: christmas
    kind: Deny
    dtstart: 20261224T000000Z
    dtend: 20261227T000000Z
";

fn windows(config: &ProjectConfig) -> PromotionWindows {
    PromotionWindows::for_stage(Some(config), None, &WindowTarget::new("demo", "prod"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn status(config: &ProjectConfig, at: &str) -> PromotionWindowStatus {
    windows(config).status_at(utc(at))
}

const OUTSIDE_BUSINESS_HOURS: &str =
    "outside every Allow promotion window: \"business-hours\" (ProjectConfig \"demo\")";

#[test]
fn no_windows_means_always_open() {
    let config = project_config("    []\n");
    let w = windows(&config);
    assert!(w.is_empty());
    let s = w.status_at(utc("2026-01-06T15:00:00Z"));
    assert_eq!(s, PromotionWindowStatus::default());
    assert_eq!(
        serde_json::to_string(&s).unwrap_or_default(),
        r#"{"closed":false}"#
    );
    let none = PromotionWindows::for_stage(None, None, &WindowTarget::new("demo", "prod"));
    assert!(none.is_ok_and(|w| w.is_open_at(utc("2026-01-01T00:00:00Z"))));
}

#[test]
fn business_hours_allow_window() {
    let config = project_config(BUSINESS_HOURS);
    // Tuesday 6 January 2026, 10:00 EST: open until 17:00 EST.
    let s = status(&config, "2026-01-06T15:00:00Z");
    assert_eq!(
        s,
        PromotionWindowStatus {
            closed: false,
            reason: String::new(),
            next_open: None,
            next_close: Some(utc("2026-01-06T22:00:00Z")),
            next_close_reason: OUTSIDE_BUSINESS_HOURS.to_owned(),
        }
    );
    // Friday 18:00 EST: closed until Monday 09:00 EST.
    let s = status(&config, "2026-01-09T23:00:00Z");
    assert_eq!(
        s,
        PromotionWindowStatus {
            closed: true,
            reason: OUTSIDE_BUSINESS_HOURS.to_owned(),
            next_open: Some(utc("2026-01-12T14:00:00Z")),
            next_close: None,
            next_close_reason: String::new(),
        }
    );
    // The start is inside, the end outside.
    let w = windows(&config);
    assert!(w.is_open_at(utc("2026-01-12T14:00:00Z")));
    assert!(!w.is_open_at(utc("2026-01-12T13:59:59Z")));
    assert!(!w.is_open_at(utc("2026-01-12T22:00:00Z")));
    assert!(w.is_open_at(utc("2026-01-12T21:59:59Z")));
}

#[test]
fn business_hours_across_the_march_change_of_clocks() {
    let config = project_config(BUSINESS_HOURS);
    // Friday 6 March 2026, 18:00 EST; clocks go forward on Sunday 8 March; Monday 09:00
    // is EDT, 13:00Z.
    let s = status(&config, "2026-03-06T23:00:00Z");
    assert!(s.closed);
    assert_eq!(s.next_open, Some(utc("2026-03-09T13:00:00Z")));
    // Monday 09:30 EDT: closes at 17:00 EDT.
    let s = status(&config, "2026-03-09T13:30:00Z");
    assert!(!s.closed);
    assert_eq!(s.next_close, Some(utc("2026-03-09T21:00:00Z")));
    // 09:30 EST would be 14:30Z; at 13:30Z on the Friday before, it was still closed.
    assert!(status(&config, "2026-03-06T13:30:00Z").closed);
}

#[test]
fn business_hours_across_the_november_change_of_clocks() {
    let config = project_config(BUSINESS_HOURS);
    // Friday 30 October 2026, 18:00 EDT; clocks go back on Sunday 1 November; Monday
    // 09:00 is EST, 14:00Z.
    let s = status(&config, "2026-10-30T22:00:00Z");
    assert!(s.closed);
    assert_eq!(s.next_open, Some(utc("2026-11-02T14:00:00Z")));
    let s = status(&config, "2026-11-02T14:00:00Z");
    assert!(!s.closed);
    assert_eq!(s.next_close, Some(utc("2026-11-02T22:00:00Z")));
    // The Friday before closed at 17:00 EDT, 21:00Z.
    assert_eq!(
        status(&config, "2026-10-30T20:00:00Z").next_close,
        Some(utc("2026-10-30T21:00:00Z"))
    );
}

#[test]
fn weekend_deny_freeze() {
    let config = project_config(WEEKEND_FREEZE);
    // Sunday 4 January, 13:00 CET: frozen until Monday 00:00 CET.
    let s = status(&config, "2026-01-04T12:00:00Z");
    assert_eq!(
        s,
        PromotionWindowStatus {
            closed: true,
            reason: "promotions are denied by promotion window \"weekend-freeze\" \
                     (ProjectConfig \"demo\")"
                .to_owned(),
            next_open: Some(utc("2026-01-04T23:00:00Z")),
            ..Default::default()
        }
    );
    // Friday: open until Saturday 00:00 CET.
    let s = status(&config, "2026-01-09T12:00:00Z");
    assert!(!s.closed);
    assert_eq!(s.next_close, Some(utc("2026-01-09T23:00:00Z")));
    assert!(s.next_close_reason.contains("\"weekend-freeze\""));
    // Each occurrence lasts exactly dtend - dtstart (48 hours, RFC 5545 §3.8.5.3): the
    // weekend Berlin's clocks go forward (29 March 2026) starts Saturday 00:00 CET and
    // ends 48 hours later, Monday 01:00 CEST.
    let s = status(&config, "2026-03-29T12:00:00Z");
    assert!(s.closed);
    assert_eq!(s.next_open, Some(utc("2026-03-29T23:00:00Z")));
    // The weekend after starts at Saturday 00:00 CEST.
    let s = status(&config, "2026-04-03T12:00:00Z");
    assert_eq!(s.next_close, Some(utc("2026-04-03T22:00:00Z")));
}

#[test]
fn one_shot_deny_window() {
    let config = project_config(CHRISTMAS);
    let s = status(&config, "2026-12-20T00:00:00Z");
    assert!(!s.closed);
    assert_eq!(s.next_close, Some(utc("2026-12-24T00:00:00Z")));
    let s = status(&config, "2026-12-25T09:00:00Z");
    assert!(s.closed);
    assert_eq!(s.next_open, Some(utc("2026-12-27T00:00:00Z")));
    // After it: open for good, nothing to announce.
    assert_eq!(
        status(&config, "2026-12-28T00:00:00Z"),
        PromotionWindowStatus::default()
    );
}

#[test]
fn deny_overrides_allow() {
    // A release freeze on Wednesday 7 January 12:00-14:00 EST, inside business hours, and
    // another from 16:00 to 18:00 EST, past their end.
    let config = project_config(&format!(
        "{BUSINESS_HOURS}  - name: release-freeze
    kind: Deny
    dtstart: TZID=America/New_York:20260107T120000
    dtend: TZID=America/New_York:20260107T140000
  - name: late-freeze
    kind: Deny
    dtstart: TZID=America/New_York:20260107T160000
    dtend: TZID=America/New_York:20260107T180000
"
    ));
    // 11:00 EST: open, the freeze comes at noon.
    let s = status(&config, "2026-01-07T16:00:00Z");
    assert!(!s.closed);
    assert_eq!(s.next_close, Some(utc("2026-01-07T17:00:00Z")));
    assert!(
        s.next_close_reason.contains("\"release-freeze\""),
        "{}",
        s.next_close_reason
    );
    // 13:00 EST: closed by the freeze, open again at 14:00 (business hours go on).
    let s = status(&config, "2026-01-07T18:00:00Z");
    assert!(s.closed);
    assert!(
        s.reason
            .contains("denied by promotion window \"release-freeze\"")
    );
    assert_eq!(s.next_open, Some(utc("2026-01-07T19:00:00Z")));
    // 16:30 EST: the late freeze outlasts business hours: next opening Thursday 09:00.
    let s = status(&config, "2026-01-07T21:30:00Z");
    assert!(s.closed);
    assert!(s.reason.contains("\"late-freeze\""));
    assert_eq!(s.next_open, Some(utc("2026-01-08T14:00:00Z")));
}

#[test]
fn touching_allow_windows_do_not_close_in_between() {
    let config = project_config(
        "  - name: morning
    kind: Allow
    rrule: FREQ=DAILY
    dtstart: 20260101T090000Z
    dtend: 20260101T120000Z
  - name: afternoon
    kind: Allow
    rrule: FREQ=DAILY
    dtstart: 20260101T120000Z
    dtend: 20260101T170000Z
",
    );
    let s = status(&config, "2026-02-02T10:00:00Z");
    assert_eq!(s.next_close, Some(utc("2026-02-02T17:00:00Z")));
    let s = status(&config, "2026-02-02T18:00:00Z");
    assert_eq!(
        s.reason,
        "outside every Allow promotion window: \"morning\" (ProjectConfig \"demo\"), \
         \"afternoon\" (ProjectConfig \"demo\")"
    );
    assert_eq!(s.next_open, Some(utc("2026-02-03T09:00:00Z")));
}

#[test]
fn changes_beyond_the_horizon_are_not_reported() {
    let config = project_config(
        "  - name: long-freeze
    kind: Deny
    dtstart: 20260101T000000Z
    dtend: 20280101T000000Z
",
    );
    let s = status(&config, "2026-02-01T00:00:00Z");
    assert!(s.closed);
    assert_eq!(s.next_open, None);
    // Within 400 days of its end, the opening is known.
    let s = status(&config, "2027-01-01T00:00:00Z");
    assert_eq!(s.next_open, Some(utc("2028-01-01T00:00:00Z")));
    // An Allow window that is over: closed, with no known opening.
    let config = project_config(
        "  - name: launch-day
    kind: Allow
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
",
    );
    let s = status(&config, "2026-02-01T00:00:00Z");
    assert!(s.closed);
    assert!(s.reason.contains("\"launch-day\""));
    assert_eq!(s.next_open, None);
}

#[test]
fn a_dense_rule_is_evaluated_near_now() {
    // Allowed during the first 10 seconds of every minute.
    let config = project_config(
        "  - name: blink
    kind: Allow
    rrule: FREQ=MINUTELY
    dtstart: 20260101T000000Z
    dtend: 20260101T000010Z
",
    );
    let s = status(&config, "2026-06-01T12:00:05Z");
    assert!(!s.closed);
    assert_eq!(s.next_close, Some(utc("2026-06-01T12:00:10Z")));
    let s = status(&config, "2026-06-01T12:00:30Z");
    assert_eq!(s.next_open, Some(utc("2026-06-01T12:01:00Z")));
}

#[test]
fn stage_selectors() {
    let config = project_config(
        "  - name: exact
    kind: Deny
    stageSelector: {name: prod}
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
  - name: glob
    kind: Deny
    stageSelector: {name: 'glob:prod-*'}
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
  - name: regex
    kind: Deny
    stageSelector: {name: 'regex:^(uat|prod)$'}
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
  - name: labels
    kind: Deny
    stageSelector:
      matchLabels: {tier: prod}
      matchExpressions: [{key: region, operator: In, values: [eu, us]}]
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
  - name: everything
    kind: Deny
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
",
    );
    let prod_labels: IndexMap<String, String> = [("tier", "prod"), ("region", "eu")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let names = |stage: &str, labels: Option<&IndexMap<String, String>>| -> Vec<String> {
        let target = WindowTarget {
            stage_labels: labels,
            ..WindowTarget::new("demo", stage)
        };
        PromotionWindows::for_stage(Some(&config), None, &target)
            .map(|w| w.names().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(names("prod", None), ["exact", "regex", "everything"]);
    assert_eq!(names("prod-eu", None), ["glob", "everything"]);
    assert_eq!(names("uat", None), ["regex", "everything"]);
    assert_eq!(names("dev", None), ["everything"]);
    assert_eq!(names("dev", Some(&prod_labels)), ["labels", "everything"]);
    assert_eq!(
        names("prod-us", Some(&prod_labels)),
        ["glob", "labels", "everything"]
    );
}

#[test]
fn cluster_windows_join_the_project_ones() {
    let project = project_config(BUSINESS_HOURS);
    let cluster = cluster_config(
        "  - name: team-freeze
    kind: Deny
    projectSelector: {name: 'glob:team-*'}
    dtstart: 20260107T000000Z
    dtend: 20260108T000000Z
  - name: prod-projects
    kind: Deny
    projectSelector: {matchLabels: {tier: prod}}
    stageSelector: {name: prod}
    dtstart: 20260107T000000Z
    dtend: 20260108T000000Z
  - name: global-christmas
    kind: Deny
    dtstart: 20261224T000000Z
    dtend: 20261227T000000Z
",
    );
    let tier_prod: IndexMap<String, String> = [("tier".to_owned(), "prod".to_owned())]
        .into_iter()
        .collect();
    let names = |target: &WindowTarget<'_>| -> Vec<String> {
        PromotionWindows::for_stage(Some(&project), Some(&cluster), target)
            .map(|w| w.names().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        names(&WindowTarget::new("demo", "prod")),
        ["business-hours", "global-christmas"]
    );
    assert_eq!(
        names(&WindowTarget::new("team-a", "prod")),
        ["business-hours", "team-freeze", "global-christmas"]
    );
    let labelled = WindowTarget {
        project_labels: Some(&tier_prod),
        ..WindowTarget::new("demo", "prod")
    };
    assert_eq!(
        names(&labelled),
        ["business-hours", "prod-projects", "global-christmas"]
    );
    let other_stage = WindowTarget {
        project_labels: Some(&tier_prod),
        ..WindowTarget::new("demo", "dev")
    };
    assert_eq!(names(&other_stage), ["business-hours", "global-christmas"]);

    // Christmas Eve at 10:00 EST, a Thursday: business hours, but the cluster freezes.
    let w = PromotionWindows::for_stage(
        Some(&project),
        Some(&cluster),
        &WindowTarget::new("demo", "prod"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = w.status_at(utc("2026-12-24T15:00:00Z"));
    assert_eq!(
        s.reason,
        "promotions are denied by promotion window \"global-christmas\" (ClusterConfig)"
    );
    // Open again at the first business hour after it: Monday 28 December, 09:00 EST.
    assert_eq!(s.next_open, Some(utc("2026-12-28T14:00:00Z")));
}

#[test]
fn target_of_a_stage_resource() {
    let set = ManifestSet::from_yaml_str(
        "demo.yaml",
        "\
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo, labels: {tier: prod}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: demo, labels: {region: eu}}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stage = set
        .stages("demo")
        .next()
        .unwrap_or_else(|| panic!("no Stage"));
    let project = set.projects().next();
    let target = WindowTarget::of_stage(stage, project);
    assert_eq!(target.project, "demo");
    assert_eq!(target.stage, "prod");
    assert_eq!(
        target
            .project_labels
            .and_then(|l| l.get("tier"))
            .map(String::as_str),
        Some("prod")
    );
    assert_eq!(
        target
            .stage_labels
            .and_then(|l| l.get("region"))
            .map(String::as_str),
        Some("eu")
    );
}

#[test]
fn an_unparsable_matching_window_is_an_error() {
    let config = project_config(
        "  - name: bad
    kind: Deny
    rrule: FREQ=SOMETIMES
    dtstart: 20260101T000000Z
    dtend: 20260102T000000Z
",
    );
    let err = PromotionWindows::for_stage(Some(&config), None, &WindowTarget::new("demo", "prod"))
        .expect_err("bad rule");
    assert_eq!(
        err.to_string(),
        "ProjectConfig \"demo\": spec.promotionWindows[0] (\"bad\").rrule: unknown FREQ \
         \"SOMETIMES\": expected SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY"
    );
}

#[test]
fn validation_names_file_resource_and_key() {
    let text = "\
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: demo, namespace: demo}
spec:
  promotionWindows:
  - name: bad-rule
    kind: Allow
    rrule: FREQ=WEEKLY;BYWEEKNO=3
    dtstart: 20260101T000000Z
    dtend: 20260101T010000Z
  - name: bad-zone
    kind: Allow
    dtstart: TZID=Europe/Atlantis:20260101T000000
    dtend: 20260101T010000Z
  - name: backwards
    kind: Deny
    dtstart: 20260102T000000Z
    dtend: 20260101T000000Z
  - name: backwards
    kind: Deny
    projectSelector: {name: demo}
    dtstart: 20260101T000000Z
  - name: no-times
    kind: Deny
";
    let errors = ManifestSet::from_yaml_str("windows.yaml", text)
        .expect_err("invalid windows")
        .to_string();
    for wanted in [
        "windows.yaml:12:5: document 2: ProjectConfig demo/demo: \
         spec.promotionWindows[0].rrule: BYWEEKNO is not supported",
        "windows.yaml:17:5: document 2: ProjectConfig demo/demo: \
         spec.promotionWindows[1].dtstart: \"TZID=Europe/Atlantis:20260101T000000\": unknown \
         time zone \"Europe/Atlantis\"",
        "spec.promotionWindows[2].dtend: dtend \"20260101T000000Z\" (2026-01-01T00:00:00Z) \
         must be after dtstart \"20260102T000000Z\"",
        "spec.promotionWindows[3].name: promotion window name \"backwards\" already defined \
         at spec.promotionWindows[2]",
        "spec.promotionWindows[3].projectSelector: projectSelector is only allowed on \
         ClusterConfig promotion windows",
        "spec.promotionWindows[3].dtend: a date-time is required",
        "spec.promotionWindows[4].dtstart: a date-time is required",
        "spec.promotionWindows[4].dtend: a date-time is required",
    ] {
        assert!(errors.contains(wanted), "{wanted}\n---\n{errors}");
    }

    let unknown_kind = "\
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: demo, namespace: demo}
spec:
  promotionWindows:
  - name: maybe
    kind: Perhaps
    dtstart: 20260101T000000Z
    dtend: 20260101T010000Z
";
    let errors = ManifestSet::from_yaml_str("kind.yaml", unknown_kind)
        .expect_err("unknown kind")
        .to_string();
    assert!(
        errors.contains("spec.promotionWindows[0].kind") && errors.contains("Perhaps"),
        "{errors}"
    );
    assert!(
        errors.contains("Allow") && errors.contains("Deny"),
        "{errors}"
    );

    // ClusterConfig: projectSelector allowed, its pattern checked.
    let cluster = "\
apiVersion: kargo.akuity.io/v1alpha1
kind: ClusterConfig
metadata: {name: cluster}
spec:
  promotionWindows:
  - name: freeze
    kind: Deny
    projectSelector: {name: 'regex:('}
    dtstart: 20260101T000000Z
    dtend: 20260101T010000Z
";
    let errors = ManifestSet::from_yaml_str("cluster.yaml", cluster)
        .expect_err("bad regex")
        .to_string();
    assert!(
        errors
            .contains("spec.promotionWindows[0].projectSelector.name: invalid regular expression"),
        "{errors}"
    );
    assert!(
        ManifestSet::from_yaml_str("cluster.yaml", &cluster.replace("regex:(", "glob:team-*"))
            .is_ok()
    );
}

#[test]
fn stage_state_keeps_the_status_only_when_set() {
    let empty = StageState::default();
    let json = serde_json::to_value(&empty).unwrap_or_default();
    assert_eq!(json, serde_json::json!({}));
    let old: StageState = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.promotion_window_status, None);

    let with = StageState {
        promotion_window_status: Some(PromotionWindowStatus {
            closed: true,
            reason: "promotions are denied by promotion window \"christmas\"".to_owned(),
            next_open: Some(utc("2026-12-27T00:00:00Z")),
            ..Default::default()
        }),
        ..StageState::default()
    };
    let json = serde_json::to_value(&with).unwrap_or_default();
    assert_eq!(
        json,
        serde_json::json!({
            "promotionWindowStatus": {
                "closed": true,
                "reason": "promotions are denied by promotion window \"christmas\"",
                "nextOpen": "2026-12-27T00:00:00Z",
            }
        })
    );
    let back: StageState = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, with);
}

/// docs/features/promotion-windows.md: its manifests load, and the statuses it quotes are
/// the ones computed.
#[test]
fn the_documentation_example_says_what_the_evaluator_does() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/features/promotion-windows.md"
    );
    let page = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let blocks: Vec<&str> = page
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .collect();
    assert!(blocks.len() >= 5, "{} yaml blocks", blocks.len());
    let set = ManifestSet::from_yaml_str("promotion-windows.md", &blocks.join("\n---\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let project = set.projects().next();
    let status = |stage: &str, at: &str| {
        let stage = set
            .stages("guestbook")
            .find(|s| s.metadata.name == stage)
            .unwrap_or_else(|| panic!("no Stage {stage}"));
        PromotionWindows::for_stage(
            set.project_config("guestbook"),
            set.cluster_config(),
            &WindowTarget::of_stage(stage, project),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .status_at(utc(at))
    };
    let business = "outside every Allow promotion window: \"business-hours\" (ProjectConfig \
                    \"guestbook\")";
    // The two JSON examples.
    assert_eq!(
        status("prod", "2026-03-06T15:00:00Z"),
        PromotionWindowStatus {
            closed: true,
            reason: business.to_owned(),
            next_open: Some(utc("2026-03-09T13:00:00Z")),
            ..Default::default()
        }
    );
    assert_eq!(
        status("prod", "2026-03-09T15:00:00Z"),
        PromotionWindowStatus {
            closed: false,
            next_close: Some(utc("2026-03-09T21:00:00Z")),
            next_close_reason: business.to_owned(),
            ..Default::default()
        }
    );
    // The table: (instant, stage, closed by, next open or close).
    let rows = [
        (
            "2026-03-05T15:00:00Z",
            "staging",
            None,
            "2026-03-07T06:00:00Z",
        ),
        ("2026-03-05T15:00:00Z", "prod", None, "2026-03-05T22:00:00Z"),
        (
            "2026-03-07T08:00:00Z",
            "staging",
            Some("maintenance-saturday"),
            "2026-03-07T12:00:00Z",
        ),
        (
            "2026-03-07T08:00:00Z",
            "prod",
            Some("maintenance-saturday"),
            "2026-03-09T13:00:00Z",
        ),
        (
            "2026-03-30T14:00:00Z",
            "staging",
            Some("quarter-end"),
            "2026-03-31T22:00:00Z",
        ),
        (
            "2026-03-30T14:00:00Z",
            "prod",
            Some("quarter-end"),
            "2026-04-01T13:00:00Z",
        ),
        (
            "2026-12-24T15:00:00Z",
            "staging",
            Some("year-end-freeze"),
            "2027-01-04T00:00:00Z",
        ),
        (
            "2026-12-24T15:00:00Z",
            "prod",
            Some("year-end-freeze"),
            "2027-01-04T14:00:00Z",
        ),
    ];
    for (at, stage, closed_by, next) in rows {
        let s = status(stage, at);
        match closed_by {
            Some(window) => {
                assert!(s.closed, "{stage} at {at}: {s:?}");
                assert!(
                    s.reason.contains(&format!("\"{window}\"")),
                    "{stage} at {at}: {s:?}"
                );
                assert_eq!(s.next_open, Some(utc(next)), "{stage} at {at}");
            }
            None => {
                assert!(!s.closed, "{stage} at {at}: {s:?}");
                assert_eq!(s.next_close, Some(utc(next)), "{stage} at {at}");
            }
        }
    }
    assert!(
        status("staging", "2026-03-05T15:00:00Z")
            .next_close_reason
            .contains("\"maintenance-saturday\" (ClusterConfig)")
    );
}

/// The evaluator's next change agrees with a minute-by-minute scan of the windows'
/// occurrences (computed one window at a time, the open rule applied by hand), across the
/// March change of clocks in New York.
#[test]
fn next_changes_agree_with_a_minute_by_minute_scan() {
    let config = project_config(&format!(
        "{BUSINESS_HOURS}  - name: lunch
    kind: Deny
    rrule: FREQ=DAILY;BYHOUR=12;BYMINUTE=0,45
    dtstart: TZID=America/New_York:20260101T120000
    dtend: TZID=America/New_York:20260101T121500
  - name: night-owls
    kind: Allow
    rrule: FREQ=WEEKLY;INTERVAL=2;BYDAY=SA
    dtstart: TZID=America/New_York:20260103T230000
    dtend: TZID=America/New_York:20260104T030000
"
    ));
    let schedules: Vec<(PromotionWindowKind, Schedule)> = config
        .spec
        .promotion_windows
        .iter()
        .map(|w| {
            let s =
                Schedule::parse(&w.dtstart, &w.dtend, &w.rrule).unwrap_or_else(|e| panic!("{e:?}"));
            (w.kind, s)
        })
        .collect();
    let open_by_hand = |t: DateTime<Utc>| {
        let active = |s: &Schedule| {
            !s.occurrences(t, t + TimeDelta::seconds(1))
                .intervals
                .is_empty()
        };
        let deny = schedules
            .iter()
            .any(|(k, s)| *k == PromotionWindowKind::Deny && active(s));
        let allows: Vec<bool> = schedules
            .iter()
            .filter(|(k, _)| *k == PromotionWindowKind::Allow)
            .map(|(_, s)| active(s))
            .collect();
        !deny && (allows.is_empty() || allows.contains(&true))
    };
    let w = windows(&config);
    let start = utc("2026-03-05T00:00:00Z");
    let minutes = 6 * 24 * 60;
    let scan: Vec<bool> = (0..=minutes)
        .map(|m| open_by_hand(start + TimeDelta::minutes(m)))
        .collect();
    let mut checked = 0;
    for m in (0..minutes).step_by(37) {
        let now = start + TimeDelta::minutes(m);
        let s = w.status_at(now);
        assert_eq!(!s.closed, scan[m as usize], "at {now}");
        let next = if s.closed { s.next_open } else { s.next_close };
        let by_scan = (m as usize + 1..=minutes as usize)
            .find(|&i| scan[i] != scan[m as usize])
            .map(|i| start + TimeDelta::minutes(i as i64));
        if let Some(expected) = by_scan {
            assert_eq!(next, Some(expected), "at {now}: {s:?}");
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
}

/// A window that cannot be expanded up to `now` (a secondly rule with COUNT, walked from
/// its start years ago) closes the schedule and says so, rather than guessing.
#[test]
fn a_window_too_dense_to_evaluate_closes_the_schedule() {
    let config = project_config(
        "  - name: every-second
    kind: Allow
    rrule: FREQ=SECONDLY;COUNT=1000000000
    dtstart: 20200101T000000Z
    dtend: 20200101T000001Z
",
    );
    let s = status(&config, "2026-01-01T00:00:00Z");
    assert!(s.closed);
    assert_eq!(
        s.reason,
        "promotion window \"every-second\" (ProjectConfig \"demo\") recurs too densely to \
         evaluate"
    );
    assert_eq!(s.next_open, None);
}
