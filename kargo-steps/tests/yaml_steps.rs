//! Tests of the YAML steps: the golden corpus of `yaml-update` edits, a seeded property
//! test of the editor, `yaml-parse`, `yaml-merge`, and path safety of all three.
//!
//! Golden cases live in `tests/fixtures/yaml/<case>/`: `input.yaml`, `config.yaml` (the
//! step's `updates`) and either `expected.yaml` (compared byte for byte) or `error.txt`
//! (a substring of the expected error). `BLESS=1 cargo test -p kargo-steps --test
//! yaml_steps` rewrites the `expected.yaml` files from the editor's output (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kargo_core::step::{DynStep, StepContext, StepErrorKind};
use kargo_core::workdir::WorkDir;
use kargo_steps::yaml::{KeyPath, set_values};
use kargo_steps::{YamlMerge, YamlParse, YamlUpdate};
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Value as Json, json};

#[path = "support/yaml_gen.rs"]
mod yaml_gen;
use yaml_gen::{GARBAGE_PIECES, Rng, bases, escape, leaves, random_value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yaml")
}

fn yaml_to_json(text: &str) -> Json {
    let v: yaml_serde::Value = yaml_serde::from_str(text).unwrap();
    serde_json::to_value(untag(v)).unwrap()
}

/// Drops YAML tags (`!secret x` is the string `x`).
fn untag(v: yaml_serde::Value) -> yaml_serde::Value {
    use yaml_serde::Value as Y;
    match v {
        Y::Tagged(t) => untag(t.value),
        Y::Sequence(s) => Y::Sequence(s.into_iter().map(untag).collect()),
        Y::Mapping(m) => Y::Mapping(m.into_iter().map(|(k, v)| (k, untag(v))).collect()),
        other => other,
    }
}

/// Every document of `text`, as JSON.
fn all_docs(text: &str) -> Vec<Json> {
    use serde::Deserialize;
    yaml_serde::Deserializer::from_str(text)
        .map(|d| {
            let v = yaml_serde::Value::deserialize(d).unwrap();
            serde_json::to_value(untag(v)).unwrap()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// An independent oracle for "which bytes may change": the spans of the addressed scalars,
// found with a minimal walk of saphyr-parser's events.

#[derive(Debug)]
enum OFrame {
    Map {
        key: Option<String>,
        expect_key: bool,
    },
    Seq {
        index: usize,
    },
}

fn current_path(stack: &[OFrame]) -> Vec<String> {
    stack
        .iter()
        .map(|f| match f {
            OFrame::Map { key, .. } => key.clone().unwrap_or_default(),
            OFrame::Seq { index } => index.to_string(),
        })
        .collect()
}

fn advance(stack: &mut [OFrame]) {
    match stack.last_mut() {
        Some(OFrame::Map { expect_key, key }) => {
            if !*expect_key {
                *key = None;
            }
            *expect_key = !*expect_key;
        }
        Some(OFrame::Seq { index }) => *index += 1,
        None => {}
    }
}

fn char_to_byte(text: &str, ci: usize) -> usize {
    text.char_indices().nth(ci).map_or(text.len(), |(b, _)| b)
}

/// Byte ranges of `text` that the edits of `keys` may touch (first document).
fn value_regions(text: &str, keys: &[Vec<String>]) -> Vec<(usize, usize)> {
    let mut stack: Vec<OFrame> = Vec::new();
    let mut regions = Vec::new();
    let mut docs = 0;
    let mut prev_end = 0;
    let normalize = |p: &[String]| -> Vec<String> {
        p.iter()
            .map(|s| {
                s.strip_prefix('+')
                    .unwrap_or(s)
                    .parse::<usize>()
                    .map_or(s.clone(), |n| n.to_string())
            })
            .collect()
    };
    let keys: Vec<Vec<String>> = keys.iter().map(|k| normalize(k)).collect();
    for item in Parser::new_from_str(text) {
        let (ev, span) = item.unwrap();
        match ev {
            Event::DocumentStart(_) => docs += 1,
            Event::Scalar(v, style, _, _) => {
                if let Some(OFrame::Map {
                    expect_key: true,
                    key,
                }) = stack.last_mut()
                {
                    *key = Some(v.to_string());
                } else if docs == 1 && keys.contains(&normalize(&current_path(&stack))) {
                    let s = char_to_byte(text, span.start.index());
                    let e = char_to_byte(text, span.end.index());
                    let b = text.as_bytes();
                    let region = match style {
                        ScalarStyle::Plain if s == e => {
                            let at = if b.get(s) == Some(&b':') { s + 1 } else { s };
                            (at, at)
                        }
                        ScalarStyle::Plain => (s, e),
                        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                            let q = if style == ScalarStyle::DoubleQuoted {
                                b'"'
                            } else {
                                b'\''
                            };
                            let open = s + b[s..].iter().position(|c| *c == q).unwrap();
                            let mut i = open + 1;
                            loop {
                                let escaped = (b[i] == b'\\' && q == b'"')
                                    || (b[i] == q && q == b'\'' && b.get(i + 1) == Some(&q));
                                if escaped {
                                    i += 2;
                                } else if b[i] == q {
                                    break;
                                } else {
                                    i += 1;
                                }
                            }
                            (s, i + 1)
                        }
                        _ => (char_to_byte(text, prev_end), e),
                    };
                    regions.push(region);
                }
                advance(&mut stack);
            }
            Event::Alias(_) => advance(&mut stack),
            Event::MappingStart(..) => stack.push(OFrame::Map {
                key: None,
                expect_key: true,
            }),
            Event::SequenceStart(..) => stack.push(OFrame::Seq { index: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
        prev_end = span.end.index();
    }
    regions.sort();
    regions
}

/// Asserts that `output` equals `input` outside `regions` (byte ranges of `input`).
fn assert_only_regions_changed(input: &str, output: &str, regions: &[(usize, usize)], what: &str) {
    let mut fixed: Vec<&str> = Vec::new();
    let mut pos = 0;
    for &(s, e) in regions {
        fixed.push(&input[pos..s]);
        pos = e;
    }
    fixed.push(&input[pos..]);
    let last = fixed.pop().unwrap();
    assert!(
        output.ends_with(last),
        "{what}: the text after the last value changed\n--- input\n{input}\n--- output\n{output}"
    );
    let limit = output.len() - last.len();
    let mut at = 0;
    for (i, piece) in fixed.iter().enumerate() {
        if i == 0 {
            assert!(
                output.starts_with(piece),
                "{what}: the text before the first value changed\n--- input\n{input}\n--- output\n{output}"
            );
            at = piece.len();
            continue;
        }
        let found = output[at..limit].find(piece).unwrap_or_else(|| {
            panic!(
                "{what}: the text {piece:?} between values changed\n--- input\n{input}\n--- output\n{output}"
            )
        });
        at += found + piece.len();
    }
    assert!(at <= limit, "{what}: overlapping pieces");
}

// ---------------------------------------------------------------------------------------
// Golden corpus.

struct Case {
    name: String,
    dir: PathBuf,
    input: String,
    config: Json,
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            input: std::fs::read_to_string(dir.join("input.yaml")).unwrap(),
            config: yaml_to_json(&std::fs::read_to_string(dir.join("config.yaml")).unwrap()),
            dir,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn set_in(doc: &mut Json, path: &[String], value: Json) {
    let mut at = doc;
    for seg in path {
        at = match at {
            Json::Object(m) => m.get_mut(seg).unwrap(),
            Json::Array(a) => &mut a[seg.trim_start_matches('+').parse::<usize>().unwrap()],
            _ => panic!("bad path"),
        };
    }
    *at = value;
}

fn get_in<'a>(doc: &'a Json, path: &[String]) -> &'a Json {
    let mut at = doc;
    for seg in path {
        at = match at {
            Json::Object(m) => m
                .get(seg)
                .unwrap_or_else(|| panic!("no key {seg:?} of {path:?} in {doc}")),
            Json::Array(a) => &a[seg.trim_start_matches('+').parse::<usize>().unwrap()],
            _ => panic!("bad path"),
        };
    }
    at
}

fn same_value(got: &Json, want: &Json) -> bool {
    match (got, want) {
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    }
}

#[test]
fn golden_corpus() {
    let bless = std::env::var_os("BLESS").is_some();
    let all = cases();
    let ok_cases = all
        .iter()
        .filter(|c| !c.dir.join("error.txt").exists())
        .count();
    assert!(ok_cases >= 20, "the corpus has {ok_cases} success cases");
    for case in &all {
        let updates = match case.config["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| KeyPath::parse(u["key"].as_str().unwrap()).map(|k| (k, u["value"].clone())))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(u) => u,
            Err(e) => {
                let want = std::fs::read_to_string(case.dir.join("error.txt")).unwrap();
                assert!(
                    e.to_string().contains(want.trim()),
                    "{}: {e} does not contain {want}",
                    case.name
                );
                continue;
            }
        };
        let result = set_values(&case.input, &updates);
        if let Ok(want) = std::fs::read_to_string(case.dir.join("error.txt")) {
            let e = result.expect_err(&case.name);
            assert!(
                e.to_string().contains(want.trim()),
                "{}: {e}\n  does not contain\n{want}",
                case.name
            );
            continue;
        }
        let out = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let expected_path = case.dir.join("expected.yaml");
        if bless {
            std::fs::write(&expected_path, &out).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        assert_eq!(
            out, expected,
            "{}: output differs from expected.yaml",
            case.name
        );

        // Only the values' bytes differ between input and expected.
        let keys: Vec<Vec<String>> = updates.iter().map(|(k, _)| k.segments().to_vec()).collect();
        let regions = value_regions(&case.input, &keys);
        assert_eq!(regions.len(), {
            let mut k = keys.clone();
            k.sort();
            k.dedup();
            k.len()
        });
        assert_only_regions_changed(&case.input, &expected, &regions, &case.name);

        // The expected file parses, and holds the new values.
        let docs_in = all_docs(&case.input);
        let docs_out = all_docs(&expected);
        assert_eq!(docs_in.len(), docs_out.len(), "{}", case.name);
        assert_eq!(
            docs_in[1..],
            docs_out[1..],
            "{}: other documents",
            case.name
        );
        let mut want = docs_in[0].clone();
        for (k, v) in &updates {
            set_in(&mut want, k.segments(), v.clone());
        }
        for (k, _) in &updates {
            let got = get_in(&docs_out[0], k.segments());
            let v = get_in(&want, k.segments());
            assert!(same_value(got, v), "{}: {k} is {got}, want {v}", case.name);
        }
        if !case.input.contains('&') {
            assert_eq!(docs_out[0], want, "{}: other values changed", case.name);
        }
    }
}

fn run_step(
    step: &dyn DynStep,
    dir: &Path,
    config: Json,
) -> Result<kargo_core::StepOutcome, kargo_core::StepError> {
    let ctx = StepContext::new(WorkDir::new(dir).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(step.run_json(&ctx, config))
}

#[test]
fn golden_corpus_through_the_step() {
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("charts/app");
        std::fs::create_dir_all(&sub).unwrap();
        let file = sub.join("values.yaml");
        std::fs::write(&file, &case.input).unwrap();
        let mut config = case.config.clone();
        config["path"] = json!("charts/app/values.yaml");
        let result = run_step(&YamlUpdate, dir.path(), config);
        let after = std::fs::read_to_string(&file).unwrap();
        if case.dir.join("error.txt").exists() {
            let e = result.expect_err(&case.name);
            assert_ne!(e.kind, StepErrorKind::Cancelled);
            assert_eq!(
                after, case.input,
                "{}: the file changed on error",
                case.name
            );
        } else {
            let outcome = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let expected = std::fs::read_to_string(case.dir.join("expected.yaml")).unwrap();
            assert_eq!(after, expected, "{}", case.name);
            let msg = outcome.outputs["commitMessage"].as_str().unwrap();
            assert!(
                msg.starts_with("Updated charts/app/values.yaml\n\n- "),
                "{msg}"
            );
        }
        // No temporary files are left behind.
        let left: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("values.yaml")],
            "{}",
            case.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// yaml-update through the step.

#[test]
fn yaml_update_commit_message_and_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("values.yaml"),
        "image:\n  tag: fake\n  numStr: \"1\"\n  realNum: 1\nbig: 1\nnothing: x\n",
    )
    .unwrap();
    let out = run_step(
        &YamlUpdate,
        dir.path(),
        json!({"path": "values.yaml", "updates": [
            {"key": "image.tag", "value": "fake-tag"},
            {"key": "image.numStr", "value": "42"},
            {"key": "image.realNum", "value": 42},
            {"key": "big", "value": 1_000_000},
            {"key": "nothing", "value": null},
        ]}),
    )
    .unwrap();
    assert_eq!(
        out.outputs["commitMessage"],
        "Updated values.yaml\n\n- image.tag: fake-tag\n- image.numStr: \"42\"\n- image.realNum: 42\n- big: 1e+06\n- nothing: <nil>"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("values.yaml")).unwrap(),
        "image:\n  tag: fake-tag\n  numStr: \"42\"\n  realNum: 42\nbig: 1000000\nnothing: null\n"
    );

    let e = run_step(
        &YamlUpdate,
        dir.path(),
        json!({"path": "values.yaml", "updates": []}),
    )
    .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::InvalidConfig);
    let e = run_step(
        &YamlUpdate,
        dir.path(),
        json!({"path": "values.yaml", "updates": [{"key": "a", "value": 1}, {"key": "a:b", "value": 1}]}),
    )
    .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::InvalidConfig);
    assert!(e.to_string().contains("updates[1].key"), "{e}");
    let e = run_step(
        &YamlUpdate,
        dir.path(),
        json!({"path": "values.yaml", "updates": [{"key": "a"}]}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("value"), "{e}");
    let e = run_step(
        &YamlUpdate,
        dir.path(),
        json!({"path": "missing.yaml", "updates": [{"key": "a", "value": 1}]}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot read missing.yaml"), "{e}");
}

#[cfg(unix)]
#[test]
fn yaml_update_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.yaml");
    std::fs::write(&f, "a: 1\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    run_step(
        &YamlUpdate,
        dir.path(),
        json!({"path": "v.yaml", "updates": [{"key": "a", "value": 2}]}),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "a: 2\n");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

// ---------------------------------------------------------------------------------------
// yaml-parse.

#[test]
fn yaml_parse_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Chart.yaml"),
        "# chart\nname: shop\nversion: 0.3.7\nreplicas: 3\nbase: &b {region: eu}\nprod:\n  <<: *b\n  size: 2\ndependencies:\n  - name: redis\n    version: 17.3.2\n1: one\n---\nsecond: doc\n",
    )
    .unwrap();
    let out = run_step(
        &YamlParse,
        dir.path(),
        json!({"path": "Chart.yaml", "outputs": [
            {"name": "version", "fromExpression": "version"},
            {"name": "dep", "fromExpression": "dependencies[0].name + '@' + dependencies[0].version"},
            {"name": "double", "fromExpression": "replicas * 2"},
            {"name": "region", "fromExpression": "prod.region"},
            {"name": "all", "fromExpression": "dependencies"},
        ]}),
    )
    .unwrap();
    assert_eq!(out.outputs["version"], "0.3.7");
    assert_eq!(out.outputs["dep"], "redis@17.3.2");
    assert_eq!(out.outputs["double"], 6);
    assert_eq!(out.outputs["region"], "eu");
    assert_eq!(
        out.outputs["all"],
        json!([{"name": "redis", "version": "17.3.2"}])
    );

    let err = |config: Json| run_step(&YamlParse, dir.path(), config).unwrap_err();
    let e = err(
        json!({"path": "Chart.yaml", "outputs": [{"name": "x", "fromExpression": "missing.field"}]}),
    );
    assert!(e.to_string().contains("error evaluating expression"), "{e}");
    let e = err(json!({"path": "Chart.yaml", "outputs": [{"name": "x", "fromExpression": "a +"}]}));
    assert_eq!(e.kind, StepErrorKind::InvalidConfig, "{e}");
    let e = err(json!({"path": "Chart.yaml", "outputs": []}));
    assert_eq!(e.kind, StepErrorKind::InvalidConfig, "{e}");
    std::fs::write(dir.path().join("empty.yaml"), "").unwrap();
    let e = err(json!({"path": "empty.yaml", "outputs": [{"name": "x", "fromExpression": "a"}]}));
    assert!(
        e.to_string().contains("could not parse empty YAML file"),
        "{e}"
    );
    std::fs::write(dir.path().join("bad.yaml"), "a: [1\n").unwrap();
    let e = err(json!({"path": "bad.yaml", "outputs": [{"name": "x", "fromExpression": "a"}]}));
    assert!(e.to_string().contains("could not parse YAML file"), "{e}");
    std::fs::write(dir.path().join("list.yaml"), "- a\n").unwrap();
    let e = err(json!({"path": "list.yaml", "outputs": [{"name": "x", "fromExpression": "a"}]}));
    assert!(e.to_string().contains("must be a mapping"), "{e}");
}

// ---------------------------------------------------------------------------------------
// yaml-merge.

#[test]
fn yaml_merge_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str, s: &str| std::fs::write(dir.path().join(p), s).unwrap();
    w("empty.yaml", "");
    w(
        "base.yaml",
        "character:\n  name: Vader\n  ability: Force\n  affiliation: Empire\n  saberColor: red\nvehicles:\n- Star Destroyer\n",
    );
    w(
        "overlay.yaml",
        "character:\n  name: Luke # Alters character.name\n  affiliation: Rebel Alliance\n  saberColor: blue\n  siblings: # new\n  - Leia\nvehicles: # replaced\n- Millennium Falcon\n",
    );
    let out = run_step(
        &YamlMerge,
        dir.path(),
        json!({"inFiles": ["empty.yaml", "base.yaml", "missing.yaml", "overlay.yaml"],
               "outFile": "out/merged.yaml", "ignoreMissingFiles": true}),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/merged.yaml")).unwrap(),
        "character:\n  name: Luke\n  ability: Force\n  affiliation: Rebel Alliance\n  saberColor: blue\n  siblings:\n  - Leia\nvehicles:\n- Millennium Falcon\n"
    );
    assert_eq!(
        out.outputs["commitMessage"],
        "Merged 3 YAML files to out/merged.yaml\n- empty.yaml\n- base.yaml\n- overlay.yaml"
    );

    let out = run_step(
        &YamlMerge,
        dir.path(),
        json!({"inFiles": ["base.yaml"], "outFile": "one.yaml"}),
    )
    .unwrap();
    assert_eq!(out.outputs["commitMessage"], "Wrote base.yaml to one.yaml");

    let out = run_step(
        &YamlMerge,
        dir.path(),
        json!({"inFiles": ["nope.yaml"], "outFile": "none.yaml", "ignoreMissingFiles": true}),
    )
    .unwrap();
    assert!(out.outputs.is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("none.yaml")).unwrap(),
        ""
    );

    let e = run_step(
        &YamlMerge,
        dir.path(),
        json!({"inFiles": ["nope.yaml"], "outFile": "x.yaml"}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("input file \"nope.yaml\" not found"),
        "{e}"
    );
    w("bad.yaml", "a: [1\n");
    let e = run_step(
        &YamlMerge,
        dir.path(),
        json!({"inFiles": ["bad.yaml"], "outFile": "x.yaml"}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("error reading input file bad.yaml"),
        "{e}"
    );
    w("list.yaml", "character: [1]\n");
    let e = run_step(
        &YamlMerge,
        dir.path(),
        json!({"inFiles": ["base.yaml", "list.yaml"], "outFile": "x.yaml"}),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot merge a sequence with a mapping at character"),
        "{e}"
    );
    assert!(!dir.path().join("x.yaml").exists());
}

// ---------------------------------------------------------------------------------------
// Path safety: `..`, absolute paths and symlinks out of the work directory.

struct Sandbox {
    _root: tempfile::TempDir,
    work: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("values.yaml"), "a: 1\n").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.join("values.yaml"), work.join("link.yaml")).unwrap();
        std::os::unix::fs::symlink(&outside, work.join("linkdir")).unwrap();
    }
    Sandbox {
        _root: root,
        work,
        outside,
    }
}

fn outside_untouched(sb: &Sandbox) {
    let mut names: Vec<_> = std::fs::read_dir(&sb.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["values.yaml"]);
    assert_eq!(
        std::fs::read_to_string(sb.outside.join("values.yaml")).unwrap(),
        "a: 1\n"
    );
}

fn bad_paths(sb: &Sandbox) -> Vec<String> {
    let mut v = vec![
        "../outside/values.yaml".to_owned(),
        sb.outside
            .join("values.yaml")
            .to_string_lossy()
            .into_owned(),
    ];
    if cfg!(unix) {
        v.push("link.yaml".to_owned());
        v.push("linkdir/values.yaml".to_owned());
    }
    v
}

#[test]
fn yaml_update_refuses_paths_outside_the_work_dir() {
    let sb = sandbox();
    for p in bad_paths(&sb) {
        let e = run_step(
            &YamlUpdate,
            &sb.work,
            json!({"path": p, "updates": [{"key": "a", "value": 2}]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{p}: {e}");
        assert!(e.to_string().contains(&p), "{p}: {e}");
        outside_untouched(&sb);
    }
}

#[test]
fn yaml_parse_refuses_paths_outside_the_work_dir() {
    let sb = sandbox();
    for p in bad_paths(&sb) {
        let e = run_step(
            &YamlParse,
            &sb.work,
            json!({"path": p, "outputs": [{"name": "a", "fromExpression": "a"}]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{p}: {e}");
        outside_untouched(&sb);
    }
}

#[test]
fn yaml_merge_refuses_paths_outside_the_work_dir() {
    let sb = sandbox();
    std::fs::write(sb.work.join("in.yaml"), "b: 2\n").unwrap();
    for p in bad_paths(&sb) {
        let e = run_step(
            &YamlMerge,
            &sb.work,
            json!({"inFiles": [p.clone()], "outFile": "out.yaml"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{p}: {e}");
        let out_p = p.replace("values.yaml", "merged.yaml");
        let e = run_step(
            &YamlMerge,
            &sb.work,
            json!({"inFiles": ["in.yaml"], "outFile": out_p}),
        )
        .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{p}: {e}");
        let e = run_step(
            &YamlMerge,
            &sb.work,
            json!({"inFiles": ["in.yaml"], "outFile": p.clone()}),
        )
        .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal, "{p}: {e}");
        outside_untouched(&sb);
    }
    assert!(!sb.work.join("out.yaml").exists());
}

// ---------------------------------------------------------------------------------------
// Property test: random scalar values at random existing keys.

#[test]
fn property_random_values_at_random_keys() {
    // YAML_PROP_SEED / YAML_PROP_ITERATIONS explore further than the default run.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = Rng(env("YAML_PROP_SEED").unwrap_or(0x9E37_79B9_7F4A_7C15) | 1);
    let bases = bases();
    let parsed: Vec<Vec<Json>> = bases.iter().map(|b| all_docs(b)).collect();
    let mut all_leaves: Vec<Vec<Vec<String>>> = Vec::new();
    for docs in &parsed {
        let mut out = Vec::new();
        leaves(&docs[0], &mut Vec::new(), &mut out);
        all_leaves.push(out);
    }
    let iterations = env("YAML_PROP_ITERATIONS").unwrap_or(3000);
    for iter in 0..iterations {
        let b = rng.below(bases.len());
        let text = &bases[b];
        let n = 1 + rng.below(3);
        let mut chosen: Vec<Vec<String>> = Vec::new();
        let mut updates = Vec::new();
        for _ in 0..n {
            let path = rng.pick(&all_leaves[b]).clone();
            if chosen.contains(&path) {
                continue;
            }
            chosen.push(path.clone());
            updates.push((
                KeyPath::parse(&escape(&path)).unwrap(),
                random_value(&mut rng),
            ));
        }
        let what = format!("iteration {iter}, base {b}, updates {updates:?}");
        let out = set_values(text, &updates).unwrap_or_else(|e| panic!("{what}: {e}"));
        let docs_out = std::panic::catch_unwind(|| all_docs(&out))
            .unwrap_or_else(|_| panic!("{what}: output does not parse:\n{out}"));
        assert_eq!(docs_out.len(), parsed[b].len(), "{what}");
        assert_eq!(
            docs_out[1..],
            parsed[b][1..],
            "{what}: other documents changed"
        );
        let mut want = parsed[b][0].clone();
        for (k, v) in &updates {
            let got = get_in(&docs_out[0], k.segments());
            assert!(
                same_value(got, v),
                "{what}: {k} is {got:?}, want {v:?}\n{out}"
            );
            set_in(&mut want, k.segments(), v.clone());
        }
        // Numbers are compared by value; the rest exactly.
        for path in &all_leaves[b] {
            let (got, w) = (get_in(&docs_out[0], path), get_in(&want, path));
            assert!(
                same_value(got, w),
                "{what}: {path:?} is {got:?}, want {w:?}\n{out}"
            );
        }
        let regions = value_regions(text, &chosen);
        assert_only_regions_changed(text, &out, &regions, &what);
        // Saphyr (the editor's own parser) reads the same values.
        for (k, v) in &updates {
            if let Json::String(s) = v {
                assert!(
                    saphyr_value(&out, k.segments()).as_deref() == Some(s.as_str()),
                    "{what}: saphyr reads {:?} at {k}\n{out}",
                    saphyr_value(&out, k.segments())
                );
            }
        }
    }
}

/// The scalar at `path` of the first document, as saphyr-parser reads it.
fn saphyr_value(text: &str, path: &[String]) -> Option<String> {
    let mut stack: Vec<OFrame> = Vec::new();
    let mut docs = 0;
    for item in Parser::new_from_str(text) {
        let (ev, _) = item.ok()?;
        match ev {
            Event::DocumentStart(_) => docs += 1,
            Event::Scalar(v, _, _, _) => {
                if let Some(OFrame::Map {
                    expect_key: true,
                    key,
                }) = stack.last_mut()
                {
                    *key = Some(v.to_string());
                } else if docs == 1 && current_path(&stack) == path {
                    return Some(v.into_owned());
                }
                advance(&mut stack);
            }
            Event::Alias(_) => advance(&mut stack),
            Event::MappingStart(..) => stack.push(OFrame::Map {
                key: None,
                expect_key: true,
            }),
            Event::SequenceStart(..) => stack.push(OFrame::Seq { index: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
    }
    None
}

#[test]
fn never_panics_on_garbage() {
    let mut rng = Rng(42);
    let key = KeyPath::parse("a").unwrap();
    let key2 = KeyPath::parse("a.0.b").unwrap();
    // Deep nesting is parsed iteratively: an error or a result, never a stack overflow.
    let deep_flow = format!("a: {}", "[".repeat(100_000));
    assert!(set_values(&deep_flow, &[(key2.clone(), json!(1))]).is_err());
    let deep_block: String = (0..2_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let _ = set_values(&deep_block, &[(key.clone(), json!(1))]);
    for _ in 0..5000 {
        let n = rng.below(30);
        let text: String = (0..n).map(|_| *rng.pick(GARBAGE_PIECES)).collect();
        for k in [&key, &key2] {
            for v in [json!("x"), json!(1), json!("a\nb\n")] {
                let _ = set_values(&text, &[(k.clone(), v)]);
            }
        }
    }
}

/// Found by fuzzing (fuzz target `yaml_edit`): a tagged empty value in a flow mapping was
/// spliced over the closing `}`, and the edited text did not parse. Now it is refused.
#[test]
fn an_edit_that_would_break_the_yaml_is_refused() {
    let text = " {datac:!2}\n";
    let key = KeyPath::parse(r"datac\:!2").unwrap();
    let r = set_values(text, &[(key.clone(), json!("1.10"))]);
    match r {
        Err(kargo_steps::yaml::YamlEditError::Unsupported { .. }) => {}
        other => {
            let out = other.unwrap();
            assert!(
                Parser::new_from_str(&out).all(|e| e.is_ok()),
                "the edit returned YAML that does not parse: {out:?}"
            );
        }
    }
    assert_eq!(
        kargo_steps::yaml::set_values_saphyr(text, &[(key, json!("1.10"))]),
        set_values(
            text,
            &[(KeyPath::parse(r"datac\:!2").unwrap(), json!("1.10"))]
        )
    );
}

/// Found by fuzzing (fuzz target `yaml_edit`): in a flow mapping, the span of an entry's
/// empty value covers the `, ` after it; the edit replaced the separator and merged the
/// next entry into the key (`{a, b: 1}` became `{av2b: 1}`). Now it is refused.
#[test]
fn an_empty_value_in_a_flow_mapping_is_not_spliced_over_the_separator() {
    let text = "selector: {app: web, tier:@ \"frontend\", track: 'stable'}\n";
    let key = KeyPath::parse(r#"selector.tier\:@ "frontend""#).unwrap();
    match set_values(text, &[(key, json!("v2"))]) {
        Err(kargo_steps::yaml::YamlEditError::Unsupported { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let key = KeyPath::parse("selector.track").unwrap();
    assert_eq!(
        set_values(text, &[(key, json!("beta"))]).unwrap(),
        "selector: {app: web, tier:@ \"frontend\", track: 'beta'}\n"
    );
}

/// Found by fuzzing (`fuzz/corpus/yaml_edit/regress-lone-cr`): a lone `\r` (a line break
/// to YAML) ends a block scalar before a comment; the block's span missed it and the edit
/// glued the comment onto the new value (`v2#replicas: 1` became content). Such edits are
/// refused now: every string written must read back as written.
#[test]
fn a_block_scalar_edit_that_would_not_read_back_is_refused() {
    let text = "notes: |\r\n  line 1ne# release\r\n\r\r\n  limage:\r\n  repos rplee one\r\n  linewo\r\n\r#replicas: 1\r\n";
    let key = KeyPath::parse("notes").unwrap();
    for value in ["v2", "~"] {
        match set_values(text, &[(key.clone(), json!(value))]) {
            Err(kargo_steps::yaml::YamlEditError::Unsupported { reason, .. }) => {
                assert!(reason.contains("read back"), "{reason}");
            }
            other => panic!("{value:?}: expected a refusal, got {other:?}"),
        }
    }
    // A value ending in a line break puts the comment back on its own line.
    assert_eq!(
        set_values(text, &[(key.clone(), json!("multi\nline\n"))]).unwrap(),
        "notes: |\r\n  multi\r\n  line\r\n#replicas: 1\r\n"
    );
    // Without the lone `\r` the same edit works.
    let text = text.replace("\r\n\r#", "\r\n#");
    assert_eq!(
        set_values(&text, &[(key, json!("v2"))]).unwrap(),
        "notes: |-\r\n  v2\r\n#replicas: 1\r\n"
    );
}

/// Found by fuzzing (`fuzz/corpus/yaml_edit/regress-block-scalar-eof`): a block scalar
/// ending the file without a line break was rewritten with a value ending in `\n` but no
/// line break after its last line, which libyaml (and the YAML spec: clip chomping at the
/// end of input) reads without the final `\n`.
#[test]
fn a_block_scalar_at_the_end_of_a_file_keeps_the_final_line_break_of_its_value() {
    let text = "kind: ConfigMap\nnotes: |\n    old";
    let key = KeyPath::parse("notes").unwrap();
    let out = set_values(text, &[(key.clone(), json!("multi\nline\n"))]).unwrap();
    assert_eq!(out, "kind: ConfigMap\nnotes: |\n    multi\n    line\n");
    let back: serde_json::Value = yaml_serde::from_str(&out).unwrap();
    assert_eq!(back["notes"], json!("multi\nline\n"));
    // A value without a final line break keeps the file's missing one.
    let out = set_values(text, &[(key, json!("v2"))]).unwrap();
    assert_eq!(out, "kind: ConfigMap\nnotes: |-\n    v2");
}

/// Found by fuzzing (`fuzz/corpus/yaml_edit/regress-two-paths-one-value`): two key paths
/// naming one value (`"\u{b}c"` and `c`) with different new values; the later wins, as
/// everywhere, and the read-back check must not refuse the edit for the earlier one.
#[test]
fn two_key_paths_naming_one_value_the_later_wins() {
    let text = "a: 1\nc: old\n";
    let first = KeyPath::parse("\u{b}c").unwrap();
    let second = KeyPath::parse("c").unwrap();
    let updates = [(first, json!("one")), (second, json!("two"))];
    let fast = set_values(text, &updates);
    let reference = kargo_steps::yaml::set_values_saphyr(text, &updates);
    assert_eq!(fast, reference);
    assert_eq!(fast.unwrap(), "a: 1\nc: two\n");
}
