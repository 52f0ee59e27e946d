//! Kargo's tag selection for image subscriptions, as pure functions (no I/O).
//!
//! These implement the tag-side half of the `SemVer`, `Lexical` and `NewestBuild` image
//! selection strategies; fetching manifests, platform filtering and `discoveryLimit` are the
//! caller's business. (`Digest` names one mutable tag and needs no selection.)
//!
//! - [`TagFilter`]: `ignoreTagsRegexes` and `allowTagsRegexes`. A tag is dropped when ANY
//!   ignore regex matches it (ignore wins over allow); when allow regexes are given, only
//!   tags matching ANY of them are kept. Regexes are unanchored, RE2-style (the `regex`
//!   crate has RE2 syntax and semantics), matched like Go's `MatchString`.
//! - [`select_semver`]: filter, keep tags that parse as Masterminds versions (leniently:
//!   optional `v`, partial `1` / `1.2`, prerelease, build) and, with `strictSemvers`, also
//!   strictly as `X.Y.Z[-pre][+build]` after trimming one leading `v`; then the optional
//!   constraint; sorted by version descending, ties (`1.0` vs `1.0.0`) by the original
//!   string descending.
//! - [`select_lexical`]: filter, then sort byte-wise descending.
//! - [`order_newest_build`]: order tags by build time, newest first.
//!
//! Versions and constraints are those of [`crate::chart::version`].
//!
//! ```
//! use kargo_sources::chart::version::Constraint;
//! use kargo_sources::selection::{select_semver, TagFilter};
//!
//! let filter = TagFilter::new(&[], &["-debug$".to_owned()]).unwrap();
//! let c = Constraint::parse("^1.0").unwrap();
//! let tags = ["v1.2.0", "1.3", "1.1.0-debug", "2.0.0", "latest"];
//! assert_eq!(select_semver(&tags, &filter, true, Some(&c)), vec!["v1.2.0"]);
//! assert_eq!(select_semver(&tags, &filter, false, Some(&c)), vec!["1.3", "v1.2.0"]);
//! ```

use chrono::{DateTime, Utc};
use regex::Regex;

use crate::chart::version::{self, Constraint, Version};

/// Why a selection could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A tag regex does not compile.
    #[error("invalid regular expression {pattern:?} in {field}: {reason}")]
    InvalidRegex {
        /// `allowTagsRegexes`, `ignoreTagsRegexes`, `allowTags` or `ignoreTags`.
        field: &'static str,
        /// The regex as given.
        pattern: String,
        /// The compiler's complaint.
        reason: String,
    },
}

/// Kargo's tag filter: `allowTagsRegexes` and `ignoreTagsRegexes` (see the module
/// documentation).
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    allow: Vec<Regex>,
    ignore: Vec<Regex>,
}

impl TagFilter {
    /// Compiles the allow and ignore regexes. An empty `allow` list allows every tag; an
    /// invalid regex is an error naming it and the field it came from.
    pub fn new(allow: &[String], ignore: &[String]) -> Result<Self, SelectionError> {
        Ok(Self {
            allow: compile("allowTagsRegexes", allow)?,
            ignore: compile("ignoreTagsRegexes", ignore)?,
        })
    }

    /// [`TagFilter::new`] plus the deprecated image subscription fields: `allow_tags` is
    /// one more allow regex (field `allowTags`), `ignore_tags` are exact tags to ignore.
    pub fn with_deprecated(
        allow: &[String],
        ignore: &[String],
        allow_tags: Option<&str>,
        ignore_tags: &[String],
    ) -> Result<Self, SelectionError> {
        let mut f = Self::new(allow, ignore)?;
        if let Some(a) = allow_tags.filter(|a| !a.is_empty()) {
            f.allow.extend(compile("allowTags", &[a.to_owned()])?);
        }
        let exact: Vec<String> = ignore_tags
            .iter()
            .map(|t| format!("^{}$", regex::escape(t)))
            .collect();
        f.ignore.extend(compile("ignoreTags", &exact)?);
        Ok(f)
    }

    /// Whether `tag` passes: no ignore regex matches it, and some allow regex matches it (or
    /// there are none). Matching is unanchored.
    pub fn matches(&self, tag: &str) -> bool {
        if self.ignore.iter().any(|r| r.is_match(tag)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(tag))
    }
}

fn compile(field: &'static str, patterns: &[String]) -> Result<Vec<Regex>, SelectionError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| SelectionError::InvalidRegex {
                field,
                pattern: p.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Kargo's `SemVer` strategy on a list of tags: tags passing `filter` that parse as
/// Masterminds versions (with `strict`, also strictly as `X.Y.Z[-pre][+build]` once a
/// leading `v` is trimmed) and satisfy `constraint` (all when `None`; prereleases only
/// match constraints whose alternative names a prerelease). Sorted by version, greatest
/// first; equal versions (`1.0`, `1.0.0`, `v1.0.0`) by original string, descending.
pub fn select_semver(
    tags: &[impl AsRef<str>],
    filter: &TagFilter,
    strict: bool,
    constraint: Option<&Constraint>,
) -> Vec<String> {
    let versions: Vec<Version> = tags
        .iter()
        .map(AsRef::as_ref)
        .filter(|t| filter.matches(t))
        .filter_map(|t| {
            let v = Version::parse_lenient(t).ok()?;
            if strict {
                let trimmed = t.strip_prefix('v').unwrap_or(t);
                Version::parse_strict(trimmed).ok()?;
            }
            Some(v)
        })
        .collect();
    version::select(versions, constraint, 0)
}

/// Kargo's `Lexical` strategy on a list of tags: tags passing `filter`, sorted byte-wise,
/// greatest first.
pub fn select_lexical(tags: &[impl AsRef<str>], filter: &TagFilter) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .map(AsRef::as_ref)
        .filter(|t| filter.matches(t))
        .map(str::to_owned)
        .collect();
    out.sort_unstable_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    out
}

/// Kargo's `NewestBuild` ordering of `(tag, build time)` candidates (already filtered and
/// with their metadata fetched): newest build time first.
///
/// Deterministic tie-breaking: candidates with the same build time are ordered by tag,
/// byte-wise descending (as Kargo does); candidates whose build time is unknown come after
/// every candidate with a known time, themselves by tag descending. Duplicates are kept.
pub fn order_newest_build(mut candidates: Vec<(String, Option<DateTime<Utc>>)>) -> Vec<String> {
    // `Option` orders `None` first, so descending order puts unknown times last.
    candidates
        .sort_by(|(ta, ca), (tb, cb)| cb.cmp(ca).then_with(|| tb.as_bytes().cmp(ta.as_bytes())));
    candidates.into_iter().map(|(t, _)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn all() -> TagFilter {
        TagFilter::new(&[], &[]).unwrap()
    }

    fn c(x: &str) -> Constraint {
        Constraint::parse(x).unwrap()
    }

    fn at(secs: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_opt(secs, 0).unwrap())
    }

    // ---- TagFilter ----

    #[test]
    fn filter_empty_allows_everything() {
        let f = all();
        assert!(f.matches("latest"));
        assert!(f.matches(""));
        assert!(f.matches("v1.2.3"));
    }

    #[test]
    fn filter_allow_is_unanchored() {
        let f = TagFilter::new(&s(&["rc"]), &[]).unwrap();
        assert!(f.matches("1.0.0-rc.1"));
        assert!(!f.matches("1.0.0"));
    }

    #[test]
    fn filter_allow_any_of_several() {
        let f = TagFilter::new(&s(&["^prod-", "^stable-"]), &[]).unwrap();
        assert!(f.matches("prod-1"));
        assert!(f.matches("stable-2"));
        assert!(!f.matches("dev-3"));
    }

    #[test]
    fn filter_ignore_wins_over_allow() {
        let f = TagFilter::new(&s(&["^v1"]), &s(&["-debug$"])).unwrap();
        assert!(f.matches("v1.2.3"));
        assert!(!f.matches("v1.2.3-debug"));
        assert!(!f.matches("v2.0.0"));
    }

    #[test]
    fn filter_ignore_any_of_several() {
        let f = TagFilter::new(&[], &s(&["^latest$", "sha-"])).unwrap();
        assert!(!f.matches("latest"));
        assert!(!f.matches("main-sha-abc"));
        assert!(f.matches("latest-1"));
    }

    #[test]
    fn filter_invalid_allow_regex_is_named() {
        let err = TagFilter::new(&s(&["ok", "(unclosed"]), &[]).unwrap_err();
        let SelectionError::InvalidRegex { field, pattern, .. } = &err;
        assert_eq!(*field, "allowTagsRegexes");
        assert_eq!(pattern, "(unclosed");
        assert!(err.to_string().contains("(unclosed"));
    }

    #[test]
    fn filter_invalid_ignore_regex_is_named() {
        let err = TagFilter::new(&[], &s(&["[z-a]"])).unwrap_err();
        let SelectionError::InvalidRegex { field, pattern, .. } = &err;
        assert_eq!(*field, "ignoreTagsRegexes");
        assert_eq!(pattern, "[z-a]");
    }

    #[test]
    fn filter_deprecated_fields() {
        let f = TagFilter::with_deprecated(&[], &s(&["-rc"]), Some("^v"), &s(&["v1.0.0", "a.b"]))
            .unwrap();
        assert!(f.matches("v2.0.0"));
        assert!(!f.matches("v1.0.0"), "exact ignoreTags");
        assert!(f.matches("v1.0.0-x"), "ignoreTags are exact, not regexes");
        assert!(!f.matches("v3-rc"));
        assert!(!f.matches("2.0.0"), "allowTags applies");
        let f = TagFilter::with_deprecated(&[], &[], None, &s(&["a.b"])).unwrap();
        assert!(f.matches("axb"), "ignoreTags are escaped");
        let err = TagFilter::with_deprecated(&[], &[], Some("("), &[]).unwrap_err();
        let SelectionError::InvalidRegex { field, .. } = &err;
        assert_eq!(*field, "allowTags");
    }

    #[test]
    fn filter_rejects_non_re2_lookaround() {
        // RE2 has no lookaround; neither does the regex crate.
        assert!(TagFilter::new(&s(&["^(?!dev)"]), &[]).is_err());
    }

    // ---- SemVer ----

    #[test]
    fn semver_descending_and_drops_non_semver() {
        let tags = ["1.0.0", "latest", "2.1.0", "1.10.0", "main", "1.9.3"];
        assert_eq!(
            select_semver(&tags, &all(), true, None),
            s(&["2.1.0", "1.10.0", "1.9.3", "1.0.0"])
        );
    }

    #[test]
    fn semver_strict_keeps_v_prefixed_full_versions() {
        let tags = ["v1.2.3", "1.2.4", "v2.0.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, None),
            s(&["v2.0.0", "1.2.4", "v1.2.3"])
        );
    }

    #[test]
    fn semver_strict_drops_partial_versions() {
        let tags = ["1", "1.2", "v1.3", "1.2.3"];
        assert_eq!(select_semver(&tags, &all(), true, None), s(&["1.2.3"]));
    }

    #[test]
    fn semver_lenient_keeps_partial_versions() {
        let tags = ["1", "1.2", "v1.3", "1.2.3"];
        assert_eq!(
            select_semver(&tags, &all(), false, None),
            s(&["v1.3", "1.2.3", "1.2", "1"])
        );
    }

    #[test]
    fn semver_strict_drops_leading_zeros() {
        let tags = ["01.2.3", "1.02.3", "1.2.3"];
        assert_eq!(select_semver(&tags, &all(), true, None), s(&["1.2.3"]));
        assert_eq!(select_semver(&tags, &all(), false, None).len(), 3);
    }

    #[test]
    fn semver_strict_trims_only_one_v() {
        let tags = ["vv1.2.3", "V1.2.3", "v1.2.3"];
        assert_eq!(select_semver(&tags, &all(), true, None), s(&["v1.2.3"]));
        assert_eq!(select_semver(&tags, &all(), false, None), s(&["v1.2.3"]));
    }

    #[test]
    fn semver_ties_broken_by_original_descending() {
        let tags = ["1.0", "1.0.0", "v1.0.0", "1"];
        assert_eq!(
            select_semver(&tags, &all(), false, None),
            s(&["v1.0.0", "1.0.0", "1.0", "1"])
        );
    }

    #[test]
    fn semver_build_metadata_ties_by_original() {
        let tags = ["1.0.0+a", "1.0.0+b", "1.0.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, None),
            s(&["1.0.0+b", "1.0.0+a", "1.0.0"])
        );
    }

    #[test]
    fn semver_prerelease_ordered_below_release() {
        let tags = ["1.0.0-rc.1", "1.0.0", "1.0.0-beta", "0.9.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, None),
            s(&["1.0.0", "1.0.0-rc.1", "1.0.0-beta", "0.9.0"])
        );
    }

    #[test]
    fn semver_constraint_excludes_prereleases() {
        let tags = ["1.1.0-rc.1", "1.0.0", "1.2.0", "2.0.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, Some(&c(">=1.0.0 <2.0.0"))),
            s(&["1.2.0", "1.0.0"])
        );
    }

    #[test]
    fn semver_prerelease_constraint_includes_prereleases() {
        // As in Masterminds, `2.0.0-rc.1 < 2.0.0` holds, so it is included too.
        let tags = ["1.1.0-rc.1", "1.0.0", "1.2.0", "2.0.0-rc.1", "0.9.0-rc.1"];
        assert_eq!(
            select_semver(&tags, &all(), true, Some(&c(">=1.0.0-0 <2.0.0"))),
            s(&["2.0.0-rc.1", "1.2.0", "1.1.0-rc.1", "1.0.0"])
        );
    }

    #[test]
    fn semver_or_constraint() {
        let tags = ["1.5.0", "2.3.0", "3.1.0", "4.0.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, Some(&c("^1.0 || ~3.1"))),
            s(&["3.1.0", "1.5.0"])
        );
    }

    #[test]
    fn semver_or_constraint_prerelease_only_in_naming_alternative() {
        let tags = ["1.0.0-rc.1", "3.0.0-rc.1", "3.0.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, Some(&c("^1.0 || >=3.0.0-0"))),
            s(&["3.0.0", "3.0.0-rc.1"])
        );
    }

    #[test]
    fn semver_constraint_with_v_prefixed_tags() {
        let tags = ["v1.2.3", "v1.3.0", "v2.0.0"];
        assert_eq!(
            select_semver(&tags, &all(), true, Some(&c("~1.2"))),
            s(&["v1.2.3"])
        );
    }

    #[test]
    fn semver_applies_filter_before_parsing() {
        let f = TagFilter::new(&s(&["^v"]), &s(&["-alpine$"])).unwrap();
        let tags = ["v1.0.0", "1.1.0", "v1.2.0-alpine", "v0.9.0"];
        assert_eq!(
            select_semver(&tags, &f, true, None),
            s(&["v1.0.0", "v0.9.0"])
        );
    }

    #[test]
    fn semver_empty_input() {
        let tags: [&str; 0] = [];
        assert!(select_semver(&tags, &all(), true, None).is_empty());
        assert!(select_semver(&["latest"], &all(), false, None).is_empty());
    }

    // ---- Lexical ----

    #[test]
    fn lexical_bytewise_descending() {
        let tags = ["nightly-20240101", "nightly-20240215", "nightly-20231231"];
        assert_eq!(
            select_lexical(&tags, &all()),
            s(&["nightly-20240215", "nightly-20240101", "nightly-20231231"])
        );
    }

    #[test]
    fn lexical_is_not_numeric() {
        let tags = ["9", "10", "1.10.0", "1.9.0"];
        assert_eq!(
            select_lexical(&tags, &all()),
            s(&["9", "10", "1.9.0", "1.10.0"])
        );
    }

    #[test]
    fn lexical_uppercase_sorts_below_lowercase() {
        let tags = ["B", "a", "A", "b"];
        assert_eq!(select_lexical(&tags, &all()), s(&["b", "a", "B", "A"]));
    }

    #[test]
    fn lexical_applies_filter() {
        let f = TagFilter::new(&s(&["^build-"]), &s(&["-wip"])).unwrap();
        let tags = ["build-2", "build-3-wip", "latest", "build-1"];
        assert_eq!(select_lexical(&tags, &f), s(&["build-2", "build-1"]));
    }

    // ---- NewestBuild ----

    #[test]
    fn newest_build_newest_first() {
        let got = order_newest_build(vec![
            ("a".into(), at(100)),
            ("b".into(), at(300)),
            ("c".into(), at(200)),
        ]);
        assert_eq!(got, s(&["b", "c", "a"]));
    }

    #[test]
    fn newest_build_ties_by_tag_descending() {
        let got = order_newest_build(vec![
            ("abc".into(), at(100)),
            ("xyz".into(), at(100)),
            ("mno".into(), at(100)),
            ("old".into(), at(50)),
        ]);
        assert_eq!(got, s(&["xyz", "mno", "abc", "old"]));
    }

    #[test]
    fn newest_build_unknown_times_last_by_tag_descending() {
        let got = order_newest_build(vec![
            ("u1".into(), None),
            ("k1".into(), at(1)),
            ("u2".into(), None),
            ("k2".into(), at(2)),
        ]);
        assert_eq!(got, s(&["k2", "k1", "u2", "u1"]));
    }

    #[test]
    fn newest_build_is_independent_of_input_order() {
        let a = vec![
            ("x".to_owned(), at(5)),
            ("y".to_owned(), at(5)),
            ("z".to_owned(), None),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(order_newest_build(a), order_newest_build(b));
    }

    #[test]
    fn newest_build_subsecond_precision() {
        let t = Utc.timestamp_opt(100, 0).unwrap();
        let later = Utc.timestamp_opt(100, 1).unwrap();
        let got = order_newest_build(vec![("a".into(), Some(t)), ("b".into(), Some(later))]);
        assert_eq!(got, s(&["b", "a"]));
        assert!(order_newest_build(vec![]).is_empty());
    }
}
