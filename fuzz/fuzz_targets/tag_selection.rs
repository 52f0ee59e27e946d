//! Tag and version selection (kargo-sources/src/selection.rs, chart/version.rs): Masterminds
//! versions and constraints, the `SemVer`, `Lexical` and `NewestBuild` image strategies,
//! and the webhook's "could this subscription select the tag" checks.
//!
//! Input: UTF-8 lines: a constraint, an allow regex, an ignore regex (empty for none),
//! then one tag per line.
//! Checks: nothing panics; selections only hold tags that pass the filter, parse and match
//! the constraint, in the documented order; strict results are a subset of lenient ones;
//! a limit keeps a prefix; `A || B` matches exactly when `A` or `B` does; version
//! precedence is antisymmetric; the webhook predicates agree with the selections.
#![no_main]

use std::cmp::Ordering;

use kargo_core::model::{ChartSubscription, ImageSubscription};
use kargo_sources::chart::version::{self, Constraint, Version};
use kargo_sources::selection::{TagFilter, order_newest_build, select_lexical, select_semver};
use kargo_sources::webhook::{chart_version_matches, image_tag_matches};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn check_sorted(selected: &[String]) {
    for pair in selected.windows(2) {
        let a = Version::parse_lenient(&pair[0]).expect("selected tags parse");
        let b = Version::parse_lenient(&pair[1]).expect("selected tags parse");
        match a.cmp_precedence(&b) {
            Ordering::Greater => {}
            Ordering::Equal => assert!(pair[0] >= pair[1], "tie order {pair:?}"),
            Ordering::Less => panic!("not descending: {pair:?}"),
        }
    }
}

fn is_subsequence(small: &[String], big: &[String]) -> bool {
    let mut it = big.iter();
    small.iter().all(|s| it.any(|b| b == s))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 4096 {
        return;
    }
    let mut lines = text.split('\n');
    let constraint_text = lines.next().unwrap_or("");
    let allow = lines.next().unwrap_or("");
    let ignore = lines.next().unwrap_or("");
    let tags: Vec<&str> = lines.take(64).collect();
    let regexes = |r: &str| -> Vec<String> {
        if r.is_empty() || r.len() > 64 {
            Vec::new()
        } else {
            vec![r.to_owned()]
        }
    };
    let filter = TagFilter::new(&regexes(allow), &regexes(ignore)).unwrap_or_default();
    let constraint = Constraint::parse(constraint_text).ok();
    if let Some(c) = &constraint {
        assert_eq!(c.as_str(), constraint_text);
        let _ = c.to_string();
    }

    // Versions: strict implies lenient; precedence is antisymmetric and reflexive.
    let mut versions = Vec::new();
    for t in &tags {
        let lenient = Version::parse_lenient(t);
        if let Ok(strict) = Version::parse_strict(t) {
            let lenient = lenient.as_ref().expect("a strict version parses leniently");
            assert_eq!(strict.cmp_precedence(lenient), Ordering::Equal, "{t:?}");
        }
        if let Ok(v) = lenient {
            assert_eq!(v.cmp_precedence(&v), Ordering::Equal);
            let _ = v.to_string();
            versions.push(v);
        }
    }
    for a in &versions {
        for b in versions.iter().take(8) {
            assert_eq!(a.cmp_precedence(b), b.cmp_precedence(a).reverse());
        }
    }

    // SemVer strategy.
    let lenient = select_semver(&tags, &filter, false, constraint.as_ref());
    let strict = select_semver(&tags, &filter, true, constraint.as_ref());
    let unconstrained = select_semver(&tags, &filter, false, None);
    for s in &lenient {
        assert!(tags.contains(&s.as_str()));
        assert!(filter.matches(s));
        if let Some(c) = &constraint {
            let v = Version::parse_lenient(s).expect("selected tags parse");
            assert!(c.matches(&v), "{s:?} does not match {constraint_text:?}");
        }
    }
    check_sorted(&lenient);
    check_sorted(&strict);
    check_sorted(&unconstrained);
    assert!(
        is_subsequence(&strict, &lenient),
        "strict {strict:?} vs lenient {lenient:?}"
    );
    assert!(is_subsequence(&lenient, &unconstrained));

    // Chart selection: a limit keeps a prefix.
    let all = version::select(versions.clone(), constraint.as_ref(), 0);
    let limited = version::select(versions, constraint.as_ref(), 3);
    assert_eq!(&all[..all.len().min(3)], &limited[..]);

    // `A || B` is the union of `A` and `B`.
    if let Some((a, b)) = constraint_text.split_once("||")
        && let (Ok(ca), Ok(cb), Some(c)) = (Constraint::parse(a), Constraint::parse(b), &constraint)
    {
        for t in &tags {
            if let Ok(v) = Version::parse_lenient(t) {
                assert_eq!(c.matches(&v), ca.matches(&v) || cb.matches(&v), "{t:?}");
            }
        }
    }

    // Lexical strategy.
    let lexical = select_lexical(&tags, &filter);
    assert_eq!(
        lexical.len(),
        tags.iter().filter(|t| filter.matches(t)).count()
    );
    assert!(
        lexical
            .windows(2)
            .all(|p| p[0].as_bytes() >= p[1].as_bytes())
    );

    // NewestBuild: times from the tags' lengths; unknown times last.
    let candidates = tags
        .iter()
        .map(|t| {
            let time = (!t.is_empty()).then(|| {
                chrono::DateTime::from_timestamp(t.len() as i64 * 3600, 0).unwrap_or_default()
            });
            ((*t).to_owned(), time)
        })
        .collect::<Vec<_>>();
    let ordered = order_newest_build(candidates);
    assert_eq!(ordered.len(), tags.len());

    // The webhook predicates agree with the selections.
    let image: Result<ImageSubscription, _> = serde_json::from_value(json!({
        "repoURL": "ghcr.io/acme/app",
        "constraint": constraint_text,
        "allowTagsRegexes": regexes(allow),
        "ignoreTagsRegexes": regexes(ignore),
    }));
    if let (Ok(image), Some(_)) = (image, &constraint)
        && TagFilter::new(&regexes(allow), &regexes(ignore)).is_ok()
    {
        // `strictSemvers` defaults to true.
        let expected = if image.strict_semvers {
            &strict
        } else {
            &lenient
        };
        for t in &tags {
            let selected = expected.iter().any(|s| s == t);
            assert_eq!(image_tag_matches(&image, t), selected, "{t:?}");
        }
    }
    let chart: Result<ChartSubscription, _> = serde_json::from_value(json!({
        "repoURL": "oci://ghcr.io/acme/charts/app",
        "semverConstraint": constraint_text,
    }));
    if let Ok(chart) = chart {
        for t in &tags {
            let expected = Version::parse_strict(&t.replace('_', "+"))
                .is_ok_and(|v| constraint.as_ref().is_none_or(|c| c.matches(&v)));
            if constraint.is_some() || constraint_text.is_empty() {
                assert_eq!(chart_version_matches(&chart, t), expected, "{t:?}");
            }
        }
    }
});
