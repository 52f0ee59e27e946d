//! Approvals of queued promotions (the Stage's [`ApprovalPolicy`]): a promotion into a
//! Stage with a policy waits at the head of the Stage's queue until enough distinct people
//! allowed by the policy approved it; the person who requested it never counts; an
//! approval older than the policy's `expiry` no longer counts; one rejection takes the
//! promotion off the queue (recorded as aborted, with who rejected it and why). Each
//! approval is kept on the request with its actor, groups, time and message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Pipeline, PipelineError, PromotionRecord, PromotionRequest, policy_matches};
use crate::model::{ApprovalPolicy, Stage};
use crate::pipeline::ProjectState;

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    /// The promotion may run (once enough people approved).
    Approve,
    /// The promotion must not run.
    Reject,
}

/// One person's answer to a promotion waiting for approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionApproval {
    /// Who answered.
    pub actor: String,
    /// The groups they belonged to then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Approve or reject.
    pub decision: ApprovalDecision,
    /// When.
    pub at: DateTime<Utc>,
    /// What they said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Who is answering: the name the front end authenticated, and their groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approver {
    /// The person.
    pub name: String,
    /// Their groups.
    pub groups: Vec<String>,
}

impl Approver {
    /// A person without groups.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            groups: Vec::new(),
        }
    }

    /// The same person, member of `groups`.
    pub fn in_groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }
}

/// Where a promotion stands with its Stage's approval policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalStatus {
    /// Approvals that count now (distinct, allowed, not the requester's, not expired).
    pub approved_by: Vec<String>,
    /// How many are needed.
    pub required: u32,
}

impl ApprovalStatus {
    /// Whether the promotion may run.
    pub fn satisfied(&self) -> bool {
        self.approved_by.len() >= self.required as usize
    }
}

/// What an answer did.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalOutcome {
    /// Recorded; the promotion's standing now.
    Recorded(ApprovalStatus),
    /// The promotion was rejected and taken off the queue.
    Rejected(PromotionRecord),
    /// The answer was recorded for the running promotion (named), whose
    /// `wait-for-approval` steps read it.
    ForRunningPromotion(String),
}

impl Pipeline<'_> {
    /// The approval policy of `stage`: that of the first `promotionPolicies` entry that
    /// matches it, if it has `approvals`.
    pub fn approval_policy(&self, stage: &Stage) -> Option<&ApprovalPolicy> {
        self.config
            .and_then(|c| {
                c.spec
                    .promotion_policies
                    .iter()
                    .find(|p| policy_matches(p, stage))
            })
            .and_then(|p| p.approvals.as_ref())
    }

    /// Where `request` stands with its Stage's policy at `now`; `None`: the Stage needs
    /// no approval.
    pub fn approval_status(
        &self,
        request: &PromotionRequest,
        now: DateTime<Utc>,
    ) -> Option<ApprovalStatus> {
        let stage = self.stage(&request.stage).ok()?;
        let policy = self.approval_policy(stage)?;
        let mut approved_by: Vec<String> = Vec::new();
        for a in &request.approvals {
            let fresh = policy
                .expiry
                .is_none_or(|e| chrono::Duration::from_std(e.0).is_ok_and(|e| now - a.at <= e));
            if a.decision == ApprovalDecision::Approve
                && fresh
                && request.actor.as_deref() != Some(a.actor.as_str())
                && policy.allows(&a.actor, &a.groups)
                && !approved_by.contains(&a.actor)
            {
                approved_by.push(a.actor.clone());
            }
        }
        Some(ApprovalStatus {
            approved_by,
            required: policy.min_approvals,
        })
    }

    /// Records `who`'s answer to a promotion of `stage_name` (`promotion`: its name;
    /// `None`: the head of the queue of a Stage with an approval policy, else the running
    /// promotion).
    ///
    /// A queued promotion is answered under the Stage's approval policy. Refused: a Stage
    /// without one, no such promotion, the requester answering their own promotion, a
    /// person the policy does not allow. A second approval by the same person replaces
    /// the first (renewing it). A rejection takes the promotion off the queue and records
    /// it as aborted.
    ///
    /// The running promotion's answers are for its `wait-for-approval` steps, which apply
    /// their own rules ([`ApprovalOutcome::ForRunningPromotion`]); only the requester is
    /// refused here.
    #[allow(clippy::too_many_arguments)]
    pub fn record_approval(
        &self,
        state: &mut ProjectState,
        stage_name: &str,
        promotion: Option<&str>,
        who: &Approver,
        decision: ApprovalDecision,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<ApprovalOutcome, PipelineError> {
        let stage = self.stage(stage_name)?;
        let refuse = |promotion: &str, reason: String| PipelineError::Approval {
            stage: stage_name.to_owned(),
            promotion: promotion.to_owned(),
            reason,
        };
        let policy = self.approval_policy(stage);
        let st = state.stages.get(stage_name);
        let queue = st.map(|s| s.queue.as_slice()).unwrap_or_default();
        let running = st.and_then(|s| s.current_promotion.as_ref());
        let to_running = match promotion {
            Some(name) => running.is_some_and(|r| r.name == name),
            None => running.is_some() && (policy.is_none() || queue.is_empty()),
        };
        if who.name.trim().is_empty() {
            return Err(refuse(
                promotion.unwrap_or("(any)"),
                "the approver has no name".to_owned(),
            ));
        }
        let answer = PromotionApproval {
            actor: who.name.clone(),
            groups: who.groups.clone(),
            decision,
            at: now,
            message: message.to_owned(),
        };
        if to_running {
            let Some(request) = state
                .stages
                .get_mut(stage_name)
                .and_then(|s| s.current_promotion.as_mut())
            else {
                return Err(refuse(
                    promotion.unwrap_or("(any)"),
                    "no promotion is running".to_owned(),
                ));
            };
            if request.actor.as_deref() == Some(who.name.as_str()) {
                return Err(refuse(
                    &request.name,
                    format!(
                        "{} requested this promotion and cannot approve or reject it",
                        who.name
                    ),
                ));
            }
            request.approvals.retain(|a| a.actor != who.name);
            request.approvals.push(answer);
            tracing::info!(stage = stage_name, promotion = %request.name, by = %who.name, ?decision, "answer to a running promotion");
            return Ok(ApprovalOutcome::ForRunningPromotion(request.name.clone()));
        }
        let policy = policy.ok_or_else(|| {
            refuse(
                promotion.unwrap_or("(any)"),
                "the Stage's promotion policy asks for no approvals, and no promotion of it is running".to_owned(),
            )
        })?;
        let index = match promotion {
            Some(name) => queue.iter().position(|r| r.name == name),
            None => (!queue.is_empty()).then_some(0),
        }
        .ok_or_else(|| {
            refuse(
                promotion.unwrap_or("(any)"),
                "no such promotion is waiting in the Stage's queue".to_owned(),
            )
        })?;
        let request = &queue[index];
        if request.actor.as_deref() == Some(who.name.as_str()) {
            return Err(refuse(
                &request.name,
                format!(
                    "{} requested this promotion and cannot approve or reject it",
                    who.name
                ),
            ));
        }
        if !policy.allows(&who.name, &who.groups) {
            return Err(refuse(
                &request.name,
                format!(
                    "{} is not one of the Stage's approvers ({})",
                    who.name,
                    describe(policy)
                ),
            ));
        }
        let name = request.name.clone();
        let Some(st) = state.stages.get_mut(stage_name) else {
            return Err(refuse(&name, "the Stage has no state".to_owned()));
        };
        if decision == ApprovalDecision::Reject {
            let mut request = st.queue.remove(index);
            request.approvals.push(answer);
            tracing::info!(stage = stage_name, promotion = %name, by = %who.name, "promotion rejected");
            let record = request.aborted_before_start(
                if message.is_empty() {
                    format!("rejected by {}", who.name)
                } else {
                    format!("rejected by {}: {message}", who.name)
                },
                request.actor.clone(),
                now,
            );
            st.last_promotion = Some(record.clone());
            state.promotions.push(record.clone());
            return Ok(ApprovalOutcome::Rejected(record));
        }
        let request = &mut st.queue[index];
        request.approvals.retain(|a| a.actor != who.name);
        request.approvals.push(answer);
        let request = request.clone();
        let status = self
            .approval_status(&request, now)
            .unwrap_or(ApprovalStatus {
                approved_by: Vec::new(),
                required: 0,
            });
        tracing::info!(stage = stage_name, promotion = %name, by = %who.name, approvals = status.approved_by.len(), required = status.required, "promotion approved");
        Ok(ApprovalOutcome::Recorded(status))
    }
}

/// The policy's approvers, for messages.
fn describe(policy: &ApprovalPolicy) -> String {
    if policy.approvers.is_empty() {
        return "anyone".to_owned();
    }
    policy
        .approvers
        .iter()
        .map(|a| match (&a.user, &a.group) {
            (Some(u), _) => format!("user {u}"),
            (_, Some(g)) => format!("group {g}"),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a running promotion's approvals are read: the `wait-for-approval` step asks it
/// for the answers recorded for its promotion. A controller that collects answers
/// ([`Pipeline::record_approval`] on the running promotion) puts one into the promotion
/// ([`Promotion::approvals`](crate::runner::Promotion::approvals)).
#[async_trait::async_trait]
pub trait ApprovalInbox: Send + Sync + std::fmt::Debug {
    /// Every answer recorded so far for the running `promotion` of `stage`, oldest first.
    async fn responses(
        &self,
        stage: &str,
        promotion: &str,
    ) -> Result<Vec<PromotionApproval>, String>;
}

/// The [`ApprovalInbox`] of a running promotion, as the steps find it among their
/// extensions ([`StepContext::extensions`](crate::step::StepContext::extensions)).
#[derive(Debug, Clone)]
pub struct PromotionApprovals(pub std::sync::Arc<dyn ApprovalInbox>);

/// The wake key of answers to `promotion`: a waiting `wait-for-approval` step is polled
/// again at once when the runner is woken with it.
pub fn approval_wake_key(promotion: &str) -> String {
    format!("approval {promotion}")
}
