//! The file steps: `copy`, `delete`, `file-write`, `tar` and `untar`.
//!
//! Every configured path goes through the work directory's sandbox
//! ([`StepContext::path`](kargo_core::step::StepContext::path)): absolute paths, `..`
//! escapes and symbolic links leading out of the work directory are errors naming the
//! path. Single files are written atomically (a temporary file in the same directory,
//! renamed into place).

mod archive;
mod copy;
mod delete;
pub(crate) mod fsutil;
#[cfg(any(feature = "http", feature = "oci"))]
pub(crate) mod out_file;
mod write;

pub use archive::{ArchiveError, ArchiveLimits, Tar, TarConfig, Untar, UntarConfig};
pub use copy::{CopyConfig, FileCopy};
pub use delete::{DeleteConfig, FileDelete};
pub use write::{DEFAULT_FILE_WRITE_PERMISSIONS, FileWrite, FileWriteConfig};
