//! The web UI: server-rendered pages and a little of our own JavaScript (no third-party
//! code, every asset embedded in the binary), under `/ui/`, beside the REST API it calls
//! for every action. Pages:
//!
//! | path | page |
//! |---|---|
//! | `/ui/` | Projects, each with its Stages' and Warehouses' health |
//! | `/ui/projects/{p}` | the pipeline: graph (`?view=list` for the paged list) |
//! | `/ui/projects/{p}/freight` | the Freight timeline (`?stage=s`: what `s` may receive, and why not) |
//! | `/ui/projects/{p}/stages/{s}` | a Stage: promotions, verifications, Freight history |
//! | `/ui/projects/{p}/stages/{s}/promote?freight=f` | promote, with the comparison and the dry-run diff |
//! | `/ui/projects/{p}/promotions/{name}` | a promotion, step by step, live |
//! | `/ui/projects/{p}/warehouses/{w}` | a Warehouse: subscriptions, last discovery, refresh |
//! | `/ui/login`, `/ui/logout` | a session from a token (see [`super::session`]) |
//!
//! A page shows only the actions its caller may take. Open pages follow the project's
//! live events ([`super::watch`]) and re-render their `main` element (requested with
//! `X-Fragment: main`) when something they show changed. Links are relative to where the
//! router is nested (the difference between the request's original and routed paths).

mod assets;
mod freight_page;
pub mod html;
mod login;
mod pipeline_page;
mod promote_page;
mod promotion_page;
mod stage_page;
pub mod stage_summary;
mod warehouse_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::access::{Action, Principal};
use super::auth::{Auth, Caller};
use crate::service::ServiceHandle;
use html::{Frame, esc, page};

/// What every page handler shares.
pub(crate) struct Ui {
    handle: ServiceHandle,
    auth: Arc<Auth>,
}

/// The UI's routes, to merge into the server's router.
pub(super) fn routes(handle: ServiceHandle, auth: Arc<Auth>) -> Router {
    let ui = Arc::new(Ui { handle, auth });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("ui/") }))
        .route("/ui/", get(pipeline_page::projects))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/{file}", get(assets::asset))
        .route("/ui/projects/{project}", get(pipeline_page::pipeline))
        .route(
            "/ui/projects/{project}/freight",
            get(freight_page::timeline),
        )
        .route(
            "/ui/projects/{project}/stages/{stage}",
            get(stage_page::stage),
        )
        .route(
            "/ui/projects/{project}/stages/{stage}/promote",
            get(promote_page::promote),
        )
        .route(
            "/ui/projects/{project}/promotions/{promotion}",
            get(promotion_page::promotion),
        )
        .route(
            "/ui/projects/{project}/warehouses/{warehouse}",
            get(warehouse_page::warehouse),
        )
        .with_state(ui)
}

/// The path the router is nested under: the original path minus the routed one.
pub(crate) fn base_of(original: &OriginalUri, uri: &Uri) -> String {
    original
        .path()
        .strip_suffix(uri.path())
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned()
}

/// A page request's context: who asks, where the UI lives, whether only `main` is
/// wanted.
pub(crate) struct Request {
    pub caller: Caller,
    pub base: String,
    pub fragment: bool,
}

impl Request {
    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.caller.principal
    }

    /// Whether the caller may take `action` in `project` (on `stage`).
    pub fn may(&self, action: Action, project: &str, stage: Option<&str>) -> bool {
        self.caller.principal.may(action, project, stage)
    }

    /// The frame of a page of `project` that refreshes on `watch`.
    pub fn frame<'a>(&'a self, project: Option<&'a str>, watch: &'a str) -> Frame<'a> {
        Frame {
            base: &self.base,
            user: self.caller.principal.name(),
            csrf: self.caller.csrf.as_deref(),
            project,
            watch,
        }
    }

    /// The page: whole, or only `main` for a live refresh.
    pub fn render(&self, frame: &Frame<'_>, title: &str, main: &str) -> Response {
        let body = if self.fragment {
            main.to_owned()
        } else {
            page(frame, title, main)
        };
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

impl Ui {
    /// The context of a page request: its caller (a page without one redirects to the
    /// login page, which comes back here) and may read `project` (403/404 pages
    /// otherwise).
    // The error is the page a handler answers at once; boxing it would only add an
    // allocation to every refused request.
    #[allow(clippy::result_large_err)]
    pub(crate) fn request(
        &self,
        original: &OriginalUri,
        uri: &Uri,
        headers: &HeaderMap,
        project: Option<&str>,
    ) -> Result<Request, Response> {
        let base = base_of(original, uri);
        let fragment = headers
            .get("x-fragment")
            .is_some_and(|v| v.as_bytes() == b"main");
        let caller = match self.auth.reader(headers) {
            Ok(c) => c,
            Err(_) => {
                let next = original
                    .path_and_query()
                    .map_or_else(|| original.path().to_owned(), |p| p.as_str().to_owned());
                let to = format!("{base}/ui/login?next={}", html::url(&next));
                return Err(Redirect::to(&to).into_response());
            }
        };
        let request = Request {
            caller,
            base,
            fragment,
        };
        if let Some(p) = project {
            if p != self.handle.controller().project() {
                return Err(self.error_page(
                    &request,
                    StatusCode::NOT_FOUND,
                    &format!("project {p:?} not found"),
                ));
            }
            if !request.may(Action::View, p, None) {
                return Err(self.error_page(
                    &request,
                    StatusCode::FORBIDDEN,
                    &format!("{} may not read project {p:?}", request.principal().name()),
                ));
            }
        }
        Ok(request)
    }

    /// A page saying what went wrong, with `status`.
    pub(crate) fn error_page(
        &self,
        request: &Request,
        status: StatusCode,
        message: &str,
    ) -> Response {
        let frame = request.frame(None, "");
        let main = format!(
            "<section class=\"error-page\"><h1>{}</h1><p>{}</p><p><a href=\"{}/ui/\">All projects</a></p></section>",
            status.as_u16(),
            esc(message),
            esc(&request.base)
        );
        let mut r = request.render(&frame, &status.as_u16().to_string(), &main);
        *r.status_mut() = status;
        r
    }
}
