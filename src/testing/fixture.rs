//! The fixture GitOps repository both harnesses share: a directory committed into a
//! temporary bare repository, and reading back what promotions pushed to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
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

/// Makes `bare` a bare repository whose `main` holds the files of `dir`, as one commit
/// (made with a fixed author and date, so the same files always make the same commit).
///
/// The first repository made of given files is kept in memory for the rest of the process
/// and later ones are written from it: a test suite pays for `git init` and the seeding
/// push once per fixture, not once per test.
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
    let files: Vec<(&str, &[u8])> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::Write { path, content } => Some((path.as_str(), content.as_slice())),
            _ => None,
        })
        .collect();
    let template = {
        let mut templates = templates();
        let found = templates.iter().find(|t| {
            t.files.len() == files.len()
                && t.files
                    .iter()
                    .zip(&files)
                    .all(|((p, c), (q, d))| p == q && c == d)
        });
        match found {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(Template::make(
                    &edits,
                    &tmp.join("fixture-template.git"),
                    tmp,
                )?);
                templates.push(t.clone());
                t
            }
        }
    };
    template.write(bare)?;
    Ok(Fixture {
        url: format!("file://{}", bare.display()),
        seed: template.seed,
    })
}

/// A seeded bare repository, in memory.
struct Template {
    /// The fixture's files by path (the cache key).
    files: Vec<(String, Vec<u8>)>,
    /// The repository's directories and files, relative to it, parents first.
    entries: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// The fixture commit.
    seed: ObjectId,
}

fn templates() -> MutexGuard<'static, Vec<Arc<Template>>> {
    static TEMPLATES: Mutex<Vec<Arc<Template>>> = Mutex::new(Vec::new());
    TEMPLATES.lock().unwrap_or_else(|e| e.into_inner())
}

impl Template {
    /// Seeds `bare` with `edits` and reads it back.
    fn make(edits: &[Edit], bare: &Path, tmp: &Path) -> Result<Self, TestError> {
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
        // Pushes are the tests' main cost: no `git maintenance` after each one.
        let config = bare.join("config");
        let mut text = std::fs::read_to_string(&config)
            .map_err(io(format!("cannot read {}", config.display())))?;
        text.push_str("[receive]\n\tautogc = false\n[gc]\n\tauto = 0\n");
        std::fs::write(&config, text).map_err(io(format!("cannot write {}", config.display())))?;
        let url = format!("file://{}", bare.display());
        let git = Git::new(test_git_config(&tmp.join("seed-cache")), Arc::new(NoAuth));
        let who = Signature {
            name: "Fixture".into(),
            email: "fixture@example.com".into(),
            time: Some(1_700_000_000),
        };
        let pushed =
            git.mirror(&url)?
                .push_edits(FIXTURE_BRANCH, edits, "fixture", &who, &who, true)?;
        let mut entries = Vec::new();
        read_tree(bare, Path::new(""), &mut entries)?;
        if let Err(e) = std::fs::remove_dir_all(bare) {
            tracing::debug!(path = %bare.display(), error = %e, "cannot remove the fixture template");
        }
        let files = edits
            .iter()
            .filter_map(|e| match e {
                Edit::Write { path, content } => Some((path.clone(), content.clone())),
                _ => None,
            })
            .collect();
        Ok(Self {
            files,
            entries,
            seed: pushed.commit,
        })
    }

    /// Writes the repository to `bare` (which must not exist).
    fn write(&self, bare: &Path) -> Result<(), TestError> {
        std::fs::create_dir(bare).map_err(io(format!("cannot create {}", bare.display())))?;
        for (rel, content) in &self.entries {
            let path = bare.join(rel);
            match content {
                None => std::fs::create_dir(&path),
                Some(bytes) => std::fs::write(&path, bytes),
            }
            .map_err(io(format!("cannot write {}", path.display())))?;
        }
        Ok(())
    }
}

/// Every directory and file under `root/rel`, parents first.
fn read_tree(
    root: &Path,
    rel: &Path,
    out: &mut Vec<(PathBuf, Option<Vec<u8>>)>,
) -> Result<(), TestError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(io(format!("cannot read {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot read {}", dir.display())))?;
        let path = rel.join(entry.file_name());
        let ft = entry
            .file_type()
            .map_err(io(format!("cannot stat {}", path.display())))?;
        if ft.is_dir() {
            out.push((path.clone(), None));
            read_tree(root, &path, out)?;
        } else if ft.is_file() {
            let bytes = std::fs::read(entry.path())
                .map_err(io(format!("cannot read {}", path.display())))?;
            out.push((path, Some(bytes)));
        }
    }
    Ok(())
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

/// Reads the fixture repository as promotions left it, with the `git` command (no fetch:
/// the repository is on this machine).
pub(super) struct FixtureReader {
    url: String,
    path: PathBuf,
    seed: ObjectId,
}

impl FixtureReader {
    /// A reader of `fixture`, a bare repository at `path`.
    pub(super) fn new(fixture: &Fixture, path: &Path) -> Self {
        Self {
            url: fixture.url.clone(),
            path: path.to_owned(),
            seed: fixture.seed,
        }
    }

    /// The repository's `file://` URL.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// `git` on the repository, isolated from the user's and the system's configuration.
    fn git(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_DIR")
            .stdin(std::process::Stdio::piped());
        cmd
    }

    /// Runs `cmd` with `input` on its standard input; its standard output.
    fn run(mut cmd: Command, what: &str, input: &[u8]) -> Result<Vec<u8>, TestError> {
        use std::io::Write;
        let context = format!("git {what} in the fixture repository");
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(io(context.clone()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(io(context.clone()))?;
        }
        let out = child.wait_with_output().map_err(io(context.clone()))?;
        if !out.status.success() {
            return Err(TestError::Io {
                context,
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        Ok(out.stdout)
    }

    /// The objects named by `revs` (`None` for missing ones), through `git cat-file --batch`.
    fn objects(&self, revs: &[String]) -> Result<Vec<Option<Vec<u8>>>, TestError> {
        let mut cmd = self.git();
        cmd.args(["cat-file", "--batch"]);
        let input: String = revs.iter().map(|r| format!("{r}\n")).collect();
        let out = Self::run(cmd, "cat-file", input.as_bytes())?;
        let malformed = || TestError::Io {
            context: "git cat-file in the fixture repository".into(),
            source: std::io::Error::other("unexpected output"),
        };
        let mut rest = out.as_slice();
        let mut objects = Vec::new();
        for _ in revs {
            let eol = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(malformed)?;
            let header = String::from_utf8_lossy(&rest[..eol]).into_owned();
            rest = &rest[eol + 1..];
            if header.ends_with(" missing") || header.ends_with(" ambiguous") {
                objects.push(None);
                continue;
            }
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(malformed)?;
            if rest.len() < size + 1 {
                return Err(malformed());
            }
            objects.push(Some(rest[..size].to_vec()));
            rest = &rest[size + 1..];
        }
        Ok(objects)
    }

    /// The text (lossy UTF-8) of `path` on `branch`.
    pub(super) fn file(&self, branch: &str, path: &str) -> Result<String, TestError> {
        let tip = format!("refs/heads/{branch}");
        let found = self.objects(&[tip.clone(), format!("{tip}:{path}")])?;
        match found.as_slice() {
            [None, _] => Err(TestError::NoBranch(branch.to_owned())),
            [Some(_), Some(bytes)] => Ok(String::from_utf8_lossy(bytes).into_owned()),
            _ => Err(TestError::NoFile {
                branch: branch.to_owned(),
                path: path.to_owned(),
            }),
        }
    }

    /// The messages of the commits on `branch` after the fixture's, oldest first (without
    /// their final line feed).
    pub(super) fn commits(&self, branch: &str) -> Result<Vec<String>, TestError> {
        let tip = format!("refs/heads/{branch}");
        if let [None] = self.objects(std::slice::from_ref(&tip))?.as_slice() {
            return Err(TestError::NoBranch(branch.to_owned()));
        }
        let mut cmd = self.git();
        cmd.args(["log", "-z", "--format=%B", "--reverse"])
            .arg(format!("{}..{tip}", self.seed))
            .arg("--");
        let out = Self::run(cmd, "log", b"")?;
        Ok(String::from_utf8_lossy(&out)
            .split('\0')
            .filter(|m| !m.is_empty())
            .map(|m| m.trim_end_matches('\n').to_owned())
            .collect())
    }
}
