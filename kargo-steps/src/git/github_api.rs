//! The GitHub REST requests `github-push` makes (Git database and compare APIs): read a
//! reference, compare two commits, create a commit, create / update / delete a
//! reference. The token is sent as `Authorization: Bearer` and never appears in errors.

use std::time::Duration;

use kargo_core::secret::Redacted;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value as Json, json};

use crate::net;

/// A GitHub API error, without credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct GitHubError {
    /// The HTTP status, when the server answered.
    pub(crate) status: Option<u16>,
    /// What went wrong.
    pub(crate) message: String,
}

/// A commit as the compare API lists it.
#[derive(Debug, Clone)]
pub(crate) struct ComparedCommit {
    pub(crate) sha: String,
    pub(crate) tree: String,
    pub(crate) message: String,
    /// `{name, email, date}` as GitHub returned them.
    pub(crate) author: Json,
    pub(crate) committer: Json,
    pub(crate) parents: Vec<String>,
}

/// The compare API's answer.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    /// `identical`, `ahead`, `behind` or `diverged`.
    pub(crate) status: String,
    pub(crate) merge_base: String,
    /// Oldest first.
    pub(crate) commits: Vec<ComparedCommit>,
}

/// A client for one repository's Git database API.
pub(crate) struct GitHubClient {
    repo_api: String,
    http: reqwest::Client,
    token: Redacted<String>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A ref name for a URL path: each segment encoded, `/` kept.
fn ref_path(r: &str) -> String {
    r.split('/').map(enc).collect::<Vec<_>>().join("/")
}

impl GitHubClient {
    /// A client for `owner/name` under the API base `api` (`https://api.github.com`, or
    /// `https://host/api/v3` for GitHub Enterprise).
    pub(crate) fn new(
        api: &str,
        owner: &str,
        name: &str,
        token: Redacted<String>,
        insecure_skip_tls_verify: bool,
    ) -> Result<Self, GitHubError> {
        let mut headers = HeaderMap::new();
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                GitHubError {
                    status: None,
                    message: "the repository credential cannot be sent in an HTTP header".into(),
                }
            })?;
        auth.set_sensitive(true);
        headers.insert("authorization", auth);
        headers.insert(
            "accept",
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        let http = net::guarded_client_builder()
            .default_headers(headers)
            .user_agent("kargo-rs")
            .timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(insecure_skip_tls_verify)
            .build()
            .map_err(|e| GitHubError {
                status: None,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            repo_api: format!(
                "{}/repos/{}/{}",
                api.trim_end_matches('/'),
                enc(owner),
                enc(name)
            ),
            http,
            token,
        })
    }

    fn scrub(&self, s: &str) -> String {
        let t = self.token.expose();
        if t.is_empty() {
            s.to_owned()
        } else {
            s.replace(t.as_str(), "***")
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<(StatusCode, Json), GitHubError> {
        let url = Url::parse(&format!("{}{path}", self.repo_api)).map_err(|_| GitHubError {
            status: None,
            message: "invalid API URL".into(),
        })?;
        net::check_url(&url).map_err(|e| GitHubError {
            status: None,
            message: e.to_string(),
        })?;
        let shown = net::shown_url(&url);
        let mut req = self.http.request(method.clone(), url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        tracing::debug!(%method, url = %shown, "GitHub API call");
        let resp = req.send().await.map_err(|e| {
            let (m, _) = net::describe_reqwest_error(e);
            GitHubError {
                status: None,
                message: self.scrub(&format!("{method} {shown}: {m}")),
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status.is_success() {
            return Ok((status, json));
        }
        let detail = json
            .get("message")
            .and_then(Json::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(GitHubError {
            status: Some(status.as_u16()),
            message: self.scrub(&format!(
                "{method} {shown}: {} {}",
                status.as_u16(),
                detail.trim()
            )),
        })
    }

    /// The commit `heads/<branch>` points to; `None` when the branch does not exist.
    pub(crate) async fn branch_head(&self, branch: &str) -> Result<Option<String>, GitHubError> {
        match self
            .call(
                Method::GET,
                &format!("/git/ref/heads/{}", ref_path(branch)),
                None,
            )
            .await
        {
            Ok((_, v)) => Ok(v
                .pointer("/object/sha")
                .and_then(Json::as_str)
                .map(str::to_owned)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Compares `base...head` (up to 250 commits).
    pub(crate) async fn compare(&self, base: &str, head: &str) -> Result<Comparison, GitHubError> {
        let (_, v) = self
            .call(
                Method::GET,
                &format!("/compare/{}...{}?per_page=250", enc(base), enc(head)),
                None,
            )
            .await?;
        let bad = || GitHubError {
            status: None,
            message: "the GitHub compare API returned an unexpected answer".into(),
        };
        let s = |v: &Json, p: &str| v.pointer(p).and_then(Json::as_str).map(str::to_owned);
        let mut commits = Vec::new();
        for c in v
            .get("commits")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
        {
            commits.push(ComparedCommit {
                sha: s(&c, "/sha").ok_or_else(bad)?,
                tree: s(&c, "/commit/tree/sha").ok_or_else(|| GitHubError {
                    status: None,
                    message: "a compared commit has no tree information".into(),
                })?,
                message: s(&c, "/commit/message").unwrap_or_default(),
                author: c.pointer("/commit/author").cloned().unwrap_or(Json::Null),
                committer: c
                    .pointer("/commit/committer")
                    .cloned()
                    .unwrap_or(Json::Null),
                parents: c
                    .get("parents")
                    .and_then(Json::as_array)
                    .map(|ps| ps.iter().filter_map(|p| s(p, "/sha")).collect())
                    .unwrap_or_default(),
            });
        }
        Ok(Comparison {
            status: s(&v, "/status").ok_or_else(bad)?,
            merge_base: s(&v, "/merge_base_commit/sha").unwrap_or_default(),
            commits,
        })
    }

    /// Creates a commit; `identity` is `Some((author, committer))` to keep them, `None` to
    /// let GitHub attribute (and sign) the commit. Returns its SHA.
    pub(crate) async fn create_commit(
        &self,
        message: &str,
        tree: &str,
        parents: &[String],
        identity: Option<(&Json, &Json)>,
    ) -> Result<String, GitHubError> {
        let mut body = json!({"message": message, "tree": tree, "parents": parents});
        if let Some((author, committer)) = identity {
            body["author"] = author.clone();
            body["committer"] = committer.clone();
        }
        let (_, v) = self.call(Method::POST, "/git/commits", Some(body)).await?;
        v.get("sha")
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| GitHubError {
                status: None,
                message: "the GitHub API did not return the new commit's SHA".into(),
            })
    }

    /// Creates `refs/heads/<branch>` at `sha`.
    pub(crate) async fn create_branch(&self, branch: &str, sha: &str) -> Result<(), GitHubError> {
        self.call(
            Method::POST,
            "/git/refs",
            Some(json!({"ref": format!("refs/heads/{branch}"), "sha": sha})),
        )
        .await
        .map(drop)
    }

    /// Moves `heads/<branch>` to `sha` (a 422 means it is not a fast forward).
    pub(crate) async fn update_branch(
        &self,
        branch: &str,
        sha: &str,
        force: bool,
    ) -> Result<(), GitHubError> {
        self.call(
            Method::PATCH,
            &format!("/git/refs/heads/{}", ref_path(branch)),
            Some(json!({"sha": sha, "force": force})),
        )
        .await
        .map(drop)
    }

    /// Deletes `ref` (without the `refs/` prefix, e.g. `kargo/staging/<promotion>`).
    pub(crate) async fn delete_ref(&self, r: &str) -> Result<(), GitHubError> {
        self.call(Method::DELETE, &format!("/git/refs/{}", ref_path(r)), None)
            .await
            .map(drop)
    }
}
