#!/usr/bin/env python3
"""Fixtures for protokd's sliding-window inference (tests/infer/sliding_window.rs).

A NumPy transcription of the authors' `test_single_case` as the method page (section 7)
states it, written from the page and not from protokd's Rust:

* zero-pad every axis shorter than the patch, pad//2 before and the rest after;
* window starts per axis: min(stride * i, dim - patch) for i in range(ceil((dim - patch) /
  stride) + 1);
* windows with z outermost, then y, then x; each window's probabilities added into a float32
  score map and 1 into a float32 count map; score / count (float32); padding cropped away;
* argmax over the classes (np.argmax: the first maximum wins).

The network is replaced by a deterministic mock predictor that protokd's test implements too.
It depends on the patch values AND on each voxel's position inside the patch, so window
placement, padding and averaging all show in the result. Everything is float32 with one
rounding per operation in a fixed order (no exp), so both sides give the same bits:

    u      = ((0 + x[0]) + x[1]) + ...          channels summed in order
    t_k    = u * A[k] + ((d * B[k] + h * G[k]) + w * E[k])
    w_k    = t_k * t_k + 1
    p_k    = w_k / (((w_0 + w_1) + w_2) + w_3)

with (d, h, w) the voxel's position inside the patch (as float32) and the constants below.
Outputs (little-endian float32 / uint8, C order: [C, D, H, W] and [K, D, H, W]) go to
tests/fixtures/sliding/, with manifest.json giving each case's sizes, window, expected starts and
the SHA-256 of every file. Run from the repository root: python3 tools/sliding/make_fixtures.py
"""

import hashlib
import json
import math
import os

import numpy as np

K = 4
A = np.array([1.0, -0.75, 0.5, 0.25], dtype=np.float32)
B = np.array([0.125, -0.0625, 0.09375, -0.03125], dtype=np.float32)
G = np.array([-0.046875, 0.078125, 0.015625, -0.109375], dtype=np.float32)
E = np.array([0.0234375, 0.0390625, -0.0859375, 0.0703125], dtype=np.float32)

OUT = os.path.join("tests", "fixtures", "sliding")

# name, channels, dims (D, H, W), patch, stride, what it covers
CASES = [
    ("odd", 1, (11, 13, 17), (8, 8, 8), (4, 5, 6), "odd sizes, last start moved back on every axis"),
    ("padded", 1, (5, 20, 13), (8, 8, 16), (4, 4, 8), "z and x shorter than the patch (padding 1+2, 1+2)"),
    ("multiple", 1, (16, 16, 24), (8, 8, 8), (4, 8, 8), "exact multiples, no start moved"),
    ("equal", 1, (8, 12, 16), (8, 12, 16), (4, 6, 8), "dims == patch: one window"),
    ("two_channels", 2, (30, 7, 21), (16, 8, 8), (5, 3, 7), "two channels, y padded 0+1, uneven strides"),
    ("stride_one", 1, (6, 5, 7), (4, 4, 4), (1, 1, 1), "stride 1: up to 64 windows per voxel"),
]


def starts(dim, patch, stride):
    n = math.ceil((dim - patch) / stride) + 1
    return [min(stride * i, dim - patch) for i in range(n)]


def mock_predict(patch):
    """patch: float32 [C, pd, ph, pw] -> float32 [K, pd, ph, pw]."""
    c, pd, ph, pw = patch.shape
    u = np.zeros((pd, ph, pw), dtype=np.float32)
    for ch in range(c):
        u = u + patch[ch]
    d = np.arange(pd, dtype=np.float32)[:, None, None]
    h = np.arange(ph, dtype=np.float32)[None, :, None]
    w = np.arange(pw, dtype=np.float32)[None, None, :]
    wk = []
    for k in range(K):
        pos = (d * B[k] + h * G[k]) + w * E[k]
        t = u * A[k] + pos
        wk.append(t * t + np.float32(1.0))
    total = ((wk[0] + wk[1]) + wk[2]) + wk[3]
    out = np.stack([x / total for x in wk]).astype(np.float32)
    assert out.dtype == np.float32
    return out


def sliding_window(image, patch, stride):
    """image: float32 [C, D, H, W] -> (probabilities [K, D, H, W], labels [D, H, W], windows)."""
    c, dd, hh, ww = image.shape
    pads = [max(p - n, 0) for p, n in zip(patch, (dd, hh, ww))]
    before = [p // 2 for p in pads]
    if any(pads):
        image = np.pad(
            image,
            [(0, 0)] + [(b, p - b) for b, p in zip(before, pads)],
            mode="constant",
            constant_values=0,
        )
    _, pd, ph, pw = image.shape
    sz = starts(pd, patch[0], stride[0])
    sy = starts(ph, patch[1], stride[1])
    sx = starts(pw, patch[2], stride[2])
    score = np.zeros((K, pd, ph, pw), dtype=np.float32)
    cnt = np.zeros((pd, ph, pw), dtype=np.float32)
    for z in sz:
        for y in sy:
            for x in sx:
                win = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                p = mock_predict(image[(slice(None),) + win])
                score[(slice(None),) + win] = score[(slice(None),) + win] + p
                cnt[win] = cnt[win] + np.float32(1.0)
    assert score.dtype == np.float32 and cnt.dtype == np.float32
    prob = score / cnt[None]
    assert prob.dtype == np.float32
    prob = prob[:, before[0]:before[0] + dd, before[1]:before[1] + hh, before[2]:before[2] + ww]
    labels = np.argmax(prob, axis=0).astype(np.uint8)
    return np.ascontiguousarray(prob), labels, (sz, sy, sx)


def write(name, arr):
    data = arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C")
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    manifest = {
        "generator": "tools/sliding/make_fixtures.py",
        "numpy": np.__version__,
        "classes": K,
        "mock": {"A": A.tolist(), "B": B.tolist(), "G": G.tolist(), "E": E.tolist()},
        "cases": {},
    }
    for name, c, dims, patch, stride, what in CASES:
        # z-scored-like values, with some exact zeros (as background after padding would be).
        image = rng.standard_normal((c,) + dims).astype(np.float32)
        image[rng.random(image.shape) < 0.1] = 0.0
        prob, labels, wins = sliding_window(image, patch, stride)
        manifest["cases"][name] = {
            "what": what,
            "channels": c,
            "dims": list(dims),
            "patch": list(patch),
            "stride": list(stride),
            "starts": [list(s) for s in wins],
            "image": f"{name}_image.f32",
            "probabilities": f"{name}_probabilities.f32",
            "labels": f"{name}_labels.u8",
            "sha256": {
                "image": write(f"{name}_image.f32", image),
                "probabilities": write(f"{name}_probabilities.f32", prob),
                "labels": write(f"{name}_labels.u8", labels),
            },
            "label_counts": np.bincount(labels.ravel(), minlength=K).tolist(),
        }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
