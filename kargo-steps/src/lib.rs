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
//! | `json-update` / `toml-update` | sets values in a JSON(C) / TOML file, keeping its formatting |
//! | `json-parse` / `toml-parse` | outputs values computed from a JSON / TOML file with expressions |
//! | `copy` | copies a file or directory (gitignore-style `ignore`, symbolic links skipped) |
//! | `delete` | deletes paths or glob matches (a symbolic link is deleted as a link) |
//! | `file-write` | writes a file from the configuration |
//! | `tar` / `untar` | creates / safely extracts a (gzipped) tar archive, with size caps |
//!
//! ```
//! let mut registry = kargo_core::StepRegistry::new();
//! kargo_steps::register_builtins(&mut registry).unwrap();
//! assert!(registry.get("compose-output").is_some());
//! ```

mod compose_output;
mod fail;
pub mod files;
pub mod json;
pub mod toml;

pub use compose_output::ComposeOutput;
pub use fail::{Fail, FailConfig};
pub use files::{FileCopy, FileDelete, FileWrite, Tar, Untar};
pub use json::{JsonParse, JsonUpdate};
pub use toml::{TomlParse, TomlUpdate};

use kargo_core::step::{DuplicateStep, StepRegistry};

/// Registers every built-in step. Fails if one of their names is already taken.
pub fn register_builtins(registry: &mut StepRegistry) -> Result<(), DuplicateStep> {
    registry.register(ComposeOutput)?;
    registry.register(Fail)?;
    registry.register(JsonUpdate)?;
    registry.register(JsonParse)?;
    registry.register(TomlUpdate)?;
    registry.register(TomlParse)?;
    registry.register(FileCopy)?;
    registry.register(FileDelete)?;
    registry.register(FileWrite)?;
    registry.register(Tar::new())?;
    registry.register(Untar::new())?;
    Ok(())
}
