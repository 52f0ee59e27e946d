//! The promotion runner: runs a Stage's promotion template for a Freight collection with
//! Kargo's rules.
//!
//! - **Inflation** ([`inflate_steps`]): `task:` steps are replaced by the steps of their
//!   PromotionTask / ClusterPromotionTask. Aliases are the step's `as` or `step-<n>` /
//!   `task-<n>` (1-based); a task's steps are `<task alias>::<inner alias>`. A task variable
//!   with a value is a default (skipped when a promotion variable of that name has a
//!   value); one without a value must be supplied by the task step or a promotion variable.
//! - **Variables**: Stage vars, then template vars (these see `ctx` and earlier vars), then
//!   per step: task defaults, the task step's vars, the step's own vars (these also see
//!   `outputs` and `task.outputs`). Later definitions win.
//! - **`if`**: evaluated once, before the step first runs; must be a boolean. An absent
//!   `if` runs the step only while no earlier step (without `continueOnError`) failed.
//!   `always()`, `failure()`, `success()` and `status(alias)` are available there and in
//!   `config`.
//! - **Errors**: an unknown `uses`, an `if` that fails or is not boolean, or a config that
//!   does not render makes the step `Errored` and execution continues, so `if: always()`
//!   clean-up steps still run.
//! - **Retries**: a retryable error is retried until `retry.errorThreshold` consecutive
//!   errors (default: the step's, else 1); `retry.timeout` bounds the time since the step
//!   first started, checked after each attempt; `Running` steps are polled again after
//!   their `retry_after` (never sooner than [`RunnerOptions::min_retry_after`]), or at
//!   once when [`Runner::wake`] names a key the step waits for
//!   ([`StepOutcome::with_wake_on`](crate::step::StepOutcome::with_wake_on)).
//! - **Phase**: the worst status among steps without `continueOnError`
//!   (Succeeded < Skipped < Running < Aborted < Failed < Errored; Skipped counts as
//!   Succeeded). Cancelling aborts the current step and yields `Aborted`.
//!
//! Every step's outputs and status are recorded in the [`PromotionResult`].
//!
//! **Resuming** ([`Runner::run_resumable`]): the runner reports a [`PromotionProgress`] to a
//! [`ProgressSink`] after each step ends and before each
//! [`External`](crate::step::StepEffect::External) step starts. Given such a record, a new
//! runner does not run finished steps again: their outputs are restored, and the finished
//! [`Local`](crate::step::StepEffect::Local) ones are replayed in order to rebuild the work
//! directory. A step that was in flight is run again with the same
//! [`StepContext::execution_id`](crate::step::StepContext::execution_id).

mod execute;
mod inflate;
mod plan;
mod progress;
mod result;
mod wake;

pub use execute::{Promotion, Runner, RunnerOptions};
pub use inflate::{ALIAS_SEPARATOR, InflateError, PlannedStep, inflate_steps};
pub use plan::{PlanError, StagePlan, plan_stage, promotion_name, requested_subscriptions};
pub use progress::{ProgressError, ProgressSink};
pub use result::{
    PromotionPhase, PromotionProgress, PromotionResult, StepExecutionStatus, StepRecord,
};
pub use wake::pull_request_wake_key;

#[cfg(test)]
mod tests;
