//! The events the controller emits ([`kargo_core::events`]), built from what it just did:
//! promotions created, finished and discarded, Freight created and approved, verifications
//! finished. Each goes to the controller's [`EventSink`] ([`Controller::with_events`])
//! after the state change it reports was written.

use std::sync::Arc;

use kargo_core::events::{Event, EventSink, EventType, PromotionInfo};
use kargo_core::freight::Freight;
use kargo_core::pipeline::{
    AUTO_ROLLBACK_ACTOR, ProjectState, PromotionRequest, PromotionTrigger, VerificationInfo,
    VerificationPhase,
};
use kargo_core::runner::PromotionPhase;

use super::Controller;

/// The event type of a finished promotion's phase (`None`: not finished).
pub(super) fn promotion_finished(phase: PromotionPhase) -> Option<EventType> {
    match phase {
        PromotionPhase::Succeeded => Some(EventType::PromotionSucceeded),
        PromotionPhase::Failed => Some(EventType::PromotionFailed),
        PromotionPhase::Errored => Some(EventType::PromotionErrored),
        PromotionPhase::Aborted => Some(EventType::PromotionAborted),
        PromotionPhase::Pending | PromotionPhase::Running => None,
    }
}

/// The event type of a verification's phase.
pub(super) fn verification_finished(phase: VerificationPhase) -> EventType {
    match phase {
        VerificationPhase::Successful => EventType::FreightVerificationSucceeded,
        VerificationPhase::Failed => EventType::FreightVerificationFailed,
        VerificationPhase::Error => EventType::FreightVerificationErrored,
        VerificationPhase::Aborted => EventType::FreightVerificationAborted,
        VerificationPhase::Inconclusive => EventType::FreightVerificationInconclusive,
        _ => EventType::FreightVerificationUnknown,
    }
}

impl Controller {
    /// Sends the pipeline's events ([`kargo_core::events::EventType`]: promotions
    /// created, succeeded, failed, errored, aborted and discarded; Freight created and
    /// approved; verifications) to `sink`, e.g. a notifier. `emit` is called after the
    /// change was written; a sink must not block.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = sink;
        self
    }

    /// Hands `event` to the sink.
    pub(super) fn emit(&self, event: Event) {
        tracing::debug!(kind = %event.kind, stage = event.stage.as_deref().unwrap_or(""), "event");
        self.events.emit(&event);
    }

    /// An event about `request`, with its Freight as `state` knows it.
    pub(super) fn promotion_event(
        &self,
        kind: EventType,
        request: &PromotionRequest,
        state: &ProjectState,
        message: impl Into<String>,
    ) -> Event {
        let mut e = Event::new(kind, self.now(), &self.project, message);
        e.actor = request.actor.clone();
        e.stage = Some(request.stage.clone());
        e.freight = state
            .freight
            .get(&request.freight)
            .map(|r| r.freight.clone());
        e.promotion = Some(PromotionInfo {
            name: request.name.clone(),
            create_time: request.requested_at,
            rollback: request.trigger == PromotionTrigger::Rollback,
            applications: Vec::new(),
            verification_pending: None,
        });
        e
    }

    /// Hands every one of `events` to the sink, in order.
    pub(super) fn emit_all(&self, events: Vec<Event>) {
        for e in events {
            self.emit(e);
        }
    }

    /// `PromotionCreated` for each of `requests` and `PromotionDiscarded` for each of
    /// `dropped` (superseded by a newer request), to emit once they were written.
    pub(super) fn queued_events(
        &self,
        requests: &[PromotionRequest],
        dropped: &[PromotionRequest],
        state: &ProjectState,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        for r in requests {
            let what = match (r.trigger, r.actor.as_deref()) {
                (PromotionTrigger::Rollback, Some(AUTO_ROLLBACK_ACTOR)) => "automatic rollback",
                (PromotionTrigger::Rollback, _) => "rollback",
                (PromotionTrigger::Auto, _) => "auto-promotion",
                _ => "promotion",
            };
            out.push(self.promotion_event(
                EventType::PromotionCreated,
                r,
                state,
                format!("{what} of {} to {} queued", r.freight, r.stage),
            ));
        }
        for r in dropped {
            out.push(self.promotion_event(
                EventType::PromotionDiscarded,
                r,
                state,
                format!(
                    "promotion of {} to {} discarded: newer Freight was queued",
                    r.freight, r.stage
                ),
            ));
        }
        out
    }

    /// An event about `freight` (in `stage`, if any).
    pub(super) fn freight_event(
        &self,
        kind: EventType,
        freight: &Freight,
        stage: Option<&str>,
        actor: Option<String>,
        message: impl Into<String>,
    ) -> Event {
        let mut e = Event::new(kind, self.now(), &self.project, message);
        e.actor = actor;
        e.stage = stage.map(str::to_owned);
        e.freight = Some(freight.clone());
        e
    }

    /// One verification event per Freight of the collection `stage` holds in `state`, to
    /// emit once the verification was written.
    pub(super) fn verification_events(
        &self,
        stage: &str,
        info: &VerificationInfo,
        state: &ProjectState,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(entry) = state
            .stages
            .get(stage)
            .and_then(|s| s.freight_history.first())
        else {
            return out;
        };
        let kind = verification_finished(info.phase);
        for r in entry.collection.references() {
            let Some(record) = state.freight.get(&r.name) else {
                continue;
            };
            let mut e = self.freight_event(
                kind,
                &record.freight,
                Some(stage),
                None,
                if info.message.is_empty() {
                    format!("verification of {} in {stage}: {:?}", r.name, info.phase)
                } else {
                    info.message.clone()
                },
            );
            e.verification = Some(kargo_core::events::VerificationInfo {
                start_time: None,
                finish_time: Some(info.finished_at),
                analysis_run_name: None,
                triggered_by_promotion: (!entry.promotion.is_empty())
                    .then(|| entry.promotion.clone()),
            });
            out.push(e);
        }
        out
    }
}
