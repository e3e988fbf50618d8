// Verifies (every test in this file): R-DAT-3, R-CLI-1, R-CLI-4
//! Bad authors' `.npy` arrays through the binary: `segment` of one array and `train` on a folder
//! of them each end with one `error:` line naming the file and the problem, exit status 1, no
//! panic, nothing written (the refusal tables of `common::refusal`); a header claiming a huge
//! shape is refused under the memory cap and the clock of `common::bounded`.

use crate::bounded::refused_within;
use crate::common::refusal::{file, refusal, refused, Refusal};
use crate::common::workflow::{self, teacher_args};
use crate::common::{s, TempDir};
use crate::npy_files::{authors_f32, f32_le, npy_bytes};

/// A valid `[5, 2, 2, 2]` array's values: images, then labels 0..3.
fn good() -> Vec<f32> {
    (0..40)
        .map(|i| {
            if i < 32 {
                i as f32 * 0.25
            } else {
                (i % 4) as f32
            }
        })
        .collect()
}

/// The bad files: (case, file name, bytes, words of the message, whether the header is bad:
/// then `segment` refuses it before it starts; a bad value is found when the array is read).
type BadFile = (&'static str, &'static str, Vec<u8>, Vec<&'static str>, bool);

fn bad_files() -> Vec<BadFile> {
    let f4 = f32_le(&good());
    let mut bad_label = good();
    bad_label[35] = 4.0;
    let f8_inexact: Vec<u8> = good()
        .iter()
        .enumerate()
        .flat_map(|(i, &v)| if i == 2 { 0.3f64 } else { f64::from(v) }.to_le_bytes())
        .collect();
    let full = authors_f32([2, 2, 2], &good());
    vec![
        (
            "wrong shape",
            "four.npy",
            npy_bytes("<f4", false, &[4, 2, 2, 2], &f4[..128]),
            vec!["four.npy", "4 channel(s), not 5"],
            true,
        ),
        (
            "int32",
            "int.npy",
            npy_bytes("<i4", false, &[5, 2, 2, 2], &f4),
            vec!["int.npy", "<i4", "not float32 or float64"],
            true,
        ),
        (
            "float64 not from float32",
            "f8.npy",
            npy_bytes("<f8", false, &[5, 2, 2, 2], &f8_inexact),
            vec!["f8.npy", "holds 0.3", "not a float32 value"],
            false,
        ),
        (
            "label 4",
            "label.npy",
            authors_f32([2, 2, 2], &bad_label),
            vec!["label.npy", "label channel (4) holds 4"],
            false,
        ),
        (
            "truncated",
            "cut.npy",
            full[..full.len() - 7].to_vec(),
            vec!["cut.npy", "truncated"],
            true,
        ),
        (
            "not an npy",
            "junk.npy",
            b"PK\x03\x04 not an array".to_vec(),
            vec!["junk.npy", "not a NumPy .npy file"],
            true,
        ),
    ]
}

#[test]
fn bad_npy_files_are_refused_by_segment_and_train() {
    let dir = TempDir::new("cli-npy");
    let model = dir.join("m.safetensors");
    workflow::model(&model, "t1,t2,t1ce,flair", 1);
    let mut rows: Vec<Refusal> = Vec::new();
    for (case, name, bytes, words, bad_header) in bad_files() {
        let input = dir.join(name);
        let out = dir.join("seg.nii.gz");
        let args = [
            "segment",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--out",
            s(&out),
        ];
        if bad_header {
            rows.push(refusal(
                &format!("segment: {case}"),
                vec![file(&input, bytes.clone())],
                args.iter().chain(&workflow::WINDOW),
                1,
                words.clone(),
            ));
        }
        // train: the bad array among good ones, listed for training (every training case is
        // read before the run starts), refused before the run folder exists.
        let data = dir.join(&format!("data_{}", name.trim_end_matches(".npy")));
        let cfg = dir.join("cfg.json");
        let mut files = vec![
            file(&data.join(name), bytes),
            file(
                &cfg,
                r#"{"n_filters": 4, "batch_size": 1, "patch": [16, 16, 16], "crop": null}"#,
            ),
        ];
        for id in ["a", "b", "c"] {
            files.push(file(
                &data.join(format!("{id}.npy")),
                authors_f32([2, 2, 2], &good()),
            ));
        }
        let bad_id = name.trim_end_matches(".npy");
        files.push(file(&data.join("train_list.txt"), format!("a\n{bad_id}\n")));
        files.push(file(&data.join("val_list.txt"), "b\n"));
        let run = dir.join("run");
        let args = teacher_args(&data, &cfg, &run);
        rows.push(refusal(&format!("train: {case}"), files, args, 1, words));
    }
    let a = dir.join("a.npy");
    rows.push(refusal(
        "two arrays",
        vec![file(&a, authors_f32([2, 2, 2], &good()))],
        [
            "segment",
            "--model",
            s(&model),
            "--input",
            &format!("{},{}", s(&a), s(&a)),
            "--out",
            s(&dir.join("x.nii.gz")),
        ],
        1,
        ["a.npy", "give one .npy file or one folder of them"],
    ));
    refused(dir.path(), rows);
}

#[test]
fn a_huge_npy_header_is_refused_within_bounds() {
    let dir = TempDir::new("cli-npy-huge");
    let model = dir.join("m.safetensors");
    workflow::model(&model, "t1,t2,t1ce,flair", 1);
    let huge = dir.join("huge.npy");
    std::fs::write(
        &huge,
        npy_bytes("<f4", false, &[5, 2000, 2000, 2000], &[0; 4096]),
    )
    .unwrap();
    let out = dir.join("seg.nii.gz");
    refused_within(
        &[
            "segment",
            "--model",
            s(&model),
            "--input",
            s(&huge),
            "--out",
            s(&out),
        ],
        &[
            "huge.npy",
            "8000000000 voxels, above the limit of 268435456 voxels",
        ],
    );
    assert!(!out.exists());
}
