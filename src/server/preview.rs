//! What a promotion would change, before anyone confirms it:
//! `GET /v1beta1/projects/{p}/stages/{s}/preview?freight=<ID, prefix or alias>` answers
//! the Freight compared with what the Stage holds (each artifact changed, new, removed or
//! unchanged) and the dry run of the Stage's steps ([`Controller::dry_run`]): the diff of
//! every file it would change and every commit it would push; nothing is written or
//! pushed. Needs the promoter role on the Stage (a dry run clones and renders, which a
//! viewer should not make the server do). A Freight the Stage may not receive answers 409
//! naming the rule, as promoting it would.
//!
//! [`Controller::dry_run`]: crate::Controller::dry_run

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::access::Action;
use super::api::ApiError;
use super::auth::Auth;
use super::query::value_in;
use super::{json_response, views};
use crate::controller::ControllerError;
use crate::service::ServiceHandle;
use kargo_core::pipeline::PipelineError;

struct Preview {
    handle: ServiceHandle,
    auth: Arc<Auth>,
}

/// The preview's route, to merge into the server's router.
pub(super) fn routes(handle: ServiceHandle, auth: Arc<Auth>) -> Router {
    Router::new()
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/preview",
            get(preview),
        )
        .with_state(Arc::new(Preview { handle, auth }))
}

/// The `freight` query parameter.
fn freight_param(uri: &Uri) -> Result<String, ApiError> {
    let required = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "freight: required (the ID, ID prefix or alias of the Freight to preview)",
        )
    };
    match uri.query().and_then(|q| value_in(q, "freight")) {
        None => Err(required()),
        Some(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "freight: not valid percent-encoded UTF-8",
        )),
        Some(Ok(v)) if v.trim().is_empty() => Err(required()),
        Some(Ok(v)) => Ok(v.trim().to_owned()),
    }
}

async fn preview(
    State(p): State<Arc<Preview>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let caller = p.auth.reader(&headers)?.principal;
    let c = p.handle.controller();
    if project != c.project() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("project {project:?} not found"),
        ));
    }
    if !caller.may(Action::Promote, &project, Some(&stage)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not promote to Stage {stage:?}", caller.name()),
        ));
    }
    let freight = freight_param(&uri)?;
    let report = c
        .dry_run(&stage, &freight, Some(caller.name().to_owned()))
        .await
        .map_err(|e| match e {
            ControllerError::Pipeline(
                PipelineError::UnknownStage(_) | PipelineError::UnknownFreight(_),
            ) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ControllerError::Pipeline(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            other => {
                tracing::warn!(error = %other, stage = %stage, "preview failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the dry run could not run: {other}"),
                )
            }
        })?;
    let state = c.snapshot().await.map_err(|e| {
        tracing::warn!(error = %e, "preview: cannot read the state");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the state cannot be read now",
        )
    })?;
    let current = state.stages.get(&stage).and_then(|s| s.current());
    Ok(json_response(
        StatusCode::OK,
        json!({
            "stage": stage,
            "freight": report.request.freight.to_string(),
            "artifacts": views::compare(current, &report.request.collection),
            "succeeded": report.succeeded(),
            "message": report.result.message,
            "files": report.files.iter().map(|f| json!({
                "repoURL": f.repo_url, "path": f.path, "diff": f.diff,
            })).collect::<Vec<_>>(),
            "pushes": report.pushes.iter().map(|x| json!({
                "repoURL": x.repo_url, "branch": x.branch, "tag": x.tag,
                "message": x.message, "step": x.step,
            })).collect::<Vec<_>>(),
            "notes": report.notes.iter().map(|n| json!({"step": n.step, "message": n.message}))
                .collect::<Vec<_>>(),
        }),
    ))
}
