//! The conformance suite every [`StateStore`] backend runs (the memory and file stores
//! today). A backend's test calls [`run`] with a function that opens a new handle on the
//! same storage (the same directory, database or in-memory value), on a multi-threaded
//! tokio runtime; a failed case panics naming the case. The cases:
//!
//! 1. a project never written reads as an empty state at revision 0;
//! 2. a write at the revision read succeeds, returns the next revision, and reads back,
//!    from another handle too;
//! 3. a write at a stale revision is a [`StateError::Conflict`] naming both revisions and
//!    changes nothing;
//! 4. projects are independent;
//! 5. concurrent writers through [`StateStore::update`] (tasks on several threads, each
//!    through its own handle) lose nothing: every change lands, one revision each;
//! 6. an update whose closure fails writes nothing;
//! 7. a Stage's lease is exclusive while held, also against another handle; other Stages
//!    and projects are free; dropping it frees it (within a few seconds: a database
//!    store gives it back in the background);
//! 8. fencing: each grant of a lease ([`StateStore::acquire_lease`]) carries a higher token,
//!    and a write under an earlier grant's token ([`StateStore::update_fenced`]) is refused
//!    with [`StateError::StaleLease`] and changes nothing, while the current holder's
//!    writes land.
//!
//! 9. for stores whose leases expire ([`StateStore::leases_expire`]): a lease renewed
//!    within its time limit stays held; one left past it is granted to another runner
//!    with a higher token, and the first holder's renewal and writes are then refused.
//!
//! 10. step records: a promotion's progress ([`StateStore::put_progress`]) written under a
//!     lease reads back from another handle, is replaced by the next write, is removed
//!     by `None`, and a write under a superseded lease is refused and changes nothing;
//! 11. retention ([`crate::pipeline::apply_retention`]) applied through
//!     [`StateStore::update`] deletes the old Freight nobody uses, keeps the Freight a
//!     Stage holds and the newest after it, and the deletions read back.
//!
//! Every case uses project names of its own (`<prefix>-<case>`), so a backend may share
//! its storage with other tests.

#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::freight::{Freight, FreightOrigin, Image};
use crate::pipeline::{ProjectState, StateError, StateStore, record_freight};

/// The time limit of the leases the suite takes where it does not test expiry.
const TTL: Duration = Duration::from_secs(60);

/// How long a dropped lease may take to be free again.
const RELEASE: Duration = Duration::from_secs(5);

/// Opens a new handle on the backend's storage.
pub type Open<'a> = &'a (dyn Fn() -> Arc<dyn StateStore> + Sync);

fn freight(n: usize) -> Freight {
    Freight::new(
        FreightOrigin::warehouse("app"),
        vec![],
        vec![Image {
            repo_url: "registry.example/app".into(),
            tag: format!("1.0.{n}"),
            digest: format!("sha256:{n:064}"),
            annotations: BTreeMap::new(),
            subscription_name: None,
        }],
        vec![],
        vec![],
    )
}

fn fail(case: &str, what: impl std::fmt::Display) -> ! {
    panic!("store conformance, {case}: {what}")
}

/// Runs every case (see the module documentation) against the backend `open` reaches;
/// `prefix` starts every project name the suite uses.
pub async fn run(open: Open<'_>, prefix: &str) {
    empty_project(open, prefix).await;
    write_read_back(open, prefix).await;
    stale_write_conflicts(open, prefix).await;
    projects_are_independent(open, prefix).await;
    concurrent_updates_lose_nothing(open, prefix, 4, 10).await;
    failed_update_writes_nothing(open, prefix).await;
    leases_are_exclusive(open, prefix).await;
    stale_fences_are_refused(open, prefix).await;
    if open().leases_expire() {
        leases_expire_unless_renewed(open, prefix).await;
    }
    progress_records_under_a_lease(open, prefix).await;
    retention_prunes_through_the_store(open, prefix).await;
}

async fn empty_project(open: Open<'_>, prefix: &str) {
    let case = "a project never written is empty at revision 0";
    let (state, rev) = open()
        .load(&format!("{prefix}-empty"))
        .await
        .unwrap_or_else(|e| fail(case, e));
    if rev != 0 || !state.freight.is_empty() || !state.stages.is_empty() {
        fail(
            case,
            format!("revision {rev}, {} Freight", state.freight.len()),
        );
    }
}

async fn write_read_back(open: Open<'_>, prefix: &str) {
    let case = "a write at the read revision reads back";
    let project = format!("{prefix}-write");
    let store = open();
    let (mut state, rev) = store.load(&project).await.unwrap_or_else(|e| fail(case, e));
    record_freight(&mut state, freight(1));
    let next = store
        .store(&project, &state, rev)
        .await
        .unwrap_or_else(|e| fail(case, e));
    if next != rev + 1 {
        fail(case, format!("revision {next} after {rev}"));
    }
    let (read, at) = open()
        .load(&project)
        .await
        .unwrap_or_else(|e| fail(case, e));
    if at != next || read.freight != state.freight {
        fail(
            case,
            format!("read revision {at}, {} Freight", read.freight.len()),
        );
    }
}

async fn stale_write_conflicts(open: Open<'_>, prefix: &str) {
    let case = "a write at a stale revision conflicts";
    let project = format!("{prefix}-stale");
    let store = open();
    let (mut state, rev) = store.load(&project).await.unwrap_or_else(|e| fail(case, e));
    record_freight(&mut state, freight(1));
    store
        .store(&project, &state, rev)
        .await
        .unwrap_or_else(|e| fail(case, e));
    let mut other = state.clone();
    record_freight(&mut other, freight(2));
    match open().store(&project, &other, rev).await {
        Err(StateError::Conflict {
            expected, actual, ..
        }) if expected == rev && actual == rev + 1 => {}
        other => fail(case, format!("{other:?}")),
    }
    let (read, at) = store.load(&project).await.unwrap_or_else(|e| fail(case, e));
    if at != rev + 1 || read.freight.len() != 1 {
        fail(
            case,
            format!("the stale write changed the state (revision {at})"),
        );
    }
}

async fn projects_are_independent(open: Open<'_>, prefix: &str) {
    let case = "projects are independent";
    let (a, b) = (format!("{prefix}-one"), format!("{prefix}-two"));
    let store = open();
    let mut state = ProjectState::default();
    record_freight(&mut state, freight(1));
    store
        .store(&a, &state, 0)
        .await
        .unwrap_or_else(|e| fail(case, e));
    // `b` is still at revision 0: writing it at 0 works.
    store
        .store(&b, &ProjectState::default(), 0)
        .await
        .unwrap_or_else(|e| fail(case, e));
    let (read, _) = store.load(&b).await.unwrap_or_else(|e| fail(case, e));
    if !read.freight.is_empty() {
        fail(case, "a write to one project showed in another");
    }
}

/// `writers` tasks, each with its own handle, each adding `each` Freight through `update`.
async fn concurrent_updates_lose_nothing(
    open: Open<'_>,
    prefix: &str,
    writers: usize,
    each: usize,
) {
    let case = "concurrent updates lose nothing";
    let project = format!("{prefix}-concurrent");
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = open();
            let project = project.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let f = freight(w * 1000 + i);
                    // Conflicts are retried inside `update` (16 attempts); many writers
                    // on one project may exhaust them, so retry here too, as a caller
                    // would.
                    let mut attempts = 0;
                    loop {
                        match store
                            .update(&project, &mut |s| {
                                record_freight(s, f.clone());
                                Ok(())
                            })
                            .await
                        {
                            Ok(_) => break,
                            Err(StateError::Conflict { .. }) if attempts < 100 => attempts += 1,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(case, e),
            Err(e) => fail(case, e),
        }
    }
    let (state, rev) = open()
        .load(&project)
        .await
        .unwrap_or_else(|e| fail(case, e));
    let expected = writers * each;
    if state.freight.len() != expected || rev != expected as u64 {
        fail(
            case,
            format!(
                "{} Freight at revision {rev}, {expected} expected",
                state.freight.len()
            ),
        );
    }
}

async fn failed_update_writes_nothing(open: Open<'_>, prefix: &str) {
    let case = "an update that fails writes nothing";
    let project = format!("{prefix}-aborted");
    let store = open();
    let result = store
        .update(&project, &mut |s| {
            record_freight(s, freight(1));
            Err(StateError::Aborted("refused by the test".into()))
        })
        .await;
    if !matches!(result, Err(StateError::Aborted(_))) {
        fail(case, format!("{result:?}"));
    }
    let (state, rev) = store.load(&project).await.unwrap_or_else(|e| fail(case, e));
    if rev != 0 || !state.freight.is_empty() {
        fail(case, format!("revision {rev}"));
    }
}

async fn leases_are_exclusive(open: Open<'_>, prefix: &str) {
    let case = "a Stage lease is exclusive until dropped";
    let project = format!("{prefix}-lease");
    let (a, b) = (open(), open());
    let held = match a.try_lease(&project, "dev").await {
        Ok(Some(l)) => l,
        other => fail(case, format!("a free lease was not granted: {other:?}")),
    };
    for (who, store) in [("the holder's handle", &a), ("another handle", &b)] {
        match store.try_lease(&project, "dev").await {
            Ok(None) => {}
            other => fail(case, format!("{who} got a held lease: {other:?}")),
        }
    }
    let other_stage = b.try_lease(&project, "prod").await;
    let other_project = b.try_lease(&format!("{project}-x"), "dev").await;
    if !matches!(other_stage, Ok(Some(_))) || !matches!(other_project, Ok(Some(_))) {
        fail(case, "another Stage's or project's lease was not free");
    }
    drop(held);
    // A database store gives a dropped lease back in the background: a moment later.
    if take_within(RELEASE, async || b.try_lease(&project, "dev").await)
        .await
        .is_none()
    {
        fail(case, "a dropped lease was not freed");
    }
}

async fn stale_fences_are_refused(open: Open<'_>, prefix: &str) {
    let case = "a write under a superseded lease is refused";
    let project = format!("{prefix}-fence");
    let (a, b) = (open(), open());
    let first = match a.acquire_lease(&project, "dev", TTL).await {
        Ok(Some(l)) => l,
        other => fail(case, format!("no lease: {other:?}")),
    };
    let old = first
        .fence()
        .cloned()
        .unwrap_or_else(|| fail(case, "no token"));
    a.update_fenced(&old, &mut |s| {
        record_freight(s, freight(1));
        Ok(())
    })
    .await
    .unwrap_or_else(|e| fail(case, e));
    // The holder stalls past its lease; another runner is granted it.
    drop(first);
    let second = take_within(RELEASE, async || {
        b.acquire_lease(&project, "dev", TTL).await
    })
    .await
    .unwrap_or_else(|| fail(case, "no second lease"));
    let new = second
        .fence()
        .cloned()
        .unwrap_or_else(|| fail(case, "no token"));
    if new.token <= old.token {
        fail(case, format!("token {} after {}", new.token, old.token));
    }
    match a
        .update_fenced(&old, &mut |s| {
            record_freight(s, freight(2));
            Ok(())
        })
        .await
    {
        Err(StateError::StaleLease { token, current, .. })
            if token == old.token && current == new.token => {}
        other => fail(case, format!("the stale write was not refused: {other:?}")),
    }
    b.update_fenced(&new, &mut |s| {
        record_freight(s, freight(3));
        Ok(())
    })
    .await
    .unwrap_or_else(|e| fail(case, e));
    let (state, _) = open()
        .load(&project)
        .await
        .unwrap_or_else(|e| fail(case, e));
    if state.freight.len() != 2 {
        fail(case, format!("{} Freight, 2 expected", state.freight.len()));
    }
}

/// Polls `try_take` every 20 ms until it grants a lease or `within` has passed.
async fn take_within(
    within: Duration,
    try_take: impl AsyncFn() -> Result<Option<crate::pipeline::StageLease>, StateError>,
) -> Option<crate::pipeline::StageLease> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(lease)) = try_take().await {
            return Some(lease);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leases_expire_unless_renewed(open: Open<'_>, prefix: &str) {
    let case = "a lease expires unless renewed";
    let project = format!("{prefix}-expiry");
    let ttl = Duration::from_millis(600);
    let (a, b) = (open(), open());
    let first = match a.acquire_lease(&project, "dev", ttl).await {
        Ok(Some(l)) => l,
        other => fail(case, format!("no lease: {other:?}")),
    };
    let old = first
        .fence()
        .cloned()
        .unwrap_or_else(|| fail(case, "no token"));
    // Renewed every 200 ms for three time limits: nobody else gets it.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        a.renew_lease(&old, ttl)
            .await
            .unwrap_or_else(|e| fail(case, format!("renewal of a held lease: {e}")));
        if let Ok(Some(_)) = b.acquire_lease(&project, "dev", ttl).await {
            fail(case, "a renewed lease was granted to another runner");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The holder stalls (keeps the lease value, stops renewing): it expires.
    let second = take_within(ttl * 10, async || {
        b.acquire_lease(&project, "dev", ttl).await
    })
    .await
    .unwrap_or_else(|| fail(case, "an expired lease was never granted again"));
    let new = second
        .fence()
        .cloned()
        .unwrap_or_else(|| fail(case, "no token"));
    if new.token <= old.token {
        fail(case, format!("token {} after {}", new.token, old.token));
    }
    match a.renew_lease(&old, ttl).await {
        Err(StateError::StaleLease { .. }) => {}
        other => fail(
            case,
            format!("the stalled holder renewed a lost lease: {other:?}"),
        ),
    }
    match a
        .update_fenced(&old, &mut |s| {
            record_freight(s, freight(7));
            Ok(())
        })
        .await
    {
        Err(StateError::StaleLease { .. }) => {}
        other => fail(
            case,
            format!("the stalled holder's write was not refused: {other:?}"),
        ),
    }
    drop(first);
    b.renew_lease(&new, ttl)
        .await
        .unwrap_or_else(|e| fail(case, format!("the new holder cannot renew: {e}")));
    let (state, _) = open()
        .load(&project)
        .await
        .unwrap_or_else(|e| fail(case, e));
    if !state.freight.is_empty() {
        fail(case, "a refused write changed the state");
    }
}

fn progress(steps: usize) -> crate::runner::PromotionProgress {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    crate::runner::PromotionProgress {
        steps: (0..steps)
            .map(|i| crate::runner::StepRecord {
                alias: format!("step-{i}"),
                uses: "http".into(),
                status: crate::runner::StepExecutionStatus::Succeeded,
                message: None,
                started_at: Some(at),
                finished_at: Some(at),
                error_count: 0,
                attempts: 1,
                continue_on_error: false,
                outputs: [(format!("out{i}"), serde_json::json!({"n": i}))]
                    .into_iter()
                    .collect(),
            })
            .collect(),
        state: BTreeMap::new(),
        started_at: at,
        updated_at: at,
    }
}

async fn progress_records_under_a_lease(open: Open<'_>, prefix: &str) {
    let case = "step records are written under a lease";
    let project = format!("{prefix}-progress");
    let (a, b) = (open(), open());
    a.update(&project, &mut |s| {
        record_freight(s, freight(1));
        Ok(())
    })
    .await
    .unwrap_or_else(|e| fail(case, e));
    let lease = match a.acquire_lease(&project, "dev", TTL).await {
        Ok(Some(l)) => l,
        other => fail(case, format!("no lease: {other:?}")),
    };
    let fence = lease
        .fence()
        .cloned()
        .unwrap_or_else(|| fail(case, "no token"));
    for steps in 1..=3 {
        a.put_progress(&fence, "dev.p1", Some(&progress(steps)))
            .await
            .unwrap_or_else(|e| fail(case, e));
        let (state, _) = b.load(&project).await.unwrap_or_else(|e| fail(case, e));
        match state.progress.get("dev.p1") {
            Some(p) if *p == progress(steps) => {}
            other => fail(case, format!("after {steps} steps, read back {other:?}")),
        }
        if state.freight.len() != 1 {
            fail(case, "a progress write changed the Freight");
        }
    }
    // Another runner takes the lease over; the first one's next step record is refused.
    drop(lease);
    let second = take_within(RELEASE, async || {
        b.acquire_lease(&project, "dev", TTL).await
    })
    .await
    .unwrap_or_else(|| fail(case, "no second lease"));
    match a.put_progress(&fence, "dev.p1", Some(&progress(4))).await {
        Err(StateError::StaleLease { .. }) => {}
        other => fail(
            case,
            format!("a stale step record was not refused: {other:?}"),
        ),
    }
    let (state, _) = b.load(&project).await.unwrap_or_else(|e| fail(case, e));
    if state.progress.get("dev.p1") != Some(&progress(3)) {
        fail(case, "a refused step record changed the state");
    }
    let new = second
        .fence()
        .cloned()
        .unwrap_or_else(|| fail(case, "no token"));
    b.put_progress(&new, "dev.p1", None)
        .await
        .unwrap_or_else(|e| fail(case, e));
    let (state, _) = a.load(&project).await.unwrap_or_else(|e| fail(case, e));
    if !state.progress.is_empty() {
        fail(case, "a removed step record is still there");
    }
}

async fn retention_prunes_through_the_store(open: Open<'_>, prefix: &str) {
    let case = "retention prunes through the store";
    let project = format!("{prefix}-retention");
    let store = open();
    let now = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let old = now - chrono::Duration::days(30);
    let mut held = None;
    store
        .update(&project, &mut |s| {
            for n in 0..12 {
                let mut f = freight(100 + n);
                f.discovered_at = Some(old + chrono::Duration::minutes(n as i64));
                // The newest is held by a Stage: kept, and the 3 after it.
                if n == 11 {
                    held = Some(f.name.clone());
                    let id = f.name.clone();
                    record_freight(s, f);
                    if let Some(rec) = s.freight.get_mut(&id) {
                        rec.status
                            .currently_in
                            .insert("prod".into(), crate::pipeline::CurrentStage { since: old });
                    }
                } else {
                    record_freight(s, f);
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| fail(case, e));
    let policy = crate::pipeline::RetentionPolicy {
        max_retained_freight: 3,
        ..Default::default()
    };
    let mut report = None;
    store
        .update(&project, &mut |s| {
            report = Some(crate::pipeline::apply_retention(s, &policy, now));
            Ok(())
        })
        .await
        .unwrap_or_else(|e| fail(case, e));
    let (state, _) = open()
        .load(&project)
        .await
        .unwrap_or_else(|e| fail(case, e));
    let held = held.unwrap_or_else(|| fail(case, "no Freight"));
    if !state.freight.contains_key(&held) {
        fail(case, "Freight a Stage holds was deleted");
    }
    let deleted = report.map_or(0, |r| r.freight.len());
    if deleted != 8 || state.freight.len() != 4 {
        fail(
            case,
            format!("{deleted} deleted, {} left of 12", state.freight.len()),
        );
    }
}
