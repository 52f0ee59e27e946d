//! Promote: without `?freight`, the Freight the Stage may receive (the timeline with the
//! reasons for the rest); with it, the Freight compared with what the Stage holds and the
//! dry-run diff of every file the promotion would change (loaded from the API's preview),
//! then the button that promotes.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::Ui;
use super::html::{action_button, esc, url};
use crate::server::access::Action;
use crate::server::query::query_value;

pub(super) async fn promote(
    State(ui): State<Arc<Ui>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = match ui.request(&original, &uri, &headers, Some(&project)) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let c = ui.handle.controller();
    if c.manifests().stage(&project, &stage).is_none() {
        return ui.error_page(
            &r,
            StatusCode::NOT_FOUND,
            &format!("stage {stage:?} not found"),
        );
    }
    if !r.may(Action::Promote, &project, Some(&stage)) {
        return ui.error_page(
            &r,
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not promote to Stage {stage:?}",
                r.principal().name()
            ),
        );
    }
    let Some(freight) = query_value(&uri, "freight").filter(|f| !f.is_empty()) else {
        let to = format!(
            "{}/ui/projects/{}/freight?stage={}",
            r.base,
            url(&project),
            url(&stage)
        );
        return Redirect::to(&to).into_response();
    };
    let state = c.snapshot().await.unwrap_or_default();
    let alias = c
        .pipeline()
        .find_freight(&state, &freight)
        .ok()
        .and_then(|f| f.freight.alias.clone())
        .unwrap_or_else(|| freight.clone());
    let pu = url(&project);
    let su = url(&stage);
    let body = serde_json::json!({ "freight": freight }).to_string();
    let mut button = action_button(
        &format!("Promote {alias} to {stage}"),
        "POST",
        &format!("/v1beta1/projects/{pu}/stages/{su}/promotions"),
        &body,
        "promotion",
        "confirm",
    );
    // Enabled once the preview is in.
    button = button.replacen("<button ", "<button id=\"confirm\" disabled ", 1);
    let main = format!(
        "<div class=\"toolbar\"><h1>Promote <b class=\"freight-alias\">{a}</b> to {s}</h1><span class=\"spacer\"></span>{button}\
<a class=\"button secondary\" href=\"{b}/ui/projects/{pu}/freight?stage={su}\">Choose other Freight</a></div>\
<div id=\"preview\" data-path=\"/v1beta1/projects/{pu}/stages/{su}/preview?freight={fu}\"><p class=\"muted\">Working out what would change…</p></div>",
        a = esc(&alias),
        s = esc(&stage),
        b = esc(&r.base),
        fu = url(&freight),
    );
    let frame = r.frame(Some(&project), "");
    r.render(&frame, &format!("Promote to {stage}"), &main)
}
