//! The Project and ProjectConfig kinds.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::recurrence::Schedule;

use super::{
    FieldError, FieldErrors, LabelSelector, LocalObjectReference, ObjectMeta, ResourceKind,
    is_dns1123_subdomain, is_false, validate_name_pattern, validate_type_meta,
};

/// A Kargo Project (`kind: Project`, cluster-scoped): it owns the namespace of the same name.
///
/// Since Kargo v1.7 a Project has no `spec`; its settings live in [`ProjectConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `Project`.
    pub kind: String,
    /// The Project's name (also its namespace).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The pre-v1.7 `spec`: accepted only so that validation can explain where its
    /// settings went (it is always an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Project {
    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::Project,
        );
        self.metadata.validate(&mut errs, true);
        if self.spec.is_some() {
            errs.push(
                "spec",
                "Project.spec was removed in Kargo v1.7: move promotionPolicies to a \
                 ProjectConfig named like the Project, in its namespace",
            );
        }
        errs.0
    }
}

/// The configuration of a Project (`kind: ProjectConfig`); one per Project, named like it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectConfig {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `ProjectConfig`.
    pub kind: String,
    /// Name and namespace, both the Project's name.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The configuration.
    #[serde(default)]
    pub spec: ProjectConfigSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The content of a ProjectConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectConfigSpec {
    /// Promotion policies, evaluated in order; the first matching policy applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotion_policies: Vec<PromotionPolicy>,
    /// Project-specific webhook receivers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_receivers: Vec<WebhookReceiverConfig>,
    /// UI deep links for Freight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freight_links: Vec<DeepLink>,
    /// UI deep links for Stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_links: Vec<DeepLink>,
    /// Time windows gating promotions of this Project's Stages (with the ClusterConfig's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotion_windows: Vec<PromotionWindow>,
}

/// A policy for the Stages matched by its selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionPolicy {
    /// Deprecated exact Stage name; use `stageSelector`. Exactly one of the two is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Which Stages the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_selector: Option<PromotionPolicySelector>,
    /// Whether matched Stages auto-promote new Freight (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_promotion_enabled: bool,
    /// Approvals a promotion into matched Stages needs before it runs (see
    /// [`ApprovalPolicy`](super::ApprovalPolicy)); unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<super::ApprovalPolicy>,
    /// Automatic rollback settings (`{}`: on, with the defaults); enforced by
    /// [`Pipeline::auto_rollbacks`](crate::pipeline::Pipeline::auto_rollbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollbackConfig>,
}

/// Selects resources by name (exact, `glob:`, `regex:` / `regexp:`) AND labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionPolicySelector {
    /// Exact name, or `glob:<pattern>`, or `regex:<re>` / `regexp:<re>` (unanchored).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Labels that must all match.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub match_labels: IndexMap<String, String>,
    /// Set-based label requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<super::LabelSelectorRequirement>,
}

impl PromotionPolicySelector {
    /// The label part of the selector.
    pub fn label_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: self.match_labels.clone(),
            match_expressions: self.match_expressions.clone(),
        }
    }

    fn validate(&self, errs: &mut FieldErrors, path: &str) {
        let name_path = format!("{path}.name");
        if let Some((prefix, _)) = self.name.split_once(':') {
            if matches!(prefix, "glob" | "regex" | "regexp") {
                validate_name_pattern(errs, &name_path, &self.name);
            } else {
                errs.push(
                    name_path,
                    format!(
                        "invalid pattern identifier {prefix:?}: must be \"regex\", \"regexp\" \
                         or \"glob\""
                    ),
                );
            }
        }
        self.label_selector().validate(errs, path);
    }
}

/// Automatic rollback settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoRollbackConfig {
    /// Promotion phases that trigger a rollback: `Failed`, `Errored` (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_promotion: Vec<String>,
    /// Verification phases that trigger a rollback: `Failed`, `Error` (default `[Failed]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_verification: Vec<String>,
}

/// A UI deep link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeepLink {
    /// The link's label.
    pub title: String,
    /// An expression producing the URL.
    pub url: String,
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// An expression; the link is shown only when it is true.
    #[serde(rename = "if", default, skip_serializing_if = "String::is_empty")]
    pub if_expr: String,
}

/// A project-level webhook receiver; exactly one platform field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookReceiverConfig {
    /// The receiver's name (unique in the ProjectConfig).
    pub name: String,
    /// Bitbucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitbucket: Option<SecretWebhookReceiverConfig>,
    /// Docker Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerhub: Option<SecretWebhookReceiverConfig>,
    /// GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<SecretWebhookReceiverConfig>,
    /// GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<SecretWebhookReceiverConfig>,
    /// Harbor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harbor: Option<SecretWebhookReceiverConfig>,
    /// Quay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quay: Option<SecretWebhookReceiverConfig>,
    /// JFrog Artifactory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifactory: Option<ArtifactoryWebhookReceiverConfig>,
    /// Azure Container Registry / Azure DevOps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<SecretWebhookReceiverConfig>,
    /// Gitea.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitea: Option<SecretWebhookReceiverConfig>,
    /// A generic receiver with user-defined actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericWebhookReceiverConfig>,
    /// A kargo-rs extension (Kargo has no such receiver): notifications of a CNCF
    /// Distribution registry (`registry:2`, Zot and other registries speaking its
    /// `application/vnd.docker.distribution.events.v1+json` envelope). The Secret's
    /// `auth-header` key is compared with the request's `Authorization` header, which the
    /// registry sends through its notification endpoint's `headers` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<SecretWebhookReceiverConfig>,
}

/// A receiver configured only by the Secret holding its shared secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretWebhookReceiverConfig {
    /// The Secret in the Project's namespace.
    pub secret_ref: LocalObjectReference,
}

/// An Artifactory receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactoryWebhookReceiverConfig {
    /// The Secret in the Project's namespace.
    pub secret_ref: LocalObjectReference,
    /// The virtual repository's name, when events come through one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub virtual_repo_name: String,
}

/// A generic receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericWebhookReceiverConfig {
    /// The Secret in the Project's namespace.
    pub secret_ref: LocalObjectReference,
    /// What to do when a request arrives (at least one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<GenericWebhookAction>,
}

/// An action of a generic receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericWebhookAction {
    /// The action; only `Refresh` exists. Also read as `actionType`, the name some Kargo
    /// versions use.
    #[serde(alias = "actionType")]
    pub action: String,
    /// An expression the request must satisfy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub when_expression: String,
    /// Action parameters (values may be expressions).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub parameters: IndexMap<String, String>,
    /// Which resources the action applies to (at least one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_selection_criteria: Vec<GenericWebhookTargetSelectionCriteria>,
}

/// Selects the resources a generic receiver acts on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericWebhookTargetSelectionCriteria {
    /// The target kind (`Warehouse`).
    pub kind: String,
    /// A name (may be an expression).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A label selector.
    #[serde(default, skip_serializing_if = "LabelSelector::is_empty")]
    pub label_selector: LabelSelector,
    /// An index selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_selector: Option<IndexSelector>,
}

/// Selects cached resources by well-known index values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexSelector {
    /// The requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_indices: Vec<IndexSelectorRequirement>,
}

/// One index requirement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexSelectorRequirement {
    /// The index: `subscribedURLs` or `receiverPaths`.
    pub key: String,
    /// `Equals` or `NotEquals`.
    pub operator: String,
    /// A value or expression.
    pub value: String,
}

/// A promotion window: while active, it allows (or denies) promoting the Stages it
/// matches. Evaluated by [`PromotionWindows`](crate::pipeline::PromotionWindows); the
/// times and rule follow RFC 5545 ([`Schedule`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionWindow {
    /// The window's name, unique in its list.
    pub name: String,
    /// The Stages it applies to (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_selector: Option<PromotionPolicySelector>,
    /// Only meaningful on ClusterConfig windows; rejected on ProjectConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_selector: Option<PromotionPolicySelector>,
    /// Allow or Deny.
    pub kind: PromotionWindowKind,
    /// An RFC 5545 recurrence rule (`FREQ=WEEKLY;BYDAY=SA,SU`); empty: a one-shot window
    /// from `dtstart` to `dtend`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rrule: String,
    /// Start, `TZID=<Area/City>:YYYYMMDDTHHMMSS`, or UTC `YYYYMMDDTHHMMSSZ`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dtstart: String,
    /// End, same format; with `rrule`, `dtend - dtstart` is each occurrence's length.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dtend: String,
}

/// Whether a promotion window allows or denies promotions while active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromotionWindowKind {
    /// Promotions are allowed only while an Allow window is active.
    #[default]
    Allow,
    /// Promotions are denied while the window is active.
    Deny,
}

impl WebhookReceiverConfig {
    /// The platform fields that are set, by name.
    pub fn types(&self) -> Vec<&'static str> {
        let flags = [
            ("bitbucket", self.bitbucket.is_some()),
            ("dockerhub", self.dockerhub.is_some()),
            ("github", self.github.is_some()),
            ("gitlab", self.gitlab.is_some()),
            ("harbor", self.harbor.is_some()),
            ("quay", self.quay.is_some()),
            ("artifactory", self.artifactory.is_some()),
            ("azure", self.azure.is_some()),
            ("gitea", self.gitea.is_some()),
            ("generic", self.generic.is_some()),
            ("distribution", self.distribution.is_some()),
        ];
        flags
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| n)
            .collect()
    }
}

impl ProjectConfig {
    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::ProjectConfig,
        );
        self.metadata.validate(&mut errs, false);
        if let Some(ns) = &self.metadata.namespace
            && !self.metadata.name.is_empty()
            && *ns != self.metadata.name
        {
            errs.push(
                "metadata.name",
                format!(
                    "a ProjectConfig must be named like its Project: name {:?} does not match \
                     namespace {ns:?}",
                    self.metadata.name
                ),
            );
        }
        let spec = &self.spec;
        let mut exact_names: HashMap<&str, usize> = HashMap::new();
        for (i, policy) in spec.promotion_policies.iter().enumerate() {
            let p = format!("spec.promotionPolicies[{i}]");
            let name = match (&policy.stage, &policy.stage_selector) {
                (Some(_), Some(_)) | (None, None) => {
                    errs.push(
                        p.clone(),
                        "a promotion policy must have exactly one of stage (deprecated) or \
                         stageSelector",
                    );
                    None
                }
                (Some(stage), None) => {
                    if !is_dns1123_subdomain(stage) {
                        errs.push(
                            format!("{p}.stage"),
                            format!(
                                "invalid Stage name {stage:?} (patterns are only allowed in \
                                 stageSelector.name)"
                            ),
                        );
                    }
                    Some(stage.as_str())
                }
                (None, Some(sel)) => {
                    sel.validate(&mut errs, &format!("{p}.stageSelector"));
                    Some(sel.name.as_str())
                }
            };
            if let Some(name) = name.filter(|n| !n.is_empty() && !n.contains(':')) {
                if let Some(first) = exact_names.get(name) {
                    errs.push(
                        p.clone(),
                        format!(
                            "a policy for Stage {name:?} is already defined at \
                             spec.promotionPolicies[{first}]"
                        ),
                    );
                } else {
                    exact_names.insert(name, i);
                }
            }
            if let Some(a) = &policy.approvals {
                a.validate(&mut errs, &format!("{p}.approvals"));
            }
            if let Some(rb) = &policy.auto_rollback {
                validate_phases(
                    &mut errs,
                    &format!("{p}.autoRollback.onPromotion"),
                    &rb.on_promotion,
                    &["Failed", "Errored"],
                );
                validate_phases(
                    &mut errs,
                    &format!("{p}.autoRollback.onVerification"),
                    &rb.on_verification,
                    &["Failed", "Error"],
                );
            }
        }
        validate_shared_config(
            &mut errs,
            SharedConfig {
                webhook_receivers: &spec.webhook_receivers,
                freight_links: &spec.freight_links,
                stage_links: &spec.stage_links,
                promotion_windows: &spec.promotion_windows,
            },
            false,
        );
        errs.0
    }
}

/// The parts a ProjectConfig and a ClusterConfig share.
#[derive(Clone, Copy)]
pub(super) struct SharedConfig<'a> {
    pub(super) webhook_receivers: &'a [WebhookReceiverConfig],
    pub(super) freight_links: &'a [DeepLink],
    pub(super) stage_links: &'a [DeepLink],
    pub(super) promotion_windows: &'a [PromotionWindow],
}

/// Checks webhook receivers, deep links and promotion windows (`cluster`: of a
/// ClusterConfig, where windows may have a `projectSelector`).
pub(super) fn validate_shared_config(errs: &mut FieldErrors, cfg: SharedConfig<'_>, cluster: bool) {
    let mut receiver_names: HashMap<&str, usize> = HashMap::new();
    for (i, r) in cfg.webhook_receivers.iter().enumerate() {
        let p = format!("spec.webhookReceivers[{i}]");
        if !is_dns1123_subdomain(&r.name) {
            errs.push(
                format!("{p}.name"),
                format!("invalid webhook receiver name {:?}", r.name),
            );
        }
        if let Some(first) = receiver_names.get(r.name.as_str()) {
            errs.push(
                format!("{p}.name"),
                format!(
                    "webhook receiver name {:?} already defined at \
                     spec.webhookReceivers[{first}]",
                    r.name
                ),
            );
        } else {
            receiver_names.insert(&r.name, i);
        }
        let types = r.types();
        if types.len() != 1 {
            errs.push(
                p.clone(),
                format!(
                    "a webhook receiver must have exactly one type, found {}: {}",
                    types.len(),
                    if types.is_empty() {
                        "none".to_owned()
                    } else {
                        types.join(", ")
                    }
                ),
            );
        }
        if let Some(generic) = &r.generic {
            validate_generic_receiver(errs, &format!("{p}.generic"), generic);
        }
    }
    for (field, links) in [
        ("freightLinks", cfg.freight_links),
        ("stageLinks", cfg.stage_links),
    ] {
        for (i, link) in links.iter().enumerate() {
            if link.title.is_empty() {
                errs.push(format!("spec.{field}[{i}].title"), "title is required");
            }
            if link.url.is_empty() {
                errs.push(format!("spec.{field}[{i}].url"), "url is required");
            }
        }
    }
    let mut window_names: HashMap<&str, usize> = HashMap::new();
    for (i, w) in cfg.promotion_windows.iter().enumerate() {
        let p = format!("spec.promotionWindows[{i}]");
        if !is_dns1123_subdomain(&w.name) {
            errs.push(
                format!("{p}.name"),
                format!("invalid promotion window name {:?}", w.name),
            );
        } else if let Some(first) = window_names.get(w.name.as_str()) {
            errs.push(
                format!("{p}.name"),
                format!(
                    "promotion window name {:?} already defined at \
                     spec.promotionWindows[{first}]",
                    w.name
                ),
            );
        } else {
            window_names.insert(&w.name, i);
        }
        if let Some(sel) = &w.stage_selector {
            sel.validate(errs, &format!("{p}.stageSelector"));
        }
        match &w.project_selector {
            Some(_) if !cluster => errs.push(
                format!("{p}.projectSelector"),
                "projectSelector is only allowed on ClusterConfig promotion windows (a \
                 ProjectConfig's windows apply to its own Project)",
            ),
            Some(sel) => sel.validate(errs, &format!("{p}.projectSelector")),
            None => {}
        }
        if let Err(problems) = Schedule::parse(&w.dtstart, &w.dtend, &w.rrule) {
            for problem in problems {
                errs.push(format!("{p}.{}", problem.field.key()), problem.message);
            }
        }
    }
}

fn validate_phases(errs: &mut FieldErrors, path: &str, phases: &[String], allowed: &[&str]) {
    if phases.len() > 2 {
        errs.push(
            path,
            format!("at most 2 phases are allowed, found {}", phases.len()),
        );
    }
    for (i, phase) in phases.iter().enumerate() {
        if !allowed.contains(&phase.as_str()) {
            errs.push(
                format!("{path}[{i}]"),
                format!(
                    "unsupported phase {phase:?}: must be {}",
                    allowed.join(" or ")
                ),
            );
        }
    }
}

fn validate_generic_receiver(errs: &mut FieldErrors, p: &str, g: &GenericWebhookReceiverConfig) {
    if g.actions.is_empty() {
        errs.push(format!("{p}.actions"), "at least one action is required");
    }
    for (i, action) in g.actions.iter().enumerate() {
        let ap = format!("{p}.actions[{i}]");
        if action.action != "Refresh" {
            errs.push(
                format!("{ap}.action"),
                format!("unsupported action {:?}: must be Refresh", action.action),
            );
        }
        if action.target_selection_criteria.is_empty() {
            errs.push(
                format!("{ap}.targetSelectionCriteria"),
                "at least one target is required",
            );
        }
        for (j, t) in action.target_selection_criteria.iter().enumerate() {
            let tp = format!("{ap}.targetSelectionCriteria[{j}]");
            if t.kind != "Warehouse" {
                errs.push(
                    format!("{tp}.kind"),
                    format!("unsupported target kind {:?}: must be Warehouse", t.kind),
                );
            }
            let no_index = t
                .index_selector
                .as_ref()
                .is_none_or(|s| s.match_indices.is_empty());
            if t.name.is_empty() && t.label_selector.is_empty() && no_index {
                errs.push(
                    tp,
                    "at least one of name, labelSelector or indexSelector must be specified",
                );
            }
        }
    }
}
