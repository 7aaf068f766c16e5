#!/usr/bin/env bash
# Installs the DKIM verifier the HTTP suite checks signatures with (sdk_dkim.rs): dkimpy, and
# PyNaCl for its Ed25519 signatures, into the workspace's shared virtual environment,
# <workspace>/target/sdk/venv. Idempotent; runs from any folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../../.." && pwd)"
venv="$root/target/sdk/venv"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$root/target/sdk"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
