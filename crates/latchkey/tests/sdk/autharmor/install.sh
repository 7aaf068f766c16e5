#!/usr/bin/env bash
# Installs what the Auth Armor SDK cases of the HTTP suite need: requirements.txt, into the
# suite's shared Python environment. Idempotent; run it from any folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../python-requirements.sh" "$here/requirements.txt"
