//! One call that registers every built-in [`Source`](kargo_core::source::Source): images,
//! charts and git, with their caches and clients built from explicit options. Nothing is
//! read from the environment; credentials reach the sources through each discovery's
//! context (the controller's credential provider) and, for images, an optional Docker
//! `config.json` named in [`ImageSourceOptions::docker_config`].
//!
//! ```
//! let cache = tempfile::tempdir().unwrap();
//! let mut registry = kargo_core::source::SourceRegistry::new();
//! let sources = kargo_sources::builtin::register_builtins(
//!     &mut registry,
//!     &kargo_sources::builtin::SourceOptions::new(cache.path()),
//! ).unwrap();
//! assert_eq!(registry.kinds().collect::<Vec<_>>(), ["chart", "git", "image"]);
//! assert_eq!(sources.image.stats().tag_lists, 0);
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use kargo_core::source::SourceRegistry;
use kargo_core::step::DuplicateStep;
use kargo_git::GitConfig;

use crate::chart::{ChartClientOptions, ChartSource, IndexCache};
use crate::git::GitSource;
use crate::image::{ImageSource, ImageSourceOptions};

/// The settings of the built-in sources.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceOptions {
    /// Git subscriptions: where mirrors are cached (share it with the git steps' cache, so
    /// a repository is fetched once for both).
    pub git: GitConfig,
    /// Image subscriptions: insecure registries, concurrency, rate limit, caches, Docker
    /// `config.json`, timeouts.
    pub image: ImageSourceOptions,
    /// Chart subscriptions: TLS, plain HTTP, timeouts, size limits.
    pub chart: ChartClientOptions,
    /// How many chart repository indexes are kept for revalidation.
    pub chart_index_cache: usize,
}

impl SourceOptions {
    /// Defaults, with git mirrors under `git_cache_dir`.
    pub fn new(git_cache_dir: impl Into<PathBuf>) -> Self {
        Self::with_git(GitConfig::new(git_cache_dir))
    }

    /// Defaults with these git settings.
    pub fn with_git(git: GitConfig) -> Self {
        Self {
            git,
            image: ImageSourceOptions::default(),
            chart: ChartClientOptions::default(),
            chart_index_cache: 256,
        }
    }

    /// These options with other image settings.
    pub fn image(mut self, image: ImageSourceOptions) -> Self {
        self.image = image;
        self
    }

    /// These options with other chart client settings.
    pub fn chart(mut self, chart: ChartClientOptions) -> Self {
        self.chart = chart;
        self
    }
}

/// The sources [`register_builtins`] registered, for their statistics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltinSources {
    /// The image source (request counters: [`ImageSource::stats`]).
    pub image: Arc<ImageSource>,
    /// The chart source (index cache counters: [`ChartSource::cache`]).
    pub chart: Arc<ChartSource>,
    /// The git source (ls-remote short-circuits: [`GitSource::stats`]).
    pub git: Arc<GitSource>,
}

/// Registers the image, chart and git sources built from `options`. Fails if one of the
/// kinds is already taken.
pub fn register_builtins(
    registry: &mut SourceRegistry,
    options: &SourceOptions,
) -> Result<BuiltinSources, DuplicateStep> {
    let image = Arc::new(ImageSource::new(options.image.clone()));
    let chart = Arc::new(ChartSource::with_options(
        options.chart.clone(),
        Arc::new(IndexCache::new(options.chart_index_cache)),
    ));
    let git = Arc::new(GitSource::new(options.git.clone()));
    registry.register_dyn(image.clone())?;
    registry.register_dyn(chart.clone())?;
    registry.register_dyn(git.clone())?;
    Ok(BuiltinSources { image, chart, git })
}
