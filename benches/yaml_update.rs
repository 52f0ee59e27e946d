//! `yaml-update` benchmarks on a generated 10,000-line Helm values file: the editor alone
//! (`set_values`, one key near the end of the file; its fast path, and its saphyr-parser
//! path on the same file made to fall back), the step end to end on a temporary
//! file (resolve, read, edit, atomic write), and as the baseline in the same process a
//! plain `yaml_serde` parse of the same text.
//!
//! Run: `cargo bench --bench yaml_update`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use kargo::core::step::{DynStep, StepContext};
use kargo::core::workdir::WorkDir;
use kargo::steps::YamlUpdate;
use kargo::steps::yaml::{KeyPath, set_values};
use serde_json::json;

fn main() {
    divan::main();
}

/// A values file of `lines` lines: one block of 10 lines per service, with comments,
/// quoted tags, plain and numeric values and a sequence of mappings.
fn values_file(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 24);
    let mut n = 0;
    let mut i = 0;
    while n < lines {
        out.push_str(&format!(
            "service{i}:\n  image:\n    repository: ghcr.io/example/service-{i}  # the image\n    tag: \"1.{i}.0\"\n  replicas: {}\n  env:\n    - name: LOG_LEVEL\n      value: 'info'\n  # comment line {i}\n  enabled: true\n",
            i % 5
        ));
        n += 10;
        i += 1;
    }
    out
}

const LINES: usize = 10_000;

fn last_key() -> KeyPath {
    KeyPath::parse(&format!("service{}.image.tag", LINES / 10 - 1)).expect("valid key")
}

/// The editor alone: one key near the end of the file (the whole file is scanned anyway).
/// The file is inside the fast path's subset.
#[divan::bench]
fn editor_one_key(bencher: divan::Bencher<'_, '_>) {
    let text = values_file(LINES);
    let updates = [(last_key(), json!("1.10"))];
    bencher.bench_local(|| black_box(set_values(black_box(&text), &updates).ok()));
}

/// The editor on the same file with one anchor added at the top, which the fast path does
/// not handle: the saphyr-parser path (the reference), for comparison.
#[divan::bench]
fn editor_one_key_saphyr_path(bencher: divan::Bencher<'_, '_>) {
    let text = format!("defaults: &defaults 1\n{}", values_file(LINES));
    let updates = [(last_key(), json!("1.10"))];
    bencher.bench_local(|| black_box(set_values(black_box(&text), &updates).ok()));
}

/// The step end to end on a temporary file: path resolution, read, edit, atomic write.
/// The value alternates so every iteration writes.
#[divan::bench]
fn step_end_to_end(bencher: divan::Bencher<'_, '_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("values.yaml"), values_file(LINES)).expect("write");
    let ctx = StepContext::new(WorkDir::new(dir.path()).expect("work dir"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let key = last_key().to_string();
    let counter = AtomicU64::new(0);
    bencher.bench_local(|| {
        let v = counter.fetch_add(1, Ordering::Relaxed);
        let config =
            json!({"path": "values.yaml", "updates": [{"key": key, "value": format!("2.{v}.0")}]});
        black_box(rt.block_on(YamlUpdate.run_json(&ctx, config)).ok())
    });
}

/// Baseline: `yaml_serde` (libyaml) parsing the same text into a `Value`.
#[divan::bench]
fn baseline_yaml_serde_parse(bencher: divan::Bencher<'_, '_>) {
    let text = values_file(LINES);
    bencher.bench_local(|| {
        black_box(yaml_serde::from_str::<yaml_serde::Value>(black_box(&text)).ok())
    });
}
