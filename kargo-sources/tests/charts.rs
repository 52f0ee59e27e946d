//! The chart repository clients against real servers: a static Helm repository served by
//! lighttpd (`TEST_HELM_REPO_*`) and Debian's `docker-registry` (`TEST_OCI_REGISTRY`), both
//! started by `ci/test.sh`. Without those variables the tests print a skip message, except
//! with `CI=true`, where a missing variable fails the test.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kargo_core::secret::Credentials;
use kargo_sources::chart::archive::read_metadata;
use kargo_sources::chart::{
    ChartClientOptions, ChartErrorKind, HELM_CHART_CONTENT_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE,
    HttpChartRepository, IndexCache, OciChartRepository, sha256_digest,
};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

// ---------------------------------------------------------------------------------------
// Helpers

use kargo_core::testing::server_env;

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A real chart archive: `<name>/Chart.yaml`, `values.yaml` and a template.
fn chart_tgz(name: &str, version: &str) -> Vec<u8> {
    let files = [
        (
            "Chart.yaml",
            format!(
                "apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"1.0.0\"\ntype: application\n"
            ),
        ),
        ("values.yaml", "replicas: 1\n".to_owned()),
        (
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n".to_owned(),
        ),
    ];
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, contents) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(contents.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, format!("{name}/{path}"), contents.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Writes `contents` to `path` through a temporary file and a rename (a new inode, so the
/// server's ETag changes even within the same second).
fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(contents).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct HttpRepo {
    dir: PathBuf,
    url: String,
}

/// Publishes charts `(name, version)` into a fresh subdirectory of the served directory
/// (under `private/` when `private`), with an index. `absolute` versions get absolute
/// URLs in the index, the others relative ones.
fn publish_http(test: &str, charts: &[(&str, &str)], private: bool) -> Option<HttpRepo> {
    let root = server_env(test, "TEST_HELM_REPO_DIR")?;
    let base = server_env(test, "TEST_HELM_REPO_URL")?;
    let sub = if private {
        format!("private/{}", unique(test))
    } else {
        unique(test)
    };
    let dir = Path::new(&root).join(&sub);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("{base}/{sub}");
    let repo = HttpRepo { dir, url };
    repo.write_index(charts, &[]);
    Some(repo)
}

impl HttpRepo {
    fn write_index(&self, charts: &[(&str, &str)], absolute: &[&str]) {
        let mut index = String::from("apiVersion: v1\nentries:\n");
        let mut names: Vec<&str> = charts.iter().map(|(n, _)| *n).collect();
        names.dedup();
        for name in names {
            index.push_str(&format!("  {name}:\n"));
            for (n, v) in charts.iter().filter(|(n, _)| *n == name) {
                let file = format!("{n}-{v}.tgz");
                let tgz = chart_tgz(n, v);
                std::fs::write(self.dir.join(&file), &tgz).unwrap();
                let url = if absolute.contains(v) {
                    format!("{}/{file}", self.url)
                } else {
                    file
                };
                index.push_str(&format!(
                    "  - apiVersion: v2\n    name: {n}\n    version: {v}\n    created: \"2020-01-01T00:00:00Z\"\n    digest: {}\n    urls:\n    - {url}\n",
                    &sha256_digest(&tgz)[7..]
                ));
            }
        }
        index.push_str("generated: \"2020-01-01T00:00:00Z\"\n");
        write_atomic(&self.dir.join("index.yaml"), index.as_bytes());
    }

    fn client(&self, credentials: Option<Credentials>) -> HttpChartRepository {
        HttpChartRepository::new(
            &self.url,
            credentials,
            &ChartClientOptions::default(),
            Arc::new(IndexCache::default()),
        )
        .unwrap()
    }
}

/// Pushes a chart archive to `registry/repository:tag` with Helm's media types.
async fn push_oci(registry: &str, repository: &str, tag: &str, tgz: Vec<u8>, media_type: &str) {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference = Reference::with_tag(registry.to_owned(), repository.to_owned(), tag.to_owned());
    let meta = read_metadata(&tgz).unwrap();
    let config = Config::new(
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v2", "name": meta.name, "version": meta.version
        }))
        .unwrap(),
        HELM_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    );
    let layers = vec![ImageLayer::new(tgz, media_type.to_owned(), None)];
    client
        .push(&reference, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// HTTP repositories

#[tokio::test]
async fn http_list_resolve_and_download() {
    let Some(repo) = publish_http(
        "http_list_resolve_and_download",
        &[
            ("app", "0.1.0"),
            ("app", "0.10.0"),
            ("app", "0.2.0"),
            ("other", "1.0.0"),
        ],
        false,
    ) else {
        return;
    };
    repo.write_index(
        &[
            ("app", "0.1.0"),
            ("app", "0.10.0"),
            ("app", "0.2.0"),
            ("other", "1.0.0"),
        ],
        &["0.10.0"],
    );
    let client = repo.client(None);
    assert_eq!(
        client.versions("app").await.unwrap(),
        ["0.10.0", "0.2.0", "0.1.0"]
    );
    assert!(client.versions("missing").await.unwrap().is_empty());

    let relative = client.resolve("app", "0.2.0").await.unwrap();
    assert_eq!(relative.url, format!("{}/app-0.2.0.tgz", repo.url));
    let absolute = client.resolve("app", "0.10.0").await.unwrap();
    assert_eq!(absolute.url, format!("{}/app-0.10.0.tgz", repo.url));

    for chart in [relative, absolute] {
        let archive = client.download(&chart).await.unwrap();
        let on_disk = std::fs::read(repo.dir.join(format!("app-{}.tgz", chart.version))).unwrap();
        assert_eq!(archive.bytes, on_disk);
        assert_eq!(archive.digest, sha256_digest(&on_disk));
        let meta = read_metadata(&archive.bytes).unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.version.as_str()),
            ("app", chart.version.as_str())
        );
    }

    let e = client.resolve("app", "9.9.9").await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::NotFound);
    assert!(e.to_string().contains(&repo.url), "{e}");
}

#[tokio::test]
async fn http_index_is_revalidated_with_etag() {
    let Some(repo) = publish_http(
        "http_index_is_revalidated_with_etag",
        &[("app", "1.0.0")],
        false,
    ) else {
        return;
    };
    let cache = Arc::new(IndexCache::default());
    let client = HttpChartRepository::new(
        &repo.url,
        None,
        &ChartClientOptions::default(),
        cache.clone(),
    )
    .unwrap();
    let first = client.fetch_index().await.unwrap();
    assert!(!first.not_modified);
    let second = client.fetch_index().await.unwrap();
    assert!(second.not_modified, "the second fetch must be a 304");
    assert!(
        Arc::ptr_eq(&first.index, &second.index),
        "a 304 reuses the parsed index"
    );
    assert_eq!(
        (cache.downloaded_count(), cache.not_modified_count()),
        (1, 1)
    );

    // The server saw the conditional request: its access log has a 304 for the index.
    if let Ok(log) = std::env::var("TEST_HELM_REPO_ACCESS_LOG") {
        let wanted = format!("304 /{}", repo.url.rsplit('/').next().unwrap());
        let mut found = false;
        for _ in 0..60 {
            // lighttpd flushes its access log about once a second.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.starts_with(&wanted) && l.ends_with("/index.yaml"))
            {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "no `{wanted}/index.yaml` line in {log}");
    }

    // A changed index is downloaded again.
    repo.write_index(&[("app", "1.0.0"), ("app", "1.1.0")], &[]);
    let third = client.fetch_index().await.unwrap();
    assert!(!third.not_modified);
    assert_eq!(third.index.versions("app"), ["1.1.0", "1.0.0"]);
    assert_eq!(
        (cache.downloaded_count(), cache.not_modified_count()),
        (2, 1)
    );

    // Another client sharing the cache revalidates too.
    let other = HttpChartRepository::new(
        &repo.url,
        None,
        &ChartClientOptions::default(),
        cache.clone(),
    )
    .unwrap();
    assert!(other.fetch_index().await.unwrap().not_modified);
}

#[tokio::test]
async fn http_digest_mismatch_is_refused() {
    let Some(repo) = publish_http(
        "http_digest_mismatch_is_refused",
        &[("app", "1.0.0")],
        false,
    ) else {
        return;
    };
    // Replace the archive after indexing: the index's digest no longer matches.
    std::fs::write(repo.dir.join("app-1.0.0.tgz"), chart_tgz("app", "1.0.1")).unwrap();
    let client = repo.client(None);
    let chart = client.resolve("app", "1.0.0").await.unwrap();
    let e = client.download(&chart).await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::BadResponse);
    assert!(e.to_string().contains("digest mismatch"), "{e}");
}

#[tokio::test]
async fn http_basic_auth() {
    let Some(repo) = publish_http("http_basic_auth", &[("app", "1.0.0")], true) else {
        return;
    };
    let user = server_env("http_basic_auth", "TEST_HELM_REPO_USER").unwrap();
    let password = server_env("http_basic_auth", "TEST_HELM_REPO_PASSWORD").unwrap();

    let e = repo.client(None).versions("app").await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::Unauthorized, "{e}");
    let e = repo
        .client(Some(Credentials::basic(&user, "wrong-password")))
        .versions("app")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::Unauthorized, "{e}");
    assert!(!e.to_string().contains("wrong-password"), "{e}");

    let client = repo.client(Some(Credentials::basic(&user, &password)));
    assert_eq!(client.versions("app").await.unwrap(), ["1.0.0"]);
    let chart = client.resolve("app", "1.0.0").await.unwrap();
    let archive = client.download(&chart).await.unwrap();
    assert_eq!(read_metadata(&archive.bytes).unwrap().version, "1.0.0");

    // Credentials in the URL work too and never show in messages.
    let base = server_env("http_basic_auth", "TEST_HELM_REPO_URL").unwrap();
    let with_userinfo = repo
        .url
        .replacen("http://", &format!("http://{user}:{password}@"), 1);
    let client = HttpChartRepository::new(
        &with_userinfo,
        None,
        &ChartClientOptions::default(),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(client.versions("app").await.unwrap(), ["1.0.0"]);
    let e = client.resolve("app", "2.0.0").await.unwrap_err();
    assert!(!e.to_string().contains(&password), "{e}");
    assert!(e.to_string().contains(&base), "{e}");
}

#[tokio::test]
async fn http_missing_repository_is_not_found() {
    let Some(base) = server_env("http_missing_repository_is_not_found", "TEST_HELM_REPO_URL")
    else {
        return;
    };
    let url = format!("{base}/{}", unique("does-not-exist"));
    let client =
        HttpChartRepository::new(&url, None, &ChartClientOptions::default(), Arc::default())
            .unwrap();
    let e = client.versions("app").await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!("chart repository {url}: index.yaml not found")
    );
}

// ---------------------------------------------------------------------------------------
// OCI registries

#[tokio::test]
async fn oci_list_and_pull() {
    let Some(registry) = server_env("oci_list_and_pull", "TEST_OCI_REGISTRY") else {
        return;
    };
    let path = format!("{}/app", unique("charts"));
    let archives: Vec<(&str, &str, Vec<u8>)> = vec![
        ("0.1.0", "0.1.0", chart_tgz("app", "0.1.0")),
        ("0.2.0", "0.2.0", chart_tgz("app", "0.2.0")),
        (
            "1.0.0_build.1",
            "1.0.0+build.1",
            chart_tgz("app", "1.0.0+build.1"),
        ),
        ("1.0.0-rc.1", "1.0.0-rc.1", chart_tgz("app", "1.0.0-rc.1")),
        ("v2.0.0", "v2.0.0", chart_tgz("app", "2.0.0")),
        ("latest", "latest", chart_tgz("app", "0.2.0")),
    ];
    for (tag, _, tgz) in &archives {
        push_oci(
            &registry,
            &path,
            tag,
            tgz.clone(),
            HELM_CHART_CONTENT_MEDIA_TYPE,
        )
        .await;
    }
    let repo = OciChartRepository::new(
        &format!("oci://{registry}/{path}"),
        None,
        &ChartClientOptions::default(),
    )
    .unwrap();
    let mut tags = repo.tags().await.unwrap();
    tags.sort();
    // docker-registry 2.8 ignores `n` and `last`: with a small page size the listing still
    // ends (the second page brings no new tag) and has every tag once.
    let small_pages = OciChartRepository::new(
        &format!("oci://{registry}/{path}"),
        None,
        &ChartClientOptions::default(),
    )
    .unwrap()
    .with_tag_page_size(2);
    let mut paged = small_pages.tags().await.unwrap();
    paged.sort();
    assert_eq!(paged, tags);
    assert_eq!(
        tags,
        [
            "0.1.0",
            "0.2.0",
            "1.0.0-rc.1",
            "1.0.0_build.1",
            "latest",
            "v2.0.0"
        ]
    );
    assert_eq!(
        repo.versions().await.unwrap(),
        ["1.0.0+build.1", "1.0.0-rc.1", "0.2.0", "0.1.0"],
        "strict semver only, `_` read as `+`, best first"
    );
    for (_, version, tgz) in &archives[..3] {
        let archive = repo.pull(version).await.unwrap();
        assert_eq!(&archive.bytes, tgz);
        assert_eq!(archive.digest, sha256_digest(tgz));
        assert_eq!(read_metadata(&archive.bytes).unwrap().version, *version);
    }
    let e = repo.pull("9.9.9").await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().contains(&format!("oci://{registry}/{path}")),
        "{e}"
    );

    let missing = OciChartRepository::new(
        &format!("oci://{registry}/{}", unique("nothing-here")),
        None,
        &ChartClientOptions::default(),
    )
    .unwrap();
    let e = missing.versions().await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn oci_artifact_without_a_chart_layer_is_refused() {
    let Some(registry) = server_env(
        "oci_artifact_without_a_chart_layer_is_refused",
        "TEST_OCI_REGISTRY",
    ) else {
        return;
    };
    let path = format!("{}/notachart", unique("charts"));
    push_oci(
        &registry,
        &path,
        "1.0.0",
        chart_tgz("notachart", "1.0.0"),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    )
    .await;
    let repo = OciChartRepository::new(
        &format!("oci://{registry}/{path}"),
        None,
        &ChartClientOptions::default(),
    )
    .unwrap();
    let e = repo.pull("1.0.0").await.unwrap_err();
    assert_eq!(e.kind(), ChartErrorKind::BadResponse, "{e}");
    assert!(e.to_string().contains("no Helm chart layer"), "{e}");
}

#[tokio::test]
async fn oci_localhost_gets_plain_http() {
    // Plain HTTP is used for loopback registries only; `localhost` is loopback too.
    let Some(registry) = server_env("oci_localhost_gets_plain_http", "TEST_OCI_REGISTRY") else {
        return;
    };
    let port = registry.rsplit(':').next().unwrap();
    let path = format!("{}/app", unique("charts"));
    push_oci(
        &registry,
        &path,
        "1.0.0",
        chart_tgz("app", "1.0.0"),
        HELM_CHART_CONTENT_MEDIA_TYPE,
    )
    .await;
    let repo = OciChartRepository::new(
        &format!("oci://localhost:{port}/{path}"),
        None,
        &ChartClientOptions::default(),
    )
    .unwrap();
    assert_eq!(repo.versions().await.unwrap(), ["1.0.0"]);
}

/// A minimal registry that paginates `tags/list` by `n` and `last`, as the distribution
/// spec says (docker-registry 2.8 ignores both), and records the queries it got.
async fn paginating_registry(tags: Vec<String>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = queries.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tags = tags.clone();
            let seen = seen.clone();
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
                        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                        let body = if path.ends_with("/tags/list") {
                            seen.lock().unwrap().push(query.to_owned());
                            let mut n = usize::MAX;
                            let mut last = String::new();
                            for kv in query.split('&') {
                                match kv.split_once('=') {
                                    Some(("n", v)) => n = v.parse().unwrap(),
                                    Some(("last", v)) => last = v.to_owned(),
                                    _ => {}
                                }
                            }
                            let page: Vec<&String> =
                                tags.iter().filter(|t| **t > last).take(n).collect();
                            serde_json::json!({"name": "charts/app", "tags": page}).to_string()
                        } else {
                            "{}".to_owned()
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("127.0.0.1:{}", addr.port()), queries)
}

#[tokio::test]
async fn oci_tags_are_read_page_by_page() {
    let mut tags: Vec<String> = (0..7).map(|i| format!("1.{i}.0")).collect();
    tags.push("latest".to_owned());
    tags.sort();
    let (registry, queries) = paginating_registry(tags.clone()).await;
    let repo = OciChartRepository::new(
        &format!("oci://{registry}/charts/app"),
        None,
        &ChartClientOptions::default(),
    )
    .unwrap()
    .with_tag_page_size(3);
    assert_eq!(repo.tags().await.unwrap(), tags);
    assert_eq!(
        *queries.lock().unwrap(),
        ["n=3", "n=3&last=1.2.0", "n=3&last=1.5.0"]
    );
    assert_eq!(repo.versions().await.unwrap()[0], "1.6.0");
}

// ---------------------------------------------------------------------------------------
// The `chart` source through the shared conformance suite

use kargo_core::testing::source_conformance as conformance;

use kargo_core::secret::{CredentialKind, StaticCredentials};
use kargo_core::source::{DiscoveryContext, DynSource};
use kargo_sources::chart::ChartSource;
use serde_json::{Value as Json, json};

/// A private (basic auth) HTTP repository per `create_repository`; each holds chart `app`.
struct HttpBackend {
    root: PathBuf,
    base: String,
    user: String,
    password: String,
    source: Arc<ChartSource>,
    published: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

impl HttpBackend {
    fn dir(&self, url: &str) -> PathBuf {
        self.root
            .join(url.strip_prefix(&format!("{}/", self.base)).unwrap())
    }
}

fn chart_subscription(
    repo: &str,
    name: &str,
    constraint: Option<&str>,
    limit: Option<u32>,
) -> Json {
    let mut s = json!({ "repoURL": repo });
    if !name.is_empty() {
        s["name"] = json!(name);
    }
    if let Some(c) = constraint {
        s["semverConstraint"] = json!(c);
    }
    if let Some(l) = limit {
        s["discoveryLimit"] = json!(l);
    }
    s
}

#[async_trait::async_trait]
impl conformance::Backend for HttpBackend {
    fn source(&self) -> Arc<dyn DynSource> {
        self.source.clone()
    }

    fn context(&self) -> DiscoveryContext {
        DiscoveryContext::new("p", "w").with_credentials(Arc::new(StaticCredentials::new().with(
            CredentialKind::Helm,
            &self.base,
            &self.user,
            &self.password,
        )))
    }

    async fn create_repository(&self, name: &str) -> String {
        let sub = format!("private/{}", unique(name));
        let url = format!("{}/{sub}", self.base);
        std::fs::create_dir_all(self.root.join(&sub)).unwrap();
        let repo = HttpRepo {
            dir: self.root.join(&sub),
            url: url.clone(),
        };
        // An index with another chart only: `app` has no versions yet.
        repo.write_index(&[("other", "1.0.0")], &[]);
        url
    }

    async fn publish(&self, repo: &str, versions: &[&str]) {
        let mut published = self.published.lock().unwrap();
        let all = published.entry(repo.to_owned()).or_default();
        all.extend(versions.iter().map(|v| (*v).to_owned()));
        let charts: Vec<(&str, &str)> = all.iter().map(|v| ("app", v.as_str())).collect();
        let r = HttpRepo {
            dir: self.dir(repo),
            url: repo.to_owned(),
        };
        r.write_index(&charts, &[]);
    }

    fn subscription(&self, repo: &str, constraint: Option<&str>, limit: Option<u32>) -> Json {
        chart_subscription(repo, "app", constraint, limit)
    }

    fn missing_repository(&self) -> Json {
        chart_subscription(
            &format!("{}/private/{}", self.base, unique("missing")),
            "app",
            None,
            None,
        )
    }

    async fn bad_credentials(&self) -> Option<(Json, DiscoveryContext)> {
        let url = self.create_repository("bad-credentials").await;
        let ctx = DiscoveryContext::new("p", "w").with_credentials(Arc::new(
            StaticCredentials::new().with(CredentialKind::Helm, &self.base, &self.user, "wrong"),
        ));
        Some((chart_subscription(&url, "app", None, None), ctx))
    }
}

#[tokio::test]
async fn http_chart_source_conformance() {
    let test = "http_chart_source_conformance";
    let (Some(root), Some(base), Some(user), Some(password)) = (
        server_env(test, "TEST_HELM_REPO_DIR"),
        server_env(test, "TEST_HELM_REPO_URL"),
        server_env(test, "TEST_HELM_REPO_USER"),
        server_env(test, "TEST_HELM_REPO_PASSWORD"),
    ) else {
        return;
    };
    let backend = HttpBackend {
        root: PathBuf::from(root),
        base,
        user,
        password,
        source: Arc::new(ChartSource::new()),
        published: Default::default(),
    };
    conformance::run("http-chart", &backend).await;
    // Every discovery after the first of a repository revalidated its index.
    assert!(backend.source.cache().not_modified_count() > 0);
}

/// One OCI chart repository per `create_repository`, on the anonymous registry. The
/// registry has no authentication, so the bad-credentials case does not apply here (it is
/// covered for OCI by the image source's conformance run on the authenticated registry).
struct OciBackend {
    registry: String,
    source: Arc<ChartSource>,
}

#[async_trait::async_trait]
impl conformance::Backend for OciBackend {
    fn source(&self) -> Arc<dyn DynSource> {
        self.source.clone()
    }

    fn context(&self) -> DiscoveryContext {
        DiscoveryContext::new("p", "w")
    }

    async fn create_repository(&self, name: &str) -> String {
        // A repository exists once something is pushed to it; a non-semver tag gives one
        // with no chart versions.
        let path = format!("{}/app", unique(name));
        push_oci(
            &self.registry,
            &path,
            "latest",
            chart_tgz("app", "0.0.1"),
            HELM_CHART_CONTENT_MEDIA_TYPE,
        )
        .await;
        format!("oci://{}/{path}", self.registry)
    }

    async fn publish(&self, repo: &str, versions: &[&str]) {
        let path = repo
            .strip_prefix(&format!("oci://{}/", self.registry))
            .unwrap();
        for v in versions {
            push_oci(
                &self.registry,
                path,
                &v.replace('+', "_"),
                chart_tgz("app", v),
                HELM_CHART_CONTENT_MEDIA_TYPE,
            )
            .await;
        }
    }

    fn subscription(&self, repo: &str, constraint: Option<&str>, limit: Option<u32>) -> Json {
        chart_subscription(repo, "", constraint, limit)
    }

    fn missing_repository(&self) -> Json {
        chart_subscription(
            &format!("oci://{}/{}/app", self.registry, unique("missing")),
            "",
            None,
            None,
        )
    }

    async fn bad_credentials(&self) -> Option<(Json, DiscoveryContext)> {
        None
    }
}

#[tokio::test]
async fn oci_chart_source_conformance() {
    let Some(registry) = server_env("oci_chart_source_conformance", "TEST_OCI_REGISTRY") else {
        return;
    };
    let backend = OciBackend {
        registry,
        source: Arc::new(ChartSource::new()),
    };
    conformance::run("oci-chart", &backend).await;
}

// ---------------------------------------------------------------------------------------
// Cancellation

#[path = "support/stalling_http.rs"]
mod stalling_http;
use stalling_http::{Stall, stalling_server};

/// Cancels a `chart` discovery against a stalling server once the server holds the
/// request, and checks it ends with a "cancelled" error well before any client timeout.
async fn cancelled_discovery_returns_promptly(stall: Stall) {
    let (base, mut accepted) = stalling_server(stall).await;
    let url = format!("{base}/charts");
    // Long client timeouts: only the cancellation can end the discovery within the bound.
    let mut options = ChartClientOptions::default();
    options.timeout = Duration::from_secs(600);
    let source: Arc<dyn DynSource> = Arc::new(ChartSource::with_options(
        options,
        Arc::new(IndexCache::default()),
    ));
    let cancel = tokio_util::sync::CancellationToken::new();
    let ctx = DiscoveryContext::new("p", "w").with_cancellation(cancel.clone());
    let discovery = tokio::spawn(async move {
        source
            .discover_json(&ctx, json!({"repoURL": url, "name": "app"}))
            .await
    });
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("the server never got the index request")
        .unwrap();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), discovery)
        .await
        .expect("the cancelled discovery did not return within 10 s")
        .unwrap();
    let e = result.expect_err("a cancelled discovery must fail");
    assert!(e.message.contains("cancelled"), "{e}");
    assert!(e.message.contains("127.0.0.1"), "{e}");
}

#[tokio::test]
async fn cancelled_http_discovery_stops_when_the_server_never_answers() {
    cancelled_discovery_returns_promptly(Stall::Silent).await;
}

#[tokio::test]
async fn cancelled_http_discovery_stops_while_the_index_trickles_in() {
    cancelled_discovery_returns_promptly(Stall::Trickle).await;
}
