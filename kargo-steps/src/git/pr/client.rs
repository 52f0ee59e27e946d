//! Pull-request clients for GitHub, GitLab, Gitea/Forgejo, Bitbucket Cloud and Azure
//! DevOps, over their documented REST APIs (create, get, list by head/base, merge).

use std::time::Duration;

use kargo_core::secret::Redacted;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value as Json, json};

use super::pages;
use crate::git::GitProvider;
use crate::net;

/// A pull request as the steps need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The number (GitHub, Gitea), IID (GitLab) or ID (Bitbucket, Azure).
    pub number: i64,
    /// The web URL.
    pub url: String,
    /// Whether it is open.
    pub open: bool,
    /// Whether it was merged.
    pub merged: bool,
    /// The merge commit, once merged.
    pub merge_commit: Option<String>,
    /// The head commit.
    pub head_sha: Option<String>,
    /// What the provider says about mergeability (`None`: unknown / not computed yet).
    pub mergeable: Option<bool>,
}

/// A pull-request API error, without credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PrError {
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
}

/// How a merge attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeResult {
    /// Merged; the merge commit when the provider said.
    Merged(Option<String>),
    /// Not mergeable (yet): conflicts, checks, approvals, or still being computed.
    NotMergeable(String),
}

/// Where a repository lives on its provider.
#[derive(Debug, Clone)]
pub struct RepoRef {
    /// GitHub/Gitea owner, GitLab namespace path, Bitbucket workspace, Azure organization.
    pub owner: String,
    /// The repository name (GitLab: the last path segment).
    pub name: String,
    /// Azure DevOps: the project.
    pub project: Option<String>,
    /// The repository's web URL.
    pub web_url: String,
}

/// Parses an http(s) repository URL into its parts for `provider`.
pub fn repo_ref(provider: GitProvider, repo_url: &str) -> Result<RepoRef, String> {
    let url = Url::parse(repo_url)
        .map_err(|_| "the pull-request steps need an http(s) repository URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the pull-request steps need an http(s) repository URL, not {}",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let base = format!("{}://{host}{port}", url.scheme());
    let path = url.path().trim_matches('/').trim_end_matches(".git");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let bad = || {
        format!(
            "cannot find the owner and name of the repository in {}",
            net::shown_url(&url)
        )
    };
    match provider {
        GitProvider::Azure => {
            // <org>/<project>/_git/<repo>
            let i = segs.iter().position(|s| *s == "_git").ok_or_else(bad)?;
            let (org, project, name) = match (i, segs.get(i + 1)) {
                (2, Some(name)) => (segs[0], segs[1], *name),
                _ => return Err(bad()),
            };
            Ok(RepoRef {
                owner: org.to_owned(),
                name: name.to_owned(),
                project: Some(project.to_owned()),
                web_url: format!("{base}/{org}/{project}/_git/{name}"),
            })
        }
        GitProvider::GitLab => {
            let (name, ns) = segs.split_last().ok_or_else(bad)?;
            if ns.is_empty() {
                return Err(bad());
            }
            Ok(RepoRef {
                owner: ns.join("/"),
                name: (*name).to_owned(),
                project: None,
                web_url: format!("{base}/{path}"),
            })
        }
        _ => match segs.as_slice() {
            [.., owner, name] => Ok(RepoRef {
                owner: (*owner).to_owned(),
                name: (*name).to_owned(),
                project: None,
                web_url: format!("{base}/{owner}/{name}"),
            }),
            _ => Err(bad()),
        },
    }
}

/// The default API base URL of a repository's provider.
pub fn default_api_url(provider: GitProvider, repo_url: &str) -> Option<String> {
    let url = Url::parse(repo_url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let base = format!("{}://{host}{port}", url.scheme());
    Some(match provider {
        GitProvider::GitHub if host == "github.com" => "https://api.github.com".to_owned(),
        GitProvider::GitHub => format!("{base}/api/v3"),
        GitProvider::GitLab => format!("{base}/api/v4"),
        GitProvider::Gitea => format!("{base}/api/v1"),
        GitProvider::Bitbucket => "https://api.bitbucket.org/2.0".to_owned(),
        GitProvider::Azure => {
            let org = url.path_segments()?.find(|s| !s.is_empty())?.to_owned();
            format!("{base}/{org}")
        }
    })
}

/// A client for one repository on one provider.
pub struct PrClient {
    provider: GitProvider,
    api: String,
    repo: RepoRef,
    http: reqwest::Client,
    token: Redacted<String>,
}

impl std::fmt::Debug for PrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrClient")
            .field("provider", &self.provider)
            .field("api", &self.api)
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl PrClient {
    /// A client; `username`/`token` are the repository's git credentials (the token is the
    /// password).
    pub fn new(
        provider: GitProvider,
        api: &str,
        repo: RepoRef,
        username: &str,
        token: Redacted<String>,
        insecure_skip_tls_verify: bool,
    ) -> Result<Self, PrError> {
        let mut headers = HeaderMap::new();
        let secret = token.expose();
        let auth = match provider {
            GitProvider::GitHub => Some(("authorization", format!("Bearer {secret}"))),
            GitProvider::GitLab => Some(("private-token", secret.clone())),
            GitProvider::Gitea => Some(("authorization", format!("token {secret}"))),
            GitProvider::Bitbucket if !username.is_empty() && username != "x-token-auth" => {
                Some(("authorization", basic(username, secret)))
            }
            GitProvider::Bitbucket => Some(("authorization", format!("Bearer {secret}"))),
            GitProvider::Azure => Some(("authorization", basic("", secret))),
        };
        if let Some((k, v)) = auth.filter(|_| !secret.is_empty()) {
            let mut v = HeaderValue::from_str(&v).map_err(|_| PrError {
                status: None,
                message: "the repository credential cannot be sent in an HTTP header".into(),
            })?;
            v.set_sensitive(true);
            headers.insert(k, v);
        }
        headers.insert("accept", HeaderValue::from_static("application/json"));
        let http = net::guarded_client_builder()
            .default_headers(headers)
            .user_agent("kargo-rs")
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(insecure_skip_tls_verify)
            .build()
            .map_err(|e| PrError {
                status: None,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            provider,
            api: api.trim_end_matches('/').to_owned(),
            repo,
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

    /// The repository's API path prefix.
    fn repo_path(&self) -> String {
        let r = &self.repo;
        match self.provider {
            GitProvider::GitHub | GitProvider::Gitea => {
                format!("{}/repos/{}/{}", self.api, enc(&r.owner), enc(&r.name))
            }
            GitProvider::GitLab => format!(
                "{}/projects/{}",
                self.api,
                enc(&format!("{}/{}", r.owner, r.name))
            ),
            GitProvider::Bitbucket => format!(
                "{}/repositories/{}/{}",
                self.api,
                enc(&r.owner),
                enc(&r.name)
            ),
            GitProvider::Azure => format!(
                "{}/{}/_apis/git/repositories/{}",
                self.api,
                enc(r.project.as_deref().unwrap_or_default()),
                enc(&r.name)
            ),
        }
    }

    fn pulls_path(&self) -> String {
        let p = self.repo_path();
        match self.provider {
            GitProvider::GitHub | GitProvider::Gitea => format!("{p}/pulls"),
            GitProvider::GitLab => format!("{p}/merge_requests"),
            GitProvider::Bitbucket => format!("{p}/pullrequests"),
            GitProvider::Azure => format!("{p}/pullrequests"),
        }
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<Json>,
    ) -> Result<(StatusCode, Json), PrError> {
        let (status, _, _, json) = self.call_with_headers(method, url, body).await?;
        Ok((status, json))
    }

    /// [`call`](Self::call), also returning the URL called (with the parameters added
    /// here) and the response headers (for pagination).
    async fn call_with_headers(
        &self,
        method: Method,
        url: String,
        body: Option<Json>,
    ) -> Result<(StatusCode, Url, HeaderMap, Json), PrError> {
        let mut url = Url::parse(&url).map_err(|_| PrError {
            status: None,
            message: "invalid API URL".into(),
        })?;
        if self.provider == GitProvider::Azure
            && !url.query().is_some_and(|q| q.contains("api-version"))
        {
            url.query_pairs_mut().append_pair("api-version", "7.1");
        }
        net::check_url(&url).map_err(|e| PrError {
            status: None,
            message: e.to_string(),
        })?;
        let shown = net::shown_url(&url);
        let called = url.clone();
        let mut req = self.http.request(method.clone(), url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        tracing::debug!(provider = %self.provider, %method, url = %shown, "pull-request API call");
        let resp = req.send().await.map_err(|e| {
            let (m, _) = net::describe_reqwest_error(e);
            PrError {
                status: None,
                message: self.scrub(&format!("{method} {shown}: {m}")),
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status.is_success() {
            return Ok((status, called, headers, json));
        }
        let detail = json
            .get("message")
            .or_else(|| json.get("error"))
            .map(|m| match m {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(PrError {
            status: Some(status.as_u16()),
            message: self.scrub(&format!(
                "{method} {shown}: {} {}",
                status.as_u16(),
                detail.trim()
            )),
        })
    }

    /// Parses a provider's pull-request object.
    fn parse(&self, v: &Json) -> Result<PullRequest, PrError> {
        let s = |p: &str| v.pointer(p).and_then(Json::as_str).map(str::to_owned);
        let missing = || PrError {
            status: None,
            message: format!(
                "the {} API returned an unexpected pull request",
                self.provider
            ),
        };
        Ok(match self.provider {
            GitProvider::GitHub | GitProvider::Gitea => {
                // Single pull requests say `merged`; list items only `merged_at`.
                let merged = v.get("merged").and_then(Json::as_bool).unwrap_or(false)
                    || v.get("merged_at").is_some_and(|m| !m.is_null());
                PullRequest {
                    number: v.get("number").and_then(Json::as_i64).ok_or_else(missing)?,
                    url: s("/html_url").unwrap_or_default(),
                    open: s("/state").as_deref() == Some("open"),
                    merged,
                    merge_commit: s("/merge_commit_sha").filter(|_| merged),
                    head_sha: s("/head/sha"),
                    mergeable: v.get("mergeable").and_then(Json::as_bool),
                }
            }
            GitProvider::GitLab => {
                let state = s("/state").unwrap_or_default();
                let merged = state == "merged";
                PullRequest {
                    number: v.get("iid").and_then(Json::as_i64).ok_or_else(missing)?,
                    url: s("/web_url").unwrap_or_default(),
                    open: state == "opened",
                    merged,
                    merge_commit: s("/merge_commit_sha")
                        .or_else(|| s("/squash_commit_sha"))
                        .filter(|_| merged),
                    head_sha: s("/sha"),
                    mergeable: s("/detailed_merge_status")
                        .or_else(|| s("/merge_status"))
                        .and_then(|m| match m.as_str() {
                            "mergeable" | "can_be_merged" => Some(true),
                            "checking" | "unchecked" | "preparing" | "approvals_syncing" => None,
                            _ => Some(false),
                        }),
                }
            }
            GitProvider::Bitbucket => {
                let state = s("/state").unwrap_or_default();
                let merged = state == "MERGED";
                PullRequest {
                    number: v.get("id").and_then(Json::as_i64).ok_or_else(missing)?,
                    url: s("/links/html/href").unwrap_or_default(),
                    open: state == "OPEN",
                    merged,
                    merge_commit: s("/merge_commit/hash").filter(|_| merged),
                    head_sha: s("/source/commit/hash"),
                    mergeable: None,
                }
            }
            GitProvider::Azure => {
                let status = s("/status").unwrap_or_default();
                let merged = status == "completed";
                let id = v
                    .get("pullRequestId")
                    .and_then(Json::as_i64)
                    .ok_or_else(missing)?;
                let web = s("/repository/webUrl").unwrap_or_else(|| self.repo.web_url.clone());
                PullRequest {
                    number: id,
                    url: format!("{web}/pullrequest/{id}"),
                    open: status == "active",
                    merged,
                    merge_commit: s("/lastMergeCommit/commitId").filter(|_| merged),
                    head_sha: s("/lastMergeSourceCommit/commitId"),
                    mergeable: s("/mergeStatus").and_then(|m| match m.as_str() {
                        "succeeded" => Some(true),
                        "queued" | "notSet" => None,
                        _ => Some(false),
                    }),
                }
            }
        })
    }

    /// Opens a pull request from `head` into `base`.
    pub async fn create(
        &self,
        head: &str,
        base: &str,
        title: &str,
        description: &str,
        labels: &[String],
    ) -> Result<PullRequest, PrError> {
        let body = match self.provider {
            GitProvider::GitHub => {
                json!({"head": head, "base": base, "title": title, "body": description})
            }
            GitProvider::Gitea => {
                let mut b =
                    json!({"head": head, "base": base, "title": title, "body": description});
                if !labels.is_empty() {
                    b["labels"] = json!(self.gitea_label_ids(labels).await?);
                }
                b
            }
            GitProvider::GitLab => {
                let mut b = json!({"source_branch": head, "target_branch": base, "title": title, "description": description});
                if !labels.is_empty() {
                    b["labels"] = json!(labels.join(","));
                }
                b
            }
            GitProvider::Bitbucket => json!({
                "title": title, "description": description,
                "source": {"branch": {"name": head}},
                "destination": {"branch": {"name": base}},
            }),
            GitProvider::Azure => json!({
                "sourceRefName": format!("refs/heads/{head}"),
                "targetRefName": format!("refs/heads/{base}"),
                "title": title, "description": description,
                "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            }),
        };
        let (_, v) = self
            .call(Method::POST, self.pulls_path(), Some(body))
            .await?;
        let pr = self.parse(&v)?;
        if self.provider == GitProvider::GitHub && !labels.is_empty() {
            let url = format!("{}/issues/{}/labels", self.repo_path(), pr.number);
            self.call(Method::POST, url, Some(json!({"labels": labels})))
                .await?;
        }
        Ok(pr)
    }

    async fn gitea_label_ids(&self, labels: &[String]) -> Result<Vec<i64>, PrError> {
        let (_, v) = self
            .call(
                Method::GET,
                format!("{}/labels?limit=50", self.repo_path()),
                None,
            )
            .await?;
        let known = v.as_array().cloned().unwrap_or_default();
        labels
            .iter()
            .map(|l| {
                known
                    .iter()
                    .find(|k| k.get("name").and_then(Json::as_str) == Some(l.as_str()))
                    .and_then(|k| k.get("id").and_then(Json::as_i64))
                    .ok_or_else(|| PrError {
                        status: None,
                        message: format!("the repository has no label {l:?}"),
                    })
            })
            .collect()
    }

    /// The pull request `number`.
    pub async fn get(&self, number: i64) -> Result<PullRequest, PrError> {
        let (_, v) = self
            .call(Method::GET, format!("{}/{number}", self.pulls_path()), None)
            .await?;
        self.parse(&v)
    }

    /// The open pull request from `head` into `base`, if there is one.
    pub async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullRequest>, PrError> {
        self.find(head, base, false).await
    }

    /// A merged pull request from `head` into `base` (the most recent the provider lists
    /// first), if there is one.
    pub async fn find_merged(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, PrError> {
        self.find(head, base, true).await
    }

    async fn find(
        &self,
        head: &str,
        base: &str,
        merged: bool,
    ) -> Result<Option<PullRequest>, PrError> {
        let p = self.pulls_path();
        let (url, list_key) = match self.provider {
            GitProvider::GitHub => (
                format!(
                    "{p}?state={}&head={}&base={}",
                    if merged { "closed" } else { "open" },
                    enc(&format!("{}:{head}", self.repo.owner)),
                    enc(base)
                ),
                None,
            ),
            GitProvider::GitLab => (
                format!(
                    "{p}?state={}&source_branch={}&target_branch={}",
                    if merged { "merged" } else { "opened" },
                    enc(head),
                    enc(base)
                ),
                None,
            ),
            GitProvider::Gitea => (
                format!("{p}?state={}", if merged { "closed" } else { "open" }),
                None,
            ),
            GitProvider::Bitbucket => (
                format!(
                    "{p}?state={}&q={}",
                    if merged { "MERGED" } else { "OPEN" },
                    enc(&format!(
                        "source.branch.name=\"{head}\" AND destination.branch.name=\"{base}\""
                    ))
                ),
                Some("values"),
            ),
            GitProvider::Azure => (
                format!(
                    "{p}?searchCriteria.status={}&searchCriteria.sourceRefName={}&searchCriteria.targetRefName={}",
                    if merged { "completed" } else { "active" },
                    enc(&format!("refs/heads/{head}")),
                    enc(&format!("refs/heads/{base}"))
                ),
                Some("value"),
            ),
        };
        let size = pages::page_size(self.provider).to_string();
        let mut url = format!("{url}&{}={size}", pages::page_size_param(self.provider));
        for _ in 0..pages::MAX_PAGES {
            let (_, called, headers, v) = self.call_with_headers(Method::GET, url, None).await?;
            let items = match list_key {
                Some(k) => v.get(k),
                None => Some(&v),
            }
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
            if let Some(pr) = self.first_match(items, head, base, merged)? {
                return Ok(Some(pr));
            }
            match pages::next_page(self.provider, &called, &headers, &v, items.len()) {
                Some(next) => url = self.checked_next(&next)?,
                None => return Ok(None),
            }
        }
        tracing::warn!(provider = %self.provider, pages = pages::MAX_PAGES, "pull-request lookup stopped after the page limit");
        Ok(None)
    }

    /// `next` (a next-page URL a server sent) when it is on the API's origin.
    fn checked_next(&self, next: &str) -> Result<String, PrError> {
        let refused = |why: &str| PrError {
            status: None,
            message: format!(
                "the {} API's next page {}: {why}; not followed",
                self.provider,
                Url::parse(next)
                    .map_or_else(|_| "(invalid URL)".to_owned(), |u| net::shown_url(&u))
            ),
        };
        let api = Url::parse(&self.api).map_err(|_| refused("invalid API URL"))?;
        let url = Url::parse(next).map_err(|_| refused("not a URL"))?;
        if !pages::same_origin(&api, &url) {
            return Err(refused("it is on another origin than the API"));
        }
        Ok(url.to_string())
    }

    /// The first list item from `head` into `base` that is open (or merged, with `merged`).
    fn first_match(
        &self,
        items: &[Json],
        head: &str,
        base: &str,
        merged: bool,
    ) -> Result<Option<PullRequest>, PrError> {
        for item in items {
            // Gitea's list cannot filter by branch: filter here (GitHub's and GitLab's
            // filters are re-checked too, harmlessly).
            let (h, b) = match self.provider {
                GitProvider::GitHub | GitProvider::Gitea => (
                    item.pointer("/head/ref").and_then(Json::as_str),
                    item.pointer("/base/ref").and_then(Json::as_str),
                ),
                GitProvider::GitLab => (
                    item.get("source_branch").and_then(Json::as_str),
                    item.get("target_branch").and_then(Json::as_str),
                ),
                _ => (Some(head), Some(base)),
            };
            if h == Some(head) && b == Some(base) {
                let pr = self.parse(item)?;
                if (merged && pr.merged) || (!merged && pr.open) {
                    return Ok(Some(pr));
                }
            }
        }
        Ok(None)
    }

    /// Merges the pull request `number` with a provider-specific `method` (default: a
    /// merge commit).
    pub async fn merge(
        &self,
        pr: &PullRequest,
        method: Option<&str>,
    ) -> Result<MergeResult, PrError> {
        let p = format!("{}/{}", self.pulls_path(), pr.number);
        let (verb, url, body) = match self.provider {
            GitProvider::GitHub => (
                Method::PUT,
                format!("{p}/merge"),
                json!({"merge_method": method.unwrap_or("merge")}),
            ),
            GitProvider::Gitea => (
                Method::POST,
                format!("{p}/merge"),
                json!({"Do": method.unwrap_or("merge")}),
            ),
            GitProvider::GitLab => (
                Method::PUT,
                format!("{p}/merge"),
                json!({"squash": method == Some("squash")}),
            ),
            GitProvider::Bitbucket => (
                Method::POST,
                format!("{p}/merge"),
                json!({"merge_strategy": method.unwrap_or("merge_commit")}),
            ),
            GitProvider::Azure => (
                Method::PATCH,
                p,
                json!({
                    "status": "completed",
                    "lastMergeSourceCommit": {"commitId": pr.head_sha},
                    "completionOptions": {"mergeStrategy": method.unwrap_or("noFastForward")},
                }),
            ),
        };
        match self.call(verb, url, Some(body)).await {
            Ok((_, v)) => {
                let commit = match self.provider {
                    GitProvider::GitHub => v.get("sha").and_then(Json::as_str).map(str::to_owned),
                    GitProvider::Gitea => None,
                    _ => self.parse(&v).ok().and_then(|p| p.merge_commit),
                };
                let commit = match commit {
                    Some(c) => Some(c),
                    None => self.get(pr.number).await.ok().and_then(|p| p.merge_commit),
                };
                Ok(MergeResult::Merged(commit))
            }
            Err(e) if matches!(e.status, Some(405 | 406 | 409 | 422)) => {
                Ok(MergeResult::NotMergeable(e.message))
            }
            Err(e) => Err(e),
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_refs() {
        let r = repo_ref(GitProvider::GitHub, "https://github.com/acme/gitops.git").unwrap();
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("acme", "gitops"));
        let r = repo_ref(GitProvider::GitLab, "https://gitlab.com/a/b/c.git").unwrap();
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("a/b", "c"));
        let r = repo_ref(
            GitProvider::Azure,
            "https://dev.azure.com/org/proj/_git/repo",
        )
        .unwrap();
        assert_eq!(r.project.as_deref(), Some("proj"));
        assert_eq!(r.web_url, "https://dev.azure.com/org/proj/_git/repo");
        assert!(repo_ref(GitProvider::GitHub, "git@github.com:a/b.git").is_err());
    }

    #[test]
    fn default_api_urls() {
        let d = |p, u| default_api_url(p, u).unwrap();
        assert_eq!(
            d(GitProvider::GitHub, "https://github.com/a/b"),
            "https://api.github.com"
        );
        assert_eq!(
            d(GitProvider::GitHub, "https://ghe.corp/a/b"),
            "https://ghe.corp/api/v3"
        );
        assert_eq!(
            d(GitProvider::GitLab, "https://gitlab.com/a/b"),
            "https://gitlab.com/api/v4"
        );
        assert_eq!(
            d(GitProvider::Gitea, "http://gitea.local:3000/a/b"),
            "http://gitea.local:3000/api/v1"
        );
        assert_eq!(
            d(GitProvider::Bitbucket, "https://bitbucket.org/w/r"),
            "https://api.bitbucket.org/2.0"
        );
        assert_eq!(
            d(GitProvider::Azure, "https://dev.azure.com/org/p/_git/r"),
            "https://dev.azure.com/org"
        );
    }
}
