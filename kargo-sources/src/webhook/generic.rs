//! The generic receiver: user-defined actions over the request.
//!
//! Each action of the receiver (only `Refresh` exists) runs when its `whenExpression` is
//! empty or true, and refreshes the Warehouses selected by ANY of its
//! `targetSelectionCriteria`; one criterion selects the Warehouses matching ALL of what it
//! sets: `name`, `labelSelector`, and `indexSelector.matchIndices` (key `subscribedURLs`,
//! operator `Equals` / `NotEquals`: whether one of the Warehouse's normalised subscribed URLs,
//! see [`super::subscribed_urls`], equals the value).
//!
//! `whenExpression` is a Kargo (expr-lang) expression, bare or in `${{ }}`; `name`, the
//! index values and the `parameters` may be templates (`${{ }}`). They see:
//!
//! - `request.body`: the JSON body;
//! - `request.header(name)`: the first value of a header (case-insensitive), or `""`;
//! - `request.headers(name)`: every value of a header, or `[]`; `request.headers` alone is
//!   a map of lower-cased names to lists of values;
//! - `request.params(name)`: a query parameter, or `""`;
//! - `request.method`, `request.url` (the path and query);
//! - `params`: the action's `parameters`, rendered;
//! - `normalizeGit(url)`, `normalizeImage(url)`, `normalizeChart(url)`.
//!
//! An expression that does not compile is a receiver misconfiguration (500); one that fails
//! on this request (e.g. a field the body lacks) is a bad request (400).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use kargo_core::expr::{EvalData, ExprEngine, ExprErrorKind, Scope, from_json};
use kargo_core::freight::{normalize_chart_repo, normalize_git_url, normalize_image_repo};
use kargo_core::model::{GenericWebhookReceiverConfig, Warehouse};
use minijinja::value::{Object, Value};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::{WebhookError, WebhookRequest, subscribed_urls};

static ENGINE: LazyLock<ExprEngine> = LazyLock::new(|| {
    let mut e = ExprEngine::new();
    e.add_function("normalizeGit", |u: String| normalize_git_url(&u));
    e.add_function("normalizeImage", |u: String| normalize_image_repo(&u));
    e.add_function("normalizeChart", |u: String| normalize_chart_repo(&u));
    e
});

/// The `request` variable.
#[derive(Debug)]
struct RequestObject {
    method: String,
    url: String,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Value,
}

impl RequestObject {
    fn header_values(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn one_str_arg(method: &str, args: &[Value]) -> Result<String, Error> {
    match args {
        [v] => v.as_str().map(str::to_owned).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("request.{method}() takes a string"),
            )
        }),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("request.{method}() takes one argument"),
        )),
    }
}

impl Object for RequestObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "body" => self.body.clone(),
            "method" => Value::from(self.method.clone()),
            "url" => Value::from(self.url.clone()),
            "headers" => {
                let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (n, v) in &self.headers {
                    m.entry(n.clone()).or_default().push(v.clone());
                }
                Value::from(m)
            }
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "header" => {
                let name = one_str_arg(method, args)?;
                Ok(Value::from(
                    self.header_values(&name)
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                ))
            }
            "headers" => {
                let name = one_str_arg(method, args)?;
                Ok(Value::from(self.header_values(&name)))
            }
            "params" => {
                let name = one_str_arg(method, args)?;
                Ok(Value::from(
                    self.query
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                ))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("request has no method {method}()"),
            )),
        }
    }
}

/// Percent-decodes a query component (`+` is a space; a malformed escape stays as is).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn eval_error(e: &kargo_core::expr::ExprError) -> WebhookError {
    match e.kind {
        ExprErrorKind::Syntax | ExprErrorKind::Translation | ExprErrorKind::Unclosed => {
            WebhookError::Misconfigured(e.to_string())
        }
        _ => WebhookError::BadRequest(format!("the receiver's expression failed: {e}")),
    }
}

/// Renders a string that may hold templates, to text.
fn render_text(text: &str, scope: &Scope) -> Result<String, WebhookError> {
    let t = ENGINE.compile(text).map_err(|e| eval_error(&e))?;
    match t.render(scope).map_err(|e| eval_error(&e))? {
        Json::String(s) => Ok(s),
        Json::Null => Ok(String::new()),
        other => Ok(other.to_string()),
    }
}

/// Evaluates a `whenExpression`.
fn when(expr: &str, scope: &Scope) -> Result<bool, WebhookError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Ok(true);
    }
    if expr.contains("${{") {
        let t = ENGINE.compile(expr).map_err(|e| eval_error(&e))?;
        return match t.render(scope).map_err(|e| eval_error(&e))? {
            Json::Bool(b) => Ok(b),
            Json::String(s) if s == "true" => Ok(true),
            Json::String(s) if s == "false" => Ok(false),
            other => Err(WebhookError::BadRequest(format!(
                "whenExpression gave {other} instead of a boolean"
            ))),
        };
    }
    let c = ENGINE
        .compile_kargo_expression(expr)
        .map_err(|e| eval_error(&e))?;
    c.eval_bool(scope).map_err(|e| eval_error(&e))
}

fn scope(request: &Arc<RequestObject>, params: &BTreeMap<String, String>) -> Scope {
    let mut vars: BTreeMap<String, Value> = BTreeMap::new();
    vars.insert(
        "request".to_owned(),
        Value::from_dyn_object(request.clone()),
    );
    vars.insert("params".to_owned(), Value::from(params.clone()));
    Scope::new(vars, Arc::new(EvalData::default()))
}

/// Runs the receiver's actions; returns the Warehouses to refresh.
pub(super) fn handle(
    cfg: &GenericWebhookReceiverConfig,
    req: &WebhookRequest,
    body: &Json,
    warehouses: &[Warehouse],
) -> Result<Vec<String>, WebhookError> {
    let request = Arc::new(RequestObject {
        method: req.method.clone(),
        url: req.path.clone(),
        headers: req
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .collect(),
        query: parse_query(req.query()),
        body: from_json(body),
    });
    let mut selected: Vec<String> = Vec::new();
    for action in &cfg.actions {
        if action.action != "Refresh" {
            return Err(WebhookError::Misconfigured(format!(
                "unsupported action {:?}",
                action.action
            )));
        }
        let mut params = BTreeMap::new();
        let base = scope(&request, &params);
        for (k, v) in &action.parameters {
            params.insert(k.clone(), render_text(v, &base)?);
        }
        let scope = scope(&request, &params);
        if !when(&action.when_expression, &scope)? {
            continue;
        }
        for t in &action.target_selection_criteria {
            if t.kind != "Warehouse" {
                return Err(WebhookError::Misconfigured(format!(
                    "unsupported target kind {:?}",
                    t.kind
                )));
            }
            let name = if t.name.is_empty() {
                None
            } else {
                Some(render_text(&t.name, &scope)?)
            };
            let mut indices = Vec::new();
            for m in t.index_selector.iter().flat_map(|s| &s.match_indices) {
                if m.key != "subscribedURLs" {
                    return Err(WebhookError::Misconfigured(format!(
                        "unsupported index {:?}",
                        m.key
                    )));
                }
                let equals = match m.operator.as_str() {
                    "Equals" | "Equal" => true,
                    "NotEquals" | "NotEqual" => false,
                    other => {
                        return Err(WebhookError::Misconfigured(format!(
                            "unsupported index operator {other:?}"
                        )));
                    }
                };
                indices.push((equals, render_text(&m.value, &scope)?));
            }
            for w in warehouses {
                if name.as_ref().is_some_and(|n| *n != w.metadata.name) {
                    continue;
                }
                if !t.label_selector.matches(&w.metadata.labels) {
                    continue;
                }
                let urls = subscribed_urls(w);
                if !indices
                    .iter()
                    .all(|(equals, v)| urls.contains(v) == *equals)
                {
                    continue;
                }
                selected.push(w.metadata.name.clone());
            }
        }
    }
    selected.sort();
    selected.dedup();
    Ok(selected)
}
