// Verifies (every test in this file): R-CLI-4
//! Sliding-window patches too large to run (issue 13): refused when the window is checked,
//! before the model or the image is read (before: `--patch 1024,1024,1024` padded a small image
//! to 2^30 voxels per channel and aborted on the allocation).

use crate::bounded::refused_within;
use crate::common::refusal::{refusal, refused};
use crate::common::{s, TempDir};
use protokd::infer::sliding_window::{Window, MAX_PATCH_VOXELS};

#[test]
fn patch_voxels_are_checked_without_overflow() {
    let w = |p: [usize; 3]| {
        Window {
            patch: p,
            stride: p,
        }
        .check()
    };
    assert!(w([96, 128, 128]).is_ok());
    assert!(
        w([160, 240, 240]).is_ok(),
        "a whole BraTS volume in one window"
    );
    let e = w([1024, 1024, 1024]).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "1073741824 voxels, above the limit of {MAX_PATCH_VOXELS}"
        )),
        "{e}"
    );
    let e = w([usize::MAX, 2, 16]).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
}

#[test]
fn segment_refuses_a_huge_patch_within_bounds() {
    let dir = TempDir::new("limits-patch");
    let (m, input, out) = (
        dir.join("m.safetensors"),
        dir.join("in.nii.gz"),
        dir.join("o.nii.gz"),
    );
    let args = |patch: &str| {
        [
            "segment",
            "--model",
            s(&m),
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--patch",
            patch,
        ]
        .map(String::from)
        .to_vec()
    };
    let words = ["1024 x 1024 x 1024", "limit of 16777216 voxels"];
    let a = args("1024,1024,1024");
    refused_within(&a.iter().map(String::as_str).collect::<Vec<_>>(), &words);
    refused(
        dir.path(),
        vec![refusal("--patch 1024,1024,1024", vec![], a, 1, words)],
    );
}
