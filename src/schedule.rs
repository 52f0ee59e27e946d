//! When each Warehouse is due for a refresh, and why; when the next soak time ends. One
//! computation, used by [`Controller::reconcile`](crate::Controller::reconcile) to pick the
//! Warehouses to refresh, by the [`Service`](crate::service::Service) to know how long to
//! sleep, and by front ends to show it ([`Controller::schedule`](crate::Controller::schedule)).
//!
//! A Warehouse is due `interval` after its last discovery, plus a jitter: a deterministic
//! fraction (at most [`ScheduleOptions::jitter`] of the interval) derived from the
//! project, the Warehouse's name and the time of its last discovery, so 50 Warehouses with
//! `interval: 5m` that started together spread out instead of polling their registries in
//! one burst, and the spread changes every round. A Warehouse whose last refresh failed is
//! retried after a backoff that doubles with each failure (from
//! [`ScheduleOptions::retry_after`] up to its interval).

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kargo_core::model::Warehouse;
use kargo_core::pipeline::{ProjectState, SoakDeadline};

/// How refreshes are spread and retried.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ScheduleOptions {
    /// The largest jitter, as a fraction of a Warehouse's interval (default 0.1; 0 turns
    /// jitter off; values are clamped to 0..=1).
    pub jitter: f64,
    /// The first wait after a failed refresh (default 10 s); it doubles with every further
    /// failure, up to the Warehouse's interval.
    pub retry_after: Duration,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        Self {
            jitter: 0.1,
            retry_after: Duration::from_secs(10),
        }
    }
}

impl ScheduleOptions {
    /// These options with another jitter fraction.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// These options with another first retry wait.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }
}

/// A refresh that failed (kept by the controller until the next success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFailure {
    /// When the last attempt failed.
    pub at: DateTime<Utc>,
    /// Failures in a row.
    pub attempts: u32,
    /// The error, as displayed.
    pub message: String,
}

/// Why a Warehouse is due when it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DueReason {
    /// It has never been refreshed: due now.
    NeverRefreshed,
    /// Its interval (plus jitter) since the last discovery.
    Interval {
        /// The last discovery.
        last: DateTime<Utc>,
        /// The Warehouse's `interval`.
        interval: Duration,
        /// The jitter added to it.
        jitter: Duration,
    },
    /// Its last refresh failed: a retry after a backoff.
    RetryAfterFailure {
        /// The failure.
        failure: RefreshFailure,
        /// The backoff.
        backoff: Duration,
    },
}

impl fmt::Display for DueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverRefreshed => f.write_str("never refreshed"),
            Self::Interval {
                last,
                interval,
                jitter,
            } => write!(
                f,
                "interval {}s + jitter {}s after the last discovery at {}",
                interval.as_secs(),
                jitter.as_secs(),
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Self::RetryAfterFailure { failure, backoff } => write!(
                f,
                "retry {}s after failure #{} at {}: {}",
                backoff.as_secs(),
                failure.attempts,
                failure
                    .at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                failure.message
            ),
        }
    }
}

/// When one Warehouse is due, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseDue {
    /// The Warehouse.
    pub warehouse: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// Why then.
    pub reason: DueReason,
}

/// What the next wake-up is for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wake {
    /// A Warehouse is due.
    Warehouse(WarehouseDue),
    /// Freight's soak upstream ends: it becomes available to a Stage.
    SoakEnds(SoakDeadline),
    /// A Stage's promotion windows open: auto-promotion waiting there may run.
    WindowOpens(WindowOpening),
}

/// When a Stage's closed promotion windows open next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowOpening {
    /// The Stage.
    pub stage: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl Wake {
    /// When.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Warehouse(w) => w.due_at,
            Self::SoakEnds(s) => s.at,
            Self::WindowOpens(o) => o.at,
        }
    }
}

impl fmt::Display for Wake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Warehouse(w) => write!(f, "Warehouse {} is due ({})", w.warehouse, w.reason),
            Self::SoakEnds(s) => write!(
                f,
                "Freight {} has soaked long enough in {} for Stage {}",
                s.freight, s.upstream, s.stage
            ),
            Self::WindowOpens(o) => write!(f, "Stage {}'s promotion windows open", o.stage),
        }
    }
}

/// The project's schedule at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The moment it was computed for.
    pub now: DateTime<Utc>,
    /// Every Warehouse, earliest due first.
    pub warehouses: Vec<WarehouseDue>,
    /// Soaks that end after `now`, earliest first.
    pub soaks: Vec<SoakDeadline>,
    /// Stages whose promotion windows are closed now, with their next opening, earliest
    /// first.
    pub window_openings: Vec<WindowOpening>,
}

impl Schedule {
    /// The Warehouses due at `now` (their due time has come).
    pub fn due(&self) -> impl Iterator<Item = &WarehouseDue> {
        self.warehouses.iter().filter(|w| w.due_at <= self.now)
    }

    /// The first thing after `now` worth waking up for, if any.
    pub fn next_wake(&self) -> Option<Wake> {
        let warehouse = self
            .warehouses
            .iter()
            .find(|w| w.due_at > self.now)
            .cloned()
            .map(Wake::Warehouse);
        let soak = self.soaks.first().cloned().map(Wake::SoakEnds);
        let window = self
            .window_openings
            .iter()
            .find(|o| o.at > self.now)
            .cloned()
            .map(Wake::WindowOpens);
        [warehouse, soak, window]
            .into_iter()
            .flatten()
            .min_by_key(Wake::at)
    }
}

/// The jitter added to `interval` after a discovery at `last` (see the module
/// documentation): in `[0, fraction × interval)`, the same for the same inputs.
pub fn jitter(
    project: &str,
    warehouse: &str,
    last: DateTime<Utc>,
    interval: Duration,
    fraction: f64,
) -> Duration {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut h = DefaultHasher::new();
    (project, warehouse, last.timestamp_micros()).hash(&mut h);
    // 53 bits make an exact f64 in [0, 1).
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction * unit)
}

/// `base + wait`, saturating at the largest time.
pub(crate) fn later(base: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|w| base.checked_add_signed(w))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When `warehouse` is due (see the module documentation).
pub fn warehouse_due(
    project: &str,
    warehouse: &Warehouse,
    state: &ProjectState,
    failure: Option<&RefreshFailure>,
    options: &ScheduleOptions,
) -> WarehouseDue {
    let name = warehouse.metadata.name.clone();
    let interval = Duration::from(warehouse.spec.interval);
    let last = state.warehouses.get(&name).and_then(|s| s.last_discovery);
    if let Some(failure) = failure.filter(|f| last.is_none_or(|l| f.at >= l)) {
        let doublings = failure.attempts.saturating_sub(1).min(20);
        let backoff = options
            .retry_after
            .saturating_mul(1u32 << doublings)
            .min(interval.max(options.retry_after));
        return WarehouseDue {
            warehouse: name,
            due_at: later(failure.at, backoff),
            reason: DueReason::RetryAfterFailure {
                failure: failure.clone(),
                backoff,
            },
        };
    }
    match last {
        None => WarehouseDue {
            warehouse: name,
            due_at: DateTime::<Utc>::MIN_UTC,
            reason: DueReason::NeverRefreshed,
        },
        Some(last) => {
            let jitter = jitter(project, &name, last, interval, options.jitter);
            WarehouseDue {
                warehouse: name,
                due_at: later(last, interval + jitter),
                reason: DueReason::Interval {
                    last,
                    interval,
                    jitter,
                },
            }
        }
    }
}

/// The schedule of `warehouses` at `now`: due times (earliest first) and soak deadlines.
pub fn schedule<'a>(
    project: &str,
    warehouses: impl IntoIterator<Item = &'a Warehouse>,
    state: &ProjectState,
    soaks: Vec<SoakDeadline>,
    failures: &BTreeMap<String, RefreshFailure>,
    options: &ScheduleOptions,
    now: DateTime<Utc>,
) -> Schedule {
    let mut due: Vec<WarehouseDue> = warehouses
        .into_iter()
        .map(|w| warehouse_due(project, w, state, failures.get(&w.metadata.name), options))
        .collect();
    due.sort_by(|a, b| {
        a.due_at
            .cmp(&b.due_at)
            .then_with(|| a.warehouse.cmp(&b.warehouse))
    });
    Schedule {
        now,
        warehouses: due,
        soaks,
        window_openings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
    }

    #[test]
    fn jitter_stays_below_its_fraction_and_spreads_fifty_warehouses() {
        let interval = Duration::from_secs(300);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let j = jitter("p", &format!("wh-{i}"), t0(), interval, 0.1);
            assert!(j < Duration::from_secs(30), "{j:?}");
            seen.insert(j.as_secs());
            assert_eq!(j, jitter("p", &format!("wh-{i}"), t0(), interval, 0.1));
        }
        // 50 Warehouses over 30 one-second slots: most slots taken.
        assert!(seen.len() >= 15, "{seen:?}");
        assert_eq!(jitter("p", "w", t0(), interval, 0.0), Duration::ZERO);
        assert_eq!(jitter("p", "w", t0(), interval, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_interval() {
        let options = ScheduleOptions::default();
        let yaml = "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: w, namespace: p}\nspec:\n  interval: 2m\n  subscriptions:\n  - image: {repoURL: ghcr.io/a/b}\n";
        let set = kargo_core::loader::ManifestSet::from_yaml_str(
            "w.yaml",
            &format!(
                "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {{name: p}}\n---\n{yaml}"
            ),
        )
        .expect("manifests");
        let w = set.warehouse("p", "w").expect("warehouse");
        let state = ProjectState::default();
        let due = warehouse_due("p", w, &state, None, &options);
        assert_eq!(due.reason, DueReason::NeverRefreshed);
        let waits: Vec<i64> = (1..=6)
            .map(|attempts| {
                let f = RefreshFailure {
                    at: t0(),
                    attempts,
                    message: "boom".into(),
                };
                (warehouse_due("p", w, &state, Some(&f), &options).due_at - t0()).num_seconds()
            })
            .collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 120, 120]);
    }
}
