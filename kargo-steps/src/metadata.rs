//! `set-metadata`: upserts metadata of Stages and Freight of the promotion's project in the
//! pipeline's state store ([`kargo_core::pipeline::StateStore`]), where `stageMetadata()`
//! and `freightMetadata()` read it back in later promotions.
//!
//! ```yaml
//! - uses: set-metadata
//!   config:
//!     updates:
//!     - kind: Stage
//!       name: ${{ ctx.stage }}
//!       values:
//!         prURL: ${{ outputs['open-pr'].pr.url }}
//!     - kind: Freight
//!       name: ${{ ctx.targetFreight.name }}
//!       values:
//!         deployedBy: ${{ ctx.meta.promotion.actor }}
//! ```
//!
//! The step needs the state store, so it is not part of
//! [`register_builtins`](crate::register_builtins): embedders that run a pipeline register
//! `SetMetadata::new(store)` with the same store their controller uses. Freight is named by
//! its ID or its alias and must exist in the project; a Stage gets a state entry if it has
//! none yet. Keys are upserted (other keys are kept); a `null` value removes a key. The
//! whole update is one optimistic-concurrency write (retried on conflicts).

use std::sync::Arc;

use async_trait::async_trait;
use kargo_core::pipeline::{ProjectState, StateError, StateStore};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;
use serde_json::Value as Json;

/// Kargo's `set-metadata` (see the module documentation).
#[derive(Clone)]
pub struct SetMetadata {
    store: Arc<dyn StateStore>,
}

impl std::fmt::Debug for SetMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetMetadata").finish_non_exhaustive()
    }
}

impl SetMetadata {
    /// The step, writing to `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
}

/// What an update names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MetadataKind {
    /// A Stage, by name.
    Stage,
    /// A piece of Freight, by ID or alias.
    Freight,
}

/// One entry of `updates`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataUpdate {
    /// `kind:` `Stage` or `Freight`. Required.
    pub kind: MetadataKind,
    /// `name:` the Stage's name, or the Freight's ID or alias. Required.
    pub name: String,
    /// `values:` the keys to set (any JSON values; `null` removes the key). Required.
    pub values: serde_json::Map<String, Json>,
}

/// Configuration of [`SetMetadata`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetMetadataConfig {
    /// `updates:` the updates, applied in order. Required, at least one.
    pub updates: Vec<MetadataUpdate>,
}

fn upsert(
    target: &mut std::collections::BTreeMap<String, Json>,
    values: &serde_json::Map<String, Json>,
) {
    for (k, v) in values {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

fn apply(state: &mut ProjectState, updates: &[MetadataUpdate]) -> Result<(), String> {
    for (i, u) in updates.iter().enumerate() {
        match u.kind {
            MetadataKind::Stage => {
                upsert(
                    &mut state.stages.entry(u.name.clone()).or_default().metadata,
                    &u.values,
                );
            }
            MetadataKind::Freight => {
                let rec = state
                    .freight
                    .values_mut()
                    .find(|r| {
                        r.freight.name.as_str() == u.name
                            || r.freight.alias.as_deref() == Some(u.name.as_str())
                    })
                    .ok_or_else(|| {
                        format!("updates[{i}]: no Freight {:?} in the project", u.name)
                    })?;
                upsert(&mut rec.status.metadata, &u.values);
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Step for SetMetadata {
    const KIND: &'static str = "set-metadata";
    type Config = SetMetadataConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Idempotent)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: SetMetadataConfig,
    ) -> Result<StepOutcome, StepError> {
        if let Some(skip) = crate::dry_run_skip(
            ctx,
            &format!("set {} metadata update(s)", cfg.updates.len()),
        ) {
            return Ok(skip);
        }
        if cfg.updates.is_empty() {
            return Err(StepError::invalid_config(
                "updates",
                "at least one update is required",
            ));
        }
        for (i, u) in cfg.updates.iter().enumerate() {
            if u.name.is_empty() {
                return Err(StepError::invalid_config(
                    format!("updates[{i}].name"),
                    "must not be empty",
                ));
            }
        }
        let mut refused = None;
        let r = self
            .store
            .update(&ctx.project, &mut |state| {
                apply(state, &cfg.updates).map_err(|m| {
                    refused = Some(m.clone());
                    StateError::Aborted(m)
                })
            })
            .await;
        let result = (r.map(|_| ()), refused);
        match result {
            (Ok(()), _) => Ok(StepOutcome::succeeded()),
            (Err(_), Some(m)) => Err(StepError::terminal(m)),
            (Err(e @ (StateError::Conflict { .. } | StateError::Io { .. })), None) => {
                Err(StepError::retryable(e.to_string()))
            }
            (Err(e), None) => Err(StepError::terminal(e.to_string())),
        }
    }
}
