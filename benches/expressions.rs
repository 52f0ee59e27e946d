//! Expression benchmarks: rendering a 20-step promotion template with 5 expressions per
//! step (compile + render, as the runner does for every step attempt), one precompiled
//! expression, and, as the baseline in the same process, plain minijinja rendering the
//! same expressions without kargo's layer (no coercion, no function data, no error
//! positions).
//!
//! Run: `cargo bench --bench expressions`
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use kargo::core::expr::{EvalData, ExprEngine, Scope, from_json};
use serde_json::{Value as Json, json};

fn main() {
    divan::main();
}

fn scope() -> Scope {
    let mut top = BTreeMap::new();
    top.insert(
        "vars".to_owned(),
        from_json(&json!({
            "repoURL": "https://git.example.com/acme/gitops.git",
            "overlay": "applications/overlays/dev/backend",
            "image": "ghcr.io/acme/backend",
            "tag": "3f9a2c1d",
            "replicas": 3,
        })),
    );
    top.insert(
        "ctx".to_owned(),
        from_json(&json!({"project": "acme", "stage": "dev", "promotion": "dev.01j.abc"})),
    );
    let mut outputs = serde_json::Map::new();
    for i in 1..=20 {
        outputs.insert(
            format!("step-{i}"),
            json!({"commit": "0123456789abcdef", "commitMessage": "Updated values"}),
        );
    }
    top.insert("outputs".to_owned(), from_json(&Json::Object(outputs)));
    Scope::new(top, Arc::new(EvalData::default()))
}

fn template() -> Vec<Json> {
    (1..=20)
        .map(|i| {
            json!({
                "repoURL": "$<< vars.repoURL >>",
                "path": "./src/$<< vars.overlay >>/patches.yaml",
                "updates": [{
                    "key": "spec.source.helm.valuesObject.image.tag",
                    "value": "$<< quote(vars.tag) >>",
                }],
                "message": "$<< outputs['step-" .to_owned() + &format!("{}", i.max(2) - 1) + "'].commitMessage >>",
                "replicas": "$<< vars.replicas + 1 >>",
            })
        })
        .collect()
}

/// Parse once, render many: what the runner does for each attempt of each step.
#[divan::bench]
fn render_20_step_template(bencher: divan::Bencher<'_, '_>) {
    let engine = ExprEngine::new();
    let scope = scope();
    let steps = template();
    let compiled: Vec<_> = steps
        .iter()
        .map(|s| engine.compile_json(s).expect("compiles"))
        .collect();
    bencher.bench_local(|| {
        for step in &compiled {
            black_box(step.render(black_box(&scope)).ok());
        }
    });
}

/// Compile and render in one go (a promotion's first attempt of every step).
#[divan::bench]
fn compile_and_render_20_step_template(bencher: divan::Bencher<'_, '_>) {
    let engine = ExprEngine::new();
    let scope = scope();
    let steps = template();
    bencher.bench_local(|| {
        for step in &steps {
            black_box(engine.render_json(black_box(step), &scope).ok());
        }
    });
}

#[divan::bench]
fn precompiled_expression(bencher: divan::Bencher<'_, '_>) {
    let engine = ExprEngine::new();
    let scope = scope();
    let expr = engine.compile_expression("vars.tag").expect("compiles");
    bencher.bench_local(|| black_box(expr.eval(black_box(&scope)).ok()));
}

#[divan::bench]
fn precompiled_template(bencher: divan::Bencher<'_, '_>) {
    let engine = ExprEngine::new();
    let scope = scope();
    let t = engine
        .compile("./src/$<< vars.overlay >>/$<< ctx.stage >>.yaml")
        .expect("compiles");
    bencher.bench_local(|| black_box(t.render(black_box(&scope)).ok()));
}

/// Baseline: minijinja alone renders the same 100 expressions as text with `render_str`.
#[divan::bench]
fn baseline_minijinja_render_str_20_steps(bencher: divan::Bencher<'_, '_>) {
    let env = minijinja::Environment::new();
    let ctx = minijinja::context! {
        vars => minijinja::Value::from(minijinja::value::Serde(json!({
            "repoURL": "https://git.example.com/acme/gitops.git",
            "overlay": "applications/overlays/dev/backend",
            "tag": "3f9a2c1d",
            "replicas": 3,
        }))),
        outputs => minijinja::Value::from(minijinja::value::Serde(json!({"step-1": {"commitMessage": "Updated values"}}))),
    };
    let exprs = [
        "{{ vars.repoURL }}",
        "./src/{{ vars.overlay }}/patches.yaml",
        "{{ vars.tag }}",
        "{{ outputs['step-1'].commitMessage }}",
        "{{ vars.replicas + 1 }}",
    ];
    bencher.bench_local(|| {
        for _ in 0..20 {
            for e in &exprs {
                black_box(env.render_str(black_box(e), &ctx).ok());
            }
        }
    });
}
