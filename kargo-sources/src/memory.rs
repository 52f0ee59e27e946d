//! An in-memory artifact source for tests and examples.
//!
//! One [`MemorySource`] holds image references, chart versions and git commits keyed by
//! repository URL, newest published first, and can be changed at runtime (clones share the
//! same state). Discovery applies Kargo's selection to them as the real sources do (tag
//! filters, the image and commit selection strategies, semver constraints, limits; an
//! unknown repository is `NotFound`), so a Warehouse behaves the same against it as
//! against a registry; see each source's `discover` for what is not modelled. [`MemorySource::register_into`] registers it under the `image`, `chart` and
//! `git` subscription kinds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kargo_core::model::{
    ChartSubscription, CommitSelectionStrategy, GitSubscription, ImageSelectionStrategy,
    ImageSubscription,
};
use kargo_core::source::{
    DiscoveredCommit, DiscoveredImage, Discovery, DiscoveryContext, Source, SourceError,
    SourceErrorKind, SourceRegistry,
};

use crate::chart::version::{Constraint, Version, select};
use crate::selection::{TagFilter, order_newest_build, select_lexical, select_semver};
use kargo_core::step::DuplicateStep;

#[derive(Debug, Default)]
struct State {
    images: HashMap<String, Vec<DiscoveredImage>>,
    charts: HashMap<(String, String), Vec<String>>,
    commits: HashMap<String, Vec<DiscoveredCommit>>,
}

/// In-memory artifacts by repository URL, newest published first. Cloning shares the state.
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

    /// Replaces the image references of `repo_url` (newest published first).
    pub fn set_images(&self, repo_url: &str, references: Vec<DiscoveredImage>) {
        self.lock().images.insert(repo_url.to_owned(), references);
    }

    /// Publishes an image reference to `repo_url` (the newest one; a tag published again
    /// hides its older reference, as retagging does).
    pub fn push_image(&self, repo_url: &str, reference: DiscoveredImage) {
        self.lock()
            .images
            .entry(repo_url.to_owned())
            .or_default()
            .insert(0, reference);
    }

    /// Replaces the versions of chart `name` (empty for OCI) in `repo_url` (newest published first).
    pub fn set_chart_versions(&self, repo_url: &str, name: &str, versions: Vec<String>) {
        self.lock()
            .charts
            .insert((repo_url.to_owned(), name.to_owned()), versions);
    }

    /// Publishes a chart version (the newest one).
    pub fn push_chart_version(&self, repo_url: &str, name: &str, version: &str) {
        self.lock()
            .charts
            .entry((repo_url.to_owned(), name.to_owned()))
            .or_default()
            .insert(0, version.to_owned());
    }

    /// Replaces the commits of `repo_url` (newest first).
    pub fn set_commits(&self, repo_url: &str, commits: Vec<DiscoveredCommit>) {
        self.lock().commits.insert(repo_url.to_owned(), commits);
    }

    /// Adds a commit as the newest one of `repo_url`.
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

fn not_found(kind: &str, repo: &str) -> SourceError {
    SourceError::new(
        SourceErrorKind::NotFound,
        format!("{kind} repository {repo} not found in the in-memory source"),
    )
}

fn invalid(message: String) -> SourceError {
    SourceError::new(SourceErrorKind::InvalidConfig, message)
}

fn constraint(field: &str, repo: &str, text: &str) -> Result<Option<Constraint>, SourceError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    Constraint::parse(text)
        .map(Some)
        .map_err(|e| invalid(format!("{repo}: {field}: {e}")))
}

fn tag_filter(repo: &str, allow: &[String], ignore: &[String]) -> Result<TagFilter, SourceError> {
    TagFilter::new(allow, ignore).map_err(|e| invalid(format!("{repo}: {e}")))
}

/// Picks `selected` (tags, best first) out of `items` (newest published first), the first
/// item of each tag.
fn pick<T: Clone>(items: &[T], selected: &[String], tag: impl Fn(&T) -> &str) -> Vec<T> {
    selected
        .iter()
        .filter_map(|t| items.iter().find(|i| tag(i) == t.as_str()).cloned())
        .collect()
}

fn dedup_tags<T>(items: &[T], tag: impl Fn(&T) -> &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .map(|i| tag(i).to_owned())
        .filter(|t| !t.is_empty() && seen.insert(t.clone()))
        .collect()
}

#[async_trait]
impl Source for MemoryImages {
    const KIND: &'static str = "image";
    type Config = ImageSubscription;

    /// Applies the subscription's tag filter and selection strategy (as an image registry
    /// would be read) to the references of the repository; an unknown repository is
    /// `NotFound`. `platform` is recorded but not checked (in-memory references have no
    /// platforms).
    async fn discover(
        &self,
        _ctx: &DiscoveryContext,
        config: &ImageSubscription,
    ) -> Result<Discovery, SourceError> {
        let repo = &config.repo_url;
        let refs = self
            .0
            .lock()
            .images
            .get(repo)
            .cloned()
            .ok_or_else(|| not_found("image", repo))?;
        let filter = tag_filter(
            repo,
            &config.allow_tags_regexes,
            &config.ignore_tags_regexes,
        )?;
        let tags = dedup_tags(&refs, |r| r.tag.as_str());
        let selected = match config.image_selection_strategy {
            ImageSelectionStrategy::SemVer => {
                let c = constraint("constraint", repo, &config.constraint)?;
                select_semver(&tags, &filter, config.strict_semvers, c.as_ref())
            }
            ImageSelectionStrategy::Lexical => select_lexical(&tags, &filter),
            ImageSelectionStrategy::NewestBuild => {
                let candidates = tags
                    .iter()
                    .filter(|t| filter.matches(t))
                    .map(|t| {
                        let created = refs.iter().find(|r| &r.tag == t).and_then(|r| r.created_at);
                        (t.clone(), created)
                    })
                    .collect();
                order_newest_build(candidates)
            }
            ImageSelectionStrategy::Digest => {
                if config.constraint.is_empty() {
                    return Err(invalid(format!(
                        "{repo}: the Digest strategy needs constraint (the tag to follow)"
                    )));
                }
                tags.into_iter()
                    .filter(|t| *t == config.constraint)
                    .collect()
            }
        };
        Ok(Discovery::Images {
            repo_url: config.repo_url.clone(),
            platform: (!config.platform.is_empty()).then(|| config.platform.clone()),
            references: truncate(
                pick(&refs, &selected, |r| r.tag.as_str()),
                config.discovery_limit,
            ),
            rejected: Vec::new(),
        })
    }
}

#[async_trait]
impl Source for MemoryCharts {
    const KIND: &'static str = "chart";
    type Config = ChartSubscription;

    /// Versions parsed leniently, filtered by `semverConstraint`, sorted descending (as a
    /// classic chart repository is read); an unknown repository or chart is `NotFound`.
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
            .ok_or_else(|| not_found("chart", &config.repo_url))?;
        let c = constraint(
            "semverConstraint",
            &config.repo_url,
            &config.semver_constraint,
        )?;
        let parsed = versions
            .iter()
            .filter_map(|v| Version::parse_lenient(v).ok())
            .collect();
        Ok(Discovery::Charts {
            repo_url: config.repo_url.clone(),
            name: config.name.clone(),
            versions: select(parsed, c.as_ref(), config.discovery_limit as usize),
        })
    }
}

#[async_trait]
impl Source for MemoryGit {
    const KIND: &'static str = "git";
    type Config = GitSubscription;

    /// `NewestFromBranch`: the commits as stored (newest first). Tag strategies: the commits
    /// that carry a tag, filtered by the tag regexes and ordered by the strategy (`SemVer`
    /// with `semverConstraint`, `Lexical`, `NewestTag` by creator date). An unknown
    /// repository is `NotFound`. Path filters and `expressionFilter` are not applied.
    async fn discover(
        &self,
        _ctx: &DiscoveryContext,
        config: &GitSubscription,
    ) -> Result<Discovery, SourceError> {
        let repo = &config.repo_url;
        let commits = self
            .0
            .lock()
            .commits
            .get(repo)
            .cloned()
            .ok_or_else(|| not_found("git", repo))?;
        let commits = match config.commit_selection_strategy {
            CommitSelectionStrategy::NewestFromBranch => commits,
            strategy => {
                let filter = tag_filter(
                    repo,
                    &config.allow_tags_regexes,
                    &config.ignore_tags_regexes,
                )?;
                let tags = dedup_tags(&commits, |c| c.tag.as_str());
                let selected = match strategy {
                    CommitSelectionStrategy::SemVer => {
                        let c = constraint("semverConstraint", repo, &config.semver_constraint)?;
                        select_semver(&tags, &filter, config.strict_semvers, c.as_ref())
                    }
                    CommitSelectionStrategy::Lexical => select_lexical(&tags, &filter),
                    _ => {
                        let mut tagged: Vec<&DiscoveredCommit> = commits
                            .iter()
                            .filter(|c| !c.tag.is_empty() && filter.matches(&c.tag))
                            .collect();
                        // Stable: equal dates keep the stored (newest first) order.
                        tagged.sort_by_key(|c| std::cmp::Reverse(c.creator_date));
                        dedup_tags(&tagged, |c| c.tag.as_str())
                    }
                };
                pick(&commits, &selected, |c| c.tag.as_str())
            }
        };
        Ok(Discovery::Commits {
            repo_url: config.repo_url.clone(),
            commits: truncate(commits, config.discovery_limit),
        })
    }
}
