//! `oci-download`: saves one layer of an OCI artifact as a file of the work directory.

use async_trait::async_trait;
use futures::StreamExt as _;
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use oci_client::{Reference, RegistryOperation};
use serde::Deserialize;
use serde_json::Value as Json;

use sha2::Digest as _;

use super::{connect, is_index, manifest_media_type, parse_ref, registry_error};
use crate::files::out_file;

/// The largest layer downloaded (Kargo's 100 MiB); larger is a terminal error.
pub const MAX_OCI_DOWNLOAD_BYTES: u64 = 100 << 20;

/// Kargo's `oci-download` step: downloads the layer of `imageRef` whose media type is
/// `mediaType` (the first such layer; without `mediaType` the first layer) to `outPath`,
/// as is (a Helm chart's layer is its `.tgz`).
///
/// ```yaml
/// - uses: oci-download
///   config:
///     imageRef: oci://registry.example.com/charts/my-app:1.0.0
///     outPath: ./charts/my-app-1.0.0.tgz
///     mediaType: application/vnd.cncf.helm.chart.content.v1.tar+gzip   # optional
///     allowOverwrite: false                                            # default
///     insecureSkipTLSVerify: false                                     # default
/// ```
///
/// For an image index, the `linux/amd64` image is used (go-containerregistry's default,
/// which Kargo uses). The layer is streamed to disk and its digest checked; the file is
/// written atomically (`0600`, renamed into place only once complete and verified). Layers over [`MAX_OCI_DOWNLOAD_BYTES`] are refused
/// (terminal), as are an existing file without `allowOverwrite` and a `mediaType` that no
/// layer has. The step writes only in the work directory, so a dry run downloads as usual.
/// No outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct OciDownload;

/// Configuration of [`OciDownload`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciDownloadConfig {
    /// `imageRef:` the artifact, `registry/repository:tag` or `...@sha256:...`, optionally
    /// with `oci://` (Helm credentials). Required.
    pub image_ref: String,
    /// `outPath:` the file to write, relative to the work directory. Required.
    pub out_path: String,
    /// `allowOverwrite:` replace an existing file (default false).
    #[serde(default)]
    pub allow_overwrite: bool,
    /// `mediaType:` the media type of the layer to save (default: the first layer).
    #[serde(default)]
    pub media_type: Option<String>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate of the registry.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
}

/// The `linux/amd64` entry of an index, else its only entry.
fn pick_platform(index: &Json) -> Option<String> {
    let manifests = index.get("manifests")?.as_array()?;
    let platform_is = |m: &Json, os: &str, arch: &str| {
        m.get("platform").is_some_and(|p| {
            p.get("os").and_then(Json::as_str) == Some(os)
                && p.get("architecture").and_then(Json::as_str) == Some(arch)
        })
    };
    manifests
        .iter()
        .find(|m| platform_is(m, "linux", "amd64"))
        .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
        .and_then(|m| m.get("digest")?.as_str().map(str::to_owned))
}

#[async_trait]
impl Step for OciDownload {
    const KIND: &'static str = "oci-download";
    type Config = OciDownloadConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: OciDownloadConfig,
    ) -> Result<StepOutcome, StepError> {
        let src = parse_ref("imageRef", &cfg.image_ref, false)?;
        let media_type = match cfg.media_type.as_deref() {
            Some("") => return Err(StepError::invalid_config("mediaType", "must not be empty")),
            m => m.map(str::to_owned),
        };
        let out = out_file::prepare(ctx, &cfg.out_path, cfg.allow_overwrite).await?;
        let what = src.repository_name.clone();
        let work = async {
            let (client, auth) = connect(
                ctx,
                &src,
                cfg.insecure_skip_tls_verify,
                RegistryOperation::Pull,
            )
            .await?;
            let (raw, _) = client
                .pull_manifest_raw(&src.reference, &auth, super::MANIFEST_MEDIA_TYPES)
                .await
                .map_err(|e| registry_error(&what, "cannot read the manifest", e))?;
            let mut manifest: Json = serde_json::from_slice(&raw).map_err(|e| {
                StepError::terminal(format!("{what}: the manifest is not valid JSON: {e}"))
            })?;
            let mut image_ref: Reference = src.reference.clone();
            if is_index(&manifest_media_type(&manifest)) {
                let digest = pick_platform(&manifest).ok_or_else(|| {
                    StepError::terminal(format!("{what}: the image index has no linux/amd64 image"))
                })?;
                image_ref = src.reference.clone_with_digest(digest);
                let (raw, _) = client
                    .pull_manifest_raw(&image_ref, &auth, super::MANIFEST_MEDIA_TYPES)
                    .await
                    .map_err(|e| registry_error(&what, "cannot read the image manifest", e))?;
                manifest = serde_json::from_slice(&raw).map_err(|e| {
                    StepError::terminal(format!("{what}: the manifest is not valid JSON: {e}"))
                })?;
            }
            let layers = manifest
                .get("layers")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            if layers.is_empty() {
                return Err(StepError::terminal(format!(
                    "{what}: failed to find target layer: image has no layers"
                )));
            }
            let layer = match &media_type {
                Some(m) => layers
                    .iter()
                    .find(|l| l.get("mediaType").and_then(Json::as_str) == Some(m.as_str()))
                    .ok_or_else(|| {
                        StepError::terminal(format!(
                            "{what}: failed to find target layer: no layer found with media type {m:?}"
                        ))
                    })?,
                None => &layers[0],
            };
            let digest = layer
                .get("digest")
                .and_then(Json::as_str)
                .ok_or_else(|| StepError::terminal(format!("{what}: a layer has no digest")))?
                .to_owned();
            let size = layer.get("size").and_then(Json::as_u64).unwrap_or(0);
            if size > MAX_OCI_DOWNLOAD_BYTES {
                return Err(StepError::terminal(format!(
                    "{what}: layer size {size} exceeds maximum allowed size of {MAX_OCI_DOWNLOAD_BYTES} bytes"
                )));
            }
            let mut stream = client
                .pull_blob_stream(&image_ref, digest.as_str())
                .await
                .map_err(|e| registry_error(&what, "cannot download the layer", e))?;
            let mut file = out.stream();
            match copy_layer(&mut stream, &mut file, &what, &digest).await {
                Ok(bytes) => {
                    file.finish().await?;
                    Ok(bytes)
                }
                Err(e) => {
                    file.abort().await;
                    Err(e)
                }
            }
        };
        let bytes = tokio::select! {
            r = work => r?,
            () = ctx.cancellation().cancelled() => {
                return Err(StepError::new(StepErrorKind::Cancelled, "the download was cancelled"));
            }
        };
        tracing::info!(artifact = %cfg.image_ref.trim(), out = %out.shown, bytes, "oci-download: saved the layer");
        Ok(StepOutcome::succeeded())
    }
}

/// Streams a layer into `file`, checking its size and (sha256) digest; the size.
async fn copy_layer(
    stream: &mut oci_client::client::SizedStream,
    file: &mut out_file::StreamingFile,
    what: &str,
    digest: &str,
) -> Result<u64, StepError> {
    let mut hasher = sha2::Sha256::new();
    let mut bytes: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| StepError::retryable(format!("{what}: error reading the layer: {e}")))?;
        bytes += chunk.len() as u64;
        if bytes > MAX_OCI_DOWNLOAD_BYTES {
            return Err(StepError::terminal(format!(
                "{what}: the layer exceeds the maximum allowed size of {MAX_OCI_DOWNLOAD_BYTES} bytes"
            )));
        }
        hasher.update(&chunk);
        file.write(&chunk).await?;
    }
    if let Some(hex) = digest.strip_prefix("sha256:") {
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != hex {
            return Err(StepError::retryable(format!(
                "{what}: the downloaded layer does not match its digest {digest}"
            )));
        }
    }
    Ok(bytes)
}
