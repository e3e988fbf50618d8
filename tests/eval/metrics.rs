// Verifies (every test in this file): R-MTH-11
//! `protokd score` against metrics computed independently with medpy and NumPy
//! (`tools/metrics/make_fixtures.py`, outputs in `tests/fixtures/metrics/`), and its bad input.

use crate::common::refusal::{file, refusal, refused};
use crate::common::{protokd_command, s, TempDir};
use protokd::io::nifti::{encode_image, read_image, OutDtype};
use protokd::volume::Volume;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(got: &Value, want: &Value, tol: f64, what: &str) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "{what}: got {g}, want {w}"),
        _ => assert!(
            got.is_null() && want.is_null(),
            "{what}: got {got}, want {want}"
        ),
    }
}

/// The arguments of `protokd score --pred P --label L --json OUT EXTRA...`.
fn score_args(pred: &Path, label: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    [
        "score",
        "--pred",
        s(pred),
        "--label",
        s(label),
        "--json",
        s(out),
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

/// Runs `protokd score --pred P --label L --json OUT --force EXTRA...` and returns its JSON.
pub(crate) fn score(pred: &Path, label: &Path, extra: &[&str], tmp: &TempDir) -> Value {
    let out = tmp.join("out.json");
    let mut args = score_args(pred, label, &out, extra);
    args.push("--force".into()); // the same JSON path is rewritten for every pair
    let o = protokd_command().args(&args).output().unwrap();
    assert!(
        o.status.success(),
        "protokd {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("WT") && stdout.contains("ET"), "{stdout}");
    assert!(stdout.contains("lesion-wise dice"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

#[test]
fn every_fixture_matches_medpy_in_mm_and_voxels() {
    let exp = expected();
    let pairs = exp["pairs"].as_object().unwrap();
    assert!(pairs.len() >= 5);
    let tmp = TempDir::new("score");
    for (name, case) in pairs {
        let pred = fixtures().join(case["pred"].as_str().unwrap());
        let label = fixtures().join(case["label"].as_str().unwrap());
        // Plain file names say nothing of the release, and the values of these maps fit a 2024
        // label set too: the label set is given (`--labels`), as it must be since 2024 sets exist.
        let labels = case["release"].as_str().unwrap();
        for (units, extra) in [
            ("mm", &["--labels", labels][..]),
            ("voxels", &["--labels", labels, "--voxel-units"][..]),
        ] {
            let got = score(&pred, &label, extra, &tmp);
            let want = &case[units];
            for region in ["WT", "TC", "ET"] {
                for (key, tol) in [
                    ("dice", 1e-12),
                    ("sensitivity", 1e-12),
                    ("specificity", 1e-12),
                    ("hd95", 1e-9),
                ] {
                    close(
                        &got[region][key],
                        &want[region][key],
                        tol,
                        &format!("{name} {units} {region} {key}"),
                    );
                }
            }
            let meta = &got["meta"];
            assert_eq!(meta["hd95_units"], units, "{name}");
            assert_eq!(meta["release"], case["release"], "{name}");
            assert_eq!(meta["pred"]["sha256"].as_str().unwrap().len(), 64);
        }
    }
}

#[test]
fn fixtures_cover_the_special_cases() {
    let exp = expected();
    let p = &exp["pairs"];
    for r in ["WT", "TC", "ET"] {
        assert_eq!(p["identical"]["mm"][r]["dice"], 1.0);
        assert_eq!(p["identical"]["mm"][r]["hd95"], 0.0);
    }
    assert!(p["no_et_pred"]["mm"]["ET"]["hd95"].is_null());
    assert_eq!(p["no_et_pred"]["mm"]["ET"]["dice"], 0.0);
    assert!(p["no_et_both"]["mm"]["ET"]["hd95"].is_null());
    assert_eq!(p["no_et_both"]["mm"]["ET"]["dice"], 1.0);
    assert_eq!(
        p["aniso"]["spacing_xyz"],
        serde_json::json!([1.0, 1.5, 3.0])
    );
    // Anisotropic spacing changes HD95.
    assert_ne!(
        p["aniso"]["mm"]["WT"]["hd95"],
        p["aniso"]["voxels"]["WT"]["hd95"]
    );
}

// Verifies: R-DAT-2
#[test]
fn label_set_given_inferred_or_refused() {
    let tmp = TempDir::new("score-release");
    let f = fixtures();
    let (p, l) = (
        f.join("no_et_both_pred.nii.gz"),
        f.join("no_et_both_label.nii.gz"),
    );
    // Labels 0-2 under plain names: 2018 and 2023 read them alike, 2024 PED does not (1 = ET).
    // Until BraTS 2024 this defaulted to 2018; now it is refused, naming the flag.
    let o = protokd_command()
        .args(score_args(&p, &l, &tmp.join("x.json"), &[]))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("2024-ped") && err.contains("--labels"),
        "{err}"
    );
    let got = score(&p, &l, &["--labels", "2018"], &tmp);
    assert_eq!(got["meta"]["release_source"], "given");
    assert_eq!(got["meta"]["release"], "2018");
    // --release is the old name of --labels.
    let got = score(
        &f.join("aniso_pred.nii.gz"),
        &f.join("aniso_label.nii.gz"),
        &["--release", "2023"],
        &tmp,
    );
    assert_eq!(got["meta"]["release_source"], "given");
    // BraTS 2023 names with labels 0-3: 2023 and 2024 GLI read them alike, inferred.
    for (from, to) in [
        ("aniso_pred", "BraTS-GLI-00001-000"),
        ("aniso_label", "BraTS-GLI-00001-000-seg"),
    ] {
        std::fs::copy(
            f.join(format!("{from}.nii.gz")),
            tmp.join(&format!("{to}.nii.gz")),
        )
        .unwrap();
    }
    let got = score(
        &tmp.join("BraTS-GLI-00001-000.nii.gz"),
        &tmp.join("BraTS-GLI-00001-000-seg.nii.gz"),
        &[],
        &tmp,
    );
    assert_eq!(got["meta"]["release"], "2023");
    assert_eq!(got["brats_challenge"]["challenge"], "BraTS-GLI");
}

// Verifies: R-CLI-1
#[test]
fn bad_input_is_a_clear_error() {
    let f = fixtures();
    let (bp, bl) = (f.join("blobs_pred.nii.gz"), f.join("blobs_label.nii.gz"));
    let tmp = TempDir::new("score-inputs");
    let out = tmp.join("out.json");
    let img = read_image(&bl).unwrap();
    let nifti = |name: &str, vol: &Volume, dtype: OutDtype| {
        let bytes = encode_image(vol, &img.geometry, dtype, true).unwrap();
        (tmp.join(name), vec![file(&tmp.join(name), bytes)])
    };
    // Dims mismatch.
    let [nz, ny, nx] = img.volume.dims;
    let small = Volume::new([nz, ny, nx - 1], vec![0.0; nz * ny * (nx - 1)]);
    let (small, small_file) = nifti("small.nii.gz", &small, OutDtype::U8);
    // Labels outside the release's set: a 5 anywhere; 3 and 4 together; 1.5.
    let with = |i: usize, v: f32, name: &str, dtype: OutDtype| {
        let mut vol = img.volume.clone();
        vol.data[i] = v;
        nifti(name, &vol, dtype)
    };
    let (five, five_file) = with(7, 5.0, "five.nii.gz", OutDtype::U8);
    let (three, three_file) = with(7, 3.0, "three.nii.gz", OutDtype::U8);
    let (half, half_file) = with(3, 1.5, "half.nii.gz", OutDtype::F32);
    let (missing, junk) = (tmp.join("missing.nii.gz"), tmp.join("junk.nii"));
    let existing = tmp.join("existing.json");
    let aniso = f.join("aniso_pred.nii.gz");
    let junk_file = vec![file(&junk, b"this is not a NIfTI header")];
    let keep = vec![file(&existing, b"keep")];
    // `score --pred P --label <blobs> --json <out> EXTRA...`.
    let bad = |pred: &Path, extra: &[&str]| score_args(pred, &bl, &out, extra);
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("a missing prediction", vec![], bad(&missing, &[]), 1, ["missing.nii.gz"]),
        refusal("a missing label map", vec![], score_args(&bp, &missing, &out, &[]), 1,
            ["missing.nii.gz"]),
        refusal("not a NIfTI file", junk_file, bad(&junk, &[]), 1, ["junk.nii"]),
        // Same dims, other spacing and origin.
        refusal("affines that differ", vec![], bad(&aniso, &[]), 1, ["affines"]),
        refusal("dims that differ", small_file, bad(&small, &[]), 1, ["small.nii.gz"]),
        refusal("a label 5", five_file, bad(&five, &[]), 1, ["raw label 5"]),
        refusal("a 4 read as BraTS 2023", vec![], bad(&bp, &["--release", "2023"]), 1,
            ["raw label 4"]),
        // 0-4 fit both 2024 sets, which read 1 and 3 differently.
        refusal("labels 3 and 4 together", three_file, bad(&three, &[]), 1,
            ["2024-gli", "2024-ped", "--labels"]),
        // A 2024 GLI map (4 = RC) under plain names is not silently read as 2018 (4 = ET).
        refusal("a 4 under plain names", vec![], bad(&bp, &[]), 1,
            ["BraTS 2018-2021", "BraTS 2024 GLI/MET", "--labels 2018|2024-gli"]),
        refusal("a label 1.5", half_file, bad(&half, &[]), 1, ["not a label"]),
        refusal("an unknown release", vec![], bad(&bp, &["--release", "2022"]), 1, ["--release"]),
        // An existing JSON output is refused without --force, and kept.
        refusal("an existing JSON output without --force", keep,
            score_args(&bp, &bl, &existing, &[]), 1, ["--force"]),
    ];
    refused(tmp.path(), table);
}
