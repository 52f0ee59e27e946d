//! Concurrency limits for Warehouse refreshes: one semaphore per registry host and per git
//! repository, plus an overall cap, so a burst of due Warehouses never sends more than a
//! few requests at once to one registry or runs two fetches of one repository.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kargo_core::freight::{normalize_chart_repo, normalize_git_url, normalize_image_repo};
use kargo_core::model::{SubscriptionSource, Warehouse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a Warehouse's refresh talks to: `registry:<host>` for images and charts,
/// `git:<normalised URL>` for git subscriptions (generic subscriptions: nothing).
pub fn resource_keys(warehouse: &Warehouse) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for sub in &warehouse.spec.subscriptions {
        match &sub.source {
            SubscriptionSource::Image(i) => {
                keys.insert(format!("registry:{}", image_host(&i.repo_url)));
            }
            SubscriptionSource::Chart(c) => {
                let repo = normalize_chart_repo(&c.repo_url);
                let rest = repo
                    .split_once("://")
                    .map_or(repo.as_str(), |(_, rest)| rest);
                let host = rest.split('/').next().unwrap_or(rest);
                keys.insert(format!("registry:{}", host.to_ascii_lowercase()));
            }
            SubscriptionSource::Git(g) => {
                keys.insert(format!("git:{}", normalize_git_url(&g.repo_url)));
            }
            _ => {}
        }
    }
    keys
}

/// The registry host of an image repository (`docker.io` for Docker Hub short names).
fn image_host(repo: &str) -> String {
    let repo = normalize_image_repo(repo);
    match repo.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".to_owned(),
    }
}

/// Held while a refresh runs; dropping it frees its places.
#[derive(Debug)]
pub struct Permits {
    _overall: OwnedSemaphorePermit,
    _resources: Vec<OwnedSemaphorePermit>,
}

/// The semaphores (see the module documentation).
#[derive(Debug)]
pub struct RefreshLimits {
    overall: Arc<Semaphore>,
    per_registry: usize,
    per_repository: usize,
    by_key: Mutex<BTreeMap<String, Arc<Semaphore>>>,
}

impl RefreshLimits {
    /// At most `overall` refreshes at once, `per_registry` per registry host and
    /// `per_repository` per git repository (each at least 1).
    pub fn new(overall: usize, per_registry: usize, per_repository: usize) -> Self {
        Self {
            overall: Arc::new(Semaphore::new(overall.max(1))),
            per_registry: per_registry.max(1),
            per_repository: per_repository.max(1),
            by_key: Mutex::new(BTreeMap::new()),
        }
    }

    fn semaphore(&self, key: &str) -> Arc<Semaphore> {
        let mut map = self
            .by_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key.to_owned())
            .or_insert_with(|| {
                let size = if key.starts_with("git:") {
                    self.per_repository
                } else {
                    self.per_registry
                };
                Arc::new(Semaphore::new(size))
            })
            .clone()
    }

    /// Waits for a place for every key (in sorted order, so two refreshes can never hold
    /// each other's places), then for an overall place.
    pub async fn acquire(&self, keys: &BTreeSet<String>) -> Permits {
        let mut resources = Vec::with_capacity(keys.len());
        for key in keys {
            // The semaphores are never closed, so acquiring cannot fail.
            if let Ok(p) = self.semaphore(key).acquire_owned().await {
                resources.push(p);
            }
        }
        let overall = loop {
            if let Ok(p) = self.overall.clone().acquire_owned().await {
                break p;
            }
        };
        Permits {
            _overall: overall,
            _resources: resources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_hosts_default_to_docker_hub() {
        assert_eq!(image_host("nginx"), "docker.io");
        assert_eq!(image_host("library/nginx"), "docker.io");
        assert_eq!(image_host("ghcr.io/acme/app"), "ghcr.io");
        assert_eq!(image_host("localhost:5000/app"), "localhost:5000");
    }
}
