#!/bin/sh
# Install what clientproxy's demo, tests and benchmarks need on a fresh
# Debian machine: Prosody (Debian's package) and clientproxy itself with its
# Python dependencies (an editable install of this checkout).
set -e
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if ! command -v prosody >/dev/null 2>&1 || ! command -v prosodyctl >/dev/null 2>&1; then
    echo "setup: installing prosody from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prosody >/dev/null
fi

echo "setup: installing clientproxy and its Python dependencies"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e . 2>&1 \
    | grep -v -e "is ignored: it is neither a file nor a directory" >&2 || true
python3 -c "import clientproxy, wokkel, twisted" 
