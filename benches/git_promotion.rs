//! End-to-end promotion benchmark: change one image tag in one overlay file of a GitOps
//! repository served over smart HTTP (lighttpd + git-http-backend on 127.0.0.1, basic
//! auth for push), commit, push. Each variant runs once untimed (warm-up; also records the
//! peak RSS of its git child processes with `/usr/bin/time -f %M` when available), then
//! [`RUNS`] timed runs; every run starts in a fresh directory and pushes a new commit on
//! `main`, which is checked on the server afterwards.
//!
//! Run: `cargo bench --bench git_promotion` with `KARGO_BENCH_SIZE=small|medium|large`
//! (default `medium`; see [`gitops_fixture::FixtureSpec`]). The fixture repository is
//! generated once and cached under `<target>/bench-fixtures/`. `KARGO_BENCH_VERBOSE=1`
//! prints the time of every git command.
//!
//! Variants: `cli-full` (clone, edit, commit, push), `cli-kargo` (`clone --bare` +
//! `worktree add`, what Kargo runs), `cli-best` (depth-1 blobless sparse clone), `floor`
//! (plumbing directly in the served bare repository, no network), and whatever
//! [`kargo_variants`] returns.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark reports on the console

#[path = "support/fixture_cache.rs"]
mod fixture_cache;
#[path = "support/git_http_server.rs"]
mod git_http_server;
#[path = "support/gitops_fixture.rs"]
mod gitops_fixture;

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture_cache::cached_fixture;
use git_http_server::{random_password, start_http};
use gitops_fixture::{FixtureSpec, STAGES};

/// Timed runs per variant (after one untimed warm-up run).
const RUNS: usize = 5;
/// User allowed to push over HTTP.
const USER: &str = "kargo";
/// Environment variable holding the push password for the credential helper.
const PASS_ENV: &str = "KARGO_BENCH_PASS";
/// Committer identity for every commit the benchmark makes.
const IDENTITY: (&str, &str) = ("Kargo Bench", "bench@kargo.invalid");

/// A named promotion implementation. The closure performs one promotion described by the
/// [`Ctx`] (clone or fetch, edit `ctx.file` to `ctx.new_tag`, commit, push to `main`) and
/// returns the time it measured (so it can leave out its own setup).
type Variant = (&'static str, Box<dyn Fn(&Ctx) -> Duration>);

/// kargo-git's variants. Each records the peak RSS of this process during the run (Linux:
/// `VmHWM` after resetting it through `/proc/self/clear_refs`).
fn kargo_variants() -> Vec<Variant> {
    fn git_for(ctx: &Ctx, cache: &Path, depth: Option<u32>) -> kargo::git::Git {
        let auth = kargo::git::StaticAuth::new().with(
            ctx.remote_url.clone(),
            kargo::git::GitAuth::Basic {
                username: ctx.username.to_owned(),
                password: kargo::git::Secret::new(ctx.password.clone()),
            },
        );
        let mut cfg = kargo::git::GitConfig::new(cache);
        cfg.depth = depth.and_then(std::num::NonZeroU32::new);
        kargo::git::Git::new(cfg, std::sync::Arc::new(auth))
    }
    fn sig() -> kargo::git::Signature {
        kargo::git::Signature::new("Kargo Bench", "bench@example.com")
    }
    /// The promotion the git steps run: lazy checkout, edit one file, commit, push.
    fn checkout_flow(ctx: &Ctx, cache: &Path, depth: Option<u32>) -> Duration {
        reset_peak_rss();
        let d = timed(|| {
            let git = git_for(ctx, cache, depth);
            let mirror = git.mirror(&ctx.remote_url).expect("mirror");
            let wt = ctx.work_dir.join("wt");
            let co = mirror
                .checkout(
                    &kargo::git::CheckoutTarget::Branch("main".into()),
                    &wt,
                    &kargo::git::CheckoutOptions::default(),
                )
                .expect("checkout");
            co.materialize(Path::new(&ctx.file)).expect("materialize");
            ctx.retag_file(&wt);
            co.commit(&ctx.message, &sig(), &sig()).expect("commit");
            co.push(None, false, None).expect("push");
        });
        record_peak_rss(ctx);
        d
    }
    /// Commit without a work tree: a re-runnable edit applied in the object database.
    fn odb_flow(ctx: &Ctx, cache: &Path, depth: Option<u32>) -> Duration {
        reset_peak_rss();
        let d = timed(|| {
            let git = git_for(ctx, cache, depth);
            let mirror = git.mirror(&ctx.remote_url).expect("mirror");
            let tag = ctx.new_tag.clone();
            let edit = kargo::git::Edit::transform(ctx.file.clone(), move |old| {
                let old = String::from_utf8_lossy(old.unwrap_or_default()).into_owned();
                gitops_fixture::retag(&old, &tag)
                    .map(|s| Some(s.into_bytes()))
                    .ok_or_else(|| "no image line".to_owned())
            });
            mirror
                .push_edits("main", &[edit], &ctx.message, &sig(), &sig(), false)
                .expect("push_edits");
        });
        record_peak_rss(ctx);
        d
    }
    vec![
        (
            "kargo-cold (empty cache, depth 1, lazy checkout)",
            Box::new(|ctx: &Ctx| checkout_flow(ctx, &ctx.work_dir.join("cache"), Some(1))),
        ),
        (
            "kargo-cold-full (empty cache, full history)",
            Box::new(|ctx: &Ctx| checkout_flow(ctx, &ctx.work_dir.join("cache"), None)),
        ),
        (
            "kargo-warm (cached mirror, lazy checkout)",
            Box::new(|ctx: &Ctx| checkout_flow(ctx, &ctx.cache_dir, Some(1))),
        ),
        (
            "kargo-warm-odb (cached mirror, no work tree)",
            Box::new(|ctx: &Ctx| odb_flow(ctx, &ctx.cache_dir, Some(1))),
        ),
    ]
}

fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

fn record_peak_rss(ctx: &Ctx) {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return;
    };
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    if let Some(kib) = kib {
        ctx.peak_rss_kib
            .set(Some(ctx.peak_rss_kib.get().unwrap_or(0).max(kib)));
    }
}

/// Everything one promotion run needs.
pub struct Ctx {
    /// Anonymous-read URL of the served repository: `http://127.0.0.1:PORT/fixture.git`.
    pub remote_url: String,
    /// Push user name (basic auth).
    pub username: &'static str,
    /// Push password. Child processes get it via [`PASS_ENV`] only (see [`Ctx::git`]).
    pub password: String,
    /// The served bare repository on disk (for variants that skip the network).
    pub remote_bare: PathBuf,
    /// A fresh, empty directory for this run, removed afterwards.
    pub work_dir: PathBuf,
    /// A directory kept across all runs of one variant (for warm caches).
    pub cache_dir: PathBuf,
    /// Repository-relative path of the overlay file to change.
    pub file: String,
    /// The image tag to write.
    pub new_tag: String,
    /// Commit message.
    pub message: String,
    /// `Some(file)` when this run records the peak RSS of git child processes.
    rss_file: Option<PathBuf>,
    peak_rss_kib: Cell<Option<u64>>,
}

impl Ctx {
    /// `remote_url` with the credentials in it, for in-process clients only (never pass it
    /// to a child process: it would show in `ps`).
    pub fn remote_url_with_credentials(&self) -> String {
        self.remote_url.replacen(
            "http://",
            &format!("http://{}:{}@", self.username, self.password),
            1,
        )
    }

    /// Environment for git child processes: no system/global config, no prompts, a fixed
    /// identity, and the push password in [`PASS_ENV`] for [`Ctx::CREDENTIAL_ARGS`].
    pub fn git_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GIT_AUTHOR_NAME", IDENTITY.0.into()),
            ("GIT_AUTHOR_EMAIL", IDENTITY.1.into()),
            ("GIT_COMMITTER_NAME", IDENTITY.0.into()),
            ("GIT_COMMITTER_EMAIL", IDENTITY.1.into()),
            (PASS_ENV, self.password.clone()),
        ]
    }

    /// `git -c ...` arguments making git answer the server's auth challenge from
    /// `$KARGO_BENCH_PASS` (the password never appears in argv).
    pub const CREDENTIAL_ARGS: [&'static str; 4] = [
        "-c",
        "credential.helper=",
        "-c",
        "credential.helper=!f() { echo username=kargo; echo \"password=$KARGO_BENCH_PASS\"; }; f",
    ];

    /// Runs `git <args>` in `dir` with [`Ctx::git_env`], recording its peak RSS when this
    /// run measures it; returns stdout. Panics with git's stderr on failure.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.git_with_stdin(dir, args, None)
    }

    /// [`Ctx::git`] with `input` on stdin.
    pub fn git_with_stdin(&self, dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
        let mut cmd = match &self.rss_file {
            Some(rss) => {
                let mut c = Command::new("/usr/bin/time");
                c.args(["-f", "%M", "-o"]).arg(rss).arg("git");
                c
            }
            None => Command::new("git"),
        };
        cmd.args(args).current_dir(dir).envs(self.git_env());
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn git");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("git stdin");
            stdin.write_all(input).expect("write git stdin");
        }
        let out = child.wait_with_output().expect("wait for git");
        if std::env::var_os("KARGO_BENCH_VERBOSE").is_some() {
            eprintln!("  {:>8.1?} git {}", start.elapsed(), args.join(" "));
        }
        assert!(
            out.status.success(),
            "git {args:?} in {} failed ({}):\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(rss) = &self.rss_file {
            let kib = fs::read_to_string(rss)
                .ok()
                .and_then(|s| s.lines().last().and_then(|l| l.trim().parse::<u64>().ok()));
            if let Some(kib) = kib {
                self.peak_rss_kib
                    .set(Some(self.peak_rss_kib.get().unwrap_or(0).max(kib)));
            }
        }
        String::from_utf8(out.stdout).expect("git output is UTF-8")
    }

    /// Rewrites `ctx.file` inside the checkout `root` to carry `ctx.new_tag`.
    pub fn retag_file(&self, root: &Path) {
        let path = root.join(&self.file);
        let old = fs::read_to_string(&path).expect("read overlay file");
        let new = gitops_fixture::retag(&old, &self.new_tag).expect("overlay has an image line");
        fs::write(&path, new).expect("write overlay file");
    }

    /// Parent directory of `ctx.file` (for sparse checkouts).
    pub fn file_dir(&self) -> &str {
        self.file.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// `git push origin HEAD:main` from `checkout`, authenticating via the helper.
    pub fn push(&self, checkout: &Path) {
        let mut args = Ctx::CREDENTIAL_ARGS.to_vec();
        args.extend(["push", "-q", "origin", "HEAD:main"]);
        self.git(checkout, &args);
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn cli_variants() -> Vec<Variant> {
    vec![
        (
            "cli-full",
            Box::new(|ctx: &Ctx| {
                timed(|| {
                    let repo = ctx.work_dir.join("repo");
                    ctx.git(&ctx.work_dir, &["clone", "-q", &ctx.remote_url, "repo"]);
                    ctx.retag_file(&repo);
                    ctx.git(&repo, &["commit", "-q", "-a", "-m", &ctx.message]);
                    ctx.push(&repo);
                })
            }),
        ),
        (
            "cli-kargo",
            Box::new(|ctx: &Ctx| {
                timed(|| {
                    let bare = ctx.work_dir.join("repo.git");
                    let wt = ctx.work_dir.join("main");
                    ctx.git(
                        &ctx.work_dir,
                        &["clone", "-q", "--bare", &ctx.remote_url, "repo.git"],
                    );
                    let wt_arg = wt.to_str().expect("UTF-8 temp path");
                    ctx.git(&bare, &["worktree", "add", "-q", wt_arg, "main"]);
                    ctx.retag_file(&wt);
                    ctx.git(&wt, &["commit", "-q", "-a", "-m", &ctx.message]);
                    ctx.push(&wt);
                })
            }),
        ),
        (
            "cli-best",
            Box::new(|ctx: &Ctx| {
                timed(|| {
                    let repo = ctx.work_dir.join("repo");
                    ctx.git(
                        &ctx.work_dir,
                        &[
                            "clone",
                            "-q",
                            "--depth",
                            "1",
                            "--filter=blob:none",
                            "--sparse",
                            &ctx.remote_url,
                            "repo",
                        ],
                    );
                    ctx.git(&repo, &["sparse-checkout", "set", ctx.file_dir()]);
                    ctx.retag_file(&repo);
                    ctx.git(&repo, &["commit", "-q", "-a", "-m", &ctx.message]);
                    ctx.push(&repo);
                })
            }),
        ),
        ("floor", Box::new(|ctx: &Ctx| timed(|| floor(ctx)))),
    ]
}

/// The least work a promotion needs, done with plumbing in the served bare repository:
/// new blob, new trees along the path from the leaf up, a commit, a compare-and-swap ref
/// update. No clone, no network.
fn floor(ctx: &Ctx) {
    let repo = &ctx.remote_bare;
    let old = ctx
        .git(repo, &["rev-parse", "refs/heads/main"])
        .trim()
        .to_owned();
    let content = ctx.git(repo, &["cat-file", "blob", &format!("{old}:{}", ctx.file)]);
    let new = gitops_fixture::retag(&content, &ctx.new_tag).expect("overlay has an image line");
    let mut oid = ctx
        .git_with_stdin(
            repo,
            &["hash-object", "-w", "--stdin"],
            Some(new.as_bytes()),
        )
        .trim()
        .to_owned();
    let parts: Vec<&str> = ctx.file.split('/').collect();
    // Directories from the leaf's parent up to the root ("" = root).
    for depth in (0..parts.len()).rev() {
        let dir = parts[..depth].join("/");
        let name = parts[depth];
        let listing = ctx.git(repo, &["ls-tree", &format!("{old}:{dir}")]);
        let mut replaced = false;
        let edited: String = listing
            .lines()
            .map(|line| {
                let (meta, entry) = line.split_once('\t').expect("ls-tree line has a tab");
                if entry == name {
                    let mut f = meta.split(' ');
                    let (mode, kind) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
                    replaced = true;
                    format!("{mode} {kind} {oid}\t{entry}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        assert!(replaced, "{name} not found in tree {old}:{dir}");
        oid = ctx
            .git_with_stdin(repo, &["mktree"], Some(edited.as_bytes()))
            .trim()
            .to_owned();
    }
    let commit = ctx.git(repo, &["commit-tree", &oid, "-p", &old, "-m", &ctx.message]);
    ctx.git(
        repo,
        &["update-ref", "refs/heads/main", commit.trim(), &old],
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let size = std::env::var("KARGO_BENCH_SIZE").unwrap_or_else(|_| "medium".into());
    let spec = match size.as_str() {
        "small" => FixtureSpec::SMALL,
        "medium" => FixtureSpec::MEDIUM,
        "large" => FixtureSpec::LARGE,
        other => panic!("KARGO_BENCH_SIZE must be small, medium or large, not {other:?}"),
    };
    let fixture = cached_fixture(&size, &spec);

    // The served copy and every run directory live in one temp dir ($TMPDIR, one
    // filesystem), removed at the end. Not under the target dir: on the measuring machine
    // creating files under /work was ~10x slower than under /tmp, which would penalize
    // the checkout-heavy variants.
    let root = tempfile::Builder::new()
        .prefix("git-promotion-")
        .tempdir()
        .expect("create bench temp dir");
    let srv = root.path().join("srv");
    fs::create_dir_all(&srv).expect("create srv dir");
    let served = srv.join("fixture.git");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&served)
        .status()
        .expect("run cp");
    assert!(cp.success(), "copying the fixture failed");
    // Like GitHub/GitLab: allow partial clones (--filter) from this server.
    let cfg = Command::new("git")
        .arg("-C")
        .arg(&served)
        .args(["config", "uploadpack.allowFilter", "true"])
        .status()
        .expect("run git config");
    assert!(cfg.success(), "git config uploadpack.allowFilter failed");

    let password = random_password();
    let server = start_http(
        &srv,
        &root.path().join("server"),
        Some((USER, &password)),
        "fixture.git",
    );
    let measure_rss = Path::new("/usr/bin/time").exists();

    let git_version = Command::new("git")
        .arg("--version")
        .output()
        .expect("git --version");
    let pack_bytes: u64 = fs::read_dir(fixture.join("objects/pack"))
        .expect("read fixture packs")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "\n`git_promotion` size `{size}`: {} apps ({} files), {} commits, pack {:.1} MiB; {}; {} timed runs after 1 warm-up\n",
        spec.apps,
        spec.apps * 8,
        spec.commits,
        pack_bytes as f64 / (1024.0 * 1024.0),
        String::from_utf8_lossy(&git_version.stdout).trim(),
        RUNS
    );

    let mut variants = cli_variants();
    variants.extend(kargo_variants());
    let mut rows = Vec::new();
    let mut k = 0usize; // global run counter: picks file and tag
    for (name, run) in &variants {
        let cache_dir = root.path().join("cache").join(name);
        fs::create_dir_all(&cache_dir).expect("create cache dir");
        let mut times = Vec::with_capacity(RUNS);
        let mut rss = None;
        for r in 0..=RUNS {
            let warmup = r == 0;
            let app = gitops_fixture::app_for_commit(spec.commits + k, spec.apps);
            let stage = STAGES[k % STAGES.len()];
            let work_dir = root.path().join("runs").join(format!("{name}-{r}"));
            fs::create_dir_all(&work_dir).expect("create work dir");
            let ctx = Ctx {
                remote_url: format!("{}/fixture.git", server.url),
                username: USER,
                password: password.clone(),
                remote_bare: served.clone(),
                work_dir: work_dir.clone(),
                cache_dir: cache_dir.clone(),
                file: gitops_fixture::overlay_patch_path(app, stage),
                new_tag: format!("bench-{k}"),
                message: format!("Promote app-{app:05} in {stage} to bench-{k} ({name} run {r})"),
                rss_file: (warmup && measure_rss).then(|| root.path().join("rss")),
                peak_rss_kib: Cell::new(None),
            };
            let before = git_out(&served, &["rev-parse", "refs/heads/main"]);
            let elapsed = run(&ctx);
            verify(&served, &ctx, &before);
            if warmup {
                rss = ctx.peak_rss_kib.get();
            } else {
                times.push(elapsed);
            }
            fs::remove_dir_all(&work_dir).expect("remove work dir");
            k += 1;
        }
        let min = *times.iter().min().expect("at least one run");
        let med = median(times);
        eprintln!("{name}: median {med:.1?}, min {min:.1?}");
        rows.push((name, med, min, rss));
    }

    println!("| variant | median | min | peak RSS (git children) |");
    println!("|---|---:|---:|---:|");
    for (name, med, min, rss) in rows {
        let rss = rss.map_or("–".to_owned(), |kib| {
            format!("{:.1} MiB", kib as f64 / 1024.0)
        });
        println!("| {name} | {} | {} | {rss} |", fmt_ms(med), fmt_ms(min));
    }
    drop(server);
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// The run must have pushed exactly one commit on top of `before` carrying the new tag.
fn verify(served: &Path, ctx: &Ctx, before: &str) {
    let parent = git_out(served, &["rev-parse", "refs/heads/main^"]);
    assert_eq!(parent, before, "main did not advance by exactly one commit");
    let content = git_out(
        served,
        &["cat-file", "blob", &format!("refs/heads/main:{}", ctx.file)],
    );
    let expected = format!(":{}", ctx.new_tag);
    assert!(
        content
            .lines()
            .any(|l| l.trim_start().starts_with("image: ") && l.ends_with(&expected)),
        "pushed {} does not carry tag {}",
        ctx.file,
        ctx.new_tag
    );
    let changed = git_out(
        served,
        &["diff", "--name-only", "refs/heads/main^", "refs/heads/main"],
    );
    assert_eq!(changed, ctx.file, "the promotion changed other files");
}
