//! `git-commit`: commits everything that changed in a checkout.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use kargo_git::CommitOutcome;
use serde::Deserialize;

use super::{AuthorConfig, blocking, find_checkout};

/// Kargo's `git-commit` step: commits every change in a checkout (`git add -A` and
/// `git commit`). With nothing to commit the step is `Skipped`. Output: `commit`, the new
/// (or, when skipped, the current) commit ID.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitCommit;

/// Configuration of [`GitCommit`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitCommitConfig {
    /// The checkout's path, relative to the work directory.
    pub path: String,
    /// The commit message.
    pub message: String,
    /// Deprecated: overrides the author set by `git-clone`.
    #[serde(default)]
    pub author: Option<AuthorConfig>,
}

#[async_trait]
impl Step for GitCommit {
    const KIND: &'static str = "git-commit";
    type Config = GitCommitConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: GitCommitConfig) -> Result<StepOutcome, StepError> {
        if cfg.message.trim().is_empty() {
            return Err(StepError::invalid_config(
                "message",
                "the commit message is empty",
            ));
        }
        let info = find_checkout(ctx, &cfg.path)?;
        let author = match &cfg.author {
            Some(a) => {
                tracing::warn!("git-commit: `author` is deprecated; set it on git-clone");
                a.signature("author")?
            }
            None => info.author.clone(),
        };
        let checkout = info.checkout.clone();
        let message = cfg.message.clone();
        let outcome = blocking(&info.auth, move || {
            checkout.commit(&message, &author, &author)
        })
        .await?;
        Ok(match outcome {
            CommitOutcome::Committed { commit } => {
                tracing::info!(%commit, "git-commit: committed");
                StepOutcome::succeeded().with_output("commit", commit.to_string())
            }
            CommitOutcome::NothingToCommit { head } => StepOutcome::skipped()
                .with_message("nothing to commit")
                .with_output("commit", head.map(|h| h.to_string()).unwrap_or_default()),
        })
    }
}
