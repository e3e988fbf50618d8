//! Helpers shared by the tests that segment, evaluate and train on phantoms (`infer::segment`,
//! `eval::evaluate`, `engine::devices`, `train::run`): tiny phantom cohorts, tiny seeded models,
//! and the small window they run with.

use super::{protokd, s};
use protokd::io::checkpoint;
use protokd::io::tensorfile::write_tensors;
use protokd::modality::Modalities;
use protokd_reference::state::{VNetConfig, VNetState};
use std::path::{Path, PathBuf};

/// Phantom grid X,Y,Z: dims (z, y, x) = (20, 36, 40), so the 16^3 window pads nothing and
/// moves its last start back on y and x.
pub const SIZE: &str = "40,36,20";
/// `--patch` and `--stride` of the tests (the VNet needs multiples of 16).
pub const WINDOW: [&str; 4] = ["--patch", "16,16,16", "--stride", "8,8,8"];

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mni152")
}

/// Writes `cases` phantom cases of `release` (2018 or 2023) with seed 1 under `dir`; returns
/// their ids in order.
pub fn phantoms(dir: &Path, cases: u64, release: &str, size: &str) -> Vec<String> {
    let t = templates();
    let n = cases.to_string();
    let o = protokd(&[
        "phantom",
        "--out",
        s(dir),
        "--cases",
        &n,
        "--seed",
        "1",
        "--size",
        size,
        "--release",
        release,
        "--templates",
        s(&t),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len() as u64, cases);
    ids
}

/// A seeded VNet with 4 classes.
pub fn state(in_channels: usize, n_filters: usize, seed: u64) -> VNetState {
    VNetState::init(
        VNetConfig {
            in_channels,
            n_classes: 4,
            n_filters,
        },
        seed,
    )
}

/// Saves a seeded n_filters-4 model taking `modalities` (protokd checkpoint with metadata).
pub fn model(path: &Path, modalities: &str, seed: u64) -> VNetState {
    model_with(path, modalities, 4, seed)
}

/// Saves a seeded model with `n_filters` taking `modalities` (protokd checkpoint with metadata).
pub fn model_with(path: &Path, modalities: &str, n_filters: usize, seed: u64) -> VNetState {
    let m = Modalities::parse(modalities).unwrap();
    let st = state(m.channels().len(), n_filters, seed);
    checkpoint::save(path, &st, &m).unwrap();
    st
}

/// Saves a seeded n_filters-4 model as a plain PyTorch state_dict (no metadata).
pub fn pytorch_model(path: &Path, in_channels: usize, seed: u64) {
    let st = state(in_channels, 4, seed);
    write_tensors(path, &checkpoint::state_tensors(&st, ""), None).unwrap();
}

/// Runs protokd, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = protokd(args);
    assert!(
        o.status.success(),
        "protokd {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs protokd, asserts failure with one `error:` line holding every needle; returns stderr.
pub fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = protokd(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "protokd {args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "protokd {args:?}: {err}");
    assert!(err.starts_with("error: "), "protokd {args:?}: {err}");
    assert!(!err.contains("panicked"), "protokd {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "protokd {args:?}: `{n}` not in: {err}");
    }
    err
}

/// The arguments of `protokd train teacher --data data --config cfg --out out`.
pub fn teacher_args<'a>(data: &'a Path, cfg: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "train",
        "teacher",
        "--data",
        s(data),
        "--config",
        s(cfg),
        "--out",
        s(out),
    ]
}
