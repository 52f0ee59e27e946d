//! # kargo-steps
//!
//! The built-in promotion steps of kargo-rs, with Kargo's step names and configuration
//! fields so existing promotion templates run unchanged. [`register_builtins`] is the one
//! list of them.
//!
//! | step | what it does |
//! |---|---|
//! | `compose-output` | outputs its configuration as is; inside a task the outputs are also visible as the task's outputs |
//! | `fail` | fails the promotion with a message (use it with `if`) |
//! | `yaml-update` | sets scalar values in a YAML file, keeping every other byte ([`yaml::set_values`]) |
//! | `yaml-parse` | evaluates expressions over a YAML file's content into outputs |
//! | `yaml-merge` | deep-merges YAML files into one |
//!
//! ```
//! let mut registry = kargo_core::StepRegistry::new();
//! kargo_steps::register_builtins(&mut registry).unwrap();
//! assert!(registry.get("compose-output").is_some());
//! ```

mod compose_output;
mod fail;
pub mod yaml;

pub use compose_output::ComposeOutput;
pub use fail::{Fail, FailConfig};
pub use yaml::{
    YamlMerge, YamlMergeConfig, YamlParse, YamlParseConfig, YamlParseOutput, YamlUpdate,
    YamlUpdateConfig, YamlUpdateEntry,
};

use kargo_core::step::{DuplicateStep, StepRegistry};

/// Registers every built-in step. Fails if one of their names is already taken.
pub fn register_builtins(registry: &mut StepRegistry) -> Result<(), DuplicateStep> {
    registry.register(ComposeOutput)?;
    registry.register(Fail)?;
    registry.register(YamlUpdate)?;
    registry.register(YamlParse)?;
    registry.register(YamlMerge)?;
    Ok(())
}
