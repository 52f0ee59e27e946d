//! [`ManualClock`]: time that moves only when a test says so.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

/// A clock for tests: it starts at a fixed instant ([`ManualClock::DEFAULT_START`] unless
/// told otherwise) and moves only through [`advance`](ManualClock::advance) and
/// [`set`](ManualClock::set). Clones share the same time, so a clone can be handed to a
/// [`Controller`](crate::Controller) (`with_clock(move || clock.now())`) while the test
/// keeps another.
///
/// ```
/// use kargo::testing::ManualClock;
///
/// let clock = ManualClock::default();
/// let start = clock.now();
/// clock.advance(chrono::Duration::minutes(30));
/// clock.advance(std::time::Duration::from_secs(60));
/// assert_eq!(clock.now() - start, chrono::Duration::minutes(31));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(Self::default_start())
    }
}

impl ManualClock {
    /// Where a default clock starts: 2026-01-01T00:00:00Z, as a Unix timestamp.
    pub const DEFAULT_START: i64 = 1_767_225_600;

    fn default_start() -> DateTime<Utc> {
        Utc.timestamp_opt(Self::DEFAULT_START, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DateTime<Utc>> {
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    /// Moves the clock forward by `by` (a [`std::time::Duration`] or a
    /// [`chrono::Duration`]; a negative `chrono::Duration` moves it back). Saturates
    /// instead of overflowing.
    pub fn advance(&self, by: impl IntoTimeDelta) {
        let by = by.into_time_delta();
        let mut now = self.lock();
        *now = now
            .checked_add_signed(by)
            .unwrap_or(if by < TimeDelta::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            });
    }

    /// Sets the clock to `to` (forwards or backwards).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.lock() = to;
    }
}

/// A span of time [`ManualClock::advance`] and
/// [`PipelineRun::advance`](super::PipelineRun::advance) accept: a
/// [`std::time::Duration`] or a [`chrono::Duration`].
pub trait IntoTimeDelta {
    /// The span as a [`chrono::Duration`] (saturating).
    fn into_time_delta(self) -> TimeDelta;
}

impl IntoTimeDelta for TimeDelta {
    fn into_time_delta(self) -> TimeDelta {
        self
    }
}

impl IntoTimeDelta for std::time::Duration {
    fn into_time_delta(self) -> TimeDelta {
        TimeDelta::from_std(self).unwrap_or(TimeDelta::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_time_and_saturate() {
        let a = ManualClock::default();
        let b = a.clone();
        a.advance(std::time::Duration::from_secs(90));
        assert_eq!(
            b.now() - ManualClock::default().now(),
            TimeDelta::seconds(90)
        );
        b.set(DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(a.now(), DateTime::<Utc>::UNIX_EPOCH);
        a.advance(TimeDelta::MAX);
        a.advance(TimeDelta::MAX);
        assert_eq!(a.now(), DateTime::<Utc>::MAX_UTC);
        a.advance(std::time::Duration::MAX);
        assert_eq!(a.now(), DateTime::<Utc>::MAX_UTC);
    }
}
