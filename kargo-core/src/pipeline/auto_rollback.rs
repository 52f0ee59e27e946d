//! Automatic rollback, with the fields Kargo publishes
//! (`ProjectConfig.spec.promotionPolicies[].autoRollback`): when the Stage's verification
//! ends in one of `onVerification`'s phases (default `[Failed]`), or a promotion to it in
//! one of `onPromotion`'s (default none), the Stage is promoted back to its stable Freight:
//! per origin, the Freight whose verification in the Stage last passed (Kargo's
//! `status.metadata.stableFreight["Warehouse/<name>"]`, kept in the Stage's metadata under
//! [`STABLE_FREIGHT_KEY`]).
//!
//! The rules, as Kargo states them:
//! - only once the Stage is settled (no promotion running or queued);
//! - a failure older than [`AUTO_ROLLBACK_MAX_AGE`] is left alone;
//! - never a rollback of a rollback (the failed promotion was itself a rollback);
//! - only once per failure (a rollback, automatic or by hand, finished after it);
//! - only with a stable Freight for the origin, and not for an origin a person pinned
//!   (an auto-promotion hold);
//! - a Stage of several origins rolls back one origin at a time, in the order the Stage
//!   requests them.
//!
//! The rollback is an ordinary promotion with the trigger
//! [`PromotionTrigger::Rollback`](crate::pipeline::PromotionTrigger::Rollback) (steps see
//! `ctx.meta.promotion.rollback`), made by the actor [`AUTO_ROLLBACK_ACTOR`]; on success it
//! pins the origin (a hold), so auto-promotion does not bring the failed Freight straight
//! back. Downstream Stages never get the failed Freight: it was not verified here.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::{Pipeline, PromotionRequest, PromotionTrigger, policy_matches, promotion_name};
use crate::freight::{FreightCollection, FreightReference};
use crate::model::Stage;
use crate::pipeline::{ProjectState, StageState, VerificationPhase};
use crate::runner::PromotionPhase;

/// The Stage metadata key of the stable Freight per origin (Kargo's
/// `status.metadata.stableFreight`): an object from `Warehouse/<name>` to a Freight
/// reference.
pub const STABLE_FREIGHT_KEY: &str = "stableFreight";

/// Failures older than this are not rolled back (Kargo: 20 minutes).
pub const AUTO_ROLLBACK_MAX_AGE: chrono::Duration = chrono::Duration::minutes(20);

/// The actor recorded for automatic rollbacks.
pub const AUTO_ROLLBACK_ACTOR: &str = "kargo:auto-rollback";

/// A Stage's automatic rollback settings, with Kargo's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRollbackPolicy {
    /// Verification phases that roll back.
    pub on_verification: Vec<VerificationPhase>,
    /// Promotion phases that roll back.
    pub on_promotion: Vec<PromotionPhase>,
}

/// A phase name of `onVerification` (Kargo's spelling: `Failed`, `Error`).
pub fn verification_phase_named(name: &str) -> Option<VerificationPhase> {
    match name {
        "Failed" => Some(VerificationPhase::Failed),
        "Error" => Some(VerificationPhase::Error),
        _ => None,
    }
}

/// A phase name of `onPromotion` (Kargo's spelling: `Failed`, `Errored`).
pub fn promotion_phase_named(name: &str) -> Option<PromotionPhase> {
    match name {
        "Failed" => Some(PromotionPhase::Failed),
        "Errored" => Some(PromotionPhase::Errored),
        _ => None,
    }
}

/// The stable Freight of `origin_key` (`Warehouse/<name>`) in a Stage, if recorded.
pub fn stable_freight(stage: &StageState, origin_key: &str) -> Option<FreightReference> {
    stage
        .metadata
        .get(STABLE_FREIGHT_KEY)
        .and_then(|m| m.get(origin_key))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Records every Freight of `collection` as its origin's stable Freight in `stage`.
pub(super) fn record_stable(stage: &mut StageState, collection: &FreightCollection) {
    let entry = stage
        .metadata
        .entry(STABLE_FREIGHT_KEY.to_owned())
        .or_insert_with(|| Json::Object(serde_json::Map::new()));
    if !entry.is_object() {
        *entry = Json::Object(serde_json::Map::new());
    }
    if let Json::Object(map) = entry {
        for r in collection.references() {
            if let Ok(v) = serde_json::to_value(r) {
                map.insert(r.origin.to_string(), v);
            }
        }
    }
}

/// The failure that may call for a rollback: which promotion, when, and whether it was
/// the promotion itself that failed (`true`) or the verification after it.
struct Failure<'s> {
    promotion: &'s str,
    at: DateTime<Utc>,
    promotion_failed: bool,
}

impl Pipeline<'_> {
    /// The automatic rollback settings of `stage`: those of the first `promotionPolicies`
    /// entry that matches it, if it has `autoRollback` (`{}` turns it on with the
    /// defaults). Phase names Kargo does not know are left out (validation reports them).
    pub fn auto_rollback_policy(&self, stage: &Stage) -> Option<AutoRollbackPolicy> {
        let policy = self.config.and_then(|c| {
            c.spec
                .promotion_policies
                .iter()
                .find(|p| policy_matches(p, stage))
        })?;
        let config = policy.auto_rollback.as_ref()?;
        let on_verification = if config.on_verification.is_empty() {
            vec![VerificationPhase::Failed]
        } else {
            config
                .on_verification
                .iter()
                .filter_map(|n| verification_phase_named(n))
                .collect()
        };
        let on_promotion = config
            .on_promotion
            .iter()
            .filter_map(|n| promotion_phase_named(n))
            .collect();
        Some(AutoRollbackPolicy {
            on_verification,
            on_promotion,
        })
    }

    /// The rollbacks automatic rollback asks for now (at most one per Stage; see the
    /// module's rules).
    pub fn auto_rollbacks(
        &self,
        state: &ProjectState,
        now: DateTime<Utc>,
    ) -> Vec<PromotionRequest> {
        let mut out = Vec::new();
        for stage in self.stages {
            if stage.is_control_flow() {
                continue;
            }
            let Some(policy) = self.auto_rollback_policy(stage) else {
                continue;
            };
            let name = &stage.metadata.name;
            let Some(st) = state.stages.get(name) else {
                continue;
            };
            if st.current_promotion.is_some() || !st.queue.is_empty() {
                continue;
            }
            let Some(failure) = Self::latest_failure(st, &policy) else {
                continue;
            };
            if now - failure.at > AUTO_ROLLBACK_MAX_AGE {
                continue;
            }
            let failed = state
                .promotions
                .iter()
                .rev()
                .find(|p| p.stage == *name && p.name == failure.promotion);
            // Never a rollback of a rollback.
            if failed.is_some_and(|p| p.trigger == PromotionTrigger::Rollback) {
                continue;
            }
            // Once per failure: a rollback finished after it (this one or a person's).
            if state.promotions.iter().any(|p| {
                p.stage == *name
                    && p.trigger == PromotionTrigger::Rollback
                    && p.finished_at >= failure.at
            }) {
                continue;
            }
            let current = st.current().cloned().unwrap_or_default();
            // The origins to put back, in the Stage's order: for a failed promotion, the
            // origin it promoted; for a failed verification, every origin whose current
            // Freight is not its stable one.
            let failed_origin = failed
                .and_then(|p| state.freight.get(&p.freight))
                .map(|r| r.freight.origin.clone());
            let mut target = None;
            for req in &stage.spec.requested_freight {
                let key = req.origin.to_string();
                if st.auto_promotion_holds.contains_key(&key) {
                    continue;
                }
                let Some(stable) = stable_freight(st, &key) else {
                    continue;
                };
                if failure.promotion_failed {
                    if failed_origin.as_ref() == Some(&req.origin) {
                        target = Some(stable);
                        break;
                    }
                } else if current.get(&req.origin).map(|r| &r.name) != Some(&stable.name) {
                    target = Some(stable);
                    break;
                }
            }
            let Some(stable) = target else {
                continue;
            };
            // The stable Freight must still be known and available to the Stage.
            let Some(record) = state.freight.get(&stable.name) else {
                continue;
            };
            if !Self::is_available(stage, record, now) {
                continue;
            }
            let mut collection = current.clone();
            collection.insert(stable.clone());
            tracing::info!(stage = %name, failed = failure.promotion, freight = %stable.name, "automatic rollback");
            out.push(PromotionRequest {
                name: promotion_name(name, stable.name.as_str()),
                stage: name.clone(),
                freight: stable.name.clone(),
                origin: stable.origin.clone(),
                collection,
                trigger: PromotionTrigger::Rollback,
                hold: self.auto_promotion_enabled(stage)
                    && self.candidate(stage, &stable.origin, state, now).as_ref()
                        != Some(&stable.name),
                actor: Some(AUTO_ROLLBACK_ACTOR.to_owned()),
                requested_at: now,
                approvals: Vec::new(),
                window_override: None,
            });
        }
        out
    }

    /// The newest failure of the Stage that its policy rolls back: its last finished
    /// promotion in one of `onPromotion`'s phases, or the newest verification of its
    /// current collection in one of `onVerification`'s, whichever came last.
    fn latest_failure<'s>(st: &'s StageState, policy: &AutoRollbackPolicy) -> Option<Failure<'s>> {
        let promotion = st
            .last_promotion
            .as_ref()
            .filter(|p| policy.on_promotion.contains(&p.phase))
            .map(|p| Failure {
                promotion: p.name.as_str(),
                at: p.finished_at,
                promotion_failed: true,
            });
        let verification = st.freight_history.first().and_then(|h| {
            h.verification_history
                .first()
                .filter(|v| policy.on_verification.contains(&v.phase))
                .map(|v| Failure {
                    promotion: h.promotion.as_str(),
                    at: v.finished_at,
                    promotion_failed: false,
                })
        });
        match (promotion, verification) {
            (Some(p), Some(v)) => Some(if p.at >= v.at { p } else { v }),
            (p, v) => p.or(v),
        }
    }
}
