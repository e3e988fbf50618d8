// Verifies (every test in this file): R-DAT-7, R-CLI-1
//! Issue 13: every model `segment` loads is validated ([`bad_models`]): each bad checkpoint is
//! refused with exit 1, a message naming the file, the tensor and the problem, and no file
//! created or changed.

use crate::bad_models::bad_models;
use crate::bad_models::edited;
use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow::state;
use crate::common::workflow::{phantoms, SIZE, WINDOW};
use crate::common::{protokd, s, TempDir};
use protokd::io::tensorfile::OutTensor;

#[test]
fn segment_refuses_invalid_models() {
    let tmp = TempDir::new("segment-states");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let out = tmp.join("seg.nii.gz");
    let table = bad_models(tmp.path())
        .into_iter()
        .map(|(path, bytes, words)| {
            let mut args = vec!["segment", "--model", s(&path), "--input", s(&case)];
            args.extend(["--out", s(&out)]);
            args.extend(WINDOW);
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            refusal(
                &format!("segment {}", path.display()),
                vec![file(&path, bytes)],
                args,
                1,
                words,
            )
        })
        .collect();
    refused(tmp.path(), table);
}

/// A model within every load bound (each convolution weight 1e5, below the 1e6 limit) whose
/// forward pass overflows f32: `segment` refuses its output (exit 1, the model, "not finite",
/// the class and voxel) and writes nothing.
#[test]
fn segment_refuses_a_model_whose_output_is_not_finite() {
    let tmp = TempDir::new("segment-overflow");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let model = tmp.join("overflow.safetensors");
    let big = edited(&state(1, 4, 3), &|t| {
        for (name, x) in t.iter_mut() {
            if let (true, OutTensor::F32(x)) = (name.ends_with("conv.0.weight"), x) {
                x.data.iter_mut().for_each(|v| *v = 1e5);
            }
        }
    });
    std::fs::write(&model, big).unwrap();
    let out = tmp.join("seg.nii.gz");
    let mut args = vec!["segment", "--model", s(&model), "--input", s(&case)];
    args.extend(["--out", s(&out), "--modality", "t1ce"]);
    args.extend(WINDOW);
    let o = protokd(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in [
        s(&model),
        "output is not finite",
        "class",
        "voxel",
        "nothing was written",
    ] {
        assert!(err.contains(w), "`{w}` not in: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
    let mut left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["data", "overflow.safetensors"], "{err}");
    println!("{err}");
}
