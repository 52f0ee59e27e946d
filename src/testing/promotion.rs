//! [`PromotionTest`]: one Stage's promotion, run offline against the fixture repository.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kargo_core::Runner;
use kargo_core::freight::{
    Chart, Freight, FreightCollection, FreightOrigin, FreightReference, GitCommit, Image,
};
use kargo_core::loader::ManifestSet;
use kargo_core::model::Resource;
use kargo_core::runner::{Promotion, PromotionPhase, PromotionResult, plan_stage};
use kargo_core::step::{DynStep, Step, StepRegistry};
use kargo_core::workdir::WorkDir;
use kargo_git::{FetchSpec, Git, GitConfig, NoAuth, ObjectId};
use kargo_steps::{BuiltinOptions, register_builtins_with};

use super::fixture::{Fixture, inspect_config, seed_fixture, test_git_config, tree_files};
use super::{GITOPS_URL, TestError, io};

/// A promotion to run offline (see the module documentation).
pub struct PromotionTest {
    manifests: String,
    project: Option<String>,
    stage: Option<String>,
    freight: Vec<Freight>,
    images: Vec<Image>,
    charts: Vec<Chart>,
    commits: Vec<GitCommit>,
    gitops_dir: Option<PathBuf>,
    placeholder: String,
    steps: Vec<Arc<dyn DynStep>>,
    actor: Option<String>,
    dry_run: bool,
}

impl std::fmt::Debug for PromotionTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromotionTest")
            .field("project", &self.project)
            .field("stage", &self.stage)
            .field("gitops_dir", &self.gitops_dir)
            .finish_non_exhaustive()
    }
}

impl PromotionTest {
    /// A test of `manifests` (a multi-document YAML string).
    pub fn new(manifests: impl Into<String>) -> Self {
        Self {
            manifests: manifests.into(),
            project: None,
            stage: None,
            freight: Vec::new(),
            images: Vec::new(),
            charts: Vec::new(),
            commits: Vec::new(),
            gitops_dir: None,
            placeholder: GITOPS_URL.to_owned(),
            steps: Vec::new(),
            actor: None,
            dry_run: false,
        }
    }

    /// The project (default: the namespace of the only Stage with the given name).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// The Stage to promote (required).
    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// Adds a whole piece of Freight (one per origin; a later one of the same origin
    /// replaces an earlier one).
    pub fn freight(mut self, freight: Freight) -> Self {
        self.freight.push(freight);
        self
    }

    /// Adds an image to the Freight built for the Stage's first requested origin.
    pub fn image(mut self, repo_url: impl Into<String>, tag: impl Into<String>) -> Self {
        self.images.push(Image {
            repo_url: repo_url.into(),
            tag: tag.into(),
            ..Image::default()
        });
        self
    }

    /// Adds a chart (`name` empty for OCI charts) to the Freight built for the Stage's
    /// first requested origin.
    pub fn chart(
        mut self,
        repo_url: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        self.charts.push(Chart {
            repo_url: repo_url.into(),
            name: name.into(),
            version: version.into(),
            ..Chart::default()
        });
        self
    }

    /// Adds a git commit to the Freight built for the Stage's first requested origin.
    pub fn commit(mut self, repo_url: impl Into<String>, id: impl Into<String>) -> Self {
        self.commits.push(GitCommit {
            repo_url: repo_url.into(),
            id: id.into(),
            ..GitCommit::default()
        });
        self
    }

    /// The fixture directory that becomes the GitOps repository (its files, on `main`).
    pub fn gitops_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.gitops_dir = Some(dir.into());
        self
    }

    /// The placeholder URL replaced in the manifests (default [`GITOPS_URL`]).
    pub fn gitops_url(mut self, placeholder: impl Into<String>) -> Self {
        self.placeholder = placeholder.into();
        self
    }

    /// Registers a custom step besides the built-in ones.
    pub fn step<S: Step>(mut self, step: S) -> Self {
        self.steps.push(Arc::new(step));
        self
    }

    /// Who promotes (`ctx.meta.promotion.actor`).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Runs the promotion as a dry run (nothing is pushed; see
    /// [`Promotion::dry_run`]): the outcome's `files`, `diffs` and `commits` then describe
    /// what would have been pushed, from the dry-run log.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Runs the promotion.
    pub async fn run(self) -> Result<Outcome, TestError> {
        let tmp = tempfile::Builder::new()
            .prefix("kargo-promotion-test-")
            .tempdir()
            .map_err(io("cannot create a temporary directory"))?;
        let git_config = test_git_config(&tmp.path().join("git-cache"));

        // The fixture repository.
        let fixture = match &self.gitops_dir {
            Some(dir) => Some(seed_fixture(
                dir,
                &tmp.path().join("gitops.git"),
                tmp.path(),
            )?),
            None => None,
        };
        let mut manifests = self.manifests.clone();
        if let Some(f) = &fixture {
            manifests = manifests.replace(&self.placeholder, &f.url);
        }
        manifests.push_str(&self.missing_warehouses(&manifests));
        let set = ManifestSet::from_yaml_str("manifests.yaml", &manifests)?;

        // The plan and the Freight.
        let stage = self.stage.clone().ok_or(TestError::NoStage)?;
        let project = match &self.project {
            Some(p) => p.clone(),
            None => project_of(&set, &stage)?,
        };
        let plan = plan_stage(&set, &project, &stage)?;
        let origin = set
            .stage(&project, &stage)
            .and_then(|s| s.spec.requested_freight.first())
            .map(|r| r.origin.clone())
            .unwrap_or_else(|| FreightOrigin::warehouse("testing"));
        let mut freight = self.freight.clone();
        if !(self.images.is_empty() && self.charts.is_empty() && self.commits.is_empty()) {
            freight.push(Freight::new(
                origin,
                self.commits.clone(),
                self.images.clone(),
                self.charts.clone(),
                Vec::new(),
            ));
        }
        let target = freight.first().map(FreightReference::from);
        let collection: FreightCollection = freight.iter().map(FreightReference::from).collect();

        // The runner: built-in steps with mirrors in the temporary directory, plus ours.
        let mut registry = StepRegistry::new();
        register_builtins_with(&mut registry, &BuiltinOptions::with_git(git_config.clone()))?;
        for s in &self.steps {
            registry.register_dyn(s.clone())?;
        }
        let runner = Runner::new(registry);
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).map_err(io("cannot create the work directory"))?;
        let work_dir = WorkDir::new(&work).map_err(io("cannot use the work directory"))?;
        let mut promotion = Promotion::from_plan(&plan, work_dir, collection, target);
        promotion.actor = self.actor.clone();
        promotion.dry_run = self.dry_run;
        promotion.target_freight_alias = freight.first().and_then(|f| f.alias.clone());
        let result = runner.run(&promotion).await;

        let mut outcome = Outcome {
            files: BTreeMap::new(),
            diffs: BTreeMap::new(),
            commits: Vec::new(),
            branch: None,
            repo_url: fixture.as_ref().map(|f| f.url.clone()),
            result,
        };
        if let Some(f) = fixture {
            if self.dry_run {
                outcome.read_dry_run(&f, &git_config)?;
            } else {
                outcome.read_remote(&f, &git_config)?;
            }
        }
        Ok(outcome)
    }
}

impl PromotionTest {
    /// YAML documents for the Warehouses that Stages request but the manifests do not
    /// define, subscribed to the artifacts given with `image`, `chart` and `commit` (so a
    /// Stage and its tasks are enough to run a test). Empty when the manifests do not parse
    /// (the loader then reports why).
    fn missing_warehouses(&self, manifests: &str) -> String {
        use serde::Deserialize;
        let mut docs = Vec::new();
        for doc in yaml_serde::Deserializer::from_str(manifests) {
            match serde_json::Value::deserialize(doc) {
                Ok(v) => docs.push(v),
                Err(_) => return String::new(),
            }
        }
        let text = |v: &serde_json::Value, p: &str| {
            v.pointer(p)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut defined = std::collections::BTreeSet::new();
        let mut wanted = std::collections::BTreeSet::new();
        for d in &docs {
            let ns = text(d, "/metadata/namespace");
            match d.get("kind").and_then(serde_json::Value::as_str) {
                Some("Warehouse") => {
                    defined.insert((ns, text(d, "/metadata/name")));
                }
                Some("Stage") => {
                    let requests = d
                        .pointer("/spec/requestedFreight")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for r in requests {
                        let kind = text(&r, "/origin/kind");
                        if kind.is_empty() || kind == "Warehouse" {
                            wanted.insert((ns.clone(), text(&r, "/origin/name")));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut subscriptions: Vec<serde_json::Value> = Vec::new();
        for i in &self.images {
            subscriptions.push(serde_json::json!({"image": {"repoURL": i.repo_url}}));
        }
        for c in &self.charts {
            let mut chart = serde_json::json!({"repoURL": c.repo_url});
            if !c.name.is_empty() {
                chart["name"] = c.name.clone().into();
            }
            subscriptions.push(serde_json::json!({ "chart": chart }));
        }
        for c in &self.commits {
            subscriptions.push(serde_json::json!({"git": {"repoURL": c.repo_url}}));
        }
        if subscriptions.is_empty() {
            // A Warehouse needs a subscription; this one is never asked anything.
            subscriptions.push(serde_json::json!({"image": {"repoURL": "example.invalid/none"}}));
        }
        let mut out = String::new();
        for (ns, name) in wanted.difference(&defined) {
            if name.is_empty() {
                continue;
            }
            let doc = serde_json::json!({
                "apiVersion": "kargo.akuity.io/v1alpha1",
                "kind": "Warehouse",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"subscriptions": subscriptions},
            });
            // JSON is YAML.
            out.push_str(&format!("\n---\n{doc}\n"));
        }
        out
    }
}

/// What a [`PromotionTest`] did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every file of the branch the promotion pushed (or, when it pushed none, of the
    /// fixture's `main`), by path, as text (lossy UTF-8).
    pub files: BTreeMap<String, String>,
    /// Per changed file, its unified diff from the fixture to the pushed branch.
    pub diffs: BTreeMap<String, String>,
    /// The messages of the pushed commits, oldest first.
    pub commits: Vec<String>,
    /// The branch that was pushed (when several were, the first by name), if any.
    pub branch: Option<String>,
    /// The fixture repository's URL (`file://...`; gone once the test returns).
    pub repo_url: Option<String>,
    /// The runner's result: phase, steps, outputs.
    pub result: PromotionResult,
}

impl Outcome {
    /// Whether the promotion succeeded.
    pub fn succeeded(&self) -> bool {
        self.result.phase == PromotionPhase::Succeeded
    }

    /// The output `key` of the step `alias`.
    pub fn output(&self, alias: &str, key: &str) -> Option<&serde_json::Value> {
        self.result.state.get(alias).and_then(|o| o.get(key))
    }

    /// Reads what the promotion pushed from the fixture repository.
    fn read_remote(&mut self, f: &Fixture, config: &GitConfig) -> Result<(), TestError> {
        let git = Git::new(inspect_config(config), Arc::new(NoAuth));
        let mirror = git.mirror(&f.url)?;
        let refs = mirror.fetch(&FetchSpec {
            all_branches: true,
            ..FetchSpec::default()
        })?;
        let changed: Vec<(String, ObjectId)> = refs
            .iter()
            .filter_map(|(name, id)| {
                let branch = name.strip_prefix("refs/heads/")?;
                (*id != f.seed).then(|| (branch.to_owned(), *id))
            })
            .collect();
        let tip = match changed.first() {
            Some((branch, id)) => {
                self.branch = Some(branch.clone());
                *id
            }
            None => f.seed,
        };
        self.files = tree_files(&mirror, tip)?;
        for d in mirror.diff_commits(Some(f.seed), tip)? {
            self.diffs.insert(d.path, d.diff);
        }
        let mut messages = Vec::new();
        let seed = f.seed;
        mirror.walk_history(tip, |c| {
            if c.id == seed {
                return Ok(std::ops::ControlFlow::Break(()));
            }
            messages.push(c.message);
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        messages.reverse();
        self.commits = messages;
        Ok(())
    }

    /// Fills the outcome from the dry-run log: the planned commit's tree from the
    /// promotion's mirror cache (where the commit exists).
    fn read_dry_run(&mut self, f: &Fixture, config: &GitConfig) -> Result<(), TestError> {
        let git = Git::new(config.clone(), Arc::new(NoAuth));
        let mirror = git.mirror(&f.url)?;
        let log = self.result.dry_run.clone().unwrap_or_default();
        let push = log.pushes.iter().find(|p| p.repo_url == f.url);
        let tip = match push {
            Some(p) => {
                self.branch = Some(p.branch.clone()).filter(|b| !b.is_empty());
                self.commits = p.commits.iter().map(|(_, m)| m.clone()).collect();
                mirror.resolve(&p.commit)?
            }
            None => f.seed,
        };
        self.files = tree_files(&mirror, tip)?;
        for file in log.files.iter().filter(|x| x.repo_url == f.url) {
            self.diffs.insert(file.path.clone(), file.diff.clone());
        }
        Ok(())
    }
}

/// The project of the only Stage named `stage`.
fn project_of(set: &ManifestSet, stage: &str) -> Result<String, TestError> {
    let mut found = set.resources().filter_map(|(r, _)| match r {
        Resource::Stage(s) if s.metadata.name == stage => s.metadata.namespace.clone(),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some(p), None) => Ok(p),
        _ => Err(TestError::UnknownStage(stage.to_owned())),
    }
}
