# A private PostgreSQL cluster for the tests, sourced by ci/test.sh (bash,
# `set -euo pipefail` is on).
#
# initdb in a directory of the test state, password authentication (scram-sha-256) for the
# role `kargo`, listening on 127.0.0.1 on a free port only (its Unix socket in the same
# directory, never /var/run/postgresql), stopped with the other servers. The cluster runs
# as the invoking user, or as the `postgres` system user when ci/test.sh runs as root
# (PostgreSQL refuses to run as root).
#
# Exports TEST_POSTGRES_URL (`postgres://kargo:<password>@127.0.0.1:<port>/postgres`); the
# role may create databases, so each test makes its own. Every helper and variable here is
# prefixed `_kp_` and unset at the end.

_kp_fail() {
  echo "ci/servers.d/40-postgres.sh: $*" >&2
  exit 1
}

_kp_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$_kp_bin" ] && [ -x "$_kp_bin/initdb" ] ||
  _kp_fail "PostgreSQL is not installed (Debian package postgresql)"

_kp_dir="$KARGO_TEST_STATE/postgres"
mkdir -p "$_kp_dir"
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || _kp_fail "running as root, but there is no postgres user"
  # The cluster's user must reach its directory inside the (root-only) test state.
  chmod 711 "$KARGO_TEST_STATE"
  chown postgres: "$_kp_dir"
  _kp_as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
else
  _kp_as=()
fi
chmod 700 "$_kp_dir"

_kp_pass=""
while [ "${#_kp_pass}" -lt 24 ]; do
  _kp_pass+=$(LC_ALL=C tr -dc 'A-Za-z0-9' < <(head -c 256 /dev/urandom))
done
_kp_pass=${_kp_pass:0:24}
(umask 077 && printf '%s\n' "$_kp_pass" >"$_kp_dir/pwfile")
[ "$(id -u)" -eq 0 ] && chown postgres: "$_kp_dir/pwfile"

"${_kp_as[@]}" "$_kp_bin/initdb" --pgdata="$_kp_dir/data" --username=kargo --pwfile="$_kp_dir/pwfile" \
  --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$_kp_dir/initdb.log" 2>&1 ||
  { cat "$_kp_dir/initdb.log" >&2; _kp_fail "initdb failed"; }
rm -f "$_kp_dir/pwfile"

_kp_pick_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 22768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  _kp_fail "no free port found on 127.0.0.1"
}

_kp_port=""
for _kp_attempt in 1 2 3; do
  _kp_try=$(_kp_pick_port)
  # A simple command (not a function, which would run in a subshell) and setpriv execs
  # postgres, so $! is the postmaster itself: SIGTERM from ci/test.sh is a clean (smart)
  # shutdown once the tests' connections are gone.
  "${_kp_as[@]}" "$_kp_bin/postgres" -D "$_kp_dir/data" -c listen_addresses=127.0.0.1 \
    -c port="$_kp_try" -c unix_socket_directories="$_kp_dir" -c fsync=off \
    -c max_connections=200 >>"$_kp_dir/server.log" 2>&1 &
  _kp_pid=$!
  echo "$_kp_pid" >>"$KARGO_TEST_STATE/pids"
  # Ready when it accepts connections (at most 60 s), or gone (port taken: try another).
  for _ in $(seq 1 600); do
    if pg_isready -q -h 127.0.0.1 -p "$_kp_try" -t 1 >/dev/null 2>&1; then
      _kp_port=$_kp_try
      break
    fi
    kill -0 "$_kp_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$_kp_port" ] && break
  kill "$_kp_pid" 2>/dev/null || true
done
[ -n "$_kp_port" ] || { tail -n 20 "$_kp_dir/server.log" >&2; _kp_fail "PostgreSQL did not start"; }

TEST_POSTGRES_URL="postgres://kargo:$_kp_pass@127.0.0.1:$_kp_port/postgres"
export TEST_POSTGRES_URL
echo "ci/servers.d/40-postgres.sh: ready: 127.0.0.1:$_kp_port (role kargo, password auth)" >&2

unset -f _kp_fail _kp_pick_port
unset _kp_as _kp_bin _kp_dir _kp_pass _kp_port _kp_try _kp_pid _kp_attempt
