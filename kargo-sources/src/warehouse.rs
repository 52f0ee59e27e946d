//! The Warehouse reconcile algorithm (reference §1.4): run every subscription's source,
//! stop on missing artifacts, honour `freightCreationPolicy` and
//! `freightCreationCriteria`, build Freight from element 0 of each discovery, and
//! de-duplicate by Freight ID.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use kargo_core::expr::{EvalData, ExprEngine, ExprError, OriginSubscriptions, Scope};
use kargo_core::freight::{Chart, GenericArtifact, GitCommit, Image};
use kargo_core::model::{FreightCreationPolicy, Subscription, SubscriptionSource, Warehouse};
use kargo_core::source::{Discovery, DiscoveryContext, SourceError, SourceRegistry};
use kargo_core::{Freight, FreightCollection, FreightId, FreightOrigin, FreightReference};
use serde_json::Value as Json;

/// One subscription's discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionDiscovery {
    /// The subscription's name, if it has one.
    pub name: Option<String>,
    /// The subscription type key (`image`, `chart`, `git` or a generic type).
    pub kind: String,
    /// A human label: the name, or `<kind> <repoURL>`.
    pub label: String,
    /// What the source found, best first.
    pub discovery: Discovery,
}

/// The discoveries of all of a Warehouse's subscriptions, in subscription order.
#[derive(Debug, Clone, PartialEq)]
pub struct WarehouseDiscovery {
    /// The Warehouse's name.
    pub warehouse: String,
    /// The project.
    pub project: String,
    /// One entry per subscription.
    pub subscriptions: Vec<SubscriptionDiscovery>,
    /// When discovery started; Freight built from it records this as `discoveredAt`.
    pub discovered_at: DateTime<Utc>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// No source is registered for a subscription's type.
    #[error("subscription {subscription}: no source registered for type {kind:?}")]
    NoSource {
        /// The subscription label.
        subscription: String,
        /// The type key.
        kind: String,
    },
    /// The subscription could not be encoded as JSON.
    #[error("subscription {subscription}: cannot encode its configuration: {message}")]
    Config {
        /// The subscription label.
        subscription: String,
        /// What went wrong.
        message: String,
    },
    /// The source failed.
    #[error("subscription {subscription}: {source}")]
    Source {
        /// The subscription label.
        subscription: String,
        /// The source's error.
        #[source]
        source: SourceError,
    },
}

/// Why no decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum FreightError {
    /// `freightCreationCriteria.expression` did not compile or evaluate to a boolean.
    #[error("freightCreationCriteria: {0}")]
    Criteria(#[from] ExprError),
}

/// The outcome of [`freight_from`].
#[derive(Debug, Clone, PartialEq)]
pub enum FreightDecision {
    /// New Freight (not yet de-duplicated against the store; see [`dedup_new`]).
    Created(Freight),
    /// A subscription discovered nothing: no Freight (Kargo's `MissingArtifacts`).
    MissingArtifacts {
        /// The label of the first subscription with no results.
        subscription: String,
    },
    /// The policy is `Manual`: nothing is created automatically.
    Manual,
    /// `freightCreationCriteria` evaluated to false.
    CriteriaNotMet,
}

fn label(sub: &Subscription) -> String {
    if let Some(n) = &sub.name {
        return n.clone();
    }
    match &sub.source {
        SubscriptionSource::Image(s) => format!("image {}", s.repo_url),
        SubscriptionSource::Chart(s) if s.name.is_empty() => format!("chart {}", s.repo_url),
        SubscriptionSource::Chart(s) => format!("chart {} {}", s.repo_url, s.name),
        SubscriptionSource::Git(s) => format!("git {}", s.repo_url),
        SubscriptionSource::Generic(g) => g.subscription_type.clone(),
    }
}

fn config_json(sub: &Subscription) -> Result<Json, serde_json::Error> {
    match &sub.source {
        SubscriptionSource::Image(s) => serde_json::to_value(s),
        SubscriptionSource::Chart(s) => serde_json::to_value(s),
        SubscriptionSource::Git(s) => serde_json::to_value(s),
        SubscriptionSource::Generic(g) => Ok(Json::Object(g.config.clone().unwrap_or_default())),
    }
}

/// Runs every subscription's source sequentially, as Kargo does.
///
/// Each source receives a clone of `ctx_template` with the project, Warehouse and
/// subscription name filled in (and no previous discovery), and the subscription's JSON
/// form as its configuration (generic subscriptions: their `config`).
pub async fn discover(
    warehouse: &Warehouse,
    project: &str,
    registry: &SourceRegistry,
    ctx_template: &DiscoveryContext,
) -> Result<WarehouseDiscovery, DiscoverError> {
    let discovered_at = Utc::now();
    let mut out = Vec::with_capacity(warehouse.spec.subscriptions.len());
    for sub in &warehouse.spec.subscriptions {
        let kind = sub.source.type_key().to_owned();
        let label = label(sub);
        let source = registry.get(&kind).ok_or_else(|| DiscoverError::NoSource {
            subscription: label.clone(),
            kind: kind.clone(),
        })?;
        let config = config_json(sub).map_err(|e| DiscoverError::Config {
            subscription: label.clone(),
            message: e.to_string(),
        })?;
        let mut ctx = ctx_template.clone();
        ctx.project = project.to_owned();
        ctx.warehouse = warehouse.metadata.name.clone();
        ctx.subscription_name = sub.name.clone();
        ctx.previous = None;
        let discovery =
            source
                .discover_json(&ctx, config)
                .await
                .map_err(|source| DiscoverError::Source {
                    subscription: label.clone(),
                    source,
                })?;
        out.push(SubscriptionDiscovery {
            name: sub.name.clone(),
            kind,
            label,
            discovery,
        });
    }
    Ok(WarehouseDiscovery {
        warehouse: warehouse.metadata.name.clone(),
        project: project.to_owned(),
        subscriptions: out,
        discovered_at,
    })
}

/// Builds Freight from element 0 of each discovery, with origin `Warehouse/<name>`;
/// `Err(label)` names the first subscription that discovered nothing. `discoveredAt` is the
/// discovery's time.
pub fn build_freight(warehouse: &str, discoveries: &WarehouseDiscovery) -> Result<Freight, String> {
    let (mut commits, mut images, mut charts, mut artifacts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for sd in &discoveries.subscriptions {
        let missing = || sd.label.clone();
        match &sd.discovery {
            Discovery::Images {
                repo_url,
                references,
                ..
            } => {
                let r = references.first().ok_or_else(missing)?;
                images.push(Image {
                    repo_url: repo_url.clone(),
                    tag: r.tag.clone(),
                    digest: r.digest.clone(),
                    annotations: r.annotations.clone(),
                    subscription_name: sd.name.clone(),
                });
            }
            Discovery::Charts {
                repo_url,
                name,
                versions,
            } => {
                let v = versions.first().ok_or_else(missing)?;
                charts.push(Chart {
                    repo_url: repo_url.clone(),
                    name: name.clone(),
                    version: v.clone(),
                    subscription_name: sd.name.clone(),
                });
            }
            Discovery::Commits {
                repo_url,
                commits: cs,
            } => {
                let c = cs.first().ok_or_else(missing)?;
                commits.push(GitCommit {
                    repo_url: repo_url.clone(),
                    id: c.id.clone(),
                    branch: c.branch.clone(),
                    tag: c.tag.clone(),
                    message: c.subject.clone(),
                    author: c.author.clone(),
                    committer: c.committer.clone(),
                    creator_date: c.creator_date,
                    subscription_name: sd.name.clone(),
                });
            }
            Discovery::Generic { artifacts: a } => {
                let mut a: GenericArtifact = a.first().ok_or_else(missing)?.clone();
                if a.subscription_name.is_empty()
                    && let Some(n) = &sd.name
                {
                    a.subscription_name = n.clone();
                }
                artifacts.push(a);
            }
        }
    }
    let mut freight = Freight::new(
        FreightOrigin::warehouse(warehouse),
        commits,
        images,
        charts,
        artifacts,
    );
    freight.discovered_at = Some(discoveries.discovered_at);
    Ok(freight)
}

/// The requested-origin entry describing this Warehouse's subscriptions, so that
/// `imageFrom`, `chartFrom` and `commitFrom` find the candidate Freight.
fn origin_subscriptions(warehouse: &str, discoveries: &WarehouseDiscovery) -> OriginSubscriptions {
    let mut o = OriginSubscriptions {
        origin: FreightOrigin::warehouse(warehouse),
        ..Default::default()
    };
    for sd in &discoveries.subscriptions {
        match &sd.discovery {
            Discovery::Images { repo_url, .. } => o.images.push(repo_url.clone()),
            Discovery::Charts { repo_url, name, .. } => {
                o.charts.push((repo_url.clone(), name.clone()))
            }
            Discovery::Commits { repo_url, .. } => o.git.push(repo_url.clone()),
            Discovery::Generic { .. } => o.generic.push(sd.name.clone().unwrap_or_default()),
        }
    }
    o
}

/// Evaluates `expression` against candidate Freight with Kargo's functions
/// (`imageFrom(repo).Tag`, `chartFrom(repo, name).Version`, `commitFrom(repo).ID`, …).
pub fn criteria_met(
    engine: &ExprEngine,
    expression: &str,
    candidate: &Freight,
    discoveries: &WarehouseDiscovery,
) -> Result<bool, ExprError> {
    let compiled = engine.compile_kargo_expression(expression)?;
    let mut freight = FreightCollection::new();
    freight.insert(FreightReference::from(candidate));
    let data = EvalData {
        freight,
        requested: vec![origin_subscriptions(&candidate.origin.name, discoveries)],
        ..Default::default()
    };
    let scope = Scope::new(BTreeMap::new(), Arc::new(data));
    compiled.eval_bool(&scope)
}

/// Decides what the Warehouse does with its discoveries (reference §1.4 steps 2–3):
/// missing artifacts first, then the policy, then the criteria.
pub fn freight_from(
    warehouse: &Warehouse,
    discoveries: &WarehouseDiscovery,
    engine: &ExprEngine,
) -> Result<FreightDecision, FreightError> {
    let freight = match build_freight(&warehouse.metadata.name, discoveries) {
        Ok(f) => f,
        Err(subscription) => return Ok(FreightDecision::MissingArtifacts { subscription }),
    };
    if warehouse.spec.freight_creation_policy == FreightCreationPolicy::Manual {
        return Ok(FreightDecision::Manual);
    }
    if let Some(c) = &warehouse.spec.freight_creation_criteria
        && !c.expression.trim().is_empty()
        && !criteria_met(engine, &c.expression, &freight, discoveries)?
    {
        return Ok(FreightDecision::CriteriaNotMet);
    }
    Ok(FreightDecision::Created(freight))
}

/// De-duplication by Freight ID: `None` when Freight with the same ID already exists.
pub fn dedup_new(existing_ids: &HashSet<FreightId>, freight: Freight) -> Option<Freight> {
    (!existing_ids.contains(&freight.name)).then_some(freight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, commit, image};
    use kargo_core::source::{DiscoveredImage, Source};
    use serde_json::json;

    const IMG: &str = "ghcr.io/acme/app";
    const CHART: &str = "https://charts.acme.io";
    const GIT: &str = "https://github.com/acme/config.git";

    fn warehouse(extra: Json) -> Warehouse {
        let mut spec = json!({
            "subscriptions": [
                {"name": "app", "image": {"repoURL": IMG}},
                {"chart": {"repoURL": CHART, "name": "app-chart"}},
                {"git": {"repoURL": GIT, "branch": "main"}},
            ]
        });
        if let Json::Object(m) = extra {
            spec.as_object_mut().unwrap().extend(m);
        }
        serde_json::from_value(json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "Warehouse",
            "metadata": {"name": "wh", "namespace": "proj"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn populated() -> (MemorySource, SourceRegistry) {
        let mem = MemorySource::new();
        mem.set_images(
            IMG,
            vec![image("1.2.0", "sha256:b"), image("1.1.0", "sha256:a")],
        );
        mem.set_chart_versions(CHART, "app-chart", vec!["0.3.0".into(), "0.2.0".into()]);
        mem.set_commits(
            GIT,
            vec![commit("c0ffee", "fix things"), commit("beef", "old")],
        );
        let mut reg = SourceRegistry::new();
        mem.register_into(&mut reg).unwrap();
        (mem, reg)
    }

    async fn run(w: &Warehouse, reg: &SourceRegistry) -> FreightDecision {
        let ctx = DiscoveryContext::new("ignored", "ignored");
        let d = discover(w, "proj", reg, &ctx).await.unwrap();
        freight_from(w, &d, &ExprEngine::new()).unwrap()
    }

    fn created(d: FreightDecision) -> Freight {
        match d {
            FreightDecision::Created(f) => f,
            other => panic!("expected Created, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn automatic_creation_from_image_chart_git() {
        let (_mem, reg) = populated();
        let w = warehouse(json!({}));
        let f = created(run(&w, &reg).await);
        assert_eq!(f.origin, FreightOrigin::warehouse("wh"));
        assert_eq!(f.images.len(), 1);
        assert_eq!(f.images[0].repo_url, IMG);
        assert_eq!(f.images[0].tag, "1.2.0");
        assert_eq!(f.images[0].digest, "sha256:b");
        assert_eq!(f.images[0].subscription_name.as_deref(), Some("app"));
        assert_eq!(f.charts[0].name, "app-chart");
        assert_eq!(f.charts[0].version, "0.3.0");
        assert_eq!(f.charts[0].subscription_name, None);
        assert_eq!(f.commits[0].id, "c0ffee");
        assert_eq!(f.commits[0].message, "fix things");
        let mut expected = Freight::new(
            FreightOrigin::warehouse("wh"),
            vec![f.commits[0].clone()],
            vec![f.images[0].clone()],
            vec![f.charts[0].clone()],
            vec![],
        );
        expected.discovered_at = f.discovered_at;
        assert!(f.discovered_at.is_some());
        assert_eq!(f.name, expected.name);
        assert_eq!(f, expected);
        assert_eq!(f.name, f.compute_id());
    }

    #[tokio::test]
    async fn discovery_records_each_subscription_in_order() {
        let (_mem, reg) = populated();
        let w = warehouse(json!({}));
        let d = discover(&w, "proj", &reg, &DiscoveryContext::new("x", "y"))
            .await
            .unwrap();
        assert_eq!(d.warehouse, "wh");
        assert_eq!(d.project, "proj");
        let kinds: Vec<_> = d.subscriptions.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["image", "chart", "git"]);
        assert_eq!(d.subscriptions[0].label, "app");
        assert_eq!(d.subscriptions[2].label, format!("git {GIT}"));
        match &d.subscriptions[0].discovery {
            Discovery::Images { references, .. } => assert_eq!(references.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_artifacts_creates_nothing() {
        let (mem, reg) = populated();
        mem.set_commits(GIT, vec![]);
        let w = warehouse(json!({}));
        assert_eq!(
            run(&w, &reg).await,
            FreightDecision::MissingArtifacts {
                subscription: format!("git {GIT}")
            }
        );
    }

    #[tokio::test]
    async fn empty_repo_is_missing_artifacts_even_when_manual() {
        let (mem, reg) = populated();
        mem.set_images(IMG, vec![]);
        let w = warehouse(json!({"freightCreationPolicy": "Manual"}));
        assert_eq!(
            run(&w, &reg).await,
            FreightDecision::MissingArtifacts {
                subscription: "app".into()
            }
        );
    }

    #[tokio::test]
    async fn manual_policy_creates_nothing() {
        let (_mem, reg) = populated();
        let w = warehouse(json!({"freightCreationPolicy": "Manual"}));
        assert_eq!(run(&w, &reg).await, FreightDecision::Manual);
    }

    #[tokio::test]
    async fn criteria_true_creates_freight() {
        let (_mem, reg) = populated();
        let w = warehouse(json!({"freightCreationCriteria": {
            "expression": "!(imageFrom('ghcr.io/acme/app').Tag contains '-rc')"
        }}));
        let f = created(run(&w, &reg).await);
        assert_eq!(f.images[0].tag, "1.2.0");
    }

    #[tokio::test]
    async fn criteria_false_creates_nothing() {
        let (mem, reg) = populated();
        mem.push_image(IMG, image("1.3.0-rc.1", "sha256:l"));
        let w = warehouse(json!({"freightCreationCriteria": {
            "expression": "!(imageFrom('ghcr.io/acme/app').Tag contains '-rc')"
        }}));
        assert_eq!(run(&w, &reg).await, FreightDecision::CriteriaNotMet);
    }

    #[tokio::test]
    async fn criteria_see_commits_and_charts() {
        let (_mem, reg) = populated();
        let expr = format!(
            "commitFrom('{GIT}').ID == 'c0ffee' && chartFrom('{CHART}', 'app-chart').Version == '0.3.0'"
        );
        let w = warehouse(json!({"freightCreationCriteria": {"expression": expr}}));
        created(run(&w, &reg).await);
        let expr = format!("commitFrom('{GIT}').ID == 'beef'");
        let w = warehouse(json!({"freightCreationCriteria": {"expression": expr}}));
        assert_eq!(run(&w, &reg).await, FreightDecision::CriteriaNotMet);
    }

    #[tokio::test]
    async fn criteria_errors_are_reported() {
        let (_mem, reg) = populated();
        let w = warehouse(
            json!({"freightCreationCriteria": {"expression": "imageFrom('ghcr.io/acme/app').Tag"}}),
        );
        let d = discover(&w, "proj", &reg, &DiscoveryContext::new("p", "w"))
            .await
            .unwrap();
        let e = freight_from(&w, &d, &ExprEngine::new()).unwrap_err();
        assert!(e.to_string().contains("freightCreationCriteria"), "{e}");
    }

    #[tokio::test]
    async fn unchanged_discovery_is_deduplicated() {
        let (_mem, reg) = populated();
        let w = warehouse(json!({}));
        let first = created(run(&w, &reg).await);
        let mut store = HashSet::new();
        let kept = dedup_new(&store, first.clone()).expect("new Freight is kept");
        store.insert(kept.name.clone());
        let second = created(run(&w, &reg).await);
        assert_eq!(second.name, first.name);
        let (t1, t2) = (first.discovered_at.unwrap(), second.discovered_at.unwrap());
        assert!(t1 <= t2 && t2 <= Utc::now(), "{t1} {t2}");
        assert!(dedup_new(&store, second).is_none());
    }

    #[tokio::test]
    async fn new_tag_yields_new_freight() {
        let (mem, reg) = populated();
        let w = warehouse(json!({}));
        let first = created(run(&w, &reg).await);
        let store: HashSet<_> = [first.name.clone()].into_iter().collect();
        mem.push_image(IMG, image("1.3.0", "sha256:c"));
        let second = created(run(&w, &reg).await);
        assert_ne!(second.name, first.name);
        assert_eq!(second.images[0].tag, "1.3.0");
        assert_eq!(second.commits, first.commits);
        assert!(dedup_new(&store, second).is_some());
    }

    #[tokio::test]
    async fn unregistered_kind_is_an_error() {
        let reg = SourceRegistry::new();
        let w = warehouse(json!({}));
        let e = discover(&w, "proj", &reg, &DiscoveryContext::new("p", "w"))
            .await
            .unwrap_err();
        assert!(matches!(e, DiscoverError::NoSource { ref kind, .. } if kind == "image"));
    }

    struct Gen;
    #[async_trait::async_trait]
    impl Source for Gen {
        const KIND: &'static str = "thing";
        type Config = serde_json::Map<String, Json>;
        async fn discover(
            &self,
            _ctx: &DiscoveryContext,
            config: &Self::Config,
        ) -> Result<Discovery, SourceError> {
            Ok(Discovery::Generic {
                artifacts: vec![GenericArtifact {
                    artifact_type: "thing".into(),
                    subscription_name: String::new(),
                    version: config["version"].as_str().unwrap_or_default().into(),
                    metadata: Json::Null,
                }],
            })
        }
    }

    #[tokio::test]
    async fn generic_subscription_gets_its_config_and_name() {
        let mut reg = SourceRegistry::new();
        reg.register(Gen).unwrap();
        let w: Warehouse = serde_json::from_value(json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "Warehouse",
            "metadata": {"name": "g"},
            "spec": {"subscriptions": [{"name": "t", "thing": {"config": {"version": "v9"}}}]},
        }))
        .unwrap();
        let f = created(run(&w, &reg).await);
        assert_eq!(f.artifacts[0].version, "v9");
        assert_eq!(f.artifacts[0].subscription_name, "t");
    }

    #[tokio::test]
    async fn memory_source_honours_discovery_limit() {
        let mem = MemorySource::new();
        mem.set_images(
            IMG,
            (0..5).map(|i| image(&format!("1.{i}.0"), "d")).collect(),
        );
        let cfg = json!({"repoURL": IMG, "discoveryLimit": 2});
        let d = kargo_core::source::DynSource::discover_json(
            &mem.images(),
            &DiscoveryContext::new("p", "w"),
            cfg,
        )
        .await
        .unwrap();
        match d {
            Discovery::Images { references, .. } => {
                let tags: Vec<_> = references
                    .iter()
                    .map(|r: &DiscoveredImage| r.tag.as_str())
                    .collect();
                assert_eq!(tags, ["1.4.0", "1.3.0"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
