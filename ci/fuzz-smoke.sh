#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target under fuzz/ and runs each for a short
# time (default 30 s) from its committed seed corpus (fuzz/corpus/<target>/). Fails
# (non-zero) on any crash, panic, timeout (> 10 s for one input) or OOM (> 2048 MB).
#
#   ci/fuzz-smoke.sh                 # every target, 30 s each
#   ci/fuzz-smoke.sh webhook         # only the named targets
#   FUZZ_SECONDS=600 ci/fuzz-smoke.sh yaml_edit
#
# Toolchain: `cargo +nightly` when a nightly toolchain is installed, otherwise the default
# (stable) toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly-only rustc flags);
# FUZZ_TOOLCHAIN=stable forces the latter.
# cargo-fuzz is installed with `cargo install cargo-fuzz --locked` when missing.
# Targets are built without a sanitizer (`--sanitizer none`): the code under test is safe
# Rust (`unsafe_code = "forbid"`), so the findings are panics, overflows (debug assertions
# and overflow checks are on), hangs and OOMs, and the build and the runs are 2-3x faster.
# Set FUZZ_SANITIZER=address to build with AddressSanitizer instead.
# The smoke builds in cargo's dev profile (`cargo fuzz --dev`: no optimisation, many codegen
# units), which compiles the dependency tree several times faster than cargo-fuzz's default
# (release, one codegen unit) and is plenty for 30 s runs; FUZZ_RELEASE=1 builds optimised,
# as for the long runs reported in HARDENING.md.
#
# Build output goes to $FUZZ_TARGET_DIR, else $CARGO_TARGET_DIR/fuzz, else fuzz/target.
# Inputs the fuzzer finds go to a temporary directory (the committed seeds stay as they
# are); a crashing input is kept under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
SANITIZER=${FUZZ_SANITIZER:-none}
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  TARGET_DIR=$FUZZ_TARGET_DIR
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
  TARGET_DIR=$CARGO_TARGET_DIR/fuzz
else
  TARGET_DIR=$ROOT/fuzz/target
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

CARGO=(cargo)
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  CARGO=(cargo +nightly)
  echo "fuzz-smoke: using the nightly toolchain" >&2
else
  export RUSTC_BOOTSTRAP=1
  echo "fuzz-smoke: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1" >&2
fi

FUZZ_FLAGS=(--sanitizer "$SANITIZER" --target-dir "$TARGET_DIR")
if [ "${FUZZ_RELEASE:-0}" != 1 ]; then
  FUZZ_FLAGS+=(--dev)
fi

# cargo fuzz runs from the project root and finds fuzz/ there.
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <("${CARGO[@]}" fuzz list)
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
  echo "fuzz-smoke: no fuzz targets found" >&2
  exit 1
fi

start=$(date +%s)
echo "fuzz-smoke: building ${TARGETS[*]}" >&2
"${CARGO[@]}" fuzz build "${FUZZ_FLAGS[@]}"
echo "fuzz-smoke: built in $(($(date +%s) - start)) s" >&2

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kargo-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

failed=()
for t in "${TARGETS[@]}"; do
  seeds=$ROOT/fuzz/corpus/$t
  if [ ! -d "$seeds" ]; then
    echo "fuzz-smoke: $t has no seed corpus at fuzz/corpus/$t" >&2
    failed+=("$t")
    continue
  fi
  mkdir -p "$WORK/$t"
  echo "fuzz-smoke: running $t for ${SECONDS_PER_TARGET} s" >&2
  # The first corpus directory receives new inputs; the seeds are only read.
  if ! "${CARGO[@]}" fuzz run "${FUZZ_FLAGS[@]}" "$t" "$WORK/$t" "$seeds" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$WORK/$t.log" 2>&1; then
    tail -n 60 "$WORK/$t.log" >&2
    failed+=("$t")
    continue
  fi
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' \
    "$WORK/$t.log" | sed "s/^/fuzz-smoke: $t: /" >&2 || true
done

echo "fuzz-smoke: finished in $(($(date +%s) - start)) s" >&2
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz-smoke: all ${#TARGETS[@]} targets ran without a crash" >&2
