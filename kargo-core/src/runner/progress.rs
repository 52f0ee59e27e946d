//! Recording a promotion's progress while it runs, so that another runner can resume it
//! after a crash: the [`ProgressSink`] the runner reports to, and its error.
//!
//! The runner ([`Runner::run_resumable`](super::Runner::run_resumable)) reports a
//! [`PromotionProgress`](super::PromotionProgress) after every step ends and right before
//! every [`External`](crate::step::StepEffect::External) step starts, so a record taken
//! at any moment says which outside effects finished and which one may have been under
//! way.

use async_trait::async_trait;

use super::result::PromotionProgress;

/// Where a running promotion's progress is recorded (a state store, a test's log).
///
/// An error stops the promotion at once (no further step starts), and
/// [`Runner::run_resumable`](super::Runner::run_resumable) returns it: a runner whose
/// progress can no longer be recorded (a stale lease, a failing store) must not go on
/// with outside effects nobody would know of.
#[async_trait]
pub trait ProgressSink: Send + Sync {
    /// Records `progress`, which replaces any earlier record of the same promotion.
    async fn record(&self, progress: &PromotionProgress) -> Result<(), ProgressError>;
}

/// A [`ProgressSink`] refused a record; the promotion was stopped.
#[derive(Debug, thiserror::Error)]
#[error("the promotion's progress could not be recorded: {message}")]
pub struct ProgressError {
    /// What went wrong.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProgressError {
    /// An error with `message` and no underlying error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}
