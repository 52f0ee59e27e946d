//! GitHub's Git database and compare endpoints for the fake forge
//! ([`super::fake_forge::Forge`], GitHub flavor), backed by the same real bare repository,
//! with GitHub's documented requests and answers:
//!
//! * `GET /repos/{o}/{r}/git/ref/{ref}` → `{ref, object: {sha, type}}` or 404
//! * `GET /repos/{o}/{r}/compare/{base}...{head}` → `{status, ahead_by, behind_by,
//!   merge_base_commit: {sha}, commits: [{sha, commit: {message, tree: {sha}, author,
//!   committer}, parents: [{sha}]}]}` (oldest first)
//! * `POST /repos/{o}/{r}/git/commits` `{message, tree, parents, author?, committer?}` →
//!   201 (without author/committer the commit is the token's identity and verified)
//! * `POST /repos/{o}/{r}/git/refs` `{ref, sha}` → 201, or 422 when it exists
//! * `PATCH /repos/{o}/{r}/git/refs/{ref}` `{sha, force}` → 200, or 422 when not a fast
//!   forward
//! * `DELETE /repos/{o}/{r}/git/refs/{ref}` → 204, or 422 when missing

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};

use super::fake_forge::Forge;
use super::fake_http::{Req, Resp};

/// The identity GitHub gives commits created without author/committer (a GitHub App).
pub const APP_NAME: &str = "kargo-app[bot]";
pub const APP_EMAIL: &str = "kargo-app[bot]@users.noreply.github.com";

pub struct GitData {
    pub forge: Arc<Forge>,
    /// Bodies of `POST git/commits`, in order.
    pub created: Mutex<Vec<Json>>,
    /// `METHOD path` of every git-data request, in order.
    pub calls: Mutex<Vec<String>>,
    /// When set, the next `PATCH` of a branch first moves that branch by one commit
    /// (someone else pushed in between), so the update is not a fast forward.
    pub race_next_update: std::sync::atomic::AtomicBool,
}

fn git_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn error(status: u16, message: &str) -> Resp {
    Resp::json(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

impl GitData {
    pub fn new(forge: Arc<Forge>) -> Arc<Self> {
        Arc::new(Self {
            forge,
            created: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            race_next_update: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn git(&self, args: &[&str]) -> Result<String, String> {
        git_env(&self.forge.bare, args, &[])
    }

    fn resolve(&self, r: &str) -> Option<String> {
        self.git(&["rev-parse", "--verify", "--quiet", r]).ok()
    }

    fn is_commit(&self, sha: &str) -> bool {
        self.git(&["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .is_ok()
    }

    fn commit_json(&self, sha: &str) -> Json {
        let f = self
            .git(&[
                "show",
                "-s",
                "--format=%T%n%P%n%an%n%ae%n%aI%n%cn%n%ce%n%cI",
                sha,
            ])
            .unwrap_or_default();
        let l: Vec<&str> = f.lines().collect();
        let get = |i: usize| l.get(i).copied().unwrap_or_default();
        let message = self
            .git(&["log", "-1", "--format=%B", sha])
            .unwrap_or_default();
        json!({
            "sha": sha,
            "commit": {
                "message": message,
                "tree": {"sha": get(0)},
                "author": {"name": get(2), "email": get(3), "date": get(4)},
                "committer": {"name": get(5), "email": get(6), "date": get(7)},
            },
            "parents": get(1).split(' ').filter(|p| !p.is_empty()).map(|p| json!({"sha": p})).collect::<Vec<_>>(),
        })
    }

    /// Answers the git-data and compare requests of the forge's repository; `None` for
    /// anything else (the forge answers those).
    pub fn handle(&self, r: &Req) -> Option<Resp> {
        let prefix = format!(
            "{}/repos/{}/{}/",
            self.forge.flavor.api_prefix(),
            self.forge.owner,
            self.forge.name
        );
        let rest = r.path.strip_prefix(&prefix)?;
        if !(rest.starts_with("git/") || rest.starts_with("compare/")) {
            return None;
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("{} {}", r.method, rest));
        if r.header("authorization") != Some(&format!("Bearer {}", self.forge.token)) {
            return Some(error(401, "Bad credentials"));
        }
        let body = r.json();
        Some(match (r.method.as_str(), rest) {
            ("GET", p) if p.starts_with("git/ref/") => {
                let name = format!("refs/{}", &p["git/ref/".len()..]);
                match self.resolve(&name) {
                    Some(sha) => Resp::json(
                        200,
                        json!({"ref": name, "object": {"sha": sha, "type": "commit"}}),
                    ),
                    None => error(404, "Not Found"),
                }
            }
            ("GET", p) if p.starts_with("compare/") => {
                let spec = &p["compare/".len()..];
                let Some((base, head)) = spec.split_once("...") else {
                    return Some(error(404, "Not Found"));
                };
                if !self.is_commit(base) || !self.is_commit(head) {
                    return Some(error(404, "Not Found"));
                }
                let Ok(merge_base) = self.git(&["merge-base", base, head]) else {
                    return Some(error(404, "No common ancestor between base and head."));
                };
                let count = |range: &str| {
                    self.git(&["rev-list", "--count", range])
                        .ok()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let ahead = count(&format!("{base}..{head}"));
                let behind = count(&format!("{head}..{base}"));
                let status = match (ahead, behind) {
                    (0, 0) => "identical",
                    (_, 0) => "ahead",
                    (0, _) => "behind",
                    _ => "diverged",
                };
                let list = self
                    .git(&[
                        "rev-list",
                        "--reverse",
                        "--topo-order",
                        &format!("{base}..{head}"),
                    ])
                    .unwrap_or_default();
                let commits: Vec<Json> = list
                    .lines()
                    .filter(|l| !l.is_empty())
                    .take(250)
                    .map(|c| self.commit_json(c))
                    .collect();
                Resp::json(
                    200,
                    json!({
                        "status": status, "ahead_by": ahead, "behind_by": behind,
                        "total_commits": ahead,
                        "base_commit": self.commit_json(base),
                        "merge_base_commit": self.commit_json(&merge_base),
                        "commits": commits,
                    }),
                )
            }
            ("POST", "git/commits") => {
                self.created.lock().unwrap().push(body.clone());
                let tree = body["tree"].as_str().unwrap_or_default();
                let message = body["message"].as_str().unwrap_or_default();
                if self
                    .git(&["cat-file", "-e", &format!("{tree}^{{tree}}")])
                    .is_err()
                {
                    return Some(error(422, "Tree SHA does not exist"));
                }
                let mut args = vec!["commit-tree".to_owned(), tree.to_owned()];
                for p in body["parents"].as_array().cloned().unwrap_or_default() {
                    let p = p.as_str().unwrap_or_default().to_owned();
                    if !self.is_commit(&p) {
                        return Some(error(
                            422,
                            "Parent SHA does not exist or is not a commit object",
                        ));
                    }
                    args.push("-p".into());
                    args.push(p);
                }
                args.push("-m".into());
                args.push(message.to_owned());
                let who = |v: &Json, field: &str, default: &str| {
                    v.get(field)
                        .and_then(Json::as_str)
                        .unwrap_or(default)
                        .to_owned()
                };
                let verified = body.get("author").is_none() && body.get("committer").is_none();
                let author = body.get("author").cloned().unwrap_or(Json::Null);
                let committer = body.get("committer").cloned().unwrap_or(author.clone());
                let mut env = vec![
                    ("GIT_AUTHOR_NAME", who(&author, "name", APP_NAME)),
                    ("GIT_AUTHOR_EMAIL", who(&author, "email", APP_EMAIL)),
                    ("GIT_COMMITTER_NAME", who(&committer, "name", APP_NAME)),
                    ("GIT_COMMITTER_EMAIL", who(&committer, "email", APP_EMAIL)),
                ];
                if let Some(d) = author.get("date").and_then(Json::as_str) {
                    env.push(("GIT_AUTHOR_DATE", d.to_owned()));
                }
                if let Some(d) = committer.get("date").and_then(Json::as_str) {
                    env.push(("GIT_COMMITTER_DATE", d.to_owned()));
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                match git_env(&self.forge.bare, &args, &env) {
                    Ok(sha) => {
                        let mut out = self.commit_json(&sha)["commit"].clone();
                        out["sha"] = json!(sha);
                        out["parents"] = self.commit_json(&sha)["parents"].clone();
                        out["verification"] = json!({"verified": verified, "reason": if verified { "valid" } else { "unsigned" }});
                        Resp::json(201, out)
                    }
                    Err(e) => error(422, &e),
                }
            }
            ("POST", "git/refs") => {
                let name = body["ref"].as_str().unwrap_or_default().to_owned();
                let sha = body["sha"].as_str().unwrap_or_default().to_owned();
                if !name.starts_with("refs/") || name.matches('/').count() < 2 {
                    return Some(error(
                        422,
                        "Reference name must start with 'refs/' and have at least two slashes.",
                    ));
                }
                if self.resolve(&name).is_some() {
                    return Some(error(422, "Reference already exists"));
                }
                if !self.is_commit(&sha) {
                    return Some(error(422, "Object does not exist"));
                }
                match self.git(&["update-ref", &name, &sha]) {
                    Ok(_) => Resp::json(
                        201,
                        json!({"ref": name, "object": {"sha": sha, "type": "commit"}}),
                    ),
                    Err(e) => error(422, &e),
                }
            }
            ("PATCH", p) if p.starts_with("git/refs/") => {
                let name = format!("refs/{}", &p["git/refs/".len()..]);
                let sha = body["sha"].as_str().unwrap_or_default().to_owned();
                let force = body["force"].as_bool().unwrap_or(false);
                if self
                    .race_next_update
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
                    && let Some(tip) = self.resolve(&name)
                {
                    let moved = git_env(
                        &self.forge.bare,
                        &[
                            "commit-tree",
                            &format!("{tip}^{{tree}}"),
                            "-p",
                            &tip,
                            "-m",
                            "racing push",
                        ],
                        &[
                            ("GIT_AUTHOR_NAME", "Racer".into()),
                            ("GIT_AUTHOR_EMAIL", "racer@example.com".into()),
                            ("GIT_COMMITTER_NAME", "Racer".into()),
                            ("GIT_COMMITTER_EMAIL", "racer@example.com".into()),
                        ],
                    )
                    .unwrap();
                    self.git(&["update-ref", &name, &moved]).unwrap();
                }
                let Some(current) = self.resolve(&name) else {
                    return Some(error(422, "Reference does not exist"));
                };
                if !self.is_commit(&sha) {
                    return Some(error(422, "Object does not exist"));
                }
                let ff = self
                    .git(&["merge-base", "--is-ancestor", &current, &sha])
                    .is_ok();
                if !force && !ff {
                    return Some(error(422, "Update is not a fast forward"));
                }
                match self.git(&["update-ref", &name, &sha, &current]) {
                    Ok(_) => Resp::json(
                        200,
                        json!({"ref": name, "object": {"sha": sha, "type": "commit"}}),
                    ),
                    Err(_) => error(422, "Update is not a fast forward"),
                }
            }
            ("DELETE", p) if p.starts_with("git/refs/") => {
                let name = format!("refs/{}", &p["git/refs/".len()..]);
                if self.resolve(&name).is_none() {
                    return Some(error(422, "Reference does not exist"));
                }
                match self.git(&["update-ref", "-d", &name]) {
                    Ok(_) => Resp::new(204),
                    Err(e) => error(422, &e),
                }
            }
            _ => error(404, "Not Found"),
        })
    }
}
