//! Time for the controller and the service loop: what time it is, and waiting until a
//! given time. [`SystemClock`] is the wall clock; [`ManualClock`] moves only when told, so a
//! test can run a day of Warehouse intervals and soak times in milliseconds.
//!
//! Any `Fn() -> DateTime<Utc>` is also a clock (its waits are tokio sleeps for the
//! difference), which keeps [`Controller::with_clock`](crate::Controller::with_clock)
//! working with a closure.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use tokio::sync::watch;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What time it is, and how to wait for a later time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Completes once [`now`](Clock::now) is at or after `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// Sleeps on tokio's timer for `deadline - now` (so tokio's paused time applies too).
fn tokio_sleep<'a>(now: DateTime<Utc>, deadline: DateTime<Utc>) -> Sleep<'a> {
    let wait = (deadline - now).to_std().unwrap_or_default();
    Box::pin(tokio::time::sleep(wait))
}

/// The system clock ([`Utc::now`]), waiting on tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        tokio_sleep(Utc::now(), deadline)
    }
}

impl<F> Clock for F
where
    F: Fn() -> DateTime<Utc> + Send + Sync + 'static,
{
    fn now(&self) -> DateTime<Utc> {
        self()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        tokio_sleep(self(), deadline)
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance)d or
/// [`set`](ManualClock::set); sleepers wake as soon as it passes their deadline. Clones
/// share the same time, so a clone handed to a
/// [`Controller`](crate::Controller::with_clock) moves with the one the test keeps. Time
/// never goes back: a service asleep until a deadline must not see it recede.
///
/// ```
/// use kargo::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::default();
/// let start = clock.now();
/// clock.advance(chrono::Duration::minutes(30));
/// clock.advance(std::time::Duration::from_secs(60));
/// assert_eq!(clock.now() - start, chrono::Duration::minutes(31));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    moved: Arc<watch::Sender<DateTime<Utc>>>,
}

impl Default for ManualClock {
    /// A clock standing at [`ManualClock::DEFAULT_START`].
    fn default() -> Self {
        Self::new(
            Utc.timestamp_opt(Self::DEFAULT_START, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        )
    }
}

impl ManualClock {
    /// Where a default clock starts: 2026-01-01T00:00:00Z, as a Unix timestamp.
    pub const DEFAULT_START: i64 = 1_767_225_600;

    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        let (moved, _) = watch::channel(start);
        Self {
            now: Arc::new(Mutex::new(start)),
            moved: Arc::new(moved),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DateTime<Utc>> {
        // The guarded value is a plain timestamp: a panic elsewhere cannot leave it torn.
        self.now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current time (also [`Clock::now`]).
    pub fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    /// Moves the clock forward by `by` (a [`std::time::Duration`] or a
    /// [`chrono::Duration`]; a negative one is ignored), saturating at the largest time,
    /// and wakes the sleepers whose deadline has come.
    pub fn advance(&self, by: impl IntoTimeDelta) {
        let by = by.into_time_delta();
        let now = {
            let mut now = self.lock();
            if by > TimeDelta::zero() {
                *now = now
                    .checked_add_signed(by)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
            }
            *now
        };
        self.moved.send_replace(now);
    }

    /// Sets the clock to `time` if that is later than now.
    pub fn set(&self, time: DateTime<Utc>) {
        let now = {
            let mut now = self.lock();
            if time > *now {
                *now = time;
            }
            *now
        };
        self.moved.send_replace(now);
    }
}

/// A span of time [`ManualClock::advance`] accepts: a [`std::time::Duration`] or a
/// [`chrono::Duration`].
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

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        ManualClock::now(self)
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        let mut rx = self.moved.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, then every change.
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_passes_their_deadline() {
        let clock = ManualClock::new(t0());
        let deadline = t0() + chrono::Duration::minutes(5);
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(deadline).await });
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::minutes(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke a minute early");
        clock.advance(chrono::Duration::minutes(1));
        sleeper.await.expect("sleeper");
        assert_eq!(clock.now(), deadline);
    }

    #[tokio::test]
    async fn a_past_deadline_is_ready_at_once_and_time_never_goes_back() {
        let clock = ManualClock::new(t0());
        clock.sleep_until(t0() - chrono::Duration::seconds(1)).await;
        clock.advance(chrono::Duration::seconds(-30));
        clock.set(t0() - chrono::Duration::hours(1));
        assert_eq!(clock.now(), t0());
        clock.advance(TimeDelta::MAX);
        clock.advance(std::time::Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    }
}
