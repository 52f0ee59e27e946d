//! Freight: the immutable bundle of artifact versions that moves through
//! Stages.
//!
//! A piece of [`Freight`] records specific revisions of Git commits, container
//! images, Helm charts and generic artifacts discovered by one Warehouse (its
//! [`FreightOrigin`]). Its name, the [`FreightId`], is derived from that content
//! with exactly Kargo's algorithm, so the same content always yields the same
//! ID, here and in a Kargo cluster:
//!
//! ```text
//! parts  = one string per commit / image / chart / artifact (see below)
//! sort(parts)                                     // byte-wise
//! ID     = hex(SHA1(origin + ":" + parts.join("|")))
//!
//! commit:   normalize_git_url(repoURL) + ":" [+ tag + ":"] + id [+ ":" + subscriptionName]
//! image:    repoURL + ":" + tag + "@" + digest [+ ":" + subscriptionName]   (repoURL as given)
//! chart:    path.Join(normalize_chart_repo(repoURL), name) + ":" + version [+ ":" + subscriptionName]
//! artifact: artifactType + ":" + subscriptionName + ":" + version
//! ```
//!
//! A Stage records what it runs as a [`FreightCollection`]: one
//! [`FreightReference`] per origin. Friendly aliases come from
//! [`AliasGenerator`].

mod alias;
mod normalize;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

pub use alias::AliasGenerator;
pub use normalize::{normalize_chart_repo, normalize_git_url, normalize_image_repo};

/// Errors from parsing Freight identifiers and origins.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FreightError {
    /// The string is not of the form `<kind>/<name>`.
    #[error("invalid Freight origin string {0:?}")]
    InvalidOrigin(String),
    /// The origin kind is not one Kargo supports.
    #[error("invalid Freight origin kind {0:?}")]
    InvalidOriginKind(String),
    /// The origin names no resource.
    #[error("Freight origin name must not be empty")]
    EmptyOriginName,
    /// The string is not 40 lowercase hexadecimal characters.
    #[error("invalid Freight ID {0:?}: expected 40 lowercase hexadecimal characters")]
    InvalidId(String),
}

/// The kind of resource a piece of Freight originates from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum FreightOriginKind {
    /// A Warehouse (the only kind Kargo supports).
    #[default]
    Warehouse,
}

impl FreightOriginKind {
    /// The kind as it appears in manifests and origin strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warehouse => "Warehouse",
        }
    }
}

impl fmt::Display for FreightOriginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a piece of Freight comes from: a kind and a resource name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreightOrigin {
    /// The kind of the originating resource.
    pub kind: FreightOriginKind,
    /// The name of the originating resource.
    pub name: String,
}

impl FreightOrigin {
    /// The origin for Freight produced by the named Warehouse.
    pub fn warehouse(name: impl Into<String>) -> Self {
        Self {
            kind: FreightOriginKind::Warehouse,
            name: name.into(),
        }
    }
}

/// `<kind>/<name>`, e.g. `Warehouse/my-warehouse`: the form Kargo uses in the
/// Freight ID, Stage status keys and annotations.
impl fmt::Display for FreightOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Parses `<kind>/<name>` as Kargo's `ParseFreightOrigin` does: exactly one
/// `/`, the kind `Warehouse` and a non-empty name.
impl FromStr for FreightOrigin {
    type Err = FreightError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((kind, name)) = s.split_once('/') else {
            return Err(FreightError::InvalidOrigin(s.to_owned()));
        };
        if name.contains('/') {
            return Err(FreightError::InvalidOrigin(s.to_owned()));
        }
        if kind != FreightOriginKind::Warehouse.as_str() {
            return Err(FreightError::InvalidOriginKind(kind.to_owned()));
        }
        if name.is_empty() {
            return Err(FreightError::EmptyOriginName);
        }
        Ok(Self::warehouse(name))
    }
}

/// A specific commit from a specific Git repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitCommit {
    /// The URL of the Git repository.
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,
    /// The commit ID (SHA).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The branch on which the commit was found, if selected by branch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// The tag that resolved to this commit, if selected by tag. Part of the
    /// Freight ID: re-tagging a commit produces new Freight.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// The commit subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The commit author.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// The committer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub committer: String,
    /// The commit's creation date as recorded in the commit (not part of the
    /// Freight ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_date: Option<DateTime<Utc>>,
    /// The name of the Warehouse subscription that discovered the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_name: Option<String>,
}

/// A specific version of a container image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    /// The image repository, as the subscription names it (used verbatim in
    /// the Freight ID, without normalisation).
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,
    /// The tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// The digest, e.g. `sha256:...`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Arbitrary metadata about the image (not part of the Freight ID).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The name of the Warehouse subscription that discovered the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_name: Option<String>,
}

/// A specific version of a Helm chart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Chart {
    /// The chart repository: a classic `https://` repository or an `oci://`
    /// repository (which then names the chart itself).
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,
    /// The chart name within a classic repository; empty for OCI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The chart version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The name of the Warehouse subscription that discovered the chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_name: Option<String>,
}

/// A specific version of an artifact discovered by a generic subscription
/// (Kargo's `ArtifactReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericArtifact {
    /// The artifact type, often a media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_type: String,
    /// The name of the subscription that discovered the artifact.
    #[serde(default)]
    pub subscription_name: String,
    /// The revision of the artifact.
    #[serde(default)]
    pub version: String,
    /// An opaque JSON object describing the artifact (not part of the Freight
    /// ID); `null` when absent.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// A Freight ID: 40 lowercase hexadecimal characters (a SHA-1 digest of the
/// Freight's content). Serialised as a plain string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FreightId(String);

impl FreightId {
    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first seven characters, as shown in UIs and logs.
    pub fn short(&self) -> &str {
        self.0.get(..7).unwrap_or(&self.0)
    }

    /// The lowercase hex SHA-1 digest of `input`.
    fn sha1_of(input: &[u8]) -> Self {
        Self(sha1_hex(input))
    }
}

impl fmt::Display for FreightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FreightId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Accepts exactly 40 lowercase hexadecimal characters.
impl FromStr for FreightId {
    type Err = FreightError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(FreightError::InvalidId(s.to_owned()))
        }
    }
}

/// A piece of Freight: specific versions of artifacts from one origin, named
/// by the ID derived from them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Freight {
    /// The Freight ID (Kargo's `metadata.name`).
    pub name: FreightId,
    /// A human-friendly alias, unique within the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The Warehouse that produced this Freight.
    pub origin: FreightOrigin,
    /// When the Freight was discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_at: Option<DateTime<Utc>>,
    /// Git commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<GitCommit>,
    /// Container images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Helm charts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<Chart>,
    /// Artifacts from generic subscriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<GenericArtifact>,
}

impl Freight {
    /// Assembles Freight from its origin and artifacts and names it with the
    /// computed ID. The alias and discovery time are left unset.
    pub fn new(
        origin: FreightOrigin,
        commits: Vec<GitCommit>,
        images: Vec<Image>,
        charts: Vec<Chart>,
        artifacts: Vec<GenericArtifact>,
    ) -> Self {
        let name = compute_id(&origin, &commits, &images, &charts, &artifacts);
        Self {
            name,
            alias: None,
            origin,
            discovered_at: None,
            commits,
            images,
            charts,
            artifacts,
        }
    }

    /// Computes the ID of this Freight's content (Kargo's `GenerateFreightID`),
    /// regardless of the current [`name`](Self::name).
    pub fn compute_id(&self) -> FreightId {
        compute_id(
            &self.origin,
            &self.commits,
            &self.images,
            &self.charts,
            &self.artifacts,
        )
    }
}

/// What a Stage records about a piece of Freight: its name, origin and
/// artifacts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FreightReference {
    /// The Freight ID.
    pub name: FreightId,
    /// The Warehouse that produced the Freight.
    pub origin: FreightOrigin,
    /// Git commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<GitCommit>,
    /// Container images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Helm charts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<Chart>,
    /// Artifacts from generic subscriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<GenericArtifact>,
}

impl FreightReference {
    /// Computes the ID of the referenced content, as [`Freight::compute_id`].
    pub fn compute_id(&self) -> FreightId {
        compute_id(
            &self.origin,
            &self.commits,
            &self.images,
            &self.charts,
            &self.artifacts,
        )
    }
}

impl From<&Freight> for FreightReference {
    fn from(freight: &Freight) -> Self {
        Self {
            name: freight.name.clone(),
            origin: freight.origin.clone(),
            commits: freight.commits.clone(),
            images: freight.images.clone(),
            charts: freight.charts.clone(),
            artifacts: freight.artifacts.clone(),
        }
    }
}

impl From<Freight> for FreightReference {
    fn from(freight: Freight) -> Self {
        Self {
            name: freight.name,
            origin: freight.origin,
            commits: freight.commits,
            images: freight.images,
            charts: freight.charts,
            artifacts: freight.artifacts,
        }
    }
}

/// The Freight a Stage runs: at most one [`FreightReference`] per origin,
/// keyed by the origin string (`Warehouse/<name>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreightCollection {
    /// The references, keyed by their origin's string form. Prefer
    /// [`insert`](Self::insert), which keeps keys and origins in agreement.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub items: BTreeMap<String, FreightReference>,
}

impl FreightCollection {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The collection's ID as Kargo computes it: the lowercase hex SHA-1 of
    /// the sorted Freight names joined with `,`.
    pub fn id(&self) -> String {
        let mut names: Vec<&str> = self.items.values().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        sha1_hex(names.join(",").as_bytes())
    }

    /// Adds `reference`, replacing (and returning) any reference with the same
    /// origin.
    pub fn insert(&mut self, reference: FreightReference) -> Option<FreightReference> {
        self.items.insert(reference.origin.to_string(), reference)
    }

    /// The reference for `origin`, if any.
    pub fn get(&self, origin: &FreightOrigin) -> Option<&FreightReference> {
        self.items.get(&origin.to_string())
    }

    /// Removes and returns the reference for `origin`, if any.
    pub fn remove(&mut self, origin: &FreightOrigin) -> Option<FreightReference> {
        self.items.remove(&origin.to_string())
    }

    /// Whether the collection holds Freight with the given name.
    pub fn contains_freight(&self, name: &str) -> bool {
        self.items.values().any(|r| r.name.as_str() == name)
    }

    /// `(origin string, reference)` pairs, ordered by origin string.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FreightReference)> {
        self.items
            .iter()
            .map(|(origin, reference)| (origin.as_str(), reference))
    }

    /// The number of references.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the collection is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The references, ordered by origin string.
    pub fn references(&self) -> Vec<&FreightReference> {
        self.items.values().collect()
    }

    /// Every Git commit in the collection, with the origin it came from.
    pub fn commits(&self) -> impl Iterator<Item = (&FreightOrigin, &GitCommit)> {
        self.items
            .values()
            .flat_map(|r| r.commits.iter().map(move |c| (&r.origin, c)))
    }

    /// Every container image in the collection, with the origin it came from.
    pub fn images(&self) -> impl Iterator<Item = (&FreightOrigin, &Image)> {
        self.items
            .values()
            .flat_map(|r| r.images.iter().map(move |i| (&r.origin, i)))
    }

    /// Every Helm chart in the collection, with the origin it came from.
    pub fn charts(&self) -> impl Iterator<Item = (&FreightOrigin, &Chart)> {
        self.items
            .values()
            .flat_map(|r| r.charts.iter().map(move |c| (&r.origin, c)))
    }

    /// Every generic artifact in the collection, with the origin it came from.
    pub fn artifacts(&self) -> impl Iterator<Item = (&FreightOrigin, &GenericArtifact)> {
        self.items
            .values()
            .flat_map(|r| r.artifacts.iter().map(move |a| (&r.origin, a)))
    }
}

impl FromIterator<FreightReference> for FreightCollection {
    fn from_iter<T: IntoIterator<Item = FreightReference>>(iter: T) -> Self {
        let mut collection = Self::new();
        collection.extend(iter);
        collection
    }
}

impl Extend<FreightReference> for FreightCollection {
    fn extend<T: IntoIterator<Item = FreightReference>>(&mut self, iter: T) {
        for reference in iter {
            self.insert(reference);
        }
    }
}

/// Kargo's `GenerateFreightID`.
fn compute_id(
    origin: &FreightOrigin,
    commits: &[GitCommit],
    images: &[Image],
    charts: &[Chart],
    artifacts: &[GenericArtifact],
) -> FreightId {
    let mut parts: Vec<String> =
        Vec::with_capacity(commits.len() + images.len() + charts.len() + artifacts.len());
    parts.extend(commits.iter().map(commit_part));
    parts.extend(images.iter().map(image_part));
    parts.extend(charts.iter().map(chart_part));
    parts.extend(artifacts.iter().map(artifact_part));
    parts.sort_unstable();
    FreightId::sha1_of(format!("{origin}:{}", parts.join("|")).as_bytes())
}

fn commit_part(commit: &GitCommit) -> String {
    let mut part = normalize_git_url(&commit.repo_url);
    part.push(':');
    if !commit.tag.is_empty() {
        part.push_str(&commit.tag);
        part.push(':');
    }
    part.push_str(&commit.id);
    with_subscription(part, commit.subscription_name.as_deref())
}

fn image_part(image: &Image) -> String {
    let part = format!("{}:{}@{}", image.repo_url, image.tag, image.digest);
    with_subscription(part, image.subscription_name.as_deref())
}

fn chart_part(chart: &Chart) -> String {
    let repo = normalize::path_join(&normalize_chart_repo(&chart.repo_url), &chart.name);
    with_subscription(
        format!("{repo}:{}", chart.version),
        chart.subscription_name.as_deref(),
    )
}

fn artifact_part(artifact: &GenericArtifact) -> String {
    format!(
        "{}:{}:{}",
        artifact.artifact_type, artifact.subscription_name, artifact.version
    )
}

/// Appends `:<subscription>` when the subscription name is set and non-empty.
fn with_subscription(mut part: String, subscription: Option<&str>) -> String {
    if let Some(name) = subscription.filter(|name| !name.is_empty()) {
        part.push(':');
        part.push_str(name);
    }
    part
}

/// Lowercase hex SHA-1 of `input`.
fn sha1_hex(input: &[u8]) -> String {
    use fmt::Write as _;
    let digest = Sha1::digest(input);
    let mut hex = String::with_capacity(40);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const D_APP: &str = "sha256:a172cedcae47474b615c54d510a5d84a8dea3032e958587430b413538be3f333";
    const D_NGINX: &str = "sha256:5be1ecc7935f1dd85635d4feedaf660594030253cc97c9e9ca3819ffeac36b65";

    fn wh() -> FreightOrigin {
        FreightOrigin::warehouse("wh")
    }

    fn commit(repo: &str, tag: &str, id: &str, sub: Option<&str>) -> GitCommit {
        GitCommit {
            repo_url: repo.into(),
            tag: tag.into(),
            id: id.into(),
            subscription_name: sub.map(Into::into),
            ..Default::default()
        }
    }

    fn image(repo: &str, tag: &str, digest: &str, sub: Option<&str>) -> Image {
        Image {
            repo_url: repo.into(),
            tag: tag.into(),
            digest: digest.into(),
            subscription_name: sub.map(Into::into),
            ..Default::default()
        }
    }

    fn chart(repo: &str, name: &str, version: &str, sub: Option<&str>) -> Chart {
        Chart {
            repo_url: repo.into(),
            name: name.into(),
            version: version.into(),
            subscription_name: sub.map(Into::into),
        }
    }

    fn artifact(kind: &str, sub: &str, version: &str) -> GenericArtifact {
        GenericArtifact {
            artifact_type: kind.into(),
            subscription_name: sub.into(),
            version: version.into(),
            metadata: serde_json::Value::Null,
        }
    }

    fn id_of(
        origin: FreightOrigin,
        commits: Vec<GitCommit>,
        images: Vec<Image>,
        charts: Vec<Chart>,
        artifacts: Vec<GenericArtifact>,
    ) -> String {
        let freight = Freight::new(origin, commits, images, charts, artifacts);
        assert_eq!(freight.name, freight.compute_id());
        freight.name.to_string()
    }

    #[test]
    fn id_git_without_tag() {
        // printf 'Warehouse/wh:https://github.com/example/repo:abc123' | sha1sum
        let commits = vec![commit(
            "https://github.com/example/repo.git",
            "",
            "abc123",
            None,
        )];
        let id = id_of(wh(), commits, vec![], vec![], vec![]);
        assert_eq!(id, "1d9d68a507f5111b5f9397cae875a99e0af21a16");
    }

    #[test]
    fn id_git_with_tag() {
        // printf 'Warehouse/wh:https://github.com/example/repo:v1.0.0:abc123' | sha1sum
        let commits = vec![commit(
            "https://GitHub.com/Example/Repo/",
            "v1.0.0",
            "abc123",
            None,
        )];
        let id = id_of(wh(), commits, vec![], vec![], vec![]);
        assert_eq!(id, "ecf6955382a22bcecea1ab083c85ffbd89f0643e");
    }

    #[test]
    fn id_git_scp_with_subscription_name() {
        // printf 'Warehouse/wh:ssh://git@github.com/example/repo:def456:app-source' | sha1sum
        let commits = vec![commit(
            "git@github.com:example/repo.git",
            "",
            "def456",
            Some("app-source"),
        )];
        let id = id_of(wh(), commits, vec![], vec![], vec![]);
        assert_eq!(id, "880113a6bd06db61d2ae3ef726a08bd0c2426610");
        // An empty subscription name counts as none.
        let commits = vec![commit(
            "https://github.com/example/repo",
            "",
            "abc123",
            Some(""),
        )];
        let id = id_of(wh(), commits, vec![], vec![], vec![]);
        assert_eq!(id, "1d9d68a507f5111b5f9397cae875a99e0af21a16");
    }

    #[test]
    fn id_image() {
        // printf 'Warehouse/wh:ghcr.io/example/app:1.2.3@sha256:a172cedcae47474b615c54d510a5d84a8dea3032e958587430b413538be3f333' | sha1sum
        let mut img = image("ghcr.io/example/app", "1.2.3", D_APP, None);
        let id = id_of(wh(), vec![], vec![img.clone()], vec![], vec![]);
        assert_eq!(id, "dbd581bab6627f2548abe9de8bfa2172e458bb9f");
        // Annotations are not part of the ID.
        img.annotations
            .insert("org.opencontainers.image.source".into(), "x".into());
        assert_eq!(id_of(wh(), vec![], vec![img], vec![], vec![]), id);
    }

    #[test]
    fn id_docker_hub_images_use_the_repo_url_verbatim() {
        // printf 'Warehouse/wh:docker.io/library/nginx:1.27.0@sha256:5be1ecc7935f1dd85635d4feedaf660594030253cc97c9e9ca3819ffeac36b65:web' | sha1sum
        let long = image("docker.io/library/nginx", "1.27.0", D_NGINX, Some("web"));
        let id = id_of(wh(), vec![], vec![long], vec![], vec![]);
        assert_eq!(id, "e80b429824491bcc4171c18c771cc5898a12bed5");
        // printf 'Warehouse/wh:nginx:1.27.0@sha256:5be1ecc7935f1dd85635d4feedaf660594030253cc97c9e9ca3819ffeac36b65:web' | sha1sum
        let short = image("nginx", "1.27.0", D_NGINX, Some("web"));
        let id = id_of(wh(), vec![], vec![short], vec![], vec![]);
        assert_eq!(id, "1d04dd48e645291acd6ae51b13f7c9deeb316069");
    }

    #[test]
    fn id_https_chart_collapses_double_slash() {
        // printf 'Warehouse/wh:https:/charts.example.com/nginx:1.0.0' | sha1sum
        let expected = "07c6fdd7f4015d8268d89834eedbc0f336d72b9a";
        for repo in [
            "https://charts.example.com",
            "HTTPS://Charts.Example.com/",
            // A bare port is taken for an image tag and dropped.
            "https://charts.example.com:8443",
        ] {
            let charts = vec![chart(repo, "nginx", "1.0.0", None)];
            assert_eq!(
                id_of(wh(), vec![], vec![], charts, vec![]),
                expected,
                "{repo}"
            );
        }
    }

    #[test]
    fn id_oci_charts() {
        // printf 'Warehouse/wh:bitnamicharts/nginx:18.1.0:chart' | sha1sum
        let charts = vec![chart(
            "oci://registry-1.docker.io/bitnamicharts/nginx",
            "",
            "18.1.0",
            Some("chart"),
        )];
        let id = id_of(wh(), vec![], vec![], charts, vec![]);
        assert_eq!(id, "5c759516e6b7a1e4d800c8b03649422b3458e499");
        // printf 'Warehouse/wh:ghcr.io/example/charts/app:0.3.0' | sha1sum
        let charts = vec![chart("oci://ghcr.io/example/charts/app", "", "0.3.0", None)];
        let id = id_of(wh(), vec![], vec![], charts, vec![]);
        assert_eq!(id, "4a00a3a81dcb4d39339ee84c2d1d656dbd8a6823");
    }

    #[test]
    fn id_generic_artifact() {
        // printf 'Warehouse/wh:application/vnd.example.config:config:v42' | sha1sum
        let mut art = artifact("application/vnd.example.config", "config", "v42");
        let id = id_of(wh(), vec![], vec![], vec![], vec![art.clone()]);
        assert_eq!(id, "e514885298885f0e636c5fc29d095ebd79aa2fd0");
        // Metadata is not part of the ID.
        art.metadata = serde_json::json!({"url": "https://example.com"});
        assert_eq!(id_of(wh(), vec![], vec![], vec![], vec![art]), id);
    }

    #[test]
    fn id_multi_artifact_sorts_parts() {
        // printf 'Warehouse/multi:application/vnd.example.config:config:v42|ghcr.io/example/app:1.2.3@sha256:a172cedcae47474b615c54d510a5d84a8dea3032e958587430b413538be3f333|https://github.com/example/repo:abc123|https:/charts.example.com/nginx:1.0.0' | sha1sum
        let expected = "83b4908ba7ba858d19221fa21292ae800ccb308a";
        let origin = FreightOrigin::warehouse("multi");
        let commits = vec![commit(
            "https://github.com/example/repo",
            "",
            "abc123",
            None,
        )];
        let images = vec![image("ghcr.io/example/app", "1.2.3", D_APP, None)];
        let charts = vec![chart("https://charts.example.com", "nginx", "1.0.0", None)];
        let artifacts = vec![artifact("application/vnd.example.config", "config", "v42")];
        let id = id_of(
            origin.clone(),
            commits.clone(),
            images,
            charts.clone(),
            artifacts,
        );
        assert_eq!(id, expected);

        // Order of artifacts within a kind does not matter either.
        let images = vec![
            image("nginx", "1.27.0", D_NGINX, None),
            image("ghcr.io/example/app", "1.2.3", D_APP, None),
        ];
        let reversed: Vec<Image> = images.iter().rev().cloned().collect();
        assert_eq!(
            id_of(
                origin.clone(),
                commits.clone(),
                images,
                charts.clone(),
                vec![]
            ),
            id_of(origin, commits, reversed, charts, vec![]),
        );
    }

    #[test]
    fn id_without_artifacts() {
        // printf 'Warehouse/wh:' | sha1sum
        let id = id_of(wh(), vec![], vec![], vec![], vec![]);
        assert_eq!(id, "174ecbda61f2fa38b0a7e2a7cf022bbf5d537c52");
    }

    #[test]
    fn hash_parts() {
        let c = commit("git@github.com:example/repo.git", "v1", "abc", Some("src"));
        assert_eq!(
            commit_part(&c),
            "ssh://git@github.com/example/repo:v1:abc:src"
        );
        let i = image("nginx", "", D_NGINX, None);
        assert_eq!(image_part(&i), format!("nginx:@{D_NGINX}"));
        let h = chart("oci://ghcr.io/example/charts/app", "", "1.0.0", Some("c"));
        assert_eq!(chart_part(&h), "ghcr.io/example/charts/app:1.0.0:c");
        let h = chart("https://example.com/charts/", "app", "1.0.0", None);
        assert_eq!(chart_part(&h), "https:/example.com/charts/app:1.0.0");
        let a = artifact("", "sub", "v1");
        assert_eq!(artifact_part(&a), ":sub:v1");
    }

    #[test]
    fn freight_id_parsing() {
        let id: FreightId = "1d9d68a507f5111b5f9397cae875a99e0af21a16".parse().unwrap();
        assert_eq!(id.short(), "1d9d68a");
        assert_eq!(id.as_str(), id.to_string());
        assert!(
            "1D9D68A507F5111B5F9397CAE875A99E0AF21A16"
                .parse::<FreightId>()
                .is_err()
        );
        assert!("1d9d68a".parse::<FreightId>().is_err());
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"1d9d68a507f5111b5f9397cae875a99e0af21a16\""
        );
    }

    #[test]
    fn freight_origin() {
        let origin = FreightOrigin::warehouse("my-wh");
        assert_eq!(origin.to_string(), "Warehouse/my-wh");
        assert_eq!("Warehouse/my-wh".parse::<FreightOrigin>().unwrap(), origin);
        assert!(matches!(
            "Warehouse".parse::<FreightOrigin>(),
            Err(FreightError::InvalidOrigin(_))
        ));
        assert!(matches!(
            "Warehouse/a/b".parse::<FreightOrigin>(),
            Err(FreightError::InvalidOrigin(_))
        ));
        assert!(matches!(
            "Stage/a".parse::<FreightOrigin>(),
            Err(FreightError::InvalidOriginKind(_))
        ));
        assert_eq!(
            "Warehouse/".parse::<FreightOrigin>(),
            Err(FreightError::EmptyOriginName)
        );
        assert_eq!(
            serde_json::to_value(&origin).unwrap(),
            serde_json::json!({"kind": "Warehouse", "name": "my-wh"})
        );
    }

    #[test]
    fn freight_serde_uses_kargo_field_names() {
        let mut freight = Freight::new(
            wh(),
            vec![GitCommit {
                creator_date: Some("2025-01-02T03:04:05Z".parse().unwrap()),
                ..commit("https://github.com/example/repo", "", "abc123", Some("src"))
            }],
            vec![image("nginx", "1.27.0", D_NGINX, None)],
            vec![chart("oci://ghcr.io/example/charts/app", "", "0.3.0", None)],
            vec![GenericArtifact {
                metadata: serde_json::json!({"k": 1}),
                ..artifact("t", "s", "v")
            }],
        );
        freight.alias = Some("brave-otter".into());
        let json = serde_json::to_value(&freight).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": freight.name.as_str(),
                "alias": "brave-otter",
                "origin": {"kind": "Warehouse", "name": "wh"},
                "commits": [{
                    "repoURL": "https://github.com/example/repo",
                    "id": "abc123",
                    "creatorDate": "2025-01-02T03:04:05Z",
                    "subscriptionName": "src"
                }],
                "images": [{"repoURL": "nginx", "tag": "1.27.0", "digest": D_NGINX}],
                "charts": [{"repoURL": "oci://ghcr.io/example/charts/app", "version": "0.3.0"}],
                "artifacts": [{
                    "artifactType": "t", "subscriptionName": "s", "version": "v",
                    "metadata": {"k": 1}
                }]
            })
        );
        let back: Freight = serde_json::from_value(json).unwrap();
        assert_eq!(back, freight);

        let unknown = serde_json::json!({"repoURL": "x", "repoUrl": "y"});
        assert!(serde_json::from_value::<Image>(unknown).is_err());
    }

    #[test]
    fn freight_collection() {
        let git = Freight::new(
            FreightOrigin::warehouse("b-git"),
            vec![commit(
                "https://github.com/example/repo",
                "",
                "abc123",
                None,
            )],
            vec![],
            vec![],
            vec![],
        );
        let img = Freight::new(
            FreightOrigin::warehouse("a-img"),
            vec![],
            vec![image("ghcr.io/example/app", "1.2.3", D_APP, None)],
            vec![],
            vec![],
        );

        let mut collection = FreightCollection::new();
        assert!(collection.is_empty());
        // printf '' | sha1sum
        assert_eq!(collection.id(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");

        assert!(collection.insert(FreightReference::from(&git)).is_none());
        // printf 'Warehouse/b-git:https://github.com/example/repo:abc123' | sha1sum
        assert_eq!(
            git.name.as_str(),
            "0c98d4f2aff4cad8ed18347517368b94126e9965"
        );
        // printf '0c98d4f2aff4cad8ed18347517368b94126e9965' | sha1sum
        assert_eq!(collection.id(), "6b6f2e8561e0b64e24b3a560d0f057ec20f1973b");

        collection.insert(FreightReference::from(&img));
        // printf 'Warehouse/a-img:ghcr.io/example/app:1.2.3@sha256:a172cedcae47474b615c54d510a5d84a8dea3032e958587430b413538be3f333' | sha1sum
        assert_eq!(
            img.name.as_str(),
            "e499292aadd620f06cc9f050e9a8ef1c1fff5132"
        );
        // Names sorted before joining, whatever the origin order:
        // printf '0c98d4f2aff4cad8ed18347517368b94126e9965,e499292aadd620f06cc9f050e9a8ef1c1fff5132' | sha1sum
        assert_eq!(collection.id(), "b1ddc575826c06e2a02d508fb4ec7182082efa59");
        assert_eq!(collection.len(), 2);

        let keys: Vec<&str> = collection.iter().map(|(origin, _)| origin).collect();
        assert_eq!(keys, ["Warehouse/a-img", "Warehouse/b-git"]);
        let names: Vec<&str> = collection
            .references()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, [img.name.as_str(), git.name.as_str()]);
        assert_eq!(
            collection.get(&git.origin).map(|r| &r.name),
            Some(&git.name)
        );
        assert!(collection.contains_freight(git.name.as_str()));

        let images: Vec<_> = collection.images().collect();
        assert_eq!(images, [(&img.origin, &img.images[0])]);
        let commits: Vec<_> = collection.commits().collect();
        assert_eq!(commits, [(&git.origin, &git.commits[0])]);
        assert_eq!(
            collection.charts().count() + collection.artifacts().count(),
            0
        );

        // Inserting Freight from the same origin replaces the entry.
        let git2 = Freight::new(
            git.origin.clone(),
            vec![commit(
                "https://github.com/example/repo",
                "",
                "def456",
                None,
            )],
            vec![],
            vec![],
            vec![],
        );
        let replaced = collection.insert(git2.clone().into());
        assert_eq!(replaced.map(|r| r.name), Some(git.name.clone()));
        assert_eq!(collection.len(), 2);
        assert!(!collection.contains_freight(git.name.as_str()));
        assert_eq!(
            collection.get(&git.origin).map(|r| &r.name),
            Some(&git2.name)
        );

        let json = serde_json::to_value(&collection).unwrap();
        assert!(json["items"]["Warehouse/a-img"]["images"].is_array());
        let back: FreightCollection = serde_json::from_value(json).unwrap();
        assert_eq!(back, collection);
        let collected: FreightCollection = [FreightReference::from(&img), git2.into()]
            .into_iter()
            .collect();
        assert_eq!(collected, collection);
    }
}
