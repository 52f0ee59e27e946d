//! The Warehouse kind and its subscriptions (image, chart, git, generic).

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset};
use regex::Regex;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    DEFAULT_DISCOVERY_LIMIT, Duration, FieldError, FieldErrors, ObjectMeta, ResourceKind,
    default_true, is_dns1123_label, is_false, re_match, validate_name_pattern, validate_regex,
    validate_type_meta,
};

/// A source of Freight (`kind: Warehouse`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Warehouse {
    /// `kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `Warehouse`.
    pub kind: String,
    /// Name and Project (namespace).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Subscriptions and discovery settings.
    pub spec: WarehouseSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_discovery_limit() -> u32 {
    DEFAULT_DISCOVERY_LIMIT
}

/// The desired state of a Warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarehouseSpec {
    /// The controller shard (empty: the default shard).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shard: String,
    /// How often artifacts are discovered (default `5m0s`).
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Whether Freight is created automatically (default) or only by hand.
    #[serde(default)]
    pub freight_creation_policy: FreightCreationPolicy,
    /// A condition new artifacts must meet before Freight is created automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freight_creation_criteria: Option<FreightCreationCriteria>,
    /// What the Warehouse watches (at least one).
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

impl Default for WarehouseSpec {
    fn default() -> Self {
        WarehouseSpec {
            shard: String::new(),
            interval: default_interval(),
            freight_creation_policy: FreightCreationPolicy::default(),
            freight_creation_criteria: None,
            subscriptions: Vec::new(),
        }
    }
}

/// Whether a Warehouse creates Freight automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FreightCreationPolicy {
    /// New Freight whenever new artifacts are discovered (subject to the criteria).
    #[default]
    Automatic,
    /// Freight is only created by hand.
    Manual,
}

/// Criteria for automatic Freight creation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FreightCreationCriteria {
    /// An expression that must evaluate to true for Freight to be created.
    #[serde(default)]
    pub expression: String,
}

/// One Warehouse subscription: exactly one artifact source plus an optional name.
///
/// In YAML this is an object with exactly one type key (`image`, `chart`, `git`, or any
/// other key for a generic subscription) and an optional sibling `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// The subscription's name (an RFC 1123 label; required for generic subscriptions).
    pub name: Option<String>,
    /// What is subscribed to.
    pub source: SubscriptionSource,
}

/// The artifact source of a [`Subscription`].
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriptionSource {
    /// A container image repository (`image`).
    Image(ImageSubscription),
    /// A Helm chart repository (`chart`).
    Chart(ChartSubscription),
    /// A git repository (`git`).
    Git(GitSubscription),
    /// Any other subscription type, served by a pluggable subscriber.
    Generic(GenericSubscription),
}

impl SubscriptionSource {
    /// The type key: `image`, `chart`, `git`, or the generic type.
    pub fn type_key(&self) -> &str {
        match self {
            SubscriptionSource::Image(_) => "image",
            SubscriptionSource::Chart(_) => "chart",
            SubscriptionSource::Git(_) => "git",
            SubscriptionSource::Generic(g) => &g.subscription_type,
        }
    }
}

/// A generic (pluggable) subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct GenericSubscription {
    /// The type key it was declared under.
    pub subscription_type: String,
    /// Opaque configuration understood by the subscriber for this type.
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Maximum number of artifacts to discover (1..=100, default 20).
    pub discovery_limit: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenericBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default = "default_discovery_limit")]
    discovery_limit: u32,
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        match &self.source {
            SubscriptionSource::Image(s) => map.serialize_entry("image", s)?,
            SubscriptionSource::Chart(s) => map.serialize_entry("chart", s)?,
            SubscriptionSource::Git(s) => map.serialize_entry("git", s)?,
            SubscriptionSource::Generic(g) => map.serialize_entry(
                &g.subscription_type,
                &GenericBody {
                    config: g.config.clone(),
                    discovery_limit: g.discovery_limit,
                },
            )?,
        }
        map.end()
    }
}

struct SubscriptionVisitor;

impl<'de> Visitor<'de> for SubscriptionVisitor {
    type Value = Subscription;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a subscription: an object with exactly one of image, chart, git or a generic \
             type key, plus an optional name",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Subscription, A::Error> {
        let mut name: Option<String> = None;
        let mut type_keys: Vec<String> = Vec::new();
        let mut source = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "name" {
                if name.is_some() {
                    return Err(de::Error::duplicate_field("name"));
                }
                name = Some(map.next_value()?);
                continue;
            }
            if type_keys.contains(&key) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            type_keys.push(key.clone());
            if type_keys.len() > 1 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            source = Some(match key.as_str() {
                "image" => SubscriptionSource::Image(map.next_value()?),
                "chart" => SubscriptionSource::Chart(map.next_value()?),
                "git" => SubscriptionSource::Git(map.next_value()?),
                _ => {
                    let body: GenericBody = map.next_value()?;
                    SubscriptionSource::Generic(GenericSubscription {
                        subscription_type: key,
                        config: body.config,
                        discovery_limit: body.discovery_limit,
                    })
                }
            });
        }
        match source {
            Some(source) if type_keys.len() == 1 => Ok(Subscription { name, source }),
            _ => Err(de::Error::custom(format!(
                "subscription must have exactly one of image, chart, git or a generic type \
                 key; found: {}",
                if type_keys.is_empty() {
                    "none".to_owned()
                } else {
                    type_keys.join(", ")
                }
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SubscriptionVisitor)
    }
}

/// A subscription to a container image repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSubscription {
    /// The image repository, without a tag (e.g. `ghcr.io/org/app`).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// How the newest image is chosen (default `SemVer`).
    #[serde(default)]
    pub image_selection_strategy: ImageSelectionStrategy,
    /// SemVer only: consider only tags with major, minor and patch (default true).
    #[serde(default = "default_true")]
    pub strict_semvers: bool,
    /// Strategy-specific constraint: a semver range for SemVer, the mutable tag for Digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub constraint: String,
    /// Only tags matching one of these regexes are considered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tags_regexes: Vec<String>,
    /// Tags matching any of these regexes are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_tags_regexes: Vec<String>,
    /// `os/arch[/variant]` the image must be available for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// Maximum number of images to discover (1..=100, default 20).
    #[serde(default = "default_discovery_limit")]
    pub discovery_limit: u32,
    /// Cache image metadata by tag instead of digest (unsafe with mutable tags).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cache_by_tag: bool,
    /// Skip TLS certificate verification.
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "is_false"
    )]
    pub insecure_skip_tls_verify: bool,
    /// Deprecated (use `allowTagsRegexes`): one regex tags must match; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tags: Option<String>,
    /// Deprecated (use `ignoreTagsRegexes`): exact tags to ignore; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_tags: Option<Vec<String>>,
    /// Removed in Kargo v1.9, rejected by validation: use `constraint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver_constraint: Option<String>,
    /// Signatures an image must carry to become Freight (a kargo-rs extension: Kargo has
    /// no such field). Unset: images are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<ImageVerification>,
}

/// What an image subscription requires of an image's signatures (`verification`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageVerification {
    /// A cosign signature by one of the given public keys, over the image's digest.
    pub cosign: CosignVerification,
}

/// A required cosign signature (`verification.cosign`): key-based, as `cosign sign --key`
/// writes it, in either of cosign's formats (a Sigstore bundle attached as an OCI 1.1
/// referrer, cosign 3's default; or the legacy `sha256-<hex>.sig` tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CosignVerification {
    /// PEM text with one or more `PUBLIC KEY` blocks (ECDSA P-256, as in the `cosign.pub`
    /// that `cosign generate-key-pair` writes); a signature by any of them is accepted
    /// (several keys: key rotation).
    pub public_key: String,
}

impl CosignVerification {
    /// The SEC1 points of the keys in [`Self::public_key`], in order: what a verifier
    /// loads. `Err` says what is wrong with the PEM text (validation reports it at
    /// `verification.cosign.publicKey`).
    pub fn public_key_points(&self) -> Result<Vec<Vec<u8>>, String> {
        cosign_public_keys(&self.public_key)
    }
}

impl ImageSubscription {
    /// A SemVer subscription to `repo_url` with Kargo's defaults.
    pub fn new(repo_url: impl Into<String>) -> Self {
        ImageSubscription {
            repo_url: repo_url.into(),
            image_selection_strategy: ImageSelectionStrategy::default(),
            strict_semvers: true,
            constraint: String::new(),
            allow_tags_regexes: Vec::new(),
            ignore_tags_regexes: Vec::new(),
            platform: String::new(),
            discovery_limit: DEFAULT_DISCOVERY_LIMIT,
            cache_by_tag: false,
            insecure_skip_tls_verify: false,
            allow_tags: None,
            ignore_tags: None,
            semver_constraint: None,
            verification: None,
        }
    }
}

/// How an image subscription picks the newest image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageSelectionStrategy {
    /// Highest semantic version.
    #[default]
    SemVer,
    /// Lexically greatest tag.
    Lexical,
    /// Most recently built image.
    NewestBuild,
    /// The current digest of one mutable tag (`constraint`).
    Digest,
}

/// A subscription to a Helm chart repository (classic HTTP(S) or OCI).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChartSubscription {
    /// `https://...` (classic repository) or `oci://...` (one chart).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The chart's name: required for HTTP(S) repositories, empty for OCI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A semver range versions must satisfy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub semver_constraint: String,
    /// Maximum number of versions to discover (1..=100, default 20).
    #[serde(default = "default_discovery_limit")]
    pub discovery_limit: u32,
    /// Skip TLS certificate verification.
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "is_false"
    )]
    pub insecure_skip_tls_verify: bool,
}

/// A subscription to a git repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSubscription {
    /// The repository URL (`https://...`; SSH forms are deprecated by Kargo).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// How the newest commit is chosen (default `NewestFromBranch`).
    #[serde(default)]
    pub commit_selection_strategy: CommitSelectionStrategy,
    /// NewestFromBranch only: the branch (empty: the remote's default branch).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// SemVer only: consider only tags with major, minor and patch (default true).
    #[serde(default = "default_true")]
    pub strict_semvers: bool,
    /// SemVer only: a semver range tags must satisfy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub semver_constraint: String,
    /// Tag strategies: only tags matching one of these regexes are considered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tags_regexes: Vec<String>,
    /// Tag strategies: tags matching any of these regexes are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_tags_regexes: Vec<String>,
    /// An expression commits or tags must satisfy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expression_filter: String,
    /// Path selectors (exact, `glob:`, `regex:`) whose changes count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_paths: Vec<String>,
    /// Path selectors whose changes do not count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_paths: Vec<String>,
    /// Maximum number of commits to discover (1..=100, default 20).
    #[serde(default = "default_discovery_limit")]
    pub discovery_limit: u32,
    /// NewestFromBranch only: ignore commits older than this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<FixedOffset>>,
    /// Clone with `--filter=blob:none`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub blobless: bool,
    /// Skip TLS certificate verification.
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "is_false"
    )]
    pub insecure_skip_tls_verify: bool,
    /// Deprecated (use `allowTagsRegexes`): one regex tags must match; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tags: Option<String>,
    /// Deprecated (use `ignoreTagsRegexes`): exact tags to ignore; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_tags: Option<Vec<String>>,
}

/// How a git subscription picks the newest commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommitSelectionStrategy {
    /// The newest commit on a branch.
    #[default]
    NewestFromBranch,
    /// The commit of the highest semver tag.
    SemVer,
    /// The commit of the lexically greatest tag.
    Lexical,
    /// The commit of the most recently created tag.
    NewestTag,
}

const W: &str = "[0-9A-Za-z_]";

static IMAGE_REPO_URL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let p = format!(r"^({W}+([.-]{W}+)*(:[0-9]+)?/)?({W}+([.-]{W}+)*)(/{W}+([.-]{W}+)*)*$");
    Regex::new(&p).ok()
});
static CHART_REPO_URL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(((https?)|(oci))://)([0-9A-Za-z_.\-]+)(:[0-9]+)?(/.*)*$").ok());
static GIT_REPO_URL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?:^(ssh|https?)://(?:([0-9A-Za-z_-]+)(:(.+))?@)?([0-9A-Za-z_-]+(?:\.[0-9A-Za-z_-]+)*)(?::([0-9]{1,5}))?(/.*)$)|(?:^([0-9A-Za-z_-]+)@([0-9A-Za-z_+]+(?:\.[0-9A-Za-z_-]+)*):(/?.*))",
    )
    .ok()
});
static GIT_BRANCH: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9]([a-zA-Z0-9._/-]*[a-zA-Z0-9_-])?$").ok());

fn validate_discovery_limit(errs: &mut FieldErrors, path: String, limit: u32) {
    if !(1..=100).contains(&limit) {
        errs.push(
            path,
            format!("discoveryLimit must be between 1 and 100, got {limit}"),
        );
    }
}

/// The deprecated `allowTags` (one regex; like `ignoreTags`, still honoured by discovery)
/// must compile and must not be combined with `allowTagsRegexes` (which one would win is
/// unclear). Both are reported as deprecated by
/// [`Resource::deprecations`](super::Resource::deprecations).
fn validate_deprecated_allow_tags(
    errs: &mut FieldErrors,
    p: &str,
    allow_tags: Option<&String>,
    allow_regexes: &[String],
) {
    if let Some(allow) = allow_tags {
        if allow_regexes.is_empty() {
            validate_regex(errs, &format!("{p}.allowTags"), allow);
        } else {
            errs.push(
                format!("{p}.allowTags"),
                "allowTags (deprecated) and allowTagsRegexes are both set: keep only \
                 allowTagsRegexes",
            );
        }
    }
}

fn validate_regexes(errs: &mut FieldErrors, p: &str, field: &str, list: &[String]) {
    for (j, re) in list.iter().enumerate() {
        validate_regex(errs, &format!("{p}.{field}[{j}]"), re);
    }
}

/// Normalised identity of a subscription, for the one-per-repository rule.
fn subscription_key(source: &SubscriptionSource) -> Option<(&'static str, String)> {
    match source {
        SubscriptionSource::Image(s) => {
            let mut url = s.repo_url.trim().to_lowercase();
            for prefix in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
                if let Some(rest) = url.strip_prefix(prefix) {
                    url = rest.to_owned();
                }
            }
            if let Some(rest) = url.strip_prefix("library/") {
                url = rest.to_owned();
            }
            Some(("image", url))
        }
        SubscriptionSource::Chart(s) => {
            let url = s.repo_url.trim().to_lowercase();
            let url = url.trim_end_matches('/');
            if let Some(rest) = url.strip_prefix("oci://") {
                Some(("chart", rest.to_owned()))
            } else {
                Some(("chart", format!("{url}:{}", s.name)))
            }
        }
        SubscriptionSource::Git(s) => {
            let url = s.repo_url.trim().to_lowercase();
            let url = url.strip_suffix('/').unwrap_or(&url);
            let url = url.strip_suffix(".git").unwrap_or(url);
            Some(("git", url.to_owned()))
        }
        SubscriptionSource::Generic(_) => None,
    }
}

impl Warehouse {
    /// Checks Kargo's admission rules; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            ResourceKind::Warehouse,
        );
        self.metadata.validate(&mut errs, false);
        let spec = &self.spec;
        if spec.subscriptions.is_empty() {
            errs.push(
                "spec.subscriptions",
                "at least one subscription is required",
            );
        }
        let mut seen_repos: HashMap<(&str, String), usize> = HashMap::new();
        let mut seen_names: HashMap<&str, usize> = HashMap::new();
        for (i, sub) in spec.subscriptions.iter().enumerate() {
            let base = format!("spec.subscriptions[{i}]");
            let p = format!("{base}.{}", sub.source.type_key());
            match &sub.source {
                SubscriptionSource::Image(s) => validate_image(&mut errs, &p, s),
                SubscriptionSource::Chart(s) => validate_chart(&mut errs, &p, s),
                SubscriptionSource::Git(s) => validate_git(&mut errs, &p, s),
                SubscriptionSource::Generic(g) => {
                    validate_discovery_limit(
                        &mut errs,
                        format!("{p}.discoveryLimit"),
                        g.discovery_limit,
                    );
                    if sub.name.is_none() {
                        errs.push(
                            format!("{base}.name"),
                            format!(
                                "a name is required for subscriptions of generic type {:?}",
                                g.subscription_type
                            ),
                        );
                    }
                }
            }
            if let Some((kind, key)) = subscription_key(&sub.source) {
                if let Some(first) = seen_repos.get(&(kind, key.clone())) {
                    errs.push(
                        format!("{p}.repoURL"),
                        format!(
                            "spec.subscriptions[{first}] already subscribes to this {kind} \
                             repository (at most one subscription per type and repository)"
                        ),
                    );
                } else {
                    seen_repos.insert((kind, key), i);
                }
            }
            if let Some(name) = &sub.name {
                if !is_dns1123_label(name) {
                    errs.push(
                        format!("{base}.name"),
                        format!("invalid subscription name {name:?}: must be an RFC 1123 label"),
                    );
                }
                if let Some(first) = seen_names.get(name.as_str()) {
                    errs.push(
                        format!("{base}.name"),
                        format!(
                            "subscription name {name:?} already used at \
                             spec.subscriptions[{first}].name"
                        ),
                    );
                } else {
                    seen_names.insert(name, i);
                }
            }
        }
        errs.0
    }
}

fn validate_image(errs: &mut FieldErrors, p: &str, s: &ImageSubscription) {
    if s.repo_url.is_empty() {
        errs.push(format!("{p}.repoURL"), "repoURL is required");
    } else if !re_match(&IMAGE_REPO_URL, &s.repo_url) {
        errs.push(
            format!("{p}.repoURL"),
            format!(
                "invalid image repository {:?}: expected [registry[:port]/]path without a tag \
                 or digest",
                s.repo_url
            ),
        );
    }
    if s.image_selection_strategy == ImageSelectionStrategy::Digest && s.constraint.is_empty() {
        errs.push(
            format!("{p}.constraint"),
            "constraint (the tag to follow) must be set when imageSelectionStrategy is Digest",
        );
    }
    validate_regexes(errs, p, "allowTagsRegexes", &s.allow_tags_regexes);
    validate_regexes(errs, p, "ignoreTagsRegexes", &s.ignore_tags_regexes);
    if !s.platform.is_empty() {
        let parts: Vec<&str> = s.platform.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|t| t.is_empty()) {
            errs.push(
                format!("{p}.platform"),
                format!(
                    "invalid platform {:?}: expected <os>/<arch>[/<variant>]",
                    s.platform
                ),
            );
        }
    }
    validate_discovery_limit(errs, format!("{p}.discoveryLimit"), s.discovery_limit);
    validate_deprecated_allow_tags(errs, p, s.allow_tags.as_ref(), &s.allow_tags_regexes);
    if s.semver_constraint.is_some() {
        errs.push(
            format!("{p}.semverConstraint"),
            "semverConstraint was removed from image subscriptions in Kargo v1.9: use \
             constraint instead",
        );
    }
    if let Some(v) = &s.verification {
        let path = format!("{p}.verification.cosign.publicKey");
        if let Err(msg) = cosign_public_keys(&v.cosign.public_key) {
            errs.push(path, msg);
        }
    }
}

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` (id-ecPublicKey, prime256v1) with an
/// uncompressed point (65 bytes follow) and with a compressed one (33 bytes follow).
const P256_SPKI_UNCOMPRESSED: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P256_SPKI_COMPRESSED: [u8; 26] = [
    0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00,
];

/// The keys of `verification.cosign.publicKey` as SEC1 points: PEM `PUBLIC KEY` blocks
/// only, at least one, each the base64 of a P-256 `SubjectPublicKeyInfo`. (Whether a point
/// lies on the curve is checked by the image source when it loads the key.)
fn cosign_public_keys(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut lines = pem.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix(BEGIN)
            .and_then(|l| l.strip_suffix("-----"))
        else {
            return Err(format!(
                "expected PEM text (-----BEGIN PUBLIC KEY-----), found {:?}",
                line.chars().take(40).collect::<String>()
            ));
        };
        if label != "PUBLIC KEY" {
            return Err(format!(
                "a PEM {label:?} block: expected PUBLIC KEY blocks only (cosign.pub, never a \
                 private key)"
            ));
        }
        let mut body = String::new();
        let mut ended = false;
        for l in lines.by_ref() {
            if let Some(rest) = l.strip_prefix(END) {
                if rest != "PUBLIC KEY-----" {
                    return Err(format!("PEM block PUBLIC KEY ends with {l:?}"));
                }
                ended = true;
                break;
            }
            body.push_str(l);
        }
        if !ended {
            return Err("PEM block PUBLIC KEY has no -----END PUBLIC KEY----- line".to_owned());
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .map_err(|e| format!("PEM block {}: bad base64: {e}", keys.len() + 1))?;
        let p256 = (der.len() == 91 && der.starts_with(&P256_SPKI_UNCOMPRESSED))
            || (der.len() == 59 && der.starts_with(&P256_SPKI_COMPRESSED));
        if !p256 {
            return Err(format!(
                "PEM block {}: not an ECDSA P-256 public key (the kind `cosign generate-key-pair` \
                 makes; RSA and Ed25519 keys are not supported)",
                keys.len() + 1
            ));
        }
        keys.push(der[P256_SPKI_UNCOMPRESSED.len()..].to_vec());
    }
    if keys.is_empty() {
        return Err("no PEM PUBLIC KEY block: paste the content of cosign.pub".to_owned());
    }
    Ok(keys)
}

fn validate_chart(errs: &mut FieldErrors, p: &str, s: &ChartSubscription) {
    if s.repo_url.is_empty() {
        errs.push(format!("{p}.repoURL"), "repoURL is required");
    } else if !re_match(&CHART_REPO_URL, &s.repo_url) {
        errs.push(
            format!("{p}.repoURL"),
            format!(
                "invalid Helm repository URL {:?}: expected http://, https:// or oci://",
                s.repo_url
            ),
        );
    }
    let is_http = s.repo_url.starts_with("http://") || s.repo_url.starts_with("https://");
    if s.repo_url.starts_with("oci://") && !s.name.is_empty() {
        errs.push(
            format!("{p}.name"),
            "name must be empty when repoURL starts with oci:// (the URL names the chart)",
        );
    }
    if is_http && s.name.is_empty() {
        errs.push(
            format!("{p}.name"),
            "name (the chart within the repository) is required when repoURL starts with \
             http:// or https://",
        );
    }
    validate_discovery_limit(errs, format!("{p}.discoveryLimit"), s.discovery_limit);
}

fn validate_git(errs: &mut FieldErrors, p: &str, s: &GitSubscription) {
    if s.repo_url.is_empty() {
        errs.push(format!("{p}.repoURL"), "repoURL is required");
    } else if !re_match(&GIT_REPO_URL, &s.repo_url) {
        errs.push(
            format!("{p}.repoURL"),
            format!("invalid git repository URL {:?}", s.repo_url),
        );
    }
    if !s.branch.is_empty() && (s.branch.len() > 255 || !re_match(&GIT_BRANCH, &s.branch)) {
        errs.push(
            format!("{p}.branch"),
            format!(
                "invalid branch name {:?}: must match ^[a-zA-Z0-9]([a-zA-Z0-9._/-]*[a-zA-Z0-9_-])?$ \
                 and be at most 255 characters",
                s.branch
            ),
        );
    }
    validate_regexes(errs, p, "allowTagsRegexes", &s.allow_tags_regexes);
    validate_regexes(errs, p, "ignoreTagsRegexes", &s.ignore_tags_regexes);
    for (field, list) in [
        ("includePaths", &s.include_paths),
        ("excludePaths", &s.exclude_paths),
    ] {
        for (j, v) in list.iter().enumerate() {
            validate_name_pattern(errs, &format!("{p}.{field}[{j}]"), v);
        }
    }
    validate_discovery_limit(errs, format!("{p}.discoveryLimit"), s.discovery_limit);
    validate_deprecated_allow_tags(errs, p, s.allow_tags.as_ref(), &s.allow_tags_regexes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 `cosign.pub` (the public half of a throwaway key).
    const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbDqQSW94Ys+54EmDxei2WkIyTfhb
EGIrRutVNIbNStTwVRGqHvuuO/lWkUPLHu/qz2mjiwNJVTDsLcl4sdB8/w==
-----END PUBLIC KEY-----
";

    fn warehouse(verification: &str) -> Warehouse {
        let yaml = format!(
            "apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {{name: app, namespace: demo}}
spec:
  subscriptions:
  - image:
      repoURL: ghcr.io/org/app
      verification:
{verification}"
        );
        yaml_serde::from_str(&yaml).unwrap()
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|l| format!("          {l}\n")).collect()
    }

    #[test]
    fn cosign_public_key_round_trips_and_validates() {
        let w = warehouse(&format!(
            "        cosign:\n          publicKey: |\n{}",
            indent(KEY).replace("          ", "            ")
        ));
        assert_eq!(w.validate(), Vec::new());
        let SubscriptionSource::Image(s) = &w.spec.subscriptions[0].source else {
            panic!("not an image subscription");
        };
        let v = s.verification.as_ref().unwrap();
        assert_eq!(v.cosign.public_key, KEY);
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["verification"]["cosign"]["publicKey"], KEY);
        // Two keys (rotation) are fine.
        let points = cosign_public_keys(&format!("{KEY}\n{KEY}")).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].len(), 65);
        assert_eq!(points[0][0], 4, "an uncompressed SEC1 point");
    }

    #[test]
    fn bad_public_keys_are_reported_at_their_key_path() {
        let path = "spec.subscriptions[0].image.verification.cosign.publicKey";
        let ed25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEADOmo1G2gxYQ7BKC+jOhgR+IeimqvVBv4G1phUbfbcZk=\n-----END PUBLIC KEY-----\n";
        for (pem, expect) in [
            ("not a key", "expected PEM text"),
            ("", "no PEM PUBLIC KEY block"),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "never a private key",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nMFkw\n",
                "no -----END PUBLIC KEY----- line",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
                "bad base64",
            ),
            (ed25519, "not an ECDSA P-256 public key"),
        ] {
            let mut w = warehouse("        cosign: {publicKey: x}\n");
            let SubscriptionSource::Image(s) = &mut w.spec.subscriptions[0].source else {
                panic!("not an image subscription");
            };
            s.verification = Some(ImageVerification {
                cosign: CosignVerification {
                    public_key: pem.to_owned(),
                },
            });
            let errs = w.validate();
            assert_eq!(errs.len(), 1, "{pem}: {errs:?}");
            assert_eq!(errs[0].path, path);
            assert!(errs[0].message.contains(expect), "{pem}: {}", errs[0]);
        }
    }

    #[test]
    fn verification_needs_cosign_and_nothing_else() {
        let y = |v: &str| {
            yaml_serde::from_str::<Warehouse>(&format!(
                "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {{name: a}}\n\
                 spec:\n  subscriptions:\n  - image: {{repoURL: ghcr.io/a, verification: {v}}}\n"
            ))
        };
        assert!(y("{}").unwrap_err().to_string().contains("cosign"));
        assert!(
            y("{cosign: {publicKey: x}, notary: {}}")
                .unwrap_err()
                .to_string()
                .contains("notary")
        );
        assert!(
            y("{cosign: {key: x}}")
                .unwrap_err()
                .to_string()
                .contains("key")
        );
    }
}
