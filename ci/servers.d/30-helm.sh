# Classic Helm chart repository for the tests, sourced by ci/test.sh (bash,
# `set -euo pipefail` is on).
#
# lighttpd serves the static directory "$TEST_HELM_REPO_DIR" at "$TEST_HELM_REPO_URL"
# (recipe: docs/test-servers.md §3 in the shared docs), with ETag / Last-Modified and
# conditional requests. Tests write `index.yaml` and `.tgz` files into a subdirectory of
# their own (write index.yaml through a temporary file and a rename) and use
# "$TEST_HELM_REPO_URL/<subdirectory>" as the repository URL. Everything under
# "$TEST_HELM_REPO_URL/private/" requires basic auth as $TEST_HELM_REPO_USER /
# $TEST_HELM_REPO_PASSWORD. Each request is logged (one line per request, "STATUS PATH")
# in "$TEST_HELM_REPO_ACCESS_LOG".
# Every helper and variable here is prefixed `_kh_` and unset at the end, because this file
# runs inside ci/test.sh's shell.

_kh_dir="$KARGO_TEST_STATE/helm-repo"
_kh_root="$_kh_dir/www"
mkdir -p "$_kh_root/private"

_kh_fail() {
  echo "ci/servers.d/30-helm.sh: $*" >&2
  exit 1
}

_kh_pick_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 22768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  _kh_fail "no free port found on 127.0.0.1"
}

# GET /probe.txt must answer 200.
_kh_ready() {
  local status
  status=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf 'GET /probe.txt HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3 && printf '%s' "$line"
  ) || true
  [[ $status == "HTTP/1."?" 200"* ]]
}

[ -x /usr/sbin/lighttpd ] || _kh_fail "lighttpd is not installed (Debian package lighttpd)"
echo ok >"$_kh_root/probe.txt"

_kh_pass=""
while [ "${#_kh_pass}" -lt 24 ]; do
  _kh_pass+=$(LC_ALL=C tr -dc 'A-Za-z0-9' < <(head -c 256 /dev/urandom))
done
_kh_pass=${_kh_pass:0:24}
(umask 077 && printf 'charts:%s\n' "$_kh_pass" >"$_kh_dir/users")
: >"$_kh_dir/access.log"

_kh_port=""
for _kh_attempt in 1 2 3; do
  _kh_try=$(_kh_pick_port)
  # No stat cache: a test that rewrites index.yaml must get the new ETag at once.
  cat >"$_kh_dir/lighttpd.conf" <<CONF
server.modules = ( "mod_auth", "mod_authn_file", "mod_accesslog", "mod_staticfile" )
server.bind = "127.0.0.1"
server.port = $_kh_try
server.document-root = "$_kh_root"
server.errorlog = "$_kh_dir/error.log"
server.stat-cache-engine = "disable"
accesslog.filename = "$_kh_dir/access.log"
accesslog.format = "%>s %U"
mimetype.assign = ( ".yaml" => "application/x-yaml", ".tgz" => "application/gzip", ".txt" => "text/plain" )
auth.backend = "plain"
auth.backend.plain.userfile = "$_kh_dir/users"
auth.require = ( "/private/" => ( "method" => "basic", "realm" => "charts", "require" => "valid-user" ) )
CONF
  /usr/sbin/lighttpd -D -f "$_kh_dir/lighttpd.conf" </dev/null >>"$_kh_dir/lighttpd.log" 2>&1 &
  _kh_pid=$!
  echo "$_kh_pid" >>"$KARGO_TEST_STATE/pids"
  for _ in $(seq 1 200); do
    if ! kill -0 "$_kh_pid" 2>/dev/null; then
      wait "$_kh_pid" 2>/dev/null || true
      echo "ci/servers.d/30-helm.sh: lighttpd exited during start on port $_kh_try (attempt $_kh_attempt):" >&2
      tail -n 5 "$_kh_dir/lighttpd.log" "$_kh_dir/error.log" >&2 || true
      continue 2
    fi
    if _kh_ready "$_kh_try"; then
      _kh_port=$_kh_try
      break 2
    fi
    sleep 0.05
  done
  tail -n 20 "$_kh_dir/error.log" >&2 || true
  _kh_fail "lighttpd did not become ready on 127.0.0.1:$_kh_try within 10 s"
done
[ -n "$_kh_port" ] || _kh_fail "lighttpd could not be started (3 attempts; log: $_kh_dir/error.log)"

export TEST_HELM_REPO_DIR="$_kh_root"
export TEST_HELM_REPO_URL="http://127.0.0.1:$_kh_port"
export TEST_HELM_REPO_USER=charts
export TEST_HELM_REPO_PASSWORD=$_kh_pass
export TEST_HELM_REPO_ACCESS_LOG="$_kh_dir/access.log"
echo "ci/servers.d/30-helm.sh: ready: $TEST_HELM_REPO_URL serving $TEST_HELM_REPO_DIR" >&2

unset -f _kh_fail _kh_pick_port _kh_ready
unset _kh_dir _kh_root _kh_port _kh_try _kh_pid _kh_attempt _kh_pass
