#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

/// The vocabulary and orchestration: resources, Freight, expressions, steps, the runner.
pub use kargo_core as core;
/// Git: clone, fetch, commits without a work tree, push.
#[cfg(any(feature = "git", feature = "git-steps"))]
pub use kargo_git as git;
/// The PostgreSQL state store, shared by several replicas.
#[cfg(feature = "postgres")]
pub use kargo_postgres as postgres;
/// Artifact discovery for Warehouses.
pub use kargo_sources as sources;
/// The built-in promotion steps.
pub use kargo_steps as steps;

pub mod clock;
pub mod controller;
#[cfg(feature = "notifications")]
pub mod notifications;
pub mod prelude;
pub mod schedule;
#[cfg(feature = "server")]
pub mod server;
pub mod service;
pub use controller::Controller;

#[cfg(feature = "testing")]
pub mod testing;
