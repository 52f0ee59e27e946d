//! `oci-push` and `oci-download` against Debian's `docker-registry` started by `ci/test.sh`:
//! the anonymous one (`TEST_OCI_REGISTRY`) and the one requiring basic auth
//! (`TEST_OCI_AUTH_REGISTRY`, `TEST_OCI_AUTH_USER`, `TEST_OCI_AUTH_PASSWORD`). Images,
//! multi-arch indexes and Helm charts are seeded with oci-client; tests skip (fail with
//! `CI=true`) without the servers.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kargo_core::secret::{
    CredentialError, CredentialKind, CredentialProvider, Credentials, StaticCredentials,
};
use kargo_core::step::{DryRun, DynStep, StepContext, StepErrorKind, StepStatus};
use kargo_core::testing::{server_env, server_envs};
use kargo_core::workdir::WorkDir;
use kargo_steps::{OciDownload, OciPush};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value as Json, json};
use sha2::Digest as _;
use tempfile::TempDir;

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn digest(bytes: &[u8]) -> String {
    let h = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Pushes a blob; returns its descriptor.
async fn blob(c: &Client, repo: &Reference, media_type: &str, data: &[u8]) -> Json {
    let d = digest(data);
    c.push_blob(repo, data.to_vec(), &d).await.unwrap();
    json!({"mediaType": media_type, "digest": d, "size": data.len()})
}

/// Pushes an image (config + `layers`) to `target` (tag or digest reference); returns the
/// manifest bytes.
async fn push_image(
    c: &Client,
    auth: &RegistryAuth,
    target: &Reference,
    config_type: &str,
    layers: &[(&str, &[u8])],
) -> Vec<u8> {
    c.store_auth_if_needed(target.resolve_registry(), auth)
        .await;
    let config = blob(
        c,
        target,
        config_type,
        br#"{"architecture":"amd64","os":"linux"}"#,
    )
    .await;
    let mut descs = Vec::new();
    for (t, data) in layers {
        descs.push(blob(c, target, t, data).await);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descs,
    }))
    .unwrap();
    c.push_manifest_raw(
        target,
        manifest.clone(),
        "application/vnd.oci.image.manifest.v1+json"
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    manifest
}

async fn pull_manifest(c: &Client, auth: &RegistryAuth, r: &str) -> Option<(Vec<u8>, Json)> {
    let (raw, _) = c
        .pull_manifest_raw(&reference(r), auth, MANIFEST_TYPES)
        .await
        .ok()?;
    let j = serde_json::from_slice(&raw).unwrap();
    Some((raw.to_vec(), j))
}

async fn pull_blob(c: &Client, r: &str, d: &str) -> Vec<u8> {
    let mut out = Vec::new();
    c.pull_blob(&reference(r), d, &mut out).await.unwrap();
    out
}

fn ctx(dir: &TempDir) -> StepContext {
    let mut c = StepContext::new(WorkDir::new(dir.path()).unwrap());
    c.alias = "push".into();
    c.project = "p".into();
    c
}

/// Records every credential lookup and answers with the inner provider.
struct Recorder<P>(P, Mutex<Vec<(CredentialKind, String)>>);

#[async_trait]
impl<P: CredentialProvider> CredentialProvider for Recorder<P> {
    async fn credentials(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        self.1.lock().unwrap().push((kind, repo_url.to_owned()));
        self.0.credentials(kind, repo_url).await
    }
}

#[tokio::test]
async fn push_retags_and_copies_images_byte_for_byte() {
    let t = "push_retags_and_copies_images_byte_for_byte";
    let Some(reg) = server_env(t, "TEST_OCI_REGISTRY") else {
        return;
    };
    let path = unique("oci-push");
    let c = client();
    let anon = RegistryAuth::Anonymous;
    let src = format!("{reg}/{path}/app:v1");
    let manifest = push_image(
        &c,
        &anon,
        &reference(&src),
        "application/vnd.oci.image.config.v1+json",
        &[
            ("application/vnd.oci.image.layer.v1.tar+gzip", b"layer one"),
            ("application/vnd.oci.image.layer.v1.tar+gzip", b"layer two"),
        ],
    )
    .await;
    let src_digest = digest(&manifest);
    let dir = TempDir::new().unwrap();

    // Retag in the same repository, by digest.
    let out = OciPush::new()
        .run_json(
            &ctx(&dir),
            json!({"srcRef": format!("{reg}/{path}/app@{src_digest}"), "destRef": format!("{reg}/{path}/app:v1.2.3")}),
        )
        .await
        .unwrap();
    assert_eq!(out.status, StepStatus::Succeeded);
    assert_eq!(
        out.outputs["image"],
        json!(format!("{reg}/{path}/app:v1.2.3"))
    );
    assert_eq!(out.outputs["digest"], json!(src_digest));
    assert_eq!(out.outputs["tag"], json!("v1.2.3"));
    let (raw, _) = pull_manifest(&c, &anon, &format!("{reg}/{path}/app:v1.2.3"))
        .await
        .unwrap();
    assert_eq!(raw, manifest);

    // Copy to another repository (blobs mounted or copied); the manifest is unchanged.
    let out = OciPush::new()
        .run_json(
            &ctx(&dir),
            json!({"srcRef": src, "destRef": format!("{reg}/{path}/prod/app:v1")}),
        )
        .await
        .unwrap();
    assert_eq!(out.outputs["digest"], json!(src_digest));
    let (raw, m) = pull_manifest(&c, &anon, &format!("{reg}/{path}/prod/app:v1"))
        .await
        .unwrap();
    assert_eq!(raw, manifest);
    let layer = m["layers"][1]["digest"].as_str().unwrap();
    assert_eq!(
        pull_blob(&c, &format!("{reg}/{path}/prod/app:v1"), layer).await,
        b"layer two"
    );

    // Annotations: unprefixed and manifest: keys land on the manifest; index: keys are
    // ignored for a single image; the digest is the annotated manifest's.
    let out = OciPush::new()
        .run_json(
            &ctx(&dir),
            json!({
                "srcRef": src,
                "destRef": format!("{reg}/{path}/app:annotated"),
                "annotations": {
                    "org.opencontainers.image.source": "https://github.com/example/app",
                    "manifest:io.kargo.promotion": "p-1",
                    "index:io.kargo.ignored": "x",
                },
            }),
        )
        .await
        .unwrap();
    let (raw, m) = pull_manifest(&c, &anon, &format!("{reg}/{path}/app:annotated"))
        .await
        .unwrap();
    assert_eq!(out.outputs["digest"], json!(digest(&raw)));
    assert_ne!(digest(&raw), src_digest);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.source"],
        "https://github.com/example/app"
    );
    assert_eq!(m["annotations"]["io.kargo.promotion"], "p-1");
    assert!(m["annotations"].get("io.kargo.ignored").is_none());

    // The size limit applies between repositories, not to a retag.
    let e = OciPush::with_max_bytes(10)
        .run_json(
            &ctx(&dir),
            json!({"srcRef": src, "destRef": format!("{reg}/{path}/big/app:v1")}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Terminal, "{e}");
    assert!(
        e.to_string()
            .contains("exceeds maximum allowed size of 10 bytes"),
        "{e}"
    );
    assert!(
        pull_manifest(&c, &anon, &format!("{reg}/{path}/big/app:v1"))
            .await
            .is_none()
    );
    OciPush::with_max_bytes(10)
        .run_json(
            &ctx(&dir),
            json!({"srcRef": src, "destRef": format!("{reg}/{path}/app:small-limit")}),
        )
        .await
        .unwrap();

    // A dry run reads the source but pushes nothing, with the real outputs.
    let dry_ctx = ctx(&dir);
    let recorder = dry_ctx.extensions().get_or_insert_with(DryRun::new);
    let out = OciPush::new()
        .run_json(
            &dry_ctx,
            json!({"srcRef": src, "destRef": format!("{reg}/{path}/dry/app:v1")}),
        )
        .await
        .unwrap();
    assert_eq!(out.status, StepStatus::Skipped);
    assert_eq!(out.outputs["digest"], json!(src_digest));
    assert!(
        pull_manifest(&c, &anon, &format!("{reg}/{path}/dry/app:v1"))
            .await
            .is_none()
    );
    assert_eq!(recorder.log().notes.len(), 1);

    // A missing source is a terminal error naming it.
    let e = OciPush::new()
        .run_json(
            &ctx(&dir),
            json!({"srcRef": format!("{reg}/{path}/app:nope"), "destRef": format!("{reg}/{path}/app:x")}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Terminal, "{e}");
    assert!(e.to_string().contains(&format!("{path}/app")), "{e}");
}

#[tokio::test]
async fn push_copies_an_index_to_the_authenticated_registry_with_scoped_annotations() {
    let t = "push_copies_an_index_to_the_authenticated_registry_with_scoped_annotations";
    let Some(vars) = server_envs(
        t,
        &[
            "TEST_OCI_REGISTRY",
            "TEST_OCI_AUTH_REGISTRY",
            "TEST_OCI_AUTH_USER",
            "TEST_OCI_AUTH_PASSWORD",
        ],
    ) else {
        return;
    };
    let [reg, auth_reg, user, password] = <[String; 4]>::try_from(vars).unwrap();
    let path = unique("oci-index");
    let c = client();
    let anon = RegistryAuth::Anonymous;
    let repo = format!("{reg}/{path}/multi");
    let mut entries = Vec::new();
    for (arch, layer) in [
        ("amd64", b"amd64 layer" as &[u8]),
        ("arm64", b"arm64 layer"),
    ] {
        let tmp = reference(&format!("{repo}:tmp-{arch}"));
        let m = push_image(
            &c,
            &anon,
            &tmp,
            "application/vnd.oci.image.config.v1+json",
            &[("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        )
        .await;
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&m),
            "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    c.push_manifest_raw(
        &reference(&format!("{repo}:v1")),
        index.clone(),
        "application/vnd.oci.image.index.v1+json".parse().unwrap(),
    )
    .await
    .unwrap();

    let dir = TempDir::new().unwrap();
    let dest = format!("{auth_reg}/{path}/multi:v1");
    // Without credentials the authenticated registry refuses: Unauthorized.
    let e = OciPush::new()
        .run_json(
            &ctx(&dir),
            json!({"srcRef": format!("{repo}:v1"), "destRef": dest}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Unauthorized, "{e}");

    let creds = Arc::new(Recorder(
        StaticCredentials::new().with(
            CredentialKind::Image,
            format!("{auth_reg}/"),
            &user,
            &password,
        ),
        Mutex::new(Vec::new()),
    ));
    let step_ctx = ctx(&dir).with_credentials(creds.clone());
    let out = OciPush::new()
        .run_json(
            &step_ctx,
            json!({
                "srcRef": format!("{repo}:v1"),
                "destRef": dest,
                "annotations": {"index:rev": "abc", "manifest:desc": "my app", "plain": "p"},
            }),
        )
        .await
        .unwrap();
    assert_eq!(out.outputs["image"], json!(dest));
    assert!(
        creds
            .1
            .lock()
            .unwrap()
            .contains(&(CredentialKind::Image, format!("{auth_reg}/{path}/multi"))),
        "{:?}",
        creds.1.lock().unwrap()
    );
    let auth = RegistryAuth::Basic(user.clone(), password.clone());
    let ac = client();
    let (raw, idx) = pull_manifest(&ac, &auth, &dest).await.unwrap();
    assert_eq!(out.outputs["digest"], json!(digest(&raw)));
    assert_eq!(idx["annotations"]["rev"], "abc");
    assert!(idx["annotations"].get("desc").is_none());
    let children = idx["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for child in children {
        let d = child["digest"].as_str().unwrap();
        let (craw, cm) = pull_manifest(&ac, &auth, &format!("{auth_reg}/{path}/multi@{d}"))
            .await
            .unwrap();
        assert_eq!(digest(&craw), d);
        assert_eq!(child["size"], json!(craw.len()));
        assert_eq!(cm["annotations"]["desc"], "my app");
        assert_eq!(cm["annotations"]["plain"], "p");
        assert!(cm["annotations"].get("rev").is_none());
        let layer = cm["layers"][0]["digest"].as_str().unwrap();
        let mut bytes = Vec::new();
        ac.pull_blob(
            &reference(&format!("{auth_reg}/{path}/multi@{d}")),
            layer,
            &mut bytes,
        )
        .await
        .unwrap();
        let arch = child["platform"]["architecture"].as_str().unwrap();
        assert_eq!(bytes, format!("{arch} layer").into_bytes());
    }
    // No password in the outputs.
    assert!(
        !serde_json::to_string(&out.outputs)
            .unwrap()
            .contains(&password)
    );

    // oci-download picks linux/amd64 out of the index.
    let out_dir = TempDir::new().unwrap();
    OciDownload
        .run_json(
            &ctx(&out_dir).with_credentials(creds.clone()),
            json!({"imageRef": dest, "outPath": "layer.bin"}),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out_dir.path().join("layer.bin")).unwrap(),
        b"amd64 layer"
    );
}

#[tokio::test]
async fn download_saves_the_chosen_layer_of_a_helm_chart() {
    let t = "download_saves_the_chosen_layer_of_a_helm_chart";
    let Some(reg) = server_env(t, "TEST_OCI_REGISTRY") else {
        return;
    };
    let path = unique("oci-download");
    let c = client();
    let anon = RegistryAuth::Anonymous;
    let chart = format!("{reg}/{path}/charts/app:1.0.0");
    let tgz = b"\x1f\x8b pretend this is a chart archive".to_vec();
    push_image(
        &c,
        &anon,
        &reference(&chart),
        "application/vnd.cncf.helm.config.v1+json",
        &[
            ("application/vnd.example.readme", b"read me"),
            ("application/vnd.cncf.helm.chart.content.v1.tar+gzip", &tgz),
        ],
    )
    .await;
    let dir = TempDir::new().unwrap();
    let creds = Arc::new(Recorder(StaticCredentials::new(), Mutex::new(Vec::new())));
    let step_ctx = ctx(&dir).with_credentials(creds.clone());
    let out = OciDownload
        .run_json(
            &step_ctx,
            json!({
                "imageRef": format!("oci://{chart}"),
                "outPath": "charts/app-1.0.0.tgz",
                "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            }),
        )
        .await
        .unwrap();
    assert_eq!(out.status, StepStatus::Succeeded);
    assert_eq!(
        std::fs::read(dir.path().join("charts/app-1.0.0.tgz")).unwrap(),
        tgz
    );
    // oci:// means Helm credentials for oci://registry/repository.
    assert_eq!(
        creds.1.lock().unwrap()[0],
        (
            CredentialKind::Helm,
            format!("oci://{reg}/{path}/charts/app")
        )
    );
    // Without mediaType: the first layer. An existing file needs allowOverwrite.
    let e = OciDownload
        .run_json(
            &step_ctx,
            json!({"imageRef": chart, "outPath": "charts/app-1.0.0.tgz"}),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    OciDownload
        .run_json(
            &step_ctx,
            json!({"imageRef": chart, "outPath": "charts/app-1.0.0.tgz", "allowOverwrite": true}),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("charts/app-1.0.0.tgz")).unwrap(),
        b"read me"
    );
    // An unknown media type is a terminal error, and no file appears.
    let e = OciDownload
        .run_json(
            &step_ctx,
            json!({"imageRef": chart, "outPath": "other.bin", "mediaType": "application/x-none"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StepErrorKind::Terminal);
    assert!(
        e.to_string()
            .contains("no layer found with media type \"application/x-none\""),
        "{e}"
    );
    assert!(!dir.path().join("other.bin").exists());
    // Paths stay in the work directory; nothing is fetched for a refused path.
    let e = OciDownload
        .run_json(&step_ctx, json!({"imageRef": chart, "outPath": "../x.tgz"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            StepErrorKind::Terminal | StepErrorKind::InvalidConfig
        ),
        "{e}"
    );
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let dir = TempDir::new().unwrap();
    for (step, cfg, key) in [
        (
            Arc::new(OciPush::new()) as Arc<dyn DynStep>,
            json!({"srcRef": "r.example.com/a:1"}),
            "config",
        ),
        (
            Arc::new(OciPush::new()),
            json!({"srcRef": "r.example.com/a:1", "destRef": "r.example.com/b@sha256:0123456789012345678901234567890123456789012345678901234567890123"}),
            "config.destRef",
        ),
        (
            Arc::new(OciPush::new()),
            json!({"srcRef": "r.example.com/a", "destRef": "r.example.com/b:1"}),
            "config.srcRef",
        ),
        (
            Arc::new(OciPush::new()),
            json!({"srcRef": "r.example.com/a:1", "destRef": "r.example.com/b:1", "annotations": {"manifest:": "x"}}),
            "config.annotations.manifest:",
        ),
        (
            Arc::new(OciDownload),
            json!({"imageRef": "r.example.com/a:1", "outPath": "x", "mediaTyp": "y"}),
            "config.mediaTyp",
        ),
        (
            Arc::new(OciDownload),
            json!({"imageRef": "r.example.com/a:1", "outPath": ""}),
            "config.outPath",
        ),
    ] {
        let e = step.run_json(&ctx(&dir), cfg.clone()).await.unwrap_err();
        assert_eq!(e.kind, StepErrorKind::InvalidConfig, "{cfg}: {e}");
        assert!(e.to_string().starts_with(key), "{cfg}: {e}");
    }
}
