#!/usr/bin/env bash
# Installs what the OpenAPI checks of the HTTP suite run, into the suite's shared Python
# environment. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../python-requirements.sh" "$here/requirements.txt"
