//! `verification.cosign` against the real registry started by `ci/test.sh` (Debian's
//! `docker-registry`, `TEST_OCI_REGISTRY`): the tests sign images themselves, byte for
//! byte in the two formats cosign writes, with P-256 keys made and used by the `openssl`
//! binary (an implementation independent of the verifier's):
//!
//! - legacy: tag `sha256-<hex>.sig`, an OCI manifest whose layers are simple-signing
//!   payloads with the base64 DER signature in `dev.cosignproject.cosign/signature`;
//! - cosign 3's default: a Sigstore bundle v0.3 (DSSE envelope, in-toto Statement v1,
//!   predicate `https://sigstore.dev/cosign/sign/v1`) in an OCI 1.1 artifact manifest with
//!   `subject`; this registry has no referrers API (it answers 404, checked below), so, as
//!   cosign does there, the referrer is also listed in the index at tag `sha256-<hex>`.
//!
//! Warehouses are read from YAML and run through `kargo_sources::warehouse`, as the
//! controller runs them: only correctly signed images become Freight, and a Warehouse
//! whose candidates are all rejected fails with each rejected tag, digest and reason.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use kargo_core::expr::ExprEngine;
use kargo_core::model::Warehouse;
use kargo_core::source::{DiscoveryContext, DiscoveryHints, SourceRegistry};
use kargo_sources::chart::sha256_digest;
use kargo_sources::image::{ImageSource, ImageSourceOptions};
use kargo_sources::warehouse::{DiscoverError, FreightDecision, discover, freight_from};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const IN_TOTO: &str = "application/vnd.in-toto+json";

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "kargo-cosign/{}-{}-{}",
        name.replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------
// Keys: openssl

/// A P-256 key pair made by `openssl`, as `cosign generate-key-pair` makes one (the
/// public half in `cosign.pub`'s PEM form).
struct Key {
    dir: tempfile::TempDir,
    public_pem: String,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (ci/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Key {
    fn generate() -> Key {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let key = key.to_str().unwrap();
        openssl(&[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            key,
        ]);
        let public_pem = String::from_utf8(openssl(&["ec", "-in", key, "-pubout"])).unwrap();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        Key { dir, public_pem }
    }

    /// ECDSA P-256 over SHA-256 of `data`, ASN.1 DER (what cosign's `SignASN1` makes).
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let input: PathBuf = self.dir.path().join(format!("in-{n}"));
        std::fs::write(&input, data).unwrap();
        let key = self.dir.path().join("key.pem");
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            key.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
    }

    /// The DER SubjectPublicKeyInfo.
    fn public_der(&self) -> Vec<u8> {
        let body: String = self
            .public_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// The registry and cosign's two formats

/// A manifest as pushed: digest, size, media type.
#[derive(Clone, Debug)]
struct Pushed {
    digest: String,
    size: usize,
    media_type: &'static str,
}

struct Reg {
    host: String,
    repo: String,
    client: Client,
}

impl Reg {
    async fn new(test: &str) -> Option<Reg> {
        let host = kargo_core::testing::server_env(test, "TEST_OCI_REGISTRY")?;
        let repo = unique(test);
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        let r = Reference::with_tag(host.clone(), repo.clone(), "x".to_owned());
        client
            .auth(&r, &RegistryAuth::Anonymous, RegistryOperation::Push)
            .await
            .unwrap();
        Some(Reg { host, repo, client })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.host, self.repo)
    }

    fn reference(&self, r: &str) -> Reference {
        if r.starts_with("sha256:") {
            Reference::with_digest(self.host.clone(), self.repo.clone(), r.to_owned())
        } else {
            Reference::with_tag(self.host.clone(), self.repo.clone(), r.to_owned())
        }
    }

    async fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let d = sha256_digest(bytes);
        self.client
            .push_blob(&self.reference(&d), bytes.to_vec(), &d)
            .await
            .unwrap();
        (d, bytes.len())
    }

    /// Pushes `manifest` (these exact bytes) at `tag`, or by digest.
    async fn manifest(&self, tag: Option<&str>, body: Vec<u8>, media_type: &'static str) -> Pushed {
        let digest = sha256_digest(&body);
        let size = body.len();
        self.client
            .push_manifest_raw(
                &self.reference(tag.unwrap_or(&digest)),
                body,
                media_type.parse().unwrap(),
            )
            .await
            .unwrap();
        Pushed {
            digest,
            size,
            media_type,
        }
    }

    /// A one-layer image (`nonce` makes it unique).
    async fn image(&self, tag: Option<&str>, nonce: &str, arch: &str) -> Pushed {
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Env": [format!("NONCE={}/{nonce}", self.repo)]},
        }))
        .unwrap();
        let (cd, cs) = self.blob(&config).await;
        let (ld, ls) = self.blob(b"kargo cosign test layer").await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}],
        });
        self.manifest(tag, serde_json::to_vec(&m).unwrap(), OCI_MANIFEST)
            .await
    }

    /// An index of two platform images.
    async fn index(&self, tag: &str, nonce: &str) -> (Pushed, Pushed) {
        let amd = self.image(None, &format!("{nonce}-amd64"), "amd64").await;
        let arm = self.image(None, &format!("{nonce}-arm64"), "arm64").await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.size,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.size,
                 "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        });
        let index = self
            .manifest(Some(tag), serde_json::to_vec(&m).unwrap(), OCI_INDEX)
            .await;
        (index, amd)
    }

    /// cosign's legacy format: the `sha256-<hex>.sig` tag of `image`, one simple-signing
    /// layer per `(key, digest named in the payload)`.
    async fn sign_legacy(&self, image: &Pushed, signatures: &[(&Key, &str)]) {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (key, named) in signatures {
            // Go's encoding/json of cosign's payload (sigstore payload.Cosign), compact.
            let payload = format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{}\"}},\"image\":\
                 {{\"docker-manifest-digest\":\"{named}\"}},\"type\":\"cosign container \
                 image signature\"}},\"optional\":null}}",
                self.url()
            );
            let sig = b64(&key.sign(payload.as_bytes()));
            let (d, s) = self.blob(payload.as_bytes()).await;
            diff_ids.push(d.clone());
            layers.push(json!({
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": s,
                "digest": d,
                "annotations": {"dev.cosignproject.cosign/signature": sig},
            }));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "", "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {},
        }))
        .unwrap();
        let (cd, cs) = self.blob(&config).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": cs, "digest": cd},
            "layers": layers,
        });
        let tag = format!("{}.sig", image.digest.replacen(':', "-", 1));
        self.manifest(Some(&tag), serde_json::to_vec(&m).unwrap(), OCI_MANIFEST)
            .await;
    }

    /// cosign 3's format: one Sigstore bundle per `(key, digest named in the statement)`,
    /// each an OCI 1.1 artifact manifest whose `subject` is `image`, listed in the
    /// referrers index at tag `sha256-<hex>` (this registry has no referrers API).
    async fn sign_bundle(&self, image: &Pushed, signatures: &[(&Key, &str)]) {
        let (empty, empty_size) = self.blob(b"{}").await;
        let mut entries = Vec::new();
        for (key, named) in signatures {
            let (alg, hex) = named.split_once(':').unwrap();
            let statement = serde_json::to_vec(&json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": self.url(), "digest": {alg: hex}}],
                "predicateType": SIGN_PREDICATE,
                "predicate": {},
            }))
            .unwrap();
            // DSSE PAE: "DSSEv1 <len> <type> <len> <payload>".
            let mut pae =
                format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), statement.len()).into_bytes();
            pae.extend_from_slice(&statement);
            let sig = key.sign(&pae);
            let hint = b64(&sha256_raw(&key.public_der()));
            let bundle = serde_json::to_vec(&json!({
                "mediaType": BUNDLE,
                "verificationMaterial": {"publicKey": {"hint": hint}},
                "dsseEnvelope": {
                    "payload": b64(&statement),
                    "payloadType": IN_TOTO,
                    "signatures": [{"sig": b64(&sig), "keyid": ""}],
                },
            }))
            .unwrap();
            let (bd, bs) = self.blob(&bundle).await;
            let annotations = json!({
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": SIGN_PREDICATE,
                "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
            });
            let m = json!({
                "mediaType": OCI_MANIFEST,
                "schemaVersion": 2,
                "artifactType": BUNDLE,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": empty_size},
                "layers": [{
                    "digest": bd, "mediaType": BUNDLE, "size": bs,
                    "annotations": {"org.opencontainers.image.title": format!("{}.sigstore.json", bd.replacen(':', "-", 1))},
                }],
                "subject": {"digest": image.digest, "mediaType": image.media_type, "size": image.size},
                "annotations": annotations,
            });
            let referrer = self
                .manifest(None, serde_json::to_vec(&m).unwrap(), OCI_MANIFEST)
                .await;
            entries.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": referrer.digest,
                "size": referrer.size,
                "artifactType": BUNDLE,
                "annotations": annotations,
            }));
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        let tag = image.digest.replacen(':', "-", 1);
        self.manifest(Some(&tag), serde_json::to_vec(&index).unwrap(), OCI_INDEX)
            .await;
    }

    /// The status of `GET /v2/<repo>/referrers/<digest>`.
    async fn referrers_status(&self, digest: &str) -> u16 {
        reqwest::Client::new()
            .get(format!(
                "http://{}/v2/{}/referrers/{digest}",
                self.host, self.repo
            ))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn sha256_raw(bytes: &[u8]) -> Vec<u8> {
    let hex = sha256_digest(bytes);
    let hex = hex.trim_start_matches("sha256:");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Warehouses

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// A Warehouse with one image subscription: `extra` (YAML lines at the subscription's
/// level) and, when given, `verification.cosign.publicKey`.
fn warehouse(name: &str, url: &str, extra: &str, key: Option<&str>) -> Warehouse {
    let mut yaml = format!(
        "apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata:
  name: {name}
  namespace: demo
spec:
  subscriptions:
  - image:
      repoURL: {url}
{}",
        indent(extra, 6)
    );
    if let Some(pem) = key {
        yaml.push_str(&format!(
            "      verification:\n        cosign:\n          publicKey: |\n{}",
            indent(pem, 12)
        ));
    }
    let w: Warehouse = yaml_serde::from_str(&yaml).unwrap();
    assert_eq!(w.validate(), Vec::new(), "{yaml}");
    w
}

fn registry(src: &ImageSource) -> SourceRegistry {
    let mut r = SourceRegistry::new();
    r.register(src.clone()).unwrap();
    r
}

/// The Freight's image (tag, digest), or the Warehouse's error.
async fn refresh(
    src: &ImageSource,
    w: &Warehouse,
    ctx: &DiscoveryContext,
) -> Result<(String, String), String> {
    let found = discover(w, "demo", &registry(src), ctx)
        .await
        .map_err(|e: DiscoverError| e.to_string())?;
    match freight_from(w, &found, &ExprEngine::new()).unwrap() {
        FreightDecision::Created(f) => Ok((f.images[0].tag.clone(), f.images[0].digest.clone())),
        other => Err(format!("no Freight: {other:?}")),
    }
}

/// The tags a Warehouse's discovery lists, best first.
async fn listed(src: &ImageSource, w: &Warehouse) -> Vec<String> {
    let found = discover(
        w,
        "demo",
        &registry(src),
        &DiscoveryContext::new("demo", "w"),
    )
    .await
    .unwrap();
    match &found.subscriptions[0].discovery {
        kargo_core::source::Discovery::Images { references, .. } => {
            references.iter().map(|r| r.tag.clone()).collect()
        }
        other => panic!("{other:?}"),
    }
}

/// What a Warehouse's discovery left out, with why.
async fn rejected_of(
    src: &ImageSource,
    w: &Warehouse,
) -> Vec<kargo_core::source::RejectedArtifact> {
    let found = discover(
        w,
        "demo",
        &registry(src),
        &DiscoveryContext::new("demo", "w"),
    )
    .await
    .unwrap();
    found.subscriptions[0].discovery.rejected().to_vec()
}

fn fast() -> ImageSourceOptions {
    let mut o = ImageSourceOptions::default();
    o.rate_limit = 100_000.0;
    o
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn only_correctly_signed_images_become_freight_in_both_formats() {
    let Some(reg) = Reg::new("only_correctly_signed_images_become_freight_in_both_formats").await
    else {
        return;
    };
    let key = Key::generate();
    let other_key = Key::generate();
    let legacy = reg.image(Some("1.0.0"), "legacy", "amd64").await;
    reg.sign_legacy(&legacy, &[(&key, &legacy.digest)]).await;
    let bundled = reg.image(Some("1.1.0"), "bundle", "amd64").await;
    reg.sign_bundle(&bundled, &[(&key, &bundled.digest)]).await;
    let unsigned = reg.image(Some("1.2.0"), "unsigned", "amd64").await;
    let legacy_other_key = reg.image(Some("1.3.0"), "legacy-other-key", "amd64").await;
    reg.sign_legacy(&legacy_other_key, &[(&other_key, &legacy_other_key.digest)])
        .await;
    let bundle_other_key = reg.image(Some("1.3.1"), "bundle-other-key", "amd64").await;
    reg.sign_bundle(&bundle_other_key, &[(&other_key, &bundle_other_key.digest)])
        .await;
    // Valid signatures by the key, but of other images (a signature copied over).
    let legacy_moved = reg.image(Some("1.4.0"), "legacy-moved", "amd64").await;
    reg.sign_legacy(&legacy_moved, &[(&key, &legacy.digest)])
        .await;
    let bundle_moved = reg.image(Some("1.4.1"), "bundle-moved", "amd64").await;
    reg.sign_bundle(&bundle_moved, &[(&key, &bundled.digest)])
        .await;
    // The registry has no referrers API: the referrers tag is what cosign writes here.
    assert_eq!(reg.referrers_status(&bundled.digest).await, 404);

    let src = ImageSource::new(fast());
    let ctx = DiscoveryContext::new("demo", "w");
    let url = reg.url();
    let pem = key.public_pem.as_str();

    // Unverified, the newest tag wins; verified, only the signed ones are candidates.
    let open = warehouse("open", &url, "", None);
    assert_eq!(refresh(&src, &open, &ctx).await.unwrap().0, "1.4.1");
    let signed = warehouse("signed", &url, "", Some(pem));
    assert_eq!(
        refresh(&src, &signed, &ctx).await.unwrap(),
        ("1.1.0".to_owned(), bundled.digest.clone())
    );
    assert_eq!(listed(&src, &signed).await, ["1.1.0", "1.0.0"]);
    // The newer images left out are in the discovery, with why: the Warehouse shows them.
    let left_out = rejected_of(&src, &signed).await;
    let bundle_moved_ref = left_out
        .iter()
        .find(|r| r.reference.contains(":1.4.1@"))
        .unwrap_or_else(|| panic!("1.4.1 is not among the left out: {left_out:?}"));
    assert!(
        bundle_moved_ref.reason.starts_with("verification.cosign: "),
        "{bundle_moved_ref:?}"
    );

    // Each format on its own.
    let only = |tag: &str| {
        warehouse(
            &format!("only-{}", tag.replace('.', "-")),
            &url,
            &format!("allowTagsRegexes: ['^{}$']", tag.replace('.', "\\.")),
            Some(pem),
        )
    };
    assert_eq!(
        refresh(&src, &only("1.0.0"), &ctx).await.unwrap(),
        ("1.0.0".to_owned(), legacy.digest.clone())
    );
    assert_eq!(
        refresh(&src, &only("1.1.0"), &ctx).await.unwrap(),
        ("1.1.0".to_owned(), bundled.digest.clone())
    );

    // Each rejected image: no Freight, and the Warehouse says which image and why.
    let cases = [
        (
            "1.2.0",
            &unsigned,
            "unsigned: no cosign signature".to_owned(),
        ),
        (
            "1.3.0",
            &legacy_other_key,
            "signature 1: not signed by the configured public key".to_owned(),
        ),
        (
            "1.3.1",
            &bundle_other_key,
            "not signed by the configured public key".to_owned(),
        ),
        (
            "1.4.0",
            &legacy_moved,
            format!(
                "signed by the configured key, but for another image ({})",
                legacy.digest
            ),
        ),
        (
            "1.4.1",
            &bundle_moved,
            format!(
                "signed by the configured key, but for another image ({})",
                bundled.digest
            ),
        ),
    ];
    for (tag, image, reason) in &cases {
        let e = refresh(&src, &only(tag), &ctx).await.unwrap_err();
        assert!(
            e.contains("no image has a valid cosign signature by the configured key"),
            "{tag}: {e}"
        );
        assert!(
            e.contains(&format!("{tag} ({})", image.digest)),
            "{tag}: {e}"
        );
        assert!(e.contains(reason.as_str()), "{tag}: {e}");
    }
    // All of them in one Warehouse: every one is listed with its reason.
    let rejected = warehouse(
        "rejected",
        &url,
        "allowTagsRegexes: ['^1\\.[234]\\.']",
        Some(pem),
    );
    let e = refresh(&src, &rejected, &ctx).await.unwrap_err();
    for (tag, image, reason) in &cases {
        let at = e
            .find(&format!("{tag} ({})", image.digest))
            .unwrap_or_else(|| panic!("{tag}: {e}"));
        let entry = e[at..].split(" | ").next().unwrap();
        assert!(entry.contains(reason.as_str()), "{tag}: {entry}");
    }

    // The other key verifies what it signed, and nothing else.
    let theirs = warehouse("theirs", &url, "", Some(&other_key.public_pem));
    assert_eq!(listed(&src, &theirs).await, ["1.3.1", "1.3.0"]);
    // Both keys (rotation): either key's signatures count.
    let both = format!("{pem}{}", other_key.public_pem);
    let rotated = warehouse("rotated", &url, "", Some(&both));
    assert_eq!(
        listed(&src, &rotated).await,
        ["1.3.1", "1.3.0", "1.1.0", "1.0.0"]
    );
}

#[tokio::test]
async fn verdicts_are_cached_per_digest_and_rechecked_when_rejected() {
    let Some(reg) = Reg::new("verdicts_are_cached_per_digest_and_rechecked_when_rejected").await
    else {
        return;
    };
    let key = Key::generate();
    let legacy = reg.image(Some("1.0.0"), "legacy", "amd64").await;
    reg.sign_legacy(&legacy, &[(&key, &legacy.digest)]).await;
    let bundled = reg.image(Some("1.1.0"), "bundle", "amd64").await;
    reg.sign_bundle(&bundled, &[(&key, &bundled.digest)]).await;
    let later = reg.image(Some("2.0.0"), "signed-later", "amd64").await;

    let src = ImageSource::new(fast());
    let ctx = DiscoveryContext::new("demo", "w");
    let url = reg.url();
    let w = warehouse("w", &url, "", Some(&key.public_pem));
    let sig = |src: &ImageSource| src.stats().signature_gets;

    // First poll: 2.0.0 unsigned (referrers API 404, referrers tag 404, .sig tag 404),
    // 1.1.0 by bundle (referrers API 404, referrers tag, bundle manifest, bundle blob),
    // 1.0.0 legacy (referrers API 404, referrers tag 404, .sig manifest, payload blob).
    assert_eq!(
        refresh(&src, &w, &ctx).await.unwrap(),
        ("1.1.0".to_owned(), bundled.digest.clone())
    );
    assert_eq!(sig(&src), 3 + 4 + 4, "{:?}", src.stats());
    // A poll with nothing new asks for no signature at all (the rejection of 2.0.0 is
    // kept for `signature_recheck`).
    let before = src.stats();
    refresh(&src, &w, &ctx).await.unwrap();
    assert_eq!(sig(&src), before.signature_gets);
    assert_eq!(
        src.stats().total() - before.total(),
        1 + 3,
        "the tag list and one HEAD per tag: {:?}",
        src.stats()
    );

    // 2.0.0 is signed now. A regular poll still trusts the recent rejection; a webhook
    // naming the tag looks again at once, and 2.0.0 becomes Freight.
    reg.sign_bundle(&later, &[(&key, &later.digest)]).await;
    assert_eq!(refresh(&src, &w, &ctx).await.unwrap().0, "1.1.0");
    let hinted = ctx.clone().with_hints(DiscoveryHints {
        tags: ["2.0.0".to_owned()].into_iter().collect(),
    });
    let before = sig(&src);
    assert_eq!(
        refresh(&src, &w, &hinted).await.unwrap(),
        ("2.0.0".to_owned(), later.digest.clone())
    );
    assert_eq!(sig(&src) - before, 4, "only 2.0.0's signatures are read");

    // With no recheck delay, a rejected image is asked about on every poll (and a signed
    // one still never again).
    let mut o = fast();
    o.signature_recheck = std::time::Duration::ZERO;
    let eager = ImageSource::new(o);
    let unsigned = reg.image(Some("3.0.0"), "unsigned", "amd64").await;
    refresh(&eager, &w, &ctx).await.unwrap();
    let first = sig(&eager);
    assert_eq!(first, 3 + 4 + 4 + 4, "3.0.0, 2.0.0, 1.1.0, 1.0.0");
    refresh(&eager, &w, &ctx).await.unwrap();
    assert_eq!(
        sig(&eager) - first,
        3,
        "only unsigned {} again",
        unsigned.digest
    );

    // Without verification, no signature request is ever made.
    let plain = ImageSource::new(fast());
    refresh(&plain, &warehouse("plain", &url, "", None), &ctx)
        .await
        .unwrap();
    assert_eq!(sig(&plain), 0);
}

#[tokio::test]
async fn multi_arch_images_are_verified_by_the_digest_freight_records() {
    let Some(reg) = Reg::new("multi_arch_images_are_verified_by_the_digest_freight_records").await
    else {
        return;
    };
    let key = Key::generate();
    // cosign signs the digest it is given: usually the index's.
    let (index, _) = reg.index("1.0.0", "signed-index").await;
    reg.sign_bundle(&index, &[(&key, &index.digest)]).await;
    // Only a platform image of this one is signed, not the index Freight would record.
    let (index2, amd) = reg.index("2.0.0", "signed-child").await;
    reg.sign_legacy(&amd, &[(&key, &amd.digest)]).await;

    let src = ImageSource::new(fast());
    let ctx = DiscoveryContext::new("demo", "w");
    let url = reg.url();
    let w = warehouse("w", &url, "platform: linux/amd64", Some(&key.public_pem));
    assert_eq!(
        refresh(&src, &w, &ctx).await.unwrap(),
        ("1.0.0".to_owned(), index.digest.clone())
    );
    let only2 = warehouse(
        "only2",
        &url,
        "platform: linux/amd64\nallowTagsRegexes: ['^2']",
        Some(&key.public_pem),
    );
    let e = refresh(&src, &only2, &ctx).await.unwrap_err();
    assert!(e.contains(&format!("2.0.0 ({})", index2.digest)), "{e}");
    assert!(e.contains("unsigned"), "{e}");
}

#[tokio::test]
async fn cosign_tags_are_not_image_candidates_when_signatures_are_required() {
    let Some(reg) =
        Reg::new("cosign_tags_are_not_image_candidates_when_signatures_are_required").await
    else {
        return;
    };
    let key = Key::generate();
    let a = reg.image(Some("a"), "a", "amd64").await;
    reg.sign_legacy(&a, &[(&key, &a.digest)]).await;
    let b = reg.image(Some("b"), "b", "amd64").await;
    reg.sign_bundle(&b, &[(&key, &b.digest)]).await;
    let src = ImageSource::new(fast());
    let url = reg.url();
    // Lexically, `sha256-…` tags sort after `a` and `b`: without verification they are
    // candidates (as in Kargo; here the referrers index even fails the discovery, being
    // an index without platforms), with it they are skipped.
    let open = warehouse("open", &url, "imageSelectionStrategy: Lexical", None);
    let e = discover(
        &open,
        "demo",
        &registry(&src),
        &DiscoveryContext::new("demo", "w"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("tag \"sha256-"), "{e}");
    let w = warehouse(
        "w",
        &url,
        "imageSelectionStrategy: Lexical",
        Some(&key.public_pem),
    );
    assert_eq!(listed(&src, &w).await, ["b", "a"]);
    let newest = warehouse(
        "newest",
        &url,
        "imageSelectionStrategy: NewestBuild",
        Some(&key.public_pem),
    );
    let mut tags = listed(&src, &newest).await;
    tags.sort();
    assert_eq!(tags, ["a", "b"]);
}

// ---------------------------------------------------------------------------------------
// A registry with the referrers API

/// What a registry answers for one path: content type, digest header, body.
type Served = std::collections::HashMap<String, (String, String, String)>;

/// Copies what the real registry answers for `paths` (each `/v2/<repo>/…`, GET).
async fn mirror(reg: &Reg, paths: &[String]) -> Served {
    let http = reqwest::Client::new();
    let mut out = Served::new();
    for p in paths {
        let resp = http
            .get(format!("http://{}{p}", reg.host))
            .header(
                "accept",
                format!("{OCI_MANIFEST}, {OCI_INDEX}, application/json"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{p}");
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (ct, dcd) = (header("content-type"), header("docker-content-digest"));
        out.insert(p.clone(), (ct, dcd, resp.text().await.unwrap()));
    }
    out
}

/// A registry stub serving `served` (GET and HEAD; anything else 404) and recording every
/// request target: one that implements `GET /v2/<repo>/referrers/<digest>`, which
/// docker-registry 2.8 does not.
async fn serve(served: Served, seen: Arc<Mutex<Vec<String>>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(served);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (served, seen) = (served.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let mut first = head.lines().next().unwrap_or("").split_whitespace();
                        let method = first.next().unwrap_or("").to_owned();
                        let target = first.next().unwrap_or("/").to_owned();
                        seen.lock().unwrap().push(format!("{method} {target}"));
                        let path = target.split('?').next().unwrap_or("").to_owned();
                        let resp = match served.get(&path) {
                            Some((ct, dcd, body)) => format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nDocker-Content-Digest: \
                                 {dcd}\r\nContent-Length: {}\r\n\r\n{}",
                                body.len(),
                                if method == "HEAD" { "" } else { body }
                            ),
                            None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
                        };
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn bundles_are_found_through_the_referrers_api_where_the_registry_has_it() {
    let Some(reg) =
        Reg::new("bundles_are_found_through_the_referrers_api_where_the_registry_has_it").await
    else {
        return;
    };
    let key = Key::generate();
    let other_key = Key::generate();
    // 1.1.0: a bundle by another key and one by the key; 1.2.0: signed by another key.
    let signed = reg.image(Some("1.1.0"), "signed", "amd64").await;
    reg.sign_bundle(
        &signed,
        &[(&other_key, &signed.digest), (&key, &signed.digest)],
    )
    .await;
    let theirs = reg.image(Some("1.2.0"), "theirs", "amd64").await;
    reg.sign_bundle(&theirs, &[(&other_key, &theirs.digest)])
        .await;

    // A registry with the referrers API: it answers /referrers/<digest> with the index
    // the real registry keeps at the referrers tag, and has no such tag itself.
    let v2 = format!("/v2/{}", reg.repo);
    let tag_of = |d: &str| d.replacen(':', "-", 1);
    let mut paths = vec![format!("{v2}/tags/list")];
    for img in [&signed, &theirs] {
        paths.push(format!("{v2}/manifests/{}", img.digest));
        paths.push(format!("{v2}/manifests/{}", tag_of(&img.digest)));
    }
    paths.push(format!("{v2}/manifests/1.1.0"));
    paths.push(format!("{v2}/manifests/1.2.0"));
    let mut served = mirror(&reg, &paths).await;
    let mut more = Vec::new();
    for (path, (_, _, body)) in &served {
        let doc: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        for d in doc["manifests"].as_array().into_iter().flatten() {
            more.push(format!("{v2}/manifests/{}", d["digest"].as_str().unwrap()));
        }
        if path.ends_with("/1.1.0") || path.ends_with("/1.2.0") {
            more.push(format!(
                "{v2}/blobs/{}",
                doc["config"]["digest"].as_str().unwrap()
            ));
        }
    }
    let referrers = mirror(&reg, &more).await;
    for (_, _, body) in referrers.values() {
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        for l in doc["layers"].as_array().into_iter().flatten() {
            more.push(format!("{v2}/blobs/{}", l["digest"].as_str().unwrap()));
        }
    }
    served.extend(mirror(&reg, &more).await);
    for img in [&signed, &theirs] {
        let index = served
            .remove(&format!("{v2}/manifests/{}", tag_of(&img.digest)))
            .unwrap();
        served.insert(format!("{v2}/referrers/{}", img.digest), index);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let host = serve(served, seen.clone()).await;

    let src = ImageSource::new(fast());
    let ctx = DiscoveryContext::new("demo", "w");
    let url = format!("{host}/{}", reg.repo);
    let w = warehouse("w", &url, "", Some(&key.public_pem));
    assert_eq!(
        refresh(&src, &w, &ctx).await.unwrap(),
        ("1.1.0".to_owned(), signed.digest.clone())
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&format!("GET {v2}/referrers/{}", signed.digest)),
        "{seen:#?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.contains("/manifests/sha256-") && !s.ends_with(".sig")),
        "the referrers tag is not read when the API answers: {seen:#?}"
    );
    // 1.2.0 (by another key) was looked for in the legacy format too; 1.1.0, verified
    // by its bundle, was not.
    assert!(
        seen.contains(&format!(
            "GET {v2}/manifests/{}.sig",
            tag_of(&theirs.digest)
        )),
        "{seen:#?}"
    );
    assert!(
        !seen.contains(&format!(
            "GET {v2}/manifests/{}.sig",
            tag_of(&signed.digest)
        )),
        "{seen:#?}"
    );
    let only = warehouse(
        "only",
        &url,
        "allowTagsRegexes: ['^1\\.2']",
        Some(&key.public_pem),
    );
    let e = refresh(&src, &only, &ctx).await.unwrap_err();
    assert!(e.contains(&format!("1.2.0 ({})", theirs.digest)), "{e}");
    assert!(
        e.contains("bundle 1") && e.contains("not signed by the configured public key"),
        "{e}"
    );
}

/// 200 Warehouses subscribed to one repository, refreshed at once in one pass: each
/// digest's signatures are read once (the others wait for that verdict), so the pass costs
/// what one Warehouse's first refresh costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_warehouses_verify_each_digest_once() {
    let Some(reg) = Reg::new("concurrent_warehouses_verify_each_digest_once").await else {
        return;
    };
    let key = Key::generate();
    let legacy = reg.image(Some("1.0.0"), "legacy", "amd64").await;
    reg.sign_legacy(&legacy, &[(&key, &legacy.digest)]).await;
    let bundled = reg.image(Some("1.1.0"), "bundle", "amd64").await;
    reg.sign_bundle(&bundled, &[(&key, &bundled.digest)]).await;
    reg.image(Some("1.2.0"), "unsigned", "amd64").await;

    let src = ImageSource::new(fast());
    let ctx = DiscoveryContext::new("demo", "w").with_fresh_after(std::time::Instant::now());
    let w = warehouse("w", &reg.url(), "", Some(&key.public_pem));
    let runs: Vec<_> = (0..200)
        .map(|_| {
            let (src, ctx, w) = (src.clone(), ctx.clone(), w.clone());
            tokio::spawn(async move { refresh(&src, &w, &ctx).await })
        })
        .collect();
    for r in runs {
        assert_eq!(
            r.await.unwrap().unwrap(),
            ("1.1.0".to_owned(), bundled.digest.clone())
        );
    }
    // 1.2.0 unsigned (3), 1.1.0 by bundle (4), 1.0.0 legacy (4).
    assert_eq!(src.stats().signature_gets, 3 + 4 + 4, "{:?}", src.stats());
}
