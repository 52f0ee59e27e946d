//! A fake git hosting API (GitHub, GitLab or Gitea request shapes) backed by a real bare
//! repository: branches are read with `git`, and merging a pull request writes a real
//! merge commit into the bare repository (`git merge-tree` + `git commit-tree` +
//! `git update-ref`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};

use super::fake_http::{Req, Resp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    GitHub,
    GitLab,
    Gitea,
    Bitbucket,
    Azure,
}

impl Flavor {
    /// The API prefix the fake serves under (Azure: the organization, `acme`).
    pub fn api_prefix(self) -> &'static str {
        match self {
            Self::GitHub => "/api/v3",
            Self::GitLab => "/api/v4",
            Self::Gitea => "/api/v1",
            Self::Bitbucket => "/2.0",
            Self::Azure => "/acme",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
            Self::Azure => "azure",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakePr {
    pub number: i64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    /// open | closed | merged
    pub state: String,
    pub merge_commit: Option<String>,
}

pub struct Forge {
    pub flavor: Flavor,
    pub bare: PathBuf,
    pub owner: String,
    pub name: String,
    pub token: String,
    /// The git user name (Bitbucket basic auth).
    pub user: String,
    pub web: String,
    pub prs: Mutex<Vec<FakePr>>,
    /// The largest page the list endpoint returns (0: the provider's own maximum).
    pub page_size: AtomicUsize,
}

pub fn git_in(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Forge")
        .env("GIT_AUTHOR_EMAIL", "forge@example.com")
        .env("GIT_COMMITTER_NAME", "Forge")
        .env("GIT_COMMITTER_EMAIL", "forge@example.com")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Forge {
    pub fn new(
        flavor: Flavor,
        bare: PathBuf,
        owner: &str,
        name: &str,
        user: &str,
        token: &str,
    ) -> Arc<Self> {
        Arc::new(Self {
            flavor,
            bare,
            owner: owner.into(),
            name: name.into(),
            token: token.into(),
            user: user.into(),
            web: format!("https://forge.example/{owner}/{name}"),
            prs: Mutex::new(Vec::new()),
            page_size: AtomicUsize::new(0),
        })
    }

    /// Makes the list endpoint return at most `n` items a page.
    pub fn set_page_size(&self, n: usize) {
        self.page_size.store(n, Ordering::Relaxed);
    }

    /// Adds a pull request without git (a filler for pagination tests); returns its number.
    pub fn add_pr(&self, head: &str, base: &str, state: &str) -> i64 {
        let mut prs = self.prs.lock().unwrap();
        let number = prs.len() as i64 + 1;
        prs.push(FakePr {
            number,
            head: head.into(),
            base: base.into(),
            title: format!("filler {number}"),
            body: String::new(),
            labels: vec![],
            state: state.into(),
            merge_commit: (state == "merged").then(|| format!("{number:040x}")),
        });
        number
    }

    fn tip(&self, branch: &str) -> Option<String> {
        git_in(
            &self.bare,
            &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
        )
        .ok()
    }

    fn authorized(&self, r: &Req) -> bool {
        match self.flavor {
            Flavor::GitHub => r.header("authorization") == Some(&format!("Bearer {}", self.token)),
            Flavor::GitLab => r.header("private-token") == Some(self.token.as_str()),
            Flavor::Gitea => r.header("authorization") == Some(&format!("token {}", self.token)),
            Flavor::Bitbucket => r.header("authorization") == Some(&basic(&self.user, &self.token)),
            Flavor::Azure => r.header("authorization") == Some(&basic("", &self.token)),
        }
    }

    pub fn pr_json(&self, pr: &FakePr) -> Json {
        let head_sha = self.tip(&pr.head);
        match self.flavor {
            Flavor::GitHub | Flavor::Gitea => json!({
                "number": pr.number,
                "html_url": format!("{}/pull/{}", self.web, pr.number),
                "state": if pr.state == "open" { "open" } else { "closed" },
                "merged": pr.state == "merged",
                "merged_at": if pr.state == "merged" { json!("2026-01-01T00:00:00Z") } else { Json::Null },
                "merge_commit_sha": pr.merge_commit,
                "mergeable": pr.state == "open",
                "title": pr.title, "body": pr.body,
                "head": {"ref": pr.head, "sha": head_sha},
                "base": {"ref": pr.base},
            }),
            Flavor::GitLab => json!({
                "iid": pr.number,
                "web_url": format!("{}/-/merge_requests/{}", self.web, pr.number),
                "state": if pr.state == "open" { "opened" } else { pr.state.as_str() },
                "merge_commit_sha": pr.merge_commit,
                "sha": head_sha,
                "source_branch": pr.head, "target_branch": pr.base,
                "detailed_merge_status": if pr.state == "open" { "mergeable" } else { "not_open" },
                "title": pr.title, "description": pr.body, "labels": pr.labels,
            }),
            Flavor::Bitbucket => json!({
                "id": pr.number,
                "state": match pr.state.as_str() { "open" => "OPEN", "merged" => "MERGED", _ => "DECLINED" },
                "links": {"html": {"href": format!("{}/pull-requests/{}", self.web, pr.number)}},
                "merge_commit": pr.merge_commit.as_ref().map(|h| json!({"hash": h})),
                "source": {"branch": {"name": pr.head}, "commit": {"hash": head_sha}},
                "destination": {"branch": {"name": pr.base}},
                "title": pr.title, "description": pr.body,
            }),
            Flavor::Azure => json!({
                "pullRequestId": pr.number,
                "status": match pr.state.as_str() { "open" => "active", "merged" => "completed", _ => "abandoned" },
                "sourceRefName": format!("refs/heads/{}", pr.head),
                "targetRefName": format!("refs/heads/{}", pr.base),
                "lastMergeSourceCommit": {"commitId": head_sha},
                "lastMergeCommit": pr.merge_commit.as_ref().map(|h| json!({"commitId": h})),
                "mergeStatus": "succeeded",
                "repository": {"webUrl": self.web},
                "title": pr.title, "description": pr.body,
                "labels": pr.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            }),
        }
    }

    /// Merges PR `n` in the bare repository: a real merge commit on the base branch.
    pub fn merge(&self, n: i64) -> Result<String, (u16, String)> {
        let mut prs = self.prs.lock().unwrap();
        let pr = prs
            .iter_mut()
            .find(|p| p.number == n)
            .ok_or((404, "not found".to_owned()))?;
        if pr.state != "open" {
            return Err((405, "pull request is not open".into()));
        }
        let base = self.tip(&pr.base).ok_or((404, "no base".into()))?;
        let head = self.tip(&pr.head).ok_or((404, "no head".into()))?;
        let tree = git_in(&self.bare, &["merge-tree", "--write-tree", &base, &head])
            .map_err(|e| (405, format!("merge conflict: {e}")))?;
        let tree = tree.lines().next().unwrap_or_default().to_owned();
        let msg = format!("Merge pull request #{n} from {}", pr.head);
        let commit = git_in(
            &self.bare,
            &["commit-tree", &tree, "-p", &base, "-p", &head, "-m", &msg],
        )
        .map_err(|e| (500, e))?;
        git_in(
            &self.bare,
            &[
                "update-ref",
                &format!("refs/heads/{}", pr.base),
                &commit,
                &base,
            ],
        )
        .map_err(|e| (409, e))?;
        pr.state = "merged".into();
        pr.merge_commit = Some(commit.clone());
        Ok(commit)
    }

    pub fn handle(&self, r: &Req) -> Resp {
        if !self.authorized(r) {
            return Resp::json(401, json!({"message": "Bad credentials"}));
        }
        let repo = match self.flavor {
            Flavor::GitHub | Flavor::Gitea => format!(
                "{}/repos/{}/{}",
                self.flavor.api_prefix(),
                self.owner,
                self.name
            ),
            Flavor::GitLab => format!(
                "{}/projects/{}/{}",
                self.flavor.api_prefix(),
                self.owner,
                self.name
            ),
            Flavor::Bitbucket => format!(
                "{}/repositories/{}/{}",
                self.flavor.api_prefix(),
                self.owner,
                self.name
            ),
            Flavor::Azure => {
                if r.query("api-version").is_none() {
                    return Resp::json(400, json!({"message": "api-version is required"}));
                }
                format!("/{}/proj/_apis/git/repositories/{}", self.owner, self.name)
            }
        };
        let Some(rest) = r.path.strip_prefix(&repo) else {
            return Resp::json(404, json!({"message": "no such repository"}));
        };
        let pulls = match self.flavor {
            Flavor::GitLab => "/merge_requests",
            Flavor::Bitbucket | Flavor::Azure => "/pullrequests",
            _ => "/pulls",
        };
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let body = r.json();
        match (r.method.as_str(), segs.as_slice()) {
            ("POST", [p]) if format!("/{p}") == pulls => self.create(&body),
            ("GET", [p]) if format!("/{p}") == pulls => self.list(r),
            ("GET", [p, n]) if format!("/{p}") == pulls => {
                let n: i64 = n.parse().unwrap_or(-1);
                let prs = self.prs.lock().unwrap();
                match prs.iter().find(|p| p.number == n) {
                    Some(pr) => Resp::json(200, self.pr_json(pr)),
                    None => Resp::json(404, json!({"message": "Not Found"})),
                }
            }
            ("PATCH", [p, n]) if format!("/{p}") == pulls && self.flavor == Flavor::Azure => {
                let n: i64 = n.parse().unwrap_or(-1);
                if body["status"] != json!("completed") {
                    return Resp::json(400, json!({"message": "unsupported update"}));
                }
                match self.merge(n) {
                    Ok(_) => {
                        let prs = self.prs.lock().unwrap();
                        let pr = prs.iter().find(|p| p.number == n).unwrap();
                        Resp::json(200, self.pr_json(pr))
                    }
                    Err((s, m)) => Resp::json(s, json!({"message": m})),
                }
            }
            (m, [p, n, "merge"]) if format!("/{p}") == pulls => {
                let expected = match self.flavor {
                    Flavor::GitHub | Flavor::GitLab => "PUT",
                    _ => "POST",
                };
                if m != expected {
                    return Resp::json(405, json!({"message": "method not allowed"}));
                }
                let n: i64 = n.parse().unwrap_or(-1);
                match self.merge(n) {
                    Ok(sha) => match self.flavor {
                        Flavor::GitHub => Resp::json(
                            200,
                            json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
                        ),
                        Flavor::Gitea => Resp::new(200),
                        _ => {
                            let prs = self.prs.lock().unwrap();
                            let pr = prs.iter().find(|p| p.number == n).unwrap();
                            Resp::json(200, self.pr_json(pr))
                        }
                    },
                    Err((s, m)) => Resp::json(s, json!({"message": m})),
                }
            }
            ("POST", ["issues", n, "labels"]) if self.flavor == Flavor::GitHub => {
                let n: i64 = n.parse().unwrap_or(-1);
                let mut prs = self.prs.lock().unwrap();
                if let Some(pr) = prs.iter_mut().find(|p| p.number == n) {
                    for l in body["labels"].as_array().cloned().unwrap_or_default() {
                        pr.labels.push(l.as_str().unwrap_or_default().to_owned());
                    }
                }
                Resp::json(200, json!([]))
            }
            ("GET", ["labels"]) if self.flavor == Flavor::Gitea => Resp::json(
                200,
                json!([{"id": 1, "name": "promotion"}, {"id": 2, "name": "prod"}]),
            ),
            _ => Resp::json(404, json!({"message": "Not Found"})),
        }
    }

    fn create(&self, b: &Json) -> Resp {
        let s = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
        let (head, base, body, labels) = match self.flavor {
            Flavor::GitHub => (s("head"), s("base"), s("body"), vec![]),
            Flavor::Gitea => (
                s("head"),
                s("base"),
                s("body"),
                b["labels"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|id| match id.as_i64() {
                        Some(1) => "promotion".to_owned(),
                        Some(2) => "prod".to_owned(),
                        _ => "?".to_owned(),
                    })
                    .collect(),
            ),
            Flavor::GitLab => (
                s("source_branch"),
                s("target_branch"),
                s("description"),
                s("labels")
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Flavor::Bitbucket => (
                b["source"]["branch"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                b["destination"]["branch"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                s("description"),
                vec![],
            ),
            Flavor::Azure => (
                s("sourceRefName")
                    .trim_start_matches("refs/heads/")
                    .to_owned(),
                s("targetRefName")
                    .trim_start_matches("refs/heads/")
                    .to_owned(),
                s("description"),
                b["labels"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|l| l["name"].as_str().map(str::to_owned))
                    .collect(),
            ),
        };
        if self.tip(&head).is_none() || self.tip(&base).is_none() {
            return Resp::json(422, json!({"message": "Validation Failed: branch missing"}));
        }
        let mut prs = self.prs.lock().unwrap();
        if prs
            .iter()
            .any(|p| p.state == "open" && p.head == head && p.base == base)
        {
            return Resp::json(422, json!({"message": "A pull request already exists"}));
        }
        let pr = FakePr {
            number: prs.len() as i64 + 1,
            head,
            base,
            title: s("title"),
            body,
            labels,
            state: "open".into(),
            merge_commit: None,
        };
        let out = self.pr_json(&pr);
        prs.push(pr);
        Resp::json(201, out)
    }

    fn list(&self, r: &Req) -> Resp {
        let prs = self.prs.lock().unwrap();
        let items: Vec<Json> = prs
            .iter()
            .filter(|p| match self.flavor {
                Flavor::GitHub => {
                    let state_ok = match r.query("state") {
                        Some("open") => p.state == "open",
                        Some("closed") => p.state != "open",
                        _ => true,
                    };
                    state_ok
                        && r.query("head") == Some(&format!("{}:{}", self.owner, p.head))
                        && r.query("base").is_none_or(|b| b == p.base)
                }
                Flavor::GitLab => {
                    let state = if p.state == "open" {
                        "opened"
                    } else {
                        p.state.as_str()
                    };
                    r.query("state").is_none_or(|s| s == state)
                        && r.query("source_branch").is_none_or(|b| b == p.head)
                        && r.query("target_branch").is_none_or(|b| b == p.base)
                }
                Flavor::Gitea => match r.query("state") {
                    Some("open") => p.state == "open",
                    Some("closed") => p.state != "open",
                    _ => true,
                },
                Flavor::Bitbucket => {
                    // q=source.branch.name="X" AND destination.branch.name="Y"
                    let q = r.query("q").unwrap_or_default();
                    let quoted: Vec<&str> = q.split('"').skip(1).step_by(2).collect();
                    let state = match p.state.as_str() {
                        "open" => "OPEN",
                        "merged" => "MERGED",
                        _ => "DECLINED",
                    };
                    r.query("state").is_none_or(|s| s == state)
                        && quoted == [p.head.as_str(), p.base.as_str()]
                }
                Flavor::Azure => {
                    let status = match p.state.as_str() {
                        "open" => "active",
                        "merged" => "completed",
                        _ => "abandoned",
                    };
                    r.query("searchCriteria.status").is_none_or(|s| s == status)
                        && r.query("searchCriteria.sourceRefName")
                            == Some(&format!("refs/heads/{}", p.head))
                        && r.query("searchCriteria.targetRefName")
                            == Some(&format!("refs/heads/{}", p.base))
                }
            })
            .map(|p| self.pr_json(p))
            .collect();
        self.page(r, items)
    }

    /// One page of `items`, with the next-page pointers each service documents: GitHub
    /// and Gitea a `Link` header (`per_page`/`limit` and `page`), GitLab `Link` plus
    /// `X-Next-Page` (`per_page`, `page`), Bitbucket a `next` URL in the body (`pagelen`,
    /// `page`), Azure DevOps `$top`/`$skip` and, when it returned fewer items than asked,
    /// an `x-ms-continuationtoken` header (`continuationToken`).
    fn page(&self, r: &Req, items: Vec<Json>) -> Resp {
        let cap = match self.page_size.load(Ordering::Relaxed) {
            0 => usize::MAX,
            n => n,
        };
        let num = |k: &str| r.query(k).and_then(|v| v.parse::<usize>().ok());
        let total = items.len();
        if self.flavor == Flavor::Azure {
            let asked = num("$top").unwrap_or(101).min(1000);
            let skip = num("continuationToken").or(num("$skip")).unwrap_or(0);
            let size = asked.min(cap);
            let page: Vec<Json> = items.into_iter().skip(skip).take(size).collect();
            let n = page.len();
            let mut resp = Resp::json(200, json!({"value": page, "count": n}));
            if n < asked && skip + n < total {
                resp = resp.header("x-ms-continuationtoken", &(skip + n).to_string());
            }
            return resp;
        }
        let (size_key, default, max) = match self.flavor {
            Flavor::GitHub => ("per_page", 30, 100),
            Flavor::Gitea => ("limit", 30, 50),
            Flavor::GitLab => ("per_page", 20, 100),
            _ => ("pagelen", 10, 50),
        };
        let size = num(size_key).unwrap_or(default).clamp(1, max).min(cap);
        let page_no = num("page").unwrap_or(1).max(1);
        let last = total.div_ceil(size).max(1);
        let page: Vec<Json> = items
            .into_iter()
            .skip((page_no - 1) * size)
            .take(size)
            .collect();
        let next = (page_no < last).then(|| self.page_url(r, page_no + 1));
        match self.flavor {
            Flavor::Bitbucket => {
                let mut body =
                    json!({"values": page, "pagelen": size, "page": page_no, "size": total});
                if let Some(next) = next {
                    body["next"] = json!(next);
                }
                Resp::json(200, body)
            }
            _ => {
                let mut links = vec![format!("<{}>; rel=\"last\"", self.page_url(r, last))];
                if let Some(next) = &next {
                    links.insert(0, format!("<{next}>; rel=\"next\""));
                }
                let mut resp = Resp::json(200, Json::Array(page)).header("link", &links.join(", "));
                if self.flavor == Flavor::GitLab {
                    let next_page = if page_no < last {
                        (page_no + 1).to_string()
                    } else {
                        String::new()
                    };
                    resp = resp
                        .header("x-next-page", &next_page)
                        .header("x-page", &page_no.to_string())
                        .header("x-total", &total.to_string());
                }
                resp
            }
        }
    }

    /// The URL of page `n` of the list `r` asked for (its query with `page=n`).
    fn page_url(&self, r: &Req, n: usize) -> String {
        let mut query: Vec<&str> = r
            .raw_query
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
            .collect();
        let page = format!("page={n}");
        query.push(&page);
        format!(
            "http://{}{}?{}",
            r.header("host").unwrap_or("127.0.0.1"),
            r.path,
            query.join("&")
        )
    }

    pub fn prs(&self) -> Vec<FakePr> {
        self.prs.lock().unwrap().clone()
    }
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
