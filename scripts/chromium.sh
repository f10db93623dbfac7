#!/usr/bin/env bash
# Print the path of a headless-capable Chromium, installing Debian's `chromium` package when missing.
# Used by the viewer test fixture (tests/view) to render `srft view` pages in a real browser.
# Idempotent: when chromium is already on PATH this prints its path and returns at once.
#   bash scripts/chromium.sh            -> /usr/bin/chromium
set -euo pipefail
find_chromium() {
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}
if path=$(find_chromium); then echo "$path"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is not installed and installing it needs root: apt-get install -y --no-install-recommends chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
{
  apt-get update
  apt-get install -y --no-install-recommends chromium
} >&2
find_chromium
