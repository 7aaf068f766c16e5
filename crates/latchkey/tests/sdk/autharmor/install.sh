#!/usr/bin/env bash
# Installs what the Auth Armor SDK cases of the HTTP suite need: the shared Python virtual
# environment at <workspace root>/target/sdk/venv (made if missing) with requirements.txt in it.
# Idempotent; run it from any folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../../../.." && pwd)"
venv="$root/target/sdk/venv"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
