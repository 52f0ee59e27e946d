//! Errors of kargo-git. Messages never contain credentials: URLs are redacted and
//! process output is scrubbed of the secrets that were handed to the process.

use std::fmt;

/// The class of a [`GitError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitErrorKind {
    /// The server refused the credentials (or none were given where some are needed).
    Unauthorized,
    /// The repository, branch, tag or path does not exist.
    NotFound,
    /// The push was rejected because the remote branch moved (retryable after a fetch).
    NonFastForward,
    /// Our changes and the remote's changes touch the same content.
    Conflict,
    /// A network or server error.
    Network,
    /// Bad input: an invalid URL, revision, path or option.
    Invalid,
    /// A local file-system error.
    Io,
    /// The operation was interrupted through [`crate::Git::interrupt_flag`].
    Interrupted,
    /// Anything else gix or git reported.
    Other,
}

/// An error from a git operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GitError {
    /// The kind.
    pub kind: GitErrorKind,
    /// What was being done, e.g. `fetch https://git.example.com/acme/gitops.git`.
    pub operation: String,
    /// What went wrong.
    pub message: String,
    /// For conflicts: the files both sides changed.
    pub conflicts: Vec<String>,
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)?;
        if !self.conflicts.is_empty() {
            write!(f, " (conflicting files: {})", self.conflicts.join(", "))?;
        }
        Ok(())
    }
}

impl GitError {
    /// An error of `kind` during `operation`.
    pub fn new(
        kind: GitErrorKind,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation: operation.into(),
            message: message.into(),
            conflicts: Vec::new(),
        }
    }

    /// Whether retrying after a fetch can help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            GitErrorKind::NonFastForward | GitErrorKind::Network
        )
    }

    pub(crate) fn io(operation: impl Into<String>, e: &std::io::Error) -> Self {
        Self::new(GitErrorKind::Io, operation, e.to_string())
    }

    /// Classifies an error message from gix or git.
    pub(crate) fn classify(operation: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let lower = message.to_lowercase();
        let kind = if lower.contains("401")
            || lower.contains("403")
            || lower.contains("authentication")
            || lower.contains("unauthorized")
            || lower.contains("permission denied")
            || lower.contains("credentials")
            || lower.contains("could not read username")
            || lower.contains("could not read password")
        {
            GitErrorKind::Unauthorized
        } else if lower.contains("not found")
            || lower.contains("does not exist")
            || lower.contains("does not appear to be a git repository")
            || lower.contains("is a valid git directory")
            || lower.contains("couldn't find remote ref")
            || lower.contains("matched any of")
            || lower.contains("404")
        {
            GitErrorKind::NotFound
        } else if lower.contains("connection refused")
            || lower.contains("timed out")
            || lower.contains("connection reset")
            || lower.contains("could not resolve host")
            || lower.contains("broken pipe")
        {
            GitErrorKind::Network
        } else {
            GitErrorKind::Other
        };
        Self::new(kind, operation, message)
    }
}

/// Shorthand.
pub type Result<T, E = GitError> = std::result::Result<T, E>;
