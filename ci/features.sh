#!/usr/bin/env bash
# Checks that every Cargo feature of kargo-sources, kargo-steps and the facade (kargo)
# builds on its own: `cargo check` (library only, so dev-dependencies cannot hide a
# missing feature) with no default features, with each feature alone, and with all of
# them. A warning in a workspace crate (an import or item unused under some feature set)
# fails the check too. Then asserts with `cargo tree` that the crates without default
# features pull no git or network crates.
#
# The feature lists are explicit: a new feature must be added here.
#
# Usage: ci/features.sh   (honours CARGO_TARGET_DIR and the other cargo variables)
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCES_FEATURES=(image chart git webhook)
STEPS_FEATURES=(git pull-requests helm kustomize argocd http oci)
FACADE_FEATURES=(image chart git webhook server postgres git-steps pull-requests helm kustomize argocd http oci testing notifications)

log=$(mktemp "${TMPDIR:-/tmp}/kargo-features.XXXXXX")
trap 'rm -f "$log"' EXIT

# check <package> <cargo check arguments...>
check() {
  local pkg=$1
  shift
  echo "+ cargo check -p $pkg $*" >&2
  if ! cargo check --quiet -p "$pkg" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "ci/features.sh: cargo check -p $pkg $* failed" >&2
    exit 1
  fi
  # Cargo prints the warnings of workspace crates only (dependencies' are capped).
  if grep -q '^warning' "$log"; then
    cat "$log" >&2
    echo "ci/features.sh: cargo check -p $pkg $* has warnings" >&2
    exit 1
  fi
}

# check_features <package> <feature...>
check_features() {
  local pkg=$1
  shift
  check "$pkg" --no-default-features
  local f
  for f in "$@"; do
    check "$pkg" --no-default-features --features "$f"
  done
  check "$pkg" --all-features
}

check_features kargo-sources "${SOURCES_FEATURES[@]}"
check_features kargo-steps "${STEPS_FEATURES[@]}"
check_features kargo "${FACADE_FEATURES[@]}"

# Without default features, the model, the in-memory source and the file-editing steps
# must not pull git or network crates.
for pkg in kargo-sources kargo-steps kargo; do
  echo "+ cargo tree -p $pkg --no-default-features -e normal --prefix none" >&2
  if cargo tree -p "$pkg" --no-default-features -e normal --prefix none |
    grep -E '^(gix|reqwest|oci-client|hyper) '; then
    echo "ci/features.sh: $pkg --no-default-features depends on a git or network crate" >&2
    exit 1
  fi
done

echo "ci/features.sh: every feature set builds" >&2
