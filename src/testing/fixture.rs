//! The fixture GitOps repository both harnesses share: a directory committed into a
//! temporary bare repository, and reading back what promotions pushed to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kargo_git::{Edit, Git, GitConfig, NoAuth, ObjectId, Signature};

use super::{FIXTURE_BRANCH, TestError, io};

/// The fixture repository.
pub(super) struct Fixture {
    pub(super) url: String,
    pub(super) seed: ObjectId,
}

pub(super) fn test_git_config(cache: &Path) -> GitConfig {
    let mut c = GitConfig::new(cache);
    c.retry_initial = Duration::from_millis(10);
    c.retry_max = Duration::from_millis(100);
    c
}

pub(super) fn inspect_config(config: &GitConfig) -> GitConfig {
    let mut c = config.clone();
    c.cache_dir = config.cache_dir.with_extension("inspect");
    c
}

/// Makes `bare` a bare repository whose `main` holds the files of `dir`.
pub(super) fn seed_fixture(dir: &Path, bare: &Path, tmp: &Path) -> Result<Fixture, TestError> {
    let mut edits = Vec::new();
    collect_files(dir, "", &mut edits)?;
    if edits.is_empty() {
        return Err(TestError::Io {
            context: format!("fixture directory {}", dir.display()),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "it holds no file"),
        });
    }
    edits.sort_by(|a, b| edit_path(a).cmp(edit_path(b)));
    let out = std::process::Command::new("git")
        .args(["init", "-q", "--bare", "-b", FIXTURE_BRANCH])
        .arg(bare)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .map_err(io("cannot run `git init` (is git installed?)"))?;
    if !out.status.success() {
        return Err(TestError::Io {
            context: "git init --bare".into(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        });
    }
    let url = format!("file://{}", bare.display());
    let git = Git::new(test_git_config(&tmp.join("seed-cache")), Arc::new(NoAuth));
    let who = Signature {
        name: "Fixture".into(),
        email: "fixture@example.com".into(),
        time: Some(1_700_000_000),
    };
    let pushed =
        git.mirror(&url)?
            .push_edits(FIXTURE_BRANCH, &edits, "fixture", &who, &who, true)?;
    Ok(Fixture {
        url,
        seed: pushed.commit,
    })
}

fn edit_path(e: &Edit) -> &str {
    match e {
        Edit::Write { path, .. } => path,
        _ => "",
    }
}

fn collect_files(dir: &Path, rel: &str, out: &mut Vec<Edit>) -> Result<(), TestError> {
    let entries = std::fs::read_dir(dir).map_err(io(format!("cannot read {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot read {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" {
            continue;
        }
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry
            .file_type()
            .map_err(io(format!("cannot stat {path}")))?;
        if ft.is_dir() {
            collect_files(&entry.path(), &path, out)?;
        } else if ft.is_file() {
            let content = std::fs::read(entry.path()).map_err(io(format!("cannot read {path}")))?;
            out.push(Edit::Write { path, content });
        }
    }
    Ok(())
}

/// Every file of the commit's tree, as text.
pub(super) fn tree_files(
    mirror: &kargo_git::Mirror,
    commit: ObjectId,
) -> Result<BTreeMap<String, String>, TestError> {
    let rev = commit.to_string();
    let mut files = BTreeMap::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        for e in mirror.list_tree(&rev, &dir)? {
            if e.is_dir {
                dirs.push(e.path);
            } else if let Some(bytes) = mirror.read_file(&rev, &e.path)? {
                files.insert(e.path, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    Ok(files)
}
