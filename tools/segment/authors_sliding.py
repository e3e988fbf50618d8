#!/usr/bin/env python3
"""Whole-case segmentation: `protokd segment` against the authors' own sliding window, same run.

The authors' `test_single_case` (their evaluate.py, as the method page section 7 states it:
zero padding `pad // 2` before, window starts `min(stride * i, dim - patch)`, float32 score and
count maps, softmax probabilities summed then divided, `np.argmax`) runs PyTorch's VNet (the one
of tools/parity/make_fixtures.py, imported, not copied) on the CPU with default threads, in
evaluation mode under `torch.no_grad()`, on the same preprocessed array that `protokd segment`
reads, with the same patch (96, 128, 128) and stride (48, 64, 64).

Input: a case as the authors' `.npy` array `[5, D, H, W]` (channels T1, T2, T1ce, FLAIR, label),
e.g. written by `tools/npy/make_dataset.py --crop none --statistics float64` from a
`protokd phantom` case of 240 x 240 x 155 (27 windows). Model: a seeded PyTorch VNet
(n_filters 16, 4 input channels) saved as `model.pth` (`torch.save(state_dict)`), which
`protokd segment` reads directly.

Each round times the authors' function (sliding window only: the array is already in memory)
and the whole `protokd segment` process (reading the array, the sliding window, writing the
NIfTI), alternating, and then compares the two label maps voxel by voxel.

Usage (from the repository root, after `cargo build --release`):

    python3 tools/segment/authors_sliding.py --npy CASE.npy --work DIR [--rounds 3] [--seed 0]
                                             [--protokd-args "--simd avx2+fma"]
"""

import argparse
import math
import os
import shlex
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
from make_fixtures import NUM_CLASSES, VNet  # noqa: E402

PATCH = (96, 128, 128)
STRIDE = (48, 64, 64)
RAW_TO_INTERNAL = np.array([0, 2, 3, 0, 1], dtype=np.int64)


def test_single_case(net, image, stride, patch, num_classes):
    """The authors' sliding window on `image` [C, D, H, W] (float32): labels [D, H, W]."""
    _, d, h, w = image.shape
    pads = [max(p - s, 0) for p, s in zip(patch, (d, h, w))]
    image = np.pad(image, [(0, 0)] + [(p // 2, p - p // 2) for p in pads], mode="constant")
    dd, hh, ww = image.shape[1:]
    steps = [math.ceil((n - p) / s) + 1 for n, p, s in zip((dd, hh, ww), patch, stride)]
    score = np.zeros((num_classes, dd, hh, ww), dtype=np.float32)
    cnt = np.zeros((dd, hh, ww), dtype=np.float32)
    for i in range(steps[0]):
        zs = min(stride[0] * i, dd - patch[0])
        for j in range(steps[1]):
            ys = min(stride[1] * j, hh - patch[1])
            for k in range(steps[2]):
                xs = min(stride[2] * k, ww - patch[2])
                sl = (slice(zs, zs + patch[0]), slice(ys, ys + patch[1]), slice(xs, xs + patch[2]))
                patch_t = torch.from_numpy(np.ascontiguousarray(image[(slice(None),) + sl])[None])
                with torch.no_grad():
                    y = F.softmax(net(patch_t)[1], dim=1)  # the VNet returns (features, logits)
                score[(slice(None),) + sl] += y[0].numpy()
                cnt[sl] += 1
    score = score / cnt[None]
    labels = np.argmax(score, axis=0)
    d0, h0, w0 = (p // 2 for p in pads)
    return labels[d0 : d0 + d, h0 : h0 + h, w0 : w0 + w]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npy", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--protokd-args", default="")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    torch.manual_seed(args.seed)
    net = VNet(4, NUM_CLASSES, args.filters).eval()
    model = os.path.join(args.work, "model.pth")
    torch.save(net.state_dict(), model)

    arr = np.load(args.npy)
    image = arr[:4].astype(np.float32)
    exe = os.path.join(ROOT, "target", "release", "protokd")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, image {image.shape}")
    ours_labels = theirs = None
    for r in range(args.rounds):
        t = time.perf_counter()
        theirs = test_single_case(net, image, STRIDE, PATCH, NUM_CLASSES)
        t_theirs = time.perf_counter() - t
        out = os.path.join(args.work, f"seg{r}.nii.gz")
        cmd = [exe, "segment", "--model", model, "--input", args.npy, "--out", out]
        cmd += shlex.split(args.protokd_args)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        t_ours = time.perf_counter() - t
        ours = np.asarray(nib.load(out).dataobj)
        # protokd writes the array's grid as x = W, y = H, z = D, in raw 2018 labels: back to
        # the network's classes (method page section 1: 1 = ET (raw 4), 2 = NCR (1), 3 = ED (2)).
        ours_labels = RAW_TO_INTERNAL[np.transpose(ours, (2, 1, 0))]
        print(
            f"round {r + 1}: authors' test_single_case {t_theirs:.1f} s, protokd segment "
            f"{t_ours:.1f} s, ratio {t_ours / t_theirs:.2f}"
        )
    diff = int((ours_labels != theirs).sum())
    counts = np.bincount(theirs.ravel(), minlength=NUM_CLASSES).tolist()
    print(f"labels differing: {diff} of {theirs.size} voxels; authors' label counts {counts}")


if __name__ == "__main__":
    main()
