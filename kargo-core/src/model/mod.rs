//! serde types for Kargo's `kargo.akuity.io/v1alpha1` resources.
//!
//! The kinds a promotion pipeline is written in: [`Project`], [`ProjectConfig`],
//! [`Warehouse`], [`Stage`], [`PromotionTask`] and [`ClusterPromotionTask`]. Field names,
//! enums and defaults follow Kargo's Go API types; every struct denies unknown fields so a
//! typo is an error rather than a silently ignored setting. The `status` of exported
//! resources is accepted and kept as opaque JSON.
//!
//! Deserialising checks only shapes and types. The rules Kargo enforces with kubebuilder
//! markers and admission webhooks (exactly one of `uses` / `task`, discovery limits,
//! patterns, deprecated fields, ...) are checked by each resource's `validate()`, which
//! returns every problem as a [`FieldError`] naming the field path. Rules that span
//! resources (references, duplicates, cycles) are checked by
//! [`ManifestSet`](crate::loader::ManifestSet).
//!
//! ```
//! use kargo_core::model::Stage;
//!
//! let stage: Stage = yaml_serde::from_str(r#"
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Stage
//! metadata: {name: dev, namespace: demo}
//! spec:
//!   requestedFreight:
//!   - origin: {kind: Warehouse, name: app}
//!     sources: {direct: true}
//!   promotionTemplate:
//!     spec:
//!       steps:
//!       - uses: git-clone
//! "#).unwrap();
//! assert!(stage.validate().is_empty());
//! ```

mod approvals;
mod cluster_config;
mod deprecations;
mod duration;
mod meta;
mod notifications;
mod project;
mod stage;
mod task;
mod warehouse;

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

pub use approvals::{ApprovalPolicy, Approver};
pub use cluster_config::{CLUSTER_CONFIG_NAME, ClusterConfig, ClusterConfigSpec, GitClientConfig};
pub use duration::{Duration, ParseDurationError};
pub use meta::{
    LabelSelector, LabelSelectorOperator, LabelSelectorRequirement, LocalObjectReference,
    ObjectMeta,
};
pub use notifications::{
    CLUSTER_SECRETS_NAMESPACE, ChannelReference, ChannelReferenceKind, ChannelSecretRef,
    ChannelType, ClusterMessageChannel, EE_API_GROUP_PREFIX, EE_API_VERSION, EncodingType,
    EventRouter, EventRouterSpec, HTTP_CHANNEL_METHODS, HttpChannel, MessageChannel,
    MessageChannelSpec, NameValue, NotificationKind, SlackChannel, SmtpChannel,
};
pub use project::{
    ArtifactoryWebhookReceiverConfig, AutoRollbackConfig, DeepLink, GenericWebhookAction,
    GenericWebhookReceiverConfig, GenericWebhookTargetSelectionCriteria, IndexSelector,
    IndexSelectorRequirement, Project, ProjectConfig, ProjectConfigSpec, PromotionPolicy,
    PromotionPolicySelector, PromotionWindow, PromotionWindowKind, SecretWebhookReceiverConfig,
    WebhookReceiverConfig,
};
pub use stage::{
    AnalysisRunArgument, AnalysisRunMetadata, AnalysisTemplateKind, AnalysisTemplateReference,
    AutoPromotionOptions, AutoPromotionSelectionPolicy, FreightAvailabilityStrategy, FreightOrigin,
    FreightOriginKind, FreightRequest, FreightSources, Stage, StageSpec, Verification,
};
pub use task::{
    ClusterPromotionTask, ExpressionVariable, PromotionStep, PromotionStepRetry, PromotionTask,
    PromotionTaskKind, PromotionTaskReference, PromotionTaskSpec, PromotionTemplate,
    PromotionTemplateSpec,
};
pub use warehouse::{
    ChartSubscription, CommitSelectionStrategy, CosignVerification, FreightCreationCriteria,
    FreightCreationPolicy, GenericSubscription, GitSubscription, ImageSelectionStrategy,
    ImageSubscription, ImageVerification, Subscription, SubscriptionSource, Warehouse,
    WarehouseSpec,
};

/// The API group and version of every Kargo resource: `kargo.akuity.io/v1alpha1`.
pub const API_VERSION: &str = "kargo.akuity.io/v1alpha1";

/// Kargo's default subscription `discoveryLimit`.
pub const DEFAULT_DISCOVERY_LIMIT: u32 = 20;

/// One semantic problem found by a resource's `validate()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path from the document root, e.g. `spec.promotionTemplate.spec.steps[2].as`.
    pub path: String,
    /// What is wrong, in lowercase prose.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects [`FieldError`]s while validating.
#[derive(Debug, Default)]
pub(crate) struct FieldErrors(pub(crate) Vec<FieldError>);

impl FieldErrors {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// The six Kargo kinds this crate models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// `Project` (cluster-scoped).
    Project,
    /// `ProjectConfig` (namespaced).
    ProjectConfig,
    /// `Warehouse` (namespaced).
    Warehouse,
    /// `Stage` (namespaced).
    Stage,
    /// `PromotionTask` (namespaced).
    PromotionTask,
    /// `ClusterPromotionTask` (cluster-scoped).
    ClusterPromotionTask,
    /// `ClusterConfig` (cluster-scoped, one per cluster).
    ClusterConfig,
}

impl ResourceKind {
    /// Every kind, in dependency order.
    pub const ALL: [ResourceKind; 7] = [
        ResourceKind::Project,
        ResourceKind::ProjectConfig,
        ResourceKind::Warehouse,
        ResourceKind::Stage,
        ResourceKind::PromotionTask,
        ResourceKind::ClusterPromotionTask,
        ResourceKind::ClusterConfig,
    ];

    /// The kind as written in manifests, e.g. `"Stage"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Project => "Project",
            ResourceKind::ProjectConfig => "ProjectConfig",
            ResourceKind::Warehouse => "Warehouse",
            ResourceKind::Stage => "Stage",
            ResourceKind::PromotionTask => "PromotionTask",
            ResourceKind::ClusterPromotionTask => "ClusterPromotionTask",
            ResourceKind::ClusterConfig => "ClusterConfig",
        }
    }

    /// Whether resources of this kind live in a Project namespace.
    pub const fn is_namespaced(self) -> bool {
        !matches!(
            self,
            ResourceKind::Project
                | ResourceKind::ClusterPromotionTask
                | ResourceKind::ClusterConfig
        )
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown kind name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown kind {0:?}: expected one of Project, ProjectConfig, Warehouse, Stage, \
     PromotionTask, ClusterPromotionTask, ClusterConfig"
)]
pub struct UnknownKindError(pub String);

impl FromStr for ResourceKind {
    type Err = UnknownKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKindError(s.to_owned()))
    }
}

/// Any one of the seven Kargo resources.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Resource {
    /// A Project.
    Project(Project),
    /// A ProjectConfig.
    ProjectConfig(ProjectConfig),
    /// A Warehouse.
    Warehouse(Warehouse),
    /// A Stage.
    Stage(Stage),
    /// A PromotionTask.
    PromotionTask(PromotionTask),
    /// A ClusterPromotionTask.
    ClusterPromotionTask(ClusterPromotionTask),
    /// A ClusterConfig.
    ClusterConfig(ClusterConfig),
}

impl Resource {
    /// The resource's kind.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Project(_) => ResourceKind::Project,
            Resource::ProjectConfig(_) => ResourceKind::ProjectConfig,
            Resource::Warehouse(_) => ResourceKind::Warehouse,
            Resource::Stage(_) => ResourceKind::Stage,
            Resource::PromotionTask(_) => ResourceKind::PromotionTask,
            Resource::ClusterPromotionTask(_) => ResourceKind::ClusterPromotionTask,
            Resource::ClusterConfig(_) => ResourceKind::ClusterConfig,
        }
    }

    /// The resource's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::Project(r) => &r.metadata,
            Resource::ProjectConfig(r) => &r.metadata,
            Resource::Warehouse(r) => &r.metadata,
            Resource::Stage(r) => &r.metadata,
            Resource::PromotionTask(r) => &r.metadata,
            Resource::ClusterPromotionTask(r) => &r.metadata,
            Resource::ClusterConfig(r) => &r.metadata,
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The resource's namespace (its Project); `None` for cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        if self.kind().is_namespaced() {
            self.metadata().namespace.as_deref()
        } else {
            None
        }
    }

    /// Runs the resource's semantic validation.
    pub fn validate(&self) -> Vec<FieldError> {
        match self {
            Resource::Project(r) => r.validate(),
            Resource::ProjectConfig(r) => r.validate(),
            Resource::Warehouse(r) => r.validate(),
            Resource::Stage(r) => r.validate(),
            Resource::PromotionTask(r) => r.validate(),
            Resource::ClusterPromotionTask(r) => r.validate(),
            Resource::ClusterConfig(r) => r.validate(),
        }
    }
}

/// Checks `apiVersion` and `kind` of a typed resource.
pub(crate) fn validate_type_meta(
    errs: &mut FieldErrors,
    api_version: &str,
    kind: &str,
    expected: ResourceKind,
) {
    if api_version != API_VERSION {
        errs.push(
            "apiVersion",
            format!("unsupported apiVersion {api_version:?}: expected {API_VERSION:?}"),
        );
    }
    if kind != expected.as_str() {
        errs.push(
            "kind",
            format!("kind is {kind:?}, expected {:?}", expected.as_str()),
        );
    }
}

static DNS1123_LABEL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").ok());
static DNS1123_SUBDOMAIN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").ok()
});
static VAR_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[a-zA-Z_]\w*$").ok());

/// Whether `re` (a constant pattern) compiled and matches `s`.
pub(crate) fn re_match(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

/// RFC 1123 label: what Kubernetes requires of namespace names (and so Project names).
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && re_match(&DNS1123_LABEL, s)
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && re_match(&DNS1123_SUBDOMAIN, s)
}

/// Checks a Kubernetes object name used as a reference (e.g. a task or template name).
pub(crate) fn validate_ref_name(errs: &mut FieldErrors, path: &str, what: &str, name: &str) {
    if name.is_empty() {
        errs.push(path, format!("{what} name is required"));
    } else if !is_dns1123_subdomain(name) {
        errs.push(
            path,
            format!("invalid {what} name {name:?}: must be a lowercase RFC 1123 subdomain"),
        );
    }
}

/// Checks that `pattern` compiles as a regular expression (Kargo uses Go RE2; the Rust
/// `regex` crate accepts the same syntax apart from rare corner cases).
pub(crate) fn validate_regex(errs: &mut FieldErrors, path: &str, pattern: &str) {
    if let Err(e) = Regex::new(pattern) {
        let detail = e.to_string();
        let detail = detail.lines().last().unwrap_or_default().trim();
        let detail = detail.strip_prefix("error: ").unwrap_or(detail).to_owned();
        errs.push(
            path,
            format!("invalid regular expression {pattern:?}: {detail}"),
        );
    }
}

/// Checks a doublestar glob for unbalanced `[` / `{` and dangling escapes.
pub(crate) fn validate_glob(errs: &mut FieldErrors, path: &str, pattern: &str) {
    let mut chars = pattern.chars();
    let mut in_class = false;
    let mut braces = 0usize;
    let mut problem = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => {
                problem = Some("pattern ends with an unfinished escape");
                break;
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => braces += 1,
            '}' if !in_class => {
                if braces == 0 {
                    problem = Some("unmatched '}'");
                    break;
                }
                braces -= 1;
            }
            _ => {}
        }
    }
    if problem.is_none() && in_class {
        problem = Some("unclosed '['");
    }
    if problem.is_none() && braces > 0 {
        problem = Some("unclosed '{'");
    }
    if let Some(p) = problem {
        errs.push(path, format!("invalid glob pattern {pattern:?}: {p}"));
    }
}

/// Checks a name pattern as used by promotion policy selectors and git path filters:
/// `glob:<pattern>` must be a valid glob, `regex:<re>` / `regexp:<re>` must compile; any
/// other value is an exact name and is not checked here.
pub(crate) fn validate_name_pattern(errs: &mut FieldErrors, path: &str, value: &str) {
    if let Some(glob) = value.strip_prefix("glob:") {
        validate_glob(errs, path, glob);
    } else if let Some(re) = value
        .strip_prefix("regex:")
        .or_else(|| value.strip_prefix("regexp:"))
    {
        validate_regex(errs, path, re);
    }
}

/// Checks an expression variable's name against `^[a-zA-Z_]\w*$`.
pub(crate) fn validate_var_names(errs: &mut FieldErrors, path: &str, vars: &[ExpressionVariable]) {
    for (i, var) in vars.iter().enumerate() {
        if !re_match(&VAR_NAME, &var.name) {
            errs.push(
                format!("{path}[{i}].name"),
                format!(
                    "invalid variable name {:?}: must match ^[a-zA-Z_]\\w*$ (a letter or '_' \
                     followed by letters, digits or '_')",
                    var.name
                ),
            );
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_patterns_compile() {
        assert!(is_dns1123_label("kargo-demo"));
        assert!(!is_dns1123_label("Kargo"));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(re_match(&VAR_NAME, "_x1"));
        assert!(!re_match(&VAR_NAME, "1x"));
    }

    #[test]
    fn globs() {
        let mut errs = FieldErrors::default();
        validate_glob(&mut errs, "p", "apps/**/*.yaml");
        validate_glob(&mut errs, "p", "{a,b}/[ch]");
        assert!(errs.0.is_empty());
        validate_glob(&mut errs, "p", "a[b");
        validate_glob(&mut errs, "p", "a{b");
        validate_glob(&mut errs, "p", "a\\");
        assert_eq!(errs.0.len(), 3);
    }

    #[test]
    fn kinds_parse() {
        for k in ResourceKind::ALL {
            assert_eq!(k.as_str().parse::<ResourceKind>().unwrap(), k);
        }
        assert!("ConfigMap".parse::<ResourceKind>().is_err());
    }
}
