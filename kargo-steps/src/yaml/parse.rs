//! `yaml-parse`: reads values out of a YAML file with expressions.

use async_trait::async_trait;
use kargo_core::expr::{ExprEngine, Scope};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::{first_document, read_text, yaml_to_json};

/// Kargo's `yaml-parse` step: parses the first document of a YAML file and evaluates each
/// output's expression with the document's top-level keys as the variables
/// (`image.tag` reads `image: {tag: ...}`), as Kargo's `expr.Run(program, document)` does.
///
/// Outputs: one per `outputs[].name`, with the expression's value (any JSON type).
///
/// The document is read like Kargo's `sigs.k8s.io/yaml`: merge keys (`<<`) are applied,
/// non-string mapping keys become strings, tags are dropped. An empty file, a document
/// that is not a mapping, non-finite numbers, or an expression that fails are errors;
/// an expression that does not compile is an invalid configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct YamlParse;

/// Configuration of [`YamlParse`].
///
/// ```yaml
/// uses: yaml-parse
/// as: chart
/// config:
///   path: ./src/charts/app/Chart.yaml
///   outputs:
///   - name: version
///     fromExpression: version                 # expr-lang, no ${{ }}
///   - name: firstDependency
///     fromExpression: dependencies[0].name
/// # later: ${{ outputs.chart.version }}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct YamlParseConfig {
    /// The YAML file, relative to the work directory (`path: Chart.yaml`).
    pub path: String,
    /// The outputs to extract; at least one
    /// (`outputs: [{name: version, fromExpression: version}]`).
    pub outputs: Vec<YamlParseOutput>,
}

/// One output of a [`YamlParseConfig`].
///
/// ```yaml
/// name: tag
/// fromExpression: image.tag
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct YamlParseOutput {
    /// The output's name (`name: tag`).
    pub name: String,
    /// A plain expr-lang expression over the document's top-level keys
    /// (`fromExpression: image.tag`).
    pub from_expression: String,
}

#[async_trait]
impl Step for YamlParse {
    const KIND: &'static str = "yaml-parse";
    type Config = YamlParseConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: YamlParseConfig,
    ) -> Result<StepOutcome, StepError> {
        if config.path.is_empty() {
            return Err(StepError::invalid_config("path", "must not be empty"));
        }
        if config.outputs.is_empty() {
            return Err(StepError::invalid_config(
                "outputs",
                "at least one output is required",
            ));
        }
        let engine = ExprEngine::new();
        let mut compiled = Vec::with_capacity(config.outputs.len());
        for (i, o) in config.outputs.iter().enumerate() {
            if o.name.is_empty() {
                return Err(StepError::invalid_config(
                    format!("outputs[{i}].name"),
                    "must not be empty",
                ));
            }
            let expr = engine
                .compile_kargo_expression(&o.from_expression)
                .map_err(|e| {
                    StepError::invalid_config(
                        format!("outputs[{i}].fromExpression"),
                        format!("error compiling expression {:?}: {e}", o.from_expression),
                    )
                })?;
            compiled.push((o.name.as_str(), expr));
        }

        let path = ctx.path(&config.path)?;
        let text = read_text(&path, &config.path)?;
        if text.is_empty() {
            return Err(StepError::retryable(format!(
                "could not parse empty YAML file {:?}",
                config.path
            )));
        }
        let parse_error = |m: String| {
            StepError::retryable(format!("could not parse YAML file {}: {m}", config.path))
        };
        let mut doc = first_document(&text)
            .map_err(parse_error)?
            .unwrap_or(yaml_serde::Value::Null);
        doc.apply_merge().map_err(|e| parse_error(e.to_string()))?;
        let vars = match yaml_to_json(doc).map_err(parse_error)? {
            serde_json::Value::Object(map) => map,
            other => {
                return Err(StepError::retryable(format!(
                    "{}: the document must be a mapping to be used as expression variables, found {}",
                    config.path,
                    match other {
                        serde_json::Value::Array(_) => "a sequence",
                        serde_json::Value::Null => "null",
                        _ => "a scalar",
                    }
                )));
            }
        };
        let scope = Scope::from_json(&vars);
        let mut outcome = StepOutcome::succeeded();
        for (name, expr) in compiled {
            let value = expr.eval(&scope).map_err(|e| {
                StepError::retryable(format!(
                    "failed to extract outputs: error evaluating expression {:?}: {e}",
                    expr.text()
                ))
            })?;
            outcome.outputs.insert(name.to_owned(), value);
        }
        tracing::debug!(path = %config.path, outputs = outcome.outputs.len(), "yaml-parse");
        Ok(outcome)
    }
}
