#!/usr/bin/env bash
# Installs what bench/run.py needs on a fresh Debian machine and builds the binaries it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Postfix only for smtp-source / smtp-sink: "No configuration" and the daemon never starts.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postfix python3 python3-pip linux-perf valgrind >/dev/null
else
  echo "not root: install postfix (debconf 'No configuration'), python3-pip yourself" >&2
fi
# The peer: Python's aiosmtpd posting with aiohttp.
python3 -m pip install -q aiosmtpd aiohttp 2>/dev/null || python3 -m pip install -q --break-system-packages aiosmtpd aiohttp
cargo build --release --locked
(cd bench/mxbench && cargo build --release --locked)
echo "ready: python3 bench/run.py"
