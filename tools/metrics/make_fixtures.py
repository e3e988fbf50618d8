#!/usr/bin/env python3
"""Writes the `protokd score` fixtures: small BraTS label-map pairs as NIfTI and the metrics
computed independently with medpy (HD95, Dice) and NumPy (sensitivity, specificity).

Usage (from the repository root):  python3 tools/metrics/make_fixtures.py
Needs numpy, nibabel, scipy and medpy (pip install medpy). Output: tests/fixtures/metrics/.
See tools/metrics/README.md.
"""
import json
import os

import nibabel as nib
import numpy as np
from medpy.metric.binary import dc, hd95
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "metrics")
SHAPE = (20, 24, 16)  # x, y, z


def ellipsoid(shape, centre, radii):
    g = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    r = sum(((g[a] - centre[a]) / radii[a]) ** 2 for a in range(3))
    return r <= 1.0


def tumour(rng, et_label, with_et=True, shift=(0.0, 0.0, 0.0), noise=0.0, edge=False):
    """ED (2) around a core of NCR (1) and ET; salt noise flips a few voxels to random labels."""
    seg = np.zeros(SHAPE, np.uint8)
    c = np.array([9.0, 11.0, 8.0]) + np.array(shift)
    if edge:
        c[0] = 1.0  # touches the x = 0 face: the image border counts as background
    seg[ellipsoid(SHAPE, c, (6.5, 8.0, 5.5))] = 2
    seg[ellipsoid(SHAPE, c + rng.normal(0, 0.7, 3), (4.0, 4.5, 3.5))] = 1
    if with_et:
        core = ellipsoid(SHAPE, c, (4.0, 5.0, 4.0)) & ~ellipsoid(SHAPE, c, (2.5, 3.0, 2.5))
        seg[core] = et_label
    # A second small blob elsewhere (a satellite lesion).
    seg[ellipsoid(SHAPE, (16.0, 3.0 + rng.uniform(0, 2), 12.0), (2.0, 2.0, 1.5))] = 2
    if noise > 0:
        flip = rng.random(SHAPE) < noise
        labels = np.array([0, 1, 2, et_label] if with_et else [0, 1, 2], np.uint8)
        seg[flip] = rng.choice(labels, size=int(flip.sum()))
    return seg


def regions(raw, et_label):
    return {
        "WT": raw != 0,
        "TC": (raw == 1) | (raw == et_label),
        "ET": raw == et_label,
    }


def hd95_scipy(a, b, spacing):
    """medpy's hd95 re-implemented with SciPy (cross-check of the medpy values)."""
    fp = generate_binary_structure(3, 1)

    def sd(x, y):
        xb = x ^ binary_erosion(x, structure=fp, iterations=1)
        yb = y ^ binary_erosion(y, structure=fp, iterations=1)
        return distance_transform_edt(~yb, sampling=spacing)[xb]

    return float(np.percentile(np.hstack((sd(a, b), sd(b, a))), 95))


def metrics(pred, label, et_label, spacing):
    out = {}
    for name, (p, l) in zip(["WT", "TC", "ET"], zip(regions(pred, et_label).values(), regions(label, et_label).values())):
        tp = int(np.count_nonzero(p & l))
        fp = int(np.count_nonzero(p & ~l))
        fn = int(np.count_nonzero(~p & l))
        tn = int(np.count_nonzero(~p & ~l))
        both_empty = not p.any() and not l.any()
        dice = 1.0 if both_empty else float(dc(p, l))
        if p.any() and l.any():
            h = float(hd95(p, l, voxelspacing=spacing))
            h2 = hd95_scipy(p, l, np.asarray(spacing, np.float64))
            assert abs(h - h2) <= 1e-12 * max(h, 1.0), (h, h2)
        else:
            h = None
        out[name] = {
            "dice": dice,
            "hd95": h,
            "sensitivity": tp / (tp + fn) if tp + fn else 0.0,
            "specificity": tn / (tn + fp) if tn + fp else 0.0,
        }
    return out


def save(seg, spacing, path):
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = [-10.0, 12.5, -4.0]
    img = nib.Nifti1Image(seg.astype(np.uint8), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    cases = []
    # name, release, spacing, label kwargs, pred kwargs
    cases.append(("blobs", "2018", (1.0, 1.0, 1.0), dict(edge=True), dict(edge=True, shift=(0.6, -1.2, 0.8), noise=0.01)))
    cases.append(("aniso", "2023", (1.0, 1.5, 3.0), dict(), dict(shift=(1.3, 0.4, -0.9), noise=0.02)))
    cases.append(("no_et_pred", "2018", (1.2, 1.2, 2.0), dict(), dict(with_et=False, shift=(-0.8, 0.5, 0.3))))
    cases.append(("no_et_both", "2018", (1.0, 1.0, 1.0), dict(with_et=False), dict(with_et=False, shift=(0.5, 0.5, -0.5), noise=0.005)))
    cases.append(("identical", "2023", (0.9, 1.1, 1.3), dict(noise=0.01), None))
    expected = {}
    for name, release, spacing, lk, pk in cases:
        et = 4 if release == "2018" else 3
        label = tumour(rng, et, **lk)
        pred = label.copy() if pk is None else tumour(rng, et, **pk)
        files = {"pred": f"{name}_pred.nii.gz", "label": f"{name}_label.nii.gz"}
        save(pred, spacing, os.path.join(OUT, files["pred"]))
        save(label, spacing, os.path.join(OUT, files["label"]))
        # Re-read, as protokd does, so the values come from the files.
        p = np.asarray(nib.load(os.path.join(OUT, files["pred"])).dataobj)
        lab_img = nib.load(os.path.join(OUT, files["label"]))
        l = np.asarray(lab_img.dataobj)
        zooms = tuple(float(z) for z in lab_img.header.get_zooms()[:3])
        has = set(np.unique(np.concatenate([p.ravel(), l.ravel()])).tolist())
        expected[name] = {
            **files,
            "release": release if (3 in has or 4 in has) else "2018",
            "spacing_xyz": list(zooms),
            "mm": metrics(p, l, et, zooms),
            "voxels": metrics(p, l, et, (1.0, 1.0, 1.0)),
        }
    meta = {
        "generator": "tools/metrics/make_fixtures.py",
        "medpy_hd95_and_dc": True,
        "numpy": np.__version__,
        "nibabel": nib.__version__,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"meta": meta, "pairs": expected}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
