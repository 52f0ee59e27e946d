//! Helpers shared by the root crate's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

pub mod browser;
pub mod demo_steps;
pub mod sse;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example binary, `target/<profile>/examples/promoter`, next to this test's
/// `target/<profile>/deps/promoter-xxxx`. Plain `cargo test` builds examples, but
/// `cargo test --test promoter` does not, so it is (re)built once per test process with
/// the same cargo, profile and target directory (a no-op when it is up to date).
pub fn promoter_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is not in target/<profile>/deps");
        let target_dir = profile_dir.parent().unwrap();
        let mut build = Command::new(env!("CARGO"));
        build
            .args([
                "build",
                "--quiet",
                "--example",
                "promoter",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        match build.status() {
            Ok(s) if s.success() => {}
            other => eprintln!("`cargo build --example promoter` did not succeed: {other:?}"),
        }
        let bin = profile_dir
            .join("examples")
            .join(format!("promoter{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "the promoter example binary is missing at {}: build it with `cargo build \
             --example promoter` (plain `cargo test` builds it too)",
            bin.display()
        );
        bin
    })
    .clone()
}

/// Runs the git CLI in `dir` with a fixed identity and no user or system configuration;
/// panics with git's stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small seeded generator (splitmix64): the chaos and crash tests need reproducible
/// choices only.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.upto(hi - lo)
    }
}

/// Commits what `seed_dir` holds as `main` ("Initial layout") and pushes it to a new bare
/// repository at `bare`.
pub fn seed_bare_repo(seed_dir: &Path, bare: &Path) {
    git(seed_dir, &["init", "-q", "-b", "main"]);
    git(seed_dir, &["add", "."]);
    git(seed_dir, &["commit", "-q", "-m", "Initial layout"]);
    git(
        seed_dir,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(seed_dir, &["push", "-q", bare.to_str().unwrap(), "main"]);
}

/// A new, empty bare repository at `bare` and a clone of it at `clone`, on `main`.
pub fn empty_bare_repo_with_clone(bare: &Path, clone: &Path) {
    let parent = clone.parent().unwrap();
    git(
        parent,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        parent,
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    git(clone, &["checkout", "-q", "-b", "main"]);
}

/// Sends one HTTP/1.1 request to `addr` (blocking) and returns the status and body.
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut msg = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        msg.push_str(&format!("{n}: {v}\r\n"));
    }
    msg.push_str("\r\n");
    msg.push_str(body);
    s.write_all(msg.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}
