//! Chart versions and version constraints with the semantics of Go's
//! `github.com/Masterminds/semver/v3`, which Kargo and Helm use, as a small adapter over the
//! [`semver`] crate.
//!
//! - [`Version::parse_lenient`] is Masterminds' `NewVersion`: an optional `v` prefix, one to
//!   three numeric parts (`1`, `1.2`, `1.2.3`), then an optional prerelease and build.
//!   Helm repository indexes are read this way.
//! - [`Version::parse_strict`] is `StrictNewVersion`: exactly `X.Y.Z[-pre][+build]`, no `v`,
//!   no leading zeros. OCI tags are read this way (after turning `_` back into `+`).
//! - [`Constraint`] is `NewConstraint`: `||` between alternatives; spaces or commas between
//!   the comparisons of one alternative, which must all hold; operators `=`, `!=`, `>`, `<`,
//!   `>=`, `<=` (also `=>`, `=<`), `~` (`~>`), `^`; `x`, `X` and `*` wildcards; hyphen ranges
//!   `1.2 - 1.4.5`; `v` prefixes. A prerelease version only matches an alternative in which
//!   some comparison names a prerelease.
//!
//! Comparison ignores build metadata, as Masterminds' `Compare` does; [`sort_descending`]
//! breaks ties (`1.0` against `1.0.0`) by the original strings, descending, like Kargo.
//!
//! ```
//! use kargo_sources::chart::version::{Constraint, Version};
//!
//! let c: Constraint = "^1.2 || >=3.0.0-0 <3.1".parse().unwrap();
//! assert!(c.matches(&Version::parse_lenient("v1.9").unwrap()));
//! assert!(!c.matches(&Version::parse_lenient("2.0.0").unwrap()));
//! assert!(c.matches(&Version::parse_lenient("3.0.0-rc.1").unwrap()));
//! assert!(Version::parse_strict("v1.2.3").is_err());
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semantic version {input:?}: {reason}")]
pub struct VersionError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a constraint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version constraint {input:?}: {reason}")]
pub struct ConstraintError {
    /// The constraint as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed version that remembers the string it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    semver: semver::Version,
    original: String,
}

impl Version {
    /// Parses like Masterminds' `NewVersion` (coercing): `v1`, `1.2`, `01.2.3-rc.1+b` are
    /// accepted; missing parts are zero.
    pub fn parse_lenient(input: &str) -> Result<Self, VersionError> {
        let err = |reason: &str| VersionError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (core, pre, build) = split_version(input);
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(err("expected one to three numeric parts"));
        }
        let mut nums = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("the numeric parts must be digits"));
            }
            nums[i] = p
                .parse()
                .map_err(|_| err("a numeric part does not fit in 64 bits"))?;
        }
        Self::build(input, nums, pre, build)
    }

    /// Parses like Masterminds' `StrictNewVersion`: exactly `X.Y.Z` with an optional
    /// prerelease and build, no `v` prefix and no leading zeros.
    pub fn parse_strict(input: &str) -> Result<Self, VersionError> {
        let err = |reason: &str| VersionError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(err("the version is empty"));
        }
        let mut parts: Vec<&str> = input.splitn(3, '.').collect();
        if parts.len() != 3 {
            return Err(err("expected MAJOR.MINOR.PATCH"));
        }
        let mut build = None;
        let mut pre = None;
        if let Some((p, b)) = parts[2].split_once('+') {
            parts[2] = p;
            build = Some(b);
        }
        if let Some((p, r)) = parts[2].split_once('-') {
            parts[2] = p;
            pre = Some(r);
        }
        let mut nums = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("the numeric parts must be digits"));
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(err("a numeric part starts with 0"));
            }
            nums[i] = p
                .parse()
                .map_err(|_| err("a numeric part does not fit in 64 bits"))?;
        }
        Self::build(input, nums, pre, build)
    }

    fn build(
        input: &str,
        [major, minor, patch]: [u64; 3],
        pre: Option<&str>,
        build: Option<&str>,
    ) -> Result<Self, VersionError> {
        let err = |reason: String| VersionError {
            input: input.to_owned(),
            reason,
        };
        let pre = match pre {
            Some(p) => {
                validate_identifiers(p, true).map_err(|r| err(format!("prerelease: {r}")))?;
                semver::Prerelease::new(p).map_err(|e| err(format!("prerelease: {e}")))?
            }
            None => semver::Prerelease::EMPTY,
        };
        let build = match build {
            Some(b) => {
                validate_identifiers(b, false).map_err(|r| err(format!("build metadata: {r}")))?;
                semver::BuildMetadata::new(b).map_err(|e| err(format!("build metadata: {e}")))?
            }
            None => semver::BuildMetadata::EMPTY,
        };
        Ok(Self {
            semver: semver::Version {
                major,
                minor,
                patch,
                pre,
                build,
            },
            original: input.to_owned(),
        })
    }

    /// The string the version was parsed from.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The version as a [`semver::Version`] (missing parts filled with zeros).
    pub fn semver(&self) -> &semver::Version {
        &self.semver
    }

    /// Masterminds' `Compare`: precedence by major, minor, patch and prerelease; build
    /// metadata is ignored.
    pub fn cmp_precedence(&self, other: &Self) -> Ordering {
        self.semver.cmp_precedence(&other.semver)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`, none empty; numeric prerelease
/// identifiers without leading zeros.
fn validate_identifiers(s: &str, prerelease: bool) -> Result<(), &'static str> {
    for id in s.split('.') {
        if id.is_empty() {
            return Err("empty identifier");
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("identifiers may only contain [0-9A-Za-z-]");
        }
        if prerelease
            && id.len() > 1
            && id.starts_with('0')
            && id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("a numeric identifier starts with 0");
        }
    }
    Ok(())
}

/// Sorts versions from greatest to least; equal precedence is broken by the original
/// strings, descending (so `1.0.0` comes before `1.0`), as Kargo does.
pub fn sort_descending(versions: &mut [Version]) {
    versions.sort_by(|a, b| {
        b.cmp_precedence(a)
            .then_with(|| b.original.as_str().cmp(a.original.as_str()))
    });
}

/// Kargo's chart version selection: keeps the versions matching `constraint` (all when
/// `None`), sorts them descending and keeps at most `limit` (all when 0). Returns the
/// original strings.
pub fn select(
    mut versions: Vec<Version>,
    constraint: Option<&Constraint>,
    limit: usize,
) -> Vec<String> {
    if let Some(c) = constraint {
        versions.retain(|v| c.matches(v));
    }
    sort_descending(&mut versions);
    if limit > 0 {
        versions.truncate(limit);
    }
    versions.into_iter().map(|v| v.original).collect()
}

/// A Masterminds version constraint (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    source: String,
    groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    comparators: Vec<Comparator>,
    /// Some comparator names a prerelease: prerelease versions may match this group.
    has_prerelease: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `` or `=`: equal, or tilde when the version has wildcards.
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    con: semver::Version,
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

impl FromStr for Constraint {
    type Err = ConstraintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

const OPERATORS: [(&str, Op); 12] = [
    (">=", Op::GreaterEqual),
    ("=>", Op::GreaterEqual),
    ("<=", Op::LessEqual),
    ("=<", Op::LessEqual),
    ("!=", Op::NotEqual),
    ("~>", Op::Tilde),
    (">", Op::Greater),
    ("<", Op::Less),
    ("=", Op::TildeOrEqual),
    ("~", Op::Tilde),
    ("^", Op::Caret),
    ("", Op::TildeOrEqual),
];

impl Constraint {
    /// Parses a constraint; an empty string is refused, as Masterminds does.
    pub fn parse(input: &str) -> Result<Self, ConstraintError> {
        let err = |reason: String| ConstraintError {
            input: input.to_owned(),
            reason,
        };
        let mut groups = Vec::new();
        for alternative in input.split("||") {
            let comparators = parse_group(alternative).map_err(err)?;
            let has_prerelease = comparators.iter().any(|c| !c.con.pre.is_empty());
            groups.push(Group {
                comparators,
                has_prerelease,
            });
        }
        Ok(Self {
            source: input.to_owned(),
            groups,
        })
    }

    /// The constraint as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `version` satisfies the constraint.
    pub fn matches(&self, version: &Version) -> bool {
        let v = &version.semver;
        self.groups
            .iter()
            .any(|g| g.comparators.iter().all(|c| c.check(v, g.has_prerelease)))
    }
}

/// Parses one `||` alternative: comparisons separated by whitespace or commas, and hyphen
/// ranges `A - B`.
fn parse_group(s: &str) -> Result<Vec<Comparator>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        let before = i;
        skip_ws(&mut i);
        if !out.is_empty() && i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        } else if !out.is_empty() && i < b.len() && i == before {
            return Err(format!(
                "comparisons must be separated by spaces or commas near {:?}",
                &s[i..]
            ));
        }
        if i >= b.len() {
            if out.is_empty() {
                return Err(format!("empty alternative {s:?}"));
            }
            if b.last() == Some(&b',') {
                return Err("trailing comma".to_owned());
            }
            return Ok(out);
        }
        let rest = &s[i..];
        let (op_str, op) = OPERATORS
            .iter()
            .find(|(text, _)| rest.starts_with(text))
            .copied()
            .unwrap_or(("", Op::TildeOrEqual));
        i += op_str.len();
        skip_ws(&mut i);
        let start = i;
        while i < b.len() && is_version_char(b[i]) {
            i += 1;
        }
        let first = &s[start..i];
        if first.is_empty() {
            return Err(format!("expected a version near {:?}", &s[start..]));
        }
        // A hyphen range `A - B` (operands without operators).
        if op_str.is_empty() {
            let mut j = i;
            let ws1 = {
                let k = j;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                j > k
            };
            if ws1 && j < b.len() && b[j] == b'-' {
                let mut k = j + 1;
                let ws2_start = k;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if k > ws2_start {
                    let start2 = k;
                    while k < b.len() && is_version_char(b[k]) {
                        k += 1;
                    }
                    let second = &s[start2..k];
                    if second.is_empty() {
                        return Err("a hyphen range needs an upper bound".to_owned());
                    }
                    out.push(comparator(Op::GreaterEqual, first)?);
                    out.push(comparator(Op::LessEqual, second)?);
                    i = k;
                    continue;
                }
            }
        }
        out.push(comparator(op, first)?);
    }
}

fn is_version_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'*')
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

/// Splits `[v]core[-pre][+build]` into its three parts (one leading `v` dropped).
fn split_version(text: &str) -> (&str, Option<&str>, Option<&str>) {
    let s = text.strip_prefix('v').unwrap_or(text);
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre), build),
        None => (rest, None, build),
    }
}

/// One comparison: `text` is the version part, with wildcards allowed.
fn comparator(op: Op, text: &str) -> Result<Comparator, String> {
    let bad = || format!("{text:?} is not a version");
    let (core, pre, build) = split_version(text);
    if let Some(b) = build {
        validate_identifiers(b, false).map_err(|_| bad())?;
    }
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3
        || parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .bytes()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'x' | b'X' | b'*'))
        })
    {
        return Err(bad());
    }
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    let num = |p: &str| -> Result<u64, String> { p.parse::<u64>().map_err(|_| bad()) };
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    let (major, minor, patch);
    if is_x(part(0)) {
        dirty = true;
        (major, minor, patch) = (0, 0, 0);
    } else if part(1).is_empty() || is_x(part(1)) {
        dirty = true;
        minor_dirty = true;
        (major, minor, patch) = (num(part(0))?, 0, 0);
    } else if part(2).is_empty() || is_x(part(2)) {
        dirty = true;
        patch_dirty = true;
        (major, minor, patch) = (num(part(0))?, num(part(1))?, 0);
    } else {
        (major, minor, patch) = (num(part(0))?, num(part(1))?, num(part(2))?);
    }
    let pre = match pre {
        Some(p) => {
            validate_identifiers(p, true).map_err(|_| bad())?;
            semver::Prerelease::new(p).map_err(|_| bad())?
        }
        None => semver::Prerelease::EMPTY,
    };
    Ok(Comparator {
        op,
        con: semver::Version {
            major,
            minor,
            patch,
            pre,
            build: semver::BuildMetadata::EMPTY,
        },
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

impl Comparator {
    fn check(&self, v: &semver::Version, include_prerelease: bool) -> bool {
        if !v.pre.is_empty() && !include_prerelease {
            return false;
        }
        let c = &self.con;
        let cmp = v.cmp_precedence(c);
        match self.op {
            Op::TildeOrEqual => {
                if self.dirty {
                    self.tilde(v, cmp)
                } else {
                    cmp == Ordering::Equal
                }
            }
            Op::Tilde => self.tilde(v, cmp),
            Op::NotEqual => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        return v.pre != c.pre;
                    }
                }
                cmp != Ordering::Equal
            }
            Op::Greater => {
                if !self.dirty {
                    return cmp == Ordering::Greater;
                }
                if v.major != c.major {
                    v.major > c.major
                } else if self.minor_dirty {
                    false
                } else if self.patch_dirty {
                    v.minor > c.minor
                } else {
                    cmp == Ordering::Greater
                }
            }
            Op::Less => cmp == Ordering::Less,
            Op::GreaterEqual => cmp != Ordering::Less,
            Op::LessEqual => {
                if !self.dirty {
                    return cmp != Ordering::Greater;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::Caret => {
                if cmp == Ordering::Less {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
        }
    }

    fn tilde(&self, v: &semver::Version, cmp: Ordering) -> bool {
        let c = &self.con;
        if cmp == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse_lenient(s).unwrap()
    }

    fn check(c: &str, ver: &str) -> bool {
        Constraint::parse(c).unwrap().matches(&v(ver))
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(v("v1.2.3").semver().to_string(), "1.2.3");
        assert_eq!(v("1.2").semver().to_string(), "1.2.0");
        assert_eq!(v("1").semver().to_string(), "1.0.0");
        assert_eq!(v("01.2.3").semver().to_string(), "1.2.3");
        assert_eq!(v("1.2.3-rc.1+b.01").semver().to_string(), "1.2.3-rc.1+b.01");
        assert_eq!(v("1-rc").semver().to_string(), "1.0.0-rc");
        assert_eq!(v("v1.2").original(), "v1.2");
        for bad in [
            "",
            "v",
            "1.2.3.4",
            "a.b.c",
            "1.2.3-",
            "1.2.3-01",
            "1..3",
            "1.2.3+",
            "1.2.3-rc_1",
            "1.2.3+a+b",
        ] {
            assert!(Version::parse_lenient(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strict_parsing() {
        assert!(Version::parse_strict("1.2.3").is_ok());
        assert!(Version::parse_strict("1.2.3-rc.1+build.5").is_ok());
        for bad in [
            "v1.2.3", "1.2", "1", "01.2.3", "1.02.3", "1.2.3.4", "1.2.3-01", "",
        ] {
            assert!(Version::parse_strict(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sorting_is_descending_with_ties_by_original_string() {
        let mut vs: Vec<Version> = [
            "1.0",
            "1.0.0",
            "2.0.0-rc.1",
            "2.0.0",
            "0.9",
            "v1.0.0",
            "2.0.0+b",
        ]
        .iter()
        .map(|s| v(s))
        .collect();
        sort_descending(&mut vs);
        let got: Vec<&str> = vs.iter().map(|v| v.original()).collect();
        assert_eq!(
            got,
            [
                "2.0.0+b",
                "2.0.0",
                "2.0.0-rc.1",
                "v1.0.0",
                "1.0.0",
                "1.0",
                "0.9"
            ]
        );
    }

    #[test]
    fn select_filters_sorts_and_limits() {
        let vs = ["1.0.0", "1.1.0", "2.0.0", "1.2.0-rc.1"]
            .iter()
            .map(|s| v(s))
            .collect();
        let c = Constraint::parse("^1.0").unwrap();
        assert_eq!(select(vs, Some(&c), 1), ["1.1.0"]);
    }

    #[test]
    fn basic_operators() {
        assert!(check("1.2.3", "1.2.3"));
        assert!(check("=1.2.3", "v1.2.3"));
        assert!(check("1.2.3", "1.2.3+build"));
        assert!(!check("1.2.3", "1.2.4"));
        assert!(check("!=1.2.3", "1.2.4"));
        assert!(!check("!=1.2.3", "1.2.3"));
        assert!(check(">1.2.3", "1.2.4"));
        assert!(!check(">1.2.3", "1.2.3"));
        assert!(check("<1.2.3", "1.2.2"));
        assert!(check(">=1.2.3", "1.2.3"));
        assert!(check("=>1.2.3", "1.3.0"));
        assert!(check("<=1.2.3", "1.2.3"));
        assert!(check("=<1.2.3", "1.0.0"));
        assert!(!check("<=1.2.3", "1.2.4"));
        assert!(check(">= 1.2.3", "1.2.3"));
    }

    #[test]
    fn and_or_and_separators() {
        assert!(check(">=1.2 <2.0", "1.9.9"));
        assert!(!check(">=1.2 <2.0", "2.0.0"));
        assert!(check(">=1.2, <2.0", "1.5.0"));
        assert!(check(">=1.2 , <2.0", "1.5.0"));
        assert!(check("^1.0 || ^3.0", "3.4.0"));
        assert!(!check("^1.0 || ^3.0", "2.4.0"));
        assert!(check("1.2 - 1.4.5", "1.4.5"));
        assert!(check("1.2 - 1.4.5", "1.2.0"));
        assert!(!check("1.2 - 1.4.5", "1.4.6"));
        for bad in [
            "",
            " ",
            ">=1.2<2.0",
            "foo",
            ">=",
            "1.2 ||",
            ">= 1.2,",
            "=*=1",
            "1.2.3.4",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(check("*", "9.9.9"));
        assert!(check("x", "0.0.1"));
        assert!(check("1.2.x", "1.2.9"));
        assert!(!check("1.2.x", "1.3.0"));
        assert!(check("1.x", "1.9.0"));
        assert!(!check("1.x", "2.0.0"));
        assert!(check("1.2", "1.2.7"), "a partial version is a tilde range");
        assert!(check(">1.x", "2.0.0"));
        assert!(!check(">1.x", "1.9.0"));
        assert!(check(">1.2", "1.3.0"));
        assert!(!check(">1.2", "1.2.9"));
        assert!(check("<=1.2", "1.2.9"));
        assert!(!check("<=1.2", "1.3.0"));
        assert!(check("!=1.2.x", "1.3.0"));
        assert!(!check("!=1.2.x", "1.2.5"));
        assert!(check("!=1.x", "2.0.0"));
        assert!(!check("!=1.x", "1.5.0"));
    }

    #[test]
    fn tilde_and_caret() {
        assert!(check("~1.2.3", "1.2.9"));
        assert!(!check("~1.2.3", "1.3.0"));
        assert!(!check("~1.2.3", "1.2.2"));
        assert!(check("~>1.2", "1.2.0"));
        assert!(check("~1", "1.9.0"));
        assert!(!check("~1", "2.0.0"));
        assert!(check("~0.0.0", "5.0.0"));
        assert!(check("^1.2.3", "1.9.0"));
        assert!(!check("^1.2.3", "2.0.0"));
        assert!(!check("^1.2.3", "1.2.2"));
        assert!(check("^0.2.3", "0.2.9"));
        assert!(!check("^0.2.3", "0.3.0"));
        assert!(check("^0.0.3", "0.0.3"));
        assert!(!check("^0.0.3", "0.0.4"));
        assert!(check("^0.0", "0.0.9"));
        assert!(!check("^0.0", "0.1.0"));
        assert!(check("^0", "0.9.0"));
        assert!(!check("^0", "1.0.0"));
        // Masterminds' code (not its doc comment) makes `^*` match 0.0.0 only.
        assert!(!check("^*", "3.0.0"));
        assert!(check("^*", "0.0.0"));
        assert!(check("^v1.2", "1.5.0"));
    }

    #[test]
    fn prereleases_need_a_prerelease_in_the_alternative() {
        assert!(!check(">=1.0.0", "1.2.0-rc.1"));
        assert!(!check("*", "1.2.0-rc.1"));
        assert!(check(">=1.0.0-0", "1.2.0-rc.1"));
        assert!(check(">=1.2.0-rc.1 <2", "1.2.0-rc.2"));
        assert!(!check(">=1.2.0-rc.1 <2 || ^3", "3.1.0-rc.1"));
        assert!(check("1.2.0-rc.1", "1.2.0-rc.1"));
        assert!(!check("1.2.0-rc.1", "1.2.0-rc.2"));
        assert!(check("^1.2.0-alpha", "1.2.0-beta"));
        assert!(!check("~1.2.0-beta", "1.2.0-alpha"));
    }
}
