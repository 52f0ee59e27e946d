//! `git-clear`: empties a checkout's work tree.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::{blocking, find_checkout};

/// Kargo's `git-clear` step: deletes every file of a checkout made by `git-clone`, so the
/// next `git-commit` records exactly what later steps write there (e.g. rendered
/// manifests). No output.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitClear;

/// Configuration of [`GitClear`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitClearConfig {
    /// The checkout's path, relative to the work directory.
    pub path: String,
}

#[async_trait]
impl Step for GitClear {
    const KIND: &'static str = "git-clear";
    type Config = GitClearConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: GitClearConfig) -> Result<StepOutcome, StepError> {
        let info = find_checkout(ctx, &cfg.path)?;
        let checkout = info.checkout.clone();
        blocking(&info.auth, move || checkout.clear()).await?;
        Ok(StepOutcome::succeeded())
    }
}
