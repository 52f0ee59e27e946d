//! The OCI registry steps: `oci-push` ([`OciPush`]) copies or retags an image, image index
//! or artifact (a Helm chart pushed as OCI, anything else) between repositories, and
//! `oci-download` ([`OciDownload`]) saves one layer of an artifact as a file of the work
//! directory. Feature `oci`.
//!
//! References are `registry[:port]/repository:tag` or `registry[:port]/repository@digest`;
//! an `oci://` prefix marks a Helm chart: its credentials are then looked up as
//! [`CredentialKind::Helm`] for `oci://registry/repository`, otherwise as
//! [`CredentialKind::Image`] for `registry/repository` (Kargo's rule). Registries on a
//! loopback address are spoken to over plain HTTP, every other over HTTPS
//! (`insecureSkipTLSVerify` accepts any certificate). Credentials never appear in messages
//! or logs.

mod download;
mod push;

pub use download::{MAX_OCI_DOWNLOAD_BYTES, OciDownload, OciDownloadConfig};
pub use push::{MAX_OCI_PUSH_BYTES, OciPush, OciPushConfig};

use kargo_core::secret::CredentialKind;
use kargo_core::step::{StepContext, StepError, StepErrorKind};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

/// Manifest media types asked for (and understood).
pub(crate) const MANIFEST_MEDIA_TYPES: &[&str] = &[
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// A parsed step reference and how to reach its registry.
pub(crate) struct OciRef {
    /// The reference (tag or digest).
    pub(crate) reference: Reference,
    /// The credential kind: `Helm` for `oci://` references, `Image` otherwise.
    pub(crate) kind: CredentialKind,
    /// The key credentials are looked up with.
    pub(crate) credential_url: String,
    /// `registry/repository`, to compare repositories.
    pub(crate) repository_name: String,
}

/// Parses a configured reference (field `field`), with or without `oci://`.
pub(crate) fn parse_ref(field: &str, text: &str, need_tag: bool) -> Result<OciRef, StepError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StepError::invalid_config(field, "must not be empty"));
    }
    let (rest, kind) = match text.strip_prefix("oci://") {
        Some(r) => (r, CredentialKind::Helm),
        None => (text, CredentialKind::Image),
    };
    let reference: Reference = rest.parse().map_err(|e: oci_client::ParseError| {
        StepError::invalid_config(field, format!("invalid reference {text:?}: {e}"))
    })?;
    // As Kargo's schema: the last path component carries the tag (or a digest follows);
    // a reference without either does not mean `latest`.
    let last = rest.rsplit('/').next().unwrap_or(rest);
    if !rest.contains('/') || (!last.contains(':') && !rest.contains('@')) {
        return Err(StepError::invalid_config(
            field,
            format!("reference {text:?} must name a tag or a digest"),
        ));
    }
    if need_tag && reference.tag().is_none() {
        return Err(StepError::invalid_config(
            field,
            format!("reference {text:?} must name a tag (registry/repository:tag)"),
        ));
    }
    if reference.tag().is_none() && reference.digest().is_none() {
        return Err(StepError::invalid_config(
            field,
            format!("reference {text:?} must name a tag or a digest"),
        ));
    }
    let repository_name = format!("{}/{}", reference.registry(), reference.repository());
    let credential_url = match kind {
        CredentialKind::Helm => format!("oci://{repository_name}"),
        _ => repository_name.clone(),
    };
    Ok(OciRef {
        reference,
        kind,
        credential_url,
        repository_name,
    })
}

/// Whether `host` (with an optional port) is a loopback address or `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A registry client for `r` with the promotion's credentials for it, authenticated for
/// `operation`.
pub(crate) async fn connect(
    ctx: &StepContext,
    r: &OciRef,
    insecure_skip_tls_verify: bool,
    operation: RegistryOperation,
) -> Result<(Client, RegistryAuth), StepError> {
    let registry = r.reference.resolve_registry().to_owned();
    let protocol = if is_loopback_host(&registry) {
        ClientProtocol::HttpsExcept(vec![registry.clone(), r.reference.registry().to_owned()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::try_from(ClientConfig {
        protocol,
        accept_invalid_certificates: insecure_skip_tls_verify,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(300)),
        ..ClientConfig::default()
    })
    .map_err(|e| StepError::terminal(format!("cannot create the registry client: {e}")))?;
    let creds = ctx
        .credentials()
        .credentials(r.kind, &r.credential_url)
        .await
        .map_err(|e| StepError::retryable(format!("{}: {e}", r.credential_url)))?;
    let auth = match creds {
        Some(c) if !c.username.is_empty() || !c.password.expose().is_empty() => {
            RegistryAuth::Basic(c.username.clone(), c.password.expose().clone())
        }
        _ => RegistryAuth::Anonymous,
    };
    client
        .auth(&r.reference, &auth, operation)
        .await
        .map_err(|e| registry_error(&r.repository_name, "cannot authenticate", e))?;
    Ok((client, auth))
}

/// A step error for a registry failure on `what`: not found and refused access are terminal
/// (`Unauthorized` for the latter), the rest retryable.
pub(crate) fn registry_error(what: &str, action: &str, e: OciDistributionError) -> StepError {
    let message = format!("{what}: {action}: {e}");
    match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => {
            StepError::new(StepErrorKind::Unauthorized, message)
        }
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::UnsupportedMediaTypeError(_)
        | OciDistributionError::UnsupportedSchemaVersionError(_)
        | OciDistributionError::ManifestParsingError(_)
        | OciDistributionError::VersionedParsingError(_) => StepError::terminal(message),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|c| {
                matches!(
                    c.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::BlobUnknown
                )
            }) =>
        {
            StepError::terminal(message)
        }
        OciDistributionError::RequestError(r)
            if r.status()
                .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
        {
            StepError::new(StepErrorKind::Unauthorized, message)
        }
        OciDistributionError::RequestError(r) if r.status().is_some_and(|s| s.as_u16() == 404) => {
            StepError::terminal(message)
        }
        OciDistributionError::ServerError { code, .. } if *code == 404 => {
            StepError::terminal(message)
        }
        OciDistributionError::ServerError { code, .. } if *code == 401 || *code == 403 => {
            StepError::new(StepErrorKind::Unauthorized, message)
        }
        _ => StepError::retryable(message),
    }
}

/// The media type of a raw manifest: its `mediaType` field, else inferred from its shape.
pub(crate) fn manifest_media_type(manifest: &serde_json::Value) -> String {
    if let Some(m) = manifest.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_owned();
    }
    if manifest.get("manifests").is_some() {
        oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned()
    } else {
        oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned()
    }
}

/// Whether `media_type` is an image index / manifest list.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE
        || media_type == oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

/// The `sha256:<hex>` digest of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = parse_ref("srcRef", "oci://127.0.0.1:5000/charts/app:1.0.0", true).unwrap();
        assert_eq!(r.kind, CredentialKind::Helm);
        assert_eq!(r.credential_url, "oci://127.0.0.1:5000/charts/app");
        let r = parse_ref("srcRef", "127.0.0.1:5000/app@sha256:0123456789012345678901234567890123456789012345678901234567890123", false).unwrap();
        assert_eq!(r.kind, CredentialKind::Image);
        assert_eq!(r.credential_url, "127.0.0.1:5000/app");
        let e = parse_ref("destRef", "127.0.0.1:5000/app@sha256:0123456789012345678901234567890123456789012345678901234567890123", true).err().unwrap();
        assert!(e.to_string().starts_with("config.destRef: "), "{e}");
        assert!(parse_ref("imageRef", "registry.example.com/app", false).is_err());
        assert!(parse_ref("imageRef", "", false).is_err());
        assert!(parse_ref("imageRef", "127.0.0.1:5000/app", false).is_err());
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("registry.example.com"));
    }
}
