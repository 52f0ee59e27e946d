//! Integration tests of the file steps: `json-update`, `json-parse`, `toml-update`,
//! `toml-parse`, `copy`, `delete`, `file-write`, `tar` and `untar`.
//!
//! Golden cases live in `tests/fixtures/{json,toml}/<case>/`: `input.*`, `config.json`
//! (`updates`, the expected `commitMessage`, and `onlyValuesChange: false` when keys are
//! created) and `expected.*`, compared byte for byte. Run with `KARGO_BLESS=1` to (re)write
//! the expected files after a deliberate change, then review the diff.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use kargo_core::step::{DynStep, StepContext, StepError, StepErrorKind, StepOutcome, StepRegistry};
use kargo_core::workdir::WorkDir;
use kargo_steps::files::{ArchiveLimits, Tar, Untar};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Harness

/// A work directory and, next to it, an "outside" directory that must never change.
struct Env {
    _base: tempfile::TempDir,
    work: PathBuf,
    outside: PathBuf,
    ctx: StepContext,
}

fn env() -> Env {
    let base = tempfile::tempdir().unwrap();
    let work = base.path().join("work");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret.json"), "{\"tag\": \"outside\"}\n").unwrap();
    std::fs::write(outside.join("secret.toml"), "tag = \"outside\"\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "outside\n").unwrap();
    std::fs::write(outside.join("dir/file.txt"), "outside\n").unwrap();
    std::fs::write(
        outside.join("archive.tar"),
        tar_bytes(&[file_entry("f.txt", b"x")]),
    )
    .unwrap();
    let ctx = StepContext::new(WorkDir::new(&work).unwrap());
    let work = ctx.work_dir().root().to_path_buf();
    let outside = outside.canonicalize().unwrap();
    Env {
        _base: base,
        work,
        outside,
        ctx,
    }
}

impl Env {
    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.work.join(rel)).unwrap()
    }

    fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.work.join(rel)).is_ok()
    }

    #[cfg(unix)]
    fn symlink(&self, target: impl AsRef<Path>, rel: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    async fn run(&self, kind: &str, config: Value) -> Result<StepOutcome, StepError> {
        let registry = registry();
        let step = registry.get(kind).unwrap();
        step.run_json(&self.ctx, config).await
    }
}

fn registry() -> StepRegistry {
    let mut r = StepRegistry::new();
    kargo_steps::register_builtins(&mut r, std::env::temp_dir().join("kargo-rs-test-git-cache"))
        .unwrap();
    r
}

/// Every entry under `dir` (symbolic links not followed) with its content or target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let desc = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(&p).unwrap())
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn fixture_cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    cases
}

/// Compares `got` with the case's expected file (or writes it with `KARGO_BLESS=1`).
fn check_golden(case: &Path, file: &str, got: &[u8]) {
    let expected_path = case.join(file);
    if std::env::var_os("KARGO_BLESS").is_some() {
        std::fs::write(&expected_path, got).unwrap();
        return;
    }
    let expected = std::fs::read(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with KARGO_BLESS=1)", expected_path.display()));
    assert!(
        expected == got,
        "{}: output differs\n--- expected\n{}\n--- got\n{}",
        case.display(),
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(got)
    );
}

/// The texts a value may be written as (JSON, Go's HTML-safe JSON, TOML literal/basic).
fn renderings(v: &Value) -> Vec<String> {
    let mut out = vec![serde_json::to_string(v).unwrap()];
    match v {
        Value::String(s) => {
            out.push(s.clone());
            out.push(format!("'{s}'"));
            let html = serde_json::to_string(v)
                .unwrap()
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            out.push(html);
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.push(format!("{f:.1}"));
            }
        }
        _ => {}
    }
    out
}

/// The changed runs between two lines: (deleted, inserted) pairs around the characters of
/// a longest common subsequence.
fn char_hunks(a: &[char], b: &[char]) -> Vec<(String, String)> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut hunks = Vec::new();
    let (mut del, mut ins) = (String::new(), String::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            if !del.is_empty() || !ins.is_empty() {
                hunks.push((std::mem::take(&mut del), std::mem::take(&mut ins)));
            }
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ins.push(b[j]);
            j += 1;
        } else {
            del.push(a[i]);
            i += 1;
        }
    }
    if !del.is_empty() || !ins.is_empty() {
        hunks.push((del, ins));
    }
    hunks
}

/// Asserts that `before` and `after` differ only inside values: the same lines, and every
/// changed run of characters is part of one of the new values' renderings and touches no
/// comment, line ending or separator.
fn assert_only_values_changed(case: &Path, before: &str, after: &str, values: &[Value]) {
    let b: Vec<&str> = before.split('\n').collect();
    let a: Vec<&str> = after.split('\n').collect();
    assert_eq!(b.len(), a.len(), "{}: line count changed", case.display());
    let candidates: Vec<String> = values.iter().flat_map(renderings).collect();
    let mut changed = 0;
    for (lb, la) in b.iter().zip(&a) {
        if lb == la {
            continue;
        }
        changed += 1;
        let (cb, ca): (Vec<char>, Vec<char>) = (lb.chars().collect(), la.chars().collect());
        for (del, ins) in char_hunks(&cb, &ca) {
            assert!(
                ins.is_empty() || candidates.iter().any(|c| c.contains(&ins)),
                "{}: inserted {ins:?} (for {del:?}) is not part of a new value in {la:?}",
                case.display()
            );
            for bad in ["#", "//", "/*", "\r", ",", "="] {
                assert!(
                    !del.contains(bad)
                        && (!ins.contains(bad) || candidates.iter().any(|c| c.contains(bad))),
                    "{}: the change touches {bad:?} in {lb:?} -> {la:?}",
                    case.display()
                );
            }
        }
    }
    assert!(changed > 0, "{}: nothing changed", case.display());
}

// ---------------------------------------------------------------------------------------
// Registration

#[test]
fn all_file_steps_are_registered() {
    let r = registry();
    for kind in [
        "json-update",
        "json-parse",
        "toml-update",
        "toml-parse",
        "copy",
        "delete",
        "file-write",
        "tar",
        "untar",
    ] {
        assert!(r.get(kind).is_some(), "{kind}");
    }
}

// ---------------------------------------------------------------------------------------
// json-update / toml-update golden files

async fn golden(kind: &str, step: &str, file: &str) {
    for case in fixture_cases(kind) {
        let ext = Path::new(file).extension().unwrap().to_str().unwrap();
        let input = std::fs::read_to_string(case.join(format!("input.{ext}"))).unwrap();
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("config.json")).unwrap())
                .unwrap();
        let e = env();
        e.write(file, &input);
        let out = e
            .run(step, json!({"path": file, "updates": config["updates"]}))
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", case.display()));
        let got = e.read(file);
        check_golden(&case, &format!("expected.{ext}"), got.as_bytes());
        assert_eq!(
            out.outputs["commitMessage"],
            config["commitMessage"],
            "{}",
            case.display()
        );
        if config["onlyValuesChange"] != json!(false) {
            let values: Vec<Value> = config["updates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["value"].clone())
                .collect();
            assert_only_values_changed(&case, &input, &got, &values);
        }
    }
}

#[tokio::test]
async fn json_update_golden() {
    golden("json", "json-update", "app.json").await;
}

#[tokio::test]
async fn toml_update_golden() {
    golden("toml", "toml-update", "settings.toml").await;
}

// ---------------------------------------------------------------------------------------
// Raw tar archives (tar::Builder refuses the malicious names these tests need)

/// One raw tar entry: a GNU header with the name and link name written as given.
fn raw_entry(name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(data.len() as u64);
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file_entry(name: &str, data: &[u8]) -> Vec<u8> {
    raw_entry(name.as_bytes(), b'0', b"", data)
}

fn dir_entry(name: &str) -> Vec<u8> {
    raw_entry(name.as_bytes(), b'5', b"", b"")
}

fn link_entry(name: &str, target: &str) -> Vec<u8> {
    raw_entry(name.as_bytes(), b'2', target.as_bytes(), b"")
}

fn tar_bytes(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Entry names (and link targets) of a tar file, in order.
fn list_tar(bytes: &[u8]) -> Vec<String> {
    let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut a = tar::Archive::new(reader);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            match e.header().entry_type() {
                tar::EntryType::Symlink => format!(
                    "{name} -> {}",
                    String::from_utf8_lossy(&e.link_name_bytes().unwrap())
                ),
                tar::EntryType::Directory => format!("{}/", name.trim_end_matches('/')),
                _ => name,
            }
        })
        .collect()
}

#[test]
#[should_panic(expected = "self-test")]
fn the_value_only_check_catches_comment_changes() {
    assert_only_values_changed(
        Path::new("self-test"),
        "a = 1 # one\n",
        "a = 2 # two\n",
        &[json!(2)],
    );
}

// ---------------------------------------------------------------------------------------
// json-update / toml-update behaviour

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp") && !name.starts_with(".untar-"),
            "left behind: {name}"
        );
    }
}

#[tokio::test]
async fn json_update_refuses_bad_values_and_keys_without_writing() {
    let e = env();
    let original = "{\n  \"a\": {\"b\": 1}, // c\n  \"l\": []\n}\n";
    e.write("app.json", original);
    for (cfg, fragment) in [
        (
            json!({"path": "app.json", "updates": [{"key": "a.b", "value": {"x": 1}}]}),
            "not a scalar type",
        ),
        (
            json!({"path": "app.json", "updates": [{"key": "a.b", "value": null}]}),
            "not a scalar type",
        ),
        (
            json!({"path": "app.json", "updates": [{"key": "a.b", "value": [1]}]}),
            "not a scalar type",
        ),
        (
            json!({"path": "app.json", "updates": [{"key": "a.*", "value": 1}]}),
            "wildcard",
        ),
        (
            json!({"path": "app.json", "updates": []}),
            "at least one update",
        ),
        (
            json!({"path": "app.json", "updates": [{"key": "a", "value": 1}], "extra": 1}),
            "unknown field",
        ),
    ] {
        let err = e.run("json-update", cfg).await.unwrap_err();
        assert_eq!(err.kind, StepErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    // Valid config, but the second update cannot apply: nothing is written.
    let err = e
        .run(
            "json-update",
            json!({"path": "app.json", "updates": [
                {"key": "a.b", "value": 2},
                {"key": "l.x", "value": 1}
            ]}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("non-numeric key \"x\""), "{err}");
    assert_eq!(e.read("app.json"), original);
    e.write("bad.json", "{\"a\": ");
    let err = e
        .run(
            "json-update",
            json!({"path": "bad.json", "updates": [{"key": "a", "value": 1}]}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
    assert_eq!(e.read("bad.json"), "{\"a\": ");
    let err = e
        .run(
            "json-update",
            json!({"path": "missing.json", "updates": [{"key": "a", "value": 1}]}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    no_temp_files(&e.work);
}

#[cfg(unix)]
#[tokio::test]
async fn updates_keep_the_file_mode_and_leave_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    e.write("app.json", "{\"a\": 1}\n");
    e.write("app.toml", "a = 1\n");
    for f in ["app.json", "app.toml"] {
        std::fs::set_permissions(e.work.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    e.run(
        "json-update",
        json!({"path": "app.json", "updates": [{"key": "a", "value": 2}]}),
    )
    .await
    .unwrap();
    e.run(
        "toml-update",
        json!({"path": "app.toml", "updates": [{"key": "a", "value": 2}]}),
    )
    .await
    .unwrap();
    assert_eq!(e.read("app.json"), "{\"a\": 2}\n");
    assert_eq!(e.read("app.toml"), "a = 2\n");
    for f in ["app.json", "app.toml"] {
        let mode = std::fs::metadata(e.work.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644, "{f}");
    }
    no_temp_files(&e.work);
}

#[tokio::test]
async fn json_update_through_a_symlink_inside_the_work_dir_updates_the_target() {
    let e = env();
    e.write("real/app.json", "{\"a\": 1}\n");
    #[cfg(unix)]
    {
        e.symlink("real", "alias");
        e.run(
            "json-update",
            json!({"path": "alias/app.json", "updates": [{"key": "a", "value": 3}]}),
        )
        .await
        .unwrap();
        assert_eq!(e.read("real/app.json"), "{\"a\": 3}\n");
    }
}

#[tokio::test]
async fn toml_update_follows_kargo_errors() {
    let e = env();
    let original = "title = \"old\"\n[service]\nname = \"api\"\nports = [1, 2]\n";
    e.write("s.toml", original);
    for (updates, fragment) in [
        (
            json!([{"key": "missing", "value": "x"}]),
            "key path not found",
        ),
        (
            json!([{"key": "service", "value": "x"}]),
            "addresses Table instead of a scalar node",
        ),
        (
            json!([{"key": "service.ports", "value": 1}]),
            "addresses Array instead of a scalar node",
        ),
        (
            json!([{"key": "service.ports.5", "value": 1}]),
            "key path not found",
        ),
        (
            json!([{"key": "title", "value": "ok"}, {"key": "nope", "value": 1}]),
            "key path not found",
        ),
    ] {
        let err = e
            .run("toml-update", json!({"path": "s.toml", "updates": updates}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(fragment), "{err}");
        assert!(err.to_string().contains("s.toml"), "{err}");
    }
    for (updates, fragment) in [
        (
            json!([{"key": "title", "value": null}]),
            "not a TOML scalar type",
        ),
        (
            json!([{"key": "title", "value": {"a": 1}}]),
            "not a TOML scalar type",
        ),
        (
            json!([{"key": "title", "value": 18446744073709551615u64}]),
            "64-bit",
        ),
        (json!([{"key": "a..b", "value": 1}]), "empty key part"),
        (json!([{"key": "a:b", "value": 1}]), "unexpected colon"),
    ] {
        let err = e
            .run("toml-update", json!({"path": "s.toml", "updates": updates}))
            .await
            .unwrap_err();
        assert_eq!(err.kind, StepErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    e.write("bad.toml", "key = \n");
    let err = e
        .run(
            "toml-update",
            json!({"path": "bad.toml", "updates": [{"key": "key", "value": 1}]}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("error parsing input"), "{err}");
    assert_eq!(e.read("s.toml"), original);
    no_temp_files(&e.work);
}

// ---------------------------------------------------------------------------------------
// json-parse / toml-parse

#[tokio::test]
async fn json_parse_evaluates_kargo_expressions_over_the_document() {
    let e = env();
    e.write(
        "doc.json",
        r#"{
  // JSONC is accepted
  "image": {"repo": "ghcr.io/acme/app", "tag": "v1.2.3"},
  "replicas": 3,
  "enabled": true,
  "items": [{"name": "first"}, {"name": "second"}],
  "labels": {"app.kubernetes.io/name": "guestbook"},
}"#,
    );
    let out = e
        .run(
            "json-parse",
            json!({"path": "doc.json", "outputs": [
                {"name": "tag", "fromExpression": "image.tag"},
                {"name": "ref", "fromExpression": "image.repo + \":\" + image.tag"},
                {"name": "next", "fromExpression": "replicas + 1"},
                {"name": "mode", "fromExpression": "enabled ? \"on\" : \"off\""},
                {"name": "second", "fromExpression": "items[1].name"},
                {"name": "count", "fromExpression": "len(items)"},
                {"name": "label", "fromExpression": "labels[\"app.kubernetes.io/name\"]"},
                {"name": "image", "fromExpression": "image"},
                {"name": "isV1", "fromExpression": "image.tag startsWith \"v1.\""}
            ]}),
        )
        .await
        .unwrap();
    let got: Value = out
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        got,
        json!({
            "tag": "v1.2.3",
            "ref": "ghcr.io/acme/app:v1.2.3",
            "next": 4,
            "mode": "on",
            "second": "second",
            "count": 2,
            "label": "guestbook",
            "image": {"repo": "ghcr.io/acme/app", "tag": "v1.2.3"},
            "isV1": true
        })
    );
}

#[tokio::test]
async fn parse_steps_report_errors() {
    let e = env();
    e.write("doc.json", "{\"a\": 1}");
    e.write("arr.json", "[1, 2]");
    e.write("empty.json", "  \n");
    e.write("bad.json", "{\"a\": ");
    e.write("empty.toml", "");
    e.write("bad.toml", "a = \n");
    let out = |name: &str, expr: &str| json!([{"name": name, "fromExpression": expr}]);
    // Expression syntax is checked before the file is read.
    let err = e
        .run(
            "json-parse",
            json!({"path": "nope.json", "outputs": out("x", "a +")}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, StepErrorKind::InvalidConfig, "{err}");
    assert!(
        err.to_string().contains("outputs[0].fromExpression"),
        "{err}"
    );
    for (kind, path, outputs, fragment) in [
        (
            "json-parse",
            "doc.json",
            out("x", "missing.key"),
            "error evaluating expression \"missing.key\"",
        ),
        (
            "json-parse",
            "arr.json",
            out("x", "a"),
            "error evaluating expression",
        ),
        ("json-parse", "empty.json", out("x", "a"), "empty JSON file"),
        (
            "json-parse",
            "bad.json",
            out("x", "a"),
            "could not parse JSON file \"bad.json\"",
        ),
        ("json-parse", "nope.json", out("x", "a"), "nope.json"),
        ("toml-parse", "empty.toml", out("x", "a"), "empty TOML file"),
        (
            "toml-parse",
            "bad.toml",
            out("x", "a"),
            "could not parse TOML file \"bad.toml\"",
        ),
        ("json-parse", "doc.json", json!([]), "at least one output"),
        ("json-parse", "doc.json", out("", "a"), "outputs[0].name"),
    ] {
        let err = e
            .run(kind, json!({"path": path, "outputs": outputs}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(fragment), "{kind} {path}: {err}");
    }
    // A root that is not an object provides no variables, but constants still work.
    let r = e
        .run(
            "json-parse",
            json!({"path": "arr.json", "outputs": out("x", "1 + 1")}),
        )
        .await
        .unwrap();
    assert_eq!(r.outputs["x"], json!(2));
}

#[tokio::test]
async fn toml_parse_evaluates_kargo_expressions_over_the_document() {
    let e = env();
    e.write(
        "Cargo.toml",
        r#"# a manifest
[package]
name = "demo"
version = "1.4.2"
authors = ["a", "b"]

[package.metadata]
released = 1979-05-27T07:32:00Z
ratio = 0.5

[[bin]]
name = "first"

[[bin]]
name = "second"
inline = { x = 1, y = { z = true } }
"#,
    );
    let out = e
        .run(
            "toml-parse",
            json!({"path": "Cargo.toml", "outputs": [
                {"name": "version", "fromExpression": "package.version"},
                {"name": "bins", "fromExpression": "len(bin)"},
                {"name": "second", "fromExpression": "bin[1].name"},
                {"name": "z", "fromExpression": "bin[1].inline.y.z"},
                {"name": "released", "fromExpression": "package.metadata.released"},
                {"name": "triple", "fromExpression": "package.metadata.ratio * 3"},
                {"name": "authors", "fromExpression": "join(package.authors, \",\")"}
            ]}),
        )
        .await
        .unwrap();
    let got: Value = out
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        got,
        json!({
            "version": "1.4.2",
            "bins": 2,
            "second": "second",
            "z": true,
            "released": "1979-05-27T07:32:00Z",
            "triple": 1.5,
            "authors": "a,b"
        })
    );
}

// ---------------------------------------------------------------------------------------
// copy

#[cfg(unix)]
#[tokio::test]
async fn copy_copies_trees_with_ignore_rules_skipping_symlinks_and_git() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    e.write("src/a.yaml", "a");
    e.write("src/README.md", "readme");
    e.write("src/notes.md", "notes");
    e.write("src/tmp/scratch.txt", "scratch");
    e.write("src/nested/tmp/kept.txt", "kept");
    e.write("src/nested/deep/b.yaml", "b");
    e.write("src/.git/config", "[core]");
    e.write("src/run.sh", "#!/bin/sh");
    std::fs::set_permissions(
        e.work.join("src/run.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    e.symlink("a.yaml", "src/link.yaml");
    e.symlink(&e.outside, "src/outside-link");
    e.write("dest/existing.txt", "stays");
    e.write("dest/a.yaml", "old");
    e.run(
        "copy",
        json!({"inPath": "src", "outPath": "dest", "ignore": "# docs\n*.md\n!README.md\n/tmp/\n"}),
    )
    .await
    .unwrap();
    let got: Vec<String> = snapshot(&e.work.join("dest"))
        .into_iter()
        .map(|(p, d)| format!("{} {d}", p.display()))
        .collect();
    assert_eq!(
        got,
        [
            "README.md file [114, 101, 97, 100, 109, 101]",
            "a.yaml file [97]",
            "existing.txt file [115, 116, 97, 121, 115]",
            "nested dir",
            "nested/deep dir",
            "nested/deep/b.yaml file [98]",
            "nested/tmp dir",
            "nested/tmp/kept.txt file [107, 101, 112, 116]",
            "run.sh file [35, 33, 47, 98, 105, 110, 47, 115, 104]",
        ]
    );
    let mode = std::fs::metadata(e.work.join("dest/run.sh"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);
    no_temp_files(&e.work.join("dest"));
}

#[tokio::test]
async fn copy_copies_single_files_and_reports_problems() {
    let e = env();
    e.write("f.txt", "content");
    e.run(
        "copy",
        json!({"inPath": "f.txt", "outPath": "deep/new/g.txt"}),
    )
    .await
    .unwrap();
    assert_eq!(e.read("deep/new/g.txt"), "content");
    e.write("g.txt", "old");
    e.run("copy", json!({"inPath": "f.txt", "outPath": "g.txt"}))
        .await
        .unwrap();
    assert_eq!(e.read("g.txt"), "content");
    let err = e
        .run("copy", json!({"inPath": "missing", "outPath": "x"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    e.write("dir/x", "x");
    let err = e
        .run("copy", json!({"inPath": "dir", "outPath": "dir/sub"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("inside inPath"), "{err}");
    let err = e
        .run("copy", json!({"inPath": "dir", "outPath": "f.txt"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn copy_refuses_destination_symlinks_leading_outside() {
    let e = env();
    e.write("src/dir/file.txt", "pwned");
    e.write("dest/keep.txt", "k");
    e.symlink(e.outside.join("dir"), "dest/dir");
    let before = snapshot(&e.outside);
    let err = e
        .run("copy", json!({"inPath": "src", "outPath": "dest"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dest/dir"), "{err}");
    assert_eq!(snapshot(&e.outside), before);
}

// ---------------------------------------------------------------------------------------
// delete

#[cfg(unix)]
#[tokio::test]
async fn delete_removes_files_dirs_and_links_as_links() {
    let e = env();
    e.write("a.txt", "a");
    e.write("d/x/y.txt", "y");
    e.write("target.txt", "t");
    e.symlink("target.txt", "inside-link");
    e.symlink(&e.outside, "outside-link");
    e.symlink(e.outside.join("secret.txt"), "d2/outside-file-link");
    let before = snapshot(&e.outside);
    e.run(
        "delete",
        json!({"paths": ["a.txt", "d", "inside-link", "outside-link", "d2/outside-file-link", "not-there"]}),
    )
    .await
    .unwrap();
    for gone in [
        "a.txt",
        "d",
        "inside-link",
        "outside-link",
        "d2/outside-file-link",
    ] {
        assert!(!e.exists(gone), "{gone}");
    }
    assert_eq!(e.read("target.txt"), "t");
    assert_eq!(snapshot(&e.outside), before);
}

#[tokio::test]
async fn delete_strict_and_config_rules() {
    let e = env();
    let err = e
        .run("delete", json!({"path": "nope", "strict": true}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("path \"nope\" does not exist"),
        "{err}"
    );
    let err = e
        .run(
            "delete",
            json!({"path": "*.none", "pathsAreGlobs": true, "strict": true}),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no paths matched pattern \"*.none\""),
        "{err}"
    );
    for (cfg, fragment) in [
        (json!({"path": "a", "paths": ["b"]}), "mutually exclusive"),
        (json!({}), "one of `path` or `paths`"),
        (json!({"paths": []}), "at least one path"),
        (
            json!({"path": "a[", "pathsAreGlobs": true}),
            "invalid glob pattern \"a[\"",
        ),
    ] {
        let err = e.run("delete", cfg).await.unwrap_err();
        assert_eq!(err.kind, StepErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    for root in [".", "./", "a/.."] {
        let err = e.run("delete", json!({"path": root})).await.unwrap_err();
        assert!(err.to_string().contains("work directory itself"), "{err}");
    }
    assert!(e.work.is_dir());
}

#[tokio::test]
async fn delete_globs() {
    let e = env();
    for f in [
        "out/a.bak",
        "out/keep.yaml",
        "out/deep/b.bak",
        "out/deep/deeper/c.bak",
        "out/.hidden.bak",
        "other/d.bak",
        "tmp-1/x",
        "tmp-2/y",
    ] {
        e.write(f, "x");
    }
    e.run(
        "delete",
        json!({"paths": ["./out/**/*.bak", "tmp-*"], "pathsAreGlobs": true, "strict": true}),
    )
    .await
    .unwrap();
    let left: Vec<String> = snapshot(&e.work)
        .into_keys()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        left,
        [
            "other",
            "other/d.bak",
            "out",
            "out/deep",
            "out/deep/deeper",
            "out/keep.yaml"
        ]
    );
}

// ---------------------------------------------------------------------------------------
// file-write

#[cfg(unix)]
#[tokio::test]
async fn file_write_writes_atomically_with_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    e.run(
        "file-write",
        json!({"path": "new/dir/values.yaml", "contents": "a: 1\n"}),
    )
    .await
    .unwrap();
    assert_eq!(e.read("new/dir/values.yaml"), "a: 1\n");
    let mode = |p: &str| {
        std::fs::metadata(e.work.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("new/dir/values.yaml"), 0o600);
    assert_eq!(mode("new/dir") & 0o077, 0, "parents are private");
    let err = e
        .run(
            "file-write",
            json!({"path": "new/dir/values.yaml", "contents": "b"}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(e.read("new/dir/values.yaml"), "a: 1\n");
    e.run(
        "file-write",
        json!({"path": "new/dir/values.yaml", "contents": "b: 2\n", "overwrite": true, "permissions": "0644"}),
    )
    .await
    .unwrap();
    assert_eq!(e.read("new/dir/values.yaml"), "b: 2\n");
    assert_eq!(mode("new/dir/values.yaml"), 0o644);
    e.run("file-write", json!({"path": "empty.txt", "contents": ""}))
        .await
        .unwrap();
    assert_eq!(e.read("empty.txt"), "");
    no_temp_files(&e.work.join("new/dir"));
}

#[cfg(unix)]
#[tokio::test]
async fn file_write_refusals() {
    let e = env();
    e.write("real/f.txt", "x");
    e.symlink("real", "alias");
    e.write("repo/.git/config", "[core]");
    for (cfg, fragment) in [
        (
            json!({"path": "x", "contents": "", "permissions": "0755"}),
            "executable",
        ),
        (
            json!({"path": "x", "contents": "", "permissions": "0666"}),
            "world-writable",
        ),
        (
            json!({"path": "x", "contents": "", "permissions": "644"}),
            "^0[0-7]{3}$",
        ),
        (json!({"path": "x"}), "contents"),
    ] {
        let err = e.run("file-write", cfg).await.unwrap_err();
        assert_eq!(err.kind, StepErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    for (path, fragment) in [
        (".git/config", ".git directory is forbidden"),
        ("repo/.git/config", ".git directory is forbidden"),
        ("alias/f.txt", "symlinks are forbidden"),
        ("real", "is a directory"),
        (".", "names the work directory"),
    ] {
        let err = e
            .run(
                "file-write",
                json!({"path": path, "contents": "pwned", "overwrite": true}),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(fragment), "{path}: {err}");
        assert!(err.to_string().contains(path), "{path}: {err}");
    }
    assert_eq!(e.read("real/f.txt"), "x");
    assert_eq!(e.read("repo/.git/config"), "[core]");
}

// ---------------------------------------------------------------------------------------
// tar / untar

fn small_limits() -> ArchiveLimits {
    ArchiveLimits {
        max_total_bytes: 100,
        max_file_bytes: 50,
        max_entries: 10,
        max_stream_bytes: 64 * 1024,
    }
}

#[cfg(unix)]
#[tokio::test]
async fn tar_archives_directories_files_and_links() {
    let e = env();
    e.write("src/a.yaml", "a: 1\n");
    e.write("src/sub/b.yaml", "b: 2\n");
    e.write("src/.git/HEAD", "ref");
    e.write("src/skip.tmp", "t");
    e.symlink("a.yaml", "src/link");
    e.run("tar", json!({"inPath": "src", "outPath": "out/plain.tar"}))
        .await
        .unwrap();
    let plain = std::fs::read(e.work.join("out/plain.tar")).unwrap();
    assert_eq!(
        list_tar(&plain),
        ["a.yaml", "link -> a.yaml", "skip.tmp", "sub/", "sub/b.yaml"]
    );
    // With patterns, only the patterns apply (Kargo leaves `.git` in then).
    e.run(
        "tar",
        json!({"inPath": "src", "outPath": "out/z.tgz", "gzip": true, "ignore": "*.tmp\nsub/"}),
    )
    .await
    .unwrap();
    let gz = std::fs::read(e.work.join("out/z.tgz")).unwrap();
    assert!(gz.starts_with(&[0x1f, 0x8b]));
    assert_eq!(
        list_tar(&gz),
        [".git/", ".git/HEAD", "a.yaml", "link -> a.yaml"]
    );
    // A single file is archived under its base name.
    e.run(
        "tar",
        json!({"inPath": "src/sub/b.yaml", "outPath": "out/one.tar"}),
    )
    .await
    .unwrap();
    assert_eq!(
        list_tar(&std::fs::read(e.work.join("out/one.tar")).unwrap()),
        ["b.yaml"]
    );
    // The archive may be written inside the tree it archives.
    e.run("tar", json!({"inPath": "src", "outPath": "src/self.tar"}))
        .await
        .unwrap();
    let own = list_tar(&std::fs::read(e.work.join("src/self.tar")).unwrap());
    assert!(
        !own.iter()
            .any(|n| n.contains("self.tar") || n.ends_with(".tmp") && n != "skip.tmp"),
        "{own:?}"
    );
    no_temp_files(&e.work.join("out"));
}

#[cfg(unix)]
#[tokio::test]
async fn tar_then_untar_round_trips() {
    let e = env();
    e.write("src/a.yaml", "a: 1\n");
    e.write("src/sub/b.yaml", "b: 2\n");
    e.symlink("../a.yaml", "src/sub/up");
    e.run(
        "tar",
        json!({"inPath": "src", "outPath": "x.tgz", "gzip": true}),
    )
    .await
    .unwrap();
    e.write("dest/stale.txt", "old");
    e.run("untar", json!({"inPath": "x.tgz", "outPath": "dest"}))
        .await
        .unwrap();
    let got: Vec<String> = snapshot(&e.work.join("dest"))
        .into_iter()
        .map(|(p, d)| format!("{} {d}", p.display()))
        .collect();
    assert_eq!(
        got,
        [
            "a.yaml file [97, 58, 32, 49, 10]",
            "sub dir",
            "sub/b.yaml file [98, 58, 32, 50, 10]",
            "sub/up link -> ../a.yaml",
        ]
    );
    no_temp_files(&e.work);
}

#[cfg(unix)]
#[tokio::test]
async fn untar_strips_components_ignores_and_accepts_dot_slash_names() {
    let e = env();
    let archive = tar_bytes(&[
        dir_entry("./"),
        dir_entry("./pkg/"),
        file_entry("./pkg/Chart.yaml", b"name: demo\n"),
        file_entry("./pkg/README.md", b"readme"),
        dir_entry("./pkg/templates/"),
        file_entry("./pkg/templates/deploy.yaml", b"kind: Deployment\n"),
        file_entry("./pkg/.git/config", b"[core]"),
        link_entry("./pkg/templates/chart", "../Chart.yaml"),
        file_entry("top.txt", b"top"),
    ]);
    e.write("chart.tgz", gzip(&archive));
    e.run(
        "untar",
        json!({"inPath": "chart.tgz", "outPath": "out/chart", "stripComponents": 2, "ignore": "*.md"}),
    )
    .await
    .unwrap();
    let got: Vec<String> = snapshot(&e.work.join("out/chart"))
        .into_iter()
        .map(|(p, d)| format!("{} {d}", p.display()))
        .collect();
    assert_eq!(
        got,
        [
            ".git dir",
            ".git/config file [91, 99, 111, 114, 101, 93]",
            "Chart.yaml file [110, 97, 109, 101, 58, 32, 100, 101, 109, 111, 10]",
            "templates dir",
            "templates/chart link -> ../Chart.yaml",
            "templates/deploy.yaml file [107, 105, 110, 100, 58, 32, 68, 101, 112, 108, 111, 121, 109, 101, 110, 116, 10]",
        ]
    );
    // Without stripping or patterns, `.git` is left out and `./` is dropped.
    e.run(
        "untar",
        json!({"inPath": "chart.tgz", "outPath": "out/all"}),
    )
    .await
    .unwrap();
    assert!(e.exists("out/all/pkg/templates/deploy.yaml"));
    assert!(e.exists("out/all/top.txt"));
    assert!(!e.exists("out/all/pkg/.git"));
    let mtime = std::fs::metadata(e.work.join("out/all/top.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    );
}

/// Runs `untar` on `archive`; asserts it fails naming `entry` and `fragment`, leaves the
/// previous output and the outside untouched, and leaves no staging directory behind.
async fn assert_untar_refused(e: &Env, archive: &[u8], entry: &str, fragment: &str) {
    e.write("out/keep.txt", "keep");
    e.write("evil.tar", archive);
    let before_out = snapshot(&e.work.join("out"));
    let before_outside = snapshot(&e.outside);
    let err = e
        .run("untar", json!({"inPath": "evil.tar", "outPath": "out"}))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("{entry:?}")), "{entry}: {msg}");
    assert!(msg.contains(fragment), "{entry}: {msg}");
    assert!(!err.kind.is_retryable(), "{msg}");
    assert_eq!(snapshot(&e.work.join("out")), before_out, "{entry}");
    assert_eq!(snapshot(&e.outside), before_outside, "{entry}");
    assert!(
        !e.work.join("evil.txt").exists() && !e.work.parent().unwrap().join("evil.txt").exists()
    );
    no_temp_files(&e.work);
}

#[tokio::test]
async fn untar_refuses_traversal_absolute_paths_links_and_devices() {
    let e = env();
    let abs = format!("{}/evil.txt", e.outside.display());
    let abs_dir = e.outside.display().to_string();
    let ok = file_entry("fine.txt", b"fine");
    let cases: Vec<(Vec<u8>, String, &str)> = vec![
        (
            tar_bytes(&[ok.clone(), file_entry("../evil.txt", b"x")]),
            "../evil.txt".into(),
            "`..`",
        ),
        (
            tar_bytes(&[file_entry("a/../../evil.txt", b"x")]),
            "a/../../evil.txt".into(),
            "`..`",
        ),
        (
            tar_bytes(&[ok.clone(), file_entry(&abs, b"x")]),
            abs.clone(),
            "absolute",
        ),
        (
            tar_bytes(&[file_entry("a\\..\\evil.txt", b"x")]),
            "a\\..\\evil.txt".into(),
            "backslash",
        ),
        (
            tar_bytes(&[link_entry("up", "..")]),
            "up".into(),
            "leads outside",
        ),
        (
            tar_bytes(&[link_entry("sub/up", "../../outside")]),
            "sub/up".into(),
            "leads outside",
        ),
        (
            tar_bytes(&[link_entry("abs", &abs_dir)]),
            "abs".into(),
            "absolute",
        ),
        (
            tar_bytes(&[link_entry("sub/x", "y/../../z")]),
            "sub/x".into(),
            "after a name",
        ),
        (
            tar_bytes(&[
                link_entry("d", "sub"),
                dir_entry("sub/"),
                file_entry("d/evil.txt", b"x"),
            ]),
            "d/evil.txt".into(),
            "through the symbolic link",
        ),
        (
            tar_bytes(&[raw_entry(b"hl", b'1', abs.as_bytes(), b"")]),
            "hl".into(),
            "hard links",
        ),
        (
            tar_bytes(&[raw_entry(b"tty", b'3', b"", b"")]),
            "tty".into(),
            "device files",
        ),
        (
            tar_bytes(&[raw_entry(b"disk", b'4', b"", b"")]),
            "disk".into(),
            "device files",
        ),
        (
            tar_bytes(&[raw_entry(b"pipe", b'6', b"", b"")]),
            "pipe".into(),
            "FIFOs",
        ),
        (
            tar_bytes(&[raw_entry(b"contig", b'7', b"", b"")]),
            "contig".into(),
            "not allowed",
        ),
        (
            tar_bytes(&[raw_entry(b"odd", b'Z', b"", b"")]),
            "odd".into(),
            "not allowed",
        ),
    ];
    for (archive, entry, fragment) in &cases {
        assert_untar_refused(&e, archive, entry, fragment).await;
    }
    // The same through gzip.
    let (archive, entry, fragment) = &cases[0];
    assert_untar_refused(&e, &gzip(archive), entry, fragment).await;
}

#[tokio::test]
async fn untar_caps() {
    let e = env();
    // Kargo's default 50 MiB cap, checked from the header before any data is read.
    let mut big = tar::Header::new_gnu();
    big.set_path("big.bin").unwrap();
    big.set_size(60 * 1024 * 1024);
    big.set_entry_type(tar::EntryType::Regular);
    big.set_cksum();
    let mut archive = big.as_bytes().to_vec();
    archive.extend_from_slice(&[0u8; 1024]);
    assert_untar_refused(
        &e,
        &archive,
        "big.bin",
        "exceeds the maximum allowed single file size",
    )
    .await;

    let limits = small_limits();
    let untar = Untar::with_limits(limits);
    let run = |archive: Vec<u8>| {
        let e = &e;
        let untar = &untar;
        async move {
            e.write("a.tar", archive);
            untar
                .run_json(&e.ctx, json!({"inPath": "a.tar", "outPath": "capped"}))
                .await
        }
    };
    let file = |n: usize| file_entry(&format!("f{n}"), &[b'x'; 40]);
    assert!(run(tar_bytes(&[file(1), file(2)])).await.is_ok());
    let err = run(tar_bytes(&[file(1), file(2), file(3)]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("total size exceeds the maximum allowed size (100 bytes)"),
        "{err}"
    );
    let err = run(tar_bytes(&[file_entry("fat", &[b'x'; 51])]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"fat\" size (51 bytes)"), "{err}");
    let many: Vec<Vec<u8>> = (0..11).map(|i| dir_entry(&format!("d{i}/"))).collect();
    let err = run(tar_bytes(&many)).await.unwrap_err();
    assert!(err.to_string().contains("more than 10 entries"), "{err}");
    // Ignored data still counts against the stream cap.
    let err = run(tar_bytes(&[file_entry(".git/huge", &vec![0u8; 70 * 1024])]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
    // The earlier successful extraction is still in place.
    assert!(e.exists("capped/f1") && e.exists("capped/f2"));
    no_temp_files(&e.work);
}

#[tokio::test]
async fn tar_caps() {
    let e = env();
    // A sparse file just over Kargo's 50 MiB per-file cap.
    e.write("big/small.txt", "s");
    let f = std::fs::File::create(e.work.join("big/huge.bin")).unwrap();
    f.set_len(50 * 1024 * 1024 + 1).unwrap();
    let err = e
        .run("tar", json!({"inPath": "big", "outPath": "big.tar"}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"huge.bin\" size (52428801 bytes) exceeds"),
        "{err}"
    );
    assert!(!e.exists("big.tar"));
    no_temp_files(&e.work);

    let tar = Tar::with_limits(small_limits());
    for i in 0..3 {
        e.write(&format!("three/f{i}"), [b'x'; 40]);
    }
    let err = tar
        .run_json(&e.ctx, json!({"inPath": "three", "outPath": "t.tar"}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("total size exceeds the maximum allowed size (100 bytes)"),
        "{err}"
    );
    for i in 0..11 {
        e.write(&format!("many/d{i}/.keep"), "");
    }
    let err = tar
        .run_json(&e.ctx, json!({"inPath": "many", "outPath": "t.tar"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than 10 entries"), "{err}");
    assert!(!e.exists("t.tar"));
    no_temp_files(&e.work);
}

// ---------------------------------------------------------------------------------------
// Path safety: every step, every path field, three ways out

/// The ways out of the work directory for a file `name` of the outside directory: a `..`
/// escape, an absolute path, a symbolic link to the outside directory on the way
/// (`link/<name>`) and a symbolic link as the last component (`leaf-<name>` -> the
/// outside file, which may not exist).
fn escapes(e: &Env, name: &str) -> Vec<(&'static str, String)> {
    let leaf = format!("leaf-{name}");
    if !e.exists(&leaf) {
        #[cfg(unix)]
        e.symlink(e.outside.join(name), &leaf);
    }
    vec![
        ("dotdot", format!("../outside/{name}")),
        ("absolute", e.outside.join(name).display().to_string()),
        ("symlink", format!("link/{name}")),
        ("leaf symlink", leaf),
    ]
}

#[cfg(unix)]
#[tokio::test]
async fn every_step_refuses_paths_leading_outside_the_work_dir() {
    let e = env();
    e.symlink(&e.outside, "link");
    e.write("src.txt", "inside");
    e.write("src/file.txt", "inside");
    e.write("good.tar", tar_bytes(&[file_entry("pwned.txt", b"pwned")]));
    let upd = json!([{"key": "tag", "value": "pwned"}]);
    let outs = json!([{"name": "tag", "fromExpression": "tag"}]);
    // (step, the file or directory of the outside used, config with the path as `P`)
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "json-update",
            "secret.json",
            json!({"path": "P", "updates": upd}),
        ),
        (
            "json-parse",
            "secret.json",
            json!({"path": "P", "outputs": outs}),
        ),
        (
            "toml-update",
            "secret.toml",
            json!({"path": "P", "updates": upd}),
        ),
        (
            "toml-parse",
            "secret.toml",
            json!({"path": "P", "outputs": outs}),
        ),
        (
            "copy",
            "secret.txt",
            json!({"inPath": "P", "outPath": "copied.txt"}),
        ),
        (
            "copy",
            "secret.txt",
            json!({"inPath": "src.txt", "outPath": "P"}),
        ),
        ("copy", "dir", json!({"inPath": "src", "outPath": "P"})),
        ("delete", "secret.txt", json!({"path": "P"})),
        ("delete", "dir", json!({"paths": ["src.txt", "P"]})),
        (
            "file-write",
            "secret.txt",
            json!({"path": "P", "contents": "pwned", "overwrite": true}),
        ),
        (
            "file-write",
            "new.txt",
            json!({"path": "P", "contents": "pwned"}),
        ),
        ("tar", "dir", json!({"inPath": "P", "outPath": "out.tar"})),
        ("tar", "out.tar", json!({"inPath": "src", "outPath": "P"})),
        (
            "untar",
            "archive.tar",
            json!({"inPath": "P", "outPath": "extracted"}),
        ),
        (
            "untar",
            "dir",
            json!({"inPath": "good.tar", "outPath": "P"}),
        ),
    ];
    let mut checked = 0;
    for (step, name, template) in &cases {
        for (how, path) in escapes(&e, name) {
            if *step == "delete" && how == "leaf symlink" {
                // Deleting a link is allowed: it goes as a link (checked below).
                continue;
            }
            let cfg: Value = serde_json::from_str(
                &template
                    .to_string()
                    .replace("\"P\"", &json!(path).to_string()),
            )
            .unwrap();
            let before = snapshot(&e.outside);
            let err = e
                .run(step, cfg.clone())
                .await
                .expect_err(&format!("{step} {how}: {cfg} should fail"));
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{path:?}")),
                "{step} {how}: message does not name {path:?}: {msg}"
            );
            assert!(!err.kind.is_retryable(), "{step} {how}: {msg}");
            assert_eq!(
                snapshot(&e.outside),
                before,
                "{step} {how}: the outside changed"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len() * 4 - 2);
    let before = snapshot(&e.outside);
    e.run(
        "delete",
        json!({"paths": ["leaf-secret.txt", "leaf-dir"], "strict": true}),
    )
    .await
    .unwrap();
    assert!(!e.exists("leaf-secret.txt") && !e.exists("leaf-dir"));
    assert_eq!(snapshot(&e.outside), before);
    // Nothing was created from the outside's content either.
    for made in ["copied.txt", "out.tar", "extracted"] {
        assert!(!e.exists(made), "{made}");
    }
    assert_eq!(e.read("src.txt"), "inside");
    no_temp_files(&e.work);
}

#[cfg(unix)]
#[tokio::test]
async fn delete_globs_refuse_paths_leading_outside() {
    let e = env();
    e.symlink(&e.outside, "link");
    let before = snapshot(&e.outside);
    let abs = format!("{}/*", e.outside.display());
    for pattern in [
        "../outside/*",
        "../**",
        abs.as_str(),
        "link/*",
        "link/**/*.txt",
    ] {
        let err = e
            .run("delete", json!({"path": pattern, "pathsAreGlobs": true}))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("{pattern:?}")),
            "{pattern}: {err}"
        );
        assert_eq!(snapshot(&e.outside), before, "{pattern}");
    }
    // A glob matching the link itself deletes the link, not what it points to.
    e.run(
        "delete",
        json!({"path": "lin?", "pathsAreGlobs": true, "strict": true}),
    )
    .await
    .unwrap();
    assert!(!e.exists("link"));
    assert_eq!(snapshot(&e.outside), before);
}
