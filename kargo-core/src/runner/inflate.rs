//! Task inflation: a promotion template's `task:` steps replaced by their PromotionTask's
//! steps, with Kargo's aliases and task variables.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::limits::MAX_TEMPLATE_STEPS;
use crate::model::{
    ExpressionVariable, PromotionStep, PromotionTaskKind, PromotionTaskReference, PromotionTaskSpec,
};

/// The separator between a task's alias and its steps' aliases.
pub const ALIAS_SEPARATOR: &str = "::";

/// A step after task inflation: what the runner executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The full alias (`step-2`, `update::commit`).
    pub alias: String,
    /// The step kind.
    pub uses: String,
    /// The `if` template, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_expr: Option<String>,
    /// Whether a failure of this step is ignored for `failure()` and the final phase.
    #[serde(default)]
    pub continue_on_error: bool,
    /// `retry.errorThreshold`, when set (0 means "the step's default").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<u32>,
    /// `retry.timeout`, when set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Step variables in evaluation order (task defaults, task step vars, own vars).
    #[serde(default)]
    pub vars: Vec<ExpressionVariable>,
    /// The configuration template.
    #[serde(default)]
    pub config: serde_json::Map<String, Json>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs: Option<f64> = Option::deserialize(d)?;
        Ok(secs.and_then(|s| Duration::try_from_secs_f64(s).ok()))
    }
}

/// Why a template could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// A task step names a task that does not exist.
    #[error("step {alias:?}: {kind} {name:?} not found")]
    TaskNotFound {
        /// The task step's alias.
        alias: String,
        /// The task kind.
        kind: String,
        /// The task name.
        name: String,
    },
    /// A task variable has no default and no value was supplied.
    #[error("step {alias:?}: missing value for variable {var:?} of task {task:?}")]
    MissingVariable {
        /// The task step's alias.
        alias: String,
        /// The task.
        task: String,
        /// The variable.
        var: String,
    },
    /// A step has neither `uses` nor `task`, or a task's step references another task.
    #[error("step {alias:?}: {message}")]
    InvalidStep {
        /// The step's alias.
        alias: String,
        /// What is wrong.
        message: String,
    },
    /// Two steps share an alias.
    #[error("duplicate step alias {0:?}")]
    DuplicateAlias(String),
}

fn default_alias(step: &PromotionStep, i: usize) -> String {
    match (&step.alias, &step.task) {
        (Some(a), _) if !a.is_empty() => a.clone(),
        (_, Some(_)) => format!("task-{}", i + 1),
        _ => format!("step-{}", i + 1),
    }
}

/// Expands `task:` steps of a template into the task's steps (Kargo's `InflateSteps`).
///
/// `promotion_vars` are the Stage's vars followed by the template's vars; `lookup` finds a
/// PromotionTask (in the Stage's project) or ClusterPromotionTask.
pub fn inflate_steps<'t>(
    steps: &[PromotionStep],
    promotion_vars: &[ExpressionVariable],
    lookup: impl Fn(&PromotionTaskReference) -> Option<&'t PromotionTaskSpec>,
) -> Result<Vec<PlannedStep>, InflateError> {
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let alias = default_alias(step, i);
        match (&step.uses, &step.task) {
            (Some(_), None) if out.len() >= MAX_TEMPLATE_STEPS => {
                return Err(too_many_steps(alias));
            }
            (Some(uses), None) => out.push(planned(step, alias, uses.clone(), step.vars.clone())),
            (None, Some(task_ref)) => {
                let kind = match task_ref.kind {
                    PromotionTaskKind::ClusterPromotionTask => "ClusterPromotionTask",
                    _ => "PromotionTask",
                };
                let task = lookup(task_ref).ok_or_else(|| InflateError::TaskNotFound {
                    alias: alias.clone(),
                    kind: kind.to_owned(),
                    name: task_ref.name.clone(),
                })?;
                let vars = task_vars(&task.vars, promotion_vars, &step.vars).map_err(|var| {
                    InflateError::MissingVariable {
                        alias: alias.clone(),
                        task: task_ref.name.clone(),
                        var,
                    }
                })?;
                for (j, inner) in task.steps.iter().enumerate() {
                    let inner_alias = default_alias(inner, j);
                    let full = format!("{alias}{ALIAS_SEPARATOR}{inner_alias}");
                    let Some(uses) = &inner.uses else {
                        return Err(InflateError::InvalidStep {
                            alias: full,
                            message: "steps of a task must set `uses` (tasks cannot reference other tasks)".into(),
                        });
                    };
                    if out.len() >= MAX_TEMPLATE_STEPS {
                        return Err(too_many_steps(full));
                    }
                    let mut v = vars.clone();
                    v.extend(inner.vars.iter().cloned());
                    out.push(planned(inner, full, uses.clone(), v));
                }
            }
            _ => {
                return Err(InflateError::InvalidStep {
                    alias,
                    message: "a step must set exactly one of `uses` and `task`".into(),
                });
            }
        }
    }
    let mut seen = HashSet::new();
    for s in &out {
        if !seen.insert(s.alias.as_str()) {
            return Err(InflateError::DuplicateAlias(s.alias.clone()));
        }
    }
    Ok(out)
}

/// The error of a template that inflates to more than [`MAX_TEMPLATE_STEPS`] steps.
fn too_many_steps(alias: String) -> InflateError {
    InflateError::InvalidStep {
        alias,
        message: format!(
            "the template inflates to more than {MAX_TEMPLATE_STEPS} steps (the limit; \
             see kargo_core::limits)"
        ),
    }
}

fn planned(
    step: &PromotionStep,
    alias: String,
    uses: String,
    vars: Vec<ExpressionVariable>,
) -> PlannedStep {
    PlannedStep {
        alias,
        uses,
        if_expr: step.if_expr.clone().filter(|s| !s.is_empty()),
        continue_on_error: step.continue_on_error,
        error_threshold: step.retry.as_ref().and_then(|r| r.error_threshold),
        timeout: step
            .retry
            .as_ref()
            .and_then(|r| r.timeout.as_ref())
            .map(|d| d.0),
        vars,
        config: step.config.clone().unwrap_or_default(),
    }
}

/// Kargo's `promotionTaskVarsToStepVars`: task defaults unless a promotion var with a value
/// overrides them, required task vars must come from the task step (or a promotion var),
/// then the task step's vars.
fn task_vars(
    task: &[ExpressionVariable],
    promotion: &[ExpressionVariable],
    step: &[ExpressionVariable],
) -> Result<Vec<ExpressionVariable>, String> {
    let promo: HashSet<&str> = promotion
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    let given: HashSet<&str> = step
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    let mut out = Vec::new();
    for v in task {
        if promo.contains(v.name.as_str()) {
            continue;
        }
        if !v.value.is_empty() {
            out.push(v.clone());
        } else if !given.contains(v.name.as_str()) {
            return Err(v.name.clone());
        }
    }
    out.extend(step.iter().cloned());
    Ok(out)
}
