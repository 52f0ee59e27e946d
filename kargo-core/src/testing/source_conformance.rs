//! The conformance suite every artifact source backend runs.
//!
//! A backend's test implements [`Backend`] over its real server (or in-memory store) and
//! calls [`run`]; a failed case panics with the case and what was found. The suite
//! publishes versions through the backend and checks, through the
//! source's [`DynSource`] interface (the way a Warehouse calls it):
//!
//! 1. an empty repository gives an empty list;
//! 2. results are newest first (highest semantic version first);
//! 3. `discoveryLimit` truncates;
//! 4. a semver constraint filters;
//! 5. two discoveries of the same state give the same answer (determinism);
//! 6. no artifact appears twice;
//! 7. a repository that does not exist gives [`SourceErrorKind::NotFound`];
//! 8. wrong credentials give [`SourceErrorKind::Unauthorized`] (not a transient error).

#![allow(clippy::print_stderr, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use crate::source::{Discovery, DiscoveryContext, DynSource, SourceErrorKind};
use async_trait::async_trait;
use serde_json::Value as Json;

/// What a backend needs to offer the suite.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The source under test.
    fn source(&self) -> Arc<dyn DynSource>;

    /// The context for discoveries that should succeed (with valid credentials, if the
    /// backend needs any).
    fn context(&self) -> DiscoveryContext;

    /// Creates a new, empty repository named after `name` (unique per call) and returns a
    /// handle the backend understands (usually its repository URL).
    async fn create_repository(&self, name: &str) -> String;

    /// Publishes `versions` (semantic versions such as `1.2.0`) to `repo`, in the order
    /// given (the last one is the most recent).
    async fn publish(&self, repo: &str, versions: &[&str]);

    /// The subscription configuration (the JSON a Warehouse holds under the source's kind)
    /// selecting `repo` by semantic version, with an optional constraint and limit.
    fn subscription(&self, repo: &str, constraint: Option<&str>, limit: Option<u32>) -> Json;

    /// A subscription to a repository that does not exist.
    fn missing_repository(&self) -> Json;

    /// A subscription and context whose credentials are wrong, when the backend has
    /// authentication; `None` otherwise (the case is then reported as not applicable).
    async fn bad_credentials(&self) -> Option<(Json, DiscoveryContext)>;
}

/// The versions a discovery found, in order: image tags, chart versions, or commit tags.
pub fn labels(discovery: &Discovery) -> Vec<String> {
    match discovery {
        Discovery::Images { references, .. } => references.iter().map(|r| r.tag.clone()).collect(),
        Discovery::Charts { versions, .. } => versions.clone(),
        Discovery::Commits { commits, .. } => commits
            .iter()
            .map(|c| {
                if c.tag.is_empty() {
                    c.id.clone()
                } else {
                    c.tag.clone()
                }
            })
            .collect(),
        Discovery::Generic { artifacts } => artifacts.iter().map(|a| a.version.clone()).collect(),
    }
}

async fn discover(backend: &dyn Backend, config: Json) -> Vec<String> {
    let ctx = backend.context();
    match backend.source().discover_json(&ctx, config.clone()).await {
        Ok(d) => labels(&d),
        Err(e) => panic!("discovery of {config} failed: {e} ({:?})", e.kind),
    }
}

/// Runs every case against `backend`; `name` prefixes the repositories it creates.
pub async fn run(name: &str, backend: &dyn Backend) {
    // 1. Empty repository.
    let empty = backend.create_repository(&format!("{name}-empty")).await;
    let found = discover(backend, backend.subscription(&empty, None, None)).await;
    assert!(found.is_empty(), "{name}: empty repository gave {found:?}");

    // 2. Newest first, published out of order (1.10.0 is not the last one published, and
    // sorts after 1.2.0 only numerically).
    let repo = backend.create_repository(&format!("{name}-main")).await;
    backend
        .publish(&repo, &["0.9.0", "1.0.0", "1.10.0", "1.2.0", "2.0.0"])
        .await;
    let all = discover(backend, backend.subscription(&repo, None, None)).await;
    assert_eq!(
        all,
        ["2.0.0", "1.10.0", "1.2.0", "1.0.0", "0.9.0"],
        "{name}: newest first"
    );

    // 3. Limits.
    let two = discover(backend, backend.subscription(&repo, None, Some(2))).await;
    assert_eq!(two, ["2.0.0", "1.10.0"], "{name}: discoveryLimit 2");
    let one = discover(backend, backend.subscription(&repo, None, Some(1))).await;
    assert_eq!(one, ["2.0.0"], "{name}: discoveryLimit 1");

    // 4. Filters.
    let filtered = discover(
        backend,
        backend.subscription(&repo, Some(">=1.0.0 <2.0.0"), None),
    )
    .await;
    assert_eq!(
        filtered,
        ["1.10.0", "1.2.0", "1.0.0"],
        "{name}: constraint >=1.0.0 <2.0.0"
    );
    let none = discover(backend, backend.subscription(&repo, Some(">=3"), None)).await;
    assert!(none.is_empty(), "{name}: constraint >=3 gave {none:?}");

    // 5. Determinism.
    let again = discover(backend, backend.subscription(&repo, None, None)).await;
    assert_eq!(
        again, all,
        "{name}: a second discovery of the same state differs"
    );

    // 6. No duplicates (also after publishing more).
    backend.publish(&repo, &["2.1.0"]).await;
    let more = discover(backend, backend.subscription(&repo, None, None)).await;
    assert_eq!(more[0], "2.1.0", "{name}: a new version is first: {more:?}");
    let unique: HashSet<&String> = more.iter().collect();
    assert_eq!(unique.len(), more.len(), "{name}: duplicates in {more:?}");

    // 7. Unknown repository.
    let ctx = backend.context();
    let missing = backend.missing_repository();
    match backend.source().discover_json(&ctx, missing.clone()).await {
        Err(e) => assert_eq!(
            e.kind,
            SourceErrorKind::NotFound,
            "{name}: missing repository {missing}: {e}"
        ),
        Ok(d) => panic!("{name}: missing repository {missing} gave {d:?}"),
    }

    // 8. Bad credentials.
    match backend.bad_credentials().await {
        Some((config, ctx)) => match backend.source().discover_json(&ctx, config.clone()).await {
            Err(e) => {
                assert_eq!(
                    e.kind,
                    SourceErrorKind::Unauthorized,
                    "{name}: bad credentials for {config}: {e}"
                );
            }
            Ok(d) => panic!("{name}: bad credentials for {config} gave {d:?}"),
        },
        None => eprintln!("{name}: no authentication; the bad-credentials case does not apply"),
    }
}
