//! kargo-core: the vocabulary and orchestration of GitOps continuous promotion.

pub mod model;
