# A real SMTP server for the notification tests (tests/notifications.rs), sourced by
# ci/test.sh (bash, `set -euo pipefail` is on): Debian's aiosmtpd (package
# python3-aiosmtpd, run by ci/smtp-server.py with Debian's /usr/bin/python3) on 127.0.0.1
# on a free port, plain SMTP, writing every mail it accepts into a Maildir in the test
# state (one file per mail under `new/`). AUTH PLAIN/LOGIN accept only a user and a random
# password made here; a client that does not authenticate may send too.
#
# Exports TEST_SMTP_ADDR (`127.0.0.1:PORT`), TEST_SMTP_MAILDIR (the Maildir),
# TEST_SMTP_USER and TEST_SMTP_PASSWORD. Shared by
# concurrent tests: each looks for its own mail by a recipient or subject unique to it.
# Every helper and variable here is prefixed `_ks_` and unset at the end.

_ks_fail() {
  echo "ci/servers.d/70-smtp.sh: $*" >&2
  exit 1
}

[ -x /usr/bin/aiosmtpd ] || _ks_fail "aiosmtpd is not installed (Debian package python3-aiosmtpd)"

_ks_dir="$KARGO_TEST_STATE/smtp"
mkdir -p "$_ks_dir/maildir/tmp" "$_ks_dir/maildir/new" "$_ks_dir/maildir/cur"

_ks_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_ks_user=kargo-notify
_ks_pass=""
while [ "${#_ks_pass}" -lt 24 ]; do
  _ks_pass+=$(LC_ALL=C tr -dc 'A-Za-z0-9' < <(head -c 256 /dev/urandom))
done
_ks_pass=${_ks_pass:0:24}

_ks_port=""
for _ks_attempt in 1 2 3; do
  _ks_try=""
  for _ in $(seq 1 200); do
    _ks_p=$((10000 + (RANDOM * 32768 + RANDOM) % 22768))
    if _ks_port_free "$_ks_p"; then _ks_try=$_ks_p; break; fi
  done
  [ -n "$_ks_try" ] || _ks_fail "no free port found on 127.0.0.1"
  /usr/bin/python3 ci/smtp-server.py 127.0.0.1 "$_ks_try" "$_ks_dir/maildir" "$_ks_user" \
    "$_ks_pass" >>"$_ks_dir/server.log" 2>&1 &
  _ks_pid=$!
  echo "$_ks_pid" >>"$KARGO_TEST_STATE/pids"
  # Poll (at most ~20 s) until it accepts connections, or it died (port taken).
  for _ in $(seq 1 200); do
    if ! kill -0 "$_ks_pid" 2>/dev/null; then break; fi
    if ! _ks_port_free "$_ks_try"; then _ks_port=$_ks_try; break; fi
    sleep 0.1
  done
  [ -n "$_ks_port" ] && break
  kill "$_ks_pid" 2>/dev/null || true
done
[ -n "$_ks_port" ] || { cat "$_ks_dir/server.log" >&2; _ks_fail "aiosmtpd did not start"; }

export TEST_SMTP_ADDR="127.0.0.1:$_ks_port"
export TEST_SMTP_MAILDIR="$_ks_dir/maildir"
export TEST_SMTP_USER="$_ks_user"
export TEST_SMTP_PASSWORD="$_ks_pass"
echo "ci/servers.d/70-smtp.sh: ready: $TEST_SMTP_ADDR, mail in $TEST_SMTP_MAILDIR" >&2

unset -f _ks_fail _ks_port_free
unset _ks_dir _ks_user _ks_pass _ks_port _ks_attempt _ks_try _ks_p _ks_pid
