//! kargo-core: the vocabulary and orchestration of GitOps continuous promotion.

pub mod loader;
pub mod model;
