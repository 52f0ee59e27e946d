# Git servers for the tests, sourced by ci/test.sh (bash, `set -euo pipefail` is on).
#
# Serves ONE root directory of bare repositories, "$KARGO_TEST_STATE/git", over
#   - smart HTTP: lighttpd + git-http-backend; anonymous read, basic auth required for push,
#     and for every request to a repository whose name starts with `private-` (so tests can
#     check that wrong credentials are refused on reads too),
#   - smart HTTPS: the same over TLS (lighttpd's mod_openssl) with a self-signed
#     certificate made at start for 127.0.0.1 (insecureSkipTLSVerify tests),
#   - git://: git daemon with receive-pack enabled (anonymous push),
#   - ssh://: sshd with a throwaway host key and client key,
# all on 127.0.0.1 on free ports (recipes: docs/test-servers.md §1a–1d in the shared docs).
# Like GitHub and GitLab, all three servers allow partial clones (uploadpack.allowFilter,
# passed through GIT_CONFIG_* in the server's environment); file:// uses the client's config.
# A test creates a repository with `git init --bare -b main "$TEST_GIT_ROOT/<name>.git"`
# and reaches it as
#   "$TEST_GIT_HTTP_URL/<name>.git"    (push: user $TEST_GIT_HTTP_USER, password $TEST_GIT_HTTP_PASSWORD)
#   "$TEST_GIT_HTTPS_URL/<name>.git"   (the same; certificate $TEST_GIT_HTTPS_CERT, trusted by no one)
#   "$TEST_GIT_DAEMON_URL/<name>.git"
#   "$TEST_GIT_SSH_URL/<name>.git"     (ssh -i $TEST_GIT_SSH_KEY -o UserKnownHostsFile=$TEST_GIT_SSH_KNOWN_HOSTS)
#   "file://$TEST_GIT_ROOT/<name>.git"
# Every helper and variable here is prefixed `_kg_` and unset at the end, because this file
# runs inside ci/test.sh's shell.

# shellcheck disable=SC2317 # the _kg_start_* and _kg_ready_* functions are called through _kg_launch
_kg_dir="$KARGO_TEST_STATE/git-servers"   # configs, keys, logs
_kg_root="$KARGO_TEST_STATE/git"          # the bare repositories
mkdir -p "$_kg_dir" "$_kg_dir/www" "$_kg_root"
git init -q --bare -b main "$_kg_root/probe.git"

_kg_fail() {
  echo "ci/servers.d/10-git.sh: $*" >&2
  exit 1
}

# Prints a port in 10000..32767 (below Linux's ephemeral range, so outgoing connections do
# not hold it) on which nothing listens. The server's own bind is the final check: a start
# that fails (e.g. "Address already in use") is retried with another port by _kg_launch.
_kg_pick_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 22768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  _kg_fail "no free port found on 127.0.0.1"
}

_kg_tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _kg_launch NAME START_FN READY_FN LOG: picks a port, calls START_FN PORT (which starts the
# server in the background of this shell and sets _kg_pid), records the PID, and polls
# READY_FN PORT every 50 ms for at most ~10 s. If the server exits before it is ready, it is
# retried on another port (3 attempts). On success sets _kg_port.
_kg_launch() {
  local name=$1 start=$2 ready=$3 log=$4 attempt port
  for attempt in 1 2 3; do
    port=$(_kg_pick_port)
    "$start" "$port"
    echo "$_kg_pid" >>"$KARGO_TEST_STATE/pids"
    for _ in $(seq 1 200); do
      if ! kill -0 "$_kg_pid" 2>/dev/null; then
        wait "$_kg_pid" 2>/dev/null || true
        echo "ci/servers.d/10-git.sh: $name exited during start on port $port (attempt $attempt):" >&2
        tail -n 5 "$log" >&2 || true
        continue 2
      fi
      if "$ready" "$port"; then
        _kg_port=$port
        return 0
      fi
      sleep 0.05
    done
    tail -n 20 "$log" >&2 || true
    _kg_fail "$name did not become ready on 127.0.0.1:$port within 10 s (log: $log)"
  done
  _kg_fail "$name could not be started (3 attempts; log: $log)"
}

_kg_gitcore=$(git --exec-path)
[ -x "$_kg_gitcore/git-http-backend" ] || _kg_fail "missing $_kg_gitcore/git-http-backend"
[ -x "$_kg_gitcore/git-daemon" ] || _kg_fail "missing $_kg_gitcore/git-daemon"

# --- smart HTTP (lighttpd + git-http-backend) ----------------------------------------------
_kg_pass=""
while [ "${#_kg_pass}" -lt 24 ]; do
  _kg_pass+=$(LC_ALL=C tr -dc 'A-Za-z0-9' < <(head -c 256 /dev/urandom))
done
_kg_pass=${_kg_pass:0:24}
(umask 077 && printf 'kargo:%s\n' "$_kg_pass" >"$_kg_dir/lighttpd-users")

# _kg_lighttpd_conf NAME PORT [EXTRA]: writes "$_kg_dir/NAME.conf", the smart-HTTP server
# on 127.0.0.1:PORT with EXTRA lines appended (the HTTPS server's TLS settings).
_kg_lighttpd_conf() {
  local name=$1 port=$2 extra=${3:-}
  cat >"$_kg_dir/$name.conf" <<EOF
server.modules = ( "mod_auth", "mod_authn_file", "mod_alias", "mod_setenv", "mod_cgi" )
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$_kg_dir/www"
server.errorlog = "$_kg_dir/$name-error.log"
alias.url = ( "/" => "$_kg_gitcore/git-http-backend/" )
cgi.assign = ( "" => "" )
setenv.add-environment = ( "GIT_PROJECT_ROOT" => "$_kg_root", "GIT_HTTP_EXPORT_ALL" => "1",
  "GIT_CONFIG_COUNT" => "1", "GIT_CONFIG_KEY_0" => "uploadpack.allowFilter", "GIT_CONFIG_VALUE_0" => "true" )
auth.backend = "plain"
auth.backend.plain.userfile = "$_kg_dir/lighttpd-users"
\$HTTP["querystring"] =~ "service=git-receive-pack" { auth.require = ( "" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) ) }
\$HTTP["url"] =~ "/git-receive-pack\$" { auth.require = ( "" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) ) }
\$HTTP["url"] =~ "^/private-" { auth.require = ( "" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) ) }
$extra
EOF
}

_kg_start_http() {
  _kg_lighttpd_conf lighttpd "$1"
  /usr/sbin/lighttpd -D -f "$_kg_dir/lighttpd.conf" </dev/null >>"$_kg_dir/lighttpd.log" 2>&1 &
  _kg_pid=$!
}

# GET /probe.git/info/refs?service=git-upload-pack must answer 200.
_kg_ready_http() {
  local status
  status=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf 'GET /probe.git/info/refs?service=git-upload-pack HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3 && printf '%s' "$line"
  ) || true
  [[ $status == "HTTP/1."?" 200"* ]]
}

_kg_launch lighttpd _kg_start_http _kg_ready_http "$_kg_dir/lighttpd.log"
export TEST_GIT_HTTP_URL="http://127.0.0.1:$_kg_port"
export TEST_GIT_HTTP_USER=kargo
export TEST_GIT_HTTP_PASSWORD=$_kg_pass

# --- smart HTTPS (a second lighttpd with mod_openssl and a self-signed certificate) ------------
# The same repositories and rules as smart HTTP, over TLS with a certificate made now for
# 127.0.0.1 that no client trusts: tests check that clones fail with a certificate error
# unless TLS verification is skipped (insecureSkipTLSVerify). The certificate is
# $TEST_GIT_HTTPS_CERT for tests that want to trust it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kargo-test-git" \
  -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$_kg_dir/https-key.pem" -out "$_kg_dir/https-cert.pem" 2>>"$_kg_dir/openssl.log" ||
  _kg_fail "openssl could not make the HTTPS certificate (log: $_kg_dir/openssl.log)"

_kg_start_https() {
  _kg_lighttpd_conf lighttpd-https "$1" "server.modules += ( \"mod_openssl\" )
ssl.engine = \"enable\"
ssl.pemfile = \"$_kg_dir/https-cert.pem\"
ssl.privkey = \"$_kg_dir/https-key.pem\""
  /usr/sbin/lighttpd -D -f "$_kg_dir/lighttpd-https.conf" </dev/null >>"$_kg_dir/lighttpd-https.log" 2>&1 &
  _kg_pid=$!
}

# `git ls-remote` of the probe repository answers (certificate verification off).
_kg_ready_https() {
  _kg_tcp_open "$1" || return 1
  git -c http.sslVerify=false ls-remote "https://127.0.0.1:$1/probe.git" >/dev/null 2>>"$_kg_dir/https-probe.log"
}

_kg_launch lighttpd-https _kg_start_https _kg_ready_https "$_kg_dir/lighttpd-https.log"
export TEST_GIT_HTTPS_URL="https://127.0.0.1:$_kg_port"
export TEST_GIT_HTTPS_CERT="$_kg_dir/https-cert.pem"

# --- git daemon (git://) ----------------------------------------------------------------------
_kg_start_daemon() {
  GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=uploadpack.allowFilter GIT_CONFIG_VALUE_0=true \
    "$_kg_gitcore/git-daemon" --listen=127.0.0.1 --port="$1" --base-path="$_kg_root" \
    --export-all --enable=receive-pack --reuseaddr --informative-errors "$_kg_root" \
    </dev/null >>"$_kg_dir/git-daemon.log" 2>&1 &
  _kg_pid=$!
}
_kg_launch git-daemon _kg_start_daemon _kg_tcp_open "$_kg_dir/git-daemon.log"
export TEST_GIT_DAEMON_URL="git://127.0.0.1:$_kg_port"

# --- sshd (ssh://) ----------------------------------------------------------------------------
if [ ! -d /run/sshd ]; then # sshd refuses to start without its privilege separation directory
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; else sudo mkdir -p /run/sshd; fi
fi
rm -f "$_kg_dir/ssh_host_ed25519" "$_kg_dir/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C kargo-test-host -f "$_kg_dir/ssh_host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C kargo-test-client -f "$_kg_dir/id_ed25519"
cp "$_kg_dir/id_ed25519.pub" "$_kg_dir/authorized_keys"
_kg_user=$(id -un)

# Two speed-ups, measured: without the post-quantum key exchanges (test-only server) a
# connection takes ~150 ms instead of ~300 ms; SHLVL=1 makes the login shell skip ~/.bashrc,
# which bash otherwise sources for every ssh command (pyenv init there cost ~400 ms).
_kg_start_sshd() {
  local port=$1
  cat >"$_kg_dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $_kg_dir/ssh_host_ed25519
PidFile $_kg_dir/sshd.pid
AuthorizedKeysFile $_kg_dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $_kg_user
UsePAM no
StrictModes no
AcceptEnv GIT_PROTOCOL
KexAlgorithms -sntrup*,mlkem*
SetEnv SHLVL=1 GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=uploadpack.allowFilter GIT_CONFIG_VALUE_0=true
EOF
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$_kg_dir/ssh_host_ed25519.pub")" \
    >"$_kg_dir/known_hosts"
  /usr/sbin/sshd -D -e -f "$_kg_dir/sshd_config" </dev/null >>"$_kg_dir/sshd.log" 2>&1 &
  _kg_pid=$!
}

# Ready = the port accepts connections and `git ls-remote` works with strict host-key checking.
_kg_ready_sshd() {
  _kg_tcp_open "$1" || return 1
  GIT_SSH_COMMAND="ssh -F /dev/null -i $_kg_dir/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$_kg_dir/known_hosts -o LogLevel=ERROR" \
    git ls-remote "ssh://$_kg_user@127.0.0.1:$1$_kg_root/probe.git" >/dev/null 2>>"$_kg_dir/sshd-probe.log"
}
_kg_launch sshd _kg_start_sshd _kg_ready_sshd "$_kg_dir/sshd.log"
export TEST_GIT_SSH_URL="ssh://$_kg_user@127.0.0.1:$_kg_port$_kg_root"
export TEST_GIT_SSH_KEY="$_kg_dir/id_ed25519"
export TEST_GIT_SSH_KNOWN_HOSTS="$_kg_dir/known_hosts"

export TEST_GIT_ROOT="$_kg_root"
echo "ci/servers.d/10-git.sh: ready: $TEST_GIT_HTTP_URL $TEST_GIT_HTTPS_URL $TEST_GIT_DAEMON_URL $TEST_GIT_SSH_URL" >&2

unset -f _kg_fail _kg_pick_port _kg_tcp_open _kg_launch _kg_lighttpd_conf _kg_start_http \
  _kg_ready_http _kg_start_https _kg_ready_https _kg_start_daemon _kg_start_sshd _kg_ready_sshd
unset _kg_dir _kg_root _kg_gitcore _kg_pass _kg_user _kg_pid _kg_port
