//! kargo: the facade crate re-exporting kargo-rs' member crates.
pub use kargo_core as core;
