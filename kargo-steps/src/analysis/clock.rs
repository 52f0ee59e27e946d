//! Time for an analysis run: when a measurement is due and waiting for it. The run asks
//! an [`AnalysisClock`], so tests can run intervals and initial delays without sleeping
//! and embedders can hand in their own clock (the controller's).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A future returned by [`AnalysisClock::sleep`].
pub type ClockSleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What time it is, and how to wait.
pub trait AnalysisClock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> ClockSleep<'_>;
}

/// The system clock, waiting on tokio's timer (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl AnalysisClock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> ClockSleep<'_> {
        Box::pin(tokio::time::sleep(duration))
    }
}
