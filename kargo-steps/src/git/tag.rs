//! `git-tag`: tags a checkout's current commit.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::{blocking, find_checkout, non_empty};

/// Kargo's `git-tag` step: tags the current commit of a checkout (locally; push it with
/// `git-push` and `tag`). Annotated when `message` is given, lightweight otherwise.
/// Output: `commit`, the tagged commit ID. A tag that exists already on the current
/// commit makes the step `Skipped` (so it can be replayed when a promotion is resumed).
///
/// In a dry run the tag is not created (it would stay in the shared mirror cache and make
/// the real promotion's `git-tag` fail): the step checks that it could be created (an
/// existing tag needs `force`), notes what it would do, and is `Skipped` with the same
/// output.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitTag;

/// Configuration of [`GitTag`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitTagConfig {
    /// The checkout's path, relative to the work directory.
    pub path: String,
    /// The tag name.
    pub tag: String,
    /// The annotation (makes an annotated tag, tagged by the checkout's author).
    #[serde(default)]
    pub message: Option<String>,
    /// Move the tag if it exists.
    #[serde(default)]
    pub force: bool,
}

#[async_trait]
impl Step for GitTag {
    const KIND: &'static str = "git-tag";
    type Config = GitTagConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: GitTagConfig) -> Result<StepOutcome, StepError> {
        if cfg.tag.trim().is_empty() {
            return Err(StepError::invalid_config("tag", "the tag name is empty"));
        }
        let info = find_checkout(ctx, &cfg.path)?;
        if info.checkout.head().is_none() {
            return Err(StepError::invalid_config(
                "path",
                format!("{:?} has no commit to tag yet", cfg.path),
            ));
        }
        if let Some(dry) = ctx.dry_run() {
            let head = info
                .checkout
                .head()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let mirror = info.checkout.mirror().clone();
            let rev = format!("refs/tags/{}", cfg.tag);
            let exists = blocking(&info.auth, move || Ok(mirror.resolve(&rev).is_ok())).await?;
            if exists && !cfg.force {
                return Err(StepError::terminal(format!(
                    "tag {:?} exists already (set force to move it)",
                    cfg.tag
                )));
            }
            let text = format!("dry run: would tag {head} as {}", cfg.tag);
            dry.note(&ctx.alias, &text);
            return Ok(StepOutcome::skipped()
                .with_message(text)
                .with_output("commit", head));
        }
        if !cfg.force
            && let Some(head) = info.checkout.head()
        {
            // Replayed on a resumed promotion (or run twice): a tag already on HEAD is
            // what this step would make, not a conflict.
            let mirror = info.checkout.mirror().clone();
            let rev = format!("refs/tags/{}", cfg.tag);
            let existing = blocking(&info.auth, move || Ok(mirror.resolve(&rev).ok())).await?;
            if existing == Some(head) {
                return Ok(StepOutcome::skipped()
                    .with_message(format!("tag {:?} is on HEAD already", cfg.tag))
                    .with_output("commit", head.to_string()));
            }
        }
        let checkout = info.checkout.clone();
        let tagger = info.author.clone();
        let tag = cfg.tag.clone();
        let message = non_empty(cfg.message.as_deref()).map(str::to_owned);
        let force = cfg.force;
        blocking(&info.auth, move || {
            checkout.tag(&tag, message.as_deref(), &tagger, force)
        })
        .await
        .map_err(|e| e.context(format!("tag {:?}", cfg.tag)))?;
        let head = info
            .checkout
            .head()
            .map(|h| h.to_string())
            .unwrap_or_default();
        Ok(StepOutcome::succeeded().with_output("commit", head))
    }
}
