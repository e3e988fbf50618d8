// Verifies (every test in this file): R-CLI-3
//! `protokd segment` never overwrites an input (a modality file reached through a hard link,
//! the model through a symbolic link), even with `--force`; and of two `segment` runs racing to
//! the same new `--out`, exactly one succeeds: the other is refused, not silently replaced.

use crate::common::refusal::{refusal, refused};
use crate::common::workflow::{model, phantoms, SIZE, WINDOW};
use crate::common::{protokd_command, s, temporary_files, TempDir};
use std::path::Path;

/// The arguments of `segment --model m --input case --out out` with the test window, then
/// `extra`.
fn args(m: &Path, case: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    [
        "segment",
        "--model",
        s(m),
        "--input",
        s(case),
        "--out",
        s(out),
    ]
    .iter()
    .chain(&WINDOW)
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

#[test]
fn segment_never_replaces_an_input_through_a_link() {
    let tmp = TempDir::new("segment-links");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let t1ce = case.join(format!("{}_t1ce.nii.gz", ids[0]));
    let m = tmp.join("m.safetensors");
    model(&m, "t1ce", 5);
    let (hard, soft) = (tmp.join("hard.nii.gz"), tmp.join("soft.nii.gz"));
    std::fs::hard_link(&t1ce, &hard).unwrap();
    std::os::unix::fs::symlink(&m, &soft).unwrap();
    let input = "is one of the inputs";
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("--out a hard link to a modality file of the case", vec![],
            args(&m, &case, &hard, &["--force"]), 1, [s(&hard), s(&t1ce), input]),
        refusal("--out a symbolic link to --model", vec![], args(&m, &case, &soft, &["--force"]), 1,
            [s(&soft), s(&m), "--model", input]),
        refusal("--png is --model", vec![],
            args(&m, &case, &tmp.join("new.nii.gz"), &["--png", s(&m), "--force"]), 1,
            [s(&m), "--png", input]),
    ];
    refused(tmp.path(), table);
}

#[test]
fn two_segment_runs_racing_to_one_output_cannot_both_succeed() {
    let tmp = TempDir::new("segment-race");
    let data = tmp.join("data");
    let ids = phantoms(&data, 1, "2018", SIZE);
    let case = data.join(&ids[0]);
    let m = tmp.join("m.safetensors");
    model(&m, "t1ce", 6);
    for round in 0..3 {
        let dir = tmp.join(&format!("round{round}"));
        std::fs::create_dir(&dir).unwrap();
        let out = dir.join("seg.nii.gz");
        let children: Vec<_> = (0..2)
            .map(|_| {
                protokd_command()
                    .args(args(&m, &case, &out, &[]))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let won: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {} of 2 runs succeeded",
            won.len()
        );
        let lost = outputs.iter().find(|o| !o.status.success()).unwrap();
        let e = String::from_utf8_lossy(&lost.stderr);
        assert_eq!(lost.status.code(), Some(1), "{e}");
        assert!(e.contains(s(&out)) && e.contains("already exists"), "{e}");
        assert!(e.contains("--force") && !e.contains("panicked"), "{e}");
        assert_eq!(temporary_files(&dir), Vec::<String>::new());
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
    }
}
