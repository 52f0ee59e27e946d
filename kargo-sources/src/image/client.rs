//! The registry protocol: requests with auth (basic, bearer token), tag pagination by
//! `Link`, manifests, config blobs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kargo_core::secret::Credentials;
use kargo_core::source::{SourceError, SourceErrorKind};
use reqwest::header::{ACCEPT, HeaderMap, LINK, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::meta::{
    IndexEntry, MANIFEST_ACCEPT, ManifestMeta, RawManifest, annotation_time, config_time,
    is_real_platform,
};
use super::rate_limit::TokenBucket;
use super::shared_views::Origin;
use super::{Inner, RepoRef};
use crate::chart::sha256_digest;

/// The largest manifest accepted.
pub(super) const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// The largest config blob accepted.
const MAX_CONFIG_BYTES: usize = 16 << 20;
/// The largest tag-list page or token response accepted.
const MAX_PAGE_BYTES: usize = 64 << 20;
/// Pages read at most when listing tags.
const MAX_TAG_PAGES: usize = 10_000;

/// A manifest resolved for one tag.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub tag: String,
    pub digest: String,
    pub meta: Arc<ManifestMeta>,
}

/// One discovery's connection to one repository.
pub(crate) struct Session<'a> {
    pub inner: &'a Inner,
    pub http: reqwest::Client,
    pub repo: RepoRef,
    pub creds: Option<Credentials>,
    /// The rate limit of the registry host, shared by every session of the source.
    pub limiter: Arc<TokenBucket>,
    /// `insecureSkipTLSVerify`: part of the shared views' keys.
    pub skip_tls_verify: bool,
    /// Views of the registry taken at or after this instant may be reused
    /// (`DiscoveryContext::fresh_after`).
    pub fresh_after: Option<std::time::Instant>,
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A bearer token and when it stops being used.
#[derive(Clone)]
pub(crate) struct BearerToken {
    pub token: String,
    pub until: Instant,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

pub(crate) fn err(kind: SourceErrorKind, message: String) -> SourceError {
    SourceError::new(kind, message)
}

impl Session<'_> {
    fn token_key(&self) -> String {
        let user = self.creds.as_ref().map_or("", |c| c.username.as_str());
        format!("{}\n{}\n{}", self.repo.base, self.repo.repository, user)
    }

    /// The key of this session's view `what` (`tag` for a tag's resolution): registry,
    /// repository, transport and credentials, hashed.
    fn view_key(&self, what: &str, tag: &str) -> u64 {
        use std::hash::BuildHasher as _;
        let scheme = self.repo.base.split_once("://").map_or("", |(s, _)| s);
        let (user, password) = self.creds.as_ref().map_or(("", ""), |c| {
            (c.username.as_str(), c.password.expose().as_str())
        });
        self.inner.view_keys.hash_one((
            what,
            scheme,
            &self.repo.host_key,
            &self.repo.repository,
            self.skip_tls_verify,
            self.creds.is_some(),
            user,
            password,
            tag,
        ))
    }

    pub(super) fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.repo.base, self.repo.repository)
    }

    /// Sends one request, with the token or basic credentials, following a Bearer
    /// challenge once. Rate limited per registry.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, SourceError> {
        let mut challenged = false;
        loop {
            self.limiter.acquire().await;
            let mut rb = self.http.request(method.clone(), url);
            if let Some(a) = accept {
                rb = rb.header(ACCEPT, a);
            }
            let token = self.inner.token(&self.token_key());
            if let Some(t) = &token {
                rb = rb.bearer_auth(&t.token);
            } else if let Some(c) = &self.creds {
                rb = rb.basic_auth(&c.username, Some(c.password.expose()));
            }
            let resp = rb.send().await.map_err(|e| self.transport(&e))?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !challenged
                && let Some(challenge) = bearer_challenge(resp.headers())
            {
                challenged = true;
                // One token request at a time per key: a session that waited uses the
                // token another one got meanwhile.
                let flight = self.inner.token_flight(&self.token_key());
                let _turn = flight.lock().await;
                let now = self.inner.token(&self.token_key());
                let renewed = match (&token, &now) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(old), Some(new)) => old.token != new.token,
                };
                if !renewed {
                    self.fetch_token(&challenge).await?;
                }
                continue;
            }
            return Ok(resp);
        }
    }

    async fn fetch_token(&self, challenge: &BTreeMap<String, String>) -> Result<(), SourceError> {
        let realm = challenge.get("realm").ok_or_else(|| {
            err(
                SourceErrorKind::Other,
                format!("{}: bearer challenge without a realm", self.repo.display),
            )
        })?;
        let mut url = Url::parse(realm).map_err(|e| {
            err(
                SourceErrorKind::Other,
                format!("{}: bad token realm: {e}", self.repo.display),
            )
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.get("service") {
                q.append_pair("service", service);
            }
            let scope = challenge
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull", self.repo.repository));
            q.append_pair("scope", &scope);
        }
        // The token service counts against the registry's rate limit: it is part of
        // reading the registry.
        self.limiter.acquire().await;
        self.inner.stats.tokens.fetch_add(1, Ordering::Relaxed);
        let mut rb = self.http.get(url);
        if let Some(c) = &self.creds {
            rb = rb.basic_auth(&c.username, Some(c.password.expose()));
        }
        let resp = rb.send().await.map_err(|e| self.transport(&e))?;
        let resp = self.check(resp, "the token service")?;
        let bytes = read_limited(resp, MAX_PAGE_BYTES, &self.repo.display).await?;
        let t: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
            err(
                SourceErrorKind::Other,
                format!("{}: bad token response: {e}", self.repo.display),
            )
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                err(
                    SourceErrorKind::Other,
                    format!("{}: the token response has no token", self.repo.display),
                )
            })?;
        // Used until 30 s before it expires (default lifetime 60 s, as the spec says).
        let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(31) - 30);
        self.inner.put_token(
            self.token_key(),
            BearerToken {
                token,
                until: Instant::now() + life,
            },
        );
        Ok(())
    }

    fn transport(&self, e: &reqwest::Error) -> SourceError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let mut message = format!("{}: {what}", self.repo.display);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        err(SourceErrorKind::Transient, message)
    }

    /// Maps a non-success status to an error.
    pub(super) fn check(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, SourceError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let d = &self.repo.display;
        let (kind, text) = match status.as_u16() {
            401 | 403 => (
                SourceErrorKind::Unauthorized,
                format!("{d}: access to {what} refused (HTTP {status}): check the credentials"),
            ),
            404 => (SourceErrorKind::NotFound, format!("{d}: {what} not found")),
            429 => (
                SourceErrorKind::RateLimited,
                format!("{d}: the registry is rate limiting requests for {what} (HTTP 429)"),
            ),
            408 | 500..=599 => (
                SourceErrorKind::Transient,
                format!("{d}: HTTP {status} for {what}"),
            ),
            _ => (
                SourceErrorKind::Other,
                format!("{d}: HTTP {status} for {what}"),
            ),
        };
        Err(err(kind, text))
    }

    /// Every tag of the repository: a list another discovery read during this pass (see
    /// [`super::shared_views`]), else [`Self::list_tags`].
    pub(crate) async fn tags(&self) -> Result<Arc<[String]>, SourceError> {
        let key = self.view_key("tags", "");
        let (tags, origin) = self
            .inner
            .tag_lists
            .get_or_read(key, self.fresh_after, || async {
                Ok(Arc::from(self.list_tags().await?))
            })
            .await?;
        if origin == Origin::Shared {
            self.inner
                .stats
                .shared_tag_lists
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(tags)
    }

    /// Every tag of the repository, following `Link: <…>; rel="next"` (and, for registries
    /// that page by `n` without a `Link`, `last`).
    async fn list_tags(&self) -> Result<Vec<String>, SourceError> {
        let page_size = self.inner.options.tag_page_size;
        let mut next = match page_size {
            Some(n) => format!("{}?n={n}", self.url("tags/list")),
            None => self.url("tags/list"),
        };
        let mut all = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut visited: HashSet<String> = HashSet::new();
        let mut saw_link = false;
        for _ in 0..MAX_TAG_PAGES {
            if !visited.insert(next.clone()) {
                break;
            }
            self.inner.stats.tag_lists.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .send(Method::GET, &next, Some("application/json"))
                .await?;
            let resp = self.check(resp, "the repository")?;
            let link = next_link(resp.headers(), &next);
            let bytes = read_limited(resp, MAX_PAGE_BYTES, &self.repo.display).await?;
            let page: TagPage = serde_json::from_slice(&bytes).map_err(|e| {
                err(
                    SourceErrorKind::Other,
                    format!("{}: bad tag list: {e}", self.repo.display),
                )
            })?;
            let tags = page.tags.unwrap_or_default();
            let count = tags.len();
            let mut new = 0;
            for t in tags {
                if seen.insert(t.clone()) {
                    all.push(t);
                    new += 1;
                }
            }
            // A registry that sent a `Link` once is trusted to send it on every page but
            // the last; `last` is only for registries that never send one.
            match (link, page_size) {
                (Some(l), _) => {
                    saw_link = true;
                    next = l;
                }
                (None, Some(n)) if !saw_link && count >= n && new > 0 => {
                    let mut u = Url::parse(&self.url("tags/list")).map_err(|e| {
                        err(
                            SourceErrorKind::Other,
                            format!("{}: {e}", self.repo.display),
                        )
                    })?;
                    u.query_pairs_mut()
                        .append_pair("n", &n.to_string())
                        .append_pair("last", all.last().map_or("", String::as_str));
                    next = u.to_string();
                }
                _ => break,
            }
        }
        Ok(all)
    }

    /// The digest `tag` points at now (HEAD); `None` when the registry sent no digest.
    async fn head_digest(&self, tag: &str) -> Result<Option<String>, SourceError> {
        self.inner
            .stats
            .manifest_heads
            .fetch_add(1, Ordering::Relaxed);
        let resp = self
            .send(
                Method::HEAD,
                &self.url(&format!("manifests/{tag}")),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        let resp = self.check(resp, &format!("tag {tag:?}"))?;
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:") || d.starts_with("sha512:"))
            .map(str::to_owned))
    }

    /// GET of a manifest by tag or digest: its digest and parsed body.
    async fn get_manifest(
        &self,
        reference: &str,
        what: &str,
    ) -> Result<(String, RawManifest), SourceError> {
        self.inner
            .stats
            .manifest_gets
            .fetch_add(1, Ordering::Relaxed);
        let resp = self
            .send(
                Method::GET,
                &self.url(&format!("manifests/{reference}")),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        let resp = self.check(resp, what)?;
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &self.repo.display).await?;
        let computed = sha256_digest(&bytes);
        let digest = if reference.starts_with("sha256:") {
            if computed != reference {
                return Err(err(
                    SourceErrorKind::Other,
                    format!(
                        "{}: {what}: the manifest does not match its digest",
                        self.repo.display
                    ),
                ));
            }
            computed
        } else {
            header.filter(|h| !h.is_empty()).unwrap_or(computed)
        };
        let raw: RawManifest = serde_json::from_slice(&bytes).map_err(|e| {
            err(
                SourceErrorKind::Other,
                format!("{}: {what}: bad manifest: {e}", self.repo.display),
            )
        })?;
        Ok((digest, raw))
    }

    async fn config_created(
        &self,
        digest: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, SourceError> {
        if let Some(c) = self.inner.cache().config(digest) {
            return Ok(c);
        }
        self.inner.stats.blob_gets.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .send(Method::GET, &self.url(&format!("blobs/{digest}")), None)
            .await?;
        let resp = self.check(resp, &format!("config blob {digest}"))?;
        let bytes = read_limited(resp, MAX_CONFIG_BYTES, &self.repo.display).await?;
        let created = config_time(&bytes);
        self.inner.cache().put_config(digest, created);
        Ok(created)
    }

    /// Metadata of the manifest with `digest`, whose body is `raw` when already fetched.
    async fn meta_for(
        &self,
        digest: &str,
        raw: Option<RawManifest>,
        what: &str,
        depth: u8,
    ) -> Result<Arc<ManifestMeta>, SourceError> {
        if let Some(m) = self.inner.cache().manifest(digest) {
            return Ok(m);
        }
        let raw = match raw {
            Some(r) => r,
            None => self.get_manifest(digest, what).await?.1,
        };
        let annotations = raw.annotations.clone().unwrap_or_default();
        let meta = if raw.is_index() {
            let mut entries = Vec::new();
            let mut newest = None;
            let own = annotation_time(&annotations);
            for d in raw.manifests.unwrap_or_default() {
                let Some(platform) = is_real_platform(d.platform.as_ref()) else {
                    continue;
                };
                let ann = d.annotations.unwrap_or_default();
                if own.is_none() {
                    let t = match annotation_time(&ann) {
                        Some(t) => Some(t),
                        None if depth == 0 && !d.digest.is_empty() => {
                            let child = Box::pin(self.meta_for(
                                &d.digest,
                                None,
                                &format!("{what} ({platform})"),
                                depth + 1,
                            ))
                            .await?;
                            child.created
                        }
                        None => None,
                    };
                    newest = newest.max(t);
                }
                entries.push(IndexEntry {
                    platform,
                    annotations: ann,
                });
            }
            if entries.is_empty() {
                return Err(err(
                    SourceErrorKind::Other,
                    format!(
                        "{}: {what} is an image index without platform entries",
                        self.repo.display
                    ),
                ));
            }
            ManifestMeta {
                created: own.or(newest),
                annotations,
                entries: Some(entries),
            }
        } else {
            let created = match annotation_time(&annotations) {
                Some(t) => Some(t),
                None => match raw.config.as_ref().map(|c| c.digest.as_str()) {
                    Some(c) if !c.is_empty() => self.config_created(c).await?,
                    _ => None,
                },
            };
            ManifestMeta {
                annotations,
                created,
                entries: None,
            }
        };
        let meta = Arc::new(meta);
        self.inner.cache().put_manifest(digest, meta.clone());
        Ok(meta)
    }

    /// Resolves `tag` to its digest and metadata, from the cache as far as allowed.
    ///
    /// - `trust_tag` (`cacheByTag`): a tag resolved before is not asked about again.
    /// - A resolution of the same tag another discovery made during this pass (and
    ///   credentials) is reused; concurrent resolutions of one tag make one request.
    /// - Otherwise a tag seen before costs one HEAD (its digest may have moved); its
    ///   metadata comes from the digest cache when the digest is known. A tag never seen
    ///   costs one GET by tag (digest and body in one request).
    ///
    /// `Ok(None)`: the tag does not exist (any more).
    pub(crate) async fn resolve(
        &self,
        tag: &str,
        trust_tag: bool,
    ) -> Result<Option<Resolved>, SourceError> {
        let key = format!("{}:{tag}", self.repo.cache_name);
        let hint = self.inner.cache().tag_digest(&key);
        if trust_tag
            && let Some(d) = &hint
            && let Some(meta) = self.inner.cache().manifest(d)
        {
            return Ok(Some(Resolved {
                tag: tag.to_owned(),
                digest: d.clone(),
                meta,
            }));
        }
        // What follows asks the registry: an observation of the tag now, shareable.
        let head_first = hint.is_some() && !trust_tag;
        let (resolved, origin) = self
            .inner
            .tag_views
            .get_or_read(self.view_key("tag", tag), self.fresh_after, || {
                self.resolve_now(tag, head_first)
            })
            .await?;
        if origin == Origin::Shared {
            self.inner.stats.shared_tags.fetch_add(1, Ordering::Relaxed);
        }
        Ok(resolved)
    }

    /// Asks the registry where `tag` points: a HEAD first when `head_first` (metadata then
    /// from the digest cache), else (or when the HEAD gave no digest) a GET by tag.
    async fn resolve_now(
        &self,
        tag: &str,
        head_first: bool,
    ) -> Result<Option<Resolved>, SourceError> {
        let key = format!("{}:{tag}", self.repo.cache_name);
        let what = format!("tag {tag:?}");
        let found = |digest: String, meta: Arc<ManifestMeta>| {
            Ok(Some(Resolved {
                tag: tag.to_owned(),
                digest,
                meta,
            }))
        };
        if head_first {
            match self.head_digest(tag).await {
                Ok(Some(now)) => {
                    self.inner.cache().put_tag_digest(&key, &now);
                    let meta = self.meta_for(&now, None, &what, 0).await?;
                    return found(now, meta);
                }
                Ok(None) => {}
                Err(e) if e.kind == SourceErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let (digest, raw) = match self.get_manifest(tag, &what).await {
            Ok(x) => x,
            Err(e) if e.kind == SourceErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = self.meta_for(&digest, Some(raw), &what, 0).await?;
        self.inner.cache().put_tag_digest(&key, &digest);
        found(digest, meta)
    }
}

/// Reads a body of at most `limit` bytes.
pub(super) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    display: &str,
) -> Result<Vec<u8>, SourceError> {
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            err(
                SourceErrorKind::Transient,
                format!("{display}: reading a response failed: {}", e.without_url()),
            )
        })?;
        let Some(chunk) = chunk else {
            return Ok(out);
        };
        if out.len() + chunk.len() > limit {
            return Err(err(
                SourceErrorKind::Other,
                format!("{display}: a response is larger than {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
}

/// The `rel="next"` target of a `Link` header, resolved against `current`.
pub(crate) fn next_link(headers: &HeaderMap, current: &str) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|p| {
                let p = p.trim().to_ascii_lowercase().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            let base = Url::parse(current).ok()?;
            return base.join(target).ok().map(|u| u.to_string());
        }
    }
    None
}

/// The parameters of a `WWW-Authenticate: Bearer …` challenge.
pub(crate) fn bearer_challenge(headers: &HeaderMap) -> Option<BTreeMap<String, String>> {
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        let v = value.trim();
        if v.len() < 7 || !v[..7].eq_ignore_ascii_case("bearer ") {
            continue;
        }
        let mut params = BTreeMap::new();
        let mut rest = v[7..].trim();
        while !rest.is_empty() {
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let key = key
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (val, tail) = if let Some(q) = after.strip_prefix('"') {
                match q.find('"') {
                    Some(end) => (&q[..end], &q[end + 1..]),
                    None => (q, ""),
                }
            } else {
                match after.find(',') {
                    Some(end) => (&after[..end], &after[end..]),
                    None => (after, ""),
                }
            };
            params.insert(key, val.to_owned());
            rest = tail.trim_start().trim_start_matches(',').trim_start();
        }
        return Some(params);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("</v2/a/tags/list?n=2&last=b>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&h, "http://127.0.0.1:5000/v2/a/tags/list?n=2").as_deref(),
            Some("http://127.0.0.1:5000/v2/a/tags/list?n=2&last=b")
        );
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("<https://x.example/p>; rel=prev, <https://y.example/v2/a/tags/list?last=z>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&h, "https://x.example/v2/a/tags/list").as_deref(),
            Some("https://y.example/v2/a/tags/list?last=z")
        );
        assert!(next_link(&HeaderMap::new(), "https://x.example/").is_none());
    }

    #[test]
    fn bearer_challenges() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull\"",
            ),
        );
        let c = bearer_challenge(&h).unwrap();
        assert_eq!(c["realm"], "https://auth.example/token");
        assert_eq!(c["service"], "registry.example");
        assert_eq!(c["scope"], "repository:a/b:pull");
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        assert!(bearer_challenge(&h).is_none());
    }
}
