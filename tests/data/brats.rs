// Verifies (every test in this file): R-DAT-2
//! BraTS data on disk: discovery of both namings, case lists (the paper's split), loading with
//! its checks (each bad input a clear error naming the file) and the label conversion of both
//! releases. Small volumes written with `protokd::io::nifti::write_image` into the system's
//! temporary folder; the helpers that write them serve the `preprocess` tests too.

use crate::common::{assert_holds, TempDir};
use nalgebra::Matrix4;
use protokd::data::brats::{self, Case, Dataset, Release};
use protokd::io::nifti::{write_image, OutDtype};
use protokd::volume::{Geometry, Volume};
use std::fs;
use std::path::{Path, PathBuf};

/// The BraTS 2018 affine (x and y flipped, 1 mm) for a volume with `ny` rows, optionally
/// shifted along y.
pub(crate) fn geometry(ny: usize, shift_y: f64) -> Geometry {
    #[rustfmt::skip]
    let affine = Matrix4::new(
        -1.0, 0.0, 0.0, 0.0,
        0.0, -1.0, 0.0, (ny - 1) as f64 + shift_y,
        0.0, 0.0, 1.0, 0.0,
        0.0, 0.0, 0.0, 1.0,
    );
    let ty = affine[(1, 3)] as f32;
    // sform: the rows of the affine; qform: a 180 degree rotation about z (quaternion
    // (0, 0, 0, 1)) with the same offsets. Both code 1 (scanner), as BraTS files have.
    let header = nifti::NiftiHeader {
        pixdim: [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        sform_code: 1,
        srow_x: [-1.0, 0.0, 0.0, 0.0],
        srow_y: [0.0, -1.0, 0.0, ty],
        srow_z: [0.0, 0.0, 1.0, 0.0],
        qform_code: 1,
        quatern_b: 0.0,
        quatern_c: 0.0,
        quatern_d: 1.0,
        quatern_x: 0.0,
        quatern_y: ty,
        quatern_z: 0.0,
        xyzt_units: 2, // mm
        ..Default::default()
    };
    Geometry {
        spacing: [1.0, 1.0, 1.0],
        affine,
        header,
    }
}

pub(crate) fn vol(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    let mut data = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                data.push(f(z, y, x));
            }
        }
    }
    Volume::new(dims, data)
}

pub(crate) const DIMS: [usize; 3] = [8, 8, 8];

/// Intensities of channel `c`: a brain-like blob (> 0) on a zero background.
pub(crate) fn modality(c: usize) -> Volume {
    vol(DIMS, |z, y, x| {
        if (2..7).contains(&z) && (1..7).contains(&y) && (2..7).contains(&x) {
            (10 * (c + 1)) as f32 + (z * 7 + y * 3 + x) as f32 * 0.5
        } else {
            0.0
        }
    })
}

/// Raw labels of `release`: internal label `(z + y + x) % 4` mapped back to raw.
pub(crate) fn raw_seg(release: Release) -> Volume {
    vol(DIMS, |z, y, x| {
        release.internal_to_raw(((z + y + x) % 4) as u8).unwrap() as f32
    })
}

struct CaseSpec<'a> {
    id: &'a str,
    release: Release,
    ext: &'a str,
    seg: bool,
}

impl<'a> CaseSpec<'a> {
    /// Case `id` of `release`: `.nii.gz` files, the segmentation among them.
    fn new(id: &'a str, release: Release) -> Self {
        CaseSpec {
            id,
            release,
            ext: ".nii.gz",
            seg: true,
        }
    }

    /// The same case as `.nii` files.
    fn nii(self) -> Self {
        CaseSpec {
            ext: ".nii",
            ..self
        }
    }

    /// The same case without its segmentation (a case to segment).
    fn without_seg(self) -> Self {
        CaseSpec { seg: false, ..self }
    }
}

/// Writes one case folder; returns its folder.
fn write_case(root: &Path, spec: &CaseSpec) -> PathBuf {
    let dir = root.join(spec.id);
    fs::create_dir_all(&dir).unwrap();
    let g = geometry(DIMS[1], 0.0);
    for (c, suffix) in spec.release.modality_suffixes().iter().enumerate() {
        let p = dir.join(format!("{}{suffix}{}", spec.id, spec.ext));
        write_image(&p, &modality(c), &g, OutDtype::F32).unwrap();
    }
    if spec.seg {
        let p = dir.join(format!(
            "{}{}{}",
            spec.id,
            spec.release.seg_suffix(),
            spec.ext
        ));
        write_image(&p, &raw_seg(spec.release), &g, OutDtype::U8).unwrap();
    }
    dir
}

/// A one-case dataset; the folder lives as long as the returned [`TempDir`].
pub(crate) fn simple_dataset(name: &str, release: Release) -> (TempDir, Dataset) {
    let tmp = TempDir::new(name);
    let root = tmp.path().to_path_buf();
    write_case(&root, &CaseSpec::new("case_a", release));
    let ds = brats::discover(&root).unwrap();
    (tmp, ds)
}

pub(crate) fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[test]
fn discovers_brats2018_naming_with_groups_hidden_entries_and_optional_seg() {
    let tmp = TempDir::new("discover2018");
    let root = tmp.path().to_path_buf();
    let hgg = root.join("HGG");
    let lgg = root.join("LGG");
    let r = Release::Brats2018;
    write_case(&hgg, &CaseSpec::new("Brats18_TCIA01_1_1", r));
    write_case(&lgg, &CaseSpec::new("Brats18_CBICA_AAA_1", r).nii());
    // A case at the top level, without segmentation (inference).
    write_case(&root, &CaseSpec::new("Brats18_2013_2_1", r).without_seg());
    // Ignored: hidden folders, top-level files, extra files in a case folder.
    fs::create_dir_all(root.join(".cache/junk")).unwrap();
    fs::write(root.join("name_mapping.csv"), "a,b\n").unwrap();
    fs::write(hgg.join("Brats18_TCIA01_1_1").join("notes.txt"), "x").unwrap();

    let ds = brats::discover(&root).unwrap();
    assert_eq!(ds.release, Release::Brats2018);
    let ids: Vec<&str> = ds.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "Brats18_2013_2_1",
            "Brats18_CBICA_AAA_1",
            "Brats18_TCIA01_1_1"
        ]
    );
    let c = ds.case("Brats18_CBICA_AAA_1").unwrap();
    let names: Vec<String> = c
        .modalities
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "Brats18_CBICA_AAA_1_t1.nii",
            "Brats18_CBICA_AAA_1_t2.nii",
            "Brats18_CBICA_AAA_1_t1ce.nii",
            "Brats18_CBICA_AAA_1_flair.nii"
        ]
    );
    assert_eq!(c.dir, lgg.join("Brats18_CBICA_AAA_1"));
    assert!(c
        .seg
        .as_ref()
        .unwrap()
        .ends_with("Brats18_CBICA_AAA_1_seg.nii"));
    assert!(ds.case("Brats18_2013_2_1").unwrap().seg.is_none());
    assert!(ds.case("Brats18_TCIA01_1_1").unwrap().seg.is_some());

    // A case without seg loads, without labels.
    let loaded = brats::load_case(ds.case("Brats18_2013_2_1").unwrap()).unwrap();
    assert!(loaded.labels.is_none());
    assert_eq!(loaded.dims(), DIMS);
}

#[test]
fn discovers_brats2023_naming() {
    let tmp = TempDir::new("discover2023");
    let root = tmp.path().to_path_buf();
    for id in ["BraTS-GLI-00002-000", "BraTS-GLI-00000-000"] {
        write_case(&root, &CaseSpec::new(id, Release::Brats2023));
    }
    let ds = brats::discover(&root).unwrap();
    assert_eq!(ds.release, Release::Brats2023);
    assert_eq!(ds.cases[0].id, "BraTS-GLI-00000-000");
    assert_eq!(ds.cases[1].id, "BraTS-GLI-00002-000");
    let c = &ds.cases[0];
    let suffixes: Vec<String> = c
        .modalities
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        suffixes,
        [
            "BraTS-GLI-00000-000-t1n.nii.gz",
            "BraTS-GLI-00000-000-t2w.nii.gz",
            "BraTS-GLI-00000-000-t1c.nii.gz",
            "BraTS-GLI-00000-000-t2f.nii.gz"
        ]
    );
    assert_eq!(c.release, Release::Brats2023);
}

// Verifies: R-CLI-1
#[test]
fn mixed_dataset_is_refused_naming_two_cases() {
    let tmp = TempDir::new("mixed");
    let root = tmp.path().to_path_buf();
    write_case(
        &root,
        &CaseSpec::new("old_case", Release::Brats2018).without_seg(),
    );
    write_case(
        &root,
        &CaseSpec::new("new_case", Release::Brats2023).without_seg(),
    );
    let e = err_text(brats::discover(&root));
    assert_holds(&e, &["mixes namings", "old_case", "new_case"]);

    // Both namings inside one case folder.
    let tmp = TempDir::new("mixed_in_case");
    let root = tmp.path().to_path_buf();
    let dir = write_case(
        &root,
        &CaseSpec::new("c1", Release::Brats2018).without_seg(),
    );
    fs::copy(dir.join("c1_t1.nii.gz"), dir.join("c1-t1n.nii.gz")).unwrap();
    let e = err_text(brats::discover(&root));
    assert_holds(&e, &["both namings", "c1_t1.nii.gz", "c1-t1n.nii.gz"]);

    // Both `.nii` and `.nii.gz` of one file.
    let tmp = TempDir::new("both_ext");
    let root = tmp.path().to_path_buf();
    let dir = write_case(
        &root,
        &CaseSpec::new("c2", Release::Brats2018).without_seg(),
    );
    fs::write(dir.join("c2_flair.nii"), b"x").unwrap();
    let e = err_text(brats::discover(&root));
    assert_holds(&e, &["c2_flair.nii.gz", "c2_flair.nii"]);
}

// Verifies: R-CLI-1
#[test]
fn missing_modality_is_refused_naming_the_case_and_file() {
    for (release, removed, want) in [
        (Release::Brats2018, "_t1ce", "caseM_t1ce.nii.gz"),
        (Release::Brats2023, "-t2f", "caseM-t2f.nii.gz"),
    ] {
        let tmp = TempDir::new(&format!("missing_{}", release.short_name()));
        let root = tmp.path().to_path_buf();
        let dir = write_case(&root, &CaseSpec::new("caseM", release));
        fs::remove_file(dir.join(format!("caseM{removed}.nii.gz"))).unwrap();
        let e = err_text(brats::discover(&root));
        assert_holds(&e, &["case caseM", "missing modality", want]);
    }
}

#[test]
fn folders_without_brats_files_and_empty_datasets_are_errors() {
    let tmp = TempDir::new("not_a_case");
    let root = tmp.path().to_path_buf();
    write_case(&root, &CaseSpec::new("good", Release::Brats2018));
    fs::create_dir_all(root.join("stray")).unwrap();
    fs::write(root.join("stray").join("image.nii.gz"), b"x").unwrap();
    let e = err_text(brats::discover(&root));
    assert_holds(&e, &["stray", "not a BraTS case folder", "stray_t1.nii.gz"]);

    let tmp = TempDir::new("empty");

    let root = tmp.path().to_path_buf();
    fs::write(root.join("README"), "x").unwrap();
    let e = err_text(brats::discover(&root));
    assert!(e.contains("holds no case folder"), "{e}");

    let e = err_text(brats::discover(&root.join("nope")));
    assert!(e.contains("does not exist"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Case lists

fn split_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/brats2018-split")
}

// Verifies: R-DAT-5
#[test]
fn the_paper_split_lists_parse() {
    let dir = split_dir();
    let mut all = std::collections::HashSet::new();
    for (name, n) in [
        ("train_list.txt", 200),
        ("val_list.txt", 28),
        ("test_list.txt", 57),
    ] {
        let ids = brats::read_case_list(&dir.join(name)).unwrap();
        assert_eq!(ids.len(), n, "{name}");
        for id in ids {
            assert!(id.starts_with("Brats18_"), "{id}");
            assert!(all.insert(id.clone()), "{id} is in two lists");
        }
    }
    assert_eq!(all.len(), 285);
}

// Verifies: R-DAT-5
#[test]
fn selecting_cases_by_list() {
    let tmp = TempDir::new("select");
    let root = tmp.path().to_path_buf();
    for id in ["c1", "c2", "c3"] {
        write_case(&root, &CaseSpec::new(id, Release::Brats2018).without_seg());
    }
    let ds = brats::discover(&root).unwrap();
    let lists_tmp = TempDir::new("select_lists");
    let lists = lists_tmp.path().to_path_buf();
    let good = lists.join("good.txt");
    fs::write(&good, "# validation\nc3\n\nc1  # first case\n").unwrap();
    let sel = ds.select_list(&good).unwrap();
    let ids: Vec<&str> = sel.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c3", "c1"]); // the list's order
    assert_eq!(sel.release, Release::Brats2018);

    let bad = lists.join("bad.txt");
    fs::write(&bad, "c1\nc9\n").unwrap();
    let e = err_text(ds.select_list(&bad));
    assert_holds(&e, &["`c9`", "bad.txt"]);

    let dup = lists.join("dup.txt");
    fs::write(&dup, "c1\nc2\nc1\n").unwrap();
    let e = err_text(ds.select_list(&dup));
    assert_holds(&e, &["listed twice", "dup.txt"]);

    let e = err_text(ds.select_list(&lists.join("absent.txt")));
    assert!(e.contains("absent.txt"), "{e}");
}

// Verifies: R-MTH-1
#[test]
fn label_conversion_round_trips_for_both_releases() {
    for release in Release::ALL {
        let internal: Vec<u8> = (0..64).map(|i| (i * 7 % 4) as u8).collect();
        let raw = release.labels_to_raw(&internal).unwrap();
        assert_eq!(release.labels_to_internal(&raw).unwrap(), internal);
        for &r in &raw {
            assert!(release.label_set().contains(&r));
        }
        // ET is raw 4 (2018-2021) or 3 (2023+), internal 1.
        let et = if release == Release::Brats2018 { 4 } else { 3 };
        assert_eq!(release.raw_to_internal(et), Some(1));
        assert_eq!(release.raw_to_internal(1), Some(2));
        assert_eq!(release.raw_to_internal(2), Some(3));
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: each a clear error naming the file and the problem, no panic.

/// A 2018 case folder whose file `suffix` is replaced by `volume` (with geometry `g`, dtype
/// `dtype`); returns the case, the replaced file's name, and the folder (alive while held).
fn case_with(
    name: &str,
    suffix: &str,
    volume: &Volume,
    g: &Geometry,
    dtype: OutDtype,
) -> (Case, String, TempDir) {
    let tmp = TempDir::new(name);
    let root = tmp.path().to_path_buf();
    let dir = write_case(&root, &CaseSpec::new("bad", Release::Brats2018));
    let file = format!("bad{suffix}.nii.gz");
    write_image(&dir.join(&file), volume, g, dtype).unwrap();
    let ds = brats::discover(&root).unwrap();
    (ds.cases[0].clone(), file, tmp)
}

fn load_err(case: &Case) -> String {
    let r = std::panic::catch_unwind(|| brats::load_case(case));
    let r = r.expect("load_case panicked");
    err_text(r)
}

// Verifies: R-CLI-1
#[test]
fn modalities_of_different_shape_are_refused() {
    let g = geometry(8, 0.0);
    let small = vol([8, 8, 7], |_, _, _| 1.0);
    let (case, file, _tmp) = case_with("bad_shape", "_t2", &small, &g, OutDtype::F32);
    let e = load_err(&case);
    assert_holds(
        &e,
        &[file.as_str(), "bad_t1.nii.gz", "[8, 8, 7]", "same shape"],
    );
    // The seg too.
    let seg = vol([7, 8, 8], |_, _, _| 0.0);
    let (case, file, _tmp) = case_with("bad_seg_shape", "_seg", &seg, &g, OutDtype::U8);
    let e = load_err(&case);
    assert_holds(&e, &[file.as_str(), "[7, 8, 8]"]);
}

// Verifies: R-CLI-1
#[test]
fn modalities_with_different_affines_are_refused() {
    let shifted = geometry(8, 0.5);
    let (case, file, _tmp) = case_with(
        "bad_affine",
        "_flair",
        &modality(3),
        &shifted,
        OutDtype::F32,
    );
    let e = load_err(&case);
    assert_holds(
        &e,
        &[
            file.as_str(),
            "bad_t1.nii.gz",
            "affine",
            "element (1, 3) is 7.5 vs 7",
        ],
    );
    // A difference below the tolerance is accepted.
    let close = geometry(8, 2e-5);
    let (case, _, _tmp) = case_with(
        "close_affine",
        "_flair",
        &modality(3),
        &close,
        OutDtype::F32,
    );
    brats::load_case(&case).unwrap();
}

// Verifies: R-CLI-1
#[test]
fn label_values_outside_the_release_set_are_refused() {
    let g = geometry(8, 0.0);
    // 3 is not a BraTS 2018 label (it is the 2023 ET).
    let seg = vol(
        DIMS,
        |z, y, x| if (z, y, x) == (2, 3, 4) { 3.0 } else { 1.0 },
    );
    let (case, file, _tmp) = case_with("bad_label", "_seg", &seg, &g, OutDtype::U8);
    let e = load_err(&case);
    assert_holds(
        &e,
        &[file.as_str(), "label value 3", "(2, 3, 4)", "[0, 1, 2, 4]"],
    );
    // A non-integer label.
    let seg = vol(DIMS, |z, _, _| if z == 5 { 2.5 } else { 0.0 });
    let (case, file, _tmp) = case_with("bad_label_frac", "_seg", &seg, &g, OutDtype::F32);
    let e = load_err(&case);
    assert_holds(
        &e,
        &[file.as_str(), "label value 2.5", "(5, 0, 0)", "64 voxel"],
    );
    // 4 in a 2023 case.
    let tmp = TempDir::new("bad_label_2023");
    let root = tmp.path().to_path_buf();
    let dir = write_case(&root, &CaseSpec::new("n", Release::Brats2023));
    let seg = vol(
        DIMS,
        |z, y, x| if (z, y, x) == (7, 7, 7) { 4.0 } else { 0.0 },
    );
    write_image(&dir.join("n-seg.nii.gz"), &seg, &g, OutDtype::U8).unwrap();
    let case = brats::discover(&root).unwrap().cases[0].clone();
    let e = load_err(&case);
    assert_holds(&e, &["n-seg.nii.gz", "label value 4", "(7, 7, 7)"]);
}

// Verifies: R-CLI-1
#[test]
fn nan_in_an_image_is_refused() {
    let g = geometry(8, 0.0);
    let mut v = modality(2);
    let i = v.index(3, 4, 5);
    v.data[i] = f32::NAN;
    let (case, file, _tmp) = case_with("bad_nan", "_t1ce", &v, &g, OutDtype::F32);
    let e = load_err(&case);
    assert_holds(&e, &[file.as_str(), "NaN", "(3, 4, 5)"]);
}

// Verifies: R-CLI-1
#[test]
fn an_image_with_no_voxel_above_zero_is_refused() {
    let g = geometry(8, 0.0);
    let v = vol(DIMS, |z, _, _| -(z as f32));
    let (case, file, _tmp) = case_with("bad_nonpositive", "_t2", &v, &g, OutDtype::F32);
    let e = load_err(&case);
    assert_holds(&e, &[file.as_str(), "no voxel above 0"]);
}

#[test]
fn an_unreadable_modality_is_an_error_naming_it() {
    let tmp = TempDir::new("bad_file");
    let root = tmp.path().to_path_buf();
    let dir = write_case(&root, &CaseSpec::new("bad", Release::Brats2018));
    fs::write(dir.join("bad_t2.nii.gz"), b"this is not a NIfTI file").unwrap();
    let case = brats::discover(&root).unwrap().cases[0].clone();
    let e = load_err(&case);
    assert_holds(&e, &["case bad", "bad_t2.nii.gz"]);
}
