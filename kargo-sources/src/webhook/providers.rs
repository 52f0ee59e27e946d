//! Authentication and payload parsing, per provider.

use kargo_core::freight::{normalize_git_url, normalize_image_repo};
use kargo_core::model::WebhookReceiverConfig;
use serde_json::Value;

use super::{
    ArtifactKind, Provider, PullRequestEvent, PushedArtifact, WebhookError, WebhookRequest,
    secrets_equal, verify_hmac_sha256,
};

/// The config media type of a Helm chart stored in an OCI registry.
const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";

/// A parsed event.
pub(super) struct ParsedEvent {
    pub(super) event: String,
    pub(super) artifacts: Vec<PushedArtifact>,
    pub(super) pull_requests: Vec<PullRequestEvent>,
}

impl ParsedEvent {
    fn nothing(event: impl Into<String>) -> Self {
        Self {
            event: event.into(),
            artifacts: Vec::new(),
            pull_requests: Vec::new(),
        }
    }

    fn pushed(event: impl Into<String>, artifacts: Vec<PushedArtifact>) -> Self {
        Self {
            artifacts,
            ..Self::nothing(event)
        }
    }

    /// A pull request of the repository at `urls` merged or closed.
    fn pull_request(
        event: impl Into<String>,
        urls: Vec<String>,
        number: Option<i64>,
        merged: bool,
    ) -> Result<Self, WebhookError> {
        let number = number.ok_or_else(|| bad("the payload names no pull request number"))?;
        if urls.is_empty() {
            return Err(bad("the payload names no repository"));
        }
        Ok(Self {
            pull_requests: vec![PullRequestEvent {
                repo_urls: urls,
                number,
                merged,
            }],
            ..Self::nothing(event)
        })
    }
}

/// Checks the request's credentials (the path has been matched already).
pub(super) fn authenticate(
    provider: Provider,
    req: &WebhookRequest,
    secret: &[u8],
) -> Result<(), WebhookError> {
    let h = |name: &str| req.headers.get(name).filter(|v| !v.is_empty());
    let prefixed = |name: &'static str| -> Result<(), WebhookError> {
        let sig = h(name).ok_or(WebhookError::Unauthenticated("signature"))?;
        let hex = sig
            .strip_prefix("sha256=")
            .ok_or(WebhookError::Forbidden("signature"))?;
        check(verify_hmac_sha256(secret, &req.body, hex), "signature")
    };
    match provider {
        Provider::GitHub => prefixed("X-Hub-Signature-256"),
        Provider::Bitbucket => prefixed("X-Hub-Signature"),
        Provider::Gitea => {
            let plain = [
                "X-Gitea-Signature",
                "X-Forgejo-Signature",
                "X-Gogs-Signature",
            ]
            .into_iter()
            .find_map(h);
            match plain {
                Some(sig) => check(verify_hmac_sha256(secret, &req.body, sig), "signature"),
                None => prefixed("X-Hub-Signature-256"),
            }
        }
        Provider::Artifactory => {
            let sig = h("X-Jfrog-Event-Auth").ok_or(WebhookError::Unauthenticated("signature"))?;
            check(verify_hmac_sha256(secret, &req.body, sig), "signature")
        }
        Provider::GitLab => {
            let token = h("X-Gitlab-Token").ok_or(WebhookError::Unauthenticated("token"))?;
            check(
                secrets_equal(token, &String::from_utf8_lossy(secret)),
                "token",
            )
        }
        Provider::Harbor | Provider::Distribution => {
            let auth =
                h("Authorization").ok_or(WebhookError::Unauthenticated("Authorization header"))?;
            check(
                secrets_equal(auth, &String::from_utf8_lossy(secret)),
                "Authorization header",
            )
        }
        // The secret is part of the URL, which has been matched.
        Provider::Azure | Provider::DockerHub | Provider::Quay | Provider::Generic => Ok(()),
    }
}

fn check(ok: bool, what: &'static str) -> Result<(), WebhookError> {
    if ok {
        Ok(())
    } else {
        Err(WebhookError::Forbidden(what))
    }
}

/// Reads the event and what it pushed.
pub(super) fn parse(
    provider: Provider,
    cfg: &WebhookReceiverConfig,
    req: &WebhookRequest,
    body: &Value,
) -> Result<ParsedEvent, WebhookError> {
    if !body.is_object() {
        return Err(bad("the payload is not a JSON object"));
    }
    match provider {
        Provider::GitHub => github(req, body),
        Provider::GitLab => gitlab(req, body),
        Provider::Gitea => gitea(req, body),
        Provider::Bitbucket => bitbucket(req, body),
        Provider::Azure => azure(body),
        Provider::DockerHub => dockerhub(body),
        Provider::Quay => quay(body),
        Provider::Harbor => harbor(body),
        Provider::Artifactory => artifactory(cfg, body),
        Provider::Distribution => distribution(body),
        Provider::Generic => Err(WebhookError::Misconfigured(
            "generic receivers are handled elsewhere".into(),
        )),
    }
}

/// An event this receiver does not handle; the name comes from the request, so it is cut.
fn unsupported(event: impl AsRef<str>) -> WebhookError {
    WebhookError::UnsupportedEvent(event.as_ref().chars().take(64).collect())
}

fn bad(msg: impl Into<String>) -> WebhookError {
    WebhookError::BadRequest(msg.into())
}

/// A non-empty string at a JSON pointer.
fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A required non-empty string at a JSON pointer.
fn need<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, WebhookError> {
    s(v, pointer).ok_or_else(|| bad(format!("the payload has no {pointer}")))
}

fn header<'a>(req: &'a WebhookRequest, name: &str) -> Result<&'a str, WebhookError> {
    req.headers
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(format!("missing {name} header")))
}

/// Normalised git URLs, deduplicated, in order.
fn git_urls<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in candidates.into_iter().flatten() {
        let n = normalize_git_url(c);
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// The repository URLs of a GitHub or Gitea payload (`repository.html_url`, `clone_url`,
/// `ssh_url`), normalised.
fn repository_urls(body: &Value) -> Vec<String> {
    git_urls([
        s(body, "/repository/html_url"),
        s(body, "/repository/clone_url"),
        s(body, "/repository/ssh_url"),
    ])
}

/// The project URLs of a GitLab payload (`project.web_url`, `git_http_url`,
/// `git_ssh_url`).
fn gitlab_project_urls(body: &Value) -> [Option<&str>; 3] {
    [
        s(body, "/project/web_url"),
        s(body, "/project/git_http_url"),
        s(body, "/project/git_ssh_url"),
    ]
}

/// The files added, modified or removed by `commits`, when the list is complete.
fn changed_files(commits: Option<&Value>, total: Option<u64>) -> Option<Vec<String>> {
    let commits = commits?.as_array()?;
    if commits.is_empty() {
        return None;
    }
    if let Some(total) = total
        && total > u64::try_from(commits.len()).unwrap_or(u64::MAX)
    {
        return None;
    }
    let mut files: Vec<String> = Vec::new();
    for c in commits {
        for key in ["added", "modified", "removed"] {
            // A commit without its file lists: the changes are unknown.
            let list = c.get(key)?.as_array()?;
            for f in list {
                let f = f.as_str()?;
                if !files.iter().any(|x| x == f) {
                    files.push(f.to_owned());
                }
            }
        }
    }
    Some(files)
}

fn git_push(
    urls: Vec<String>,
    git_ref: &str,
    default_branch: Option<&str>,
    files: Option<Vec<String>>,
) -> Result<PushedArtifact, WebhookError> {
    if urls.is_empty() {
        return Err(bad("the payload names no repository URL"));
    }
    let is_tag = git_ref.starts_with("refs/tags/");
    Ok(PushedArtifact {
        kind: ArtifactKind::Git,
        repo_urls: urls,
        git_refs: vec![git_ref.to_owned()],
        default_branch: default_branch
            .map(|b| b.strip_prefix("refs/heads/").unwrap_or(b).to_owned()),
        // Path filters apply to the tagged commit, which a tag push does not describe.
        changed_files: if is_tag { None } else { files },
        tags: Vec::new(),
        digest: None,
    })
}

/// An OCI repository push.
fn oci_push(
    kind: ArtifactKind,
    repo: &str,
    tags: Vec<String>,
    digest: Option<&str>,
) -> PushedArtifact {
    PushedArtifact {
        kind,
        repo_urls: vec![normalize_image_repo(repo)],
        tags,
        digest: digest.map(str::to_owned),
        ..PushedArtifact::default()
    }
}

/// Merges pushes of the same kind and repository (their tags).
fn merge(artifacts: Vec<PushedArtifact>) -> Vec<PushedArtifact> {
    let mut out: Vec<PushedArtifact> = Vec::new();
    for a in artifacts {
        if let Some(prev) = out
            .iter_mut()
            .find(|p| p.kind == a.kind && p.repo_urls == a.repo_urls)
        {
            for t in a.tags {
                if !prev.tags.contains(&t) {
                    prev.tags.push(t);
                }
            }
            if prev.digest.is_none() {
                prev.digest = a.digest;
            }
        } else {
            out.push(a);
        }
    }
    out
}

/// Splits `host/repo[:tag][@digest]` into the repository, tag and digest.
fn split_reference(reference: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (
                &rest[..at],
                Some(&rest[at + 1..]).filter(|t| !t.is_empty()),
                digest,
            )
        }
        None => (rest, None, digest),
    }
}

fn github(req: &WebhookRequest, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let event = header(req, "X-GitHub-Event")?;
    match event {
        "ping" => Ok(ParsedEvent::nothing(event)),
        "pull_request" => github_style_pull_request(event, body),
        "push" => {
            let git_ref = need(body, "/ref")?;
            let urls = repository_urls(body);
            let files = changed_files(body.get("commits"), None);
            let a = git_push(urls, git_ref, s(body, "/repository/default_branch"), files)?;
            Ok(ParsedEvent::pushed(event.to_owned(), vec![a]))
        }
        "package" | "registry_package" => {
            let action = need(body, "/action")?;
            let pkg = body
                .get("package")
                .or_else(|| body.get("registry_package"))
                .filter(|p| p.is_object())
                .ok_or_else(|| bad("the payload has no package"))?;
            let ptype = s(pkg, "/package_type")
                .or_else(|| s(pkg, "/ecosystem"))
                .unwrap_or_default();
            let is_container =
                ptype.eq_ignore_ascii_case("container") || ptype.eq_ignore_ascii_case("docker");
            if action != "published" || !is_container {
                return Ok(ParsedEvent::nothing(format!("{event}:{action}")));
            }
            let version = pkg
                .get("package_version")
                .ok_or_else(|| bad("the payload has no package.package_version"))?;
            let (repo, url_tag, _) = match s(version, "/package_url") {
                Some(u) => split_reference(u),
                None => ("", None, None),
            };
            let repo = if repo.is_empty() {
                let owner = s(pkg, "/namespace")
                    .or_else(|| s(pkg, "/owner/login"))
                    .ok_or_else(|| bad("the payload has no package owner"))?;
                let name = need(pkg, "/name")?;
                format!("ghcr.io/{owner}/{name}")
            } else {
                repo.to_owned()
            };
            let tag = s(version, "/container_metadata/tag/name").or(url_tag);
            let digest = s(version, "/container_metadata/tag/digest")
                .or_else(|| s(version, "/container_metadata/manifest/digest"));
            let kind = match s(version, "/container_metadata/manifest/config/media_type") {
                Some(HELM_CONFIG_MEDIA_TYPE) => ArtifactKind::Chart,
                Some(_) => ArtifactKind::Image,
                None => ArtifactKind::Oci,
            };
            let tags = tag.map(|t| vec![t.to_owned()]).unwrap_or_default();
            Ok(ParsedEvent::pushed(
                format!("{event}:{action}"),
                vec![oci_push(kind, &repo, tags, digest)],
            ))
        }
        other => Err(unsupported(other)),
    }
}

/// GitHub's and Gitea's `pull_request` event: `closed` (merged or not) names the pull
/// request; other actions (opened, synchronize, ...) concern no waiting promotion.
fn github_style_pull_request(event: &str, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let action = need(body, "/action")?;
    if action != "closed" {
        return Ok(ParsedEvent::nothing(format!("{event}:{action}")));
    }
    let urls = repository_urls(body);
    let number = body
        .get("number")
        .or_else(|| body.pointer("/pull_request/number"))
        .and_then(Value::as_i64);
    let merged = body
        .pointer("/pull_request/merged")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    ParsedEvent::pull_request(format!("{event}:{action}"), urls, number, merged)
}

fn gitlab(req: &WebhookRequest, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let event = header(req, "X-Gitlab-Event")?;
    let kind = s(body, "/object_kind").unwrap_or_default();
    if matches!(event, "Merge Request Hook" | "System Hook") && kind == "merge_request" {
        let action = s(body, "/object_attributes/action").unwrap_or_default();
        if !matches!(action, "merge" | "close") {
            return Ok(ParsedEvent::nothing(format!("{event}:{action}")));
        }
        let urls = git_urls(gitlab_project_urls(body));
        let iid = body
            .pointer("/object_attributes/iid")
            .and_then(Value::as_i64);
        return ParsedEvent::pull_request(
            format!("{event}:{action}"),
            urls,
            iid,
            action == "merge",
        );
    }
    if !matches!(event, "Push Hook" | "Tag Push Hook" | "System Hook")
        || !matches!(kind, "push" | "tag_push")
    {
        return Err(unsupported(event));
    }
    let git_ref = need(body, "/ref")?;
    let urls = git_urls(gitlab_project_urls(body).into_iter().chain([
        s(body, "/repository/homepage"),
        s(body, "/repository/git_http_url"),
        s(body, "/repository/git_ssh_url"),
    ]));
    let total = body.get("total_commits_count").and_then(Value::as_u64);
    let files = changed_files(body.get("commits"), total);
    let a = git_push(urls, git_ref, s(body, "/project/default_branch"), files)?;
    Ok(ParsedEvent::pushed(event.to_owned(), vec![a]))
}

fn gitea(req: &WebhookRequest, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let event = ["X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"]
        .into_iter()
        .find_map(|h| req.headers.get(h).filter(|v| !v.is_empty()))
        .ok_or_else(|| bad("missing X-Gitea-Event header"))?;
    if event == "pull_request" {
        return github_style_pull_request(event, body);
    }
    if event != "push" {
        return Err(unsupported(event));
    }
    let git_ref = need(body, "/ref")?;
    let urls = repository_urls(body);
    let total = body.get("total_commits").and_then(Value::as_u64);
    let files = changed_files(body.get("commits"), total);
    let a = git_push(urls, git_ref, s(body, "/repository/default_branch"), files)?;
    Ok(ParsedEvent::pushed(event.to_owned(), vec![a]))
}

fn bitbucket(req: &WebhookRequest, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let event = header(req, "X-Event-Key")?;
    match event {
        "diagnostics:ping" => return Ok(ParsedEvent::nothing(event)),
        "repo:push" | "pullrequest:fulfilled" | "pullrequest:rejected" => {}
        other => return Err(unsupported(other)),
    }
    let html = s(body, "/repository/links/html/href");
    let full_name = s(body, "/repository/full_name");
    let host = html
        .and_then(|h| h.split_once("://"))
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or("bitbucket.org");
    let ssh = full_name.map(|n| format!("git@{host}:{n}.git"));
    let https = full_name.map(|n| format!("https://{host}/{n}"));
    let urls = git_urls([html, https.as_deref(), ssh.as_deref()]);
    if urls.is_empty() {
        return Err(bad("the payload names no repository"));
    }
    if event != "repo:push" {
        // Merged (fulfilled) or declined (rejected).
        let id = body.pointer("/pullrequest/id").and_then(Value::as_i64);
        return ParsedEvent::pull_request(event, urls, id, event == "pullrequest:fulfilled");
    }
    let changes = body
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the payload has no /push/changes"))?;
    let mut refs = Vec::new();
    for c in changes {
        // A deleted ref has only `old`.
        let Some(side) = c.get("new").filter(|n| n.is_object()).or(c.get("old")) else {
            continue;
        };
        let (Some(kind), Some(name)) = (s(side, "/type"), s(side, "/name")) else {
            continue;
        };
        let full = match kind {
            "branch" | "named_branch" => format!("refs/heads/{name}"),
            "tag" | "annotated_tag" => format!("refs/tags/{name}"),
            _ => continue,
        };
        if !refs.contains(&full) {
            refs.push(full);
        }
    }
    Ok(ParsedEvent::pushed(
        event.to_owned(),
        vec![PushedArtifact {
            kind: ArtifactKind::Git,
            repo_urls: urls,
            git_refs: refs,
            default_branch: s(body, "/repository/mainbranch/name").map(str::to_owned),
            ..PushedArtifact::default()
        }],
    ))
}

fn azure(body: &Value) -> Result<ParsedEvent, WebhookError> {
    if let Some(event) = s(body, "/eventType") {
        // Azure DevOps service hook.
        if matches!(event, "git.pullrequest.merged" | "git.pullrequest.updated") {
            return azure_devops_pull_request(event, body);
        }
        if event != "git.push" {
            return Err(unsupported(event));
        }
        let (repo, urls) = azure_devops_repository(body)?;
        let refs: Vec<String> = body
            .pointer("/resource/refUpdates")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|r| s(r, "/name").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(ParsedEvent::pushed(
            event.to_owned(),
            vec![PushedArtifact {
                kind: ArtifactKind::Git,
                repo_urls: urls,
                git_refs: refs,
                default_branch: s(repo, "/defaultBranch")
                    .map(|b| b.strip_prefix("refs/heads/").unwrap_or(b).to_owned()),
                ..PushedArtifact::default()
            }],
        ));
    }
    // Azure Container Registry.
    let action = need(body, "/action")?;
    match action {
        "ping" => Ok(ParsedEvent::nothing(action)),
        "push" | "chart_push" => {
            let host = need(body, "/request/host")?;
            let repository = need(body, "/target/repository")?;
            let tag = s(body, "/target/tag").or_else(|| s(body, "/target/version"));
            let kind = if action == "chart_push" {
                ArtifactKind::Chart
            } else {
                ArtifactKind::Oci
            };
            let tags = tag.map(|t| vec![t.to_owned()]).unwrap_or_default();
            Ok(ParsedEvent::pushed(
                action.to_owned(),
                vec![oci_push(
                    kind,
                    &format!("{host}/{repository}"),
                    tags,
                    s(body, "/target/digest"),
                )],
            ))
        }
        other => Err(unsupported(other)),
    }
}

/// An Azure DevOps service hook's `resource.repository` and its URLs (`remoteUrl`,
/// `webUrl`, `sshUrl`), normalised; an error when it names none.
fn azure_devops_repository(body: &Value) -> Result<(&Value, Vec<String>), WebhookError> {
    let repo = body
        .pointer("/resource/repository")
        .ok_or_else(|| bad("the payload has no /resource/repository"))?;
    let urls = git_urls([
        s(repo, "/remoteUrl"),
        s(repo, "/webUrl"),
        s(repo, "/sshUrl"),
    ]);
    if urls.is_empty() {
        return Err(bad("the payload has no /resource/repository/remoteUrl"));
    }
    Ok((repo, urls))
}

/// Azure DevOps `git.pullrequest.merged` / `git.pullrequest.updated`: a pull request that
/// is `completed` (merged) or `abandoned` now; other updates concern no waiting promotion.
fn azure_devops_pull_request(event: &str, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let status = s(body, "/resource/status").unwrap_or_default();
    let merge_status = s(body, "/resource/mergeStatus").unwrap_or_default();
    let merged =
        status == "completed" || (event == "git.pullrequest.merged" && merge_status == "succeeded");
    if !merged && status != "abandoned" {
        return Ok(ParsedEvent::nothing(format!("{event}:{status}")));
    }
    let (_, urls) = azure_devops_repository(body)?;
    let id = body
        .pointer("/resource/pullRequestId")
        .and_then(Value::as_i64);
    ParsedEvent::pull_request(event, urls, id, merged)
}

fn dockerhub(body: &Value) -> Result<ParsedEvent, WebhookError> {
    let repo = need(body, "/repository/repo_name")?;
    let tags = s(body, "/push_data/tag")
        .map(|t| vec![t.to_owned()])
        .unwrap_or_default();
    Ok(ParsedEvent::pushed(
        "push".to_owned(),
        vec![oci_push(
            ArtifactKind::Oci,
            &format!("docker.io/{repo}"),
            tags,
            None,
        )],
    ))
}

fn quay(body: &Value) -> Result<ParsedEvent, WebhookError> {
    let repo = match s(body, "/docker_url") {
        Some(u) => u.to_owned(),
        None => format!("quay.io/{}", need(body, "/repository")?),
    };
    let tags: Vec<String> = body
        .get("updated_tags")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the payload has no updated_tags"))?
        .iter()
        .filter_map(|t| t.as_str().filter(|t| !t.is_empty()).map(str::to_owned))
        .collect();
    Ok(ParsedEvent::pushed(
        "repo_push".to_owned(),
        vec![oci_push(ArtifactKind::Oci, &repo, tags, None)],
    ))
}

fn harbor(body: &Value) -> Result<ParsedEvent, WebhookError> {
    let event = need(body, "/type")?;
    if event != "PUSH_ARTIFACT" {
        return Err(unsupported(event));
    }
    let resources = body
        .pointer("/event_data/resources")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the payload has no /event_data/resources"))?;
    let mut artifacts = Vec::new();
    for r in resources {
        let url = need(r, "/resource_url")?;
        let (repo, url_tag, url_digest) = split_reference(url);
        let tag = s(r, "/tag").or(url_tag);
        let tags = tag.map(|t| vec![t.to_owned()]).unwrap_or_default();
        artifacts.push(oci_push(
            ArtifactKind::Oci,
            repo,
            tags,
            s(r, "/digest").or(url_digest),
        ));
    }
    Ok(ParsedEvent::pushed(event.to_owned(), merge(artifacts)))
}

fn artifactory(cfg: &WebhookReceiverConfig, body: &Value) -> Result<ParsedEvent, WebhookError> {
    let event = need(body, "/event_type")?;
    if event != "pushed" {
        return Err(unsupported(event));
    }
    if let Some(domain) = s(body, "/domain")
        && domain != "docker"
    {
        return Err(unsupported(format!("{domain}:{event}")));
    }
    let origin = need(body, "/jpd_origin")?;
    let host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .split('/')
        .next()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("jpd_origin has no host"))?;
    let repo_key = match cfg
        .artifactory
        .as_ref()
        .map(|a| a.virtual_repo_name.as_str())
    {
        Some(v) if !v.is_empty() => v,
        _ => need(body, "/data/repo_key")?,
    };
    let image = need(body, "/data/image_name")?;
    let tags = s(body, "/data/tag")
        .map(|t| vec![t.to_owned()])
        .unwrap_or_default();
    Ok(ParsedEvent::pushed(
        event.to_owned(),
        vec![oci_push(
            ArtifactKind::Oci,
            &format!("{host}/{repo_key}/{image}"),
            tags,
            s(body, "/data/sha256"),
        )],
    ))
}

fn distribution(body: &Value) -> Result<ParsedEvent, WebhookError> {
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the payload has no events"))?;
    let mut artifacts = Vec::new();
    for e in events {
        if !e.is_object() {
            return Err(bad("an event is not an object"));
        }
        if s(e, "/action") != Some("push") {
            continue;
        }
        // Blob pushes carry layer media types; only manifests announce an artifact.
        if let Some(mt) = s(e, "/target/mediaType")
            && !(mt.contains("manifest") || mt.contains("index"))
        {
            continue;
        }
        // Untagged manifests are the children of an index pushed by tag (its own event).
        let Some(tag) = s(e, "/target/tag") else {
            continue;
        };
        let repository = need(e, "/target/repository")?;
        let host = need(e, "/request/host")?;
        artifacts.push(oci_push(
            ArtifactKind::Oci,
            &format!("{host}/{repository}"),
            vec![tag.to_owned()],
            s(e, "/target/digest"),
        ));
    }
    Ok(ParsedEvent::pushed("push".to_owned(), merge(artifacts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split() {
        assert_eq!(
            split_reference("harbor.dev/library/busybox:latest"),
            ("harbor.dev/library/busybox", Some("latest"), None)
        );
        assert_eq!(
            split_reference("localhost:5000/app@sha256:ab"),
            ("localhost:5000/app", None, Some("sha256:ab"))
        );
        assert_eq!(
            split_reference("localhost:5000/app:1.0@sha256:ab"),
            ("localhost:5000/app", Some("1.0"), Some("sha256:ab"))
        );
        assert_eq!(split_reference("app"), ("app", None, None));
    }
}
