//! Helpers shared by the root crate's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

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
