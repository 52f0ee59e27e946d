#!/usr/bin/env bash
# Runs the whole kargo-rs test suite on a fresh Debian machine that has the Rust toolchain
# and git:
#   1. installs with apt-get whatever the tests need and is missing,
#   2. starts every server the tests need on 127.0.0.1 (scripts in ci/servers.d/),
#   3. runs `cargo test` with the given arguments (default: --workspace --all-features),
#      then, for the full suite (no arguments) or with KARGO_DENY=1, `cargo deny check`,
#   4. without arguments (or with KARGO_FUZZ_SMOKE=1), runs the fuzz smoke test
#      (ci/fuzz-smoke.sh: every fuzz target for ~30 s),
#   5. stops the servers on every exit path (success, failure, Ctrl-C).
#
# Usage: ci/test.sh [cargo test arguments]
#        ci/test.sh --run CMD [ARGS...]   (CMD instead of the tests, e.g. a benchmark)
# With CI=true a test that needs a server fails (never skips) when the server is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- 1. packages -------------------------------------------------------------------------
# Each entry: "<command that must exist>:<Debian package providing it>"; a command given
# as an absolute path (not on a normal user's PATH, like sbin tools) must be executable there,
# a shared library (*.so, not executable) must exist there.
REQUIRED=(
  "git:git"
  "docker-registry:docker-registry"
  "/usr/sbin/lighttpd:lighttpd"
  "/usr/lib/lighttpd/mod_openssl.so:lighttpd-mod-openssl"
  "openssl:openssl"
  "/usr/sbin/sshd:openssh-server"
  "ssh:openssh-client"
  "ssh-keygen:openssh-client"
  # Browser tests: headless Chromium driven over WebDriver (ci/servers.d/50-chromedriver.sh,
  # which also needs pgrep to stop the browsers a killed test left behind).
  "/usr/bin/chromium:chromium"
  "/usr/bin/chromedriver:chromium-driver"
  "pgrep:procps"
  # Notification tests: a real SMTP server (ci/servers.d/70-smtp.sh).
  "/usr/bin/aiosmtpd:python3-aiosmtpd"
)
missing=()
for entry in "${REQUIRED[@]}"; do
  cmd=${entry%%:*}; pkg=${entry#*:}
  case "$cmd" in
    /*.so) [ -f "$cmd" ] || missing+=("$pkg") ;;
    /*) [ -x "$cmd" ] || missing+=("$pkg") ;;
    *) command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done
# PostgreSQL's server binaries live in a versioned directory (ci/servers.d/40-postgres.sh).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=("postgresql")
command -v pg_isready >/dev/null 2>&1 || missing+=("postgresql-client")
# De-duplicate (several commands can come from one package).
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "ci/test.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- 2. servers ----------------------------------------------------------------------------
# Server scripts source this environment: they start their server in the background,
# append its PID to "$KARGO_TEST_STATE/pids", poll until it is ready, and export the
# TEST_* variables the tests read.
KARGO_TEST_STATE=$(mktemp -d "${TMPDIR:-/tmp}/kargo-test.XXXXXX")
export KARGO_TEST_STATE
touch "$KARGO_TEST_STATE/pids"

stop_servers() {
  local status=$?
  if [ -f "$KARGO_TEST_STATE/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done < "$KARGO_TEST_STATE/pids"
    while read -r pid; do
      [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done < "$KARGO_TEST_STATE/pids"
  fi
  rm -rf "$KARGO_TEST_STATE"
  exit "$status"
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for script in ci/servers.d/*.sh; do
  [ -e "$script" ] || continue
  echo "ci/test.sh: starting $(basename "$script" .sh)" >&2
  # shellcheck source=/dev/null
  . "$script"
done

# --- 3a. another command with the servers (benchmarks): ci/test.sh --run CMD [ARGS...] ---
if [ "${1:-}" = "--run" ]; then
  shift
  "$@"
  exit 0
fi

# --- 3. tests ------------------------------------------------------------------------------
# --all-features: the facade's `testing` feature (kargo::testing, its doctest, the
# promotion_test example) is off by default; without it those tests would not be built.
full_suite=0
if [ "$#" -eq 0 ]; then
  full_suite=1
  set -- --workspace --all-features
fi
cargo test "$@"

# --- 3b. supply chain: cargo deny (full suite, or KARGO_DENY=1) ---------------------------
# Licences, duplicate versions and sources are checked offline (deny.toml). Advisories need
# the RustSec database: fetched from GitHub when reachable, else read from KARGO_ADVISORY_DB
# (a clone of github.com/rustsec/advisory-db), else skipped with a notice.
if [ "$full_suite" = 1 ] || [ "${KARGO_DENY:-0}" = 1 ]; then
  # A debug build of cargo-deny installs in about 1.5 min on 2 cores (a release build: 6);
  # the checks take seconds either way.
  command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --debug
  cargo deny check licenses bans sources
  if timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
    cargo deny check advisories
  elif [ -n "${KARGO_ADVISORY_DB:-}" ] && [ -d "$KARGO_ADVISORY_DB" ]; then
    # cargo-deny looks for the database under <db-path>/advisory-db-<hash of its URL>.
    db_root="$KARGO_TEST_STATE/advisory-dbs"
    mkdir -p "$db_root"
    ln -s "$(cd "$KARGO_ADVISORY_DB" && pwd)" "$db_root/advisory-db-3157b0e258782691"
    sed "s|^\[advisories\]|[advisories]\ndb-path = \"$db_root\"|" deny.toml >"$KARGO_TEST_STATE/deny.toml"
    cargo deny --offline --config "$KARGO_TEST_STATE/deny.toml" check advisories
  else
    echo "ci/test.sh: NOTICE: the RustSec advisory database is unreachable and KARGO_ADVISORY_DB" \
      "is not set: cargo deny advisories NOT checked" >&2
  fi
fi

# --- 4. fuzz smoke -------------------------------------------------------------------------
# Every cargo-fuzz target for ~30 s from its seed corpus (ci/fuzz-smoke.sh): in the full
# suite (no arguments), or with KARGO_FUZZ_SMOKE=1.
if [ "$full_suite" = 1 ] || [ "${KARGO_FUZZ_SMOKE:-0}" = 1 ]; then
  ci/fuzz-smoke.sh
fi
