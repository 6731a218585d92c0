#!/usr/bin/env bash
# Syscalls per echoed message of one echo server: runs one `net` echo
# measurement and counts the server process's syscalls with perf's
# tracepoints (cheap enough not to change the pattern, unlike strace).
# perf attaches to the server as it starts, so it misses the first tens of
# milliseconds of the 2 s run: the per-message figures read a few percent
# low; their ratios (recv per send, epoll_wait per recv) are exact.
#
#   bash bench/echo_syscalls.sh echo-100k-c10 tulip
#   bash bench/echo_syscalls.sh echo-100k-c10 tokio        # also: tokio-256k, floor,
#                                                          # tulip-streams, uvloop-protocol, ...
# Needs root (or perf_event_paranoid <= -1) and a release build of bench
# and the examples (`cargo build --release -p bench --examples`).
set -euo pipefail
cd "$(dirname "$0")/.."
case=${1:?case, e.g. echo-100k-c10}; who=${2:-tulip}
ev=syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_read
ev=$ev,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl
ev=$ev,context-switches,task-clock
stats=$(mktemp); result=$(mktemp)
trap 'rm -f "$stats" "$result"' EXIT
target/release/bench --child net "$case" "$who" --ops 0 >"$result" &
child=$!
server=
for _ in $(seq 200); do
  server=$(pgrep -P "$child" | head -1) && [ -n "$server" ] && break
  sleep 0.05
done
[ -n "$server" ] || { echo "no server process under $child" >&2; exit 1; }
# The clients run for 2 s once the server is listening.
perf stat -x, -o "$stats" -e "$ev" -p "$server" -- sleep 2.3 2>/dev/null || true
wait "$child"
msgs=$(sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p' "$result" | awk '{print $1 * 2}')
[ -n "$msgs" ] || { echo "no result: $(cat "$result")" >&2; exit 1; }
echo "$case $who: $(sed -n 's/^RESULT //p' "$result")"
awk -F, -v n="$msgs" '!/^#/ && $1 ~ /^[0-9.]+$/ && $1 > 0 {
  printf "  %-34s %10.0f  %6.2f per message\n", $3, $1, $1 / n }' "$stats"
