//! Embedding kargo-rs in your own tool: the library's service loop with a custom Source (your
//! build system) and a custom Step (your release announcement). `cargo run --example
//! embedding` runs one pass and stops; a real service passes `tokio::signal::ctrl_c()` (or
//! its own shutdown signal) to `run` and keeps going.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use kargo::core::model::ImageSubscription as Sub;
use kargo::prelude::*;

/// Images as your build system knows them (here: one build).
struct BuildSystem;

#[async_trait::async_trait]
impl Source for BuildSystem {
    const KIND: &'static str = "image";
    type Config = Sub;
    async fn discover(&self, _: &DiscoveryContext, sub: &Sub) -> Result<Discovery, SourceError> {
        let builds = vec![kargo::sources::memory::image("1.4.2", "sha256:42")];
        Ok(Discovery::images(&sub.repo_url, builds))
    }
}

/// Announces a release (here: on stdout); its config is `message: ...`.
struct Announce;

#[async_trait::async_trait]
impl Step for Announce {
    const KIND: &'static str = "announce";
    type Config = std::collections::BTreeMap<String, String>;
    async fn run(&self, _: &StepContext, cfg: Self::Config) -> Result<StepOutcome, StepError> {
        let message = cfg.get("message").cloned().unwrap_or_default();
        println!("announce: {message}");
        Ok(StepOutcome::succeeded())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut sources, mut steps) = (SourceRegistry::new(), StepRegistry::new());
    sources.register(BuildSystem)?;
    steps.register(Announce)?;
    let store = std::sync::Arc::new(MemoryStore::new());
    let manifests = ManifestSet::from_yaml_str("shop", include_str!("fixtures/embedding.yaml"))?;
    let controller = Controller::new(manifests, "shop", sources, Runner::new(steps), store)?;
    let service = Service::new(controller.clone(), ServiceOptions::default());
    let first_pass = service.handle();
    // Stop after the first pass: a real service would pass its shutdown signal here.
    let stop = async move { first_pass.wait_for_passes(1).await };
    service.run(stop).await;
    let state = controller.state().await?;
    let dev = &state.stages["dev"];
    println!("dev holds collection {:?}", dev.current().map(|c| c.id()));
    Ok(())
}
