//! An in-memory artifact source for tests and examples.
//!
//! One [`MemorySource`] holds image references, chart versions and git commits keyed by
//! repository URL, best first, and can be changed at runtime (clones share the same
//! state). [`MemorySource::register_into`] registers it under the `image`, `chart` and
//! `git` subscription kinds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kargo_core::model::{ChartSubscription, GitSubscription, ImageSubscription};
use kargo_core::source::{
    DiscoveredCommit, DiscoveredImage, Discovery, DiscoveryContext, Source, SourceError,
    SourceRegistry,
};
use kargo_core::step::DuplicateStep;

#[derive(Debug, Default)]
struct State {
    images: HashMap<String, Vec<DiscoveredImage>>,
    charts: HashMap<(String, String), Vec<String>>,
    commits: HashMap<String, Vec<DiscoveredCommit>>,
}

/// In-memory artifacts by repository URL, best first. Cloning shares the state.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    state: Arc<Mutex<State>>,
}

/// A discovered image with a tag and digest and nothing else.
pub fn image(tag: &str, digest: &str) -> DiscoveredImage {
    DiscoveredImage {
        tag: tag.to_owned(),
        digest: digest.to_owned(),
        annotations: Default::default(),
        created_at: None,
    }
}

/// A discovered commit with an ID and subject and nothing else.
pub fn commit(id: &str, subject: &str) -> DiscoveredCommit {
    DiscoveredCommit {
        id: id.to_owned(),
        branch: String::new(),
        tag: String::new(),
        subject: subject.to_owned(),
        author: String::new(),
        committer: String::new(),
        creator_date: None,
    }
}

fn truncate<T>(mut v: Vec<T>, limit: u32) -> Vec<T> {
    if limit > 0 {
        v.truncate(limit as usize);
    }
    v
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the image references of `repo_url` (best first).
    pub fn set_images(&self, repo_url: &str, references: Vec<DiscoveredImage>) {
        self.lock().images.insert(repo_url.to_owned(), references);
    }

    /// Adds an image reference as the new best one of `repo_url`.
    pub fn push_image(&self, repo_url: &str, reference: DiscoveredImage) {
        self.lock()
            .images
            .entry(repo_url.to_owned())
            .or_default()
            .insert(0, reference);
    }

    /// Replaces the versions of chart `name` (empty for OCI) in `repo_url` (best first).
    pub fn set_chart_versions(&self, repo_url: &str, name: &str, versions: Vec<String>) {
        self.lock()
            .charts
            .insert((repo_url.to_owned(), name.to_owned()), versions);
    }

    /// Adds a chart version as the new best one.
    pub fn push_chart_version(&self, repo_url: &str, name: &str, version: &str) {
        self.lock()
            .charts
            .entry((repo_url.to_owned(), name.to_owned()))
            .or_default()
            .insert(0, version.to_owned());
    }

    /// Replaces the commits of `repo_url` (best first).
    pub fn set_commits(&self, repo_url: &str, commits: Vec<DiscoveredCommit>) {
        self.lock().commits.insert(repo_url.to_owned(), commits);
    }

    /// Adds a commit as the new best one of `repo_url`.
    pub fn push_commit(&self, repo_url: &str, commit: DiscoveredCommit) {
        self.lock()
            .commits
            .entry(repo_url.to_owned())
            .or_default()
            .insert(0, commit);
    }

    /// Removes everything known about `repo_url` (all kinds).
    pub fn clear_repo(&self, repo_url: &str) {
        let mut s = self.lock();
        s.images.remove(repo_url);
        s.commits.remove(repo_url);
        s.charts.retain(|(r, _), _| r != repo_url);
    }

    /// The `image` source view.
    pub fn images(&self) -> MemoryImages {
        MemoryImages(self.clone())
    }

    /// The `chart` source view.
    pub fn charts(&self) -> MemoryCharts {
        MemoryCharts(self.clone())
    }

    /// The `git` source view.
    pub fn git(&self) -> MemoryGit {
        MemoryGit(self.clone())
    }

    /// Registers this source under `image`, `chart` and `git`.
    pub fn register_into(&self, registry: &mut SourceRegistry) -> Result<(), DuplicateStep> {
        registry.register(self.images())?;
        registry.register(self.charts())?;
        registry.register(self.git())?;
        Ok(())
    }
}

/// [`MemorySource`] serving `image` subscriptions.
#[derive(Debug, Clone)]
pub struct MemoryImages(MemorySource);

/// [`MemorySource`] serving `chart` subscriptions.
#[derive(Debug, Clone)]
pub struct MemoryCharts(MemorySource);

/// [`MemorySource`] serving `git` subscriptions.
#[derive(Debug, Clone)]
pub struct MemoryGit(MemorySource);

#[async_trait]
impl Source for MemoryImages {
    const KIND: &'static str = "image";
    type Config = ImageSubscription;

    async fn discover(
        &self,
        _ctx: &DiscoveryContext,
        config: &ImageSubscription,
    ) -> Result<Discovery, SourceError> {
        let refs = self
            .0
            .lock()
            .images
            .get(&config.repo_url)
            .cloned()
            .unwrap_or_default();
        Ok(Discovery::Images {
            repo_url: config.repo_url.clone(),
            platform: (!config.platform.is_empty()).then(|| config.platform.clone()),
            references: truncate(refs, config.discovery_limit),
        })
    }
}

#[async_trait]
impl Source for MemoryCharts {
    const KIND: &'static str = "chart";
    type Config = ChartSubscription;

    async fn discover(
        &self,
        _ctx: &DiscoveryContext,
        config: &ChartSubscription,
    ) -> Result<Discovery, SourceError> {
        let versions = self
            .0
            .lock()
            .charts
            .get(&(config.repo_url.clone(), config.name.clone()))
            .cloned()
            .unwrap_or_default();
        Ok(Discovery::Charts {
            repo_url: config.repo_url.clone(),
            name: config.name.clone(),
            versions: truncate(versions, config.discovery_limit),
        })
    }
}

#[async_trait]
impl Source for MemoryGit {
    const KIND: &'static str = "git";
    type Config = GitSubscription;

    async fn discover(
        &self,
        _ctx: &DiscoveryContext,
        config: &GitSubscription,
    ) -> Result<Discovery, SourceError> {
        let commits = self
            .0
            .lock()
            .commits
            .get(&config.repo_url)
            .cloned()
            .unwrap_or_default();
        Ok(Discovery::Commits {
            repo_url: config.repo_url.clone(),
            commits: truncate(commits, config.discovery_limit),
        })
    }
}
