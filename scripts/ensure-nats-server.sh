#!/usr/bin/env bash
# Makes sure a nats-server binary exists. Installs Debian's package when root; otherwise says what to do.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "nats-server not found: installing Debian's nats-server package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq nats-server >/dev/null
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || { echo "installing nats-server failed" >&2; exit 1; }
  exit 0
fi
echo "nats-server is required and was not found. Install it, e.g. 'sudo apt-get install nats-server' (Debian/Ubuntu)," >&2
echo "or put a nats-server binary (v2.9+) on PATH." >&2
exit 1
