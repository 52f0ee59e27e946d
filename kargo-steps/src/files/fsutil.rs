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

/// Sets permission bits (a no-op where there are none; Unix code uses handles instead).
#[cfg(not(unix))]
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let _ = (path, mode);
    Ok(())
}

/// Writes `target` atomically: the content goes to a temporary file in the same directory
/// which is renamed over `target` only once complete, so an error leaves `target` as it
/// was (and no temporary file behind). `write` receives the file and its temporary path.
/// `mode` sets the permission bits; `durable` syncs the data to disk before the rename.
///
/// On Unix the parent directory is opened component by component without following
/// symbolic links (see [`nofollow`]), and the temporary file is created and renamed
/// relative to that directory handle, so a directory on the way that is swapped for a
/// symbolic link after the caller checked the path makes the write fail instead of
/// landing outside the work directory. `target` must therefore be a resolved path (as
/// returned by the sandbox) without symbolic links in it.
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
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir_fd = nofollow::open_dir(dir, None)?;
        let (tmp_name, mut file) = nofollow::create_temp(&dir_fd, name)?;
        let tmp_path = dir.join(&tmp_name);
        let result = (|| -> Result<T, E> {
            let value = write(&mut file, &tmp_path)?;
            file.flush()?;
            if let Some(mode) = mode {
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            if durable {
                file.sync_all()?;
            }
            drop(file);
            nofollow::rename(&dir_fd, &tmp_name, name)?;
            Ok(value)
        })();
        if result.is_err() {
            nofollow::unlink_quietly(&dir_fd, &tmp_name);
        }
        result
    }
    #[cfg(not(unix))]
    {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
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

/// The sandbox's own error for a path [`kargo_core::workdir::lexical_components`] refused.
pub(crate) fn refused(ctx: &StepContext, path: &str) -> StepError {
    match ctx.path(path) {
        Err(e) => e,
        Ok(_) => StepError::terminal(format!("path {path:?} is not allowed")),
    }
}

/// Creates `dir` and its missing parents with `mode` (before the umask). On Unix no
/// symbolic link is followed on the way (see [`nofollow::open_dir`]): `dir` must be a
/// resolved path.
pub(crate) fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        nofollow::open_dir(dir, Some(mode)).map(drop)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        fs::create_dir_all(dir)
    }
}

/// Sets the permission bits of the directory `dir`. On Unix its parent is opened without
/// following links and the directory itself with `O_NOFOLLOW`, so a link swapped in
/// cannot redirect the change.
pub(crate) fn set_dir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        let (parent, name) = split(dir)?;
        let parent_fd = nofollow::open_dir(parent, None)?;
        nofollow::set_dir_mode(&parent_fd, name, mode)
    }
    #[cfg(not(unix))]
    {
        set_mode(dir, mode)
    }
}

/// Creates the new file `path` (failing if anything, even a dangling symbolic link, is
/// there) with `mode`, opening its directory without following symbolic links on Unix.
pub(crate) fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    #[cfg(unix)]
    {
        let (dir, name) = split(path)?;
        let dir_fd = nofollow::open_dir(dir, None)?;
        nofollow::create_new(&dir_fd, name, mode)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    }
}

/// Removes a file, a symbolic link (as a link) or a directory with its contents; already
/// gone is fine. On Unix the parent is opened without following symbolic links and the
/// removal works on directory handles, so a directory swapped for a symbolic link while
/// the step runs cannot redirect the removal outside the work directory.
pub(crate) fn remove_all(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let (dir, name) = split(path)?;
        let dir_fd = match nofollow::open_dir(dir, None) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        nofollow::remove_entry(&dir_fd, name)
    }
    #[cfg(not(unix))]
    {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let result = if meta.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// A directory created next to where its contents will go (`.<prefix>-<unique>` in
/// `parent`), filled, then swapped into place with [`StagingDir::install`]; dropped before
/// that, it is removed with its contents. On Unix `parent` is opened without following
/// symbolic links and the creation, swap and removal work on its handle, so swapping a
/// directory on the way for a link cannot move any of it outside the work directory.
pub(crate) struct StagingDir {
    #[cfg(unix)]
    dir_fd: std::os::fd::OwnedFd,
    parent: PathBuf,
    name: std::ffi::OsString,
    armed: bool,
}

impl StagingDir {
    /// Creates the staging directory (mode 0700) in the existing directory `parent`.
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        #[cfg(unix)]
        {
            let dir_fd = nofollow::open_dir(parent, None)?;
            let name = nofollow::create_temp_dir(&dir_fd, prefix)?;
            Ok(Self {
                dir_fd,
                parent: parent.to_path_buf(),
                name,
                armed: true,
            })
        }
        #[cfg(not(unix))]
        {
            let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
            let path = dir.keep();
            Ok(Self {
                parent: parent.to_path_buf(),
                name: path.file_name().map(ToOwned::to_owned).unwrap_or_default(),
                armed: true,
            })
        }
    }

    /// The staging directory's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.parent.join(&self.name)
    }

    /// Sets the staging directory's permission bits (through a handle on it, never a link).
    pub(crate) fn set_mode(&self, bits: u32) -> io::Result<()> {
        #[cfg(unix)]
        {
            nofollow::set_dir_mode(&self.dir_fd, &self.name, bits)
        }
        #[cfg(not(unix))]
        {
            set_mode(&self.path(), bits)
        }
    }

    /// Moves the staging directory to `name` in the same parent. An existing entry there
    /// is moved aside first and removed only once the new one is in place (put back if
    /// the move fails).
    pub(crate) fn install(mut self, name: &std::ffi::OsStr) -> io::Result<()> {
        #[cfg(unix)]
        {
            let exists = nofollow::exists(&self.dir_fd, name)?;
            if !exists {
                nofollow::rename(&self.dir_fd, &self.name, name)?;
                self.armed = false;
                return Ok(());
            }
            let old = nofollow::unique_name(name, "old");
            nofollow::rename(&self.dir_fd, name, &old)?;
            if let Err(e) = nofollow::rename(&self.dir_fd, &self.name, name) {
                let _ = nofollow::rename(&self.dir_fd, &old, name);
                return Err(e);
            }
            self.armed = false;
            nofollow::remove_entry(&self.dir_fd, &old)
        }
        #[cfg(not(unix))]
        {
            let target = self.parent.join(name);
            let staging = self.path();
            if fs::symlink_metadata(&target).is_ok() {
                let old = self.parent.join(format!(".{}.old", name.to_string_lossy()));
                fs::rename(&target, &old)?;
                if let Err(e) = fs::rename(&staging, &target) {
                    let _ = fs::rename(&old, &target);
                    return Err(e);
                }
                self.armed = false;
                fs::remove_dir_all(&old)
            } else {
                fs::rename(&staging, &target)?;
                self.armed = false;
                Ok(())
            }
        }
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        #[cfg(unix)]
        let _ = nofollow::remove_entry(&self.dir_fd, &self.name);
        #[cfg(not(unix))]
        let _ = fs::remove_dir_all(self.path());
    }
}

/// File-system operations relative to directory handles that never follow symbolic links
/// (shared with kargo-git: [`kargo_fs::nofollow`]).
///
/// The sandbox ([`StepContext::path`]) checks a path and returns it with its symbolic
/// links resolved; using that string later would follow whatever is on disk by then. The
/// helpers above open every directory component with `O_NOFOLLOW` and work relative to the
/// final directory's handle, so a component that has become a link (or a file) since the
/// check makes the operation fail with an error naming it.
#[cfg(unix)]
pub(crate) use kargo_fs::nofollow;
#[cfg(unix)]
use kargo_fs::nofollow::split;

/// The file `path` (the `field` of a step's config) names in the work directory, checked
/// before anything is written: inside the work directory and not the directory itself, no
/// `.git` component, no symbolic link on the way.
pub(crate) fn file_target(
    ctx: &StepContext,
    field: &str,
    path: &str,
) -> Result<PathBuf, StepError> {
    let Ok(parts) = kargo_core::workdir::lexical_components(path) else {
        return Err(refused(ctx, path).context(field));
    };
    if parts.is_empty() {
        return Err(StepError::invalid_config(
            field,
            format!("{path:?} names the work directory, not a file"),
        ));
    }
    if parts
        .iter()
        .any(|c| c.to_string_lossy().eq_ignore_ascii_case(".git"))
    {
        return Err(StepError::terminal(format!(
            "{field} {path:?}: writing into a .git directory is forbidden"
        )));
    }
    let target = ctx.path(path)?;
    let expected: PathBuf = ctx
        .work_dir()
        .root()
        .join(parts.iter().collect::<PathBuf>());
    if target != expected {
        return Err(StepError::terminal(format!(
            "{field} {path:?} resolves to a different path {:?} (symlinks are forbidden)",
            rel(ctx, &target)
        )));
    }
    Ok(target)
}
