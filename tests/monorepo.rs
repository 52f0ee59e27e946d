//! Many Warehouses and Stages on one GitOps repository (issue 19), over the real
//! smart-HTTP git server `ci/test.sh` starts:
//! - 57 Warehouses, one per app directory, subscribed to one repository; a push touching
//!   three apps and one request to refresh all 57 (a webhook whose payload names no files)
//!   cost one `ls-remote`, one fetch and one tree diff, and exactly the three affected
//!   Warehouses get new Freight;
//! - 57 Stages, one per app, promoting into `main` of that repository at once: every
//!   commit lands, one per Stage, each changing only its Stage's file, in far fewer pushes
//!   than Stages.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::StepRegistry;
use kargo::service::{RefreshRequest, Service, ServiceOptions};
use kargo::sources::git::GitSource;
use kargo::steps::{BuiltinOptions, register_builtins_with};

const APPS: usize = 57;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
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
}

fn manifests(url: &str) -> String {
    let mut m = String::from(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: mono}\n",
    );
    for i in 0..APPS {
        m.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {{name: app-{i}, namespace: mono}}\nspec:\n  interval: 24h\n  subscriptions:\n  - git: {{repoURL: \"{url}\", includePaths: [apps/app-{i}]}}\n"
        ));
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_one_fetch_and_only_the_affected_warehouses_move() {
    let test = "one_push_one_fetch_and_only_the_affected_warehouses_move";
    let (Some(http), Some(root)) = (
        kargo_core::testing::server_env(test, "TEST_GIT_HTTP_URL"),
        kargo_core::testing::server_env(test, "TEST_GIT_ROOT"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..APPS {
        let dir = work.join(format!("apps/app-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("values.yaml"), "tag: v0\n").unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "all apps"]);
    // A repository on the real smart-HTTP server (which serves `TEST_GIT_ROOT`).
    let name = format!("monorepo-{}", std::process::id());
    let bare = Path::new(&root).join(format!("{name}.git"));
    let _ = std::fs::remove_dir_all(&bare);
    git(
        tmp.path(),
        &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
    );
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let url = format!("{http}/{name}.git");

    let source = GitSource::new(kargo::git::GitConfig::new(tmp.path().join("cache")));
    let mut sources = SourceRegistry::new();
    sources.register(source.clone()).unwrap();
    let controller = Controller::new(
        ManifestSet::from_yaml_str("mono.yaml", &manifests(&url)).unwrap(),
        "mono",
        sources,
        Runner::new(StepRegistry::new()),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    handle.wait_until_sleeping(1).await;
    let first = controller.state().await.unwrap();
    assert_eq!(first.freight.len(), APPS, "one Freight per Warehouse");
    let before = source.stats();
    // The first pass looked at the repository once and fetched it once.
    assert_eq!(before.ls_remotes, 1, "{before:?}");
    assert_eq!(before.fetches, 1, "{before:?}");

    // One commit touching apps 5, 23 and 51, pushed; then a request to refresh every
    // Warehouse on the repository, as a push webhook without file lists asks.
    for i in [5, 23, 51] {
        std::fs::write(work.join(format!("apps/app-{i}/values.yaml")), "tag: v1\n").unwrap();
    }
    git(&work, &["commit", "-q", "-am", "three apps"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let passes = handle.status().passes;
    let all: Vec<String> = (0..APPS).map(|i| format!("app-{i}")).collect();
    assert!(handle.request(RefreshRequest::new(all, "push webhook")));
    handle.wait_until_sleeping(passes + 1).await;

    let after = source.stats();
    assert_eq!(after.ls_remotes - before.ls_remotes, 1, "{after:?}");
    assert_eq!(after.fetches - before.fetches, 1, "{after:?}");
    assert_eq!(after.tree_diffs - before.tree_diffs, 1, "{after:?}");
    assert_eq!(
        after.shared_ls_remotes - before.shared_ls_remotes,
        APPS as u64 - 1
    );
    let state = controller.state().await.unwrap();
    assert_eq!(state.freight.len(), APPS + 3, "three new Freight");
    let moved: Vec<&str> = state
        .warehouses
        .iter()
        .filter(|(name, w)| w.last_freight != first.warehouses[*name].last_freight)
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(moved, ["app-23", "app-5", "app-51"]);
    let _ = stop.send(());
    run.await.unwrap();
}

/// The Stages' manifests: per app, a Stage taking its Warehouse's Freight and writing the
/// Freight's name into `env/app-<i>/values.yaml` (outside every Warehouse's paths, so a
/// promotion never makes new Freight); auto-promotion on; the push credentials as a
/// Kargo credential Secret.
fn stage_manifests(url: &str, user: &str, password: &str) -> String {
    let mut m = format!(
        "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\nmetadata: {{name: mono, namespace: mono}}\nspec:\n  promotionPolicies:\n  - stageSelector: {{name: \"glob:*\"}}\n    autoPromotionEnabled: true\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: gitops\n  namespace: mono\n  labels: {{kargo.akuity.io/cred-type: git}}\nstringData: {{repoURL: \"{url}\", username: \"{user}\", password: \"{password}\"}}\n"
    );
    for i in 0..APPS {
        m.push_str(&format!(
            r#"---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: app-{i}, namespace: mono}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app-{i}}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: "{url}"
          checkout: [{{branch: main, path: ./repo}}]
      - uses: yaml-update
        as: values
        config:
          path: ./repo/env/app-{i}/values.yaml
          updates: [{{key: freight, value: "${{{{ ctx.targetFreight.name }}}}"}}]
      - uses: git-commit
        config: {{path: ./repo, message: "promote app-{i}"}}
      - uses: git-push
        config: {{path: ./repo}}
"#
        ));
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_seven_stages_promoting_into_one_branch_all_land() {
    let test = "fifty_seven_stages_promoting_into_one_branch_all_land";
    let vars: Vec<String> = [
        "TEST_GIT_HTTP_URL",
        "TEST_GIT_ROOT",
        "TEST_GIT_HTTP_USER",
        "TEST_GIT_HTTP_PASSWORD",
    ]
    .iter()
    .filter_map(|v| kargo_core::testing::server_env(test, v))
    .collect();
    let [http, root, user, password] = vars.as_slice() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..APPS {
        for dir in [format!("apps/app-{i}"), format!("env/app-{i}")] {
            let dir = work.join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("values.yaml"), "freight: none\n").unwrap();
        }
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "all apps"]);
    let name = format!("monorepo-stages-{}", std::process::id());
    let bare = Path::new(root).join(format!("{name}.git"));
    let _ = std::fs::remove_dir_all(&bare);
    git(
        tmp.path(),
        &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
    );
    // The server's reflog of `main` counts the pushes.
    git(&bare, &["config", "core.logAllRefUpdates", "always"]);
    let url = format!("{http}/{name}.git");

    // One cache for the Warehouses and the Stages' git steps.
    let cache = tmp.path().join("cache");
    let mut sources = SourceRegistry::new();
    sources
        .register(GitSource::new(kargo::git::GitConfig::new(&cache)))
        .unwrap();
    let mut steps = StepRegistry::new();
    register_builtins_with(&mut steps, &BuiltinOptions::new(&cache)).unwrap();
    let all = format!(
        "{}{}",
        manifests(&url),
        stage_manifests(&url, user, password)
    );
    let controller = Controller::new(
        ManifestSet::from_yaml_str("mono.yaml", &all).unwrap(),
        "mono",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap()
    .with_work_root(tmp.path().join("promotions"))
    .with_promotion_concurrency(APPS);
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let handle = service.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    let started = std::time::Instant::now();
    let state = loop {
        let state = controller.state().await.unwrap();
        let done = state
            .stages
            .values()
            .filter(|s| s.current().is_some())
            .count();
        if done == APPS {
            break state;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "{done} of {APPS} Stages promoted"
        );
        handle.wait_until_sleeping(handle.status().passes + 1).await;
    };
    let _ = stop.send(());
    run.await.unwrap();

    // Every Stage's commit is on the remote once, changing only its file, to its Freight.
    let log = git(&bare, &["log", "--format=%H %s", "main"]);
    let promotions: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, subject)| subject.starts_with("promote app-"))
        .collect();
    assert_eq!(promotions.len(), APPS, "{log}");
    for (id, subject) in &promotions {
        let app = subject.trim_start_matches("promote ");
        let changed = git(
            &bare,
            &["diff-tree", "--no-commit-id", "--name-only", "-r", id],
        );
        assert_eq!(
            changed.trim(),
            format!("env/{app}/values.yaml"),
            "{subject}"
        );
        let freight = state.stages[app]
            .current()
            .and_then(|c| c.items.values().next())
            .map(|r| r.name.to_string())
            .unwrap();
        assert_eq!(
            git(&bare, &["show", &format!("{id}:env/{app}/values.yaml")]),
            format!("freight: {freight}\n"),
            "{subject}"
        );
    }
    // Far fewer pushes than Stages: promotions that were ready together shared one.
    let pushes = git(&bare, &["reflog", "show", "--format=%H", "main"])
        .lines()
        .count();
    assert!(pushes < APPS / 2, "{pushes} pushes for {APPS} Stages");
    eprintln!(
        "{APPS} Stages promoted in {:?} with {pushes} pushes",
        started.elapsed()
    );
}
