//! Operations relative to directory handles that never follow symbolic links (see the
//! crate documentation).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Flags for walking directories: on Linux `O_PATH`, which needs no read permission.
fn walk_flags() -> OFlags {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let access = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let access = OFlags::RDONLY;
    access | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Flags for a directory whose entries are read or whose mode is changed.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

#[allow(clippy::unnecessary_cast)]
fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode((bits & 0o7777) as rustix::fs::RawMode)
}

/// The error for a component that is a link or not a directory (`ELOOP`, `ENOTDIR`);
/// other errors as they are.
fn component_error(e: Errno, name: &OsStr) -> io::Error {
    if e == Errno::LOOP || e == Errno::NOTDIR {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is a symbolic link or not a directory (it changed after the path was \
                 checked?); refusing to follow it",
                name.to_string_lossy()
            ),
        )
    } else {
        e.into()
    }
}

fn open_component(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, name, walk_flags(), Mode::empty())
}

/// Opens the directory `dir` (absolute, or relative to the current directory) without
/// following any symbolic link on the way, creating missing components with `create`
/// permission bits (before the umask) when given. A `..` component is refused: `dir` must
/// be a resolved path.
///
/// On Linux the handle is an `O_PATH` one: good for the `*at` operations of this module,
/// not for reading entries (see [`children`], which reopens it).
pub fn open_dir(dir: &Path, create: Option<u32>) -> io::Result<OwnedFd> {
    let start = if dir.has_root() { "/" } else { "." };
    let mut fd = rustix::fs::open(start, walk_flags(), Mode::empty())?;
    for c in dir.components() {
        let name = match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path contains `..` (expected a resolved path)",
                ));
            }
        };
        fd = match open_component(&fd, name) {
            Ok(next) => next,
            Err(Errno::NOENT) if create.is_some() => {
                let bits = create.unwrap_or(0o700);
                match rustix::fs::mkdirat(&fd, name, mode(bits)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_component(&fd, name).map_err(|e| component_error(e, name))?
            }
            Err(e) => return Err(component_error(e, name)),
        };
    }
    Ok(fd)
}

/// `path`'s parent directory and file name; an error for `/` or an empty path.
pub fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no parent directory or no file name",
        )),
    }
}

/// A fresh hidden name derived from `name` (`.<name>.<pid>-<n>-<nanos>.<suffix>`).
pub fn unique_name(name: &OsStr, suffix: &str) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    OsString::from(format!(
        ".{}.{}-{n}-{nanos:x}.{suffix}",
        name.to_string_lossy(),
        std::process::id()
    ))
}

/// Sets the permission bits of the directory `name` in `dir` (not following links).
pub fn set_dir_mode(dir: &OwnedFd, name: &OsStr, bits: u32) -> io::Result<()> {
    let fd = rustix::fs::openat(dir, name, read_flags(), Mode::empty())
        .map_err(|e| component_error(e, name))?;
    rustix::fs::fchmod(&fd, mode(bits)).map_err(Into::into)
}

/// Whether `dir` has an entry `name` (a link counts; it is not followed).
pub fn exists(dir: &OwnedFd, name: &OsStr) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates a new directory (mode 0700) named after `prefix` in `dir`; returns its name.
pub fn create_temp_dir(dir: &OwnedFd, prefix: &str) -> io::Result<OsString> {
    let mut attempts = 0;
    loop {
        let name = unique_name(OsStr::new(prefix), "tmp");
        match rustix::fs::mkdirat(dir, &name, mode(0o700)) {
            Ok(()) => return Ok(name),
            Err(Errno::EXIST) if attempts < 100 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates a new temporary file (mode 0600) next to `name` in `dir`; returns its name.
pub fn create_temp(dir: &OwnedFd, name: &OsStr) -> io::Result<(OsString, File)> {
    let mut attempts = 0;
    loop {
        let tmp = unique_name(name, "tmp");
        match create_new(dir, &tmp, 0o600) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the new file `name` in `dir` with `bits` (before the umask), opened for
/// writing; nothing may be there, not even a link (`O_EXCL|O_NOFOLLOW`).
pub fn create_new(dir: &OwnedFd, name: &OsStr, bits: u32) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode(bits),
    )?;
    Ok(File::from(fd))
}

/// Creates the symbolic link `name` in `dir` pointing at `target` (stored as given).
pub fn symlink(dir: &OwnedFd, target: &OsStr, name: &OsStr) -> io::Result<()> {
    rustix::fs::symlinkat(target, dir, name).map_err(Into::into)
}

/// Renames `from` to `to`, both in `dir` (an entry at `to` is replaced, not followed).
pub fn rename(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(dir, from, dir, to).map_err(Into::into)
}

/// Unlinks the file or link `name` of `dir`; already gone is fine.
pub fn unlink(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the file `name` from `dir`, ignoring errors (for cleaning up).
pub fn unlink_quietly(dir: &OwnedFd, name: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
}

/// Removes the file or link `path` relative to its parent's handle (the parent is opened
/// without following links). Unlike [`unlink`], a missing file is an error.
pub fn remove_file(path: &Path) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let fd = open_dir(dir, None)?;
    rustix::fs::unlinkat(&fd, name, AtFlags::empty()).map_err(Into::into)
}

/// The names of the entries of the directory `dir` (without `.` and `..`). `dir` may be
/// any handle of the directory, an `O_PATH` one from [`open_dir`] included.
pub fn children(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let readable = rustix::fs::openat(dir, ".", read_flags(), Mode::empty())?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(&readable)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(out)
}

/// Removes the entry `name` of `dir`: a file or link is unlinked, a directory removed
/// with its contents (never following links). Already gone is fine.
pub fn remove_entry(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return unlink(dir, name);
    }
    let fd = open_component(dir, name).map_err(|e| component_error(e, name))?;
    for child in children(&fd)? {
        remove_entry(&fd, &child)?;
    }
    drop(fd);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes every entry of the directory `root` (a resolved path), keeping `root` itself.
pub fn clear_dir(root: &Path) -> io::Result<()> {
    let fd = open_dir(root, None)?;
    for name in children(&fd)? {
        remove_entry(&fd, &name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_link_on_the_way_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).unwrap();
        assert!(open_dir(&tmp.path().join("real"), None).is_ok());
        let e = open_dir(&tmp.path().join("link/sub"), Some(0o700)).unwrap_err();
        assert!(e.to_string().contains("\"link\""), "{e}");
        assert!(e.to_string().contains("refusing to follow"), "{e}");
        assert!(!outside.path().join("sub").exists());
        let e = open_dir(&tmp.path().join("real/../real"), None).unwrap_err();
        assert!(e.to_string().contains("`..`"), "{e}");
    }

    #[test]
    fn create_write_rename_and_clear() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let fd = open_dir(&tmp.path().join("a/b"), Some(0o750)).unwrap();
        let (tmp_name, file) = create_temp(&fd, OsStr::new("f")).unwrap();
        drop(file);
        rename(&fd, &tmp_name, OsStr::new("f")).unwrap();
        assert!(exists(&fd, OsStr::new("f")).unwrap());
        assert!(create_new(&fd, OsStr::new("f"), 0o600).is_err());
        symlink(&fd, outside.path().as_os_str(), OsStr::new("out")).unwrap();
        let d = create_temp_dir(&fd, "stage").unwrap();
        set_dir_mode(&fd, &d, 0o755).unwrap();
        let mut names = children(&fd).unwrap();
        names.sort();
        assert_eq!(names.len(), 3);
        clear_dir(tmp.path()).unwrap();
        assert!(
            children(&open_dir(tmp.path(), None).unwrap())
                .unwrap()
                .is_empty()
        );
        // The link was removed, not followed.
        assert!(outside.path().join("keep").exists());
        assert!(remove_file(&tmp.path().join("gone")).is_err());
        unlink(&open_dir(tmp.path(), None).unwrap(), OsStr::new("gone")).unwrap();
    }
}
