//! Quickstart: load Kargo manifests, make Freight for a new image, and promote it to the
//! `dev` Stage of a GitOps directory, with no setup and no network.
//!
//! Run: `cargo run --example quickstart`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use async_trait::async_trait;
use kargo::core::freight::{
    AliasGenerator, Freight, FreightCollection, FreightOrigin, FreightReference, Image,
};
use kargo::core::loader::ManifestSet;
use kargo::core::runner::{Promotion, Runner, plan_stage};
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::core::validate::validate;
use kargo::core::workdir::WorkDir;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: acme}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: backend, namespace: acme}
spec:
  subscriptions:
  - image:
      repoURL: ghcr.io/acme/backend
      allowTagsRegexes: ["^[a-f0-9]{8}$"]
      imageSelectionStrategy: NewestBuild
---
apiVersion: kargo.akuity.io/v1alpha1
kind: PromotionTask
metadata: {name: set-image, namespace: acme}
spec:
  vars:
  - name: overlay
  - name: image
    value: ghcr.io/acme/backend
  steps:
  - uses: set-line
    as: tag
    config:
      path: ./gitops/${{ vars.overlay }}/values.yaml
      prefix: "  tag: "
      value: ${{ quote(imageFrom(vars.image).Tag) }}
  - uses: compose-output
    as: out
    config:
      commitMessage: "Promote ${{ vars.image }}:${{ task.outputs.tag.value }} to ${{ ctx.stage }}"
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: acme}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: backend}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - task: {name: set-image}
        as: update
        vars:
        - name: overlay
          value: applications/overlays/${{ ctx.stage }}/backend
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: acme}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: backend}
    sources: {stages: [dev], requiredSoakTime: 1h}
  promotionTemplate:
    spec:
      steps:
      - task: {name: set-image}
        vars:
        - name: overlay
          value: applications/overlays/prod/backend
"#;

/// A custom step: replaces the value of the line starting with `prefix` in a file.
/// (kargo-steps' `yaml-update` does this format-preservingly for any key path.)
struct SetLine;

#[derive(serde::Deserialize)]
struct SetLineConfig {
    path: String,
    prefix: String,
    value: String,
}

#[async_trait]
impl Step for SetLine {
    const KIND: &'static str = "set-line";
    type Config = SetLineConfig;

    async fn run(&self, ctx: &StepContext, cfg: SetLineConfig) -> Result<StepOutcome, StepError> {
        let path = ctx.path(&cfg.path)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StepError::terminal(format!("cannot read {}: {e}", cfg.path)))?;
        let mut found = false;
        let edited: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with(&cfg.prefix) {
                    found = true;
                    format!("{}\"{}\"", cfg.prefix, cfg.value)
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if !found {
            return Err(StepError::failed(format!(
                "no line starts with {:?} in {}",
                cfg.prefix, cfg.path
            )));
        }
        std::fs::write(&path, edited.join("\n") + "\n")
            .map_err(|e| StepError::terminal(format!("cannot write {}: {e}", cfg.path)))?;
        Ok(StepOutcome::succeeded().with_output("value", cfg.value))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The manifests load and validate (templates compile, steps exist, tasks inflate).
    let set = ManifestSet::from_yaml_str("acme.yaml", MANIFESTS)?;
    let mut registry = StepRegistry::new();
    kargo::steps::register_builtins(&mut registry)?;
    registry.register(SetLine)?;
    let runner = Runner::new(registry);
    validate(&set, runner.engine(), Some(runner.registry()))?;

    // 2. CI pushed backend:3f9a2c1d; the Warehouse packs it into Freight.
    let freight = Freight::new(
        FreightOrigin::warehouse("backend"),
        vec![],
        vec![Image {
            repo_url: "ghcr.io/acme/backend".into(),
            tag: "3f9a2c1d".into(),
            digest: "sha256:7d6c3f1a9b0e4c2d8f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80912"
                .into(),
            ..Image::default()
        }],
        vec![],
        vec![],
    );
    let alias = AliasGenerator::default().generate(&freight.name, |_| false);
    println!("Freight {} ({alias}) from {}", freight.name, freight.origin);

    // 3. A GitOps checkout (a temporary directory here).
    let work = tempfile::tempdir()?;
    let values = work
        .path()
        .join("gitops/applications/overlays/dev/backend/values.yaml");
    std::fs::create_dir_all(values.parent().ok_or("no parent")?)?;
    std::fs::write(
        &values,
        "image:\n  repository: ghcr.io/acme/backend\n  tag: \"1.0.0\"\n",
    )?;

    // 4. Promote to dev.
    let plan = plan_stage(&set, "acme", "dev")?;
    let target = FreightReference::from(&freight);
    let mut collection = FreightCollection::default();
    collection.insert(target.clone());
    let mut promotion =
        Promotion::from_plan(&plan, WorkDir::new(work.path())?, collection, Some(target));
    promotion.target_freight_alias = Some(alias);
    promotion.secrets = Arc::new(std::collections::BTreeMap::<
        String,
        std::collections::BTreeMap<String, String>,
    >::new());
    let result = runner.run(&promotion).await;

    println!("Promotion {}: {}", promotion.name, result.phase);
    for step in &result.steps {
        println!("  {:<14} {:<16} {:?}", step.alias, step.uses, step.status);
    }
    println!(
        "Commit message: {}",
        result.state["update"]["commitMessage"]
    );
    print!("values.yaml:\n{}", std::fs::read_to_string(&values)?);
    if result.phase != kargo::core::PromotionPhase::Succeeded {
        return Err(format!("promotion ended {}: {:?}", result.phase, result.message).into());
    }
    Ok(())
}
