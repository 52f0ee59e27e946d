//! `json-update` and `json-parse`, plus what `toml-update` / `toml-parse` share with them:
//! key paths ([`keypath`]), Go-compatible text encodings ([`gofmt`]) and the evaluation of
//! `outputs[].fromExpression`.

pub mod edit;
pub mod gofmt;
pub mod keypath;

use async_trait::async_trait;
use kargo_core::expr::{ExprEngine, Scope};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use crate::files::fsutil;
use edit::Scalar;

/// One `updates[]` entry of `json-update` and `toml-update`.
///
/// ```yaml
/// key: image.tag          # a key path: `a.b`, `list.0.x`, `\.` for a literal dot
/// value: v1.2.3           # a string, number or boolean
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValueUpdate {
    /// The key whose value is set. Parts are separated by `.`; `\.` is a literal dot in a
    /// key; a number addresses an array element. `json-update` follows sjson's syntax (see
    /// [`keypath::parse_sjson`]), `toml-update` Kargo's `SplitKey` (see
    /// [`keypath::parse_kargo`]).
    pub key: String,
    /// The new value: a string, a number or a boolean (`null`, lists and maps are refused,
    /// as in Kargo).
    #[serde(default)]
    pub value: serde_json::Value,
}

/// One `outputs[]` entry of `json-parse` and `toml-parse`.
///
/// ```yaml
/// name: tag                     # the output's name
/// fromExpression: image.tag     # a plain Kargo expression over the document
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParseOutput {
    /// The name of the output (read later as `outputs['<alias>'].<name>`).
    pub name: String,
    /// A Kargo (expr-lang) expression without `${{ }}` delimiters. The document's top-level
    /// keys are its variables: `image.tag`, `spec.replicas + 1`, `items[0].name`.
    pub from_expression: String,
}

/// Configuration of [`JsonUpdate`].
///
/// ```yaml
/// - uses: json-update
///   config:
///     path: ./src/app/config.json      # the JSON or JSONC file, in the work directory
///     updates:
///     - key: image.tag
///       value: ${{ imageFrom(vars.imageRepo).Tag }}
///     - key: replicas
///       value: 3
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonUpdateConfig {
    /// The file to update, relative to the work directory. Comments (JSONC), whitespace,
    /// key order and line endings are kept; only the updated values' text changes.
    pub path: String,
    /// The updates, applied in order (at least one). A missing key is created, as sjson
    /// (which Kargo uses) does.
    pub updates: Vec<KeyValueUpdate>,
}

/// Kargo's `json-update` step: sets values in a JSON (or JSONC) file, in place.
///
/// Output `commitMessage`: `Updated <path>` and a blank line, then one `- <key>: <value>`
/// line per update, strings in Go's `%q` quoting (`- image.tag: "v1.2.3"`), other values
/// as they are (`- replicas: 3`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonUpdate;

#[async_trait]
impl Step for JsonUpdate {
    const KIND: &'static str = "json-update";
    type Config = JsonUpdateConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: JsonUpdateConfig,
    ) -> Result<StepOutcome, StepError> {
        require_path("path", &cfg.path)?;
        if cfg.updates.is_empty() {
            return Err(StepError::invalid_config(
                "updates",
                "at least one update is required",
            ));
        }
        let mut updates = Vec::with_capacity(cfg.updates.len());
        for (i, u) in cfg.updates.iter().enumerate() {
            let parts = keypath::parse_sjson(&u.key).map_err(|e| {
                StepError::invalid_config(format!("updates[{i}].key"), e.to_string())
            })?;
            let value = Scalar::from_json(&u.value).ok_or_else(|| {
                StepError::invalid_config(
                    format!("updates[{i}].value"),
                    format!("value for key {:?} is not a scalar type", u.key),
                )
            })?;
            updates.push((parts, u.key.clone(), value));
        }
        let file = ctx.path(&cfg.path)?;
        let path = cfg.path.clone();
        fsutil::run_blocking(move || {
            let text = read_text(&file, &path)?;
            let updated = edit::apply(&text, &updates).map_err(|e| {
                StepError::terminal(format!("JSON file update failed: {path:?}: {e}"))
            })?;
            fsutil::replace_file(&file, updated.as_bytes(), 0o600)
                .map_err(|e| fsutil::io_error("cannot write", &path, e))?;
            tracing::debug!(path = %path, updates = updates.len(), "updated JSON file");
            Ok(())
        })
        .await?;
        let message = commit_message(
            &cfg.path,
            cfg.updates
                .iter()
                .map(|u| (u.key.as_str(), go_value(&u.value))),
        );
        Ok(StepOutcome::succeeded().with_output("commitMessage", message))
    }
}

/// Configuration of [`JsonParse`].
///
/// ```yaml
/// - uses: json-parse
///   as: app
///   config:
///     path: ./src/package.json
///     outputs:
///     - name: version
///       fromExpression: version
///     - name: firstDep
///       fromExpression: keys(dependencies)[0]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonParseConfig {
    /// The JSON file to read, relative to the work directory (comments and trailing commas
    /// are accepted).
    pub path: String,
    /// The outputs to compute (at least one).
    pub outputs: Vec<ParseOutput>,
}

/// Kargo's `json-parse` step: reads a JSON file and outputs the values of expressions
/// evaluated with the document's top-level keys as variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonParse;

#[async_trait]
impl Step for JsonParse {
    const KIND: &'static str = "json-parse";
    type Config = JsonParseConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: JsonParseConfig) -> Result<StepOutcome, StepError> {
        require_path("path", &cfg.path)?;
        let engine = ExprEngine::new();
        check_outputs(&engine, &cfg.outputs)?;
        let file = ctx.path(&cfg.path)?;
        let text = read_text(&file, &cfg.path)?;
        if text.trim().is_empty() {
            return Err(StepError::terminal(format!(
                "could not parse empty JSON file {:?}",
                cfg.path
            )));
        }
        let doc: serde_json::Value =
            jsonc_parser::parse_to_serde_value(&text, &jsonc_parser::ParseOptions::default())
                .map_err(|e| {
                    StepError::terminal(format!("could not parse JSON file {:?}: {e}", cfg.path))
                })?;
        evaluate_outputs(&engine, &doc, &cfg.outputs)
    }
}

/// Refuses an empty path field.
pub(crate) fn require_path(field: &str, value: &str) -> Result<(), StepError> {
    if value.is_empty() {
        return Err(StepError::invalid_config(field, "must not be empty"));
    }
    Ok(())
}

/// Reads a UTF-8 text file; `shown` is the path as configured.
///
/// Files over [`MAX_STEP_FILE_BYTES`](kargo_core::limits::MAX_STEP_FILE_BYTES) are refused.
pub(crate) fn read_text(file: &std::path::Path, shown: &str) -> Result<String, StepError> {
    use kargo_core::limits::{self, ReadLimitError};
    let bytes = limits::read_limited(file, limits::MAX_STEP_FILE_BYTES).map_err(|e| match e {
        ReadLimitError::Io(e) => fsutil::io_error("cannot read", shown, e),
        e @ ReadLimitError::TooLarge { .. } => {
            StepError::terminal(format!("cannot read {shown:?}: {e}"))
        }
    })?;
    String::from_utf8(bytes)
        .map_err(|_| StepError::terminal(format!("file {shown:?} is not valid UTF-8")))
}

/// Validates `outputs`: at least one, names and expressions non-empty, expressions compile.
pub(crate) fn check_outputs(engine: &ExprEngine, outputs: &[ParseOutput]) -> Result<(), StepError> {
    if outputs.is_empty() {
        return Err(StepError::invalid_config(
            "outputs",
            "at least one output is required",
        ));
    }
    for (i, o) in outputs.iter().enumerate() {
        if o.name.is_empty() {
            return Err(StepError::invalid_config(
                format!("outputs[{i}].name"),
                "must not be empty",
            ));
        }
        if o.from_expression.trim().is_empty() {
            return Err(StepError::invalid_config(
                format!("outputs[{i}].fromExpression"),
                "must not be empty",
            ));
        }
        engine
            .compile_kargo_expression(&o.from_expression)
            .map_err(|e| {
                StepError::invalid_config(format!("outputs[{i}].fromExpression"), e.to_string())
            })?;
    }
    Ok(())
}

/// Evaluates each output's expression with the document's top-level keys as variables (a
/// document whose root is not an object provides no variables).
pub(crate) fn evaluate_outputs(
    engine: &ExprEngine,
    doc: &serde_json::Value,
    outputs: &[ParseOutput],
) -> Result<StepOutcome, StepError> {
    let empty = serde_json::Map::new();
    let vars = doc.as_object().unwrap_or(&empty);
    let scope = Scope::from_json(vars);
    let mut outcome = StepOutcome::succeeded();
    for (i, o) in outputs.iter().enumerate() {
        let expr = engine
            .compile_kargo_expression(&o.from_expression)
            .map_err(|e| {
                StepError::invalid_config(format!("outputs[{i}].fromExpression"), e.to_string())
            })?;
        let value = expr.eval(&scope).map_err(|e| {
            StepError::terminal(format!(
                "failed to extract outputs: error evaluating expression {:?}: {e}",
                o.from_expression
            ))
        })?;
        outcome = outcome.with_output(o.name.clone(), value);
    }
    Ok(outcome)
}

/// Kargo's commit message: `Updated <path>`, a blank line, then `- <key>: <value>` lines.
pub(crate) fn commit_message<'a>(
    path: &str,
    lines: impl Iterator<Item = (&'a str, String)>,
) -> String {
    let mut msg = format!("Updated {path}\n");
    for (key, value) in lines {
        msg.push_str("\n- ");
        msg.push_str(key);
        msg.push_str(": ");
        msg.push_str(&value);
    }
    msg
}

/// A value as Kargo's `json-update` prints it in its commit message: strings with Go's
/// `%q`, booleans as `true`/`false`, integers as they are, other numbers with Go's `%v`.
fn go_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => gofmt::go_quote(s),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        serde_json::Value::Number(n) => n
            .as_f64()
            .map(gofmt::go_float_v)
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_message_format() {
        let updates = [
            ("image.tag", serde_json::json!("v1.2.3")),
            ("replicas", serde_json::json!(3)),
            ("ratio", serde_json::json!(0.5)),
            ("on", serde_json::json!(true)),
        ];
        let msg = commit_message(
            "config.json",
            updates.iter().map(|(k, v)| (*k, go_value(v))),
        );
        assert_eq!(
            msg,
            "Updated config.json\n\n- image.tag: \"v1.2.3\"\n- replicas: 3\n- ratio: 0.5\n- on: true"
        );
    }
}
