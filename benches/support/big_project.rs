//! A large project for the server benchmarks: 4 Warehouses and 600 Stages in three tiers
//! (per Warehouse 30 dev Stages fed by it, 60 staging Stages each fed by one dev Stage, 60
//! prod Stages each fed by one staging Stage), and a state of 5,000 Freight (one every 10
//! minutes, round robin over the Warehouses) with every Stage holding Freight: ten entries
//! of history, each verified, `currently_in`/`verified_in` set, the last promotion and the
//! project's 200 finished promotion records. A few Stages show other phases: a running
//! promotion, a queued one, a failed verification.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as Span, Utc};
use kargo::core::freight::{Freight, FreightCollection, FreightId, FreightOrigin, Image};
use kargo::core::pipeline::{
    CurrentStage, ProjectState, PromotionRecord, PromotionRequest, PromotionTrigger, StageFreight,
    VerificationInfo, VerificationPhase, VerifiedStage, record_freight,
};
use kargo::core::runner::{PromotionPhase, StepExecutionStatus, StepRecord};

/// The project's name.
pub const PROJECT: &str = "bench";
/// The Warehouses.
pub const WAREHOUSES: [&str; 4] = ["api", "web", "worker", "billing"];
/// Stages per tier and Warehouse.
const DEV: usize = 30;
const STAGING: usize = 60;
const PROD: usize = 60;

/// The Stages of one Warehouse, with the Stage each is fed by (`None`: the Warehouse).
fn stages_of(w: &str) -> Vec<(String, Option<String>, usize)> {
    let mut out = Vec::new();
    for i in 0..DEV {
        out.push((format!("dev-{w}-{i:02}"), None, 0));
    }
    for i in 0..STAGING {
        out.push((
            format!("staging-{w}-{i:02}"),
            Some(format!("dev-{w}-{:02}", i / 2)),
            1,
        ));
    }
    for i in 0..PROD {
        out.push((
            format!("prod-{w}-{i:02}"),
            Some(format!("staging-{w}-{i:02}")),
            2,
        ));
    }
    out
}

/// Every Stage: (name, Warehouse, upstream Stage, tier 0/1/2).
pub fn all_stages() -> Vec<(String, &'static str, Option<String>, usize)> {
    WAREHOUSES
        .iter()
        .flat_map(|w| {
            stages_of(w)
                .into_iter()
                .map(move |(n, up, tier)| (n, *w, up, tier))
        })
        .collect()
}

/// The manifests as YAML text: the Project, the Warehouses and the Stages, each Stage
/// promoting with `uses: noop`.
pub fn manifests_yaml() -> String {
    let mut yaml = format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {{name: {PROJECT}}}\n"
    );
    for w in WAREHOUSES {
        yaml.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\n\
             metadata: {{name: {w}, namespace: {PROJECT}}}\nspec:\n  interval: 24h\n\
             \x20 subscriptions:\n  - image: {{repoURL: registry.example/acme/{w}}}\n"
        ));
    }
    for (name, w, up, _) in all_stages() {
        let sources = match up {
            None => "{direct: true}".to_owned(),
            Some(u) => format!("{{stages: [{u}]}}"),
        };
        yaml.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\n\
             metadata: {{name: {name}, namespace: {PROJECT}}}\nspec:\n  requestedFreight:\n\
             \x20 - origin: {{kind: Warehouse, name: {w}}}\n    sources: {sources}\n\
             \x20 promotionTemplate:\n    spec:\n      steps:\n\
             \x20     - as: render\n        uses: noop\n\
             \x20     - as: push\n        uses: noop\n"
        ));
    }
    yaml
}

fn steps(at: DateTime<Utc>) -> Vec<StepRecord> {
    ["render", "push"]
        .iter()
        .map(|alias| StepRecord {
            alias: (*alias).to_owned(),
            uses: "noop".into(),
            status: StepExecutionStatus::Succeeded,
            message: None,
            started_at: Some(at),
            finished_at: Some(at + Span::seconds(2)),
            error_count: 0,
            attempts: 1,
            continue_on_error: false,
            outputs: Default::default(),
        })
        .collect()
}

/// The state: 5,000 Freight, the newest discovered an hour before `now`.
pub fn state(freight: usize, now: DateTime<Utc>) -> ProjectState {
    let mut state = ProjectState::default();
    let start = now - Span::hours(1) - Span::minutes(10 * freight as i64);
    // Per Warehouse, its Freight oldest first.
    let mut by_warehouse: BTreeMap<&str, Vec<FreightId>> = BTreeMap::new();
    for n in 0..freight {
        let w = WAREHOUSES[n % WAREHOUSES.len()];
        let mut f = Freight::new(
            FreightOrigin::warehouse(w),
            vec![],
            vec![Image {
                repo_url: format!("registry.example/acme/{w}"),
                tag: format!("1.{}.{}", n / 100, n % 100),
                digest: format!("sha256:{n:064x}"),
                annotations: BTreeMap::new(),
                subscription_name: None,
            }],
            vec![],
            vec![],
        );
        f.discovered_at = Some(start + Span::minutes(10 * n as i64));
        f.alias = Some(format!("{w}-build-{n}"));
        by_warehouse.entry(w).or_default().push(f.name.clone());
        record_freight(&mut state, f);
    }
    for w in WAREHOUSES {
        state
            .warehouses
            .entry(w.to_owned())
            .or_default()
            .last_discovery = Some(now);
    }
    let mut records = Vec::new();
    for (i, (name, w, _, tier)) in all_stages().into_iter().enumerate() {
        let ids = &by_warehouse[w];
        // Dev holds one of the newest 5, staging one 5 to 10 back, prod 20 to 30 back;
        // ten entries of history, three builds apart.
        let back = match tier {
            0 => i % 5,
            1 => 5 + i % 5,
            _ => 20 + i % 10,
        };
        let st = state.stages.entry(name.clone()).or_default();
        for h in 0..10 {
            let Some(id) = ids.len().checked_sub(1 + back + 3 * h).map(|k| &ids[k]) else {
                break;
            };
            let rec = &state.freight[id];
            let promoted_at = rec.freight.discovered_at.unwrap_or(now) + Span::minutes(30);
            let mut collection = FreightCollection::default();
            collection.insert((&rec.freight).into());
            let failed = h == 0 && i % 97 == 0;
            st.freight_history.push(StageFreight {
                collection,
                promoted_at,
                promotion: format!("{name}.{:04}", 10 - h),
                verification_history: vec![VerificationInfo {
                    phase: if failed {
                        VerificationPhase::Failed
                    } else {
                        VerificationPhase::Successful
                    },
                    message: if failed { "smoke test failed" } else { "ok" }.into(),
                    finished_at: promoted_at + Span::minutes(5),
                }],
            });
            let rec = state.freight.get_mut(id).expect("recorded");
            if !failed {
                rec.status.verified_in.insert(
                    name.clone(),
                    VerifiedStage {
                        verified_at: promoted_at + Span::minutes(5),
                        longest_soak_seconds: 3600,
                    },
                );
            }
            if h == 0 {
                rec.status
                    .currently_in
                    .insert(name.clone(), CurrentStage { since: promoted_at });
            }
        }
        let Some(entry) = st.freight_history.first() else {
            continue;
        };
        let freight = entry
            .collection
            .references()
            .first()
            .map(|r| r.name.clone())
            .expect("one Freight");
        let record = PromotionRecord {
            name: entry.promotion.clone(),
            stage: name.clone(),
            freight: freight.clone(),
            collection_id: entry.collection.id(),
            trigger: PromotionTrigger::Auto,
            phase: PromotionPhase::Succeeded,
            message: String::new(),
            finished_at: entry.promoted_at,
            actor: None,
            steps: steps(entry.promoted_at - Span::seconds(5)),
            window_override: None,
        };
        st.last_promotion = Some(record.clone());
        records.push(record);
        // Every 50th Stage promotes now, every 50th (offset 25) has one queued.
        if i % 50 == 0 || i % 50 == 25 {
            let newest = ids.last().expect("Freight").clone();
            let rec = &state.freight[&newest];
            let mut collection = FreightCollection::default();
            collection.insert((&rec.freight).into());
            let request = PromotionRequest {
                name: format!("{name}.0011"),
                stage: name.clone(),
                freight: newest,
                origin: FreightOrigin::warehouse(w),
                collection,
                trigger: PromotionTrigger::Manual,
                hold: false,
                actor: Some("ada".into()),
                requested_at: now,
                approvals: Vec::new(),
                window_override: None,
            };
            let st = state.stages.get_mut(&name).expect("inserted");
            if i % 50 == 0 {
                st.current_promotion = Some(request);
            } else {
                st.queue.push(request);
            }
        }
    }
    records.sort_by_key(|r| r.finished_at);
    let keep = records.len().saturating_sub(200);
    state.promotions = records.split_off(keep);
    state
}
