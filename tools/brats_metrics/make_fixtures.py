"""Fixtures for the BraTS challenge metrics of `protokd score` (`src/eval/lesionwise.rs`).

Writes small label-map pairs (BraTS 2023 raw labels: 1 NCR, 2 ED, 3 ET; one pair in BraTS 2024
GLI labels with resection cavity 4) to `tests/fixtures/brats_metrics/` and `expected.json` with
the values computed by the official BraTS 2023 metrics code, `metrics.py` of
https://github.com/rachitsaluja/BraTS-2023-Metrics (commit 43c9052), imported unmodified from a
checkout given on the command line. It also writes `src/eval/surfel_normals.rs`, the
surface-element normals table of that code's `surface_distance/lookup_tables.py` (DeepMind's
surface-distance package, Apache-2.0), which protokd's surface distance reads.

The BraTS 2024 PED pair's regions (1 ET, 2 NET, 3 CC, 4 ED) come from `get_TissueWiseSeg` of
https://github.com/rachitsaluja/BraTS-2024-Metrics `metrics_PED.py` (commit f1131e3), each
region then scored by the 2023 code.

Usage (from the repository root):

    git clone https://github.com/rachitsaluja/BraTS-2023-Metrics /tmp/brats23
    git -C /tmp/brats23 checkout 43c9052
    git clone https://github.com/rachitsaluja/BraTS-2024-Metrics /tmp/brats24
    git -C /tmp/brats24 checkout f1131e3
    pip install "numpy==1.26.4" "scipy==1.11.4" "pandas==1.5.3" connected-components-3d \
        nibabel medpy==0.5.2
    python3 tools/brats_metrics/make_fixtures.py /tmp/brats23 /tmp/brats24
"""

import json
import os
import sys
import tempfile
import warnings

import nibabel as nib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "brats_metrics")
TABLE = os.path.join(ROOT, "src", "eval", "surfel_normals.rs")

# Array shape (x, y, z) of every map.
SHAPE = (24, 20, 16)


def ball(m, centre, radius, value, spacing=(1.0, 1.0, 1.0)):
    """Sets the voxels within `radius` mm of `centre` (voxel coordinates) to `value`."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in m.shape], indexing="ij")
    d2 = sum(((c - c0) * s) ** 2 for c, c0, s in zip((x, y, z), centre, spacing))
    m[d2 <= radius * radius] = value


def tumour(m, centre, r_wt, r_tc, r_et):
    """Nested balls: ED (2) out to r_wt, NCR (1) to r_tc, ET (3) to r_et (r_et may be 0)."""
    ball(m, centre, r_wt, 2)
    ball(m, centre, r_tc, 1)
    if r_et > 0:
        ball(m, centre, r_et, 3)


def pairs():
    """(name, challenge, spacing (x, y, z), prediction, label) of every fixture."""
    rng = np.random.default_rng(2023)
    z = lambda: np.zeros(SHAPE, np.uint8)
    out = []

    # Several lesions: two ET lesions 3 voxels apart (one lesion after the dilation by 3), one
    # far lesion; the prediction finds the pair and misses the far one.
    gt, pr = z(), z()
    tumour(gt, (6, 6, 5), 4.5, 3.2, 2.0)
    tumour(gt, (6, 13, 5), 4.5, 3.2, 2.0)
    tumour(gt, (18, 10, 11), 4.2, 3.0, 1.8)
    tumour(pr, (6, 7, 5), 4.8, 3.0, 2.2)
    tumour(pr, (7, 13, 6), 4.0, 3.4, 1.5)
    out.append(("multi_lesion", "BraTS-GLI", (1.0, 1.0, 1.0), pr, gt))

    # A missed lesion and a false-positive lesion.
    gt, pr = z(), z()
    tumour(gt, (6, 6, 6), 4.5, 3.0, 2.0)
    tumour(gt, (18, 14, 10), 4.5, 3.0, 2.0)
    tumour(pr, (6, 6, 6), 4.0, 3.0, 2.0)
    tumour(pr, (18, 3, 12), 3.5, 2.5, 1.5)
    out.append(("missed_and_false_positive", "BraTS-GLI", (1.0, 1.0, 1.0), pr, gt))

    # Nothing in either map.
    out.append(("empty_both", "BraTS-GLI", (1.0, 1.0, 1.0), z(), z()))

    # Empty prediction, tumour in the label map.
    gt = z()
    tumour(gt, (12, 10, 8), 5.0, 3.5, 2.0)
    out.append(("empty_pred", "BraTS-GLI", (1.0, 1.0, 1.0), z(), gt))

    # Empty label map, tumour in the prediction (all false positives).
    pr = z()
    tumour(pr, (12, 10, 8), 5.0, 3.5, 2.0)
    tumour(pr, (3, 3, 3), 2.0, 1.0, 0)
    out.append(("empty_label", "BraTS-GLI", (1.0, 1.0, 1.0), pr, z()))

    # Anisotropic voxels: volumes and distances in mm.
    sp = (1.0, 1.5, 3.0)
    gt, pr = z(), z()
    ball(gt, (8, 8, 6), 7.0, 2, sp)
    ball(gt, (8, 8, 6), 4.5, 1, sp)
    ball(gt, (8, 8, 6), 2.5, 3, sp)
    ball(gt, (19, 14, 4), 3.5, 3, sp)
    ball(pr, (9, 8, 6), 7.5, 2, sp)
    ball(pr, (9, 8, 6), 4.0, 1, sp)
    ball(pr, (9, 8, 7), 3.0, 3, sp)
    ball(pr, (3, 16, 12), 3.0, 3, sp)
    out.append(("anisotropic", "BraTS-GLI", sp, pr, gt))

    # Lesions at and below the volume threshold (50 mm^3): a missed small one does not count.
    gt, pr = z(), z()
    tumour(gt, (7, 7, 7), 5.0, 3.5, 2.5)
    ball(gt, (19, 15, 11), 1.8, 3)  # 33 voxels of ET (also TC, WT), missed
    ball(gt, (19, 4, 3), 1.5, 1)  # 19 voxels of NCR, found
    tumour(pr, (7, 8, 7), 5.0, 3.0, 2.5)
    ball(pr, (19, 4, 3), 1.0, 1)
    out.append(("small_lesions", "BraTS-GLI", (1.0, 1.0, 1.0), pr, gt))

    # The same small lesions scored with the BraTS-MET parameters (dilation 1, threshold 2).
    out.append(("small_lesions_met", "BraTS-MET", (1.0, 1.0, 1.0), pr, gt))

    # MEN parameters (dilation 1): two lesions 3 voxels apart stay two lesions.
    gt, pr = z(), z()
    tumour(gt, (6, 6, 8), 3.5, 3.5, 2.0)
    tumour(gt, (15, 6, 8), 3.5, 3.5, 2.0)
    tumour(pr, (6, 6, 8), 3.5, 3.5, 2.5)
    tumour(pr, (20, 15, 8), 2.5, 2.5, 1.5)
    out.append(("men_two_lesions", "BraTS-MEN", (1.0, 1.0, 1.0), pr, gt))

    # Identical maps, with a tumour touching the image border.
    gt = z()
    tumour(gt, (0, 10, 8), 6.0, 4.0, 2.0)
    tumour(gt, (20, 4, 12), 3.0, 2.0, 1.0)
    out.append(("identical", "BraTS-SSA", (0.9, 1.1, 1.3), gt.copy(), gt))

    # Noisy maps: many small components on both sides, anisotropic voxels.
    gt, pr = z(), z()
    tumour(gt, (11, 10, 8), 6.0, 4.0, 2.5)
    pr[:] = gt
    noise = rng.random(SHAPE)
    pr[noise < 0.02] = 2
    pr[(noise > 0.02) & (noise < 0.03)] = 3
    pr[(noise > 0.03) & (noise < 0.035)] = 1
    pr[(noise > 0.5) & (gt == 3)] = 0
    gt[rng.random(SHAPE) < 0.01] = 1
    out.append(("noisy", "BraTS-PED", (0.7, 1.2, 2.0), pr, gt))

    # BraTS 2024 GLI labels: a resection cavity (4) next to the tumour in both maps, scored
    # with WT = 1..3 (RC outside every region), as the official code does for any label 4.
    gt, pr = z(), z()
    tumour(gt, (8, 10, 8), 5.0, 3.5, 2.0)
    ball(gt, (17, 10, 8), 3.5, 4)
    tumour(pr, (8, 11, 8), 4.5, 3.5, 2.0)
    ball(pr, (16, 10, 8), 3.5, 4)
    out.append(("gli2024_cavity", "BraTS-GLI", (1.0, 1.0, 1.0), pr, gt))

    # BraTS 2024 PED labels (1 ET, 2 NET, 3 CC, 4 ED): two tumours, a cyst, ET off-centre.
    gt, pr = z(), z()
    for m, shift in ((gt, 0), (pr, 1)):
        ball(m, (8 + shift, 9, 8), 6.0, 4)
        ball(m, (8 + shift, 9, 8), 4.0, 2)
        ball(m, (10, 8 + shift, 8), 2.0, 3)
        ball(m, (6, 10, 7 + shift), 2.6, 1)
    ball(gt, (19, 14, 5), 3.0, 2)
    ball(gt, (19, 14, 5), 2.2, 1)
    ball(pr, (20, 3, 12), 2.5, 4)
    out.append(("ped2024", "BraTS-PED", (1.0, 1.2, 1.5), pr, gt))
    return out


def write(path, data, spacing):
    img = nib.Nifti1Image(data.astype(np.uint8), np.diag([*spacing, 1.0]))
    img.header.set_xyzt_units("mm")
    img.set_qform(np.diag([*spacing, 1.0]), code=1)
    img.set_sform(np.diag([*spacing, 1.0]), code=1)
    nib.save(img, path)


def surfel_table(lookup):
    rows = []
    for normals in lookup.neighbour_code_to_normals:
        cells = ", ".join("[{}, {}, {}]".format(*(repr(float(v)) for v in n)) for n in normals)
        rows.append("    &[{}],".format(cells))
    return (
        "//! The surface-element normals of every 2 x 2 x 2 neighbour code (256 codes), the table\n"
        "//! `neighbour_code_to_normals` of DeepMind's surface-distance package as shipped in\n"
        "//! rachitsaluja/BraTS-2023-Metrics (`surface_distance/lookup_tables.py`, Copyright 2018\n"
        "//! Google Inc., Apache License 2.0). Generated by `tools/brats_metrics/make_fixtures.py`; do\n"
        "//! not edit. A normal's length is the area of its surface element on unit voxels.\n\n"
        "/// The normals of neighbour code `c` (bit 7 = corner (0, 0, 0) ... bit 0 = (1, 1, 1)).\n"
        "#[rustfmt::skip]\n"
        "pub(crate) const NEIGHBOUR_CODE_TO_NORMALS: [&[[f64; 3]]; 256] = [\n"
        + "\n".join(rows)
        + "\n];\n"
    )


def main():
    official = os.path.abspath(sys.argv[1])
    sys.path.insert(0, official)
    warnings.simplefilter("ignore")
    import metrics  # the official code, unmodified

    # The 2024 code, for the PED 2024 label regions only (after the 2023 code, whose
    # surface_distance package stays the one imported).
    sys.path.append(os.path.abspath(sys.argv[2]))
    import metrics_PED as metrics_ped
    import pandas as pd

    # The official code runs `DataFrame.replace(np.inf, 374)` on a frame whose
    # `predicted_lesion_numbers` column holds arrays; pandas 1.3.4 (its requirements.txt) skipped
    # that column, pandas 1.5 (the oldest with Python 3.11 wheels) raises on it. Replace in the
    # numeric columns only, which is what 1.3.4 did: an array of lesion numbers is never inf.
    original_replace = pd.DataFrame.replace

    def replace_numeric(self, to_replace=None, value=None, **kw):
        if not (to_replace is np.inf and value == 374):
            return original_replace(self, to_replace, value, **kw)
        numeric = self.select_dtypes("number").columns
        out = self if kw.get("inplace") else self.copy()
        out[numeric] = original_replace(out[numeric], np.inf, 374)
        return None if kw.get("inplace") else out

    pd.DataFrame.replace = replace_numeric
    from surface_distance import lookup_tables

    with open(TABLE, "w") as f:
        f.write(surfel_table(lookup_tables))
    os.makedirs(OUT, exist_ok=True)
    expected = {"source": "rachitsaluja/BraTS-2023-Metrics metrics.py @ 43c9052", "pairs": {}}
    def official(pred_path, label_path, challenge):
        df = metrics.get_LesionWiseResults(pred_path, label_path, challenge)
        regions = {}
        for _, row in df.iterrows():
            regions[row["Labels"]] = {
                k: float(row[k])
                for k in [
                    "Num_TP", "Num_FP", "Num_FN", "Sensitivity", "Specificity", "Legacy_Dice",
                    "Legacy_HD95", "LesionWise_Score_Dice", "LesionWise_Score_HD95",
                ]
            }
        return regions

    for name, challenge, spacing, pred, label in pairs():
        pp, lp = f"{name}_pred.nii.gz", f"{name}_label.nii.gz"
        write(os.path.join(OUT, pp), pred, spacing)
        write(os.path.join(OUT, lp), label, spacing)
        if name.startswith("ped2024"):
            # The 2023 code knows no PED 2024 labels: each region's masks come from the official
            # 2024 PED code (`get_TissueWiseSeg` of BraTS-2024-Metrics metrics_PED.py), written
            # as a 2023 ET (3), and scored by the 2023 code; its ET row is that region's score.
            regions = {}
            for region in ["WT", "TC", "ET"]:
                pm, gm = metrics_ped.get_TissueWiseSeg(
                    pred.astype(float), label.astype(float), region
                )
                with tempfile.TemporaryDirectory() as tmp:
                    tp, tl = os.path.join(tmp, "p.nii.gz"), os.path.join(tmp, "l.nii.gz")
                    write(tp, 3 * pm.astype(np.uint8), spacing)
                    write(tl, 3 * gm.astype(np.uint8), spacing)
                    regions[region] = official(tp, tl, challenge)["ET"]
            labels = "2024-ped"
        else:
            regions = official(os.path.join(OUT, pp), os.path.join(OUT, lp), challenge)
            labels = "2024-gli" if name.startswith("gli2024") else "2023"
        expected["pairs"][name] = {
            "pred": pp, "label": lp, "challenge": challenge, "spacing_xyz": list(spacing),
            "labels": labels, "regions": regions,
        }
        print(name, {r: (round(v["LesionWise_Score_Dice"], 4), round(v["LesionWise_Score_HD95"], 3)) for r, v in regions.items()})
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
