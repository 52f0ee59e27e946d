//! The state of a project's pipeline: Freight with its status, Stages with their history,
//! queues and holds, and Warehouses' last discovery. Plain serde values, stored by a
//! [`StateStore`](super::StateStore).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::freight::{Freight, FreightCollection, FreightId, FreightOrigin};
use crate::runner::{PromotionPhase, PromotionProgress};

/// The format version written by this crate.
pub const STATE_FORMAT: u32 = 1;

/// How many collections a Stage's Freight history keeps (Kargo: 10).
pub const MAX_FREIGHT_HISTORY: usize = 10;

/// How many verifications each history entry keeps (Kargo: 10).
pub const MAX_VERIFICATION_HISTORY: usize = 10;

/// How many finished promotions the project keeps.
pub const MAX_PROMOTION_RECORDS: usize = 200;

/// Everything the pipeline knows about one project.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectState {
    /// The format version ([`STATE_FORMAT`]).
    #[serde(default)]
    pub format: u32,
    /// Freight by ID.
    #[serde(default)]
    pub freight: BTreeMap<FreightId, FreightRecord>,
    /// Stages by name.
    #[serde(default)]
    pub stages: BTreeMap<String, StageState>,
    /// Warehouses by name.
    #[serde(default)]
    pub warehouses: BTreeMap<String, WarehouseState>,
    /// Finished promotions, oldest first (at most [`MAX_PROMOTION_RECORDS`]).
    #[serde(default)]
    pub promotions: Vec<PromotionRecord>,
    /// The latest fencing token granted per Stage lease
    /// ([`StateStore::acquire_lease`](super::StateStore::acquire_lease)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fences: BTreeMap<String, u64>,
    /// The recorded progress of running promotions, by promotion name: what a runner that
    /// takes over a promotion whose runner died resumes from
    /// ([`Runner::run_resumable`](crate::runner::Runner::run_resumable)). Removed when the
    /// promotion finishes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub progress: BTreeMap<String, PromotionProgress>,
}

/// One piece of Freight and its status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FreightRecord {
    /// The Freight (immutable once recorded, except its alias).
    pub freight: Freight,
    /// Where it is, where it was verified, where it was approved.
    #[serde(default)]
    pub status: FreightStatus,
}

/// Kargo's `Freight.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FreightStatus {
    /// Stages the Freight is currently in, with the time it arrived.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub currently_in: BTreeMap<String, CurrentStage>,
    /// Stages the Freight was verified in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verified_in: BTreeMap<String, VerifiedStage>,
    /// Stages the Freight was manually approved for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approved_for: BTreeMap<String, ApprovedStage>,
    /// Arbitrary metadata (`set-metadata`, `freightMetadata()`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Json>,
}

/// Since when Freight has been in a Stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentStage {
    /// Arrival time.
    pub since: DateTime<Utc>,
}

/// A successful verification of Freight in a Stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedStage {
    /// When it was verified.
    pub verified_at: DateTime<Utc>,
    /// The longest continuous stay in the Stage that has ended, in seconds (updated when
    /// the Freight leaves the Stage).
    #[serde(default)]
    pub longest_soak_seconds: u64,
}

/// A manual approval of Freight for a Stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedStage {
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
    /// Who approved it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// What a Stage holds and is doing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageState {
    /// The collections the Stage has held, newest first (at most [`MAX_FREIGHT_HISTORY`]);
    /// element 0 is the current one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freight_history: Vec<StageFreight>,
    /// Auto-promotion holds by origin (`Warehouse/<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auto_promotion_holds: BTreeMap<String, AutoPromotionHold>,
    /// The promotion running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_promotion: Option<PromotionRequest>,
    /// Promotions waiting, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<PromotionRequest>,
    /// The last finished promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promotion: Option<PromotionRecord>,
    /// An abort asked of the running promotion (Kargo's `kargo.akuity.io/abort`
    /// annotation): its runner stops it at the next step boundary, wherever it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_requested: Option<AbortRequest>,
    /// Arbitrary metadata (`set-metadata`, `stageMetadata()`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Json>,
    /// What the promotion windows said when the Stage was last looked at (Kargo's
    /// `status.promotionWindowStatus`, computed by
    /// [`PromotionWindows::status_at`](super::PromotionWindows::status_at)); none when no
    /// window applies or it was never computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_window_status: Option<super::PromotionWindowStatus>,
}

impl StageState {
    /// The collection the Stage holds now.
    pub fn current(&self) -> Option<&FreightCollection> {
        self.freight_history.first().map(|h| &h.collection)
    }

    /// Every promotion queued or running, running first.
    pub fn pending(&self) -> impl Iterator<Item = &PromotionRequest> {
        self.current_promotion.iter().chain(self.queue.iter())
    }
}

/// One entry of a Stage's Freight history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageFreight {
    /// The collection.
    pub collection: FreightCollection,
    /// When it arrived.
    pub promoted_at: DateTime<Utc>,
    /// The promotion that brought it.
    #[serde(default)]
    pub promotion: String,
    /// Verifications of this collection, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_history: Vec<VerificationInfo>,
}

/// One verification of a collection in a Stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationInfo {
    /// The outcome.
    pub phase: VerificationPhase,
    /// A message from the verifier.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// Kargo's verification phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VerificationPhase {
    /// The collection is good.
    Successful,
    /// The collection is bad.
    Failed,
    /// The verification could not decide (technical failure).
    Error,
    /// The verification was stopped.
    Aborted,
    /// The verification finished without a verdict.
    Inconclusive,
}

/// An abort asked of a running promotion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortRequest {
    /// The promotion to stop.
    pub promotion: String,
    /// Who asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
}

/// Kargo's `autoPromotionHolds` entry: a manually promoted Freight pins its origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoPromotionHold {
    /// The Freight that was promoted.
    pub freight_name: FreightId,
    /// The origin it pins.
    pub origin: FreightOrigin,
    /// The promotion that set it.
    pub promotion_name: String,
    /// Who promoted, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// When it was set.
    pub created_at: DateTime<Utc>,
}

/// Why a promotion was requested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PromotionTrigger {
    /// A user (or tool) asked for it.
    #[default]
    Manual,
    /// Auto-promotion created it.
    Auto,
    /// A rollback to the Stage's previous collection.
    Rollback,
}

/// A promotion that is queued or running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRequest {
    /// The promotion's name (`<stage>.<ulid-like>.<freight prefix>`).
    pub name: String,
    /// The Stage.
    pub stage: String,
    /// The Freight chosen (for a rollback: one of the collection's).
    pub freight: FreightId,
    /// Its origin.
    pub origin: FreightOrigin,
    /// The collection the promotion deploys.
    pub collection: FreightCollection,
    /// Why it exists.
    #[serde(default)]
    pub trigger: PromotionTrigger,
    /// Whether success sets an auto-promotion hold on the origin (a manual promotion of
    /// Freight that is not auto-promotion's candidate), or lifts one (`false` for a manual
    /// promotion of the candidate).
    #[serde(default)]
    pub hold: bool,
    /// Who asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// The answers of the Stage's approvers, when its policy asks for approvals
    /// ([`Pipeline::record_approval`](crate::pipeline::Pipeline::record_approval)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::pipeline::PromotionApproval>,
    /// Why it was allowed to run while the Stage's promotion windows were closed, when a
    /// person forced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
}

impl PromotionRequest {
    /// The record of this request taken off its Stage's queue before it started (aborted,
    /// rejected, discarded): phase Aborted, with `message` and the `actor` who ended it.
    pub fn aborted_before_start(
        &self,
        message: String,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> PromotionRecord {
        PromotionRecord {
            name: self.name.clone(),
            stage: self.stage.clone(),
            freight: self.freight.clone(),
            collection_id: self.collection.id(),
            trigger: self.trigger,
            phase: PromotionPhase::Aborted,
            message,
            finished_at: now,
            actor,
            steps: Vec::new(),
            window_override: self.window_override.clone(),
        }
    }
}

/// A finished promotion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRecord {
    /// The promotion's name.
    pub name: String,
    /// The Stage.
    pub stage: String,
    /// The Freight chosen.
    pub freight: FreightId,
    /// The collection's ID.
    pub collection_id: String,
    /// Why it existed.
    #[serde(default)]
    pub trigger: PromotionTrigger,
    /// How it ended.
    pub phase: PromotionPhase,
    /// The runner's message, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Who asked for it, when known (none for auto-promotions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Its steps as they ended (status, times, outputs, messages): what a promotion's
    /// page shows after it finished. Empty for one that never started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<crate::runner::StepRecord>,
    /// The reason a person gave for running it while the Stage's promotion windows were
    /// closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
}

/// What the pipeline remembers of a Warehouse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseState {
    /// When discovery last ran successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_discovery: Option<DateTime<Utc>>,
    /// The newest Freight it produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_freight: Option<FreightId>,
    /// What the last successful discovery decided, in words: new Freight, the newest
    /// artifacts already being Freight, or why nothing was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
}
