/work/main/target-ci/debug/deps/gix_path-2d71b554f7095ae1.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/convert.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/util.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/realpath.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/auxiliary.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/git/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/relative_path.rs

/work/main/target-ci/debug/deps/libgix_path-2d71b554f7095ae1.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/convert.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/util.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/realpath.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/auxiliary.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/git/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/relative_path.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/convert.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/util.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/realpath.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/mod.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/auxiliary.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/env/git/mod.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/gix-path-0.14.1/src/relative_path.rs:
