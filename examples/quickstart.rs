//! Quickstart: a whole promotion pipeline in one process, with no setup and no network.
//!
//! It makes a temporary GitOps repository (a bare git remote with a `dev` and a `prod`
//! values file), an in-memory registry publishing image tags and a chart version, and a
//! project of Kargo manifests: one Warehouse, a `dev` Stage that auto-promotes, and a
//! `prod` Stage fed only from `dev`. Then it tells the story: Freight is discovered, `dev`
//! gets it automatically, `prod` on request, a new image flows to `dev`, and a rollback
//! puts the previous one back with a new commit.
//!
//! Run: `cargo run --example quickstart` (needs the `git` command, as pushing does).
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kargo::controller::{Controller, PromotionReport, RefreshOutcome};
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::Runner;
use kargo::core::source::{DiscoveredImage, SourceRegistry};
use kargo::core::step::StepRegistry;
use kargo::core::validate::validate;
use kargo::core::{Freight, PromotionPhase};
use kargo::sources::memory::MemorySource;
use kargo::steps::{BuiltinOptions, register_builtins_with};

const IMAGE: &str = "ghcr.io/acme/guestbook";
const CHART: &str = "oci://ghcr.io/acme/charts/guestbook";

/// The project, as a user would keep it in `./kargo/*.yaml`. `GITOPS_URL` is replaced
/// by the temporary repository's URL.
const MANIFESTS: &str = include_str!("fixtures/quickstart.yaml");

const VALUES: &str = r#"# Guestbook in ENV. Kargo-rs changes only the values it promotes:
# comments, quotes and order stay as they are.
replicas: REPLICAS
image:
  repository: ghcr.io/acme/guestbook
  tag: "0.9.0"   # set by promotion
chart:
  version: 0.0.1
"#;

fn git(dir: &Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Platform Team")
        .env("GIT_AUTHOR_EMAIL", "platform@acme.example")
        .env("GIT_COMMITTER_NAME", "Platform Team")
        .env("GIT_COMMITTER_EMAIL", "platform@acme.example")
        .output()
        .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A bare remote `gitops.git` with `env/dev/values.yaml` and `env/prod/values.yaml`.
fn gitops_repo(root: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let seed = root.join("seed");
    for (env, replicas) in [("dev", "1"), ("prod", "3")] {
        let dir = seed.join("env").join(env);
        std::fs::create_dir_all(&dir)?;
        let text = VALUES.replace("ENV", env).replace("REPLICAS", replicas);
        std::fs::write(dir.join("values.yaml"), text)?;
    }
    git(&seed, &["init", "-q", "-b", "main"])?;
    git(&seed, &["add", "."])?;
    git(&seed, &["commit", "-q", "-m", "Initial GitOps layout"])?;
    let bare = root.join("gitops.git");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            "seed",
            bare.to_str().ok_or("path")?,
        ],
    )?;
    Ok(format!("file://{}", bare.display()))
}

fn image(tag: &str, n: u8, created: &str) -> Result<DiscoveredImage, Box<dyn std::error::Error>> {
    Ok(DiscoveredImage {
        tag: tag.to_owned(),
        digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        annotations: Default::default(),
        created_at: Some(created.parse()?),
    })
}

fn describe(f: &Freight) -> String {
    let mut parts: Vec<String> = f
        .images
        .iter()
        .map(|i| format!("{}:{}", i.repo_url, i.tag))
        .collect();
    parts.extend(
        f.charts
            .iter()
            .map(|c| format!("{}@{}", c.repo_url, c.version)),
    );
    format!(
        "{} ({}) = {}",
        f.alias.as_deref().unwrap_or("-"),
        f.name.short(),
        parts.join(" + ")
    )
}

fn show(reports: &[PromotionReport], remote: &Path) -> Result<(), Box<dyn std::error::Error>> {
    for r in reports {
        let why = format!("{:?}", r.request.trigger).to_lowercase();
        println!(
            "   promotion {} ({why}) -> {}",
            r.request.name, r.result.phase
        );
        for s in &r.result.steps {
            println!("     {:<28} {:<14} {:?}", s.alias, s.uses, s.status);
        }
        if r.result.phase != PromotionPhase::Succeeded {
            return Err(format!("promotion failed: {:?}", r.result.message).into());
        }
        let commit = git(remote, &["log", "-1", "--format=%h %s", "main"])?;
        println!("   pushed {}", commit.trim());
        let diff = git(remote, &["diff", "--unified=0", "main~1", "main"])?;
        for line in diff.lines().filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        }) {
            println!("     {line}");
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let url = gitops_repo(tmp.path())?;
    let remote = tmp.path().join("gitops.git");

    // The registry: two builds of the image and one chart version.
    let registry = MemorySource::new();
    registry.set_images(
        IMAGE,
        vec![
            image("1.1.0", 2, "2026-03-02T10:00:00Z")?,
            image("1.0.0", 1, "2026-03-01T10:00:00Z")?,
        ],
    );
    registry.set_chart_versions(CHART, "", vec!["0.4.0".into()]);
    let mut sources = SourceRegistry::new();
    registry.register_into(&mut sources)?;

    // The steps, with git mirrors cached in the temporary directory.
    let mut steps = StepRegistry::new();
    let options = BuiltinOptions::new(tmp.path().join("git-cache"));
    register_builtins_with(&mut steps, &options)?;
    let runner = Runner::new(steps);

    let manifests =
        ManifestSet::from_yaml_str("guestbook.yaml", &MANIFESTS.replace("GITOPS_URL", &url))?;
    validate(&manifests, runner.engine(), Some(runner.registry()))?;
    let kargo = Controller::new(
        manifests,
        "guestbook",
        sources,
        runner,
        Arc::new(MemoryStore::new()),
    )?;

    println!("1. The Warehouse looks at the registry and packs what it finds into Freight.");
    let pass = kargo.reconcile(true).await?;
    for (w, outcome) in &pass.refreshed {
        if let RefreshOutcome::Created(f) = outcome {
            println!("   Warehouse {w}: new Freight {}", describe(f));
        }
    }
    println!("   dev auto-promotes it (prod does not: it only takes Freight verified in dev):");
    show(&pass.promotions, &remote)?;

    println!("\n2. Someone promotes the same Freight to prod by hand.");
    let state = kargo.state().await?;
    let first = state.freight.values().next().ok_or("no Freight")?;
    let alias = first.freight.alias.clone().ok_or("no alias")?;
    show(
        &kargo.promote("prod", &alias, Some("alice".into())).await?,
        &remote,
    )?;

    println!("\n3. CI pushes guestbook:1.2.0; the next pass takes it to dev on its own.");
    registry.push_image(IMAGE, image("1.2.0", 3, "2026-03-03T10:00:00Z")?);
    let pass = kargo.reconcile(true).await?;
    for (w, outcome) in &pass.refreshed {
        if let RefreshOutcome::Created(f) = outcome {
            println!("   Warehouse {w}: new Freight {}", describe(f));
        }
    }
    show(&pass.promotions, &remote)?;

    println!("\n4. 1.2.0 misbehaves in dev: roll dev back (a new commit, history untouched).");
    show(&kargo.rollback("dev", Some("bob".into())).await?, &remote)?;
    println!("   Auto-promotion now holds dev at the rolled-back Freight until someone");
    println!("   promotes the newest Freight again.");

    println!("\n5. The GitOps repository's history:");
    for line in git(&remote, &["log", "--format=%h %s", "main"])?.lines() {
        println!("   {line}");
    }
    let state = kargo.state().await?;
    println!("\nWhere everything is now:");
    for (stage, st) in &state.stages {
        if let Some(c) = st.current() {
            for r in c.references() {
                let f = &state.freight[&r.name].freight;
                println!("   {stage:<5} {}", describe(f));
            }
        }
    }
    Ok(())
}
