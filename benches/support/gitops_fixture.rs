//! A deterministic GitOps repository for git benchmarks.
//!
//! Layout, per app `apps/app-NNNNN/` (8 files):
//! `base/kustomization.yaml`, `base/deployment.yaml`, and for each stage of
//! [`STAGES`] `overlays/<stage>/kustomization.yaml` and `overlays/<stage>/patches.yaml`
//! (a commented strategic-merge patch holding `image: ghcr.io/acme/app-NNNNN:<tag>`).
//!
//! History on `main`: commit 0 adds every file (tag `1.0.0` everywhere); commit `i >= 1`
//! sets the tag `1.<i>.0` in `overlays/<STAGES[i % 3]>/patches.yaml` of app
//! `(i * 7919) % apps`. Author, committer and dates are fixed, contents depend only on
//! indices, so the same spec always yields the same commit ids.
//!
//! The repository is written by streaming a `git fast-import` stream (inline blobs, commit
//! marks) into the child's stdin through a small buffer: memory stays bounded whatever the
//! size. Then `git repack -a -d` leaves one pack, like a freshly served repository.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Size of a generated repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureSpec {
    /// Number of apps (8 files each).
    pub apps: usize,
    /// Number of commits on `main`, including the initial one (at least 1).
    pub commits: usize,
}

impl FixtureSpec {
    /// 100 apps, 200 commits: quick runs.
    pub const SMALL: Self = Self {
        apps: 100,
        commits: 200,
    };
    /// 1,000 apps (8,000 files), 5,000 commits.
    pub const MEDIUM: Self = Self {
        apps: 1_000,
        commits: 5_000,
    };
    /// 10,000 apps (80,000 files), 20,000 commits.
    pub const LARGE: Self = Self {
        apps: 10_000,
        commits: 20_000,
    };
}

/// Bumped whenever the generated content changes, so cached fixtures are not reused.
pub const GENERATOR_VERSION: u32 = 1;

/// The stages every app has an overlay for.
pub const STAGES: [&str; 3] = ["dev", "staging", "prod"];

const AUTHOR: &str = "Kargo Bench <bench@kargo.invalid>";
const EPOCH: u64 = 1_700_000_000;

/// Repository path of the overlay patch holding the image tag of `app` in `stage`,
/// e.g. `apps/app-00042/overlays/dev/patches.yaml`.
pub fn overlay_patch_path(app: usize, stage: &str) -> String {
    format!("apps/app-{app:05}/overlays/{stage}/patches.yaml")
}

/// The image tag commit `i` writes (commit 0 writes it everywhere).
pub fn tag_for_commit(i: usize) -> String {
    format!("1.{i}.0")
}

/// The app whose overlay commit `i >= 1` changes.
pub fn app_for_commit(i: usize, apps: usize) -> usize {
    (i * 7919) % apps
}

/// Returns `content` with the tag of its `image:` line replaced by `new_tag`, or `None`
/// when no `image: <repo>:<tag>` line is found.
pub fn retag(content: &str, new_tag: &str) -> Option<String> {
    let mut out = String::with_capacity(content.len() + new_tag.len());
    let mut found = false;
    for line in content.split_inclusive('\n') {
        if !found && let Some(cut) = tag_start(line) {
            out.push_str(&line[..cut]);
            out.push_str(new_tag);
            if line.ends_with('\n') {
                out.push('\n');
            }
            found = true;
            continue;
        }
        out.push_str(line);
    }
    found.then_some(out)
}

/// Byte offset of the tag in a line `<indent>image: <repo>:<tag>`.
fn tag_start(line: &str) -> Option<usize> {
    let value = line.trim_start().strip_prefix("image: ")?;
    let value_start = line.len() - value.len();
    let colon = value.trim_end().rfind(':')?;
    Some(value_start + colon + 1)
}

/// Creates `dest_bare_repo` (`git init --bare -b main`, must not exist or be empty) and
/// fills it with the fixture described by `spec`.
pub fn generate_bare(spec: &FixtureSpec, dest_bare_repo: &Path) -> io::Result<()> {
    if spec.apps == 0 || spec.commits == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fixture needs at least one app and one commit",
        ));
    }
    if dest_bare_repo.exists() && dest_bare_repo.read_dir()?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not empty", dest_bare_repo.display()),
        ));
    }
    run(Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(dest_bare_repo))?;

    let mut child = Command::new("git")
        .arg("-C")
        .arg(dest_bare_repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("spawning git fast-import: {e}")))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin for git fast-import"))?;
    let written = write_stream(spec, BufWriter::with_capacity(1 << 16, stdin));
    let status = child.wait()?;
    // A broken pipe usually means fast-import died: report its exit status first.
    if !status.success() {
        return Err(io::Error::other(format!(
            "git fast-import into {} failed: {status}",
            dest_bare_repo.display()
        )));
    }
    written?;

    run(Command::new("git")
        .arg("-C")
        .arg(dest_bare_repo)
        .args(["repack", "-a", "-d", "-q"]))
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("spawning {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn write_stream<W: Write>(spec: &FixtureSpec, mut w: BufWriter<W>) -> io::Result<()> {
    let mut buf = String::with_capacity(4096);
    w.write_all(b"feature done\n")?;
    for i in 0..spec.commits {
        let time = EPOCH + i as u64 * 60;
        let message = if i == 0 {
            format!(
                "Add {} apps with overlays for {}\n",
                spec.apps,
                STAGES.join(", ")
            )
        } else {
            let app = app_for_commit(i, spec.apps);
            let stage = STAGES[i % STAGES.len()];
            format!("Promote app-{app:05} in {stage} to {}\n", tag_for_commit(i))
        };
        write!(
            w,
            "commit refs/heads/main\nmark :{}\nauthor {AUTHOR} {time} +0000\ncommitter {AUTHOR} {time} +0000\ndata {}\n{message}\n",
            i + 1,
            message.len()
        )?;
        if i == 0 {
            let tag = tag_for_commit(0);
            for app in 0..spec.apps {
                base_kustomization(&mut buf, app);
                inline_file(
                    &mut w,
                    &format!("apps/app-{app:05}/base/kustomization.yaml"),
                    &buf,
                )?;
                base_deployment(&mut buf, app);
                inline_file(
                    &mut w,
                    &format!("apps/app-{app:05}/base/deployment.yaml"),
                    &buf,
                )?;
                for stage in STAGES {
                    overlay_kustomization(&mut buf, app, stage);
                    let path = format!("apps/app-{app:05}/overlays/{stage}/kustomization.yaml");
                    inline_file(&mut w, &path, &buf)?;
                    patches(&mut buf, app, stage, &tag);
                    inline_file(&mut w, &overlay_patch_path(app, stage), &buf)?;
                }
            }
        } else {
            writeln!(w, "from :{i}")?;
            let app = app_for_commit(i, spec.apps);
            let stage = STAGES[i % STAGES.len()];
            patches(&mut buf, app, stage, &tag_for_commit(i));
            inline_file(&mut w, &overlay_patch_path(app, stage), &buf)?;
        }
        w.write_all(b"\n")?;
    }
    w.write_all(b"done\n")?;
    w.flush()
}

fn inline_file<W: Write>(w: &mut W, path: &str, content: &str) -> io::Result<()> {
    write!(w, "M 100644 inline {path}\ndata {}\n", content.len())?;
    w.write_all(content.as_bytes())?;
    w.write_all(b"\n")
}

// The writers below fill `buf` (cleared first); `write!` into a String cannot fail.

fn base_kustomization(buf: &mut String, app: usize) {
    buf.clear();
    let _ = write!(
        buf,
        "apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         resources:\n  - deployment.yaml\n\
         labels:\n  - includeSelectors: true\n    pairs:\n      app.kubernetes.io/name: app-{app:05}\n      app.kubernetes.io/part-of: acme\n"
    );
}

fn base_deployment(buf: &mut String, app: usize) {
    buf.clear();
    let port = 8000 + app % 1000;
    let _ = write!(
        buf,
        "apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: app-{app:05}\n  labels:\n    app.kubernetes.io/name: app-{app:05}\n\
         spec:\n  replicas: 1\n  revisionHistoryLimit: 3\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: app-{app:05}\n  \
         template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: app-{app:05}\n    \
         spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/app-{app:05}:placeholder\n          \
         ports:\n            - name: http\n              containerPort: {port}\n          \
         env:\n            - name: APP_NAME\n              value: app-{app:05}\n            - name: LISTEN_PORT\n              value: \"{port}\"\n          \
         readinessProbe:\n            httpGet:\n              path: /healthz\n              port: http\n          \
         resources:\n            requests:\n              cpu: 50m\n              memory: 64Mi\n            limits:\n              memory: 256Mi\n"
    );
}

fn overlay_kustomization(buf: &mut String, app: usize, stage: &str) {
    buf.clear();
    let _ = write!(
        buf,
        "apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         namespace: app-{app:05}-{stage}\n\
         resources:\n  - ../../base\n\
         patches:\n  - path: patches.yaml\n\
         labels:\n  - pairs:\n      acme.example/stage: {stage}\n"
    );
}

fn patches(buf: &mut String, app: usize, stage: &str, tag: &str) {
    buf.clear();
    let replicas = match stage {
        "prod" => 3,
        "staging" => 2,
        _ => 1,
    };
    let _ = write!(
        buf,
        "# Stage-specific settings of app-{app:05} in {stage}.\n\
         # The image tag below is written by Kargo promotions; edit the rest by hand.\n\
         apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: app-{app:05}\n\
         spec:\n  replicas: {replicas}  # {stage} capacity\n  template:\n    spec:\n      containers:\n        - name: app\n          \
         # promoted image\n          image: ghcr.io/acme/app-{app:05}:{tag}\n          \
         env:\n            - name: STAGE\n              value: {stage}\n"
    );
}
