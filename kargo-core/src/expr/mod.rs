//! `$<< expr >>` templates: Kargo's expression rules on top of minijinja.
//!
//! Any string value of a step's `config` (at any depth), a variable's `value` and a step's
//! `if` may hold templates. The text between `$<<` and `>>` is a
//! [minijinja expression](https://docs.rs/minijinja/latest/minijinja/syntax/index.html#expressions):
//! `vars.tag`, `outputs['update'].commitMessage`, `"main" if ctx.stage == "prod" else "dev"`,
//! `imageFrom(vars.repo).Tag`, `vars.list | join(",")`.
//!
//! # Types: the whole-value coercion
//!
//! A string with no `$<<` is returned untouched (`"42"` stays a string). Otherwise each
//! expression is rendered to text (a string as it is, anything else as JSON), joined with
//! the literal text, and the whole result is coerced (see [`coerce::coerce`]): numbers,
//! booleans, `null`, JSON objects and arrays become typed values; `quote(x)` keeps a string.
//!
//! | template | result |
//! |---|---|
//! | `$<< 1 + 1 >>` | `2` (number) |
//! | `$<< "42" >>` | `42` (number: the text is coerced) |
//! | `$<< quote("42") >>` | `"42"` (string) |
//! | `v$<< 1 >>` | `"v1"` (string) |
//! | `$<< 1 >>$<< 2 >>` | `12` (number) |
//! | `$<< vars.obj >>` | the object |
//! | `{{ .Values.tag }}` | untouched: Helm and Go templates pass through |
//!
//! # Kargo's `${{ }}`
//!
//! Strings holding Kargo's `${{ expr }}` (or `${% expr %}`) are translated from expr-lang
//! to this dialect first (see [`exprlang`] for the supported subset); the two syntaxes may
//! not be mixed in one string.
//!
//! # Strictness and limits
//!
//! An undefined variable or attribute is an error that names the expression and its
//! position, never an empty string. Each evaluation runs with a fuel budget (minijinja's
//! instruction and allocation accounting), so an expression cannot loop or allocate without
//! bound. Templates cannot read files, the environment or the network: the function table
//! below is all they can call.
//!
//! # Functions
//!
//! `quote`, `unsafeQuote`, `asYAML`, `asJSON`, `imageFrom(repoURL[, origin])`,
//! `chartFrom(repoURL[, name][, origin])`, `commitFrom(repoURL[, origin])`,
//! `artifactFrom(subscriptionName[, origin])`, `warehouse(name)`, `secret(name)`,
//! `sharedSecret(name)`, `configMap(name)`, `sharedConfigMap(name)` (read through
//! [`EvalData::secrets`]; a missing one is an empty map),
//! `freightMetadata(freightName)`, `freightStatus(freightName)`, `stageMetadata(stageName)`, `semverParse(v)`,
//! `semverDiff(a, b)`, and in step `config` and `if` only, `always()`, `failure()`,
//! `success()` and `status(alias)`. Plus minijinja's built-in filters and tests.

pub mod coerce;
pub mod exprlang;
mod freight_status;
mod functions;
mod resources;
mod time_values;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{Environment, Expression, UndefinedBehavior};
use serde_json::Value as Json;

pub use freight_status::freight_status_json;
pub use functions::{EvalData, OriginSubscriptions, StepStatusEntry, go_quote};

/// The default fuel budget of one evaluation.
pub const DEFAULT_FUEL: u64 = 250_000;

/// The largest rendered value, in bytes.
pub const MAX_RENDERED_LEN: usize = 4 * 1024 * 1024;

/// The opening delimiter of an expression.
pub const OPEN: &str = "$<<";
/// The closing delimiter of an expression.
pub const CLOSE: &str = ">>";

/// What kind of problem an [`ExprError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// The expression does not parse.
    Syntax,
    /// A `$<<` without its `>>`.
    Unclosed,
    /// A variable or attribute that does not exist.
    Undefined,
    /// A function or operator failed.
    Evaluation,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The result is larger than [`MAX_RENDERED_LEN`].
    TooLarge,
    /// A Kargo `${{ }}` expression uses expr-lang outside the supported subset.
    Translation,
}

/// An expression error: what, in which expression, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExprError {
    /// The kind of error.
    pub kind: ExprErrorKind,
    /// The expression's text (without delimiters).
    pub expression: String,
    /// Byte offset of the expression's opening delimiter in the template.
    pub offset: usize,
    /// Details.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ExprErrorKind::Syntax => "syntax error",
            ExprErrorKind::Unclosed => "unclosed expression",
            ExprErrorKind::Undefined => "undefined value",
            ExprErrorKind::Evaluation => "evaluation failed",
            ExprErrorKind::OutOfFuel => "evaluation ran out of fuel",
            ExprErrorKind::TooLarge => "result too large",
            ExprErrorKind::Translation => "unsupported Kargo expression",
        };
        let mut expr = self.expression.trim().to_owned();
        if expr.len() > 120 {
            let mut cut = 117;
            while !expr.is_char_boundary(cut) {
                cut -= 1;
            }
            expr.truncate(cut);
            expr.push_str("...");
        }
        write!(
            f,
            "{what} in expression `{expr}` at offset {}: {}",
            self.offset, self.message
        )
    }
}

/// The expression engine: a minijinja environment with Kargo's function table.
///
/// Build one and share it (it is `Send + Sync`); compiled [`Template`]s borrow it.
pub struct ExprEngine {
    env: Environment<'static>,
}

impl fmt::Debug for ExprEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExprEngine").finish_non_exhaustive()
    }
}

impl Default for ExprEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl ExprEngine {
    /// An engine with Kargo's functions and the default fuel budget.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(DEFAULT_FUEL));
        env.set_recursion_limit(64);
        // Blocks and comments move out of the way so `{{ }}` / `{% %}` / `{# #}` of Helm and
        // Go templates are never interpreted if a template is ever rendered whole.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .variable_delimiters(OPEN, CLOSE)
            .block_delimiters("$<%", "%>")
            .comment_delimiters("$<#", "#>")
            .build()
        {
            env.set_syntax(syntax);
        }
        functions::register(&mut env);
        time_values::register(&mut env);
        resources::register(&mut env);
        Self { env }
    }

    /// Sets the fuel budget of one evaluation (`None`: unlimited; not recommended).
    pub fn set_fuel(&mut self, fuel: Option<u64>) {
        self.env.set_fuel(fuel);
    }

    /// Adds a function to the table (for embedders' own helpers).
    pub fn add_function<F, Rv, Args>(&mut self, name: &'static str, f: F)
    where
        F: minijinja::functions::Function<Rv, Args>,
        Rv: minijinja::value::FunctionResult,
        Args: for<'a> minijinja::value::FunctionArgs<'a>,
    {
        self.env.add_function(name, f);
    }

    /// Compiles a template string (a value that may contain `$<< >>` or Kargo's `${{ }}`).
    pub fn compile(&self, template: &str) -> Result<Template<'_>, ExprError> {
        let translated;
        let source: &str = if template.contains("${{") || template.contains("${%") {
            translated = exprlang::translate_template(template).map_err(|e| ExprError {
                kind: if e.message.starts_with("unclosed") {
                    ExprErrorKind::Unclosed
                } else {
                    ExprErrorKind::Translation
                },
                expression: e.source_text.clone(),
                offset: e.offset,
                message: e.message.clone(),
            })?;
            &translated
        } else {
            template
        };
        if !source.contains(OPEN) {
            return Ok(Template {
                kind: TemplateKind::Literal(source.to_owned()),
            });
        }
        let segments = split(source)?;
        let mut compiled = Vec::with_capacity(segments.len());
        for seg in segments {
            match seg {
                RawSegment::Text(t) => compiled.push(Segment::Text(t.to_owned())),
                RawSegment::Expr { text, offset } => {
                    compiled.push(Segment::Expr(self.compile_at(text, offset)?));
                }
            }
        }
        let kind = match compiled.as_slice() {
            [Segment::Expr(_)] => match compiled.pop() {
                Some(Segment::Expr(e)) => TemplateKind::Single(e),
                _ => TemplateKind::Multi(Vec::new()),
            },
            _ => TemplateKind::Multi(compiled),
        };
        Ok(Template { kind })
    }

    /// Compiles a bare expression (no delimiters), as used by `freightCreationCriteria` or
    /// `expressionFilter`.
    pub fn compile_expression(&self, expr: &str) -> Result<CompiledExpr<'_>, ExprError> {
        self.compile_at(expr, 0)
    }

    /// Compiles a bare Kargo (expr-lang) expression, as found in
    /// `freightCreationCriteria.expression`, a git subscription's `expressionFilter` or the
    /// `http` step's success expressions: it is translated, then compiled.
    pub fn compile_kargo_expression(&self, expr: &str) -> Result<CompiledExpr<'_>, ExprError> {
        let translated = exprlang::translate(expr).map_err(|e| ExprError {
            kind: ExprErrorKind::Translation,
            expression: e.source_text.clone(),
            offset: e.offset,
            message: e.message.clone(),
        })?;
        let mut compiled = self.compile_at(&translated, 0)?;
        compiled.text = expr.to_owned();
        Ok(compiled)
    }

    fn compile_at(&self, text: &str, offset: usize) -> Result<CompiledExpr<'_>, ExprError> {
        let expr = self
            .env
            .compile_expression_owned(text.to_owned())
            .map_err(|e| ExprError {
                kind: ExprErrorKind::Syntax,
                expression: text.to_owned(),
                offset,
                message: describe(&e),
            })?;
        Ok(CompiledExpr {
            expr,
            text: text.to_owned(),
            offset,
        })
    }

    /// Compiles and renders one template string.
    pub fn render_str(&self, template: &str, scope: &Scope) -> Result<Json, ExprError> {
        self.compile(template)?.render(scope)
    }

    /// Renders every string in `value` (at any depth; keys are not templates).
    pub fn render_json(&self, value: &Json, scope: &Scope) -> Result<Json, PathedExprError> {
        let mut path = Vec::new();
        self.render_json_at(value, scope, &mut path)
    }

    fn render_json_at(
        &self,
        value: &Json,
        scope: &Scope,
        path: &mut Vec<PathPart>,
    ) -> Result<Json, PathedExprError> {
        Ok(match value {
            Json::String(s) => self.render_str(s, scope).map_err(|e| PathedExprError {
                path: render_path(path),
                error: e,
            })?,
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathPart::Index(i));
                    out.push(self.render_json_at(item, scope, path)?);
                    path.pop();
                }
                Json::Array(out)
            }
            Json::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    path.push(PathPart::Key(k.clone()));
                    out.insert(k.clone(), self.render_json_at(v, scope, path)?);
                    path.pop();
                }
                Json::Object(out)
            }
            other => other.clone(),
        })
    }

    /// Compiles every string in `value` (at any depth) once, for rendering many times.
    pub fn compile_json(&self, value: &Json) -> Result<CompiledJson<'_>, PathedExprError> {
        let mut path = Vec::new();
        self.compile_json_at(value, &mut path)
    }

    fn compile_json_at(
        &self,
        value: &Json,
        path: &mut Vec<PathPart>,
    ) -> Result<CompiledJson<'_>, PathedExprError> {
        Ok(match value {
            Json::String(s) => {
                let t = self.compile(s).map_err(|e| PathedExprError {
                    path: render_path(path),
                    error: e,
                })?;
                if t.is_literal() {
                    CompiledJson::Literal(value.clone())
                } else {
                    CompiledJson::Template(t)
                }
            }
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathPart::Index(i));
                    out.push(self.compile_json_at(item, path)?);
                    path.pop();
                }
                CompiledJson::Array(out)
            }
            Json::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    path.push(PathPart::Key(k.clone()));
                    out.push((k.clone(), self.compile_json_at(v, path)?));
                    path.pop();
                }
                CompiledJson::Object(out)
            }
            other => CompiledJson::Literal(other.clone()),
        })
    }

    /// Compiles every string in `value` without evaluating anything, returning every error
    /// with its key path.
    pub fn validate_json(&self, value: &Json) -> Vec<PathedExprError> {
        let mut errors = Vec::new();
        let mut path = Vec::new();
        self.validate_at(value, &mut path, &mut errors);
        errors
    }

    fn validate_at(
        &self,
        value: &Json,
        path: &mut Vec<PathPart>,
        errors: &mut Vec<PathedExprError>,
    ) {
        match value {
            Json::String(s) => {
                if let Err(e) = self.compile(s) {
                    errors.push(PathedExprError {
                        path: render_path(path),
                        error: e,
                    });
                }
            }
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(PathPart::Index(i));
                    self.validate_at(item, path, errors);
                    path.pop();
                }
            }
            Json::Object(map) => {
                for (k, v) in map {
                    path.push(PathPart::Key(k.clone()));
                    self.validate_at(v, path, errors);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// An [`ExprError`] located at a key path inside a JSON document (e.g. `updates[0].value`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct PathedExprError {
    /// The key path (`a.b[2].c`); empty for the root.
    pub path: String,
    /// The error.
    pub error: ExprError,
}

/// A JSON document whose strings are compiled templates (see [`ExprEngine::compile_json`]).
#[derive(Debug)]
pub enum CompiledJson<'e> {
    /// A value with no template in it.
    Literal(Json),
    /// A template string.
    Template(Template<'e>),
    /// A list.
    Array(Vec<CompiledJson<'e>>),
    /// A map, in document order.
    Object(Vec<(String, CompiledJson<'e>)>),
}

impl CompiledJson<'_> {
    /// Renders every template, naming the key path of the first error.
    pub fn render(&self, scope: &Scope) -> Result<Json, PathedExprError> {
        let mut path = Vec::new();
        self.render_at(scope, &mut path)
    }

    fn render_at(&self, scope: &Scope, path: &mut Vec<PathPart>) -> Result<Json, PathedExprError> {
        Ok(match self {
            Self::Literal(v) => v.clone(),
            Self::Template(t) => t.render(scope).map_err(|e| PathedExprError {
                path: render_path(path),
                error: e,
            })?,
            Self::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathPart::Index(i));
                    out.push(item.render_at(scope, path)?);
                    path.pop();
                }
                Json::Array(out)
            }
            Self::Object(entries) => {
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (k, v) in entries {
                    path.push(PathPart::Key(k.clone()));
                    out.insert(k.clone(), v.render_at(scope, path)?);
                    path.pop();
                }
                Json::Object(out)
            }
        })
    }
}

enum PathPart {
    Key(String),
    Index(usize),
}

fn render_path(parts: &[PathPart]) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            PathPart::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathPart::Index(i) => {
                s.push_str(&format!("[{i}]"));
            }
        }
    }
    s
}

/// A compiled expression with its source text and position.
pub struct CompiledExpr<'e> {
    expr: Expression<'e, 'static>,
    text: String,
    offset: usize,
}

impl fmt::Debug for CompiledExpr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledExpr")
            .field("text", &self.text)
            .field("offset", &self.offset)
            .finish()
    }
}

impl CompiledExpr<'_> {
    /// Evaluates to a minijinja value; undefined results are errors.
    pub fn eval_value(&self, scope: &Scope) -> Result<Value, ExprError> {
        let v = self
            .expr
            .eval(scope.root.clone())
            .map_err(|e| self.error_from(&e))?;
        if v.is_undefined() {
            return Err(ExprError {
                kind: ExprErrorKind::Undefined,
                expression: self.text.clone(),
                offset: self.offset,
                message: format!("`{}` is not defined", self.text.trim()),
            });
        }
        Ok(v)
    }

    /// Evaluates to JSON (no text coercion: the value's own type is kept).
    pub fn eval(&self, scope: &Scope) -> Result<Json, ExprError> {
        let v = self.eval_value(scope)?;
        to_json(&v).map_err(|m| self.error(ExprErrorKind::Evaluation, m))
    }

    /// Evaluates a condition: a bool, or text Go's `ParseBool` accepts (`"true"`, `"1"`...).
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, ExprError> {
        match self.eval(scope)? {
            Json::Bool(b) => Ok(b),
            // Kargo prints a non-boolean result (Go's `%v`) and parses that as a boolean:
            // of numbers, only 1 and 0 pass.
            Json::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
            Json::Number(n) if n.as_f64() == Some(0.0) && !n.to_string().starts_with('-') => {
                Ok(false)
            }
            Json::Number(n) => Err(self.error(
                ExprErrorKind::Evaluation,
                format!("expected a boolean, got the number {n} (only 1 and 0 read as booleans)"),
            )),
            Json::String(s) => match s.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
                _ => Err(self.error(
                    ExprErrorKind::Evaluation,
                    format!("expected a boolean, got the string {s:?}"),
                )),
            },
            other => Err(self.error(
                ExprErrorKind::Evaluation,
                format!("expected a boolean, got {}", json_kind(&other)),
            )),
        }
    }

    /// The expression text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn error(&self, kind: ExprErrorKind, message: String) -> ExprError {
        ExprError {
            kind,
            expression: self.text.clone(),
            offset: self.offset,
            message,
        }
    }

    fn error_from(&self, e: &minijinja::Error) -> ExprError {
        let kind = match e.kind() {
            minijinja::ErrorKind::UndefinedError => ExprErrorKind::Undefined,
            minijinja::ErrorKind::OutOfFuel => ExprErrorKind::OutOfFuel,
            minijinja::ErrorKind::SyntaxError => ExprErrorKind::Syntax,
            _ => ExprErrorKind::Evaluation,
        };
        let mut message = describe(e);
        if let Some(range) = e.range()
            && let Some(part) = self.text.get(range.clone())
        {
            message.push_str(&format!(" (at `{part}`, column {})", range.start + 1));
        }
        self.error(kind, message)
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => d.to_owned(),
        None => e.kind().to_string(),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a map",
    }
}

/// Converts a minijinja value to JSON.
///
/// Whole floats become integers (`4 / 2` is `2`, not `2.0`), as Kargo's JSON encoding of
/// float64 values prints them.
pub fn to_json(v: &Value) -> Result<Json, String> {
    let mut j =
        serde_json::to_value(v).map_err(|e| format!("cannot convert the result to JSON: {e}"))?;
    integral_floats(&mut j);
    Ok(j)
}

fn integral_floats(j: &mut Json) {
    match j {
        Json::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *j = Json::from(i);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(integral_floats),
        Json::Object(map) => map.values_mut().for_each(integral_floats),
        _ => {}
    }
}

/// Converts JSON to a minijinja value.
pub fn from_json(v: &Json) -> Value {
    Value::from(minijinja::value::Serde(v))
}

enum TemplateKind<'e> {
    Literal(String),
    Single(CompiledExpr<'e>),
    Multi(Vec<Segment<'e>>),
}

enum Segment<'e> {
    Text(String),
    Expr(CompiledExpr<'e>),
}

/// A compiled template string: parse once, render many times.
pub struct Template<'e> {
    kind: TemplateKind<'e>,
}

impl fmt::Debug for Template<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TemplateKind::Literal(s) => f.debug_tuple("Literal").field(s).finish(),
            TemplateKind::Single(e) => f.debug_tuple("Single").field(e).finish(),
            TemplateKind::Multi(s) => f.debug_tuple("Multi").field(&s.len()).finish(),
        }
    }
}

impl Template<'_> {
    /// Whether the template holds no expression.
    pub fn is_literal(&self) -> bool {
        matches!(self.kind, TemplateKind::Literal(_))
    }

    /// Renders with Kargo's whole-value coercion.
    pub fn render(&self, scope: &Scope) -> Result<Json, ExprError> {
        match &self.kind {
            TemplateKind::Literal(s) => Ok(Json::String(s.clone())),
            TemplateKind::Single(e) => {
                let v = e.eval_value(scope)?;
                if let Some(s) = v.as_str() {
                    if s.len() > MAX_RENDERED_LEN {
                        return Err(e.error(ExprErrorKind::TooLarge, too_large(s.len())));
                    }
                    return Ok(coerce::coerce(s));
                }
                let j = to_json(&v).map_err(|m| e.error(ExprErrorKind::Evaluation, m))?;
                Ok(j)
            }
            TemplateKind::Multi(segments) => {
                let mut out = String::new();
                for seg in segments {
                    match seg {
                        Segment::Text(t) => out.push_str(t),
                        Segment::Expr(e) => {
                            let v = e.eval_value(scope)?;
                            if let Some(s) = v.as_str() {
                                out.push_str(s);
                            } else {
                                let j = to_json(&v)
                                    .map_err(|m| e.error(ExprErrorKind::Evaluation, m))?;
                                out.push_str(&j.to_string());
                            }
                            if out.len() > MAX_RENDERED_LEN {
                                return Err(e.error(ExprErrorKind::TooLarge, too_large(out.len())));
                            }
                        }
                    }
                }
                Ok(coerce::coerce(&out))
            }
        }
    }

    /// Renders to text (no coercion): strings as they are, other values as JSON.
    pub fn render_text(&self, scope: &Scope) -> Result<String, ExprError> {
        Ok(match self.render(scope)? {
            Json::String(s) => s,
            other => other.to_string(),
        })
    }
}

fn too_large(n: usize) -> String {
    format!("the rendered value has {n} bytes; the limit is {MAX_RENDERED_LEN}")
}

enum RawSegment<'a> {
    Text(&'a str),
    Expr { text: &'a str, offset: usize },
}

/// Splits a template into literal text and expressions. The closing `>>` is searched
/// outside string literals, so `$<< 'a>>b' >>` is one expression.
fn split(src: &str) -> Result<Vec<RawSegment<'_>>, ExprError> {
    let mut out = Vec::new();
    let mut rest_start = 0;
    while let Some(rel) = src[rest_start..].find(OPEN) {
        let open = rest_start + rel;
        if open > rest_start {
            out.push(RawSegment::Text(&src[rest_start..open]));
        }
        let body_start = open + OPEN.len();
        let bytes = src.as_bytes();
        let mut i = body_start;
        let mut quote: Option<u8> = None;
        let mut close = None;
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                Some(q) => {
                    if c == b'\\' {
                        i += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => {
                    if c == b'\'' || c == b'"' {
                        quote = Some(c);
                    } else if bytes[i..].starts_with(CLOSE.as_bytes()) {
                        close = Some(i);
                        break;
                    }
                }
            }
            i += 1;
        }
        let Some(close) = close else {
            return Err(ExprError {
                kind: ExprErrorKind::Unclosed,
                expression: src[body_start..].to_owned(),
                offset: open,
                message: format!("expected `{CLOSE}` but reached the end of the value"),
            });
        };
        out.push(RawSegment::Expr {
            text: &src[body_start..close],
            offset: open,
        });
        rest_start = close + CLOSE.len();
    }
    if rest_start < src.len() {
        out.push(RawSegment::Text(&src[rest_start..]));
    }
    Ok(out)
}

/// The variables an expression sees: `ctx`, `vars`, `outputs`, `task.outputs`,
/// `stepMetas`, plus the data behind the functions ([`EvalData`]).
#[derive(Clone, Debug)]
pub struct Scope {
    root: Value,
}

impl Scope {
    /// A scope with the given top-level variables and function data.
    pub fn new(vars: BTreeMap<String, Value>, data: Arc<EvalData>) -> Self {
        let mut vars = vars;
        vars.insert(
            functions::DATA_KEY.to_owned(),
            Value::from_object(functions::DataHandle(data)),
        );
        Self {
            root: Value::from(vars),
        }
    }

    /// A scope with only the given JSON variables and no function data.
    pub fn from_json(vars: &serde_json::Map<String, Json>) -> Self {
        let map: BTreeMap<String, Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), from_json(v)))
            .collect();
        Self::new(map, Arc::new(EvalData::default()))
    }

    /// An empty scope.
    pub fn empty() -> Self {
        Self::new(BTreeMap::new(), Arc::new(EvalData::default()))
    }
}

#[cfg(test)]
mod tests;
