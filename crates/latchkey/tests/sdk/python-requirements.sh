#!/usr/bin/env bash
# Installs a requirements file into the HTTP suite's one Python virtual environment,
# <workspace>/target/sdk/venv, made if missing. Used by the install.sh of each folder here that
# needs Python. Idempotent; runs from any folder.
set -euo pipefail
requirements="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
venv="$root/target/sdk/venv"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
