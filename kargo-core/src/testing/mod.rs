//! Helpers for tests of kargo-rs and of embedders' code (feature `testing`).
//!
//! - [`server_env`] / [`server_envs`]: the test-server convention of `ci/test.sh`. A test
//!   that needs a server reads its address from an environment variable; when it is unset
//!   the test prints why it is skipped and returns, except with `CI=true`, where a missing
//!   server is a failure (a CI run must never pass by skipping).
//! - [`source_conformance`]: the contract every artifact [`Source`](crate::source::Source)
//!   backend runs.
//! - [`store_conformance`]: the contract every [`StateStore`](crate::pipeline::StateStore)
//!   backend runs.

// Skip messages go to the test's stderr on purpose; the panic is the CI failure.
#![allow(clippy::print_stderr, clippy::panic)]

pub mod source_conformance;
pub mod store_conformance;

/// The value of `var`, or `None` after a skip message naming `test` when it is unset or
/// empty. With `CI=true` a missing variable panics (the test fails).
pub fn server_env(test: &str, var: &str) -> Option<String> {
    server_envs(test, &[var]).and_then(|mut v| v.pop())
}

/// The values of `vars`, in order, or `None` after a skip message when one is missing;
/// with `CI=true` a missing one panics.
pub fn server_envs(test: &str, vars: &[&str]) -> Option<Vec<String>> {
    let mut values = Vec::with_capacity(vars.len());
    for var in vars {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => values.push(v),
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!(
                        "{test}: environment variable {var} is not set; with CI=true the test \
                         servers are required (ci/test.sh starts them)"
                    );
                }
                eprintln!(
                    "skipping {test}: {var} is not set (run ci/test.sh to start the test servers)"
                );
                return None;
            }
        }
    }
    Some(values)
}
