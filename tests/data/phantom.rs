// Verifies (every test in this file): R-DAT-4
//! Tests of the BraTS-like phantoms (`protokd phantom`, `protokd::data::phantom`): determinism (runs,
//! seeds, thread counts), layout and naming of both releases, labels, the skull-stripped
//! background, the contrasts' relative intensities and the command's bad input. Small grids
//! (48 x 48 x 32) keep them fast; the anatomy is the MNI152 templates in `data/mni152`.

use crate::common::refusal::{file, refusal, refused};
use crate::common::{protokd, s, TempDir};
use protokd::data::phantom::{
    self, anatomy, generate_case, Case, PhantomConfig, Release, Templates, TumourKind,
};
use protokd::io::nifti::read_image;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SIZE: [usize; 3] = [48, 48, 32];
const SIZE_ARG: &str = "48,48,32";

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mni152")
}

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(|| Templates::load(&templates_dir()).expect("MNI152 templates in data/mni152"))
}

/// Runs `protokd phantom` on the small grid with the templates given explicitly; asserts
/// success.
fn phantom_ok(out: &Path, cases: u64, seed: u64, global: &[&str], extra: &[&str]) -> String {
    let (cases, seed) = (cases.to_string(), seed.to_string());
    let mut args = vec![];
    args.extend_from_slice(global);
    let tdir = templates_dir();
    args.extend_from_slice(&[
        "phantom",
        "--out",
        s(out),
        "--cases",
        &cases,
        "--seed",
        &seed,
        "--size",
        SIZE_ARG,
        "--templates",
        s(&tdir),
    ]);
    args.extend_from_slice(extra);
    let o = protokd(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "protokd {args:?} failed: {stderr}");
    assert!(
        stderr.is_empty(),
        "protokd {args:?} wrote to stderr: {stderr}"
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn config(release: Release) -> PhantomConfig {
    PhantomConfig::new(SIZE, release).unwrap()
}

/// Cases 0..n of `seed`, generated in memory (BraTS 2018 labels).
fn cases(seed: u64, n: u64) -> Vec<Case> {
    (0..n)
        .map(|k| generate_case(templates(), &config(Release::Brats2018), seed, k).unwrap())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Determinism
// ------------------------------------------------------------------------------------------

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let t = TempDir::new("determinism");
    phantom_ok(&t.join("a"), 2, 7, &[], &[]);
    phantom_ok(&t.join("b"), 2, 7, &[], &[]);
    phantom_ok(&t.join("c"), 2, 8, &[], &[]);
    let (a, b, c) = (tree(&t.join("a")), tree(&t.join("b")), tree(&t.join("c")));
    assert_eq!(a.len(), 10);
    assert_eq!(a, b, "two runs with seed 7 differ");
    // Seed 8 names its cases differently; compare the contents file by file.
    let av: Vec<&Vec<u8>> = a.values().collect();
    let cv: Vec<&Vec<u8>> = c.values().collect();
    assert_eq!(av.len(), cv.len());
    for (x, y) in av.iter().zip(&cv) {
        assert_ne!(x, y, "seed 7 and seed 8 wrote an identical file");
    }
}

// Verifies: R-NUM-4
#[test]
fn thread_count_does_not_change_the_bytes() {
    let t = TempDir::new("threads");
    phantom_ok(&t.join("one"), 2, 3, &["--threads", "1"], &[]);
    phantom_ok(&t.join("three"), 2, 3, &["--threads", "3"], &[]);
    phantom_ok(&t.join("all"), 2, 3, &[], &[]);
    let one = tree(&t.join("one"));
    assert_eq!(one.len(), 10);
    assert_eq!(one, tree(&t.join("three")), "--threads 1 and 3 differ");
    assert_eq!(
        one,
        tree(&t.join("all")),
        "--threads 1 and the default differ"
    );
}

#[test]
fn case_k_does_not_depend_on_the_cohort_size_or_release() {
    let a = generate_case(templates(), &config(Release::Brats2018), 5, 2).unwrap();
    let b = generate_case(templates(), &config(Release::Brats2023), 5, 2).unwrap();
    assert_eq!(a.id, "Phantom_5_002");
    assert_eq!(b.id, "BraTS-PHT-5-002");
    assert_eq!(a.images, b.images, "the releases' images differ");
    for (x, y) in a.label.data.iter().zip(&b.label.data) {
        let want = if *x == 4.0 { 3.0 } else { *x };
        assert_eq!(*y, want);
    }
    // Case 1 of a 2-case cohort equals case 1 generated alone.
    let t = TempDir::new("cohort-size");
    phantom_ok(t.path(), 2, 5, &[], &[]);
    let c1 = generate_case(templates(), &config(Release::Brats2018), 5, 1).unwrap();
    let img = read_image(&t.join("Phantom_5_001/Phantom_5_001_t2.nii.gz")).unwrap();
    assert_eq!(img.volume, c1.images[1]);
}

/// SHA-256 of a case's voxels as stored: the four images as int16 little-endian in channel
/// order, then the labels as bytes.
fn voxel_hash(case: &Case) -> String {
    let mut bytes = Vec::new();
    for img in &case.images {
        for &v in &img.data {
            bytes.extend_from_slice(&(v as i16).to_le_bytes());
        }
    }
    bytes.extend(case.label.data.iter().map(|&v| v as u8));
    protokd::io::hash::sha256_hex(&bytes)
}

/// The recorded voxels of one phantom: the same on every machine. A change here means the
/// generator's output changed: bump `phantom::GENERATOR` and record the new hash.
#[test]
fn recorded_voxel_hash() {
    let case = generate_case(templates(), &config(Release::Brats2018), 1, 0).unwrap();
    assert_eq!(phantom::GENERATOR, "protokd-phantom 1");
    assert_eq!(
        voxel_hash(&case),
        RECORDED_HASH,
        "phantom seed 1 case 0 at 48x48x32"
    );
}

const RECORDED_HASH: &str = "02febeffbafba020644d37204bea69fb339e542fde83f00481bbd985615995ee";

// ------------------------------------------------------------------------------------------
// Layout, naming, geometry, labels, background
// ------------------------------------------------------------------------------------------

/// Reads a written case back and checks it against the in-memory one.
fn check_written_case(dir: &Path, release: Release, case: &Case) {
    let names = phantom::file_names(release, &case.id);
    let mut files: Vec<String> = std::fs::read_dir(dir.join(&case.id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(files, want, "files of {}", case.id);
    let geom = phantom::geometry(SIZE);
    for (m, name) in names.iter().enumerate() {
        let img = read_image(&dir.join(&case.id).join(name)).unwrap();
        assert_eq!(img.volume.dims, [32, 48, 48], "{name}");
        assert_eq!(img.geometry.affine, geom.affine, "{name}");
        assert_eq!(img.geometry.spacing, geom.spacing, "{name}");
        let want = if m < 4 { &case.images[m] } else { &case.label };
        assert_eq!(&img.volume, want, "{name} read back differs");
        let dtype = img.geometry.header.datatype;
        assert_eq!(
            dtype,
            if m < 4 { 4 } else { 2 },
            "{name}: int16 images, uint8 labels"
        );
    }
}

#[test]
fn layout_and_naming_of_both_releases() {
    for (release, first, suffixes, et) in [
        (
            "2018",
            "Phantom_11_000",
            ["_t1", "_t2", "_t1ce", "_flair", "_seg"],
            4.0,
        ),
        (
            "2023",
            "BraTS-PHT-11-000",
            ["-t1n", "-t2w", "-t1c", "-t2f", "-seg"],
            3.0,
        ),
    ] {
        let t = TempDir::new(&format!("layout-{release}"));
        let out = phantom_ok(t.path(), 2, 11, &[], &["--release", release]);
        assert_eq!(out.lines().count(), 3, "{out}");
        check_release(
            t.path(),
            phantom::parse_release(release).unwrap(),
            first,
            &suffixes,
            et,
        );
    }
}

fn check_release(dir: &Path, release: Release, first: &str, suffixes: &[&str; 5], et: f32) {
    let mut dirs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 2);
    assert_eq!(dirs[0], first);
    for s in suffixes {
        assert!(dir.join(first).join(format!("{first}{s}.nii.gz")).is_file());
    }
    for k in 0..2 {
        let case = generate_case(
            templates(),
            &PhantomConfig::new(SIZE, release).unwrap(),
            11,
            k,
        )
        .unwrap();
        assert_eq!(case.id, dirs[k as usize]);
        check_written_case(dir, release, &case);
        for &v in &case.label.data {
            assert!(
                v == 0.0 || v == 1.0 || v == 2.0 || v == et,
                "label {v} outside the release's set"
            );
        }
    }
}

/// A written cohort is a BraTS dataset for `protokd::data::brats`: discovered with the right
/// release, every case loads (shapes and affines agree, labels in the release's set), and
/// the internal labels are the phantom's raw labels converted.
// Verifies: R-DAT-2
#[test]
fn cohorts_are_read_by_the_brats_loader() {
    for release in [Release::Brats2018, Release::Brats2023] {
        let t = TempDir::new(&format!("brats-{}", release.short_name()));
        phantom_ok(t.path(), 2, 4, &[], &["--release", release.short_name()]);
        let dataset = protokd::data::brats::discover(t.path()).unwrap();
        assert_eq!(dataset.release, release);
        let ids: Vec<&str> = dataset.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                phantom::case_id(release, 4, 0),
                phantom::case_id(release, 4, 1)
            ]
        );
        for (k, case) in dataset.cases.iter().enumerate() {
            let loaded = protokd::data::brats::load_case(case).unwrap();
            let want = generate_case(templates(), &config(release), 4, k as u64).unwrap();
            assert_eq!(loaded.images, want.images);
            let internal = loaded.labels.expect("a seg file");
            let raw = release.internal_to_raw_table();
            for (i, &l) in internal.iter().enumerate() {
                assert_eq!(raw[l as usize] as f32, want.label.data[i]);
            }
        }
    }
}

#[test]
fn labels_inside_the_brain_and_background_exactly_zero() {
    let all = cases(21, 6);
    let mut typical = 0;
    for case in &all {
        let n = case.tissue.len();
        for i in 0..n {
            let brain = case.tissue[i] != anatomy::BACKGROUND;
            for (m, img) in case.images.iter().enumerate() {
                let v = img.data[i];
                if brain {
                    assert!(
                        (1.0..=32767.0).contains(&v) && v.fract() == 0.0,
                        "{}: modality {m} voxel {i} inside the brain is {v}",
                        case.id
                    );
                } else {
                    assert_eq!(v, 0.0, "{}: modality {m} background voxel {i}", case.id);
                }
            }
            if case.label.data[i] != 0.0 {
                assert!(brain, "{}: label outside the brain mask at {i}", case.id);
            }
        }
        let [ncr, ed, et] = case.tumour.voxels;
        assert!(ncr > 0 && ed > 0, "{}: {:?}", case.id, case.tumour);
        match case.tumour.kind {
            TumourKind::Typical => {
                typical += 1;
                assert!(et > 0, "{}: typical tumour without ET", case.id);
            }
            TumourKind::NonEnhancing => assert_eq!(et, 0, "{}", case.id),
            TumourKind::ThinEnhancing => {}
        }
        // The whole tumour is smaller than the brain and the core mostly white-matter sited.
        let brain = case.tissue.iter().filter(|&&t| t != 0).count();
        assert!(ncr + ed + et < brain / 3, "{}: tumour too large", case.id);
    }
    assert!(typical >= 3, "only {typical} typical cases of 6");
}

// ------------------------------------------------------------------------------------------
// Contrasts
// ------------------------------------------------------------------------------------------

/// Mean of `img` over voxels where `keep` holds.
fn mean(img: &[f32], keep: impl Fn(usize) -> bool) -> f64 {
    let (mut s, mut n) = (0.0f64, 0usize);
    for (i, &v) in img.iter().enumerate() {
        if keep(i) {
            s += v as f64;
            n += 1;
        }
    }
    assert!(n > 0, "empty mask");
    s / n as f64
}

/// Healthy voxels away from the tumour: outside the label's bounding box grown by 2 voxels.
fn far_from_tumour(case: &Case) -> Vec<bool> {
    let [nz, ny, nx] = case.label.dims;
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                if case.label.data[(z * ny + y) * nx + x] != 0.0 {
                    for (a, v) in [z, y, x].into_iter().enumerate() {
                        lo[a] = lo[a].min(v);
                        hi[a] = hi[a].max(v);
                    }
                }
            }
        }
    }
    let mut far = vec![true; nz * ny * nx];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let inside = [z, y, x]
                    .iter()
                    .enumerate()
                    .all(|(a, &v)| v + 2 >= lo[a] && v <= hi[a] + 2);
                if inside {
                    far[(z * ny + y) * nx + x] = false;
                }
            }
        }
    }
    far
}

#[test]
fn relative_intensities_of_tissues_and_tumour() {
    const T1: usize = 0;
    const T2: usize = 1;
    const T1CE: usize = 2;
    const FLAIR: usize = 3;
    // A 2.5 mm grid: on 5 mm voxels partial volume blurs grey matter into its neighbours.
    let config = PhantomConfig::new([96, 96, 64], Release::Brats2018).unwrap();
    for k in 0..4 {
        let case = generate_case(templates(), &config, 33, k).unwrap();
        let far = far_from_tumour(&case);
        let tissue_mean =
            |m: usize, t: u8| mean(&case.images[m].data, |i| far[i] && case.tissue[i] == t);
        let (wm, gm, csf) = (anatomy::WM, anatomy::GM, anatomy::CSF);
        let id = &case.id;
        let [t1w, t1g, t1c] = [wm, gm, csf].map(|t| tissue_mean(T1, t));
        assert!(
            t1w > t1g && t1g > t1c,
            "{id} T1: WM {t1w} GM {t1g} CSF {t1c}"
        );
        let [t2w, t2g, t2c] = [wm, gm, csf].map(|t| tissue_mean(T2, t));
        assert!(
            t2c > t2g && t2g > t2w,
            "{id} T2: WM {t2w} GM {t2g} CSF {t2c}"
        );
        let [fw, fg, fc] = [wm, gm, csf].map(|t| tissue_mean(FLAIR, t));
        assert!(fg > fw && fw > fc, "{id} FLAIR: WM {fw} GM {fg} CSF {fc}");
        let [cw, cg, cc] = [wm, gm, csf].map(|t| tissue_mean(T1CE, t));
        assert!(cw > cg && cg > cc, "{id} T1ce: WM {cw} GM {cg} CSF {cc}");

        let label_mean = |m: usize, l: f32| mean(&case.images[m].data, |i| case.label.data[i] == l);
        let (ncr, ed, et) = (1.0, 2.0, 4.0);
        if case.tumour.voxels[2] > 0 {
            let v = label_mean(T1CE, et);
            assert!(v > cw, "{id}: ET on T1ce {v} <= WM {cw}");
            // ET is the brightest tissue on T1ce; NCR is dark there.
            assert!(label_mean(T1CE, ncr) < cg, "{id}: NCR not dark on T1ce");
        }
        let v = label_mean(FLAIR, ed);
        assert!(v > fw, "{id}: ED on FLAIR {v} <= WM {fw}");
        let v = label_mean(T2, ncr);
        assert!(v > t2w, "{id}: NCR on T2 {v} <= WM {t2w}");
        let v = label_mean(T2, ed);
        assert!(v > t2w, "{id}: ED on T2 {v} <= WM {t2w}");
        let v = label_mean(T1, ed);
        assert!(v < t1w, "{id}: ED on T1 {v} not darker than WM {t1w}");
    }
}

// ------------------------------------------------------------------------------------------
// The command
// ------------------------------------------------------------------------------------------

#[test]
fn command_writes_the_cases_with_the_default_templates() {
    let t = TempDir::new("cli");
    // No --templates: found in data/mni152 (the tests run in the package root).
    let o = Command::new(env!("CARGO_BIN_EXE_protokd"))
        .args([
            "phantom",
            "--out",
            s(t.path()),
            "--cases",
            "2",
            "--seed",
            "1",
            "--size",
            SIZE_ARG,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("Phantom_1_000") && stdout.contains("Phantom_1_001"),
        "{stdout}"
    );
    let files = tree(t.path());
    assert_eq!(files.len(), 10, "{:?}", files.keys().collect::<Vec<_>>());
}

// Verifies: R-CLI-1
#[test]
fn bad_arguments_are_clear_errors() {
    let t = TempDir::new("bad");
    let out = t.join("out");
    let tdir = templates_dir();
    let (missing, partial) = (t.join("no-such-templates"), t.join("partial"));
    // `phantom --out <out> --seed 1 EXTRA... --templates T`.
    let args = |extra: &[&str], templates: &Path| -> Vec<String> {
        ["phantom", "--out", s(&out), "--seed", "1"]
            .iter()
            .chain(extra)
            .chain(&["--templates", s(templates)])
            .map(|a| a.to_string())
            .collect()
    };
    // A templates folder with a file missing.
    let first = phantom::TEMPLATE_FILES[0];
    let partial_files = vec![file(
        &partial.join(first),
        std::fs::read(tdir.join(first)).unwrap(),
    )];
    let size = |s: &'static str| ["--cases", "1", "--size", s];
    // (what the case is, files prepared, arguments, exit status, words of the message)
    #[rustfmt::skip]
    let table = vec![
        refusal("a size of two numbers", vec![], args(&size("10,10"), &tdir), 1,
            ["--size `10,10`"]),
        refusal("a size that is not a number", vec![], args(&size("48,48,x"), &tdir), 1,
            ["--size"]),
        refusal("a size out of range", vec![], args(&size("48,48,4"), &tdir), 1,
            ["Z = 4 is out of range"]),
        refusal("no case", vec![], args(&["--cases", "0", "--size", SIZE_ARG], &tdir), 1,
            ["--cases must be at least 1"]),
        refusal("an unknown release", vec![], args(&["--cases", "1", "--release", "2017"], &tdir),
            1, ["unknown BraTS release `2017`"]),
        refusal("no templates folder", vec![], args(&size(SIZE_ARG), &missing), 1,
            ["no-such-templates: not found"]),
        refusal("a template file missing", partial_files, args(&size(SIZE_ARG), &partial), 1,
            [format!("missing {}", phantom::TEMPLATE_FILES[1])]),
    ];
    refused(t.path(), table);
    // Nothing was written by the failed runs.
    assert!(!out.join("Phantom_1_000").exists());
}

#[test]
fn geometry_is_brats_like() {
    let g = phantom::geometry(phantom::DEFAULT_SIZE);
    assert_eq!(g.spacing, [1.0, 1.0, 1.0]);
    let a = g.affine;
    assert_eq!(
        [
            a[(0, 0)],
            a[(1, 1)],
            a[(2, 2)],
            a[(0, 3)],
            a[(1, 3)],
            a[(2, 3)]
        ],
        [-1.0, -1.0, 1.0, 0.0, 239.0, 0.0]
    );
    let g = phantom::geometry(SIZE);
    assert_eq!(g.spacing, [5.0, 5.0, 4.84375]);
    assert_eq!(g.affine[(1, 3)], 235.0);
    assert_eq!(
        phantom::parse_size("240, 240,155").unwrap(),
        [240, 240, 155]
    );
    assert!(phantom::parse_size("10,10").is_err());
    assert!(phantom::parse_size("1,2,3,4").is_err());
}

/// Over many seeds (slow: `cargo test --release --test data -- --ignored many_seeds --nocapture`):
/// every case places its tumour, typical tumours have all three labels, and the contrasts keep
/// their order. Prints per-case statistics.
#[test]
#[ignore]
fn many_seeds() {
    let mut kinds = BTreeMap::new();
    let size: Vec<usize> = std::env::var("PHANTOM_SIZE")
        .unwrap_or_else(|_| SIZE_ARG.into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let config = PhantomConfig::new([size[0], size[1], size[2]], Release::Brats2018).unwrap();
    for seed in 0..60u64 {
        let case = generate_case(templates(), &config, seed, 0).unwrap();
        let far = far_from_tumour(&case);
        let tm = |m: usize, t: u8| mean(&case.images[m].data, |i| far[i] && case.tissue[i] == t);
        let row = |m: usize| [anatomy::WM, anatomy::GM, anatomy::CSF].map(|t| tm(m, t) as i64);
        let t = &case.tumour;
        println!(
            "{} {:>14} R {:5.1} c {:?} NCR {:4} ED {:5} ET {:4} T1 {:?} T2 {:?} T1ce {:?} FLAIR {:?}",
            case.id,
            t.kind.name(),
            t.radius_mm,
            t.centre_mm.map(|v| v as i64),
            t.voxels[0],
            t.voxels[1],
            t.voxels[2],
            row(0),
            row(1),
            row(2),
            row(3)
        );
        *kinds.entry(t.kind.name()).or_insert(0) += 1;
        let [t1, t2, t1ce, flair] = [0, 1, 2, 3].map(row);
        assert!(t1[0] > t1[1] && t1[1] > t1[2], "{} T1", case.id);
        assert!(t1ce[0] > t1ce[1] && t1ce[1] > t1ce[2], "{} T1ce", case.id);
        assert!(t2[2] > t2[1] && t2[1] > t2[0], "{} T2", case.id);
        assert!(
            flair[1] > flair[0] && flair[0] > flair[2],
            "{} FLAIR",
            case.id
        );
        if t.kind == TumourKind::Typical {
            assert!(t.voxels.iter().all(|&v| v > 0), "{}", case.id);
        }
    }
    println!("{kinds:?}");
}
