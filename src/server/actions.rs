//! The REST API's actions, through the same library calls as the CLI, each checked
//! against the caller's roles ([`super::access`]) and recorded with the caller's name as
//! the actor:
//!
//! | request | action | answer |
//! |---|---|---|
//! | `POST /v1beta1/projects/{p}/stages/{s}/promotions` `{"freight": "<ID, prefix or alias>"}` | promote (queued; the service runs it) | 202 with the promotion |
//! | `POST /v1beta1/projects/{p}/stages/{s}/rollback` | roll back to the previous Freight (queued) | 202 with the promotion |
//! | `POST /v1beta1/projects/{p}/freight/{f}/approve` `{"stage": "<name>"}` | approve Freight for a Stage | 200 |
//! | `POST /v1beta1/projects/{p}/warehouses/{w}/refresh` | refresh a Warehouse | 202 |
//! | `POST /v1beta1/projects/{p}/promotions/{name}/abort` | abort a queued (dequeued at once) or running promotion (stops at its next step) | 200 |
//! | `POST /v1beta1/projects/{p}/stages/{s}/reverify` | verify the Stage's Freight again (runs in the background) | 202 |
//! | `POST /v1beta1/projects/{p}/stages/{s}/hold` | hold auto-promotion at the Freight the Stage holds | 200 |
//! | `POST /v1beta1/projects/{p}/stages/{s}/resume` | lift the Stage's auto-promotion holds | 200 |
//! | `POST /v1beta1/projects/{p}/stages/{s}/promotions/{name}/approve` `{"message": "..."}` (optional) | approve a promotion waiting for approval under the Stage's approval policy (the caller's roles on the Stage count as its groups) | 200 with the approvals that count |
//! | `POST /v1beta1/projects/{p}/stages/{s}/promotions/{name}/reject` `{"message": "..."}` (optional) | reject it: it leaves the queue | 200 |
//!
//! 401 without a known token; 403 when the caller's role or its Stage globs do not allow
//! it; 404 for an unknown Project, Stage, Warehouse or Freight; 409 when the pipeline's
//! rules refuse it (the message names the rule: not available, origin not requested,
//! nothing to roll back); 400 for a malformed body, naming the field. A body is at most
//! 64 KiB.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use kargo_core::pipeline::{AbortOutcome, PipelineError};
use serde_json::{Value as Json, json};

use super::access::{Action, Principal};
use super::api::ApiError;
use super::auth::Auth;
use super::{json_response, read_limited};
use crate::controller::ControllerError;
use crate::service::ServiceHandle;

/// The largest request body an action reads.
pub const MAX_ACTION_BODY: usize = 64 * 1024;

struct Actions {
    handle: ServiceHandle,
    auth: Arc<Auth>,
}

/// The actions' routes, to merge into the server's router.
pub(super) fn routes(handle: ServiceHandle, auth: Arc<Auth>) -> Router {
    let state = Arc::new(Actions { handle, auth });
    Router::new()
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/promotions",
            post(promote),
        )
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/rollback",
            post(rollback),
        )
        .route(
            "/v1beta1/projects/{project}/freight/{freight}/approve",
            post(approve),
        )
        .route(
            "/v1beta1/projects/{project}/warehouses/{warehouse}/refresh",
            post(refresh),
        )
        .route(
            "/v1beta1/projects/{project}/promotions/{promotion}/abort",
            post(abort),
        )
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/reverify",
            post(reverify),
        )
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/hold",
            post(hold),
        )
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/resume",
            post(resume),
        )
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/promotions/{promotion}/approve",
            post(approve_promotion),
        )
        .route(
            "/v1beta1/projects/{project}/stages/{stage}/promotions/{promotion}/reject",
            post(reject_promotion),
        )
        .with_state(state)
}

type Answer = Result<Response, ApiError>;

impl Actions {
    /// The caller, allowed to take `action` in `project` (on `stage`).
    fn allowed(
        &self,
        headers: &HeaderMap,
        project: &str,
        action: Action,
        stage: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let caller = self.auth.writer(headers)?.principal;
        if project != self.handle.controller().project() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("project {project:?} not found"),
            ));
        }
        if !caller.may(action, project, stage) {
            let on = stage
                .map(|s| format!(" on Stage {s:?}"))
                .unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not {action:?}{on} in project {project:?}",
                    caller.name()
                ),
            ));
        }
        Ok(caller)
    }

    /// The name of the caller, allowed to take `action` (see [`allowed`](Self::allowed)):
    /// the actor recorded.
    fn actor(
        &self,
        headers: &HeaderMap,
        project: &str,
        action: Action,
        stage: Option<&str>,
    ) -> Result<String, ApiError> {
        Ok(self
            .allowed(headers, project, action, stage)?
            .name()
            .to_owned())
    }
}

/// A string field of a JSON object body.
async fn field(body: Body, name: &str) -> Result<String, ApiError> {
    let doc = json_body(body).await?;
    match doc.get(name) {
        Some(Json::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Json::String(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name}: must not be empty"),
        )),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name}: expected a string"),
        )),
        None if doc.is_object() => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name}: required"),
        )),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON object with {name}"),
        )),
    }
}

/// A request body (at most [`MAX_ACTION_BODY`] bytes) as JSON; an empty body is `{}`.
async fn json_body(body: Body) -> Result<Json, ApiError> {
    let bytes = read_limited(body, MAX_ACTION_BODY + 1)
        .await
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the body could not be read"))?;
    if bytes.len() > MAX_ACTION_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_ACTION_BODY} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The string `name` of a JSON object body, when given; an empty body is no field.
async fn optional_field(body: Body, name: &str) -> Result<Option<String>, ApiError> {
    let doc = json_body(body).await?;
    match doc.get(name) {
        None if doc.is_object() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name}: expected a string"),
        )),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        )),
    }
}

/// The status a refused library call answers: 404 for what does not exist, 409 for the
/// pipeline's rules, 503 for the state store.
fn refused(e: ControllerError) -> ApiError {
    let status = match &e {
        ControllerError::Pipeline(
            PipelineError::UnknownStage(_) | PipelineError::UnknownFreight(_),
        )
        | ControllerError::UnknownWarehouse(_) => StatusCode::NOT_FOUND,
        ControllerError::Pipeline(_)
        | ControllerError::NotVerifiable { .. }
        | ControllerError::StageBusy(_) => StatusCode::CONFLICT,
        _ => {
            tracing::warn!(error = %e, "API action failed");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the action could not be recorded now; try again",
            );
        }
    };
    ApiError::new(status, e.to_string())
}

/// Answers a queued promotion, after waking the service to run it (a store without
/// change notifications would not wake it).
fn queued(handle: &ServiceHandle, request: &kargo_core::pipeline::PromotionRequest) -> Response {
    handle.wake(&format!("promotion {} requested", request.name));
    json_response(
        StatusCode::ACCEPTED,
        json!({
            "promotion": request.name,
            "stage": request.stage,
            "freight": request.freight.to_string(),
            "actor": request.actor,
        }),
    )
}

async fn promote(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let caller = a.actor(&headers, &project, Action::Promote, Some(&stage))?;
    let freight = field(body, "freight").await?;
    let request = a
        .handle
        .controller()
        .request_promotion(&stage, &freight, Some(caller))
        .await
        .map_err(refused)?;
    Ok(queued(&a.handle, &request))
}

async fn rollback(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = a.actor(&headers, &project, Action::Rollback, Some(&stage))?;
    let request = a
        .handle
        .controller()
        .request_rollback(&stage, Some(caller))
        .await
        .map_err(refused)?;
    Ok(queued(&a.handle, &request))
}

async fn approve(
    State(a): State<Arc<Actions>>,
    UrlPath((project, freight)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    // The Stage is in the body: read it before checking the caller's Stage globs.
    a.auth.writer(&headers)?;
    let stage = field(body, "stage").await?;
    let caller = a.actor(&headers, &project, Action::Approve, Some(&stage))?;
    let id = a
        .handle
        .controller()
        .approve(&stage, &freight, Some(caller.clone()))
        .await
        .map_err(refused)?;
    Ok(json_response(
        StatusCode::OK,
        json!({"freight": id.to_string(), "stage": stage, "actor": caller}),
    ))
}

async fn approve_promotion(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage, promotion)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    answer_promotion(a, project, stage, promotion, headers, body, true).await
}

async fn reject_promotion(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage, promotion)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    answer_promotion(a, project, stage, promotion, headers, body, false).await
}

/// Records the caller's answer to a promotion waiting for approval; the service runs it
/// once it may.
async fn answer_promotion(
    a: Arc<Actions>,
    project: String,
    stage: String,
    promotion: String,
    headers: HeaderMap,
    body: Body,
    approve: bool,
) -> Answer {
    use kargo_core::pipeline::{ApprovalDecision, ApprovalOutcome, Approver};
    let caller = a.allowed(&headers, &project, Action::Approve, Some(&stage))?;
    let message = optional_field(body, "message").await?.unwrap_or_default();
    let who = Approver {
        name: caller.name().to_owned(),
        groups: caller.roles_on(&project, &stage),
    };
    let decision = if approve {
        ApprovalDecision::Approve
    } else {
        ApprovalDecision::Reject
    };
    let outcome = a
        .handle
        .controller()
        .record_answer(&stage, Some(&promotion), &who, decision, &message)
        .await
        .map_err(refused)?;
    a.handle
        .wake(&format!("promotion {promotion} answered by {}", who.name));
    let value = match outcome {
        ApprovalOutcome::Recorded(status) => json!({
            "promotion": promotion, "stage": stage, "actor": who.name, "decision": "approve",
            "approvedBy": status.approved_by, "required": status.required,
            "satisfied": status.satisfied(),
        }),
        ApprovalOutcome::Rejected(record) => json!({
            "promotion": record.name, "stage": stage, "actor": who.name, "decision": "reject",
            "message": record.message,
        }),
        ApprovalOutcome::ForRunningPromotion(name) => json!({
            "promotion": name, "stage": stage, "actor": who.name,
            "decision": if approve { "approve" } else { "reject" }, "running": true,
        }),
    };
    Ok(json_response(StatusCode::OK, value))
}

async fn refresh(
    State(a): State<Arc<Actions>>,
    UrlPath((project, warehouse)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = a.actor(&headers, &project, Action::Refresh, None)?;
    let c = a.handle.controller();
    if c.manifests().warehouse(&project, &warehouse).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("warehouse {warehouse:?} not found"),
        ));
    }
    let why = format!("API request by {caller}");
    if !a.handle.refresh(&warehouse, &why) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is not running",
        ));
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"refreshing": warehouse, "actor": caller}),
    ))
}

async fn abort(
    State(a): State<Arc<Actions>>,
    UrlPath((project, promotion)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    a.auth.writer(&headers)?;
    let c = a.handle.controller();
    let state = c.snapshot().await.map_err(refused)?;
    let stage = state
        .stages
        .iter()
        .find(|(_, st)| st.pending().any(|r| r.name == promotion))
        .map(|(name, _)| name.clone());
    let Some(stage) = stage else {
        let finished = state.promotions.iter().any(|r| r.name == promotion);
        return Err(if finished {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("promotion {promotion:?} has finished: there is nothing to abort"),
            )
        } else {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("promotion {promotion:?} not found"),
            )
        });
    };
    let caller = a.actor(&headers, &project, Action::Abort, Some(&stage))?;
    let outcome = c
        .abort(&stage, Some(&promotion), Some(caller.clone()))
        .await
        .map_err(refused)?;
    let what = match outcome {
        AbortOutcome::Dequeued(_) => "dequeued",
        _ => "aborting",
    };
    a.handle.wake(&format!("promotion {promotion} aborted"));
    Ok(json_response(
        StatusCode::OK,
        json!({"promotion": promotion, "stage": stage, "outcome": what, "actor": caller}),
    ))
}

async fn reverify(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = a.actor(&headers, &project, Action::Reverify, Some(&stage))?;
    let started = a
        .handle
        .controller()
        .start_reverify(&stage)
        .await
        .map_err(refused)?;
    tracing::info!(stage = %stage, actor = %caller, "re-verification requested");
    let name = stage.clone();
    tokio::spawn(async move {
        if let Err(e) = started.run().await {
            tracing::warn!(stage = %name, error = %e, "re-verification failed");
        }
    });
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"verifying": stage, "actor": caller}),
    ))
}

async fn hold(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = a.actor(&headers, &project, Action::Hold, Some(&stage))?;
    let held = a
        .handle
        .controller()
        .hold_auto_promotion(&stage, Some(caller.clone()))
        .await
        .map_err(refused)?;
    Ok(json_response(
        StatusCode::OK,
        json!({"stage": stage, "held": held, "actor": caller}),
    ))
}

async fn resume(
    State(a): State<Arc<Actions>>,
    UrlPath((project, stage)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = a.actor(&headers, &project, Action::Hold, Some(&stage))?;
    let released = a
        .handle
        .controller()
        .resume_auto_promotion(&stage)
        .await
        .map_err(refused)?;
    tracing::info!(stage = %stage, actor = %caller, released, "auto-promotion resumed");
    a.handle.wake(&format!("auto-promotion of {stage} resumed"));
    Ok(json_response(
        StatusCode::OK,
        json!({"stage": stage, "released": released, "actor": caller}),
    ))
}
