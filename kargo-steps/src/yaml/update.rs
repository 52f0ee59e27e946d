//! `yaml-update`: sets scalar values in a YAML file, keeping its formatting.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;
use serde_json::Value as Json;

use super::encode::go_display;
use super::{KeyPath, read_text, set_values, write_atomically};

/// Kargo's `yaml-update` step: sets the values of existing keys in a YAML file with the
/// format-preserving editor ([`set_values`](super::set_values)), then outputs a
/// `commitMessage`.
///
/// Output `commitMessage`, exactly as Kargo writes it: `Updated <path>`, an empty line,
/// then one `- <key>: <value>` line per update, the value as Go's `%v` prints it after
/// Kargo's quoting (strings that look like numbers, booleans or JSON in double quotes;
/// numbers as float64, so `1000000` is `1e+06`; `null` as `<nil>`):
///
/// ```text
/// Updated charts/app/values.yaml
///
/// - image.tag: "1.10"
/// - replicas: 3
/// ```
///
/// Errors: an invalid key path is an invalid configuration; a missing key, a key that
/// addresses a mapping, sequence or alias, unreadable or unparsable YAML are errors
/// (retryable within the error threshold, like Kargo's `Errored`). On any error the file
/// is left untouched; otherwise it is replaced atomically (temporary file + rename).
#[derive(Debug, Clone, Copy, Default)]
pub struct YamlUpdate;

/// Configuration of [`YamlUpdate`].
///
/// ```yaml
/// uses: yaml-update
/// config:
///   path: ./src/charts/app/values.yaml     # file inside the work directory
///   updates:
///   - key: image.tag                        # Kargo key path: a.b, list.0.x, a\.b
///     value: ${{ imageFrom(vars.image).Tag }}
///   - key: replicas
///     value: 3                              # numbers, booleans and null are written plain
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct YamlUpdateConfig {
    /// The YAML file, relative to the work directory (`path: values.yaml`).
    pub path: String,
    /// The updates, applied in order; at least one
    /// (`updates: [{key: image.tag, value: "1.2.3"}]`).
    pub updates: Vec<YamlUpdateEntry>,
}

/// One update of a [`YamlUpdateConfig`].
///
/// ```yaml
/// key: spec.source.helm.valuesObject.image.tag
/// value: "1.10"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct YamlUpdateEntry {
    /// The key path of an existing scalar (`key: image.tag`; see
    /// [`KeyPath`](super::KeyPath)).
    pub key: String,
    /// The new value: a string, number, boolean or null (`value: "1.10"`).
    pub value: Json,
}

/// Kargo's commit message for `updates` to `path`.
pub(crate) fn commit_message(path: &str, updates: &[YamlUpdateEntry]) -> String {
    let mut msg = format!("Updated {path}\n");
    for u in updates {
        msg.push_str(&format!("\n- {}: {}", u.key, go_display(&u.value, true)));
    }
    msg
}

#[async_trait]
impl Step for YamlUpdate {
    const KIND: &'static str = "yaml-update";
    type Config = YamlUpdateConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: YamlUpdateConfig,
    ) -> Result<StepOutcome, StepError> {
        if config.path.is_empty() {
            return Err(StepError::invalid_config("path", "must not be empty"));
        }
        if config.updates.is_empty() {
            return Err(StepError::invalid_config(
                "updates",
                "at least one update is required",
            ));
        }
        let mut updates = Vec::with_capacity(config.updates.len());
        for (i, u) in config.updates.iter().enumerate() {
            let key = KeyPath::parse(&u.key).map_err(|e| {
                StepError::invalid_config(format!("updates[{i}].key"), e.to_string())
            })?;
            updates.push((key, u.value.clone()));
        }
        let path = ctx.path(&config.path)?;
        let text = read_text(&path, &config.path)?;
        let new_text = set_values(&text, &updates).map_err(|e| {
            StepError::retryable(format!("cannot update {}: {e}", config.path)).with_source(e)
        })?;
        if new_text != text {
            write_atomically(&path, new_text.as_bytes()).map_err(|e| {
                StepError::retryable(format!("cannot write {}: {e}", config.path)).with_source(e)
            })?;
        }
        tracing::debug!(path = %config.path, updates = updates.len(), "yaml-update");
        Ok(StepOutcome::succeeded().with_output(
            "commitMessage",
            commit_message(&config.path, &config.updates),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commit_message_matches_kargo() {
        let u = |k: &str, v: Json| YamlUpdateEntry {
            key: k.to_owned(),
            value: v,
        };
        assert_eq!(
            commit_message(
                "chart/values.yaml",
                &[
                    u("image1", json!("repo1/image1:tag1")),
                    u("image2", json!("repo2/image2:tag2")),
                    u("numStr", json!("42")),
                    u("realNum", json!(42)),
                ]
            ),
            "Updated chart/values.yaml\n\n- image1: repo1/image1:tag1\n- image2: repo2/image2:tag2\n- numStr: \"42\"\n- realNum: 42"
        );
    }
}
