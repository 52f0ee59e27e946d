//! What a person does to a Stage besides promoting (the UI's and API's buttons): abort a
//! queued or running promotion, re-verify, hold and resume auto-promotion.

use std::sync::Arc;

use kargo_core::freight::FreightCollection;
use kargo_core::model::Stage;
use kargo_core::pipeline::{
    AbortOutcome, ProjectState, PromotionRequest, StageLease, VerificationInfo, VerificationPhase,
    Verifier,
};
use kargo_core::runner::PromotionPhase;
use tokio_util::sync::CancellationToken;

use super::{Controller, ControllerError};

/// A re-verification whose checks passed, holding the Stage's lease
/// ([`Controller::start_reverify`]).
pub struct Reverification {
    controller: Controller,
    stage: Stage,
    collection: FreightCollection,
    verifier: Arc<dyn Verifier>,
    lease: StageLease,
}

impl std::fmt::Debug for Reverification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reverification")
            .field("stage", &self.stage.metadata.name)
            .finish_non_exhaustive()
    }
}

impl Reverification {
    /// Verifies and records the verdict (while the lease is still held), then lets the
    /// lease go.
    pub async fn run(self) -> Result<VerificationInfo, ControllerError> {
        let name = self.stage.metadata.name.clone();
        let info = self.verifier.verify(&self.stage, &self.collection).await;
        let mut events = Vec::new();
        self.controller
            .update_under(self.lease.fence(), |state| {
                self.controller
                    .pipeline()
                    .record_verification(state, &name, info.clone())?;
                events = self.controller.verification_events(&name, &info, state);
                Ok(())
            })
            .await?;
        self.controller.emit_all(events);
        tracing::info!(stage = %name, verified = info.phase == VerificationPhase::Successful, "re-verified");
        Ok(info)
    }
}

/// Takes a running promotion out of [`Controller::running`] when it ends.
pub(super) struct Running<'a> {
    controller: &'a Controller,
    name: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.controller
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.name);
    }
}

impl Controller {
    /// Aborts `promotion` of `stage` (or, when `None`, the running one, else the first
    /// queued): a queued promotion leaves the queue recorded `Aborted`; a running one is
    /// asked to stop, and stops at its next step boundary (a step in flight is cancelled),
    /// ending `Aborted` with the actor in its message. The request is kept in the state,
    /// so the runner sees it on whichever replica runs the promotion (at once on a store
    /// with change notifications, at its next step otherwise).
    pub async fn abort(
        &self,
        stage: &str,
        promotion: Option<&str>,
        actor: Option<String>,
    ) -> Result<AbortOutcome, ControllerError> {
        let now = self.now();
        let outcome = self
            .update(|state| {
                self.pipeline()
                    .abort(state, stage, promotion, actor.clone(), now)
            })
            .await?;
        if let AbortOutcome::Requested { promotion } = &outcome {
            let local = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(promotion)
                .cloned();
            if let Some(cancel) = local {
                cancel.cancel();
            }
            tracing::info!(
                stage,
                promotion,
                actor = actor.as_deref().unwrap_or(""),
                "abort requested"
            );
        }
        Ok(outcome)
    }

    /// Holds `stage`'s auto-promotion at the Freight it holds now (every origin pinned)
    /// until [`resume_auto_promotion`](Self::resume_auto_promotion); returns the origins
    /// held.
    pub async fn hold_auto_promotion(
        &self,
        stage: &str,
        actor: Option<String>,
    ) -> Result<Vec<String>, ControllerError> {
        let now = self.now();
        self.update(|state| {
            self.pipeline()
                .hold_auto_promotion(state, stage, actor.clone(), now)
        })
        .await
    }

    /// Lifts `stage`'s auto-promotion holds; returns how many there were.
    pub async fn resume_auto_promotion(&self, stage: &str) -> Result<usize, ControllerError> {
        self.update(|state| self.pipeline().resume_auto_promotion(state, stage))
            .await
    }

    /// Verifies the Freight `stage` holds again with the controller's verifier (Kargo's
    /// re-verify), under the Stage's lease, and records the verdict: [`start_reverify`]
    /// then [`Reverification::run`].
    ///
    /// [`start_reverify`]: Self::start_reverify
    pub async fn reverify(&self, stage: &str) -> Result<VerificationInfo, ControllerError> {
        self.start_reverify(stage).await?.run().await
    }

    /// Checks that `stage` can be verified again and takes its lease: refused when the
    /// Stage has no `verification`, there is no verifier, the Stage holds no Freight
    /// ([`ControllerError::NotVerifiable`]) or another runner holds the lease
    /// ([`ControllerError::StageBusy`]). The verification itself (which may measure for
    /// minutes) is [`Reverification::run`].
    pub async fn start_reverify(&self, stage: &str) -> Result<Reverification, ControllerError> {
        let not = |why: &str| ControllerError::NotVerifiable {
            stage: stage.to_owned(),
            why: why.to_owned(),
        };
        let spec = self.pipeline().stage(stage)?.clone();
        if spec.spec.verification.is_none() {
            return Err(not("it has no verification"));
        }
        let Some(verifier) = self.verifier.clone() else {
            return Err(not("no verifier is configured"));
        };
        let Some(lease) = self.lease(stage).await? else {
            return Err(ControllerError::StageBusy(stage.to_owned()));
        };
        let state = self.state().await?;
        let Some(collection) = state.stages.get(stage).and_then(|s| s.current()).cloned() else {
            return Err(not("it holds no Freight"));
        };
        Ok(Reverification {
            controller: self.clone(),
            stage: spec,
            collection,
            verifier,
            lease,
        })
    }

    /// Notes `request` as running here (stopped by `cancel`) until the guard drops;
    /// cancels at once when an abort was asked before it started.
    pub(super) fn register_running(
        &self,
        request: &PromotionRequest,
        state: &ProjectState,
        cancel: &CancellationToken,
    ) -> Running<'_> {
        if Self::abort_asked(state, request) {
            cancel.cancel();
        }
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(request.name.clone(), cancel.clone());
        Running {
            controller: self,
            name: request.name.clone(),
        }
    }

    fn abort_asked(state: &ProjectState, request: &PromotionRequest) -> bool {
        state
            .stages
            .get(&request.stage)
            .and_then(|s| s.abort_requested.as_ref())
            .is_some_and(|a| a.promotion == request.name)
    }

    /// Returns, having cancelled `cancel`, when the state records an abort of `request`
    /// (asked on another replica); never, on a store without change notifications (an
    /// abort asked in this process cancels directly).
    pub(super) async fn watch_abort(&self, request: &PromotionRequest, cancel: &CancellationToken) {
        let Some(mut changes) = self.store.changes() else {
            return std::future::pending().await;
        };
        while changes.changed().await.is_ok() {
            if let Ok((state, _)) = self.store.load(&self.project).await
                && Self::abort_asked(&state, request)
            {
                cancel.cancel();
                return;
            }
        }
        std::future::pending().await
    }

    /// The message of a promotion that ended `Aborted` because someone asked.
    pub(super) fn abort_message(
        state: &ProjectState,
        request: &PromotionRequest,
        phase: PromotionPhase,
    ) -> Option<String> {
        if phase != PromotionPhase::Aborted {
            return None;
        }
        let asked = state.stages.get(&request.stage)?.abort_requested.as_ref()?;
        (asked.promotion == request.name)
            .then(|| format!("aborted by {}", asked.actor.as_deref().unwrap_or("someone")))
    }
}
