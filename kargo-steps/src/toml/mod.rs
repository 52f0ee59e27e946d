//! `toml-update` and `toml-parse`.

pub mod edit;

use async_trait::async_trait;
use kargo_core::expr::ExprEngine;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use crate::files::fsutil;
use crate::json::{self, KeyValueUpdate, ParseOutput, keypath};
use edit::TomlScalar;

/// Configuration of [`TomlUpdate`].
///
/// ```yaml
/// - uses: toml-update
///   config:
///     path: ./src/configs/settings.toml   # the TOML file, in the work directory
///     updates:
///     - key: image.tag                   # [image] table, key `tag`
///       value: ${{ imageFrom(vars.imageRepo).Tag }}
///     - key: labels.example\.com/version # a key holding a dot
///       value: "1.2.3"
///     - key: servers.1.port              # second [[servers]] entry, or an array element
///       value: 8080
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TomlUpdateConfig {
    /// The file to update, relative to the work directory. Only the bytes of each updated
    /// value change: comments, whitespace, quoting of other values, inline tables and
    /// arrays of tables are kept as written.
    pub path: String,
    /// The updates (at least one). Each key must already exist and address a scalar (a
    /// string, number, boolean or date-time), as in Kargo. Keys follow Kargo's `SplitKey`
    /// syntax (see [`keypath::parse_kargo`]).
    pub updates: Vec<KeyValueUpdate>,
}

/// Kargo's `toml-update` step: sets existing scalar values in a TOML file, in place.
///
/// A string value replacing a string keeps that string's quoting style when it can
/// (`"..."` stays basic, `'...'` stays literal unless the text needs escapes); replacing
/// another kind of value, it is written as go-toml (Kargo) writes it: a literal string
/// unless the text contains `'` or control characters.
///
/// Output `commitMessage`: `Updated <path>`, a blank line, then one `- <key>: <value>` line
/// per update, the value as go-toml encodes it (`- package.version: '1.0.1'`,
/// `- threshold: 100`, `- enabled: true`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TomlUpdate;

#[async_trait]
impl Step for TomlUpdate {
    const KIND: &'static str = "toml-update";
    type Config = TomlUpdateConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: TomlUpdateConfig,
    ) -> Result<StepOutcome, StepError> {
        json::require_path("path", &cfg.path)?;
        if cfg.updates.is_empty() {
            return Err(StepError::invalid_config(
                "updates",
                "at least one update is required",
            ));
        }
        let mut updates = Vec::with_capacity(cfg.updates.len());
        for (i, u) in cfg.updates.iter().enumerate() {
            let parts = keypath::parse_kargo(&u.key).map_err(|e| {
                StepError::invalid_config(format!("updates[{i}].key"), e.to_string())
            })?;
            let value = TomlScalar::from_json(&u.value).map_err(|m| {
                StepError::invalid_config(
                    format!("updates[{i}].value"),
                    format!("key {:?}: {m}", u.key),
                )
            })?;
            updates.push((parts, u.key.clone(), value));
        }
        let file = ctx.path(&cfg.path)?;
        let path = cfg.path.clone();
        let message = json::commit_message(
            &cfg.path,
            updates
                .iter()
                .map(|(_, key, value)| (key.as_str(), value.kargo_text())),
        );
        fsutil::run_blocking(move || {
            let text = json::read_text(&file, &path)?;
            let updated = edit::apply(&text, &updates).map_err(|e| {
                StepError::terminal(format!(
                    "TOML file update failed: error updating TOML file {path:?}: {e}"
                ))
            })?;
            fsutil::replace_file(&file, updated.as_bytes(), 0o600)
                .map_err(|e| fsutil::io_error("cannot write", &path, e))?;
            tracing::debug!(path = %path, updates = updates.len(), "updated TOML file");
            Ok(())
        })
        .await?;
        Ok(StepOutcome::succeeded().with_output("commitMessage", message))
    }
}

/// Configuration of [`TomlParse`].
///
/// ```yaml
/// - uses: toml-parse
///   as: cargo
///   config:
///     path: ./src/Cargo.toml
///     outputs:
///     - name: version
///       fromExpression: package.version
///     - name: firstMember
///       fromExpression: workspace.members[0]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TomlParseConfig {
    /// The TOML file to read, relative to the work directory. An empty file is an error.
    pub path: String,
    /// The outputs to compute (at least one). The document's top-level keys are the
    /// expressions' variables; date-times appear as their TOML text.
    pub outputs: Vec<ParseOutput>,
}

/// Kargo's `toml-parse` step: reads a TOML file and outputs the values of expressions
/// evaluated with the document's top-level keys as variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct TomlParse;

#[async_trait]
impl Step for TomlParse {
    const KIND: &'static str = "toml-parse";
    type Config = TomlParseConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(&self, ctx: &StepContext, cfg: TomlParseConfig) -> Result<StepOutcome, StepError> {
        json::require_path("path", &cfg.path)?;
        let engine = ExprEngine::new();
        json::check_outputs(&engine, &cfg.outputs)?;
        let file = ctx.path(&cfg.path)?;
        let text = json::read_text(&file, &cfg.path)?;
        if text.is_empty() {
            return Err(StepError::terminal(format!(
                "could not parse empty TOML file {:?}",
                cfg.path
            )));
        }
        let doc = toml_edit::Document::parse(text.as_str()).map_err(|e| {
            StepError::terminal(format!("could not parse TOML file {:?}: {e}", cfg.path))
        })?;
        let value = edit::to_json(doc.as_table());
        json::evaluate_outputs(&engine, &value, &cfg.outputs)
    }
}
