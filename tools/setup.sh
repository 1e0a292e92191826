#!/bin/sh
# Install what clientproxy's demo, tests and benchmarks need on a fresh
# Debian machine, then clientproxy itself into a virtual environment of
# this checkout (.venv), so the README's commands run from .venv/bin/python:
#
#  - from Debian's packages: Python 3 with its venv module (python3-venv:
#    Debian's Python refuses pip outside a virtual environment, PEP 668),
#    Prosody and ejabberd (the integration tests run against both) and
#    Redis and Redis Sentinel (the state several processes share). The servers' own services
#    are not used: the tests start throwaway instances on loopback.
#  - into .venv, with `python3 -m venv` of the python3 first on the PATH:
#    clientproxy, editable (`pip install -e '.[test,redis]'`), with what its
#    tests and --redis need.
#
# Run it again at will: it installs only what is missing, and reinstalls
# clientproxy only when its packaging (pyproject.toml, setup.py) changed.
set -e
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
VENV=.venv

missing=""
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$missing python3-venv"
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

# A .venv whose interpreter no longer runs (made by a Python since removed)
# is made again.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
    echo "setup: $VENV does not run; making it again"
    rm -rf "$VENV"
fi
if [ ! -d "$VENV" ]; then
    echo "setup: making the virtual environment $VENV ($(command -v python3))"
    python3 -m venv "$VENV"
fi

stamp="$VENV/.clientproxy-setup"
packaging=$(cat pyproject.toml setup.py | cksum)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packaging" ] \
    && "$VENV/bin/python" -c "import clientproxy, wokkel, twisted, hypothesis, hiredis" \
        >/dev/null 2>&1; then
    echo "setup: clientproxy is installed in $VENV"
    exit 0
fi

echo "setup: installing clientproxy and its Python dependencies into $VENV"
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,redis]" \
    2>"$errors"; then
    cat "$errors" >&2
    echo "setup: pip could not install clientproxy into $VENV (see above)" >&2
    exit 1
fi
# A pip configuration naming a --find-links directory that is absent
# makes pip say so at every run; nothing else is hidden.
grep -v -e "is ignored: it is neither a file nor a directory" "$errors" >&2 || true
if ! "$VENV/bin/python" -c "import clientproxy, wokkel, twisted, hypothesis, hiredis" \
    >/dev/null 2>&1; then
    echo "setup: clientproxy was installed into $VENV but does not import:" >&2
    "$VENV/bin/python" -c "import clientproxy, wokkel, twisted, hypothesis, hiredis" 2>&1 \
        | tail -n 1 >&2
    exit 1
fi
echo "$packaging" >"$stamp"
echo "setup: done; run the demo with .venv/bin/python demo/run.py"
