#!/usr/bin/env bash
# Installs what the OpenAPI checks of the HTTP suite run: into the suite's one Python
# environment, <workspace>/target/sdk/venv. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../../.." && pwd)"
venv="$root/target/sdk/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
