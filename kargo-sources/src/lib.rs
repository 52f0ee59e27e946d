//! kargo-sources: artifact discovery (OCI images, Helm charts, git) for Warehouses.
//!
//! - [`builtin`]: one call registering the image, chart and git sources from explicit options.
//! - [`chart`]: Helm chart repositories (classic HTTP and OCI) and Kargo's chart version
//!   semantics.
//! - [`image`]: image subscriptions on OCI registries (SemVer, Lexical, NewestBuild, Digest;
//!   metadata caches, rate limit, Docker `config.json` credentials).
//! - [`git`]: git subscriptions (branch history and tags, path and expression filters).
//! - [`selection`]: Kargo's tag filtering and ordering for image subscriptions.
//! - [`memory`]: an in-memory source for tests and examples.
//! - [`warehouse`]: the Warehouse reconcile algorithm (discovery, Freight creation).
//! - [`webhook`]: webhook receivers (GitHub, GitLab, registries, generic): verify a request
//!   and name the Warehouses to refresh.
#![forbid(unsafe_code)]

pub mod builtin;
pub mod chart;
pub mod git;
pub mod image;
pub mod memory;
pub mod selection;
pub mod warehouse;
pub mod webhook;
