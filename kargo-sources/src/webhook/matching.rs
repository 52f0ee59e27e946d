//! Which Warehouses a push can affect.

use kargo_core::freight::{normalize_chart_repo, normalize_git_url, normalize_image_repo};
use kargo_core::model::{
    ChartSubscription, CommitSelectionStrategy, GitSubscription, ImageSelectionStrategy,
    ImageSubscription, SubscriptionSource, Warehouse,
};

use super::{ArtifactKind, PushedArtifact};
use crate::chart::version::{Constraint, Version};
use crate::path_filter::PathFilter;
use crate::selection::{TagFilter, select_semver};

/// The normalised repository URLs a Warehouse subscribes to (Kargo's `subscribedURLs`
/// index): git URLs through `normalize_git_url`, images through `normalize_image_repo`,
/// charts through `normalize_chart_repo`. Generic subscriptions have none.
pub fn subscribed_urls(warehouse: &Warehouse) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for sub in &warehouse.spec.subscriptions {
        let url = match &sub.source {
            SubscriptionSource::Git(g) => normalize_git_url(&g.repo_url),
            SubscriptionSource::Image(i) => normalize_image_repo(&i.repo_url),
            SubscriptionSource::Chart(c) => normalize_chart_repo(&c.repo_url),
            SubscriptionSource::Generic(_) => continue,
        };
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

/// The names (sorted, deduplicated) of the Warehouses with at least one subscription that
/// `artifacts` can affect:
///
/// - **git**: same normalised URL; one of the pushed refs satisfies Kargo's `MatchesRef`
///   (branch strategy: `refs/heads/<branch>`, or the default branch when none is
///   configured: the one the payload names, else `main` or `master`; tag strategies:
///   `refs/tags/<tag>` with the tag passing `allowTagsRegexes` / `ignoreTagsRegexes` and,
///   for SemVer, the `strictSemvers` parse and `semverConstraint`); and, when the payload
///   lists the changed files and the subscription has `includePaths` / `excludePaths`, some
///   changed file is included and not excluded. No ref or no file list: it matches.
/// - **image**: same normalised repository; a pushed tag passes the subscription's tag
///   filter (regexes, deprecated `allowTags` / `ignoreTags`) and, for SemVer, the
///   strict-semver parse and `constraint`; for Digest, the tag is the `constraint`. No tag:
///   it matches.
/// - **chart** (OCI repositories only): same normalised repository; a pushed tag (with `_`
///   read as `+`) is a strict semantic version satisfying `semverConstraint` (if any). No
///   tag: it matches.
///
/// A subscription whose filters do not compile matches (discovery will report the error).
pub fn warehouses_to_refresh(
    artifacts: &[PushedArtifact],
    warehouses: &[Warehouse],
) -> Vec<String> {
    let mut names: Vec<String> = warehouses
        .iter()
        .filter(|w| {
            w.spec.subscriptions.iter().any(|sub| {
                artifacts
                    .iter()
                    .any(|a| subscription_matches(&sub.source, a))
            })
        })
        .map(|w| w.metadata.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn subscription_matches(sub: &SubscriptionSource, a: &PushedArtifact) -> bool {
    match (sub, a.kind) {
        (SubscriptionSource::Git(g), ArtifactKind::Git) => git_matches(g, a),
        (SubscriptionSource::Image(i), ArtifactKind::Image | ArtifactKind::Oci) => {
            image_matches(i, a)
        }
        (SubscriptionSource::Chart(c), ArtifactKind::Chart | ArtifactKind::Oci) => {
            chart_matches(c, a)
        }
        _ => false,
    }
}

fn git_matches(g: &GitSubscription, a: &PushedArtifact) -> bool {
    if !a.repo_urls.contains(&normalize_git_url(&g.repo_url)) {
        return false;
    }
    let ref_ok = a.git_refs.is_empty()
        || a.git_refs
            .iter()
            .any(|r| matches_ref(g, r, a.default_branch.as_deref()));
    if !ref_ok {
        return false;
    }
    match (&a.changed_files, PathFilter::new(g)) {
        (Some(files), Ok(filter)) if !filter.is_empty() => filter.matches(files),
        _ => true,
    }
}

/// Kargo's `MatchesRef` for a git subscription and a full ref name (see
/// [`warehouses_to_refresh`]); `default_branch` is the repository's default branch when
/// known.
pub fn matches_ref(g: &GitSubscription, full_ref: &str, default_branch: Option<&str>) -> bool {
    match g.commit_selection_strategy {
        CommitSelectionStrategy::NewestFromBranch => {
            let Some(branch) = full_ref.strip_prefix("refs/heads/") else {
                return false;
            };
            if !g.branch.is_empty() {
                return branch == g.branch;
            }
            match default_branch {
                Some(d) => branch == d,
                None => branch == "main" || branch == "master",
            }
        }
        CommitSelectionStrategy::SemVer
        | CommitSelectionStrategy::Lexical
        | CommitSelectionStrategy::NewestTag => {
            let Some(tag) = full_ref.strip_prefix("refs/tags/") else {
                return false;
            };
            let Ok(filter) = TagFilter::new(&g.allow_tags_regexes, &g.ignore_tags_regexes) else {
                return true;
            };
            if g.commit_selection_strategy != CommitSelectionStrategy::SemVer {
                return filter.matches(tag);
            }
            semver_passes(tag, &filter, g.strict_semvers, &g.semver_constraint)
        }
    }
}

fn semver_passes(tag: &str, filter: &TagFilter, strict: bool, constraint: &str) -> bool {
    let constraint = if constraint.is_empty() {
        None
    } else {
        match Constraint::parse(constraint) {
            Ok(c) => Some(c),
            Err(_) => return true,
        }
    };
    !select_semver(&[tag], filter, strict, constraint.as_ref()).is_empty()
}

fn image_matches(i: &ImageSubscription, a: &PushedArtifact) -> bool {
    if !a.repo_urls.contains(&normalize_image_repo(&i.repo_url)) {
        return false;
    }
    a.tags.is_empty() || a.tags.iter().any(|t| image_tag_matches(i, t))
}

/// Whether an image subscription could select `tag` (see [`warehouses_to_refresh`]).
pub fn image_tag_matches(i: &ImageSubscription, tag: &str) -> bool {
    if i.image_selection_strategy == ImageSelectionStrategy::Digest {
        return tag == i.constraint;
    }
    let Ok(filter) = TagFilter::with_deprecated(
        &i.allow_tags_regexes,
        &i.ignore_tags_regexes,
        i.allow_tags.as_deref(),
        i.ignore_tags.as_deref().unwrap_or_default(),
    ) else {
        return true;
    };
    match i.image_selection_strategy {
        ImageSelectionStrategy::SemVer => {
            semver_passes(tag, &filter, i.strict_semvers, &i.constraint)
        }
        _ => filter.matches(tag),
    }
}

fn chart_matches(c: &ChartSubscription, a: &PushedArtifact) -> bool {
    let is_oci = c
        .repo_url
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("oci://"));
    if !is_oci || !a.repo_urls.contains(&normalize_chart_repo(&c.repo_url)) {
        return false;
    }
    a.tags.is_empty() || a.tags.iter().any(|t| chart_version_matches(c, t))
}

/// Whether a chart subscription could select the OCI tag `tag` (`_` read as `+`).
pub fn chart_version_matches(c: &ChartSubscription, tag: &str) -> bool {
    let Ok(v) = Version::parse_strict(&tag.replace('_', "+")) else {
        return false;
    };
    if c.semver_constraint.is_empty() {
        return true;
    }
    Constraint::parse(&c.semver_constraint).map_or(true, |k| k.matches(&v))
}
