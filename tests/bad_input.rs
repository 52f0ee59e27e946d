//! The bad-input corpus (issue 9, "Hardening"): hostile or broken input to every entry
//! point that takes it must give a clear error (where: file, line, step, key path; and what
//! was expected) within a bounded time and memory, and must change nothing.
//!
//! Small cases are data files in `tests/bad-input/`; large ones (100 MiB files, 10,000
//! levels of nesting, 10,000-step templates) are generated here at test time. Every case
//! runs under [`bounded`], a generous wall-clock guard (a correctness bound, not a
//! benchmark); memory is bounded by limits in the library, and the promoter binary cases
//! also run under `ulimit -v`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kargo::core::expr::{ExprEngine, ExprErrorKind, Scope};
use kargo::core::loader::ManifestSet;
use kargo::core::step::{DynStep, StepContext};
use kargo::core::validate::validate;
use kargo::core::workdir::WorkDir;
use kargo::sources::chart::version::Constraint;
use kargo::sources::selection::TagFilter;
use kargo::steps::{
    JsonParse, JsonUpdate, TomlParse, TomlUpdate, YamlMerge, YamlParse, YamlUpdate,
};
use serde_json::{Value as Json, json};

/// The wall-clock guard of one case.
const LIMIT: Duration = Duration::from_secs(10);

/// The size of the "huge file" cases.
const HUGE: usize = 100 << 20;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad-input")
        .join(name)
}

/// Runs `f`, failing the test if it takes longer than [`LIMIT`].
fn bounded<T>(case: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    eprintln!("{case}: {took:?}");
    assert!(took < LIMIT, "{case} took {took:?} (limit {LIMIT:?})");
    out
}

/// Asserts that `message` holds every one of `needles`.
#[track_caller]
fn assert_says(message: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            message.contains(n),
            "the error does not say {n:?}:\n{message}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Manifests: loader and validation.

fn load_err(name: &str, text: &str) -> String {
    bounded(name, || match ManifestSet::from_yaml_str(name, text) {
        Ok(set) => match validate(&set, &ExprEngine::new(), None) {
            Ok(()) => panic!("{name}: loaded and validated"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    })
}

fn load_file_err(name: &str) -> String {
    let text = std::fs::read_to_string(corpus(name)).unwrap();
    load_err(name, &text)
}

#[test]
fn manifest_billion_laughs() {
    let e = load_file_err("billion-laughs.yaml");
    assert_says(
        &e,
        &[
            "billion-laughs.yaml",
            "document 2",
            "spec.promotionTemplate.spec.steps[0].config",
            "repetition limit exceeded",
        ],
    );
}

#[test]
fn manifest_deep_nesting() {
    for (what, open, close) in [("flow", "[", "]"), ("flow-map", "{a: ", "}")] {
        let depth = 10_000;
        let text = format!(
            "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata:\n  name: demo\n  labels: {}{}\n",
            open.repeat(depth),
            close.repeat(depth)
        );
        let e = load_err(&format!("deep-{what}.yaml"), &text);
        assert_says(
            &e,
            &[
                &format!("deep-{what}.yaml:5:"),
                "nested deeper than 128 levels",
            ],
        );
    }
    // Block style: 2,000 indented levels (the file grows with the square of the depth).
    let mut text = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata:\n  name: demo\n  labels:\n",
    );
    for i in 0..2_000 {
        text.push_str(&" ".repeat(4 + i));
        text.push_str("k:\n");
    }
    let e = load_err("deep-block.yaml", &text);
    assert_says(
        &e,
        &[
            "deep-block.yaml:132:",
            "metadata.labels.k.k",
            "recursion limit exceeded",
        ],
    );
}

#[test]
fn manifest_invalid_utf8_and_nul_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(corpus("invalid-utf8.yaml"), dir.path().join("bad.yaml")).unwrap();
    let e = bounded("invalid-utf8", || {
        ManifestSet::load_dir(dir.path()).unwrap_err().to_string()
    });
    assert_says(&e, &["bad.yaml", "not valid UTF-8"]);

    let text = std::fs::read_to_string(corpus("nul-byte.yaml")).unwrap();
    let e = load_err("nul-byte.yaml", &text);
    assert_says(
        &e,
        &["nul-byte.yaml:4:13:", "invalid YAML", "control characters"],
    );

    // A NUL byte in the directory path itself.
    let e = bounded("nul-path", || {
        ManifestSet::load_dir("kargo\0manifests")
            .unwrap_err()
            .to_string()
    });
    assert_says(&e, &["kargo", "cannot read manifest directory", "NUL byte"]);
}

#[test]
fn manifest_huge_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.yaml");
    write_huge_yaml(&file);
    let e = bounded("huge-manifest", || {
        ManifestSet::load_dir(dir.path()).unwrap_err().to_string()
    });
    assert_says(
        &e,
        &["huge.yaml", "too large", "the limit is 8388608 bytes"],
    );
}

/// A valid YAML document of [`HUGE`] bytes: one label with a long value.
fn write_huge_yaml(file: &Path) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    let head =
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata:\n  name: demo\n  labels:\n";
    f.write_all(head.as_bytes()).unwrap();
    let line = format!("    k{}: v\n", "x".repeat(100));
    let mut n = head.len();
    let mut i = 0u64;
    while n < HUGE {
        let l = format!("    k{i}{}: v\n", "x".repeat(100));
        f.write_all(l.as_bytes()).unwrap();
        n += l.len();
        i += 1;
    }
    drop(line);
    f.flush().unwrap();
}

#[test]
fn manifest_invalid_regexes() {
    let e = load_file_err("bad-regex.yaml");
    assert_says(
        &e,
        &[
            "bad-regex.yaml",
            "spec.subscriptions[0].image.allowTagsRegexes[0]",
            "spec.subscriptions[1].image.ignoreTagsRegexes[0]",
        ],
    );
}

#[test]
fn manifest_task_references_cannot_loop() {
    let e = load_file_err("task-self.yaml");
    assert_says(
        &e,
        &[
            "task-self.yaml:9:",
            "spec.steps[1].task",
            "must not reference another task",
        ],
    );
    let e = load_file_err("task-cycle.yaml");
    assert_says(
        &e,
        &[
            "task-cycle.yaml",
            "spec.steps[0].task",
            "must not reference another task",
        ],
    );
}

#[test]
fn manifest_ten_thousand_steps() {
    let mut text = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: app, namespace: demo}\nspec:\n  subscriptions:\n  - image: {repoURL: ghcr.io/acme/app}\n---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {name: dev, namespace: demo}\nspec:\n  requestedFreight:\n  - origin: {kind: Warehouse, name: app}\n    sources: {direct: true}\n  promotionTemplate:\n    spec:\n      steps:\n",
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "      - {{uses: compose-output, as: s{i}, config: {{v: \"$<< vars.x{i} >>\"}}}}\n"
        ));
    }
    let e = load_err("steps.yaml", &text);
    assert_says(
        &e,
        &[
            "steps.yaml",
            "spec.promotionTemplate.spec.steps",
            "10000 steps; the limit is 1000",
        ],
    );
}

/// Two tasks of 600 steps each, both used by one Stage: each list is under the limit, the
/// inflated template is not.
#[test]
fn manifest_inflated_steps_over_the_limit() {
    let mut text = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: app, namespace: demo}\nspec:\n  subscriptions:\n  - image: {repoURL: ghcr.io/acme/app}\n---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {name: dev, namespace: demo}\nspec:\n  requestedFreight:\n  - origin: {kind: Warehouse, name: app}\n    sources: {direct: true}\n  promotionTemplate:\n    spec:\n      steps:\n      - task: {name: a}\n      - task: {name: b}\n",
    );
    for task in ["a", "b"] {
        text.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: PromotionTask\nmetadata: {{name: {task}, namespace: demo}}\nspec:\n  steps:\n"
        ));
        for _ in 0..600 {
            text.push_str("  - uses: compose-output\n    config: {v: x}\n");
        }
    }
    let e = load_err("inflated.yaml", &text);
    assert_says(
        &e,
        &[
            "Stage demo/dev",
            "spec.promotionTemplate.spec.steps",
            "more than 1000 steps",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// The file-editing steps.

fn run_step(step: &dyn DynStep, dir: &Path, config: Json) -> Result<(), String> {
    let ctx = StepContext::new(WorkDir::new(dir).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(step.run_json(&ctx, config))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The editing steps and a config for `path`, for files of format `ext`.
fn steps_for(ext: &str, path: &str) -> Vec<(&'static str, Box<dyn DynStep>, Json)> {
    let updates = json!([{"key": "image.tag", "value": "2.0.0"}]);
    let outputs = json!([{"name": "tag", "fromExpression": "image.tag"}]);
    match ext {
        "yaml" => vec![
            (
                "yaml-update",
                Box::new(YamlUpdate) as Box<dyn DynStep>,
                json!({"path": path, "updates": updates}),
            ),
            (
                "yaml-parse",
                Box::new(YamlParse),
                json!({"path": path, "outputs": outputs}),
            ),
            (
                "yaml-merge",
                Box::new(YamlMerge),
                json!({"inFiles": [path], "outFile": "merged.yaml"}),
            ),
        ],
        "json" => vec![
            (
                "json-update",
                Box::new(JsonUpdate) as Box<dyn DynStep>,
                json!({"path": path, "updates": updates}),
            ),
            (
                "json-parse",
                Box::new(JsonParse),
                json!({"path": path, "outputs": outputs}),
            ),
        ],
        "toml" => vec![
            (
                "toml-update",
                Box::new(TomlUpdate) as Box<dyn DynStep>,
                json!({"path": path, "updates": updates}),
            ),
            (
                "toml-parse",
                Box::new(TomlParse),
                json!({"path": path, "outputs": outputs}),
            ),
        ],
        _ => unreachable!(),
    }
}

/// Runs every editing step of format `ext` on a file holding `bytes`; each must fail with
/// an error holding `needles`, and leave the file as it was.
fn steps_refuse(case: &str, ext: &str, bytes: &[u8], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("values.{ext}");
    let file = dir.path().join(&name);
    std::fs::write(&file, bytes).unwrap();
    for (step, runner, config) in steps_for(ext, &name) {
        let label = format!("{case} / {step}");
        let e = bounded(&label, || runner.run_json_blocking(dir.path(), config)).expect_err(&label);
        eprintln!("{label}: {e}");
        let mut all = vec![name.as_str()];
        all.extend_from_slice(needles);
        assert_says(&e, &all);
        let after = std::fs::read(&file).unwrap();
        assert!(after == bytes, "{label}: the file changed");
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "{label}: a stray file was left");
    }
}

trait RunBlocking {
    fn run_json_blocking(&self, dir: &Path, config: Json) -> Result<(), String>;
}

impl RunBlocking for Box<dyn DynStep> {
    fn run_json_blocking(&self, dir: &Path, config: Json) -> Result<(), String> {
        run_step(self.as_ref(), dir, config)
    }
}

#[test]
fn steps_billion_laughs() {
    let bytes = std::fs::read(corpus("billion-laughs-values.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, &bytes).unwrap();
    let mut steps = steps_for("yaml", "values.yaml").into_iter();
    // yaml-update edits the text without expanding aliases: the edit is harmless and done.
    let (step, runner, config) = steps.next().unwrap();
    bounded(step, || runner.run_json_blocking(dir.path(), config)).unwrap();
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        String::from_utf8(bytes.clone())
            .unwrap()
            .replace("tag: \"1.0.0\"", "tag: \"2.0.0\"")
    );
    // yaml-parse builds the whole value: the alias expansion stops at the parser's limit.
    let (step, runner, config) = steps.next().unwrap();
    let e = bounded(step, || runner.run_json_blocking(dir.path(), config)).unwrap_err();
    assert_says(&e, &["values.yaml", "repetition limit exceeded"]);
    // yaml-merge too; it writes nothing.
    let (step, runner, config) = steps.next().unwrap();
    let e = bounded(step, || runner.run_json_blocking(dir.path(), config)).unwrap_err();
    assert_says(&e, &["values.yaml", "repetition limit exceeded"]);
    assert!(!dir.path().join("merged.yaml").exists());
}

#[test]
fn steps_deep_nesting() {
    let depth = 10_000;
    let yaml = format!(
        "image: {{tag: 1}}\nx: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    steps_refuse(
        "deep yaml",
        "yaml",
        yaml.as_bytes(),
        &["line 2", "nested deeper than 128 levels"],
    );
    let js = format!(
        "{{\"image\": {{\"tag\": 1}}, \"x\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    steps_refuse(
        "deep json",
        "json",
        js.as_bytes(),
        &["line 1", "nesting depth exceeded"],
    );
    let toml = format!(
        "x = {}{}\n[image]\ntag = 1\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    steps_refuse("deep toml", "toml", toml.as_bytes(), &["line 1"]);
}

#[test]
fn steps_invalid_utf8() {
    steps_refuse(
        "utf8 yaml",
        "yaml",
        b"image:\n  tag: caf\xe9\xff\n",
        &["UTF-8"],
    );
    steps_refuse(
        "utf8 json",
        "json",
        b"{\"image\": {\"tag\": \"caf\xe9\xff\"}}",
        &["UTF-8"],
    );
    steps_refuse(
        "utf8 toml",
        "toml",
        b"[image]\ntag = \"caf\xe9\xff\"\n",
        &["UTF-8"],
    );
}

#[test]
fn steps_nul_bytes() {
    steps_refuse(
        "nul yaml",
        "yaml",
        b"image:\n  tag: a\0b\n",
        &["character", "line 2"],
    );
    // The JSON steps read like Kargo's sjson / gjson, which do not validate the parts of
    // the text they do not use: a raw NUL inside another string is kept as it is.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    let before = b"{\"image\": {\"tag\": \"1\"}, \"x\": \"a\0b\"}";
    std::fs::write(&file, before).unwrap();
    for (step, runner, config) in steps_for("json", "values.json") {
        bounded(step, || runner.run_json_blocking(dir.path(), config)).unwrap();
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"{\"image\": {\"tag\": \"2.0.0\"}, \"x\": \"a\0b\"}"
    );
    steps_refuse(
        "nul toml",
        "toml",
        b"[image]\ntag = \"a\0b\"\n",
        &["line 2"],
    );
    // A NUL byte in the configured path.
    let dir = tempfile::tempdir().unwrap();
    for ext in ["yaml", "json", "toml"] {
        for (step, runner, config) in steps_for(ext, "values\0.x") {
            let e = bounded(step, || runner.run_json_blocking(dir.path(), config)).expect_err(step);
            assert_says(&e, &["path", "NUL"]);
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn steps_huge_files() {
    for ext in ["yaml", "json", "toml"] {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("values.{ext}");
        let file = dir.path().join(&name);
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(HUGE as u64).unwrap();
        drop(f);
        for (step, runner, config) in steps_for(ext, &name) {
            let e = bounded(step, || runner.run_json_blocking(dir.path(), config)).expect_err(step);
            eprintln!("{step}: {e}");
            assert_says(&e, &[&name, "the limit is 33554432 bytes"]);
        }
        assert_eq!(std::fs::metadata(&file).unwrap().len(), HUGE as u64);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

// ---------------------------------------------------------------------------------------
// Expressions (the sandbox's own tests are in kargo-core/src/expr/tests.rs).

#[test]
fn expressions_that_loop_or_grow() {
    let engine = ExprEngine::new();
    for (t, kind) in [
        (
            "$<< range(100000) | map('string') | join >>",
            ExprErrorKind::OutOfFuel,
        ),
        ("$<< 'x' * 99999999 >>", ExprErrorKind::OutOfFuel),
        (
            "$<< ((range(100000) | list) * 1000) | list | length >>",
            ExprErrorKind::OutOfFuel,
        ),
        ("$<< ('ab' * 3000000) >>", ExprErrorKind::TooLarge),
    ] {
        let e = bounded(t, || engine.render_str(t, &Scope::empty())).unwrap_err();
        assert_eq!(e.kind, kind, "{t}: {e}");
    }
    // Deep nesting in the expression itself.
    let t = format!("$<< {}1{} >>", "(".repeat(10_000), ")".repeat(10_000));
    let e = bounded("deep parens", || engine.render_str(&t, &Scope::empty())).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Syntax, "{e}");
}

// ---------------------------------------------------------------------------------------
// Selection rules.

#[test]
fn selection_rules() {
    let e = bounded("bad regex", || {
        TagFilter::new(&["^v(1".to_owned()], &[]).unwrap_err()
    });
    assert_says(&e.to_string(), &["allowTagsRegexes", "^v(1"]);
    let e = bounded("huge regex", || {
        TagFilter::new(&[], &["((a{1000}){1000}){1000}".to_owned()]).unwrap_err()
    });
    assert_says(&e.to_string(), &["ignoreTagsRegexes", "size limit"]);
    for c in [
        ">=1.0.0 <<2",
        "^1 || ~~~~",
        &"1.".repeat(100_000),
        &"^1.0.0 || ".repeat(100_000),
    ] {
        let r = bounded("constraint", || Constraint::parse(c));
        let e = r.expect_err("parsed");
        assert!(!e.to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// The promoter CLI: file-level cases, under a virtual memory limit.

/// Runs `promoter --manifests <dir> --state <state> validate` under `ulimit -v`.
fn promoter_validate(manifests: &Path, state: &Path) -> (i32, String) {
    let bin = support::promoter_bin();
    let out = bounded("promoter validate", || {
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 2097152 && exec \"$0\" --manifests \"$1\" --state \"$2\" validate")
            .arg(&bin)
            .arg(manifests)
            .arg(state)
            .env("NO_COLOR", "1")
            .env_remove("KARGO_LOG")
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn promoter_refuses_bad_files() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    for (case, make) in [
        (
            "billion-laughs",
            Box::new(|d: &Path| {
                std::fs::copy(corpus("billion-laughs.yaml"), d.join("a.yaml")).unwrap();
            }) as Box<dyn Fn(&Path)>,
        ),
        (
            "invalid-utf8",
            Box::new(|d: &Path| {
                std::fs::copy(corpus("invalid-utf8.yaml"), d.join("a.yaml")).unwrap();
            }),
        ),
        (
            "huge",
            Box::new(|d: &Path| write_huge_yaml(&d.join("a.yaml"))),
        ),
        (
            "deep",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join("a.yaml"),
                    format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
                )
                .unwrap();
            }),
        ),
    ] {
        let manifests = root.path().join(case);
        std::fs::create_dir_all(&manifests).unwrap();
        make(&manifests);
        let (code, stderr) = promoter_validate(&manifests, &state);
        assert_eq!(code, 2, "{case}: exit {code}\n{stderr}");
        assert_says(&stderr, &["a.yaml"]);
        assert!(!state.exists(), "{case}: the state directory was created");
    }
}
