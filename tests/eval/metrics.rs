//! `protokd score` against metrics computed independently with medpy and NumPy
//! (`tools/metrics/make_fixtures.py`, outputs in `tests/fixtures/metrics/`), and its bad input.

use crate::common::{protokd, s, TempDir};
use protokd::io::nifti::{read_image, write_image, OutDtype};
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
fn score_args<'a>(
    pred: &'a Path,
    label: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "score",
        "--pred",
        s(pred),
        "--label",
        s(label),
        "--json",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `protokd score` and returns its JSON.
fn score(pred: &Path, label: &Path, extra: &[&str], tmp: &TempDir) -> Value {
    let out = tmp.join("out.json");
    let mut args = score_args(pred, label, &out, extra);
    args.push("--force"); // the same JSON path is rewritten for every pair
    let o = protokd(&args);
    assert!(
        o.status.success(),
        "protokd {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("WT") && stdout.contains("ET"), "{stdout}");
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
        for (units, extra) in [("mm", &[][..]), ("voxels", &["--voxel-units"][..])] {
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

#[test]
fn release_given_and_default() {
    let tmp = TempDir::new("score-release");
    let f = fixtures();
    let got = score(
        &f.join("no_et_both_pred.nii.gz"),
        &f.join("no_et_both_label.nii.gz"),
        &[],
        &tmp,
    );
    assert!(got["meta"]["release_source"]
        .as_str()
        .unwrap()
        .starts_with("default"));
    let got = score(
        &f.join("aniso_pred.nii.gz"),
        &f.join("aniso_label.nii.gz"),
        &["--release", "2023"],
        &tmp,
    );
    assert_eq!(got["meta"]["release_source"], "given");
}

/// Runs `protokd score` expecting failure: one `error:` line naming `needle`, no panic, no JSON.
fn fails(pred: &Path, label: &Path, extra: &[&str], needle: &str) {
    let tmp = TempDir::new("score-bad");
    let out = tmp.join("out.json");
    let args = score_args(pred, label, &out, extra);
    let o = protokd(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("internal error"), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!out.exists(), "the JSON was written");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn bad_input_is_a_clear_error() {
    let f = fixtures();
    let (bp, bl) = (f.join("blobs_pred.nii.gz"), f.join("blobs_label.nii.gz"));
    let tmp = TempDir::new("score-inputs");
    // Missing file.
    let missing = tmp.join("missing.nii.gz");
    fails(&missing, &bl, &[], "missing.nii.gz");
    fails(&bp, &missing, &[], "missing.nii.gz");
    // Not a NIfTI file.
    let junk = tmp.join("junk.nii");
    std::fs::write(&junk, b"this is not a NIfTI header").unwrap();
    fails(&junk, &bl, &[], "junk.nii");
    // Affine mismatch (same dims, other spacing and origin).
    fails(&f.join("aniso_pred.nii.gz"), &bl, &[], "affines");
    // Dims mismatch.
    let img = read_image(&bl).unwrap();
    let [nz, ny, nx] = img.volume.dims;
    let small = Volume::new([nz, ny, nx - 1], vec![0.0; nz * ny * (nx - 1)]);
    let small_path = tmp.join("small.nii.gz");
    write_image(&small_path, &small, &img.geometry, OutDtype::U8).unwrap();
    fails(&small_path, &bl, &[], "small.nii.gz");
    // Labels outside the release's set: a 5 anywhere; a 4 read as 2023; 3 and 4 together.
    let with = |v: f32, name: &str| {
        let mut vol = img.volume.clone();
        vol.data[7] = v;
        let p = tmp.join(name);
        write_image(&p, &vol, &img.geometry, OutDtype::U8).unwrap();
        p
    };
    fails(&with(5.0, "five.nii.gz"), &bl, &[], "raw label 5");
    fails(&bp, &bl, &["--release", "2023"], "raw label 4");
    fails(
        &with(3.0, "three.nii.gz"),
        &bl,
        &[],
        "both raw labels 3 and 4",
    );
    let mut vol = img.volume.clone();
    vol.data[3] = 1.5;
    let half = tmp.join("half.nii.gz");
    write_image(&half, &vol, &img.geometry, OutDtype::F32).unwrap();
    fails(&half, &bl, &[], "not a label");
    fails(&bp, &bl, &["--release", "2022"], "--release");
    // An existing JSON output is refused without --force, and kept.
    let existing = tmp.join("existing.json");
    std::fs::write(&existing, b"keep").unwrap();
    let o = protokd(&score_args(&bp, &bl, &existing, &[]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
}
