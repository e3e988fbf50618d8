#!/usr/bin/env python3
"""PyTorch (CPU) timings of the ProtoKD VNet, to compare with the Rust benches.

The network, the losses and the optimiser settings are imported from
tools/parity/make_fixtures.py (written from /work/shared/protokd-method.md, sections 4-6),
so there is one Python copy of the model. The batch matches benches/vnet.rs: seeded uniform
[-1, 1) image values and the same nested-spheres label map (all four classes).

Timed (median of --repeat runs after --warmup untimed runs, float32, n_filters 16):

  forward  1x4x64^3        teacher (4 channels), eval mode, torch.no_grad()
  step     1x4x64^3        one ProtoKD step: teacher forward (eval, no_grad), student (1
                           channel = T1ce) forward + backward in train mode, all losses
                           (CE + Dice + 10 KD + 0.1 proto), Adam(lr 1e-3, wd 1e-5)
  forward  1x4x96x128x128  as the first row, at the paper's training patch

Usage (from the repository root):

    python3 tools/bench/pytorch_vnet.py [--threads N] [--repeat R] [--warmup W]
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
from make_fixtures import (  # noqa: E402
    NUM_CLASSES,
    STUDENT_CHANNEL,
    VNet,
    make_adam,
    protokd_losses,
)

N_FILTERS = 16


def label_map(d, h, w):
    """[1,1,D,H,W] int64, the nested spheres of benches/common/mod.rs: relative radius
    < 0.3 -> 2, < 0.5 -> 1, < 0.75 -> 3, else 0."""

    def rel(e):
        return (torch.arange(e, dtype=torch.float32) + 0.5 - e / 2.0) / (e / 2.0)

    zz, yy, xx = torch.meshgrid(rel(d), rel(h), rel(w), indexing="ij")
    r = torch.sqrt(zz * zz + yy * yy + xx * xx)
    lab = torch.zeros((d, h, w), dtype=torch.int64)
    lab[r < 0.75] = 3
    lab[r < 0.5] = 1
    lab[r < 0.3] = 2
    return lab[None, None]


def image(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float32) * 2.0 - 1.0


def timed(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench_forward(shape, repeat, warmup):
    torch.manual_seed(1)
    teacher = VNet(4, NUM_CLASSES, N_FILTERS).eval()
    x = image(shape, 11)

    def run():
        with torch.no_grad():
            teacher(x)

    return timed(run, repeat, warmup)


def bench_step(shape, repeat, warmup):
    torch.manual_seed(1)
    teacher = VNet(4, NUM_CLASSES, N_FILTERS).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(2)
    student = VNet(1, NUM_CLASSES, N_FILTERS).train()
    opt = make_adam(student)
    x = image(shape, 11)
    y = label_map(*shape[2:])
    assert sorted(torch.unique(y).tolist()) == list(range(NUM_CLASSES))

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            ft, t = teacher(x)
        fs, s = student(x[:, STUDENT_CHANNEL:STUDENT_CHANNEL + 1])
        losses = protokd_losses(s, fs, t, ft, y)
        losses["total"].backward()
        opt.step()

    return timed(run, repeat, warmup)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per row (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rows = [
        ("forward (eval, no_grad)", (1, 4, 64, 64, 64), bench_forward),
        ("ProtoKD step", (1, 4, 64, 64, 64), bench_step),
        ("forward (eval, no_grad)", (1, 4, 96, 128, 128), bench_forward),
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, n_filters {N_FILTERS}, "
        f"float32 CPU, median of {args.repeat} runs after {args.warmup} warm-up"
    )
    print(f"{'what':<26} {'shape':<18} {'median s':>9} {'min s':>9} {'max s':>9}")
    for what, shape, fn in rows:
        times = fn(shape, args.repeat, args.warmup)
        shp = "x".join(str(s) for s in shape)
        print(
            f"{what:<26} {shp:<18} {statistics.median(times):>9.3f} {min(times):>9.3f} {max(times):>9.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
