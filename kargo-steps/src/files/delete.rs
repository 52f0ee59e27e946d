//! `delete`: removes files, directories and symbolic links inside the work directory.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use globset::{GlobBuilder, GlobMatcher};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::fsutil::{self, WalkError};

/// Configuration of [`FileDelete`]. Exactly one of `path` and `paths` must be given.
///
/// ```yaml
/// - uses: delete
///   config:
///     path: ./out/old-manifests     # one path ...
/// - uses: delete
///   config:
///     paths:                        # ... or several
///     - ./out/**/*.bak
///     - ./out/tmp
///     pathsAreGlobs: true           # optional: treat them as doublestar globs
///     strict: true                  # optional: fail if a path is missing / a glob matches nothing
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteConfig {
    /// The file, directory or symbolic link to delete, relative to the work directory.
    #[serde(default)]
    pub path: Option<String>,
    /// Several paths to delete (at least one entry when given).
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Treat `path` / `paths` as glob patterns relative to the work directory: `*` and `?`
    /// stay within one path segment, `**` spans any number of directories, `[...]` and
    /// `{a,b}` are supported, `\` escapes. Matching does not enter symbolic links.
    #[serde(default)]
    pub paths_are_globs: bool,
    /// Fail when a path does not exist or a glob matches nothing (default false: such
    /// entries are skipped).
    #[serde(default)]
    pub strict: bool,
}

/// Kargo's `delete` step. Directories are removed with their contents. A symbolic link is
/// removed as a link, never followed, and may point anywhere; but every directory on the
/// way to it must resolve inside the work directory. The work directory itself cannot be
/// deleted.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileDelete;

#[async_trait]
impl Step for FileDelete {
    const KIND: &'static str = "delete";
    type Config = DeleteConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: DeleteConfig) -> Result<StepOutcome, StepError> {
        let paths: Vec<String> = match (&cfg.path, &cfg.paths) {
            (Some(_), Some(_)) => {
                return Err(StepError::invalid_config(
                    "",
                    "`path` and `paths` are mutually exclusive",
                ));
            }
            (None, None) => {
                return Err(StepError::invalid_config(
                    "",
                    "one of `path` or `paths` is required",
                ));
            }
            (Some(p), None) => vec![p.clone()],
            (None, Some(ps)) => ps.clone(),
        };
        if paths.is_empty() {
            return Err(StepError::invalid_config(
                "paths",
                "at least one path is required",
            ));
        }
        for (i, p) in paths.iter().enumerate() {
            if p.is_empty() {
                let field = if cfg.path.is_some() {
                    "path".to_owned()
                } else {
                    format!("paths[{i}]")
                };
                return Err(StepError::invalid_config(field, "must not be empty"));
            }
        }
        let globs = if cfg.paths_are_globs {
            Some(compile_globs(&cfg, &paths)?)
        } else {
            None
        };
        let ctx = ctx.clone();
        fsutil::run_blocking(move || {
            let targets = match globs {
                Some(globs) => resolve_globs(&ctx, &globs, cfg.strict)?,
                None => resolve_literal(&ctx, &paths, cfg.strict)?,
            };
            for (shown, target) in targets {
                fsutil::check_cancelled(&ctx)?;
                remove(&target).map_err(|e| fsutil::io_error("failed to delete", &shown, e))?;
                tracing::debug!(path = %shown, "deleted");
            }
            Ok(())
        })
        .await?;
        Ok(StepOutcome::succeeded())
    }
}

/// Resolves a path for deletion: its parent through the sandbox, its last component as
/// is (so a symbolic link is not followed). `None` when it does not exist.
fn resolve_leaf(ctx: &StepContext, path: &str) -> Result<Option<PathBuf>, StepError> {
    let Ok(mut parts) = kargo_core::workdir::lexical_components(path) else {
        return Err(fsutil::refused(ctx, path));
    };
    let Some(leaf) = parts.pop() else {
        return Err(StepError::terminal(format!(
            "path {path:?}: refusing to delete the work directory itself"
        )));
    };
    let parent: PathBuf = parts.iter().collect();
    let parent_str = if parent.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        parent.to_string_lossy().into_owned()
    };
    let parent_abs = ctx
        .path(&parent_str)
        .map_err(|e| e.context(format!("cannot delete {path:?}")))?;
    let target = parent_abs.join(leaf);
    match fs::symlink_metadata(&target) {
        Ok(_) => Ok(Some(target)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(fsutil::io_error("cannot inspect", path, e)),
    }
}

fn resolve_literal(
    ctx: &StepContext,
    paths: &[String],
    strict: bool,
) -> Result<Vec<(String, PathBuf)>, StepError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in paths {
        match resolve_leaf(ctx, p)? {
            Some(target) => {
                if seen.insert(target.clone()) {
                    out.push((p.clone(), target));
                }
            }
            None if strict => {
                return Err(StepError::terminal(format!("path {p:?} does not exist")));
            }
            None => tracing::debug!(path = %p, "nothing to delete"),
        }
    }
    Ok(out)
}

/// A compiled pattern and the literal directory its matches lie under.
struct Pattern {
    text: String,
    base: Vec<OsString>,
    matcher: GlobMatcher,
}

fn compile_globs(cfg: &DeleteConfig, paths: &[String]) -> Result<Vec<Pattern>, StepError> {
    let mut out = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let field = if cfg.path.is_some() {
            "path".to_owned()
        } else {
            format!("paths[{i}]")
        };
        let mut text = p.as_str();
        while let Some(rest) = text.strip_prefix("./") {
            text = rest;
        }
        if text.starts_with('/') {
            return Err(StepError::invalid_config(
                field,
                format!("invalid glob pattern {p:?}: absolute patterns are not allowed"),
            ));
        }
        let segments: Vec<&str> = text.split('/').collect();
        if segments.contains(&"..") {
            return Err(StepError::invalid_config(
                field,
                format!("invalid glob pattern {p:?}: `..` is not allowed"),
            ));
        }
        let matcher = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| {
                StepError::invalid_config(field.clone(), format!("invalid glob pattern {p:?}: {e}"))
            })?
            .compile_matcher();
        // The leading segments without glob syntax name the directory to search.
        let base = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .take_while(|s| !s.contains(['*', '?', '[', '{', '\\']))
            .filter(|s| !s.is_empty() && **s != ".")
            .map(OsString::from)
            .collect();
        out.push(Pattern {
            text: p.clone(),
            base,
            matcher,
        });
    }
    Ok(out)
}

fn resolve_globs(
    ctx: &StepContext,
    patterns: &[Pattern],
    strict: bool,
) -> Result<Vec<(String, PathBuf)>, StepError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pattern in patterns {
        let base_rel: PathBuf = pattern.base.iter().collect();
        let base_str = if base_rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            base_rel.to_string_lossy().into_owned()
        };
        let mut matched = 0usize;
        let base = match ctx.path(&base_str) {
            Ok(b) => b,
            Err(e) => return Err(e.context(format!("glob pattern {:?}", pattern.text))),
        };
        if base.is_dir() {
            fsutil::walk(&base, |entry| {
                fsutil::check_cancelled(ctx)?;
                let candidate = base_rel.join(&entry.rel);
                if pattern.matcher.is_match(&candidate) {
                    matched += 1;
                    if seen.insert(entry.abs.clone()) {
                        out.push((candidate.to_string_lossy().into_owned(), entry.abs));
                    }
                    // A matched directory goes as a whole.
                    return Ok(false);
                }
                Ok(true)
            })
            .map_err(WalkError::into_step_error)?;
        }
        if matched == 0 {
            if strict {
                return Err(StepError::terminal(format!(
                    "no paths matched pattern {:?}",
                    pattern.text
                )));
            }
            tracing::debug!(pattern = %pattern.text, "glob matched nothing");
        }
    }
    // A directory and something inside it may both have matched; deleting the directory
    // first is fine (the other is then gone).
    Ok(out)
}

/// Removes a file, a symbolic link (as a link) or a directory with its contents. Already
/// gone is fine. Nothing on the way is followed (see [`fsutil::remove_all`]).
fn remove(path: &Path) -> io::Result<()> {
    fsutil::remove_all(path)
}
