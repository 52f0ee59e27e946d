//! The `prometheus` metric provider: an instant query,
//! `GET {address}/api/v1/query?query=...`, with `headers` and a `timeout` in seconds (default
//! 30). As in Argo Rollouts, a vector result becomes `result` as a list of numbers (one per
//! sample, `[0.99, 0.98]`), a scalar a number; other result types, a failed query and a
//! status outside 2xx are `Error` measurements. Sample values `NaN` and `±Inf` stay what
//! they are (`isNaN(result[0])`).

use kargo_core::expr::ExprEngine;
use minijinja::value::Value;
use serde_json::Value as Json;

use super::condition::parse_float;
use super::measure::{HttpClients, Measured, checked_url};
use super::template::{MetricSpec, PrometheusSpec};

fn query_url(address: &str, query: &str) -> Result<reqwest::Url, String> {
    let base = address.trim_end_matches('/');
    let mut url = checked_url(&format!("{base}/api/v1/query"))?;
    url.query_pairs_mut().append_pair("query", query);
    Ok(url)
}

/// Formats a number as Prometheus prints it.
fn shown_number(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

fn sample_value(v: &Json) -> Option<f64> {
    // [timestamp, "value"]
    v.as_array()
        .and_then(|pair| pair.get(1))
        .and_then(Json::as_str)
        .and_then(parse_float)
}

/// Takes one measurement.
pub(crate) async fn measure(
    clients: &HttpClients,
    engine: &ExprEngine,
    metric: &MetricSpec,
    prom: &PrometheusSpec,
) -> Measured {
    let url = match query_url(&prom.address, &prom.query) {
        Ok(u) => u,
        Err(e) => return Measured::error(e),
    };
    let shown = crate::net::shown_url(&url);
    let mut req = clients
        .pick(prom.insecure)
        .get(url)
        .timeout(prom.timeout)
        .header("Accept", "application/json");
    for (k, v) in &prom.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let (msg, _) = crate::net::describe_reqwest_error(e);
            return Measured::error(format!("{shown}: {msg}"));
        }
    };
    let status = resp.status().as_u16();
    let body: Json = match json_body(resp).await {
        Ok(b) => b,
        Err(e) => {
            if !(200..300).contains(&status) {
                return Measured::error(format!("{shown}: status {status}"));
            }
            return Measured::error(format!("{shown}: the answer is not Prometheus JSON: {e}"));
        }
    };
    if body.get("status").and_then(Json::as_str) != Some("success") {
        let kind = body.get("errorType").and_then(Json::as_str).unwrap_or("");
        let err = body.get("error").and_then(Json::as_str).unwrap_or("");
        return Measured::error(format!(
            "{shown}: status {status}: query failed: {kind}: {err}"
        ));
    }
    let data = body.get("data").cloned().unwrap_or(Json::Null);
    let kind = data.get("resultType").and_then(Json::as_str).unwrap_or("");
    let result = data.get("result").cloned().unwrap_or(Json::Null);
    match kind {
        "vector" => {
            let mut values = Vec::new();
            for sample in result.as_array().map(Vec::as_slice).unwrap_or_default() {
                match sample.get("value").and_then(sample_value) {
                    Some(f) => values.push(f),
                    None => {
                        return Measured::error(format!(
                            "{shown}: cannot read a sample of the vector: {sample}"
                        ));
                    }
                }
            }
            let text = format!(
                "[{}]",
                values
                    .iter()
                    .map(|f| shown_number(*f))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            Measured::assessed(
                engine,
                &metric.success_condition,
                &metric.failure_condition,
                &Value::from(values),
                text,
            )
        }
        "scalar" => match sample_value(&result) {
            Some(f) => Measured::assessed(
                engine,
                &metric.success_condition,
                &metric.failure_condition,
                &Value::from(f),
                shown_number(f),
            ),
            None => Measured::error(format!("{shown}: cannot read the scalar {result}")),
        },
        other => Measured::error(format!(
            "{shown}: Prometheus metric type not supported: {other:?}"
        )),
    }
}

/// Reads a response body as JSON (reqwest's `json` feature is not enabled here).
async fn json_body(resp: reqwest::Response) -> Result<Json, String> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| crate::net::describe_reqwest_error(e).0)?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}
