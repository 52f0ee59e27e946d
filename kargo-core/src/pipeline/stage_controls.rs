//! What a person does to a Stage besides promoting: abort a queued or running promotion,
//! and hold or resume its auto-promotion.

use chrono::{DateTime, Utc};

use super::{
    AbortRequest, AutoPromotionHold, Pipeline, PipelineError, ProjectState, PromotionRecord,
    origin_key,
};

/// What [`Pipeline::abort`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AbortOutcome {
    /// The promotion was queued: it left the queue and is recorded as aborted.
    Dequeued(PromotionRecord),
    /// The promotion is running: its runner was asked to stop at its next step boundary
    /// ([`StageState::abort_requested`](super::StageState::abort_requested)); it ends
    /// `Aborted`.
    Requested {
        /// The running promotion.
        promotion: String,
    },
}

impl<'a> Pipeline<'a> {
    /// Aborts `promotion` of `stage` (by name), or, when `None`, the Stage's running
    /// promotion, else its first queued one. A queued promotion is dequeued and recorded
    /// `Aborted` at once; a running one gets an abort request its runner acts on.
    pub fn abort(
        &self,
        state: &mut ProjectState,
        stage: &str,
        promotion: Option<&str>,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<AbortOutcome, PipelineError> {
        self.stage(stage)?;
        let nothing = || PipelineError::NothingToAbort {
            stage: stage.to_owned(),
            what: promotion.map_or_else(|| "promotion".to_owned(), |p| format!("promotion {p:?}")),
        };
        let st = state.stages.get_mut(stage).ok_or_else(nothing)?;
        let running = st
            .current_promotion
            .as_ref()
            .filter(|r| promotion.is_none_or(|p| p == r.name))
            .map(|r| r.name.clone());
        if let Some(name) = running {
            st.abort_requested = Some(AbortRequest {
                promotion: name.clone(),
                actor,
                requested_at: now,
            });
            return Ok(AbortOutcome::Requested { promotion: name });
        }
        let at = st
            .queue
            .iter()
            .position(|r| promotion.is_none_or(|p| p == r.name))
            .ok_or_else(nothing)?;
        let request = st.queue.remove(at);
        let by = actor.as_deref().unwrap_or("someone");
        let record =
            request.aborted_before_start(format!("aborted by {by} before it started"), actor, now);
        st.last_promotion = Some(record.clone());
        state.promotions.push(record.clone());
        Ok(AbortOutcome::Dequeued(record))
    }

    /// Holds `stage`'s auto-promotion at the Freight it holds now: every origin of its
    /// current collection is pinned, as a manual promotion of that Freight would pin it,
    /// until [`resume_auto_promotion`](Self::resume_auto_promotion). Returns the origins
    /// held (`Warehouse/<name>`).
    pub fn hold_auto_promotion(
        &self,
        state: &mut ProjectState,
        stage: &str,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, PipelineError> {
        self.stage(stage)?;
        let st = state
            .stages
            .get_mut(stage)
            .ok_or_else(|| PipelineError::NothingToHold(stage.to_owned()))?;
        let Some(current) = st.freight_history.first() else {
            return Err(PipelineError::NothingToHold(stage.to_owned()));
        };
        let promotion = current.promotion.clone();
        let refs: Vec<_> = current
            .collection
            .references()
            .into_iter()
            .cloned()
            .collect();
        let mut held = Vec::new();
        for r in refs {
            let key = origin_key(&r.origin);
            st.auto_promotion_holds.insert(
                key.clone(),
                AutoPromotionHold {
                    freight_name: r.name.clone(),
                    origin: r.origin.clone(),
                    promotion_name: promotion.clone(),
                    actor: actor.clone(),
                    created_at: now,
                },
            );
            held.push(key);
        }
        Ok(held)
    }

    /// Lifts every auto-promotion hold of `stage`; returns how many there were.
    pub fn resume_auto_promotion(
        &self,
        state: &mut ProjectState,
        stage: &str,
    ) -> Result<usize, PipelineError> {
        self.stage(stage)?;
        Ok(state
            .stages
            .get_mut(stage)
            .map(|st| std::mem::take(&mut st.auto_promotion_holds).len())
            .unwrap_or(0))
    }
}
