#!/usr/bin/env bash
# Installs the WorkOS SDKs the HTTP suite drives (sdk_workos.rs): the Python SDK into the
# workspace's shared virtual environment, the Node SDK into this folder. Idempotent; runs from
# any folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../../.." && pwd)"
venv="$root/target/sdk/venv"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$root/target/sdk"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
