#!/usr/bin/env python3
"""PyTorch timings of the ProtoKD VNet (CPU, or CUDA with --device cuda), to compare with the
Rust benches and `protokd bench`.

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

With --layers it also times the single layers of benches/layers.rs (same shapes, seeded
uniform values; the gradients through torch.nn.grad and autograd).

On CUDA (--device cuda) TF32 is disabled (torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 False, so convolutions run in full float32 as protokd does),
every timed run ends with torch.cuda.synchronize(), and the peak of
torch.cuda.max_memory_allocated is printed. --rows replaces the default rows, e.g.
`--rows forward:1,4,96,128,128 step:4,4,96,128,128`.

Usage (from the repository root):

    python3 tools/bench/pytorch_vnet.py [--threads N] [--repeat R] [--warmup W] [--layers]
                                        [--device cpu|cuda] [--rows what:N,C,D,H,W ...]
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
from make_fixtures import (  # noqa: E402
    NUM_CLASSES,
    STUDENT_CHANNEL,
    VNet,
    make_adam,
    protokd_losses,
)

N_FILTERS = 16
DEVICE = "cpu"


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


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
    return (torch.rand(shape, generator=g, dtype=torch.float32) * 2.0 - 1.0).to(DEVICE)


def timed(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def bench_forward(shape, repeat, warmup):
    torch.manual_seed(1)
    teacher = VNet(4, NUM_CLASSES, N_FILTERS).eval().to(DEVICE)
    x = image(shape, 11)

    def run():
        with torch.no_grad():
            teacher(x)

    return timed(run, repeat, warmup)


def bench_step(shape, repeat, warmup):
    torch.manual_seed(1)
    teacher = VNet(4, NUM_CLASSES, N_FILTERS).eval().to(DEVICE)
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(2)
    student = VNet(1, NUM_CLASSES, N_FILTERS).train().to(DEVICE)
    opt = make_adam(student)
    x = image(shape, 11)
    y = label_map(*shape[2:]).to(DEVICE).expand(shape[0], 1, *shape[2:]).contiguous()
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


def layer_rows():
    """(name, fn) pairs matching benches/layers.rs."""
    c, side = 16, 64
    g = torch.Generator().manual_seed(21)

    def u(shape, scale=1.0):
        return (torch.rand(shape, generator=g) * 2.0 - 1.0) * scale

    x = u((1, c, side, side, side))
    dy = u((1, c, side, side, side))
    w = u((c, c, 3, 3, 3), 1.0 / (c * 27) ** 0.5)
    xt = u((1, 2 * c, side // 2, side // 2, side // 2))
    wt = u((2 * c, c, 2, 2, 2), 1.0 / (c * 8) ** 0.5)
    bt = u((c,), 1.0 / (c * 8) ** 0.5)
    gamma, beta = torch.ones(c), torch.zeros(c)
    rm, rv = torch.zeros(c), torch.ones(c)

    def bn():
        xg = x.clone().requires_grad_(True)
        gg, bb = gamma.clone().requires_grad_(True), beta.clone().requires_grad_(True)
        y = F.batch_norm(xg, rm, rv, gg, bb, training=True, momentum=0.1, eps=1e-5)
        y.backward(dy)

    rows = [
        ("layers/conv3d_fwd_k3_16to16_1x16x64^3", lambda: F.conv3d(x, w, padding=1)),
        ("layers/conv3d_bwd_input_k3_16to16_1x16x64^3",
         lambda: torch.nn.grad.conv3d_input(x.shape, w, dy, padding=1)),
        ("layers/conv3d_bwd_weight_k3_16to16_1x16x64^3",
         lambda: torch.nn.grad.conv3d_weight(x, w.shape, dy, padding=1)),
        ("layers/conv_transpose3d_fwd_k2s2_32to16_1x32x32^3",
         lambda: F.conv_transpose3d(xt, wt, bt, stride=2)),
        ("layers/batchnorm3d_train_fwd_bwd_1x16x64^3", bn),
    ]
    stages = [(4, c, side)] + [(c * m, c * m, side // m) for m in (2, 4, 8, 16)]
    for cin, cout, s in stages:
        xs = u((1, cin, s, s, s))
        ws = u((cout, cin, 3, 3, 3), 1.0 / (cin * 27) ** 0.5)
        rows.append((f"conv3d_stage/fwd_k3_{cin}to{cout}_1x{cin}x{s}^3",
                     lambda xs=xs, ws=ws: F.conv3d(xs, ws, padding=1)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per row (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    ap.add_argument("--layers", action="store_true", help="also time the layers of benches/layers.rs")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rows", nargs="+", help="what:N,C,D,H,W with what forward or step")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    fns = {"forward": ("forward (eval, no_grad)", bench_forward), "step": ("ProtoKD step", bench_step)}
    if args.rows:
        rows = []
        for r in args.rows:
            what, shape = r.split(":")
            rows.append((*fns[what][:1], tuple(int(v) for v in shape.split(",")), fns[what][1]))
    else:
        rows = [
            ("forward (eval, no_grad)", (1, 4, 64, 64, 64), bench_forward),
            ("ProtoKD step", (1, 4, 64, 64, 64), bench_step),
            ("forward (eval, no_grad)", (1, 4, 96, 128, 128), bench_forward),
        ]
    where = (f"CUDA {torch.cuda.get_device_name()} (TF32 off)" if DEVICE == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(
        f"torch {torch.__version__}, {where}, n_filters {N_FILTERS}, "
        f"float32, median of {args.repeat} runs after {args.warmup} warm-up"
    )
    print(f"{'what':<26} {'shape':<18} {'median s':>9} {'min s':>9} {'max s':>9}")
    for what, shape, fn in rows:
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = fn(shape, args.repeat, args.warmup)
        shp = "x".join(str(s) for s in shape)
        peak = (f" peak {torch.cuda.max_memory_allocated() / 1e9:.2f} GB"
                if DEVICE == "cuda" else "")
        print(
            f"{what:<26} {shp:<18} {statistics.median(times):>9.3f} {min(times):>9.3f} {max(times):>9.3f}{peak}",
            flush=True,
        )
    if args.layers:
        print(f"\n{'layer (torch)':<52} {'median ms':>9} {'min ms':>9} {'max ms':>9}")
        for name, fn in layer_rows():
            times = timed(fn, max(args.repeat, 10), max(args.warmup, 2))
            print(
                f"{name:<52} {1e3 * statistics.median(times):>9.1f} {1e3 * min(times):>9.1f} "
                f"{1e3 * max(times):>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
