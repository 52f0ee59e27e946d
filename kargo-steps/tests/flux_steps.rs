//! `flux-update-images` through the promotion runner: on a work directory of Flux-marked
//! files (every output, every untouched byte), its errors, and end to end on a real git
//! remote (git-clone → flux-update-images → git-commit → git-push), over file:// always
//! and over smart HTTP when `ci/test.sh` started the git server (`TEST_GIT_HTTP_*`).

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kargo_core::freight::{Freight, FreightCollection, FreightOrigin, FreightReference, Image};
use kargo_core::runner::{PlannedStep, Promotion, PromotionPhase, PromotionResult, Runner};
use kargo_core::secret::{CredentialKind, CredentialProvider, NoCredentials, StaticCredentials};
use kargo_core::step::StepRegistry;
use kargo_core::testing::server_envs;
use kargo_core::workdir::WorkDir;
use kargo_steps::{BuiltinOptions, register_builtins_with};
use serde_json::{Value as Json, json};
use tempfile::TempDir;

const APP_DIGEST: &str = "sha256:4f1c3d2b5a6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
const WORKER_DIGEST: &str =
    "sha256:9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";

/// The Freight: `ghcr.io/acme/app:1.4.0` from Warehouse `app`, `ghcr.io/acme/worker:2.0.1`
/// from Warehouse `worker`.
fn freight() -> FreightCollection {
    let mut c = FreightCollection::new();
    for (warehouse, repo, tag, digest) in [
        ("app", "ghcr.io/acme/app", "1.4.0", APP_DIGEST),
        ("worker", "ghcr.io/acme/worker", "2.0.1", WORKER_DIGEST),
    ] {
        c.insert(FreightReference::from(Freight::new(
            FreightOrigin::warehouse(warehouse),
            vec![],
            vec![Image {
                repo_url: repo.to_owned(),
                tag: tag.to_owned(),
                digest: digest.to_owned(),
                ..Image::default()
            }],
            vec![],
            vec![],
        )));
    }
    c
}

/// A Deployment with a full marker, a quoted one and an unmatched one, and a sidecar whose
/// args carry a flow-sequence `:tag` marker.
const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: app   # the app
spec:
  template:
    spec:
      containers:
        - name: app
          image: ghcr.io/acme/app:1.3.0 # {"$imagepolicy": "flux-system:app"}
        - name: worker
          image: "ghcr.io/acme/worker:2.0.0"    #{"$imagepolicy":"flux-system:worker"}
        - name: cache
          image: redis:7.2 # {"$imagepolicy": "flux-system:redis"}
          args: [--version, 1.3.0, # {"$imagepolicy": "flux-system:app:tag"}
            --verbose]
"#;

/// A Kustomization with the `:name`, `:tag` and `:digest` suffixes, CRLF line breaks and
/// no final newline.
const KUSTOMIZATION: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\r\nkind: Kustomization\r\nresources:\r\n- deployment.yaml\r\nimages:\r\n- name: worker\r\n  newName: registry.local/worker # {\"$imagepolicy\": \"flux-system:worker:name\"}\r\n  newTag: '2.0.0' # {\"$imagepolicy\": \"flux-system:worker:tag\"}\r\n  digest: sha256:00 # {\"$imagepolicy\": \"flux-system:worker:digest\"}";

/// Two documents; the marker of the second is a head comment of a sequence item.
const MULTI_DOC: &str = r#"# jobs
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: ghcr.io/acme/app:1.3.0 # {"$imagepolicy": "flux-system:app"}
---
apiVersion: v1
kind: ConfigMap
data:
  images:
  # {"$imagepolicy": "flux-system:worker"}
  - ghcr.io/acme/worker:1.0.0
  - untouched:1
"#;

/// A Helm template: holds the token but is not YAML.
const HELM_TEMPLATE: &str =
    "image: {{ .Values.image }} # {\"$imagepolicy\": \"flux-system:app\"}\n{{- if .Values.x }}\n";

fn registry(cache: &Path) -> StepRegistry {
    let mut reg = StepRegistry::new();
    register_builtins_with(
        &mut reg,
        &BuiltinOptions::with_git(kargo_git::GitConfig::new(cache)),
    )
    .unwrap();
    reg
}

fn steps(v: Json) -> Vec<PlannedStep> {
    serde_json::from_value(v).unwrap()
}

fn promotion(
    work: &Path,
    steps: Vec<PlannedStep>,
    creds: Arc<dyn CredentialProvider>,
) -> Promotion {
    let mut p = Promotion::new(WorkDir::new(work).unwrap(), steps);
    p.project = "demo".into();
    p.stage = "prod".into();
    p.name = "prod.01flux.abcdef0".into();
    p.freight = freight();
    p.credentials = creds;
    p
}

fn assert_phase(r: &PromotionResult, phase: PromotionPhase) {
    assert_eq!(
        r.phase,
        phase,
        "promotion: {:?}; steps: {:#?}",
        r.message,
        r.steps
            .iter()
            .map(|s| (&s.alias, s.status, &s.message))
            .collect::<Vec<_>>()
    );
}

fn output<'a>(r: &'a PromotionResult, alias: &str, key: &str) -> &'a Json {
    r.step(alias)
        .and_then(|s| s.outputs.get(key))
        .unwrap_or_else(|| panic!("no output {alias}.{key}: {:#?}", r.steps))
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The marked files of the tests, under `apps/`, plus files the step must not touch.
fn gitops_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("apps/prod/deployment.yaml", DEPLOYMENT),
        ("apps/prod/Kustomization", KUSTOMIZATION),
        ("apps/prod/jobs/multi.yml", MULTI_DOC),
        ("apps/prod/templates/deployment.yaml", HELM_TEMPLATE),
        // Not YAML by name: never read.
        (
            "apps/prod/notes.txt",
            "image: x # {\"$imagepolicy\": \"flux-system:app\"}\n",
        ),
        // No token: never parsed (it would not parse).
        ("apps/prod/plain.yaml", "a: [\n"),
        // Outside `path`.
        ("other/deployment.yaml", DEPLOYMENT),
    ]
}

/// What the marked files read after the promotion.
fn expected_deployment() -> String {
    DEPLOYMENT
        .replace("ghcr.io/acme/app:1.3.0 #", "ghcr.io/acme/app:1.4.0 #")
        .replace(
            "\"ghcr.io/acme/worker:2.0.0\"",
            &format!("\"ghcr.io/acme/worker:2.0.1@{WORKER_DIGEST}\""),
        )
        .replace("[--version, 1.3.0,", "[--version, 1.4.0,")
}

fn expected_kustomization() -> String {
    KUSTOMIZATION
        .replace("registry.local/worker #", "ghcr.io/acme/worker #")
        .replace("'2.0.0'", "'2.0.1'")
        .replace("sha256:00", WORKER_DIGEST)
}

fn expected_multi_doc() -> String {
    MULTI_DOC
        .replace("ghcr.io/acme/app:1.3.0", "ghcr.io/acme/app:1.4.0")
        .replace(
            "- ghcr.io/acme/worker:1.0.0",
            &format!("- ghcr.io/acme/worker:2.0.1@{WORKER_DIGEST}"),
        )
}

fn flux_step(path: &str) -> Json {
    json!({"alias": "flux", "uses": "flux-update-images", "config": {
        "path": path,
        "policies": [
            {"policy": "flux-system:app", "repoURL": "ghcr.io/acme/app"},
            {"policy": "flux-system:worker", "repoURL": "ghcr.io/acme/worker", "digest": true,
             "fromOrigin": {"kind": "Warehouse", "name": "worker"}},
        ],
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn sets_every_marked_field_and_keeps_every_other_byte() {
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    write(work.path(), &gitops_files());
    let p = promotion(
        work.path(),
        steps(json!([flux_step("./apps/prod")])),
        Arc::new(NoCredentials),
    );
    let r = Runner::new(registry(cache.path())).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);

    let read = |p: &str| std::fs::read_to_string(work.path().join(p)).unwrap();
    assert_eq!(read("apps/prod/deployment.yaml"), expected_deployment());
    assert_eq!(read("apps/prod/Kustomization"), expected_kustomization());
    assert_eq!(read("apps/prod/jobs/multi.yml"), expected_multi_doc());
    for (path, text) in gitops_files() {
        if !matches!(
            path,
            "apps/prod/deployment.yaml" | "apps/prod/Kustomization" | "apps/prod/jobs/multi.yml"
        ) {
            assert_eq!(read(path), text, "{path} must be untouched");
        }
    }

    let worker_full = format!("ghcr.io/acme/worker:2.0.1@{WORKER_DIGEST}");
    assert_eq!(
        output(&r, "flux", "changes"),
        &json!([
            {"file": "apps/prod/Kustomization", "line": 7, "policy": "flux-system:worker:name",
             "old": "registry.local/worker", "new": "ghcr.io/acme/worker"},
            {"file": "apps/prod/Kustomization", "line": 8, "policy": "flux-system:worker:tag",
             "old": "2.0.0", "new": "2.0.1"},
            {"file": "apps/prod/Kustomization", "line": 9, "policy": "flux-system:worker:digest",
             "old": "sha256:00", "new": WORKER_DIGEST},
            {"file": "apps/prod/deployment.yaml", "line": 10, "policy": "flux-system:app",
             "old": "ghcr.io/acme/app:1.3.0", "new": "ghcr.io/acme/app:1.4.0"},
            {"file": "apps/prod/deployment.yaml", "line": 12, "policy": "flux-system:worker",
             "old": "ghcr.io/acme/worker:2.0.0", "new": worker_full},
            {"file": "apps/prod/deployment.yaml", "line": 15, "policy": "flux-system:app:tag",
             "old": "1.3.0", "new": "1.4.0"},
            {"file": "apps/prod/jobs/multi.yml", "line": 11, "policy": "flux-system:app",
             "old": "ghcr.io/acme/app:1.3.0", "new": "ghcr.io/acme/app:1.4.0"},
            {"file": "apps/prod/jobs/multi.yml", "line": 18, "policy": "flux-system:worker",
             "old": "ghcr.io/acme/worker:1.0.0", "new": worker_full},
        ])
    );
    assert_eq!(
        output(&r, "flux", "unmatched"),
        &json!([{"file": "apps/prod/deployment.yaml", "line": 14, "policy": "flux-system:redis"}])
    );
    let skipped = output(&r, "flux", "skippedFiles").as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["file"], "apps/prod/templates/deployment.yaml");
    assert_eq!(
        output(&r, "flux", "files"),
        &json!([
            "apps/prod/Kustomization",
            "apps/prod/deployment.yaml",
            "apps/prod/jobs/multi.yml"
        ])
    );
    let message = output(&r, "flux", "commitMessage").as_str().unwrap();
    assert!(
        message.starts_with(
            "Updated apps/prod to use new images\n\n- apps/prod/Kustomization:7 flux-system:worker:name: ghcr.io/acme/worker\n"
        ),
        "{message}"
    );
    assert_eq!(message.lines().count(), 2 + 8, "{message}");

    // A second promotion of the same Freight changes nothing.
    let r = Runner::new(registry(cache.path())).run(&p).await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(output(&r, "flux", "changes"), &json!([]));
    assert_eq!(read("apps/prod/deployment.yaml"), expected_deployment());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_file_path_and_the_digests_switch() {
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    write(work.path(), &gitops_files());
    let plan = steps(
        json!([{"alias": "one", "uses": "flux-update-images", "config": {
            "path": "apps/prod/jobs/multi.yml",
            "digests": true,
            "policies": [
                {"policy": "flux-system:app", "repoURL": "ghcr.io/acme/app"},
                {"policy": "flux-system:worker", "repoURL": "ghcr.io/acme/worker", "digest": false},
            ],
        }}]),
    );
    let r = Runner::new(registry(cache.path()))
        .run(&promotion(work.path(), plan, Arc::new(NoCredentials)))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(
        std::fs::read_to_string(work.path().join("apps/prod/jobs/multi.yml")).unwrap(),
        MULTI_DOC
            .replace(
                "ghcr.io/acme/app:1.3.0",
                &format!("ghcr.io/acme/app:1.4.0@{APP_DIGEST}")
            )
            .replace("- ghcr.io/acme/worker:1.0.0", "- ghcr.io/acme/worker:2.0.1")
    );
    assert_eq!(
        output(&r, "one", "files"),
        &json!(["apps/prod/jobs/multi.yml"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_whose_image_is_not_in_the_freight_fails_and_writes_nothing() {
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    write(work.path(), &gitops_files());
    let plan = steps(
        json!([{"alias": "update-markers", "uses": "flux-update-images", "config": {
            "path": "./apps",
            "policies": [
                {"policy": "flux-system:app", "repoURL": "ghcr.io/acme/app"},
                {"policy": "flux-system:redis", "repoURL": "docker.io/library/redis"},
            ],
        }}]),
    );
    let r = Runner::new(registry(cache.path()))
        .run(&promotion(work.path(), plan, Arc::new(NoCredentials)))
        .await;
    assert_ne!(r.phase, PromotionPhase::Succeeded);
    let step = r.step("update-markers").unwrap();
    let message = step.message.clone().unwrap_or_default();
    assert!(
        message.contains(
            "step update-markers: apps/prod/deployment.yaml: line 14: policy \"flux-system:redis\": maps to repository docker.io/library/redis: no image from repository docker.io/library/redis is in the Freight being promoted"
        ),
        "{message}"
    );
    // The first file (Kustomization) has no redis marker, yet nothing was written.
    for (path, text) in gitops_files() {
        assert_eq!(
            std::fs::read_to_string(work.path().join(path)).unwrap(),
            text,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_names_the_key_path() {
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    write(work.path(), &gitops_files());
    let plan = steps(
        json!([{"alias": "flux", "uses": "flux-update-images", "config": {
            "path": "apps",
            "policies": [{"policy": "podinfo", "repoURL": "ghcr.io/acme/app"}],
        }}]),
    );
    let r = Runner::new(registry(cache.path()))
        .run(&promotion(work.path(), plan, Arc::new(NoCredentials)))
        .await;
    assert_eq!(r.phase, PromotionPhase::Errored);
    let message = r.step("flux").unwrap().message.clone().unwrap_or_default();
    assert!(
        message.contains("config.policies[0].policy: \"podinfo\" is not NAMESPACE:NAME"),
        "{message}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn symbolic_links_under_path_are_not_followed() {
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let outside = TempDir::new().unwrap();
    write(
        outside.path(),
        &[("deployment.yaml", DEPLOYMENT), ("dir/d.yaml", DEPLOYMENT)],
    );
    write(work.path(), &[("apps/prod/deployment.yaml", DEPLOYMENT)]);
    std::os::unix::fs::symlink(
        outside.path().join("deployment.yaml"),
        work.path().join("apps/prod/linked.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("dir"),
        work.path().join("apps/prod/dir"),
    )
    .unwrap();
    let r = Runner::new(registry(cache.path()))
        .run(&promotion(
            work.path(),
            steps(json!([flux_step("apps")])),
            Arc::new(NoCredentials),
        ))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(
        output(&r, "flux", "files"),
        &json!(["apps/prod/deployment.yaml"])
    );
    for p in ["deployment.yaml", "dir/d.yaml"] {
        assert_eq!(
            std::fs::read_to_string(outside.path().join(p)).unwrap(),
            DEPLOYMENT,
            "{p}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(work.path().join("apps/prod/deployment.yaml")).unwrap(),
        expected_deployment()
    );
}

// ---------------------------------------------------------------------------------------
// End to end on a real git remote

/// Runs the git CLI with a fixed identity and no user configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Seed")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "Seed")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Makes `bare` a bare repository on `main` holding `files`.
fn seed(bare: &Path, files: &[(&str, &str)]) {
    let parent = bare.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    git(
        parent,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(bare, &["config", "http.receivepack", "true"]);
    let work = TempDir::new().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    // Keep CRLF and every other byte as written.
    git(work.path(), &["config", "core.autocrlf", "false"]);
    write(work.path(), files);
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "seed"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
}

async fn clone_update_commit_push(url: String, bare: &Path, creds: Arc<dyn CredentialProvider>) {
    seed(bare, &gitops_files());
    let cache = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let plan = steps(json!([
        {"alias": "clone", "uses": "git-clone", "config": {
            "repoURL": url,
            "checkout": [{"path": "./repo", "branch": "main"}],
            "author": {"name": "Promoter", "email": "promoter@example.com"},
        }},
        flux_step("./repo/apps/prod"),
        {"alias": "commit", "uses": "git-commit", "config": {
            "path": "./repo", "message": "${{ outputs.flux.commitMessage }}",
        }},
        {"alias": "push", "uses": "git-push", "config": {"path": "./repo"}},
    ]));
    let r = Runner::new(registry(cache.path()))
        .run(&promotion(work.path(), plan, creds))
        .await;
    assert_phase(&r, PromotionPhase::Succeeded);
    assert_eq!(output(&r, "flux", "changes").as_array().unwrap().len(), 8);

    // A fresh clone has exactly the expected bytes, every other file unchanged.
    let clone = TempDir::new().unwrap();
    git(
        clone.path(),
        &[
            "-c",
            "core.autocrlf=false",
            "clone",
            "-q",
            "-b",
            "main",
            &format!("file://{}", bare.display()),
            ".",
        ],
    );
    let read = |p: &str| std::fs::read(clone.path().join(p)).unwrap();
    assert_eq!(
        read("apps/prod/deployment.yaml"),
        expected_deployment().into_bytes()
    );
    assert_eq!(
        read("apps/prod/Kustomization"),
        expected_kustomization().into_bytes()
    );
    assert_eq!(
        read("apps/prod/jobs/multi.yml"),
        expected_multi_doc().into_bytes()
    );
    for (path, text) in gitops_files() {
        if !matches!(
            path,
            "apps/prod/deployment.yaml" | "apps/prod/Kustomization" | "apps/prod/jobs/multi.yml"
        ) {
            assert_eq!(read(path), text.as_bytes(), "{path} must be untouched");
        }
    }
    assert_eq!(
        git(clone.path(), &["diff", "--name-only", "HEAD~1", "HEAD"]),
        "apps/prod/Kustomization\napps/prod/deployment.yaml\napps/prod/jobs/multi.yml"
    );
    let subject = git(clone.path(), &["log", "-1", "--format=%an|%s"]);
    assert_eq!(subject, "Promoter|Updated repo/apps/prod to use new images");
    let body = git(clone.path(), &["log", "-1", "--format=%b"]);
    assert!(
        body.contains(
            "- repo/apps/prod/deployment.yaml:10 flux-system:app: ghcr.io/acme/app:1.4.0"
        ),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_remote_clone_update_commit_push() {
    let tmp = TempDir::new().unwrap();
    let bare = tmp.path().join("gitops.git");
    clone_update_commit_push(
        format!("file://{}", bare.display()),
        &bare,
        Arc::new(NoCredentials),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_remote_clone_update_commit_push() {
    let Some(v) = server_envs(
        "http_remote_clone_update_commit_push",
        &[
            "TEST_GIT_ROOT",
            "TEST_GIT_HTTP_URL",
            "TEST_GIT_HTTP_USER",
            "TEST_GIT_HTTP_PASSWORD",
        ],
    ) else {
        return;
    };
    let name = format!(
        "flux-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let creds = StaticCredentials::new().with(CredentialKind::Git, &v[1], &v[2], &v[3]);
    clone_update_commit_push(
        format!("{}/{name}.git", v[1]),
        &Path::new(&v[0]).join(format!("{name}.git")),
        Arc::new(creds),
    )
    .await;
}
