//! `tar` and `untar`, with Kargo's size caps and strict entry validation.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use async_trait::async_trait;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;
use tar::{EntryType, Header, HeaderMode};

use super::fsutil::{self, IgnoreRules, WalkError};
use crate::json::require_path;

/// Size and count limits of [`Tar`] and [`Untar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// The largest total size of the regular files archived or extracted (Kargo:
    /// 100 MiB).
    pub max_total_bytes: u64,
    /// The largest single regular file archived or extracted (Kargo: 50 MiB).
    pub max_file_bytes: u64,
    /// The most entries (files, directories, links) in one archive (kargo-rs: 100 000).
    pub max_entries: u64,
    /// The most bytes `untar` reads from the uncompressed archive stream, including
    /// headers and the data of entries it skips (kargo-rs: 256 MiB). This bounds the work
    /// a highly compressed archive can cause.
    pub max_stream_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 100 * 1024 * 1024,
            max_file_bytes: 50 * 1024 * 1024,
            max_entries: 100_000,
            max_stream_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Why creating or extracting an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file system or the archive stream failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A regular file is larger than [`ArchiveLimits::max_file_bytes`].
    #[error(
        "file {path:?} size ({size} bytes) exceeds the maximum allowed single file size ({limit} bytes)"
    )]
    FileTooLarge {
        /// The file (relative) or archive entry.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The regular files add up to more than [`ArchiveLimits::max_total_bytes`].
    #[error("total size exceeds the maximum allowed size ({limit} bytes)")]
    TotalTooLarge {
        /// The limit.
        limit: u64,
    },
    /// More than [`ArchiveLimits::max_entries`] entries.
    #[error("more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// The uncompressed stream is longer than [`ArchiveLimits::max_stream_bytes`].
    #[error("the uncompressed archive is larger than {limit} bytes")]
    StreamTooLarge {
        /// The limit.
        limit: u64,
    },
    /// An archive entry that may not be extracted.
    #[error("archive entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's name in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Another step error (cancellation, sandbox).
    #[error("{0}")]
    Step(StepError),
}

impl From<StepError> for ArchiveError {
    fn from(e: StepError) -> Self {
        Self::Step(e)
    }
}

impl From<WalkError> for ArchiveError {
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::Step(s) => Self::Step(s),
            WalkError::Io(p, e) => {
                Self::Io(io::Error::new(e.kind(), format!("{}: {e}", p.display())))
            }
        }
    }
}

impl ArchiveError {
    fn into_step_error(self, context: String) -> StepError {
        match self {
            Self::Step(e) => e.context(context),
            other => StepError::terminal(format!("{context}: {other}")).with_source(other),
        }
    }
}

/// Configuration of [`Tar`].
///
/// ```yaml
/// - uses: tar
///   config:
///     inPath: ./out/manifests        # a directory (its contents) or a single file
///     outPath: ./out/manifests.tgz   # replaced if it exists
///     gzip: true                     # optional, default false
///     ignore: |                      # optional, .gitignore syntax
///       *.tmp
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TarConfig {
    /// The directory (archived as its contents, without a `.` entry) or file (archived
    /// under its base name) to archive, relative to the work directory.
    pub in_path: String,
    /// The archive to write, relative to the work directory. Missing parent directories
    /// are created; an existing file is replaced atomically.
    pub out_path: String,
    /// Paths to leave out, one `.gitignore` pattern per line, relative to `inPath`. When
    /// empty, `.git` is left out (as in Kargo; with patterns, only the patterns apply).
    #[serde(default)]
    pub ignore: String,
    /// Compress the archive with gzip (default false).
    #[serde(default)]
    pub gzip: bool,
}

/// Kargo's `tar` step. Regular files, directories and symbolic links (stored as links,
/// never followed) are archived; other special files are skipped. Caps (see
/// [`ArchiveLimits`]): 50 MiB per file, 100 MiB in total. The archive is written to a
/// temporary file renamed into place, so a failure leaves no partial archive.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tar {
    limits: ArchiveLimits,
}

impl Tar {
    /// The step with Kargo's limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The step with other limits (tests use small ones).
    pub fn with_limits(limits: ArchiveLimits) -> Self {
        Self { limits }
    }
}

#[async_trait]
impl Step for Tar {
    const KIND: &'static str = "tar";
    type Config = TarConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: TarConfig) -> Result<StepOutcome, StepError> {
        require_path("inPath", &cfg.in_path)?;
        require_path("outPath", &cfg.out_path)?;
        let src = ctx.path(&cfg.in_path)?;
        let out = ctx.path(&cfg.out_path)?;
        let rules = if cfg.ignore.trim().is_empty() {
            IgnoreRules::new("", true)?
        } else {
            IgnoreRules::new(&cfg.ignore, false)?
        };
        let limits = self.limits;
        let ctx = ctx.clone();
        fsutil::run_blocking(move || {
            let meta = fs::metadata(&src).map_err(|e| {
                fsutil::io_error(
                    "failed to create the tar archive: cannot read input path",
                    &cfg.in_path,
                    e,
                )
            })?;
            if out.is_dir() {
                return Err(StepError::terminal(format!(
                    "failed to create the tar archive {:?}: it is a directory",
                    cfg.out_path
                )));
            }
            let context = format!("failed to create the tar archive {:?}", cfg.out_path);
            if let Some(parent) = out.parent() {
                fsutil::create_dirs(parent, 0o750).map_err(|e| {
                    fsutil::io_error("failed to create output directory for", &cfg.out_path, e)
                })?;
            }
            let entries = fsutil::atomic_write(&out, Some(0o600), true, |file, tmp| {
                let job = TarJob {
                    ctx: &ctx,
                    src: &src,
                    meta: &meta,
                    skip: [tmp, out.as_path()],
                    rules: &rules,
                    limits,
                };
                if cfg.gzip {
                    let enc = job.write(GzEncoder::new(file, Compression::default()))?;
                    enc.0.finish()?;
                    Ok::<_, ArchiveError>(enc.1)
                } else {
                    Ok(job.write(file)?.1)
                }
            })
            .map_err(|e: ArchiveError| e.into_step_error(context))?;
            tracing::debug!(path = %cfg.out_path, entries, "tar archive written");
            Ok(())
        })
        .await?;
        Ok(StepOutcome::succeeded())
    }
}

struct TarJob<'a> {
    ctx: &'a StepContext,
    src: &'a Path,
    meta: &'a fs::Metadata,
    skip: [&'a Path; 2],
    rules: &'a IgnoreRules,
    limits: ArchiveLimits,
}

#[derive(Default)]
struct Tally {
    entries: u64,
    total: u64,
}

impl TarJob<'_> {
    /// Writes the archive to `w`; returns the writer and the number of entries.
    fn write<W: Write>(&self, w: W) -> Result<(W, u64), ArchiveError> {
        let mut builder = tar::Builder::new(w);
        builder.mode(HeaderMode::Complete);
        builder.follow_symlinks(false);
        let mut tally = Tally::default();
        if self.meta.is_file() {
            let name = PathBuf::from(self.src.file_name().unwrap_or_default());
            if !self.rules.is_ignored(&name, false) {
                self.append(&mut builder, &mut tally, &name, self.src, self.meta)?;
            }
        } else {
            fsutil::walk(self.src, |entry| {
                fsutil::check_cancelled(self.ctx)?;
                if self.skip.contains(&entry.abs.as_path()) {
                    return Ok(false);
                }
                let is_dir = entry.meta.is_dir();
                if self.rules.is_ignored(&entry.rel, is_dir) {
                    return Ok(false);
                }
                self.append(
                    &mut builder,
                    &mut tally,
                    &entry.rel,
                    &entry.abs,
                    &entry.meta,
                )
                .map_err(|e| match e {
                    ArchiveError::Step(s) => WalkError::Step(s),
                    other => {
                        WalkError::Step(StepError::terminal(other.to_string()).with_source(other))
                    }
                })?;
                Ok(is_dir)
            })?;
        }
        Ok((builder.into_inner()?, tally.entries))
    }

    fn append<W: Write>(
        &self,
        builder: &mut tar::Builder<W>,
        tally: &mut Tally,
        rel: &Path,
        abs: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let ft = meta.file_type();
        if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
            tracing::debug!(path = %rel.display(), "special file not archived");
            return Ok(());
        }
        tally.entries += 1;
        if tally.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        if ft.is_file() {
            let size = meta.len();
            if size > self.limits.max_file_bytes {
                return Err(ArchiveError::FileTooLarge {
                    path: rel.to_string_lossy().into_owned(),
                    size,
                    limit: self.limits.max_file_bytes,
                });
            }
            tally.total = tally.total.saturating_add(size);
            if tally.total > self.limits.max_total_bytes {
                return Err(ArchiveError::TotalTooLarge {
                    limit: self.limits.max_total_bytes,
                });
            }
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            // Exactly `size` bytes even if the file changes while it is read.
            let data = File::open(abs)?.take(size).chain(io::repeat(0)).take(size);
            builder.append_data(&mut header, rel, data)?;
        } else if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty())?;
        } else {
            let target = fs::read_link(abs)?;
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, rel, target)?;
        }
        Ok(())
    }
}

/// Configuration of [`Untar`].
///
/// ```yaml
/// - uses: untar
///   config:
///     inPath: ./downloads/chart.tgz  # a tar archive, gzip-compressed or not
///     outPath: ./out/chart           # replaced by the archive's contents
///     stripComponents: 1             # optional: drop leading path components
///     ignore: |                      # optional, .gitignore syntax
///       *.md
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UntarConfig {
    /// The archive, relative to the work directory. gzip compression is detected from
    /// the content.
    pub in_path: String,
    /// The directory to extract into, relative to the work directory. Its previous
    /// contents are replaced (atomically: the archive is extracted next to it first).
    pub out_path: String,
    /// The number of leading path components to remove from entry names; entries with no
    /// more components than this are skipped (default 0).
    #[serde(default)]
    pub strip_components: Option<u32>,
    /// Entries to leave out, one `.gitignore` pattern per line, matched against the names
    /// after stripping. When empty, `.git` is left out.
    #[serde(default)]
    pub ignore: String,
}

/// Kargo's `untar` step, stricter than Kargo: instead of skipping suspicious entries
/// silently it refuses the whole archive with an error naming the entry.
///
/// Only regular files, directories and symbolic links are extracted. Refused: absolute
/// names, names with a `..` component or a backslash, hard links, device files, FIFOs and
/// other entry types, symbolic links whose target is absolute or leaves the output
/// directory (a target may start with `..` components as long as it stays inside, and may
/// not use `..` after a name), and entries that would be written through a symbolic link.
/// Caps (see [`ArchiveLimits`]): 50 MiB per file, 100 MiB in total. Nothing is written
/// outside a staging directory until the whole archive has been extracted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Untar {
    limits: ArchiveLimits,
}

impl Untar {
    /// The step with Kargo's limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The step with other limits (tests use small ones).
    pub fn with_limits(limits: ArchiveLimits) -> Self {
        Self { limits }
    }
}

#[async_trait]
impl Step for Untar {
    const KIND: &'static str = "untar";
    type Config = UntarConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: UntarConfig) -> Result<StepOutcome, StepError> {
        require_path("inPath", &cfg.in_path)?;
        require_path("outPath", &cfg.out_path)?;
        let src = ctx.path(&cfg.in_path)?;
        let out = ctx.path(&cfg.out_path)?;
        if out == ctx.work_dir().root() {
            return Err(StepError::invalid_config(
                "outPath",
                "the work directory itself cannot be replaced; extract into a subdirectory",
            ));
        }
        let rules = if cfg.ignore.trim().is_empty() {
            IgnoreRules::new("", true)?
        } else {
            IgnoreRules::new(&cfg.ignore, false)?
        };
        let limits = self.limits;
        let ctx = ctx.clone();
        fsutil::run_blocking(move || {
            let context = format!("failed to extract tar file {:?}", cfg.in_path);
            let count = extract(&ctx, &cfg, &src, &out, &rules, limits)
                .map_err(|e| e.into_step_error(context))?;
            tracing::debug!(path = %cfg.out_path, entries = count, "tar archive extracted");
            Ok(())
        })
        .await?;
        Ok(StepOutcome::succeeded())
    }
}

/// A reader that fails once more than `remaining` bytes were read, recording that it did.
struct Capped<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            self.exceeded.set(true);
            return Err(io::Error::other("the uncompressed archive is too large"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn extract(
    ctx: &StepContext,
    cfg: &UntarConfig,
    src: &Path,
    out: &Path,
    rules: &IgnoreRules,
    limits: ArchiveLimits,
) -> Result<u64, ArchiveError> {
    let parent = out.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "outPath has no parent directory",
        )
    })?;
    if let Ok(m) = fs::symlink_metadata(out)
        && !m.is_dir()
    {
        return Err(StepError::terminal(format!(
            "outPath {:?} exists and is not a directory",
            cfg.out_path
        ))
        .into());
    }
    fsutil::create_dirs(parent, 0o750)?;
    let staging = fsutil::StagingDir::new_in(parent, "untar")?;
    let root = staging.path().to_path_buf();

    let mut file = File::open(src)?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.rewind()?;
    let raw: Box<dyn Read> = if got == 2 && magic == [0x1f, 0x8b] {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let exceeded = Rc::new(Cell::new(false));
    let reader = Capped {
        inner: raw,
        remaining: limits.max_stream_bytes,
        exceeded: exceeded.clone(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut job = Extraction {
        root: &root,
        strip: cfg.strip_components.unwrap_or(0) as usize,
        rules,
        ignore_name: cfg.ignore.trim(),
        limits,
        entries: 0,
        total: 0,
        dirs: HashSet::new(),
    };
    let result = (|| -> Result<(), ArchiveError> {
        for entry in archive.entries()? {
            fsutil::check_cancelled(ctx)?;
            job.entry(entry?)?;
        }
        Ok(())
    })();
    if exceeded.get() {
        return Err(ArchiveError::StreamTooLarge {
            limit: limits.max_stream_bytes,
        });
    }
    result?;

    // Swap the staging directory into place; the old contents go only once it is there.
    let name = out
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "outPath has no file name"))?;
    staging.set_mode(0o750)?;
    staging.install(name)?;
    Ok(job.entries)
}

struct Extraction<'a> {
    root: &'a Path,
    strip: usize,
    rules: &'a IgnoreRules,
    ignore_name: &'a str,
    limits: ArchiveLimits,
    entries: u64,
    total: u64,
    /// Directories known to exist as real directories under `root`.
    dirs: HashSet<PathBuf>,
}

impl Extraction<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason: String| ArchiveError::Refused {
            entry: name.clone(),
            reason,
        };
        let mut kind = entry.header().entry_type();
        match kind {
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {
                return Ok(());
            }
            EntryType::Regular if raw_name.ends_with(b"/") => kind = EntryType::Directory,
            EntryType::Regular | EntryType::Directory | EntryType::Symlink => {}
            EntryType::Link => return Err(refuse("hard links are not allowed".into())),
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device files are not allowed".into()));
            }
            EntryType::Fifo => return Err(refuse("FIFOs are not allowed".into())),
            other => {
                return Err(refuse(format!(
                    "entry type {:?} is not allowed (only regular files, directories and symbolic links)",
                    other.as_byte() as char
                )));
            }
        }
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        if raw_name.is_empty() {
            return Err(refuse("the name is empty".into()));
        }
        if raw_name.contains(&b'\\') {
            return Err(refuse("backslashes are not allowed in names".into()));
        }
        if raw_name.starts_with(b"/") {
            return Err(refuse("absolute paths are not allowed".into()));
        }
        let components: Vec<&[u8]> = raw_name
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        if components.iter().any(|c| *c == b"..") {
            return Err(refuse("`..` is not allowed in names".into()));
        }
        if components.len() <= self.strip {
            tracing::trace!(entry = %name, "too few components to strip; skipped");
            return Ok(());
        }
        let kept: Vec<&[u8]> = components[self.strip..]
            .iter()
            .copied()
            .filter(|c| *c != b".")
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        let rel: PathBuf = kept.iter().map(|c| os_string(c)).collect();
        let is_dir = kind == EntryType::Directory;
        if self.rules.is_ignored(&rel, is_dir)
            || (!self.ignore_name.is_empty()
                && rel
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy() == self.ignore_name))
        {
            tracing::trace!(entry = %name, "ignored");
            return Ok(());
        }
        let link_target = if kind == EntryType::Symlink {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .ok_or_else(|| refuse("symbolic link without a target".into()))?;
            check_link_target(&rel, &target).map_err(refuse)?;
            Some(target)
        } else {
            None
        };
        let target = self.root.join(&rel);
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent).map_err(|r| match r {
                DirError::Refused(reason) => refuse(reason),
                DirError::Io(e) => ArchiveError::Io(e),
            })?;
        }
        match kind {
            EntryType::Directory => {
                self.ensure_dir(&rel).map_err(|r| match r {
                    DirError::Refused(reason) => refuse(reason),
                    DirError::Io(e) => ArchiveError::Io(e),
                })?;
            }
            EntryType::Symlink => {
                clear(&target).map_err(|r| match r {
                    DirError::Refused(reason) => refuse(reason),
                    DirError::Io(e) => ArchiveError::Io(e),
                })?;
                symlink(
                    &os_string(link_target.as_deref().unwrap_or_default()),
                    &target,
                )?;
            }
            _ => {
                let size = entry.size();
                if size > self.limits.max_file_bytes {
                    return Err(ArchiveError::FileTooLarge {
                        path: name,
                        size,
                        limit: self.limits.max_file_bytes,
                    });
                }
                if self.total.saturating_add(size) > self.limits.max_total_bytes {
                    return Err(ArchiveError::TotalTooLarge {
                        limit: self.limits.max_total_bytes,
                    });
                }
                clear(&target).map_err(|r| match r {
                    DirError::Refused(reason) => refuse(reason),
                    DirError::Io(e) => ArchiveError::Io(e),
                })?;
                let mode = entry.header().mode().unwrap_or(0o600) & 0o777;
                let mut file = fsutil::create_new(&target, mode)?;
                let written = io::copy(&mut (&mut entry).take(size), &mut file)?;
                self.total += written;
                if let Ok(mtime) = entry.header().mtime()
                    && mtime > 0
                {
                    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    file.set_modified(when)?;
                }
            }
        }
        Ok(())
    }

    /// Makes sure `rel` is a real directory under the root, creating what is missing and
    /// refusing to go through a symbolic link or a file.
    fn ensure_dir(&mut self, rel: &Path) -> Result<(), DirError> {
        let mut current = self.root.to_path_buf();
        let mut shown = PathBuf::new();
        for c in rel.components() {
            current.push(c);
            shown.push(c);
            if self.dirs.contains(&current) {
                continue;
            }
            match fs::symlink_metadata(&current) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(DirError::Refused(format!(
                        "it would be written through the symbolic link {:?}",
                        shown.display().to_string()
                    )));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(DirError::Refused(format!(
                        "{:?} is not a directory",
                        shown.display().to_string()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fsutil::create_dirs(&current, 0o750).map_err(DirError::Io)?;
                }
                Err(e) => return Err(DirError::Io(e)),
            }
            self.dirs.insert(current.clone());
        }
        Ok(())
    }
}

enum DirError {
    Refused(String),
    Io(io::Error),
}

/// Removes a file or symbolic link at `path` (a later entry replaces an earlier one);
/// refuses to replace a directory.
fn clear(path: &Path) -> Result<(), DirError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(DirError::Refused(
            "a directory of that name was already extracted".into(),
        )),
        Ok(_) => fs::remove_file(path).map_err(DirError::Io),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DirError::Io(e)),
    }
}

/// Checks a symbolic link's target: relative, no backslash, and staying inside the output
/// directory without any `..` after a name (which could resolve through another link).
fn check_link_target(link: &Path, target: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(target);
    if target.is_empty() {
        return Err("symbolic link with an empty target".into());
    }
    if target.contains(&b'\\') {
        return Err(format!(
            "symbolic link target {shown:?} contains a backslash"
        ));
    }
    if target.starts_with(b"/") {
        return Err(format!("symbolic link target {shown:?} is absolute"));
    }
    let depth = link.components().count().saturating_sub(1);
    let mut ups = 0usize;
    let mut named = false;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if named => {
                return Err(format!(
                    "symbolic link target {shown:?} uses `..` after a name"
                ));
            }
            b".." => {
                ups += 1;
                if ups > depth {
                    return Err(format!(
                        "symbolic link target {shown:?} leads outside the output directory"
                    ));
                }
            }
            _ => named = true,
        }
    }
    Ok(())
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).to_owned()
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    OsString::from(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(unix)]
fn symlink(target: &std::ffi::OsStr, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &std::ffi::OsStr, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic links are not supported on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets() {
        assert!(check_link_target(Path::new("a/b/l"), b"../c").is_ok());
        assert!(check_link_target(Path::new("a/b/l"), b"../../c").is_ok());
        assert!(check_link_target(Path::new("a/b/l"), b"sub/./x").is_ok());
        assert!(check_link_target(Path::new("a/b/l"), b"../../../c").is_err());
        assert!(check_link_target(Path::new("l"), b"..").is_err());
        assert!(check_link_target(Path::new("a/l"), b"x/../../y").is_err());
        assert!(check_link_target(Path::new("a/l"), b"/etc").is_err());
        assert!(check_link_target(Path::new("a/l"), b"a\\b").is_err());
        assert!(check_link_target(Path::new("a/l"), b"").is_err());
    }
}
