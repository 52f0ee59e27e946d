//! Retention: what Kargo's garbage collector deletes, applied to a [`ProjectState`] so it
//! stops growing.
//!
//! - **Freight**, per origin (Warehouse), newest first by `discoveredAt`: everything up to
//!   the oldest Freight still *in use* is kept, and [`RetentionPolicy::max_retained_freight`]
//!   more after it; beyond those, Freight older than
//!   [`RetentionPolicy::min_freight_deletion_age`] is deleted. In use means held by a Stage,
//!   in a Stage's Freight history (a rollback target), pinned by an auto-promotion hold, or
//!   part of a queued or running promotion, so none of those is ever deleted.
//! - **Promotion records**, per Stage, newest first: the newest
//!   [`RetentionPolicy::max_retained_promotions`] are kept; beyond those, records that
//!   finished more than [`RetentionPolicy::min_promotion_deletion_age`] ago are deleted.
//!
//! Kargo's defaults: 20 and 14 days (336 h) for both.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{ProjectState, newest_first};
use crate::freight::{FreightCollection, FreightId};

/// How much history to keep (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Freight kept per Warehouse after the oldest one in use (Kargo: 20).
    pub max_retained_freight: usize,
    /// Freight younger than this is never deleted (Kargo: 336 h).
    pub min_freight_deletion_age: Duration,
    /// Finished promotion records kept per Stage (Kargo: 20).
    pub max_retained_promotions: usize,
    /// Promotion records that finished more recently than this are never deleted (Kargo:
    /// 336 h).
    pub min_promotion_deletion_age: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            max_retained_freight: 20,
            min_freight_deletion_age: Duration::from_secs(336 * 3600),
            max_retained_promotions: 20,
            min_promotion_deletion_age: Duration::from_secs(336 * 3600),
        }
    }
}

impl RetentionPolicy {
    /// This policy with other Freight limits.
    pub fn with_freight(mut self, max_retained: usize, min_deletion_age: Duration) -> Self {
        self.max_retained_freight = max_retained;
        self.min_freight_deletion_age = min_deletion_age;
        self
    }

    /// This policy with other promotion-record limits.
    pub fn with_promotions(mut self, max_retained: usize, min_deletion_age: Duration) -> Self {
        self.max_retained_promotions = max_retained;
        self.min_promotion_deletion_age = min_deletion_age;
        self
    }
}

/// What [`apply_retention`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Freight deleted.
    pub freight: Vec<FreightId>,
    /// Promotion records deleted (by name).
    pub promotions: Vec<String>,
}

impl RetentionReport {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        self.freight.is_empty() && self.promotions.is_empty()
    }
}

/// Whether `at` is at least `age` before `now`.
fn older_than(at: DateTime<Utc>, age: Duration, now: DateTime<Utc>) -> bool {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|a| now.checked_sub_signed(a))
        .is_some_and(|limit| at <= limit)
}

/// The Freight a Stage holds, had (rollback targets), pins or is promoting.
fn in_use(state: &ProjectState) -> BTreeSet<FreightId> {
    let mut used = BTreeSet::new();
    let mut add = |c: &FreightCollection| {
        for r in c.references() {
            used.insert(r.name.clone());
        }
    };
    for st in state.stages.values() {
        for h in &st.freight_history {
            add(&h.collection);
        }
        for p in st.pending() {
            add(&p.collection);
        }
    }
    for st in state.stages.values() {
        for hold in st.auto_promotion_holds.values() {
            used.insert(hold.freight_name.clone());
        }
        for p in st.pending() {
            used.insert(p.freight.clone());
        }
    }
    for (id, rec) in &state.freight {
        if !rec.status.currently_in.is_empty() {
            used.insert(id.clone());
        }
    }
    used
}

/// Deletes what `policy` does not keep (see the module documentation) and says what.
pub fn apply_retention(
    state: &mut ProjectState,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> RetentionReport {
    let mut report = RetentionReport::default();
    let used = in_use(state);
    let mut by_origin: BTreeMap<String, Vec<&crate::freight::Freight>> = BTreeMap::new();
    for rec in state.freight.values() {
        by_origin
            .entry(rec.freight.origin.to_string())
            .or_default()
            .push(&rec.freight);
    }
    for list in by_origin.values_mut() {
        if list.len() <= policy.max_retained_freight {
            continue;
        }
        list.sort_by(|a, b| newest_first(a, b));
        let oldest_in_use = list.iter().rposition(|f| used.contains(&f.name));
        let first = oldest_in_use.map_or(0, |i| i + 1) + policy.max_retained_freight;
        for f in list.iter().skip(first) {
            let old = f
                .discovered_at
                .is_none_or(|at| older_than(at, policy.min_freight_deletion_age, now));
            if old && !used.contains(&f.name) {
                report.freight.push(f.name.clone());
            }
        }
    }
    for id in &report.freight {
        state.freight.remove(id);
    }

    let mut by_stage: BTreeMap<&str, Vec<(DateTime<Utc>, usize)>> = BTreeMap::new();
    for (i, p) in state.promotions.iter().enumerate() {
        by_stage
            .entry(p.stage.as_str())
            .or_default()
            .push((p.finished_at, i));
    }
    let mut drop = BTreeSet::new();
    for list in by_stage.values_mut() {
        list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        for (finished, i) in list.iter().skip(policy.max_retained_promotions) {
            if older_than(*finished, policy.min_promotion_deletion_age, now) {
                drop.insert(*i);
            }
        }
    }
    if !drop.is_empty() {
        let mut i = 0;
        state.promotions.retain(|p| {
            let keep = !drop.contains(&i);
            if !keep {
                report.promotions.push(p.name.clone());
            }
            i += 1;
            keep
        });
    }
    if !report.is_empty() {
        tracing::info!(
            freight = report.freight.len(),
            promotions = report.promotions.len(),
            "retention deleted old history"
        );
    }
    report
}
