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
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (with the
/// old file's permissions, if any), synced, then renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.kargo-tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
