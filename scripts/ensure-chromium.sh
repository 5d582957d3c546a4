#!/usr/bin/env bash
# Makes sure a Chromium browser exists for the dashboard's browser test (playwright-core drives it;
# no browser is downloaded by npm). Installs Debian's package when root; otherwise says what to do.
set -euo pipefail
for c in "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$c" ] && [ -x "$c" ]; then exit 0; fi
done
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found: installing Debian's chromium package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null
  [ -x /usr/bin/chromium ] || { echo "installing chromium failed" >&2; exit 1; }
  exit 0
fi
echo "chromium is required for the dashboard browser test and was not found. Install it, e.g." >&2
echo "'sudo apt-get install chromium' (Debian/Ubuntu), or set CHROMIUM_PATH to a Chromium/Chrome binary." >&2
exit 1
