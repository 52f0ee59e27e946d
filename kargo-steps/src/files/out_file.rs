//! The output file of the download steps (`http-download`, `oci-download`): where it goes
//! in the work directory, whether it may be replaced, and the atomic write of its content.

use std::io::Write as _;
use std::path::PathBuf;

use kargo_core::step::{StepContext, StepError};

use super::fsutil;

/// The permission bits of a downloaded file (Kargo's downloads are `0600`).
pub(crate) const DOWNLOAD_FILE_MODE: u32 = 0o600;

/// A checked destination inside the work directory.
#[derive(Debug, Clone)]
pub(crate) struct OutFile {
    /// The resolved path (no symbolic link in it).
    pub(crate) target: PathBuf,
    /// The path as configured, for messages.
    pub(crate) shown: String,
}

/// Checks `out_path` (the `outPath` field): non-empty, inside the work directory, no
/// symbolic link on the way, no `.git` component, not a directory, and not an existing file
/// unless `allow_overwrite`. Missing parent directories are created (`0700`). Done before
/// anything is downloaded, so a refused path costs no transfer.
pub(crate) async fn prepare(
    ctx: &StepContext,
    out_path: &str,
    allow_overwrite: bool,
) -> Result<OutFile, StepError> {
    if out_path.trim().is_empty() {
        return Err(StepError::invalid_config("outPath", "must not be empty"));
    }
    let Some(parts) = fsutil::lexical_components(out_path) else {
        return Err(fsutil::refused(ctx, out_path).context("outPath"));
    };
    if parts.is_empty() {
        return Err(StepError::invalid_config(
            "outPath",
            format!("{out_path:?} names the work directory, not a file"),
        ));
    }
    if parts
        .iter()
        .any(|c| c.to_string_lossy().eq_ignore_ascii_case(".git"))
    {
        return Err(StepError::terminal(format!(
            "outPath {out_path:?}: writing into a .git directory is forbidden"
        )));
    }
    let target = ctx.path(out_path)?;
    let expected: PathBuf = ctx
        .work_dir()
        .root()
        .join(parts.iter().collect::<PathBuf>());
    if target != expected {
        return Err(StepError::terminal(format!(
            "outPath {out_path:?} resolves to a different path {:?} (symbolic links are forbidden)",
            fsutil::rel(ctx, &target)
        )));
    }
    let shown = out_path.to_owned();
    let out = OutFile { target, shown };
    let checked = out.clone();
    fsutil::run_blocking(move || {
        match std::fs::symlink_metadata(&checked.target) {
            Ok(m) if m.is_dir() => {
                return Err(StepError::terminal(format!(
                    "outPath {:?} is a directory",
                    checked.shown
                )));
            }
            Ok(_) if !allow_overwrite => {
                return Err(StepError::terminal(format!(
                    "file already exists at {:?} and overwrite is not allowed (set allowOverwrite: true)",
                    checked.shown
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(fsutil::io_error(
                    "error checking destination file",
                    &checked.shown,
                    e,
                ));
            }
        }
        if let Some(parent) = checked.target.parent() {
            fsutil::create_dirs(parent, 0o700).map_err(|e| {
                fsutil::io_error(
                    "error creating parent directories for",
                    &checked.shown,
                    e,
                )
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

impl OutFile {
    /// Writes `bytes` as the file, atomically (a temporary file in the same directory
    /// renamed into place; on an error the old file, if any, stays and nothing is left
    /// behind), mode `0600`.
    pub(crate) async fn write(&self, bytes: Vec<u8>) -> Result<(), StepError> {
        let out = self.clone();
        fsutil::run_blocking(move || {
            fsutil::atomic_write(&out.target, Some(DOWNLOAD_FILE_MODE), true, |f, _| {
                f.write_all(&bytes)
            })
            .map_err(|e| fsutil::io_error("error writing file", &out.shown, e))
        })
        .await
    }
}
