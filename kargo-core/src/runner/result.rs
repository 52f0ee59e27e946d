//! What a promotion run reports: its phase and the record of every step.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The phase of a promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromotionPhase {
    /// Not started.
    Pending,
    /// Running.
    Running,
    /// Every counted step succeeded or was skipped.
    Succeeded,
    /// A counted step failed.
    Failed,
    /// A counted step errored.
    Errored,
    /// The promotion was cancelled.
    Aborted,
}

impl PromotionPhase {
    /// Whether the phase is final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Errored | Self::Aborted
        )
    }
}

impl fmt::Display for PromotionPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The status of one step execution, as recorded (Kargo's `PromotionStepStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StepExecutionStatus {
    /// Succeeded.
    Succeeded,
    /// Skipped (its `if` was false, an earlier step failed, or nothing to do).
    Skipped,
    /// Still running (only seen in results of aborted promotions).
    Running,
    /// Cancelled while running.
    Aborted,
    /// Failed (business failure).
    Failed,
    /// Errored (technical failure).
    Errored,
}

impl StepExecutionStatus {
    /// Kargo's status string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Skipped => "Skipped",
            Self::Running => "Running",
            Self::Aborted => "Aborted",
            Self::Failed => "Failed",
            Self::Errored => "Errored",
        }
    }

    pub(super) fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Errored)
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The alias.
    pub alias: String,
    /// The step kind.
    pub uses: String,
    /// The final status.
    pub status: StepExecutionStatus,
    /// A message (errors, skip reasons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the step first started (absent for steps that never ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Errors counted against the threshold.
    pub error_count: u32,
    /// How many times the step ran.
    pub attempts: u32,
    /// Whether the step had `continueOnError`.
    pub continue_on_error: bool,
    /// The step's outputs.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, Json>,
}

/// The outcome of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionResult {
    /// The final phase.
    pub phase: PromotionPhase,
    /// A summary message for non-successful phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every step, in order.
    pub steps: Vec<StepRecord>,
    /// Shared state: outputs by alias (including propagated task outputs).
    pub state: BTreeMap<String, Json>,
    /// For a dry run ([`Promotion::dry_run`](super::Promotion::dry_run)): what the steps
    /// recorded instead of performing outside effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<crate::step::DryRunLog>,
    /// When the promotion started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

impl PromotionResult {
    /// The record of the step with `alias`.
    pub fn step(&self, alias: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.alias == alias)
    }
}

/// How far a promotion got: what a runner records while it runs
/// ([`ProgressSink`](super::ProgressSink)) and what
/// [`Runner::run_resumable`](super::Runner::run_resumable) resumes from after the runner
/// died.
///
/// Each step's record is in one of three conditions: *not started* (status `Running`, no
/// `startedAt`), *in flight* (status `Running` with a `startedAt`: an
/// [`External`](crate::step::StepEffect::External) step is recorded so before it starts,
/// so a crash during it leaves this) or *finished* (any other status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionProgress {
    /// Every step of the promotion, in order.
    pub steps: Vec<StepRecord>,
    /// The shared state: outputs by alias (including propagated task outputs) of the
    /// steps that finished.
    #[serde(default)]
    pub state: BTreeMap<String, Json>,
    /// When the promotion first started.
    pub started_at: DateTime<Utc>,
    /// When this record was taken.
    pub updated_at: DateTime<Utc>,
}

impl PromotionProgress {
    /// Whether the step of `record` finished (whatever its status).
    pub fn is_finished(record: &StepRecord) -> bool {
        record.status != StepExecutionStatus::Running
    }

    /// The step that was under way when this record was taken, if any.
    pub fn in_flight(&self) -> Option<&StepRecord> {
        self.steps
            .iter()
            .find(|r| !Self::is_finished(r) && r.started_at.is_some())
    }

    /// The record of the step with `alias`.
    pub fn step(&self, alias: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.alias == alias)
    }

    /// How many steps finished.
    pub fn finished(&self) -> usize {
        self.steps.iter().filter(|r| Self::is_finished(r)).count()
    }

    /// The first step that did not finish: where a resumed run goes on (`None` when every
    /// step finished).
    pub fn resume_point(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|r| !Self::is_finished(r))
    }
}
