#!/usr/bin/env python3
"""protokd against PyTorch (CPU) on the same machine, same shapes: VNet forward and ProtoKD step.

For each row, runs `protokd bench --what W --shape S --filters F --repeat R --json ...` and the
same computation in PyTorch (model, losses and Adam from tools/parity/make_fixtures.py, inputs
as tools/bench/pytorch_vnet.py), each in its own process so that its peak memory (ru_maxrss)
is its own, and prints median seconds, peak memory and the ratio protokd / PyTorch.

Usage (from the repository root, after `cargo build --release`):

    python3 tools/bench/compare.py [--repeat 3] [--warmup 1] [--threads 2] [--filters 16]
                                   [--rows forward:1,4,96,128,128 step:1,4,96,128,128]
                                   [--engine cpu|spec]

--engine is passed to `protokd bench`: cpu (the default) is the fast CPU engine (protokd-cpu),
spec the specification's plain loops (protokd-reference).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def torch_worker(what, shape, filters, repeat, threads, warmup):
    """Runs in a child process: times PyTorch, prints one JSON line."""
    sys.path.insert(0, HERE)
    import torch
    import pytorch_vnet as pv

    if threads:
        torch.set_num_threads(threads)
    pv.N_FILTERS = filters
    fn = pv.bench_forward if what == "forward" else pv.bench_step
    times = fn(tuple(shape), repeat, warmup)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"median_s": statistics.median(times), "min_s": min(times),
                      "max_s": max(times), "peak_rss_bytes": peak,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


def run_torch(what, shape, filters, repeat, threads, warmup):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", what,
           ",".join(map(str, shape)), str(filters), str(repeat), str(threads or 0), str(warmup)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_protokd(what, shape, filters, repeat, threads, engine, warmup):
    exe = os.path.join(ROOT, "target", "release", "protokd")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [exe]
        if threads:
            cmd += ["--threads", str(threads)]
        cmd += ["bench", "--engine", engine, "--what", what, "--shape", ",".join(map(str, shape)),
                "--filters", str(filters), "--warmup", str(warmup), "--repeat", str(repeat),
                "--json", out]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        with open(out) as f:
            return json.load(f)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        what, shape, filters, repeat, threads, warmup = sys.argv[2:8]
        torch_worker(what, [int(v) for v in shape.split(",")], int(filters), int(repeat),
                     int(threads), int(warmup))
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first, both sides")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--engine", default="cpu", choices=["cpu", "spec"],
                    help="protokd's engine: cpu (fast CPU engine, default) or spec")
    ap.add_argument("--rows", nargs="+",
                    default=["forward:1,4,96,128,128", "step:1,4,96,128,128"])
    a = ap.parse_args()
    print(f"{'what':8} {'shape':16} {'protokd s':>10} {'PyTorch s':>10} {'ratio':>6} "
          f"{'protokd GB':>11} {'PyTorch GB':>11}")
    for row in a.rows:
        what, shape = row.split(":")
        shape = [int(v) for v in shape.split(",")]
        ours = run_protokd(what, shape, a.filters, a.repeat, a.threads, a.engine, a.warmup)
        theirs = run_torch(what, shape, a.filters, a.repeat, a.threads, a.warmup)
        gb = lambda v: f"{v / 1e9:.2f}" if v else "n/a"
        print(f"{what:8} {','.join(map(str, shape)):16} {ours['median_s']:10.3f} "
              f"{theirs['median_s']:10.3f} {ours['median_s'] / theirs['median_s']:6.2f} "
              f"{gb(ours['peak_rss_bytes']):>11} {gb(theirs['peak_rss_bytes']):>11}")
    print(f"protokd {ours['protokd_version']} ({ours['device_description']}, "
          f"{ours['threads']} threads), "
          f"PyTorch {theirs['torch']} ({theirs['threads']} threads), n_filters {a.filters}, "
          f"median of {a.repeat} after {a.warmup} warm-up(s)")


if __name__ == "__main__":
    main()
