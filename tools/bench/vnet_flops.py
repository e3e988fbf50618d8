#!/usr/bin/env python3
"""PyTorch's own count of the convolution FLOPs of the benched work, the independent figure that
tests/audit/bench_breakdown.rs holds protokd's count (src/audit/bench/flops.rs, and the per-call
tally of src/engine/timed.rs) to.

The work is that of `protokd bench` and tools/bench/pytorch_vnet.py (the VNet of
tools/parity/make_fixtures.py):

  forward  the four-channel teacher in evaluation mode under torch.no_grad();
  step     one ProtoKD step: teacher forward (eval, no_grad), the T1ce student forward in
           training mode, all losses, backward, Adam.

torch.utils.flop_counter.FlopCounterMode counts 2 FLOPs per multiply-add of every
convolution (aten.convolution and aten.convolution_backward, transposed ones included;
a backward counts only the gradients it computes, so the student's first convolution has no
input gradient). Only the convolution operators are summed (the rule of protokd bench);
any other counted operator is printed separately.

Usage (from the repository root; torch on the CPU):

    python3 tools/bench/vnet_flops.py --shape 1,4,16,16,16 --filters 2
"""

import argparse
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
from make_fixtures import NUM_CLASSES, STUDENT_CHANNEL, VNet, make_adam, protokd_losses  # noqa: E402
from pytorch_vnet import label_map  # noqa: E402


def count(fn):
    """(convolution FLOPs, {other operator: FLOPs}) of one call of fn."""
    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    conv, other = 0, {}
    for op, n in mode.get_flop_counts()["Global"].items():
        if "convolution" in str(op):
            conv += n
        else:
            other[str(op)] = n
    return conv, other


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="1,4,16,16,16")
    ap.add_argument("--filters", type=int, default=2)
    a = ap.parse_args()
    shape = [int(v) for v in a.shape.split(",")]
    torch.manual_seed(1)
    teacher = VNet(4, NUM_CLASSES, a.filters).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(2)
    student = VNet(1, NUM_CLASSES, a.filters).train()
    opt = make_adam(student)
    x = torch.rand(shape) * 2.0 - 1.0
    y = label_map(*shape[2:]).expand(shape[0], 1, *shape[2:]).contiguous()

    def forward():
        with torch.no_grad():
            teacher(x)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            ft, t = teacher(x)
        fs, s = student(x[:, STUDENT_CHANNEL:STUDENT_CHANNEL + 1])
        protokd_losses(s, fs, t, ft, y)["total"].backward()
        opt.step()

    for name, fn in [("forward", forward), ("step", step)]:
        conv, other = count(fn)
        print(f"{name} shape {a.shape} filters {a.filters}: {conv} convolution FLOPs"
              + (f" (other counted operators: {other})" if other else ""))


if __name__ == "__main__":
    main()
