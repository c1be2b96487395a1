#!/usr/bin/env bash
# Headless Chromium for bot-webchat's browser test (tests/browser.rs): returns at once when
# `chromium` is on the PATH (or CHROMIUM names it), otherwise installs Debian's package.
#
#   ./scripts/ensure-chromium.sh
set -euo pipefail
if [[ -n ${CHROMIUM:-} ]] || command -v chromium >/dev/null; then
    exit 0
fi
echo "chromium: installing it with apt-get" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
