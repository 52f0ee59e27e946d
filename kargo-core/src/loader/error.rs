//! Where a resource or a problem is, and the errors a manifest set reports.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a resource (or an error) is: file, document and, when known, line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// The file, as given (for [`ManifestSet::load_dir`](super::ManifestSet::load_dir): the
    /// directory joined with the file's relative path).
    pub file: PathBuf,
    /// The 1-based index of the YAML document in the file (0: the file as a whole).
    pub document: usize,
    /// The 1-based line, absolute within the file.
    pub line: Option<usize>,
    /// The 1-based column.
    pub column: Option<usize>,
}

impl SourceLocation {
    pub(super) fn file(file: &Path) -> Self {
        SourceLocation {
            file: file.to_path_buf(),
            document: 0,
            line: None,
            column: None,
        }
    }

    pub(super) fn at(&self, pos: Option<(usize, usize)>) -> Self {
        SourceLocation {
            file: self.file.clone(),
            document: self.document,
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
        }
    }
}

impl fmt::Display for SourceLocation {
    /// `file:line:col (document N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.document > 0 {
            write!(f, " (document {})", self.document)?;
        }
        Ok(())
    }
}

/// One problem in a manifest set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// Where the problem is.
    pub location: SourceLocation,
    /// The resource, e.g. `Stage kargo-demo/dev`, when the document names one.
    pub resource: Option<String>,
    /// The field path, e.g. `spec.promotionTemplate.spec.steps[2].task.name` (empty when
    /// the problem is the document or file as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    /// `file:line:col: document N: Stage kargo-demo/dev: spec.x.y: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = &self.location;
        write!(f, "{}", loc.file.display())?;
        if let Some(line) = loc.line {
            write!(f, ":{line}")?;
            if let Some(col) = loc.column {
                write!(f, ":{col}")?;
            }
        }
        if loc.document > 0 {
            write!(f, ": document {}", loc.document)?;
        }
        if let Some(resource) = &self.resource {
            write!(f, ": {resource}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Something that loaded but deserves a look (a repeated key, a deprecated field): the
/// same parts as an error: place, resource, field path, message.
pub type ManifestWarning = ManifestError;

/// Every problem found while loading a manifest set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl ManifestErrors {
    /// The errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ManifestErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

impl<'a> IntoIterator for &'a ManifestErrors {
    type Item = &'a ManifestError;
    type IntoIter = std::slice::Iter<'a, ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
