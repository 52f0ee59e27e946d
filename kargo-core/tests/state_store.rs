//! The file state store: round trips, conflicts between processes, and a writer killed
//! with SIGKILL in the middle of writes leaves a readable state.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kargo_core::freight::{Freight, FreightOrigin, Image};
use kargo_core::pipeline::{FileStore, ProjectState, StateError, StateStore, record_freight};

/// Runs a store call to completion in a synchronous test (threads and child processes
/// drive these tests, not a runtime).
trait Block: Future + Sized {
    fn block(self) -> Self::Output {
        futures::executor::block_on(self)
    }
}

impl<F: Future> Block for F {}

fn freight(i: usize, pad: usize) -> Freight {
    let mut annotations = std::collections::BTreeMap::new();
    // Big states make a write take long enough to be interrupted.
    annotations.insert("padding".to_owned(), "x".repeat(pad));
    Freight::new(
        FreightOrigin::warehouse("app"),
        vec![],
        vec![Image {
            repo_url: "ghcr.io/acme/app".into(),
            tag: format!("1.0.{i}"),
            digest: format!("sha256:{i}"),
            annotations,
            subscription_name: None,
        }],
        vec![],
        vec![],
    )
}

#[test]
fn round_trip_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("state")).unwrap();
    let (s, rev) = store.load("demo").block().unwrap();
    assert_eq!((s.freight.len(), rev), (0, 0));
    let mut s = ProjectState::default();
    record_freight(&mut s, freight(1, 0));
    assert_eq!(store.store("demo", &s, 0).block().unwrap(), 1);
    let (loaded, rev) = store.load("demo").block().unwrap();
    assert_eq!(rev, 1);
    assert_eq!(loaded.freight, s.freight);
    let err = store.store("demo", &s, 0).block().unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    // A second store over the same directory (another process, in effect) sees it.
    let other = FileStore::open(dir.path().join("state")).unwrap();
    assert_eq!(other.load("demo").block().unwrap().1, 1);

    for bad in ["", "../x", "a/b", ".hidden"] {
        assert!(
            matches!(store.load(bad).block(), Err(StateError::InvalidProject(_))),
            "{bad}"
        );
    }
    std::fs::write(dir.path().join("state/broken.json"), "{ not json").unwrap();
    let err = store.load("broken").block().unwrap_err();
    assert!(err.to_string().contains("broken.json"), "{err}");
}

#[test]
fn concurrent_updates_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = dir.path().to_owned();
            std::thread::spawn(move || {
                let store = FileStore::open(path).unwrap();
                for i in 0..10 {
                    store
                        .update("demo", &mut |s| {
                            record_freight(s, freight(t * 100 + i, 0));
                            Ok(())
                        })
                        .block()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (s, rev) = FileStore::open(dir.path())
        .unwrap()
        .load("demo")
        .block()
        .unwrap();
    assert_eq!(s.freight.len(), 40);
    assert_eq!(rev, 40);
}

/// Not a test on its own: the writer process of `sigkill_during_writes_leaves_a_readable_state`.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var("KARGO_STATE_WRITER_DIR") else {
        return;
    };
    let store = FileStore::open(dir).unwrap();
    loop {
        store
            .update("demo", &mut |s| {
                let next = s.freight.len();
                record_freight(s, freight(next, 20_000));
                Ok(())
            })
            .block()
            .unwrap();
    }
}

#[test]
fn sigkill_during_writes_leaves_a_readable_state() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last_rev = 0;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
            .env("KARGO_STATE_WRITER_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the writer has made progress (poll, no fixed sleep), then kill it
        // at a moment that varies from round to round.
        let store = FileStore::open(dir.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let target = last_rev + 3 + round * 2;
        loop {
            if let Ok((_, rev)) = store.load("demo").block()
                && rev >= target
            {
                break;
            }
            assert!(Instant::now() < deadline, "writer made no progress");
            std::thread::yield_now();
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (s, rev) = store
            .load("demo")
            .block()
            .expect("state readable after SIGKILL");
        assert!(rev >= target);
        assert_eq!(
            s.freight.len() as u64,
            rev,
            "one Freight per revision, none torn"
        );
        last_rev = rev;
        // And a new writer can continue (the lock died with the process).
        store
            .update("demo", &mut |s| {
                record_freight(s, freight(1_000_000 + round as usize, 0));
                Ok(())
            })
            .block()
            .unwrap();
        last_rev += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conformance() {
    let store: std::sync::Arc<dyn StateStore> =
        std::sync::Arc::new(kargo_core::pipeline::MemoryStore::new());
    let open = move || store.clone();
    kargo_core::testing::store_conformance::run(&open, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let open = move || -> std::sync::Arc<dyn StateStore> {
        std::sync::Arc::new(FileStore::open(&path).unwrap())
    };
    kargo_core::testing::store_conformance::run(&open, "file").await;
}
