//! BraTS-like phantoms: four MRI contrasts and a label map built from real anatomy (the MNI152
//! templates) with a simulated glioma, written in BraTS layout. Same seed, same bytes: on
//! every run, machine and thread count.
//!
//! `docs/phantoms.md` describes the model for users (what each contrast shows and hides, the
//! intensity table); the submodules give every formula and its order of operations:
//! [`rng`] (random numbers), [`anatomy`] (templates, resampling), [`tumour`] (shape, regions,
//! placement), [`contrast`] (intensities, bias field, noise).
//!
//! # Cohort layout
//! `OUT/<case>/<case><suffix>.nii.gz` for the four modalities and the label map:
//! * BraTS 2018: case `Phantom_<seed>_<kkk>`, suffixes `_t1 _t2 _t1ce _flair _seg`, raw labels
//!   0 background, 1 NCR/NET, 2 ED, 4 ET;
//! * BraTS 2023: case `BraTS-PHT-<seed>-<kkk>`, suffixes `-t1n -t2w -t1c -t2f -seg`, raw labels
//!   0, 1, 2, 3 (ET).
//!
//! `<kkk>` is the case index `k` (from 0), at least three digits. Case `k` of seed `s` is the
//! same phantom whatever the number of cases, and its images are the same bytes in both
//! releases (only the ET label code and the names differ).
//!
//! Images are int16 (integers 1..=32767 inside the brain, exactly 0 outside: skull-stripped);
//! labels uint8.
//!
//! # Geometry
//! The field of view is always the BraTS grid's, 240 x 240 x 155 mm; `--size X,Y,Z` (default
//! 240,240,155) sets the number of voxels, so the spacing is `(240 / X, 240 / Y, 155 / Z)` mm
//! and the anatomy shrinks with the grid. The affine is BraTS's (as nibabel reports it for the
//! BraTS 2018-2021 files, which are in LPS voxel order):
//! `[[-sx, 0, 0, 0], [0, -sy, 0, (Y - 1) sy], [0, 0, sz, 0]]`, stored as both qform (quaternion
//! (b, c, d) = (0, 0, 1), qfac 1) and sform, codes 1 (scanner), units mm and s.
//!
//! # Random numbers
//! ChaCha8, key = (seed, case index, tag), one stream per purpose: see [`rng`].

pub mod anatomy;
pub(crate) mod contrast;
pub mod rng;
pub mod tumour;

use crate::io::files::check_new;
use crate::io::nifti::{write_image, OutDtype};
use crate::volume::{Geometry, Volume};
use anyhow::{bail, Context, Result};
use nalgebra::Matrix4;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub use crate::data::brats::Release;
pub use anatomy::{Templates, TEMPLATE_FILES};
pub use tumour::TumourKind;

/// Generator name and version, for provenance records (golden patches, manifests). Bump it
/// whenever the voxels for a seed change (`tests/data/phantom.rs` records one case's hash).
pub const GENERATOR: &str = "protokd-phantom 1";

/// Default grid, voxels along (x, y, z).
pub const DEFAULT_SIZE: [usize; 3] = [240, 240, 155];

/// Smallest and largest size per axis accepted by [`PhantomConfig::new`].
pub(crate) const SIZE_RANGE: (usize, usize) = (16, 1024);

/// Parses `--release`: `"2018"` (also `"2019"`, `"2020"`, `"2021"`: the same scheme) or
/// `"2023"`.
pub fn parse_release(s: &str) -> Result<Release> {
    match s.trim() {
        "2018" | "2019" | "2020" | "2021" => Ok(Release::Brats2018),
        "2023" => Ok(Release::Brats2023),
        _ => bail!("unknown BraTS release `{s}`; expected 2018 or 2023"),
    }
}

/// The case id of case `k` of cohort `seed`: `Phantom_<seed>_<kkk>` (2018) or
/// `BraTS-PHT-<seed>-<kkk>` (2023), `k` with at least three digits.
pub fn case_id(release: Release, seed: u64, k: u64) -> String {
    match release {
        Release::Brats2018 => format!("Phantom_{seed}_{k:03}"),
        Release::Brats2023 => format!("BraTS-PHT-{seed}-{k:03}"),
    }
}

/// File names of a case: the four modalities in channel order, then the label map.
pub fn file_names(release: Release, case_id: &str) -> [String; 5] {
    let m = release.modality_suffixes();
    [m[0], m[1], m[2], m[3], release.seg_suffix()].map(|s| format!("{case_id}{s}.nii.gz"))
}

/// Raw label codes of a release (NCR 1, ED 2, ET 4 or 3).
fn label_codes(release: Release) -> contrast::LabelCodes {
    let raw = release.internal_to_raw_table(); // internal 0 bg, 1 ET, 2 NCR/NET, 3 ED
    contrast::LabelCodes {
        ncr: raw[2],
        ed: raw[3],
        et: raw[1],
    }
}

/// Parses `X,Y,Z` (three positive integers).
pub fn parse_size(s: &str) -> Result<[usize; 3]> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || {
        anyhow::anyhow!(
            "--size `{s}`: expected three comma-separated voxel counts X,Y,Z (for example 48,48,32)"
        )
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut out = [0usize; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse().map_err(|_| bad())?;
    }
    Ok(out)
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhantomConfig {
    /// Voxels along (x, y, z).
    pub size: [usize; 3],
    /// Naming and labels.
    pub release: Release,
}

impl PhantomConfig {
    /// Checks the size (each axis within [`SIZE_RANGE`]).
    pub fn new(size: [usize; 3], release: Release) -> Result<Self> {
        let (lo, hi) = SIZE_RANGE;
        for (axis, n) in ["X", "Y", "Z"].iter().zip(size) {
            if !(lo..=hi).contains(&n) {
                bail!(
                    "--size: {axis} = {n} is out of range; each size must be {lo} to {hi} voxels"
                );
            }
        }
        Ok(PhantomConfig { size, release })
    }
}

/// Voxel spacing (mm) of a grid of `size` voxels over the fixed field of view.
pub fn spacing(size: [usize; 3]) -> [f64; 3] {
    // Rounded to f32 so that the affine equals what the header stores.
    std::array::from_fn(|a| (anatomy::FOV_MM[a] / size[a] as f64) as f32 as f64)
}

/// The BraTS-like geometry of a grid of `size = [X, Y, Z]` voxels (see the module docs).
pub fn geometry(size: [usize; 3]) -> Geometry {
    let sp = spacing(size);
    let oy = ((size[1] - 1) as f64 * sp[1]) as f32;
    let mut h = nifti::NiftiHeader {
        dim: [
            3,
            size[0] as u16,
            size[1] as u16,
            size[2] as u16,
            1,
            1,
            1,
            1,
        ],
        pixdim: [
            1.0,
            sp[0] as f32,
            sp[1] as f32,
            sp[2] as f32,
            0.0,
            0.0,
            0.0,
            0.0,
        ],
        xyzt_units: 2 | 8,
        qform_code: 1,
        sform_code: 1,
        quatern_b: 0.0,
        quatern_c: 0.0,
        quatern_d: 1.0,
        quatern_x: 0.0,
        quatern_y: oy,
        quatern_z: 0.0,
        srow_x: [-(sp[0] as f32), 0.0, 0.0, 0.0],
        srow_y: [0.0, -(sp[1] as f32), 0.0, oy],
        srow_z: [0.0, 0.0, sp[2] as f32, 0.0],
        ..Default::default()
    };
    let mut descrip = GENERATOR.as_bytes().to_vec();
    descrip.resize(80, 0);
    h.descrip = descrip;
    #[rustfmt::skip]
    let affine = Matrix4::new(
        -sp[0], 0.0, 0.0, 0.0,
        0.0, -sp[1], 0.0, oy as f64,
        0.0, 0.0, sp[2], 0.0,
        0.0, 0.0, 0.0, 1.0,
    );
    Geometry {
        spacing: sp,
        affine,
        header: h,
    }
}

/// Where the tumour of a case is and how large, and how many voxels each label has.
#[derive(Clone, Debug)]
pub struct TumourSummary {
    /// Kind.
    pub kind: TumourKind,
    /// Centre (mm from the grid's corner, along the voxel axes x, y, z).
    pub centre_mm: [f64; 3],
    /// Core radius `R` (mm).
    pub radius_mm: f64,
    /// Voxels labelled NCR/NET, ED, ET.
    pub voxels: [usize; 3],
}

/// One generated case, in memory.
#[derive(Clone, Debug)]
pub struct Case {
    /// Case id (names its folder and files).
    pub id: String,
    /// Cohort seed.
    pub seed: u64,
    /// Case index in the cohort.
    pub index: u64,
    /// Images in channel order T1, T2, T1ce, FLAIR (integer values, as stored).
    pub images: [Volume; 4],
    /// Raw labels of the release.
    pub label: Volume,
    /// Healthy tissue per voxel (ignoring the tumour): [`anatomy::BACKGROUND`] (0, outside the
    /// brain mask), else the dominant tissue, [`anatomy::CSF`] (1), [`anatomy::GM`] (2) or
    /// [`anatomy::WM`] (3), where it makes up at least 60 % of the voxel's brain fraction, and
    /// [`anatomy::MIXED`] (4) where no tissue does (partial volume).
    pub tissue: Vec<u8>,
    /// The tumour.
    pub tumour: TumourSummary,
}

/// Generates case `k` of cohort `seed` in memory.
pub fn generate_case(
    templates: &Templates,
    config: &PhantomConfig,
    seed: u64,
    k: u64,
) -> Result<Case> {
    use rng::{Purpose, Stream};
    let size = config.size;
    let sp = spacing(size);
    let pose = anatomy::Pose::draw(
        &mut Stream::new(seed, k, Purpose::Anatomy as u64),
        templates.base_scale(),
    );
    let shape = tumour::Shape::draw(&mut Stream::new(seed, k, Purpose::TumourShape as u64));
    let acquisitions =
        contrast::Acquisition::draw(&mut Stream::new(seed, k, Purpose::Acquisition as u64));
    let anat = anatomy::resample(templates, size, &pose);
    let tumour = tumour::Tumour::place(
        shape,
        &anat,
        sp,
        &mut Stream::new(seed, k, Purpose::TumourPlace as u64),
        &mut Stream::new(seed, k, Purpose::TumourNoise as u64),
    )
    .with_context(|| format!("case {k} of seed {seed}"))?;
    let vessels = tumour::Lattice::draw(
        &mut Stream::new(seed, k, Purpose::Vessels as u64),
        [0.0; 3],
        anatomy::FOV_MM,
        4.0,
    );
    let scene = contrast::Scene {
        anatomy: &anat,
        tumour: &tumour,
        vessels: &vessels,
        acquisitions: &acquisitions,
        spacing: sp,
        seed,
        case: k,
        labels: label_codes(config.release),
    };
    let [nx, ny, nz] = size;
    let slices: Vec<contrast::Slice> = (0..nz).into_par_iter().map(|z| scene.slice(z)).collect();
    let n = nx * ny * nz;
    let dims = [nz, ny, nx];
    let mut label = Vec::with_capacity(n);
    let mut images: [Vec<f32>; 4] = std::array::from_fn(|_| Vec::with_capacity(n));
    for s in &slices {
        label.extend(s.label.iter().map(|&v| v as f32));
        for (img, part) in images.iter_mut().zip(&s.images) {
            img.extend_from_slice(part);
        }
    }
    drop(slices);
    let codes = label_codes(config.release);
    let count = |c: u8| label.iter().filter(|&&v| v == c as f32).count();
    let voxels = [count(codes.ncr), count(codes.ed), count(codes.et)];
    let tissue = (0..n).map(|i| anat.pure_tissue(i)).collect();
    Ok(Case {
        id: case_id(config.release, seed, k),
        seed,
        index: k,
        images: images.map(|d| Volume::new(dims, d)),
        label: Volume::new(dims, label),
        tissue,
        tumour: TumourSummary {
            kind: tumour.shape.kind,
            centre_mm: tumour.centre,
            radius_mm: tumour.shape.radius,
            voxels,
        },
    })
}

/// Writes a case as `out/<id>/<id><suffix>.nii.gz` (images int16, labels uint8), the five
/// files in parallel, each atomically.
pub fn write_case(out: &Path, case: &Case, config: &PhantomConfig) -> Result<()> {
    let dir = out.join(&case.id);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let geom = geometry(config.size);
    let names = file_names(config.release, &case.id);
    let vols: Vec<(&Volume, OutDtype)> = case
        .images
        .iter()
        .map(|v| (v, OutDtype::I16))
        .chain(std::iter::once((&case.label, OutDtype::U8)))
        .collect();
    vols.par_iter()
        .zip(names.par_iter())
        .map(|((vol, dtype), name)| write_image(&dir.join(name), vol, &geom, *dtype))
        .collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// Generates and writes cases `0..cases` of cohort `seed` into `out` (created if missing),
/// one case at a time (each parallel inside), calling `done` after each case is written.
/// Before anything is generated, every file of every case is checked to be new unless `force`
/// ([`check_new`]): an existing cohort is refused, not silently replaced.
pub fn write_cohort(
    out: &Path,
    templates: &Templates,
    config: &PhantomConfig,
    seed: u64,
    cases: u64,
    force: bool,
    mut done: impl FnMut(&Case, &Path) -> Result<()>,
) -> Result<()> {
    if cases == 0 {
        bail!("--cases must be at least 1");
    }
    for k in 0..cases {
        let id = case_id(config.release, seed, k);
        for name in file_names(config.release, &id) {
            check_new(&out.join(&id).join(name), "phantom case file", force)?;
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    for k in 0..cases {
        let case = generate_case(templates, config, seed, k)?;
        write_case(out, &case, config)?;
        done(&case, &out.join(&case.id))?;
    }
    Ok(())
}

/// The templates folder: `explicit` if given (it must exist), else `data/mni152` in the
/// current directory, else `data/mni152` in the source tree protokd was built from.
pub fn find_templates(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_dir() {
            bail!(
                "templates folder {}: not found (it should hold {})",
                p.display(),
                TEMPLATE_FILES.join(", ")
            );
        }
        return Ok(p.to_path_buf());
    }
    let local = PathBuf::from("data").join("mni152");
    if local.is_dir() {
        return Ok(local);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("mni152");
    if built.is_dir() {
        return Ok(built);
    }
    bail!(
        "cannot find the MNI152 templates: neither {} nor {} exists; pass --templates DIR \
         (a folder holding {})",
        local.display(),
        built.display(),
        TEMPLATE_FILES.join(", ")
    )
}
