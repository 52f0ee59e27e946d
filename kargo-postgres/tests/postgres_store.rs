//! The PostgreSQL store against the private cluster `ci/test.sh` starts
//! (`TEST_POSTGRES_URL`): the store conformance suite, records written on their own,
//! notifications between replicas, and bad input (unreachable, wrong password, a newer
//! schema, a damaged record). Each test works in a database of its own.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kargo_core::freight::{Freight, FreightOrigin, Image};
use kargo_core::pipeline::{StateError, StateStore, record_freight};
use kargo_postgres::{PostgresOptions, PostgresStore};

/// The cluster's URL, or `None` (the test passes with a notice) outside CI.
fn server(test: &str) -> Option<String> {
    kargo_core::testing::server_env(test, "TEST_POSTGRES_URL")
}

/// A new, empty database `name` on the cluster; its URL.
async fn fresh_database(url: &str, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // One statement per call: a multi-statement string runs as one transaction block.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Runs `sql` on the database at `url`.
async fn sql(url: &str, sql: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.execute(sql, &[]).await.unwrap()
}

fn password(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let userinfo = rest.rsplit_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_owned()
}

fn options() -> PostgresOptions {
    PostgresOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        ..PostgresOptions::default()
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes() {
    let Some(url) = server("the_conformance_suite_passes") else {
        return;
    };
    let url = fresh_database(&url, "kargo_conformance").await;
    // Four replicas' handles, each with a pool of its own; `open` deals them out in turn.
    let mut handles: Vec<Arc<dyn StateStore>> = Vec::new();
    for _ in 0..4 {
        handles.push(Arc::new(
            PostgresStore::connect(&url, options()).await.unwrap(),
        ));
    }
    let next = AtomicUsize::new(0);
    let open = || handles[next.fetch_add(1, Ordering::Relaxed) % handles.len()].clone();
    kargo_core::testing::store_conformance::run(&open, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_touches_only_the_records_it_changed() {
    let Some(url) = server("a_write_touches_only_the_records_it_changed") else {
        return;
    };
    let url = fresh_database(&url, "kargo_records").await;
    let store = PostgresStore::connect(&url, options()).await.unwrap();
    store
        .update("p", &mut |s| {
            for n in 0..50 {
                record_freight(s, freight(n));
            }
            Ok(())
        })
        .await
        .unwrap();
    // A Stage's bookkeeping: no Freight row is written again.
    store
        .update("p", &mut |s| {
            s.stages
                .entry("dev".into())
                .or_default()
                .metadata
                .insert("k".into(), "v".into());
            Ok(())
        })
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT kind, count(*), max(revision) FROM kargo_records WHERE project = 'p' GROUP BY kind ORDER BY kind",
            &[],
        )
        .await
        .unwrap();
    let summary: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        summary.contains(&("freight".into(), 50, 1)),
        "every Freight row still at revision 1: {summary:?}"
    );
    assert!(summary.contains(&("stages".into(), 1, 1)), "{summary:?}");
    let (state, revision) = store.load("p").await.unwrap();
    assert_eq!((state.freight.len(), revision), (50, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_hears_of_a_write() {
    let Some(url) = server("another_replica_hears_of_a_write") else {
        return;
    };
    let url = fresh_database(&url, "kargo_notify").await;
    let a = PostgresStore::connect(&url, options()).await.unwrap();
    let b = PostgresStore::connect(&url, options()).await.unwrap();
    let mut changes = b.changes();
    // The listener is up once it has announced itself (its first wake-up).
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the listener never started")
        .unwrap();
    changes.mark_unchanged();
    a.update("p", &mut |s| {
        record_freight(s, freight(1));
        Ok(())
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the other replica was not told of the write")
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://kargo:hunter2-secret@127.0.0.1:{port}/state");
    let err = PostgresStore::connect(&url, options()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StateError::Backend { .. }), "{err:?}");
    assert!(
        text.contains(&format!("postgres://kargo@127.0.0.1:{port}/state")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_connection_string_that_does_not_parse_hides_its_password() {
    let err = PostgresStore::connect("postgres://kargo:hunter2@db:port/x", options())
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(
        err.to_string()
            .contains("not a PostgreSQL connection string"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let Some(url) = server("a_wrong_password_is_refused_without_showing_it") else {
        return;
    };
    let real = password(&url);
    let wrong = url.replacen(&format!(":{real}@"), ":not-the-password@", 1);
    let err = PostgresStore::connect(&wrong, options()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        !text.contains("not-the-password") && !text.contains(&real),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_nothing_is_written() {
    let Some(url) = server("a_newer_schema_is_refused_and_nothing_is_written") else {
        return;
    };
    let url = fresh_database(&url, "kargo_newer").await;
    let store = PostgresStore::connect(&url, options()).await.unwrap();
    store
        .update("p", &mut |s| {
            record_freight(s, freight(1));
            Ok(())
        })
        .await
        .unwrap();
    drop(store);
    let rows = sql(&url, "SELECT 1 FROM kargo_records").await;
    sql(&url, "UPDATE kargo_schema SET version = 99").await;
    let err = PostgresStore::connect(&url, options()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("version 99") && text.contains("newer"),
        "{text}"
    );
    assert!(!text.contains(&password(&url)), "{text}");
    assert_eq!(
        sql(&url, "SELECT 1 FROM kargo_schema WHERE version = 99").await,
        1,
        "the schema version was written over"
    );
    assert_eq!(sql(&url, "SELECT 1 FROM kargo_records").await, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_named_and_nothing_is_written() {
    let Some(url) = server("a_damaged_record_is_named_and_nothing_is_written") else {
        return;
    };
    let url = fresh_database(&url, "kargo_damaged").await;
    let store = PostgresStore::connect(&url, options()).await.unwrap();
    store
        .update("p", &mut |s| {
            record_freight(s, freight(1));
            Ok(())
        })
        .await
        .unwrap();
    let id = store
        .load("p")
        .await
        .unwrap()
        .0
        .freight
        .keys()
        .next()
        .unwrap()
        .to_string();
    let rows = sql(&url, "SELECT 1 FROM kargo_records").await;
    sql(
        &url,
        "UPDATE kargo_records SET body = '{ not json' WHERE kind = 'freight'",
    )
    .await;
    let err = store.load("p").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    assert!(text.contains(&format!("record freight/{id}")), "{text}");
    assert!(!text.contains(&password(&url)), "{text}");
    let err = store
        .update("p", &mut |s| {
            record_freight(s, freight(2));
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    assert_eq!(
        sql(&url, "SELECT 1 FROM kargo_records").await,
        rows,
        "something was written"
    );
    assert_eq!(
        sql(&url, "SELECT 1 FROM kargo_projects WHERE revision = 1").await,
        1
    );
}
