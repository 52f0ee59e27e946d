//! The `web` metric provider, as Argo Rollouts runs it: one HTTP request (`GET` by
//! default; `POST` / `PUT` with `body` or `jsonBody`, the latter with
//! `Content-Type: application/json`), `headers`, a `timeoutSeconds` timeout (default 10),
//! `insecure` to skip TLS verification.
//!
//! - A transport error or a status outside 2xx is an `Error` measurement.
//! - A body that is not JSON is a `Successful` measurement with the body as its value,
//!   without evaluating the conditions (Argo Rollouts does the same).
//! - Otherwise `jsonPath` (default `{$}`: the whole body) selects `result`; a path that
//!   is not in the body is an `Error`; the conditions decide.

use kargo_core::expr::{ExprEngine, from_json};

use super::measure::{HttpClients, Measured, checked_url};
use super::template::{MetricSpec, WebMethod, WebSpec};

/// Takes one measurement.
pub(crate) async fn measure(
    clients: &HttpClients,
    engine: &ExprEngine,
    metric: &MetricSpec,
    web: &WebSpec,
) -> Measured {
    let url = match checked_url(&web.url) {
        Ok(u) => u,
        Err(e) => return Measured::error(e),
    };
    let shown = crate::net::shown_url(&url);
    let client = clients.pick(web.insecure);
    let mut req = match web.method {
        WebMethod::Get => client.get(url),
        WebMethod::Post => client.post(url),
        WebMethod::Put => client.put(url),
    };
    req = req.timeout(web.timeout);
    for (k, v) in &web.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if web.json_body {
        req = req.header("Content-Type", "application/json");
    }
    if let Some(body) = &web.body {
        req = req.body(body.clone());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let (msg, _) = crate::net::describe_reqwest_error(e);
            return Measured::error(format!("{shown}: {msg}"));
        }
    };
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Measured::error(format!("{shown}: received non 2xx response code: {status}"));
    }
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let (msg, _) = crate::net::describe_reqwest_error(e);
            return Measured::error(format!("{shown}: received no bytes in response: {msg}"));
        }
    };
    let data: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(d) => d,
        Err(_) => {
            return Measured {
                phase: super::report::AnalysisPhase::Successful,
                value: Some(String::from_utf8_lossy(&bytes).into_owned()),
                message: None,
            };
        }
    };
    let found = match web.json_path.find(&data) {
        Ok(v) => v,
        Err(e) => {
            return Measured::error(format!(
                "{shown}: could not find JSONPath {} in body: {e}",
                web.json_path.text()
            ));
        }
    };
    Measured::assessed(
        engine,
        &metric.success_condition,
        &metric.failure_condition,
        &from_json(found),
        found.to_string(),
    )
}
