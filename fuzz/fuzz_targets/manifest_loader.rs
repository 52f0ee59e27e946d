//! The manifest loader (kargo-core/src/loader/) and template validation
//! (kargo-core/src/validate.rs).
//!
//! Input: UTF-8 text, split on NUL bytes into up to four YAML files loaded as one set.
//! Checks: nothing panics; every error has a message; a set that loads validates (with
//! the built-in steps registered), serialises, and loads again from its own YAML with the
//! same number of resources.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use kargo_core::StepRegistry;
use kargo_core::expr::ExprEngine;
use kargo_core::loader::ManifestSet;
use kargo_core::validate::validate;
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static StepRegistry {
    static R: OnceLock<StepRegistry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = StepRegistry::new();
        kargo_steps::register_builtins(&mut r, std::env::temp_dir().join("kargo-rs-test-git-cache")).expect("built-in steps register once");
        r
    })
}

fn engine() -> &'static ExprEngine {
    static E: OnceLock<ExprEngine> = OnceLock::new();
    E.get_or_init(ExprEngine::new)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 16 * 1024 {
        return;
    }
    let files: Vec<(PathBuf, String)> = text
        .split('\0')
        .take(4)
        .enumerate()
        .map(|(i, t)| (PathBuf::from(format!("f{i}.yaml")), t.to_owned()))
        .collect();
    let set = match ManifestSet::from_files(files) {
        Ok(set) => set,
        Err(errors) => {
            assert!(!errors.is_empty(), "an empty error list");
            for e in &errors {
                assert!(!e.to_string().is_empty());
            }
            return;
        }
    };
    // Every accessor on a loaded set.
    for name in set.project_names() {
        let _ = set.project(name);
        let _ = set.project_config(name);
        for w in set.warehouses(name) {
            let _ = w.validate();
        }
        for s in set.stages(name) {
            let _ = s.validate();
        }
        let _ = set.promotion_tasks(name).count();
    }
    let _ = set.cluster_promotion_tasks().count();
    for (resource, location) in set.resources() {
        let _ = (resource, location.to_string());
    }
    if let Err(errors) = validate(&set, engine(), Some(registry())) {
        for e in &errors {
            assert!(!e.to_string().is_empty());
        }
    }
    // A loaded set serialises, and its YAML loads back to as many resources.
    let yaml = set
        .to_yaml()
        .unwrap_or_else(|e| panic!("a loaded set does not serialise: {e}"));
    match ManifestSet::from_yaml_str("roundtrip.yaml", &yaml) {
        Ok(again) => assert_eq!(
            again.len(),
            set.len(),
            "round trip changed the set:\n{yaml}"
        ),
        Err(e) => panic!("a loaded set's own YAML does not load again: {e}\n{yaml}"),
    }
});
