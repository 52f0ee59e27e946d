//! The image source against real registries started by `ci/test.sh`: Debian's
//! `docker-registry` anonymous (`TEST_OCI_REGISTRY`) and with htpasswd basic auth and an
//! access log (`TEST_OCI_AUTH_*`, `TEST_OCI_ACCESS_LOG`), plus small in-test HTTP stubs for
//! what docker-registry 2.8 cannot do (tag pagination with `Link`, bearer tokens, 429/5xx).
//! Without the variables the registry tests print a skip message, except with `CI=true`,
//! where a missing variable fails the test.
//!
//! Images are pushed with oci-client (blobs and raw manifests), each test into repositories
//! of its own; request counts are read from the access log, filtered by repository path.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use kargo_core::testing::source_conformance as conformance;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::model::{ImageSelectionStrategy, ImageSubscription};
use kargo_core::secret::{CredentialError, CredentialKind, CredentialProvider, Credentials};
use kargo_core::source::{
    DiscoveredImage, Discovery, DiscoveryContext, DynSource, Source, SourceErrorKind,
};
use kargo_sources::chart::sha256_digest;
use kargo_sources::image::{DockerConfigLocation, ImageSource, ImageSourceOptions};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value as Json, json};

// ---------------------------------------------------------------------------------------
// Environment

use kargo_core::testing::server_env;

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "kargo-img/{}-{}-{}",
        name.replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A registry the tests push to.
#[derive(Clone)]
struct Reg {
    host: String,
    user: Option<(String, String)>,
    access_log: Option<String>,
}

impl Reg {
    fn anonymous(test: &str) -> Option<Reg> {
        Some(Reg {
            host: server_env(test, "TEST_OCI_REGISTRY")?,
            user: None,
            access_log: None,
        })
    }

    fn auth(test: &str) -> Option<Reg> {
        Some(Reg {
            host: server_env(test, "TEST_OCI_AUTH_REGISTRY")?,
            user: Some((
                server_env(test, "TEST_OCI_AUTH_USER")?,
                server_env(test, "TEST_OCI_AUTH_PASSWORD")?,
            )),
            access_log: Some(server_env(test, "TEST_OCI_ACCESS_LOG")?),
        })
    }

    fn registry_auth(&self) -> RegistryAuth {
        match &self.user {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn credentials(&self) -> Option<Credentials> {
        self.user.as_ref().map(|(u, p)| Credentials::basic(u, p))
    }

    fn context(&self) -> DiscoveryContext {
        let ctx = DiscoveryContext::new("p", "w");
        match self.credentials() {
            Some(c) => ctx.with_credentials(Arc::new(Fixed(Some(c)))),
            None => ctx,
        }
    }

    fn url(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }

    async fn pusher(&self, repo: &str) -> Client {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        let r = Reference::with_tag(self.host.clone(), repo.to_owned(), "x".to_owned());
        client
            .auth(&r, &self.registry_auth(), RegistryOperation::Push)
            .await
            .unwrap();
        client
    }

    /// Pushes `img` as `repo:tag` (untagged, by digest, when `tag` is `None`); returns
    /// the manifest digest.
    async fn push(&self, client: &Client, repo: &str, tag: Option<&str>, img: &Img) -> String {
        let nonce = format!("{repo}:{}:{}", tag.unwrap_or("-"), img.nonce);
        let mut config = json!({
            "architecture": img.arch, "os": img.os,
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": img.labels, "Env": [format!("NONCE={nonce}")]},
        });
        if let Some(c) = &img.created {
            config["created"] = json!(c);
        }
        let config = serde_json::to_vec(&config).unwrap();
        let layer = b"kargo test layer".to_vec();
        let r = |reference: &str| {
            if reference.starts_with("sha256:") {
                Reference::with_digest(self.host.clone(), repo.to_owned(), reference.to_owned())
            } else {
                Reference::with_tag(self.host.clone(), repo.to_owned(), reference.to_owned())
            }
        };
        let cd = sha256_digest(&config);
        let ld = sha256_digest(&layer);
        client
            .push_blob(&r(&cd), config.clone(), &cd)
            .await
            .unwrap();
        client.push_blob(&r(&ld), layer.clone(), &ld).await.unwrap();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
        });
        if !img.annotations.is_empty() {
            manifest["annotations"] = json!(img.annotations);
        }
        self.push_raw(
            client,
            repo,
            tag,
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
    }

    async fn push_raw(
        &self,
        client: &Client,
        repo: &str,
        tag: Option<&str>,
        manifest: &Json,
        media_type: &str,
    ) -> String {
        let body = serde_json::to_vec(manifest).unwrap();
        let digest = sha256_digest(&body);
        let reference = tag.unwrap_or(&digest);
        let r = if reference.starts_with("sha256:") {
            Reference::with_digest(self.host.clone(), repo.to_owned(), digest.clone())
        } else {
            Reference::with_tag(self.host.clone(), repo.to_owned(), reference.to_owned())
        };
        client
            .push_manifest_raw(&r, body, media_type.parse().unwrap())
            .await
            .unwrap();
        digest
    }

    /// Pushes an index of `children` (each `(platform, image, entry annotations)`) plus an
    /// `unknown/unknown` attestation entry; returns the index digest.
    async fn push_index(
        &self,
        client: &Client,
        repo: &str,
        tag: &str,
        children: &[(&str, Img, BTreeMap<String, String>)],
        annotations: BTreeMap<String, String>,
    ) -> String {
        let mut entries = Vec::new();
        for (platform, img, ann) in children {
            let digest = self.push(client, repo, None, img).await;
            let parts: Vec<&str> = platform.split('/').collect();
            let mut p = json!({"os": parts[0], "architecture": parts[1]});
            if let Some(v) = parts.get(2) {
                p["variant"] = json!(v);
            }
            let mut e = json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": 1, "platform": p,
            });
            if !ann.is_empty() {
                e["annotations"] = json!(ann);
            }
            entries.push(e);
        }
        // An attestation manifest, as BuildKit pushes them.
        let att = self
            .push(client, repo, None, &Img::at("2001-01-01T00:00:00Z"))
            .await;
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": att, "size": 1,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }));
        let mut index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        if !annotations.is_empty() {
            index["annotations"] = json!(annotations);
        }
        self.push_raw(
            client,
            repo,
            Some(tag),
            &index,
            "application/vnd.oci.image.index.v1+json",
        )
        .await
    }

    /// Deletes a manifest by digest.
    async fn delete(&self, repo: &str, digest: &str) {
        let mut rb = reqwest::Client::new()
            .delete(format!("http://{}/v2/{repo}/manifests/{digest}", self.host));
        if let Some((u, p)) = &self.user {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202, "delete {repo}@{digest}");
    }

    /// Requests for `repo` in the access log so far, once the log has settled.
    async fn counts(&self, repo: &str) -> Counts {
        let path = self
            .access_log
            .as_ref()
            .expect("the auth registry has an access log");
        let mut last = Counts::read(path, repo);
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = Counts::read(path, repo);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }
}

/// Requests of one repository, from the access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    tag_lists: usize,
    manifest_gets: usize,
    manifest_heads: usize,
    blob_gets: usize,
}

impl Counts {
    fn read(path: &str, repo: &str) -> Counts {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let mut c = Counts::default();
        let p = |m: &str, tail: &str| format!("\"{m} /v2/{repo}/{tail}");
        let (tl, mg, mh, bg) = (
            p("GET", "tags/list"),
            p("GET", "manifests/"),
            p("HEAD", "manifests/"),
            p("GET", "blobs/"),
        );
        for line in log
            .lines()
            .filter(|l| l.contains("\" ") && !l.starts_with("time="))
        {
            if line.contains(&tl) {
                c.tag_lists += 1;
            } else if line.contains(&mg) {
                c.manifest_gets += 1;
            } else if line.contains(&mh) {
                c.manifest_heads += 1;
            } else if line.contains(&bg) {
                c.blob_gets += 1;
            }
        }
        c
    }

    fn minus(self, o: Counts) -> Counts {
        Counts {
            tag_lists: self.tag_lists - o.tag_lists,
            manifest_gets: self.manifest_gets - o.manifest_gets,
            manifest_heads: self.manifest_heads - o.manifest_heads,
            blob_gets: self.blob_gets - o.blob_gets,
        }
    }
}

/// A tiny image's metadata.
#[derive(Clone, Default)]
struct Img {
    created: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    os: String,
    arch: String,
    nonce: String,
}

impl Img {
    fn at(created: &str) -> Img {
        Img {
            created: Some(created.to_owned()),
            os: "linux".into(),
            arch: "amd64".into(),
            ..Img::default()
        }
    }
    fn annotated(mut self, k: &str, v: &str) -> Img {
        self.annotations.insert(k.to_owned(), v.to_owned());
        self
    }
    fn labelled(mut self, k: &str, v: &str) -> Img {
        self.labels.insert(k.to_owned(), v.to_owned());
        self
    }
    fn nonce(mut self, n: &str) -> Img {
        n.clone_into(&mut self.nonce);
        self
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

struct Fixed(Option<Credentials>);

#[async_trait]
impl CredentialProvider for Fixed {
    async fn credentials(
        &self,
        kind: CredentialKind,
        _repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        assert_eq!(kind, CredentialKind::Image);
        Ok(self.0.clone())
    }
}

fn fast() -> ImageSourceOptions {
    {
        let mut o = ImageSourceOptions::default();
        o.rate_limit = 100_000.0;
        o
    }
}

fn sub(url: &str, strategy: ImageSelectionStrategy) -> ImageSubscription {
    let mut s = ImageSubscription::new(url);
    s.image_selection_strategy = strategy;
    s
}

fn images(d: &Discovery) -> &[DiscoveredImage] {
    match d {
        Discovery::Images { references, .. } => references,
        other => panic!("not images: {other:?}"),
    }
}

fn tags(d: &Discovery) -> Vec<&str> {
    images(d).iter().map(|i| i.tag.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// Strategies and metadata

#[tokio::test]
async fn semver_order_limit_constraint_and_metadata() {
    let Some(reg) = Reg::anonymous("semver_order_limit_constraint_and_metadata") else {
        return;
    };
    let repo = unique("semver");
    let c = reg.pusher(&repo).await;
    let mut digests = BTreeMap::new();
    for (tag, img) in [
        ("1.0.0", Img::at("2024-01-01T00:00:00Z")),
        (
            "v1.2.0",
            Img::at("2024-01-03T00:00:00Z")
                .annotated("org.opencontainers.image.created", "2030-05-05T05:05:05Z")
                .annotated("org.opencontainers.image.revision", "abc"),
        ),
        (
            "1.10.0",
            Img::at("2024-01-02T00:00:00Z")
                .labelled("org.label-schema.build-date", "2024-02-02T00:00:00Z"),
        ),
        ("2.0.0-rc.1", Img::at("2024-01-04T00:00:00Z")),
        ("1.3", Img::at("2024-01-05T00:00:00Z")),
        ("latest", Img::at("2024-01-06T00:00:00Z")),
    ] {
        digests.insert(tag, reg.push(&c, &repo, Some(tag), &img).await);
    }
    let src = ImageSource::new(fast());
    let ctx = reg.context();
    let d = src
        .discover(&ctx, &sub(&reg.url(&repo), ImageSelectionStrategy::SemVer))
        .await
        .unwrap();
    assert_eq!(tags(&d), ["2.0.0-rc.1", "1.10.0", "v1.2.0", "1.0.0"]);
    let imgs = images(&d);
    for i in imgs {
        assert_eq!(i.digest, digests[i.tag.as_str()], "{}", i.tag);
    }
    // Annotation wins over the config; a config label later than `created` wins.
    let by = |t: &str| imgs.iter().find(|i| i.tag == t).unwrap().clone();
    assert_eq!(
        by("v1.2.0").created_at.unwrap().to_rfc3339(),
        "2030-05-05T05:05:05+00:00"
    );
    assert_eq!(
        by("v1.2.0").annotations["org.opencontainers.image.revision"],
        "abc"
    );
    assert_eq!(
        by("1.10.0").created_at.unwrap().to_rfc3339(),
        "2024-02-02T00:00:00+00:00"
    );
    assert_eq!(
        by("1.0.0").created_at.unwrap().to_rfc3339(),
        "2024-01-01T00:00:00+00:00"
    );
    assert!(by("1.0.0").annotations.is_empty());

    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    s.strict_semvers = false;
    s.constraint = "^1.0".into();
    s.discovery_limit = 2;
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["1.10.0", "1.3"]);

    // Invalid configuration names the field.
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    s.constraint = ">=>1".into();
    let e = src.discover(&ctx, &s).await.unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
    assert!(e.message.contains("constraint"), "{e}");
}

#[tokio::test]
async fn lexical_and_tag_filters() {
    let Some(reg) = Reg::anonymous("lexical_and_tag_filters") else {
        return;
    };
    let repo = unique("lexical");
    let c = reg.pusher(&repo).await;
    for tag in [
        "nightly-20240101",
        "nightly-20240215",
        "nightly-20231231",
        "nightly-20240301-debug",
        "release-1",
        "main",
    ] {
        reg.push(&c, &repo, Some(tag), &Img::at("2024-01-01T00:00:00Z"))
            .await;
    }
    let src = ImageSource::new(fast());
    let ctx = reg.context();
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::Lexical);
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(
        tags(&d),
        [
            "release-1",
            "nightly-20240301-debug",
            "nightly-20240215",
            "nightly-20240101",
            "nightly-20231231",
            "main"
        ]
    );
    s.allow_tags_regexes = vec!["^nightly-".into()];
    s.ignore_tags_regexes = vec!["-debug$".into()];
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(
        tags(&d),
        ["nightly-20240215", "nightly-20240101", "nightly-20231231"]
    );
    // The deprecated fields are honoured too: allowTags a regex, ignoreTags exact tags.
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::Lexical);
    s.allow_tags = Some("^nightly-2024".into());
    s.ignore_tags = Some(vec!["nightly-20240215".into(), "nightly-2024".into()]);
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["nightly-20240301-debug", "nightly-20240101"]);
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::Lexical);
    s.ignore_tags_regexes = vec!["(".into()];
    let e = src.discover(&ctx, &s).await.unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
    assert!(e.message.contains("ignoreTagsRegexes"), "{e}");
}

#[tokio::test]
async fn newest_build_orders_by_build_time_then_tag() {
    let Some(reg) = Reg::anonymous("newest_build_orders_by_build_time_then_tag") else {
        return;
    };
    let repo = unique("newest");
    let c = reg.pusher(&repo).await;
    for (tag, img) in [
        ("a", Img::at("2024-03-01T00:00:00Z")),
        ("b", Img::at("2024-01-01T00:00:00Z")),
        ("c", Img::at("2024-03-01T00:00:00Z")),
        (
            "d",
            Img::at("2020-01-01T00:00:00Z")
                .annotated("org.label-schema.build-date", "2024-04-01T00:00:00Z"),
        ),
        (
            "e",
            Img {
                created: None,
                ..Img::at("x")
            },
        ),
        ("skip-me", Img::at("2099-01-01T00:00:00Z")),
    ] {
        reg.push(&c, &repo, Some(tag), &img).await;
    }
    let src = ImageSource::new(fast());
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::NewestBuild);
    s.ignore_tags_regexes = vec!["^skip".into()];
    let d = src.discover(&reg.context(), &s).await.unwrap();
    assert_eq!(tags(&d), ["d", "c", "a", "b", "e"]);
    assert!(images(&d)[4].created_at.is_none());
    s.discovery_limit = 2;
    let d2 = src.discover(&reg.context(), &s).await.unwrap();
    assert_eq!(tags(&d2), ["d", "c"]);
}

#[tokio::test]
async fn platforms_indexes_and_attestations() {
    let Some(reg) = Reg::anonymous("platforms_indexes_and_attestations") else {
        return;
    };
    let repo = unique("platform");
    let c = reg.pusher(&repo).await;
    // 1.0.0: an index for amd64 and arm/v7 (child build times only in the configs).
    let i1 = reg
        .push_index(
            &c,
            &repo,
            "1.0.0",
            &[
                ("linux/amd64", Img::at("2024-01-01T00:00:00Z"), map(&[])),
                (
                    "linux/arm/v7",
                    Img::at("2024-01-02T00:00:00Z"),
                    map(&[("com.example.arch", "armv7")]),
                ),
            ],
            map(&[("com.example.index", "one"), ("com.example.arch", "index")]),
        )
        .await;
    // 1.1.0: an index for amd64 and arm64 with its own build-time annotation.
    let i2 = reg
        .push_index(
            &c,
            &repo,
            "1.1.0",
            &[
                ("linux/amd64", Img::at("2024-02-01T00:00:00Z"), map(&[])),
                (
                    "linux/arm64",
                    Img::at("2024-02-02T00:00:00Z"),
                    map(&[("org.opencontainers.image.created", "2024-02-03T00:00:00Z")]),
                ),
            ],
            map(&[("org.opencontainers.image.created", "2024-02-10T00:00:00Z")]),
        )
        .await;
    // 1.2.0: a plain single-platform manifest.
    reg.push(&c, &repo, Some("1.2.0"), &Img::at("2024-03-01T00:00:00Z"))
        .await;

    let src = ImageSource::new(fast());
    let ctx = reg.context();
    let s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["1.2.0", "1.1.0", "1.0.0"]);
    let imgs = images(&d);
    assert_eq!(imgs[1].digest, i2);
    assert_eq!(imgs[2].digest, i1);
    // Index time: its own annotation; else the newest child (attestations skipped).
    assert_eq!(
        imgs[1].created_at.unwrap().to_rfc3339(),
        "2024-02-10T00:00:00+00:00"
    );
    assert_eq!(
        imgs[2].created_at.unwrap().to_rfc3339(),
        "2024-01-02T00:00:00+00:00"
    );
    assert_eq!(imgs[2].annotations["com.example.arch"], "index");

    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    s.platform = "linux/amd64".into();
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["1.1.0", "1.0.0"], "a plain manifest is rejected");
    assert_eq!(
        d,
        Discovery::Images {
            repo_url: reg.url(&repo),
            platform: Some("linux/amd64".into()),
            references: images(&d).to_vec(),
            rejected: Vec::new(),
        }
    );
    s.platform = "linux/arm/v7".into();
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["1.0.0"]);
    // Entry annotations override the index's.
    assert_eq!(images(&d)[0].annotations["com.example.arch"], "armv7");
    assert_eq!(images(&d)[0].annotations["com.example.index"], "one");
    s.platform = "linux/arm".into();
    let d = src.discover(&ctx, &s).await.unwrap();
    assert!(tags(&d).is_empty(), "the variant must match exactly");
    s.platform = "unknown/unknown".into();
    assert!(tags(&src.discover(&ctx, &s).await.unwrap()).is_empty());
    s.platform = "linux/arm64".into();
    s.discovery_limit = 1;
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["1.1.0"]);
    // NewestBuild with a platform.
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::NewestBuild);
    s.platform = "linux/amd64".into();
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["1.1.0", "1.0.0"]);
}

#[tokio::test]
async fn digest_follows_a_retagged_tag() {
    let Some(reg) = Reg::anonymous("digest_follows_a_retagged_tag") else {
        return;
    };
    let repo = unique("digest");
    let c = reg.pusher(&repo).await;
    let src = ImageSource::new(fast());
    let ctx = reg.context();
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::Digest);
    s.constraint = "latest".into();
    s.cache_by_tag = true; // ignored by Digest: the tag is always asked about
    let a = reg
        .push(&c, &repo, Some("latest"), &Img::at("2024-01-01T00:00:00Z"))
        .await;
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["latest"]);
    assert_eq!(images(&d)[0].digest, a);
    let b = reg
        .push(&c, &repo, Some("latest"), &Img::at("2024-02-01T00:00:00Z"))
        .await;
    assert_ne!(a, b);
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(images(&d)[0].digest, b);
    assert_eq!(
        images(&d)[0].created_at.unwrap().to_rfc3339(),
        "2024-02-01T00:00:00+00:00"
    );
    s.constraint = "no-such-tag".into();
    assert!(src.discover(&ctx, &s).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn basic_auth_and_bad_credentials() {
    let Some(reg) = Reg::auth("basic_auth_and_bad_credentials") else {
        return;
    };
    let repo = unique("basic");
    let c = reg.pusher(&repo).await;
    reg.push(&c, &repo, Some("1.0.0"), &Img::at("2024-01-01T00:00:00Z"))
        .await;
    let src = ImageSource::new(fast());
    let s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    let d = src.discover(&reg.context(), &s).await.unwrap();
    assert_eq!(tags(&d), ["1.0.0"]);
    let (user, pass) = reg.user.clone().unwrap();
    for creds in [None, Some(Credentials::basic(&user, "wrong-password"))] {
        let ctx = DiscoveryContext::new("p", "w").with_credentials(Arc::new(Fixed(creds)));
        let e = src.discover(&ctx, &s).await.unwrap_err();
        assert_eq!(e.kind, SourceErrorKind::Unauthorized, "{e}");
        assert!(!e.message.contains(&pass) && !e.message.contains("wrong-password"));
    }
    // An unknown repository with good credentials.
    let e = src
        .discover(
            &reg.context(),
            &sub(&reg.url(&unique("none")), ImageSelectionStrategy::SemVer),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn docker_config_json_credentials() {
    let Some(reg) = Reg::auth("docker_config_json_credentials") else {
        return;
    };
    let repo = unique("dockercfg");
    let c = reg.pusher(&repo).await;
    reg.push(&c, &repo, Some("2.0.0"), &Img::at("2024-01-01T00:00:00Z"))
        .await;
    let (user, pass) = reg.user.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        &path,
        json!({"auths": {format!("http://{}", reg.host): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let src = ImageSource::new({
        let mut o = fast();
        o.docker_config = DockerConfigLocation::Path(path.clone());
        o
    });
    let s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    let ctx = DiscoveryContext::new("p", "w"); // no credentials of its own
    let d = src.discover(&ctx, &s).await.unwrap();
    assert_eq!(tags(&d), ["2.0.0"]);
    // username/password fields, and a wrong one refused.
    std::fs::write(
        &path,
        json!({"auths": {reg.host.clone(): {"username": user, "password": "nope"}}}).to_string(),
    )
    .unwrap();
    let e = src.discover(&ctx, &s).await.unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::Unauthorized, "{e}");
    // Without the option the file is not read.
    let plain = ImageSource::new(fast());
    assert_eq!(
        plain.discover(&ctx, &s).await.unwrap_err().kind,
        SourceErrorKind::Unauthorized
    );
}

// ---------------------------------------------------------------------------------------
// Request economy (counted from the access log)

#[tokio::test]
async fn economy_cache_by_tag_newest_build_300_tags() {
    let Some(reg) = Reg::auth("economy_cache_by_tag_newest_build_300_tags") else {
        return;
    };
    let repo = unique("economy300");
    let c = reg.pusher(&repo).await;
    for i in 0..300 {
        let t = format!("build-{i:03}");
        let created = format!(
            "2024-01-01T{:02}:{:02}:00Z",
            (i * 7 % 300) / 60,
            (i * 7 % 300) % 60
        );
        reg.push(&c, &repo, Some(&t), &Img::at(&created)).await;
    }
    let src = ImageSource::new(fast());
    let ctx = reg.context();
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::NewestBuild);
    s.cache_by_tag = true;
    s.discovery_limit = 5;

    let before = reg.counts(&repo).await;
    let first = src.discover(&ctx, &s).await.unwrap();
    let after1 = reg.counts(&repo).await;
    assert_eq!(
        after1.minus(before),
        Counts {
            tag_lists: 1,
            manifest_gets: 300,
            manifest_heads: 0,
            blob_gets: 300
        },
        "(b) first poll: each manifest and config once"
    );
    // (a) + (b): a second discovery with no new tags makes only tag-list requests.
    let second = src.discover(&ctx, &s).await.unwrap();
    let after2 = reg.counts(&repo).await;
    assert_eq!(
        after2.minus(after1),
        Counts {
            tag_lists: 1,
            ..Counts::default()
        },
        "(a) second poll: the tag list only"
    );
    assert_eq!(first, second);
    // (c) one new tag costs one manifest and one config request.
    reg.push(
        &c,
        &repo,
        Some("build-new"),
        &Img::at("2025-01-01T00:00:00Z"),
    )
    .await;
    let before3 = reg.counts(&repo).await;
    let third = src.discover(&ctx, &s).await.unwrap();
    let after3 = reg.counts(&repo).await;
    assert_eq!(
        after3.minus(before3),
        Counts {
            tag_lists: 1,
            manifest_gets: 1,
            manifest_heads: 0,
            blob_gets: 1
        },
        "(c) one new tag"
    );
    assert_eq!(tags(&third)[0], "build-new");
    assert_eq!(&tags(&third)[1..], &tags(&second)[..4]);
}

#[tokio::test]
async fn economy_semver_cache_by_tag_second_poll_lists_only() {
    let Some(reg) = Reg::auth("economy_semver_cache_by_tag_second_poll_lists_only") else {
        return;
    };
    let repo = unique("economy-semver");
    let c = reg.pusher(&repo).await;
    for i in 0..30 {
        reg.push(
            &c,
            &repo,
            Some(&format!("1.{i}.0")),
            &Img::at("2024-01-01T00:00:00Z").nonce(&i.to_string()),
        )
        .await;
    }
    let src = ImageSource::new(fast());
    let mut s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    s.cache_by_tag = true;
    s.discovery_limit = 10;
    let before = reg.counts(&repo).await;
    src.discover(&reg.context(), &s).await.unwrap();
    let after1 = reg.counts(&repo).await;
    assert_eq!(
        after1.minus(before),
        Counts {
            tag_lists: 1,
            manifest_gets: 10,
            manifest_heads: 0,
            blob_gets: 10
        },
        "SemVer reads only discoveryLimit manifests"
    );
    src.discover(&reg.context(), &s).await.unwrap();
    let after2 = reg.counts(&repo).await;
    assert_eq!(
        after2.minus(after1),
        Counts {
            tag_lists: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn economy_digest_keyed_without_cache_by_tag() {
    let Some(reg) = Reg::auth("economy_digest_keyed_without_cache_by_tag") else {
        return;
    };
    let repo = unique("economy-digest");
    let c = reg.pusher(&repo).await;
    for i in 0..20 {
        reg.push(
            &c,
            &repo,
            Some(&format!("t{i:02}")),
            &Img::at(&format!("2024-01-{:02}T00:00:00Z", i + 1)),
        )
        .await;
    }
    let src = ImageSource::new(fast());
    let s = sub(&reg.url(&repo), ImageSelectionStrategy::NewestBuild);
    let before = reg.counts(&repo).await;
    let first = src.discover(&reg.context(), &s).await.unwrap();
    let after1 = reg.counts(&repo).await;
    assert_eq!(
        after1.minus(before),
        Counts {
            tag_lists: 1,
            manifest_gets: 20,
            manifest_heads: 0,
            blob_gets: 20
        },
        "a tag never seen: one GET by tag, one config"
    );
    let second = src.discover(&reg.context(), &s).await.unwrap();
    let after2 = reg.counts(&repo).await;
    assert_eq!(
        after2.minus(after1),
        Counts {
            tag_lists: 1,
            manifest_gets: 0,
            manifest_heads: 20,
            blob_gets: 0
        },
        "a tag seen before: one HEAD, metadata from the digest cache"
    );
    assert_eq!(first, second);
    // A moved tag is noticed (this is why the HEAD is needed).
    let moved = reg
        .push(&c, &repo, Some("t00"), &Img::at("2030-01-01T00:00:00Z"))
        .await;
    let third = src.discover(&reg.context(), &s).await.unwrap();
    let after3 = reg.counts(&repo).await;
    assert_eq!(images(&third)[0].tag, "t00");
    assert_eq!(images(&third)[0].digest, moved);
    assert_eq!(
        after3.minus(after2),
        Counts {
            tag_lists: 1,
            manifest_gets: 1,
            manifest_heads: 20,
            blob_gets: 1
        }
    );
}

/// A webhook names the one tag it pushed: discovery reads that tag only (no HEAD of the
/// tags it knows), and finds the same as a full poll would.
#[tokio::test]
async fn incremental_refresh_reads_only_the_named_tag() {
    let Some(reg) = Reg::auth("incremental_refresh_reads_only_the_named_tag") else {
        return;
    };
    let repo = unique("incremental");
    let c = reg.pusher(&repo).await;
    for i in 0..10 {
        reg.push(
            &c,
            &repo,
            Some(&format!("1.0.{i}")),
            &Img::at(&format!("2024-01-{:02}T00:00:00Z", i + 1)),
        )
        .await;
    }
    let src = ImageSource::new(fast());
    let s = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    src.discover(&reg.context(), &s).await.unwrap();
    let pushed = reg
        .push(&c, &repo, Some("1.0.10"), &Img::at("2024-02-01T00:00:00Z"))
        .await;
    let hints = kargo_core::source::DiscoveryHints {
        tags: ["1.0.10".to_owned()].into_iter().collect(),
    };
    let before = reg.counts(&repo).await;
    let hinted = src
        .discover(&reg.context().with_hints(hints), &s)
        .await
        .unwrap();
    let after = reg.counts(&repo).await;
    assert_eq!(
        after.minus(before),
        Counts {
            tag_lists: 1,
            manifest_gets: 1,
            manifest_heads: 0,
            blob_gets: 1
        },
        "only the named tag is read"
    );
    assert_eq!(images(&hinted)[0].tag, "1.0.10");
    assert_eq!(images(&hinted)[0].digest, pushed);
    // A regular poll agrees.
    let full = src.discover(&reg.context(), &s).await.unwrap();
    assert_eq!(hinted, full);
}

// ---------------------------------------------------------------------------------------
// Conformance (the AUTH registry, SemVer)

struct RegistryBackend {
    reg: Reg,
    source: Arc<ImageSource>,
}

#[async_trait]
impl conformance::Backend for RegistryBackend {
    fn source(&self) -> Arc<dyn DynSource> {
        self.source.clone()
    }

    fn context(&self) -> DiscoveryContext {
        self.reg.context()
    }

    async fn create_repository(&self, name: &str) -> String {
        // A repository that exists with no tags: push one image, delete its manifest.
        let repo = unique(name);
        let c = self.reg.pusher(&repo).await;
        let d = self
            .reg
            .push(&c, &repo, Some("seed"), &Img::at("2024-01-01T00:00:00Z"))
            .await;
        self.reg.delete(&repo, &d).await;
        repo
    }

    async fn publish(&self, repo: &str, versions: &[&str]) {
        let c = self.reg.pusher(repo).await;
        for v in versions {
            self.reg
                .push(&c, repo, Some(v), &Img::at("2024-01-01T00:00:00Z"))
                .await;
        }
    }

    fn subscription(&self, repo: &str, constraint: Option<&str>, limit: Option<u32>) -> Json {
        let mut s = json!({"repoURL": self.reg.url(repo), "imageSelectionStrategy": "SemVer"});
        if let Some(c) = constraint {
            s["constraint"] = json!(c);
        }
        if let Some(l) = limit {
            s["discoveryLimit"] = json!(l);
        }
        s
    }

    fn missing_repository(&self) -> Json {
        json!({"repoURL": self.reg.url(&unique("never-pushed"))})
    }

    async fn bad_credentials(&self) -> Option<(Json, DiscoveryContext)> {
        let repo = unique("bad-creds");
        self.publish(&repo, &["1.0.0"]).await;
        let (user, _) = self.reg.user.clone()?;
        let ctx = DiscoveryContext::new("p", "w").with_credentials(Arc::new(Fixed(Some(
            Credentials::basic(user, "not-the-password"),
        ))));
        Some((self.subscription(&repo, None, None), ctx))
    }
}

#[tokio::test]
async fn conformance_auth_registry() {
    let Some(reg) = Reg::auth("conformance_auth_registry") else {
        return;
    };
    let backend = RegistryBackend {
        reg,
        source: Arc::new(ImageSource::new(fast())),
    };
    conformance::run("image", &backend).await;
}

// ---------------------------------------------------------------------------------------
// Stub registries: Link pagination, bearer tokens, error statuses

type Handler = Arc<dyn Fn(&str, &str, &str) -> (u16, Vec<(String, String)>, String) + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1: `handler(method, target, authorization)`
/// answers every request.
async fn stub(handler: Handler) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let mut lines = head.lines();
                        let mut first = lines.next().unwrap_or("").split_whitespace();
                        let method = first.next().unwrap_or("").to_owned();
                        let target = first.next().unwrap_or("/").to_owned();
                        let auth = lines
                            .filter_map(|l| l.split_once(':'))
                            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                            .map(|(_, v)| v.trim().to_owned())
                            .unwrap_or_default();
                        let (status, headers, body) = handler(&method, &target, &auth);
                        let mut resp =
                            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                        for (k, v) in headers {
                            resp.push_str(&format!("{k}: {v}\r\n"));
                        }
                        resp.push_str("\r\n");
                        if method != "HEAD" {
                            resp.push_str(&body);
                        }
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

/// Serves `tags` 3 per page with `Link` headers, and one shared image for every tag.
fn paging_handler(
    tags: Vec<String>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    bearer: bool,
    port: Arc<std::sync::Mutex<String>>,
) -> Handler {
    let config = br#"{"created":"2024-01-01T00:00:00Z"}"#.to_vec();
    let cd = sha256_digest(&config);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": []
    })
    .to_string();
    let md = sha256_digest(manifest.as_bytes());
    let config = String::from_utf8(config).unwrap();
    Arc::new(move |method, target, auth| {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path == "/token" {
            seen.lock().unwrap().push(format!("token {query}"));
            return (
                200,
                vec![],
                json!({"token": "tok-123", "expires_in": 300}).to_string(),
            );
        }
        if bearer && auth != "Bearer tok-123" {
            let realm = format!("http://{}/token", port.lock().unwrap());
            return (
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    format!(
                        "Bearer realm=\"{realm}\",service=\"stub\",scope=\"repository:team/app:pull\""
                    ),
                )],
                "{}".into(),
            );
        }
        if path.ends_with("/tags/list") {
            seen.lock().unwrap().push(query.to_owned());
            let mut last = String::new();
            let mut n = usize::MAX;
            for kv in query.split('&') {
                match kv.split_once('=') {
                    Some(("n", v)) => n = v.parse().unwrap(),
                    Some(("last", v)) => last = v.to_owned(),
                    _ => {}
                }
            }
            let page: Vec<&String> = tags.iter().filter(|t| **t > last).take(n).collect();
            let mut headers = vec![];
            if let Some(l) = page.last()
                && tags.iter().any(|t| t > *l)
            {
                headers.push((
                    "Link".into(),
                    format!("</v2/team/app/tags/list?n={n}&last={l}>; rel=\"next\""),
                ));
            }
            return (
                200,
                headers,
                json!({"name": "team/app", "tags": page}).to_string(),
            );
        }
        if path.contains("/manifests/") {
            seen.lock().unwrap().push(format!("{method} manifest"));
            return (
                200,
                vec![
                    ("Docker-Content-Digest".into(), md.clone()),
                    (
                        "Content-Type".into(),
                        "application/vnd.oci.image.manifest.v1+json".into(),
                    ),
                ],
                manifest.clone(),
            );
        }
        if path.ends_with(&cd) {
            seen.lock().unwrap().push("config".to_owned());
            return (200, vec![], config.clone());
        }
        (404, vec![], "{}".into())
    })
}

#[tokio::test]
async fn tag_pagination_follows_link_headers() {
    let mut all: Vec<String> = (0..8).map(|i| format!("1.{i}.0")).collect();
    all.push("latest".into());
    all.sort();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = Arc::new(std::sync::Mutex::new(String::new()));
    let host = stub(paging_handler(all, seen.clone(), false, port)).await;
    let src = ImageSource::new({
        let mut o = fast();
        o.tag_page_size = Some(3);
        o
    });
    let mut s = sub(&format!("{host}/team/app"), ImageSelectionStrategy::SemVer);
    s.discovery_limit = 2;
    let d = src
        .discover(&DiscoveryContext::new("p", "w"), &s)
        .await
        .unwrap();
    assert_eq!(tags(&d), ["1.7.0", "1.6.0"]);
    let q: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.starts_with("n="))
        .cloned()
        .collect();
    assert_eq!(q, ["n=3", "n=3&last=1.2.0", "n=3&last=1.5.0"]);
    assert_eq!(src.stats().tag_lists, 3);
}

#[tokio::test]
async fn bearer_token_flow() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = Arc::new(std::sync::Mutex::new(String::new()));
    let host = stub(paging_handler(
        vec!["1.0.0".into(), "2.0.0".into()],
        seen.clone(),
        true,
        port.clone(),
    ))
    .await;
    host.clone_into(&mut port.lock().unwrap());
    let src = ImageSource::new(fast());
    let s = sub(&format!("{host}/team/app"), ImageSelectionStrategy::SemVer);
    let d = src
        .discover(&DiscoveryContext::new("p", "w"), &s)
        .await
        .unwrap();
    assert_eq!(tags(&d), ["2.0.0", "1.0.0"]);
    let tokens: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.starts_with("token"))
        .cloned()
        .collect();
    assert_eq!(
        tokens,
        ["token service=stub&scope=repository%3Ateam%2Fapp%3Apull"]
    );
    // The token is reused by the next discovery.
    src.discover(&DiscoveryContext::new("p", "w"), &s)
        .await
        .unwrap();
    assert_eq!(src.stats().tokens, 1);
}

#[tokio::test]
async fn error_statuses_map_to_kinds() {
    for (status, kind) in [
        (429, SourceErrorKind::RateLimited),
        (503, SourceErrorKind::Transient),
        (500, SourceErrorKind::Transient),
        (403, SourceErrorKind::Unauthorized),
        (404, SourceErrorKind::NotFound),
        (400, SourceErrorKind::Other),
    ] {
        let host = stub(Arc::new(move |_, _, _| (status, vec![], "{}".into()))).await;
        let src = ImageSource::new(fast());
        let s = sub(&format!("{host}/team/app"), ImageSelectionStrategy::SemVer);
        let e = src
            .discover(&DiscoveryContext::new("p", "w"), &s)
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "HTTP {status}: {e}");
    }
    // Nothing listening: transient.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let src = ImageSource::new(fast());
    let e = src
        .discover(
            &DiscoveryContext::new("p", "w"),
            &sub(
                &format!("127.0.0.1:{port}/a"),
                ImageSelectionStrategy::SemVer,
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::Transient, "{e}");
}

#[tokio::test]
async fn plain_http_refused_for_non_loopback_registries() {
    let src = ImageSource::new(fast());
    let e = src
        .discover(
            &DiscoveryContext::new("p", "w"),
            &sub(
                "http://registry.example.com/team/app",
                ImageSelectionStrategy::SemVer,
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
    assert!(e.message.contains("plain HTTP"), "{e}");
    assert_eq!(src.stats().total(), 0, "refused before any request");
    assert_eq!(
        src.endpoint("registry.example.com/team/app").unwrap(),
        "https://registry.example.com/v2/team/app"
    );
    let insecure = ImageSource::new({
        let mut o = fast();
        o.insecure_registries = vec!["registry.example.com".into()];
        o
    });
    assert_eq!(
        insecure
            .endpoint("http://registry.example.com/team/app")
            .unwrap(),
        "http://registry.example.com/v2/team/app"
    );
    assert_eq!(
        src.endpoint("localhost:5000/team/app").unwrap(),
        "http://localhost:5000/v2/team/app"
    );
}

#[tokio::test]
async fn rate_limit_is_applied() {
    // 40 tags on a stub at 20 requests/s (bursts of 20): 1 list + 40 manifest GETs + 1
    // config (all tags share one image) = 42 requests → at least (42 - 20) / 20 = 1.1 s.
    let all: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let host = stub(paging_handler(all, seen, false, Arc::default())).await;
    let src = ImageSource::new({
        let mut o = ImageSourceOptions::default();
        o.rate_limit = 20.0;
        o.concurrency = 1;
        o
    });
    let s = sub(
        &format!("{host}/team/app"),
        ImageSelectionStrategy::NewestBuild,
    );
    let start = std::time::Instant::now();
    let d = src
        .discover(&DiscoveryContext::new("p", "w"), &s)
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(images(&d).len(), 20);
    assert_eq!(src.stats().total(), 42, "{:?}", src.stats());
    assert!(took >= Duration::from_millis(1_050), "{took:?}");
}

// ---------------------------------------------------------------------------------------
// Registries at scale: many Warehouses on one registry (issue 19, item 5)

/// The five kinds of subscription the 500 Warehouses cycle through, on `url`: SemVer
/// (plain and constrained), Lexical, NewestBuild (allow regex) and Digest.
fn scale_subscriptions(url: &str) -> Vec<ImageSubscription> {
    let mut semver = sub(url, ImageSelectionStrategy::SemVer);
    semver.discovery_limit = 3;
    let mut constrained = sub(url, ImageSelectionStrategy::SemVer);
    constrained.constraint = "<1.5.0".into();
    constrained.discovery_limit = 2;
    let mut lexical = sub(url, ImageSelectionStrategy::Lexical);
    lexical.discovery_limit = 4;
    let mut newest = sub(url, ImageSelectionStrategy::NewestBuild);
    newest.allow_tags_regexes = vec![r"^1\.".into()];
    newest.discovery_limit = 3;
    let mut digest = sub(url, ImageSelectionStrategy::Digest);
    digest.constraint = "stable".into();
    vec![semver, constrained, lexical, newest, digest]
}

/// Tags each of [`scale_subscriptions`] resolves (reads the manifest of) per discovery.
const SCALE_TAGS_READ: [u64; 5] = [3, 2, 4, 10, 1];

/// Discovers `subs[i % subs.len()]` for i in 0..n, all at once on `src`.
async fn discover_concurrently(
    src: &Arc<ImageSource>,
    ctx: &DiscoveryContext,
    subs: &[ImageSubscription],
    n: usize,
) -> Vec<(usize, Result<Discovery, kargo_core::source::SourceError>)> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (src, ctx, s) = (src.clone(), ctx.clone(), subs[i % subs.len()].clone());
        set.spawn(async move { (i, src.discover(&ctx, &s).await) });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// Requests of one pass of the 500 Warehouses, for the printed table.
struct PassRow {
    pass: &'static str,
    counts: Counts,
    stats: kargo_sources::image::RequestStats,
    took: Duration,
}

/// 500 Warehouses (five kinds of subscription, 100 each) on one repository of 12 tags,
/// discovered all at once in each pass: with a common
/// `fresh_after` a pass costs one tag list (per page) and one look at each tag read,
/// whatever the concurrency; the first pass reads each manifest and config once, a
/// no-change pass makes no manifest GET; without `fresh_after` each discovery lists and
/// looks on its own. Every discovery finds what a lone discovery finds. Counted from the
/// registry's access log and from the source's stats; prints the table (`--nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_500_warehouses_one_repository_share_tag_lists() {
    let Some(reg) = Reg::auth("scale_500_warehouses_one_repository_share_tag_lists") else {
        return;
    };
    let repo = unique("scale500");
    let c = reg.pusher(&repo).await;
    for i in 0..10 {
        reg.push(
            &c,
            &repo,
            Some(&format!("1.{i}.0")),
            &Img::at(&format!("2024-01-{:02}T00:00:00Z", 10 + (i * 7) % 10)).nonce(&i.to_string()),
        )
        .await;
    }
    reg.push(&c, &repo, Some("latest"), &Img::at("2024-02-01T00:00:00Z"))
        .await;
    reg.push(
        &c,
        &repo,
        Some("stable"),
        &Img::at("2024-02-02T00:00:00Z").nonce("stable"),
    )
    .await;
    // (docker-registry 2.8 does not page tag lists: one page. Paging: the stub test
    // `shared_tag_list_is_read_once_with_all_its_pages`.)
    let options = fast;
    let subs = scale_subscriptions(&reg.url(&repo));

    // What each kind of subscription finds alone (a source of its own, no sharing).
    let mut lone = Vec::new();
    for s in &subs {
        let d = ImageSource::new(options())
            .discover(&reg.context(), s)
            .await
            .unwrap();
        assert!(!images(&d).is_empty(), "{s:?}");
        lone.push(d);
    }

    const N: usize = 500;
    let per_kind = (N / subs.len()) as u64;
    let resolutions: u64 = SCALE_TAGS_READ.iter().map(|n| n * per_kind).sum();
    let listing = per_kind * 4; // every kind but Digest lists tags
    let src = Arc::new(ImageSource::new(options()));
    let mut rows = Vec::new();
    let pass = |name: &'static str, fresh: bool, subs: &[ImageSubscription]| {
        let subs = subs.to_vec();
        let (src, reg, lone, repo) = (&src, &reg, &lone, &repo);
        async move {
            let mut ctx = reg.context();
            if fresh {
                ctx = ctx.with_fresh_after(std::time::Instant::now());
            }
            let before = reg.counts(repo).await;
            let stats_before = src.stats();
            let start = std::time::Instant::now();
            let results = discover_concurrently(src, &ctx, &subs, N).await;
            let took = start.elapsed();
            for (i, r) in results {
                let d = r.unwrap_or_else(|e| panic!("{name}: discovery {i}: {e}"));
                assert_eq!(d, lone[i % subs.len()], "{name}: discovery {i}");
            }
            let counts = reg.counts(repo).await.minus(before);
            let s = src.stats();
            let stats = kargo_sources::image::RequestStats {
                tag_lists: s.tag_lists - stats_before.tag_lists,
                manifest_gets: s.manifest_gets - stats_before.manifest_gets,
                manifest_heads: s.manifest_heads - stats_before.manifest_heads,
                blob_gets: s.blob_gets - stats_before.blob_gets,
                tokens: s.tokens - stats_before.tokens,
                signature_gets: s.signature_gets - stats_before.signature_gets,
                shared_tag_lists: s.shared_tag_lists - stats_before.shared_tag_lists,
                shared_tags: s.shared_tags - stats_before.shared_tags,
            };
            PassRow {
                pass: name,
                counts,
                stats,
                took,
            }
        }
    };

    // First pass, cold cache: one tag list, each of the 12 tags read once
    // (manifest and config), however many of the 500 discoveries read it at once.
    let cold = pass("first pass (cold), fresh_after", true, &subs).await;
    assert_eq!(
        cold.counts,
        Counts {
            tag_lists: 1,
            manifest_gets: 12,
            manifest_heads: 0,
            blob_gets: 12
        },
        "cold pass"
    );
    assert_eq!(cold.stats.total(), 1 + 12 + 12);
    assert_eq!(cold.stats.shared_tag_lists, listing - 1);
    assert_eq!(cold.stats.shared_tags, resolutions - 12);
    rows.push(cold);

    // A pass with nothing new: the tag list again, one HEAD per tag read, no GET.
    let warm = pass("no-change pass, fresh_after", true, &subs).await;
    assert_eq!(
        warm.counts,
        Counts {
            tag_lists: 1,
            manifest_gets: 0,
            manifest_heads: 12,
            blob_gets: 0
        },
        "no-change pass"
    );
    assert_eq!(warm.stats.shared_tag_lists, listing - 1);
    assert_eq!(warm.stats.shared_tags, resolutions - 12);
    rows.push(warm);

    // Without fresh_after (a direct call, a webhook refresh) each discovery reads.
    let direct = pass("no-change pass, no fresh_after", false, &subs).await;
    assert_eq!(
        direct.counts,
        Counts {
            tag_lists: listing as usize,
            manifest_gets: 0,
            manifest_heads: resolutions as usize,
            blob_gets: 0
        },
        "no sharing without fresh_after"
    );
    assert_eq!(direct.stats.shared_tag_lists, 0);
    assert_eq!(direct.stats.shared_tags, 0);
    rows.push(direct);

    // With cacheByTag a no-change pass is the tag list only, plus the one HEAD of the
    // Digest subscriptions' tag (Digest always asks where its tag points).
    let trusting: Vec<ImageSubscription> = subs
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.cache_by_tag = true;
            s
        })
        .collect();
    let trusted = pass("no-change pass, fresh_after, cacheByTag", true, &trusting).await;
    assert_eq!(
        trusted.counts,
        Counts {
            tag_lists: 1,
            manifest_gets: 0,
            manifest_heads: 1,
            blob_gets: 0
        },
        "no-change pass with cacheByTag"
    );
    assert_eq!(trusted.stats.shared_tag_lists, listing - 1);
    assert_eq!(trusted.stats.shared_tags, per_kind - 1);
    rows.push(trusted);

    eprintln!(
        "\n500 image Warehouses (5 kinds x 100) on one repository (12 tags), \
         auth docker-registry on loopback, discovered concurrently:\n"
    );
    eprintln!(
        "| pass | tag-list pages | manifest GETs | manifest HEADs | blob GETs | requests | tag lists reused | tag looks reused | wall time |"
    );
    eprintln!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let c = r.counts;
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0?} |",
            r.pass,
            c.tag_lists,
            c.manifest_gets,
            c.manifest_heads,
            c.blob_gets,
            c.tag_lists + c.manifest_gets + c.manifest_heads + c.blob_gets,
            r.stats.shared_tag_lists,
            r.stats.shared_tags,
            r.took
        );
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that records the arrival time and
/// request line of every request head (the image source sends GET and HEAD only, no
/// bodies). Returns its `host:port`.
async fn counting_proxy(
    upstream: String,
    seen: Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            let seen = seen.clone();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            });
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&head[..end]).into_owned();
                        let line = text.lines().next().unwrap_or("").to_owned();
                        seen.lock().unwrap().push((std::time::Instant::now(), line));
                        head.drain(..end + 4);
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            });
        }
    });
    format!("127.0.0.1:{}", addr.port())
}

/// 500 Warehouses on 10 repositories of one registry (behind a counting proxy), half
/// naming it `127.0.0.1:PORT`, half `HTTP://127.0.0.1:PORT` (one registry host, one
/// limit), discovered all at once in one pass at 5 requests/s (bursts of 5): the 50
/// requests (per repository one tag list, two manifests, two configs) arrive no faster
/// than one bucket allows (per-subscription or per-name buckets would let them through
/// at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_rate_limit_holds_across_500_concurrent_discoveries() {
    let Some(reg) = Reg::anonymous("scale_rate_limit_holds_across_500_concurrent_discoveries")
    else {
        return;
    };
    const REPOS: usize = 10;
    let mut repos = Vec::new();
    for r in 0..REPOS {
        let repo = unique("scale-rate");
        let c = reg.pusher(&repo).await;
        for (i, tag) in ["1.0.0", "1.1.0"].into_iter().enumerate() {
            reg.push(
                &c,
                &repo,
                Some(tag),
                &Img::at(&format!("2024-01-0{}T00:00:00Z", i + 1)).nonce(&format!("{r}-{i}")),
            )
            .await;
        }
        repos.push(repo);
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let proxy = counting_proxy(reg.host.clone(), seen.clone()).await;
    const RATE: f64 = 5.0;
    const BURST: f64 = 5.0;
    let src = Arc::new(ImageSource::new({
        let mut o = ImageSourceOptions::default();
        o.rate_limit = RATE;
        o
    }));
    assert_eq!(
        src.rate_limit_key(&format!("{proxy}/a")).unwrap(),
        src.rate_limit_key(&format!("HTTP://{proxy}/b")).unwrap()
    );
    let mut subs = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        let url = if i % 2 == 0 {
            format!("{proxy}/{repo}")
        } else {
            format!("HTTP://{proxy}/{repo}")
        };
        let strategy = [
            ImageSelectionStrategy::SemVer,
            ImageSelectionStrategy::NewestBuild,
            ImageSelectionStrategy::Lexical,
        ][i % 3];
        subs.push(sub(&url, strategy));
    }
    let ctx = DiscoveryContext::new("p", "w").with_fresh_after(std::time::Instant::now());
    let start = std::time::Instant::now();
    let results = discover_concurrently(&src, &ctx, &subs, 500).await;
    let took = start.elapsed();
    for (i, r) in results {
        let d = r.unwrap_or_else(|e| panic!("discovery {i}: {e}"));
        assert_eq!(images(&d).len(), 2, "discovery {i}");
    }
    let arrivals: Vec<(std::time::Instant, String)> = seen.lock().unwrap().clone();
    let expected = REPOS * 5;
    assert_eq!(
        arrivals.len(),
        expected,
        "one list, two manifests, two configs per repository: {:?}",
        arrivals.iter().map(|(_, l)| l).collect::<Vec<_>>()
    );
    assert_eq!(src.stats().total(), expected as u64, "{:?}", src.stats());
    // Between any two arrivals no more requests than the bucket allows: the burst plus
    // the rate times the time between them, with one request of slack for the jitter
    // between taking a token and the request reaching the proxy.
    let mut times: Vec<std::time::Instant> = arrivals.iter().map(|(t, _)| *t).collect();
    times.sort();
    for i in 0..times.len() {
        for j in i..times.len() {
            let span = times[j].duration_since(times[i]).as_secs_f64();
            let allowed = BURST + RATE * span + 1.0;
            let n = (j - i + 1) as f64;
            assert!(
                n <= allowed,
                "{n} requests within {span:.3} s (at most {allowed:.1} allowed)"
            );
        }
    }
    let least = (expected as f64 - BURST) / RATE;
    assert!(
        took.as_secs_f64() >= least - 0.05,
        "{expected} requests at {RATE}/s (bursts of {BURST}) took {took:?}, at least {least} s expected"
    );
    eprintln!("500 discoveries, {expected} requests at {RATE}/s took {took:?}");
}

/// Many discoveries meeting the same bearer challenge at once ask the token service
/// once (and the token request counts against the registry's rate limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bearer_challenges_fetch_one_token() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = Arc::new(std::sync::Mutex::new(String::new()));
    let host = stub(paging_handler(
        vec!["1.0.0".into(), "2.0.0".into()],
        seen.clone(),
        true,
        port.clone(),
    ))
    .await;
    host.clone_into(&mut port.lock().unwrap());
    let src = Arc::new(ImageSource::new(fast()));
    let s = sub(&format!("{host}/team/app"), ImageSelectionStrategy::SemVer);
    // No fresh_after: every discovery lists on its own, and meets the challenge.
    let results = discover_concurrently(&src, &DiscoveryContext::new("p", "w"), &[s], 50).await;
    for (i, r) in results {
        assert_eq!(tags(&r.unwrap()), ["2.0.0", "1.0.0"], "discovery {i}");
    }
    let tokens = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.starts_with("token"))
        .count();
    assert_eq!(tokens, 1);
    assert_eq!(src.stats().tokens, 1);
    assert_eq!(src.stats().tag_lists, 50);
}

/// A tag list of several pages is read once, all pages, for 100 concurrent discoveries of
/// one pass (stub registry paging by `Link`, 3 tags a page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tag_list_is_read_once_with_all_its_pages() {
    let mut all: Vec<String> = (0..8).map(|i| format!("1.{i}.0")).collect();
    all.push("latest".into());
    all.sort();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let host = stub(paging_handler(all, seen.clone(), false, Arc::default())).await;
    let src = Arc::new(ImageSource::new({
        let mut o = fast();
        o.tag_page_size = Some(3);
        o
    }));
    let mut s = sub(&format!("{host}/team/app"), ImageSelectionStrategy::SemVer);
    s.discovery_limit = 2;
    let ctx = DiscoveryContext::new("p", "w").with_fresh_after(std::time::Instant::now());
    for (i, r) in discover_concurrently(&src, &ctx, &[s], 100).await {
        assert_eq!(tags(&r.unwrap()), ["1.7.0", "1.6.0"], "discovery {i}");
    }
    let pages: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.starts_with("n="))
        .cloned()
        .collect();
    assert_eq!(pages, ["n=3", "n=3&last=1.2.0", "n=3&last=1.5.0"]);
    let stats = src.stats();
    assert_eq!(stats.tag_lists, 3);
    assert_eq!(stats.shared_tag_lists, 99);
    assert_eq!(stats.manifest_gets, 2, "each tag read once");
    assert_eq!(stats.shared_tags, 198);
    assert_eq!(src.shared_tag_lists_len(), 1);
}

/// What one discovery of a pass read with good credentials is never handed to another
/// with other (or no) credentials: both the tag list and a tag's resolution (`Digest`)
/// are asked for again and refused.
#[tokio::test]
async fn shared_views_are_per_credentials() {
    let Some(reg) = Reg::auth("shared_views_are_per_credentials") else {
        return;
    };
    let repo = unique("shared-creds");
    let c = reg.pusher(&repo).await;
    reg.push(&c, &repo, Some("1.0.0"), &Img::at("2024-01-01T00:00:00Z"))
        .await;
    let src = ImageSource::new(fast());
    let semver = sub(&reg.url(&repo), ImageSelectionStrategy::SemVer);
    let mut digest = sub(&reg.url(&repo), ImageSelectionStrategy::Digest);
    digest.constraint = "1.0.0".into();
    let pass = std::time::Instant::now();
    let good = reg.context().with_fresh_after(pass);
    for s in [&semver, &digest] {
        let d = src.discover(&good, s).await.unwrap();
        assert_eq!(tags(&d), ["1.0.0"]);
    }
    // The same pass, the same credentials: shared.
    let before = src.stats();
    for s in [&semver, &digest] {
        src.discover(&good, s).await.unwrap();
    }
    assert_eq!(src.stats().total(), before.total(), "{:?}", src.stats());
    assert_eq!(src.stats().shared_tag_lists, before.shared_tag_lists + 1);
    let (user, _) = reg.user.clone().unwrap();
    for creds in [None, Some(Credentials::basic(&user, "wrong-password"))] {
        let ctx = DiscoveryContext::new("p", "w")
            .with_credentials(Arc::new(Fixed(creds)))
            .with_fresh_after(pass);
        for s in [&semver, &digest] {
            let e = src.discover(&ctx, s).await.unwrap_err();
            assert_eq!(e.kind, SourceErrorKind::Unauthorized, "{e}");
        }
    }
}
