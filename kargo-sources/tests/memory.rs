//! The in-memory source through the shared conformance suite, for each of its kinds.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use kargo_core::testing::source_conformance as conformance;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use kargo_core::source::{DiscoveryContext, DynSource};
use kargo_sources::memory::{MemorySource, commit, image};
use serde_json::{Value as Json, json};

#[derive(Clone, Copy)]
enum Kind {
    Image,
    Chart,
    Git,
}

struct Backend {
    mem: MemorySource,
    kind: Kind,
    counter: AtomicU32,
}

fn with_options(mut s: Json, field: &str, constraint: Option<&str>, limit: Option<u32>) -> Json {
    if let Some(c) = constraint {
        s[field] = json!(c);
    }
    if let Some(l) = limit {
        s["discoveryLimit"] = json!(l);
    }
    s
}

#[async_trait::async_trait]
impl conformance::Backend for Backend {
    fn source(&self) -> Arc<dyn DynSource> {
        match self.kind {
            Kind::Image => Arc::new(self.mem.images()),
            Kind::Chart => Arc::new(self.mem.charts()),
            Kind::Git => Arc::new(self.mem.git()),
        }
    }

    fn context(&self) -> DiscoveryContext {
        DiscoveryContext::new("p", "w")
    }

    async fn create_repository(&self, name: &str) -> String {
        let repo = format!("mem.example/{name}");
        match self.kind {
            Kind::Image => self
                .mem
                .set_images(&repo, vec![image("latest", "sha256:0")]),
            Kind::Chart => self.mem.set_chart_versions(&repo, "app", vec![]),
            Kind::Git => self.mem.set_commits(&repo, vec![commit("c0", "initial")]),
        }
        repo
    }

    async fn publish(&self, repo: &str, versions: &[&str]) {
        for v in versions {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            match self.kind {
                Kind::Image => self.mem.push_image(repo, image(v, &format!("sha256:{n}"))),
                Kind::Chart => self.mem.push_chart_version(repo, "app", v),
                Kind::Git => {
                    let mut c = commit(&format!("c{}", n + 1), &format!("release {v}"));
                    c.tag = (*v).to_owned();
                    self.mem.push_commit(repo, c);
                }
            }
        }
    }

    fn subscription(&self, repo: &str, constraint: Option<&str>, limit: Option<u32>) -> Json {
        match self.kind {
            Kind::Image => with_options(json!({"repoURL": repo}), "constraint", constraint, limit),
            Kind::Chart => with_options(
                json!({"repoURL": repo, "name": "app"}),
                "semverConstraint",
                constraint,
                limit,
            ),
            Kind::Git => with_options(
                json!({"repoURL": repo, "commitSelectionStrategy": "SemVer"}),
                "semverConstraint",
                constraint,
                limit,
            ),
        }
    }

    fn missing_repository(&self) -> Json {
        self.subscription("mem.example/never-published", None, None)
    }

    async fn bad_credentials(&self) -> Option<(Json, DiscoveryContext)> {
        None
    }
}

async fn run(kind: Kind, name: &str) {
    let backend = Backend {
        mem: MemorySource::new(),
        kind,
        counter: AtomicU32::new(0),
    };
    conformance::run(name, &backend).await;
}

#[tokio::test]
async fn memory_images_conformance() {
    run(Kind::Image, "memory-images").await;
}

#[tokio::test]
async fn memory_charts_conformance() {
    run(Kind::Chart, "memory-charts").await;
}

#[tokio::test]
async fn memory_git_conformance() {
    run(Kind::Git, "memory-git").await;
}

#[tokio::test]
async fn memory_images_follow_the_strategies() {
    let mem = MemorySource::new();
    let repo = "mem.example/strategies";
    let mut old = image("1.10.0", "sha256:a");
    old.created_at = Some("2024-01-01T00:00:00Z".parse().unwrap());
    let mut new = image("1.9.0", "sha256:b");
    new.created_at = Some("2024-02-01T00:00:00Z".parse().unwrap());
    mem.set_images(repo, vec![new, old, image("latest", "sha256:c")]);
    let src = mem.images();
    let ctx = DiscoveryContext::new("p", "w");
    let tags = |cfg: Json| {
        let src = src.clone();
        let ctx = ctx.clone();
        async move { conformance::labels(&src.discover_json(&ctx, cfg).await.unwrap()) }
    };
    assert_eq!(tags(json!({"repoURL": repo})).await, ["1.10.0", "1.9.0"]);
    assert_eq!(
        tags(json!({"repoURL": repo, "imageSelectionStrategy": "Lexical"})).await,
        ["latest", "1.9.0", "1.10.0"]
    );
    assert_eq!(
        tags(json!({"repoURL": repo, "imageSelectionStrategy": "NewestBuild"})).await,
        ["1.9.0", "1.10.0", "latest"]
    );
    assert_eq!(
        tags(json!({"repoURL": repo, "imageSelectionStrategy": "Digest", "constraint": "latest"}))
            .await,
        ["latest"]
    );
    assert_eq!(
        tags(json!({"repoURL": repo, "ignoreTagsRegexes": ["^1\\.10"]})).await,
        ["1.9.0"]
    );
    // Retagging `latest` moves it to the new digest.
    mem.push_image(repo, image("latest", "sha256:d"));
    let d = src
        .discover_json(
            &ctx,
            json!({"repoURL": repo, "imageSelectionStrategy": "Digest", "constraint": "latest"}),
        )
        .await
        .unwrap();
    match d {
        kargo_core::source::Discovery::Images { references, .. } => {
            assert_eq!(references.len(), 1);
            assert_eq!(references[0].digest, "sha256:d");
        }
        other => panic!("{other:?}"),
    }
    let e = src
        .discover_json(&ctx, json!({"repoURL": repo, "constraint": ">>1"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, kargo_core::source::SourceErrorKind::InvalidConfig);
}
