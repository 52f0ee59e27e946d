//! The private PostgreSQL cluster `ci/test.sh` starts (ci/servers.d/40-postgres.sh) is a
//! real server with password authentication, reachable on 127.0.0.1 only through the URL
//! it exports: the ground the PostgreSQL state store's tests stand on.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn psql(url: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--dbname",
            url,
            "--command",
            sql,
        ])
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

#[test]
fn the_test_cluster_answers_with_password_authentication() {
    let Some(url) = kargo_core::testing::server_env(
        "the_test_cluster_answers_with_password_authentication",
        "TEST_POSTGRES_URL",
    ) else {
        return;
    };
    let out = psql(
        &url,
        "select current_user || ' ' || current_setting('listen_addresses')",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kargo 127.0.0.1"
    );

    // The role creates a database of its own, as the store's tests will.
    let db = format!("kargo_probe_{}", std::process::id());
    let out = psql(&url, &format!("create database {db}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql(&url, &format!("drop database {db}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong password is refused.
    let (userinfo, rest) = url
        .trim_start_matches("postgres://")
        .split_once('@')
        .unwrap();
    let user = userinfo.split(':').next().unwrap();
    let wrong = format!("postgres://{user}:wrong@{rest}");
    let out = psql(&wrong, "select 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
