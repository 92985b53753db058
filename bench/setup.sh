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
# The strongest self-hosted peer: Haraka (npm, pinned in bench/haraka/package-lock.json) with mailparser,
# installed into bench/haraka/node_modules (not committed). Haraka 3.3 needs Node.js >= 20 (Debian 12's
# nodejs is 18); without it bench/run.py leaves Haraka out.
if command -v node >/dev/null && command -v npm >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
  (cd bench/haraka && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "Node.js >= 20 with npm not found: Haraka is left out of bench/run.py" >&2
fi
cargo build --release --locked
(cd bench/mxbench && cargo build --release --locked)
echo "ready: python3 bench/run.py"
