//! Embedding kargo-rs in your own tool: the library's service loop with a custom Source (your
//! build system) and a custom Step (your release announcement). `cargo run --example
//! embedding` runs one pass and stops; a real service passes `tokio::signal::ctrl_c()` (or
//! its own shutdown signal) and keeps running.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use std::sync::Arc;

use kargo::core::model::ImageSubscription;
use kargo::core::source::{Discovery, DiscoveryContext, SourceError};
use kargo::prelude::*;

/// Images as your build system knows them (here: one build).
struct BuildSystem;

#[async_trait::async_trait]
impl Source for BuildSystem {
    const KIND: &'static str = "image";
    type Config = ImageSubscription;

    async fn discover(
        &self,
        _: &DiscoveryContext,
        sub: &ImageSubscription,
    ) -> Result<Discovery, SourceError> {
        let references = vec![kargo::sources::memory::image("1.4.2", "sha256:42")];
        Ok(Discovery::Images {
            repo_url: sub.repo_url.clone(),
            platform: None,
            references,
        })
    }
}

/// Announces a release (here: on stdout).
struct Announce;

#[derive(serde::Deserialize)]
struct AnnounceConfig {
    message: String,
}

#[async_trait::async_trait]
impl Step for Announce {
    const KIND: &'static str = "announce";
    type Config = AnnounceConfig;

    async fn run(&self, _: &StepContext, cfg: AnnounceConfig) -> Result<StepOutcome, StepError> {
        println!("announce: {}", cfg.message);
        Ok(StepOutcome::succeeded())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifests =
        ManifestSet::from_yaml_str("embedding.yaml", include_str!("fixtures/embedding.yaml"))?;
    let (mut sources, mut steps) = (SourceRegistry::new(), StepRegistry::new());
    sources.register(BuildSystem)?;
    steps.register(Announce)?;
    let store = Arc::new(MemoryStore::new());
    let controller = Controller::new(manifests, "shop", sources, Runner::new(steps), store)?;
    let service = Service::new(controller, ServiceOptions::default());
    let handle = service.handle();
    // Stop after the first pass; a real service would wait for Ctrl-C here.
    let first_pass = handle.clone();
    service
        .run(async move { first_pass.wait_for_passes(1).await })
        .await;
    let state = handle.controller().state()?;
    println!(
        "dev holds {:?}",
        state.stages["dev"].current().map(|c| c.len())
    );
    Ok(())
}
