//! A promotion: every step with its status, duration, `as`/`uses`, configuration and
//! outputs, its error; the pushed commit and the pull request as links when the outputs
//! hold them; live while it runs (the page follows the promotion's events).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value as Json;

use super::Ui;
use super::html::{action_button, badge, duration_ms, esc, url};
use crate::server::access::Action;
use crate::server::views;

/// A JSON value for a table cell: strings that are web addresses become links.
fn value_html(v: &Json) -> String {
    match v {
        Json::String(s) if s.starts_with("https://") || s.starts_with("http://") => {
            format!("<a href=\"{0}\" rel=\"noreferrer\">{0}</a>", esc(s))
        }
        Json::String(s) => format!("<code>{}</code>", esc(s)),
        other => format!(
            "<code>{}</code>",
            esc(&serde_json::to_string(other).unwrap_or_default())
        ),
    }
}

/// The commits and pull requests a promotion's outputs name, as links or IDs.
fn results(steps: &[Json]) -> String {
    let mut out = String::new();
    for s in steps {
        let Some(outputs) = s["outputs"].as_object() else {
            continue;
        };
        if let Some(commit) = outputs.get("commit").and_then(Json::as_str) {
            let _ = write!(
                out,
                "<dt>commit ({})</dt><dd><code class=\"commit\">{}</code></dd>",
                esc(s["alias"].as_str().unwrap_or("")),
                esc(commit)
            );
        }
        if let Some(pr) = outputs.get("pr") {
            let link = pr["url"].as_str().unwrap_or("");
            let id = pr["id"].to_string();
            let _ = write!(
                out,
                "<dt>pull request</dt><dd>{}</dd>",
                if link.is_empty() {
                    esc(&id)
                } else {
                    format!(
                        "<a class=\"pull-request\" href=\"{0}\" rel=\"noreferrer\">{0}</a>",
                        esc(link)
                    )
                }
            );
        }
    }
    out
}

pub(super) async fn promotion(
    State(ui): State<Arc<Ui>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
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
    let stage = state
        .promotions
        .iter()
        .rev()
        .find(|p| p.name == name)
        .map(|p| p.stage.clone())
        .or_else(|| {
            state
                .stages
                .iter()
                .find(|(_, st)| st.pending().any(|p| p.name == name))
                .map(|(s, _)| s.clone())
        });
    let plan = stage
        .as_ref()
        .and_then(|s| kargo_core::runner::plan_stage(c.manifests(), &project, s).ok());
    let Some(p) = views::promotion(&state, &name, plan.as_ref()) else {
        return ui.error_page(
            &r,
            StatusCode::NOT_FOUND,
            &format!("promotion {name:?} not found"),
        );
    };
    let stage = stage.unwrap_or_default();
    let phase = p["phase"].as_str().unwrap_or("");
    let tone = match phase {
        "Succeeded" => "ok",
        "Failed" | "Errored" => "bad",
        "Aborted" => "warn",
        _ => "busy",
    };
    let freight_id = p["freight"].as_str().unwrap_or("");
    let alias = freight_id
        .parse()
        .ok()
        .and_then(|id| state.freight.get(&id))
        .and_then(|f| f.freight.alias.clone())
        .unwrap_or_else(|| freight_id.chars().take(7).collect());
    let mut actions = String::new();
    if p["finished"] == false && r.may(Action::Abort, &project, Some(&stage)) {
        actions = action_button(
            "Abort",
            "POST",
            &format!(
                "/v1beta1/projects/{}/promotions/{}/abort",
                url(&project),
                url(&name)
            ),
            "{}",
            "reload",
            "danger abort",
        );
    }
    let base = esc(&r.base);
    let mut main = format!(
        "<div class=\"toolbar\"><h1>Promotion to <a href=\"{base}/ui/projects/{pu}/stages/{su}\">{s}</a></h1><span id=\"phase\" data-phase=\"{ph}\">{badge}</span><span class=\"spacer\"></span>{actions}</div>\
<dl class=\"facts\"><dt>name</dt><dd><code>{n}</code></dd><dt>Freight</dt><dd><b class=\"freight-alias\">{a}</b> <span class=\"muted\">{fid}</span></dd>\
<dt>trigger</dt><dd>{trig}</dd><dt>by</dt><dd class=\"actor\">{actor}</dd>{msg}{results}</dl>",
        pu = url(&project),
        su = url(&stage),
        s = esc(&stage),
        ph = esc(phase),
        badge = badge(tone, phase),
        n = esc(&name),
        a = esc(&alias),
        fid = esc(freight_id),
        trig = esc(p["trigger"].as_str().unwrap_or("")),
        actor = esc(p["actor"].as_str().unwrap_or("auto-promotion")),
        msg = p["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .map(|m| format!("<dt>message</dt><dd class=\"message\">{}</dd>", esc(m)))
            .unwrap_or_default(),
        results = results(p["steps"].as_array().map(Vec::as_slice).unwrap_or_default()),
    );
    main.push_str("<h2>Steps</h2><table class=\"steps\"><tr><th>#</th><th>as</th><th>uses</th><th>status</th><th>duration</th><th>attempts</th><th>message</th></tr>");
    for (i, s) in p["steps"].as_array().into_iter().flatten().enumerate() {
        let status = s["status"].as_str().unwrap_or("Pending");
        let tone = match status {
            "Succeeded" | "Skipped" => "ok",
            "Failed" | "Errored" => "bad",
            "Running" => "busy",
            _ => "idle",
        };
        let alias = s["alias"].as_str().unwrap_or("");
        let _ = write!(
            main,
            "<tr class=\"step\" data-step=\"{al}\" data-status=\"{st}\"><td>{n}</td><td>{al}</td><td><code>{u}</code></td><td class=\"status\">{b}</td><td>{d}</td><td>{at}</td><td>{m}</td></tr>",
            n = i + 1,
            al = esc(alias),
            st = esc(status),
            u = esc(s["uses"].as_str().unwrap_or("")),
            b = badge(tone, status),
            d = s["durationMs"]
                .as_i64()
                .map(duration_ms)
                .unwrap_or_default(),
            at = s["attempts"].as_u64().unwrap_or(0),
            m = esc(s["message"].as_str().unwrap_or("")),
        );
        let config = s["config"].as_object().filter(|c| !c.is_empty());
        let outputs = s["outputs"].as_object().filter(|o| !o.is_empty());
        if config.is_some() || outputs.is_some() {
            let _ = write!(
                main,
                "<tr class=\"detail\"><td></td><td colspan=\"6\"><details id=\"step-{}\"><summary>config and outputs</summary>",
                i + 1
            );
            if let Some(cfg) = config {
                let _ = write!(
                    main,
                    "<div class=\"muted\">config</div><pre>{}</pre>",
                    esc(&serde_json::to_string_pretty(cfg).unwrap_or_default())
                );
            }
            if let Some(out) = outputs {
                main.push_str("<div class=\"muted\">outputs</div><table class=\"outputs\">");
                for (k, v) in out {
                    let _ = write!(
                        main,
                        "<tr><td>{}</td><td>{}</td></tr>",
                        esc(k),
                        value_html(v)
                    );
                }
                main.push_str("</table>");
            }
            main.push_str("</details></td></tr>");
        }
    }
    main.push_str("</table>");
    let frame = r.frame(Some(&project), "Promotion");
    r.render(&frame, &format!("Promotion to {stage}"), &main)
}
