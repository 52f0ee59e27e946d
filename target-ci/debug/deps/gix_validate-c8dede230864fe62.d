/work/main/target-ci/debug/deps/gix_validate-c8dede230864fe62.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/reference.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/tag.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/submodule.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/path.rs

/work/main/target-ci/debug/deps/libgix_validate-c8dede230864fe62.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/reference.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/tag.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/submodule.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/path.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/reference.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/tag.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/submodule.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-validate-0.13.1/src/path.rs:
