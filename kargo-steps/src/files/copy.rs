//! `copy`: copies a file or a directory tree inside the work directory.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::fsutil::{self, IgnoreRules, WalkError};
use crate::json::require_path;

/// Configuration of [`FileCopy`].
///
/// ```yaml
/// - uses: copy
///   config:
///     inPath: ./src/base          # a file or a directory
///     outPath: ./out/base         # the copy (a directory is merged into an existing one)
///     ignore: |                   # optional, .gitignore syntax
///       *.md
///       !README.md
///       /tmp/
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyConfig {
    /// The file or directory to copy, relative to the work directory.
    pub in_path: String,
    /// Where to copy it, relative to the work directory. A file is copied to exactly this
    /// path (overwriting a file there); a directory's contents are copied into this
    /// directory, which is created if missing, overwriting files of the same name.
    pub out_path: String,
    /// Paths to leave out, one `.gitignore` pattern per line (`#` starts a comment),
    /// matched relative to `inPath` (to its directory when it is a file). `.git` is
    /// always left out.
    #[serde(default)]
    pub ignore: String,
}

/// Kargo's `copy` step. Symbolic links in the source tree are skipped, not followed; other
/// special files (FIFOs, sockets, devices) are skipped too. File permission bits are kept.
/// Every file is written atomically (a temporary file renamed into place), and every
/// destination path goes through the work directory's sandbox, so a symbolic link at the
/// destination that leads outside the work directory is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileCopy;

#[async_trait]
impl Step for FileCopy {
    const KIND: &'static str = "copy";
    type Config = CopyConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: CopyConfig) -> Result<StepOutcome, StepError> {
        require_path("inPath", &cfg.in_path)?;
        require_path("outPath", &cfg.out_path)?;
        let src = ctx.path(&cfg.in_path)?;
        let dest = ctx.path(&cfg.out_path)?;
        let rules = IgnoreRules::new(&cfg.ignore, true)?;
        let ctx = ctx.clone();
        fsutil::run_blocking(move || copy(&ctx, &cfg, &src, &dest, &rules)).await?;
        Ok(StepOutcome::succeeded())
    }
}

fn copy(
    ctx: &StepContext,
    cfg: &CopyConfig,
    src: &Path,
    dest: &Path,
    rules: &IgnoreRules,
) -> Result<(), StepError> {
    let meta = fs::symlink_metadata(src)
        .map_err(|e| fsutil::io_error("failed to copy: cannot read inPath", &cfg.in_path, e))?;
    if meta.is_file() {
        return copy_file(src, dest, &meta).map_err(|e| {
            fsutil::io_error(
                &format!("failed to copy {:?} to", cfg.in_path),
                &cfg.out_path,
                e,
            )
        });
    }
    if !meta.is_dir() {
        return Err(StepError::terminal(format!(
            "failed to copy: inPath {:?} is neither a file nor a directory",
            cfg.in_path
        )));
    }
    if dest.starts_with(src) {
        return Err(StepError::terminal(format!(
            "failed to copy: outPath {:?} is inside inPath {:?}",
            cfg.out_path, cfg.in_path
        )));
    }
    match fs::symlink_metadata(dest) {
        Ok(m) if !m.is_dir() => {
            return Err(StepError::terminal(format!(
                "failed to copy: outPath {:?} exists and is not a directory",
                cfg.out_path
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fsutil::create_dirs(dest, 0o750)
                .map_err(|e| fsutil::io_error("cannot create", &cfg.out_path, e))?;
        }
        Err(e) => return Err(fsutil::io_error("cannot inspect", &cfg.out_path, e)),
    }
    // Directory modes are applied last, deepest first, so a read-only source directory
    // does not stop its own contents from being copied.
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let root_mode = mode_bits(&meta);
    let dest_rel = fsutil::rel(ctx, dest);
    fsutil::walk(src, |entry| {
        fsutil::check_cancelled(ctx)?;
        let ft = entry.meta.file_type();
        if rules.is_ignored(&entry.rel, ft.is_dir()) {
            tracing::trace!(path = %entry.rel.display(), "ignored");
            return Ok(false);
        }
        if ft.is_symlink() {
            tracing::trace!(path = %entry.rel.display(), "symbolic link skipped");
            return Ok(false);
        }
        if !ft.is_dir() && !ft.is_file() {
            tracing::trace!(path = %entry.rel.display(), "special file skipped");
            return Ok(false);
        }
        // Resolve the destination through the sandbox: existing symbolic links on the way
        // must stay inside the work directory.
        let shown = Path::new(&dest_rel).join(&entry.rel);
        let shown = shown.to_string_lossy();
        let target = ctx.path(&shown)?;
        if ft.is_dir() {
            match fs::metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(StepError::terminal(format!(
                        "failed to copy: {shown:?} exists and is not a directory"
                    ))
                    .into());
                }
                Err(_) => fsutil::create_dirs(&target, 0o750)
                    .map_err(|e| WalkError::Step(fsutil::io_error("cannot create", &shown, e)))?,
            }
            dir_modes.push((target, mode_bits(&entry.meta)));
            Ok(true)
        } else {
            copy_file(&entry.abs, &target, &entry.meta)
                .map_err(|e| WalkError::Step(fsutil::io_error("cannot copy to", &shown, e)))?;
            Ok(false)
        }
    })
    .map_err(WalkError::into_step_error)?;
    for (dir, mode) in dir_modes.into_iter().rev() {
        fsutil::set_dir_mode(&dir, mode).map_err(|e| {
            fsutil::io_error("cannot set permissions of", &fsutil::rel(ctx, &dir), e)
        })?;
    }
    fsutil::set_dir_mode(dest, root_mode)
        .map_err(|e| fsutil::io_error("cannot set permissions of", &cfg.out_path, e))?;
    Ok(())
}

/// Copies one regular file atomically, keeping its permission bits.
fn copy_file(src: &Path, dest: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if dest.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the destination is a directory",
        ));
    }
    if let Some(parent) = dest.parent() {
        fsutil::create_dirs(parent, 0o750)?;
    }
    let mut input = File::open(src)?;
    fsutil::atomic_write(dest, Some(mode_bits(meta)), false, |out, _| {
        io::copy(&mut input, out).map(|_| ())
    })
}

fn mode_bits(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0o644
    }
}
