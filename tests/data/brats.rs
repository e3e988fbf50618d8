//! BraTS data on disk and in memory: discovery of both namings, case lists (the paper's split),
//! loading with its checks (each bad input a clear error naming the file), preprocessing and
//! augmentation. Small volumes written with `nifti_io::write_image` into the target's
//! temporary folder.

use crate::common::TempDir;
use nalgebra::Matrix4;
use protokd::data::augment::{self, AugmentParams, Sample};
use protokd::data::brats::{self, Case, Dataset, Release};
use protokd::data::preprocess::{self, CropBox, PreparedCase, ZscoreStats, BRATS_CROP};
use protokd::io::nifti::{write_image, OutDtype};
use protokd::volume::{Geometry, Volume};
use std::fs;
use std::path::{Path, PathBuf};

/// The BraTS 2018 affine (x and y flipped, 1 mm) for a volume with `ny` rows, optionally
/// shifted along y.
fn geometry(ny: usize, shift_y: f64) -> Geometry {
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

fn vol(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
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

const DIMS: [usize; 3] = [8, 8, 8];

/// Intensities of channel `c`: a brain-like blob (> 0) on a zero background.
fn modality(c: usize) -> Volume {
    vol(DIMS, |z, y, x| {
        if (2..7).contains(&z) && (1..7).contains(&y) && (2..7).contains(&x) {
            (10 * (c + 1)) as f32 + (z * 7 + y * 3 + x) as f32 * 0.5
        } else {
            0.0
        }
    })
}

/// Raw labels of `release`: internal label `(z + y + x) % 4` mapped back to raw.
fn raw_seg(release: Release) -> Volume {
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
fn simple_dataset(name: &str, release: Release) -> (TempDir, Dataset) {
    let tmp = TempDir::new(name);
    let root = tmp.path().to_path_buf();
    write_case(
        &root,
        &CaseSpec {
            id: "case_a",
            release,
            ext: ".nii.gz",
            seg: true,
        },
    );
    let ds = brats::discover(&root).unwrap();
    (tmp, ds)
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
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
    write_case(
        &hgg,
        &CaseSpec {
            id: "Brats18_TCIA01_1_1",
            release: r,
            ext: ".nii.gz",
            seg: true,
        },
    );
    write_case(
        &lgg,
        &CaseSpec {
            id: "Brats18_CBICA_AAA_1",
            release: r,
            ext: ".nii",
            seg: true,
        },
    );
    // A case at the top level, without segmentation (inference).
    write_case(
        &root,
        &CaseSpec {
            id: "Brats18_2013_2_1",
            release: r,
            ext: ".nii.gz",
            seg: false,
        },
    );
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
        write_case(
            &root,
            &CaseSpec {
                id,
                release: Release::Brats2023,
                ext: ".nii.gz",
                seg: true,
            },
        );
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

#[test]
fn mixed_dataset_is_refused_naming_two_cases() {
    let tmp = TempDir::new("mixed");
    let root = tmp.path().to_path_buf();
    write_case(
        &root,
        &CaseSpec {
            id: "old_case",
            release: Release::Brats2018,
            ext: ".nii.gz",
            seg: false,
        },
    );
    write_case(
        &root,
        &CaseSpec {
            id: "new_case",
            release: Release::Brats2023,
            ext: ".nii.gz",
            seg: false,
        },
    );
    let e = err_text(brats::discover(&root));
    assert!(
        e.contains("mixes namings") && e.contains("old_case") && e.contains("new_case"),
        "{e}"
    );

    // Both namings inside one case folder.
    let tmp = TempDir::new("mixed_in_case");
    let root = tmp.path().to_path_buf();
    let dir = write_case(
        &root,
        &CaseSpec {
            id: "c1",
            release: Release::Brats2018,
            ext: ".nii.gz",
            seg: false,
        },
    );
    fs::copy(dir.join("c1_t1.nii.gz"), dir.join("c1-t1n.nii.gz")).unwrap();
    let e = err_text(brats::discover(&root));
    assert!(
        e.contains("both namings") && e.contains("c1_t1.nii.gz") && e.contains("c1-t1n.nii.gz"),
        "{e}"
    );

    // Both `.nii` and `.nii.gz` of one file.
    let tmp = TempDir::new("both_ext");
    let root = tmp.path().to_path_buf();
    let dir = write_case(
        &root,
        &CaseSpec {
            id: "c2",
            release: Release::Brats2018,
            ext: ".nii.gz",
            seg: false,
        },
    );
    fs::write(dir.join("c2_flair.nii"), b"x").unwrap();
    let e = err_text(brats::discover(&root));
    assert!(
        e.contains("c2_flair.nii.gz") && e.contains("c2_flair.nii"),
        "{e}"
    );
}

#[test]
fn missing_modality_is_refused_naming_the_case_and_file() {
    for (release, removed, want) in [
        (Release::Brats2018, "_t1ce", "caseM_t1ce.nii.gz"),
        (Release::Brats2023, "-t2f", "caseM-t2f.nii.gz"),
    ] {
        let tmp = TempDir::new(&format!("missing_{}", release.short_name()));
        let root = tmp.path().to_path_buf();
        let dir = write_case(
            &root,
            &CaseSpec {
                id: "caseM",
                release,
                ext: ".nii.gz",
                seg: true,
            },
        );
        fs::remove_file(dir.join(format!("caseM{removed}.nii.gz"))).unwrap();
        let e = err_text(brats::discover(&root));
        assert!(
            e.contains("case caseM") && e.contains("missing modality") && e.contains(want),
            "{e}"
        );
    }
}

#[test]
fn folders_without_brats_files_and_empty_datasets_are_errors() {
    let tmp = TempDir::new("not_a_case");
    let root = tmp.path().to_path_buf();
    write_case(
        &root,
        &CaseSpec {
            id: "good",
            release: Release::Brats2018,
            ext: ".nii.gz",
            seg: true,
        },
    );
    fs::create_dir_all(root.join("stray")).unwrap();
    fs::write(root.join("stray").join("image.nii.gz"), b"x").unwrap();
    let e = err_text(brats::discover(&root));
    assert!(
        e.contains("stray")
            && e.contains("not a BraTS case folder")
            && e.contains("stray_t1.nii.gz"),
        "{e}"
    );

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

#[test]
fn selecting_cases_by_list() {
    let tmp = TempDir::new("select");
    let root = tmp.path().to_path_buf();
    for id in ["c1", "c2", "c3"] {
        write_case(
            &root,
            &CaseSpec {
                id,
                release: Release::Brats2018,
                ext: ".nii.gz",
                seg: false,
            },
        );
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
    assert!(e.contains("`c9`") && e.contains("bad.txt"), "{e}");

    let dup = lists.join("dup.txt");
    fs::write(&dup, "c1\nc2\nc1\n").unwrap();
    let e = err_text(ds.select_list(&dup));
    assert!(e.contains("listed twice") && e.contains("dup.txt"), "{e}");

    let e = err_text(ds.select_list(&lists.join("absent.txt")));
    assert!(e.contains("absent.txt"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Loading and preprocessing

#[test]
fn load_and_preprocess_a_case_from_files() {
    for release in Release::ALL {
        let (_tmp, ds) = simple_dataset(&format!("load_{}", release.short_name()), release);
        let loaded = brats::load_case(&ds.cases[0]).unwrap();
        assert_eq!(loaded.dims(), DIMS);
        for c in 0..4 {
            assert_eq!(loaded.images[c], modality(c), "channel {c}");
        }
        let labels = loaded.labels.as_ref().unwrap();
        // Internal labels are (z + y + x) % 4 whatever the release's raw values.
        let want: Vec<u8> = vol(DIMS, |z, y, x| ((z + y + x) % 4) as f32)
            .data
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(labels, &want);
        // Back to raw: the file's values.
        let raw = release.labels_to_raw(labels).unwrap();
        let file_raw: Vec<u8> = raw_seg(release).data.iter().map(|&v| v as u8).collect();
        assert_eq!(raw, file_raw);
        assert_eq!(loaded.geometry.affine, geometry(DIMS[1], 0.0).affine);

        let b = CropBox {
            start: [1, 2, 0],
            end: [7, 8, 5],
        };
        let p = preprocess::preprocess_with_crop(&loaded, &b).unwrap();
        assert_eq!(p.dims, [6, 6, 5]);
        assert_eq!(p.channels(), 4);
        assert_eq!(p.image.len(), 4 * 6 * 6 * 5);
        for c in 0..4 {
            let (z, s) = preprocess::zscore(&loaded.images[c]).unwrap();
            assert_eq!(p.stats[c], s);
            let want = preprocess::crop(&z.data, DIMS, &b).unwrap();
            assert_eq!(&p.image[c * 180..(c + 1) * 180], &want[..]);
        }
        assert_eq!(
            p.labels.as_deref().unwrap(),
            &preprocess::crop(labels, DIMS, &b).unwrap()[..]
        );
        let t = p.image_tensor();
        assert_eq!(t.shape, vec![1, 4, 6, 6, 5]);
        assert_eq!(p.label_map().unwrap().dims, [1, 6, 6, 5]);

        // The method page's crop needs a 155 x 240 x 240 volume (at least 145 x 216 x 216).
        let e = err_text(preprocess::preprocess(&loaded));
        assert!(
            e.contains("case case_a")
                && e.contains("smaller than the crop box")
                && e.contains("z 5..145, y 24..216, x 24..216"),
            "{e}"
        );
    }
}

#[test]
fn zscore_against_direct_f64_background_excluded_but_transformed() {
    let v = vol([9, 10, 11], |z, y, x| {
        let t = (z * 110 + y * 11 + x) as f32;
        if x < 2 || y == 9 {
            0.0
        } else if z == 0 {
            -3.5 - t * 0.01 // negative background
        } else {
            50.0 + (t * 0.731).cos() * 40.0 + t * 0.1
        }
    });
    let pos: Vec<f64> = v
        .data
        .iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x as f64)
        .collect();
    let n = pos.len() as f64;
    let mean = pos.iter().sum::<f64>() / n;
    let std = (pos.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    let (z, s): (Volume, ZscoreStats) = preprocess::zscore(&v).unwrap();
    assert_eq!(s.count, pos.len());
    assert!((s.mean - mean).abs() <= 1e-12 * mean);
    assert!((s.std - std).abs() <= 1e-12 * std);
    let mut background = 0;
    for (a, b) in v.data.iter().zip(&z.data) {
        let want = ((*a as f64 - mean) / std) as f32;
        assert!(
            (want - b).abs() <= 2e-7 * want.abs().max(1.0),
            "{a}: {want} vs {b}"
        );
        if *a <= 0.0 {
            background += 1;
            assert!(*b < 0.0);
        }
    }
    assert!(background > 100);
    // Excluding the background matters: the statistics of all voxels differ.
    let all_mean = v.data.iter().map(|&x| x as f64).sum::<f64>() / v.data.len() as f64;
    assert!((all_mean - mean).abs() > 1.0);
    // The same bits with 1 and 3 threads.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| preprocess::zscore(&v).unwrap());
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(|| preprocess::zscore(&v).unwrap());
    assert_eq!(one.1, three.1);
    assert_eq!(one.0, three.0);
    assert_eq!(one.0, z);
}

#[test]
fn crop_box_constant_and_shape() {
    assert_eq!(BRATS_CROP.start, [5, 24, 24]);
    assert_eq!(BRATS_CROP.end, [145, 216, 216]);
    assert_eq!(BRATS_CROP.shape(), [140, 192, 192]);
    let full = vol([155, 240, 240], |z, y, x| {
        (z * 10000 + y * 100 + x % 100) as f32
    });
    let c = preprocess::crop_volume(&full, &BRATS_CROP).unwrap();
    assert_eq!(c.dims, [140, 192, 192]);
    assert_eq!(c.data[0], full.data[full.index(5, 24, 24)]);
    assert_eq!(
        *c.data.last().unwrap(),
        full.data[full.index(144, 215, 215)]
    );
    let back = preprocess::uncrop(&c.data, &BRATS_CROP, full.dims, 0.0).unwrap();
    assert_eq!(back[full.index(5, 24, 24)], c.data[0]);
    assert_eq!(back[full.index(4, 24, 24)], 0.0);
    assert_eq!(back[full.index(145, 100, 100)], 0.0);
}

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
    let dir = write_case(
        &root,
        &CaseSpec {
            id: "bad",
            release: Release::Brats2018,
            ext: ".nii.gz",
            seg: true,
        },
    );
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

#[test]
fn modalities_of_different_shape_are_refused() {
    let g = geometry(8, 0.0);
    let small = vol([8, 8, 7], |_, _, _| 1.0);
    let (case, file, _tmp) = case_with("bad_shape", "_t2", &small, &g, OutDtype::F32);
    let e = load_err(&case);
    assert!(
        e.contains(&file)
            && e.contains("bad_t1.nii.gz")
            && e.contains("[8, 8, 7]")
            && e.contains("same shape"),
        "{e}"
    );
    // The seg too.
    let seg = vol([7, 8, 8], |_, _, _| 0.0);
    let (case, file, _tmp) = case_with("bad_seg_shape", "_seg", &seg, &g, OutDtype::U8);
    let e = load_err(&case);
    assert!(e.contains(&file) && e.contains("[7, 8, 8]"), "{e}");
}

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
    assert!(
        e.contains(&file)
            && e.contains("bad_t1.nii.gz")
            && e.contains("affine")
            && e.contains("element (1, 3) is 7.5 vs 7"),
        "{e}"
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
    assert!(
        e.contains(&file)
            && e.contains("label value 3")
            && e.contains("(2, 3, 4)")
            && e.contains("[0, 1, 2, 4]"),
        "{e}"
    );
    // A non-integer label.
    let seg = vol(DIMS, |z, _, _| if z == 5 { 2.5 } else { 0.0 });
    let (case, file, _tmp) = case_with("bad_label_frac", "_seg", &seg, &g, OutDtype::F32);
    let e = load_err(&case);
    assert!(
        e.contains(&file)
            && e.contains("label value 2.5")
            && e.contains("(5, 0, 0)")
            && e.contains("64 voxel"),
        "{e}"
    );
    // 4 in a 2023 case.
    let tmp = TempDir::new("bad_label_2023");
    let root = tmp.path().to_path_buf();
    let dir = write_case(
        &root,
        &CaseSpec {
            id: "n",
            release: Release::Brats2023,
            ext: ".nii.gz",
            seg: true,
        },
    );
    let seg = vol(
        DIMS,
        |z, y, x| if (z, y, x) == (7, 7, 7) { 4.0 } else { 0.0 },
    );
    write_image(&dir.join("n-seg.nii.gz"), &seg, &g, OutDtype::U8).unwrap();
    let case = brats::discover(&root).unwrap().cases[0].clone();
    let e = load_err(&case);
    assert!(
        e.contains("n-seg.nii.gz") && e.contains("label value 4") && e.contains("(7, 7, 7)"),
        "{e}"
    );
}

#[test]
fn nan_in_an_image_is_refused() {
    let g = geometry(8, 0.0);
    let mut v = modality(2);
    let i = v.index(3, 4, 5);
    v.data[i] = f32::NAN;
    let (case, file, _tmp) = case_with("bad_nan", "_t1ce", &v, &g, OutDtype::F32);
    let e = load_err(&case);
    assert!(
        e.contains(&file) && e.contains("NaN") && e.contains("(3, 4, 5)"),
        "{e}"
    );
}

#[test]
fn an_image_with_no_voxel_above_zero_is_refused() {
    let g = geometry(8, 0.0);
    let v = vol(DIMS, |z, _, _| -(z as f32));
    let (case, file, _tmp) = case_with("bad_nonpositive", "_t2", &v, &g, OutDtype::F32);
    let e = load_err(&case);
    assert!(e.contains(&file) && e.contains("no voxel above 0"), "{e}");
}

#[test]
fn an_unreadable_modality_is_an_error_naming_it() {
    let tmp = TempDir::new("bad_file");
    let root = tmp.path().to_path_buf();
    let dir = write_case(
        &root,
        &CaseSpec {
            id: "bad",
            release: Release::Brats2018,
            ext: ".nii.gz",
            seg: true,
        },
    );
    fs::write(dir.join("bad_t2.nii.gz"), b"this is not a NIfTI file").unwrap();
    let case = brats::discover(&root).unwrap().cases[0].clone();
    let e = load_err(&case);
    assert!(e.contains("case bad") && e.contains("bad_t2.nii.gz"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Augmentation

/// A prepared case whose values encode their position: label = flat index (dims of at most
/// 255 voxels), image channel c = 1000 c + flat index + 1.
fn coded_case(dims: [usize; 3]) -> PreparedCase {
    let vox: usize = dims.iter().product();
    assert!(vox <= 256);
    let image = (0..4)
        .flat_map(|c| (0..vox).map(move |i| (1000 * c + i + 1) as f32))
        .collect();
    let stats = ZscoreStats {
        mean: 0.0,
        std: 1.0,
        count: 1,
    };
    PreparedCase {
        id: "coded".into(),
        dims,
        image,
        labels: Some((0..vox).map(|i| i as u8).collect()),
        stats: [stats; 4],
        crop: CropBox {
            start: [0; 3],
            end: dims,
        },
        full_dims: dims,
    }
}

/// Checks a patch against its parameters: every label and image voxel comes from the source
/// voxel the offsets and flips say, each channel scaled by its factor.
fn check_patch(case: &PreparedCase, crop: [usize; 3], s: &Sample, p: &AugmentParams) {
    let dims = case.dims;
    let cvox: usize = crop.iter().product();
    for z in 0..crop[0] {
        for y in 0..crop[1] {
            for x in 0..crop[2] {
                let src =
                    |a: usize, i: usize| p.offset[a] + if p.flip[a] { crop[a] - 1 - i } else { i };
                let (sz, sy, sx) = (src(0, z), src(1, y), src(2, x));
                let si = (sz * dims[1] + sy) * dims[2] + sx;
                let oi = (z * crop[1] + y) * crop[2] + x;
                assert_eq!(s.labels[oi] as usize, si);
                for c in 0..4 {
                    let v = case.image[c * dims.iter().product::<usize>() + si];
                    let want = match p.scale[c] {
                        Some(f) => v * f,
                        None => v,
                    };
                    assert_eq!(s.image[c * cvox + oi], want);
                }
            }
        }
    }
}

#[test]
fn augmentation_is_deterministic_per_seed_epoch_case_whatever_order_and_threads() {
    let dims = [6, 5, 7];
    let crop = [4, 3, 4];
    let cases: Vec<PreparedCase> = (0..6).map(|_| coded_case(dims)).collect();
    let run = |order: &[usize], threads: usize| -> Vec<(usize, Sample, AugmentParams)> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            use rayon::prelude::*;
            let mut out: Vec<(usize, Sample, AugmentParams)> = order
                .par_iter()
                .map(|&i| {
                    let (s, p) = augment::augment(&cases[i], crop, 42, 3, i as u64).unwrap();
                    (i, s, p)
                })
                .collect();
            out.sort_by_key(|(i, _, _)| *i);
            out
        })
    };
    let a = run(&[0, 1, 2, 3, 4, 5], 1);
    let b = run(&[5, 3, 1, 0, 2, 4], 3);
    let c = run(&[2, 0, 4, 1, 5, 3], 3);
    assert_eq!(a, b);
    assert_eq!(a, c);
    for (i, s, p) in &a {
        check_patch(&cases[*i], crop, s, p);
    }
    // Different cases of one epoch get different draws (with these numbers, by far).
    let params: Vec<&AugmentParams> = a.iter().map(|(_, _, p)| p).collect();
    assert!(params.windows(2).any(|w| w[0] != w[1]));
    // Draws depend on the seed.
    let (_, p_other_seed) = augment::augment(&cases[0], crop, 43, 3, 0).unwrap();
    let (_, p_again) = augment::augment(&cases[0], crop, 42, 3, 0).unwrap();
    assert_eq!(&p_again, params[0]);
    assert_ne!(&p_other_seed, params[0]);
}

#[test]
fn different_epochs_give_different_crops() {
    let case = coded_case([6, 5, 7]);
    let crop = [3, 3, 3];
    let offsets: Vec<[usize; 3]> = (0..20)
        .map(|epoch| augment::augment(&case, crop, 7, epoch, 1).unwrap().1.offset)
        .collect();
    let distinct: std::collections::HashSet<_> = offsets.iter().collect();
    assert!(distinct.len() >= 8, "{offsets:?}");
    assert_ne!(offsets[0], offsets[1]);
}

#[test]
fn crop_offsets_cover_exactly_zero_to_dim_minus_crop() {
    // dims - crop = (5, 1, 0): z in 0..5, y always 0 (n = 1), x never drawn.
    let dims = [9, 4, 3];
    let crop = [4, 3, 3];
    let mut counts = [[0usize; 6]; 3];
    let mut flips = [0usize; 3];
    let mut scaled = 0usize;
    let draws: u64 = 4000;
    for k in 0..draws {
        let mut rng = augment::rng_for(1, k / 100, k % 100);
        let p = augment::draw_params(&mut rng, dims, crop, 4).unwrap();
        for a in 0..3 {
            counts[a][p.offset[a]] += 1;
            flips[a] += p.flip[a] as usize;
        }
        for f in p.scale.iter().flatten() {
            scaled += 1;
            assert!(*f >= 0.9 && *f < 1.1, "{f}");
        }
    }
    // z: every value 0..=4 seen, never 5; roughly uniform (expected 800 each).
    assert_eq!(counts[0][5], 0);
    for (v, &n) in counts[0][..5].iter().enumerate() {
        assert!((650..950).contains(&n), "offset {v}: {n}");
    }
    assert_eq!(counts[1][0], draws as usize);
    assert_eq!(counts[2][0], draws as usize);
    for f in flips {
        assert!((1800..2200).contains(&f), "{flips:?}");
    }
    // 4 channels x 4000 draws, p = 0.5.
    assert!((7600..8400).contains(&scaled), "{scaled}");

    // dim == crop gives offset 0; dim < crop is an error.
    let mut rng = augment::rng_for(0, 0, 0);
    let p = augment::draw_params(&mut rng, [4, 4, 4], [4, 4, 4], 1).unwrap();
    assert_eq!(p.offset, [0, 0, 0]);
    let e = augment::draw_params(&mut rng, [4, 4, 4], [5, 4, 4], 1).unwrap_err();
    assert!(e.to_string().contains("cannot take a random crop"), "{e}");
}

#[test]
fn flips_apply_equally_to_image_and_label() {
    let case = coded_case([5, 6, 7]);
    let crop = [3, 4, 5];
    let labels = case.labels.clone().unwrap();
    // Every flip combination, explicitly.
    for bits in 0..8u32 {
        let p = AugmentParams {
            offset: [1, 2, 1],
            flip: [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0],
            scale: vec![None, Some(1.05), None, Some(0.95)],
        };
        let s = augment::apply(&case.image, &labels, 4, case.dims, crop, &p);
        check_patch(&case, crop, &s, &p);
    }
    // And as drawn: flips on each axis are seen.
    let mut seen = [[false; 2]; 3];
    for i in 0..64 {
        let (s, p) = augment::augment(&case, crop, 9, 0, i).unwrap();
        check_patch(&case, crop, &s, &p);
        for a in 0..3 {
            seen[a][p.flip[a] as usize] = true;
        }
    }
    assert_eq!(seen, [[true; 2]; 3]);
}

#[test]
fn intensity_factors_lie_in_the_range() {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    let mut rng = augment::rng_for(5, 0, 0);
    for _ in 0..200_000 {
        let f = augment::intensity_factor(&mut rng);
        assert!((0.9f32..1.1f32).contains(&f), "{f}");
        lo = lo.min(f);
        hi = hi.max(f);
    }
    assert!(lo < 0.9001 && hi > 1.0999, "{lo} {hi}");
}

#[test]
fn patches_stack_into_a_training_batch() {
    let case = coded_case([5, 6, 7]);
    let crop = [2, 4, 4];
    let samples: Vec<Sample> = (0..3)
        .map(|i| augment::augment(&case, crop, 1, 2, i).unwrap().0)
        .collect();
    let (image, label) = augment::batch(&samples).unwrap();
    assert_eq!(image.shape, vec![3, 4, 2, 4, 4]);
    assert_eq!(label.dims, [3, 2, 4, 4]);
    assert_eq!(&image.data[4 * 32..8 * 32], &samples[1].image[..]);
    assert_eq!(&label.data[32..64], &samples[1].labels[..]);
    // The student's channel out of the four.
    let t1ce = image.select_channels(&[2]);
    assert_eq!(t1ce.shape, vec![3, 1, 2, 4, 4]);
    assert!(augment::batch(&[]).is_err());

    // A case without labels cannot be trained on.
    let mut unlabelled = case.clone();
    unlabelled.labels = None;
    let e = augment::augment(&unlabelled, crop, 1, 2, 0).unwrap_err();
    assert!(e.to_string().contains("no segmentation"), "{e}");
}

#[test]
fn recorded_draws_pin_the_generator_and_the_draw_order() {
    // If rand_chacha's stream, the key layout or the draw order changed, runs would no longer
    // reproduce earlier ones: these values were recorded from this implementation.
    use rand_core::RngCore;
    let mut rng = augment::rng_for(1, 2, 3);
    assert_eq!([rng.next_u32(), rng.next_u32()], [0x5bf7_6fd4, 0x7777_754c]);
    let mut rng = augment::rng_for(1, 2, 3);
    let p = augment::draw_params(&mut rng, [140, 192, 192], augment::TRAIN_CROP, 4).unwrap();
    assert_eq!(p.offset, [15, 29, 61]);
    assert_eq!(p.flip, [true, false, true]);
    assert_eq!(p.scale, vec![None, None, None, Some(0.9047753)]);
    let mut rng = augment::rng_for(0, 0, 0);
    let p = augment::draw_params(&mut rng, [140, 192, 192], augment::TRAIN_CROP, 4).unwrap();
    assert_eq!(p.offset, [3, 9, 35]);
    assert_eq!(p.flip, [true, true, false]);
    assert_eq!(
        p.scale,
        vec![
            Some(0.95107424),
            Some(1.066385),
            Some(1.0520463),
            Some(0.9047817)
        ]
    );
    assert_eq!(
        augment::epoch_permutation(1, 0, 10),
        [6, 5, 3, 4, 0, 2, 8, 1, 9, 7]
    );
}
