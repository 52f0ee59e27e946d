//! Many Warehouses on one GitOps repository (issue 19): 57 Warehouses, one per app
//! directory, subscribed to one repository; a push touching three apps and one request to
//! refresh all 57 (a webhook whose payload names no files) cost one `ls-remote`, one fetch
//! and one tree diff, and exactly the three affected Warehouses get new Freight. Over the
//! real smart-HTTP git server `ci/test.sh` starts.
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
