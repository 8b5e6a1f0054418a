#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the dashboard's browser tests (Playwright drives it; its own
# browser downloads are never used); idempotent. Installing needs root (as in CI) or passwordless sudo.
set -euo pipefail
CHROMIUM=${TRAINYARD_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  echo "chromium: found $CHROMIUM"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "chromium: $CHROMIUM is missing and installing it needs root: run 'sudo apt-get install -y chromium'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium: $CHROMIUM is missing and there is no apt-get here; install Chromium and set" \
    "TRAINYARD_CHROMIUM to its binary" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh image has no package lists; an existing one may be stale, so fall back to updating them.
if ! "${as_root[@]}" apt-get install -y chromium; then
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y chromium
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: apt-get installed chromium but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
