//! Promotion steps, templates, and the PromotionTask / ClusterPromotionTask kinds.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    Duration, FieldError, FieldErrors, ObjectMeta, ResourceKind, is_false, re_match,
    validate_ref_name, validate_type_meta, validate_var_names,
};

/// A named variable usable in expressions (`${{ vars.name }}`).
///
/// In YAML, `value` may be written as a number or boolean; it is kept as its string form
/// (`3` becomes `"3"`, `true` becomes `"true"`). A task variable with an empty value is a
/// required parameter of the task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpressionVariable {
    /// The name; must match `^[a-zA-Z_]\w*$`.
    pub name: String,
    /// The value, which may contain expressions.
    #[serde(
        default,
        deserialize_with = "scalar_string",
        skip_serializing_if = "String::is_empty"
    )]
    pub value: String,
}

impl ExpressionVariable {
    /// A variable with a name and value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        ExpressionVariable {
            name: name.into(),
            value: value.into(),
        }
    }
}

struct ScalarStringVisitor;

impl Visitor<'_> for ScalarStringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (numbers and booleans are converted to strings)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

fn scalar_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(ScalarStringVisitor)
}

/// How a Stage turns Freight into a Promotion: variables plus the steps to run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionTemplate {
    /// The template's content.
    pub spec: PromotionTemplateSpec,
}

/// The (partial) Promotion spec a Stage's promotions are built from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionTemplateSpec {
    /// Variables available to every step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,
    /// The steps, run in order. Each has exactly one of `uses` / `task`.
    #[serde(default)]
    pub steps: Vec<PromotionStep>,
}

/// One step of a promotion: a step kind to run (`uses`) or a task to inflate (`task`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionStep {
    /// The step kind to run, e.g. `git-clone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// A (Cluster)PromotionTask whose steps replace this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<PromotionTaskReference>,
    /// The alias (`as`) by which later steps refer to this step's outputs.
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// An expression (`if`); the step is skipped when it evaluates to false.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub if_expr: Option<String>,
    /// Whether a failure of this step lets the promotion continue.
    #[serde(default, skip_serializing_if = "is_false")]
    pub continue_on_error: bool,
    /// The retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<PromotionStepRetry>,
    /// Step-level variables (override promotion-level ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,
    /// The step's configuration; any value may contain expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The retry policy of a step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionStepRetry {
    /// Soft limit on how long a step that keeps reporting `Running` is retried
    /// (`None`: the step's own default; zero: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Consecutive failures before the promotion fails (`None` or 0: the step's default,
    /// else 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<u32>,
}

/// A reference from a template step to a PromotionTask or ClusterPromotionTask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionTaskReference {
    /// The task's name.
    pub name: String,
    /// Which kind of task (default `PromotionTask`, in the Stage's own Project).
    #[serde(default)]
    pub kind: PromotionTaskKind,
}

/// The kind of task a [`PromotionTaskReference`] names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromotionTaskKind {
    /// A PromotionTask in the same Project.
    #[default]
    PromotionTask,
    /// A cluster-scoped ClusterPromotionTask.
    ClusterPromotionTask,
}

/// The content of a PromotionTask or ClusterPromotionTask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionTaskSpec {
    /// Task parameters: a value is a default, an empty value makes the variable required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,
    /// The steps; each must use `uses` (tasks do not nest).
    #[serde(default)]
    pub steps: Vec<PromotionStep>,
}

/// A reusable sequence of steps in a Project (`kind: PromotionTask`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionTask {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `PromotionTask`.
    pub kind: String,
    /// Name and Project (namespace).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The task.
    pub spec: PromotionTaskSpec,
}

/// A reusable sequence of steps shared by all Projects (`kind: ClusterPromotionTask`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPromotionTask {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `ClusterPromotionTask`.
    pub kind: String,
    /// Name (cluster-scoped).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The task.
    pub spec: PromotionTaskSpec,
}

impl PromotionTask {
    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::PromotionTask,
        );
        self.metadata.validate(&mut errs, false);
        self.spec.validate_into(&mut errs, "spec");
        errs.0
    }
}

impl ClusterPromotionTask {
    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::ClusterPromotionTask,
        );
        self.metadata.validate(&mut errs, false);
        self.spec.validate_into(&mut errs, "spec");
        errs.0
    }
}

impl PromotionTaskSpec {
    pub(crate) fn validate_into(&self, errs: &mut FieldErrors, path: &str) {
        validate_var_names(errs, &format!("{path}.vars"), &self.vars);
        validate_steps(errs, &format!("{path}.steps"), &self.steps, StepsOf::Task);
    }
}

impl PromotionTemplateSpec {
    pub(crate) fn validate_into(&self, errs: &mut FieldErrors, path: &str) {
        validate_var_names(errs, &format!("{path}.vars"), &self.vars);
        validate_steps(
            errs,
            &format!("{path}.steps"),
            &self.steps,
            StepsOf::Template,
        );
    }
}

/// Where a list of steps lives: the rules differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepsOf {
    /// A Stage's promotion template: `uses` or `task`.
    Template,
    /// A (Cluster)PromotionTask: `uses` only.
    Task,
}

static RESERVED_ALIAS: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(step|task)-\d+$").ok());

pub(crate) fn validate_steps(
    errs: &mut FieldErrors,
    path: &str,
    steps: &[PromotionStep],
    of: StepsOf,
) {
    if steps.is_empty() {
        errs.push(path, "at least one step is required");
    }
    if steps.len() > crate::limits::MAX_TEMPLATE_STEPS {
        errs.push(
            path,
            format!(
                "{} steps; the limit is {} (see kargo_core::limits)",
                steps.len(),
                crate::limits::MAX_TEMPLATE_STEPS
            ),
        );
        return;
    }
    let mut aliases: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match (&step.uses, &step.task, of) {
            (Some(_), Some(_), StepsOf::Template) | (None, None, StepsOf::Template) => {
                errs.push(p.clone(), "step must have exactly one of uses or task set");
            }
            (_, Some(_), StepsOf::Task) => errs.push(
                format!("{p}.task"),
                "a PromotionTask step must set uses and must not reference another task",
            ),
            (None, None, StepsOf::Task) => errs.push(
                p.clone(),
                "a PromotionTask step must set uses (tasks cannot reference other tasks)",
            ),
            _ => {}
        }
        if let Some(uses) = &step.uses
            && uses.trim().is_empty()
        {
            errs.push(format!("{p}.uses"), "uses must not be empty");
        }
        if let Some(task) = &step.task {
            validate_ref_name(errs, &format!("{p}.task.name"), "task", &task.name);
            if of == StepsOf::Template {
                let forbidden = [
                    ("continueOnError", step.continue_on_error),
                    ("retry", step.retry.is_some()),
                    ("if", step.if_expr.as_deref().is_some_and(|s| !s.is_empty())),
                    ("config", step.config.is_some()),
                ];
                for (field, set) in forbidden {
                    if set {
                        errs.push(
                            format!("{p}.{field}"),
                            format!("a step referencing a task cannot set {field}"),
                        );
                    }
                }
            }
        }
        if let Some(alias) = step.alias.as_deref().map(str::trim)
            && !alias.is_empty()
        {
            if let Some(first) = aliases.get(alias) {
                errs.push(
                    format!("{p}.as"),
                    format!("step alias {alias:?} duplicates that of {path}[{first}]"),
                );
            } else {
                aliases.insert(alias, i);
            }
            if re_match(&RESERVED_ALIAS, alias) {
                errs.push(
                    format!("{p}.as"),
                    format!(
                        "step alias {alias:?} is reserved: aliases of the form step-<n> and \
                         task-<n> are generated by Kargo"
                    ),
                );
            }
        }
        validate_var_names(errs, &format!("{p}.vars"), &step.vars);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_values_are_stringified() {
        let vars: Vec<ExpressionVariable> = yaml_serde::from_str(
            "- {name: a, value: 3}\n- {name: b, value: true}\n- {name: c}\n- {name: d, value: 1.5}\n",
        )
        .unwrap();
        let values: Vec<_> = vars.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values, ["3", "true", "", "1.5"]);
        let err = yaml_serde::from_str::<ExpressionVariable>("{name: a, value: [1]}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a string (numbers and booleans"), "{err}");
    }

    #[test]
    fn step_rules() {
        let steps: Vec<PromotionStep> = yaml_serde::from_str(
            r#"
- uses: git-clone
  as: clone
- task: {name: deploy}
  continueOnError: true
  retry: {errorThreshold: 2}
- uses: x
  task: {name: y}
- as: clone
  uses: git-push
- as: step-3
  uses: z
"#,
        )
        .unwrap();
        let mut errs = FieldErrors::default();
        validate_steps(&mut errs, "s", &steps, StepsOf::Template);
        let paths: Vec<_> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "s[1].continueOnError",
                "s[1].retry",
                "s[2]",
                "s[3].as",
                "s[4].as"
            ]
        );
        let mut errs = FieldErrors::default();
        validate_steps(&mut errs, "s", &steps, StepsOf::Task);
        let paths: Vec<_> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["s[1].task", "s[2].task", "s[3].as", "s[4].as"]);
    }
}
