"""Self cost per function of a callgrind profile, in instructions per op.

    python3 callgrind_top.py callgrind.out OPS [N]

Functions that callgrind splits by inlined source file are merged; the
brackets show the top source files of each (e.g. `tasks.rs 34, cell.rs 14`).
The total includes process start-up (about 0.6 M instructions).
"""

import collections
import re
import subprocess
import sys


def main():
    path, ops = sys.argv[1], float(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", path],
        capture_output=True,
        text=True,
    ).stdout
    cost = collections.Counter()
    files = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        if line.startswith("-- Auto") or line.startswith("-- User"):
            break
        m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.*?):(.*?)(?: \[.*\])?$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        c = int(m.group(1).replace(",", ""))
        fn = re.sub(r"<([^<>]*) as ([^<>]*)>", r"\1 as \2", m.group(3))
        cost[fn] += c
        files[fn][m.group(2).split("/")[-1]] += c
    for fn, c in cost.most_common(n):
        top = ", ".join(f"{k} {v / ops:.0f}" for k, v in files[fn].most_common(4))
        print(f"{c / ops:8.1f} Ir/op  {fn[:100]}  [{top}]")
    print(f"{sum(cost.values()) / ops:8.1f} Ir/op  total (with start-up)")


if __name__ == "__main__":
    main()
