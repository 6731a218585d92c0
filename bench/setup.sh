#!/usr/bin/env bash
# Installs what the benchmark peers need. Safe to run again.
#   - uvloop (PyPI) for the uvloop columns;
#   - wrk for the http case, fping for the sweep case, GNU time for peak RSS.
# Anything that fails to install is reported; the bench then shows that
# contender as "n/a" with the reason instead of failing.
set -u
cd "$(dirname "$0")"

PY=${BENCH_PYTHON:-python3}
if ! "$PY" -c 'import uvloop' 2>/dev/null; then
  "$PY" -m pip install --quiet uvloop 2>/dev/null ||
    "$PY" -m pip install --quiet --break-system-packages uvloop ||
    echo "setup: could not install uvloop; the uvloop columns will say n/a" >&2
fi
"$PY" -c 'import uvloop; print("uvloop", uvloop.__version__)' 2>/dev/null

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v fping >/dev/null 2>&1 || need+=(fping)
[ -x /usr/bin/time ] || need+=(time)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
      echo "setup: apt-get install ${need[*]} failed; those cases will say n/a" >&2
  else
    echo "setup: missing ${need[*]}: sudo apt-get install ${need[*]}" >&2
  fi
fi
for t in wrk fping; do
  command -v "$t" >/dev/null 2>&1 && echo "$t: $(command -v $t)"
done
exit 0
