//! What a Stage's card says: its phase, the Freight it holds, its verification,
//! auto-promotion, what it waits for and when it was last promoted; computed once per
//! page from the state (the newest Freight of each origin indexed once, so a page of 600
//! Stages over 5,000 Freight stays cheap).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kargo_core::freight::{FreightId, FreightOrigin};
use kargo_core::model::Stage;
use kargo_core::pipeline::{
    FreightRecord, Pipeline, PipelineError, ProjectState, PromotionTrigger, SoakDeadline,
    VerificationPhase,
};
use kargo_core::runner::PromotionPhase;

use crate::server::views::{ArtifactVersion, artifacts};

/// A Stage's phase as a card shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A promotion runs.
    Promoting,
    /// Promotions wait to run.
    Queued,
    /// The Freight it holds is being verified.
    Verifying,
    /// The last promotion or verification failed.
    Failed,
    /// It holds verified (or unverifiable) Freight.
    Ready,
    /// It holds no Freight yet.
    Empty,
}

impl Phase {
    /// The word shown.
    pub fn word(self) -> &'static str {
        match self {
            Self::Promoting => "promoting",
            Self::Queued => "queued",
            Self::Verifying => "verifying",
            Self::Failed => "failed",
            Self::Ready => "ready",
            Self::Empty => "no Freight",
        }
    }

    /// The badge tone.
    pub fn tone(self) -> &'static str {
        match self {
            Self::Promoting | Self::Queued | Self::Verifying => "busy",
            Self::Failed => "bad",
            Self::Ready => "ok",
            Self::Empty => "idle",
        }
    }
}

/// One Stage's card.
#[derive(Debug, Clone)]
pub struct StageSummary {
    /// Its phase.
    pub phase: Phase,
    /// The running promotion, with how many of its steps finished and how many it has.
    pub running: Option<(String, usize, usize)>,
    /// The Freight it holds: alias (or short ID), full ID, artifacts.
    pub current: Vec<(String, FreightId, Vec<ArtifactVersion>)>,
    /// The last verification's phase and message.
    pub verification: Option<(VerificationPhase, String)>,
    /// `on`, `off` or `held by <actor>`.
    pub auto_promotion: String,
    /// What newer Freight waits for, in words.
    pub waits: Vec<String>,
    /// When it was last promoted.
    pub promoted_at: Option<DateTime<Utc>>,
    /// The last promotion's name, phase and message.
    pub last: Option<(String, PromotionPhase, String)>,
}

/// The newest Freight of each origin, indexed once per page.
#[derive(Debug, Default)]
pub struct NewestFreight<'s> {
    by_origin: BTreeMap<String, &'s FreightRecord>,
}

fn origin_key(o: &FreightOrigin) -> String {
    format!("{:?}/{}", o.kind, o.name)
}

impl<'s> NewestFreight<'s> {
    /// The index of `state`.
    pub fn of(state: &'s ProjectState) -> Self {
        let mut by_origin: BTreeMap<String, &'s FreightRecord> = BTreeMap::new();
        for r in state.freight.values() {
            let key = origin_key(&r.freight.origin);
            let newer = by_origin.get(&key).is_none_or(|old| {
                (r.freight.discovered_at, &r.freight.name)
                    > (old.freight.discovered_at, &old.freight.name)
            });
            if newer {
                by_origin.insert(key, r);
            }
        }
        Self { by_origin }
    }

    /// The newest Freight of `origin`.
    pub fn get(&self, origin: &FreightOrigin) -> Option<&'s FreightRecord> {
        self.by_origin.get(&origin_key(origin)).copied()
    }
}

/// A short reason why `freight` may not go to a Stage now.
pub fn refusal(e: &PipelineError) -> String {
    match e {
        PipelineError::NotAvailable { upstream, .. } if upstream.is_empty() => {
            "needs an approval".to_owned()
        }
        PipelineError::NotAvailable { upstream, .. } => {
            format!("needs verification (and soak) in {upstream}, or an approval")
        }
        PipelineError::OriginNotRequested { origin, .. } => {
            format!("the Stage does not request Freight from {origin}")
        }
        other => other.to_string(),
    }
}

/// The card of `stage`.
pub fn summarize(
    pipeline: &Pipeline<'_>,
    stage: &Stage,
    state: &ProjectState,
    newest: &NewestFreight<'_>,
    soaks: &[SoakDeadline],
    now: DateTime<Utc>,
) -> StageSummary {
    let name = &stage.metadata.name;
    let st = state.stages.get(name);
    let entry = st.and_then(|s| s.freight_history.first());
    let current: Vec<_> = entry
        .map(|e| {
            e.collection
                .references()
                .into_iter()
                .map(|r| {
                    let alias = state
                        .freight
                        .get(&r.name)
                        .and_then(|f| f.freight.alias.clone())
                        .unwrap_or_else(|| r.name.short().to_owned());
                    (alias, r.name.clone(), artifacts(r))
                })
                .collect()
        })
        .unwrap_or_default();
    let verification = entry
        .and_then(|e| e.verification_history.last())
        .map(|v| (v.phase, v.message.clone()));
    let last = st
        .and_then(|s| s.last_promotion.as_ref())
        .map(|r| (r.name.clone(), r.phase, r.message.clone()));
    let running = st.and_then(|s| s.current_promotion.as_ref()).map(|r| {
        let (done, total) = state.progress.get(&r.name).map_or((0, 0), |p| {
            (
                p.steps
                    .iter()
                    .filter(|s| kargo_core::runner::PromotionProgress::is_finished(s))
                    .count(),
                p.steps.len(),
            )
        });
        (r.name.clone(), done, total)
    });
    let failed_promotion = last
        .as_ref()
        .is_some_and(|(_, p, _)| matches!(p, PromotionPhase::Failed | PromotionPhase::Errored));
    let failed_verification = verification
        .as_ref()
        .is_some_and(|(p, _)| matches!(p, VerificationPhase::Failed | VerificationPhase::Error));
    let phase = if running.is_some() {
        Phase::Promoting
    } else if st.is_some_and(|s| !s.queue.is_empty()) {
        Phase::Queued
    } else if failed_promotion || failed_verification {
        Phase::Failed
    } else if entry.is_some_and(|e| e.verification_history.is_empty())
        && stage.spec.verification.is_some()
    {
        Phase::Verifying
    } else if entry.is_some() {
        Phase::Ready
    } else {
        Phase::Empty
    };
    let holds = st.map(|s| &s.auto_promotion_holds);
    let auto_promotion = if !pipeline.auto_promotion_enabled(stage) {
        "off".to_owned()
    } else if let Some(h) = holds.and_then(|h| h.values().next()) {
        format!(
            "held by {}",
            h.actor.as_deref().unwrap_or("a manual promotion")
        )
    } else {
        "on".to_owned()
    };
    let mut waits = Vec::new();
    if !stage.is_control_flow() {
        for req in &stage.spec.requested_freight {
            let Some(n) = newest.get(&req.origin) else {
                continue;
            };
            let holds_it = current.iter().any(|(_, id, _)| *id == n.freight.name);
            let pending = st.is_some_and(|s| s.pending().any(|p| p.freight == n.freight.name));
            if holds_it || pending {
                continue;
            }
            let label = n
                .freight
                .alias
                .clone()
                .unwrap_or_else(|| n.freight.name.short().to_owned());
            if let Some(soak) = soaks
                .iter()
                .find(|d| d.stage == *name && d.freight == n.freight.name)
            {
                let left = (soak.at - now).num_minutes().max(0);
                waits.push(format!(
                    "{label}: soaking in {} ({left}m left)",
                    soak.upstream
                ));
                continue;
            }
            if let Err(e) = pipeline.request_promotion(
                state,
                name,
                n.freight.name.as_str(),
                PromotionTrigger::Manual,
                None,
                now,
            ) {
                waits.push(format!("{label}: {}", refusal(&e)));
            }
        }
    }
    StageSummary {
        phase,
        running,
        current,
        verification,
        auto_promotion,
        waits,
        promoted_at: entry.map(|e| e.promoted_at),
        last,
    }
}
