"""Allocation sites of a dhat profile, most blocks first, named by the
first frames in this repo (runtime/ and bench/src/).

    valgrind --tool=dhat --dhat-out-file=dhat.json bench --child sync gather tulip --ops 10000
    python3 dhat_sites.py dhat.json OPS [N]
"""

import json
import re
import sys


def main():
    d = json.load(open(sys.argv[1]))
    ops = float(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    ftbl = d["ftbl"]
    pps = sorted(d["pps"], key=lambda p: -p["tbk"])
    total = sum(p["tbk"] for p in d["pps"])
    print(f"{total / ops:6.2f} allocations per op in all")
    for p in pps[:n]:
        if p["tbk"] < ops / 2:
            break
        frames = " ".join(ftbl[i] for i in p["fs"])
        sites = re.findall(r"\(((?:[\w/]+/)?\w+\.rs):(\d+)\)", frames)
        ours = [f"{f}:{l}" for f, l in sites if not f.startswith("library/")][:3]
        size = p["tb"] // max(p["tbk"], 1)
        print(f"{p['tbk'] / ops:6.2f}/op x {size:4d} B  at {' <- '.join(ours)}")


if __name__ == "__main__":
    main()
