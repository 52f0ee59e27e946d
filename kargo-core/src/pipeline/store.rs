//! Persistence of [`ProjectState`]: the [`StateStore`] trait with optimistic concurrency
//! (every write names the revision it read) and an in-memory store; the directory store is
//! [`FileStore`](super::FileStore).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::{ProjectState, STATE_FORMAT};
use crate::runner::PromotionProgress;
use async_trait::async_trait;

/// A state's revision: 0 for a project never written, then one more per write.
pub type Revision = u64;

/// The right to run one Stage's promotions, held by one runner at a time (see
/// [`StateStore::try_lease`]); released when dropped, and by the operating system when the
/// process holding it dies.
pub struct StageLease {
    _held: Box<dyn Send + Sync>,
    fence: Option<Fence>,
}

impl StageLease {
    /// A lease that holds `guard` (released when the guard is dropped); for
    /// [`StateStore::try_lease`] implementations. It carries no fencing token until
    /// [`StateStore::acquire_lease`] gives it one.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(guard),
            fence: None,
        }
    }

    /// A lease that holds `guard` and was granted with `fence`: for backends that keep
    /// their own fencing tokens (a database's lease table).
    pub fn fenced(guard: impl Send + Sync + 'static, fence: Fence) -> Self {
        Self {
            _held: Box::new(guard),
            fence: Some(fence),
        }
    }

    /// The fencing token this lease was granted with ([`StateStore::acquire_lease`]).
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }
}

impl std::fmt::Debug for StageLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageLease")
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

/// A fencing token: which grant of a Stage's lease a writer holds. Every grant gets a
/// higher token (kept in the state, in [`ProjectState::fences`]), and a write made under
/// a lease ([`StateStore::update_fenced`]) is refused once a later grant exists, so a
/// holder that stalled past its lease and woke up cannot overwrite its successor's work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The project.
    pub project: String,
    /// The Stage.
    pub stage: String,
    /// The grant's token.
    pub token: u64,
}

/// A lease in this process's table of held keys; removes its key when dropped.
struct ProcessLease(String);

impl Drop for ProcessLease {
    fn drop(&mut self) {
        held_leases().remove(&self.0);
    }
}

fn held_leases() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    static HELD: Mutex<std::collections::BTreeSet<String>> =
        Mutex::new(std::collections::BTreeSet::new());
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes `key` in this process's lease table, unless it is held.
fn process_lease(key: String) -> Option<StageLease> {
    if !held_leases().insert(key.clone()) {
        return None;
    }
    Some(StageLease::new(ProcessLease(key)))
}

/// [`StateError::StaleLease`] unless `fence` is the latest grant recorded in `state`.
pub(crate) fn check_fence(state: &ProjectState, fence: &Fence) -> Result<(), StateError> {
    let current = state.fences.get(&fence.stage).copied().unwrap_or(0);
    if current == fence.token {
        Ok(())
    } else {
        Err(StateError::StaleLease {
            project: fence.project.clone(),
            stage: fence.stage.clone(),
            token: fence.token,
            current,
        })
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Someone else wrote the state since it was read.
    #[error(
        "state of project {project:?} changed since it was read (revision {expected} expected, {actual} found)"
    )]
    Conflict {
        /// The project.
        project: String,
        /// The revision the writer read.
        expected: Revision,
        /// The revision found.
        actual: Revision,
    },
    /// The stored state cannot be parsed (`path`: the file, or the database and record).
    #[error("state {path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The project name cannot be a file name.
    #[error("invalid project name {0:?}: expected letters, digits, '-', '_' or '.'")]
    InvalidProject(String),
    /// A file system error.
    #[error("state {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An update closure gave up.
    #[error("{0}")]
    Aborted(String),
    /// The store's backend (a database) cannot be reached or refused the request.
    /// `store` names it without credentials.
    #[error("state store {store}: {message}")]
    Backend {
        /// The store (for a database: its URL without the password).
        store: String,
        /// What went wrong.
        message: String,
    },
    /// A write under a Stage's lease whose token is no longer the latest grant: another
    /// runner took the lease over.
    #[error(
        "stale lease on Stage {stage:?} of project {project:?}: token {token}, but the lease was granted again (token {current}); the write is refused"
    )]
    StaleLease {
        /// The project.
        project: String,
        /// The Stage.
        stage: String,
        /// The writer's token.
        token: u64,
        /// The latest grant's token.
        current: u64,
    },
}

/// Where pipeline state lives. Reads are consistent snapshots; a write succeeds only if
/// the state is still at the revision the writer read ([`StateError::Conflict`] otherwise),
/// and is all-or-nothing. Implementations must be safe to share between threads; the
/// file store is also safe between processes.
///
/// The trait is async and object-safe (`Arc<dyn StateStore>`), so a backend may talk to a
/// database without blocking the runtime.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The project's state and its revision (an empty state at revision 0 if none).
    async fn load(&self, project: &str) -> Result<(ProjectState, Revision), StateError>;

    /// Writes `state` if the stored revision is still `expected`; returns the new revision.
    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: Revision,
    ) -> Result<Revision, StateError>;

    /// Tries to take the lease on running `stage`'s promotions: `Ok(None)` when another
    /// runner holds it. A promotion the state shows as running while its Stage's lease is
    /// free was left by a runner that is gone (its process was killed, or the future
    /// running it was dropped), so the lease holder may resume it.
    ///
    /// The default is a lease within this process, per store value: right for stores that
    /// only one process uses. Stores shared between processes must override it with a
    /// lease that a dying process gives up (the file store uses an OS file lock).
    async fn try_lease(
        &self,
        project: &str,
        stage: &str,
    ) -> Result<Option<StageLease>, StateError> {
        let store = std::ptr::from_ref(self).cast::<()>() as usize;
        Ok(process_lease(format!("{store:x}/{project}/{stage}")))
    }

    /// [`try_lease`](Self::try_lease), and on success a new fencing token: the Stage's
    /// counter in [`ProjectState::fences`] goes up by one (a write of the state), and the
    /// lease carries it ([`StageLease::fence`]).
    ///
    /// `ttl` is how long the lease lasts unless renewed ([`renew_lease`](Self::renew_lease)),
    /// for stores whose leases expire ([`leases_expire`](Self::leases_expire)); others hold
    /// it until it is dropped or its process dies. `name` is a Stage's name, or any other
    /// name a runner needs exclusively (the service uses `warehouse:<name>`).
    async fn acquire_lease(
        &self,
        project: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<StageLease>, StateError> {
        let _ = ttl;
        let Some(mut lease) = self.try_lease(project, name).await? else {
            return Ok(None);
        };
        let mut token = 0;
        self.update(project, &mut |state| {
            let t = state.fences.entry(name.to_owned()).or_insert(0);
            *t += 1;
            token = *t;
            Ok(())
        })
        .await?;
        lease.fence = Some(Fence {
            project: project.to_owned(),
            stage: name.to_owned(),
            token,
        });
        Ok(Some(lease))
    }

    /// Extends the lease granted with `fence` to `ttl` from now. Refused with
    /// [`StateError::StaleLease`] when the lease was granted again since (the holder
    /// stalled past its time limit and must stop).
    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<(), StateError> {
        let _ = ttl;
        let (state, _) = self.load(&fence.project).await?;
        check_fence(&state, fence)
    }

    /// A receiver whose value changes whenever the store hears of a write to any
    /// project, by this process or another (a database's notifications), so a service
    /// loop wakes at once instead of at its next poll; `None` (the default) when the store
    /// cannot tell, and the loop polls.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The project's current revision when the store can tell without reading the state
    /// (an in-memory store); `None` (the default) otherwise. Lets a reader reuse the state
    /// it read last while nothing was written ([`ObservedStore::snapshot`]).
    ///
    /// [`ObservedStore::snapshot`]: super::ObservedStore::snapshot
    fn revision_now(&self, project: &str) -> Option<Revision> {
        let _ = project;
        None
    }

    /// Whether this store's leases expire when not renewed (a database's), rather than
    /// lasting until dropped or until their process dies (an OS file lock).
    fn leases_expire(&self) -> bool {
        false
    }

    /// [`update`](Self::update) under a lease: refused with [`StateError::StaleLease`]
    /// (nothing written) when the Stage's lease was granted again after `fence`.
    async fn update_fenced(
        &self,
        fence: &Fence,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        self.update(&fence.project, &mut |state| {
            check_fence(state, fence)?;
            change(state)
        })
        .await
    }

    /// Records one promotion's progress (`None`: removes it) under a lease: the write a
    /// runner makes after every step ([`ProjectState::progress`]). Refused with
    /// [`StateError::StaleLease`] like [`update_fenced`](Self::update_fenced), which the
    /// default uses; a store with records of its own writes that one record only.
    async fn put_progress(
        &self,
        fence: &Fence,
        promotion: &str,
        progress: Option<&PromotionProgress>,
    ) -> Result<(), StateError> {
        self.update_fenced(fence, &mut |state| {
            match progress {
                Some(p) => {
                    state.progress.insert(promotion.to_owned(), p.clone());
                }
                None => {
                    state.progress.remove(promotion);
                }
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Reads, applies `change` and writes, retrying on conflicts (at most 16 times).
    /// `change` may run more than once and must not have other side effects.
    async fn update(
        &self,
        project: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        let mut attempt = 0;
        loop {
            let (mut state, rev) = self.load(project).await?;
            change(&mut state)?;
            match self.store(project, &state, rev).await {
                Ok(_) => return Ok(state),
                Err(StateError::Conflict { .. }) if attempt < 15 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// State in memory (tests, examples, embedders that persist elsewhere).
#[derive(Debug, Default)]
pub struct MemoryStore {
    projects: Mutex<HashMap<String, (ProjectState, Revision)>>,
    leases: LeaseTable,
}

/// The memory store's leases: (project, name) to the grant holding it.
type LeaseTable = Arc<Mutex<HashMap<(String, String), MemoryLease>>>;

/// One grant of a memory store lease.
#[derive(Debug, Clone, Copy)]
struct MemoryLease {
    /// Identifies the grant (unique in the process), so a dropped guard frees only its own.
    grant: u64,
    /// The fencing token it was granted with (0 for [`StateStore::try_lease`]).
    token: u64,
    /// When it expires unless renewed; `None`: when dropped.
    expires: Option<Instant>,
}

impl MemoryLease {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// Frees a memory store lease when dropped, unless it was granted again meanwhile.
struct MemoryLeaseGuard {
    table: LeaseTable,
    key: (String, String),
    grant: u64,
}

impl Drop for MemoryLeaseGuard {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.get(&self.key).is_some_and(|l| l.grant == self.grant) {
            table.remove(&self.key);
        }
    }
}

fn next_grant() -> u64 {
    static GRANTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GRANTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The project's state and revision, read without awaiting (the store is in memory):
    /// for test harnesses and synchronous callers.
    pub fn snapshot(&self, project: &str) -> (ProjectState, Revision) {
        let map = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        map.get(project).cloned().unwrap_or_else(|| {
            (
                ProjectState {
                    format: STATE_FORMAT,
                    ..Default::default()
                },
                0,
            )
        })
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn load(&self, project: &str) -> Result<(ProjectState, Revision), StateError> {
        Ok(self.snapshot(project))
    }

    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: Revision,
    ) -> Result<Revision, StateError> {
        let mut map = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let actual = map.get(project).map_or(0, |(_, r)| *r);
        if actual != expected {
            return Err(StateError::Conflict {
                project: project.to_owned(),
                expected,
                actual,
            });
        }
        let mut s = state.clone();
        s.format = STATE_FORMAT;
        map.insert(project.to_owned(), (s, actual + 1));
        Ok(actual + 1)
    }

    async fn try_lease(&self, project: &str, name: &str) -> Result<Option<StageLease>, StateError> {
        Ok(self.grant(project, name, None))
    }

    /// Grants an expiring lease: another runner may take it once `ttl` has passed
    /// without a renewal, and the fencing token then refuses the first holder's writes.
    async fn acquire_lease(
        &self,
        project: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<StageLease>, StateError> {
        Ok(self.grant(project, name, Some(ttl)))
    }

    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<(), StateError> {
        let mut table = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let key = (fence.project.clone(), fence.stage.clone());
        match table.get_mut(&key) {
            Some(lease) if lease.token == fence.token => {
                lease.expires = Some(Instant::now() + ttl);
                Ok(())
            }
            _ => {
                drop(table);
                let (state, _) = self.snapshot(&fence.project);
                check_fence(&state, fence)?;
                // Dropped, expired and not granted again: the holder lost it all the same.
                Err(StateError::StaleLease {
                    project: fence.project.clone(),
                    stage: fence.stage.clone(),
                    token: fence.token,
                    current: fence.token,
                })
            }
        }
    }

    fn revision_now(&self, project: &str) -> Option<Revision> {
        let map = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        Some(map.get(project).map_or(0, |(_, rev)| *rev))
    }

    fn leases_expire(&self) -> bool {
        true
    }
}

impl MemoryStore {
    /// Grants `name`'s lease unless a live grant holds it; with `ttl`, a fenced grant
    /// (the token in [`ProjectState::fences`] goes up, a write of the state) that expires.
    fn grant(&self, project: &str, name: &str, ttl: Option<Duration>) -> Option<StageLease> {
        let now = Instant::now();
        let key = (project.to_owned(), name.to_owned());
        let mut table = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if table.get(&key).is_some_and(|l| l.live(now)) {
            return None;
        }
        let grant = next_grant();
        let mut token = 0;
        if ttl.is_some() {
            let mut projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
            let entry = projects.entry(project.to_owned()).or_insert_with(|| {
                (
                    ProjectState {
                        format: STATE_FORMAT,
                        ..Default::default()
                    },
                    0,
                )
            });
            let t = entry.0.fences.entry(name.to_owned()).or_insert(0);
            *t += 1;
            token = *t;
            entry.1 += 1;
        }
        table.insert(
            key.clone(),
            MemoryLease {
                grant,
                token,
                expires: ttl.map(|t| now + t),
            },
        );
        let guard = MemoryLeaseGuard {
            table: self.leases.clone(),
            key,
            grant,
        };
        Some(match ttl {
            Some(_) => StageLease::fenced(
                guard,
                Fence {
                    project: project.to_owned(),
                    stage: name.to_owned(),
                    token,
                },
            ),
            None => StageLease::new(guard),
        })
    }
}
