//! Reading Argo Rollouts `AnalysisTemplate` / `ClusterAnalysisTemplate` documents: their
//! `spec.args`, `spec.metrics` and `spec.dryRun`, and one metric's fields once its
//! `{{args.NAME}}` placeholders are filled in.
//!
//! Metric fields read (the rest of Argo Rollouts' `Metric` is ignored, as the Kubernetes
//! API server prunes unknown fields): `name`, `interval`, `initialDelay`, `count`,
//! `successCondition`, `failureCondition`, `failureLimit` (default 0),
//! `inconclusiveLimit` (default 0; `inconsistentLimit` accepted too),
//! `consecutiveErrorLimit` (default 4) and `provider` with exactly one of `web` or
//! `prometheus`. Durations are Go durations (`30s`, `5m`, `1h30m`); counts and limits are
//! integers or strings holding one (after argument substitution).

use std::str::FromStr;
use std::time::Duration;

use kargo_core::expr::ExprEngine;
use kargo_core::loader::{ForeignDocument, ManifestError};
use serde_json::Value as Json;

use super::condition::check_condition;
use super::jsonpath::JsonPath;

/// Argo Rollouts' metric providers that kargo-rs does not run.
pub(crate) const UNSUPPORTED_PROVIDERS: &[&str] = &[
    "job",
    "datadog",
    "newRelic",
    "wavefront",
    "kayenta",
    "cloudWatch",
    "graphite",
    "influxdb",
    "skywalking",
    "plugin",
];

/// Where a template argument's value comes from when it has no `value`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ArgSource {
    /// `valueFrom.secretKeyRef`: a key of a Secret in the Stage's Project.
    Secret {
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
    /// `valueFrom.fieldRef` (Argo Rollouts reads it from the Rollout; there is none).
    Field(String),
}

/// One entry of a template's `spec.args`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TemplateArg {
    /// The name.
    pub name: String,
    /// The default value.
    pub value: Option<String>,
    /// Where the value comes from otherwise.
    pub value_from: Option<ArgSource>,
}

/// A template as read from its document.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    /// `AnalysisTemplate demo/health`.
    pub label: String,
    /// The document.
    pub doc: ForeignDocument,
    /// `spec.args`.
    pub args: Vec<TemplateArg>,
    /// `spec.metrics`, as written (placeholders unfilled).
    pub metrics: Vec<Json>,
    /// `spec.dryRun[].metricName` (`*` for all).
    pub dry_run: Vec<String>,
}

impl Template {
    /// An error at the line of `field` in this template.
    pub(crate) fn error(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        let field = field.into();
        ManifestError {
            location: self.doc.field_location(&field),
            resource: Some(self.label.clone()),
            field,
            message: message.into(),
        }
    }
}

fn str_at<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Json::as_str)
}

/// Reads a template document; problems are pushed to `errors` (with `context`, e.g.
/// "Stage demo/dev verifies with this template", appended to each message).
pub(crate) fn read_template(
    doc: &ForeignDocument,
    engine: &ExprEngine,
    context: &str,
    errors: &mut Vec<ManifestError>,
) -> Template {
    let mut t = Template {
        label: doc.label(),
        doc: doc.clone(),
        args: Vec::new(),
        metrics: Vec::new(),
        dry_run: Vec::new(),
    };
    let mut push = |t: &Template, field: String, message: String| {
        errors.push(t.error(field, format!("{message}; {context}")));
    };
    let spec = doc.value.get("spec").cloned().unwrap_or(Json::Null);
    if let Some(args) = spec.get("args") {
        match args.as_array() {
            Some(list) => {
                for (i, a) in list.iter().enumerate() {
                    let field = format!("spec.args[{i}]");
                    let Some(name) = str_at(a, "name").filter(|n| !n.is_empty()) else {
                        push(
                            &t,
                            format!("{field}.name"),
                            "argument name is required".into(),
                        );
                        continue;
                    };
                    let value = match a.get("value") {
                        None | Some(Json::Null) => None,
                        Some(Json::String(s)) => Some(s.clone()),
                        Some(_) => {
                            push(&t, format!("{field}.value"), "expected a string".into());
                            None
                        }
                    };
                    let value_from = match a.get("valueFrom") {
                        None | Some(Json::Null) => None,
                        Some(vf) => {
                            if let Some(r) = vf.get("secretKeyRef") {
                                match (str_at(r, "name"), str_at(r, "key")) {
                                    (Some(n), Some(k)) if !n.is_empty() && !k.is_empty() => {
                                        Some(ArgSource::Secret {
                                            name: n.to_owned(),
                                            key: k.to_owned(),
                                        })
                                    }
                                    _ => {
                                        push(
                                            &t,
                                            format!("{field}.valueFrom.secretKeyRef"),
                                            "secretKeyRef needs a name and a key".into(),
                                        );
                                        None
                                    }
                                }
                            } else if let Some(r) = vf.get("fieldRef") {
                                Some(ArgSource::Field(
                                    str_at(r, "fieldPath").unwrap_or_default().to_owned(),
                                ))
                            } else {
                                push(
                                    &t,
                                    format!("{field}.valueFrom"),
                                    "expected secretKeyRef or fieldRef".into(),
                                );
                                None
                            }
                        }
                    };
                    if t.args.iter().any(|x| x.name == name) {
                        push(
                            &t,
                            format!("{field}.name"),
                            format!("argument {name:?} is defined twice"),
                        );
                        continue;
                    }
                    t.args.push(TemplateArg {
                        name: name.to_owned(),
                        value,
                        value_from,
                    });
                }
            }
            None => push(&t, "spec.args".into(), "expected a list".into()),
        }
    }
    match spec.get("metrics").and_then(Json::as_array) {
        Some(list) if !list.is_empty() => {
            for (i, m) in list.iter().enumerate() {
                let field = format!("spec.metrics[{i}]");
                if let Err((f, message)) = parse_metric(m, true, engine) {
                    let path = if f.is_empty() {
                        field
                    } else {
                        format!("{field}.{f}")
                    };
                    push(&t, path, message);
                    continue;
                }
                let name = str_at(m, "name").unwrap_or_default();
                if t.metrics.iter().any(|x| str_at(x, "name") == Some(name)) {
                    push(
                        &t,
                        format!("{field}.name"),
                        format!("two metrics are named {name:?}"),
                    );
                    continue;
                }
                t.metrics.push(m.clone());
            }
        }
        _ => push(
            &t,
            "spec.metrics".into(),
            "at least one metric is required".into(),
        ),
    }
    if let Some(list) = spec.get("dryRun").and_then(Json::as_array) {
        t.dry_run = list
            .iter()
            .filter_map(|d| str_at(d, "metricName").map(str::to_owned))
            .collect();
    }
    t
}

/// An HTTP method of the `web` provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WebMethod {
    /// `GET` (default).
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
}

/// The `web` provider's fields.
#[derive(Clone, Debug)]
pub(crate) struct WebSpec {
    pub url: String,
    pub method: WebMethod,
    pub headers: Vec<(String, String)>,
    /// `body` as text, or `jsonBody` serialized.
    pub body: Option<String>,
    pub json_body: bool,
    pub timeout: Duration,
    pub json_path: JsonPath,
    pub insecure: bool,
}

/// The `prometheus` provider's fields.
#[derive(Clone, Debug)]
pub(crate) struct PrometheusSpec {
    pub address: String,
    pub query: String,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub insecure: bool,
}

/// A metric's provider.
#[derive(Clone, Debug)]
pub(crate) enum ProviderSpec {
    Web(WebSpec),
    Prometheus(PrometheusSpec),
}

impl ProviderSpec {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ProviderSpec::Web(_) => "web",
            ProviderSpec::Prometheus(_) => "prometheus",
        }
    }
}

/// A metric ready to run.
#[derive(Clone, Debug)]
pub(crate) struct MetricSpec {
    pub name: String,
    pub interval: Option<Duration>,
    pub initial_delay: Option<Duration>,
    /// The effective count: `None` runs until a limit is exceeded or the run ends.
    pub count: Option<u32>,
    pub success_condition: String,
    pub failure_condition: String,
    pub failure_limit: i64,
    pub inconclusive_limit: i64,
    pub consecutive_error_limit: i64,
    pub provider: ProviderSpec,
}

type FieldResult<T> = Result<T, (String, String)>;

fn has_placeholder(s: &str) -> bool {
    s.contains("{{")
}

fn duration(m: &Json, key: &str, lenient: bool) -> FieldResult<Option<Duration>> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) if lenient && has_placeholder(s) => Ok(None),
        Some(Json::String(s)) => kargo_core::model::Duration::from_str(s)
            .map(|d| Some(d.0))
            .map_err(|e| (key.to_owned(), e.to_string())),
        Some(_) => Err((key.to_owned(), "expected a duration such as \"30s\"".into())),
    }
}

/// An IntOrString field: `Ok(None)` when absent (or a placeholder when lenient).
fn int_field(m: &Json, key: &str, lenient: bool) -> FieldResult<Option<i64>> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| (key.to_owned(), format!("expected an integer, got {n}"))),
        Some(Json::String(s)) if lenient && has_placeholder(s) => Ok(None),
        Some(Json::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| (key.to_owned(), format!("expected an integer, got {s:?}"))),
        Some(_) => Err((key.to_owned(), "expected an integer".into())),
    }
}

fn string_field(m: &Json, key: &str) -> FieldResult<String> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err((key.to_owned(), "expected a string".into())),
    }
}

fn headers(p: &Json, prefix: &str) -> FieldResult<Vec<(String, String)>> {
    let Some(list) = p.get("headers") else {
        return Ok(Vec::new());
    };
    let Some(list) = list.as_array() else {
        return Err((format!("{prefix}.headers"), "expected a list".into()));
    };
    list.iter()
        .enumerate()
        .map(|(i, h)| match (str_at(h, "key"), h.get("value")) {
            (Some(k), Some(Json::String(v))) if !k.is_empty() => Ok((k.to_owned(), v.clone())),
            (Some(k), None) if !k.is_empty() => Ok((k.to_owned(), String::new())),
            _ => Err((
                format!("{prefix}.headers[{i}]"),
                "a header needs a key and a string value".into(),
            )),
        })
        .collect()
}

fn check_url(field: String, url: &str, lenient: bool) -> FieldResult<()> {
    if url.is_empty() {
        return Err((field, "is required".into()));
    }
    if lenient && has_placeholder(url) {
        return Ok(());
    }
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err((field, format!("unsupported URL scheme {:?}", u.scheme()))),
        Err(e) => Err((field, format!("not a valid URL: {e}"))),
    }
}

fn parse_web(p: &Json, lenient: bool) -> FieldResult<WebSpec> {
    let pre = "provider.web";
    let url = string_field(p, "url").map_err(|(f, m)| (format!("{pre}.{f}"), m))?;
    check_url(format!("{pre}.url"), &url, lenient)?;
    let method = match string_field(p, "method")
        .map_err(|(f, m)| (format!("{pre}.{f}"), m))?
        .to_ascii_uppercase()
        .as_str()
    {
        "" | "GET" => WebMethod::Get,
        "POST" => WebMethod::Post,
        "PUT" => WebMethod::Put,
        other => {
            return Err((
                format!("{pre}.method"),
                format!("method {other:?} is not supported (GET, POST or PUT)"),
            ));
        }
    };
    let body_text = string_field(p, "body").map_err(|(f, m)| (format!("{pre}.{f}"), m))?;
    let json_body = p.get("jsonBody").filter(|v| !v.is_null());
    if !body_text.is_empty() && json_body.is_some() {
        return Err((
            format!("{pre}.body"),
            "use either body or jsonBody, not both".into(),
        ));
    }
    if (!body_text.is_empty() || json_body.is_some()) && method == WebMethod::Get {
        return Err((
            format!("{pre}.method"),
            "body and jsonBody need method POST or PUT".into(),
        ));
    }
    let body = match json_body {
        Some(j) => Some(j.to_string()),
        None if !body_text.is_empty() => Some(body_text),
        None => None,
    };
    let timeout = int_field(p, "timeoutSeconds", lenient)
        .map_err(|(f, m)| (format!("{pre}.{f}"), m))?
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(10), |s| {
            Duration::from_secs(s.unsigned_abs())
        });
    let path_text = string_field(p, "jsonPath").map_err(|(f, m)| (format!("{pre}.{f}"), m))?;
    let json_path = if lenient && has_placeholder(&path_text) {
        JsonPath::default()
    } else {
        JsonPath::parse(&path_text).map_err(|m| (format!("{pre}.jsonPath"), m))?
    };
    Ok(WebSpec {
        url,
        method,
        headers: headers(p, pre)?,
        json_body: json_body.is_some(),
        body,
        timeout,
        json_path,
        insecure: p.get("insecure").and_then(Json::as_bool).unwrap_or(false),
    })
}

fn parse_prometheus(p: &Json, lenient: bool) -> FieldResult<PrometheusSpec> {
    let pre = "provider.prometheus";
    let address = string_field(p, "address").map_err(|(f, m)| (format!("{pre}.{f}"), m))?;
    check_url(format!("{pre}.address"), &address, lenient)?;
    let query = string_field(p, "query").map_err(|(f, m)| (format!("{pre}.{f}"), m))?;
    if query.trim().is_empty() {
        return Err((format!("{pre}.query"), "is required".into()));
    }
    if let Some(auth) = p.get("authentication").filter(|a| match a {
        Json::Object(m) => m.values().any(|v| !v.is_null()),
        Json::Null => false,
        _ => true,
    }) {
        let kinds: Vec<&str> = auth
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err((
            format!("{pre}.authentication"),
            format!(
                "authentication ({}) is not supported; send credentials with headers",
                kinds.join(", ")
            ),
        ));
    }
    let timeout = int_field(p, "timeout", lenient)
        .map_err(|(f, m)| (format!("{pre}.{f}"), m))?
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(30), |s| {
            Duration::from_secs(s.unsigned_abs())
        });
    Ok(PrometheusSpec {
        address,
        query,
        timeout,
        headers: headers(p, pre)?,
        insecure: p.get("insecure").and_then(Json::as_bool).unwrap_or(false),
    })
}

/// Reads one metric. `lenient` (at load time) skips the checks of fields that still hold
/// `{{args...}}` placeholders. The error is `(field path within the metric, message)`.
pub(crate) fn parse_metric(
    m: &Json,
    lenient: bool,
    engine: &ExprEngine,
) -> FieldResult<MetricSpec> {
    if !m.is_object() {
        return Err((String::new(), "expected a mapping".into()));
    }
    let name = string_field(m, "name")?;
    if name.is_empty() {
        return Err(("name".into(), "metric name is required".into()));
    }
    let interval = duration(m, "interval", lenient)?;
    let initial_delay = duration(m, "initialDelay", lenient)?;
    let count = int_field(m, "count", lenient)?;
    let failure_limit = int_field(m, "failureLimit", lenient)?.unwrap_or(0);
    let inconclusive_limit = match int_field(m, "inconclusiveLimit", lenient)? {
        Some(v) => v,
        None => int_field(m, "inconsistentLimit", lenient)?.unwrap_or(0),
    };
    let consecutive_error_limit = int_field(m, "consecutiveErrorLimit", lenient)?.unwrap_or(4);
    if m.get("consecutiveSuccessLimit")
        .is_some_and(|v| !v.is_null())
    {
        return Err((
            "consecutiveSuccessLimit".into(),
            "consecutiveSuccessLimit is not supported".into(),
        ));
    }
    let success_condition = string_field(m, "successCondition")?;
    let failure_condition = string_field(m, "failureCondition")?;
    for (key, cond) in [
        ("successCondition", &success_condition),
        ("failureCondition", &failure_condition),
    ] {
        let skip = cond.is_empty() || (lenient && has_placeholder(cond));
        if !skip {
            check_condition(engine, cond).map_err(|e| (key.to_owned(), e))?;
        }
    }
    if let Some(c) = count {
        if c < 0 {
            return Err(("count".into(), "count must not be negative".into()));
        }
        if c > 1 && interval.is_none() && !(lenient && m.get("interval").is_some()) {
            return Err((
                "interval".into(),
                "interval must be set when count > 1".into(),
            ));
        }
        if c > 0 && c < failure_limit {
            return Err((
                "count".into(),
                format!("count ({c}) must be >= failureLimit ({failure_limit})"),
            ));
        }
        if c > 0 && c < inconclusive_limit {
            return Err((
                "count".into(),
                format!("count ({c}) must be >= inconclusiveLimit ({inconclusive_limit})"),
            ));
        }
    }
    // Argo Rollouts' EffectiveCount: an unset (or 0) count is 1 without an interval and
    // "until stopped" with one.
    let count = match count.filter(|c| *c > 0) {
        Some(c) => Some(u32::try_from(c).unwrap_or(u32::MAX)),
        None if interval.is_none() && m.get("interval").is_none() => Some(1),
        None if interval.is_none() && !lenient => Some(1),
        None => None,
    };
    let provider = m.get("provider").and_then(Json::as_object);
    let Some(provider) = provider else {
        return Err(("provider".into(), "a provider is required".into()));
    };
    let set: Vec<&String> = provider
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k)
        .collect();
    let provider = match set.as_slice() {
        [k] if k.as_str() == "web" => ProviderSpec::Web(parse_web(&provider["web"], lenient)?),
        [k] if k.as_str() == "prometheus" => {
            ProviderSpec::Prometheus(parse_prometheus(&provider["prometheus"], lenient)?)
        }
        [k] if UNSUPPORTED_PROVIDERS.contains(&k.as_str()) => {
            return Err((
                format!("provider.{k}"),
                format!(
                    "metric {name:?} uses the {k} provider, which kargo-rs does not run \
                     (supported: web, prometheus)"
                ),
            ));
        }
        [k] => {
            return Err((
                format!("provider.{k}"),
                format!("metric {name:?}: unknown provider {k:?} (supported: web, prometheus)"),
            ));
        }
        [] => return Err(("provider".into(), "a provider is required".into())),
        _ => {
            return Err(("provider".into(), "exactly one provider must be set".into()));
        }
    };
    Ok(MetricSpec {
        name,
        interval,
        initial_delay,
        count,
        success_condition,
        failure_condition,
        failure_limit,
        inconclusive_limit,
        consecutive_error_limit,
        provider,
    })
}
