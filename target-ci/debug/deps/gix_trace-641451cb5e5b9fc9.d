/work/main/target-ci/debug/deps/gix_trace-641451cb5e5b9fc9.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-trace-0.3.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-trace-0.3.1/src/disabled.rs

/work/main/target-ci/debug/deps/libgix_trace-641451cb5e5b9fc9.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-trace-0.3.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-trace-0.3.1/src/disabled.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-trace-0.3.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-trace-0.3.1/src/disabled.rs:
