#!/usr/bin/env python3
"""Read and preprocess one BraTS case with nibabel + NumPy: the comparison for `benches/data.rs`.

The same work as `protokd::brats::load_case` + `protokd::preprocess::preprocess`, written as a
user would write it:

1. read the four modalities (T1, T2, T1ce, FLAIR) with `nib.load(p).get_fdata(dtype=np.float32)`
   and the seg with `np.asarray(nib.load(p).dataobj, dtype=np.uint8)`;
2. the same checks: the five files have the T1's shape and affine, every intensity is finite
   and at least one is above 0, every label is one of {0, 1, 2, 4};
3. per modality, a z-score over the voxels > 0 (mean and population std accumulated in
   float64) applied to every voxel: `((x - mean) / std).astype(np.float32)`;
4. transpose nibabel's (x, y, z) arrays to (z, y, x) (`arr.T`), crop z 5..145, y 24..216,
   x 24..216 and stack to a contiguous [4, 140, 192, 192] float32 array;
5. the labels converted {4 -> 1, 1 -> 2, 2 -> 3} and cropped the same way.

Modes: `sequential` reads the five files one after another (as most scripts do); `threaded`
reads them in a `ThreadPool(5)` (zlib releases the GIL while it inflates), the rest as in
`sequential`. Each figure is the median of `--repeat` runs after one warm-up run.

Unless `--no-compare`, the result is compared with what `cargo bench --bench data` wrote
next to the case (`target/bench-data/brats-f32/protokd-*`): the z-score statistics, the
image (max |difference|, number of voxels that differ in any bit) and the labels (exact).

Usage (from the repository root, after `cargo bench --bench data` has made the case):

    python3 tools/bench/nibabel_case.py [--case DIR] [--repeat 7] [--mode sequential|threaded|both]
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time
from multiprocessing.pool import ThreadPool

import nibabel as nib
import numpy as np

ROOT = os.path.join("target", "bench-data", "brats-f32")
DEFAULT_CASE = os.path.join(ROOT, "dataset", "Phantom_0_000")
SUFFIXES = ["_t1", "_t2", "_t1ce", "_flair"]
SEG = "_seg"
CROP = (slice(5, 145), slice(24, 216), slice(24, 216))  # (z, y, x)
# Raw BraTS 2018-2021 label -> internal (0 bg, 1 ET, 2 NCR/NET, 3 ED); 255 marks a bad value.
LUT = np.full(256, 255, dtype=np.uint8)
LUT[[0, 1, 2, 4]] = [0, 2, 3, 1]


def case_files(case_dir):
    cid = os.path.basename(os.path.normpath(case_dir))
    mods = [os.path.join(case_dir, f"{cid}{s}.nii.gz") for s in SUFFIXES]
    return mods, os.path.join(case_dir, f"{cid}{SEG}.nii.gz")


def read_modality(path):
    img = nib.load(path)
    return img.get_fdata(dtype=np.float32), img.affine


def read_seg(path):
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.uint8), img.affine


def process(images, seg):
    """images: four (array (x, y, z) float32, affine); seg: (array uint8, affine)."""
    ref_shape, ref_affine = images[0][0].shape, images[0][1]
    for arr, aff in images + [seg]:
        if arr.shape != ref_shape or not np.allclose(aff, ref_affine, rtol=0, atol=1e-4):
            raise ValueError("the files of the case differ in shape or affine")
    out = np.empty((4, 140, 192, 192), dtype=np.float32)
    stats = []
    for c, (arr, _) in enumerate(images):
        if not np.isfinite(arr).all():
            raise ValueError("non-finite intensity")
        fg = arr[arr > 0]
        if fg.size == 0:
            raise ValueError("no voxel above 0")
        mean = fg.mean(dtype=np.float64)
        std = fg.std(dtype=np.float64)
        norm = ((arr - mean) / std).astype(np.float32)  # every voxel, float64 arithmetic
        out[c] = norm.T[CROP]
        stats.append((float(mean), float(std), int(fg.size)))
    labels = LUT[seg[0]]
    if (labels == 255).any():
        raise ValueError("label outside {0, 1, 2, 4}")
    labels = np.ascontiguousarray(labels.T[CROP])
    return out, labels, stats


def run_sequential(mods, seg_path):
    images = [read_modality(p) for p in mods]
    seg = read_seg(seg_path)
    return process(images, seg)


def run_threaded(mods, seg_path, pool):
    res = [pool.apply_async(read_modality, (p,)) for p in mods]
    seg_res = pool.apply_async(read_seg, (seg_path,))
    images = [r.get() for r in res]
    return process(images, seg_res.get())


def timed(fn, repeat):
    fn()  # warm-up (file cache, allocator)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # the result is dropped before the clock stops, as in a loop over cases
        times.append(time.perf_counter() - t0)
    return times


def fmt(times):
    return (f"median {statistics.median(times) * 1e3:7.1f} ms  "
            f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, {len(times)} runs)")


def compare(out, labels, stats, root):
    img_path = os.path.join(root, "protokd-image.f32")
    if not os.path.exists(img_path):
        print(f"no {img_path}: run `cargo bench --bench data` first to compare")
        return True
    ours = np.fromfile(img_path, dtype="<f4").reshape(out.shape)
    with open(os.path.join(root, "protokd-stats.json")) as fh:
        our_stats = json.load(fh)["stats"]
    ok = True
    for c, ((m, s, n), o) in enumerate(zip(stats, our_stats)):
        print(f"  channel {c}: mean {m!r} vs ours {o['mean']!r} (rel {abs(m - o['mean']) / abs(o['mean']):.1e}), "
              f"std {s!r} vs ours {o['std']!r} (rel {abs(s - o['std']) / o['std']:.1e}), "
              f"count {n} vs ours {o['count']}")
        ok &= n == o["count"]
    diff = np.abs(ours.astype(np.float64) - out.astype(np.float64))
    nbits = int((ours.view(np.uint32) != out.view(np.uint32)).sum())
    print(f"  image: max |difference| {diff.max():.3e}, {nbits} of {out.size} values differ in any bit")
    ok &= diff.max() <= 1e-5
    lab_path = os.path.join(root, "protokd-labels.u8")
    if os.path.exists(lab_path):
        our_labels = np.fromfile(lab_path, dtype=np.uint8).reshape(labels.shape)
        same = bool((our_labels == labels).all())
        print(f"  labels: {'identical' if same else 'DIFFERENT'}")
        ok &= same
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default=DEFAULT_CASE, help="case folder (BraTS 2018 naming)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--mode", choices=["sequential", "threaded", "both"], default="both")
    ap.add_argument("--no-compare", action="store_true")
    args = ap.parse_args()
    mods, seg_path = case_files(args.case)
    for p in mods + [seg_path]:
        if not os.path.exists(p):
            sys.exit(f"{p} does not exist: run `cargo bench --bench data` first (it makes the case)")
    sizes = {os.path.basename(p): os.path.getsize(p) for p in mods + [seg_path]}
    print(f"case {args.case}: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())
          + f"; total {sum(sizes.values()) / 1e6:.1f} MB")
    print(f"nibabel {nib.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}")

    if args.mode in ("sequential", "both"):
        t = timed(lambda: run_sequential(mods, seg_path), args.repeat)
        print(f"nibabel+numpy sequential: {fmt(t)}")
        t_read = timed(lambda: ([read_modality(p) for p in mods], read_seg(seg_path)), args.repeat)
        print(f"  of which reading the 5 files: {fmt(t_read)}")
        images = [read_modality(p) for p in mods]
        seg = read_seg(seg_path)
        t_proc = timed(lambda: process(images, seg), args.repeat)
        print(f"  preprocessing alone:          {fmt(t_proc)}")
    if args.mode in ("threaded", "both"):
        with ThreadPool(5) as pool:
            t = timed(lambda: run_threaded(mods, seg_path, pool), args.repeat)
        print(f"nibabel+numpy threaded reads (ThreadPool(5)): {fmt(t)}")

    if not args.no_compare:
        out, labels, stats = run_sequential(mods, seg_path)
        root = os.path.dirname(os.path.dirname(os.path.normpath(args.case)))
        if not compare(out, labels, stats, root):
            sys.exit("the result differs from protokd's")


if __name__ == "__main__":
    main()
