//! `promoter --state postgres://...`: the promoter on the PostgreSQL store of the cluster
//! `ci/test.sh` starts (`TEST_POSTGRES_URL`), and its bad input: a database that cannot be
//! reached, a wrong password, a schema from a newer version, a damaged record. Each is exit
//! status 2 with a message naming the database without its password, and nothing written.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::path::Path;
use std::process::Command;

use support::promoter_bin;

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  subscriptions:
  - image: {repoURL: registry.example/app}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
        config: {message: never runs}
"#;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn promoter(manifests: &Path, work: &Path, state: &str, args: &[&str]) -> Out {
    let out = Command::new(promoter_bin())
        .arg("--manifests")
        .arg(manifests)
        .arg("--state")
        .arg(state)
        .arg("--work-dir")
        .arg(work)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("KARGO_LOG")
        .output()
        .unwrap();
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ promoter {}\n-> exit {}\n{}{}",
        args.join(" "),
        out.code,
        out.stdout,
        out.stderr
    );
    out
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--quiet",
            "--dbname",
            url,
            "--command",
            sql,
        ])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A new database `name` on the cluster at `url`; its URL.
fn fresh_database(url: &str, name: &str) -> String {
    psql(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(url, &format!("CREATE DATABASE {name}"));
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

fn password(url: &str) -> String {
    let userinfo = url.split_once("://").unwrap().1.rsplit_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_owned()
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("kargo");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("demo.yaml"), MANIFESTS).unwrap();
    let work = tmp.path().join("work");
    (tmp, manifests, work)
}

#[test]
fn an_unreachable_database_is_bad_input_named_without_its_password() {
    let (_tmp, manifests, work) = setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://kargo:hunter2-secret@127.0.0.1:{port}/state");
    let out = promoter(&manifests, &work, &url, &["get", "stages"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("postgres://kargo@127.0.0.1:{port}/state")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"));
}

#[test]
fn the_promoter_runs_on_postgres_and_refuses_bad_databases() {
    let Some(url) = kargo_core::testing::server_env(
        "the_promoter_runs_on_postgres_and_refuses_bad_databases",
        "TEST_POSTGRES_URL",
    ) else {
        return;
    };
    let secret = password(&url);
    let (_tmp, manifests, work) = setup();

    // A working database: migrated on first use, read by the verbs.
    let db = fresh_database(&url, "kargo_promoter");
    let out = promoter(&manifests, &work, &db, &["get", "stages", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"dev\""), "{}", out.stdout);
    assert_eq!(psql(&db, "SELECT version FROM kargo_schema"), "1");

    // The wrong password.
    let wrong = db.replacen(&format!(":{secret}@"), ":not-the-password@", 1);
    let out = promoter(&manifests, &work, &wrong, &["get", "stages"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-password") && !out.stderr.contains(&secret));

    // A damaged record: named, exit 2, nothing written.
    psql(
        &db,
        "INSERT INTO kargo_records (project, kind, key, seq, revision, body) \
         VALUES ('demo', 'freight', 'f00d', 0, 1, '{ not json')",
    );
    let before = psql(
        &db,
        "SELECT count(*) || ' ' || coalesce(sum(revision), 0) FROM kargo_records",
    );
    let out = promoter(
        &manifests,
        &work,
        &db,
        &["approve", "--stage", "dev", "--freight", "f00d"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("record freight/f00d"), "{}", out.stderr);
    assert!(!out.stderr.contains(&secret), "{}", out.stderr);
    let after = psql(
        &db,
        "SELECT count(*) || ' ' || coalesce(sum(revision), 0) FROM kargo_records",
    );
    assert_eq!(before, after, "something was written");
    psql(&db, "DELETE FROM kargo_records WHERE key = 'f00d'");

    // A schema from a newer version: refused before anything is written.
    psql(&db, "UPDATE kargo_schema SET version = 99");
    let out = promoter(&manifests, &work, &db, &["get", "stages"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("version 99") && out.stderr.contains("newer"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&secret), "{}", out.stderr);
    assert_eq!(psql(&db, "SELECT version FROM kargo_schema"), "99");
    psql(&url, "DROP DATABASE IF EXISTS kargo_promoter WITH (FORCE)");
}
