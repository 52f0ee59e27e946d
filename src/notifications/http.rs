//! HTTP channels: a CloudEvents 1.0 structured-mode JSON envelope by default, or the
//! rendered output; the channel's headers and query parameters; `bearerToken` or
//! `authorization` from the Secret; success and failure expressions over the response.

use std::collections::BTreeMap;
use std::time::Duration;

use kargo_core::expr::Scope;
use serde_json::{Map, Value as Json, json};

use super::deliver::{Deliverer, DeliveryError, describe_reqwest};
use super::routes::{Delivery, Message};

/// The CloudEvents `type` prefix: `io.kargo.event.PromotionSucceeded`.
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "io.kargo.event.";

/// The most of a response body kept for the success and failure expressions.
const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// The CloudEvents 1.0 envelope of a delivery: `specversion`, `id` (the event's),
/// `source` (`kargo/<project>`), `type` (`io.kargo.event.<Type>`), `subject` (the Stage,
/// when there is one), `time`, `datacontenttype` and `data` (the event's payload).
pub(super) fn cloud_event(project: &str, d: &Delivery) -> Json {
    let mut m = Map::new();
    m.insert("specversion".into(), json!("1.0"));
    m.insert("id".into(), json!(d.event_id));
    m.insert("source".into(), json!(format!("kargo/{project}")));
    m.insert(
        "type".into(),
        json!(format!("{CLOUDEVENTS_TYPE_PREFIX}{}", d.event_type)),
    );
    if let Some(stage) = d
        .payload
        .get("stageName")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
    {
        m.insert("subject".into(), json!(stage));
    }
    if let Some(t) = d.payload.get("time") {
        m.insert("time".into(), t.clone());
    }
    m.insert("datacontenttype".into(), json!("application/json"));
    m.insert("data".into(), (*d.payload).clone());
    Json::Object(m)
}

fn string_map(v: Option<&Json>) -> Vec<(String, String)> {
    match v {
        Some(Json::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) async fn send(dl: &Deliverer, d: &Delivery) -> Result<(), DeliveryError> {
    let Some(h) = &d.channel.spec.http else {
        return Err(DeliveryError::permanent("not an HTTP channel"));
    };
    let secret = dl.secret(d)?;
    let mut url = h.url.clone();
    let mut method = if h.method.is_empty() {
        "POST".to_owned()
    } else {
        h.method.clone()
    };
    let mut headers: Vec<(String, String)> = h
        .headers
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    let mut query: Vec<(String, String)> = h
        .query_params
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    let mut success = h.success_expression.clone();
    let mut failure = h.failure_expression.clone();
    let (body, content_type): (Vec<u8>, &str) = match &d.message {
        Message::Default => (
            cloud_event(&dl.project, d).to_string().into_bytes(),
            "application/cloudevents+json",
        ),
        Message::Text(t) => (t.clone().into_bytes(), "text/plain; charset=utf-8"),
        Message::Xml(t) => (t.clone().into_bytes(), "application/xml"),
        Message::Structured(v) => {
            if let Some(u) = v.get("url").and_then(Json::as_str) {
                url = u.to_owned();
            }
            if let Some(m) = v.get("method").and_then(Json::as_str) {
                method = m.to_uppercase();
            }
            for (k, val) in string_map(v.get("headers")) {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
                headers.push((k, val));
            }
            query.extend(string_map(v.get("queryParams")));
            if let Some(s) = v.get("successExpression").and_then(Json::as_str) {
                success = s.to_owned();
            }
            if let Some(s) = v.get("failureExpression").and_then(Json::as_str) {
                failure = s.to_owned();
            }
            match v.get("body") {
                None | Some(Json::Null) => (Vec::new(), "text/plain; charset=utf-8"),
                Some(Json::String(s)) => (s.clone().into_bytes(), "text/plain; charset=utf-8"),
                Some(other) => (other.to_string().into_bytes(), "application/json"),
            }
        }
    };
    let mut parsed = reqwest::Url::parse(&url)
        .map_err(|e| DeliveryError::permanent(format!("invalid url: {e}")))?;
    if !query.is_empty() {
        let mut pairs = parsed.query_pairs_mut();
        for (k, v) in &query {
            pairs.append_pair(k, v);
        }
    }
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| DeliveryError::permanent(format!("invalid method {method:?}")))?;
    let timeout = h.timeout.map_or(Duration::from_secs(10), Duration::from);
    let mut req = dl
        .client(h.insecure_skip_tls_verify)
        .request(method, parsed)
        .timeout(timeout);
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        && !body.is_empty()
    {
        req = req.header("Content-Type", content_type);
    }
    for (n, v) in &headers {
        req = req.header(n.as_str(), v.as_str());
    }
    if let Some(s) = &secret {
        if let Some(token) = s.get("bearerToken") {
            req = req.bearer_auth(token.expose());
        } else if let Some(auth) = s.get("authorization") {
            req = req.header("Authorization", auth.expose().as_str());
        }
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::transient(describe_reqwest(e)))?;
    let status = resp.status().as_u16();
    if status == 429 {
        return Err(DeliveryError::transient("429 Too Many Requests"));
    }
    let mut resp_headers = BTreeMap::new();
    for (n, v) in resp.headers() {
        if let Ok(v) = v.to_str() {
            resp_headers.insert(n.as_str().to_owned(), Json::String(v.to_owned()));
        }
    }
    let ct = resp_headers
        .get("content-type")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| DeliveryError::transient(describe_reqwest(e)))?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_RESPONSE_BODY)]).into_owned();
    let body = if ct.contains("json") {
        serde_json::from_str(&text).unwrap_or(Json::String(text))
    } else if ct.contains("yaml") {
        yaml_serde::from_str(&text).unwrap_or(Json::String(text))
    } else {
        Json::String(text)
    };
    let response = json!({
        "status": status,
        "body": body,
        "headers": Json::Object(resp_headers.into_iter().collect()),
    });
    let mut vars = Map::new();
    vars.insert("response".into(), response);
    let scope = Scope::from_json(&vars);
    let eval = |expr: &str, which: &str| {
        dl.engine()
            .compile_kargo_expression(expr)
            .and_then(|e| e.eval_bool(&scope))
            .map_err(|e| DeliveryError::permanent(format!("{which} did not evaluate: {e}")))
    };
    let ok = if !success.trim().is_empty() {
        eval(&success, "successExpression")?
    } else if !failure.trim().is_empty() {
        !eval(&failure, "failureExpression")?
    } else {
        (200..300).contains(&status)
    };
    if ok {
        return Ok(());
    }
    let message = format!("the endpoint answered {status}");
    if status >= 500 || status == 408 || (200..300).contains(&status) {
        Err(DeliveryError::transient(message))
    } else {
        Err(DeliveryError::permanent(message))
    }
}
