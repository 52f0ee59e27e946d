//! `file-write`: writes a file from the step's configuration.

use std::io::Write as _;

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::fsutil;
use crate::json::require_path;

/// Configuration of [`FileWrite`].
///
/// ```yaml
/// - uses: file-write
///   config:
///     path: ./out/values.yaml           # relative to the work directory
///     contents: ${{ asYAML(vars.values) }}
///     permissions: "0644"               # optional, default "0600"
///     overwrite: true                   # optional, default false
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileWriteConfig {
    /// The file to write, relative to the work directory. Missing parent directories are
    /// created (mode `0700`). No component may be a symbolic link, and no component may be
    /// `.git` (Kargo only guards the top-level `.git`; writing into any repository's git
    /// metadata, e.g. its `config`, could make later git commands run code).
    pub path: String,
    /// The file's contents, written as is.
    pub contents: String,
    /// The file's permission bits as four octal digits (`^0[0-7]{3}$`; default `0600`).
    /// Executable and world-writable modes are refused, as in Kargo.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Replace an existing file (default false: an existing file is an error).
    #[serde(default)]
    pub overwrite: bool,
}

/// Kargo's `file-write` step. The file is written atomically: a temporary file in the same
/// directory is renamed over the target, so a failure never leaves a half-written file.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileWrite;

/// The permission bits used when `permissions` is not set.
pub const DEFAULT_FILE_WRITE_PERMISSIONS: u32 = 0o600;

#[async_trait]
impl Step for FileWrite {
    const KIND: &'static str = "file-write";
    type Config = FileWriteConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: FileWriteConfig) -> Result<StepOutcome, StepError> {
        require_path("path", &cfg.path)?;
        let mode = parse_permissions(cfg.permissions.as_deref())?;
        let target = fsutil::file_target(ctx, "path", &cfg.path)?;
        let ctx = ctx.clone();
        fsutil::run_blocking(move || {
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {
                    return Err(StepError::terminal(format!(
                        "path {:?} is a directory",
                        cfg.path
                    )));
                }
                Ok(_) if !cfg.overwrite => {
                    return Err(StepError::terminal(format!(
                        "file {:?} already exists; set overwrite to true to replace it",
                        cfg.path
                    )));
                }
                _ => {}
            }
            if let Some(parent) = target.parent() {
                fsutil::create_dirs(parent, 0o700).map_err(|e| {
                    fsutil::io_error("error creating parent directories for", &cfg.path, e)
                })?;
            }
            fsutil::atomic_write(&target, Some(mode), true, |f, _| {
                f.write_all(cfg.contents.as_bytes())
            })
            .map_err(|e| fsutil::io_error("error writing file", &cfg.path, e))?;
            tracing::debug!(path = %fsutil::rel(&ctx, &target), "file written");
            Ok(())
        })
        .await?;
        Ok(StepOutcome::succeeded())
    }
}

/// Parses `permissions` (`^0[0-7]{3}$`), refusing executable and world-writable modes.
fn parse_permissions(permissions: Option<&str>) -> Result<u32, StepError> {
    let Some(p) = permissions.filter(|p| !p.is_empty()) else {
        return Ok(DEFAULT_FILE_WRITE_PERMISSIONS);
    };
    let valid =
        p.len() == 4 && p.starts_with('0') && p.bytes().skip(1).all(|b| (b'0'..=b'7').contains(&b));
    if !valid {
        return Err(StepError::invalid_config(
            "permissions",
            format!("invalid permissions {p:?}: must match ^0[0-7]{{3}}$"),
        ));
    }
    let mode = u32::from_str_radix(p, 8).map_err(|_| {
        StepError::invalid_config("permissions", format!("invalid permissions {p:?}"))
    })?;
    if mode & 0o111 != 0 {
        return Err(StepError::invalid_config(
            "permissions",
            format!("permissions {p:?} must not include executable bits"),
        ));
    }
    if mode & 0o002 != 0 {
        return Err(StepError::invalid_config(
            "permissions",
            format!("permissions {p:?} must not be world-writable"),
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        assert_eq!(parse_permissions(None).unwrap(), 0o600);
        assert_eq!(parse_permissions(Some("0644")).unwrap(), 0o644);
        assert_eq!(parse_permissions(Some("0660")).unwrap(), 0o660);
        for bad in ["644", "0755", "0666", "0800", "00644", "abcd", "0x64"] {
            assert!(parse_permissions(Some(bad)).is_err(), "{bad}");
        }
    }
}
