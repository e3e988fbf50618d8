// Verifies (every test in this file): R-DAT-1
//! Issue 14, item 5: the corners of the NIfTI affine where nifti1_io.c and nibabel part, read
//! as nifti1_io.c reads them (`src/io/nifti.rs`, module docs). Each expected matrix follows by
//! hand from the NIfTI-1 standard's formulas (nifti1.h, "3 different methods"): with the
//! quaternion (0, 0, 0) the rotation is the identity, with (0, 0, 1) it is a half turn about z,
//! `diag(-1, -1, 1)`; the qform is `R * diag(dx, dy, qfac * dz)` plus the offsets.

use crate::bounded::u8_header;
use protokd::io::nifti::decode_image;
use std::path::Path;

/// A 2 x 2 x 2 uint8 file with the given header fields (little-endian).
struct Fields {
    pixdim: [f32; 4],
    qform_code: i16,
    sform_code: i16,
    quatern: [f32; 3],
    offset: [f32; 3],
    srow: [[f32; 4]; 3],
}

fn file(f: &Fields) -> Vec<u8> {
    let mut h = u8_header([2, 2, 2]);
    for (i, p) in f.pixdim.iter().enumerate() {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&p.to_le_bytes());
    }
    h[252..254].copy_from_slice(&f.qform_code.to_le_bytes());
    h[254..256].copy_from_slice(&f.sform_code.to_le_bytes());
    for (i, v) in f.quatern.iter().chain(&f.offset).enumerate() {
        h[256 + 4 * i..260 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    for (r, row) in f.srow.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            h[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c].copy_from_slice(&v.to_le_bytes());
        }
    }
    h.extend([0u8; 8]);
    h
}

const SROW: [[f32; 4]; 3] = [
    [2.0, 0.0, 0.0, -7.0],
    [0.0, 3.0, 0.0, 8.0],
    [0.0, 0.0, 4.0, 9.0],
];

/// The affine protokd reads from `f`, row by row.
fn affine(f: &Fields) -> [[f64; 4]; 4] {
    let img = decode_image(&file(f), Path::new("corner.nii")).unwrap();
    let a = img.geometry.affine;
    std::array::from_fn(|r| std::array::from_fn(|c| a[(r, c)]))
}

fn rows(diag: [f64; 3], offset: [f64; 3]) -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        m[i][i] = diag[i];
        m[i][3] = offset[i];
    }
    m[3][3] = 1.0;
    m
}

#[test]
fn qform_voxel_sizes_that_are_not_positive_count_as_one() {
    let base = Fields {
        pixdim: [1.0, 0.0, -2.0, 3.0],
        qform_code: 1,
        sform_code: 0,
        quatern: [0.0, 0.0, 0.0],
        offset: [5.0, 6.0, 7.0],
        srow: SROW,
    };
    // dx = 0 -> 1, dy = -2 -> 1, dz = 3.
    assert_eq!(affine(&base), rows([1.0, 1.0, 3.0], [5.0, 6.0, 7.0]));
    // qfac -1 flips z; a half turn about z flips x and y.
    let turned = Fields {
        pixdim: [-1.0, -0.5, 2.0, f32::NAN],
        quatern: [0.0, 0.0, 1.0],
        ..base
    };
    assert_eq!(affine(&turned), rows([-1.0, -2.0, -1.0], [5.0, 6.0, 7.0]));
}

#[test]
fn form_codes_are_used_when_positive() {
    let f = |qform_code, sform_code| Fields {
        pixdim: [1.0, 1.5, 2.5, 3.5],
        qform_code,
        sform_code,
        quatern: [0.0, 0.0, 0.0],
        offset: [1.0, 2.0, 3.0],
        srow: SROW,
    };
    let sform = rows([2.0, 3.0, 4.0], [-7.0, 8.0, 9.0]);
    let qform = rows([1.5, 2.5, 3.5], [1.0, 2.0, 3.0]);
    let method1 = rows([1.5, 2.5, 3.5], [0.0, 0.0, 0.0]);
    // A code above 4 is used; a negative one is "unknown" (nibabel would use it).
    assert_eq!(affine(&f(1, 5)), sform);
    assert_eq!(affine(&f(7, 0)), qform);
    assert_eq!(affine(&f(2, -1)), qform);
    assert_eq!(affine(&f(-3, -1)), method1);
    assert_eq!(affine(&f(0, 0)), method1);
}
