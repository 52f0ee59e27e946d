//! The promotion work directory: a sandbox every step path is resolved in.
//!
//! Steps receive paths from user-written configuration (`path: ./overlays/dev/values.yaml`).
//! [`WorkDir::resolve`] turns such a path into a real path that is guaranteed to lie inside
//! the work directory at the time of the call: absolute paths, `..` components that climb
//! out of the root, NUL bytes and symbolic links whose target lies outside the root are all
//! rejected with a [`PathError`] that names the offending path.
//!
//! `..` inside the tree is allowed as long as the path never leaves the root lexically
//! (`a/../b` is `b`; `../b` is an error). Symbolic links inside the tree are followed (up to
//! 40 hops) and accepted when they stay inside the root.

use std::ffi::OsString;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Maximum number of symbolic links followed while resolving one path.
const MAX_SYMLINK_HOPS: usize = 40;

/// Why a step path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?}: {reason}")]
pub struct PathError {
    /// The path as the step configuration gave it.
    pub path: String,
    /// What is wrong with it.
    pub reason: PathErrorReason,
}

/// The reasons a path is refused by the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathErrorReason {
    /// The path is absolute; step paths are relative to the work directory.
    Absolute,
    /// The path is empty.
    Empty,
    /// The path contains a NUL byte.
    NulByte,
    /// A `..` component climbs out of the work directory.
    EscapesRoot,
    /// A symbolic link in the path leads outside the work directory.
    SymlinkEscape {
        /// The link, relative to the work directory.
        link: String,
    },
    /// More than 40 symbolic links were followed.
    TooManySymlinks,
    /// The file system answered with an error while the path was being checked.
    Io(String),
}

impl fmt::Display for PathErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absolute => f.write_str(
                "absolute paths are not allowed; expected a path relative to the work directory",
            ),
            Self::Empty => f.write_str("the path is empty"),
            Self::NulByte => f.write_str("the path contains a NUL byte"),
            Self::EscapesRoot => f.write_str("`..` leads outside the work directory"),
            Self::SymlinkEscape { link } => {
                write!(f, "symbolic link {link:?} leads outside the work directory")
            }
            Self::TooManySymlinks => f.write_str("too many levels of symbolic links"),
            Self::Io(e) => write!(f, "cannot inspect path: {e}"),
        }
    }
}

/// The lexical part of [`WorkDir::resolve`]: the components of a step path relative to
/// the work directory after folding `.` and `..`, without touching the disk. Refused: an
/// empty path, a NUL byte, an absolute path, and a `..` that climbs above the root.
pub fn lexical_components(path: &str) -> Result<Vec<OsString>, PathErrorReason> {
    if path.is_empty() {
        return Err(PathErrorReason::Empty);
    }
    if path.contains('\0') {
        return Err(PathErrorReason::NulByte);
    }
    let p = Path::new(path);
    if p.is_absolute() || p.has_root() {
        return Err(PathErrorReason::Absolute);
    }
    let mut out: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(PathErrorReason::EscapesRoot);
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(PathErrorReason::Absolute),
        }
    }
    Ok(out)
}

/// Something that puts files on disk when they are first asked for: a lazily checked-out
/// git work tree, for instance. See [`WorkDir::mount`].
pub trait Materializer: Send + Sync {
    /// Makes `path` (absolute, inside the mount) available on disk: a file is written, a
    /// directory is written with everything below it.
    fn materialize(&self, path: &Path) -> std::io::Result<()>;
}

type Mounts = Arc<RwLock<Vec<(PathBuf, Arc<dyn Materializer>)>>>;

/// A directory that confines the paths steps read and write.
///
/// Clones share their mounts, so a mount made by one step (`git-clone`) serves every later
/// step of the promotion.
#[derive(Clone)]
pub struct WorkDir {
    root: PathBuf,
    mounts: Mounts,
}

impl fmt::Debug for WorkDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkDir")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl PartialEq for WorkDir {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for WorkDir {}

impl WorkDir {
    /// Opens `root` (which must exist) as a work directory. The root is canonicalised, so a
    /// work directory reached through a symbolic link (e.g. `/tmp` on macOS) works.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = root.as_ref().canonicalize()?;
        Ok(Self {
            root,
            mounts: Arc::default(),
        })
    }

    /// Registers `materializer` for the directory `dir` (a path inside the work directory):
    /// from now on, resolving a path inside `dir` first asks it to put that path on disk,
    /// and resolving `dir` or one of its ancestors asks for the whole directory.
    pub fn mount(&self, dir: &Path, materializer: Arc<dyn Materializer>) {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            self.root.join(dir)
        };
        if let Ok(mut m) = self.mounts.write() {
            m.retain(|(d, _)| d != &dir);
            m.push((dir, materializer));
        }
    }

    /// Removes the mount at `dir`.
    pub fn unmount(&self, dir: &Path) {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            self.root.join(dir)
        };
        if let Ok(mut m) = self.mounts.write() {
            m.retain(|(d, _)| d != &dir);
        }
    }

    fn materialize(&self, lexical: &Path, original: &str) -> Result<(), PathError> {
        let Ok(mounts) = self.mounts.read() else {
            return Ok(());
        };
        for (dir, m) in mounts.iter() {
            let target = if lexical.starts_with(dir) {
                lexical.to_path_buf()
            } else if dir.starts_with(lexical) {
                dir.clone()
            } else {
                continue;
            };
            m.materialize(&target).map_err(|e| PathError {
                path: original.to_owned(),
                reason: PathErrorReason::Io(e.to_string()),
            })?;
        }
        Ok(())
    }

    /// The canonical root of the work directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a step-supplied relative path to a path inside the work directory.
    ///
    /// The returned path has every symbolic link of its existing prefix resolved, so what is
    /// opened is what was checked. Parts of the path that do not exist yet are appended as
    /// given (after `..` folding).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, PathError> {
        let err = |reason| PathError {
            path: path.to_owned(),
            reason,
        };
        let pending = lexical_components(path).map_err(err)?;
        if self.mounts.read().map(|m| !m.is_empty()).unwrap_or(false) {
            let mut lexical = self.root.clone();
            lexical.extend(&pending);
            self.materialize(&lexical, path)?;
        }
        self.follow(pending, path)
    }

    /// Walks `components` from the root, following symbolic links and checking that every
    /// intermediate location stays inside the root.
    fn follow(&self, components: Vec<OsString>, original: &str) -> Result<PathBuf, PathError> {
        let err = |reason| PathError {
            path: original.to_owned(),
            reason,
        };
        // Components still to visit, in reverse order so `pop` yields the next one.
        let mut todo: Vec<OsString> = components.into_iter().rev().collect();
        let mut current = self.root.clone();
        let mut hops = 0usize;
        let mut exists = true;
        let mut last_link = String::new();
        while let Some(comp) = todo.pop() {
            if comp == ".." {
                // Only produced by symlink targets: fold against the current location.
                if current == self.root || !current.pop() || !current.starts_with(&self.root) {
                    return Err(err(PathErrorReason::SymlinkEscape { link: last_link }));
                }
                continue;
            }
            if comp == "." {
                continue;
            }
            let next = current.join(&comp);
            if !exists {
                current = next;
                continue;
            }
            match std::fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(err(PathErrorReason::TooManySymlinks));
                    }
                    let target = std::fs::read_link(&next)
                        .map_err(|e| err(PathErrorReason::Io(e.to_string())))?;
                    let link = self.display_rel(&next);
                    last_link.clone_from(&link);
                    if target.is_absolute() {
                        // Restart from the filesystem root, but only if the target is inside.
                        let mut rest: Vec<OsString> = Vec::new();
                        let mut base = PathBuf::from("/");
                        for c in target.components() {
                            match c {
                                Component::Normal(s) => rest.push(s.to_owned()),
                                Component::ParentDir => rest.push("..".into()),
                                Component::CurDir => {}
                                Component::RootDir => {}
                                Component::Prefix(p) => base = PathBuf::from(p.as_os_str()),
                            }
                        }
                        // Fold the absolute target lexically and require the root prefix.
                        let mut folded = base;
                        for c in rest {
                            if c == ".." {
                                folded.pop();
                            } else {
                                folded.push(c);
                            }
                        }
                        let Ok(inside) = folded.strip_prefix(&self.root) else {
                            return Err(err(PathErrorReason::SymlinkEscape { link }));
                        };
                        let inside: Vec<OsString> = inside
                            .components()
                            .map(|c| c.as_os_str().to_owned())
                            .collect();
                        current = self.root.clone();
                        for c in inside.into_iter().rev() {
                            todo.push(c);
                        }
                    } else {
                        let mut parts: Vec<OsString> = Vec::new();
                        for c in target.components() {
                            match c {
                                Component::Normal(s) => parts.push(s.to_owned()),
                                Component::ParentDir => parts.push("..".into()),
                                _ => {}
                            }
                        }
                        for c in parts.into_iter().rev() {
                            todo.push(c);
                        }
                        // `current` stays the link's parent; the target is relative to it.
                    }
                }
                Ok(_) => current = next,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    exists = false;
                    current = next;
                }
                Err(e) => return Err(err(PathErrorReason::Io(e.to_string()))),
            }
            if !current.starts_with(&self.root) {
                return Err(err(PathErrorReason::EscapesRoot));
            }
        }
        Ok(current)
    }

    fn display_rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, WorkDir) {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f.yaml"), "x: 1\n").unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let wd = WorkDir::new(dir.path()).unwrap();
        (dir, outside, wd)
    }

    #[test]
    fn plain_relative_paths_resolve_inside() {
        let (_d, _o, wd) = setup();
        assert_eq!(
            wd.resolve("a/b/f.yaml").unwrap(),
            wd.root().join("a/b/f.yaml")
        );
        assert_eq!(wd.resolve("./a/./b").unwrap(), wd.root().join("a/b"));
        assert_eq!(wd.resolve("a/../a/b").unwrap(), wd.root().join("a/b"));
        assert_eq!(
            wd.resolve("new/dir/file").unwrap(),
            wd.root().join("new/dir/file")
        );
        assert_eq!(wd.resolve(".").unwrap(), wd.root());
    }

    #[test]
    fn absolute_paths_are_rejected() {
        let (_d, _o, wd) = setup();
        let e = wd.resolve("/etc/passwd").unwrap_err();
        assert_eq!(e.reason, PathErrorReason::Absolute);
        assert!(e.to_string().contains("/etc/passwd"), "{e}");
        let root_abs = wd.root().join("a").to_string_lossy().into_owned();
        assert_eq!(
            wd.resolve(&root_abs).unwrap_err().reason,
            PathErrorReason::Absolute
        );
    }

    #[test]
    fn dotdot_escapes_are_rejected() {
        let (_d, _o, wd) = setup();
        for p in ["..", "../x", "a/../../x", "a/b/../../../etc", "./.."] {
            assert_eq!(
                wd.resolve(p).unwrap_err().reason,
                PathErrorReason::EscapesRoot,
                "{p}"
            );
        }
    }

    #[test]
    fn empty_and_nul_are_rejected() {
        let (_d, _o, wd) = setup();
        assert_eq!(wd.resolve("").unwrap_err().reason, PathErrorReason::Empty);
        assert_eq!(
            wd.resolve("a\0b").unwrap_err().reason,
            PathErrorReason::NulByte
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_leading_out_are_rejected() {
        let (d, o, wd) = setup();
        std::os::unix::fs::symlink(o.path(), d.path().join("out")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(o.path().join("secret"), d.path().join("a/leak")).unwrap();
        // dangling link to outside
        std::os::unix::fs::symlink("/nonexistent/x", d.path().join("dangling")).unwrap();
        for p in [
            "out/secret",
            "out",
            "a/b/up/x",
            "a/leak",
            "dangling",
            "dangling/deeper",
        ] {
            let e = wd.resolve(p).unwrap_err();
            assert!(
                matches!(e.reason, PathErrorReason::SymlinkEscape { .. }),
                "{p}: {e:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_are_followed() {
        let (d, _o, wd) = setup();
        std::os::unix::fs::symlink("a/b", d.path().join("short")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("abs_inside")).unwrap();
        std::os::unix::fs::symlink("../a/b/f.yaml", d.path().join("a/rel")).unwrap();
        assert_eq!(
            wd.resolve("short/f.yaml").unwrap(),
            wd.root().join("a/b/f.yaml")
        );
        assert_eq!(wd.resolve("abs_inside/b").unwrap(), wd.root().join("a/b"));
        assert_eq!(wd.resolve("a/rel").unwrap(), wd.root().join("a/b/f.yaml"));
    }

    #[test]
    fn mounts_materialize_on_resolve() {
        struct Rec(std::sync::Mutex<Vec<PathBuf>>);
        impl Materializer for Rec {
            fn materialize(&self, path: &Path) -> std::io::Result<()> {
                self.0.lock().unwrap().push(path.to_path_buf());
                Ok(())
            }
        }
        let (_d, _o, wd) = setup();
        let rec = Arc::new(Rec(std::sync::Mutex::new(Vec::new())));
        wd.mount(Path::new("repo"), rec.clone());
        let clone = wd.clone();
        clone.resolve("repo/apps/x.yaml").unwrap();
        clone.resolve(".").unwrap();
        clone.resolve("a/b").unwrap();
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![wd.root().join("repo/apps/x.yaml"), wd.root().join("repo")]
        );
        wd.unmount(Path::new("repo"));
        wd.resolve("repo/y").unwrap();
        assert_eq!(rec.0.lock().unwrap().len(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_bounded() {
        let (d, _o, wd) = setup();
        std::os::unix::fs::symlink("loop2", d.path().join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", d.path().join("loop2")).unwrap();
        assert_eq!(
            wd.resolve("loop1/x").unwrap_err().reason,
            PathErrorReason::TooManySymlinks
        );
    }
}
