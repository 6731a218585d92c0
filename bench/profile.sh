#!/usr/bin/env bash
# Instruction profile of one benchmark child under callgrind (perf's
# hardware counters are not available on this VM).
#
#   bash bench/profile.sh GROUP CASE [CONTENDER] [OPS]
#   bash bench/profile.sh loop switch tulip 100000
#   ALLOC=1 bash bench/profile.sh sync gather tulip 20000   # + allocation sites
#
# Prints the self cost of the hottest functions in instructions per op
# (inlined code is charged to the function it was inlined into, and the
# source file it came from is shown in brackets), then the output file
# for callgrind_annotate / kcachegrind.
set -euo pipefail
cd "$(dirname "$0")/.."
group=${1:?group}; case=${2:?case}; who=${3:-tulip}; ops=${4:-100000}
cargo build --release -p bench -q
out=${TMPDIR:-/tmp}/callgrind.$group.$case.$who.out
valgrind --tool=callgrind --callgrind-out-file="$out" \
  target/release/bench --child "$group" "$case" "$who" --ops "$ops" 2>/dev/null
python3 bench/tools/callgrind_top.py "$out" "$ops" "${TOP:-20}"
echo "full profile: callgrind_annotate $out"
if [ -n "${ALLOC:-}" ]; then
  # Where the allocations come from (dhat), at a tenth of the ops.
  small=$(( ops / 10 > 0 ? ops / 10 : 1 ))
  dh=${TMPDIR:-/tmp}/dhat.$group.$case.$who.json
  valgrind --tool=dhat --dhat-out-file="$dh" \
    target/release/bench --child "$group" "$case" "$who" --ops "$small" >/dev/null 2>&1
  python3 bench/tools/dhat_sites.py "$dh" "$small"
fi
