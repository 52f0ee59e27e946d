//! The pipeline: which Freight a Stage may receive, auto-promotion, approvals, one
//! promotion at a time per Stage, verification, history and rollback (reference §1.4 to
//! §1.11), as pure functions over a [`ProjectState`] and the manifests. Time is always
//! passed in (`now`), so every rule is testable without sleeping; persistence is a
//! [`StateStore`].
//!
//! The rules, as Kargo applies them:
//!
//! - **Availability** ([`Pipeline::is_available`]): Freight is available to a Stage that
//!   requests its origin when it was approved for the Stage, or the request is `direct`,
//!   or it was verified in one (`OneOf`) / every (`All`) upstream Stage of the request and
//!   has soaked there for `requiredSoakTime`. Approval bypasses verification and soak.
//! - **Auto-promotion** ([`Pipeline::auto_promotions`]): enabled per Stage by the first
//!   matching `promotionPolicies` entry of the ProjectConfig; per requested origin the
//!   candidate is the newest available Freight (by `discoveredAt`, ties by ID descending)
//!   or, with `MatchUpstream`, the Freight in the single upstream Stage. A promotion is
//!   requested when the candidate is not current, not already queued, and no hold pins the
//!   origin.
//! - **Holds**: a manual promotion of Freight that is not the candidate pins the origin
//!   once it succeeds; manually promoting the candidate lifts the hold.
//! - **One promotion at a time** per Stage: requests queue ([`Pipeline::enqueue`]); with
//!   superseding on, a newer request of an origin drops older queued (not running) ones.
//! - **Collections**: a promotion deploys the Stage's current collection with the chosen
//!   Freight replacing its origin's entry; an origin the Stage has never held is filled
//!   with the newest Freight of that origin available to it.
//! - **Verification**: after a successful promotion, a Stage without `verification` marks
//!   its collection verified at once; otherwise an embedder's [`Verifier`] decides and
//!   [`Pipeline::record_verification`] records it. A control-flow Stage (no promotion
//!   template) verifies every Freight available to it in itself.
//! - **Rollback** ([`Pipeline::rollback`]): re-promote the Stage's previous collection, a
//!   new promotion (and so a new commit), never a rewrite.

mod approvals;
mod auto_rollback;
mod file_store;
mod journal;
mod observed_store;
mod promotion_windows;
pub mod records;
mod retention;
mod soak;
mod stage_controls;
mod state;
mod store;

pub use approvals::{
    ApprovalDecision, ApprovalInbox, ApprovalOutcome, ApprovalStatus, Approver, PromotionApproval,
    PromotionApprovals, approval_wake_key,
};
pub use auto_rollback::{
    AUTO_ROLLBACK_ACTOR, AUTO_ROLLBACK_MAX_AGE, AutoRollbackPolicy, STABLE_FREIGHT_KEY,
    promotion_phase_named, stable_freight, verification_phase_named,
};
pub use file_store::FileStore;
pub use observed_store::{ChangeFeed, ObservedStore};
pub use promotion_windows::{
    PromotionWindowError, PromotionWindowStatus, PromotionWindows, SEARCH_HORIZON_DAYS,
    WindowSource, WindowTarget,
};
pub use retention::{RetentionPolicy, RetentionReport, apply_retention};
pub use soak::SoakDeadline;
pub use stage_controls::AbortOutcome;
pub use state::*;
pub use store::{Fence, MemoryStore, Revision, StageLease, StateError, StateStore};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::freight::{Freight, FreightCollection, FreightId, FreightOrigin, FreightReference};
use crate::model::{
    AutoPromotionSelectionPolicy, FreightAvailabilityStrategy, FreightRequest, ProjectConfig,
    PromotionPolicy, Stage,
};
use crate::runner::{PromotionPhase, promotion_name};

/// Why the pipeline refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// No Stage of that name.
    #[error("unknown Stage {0:?}")]
    UnknownStage(String),
    /// No Freight with that ID or alias.
    #[error("unknown Freight {0:?}")]
    UnknownFreight(String),
    /// The Stage does not request the Freight's origin.
    #[error("Stage {stage:?} does not request Freight from {origin} (Freight {freight})")]
    OriginNotRequested {
        /// The Stage.
        stage: String,
        /// The Freight.
        freight: String,
        /// Its origin.
        origin: String,
    },
    /// The Freight is not available to the Stage.
    #[error(
        "Freight {freight} is not available to Stage {stage:?}: it must be approved for the \
         Stage, or come directly from its Warehouse, or be verified (and soaked) upstream in \
         {upstream}"
    )]
    NotAvailable {
        /// The Stage.
        stage: String,
        /// The Freight.
        freight: String,
        /// The upstream Stages the request names.
        upstream: String,
    },
    /// Rollback needs an earlier collection.
    #[error("Stage {0:?} has no previous Freight to roll back to")]
    NothingToRollBack(String),
    /// The promotion is not the Stage's running one.
    #[error("promotion {promotion:?} is not running in Stage {stage:?}")]
    NotRunning {
        /// The Stage.
        stage: String,
        /// The promotion.
        promotion: String,
    },
    /// Abort needs a queued or running promotion.
    #[error("Stage {stage:?} has no {what} to abort")]
    NothingToAbort {
        /// The Stage.
        stage: String,
        /// What was looked for: `promotion` or `promotion {name:?}`.
        what: String,
    },
    /// A hold pins the Freight a Stage holds: it needs some.
    #[error("Stage {0:?} holds no Freight: there is nothing to hold auto-promotion at")]
    NothingToHold(String),
    /// A control-flow Stage cannot be promoted to.
    #[error("Stage {0:?} has no promotion template (a control-flow Stage): nothing to promote")]
    ControlFlow(String),
    /// An approval or rejection was refused.
    #[error("approval of promotion {promotion:?} in Stage {stage:?} refused: {reason}")]
    Approval {
        /// The Stage.
        stage: String,
        /// The promotion.
        promotion: String,
        /// Why.
        reason: String,
    },
}

/// Decides whether a Stage's collection is good, for Stages with `verification`.
/// Embedders implement it (Argo Rollouts analysis, HTTP checks, tests...).
#[async_trait]
pub trait Verifier: Send + Sync {
    /// Verifies `collection`, now in `stage`.
    async fn verify(&self, stage: &Stage, collection: &FreightCollection) -> VerificationInfo;
}

/// The manifests the pipeline needs: a project's Stages and its ProjectConfig.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline<'a> {
    stages: &'a [Stage],
    config: Option<&'a ProjectConfig>,
}

fn origin_key(origin: &FreightOrigin) -> String {
    origin.to_string()
}

/// Newest first: `discoveredAt` descending, then ID descending.
fn newest_first(a: &Freight, b: &Freight) -> std::cmp::Ordering {
    b.discovered_at
        .cmp(&a.discovered_at)
        .then_with(|| b.name.cmp(&a.name))
}

fn policy_matches(policy: &PromotionPolicy, stage: &Stage) -> bool {
    if let Some(name) = &policy.stage {
        return *name == stage.metadata.name;
    }
    let Some(sel) = &policy.stage_selector else {
        return false;
    };
    name_matches(&sel.name, &stage.metadata.name)
        && sel.label_selector().matches(&stage.metadata.labels)
}

/// Kargo's name pattern: empty matches all; `glob:` (doublestar); `regex:` / `regexp:`
/// (unanchored); otherwise exact. An invalid pattern matches nothing (validation reports
/// it).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    if let Some(glob) = pattern.strip_prefix("glob:") {
        return globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .is_ok_and(|g| g.compile_matcher().is_match(name));
    }
    if let Some(re) = pattern
        .strip_prefix("regex:")
        .or_else(|| pattern.strip_prefix("regexp:"))
    {
        return regex::Regex::new(re).is_ok_and(|r| r.is_match(name));
    }
    pattern == name
}

impl<'a> Pipeline<'a> {
    /// A pipeline over `stages` (one project's) and its ProjectConfig.
    pub fn new(stages: &'a [Stage], config: Option<&'a ProjectConfig>) -> Self {
        Self { stages, config }
    }

    /// The Stage named `name`.
    pub fn stage(&self, name: &str) -> Result<&'a Stage, PipelineError> {
        self.stages
            .iter()
            .find(|s| s.metadata.name == name)
            .ok_or_else(|| PipelineError::UnknownStage(name.to_owned()))
    }

    /// Whether auto-promotion is on for `stage`: the first `promotionPolicies` entry that
    /// matches it decides; no match, no ProjectConfig: off.
    pub fn auto_promotion_enabled(&self, stage: &Stage) -> bool {
        self.config
            .and_then(|c| {
                c.spec
                    .promotion_policies
                    .iter()
                    .find(|p| policy_matches(p, stage))
            })
            .is_some_and(|p| p.auto_promotion_enabled)
    }

    /// Resolves `id_or_alias` (a full ID, a unique ID prefix of at least 7 characters, or an
    /// alias).
    pub fn find_freight<'s>(
        &self,
        state: &'s ProjectState,
        id_or_alias: &str,
    ) -> Result<&'s FreightRecord, PipelineError> {
        // A full ID is a map lookup; aliases and prefixes need a scan.
        if let Some(r) = id_or_alias
            .parse::<FreightId>()
            .ok()
            .and_then(|id| state.freight.get(&id))
        {
            return Ok(r);
        }
        if let Some(r) = state.freight.values().find(|r| {
            r.freight.name.as_str() == id_or_alias
                || r.freight.alias.as_deref() == Some(id_or_alias)
        }) {
            return Ok(r);
        }
        if id_or_alias.len() >= 7 {
            let mut matches = state
                .freight
                .values()
                .filter(|r| r.freight.name.as_str().starts_with(id_or_alias));
            if let (Some(r), None) = (matches.next(), matches.next()) {
                return Ok(r);
            }
        }
        Err(PipelineError::UnknownFreight(id_or_alias.to_owned()))
    }

    /// How long `record` has soaked in `stage` (Kargo's `GetLongestSoak`): zero unless it
    /// was verified there; else the longest finished stay, or the current one if longer.
    pub fn longest_soak(record: &FreightRecord, stage: &str, now: DateTime<Utc>) -> Duration {
        let Some(v) = record.status.verified_in.get(stage) else {
            return Duration::ZERO;
        };
        let past = Duration::from_secs(v.longest_soak_seconds);
        let current = record
            .status
            .currently_in
            .get(stage)
            .and_then(|c| (now - c.since).to_std().ok())
            .unwrap_or_default();
        past.max(current)
    }

    fn request_for<'s>(stage: &'s Stage, origin: &FreightOrigin) -> Option<&'s FreightRequest> {
        stage
            .spec
            .requested_freight
            .iter()
            .find(|r| r.origin == *origin)
    }

    /// Whether `record` may be promoted to `stage` (see the module documentation).
    pub fn is_available(stage: &Stage, record: &FreightRecord, now: DateTime<Utc>) -> bool {
        let Some(req) = Self::request_for(stage, &record.freight.origin) else {
            return false;
        };
        if record
            .status
            .approved_for
            .contains_key(&stage.metadata.name)
        {
            return true;
        }
        if req.sources.direct {
            return true;
        }
        let soaked = |upstream: &String| {
            record.status.verified_in.contains_key(upstream)
                && req.sources.required_soak_time.is_none_or(|d| {
                    Self::longest_soak(record, upstream, now) >= std::time::Duration::from(d)
                })
        };
        let ups = &req.sources.stages;
        match req.sources.availability_strategy {
            FreightAvailabilityStrategy::All => !ups.is_empty() && ups.iter().all(soaked),
            FreightAvailabilityStrategy::OneOf => ups.iter().any(soaked),
        }
    }

    /// The Freight of `origin` available to `stage`, newest first.
    pub fn available<'s>(
        stage: &Stage,
        origin: &FreightOrigin,
        state: &'s ProjectState,
        now: DateTime<Utc>,
    ) -> Vec<&'s FreightRecord> {
        let mut out: Vec<&FreightRecord> = state
            .freight
            .values()
            .filter(|r| r.freight.origin == *origin && Self::is_available(stage, r, now))
            .collect();
        out.sort_by(|a, b| newest_first(&a.freight, &b.freight));
        out
    }

    /// Every Freight available to `stage` (all requested origins), newest first.
    pub fn available_to<'s>(
        stage: &Stage,
        state: &'s ProjectState,
        now: DateTime<Utc>,
    ) -> Vec<&'s FreightRecord> {
        let mut out: Vec<&FreightRecord> = state
            .freight
            .values()
            .filter(|r| Self::is_available(stage, r, now))
            .collect();
        out.sort_by(|a, b| newest_first(&a.freight, &b.freight));
        out
    }

    /// Auto-promotion's candidate for `origin` in `stage`, if any.
    pub fn candidate(
        &self,
        stage: &Stage,
        origin: &FreightOrigin,
        state: &ProjectState,
        now: DateTime<Utc>,
    ) -> Option<FreightId> {
        let req = Self::request_for(stage, origin)?;
        let policy = req
            .sources
            .auto_promotion_options
            .as_ref()
            .map(|o| o.selection_policy)
            .unwrap_or_default();
        match policy {
            AutoPromotionSelectionPolicy::NewestFreight => {
                Self::available(stage, origin, state, now)
                    .first()
                    .map(|r| r.freight.name.clone())
            }
            AutoPromotionSelectionPolicy::MatchUpstream => {
                let [upstream] = req.sources.stages.as_slice() else {
                    return None;
                };
                let id = state
                    .stages
                    .get(upstream)?
                    .current()?
                    .get(origin)?
                    .name
                    .clone();
                let record = state.freight.get(&id)?;
                Self::is_available(stage, record, now).then_some(id)
            }
        }
    }

    /// The collection a promotion of `freight` to `stage` deploys: the current collection
    /// with `freight` replacing its origin's entry, every other requested origin the Stage
    /// has never held filled with its newest available Freight, and origins the Stage no
    /// longer requests dropped.
    pub fn collection_for(
        stage: &Stage,
        freight: &Freight,
        state: &ProjectState,
        now: DateTime<Utc>,
    ) -> FreightCollection {
        let mut c = state
            .stages
            .get(&stage.metadata.name)
            .and_then(StageState::current)
            .cloned()
            .unwrap_or_default();
        c.insert(FreightReference::from(freight));
        for req in &stage.spec.requested_freight {
            if c.get(&req.origin).is_none()
                && let Some(r) = Self::available(stage, &req.origin, state, now).first()
            {
                c.insert(FreightReference::from(&r.freight));
            }
        }
        c.items
            .retain(|_, r| Self::request_for(stage, &r.origin).is_some());
        c
    }

    /// Checks that `id_or_alias` may be promoted to `stage_name` and builds the request
    /// (not yet queued). A manual request for Freight other than auto-promotion's
    /// candidate sets a hold when it succeeds (Kargo's `auto-promotion-hold`); one for the
    /// candidate lifts it.
    pub fn request_promotion(
        &self,
        state: &ProjectState,
        stage_name: &str,
        id_or_alias: &str,
        trigger: PromotionTrigger,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<PromotionRequest, PipelineError> {
        let stage = self.stage(stage_name)?;
        if stage.is_control_flow() {
            return Err(PipelineError::ControlFlow(stage_name.to_owned()));
        }
        let record = self.find_freight(state, id_or_alias)?;
        let freight = &record.freight;
        let Some(req) = Self::request_for(stage, &freight.origin) else {
            return Err(PipelineError::OriginNotRequested {
                stage: stage_name.to_owned(),
                freight: freight.name.to_string(),
                origin: freight.origin.to_string(),
            });
        };
        if !Self::is_available(stage, record, now) {
            return Err(PipelineError::NotAvailable {
                stage: stage_name.to_owned(),
                freight: freight.name.to_string(),
                upstream: if req.sources.stages.is_empty() {
                    "(none)".to_owned()
                } else {
                    req.sources.stages.join(", ")
                },
            });
        }
        let hold = trigger == PromotionTrigger::Manual
            && self.auto_promotion_enabled(stage)
            && self.candidate(stage, &freight.origin, state, now).as_ref() != Some(&freight.name);
        Ok(PromotionRequest {
            name: promotion_name(stage_name, freight.name.as_str()),
            stage: stage_name.to_owned(),
            freight: freight.name.clone(),
            origin: freight.origin.clone(),
            collection: Self::collection_for(stage, freight, state, now),
            trigger,
            hold,
            actor,
            requested_at: now,
            approvals: Vec::new(),
            window_override: None,
        })
    }

    /// A request re-promoting the Stage's previous collection (history element 1). Every
    /// Freight of it must still be available to the Stage.
    pub fn rollback(
        &self,
        state: &ProjectState,
        stage_name: &str,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<PromotionRequest, PipelineError> {
        let stage = self.stage(stage_name)?;
        let previous = state
            .stages
            .get(stage_name)
            .and_then(|s| s.freight_history.get(1))
            .map(|h| h.collection.clone())
            .ok_or_else(|| PipelineError::NothingToRollBack(stage_name.to_owned()))?;
        let current = state.stages.get(stage_name).and_then(StageState::current);
        let mut changed: Option<&FreightReference> = None;
        for r in previous.references() {
            let record = state
                .freight
                .get(&r.name)
                .ok_or_else(|| PipelineError::UnknownFreight(r.name.to_string()))?;
            if !Self::is_available(stage, record, now) {
                return Err(PipelineError::NotAvailable {
                    stage: stage_name.to_owned(),
                    freight: r.name.to_string(),
                    upstream: Self::request_for(stage, &r.origin)
                        .map(|q| q.sources.stages.join(", "))
                        .unwrap_or_default(),
                });
            }
            if changed.is_none() && current.and_then(|c| c.get(&r.origin)) != Some(r) {
                changed = Some(r);
            }
        }
        let first = changed
            .or_else(|| previous.references().into_iter().next())
            .ok_or_else(|| PipelineError::NothingToRollBack(stage_name.to_owned()))?;
        let hold = self.auto_promotion_enabled(stage)
            && previous
                .references()
                .iter()
                .any(|r| self.candidate(stage, &r.origin, state, now).as_ref() != Some(&r.name));
        Ok(PromotionRequest {
            name: promotion_name(stage_name, first.name.as_str()),
            stage: stage_name.to_owned(),
            freight: first.name.clone(),
            origin: first.origin.clone(),
            collection: previous,
            trigger: PromotionTrigger::Rollback,
            hold,
            actor,
            requested_at: now,
            approvals: Vec::new(),
            window_override: None,
        })
    }

    /// The promotions auto-promotion asks for now: for every Stage with auto-promotion on
    /// and a promotion template, each requested origin whose candidate is not current, not
    /// queued or running, not held, and whose newest finished promotion to the Stage (if
    /// any) succeeded.
    pub fn auto_promotions(
        &self,
        state: &ProjectState,
        now: DateTime<Utc>,
    ) -> Vec<PromotionRequest> {
        let mut out = Vec::new();
        for stage in self.stages {
            if stage.is_control_flow() || !self.auto_promotion_enabled(stage) {
                continue;
            }
            let name = &stage.metadata.name;
            let st = state.stages.get(name);
            for req in &stage.spec.requested_freight {
                let key = origin_key(&req.origin);
                if st.is_some_and(|s| s.auto_promotion_holds.contains_key(&key)) {
                    continue;
                }
                let Some(candidate) = self.candidate(stage, &req.origin, state, now) else {
                    continue;
                };
                let current = st
                    .and_then(StageState::current)
                    .and_then(|c| c.get(&req.origin))
                    .map(|r| &r.name);
                if current == Some(&candidate) {
                    continue;
                }
                if st.is_some_and(|s| {
                    s.pending()
                        .any(|p| p.collection.get(&req.origin).map(|r| &r.name) == Some(&candidate))
                }) {
                    continue;
                }
                // As Kargo: when the newest finished promotion of this Freight to this
                // Stage did not succeed (failed, errored, aborted), auto-promotion stands
                // down instead of retrying forever; a person promotes it again.
                let last = state
                    .promotions
                    .iter()
                    .rev()
                    .find(|p| p.stage == *name && p.freight == candidate);
                if last.is_some_and(|p| p.phase != PromotionPhase::Succeeded) {
                    continue;
                }
                if let Ok(r) = self.request_promotion(
                    state,
                    name,
                    candidate.as_str(),
                    PromotionTrigger::Auto,
                    None,
                    now,
                ) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Queues `request` behind the Stage's running and queued promotions. With `supersede`,
    /// queued (not running) requests of the same origin whose Freight is older are dropped
    /// and returned.
    pub fn enqueue(
        state: &mut ProjectState,
        request: PromotionRequest,
        supersede: bool,
    ) -> Vec<PromotionRequest> {
        let discovered = |id: &FreightId, state: &ProjectState| {
            state.freight.get(id).and_then(|r| r.freight.discovered_at)
        };
        let new_time = discovered(&request.freight, state);
        let mut dropped = Vec::new();
        if supersede {
            let queue =
                std::mem::take(&mut state.stages.entry(request.stage.clone()).or_default().queue);
            let mut kept = Vec::with_capacity(queue.len());
            for q in queue {
                if q.origin == request.origin && discovered(&q.freight, state) <= new_time {
                    dropped.push(q);
                } else {
                    kept.push(q);
                }
            }
            state.stages.entry(request.stage.clone()).or_default().queue = kept;
        }
        state
            .stages
            .entry(request.stage.clone())
            .or_default()
            .queue
            .push(request);
        dropped
    }

    /// Starts the Stage's next promotion, if none is running: moves the head of the queue
    /// to `current_promotion` and returns it. The collection of a manual or automatic
    /// promotion is rebuilt now from the Stage's current collection (see
    /// [`collection_for`](Self::collection_for)): two promotions queued together for
    /// different origins must not undo each other. A rollback keeps the collection it names.
    pub fn start_next(
        &self,
        state: &mut ProjectState,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Option<PromotionRequest> {
        let st = state.stages.get(stage)?;
        if st.current_promotion.is_some() || st.queue.is_empty() {
            return None;
        }
        // A promotion waiting for approvals holds the queue behind it.
        if self
            .approval_status(&st.queue[0], now)
            .is_some_and(|s| !s.satisfied())
        {
            return None;
        }
        let mut next = st.queue[0].clone();
        if next.trigger != PromotionTrigger::Rollback
            && let (Ok(s), Some(record)) = (self.stage(stage), state.freight.get(&next.freight))
        {
            next.collection = Self::collection_for(s, &record.freight, state, now);
        }
        let st = state.stages.get_mut(stage)?;
        st.queue.remove(0);
        st.current_promotion = Some(next.clone());
        Some(next)
    }

    /// Records the end of the Stage's running promotion. On success the collection becomes
    /// current (history, `currentlyIn`, soak bookkeeping of the Freight that left), holds
    /// are set or lifted, and a Stage without `verification` verifies it at once.
    pub fn finish(
        &self,
        state: &mut ProjectState,
        stage_name: &str,
        promotion: &str,
        phase: PromotionPhase,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<PromotionRecord, PipelineError> {
        let stage = self.stage(stage_name)?;
        let request = match state
            .stages
            .get(stage_name)
            .and_then(|s| s.current_promotion.as_ref())
        {
            Some(r) if r.name == promotion => r.clone(),
            _ => {
                return Err(PipelineError::NotRunning {
                    stage: stage_name.to_owned(),
                    promotion: promotion.to_owned(),
                });
            }
        };
        // Which origins get a hold (true) or lose theirs (false) on success: a manual
        // promotion pins or releases the chosen Freight's origin; a rollback pins each
        // origin whose rolled-back Freight is not auto-promotion's candidate.
        let holds: Vec<(FreightReference, bool)> = match request.trigger {
            PromotionTrigger::Auto => Vec::new(),
            PromotionTrigger::Manual => request
                .collection
                .get(&request.origin)
                .map(|r| vec![(r.clone(), request.hold)])
                .unwrap_or_default(),
            PromotionTrigger::Rollback => request
                .collection
                .references()
                .into_iter()
                .map(|r| {
                    let pinned = request.hold
                        && self.candidate(stage, &r.origin, state, now).as_ref() != Some(&r.name);
                    (r.clone(), pinned)
                })
                .collect(),
        };
        let st = state.stages.entry(stage_name.to_owned()).or_default();
        st.current_promotion = None;
        let record = PromotionRecord {
            name: request.name.clone(),
            stage: stage_name.to_owned(),
            freight: request.freight.clone(),
            collection_id: request.collection.id(),
            trigger: request.trigger,
            phase,
            message: message.to_owned(),
            finished_at: now,
            actor: request.actor.clone(),
            steps: Vec::new(),
            window_override: request.window_override.clone(),
        };
        st.last_promotion = Some(record.clone());
        if st
            .abort_requested
            .as_ref()
            .is_some_and(|a| a.promotion == request.name)
        {
            st.abort_requested = None;
        }
        if phase == PromotionPhase::Succeeded {
            let old = st.current().cloned().unwrap_or_default();
            st.freight_history.insert(
                0,
                StageFreight {
                    collection: request.collection.clone(),
                    promoted_at: now,
                    promotion: request.name.clone(),
                    verification_history: Vec::new(),
                },
            );
            st.freight_history.truncate(MAX_FREIGHT_HISTORY);
            for (r, pinned) in holds {
                if pinned {
                    st.auto_promotion_holds.insert(
                        origin_key(&r.origin),
                        AutoPromotionHold {
                            freight_name: r.name.clone(),
                            origin: r.origin.clone(),
                            promotion_name: request.name.clone(),
                            actor: request.actor.clone(),
                            created_at: now,
                        },
                    );
                } else {
                    st.auto_promotion_holds.remove(&origin_key(&r.origin));
                }
            }
            // Freight that left the Stage: remember its longest soak.
            for r in old.references() {
                if request.collection.get(&r.origin).map(|n| &n.name) == Some(&r.name) {
                    continue;
                }
                if let Some(f) = state.freight.get_mut(&r.name) {
                    let stay = f
                        .status
                        .currently_in
                        .remove(stage_name)
                        .and_then(|c| (now - c.since).to_std().ok())
                        .unwrap_or_default();
                    if let Some(v) = f.status.verified_in.get_mut(stage_name) {
                        v.longest_soak_seconds = v.longest_soak_seconds.max(stay.as_secs());
                    }
                }
            }
            for r in request.collection.references() {
                if let Some(f) = state.freight.get_mut(&r.name) {
                    f.status
                        .currently_in
                        .entry(stage_name.to_owned())
                        .or_insert(CurrentStage { since: now });
                }
            }
            if stage.spec.verification.is_none() {
                self.record_verification(
                    state,
                    stage_name,
                    VerificationInfo {
                        phase: VerificationPhase::Successful,
                        message: String::new(),
                        finished_at: now,
                    },
                )?;
            }
        }
        state.promotions.push(record.clone());
        let excess = state.promotions.len().saturating_sub(MAX_PROMOTION_RECORDS);
        state.promotions.drain(..excess);
        Ok(record)
    }

    /// Records a verification of the Stage's current collection; a successful one marks
    /// every Freight of it verified in the Stage.
    pub fn record_verification(
        &self,
        state: &mut ProjectState,
        stage_name: &str,
        info: VerificationInfo,
    ) -> Result<(), PipelineError> {
        self.stage(stage_name)?;
        let Some(entry) = state
            .stages
            .get_mut(stage_name)
            .and_then(|s| s.freight_history.first_mut())
        else {
            return Ok(());
        };
        entry.verification_history.insert(0, info.clone());
        entry
            .verification_history
            .truncate(MAX_VERIFICATION_HISTORY);
        let ids: Vec<FreightId> = entry
            .collection
            .references()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        if info.phase == VerificationPhase::Successful {
            let collection = entry.collection.clone();
            if let Some(st) = state.stages.get_mut(stage_name) {
                auto_rollback::record_stable(st, &collection);
            }
            for id in ids {
                if let Some(f) = state.freight.get_mut(&id) {
                    f.status
                        .verified_in
                        .entry(stage_name.to_owned())
                        .or_insert(VerifiedStage {
                            verified_at: info.finished_at,
                            longest_soak_seconds: 0,
                        });
                }
            }
        }
        Ok(())
    }

    /// Approves Freight for a Stage (bypassing verification and soak); the Stage must
    /// request its origin.
    pub fn approve(
        &self,
        state: &mut ProjectState,
        stage_name: &str,
        id_or_alias: &str,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<FreightId, PipelineError> {
        let stage = self.stage(stage_name)?;
        let id = self.find_freight(state, id_or_alias)?.freight.name.clone();
        let record = state
            .freight
            .get_mut(&id)
            .ok_or_else(|| PipelineError::UnknownFreight(id_or_alias.to_owned()))?;
        if Self::request_for(stage, &record.freight.origin).is_none() {
            return Err(PipelineError::OriginNotRequested {
                stage: stage_name.to_owned(),
                freight: id.to_string(),
                origin: record.freight.origin.to_string(),
            });
        }
        record.status.approved_for.insert(
            stage_name.to_owned(),
            ApprovedStage {
                approved_at: now,
                actor,
            },
        );
        Ok(id)
    }

    /// For every control-flow Stage, marks the Freight available to it as verified in it
    /// (and current in it); returns how many Freight were newly verified.
    pub fn reconcile_control_flow(&self, state: &mut ProjectState, now: DateTime<Utc>) -> usize {
        let mut n = 0;
        for stage in self.stages.iter().filter(|s| s.is_control_flow()) {
            let ids: Vec<FreightId> = Self::available_to(stage, state, now)
                .into_iter()
                .map(|r| r.freight.name.clone())
                .collect();
            for id in ids {
                if let Some(f) = state.freight.get_mut(&id)
                    && !f.status.verified_in.contains_key(&stage.metadata.name)
                {
                    f.status.verified_in.insert(
                        stage.metadata.name.clone(),
                        VerifiedStage {
                            verified_at: now,
                            longest_soak_seconds: 0,
                        },
                    );
                    f.status
                        .currently_in
                        .entry(stage.metadata.name.clone())
                        .or_insert(CurrentStage { since: now });
                    n += 1;
                }
            }
        }
        n
    }

    /// Stages whose requests name `upstream`, in manifest order.
    pub fn downstream_of(&self, upstream: &str) -> Vec<&'a Stage> {
        self.stages
            .iter()
            .filter(|s| {
                s.spec
                    .requested_freight
                    .iter()
                    .any(|r| r.sources.stages.iter().any(|u| u == upstream))
            })
            .collect()
    }
}

/// Adds Freight to the state (a new record with empty status), keeping any existing
/// record of the same ID untouched; returns whether it was new.
pub fn record_freight(state: &mut ProjectState, freight: Freight) -> bool {
    if state.freight.contains_key(&freight.name) {
        return false;
    }
    let warehouse = freight.origin.name.clone();
    let id = freight.name.clone();
    state.freight.insert(
        id.clone(),
        FreightRecord {
            freight,
            status: FreightStatus::default(),
        },
    );
    state.warehouses.entry(warehouse).or_default().last_freight = Some(id);
    true
}

/// Freight of `state` by alias, for alias generation (`is_taken`).
pub fn aliases(state: &ProjectState) -> BTreeMap<String, FreightId> {
    state
        .freight
        .values()
        .filter_map(|r| Some((r.freight.alias.clone()?, r.freight.name.clone())))
        .collect()
}

#[cfg(test)]
mod auto_rollback_tests;
#[cfg(test)]
mod tests;
