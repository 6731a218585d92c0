#!/usr/bin/env bash
# The sweep demo: builds pinger and sweeps the loopback /24 (safe anywhere).
# Extra arguments go to pinger, e.g. `bash scripts/demo.sh 127.0.0.0/28 --json`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ping >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iputils-ping >/dev/null
  else
    echo "pinger needs ping: sudo apt-get install iputils-ping" >&2
    exit 4
  fi
fi
exec cargo run --release --quiet -p pinger -- "$@"
