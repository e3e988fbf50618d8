//! `.npy` files written byte by byte from the format's specification (NumPy's
//! `numpy.lib.format`, version 1.0: the magic `\x93NUMPY`, the version `1 0`, a little-endian
//! u16 header length, the header dict padded with spaces to a multiple of 64 bytes and ended by
//! `\n`, then the data), independent of the reader protokd uses; and an authors'-format dataset
//! made from protokd's own preprocessing of NIfTI cases.
//!
//! A target includes this file next to `common` with
//! `#[path = "../common/npy.rs"] mod npy_files;`.
#![allow(dead_code)] // each test target uses its own subset

use protokd::data::brats;
use protokd::data::preprocess::{preprocess_with_crop, CropBox};
use std::path::Path;

/// An `.npy` file of dtype `descr` (e.g. `<f4`), `shape` and raw `data` bytes.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `values` as little-endian f32 bytes.
pub fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A `<f4` array `[5, D, H, W]` of `values`.
pub fn authors_f32(dims: [usize; 3], values: &[f32]) -> Vec<u8> {
    let [d, h, w] = dims;
    npy_bytes("<f4", false, &[5, d, h, w], &f32_le(values))
}

/// Writes every case of the NIfTI dataset `nifti` as `<id>.npy` (`<f4`, `[5, D, H, W]`) in `out`:
/// the images z-scored by protokd's preprocessing of the whole volume (no crop), then the
/// internal labels, as the authors' preprocess.py lays them out.
pub fn from_nifti(nifti: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for case in brats::discover(nifti).unwrap().cases {
        let loaded = brats::load_case(&case).unwrap();
        let whole = CropBox {
            start: [0; 3],
            end: loaded.dims(),
        };
        let p = preprocess_with_crop(&loaded, &whole).unwrap();
        let mut values = p.image.clone();
        values.extend(p.labels.unwrap().iter().map(|&l| f32::from(l)));
        let path = out.join(format!("{}.npy", case.id));
        std::fs::write(path, authors_f32(p.dims, &values)).unwrap();
    }
}
