//! The Projects page and a Project's pipeline: a graph, left to right, of Warehouses
//! (with their subscriptions) and Stages, edges from `requestedFreight` (direct from a
//! Warehouse or through upstream Stages); `?view=list` is the same as a paged table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path as UrlPath, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use kargo_core::model::{Stage, SubscriptionSource, Warehouse};

use super::html::{ago, artifact_list, badge, esc, url};
use super::stage_summary::{NewestFreight, Phase, StageSummary, summarize};
use super::{Request, Ui};
use crate::server::access::Action;
use crate::server::query::query_value;

/// A card's size and the gaps between cards, in pixels.
const CARD_W: usize = 280;
const CARD_H: usize = 230;
const GAP_X: usize = 80;
const GAP_Y: usize = 24;
/// Rows of the list view per page.
pub(super) const LIST_PAGE: usize = 100;

pub(super) async fn projects(
    State(ui): State<Arc<Ui>>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = match ui.request(&original, &uri, &headers, None) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let c = ui.handle.controller();
    let project = c.project();
    let mut main = String::from("<h1>Projects</h1><div class=\"grid\">");
    if r.may(Action::View, project, None) {
        let state = c.snapshot().await.unwrap_or_default();
        let pipeline = c.pipeline();
        let newest = NewestFreight::of(&state);
        let now = c.now();
        let soaks = pipeline.soak_deadlines(&state, now);
        let mut counts: BTreeMap<&'static str, (usize, &'static str)> = BTreeMap::new();
        for s in c.manifests().stages(project) {
            let phase = summarize(&pipeline, s, &state, &newest, &soaks, now).phase;
            counts.entry(phase.word()).or_insert((0, phase.tone())).0 += 1;
        }
        let failures = c.refresh_failures();
        let warehouses = counted(c.manifests().warehouses(project).count(), "Warehouse");
        let mut health = String::new();
        for (word, (n, tone)) in &counts {
            let _ = write!(health, "{} ", badge(tone, &format!("{n} {word}")));
        }
        let _ = write!(
            main,
            "<div class=\"card project\" data-project=\"{p}\"><h3><a href=\"{b}/ui/projects/{pu}\">{p}</a></h3>\
<div class=\"line\">{stages}: {health}</div>\
<div class=\"line\">{warehouses}{failed} · {freight} Freight</div></div>",
            p = esc(project),
            b = esc(&r.base),
            pu = url(project),
            stages = counted(c.manifests().stages(project).count(), "Stage"),
            failed = if failures.is_empty() {
                String::new()
            } else {
                format!(", {}", badge("bad", &format!("{} failing", failures.len())))
            },
            freight = state.freight.len(),
        );
    }
    main.push_str("</div>");
    let frame = r.frame(None, "");
    r.render(&frame, "Projects", &main)
}

/// `n` and `word`, plural unless `n` is 1 (`1 Stage`, `3 Stages`).
fn counted(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Each Stage's column: 1 + the deepest of what it requests from (Warehouses are 0).
fn depths(stages: &[&Stage]) -> BTreeMap<String, usize> {
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    // Relaxation bounded by the number of Stages (a cycle cannot loop forever).
    for _ in 0..=stages.len() {
        let mut changed = false;
        for s in stages {
            let d = 1 + s
                .spec
                .requested_freight
                .iter()
                .flat_map(|r| r.sources.stages.iter())
                .map(|u| depth.get(u).copied().unwrap_or(0))
                .max()
                .unwrap_or(0);
            let d = d.min(stages.len() + 1);
            if depth.get(&s.metadata.name) != Some(&d) {
                depth.insert(s.metadata.name.clone(), d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// Where each node's card goes: column by depth; in a column, ordered by the average row
/// of what feeds it (fewer crossings), then by name.
fn layout(warehouses: &[&Warehouse], stages: &[&Stage]) -> BTreeMap<String, (usize, usize)> {
    let depth = depths(stages);
    let mut pos: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (row, w) in warehouses.iter().enumerate() {
        pos.insert(format!("w/{}", w.metadata.name), (0, row));
    }
    let max_depth = depth.values().copied().max().unwrap_or(0);
    for col in 1..=max_depth {
        let mut column: Vec<(f64, &str)> = stages
            .iter()
            .filter(|s| depth.get(&s.metadata.name) == Some(&col))
            .map(|s| {
                let rows: Vec<usize> = parents(s)
                    .iter()
                    .filter_map(|p| pos.get(p).map(|&(_, r)| r))
                    .collect();
                let avg = if rows.is_empty() {
                    0.0
                } else {
                    rows.iter().sum::<usize>() as f64 / rows.len() as f64
                };
                (avg, s.metadata.name.as_str())
            })
            .collect();
        column.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        for (row, (_, name)) in column.into_iter().enumerate() {
            pos.insert(format!("s/{name}"), (col, row));
        }
    }
    pos
}

/// The nodes a Stage's Freight comes from: `w/<warehouse>` for direct requests,
/// `s/<stage>` for upstream Stages.
fn parents(s: &Stage) -> Vec<String> {
    let mut out = Vec::new();
    for r in &s.spec.requested_freight {
        if r.sources.direct {
            out.push(format!("w/{}", r.origin.name));
        }
        for u in &r.sources.stages {
            out.push(format!("s/{u}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn subscription_line(s: &SubscriptionSource) -> String {
    match s {
        SubscriptionSource::Image(i) => format!("image {}", i.repo_url),
        SubscriptionSource::Chart(c) if c.name.is_empty() => format!("chart {}", c.repo_url),
        SubscriptionSource::Chart(c) => format!("chart {} {}", c.repo_url, c.name),
        SubscriptionSource::Git(g) => format!("git {}", g.repo_url),
        SubscriptionSource::Generic(g) => g.subscription_type.clone(),
    }
}

fn warehouse_card(
    r: &Request,
    project: &str,
    w: &Warehouse,
    state: &kargo_core::pipeline::ProjectState,
    now: chrono::DateTime<chrono::Utc>,
    style: &str,
) -> String {
    let name = &w.metadata.name;
    let ws = state.warehouses.get(name);
    let mut out = format!(
        "<div class=\"card warehouse\" id=\"warehouse-{id}\" data-warehouse=\"{n}\"{style}><h3><a href=\"{b}/ui/projects/{p}/warehouses/{nu}\">{n}</a>{kind}</h3>",
        id = esc(name),
        n = esc(name),
        b = esc(&r.base),
        p = url(project),
        nu = url(name),
        kind = badge("idle", "Warehouse"),
    );
    for s in &w.spec.subscriptions {
        let _ = write!(
            out,
            "<div class=\"line\">{}</div>",
            esc(&subscription_line(&s.source))
        );
    }
    if let Some(id) = ws.and_then(|s| s.last_freight.as_ref()) {
        let alias = state
            .freight
            .get(id)
            .and_then(|f| f.freight.alias.clone())
            .unwrap_or_else(|| id.short().to_owned());
        let _ = write!(
            out,
            "<div class=\"line\">newest Freight <b>{}</b></div>",
            esc(&alias)
        );
    }
    match ws.and_then(|s| s.last_discovery) {
        Some(t) => {
            let _ = write!(out, "<div class=\"line\">discovered {}</div>", ago(t, now));
        }
        None => out.push_str("<div class=\"line\">not discovered yet</div>"),
    }
    if r.may(Action::Refresh, project, None) {
        let _ = write!(
            out,
            "<div class=\"actions\">{}</div>",
            super::html::action_button(
                "Refresh",
                "POST",
                &format!(
                    "/v1beta1/projects/{}/warehouses/{}/refresh",
                    url(project),
                    url(name)
                ),
                "{}",
                "reload",
                "secondary refresh",
            )
        );
    }
    out.push_str("</div>");
    out
}

/// The actions a Stage's card or row offers its caller.
pub(super) fn stage_actions(
    r: &Request,
    project: &str,
    name: &str,
    summary: &StageSummary,
    control_flow: bool,
) -> String {
    let mut out = String::new();
    let base = esc(&r.base);
    if !control_flow && r.may(Action::Promote, project, Some(name)) {
        let _ = write!(
            out,
            "<a class=\"button promote\" href=\"{base}/ui/projects/{}/stages/{}/promote\">Promote</a>",
            url(project),
            url(name)
        );
    }
    if r.may(Action::Hold, project, Some(name)) && !control_flow {
        let held = summary.auto_promotion.starts_with("held");
        let (label, verb) = if held {
            ("Resume auto", "resume")
        } else {
            ("Hold", "hold")
        };
        if held || summary.phase != Phase::Empty {
            out.push_str(&super::html::action_button(
                label,
                "POST",
                &format!(
                    "/v1beta1/projects/{}/stages/{}/{verb}",
                    url(project),
                    url(name)
                ),
                "{}",
                "reload",
                &format!("secondary {verb}"),
            ));
        }
    }
    out
}

fn stage_card(
    r: &Request,
    project: &str,
    s: &Stage,
    summary: &StageSummary,
    now: chrono::DateTime<chrono::Utc>,
    style: &str,
) -> String {
    let name = &s.metadata.name;
    let mut out = format!(
        "<div class=\"card stage {cls}\" id=\"stage-{id}\" data-stage=\"{n}\" data-phase=\"{word}\"{style}><h3><a href=\"{b}/ui/projects/{p}/stages/{nu}\">{n}</a>{badge}</h3>",
        cls = match summary.phase {
            Phase::Promoting => "promoting",
            Phase::Queued => "queued",
            Phase::Verifying => "verifying",
            Phase::Failed => "failed",
            Phase::Ready => "ready",
            Phase::Empty => "empty",
        },
        id = esc(name),
        n = esc(name),
        word = summary.phase.word(),
        b = esc(&r.base),
        p = url(project),
        nu = url(name),
        badge = badge(summary.phase.tone(), summary.phase.word()),
    );
    if let Some((promotion, done, total)) = &summary.running {
        let _ = write!(
            out,
            "<div class=\"line\"><a href=\"{}/ui/projects/{}/promotions/{}\">step {}/{}</a></div>",
            esc(&r.base),
            url(project),
            url(promotion),
            (done + 1).min((*total).max(1)),
            total
        );
    }
    if summary.current.is_empty() {
        out.push_str("<div class=\"line\">no Freight yet</div>");
    }
    for (alias, _, arts) in &summary.current {
        let _ = write!(
            out,
            "<div class=\"line\">Freight <b class=\"freight-alias\">{}</b></div>",
            esc(alias)
        );
        let first: Vec<_> = arts.iter().take(2).cloned().collect();
        out.push_str(&artifact_list(&first));
    }
    let verification = match &summary.verification {
        Some((p, _)) => format!("verification {p:?}"),
        None if s.spec.verification.is_some() && !summary.current.is_empty() => {
            "verifying".to_owned()
        }
        None => String::new(),
    };
    if !verification.is_empty() {
        let _ = write!(out, "<div class=\"line\">{}</div>", esc(&verification));
    }
    let _ = write!(
        out,
        "<div class=\"line\">auto-promotion {}</div>",
        esc(&summary.auto_promotion)
    );
    for w in summary.waits.iter().take(1) {
        let _ = write!(
            out,
            "<div class=\"line waits\" title=\"{t}\">waits: {t}</div>",
            t = esc(w)
        );
    }
    if let Some(t) = summary.promoted_at {
        let _ = write!(out, "<div class=\"line\">promoted {}</div>", ago(t, now));
    }
    let _ = write!(
        out,
        "<div class=\"actions\">{}</div></div>",
        stage_actions(r, project, name, summary, s.is_control_flow())
    );
    out
}

pub(super) async fn pipeline(
    State(ui): State<Arc<Ui>>,
    UrlPath(project): UrlPath<String>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = match ui.request(&original, &uri, &headers, Some(&project)) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let c = ui.handle.controller();
    let state = c.snapshot().await.unwrap_or_default();
    let now = c.now();
    let pipeline = c.pipeline();
    let newest = NewestFreight::of(&state);
    let soaks = pipeline.soak_deadlines(&state, now);
    let mut stages: Vec<&Stage> = c.manifests().stages(&project).collect();
    stages.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut warehouses: Vec<&Warehouse> = c.manifests().warehouses(&project).collect();
    warehouses.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let list = query_value(&uri, "view").as_deref() == Some("list");
    let base = esc(&r.base);
    let pu = url(&project);
    let mut main = format!(
        "<div class=\"toolbar\"><h1>{p}</h1><span class=\"muted\">{} · {} · {} Freight</span><span class=\"spacer\"></span>\
<a class=\"button secondary\" href=\"{base}/ui/projects/{pu}/freight\">Freight timeline</a>\
<a class=\"button {gs}\" href=\"{base}/ui/projects/{pu}\">Graph</a><a class=\"button {ls}\" href=\"{base}/ui/projects/{pu}?view=list\">List</a></div>",
        counted(stages.len(), "Stage"),
        counted(warehouses.len(), "Warehouse"),
        state.freight.len(),
        p = esc(&project),
        gs = if list { "secondary" } else { "" },
        ls = if list { "" } else { "secondary" },
    );
    if list {
        let page: usize = query_value(&uri, "page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let pages = stages.len().div_ceil(LIST_PAGE).max(1);
        let page = page.min(pages - 1);
        main.push_str("<table class=\"stages\"><tr><th>Stage</th><th>phase</th><th>Freight</th><th>verification</th><th>auto-promotion</th><th>waits for</th><th>promoted</th><th></th></tr>");
        for s in stages.iter().skip(page * LIST_PAGE).take(LIST_PAGE) {
            let sum = summarize(&pipeline, s, &state, &newest, &soaks, now);
            let name = &s.metadata.name;
            let freight: Vec<String> = sum.current.iter().map(|(a, _, _)| esc(a)).collect();
            let _ = write!(
                main,
                "<tr id=\"stage-{n}\" data-stage=\"{n}\"><td><a href=\"{base}/ui/projects/{pu}/stages/{nu}\">{n}</a></td><td>{badge}</td><td>{f}</td><td>{v}</td><td>{a}</td><td>{w}</td><td>{t}</td><td>{act}</td></tr>",
                n = esc(name),
                nu = url(name),
                badge = badge(sum.phase.tone(), sum.phase.word()),
                f = freight.join(", "),
                v = sum
                    .verification
                    .as_ref()
                    .map(|(p, _)| format!("{p:?}"))
                    .unwrap_or_default(),
                a = esc(&sum.auto_promotion),
                w = esc(&sum.waits.join("; ")),
                t = sum.promoted_at.map(|t| ago(t, now)).unwrap_or_default(),
                act = stage_actions(&r, &project, name, &sum, s.is_control_flow()),
            );
        }
        main.push_str("</table><div class=\"pager\">");
        if page > 0 {
            let _ = write!(
                main,
                "<a href=\"{base}/ui/projects/{pu}?view=list&amp;page={}\">previous</a>",
                page - 1
            );
        }
        let _ = write!(
            main,
            "<span class=\"muted\">page {} of {pages}</span>",
            page + 1
        );
        if page + 1 < pages {
            let _ = write!(
                main,
                "<a href=\"{base}/ui/projects/{pu}?view=list&amp;page={}\">next</a>",
                page + 1
            );
        }
        main.push_str("</div>");
    } else {
        let pos = layout(&warehouses, &stages);
        let (cols, rows) = pos
            .values()
            .fold((0, 0), |(c, r), &(x, y)| (c.max(x + 1), r.max(y + 1)));
        let width = cols * (CARD_W + GAP_X);
        let height = rows * (CARD_H + GAP_Y);
        let xy = |key: &str| {
            pos.get(key)
                .map(|&(c, r)| (c * (CARD_W + GAP_X), r * (CARD_H + GAP_Y)))
        };
        let _ = write!(
            main,
            "<div class=\"graph\" style=\"width:{width}px;height:{height}px\"><svg class=\"edges\" width=\"{width}\" height=\"{height}\">"
        );
        for s in &stages {
            let Some((x2, y2)) = xy(&format!("s/{}", s.metadata.name)) else {
                continue;
            };
            for parent in parents(s) {
                if let Some((x1, y1)) = xy(&parent) {
                    let (sx, sy, ex, ey) = (x1 + CARD_W, y1 + CARD_H / 2, x2, y2 + CARD_H / 2);
                    let _ = write!(
                        main,
                        "<path data-from=\"{}\" data-to=\"{}\" d=\"M{sx},{sy} C{},{sy} {},{ey} {ex},{ey}\"/>",
                        esc(&parent),
                        esc(&s.metadata.name),
                        sx + GAP_X / 2,
                        ex.saturating_sub(GAP_X / 2),
                    );
                }
            }
        }
        main.push_str("</svg>");
        for w in &warehouses {
            if let Some((x, y)) = xy(&format!("w/{}", w.metadata.name)) {
                main.push_str(&warehouse_card(
                    &r,
                    &project,
                    w,
                    &state,
                    now,
                    &format!(" style=\"left:{x}px;top:{y}px\""),
                ));
            }
        }
        for s in &stages {
            if let Some((x, y)) = xy(&format!("s/{}", s.metadata.name)) {
                let sum = summarize(&pipeline, s, &state, &newest, &soaks, now);
                main.push_str(&stage_card(
                    &r,
                    &project,
                    s,
                    &sum,
                    now,
                    &format!(" style=\"left:{x}px;top:{y}px\""),
                ));
            }
        }
        main.push_str("</div>");
    }
    let frame = r.frame(Some(&project), "Stage,Warehouse,Promotion");
    r.render(&frame, &project, &main)
}
