//! One call that registers every built-in [`Source`](kargo_core::source::Source): images,
//! charts and git, with their caches and clients built from explicit options. Nothing is
//! read from the environment; credentials reach the sources through each discovery's
//! context (the controller's credential provider) and, for images, an optional Docker
//! `config.json` named in [`ImageSourceOptions::docker_config`].
//!
//! ```
//! # #[cfg(all(feature = "image", feature = "chart", feature = "git"))] {
//! let cache = tempfile::tempdir().unwrap();
//! let mut registry = kargo_core::source::SourceRegistry::new();
//! let sources = kargo_sources::builtin::register_builtins(
//!     &mut registry,
//!     &kargo_sources::builtin::SourceOptions::new(cache.path()),
//! ).unwrap();
//! assert_eq!(registry.kinds().collect::<Vec<_>>(), ["chart", "git", "image"]);
//! assert_eq!(sources.image.stats().tag_lists, 0);
//! # }
//! ```

use std::path::PathBuf;
#[cfg(any(feature = "image", feature = "chart", feature = "git"))]
use std::sync::Arc;

use kargo_core::source::SourceRegistry;
use kargo_core::step::DuplicateStep;

#[cfg(feature = "chart")]
use crate::chart::{ChartClientOptions, ChartSource, IndexCache};
#[cfg(feature = "git")]
use crate::git::GitSource;
#[cfg(feature = "image")]
use crate::image::{ImageSource, ImageSourceOptions};

/// The settings of the built-in sources (only the fields of the enabled features exist).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceOptions {
    /// Git subscriptions: where mirrors are cached (share it with the git steps' cache, so
    /// a repository is fetched once for both). Feature `git`.
    #[cfg(feature = "git")]
    pub git: kargo_git::GitConfig,
    /// Image subscriptions: insecure registries, concurrency, rate limit, caches, Docker
    /// `config.json`, timeouts. Feature `image`.
    #[cfg(feature = "image")]
    pub image: ImageSourceOptions,
    /// Chart subscriptions: TLS, plain HTTP, timeouts, size limits. Feature `chart`.
    #[cfg(feature = "chart")]
    pub chart: ChartClientOptions,
    /// How many chart repository indexes are kept for revalidation. Feature `chart`.
    #[cfg(feature = "chart")]
    pub chart_index_cache: usize,
}

impl SourceOptions {
    /// Defaults, with git mirrors under `git_cache_dir` (unused without the `git` feature).
    pub fn new(git_cache_dir: impl Into<PathBuf>) -> Self {
        let git_cache_dir = git_cache_dir.into();
        #[cfg(not(feature = "git"))]
        let _ = git_cache_dir;
        Self {
            #[cfg(feature = "git")]
            git: kargo_git::GitConfig::new(git_cache_dir),
            #[cfg(feature = "image")]
            image: ImageSourceOptions::default(),
            #[cfg(feature = "chart")]
            chart: ChartClientOptions::default(),
            #[cfg(feature = "chart")]
            chart_index_cache: 256,
        }
    }

    /// Defaults with these git settings (feature `git`).
    #[cfg(feature = "git")]
    pub fn with_git(git: kargo_git::GitConfig) -> Self {
        let mut options = Self::new(git.cache_dir.clone());
        options.git = git;
        options
    }

    /// These options with other image settings (feature `image`).
    #[cfg(feature = "image")]
    pub fn image(mut self, image: ImageSourceOptions) -> Self {
        self.image = image;
        self
    }

    /// These options with other chart client settings (feature `chart`).
    #[cfg(feature = "chart")]
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
    #[cfg(feature = "image")]
    pub image: Arc<ImageSource>,
    /// The chart source (index cache counters: [`ChartSource::cache`]).
    #[cfg(feature = "chart")]
    pub chart: Arc<ChartSource>,
    /// The git source (ls-remote short-circuits: [`GitSource::stats`]).
    #[cfg(feature = "git")]
    pub git: Arc<GitSource>,
}

/// Registers the sources of the enabled features (image, chart, git) built from
/// `options`. Fails if one of the kinds is already taken.
#[cfg_attr(
    not(any(feature = "image", feature = "chart", feature = "git")),
    allow(unused_variables, reason = "no source to register")
)]
pub fn register_builtins(
    registry: &mut SourceRegistry,
    options: &SourceOptions,
) -> Result<BuiltinSources, DuplicateStep> {
    #[cfg(feature = "image")]
    let image = Arc::new(ImageSource::new(options.image.clone()));
    #[cfg(feature = "image")]
    registry.register_dyn(image.clone())?;
    #[cfg(feature = "chart")]
    let chart = Arc::new(ChartSource::with_options(
        options.chart.clone(),
        Arc::new(IndexCache::new(options.chart_index_cache)),
    ));
    #[cfg(feature = "chart")]
    registry.register_dyn(chart.clone())?;
    #[cfg(feature = "git")]
    let git = Arc::new(GitSource::new(options.git.clone()));
    #[cfg(feature = "git")]
    registry.register_dyn(git.clone())?;
    Ok(BuiltinSources {
        #[cfg(feature = "image")]
        image,
        #[cfg(feature = "chart")]
        chart,
        #[cfg(feature = "git")]
        git,
    })
}
