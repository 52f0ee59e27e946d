//! Rendering steps: `kustomize-build` ([`KustomizeBuild`]) and `helm-template`
//! ([`HelmTemplate`]).
//!
//! Kargo renders in process with the kustomize and Helm Go libraries. Here the steps run
//! the `kustomize` binary (else `kubectl kustomize`) and the `helm` binary, looked up on
//! `PATH` (or [`RenderTools::search_path`]) and started directly, never through a shell.
//! A missing binary is an error that names it. Every configured path goes through the work
//! directory's sandbox ([`StepContext::path`](kargo_core::step::StepContext::path)); the
//! tools get absolute, already-resolved paths. A run is killed when the promotion is
//! cancelled or after [`RenderTools::timeout`]. Helm runs with empty, temporary
//! `HELM_CONFIG_HOME`, `HELM_CACHE_HOME` and `HELM_DATA_HOME` directories, so the user's
//! Helm configuration is neither read nor written.
//!
//! Output layout follows Kargo: an `outPath` ending in `.yaml` or `.yml` receives one
//! multi-document file; any other `outPath` is a directory that receives one file per
//! resource (names below). Generated file names are checked to be plain names, so a
//! resource's metadata cannot make the step write elsewhere.

#[cfg(feature = "helm")]
mod helm_template;
#[cfg(feature = "kustomize")]
mod kustomize_build;
mod process;

#[cfg(feature = "helm")]
pub use helm_template::{HelmOutLayout, HelmSetValue, HelmTemplate, HelmTemplateConfig};
#[cfg(feature = "kustomize")]
pub use kustomize_build::{
    KustomizeBuild, KustomizeBuildConfig, KustomizeHelmPluginConfig, KustomizeOutputFormat,
    KustomizePluginConfig,
};
pub use process::RenderTools;
