//! A git subscription's `includePaths` / `excludePaths`: exact base paths, `glob:` and
//! `regex:` / `regexp:` selectors. Used by the git source (feature `git`) and by the
//! webhook receivers (feature `webhook`) to match a push's changed files.

use kargo_core::model::GitSubscription;
use kargo_core::source::{SourceError, SourceErrorKind};
use regex::Regex;

fn invalid(field: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::new(
        SourceErrorKind::InvalidConfig,
        format!("{field}: {message}"),
    )
}

/// One path selector of `includePaths` / `excludePaths`.
#[derive(Debug)]
enum PathSelector {
    /// The path itself or anything under it.
    Exact(String),
    Glob(globset::GlobMatcher),
    Regex(Regex),
}

impl PathSelector {
    fn parse(field: &str, s: &str) -> Result<Self, SourceError> {
        if let Some(p) = s
            .strip_prefix("regex:")
            .or_else(|| s.strip_prefix("regexp:"))
        {
            return Regex::new(p)
                .map(Self::Regex)
                .map_err(|e| invalid(field, format!("invalid regular expression {p:?}: {e}")));
        }
        if let Some(p) = s.strip_prefix("glob:") {
            return globset::GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|g| Self::Glob(g.compile_matcher()))
                .map_err(|e| invalid(field, format!("invalid glob {p:?}: {e}")));
        }
        let mut base = s.trim_end_matches('/');
        while let Some(rest) = base.strip_prefix("./") {
            base = rest;
        }
        Ok(Self::Exact(base.to_owned()))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            // Kargo: `filepath.Rel(selector, path)` must not contain `..`.
            Self::Exact(base) => {
                if base.is_empty() || base == "." {
                    return !path.contains("..");
                }
                if path == base {
                    return true;
                }
                path.strip_prefix(base.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|rel| !rel.contains(".."))
            }
            Self::Glob(g) => g.is_match(path),
            Self::Regex(r) => r.is_match(path),
        }
    }
}

/// A git subscription's compiled `includePaths` / `excludePaths` (also used by the webhook
/// receivers to match a push's changed files).
#[derive(Debug)]
pub(crate) struct PathFilter {
    include: Vec<PathSelector>,
    exclude: Vec<PathSelector>,
}

impl PathFilter {
    /// Compiles the subscription's path selectors.
    pub(crate) fn new(cfg: &GitSubscription) -> Result<Self, SourceError> {
        let include = cfg
            .include_paths
            .iter()
            .map(|s| PathSelector::parse("includePaths", s))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude = cfg
            .exclude_paths
            .iter()
            .map(|s| PathSelector::parse("excludePaths", s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { include, exclude })
    }

    /// No selector at all: every change counts.
    pub(crate) fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Kargo's rule: some changed path is included (or there are no includes) and not
    /// excluded.
    pub(crate) fn matches(&self, paths: &[String]) -> bool {
        paths.iter().any(|p| {
            (self.include.is_empty() || self.include.iter().any(|s| s.matches(p)))
                && !self.exclude.iter().any(|s| s.matches(p))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sel(s: &str) -> PathSelector {
        PathSelector::parse("includePaths", s).unwrap()
    }

    #[test]
    fn exact_selectors_match_the_path_and_below() {
        let s = sel("apps/web/");
        assert!(s.matches("apps/web"));
        assert!(s.matches("apps/web/a.yaml"));
        assert!(s.matches("apps/web/x/y"));
        assert!(!s.matches("apps/website/a"));
        assert!(!s.matches("apps"));
        assert!(sel("./apps").matches("apps/a"));
        assert!(sel(".").matches("anything/at/all"));
    }

    #[test]
    fn glob_and_regex_selectors() {
        let g = sel("glob:apps/*/values.yaml");
        assert!(g.matches("apps/web/values.yaml"));
        assert!(!g.matches("apps/web/x/values.yaml"));
        let gg = sel("glob:apps/**/*.yaml");
        assert!(gg.matches("apps/web/x/values.yaml"));
        assert!(gg.matches("apps/a.yaml"));
        assert!(!gg.matches("other/a.yaml"));
        assert!(sel("glob:{a,b}/*").matches("b/x"));
        let r = sel("regex:\\.md$");
        assert!(r.matches("docs/x.md"));
        assert!(!r.matches("docs/x.mdx"));
        assert!(sel("regexp:^src/").matches("src/lib.rs"));
        assert!(PathSelector::parse("excludePaths", "regex:(").is_err());
        assert!(PathSelector::parse("excludePaths", "glob:[").is_err());
    }
}
