// Verifies (every test in this file): R-CLI-3
//! `protokd audit forward|step` never overwrite an input, even with `--force`, whether `--out`
//! names it by the same path, another spelling, a hard link or a symbolic link; an existing
//! `--out` is refused unless `--force` (and then replaced). Each refusal leaves every file as
//! it was (`common::refusal`).

use crate::common::refusal::{refusal, refused};
use crate::common::workflow::model;
use crate::common::{protokd, s, TempDir};
use protokd::io::tensorfile::{write_tensors, OutTensor};
use protokd_reference::Tensor;
use std::path::Path;

/// Writes an `image` of `[n, c, 16, 16, 16]` (and, if `labelled`, a `label` cycling through the
/// four classes) to `path`.
fn tensors(path: &Path, n: usize, c: usize, labelled: bool) {
    let len = n * c * 16 * 16 * 16;
    let x: Vec<f32> = (0..len)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut t = vec![(
        "image".to_string(),
        OutTensor::F32(Tensor::from_vec(&[n, c, 16, 16, 16], x)),
    )];
    if labelled {
        let l: Vec<f32> = (0..n * 16 * 16 * 16)
            .map(|i| ((i / 64) % 4) as f32)
            .collect();
        t.push((
            "label".to_string(),
            OutTensor::F32(Tensor::from_vec(&[n, 1, 16, 16, 16], l)),
        ));
    }
    write_tensors(path, &t, None).unwrap();
}

#[test]
fn audit_outputs_never_replace_an_input_and_need_force_to_replace_anything() {
    let tmp = TempDir::new("audit-no-overwrite");
    let (w, x) = (tmp.join("w.safetensors"), tmp.join("x.safetensors"));
    let (student, teacher, batch) = (
        tmp.join("s.safetensors"),
        tmp.join("t.safetensors"),
        tmp.join("b.safetensors"),
    );
    model(&w, "t1ce", 1);
    model(&student, "t1ce", 2);
    model(&teacher, "t1,t2,t1ce,flair", 3);
    tensors(&x, 1, 1, false);
    tensors(&batch, 2, 4, true);
    let (hard, soft) = (tmp.join("hard.safetensors"), tmp.join("soft.safetensors"));
    std::fs::hard_link(&w, &hard).unwrap();
    std::os::unix::fs::symlink(&x, &soft).unwrap();
    let spelled = tmp.path().join(".").join("x.safetensors");
    let old = tmp.join("old.safetensors");
    std::fs::write(&old, b"the user's file").unwrap();
    let forward = |out: &Path, extra: &[&str]| -> Vec<String> {
        [
            "audit",
            "forward",
            "--weights",
            s(&w),
            "--input",
            s(&x),
            "--out",
            s(out),
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let step = |out: &Path| -> Vec<String> {
        let args = [
            "audit",
            "step",
            "--student",
            s(&student),
            "--teacher",
            s(&teacher),
        ];
        args.iter()
            .chain(&["--batch", s(&batch), "--out", s(out), "--force"])
            .map(|a| a.to_string())
            .collect()
    };
    let input = "is one of the inputs";
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("forward --out is --input", vec![], forward(&x, &[]), 1, [s(&x), input, "--input"]),
        refusal("forward --out is --input, --force", vec![], forward(&x, &["--force"]), 1,
            [s(&x), input, "even with --force"]),
        refusal("forward --out spells --input otherwise", vec![], forward(&spelled, &["--force"]), 1,
            [s(&spelled), s(&x), input]),
        refusal("forward --out a hard link to --weights", vec![], forward(&hard, &["--force"]), 1,
            [s(&hard), s(&w), "--weights", input]),
        refusal("forward --out a symbolic link to --input", vec![], forward(&soft, &["--force"]), 1,
            [s(&soft), s(&x), input]),
        refusal("forward --out exists", vec![], forward(&old, &[]), 1,
            [s(&old), "already exists", "--force"]),
        refusal("step --out is --student", vec![], step(&student), 1, [s(&student), "--student", input]),
        refusal("step --out is --teacher", vec![], step(&teacher), 1, [s(&teacher), "--teacher", input]),
        refusal("step --out is --batch", vec![], step(&batch), 1, [s(&batch), "--batch", input]),
    ];
    refused(tmp.path(), table);
    // With --force an output that is not an input is replaced; the same bytes as a new file.
    let new = tmp.join("new.safetensors");
    for (out, extra) in [(&new, &[][..]), (&old, &["--force"][..])] {
        let args = forward(out, extra);
        let o = protokd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(std::fs::read(&new).unwrap(), std::fs::read(&old).unwrap());
}
