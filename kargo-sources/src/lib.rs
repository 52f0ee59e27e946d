//! kargo-sources: artifact discovery (OCI images, Helm charts, git) for Warehouses.
//!
//! - [`chart`]: Helm chart repositories (classic HTTP and OCI) and Kargo's chart version
//!   semantics.
//! - [`selection`]: Kargo's tag filtering and ordering for image subscriptions.

pub mod chart;
pub mod selection;
