//! kargo-git: git for GitOps promotion (clone, fetch, commits without a work tree, push).
//!
//! This crate depends on no other kargo crate. Its API arrives with the kargo-git issue.
