//! The promotion as the product runs it (issue 19, item 4): the release-built `promoter`
//! example, run as a child process, promotes Freight to a Stage whose steps are
//! `git-clone` → `yaml-update` of one app's overlay → `git-commit` → `git-push`, against
//! the GitOps fixture repository served over `file://`. Beside it, the git command line:
//!
//! - `promoter-cold`: `promoter promote` with no mirror of the repository in its cache
//!   (the first promotion of a new installation, or after the cache was lost);
//! - `promoter-warm`: the same with the cache the previous promotion left;
//! - `cli-best`: `git clone --depth 1 --filter=blob:none --sparse`, `sparse-checkout set`
//!   of the app's overlay directory, edit, `commit -a`, `push`: the cheapest cold recipe
//!   of the command line;
//! - `push-floor`: a kept bare clone: `git fetch`, the new blob and the trees along its
//!   path rebuilt with plumbing (`cat-file`, `hash-object`, `mktree`, `commit-tree`),
//!   `git push`: the least a warm promotion can do with git's own tools.
//!
//! Every run pushes a new commit on `main` and is checked on the served repository. Times
//! are wall-clock time of the whole promotion (the promoter process from start to exit,
//! the git commands one after another); peak RSS is the largest process's maximum
//! resident set (`/usr/bin/time -f %M`: the promoter including any git child it waited
//! for; for the command line, the largest of its git commands).
//!
//! Run: `KARGO_BENCH_SIZE=large cargo bench --bench cold_promotion` (sizes as in
//! `git_promotion`; the fixture is generated once and cached under
//! `<target>/bench-fixtures/`). `KARGO_BENCH_RUNS` sets the timed runs per variant
//! (default 5, after one untimed warm-up); `KARGO_BENCH_TMP` the directory of the served
//! copy and the run directories (default `/dev/shm` when it exists, else `$TMPDIR`);
//! `KARGO_BENCH_TRANSPORT=http` serves the fixture over smart HTTP (lighttpd +
//! git-http-backend) instead of `file://`; `KARGO_BENCH_LOG=<filter>` prints the
//! promoter's log lines (`KARGO_LOG`).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark reports on the console

#[path = "support/fixture_cache.rs"]
mod fixture_cache;
#[allow(dead_code)] // shared with the benches that push with credentials
#[path = "support/git_http_server.rs"]
mod git_http_server;
#[path = "support/gitops_fixture.rs"]
mod gitops_fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture_cache::{cached_fixture, target_dir};
use git_http_server::start_http;
use gitops_fixture::FixtureSpec;

/// The Stage's overlay directory every run edits (one app per run, `dev` overlay).
const STAGE: &str = "dev";
/// Committer identity of the command-line variants.
const IDENTITY: (&str, &str) = ("Kargo Bench", "bench@kargo.invalid");

/// One finished command: wall time and peak RSS (KiB) when measured.
struct Measured {
    elapsed: Duration,
    peak_kib: Option<u64>,
    stdout: String,
}

/// Runs `program args` in `dir` under `/usr/bin/time -f %M` (when present), with a
/// clean git environment; panics with stderr when it fails.
fn run(dir: &Path, program: &Path, args: &[&str], rss_file: &Path) -> Measured {
    let timed = Path::new("/usr/bin/time").exists();
    let mut cmd = if timed {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M", "-o"]).arg(rss_file).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", IDENTITY.0)
        .env("GIT_AUTHOR_EMAIL", IDENTITY.1)
        .env("GIT_COMMITTER_NAME", IDENTITY.0)
        .env("GIT_COMMITTER_EMAIL", IDENTITY.1)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // KARGO_BENCH_LOG=<filter>: the promoter's log lines (with timestamps) on stderr.
    let log = std::env::var("KARGO_BENCH_LOG").ok();
    match &log {
        Some(filter) => cmd.env("KARGO_LOG", filter),
        None => cmd.env_remove("KARGO_LOG"),
    };
    let start = Instant::now();
    let out = cmd.output().expect("spawn");
    if log.is_some() && program != Path::new("git") {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{} {args:?} in {} failed ({}):\n{}\n{}",
        program.display(),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_kib = timed
        .then(|| fs::read_to_string(rss_file).ok())
        .flatten()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse::<u64>().ok()));
    Measured {
        elapsed,
        peak_kib,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// A sequence of commands measured together: summed time, largest peak RSS.
#[derive(Default)]
struct Script {
    elapsed: Duration,
    peak_kib: Option<u64>,
}

impl Script {
    fn git(&mut self, dir: &Path, args: &[&str], rss: &Path) -> String {
        let m = run(dir, Path::new("git"), args, rss);
        self.elapsed += m.elapsed;
        self.peak_kib = self.peak_kib.max(m.peak_kib);
        m.stdout
    }

    fn git_stdin(&mut self, dir: &Path, args: &[&str], input: &[u8]) -> String {
        use std::io::Write as _;
        let start = Instant::now();
        let mut child = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn git");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait for git");
        self.elapsed += start.elapsed();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Everything a run needs.
struct Ctx {
    /// `file://` URL of the served repository.
    url: String,
    /// A fresh directory for this run.
    work: PathBuf,
    /// A directory kept across the runs of one variant.
    keep: PathBuf,
    /// Repository path of the overlay file to change.
    file: String,
    /// The image tag to write.
    tag: String,
    /// Where `/usr/bin/time` writes.
    rss: PathBuf,
}

impl Ctx {
    fn file_dir(&self) -> &str {
        self.file.rsplit_once('/').map_or("", |(d, _)| d)
    }

    fn retag(&self, root: &Path) {
        let path = root.join(&self.file);
        let old = fs::read_to_string(&path).expect("read the overlay file");
        let new = gitops_fixture::retag(&old, &self.tag).expect("overlay has an image line");
        fs::write(&path, new).expect("write the overlay file");
    }
}

fn cli_best(ctx: &Ctx) -> Script {
    let mut s = Script::default();
    let repo = ctx.work.join("repo");
    s.git(
        &ctx.work,
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--filter=blob:none",
            "--sparse",
            &ctx.url,
            "repo",
        ],
        &ctx.rss,
    );
    s.git(&repo, &["sparse-checkout", "set", ctx.file_dir()], &ctx.rss);
    let start = Instant::now();
    ctx.retag(&repo);
    s.elapsed += start.elapsed();
    s.git(
        &repo,
        &["commit", "-q", "-a", "-m", &format!("Promote {}", ctx.tag)],
        &ctx.rss,
    );
    s.git(&repo, &["push", "-q", "origin", "HEAD:main"], &ctx.rss);
    s
}

fn push_floor(ctx: &Ctx) -> Script {
    let mut s = Script::default();
    let repo = ctx.keep.join("floor.git");
    if !repo.exists() {
        // Setup, untimed: the kept clone.
        let mut setup = Script::default();
        setup.git(
            &ctx.keep,
            &["clone", "-q", "--bare", &ctx.url, "floor.git"],
            &ctx.rss,
        );
    }
    s.git(
        &repo,
        &["fetch", "-q", "origin", "+refs/heads/main:refs/heads/main"],
        &ctx.rss,
    );
    let old = s
        .git(&repo, &["rev-parse", "refs/heads/main"], &ctx.rss)
        .trim()
        .to_owned();
    let content = s.git(
        &repo,
        &["cat-file", "blob", &format!("{old}:{}", ctx.file)],
        &ctx.rss,
    );
    let new = gitops_fixture::retag(&content, &ctx.tag).expect("overlay has an image line");
    let mut oid = s
        .git_stdin(&repo, &["hash-object", "-w", "--stdin"], new.as_bytes())
        .trim()
        .to_owned();
    let parts: Vec<&str> = ctx.file.split('/').collect();
    for depth in (0..parts.len()).rev() {
        let dir = parts[..depth].join("/");
        let name = parts[depth];
        let listing = s.git(&repo, &["ls-tree", &format!("{old}:{dir}")], &ctx.rss);
        let edited: String = listing
            .lines()
            .map(|line| {
                let (meta, entry) = line.split_once('\t').expect("ls-tree line has a tab");
                if entry == name {
                    let mut f = meta.split(' ');
                    let (mode, kind) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
                    format!("{mode} {kind} {oid}\t{entry}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        oid = s
            .git_stdin(&repo, &["mktree"], edited.as_bytes())
            .trim()
            .to_owned();
    }
    let commit = s
        .git(
            &repo,
            &[
                "commit-tree",
                &oid,
                "-p",
                &old,
                "-m",
                &format!("Promote {}", ctx.tag),
            ],
            &ctx.rss,
        )
        .trim()
        .to_owned();
    s.git(
        &repo,
        &["push", "-q", "origin", &format!("{commit}:refs/heads/main")],
        &ctx.rss,
    );
    s
}

/// The promoter's project: a Warehouse on a small `freight` repository (each run commits
/// there and refreshes, so every promotion promotes new Freight), a Stage whose steps
/// clone the fixture, set one app's image to `<repo>:<freight commit>`, commit and push.
struct Promoter {
    bin: PathBuf,
    manifests: PathBuf,
    freight_work: PathBuf,
    freight_url: String,
    url: String,
}

impl Promoter {
    /// The freight repository is `<root>/srv/freight.git`, reached as `freight_url`.
    fn setup(root: &Path, bin: PathBuf, url: &str, freight_url: String) -> Self {
        let freight_bare = root.join("srv/freight.git");
        let freight_work = root.join("freight-work");
        let mut s = Script::default();
        let rss = root.join("rss-setup");
        s.git(
            root,
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                freight_bare.to_str().expect("UTF-8"),
            ],
            &rss,
        );
        s.git(
            root,
            &[
                "clone",
                "-q",
                freight_bare.to_str().expect("UTF-8"),
                "freight-work",
            ],
            &rss,
        );
        let manifests = root.join("manifests");
        fs::create_dir_all(&manifests).expect("create manifests dir");
        Self {
            bin,
            manifests,
            freight_work,
            freight_url,
            url: url.to_owned(),
        }
    }

    /// Writes the project, whose Stage edits `app`'s overlay (one app per run, so every
    /// run changes a file no earlier run touched).
    fn write_manifests(&self, app: &str) {
        let (url, freight_url) = (&self.url, &self.freight_url);
        fs::write(
            self.manifests.join("bench.yaml"),
            format!(
                r#"apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {{name: bench}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {{name: app, namespace: bench}}
spec:
  subscriptions:
  - git: {{repoURL: "{freight_url}", branch: main}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: {STAGE}, namespace: bench}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: "{url}"
          checkout: [{{branch: main, path: ./repo}}]
      - uses: yaml-update
        as: update
        config:
          path: ./repo/apps/{app}/overlays/{STAGE}/patches.yaml
          updates:
          - key: spec.template.spec.containers.0.image
            value: ghcr.io/acme/{app}:${{{{ commitFrom("{freight_url}").ID }}}}
      - uses: git-commit
        config:
          path: ./repo
          message: ${{{{ outputs.update.commitMessage }}}}
      - uses: git-push
        config: {{path: ./repo}}
"#
            ),
        )
        .expect("write manifests");
    }

    /// New Freight (a commit in the freight repository, then `refresh warehouse`); returns
    /// its ID and the commit the promotion will write.
    fn new_freight(&self, state: &Path, n: usize, rss: &Path) -> (String, String) {
        let mut s = Script::default();
        fs::write(self.freight_work.join("version"), format!("{n}\n")).expect("write");
        s.git(&self.freight_work, &["add", "version"], rss);
        s.git(
            &self.freight_work,
            &["commit", "-q", "-m", &format!("release {n}")],
            rss,
        );
        s.git(&self.freight_work, &["push", "-q", "origin", "main"], rss);
        let commit = s
            .git(&self.freight_work, &["rev-parse", "HEAD"], rss)
            .trim()
            .to_owned();
        let out = self.promoter(state, &["refresh", "warehouse", "app"], rss);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("refresh JSON");
        let id = v["freight"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no new Freight: {v}"))
            .to_owned();
        (id, commit)
    }

    fn promoter(&self, state: &Path, args: &[&str], rss: &Path) -> Measured {
        let mut all = vec![
            "--manifests",
            self.manifests.to_str().expect("UTF-8"),
            "--state",
            state.to_str().expect("UTF-8"),
            "--output",
            "json",
        ];
        all.extend(args);
        run(state, &self.bin, &all, rss)
    }
}

/// Builds the promoter example (release) into this bench's target directory.
fn build_promoter(target: &Path) -> PathBuf {
    let st = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--example", "promoter"])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .status()
        .expect("run cargo build");
    assert!(st.success(), "building the promoter example failed");
    target.join("release/examples/promoter")
}

fn git_out(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Each run must push exactly one commit on top of `before` with `expected` in `file`.
fn verify(served: &Path, before: &str, file: &str, expected: &str) {
    assert_eq!(
        git_out(served, &["rev-parse", "refs/heads/main^"]),
        before,
        "main did not advance by exactly one commit"
    );
    let content = git_out(served, &["cat-file", "blob", &format!("main:{file}")]);
    assert!(
        content.contains(expected),
        "{file} lacks {expected:?}:\n{content}"
    );
}

struct Row {
    name: &'static str,
    times: Vec<Duration>,
    peak_kib: Option<u64>,
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let size = std::env::var("KARGO_BENCH_SIZE").unwrap_or_else(|_| "medium".into());
    let spec = match size.as_str() {
        "small" => FixtureSpec::SMALL,
        "medium" => FixtureSpec::MEDIUM,
        "large" => FixtureSpec::LARGE,
        other => panic!("KARGO_BENCH_SIZE must be small, medium or large, not {other:?}"),
    };
    let runs: usize = std::env::var("KARGO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let target = target_dir();
    let bin = build_promoter(&target);
    let fixture = cached_fixture(&size, &spec);
    let tmp_base = std::env::var_os("KARGO_BENCH_TMP")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new("/dev/shm")
                .is_dir()
                .then(|| PathBuf::from("/dev/shm"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("cold-promotion-")
        .tempdir_in(&tmp_base)
        .expect("create bench temp dir");
    let served = root.path().join("srv/fixture.git");
    fs::create_dir_all(served.parent().expect("parent")).expect("create srv");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&served)
        .status()
        .expect("run cp");
    assert!(cp.success(), "copying the fixture failed");
    for (k, v) in [
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowAnySHA1InWant", "true"),
        ("http.receivepack", "true"),
    ] {
        git_out(&served, &["config", k, v]);
    }
    let transport = std::env::var("KARGO_BENCH_TRANSPORT").unwrap_or_else(|_| "file".into());
    // The Warehouse's repository is served over smart HTTP (Warehouses take http(s) and
    // ssh URLs only), and so is the fixture with KARGO_BENCH_TRANSPORT=http.
    let server = start_http(
        &root.path().join("srv"),
        &root.path().join("server"),
        None,
        "fixture.git",
    );
    let url = match transport.as_str() {
        "file" => format!("file://{}", served.display()),
        "http" => format!("{}/fixture.git", server.url),
        other => panic!("KARGO_BENCH_TRANSPORT must be file or http, not {other:?}"),
    };
    let pack_bytes: u64 = fs::read_dir(fixture.join("objects/pack"))
        .expect("read fixture packs")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let git_version = git_out(Path::new("."), &["--version"]);
    println!(
        "\n`cold_promotion` size `{size}`: {} apps ({} files), {} commits, pack {:.1} MiB, served over {transport} from {}; {git_version}; {runs} timed runs after 1 warm-up\n",
        spec.apps,
        spec.apps * 8,
        spec.commits,
        pack_bytes as f64 / (1024.0 * 1024.0),
        tmp_base.display(),
    );

    let promoter = Promoter::setup(
        root.path(),
        bin,
        &url,
        format!("{}/freight.git", server.url),
    );
    let rss = root.path().join("rss");
    let mut rows: Vec<Row> = Vec::new();
    let mut k = 0usize;
    for name in ["promoter-cold", "promoter-warm", "cli-best", "push-floor"] {
        let keep = root.path().join("keep").join(name);
        fs::create_dir_all(&keep).expect("create keep dir");
        let state = keep.join("state");
        fs::create_dir_all(&state).expect("create state dir");
        let mut times = Vec::new();
        let mut peak = None;
        for r in 0..=runs {
            let app = gitops_fixture::app_for_commit(spec.commits + k, spec.apps);
            let app_name = format!("app-{app:05}");
            let file = gitops_fixture::overlay_patch_path(app, STAGE);
            let work = root.path().join("runs").join(format!("{name}-{r}"));
            fs::create_dir_all(&work).expect("create run dir");
            let before = git_out(&served, &["rev-parse", "refs/heads/main"]);
            let (elapsed, peak_kib, expected) = if name.starts_with("promoter") {
                promoter.write_manifests(&app_name);
                let (freight, commit) = promoter.new_freight(&state, k, &rss);
                if name == "promoter-cold" {
                    // No mirror of the fixture (nor anything else) in the cache.
                    let _ = fs::remove_dir_all(state.join("cache"));
                }
                let m = promoter.promoter(
                    &state,
                    &["promote", "--stage", STAGE, "--freight", &freight],
                    &rss,
                );
                (m.elapsed, m.peak_kib, format!(":{commit}"))
            } else {
                let ctx = Ctx {
                    url: url.clone(),
                    work: work.clone(),
                    keep: keep.clone(),
                    file: file.clone(),
                    tag: format!("bench-{k}"),
                    rss: rss.clone(),
                };
                let s = if name == "cli-best" {
                    cli_best(&ctx)
                } else {
                    push_floor(&ctx)
                };
                (s.elapsed, s.peak_kib, format!(":bench-{k}"))
            };
            verify(&served, &before, &file, &expected);
            if r == 0 {
                eprintln!("{name}: warm-up {:.1?}", elapsed);
            } else {
                times.push(elapsed);
            }
            peak = peak.max(peak_kib);
            let _ = fs::remove_dir_all(&work);
            k += 1;
        }
        times.sort();
        eprintln!(
            "{name}: median {:.1?}, min {:.1?}, peak {:?} KiB",
            times[times.len() / 2],
            times[0],
            peak
        );
        rows.push(Row {
            name,
            times,
            peak_kib: peak,
        });
    }

    let median = |r: &Row| r.times[r.times.len() / 2];
    let cli = rows
        .iter()
        .find(|r| r.name == "cli-best")
        .map(median)
        .expect("cli-best row");
    let floor = rows
        .iter()
        .find(|r| r.name == "push-floor")
        .map(median)
        .expect("push-floor row");
    println!("| variant | median | min | peak RSS | vs cli-best | vs push-floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let m = median(r);
        let peak = r.peak_kib.map_or("–".to_owned(), |kib| {
            format!("{:.0} MiB", kib as f64 / 1024.0)
        });
        println!(
            "| {} | {} | {} | {peak} | {:.2}x | {:.2}x |",
            r.name,
            fmt_ms(m),
            fmt_ms(r.times[0]),
            m.as_secs_f64() / cli.as_secs_f64(),
            m.as_secs_f64() / floor.as_secs_f64(),
        );
    }
}
