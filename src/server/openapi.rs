//! The OpenAPI document of the server's routes, `GET /openapi.json` (no token needed):
//! every path, method, parameter, request body and answer ([`DOCUMENT`]), hand-written and
//! kept in sync with the router by `tests/openapi.rs`, which also runs schemathesis
//! against it.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The OpenAPI 3.0 document (JSON) of every route [`super::router`] answers.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`, to merge into the server's router.
pub(super) fn routes() -> Router {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
