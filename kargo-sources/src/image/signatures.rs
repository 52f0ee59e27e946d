//! Finding an image's cosign signatures in its repository and deciding whether one of
//! them vouches for the image ([`Session::verify_image`]), with a per-source cache of the
//! verdicts ([`VerdictCache`]).
//!
//! Lookup order (as Argo CD Image Updater's): Sigstore bundles first, through the
//! referrers API (`GET /v2/<repo>/referrers/<digest>`), or, when the registry does not
//! implement it (404), the referrers tag schema (`sha256-<hex>`, an index of the referrers
//! that cosign maintains itself); then the legacy tag `sha256-<hex>.sig`. The first
//! signature by a configured key over this digest wins; at most
//! [`MAX_SIGNATURES`] bundles and as many legacy layers are read per image.
//!
//! Requests: an image already verified costs nothing (digests are immutable, and so is
//! what a signature says about one). Unsigned: 3 requests (the referrers API or its tag,
//! and the `.sig` tag; 2 on a registry with the referrers API). Each bundle read costs its
//! manifest and its blob; a legacy signature manifest costs one GET plus one blob per
//! layer. A rejected image is asked about again after
//! [`ImageSourceOptions::signature_recheck`](super::ImageSourceOptions::signature_recheck)
//! (a signature may be pushed after the image), or at once when a webhook names its tag.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use kargo_core::source::{SourceError, SourceErrorKind};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use super::client::{MAX_MANIFEST_BYTES, Session, err, read_limited};
use super::cosign::{
    BUNDLE_MEDIA_TYPE, CosignKeys, Rejection, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
    check_bundle, check_simple_signing,
};
use super::meta::MANIFEST_ACCEPT;
use crate::chart::sha256_digest;

/// Bundles (and, separately, legacy signature layers) read at most per image.
pub(crate) const MAX_SIGNATURES: usize = 16;
/// The largest bundle or simple-signing payload accepted.
const MAX_SIGNATURE_BYTES: usize = 1 << 20;
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// What the signatures of one digest say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Signed by a configured key, in this format (`bundle` or `legacy`).
    Signed(&'static str),
    /// Not vouched for: why, in words.
    Rejected(String),
}

/// Verdicts by repository, digest and key set: signed ones kept until evicted, rejected
/// ones for a while.
pub(crate) struct VerdictCache {
    max: usize,
    map: HashMap<String, (Verdict, Instant)>,
    order: VecDeque<String>,
}

impl VerdictCache {
    /// A cache of at most `max` verdicts (the oldest dropped first).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The verdict for `key`: a signed one always, a rejection only when reached within
    /// `recheck` and `allow_rejected`.
    pub(crate) fn get(
        &self,
        key: &str,
        recheck: Duration,
        allow_rejected: bool,
    ) -> Option<Verdict> {
        let (v, at) = self.map.get(key)?;
        match v {
            Verdict::Signed(_) => Some(v.clone()),
            Verdict::Rejected(_) if allow_rejected && at.elapsed() < recheck => Some(v.clone()),
            Verdict::Rejected(_) => None,
        }
    }

    pub(crate) fn put(&mut self, key: String, verdict: Verdict) {
        if self
            .map
            .insert(key.clone(), (verdict, Instant::now()))
            .is_none()
        {
            self.order.push_back(key);
            while self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// `sha256:<hex>` → `sha256-<hex>` (the referrers tag schema; cosign's tag prefix).
fn digest_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

impl Session<'_> {
    /// The cache key of `digest`'s verdict for `keys` in this repository.
    pub(crate) fn verdict_key(&self, digest: &str, keys: &CosignKeys) -> String {
        format!("{}@{digest}\n{}", self.repo.cache_name, keys.fingerprint)
    }

    /// Reads `digest`'s signatures and decides. Registry failures (other than a missing
    /// signature) are errors, not verdicts.
    pub(crate) async fn verify_image(
        &self,
        digest: &str,
        keys: &CosignKeys,
    ) -> Result<Verdict, SourceError> {
        let mut findings: Vec<String> = Vec::new();
        let mut saw_any = false;
        if let Some(bundles) = self.bundle_manifests(digest).await? {
            for (i, d) in bundles.iter().take(MAX_SIGNATURES).enumerate() {
                saw_any = true;
                match self.read_bundle(d).await? {
                    Ok(bytes) => match check_bundle(keys, &bytes, digest) {
                        Ok(()) => return Ok(Verdict::Signed("bundle")),
                        Err(r) => findings.push(format!("bundle {} ({d}): {r}", i + 1)),
                    },
                    Err(r) => findings.push(format!("bundle {} ({d}): {r}", i + 1)),
                }
            }
        }
        let sig_tag = format!("{}.sig", digest_tag(digest));
        if let Some(body) = self.get_optional(&sig_tag, MANIFEST_ACCEPT).await? {
            match serde_json::from_slice::<Manifest>(&body) {
                Ok(m) => {
                    let layers = m
                        .layers
                        .iter()
                        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
                        .take(MAX_SIGNATURES);
                    for (i, layer) in layers.enumerate() {
                        saw_any = true;
                        let what = format!("{sig_tag} signature {}", i + 1);
                        let Some(sig) = layer
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                        else {
                            findings.push(format!("{what}: no {SIGNATURE_ANNOTATION} annotation"));
                            continue;
                        };
                        let payload = match self.blob(&layer.digest).await? {
                            Ok(p) => p,
                            Err(r) => {
                                findings.push(format!("{what}: {r}"));
                                continue;
                            }
                        };
                        match check_simple_signing(keys, &payload, sig, digest) {
                            Ok(()) => return Ok(Verdict::Signed("legacy")),
                            Err(r) => findings.push(format!("{what}: {r}")),
                        }
                    }
                }
                Err(e) => findings.push(format!("{sig_tag}: not a signature manifest: {e}")),
            }
        }
        if !saw_any && findings.is_empty() {
            return Ok(Verdict::Rejected(format!(
                "unsigned: no cosign signature (no Sigstore bundle referring to {digest}, no \
                 {sig_tag} tag)"
            )));
        }
        if !saw_any {
            return Ok(Verdict::Rejected(findings.join("; ")));
        }
        Ok(Verdict::Rejected(format!(
            "no valid cosign signature: {}",
            findings.join("; ")
        )))
    }

    /// The digests of the bundle manifests referring to `digest`: from the referrers API,
    /// else (404) from the referrers tag. `None`: no referrers at all.
    async fn bundle_manifests(&self, digest: &str) -> Result<Option<Vec<String>>, SourceError> {
        self.count();
        let resp = self
            .send(
                Method::GET,
                &self.url(&format!("referrers/{digest}")),
                Some(INDEX_MEDIA_TYPE),
            )
            .await?;
        let body = match resp.status() {
            // Not implemented here: the referrers tag schema.
            StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => {
                match self
                    .get_optional(&digest_tag(digest), INDEX_MEDIA_TYPE)
                    .await?
                {
                    Some(b) => b,
                    None => return Ok(None),
                }
            }
            _ => {
                let resp = self.check(resp, &format!("the referrers of {digest}"))?;
                read_limited(resp, MAX_MANIFEST_BYTES, &self.repo.display).await?
            }
        };
        // An unreadable index holds no bundle this verifier could use.
        let index: Manifest = serde_json::from_slice(&body).unwrap_or_default();
        Ok(Some(
            index
                .manifests
                .into_iter()
                .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE_MEDIA_TYPE))
                .map(|d| d.digest)
                .filter(|d| d.starts_with("sha256:"))
                .collect(),
        ))
    }

    /// The bundle JSON of the bundle manifest `digest` (its first bundle layer).
    async fn read_bundle(&self, digest: &str) -> Result<Result<Vec<u8>, Rejection>, SourceError> {
        let Some(body) = self.get_optional(digest, MANIFEST_ACCEPT).await? else {
            return Ok(Err(Rejection::Malformed(
                "the bundle manifest is missing".into(),
            )));
        };
        if sha256_digest(&body) != digest {
            return Ok(Err(Rejection::Malformed(
                "the bundle manifest does not match its digest".into(),
            )));
        }
        let m: Manifest = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => return Ok(Err(Rejection::Malformed(format!("bad manifest: {e}")))),
        };
        match m.layers.iter().find(|l| l.media_type == BUNDLE_MEDIA_TYPE) {
            Some(layer) => self.blob(&layer.digest).await,
            None => Ok(Err(Rejection::Malformed("no bundle layer".into()))),
        }
    }

    /// A signature blob (bundle or payload), checked against its digest.
    async fn blob(&self, digest: &str) -> Result<Result<Vec<u8>, Rejection>, SourceError> {
        if !digest.starts_with("sha256:") {
            return Ok(Err(Rejection::Malformed(format!(
                "unsupported blob digest {digest:?}"
            ))));
        }
        self.count();
        let resp = self
            .send(Method::GET, &self.url(&format!("blobs/{digest}")), None)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Err(Rejection::Malformed(format!(
                "blob {digest} is missing"
            ))));
        }
        let resp = self.check(resp, &format!("signature blob {digest}"))?;
        let bytes = read_limited(resp, MAX_SIGNATURE_BYTES, &self.repo.display).await?;
        if sha256_digest(&bytes) != digest {
            return Ok(Err(Rejection::Malformed(format!(
                "blob {digest} does not match its digest"
            ))));
        }
        Ok(Ok(bytes))
    }

    /// GET of a manifest by tag or digest; `None` when it does not exist.
    async fn get_optional(
        &self,
        reference: &str,
        accept: &str,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        self.count();
        let resp = self
            .send(
                Method::GET,
                &self.url(&format!("manifests/{reference}")),
                Some(accept),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &format!("signature manifest {reference}"))?;
        Ok(Some(
            read_limited(resp, MAX_MANIFEST_BYTES, &self.repo.display).await?,
        ))
    }

    fn count(&self) {
        self.inner
            .stats
            .signature_gets
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether `tag` is one cosign writes next to images (`sha256-<hex>` with an optional
/// `.sig`, `.att` or `.sbom` suffix): never an image candidate when signatures are
/// required.
pub(crate) fn is_cosign_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = [".sig", ".att", ".sbom"]
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An error for a subscription none of whose candidates is signed: every rejection, by
/// tag and digest.
pub(crate) fn none_signed(display: &str, rejected: &[(String, String, String)]) -> SourceError {
    let list: Vec<String> = rejected
        .iter()
        .map(|(tag, digest, why)| format!("{tag} ({digest}): {why}"))
        .collect();
    err(
        SourceErrorKind::Other,
        format!(
            "{display}: no image has a valid cosign signature by the configured key \
             (verification.cosign); rejected: {}",
            list.join(" | ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags() {
        let hex = "a".repeat(64);
        for t in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
        ] {
            assert!(is_cosign_tag(&t), "{t}");
        }
        for t in ["1.0.0", "sha256-abc.sig", &format!("sha256-{hex}.foo")] {
            assert!(!is_cosign_tag(t), "{t}");
        }
        assert_eq!(digest_tag("sha256:abc"), "sha256-abc");
    }

    #[tokio::test(start_paused = true)]
    async fn signed_verdicts_stay_rejected_ones_expire() {
        let mut c = VerdictCache::new(2);
        let recheck = Duration::from_secs(60);
        c.put("a".into(), Verdict::Signed("legacy"));
        c.put("b".into(), Verdict::Rejected("unsigned".into()));
        assert_eq!(c.get("a", recheck, true), Some(Verdict::Signed("legacy")));
        assert!(c.get("b", recheck, true).is_some());
        assert!(c.get("b", recheck, false).is_none(), "a webhook named it");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(c.get("b", recheck, true).is_none());
        assert!(c.get("a", recheck, true).is_some());
        c.put("c".into(), Verdict::Signed("bundle"));
        assert!(c.get("a", recheck, true).is_none(), "the oldest is evicted");
    }
}
