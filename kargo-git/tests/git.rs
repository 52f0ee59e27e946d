//! kargo-git against real git servers: one conformance suite run over every transport
//! (file://, smart HTTP with basic auth, git daemon, SSH), plus the concurrency and secrecy
//! tests.
//!
//! The servers come from `ci/test.sh` (ci/servers.d/10-git.sh), which exports `TEST_GIT_*`.
//! Without them the network transports are skipped with a message, except under `CI=true`,
//! where a missing server is a failure.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kargo_git::{
    ChangeKind, CheckoutOptions, CheckoutTarget, CommitOutcome, Edit, FetchSpec, Git, GitAuth,
    GitConfig, GitErrorKind, NoAuth, Secret, Signature, StaticAuth,
};
use kargo_git::{CommitInfo, Mirror};

fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if ci() {
                panic!("{name} is not set: ci/test.sh must start the git servers");
            }
            eprintln!("skipping: {name} is not set (run the suite through ci/test.sh)");
            None
        }
    }
}

fn sig() -> Signature {
    Signature {
        name: "Kargo Test".into(),
        email: "kargo@example.com".into(),
        time: Some(1_700_000_000),
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn init_bare(path: &Path) {
    let st = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A transport under test: how to make a repository and reach it.
struct Transport {
    name: &'static str,
    root: PathBuf,
    base_url: String,
    auth: Option<GitAuth>,
    /// Whether pushes need credentials (so a wrong password must fail).
    push_needs_auth: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl Transport {
    fn new_repo(&self) -> String {
        let name = unique("repo");
        init_bare(&self.root.join(format!("{name}.git")));
        format!("{}/{name}.git", self.base_url)
    }

    fn git(&self, cache: &Path) -> Git {
        let creds: Arc<dyn kargo_git::CredentialSource> = match &self.auth {
            Some(a) => Arc::new(StaticAuth::new().with(self.base_url.clone(), a.clone())),
            None => Arc::new(NoAuth),
        };
        Git::new(config(cache), creds)
    }
}

fn config(cache: &Path) -> GitConfig {
    let mut config = GitConfig::new(cache);
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    config.max_push_attempts = 30;
    config
}

fn shallow_config(cache: &Path) -> GitConfig {
    let mut config = config(cache);
    config.depth = std::num::NonZeroU32::new(1);
    config
}

fn file_transport() -> Transport {
    let tmp = tempfile::tempdir().unwrap();
    Transport {
        name: "file",
        root: tmp.path().to_path_buf(),
        base_url: format!("file://{}", tmp.path().display()),
        auth: None,
        push_needs_auth: false,
        _tmp: Some(tmp),
    }
}

fn http_transport() -> Option<Transport> {
    Some(Transport {
        name: "http",
        root: PathBuf::from(env("TEST_GIT_ROOT")?),
        base_url: env("TEST_GIT_HTTP_URL")?,
        auth: Some(GitAuth::Basic {
            username: env("TEST_GIT_HTTP_USER")?,
            password: Secret::new(env("TEST_GIT_HTTP_PASSWORD")?),
        }),
        push_needs_auth: true,
        _tmp: None,
    })
}

fn daemon_transport() -> Option<Transport> {
    Some(Transport {
        name: "git-daemon",
        root: PathBuf::from(env("TEST_GIT_ROOT")?),
        base_url: env("TEST_GIT_DAEMON_URL")?,
        auth: None,
        push_needs_auth: false,
        _tmp: None,
    })
}

fn ssh_transport() -> Option<Transport> {
    let key = std::fs::read_to_string(env("TEST_GIT_SSH_KEY")?).unwrap();
    let known = std::fs::read_to_string(env("TEST_GIT_SSH_KNOWN_HOSTS")?).unwrap();
    Some(Transport {
        name: "ssh",
        root: PathBuf::from(env("TEST_GIT_ROOT")?),
        base_url: env("TEST_GIT_SSH_URL")?,
        auth: Some(GitAuth::SshKey {
            private_key: Secret::new(key),
            known_hosts: Some(known),
        }),
        push_needs_auth: false,
        _tmp: None,
    })
}

/// Every operation over one transport.
fn conformance(t: &Transport) {
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    let who = t.name;

    // Seed through the object-database path (creates the branch).
    let seeded = m
        .push_edits(
            "main",
            &[
                Edit::Write {
                    path: "apps/a/values.yaml".into(),
                    content: b"image:\n  tag: \"1.0.0\" # pinned\n".to_vec(),
                },
                Edit::Write {
                    path: "apps/b/values.yaml".into(),
                    content: b"image:\n  tag: \"2.0.0\"\n".to_vec(),
                },
                Edit::Write {
                    path: "README.md".into(),
                    content: b"# gitops\n".to_vec(),
                },
            ],
            "seed",
            &sig(),
            &sig(),
            true,
        )
        .unwrap_or_else(|e| panic!("{who}: seed: {e}"));
    assert!(!seeded.unchanged);

    // ls-remote.
    let refs = git
        .ls_remote(&url)
        .unwrap_or_else(|e| panic!("{who}: ls-remote: {e}"));
    assert!(
        refs.iter()
            .any(|r| r.name == "refs/heads/main" && r.target == Some(seeded.commit)),
        "{who}: {refs:?}"
    );

    // Full clone (eager checkout) in a second cache: files and history as pushed.
    let git2 = t.git(&work.path().join("cache2"));
    let m2 = git2.mirror(&url).unwrap();
    let full = m2
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("full"),
            &CheckoutOptions {
                eager: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{who}: clone: {e}"));
    assert_eq!(
        std::fs::read_to_string(work.path().join("full/apps/a/values.yaml")).unwrap(),
        "image:\n  tag: \"1.0.0\" # pinned\n"
    );
    assert!(work.path().join("full/README.md").exists());
    assert_eq!(full.head(), Some(seeded.commit));

    // Work-tree commit + push; a fresh clone sees message and author.
    std::fs::write(
        work.path().join("full/apps/a/values.yaml"),
        "image:\n  tag: \"1.1.0\" # pinned\n",
    )
    .unwrap();
    let status = full.status().unwrap();
    assert_eq!(status.len(), 1, "{who}: {status:?}");
    assert_eq!(status[0].kind, ChangeKind::Modified);
    assert!(full.diff().unwrap().contains("+  tag: \"1.1.0\" # pinned"));
    let author = Signature {
        name: "Alice".into(),
        email: "alice@example.com".into(),
        time: Some(1_700_000_100),
    };
    let CommitOutcome::Committed { commit } =
        full.commit("promote a to 1.1.0", &author, &sig()).unwrap()
    else {
        panic!("{who}: expected a commit");
    };
    assert_eq!(
        full.commit("again", &sig(), &sig()).unwrap(),
        CommitOutcome::NothingToCommit { head: Some(commit) }
    );
    let pushed = full
        .push(None, false, None)
        .unwrap_or_else(|e| panic!("{who}: push: {e}"));
    assert_eq!(pushed.commit, commit);
    let fresh = t.git(&work.path().join("cache3")).mirror(&url).unwrap();
    fresh.fetch(&FetchSpec::branch("main")).unwrap();
    let log = fresh.log("main", 10).unwrap();
    assert_eq!(log.len(), 2, "{who}");
    assert_eq!(log[0].message.trim(), "promote a to 1.1.0");
    assert_eq!(log[0].author, "Alice <alice@example.com>");
    assert_eq!(log[0].committer, "Kargo Test <kargo@example.com>");

    // Shallow clone: depth 1 gets one commit.
    let shallow_git = Git::new(
        shallow_config(&work.path().join("cache4")),
        Arc::new(StaticAuth::new()),
    );
    let shallow_git = match &t.auth {
        Some(a) => Git::new(
            shallow_config(&work.path().join("cache4")),
            Arc::new(StaticAuth::new().with(t.base_url.clone(), a.clone())),
        ),
        None => shallow_git,
    };
    let sm = shallow_git.mirror(&url).unwrap();
    sm.fetch(&FetchSpec {
        depth: std::num::NonZeroU32::new(1),
        ..FetchSpec::branch("main")
    })
    .unwrap_or_else(|e| panic!("{who}: shallow fetch: {e}"));
    assert_eq!(
        sm.log("main", 1).unwrap().len(),
        1,
        "{who}: shallow history"
    );
    assert!(
        sm.is_shallow().unwrap(),
        "{who}: depth 1 makes a shallow mirror"
    );
    // A log that wants more than the shallow history deepens the mirror.
    assert_eq!(
        sm.log("main", 10).unwrap().len(),
        2,
        "{who}: deepened history"
    );
    assert!(!sm.is_shallow().unwrap(), "{who}: unshallowed");
    assert_eq!(
        sm.read_file("main", "apps/a/values.yaml").unwrap().unwrap(),
        b"image:\n  tag: \"1.1.0\" # pinned\n"
    );

    // Tags: annotated and lightweight, pushed, visible in ls-remote.
    full.tag("v1.1.0", Some("release 1.1.0"), &sig(), false)
        .unwrap();
    full.push_tag("v1.1.0", false)
        .unwrap_or_else(|e| panic!("{who}: push tag: {e}"));
    full.tag("light", None, &sig(), false).unwrap();
    full.push_tag("light", false).unwrap();
    let refs = git.ls_remote(&url).unwrap();
    let annotated = refs
        .iter()
        .find(|r| r.name == "refs/tags/v1.1.0")
        .expect("tag");
    assert_eq!(
        annotated.peeled,
        Some(commit),
        "{who}: annotated tag peels to the commit"
    );
    assert!(
        refs.iter()
            .any(|r| r.name == "refs/tags/light" && r.target == Some(commit))
    );
    // A tag checkout reads the tagged tree.
    let tagged = fresh
        .checkout(
            &CheckoutTarget::Tag("v1.1.0".into()),
            &work.path().join("tagged"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    assert_eq!(tagged.head(), Some(commit));

    // Fetch moves the first mirror forward; lazy checkout writes only what is asked.
    let lazy = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("lazy"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    assert_eq!(lazy.head(), Some(commit));
    lazy.materialize(Path::new("apps/b/values.yaml")).unwrap();
    assert!(!work.path().join("lazy/apps/a").exists());
    assert!(!work.path().join("lazy/README.md").exists());
    std::fs::write(
        work.path().join("lazy/apps/b/values.yaml"),
        "image:\n  tag: \"2.1.0\"\n",
    )
    .unwrap();
    lazy.commit("promote b", &sig(), &sig()).unwrap();

    // A concurrent push makes ours non-fast-forward: rebase and retry, both land.
    let other = m2
        .push_edits(
            "main",
            &[Edit::Write {
                path: "apps/c/values.yaml".into(),
                content: b"c\n".to_vec(),
            }],
            "add c",
            &sig(),
            &sig(),
            false,
        )
        .unwrap();
    assert!(!other.unchanged);
    let rebased = lazy
        .push(None, false, None)
        .unwrap_or_else(|e| panic!("{who}: rebased push: {e}"));
    assert_eq!(rebased.attempts, 2, "{who}: one rejection, one success");
    fresh.fetch(&FetchSpec::branch("main")).unwrap();
    let subjects: Vec<String> = fresh
        .log("main", 10)
        .unwrap()
        .iter()
        .map(|c| c.message.trim().to_owned())
        .collect();
    assert_eq!(
        subjects,
        vec!["promote b", "add c", "promote a to 1.1.0", "seed"],
        "{who}"
    );
    assert_eq!(
        fresh
            .read_file("main", "apps/b/values.yaml")
            .unwrap()
            .unwrap(),
        b"image:\n  tag: \"2.1.0\"\n"
    );
    assert!(
        fresh
            .read_file("main", "apps/c/values.yaml")
            .unwrap()
            .is_some()
    );
    // The lazy work tree still holds only what was asked for.
    assert!(!work.path().join("lazy/apps/c").exists());

    // A genuine content conflict is terminal and names the file.
    let c1 = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("c1"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    c1.materialize(Path::new("apps/a/values.yaml")).unwrap();
    std::fs::write(
        work.path().join("c1/apps/a/values.yaml"),
        "image:\n  tag: \"9.9.9\"\n",
    )
    .unwrap();
    c1.commit("c1", &sig(), &sig()).unwrap();
    m2.push_edits(
        "main",
        &[Edit::Write {
            path: "apps/a/values.yaml".into(),
            content: b"image:\n  tag: \"8.8.8\"\n".to_vec(),
        }],
        "c2",
        &sig(),
        &sig(),
        false,
    )
    .unwrap();
    let err = c1.push(None, false, None).unwrap_err();
    assert_eq!(err.kind, GitErrorKind::Conflict, "{who}: {err}");
    assert_eq!(err.conflicts, vec!["apps/a/values.yaml".to_owned()]);
    assert!(err.to_string().contains("apps/a/values.yaml"));

    // A wrong password is an authorization error, not a generic one.
    if t.push_needs_auth {
        let Some(GitAuth::Basic { username, .. }) = &t.auth else {
            unreachable!()
        };
        let bad = Git::new(
            config(&work.path().join("cache-bad")),
            Arc::new(StaticAuth::new().with(
                t.base_url.clone(),
                GitAuth::Basic {
                    username: username.clone(),
                    password: Secret::new("wrong-password-123"),
                },
            )),
        );
        let err = bad
            .mirror(&url)
            .unwrap()
            .push_edits(
                "main",
                &[Edit::Write {
                    path: "x".into(),
                    content: b"x".to_vec(),
                }],
                "x",
                &sig(),
                &sig(),
                false,
            )
            .unwrap_err();
        assert_eq!(err.kind, GitErrorKind::Unauthorized, "{who}: {err}");
        assert!(!err.to_string().contains("wrong-password-123"));
    }
}

#[test]
fn conformance_file() {
    conformance(&file_transport());
}

#[test]
fn conformance_smart_http() {
    if let Some(t) = http_transport() {
        conformance(&t);
    }
}

#[test]
fn conformance_git_daemon() {
    if let Some(t) = daemon_transport() {
        conformance(&t);
    }
}

#[test]
fn conformance_ssh() {
    if let Some(t) = ssh_transport() {
        conformance(&t);
    }
}

/// What a process killed in the middle of a mirror write leaves behind must not break
/// the next process: gix's reference lock files (a kill between creating
/// `refs/heads/main.lock` and renaming it) used to make every later fetch fail with "might
/// need manual deletion", and a mirror killed while being created (a non-empty directory
/// without HEAD) made every later use fail with "Refusing to initialize the non-empty
/// directory". (Found while building the facade's tests/crash_safety.rs; these windows
/// are too short for its kills to land in reliably, so this test plants what such a kill
/// leaves.)
#[test]
fn leftovers_of_a_killed_process_do_not_break_the_mirror() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let commit_on_main = |cache: &str, dir: &str, text: &str| {
        let m = t.git(&work.path().join(cache)).mirror(&url).unwrap();
        let co = m
            .checkout(
                &CheckoutTarget::Branch("main".into()),
                &work.path().join(dir),
                &CheckoutOptions {
                    create: true,
                    ..Default::default()
                },
            )
            .unwrap();
        std::fs::write(work.path().join(dir).join("app.yaml"), text).unwrap();
        co.commit(text, &sig(), &sig()).unwrap();
        co.push(None, false, None).unwrap().commit
    };
    commit_on_main("cache", "a", "v1\n");
    let mirror = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    let path = mirror.path().to_path_buf();
    // The stale locks of a killed fetch or ref update.
    let old = std::fs::read_to_string(path.join("refs/heads/main")).unwrap();
    for lock in ["refs/heads/main.lock", "packed-refs.lock", "shallow.lock"] {
        std::fs::write(path.join(lock), &old).unwrap();
    }
    // The remote moves (another cache), so the next fetch must update refs/heads/main.
    let v2 = commit_on_main("other-cache", "b", "v2\n");
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("c"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    assert_eq!(co.head(), Some(v2));
    for lock in ["refs/heads/main.lock", "packed-refs.lock", "shallow.lock"] {
        assert!(!path.join(lock).exists(), "{lock} is still there");
    }

    // A mirror whose creation was killed: a directory without HEAD, and the scratch
    // directory of the atomic creation.
    drop((m, co, mirror));
    std::fs::remove_dir_all(&path).unwrap();
    std::fs::create_dir_all(path.join("objects/pack")).unwrap();
    std::fs::create_dir_all(path.with_extension("git.init").join("refs")).unwrap();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("d"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    assert_eq!(co.head(), Some(v2));
    assert!(!path.with_extension("git.init").exists());
}

#[test]
fn missing_branch_and_create() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    let err = m
        .checkout(
            &CheckoutTarget::Branch("nope".into()),
            &work.path().join("a"),
            &CheckoutOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind, GitErrorKind::NotFound, "{err}");
    let orphan = m
        .checkout(
            &CheckoutTarget::Branch("stage/dev".into()),
            &work.path().join("b"),
            &CheckoutOptions {
                create: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(orphan.head(), None);
    std::fs::write(work.path().join("b/manifest.yaml"), "kind: List\n").unwrap();
    orphan.commit("first", &sig(), &sig()).unwrap();
    orphan.push(None, false, None).unwrap();
    assert!(
        m.ls_remote()
            .unwrap()
            .iter()
            .any(|r| r.name == "refs/heads/stage/dev")
    );
}

#[test]
fn diff_commits_reports_what_a_push_would_change() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[
            Edit::Write {
                path: "apps/dev/values.yaml".into(),
                content: b"# dev\nimage:\n  tag: \"1.0.0\"\n".to_vec(),
            },
            Edit::Write {
                path: "old.txt".into(),
                content: b"old\n".to_vec(),
            },
        ],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    let remote_before = m.ls_remote().unwrap();
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("wt"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    let start = co.head().unwrap();
    assert_eq!(co.upstream(), Some(start));
    co.materialize(&work.path().join("wt/apps/dev/values.yaml"))
        .unwrap();
    co.materialize(&work.path().join("wt/old.txt")).unwrap();
    std::fs::write(
        work.path().join("wt/apps/dev/values.yaml"),
        "# dev\nimage:\n  tag: \"1.1.0\"\n",
    )
    .unwrap();
    std::fs::remove_file(work.path().join("wt/old.txt")).unwrap();
    std::fs::write(work.path().join("wt/new.txt"), "new\n").unwrap();
    let CommitOutcome::Committed { commit } = co.commit("bump", &sig(), &sig()).unwrap() else {
        panic!("nothing committed");
    };
    assert_eq!(co.unpushed(), vec![commit]);
    let diffs = m.diff_commits(co.upstream(), commit).unwrap();
    let summary: Vec<(&str, ChangeKind)> =
        diffs.iter().map(|d| (d.path.as_str(), d.kind)).collect();
    assert_eq!(
        summary,
        vec![
            ("apps/dev/values.yaml", ChangeKind::Modified),
            ("new.txt", ChangeKind::Added),
            ("old.txt", ChangeKind::Deleted),
        ]
    );
    assert_eq!(
        diffs[0].diff,
        "--- a/apps/dev/values.yaml\n+++ b/apps/dev/values.yaml\n@@ -1,3 +1,3 @@\n # dev\n \
         image:\n-  tag: \"1.0.0\"\n+  tag: \"1.1.0\"\n"
    );
    assert!(diffs[2].diff.contains("+++ /dev/null"), "{}", diffs[2].diff);
    // From the empty tree (a new orphan branch): every file is added.
    let all = m.diff_commits(None, commit).unwrap();
    assert!(all.iter().all(|d| d.kind == ChangeKind::Added));
    assert_eq!(all.len(), 2);
    // Nothing was pushed.
    assert_eq!(m.ls_remote().unwrap(), remote_before);
}

#[test]
fn clear_and_commit_replaces_the_tree() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[
            Edit::Write {
                path: "old/a".into(),
                content: b"a".to_vec(),
            },
            Edit::Write {
                path: "b".into(),
                content: b"b".to_vec(),
            },
        ],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("wt"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    co.clear().unwrap();
    std::fs::write(work.path().join("wt/rendered.yaml"), "x: 1\n").unwrap();
    co.commit("render", &sig(), &sig()).unwrap();
    co.push(None, false, None).unwrap();
    let files: Vec<String> = m
        .list_tree("main", "")
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(files, vec!["rendered.yaml".to_owned()]);
}

/// An edit that keeps the size, made right after the file was materialised (within the
/// file system's timestamp granularity, so the mtime may not change), is still seen.
#[test]
fn same_size_edit_right_after_materialising_is_committed() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[Edit::Write {
            path: "values.yaml".into(),
            content: b"image: v1\n".to_vec(),
        }],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    for round in 0..20 {
        let wt = work.path().join(format!("wt-{round}"));
        let co = m
            .checkout(
                &CheckoutTarget::Branch("main".into()),
                &wt,
                &CheckoutOptions::default(),
            )
            .unwrap();
        co.materialize(Path::new("values.yaml")).unwrap();
        let file = wt.join("values.yaml");
        let old = std::fs::read_to_string(&file).unwrap();
        let new = if old == "image: v1\n" {
            "image: v2\n"
        } else {
            "image: v1\n"
        };
        // Replaced atomically (temporary file + rename), as the editing steps do: the new
        // inode gets a coarse timestamp that can equal the old one.
        let tmp = wt.join(".values.yaml.tmp");
        std::fs::write(&tmp, new).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let status = co.status().unwrap();
        assert_eq!(status.len(), 1, "round {round}: the edit was not seen");
    }
}

#[test]
fn odb_commit_with_compare_and_swap() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    let first = m
        .commit_edits(
            "local",
            &[Edit::Write {
                path: "a/b/c.txt".into(),
                content: b"1".to_vec(),
            }],
            "one",
            &sig(),
            &sig(),
        )
        .unwrap();
    let second = m
        .commit_edits(
            "local",
            &[Edit::transform("a/b/c.txt", |old| {
                Ok(old.map(|o| [o, b"2"].concat()))
            })],
            "two",
            &sig(),
            &sig(),
        )
        .unwrap();
    let (
        kargo_git::EditResult::Committed { commit: c1, .. },
        kargo_git::EditResult::Committed { commit: c2, parent },
    ) = (first, second)
    else {
        panic!("expected commits")
    };
    assert_eq!(parent, Some(c1));
    assert_eq!(m.resolve("local").unwrap(), c2);
    assert_eq!(m.read_file("local", "a/b/c.txt").unwrap().unwrap(), b"12");
    // An edit that changes nothing is reported as such.
    let same = m
        .commit_edits(
            "local",
            &[Edit::Write {
                path: "a/b/c.txt".into(),
                content: b"12".to_vec(),
            }],
            "noop",
            &sig(),
            &sig(),
        )
        .unwrap();
    assert_eq!(same, kargo_git::EditResult::Unchanged { head: Some(c2) });
    // Bad paths are refused before anything is written.
    let err = m
        .commit_edits(
            "local",
            &[Edit::Write {
                path: "../escape".into(),
                content: vec![],
            }],
            "x",
            &sig(),
            &sig(),
        )
        .unwrap_err();
    assert_eq!(err.kind, GitErrorKind::Invalid);
}

/// Captures every log line for the secrecy test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn grep_dir(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn credentials_never_leak() {
    let Some(t) = http_transport() else { return };
    let Some(GitAuth::Basic { username, password }) = t.auth.clone() else {
        unreachable!()
    };
    // A global subscriber (interest caches are rebuilt when it is installed), capturing
    // every log line of every test of this binary from now on.
    static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    let captured = CAPTURE
        .get_or_init(|| {
            let c = Captured::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(c.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            c
        })
        .clone();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let mut outputs: Vec<String> = Vec::new();

    // Success.
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    let ok = m
        .push_edits(
            "main",
            &[Edit::Write {
                path: "a".into(),
                content: b"a".to_vec(),
            }],
            "a",
            &sig(),
            &sig(),
            true,
        )
        .unwrap();
    outputs.push(format!("{ok:?} {m:?}"));
    // Failure with the right user and a wrong password, and with a password that the
    // server echoes nowhere: neither appears anywhere.
    let wrong = "not-the-password-4711";
    let bad = Git::new(
        config(&work.path().join("cache-bad")),
        Arc::new(StaticAuth::new().with(
            t.base_url.clone(),
            GitAuth::Basic {
                username: username.clone(),
                password: Secret::new(wrong),
            },
        )),
    );
    let bm = bad.mirror(&url).unwrap();
    let err = bm
        .push_edits(
            "main",
            &[Edit::Write {
                path: "b".into(),
                content: b"b".to_vec(),
            }],
            "b",
            &sig(),
            &sig(),
            false,
        )
        .unwrap_err();
    assert_eq!(err.kind, GitErrorKind::Unauthorized, "{err}");
    outputs.push(format!("{err} {err:?} {bm:?}"));
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("git push"),
        "the capture must hold the push logs: {logs}"
    );
    for secret in [password.expose(), wrong] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
        for o in &outputs {
            assert!(!o.contains(secret), "a secret leaked into an output: {o}");
        }
        assert!(
            grep_dir(work.path(), secret).is_empty(),
            "a secret was written to disk"
        );
    }
}

/// Worker mode for the multi-process tests: `KARGO_GIT_WORKER=<mode>` plus parameters.
#[test]
fn worker_entry() {
    let Ok(mode) = std::env::var("KARGO_GIT_WORKER") else {
        return;
    };
    let url = std::env::var("KARGO_GIT_URL").unwrap();
    let cache = PathBuf::from(std::env::var("KARGO_GIT_CACHE").unwrap());
    let id: usize = std::env::var("KARGO_GIT_ID").unwrap().parse().unwrap();
    let git = Git::new(config(&cache), Arc::new(NoAuth));
    let m = git.mirror(&url).unwrap();
    match mode.as_str() {
        "distinct" => {
            for i in 0..5 {
                let path = format!("apps/worker-{id}/file-{i}.yaml");
                let content = format!("worker: {id}\nround: {i}\n");
                if i % 2 == 0 {
                    m.push_edits(
                        "main",
                        &[Edit::Write {
                            path,
                            content: content.into_bytes(),
                        }],
                        &format!("worker {id} round {i}"),
                        &sig(),
                        &sig(),
                        false,
                    )
                    .unwrap();
                } else {
                    let dir = tempfile::tempdir().unwrap();
                    let co = m
                        .checkout(
                            &CheckoutTarget::Branch("main".into()),
                            &dir.path().join("wt"),
                            &CheckoutOptions::default(),
                        )
                        .unwrap();
                    let abs = dir.path().join("wt").join(&path);
                    co.materialize(&abs).unwrap();
                    std::fs::write(&abs, content).unwrap();
                    co.commit(&format!("worker {id} round {i}"), &sig(), &sig())
                        .unwrap();
                    co.push(None, false, None).unwrap();
                }
            }
        }
        "same-key" => {
            let value = format!("value-from-{id}");
            m.push_edits(
                "main",
                &[Edit::transform("config.yaml", move |old| {
                    let old = String::from_utf8_lossy(old.unwrap_or_default()).into_owned();
                    let out: Vec<String> = old
                        .lines()
                        .map(|l| {
                            if l.starts_with("key:") {
                                format!("key: {value}")
                            } else {
                                l.to_owned()
                            }
                        })
                        .collect();
                    Ok(Some((out.join("\n") + "\n").into_bytes()))
                })],
                &format!("set key from {id}"),
                &sig(),
                &sig(),
                false,
            )
            .unwrap();
        }
        other => panic!("unknown worker mode {other}"),
    }
}

fn spawn_workers(mode: &str, url: &str, cache: &Path, n: usize) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|id| {
            Command::new(&exe)
                .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
                .env("KARGO_GIT_WORKER", mode)
                .env("KARGO_GIT_URL", url)
                .env("KARGO_GIT_CACHE", cache)
                .env("KARGO_GIT_ID", id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        let st = c.wait().unwrap();
        assert!(st.success(), "a worker failed");
    }
}

#[test]
fn four_processes_twenty_promotions_no_lost_update() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("seed-cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[Edit::Write {
            path: "README.md".into(),
            content: b"seed\n".to_vec(),
        }],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    // All four processes share one cache directory.
    spawn_workers("distinct", &url, &work.path().join("shared-cache"), 4);
    let check = t.git(&work.path().join("check")).mirror(&url).unwrap();
    check.fetch(&FetchSpec::branch("main")).unwrap();
    let log = check.log("main", 100).unwrap();
    assert_eq!(
        log.len(),
        21,
        "exactly 20 promotion commits on top of the seed"
    );
    for id in 0..4 {
        for i in 0..5 {
            let content = check
                .read_file("main", &format!("apps/worker-{id}/file-{i}.yaml"))
                .unwrap();
            assert_eq!(
                content.unwrap(),
                format!("worker: {id}\nround: {i}\n").into_bytes()
            );
            assert_eq!(
                log.iter()
                    .filter(|c| c.message.trim() == format!("worker {id} round {i}"))
                    .count(),
                1
            );
        }
    }
}

#[test]
fn two_promotions_setting_the_same_key_both_land_in_order() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("seed-cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[Edit::Write {
            path: "config.yaml".into(),
            content: b"# settings\nkey: initial # keep\nother: 1\n".to_vec(),
        }],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    spawn_workers("same-key", &url, &work.path().join("cache"), 2);
    let check = t.git(&work.path().join("check")).mirror(&url).unwrap();
    check.fetch(&FetchSpec::branch("main")).unwrap();
    let log = check.log("main", 10).unwrap();
    assert_eq!(log.len(), 3);
    let later = log[0]
        .message
        .trim()
        .trim_start_matches("set key from ")
        .to_owned();
    let earlier = log[1]
        .message
        .trim()
        .trim_start_matches("set key from ")
        .to_owned();
    assert_ne!(later, earlier);
    let content =
        String::from_utf8(check.read_file("main", "config.yaml").unwrap().unwrap()).unwrap();
    assert_eq!(
        content,
        format!("# settings\nkey: value-from-{later}\nother: 1\n")
    );
}

#[test]
fn sparse_checkout_and_deletions() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[
            Edit::Write {
                path: "apps/a/x.yaml".into(),
                content: b"a".to_vec(),
            },
            Edit::Write {
                path: "apps/b/y.yaml".into(),
                content: b"b".to_vec(),
            },
            Edit::Write {
                path: "apps/b/z.yaml".into(),
                content: b"z".to_vec(),
            },
        ],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    let wt = work.path().join("wt");
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &wt,
            &CheckoutOptions {
                sparse: vec!["apps/b".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert!(wt.join("apps/b/y.yaml").exists() && wt.join("apps/b/z.yaml").exists());
    assert!(!wt.join("apps/a").exists());
    std::fs::remove_file(wt.join("apps/b/z.yaml")).unwrap();
    let status = co.status().unwrap();
    assert_eq!(
        status,
        vec![kargo_git::Change {
            path: "apps/b/z.yaml".into(),
            kind: ChangeKind::Deleted
        }]
    );
    co.commit("drop z", &sig(), &sig()).unwrap();
    co.push(None, false, None).unwrap();
    let files: Vec<String> = m
        .list_tree("main", "apps/b")
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(files, vec!["apps/b/y.yaml".to_owned()]);
    // Untouched parts of the tree are kept although they were never on disk.
    assert_eq!(m.read_file("main", "apps/a/x.yaml").unwrap().unwrap(), b"a");
}

#[test]
fn interrupted_clients_stop() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[Edit::Write {
            path: "a".into(),
            content: b"a".to_vec(),
        }],
        "a",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    git.interrupt_flag()
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let err = m
        .push_edits(
            "main",
            &[Edit::Write {
                path: "b".into(),
                content: b"b".to_vec(),
            }],
            "b",
            &sig(),
            &sig(),
            false,
        )
        .unwrap_err();
    assert_eq!(err.kind, GitErrorKind::Interrupted, "{err}");
    let err = m.fetch(&FetchSpec::branch("main")).unwrap_err();
    assert_eq!(err.kind, GitErrorKind::Interrupted, "{err}");
}

/// A file rewritten right after it was written out, with the same size, in the same
/// clock tick (so with the same mtime), is still seen as changed ("racy git").
#[test]
fn same_size_rewrite_in_the_same_tick_is_a_change() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let m = t.git(&work.path().join("cache")).mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[Edit::Write {
            path: "values.yaml".into(),
            content: b"tag: bbbb0002\n".to_vec(),
        }],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    for round in 0..20 {
        let wt = work.path().join(format!("wt-{round}"));
        let co = m
            .checkout(
                &CheckoutTarget::Branch("main".into()),
                &wt,
                &CheckoutOptions::default(),
            )
            .unwrap();
        co.materialize(&wt.join("values.yaml")).unwrap();
        // As the editing steps write: a new file renamed over the old one (a new inode,
        // whose coarse mtime can equal the old one's).
        let tmp = wt.join(".values.yaml.tmp");
        std::fs::write(&tmp, format!("tag: cccc{round:04}\n")).unwrap();
        std::fs::rename(&tmp, wt.join("values.yaml")).unwrap();
        let changes = co.status().unwrap();
        assert_eq!(changes.len(), 1, "round {round}: {changes:?}");
    }
}

// In-process pushes to local repositories (`GitConfig::local_push`). Each scenario runs
// with the in-process path and, where it is about semantics, with the git binary too: the
// outcomes must be the same.

/// A client for local repositories; `in_process` false forces the git binary. With a
/// `git_binary` that does not exist, any push through the binary fails, which proves that
/// a successful push happened in-process.
fn local_git(cache: &Path, in_process: bool, git_binary: &str) -> Git {
    let mut c = config(cache);
    c.local_push = in_process;
    c.git_binary = PathBuf::from(git_binary);
    Git::new(c, Arc::new(NoAuth))
}

const NO_GIT: &str = "/nonexistent/kargo-test-git";

/// `git <args>` in `dir`: success and trimmed stdout (stderr appended on failure).
fn git_cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), text)
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out) = git_cli(dir, args);
    assert!(ok, "git {args:?} failed: {out}");
    out
}

/// A bare repository for the local-push tests: its path and `file://` URL.
fn local_repo(t: &Transport) -> (PathBuf, String) {
    let url = t.new_repo();
    let path = PathBuf::from(url.strip_prefix("file://").unwrap());
    (path, url)
}

fn seed(m: &kargo_git::Mirror) -> kargo_git::ObjectId {
    m.push_edits(
        "main",
        &[
            Edit::Write {
                path: "apps/a/values.yaml".into(),
                content: b"tag: 1.0.0\n".to_vec(),
            },
            Edit::Write {
                path: "apps/b/values.yaml".into(),
                content: b"tag: 2.0.0\n".to_vec(),
            },
            Edit::Write {
                path: "README.md".into(),
                content: b"# gitops\n".to_vec(),
            },
        ],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap()
    .commit
}

/// A lazy checkout of `main` with `path` written and committed.
fn checkout_and_commit(
    m: &kargo_git::Mirror,
    dir: &Path,
    path: &str,
    content: &str,
) -> kargo_git::Checkout {
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            dir,
            &CheckoutOptions::default(),
        )
        .unwrap();
    let abs = dir.join(path);
    co.materialize(&abs).unwrap();
    std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
    std::fs::write(&abs, content).unwrap();
    let CommitOutcome::Committed { .. } =
        co.commit(&format!("write {path}"), &sig(), &sig()).unwrap()
    else {
        panic!("expected a commit");
    };
    co
}

#[test]
fn local_push_lands_in_process_and_git_reads_it() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let (bare, url) = local_repo(&t);
    // No usable git binary: every push below happens in-process.
    let git = local_git(&work.path().join("cache"), true, NO_GIT);
    let m = git.mirror(&url).unwrap();
    let seeded = seed(&m);
    let second = m
        .push_edits(
            "main",
            &[Edit::Write {
                path: "apps/a/values.yaml".into(),
                content: b"tag: 1.1.0\n".to_vec(),
            }],
            "promote a",
            &sig(),
            &sig(),
            false,
        )
        .unwrap();
    assert_eq!(second.attempts, 1);
    // A work-tree commit through a plain-path URL (another mirror of the same repository).
    let by_path = local_git(&work.path().join("cache2"), true, NO_GIT)
        .mirror(bare.to_str().unwrap())
        .unwrap();
    let co = checkout_and_commit(&by_path, &work.path().join("wt"), "apps/c/new.yaml", "c\n");
    let third = co.push(None, false, None).unwrap();
    assert_eq!(third.attempts, 1);

    git_ok(&bare, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(
        git_ok(&bare, &["rev-parse", "main"]),
        third.commit.to_string()
    );
    assert_eq!(
        git_ok(&bare, &["log", "--format=%s", "main"]),
        "write apps/c/new.yaml\npromote a\nseed"
    );
    assert_eq!(
        git_ok(&bare, &["rev-list", "--max-parents=0", "main"]),
        seeded.to_string()
    );
    assert_eq!(
        git_ok(&bare, &["show", "main:apps/a/values.yaml"]),
        "tag: 1.1.0"
    );
    assert_eq!(git_ok(&bare, &["show", "main:apps/c/new.yaml"]), "c");
    // A fresh mirror (gix fetch, git upload-pack) reads the same history.
    let fresh = local_git(&work.path().join("cache3"), true, NO_GIT)
        .mirror(&url)
        .unwrap();
    fresh.fetch(&FetchSpec::branch("main")).unwrap();
    assert_eq!(fresh.log("main", 10).unwrap().len(), 3);
}

#[test]
fn local_non_fast_forward_is_rejected_and_leaves_the_remote_alone() {
    for in_process in [true, false] {
        let how = if in_process {
            "in-process"
        } else {
            "git binary"
        };
        let t = file_transport();
        let work = tempfile::tempdir().unwrap();
        let (bare, url) = local_repo(&t);
        let binary = if in_process { NO_GIT } else { "git" };
        let a = local_git(&work.path().join("a"), in_process, binary)
            .mirror(&url)
            .unwrap();
        let b = local_git(&work.path().join("b"), in_process, binary)
            .mirror(&url)
            .unwrap();
        seed(&a);
        let co_a = checkout_and_commit(&a, &work.path().join("wa"), "apps/a/x.yaml", "a\n");
        let co_b = checkout_and_commit(&b, &work.path().join("wb"), "apps/b/y.yaml", "b\n");
        let pushed = co_a.push(None, false, None).unwrap();
        let ours = co_b.head().unwrap();
        let err = co_b.push(None, false, Some(1)).unwrap_err();
        assert_eq!(err.kind, GitErrorKind::NonFastForward, "{how}: {err}");
        assert_eq!(
            git_ok(&bare, &["rev-parse", "main"]),
            pushed.commit.to_string(),
            "{how}"
        );
        // Like git, nothing of a rejected ref is sent.
        let (has, _) = git_cli(&bare, &["cat-file", "-e", &ours.to_string()]);
        assert!(!has, "{how}: the rejected commit reached the remote");
        git_ok(&bare, &["fsck", "--strict"]);
        // The refused push fetched the new tip: the next one rebases onto it before
        // pushing and lands at once.
        let landed = co_b.push(None, false, None).unwrap();
        assert_eq!(landed.attempts, 1, "{how}");
        assert_eq!(git_ok(&bare, &["show", "main:apps/a/x.yaml"]), "a", "{how}");
        assert_eq!(git_ok(&bare, &["show", "main:apps/b/y.yaml"]), "b", "{how}");
        // `force` overwrites, as `git push --force` does.
        let co_c = checkout_and_commit(&a, &work.path().join("wc"), "apps/c/z.yaml", "c\n");
        let co_d = checkout_and_commit(&b, &work.path().join("wd"), "apps/d/z.yaml", "d\n");
        co_c.push(None, false, None).unwrap();
        let forced = co_d.push(None, true, Some(1)).unwrap();
        assert_eq!(
            git_ok(&bare, &["rev-parse", "main"]),
            forced.commit.to_string(),
            "{how}"
        );
        git_ok(&bare, &["fsck", "--strict"]);
    }
}

#[test]
fn concurrent_local_pushers_one_wins_each_round_and_both_land() {
    const ROUNDS: usize = 4;
    const EDITS: usize = 5;
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let (bare, url) = local_repo(&t);
    seed(
        &local_git(&work.path().join("seed"), true, NO_GIT)
            .mirror(&url)
            .unwrap(),
    );
    // Two spellings of the same repository: two mirrors and two in-process branch locks,
    // so the pushes really race in the target repository.
    let urls = [url.clone(), bare.to_str().unwrap().to_owned()];
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(id, url)| {
            let barrier = barrier.clone();
            let root = work.path().join(format!("pusher-{id}"));
            std::thread::spawn(move || {
                let m = local_git(&root.join("cache"), true, NO_GIT)
                    .mirror(&url)
                    .unwrap();
                let mut attempts = Vec::new();
                for round in 0..ROUNDS {
                    // Both start from the same tip, then push at once.
                    barrier.wait();
                    let co = checkout_and_commit(
                        &m,
                        &root.join(format!("wt-{round}")),
                        &format!("pusher-{id}/round-{round}.yaml"),
                        &format!("{id} {round}\n"),
                    );
                    barrier.wait();
                    attempts.push(co.push(None, false, None).unwrap().attempts);
                    // The loser's retry must not meet the other's next push.
                    barrier.wait();
                }
                // Then object-database edits of one file, as fast as they go.
                for i in 0..EDITS {
                    let line = format!("pusher {id} edit {i}\n");
                    m.push_edits(
                        "main",
                        &[Edit::transform("log.txt", move |old| {
                            Ok(Some([old.unwrap_or_default(), line.as_bytes()].concat()))
                        })],
                        &format!("pusher {id} edit {i}"),
                        &sig(),
                        &sig(),
                        false,
                    )
                    .unwrap();
                }
                attempts
            })
        })
        .collect();
    let attempts: Vec<Vec<u32>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for round in 0..ROUNDS {
        let mut this_round = [attempts[0][round], attempts[1][round]];
        this_round.sort_unstable();
        assert_eq!(this_round, [1, 2], "round {round}: {attempts:?}");
    }
    git_ok(&bare, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(
        git_ok(&bare, &["rev-list", "--count", "main"]),
        (1 + 2 * ROUNDS + 2 * EDITS).to_string()
    );
    let mut log: Vec<String> = git_ok(&bare, &["show", "main:log.txt"])
        .lines()
        .map(str::to_owned)
        .collect();
    log.sort();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|id| (0..EDITS).map(move |i| format!("pusher {id} edit {i}")))
        .collect();
    expected.sort();
    assert_eq!(log, expected);
    for id in 0..2 {
        for round in 0..ROUNDS {
            git_ok(
                &bare,
                &[
                    "cat-file",
                    "-e",
                    &format!("main:pusher-{id}/round-{round}.yaml"),
                ],
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn a_local_repository_with_hooks_is_pushed_to_by_the_git_binary() {
    use std::os::unix::fs::PermissionsExt;
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("hook-ran");
    let hook = |path: &Path| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!("#!/bin/sh\necho ran >> '{}'\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let runs = || {
        std::fs::read_to_string(&marker)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    // An executable hook in hooks/.
    let (bare, url) = local_repo(&t);
    hook(&bare.join("hooks/post-receive"));
    let m = local_git(&work.path().join("cache"), true, "git")
        .mirror(&url)
        .unwrap();
    seed(&m);
    assert_eq!(runs(), 1, "receive-pack ran the hook");
    git_ok(&bare, &["fsck", "--strict"]);
    // Without a usable git binary the push fails: it was not done in-process.
    let no_git = local_git(&work.path().join("cache-no-git"), true, NO_GIT)
        .mirror(&url)
        .unwrap();
    let err = checkout_and_commit(&no_git, &work.path().join("wt"), "x.yaml", "x\n")
        .push(None, false, None)
        .unwrap_err();
    assert_eq!(err.kind, GitErrorKind::Io, "{err}");

    // core.hooksPath.
    let (bare2, url2) = local_repo(&t);
    let hooks = work.path().join("shared-hooks");
    hook(&hooks.join("post-update"));
    git_ok(
        &bare2,
        &["config", "core.hooksPath", hooks.to_str().unwrap()],
    );
    let m2 = local_git(&work.path().join("cache2"), true, "git")
        .mirror(&url2)
        .unwrap();
    seed(&m2);
    assert_eq!(runs(), 2, "receive-pack ran the hook from core.hooksPath");

    // A hook that is not executable is ignored by git: in-process again.
    let (bare3, url3) = local_repo(&t);
    std::fs::write(bare3.join("hooks/post-receive"), "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(
        bare3.join("hooks/post-receive"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    seed(
        &local_git(&work.path().join("cache3"), true, NO_GIT)
            .mirror(&url3)
            .unwrap(),
    );
    git_ok(&bare3, &["fsck", "--strict"]);
}

#[test]
fn local_tag_push_and_tag_conflict() {
    for in_process in [true, false] {
        let how = if in_process {
            "in-process"
        } else {
            "git binary"
        };
        let t = file_transport();
        let work = tempfile::tempdir().unwrap();
        let (bare, url) = local_repo(&t);
        let binary = if in_process { NO_GIT } else { "git" };
        let a = local_git(&work.path().join("a"), in_process, binary)
            .mirror(&url)
            .unwrap();
        let b = local_git(&work.path().join("b"), in_process, binary)
            .mirror(&url)
            .unwrap();
        seed(&a);
        // An annotated tag on a commit that is on no branch of the remote: the tag push
        // carries the commit, its tree and blobs.
        let co_a = checkout_and_commit(&a, &work.path().join("wa"), "release.txt", "1\n");
        let head_a = co_a.head().unwrap();
        co_a.tag("v1", Some("release 1"), &sig(), false).unwrap();
        co_a.push_tag("v1", false)
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(git_ok(&bare, &["cat-file", "-t", "v1"]), "tag", "{how}");
        assert_eq!(
            git_ok(&bare, &["rev-parse", "v1^{commit}"]),
            head_a.to_string(),
            "{how}"
        );
        assert_eq!(git_ok(&bare, &["show", "v1:release.txt"]), "1", "{how}");
        let v1 = git_ok(&bare, &["rev-parse", "v1"]);
        // Pushing the same tag again is up to date.
        co_a.push_tag("v1", false)
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        // A lightweight tag.
        co_a.tag("light", None, &sig(), false).unwrap();
        co_a.push_tag("light", false).unwrap();
        assert_eq!(git_ok(&bare, &["cat-file", "-t", "light"]), "commit");
        git_ok(&bare, &["fsck", "--strict"]);

        // Another client tags another commit v1: a conflict, and the remote keeps its tag.
        let co_b = checkout_and_commit(&b, &work.path().join("wb"), "release.txt", "2\n");
        co_b.tag("v1", Some("release 1 again"), &sig(), false)
            .unwrap();
        let err = co_b.push_tag("v1", false).unwrap_err();
        assert_eq!(err.kind, GitErrorKind::Conflict, "{how}: {err}");
        assert_eq!(git_ok(&bare, &["rev-parse", "v1"]), v1, "{how}");
        // Forced, it moves.
        co_b.push_tag("v1", true)
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(
            git_ok(&bare, &["rev-parse", "v1^{commit}"]),
            co_b.head().unwrap().to_string(),
            "{how}"
        );
        assert_eq!(git_ok(&bare, &["show", "v1:release.txt"]), "2", "{how}");
        git_ok(&bare, &["fsck", "--strict"]);
    }
}

#[test]
fn a_shallow_mirror_pushes_in_process_and_fetches_first_when_behind() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let (bare, url) = local_repo(&t);
    let full = local_git(&work.path().join("full"), true, NO_GIT)
        .mirror(&url)
        .unwrap();
    seed(&full);
    let edit = |m: &kargo_git::Mirror, path: &str| {
        m.push_edits(
            "main",
            &[Edit::Write {
                path: path.into(),
                content: path.as_bytes().to_vec(),
            }],
            path,
            &sig(),
            &sig(),
            false,
        )
        .unwrap()
    };
    edit(&full, "one");
    let mut c = shallow_config(&work.path().join("shallow"));
    c.git_binary = PathBuf::from(NO_GIT);
    let shallow = Git::new(c, Arc::new(NoAuth)).mirror(&url).unwrap();
    assert_eq!(edit(&shallow, "two").attempts, 1);
    assert!(
        shallow.path().join("shallow").exists(),
        "the mirror is shallow"
    );
    // The remote moves on; the shallow mirror's cached tip is stale: its first attempt is
    // rejected ("fetch first": it lacks the remote's tip), then it fetches and lands.
    edit(&full, "three");
    assert_eq!(edit(&shallow, "four").attempts, 2);
    git_ok(&bare, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(git_ok(&bare, &["rev-list", "--count", "main"]), "5");
    for path in ["one", "two", "three", "four"] {
        assert_eq!(git_ok(&bare, &["show", &format!("main:{path}")]), path);
    }
}

/// `Mirror::changed_paths` lists exactly what `git diff-tree -r --name-only` lists for
/// every commit of a history with adds, edits, deletes, renames, a file that becomes a
/// directory and back, an executable-bit change, names that sort around `/` (`a`, `a.txt`,
/// `a-b`, `a/`), nested directories and a merge (first parent), and the root commit's
/// files are `git ls-tree -r`'s.
#[test]
fn changed_paths_match_git_diff_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let run = |args: &[&str]| -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let write = |path: &str, text: &str| {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let commit = |msg: &str| {
        run(&["add", "-A"]);
        run(&["commit", "-q", "--allow-empty", "-m", msg]);
    };
    run(&["init", "-q", "-b", "main"]);
    for f in [
        "a",
        "a.txt",
        "a-b",
        "b/c/d.yaml",
        "b/c/e.yaml",
        "z/y/x/w.txt",
        "top.yaml",
    ] {
        write(f, f);
    }
    commit("root");
    write("b/c/d.yaml", "changed");
    commit("edit nested");
    std::fs::remove_file(work.join("a.txt")).unwrap();
    commit("delete");
    std::fs::rename(work.join("top.yaml"), work.join("b/top.yaml")).unwrap();
    commit("rename");
    std::fs::remove_file(work.join("a")).unwrap();
    write("a/inside.txt", "now a directory");
    write("a/deeper/more.txt", "more");
    commit("file to directory");
    std::fs::remove_dir_all(work.join("a")).unwrap();
    write("a", "a file again");
    commit("directory to file");
    run(&["update-index", "--chmod=+x", "a-b"]);
    run(&["commit", "-q", "-m", "executable bit"]);
    commit("empty");
    run(&["checkout", "-q", "-b", "side"]);
    write("side/only.txt", "side");
    commit("side");
    run(&["checkout", "-q", "main"]);
    write("z/y/x/w.txt", "main moves too");
    commit("main");
    run(&["merge", "-q", "--no-ff", "-m", "merge", "side"]);

    let bare = tmp.path().join("bare.git");
    run(&["clone", "-q", "--bare", ".", bare.to_str().unwrap()]);
    let git = Git::new(config(&tmp.path().join("cache")), Arc::new(NoAuth));
    let url = format!("file://{}", bare.display());
    let mirror = git.mirror(&url).unwrap();
    mirror.fetch(&FetchSpec::branch("main")).unwrap();
    let commits = run(&["rev-list", "main"]);
    let mut checked = 0;
    for id in commits.lines() {
        let ours = mirror.changed_paths(id.parse().unwrap()).unwrap();
        let parents = run(&["rev-list", "--parents", "-n", "1", id]);
        let theirs = if parents.split_whitespace().count() == 1 {
            run(&["ls-tree", "-r", "--name-only", id])
        } else {
            let first = parents.split_whitespace().nth(1).unwrap().to_owned();
            run(&["diff-tree", "-r", "--name-only", "--no-renames", &first, id])
        };
        let mut theirs: Vec<String> = theirs.lines().map(str::to_owned).collect();
        theirs.sort();
        assert_eq!(ours, theirs, "commit {id}");
        checked += 1;
    }
    assert_eq!(checked, 11);
}

/// Two promotions in one process made from the same tip push one after the other: the
/// second builds on the first's pushed commit before trying (the mirror's ref moved under
/// the same branch lock), so it is not rejected: one attempt each, both commits on the
/// remote, the second on top of the first.
#[test]
fn a_push_after_another_in_this_process_is_not_rejected() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    m.push_edits(
        "main",
        &[
            Edit::Write {
                path: "apps/a/values.yaml".into(),
                content: b"tag: a0\n".to_vec(),
            },
            Edit::Write {
                path: "apps/b/values.yaml".into(),
                content: b"tag: b0\n".to_vec(),
            },
        ],
        "seed",
        &sig(),
        &sig(),
        true,
    )
    .unwrap();
    let checkout = |dir: &str| {
        m.checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join(dir),
            &CheckoutOptions {
                eager: true,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (a, b) = (checkout("a"), checkout("b"));
    std::fs::write(work.path().join("a/apps/a/values.yaml"), "tag: a1\n").unwrap();
    std::fs::write(work.path().join("b/apps/b/values.yaml"), "tag: b1\n").unwrap();
    a.commit("promote a", &sig(), &sig()).unwrap();
    b.commit("promote b", &sig(), &sig()).unwrap();
    let pushed_a = a.push(None, false, Some(1)).unwrap();
    // One attempt allowed: a rejection would fail the push.
    let pushed_b = b.push(None, false, Some(1)).unwrap();
    assert_eq!((pushed_a.attempts, pushed_b.attempts), (1, 1));

    // A fresh clone: both edits, b's commit on top of a's.
    let git2 = t.git(&work.path().join("cache2"));
    let fresh = git2
        .mirror(&url)
        .unwrap()
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("fresh"),
            &CheckoutOptions {
                eager: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(fresh.head(), Some(pushed_b.commit));
    let read = |p: &str| std::fs::read_to_string(work.path().join("fresh").join(p)).unwrap();
    assert_eq!(read("apps/a/values.yaml"), "tag: a1\n");
    assert_eq!(read("apps/b/values.yaml"), "tag: b1\n");
    assert!(
        git2.mirror(&url)
            .unwrap()
            .is_ancestor(pushed_a.commit, pushed_b.commit)
            .unwrap()
    );
}

/// Seeds `apps/app-<i>/values.yaml` for `n` apps and returns one eager checkout of `main`
/// per app, each with its app's file edited and committed.
fn checkouts_with_one_commit_each(m: &Mirror, work: &Path, n: usize) -> Vec<kargo_git::Checkout> {
    let seed: Vec<Edit> = (0..n)
        .map(|i| Edit::Write {
            path: format!("apps/app-{i}/values.yaml"),
            content: format!("tag: v0 # app {i}\n").into_bytes(),
        })
        .collect();
    m.push_edits("main", &seed, "seed", &sig(), &sig(), true)
        .unwrap();
    (0..n)
        .map(|i| {
            let dir = work.join(format!("co-{i}"));
            let c = m
                .checkout(
                    &CheckoutTarget::Branch("main".into()),
                    &dir,
                    &CheckoutOptions {
                        eager: true,
                        ..Default::default()
                    },
                )
                .unwrap();
            std::fs::write(
                dir.join(format!("apps/app-{i}/values.yaml")),
                format!("tag: v1 # app {i}\n"),
            )
            .unwrap();
            c.commit(&format!("promote app-{i}"), &sig(), &sig())
                .unwrap();
            c
        })
        .collect()
}

/// Pushes every checkout at once (one thread each, released together).
fn push_all_at_once(checkouts: &[kargo_git::Checkout]) -> Vec<kargo_git::PushOutcome> {
    let start = std::sync::Barrier::new(checkouts.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = checkouts
            .iter()
            .map(|c| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    c.push(None, false, Some(5))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    })
}

/// The remote's `main`, read through a fresh cache: each of the newest `n` commits
/// changes exactly one app's file to `v1`, every app's commit is there once, and every
/// app's file says `v1`.
fn assert_one_commit_per_app(t: &Transport, url: &str, work: &Path, n: usize) -> Vec<CommitInfo> {
    let git = t.git(&work.join("verify-cache"));
    let m = git.mirror(url).unwrap();
    m.fetch(&FetchSpec::branch("main")).unwrap();
    let log = m.log("refs/heads/main", 10_000).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in log.iter().filter(|c| c.message.starts_with("promote app-")) {
        let app = c.message.trim().trim_start_matches("promote ").to_owned();
        assert!(seen.insert(app.clone()), "{app} committed twice");
        let parent = c.parents[0];
        let before = m
            .read_file(&parent.to_string(), &format!("apps/{app}/values.yaml"))
            .unwrap();
        let after = m
            .read_file(&c.id.to_string(), &format!("apps/{app}/values.yaml"))
            .unwrap();
        assert_ne!(before, after, "{app}'s commit changes its file");
        let changed = m.changed_paths(c.id).unwrap();
        assert_eq!(
            changed,
            vec![format!("apps/{app}/values.yaml")],
            "{app}'s commit changes only its file"
        );
    }
    assert_eq!(seen.len(), n, "one commit per app: {seen:?}");
    for i in 0..n {
        assert_eq!(
            m.read_file("refs/heads/main", &format!("apps/app-{i}/values.yaml"))
                .unwrap()
                .as_deref(),
            Some(format!("tag: v1 # app {i}\n").as_bytes())
        );
    }
    log
}

#[test]
fn concurrent_pushes_to_one_branch_share_pushes_and_all_land() {
    let Some(t) = http_transport() else { return };
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    let n = 16;
    let checkouts = checkouts_with_one_commit_each(&m, work.path(), n);
    let outcomes = push_all_at_once(&checkouts);
    // Every member of a batch of k reports k: the number of pushes is the sum of 1/k.
    let pushes: f64 = outcomes.iter().map(|o| 1.0 / o.batch as f64).sum();
    let pushes = pushes.round() as usize;
    assert!(
        pushes < n / 2,
        "{n} concurrent pushes should share pushes; took {pushes}: {outcomes:?}"
    );
    assert!(outcomes.iter().all(|o| o.attempts == 1), "{outcomes:?}");
    let log = assert_one_commit_per_app(&t, &url, work.path(), n);
    // The newest commit is one of the pushed ones, and the remote's tip is what the
    // mirror here says.
    assert!(outcomes.iter().any(|o| o.commit == log[0].id));
    assert_eq!(m.resolve("refs/heads/main").unwrap(), log[0].id);
}

#[test]
fn a_batch_refused_because_the_remote_moved_is_rebuilt_on_the_new_tip() {
    let Some(t) = http_transport() else { return };
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    let n = 8;
    let checkouts = checkouts_with_one_commit_each(&m, work.path(), n);
    // Someone else (another cache: another process, as far as this one knows) pushes
    // first: every batch built on the old tip is refused and replayed.
    let other = t.git(&work.path().join("other-cache"));
    other
        .mirror(&url)
        .unwrap()
        .push_edits(
            "main",
            &[Edit::Write {
                path: "shared/config.yaml".into(),
                content: b"moved: true\n".to_vec(),
            }],
            "someone else",
            &sig(),
            &sig(),
            true,
        )
        .unwrap();
    let outcomes = push_all_at_once(&checkouts);
    assert!(
        outcomes.iter().all(|o| o.attempts >= 2),
        "every commit was in a refused batch or built on one: {outcomes:?}"
    );
    let log = assert_one_commit_per_app(&t, &url, work.path(), n);
    assert!(log.iter().any(|c| c.message.trim() == "someone else"));
    assert_eq!(
        m.read_file("refs/heads/main", "shared/config.yaml")
            .unwrap()
            .as_deref(),
        Some(&b"moved: true\n"[..])
    );
}

#[test]
fn concurrent_pushes_with_nothing_of_their_own_do_not_wait_for_each_other() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let url = t.new_repo();
    let git = t.git(&work.path().join("cache"));
    let m = git.mirror(&url).unwrap();
    let n = 4;
    let mut checkouts = checkouts_with_one_commit_each(&m, work.path(), n);
    // Checkouts that committed nothing: the same head, nothing of their own.
    for i in 0..n {
        checkouts.push(
            m.checkout(
                &CheckoutTarget::Branch("main".into()),
                &work.path().join(format!("idle-{i}")),
                &CheckoutOptions::default(),
            )
            .unwrap(),
        );
    }
    let outcomes = push_all_at_once(&checkouts);
    assert_eq!(outcomes.len(), 2 * n);
    assert_one_commit_per_app(&t, &url, work.path(), n);
}

/// Issue 19: mirrors made for a checkout are depth 1 by default; a full mirror stays full;
/// reads that need history beyond the shallow boundary deepen the mirror, and a history
/// walk that deepens half-way visits every commit exactly once.
#[test]
fn shallow_by_default_and_history_reads_deepen() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let (_bare, url) = local_repo(&t);
    let mut full_config = config(&work.path().join("seed"));
    full_config.depth = None;
    let full = Git::new(full_config, Arc::new(NoAuth))
        .mirror(&url)
        .unwrap();
    let mut history = vec![seed(&full)];
    for i in 0..3 {
        let out = full
            .push_edits(
                "main",
                &[Edit::Write {
                    path: format!("apps/a/file-{i}"),
                    content: vec![b'x'; i + 1],
                }],
                &format!("edit {i}"),
                &sig(),
                &sig(),
                false,
            )
            .unwrap();
        history.push(out.commit);
    }
    history.reverse();
    let tip = history[0];
    assert!(!full.is_shallow().unwrap());
    let checkout_in = |m: &kargo_git::Mirror, dir: &str| {
        m.checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join(dir),
            &CheckoutOptions::default(),
        )
        .unwrap()
    };
    // A full mirror stays full when a checkout uses it.
    checkout_in(&full, "co-full");
    assert!(!full.is_shallow().unwrap(), "a full mirror stays full");

    // A cold checkout: the tip only.
    let cold = |name: &str| {
        let m = Git::new(config(&work.path().join(name)), Arc::new(NoAuth))
            .mirror(&url)
            .unwrap();
        let co = checkout_in(&m, &format!("co-{name}"));
        assert_eq!(co.head(), Some(tip));
        assert!(
            m.is_shallow().unwrap(),
            "{name}: a cold checkout is shallow"
        );
        m
    };
    // A walk that goes past the boundary deepens and sees each commit once.
    let m = cold("walk");
    let mut seen = Vec::new();
    m.walk_history(tip, |c| {
        seen.push(c.id);
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .unwrap();
    assert_eq!(seen, history);
    assert!(!m.is_shallow().unwrap());
    // A walk that stops at the tip does not deepen.
    let m = cold("walk-one");
    m.walk_history(tip, |_| Ok(std::ops::ControlFlow::Break(())))
        .unwrap();
    assert!(m.is_shallow().unwrap(), "no history was needed");
    assert_eq!(m.log("main", 1).unwrap().len(), 1);
    assert!(m.is_shallow().unwrap(), "log -1 needs no history");
    // The boundary commit's changed paths need its parent.
    let m = cold("paths");
    assert_eq!(m.changed_paths(tip).unwrap(), ["apps/a/file-2"]);
    assert!(!m.is_shallow().unwrap());
    // An ancestor the mirror does not hold.
    let m = cold("ancestor");
    assert!(m.is_ancestor(history[3], tip).unwrap());
    assert!(!m.is_shallow().unwrap());
    // A checkout of a commit behind the tip.
    let m = Git::new(config(&work.path().join("commit")), Arc::new(NoAuth))
        .mirror(&url)
        .unwrap();
    let co = m
        .checkout(
            &CheckoutTarget::Commit(history[2].to_string()),
            &work.path().join("co-commit"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    assert_eq!(co.head(), Some(history[2]));
}

/// Whether the mirror at `mirror` holds object `id` (without letting git fetch it).
fn holds(mirror: &Path, id: &str) -> bool {
    Command::new("git")
        .args(["cat-file", "-e", id])
        .current_dir(mirror)
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap()
        .success()
}

/// Issue 19: a cold checkout makes a shallow, blobless mirror: commits and trees only;
/// the file a promotion reads is fetched when it is materialised; the commit and push land
/// on the real tip; a push after the remote changed a file whose blob the mirror never
/// had (a thin pack's delta base it lacks) still lands; deepening works.
fn blobless_promotion(t: &Transport, bare: &Path) {
    let who = t.name;
    let work = tempfile::tempdir().unwrap();
    let url = format!(
        "{}/{}",
        t.base_url,
        bare.file_name().unwrap().to_str().unwrap()
    );
    // Like GitHub and GitLab: partial clones allowed (the servers of ci/test.sh allow
    // them; file:// reads the repository's own configuration).
    git_ok(bare, &["config", "uploadpack.allowFilter", "true"]);
    let mut seed_config = config(&work.path().join("seed"));
    seed_config.depth = None;
    let creds: Arc<dyn kargo_git::CredentialSource> = match &t.auth {
        Some(a) => Arc::new(StaticAuth::new().with(t.base_url.clone(), a.clone())),
        None => Arc::new(NoAuth),
    };
    let full = Git::new(seed_config, creds.clone()).mirror(&url).unwrap();
    let seeded = seed(&full);
    let write = |m: &kargo_git::Mirror, path: &str, content: &str| {
        m.push_edits(
            "main",
            &[Edit::Write {
                path: path.into(),
                content: content.as_bytes().to_vec(),
            }],
            "edit",
            &sig(),
            &sig(),
            false,
        )
        .unwrap_or_else(|e| panic!("{who}: {e}"))
        .commit
    };
    let b_content = "tag: 2.0.0\nsize: big\n".repeat(50);
    let tip = write(&full, "apps/b/values.yaml", &b_content);

    let git = Git::new(config(&work.path().join("cache")), creds);
    let m = git.mirror(&url).unwrap();
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("co"),
            &CheckoutOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(co.head(), Some(tip), "{who}");
    assert!(m.is_shallow().unwrap(), "{who}");
    let blob = |rev: &str, path: &str| git_ok(bare, &["rev-parse", &format!("{rev}:{path}")]);
    let b_blob = blob("main", "apps/b/values.yaml");
    assert!(
        !holds(m.path(), &b_blob),
        "{who}: blobless: no blob until read"
    );
    assert!(
        holds(m.path(), &tip.to_string()),
        "{who}: the commit is there"
    );
    // Treeless as well: no directory until a path through it is read.
    let b_dir = blob("main", "apps/b");
    let a_dir = blob("main", "apps/a");
    assert!(!holds(m.path(), &b_dir), "{who}: treeless: no directory");
    assert!(!holds(m.path(), &a_dir), "{who}: treeless: no directory");
    co.materialize(Path::new("apps/a/values.yaml")).unwrap();
    assert!(
        holds(m.path(), &blob("main", "apps/a/values.yaml")),
        "{who}"
    );
    assert!(
        holds(m.path(), &a_dir),
        "{who}: the directories along the path"
    );
    assert!(!holds(m.path(), &b_blob), "{who}: only what was read");
    assert!(!holds(m.path(), &b_dir), "{who}: only the directories read");
    let a_file = work.path().join("co/apps/a/values.yaml");
    assert_eq!(std::fs::read_to_string(&a_file).unwrap(), "tag: 1.0.0\n");
    std::fs::write(&a_file, "tag: 1.1.0\n").unwrap();
    co.commit("promote a", &sig(), &sig()).unwrap();
    let pushed = co
        .push(None, false, None)
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        git_ok(bare, &["rev-parse", "main~1"]),
        tip.to_string(),
        "{who}"
    );
    assert_eq!(
        git_ok(bare, &["rev-parse", "main"]),
        pushed.commit.to_string()
    );
    // Committed and pushed without the directory next to the edited one: the new trees
    // name it all the same.
    assert!(!holds(m.path(), &b_dir), "{who}: apps/b never fetched");
    assert_eq!(git_ok(bare, &["rev-parse", "main:apps/b"]), b_dir, "{who}");
    git_ok(bare, &["fsck", "--no-progress"]);

    // Another writer changes apps/b (whose blob this mirror never had) and pushes first.
    let b_new = format!("{b_content}extra: 1\n");
    let theirs = write(&full, "apps/b/values.yaml", &b_new);
    std::fs::write(&a_file, "tag: 1.2.0\n").unwrap();
    co.commit("promote a again", &sig(), &sig()).unwrap();
    let pushed = co
        .push(None, false, None)
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        git_ok(bare, &["rev-parse", "main~1"]),
        theirs.to_string(),
        "{who}"
    );
    assert_eq!(
        git_ok(bare, &["rev-parse", "main"]),
        pushed.commit.to_string()
    );
    assert_eq!(
        git_ok(bare, &["show", "main:apps/a/values.yaml"]),
        "tag: 1.2.0"
    );
    assert_eq!(
        git_ok(bare, &["show", "main:apps/b/values.yaml"]),
        b_new.trim_end()
    );
    git_ok(bare, &["fsck", "--no-progress"]);

    // A read of a file never materialised fetches its blob.
    assert_eq!(
        m.read_file("main", "README.md").unwrap().unwrap(),
        b"# gitops\n",
        "{who}"
    );
    // History: deepening a blobless mirror.
    let mut seen = Vec::new();
    m.walk_history(pushed.commit, |c| {
        seen.push(c.id);
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(seen.len(), 5, "{who}: seed, b, a, b, a: {seen:?}");
    assert_eq!(seen.last(), Some(&seeded), "{who}");
    assert!(!m.is_shallow().unwrap(), "{who}");
}

#[test]
fn blobless_promotion_file() {
    let t = file_transport();
    let url = t.new_repo();
    let bare = PathBuf::from(url.strip_prefix("file://").unwrap());
    blobless_promotion(&t, &bare);
}

#[test]
fn blobless_promotion_smart_http() {
    let Some(t) = http_transport() else { return };
    let url = t.new_repo();
    let name = url.rsplit('/').next().unwrap();
    blobless_promotion(&t, &t.root.join(name));
}

/// Blobless checkouts of one mirror materialising files from several threads at once:
/// their blob fetches are serialised by the mirror lock (git's fetch into a shallow mirror
/// holds `shallow.lock`; two at once would fail), and every file arrives.
#[test]
fn concurrent_blob_fetches_into_one_blobless_mirror() {
    let t = file_transport();
    let work = tempfile::tempdir().unwrap();
    let (bare, url) = local_repo(&t);
    git_ok(&bare, &["config", "uploadpack.allowFilter", "true"]);
    let mut seed_config = config(&work.path().join("seed"));
    seed_config.depth = None;
    let full = Git::new(seed_config, Arc::new(NoAuth))
        .mirror(&url)
        .unwrap();
    let edits: Vec<Edit> = (0..40)
        .map(|i| Edit::Write {
            path: format!("apps/app-{i}/values.yaml"),
            content: format!("app: {i}\n").into_bytes(),
        })
        .collect();
    full.push_edits("main", &edits, "apps", &sig(), &sig(), true)
        .unwrap();
    let m = Git::new(config(&work.path().join("cache")), Arc::new(NoAuth))
        .mirror(&url)
        .unwrap();
    let checkouts: Vec<_> = (0..4)
        .map(|k| {
            m.checkout(
                &CheckoutTarget::Branch("main".into()),
                &work.path().join(format!("co-{k}")),
                &CheckoutOptions::default(),
            )
            .unwrap()
        })
        .collect();
    assert!(!holds(
        m.path(),
        &git_ok(&bare, &["rev-parse", "main:apps/app-0/values.yaml"])
    ));
    std::thread::scope(|s| {
        for (k, co) in checkouts.iter().enumerate() {
            let root = work.path().join(format!("co-{k}"));
            s.spawn(move || {
                for i in (k..40).step_by(4) {
                    let rel = format!("apps/app-{i}/values.yaml");
                    co.materialize(Path::new(&rel)).unwrap();
                    assert_eq!(
                        std::fs::read_to_string(root.join(&rel)).unwrap(),
                        format!("app: {i}\n")
                    );
                }
            });
        }
    });
}

/// Issue 19: what a treeless mirror does beyond reading one file: a whole directory and a
/// whole checkout fetch every directory below them; a commit that adds a file in a new
/// directory and deletes another lands with the right tree; a checkout made before the
/// mirror filled in its trees (another reader needed them) still rebases onto a moved
/// branch, its old trees filled in with the rest.
#[test]
fn treeless_directories_new_paths_and_filling_in() {
    let t = file_transport();
    let url = t.new_repo();
    let bare = PathBuf::from(url.strip_prefix("file://").unwrap());
    git_ok(&bare, &["config", "uploadpack.allowFilter", "true"]);
    let work = tempfile::tempdir().unwrap();
    let mut seed_config = config(&work.path().join("seed"));
    seed_config.depth = None;
    let full = Git::new(seed_config, Arc::new(NoAuth))
        .mirror(&url)
        .unwrap();
    seed(&full);
    let git = Git::new(config(&work.path().join("cache")), Arc::new(NoAuth));
    let m = git.mirror(&url).unwrap();
    let rev = |spec: &str| git_ok(&bare, &["rev-parse", spec]);

    // A directory: every file below it.
    let co = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("co1"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    assert!(!holds(m.path(), &rev("main:apps")), "treeless");
    co.materialize(Path::new("apps")).unwrap();
    let root = work.path().join("co1");
    assert_eq!(
        std::fs::read_to_string(root.join("apps/a/values.yaml")).unwrap(),
        "tag: 1.0.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("apps/b/values.yaml")).unwrap(),
        "tag: 2.0.0\n"
    );
    // A new file in a new directory, a deleted one: the tree the server gets.
    co.materialize(Path::new("README.md")).unwrap();
    std::fs::remove_file(root.join("README.md")).unwrap();
    co.materialize(Path::new("env/prod/values.yaml")).unwrap();
    std::fs::write(root.join("env/prod/values.yaml"), "tag: 3.0.0\n").unwrap();
    co.commit("add prod, drop readme", &sig(), &sig()).unwrap();
    co.push(None, false, None).unwrap();
    assert_eq!(
        git_ok(&bare, &["ls-tree", "-r", "--name-only", "main"]),
        "apps/a/values.yaml\napps/b/values.yaml\nenv/prod/values.yaml"
    );
    git_ok(&bare, &["fsck", "--no-progress"]);

    // A whole checkout of the new tip: every file.
    let co2 = m
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("co2"),
            &CheckoutOptions {
                eager: true,
                ..CheckoutOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(co2.root().join("env/prod/values.yaml")).unwrap(),
        "tag: 3.0.0\n"
    );
    assert!(co2.root().join("apps/b/values.yaml").exists());

    // A checkout made while the mirror was treeless, then the branch moves and another
    // reader fills in the mirror's trees; this checkout's commit still rebases and lands.
    let git3 = Git::new(config(&work.path().join("cache3")), Arc::new(NoAuth));
    let m3 = git3.mirror(&url).unwrap();
    let co3 = m3
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &work.path().join("co3"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    co3.materialize(Path::new("apps/a/values.yaml")).unwrap();
    let old_b_dir = rev("main:apps/b");
    assert!(!holds(m3.path(), &old_b_dir), "treeless");
    let theirs = full
        .push_edits(
            "main",
            &[Edit::Write {
                path: "apps/b/values.yaml".into(),
                content: b"tag: 2.1.0\n".to_vec(),
            }],
            "theirs",
            &sig(),
            &sig(),
            false,
        )
        .unwrap()
        .commit;
    // The mirror fetches the new tip (still treeless: its new directories only), then a
    // reader at that tip fills in the trees of every commit held, the checkout's old tip
    // among them, which its rebase reads.
    m3.fetch(&kargo_git::FetchSpec::branch("main")).unwrap();
    assert!(!holds(m3.path(), &old_b_dir), "treeless after a fetch");
    assert_eq!(
        m3.read_file("main", "apps/b/values.yaml").unwrap().unwrap(),
        b"tag: 2.1.0\n"
    );
    assert!(holds(m3.path(), &old_b_dir), "filled in");
    std::fs::write(co3.root().join("apps/a/values.yaml"), "tag: 1.5.0\n").unwrap();
    co3.commit("promote a", &sig(), &sig()).unwrap();
    let pushed = co3.push(None, false, None).unwrap();
    assert_eq!(rev("main~1"), theirs.to_string());
    assert_eq!(rev("main"), pushed.commit.to_string());
    assert_eq!(
        git_ok(&bare, &["show", "main:apps/a/values.yaml"]),
        "tag: 1.5.0"
    );
    assert_eq!(
        git_ok(&bare, &["show", "main:apps/b/values.yaml"]),
        "tag: 2.1.0"
    );
    git_ok(&bare, &["fsck", "--no-progress"]);
}
