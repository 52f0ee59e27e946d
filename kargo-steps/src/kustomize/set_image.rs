//! `kustomize-set-image`: sets image overrides in a Kustomization, keeping its formatting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use kargo_core::expr::OriginSubscriptions;
use kargo_core::freight::FreightCollection;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::edit::{KustomizeImage, set_images};
use crate::yaml::{read_text, write_atomically};

/// The file names kustomize recognises, in its order.
pub const KUSTOMIZATION_FILE_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Kargo's `kustomize-set-image` step: updates the `images:` field of the Kustomization in
/// `path` with the format-preserving editor ([`set_images`]), then outputs a
/// `commitMessage`.
///
/// * With `images`, each entry sets the image whose kustomize `name` is `name` (default:
///   `image`): `newName` when given, and `digest` or `tag` (exactly one of them). Like
///   Kargo, the entry is *replaced*: keys the configuration leaves out are removed, so a
///   digest removes an existing `newTag` and an entry without `newName` loses its
///   `newName`; `*` as `newName`, `tag` or `digest` keeps the existing value.
/// * Without `images`, every image of the Freight collection is set, named by its
///   repository, with both `newTag` and `digest` (whichever the Freight has). If an image
///   repository could come from more than one origin the step fails with Kargo's
///   `manual configuration required due to ambiguous result` error. Kargo decides this from
///   the Stage's requested origins and their Warehouses' image subscriptions; the step
///   uses them when the promotion's [`Extensions`](kargo_core::step::Extensions) hold a
///   `Vec<`[`OriginSubscriptions`]`>`, and otherwise from the Freight collection itself
///   (a repository found in more than one Freight image is ambiguous).
///
/// The Kustomization is the one regular file among `kustomization.yaml`,
/// `kustomization.yml` and `Kustomization` in `path` (symbolic links are not considered,
/// as in Kargo); none or several are errors. The file is replaced atomically, and only
/// when its content changes; on any error nothing is written.
///
/// Output `commitMessage`, exactly as Kargo writes it: `Updated <path> to use new image`
/// (`images` when more than one), an empty line, then `- <ref>` per image of Kargo's merged
/// list — the configured images *and every other entry of the file*, sorted by name — with
/// `<ref>` = `newName` (else `name`), then `:newTag` and `@digest` when set:
///
/// ```text
/// Updated ./env/prod to use new images
///
/// - ghcr.io/acme/api:1.4.0@sha256:0f3c...
/// - redis:7.2
/// ```
///
/// No `commitMessage` is output when that list is empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct KustomizeSetImage;

/// Configuration of [`KustomizeSetImage`].
///
/// ```yaml
/// uses: kustomize-set-image
/// config:
///   path: ./src/env/prod              # directory holding the Kustomization
///   images:                           # optional: all Freight images when omitted
///   - image: ghcr.io/acme/api         # the repository Kargo subscribes to
///     tag: ${{ imageFrom("ghcr.io/acme/api").Tag }}
///   - image: ghcr.io/acme/worker
///     name: worker                    # the image name used in the manifests
///     newName: registry.local/worker  # '*' keeps the current newName
///     digest: ${{ imageFrom("ghcr.io/acme/worker").Digest }}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSetImageConfig {
    /// The directory holding the Kustomization, relative to the work directory
    /// (`path: ./env/prod`).
    pub path: String,
    /// The images to set; when empty or absent, every image of the Freight collection
    /// (`images: [{image: nginx, tag: 1.27.0}]`).
    #[serde(default)]
    pub images: Vec<KustomizeSetImageEntry>,
}

/// One image of a [`KustomizeSetImageConfig`]: exactly one of `tag` and `digest`.
///
/// ```yaml
/// image: ghcr.io/acme/api      # required
/// tag: 1.4.0                   # or digest: sha256:...
/// name: api                    # kustomize image name to match; default: image
/// newName: registry.local/api  # optional replacement name ('*': keep the current one)
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSetImageEntry {
    /// The image repository Kargo subscribes to (`image: ghcr.io/acme/api`).
    pub image: String,
    /// The tag to set as `newTag` (`tag: 1.4.0`; `*` keeps the current one).
    #[serde(default)]
    pub tag: Option<String>,
    /// The digest to set as `digest` (`digest: sha256:...`; `*` keeps the current one).
    #[serde(default)]
    pub digest: Option<String>,
    /// The image name as the Kustomization's entry names it; defaults to `image`
    /// (`name: api`).
    #[serde(default)]
    pub name: Option<String>,
    /// The replacement image name written as `newName` (`newName: registry.local/api`).
    #[serde(default)]
    pub new_name: Option<String>,
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or_default()
}

/// The targets of an explicit configuration, keyed by kustomize name (a later entry for
/// the same name wins, as in Kargo's map).
fn targets_from_config(
    images: &[KustomizeSetImageEntry],
) -> Result<BTreeMap<String, KustomizeImage>, StepError> {
    let mut targets = BTreeMap::new();
    for (i, img) in images.iter().enumerate() {
        if img.image.is_empty() {
            return Err(StepError::invalid_config(
                format!("images[{i}].image"),
                "must not be empty",
            ));
        }
        let (tag, digest) = (opt(&img.tag), opt(&img.digest));
        if tag.is_empty() == digest.is_empty() {
            return Err(StepError::invalid_config(
                format!("images[{i}]"),
                "exactly one of `tag` and `digest` must be set",
            ));
        }
        let name = match opt(&img.name) {
            "" => img.image.clone(),
            n => n.to_owned(),
        };
        let mut target = KustomizeImage::new(name.clone()).with_new_name(opt(&img.new_name));
        if !digest.is_empty() {
            target.digest = digest.to_owned();
        } else {
            target.new_tag = tag.to_owned();
        }
        targets.insert(name, target);
    }
    Ok(targets)
}

/// Kargo's ambiguity error.
fn ambiguous(repo: &str) -> StepError {
    StepError::retryable(format!(
        "manual configuration required due to ambiguous result: multiple requested Freight could potentially provide a container image from repository {repo}"
    ))
}

/// The targets of the automatic mode: every Freight image, by repository.
fn targets_from_freight(
    freight: &FreightCollection,
    requested: Option<&[OriginSubscriptions]>,
) -> Result<BTreeMap<String, KustomizeImage>, StepError> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    match requested {
        Some(requested) => {
            for origin in requested {
                for repo in &origin.images {
                    if !seen.insert(repo.as_str()) {
                        return Err(ambiguous(repo));
                    }
                }
            }
        }
        None => {
            for (_, reference) in freight.iter() {
                for image in &reference.images {
                    if !seen.insert(image.repo_url.as_str()) {
                        return Err(ambiguous(&image.repo_url));
                    }
                }
            }
        }
    }
    let mut targets = BTreeMap::new();
    for (_, reference) in freight.iter() {
        for image in &reference.images {
            targets.insert(
                image.repo_url.clone(),
                KustomizeImage::new(image.repo_url.clone())
                    .with_tag(image.tag.clone())
                    .with_digest(image.digest.clone()),
            );
        }
    }
    Ok(targets)
}

/// Kargo's commit message for the merged image list, `None` when it is empty.
pub(crate) fn commit_message(
    path: &str,
    images: &BTreeMap<String, KustomizeImage>,
) -> Option<String> {
    if images.is_empty() {
        return None;
    }
    let mut msg = format!("Updated {path} to use new image");
    if images.len() > 1 {
        msg.push('s');
    }
    msg.push('\n');
    for image in images.values() {
        msg.push_str("\n- ");
        msg.push_str(&image.reference());
    }
    Some(msg)
}

/// The one Kustomization file in `dir` (regular files only).
pub(crate) fn find_kustomization(dir: &Path, shown: &str) -> Result<PathBuf, StepError> {
    let found: Vec<&str> = KUSTOMIZATION_FILE_NAMES
        .iter()
        .copied()
        .filter(|name| {
            std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(dir.join(one)),
        [] => Err(StepError::retryable(format!(
            "could not discover kustomization file: could not find any Kustomization files in {shown:?}"
        ))),
        several => Err(StepError::retryable(format!(
            "could not discover kustomization file: ambiguous result: found multiple Kustomization files in {shown:?}: {}",
            several.join(", ")
        ))),
    }
}

#[async_trait]
impl Step for KustomizeSetImage {
    const KIND: &'static str = "kustomize-set-image";
    type Config = KustomizeSetImageConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: KustomizeSetImageConfig,
    ) -> Result<StepOutcome, StepError> {
        if config.path.is_empty() {
            return Err(StepError::invalid_config("path", "must not be empty"));
        }
        let targets = if config.images.is_empty() {
            let requested = ctx.extensions().get::<Vec<OriginSubscriptions>>();
            targets_from_freight(&ctx.freight, requested.as_deref().map(Vec::as_slice))?
        } else {
            targets_from_config(&config.images)?
        };
        let dir = ctx.path(&config.path)?;
        let file = find_kustomization(&dir, &config.path)?;
        let shown = format!(
            "{}/{}",
            config.path.trim_end_matches('/'),
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let text = read_text(&file, &shown)?;
        let update = set_images(&text, &targets).map_err(|e| {
            StepError::retryable(format!("cannot update {shown}: {e}")).with_source(e)
        })?;
        if update.text != text {
            write_atomically(&file, update.text.as_bytes()).map_err(|e| {
                StepError::retryable(format!("cannot write {shown}: {e}")).with_source(e)
            })?;
        }
        tracing::debug!(
            path = %shown,
            targets = targets.len(),
            changed = update.text != text,
            "kustomize-set-image"
        );
        let mut outcome = StepOutcome::succeeded();
        if let Some(msg) = commit_message(&config.path, &update.images) {
            outcome = outcome.with_output("commitMessage", msg);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_message_matches_kargo() {
        let mut m = BTreeMap::new();
        assert_eq!(commit_message("p", &m), None);
        m.insert(
            "nginx".to_owned(),
            KustomizeImage::new("nginx").with_tag("1.21.0"),
        );
        assert_eq!(
            commit_message(".", &m).unwrap(),
            "Updated . to use new image\n\n- nginx:1.21.0"
        );
        m.insert(
            "redis".to_owned(),
            KustomizeImage::new("redis")
                .with_new_name("custom-redis")
                .with_tag("6.0")
                .with_digest("sha256:1"),
        );
        m.insert(
            "postgres".to_owned(),
            KustomizeImage::new("postgres").with_digest("sha256:abc"),
        );
        assert_eq!(
            commit_message("path/to/kustomization", &m).unwrap(),
            "Updated path/to/kustomization to use new images\n\n- nginx:1.21.0\n- postgres@sha256:abc\n- custom-redis:6.0@sha256:1"
        );
    }

    #[test]
    fn config_rules() {
        let e = |tag: Option<&str>, digest: Option<&str>| KustomizeSetImageEntry {
            image: "nginx".into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
            ..Default::default()
        };
        assert!(targets_from_config(&[e(None, None)]).is_err());
        assert!(targets_from_config(&[e(Some(""), Some(""))]).is_err());
        assert!(targets_from_config(&[e(Some("1"), Some("sha256:1"))]).is_err());
        let t = targets_from_config(&[e(Some("1"), Some(""))]).unwrap();
        assert_eq!(t["nginx"], KustomizeImage::new("nginx").with_tag("1"));
        let t = targets_from_config(&[KustomizeSetImageEntry {
            name: Some("web".into()),
            new_name: Some("*".into()),
            ..e(None, Some("sha256:1"))
        }])
        .unwrap();
        assert_eq!(
            t["web"],
            KustomizeImage::new("web")
                .with_new_name("*")
                .with_digest("sha256:1")
        );
        let mut empty = e(Some("1"), None);
        empty.image = String::new();
        assert!(targets_from_config(&[empty]).is_err());
    }
}
