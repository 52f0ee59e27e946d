//! File-system helpers shared by the file steps: atomic writes, a non-following directory
//! walk, gitignore-style matchers and running blocking work off the async executor.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use kargo_core::step::{StepContext, StepError, StepErrorKind};

/// Runs `f` on tokio's blocking pool when a runtime is available (inline otherwise), so
/// large copies and archives do not stall the executor.
pub(crate) async fn run_blocking<T, F>(f: F) -> Result<T, StepError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StepError> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| StepError::terminal(format!("the step's worker task failed: {e}")))?,
        Err(_) => f(),
    }
}

/// Fails with a `Cancelled` error once the promotion is aborted.
pub(crate) fn check_cancelled(ctx: &StepContext) -> Result<(), StepError> {
    if ctx.cancellation().is_cancelled() {
        return Err(StepError::new(
            StepErrorKind::Cancelled,
            "the step was cancelled",
        ));
    }
    Ok(())
}

/// `path` relative to the work directory, for messages (never the absolute location).
pub(crate) fn rel(ctx: &StepContext, path: &Path) -> String {
    let root = ctx.work_dir().root();
    match path.strip_prefix(root) {
        Ok(p) if p.as_os_str().is_empty() => ".".to_owned(),
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// A terminal error for an I/O failure on `what` (a relative path or a description).
pub(crate) fn io_error(action: &str, what: &str, e: io::Error) -> StepError {
    StepError::terminal(format!("{action} {what:?}: {e}")).with_source(e)
}

/// The permission bits of an existing file (to keep them when the file is rewritten).
pub(crate) fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Sets permission bits (a no-op where there are none).
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Writes `target` atomically: the content goes to a temporary file in the same directory
/// which is renamed over `target` only once complete, so an error leaves `target` as it
/// was (and no temporary file behind). `write` receives the file and its temporary path.
/// `mode` sets the permission bits; `durable` syncs the data to disk before the rename.
pub(crate) fn atomic_write<T, E, F>(
    target: &Path,
    mode: Option<u32>,
    durable: bool,
    write: F,
) -> Result<T, E>
where
    F: FnOnce(&mut File, &Path) -> Result<T, E>,
    E: From<io::Error>,
{
    let dir = target.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no parent directory",
        )
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let tmp_path = tmp.path().to_path_buf();
    let value = write(tmp.as_file_mut(), &tmp_path)?;
    tmp.as_file_mut().flush()?;
    if let Some(mode) = mode {
        set_mode(&tmp_path, mode)?;
    }
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(value)
}

/// Writes `bytes` to `target` atomically, keeping the permissions of the file it replaces
/// (or `default_mode` for a new file).
pub(crate) fn replace_file(target: &Path, bytes: &[u8], default_mode: u32) -> io::Result<()> {
    let mode = mode_of(target).unwrap_or(default_mode);
    atomic_write(target, Some(mode), true, |f, _| f.write_all(bytes))
}

/// A gitignore-style matcher over paths relative to a root.
pub(crate) struct IgnoreRules {
    matcher: Gitignore,
}

impl IgnoreRules {
    /// Builds the matcher from `rules` (one pattern a line; blank lines and lines starting
    /// with `#` are skipped), plus `.git` first when `ignore_git` is set.
    pub(crate) fn new(rules: &str, ignore_git: bool) -> Result<Self, StepError> {
        // The root only anchors patterns; paths are matched relative to it.
        let mut builder = GitignoreBuilder::new("/");
        if ignore_git {
            builder
                .add_line(None, ".git")
                .map_err(|e| StepError::invalid_config("ignore", e.to_string()))?;
        }
        for line in rules.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            builder.add_line(None, line.trim()).map_err(|e| {
                StepError::invalid_config("ignore", format!("pattern {line:?}: {e}"))
            })?;
        }
        let matcher = builder
            .build()
            .map_err(|e| StepError::invalid_config("ignore", e.to_string()))?;
        Ok(Self { matcher })
    }

    /// Whether the relative path `rel` (or one of its parent directories) is ignored.
    pub(crate) fn is_ignored(&self, rel: &Path, is_dir: bool) -> bool {
        if rel.as_os_str().is_empty() || rel.has_root() {
            return false;
        }
        self.matcher
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }
}

/// One entry found by [`walk`].
pub(crate) struct WalkEntry {
    /// The path relative to the walk's root.
    pub(crate) rel: PathBuf,
    /// The absolute path.
    pub(crate) abs: PathBuf,
    /// The entry's own metadata (symbolic links are not followed).
    pub(crate) meta: fs::Metadata,
}

/// Walks the tree under `root` depth-first (pre-order, names in byte order), never
/// following symbolic links, and calls `visit` for every entry below the root. `visit`
/// returns whether to descend into a directory.
pub(crate) fn walk<F>(root: &Path, mut visit: F) -> Result<(), WalkError>
where
    F: FnMut(WalkEntry) -> Result<bool, WalkError>,
{
    struct Level {
        dir: PathBuf,
        rel: PathBuf,
        names: std::vec::IntoIter<std::ffi::OsString>,
    }
    fn open(dir: PathBuf, rel: PathBuf) -> Result<Level, WalkError> {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| WalkError::Io(rel.clone(), e))?
            .map(|r| r.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| WalkError::Io(rel.clone(), e))?;
        names.sort();
        Ok(Level {
            dir,
            rel,
            names: names.into_iter(),
        })
    }
    let mut stack = vec![open(root.to_path_buf(), PathBuf::new())?];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            stack.pop();
            continue;
        };
        let abs = level.dir.join(&name);
        let rel = level.rel.join(&name);
        let meta = fs::symlink_metadata(&abs).map_err(|e| WalkError::Io(rel.clone(), e))?;
        let is_dir = meta.is_dir();
        let descend = visit(WalkEntry {
            rel: rel.clone(),
            abs: abs.clone(),
            meta,
        })?;
        if is_dir && descend {
            stack.push(open(abs, rel)?);
        }
    }
    Ok(())
}

/// A failure during [`walk`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalkError {
    /// The file system failed on the relative path.
    #[error("cannot read {0:?}: {1}")]
    Io(PathBuf, #[source] io::Error),
    /// The visitor stopped the walk.
    #[error("{0}")]
    Step(StepError),
}

impl From<StepError> for WalkError {
    fn from(e: StepError) -> Self {
        Self::Step(e)
    }
}

impl WalkError {
    /// The step error to report.
    pub(crate) fn into_step_error(self) -> StepError {
        match self {
            Self::Step(e) => e,
            Self::Io(p, e) => io_error("cannot read", &p.to_string_lossy(), e),
        }
    }
}

/// The components of a configured relative path after folding `.` and `..`, or `None` if
/// the path is empty, absolute, holds a NUL byte or climbs above the work directory (the
/// sandbox reports those; see [`StepContext::path`]).
pub(crate) fn lexical_components(path: &str) -> Option<Vec<std::ffi::OsString>> {
    use std::path::Component;
    if path.is_empty() || path.contains('\0') {
        return None;
    }
    let p = Path::new(path);
    if p.has_root() {
        return None;
    }
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The sandbox's own error for a path [`lexical_components`] refused.
pub(crate) fn refused(ctx: &StepContext, path: &str) -> StepError {
    match ctx.path(path) {
        Err(e) => e,
        Ok(_) => StepError::terminal(format!("path {path:?} is not allowed")),
    }
}

/// Creates `dir` and its missing parents with `mode` (before the umask).
pub(crate) fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder.create(dir)
}
