//! The Freight timeline: newest first, each Freight's artifacts and age, the Stages that
//! hold it now, where it was verified and approved. With `?stage=s` (choosing what to
//! promote to `s`), Freight `s` may not receive is marked with the reason, and the rest
//! link to the promote page.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path as UrlPath, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use kargo_core::pipeline::{FreightRecord, PipelineError, PromotionTrigger};

use super::Ui;
use super::html::{action_button, ago, artifact_list, esc, url};
use super::stage_summary::refusal;
use crate::server::access::Action;
use crate::server::query::query_value;
use crate::server::views::artifacts;

/// Freight per page.
pub(super) const FREIGHT_PAGE: usize = 50;

/// Freight newest first (discovery time, then ID).
pub(super) fn newest_first(state: &kargo_core::pipeline::ProjectState) -> Vec<&FreightRecord> {
    let mut list: Vec<&FreightRecord> = state.freight.values().collect();
    list.sort_by(|a, b| {
        b.freight
            .discovered_at
            .cmp(&a.freight.discovered_at)
            .then_with(|| b.freight.name.cmp(&a.freight.name))
    });
    list
}

pub(super) async fn timeline(
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
    let stage = query_value(&uri, "stage").filter(|s| c.manifests().stage(&project, s).is_some());
    let list = newest_first(&state);
    let pages = list.len().div_ceil(FREIGHT_PAGE).max(1);
    let page: usize = query_value(&uri, "page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(pages - 1);
    let base = esc(&r.base);
    let pu = url(&project);
    let mut main = match &stage {
        Some(s) => format!(
            "<div class=\"toolbar\"><h1>Promote to {}</h1><span class=\"muted\">choose the Freight</span></div>",
            esc(s)
        ),
        None => format!(
            "<div class=\"toolbar\"><h1>Freight</h1><span class=\"muted\">{} in all, newest first</span></div>",
            list.len()
        ),
    };
    main.push_str("<table class=\"freight\"><tr><th>Freight</th><th>age</th><th>artifacts</th><th>in</th><th>verified in</th><th>approved for</th>");
    if stage.is_some() {
        main.push_str("<th></th>");
    }
    main.push_str("</tr>");
    for f in list.iter().skip(page * FREIGHT_PAGE).take(FREIGHT_PAGE) {
        let id = &f.freight.name;
        let alias = f.freight.alias.clone().unwrap_or_default();
        let refused = stage.as_ref().and_then(|s| {
            pipeline
                .request_promotion(&state, s, id.as_str(), PromotionTrigger::Manual, None, now)
                .err()
        });
        let in_stages: Vec<String> = f.status.currently_in.keys().map(|s| esc(s)).collect();
        let verified: Vec<String> = f.status.verified_in.keys().map(|s| esc(s)).collect();
        let approved: Vec<String> = f
            .status
            .approved_for
            .iter()
            .map(|(s, a)| match &a.actor {
                Some(who) => format!("{} <span class=\"muted\">by {}</span>", esc(s), esc(who)),
                None => esc(s),
            })
            .collect();
        let reference = kargo_core::freight::FreightReference::from(&f.freight);
        let _ = write!(
            main,
            "<tr id=\"freight-{id}\" data-freight=\"{id}\" data-alias=\"{a}\"{cls}><td><b>{a}</b><div class=\"muted\">{short}</div></td><td>{age}</td><td>{arts}</td><td>{ins}</td><td>{ver}</td><td>{app}</td>",
            id = esc(id.as_str()),
            a = esc(&alias),
            cls = if refused.is_some() {
                " class=\"unavailable\""
            } else {
                ""
            },
            short = esc(id.short()),
            age = f
                .freight
                .discovered_at
                .map(|t| ago(t, now))
                .unwrap_or_default(),
            arts = artifact_list(&artifacts(&reference)),
            ins = in_stages.join(", "),
            ver = verified.join(", "),
            app = approved.join(", "),
        );
        if let Some(s) = &stage {
            match &refused {
                Some(e) => {
                    // Only an approval can make Freight available that the Stage does
                    // not request from elsewhere; offer it to who may approve.
                    let approvable = matches!(e, PipelineError::NotAvailable { .. })
                        && r.may(Action::Approve, &project, Some(s));
                    let approve = if approvable {
                        action_button(
                            &format!("Approve for {s}"),
                            "POST",
                            &format!(
                                "/v1beta1/projects/{pu}/freight/{}/approve",
                                url(id.as_str())
                            ),
                            &serde_json::json!({ "stage": s }).to_string(),
                            "reload",
                            "secondary approve",
                        )
                    } else {
                        String::new()
                    };
                    let _ = write!(
                        main,
                        "<td class=\"reason\">{} {approve}</td>",
                        esc(&refusal(e))
                    );
                }
                None if r.may(Action::Promote, &project, Some(s)) => {
                    let _ = write!(
                        main,
                        "<td><a class=\"button choose\" href=\"{base}/ui/projects/{pu}/stages/{su}/promote?freight={fu}\">Promote</a></td>",
                        su = url(s),
                        fu = url(id.as_str()),
                    );
                }
                None => main.push_str("<td></td>"),
            }
        }
        main.push_str("</tr>");
    }
    main.push_str("</table><div class=\"pager\">");
    let stage_q = stage
        .as_ref()
        .map(|s| format!("stage={}&amp;", url(s)))
        .unwrap_or_default();
    if page > 0 {
        let _ = write!(
            main,
            "<a href=\"{base}/ui/projects/{pu}/freight?{stage_q}page={}\">newer</a>",
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
            "<a href=\"{base}/ui/projects/{pu}/freight?{stage_q}page={}\">older</a>",
            page + 1
        );
    }
    main.push_str("</div>");
    let frame = r.frame(Some(&project), "Freight,Stage");
    r.render(&frame, "Freight", &main)
}
