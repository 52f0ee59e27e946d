//! Leases in the `kargo_leases` table: granted when free or expired (with the next
//! fencing token), renewed by their holder, given back when dropped. Times are the
//! database's, so replicas' clocks need not agree.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use kargo_core::pipeline::{Fence, StateError};

/// Takes `name`'s lease in `project` for `ttl` unless a live grant holds it; the token.
pub(crate) async fn acquire(
    client: &impl GenericClient,
    project: &str,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "INSERT INTO kargo_leases AS l (project, name, token, holder, expires_at)
             VALUES ($1, $2, 1, $3, clock_timestamp() + make_interval(secs => $4))
             ON CONFLICT (project, name) DO UPDATE
                SET token = l.token + 1, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                WHERE l.expires_at <= clock_timestamp()
             RETURNING token",
            &[&project, &name, &holder, &ttl.as_secs_f64()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Extends the grant `fence` to `ttl` from now; `Err(current token)` when it was granted
/// again since. A grant that ran out but was not granted again is still the latest one:
/// renewing it is safe (nobody else wrote under the lease), so it is renewed.
pub(crate) async fn renew(
    client: &impl GenericClient,
    fence: &Fence,
    ttl: Duration,
) -> Result<Result<(), i64>, tokio_postgres::Error> {
    let token = token_i64(fence.token);
    let renewed = client
        .execute(
            "UPDATE kargo_leases SET expires_at = clock_timestamp() + make_interval(secs => $4)
             WHERE project = $1 AND name = $2 AND token = $3",
            &[&fence.project, &fence.stage, &token, &ttl.as_secs_f64()],
        )
        .await?;
    if renewed == 1 {
        return Ok(Ok(()));
    }
    Ok(Err(current(client, &fence.project, &fence.stage).await?))
}

/// The latest token granted for `name` (0 if never).
pub(crate) async fn current(
    client: &impl GenericClient,
    project: &str,
    name: &str,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT token FROM kargo_leases WHERE project = $1 AND name = $2",
            &[&project, &name],
        )
        .await?
        .map_or(0, |r| r.get(0)))
}

/// Inside a write's transaction: the lease row locked against a concurrent grant until
/// the write commits, and [`StateError::StaleLease`] unless `fence` is its latest grant.
pub(crate) async fn check(
    client: &impl GenericClient,
    fence: &Fence,
) -> Result<Result<(), StateError>, tokio_postgres::Error> {
    let current: i64 = client
        .query_opt(
            "SELECT token FROM kargo_leases WHERE project = $1 AND name = $2 FOR SHARE",
            &[&fence.project, &fence.stage],
        )
        .await?
        .map_or(0, |r| r.get(0));
    if current == token_i64(fence.token) {
        Ok(Ok(()))
    } else {
        Ok(Err(StateError::StaleLease {
            project: fence.project.clone(),
            stage: fence.stage.clone(),
            token: fence.token,
            current: u64::try_from(current).unwrap_or(0),
        }))
    }
}

fn token_i64(token: u64) -> i64 {
    i64::try_from(token).unwrap_or(i64::MAX)
}

/// Gives the lease back when dropped (it expires on its own if that cannot be done: no
/// runtime, the database unreachable).
pub(crate) struct LeaseGuard {
    pub pool: Pool,
    pub fence: Fence,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        let fence = self.fence.clone();
        runtime.spawn(async move {
            let result = async {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                client
                    .execute(
                        "UPDATE kargo_leases SET expires_at = clock_timestamp()
                         WHERE project = $1 AND name = $2 AND token = $3",
                        &[&fence.project, &fence.stage, &token_i64(fence.token)],
                    )
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            if let Err(error) = result {
                tracing::debug!(project = %fence.project, lease = %fence.stage, %error, "cannot give a lease back; it expires on its own");
            }
        });
    }
}
