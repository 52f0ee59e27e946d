//! Where the controller's promotions record their progress: the project's state
//! ([`ProjectState::progress`](kargo_core::pipeline::ProjectState::progress)), written under
//! the Stage lease's fencing token, so a runner whose lease was granted to another one is
//! refused and stops.

use std::sync::Mutex;

use kargo_core::pipeline::Fence;
use kargo_core::runner::{ProgressError, ProgressSink, PromotionProgress};

use super::{Controller, ControllerError};

/// Writes one promotion's progress into the state store.
pub(super) struct StateProgress<'a> {
    controller: &'a Controller,
    fence: Option<&'a Fence>,
    promotion: &'a str,
    failure: Mutex<Option<ControllerError>>,
}

impl<'a> StateProgress<'a> {
    /// A sink for `promotion`, writing under `fence` when given.
    pub(super) fn new(
        controller: &'a Controller,
        fence: Option<&'a Fence>,
        promotion: &'a str,
    ) -> Self {
        Self {
            controller,
            fence,
            promotion,
            failure: Mutex::new(None),
        }
    }

    /// The error of the write that stopped the promotion, if one did.
    pub(super) fn take_failure(&self) -> Option<ControllerError> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[async_trait::async_trait]
impl ProgressSink for StateProgress<'_> {
    async fn record(&self, progress: &PromotionProgress) -> Result<(), ProgressError> {
        let written = match self.fence {
            // One record under the lease (a database store writes just that row), after
            // renewing the lease: the next step (perhaps one with an outside effect, which
            // no fencing token can stop once started) begins with the lease's whole time
            // limit ahead, and not at all if the lease was granted to another runner.
            Some(fence) => {
                let store = self.controller.store();
                let renewed = if store.leases_expire() {
                    store.renew_lease(fence, self.controller.lease_ttl()).await
                } else {
                    Ok(())
                };
                match renewed {
                    Ok(()) => store
                        .put_progress(fence, self.promotion, Some(progress))
                        .await
                        .map_err(ControllerError::from),
                    Err(e) => Err(e.into()),
                }
            }
            None => {
                self.controller
                    .update_under(None, |state| {
                        state
                            .progress
                            .insert(self.promotion.to_owned(), progress.clone());
                        Ok(())
                    })
                    .await
            }
        };
        written.map_err(|e| {
            let error = ProgressError::new(e.to_string());
            tracing::warn!(promotion = %self.promotion, error = %e, "cannot record the promotion's progress: stopping it");
            *self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            error
        })
    }
}
