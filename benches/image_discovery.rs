//! Image discovery benchmarks.
//!
//! - `select_semver_10k`: Kargo's SemVer selection (tag filter with an allow regex, strict
//!   parsing, a constraint, sort) over 10,000 tags: pure CPU, what every SemVer discovery
//!   does after listing tags (target < 5 ms).
//! - `discover_500_*`: `NewestBuild` discovery of a repository of 500 tags on the local
//!   `docker-registry` (`TEST_OCI_REGISTRY`, started by `ci/test.sh`; skipped with a message
//!   when unset): `cold` with a new source (empty cache) per run, `warm_cache_by_tag` and
//!   `warm_digest_keyed` with a source that discovered the repository before. The request
//!   counts of one discovery of each are printed. The rate limit is lifted (the default of
//!   20 requests/s would make a cold run take 50 s by design).
//! - `warehouses_500_no_change_pass`: 500 Warehouses on that one repository (a third
//!   `NewestBuild` of the tags `build-49*`, a third `Lexical` with `discoveryLimit` 10, a
//!   third `Digest` of `build-499`: ten tags read in all), all discovered at once in one
//!   pass (a common `fresh_after`, as the service sets it) by a source that has seen the
//!   repository, at Kargo's default rate limit of 20 requests/s: one tag list and one
//!   HEAD per tag read for the whole pass, whatever the number of Warehouses. The request
//!   counts of one pass are printed. Without `fresh_after` each Warehouse would list the
//!   500 tags and HEAD its ten (or one) tags on its own: 334 lists and 3,506 HEADs a pass,
//!   about 3 minutes at 20 requests/s (`kargo-sources/tests/images.rs`
//!   `scale_500_warehouses_one_repository_share_tag_lists` counts that case).
//!
//! Run: `CARGO_TARGET_DIR=... ci/test.sh` starts the registry for tests only; for the
//! benchmark start it the same way or point `TEST_OCI_REGISTRY` at any registry, then
//! `cargo bench --bench image_discovery`.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::{Arc, OnceLock};

use kargo::core::model::{ImageSelectionStrategy, ImageSubscription};
use kargo::core::source::{DiscoveryContext, Source};
use kargo::sources::chart::sha256_digest;
use kargo::sources::chart::version::Constraint;
use kargo::sources::image::{ImageSource, ImageSourceOptions};
use kargo::sources::selection::{TagFilter, select_semver};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

fn main() {
    divan::main();
}

/// 10,000 tags: 60 % semantic versions (a quarter with a `v`), prereleases, and
/// non-version tags (`sha-…`, `latest`, dated nightlies).
fn tags_10k() -> Vec<String> {
    (0..10_000u32)
        .map(|i| match i % 10 {
            0..=3 => format!("{}.{}.{}", i % 4, (i / 10) % 50, i % 7),
            4 | 5 => format!("v{}.{}.{}", i % 3, (i / 10) % 40, i % 5),
            6 => format!("1.{}.0-rc.{}", (i / 10) % 30, i % 9),
            7 => format!("sha-{:08x}", i.wrapping_mul(2_654_435_761)),
            8 => format!("nightly-2024{:02}{:02}", i % 12 + 1, i % 28 + 1),
            _ => "latest".to_owned(),
        })
        .collect()
}

#[divan::bench]
fn select_semver_10k(bencher: divan::Bencher<'_, '_>) {
    let tags = tags_10k();
    let filter = TagFilter::new(&[r"^v?[0-2]\.".to_owned()], &["-debug$".to_owned()]).unwrap();
    let constraint = Constraint::parse(">=1.2.0 <2.30.0").unwrap();
    let n = select_semver(&tags, &filter, true, Some(&constraint)).len();
    assert!(n > 1_000, "{n}");
    bencher.bench_local(|| {
        black_box(select_semver(
            black_box(&tags),
            &filter,
            true,
            Some(&constraint),
        ))
    });
}

const TAGS: usize = 500;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    url: String,
}

/// Pushes 500 tagged tiny images (distinct configs and build times) once per process.
fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let Ok(registry) = std::env::var("TEST_OCI_REGISTRY") else {
            eprintln!(
                "image_discovery: TEST_OCI_REGISTRY is not set; skipping the registry benchmarks"
            );
            return None;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let repo = format!("bench/images-{}", std::process::id());
        runtime.block_on(push_all(&registry, &repo));
        Some(Fixture {
            runtime,
            url: format!("{registry}/{repo}"),
        })
    })
    .as_ref()
}

async fn push_all(registry: &str, repo: &str) {
    let client = Arc::new(Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    }));
    let r = |reference: &str| {
        if reference.starts_with("sha256:") {
            Reference::with_digest(registry.to_owned(), repo.to_owned(), reference.to_owned())
        } else {
            Reference::with_tag(registry.to_owned(), repo.to_owned(), reference.to_owned())
        }
    };
    client
        .auth(&r("x"), &RegistryAuth::Anonymous, RegistryOperation::Push)
        .await
        .unwrap();
    let layer = b"bench layer".to_vec();
    let ld = sha256_digest(&layer);
    client.push_blob(&r(&ld), layer.clone(), &ld).await.unwrap();
    let start = std::time::Instant::now();
    for i in 0..TAGS {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-01T{:02}:{:02}:{:02}Z","rootfs":{{"type":"layers","diff_ids":[]}}}}"#,
            (i * 7 % TAGS) / 3600,
            (i * 7 % TAGS) / 60 % 60,
            (i * 7 % TAGS) % 60
        )
        .into_bytes();
        let cd = sha256_digest(&config);
        client
            .push_blob(&r(&cd), config.clone(), &cd)
            .await
            .unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        client
            .push_manifest_raw(
                &r(&format!("build-{i:03}")),
                manifest.into_bytes(),
                "application/vnd.oci.image.manifest.v1+json"
                    .parse()
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    eprintln!(
        "image_discovery: pushed {TAGS} images to {registry}/{repo} in {:?}",
        start.elapsed()
    );
}

fn source() -> ImageSource {
    ImageSource::new({
        let mut o = ImageSourceOptions::default();
        o.rate_limit = f64::INFINITY;
        o
    })
}

/// The 500 Warehouses of `warehouses_500_no_change_pass`.
fn warehouses(url: &str) -> Vec<ImageSubscription> {
    (0..500)
        .map(|i| {
            let mut s = ImageSubscription::new(url);
            match i % 3 {
                0 => {
                    s.image_selection_strategy = ImageSelectionStrategy::NewestBuild;
                    s.allow_tags_regexes = vec!["^build-49".to_owned()];
                    s.discovery_limit = 10;
                }
                1 => {
                    s.image_selection_strategy = ImageSelectionStrategy::Lexical;
                    s.discovery_limit = 10;
                }
                _ => {
                    s.image_selection_strategy = ImageSelectionStrategy::Digest;
                    s.constraint = "build-499".into();
                }
            }
            s
        })
        .collect()
}

/// One pass: every Warehouse discovered at once with a common `fresh_after`.
fn pass(f: &Fixture, src: &ImageSource, subs: &[ImageSubscription]) -> usize {
    let ctx = DiscoveryContext::new("bench", "bench").with_fresh_after(std::time::Instant::now());
    f.runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for s in subs {
            let (src, ctx, s) = (src.clone(), ctx.clone(), s.clone());
            set.spawn(async move { src.discover(&ctx, &s).await.unwrap().is_empty() });
        }
        let mut found = 0;
        while let Some(empty) = set.join_next().await {
            found += usize::from(!empty.unwrap());
        }
        found
    })
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn warehouses_500_no_change_pass(bencher: divan::Bencher<'_, '_>) {
    let Some(f) = fixture() else { return };
    let subs = warehouses(&f.url);
    // Kargo's default rate limit: what one pass costs is what it would wait for.
    let src = ImageSource::default();
    assert_eq!(pass(f, &src, &subs), 500);
    let before = src.stats();
    let start = std::time::Instant::now();
    assert_eq!(pass(f, &src, &subs), 500);
    let took = start.elapsed();
    let s = src.stats();
    eprintln!(
        "image_discovery: 500 Warehouses, no-change pass (20 requests/s): {} tag-list, {} manifest GET, {} manifest HEAD, {} blob GET requests; {} tag lists and {} tag looks reused; {took:?}",
        s.tag_lists - before.tag_lists,
        s.manifest_gets - before.manifest_gets,
        s.manifest_heads - before.manifest_heads,
        s.blob_gets - before.blob_gets,
        s.shared_tag_lists - before.shared_tag_lists,
        s.shared_tags - before.shared_tags,
    );
    bencher.bench_local(|| pass(f, &src, &subs));
}

fn subscription(url: &str, cache_by_tag: bool) -> ImageSubscription {
    let mut s = ImageSubscription::new(url);
    s.image_selection_strategy = ImageSelectionStrategy::NewestBuild;
    s.cache_by_tag = cache_by_tag;
    s
}

fn discover(f: &Fixture, src: &ImageSource, sub: &ImageSubscription) -> usize {
    let ctx = DiscoveryContext::new("bench", "bench");
    let d = f.runtime.block_on(src.discover(&ctx, sub)).unwrap();
    assert!(!d.is_empty());
    src.cache_len()
}

fn report(name: &str, src: &ImageSource, before: kargo::sources::image::RequestStats) {
    let s = src.stats();
    eprintln!(
        "image_discovery: {name}: one discovery = {} tag-list, {} manifest GET, {} manifest HEAD, {} blob GET requests",
        s.tag_lists - before.tag_lists,
        s.manifest_gets - before.manifest_gets,
        s.manifest_heads - before.manifest_heads,
        s.blob_gets - before.blob_gets
    );
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn discover_500_cold(bencher: divan::Bencher<'_, '_>) {
    let Some(f) = fixture() else { return };
    let sub = subscription(&f.url, false);
    let probe = source();
    discover(f, &probe, &sub);
    report("cold", &probe, Default::default());
    bencher.bench_local(|| discover(f, &source(), &sub));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn discover_500_warm_cache_by_tag(bencher: divan::Bencher<'_, '_>) {
    let Some(f) = fixture() else { return };
    let sub = subscription(&f.url, true);
    let src = source();
    discover(f, &src, &sub);
    let before = src.stats();
    discover(f, &src, &sub);
    report("warm, cacheByTag", &src, before);
    bencher.bench_local(|| discover(f, &src, &sub));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn discover_500_warm_digest_keyed(bencher: divan::Bencher<'_, '_>) {
    let Some(f) = fixture() else { return };
    let sub = subscription(&f.url, false);
    let src = source();
    discover(f, &src, &sub);
    let before = src.stats();
    discover(f, &src, &sub);
    report("warm, digest-keyed (HEAD per tag)", &src, before);
    bencher.bench_local(|| discover(f, &src, &sub));
}
