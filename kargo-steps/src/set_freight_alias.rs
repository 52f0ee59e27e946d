//! `set-freight-alias`: changes the alias of a piece of Freight of the promotion's project
//! in the pipeline's state store ([`kargo_core::pipeline::StateStore`]).
//!
//! ```yaml
//! - uses: set-freight-alias
//!   config:
//!     name: ${{ ctx.targetFreight.name }}
//!     alias: ${{ imageFrom('some/repo').Tag }}
//! ```
//!
//! `name` is the Freight's name (its ID), as in Kargo. The alias must be unique within the
//! project: an alias another Freight carries is refused, naming that Freight. Setting the
//! alias a Freight already has succeeds and changes nothing. Aliases are Kubernetes label
//! values in Kargo (the `kargo.akuity.io/alias` label), so the same rule applies: at most
//! 63 characters, letters, digits, `-`, `_` and `.`, starting and ending with a letter or
//! digit.
//!
//! Like [`SetMetadata`](crate::SetMetadata), the step needs the state store, so it is not
//! part of [`register_builtins`](crate::register_builtins): embedders that run a pipeline
//! register `SetFreightAlias::new(store)` with the same store their controller uses. The
//! change is one optimistic-concurrency write (the uniqueness check and the change happen
//! in the same write). A dry run changes nothing and notes what it would set.

use std::sync::Arc;

use async_trait::async_trait;
use kargo_core::pipeline::{ProjectState, StateError, StateStore};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

/// The longest alias (a Kubernetes label value).
pub const MAX_ALIAS_LEN: usize = 63;

/// Kargo's `set-freight-alias` (see the module documentation).
#[derive(Clone)]
pub struct SetFreightAlias {
    store: Arc<dyn StateStore>,
}

impl std::fmt::Debug for SetFreightAlias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetFreightAlias").finish_non_exhaustive()
    }
}

impl SetFreightAlias {
    /// The step, writing to `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
}

/// Configuration of [`SetFreightAlias`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetFreightAliasConfig {
    /// `name:` the Freight's name (its ID). Required.
    pub name: String,
    /// `alias:` the new alias. Required; unique within the project.
    pub alias: String,
}

/// Why an alias is not a valid label value, or `None` when it is.
fn alias_problem(alias: &str) -> Option<String> {
    if alias.len() > MAX_ALIAS_LEN {
        return Some(format!(
            "must be at most {MAX_ALIAS_LEN} characters, got {}",
            alias.len()
        ));
    }
    let ok_inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !alias.chars().all(ok_inner) {
        return Some(format!(
            "{alias:?} may only hold letters, digits, '-', '_' and '.'"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(alias.chars().next()) || !edge_ok(alias.chars().last()) {
        return Some(format!(
            "{alias:?} must start and end with a letter or digit"
        ));
    }
    None
}

fn apply(
    state: &mut ProjectState,
    project: &str,
    name: &str,
    alias: &str,
) -> Result<Option<String>, String> {
    if let Some(other) = state
        .freight
        .values()
        .find(|r| r.freight.name.as_str() != name && r.freight.alias.as_deref() == Some(alias))
    {
        return Err(format!(
            "alias {alias:?} is already used by Freight {:?} in project {project:?}; aliases must be unique within a project",
            other.freight.name.as_str()
        ));
    }
    let rec = state
        .freight
        .values_mut()
        .find(|r| r.freight.name.as_str() == name)
        .ok_or_else(|| format!("Freight {name:?} not found in project {project:?}"))?;
    let old = rec.freight.alias.replace(alias.to_owned());
    Ok(old)
}

#[async_trait]
impl Step for SetFreightAlias {
    const KIND: &'static str = "set-freight-alias";
    type Config = SetFreightAliasConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Idempotent)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: SetFreightAliasConfig,
    ) -> Result<StepOutcome, StepError> {
        if cfg.name.is_empty() {
            return Err(StepError::invalid_config("name", "must not be empty"));
        }
        if cfg.alias.is_empty() {
            return Err(StepError::invalid_config("alias", "must not be empty"));
        }
        if let Some(problem) = alias_problem(&cfg.alias) {
            return Err(StepError::invalid_config(
                "alias",
                format!("not a valid alias: {problem}"),
            ));
        }
        if let Some(skip) = crate::dry_run_skip(
            ctx,
            &format!("set the alias of Freight {:?} to {:?}", cfg.name, cfg.alias),
        ) {
            return Ok(skip);
        }
        let mut refused = None;
        let mut changed = None;
        let r = self
            .store
            .update(&ctx.project, &mut |state| match apply(
                state,
                &ctx.project,
                &cfg.name,
                &cfg.alias,
            ) {
                Ok(c) => {
                    changed = Some(c);
                    Ok(())
                }
                Err(m) => {
                    refused = Some(m.clone());
                    Err(StateError::Aborted(m))
                }
            })
            .await;
        match (r, refused) {
            (Ok(_), _) => {
                let old = changed.flatten();
                let message = format!(
                    "updated alias of Freight {:?} from {:?} to {:?}",
                    cfg.name,
                    old.unwrap_or_default(),
                    cfg.alias
                );
                tracing::info!(freight = %cfg.name, alias = %cfg.alias, "set-freight-alias: {message}");
                Ok(StepOutcome::succeeded().with_message(message))
            }
            (Err(_), Some(m)) => Err(StepError::failed(m)),
            (Err(e @ (StateError::Conflict { .. } | StateError::Io { .. })), None) => {
                Err(StepError::retryable(e.to_string()))
            }
            (Err(e), None) => Err(StepError::terminal(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alias_problem;

    #[test]
    fn aliases_are_label_values() {
        for ok in ["v1.2.3", "brave-otter", "a", "A_b.c-9"] {
            assert_eq!(alias_problem(ok), None, "{ok}");
        }
        for bad in ["-a", "a-", ".a", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(alias_problem(bad).is_some(), "{bad}");
        }
    }
}
