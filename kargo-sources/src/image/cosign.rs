//! Checking one cosign signature against the configured public keys (ECDSA P-256 over
//! SHA-256, ASN.1 DER signatures), in both formats cosign writes:
//!
//! - **Simple signing** (the legacy `sha256-<hex>.sig` tag): the signature (base64, in the
//!   layer annotation `dev.cosignproject.cosign/signature`) covers the payload blob's
//!   bytes; the payload's `critical.image.docker-manifest-digest` names the image.
//! - **Sigstore bundle** (`application/vnd.dev.sigstore.bundle.v0.3+json`, cosign 3's
//!   default): `dsseEnvelope{payload, payloadType, signatures[{sig, keyid}]}`; a signature
//!   covers the DSSE pre-authentication encoding ([`pae`]) of the payload, an in-toto
//!   Statement whose `predicateType` is `https://sigstore.dev/cosign/sign/v1` and whose
//!   `subject[].digest` names the image.
//!
//! The signature is checked first and the digest binding second: only what the key signed
//! is believed. No transparency log or certificate is consulted (key-based verification,
//! as `cosign verify --key … --insecure-ignore-tlog` does).

use base64::Engine as _;
use kargo_core::model::CosignVerification;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// The media type of a simple-signing payload layer.
pub(crate) const SIMPLE_SIGNING_MEDIA_TYPE: &str =
    "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding a simple-signing signature (base64 DER).
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type (and referrer `artifactType`) of a Sigstore bundle.
pub(crate) const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type of an in-toto statement.
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement types accepted.
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// The predicate type of `cosign sign` in the bundle format.
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The public keys a signature must be made with (any one of them).
#[derive(Debug, Clone)]
pub(crate) struct CosignKeys {
    keys: Vec<VerifyingKey>,
    /// SHA-256 of the keys' points, hex: identifies the key set in the verdict cache.
    pub(crate) fingerprint: String,
}

impl CosignKeys {
    /// Loads the keys of `verification.cosign`; `Err` says what is wrong.
    pub(crate) fn new(cfg: &CosignVerification) -> Result<Self, String> {
        let points = cfg.public_key_points()?;
        let mut hasher = Sha256::new();
        let mut keys = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            let key = VerifyingKey::from_sec1_bytes(p).map_err(|_| {
                format!(
                    "PEM block {}: not a point of the P-256 curve (a damaged key?)",
                    i + 1
                )
            })?;
            hasher.update(p);
            keys.push(key);
        }
        Ok(Self {
            keys,
            fingerprint: hex(&hasher.finalize()),
        })
    }

    /// Whether `der` (an ASN.1 DER ECDSA signature) signs SHA-256(`message`) with one of
    /// the keys.
    fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        let Ok(sig) = Signature::from_der(der) else {
            return false;
        };
        self.keys.iter().any(|k| k.verify(message, &sig).is_ok())
    }
}

/// Why one signature does not vouch for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The signature is not by any configured key (another key, or damaged).
    NotByKey,
    /// Signed by a configured key, but for another image: the signed digests.
    OtherImage(Vec<String>),
    /// Signed by a configured key, but not a cosign image signature (an attestation of
    /// another predicate type).
    NotASignature(String),
    /// The signature artifact cannot be read.
    Malformed(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotByKey => f.write_str("not signed by the configured public key"),
            Rejection::OtherImage(d) if d.is_empty() => {
                f.write_str("signed by the configured key, but names no image digest")
            }
            Rejection::OtherImage(d) => write!(
                f,
                "signed by the configured key, but for another image ({})",
                d.join(", ")
            ),
            Rejection::NotASignature(t) => write!(
                f,
                "signed by the configured key, but an attestation of predicate type {t:?}, \
                 not a cosign signature"
            ),
            Rejection::Malformed(m) => write!(f, "malformed: {m}"),
        }
    }
}

/// The DSSE pre-authentication encoding: `DSSEv1 <len> <payloadType> <len> <payload>`
/// (lengths in bytes, ASCII decimal; single spaces).
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Checks a simple-signing signature: `signature_b64` (the layer annotation) over
/// `payload` (the layer blob), which must name `digest`.
pub(crate) fn check_simple_signing(
    keys: &CosignKeys,
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
) -> Result<(), Rejection> {
    let der = decode_b64(signature_b64)
        .ok_or_else(|| Rejection::Malformed("the signature annotation is not base64".into()))?;
    if !keys.verifies(payload, &der) {
        return Err(Rejection::NotByKey);
    }
    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        image: PayloadImage,
    }
    #[derive(Deserialize)]
    struct PayloadImage {
        #[serde(rename = "docker-manifest-digest")]
        docker_manifest_digest: String,
    }
    let p: Payload = serde_json::from_slice(payload).map_err(|e| {
        Rejection::Malformed(format!(
            "the signed payload is not a simple-signing one: {e}"
        ))
    })?;
    let signed = p.critical.image.docker_manifest_digest;
    if signed == digest {
        Ok(())
    } else {
        Err(Rejection::OtherImage(vec![signed]))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    #[serde(default)]
    dsse_envelope: Option<Envelope>,
    #[serde(default)]
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    statement_type: String,
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(default)]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// Checks a Sigstore bundle (its JSON bytes): a DSSE envelope signed by a configured key
/// whose in-toto statement is a cosign signature of `digest`.
pub(crate) fn check_bundle(
    keys: &CosignKeys,
    bundle_json: &[u8],
    digest: &str,
) -> Result<(), Rejection> {
    let b: Bundle = serde_json::from_slice(bundle_json)
        .map_err(|e| Rejection::Malformed(format!("not a Sigstore bundle: {e}")))?;
    let Some(env) = b.dsse_envelope else {
        return Err(Rejection::Malformed(if b.message_signature.is_some() {
            "the bundle holds a message signature, not a DSSE envelope (only `cosign sign` \
             bundles are read)"
                .into()
        } else {
            "the bundle has no dsseEnvelope".into()
        }));
    };
    let payload = decode_b64(&env.payload)
        .ok_or_else(|| Rejection::Malformed("the DSSE payload is not base64".into()))?;
    let message = pae(&env.payload_type, &payload);
    let signed = env
        .signatures
        .iter()
        .filter_map(|s| decode_b64(&s.sig))
        .any(|der| keys.verifies(&message, &der));
    if !signed {
        return Err(Rejection::NotByKey);
    }
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Rejection::Malformed(format!(
            "DSSE payload type {:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}",
            env.payload_type
        )));
    }
    let st: Statement = serde_json::from_slice(&payload)
        .map_err(|e| Rejection::Malformed(format!("the DSSE payload is not a statement: {e}")))?;
    if !STATEMENT_TYPES.contains(&st.statement_type.as_str()) {
        return Err(Rejection::Malformed(format!(
            "statement type {:?}, expected {:?}",
            st.statement_type, STATEMENT_TYPES[0]
        )));
    }
    if st.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(Rejection::NotASignature(st.predicate_type));
    }
    let (algorithm, hex_digest) = digest.split_once(':').unwrap_or(("", digest));
    let mut named = Vec::new();
    for s in &st.subject {
        if s.digest.get(algorithm).is_some_and(|d| d == hex_digest) {
            return Ok(());
        }
        named.extend(s.digest.iter().map(|(a, d)| format!("{a}:{d}")));
    }
    Err(Rejection::OtherImage(named))
}

/// Standard base64 (what cosign and protobuf JSON write), or its URL-safe form (which
/// protobuf JSON readers also accept); padding optional.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    const DIGEST: &str = "sha256:4d7f7cb3b8a2f1b5e7e2b2b4f0e2d3c4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0";
    const OTHER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// The key as `cosign.pub` holds it (PEM SubjectPublicKeyInfo).
    fn pem(key: &SigningKey) -> String {
        let point = key.verifying_key().to_sec1_point(false);
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(point.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    fn keys(signers: &[&SigningKey]) -> CosignKeys {
        let text: String = signers.iter().map(|k| pem(k)).collect();
        CosignKeys::new(&CosignVerification { public_key: text }).unwrap()
    }

    fn sign_der(key: &SigningKey, message: &[u8]) -> Vec<u8> {
        let sig: Signature = key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn simple_payload(digest: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "registry.example.com/app"},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        }))
        .unwrap()
    }

    fn bundle(key: &SigningKey, subject_digest: &str, predicate: &str, tamper: bool) -> Vec<u8> {
        let (alg, hex) = subject_digest.split_once(':').unwrap();
        let statement = serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.example.com/app", "digest": {alg: hex}}],
            "predicateType": predicate,
            "predicate": {},
        }))
        .unwrap();
        let mut sig = sign_der(key, &pae(IN_TOTO_PAYLOAD_TYPE, &statement));
        if tamper {
            let n = sig.len() - 1;
            sig[n] ^= 1;
        }
        serde_json::to_vec(&serde_json::json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": "hint"}},
            "dsseEnvelope": {
                "payload": b64(&statement),
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                "signatures": [{"sig": b64(&sig), "keyid": ""}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        // Lengths count bytes, not characters.
        assert_eq!(
            pae("t", "é".as_bytes()),
            "DSSEv1 1 t 2 é".as_bytes().to_vec()
        );
    }

    #[test]
    fn simple_signing_signature_digest_binding_and_keys() {
        let k = signing_key(7);
        let other = signing_key(9);
        let payload = simple_payload(DIGEST);
        let sig = b64(&sign_der(&k, &payload));
        assert_eq!(
            check_simple_signing(&keys(&[&k]), &payload, &sig, DIGEST),
            Ok(())
        );
        // Any of several keys.
        assert_eq!(
            check_simple_signing(&keys(&[&other, &k]), &payload, &sig, DIGEST),
            Ok(())
        );
        assert_eq!(
            check_simple_signing(&keys(&[&other]), &payload, &sig, DIGEST),
            Err(Rejection::NotByKey)
        );
        // A valid signature of another image, attached to this one.
        assert_eq!(
            check_simple_signing(&keys(&[&k]), &payload, &sig, OTHER),
            Err(Rejection::OtherImage(vec![DIGEST.to_owned()]))
        );
        // A changed payload (one byte) no longer verifies.
        let mut changed = payload.clone();
        changed[10] ^= 1;
        assert_eq!(
            check_simple_signing(&keys(&[&k]), &changed, &sig, DIGEST),
            Err(Rejection::NotByKey)
        );
        // Damaged DER, not base64.
        let mut der = sign_der(&k, &payload);
        der[0] = 0x31;
        assert_eq!(
            check_simple_signing(&keys(&[&k]), &payload, &b64(&der), DIGEST),
            Err(Rejection::NotByKey)
        );
        assert!(matches!(
            check_simple_signing(&keys(&[&k]), &payload, "%%%", DIGEST),
            Err(Rejection::Malformed(_))
        ));
        // A raw (r||s) signature is not DER: rejected.
        let raw: Signature = k.sign(&payload);
        assert_eq!(
            check_simple_signing(&keys(&[&k]), &payload, &b64(&raw.to_bytes()), DIGEST),
            Err(Rejection::NotByKey)
        );
    }

    #[test]
    fn bundle_signature_predicate_and_digest_binding() {
        let k = signing_key(7);
        let other = signing_key(9);
        let good = bundle(&k, DIGEST, COSIGN_SIGN_PREDICATE, false);
        assert_eq!(check_bundle(&keys(&[&k]), &good, DIGEST), Ok(()));
        assert_eq!(
            check_bundle(&keys(&[&other]), &good, DIGEST),
            Err(Rejection::NotByKey)
        );
        assert_eq!(
            check_bundle(&keys(&[&k]), &good, OTHER),
            Err(Rejection::OtherImage(vec![DIGEST.to_owned()]))
        );
        let tampered = bundle(&k, DIGEST, COSIGN_SIGN_PREDICATE, true);
        assert_eq!(
            check_bundle(&keys(&[&k]), &tampered, DIGEST),
            Err(Rejection::NotByKey)
        );
        let attestation = bundle(&k, DIGEST, "https://slsa.dev/provenance/v1", false);
        assert_eq!(
            check_bundle(&keys(&[&k]), &attestation, DIGEST),
            Err(Rejection::NotASignature(
                "https://slsa.dev/provenance/v1".into()
            ))
        );
        // The signature covers the PAE, not the bare payload.
        let statement = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        let bare = serde_json::to_vec(&serde_json::json!({
            "dsseEnvelope": {
                "payload": b64(statement),
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                "signatures": [{"sig": b64(&sign_der(&k, statement))}],
            },
        }))
        .unwrap();
        assert_eq!(
            check_bundle(&keys(&[&k]), &bare, DIGEST),
            Err(Rejection::NotByKey)
        );
        for bad in [&b"not json"[..], br#"{"messageSignature": {}}"#, b"{}"] {
            assert!(
                matches!(
                    check_bundle(&keys(&[&k]), bad, DIGEST),
                    Err(Rejection::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keys_load_from_pem_and_reject_points_off_the_curve() {
        let k = signing_key(7);
        let ks = keys(&[&k]);
        assert_eq!(ks.keys.len(), 1);
        assert_eq!(ks.fingerprint.len(), 64);
        assert_ne!(ks.fingerprint, keys(&[&signing_key(8)]).fingerprint);
        // A point off the curve: right shape, wrong coordinates.
        let mut text = pem(&k);
        let der_b64 = text.lines().nth(1).unwrap().to_owned();
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(&der_b64)
            .unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        text = text.replace(&der_b64, &b64(&der));
        let e = CosignKeys::new(&CosignVerification { public_key: text }).unwrap_err();
        assert!(e.contains("not a point of the P-256 curve"), "{e}");
    }
}
