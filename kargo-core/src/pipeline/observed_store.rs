//! A [`StateStore`] that tells when it was written: every write through it (this
//! process's) moves a counter, and [`ChangeFeed`] waits for either that or the inner
//! store's own notifications (another replica's writes, on a database store). What the
//! live views of a UI wait on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Fence, ProjectState, Revision, StageLease, StateError, StateStore};
use crate::runner::PromotionProgress;

/// Wraps a store; every method is the inner store's, and each successful write moves
/// the counter [`ObservedStore::feed`] watches.
pub struct ObservedStore {
    inner: Arc<dyn StateStore>,
    writes: watch::Sender<u64>,
    /// The inner store's notifications, read to tell whether a kept snapshot is current.
    remote: Option<watch::Receiver<u64>>,
    /// The state read last, shared by readers until the store changes.
    kept: std::sync::Mutex<Option<Kept>>,
}

/// A snapshot and what it was read at.
struct Kept {
    project: String,
    at: SnapshotKey,
    state: Arc<ProjectState>,
}

/// What a snapshot is current for: the store's revision, or the write and notification
/// counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotKey {
    Revision(Revision),
    Counters(u64, u64),
}

impl std::fmt::Debug for ObservedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStore")
            .field("writes", &*self.writes.borrow())
            .finish_non_exhaustive()
    }
}

impl ObservedStore {
    /// `inner`, observed.
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        let remote = inner.changes();
        Self {
            inner,
            writes: watch::channel(0).0,
            remote,
            kept: std::sync::Mutex::new(None),
        }
    }

    /// A feed of this store's changes: writes through it and the inner store's
    /// notifications.
    pub fn feed(&self) -> ChangeFeed {
        ChangeFeed {
            local: self.writes.subscribe(),
            remote: self.inner.changes(),
        }
    }

    /// The project's state, shared: the one read last when the store has not changed
    /// since (an in-memory store's revision says so; a store with notifications says so
    /// through them and this wrapper's own writes), else read now. A store that can tell
    /// neither (a file shared by processes) is read every time. Readers that only look
    /// (pages, API reads, live views) share one copy instead of cloning the state each.
    pub async fn snapshot(&self, project: &str) -> Result<Arc<ProjectState>, StateError> {
        // Read the key before the state: a write in between makes the next call read again.
        let key = match (self.inner.revision_now(project), &self.remote) {
            (Some(rev), _) => Some(SnapshotKey::Revision(rev)),
            (None, Some(remote)) => Some(SnapshotKey::Counters(
                *self.writes.borrow(),
                *remote.borrow(),
            )),
            (None, None) => None,
        };
        if let Some(key) = key {
            let kept = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(k) = kept
                .as_ref()
                .filter(|k| k.project == project && k.at == key)
            {
                return Ok(k.state.clone());
            }
        }
        let (state, rev) = self.inner.load(project).await?;
        let state = Arc::new(state);
        // A revision read with the state is exact; counters are the ones read before.
        let at = match key {
            Some(SnapshotKey::Revision(_)) => Some(SnapshotKey::Revision(rev)),
            other => other,
        };
        if let Some(at) = at {
            *self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Kept {
                project: project.to_owned(),
                at,
                state: state.clone(),
            });
        }
        Ok(state)
    }

    fn written(&self) {
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Waits for a store's next change (see [`ObservedStore::feed`]). A clone waits for
/// changes after the moment it was made.
#[derive(Debug)]
pub struct ChangeFeed {
    local: watch::Receiver<u64>,
    remote: Option<watch::Receiver<u64>>,
}

impl Clone for ChangeFeed {
    fn clone(&self) -> Self {
        let mut local = self.local.clone();
        local.mark_unchanged();
        let remote = self.remote.clone().map(|mut r| {
            r.mark_unchanged();
            r
        });
        Self { local, remote }
    }
}

impl ChangeFeed {
    /// Returns when the store changed since the last call (or since the feed was made);
    /// `false` once no more changes can come (the store was dropped).
    pub async fn changed(&mut self) -> bool {
        match &mut self.remote {
            Some(remote) => tokio::select! {
                r = self.local.changed() => r.is_ok(),
                r = remote.changed() => r.is_ok() || self.local.changed().await.is_ok(),
            },
            None => self.local.changed().await.is_ok(),
        }
    }
}

#[async_trait]
impl StateStore for ObservedStore {
    async fn load(&self, project: &str) -> Result<(ProjectState, Revision), StateError> {
        self.inner.load(project).await
    }

    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: Revision,
    ) -> Result<Revision, StateError> {
        let r = self.inner.store(project, state, expected).await;
        if r.is_ok() {
            self.written();
        }
        r
    }

    async fn try_lease(
        &self,
        project: &str,
        stage: &str,
    ) -> Result<Option<StageLease>, StateError> {
        self.inner.try_lease(project, stage).await
    }

    async fn acquire_lease(
        &self,
        project: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<StageLease>, StateError> {
        self.inner.acquire_lease(project, name, ttl).await
    }

    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<(), StateError> {
        self.inner.renew_lease(fence, ttl).await
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        self.inner.changes()
    }

    fn leases_expire(&self) -> bool {
        self.inner.leases_expire()
    }

    fn revision_now(&self, project: &str) -> Option<Revision> {
        self.inner.revision_now(project)
    }

    async fn update_fenced(
        &self,
        fence: &Fence,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        let r = self.inner.update_fenced(fence, change).await;
        if r.is_ok() {
            self.written();
        }
        r
    }

    async fn put_progress(
        &self,
        fence: &Fence,
        promotion: &str,
        progress: Option<&PromotionProgress>,
    ) -> Result<(), StateError> {
        let r = self.inner.put_progress(fence, promotion, progress).await;
        if r.is_ok() {
            self.written();
        }
        r
    }

    async fn update(
        &self,
        project: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        let r = self.inner.update(project, change).await;
        if r.is_ok() {
            self.written();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::pipeline::MemoryStore;

    #[tokio::test]
    async fn writes_move_the_feed_and_reads_do_not() {
        let store = ObservedStore::new(Arc::new(MemoryStore::new()));
        let mut feed = store.feed();
        store.load("p").await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(50), feed.changed()).await;
        assert!(waited.is_err(), "a read is not a change");
        store
            .update("p", &mut |s| {
                s.fences.insert("x".into(), 1);
                Ok(())
            })
            .await
            .unwrap();
        assert!(feed.changed().await);
        // A refused write is not a change either.
        let refused = store
            .update("p", &mut |_| Err(StateError::Aborted("no".into())))
            .await;
        assert!(refused.is_err());
        let waited = tokio::time::timeout(Duration::from_millis(50), feed.changed()).await;
        assert!(waited.is_err(), "a refused write is not a change");
    }

    #[tokio::test]
    async fn snapshots_are_shared_until_the_store_changes() {
        let memory = Arc::new(MemoryStore::new());
        let store = ObservedStore::new(memory.clone());
        let a = store.snapshot("p").await.unwrap();
        let b = store.snapshot("p").await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "nothing changed: the same copy");
        // A write through another handle of the same memory store (another controller)
        // is seen: the revision moved.
        memory
            .update("p", &mut |s| {
                s.fences.insert("x".into(), 1);
                Ok(())
            })
            .await
            .unwrap();
        let c = store.snapshot("p").await.unwrap();
        assert!(!Arc::ptr_eq(&b, &c));
        assert_eq!(c.fences.get("x"), Some(&1));
        // Another project is not this one's snapshot.
        let other = store.snapshot("q").await.unwrap();
        assert!(other.fences.is_empty());
        let again = store.snapshot("p").await.unwrap();
        assert_eq!(again.fences.get("x"), Some(&1));
    }
}
