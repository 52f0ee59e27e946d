//! Crash safety: the `promoter` example is killed with SIGKILL at chosen points of a
//! promotion, then run again, and every time the result must converge: the GitOps remote
//! has the intended change exactly once, the state store is readable, the interrupted
//! promotion is recorded Succeeded and the Stage holds the right Freight.
//!
//! The points are reached without hooks in the library: the promoter runs with its log
//! on stderr (`KARGO_LOG=info`), and the harness kills it (and its process group, so a
//! `git push` child dies too) the moment a given line appears, or when a child process
//! or a file shows that it is inside a given operation:
//!
//! | point | trigger |
//! |---|---|
//! | `before-commit` | `promotion started` or `git-clone: checked out` (chosen at random) |
//! | `after-commit` | `git-commit: committed` |
//! | `during-push` | after `git-commit: committed`, a `git push` child process exists; then a random 0-15 ms |
//! | `state-write` | after `git-push: pushed`, the state store's journal `<project>.journal` changes length (a write's line appended, before the write returns) or a compaction's `<project>.json.tmp` exists |
//! | `random` | a random delay (0 to half a measured `run`) after `promotion started` |
//!
//! Where a kill really landed is read from what it left: the state store's journal grown
//! since `git-push: pushed` or its temporary snapshot file (at a state write), a `git
//! push` child alive at the kill, the log (committed or
//! not), the remote (pushed or not). Each point gets `KARGO_CRASH_KILLS_PER_POINT` kills
//! on target (default 10: 50 in all); a run that finishes before its trigger, or a kill
//! that lands elsewhere, is checked like the others and the point is tried again in a
//! later round (at most 3 × the count + 5 tries per point). Every round pushes a new
//! commit to the application repository (a new Freight) and kills either `promote` (after
//! an unkilled `refresh`) or `run` (discovery and auto-promotion); the rerun is the same
//! verb (`promote` for the same Freight, or `run --refresh-all`).
//!
//! The random choices come from a seeded generator; the seed is printed and can be set
//! with `KARGO_CRASH_SEED`. The remotes are on the smart-HTTP git server of `ci/test.sh`
//! (`TEST_GIT_HTTP_URL`, push with credentials); without it the test skips, except with
//! `CI=true`, where it fails. Run it with `ci/test.sh --test crash_safety`.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kargo_core::pipeline::{FileStore, StateStore as _};
use kargo_core::testing::server_envs;
use serde_json::Value as Json;
use support::{Rng, empty_bare_repo_with_clone, git, promoter_bin, seed_bare_repo};

// ---------------------------------------------------------------------------------------
// The kill points

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Point {
    BeforeCommit,
    AfterCommit,
    DuringPush,
    StateWrite,
    Random,
}

impl Point {
    const ALL: [Point; 5] = [
        Point::BeforeCommit,
        Point::AfterCommit,
        Point::DuringPush,
        Point::StateWrite,
        Point::Random,
    ];
    fn name(self) -> &'static str {
        match self {
            Point::BeforeCommit => "before-commit",
            Point::AfterCommit => "after-commit",
            Point::DuringPush => "during-push",
            Point::StateWrite => "state-write",
            Point::Random => "random",
        }
    }
}

/// What one killed run did before it died.
#[derive(Debug)]
struct Kill {
    /// Whether the kill happened (false: the run ended before its trigger).
    killed: bool,
    /// The promotion that was running (from the `promotion started` line).
    promotion: Option<String>,
    /// Whether a `git push` child was alive at the kill.
    push_alive: bool,
    /// Whether the kill landed at a state write after the push: the journal grew since
    /// `git-push: pushed` was logged (a line appended: the process died as it wrote or
    /// right after), or a compaction's temporary snapshot file was left (between its
    /// creation and its rename).
    state_write: bool,
    /// The stderr lines the process wrote.
    lines: Vec<String>,
}

impl Kill {
    fn logged(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// Every live descendant of `pid` (children lists of all its threads, recursively).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                for c in text
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok())
                {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Whether a descendant of `pid` is a `git push`.
fn push_child_alive(pid: u32) -> bool {
    descendants(pid).into_iter().any(|d| {
        std::fs::read(format!("/proc/{d}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|arg| arg == b"push" || arg == b"send-pack")
        })
    })
}

/// SIGKILL for the promoter at once, then for its whole process group (a `git push` child
/// and its helpers), as a crash of the machine would.
fn kill_group(child: &mut Child) {
    let _ = child.kill();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------
// The scenario

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: shop}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {name: shop, namespace: shop}
spec:
  promotionPolicies:
  - stageSelector: {name: dev}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: shop}
spec:
  interval: 1s
  subscriptions:
  - git: {repoURL: "APP_URL", branch: main}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: shop}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: GITOPS_URL
          checkout: [{branch: main, path: ./src}]
      - uses: yaml-update
        config:
          path: ./src/env/dev/values.yaml
          updates:
          - key: app.revision
            value: $<< commitFrom("APP_URL").ID >>
      - uses: git-commit
        config:
          path: ./src
          message: 'crash-safety: dev -> $<< commitFrom("APP_URL").ID >>'
      - uses: git-push
        config: {path: ./src}
"#;

const VALUES_PATH: &str = "env/dev/values.yaml";

/// The dev values file with `revision`: only that value changes on promotion.
fn values(revision: &str) -> String {
    format!(
        "# dev values: Kargo edits app.revision only\n\
         app:\n\
         \x20 name: shop   # keep\n\
         \x20 revision: {revision}  # promoted\n\
         replicas: 2\n"
    )
}

struct Scenario {
    bin: PathBuf,
    manifests: PathBuf,
    state: PathBuf,
    credentials: PathBuf,
    gitops: PathBuf,
    app_seed: PathBuf,
    app_builds: u32,
}

impl Scenario {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--manifests")
            .arg(&self.manifests)
            .arg("--state")
            .arg(&self.state)
            .arg("--credentials")
            .arg(&self.credentials)
            .args(args)
            .env("NO_COLOR", "1")
            .env("KARGO_ACTOR", "crash-test")
            .env("KARGO_LOG", "info")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        cmd
    }

    /// Runs to the end; panics unless the exit status is 0.
    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "promoter {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new commit on the application repository; returns its ID.
    fn app_commit(&mut self) -> String {
        self.app_builds += 1;
        let n = self.app_builds;
        std::fs::write(self.app_seed.join("version.txt"), format!("{n}\n")).unwrap();
        git(&self.app_seed, &["add", "."]);
        git(
            &self.app_seed,
            &["commit", "-q", "-m", &format!("build {n}")],
        );
        git(&self.app_seed, &["push", "-q", "origin", "main"]);
        git(&self.app_seed, &["rev-parse", "HEAD"])
            .trim()
            .to_owned()
    }

    fn state_journal(&self) -> PathBuf {
        self.state.join("shop.journal")
    }

    /// The journal's length (0: none).
    fn journal_len(&self) -> u64 {
        std::fs::metadata(self.state_journal()).map_or(0, |m| m.len())
    }

    fn state_tmp(&self) -> PathBuf {
        self.state.join("shop.json.tmp")
    }

    /// The state as the file store reads it (snapshot and journal; it must read
    /// whenever it exists), as `{"revision": .., "state": ..}`.
    fn state_json(&self) -> Option<Json> {
        if !self.state.join("shop.json").exists() && !self.state_journal().exists() {
            return None;
        }
        let store = FileStore::open(&self.state).unwrap();
        let (state, revision) = futures::executor::block_on(store.load("shop"))
            .unwrap_or_else(|e| panic!("the state is not readable: {e}"));
        Some(serde_json::json!({"revision": revision, "state": state}))
    }

    /// Runs `args` and SIGKILLs it at `point`.
    fn run_and_kill(&self, args: &[&str], point: Point, rng: &mut Rng, random_max: u64) -> Kill {
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let before_commit_trigger = if rng.upto(1) == 0 {
            "promotion started"
        } else {
            "git-clone: checked out"
        };
        let random_delay = Duration::from_millis(rng.upto(random_max));
        let push_delay = Duration::from_millis(rng.upto(15));
        let tmp = self.state_tmp();
        // The journal's length when `git-push: pushed` was seen.
        let mut journal_at_push: Option<u64> = None;
        let mut lines = Vec::new();
        let mut promotion = None;
        let mut armed: Option<Instant> = None; // the trigger line was seen at
        let mut push_seen: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut killed = false;
        let mut push_alive = false;
        loop {
            // Lines first (without blocking).
            while let Ok(line) = rx.try_recv() {
                if promotion.is_none()
                    && line.contains("promotion started")
                    && let Some(p) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("promotion="))
                {
                    promotion = Some(p.to_owned());
                }
                let trigger = match point {
                    Point::BeforeCommit => before_commit_trigger,
                    Point::AfterCommit | Point::DuringPush => "git-commit: committed",
                    Point::StateWrite => "git-push: pushed",
                    Point::Random => "promotion started",
                };
                if armed.is_none() && line.contains(trigger) {
                    armed = Some(Instant::now());
                }
                if journal_at_push.is_none() && line.contains("git-push: pushed") {
                    journal_at_push = Some(self.journal_len());
                }
                lines.push(line);
            }
            let fire = match (point, armed) {
                (_, None) => false,
                (Point::BeforeCommit | Point::AfterCommit, Some(_)) => true,
                (Point::DuringPush, Some(_)) => {
                    if push_seen.is_none() && push_child_alive(pid) {
                        push_seen = Some(Instant::now());
                    }
                    push_seen.is_some_and(|t| t.elapsed() >= push_delay)
                }
                (Point::StateWrite, Some(_)) => {
                    tmp.exists() || journal_at_push.is_some_and(|n| self.journal_len() != n)
                }
                (Point::Random, Some(t)) => t.elapsed() >= random_delay,
            };
            if fire {
                push_alive = push_child_alive(pid);
                kill_group(&mut child);
                killed = true;
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let _ = status;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "promoter {} did not finish within 60 s",
                args.join(" ")
            );
            match point {
                // Spin: the window is a few milliseconds.
                Point::StateWrite | Point::DuringPush if armed.is_some() => {}
                _ => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        if promotion.is_none() {
            promotion = lines.iter().find_map(|l| {
                l.contains("promotion started")
                    .then(|| {
                        l.split_whitespace()
                            .find_map(|w| w.strip_prefix("promotion="))
                    })
                    .flatten()
                    .map(str::to_owned)
            });
        }
        Kill {
            killed,
            promotion,
            push_alive,
            // Every run before this one ended with a clean state directory (checked).
            state_write: killed
                && (tmp.exists() || journal_at_push.is_some_and(|n| self.journal_len() != n)),
            lines,
        }
    }

    fn remote_file(&self) -> String {
        git(&self.gitops, &["show", &format!("main:{VALUES_PATH}")])
    }

    /// How many commits of the remote's main carry `revision` in their message.
    fn commits_for(&self, revision: &str) -> usize {
        git(&self.gitops, &["log", "--format=%s", "main"])
            .lines()
            .filter(|l| l.contains(revision))
            .count()
    }

    fn remote_commits(&self) -> usize {
        git(&self.gitops, &["rev-list", "--count", "main"])
            .trim()
            .parse()
            .unwrap()
    }

    /// Leftovers of killed processes that must be gone after a successful run.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        if self.state_tmp().exists() {
            found.push(self.state_tmp().display().to_string());
        }
        if let Ok(rd) = std::fs::read_dir(self.state.join("work")) {
            for e in rd.flatten() {
                found.push(e.path().display().to_string());
            }
        }
        // Lock files git leaves inside a repository (refs, packed-refs, shallow, HEAD,
        // config): the mirrors' own `<key>.lock` next to them are OS locks, not these.
        fn walk(dir: &Path, found: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p.extension().is_some_and(|x| x == "lock") {
                    found.push(p.display().to_string());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.state.join("cache").join("git")) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), &mut found);
                }
            }
        }
        found
    }
}

/// Freight IDs by the application commit they carry, from the state's Freight map.
fn freight_by_commit(freight: &Json) -> BTreeMap<String, String> {
    freight
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, rec)| {
            (
                rec["freight"]["commits"][0]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                id.clone(),
            )
        })
        .collect()
}

#[test]
fn sigkill_at_any_point_then_rerun_converges() {
    let t = "sigkill_at_any_point_then_rerun_converges";
    let Some(env) = server_envs(
        t,
        &[
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    ) else {
        return;
    };
    let [url, git_root, user, password] = <[String; 4]>::try_from(env).unwrap();
    let per_point: usize = std::env::var("KARGO_CRASH_KILLS_PER_POINT")
        .ok()
        .map(|v| v.parse().expect("KARGO_CRASH_KILLS_PER_POINT: a number"))
        .unwrap_or(10);
    let seed: u64 = match std::env::var("KARGO_CRASH_SEED") {
        Ok(v) => v.parse().expect("KARGO_CRASH_SEED: a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("crash_safety: seed {seed} (rerun with KARGO_CRASH_SEED={seed})");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let tag = format!("crash-{}", std::process::id());

    // The GitOps repository (push needs credentials) and the application repository.
    let gitops = PathBuf::from(&git_root).join(format!("{tag}-gitops.git"));
    let seed_dir = root.join("seed");
    std::fs::create_dir_all(seed_dir.join("env/dev")).unwrap();
    std::fs::write(seed_dir.join(VALUES_PATH), values("none")).unwrap();
    seed_bare_repo(&seed_dir, &gitops);
    let app = PathBuf::from(&git_root).join(format!("{tag}-app.git"));
    let app_seed = root.join("app");
    empty_bare_repo_with_clone(&app, &app_seed);

    let manifests = root.join("kargo");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("shop.yaml"),
        MANIFESTS
            .replace("APP_URL", &format!("{url}/{tag}-app.git"))
            .replace("GITOPS_URL", &format!("{url}/{tag}-gitops.git")),
    )
    .unwrap();
    let credentials = root.join("credentials.yaml");
    std::fs::write(
        &credentials,
        format!(
            "- type: git\n  repoURLPattern: '^http://127\\.0\\.0\\.1:[0-9]+/crash-'\n  \
             username: {user}\n  password: {password}\n"
        ),
    )
    .unwrap();
    let mut s = Scenario {
        bin: promoter_bin(),
        manifests,
        state: root.join("state"),
        credentials,
        gitops,
        app_seed,
        app_builds: 0,
    };

    // A first, unkilled promotion: warms the mirrors and measures a promotion.
    let c0 = s.app_commit();
    let started = Instant::now();
    s.run_ok(&["run"]);
    let baseline = started.elapsed();
    assert_eq!(s.remote_file(), values(&c0));
    assert_eq!(s.commits_for(&c0), 1);
    let mut expected_commits = s.remote_commits();
    // About half of a `run` is discovery and start-up, before `promotion started`.
    let random_max = (baseline.as_millis() as u64 / 2).max(50);
    eprintln!(
        "crash_safety: an unkilled `run` takes {baseline:?}; random kills within {random_max} ms"
    );

    // The plan: `per_point` landed kills per point, in a seeded order.
    let mut todo: Vec<Point> = Point::ALL
        .iter()
        .flat_map(|p| std::iter::repeat_n(*p, per_point))
        .collect();
    for i in (1..todo.len()).rev() {
        let j = rng.upto(i as u64) as usize;
        todo.swap(i, j);
    }
    let mut landed: BTreeMap<Point, usize> = BTreeMap::new();
    let mut attempts: BTreeMap<Point, usize> = BTreeMap::new();
    let mut evidence: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills = 0usize;
    let mut round = 0usize;
    let total_start = Instant::now();
    while let Some(point) = todo.pop() {
        round += 1;
        let tries = attempts.entry(point).or_default();
        *tries += 1;
        assert!(
            *tries <= per_point * 3 + 5,
            "{}: only {} of {per_point} kills on target in {} attempts (seed {seed})",
            point.name(),
            landed.get(&point).copied().unwrap_or(0),
            *tries - 1
        );
        let revision = s.app_commit();
        let use_run = rng.upto(1) == 0;
        // The killed command and its rerun.
        let (kill, rerun): (Kill, Vec<String>) = if use_run {
            (
                s.run_and_kill(&["run", "--refresh-all"], point, &mut rng, random_max),
                vec!["run".into(), "--refresh-all".into()],
            )
        } else {
            let out = s.run_ok(&["refresh", "warehouse", "app", "-o", "json"]);
            let out: Json = serde_json::from_str(&out).unwrap();
            assert_eq!(out["outcome"], "Created", "{out:#}");
            let alias = out["freight"]["alias"].as_str().unwrap().to_owned();
            let args = ["promote", "--stage", "dev", "--freight", alias.as_str()];
            (
                s.run_and_kill(&args, point, &mut rng, random_max),
                args.iter().map(|a| (*a).to_owned()).collect(),
            )
        };
        let verb = if use_run { "run" } else { "promote" };

        // Right after the kill: the state is readable (old or new, never torn).
        let _ = s.state_json();
        let pushed_at_kill = s.commits_for(&revision);
        assert!(
            pushed_at_kill <= 1,
            "round {round}: {pushed_at_kill} commits"
        );
        if kill.killed {
            kills += 1;
            // Where the kill really landed, from what it left.
            let (what, at) = if kill.state_write {
                (
                    "killed at a state write after the push (journal grown or temporary file left)",
                    Point::StateWrite,
                )
            } else if kill.push_alive {
                ("killed while `git push` ran", Point::DuringPush)
            } else if !kill.logged("git-commit: committed") {
                ("killed before the commit", Point::BeforeCommit)
            } else if pushed_at_kill == 0 {
                (
                    "killed after the commit, nothing pushed",
                    Point::AfterCommit,
                )
            } else {
                (
                    "killed after the push, before the state recorded it",
                    Point::Random,
                )
            };
            *evidence.entry(what).or_default() += 1;
            let on_target = point == Point::Random || at == point;
            eprintln!(
                "round {round}: {verb} killed aiming at {}: {what}{}",
                point.name(),
                if on_target {
                    ""
                } else {
                    " (off target; retried later)"
                }
            );
            if on_target {
                *landed.entry(point).or_default() += 1;
            } else {
                todo.insert(0, point);
            }
        } else {
            eprintln!(
                "round {round}: {verb} finished before the {} trigger (a miss; retried later)",
                point.name()
            );
            todo.insert(0, point);
        }

        // The rerun converges.
        let rerun: Vec<&str> = rerun.iter().map(String::as_str).collect();
        s.run_ok(&rerun);
        expected_commits += 1;
        assert_eq!(
            s.remote_file(),
            values(&revision),
            "round {round} ({}, {verb}): the remote file",
            point.name()
        );
        assert_eq!(
            s.commits_for(&revision),
            1,
            "round {round} ({}, {verb}): commits carrying the change",
            point.name()
        );
        assert_eq!(
            s.remote_commits(),
            expected_commits,
            "round {round} ({}, {verb}): commits on the remote",
            point.name()
        );
        let state = s.state_json().expect("the state file exists");
        let id = freight_by_commit(&state["state"]["freight"])
            .remove(&revision)
            .unwrap_or_else(|| panic!("round {round}: no Freight for {revision}"));
        // The promoter reads the state it left.
        let stages: Json =
            serde_json::from_str(&s.run_ok(&["get", "stages", "-o", "json"])).unwrap();
        let dev = &stages[0];
        assert_eq!(dev["name"], "dev");
        assert_eq!(
            dev["currentFreight"][0]["id"].as_str(),
            Some(id.as_str()),
            "round {round} ({}, {verb}): dev's current Freight\n{dev:#}",
            point.name()
        );
        assert!(
            dev["currentPromotion"].is_null() && dev["queue"] == serde_json::json!([]),
            "round {round} ({}, {verb}): a promotion is left running or queued\n{dev:#}",
            point.name()
        );
        assert_eq!(dev["lastPromotion"]["phase"], "Succeeded", "{dev:#}");
        if let Some(name) = &kill.promotion {
            let records = state["state"]["promotions"].as_array().unwrap();
            let rec = records
                .iter()
                .find(|r| r["name"].as_str() == Some(name.as_str()))
                .unwrap_or_else(|| {
                    panic!(
                        "round {round} ({}, {verb}): the interrupted promotion {name} was never \
                         finished\n{dev:#}",
                        point.name()
                    )
                });
            assert_eq!(rec["phase"], "Succeeded", "round {round}: {rec:#}");
        }
        let left = s.leftovers();
        assert!(
            left.is_empty(),
            "round {round} ({}, {verb}): leftovers after the rerun: {left:#?}",
            point.name()
        );
    }
    let on_target: usize = landed.values().sum();
    eprintln!(
        "crash_safety: {kills} kills ({on_target} on target) in {round} rounds, every one \
         followed by a converging rerun, {:.1}s (seed {seed})",
        total_start.elapsed().as_secs_f64()
    );
    for p in Point::ALL {
        eprintln!(
            "  {:<14} {} on target / {} attempts",
            p.name(),
            landed.get(&p).copied().unwrap_or(0),
            attempts.get(&p).copied().unwrap_or(0)
        );
    }
    for (what, n) in &evidence {
        eprintln!("  {n:>3} {what}");
    }
    assert_eq!(on_target, per_point * Point::ALL.len());
}
