//! # kargo-core
//!
//! The vocabulary and orchestration of GitOps continuous promotion, after
//! [Kargo](https://kargo.io): the `kargo.akuity.io/v1alpha1` resource model and its loader,
//! Freight and Freight IDs, `$<< >>` expressions, the [`Step`] trait and
//! [`StepRegistry`], and the promotion [`Runner`].
//!
//! This crate has no network, git or YAML-editing code; those live in `kargo-git`,
//! `kargo-sources` and `kargo-steps`.

#![forbid(unsafe_code)]

pub mod events;
pub mod expr;
pub mod freight;
pub mod limits;
pub mod loader;
pub mod model;
pub mod pipeline;
pub mod recurrence;
mod registry;
pub mod runner;
pub mod secret;
pub mod source;
pub mod step;
#[cfg(feature = "testing")]
pub mod testing;
mod unknown_step;
pub mod validate;
pub mod workdir;

pub use freight::{Freight, FreightCollection, FreightId, FreightOrigin, FreightReference};
pub use runner::{PlannedStep, Promotion, PromotionPhase, PromotionResult, Runner};
pub use step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
