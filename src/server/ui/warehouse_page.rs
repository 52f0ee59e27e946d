//! A Warehouse: its subscriptions, its last discovery and what it decided (new Freight,
//! nothing new, or why no Freight was made), a failing refresh's error, its Freight, and
//! a refresh button.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::Ui;
use super::freight_page::newest_first;
use super::html::{action_button, ago, artifact_list, badge, esc, url};
use crate::server::access::Action;
use crate::server::views::artifacts;

pub(super) async fn warehouse(
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
    let Some(w) = c.manifests().warehouse(&project, &name) else {
        return ui.error_page(
            &r,
            StatusCode::NOT_FOUND,
            &format!("warehouse {name:?} not found"),
        );
    };
    let state = c.snapshot().await.unwrap_or_default();
    let now = c.now();
    let ws = state.warehouses.get(&name);
    let failure = c.refresh_failures().remove(&name);
    let refresh = if r.may(Action::Refresh, &project, None) {
        action_button(
            "Refresh",
            "POST",
            &format!(
                "/v1beta1/projects/{}/warehouses/{}/refresh",
                url(&project),
                url(&name)
            ),
            "{}",
            "reload",
            "refresh",
        )
    } else {
        String::new()
    };
    let mut main = format!(
        "<div class=\"toolbar\"><h1>{n}</h1>{kind}<span class=\"spacer\"></span>{refresh}</div><dl class=\"facts\">",
        n = esc(&name),
        kind = badge("idle", "Warehouse"),
    );
    let _ = write!(
        main,
        "<dt>last discovery</dt><dd>{}</dd><dt>outcome</dt><dd class=\"outcome\">{}</dd>",
        ws.and_then(|s| s.last_discovery)
            .map(|t| ago(t, now))
            .unwrap_or_else(|| "never".to_owned()),
        esc(ws
            .and_then(|s| s.last_outcome.as_deref())
            .unwrap_or("none yet")),
    );
    if let Some(f) = failure {
        let _ = write!(
            main,
            "<dt>failing</dt><dd class=\"failure\">{} ({} in a row, last {})</dd>",
            esc(&f.message),
            f.attempts,
            ago(f.at, now)
        );
    }
    let _ = write!(
        main,
        "<dt>policy</dt><dd>{}</dd><dt>interval</dt><dd>{}</dd></dl>",
        esc(&format!("{:?}", w.spec.freight_creation_policy)),
        esc(&format!("{}s", w.spec.interval.as_std().as_secs())),
    );
    main.push_str("<h2>Subscriptions</h2>");
    for s in &w.spec.subscriptions {
        let _ = write!(
            main,
            "<pre class=\"subscription\">{}</pre>",
            esc(&serde_json::to_string_pretty(s).unwrap_or_default())
        );
    }
    main.push_str("<h2>Its Freight</h2><table><tr><th>Freight</th><th>age</th><th>artifacts</th><th>in</th></tr>");
    for f in newest_first(&state)
        .into_iter()
        .filter(|f| f.freight.origin.name == name)
        .take(20)
    {
        let reference = kargo_core::freight::FreightReference::from(&f.freight);
        let _ = write!(
            main,
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(f.freight.alias.as_deref().unwrap_or(f.freight.name.short())),
            f.freight
                .discovered_at
                .map(|t| ago(t, now))
                .unwrap_or_default(),
            artifact_list(&artifacts(&reference)),
            esc(&f
                .status
                .currently_in
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")),
        );
    }
    main.push_str("</table>");
    let frame = r.frame(Some(&project), "Warehouse,Freight");
    r.render(&frame, &name, &main)
}
