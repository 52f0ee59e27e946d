//! Several credential providers or secret stores asked in order: an explicit source (a
//! credentials file, an embedder's secret manager) in front of a manifest directory's
//! Secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    CredentialError, CredentialKind, CredentialProvider, Credentials, Redacted, SecretStore,
};

/// Credential providers asked in order; the first that has credentials for a URL wins, and
/// the first error stops the search.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use kargo_core::secret::*;
///
/// let file = CredentialTable::new().with_exact(CredentialKind::Git,
///     "https://git.example.com/a.git", Credentials::basic("from-file", "x"));
/// let dir = CredentialTable::new().with_exact(CredentialKind::Git,
///     "https://git.example.com/a.git", Credentials::basic("from-dir", "y"))
///     .with_exact(CredentialKind::Git, "https://git.example.com/b.git",
///         Credentials::basic("from-dir", "z"));
/// let chain = CredentialChain::new().then(Arc::new(file)).then(Arc::new(dir));
/// let user = |url: &'static str| {
///     let chain = chain.clone();
///     async move { chain.credentials(CredentialKind::Git, url).await.unwrap().unwrap().username }
/// };
/// assert_eq!(user("https://git.example.com/a").await, "from-file");
/// assert_eq!(user("https://git.example.com/b").await, "from-dir");
/// # });
/// ```
#[derive(Clone, Default)]
pub struct CredentialChain {
    providers: Vec<Arc<dyn CredentialProvider>>,
}

impl fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialChain")
            .field("providers", &self.providers.len())
            .finish()
    }
}

impl CredentialChain {
    /// An empty chain (it never has credentials).
    pub fn new() -> Self {
        Self::default()
    }

    /// This chain with `provider` asked after the ones already in it.
    pub fn then(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// How many providers the chain asks.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether the chain has no providers.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[async_trait]
impl CredentialProvider for CredentialChain {
    async fn credentials(
        &self,
        kind: CredentialKind,
        repo_url: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        for p in &self.providers {
            if let Some(c) = p.credentials(kind, repo_url).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// Secret stores asked in order: for each name, the first store that has it wins (a
/// `--secrets` file in front of a manifest directory's Secrets, say).
#[derive(Clone, Default)]
pub struct LayeredSecrets {
    stores: Vec<Arc<dyn SecretStore>>,
}

impl fmt::Debug for LayeredSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayeredSecrets")
            .field("stores", &self.stores.len())
            .finish()
    }
}

impl LayeredSecrets {
    /// No stores (every lookup finds nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// These layers with `store` asked after the ones already in them.
    pub fn then(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.stores.push(store);
        self
    }

    fn first<T>(&self, get: impl Fn(&dyn SecretStore) -> Option<T>) -> Option<T> {
        self.stores.iter().find_map(|s| get(s.as_ref()))
    }
}

impl SecretStore for LayeredSecrets {
    fn secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>> {
        self.first(|s| s.secret(name))
    }

    fn shared_secret(&self, name: &str) -> Option<BTreeMap<String, Redacted<String>>> {
        self.first(|s| s.shared_secret(name))
    }

    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.first(|s| s.config_map(name))
    }

    fn shared_config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.first(|s| s.shared_config_map(name))
    }
}
