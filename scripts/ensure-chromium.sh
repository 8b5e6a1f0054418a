#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the dashboard's browser tests (Playwright drives it; its own
# browser downloads are never used); idempotent. Installing needs root (as in CI) or passwordless sudo.
set -euo pipefail
CHROMIUM=${TRAINYARD_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  echo "chromium: found $CHROMIUM"
  exit 0
fi

# shellcheck source=apt-install.sh
source "$(dirname "$0")/apt-install.sh"
apt_install chromium chromium "install Chromium and set TRAINYARD_CHROMIUM to its binary"
if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: apt-get installed chromium but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
