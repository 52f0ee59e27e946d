//! The database schema and its migrations, embedded in the binary and applied when a
//! store connects. Replicas starting together take turns (a transaction-scoped advisory
//! lock); a database migrated by a newer version is refused, never written to.

use tokio_postgres::Client;

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// The advisory lock key serialising migrations ("kargo" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b_61_72_67_6f;

/// Each migration brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: projects with a revision, records with their own revisions, leases.
    "CREATE TABLE kargo_projects (
         project  text PRIMARY KEY,
         revision bigint NOT NULL
     );
     CREATE TABLE kargo_records (
         project  text   NOT NULL,
         kind     text   NOT NULL,
         key      text   NOT NULL,
         seq      bigint NOT NULL,
         revision bigint NOT NULL,
         body     text   NOT NULL,
         PRIMARY KEY (project, kind, key)
     );
     CREATE TABLE kargo_leases (
         project    text        NOT NULL,
         name       text        NOT NULL,
         token      bigint      NOT NULL,
         holder     text        NOT NULL,
         expires_at timestamptz NOT NULL,
         PRIMARY KEY (project, name)
     );",
];

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A newer version of kargo migrated the database.
    #[error(
        "the database's kargo schema is version {found}, newer than this version of kargo knows (up to {SCHEMA_VERSION}); upgrade kargo, nothing was written"
    )]
    Newer {
        /// The version found.
        found: i32,
    },
    /// A query failed.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) async fn migrate(client: &mut Client) -> Result<i32, SchemaError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS kargo_schema (
             id      int PRIMARY KEY CHECK (id = 1),
             version int NOT NULL
         );
         INSERT INTO kargo_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await?;
    let found: i32 = tx
        .query_one("SELECT version FROM kargo_schema WHERE id = 1", &[])
        .await?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(SchemaError::Newer { found });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tracing::info!(to = i + 1, "migrating the kargo schema");
        tx.batch_execute(sql).await?;
    }
    tx.execute(
        "UPDATE kargo_schema SET version = $1 WHERE id = 1",
        &[&SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}
