# OCI registry for the tests, sourced by ci/test.sh (bash, `set -euo pipefail` is on).
#
# Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, anonymous, storage under
# "$KARGO_TEST_STATE/oci" (recipe: docs/test-servers.md §2 in the shared docs). Tests push
# and pull at "$TEST_OCI_REGISTRY" (`127.0.0.1:PORT`, plain HTTP), e.g. Helm charts at
# oci://$TEST_OCI_REGISTRY/<unique path>/<chart>.
#
# A second registry requires HTTP basic auth (htpasswd, bcrypt) and writes an access log
# line per request: TEST_OCI_AUTH_REGISTRY (`127.0.0.1:PORT`), TEST_OCI_AUTH_USER,
# TEST_OCI_AUTH_PASSWORD, TEST_OCI_ACCESS_LOG (the file holding the access log; shared by
# concurrent tests, so filter its lines by repository path).
# Every helper and variable here is prefixed `_ko_` and unset at the end, because this file
# runs inside ci/test.sh's shell.

_ko_dir="$KARGO_TEST_STATE/oci"
mkdir -p "$_ko_dir/data"

_ko_fail() {
  echo "ci/servers.d/20-oci.sh: $*" >&2
  exit 1
}

# A port in 10000..32767 (below the ephemeral range) on which nothing listens; the
# registry's own bind is the final check (a failed start is retried on another port).
_ko_pick_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 22768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  _ko_fail "no free port found on 127.0.0.1"
}

# GET /v2/ must answer $2 (default 200).
_ko_ready() {
  local status
  status=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3 && printf '%s' "$line"
  ) || true
  [[ $status == "HTTP/1."?" ${2:-200}"* ]]
}

command -v docker-registry >/dev/null 2>&1 || _ko_fail "docker-registry is not installed (Debian package docker-registry)"

_ko_port=""
for _ko_attempt in 1 2 3; do
  _ko_try=$(_ko_pick_port)
  cat >"$_ko_dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $_ko_dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$_ko_try
  secret: kargo-test-only-secret
YAML
  docker-registry serve "$_ko_dir/config.yml" </dev/null >>"$_ko_dir/registry.log" 2>&1 &
  _ko_pid=$!
  echo "$_ko_pid" >>"$KARGO_TEST_STATE/pids"
  for _ in $(seq 1 200); do
    if ! kill -0 "$_ko_pid" 2>/dev/null; then
      wait "$_ko_pid" 2>/dev/null || true
      echo "ci/servers.d/20-oci.sh: docker-registry exited during start on port $_ko_try (attempt $_ko_attempt):" >&2
      tail -n 5 "$_ko_dir/registry.log" >&2 || true
      continue 2
    fi
    if _ko_ready "$_ko_try"; then
      _ko_port=$_ko_try
      break 2
    fi
    sleep 0.05
  done
  tail -n 20 "$_ko_dir/registry.log" >&2 || true
  _ko_fail "docker-registry did not become ready on 127.0.0.1:$_ko_try within 10 s"
done
[ -n "$_ko_port" ] || _ko_fail "docker-registry could not be started (3 attempts; log: $_ko_dir/registry.log)"

export TEST_OCI_REGISTRY="127.0.0.1:$_ko_port"
echo "ci/servers.d/20-oci.sh: ready: $TEST_OCI_REGISTRY" >&2

# --- the authenticated registry, with an access log ----------------------------------------
_ko_adir="$KARGO_TEST_STATE/oci-auth"
mkdir -p "$_ko_adir/data"
_ko_user=kargo
_ko_pass="pw-$RANDOM$RANDOM"
# bcrypt at cost 4: the registry checks the hash on every request, cost 10+ would make the
# many-request tests slow. htpasswd (apache2-utils) when present, else Python's crypt.
if command -v htpasswd >/dev/null 2>&1; then
  htpasswd -Bbn -C 4 "$_ko_user" "$_ko_pass" | sed '/^$/d' >"$_ko_adir/htpasswd"
else
  python3 -W ignore -c 'import crypt,sys;print(sys.argv[1]+":"+crypt.crypt(sys.argv[2],crypt.mksalt(crypt.METHOD_BLOWFISH,rounds=16)))' \
    "$_ko_user" "$_ko_pass" >"$_ko_adir/htpasswd" ||
    _ko_fail "cannot hash the test password: install apache2-utils (htpasswd) or a python3 with the crypt module"
fi
_ko_aport=""
for _ko_attempt in 1 2 3; do
  _ko_try=$(_ko_pick_port)
  cat >"$_ko_adir/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $_ko_adir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$_ko_try
  secret: kargo-test-only-secret
auth:
  htpasswd:
    realm: kargo-test
    path: $_ko_adir/htpasswd
YAML
  docker-registry serve "$_ko_adir/config.yml" </dev/null >>"$_ko_adir/access.log" 2>&1 &
  _ko_pid=$!
  echo "$_ko_pid" >>"$KARGO_TEST_STATE/pids"
  for _ in $(seq 1 200); do
    if ! kill -0 "$_ko_pid" 2>/dev/null; then
      wait "$_ko_pid" 2>/dev/null || true
      echo "ci/servers.d/20-oci.sh: the auth docker-registry exited during start on port $_ko_try (attempt $_ko_attempt):" >&2
      tail -n 5 "$_ko_adir/access.log" >&2 || true
      continue 2
    fi
    if _ko_ready "$_ko_try" 401; then
      _ko_aport=$_ko_try
      break 2
    fi
    sleep 0.05
  done
  tail -n 20 "$_ko_adir/access.log" >&2 || true
  _ko_fail "the auth docker-registry did not become ready on 127.0.0.1:$_ko_try within 10 s"
done
[ -n "$_ko_aport" ] || _ko_fail "the auth docker-registry could not be started (3 attempts; log: $_ko_adir/access.log)"

export TEST_OCI_AUTH_REGISTRY="127.0.0.1:$_ko_aport"
export TEST_OCI_AUTH_USER="$_ko_user"
export TEST_OCI_AUTH_PASSWORD="$_ko_pass"
export TEST_OCI_ACCESS_LOG="$_ko_adir/access.log"
echo "ci/servers.d/20-oci.sh: ready: $TEST_OCI_AUTH_REGISTRY (basic auth, access log $TEST_OCI_ACCESS_LOG)" >&2

unset -f _ko_fail _ko_pick_port _ko_ready
unset _ko_dir _ko_port _ko_try _ko_pid _ko_attempt _ko_adir _ko_aport _ko_user _ko_pass
