//! When soak times end: the moments at which Freight that is soaking in an upstream Stage
//! reaches a downstream request's `requiredSoakTime`, so a service loop can wake exactly
//! then instead of polling.

use chrono::{DateTime, Utc};

use super::{Pipeline, ProjectState};
use crate::freight::FreightId;

/// Freight that becomes available to a Stage when its soak in an upstream Stage ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoakDeadline {
    /// The Stage that is waiting.
    pub stage: String,
    /// The Freight soaking.
    pub freight: FreightId,
    /// The upstream Stage it soaks in.
    pub upstream: String,
    /// When its soak there reaches the Stage's `requiredSoakTime`.
    pub at: DateTime<Utc>,
}

impl Pipeline<'_> {
    /// Every soak that ends after `now` and would make Freight available to a Stage it is
    /// not yet available to, earliest first. Freight that is verified upstream but no
    /// longer there can soak no more and never appears; approved Freight needs no soak.
    pub fn soak_deadlines(&self, state: &ProjectState, now: DateTime<Utc>) -> Vec<SoakDeadline> {
        let mut out = Vec::new();
        for stage in self.stages {
            for req in &stage.spec.requested_freight {
                let Some(required) = req.sources.required_soak_time else {
                    continue;
                };
                let Ok(required) = chrono::Duration::from_std(required.into()) else {
                    continue;
                };
                for record in state.freight.values() {
                    if record.freight.origin != req.origin || Self::is_available(stage, record, now)
                    {
                        continue;
                    }
                    for upstream in &req.sources.stages {
                        let (Some(verified), Some(current)) = (
                            record.status.verified_in.get(upstream),
                            record.status.currently_in.get(upstream),
                        ) else {
                            continue;
                        };
                        let past = i64::try_from(verified.longest_soak_seconds).unwrap_or(i64::MAX);
                        if chrono::Duration::seconds(past) >= required {
                            continue;
                        }
                        let at = current.since + required;
                        if at > now {
                            out.push(SoakDeadline {
                                stage: stage.metadata.name.clone(),
                                freight: record.freight.name.clone(),
                                upstream: upstream.clone(),
                                at,
                            });
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.stage.cmp(&b.stage)));
        out
    }
}
