#!/usr/bin/env python3
"""Writes the NIfTI fixtures of tests/io/nifti.rs and their reference values (read by nibabel).

Run from the repository root:  python3 tools/nifti/make_fixtures.py
Needs numpy and nibabel (`pip install nibabel`). See tools/nifti/README.md.

Every fixture is built from a nibabel header (nibabel sets the qform/sform fields) and raw
bytes written here, so that the bytes on disk are exactly what we ask for (gzip level 6, no
time stamp: the same bytes on every run). The expected values in expected.json are what
nibabel reads back from those files (`nib.load(p).get_fdata()`, `img.affine`), not what we
meant to write.

Optional last section: if tests/fixtures/nifti/written_by_protokd.nii.gz exists (written by
`PROTOKD_WRITE_NIFTI_FIXTURE=1 cargo test --release --test io written_by_protokd`), it is
checked with nibabel against its source and nibabel's reading of it goes into expected.json.
"""

import gzip
import hashlib
import io
import json
import os
import re
import sys

import nibabel as nib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "nifti")
MNI = os.path.join(ROOT, "data", "mni152", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
SHAPE = (5, 6, 7)  # nibabel (x, y, z); our (z, y, x) is (7, 6, 5)


def rot(axis, deg):
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine(r, zooms, offset):
    a = np.eye(4)
    a[:3, :3] = r @ np.diag(zooms)
    a[:3, 3] = offset
    return a


A_PLAIN = affine(np.eye(3), [1.2, 0.9, 2.5], [-3.0, 4.5, 10.25])
# Rotation with a negative determinant: the qform needs qfac = -1.
A_ROT = affine(rot(0, 20) @ rot(2, -35), [0.8, 1.1, 3.0], [12.5, -20.0, 31.0]) @ np.diag(
    [1, 1, -1, 1]
)
A_OTHER = affine(rot(1, 10), [1.5, 1.5, 1.5], [-90.0, -126.0, -72.0])
A_OTHER[0, 1] = 0.2  # a shear: only an sform can hold it


def make_header(shape, dtype, endian="<", qform=None, qcode=0, sform=None, scode=0, zooms=None):
    hdr = nib.Nifti1Header(endianness=endian)
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    if qform is not None:
        hdr.set_qform(qform, code=qcode)
    else:
        hdr["qform_code"] = 0
    if sform is not None:
        hdr.set_sform(sform, code=scode)
    else:
        hdr["sform_code"] = 0
    if zooms is not None:
        hdr.set_zooms(zooms)
    hdr.set_xyzt_units("mm", "sec")
    return hdr


def write(name, hdr, arr, extensions=()):
    """Header (+ extensions) + raw bytes in NIfTI order (x fastest), gzip when .gz."""
    for e in extensions:
        hdr.extensions.append(e)
    hdr["vox_offset"] = 352 + sum(e.get_sizeondisk() for e in hdr.extensions)
    buf = io.BytesIO()
    hdr.write_to(buf)
    raw = buf.getvalue()
    raw += b"\0" * (int(hdr["vox_offset"]) - len(raw))
    assert len(raw) == int(hdr["vox_offset"])
    raw += np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F")
    path = os.path.join(OUT, name)
    if name.endswith(".gz"):
        b = io.BytesIO()
        with gzip.GzipFile(fileobj=b, mode="wb", compresslevel=6, mtime=0, filename="") as g:
            g.write(raw)
        raw = b.getvalue()
    with open(path, "wb") as f:
        f.write(raw)
    return path


def values(rng, dtype, shape=SHAPE):
    """Values covering the dtype's range, its extremes included."""
    n = int(np.prod(shape))
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        v = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=np.int64 if info.max < 2**63 else np.uint64)
        v[0], v[1], v[2] = info.min, info.max, 0
        return v.astype(dtype).reshape(shape, order="F")
    v = (rng.standard_normal(n) * 1000).astype(dtype)
    v[0], v[1], v[2], v[3] = 0.0, -0.0, np.finfo(dtype).max, np.finfo(dtype).tiny
    if np.dtype(dtype) == np.float64:
        v[4] = 1.0 + 2.0**-40  # not representable in f32: checks the rounding
    return v.reshape(shape, order="F")


def zyx(a):
    """nibabel's (x, y, z) array in our (z, y, x) order, C-contiguous."""
    return np.ascontiguousarray(np.asarray(a).transpose(2, 1, 0))


def describe(path, values_list=True):
    img = nib.load(path)
    d = {
        "nibabel_affine": img.affine.tolist(),
        "dtype": str(img.get_data_dtype().newbyteorder("=")),
        "byte_order": img.header.endianness,
        "shape_zyx": None,
        "spacing": [float(z) for z in img.header.get_zooms()[:3]],
        "qform_code": int(img.header["qform_code"]),
        "sform_code": int(img.header["sform_code"]),
    }
    shape = img.shape
    if len(shape) == 4 and shape[3] != 1:
        d["shape_xyzt"] = list(shape)
        d["refused"] = "time points"
        return d
    a = img.get_fdata()  # float64, scaled
    if a.ndim == 4:
        a = a[..., 0]
    a = zyx(a)
    d["shape_zyx"] = list(a.shape)
    with np.errstate(over="ignore"):
        f32 = a.astype(np.float32)  # f64 beyond the f32 range becomes inf, as in protokd
    d["sum_f64"] = float(a.sum(dtype=np.float64))
    d["sha256_f32le"] = hashlib.sha256(f32.astype("<f4").tobytes()).hexdigest()
    # JSON floats are not always parsed to the nearest f64 (serde_json's default parser is
    # not exact), so exact references travel as bit patterns.
    d["nibabel_affine_f64_bits"] = [[int(v) for v in row] for row in img.affine.astype("<f8").view("<u8")]
    if values_list:
        d["first_values_zyx"] = [float(v) for v in a.ravel()[:6]]
        d["values_zyx_f32_bits"] = [int(v) for v in f32.astype("<f4").view("<u4").ravel()]
    return d


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    expected = {"files": {}}
    files = expected["files"]

    def add(name, path, note, **extra):
        d = describe(path)
        d["note"] = note
        d.update(extra)
        files[name] = d

    # One file per datatype: plain affine in both sform (aligned) and qform (scanner).
    for tag, dt in [("u8", np.uint8), ("i8", np.int8), ("i16", np.int16), ("u16", np.uint16),
                    ("i32", np.int32), ("f32", np.float32), ("f64", np.float64)]:
        name = f"{tag}.nii.gz"
        hdr = make_header(SHAPE, dt, qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=2)
        p = write(name, hdr, values(rng, dt))
        add(name, p, f"datatype {np.dtype(dt).name}, sform == qform")

    # Big-endian int16.
    hdr = make_header(SHAPE, np.int16, endian=">", qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=1)
    p = write("i16_be.nii.gz", hdr, values(rng, np.int16))
    add("i16_be.nii.gz", p, "big-endian int16")

    # Scaled int16: value = raw * 2.5 - 3.
    hdr = make_header(SHAPE, np.int16, qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=2)
    hdr["scl_slope"], hdr["scl_inter"] = 2.5, -3.0
    p = write("scaled_i16.nii.gz", hdr, values(rng, np.int16))
    add("scaled_i16.nii.gz", p, "int16 with scl_slope 2.5, scl_inter -3")

    # Scaled float32 (scaling of floats in f64, as nibabel).
    hdr = make_header(SHAPE, np.float32, qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=2)
    hdr["scl_slope"], hdr["scl_inter"] = 0.3, 7.1
    p = write("scaled_f32.nii.gz", hdr, values(rng, np.float32))
    add("scaled_f32.nii.gz", p, "float32 with scl_slope 0.3, scl_inter 7.1")

    # qform only, rotated, qfac -1.
    hdr = make_header(SHAPE, np.int16, qform=A_ROT, qcode=1)
    assert hdr["pixdim"][0] == -1 and hdr["sform_code"] == 0
    p = write("qform_only.nii.gz", hdr, values(rng, np.int16))
    add("qform_only.nii.gz", p, "qform only (sform_code 0), rotation, qfac -1")

    # sform different from the qform (nibabel, and we, take the sform).
    hdr = make_header(SHAPE, np.float32, qform=A_ROT, qcode=1, sform=A_OTHER, scode=2)
    p = write("sform_qform.nii.gz", hdr, values(rng, np.float32))
    add("sform_qform.nii.gz", p, "sform (with shear) differs from qform (rotated, qfac -1)",
        nibabel_qform=nib.load(p).header.get_qform().tolist(),
        nibabel_qform_f64_bits=[[int(v) for v in row] for row in nib.load(p).header.get_qform().astype("<f8").view("<u8")])

    # No transform at all: the standard's method 1 (diag(pixdim)); nibabel differs.
    hdr = make_header(SHAPE, np.uint8, zooms=(1.5, 2.0, 2.5))
    p = write("no_xform.nii.gz", hdr, values(rng, np.uint8))
    add("no_xform.nii.gz", p, "qform_code 0 and sform_code 0: we give diag(pixdim), "
        "nibabel an Analyze-style centred affine",
        method1_affine=np.diag([1.5, 2.0, 2.5, 1.0]).tolist())

    # Uncompressed .nii.
    hdr = make_header(SHAPE, np.float32, qform=A_ROT, qcode=1, sform=A_ROT, scode=1)
    p = write("f32_plain.nii", hdr, values(rng, np.float32))
    add("f32_plain.nii", p, "uncompressed float32")

    # Header extension: data at vox_offset > 352.
    hdr = make_header(SHAPE, np.uint8, qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=2)
    ext = nib.nifti1.Nifti1Extension("comment", b"protokd fixture with a header extension")
    p = write("extension.nii.gz", hdr, values(rng, np.uint8), extensions=[ext])
    vox_offset = int(np.frombuffer(gzip.open(p).read(112)[108:112], "<f4")[0])
    assert vox_offset > 352 and len(nib.load(p).header.extensions) == 1
    add("extension.nii.gz", p, "one header extension, vox_offset %d" % vox_offset)

    # 4-D with one time point (read as 3-D) and with three (refused).
    hdr = make_header(SHAPE + (1,), np.int16, qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=2)
    p = write("t1_4d.nii.gz", hdr, values(rng, np.int16, SHAPE + (1,)))
    add("t1_4d.nii.gz", p, "4-D, dim[4] = 1")
    hdr = make_header(SHAPE + (3,), np.int16, qform=A_PLAIN, qcode=1, sform=A_PLAIN, scode=2)
    p = write("t3_4d.nii.gz", hdr, values(rng, np.int16, SHAPE + (3,)))
    add("t3_4d.nii.gz", p, "4-D, dim[4] = 3: must be refused")

    # MNI152 T1 reference values.
    img = nib.load(MNI)
    m = describe(MNI, values_list=False)
    a = zyx(img.get_fdata())
    pts = [(0, 0, 0), (94, 116, 98), (60, 100, 80), (120, 150, 50), (188, 232, 196), (100, 40, 150)]
    m["voxels_zyx"] = [[z, y, x, float(a[z, y, x])] for z, y, x in pts]
    m["path"] = os.path.relpath(MNI, ROOT)
    expected["mni152_t1"] = m

    # Optional: a file written by protokd, checked with nibabel.
    w = os.path.join(OUT, "written_by_protokd.nii.gz")
    if os.path.exists(w):
        src = nib.load(os.path.join(OUT, "sform_qform.nii.gz"))
        out = nib.load(w)
        assert np.array_equal(out.affine, src.affine), (out.affine, src.affine)
        assert np.array_equal(out.header.get_qform(), src.header.get_qform())
        assert np.array_equal(out.header.get_sform(), src.header.get_sform())
        for k in ["qform_code", "sform_code", "xyzt_units"]:
            assert out.header[k] == src.header[k], k
        assert np.array_equal(out.header["pixdim"], src.header["pixdim"])
        assert np.array_equal(out.get_fdata(), src.get_fdata())
        d = describe(w)
        d["note"] = "written by protokd from sform_qform.nii.gz (float32); checked with nibabel"
        d["sha256_file"] = hashlib.sha256(open(w, "rb").read()).hexdigest()
        files["written_by_protokd.nii.gz"] = d
        print("written_by_protokd.nii.gz: nibabel agrees with its source")
    else:
        print("written_by_protokd.nii.gz absent: skipped its check", file=sys.stderr)

    text = json.dumps(expected, indent=1, sort_keys=True)
    # Lists of numbers on one line each.
    text = re.sub(r"\[([^\[\]{}\"]*)\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write(text + "\n")
    print("nibabel", nib.__version__, "numpy", np.__version__, "->", OUT)


if __name__ == "__main__":
    main()
