// Verifies (every test in this file): R-CLI-4
//! Hostile NIfTI files (issue 13): sizes come from the header and are checked before anything
//! is allocated or decompressed. Each probe goes through the real binary (`score`, `segment`,
//! `evaluate`, `train`) under a 1 GiB address-space cap and a 2 s clock
//! ([`bounded::refused_within`]), then through the refusal table (message contract, no file
//! created); the reader's own checks are tested on bytes too.

use crate::bounded::{
    gzip, gzip_bomb, junk_after_huge_header, refused_within, small, u8_header, zeros_after,
};
use crate::common::refusal::{file, refusal, refused};
use crate::common::workflow::{model, phantoms, teacher_args, SIZE, WINDOW};
use crate::common::{s, TempDir};
use protokd::io::nifti::{checked_size, decode_image, read_dims, MAX_VOXELS};
use std::path::Path;

/// The limit as the messages print it.
fn limit() -> String {
    format!("limit of {MAX_VOXELS} voxels")
}

#[test]
fn the_voxel_limit_is_checked_without_overflow() {
    assert_eq!(
        checked_size(&[240, 240, 155], MAX_VOXELS, "voxels", "v").unwrap(),
        8_928_000
    );
    assert_eq!(checked_size(&[], 1, "voxels", "v").unwrap(), 1);
    assert_eq!(
        checked_size(&[1 << 14, 1 << 14], 1 << 28, "voxels", "v").unwrap(),
        1 << 28
    );
    let e = checked_size(&[1 << 14, 1 << 14, 2], 1 << 28, "voxels", "dims").unwrap_err();
    assert_eq!(
        e.to_string(),
        "dims 16384 x 16384 x 2 = 536870912 voxels, above the limit of 268435456 voxels"
    );
    let e = checked_size(&[1 << 32, 4, 1 << 32], usize::MAX, "bytes", "shape").unwrap_err();
    assert!(
        e.to_string()
            .contains("4294967296 x 4 x 4294967296 overflows"),
        "{e}"
    );
    assert!(checked_size(&[usize::MAX, 0], 0, "bytes", "z").is_ok());
}

#[test]
fn the_reader_refuses_from_the_header_and_stops_at_the_promised_size() {
    let p = Path::new("bomb.nii.gz");
    for (bytes, words) in [
        (
            junk_after_huge_header(),
            vec!["bomb.nii.gz", "2000 x 2000 x 2000", "8000000000"],
        ),
        (
            gzip_bomb(),
            vec!["bomb.nii.gz", "1024 x 1024 x 1024", "1073741824 voxels"],
        ),
        // 16^3 voxels promised, 64 MiB more than that in the stream.
        (
            zeros_after(&u8_header([16, 16, 16]), 64),
            vec!["holds more than the header"],
        ),
        (
            small([4, 4, 4], true),
            vec!["affine holds NaN", "must be finite"],
        ),
    ] {
        let e = decode_image(&bytes, p).unwrap_err().to_string();
        assert!(words.iter().all(|w| e.contains(w)), "{e}");
    }
    let mut short = u8_header([16, 16, 16]);
    short.resize(352 + 100, 0);
    let e = decode_image(&gzip(&short), p).unwrap_err().to_string();
    assert!(e.contains("data shorter than the header says"), "{e}");
    // Valid files still read, and read_dims agrees without reading the voxels.
    let dir = TempDir::new("limits-dims");
    let f = dir.join("ok.nii.gz");
    std::fs::write(&f, small([5, 4, 3], false)).unwrap();
    assert_eq!(read_dims(&f).unwrap(), [3, 4, 5]);
    let f = dir.join("bomb.nii.gz");
    std::fs::write(&f, gzip_bomb()).unwrap();
    assert!(read_dims(&f).unwrap_err().to_string().contains(&limit()));
}

/// `protokd score --pred pred --label label`.
fn score_args<'a>(pred: &'a Path, label: &'a Path) -> Vec<&'a str> {
    vec!["score", "--pred", s(pred), "--label", s(label)]
}

/// `protokd segment` of `input` with `model` into `out`, with the tests' small window.
fn segment_args<'a>(model: &'a Path, input: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let mut a = vec![
        "segment",
        "--model",
        s(model),
        "--input",
        s(input),
        "--out",
        s(out),
    ];
    a.extend(WINDOW);
    a
}

/// `score`: each bomb, a stream longer than promised, a NaN affine, and a 640^3 prediction
/// (under the voxel limit: 1 GiB as f32) against a 16^3 label map, refused from the headers
/// before any voxel is read (reading it would break the 1 GiB cap).
#[test]
fn score_refuses_hostile_files_within_bounds() {
    let dir = TempDir::new("limits-score");
    let (junk, bomb, long, nan, big, label) = (
        dir.join("junk.nii.gz"),
        dir.join("bomb.nii.gz"),
        dir.join("long.nii.gz"),
        dir.join("nan.nii.gz"),
        dir.join("big.nii.gz"),
        dir.join("label.nii.gz"),
    );
    let files = [
        file(&junk, junk_after_huge_header()),
        file(&bomb, gzip_bomb()),
        file(&long, zeros_after(&u8_header([16, 16, 16]), 256)),
        file(&nan, small([16, 16, 16], true)),
        file(&big, zeros_after(&u8_header([640, 640, 640]), 250)),
        file(&label, small([16, 16, 16], false)),
    ];
    for (p, b) in &files {
        std::fs::write(p, b).unwrap();
    }
    let score = |pred| score_args(pred, &label);
    let lim = limit();
    let rows: Vec<(&str, &Path, Vec<&str>)> = vec![
        (
            "junk after a 2000^3 header",
            &junk,
            vec![s(&junk), "2000 x 2000 x 2000", &lim],
        ),
        (
            "a 1 GiB gzip bomb",
            &bomb,
            vec![s(&bomb), "1024 x 1024 x 1024", &lim],
        ),
        (
            "a stream longer than its header",
            &long,
            vec![s(&long), "more than the header"],
        ),
        ("a NaN affine", &nan, vec![s(&nan), "NaN", "must be finite"]),
        (
            "a 640^3 prediction, a 16^3 label",
            &big,
            vec![s(&big), "640 x 640 x 640", "16 x 16 x 16"],
        ),
    ];
    for (_, pred, words) in &rows {
        refused_within(&score(pred), words);
    }
    let table = rows
        .iter()
        .map(|(case, pred, words)| refusal(case, vec![], score(pred), 1, words.clone()))
        .collect();
    refused(dir.path(), table);
}

/// `segment`, `evaluate` and `train` read the same files through the dataset and input
/// readers: the bomb and the 2000^3 header are refused there too, under the bounds and through
/// the refusal table: each command reads every input's header before it prints, creates or
/// computes anything, so nothing is on stdout and no folder is left behind.
#[test]
fn segment_evaluate_and_train_refuse_bombs_within_bounds() {
    let dir = TempDir::new("limits-commands");
    let data = dir.join("data");
    let ids = phantoms(&data, 4, "2018", SIZE);
    let m = dir.join("t1ce.safetensors");
    model(&m, "t1ce", 1);
    let (bomb, junk) = (dir.join("bomb.nii.gz"), dir.join("junk.nii.gz"));
    std::fs::write(&bomb, gzip_bomb()).unwrap();
    std::fs::write(&junk, junk_after_huge_header()).unwrap();
    // Every case's T1ce and T1 become the bomb.
    for id in &ids {
        for m in ["t1ce", "t1"] {
            std::fs::write(data.join(id).join(format!("{id}_{m}.nii.gz")), gzip_bomb()).unwrap();
        }
    }
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"n_filters": 4, "batch_size": 2, "patch": [16, 16, 16], "max_epoch": 1,
            "val_patch": [16, 16, 16], "val_stride": [8, 8, 8], "crop": null,
            "val_fraction": 0.25, "test_fraction": 0.25}"#,
    )
    .unwrap();
    let (seg, report, run) = (dir.join("seg.nii.gz"), dir.join("report"), dir.join("run"));
    let lim = limit();
    let seg_args = |input| segment_args(&m, input, &seg);
    let mut eval_args = vec![
        "evaluate",
        "--model",
        s(&m),
        "--data",
        s(&data),
        "--out",
        s(&report),
    ];
    eval_args.extend(WINDOW);
    let train_args = teacher_args(&data, &cfg, &run);
    let bomb_words = vec!["1024 x 1024 x 1024", lim.as_str()];
    let rows: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (seg_args(&bomb), vec![s(&bomb), "1024 x 1024 x 1024", &lim]),
        (seg_args(&junk), vec![s(&junk), "2000 x 2000", &lim]),
        (eval_args, bomb_words.clone()),
        (train_args, bomb_words),
    ];
    for (args, words) in &rows {
        refused_within(args, words);
    }
    let table = rows
        .iter()
        .map(|(args, words)| refusal(args[0], vec![], args.clone(), 1, words.clone()))
        .collect();
    refused(dir.path(), table);
}
