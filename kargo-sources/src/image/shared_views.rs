//! Views of a registry (tag lists, where a tag points) shared by the discoveries of one
//! pass, read once however many discoveries ask at the same time.
//!
//! A view is stored with the instant its read STARTED. A discovery whose context says it
//! may use views taken at or after some instant (`DiscoveryContext::fresh_after`, the start
//! of the service's pass) reuses a stored view at least that fresh; otherwise it waits for
//! the read of the same key already in flight (single flight: a per-key async mutex held
//! across the read) and uses its result. Concurrency therefore never multiplies requests.
//!
//! A failed read is not stored: the discoveries that were waiting for it get the same
//! error (they asked at the same time, a second try would most likely fail the same way
//! and 500 serial retries of a registry that is down would take 500 timeouts); a
//! discovery arriving after the failure reads again.
//!
//! Without `fresh_after` a discovery reads on its own (no waiting, no reuse) and stores
//! what it read, which is fresh for everyone else.
//!
//! The store keeps at most `max` views; when full, the oldest inserted is dropped first.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use kargo_core::source::{SourceError, SourceErrorKind};

/// A failed read, shared with the discoveries that waited for it.
#[derive(Debug, Clone)]
struct Failure {
    finished: Instant,
    kind: SourceErrorKind,
    message: String,
}

/// The per-key async mutex of reads in flight; it remembers the last failure.
type Flight = Arc<tokio::sync::Mutex<Option<Failure>>>;

/// Flights kept before those nobody holds are swept.
const FLIGHTS_SWEEP: usize = 1024;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    /// Read by this call.
    Read,
    /// Another discovery's read, reused.
    Shared,
}

/// Stored views keyed by a hash (the caller's key never holds a credential in clear).
#[derive(Debug)]
struct Store<V> {
    map: HashMap<u64, (Instant, V)>,
    /// Insertion order, with the instant stored (stale records are skipped).
    order: VecDeque<(u64, Instant)>,
}

/// Views of type `V` shared between discoveries, with single-flight reads.
#[derive(Debug)]
pub(crate) struct SharedViews<V> {
    max: usize,
    store: Mutex<Store<V>>,
    flights: Mutex<HashMap<u64, Flight>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<V: Clone> SharedViews<V> {
    /// A store of at most `max` (at least 1) views.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            store: Mutex::new(Store {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Views stored.
    pub(crate) fn len(&self) -> usize {
        lock(&self.store).map.len()
    }

    /// The view of `key` taken at or after `after`.
    fn fresh(&self, key: u64, after: Instant) -> Option<V> {
        lock(&self.store)
            .map
            .get(&key)
            .filter(|(taken, _)| *taken >= after)
            .map(|(_, v)| v.clone())
    }

    /// Stores `value` as the view of `key` read starting at `taken` (unless a view read
    /// later is stored already).
    pub(crate) fn put(&self, key: u64, taken: Instant, value: V) {
        let mut s = lock(&self.store);
        if s.map.get(&key).is_some_and(|(t, _)| *t > taken) {
            return;
        }
        s.map.insert(key, (taken, value));
        s.order.push_back((key, taken));
        while s.map.len() > self.max {
            let Some((old, at)) = s.order.pop_front() else {
                break;
            };
            if s.map.get(&old).is_some_and(|(t, _)| *t == at) {
                s.map.remove(&old);
            }
        }
        // Re-stored keys leave stale order records behind: compact now and then.
        if s.order.len() > 2 * self.max {
            let Store { map, order } = &mut *s;
            order.retain(|(k, at)| map.get(k).is_some_and(|(t, _)| t == at));
        }
    }

    /// The view of `key`: with `fresh_after`, one taken at or after it (stored, or the
    /// result of the read in flight), else read by `read` (once for all concurrent
    /// callers); without, read by `read` now. A successful read is stored.
    pub(crate) async fn get_or_read<F, Fut>(
        &self,
        key: u64,
        fresh_after: Option<Instant>,
        read: F,
    ) -> Result<(V, Origin), SourceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, SourceError>>,
    {
        let Some(after) = fresh_after else {
            let started = Instant::now();
            let v = read().await?;
            self.put(key, started, v.clone());
            return Ok((v, Origin::Read));
        };
        if let Some(v) = self.fresh(key, after) {
            return Ok((v, Origin::Shared));
        }
        let arrived = Instant::now();
        let flight: Flight = {
            let mut flights = lock(&self.flights);
            // Flights of cancelled callers (who never cleaned up) are dropped now and then.
            if flights.len() > FLIGHTS_SWEEP {
                flights.retain(|_, f| Arc::strong_count(f) > 1);
            }
            flights.entry(key).or_default().clone()
        };
        let result = {
            let mut last_failure = flight.lock().await;
            if let Some(v) = self.fresh(key, after) {
                Ok((v, Origin::Shared))
            } else if let Some(f) = last_failure.as_ref().filter(|f| f.finished >= arrived) {
                // The read this caller waited for failed: the same error.
                Err(SourceError::new(f.kind, f.message.clone()))
            } else {
                let started = Instant::now();
                match read().await {
                    Ok(v) => {
                        self.put(key, started, v.clone());
                        *last_failure = None;
                        Ok((v, Origin::Read))
                    }
                    Err(e) => {
                        *last_failure = Some(Failure {
                            finished: Instant::now(),
                            kind: e.kind,
                            message: e.message.clone(),
                        });
                        Err(e)
                    }
                }
            }
        };
        // Forget the flight once nobody else holds it. Every caller drops its reference
        // under this lock, so the count is exact here.
        let mut flights = lock(&self.flights);
        let ours = flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight));
        drop(flight);
        if ours && flights.get(&key).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(&key);
        }
        drop(flights);
        result
    }

    /// Reads in flight or with waiters (for tests).
    #[cfg(test)]
    fn flights(&self) -> usize {
        lock(&self.flights).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn fail(kind: SourceErrorKind) -> SourceError {
        SourceError::new(kind, "registry down")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_read() {
        let views = Arc::new(SharedViews::<u32>::new(10));
        let reads = Arc::new(AtomicU32::new(0));
        let after = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (views, reads) = (views.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                views
                    .get_or_read(7, Some(after), || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(42)
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut origins = HashMap::new();
        for t in tasks {
            let (v, o) = t.await.unwrap();
            assert_eq!(v, 42);
            *origins.entry(o).or_insert(0) += 1;
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(origins[&Origin::Read], 1);
        assert_eq!(origins[&Origin::Shared], 199);
        assert_eq!(views.flights(), 0, "finished flights are forgotten");

        // A later pass reads again; a caller without fresh_after always reads.
        let later = Instant::now();
        let (_, o) = views
            .get_or_read(7, Some(later), || async { Ok(43) })
            .await
            .unwrap();
        assert_eq!(o, Origin::Read);
        let (v, o) = views
            .get_or_read(7, Some(later), || async { Ok(44) })
            .await
            .unwrap();
        assert_eq!((v, o), (43, Origin::Shared));
        let (v, o) = views
            .get_or_read(7, None, || async { Ok(45) })
            .await
            .unwrap();
        assert_eq!((v, o), (45, Origin::Read));
        let (v, _) = views
            .get_or_read(7, Some(later), || async { Ok(46) })
            .await
            .unwrap();
        assert_eq!(v, 45, "a direct read is fresh for everyone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_get_the_failure_later_callers_read_again() {
        let views = Arc::new(SharedViews::<u32>::new(10));
        let reads = Arc::new(AtomicU32::new(0));
        let after = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (views, reads) = (views.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                views
                    .get_or_read(1, Some(after), || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err::<u32, _>(fail(SourceErrorKind::Transient))
                    })
                    .await
            }));
        }
        for t in tasks {
            let e = t.await.unwrap().unwrap_err();
            assert_eq!(e.kind, SourceErrorKind::Transient);
            assert_eq!(e.message, "registry down");
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the waiters shared the failure"
        );
        assert_eq!(views.len(), 0, "a failure is not stored");
        let (v, o) = views
            .get_or_read(1, Some(after), || async { Ok(5) })
            .await
            .unwrap();
        assert_eq!(
            (v, o),
            (5, Origin::Read),
            "a caller after the failure reads"
        );
    }

    #[tokio::test]
    async fn a_cancelled_read_lets_the_next_waiter_read() {
        let views = Arc::new(SharedViews::<u32>::new(10));
        let after = Instant::now();
        let v2 = views.clone();
        let first =
            tokio::spawn(async move { v2.get_or_read(3, Some(after), std::future::pending).await });
        tokio::task::yield_now().await;
        first.abort();
        let (v, o) = views
            .get_or_read(3, Some(after), || async { Ok(9) })
            .await
            .unwrap();
        assert_eq!((v, o), (9, Origin::Read));
    }

    #[test]
    fn the_store_is_bounded_oldest_first() {
        let views = SharedViews::<u32>::new(3);
        let t0 = Instant::now();
        for k in 0..3u64 {
            views.put(k, t0, 0);
        }
        // Re-storing a key many times leaves the bound intact and compacts the order.
        for i in 0..20 {
            views.put(0, Instant::now(), i);
        }
        assert_eq!(views.len(), 3);
        assert!(lock(&views.store).order.len() <= 6);
        views.put(9, Instant::now(), 9);
        assert_eq!(views.len(), 3);
        assert!(views.fresh(1, t0).is_none(), "the oldest went first");
        assert_eq!(views.fresh(0, t0), Some(19));
        assert_eq!(views.fresh(9, t0), Some(9));
        // An older read never replaces a newer view.
        views.put(9, t0, 1);
        assert_eq!(views.fresh(9, t0), Some(9));
    }
}
