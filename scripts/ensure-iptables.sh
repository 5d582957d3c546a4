#!/usr/bin/env bash
# Makes sure iptables exists (the namespace host harness cuts and drops traffic with it).
# Installs Debian's package when root (a failed install is an error); otherwise says what to do and
# carries on, since the namespace tests need root and skip without it.
set -euo pipefail
have() { command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || [ -x /sbin/iptables ]; }
if have; then exit 0; fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "iptables not found: installing Debian's iptables package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq iptables >/dev/null
  have || { echo "installing iptables failed" >&2; exit 1; }
  exit 0
fi
echo "iptables is required by the multi-host (network namespace) tests and was not found." >&2
echo "Install it, e.g. 'sudo apt-get install iptables' (Debian/Ubuntu); until then those tests are skipped." >&2
# Not fatal: without root the namespace tests skip anyway, and the rest of the suite must still run.
exit 0
