//! `GitSource` against real git repositories: `file://` repositories in a temporary
//! directory, and the smart HTTP server of `ci/test.sh` (`TEST_GIT_ROOT`,
//! `TEST_GIT_HTTP_URL`, `TEST_GIT_HTTP_USER`, `TEST_GIT_HTTP_PASSWORD`). Repositories whose
//! name starts with `private-` need credentials on that server for reads too. Without the
//! variables the HTTP tests print a skip message, except with `CI=true`, where a missing
//! variable fails the test.
//!
//! Fixture repositories are built with the `git` CLI with fixed author, committer and
//! tagger dates, then mirrored into a bare repository the source discovers.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use kargo_core::testing::source_conformance as conformance;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kargo_core::secret::{CredentialKind, StaticCredentials};
use kargo_core::source::{
    DiscoveredCommit, Discovery, DiscoveryContext, DynSource, Source, SourceError, SourceErrorKind,
};
use kargo_git::GitConfig;
use kargo_sources::git::GitSource;
use serde_json::{Value as Json, json};

// ---------------------------------------------------------------------------------------
// Helpers

use kargo_core::testing::server_env;

struct Http {
    root: PathBuf,
    url: String,
    user: String,
    password: String,
}

fn http(test: &str) -> Option<Http> {
    Some(Http {
        root: PathBuf::from(server_env(test, "TEST_GIT_ROOT")?),
        url: server_env(test, "TEST_GIT_HTTP_URL")?,
        user: server_env(test, "TEST_GIT_HTTP_USER")?,
        password: server_env(test, "TEST_GIT_HTTP_PASSWORD")?,
    })
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first fixture time: 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200;

fn date(seconds: i64) -> String {
    format!("@{seconds} +0000")
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A work repository whose refs are mirrored into a bare repository on [`Repo::push`].
struct Repo {
    work: tempfile::TempDir,
    bare: PathBuf,
    url: String,
    clock: Cell<i64>,
}

const ALICE: (&str, &str) = ("Alice Author", "alice@example.com");
const CAROL: (&str, &str) = ("Carol Committer", "carol@example.com");

impl Repo {
    /// A new bare repository `<root>/<name>.git`, reached as `<base_url>/<name>.git`.
    fn new(root: &Path, base_url: &str, name: &str) -> Self {
        let bare = root.join(format!("{name}.git"));
        run(
            root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
            &[],
        );
        let work = tempfile::tempdir().unwrap();
        run(work.path(), &["init", "-q", "-b", "main"], &[]);
        Self {
            work,
            bare,
            url: format!("{base_url}/{name}.git"),
            clock: Cell::new(T0),
        }
    }

    /// A `file://` repository in its own temporary directory.
    fn file(name: &str) -> (tempfile::TempDir, Self) {
        let root = tempfile::tempdir().unwrap();
        let base = format!("file://{}", root.path().display());
        let r = Self::new(root.path(), &base, name);
        (root, r)
    }

    fn git(&self, args: &[&str], env: &[(&str, String)]) -> String {
        run(self.work.path(), args, env)
    }

    /// The next fixture time (one minute after the last).
    fn tick(&self) -> i64 {
        let t = self.clock.get() + 60;
        self.clock.set(t);
        t
    }

    /// Writes `files` (an empty content deletes the file) and commits them.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        self.commit_as(ALICE, files, message)
    }

    fn commit_as(&self, author: (&str, &str), files: &[(&str, &str)], message: &str) -> String {
        let t = self.tick();
        for (path, content) in files {
            let p = self.work.path().join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&p);
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, content).unwrap();
            }
        }
        self.git(&["add", "-A"], &[]);
        self.git(
            &["commit", "-q", "--allow-empty", "-m", message],
            &[
                ("GIT_AUTHOR_NAME", author.0.into()),
                ("GIT_AUTHOR_EMAIL", author.1.into()),
                ("GIT_AUTHOR_DATE", date(t)),
                ("GIT_COMMITTER_NAME", CAROL.0.into()),
                ("GIT_COMMITTER_EMAIL", CAROL.1.into()),
                ("GIT_COMMITTER_DATE", date(t)),
            ],
        );
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"], &[])
    }

    fn tag(&self, name: &str) {
        self.git(&["tag", name], &[]);
    }

    /// An annotated tag on HEAD by Tom Tagger, at `time`.
    fn annotated(&self, name: &str, message: &str, time: i64) {
        self.git(
            &["tag", "-a", name, "-m", message],
            &[
                ("GIT_COMMITTER_NAME", "Tom Tagger".into()),
                ("GIT_COMMITTER_EMAIL", "tom@example.com".into()),
                ("GIT_COMMITTER_DATE", date(time)),
            ],
        );
    }

    fn push(&self) {
        self.git(
            &["push", "-q", "--mirror", self.bare.to_str().unwrap()],
            &[],
        );
    }
}

fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.com",
        ])
        .args(["-c", "tag.gpgSign=false", "-c", "commit.gpgSign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn source() -> (tempfile::TempDir, GitSource) {
    let cache = tempfile::tempdir().unwrap();
    let s = GitSource::new(GitConfig::new(cache.path().join("mirrors")));
    (cache, s)
}

fn ctx() -> DiscoveryContext {
    DiscoveryContext::new("project", "warehouse")
}

fn sub(url: &str, extra: Json) -> Json {
    let mut v = json!({ "repoURL": url });
    if let (Some(m), Json::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v
}

async fn discover_with(
    s: &GitSource,
    ctx: &DiscoveryContext,
    config: Json,
) -> Result<Vec<DiscoveredCommit>, SourceError> {
    match s.discover_json(ctx, config).await? {
        Discovery::Commits { commits, .. } => Ok(commits),
        other => panic!("not commits: {other:?}"),
    }
}

async fn commits(s: &GitSource, config: Json) -> Vec<DiscoveredCommit> {
    match discover_with(s, &ctx(), config.clone()).await {
        Ok(c) => c,
        Err(e) => panic!("discovery of {config} failed: {e} ({:?})", e.kind),
    }
}

async fn error(s: &GitSource, config: Json) -> SourceError {
    match discover_with(s, &ctx(), config.clone()).await {
        Ok(c) => panic!("discovery of {config} succeeded: {c:?}"),
        Err(e) => e,
    }
}

fn ids(c: &[DiscoveredCommit]) -> Vec<&str> {
    c.iter().map(|c| c.id.as_str()).collect()
}

fn tags(c: &[DiscoveredCommit]) -> Vec<&str> {
    c.iter().map(|c| c.tag.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// NewestFromBranch

#[tokio::test]
async fn newest_from_branch_default_branch_with_metadata() {
    let (_root, repo) = Repo::file("branch");
    let c1 = repo.commit(&[("a.txt", "1")], "first");
    let long = format!("{}\n\nbody text", "s".repeat(100));
    let c2 = repo.commit_as(("Bob Builder", "bob@example.com"), &[("a.txt", "2")], &long);
    let c3 = repo.commit(&[("b.txt", "1")], "third: subject line\n\nwith a body");
    repo.push();
    let (_cache, s) = source();

    let found = commits(&s, sub(&repo.url, json!({}))).await;
    assert_eq!(ids(&found), [&c3, &c2, &c1]);
    let top = &found[0];
    assert_eq!(top.branch, "", "the default branch is recorded as empty");
    assert_eq!(top.tag, "");
    assert_eq!(top.subject, "third: subject line");
    assert_eq!(top.author, "Alice Author <alice@example.com>");
    assert_eq!(top.committer, "Carol Committer <carol@example.com>");
    assert_eq!(
        top.creator_date
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rfc3339(T0 + 180)
    );
    assert_eq!(found[1].subject, format!("{}...", "s".repeat(80)));
    assert_eq!(found[1].author, "Bob Builder <bob@example.com>");

    // The Discovery names the repository.
    match s
        .discover_json(&ctx(), sub(&repo.url, json!({})))
        .await
        .unwrap()
    {
        Discovery::Commits { repo_url, .. } => assert_eq!(repo_url, repo.url),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn newest_from_branch_named_branch_since_and_limit() {
    let (_root, repo) = Repo::file("named");
    let m1 = repo.commit(&[("a", "1")], "m1");
    repo.git(&["checkout", "-q", "-b", "release/v1"], &[]);
    let r1 = repo.commit(&[("a", "r1")], "r1");
    let r2 = repo.commit(&[("a", "r2")], "r2");
    let r3 = repo.commit(&[("a", "r3")], "r3");
    repo.git(&["checkout", "-q", "main"], &[]);
    let m2 = repo.commit(&[("b", "1")], "m2");
    repo.push();
    let (_cache, s) = source();

    let main = commits(&s, sub(&repo.url, json!({}))).await;
    assert_eq!(ids(&main), [&m2, &m1]);
    let rel = commits(&s, sub(&repo.url, json!({"branch": "release/v1"}))).await;
    assert_eq!(ids(&rel), [&r3, &r2, &r1, &m1]);
    assert!(rel.iter().all(|c| c.branch == "release/v1"));

    let two = commits(
        &s,
        sub(
            &repo.url,
            json!({"branch": "release/v1", "discoveryLimit": 2}),
        ),
    )
    .await;
    assert_eq!(ids(&two), [&r3, &r2]);

    // `since`: r2 was committed at T0 + 180; commits older than that stop the walk.
    let since = commits(
        &s,
        sub(
            &repo.url,
            json!({"branch": "release/v1", "since": rfc3339(T0 + 180)}),
        ),
    )
    .await;
    assert_eq!(ids(&since), [&r3, &r2]);

    let e = error(&s, sub(&repo.url, json!({"branch": "nope"}))).await;
    assert_eq!(e.kind, SourceErrorKind::NotFound, "{e}");
    assert!(e.message.contains("nope"), "{e}");
}

#[tokio::test]
async fn path_filters_with_every_selector_kind() {
    let (_root, repo) = Repo::file("paths");
    let root = repo.commit(&[("README.md", "r"), ("apps/web/values.yaml", "1")], "root");
    let web = repo.commit(&[("apps/web/values.yaml", "2")], "web");
    let api = repo.commit(&[("apps/api/deploy.yaml", "1")], "api");
    let docs = repo.commit(&[("docs/guide.md", "1")], "docs");
    let both = repo.commit(
        &[("docs/more.md", "1"), ("charts/x/Chart.yaml", "1")],
        "both",
    );
    let del = repo.commit(&[("apps/api/deploy.yaml", "")], "delete api");
    repo.push();
    let (_cache, s) = source();
    let find = |extra: Json| {
        let s = &s;
        let url = repo.url.clone();
        async move { commits(s, sub(&url, extra)).await }
    };

    // Exact base path: the path or anything under it (not `apps/website`).
    let f = find(json!({"includePaths": ["apps/web"]})).await;
    assert_eq!(ids(&f), [&web, &root], "root commits count all their files");
    let f = find(json!({"includePaths": ["apps"]})).await;
    assert_eq!(ids(&f), [&del, &api, &web, &root], "deletions are changes");
    // glob: with `**` and `*`.
    let f = find(json!({"includePaths": ["glob:**/*.yaml"]})).await;
    assert_eq!(ids(&f), [&del, &both, &api, &web, &root]);
    let f = find(json!({"includePaths": ["glob:apps/*/deploy.yaml"]})).await;
    assert_eq!(ids(&f), [&del, &api]);
    // regex: and regexp: are unanchored.
    let f = find(json!({"includePaths": ["regex:\\.md$"]})).await;
    assert_eq!(ids(&f), [&both, &docs, &root]);
    let f = find(json!({"includePaths": ["regexp:guide"]})).await;
    assert_eq!(ids(&f), [&docs]);
    // Excludes: a commit qualifies when ANY changed path is not excluded.
    let f = find(json!({"excludePaths": ["docs"]})).await;
    assert_eq!(ids(&f), [&del, &both, &api, &web, &root]);
    let f = find(json!({"excludePaths": ["glob:**/*.md", "apps/api"]})).await;
    assert_eq!(ids(&f), [&both, &web, &root]);
    let f = find(json!({"includePaths": ["apps"], "excludePaths": ["regex:^apps/api/"]})).await;
    assert_eq!(ids(&f), [&web, &root]);
    // With a limit, filtering continues past non-matching commits.
    let f = find(json!({"includePaths": ["apps/web"], "discoveryLimit": 1})).await;
    assert_eq!(ids(&f), [&web]);

    let e = error(&s, sub(&repo.url, json!({"includePaths": ["regex:("]}))).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
    assert!(e.message.contains("includePaths"), "{e}");
    let e = error(&s, sub(&repo.url, json!({"excludePaths": ["glob:a[b"]}))).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig);
    assert!(e.message.contains("excludePaths"), "{e}");
}

#[tokio::test]
async fn expression_filter_on_commits() {
    let (_root, repo) = Repo::file("exprc");
    let c1 = repo.commit(&[("a", "1")], "feat: one");
    let c2 = repo.commit_as(
        ("Bot", "bot@example.com"),
        &[("a", "2")],
        "chore: bump [skip ci]",
    );
    let c3 = repo.commit(&[("a", "3")], "fix: three");
    repo.push();
    let (_cache, s) = source();
    let with = |e: &str| sub(&repo.url, json!({ "expressionFilter": e }));

    let f = commits(&s, with("!(subject contains 'skip ci')")).await;
    assert_eq!(ids(&f), [&c3, &c1]);
    let f = commits(&s, with("author == 'Bot <bot@example.com>'")).await;
    assert_eq!(ids(&f), [&c2]);
    let f = commits(
        &s,
        with("committer startsWith 'Carol' && subject startsWith 'fix'"),
    )
    .await;
    assert_eq!(ids(&f), [&c3]);
    let f = commits(&s, with(&format!("id == '{c1}'"))).await;
    assert_eq!(ids(&f), [&c1]);
    let f = commits(&s, with(&format!("commitDate >= '{}'", rfc3339(T0 + 120)))).await;
    assert_eq!(ids(&f), [&c3, &c2]);
    // ParseBool-able strings are accepted.
    let f = commits(&s, with("'true'")).await;
    assert_eq!(f.len(), 3);
    let f = commits(&s, with("'0'")).await;
    assert!(f.is_empty());
    // As Kargo: numbers 1 and 0 read as booleans; dates are times with Go's methods.
    let f = commits(&s, with("1")).await;
    assert_eq!(f.len(), 3);
    let f = commits(&s, with("0")).await;
    assert!(f.is_empty());
    let year = chrono::DateTime::from_timestamp(T0, 0)
        .unwrap()
        .format("%Y")
        .to_string();
    let f = commits(&s, with(&format!("commitDate.Year() >= {year}"))).await;
    assert_eq!(f.len(), 3);
    let f = commits(&s, with(&format!("commitDate.Year() > {year}"))).await;
    assert!(f.is_empty());
    let f = commits(
        &s,
        with(&format!("commitDate.After(date('{}'))", rfc3339(T0 + 120))),
    )
    .await;
    assert_eq!(ids(&f), [&c3]);
    let e = error(&s, with("2")).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{e}");

    let e = error(&s, with("'maybe'")).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{e}");
    assert!(e.message.contains("expressionFilter"), "{e}");
    let e = error(&s, with("subject contains (")).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{e}");
    assert!(e.message.contains("expressionFilter"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Tag strategies

/// Tags: v1.0.0 (lightweight), 1.2 (lightweight), v1.10.0 (annotated, tagged late),
/// v2.0.0-rc.1 (annotated), 2.0.0 (lightweight), release-b and release-a (lightweight, same
/// commit date), plus a commit with no tag.
struct Tagged {
    _root: tempfile::TempDir,
    repo: Repo,
    ids: HashMap<&'static str, String>,
}

fn tagged() -> Tagged {
    let (root, repo) = Repo::file("tags");
    let mut ids = HashMap::new();
    ids.insert("v1.0.0", repo.commit(&[("app/a", "1")], "one"));
    repo.tag("v1.0.0");
    ids.insert("1.2", repo.commit(&[("docs/x.md", "1")], "one-two"));
    repo.tag("1.2");
    ids.insert("v1.10.0", repo.commit(&[("app/a", "2")], "one-ten"));
    // Tagged much later than its commit (and after every other tag).
    repo.annotated("v1.10.0", "release 1.10\n\nnotes", T0 + 100_000);
    ids.insert("v2.0.0-rc.1", repo.commit(&[("app/a", "3")], "rc"));
    repo.annotated("v2.0.0-rc.1", "candidate", T0 + 300);
    ids.insert("2.0.0", repo.commit(&[("app/b", "1")], "two"));
    repo.tag("2.0.0");
    let same = repo.commit(&[("docs/y.md", "1")], "same date");
    repo.tag("release-a");
    repo.tag("release-b");
    ids.insert("release-a", same.clone());
    ids.insert("release-b", same);
    repo.commit(&[("c", "1")], "untagged");
    repo.push();
    Tagged {
        _root: root,
        repo,
        ids,
    }
}

#[tokio::test]
async fn semver_lexical_and_newest_tag_strategies() {
    let t = tagged();
    let (_cache, s) = source();
    let url = &t.repo.url;
    let strat = |name: &str, extra: Json| {
        let mut v = sub(url, json!({ "commitSelectionStrategy": name }));
        if let (Some(m), Json::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    };

    // SemVer: strict by default (drops `1.2`), prereleases only with a matching constraint.
    let f = commits(&s, strat("SemVer", json!({}))).await;
    assert_eq!(tags(&f), ["2.0.0", "v2.0.0-rc.1", "v1.10.0", "v1.0.0"]);
    let f = commits(&s, strat("SemVer", json!({"strictSemvers": false}))).await;
    assert_eq!(
        tags(&f),
        ["2.0.0", "v2.0.0-rc.1", "v1.10.0", "1.2", "v1.0.0"]
    );
    let f = commits(&s, strat("SemVer", json!({"semverConstraint": "^1.0"}))).await;
    assert_eq!(tags(&f), ["v1.10.0", "v1.0.0"]);
    let f = commits(
        &s,
        strat(
            "SemVer",
            json!({"ignoreTagsRegexes": ["-rc"], "discoveryLimit": 2}),
        ),
    )
    .await;
    assert_eq!(tags(&f), ["2.0.0", "v1.10.0"]);
    let f = commits(&s, strat("SemVer", json!({"allowTagsRegexes": ["^v"]}))).await;
    assert_eq!(tags(&f), ["v2.0.0-rc.1", "v1.10.0", "v1.0.0"]);
    // Annotated tags are dereferenced to their commit; metadata is the commit's.
    let ten = f.iter().find(|c| c.tag == "v1.10.0").unwrap();
    assert_eq!(ten.id, t.ids["v1.10.0"]);
    assert_eq!(ten.subject, "one-ten");
    assert_eq!(ten.author, "Alice Author <alice@example.com>");
    assert_eq!(ten.branch, "");
    assert_eq!(
        ten.creator_date.unwrap().timestamp(),
        T0 + 100_000,
        "annotated: the tagger's date"
    );
    let one = f.iter().find(|c| c.tag == "v1.0.0").unwrap();
    assert_eq!(one.id, t.ids["v1.0.0"]);
    assert_eq!(
        one.creator_date.unwrap().timestamp(),
        T0 + 60,
        "lightweight: the commit's date"
    );

    // Lexical: byte-wise descending.
    let f = commits(&s, strat("Lexical", json!({}))).await;
    assert_eq!(
        tags(&f),
        [
            "v2.0.0-rc.1",
            "v1.10.0",
            "v1.0.0",
            "release-b",
            "release-a",
            "2.0.0",
            "1.2"
        ]
    );
    let f = commits(
        &s,
        strat("Lexical", json!({"allowTagsRegexes": ["^release-"]})),
    )
    .await;
    assert_eq!(tags(&f), ["release-b", "release-a"]);
    assert_eq!(f[0].id, t.ids["release-b"]);

    // NewestTag: creator date descending, ties by name descending.
    let f = commits(&s, strat("NewestTag", json!({}))).await;
    assert_eq!(
        tags(&f),
        [
            "v1.10.0",
            "release-b",
            "release-a",
            "v2.0.0-rc.1",
            "2.0.0",
            "1.2",
            "v1.0.0"
        ],
        "v2.0.0-rc.1 was tagged at the commit date of 2.0.0: the tie goes by name"
    );
    let f = commits(
        &s,
        strat(
            "NewestTag",
            json!({"discoveryLimit": 3, "ignoreTagsRegexes": ["^v"]}),
        ),
    )
    .await;
    assert_eq!(tags(&f), ["release-b", "release-a", "2.0.0"]);

    // Path filters apply to the tagged commit.
    let f = commits(
        &s,
        strat(
            "SemVer",
            json!({"includePaths": ["app"], "strictSemvers": false}),
        ),
    )
    .await;
    assert_eq!(tags(&f), ["2.0.0", "v2.0.0-rc.1", "v1.10.0", "v1.0.0"]);
    let f = commits(
        &s,
        strat("NewestTag", json!({"includePaths": ["glob:docs/*.md"]})),
    )
    .await;
    assert_eq!(tags(&f), ["release-b", "release-a", "1.2"]);
    let f = commits(
        &s,
        strat(
            "Lexical",
            json!({"excludePaths": ["regex:^docs/"], "discoveryLimit": 2}),
        ),
    )
    .await;
    assert_eq!(tags(&f), ["v2.0.0-rc.1", "v1.10.0"]);

    let e = error(&s, strat("SemVer", json!({"semverConstraint": "~>"}))).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{e}");
    assert!(e.message.contains("semverConstraint"), "{e}");
    let e = error(&s, strat("Lexical", json!({"ignoreTagsRegexes": ["("]}))).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{e}");
    assert!(e.message.contains("ignoreTagsRegexes"), "{e}");
}

#[tokio::test]
async fn expression_filter_on_tags() {
    let t = tagged();
    let (_cache, s) = source();
    let with = |e: &str| {
        sub(
            &t.repo.url,
            json!({"commitSelectionStrategy": "Lexical", "expressionFilter": e}),
        )
    };
    let f = commits(&s, with("tagger != ''")).await;
    assert_eq!(tags(&f), ["v2.0.0-rc.1", "v1.10.0"]);
    let f = commits(
        &s,
        with("tagger == 'Tom Tagger <tom@example.com>' && annotation contains 'release'"),
    )
    .await;
    assert_eq!(tags(&f), ["v1.10.0"]);
    let f = commits(&s, with("tag startsWith 'release-' || subject == 'two'")).await;
    assert_eq!(tags(&f), ["release-b", "release-a", "2.0.0"]);
    let f = commits(&s, with(&format!("creatorDate > '{}'", rfc3339(T0 + 1000)))).await;
    assert_eq!(tags(&f), ["v1.10.0"]);
    let year = chrono::DateTime::from_timestamp(T0, 0)
        .unwrap()
        .format("%Y")
        .to_string();
    let f = commits(
        &s,
        with(&format!("creatorDate.Year() >= {year} && tag == 'v1.10.0'")),
    )
    .await;
    assert_eq!(tags(&f), ["v1.10.0"]);
    let id = &t.ids["1.2"];
    let f = commits(
        &s,
        with(&format!(
            "id == '{id}' && author contains 'alice' && committer contains 'carol'"
        )),
    )
    .await;
    assert_eq!(tags(&f), ["1.2"]);
    let e = error(&s, with("tag")).await;
    assert_eq!(e.kind, SourceErrorKind::InvalidConfig, "{e}");
}

// ---------------------------------------------------------------------------------------
// The ls-remote short-circuit

#[tokio::test]
async fn short_circuit_skips_the_fetch_until_a_ref_moves() {
    let (_root, repo) = Repo::file("short");
    let c1 = repo.commit(&[("a", "1")], "one");
    repo.tag("v1.0.0");
    repo.push();
    let (_cache, s) = source();
    let branch = sub(&repo.url, json!({}));
    let semver = sub(&repo.url, json!({"commitSelectionStrategy": "SemVer"}));

    let first = commits(&s, branch.clone()).await;
    assert_eq!(ids(&first), [&c1]);
    assert_eq!(s.stats().fetches, 1);
    let again = commits(&s, branch.clone()).await;
    assert_eq!(again, first);
    let st = s.stats();
    assert_eq!((st.ls_remotes, st.fetches, st.short_circuits), (2, 1, 1));

    // Another configuration of the same repository is observed separately (its own
    // ls-remote); the mirror holds the tip already, so nothing is fetched.
    let limited = commits(&s, sub(&repo.url, json!({"discoveryLimit": 1}))).await;
    assert_eq!(ids(&limited), [&c1]);
    let st = s.stats();
    assert_eq!((st.ls_remotes, st.fetches, st.fetches_skipped), (3, 1, 1));

    // A new commit moves the tip: fetched and found.
    let c2 = repo.commit(&[("a", "2")], "two");
    repo.push();
    let moved = commits(&s, branch.clone()).await;
    assert_eq!(ids(&moved), [&c2, &c1]);
    assert_eq!(s.stats().fetches, 2);

    // Tags: same for the tag list.
    let t1 = commits(&s, semver.clone()).await;
    assert_eq!(tags(&t1), ["v1.0.0"]);
    let f = s.stats().fetches;
    let t2 = commits(&s, semver.clone()).await;
    assert_eq!(t2, t1);
    assert_eq!(s.stats().fetches, f, "unchanged tags are not fetched");
    // A new commit on the branch does not move the (name-filtered) tags.
    repo.commit(&[("a", "3")], "three");
    repo.push();
    commits(&s, semver.clone()).await;
    assert_eq!(s.stats().fetches, f);
    // A new tag does; so does a tag moved to another commit.
    repo.tag("v1.1.0");
    repo.push();
    let t3 = commits(&s, semver.clone()).await;
    assert_eq!(tags(&t3), ["v1.1.0", "v1.0.0"]);
    assert_eq!(s.stats().fetches, f + 1);
    repo.git(&["tag", "-f", "v1.0.0", &c2], &[]);
    repo.push();
    let t4 = commits(&s, semver.clone()).await;
    assert_eq!(t4[1].id, c2);
    // A deleted tag disappears (the mirror may still hold it; ls-remote is the truth).
    repo.git(&["tag", "-d", "v1.1.0"], &[]);
    repo.push();
    let t5 = commits(&s, semver).await;
    assert_eq!(tags(&t5), ["v1.0.0"]);
    assert_eq!(s.stats().fetches, f + 3);
}

#[tokio::test]
async fn empty_and_missing_repositories() {
    let root = tempfile::tempdir().unwrap();
    let base = format!("file://{}", root.path().display());
    let empty = Repo::new(root.path(), &base, "empty");
    let (_cache, s) = source();
    assert!(commits(&s, sub(&empty.url, json!({}))).await.is_empty());
    assert!(
        commits(
            &s,
            sub(&empty.url, json!({"commitSelectionStrategy": "NewestTag"}))
        )
        .await
        .is_empty()
    );
    let e = error(&s, sub(&format!("{base}/missing.git"), json!({}))).await;
    assert_eq!(e.kind, SourceErrorKind::NotFound, "{e}");
    // Nothing listens on port 9 of the loopback address: a transient network error.
    let e = error(&s, sub("http://127.0.0.1:9/repo.git", json!({}))).await;
    assert_eq!(e.kind, SourceErrorKind::Transient, "{e}");
}

// ---------------------------------------------------------------------------------------
// Smart HTTP with basic auth

fn creds(h: &Http, password: &str) -> DiscoveryContext {
    ctx().with_credentials(Arc::new(StaticCredentials::new().with(
        CredentialKind::Git,
        h.url.clone(),
        h.user.clone(),
        password,
    )))
}

#[tokio::test]
async fn http_with_basic_auth() {
    let Some(h) = http("http_with_basic_auth") else {
        return;
    };
    let repo = Repo::new(&h.root, &h.url, &unique("private-auth"));
    let c1 = repo.commit(&[("a", "1")], "one");
    repo.annotated("v1.0.0", "first release", T0 + 500);
    let c2 = repo.commit(&[("a", "2")], "two");
    repo.push();
    let (_cache, s) = source();
    let good = creds(&h, &h.password);

    let f = discover_with(&s, &good, sub(&repo.url, json!({})))
        .await
        .unwrap();
    assert_eq!(ids(&f), [&c2, &c1]);
    let f = discover_with(
        &s,
        &good,
        sub(&repo.url, json!({"commitSelectionStrategy": "SemVer"})),
    )
    .await
    .unwrap();
    assert_eq!(tags(&f), ["v1.0.0"]);
    assert_eq!(f[0].id, c1);
    let again = discover_with(&s, &good, sub(&repo.url, json!({})))
        .await
        .unwrap();
    assert_eq!(ids(&again), [&c2, &c1]);
    assert_eq!(s.stats().short_circuits, 1);

    // Wrong password, and no credentials at all: Unauthorized, with no secret in the text.
    let wrong = "wrong-password-4711";
    for ctx in [creds(&h, wrong), ctx()] {
        let e = discover_with(&s, &ctx, sub(&repo.url, json!({})))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SourceErrorKind::Unauthorized, "{e}");
        let text = format!("{e} {e:?} {:?}", std::error::Error::source(&e));
        assert!(
            !text.contains(wrong) && !text.contains(&h.password),
            "{text}"
        );
    }

    // A repository that does not exist.
    let missing = format!("{}/{}.git", h.url, unique("missing"));
    let e = discover_with(&s, &good, sub(&missing, json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, SourceErrorKind::NotFound, "{e}");
}

/// A git subscription over HTTPS with a self-signed certificate (`TEST_GIT_HTTPS_URL`,
/// the same repositories as smart HTTP): refused with a certificate error, discovered with
/// `insecureSkipTLSVerify: true`.
#[tokio::test]
async fn https_with_a_self_signed_certificate_needs_insecure_skip_tls_verify() {
    let test = "https_with_a_self_signed_certificate_needs_insecure_skip_tls_verify";
    let (Some(root), Some(https)) = (
        server_env(test, "TEST_GIT_ROOT"),
        server_env(test, "TEST_GIT_HTTPS_URL"),
    ) else {
        return;
    };
    let repo = Repo::new(Path::new(&root), &https, &unique("tls"));
    let c1 = repo.commit(&[("a", "1")], "one");
    repo.push();
    let (_cache, s) = source();

    let e = error(&s, sub(&repo.url, json!({}))).await;
    let text = format!("{e} {:?}", std::error::Error::source(&e));
    assert!(
        text.to_ascii_lowercase().contains("certificate"),
        "not a certificate error: {text}"
    );
    assert_ne!(e.kind, SourceErrorKind::NotFound, "{e}");

    let f = commits(&s, sub(&repo.url, json!({"insecureSkipTLSVerify": true}))).await;
    assert_eq!(ids(&f), [&c1]);
    // The flag is per subscription: without it the same source still verifies.
    let e = error(&s, sub(&repo.url, json!({}))).await;
    assert!(
        e.to_string().to_ascii_lowercase().contains("certificate"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// The shared conformance suite over smart HTTP, SemVer strategy

struct HttpBackend {
    http: Http,
    source: Arc<GitSource>,
    _cache: tempfile::TempDir,
    repos: Mutex<HashMap<String, Arc<Mutex<Repo>>>>,
}

#[async_trait]
impl conformance::Backend for HttpBackend {
    fn source(&self) -> Arc<dyn DynSource> {
        self.source.clone()
    }

    fn context(&self) -> DiscoveryContext {
        creds(&self.http, &self.http.password)
    }

    async fn create_repository(&self, name: &str) -> String {
        let repo = Repo::new(
            &self.http.root,
            &self.http.url,
            &unique(&format!("private-{name}")),
        );
        repo.commit(&[("README.md", "initial")], "initial commit");
        repo.push();
        let url = repo.url.clone();
        self.repos
            .lock()
            .unwrap()
            .insert(url.clone(), Arc::new(Mutex::new(repo)));
        url
    }

    async fn publish(&self, repo: &str, versions: &[&str]) {
        let r = self.repos.lock().unwrap()[repo].clone();
        let r = r.lock().unwrap();
        for (i, v) in versions.iter().enumerate() {
            r.commit(&[("VERSION", v)], &format!("release {v}"));
            if i % 2 == 0 {
                r.tag(v);
            } else {
                let t = r.tick();
                r.annotated(v, &format!("version {v}"), t);
            }
        }
        r.push();
    }

    fn subscription(&self, repo: &str, constraint: Option<&str>, limit: Option<u32>) -> Json {
        let mut v = json!({"repoURL": repo, "commitSelectionStrategy": "SemVer"});
        if let Some(c) = constraint {
            v["semverConstraint"] = json!(c);
        }
        if let Some(l) = limit {
            v["discoveryLimit"] = json!(l);
        }
        v
    }

    fn missing_repository(&self) -> Json {
        self.subscription(
            &format!("{}/{}.git", self.http.url, unique("missing")),
            None,
            None,
        )
    }

    async fn bad_credentials(&self) -> Option<(Json, DiscoveryContext)> {
        let url = self.create_repository("badcreds").await;
        Some((
            self.subscription(&url, None, None),
            creds(&self.http, "not-the-password"),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_http_semver() {
    let Some(http) = http("conformance_http_semver") else {
        return;
    };
    let (cache, source) = source();
    let backend = HttpBackend {
        http,
        source: Arc::new(source),
        _cache: cache,
        repos: Mutex::new(HashMap::new()),
    };
    conformance::run("git-http", &backend).await;
}

/// `GitSource` is a `Source` of kind `git` configured by a `GitSubscription`.
#[test]
fn kind_is_git() {
    assert_eq!(<GitSource as Source>::KIND, "git");
}

// ---------------------------------------------------------------------------------------
// git:// and ssh://

#[tokio::test]
async fn git_daemon_and_ssh_transports() {
    let Some(root) = server_env("git_daemon_and_ssh_transports", "TEST_GIT_ROOT") else {
        return;
    };
    let root = PathBuf::from(root);
    let (_cache, s) = source();

    if let Some(daemon) = server_env("git_daemon_and_ssh_transports", "TEST_GIT_DAEMON_URL") {
        let repo = Repo::new(&root, &daemon, &unique("daemon"));
        let c1 = repo.commit(&[("a", "1")], "one");
        repo.tag("v0.1.0");
        repo.push();
        let f = commits(&s, sub(&repo.url, json!({}))).await;
        assert_eq!(ids(&f), [&c1]);
        let f = commits(
            &s,
            sub(&repo.url, json!({"commitSelectionStrategy": "SemVer"})),
        )
        .await;
        assert_eq!(tags(&f), ["v0.1.0"]);
    }

    let (Some(ssh), Some(key), Some(known)) = (
        server_env("git_daemon_and_ssh_transports", "TEST_GIT_SSH_URL"),
        server_env("git_daemon_and_ssh_transports", "TEST_GIT_SSH_KEY"),
        server_env("git_daemon_and_ssh_transports", "TEST_GIT_SSH_KNOWN_HOSTS"),
    ) else {
        return;
    };
    let repo = Repo::new(&root, &ssh, &unique("ssh"));
    let c1 = repo.commit(&[("a", "1")], "one");
    repo.push();
    let creds = kargo_core::secret::Credentials::ssh_key(
        std::fs::read_to_string(key).unwrap(),
        Some(std::fs::read_to_string(known).unwrap()),
    );
    let ctx = ctx().with_credentials(Arc::new(StaticCredentials::new().with_credentials(
        CredentialKind::Git,
        ssh.clone(),
        creds,
    )));
    let f = discover_with(&s, &ctx, sub(&repo.url, json!({})))
        .await
        .unwrap();
    assert_eq!(ids(&f), [&c1]);
}

/// 57 subscriptions with distinct `includePaths` on one repository: after a push of three
/// commits touching three apps, each subscription walks only the three new commits, each
/// new commit's paths are diffed once for all 57, exactly the three affected subscriptions
/// see a new commit, and every answer equals a discovery from scratch. A force push (the
/// old tip no longer an ancestor) walks the whole history again.
#[tokio::test]
async fn many_path_filtered_subscriptions_share_diffs_and_walk_only_new_commits() {
    let (_root, repo) = Repo::file("monorepo");
    const APPS: usize = 57;
    let files: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("apps/app-{i}/values.yaml"), "v0".to_owned()))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(&refs, "root");
    for round in 1..=3 {
        for i in 0..APPS {
            let path = format!("apps/app-{i}/values.yaml");
            repo.commit(
                &[(path.as_str(), &format!("v{round}"))],
                &format!("app-{i} v{round}"),
            );
        }
    }
    repo.push();
    let (_cache, s) = source();
    let config = |i: usize| {
        sub(
            &repo.url,
            json!({"includePaths": [format!("apps/app-{i}")], "discoveryLimit": 2}),
        )
    };
    let mut before = Vec::new();
    for i in 0..APPS {
        before.push(commits(&s, config(i)).await);
    }
    let first = s.stats();
    // Each walk stops at its second match: together they walk rounds 3 and 2 (114
    // commits, 4,902 times in all), and each of those commits is diffed once.
    assert_eq!(first.tree_diffs, 2 * APPS as u64, "{first:?}");
    assert!(first.commits_walked > 40 * first.tree_diffs, "{first:?}");

    // One push of three commits, touching apps 3, 17 and 40.
    let touched = [3, 17, 40];
    let mut new_ids = Vec::new();
    for i in touched {
        let path = format!("apps/app-{i}/values.yaml");
        new_ids.push(repo.commit(&[(path.as_str(), "v4")], &format!("app-{i} v4")));
    }
    repo.push();
    let mut after = Vec::new();
    for i in 0..APPS {
        after.push(commits(&s, config(i)).await);
    }
    let second = s.stats();
    assert_eq!(
        second.tree_diffs - first.tree_diffs,
        3,
        "one diff per new commit"
    );
    assert_eq!(
        second.commits_walked - first.commits_walked,
        3 * APPS as u64,
        "every subscription walks the three new commits only"
    );
    for i in 0..APPS {
        if let Some(k) = touched.iter().position(|t| *t == i) {
            assert_eq!(after[i][0].id, new_ids[k], "app-{i} sees its new commit");
            assert_eq!(after[i][1], before[i][0], "and keeps the previous newest");
        } else {
            assert_eq!(after[i], before[i], "app-{i} is unchanged");
        }
    }
    // Each incremental answer is what a discovery from scratch finds.
    s.clear_observations();
    for (i, found) in after.iter().enumerate() {
        assert_eq!(&commits(&s, config(i)).await, found, "app-{i} from scratch");
    }

    // A force push that drops the last commit: the old tip is not an ancestor any more,
    // so the walk starts over and app-40's dropped commit is gone.
    repo.git(&["reset", "-q", "--hard", "HEAD~1"], &[]);
    repo.push();
    let walked = s.stats().commits_walked;
    let forced = commits(&s, config(40)).await;
    assert_ne!(
        forced[0].id, new_ids[2],
        "the dropped commit is not discovered"
    );
    assert_eq!(forced[0], before[40][0]);
    assert!(
        s.stats().commits_walked - walked > 3,
        "a force push walks more than the new commits"
    );
}

/// Discoveries of one repository that may use a view taken since the start of a pass
/// (`DiscoveryContext::fresh_after`, as the service sets it) share one `ls-remote`, and the
/// ones after the first find the tip in the mirror and fetch nothing; a view taken before
/// the pass started is not used, nor one taken with other credentials.
#[tokio::test]
async fn one_look_at_the_remote_per_pass_for_every_subscription() {
    let (_root, repo) = Repo::file("onepass");
    repo.commit(&[("apps/a/x", "1"), ("apps/b/x", "1")], "root");
    repo.push();
    let (_cache, s) = source();
    let config = |app: &str| sub(&repo.url, json!({"includePaths": [format!("apps/{app}")]}));
    let apps = ["a", "b"];
    let pass = |at: std::time::Instant| ctx().with_fresh_after(at);

    let first = std::time::Instant::now();
    for app in apps {
        discover_with(&s, &pass(first), config(app)).await.unwrap();
    }
    let st = s.stats();
    assert_eq!((st.ls_remotes, st.shared_ls_remotes), (1, 1), "{st:?}");
    assert_eq!((st.fetches, st.fetches_skipped), (1, 1), "{st:?}");

    // A push, then a new pass: the view of the last pass is too old; one new look.
    let c2 = repo.commit(&[("apps/b/x", "2")], "b two");
    repo.push();
    let second = std::time::Instant::now();
    let mut found = Vec::new();
    for app in apps {
        found.push(discover_with(&s, &pass(second), config(app)).await.unwrap());
    }
    assert_eq!(found[1][0].id, c2, "the pass sees the push");
    let st = s.stats();
    assert_eq!((st.ls_remotes, st.shared_ls_remotes), (2, 2), "{st:?}");
    assert_eq!((st.fetches, st.fetches_skipped), (2, 2), "{st:?}");

    // Other credentials for the same repository: their own look.
    let other = pass(second).with_credentials(Arc::new(StaticCredentials::new().with(
        CredentialKind::Git,
        repo.url.clone(),
        "someone",
        "else",
    )));
    discover_with(&s, &other, config("a")).await.unwrap();
    assert_eq!(s.stats().ls_remotes, 3);
    // Without fresh_after (a direct refresh), always a new look.
    discover_with(&s, &ctx(), config("a")).await.unwrap();
    assert_eq!(s.stats().ls_remotes, 4);
}

/// Issue 19: promotions make depth-1 mirrors, and a Warehouse's subscription shares their
/// cache directory. Over the real smart-HTTP server: a checkout with an empty cache leaves
/// a shallow mirror and pushes a promotion from it; a subscription on the same cache then
/// deepens the mirror and discovers the whole history, promotion included.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_deepens_the_shallow_mirror_a_promotion_left() {
    let Some(h) = http("a_subscription_deepens_the_shallow_mirror_a_promotion_left") else {
        return;
    };
    let repo = Repo::new(&h.root, &h.url, &unique("shallow"));
    let mut history: Vec<String> = (0..4)
        .map(|i| repo.commit(&[("apps/a/values.yaml", &format!("tag: {i}\n"))], "release"))
        .collect();
    repo.push();
    let cache = tempfile::tempdir().unwrap();
    let mirrors = cache.path().join("mirrors");
    let auth = kargo_git::StaticAuth::new().with(
        h.url.clone(),
        kargo_git::GitAuth::Basic {
            username: h.user.clone(),
            password: kargo_git::Secret::new(h.password.clone()),
        },
    );
    let git = kargo_git::Git::new(GitConfig::new(&mirrors), Arc::new(auth));
    let url = repo.url.clone();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("checkout");
    let promoted = tokio::task::spawn_blocking(move || {
        let mirror = git.mirror(&url).unwrap();
        let checkout = mirror
            .checkout(
                &kargo_git::CheckoutTarget::Branch("main".into()),
                &dest,
                &kargo_git::CheckoutOptions::default(),
            )
            .unwrap();
        assert!(mirror.is_shallow().unwrap(), "a cold checkout is shallow");
        checkout
            .materialize(std::path::Path::new("apps/a/values.yaml"))
            .unwrap();
        std::fs::write(dest.join("apps/a/values.yaml"), "tag: promoted\n").unwrap();
        let who = kargo_git::Signature::new("Kargo", "kargo@example.com");
        checkout.commit("promote", &who, &who).unwrap();
        let pushed = checkout.push(None, false, None).unwrap();
        assert!(
            mirror.is_shallow().unwrap(),
            "pushing keeps the mirror shallow"
        );
        pushed.commit.to_string()
    })
    .await
    .unwrap();
    history.push(promoted);
    history.reverse();

    let s = GitSource::new(GitConfig::new(&mirrors));
    let found = discover_with(&s, &creds(&h, &h.password), sub(&repo.url, json!({})))
        .await
        .unwrap();
    assert_eq!(
        ids(&found),
        history.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let shallow_file = std::fs::read_dir(&mirrors)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "git"))
        .map(|p| p.join("shallow"))
        .next()
        .unwrap();
    assert!(
        !shallow_file.exists(),
        "the subscription unshallowed the mirror"
    );
}
