//! Path safety of every step that writes (or removes) files.
//!
//! 1. Escapes: for every writing step, a path that leaves the work directory (`..`, an
//!    absolute path, a symbolic link to an outside directory) is refused with an error that
//!    names the path, and the outside directory is left byte for byte as it was.
//! 2. Symbolic-link races: a thread swaps a directory of the work tree with a symbolic
//!    link to the outside directory (an atomic `renameat2(RENAME_EXCHANGE)`, so the name
//!    always exists) as fast as it can while a step writes below that directory hundreds of
//!    times. The sandbox's check and the write are separate system calls, so the swap
//!    regularly lands between them; the outside directory must still never change.
//! 3. Archives: `untar` entries that climb out, are absolute, are links leading outside
//!    (and files written through them), hard links, device files and FIFOs are refused
//!    with a message naming the entry, nothing is written outside, and nothing of the
//!    refused archive is left in the output directory.
//!
//! Run with `ci/test.sh -p kargo-steps --test path_safety` (no servers are needed; plain
//! `cargo test -p kargo-steps --test path_safety` works too).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kargo_core::step::{StepContext, StepError, StepOutcome, StepRegistry};
use kargo_core::workdir::WorkDir;
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
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    for (name, content) in [
        ("values.yaml", "image:\n  tag: outside\n"),
        ("app.json", "{\"tag\": \"outside\"}\n"),
        ("settings.toml", "tag = \"outside\"\n"),
        ("f.txt", "outside\n"),
        ("victim.txt", "outside\n"),
        ("kustomization.yaml", "images: []\n"),
        (
            "Chart.yaml",
            "apiVersion: v2\nname: outside\nversion: 1.0.0\n",
        ),
        ("sub/file.txt", "outside\n"),
    ] {
        std::fs::write(outside.join(name), content).unwrap();
    }
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

/// Every entry under `dir` (links not followed) with its content, link target and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let mode = meta.permissions().mode();
            let desc = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {:?}", std::fs::read(&p).unwrap())
            };
            out.insert(rel, desc);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Paths leading outside

/// The steps that write, each with a config writing to (or removing, or checking out at)
/// `p`, and the fixtures it needs inside the work directory.
fn writers(p: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "file-write",
            json!({"path": format!("{p}/f.txt"), "contents": "x", "overwrite": true}),
        ),
        (
            "copy",
            json!({"inPath": "src/a.txt", "outPath": format!("{p}/f.txt")}),
        ),
        (
            "copy",
            json!({"inPath": "src", "outPath": format!("{p}/sub")}),
        ),
        ("delete", json!({"path": format!("{p}/victim.txt")})),
        ("delete", json!({"path": format!("{p}/sub")})),
        (
            "tar",
            json!({"inPath": "src", "outPath": format!("{p}/a.tar")}),
        ),
        (
            "untar",
            json!({"inPath": "a.tar", "outPath": format!("{p}/sub")}),
        ),
        (
            "yaml-update",
            json!({"path": format!("{p}/values.yaml"),
                   "updates": [{"key": "image.tag", "value": "inside"}]}),
        ),
        (
            "json-update",
            json!({"path": format!("{p}/app.json"),
                   "updates": [{"key": "tag", "value": "inside"}]}),
        ),
        (
            "toml-update",
            json!({"path": format!("{p}/settings.toml"),
                   "updates": [{"key": "tag", "value": "inside"}]}),
        ),
        (
            "yaml-merge",
            json!({"inFiles": ["src/values.yaml"], "outFile": format!("{p}/values.yaml")}),
        ),
        (
            "kustomize-set-image",
            json!({"path": p, "images": [{"image": "nginx", "tag": "1.2.3"}]}),
        ),
        (
            "flux-update-images",
            json!({"path": p, "policies": [{"policy": "flux-system:app", "repoURL": "nginx"}]}),
        ),
        (
            "helm-update-chart",
            json!({"path": p, "charts": [{"repository": "https://charts.invalid",
                   "name": "dep", "version": "1.0.0"}]}),
        ),
        (
            "kustomize-build",
            json!({"path": "base", "outPath": format!("{p}/out.yaml")}),
        ),
        (
            "helm-template",
            json!({"path": "chart", "outPath": format!("{p}/out.yaml"), "releaseName": "r"}),
        ),
        (
            "git-clone",
            json!({"repoURL": "http://127.0.0.1:9/none.git",
                   "checkout": [{"path": format!("{p}/co"), "branch": "main"}]}),
        ),
        ("git-clear", json!({"path": p})),
    ]
}

fn seed_inputs(e: &Env) {
    e.write("src/a.txt", "inside\n");
    e.write("src/values.yaml", "image:\n  tag: inside\n");
    e.write("base/kustomization.yaml", "resources: []\n");
    e.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: chart\nversion: 0.1.0\n",
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "in.txt", &b"hi"[..]).unwrap();
    e.write("a.tar", b.into_inner().unwrap());
}

#[tokio::test]
async fn every_writing_step_refuses_paths_leading_outside() {
    let e = env();
    seed_inputs(&e);
    e.symlink(&e.outside, "out-link");
    e.symlink(e.outside.join("sub"), "nested/deeper-link");
    let outside = e.outside.display().to_string();
    let before = snapshot(&e.outside);
    let escapes = [
        ("../outside".to_owned(), "`..`"),
        ("sub/../../outside".to_owned(), "`..`"),
        (outside.clone(), "absolute"),
        ("out-link".to_owned(), "symbolic link"),
        ("nested/deeper-link".to_owned(), "symbolic link"),
    ];
    let mut checked = 0;
    for (p, fragment) in &escapes {
        for (kind, config) in writers(p) {
            let err = e
                .run(kind, config.clone())
                .await
                .expect_err(&format!("{kind} {config} must be refused"));
            let msg = err.to_string();
            // The error names the configured path (or the link in it) and says why.
            let names_path =
                msg.contains(p.as_str()) || (p.contains("link") && msg.contains("link"));
            assert!(names_path, "{kind} with {p:?}: {msg}");
            let says_why = msg.contains(fragment)
                || msg.contains("outside")
                || msg.contains("not allowed")
                || msg.contains("symlinks are forbidden")
                // git-clear only works on checkouts this promotion made.
                || (kind == "git-clear" && msg.contains("not a git checkout"));
            assert!(says_why, "{kind} with {p:?}: {msg}");
            assert!(!err.kind.is_retryable(), "{kind} with {p:?}: {msg}");
            assert_eq!(
                snapshot(&e.outside),
                before,
                "{kind} with {p:?} changed the outside directory"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, escapes.len() * writers("x").len());
    // The links themselves are still there: nothing was "fixed" by deleting them.
    assert!(
        std::fs::symlink_metadata(e.work.join("out-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test]
async fn a_symlinked_file_leading_outside_is_neither_followed_nor_overwritten_outside() {
    let e = env();
    seed_inputs(&e);
    for name in ["values.yaml", "app.json", "settings.toml", "f.txt"] {
        e.symlink(e.outside.join(name), &format!("dir/{name}"));
    }
    let before = snapshot(&e.outside);
    for (kind, config) in writers("dir") {
        let result = e.run(kind, config.clone()).await;
        assert_eq!(
            snapshot(&e.outside),
            before,
            "{kind} {config} changed the outside directory ({result:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Symbolic-link races

/// Swaps `work/d` (a real directory) and `work/d.swap` (a link to the outside directory)
/// atomically in a loop until stopped; returns the number of swaps.
fn start_swapper(work: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let a = work.join("d");
    let b = work.join("d.swap");
    std::thread::spawn(move || {
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &a,
                rustix::fs::CWD,
                &b,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .unwrap();
            swaps += 1;
            std::thread::yield_now();
        }
        // Leave the real directory at `d`.
        if std::fs::symlink_metadata(&a)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &a,
                rustix::fs::CWD,
                &b,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .unwrap();
        }
        swaps
    })
}

/// Runs `kind` with `config` `runs` times while `d` flips between the real directory and
/// a link to the outside; the outside directory must never change. `prepare` runs before
/// every attempt (with the swapper paused) to restore the inputs.
async fn race(kind: &str, config: Value, prepare: impl Fn(&Path)) {
    let e = env();
    seed_inputs(&e);
    std::fs::create_dir_all(e.work.join("d")).unwrap();
    std::os::unix::fs::symlink(&e.outside, e.work.join("d.swap")).unwrap();
    let before = snapshot(&e.outside);
    let runs: u64 = std::env::var("KARGO_RACE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let (ok, refused, caught) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let mut swaps = 0;
    for round in 0..runs {
        prepare(&e.work.join("d"));
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = start_swapper(&e.work, stop.clone());
        let result = e.run(kind, config.clone()).await;
        stop.store(true, Ordering::Relaxed);
        let result_text = match &result {
            Ok(_) => "succeeded".to_owned(),
            Err(e) => e.to_string(),
        };
        swaps += swapper.join().unwrap();
        match result {
            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
            Err(err) if err.to_string().contains("refusing to follow") => {
                caught.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => refused.fetch_add(1, Ordering::Relaxed),
        };
        let now = snapshot(&e.outside);
        assert!(
            now == before,
            "{kind}: round {round} ({result_text}): the outside directory changed through \
             the swapped link: {:?}",
            changes(&before, &now)
        );
    }
    eprintln!(
        "{kind}: {runs} runs, {swaps} swaps: {} succeeded, {} refused by the sandbox, \
         {} caught after the check",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        caught.load(Ordering::Relaxed)
    );
    assert!(swaps > runs, "the swapper barely ran");
    assert!(ok.load(Ordering::Relaxed) > 0, "{kind} never succeeded");
}

/// The entries that differ between two snapshots: (path, before, after).
fn changes(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> Vec<(PathBuf, Option<String>, Option<String>)> {
    let mut keys: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| ((*k).clone(), before.get(k).cloned(), after.get(k).cloned()))
        .collect()
}

fn restore(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_file_write() {
    race(
        "file-write",
        json!({"path": "d/new/f.txt", "contents": "x", "overwrite": true}),
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_copy() {
    race("copy", json!({"inPath": "src", "outPath": "d/sub"}), |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_delete() {
    race("delete", json!({"path": "d/victim.txt"}), |d| {
        restore(d, &[("victim.txt", "inside\n")]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_delete_directory() {
    race("delete", json!({"path": "d/sub"}), |d| {
        restore(d, &[("sub/file.txt", "inside\n")]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_yaml_update() {
    race(
        "yaml-update",
        json!({"path": "d/values.yaml", "updates": [{"key": "image.tag", "value": "new"}]}),
        |d| restore(d, &[("values.yaml", "image:\n  tag: inside\n")]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_json_update() {
    race(
        "json-update",
        json!({"path": "d/app.json", "updates": [{"key": "tag", "value": "new"}]}),
        |d| restore(d, &[("app.json", "{\"tag\": \"inside\"}\n")]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_toml_update() {
    race(
        "toml-update",
        json!({"path": "d/settings.toml", "updates": [{"key": "tag", "value": "new"}]}),
        |d| restore(d, &[("settings.toml", "tag = \"inside\"\n")]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_tar_and_untar() {
    race(
        "tar",
        json!({"inPath": "src", "outPath": "d/a.tar"}),
        |_| {},
    )
    .await;
    race(
        "untar",
        json!({"inPath": "a.tar", "outPath": "d/sub/x"}),
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_kustomize_set_image() {
    race(
        "kustomize-set-image",
        json!({"path": "d", "images": [{"image": "nginx", "tag": "1.2.3"}]}),
        |d| restore(d, &[("kustomization.yaml", "images: []\n")]),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Archive entries

/// One raw tar entry: a GNU header with the name and link name written as given
/// (`tar::Builder` refuses the malicious names these tests need).
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

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    raw_entry(name.as_bytes(), b'0', b"", data)
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[tokio::test]
async fn untar_refuses_dangerous_entries_and_leaves_nothing_behind() {
    let e = env();
    let outside = e.outside.display().to_string();
    let fine = file("fine.txt", b"fine");
    let cases: Vec<(&str, Vec<u8>, String, &str)> = vec![
        (
            "dot-dot",
            archive(&[fine.clone(), file("../outside/evil.txt", b"x")]),
            "../outside/evil.txt".into(),
            "`..`",
        ),
        (
            "dot-dot inside a name",
            archive(&[fine.clone(), file("a/../../../outside/evil.txt", b"x")]),
            "a/../../../outside/evil.txt".into(),
            "`..`",
        ),
        (
            "absolute",
            archive(&[fine.clone(), file(&format!("{outside}/evil.txt"), b"x")]),
            format!("{outside}/evil.txt"),
            "absolute",
        ),
        (
            "symlink to an absolute path",
            archive(&[
                fine.clone(),
                raw_entry(b"link", b'2', outside.as_bytes(), b""),
            ]),
            "link".into(),
            "absolute",
        ),
        (
            "symlink climbing out",
            archive(&[
                fine.clone(),
                raw_entry(b"a/link", b'2', b"../../outside", b""),
            ]),
            "a/link".into(),
            "outside",
        ),
        (
            "file written through an earlier (inside) symlink",
            archive(&[
                fine.clone(),
                raw_entry(b"dir", b'5', b"", b""),
                raw_entry(b"link", b'2', b"dir", b""),
                file("link/evil.txt", b"x"),
            ]),
            "link/evil.txt".into(),
            "symbolic link",
        ),
        (
            "hard link to an outside file",
            archive(&[
                fine.clone(),
                raw_entry(b"hard", b'1', format!("{outside}/f.txt").as_bytes(), b""),
            ]),
            "hard".into(),
            "hard links",
        ),
        (
            "hard link inside the archive",
            archive(&[fine.clone(), raw_entry(b"hard", b'1', b"fine.txt", b"")]),
            "hard".into(),
            "hard links",
        ),
        (
            "character device",
            archive(&[fine.clone(), raw_entry(b"null", b'3', b"", b"")]),
            "null".into(),
            "device",
        ),
        (
            "block device",
            archive(&[fine.clone(), raw_entry(b"sda", b'4', b"", b"")]),
            "sda".into(),
            "device",
        ),
        (
            "FIFO",
            archive(&[fine.clone(), raw_entry(b"pipe", b'6', b"", b"")]),
            "pipe".into(),
            "FIFO",
        ),
    ];
    let before_outside = snapshot(&e.outside);
    for (what, bytes, entry, fragment) in cases {
        for existing in [false, true] {
            let _ = std::fs::remove_dir_all(e.work.join("out"));
            if existing {
                e.write("out/keep.txt", "keep");
            }
            e.write("evil.tar", &bytes);
            let before_work = snapshot(&e.work);
            let err = e
                .run("untar", json!({"inPath": "evil.tar", "outPath": "out"}))
                .await
                .expect_err(what);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{entry:?}")), "{what}: {msg}");
            assert!(msg.contains(fragment), "{what}: {msg}");
            assert!(!err.kind.is_retryable(), "{what}: {msg}");
            // Nothing half-written: the work tree (including `out`) is as before and no
            // staging directory is left; nothing appeared outside.
            assert_eq!(snapshot(&e.work), before_work, "{what}");
            assert_eq!(snapshot(&e.outside), before_outside, "{what}");
        }
    }
}

#[tokio::test]
async fn untar_into_an_output_path_through_a_symlink_leading_outside_is_refused() {
    let e = env();
    e.write("a.tar", archive(&[file("x.txt", b"x")]));
    e.symlink(&e.outside, "link");
    let before = snapshot(&e.outside);
    for out in ["link", "link/new", "link/sub"] {
        let err = e
            .run("untar", json!({"inPath": "a.tar", "outPath": out}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("link"), "{err}");
        assert_eq!(snapshot(&e.outside), before, "{out}");
    }
}

// ---------------------------------------------------------------------------------------
// git-clear: the checkout's directory swapped for a link while it is cleared

fn git_cli(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A local bare repository holding `a.txt` and `sub/b.txt`; returns (its dir, file:// URL).
fn local_repo() -> (tempfile::TempDir, String) {
    let repo = tempfile::tempdir().unwrap();
    let seed = repo.path().join("seed");
    let bare = repo.path().join("bare.git");
    std::fs::create_dir_all(seed.join("sub")).unwrap();
    std::fs::write(seed.join("a.txt"), "a\n").unwrap();
    std::fs::write(seed.join("sub/b.txt"), "b\n").unwrap();
    git_cli(
        repo.path(),
        &["init", "-q", "--bare", "-b", "main", "bare.git"],
    );
    git_cli(&seed, &["init", "-q", "-b", "main"]);
    git_cli(&seed, &["add", "-A"]);
    git_cli(&seed, &["commit", "-q", "-m", "seed"]);
    git_cli(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let url = format!("file://{}", bare.display());
    (repo, url)
}

fn git_registry(cache: &Path) -> StepRegistry {
    let mut reg = StepRegistry::new();
    kargo_steps::register_builtins_with(&mut reg, &kargo_steps::BuiltinOptions::new(cache))
        .unwrap();
    reg
}

/// `d/co` is a fresh (lazy) clone of `url` in a new promotion context.
async fn clone_into_d(e: &Env, reg: &StepRegistry, url: &str) -> StepContext {
    let _ = std::fs::remove_dir_all(e.work.join("d/co"));
    let ctx = StepContext::new(WorkDir::new(&e.work).unwrap());
    reg.get("git-clone")
        .unwrap()
        .run_json(
            &ctx,
            json!({"repoURL": url, "checkout": [{"branch": "main", "path": "d/co"}]}),
        )
        .await
        .unwrap();
    ctx
}

fn git_race_env() -> (Env, BTreeMap<PathBuf, String>) {
    let e = env();
    // The outside directory has a `co` like the checkout.
    std::fs::create_dir_all(e.outside.join("co/sub")).unwrap();
    std::fs::write(e.outside.join("co/a.txt"), "outside\n").unwrap();
    std::fs::write(e.outside.join("co/sub/b.txt"), "outside\n").unwrap();
    std::fs::create_dir_all(e.work.join("d")).unwrap();
    std::os::unix::fs::symlink(&e.outside, e.work.join("d.swap")).unwrap();
    let before = snapshot(&e.outside);
    (e, before)
}

fn git_runs() -> u64 {
    std::env::var("KARGO_RACE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
        / 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_git_clear() {
    let (e, before) = git_race_env();
    let (_repo, url) = local_repo();
    let cache = tempfile::tempdir().unwrap();
    let reg = git_registry(cache.path());
    let runs = git_runs();
    let (mut ok, mut failed, mut swaps) = (0, 0, 0);
    for round in 0..runs {
        let ctx = clone_into_d(&e, &reg, &url).await;
        // Put the files on disk (the checkout is lazy).
        assert_eq!(
            std::fs::read_to_string(ctx.path("d/co/sub/b.txt").unwrap()).unwrap(),
            "b\n"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = start_swapper(&e.work, stop.clone());
        let result = reg
            .get("git-clear")
            .unwrap()
            .run_json(&ctx, json!({"path": "d/co"}))
            .await;
        stop.store(true, Ordering::Relaxed);
        swaps += swapper.join().unwrap();
        match &result {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        let now = snapshot(&e.outside);
        assert!(
            now == before,
            "git-clear: round {round} ({result:?}): the outside directory changed: {:?}",
            changes(&before, &now)
        );
    }
    eprintln!("git-clear: {runs} runs, {swaps} swaps: {ok} succeeded, {failed} failed");
    assert!(ok > 0, "git-clear never succeeded");
}

/// The lazy work tree writes files when a path inside it is first resolved; the
/// checkout's directory flips meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_git_checkout_materialization() {
    let (e, before) = git_race_env();
    let (_repo, url) = local_repo();
    let cache = tempfile::tempdir().unwrap();
    let reg = git_registry(cache.path());
    let runs = git_runs();
    let (mut ok, mut failed, mut swaps) = (0, 0, 0);
    for round in 0..runs {
        let ctx = clone_into_d(&e, &reg, &url).await;
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = start_swapper(&e.work, stop.clone());
        let results: Vec<_> = ["d/co/sub/b.txt", "d/co/a.txt", "d/co"]
            .iter()
            .map(|p| ctx.path(p))
            .collect();
        stop.store(true, Ordering::Relaxed);
        swaps += swapper.join().unwrap();
        for r in &results {
            match r {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        let now = snapshot(&e.outside);
        assert!(
            now == before,
            "checkout: round {round} ({results:?}): the outside directory changed: {:?}",
            changes(&before, &now)
        );
    }
    eprintln!("checkout: {runs} rounds, {swaps} swaps: {ok} paths resolved, {failed} refused");
    assert!(ok > 0, "no path ever resolved");
}
