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
//!
//! # Cargo features
//!
//! Every source type that talks to the network is a feature; all are on by default.
//!
//! | feature | enables | brings |
//! |---|---|---|
//! | `image` | [`image`] (and [`chart::sha256_digest`]) | reqwest (rustls) |
//! | `chart` | all of [`chart`] but [`chart::version`]: HTTP and OCI chart repositories, [`chart::ChartSource`], [`chart::archive`] | reqwest, oci-client, flate2, tar |
//! | `git` | [`git`] | kargo-git (gix) |
//! | `webhook` | [`webhook`] (matches pushes for every subscription type; needs none of the others) | hmac, sha2, subtle |
//!
//! [`memory`], [`selection`], [`warehouse`] and [`chart::version`] are always there, so a
//! tool that only needs the model and the in-memory source builds with
//! `default-features = false` and pulls no gix, reqwest, oci-client or hyper.
#![forbid(unsafe_code)]

pub mod builtin;
pub mod chart;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "image")]
pub mod image;
pub mod memory;
#[cfg(any(feature = "git", feature = "webhook"))]
mod path_filter;
pub mod selection;
pub mod warehouse;
#[cfg(feature = "webhook")]
pub mod webhook;
