//! The shapes the API answers and the pages show, built from the project's state, so the
//! UI and the REST API never disagree: a Freight's artifacts, the comparison of two
//! collections, a promotion with its steps.

use kargo_core::freight::{FreightCollection, FreightReference};
use kargo_core::pipeline::ProjectState;
use kargo_core::runner::{PromotionPhase, StagePlan, StepRecord};
use serde_json::{Value as Json, json};

/// `value` as JSON (`null` if it cannot be).
pub fn to_json(value: &impl serde::Serialize) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// A Stage or Warehouse as the API shows it: its name, manifest `spec` and state.
pub fn resource(name: &str, spec: &impl serde::Serialize, status: &impl serde::Serialize) -> Json {
    json!({ "name": name, "spec": to_json(spec), "status": to_json(status) })
}

/// One artifact of a Freight: what kind, which one, which version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactVersion {
    /// `image`, `chart`, `commit` or a generic artifact's type.
    pub kind: String,
    /// The repository (and chart name) the artifact comes from.
    pub key: String,
    /// The version: an image's tag (or digest), a chart's version, a commit's short ID.
    pub version: String,
    /// More about it: an image's digest, a commit's subject line.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The artifacts of one Freight, in a stable order.
pub fn artifacts(r: &FreightReference) -> Vec<ArtifactVersion> {
    let mut out = Vec::new();
    for i in &r.images {
        out.push(ArtifactVersion {
            kind: "image".into(),
            key: i.repo_url.clone(),
            version: if i.tag.is_empty() {
                i.digest.clone()
            } else {
                i.tag.clone()
            },
            detail: i.digest.clone(),
        });
    }
    for c in &r.charts {
        let key = if c.name.is_empty() {
            c.repo_url.clone()
        } else {
            format!("{}/{}", c.repo_url.trim_end_matches('/'), c.name)
        };
        out.push(ArtifactVersion {
            kind: "chart".into(),
            key,
            version: c.version.clone(),
            detail: String::new(),
        });
    }
    for c in &r.commits {
        let short: String = c.id.chars().take(7).collect();
        out.push(ArtifactVersion {
            kind: "commit".into(),
            key: c.repo_url.clone(),
            version: if c.tag.is_empty() {
                short
            } else {
                c.tag.clone()
            },
            detail: c.message.lines().next().unwrap_or("").to_owned(),
        });
    }
    for a in &r.artifacts {
        out.push(ArtifactVersion {
            kind: a.artifact_type.clone(),
            key: a.subscription_name.clone(),
            version: a.version.clone(),
            detail: String::new(),
        });
    }
    out
}

/// How an artifact differs between what a Stage holds and a promotion's collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// Another version.
    Changed,
    /// Not in the Stage now.
    New,
    /// In the Stage now, not in the collection.
    Removed,
    /// The same version.
    Unchanged,
}

/// One row of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactChange {
    /// `image`, `chart`, `commit`...
    pub kind: String,
    /// The artifact's repository.
    pub key: String,
    /// The version the Stage holds now.
    pub from: Option<String>,
    /// The version the collection brings.
    pub to: Option<String>,
    /// How they differ.
    pub change: Change,
}

/// Every artifact of `target` compared with `current` (what the Stage holds now): changed
/// or unchanged, new, and those that would be removed; ordered by kind and key.
pub fn compare(
    current: Option<&FreightCollection>,
    target: &FreightCollection,
) -> Vec<ArtifactChange> {
    let all = |c: &FreightCollection| -> Vec<ArtifactVersion> {
        c.references().into_iter().flat_map(artifacts).collect()
    };
    let before = current.map(all).unwrap_or_default();
    let after = all(target);
    let mut out: Vec<ArtifactChange> = after
        .iter()
        .map(|a| {
            let old = before.iter().find(|b| b.kind == a.kind && b.key == a.key);
            ArtifactChange {
                kind: a.kind.clone(),
                key: a.key.clone(),
                from: old.map(|b| b.version.clone()),
                to: Some(a.version.clone()),
                change: match old {
                    None => Change::New,
                    Some(b) if b.version == a.version && b.detail == a.detail => Change::Unchanged,
                    Some(_) => Change::Changed,
                },
            }
        })
        .collect();
    for b in &before {
        if !after.iter().any(|a| a.kind == b.kind && a.key == b.key) {
            out.push(ArtifactChange {
                kind: b.kind.clone(),
                key: b.key.clone(),
                from: Some(b.version.clone()),
                to: None,
                change: Change::Removed,
            });
        }
    }
    out.sort_by(|x, y| (&x.kind, &x.key).cmp(&(&y.kind, &y.key)));
    out
}

/// A step as a promotion's view shows it: its record with the configuration template
/// the Stage gives it (`config`), when `plan` has a step of that alias.
fn step_json(record: &StepRecord, plan: Option<&StagePlan>) -> Json {
    let mut v = serde_json::to_value(record).unwrap_or(Json::Null);
    let duration = match (record.started_at, record.finished_at) {
        (Some(s), Some(f)) => (f - s).num_milliseconds().max(0),
        _ => -1,
    };
    if let Some(obj) = v.as_object_mut() {
        if duration >= 0 {
            obj.insert("durationMs".into(), json!(duration));
        }
        if let Some(step) = plan.and_then(|p| p.steps.iter().find(|s| s.alias == record.alias)) {
            obj.insert("config".into(), Json::Object(step.config.clone()));
        }
    }
    v
}

/// One promotion, finished (from the project's records, with the steps it ran) or
/// queued or running (with the progress its runner recorded so far); `None` when the
/// state knows no promotion of that name. `phase` is `Pending` for a queued one and
/// `Running` for the running one.
pub fn promotion(state: &ProjectState, name: &str, plan: Option<&StagePlan>) -> Option<Json> {
    if let Some(r) = state.promotions.iter().rev().find(|r| r.name == name) {
        let mut v = serde_json::to_value(r).unwrap_or(Json::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "steps".into(),
                Json::Array(r.steps.iter().map(|s| step_json(s, plan)).collect()),
            );
            obj.insert("finished".into(), json!(true));
        }
        return Some(v);
    }
    for (stage, st) in &state.stages {
        let running = st.current_promotion.as_ref().filter(|r| r.name == name);
        let queued = st.queue.iter().find(|r| r.name == name);
        let Some(request) = running.or(queued) else {
            continue;
        };
        let phase = if running.is_some() {
            PromotionPhase::Running
        } else {
            PromotionPhase::Pending
        };
        let steps: Vec<Json> = match state.progress.get(name) {
            Some(p) => p.steps.iter().map(|s| step_json(s, plan)).collect(),
            None => plan
                .map(|p| {
                    p.steps
                        .iter()
                        .map(|s| json!({"alias": s.alias, "uses": s.uses, "status": "Pending", "config": s.config}))
                        .collect()
                })
                .unwrap_or_default(),
        };
        return Some(json!({
            "name": request.name,
            "stage": stage,
            "freight": request.freight.to_string(),
            "collectionId": request.collection.id(),
            "trigger": request.trigger,
            "phase": phase,
            "actor": request.actor,
            "requestedAt": request.requested_at,
            "abortRequested": st.abort_requested.as_ref().filter(|a| a.promotion == name),
            "steps": steps,
            "finished": false,
        }));
    }
    None
}
