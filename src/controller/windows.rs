//! Promotion windows in the controller ([`kargo_core::pipeline::PromotionWindows`]): a
//! Stage may be promoted while no matching Deny window is active and, when Allow windows
//! match it, one of them is. That holds for auto, manual and rollback promotions:
//!
//! - auto-promotion (and automatic rollback) waits for the next opening, and the Stage's
//!   state says when and why (`promotionWindowStatus`);
//! - a manual promotion or rollback in a closed window is refused with the next opening,
//!   unless forced with a reason, which the promotion's record keeps;
//! - a queued promotion that was not forced and whose window closed before it started is
//!   discarded: recorded as aborted, with a `PromotionDiscarded` event.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kargo_core::events::EventType;
use kargo_core::pipeline::{
    ProjectState, PromotionRequest, PromotionWindowStatus, PromotionWindows, WindowTarget,
};

use super::{Controller, ControllerError};

/// Every Stage's windows, parsed once (a window that does not parse closes its Stages,
/// with the problem as the reason; validation reports it first).
pub(super) type StageWindows = BTreeMap<String, Result<PromotionWindows, String>>;

/// The windows of each of the project's Stages that any window matches.
pub(super) fn stage_windows(
    manifests: &kargo_core::loader::ManifestSet,
    project: &str,
) -> StageWindows {
    let config = manifests.project_config(project);
    let cluster = manifests.cluster_config();
    let project_resource = manifests.project(project);
    let mut out = BTreeMap::new();
    for stage in manifests.stages(project) {
        let target = WindowTarget::of_stage(stage, project_resource);
        match PromotionWindows::for_stage(config, cluster, &target) {
            Ok(w) if w.is_empty() => {}
            Ok(w) => {
                out.insert(stage.metadata.name.clone(), Ok(w));
            }
            Err(e) => {
                out.insert(stage.metadata.name.clone(), Err(e.to_string()));
            }
        }
    }
    out
}

impl Controller {
    /// What the promotion windows say about `stage` at `now` (open, with no next close,
    /// when no window matches it).
    pub fn promotion_window_status_at(
        &self,
        stage: &str,
        now: DateTime<Utc>,
    ) -> PromotionWindowStatus {
        match self.windows.get(stage) {
            None => PromotionWindowStatus::default(),
            Some(Ok(w)) => w.status_at(now),
            Some(Err(problem)) => PromotionWindowStatus {
                closed: true,
                reason: format!("a promotion window does not parse: {problem}"),
                ..PromotionWindowStatus::default()
            },
        }
    }

    /// [`promotion_window_status_at`](Self::promotion_window_status_at) now.
    pub fn promotion_window_status(&self, stage: &str) -> PromotionWindowStatus {
        self.promotion_window_status_at(stage, self.now())
    }

    /// The Stages whose windows are closed at `now`, with their next opening, earliest
    /// first (the service loop wakes then: auto-promotion waiting there may run).
    pub(super) fn window_openings(
        &self,
        now: DateTime<Utc>,
    ) -> Vec<crate::schedule::WindowOpening> {
        let mut out: Vec<crate::schedule::WindowOpening> = self
            .windows
            .keys()
            .filter_map(|stage| {
                let status = self.promotion_window_status_at(stage, now);
                status.next_open.filter(|_| status.closed).map(|at| {
                    crate::schedule::WindowOpening {
                        stage: stage.clone(),
                        at,
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.stage.cmp(&b.stage)));
        out
    }

    /// Refuses a manual promotion or rollback of `stage` while its windows are closed,
    /// unless `force` gives a reason.
    pub(super) fn admit(&self, stage: &str, force: Option<&str>) -> Result<(), ControllerError> {
        let status = self.promotion_window_status(stage);
        if !status.closed {
            return Ok(());
        }
        match force.map(str::trim) {
            Some(reason) if !reason.is_empty() => {
                tracing::warn!(stage, reason, windows = %status.reason, "promoting in a closed promotion window, forced");
                Ok(())
            }
            Some(_) => Err(ControllerError::WindowClosed {
                stage: stage.to_owned(),
                reason: format!("{} (forcing needs a reason)", status.reason),
                next_open: status.next_open,
            }),
            None => Err(ControllerError::WindowClosed {
                stage: stage.to_owned(),
                reason: status.reason,
                next_open: status.next_open,
            }),
        }
    }

    /// Drops from `requests` those whose Stage's windows are closed now (auto-promotion
    /// waits), and writes each windowed Stage's status into `state` when it changed.
    pub(super) fn gate_auto(
        &self,
        state: &mut ProjectState,
        requests: &mut Vec<PromotionRequest>,
        now: DateTime<Utc>,
    ) {
        let mut closed: BTreeMap<&str, bool> = BTreeMap::new();
        for name in self.windows.keys() {
            let status = self.promotion_window_status_at(name, now);
            closed.insert(name.as_str(), status.closed);
            let st = state.stages.entry(name.clone()).or_default();
            if st.promotion_window_status.as_ref() != Some(&status) {
                st.promotion_window_status = Some(status);
            }
        }
        requests.retain(|r| {
            let shut = closed.get(r.stage.as_str()).copied().unwrap_or(false);
            if shut {
                tracing::debug!(stage = %r.stage, freight = %r.freight, "auto-promotion waits for the promotion window");
            }
            !shut
        });
    }

    /// Takes off `stage`'s queue the promotions not forced through a closed window, when
    /// its windows are closed at `now`; records each as aborted and returns them (with
    /// the reason) for their `PromotionDiscarded` events.
    pub(super) fn discard_closed(
        &self,
        state: &mut ProjectState,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Vec<(PromotionRequest, String)> {
        if !self.windows.contains_key(stage) {
            return Vec::new();
        }
        let status = self.promotion_window_status_at(stage, now);
        if !status.closed {
            return Vec::new();
        }
        let Some(st) = state.stages.get_mut(stage) else {
            return Vec::new();
        };
        let (kept, dropped): (Vec<_>, Vec<_>) = std::mem::take(&mut st.queue)
            .into_iter()
            .partition(|r| r.window_override.is_some());
        st.queue = kept;
        let mut out = Vec::new();
        for r in dropped {
            let message = format!("discarded: the promotion window closed ({})", status.reason);
            tracing::info!(stage, promotion = %r.name, "{message}");
            let record = r.aborted_before_start(message.clone(), r.actor.clone(), now);
            if let Some(st) = state.stages.get_mut(stage) {
                st.last_promotion = Some(record.clone());
            }
            state.promotions.push(record);
            out.push((r, message));
        }
        out
    }

    /// The `PromotionDiscarded` events of what [`discard_closed`](Self::discard_closed)
    /// took off a queue.
    pub(super) fn discarded_events(
        &self,
        discarded: &[(PromotionRequest, String)],
        state: &ProjectState,
    ) -> Vec<kargo_core::events::Event> {
        discarded
            .iter()
            .map(|(r, message)| {
                self.promotion_event(EventType::PromotionDiscarded, r, state, message.clone())
            })
            .collect()
    }
}
