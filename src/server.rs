//! HTTP for a running [`Service`](crate::service::Service) (feature `server`): an axum
//! [`Router`] an embedder nests under a path of its own service, and that `promoter serve`
//! serves as it is.
//!
//! - `POST /webhook/<provider>/<token>`: the Project's webhook receivers
//!   ([`kargo_sources::webhook::WebhookRouter`]). At most [`MAX_BODY_BYTES`] + 1 bytes of a
//!   body are read; a rejection answers the receiver's status (401, 403, 404, 413, 400,
//!   422) with `{"error": ...}` and is logged without the body. An accepted request
//!   answers 202 with the Warehouses it asked the service to refresh (200 when none); the
//!   service then refreshes exactly those and auto-promotes at once. A pull request merged
//!   or closed (`pullRequests` in the answer) wakes the promotions waiting on it in
//!   `git-wait-for-pr` ([`Controller::wake_promotions`](crate::Controller::wake_promotions)),
//!   which poll it at once instead of after their poll interval.
//! - `POST /refresh/warehouse/<name>`: asks for a refresh of one Warehouse; needs
//!   `Authorization: Bearer <token>` with [`ServerOptions::refresh_token`] (compared in
//!   constant time), and is refused (403) when no token is configured.
//! - `GET /healthz`: 200 `ok`.
//!
//! ```
//! # fn demo(handle: kargo::service::ServiceHandle) {
//! use kargo::server::{router, ServerOptions};
//! use kargo::sources::webhook::WebhookRouter;
//!
//! use std::collections::BTreeMap;
//! let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
//! let webhooks = WebhookRouter::from_receivers("demo", &[], &secrets);
//! let app = axum::Router::new()
//!     .nest("/kargo", router(handle, webhooks, ServerOptions::default()));
//! # let _ = app;
//! # }
//! ```

pub mod access;
pub mod actions;
pub mod api;
mod auth;
pub mod openapi;
pub mod preview;
pub mod query;
pub mod session;
pub mod ui;
pub mod views;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use kargo_core::secret::Redacted;
use kargo_sources::webhook::{MAX_BODY_BYTES, WebhookRequest, WebhookRouter, secrets_equal};
use serde_json::{Value as Json, json};

use crate::service::{RefreshRequest, ServiceHandle};

/// Settings of the HTTP routes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The bearer token of `POST /refresh/warehouse/<name>`; `None` turns the endpoint off
    /// (403).
    pub refresh_token: Option<Redacted<String>>,
    /// The tokens of the REST API ([`api`]) and the UI; `None` leaves both out unless
    /// [`insecure_anonymous`](Self::insecure_anonymous) is on.
    pub access: Option<Arc<access::AccessTable>>,
    /// Serves the API and the UI to callers without a token too, as an admin named
    /// `anonymous` ([`access::Principal::anonymous_admin`]). For a server listening on a
    /// loopback address only: the front end must check that (`promoter serve` refuses
    /// any other address).
    pub insecure_anonymous: bool,
}

impl ServerOptions {
    /// These options with a refresh token (an empty one turns the endpoint off).
    pub fn with_refresh_token(mut self, token: Option<String>) -> Self {
        self.refresh_token = token.filter(|t| !t.is_empty()).map(Redacted::new);
        self
    }

    /// These options with the REST API ([`api`]) on, for the callers `table` knows.
    pub fn with_access(mut self, table: access::AccessTable) -> Self {
        self.access = Some(Arc::new(table));
        self
    }

    /// These options with the API and UI open to callers without a token (see
    /// [`insecure_anonymous`](Self::insecure_anonymous)).
    pub fn with_insecure_anonymous_access(mut self) -> Self {
        self.insecure_anonymous = true;
        self
    }
}

struct App {
    handle: ServiceHandle,
    webhooks: WebhookRouter,
    warehouses: Vec<kargo_core::model::Warehouse>,
    options: ServerOptions,
}

/// The routes (see the module documentation) for the service behind `handle`.
pub fn router(handle: ServiceHandle, webhooks: WebhookRouter, options: ServerOptions) -> Router {
    let controller = handle.controller();
    let warehouses = controller
        .manifests()
        .warehouses(controller.project())
        .cloned()
        .collect();
    let api = (options.access.is_some() || options.insecure_anonymous).then(|| {
        let table = options.access.clone().unwrap_or_default();
        let anonymous = options
            .insecure_anonymous
            .then(access::Principal::anonymous_admin);
        if anonymous.is_some() {
            tracing::warn!("the API and UI are open to callers without a token (insecure mode)");
        }
        let auth = Arc::new(auth::Auth::new(
            table,
            Arc::new(session::Sessions::default()),
            anonymous,
        ));
        let hub = Arc::new(watch::WatchHub::new(handle.clone()));
        if tokio::runtime::Handle::try_current().is_ok() {
            hub.start();
        }
        let json_api = api::routes(handle.clone(), auth.clone(), hub)
            .merge(actions::routes(handle.clone(), auth.clone()))
            .merge(preview::routes(handle.clone(), auth.clone()))
            .layer(axum::middleware::map_response(json_rejections));
        json_api.merge(ui::routes(handle.clone(), auth))
    });
    let app = Arc::new(App {
        handle,
        webhooks,
        warehouses,
        options,
    });
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/refresh/warehouse/{name}", post(refresh))
        .route("/webhook/{*rest}", any(webhook))
        .with_state(app)
        .layer(axum::middleware::map_response(json_rejections))
        .merge(openapi::routes());
    match api {
        Some(api) => routes.merge(api),
        None => routes,
    }
}

/// An extractor's rejection (a path segment that is not UTF-8, say) as the API's other
/// errors are: `{"error": ...}` with its status, instead of axum's plain text.
async fn json_rejections(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain || !response.status().is_client_error() {
        return response;
    }
    let status = response.status();
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned(),
    };
    error(status, &text)
}

fn json_response(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn error(status: StatusCode, msg: &str) -> Response {
    json_response(status, json!({ "error": msg }))
}

/// Reads at most `limit` bytes of `body`.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, axum::Error> {
    use futures::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    Ok(buf)
}

async fn webhook(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    // Only the provider segment is logged: the rest of the path is a secret.
    let provider: String = uri
        .path()
        .rsplit("/webhook/")
        .next()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .chars()
        .take(32)
        .collect();
    let body = match read_limited(body, MAX_BODY_BYTES + 1).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(provider, error = %e, "webhook rejected: 400 cannot read the body");
            return error(StatusCode::BAD_REQUEST, "cannot read the request body");
        }
    };
    // The receivers know their paths as `/webhook/...`, wherever the router is nested.
    let path = uri.path();
    let path = match path.find("/webhook/") {
        Some(i) => &path[i..],
        None => path,
    };
    let path = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let req = WebhookRequest {
        method: method.as_str().to_owned(),
        path,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    match app.webhooks.handle(&req, &app.warehouses) {
        Ok(o) => {
            // A pull request merged or closed: the promotions waiting on it poll now.
            let wake_keys = o.wake_keys();
            let woke = !wake_keys.is_empty() && app.handle.controller().wake_promotions(&wake_keys);
            let queued = !o.warehouses_to_refresh.is_empty();
            tracing::info!(
                receiver = %o.receiver,
                provider = %o.provider,
                event = %o.event,
                refreshing = %o.warehouses_to_refresh.join(","),
                pull_requests = o.pull_requests.len(),
                woke,
                "webhook accepted"
            );
            if queued {
                let mut request = RefreshRequest::new(
                    o.warehouses_to_refresh.clone(),
                    format!("webhook {}", o.receiver),
                )
                .with_tags(
                    o.artifacts
                        .iter()
                        .flat_map(|a| a.tags.iter().cloned())
                        .collect(),
                );
                request.received = received;
                if !app.handle.request(request) {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "the service has stopped");
                }
            }
            json_response(
                if queued {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                },
                json!({
                    "receiver": o.receiver,
                    "provider": o.provider.as_str(),
                    "event": o.event,
                    "refreshing": o.warehouses_to_refresh,
                    "pullRequests": o.pull_requests.iter().map(|p| json!({
                        "number": p.number, "merged": p.merged, "repoURLs": p.repo_urls,
                    })).collect::<Vec<_>>(),
                    "wokePromotions": woke,
                }),
            )
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::warn!(provider, status = status.as_u16(), error = %e, "webhook rejected");
            error(status, &e.to_string())
        }
    }
}

async fn refresh(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let received = Instant::now();
    let Some(token) = &app.options.refresh_token else {
        return error(
            StatusCode::FORBIDDEN,
            "the refresh API is off: no refresh token is configured",
        );
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return error(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    if !secrets_equal(given, token.expose()) {
        tracing::warn!("refresh API: rejected a request with a wrong bearer token");
        return error(StatusCode::FORBIDDEN, "invalid bearer token");
    }
    if !app.warehouses.iter().any(|w| w.metadata.name == name) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no Warehouse {name:?} in the project"),
        );
    }
    tracing::info!(warehouse = %name, "refresh API: refresh requested");
    let mut request = RefreshRequest::new(vec![name.clone()], "refresh API");
    request.received = received;
    if !app.handle.request(request) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the service has stopped");
    }
    json_response(StatusCode::ACCEPTED, json!({ "refreshing": [name] }))
}
