#!/usr/bin/env bash
# The browser tests (tests/browser) drive Debian's Chromium with Playwright; Playwright never
# downloads a browser of its own. Install Chromium from Debian's packages when it is missing.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: installing Debian's chromium package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "${CI:-}" = "true" ]; then
    echo "ensure-chromium: $CHROMIUM is missing and could not be installed (CI)" >&2
else
    echo "ensure-chromium: $CHROMIUM is missing: run 'sudo apt-get install chromium'" >&2
fi
exit 1
