//! `kustomize-set-image` benchmarks on a generated Kustomization with 200 `images:`
//! entries (comments, quoted and plain tags, some digests): the `images:` editor alone
//! (one image; all 200 images), the step end to end on a temporary file (one configured
//! image; automatic mode with 200 images in the Freight collection), and as the baseline
//! a plain `yaml_serde` parse of the same text.
//!
//! Run: `cargo bench --bench kustomize_set_image`
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use kargo::core::freight::{Freight, FreightCollection, FreightOrigin, FreightReference, Image};
use kargo::core::step::{DynStep, StepContext};
use kargo::core::workdir::WorkDir;
use kargo::steps::KustomizeSetImage;
use kargo::steps::kustomize::{KustomizeImage, set_images};
use serde_json::json;

fn main() {
    divan::main();
}

const IMAGES: usize = 200;

fn repo(i: usize) -> String {
    format!("ghcr.io/acme/service-{i:03}")
}

/// A Kustomization with `n` image entries.
fn kustomization(n: usize) -> String {
    let mut out = String::from(
        "# Production overlay\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: prod\nresources:\n- ../../base\nimages:\n",
    );
    for i in 0..n {
        out.push_str(&format!("# service {i}\n- name: {}\n", repo(i)));
        if i % 3 == 0 {
            out.push_str(&format!("  newTag: \"1.{i}.0\" # pinned\n"));
        } else {
            out.push_str(&format!("  newTag: 1.{i}.0\n"));
        }
        if i % 4 == 0 {
            out.push_str(&format!("  digest: sha256:{i:064x}\n"));
        }
    }
    out.push_str("patches:\n- path: replicas.yaml\n");
    out
}

fn freight(n: usize, version: u64) -> FreightCollection {
    let mut c = FreightCollection::new();
    for i in 0..n {
        let image = Image {
            repo_url: repo(i),
            tag: format!("2.{version}.{i}"),
            digest: format!("sha256:{:064x}", version * 1000 + i as u64),
            ..Image::default()
        };
        let f = Freight::new(
            FreightOrigin::warehouse(format!("w{i}")),
            vec![],
            vec![image],
            vec![],
            vec![],
        );
        c.insert(FreightReference::from(f));
    }
    c
}

/// The editor alone: one image near the end of the list.
#[divan::bench]
fn editor_one_image(bencher: divan::Bencher<'_, '_>) {
    let text = kustomization(IMAGES);
    let mut targets = BTreeMap::new();
    let name = repo(IMAGES - 2);
    targets.insert(name.clone(), KustomizeImage::new(name).with_tag("9.9.9"));
    bencher.bench_local(|| black_box(set_images(black_box(&text), &targets).ok()));
}

/// The editor alone: all 200 images with a new tag and digest (automatic mode's targets).
#[divan::bench]
fn editor_all_images(bencher: divan::Bencher<'_, '_>) {
    let text = kustomization(IMAGES);
    let targets: BTreeMap<String, KustomizeImage> = (0..IMAGES)
        .map(|i| {
            (
                repo(i),
                KustomizeImage::new(repo(i))
                    .with_tag(format!("2.0.{i}"))
                    .with_digest(format!("sha256:{:064x}", i + 7)),
            )
        })
        .collect();
    bencher.bench_local(|| black_box(set_images(black_box(&text), &targets).ok()));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// The step end to end with one configured image: resolve, find the file, read, edit,
/// atomic write, commit message. The tag alternates so every iteration writes.
#[divan::bench]
fn step_one_image(bencher: divan::Bencher<'_, '_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization(IMAGES)).expect("write");
    let ctx = StepContext::new(WorkDir::new(dir.path()).expect("work dir"));
    let rt = runtime();
    let image = repo(IMAGES - 2);
    let counter = AtomicU64::new(0);
    bencher.bench_local(|| {
        let v = counter.fetch_add(1, Ordering::Relaxed);
        let config = json!({"path": ".", "images": [{"image": image, "tag": format!("3.{v}.0")}]});
        black_box(rt.block_on(KustomizeSetImage.run_json(&ctx, config)).ok())
    });
}

/// The step end to end in automatic mode: 200 Freight (one image each) set into the
/// 200-entry Kustomization (newTag and digest each). Two Freight collections alternate so
/// every iteration rewrites all entries.
#[divan::bench]
fn step_automatic_200_images(bencher: divan::Bencher<'_, '_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization(IMAGES)).expect("write");
    let mut even = StepContext::new(WorkDir::new(dir.path()).expect("work dir"));
    even.freight = freight(IMAGES, 1);
    let mut odd = even.clone();
    odd.freight = freight(IMAGES, 2);
    let rt = runtime();
    let counter = AtomicU64::new(0);
    bencher.bench_local(|| {
        let ctx = if counter.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            &even
        } else {
            &odd
        };
        black_box(
            rt.block_on(KustomizeSetImage.run_json(ctx, json!({"path": "."})))
                .ok(),
        )
    });
}

/// Baseline: `yaml_serde` (libyaml) parsing the same text into a `Value`.
#[divan::bench]
fn baseline_yaml_serde_parse(bencher: divan::Bencher<'_, '_>) {
    let text = kustomization(IMAGES);
    bencher.bench_local(|| {
        black_box(yaml_serde::from_str::<yaml_serde::Value>(black_box(&text)).ok())
    });
}
