# schemathesis (PyPI), the property-based API tester tests/openapi.rs runs against the
# server's /openapi.json; sourced by ci/test.sh (bash, `set -euo pipefail` is on). Not a
# server: it only installs, once, a pinned schemathesis into a virtualenv under the user's
# cache (reused by later runs) and exports TEST_SCHEMATHESIS, the path of its `schemathesis`
# command. An install that fails (no network, no python3 venv support) leaves the variable
# unset with a warning: the test then skips, or fails with CI=true.

_ks_version=4.32.5
_ks_venv="${XDG_CACHE_HOME:-$HOME/.cache}/kargo-ci/schemathesis-venv"
_ks_bin="$_ks_venv/bin/schemathesis"

_ks_installed() {
  [ -x "$_ks_bin" ] && [ "$("$_ks_bin" --version 2>/dev/null)" = "schemathesis, version $_ks_version" ]
}

_ks_install() {
  command -v python3 >/dev/null 2>&1 || return 1
  rm -rf "$_ks_venv"
  mkdir -p "$(dirname "$_ks_venv")"
  if ! python3 -m venv "$_ks_venv" >/dev/null 2>&1; then
    # Debian's python3 has no venv module without python3-venv.
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends python3-venv >/dev/null || return 1
    rm -rf "$_ks_venv"
    python3 -m venv "$_ks_venv" || return 1
  fi
  "$_ks_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$_ks_version"
}

if ! _ks_installed; then
  echo "ci/servers.d/60-schemathesis.sh: installing schemathesis $_ks_version into $_ks_venv" >&2
  _ks_install || true
fi
if _ks_installed; then
  export TEST_SCHEMATHESIS="$_ks_bin"
  echo "ci/servers.d/60-schemathesis.sh: ready: $TEST_SCHEMATHESIS ($_ks_version)" >&2
else
  echo "ci/servers.d/60-schemathesis.sh: WARNING: schemathesis $_ks_version could not be installed; TEST_SCHEMATHESIS is not set" >&2
fi

unset -f _ks_installed _ks_install
unset _ks_version _ks_venv _ks_bin
