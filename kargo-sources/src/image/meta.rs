//! Manifest parsing, build times, platforms, and the metadata cache.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Manifest media types asked for (OCI and Docker, images and indexes).
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const CREATED_ANNOTATIONS: [&str; 2] = [
    "org.opencontainers.image.created",
    "org.label-schema.build-date",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<RawDescriptor>,
    #[serde(default)]
    pub manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDescriptor {
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub platform: Option<RawPlatform>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<RawConfigInner>,
}

#[derive(Deserialize, Default)]
struct RawConfigInner {
    #[serde(default, rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

impl RawManifest {
    /// Whether this is an image index / manifest list.
    pub(crate) fn is_index(&self) -> bool {
        self.manifests.is_some()
            || self
                .media_type
                .as_deref()
                .is_some_and(|m| m.contains("index") || m.contains("manifest.list"))
    }
}

/// An `os/arch[/variant]` platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture (`amd64`).
    pub arch: String,
    /// Variant (`v7`), empty when none.
    pub variant: String,
}

impl Platform {
    /// Parses `os/arch[/variant]`; `None` when malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self {
            os: parts[0].to_owned(),
            arch: parts[1].to_owned(),
            variant: parts.get(2).map_or_else(String::new, |v| (*v).to_owned()),
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.variant.is_empty() {
            write!(f, "{}/{}", self.os, self.arch)
        } else {
            write!(f, "{}/{}/{}", self.os, self.arch, self.variant)
        }
    }
}

/// One platform entry of an index (attestation and `unknown` entries are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub platform: Platform,
    pub annotations: BTreeMap<String, String>,
}

/// What discovery needs to know about one manifest (or index), by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestMeta {
    /// The manifest's (or index's) own annotations.
    pub annotations: BTreeMap<String, String>,
    /// The build time, when known.
    pub created: Option<DateTime<Utc>>,
    /// `Some` for an index: its platform entries.
    pub entries: Option<Vec<IndexEntry>>,
}

/// The first parseable RFC 3339 time among the build-date annotations.
pub(crate) fn annotation_time(annotations: &BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    CREATED_ANNOTATIONS.iter().find_map(|k| {
        annotations
            .get(*k)
            .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The build time of an image config blob: max(`created`, a build-date label).
pub(crate) fn config_time(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let raw: RawConfig = serde_json::from_slice(bytes).ok()?;
    let created = raw
        .created
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c.trim()).ok())
        .map(|t| t.with_timezone(&Utc));
    let label = raw
        .config
        .and_then(|c| c.labels)
        .and_then(|l| annotation_time(&l));
    created.max(label)
}

/// Whether an index entry's platform names a real platform (attestation manifests use
/// `unknown/unknown`).
pub(crate) fn is_real_platform(p: Option<&RawPlatform>) -> Option<Platform> {
    let p = p?;
    let known = |s: &str| !s.is_empty() && s != "unknown";
    (known(&p.os) && known(&p.architecture)).then(|| Platform {
        os: p.os.clone(),
        arch: p.architecture.clone(),
        variant: p.variant.clone().unwrap_or_default(),
    })
}

/// A cached value.
#[derive(Debug, Clone)]
enum Cached {
    /// Manifest or index metadata, keyed by digest.
    Manifest(Arc<ManifestMeta>),
    /// A config blob's build time, keyed by digest.
    Config(Option<DateTime<Utc>>),
    /// The digest a tag had when it was last resolved, keyed by `<repoURL>:<tag>`.
    TagDigest(String),
}

/// The metadata cache of one [`super::ImageSource`]: manifest metadata and config build
/// times keyed by digest (content-addressed, so always valid), and the digest of each
/// `<repoURL>:<tag>` seen (trusted only with `cacheByTag`; otherwise a hint). When full,
/// the oldest entries are dropped first.
#[derive(Debug)]
pub(crate) struct MetaCache {
    max: usize,
    map: HashMap<String, Cached>,
    order: VecDeque<String>,
}

impl MetaCache {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, key: String, value: Cached) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.map.len() > self.max {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    pub(crate) fn manifest(&self, digest: &str) -> Option<Arc<ManifestMeta>> {
        match self.map.get(digest) {
            Some(Cached::Manifest(m)) => Some(m.clone()),
            _ => None,
        }
    }

    pub(crate) fn put_manifest(&mut self, digest: &str, meta: Arc<ManifestMeta>) {
        self.insert(digest.to_owned(), Cached::Manifest(meta));
    }

    pub(crate) fn config(&self, digest: &str) -> Option<Option<DateTime<Utc>>> {
        match self.map.get(digest) {
            Some(Cached::Config(c)) => Some(*c),
            _ => None,
        }
    }

    pub(crate) fn put_config(&mut self, digest: &str, created: Option<DateTime<Utc>>) {
        self.insert(digest.to_owned(), Cached::Config(created));
    }

    pub(crate) fn tag_digest(&self, repo_tag: &str) -> Option<String> {
        match self.map.get(&tag_key(repo_tag)) {
            Some(Cached::TagDigest(d)) => Some(d.clone()),
            _ => None,
        }
    }

    pub(crate) fn put_tag_digest(&mut self, repo_tag: &str, digest: &str) {
        let key = tag_key(repo_tag);
        if let Some(Cached::TagDigest(d)) = self.map.get_mut(&key) {
            digest.clone_into(d);
            return;
        }
        self.insert(key, Cached::TagDigest(digest.to_owned()));
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

fn tag_key(repo_tag: &str) -> String {
    format!("tag:{repo_tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn annotation_time_first_parseable_wins() {
        let a = ann(&[
            ("org.opencontainers.image.created", "yesterday"),
            ("org.label-schema.build-date", "2024-01-02T03:04:05Z"),
        ]);
        assert_eq!(
            annotation_time(&a).unwrap().to_rfc3339(),
            "2024-01-02T03:04:05+00:00"
        );
        let a = ann(&[
            (
                "org.opencontainers.image.created",
                "2025-01-01T00:00:00+01:00",
            ),
            ("org.label-schema.build-date", "2024-01-02T03:04:05Z"),
        ]);
        assert_eq!(
            annotation_time(&a).unwrap().to_rfc3339(),
            "2024-12-31T23:00:00+00:00"
        );
        assert!(annotation_time(&ann(&[])).is_none());
    }

    #[test]
    fn config_time_is_the_max_of_created_and_label() {
        let c = br#"{"created":"2024-01-01T00:00:00Z","config":{"Labels":{"org.label-schema.build-date":"2024-06-01T00:00:00Z"}}}"#;
        assert_eq!(
            config_time(c).unwrap().to_rfc3339(),
            "2024-06-01T00:00:00+00:00"
        );
        let c = br#"{"created":"2024-09-01T00:00:00Z","config":{"Labels":{"org.opencontainers.image.created":"2024-06-01T00:00:00Z"}}}"#;
        assert_eq!(
            config_time(c).unwrap().to_rfc3339(),
            "2024-09-01T00:00:00+00:00"
        );
        assert!(config_time(br#"{"config":{}}"#).is_none());
        assert!(config_time(b"not json").is_none());
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(
            (p.os.as_str(), p.arch.as_str(), p.variant.as_str()),
            ("linux", "arm", "v7")
        );
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(Platform::parse("linux/amd64").unwrap().variant, "");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_none(), "{bad}");
        }
        let unknown = RawPlatform {
            os: "unknown".into(),
            architecture: "unknown".into(),
            variant: None,
        };
        assert!(is_real_platform(Some(&unknown)).is_none());
        assert!(is_real_platform(None).is_none());
    }

    #[test]
    fn cache_evicts_oldest_first() {
        let mut c = MetaCache::new(2);
        c.put_config("sha256:a", None);
        c.put_config("sha256:b", None);
        c.put_tag_digest("r:t", "sha256:x");
        assert_eq!(c.len(), 2);
        assert!(c.config("sha256:a").is_none());
        assert!(c.config("sha256:b").is_some());
        c.put_tag_digest("r:t", "sha256:y");
        assert_eq!(c.tag_digest("r:t").as_deref(), Some("sha256:y"));
        assert_eq!(c.len(), 2);
    }
}
