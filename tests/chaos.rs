//! Chaos: three `promoter run --watch` replicas share one PostgreSQL database
//! (`TEST_POSTGRES_URL`) and push to the smart-HTTP git server (`TEST_GIT_HTTP_URL`).
//! 30 promotions across 5 Stages are queued (`promote --queue`), then a killer SIGKILLs a
//! random replica (with its process group) every 0.3 to 1.2 s and starts it again. The
//! counting server answers after 400 ms, so kills land inside promotions.
//! Each promotion clones, edits the Stage's values file, commits, pushes and then calls a
//! local counting HTTP server.
//!
//! Then:
//! - every promotion ended exactly once, Succeeded (one record each in the database);
//! - every outside effect happened exactly once: one commit per promotion on the remote,
//!   one `http` effect per promotion (the counting server de-duplicates deliveries by
//!   their `Idempotency-Key`, as a receiving service does; a delivery repeated after a
//!   kill carries the same key);
//! - no Freight was lost; the state reads back.
//!
//! Last, the SIGSTOP case: one more promotion's `http` call is held by the counting
//! server; the replica holding that Stage's lease is stopped with SIGSTOP; once its lease
//! (3 s) has expired another replica takes the Stage over and finishes the promotion;
//! then the held call is answered and the stopped replica resumed with SIGCONT: its late
//! writes are refused (a stale lease, logged) and the promotion still ended exactly once.
//!
//! The random choices come from a seeded generator (`KARGO_CHAOS_SEED`); the number of
//! kills is bounded (`KARGO_CHAOS_KILLS`, default 12). Without the servers the test skips,
//! except with `CI=true`, where it fails. Run it with `ci/test.sh --test chaos`.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kargo_core::testing::server_envs;
use serde_json::Value as Json;
use support::{Rng, empty_bare_repo_with_clone, git, promoter_bin, seed_bare_repo};

const STAGES: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];
const FREIGHT: usize = 6;
const REPLICAS: usize = 3;
const LEASE_TTL_SECS: u64 = 3;

// ---------------------------------------------------------------------------------------
// The counting HTTP server

#[derive(Default)]
struct Counter {
    /// How long each answer waits (so kills land while promotions run).
    delay: Duration,
    /// Every delivery: (Idempotency-Key, body).
    deliveries: Vec<(Option<String>, String)>,
    /// Hold the first delivery whose body contains this, until `release`.
    hold: Option<String>,
    held: bool,
    released: bool,
}

#[derive(Clone, Default)]
struct CountingServer {
    inner: Arc<(Mutex<Counter>, Condvar)>,
}

impl CountingServer {
    fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let me = self.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let me = me.clone();
                std::thread::spawn(move || me.serve(conn));
            }
        });
        url
    }

    fn serve(&self, mut conn: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body_start) = loop {
            let Ok(n) = conn.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4);
            }
        };
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < body_start + len {
            let Ok(n) = conn.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
        let key = header("idempotency-key");
        let delay = self.inner.0.lock().unwrap().delay;
        std::thread::sleep(delay);
        {
            let (lock, cvar) = &*self.inner;
            let mut c = lock.lock().unwrap();
            c.deliveries.push((key, body.clone()));
            let hold_this = !c.held && c.hold.as_ref().is_some_and(|m| body.contains(m.as_str()));
            if hold_this {
                c.held = true;
                cvar.notify_all();
                while !c.released {
                    c = cvar.wait(c).unwrap();
                }
            }
        }
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
    }

    /// Effects: deliveries de-duplicated by Idempotency-Key (by body without one).
    fn effects(&self) -> BTreeMap<String, usize> {
        let c = self.inner.0.lock().unwrap();
        let mut seen = BTreeSet::new();
        let mut effects = BTreeMap::new();
        for (key, body) in &c.deliveries {
            if seen.insert(key.clone().unwrap_or_else(|| body.clone())) {
                *effects.entry(body.clone()).or_insert(0) += 1;
            }
        }
        effects
    }

    fn deliveries(&self) -> usize {
        self.inner.0.lock().unwrap().deliveries.len()
    }

    fn set_delay(&self, delay: Duration) {
        self.inner.0.lock().unwrap().delay = delay;
    }

    fn hold(&self, marker: &str) {
        let mut c = self.inner.0.lock().unwrap();
        c.hold = Some(marker.to_owned());
    }

    /// Waits (polling the condition variable) until the held delivery arrived.
    fn wait_held(&self, within: Duration) -> bool {
        let (lock, cvar) = &*self.inner;
        let c = lock.lock().unwrap();
        let (c, _) = cvar.wait_timeout_while(c, within, |c| !c.held).unwrap();
        c.held
    }

    fn release(&self) {
        let (lock, cvar) = &*self.inner;
        lock.lock().unwrap().released = true;
        cvar.notify_all();
    }
}

// ---------------------------------------------------------------------------------------
// The scenario

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: chaos}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: chaos}
spec:
  interval: 1h
  subscriptions:
  - git: {repoURL: "APP_URL", branch: main}
"#;

fn stage_manifest(stage: &str) -> String {
    format!(
        r#"---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: {stage}, namespace: chaos}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: GITOPS_URL
          checkout: [{{branch: main, path: ./src}}]
      - uses: yaml-update
        config:
          path: ./src/env/{stage}/values.yaml
          updates:
          - key: app.revision
            value: $<< commitFrom("APP_URL").ID >>
      - uses: git-commit
        config:
          path: ./src
          message: 'chaos: {stage} -> $<< commitFrom("APP_URL").ID >>'
      - uses: git-push
        config: {{path: ./src}}
      - uses: http
        as: notify
        config:
          method: POST
          url: COUNTER_URL/effect
          body: '{stage} $<< ctx.promotion >> $<< commitFrom("APP_URL").ID >>'
"#
    )
}

struct Scenario {
    bin: PathBuf,
    manifests: PathBuf,
    state: String,
    credentials: PathBuf,
    gitops: PathBuf,
    app_seed: PathBuf,
    logs: PathBuf,
    db: String,
}

struct Replica {
    child: Child,
    log: PathBuf,
}

/// A replica left running when the test ends (or fails) is killed with its group.
impl Drop for Replica {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
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
            .arg("--lease-ttl")
            .arg(LEASE_TTL_SECS.to_string())
            .args(args)
            .env("NO_COLOR", "1")
            .env("KARGO_ACTOR", "chaos-test")
            .env("KARGO_LOG", "info")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        cmd
    }

    fn run_ok(&self, args: &[&str], work: &Path) -> String {
        let out = self
            .command(args)
            .arg("--work-dir")
            .arg(work)
            .output()
            .unwrap();
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

    /// Starts replica `i` (incarnation `n`), its log in a file of its own.
    fn start_replica(&self, i: usize, n: usize) -> Replica {
        let log = self.logs.join(format!("replica-{i}-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let work = self.logs.join(format!("work-{i}"));
        let child = self
            .command(&["run", "--watch", "--max-sleep", "2"])
            .arg("--work-dir")
            .arg(&work)
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap();
        Replica { child, log }
    }

    fn app_commit(&self, n: usize) -> String {
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

    /// Rows of `sql` on the scenario's database, one string per row.
    fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new("psql")
            .args([
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--quiet",
                "--dbname",
                &self.db,
                "--command",
                sql,
            ])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The finished promotions recorded in the database.
    fn promotions(&self) -> Vec<Json> {
        self.query(
            "SELECT body FROM kargo_records WHERE project = 'chaos' AND kind = 'promotions' ORDER BY seq",
        )
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
    }

    /// The commits on the GitOps remote whose message is `chaos: <stage> -> <commit>`.
    fn remote_commits(&self) -> BTreeMap<String, usize> {
        let log = git(&self.gitops, &["log", "--format=%s", "main"]);
        let mut out = BTreeMap::new();
        for line in log.lines().filter(|l| l.starts_with("chaos: ")) {
            *out.entry(line.to_owned()).or_insert(0) += 1;
        }
        out
    }

    /// The pid of the latest grant of `lease` (from the lease table's holder,
    /// `pid-<pid>-...`) and its token; with `live`, only while it has not run out or been
    /// given back.
    fn lease_holder(&self, lease: &str, live: bool) -> Option<(u32, i64)> {
        let live = if live {
            "AND expires_at > clock_timestamp()"
        } else {
            ""
        };
        let rows = self.query(&format!(
            "SELECT holder || ' ' || token FROM kargo_leases WHERE project = 'chaos' AND name = '{lease}' {live}"
        ));
        let row = rows.first()?;
        let (holder, token) = row.rsplit_once(' ')?;
        let pid = holder
            .strip_prefix("pid-")?
            .split('-')
            .next()?
            .parse()
            .ok()?;
        Some((pid, token.parse().ok()?))
    }
}

/// The last lines of every replica log, for a failure message.
fn log_tails(logs: &Path) -> String {
    let mut out = String::new();
    let mut files: Vec<_> = std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("==> {}\n", f.display()));
        for l in &lines[lines.len().saturating_sub(12)..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Sends `sig` to the process group `pid` leads.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} -- -{pid} failed");
}

fn kill(replica: &mut Replica) {
    signal(replica.child.id(), "-KILL");
    let _ = replica.child.wait();
}

/// Polls `done` every 100 ms until it holds or `within` passes.
fn poll(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn replicas_killed_at_random_promote_everything_exactly_once() {
    let t = "replicas_killed_at_random_promote_everything_exactly_once";
    let Some(env) = server_envs(
        t,
        &[
            "TEST_POSTGRES_URL",
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    ) else {
        return;
    };
    let [pg, url, git_root, user, password] = <[String; 5]>::try_from(env).unwrap();
    let seed: u64 = match std::env::var("KARGO_CHAOS_SEED") {
        Ok(v) => v.parse().expect("KARGO_CHAOS_SEED: a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let max_kills: usize = std::env::var("KARGO_CHAOS_KILLS")
        .ok()
        .map(|v| v.parse().expect("KARGO_CHAOS_KILLS: a number"))
        .unwrap_or(12);
    eprintln!("chaos: seed {seed} (rerun with KARGO_CHAOS_SEED={seed})");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let tag = format!("chaos-{}", std::process::id());

    // A database of its own.
    let admin = Scenario::admin(&pg);
    let db_name = format!("kargo_chaos_{}", std::process::id());
    admin(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"));
    admin(&format!("CREATE DATABASE {db_name}"));
    let db = format!("{}/{db_name}", pg.rsplit_once('/').unwrap().0);

    // The GitOps repository and the application repository on the git server.
    let gitops = PathBuf::from(&git_root).join(format!("{tag}-gitops.git"));
    let seed_dir = root.join("seed");
    for s in STAGES {
        std::fs::create_dir_all(seed_dir.join(format!("env/{s}"))).unwrap();
        std::fs::write(
            seed_dir.join(format!("env/{s}/values.yaml")),
            "app:\n  revision: none\n",
        )
        .unwrap();
    }
    seed_bare_repo(&seed_dir, &gitops);
    let app = PathBuf::from(&git_root).join(format!("{tag}-app.git"));
    let app_seed = root.join("app");
    empty_bare_repo_with_clone(&app, &app_seed);

    let counter = CountingServer::default();
    let counter_url = counter.start();
    let manifests = root.join("kargo");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut text = MANIFESTS.to_owned();
    for s in STAGES {
        text.push_str(&stage_manifest(s));
    }
    std::fs::write(
        manifests.join("chaos.yaml"),
        text.replace("APP_URL", &format!("{url}/{tag}-app.git"))
            .replace("GITOPS_URL", &format!("{url}/{tag}-gitops.git"))
            .replace("COUNTER_URL", &counter_url),
    )
    .unwrap();
    let credentials = root.join("credentials.yaml");
    std::fs::write(
        &credentials,
        format!(
            "- type: git\n  repoURLPattern: '^http://127\\.0\\.0\\.1:[0-9]+/chaos-'\n  \
             username: {user}\n  password: {password}\n"
        ),
    )
    .unwrap();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let s = Scenario {
        bin: promoter_bin(),
        manifests,
        state: db.clone(),
        credentials,
        gitops,
        app_seed,
        logs,
        db,
    };
    let cli_work = root.join("cli-work");

    // Six Freight, one per application commit.
    let mut commits = Vec::new();
    for n in 1..=FREIGHT {
        commits.push(s.app_commit(n));
        s.run_ok(&["refresh", "warehouse", "app"], &cli_work);
    }
    let freight_ids: BTreeMap<String, String> = s
        .query("SELECT key || ' ' || body FROM kargo_records WHERE project = 'chaos' AND kind = 'freight'")
        .iter()
        .map(|row| {
            let (id, body) = row.split_once(' ').unwrap();
            let rec: Json = serde_json::from_str(body).unwrap();
            (
                rec["freight"]["commits"][0]["id"].as_str().unwrap().to_owned(),
                id.to_owned(),
            )
        })
        .collect();
    assert_eq!(freight_ids.len(), FREIGHT, "one Freight per commit");

    // The promotions queued (in Freight order per Stage), then three replicas started
    // while the killer works; each http call is answered after 400 ms, so kills land
    // inside promotions, in-flight calls included.
    let mut queued = Vec::new();
    for commit in &commits {
        for stage in STAGES {
            let out = s.run_ok(
                &[
                    "promote",
                    "--queue",
                    "--stage",
                    stage,
                    "--freight",
                    &freight_ids[commit],
                    "-o",
                    "json",
                ],
                &cli_work,
            );
            let v: Json = serde_json::from_str(&out).unwrap();
            queued.push(v["queued"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(queued.len(), STAGES.len() * FREIGHT);
    let total = queued.len();
    counter.set_delay(Duration::from_millis(400));
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|i| s.start_replica(i, 0)).collect();
    let mut incarnations = [0usize; REPLICAS];

    let started = Instant::now();
    let mut kills = 0;
    while kills < max_kills && s.promotions().len() < total {
        std::thread::sleep(Duration::from_millis(rng.range(300, 1200)));
        let i = rng.range(0, REPLICAS as u64 - 1) as usize;
        kill(&mut replicas[i]);
        kills += 1;
        incarnations[i] += 1;
        replicas[i] = s.start_replica(i, incarnations[i]);
    }
    eprintln!(
        "chaos: {kills} kills in {:?}; {} of {total} promotions finished",
        started.elapsed(),
        s.promotions().len()
    );
    let finished = poll(Duration::from_secs(180), || s.promotions().len() >= total);
    let records = s.promotions();
    assert!(
        finished,
        "only {} of {total} promotions finished; replica logs in {}",
        records.len(),
        s.logs.display()
    );

    // Every promotion ended exactly once, Succeeded.
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        names.len(),
        distinct.len(),
        "a promotion ended twice: {names:?}"
    );
    let wanted: BTreeSet<&str> = queued.iter().map(String::as_str).collect();
    assert_eq!(
        distinct, wanted,
        "the promotions that ended are not those queued"
    );
    for r in &records {
        assert_eq!(r["phase"], "Succeeded", "{r}");
    }
    // One commit per promotion on the remote.
    let remote = s.remote_commits();
    assert_eq!(remote.values().sum::<usize>(), total, "{remote:#?}");
    assert!(remote.values().all(|n| *n == 1), "{remote:#?}");
    // One http effect per promotion.
    let effects = counter.effects();
    assert_eq!(effects.len(), total, "{effects:#?}");
    assert!(effects.values().all(|n| *n == 1), "{effects:#?}");
    for name in &queued {
        assert!(
            effects.keys().any(|b| b.contains(name.as_str())),
            "no http effect for {name}"
        );
    }
    eprintln!(
        "chaos: {} http deliveries for {} effects",
        counter.deliveries(),
        effects.len()
    );
    // No Freight lost; the state reads back through the promoter.
    let out = s.run_ok(&["get", "freight", "-o", "json"], &cli_work);
    let listed: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(FREIGHT), "{listed}");

    // SIGSTOP past the lease: hold the next promotion's http call, stop its runner.
    counter.set_delay(Duration::ZERO);
    let commits_before = s.remote_commits().values().sum::<usize>();
    let out = s.run_ok(
        &[
            "promote",
            "--queue",
            "--stage",
            "s1",
            "--freight",
            &freight_ids[&commits[FREIGHT - 2]],
            "-o",
            "json",
        ],
        &cli_work,
    );
    let v: Json = serde_json::from_str(&out).unwrap();
    let last = v["queued"].as_str().unwrap().to_owned();
    counter.hold(&last);
    assert!(
        counter.wait_held(Duration::from_secs(60)),
        "the held promotion never called the counting server"
    );
    let (stopped_pid, token) = s.lease_holder("s1", true).expect("nobody holds s1's lease");
    let stopped = replicas
        .iter()
        .position(|r| r.child.id() == stopped_pid)
        .expect("the lease holder is not one of the replicas");
    signal(stopped_pid, "-STOP");
    // Another replica takes the Stage over once the lease has expired, and finishes it.
    let taken = poll(Duration::from_secs(30), || {
        // Granted again, to another replica (which may have finished and given it back).
        s.lease_holder("s1", false)
            .is_some_and(|(pid, t)| pid != stopped_pid && t > token)
    });
    let done = poll(Duration::from_secs(60), || {
        s.promotions().iter().any(|r| r["name"] == last.as_str())
    });
    let tails = log_tails(&s.logs);
    counter.release();
    signal(stopped_pid, "-CONT");
    assert!(
        taken,
        "no replica took over the stopped replica's lease\n{tails}"
    );
    assert!(
        done,
        "the promotion of the stopped replica was not finished by another\n{tails}"
    );
    let log = &replicas[stopped].log;
    let refused = poll(Duration::from_secs(30), || {
        std::fs::read_to_string(log).is_ok_and(|t| t.contains("stale lease"))
    });
    assert!(
        refused,
        "the resumed replica's late write was not refused and logged:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    let records = s.promotions();
    assert_eq!(
        records
            .iter()
            .filter(|r| r["name"] == last.as_str())
            .count(),
        1,
        "the taken-over promotion ended more than once"
    );
    assert_eq!(
        s.remote_commits().values().sum::<usize>(),
        commits_before + 1,
        "the taken-over promotion's push happened other than once"
    );
    let effects = counter.effects();
    assert_eq!(
        effects.keys().filter(|b| b.contains(last.as_str())).count(),
        1,
        "{effects:#?}"
    );

    for r in &mut replicas {
        kill(r);
    }
    admin(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"));
}

impl Scenario {
    /// Runs one statement on the cluster's maintenance database.
    fn admin(url: &str) -> impl Fn(&str) + '_ {
        move |sql: &str| {
            let out = Command::new("psql")
                .args(["--no-psqlrc", "--quiet", "--dbname", url, "--command", sql])
                .env_remove("PGPASSWORD")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "psql {sql}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
