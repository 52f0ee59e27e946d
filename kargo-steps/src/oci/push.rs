//! `oci-push`: copies or retags an OCI image, image index or artifact.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt as _;
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use serde_json::Value as Json;

use super::{
    OciRef, connect, is_index, manifest_media_type, parse_ref, registry_error, sha256_digest,
};

/// The default largest artifact copied between repositories (Kargo's 1 GiB: the config blob and
/// every layer, summed over an index's images); larger is a terminal error. A retag within
/// one repository transfers no blob and has no limit.
pub const MAX_OCI_PUSH_BYTES: u64 = 1 << 30;

/// Kargo's `oci-push` step: copies the artifact at `srcRef` to `destRef` (which must name a
/// tag), or retags it when both are in the same repository.
///
/// ```yaml
/// - uses: oci-push
///   as: push
///   config:
///     srcRef: registry.example.com/myapp@${{ imageFrom("registry.example.com/myapp").digest }}
///     destRef: prod.example.com/myapp:v1.2.3
///     annotations:                                     # optional
///       org.opencontainers.image.source: https://github.com/example/myapp
///       index:org.opencontainers.image.revision: abc123
///     insecureSkipTLSVerify: false                     # default
/// ```
///
/// Images, image indexes (every image of a multi-arch index is copied) and other artifacts
/// (Helm charts: `oci://` references use Helm credentials) are supported. Blobs the
/// destination already has are not sent again; within one registry they are mounted from
/// the source repository instead of copied. Without `annotations` the manifests are copied
/// byte for byte, so the digest stays the source's. `annotations` are added to (or replace
/// those of) the destination: unprefixed and `manifest:` keys go on the image manifest (on
/// each image of an index), `index:` keys on the index (ignored for a single image);
/// annotated manifests get new digests.
///
/// Outputs: `image` (`registry/repository:tag` of the destination), `digest` (of the
/// pushed manifest or index) and `tag`.
///
/// **Dry run**: reads the source (its manifests and sizes, so a missing source or an
/// oversized artifact still fails) but pushes nothing; notes the push and returns the same
/// outputs (the digest the destination would get) with the status `Skipped`.
#[derive(Debug, Clone, Copy)]
pub struct OciPush {
    max_bytes: u64,
}

impl Default for OciPush {
    fn default() -> Self {
        Self::new()
    }
}

impl OciPush {
    /// The step with Kargo's default limit ([`MAX_OCI_PUSH_BYTES`]).
    pub fn new() -> Self {
        Self {
            max_bytes: MAX_OCI_PUSH_BYTES,
        }
    }

    /// The step with another limit for copies between repositories (an operator's
    /// setting, as Kargo's; 0 refuses every copy between repositories).
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self { max_bytes }
    }
}

/// Configuration of [`OciPush`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciPushConfig {
    /// `srcRef:` the source, `registry/repository:tag` or `...@sha256:...`, optionally with
    /// `oci://` (Helm credentials). Required.
    pub src_ref: String,
    /// `destRef:` the destination, `registry/repository:tag`, optionally with `oci://`.
    /// Required.
    pub dest_ref: String,
    /// `annotations:` annotations to set on the destination (see the step's
    /// documentation for the `index:` / `manifest:` prefixes).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate of both registries.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
}

/// Annotations by scope.
#[derive(Debug, Default)]
struct Scopes {
    index: BTreeMap<String, String>,
    manifest: BTreeMap<String, String>,
}

fn scopes(annotations: &BTreeMap<String, String>) -> Result<Scopes, StepError> {
    let mut s = Scopes::default();
    for (k, v) in annotations {
        let (map, key) = if let Some(key) = k.strip_prefix("index:") {
            (&mut s.index, key)
        } else if let Some(key) = k.strip_prefix("manifest:") {
            (&mut s.manifest, key)
        } else {
            (&mut s.manifest, k.as_str())
        };
        if key.is_empty() {
            return Err(StepError::invalid_config(
                format!("annotations.{k}"),
                "the annotation key is empty",
            ));
        }
        map.insert(key.to_owned(), v.clone());
    }
    Ok(s)
}

/// `raw` with `annotations` added to its `annotations`, or `raw` itself when there are
/// none (byte for byte, so the digest is kept).
fn annotate(raw: &[u8], annotations: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    if annotations.is_empty() {
        return Ok(raw.to_vec());
    }
    let mut m: Json =
        serde_json::from_slice(raw).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let obj = m
        .as_object_mut()
        .ok_or_else(|| "the manifest is not a JSON object".to_owned())?;
    let entry = obj
        .entry("annotations")
        .or_insert_with(|| Json::Object(serde_json::Map::new()));
    if !entry.is_object() {
        *entry = Json::Object(serde_json::Map::new());
    }
    if let Some(a) = entry.as_object_mut() {
        for (k, v) in annotations {
            a.insert(k.clone(), Json::String(v.clone()));
        }
    }
    serde_json::to_vec(&m).map_err(|e| format!("cannot encode the manifest: {e}"))
}

/// A blob to copy: digest and declared size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Blob {
    digest: String,
    size: u64,
}

fn blobs_of(manifest: &Json) -> Vec<Blob> {
    let desc = |d: &Json| -> Option<Blob> {
        Some(Blob {
            digest: d.get("digest")?.as_str()?.to_owned(),
            size: d.get("size").and_then(Json::as_u64).unwrap_or(0),
        })
    };
    let mut out = Vec::new();
    if let Some(c) = manifest.get("config").and_then(desc) {
        out.push(c);
    }
    if let Some(layers) = manifest.get("layers").and_then(Json::as_array) {
        out.extend(layers.iter().filter_map(desc));
    }
    out
}

/// One image manifest to push: its (possibly annotated) bytes and media type.
struct Image {
    source_digest: String,
    bytes: Vec<u8>,
    media_type: String,
    blobs: Vec<Blob>,
}

/// What will be pushed.
struct Plan {
    /// Images, pushed by digest first when there is an index.
    images: Vec<Image>,
    /// The top manifest (the index, or the single image's manifest) and its media type.
    top: (Vec<u8>, String),
}

impl Plan {
    fn total_size(&self) -> u64 {
        self.images
            .iter()
            .flat_map(|i| i.blobs.iter())
            .map(|b| b.size)
            .sum()
    }
}

struct Source<'a> {
    client: &'a Client,
    auth: &'a RegistryAuth,
    r: &'a OciRef,
}

impl Source<'_> {
    async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Json), StepError> {
        let what = &self.r.repository_name;
        let (raw, _) = self
            .client
            .pull_manifest_raw(reference, self.auth, super::MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| registry_error(what, "cannot read the source manifest", e))?;
        let json: Json = serde_json::from_slice(&raw).map_err(|e| {
            StepError::terminal(format!("{what}: the manifest is not valid JSON: {e}"))
        })?;
        Ok((raw.to_vec(), json))
    }

    async fn plan(&self, scopes: &Scopes) -> Result<Plan, StepError> {
        let what = &self.r.repository_name;
        let bad = |m: String| StepError::terminal(format!("{what}: {m}"));
        let (raw, json) = self.manifest(&self.r.reference).await?;
        let media_type = manifest_media_type(&json);
        if !is_index(&media_type) {
            let bytes = annotate(&raw, &scopes.manifest).map_err(bad)?;
            let image = Image {
                source_digest: sha256_digest(&raw),
                bytes: bytes.clone(),
                media_type: media_type.clone(),
                blobs: blobs_of(&json),
            };
            return Ok(Plan {
                images: vec![image],
                top: (bytes, media_type),
            });
        }
        let mut index = json;
        let mut images = Vec::new();
        let entries = index
            .get_mut("manifests")
            .and_then(Json::as_array_mut)
            .ok_or_else(|| bad("the image index has no manifests".to_owned()))?;
        for entry in entries.iter_mut() {
            let digest = entry
                .get("digest")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("an index entry has no digest".to_owned()))?
                .to_owned();
            let (child_raw, child) = self
                .manifest(&self.r.reference.clone_with_digest(digest.clone()))
                .await?;
            let child_type = manifest_media_type(&child);
            if is_index(&child_type) {
                return Err(bad(format!(
                    "nested image indexes are not supported ({digest})"
                )));
            }
            let bytes = annotate(&child_raw, &scopes.manifest).map_err(bad)?;
            if bytes != child_raw
                && let Some(e) = entry.as_object_mut()
            {
                e.insert("digest".into(), Json::String(sha256_digest(&bytes)));
                e.insert("size".into(), Json::from(bytes.len()));
            }
            images.push(Image {
                source_digest: digest,
                bytes,
                media_type: child_type,
                blobs: blobs_of(&child),
            });
        }
        let index_bytes = if images
            .iter()
            .any(|i| sha256_digest(&i.bytes) != i.source_digest)
            || !scopes.index.is_empty()
        {
            let updated = serde_json::to_vec(&index)
                .map_err(|e| bad(format!("cannot encode the index: {e}")))?;
            annotate(&updated, &scopes.index).map_err(bad)?
        } else {
            raw
        };
        Ok(Plan {
            images,
            top: (index_bytes, media_type),
        })
    }
}

fn content_type(media_type: &str) -> Result<reqwest::header::HeaderValue, StepError> {
    reqwest::header::HeaderValue::from_str(media_type)
        .map_err(|_| StepError::terminal(format!("invalid manifest media type {media_type:?}")))
}

/// Copies `blob` from the source to the destination unless it is there already.
async fn copy_blob(
    src: &Source<'_>,
    dst_client: &Client,
    dst: &OciRef,
    blob: &Blob,
) -> Result<(), StepError> {
    let what = &dst.repository_name;
    let exists = dst_client
        .blob_exists(&dst.reference, &blob.digest)
        .await
        .map_err(|e| registry_error(what, "cannot check a blob", e))?;
    if exists {
        return Ok(());
    }
    if src.r.reference.resolve_registry() == dst.reference.resolve_registry() {
        // Same registry: ask it to mount the blob from the source repository.
        let mounted = dst_client
            .mount_blob(&dst.reference, &src.r.reference, &blob.digest)
            .await
            .is_ok();
        if mounted
            && dst_client
                .blob_exists(&dst.reference, &blob.digest)
                .await
                .unwrap_or(false)
        {
            return Ok(());
        }
    }
    let stream = src
        .client
        .pull_blob_stream(&src.r.reference, blob.digest.as_str())
        .await
        .map_err(|e| registry_error(&src.r.repository_name, "cannot read a blob", e))?;
    let stream = stream.map(|r| r.map_err(OciDistributionError::from));
    dst_client
        .push_blob_stream(&dst.reference, stream, &blob.digest, Some(blob.size))
        .await
        .map_err(|e| registry_error(what, "cannot upload a blob", e))?;
    Ok(())
}

#[async_trait]
impl Step for OciPush {
    const KIND: &'static str = "oci-push";
    type Config = OciPushConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Idempotent)
    }

    async fn run(&self, ctx: &StepContext, cfg: OciPushConfig) -> Result<StepOutcome, StepError> {
        let src = parse_ref("srcRef", &cfg.src_ref, false)?;
        let dst = parse_ref("destRef", &cfg.dest_ref, true)?;
        if dst.reference.digest().is_some() {
            return Err(StepError::invalid_config(
                "destRef",
                "the destination must name a tag, not a digest",
            ));
        }
        let scopes = scopes(&cfg.annotations)?;
        let tag = dst.reference.tag().unwrap_or_default().to_owned();
        let image = format!("{}:{tag}", dst.repository_name);
        let same_repository = src.repository_name == dst.repository_name;
        let dry = ctx.dry_run();

        let work = async {
            let (src_client, src_auth) = connect(
                ctx,
                &src,
                cfg.insecure_skip_tls_verify,
                RegistryOperation::Pull,
            )
            .await?;
            let source = Source {
                client: &src_client,
                auth: &src_auth,
                r: &src,
            };
            let plan = source.plan(&scopes).await?;
            if !same_repository {
                if self.max_bytes == 0 {
                    return Err(StepError::terminal(
                        "copies between repositories are disabled (the size limit is 0)",
                    ));
                }
                let total = plan.total_size();
                if total > self.max_bytes {
                    return Err(StepError::terminal(format!(
                        "{}: compressed artifact size {total} bytes exceeds maximum allowed size of {} bytes",
                        src.repository_name, self.max_bytes
                    )));
                }
            }
            let digest = sha256_digest(&plan.top.0);
            if dry.is_some() {
                return Ok(digest);
            }
            let (dst_client, _) = connect(
                ctx,
                &dst,
                cfg.insecure_skip_tls_verify,
                RegistryOperation::Push,
            )
            .await?;
            let what = &dst.repository_name;
            let mut seen = std::collections::BTreeSet::new();
            for img in &plan.images {
                for blob in &img.blobs {
                    if seen.insert(blob.digest.clone()) {
                        copy_blob(&source, &dst_client, &dst, blob).await?;
                    }
                }
            }
            if plan.images.len() > 1 || is_index(&plan.top.1) {
                for img in &plan.images {
                    let by_digest = dst.reference.clone_with_digest(sha256_digest(&img.bytes));
                    dst_client
                        .push_manifest_raw(
                            &by_digest,
                            img.bytes.clone(),
                            content_type(&img.media_type)?,
                        )
                        .await
                        .map_err(|e| registry_error(what, "cannot push an image manifest", e))?;
                }
            }
            dst_client
                .push_manifest_raw(
                    &dst.reference,
                    plan.top.0.clone(),
                    content_type(&plan.top.1)?,
                )
                .await
                .map_err(|e| registry_error(what, "cannot push the manifest", e))?;
            Ok(digest)
        };
        let digest = tokio::select! {
            r = work => r?,
            () = ctx.cancellation().cancelled() => {
                return Err(StepError::new(StepErrorKind::Cancelled, "the push was cancelled"));
            }
        };
        let outcome = StepOutcome::succeeded()
            .with_output("image", image.clone())
            .with_output("digest", digest.clone())
            .with_output("tag", tag);
        if let Some(dry) = dry {
            let text = format!(
                "dry run: would push {} ({digest}) to {image}",
                cfg.src_ref.trim()
            );
            dry.note(&ctx.alias, &text);
            return Ok(StepOutcome {
                status: kargo_core::step::StepStatus::Skipped,
                message: Some(text),
                ..outcome
            });
        }
        tracing::info!(src = %cfg.src_ref.trim(), dest = %image, %digest, "oci-push: pushed");
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_scopes_and_bytes() {
        let a: BTreeMap<String, String> = [
            ("a".to_owned(), "1".to_owned()),
            ("index:b".to_owned(), "2".to_owned()),
            ("manifest:c".to_owned(), "3".to_owned()),
        ]
        .into();
        let s = scopes(&a).unwrap();
        assert_eq!(s.index.len(), 1);
        assert_eq!(s.manifest.len(), 2);
        let raw = br#"{"schemaVersion":2,"annotations":{"x":"y"}}"#;
        assert_eq!(annotate(raw, &BTreeMap::new()).unwrap(), raw.to_vec());
        let out: Json = serde_json::from_slice(&annotate(raw, &s.manifest).unwrap()).unwrap();
        assert_eq!(out["annotations"]["x"], "y");
        assert_eq!(out["annotations"]["c"], "3");
        let e = scopes(&[("index:".to_owned(), "v".to_owned())].into())
            .err()
            .unwrap();
        assert!(e.to_string().contains("annotations.index:"), "{e}");
    }
}
