//! `wait-for-approval`, as Kargo's commercial edition names it: the promotion waits at this
//! step until enough distinct people allowed by `approvers` approved it; one rejection by
//! such a person fails the step. Answers are given to the running promotion
//! (`Controller::answer_promotion` / `record_answer`, `promoter approve --stage S
//! --promotion NAME`, the REST API) and read from the controller's
//! [`ApprovalInbox`](kargo_core::pipeline::ApprovalInbox).
//!
//! Config (Kargo's names): `approvers[]`, each `{claim, value}` (`claim: email | sub |
//! name | user` compares the person's name; `claim: groups` one of their groups), `{role}`
//! (a group, or for the REST API a role the caller holds on the Stage), or our shorthands
//! `{user}` / `{group}`; the rules are ORed and an empty list allows anyone. `minApprovals`
//! (distinct people, default 1), `pollInterval` (default `30s`; an answer wakes the step at
//! once). The person who requested the promotion never counts. Output `responses[]`:
//! `{user, action: approve | reject, time, message}`.

use std::time::Duration;

use async_trait::async_trait;
use kargo_core::model::Duration as KargoDuration;
use kargo_core::pipeline::{
    ApprovalDecision, PromotionApproval, PromotionApprovals, approval_wake_key,
};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// How often the step looks for answers when nothing wakes it.
pub const APPROVAL_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// The `wait-for-approval` step.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitForApproval;

/// One rule of who may answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproverRule {
    /// A claim of the person: `email`, `sub`, `name` or `user` (their name), or `groups`.
    #[serde(default)]
    pub claim: Option<String>,
    /// The value the claim must have (for `groups`: one of the groups).
    #[serde(default)]
    pub value: Option<String>,
    /// A role (a group the person belongs to).
    #[serde(default)]
    pub role: Option<String>,
    /// A person, by name.
    #[serde(default)]
    pub user: Option<String>,
    /// A group.
    #[serde(default)]
    pub group: Option<String>,
}

impl ApproverRule {
    fn check(&self, index: usize) -> Result<(), StepError> {
        let set = [
            self.claim.is_some() || self.value.is_some(),
            self.role.is_some(),
            self.user.is_some(),
            self.group.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(StepError::invalid_config(
                format!("approvers[{index}]"),
                "set exactly one of {claim, value}, role, user, group",
            ));
        }
        if (self.claim.is_some() || self.value.is_some())
            && (self.claim.as_deref().unwrap_or("").is_empty()
                || self.value.as_deref().unwrap_or("").is_empty())
        {
            return Err(StepError::invalid_config(
                format!("approvers[{index}]"),
                "a claim rule needs both claim and value",
            ));
        }
        if let Some(c) = &self.claim
            && !matches!(c.as_str(), "email" | "sub" | "name" | "user" | "groups")
        {
            return Err(StepError::invalid_config(
                format!("approvers[{index}].claim"),
                format!("{c:?} is not one of email, sub, name, user, groups"),
            ));
        }
        Ok(())
    }

    fn allows(&self, a: &PromotionApproval) -> bool {
        let in_group = |g: &str| a.groups.iter().any(|x| x == g);
        match (
            &self.claim,
            &self.value,
            &self.role,
            &self.user,
            &self.group,
        ) {
            (Some(c), Some(v), ..) if c == "groups" => in_group(v),
            (Some(_), Some(v), ..) => a.actor == *v,
            (_, _, Some(r), ..) => in_group(r),
            (_, _, _, Some(u), _) => a.actor == *u,
            (_, _, _, _, Some(g)) => in_group(g),
            _ => false,
        }
    }
}

/// Configuration of [`WaitForApproval`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitForApprovalConfig {
    /// Who may answer (ORed); empty: anyone.
    #[serde(default)]
    pub approvers: Vec<ApproverRule>,
    /// Distinct approvals needed (default 1).
    #[serde(default)]
    pub min_approvals: Option<u32>,
    /// How often to look when nothing wakes the step (default 30s).
    #[serde(default)]
    pub poll_interval: Option<KargoDuration>,
}

fn response(a: &PromotionApproval) -> Json {
    let mut r = json!({
        "user": a.actor,
        "action": match a.decision {
            ApprovalDecision::Approve => "approve",
            ApprovalDecision::Reject => "reject",
        },
        "time": a.at,
    });
    if !a.message.is_empty() {
        r["message"] = Json::String(a.message.clone());
    }
    r
}

#[async_trait]
impl Step for WaitForApproval {
    const KIND: &'static str = "wait-for-approval";
    type Config = WaitForApprovalConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Idempotent)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: WaitForApprovalConfig,
    ) -> Result<StepOutcome, StepError> {
        for (i, rule) in config.approvers.iter().enumerate() {
            rule.check(i)?;
        }
        let min = config.min_approvals.unwrap_or(1);
        if min == 0 {
            return Err(StepError::invalid_config(
                "minApprovals",
                "must be at least 1",
            ));
        }
        let Some(inbox) = ctx.extensions().get::<PromotionApprovals>() else {
            return Err(StepError::failed(
                "wait-for-approval needs a controller that collects answers to running \
                 promotions; this runner has none",
            ));
        };
        let answers = inbox
            .0
            .responses(&ctx.stage, &ctx.promotion)
            .await
            .map_err(|e| StepError::retryable(format!("cannot read the approvals: {e}")))?;
        let allowed: Vec<&PromotionApproval> = answers
            .iter()
            .filter(|a| ctx.actor.as_deref() != Some(a.actor.as_str()))
            .filter(|a| config.approvers.is_empty() || config.approvers.iter().any(|r| r.allows(a)))
            .collect();
        let responses: Vec<Json> = allowed.iter().map(|a| response(a)).collect();
        if let Some(no) = allowed
            .iter()
            .find(|a| a.decision == ApprovalDecision::Reject)
        {
            return Err(StepError::failed(if no.message.is_empty() {
                format!("rejected by {}", no.actor)
            } else {
                format!("rejected by {}: {}", no.actor, no.message)
            }));
        }
        let mut approvers: Vec<&str> = allowed.iter().map(|a| a.actor.as_str()).collect();
        approvers.sort_unstable();
        approvers.dedup();
        if approvers.len() >= min as usize {
            return Ok(StepOutcome::succeeded()
                .with_output("responses", Json::Array(responses))
                .with_message(format!("approved by {}", approvers.join(", "))));
        }
        let every = config
            .poll_interval
            .map(|d| d.0)
            .filter(|d| !d.is_zero())
            .unwrap_or(APPROVAL_POLL_INTERVAL);
        Ok(StepOutcome::running(every)
            .with_output("responses", Json::Array(responses))
            .with_message(format!(
                "waiting for approval: {} of {min}",
                approvers.len()
            ))
            .with_wake_on(approval_wake_key(&ctx.promotion)))
    }
}
