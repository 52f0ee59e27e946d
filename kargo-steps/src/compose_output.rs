//! `compose-output`: outputs its configuration.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepDefaults, StepError, StepOutcome};

/// Kargo's `compose-output` step: every key of its (rendered) configuration becomes an
/// output. Inside a PromotionTask, the outputs are also copied to the task's alias, so
/// `outputs['<task alias>'].<key>` reads them from outside the task.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComposeOutput;

#[async_trait]
impl Step for ComposeOutput {
    const KIND: &'static str = "compose-output";
    type Config = serde_json::Map<String, serde_json::Value>;

    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            effect: kargo_core::step::StepEffect::Local,
            task_output_propagation: true,
            ..StepDefaults::default()
        }
    }

    async fn run(
        &self,
        _ctx: &StepContext,
        config: Self::Config,
    ) -> Result<StepOutcome, StepError> {
        let mut outcome = StepOutcome::succeeded();
        outcome.outputs.extend(config);
        Ok(outcome)
    }
}
