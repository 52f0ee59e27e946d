# WebDriver server for the browser tests, sourced by ci/test.sh (bash, `set -euo pipefail`
# is on).
#
# Debian's chromedriver (package chromium-driver) on 127.0.0.1 on a free port; each test
# opens its own session, which starts its own headless Chromium (/usr/bin/chromium, package
# chromium) with a fresh profile (tests/support/browser.rs) and ends it when done. The
# server accepts connections from the local machine only (chromedriver's default
# --allowed-ips). Its log (INFO: one line per WebDriver command) is "$TEST_CHROMEDRIVER_LOG".
#
# Exports TEST_CHROMEDRIVER_URL (`http://127.0.0.1:<port>`). Every helper and variable here
# is prefixed `_kc_` and unset at the end, because this file runs inside ci/test.sh's shell.

_kc_dir="$KARGO_TEST_STATE/chromedriver"
mkdir -p "$_kc_dir"

_kc_fail() {
  echo "ci/servers.d/50-chromedriver.sh: $*" >&2
  exit 1
}

[ -x /usr/bin/chromedriver ] || _kc_fail "chromedriver is not installed (Debian package chromium-driver)"
[ -x /usr/bin/chromium ] || _kc_fail "chromium is not installed (Debian package chromium)"
command -v pgrep >/dev/null 2>&1 || _kc_fail "pgrep is not installed (Debian package procps)"

_kc_pick_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 22768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  _kc_fail "no free port found on 127.0.0.1"
}

# GET /status must answer 200 with chromedriver's `"ready":true` (a different server that
# took the port in between does not pass). chromedriver refuses HTTP/1.0 and keeps the
# connection open after its answer even with `Connection: close`, so the body is read by
# its Content-Length.
_kc_ready() {
  local response
  response=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf 'GET /status HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" >&3
    IFS= read -r -t 2 status <&3 || exit 0
    len=0
    while IFS= read -r -t 2 line <&3; do
      line=${line%$'\r'}
      [ -z "$line" ] && break
      shopt -s nocasematch
      [[ $line == content-length:* ]] && len=${line#*:} && len=${len// /}
    done
    body=""
    [ "$len" -gt 0 ] && IFS= read -r -t 2 -N "$len" body <&3
    printf '%s\n%s' "$status" "$body"
  ) || true
  [[ $response == "HTTP/1."?" 200"* && $response == *'"ready":true'* ]]
}

: >"$_kc_dir/chromedriver.log"
_kc_port=""
for _kc_attempt in 1 2 3; do
  _kc_try=$(_kc_pick_port)
  # chromedriver runs under a small supervisor shell (its PID is the one recorded): stopped
  # alone, chromedriver leaves running every Chromium whose session a test did not end (a
  # test killed or aborted), so on SIGTERM the supervisor first stops chromedriver's
  # children (the browsers, which take their renderers with them), polls until they are
  # gone (at most ~5 s, then SIGKILL), then stops chromedriver.
  bash -c '
    /usr/bin/chromedriver "$@" </dev/null &
    cd=$!
    # Whether any of the PIDs given still runs (a zombie, exited but not yet reaped by
    # chromedriver, does not count).
    running() {
      local pid stat
      for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        [ "${stat%% *}" != Z ] && return 0
      done
      return 1
    }
    stop() {
      local kids _
      kids=$(pgrep -P "$cd" || true)
      if [ -n "$kids" ]; then
        kill -TERM $kids 2>/dev/null || true
        for _ in $(seq 1 100); do
          running $kids || break
          sleep 0.05
        done
        kill -KILL $kids 2>/dev/null || true
      fi
      kill -TERM "$cd" 2>/dev/null || true
      wait "$cd" 2>/dev/null || true
      exit 0
    }
    trap stop TERM
    wait "$cd"
  ' chromedriver-supervisor --port="$_kc_try" --log-path="$_kc_dir/chromedriver.log" --append-log \
    </dev/null >>"$_kc_dir/chromedriver.out" 2>&1 &
  _kc_pid=$!
  echo "$_kc_pid" >>"$KARGO_TEST_STATE/pids"
  for _ in $(seq 1 200); do
    if ! kill -0 "$_kc_pid" 2>/dev/null; then
      wait "$_kc_pid" 2>/dev/null || true
      echo "ci/servers.d/50-chromedriver.sh: chromedriver exited during start on port $_kc_try (attempt $_kc_attempt):" >&2
      tail -n 5 "$_kc_dir/chromedriver.out" "$_kc_dir/chromedriver.log" >&2 || true
      continue 2
    fi
    if _kc_ready "$_kc_try"; then
      _kc_port=$_kc_try
      break 2
    fi
    sleep 0.05
  done
  tail -n 20 "$_kc_dir/chromedriver.out" "$_kc_dir/chromedriver.log" >&2 || true
  _kc_fail "chromedriver did not become ready on 127.0.0.1:$_kc_try within 10 s"
done
[ -n "$_kc_port" ] || _kc_fail "chromedriver could not be started (3 attempts; log: $_kc_dir/chromedriver.log)"

export TEST_CHROMEDRIVER_URL="http://127.0.0.1:$_kc_port"
export TEST_CHROMEDRIVER_LOG="$_kc_dir/chromedriver.log"
echo "ci/servers.d/50-chromedriver.sh: ready: $TEST_CHROMEDRIVER_URL ($(/usr/bin/chromedriver --version | cut -d' ' -f1,2))" >&2

unset -f _kc_fail _kc_pick_port _kc_ready
unset _kc_dir _kc_port _kc_try _kc_pid _kc_attempt
