//! A PostgreSQL [`StateStore`] for kargo-rs, shared by several replicas of a promoter.
//!
//! - **Records of their own.** A project's state is stored as one row per Freight, per
//!   Stage, per Warehouse, per finished promotion, per promotion in progress (see
//!   [`kargo_core::pipeline::records`]), each with its own revision.
//!   [`StateStore::update`] writes only the rows its change touched, each guarded by the
//!   revision it read, so a promotion's progress does not rewrite the Warehouse's
//!   Freight, and writers of different records never conflict. [`StateStore::store`] keeps the whole-state compare-and-swap on the
//!   project's revision.
//! - **Leases** live in their own table with a time limit (the database's clock), a
//!   fencing token per grant, renewal, and a write under a superseded token refused in
//!   the write's own transaction.
//! - **Notifications**: every write sends `NOTIFY kargo_state` with the project's name;
//!   [`PostgresStore::changes`] turns them into a wake-up for the service loop.
//! - **Migrations** are embedded and applied by [`PostgresStore::connect`]; a schema
//!   from a newer version is refused before anything is written.
//!
//! Errors name the database as `postgres://user@host:port/dbname`, never with its
//! password.

mod lease;
mod listen;
mod schema;
mod target;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use kargo_core::pipeline::{
    Fence, ProjectState, Revision, STATE_FORMAT, StageLease, StateError, StateStore,
};
use kargo_core::runner::PromotionProgress;
use tokio_postgres::NoTls;

use kargo_core::pipeline::records::{self, Change, RecordId, StoredRecord};
pub use schema::{SCHEMA_VERSION, SchemaError};

/// How a [`PostgresStore`] connects.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in the pool (default 8).
    pub pool_size: usize,
    /// How long to wait for a connection to open (default 10 s).
    pub connect_timeout: Duration,
    /// Who holds the leases this store takes, as shown in the lease table (default: the
    /// process ID and a random suffix).
    pub holder: String,
    /// How long the server lets a session of this store sit inside a transaction without
    /// a word from it before ending the session (PostgreSQL's
    /// `idle_in_transaction_session_timeout`; default 10 s). A replica that stalls in
    /// the middle of a write (a long GC pause, SIGSTOP) thus releases its row locks, and
    /// the other replicas go on; its write fails when it wakes.
    pub stalled_transaction_timeout: Duration,
    /// How long a write waits for a row another session has locked before failing and
    /// being retried later (`lock_timeout`; default 15 s).
    pub lock_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            holder: format!("pid-{}-{:x}", std::process::id(), rand_suffix()),
            stalled_transaction_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(15),
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// Writes retried on a conflict before [`StateError::Conflict`] is returned.
const MAX_ATTEMPTS: u32 = 32;

/// Project state in PostgreSQL (see the crate documentation).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The database, as errors name it (no password).
    name: String,
    holder: String,
    changes: listen::Changes,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.name)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/dbname`, or any form
    /// tokio-postgres accepts), checks that the server answers, applies the embedded
    /// migrations (or refuses a newer schema: [`StateError::Backend`], nothing written),
    /// and starts listening for other replicas' writes.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StateError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StateError::Backend {
            store: target::describe_unparsed(url),
            message: format!("not a PostgreSQL connection string: {e}"),
        })?;
        config.connect_timeout(options.connect_timeout);
        let session = format!(
            "-c idle_in_transaction_session_timeout={} -c lock_timeout={}",
            options.stalled_transaction_timeout.as_millis().max(1),
            options.lock_timeout.as_millis().max(1),
        );
        let session = match config.get_options() {
            Some(user) if !user.is_empty() => format!("{user} {session}"),
            _ => session,
        };
        config.options(&session);
        if config.get_application_name().is_none() {
            config.application_name("kargo");
        }
        let name = target::describe(&config);
        let backend = |message: String| StateError::Backend {
            store: name.clone(),
            message,
        };
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| backend(format!("cannot build the connection pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| backend(target::pool_error(&e)))?;
        schema::migrate(&mut client)
            .await
            .map_err(|e| backend(target::schema_error(&e)))?;
        drop(client);
        let changes = listen::Changes::start(config, name.clone());
        tracing::info!(database = %name, schema = SCHEMA_VERSION, "PostgreSQL state store ready");
        Ok(Self {
            pool,
            name,
            holder: options.holder,
            changes,
        })
    }

    /// The database, as errors name it (no password).
    pub fn database(&self) -> &str {
        &self.name
    }

    /// A receiver whose value changes whenever any replica writes a project's state
    /// (PostgreSQL `LISTEN kargo_state`); the service loop wakes on it instead of waiting
    /// for its next poll. The value is a count, not a project.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn backend(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Backend {
            store: self.name.clone(),
            message: e.to_string(),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.pool.get().await.map_err(|e| StateError::Backend {
            store: self.name.clone(),
            message: target::pool_error(&e),
        })
    }

    fn describe_record(&self, project: &str) -> impl Fn(&RecordId) -> String + '_ {
        let project = project.to_owned();
        move |(kind, key)| {
            if kind.is_empty() {
                format!("{}, project {project:?}", self.name)
            } else {
                format!("{}, project {project:?}, record {kind}/{key}", self.name)
            }
        }
    }

    async fn read_records(
        &self,
        client: &impl GenericClient,
        project: &str,
    ) -> Result<BTreeMap<RecordId, StoredRecord>, StateError> {
        let rows = client
            .query(
                "SELECT kind, key, seq, revision, body FROM kargo_records WHERE project = $1",
                &[&project],
            )
            .await
            .map_err(|e| self.backend(e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    (r.get::<_, String>(0), r.get::<_, String>(1)),
                    StoredRecord {
                        seq: r.get(2),
                        revision: r.get(3),
                        body: r.get(4),
                    },
                )
            })
            .collect())
    }

    fn assemble(
        &self,
        project: &str,
        records: &BTreeMap<RecordId, StoredRecord>,
    ) -> Result<ProjectState, StateError> {
        let mut state = records::assemble(records, &self.describe_record(project))?;
        if state.format > STATE_FORMAT {
            return Err(StateError::Corrupt {
                path: self.describe_record(project)(&(String::new(), String::new())),
                message: format!(
                    "written in format {} by a newer version (this one reads up to {STATE_FORMAT})",
                    state.format
                ),
            });
        }
        state.format = STATE_FORMAT;
        Ok(state)
    }

    /// Applies `changes` in `tx`, each guarded by its revision: `Ok(false)` when one of
    /// them lost a race (the caller rolls back and retries).
    async fn apply(
        &self,
        tx: &impl GenericClient,
        project: &str,
        changes: &[Change],
    ) -> Result<bool, StateError> {
        for change in changes {
            let n = match change {
                Change::Insert { id, seq, body } => {
                    tx.execute(
                        "INSERT INTO kargo_records (project, kind, key, seq, revision, body)
                         VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT DO NOTHING",
                        &[&project, &id.0, &id.1, seq, body],
                    )
                    .await
                }
                Change::Update { id, revision, body } => {
                    tx.execute(
                        "UPDATE kargo_records SET body = $5, revision = revision + 1
                         WHERE project = $1 AND kind = $2 AND key = $3 AND revision = $4",
                        &[&project, &id.0, &id.1, revision, body],
                    )
                    .await
                }
                Change::Delete { id, revision } => {
                    tx.execute(
                        "DELETE FROM kargo_records
                         WHERE project = $1 AND kind = $2 AND key = $3 AND revision = $4",
                        &[&project, &id.0, &id.1, revision],
                    )
                    .await
                }
            }
            .map_err(|e| self.backend(e))?;
            if n != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts a write in the project's revision and tells the other replicas.
    async fn bump(&self, tx: &impl GenericClient, project: &str) -> Result<i64, StateError> {
        let revision: i64 = tx
            .query_one(
                "INSERT INTO kargo_projects AS p (project, revision) VALUES ($1, 1)
                 ON CONFLICT (project) DO UPDATE SET revision = p.revision + 1
                 RETURNING revision",
                &[&project],
            )
            .await
            .map_err(|e| self.backend(e))?
            .get(0);
        tx.execute("SELECT pg_notify('kargo_state', $1)", &[&project])
            .await
            .map_err(|e| self.backend(e))?;
        Ok(revision)
    }

    /// One read-change-write under per-record revisions, retried on a lost race; with
    /// `fence`, refused when the lease was granted again.
    async fn update_records(
        &self,
        project: &str,
        fence: Option<&Fence>,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        let mut client = self.client().await?;
        for attempt in 1..=MAX_ATTEMPTS {
            let tx = client.transaction().await.map_err(|e| self.backend(e))?;
            if let Some(fence) = fence {
                lease::check(&tx, fence)
                    .await
                    .map_err(|e| self.backend(e))??;
            }
            let old = self.read_records(&tx, project).await?;
            let mut state = self.assemble(project, &old)?;
            change(&mut state)?;
            let changes = records::diff(&old, &records::split(&state)?);
            if changes.is_empty() {
                tx.rollback().await.map_err(|e| self.backend(e))?;
                return Ok(state);
            }
            if self.apply(&tx, project, &changes).await? {
                self.bump(&tx, project).await?;
                tx.commit().await.map_err(|e| self.backend(e))?;
                return Ok(state);
            }
            tx.rollback().await.map_err(|e| self.backend(e))?;
            tracing::debug!(
                project,
                attempt,
                "a record changed under the write; retrying"
            );
            tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)))).await;
        }
        Err(StateError::Conflict {
            project: project.to_owned(),
            expected: 0,
            actual: 0,
        })
    }
}

#[async_trait]
impl StateStore for PostgresStore {
    async fn load(&self, project: &str) -> Result<(ProjectState, Revision), StateError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.backend(e))?;
        let revision: i64 = tx
            .query_opt(
                "SELECT revision FROM kargo_projects WHERE project = $1",
                &[&project],
            )
            .await
            .map_err(|e| self.backend(e))?
            .map_or(0, |r| r.get(0));
        let records = self.read_records(&tx, project).await?;
        tx.commit().await.map_err(|e| self.backend(e))?;
        let state = self.assemble(project, &records)?;
        Ok((state, u64::try_from(revision).unwrap_or(0)))
    }

    async fn store(
        &self,
        project: &str,
        state: &ProjectState,
        expected: Revision,
    ) -> Result<Revision, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.backend(e))?;
        // The project's row, locked: whole-state writers take turns here.
        tx.execute(
            "INSERT INTO kargo_projects (project, revision) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            &[&project],
        )
        .await
        .map_err(|e| self.backend(e))?;
        let actual: i64 = tx
            .query_one(
                "SELECT revision FROM kargo_projects WHERE project = $1 FOR UPDATE",
                &[&project],
            )
            .await
            .map_err(|e| self.backend(e))?
            .get(0);
        let actual = u64::try_from(actual).unwrap_or(0);
        if actual != expected {
            tx.rollback().await.map_err(|e| self.backend(e))?;
            return Err(StateError::Conflict {
                project: project.to_owned(),
                expected,
                actual,
            });
        }
        let old = self.read_records(&tx, project).await?;
        let mut s = state.clone();
        s.format = STATE_FORMAT;
        let changes = records::diff(&old, &records::split(&s)?);
        if !self.apply(&tx, project, &changes).await? {
            tx.rollback().await.map_err(|e| self.backend(e))?;
            return Err(StateError::Conflict {
                project: project.to_owned(),
                expected,
                actual: expected + 1,
            });
        }
        let revision = self.bump(&tx, project).await?;
        tx.commit().await.map_err(|e| self.backend(e))?;
        Ok(u64::try_from(revision).unwrap_or(0))
    }

    async fn update(
        &self,
        project: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        self.update_records(project, None, change).await
    }

    async fn update_fenced(
        &self,
        fence: &Fence,
        change: &mut (dyn for<'s> FnMut(&'s mut ProjectState) -> Result<(), StateError> + Send),
    ) -> Result<ProjectState, StateError> {
        self.update_records(&fence.project, Some(fence), change)
            .await
    }

    /// A lease for [`DEFAULT_TRY_LEASE_TTL`] (a database cannot see its holder die; the
    /// time limit frees it).
    async fn try_lease(&self, project: &str, name: &str) -> Result<Option<StageLease>, StateError> {
        self.acquire_lease(project, name, DEFAULT_TRY_LEASE_TTL)
            .await
    }

    async fn acquire_lease(
        &self,
        project: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<StageLease>, StateError> {
        let client = self.client().await?;
        let Some(token) = lease::acquire(&client, project, name, &self.holder, ttl)
            .await
            .map_err(|e| self.backend(e))?
        else {
            return Ok(None);
        };
        let fence = Fence {
            project: project.to_owned(),
            stage: name.to_owned(),
            token: u64::try_from(token).unwrap_or(0),
        };
        tracing::debug!(project, lease = name, token, "lease granted");
        Ok(Some(StageLease::fenced(
            lease::LeaseGuard {
                pool: self.pool.clone(),
                fence: fence.clone(),
            },
            fence,
        )))
    }

    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<(), StateError> {
        let client = self.client().await?;
        match lease::renew(&client, fence, ttl)
            .await
            .map_err(|e| self.backend(e))?
        {
            Ok(()) => Ok(()),
            Err(current) => Err(StateError::StaleLease {
                project: fence.project.clone(),
                stage: fence.stage.clone(),
                token: fence.token,
                current: u64::try_from(current).unwrap_or(0),
            }),
        }
    }

    /// One row: the promotion's `progress` record, written (or deleted) under the lease
    /// in one transaction, without reading the rest of the state.
    async fn put_progress(
        &self,
        fence: &Fence,
        promotion: &str,
        progress: Option<&PromotionProgress>,
    ) -> Result<(), StateError> {
        let body = progress
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StateError::Aborted(format!("cannot encode the progress: {e}")))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.backend(e))?;
        lease::check(&tx, fence)
            .await
            .map_err(|e| self.backend(e))??;
        let project = fence.project.as_str();
        let written = match &body {
            Some(body) => tx
                .execute(
                    "INSERT INTO kargo_records AS r (project, kind, key, seq, revision, body)
                     VALUES ($1, 'progress', $2, 0, 1, $3)
                     ON CONFLICT (project, kind, key)
                     DO UPDATE SET body = EXCLUDED.body, revision = r.revision + 1",
                    &[&project, &promotion, body],
                )
                .await,
            None => tx
                .execute(
                    "DELETE FROM kargo_records WHERE project = $1 AND kind = 'progress' AND key = $2",
                    &[&project, &promotion],
                )
                .await,
        }
        .map_err(|e| self.backend(e))?;
        if written > 0 {
            self.bump(&tx, project).await?;
        }
        tx.commit().await.map_err(|e| self.backend(e))?;
        Ok(())
    }

    fn leases_expire(&self) -> bool {
        true
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(PostgresStore::changes(self))
    }
}

/// The time limit of a lease taken with [`StateStore::try_lease`] (which has none).
pub const DEFAULT_TRY_LEASE_TTL: Duration = Duration::from_secs(60);
