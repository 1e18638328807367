#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests, unless it is already there.
# Playwright's own browser download does not work offline; we drive this one instead.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi
if ! command -v apt-get >/dev/null 2>&1 || { [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; }; then
    # Without apt or root the browser test is skipped locally; CI must run it, so there it fails.
    echo "install-browser: cannot apt-get install chromium here (needs Debian/Ubuntu and root or sudo);" \
         "install Chromium yourself, or the notebook's browser test is skipped" >&2
    [ -n "${CI:-}" ] && exit 1
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
