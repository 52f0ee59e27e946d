//! The generated GitOps fixture repositories, cached under `<target>/bench-fixtures/`.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use crate::gitops_fixture::FixtureSpec;

/// The target directory this benchmark binary was built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/<profile>/deps/git_promotion-<hash>
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("bench binary lives in <target>/<profile>/deps")
        .to_owned()
}

/// Returns the cached fixture for `spec`, generating it on first use.
pub fn cached_fixture(size: &str, spec: &FixtureSpec) -> PathBuf {
    let key = format!(
        "{size}-{}x{}-v{}",
        spec.apps,
        spec.commits,
        crate::gitops_fixture::GENERATOR_VERSION
    );
    let dir = target_dir().join("bench-fixtures").join(key);
    let repo = dir.join("fixture.git");
    let stamp = dir.join("complete");
    if stamp.exists() {
        eprintln!("fixture: cached {}", repo.display());
        return repo;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create fixture dir");
    let start = Instant::now();
    crate::gitops_fixture::generate_bare(spec, &repo).expect("generate fixture");
    fs::write(&stamp, "").expect("write fixture stamp");
    eprintln!(
        "fixture: generated {} in {:.1?}",
        repo.display(),
        start.elapsed()
    );
    repo
}
