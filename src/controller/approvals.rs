//! Answers to promotions waiting for approval ([`kargo_core::pipeline::ApprovalPolicy`]
//! of the Stage): recorded in the state, then the Stage's queue runs when the promotion
//! at its head may.

use kargo_core::events::EventType;
use kargo_core::pipeline::{ApprovalDecision, ApprovalOutcome, Approver};

use std::sync::Arc;

use kargo_core::pipeline::{ApprovalInbox, PromotionApproval, StateStore};

use super::{Controller, ControllerError, PromotionReport};

/// The answers to a running promotion, read from the state store (where
/// [`Controller::record_answer`] writes them, on any replica).
pub(super) struct StoreInbox {
    pub(super) store: Arc<dyn StateStore>,
    pub(super) project: String,
}

impl std::fmt::Debug for StoreInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreInbox")
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ApprovalInbox for StoreInbox {
    async fn responses(
        &self,
        stage: &str,
        promotion: &str,
    ) -> Result<Vec<PromotionApproval>, String> {
        let (state, _) = self
            .store
            .load(&self.project)
            .await
            .map_err(|e| e.to_string())?;
        Ok(state
            .stages
            .get(stage)
            .and_then(|s| s.current_promotion.as_ref())
            .filter(|r| r.name == promotion)
            .map(|r| r.approvals.clone())
            .unwrap_or_default())
    }
}

impl Controller {
    /// Records `who`'s answer to a promotion queued for `stage` (`promotion`: its name;
    /// `None`: the head of the Stage's queue) under the Stage's approval policy, then runs
    /// the Stage's queue if the promotion may run now (and the auto-promotion that enables
    /// downstream). Refused (a [`PipelineError::Approval`](kargo_core::pipeline::PipelineError::Approval)):
    /// a Stage without approval policy, no such queued promotion, the requester answering
    /// their own promotion, a person the policy does not allow. A rejection takes the
    /// promotion off the queue (recorded as aborted; a `PromotionAborted` event).
    pub async fn answer_promotion(
        &self,
        stage: &str,
        promotion: Option<&str>,
        who: &Approver,
        decision: ApprovalDecision,
        message: &str,
    ) -> Result<(ApprovalOutcome, Vec<PromotionReport>), ControllerError> {
        let outcome = self
            .record_answer(stage, promotion, who, decision, message)
            .await?;
        let reports = match &outcome {
            ApprovalOutcome::Recorded(status) if status.satisfied() => {
                let mut reports = self.drain(stage).await?;
                reports.extend(self.auto_promote().await?);
                reports
            }
            _ => Vec::new(),
        };
        Ok((outcome, reports))
    }

    /// [`answer_promotion`](Self::answer_promotion) without running anything: the answer
    /// is recorded, and a running [`Service`](crate::service::Service) (this replica's or
    /// another's, woken by the store's change) runs the promotion once it may.
    pub async fn record_answer(
        &self,
        stage: &str,
        promotion: Option<&str>,
        who: &Approver,
        decision: ApprovalDecision,
        message: &str,
    ) -> Result<ApprovalOutcome, ControllerError> {
        let now = self.now();
        let mut rejected = None;
        let outcome = self
            .update(|state| {
                let outcome = self
                    .pipeline()
                    .record_approval(state, stage, promotion, who, decision, message, now)?;
                rejected = match &outcome {
                    ApprovalOutcome::Rejected(record) => Some((
                        record.clone(),
                        state
                            .freight
                            .get(&record.freight)
                            .map(|f| f.freight.clone()),
                    )),
                    _ => None,
                };
                Ok(outcome)
            })
            .await?;
        if let Some((record, freight)) = rejected {
            let mut e = kargo_core::events::Event::new(
                EventType::PromotionAborted,
                now,
                self.project(),
                record.message.clone(),
            );
            e.actor = Some(who.name.clone());
            e.stage = Some(stage.to_owned());
            e.freight = freight;
            e.promotion = Some(kargo_core::events::PromotionInfo {
                name: record.name.clone(),
                create_time: record.finished_at,
                rollback: record.trigger == kargo_core::pipeline::PromotionTrigger::Rollback,
                applications: Vec::new(),
                verification_pending: None,
            });
            self.emit(e);
        }
        if let ApprovalOutcome::ForRunningPromotion(name) = &outcome {
            // A waiting `wait-for-approval` step of this process looks again at once.
            self.runner
                .wake(&kargo_core::pipeline::approval_wake_key(name));
        }
        Ok(outcome)
    }
}
