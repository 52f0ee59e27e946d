//! The Helm steps: `helm-update-chart`.
//!
//! [`HelmUpdateChart`] updates the dependencies of an umbrella chart like Kargo (which runs
//! Helm's `dependency update` with an ephemeral Helm home): the matching
//! `dependencies[].version` values of `Chart.yaml` are changed in place, every dependency
//! is resolved against its repository, `Chart.lock` is regenerated with Helm's digest and
//! the archives under `charts/` are replaced. Repositories are reached with the chart
//! clients of [`kargo_sources::chart`]; credentials come from the promotion's credential
//! provider ([`CredentialKind::Helm`](kargo_core::secret::CredentialKind::Helm)).

pub mod chart_yaml;
pub mod lock;
mod update_chart;

pub use update_chart::{ChartUpdate, HelmUpdateChart, HelmUpdateChartConfig};

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (with the
/// old file's permissions, if any, 0644 otherwise), synced, then renamed over `path`. The
/// directory is opened without following symbolic links (see
/// [`crate::files::fsutil::atomic_write`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mode = crate::files::fsutil::mode_of(path).unwrap_or(0o644);
    crate::files::fsutil::atomic_write(path, Some(mode), true, |f, _| f.write_all(bytes))
}
