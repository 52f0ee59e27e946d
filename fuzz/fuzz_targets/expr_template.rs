//! The `$<< >>` / `${{ }}` template engine (kargo-core/src/expr/).
//!
//! Input: UTF-8 text. The first line is a template string rendered in a scope with vars,
//! outputs, Freight, secrets and step statuses; the whole input is also translated as a
//! Kargo expression and as a template, compiled as a bare expression and rendered inside a
//! JSON config. Nothing may panic; errors must carry an offset inside the input, and a
//! successfully translated template must compile without a translation error.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use kargo_core::expr::exprlang::{translate, translate_template};
use kargo_core::expr::{
    EvalData, ExprEngine, ExprErrorKind, OriginSubscriptions, Scope, StepStatusEntry, from_json,
};
use kargo_core::freight::{FreightCollection, FreightOrigin, FreightReference};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

struct Fixture {
    engine: ExprEngine,
    scope: Scope,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut engine = ExprEngine::new();
        // Smaller than the default so one input stays fast; still enough for real templates.
        engine.set_fuel(Some(20_000));
        let backend = FreightOrigin::warehouse("backend");
        let reference: FreightReference = serde_json::from_value(json!({
            "name": "a".repeat(40),
            "origin": {"kind": "Warehouse", "name": "backend"},
            "images": [{"repoURL": "ghcr.io/acme/backend", "tag": "1.2.3", "digest": "sha256:abc"}],
            "commits": [{"repoURL": "https://github.com/acme/app.git", "id": "deadbeef", "branch": "main"}],
            "charts": [{"repoURL": "oci://ghcr.io/acme/charts/app", "version": "0.3.1"}],
        }))
        .expect("fixture Freight");
        let mut freight = FreightCollection::new();
        freight.insert(reference);
        let data = EvalData {
            freight,
            requested: vec![OriginSubscriptions {
                origin: backend,
                images: vec!["ghcr.io/acme/backend".into()],
                charts: vec![("oci://ghcr.io/acme/charts/app".into(), String::new())],
                git: vec!["https://github.com/acme/app".into()],
                ..Default::default()
            }],
            secrets: Some(Arc::new(BTreeMap::from([(
                "db".to_owned(),
                BTreeMap::from([("password".to_owned(), "s3cr3t".to_owned())]),
            )]))),
            freight_metadata: BTreeMap::new(),
            freight_status: BTreeMap::new(),
            stage_metadata: BTreeMap::from([(
                "prod".to_owned(),
                json!({"owner": "ops"}).as_object().cloned().unwrap_or_default(),
            )]),
            steps: Some(vec![StepStatusEntry {
                alias: "clone".into(),
                status: "Succeeded".into(),
                continue_on_error: false,
            }]),
            current_alias: "update".into(),
        };
        let vars = json!({
            "ctx": {"project": "demo", "stage": "prod", "promotion": "p1", "targetFreight": {"name": "a", "origin": {"name": "backend"}}},
            "vars": {"repo": "ghcr.io/acme/backend", "n": 3, "list": ["a", "b"], "obj": {"k": "v"}, "s": "42", "t": true, "z": null},
            "outputs": {"update": {"commitMessage": "bump", "commit": "deadbeef"}},
            "task": {"outputs": {}},
            "stepMetas": {},
        });
        let map: BTreeMap<String, _> = vars
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
            .unwrap_or_default();
        Fixture {
            engine,
            scope: Scope::new(map, Arc::new(data)),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 4096 {
        return;
    }
    let f = fixture();
    let first = text.lines().next().unwrap_or("");

    // Translation alone (expr-lang -> minijinja).
    let _ = translate(text);
    let _ = translate_template(text);

    // Templates: compile, render, render as text.
    match f.engine.compile(first) {
        Ok(template) => {
            let _ = template.render(&f.scope);
            let _ = template.render_text(&f.scope);
        }
        Err(e) => {
            assert!(
                e.offset <= first.len(),
                "offset {} past the end ({}) of {first:?}: {e}",
                e.offset,
                first.len()
            );
            // The message must format without panicking.
            let _ = e.to_string();
        }
    }
    if let Ok(e) = f.engine.compile_expression(text) {
        let _ = e.eval(&f.scope);
        let _ = e.eval_bool(&f.scope);
    }
    match f.engine.compile_kargo_expression(text) {
        Ok(e) => {
            let _ = e.eval(&f.scope);
        }
        Err(e) => {
            let _ = e.to_string();
            if e.kind == ExprErrorKind::Translation {
                assert!(e.offset <= text.len(), "offset past the end: {e}");
            }
        }
    }

    // A config object: every string (at any depth) is a template.
    let config = json!({"path": first, "updates": [{"key": "a", "value": text}], "n": 5});
    let _ = f.engine.render_json(&config, &f.scope);
    let _ = f.engine.validate_json(&config);
});
