// Verifies (every test in this file): R-DAT-3
//! The authors' preprocessed `.npy` dataset (`protokd::data::npy`): the reader against NumPy's
//! writer (the committed fixture of `tools/npy/make_dataset.py`), the authors' float32 z-score
//! against protokd's f64 one on the same phantom, hand-written files of each accepted dtype,
//! discovery and split lists, and every refusal (shape, dtype, labels, truncation, bytes that
//! are not an `.npy`, sizes beyond the voxel limit) naming the file.

use crate::common::{assert_holds, protokd, s, TempDir};
use crate::npy_files::{authors_f32, f32_le, npy_bytes};
use protokd::data::brats;
use protokd::data::dataset;
use protokd::data::npy::{self, read_array};
use protokd::data::preprocess::{preprocess_with_crop, CropBox};
use protokd::io::hash::sha256_hex;
use serde_json::Value;
use std::path::{Path, PathBuf};

const CASE: &str = "Phantom_3_000";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npy")
}

fn raw_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The array as one `[5, D, H, W]` vector: images, then labels as f32.
fn flat(a: &npy::AuthorsArray) -> Vec<f32> {
    let mut v: Vec<f32> = a.images.iter().flat_map(|i| i.data.clone()).collect();
    v.extend(a.labels.iter().map(|&l| f32::from(l)));
    v
}

#[test]
fn numpy_written_fixture_reads_as_numpy_holds_it() {
    let a = read_array(&fixtures().join(format!("{CASE}.npy"))).unwrap();
    assert_eq!(a.dims, [16, 16, 16]);
    let want = raw_f32(&fixtures().join(format!("{CASE}.f32le")));
    let got = flat(&a);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "value {i}");
    }
    // All four labels occur, and the images are z-scored (negative background).
    for l in 0..4u8 {
        assert!(a.labels.contains(&l), "label {l}");
    }
    assert!(a.images.iter().all(|v| v.data.iter().any(|&x| x < 0.0)));
}

#[test]
fn authors_float32_arithmetic_against_protokd_preprocessing() {
    // The phantom the fixture was made from, made again (same command, same bytes).
    let tmp = TempDir::new("npy-fixture-phantom");
    let dir = tmp.join("brats");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mni152");
    let o = protokd(&[
        "phantom",
        "--out",
        s(&dir),
        "--cases",
        "1",
        "--seed",
        "3",
        "--size",
        "16,16,16",
        "--templates",
        s(&templates),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    let inputs = manifest["cases"][CASE]["inputs"].as_object().unwrap();
    assert_eq!(inputs.len(), 5);
    for (name, sha) in inputs {
        let bytes = std::fs::read(dir.join(CASE).join(name)).unwrap();
        assert_eq!(sha256_hex(&bytes), sha.as_str().unwrap(), "{name}");
    }
    let loaded = brats::load_case(&brats::discover(&dir).unwrap().cases[0]).unwrap();
    let whole = CropBox {
        start: [0; 3],
        end: loaded.dims(),
    };
    let ours = preprocess_with_crop(&loaded, &whole).unwrap();
    let theirs = read_array(&fixtures().join(format!("{CASE}.npy"))).unwrap();
    assert_eq!(ours.dims, theirs.dims);
    assert_eq!(ours.labels.as_ref().unwrap(), &theirs.labels);
    // NumPy computes the statistics in float32 (pairwise sums), protokd in f64: the values
    // differ in their last bits only (measured: 9378 of 16384 values differ, by at most
    // 4.8e-7; printed with --nocapture).
    let theirs_images: Vec<f32> = theirs.images.iter().flat_map(|v| v.data.clone()).collect();
    let (mut max_abs, mut max_ulp, mut differing) = (0f32, 0i64, 0usize);
    for (a, b) in ours.image.iter().zip(&theirs_images) {
        max_abs = max_abs.max((a - b).abs());
        let ulp = (i64::from(a.to_bits() as i32) - i64::from(b.to_bits() as i32)).abs();
        max_ulp = max_ulp.max(ulp);
        differing += usize::from(a != b);
    }
    println!(
        "authors' float32 z-score vs protokd's: {differing} of {} values differ, max |diff| \
         {max_abs:e}, max {max_ulp} ulp",
        ours.image.len()
    );
    assert!(max_abs <= 1e-6, "max |diff| {max_abs}");
}

#[test]
fn float32_and_big_endian_files_read_like_the_float64_fixture() {
    let want = raw_f32(&fixtures().join(format!("{CASE}.f32le")));
    let tmp = TempDir::new("npy-dtypes");
    let be: Vec<u8> = want.iter().flat_map(|v| v.to_be_bytes()).collect();
    for (name, bytes) in [
        ("le.npy", authors_f32([16, 16, 16], &want)),
        ("be.npy", npy_bytes(">f4", false, &[5, 16, 16, 16], &be)),
    ] {
        let path = tmp.join(name);
        std::fs::write(&path, bytes).unwrap();
        let a = read_array(&path).unwrap();
        assert_eq!(flat(&a), want, "{name}");
    }
}

#[test]
fn a_folder_of_npy_files_is_a_dataset_with_the_authors_lists() {
    let tmp = TempDir::new("npy-discover");
    let root = tmp.join("data");
    let arrays = root.join("brats2018");
    std::fs::create_dir_all(&arrays).unwrap();
    let values: Vec<f32> = (0..5 * 8).map(|i| if i < 32 { 0.5 } else { 1.0 }).collect();
    for id in ["b", "a", "c"] {
        std::fs::write(
            arrays.join(format!("{id}.npy")),
            authors_f32([2, 2, 2], &values),
        )
        .unwrap();
    }
    std::fs::write(arrays.join(".hidden.npy"), b"junk").unwrap();
    std::fs::write(arrays.join("notes.txt"), b"ignored").unwrap();
    let ds = dataset::discover(&arrays).unwrap();
    let ids: Vec<&str> = ds.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(ds.release, brats::Release::Brats2018);
    assert!(dataset::any_npy(&ds.cases));
    // No lists yet; the authors' layout keeps them in the parent; a list in the folder wins.
    assert_eq!(npy::split_folder(&arrays), None);
    std::fs::write(root.join("train_list.txt"), "a\nb\n").unwrap();
    assert_eq!(npy::split_folder(&arrays), Some(root.clone()));
    std::fs::write(arrays.join("train_list.txt"), "a\n").unwrap();
    assert_eq!(npy::split_folder(&arrays), Some(arrays.clone()));
    // A loaded case: images as stored, labels, 1 mm and the identity affine.
    let c = dataset::load_case(&ds.cases[0]).unwrap();
    assert_eq!(c.dims(), [2, 2, 2]);
    assert_eq!(c.images[3].data, vec![0.5; 8]);
    assert_eq!(c.geometry.spacing, [1.0; 3]);
    assert_eq!(c.geometry.affine, nalgebra::Matrix4::identity());
    // A folder without .npy files is a BraTS dataset folder, as before.
    let e = dataset::discover(&root).unwrap_err().to_string();
    assert!(e.contains("not a BraTS case folder"), "{e}");
}

/// The message of reading `bytes` as `name` (which must fail).
fn refusal(tmp: &TempDir, name: &str, bytes: Vec<u8>) -> String {
    let path = tmp.join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = read_array(&path).expect_err(name);
    let text = format!("{e:#}");
    assert!(
        text.contains(name),
        "{name}: the message does not name the file: {text}"
    );
    text
}

// Verifies: R-CLI-1
#[test]
fn bad_arrays_are_refused_naming_the_file_and_the_problem() {
    let tmp = TempDir::new("npy-bad");
    let n = 5 * 8;
    let good: Vec<f32> = (0..n)
        .map(|i| if i < 32 { i as f32 * 0.25 } else { 1.0 })
        .collect();
    let f4 = f32_le(&good);
    let f8: Vec<u8> = good
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    let with = |i: usize, v: f32| {
        let mut x = good.clone();
        x[i] = v;
        authors_f32([2, 2, 2], &x)
    };
    let mut inexact = f8.clone();
    inexact[8 * 3..8 * 4].copy_from_slice(&0.1f64.to_le_bytes());
    let rows: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "four.npy",
            npy_bytes("<f4", false, &[4, 2, 2, 2], &f4[..128]),
            &["(4, 2, 2, 2)", "4 channel(s), not 5"],
        ),
        (
            "three_d.npy",
            npy_bytes("<f4", false, &[5, 8], &f4),
            &["(5, 8)", "not (5, D, H, W)"],
        ),
        (
            "empty.npy",
            npy_bytes("<f4", false, &[5, 0, 2, 2], &[]),
            &["empty axis"],
        ),
        (
            "int32.npy",
            npy_bytes("<i4", false, &[5, 2, 2, 2], &f4),
            &["<i4", "not float32 or float64"],
        ),
        (
            "int64.npy",
            npy_bytes("<i8", false, &[5, 2, 2, 2], &f8),
            &["<i8", "not float32 or float64"],
        ),
        (
            "f16.npy",
            npy_bytes("<f2", false, &[5, 2, 2, 2], &f4[..80]),
            &["<f2"],
        ),
        (
            "object.npy",
            npy_bytes("|O", false, &[5, 2, 2, 2], &f8),
            &["not float32 or float64"],
        ),
        (
            "fortran.npy",
            npy_bytes("<f4", true, &[5, 2, 2, 2], &f4),
            &["Fortran order"],
        ),
        (
            "truncated.npy",
            authors_f32([2, 2, 2], &good)[..128 + 100].to_vec(),
            &["truncated", "100 bytes", "needs 160"],
        ),
        (
            "trailing.npy",
            [authors_f32([2, 2, 2], &good), vec![0; 4]].concat(),
            &["trailing bytes"],
        ),
        (
            "label_5.npy",
            with(33, 5.0),
            &["label channel (4) holds 5", "(0, 0, 1)"],
        ),
        ("label_half.npy", with(39, 1.5), &["holds 1.5", "(1, 1, 1)"]),
        (
            "label_negative.npy",
            with(32, -1.0),
            &["holds -1", "(0, 0, 0)"],
        ),
        (
            "nan.npy",
            with(9, f32::NAN),
            &["channel 1 holds NaN", "(0, 0, 1)", "finite"],
        ),
        (
            "not_f32.npy",
            npy_bytes("<f8", false, &[5, 2, 2, 2], &inexact),
            &["channel 0 holds 0.1", "(0, 1, 1)", "not a float32 value"],
        ),
        (
            "text.npy",
            b"case,label\nx,1\n".to_vec(),
            &["not a NumPy .npy file"],
        ),
        (
            "pickle.npy",
            b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.".to_vec(),
            &["not a NumPy .npy file"],
        ),
        (
            "huge.npy",
            npy_bytes("<f4", false, &[5, 100000, 100000, 100000], &f4),
            &["above the limit of 268435456 voxels"],
        ),
        (
            // Found by cargo fuzz (`fuzz/`, target npy): version 3.0 declaring a 2.3 GB
            // header in a 56-byte file; npyz allocated the declared length.
            "header_bomb.npy",
            [
                b"\x93NUMPY\x03\x00".as_slice(),
                &0x893d_0076u32.to_le_bytes(),
                &[0x89; 44],
            ]
            .concat(),
            &["declares 2302476406 bytes", "NumPy reads at most 10000"],
        ),
        (
            // Found by cargo fuzz (target npy): a shape of 150 nested `{`, which npyz's parser
            // of Python literals took more than 10 s to reject.
            "nested_header.npy",
            {
                let dict = format!(
                    "{{'descr': '<f8', 'fortran_order': False, 'shape': (5, {}4, 2, 3), }}",
                    "{".repeat(150)
                );
                let mut b = b"\x93NUMPY\x01\x00".to_vec();
                b.extend((dict.len() as u16).to_le_bytes());
                b.extend(dict.as_bytes());
                b
            },
            &["not the flat dict np.save writes"],
        ),
        (
            "overflow.npy",
            npy_bytes("<f4", false, &[5, 1 << 32, 1 << 32, 1 << 32], &f4),
            &["overflows"],
        ),
    ];
    for (name, bytes, words) in rows {
        let text = refusal(&tmp, name, bytes);
        println!("{name}: {text}");
        assert_holds(&text, words);
    }
}
