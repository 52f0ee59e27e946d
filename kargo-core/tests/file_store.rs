//! The file store's snapshot and journal: today's format is read and then journaled, a
//! torn journal tail is ignored and cut, compaction and a crash in its middle, a damaged
//! journal line, and a promotion's progress appended without rewriting the snapshot.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use kargo_core::freight::{Freight, FreightOrigin, Image};
use kargo_core::pipeline::{FileStore, ProjectState, StateError, StateStore, record_freight};
use kargo_core::runner::PromotionProgress;

trait Block: Future + Sized {
    fn block(self) -> Self::Output {
        futures::executor::block_on(self)
    }
}

impl<F: Future> Block for F {}

fn freight(i: usize, pad: usize) -> Freight {
    let mut annotations = BTreeMap::new();
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

fn add(store: &FileStore, i: usize, pad: usize) -> ProjectState {
    store
        .update("shop", &mut |s| {
            record_freight(s, freight(i, pad));
            Ok(())
        })
        .block()
        .unwrap()
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("shop.journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A state directory as today's version writes it: `shop.json` only.
fn todays_directory(dir: &Path, n: usize) -> ProjectState {
    let mut state = ProjectState::default();
    for i in 0..n {
        record_freight(&mut state, freight(i, 10));
    }
    state.format = kargo_core::pipeline::STATE_FORMAT;
    let text = serde_json::to_string_pretty(
        &serde_json::json!({"revision": n, "state": serde_json::to_value(&state).unwrap()}),
    )
    .unwrap();
    std::fs::write(dir.join("shop.json"), text).unwrap();
    state
}

#[test]
fn todays_directory_is_read_then_written_with_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let state = todays_directory(dir.path(), 3);
    let before = std::fs::read(dir.path().join("shop.json")).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let (loaded, rev) = store.load("shop").block().unwrap();
    assert_eq!((loaded.freight.clone(), rev), (state.freight.clone(), 3));
    let written = add(&store, 3, 10);
    assert_eq!(std::fs::read(dir.path().join("shop.json")).unwrap(), before);
    let journal = lines(dir.path());
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(journal[0].starts_with(r#"{"revision":4,"set":[{"kind":"freight""#));
    let (loaded, rev) = store.load("shop").block().unwrap();
    assert_eq!((loaded, rev), (written, 4));
}

#[test]
fn a_torn_journal_tail_is_ignored_then_cut_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    todays_directory(dir.path(), 1);
    let store = FileStore::open(dir.path()).unwrap();
    let good = add(&store, 1, 10);
    let journal = dir.path().join("shop.journal");
    let whole = std::fs::read(&journal).unwrap();
    // A writer killed in the middle of its append: half a line, no newline.
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..whole.len() / 2]);
    std::fs::write(&journal, &torn).unwrap();
    assert_eq!(store.load("shop").block().unwrap(), (good.clone(), 2));
    let next = add(&store, 2, 10);
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.ends_with('\n'));
    assert_eq!(lines(dir.path()).len(), 2, "torn tail cut: {text}");
    assert_eq!(store.load("shop").block().unwrap(), (next, 3));
}

#[test]
fn the_journal_is_compacted_and_a_crash_in_between_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let snapshot = dir.path().join("shop.json");
    let journal = dir.path().join("shop.journal");
    let mut compacted_at = None;
    for i in 0..40 {
        add(&store, i, 4_000);
        if snapshot.exists() && std::fs::metadata(&journal).map_or(0, |m| m.len()) == 0 {
            compacted_at = Some(i + 1);
            break;
        }
    }
    let rev = compacted_at.expect("the journal was compacted into a snapshot");
    let (state, loaded_rev) = store.load("shop").block().unwrap();
    assert_eq!((state.freight.len(), loaded_rev), (rev, rev as u64));
    let text = std::fs::read_to_string(&snapshot).unwrap();
    assert!(text.contains(&format!("\"revision\": {rev}")), "{text}");

    // Journal lines up to and past the snapshot: a crash after the snapshot's rename and
    // before the truncation leaves lines at or below its revision, which are skipped.
    let after = add(&store, 1000, 10);
    let new_line = std::fs::read(&journal).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = FileStore::open(dir2.path()).unwrap();
    for i in 0..rev {
        store2
            .update("shop", &mut |s| {
                record_freight(s, freight(i, 1));
                Ok(())
            })
            .block()
            .unwrap();
    }
    let mut stale = std::fs::read(dir2.path().join("shop.journal")).unwrap();
    assert_eq!(String::from_utf8_lossy(&stale).lines().count(), rev);
    stale.extend_from_slice(&new_line);
    std::fs::write(&journal, &stale).unwrap();
    assert_eq!(
        store.load("shop").block().unwrap(),
        (after.clone(), rev as u64 + 1)
    );
    // A duplicate of the last line changes nothing either.
    stale.extend_from_slice(&new_line);
    std::fs::write(&journal, &stale).unwrap();
    assert_eq!(store.load("shop").block().unwrap(), (after, rev as u64 + 1));
    let next = add(&store, 1001, 10);
    assert_eq!(store.load("shop").block().unwrap(), (next, rev as u64 + 2));
}

#[test]
fn a_damaged_middle_line_is_corrupt_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    for i in 0..3 {
        add(&store, i, 10);
    }
    let journal = dir.path().join("shop.journal");
    let mut l = lines(dir.path());
    l[1] = "{\"revision\": 2, \"set\": [oops".into();
    std::fs::write(&journal, l.join("\n") + "\n").unwrap();
    let err = store.load("shop").block().unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("shop.journal") && msg.contains("line 2"),
        "{msg}"
    );
    // Writers refuse too: nothing is written over it.
    assert!(store.update("shop", &mut |_| Ok(())).block().is_err());
    assert_eq!(lines(dir.path()), l);
}

#[test]
fn put_progress_appends_one_line_and_leaves_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    todays_directory(dir.path(), 200);
    let snapshot = dir.path().join("shop.json");
    let bytes = std::fs::read(&snapshot).unwrap();
    let mtime = std::fs::metadata(&snapshot).unwrap().modified().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let lease = store
        .acquire_lease("shop", "dev", Duration::from_secs(60))
        .block()
        .unwrap()
        .unwrap();
    let fence = lease.fence().unwrap().clone();
    assert_eq!(lines(dir.path()).len(), 1, "the fence bump is one line");
    let now = chrono::Utc::now();
    for n in 0..3 {
        let progress = PromotionProgress {
            steps: vec![],
            state: BTreeMap::new(),
            started_at: now,
            updated_at: now + chrono::Duration::seconds(n as i64),
        };
        store
            .put_progress(&fence, "dev-1", Some(&progress))
            .block()
            .unwrap();
        let l = lines(dir.path());
        assert_eq!(l.len(), 2 + n, "{l:?}");
        let last: serde_json::Value = serde_json::from_str(l.last().unwrap()).unwrap();
        assert_eq!(last["set"][0]["kind"], "progress");
        assert_eq!(last["set"].as_array().unwrap().len(), 1, "{last}");
    }
    store.put_progress(&fence, "dev-1", None).block().unwrap();
    let last: serde_json::Value = serde_json::from_str(lines(dir.path()).last().unwrap()).unwrap();
    assert_eq!(last["deleted"][0]["kind"], "progress");
    assert_eq!(std::fs::read(&snapshot).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(&snapshot).unwrap().modified().unwrap(),
        mtime
    );
    let (state, rev) = store.load("shop").block().unwrap();
    assert_eq!((state.freight.len(), rev), (200, 205));
    assert_eq!(state.fences.get("dev"), Some(&1));
    assert!(state.progress.is_empty());
}

#[test]
fn a_newer_format_or_damaged_snapshot_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("shop.json"),
        r#"{"revision": 7, "state": {"format": 99}}"#,
    )
    .unwrap();
    let err = store.load("shop").block().unwrap_err().to_string();
    assert!(
        err.contains("shop.json") && err.contains("newer version"),
        "{err}"
    );
    std::fs::write(dir.path().join("shop.json"), "{ not json").unwrap();
    let err = store.load("shop").block().unwrap_err().to_string();
    assert!(err.contains("shop.json"), "{err}");
    assert!(store.update("shop", &mut |_| Ok(())).block().is_err());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shop.json")).unwrap(),
        "{ not json"
    );
}

fn promotion(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name, "stage": "dev", "freight": "abc", "collectionId": "c",
        "phase": "Succeeded", "finishedAt": "2026-01-01T00:00:00Z"
    })
}

#[test]
fn a_list_change_writes_a_snapshot_and_list_lines_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    todays_directory(dir.path(), 2);
    let store = FileStore::open(dir.path()).unwrap();
    add(&store, 2, 10);
    assert_eq!(lines(dir.path()).len(), 1);
    // A finished promotion (the list of promotions) goes into a new snapshot.
    let written = store
        .update("shop", &mut |s| {
            s.promotions
                .push(serde_json::from_value(promotion("p1")).unwrap());
            Ok(())
        })
        .block()
        .unwrap();
    assert!(
        lines(dir.path()).is_empty(),
        "journal folded into the snapshot"
    );
    let text = std::fs::read_to_string(dir.path().join("shop.json")).unwrap();
    assert!(
        text.contains("\"revision\": 4") && text.contains("\"p1\""),
        "{text}"
    );
    assert_eq!(store.load("shop").block().unwrap(), (written.clone(), 4));
    // A line that sets a list element (not written by this version, but records all
    // the same) is read by rebuilding the state from its records.
    let line = serde_json::json!({"revision": 5, "set": [{
        "kind": "promotions", "key": "p2", "seq": 2, "body": promotion("p2").to_string()
    }]});
    std::fs::write(dir.path().join("shop.journal"), format!("{line}\n")).unwrap();
    let (state, rev) = store.load("shop").block().unwrap();
    assert_eq!(rev, 5);
    let names: Vec<_> = state.promotions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["p1", "p2"]);
    assert_eq!(state.freight, written.freight);
    // And written over: the next write sees both.
    let next = add(&store, 3, 10);
    assert_eq!(next.promotions.len(), 2);
    assert_eq!(store.load("shop").block().unwrap(), (next, 6));
}

#[test]
fn a_damaged_record_in_a_journal_line_is_corrupt_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    add(&store, 0, 10);
    let line = serde_json::json!({"revision": 2, "set": [{
        "kind": "progress", "key": "dev-1", "body": "{ not a progress"
    }]});
    let mut text = std::fs::read_to_string(dir.path().join("shop.journal")).unwrap();
    text.push_str(&format!("{line}\n"));
    std::fs::write(dir.path().join("shop.journal"), text).unwrap();
    let msg = store.load("shop").block().unwrap_err().to_string();
    assert!(
        msg.contains("shop.journal") && msg.contains("line 2") && msg.contains("progress/dev-1"),
        "{msg}"
    );
}
