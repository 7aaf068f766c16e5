#!/usr/bin/env bash
# Installs openid-client (a standard OpenID Connect relying party library, pinned) into this
# folder for sdk_openid_client.rs. Idempotent; runs from any folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
