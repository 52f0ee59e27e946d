//! How Freight, Stages, promotions and refreshes are shown: text and JSON views.

use kargo::controller::{PromotionReport, RefreshOutcome};
use kargo::core::freight::{Freight, FreightCollection};
use kargo::core::pipeline::{FreightRecord, ProjectState};
use kargo::sources::warehouse::FreightDecision;
use serde_json::{Value as Json, json};

use crate::ui::Ui;

pub(crate) fn artifacts(f: &Freight) -> Vec<String> {
    let mut parts: Vec<String> = f
        .images
        .iter()
        .map(|i| format!("{}:{}", i.repo_url, i.tag))
        .collect();
    parts.extend(f.charts.iter().map(|c| {
        if c.name.is_empty() {
            format!("{}@{}", c.repo_url, c.version)
        } else {
            format!("{}/{}@{}", c.repo_url, c.name, c.version)
        }
    }));
    parts.extend(f.commits.iter().map(|c| {
        let id = c.id.get(..7).unwrap_or(&c.id);
        if c.tag.is_empty() {
            format!("{}#{id}", c.repo_url)
        } else {
            format!("{}#{} ({id})", c.repo_url, c.tag)
        }
    }));
    parts.extend(
        f.artifacts
            .iter()
            .map(|a| format!("{}/{}@{}", a.artifact_type, a.subscription_name, a.version)),
    );
    parts
}

pub(crate) fn alias_or_id(f: &Freight) -> String {
    f.alias.clone().unwrap_or_else(|| f.name.short().to_owned())
}

/// Freight with Kargo's field names (`alias`, `origin`, `images`, `charts`, `commits`,
/// `status.currentlyIn/verifiedIn/approvedFor`), plus `id`.
pub(crate) fn freight_json(rec: &FreightRecord) -> Json {
    let f = &rec.freight;
    let mut v = json!({
        "id": f.name,
        "alias": f.alias,
        "origin": f.origin,
        "discoveredAt": f.discovered_at,
        "images": f.images,
        "charts": f.charts,
        "commits": f.commits,
        "status": rec.status,
    });
    if !f.artifacts.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.insert("artifacts".into(), json!(f.artifacts));
    }
    v
}

pub(crate) fn collection_json(c: &FreightCollection, state: &ProjectState) -> Json {
    Json::Array(
        c.references()
            .into_iter()
            .map(|r| {
                json!({
                    "id": r.name,
                    "alias": state.freight.get(&r.name).and_then(|f| f.freight.alias.clone()),
                    "origin": r.origin,
                })
            })
            .collect(),
    )
}

pub(crate) fn collection_text(c: &FreightCollection, state: &ProjectState) -> String {
    let parts: Vec<String> = c
        .references()
        .into_iter()
        .map(|r| match state.freight.get(&r.name) {
            Some(rec) => format!(
                "{} ({})",
                alias_or_id(&rec.freight),
                artifacts(&rec.freight).join(", ")
            ),
            None => r.name.short().to_owned(),
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" + ")
    }
}

pub(crate) fn report_json(r: &PromotionReport) -> Json {
    json!({
        "name": r.request.name,
        "stage": r.request.stage,
        "freight": r.request.freight,
        "trigger": r.request.trigger,
        "phase": r.result.phase,
        "message": r.result.message,
        "steps": r.result.steps.iter().map(|s| json!({
            "as": s.alias, "uses": s.uses, "status": s.status, "message": s.message,
            "outputs": s.outputs,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn print_reports(ui: &Ui, reports: &[PromotionReport], state: &ProjectState) {
    for r in reports {
        let ok = r.succeeded();
        let phase = r.result.phase.to_string();
        let phase = if ok {
            ui.out.green(&phase)
        } else {
            ui.out.red(&phase)
        };
        let freight = state
            .freight
            .get(&r.request.freight)
            .map(|f| alias_or_id(&f.freight))
            .unwrap_or_else(|| r.request.freight.short().to_owned());
        let trigger = format!("{:?}", r.request.trigger).to_lowercase();
        println!(
            "promotion {} ({trigger}): Freight {} -> Stage {}: {phase}",
            r.request.name,
            ui.out.bold(&freight),
            ui.out.bold(&r.request.stage)
        );
        for s in &r.result.steps {
            let status = format!("{:?}", s.status);
            let msg = s.message.as_deref().unwrap_or("");
            println!("  {:<28} {:<18} {status:<10} {msg}", s.alias, s.uses);
        }
        if !ok && let Some(m) = &r.result.message {
            println!("  {}", ui.out.red(m));
        }
    }
}

pub(crate) fn outcome_json(warehouse: &str, o: &RefreshOutcome) -> Json {
    match o {
        RefreshOutcome::Created(f) => json!({
            "warehouse": warehouse, "outcome": "Created",
            "freight": {"id": f.name, "alias": f.alias, "origin": f.origin,
                        "images": f.images, "charts": f.charts, "commits": f.commits},
        }),
        RefreshOutcome::Unchanged(id) => {
            json!({"warehouse": warehouse, "outcome": "Unchanged", "freight": {"id": id}})
        }
        RefreshOutcome::NotCreated(d) => {
            json!({"warehouse": warehouse, "outcome": "NotCreated", "reason": decision_text(d)})
        }
        other => json!({"warehouse": warehouse, "outcome": format!("{other:?}")}),
    }
}

pub(crate) fn decision_text(d: &FreightDecision) -> String {
    match d {
        FreightDecision::Created(f) => format!("Freight {} would be created", f.name.short()),
        FreightDecision::MissingArtifacts { subscription } => {
            format!("subscription {subscription} found nothing")
        }
        FreightDecision::Manual => "the Warehouse's freightCreationPolicy is Manual".into(),
        FreightDecision::CriteriaNotMet => "freightCreationCriteria not met".into(),
    }
}

pub(crate) fn outcome_text(ui: &Ui, warehouse: &str, o: &RefreshOutcome) -> String {
    match o {
        RefreshOutcome::Created(f) => format!(
            "Warehouse {warehouse}: new Freight {} ({}) {}",
            ui.out.bold(&alias_or_id(f)),
            f.name.short(),
            artifacts(f).join(", ")
        ),
        RefreshOutcome::Unchanged(id) => format!(
            "Warehouse {warehouse}: no new Freight (the newest artifacts are Freight {})",
            id.short()
        ),
        RefreshOutcome::NotCreated(d) => {
            format!("Warehouse {warehouse}: no Freight: {}", decision_text(d))
        }
        other => format!("Warehouse {warehouse}: {other:?}"),
    }
}

/// A pass (refreshes and promotions) as JSON.
pub(crate) fn pass_json(
    refreshed: &[(String, RefreshOutcome)],
    promotions: &[PromotionReport],
) -> Json {
    json!({
        "refreshed": refreshed.iter().map(|(w, o)| outcome_json(w, o)).collect::<Vec<_>>(),
        "promotions": promotions.iter().map(report_json).collect::<Vec<_>>(),
    })
}
