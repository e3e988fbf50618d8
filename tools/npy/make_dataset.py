#!/usr/bin/env python3
"""Write a BraTS 2018-named dataset as the ProtoKD authors' preprocessed `.npy` dataset.

The arithmetic is that of the authors' `code/preprocess.py`
(https://github.com/SakurajimaMaiii/ProtoKD, file code/preprocess.py), transcribed step by step:

1. each of `<id>_t1`, `_t2`, `_t1ce`, `_flair`, `_seg` `.nii.gz` is read with SimpleITK
   (`GetArrayFromImage`, array order (z, y, x)) and cast to float32;
2. each modality is z-scored in NumPy float32: a "mask" that is a copy of the image with the
   voxels > 0 set to 1, `mean = sum(mask * img) / sum(mask)`,
   `std = sqrt(sum(mask * (img - mean) ** 2) / sum(mask))`, `img = (img - mean) / std`;
3. the segmentation is cast to int8 and mapped to the internal labels
   `(gt == 4) * 1 + (gt == 1) * 2 + (gt == 2) * 3`;
4. the five arrays are stacked (float32 images with int64 labels: NumPy promotes to float64)
   and cropped, `[:, 5:145, 24:216, 24:216]` unless `--crop none`, then saved with `np.save`.

Options beyond the authors' script: `--statistics float64` computes the mean and std in float64
as protokd does (to show that the float32 statistics are the one difference between the two),
`--crop none` keeps the whole volume (phantoms smaller than
the BraTS grid), `--split DIR` copies `train_list.txt`, `val_list.txt`, `test_list.txt` from DIR
into the output folder (the authors keep them beside their `brats2018/` folder; protokd looks
in the `.npy` folder first, then its parent), and `--raw` also writes each array as raw
little-endian float32 (`<id>.f32le`, for checking protokd's reader against NumPy's writer).

Usage:
    python tools/npy/make_dataset.py --brats PHANTOMS --out NPY [--crop none] [--split DIR]
        [--statistics float64] [--raw] [--manifest FILE]
"""
import argparse
import hashlib
import json
import os
import shutil

import numpy as np
import SimpleITK as sitk

MODALITIES = ["t1", "t2", "t1ce", "flair"]
AUTHORS_CROP = (slice(5, 145), slice(24, 216), slice(24, 216))


def read_float32(path):
    """SimpleITK's array (z, y, x) as float32, as the authors' read_nii."""
    return sitk.GetArrayFromImage(sitk.ReadImage(path)).astype(np.float32)


def zscore_like_authors(img):
    """The authors' zscore_nonzero, float32 throughout."""
    weight = img.copy()
    weight[img > 0] = 1
    total = np.sum(weight)
    mean = np.sum(weight * img) / total
    std = np.sqrt(np.sum(weight * (img - mean) ** 2) / total)
    return (img - mean) / std


def zscore_float64(img):
    """protokd's z-score (src/data/preprocess.rs): mean and population std over the voxels > 0
    in float64, `(x - mean) / std` in float64, rounded once to float32. Only for checking that
    the float32 statistics are the one difference between the authors' arrays and protokd's."""
    wide = img.astype(np.float64)
    inside = wide[img > 0]
    mean = inside.sum() / inside.size
    std = np.sqrt(((inside - mean) ** 2).sum() / inside.size)
    return ((wide - mean) / std).astype(np.float32)


def internal_labels(seg):
    """The authors' convert_label on the int8 segmentation: 4 -> 1, 1 -> 2, 2 -> 3."""
    return (seg == 4) * 1 + (seg == 1) * 2 + (seg == 2) * 3


def case_folders(root):
    """(id, folder) of every case folder under root, one level of grouping (HGG/, LGG/)."""
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        if os.path.exists(os.path.join(path, name + "_t1.nii.gz")):
            out.append((name, path))
        else:
            out.extend(case_folders(path))
    return out


def convert(case_id, folder, crop, zscore):
    stem = os.path.join(folder, case_id)
    images = [zscore(read_float32(f"{stem}_{m}.nii.gz")) for m in MODALITIES]
    seg = internal_labels(read_float32(f"{stem}_seg.nii.gz").astype(np.int8))
    data = np.stack(images + [seg])
    if crop:
        data = data[(slice(None),) + AUTHORS_CROP]
    return data


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--brats", required=True, help="folder of BraTS 2018-named case folders")
    p.add_argument("--out", required=True, help="output folder of <id>.npy files")
    p.add_argument("--crop", choices=["authors", "none"], default="authors")
    p.add_argument("--split", help="folder whose train/val/test_list.txt are copied to --out")
    p.add_argument("--raw", action="store_true", help="also write <id>.f32le")
    p.add_argument("--statistics", choices=["float32", "float64"], default="float32",
                   help="float32: the authors' arithmetic; float64: protokd's (for comparison)")
    p.add_argument("--manifest", help="write the SHA-256 of every file read and written here")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    manifest = {"script": "tools/npy/make_dataset.py", "crop": a.crop,
                "statistics": a.statistics, "numpy": np.__version__,
                "simpleitk": sitk.Version_VersionString(), "cases": {}}
    for case_id, folder in case_folders(a.brats):
        zscore = zscore_like_authors if a.statistics == "float32" else zscore_float64
        data = convert(case_id, folder, a.crop == "authors", zscore)
        manifest["cases"][case_id] = {
            "inputs": {f"{case_id}_{m}.nii.gz": sha256(os.path.join(folder, f"{case_id}_{m}.nii.gz"))
                       for m in MODALITIES + ["seg"]},
            "shape": list(data.shape),
            "dtype": str(data.dtype),
        }
        np.save(os.path.join(a.out, case_id + ".npy"), data)
        if a.raw:
            data.astype("<f4").tofile(os.path.join(a.out, case_id + ".f32le"))
        print(f"{case_id}: {data.shape} {data.dtype}")
    if a.manifest:
        with open(a.manifest, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
    if a.split:
        for name in ["train_list.txt", "val_list.txt", "test_list.txt"]:
            src = os.path.join(a.split, name)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(a.out, name))


if __name__ == "__main__":
    main()
