//! The one-shot verbs: validate, refresh, get, promote, approve, rollback.

use chrono::Utc;
use kargo::controller::{Controller, ControllerError, PromotionReport};
use kargo::core::pipeline::{FreightRecord, Pipeline};
use serde_json::{Value as Json, json};

use crate::cli::{Cli, Failure, Result};
use crate::render::*;
use crate::ui::Ui;
use crate::{actor, checked, controller, credentials_file, manifest_secrets};

pub(crate) fn validate(cli: &Cli, ui: &Ui) -> Result<()> {
    let (manifests, project, _) = checked(cli)?;
    // Names only: never a value.
    let secrets = manifest_secrets(cli, &manifests)?.summary(&project);
    let file_entries = credentials_file(cli)?.map(|t| t.len());
    for app in &secrets.github_apps {
        eprintln!(
            "{} the credential Secret {app} holds a GitHub App: kargo-rs cannot exchange its key \
             for installation tokens, so using it fails; put a token in `password` instead",
            ui.err.bold("notice:")
        );
    }
    for loose in &secrets.unscoped {
        eprintln!(
            "{} {loose} has no metadata.namespace: it serves no project",
            ui.err.bold("notice:")
        );
    }
    let warehouses = manifests.warehouses(&project).count();
    let stages = manifests.stages(&project).count();
    let tasks = manifests.promotion_tasks(&project).count();
    let cluster_tasks = manifests.cluster_promotion_tasks().count();
    // Other APIs' documents (Secrets, Applications, ...) are skipped: one notice each.
    for skipped in manifests.skipped() {
        eprintln!("{} {skipped}", ui.err.bold("notice:"));
    }
    let skipped: Vec<_> = manifests
        .skipped()
        .iter()
        .map(|s| {
            json!({
                "kind": s.kind, "apiVersion": s.api_version, "name": s.name,
                "file": s.location.file.display().to_string(), "line": s.location.line,
            })
        })
        .collect();
    let warnings: Vec<_> = manifests
        .warnings()
        .iter()
        .map(|w| {
            json!({
                "file": w.location.file.display().to_string(), "line": w.location.line,
                "resource": w.resource, "field": w.field, "message": w.message,
            })
        })
        .collect();
    ui.emit(
        &json!({
            "valid": true, "project": project, "resources": manifests.len(),
            "warehouses": warehouses, "stages": stages, "promotionTasks": tasks,
            "clusterPromotionTasks": cluster_tasks, "skipped": skipped, "warnings": warnings,
            "credentials": secrets.credentials, "secrets": secrets.secrets,
            "configMaps": secrets.config_maps, "credentialsFileEntries": file_entries,
            "githubApps": secrets.github_apps,
        }),
        || {
            println!(
                "{} {} resources; project {project}: {warehouses} Warehouse(s), {stages} Stage(s), \
                 {tasks} PromotionTask(s), {cluster_tasks} ClusterPromotionTask(s)",
                ui.out.green("valid:"),
                manifests.len()
            );
            let list = |names: &[String]| {
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                }
            };
            println!(
                "{} {} credential(s){}; {} secret(s){}; {} config map(s){}",
                ui.out.green("from the manifests:"),
                secrets.credentials.len(),
                list(&secrets.credentials),
                secrets.secrets.len(),
                list(&secrets.secrets),
                secrets.config_maps.len(),
                list(&secrets.config_maps),
            );
            if let Some(n) = file_entries {
                println!("{} {n} credential(s)", ui.out.green("from --credentials:"));
            }
        },
    )
}

pub(crate) async fn refresh(cli: &Cli, ui: &Ui, warehouse: &str) -> Result<()> {
    let c = controller(cli).await?;
    let outcome = ui
        .with_progress(
            &format!("refreshing Warehouse {warehouse}"),
            c.refresh(warehouse),
        )
        .await?;
    ui.emit(&outcome_json(warehouse, &outcome), || {
        println!("{}", outcome_text(ui, warehouse, &outcome))
    })
}

pub(crate) async fn get_freight(cli: &Cli, ui: &Ui, stage: Option<&str>) -> Result<()> {
    let c = controller(cli).await?;
    let state = c.state().await?;
    let now = Utc::now();
    let mut list: Vec<&FreightRecord> = match stage {
        Some(s) => {
            let st = c.pipeline().stage(s).map_err(ControllerError::from)?;
            Pipeline::available_to(st, &state, now)
        }
        None => state.freight.values().collect(),
    };
    list.sort_by(|a, b| {
        b.freight
            .discovered_at
            .cmp(&a.freight.discovered_at)
            .then_with(|| b.freight.name.cmp(&a.freight.name))
    });
    let value = Json::Array(list.iter().map(|r| freight_json(r)).collect());
    ui.emit(&value, || {
        if list.is_empty() {
            match stage {
                Some(s) => println!("no Freight is available to Stage {s}"),
                None => println!("no Freight yet (try `run` or `refresh warehouse NAME`)"),
            }
            return;
        }
        println!(
            "{}",
            ui.out.bold(&format!(
                "{:<24} {:<8} {:<22} {:<24} ARTIFACTS",
                "ALIAS", "ID", "ORIGIN", "IN STAGES"
            ))
        );
        for r in &list {
            let f = &r.freight;
            let mut stages: Vec<String> = r.status.currently_in.keys().cloned().collect();
            for s in r.status.approved_for.keys() {
                if !r.status.currently_in.contains_key(s) {
                    stages.push(format!("{s}(approved)"));
                }
            }
            println!(
                "{:<24} {:<8} {:<22} {:<24} {}",
                f.alias.as_deref().unwrap_or("-"),
                f.name.short(),
                f.origin.to_string(),
                if stages.is_empty() {
                    "-".into()
                } else {
                    stages.join(",")
                },
                artifacts(f).join(", ")
            );
        }
    })
}

pub(crate) async fn get_stages(cli: &Cli, ui: &Ui) -> Result<()> {
    let c = controller(cli).await?;
    let state = c.state().await?;
    let pipeline = c.pipeline();
    let stages: Vec<_> = c.manifests().stages(c.project()).collect();
    let empty = Default::default();
    let value = Json::Array(
        stages
            .iter()
            .map(|s| {
                let name = &s.metadata.name;
                let st = state.stages.get(name).unwrap_or(&empty);
                json!({
                    "name": name,
                    "autoPromotionEnabled": pipeline.auto_promotion_enabled(s),
                    "requestedFreight": s.spec.requested_freight.iter().map(|r| json!({
                        "origin": r.origin, "direct": r.sources.direct, "stages": r.sources.stages,
                    })).collect::<Vec<_>>(),
                    "currentFreight": st.current().map(|c| collection_json(c, &state)).unwrap_or(json!([])),
                    "freightHistory": st.freight_history.iter().map(|h| json!({
                        "promotedAt": h.promoted_at, "promotion": h.promotion,
                        "freight": collection_json(&h.collection, &state),
                    })).collect::<Vec<_>>(),
                    "lastPromotion": st.last_promotion,
                    "currentPromotion": st.current_promotion.as_ref().map(|p| &p.name),
                    "queue": st.queue.iter().map(|p| &p.name).collect::<Vec<_>>(),
                    "autoPromotionHolds": st.auto_promotion_holds,
                    "promotionWindowStatus": c.promotion_window_status(name),
                    "waitingForApproval": st.queue.first().and_then(|r| pipeline.approval_status(r, c.now())).map(|a| json!({
                        "promotion": st.queue[0].name, "approvedBy": a.approved_by, "required": a.required,
                    })),
                })
            })
            .collect(),
    );
    ui.emit(&value, || {
        for s in &stages {
            let name = &s.metadata.name;
            let st = state.stages.get(name).unwrap_or(&empty);
            let auto = if pipeline.auto_promotion_enabled(s) {
                "auto-promotion on"
            } else {
                "auto-promotion off"
            };
            let last = st
                .last_promotion
                .as_ref()
                .map(|p| {
                    let phase = p.phase.to_string();
                    let phase = if phase == "Succeeded" {
                        ui.out.green(&phase)
                    } else {
                        ui.out.red(&phase)
                    };
                    format!("last promotion {} {phase}", p.name)
                })
                .unwrap_or_else(|| "never promoted".into());
            println!("{} ({auto}; {last})", ui.out.bold(&format!("Stage {name}")));
            match st.current() {
                Some(cur) => println!("  current: {}", collection_text(cur, &state)),
                None => println!("  current: -"),
            }
            let window = c.promotion_window_status(name);
            if window.closed {
                let next = window
                    .next_open
                    .map(|t| {
                        format!(
                            "; opens {}",
                            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "  {} {}{next}",
                    ui.out.yellow("window closed:"),
                    window.reason
                );
            } else if let Some(t) = window.next_close {
                println!(
                    "  window open until {} ({})",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    window.next_close_reason
                );
            }
            if let Some(head) = st.queue.first()
                && let Some(a) = pipeline.approval_status(head, c.now())
                && !a.satisfied()
            {
                println!(
                    "  {} {} ({} of {}{})",
                    ui.out.yellow("waiting for approval:"),
                    head.name,
                    a.approved_by.len(),
                    a.required,
                    if a.approved_by.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", a.approved_by.join(", "))
                    }
                );
            }
            for hold in st.auto_promotion_holds.values() {
                println!(
                    "  {} {} pinned at {}",
                    ui.out.yellow("hold:"),
                    hold.origin,
                    state
                        .freight
                        .get(&hold.freight_name)
                        .map(|f| alias_or_id(&f.freight))
                        .unwrap_or_else(|| hold.freight_name.short().to_owned())
                );
            }
            for (i, h) in st.freight_history.iter().enumerate().skip(1) {
                println!(
                    "  {} {} {}",
                    ui.out.dim(&format!("history[{i}]")),
                    h.promoted_at.format("%Y-%m-%d %H:%M:%S"),
                    collection_text(&h.collection, &state)
                );
            }
        }
    })
}

/// Prints promotion reports; a failed one is exit status 1.
async fn finish_promotions(ui: &Ui, c: &Controller, reports: &[PromotionReport]) -> Result<()> {
    let state = c.state().await?;
    ui.emit(
        &Json::Array(reports.iter().map(report_json).collect()),
        || print_reports(ui, reports, &state),
    )?;
    let failed: Vec<&PromotionReport> = reports.iter().filter(|r| !r.succeeded()).collect();
    if let Some(first) = failed.first() {
        return Err(Failure::Runtime(format!(
            "{} promotion(s) failed; first: {} in Stage {}: {}",
            failed.len(),
            first.request.name,
            first.request.stage,
            first.result.message.as_deref().unwrap_or("(no message)")
        )));
    }
    Ok(())
}

pub(crate) async fn promote(
    cli: &Cli,
    ui: &Ui,
    stage: &str,
    freight: &str,
    dry_run: bool,
    force_window: Option<&str>,
) -> Result<()> {
    let c = controller(cli).await?;
    if dry_run {
        let report = ui
            .with_progress(
                &format!("dry run of Freight {freight} to Stage {stage}"),
                c.dry_run(stage, freight, actor()),
            )
            .await?;
        let value = json!({
            "dryRun": true,
            "promotion": report_json(&kargo::controller::PromotionReport {
                request: report.request.clone(),
                result: report.result.clone(),
                record: kargo::core::pipeline::PromotionRecord {
                    name: report.request.name.clone(),
                    stage: report.request.stage.clone(),
                    freight: report.request.freight.clone(),
                    collection_id: report.request.collection.id(),
                    trigger: report.request.trigger,
                    phase: report.result.phase,
                    message: report.result.message.clone().unwrap_or_default(),
                    finished_at: report.result.finished_at,
                    actor: report.request.actor.clone(),
                    steps: report.result.steps.clone(),
                    window_override: None,
                },
            }),
            "pushes": report.pushes.iter().map(|p| json!({
                "repoURL": p.repo_url, "branch": p.branch, "tag": p.tag,
                "commit": p.commit, "message": p.message, "step": p.step,
            })).collect::<Vec<_>>(),
            "files": report.files.iter().map(|f| json!({
                "repoURL": f.repo_url, "path": f.path, "diff": f.diff,
            })).collect::<Vec<_>>(),
        });
        ui.emit(&value, || {
            println!(
                "dry run of promotion {} to Stage {}: {} (nothing was pushed)",
                report.request.name,
                ui.out.bold(stage),
                report.result.phase
            );
            for s in &report.result.steps {
                let msg = s.message.as_deref().unwrap_or("");
                println!(
                    "  {:<28} {:<18} {:<10} {msg}",
                    s.alias,
                    s.uses,
                    format!("{:?}", s.status)
                );
            }
            for p in &report.pushes {
                let target = p
                    .tag
                    .as_deref()
                    .map_or_else(|| format!("branch {}", p.branch), |t| format!("tag {t}"));
                println!(
                    "would push {} to {} of {}",
                    &p.commit[..p.commit.len().min(12)],
                    target,
                    p.repo_url
                );
                for line in p.message.lines() {
                    println!("    {line}");
                }
            }
            for f in &report.files {
                println!("{}", ui.out.bold(&format!("{} {}", f.repo_url, f.path)));
                for line in f.diff.lines() {
                    let line = if line.starts_with('+') && !line.starts_with("+++") {
                        ui.out.green(line)
                    } else if line.starts_with('-') && !line.starts_with("---") {
                        ui.out.red(line)
                    } else {
                        line.to_owned()
                    };
                    println!("{line}");
                }
            }
        })?;
        if !report.succeeded() {
            return Err(Failure::Runtime(format!(
                "the dry run of {} failed: {}",
                report.request.name,
                report.result.message.as_deref().unwrap_or("(no message)")
            )));
        }
        return Ok(());
    }
    let reports = match force_window {
        Some(reason) => {
            ui.with_progress(
                &format!(
                    "promoting Freight {freight} to Stage {stage} (outside its promotion windows)"
                ),
                c.promote_forcing_window(stage, freight, actor(), reason),
            )
            .await?
        }
        None => {
            ui.with_progress(
                &format!("promoting Freight {freight} to Stage {stage}"),
                c.promote(stage, freight, actor()),
            )
            .await?
        }
    };
    finish_promotions(ui, &c, &reports).await
}

pub(crate) async fn queue_promotion(cli: &Cli, ui: &Ui, stage: &str, freight: &str) -> Result<()> {
    let c = controller(cli).await?;
    let request = c.request_promotion(stage, freight, actor()).await?;
    ui.emit(
        &json!({
            "queued": request.name,
            "stage": request.stage,
            "freight": request.freight.to_string(),
        }),
        || {
            println!(
                "queued promotion {} of Freight {} to Stage {}",
                request.name,
                request.freight,
                ui.out.bold(stage)
            );
        },
    )
}

pub(crate) async fn approve(cli: &Cli, ui: &Ui, stage: &str, freight: &str) -> Result<()> {
    let c = controller(cli).await?;
    let id = c.approve(stage, freight, actor()).await?;
    let state = c.state().await?;
    let alias = state.freight.get(&id).and_then(|f| f.freight.alias.clone());
    ui.emit(
        &json!({"approved": true, "stage": stage, "freight": {"id": id, "alias": alias}}),
        || {
            println!(
                "Freight {} ({}) approved for Stage {stage}",
                ui.out.bold(alias.as_deref().unwrap_or(id.short())),
                id.short()
            )
        },
    )
}

/// Approves or rejects a promotion waiting for approval.
pub(crate) async fn answer_promotion(
    cli: &Cli,
    ui: &Ui,
    stage: &str,
    promotion: Option<&str>,
    reject: bool,
    message: &str,
) -> Result<()> {
    use kargo::core::pipeline::{ApprovalDecision, ApprovalOutcome, Approver};
    let c = controller(cli).await?;
    let who = Approver {
        name: actor().unwrap_or_default(),
        groups: crate::actor_groups(),
    };
    let decision = if reject {
        ApprovalDecision::Reject
    } else {
        ApprovalDecision::Approve
    };
    let (outcome, reports) = c
        .answer_promotion(stage, promotion, &who, decision, message)
        .await?;
    match outcome {
        ApprovalOutcome::Rejected(record) => ui.emit(
            &json!({"rejected": true, "stage": stage, "promotion": record.name, "by": who.name}),
            || println!("promotion {} rejected by {}", record.name, who.name),
        )?,
        ApprovalOutcome::ForRunningPromotion(name) => ui.emit(
            &json!({"answered": name, "stage": stage, "by": who.name, "reject": reject, "running": true}),
            || {
                println!(
                    "{} recorded for the running promotion {name} (its wait-for-approval steps read it)",
                    if reject { "rejection" } else { "approval" }
                )
            },
        )?,
        ApprovalOutcome::Recorded(status) => ui.emit(
            &json!({
                "approved": true, "stage": stage, "by": who.name,
                "approvals": status.approved_by, "required": status.required,
                "runs": status.satisfied(),
            }),
            || {
                println!(
                    "approved by {}: {} of {} approvals{}",
                    who.name,
                    status.approved_by.len(),
                    status.required,
                    if status.satisfied() {
                        "; the promotion runs"
                    } else {
                        "; waiting for more"
                    }
                )
            },
        )?,
    }
    if reports.is_empty() {
        return Ok(());
    }
    finish_promotions(ui, &c, &reports).await
}

pub(crate) async fn rollback(
    cli: &Cli,
    ui: &Ui,
    stage: &str,
    force_window: Option<&str>,
) -> Result<()> {
    let c = controller(cli).await?;
    let reports = match force_window {
        Some(reason) => {
            ui.with_progress(
                &format!("rolling back Stage {stage} (outside its promotion windows)"),
                c.rollback_forcing_window(stage, actor(), reason),
            )
            .await?
        }
        None => {
            ui.with_progress(
                &format!("rolling back Stage {stage}"),
                c.rollback(stage, actor()),
            )
            .await?
        }
    };
    finish_promotions(ui, &c, &reports).await
}

/// When each Warehouse is due and why; when soak times end.
pub(crate) async fn get_schedule(cli: &Cli, ui: &Ui) -> Result<()> {
    let c = controller(cli).await?;
    let schedule = c.schedule().await?;
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let due_at = |w: &kargo::schedule::WarehouseDue| {
        if w.due_at <= schedule.now {
            "now".to_owned()
        } else {
            at(w.due_at)
        }
    };
    let value = json!({
        "now": at(schedule.now),
        "warehouses": schedule.warehouses.iter().map(|w| json!({
            "name": w.warehouse, "dueAt": due_at(w), "reason": w.reason.to_string(),
        })).collect::<Vec<_>>(),
        "soaks": schedule.soaks.iter().map(|s| json!({
            "stage": s.stage, "freight": s.freight, "upstream": s.upstream, "endsAt": at(s.at),
        })).collect::<Vec<_>>(),
        "nextWake": schedule.next_wake().map(|w| json!({"at": at(w.at()), "why": w.to_string()})),
    });
    ui.emit(&value, || {
        println!(
            "{}",
            ui.out
                .bold(&format!("{:<24} {:<22} WHY", "WAREHOUSE", "DUE"))
        );
        for w in &schedule.warehouses {
            println!("{:<24} {:<22} {}", w.warehouse, due_at(w), w.reason);
        }
        for s in &schedule.soaks {
            println!(
                "soak: Freight {} in {} is available to Stage {} at {}",
                s.freight.short(),
                s.upstream,
                s.stage,
                at(s.at)
            );
        }
        match schedule.next_wake() {
            Some(w) => println!("next: {} at {}", w, at(w.at())),
            None => println!("next: nothing scheduled"),
        }
    })
}
