#!/usr/bin/env bash
# Installs the DKIM verifier the HTTP suite checks signatures with (sdk_dkim.rs): dkimpy, and
# PyNaCl for its Ed25519 signatures, into the suite's shared Python environment. Idempotent;
# runs from any folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../python-requirements.sh" "$here/requirements.txt"
