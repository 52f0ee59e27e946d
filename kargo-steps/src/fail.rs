//! `fail`: ends the promotion as Failed.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

/// Kargo's `fail` step: fails the promotion on purpose, typically behind an `if`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fail;

/// Configuration of [`Fail`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailConfig {
    /// The failure message (default: "step failed").
    #[serde(default)]
    pub message: Option<String>,
}

#[async_trait]
impl Step for Fail {
    const KIND: &'static str = "fail";
    type Config = FailConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, _ctx: &StepContext, config: FailConfig) -> Result<StepOutcome, StepError> {
        Err(StepError::failed(
            config
                .message
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "step failed".to_owned()),
        ))
    }
}
