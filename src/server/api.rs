//! The REST API's reads (issue 18's first part), at paths shaped like Kargo's
//! `/v1beta1/projects/{project}/...`, behind bearer tokens ([`super::access`]):
//!
//! | path | answer |
//! |---|---|
//! | `GET /v1beta1/projects` | the Projects this server runs, each with its counts |
//! | `GET /v1beta1/projects/{p}/stages` | Stages by name, paged |
//! | `GET /v1beta1/projects/{p}/stages/{s}` | one Stage: its manifest and state |
//! | `GET /v1beta1/projects/{p}/stages/{s}/promotions` | its promotions, newest first, paged |
//! | `GET /v1beta1/projects/{p}/warehouses` | Warehouses by name, paged |
//! | `GET /v1beta1/projects/{p}/warehouses/{w}` | one Warehouse: its manifest and state |
//! | `GET /v1beta1/projects/{p}/freight` | Freight, newest first, paged |
//! | `GET /v1beta1/projects/{p}/freight/{name or alias}` | one Freight |
//! | `GET /v1beta1/projects/{p}/promotions/{name}` | one promotion, queued, running or finished, with its steps ([`views::promotion`]) |
//!
//! Lists take `?limit=N` (default 100, at most 1,000) and `?continue=TOKEN` (from the
//! previous page's `continue`), and answer `{"items": [...], "continue": TOKEN|null}`.
//! Without a known token: 401; without the viewer role on the Project: 403; an unknown
//! Project, Stage, Warehouse or Freight: 404 naming it; a bad `limit` or `continue`: 400
//! naming the parameter. Every answer is JSON.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kargo_core::pipeline::ProjectState;
use serde_json::{Value as Json, json};

use super::access::Action;
use super::auth::Auth;
use super::query::value_in;
use super::views::{self, resource, to_json};
use super::watch::{Kind, WatchFilter, WatchHub, kinds_param, wants_watch};
use super::{error, json_response};
use crate::service::ServiceHandle;

/// The default page size of a list.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page a list answers.
pub const MAX_PAGE: usize = 1_000;

struct Api {
    handle: ServiceHandle,
    auth: Arc<Auth>,
    hub: Arc<WatchHub>,
}

/// The API's routes, to merge into the server's router.
pub(super) fn routes(handle: ServiceHandle, auth: Arc<Auth>, hub: Arc<WatchHub>) -> Router {
    let api = Arc::new(Api { handle, auth, hub });
    Router::new()
        .route("/v1beta1/projects", get(projects))
        .route("/v1beta1/projects/{project}/stages", get(stages))
        .route("/v1beta1/projects/{project}/stages/{stage}", get(stage))
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/promotions",
            get(promotions),
        )
        .route("/v1beta1/projects/{project}/warehouses", get(warehouses))
        .route(
            "/v1beta1/projects/{project}/warehouses/{warehouse}",
            get(warehouse),
        )
        .route("/v1beta1/projects/{project}/freight", get(freight_list))
        .route(
            "/v1beta1/projects/{project}/freight/{freight}",
            get(freight),
        )
        .route(
            "/v1beta1/projects/{project}/promotions/{promotion}",
            get(promotion),
        )
        .route("/v1beta1/projects/{project}/watch", get(watch_all))
        .with_state(api)
}

/// A refused request: its status and what to tell the caller.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

type Answer = Result<Response, ApiError>;

impl Api {
    /// The caller may read `project`, which this server runs (401, 403, 404 otherwise).
    fn readable(&self, headers: &HeaderMap, project: &str) -> Result<(), ApiError> {
        let caller = self.auth.reader(headers)?.principal;
        if project != self.handle.controller().project() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("project {project:?} not found"),
            ));
        }
        if !caller.may(Action::View, project, None) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} may not read project {project:?}", caller.name()),
            ));
        }
        Ok(())
    }

    async fn state(&self) -> Result<Arc<ProjectState>, ApiError> {
        self.handle.controller().snapshot().await.map_err(|e| {
            tracing::warn!(error = %e, "API: cannot read the state");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the state cannot be read now",
            )
        })
    }
}

fn ok(body: Json) -> Response {
    json_response(StatusCode::OK, body)
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("{what} {name:?} not found"))
}

/// `limit` and `continue` of a list request.
struct Page {
    limit: usize,
    offset: usize,
}

fn page(uri: &Uri) -> Result<Page, ApiError> {
    let query = uri.query().unwrap_or("");
    let number = |key: &str, wrong: &str| -> Result<Option<usize>, ApiError> {
        match value_in(query, key) {
            None => Ok(None),
            Some(v) => v
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .map(Some)
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("{key}: {wrong}"))),
        }
    };
    let limit_wrong = format!("expected a number from 1 to {MAX_PAGE}");
    let limit = number("limit", &limit_wrong)?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit: {limit_wrong}"),
        ));
    }
    let offset = number("continue", "expected the token of the previous page")?.unwrap_or(0);
    Ok(Page { limit, offset })
}

/// One page of `items` (only that page rendered), with the token of the next one and
/// the `resourceVersion` a watch continues from.
fn paged<T>(items: Vec<T>, page: &Page, version: u64, render: impl Fn(T) -> Json) -> Json {
    let total = items.len();
    let end = page.offset.saturating_add(page.limit).min(total);
    let start = page.offset.min(total);
    let next = (end < total).then(|| end.to_string());
    json!({
        "items": items.into_iter().skip(start).take(end - start).map(render).collect::<Vec<_>>(),
        "continue": next,
        "total": total,
        "resourceVersion": version.to_string(),
    })
}

/// What a list request asks for: a watch (answered), or a page of the state.
enum Listing {
    Watch(Response),
    Read {
        page: Page,
        version: u64,
        state: Arc<ProjectState>,
    },
}

impl Api {
    /// A list request on `project`: with `?watch=true`, the stream of the changes
    /// `filter` wants; else its page, the version a watch continues from (read before the
    /// state) and the state.
    async fn listing(
        &self,
        headers: &HeaderMap,
        project: &str,
        uri: &Uri,
        filter: WatchFilter,
    ) -> Result<Listing, ApiError> {
        self.readable(headers, project)?;
        if wants_watch(uri) {
            return Ok(Listing::Watch(self.hub.respond(uri, headers, filter).await));
        }
        let page = page(uri)?;
        let version = self.hub.version().await;
        let state = self.state().await?;
        Ok(Listing::Read {
            page,
            version,
            state,
        })
    }
}

fn of_kind(kind: Kind) -> WatchFilter {
    WatchFilter {
        kinds: vec![kind],
        ..WatchFilter::default()
    }
}

async fn projects(State(api): State<Arc<Api>>, headers: HeaderMap) -> Answer {
    let caller = api.auth.reader(&headers)?.principal;
    let c = api.handle.controller();
    let project = c.project();
    let items: Vec<Json> = if caller.may(Action::View, project, None) {
        vec![json!({
            "name": project,
            "stages": c.manifests().stages(project).count(),
            "warehouses": c.manifests().warehouses(project).count(),
        })]
    } else {
        Vec::new()
    };
    Ok(ok(json!({ "items": items })))
}

async fn stages(
    State(api): State<Arc<Api>>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let (page, version, state) = match api
        .listing(&headers, &project, &uri, of_kind(Kind::Stage))
        .await?
    {
        Listing::Watch(r) => return Ok(r),
        Listing::Read {
            page,
            version,
            state,
        } => (page, version, state),
    };
    let mut list: Vec<_> = api
        .handle
        .controller()
        .manifests()
        .stages(&project)
        .collect();
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(ok(paged(list, &page, version, |s| {
        resource(
            &s.metadata.name,
            &s.spec,
            &state.stages.get(&s.metadata.name),
        )
    })))
}

async fn stage(
    State(api): State<Arc<Api>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    api.readable(&headers, &project)?;
    let c = api.handle.controller();
    let s = c
        .manifests()
        .stage(&project, &name)
        .ok_or_else(|| not_found("stage", &name))?;
    let state = api.state().await?;
    Ok(ok(resource(&name, &s.spec, &state.stages.get(&name))))
}

async fn promotions(
    State(api): State<Arc<Api>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let filter = WatchFilter {
        kinds: vec![Kind::Promotion],
        stage: Some(name.clone()),
        ..WatchFilter::default()
    };
    let known = api
        .handle
        .controller()
        .manifests()
        .stage(&project, &name)
        .is_some();
    let (page, version, state) = match api.listing(&headers, &project, &uri, filter).await? {
        Listing::Watch(_) if !known => return Err(not_found("stage", &name)),
        Listing::Watch(r) => return Ok(r),
        Listing::Read { .. } if !known => return Err(not_found("stage", &name)),
        Listing::Read {
            page,
            version,
            state,
        } => (page, version, state),
    };
    let list: Vec<_> = state
        .promotions
        .iter()
        .rev()
        .filter(|p| p.stage == name)
        .collect();
    Ok(ok(paged(list, &page, version, to_json)))
}

async fn warehouses(
    State(api): State<Arc<Api>>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let (page, version, state) = match api
        .listing(&headers, &project, &uri, of_kind(Kind::Warehouse))
        .await?
    {
        Listing::Watch(r) => return Ok(r),
        Listing::Read {
            page,
            version,
            state,
        } => (page, version, state),
    };
    let mut list: Vec<_> = api
        .handle
        .controller()
        .manifests()
        .warehouses(&project)
        .collect();
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(ok(paged(list, &page, version, |w| {
        resource(
            &w.metadata.name,
            &w.spec,
            &state.warehouses.get(&w.metadata.name),
        )
    })))
}

async fn warehouse(
    State(api): State<Arc<Api>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    api.readable(&headers, &project)?;
    let c = api.handle.controller();
    let w = c
        .manifests()
        .warehouse(&project, &name)
        .ok_or_else(|| not_found("warehouse", &name))?;
    let state = api.state().await?;
    Ok(ok(resource(&name, &w.spec, &state.warehouses.get(&name))))
}

async fn freight_list(
    State(api): State<Arc<Api>>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let (page, version, state) = match api
        .listing(&headers, &project, &uri, of_kind(Kind::Freight))
        .await?
    {
        Listing::Watch(r) => return Ok(r),
        Listing::Read {
            page,
            version,
            state,
        } => (page, version, state),
    };
    let mut list: Vec<_> = state.freight.values().collect();
    list.sort_by(|a, b| {
        b.freight
            .discovered_at
            .cmp(&a.freight.discovered_at)
            .then_with(|| b.freight.name.cmp(&a.freight.name))
    });
    Ok(ok(paged(list, &page, version, to_json)))
}

async fn freight(
    State(api): State<Arc<Api>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    api.readable(&headers, &project)?;
    let state = api.state().await?;
    let found = state.freight.values().find(|r| {
        r.freight.name.to_string() == name || r.freight.alias.as_deref() == Some(name.as_str())
    });
    found
        .map(|r| ok(to_json(r)))
        .ok_or_else(|| not_found("freight", &name))
}

async fn promotion(
    State(api): State<Arc<Api>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    api.readable(&headers, &project)?;
    if wants_watch(&uri) {
        let filter = WatchFilter {
            kinds: vec![Kind::Promotion],
            name: Some(name.clone()),
            ..WatchFilter::default()
        };
        return Ok(api.hub.respond(&uri, &headers, filter).await);
    }
    let state = api.state().await?;
    let c = api.handle.controller();
    let stage = state
        .promotions
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.stage.clone())
        .or_else(|| {
            state
                .stages
                .iter()
                .find(|(_, st)| st.pending().any(|r| r.name == name))
                .map(|(s, _)| s.clone())
        });
    let plan = stage.and_then(|s| kargo_core::runner::plan_stage(c.manifests(), &project, &s).ok());
    views::promotion(&state, &name, plan.as_ref())
        .map(ok)
        .ok_or_else(|| not_found("promotion", &name))
}

/// Every change of the project (`?kinds=Stage,Freight,...` narrows it): the stream the
/// UI's pages listen to. Always a watch.
async fn watch_all(
    State(api): State<Arc<Api>>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    api.readable(&headers, &project)?;
    let filter = WatchFilter {
        kinds: kinds_param(&uri),
        ..WatchFilter::default()
    };
    Ok(api.hub.respond(&uri, &headers, filter).await)
}
