//! The Stage kind: where Freight is requested from and how it is promoted and verified.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{
    Duration, ExpressionVariable, FieldError, FieldErrors, ObjectMeta, PromotionTemplate,
    ResourceKind, is_false, validate_type_meta, validate_var_names,
};

/// A promotion target (`kind: Stage`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stage {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `Stage`.
    pub kind: String,
    /// Name and Project (namespace).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the Stage requests and how it promotes.
    pub spec: StageSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The desired state of a Stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageSpec {
    /// The controller shard this Stage belongs to (empty: the default shard).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shard: String,
    /// Variables usable in the promotion template and verification arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,
    /// The Freight the Stage needs, one request per origin Warehouse (at least one).
    #[serde(default)]
    pub requested_freight: Vec<FreightRequest>,
    /// How Freight is promoted into the Stage; `None` makes a control-flow Stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_template: Option<PromotionTemplate>,
    /// How the Stage's current Freight is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// A request for Freight from one origin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FreightRequest {
    /// Where the Freight must have originated.
    pub origin: FreightOrigin,
    /// Where the Freight may be obtained from.
    pub sources: FreightSources,
}

pub use crate::freight::{FreightOrigin, FreightOriginKind};

/// Where requested Freight may come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FreightSources {
    /// Freight may come straight from the origin Warehouse.
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    /// Upstream Stages Freight may come from (once verified there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// How long Freight must have been in an upstream Stage before it is available here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_soak_time: Option<Duration>,
    /// Whether Freight must be verified in one (`OneOf`, default) or `All` upstream Stages.
    #[serde(default)]
    pub availability_strategy: FreightAvailabilityStrategy,
    /// Auto-promotion options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_options: Option<AutoPromotionOptions>,
}

/// How upstream verification makes Freight available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FreightAvailabilityStrategy {
    /// Verified (and soaked) in at least one upstream Stage. `""` means the same.
    #[default]
    #[serde(alias = "")]
    OneOf,
    /// Verified (and soaked) in every upstream Stage.
    All,
}

/// Auto-promotion options of a Freight request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoPromotionOptions {
    /// Which Freight auto-promotion picks.
    #[serde(default)]
    pub selection_policy: AutoPromotionSelectionPolicy,
}

/// Which Freight is eligible for auto-promotion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AutoPromotionSelectionPolicy {
    /// The newest available Freight.
    #[default]
    NewestFreight,
    /// The Freight currently in the single upstream Stage.
    MatchUpstream,
}

/// Verification with Argo Rollouts analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verification {
    /// Templates to create AnalysisRuns from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_templates: Vec<AnalysisTemplateReference>,
    /// Labels and annotations for the AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Arguments passed to every AnalysisRun (values may contain expressions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
}

/// A reference to an (Cluster)AnalysisTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateReference {
    /// The template's name.
    pub name: String,
    /// Its kind (default `AnalysisTemplate`).
    #[serde(default)]
    pub kind: AnalysisTemplateKind,
}

/// The kind of an analysis template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AnalysisTemplateKind {
    /// A namespaced AnalysisTemplate in the Stage's Project.
    #[default]
    AnalysisTemplate,
    /// A cluster-scoped ClusterAnalysisTemplate.
    ClusterAnalysisTemplate,
}

/// Extra metadata for AnalysisRuns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
}

/// An argument for AnalysisRuns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunArgument {
    /// The argument's name.
    pub name: String,
    /// Its value (may contain expressions).
    #[serde(default)]
    pub value: String,
}

impl Stage {
    /// The names of the upstream Stages of every Freight request, in order, deduplicated.
    pub fn upstream_stages(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.spec
            .requested_freight
            .iter()
            .flat_map(|r| r.sources.stages.iter())
            .map(String::as_str)
            .filter(|s| seen.insert(*s))
            .collect()
    }

    /// Whether this is a control-flow Stage (no promotion steps).
    pub fn is_control_flow(&self) -> bool {
        self.spec
            .promotion_template
            .as_ref()
            .is_none_or(|t| t.spec.steps.is_empty())
    }

    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::Stage,
        );
        self.metadata.validate(&mut errs, false);
        let spec = &self.spec;
        validate_var_names(&mut errs, "spec.vars", &spec.vars);
        if spec.requested_freight.is_empty() {
            errs.push(
                "spec.requestedFreight",
                "at least one Freight request is required",
            );
        }
        let mut origins: HashSet<&str> = HashSet::new();
        for (i, req) in spec.requested_freight.iter().enumerate() {
            let p = format!("spec.requestedFreight[{i}]");
            if req.origin.name.is_empty() {
                errs.push(
                    format!("{p}.origin.name"),
                    "origin Warehouse name is required",
                );
            } else if !origins.insert(&req.origin.name) {
                errs.push(
                    format!("{p}.origin"),
                    format!(
                        "Freight with origin {} is requested more than once",
                        req.origin
                    ),
                );
            }
            let src = &req.sources;
            if !src.direct && src.stages.is_empty() {
                errs.push(
                    format!("{p}.sources"),
                    "at least one source is required: set direct: true or list upstream stages",
                );
            }
            for (j, upstream) in src.stages.iter().enumerate() {
                if upstream.is_empty() {
                    errs.push(format!("{p}.sources.stages[{j}]"), "stage name is empty");
                } else if *upstream == self.metadata.name {
                    errs.push(
                        format!("{p}.sources.stages[{j}]"),
                        format!("Stage {upstream:?} cannot be its own upstream"),
                    );
                }
            }
            if src
                .auto_promotion_options
                .as_ref()
                .is_some_and(|o| o.selection_policy == AutoPromotionSelectionPolicy::MatchUpstream)
            {
                let path = format!("{p}.sources.autoPromotionOptions.selectionPolicy");
                if src.direct {
                    errs.push(
                        path.clone(),
                        "selection policy MatchUpstream cannot be used when accepting Freight \
                         directly from its origin",
                    );
                }
                if src.stages.len() != 1 {
                    errs.push(
                        path,
                        format!(
                            "selection policy MatchUpstream requires exactly one upstream \
                             Stage, found {}",
                            src.stages.len()
                        ),
                    );
                }
            }
        }
        if let Some(template) = &spec.promotion_template {
            template
                .spec
                .validate_into(&mut errs, "spec.promotionTemplate.spec");
        }
        if let Some(v) = &spec.verification {
            for (i, t) in v.analysis_templates.iter().enumerate() {
                if t.name.is_empty() {
                    errs.push(
                        format!("spec.verification.analysisTemplates[{i}].name"),
                        "analysis template name is required",
                    );
                }
            }
            for (i, a) in v.args.iter().enumerate() {
                if a.name.is_empty() {
                    errs.push(
                        format!("spec.verification.args[{i}].name"),
                        "argument name is required",
                    );
                }
            }
        }
        errs.0
    }
}
