//! A fake git hosting API (GitHub, GitLab or Gitea request shapes) backed by a real bare
//! repository: branches are read with `git`, and merging a pull request writes a real
//! merge commit into the bare repository (`git merge-tree` + `git commit-tree` +
//! `git update-ref`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};

use super::fake_http::{Req, Resp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    GitHub,
    GitLab,
    Gitea,
}

impl Flavor {
    /// The API prefix the fake serves under.
    pub fn api_prefix(self) -> &'static str {
        match self {
            Self::GitHub => "/api/v3",
            Self::GitLab => "/api/v4",
            Self::Gitea => "/api/v1",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
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
    pub web: String,
    pub prs: Mutex<Vec<FakePr>>,
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
    pub fn new(flavor: Flavor, bare: PathBuf, owner: &str, name: &str, token: &str) -> Arc<Self> {
        Arc::new(Self {
            flavor,
            bare,
            owner: owner.into(),
            name: name.into(),
            token: token.into(),
            web: format!("https://forge.example/{owner}/{name}"),
            prs: Mutex::new(Vec::new()),
        })
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
        };
        let Some(rest) = r.path.strip_prefix(&repo) else {
            return Resp::json(404, json!({"message": "no such repository"}));
        };
        let pulls = if self.flavor == Flavor::GitLab {
            "/merge_requests"
        } else {
            "/pulls"
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
            (m, [p, n, "merge"]) if format!("/{p}") == pulls => {
                let expected = match self.flavor {
                    Flavor::GitHub | Flavor::GitLab => "PUT",
                    Flavor::Gitea => "POST",
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
                        Flavor::GitLab => {
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
                    r.query("state") == Some("open")
                        && p.state == "open"
                        && r.query("head") == Some(&format!("{}:{}", self.owner, p.head))
                        && r.query("base").is_none_or(|b| b == p.base)
                }
                Flavor::GitLab => {
                    p.state == "open"
                        && r.query("source_branch").is_none_or(|b| b == p.head)
                        && r.query("target_branch").is_none_or(|b| b == p.base)
                }
                Flavor::Gitea => r.query("state") != Some("open") || p.state == "open",
            })
            .map(|p| self.pr_json(p))
            .collect();
        Resp::json(200, Json::Array(items))
    }

    pub fn prs(&self) -> Vec<FakePr> {
        self.prs.lock().unwrap().clone()
    }
}
