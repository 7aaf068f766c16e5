#!/usr/bin/env bash
# Installs the WorkOS SDKs the HTTP suite drives (sdk_workos.rs): the Python SDK into the
# workspace's shared virtual environment, the Node SDK into this folder. Idempotent; runs from
# any folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../python-requirements.sh" "$here/requirements.txt"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
