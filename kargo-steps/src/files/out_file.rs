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
    let target = fsutil::file_target(ctx, "outPath", out_path)?;
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

/// What the download side sends to the writing thread.
enum Chunk {
    /// More content.
    Data(Vec<u8>),
    /// The content is complete: install the file.
    Done,
}

/// The file being written from async code: chunks go through a channel to a blocking
/// thread that writes a temporary file beside the target and renames it into place only
/// after [`StreamingFile::finish`]; dropping it unfinished (an error, an oversized body, a
/// cancellation) leaves no file behind and the old one, if any, untouched.
pub(crate) struct StreamingFile {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    task: tokio::task::JoinHandle<Result<(), StepError>>,
}

impl StreamingFile {
    /// Sends one chunk.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), StepError> {
        if self.tx.send(Chunk::Data(chunk.to_vec())).await.is_err() {
            // The writer stopped: its error says why.
            return Err(self.error().await);
        }
        Ok(())
    }

    async fn error(&mut self) -> StepError {
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => StepError::terminal("the file writer stopped early"),
            Err(e) => StepError::terminal(format!("the file writer failed: {e}")),
        }
    }

    /// Gives up: the temporary file is removed (awaited, so nothing is left once this
    /// returns) and the target stays as it was.
    pub(crate) async fn abort(self) {
        let StreamingFile { tx, task } = self;
        drop(tx);
        let _ = task.await;
    }

    /// Completes the file (renamed into place).
    pub(crate) async fn finish(mut self) -> Result<(), StepError> {
        if self.tx.send(Chunk::Done).await.is_err() {
            return Err(self.error().await);
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(StepError::terminal(format!("the file writer failed: {e}"))),
        }
    }
}

impl OutFile {
    /// Starts writing the file from a stream of chunks (see [`StreamingFile`]); mode
    /// `0600`.
    pub(crate) fn stream(&self) -> StreamingFile {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(8);
        let out = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            fsutil::atomic_write(&out.target, Some(DOWNLOAD_FILE_MODE), true, |f, _| {
                loop {
                    match rx.blocking_recv() {
                        Some(Chunk::Data(d)) => f.write_all(&d)?,
                        Some(Chunk::Done) => return Ok(()),
                        None => {
                            return Err(std::io::Error::other("the download did not complete"));
                        }
                    }
                }
            })
            .map_err(|e| fsutil::io_error("error writing file", &out.shown, e))
        });
        StreamingFile { tx, task }
    }
}
