#!/usr/bin/env bash
# Installs axe-core (pinned) into this folder for hosted_browser.rs, which injects it into each
# hosted page to audit it. Idempotent; runs from any folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
