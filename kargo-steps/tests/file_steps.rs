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
    kargo_steps::register_builtins(&mut r).unwrap();
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
                        && !(ins.contains(bad) && !candidates.iter().any(|c| c.contains(bad))),
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
