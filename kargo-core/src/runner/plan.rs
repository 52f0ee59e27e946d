//! Stage planning: a Stage's vars, inflated steps and requested origins read from a
//! manifest set, and Kargo-style promotion names.

use chrono::Utc;

use super::inflate::{InflateError, PlannedStep, inflate_steps};
use crate::expr::OriginSubscriptions;
use crate::loader::ManifestSet;
use crate::model::{ExpressionVariable, PromotionTaskKind, Stage, SubscriptionSource};

/// What a Stage's promotion needs besides the Freight: its variables, its inflated steps
/// and the origins it requests (with their Warehouses' subscriptions).
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// The project.
    pub project: String,
    /// The Stage.
    pub stage: String,
    /// Stage vars followed by template vars.
    pub vars: Vec<ExpressionVariable>,
    /// The inflated steps.
    pub steps: Vec<PlannedStep>,
    /// The requested origins and the subscriptions of their Warehouses.
    pub requested: Vec<OriginSubscriptions>,
}

/// Why a Stage's promotion could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No such Stage.
    #[error("Stage {project}/{stage} not found")]
    StageNotFound {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
    },
    /// The Stage has no promotion steps (a control-flow Stage).
    #[error("Stage {project}/{stage} has no promotion template")]
    NoPromotionTemplate {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
    },
    /// Task inflation failed.
    #[error("Stage {project}/{stage}: {source}")]
    Inflate {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
        /// The inflation error.
        source: Box<InflateError>,
    },
}

/// Plans the promotion of a Stage from a manifest set: vars, inflated steps and requested
/// origins.
pub fn plan_stage(set: &ManifestSet, project: &str, stage: &str) -> Result<StagePlan, PlanError> {
    let s = set
        .stage(project, stage)
        .ok_or_else(|| PlanError::StageNotFound {
            project: project.to_owned(),
            stage: stage.to_owned(),
        })?;
    let template = s
        .spec
        .promotion_template
        .as_ref()
        .filter(|t| !t.spec.steps.is_empty())
        .ok_or_else(|| PlanError::NoPromotionTemplate {
            project: project.to_owned(),
            stage: stage.to_owned(),
        })?;
    let mut vars = s.spec.vars.clone();
    vars.extend(template.spec.vars.iter().cloned());
    let steps = inflate_steps(&template.spec.steps, &vars, |r| match r.kind {
        PromotionTaskKind::ClusterPromotionTask => {
            set.cluster_promotion_task(&r.name).map(|t| &t.spec)
        }
        _ => set.promotion_task(project, &r.name).map(|t| &t.spec),
    })
    .map_err(|source| PlanError::Inflate {
        project: project.to_owned(),
        stage: stage.to_owned(),
        source: Box::new(source),
    })?;
    let requested = requested_subscriptions(set, project, s);
    Ok(StagePlan {
        project: project.to_owned(),
        stage: stage.to_owned(),
        vars,
        steps,
        requested,
    })
}

/// A promotion name as Kargo makes them: `<stage>.<ULID>.<first 7 characters of the
/// Freight ID>`, lowercase; the ULID makes lexical order creation order.
pub fn promotion_name(stage: &str, freight: &str) -> String {
    use sha1::{Digest, Sha1};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let now = Utc::now();
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    let mut h = Sha1::new();
    h.update(now.timestamp_nanos_opt().unwrap_or(0).to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let rand = h.finalize();
    // 48-bit time + 80 random bits = 128 bits = 26 base-32 characters (first one 3 bits).
    let mut value: u128 = u128::from(ms) << 80;
    for (i, b) in rand.iter().take(10).enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut ulid = [0u8; 26];
    for (i, c) in ulid.iter_mut().enumerate().rev() {
        *c = ALPHABET[(value & 31) as usize];
        value >>= 5;
        let _ = i;
    }
    let short: String = freight.chars().take(7).collect();
    format!(
        "{}.{}.{}",
        stage.to_lowercase(),
        String::from_utf8_lossy(&ulid),
        short.to_lowercase()
    )
}

/// What each Freight origin `stage` requests subscribes to (from its Warehouse in `set`),
/// for the functions that look artifacts up by repository (`imageFrom()`, ...).
pub fn requested_subscriptions(
    set: &ManifestSet,
    project: &str,
    stage: &Stage,
) -> Vec<OriginSubscriptions> {
    stage
        .spec
        .requested_freight
        .iter()
        .map(|req| {
            let mut subs = OriginSubscriptions {
                origin: req.origin.clone(),
                ..OriginSubscriptions::default()
            };
            if let Some(wh) = set.warehouse(project, &req.origin.name) {
                for sub in &wh.spec.subscriptions {
                    match &sub.source {
                        SubscriptionSource::Image(i) => subs.images.push(i.repo_url.clone()),
                        SubscriptionSource::Chart(c) => {
                            subs.charts.push((c.repo_url.clone(), c.name.clone()));
                        }
                        SubscriptionSource::Git(g) => subs.git.push(g.repo_url.clone()),
                        SubscriptionSource::Generic(_) => {
                            subs.generic.push(sub.name.clone().unwrap_or_default());
                        }
                    }
                }
            }
            subs
        })
        .collect()
}
