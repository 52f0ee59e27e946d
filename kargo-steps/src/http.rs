//! `http`: sends one HTTP request and decides from the response, with Kargo's
//! configuration fields and expression rules.
//!
//! ```yaml
//! - uses: http
//!   as: check
//!   config:
//!     method: POST
//!     url: https://ci.example.com/api/runs
//!     headers:
//!     - name: Authorization
//!       value: Bearer ${{ secret('ci').token }}
//!     queryParams:
//!     - name: wait
//!       value: "true"
//!     body: '{"ref": "${{ vars.ref }}"}'
//!     timeout: 30s
//!     pollInterval: 10s
//!     successExpression: response.status == 200 && response.body.state == "done"
//!     failureExpression: response.body.state == "failed"
//!     outputs:
//!     - name: runID
//!       fromExpression: response.body.id
//! ```
//!
//! The expressions are plain expr-lang (no `${{ }}`) over one variable, `response`:
//! `response.status` (number), `response.headers` (map of header name to the list of its
//! values, names in canonical `Content-Type` form), `response.header(name)` (the first
//! value of a header, case-insensitive, `""` when absent) and `response.body` (parsed per
//! `responseContentType`, else the response's `Content-Type`: JSON, YAML or text; other
//! types are tried as JSON and give `{}` when that fails).
//!
//! Decision order: `failureExpression` true → the step fails (terminal; failure wins over
//! success); `errorExpression` true → a retryable error (counts toward the step's
//! `retry.errorThreshold`); `successExpression` true → succeeded, with `outputs`; when
//! neither success nor failure expression is defined, a 2xx status succeeds and any other
//! status is a retryable error; otherwise the step is `Running` and asks again after
//! `pollInterval`.
//!
//! Unless `headers` sets it, the request carries an `Idempotency-Key` header with the
//! step's execution ID (`<promotion>/<step alias>`, see
//! [`StepContext::execution_id`](kargo_core::step::StepContext::execution_id)): the same
//! for retries and for the re-run of a resumed promotion, so a receiving service can
//! de-duplicate.
//!
//! Destinations are checked against the SSRF rules of [`crate::net`]: link-local and cloud
//! metadata addresses are refused (also behind DNS names and redirects); loopback and
//! private addresses are allowed. Header values, the query and user info never appear in
//! messages or logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::expr::{CompiledExpr, EvalData, ExprEngine, Scope};
use kargo_core::model::Duration as KargoDuration;
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use minijinja::value::{Object, Value};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::net;

/// The default timeout of the request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default wait before asking again while no expression decided.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// The request header that carries the step's execution ID
/// ([`StepContext::execution_id`]) unless the configuration sets it.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The largest response body read (larger bodies are an error).
pub const MAX_RESPONSE_BYTES: usize = 10 << 20;

/// Kargo's `http` step (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRequest;

/// A `name` / `value` pair of `headers` or `queryParams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameValue {
    /// The name.
    pub name: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// One output of the `http` step: `{name: runID, fromExpression: response.body.id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpOutput {
    /// The output's name.
    pub name: String,
    /// A plain expr-lang expression over `response`.
    pub from_expression: String,
}

/// Configuration of [`HttpRequest`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpConfig {
    /// `url:` the URL (http or https). Required.
    pub url: String,
    /// `method:` `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` or `OPTIONS`.
    #[serde(default)]
    pub method: Option<String>,
    /// `headers: [{name, value}]`: request headers (repeatable).
    #[serde(default)]
    pub headers: Vec<NameValue>,
    /// `queryParams: [{name, value}]`: appended to the URL's query.
    #[serde(default)]
    pub query_params: Vec<NameValue>,
    /// `body:` the request body, as text.
    #[serde(default)]
    pub body: Option<String>,
    /// `bodyFromFile:` a file of the work directory sent as the body (not with `body`).
    #[serde(default)]
    pub body_from_file: Option<String>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// `proxy:` a proxy URL for this request (environment proxies are never used).
    #[serde(default)]
    pub proxy: Option<String>,
    /// `timeout:` the request's timeout, a Go duration (default `10s`).
    #[serde(default)]
    pub timeout: Option<KargoDuration>,
    /// `pollInterval:` the wait before asking again while undecided (default `30s`).
    #[serde(default)]
    pub poll_interval: Option<KargoDuration>,
    /// `responseContentType:` how to parse the body, overriding the response's
    /// `Content-Type` (e.g. `application/json`).
    #[serde(default)]
    pub response_content_type: Option<String>,
    /// `successExpression:` true when the request succeeded.
    #[serde(default)]
    pub success_expression: Option<String>,
    /// `failureExpression:` true when the request failed for good.
    #[serde(default)]
    pub failure_expression: Option<String>,
    /// `errorExpression:` true when the request failed in a way worth retrying.
    #[serde(default)]
    pub error_expression: Option<String>,
    /// `outputs: [{name, fromExpression}]`: outputs computed on success.
    #[serde(default)]
    pub outputs: Vec<HttpOutput>,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The compiled expressions of one run.
struct Exprs<'e> {
    success: Option<CompiledExpr<'e>>,
    failure: Option<CompiledExpr<'e>>,
    error: Option<CompiledExpr<'e>>,
    outputs: Vec<(String, CompiledExpr<'e>)>,
}

fn compile<'e>(engine: &'e ExprEngine, cfg: &HttpConfig) -> Result<Exprs<'e>, StepError> {
    let one = |field: &str, src: &Option<String>| -> Result<Option<CompiledExpr<'e>>, StepError> {
        match non_empty(src) {
            None => Ok(None),
            Some(s) => engine.compile_kargo_expression(s).map(Some).map_err(|e| {
                StepError::invalid_config(field, format!("error compiling expression: {e}"))
            }),
        }
    };
    let mut outputs = Vec::with_capacity(cfg.outputs.len());
    for (i, o) in cfg.outputs.iter().enumerate() {
        if o.name.is_empty() {
            return Err(StepError::invalid_config(
                format!("outputs[{i}].name"),
                "must not be empty",
            ));
        }
        let e = engine
            .compile_kargo_expression(&o.from_expression)
            .map_err(|e| {
                StepError::invalid_config(
                    format!("outputs[{i}].fromExpression"),
                    format!("error compiling expression: {e}"),
                )
            })?;
        outputs.push((o.name.clone(), e));
    }
    Ok(Exprs {
        success: one("successExpression", &cfg.success_expression)?,
        failure: one("failureExpression", &cfg.failure_expression)?,
        error: one("errorExpression", &cfg.error_expression)?,
        outputs,
    })
}

/// The response as the expressions see it.
#[derive(Debug)]
struct ResponseEnv {
    status: u16,
    /// Canonical name → values.
    headers: BTreeMap<String, Vec<String>>,
    body: Json,
}

impl Object for ResponseEnv {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "status" => Some(Value::from(self.status)),
            "headers" => serde_json::to_value(&self.headers)
                .ok()
                .map(|h| kargo_core::expr::from_json(&h)),
            "body" => Some(kargo_core::expr::from_json(&self.body)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&["status", "headers", "body"])
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut minijinja::State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        match method {
            "header" | "Header" => {
                let name = match args {
                    [n] => n.as_str().map(str::to_owned).ok_or_else(|| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            "header() takes a header name",
                        )
                    })?,
                    _ => {
                        return Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            "header() takes one argument",
                        ));
                    }
                };
                let v = self
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                    .and_then(|(_, v)| v.first().cloned())
                    .unwrap_or_default();
                Ok(Value::from(v))
            }
            _ => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }
}

/// `content-type` → `Content-Type` (Go's canonical header form).
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Parses a body per its media type (see the module documentation).
fn parse_body(bytes: &[u8], content_type: &str) -> Result<Json, String> {
    if bytes.is_empty() {
        return Ok(Json::Object(serde_json::Map::new()));
    }
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = media == "application/json" || media.ends_with("+json") || media == "text/json";
    let is_yaml = matches!(
        media.as_str(),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
    ) || media.ends_with("+yaml");
    if is_json {
        serde_json::from_slice(bytes).map_err(|e| format!("the body is not valid JSON: {e}"))
    } else if is_yaml {
        yaml_serde::from_slice::<Json>(bytes)
            .map_err(|e| format!("the body is not valid YAML: {e}"))
    } else if media.starts_with("text/") {
        Ok(Json::String(String::from_utf8_lossy(bytes).into_owned()))
    } else {
        Ok(serde_json::from_slice(bytes).unwrap_or_else(|_| Json::Object(serde_json::Map::new())))
    }
}

fn eval_bool(e: &CompiledExpr<'_>, scope: &Scope, field: &str) -> Result<bool, StepError> {
    e.eval_bool(scope)
        .map_err(|err| StepError::terminal(format!("error evaluating {field}: {err}")))
}

/// What the expressions decided about a response.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Failed(String),
    Error(String),
    Succeeded,
    Undecided,
}

fn decide(exprs: &Exprs<'_>, scope: &Scope, status: u16) -> Result<Decision, StepError> {
    if let Some(f) = &exprs.failure
        && eval_bool(f, scope, "failureExpression")?
    {
        return Ok(Decision::Failed(format!(
            "HTTP request failed: failureExpression {:?} is true (status {status})",
            f.text()
        )));
    }
    if let Some(e) = &exprs.error
        && eval_bool(e, scope, "errorExpression")?
    {
        return Ok(Decision::Error(format!(
            "HTTP request errored: errorExpression {:?} is true (status {status})",
            e.text()
        )));
    }
    if let Some(s) = &exprs.success
        && eval_bool(s, scope, "successExpression")?
    {
        return Ok(Decision::Succeeded);
    }
    if exprs.success.is_none() && exprs.failure.is_none() {
        if (200..300).contains(&status) {
            return Ok(Decision::Succeeded);
        }
        return Ok(Decision::Error(format!(
            "HTTP request returned a non-2xx status {status}"
        )));
    }
    Ok(Decision::Undecided)
}

/// `url` (http or https) with `query_params` appended; shared by `http` and
/// `http-download`. The parser's message never quotes the URL (a token may be in it).
pub(crate) fn build_url<'a>(
    url: &str,
    query_params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<reqwest::Url, StepError> {
    if url.trim().is_empty() {
        return Err(StepError::invalid_config("url", "must not be empty"));
    }
    let mut url = reqwest::Url::parse(url.trim())
        .map_err(|e| StepError::invalid_config("url", format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::invalid_config(
            "url",
            format!("unsupported scheme {:?} (http or https)", url.scheme()),
        ));
    }
    let mut params = query_params.into_iter().peekable();
    if params.peek().is_some() {
        let mut q = url.query_pairs_mut();
        for (name, value) in params {
            q.append_pair(name, value);
        }
    }
    Ok(url)
}

#[async_trait]
impl Step for HttpRequest {
    const KIND: &'static str = "http";
    type Config = HttpConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::External)
    }

    async fn run(&self, ctx: &StepContext, cfg: HttpConfig) -> Result<StepOutcome, StepError> {
        let url = build_url(
            &cfg.url,
            cfg.query_params
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_str())),
        )?;
        let shown = net::shown_url(&url);
        let method_name = cfg
            .method
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("GET")
            .to_ascii_uppercase();
        if !METHODS.contains(&method_name.as_str()) {
            return Err(StepError::invalid_config(
                "method",
                format!("unsupported method {method_name:?}"),
            ));
        }
        if !matches!(method_name.as_str(), "GET" | "HEAD" | "OPTIONS")
            && let Some(skip) = crate::dry_run_skip(ctx, &format!("send {method_name} {shown}"))
        {
            return Ok(skip);
        }
        let method = reqwest::Method::from_bytes(method_name.as_bytes())
            .map_err(|_| StepError::invalid_config("method", "invalid method"))?;
        if cfg.body.is_some() && cfg.body_from_file.is_some() {
            return Err(StepError::invalid_config(
                "bodyFromFile",
                "body and bodyFromFile are mutually exclusive",
            ));
        }
        let engine = ExprEngine::new();
        let exprs = compile(&engine, &cfg)?;
        net::check_url(&url).map_err(|e| StepError::terminal(e.to_string()))?;

        let timeout = cfg.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
        let poll = cfg.poll_interval.map_or(DEFAULT_POLL_INTERVAL, |d| d.0);
        let mut builder = net::guarded_client_builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(cfg.insecure_skip_tls_verify);
        if let Some(p) = non_empty(&cfg.proxy) {
            let proxy = reqwest::Proxy::all(p)
                .map_err(|_| StepError::invalid_config("proxy", "not a valid proxy URL"))?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| StepError::terminal(format!("cannot build the HTTP client: {e}")))?;

        let mut req = client.request(method, url.clone());
        for (i, h) in cfg.headers.iter().enumerate() {
            let name =
                reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                    StepError::invalid_config(
                        format!("headers[{i}].name"),
                        "not a valid header name",
                    )
                })?;
            let mut value = reqwest::header::HeaderValue::from_str(&h.value).map_err(|_| {
                StepError::invalid_config(format!("headers[{i}].value"), "not a valid header value")
            })?;
            value.set_sensitive(true);
            req = req.header(name, value);
        }
        // The same for every attempt and a resumed promotion's re-run, so the receiving
        // service can tell a repeated request from a new one.
        if !ctx.execution_id.is_empty()
            && !cfg
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(IDEMPOTENCY_KEY))
        {
            match reqwest::header::HeaderValue::from_str(&ctx.execution_id) {
                Ok(v) => req = req.header(IDEMPOTENCY_KEY, v),
                Err(_) => tracing::warn!(
                    "the step's execution ID is not a valid header value: no {IDEMPOTENCY_KEY} header"
                ),
            }
        }
        if let Some(b) = &cfg.body {
            req = req.body(b.clone());
        } else if let Some(f) = non_empty(&cfg.body_from_file) {
            let path = ctx.path(f)?;
            let bytes = tokio::fs::read(&path).await.map_err(|e| {
                StepError::terminal(format!("cannot read bodyFromFile {f:?}: {}", e.kind()))
            })?;
            req = req.body(bytes);
        }

        tracing::debug!(method = %method_name, url = %shown, "sending HTTP request");
        let resp = tokio::select! {
            r = req.send() => r,
            () = ctx.cancellation().cancelled() => {
                return Err(StepError::new(StepErrorKind::Cancelled, "cancelled"));
            }
        };
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let (msg, blocked) = net::describe_reqwest_error(e);
                let msg = format!("{method_name} {shown}: {msg}");
                return Err(if blocked.is_some() {
                    StepError::terminal(msg)
                } else {
                    StepError::retryable(msg)
                });
            }
        };
        let status = resp.status().as_u16();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in resp.headers() {
            headers
                .entry(canonical_header(k.as_str()))
                .or_default()
                .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(StepError::terminal(format!(
                            "{method_name} {shown}: the response body exceeds {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let (msg, _) = net::describe_reqwest_error(e);
                    return Err(StepError::retryable(format!(
                        "{method_name} {shown}: reading the response: {msg}"
                    )));
                }
            }
        }
        let content_type = non_empty(&cfg.response_content_type)
            .map(str::to_owned)
            .or_else(|| headers.get("Content-Type").and_then(|v| v.first().cloned()))
            .unwrap_or_default();
        let parsed = parse_body(&body, &content_type).map_err(|m| {
            StepError::terminal(format!("{method_name} {shown}: status {status}: {m}"))
        })?;
        let env = ResponseEnv {
            status,
            headers,
            body: parsed,
        };
        let mut vars = BTreeMap::new();
        vars.insert("response".to_owned(), Value::from_object(env));
        let scope = Scope::new(vars, Arc::new(EvalData::default()));
        tracing::debug!(url = %shown, status, "HTTP response received");

        match decide(&exprs, &scope, status)? {
            Decision::Failed(m) => Err(StepError::failed(m)),
            Decision::Error(m) => Err(StepError::retryable(m)),
            Decision::Undecided => Ok(StepOutcome::running(poll).with_message(format!(
                "waiting: neither successExpression nor failureExpression is true (status {status})"
            ))),
            Decision::Succeeded => {
                let mut outcome = StepOutcome::succeeded();
                for (name, e) in &exprs.outputs {
                    let v = e.eval(&scope).map_err(|err| {
                        StepError::terminal(format!(
                            "error evaluating output {name:?} ({:?}): {err}",
                            e.text()
                        ))
                    })?;
                    outcome.outputs.insert(name.clone(), v);
                }
                Ok(outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_header_names() {
        assert_eq!(canonical_header("content-type"), "Content-Type");
        assert_eq!(canonical_header("x-request-id"), "X-Request-Id");
        assert_eq!(canonical_header("etag"), "Etag");
    }

    #[test]
    fn bodies_parse_per_content_type() {
        assert_eq!(
            parse_body(br#"{"a":1}"#, "application/json; charset=utf-8").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            parse_body(b"a: 1\n", "application/yaml").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            parse_body(b"hello", "text/plain").unwrap(),
            serde_json::json!("hello")
        );
        assert_eq!(
            parse_body(br#"[1]"#, "application/octet-stream").unwrap(),
            serde_json::json!([1])
        );
        assert_eq!(parse_body(b"\x00zz", "").unwrap(), serde_json::json!({}));
        assert!(parse_body(b"{", "application/json").is_err());
        assert_eq!(
            parse_body(b"", "application/json").unwrap(),
            serde_json::json!({})
        );
    }
}
