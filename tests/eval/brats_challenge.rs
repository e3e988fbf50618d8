// Verifies (every test in this file): R-MTH-11
//! `protokd score`'s BraTS challenge metrics (legacy and lesion-wise Dice and HD95, lesion
//! counts, sensitivity, specificity) against the official BraTS 2023 metrics code
//! (`tools/brats_metrics/make_fixtures.py`, outputs in `tests/fixtures/brats_metrics/`).

use crate::common::refusal::{file, refusal, refused};
use crate::common::{s, TempDir};
use crate::metrics::score;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/brats_metrics")
}

#[test]
fn every_pair_matches_the_official_code() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let pairs = expected["pairs"].as_object().unwrap();
    assert!(pairs.len() >= 10, "{} pairs", pairs.len());
    let tmp = TempDir::new("brats-challenge");
    let mut worst: f64 = 0.0;
    for (name, case) in pairs {
        let pred = fixtures().join(case["pred"].as_str().unwrap());
        let label = fixtures().join(case["label"].as_str().unwrap());
        let challenge = case["challenge"].as_str().unwrap();
        let labels = case["labels"].as_str().unwrap();
        let got = score(
            &pred,
            &label,
            &["--labels", labels, "--challenge", challenge],
            &tmp,
        );
        let got = &got["brats_challenge"];
        assert_eq!(got["challenge"], challenge, "{name}");
        for region in ["WT", "TC", "ET"] {
            let want = &case["regions"][region];
            for (ours, theirs) in [
                ("legacy_dice", "Legacy_Dice"),
                ("legacy_hd95", "Legacy_HD95"),
                ("lesionwise_dice", "LesionWise_Score_Dice"),
                ("lesionwise_hd95", "LesionWise_Score_HD95"),
                ("sensitivity", "Sensitivity"),
                ("specificity", "Specificity"),
                ("lesions_tp", "Num_TP"),
                ("lesions_fp", "Num_FP"),
                ("lesions_fn", "Num_FN"),
            ] {
                let (g, w) = (got[region][ours].as_f64(), want[theirs].as_f64().unwrap());
                let g = g.unwrap_or_else(|| panic!("{name} {region} {ours}: {}", got[region]));
                worst = worst.max((g - w).abs());
                assert!(
                    (g - w).abs() <= 1e-6,
                    "{name} {region} {ours}: got {g}, official {w}"
                );
            }
        }
    }
    eprintln!("largest difference from the official code: {worst:e}");
}

#[test]
fn fixtures_cover_the_special_cases() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let p: Value = serde_json::from_str(&text).unwrap();
    let p = &p["pairs"];
    let r = |pair: &str, region: &str, key: &str| p[pair]["regions"][region][key].as_f64().unwrap();
    // Missed and false-positive lesions, empty masks, several lesions, anisotropic voxels.
    assert!(r("missed_and_false_positive", "TC", "Num_FN") >= 1.0);
    assert!(r("missed_and_false_positive", "WT", "Num_FP") >= 1.0);
    assert_eq!(r("empty_both", "WT", "LesionWise_Score_Dice"), 1.0);
    assert_eq!(r("empty_both", "WT", "Legacy_HD95"), 0.0);
    assert_eq!(r("empty_pred", "WT", "Legacy_HD95"), 374.0);
    assert_eq!(r("empty_label", "WT", "LesionWise_Score_HD95"), 374.0);
    assert!(r("identical", "WT", "Num_TP") >= 2.0);
    assert!(r("noisy", "ET", "Num_FP") >= 10.0);
    assert_ne!(
        p["anisotropic"]["spacing_xyz"][2],
        p["anisotropic"]["spacing_xyz"][0]
    );
    // The MET parameters count a small lesion that GLI leaves out.
    assert!(r("small_lesions_met", "WT", "Num_FN") > r("small_lesions", "WT", "Num_FN"));
}

// Verifies: R-DAT-2, R-CLI-1
#[test]
fn label_sets_and_challenges_refused_with_the_flag_to_use() {
    let tmp = TempDir::new("brats-labels");
    let f = fixtures();
    // The 2024 GLI pair (values 0-4) under plain names: 2024 GLI and 2024 PED both fit and read
    // 1 and 3 differently.
    let cavity = std::fs::read(f.join("gli2024_cavity_label.nii.gz")).unwrap();
    let cavity_pred = std::fs::read(f.join("gli2024_cavity_pred.nii.gz")).unwrap();
    let (gp, gl) = (tmp.join("pred.nii.gz"), tmp.join("gt.nii.gz"));
    // Values 0-3 under BraTS-PED names: 2023 (3 = ET) and 2024 PED (3 = CC) both fit.
    let multi = std::fs::read(f.join("multi_lesion_label.nii.gz")).unwrap();
    let (pp, pl) = (
        tmp.join("BraTS-PED-00001-000.nii.gz"),
        tmp.join("BraTS-PED-00001-000-seg.nii.gz"),
    );
    let out = tmp.join("out.json");
    let args = |p: &Path, l: &Path, extra: &[&str]| -> Vec<String> {
        ["score", "--pred", s(p), "--label", s(l), "--json", s(&out)]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    let both = || {
        vec![
            file(&gp, cavity_pred.clone()),
            file(&gl, cavity.clone()),
            file(&pp, multi.clone()),
            file(&pl, multi.clone()),
        ]
    };
    #[rustfmt::skip]
    let table = vec![
        refusal("0-4 under plain names", both(), args(&gp, &gl, &[]), 1,
            ["2024-gli", "2024-ped", "--labels"]),
        refusal("0-3 under BraTS-PED names", both(), args(&pp, &pl, &[]), 1,
            ["BraTS 2023", "BraTS 2024 PED", "--labels 2023|2024-ped"]),
        refusal("a 4 read in the 2023 set", both(), args(&gp, &gl, &["--labels", "2023"]), 1,
            ["raw label 4", "BraTS 2023"]),
        refusal("an unknown label set", both(), args(&gp, &gl, &["--labels", "2025"]), 1,
            ["--labels", "2025", "2024-ped"]),
        refusal("an unknown challenge", both(), args(&gp, &gl, &["--labels", "2024-gli",
            "--challenge", "abc"]), 1, ["--challenge", "abc", "met"]),
    ];
    refused(tmp.path(), table);
}

// Verifies: R-DAT-2
#[test]
fn a_2024_gli_pair_is_recognised_by_its_names() {
    let tmp = TempDir::new("brats-gli2024");
    let f = fixtures();
    let (p, l) = (
        tmp.join("BraTS-GLI-02000-100.nii.gz"),
        tmp.join("BraTS-GLI-02000-100-seg.nii.gz"),
    );
    std::fs::copy(f.join("gli2024_cavity_pred.nii.gz"), &p).unwrap();
    std::fs::copy(f.join("gli2024_cavity_label.nii.gz"), &l).unwrap();
    let got = score(&p, &l, &[], &tmp);
    assert_eq!(got["meta"]["release"], "2024-gli");
    assert_eq!(got["brats_challenge"]["challenge"], "BraTS-GLI");
    assert_eq!(
        got["brats_challenge"]["challenge_source"],
        "from the file names"
    );
    // RC (4) is outside WT: the same values as with --labels 2024-gli (the official fixture).
    let text = std::fs::read_to_string(f.join("expected.json")).unwrap();
    let want: Value = serde_json::from_str(&text).unwrap();
    let want = &want["pairs"]["gli2024_cavity"]["regions"]["WT"]["LesionWise_Score_Dice"];
    assert_eq!(got["brats_challenge"]["WT"]["lesionwise_dice"], *want);
}
