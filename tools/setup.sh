#!/bin/sh
# Install what clientproxy's demo, tests and benchmarks need on a fresh
# Debian machine: Prosody and ejabberd (Debian's packages; the integration
# tests run against both), Redis and Redis Sentinel (for the state several
# processes share)
# and clientproxy itself with its Python
# dependencies (an editable install of this checkout). The servers' own
# services are not used: the tests start throwaway instances on loopback.
set -e
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=""
command -v prosodyctl >/dev/null 2>&1 || missing="$missing prosody"
ls -d /usr/lib/*/ejabberd-* >/dev/null 2>&1 || missing="$missing ejabberd"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
# Redis Sentinel, for the tests of a Redis that fails over (redis+sentinel://).
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
if [ -n "$missing" ]; then
    echo "setup: installing$missing from Debian's packages"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

echo "setup: installing clientproxy and its Python dependencies"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test]" 2>&1 \
    | grep -v -e "is ignored: it is neither a file nor a directory" >&2 || true
python3 -c "import clientproxy, wokkel, twisted, hypothesis"
