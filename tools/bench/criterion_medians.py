#!/usr/bin/env python3
"""Print the per-iteration median, min and max of every criterion bench under target/criterion.

Criterion's console line shows a confidence interval of the mean (flat sampling); the tables in
docs/performance.md quote the median of the raw samples instead, read from
target/criterion/<group>/<bench>/new/sample.json.

Usage (from the repository root, after `cargo bench --bench vnet` / `--bench layers`):

    python3 tools/bench/criterion_medians.py [--dir target/criterion] [group ...]
"""

import argparse
import glob
import json
import os
import statistics


def fmt(s):
    return f"{s:.3f} s" if s >= 1.0 else f"{s * 1e3:.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="target/criterion")
    ap.add_argument("groups", nargs="*", help="only these groups (default: all)")
    args = ap.parse_args()
    rows = []
    for f in sorted(glob.glob(os.path.join(args.dir, "*", "*", "new", "sample.json"))):
        bench_dir = os.path.dirname(os.path.dirname(f))
        group = os.path.basename(os.path.dirname(bench_dir))
        if args.groups and group not in args.groups:
            continue
        with open(os.path.join(os.path.dirname(f), "benchmark.json")) as fh:
            name = json.load(fh).get("full_id", os.path.basename(bench_dir))
        with open(f) as fh:
            d = json.load(fh)
        per_iter = [t / n / 1e9 for t, n in zip(d["times"], d["iters"])]
        rows.append((name, statistics.median(per_iter), min(per_iter), max(per_iter), len(per_iter)))
    width = max((len(r[0]) for r in rows), default=10)
    print(f"{'bench':<{width}} {'median':>10} {'min':>10} {'max':>10} {'samples':>8}")
    for name, med, lo, hi, n in rows:
        print(f"{name:<{width}} {fmt(med):>10} {fmt(lo):>10} {fmt(hi):>10} {n:>8}")


if __name__ == "__main__":
    main()
