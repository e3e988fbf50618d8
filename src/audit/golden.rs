//! Golden patches: small four-modality patches cut from BraTS-like phantoms, chosen to cover
//! the cases that matter (a large tumour, a small enhancing part, no tumour, a tumour cut by
//! the patch border), stored in `golden/` as a BraTS 2018-style dataset of 32^3 cases with a
//! `manifest.json` of SHA-256 hashes and provenance.
//!
//! How a patch is made, in order:
//! 1. Cases `0 .. CASES` of phantom cohort [`SEED`] (release 2018, default size
//!    240 x 240 x 155, [`phantom::generate_case`]).
//! 2. Each modality z-scored over the WHOLE case as in training (method page section 2,
//!    [`crate::data::preprocess::zscore_stats`]), so a patch holds exactly what the network sees there.
//! 3. A 32^3 box (z, y, x) per patch, chosen by the rule of its [`Kind`], clamped inside the
//!    volume; images written as float32, labels as the raw 2018 labels (uint8), with the
//!    case's geometry moved to the box's corner (so the patch overlays the case in a viewer).
//!
//! The files are `golden/<name>/<name>_{t1,t2,t1ce,flair,seg}.nii.gz`, which
//! [`crate::data::brats::discover`] reads like any BraTS 2018 dataset.

use crate::data::brats::Release;
use crate::data::phantom::{self, PhantomConfig, Templates};
use crate::data::preprocess::{apply_zscore, crop_volume, zscore_stats, CropBox};
use crate::engine::Compute;
use crate::engine::{Step, Trainer};
use crate::io::hash::sha256_hex;
use crate::io::nifti::{encode_image, OutDtype};
use crate::volume::{Geometry, Volume};
use anyhow::{Context, Result};
use nalgebra::Vector4;
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{StepConfig, StepReport};
use protokd_reference::vnet::VNetOutput;
use protokd_reference::{LabelMap, Tensor};
use serde_json::{json, Value};

/// The phantom cohort the patches come from.
pub const SEED: u64 = 2026;
/// Cases generated (patches are chosen among them).
pub(crate) const CASES: u64 = 4;
/// Patch edge (voxels).
pub const PATCH: usize = 32;

/// What a patch shows, and how its box is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Centred on the tumour centre of the case with the most tumour voxels.
    LargeTumour,
    /// In the case with the fewest (but some) enhancing voxels, the box (corner on a grid of
    /// step 4) with the fewest enhancing voxels among those with some enhancing voxels and at
    /// least a tenth of tumour; the first in scan order on ties.
    SmallEnhancing,
    /// The first box in scan order (step 16 voxels) of case 0 with no tumour voxel and at
    /// least half of its voxels in the brain.
    NoTumour,
    /// Centred on the first voxel outside the tumour along +x from the tumour centre of case
    /// 0, so the tumour touches the patch border... and is cut by it.
    TumourAtBorder,
}

impl Kind {
    /// All kinds, in the manifest's order.
    pub const ALL: [Kind; 4] = [
        Kind::LargeTumour,
        Kind::SmallEnhancing,
        Kind::NoTumour,
        Kind::TumourAtBorder,
    ];

    /// Folder and file name stem.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LargeTumour => "large_tumour",
            Kind::SmallEnhancing => "small_et",
            Kind::NoTumour => "no_tumour",
            Kind::TumourAtBorder => "tumour_at_border",
        }
    }
}

/// One golden patch in memory: its files' bytes and provenance.
#[derive(Clone, Debug)]
pub struct Patch {
    /// What it shows.
    pub kind: Kind,
    /// The phantom case it was cut from.
    pub case_index: u64,
    /// Box corner (z, y, x) in the case's grid.
    pub offset: [usize; 3],
    /// `(file name, .nii.gz bytes)`, modalities in channel order, then the seg.
    pub files: Vec<(String, Vec<u8>)>,
    /// Voxels per raw label 0, 1, 2, 4.
    pub label_counts: [usize; 4],
}

/// The geometry of a box starting at voxel `offset` (z, y, x): the same axes, the origin moved
/// to the box's corner (affine column 3, the sform's offsets and the qform's offsets).
pub(crate) fn box_geometry(g: &Geometry, offset: [usize; 3]) -> Geometry {
    let corner = g.affine * Vector4::new(offset[2] as f64, offset[1] as f64, offset[0] as f64, 1.0);
    let mut out = g.clone();
    for r in 0..3 {
        out.affine[(r, 3)] = corner[r];
    }
    let h = &mut out.header;
    h.srow_x[3] = corner[0] as f32;
    h.srow_y[3] = corner[1] as f32;
    h.srow_z[3] = corner[2] as f32;
    h.quatern_x = corner[0] as f32;
    h.quatern_y = corner[1] as f32;
    h.quatern_z = corner[2] as f32;
    out
}

/// Voxel (z, y, x) of a point given in mm along the voxel axes (x, y, z) from the corner.
fn voxel_of_mm(mm: [f64; 3], spacing: [f64; 3]) -> [usize; 3] {
    [2, 1, 0].map(|a| (mm[a] / spacing[a]).floor().max(0.0) as usize)
}

/// The box of edge [`PATCH`] centred at `c` (z, y, x), clamped inside `dims`.
fn box_at(c: [usize; 3], dims: [usize; 3]) -> [usize; 3] {
    std::array::from_fn(|a| c[a].saturating_sub(PATCH / 2).min(dims[a] - PATCH))
}

/// Box corners (z, y, x) on a grid of step `step`, in scan order (x fastest).
fn corners(dims: [usize; 3], step: usize) -> impl Iterator<Item = [usize; 3]> {
    let steps = move |a: usize| (0..=dims[a] - PATCH).step_by(step);
    steps(0).flat_map(move |z| steps(1).flat_map(move |y| steps(2).map(move |x| [z, y, x])))
}

/// Voxel counts of a mask in [`PATCH`]^3 boxes, from a summed-volume table (exact integers).
struct BoxCounts {
    dims: [usize; 3],
    /// `t[(z*(ny+1) + y)*(nx+1) + x]` = voxels of the mask in `[0,z) x [0,y) x [0,x)`.
    table: Vec<u32>,
}

impl BoxCounts {
    fn new(dims: [usize; 3], mask: impl Fn(usize) -> bool) -> Self {
        let [nz, ny, nx] = dims;
        let at = |z: usize, y: usize, x: usize| (z * (ny + 1) + y) * (nx + 1) + x;
        let mut t = vec![0u32; (nz + 1) * (ny + 1) * (nx + 1)];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let v = u32::from(mask((z * ny + y) * nx + x));
                    t[at(z + 1, y + 1, x + 1)] = v
                        + t[at(z, y + 1, x + 1)]
                        + t[at(z + 1, y, x + 1)]
                        + t[at(z + 1, y + 1, x)]
                        - t[at(z, y, x + 1)]
                        - t[at(z, y + 1, x)]
                        - t[at(z + 1, y, x)]
                        + t[at(z, y, x)];
                }
            }
        }
        BoxCounts { dims, table: t }
    }

    /// Voxels of the mask in the box with corner `o`.
    fn count(&self, o: [usize; 3]) -> usize {
        let [_, ny, nx] = self.dims;
        let at = |z: usize, y: usize, x: usize| (z * (ny + 1) + y) * (nx + 1) + x;
        let [z1, y1, x1] = o.map(|c| c + PATCH);
        let [z0, y0, x0] = o;
        let t = &self.table;
        (t[at(z1, y1, x1)] + t[at(z0, y0, x1)] + t[at(z0, y1, x0)] + t[at(z1, y0, x0)]
            - t[at(z0, y1, x1)]
            - t[at(z1, y0, x1)]
            - t[at(z1, y1, x0)]
            - t[at(z0, y0, x0)]) as usize
    }
}

fn is_tumour(label: f32) -> bool {
    label != 0.0
}

/// The box for `kind` in `case` (see [`Kind`]).
fn choose_box(kind: Kind, case: &phantom::Case, spacing: [f64; 3]) -> Option<[usize; 3]> {
    let dims = case.label.dims;
    let centre = voxel_of_mm(case.tumour.centre_mm, spacing);
    match kind {
        Kind::LargeTumour => Some(box_at(centre, dims)),
        Kind::SmallEnhancing => {
            let et = BoxCounts::new(dims, |i| case.label.data[i] == 4.0);
            let tumour = BoxCounts::new(dims, |i| is_tumour(case.label.data[i]));
            let n = PATCH * PATCH * PATCH;
            corners(dims, 4)
                .filter(|&o| et.count(o) > 0 && tumour.count(o) * 10 >= n)
                .min_by_key(|&o| (et.count(o), o))
        }
        Kind::NoTumour => {
            let mut boxes = corners(dims, 16);
            boxes.find(|o| {
                let b = CropBox {
                    start: *o,
                    end: std::array::from_fn(|a| o[a] + PATCH),
                };
                let labels = crop_volume(&case.label, &b).expect("box inside");
                let brain = crop_volume(&case.images[0], &b).expect("box inside");
                !labels.data.iter().any(|&l| is_tumour(l))
                    && brain.data.iter().filter(|&&v| v > 0.0).count() * 2 >= brain.data.len()
            })
        }
        Kind::TumourAtBorder => {
            let [z, y, x0] = centre;
            (x0..dims[2])
                .find(|&x| !is_tumour(case.label.data[case.label.index(z, y, x)]))
                .map(|x| box_at([z, y, x], dims))
        }
    }
}

/// Builds the golden patches from the templates in `templates_dir` (see the module docs).
pub fn build(templates: &Templates) -> Result<Vec<Patch>> {
    let config = PhantomConfig::new(phantom::DEFAULT_SIZE, Release::Brats2018)?;
    let spacing = phantom::spacing(config.size);
    let geometry = phantom::geometry(config.size);
    let cases: Vec<phantom::Case> = (0..CASES)
        .map(|k| phantom::generate_case(templates, &config, SEED, k))
        .collect::<Result<_>>()?;
    let total = |c: &phantom::Case| c.tumour.voxels.iter().sum::<usize>();
    let pick = |kind: Kind| -> usize {
        match kind {
            Kind::LargeTumour => (0..cases.len())
                .max_by_key(|&k| (total(&cases[k]), usize::MAX - k))
                .unwrap_or(0),
            Kind::SmallEnhancing => (0..cases.len())
                .filter(|&k| cases[k].tumour.voxels[2] > 0)
                .min_by_key(|&k| (cases[k].tumour.voxels[2], k))
                .unwrap_or(0),
            Kind::NoTumour | Kind::TumourAtBorder => 0,
        }
    };
    Kind::ALL
        .iter()
        .map(|&kind| {
            let k = pick(kind);
            let case = &cases[k];
            let offset = choose_box(kind, case, spacing)
                .with_context(|| format!("no box for golden patch {} in case {k}", kind.name()))?;
            let b = CropBox {
                start: offset,
                end: std::array::from_fn(|a| offset[a] + PATCH),
            };
            let g = box_geometry(&geometry, offset);
            let names = phantom::file_names(Release::Brats2018, kind.name());
            let mut files = Vec::with_capacity(5);
            for (m, image) in case.images.iter().enumerate() {
                let z = apply_zscore(&crop_volume(image, &b)?, &zscore_stats(image)?);
                files.push((names[m].clone(), encode_image(&z, &g, OutDtype::F32, true)?));
            }
            let labels: Volume = crop_volume(&case.label, &b)?;
            let label_counts =
                [0.0, 1.0, 2.0, 4.0].map(|v| labels.data.iter().filter(|&&l| l == v).count());
            files.push((
                names[4].clone(),
                encode_image(&labels, &g, OutDtype::U8, true)?,
            ));
            Ok(Patch {
                kind,
                case_index: k as u64,
                offset,
                files,
                label_counts,
            })
        })
        .collect()
}

/// The manifest of a set of patches: provenance and each file's SHA-256.
pub fn manifest(patches: &[Patch]) -> Value {
    let list: Vec<Value> = patches
        .iter()
        .map(|p| {
            let files: serde_json::Map<String, Value> =
                p.files.iter().map(|(n, b)| (n.clone(), json!(sha256_hex(b)))).collect();
            json!({
                "name": p.kind.name(),
                "case_id": phantom::case_id(Release::Brats2018, SEED, p.case_index),
                "case_index": p.case_index,
                "offset_zyx": p.offset,
                "size_zyx": [PATCH, PATCH, PATCH],
                "raw_label_counts": {"0": p.label_counts[0], "1": p.label_counts[1], "2": p.label_counts[2], "4": p.label_counts[3]},
                "sha256": files,
            })
        })
        .collect();
    json!({
        "generator": phantom::GENERATOR,
        "protokd_version": env!("CARGO_PKG_VERSION"),
        "phantom_seed": SEED,
        "phantom_cases": CASES,
        "phantom_release": "2018",
        "phantom_size_xyz": phantom::DEFAULT_SIZE,
        "preprocessing": "each modality z-scored over the voxels > 0 of the whole case (mean, population std), then cut; images float32, labels raw BraTS 2018 (uint8)",
        "patches": list,
    })
}
/// The computation the golden values record (`tests/audit/golden.rs`) and `protokd verify` compares:
/// on a patch `image` `[1, 4, D, H, W]` with `labels`, the evaluation-mode forward of a
/// four-channel teacher (n_filters 4, seed 1), then one ProtoKD step (the paper's settings) of a
/// T1ce student (n_filters 4, seed 2) against it. Returns the teacher's output, the step's report
/// and the updated student. Runs on `compute` (the same bits on every device).
pub fn seeded_run(
    compute: &Compute,
    image: &Tensor,
    labels: &LabelMap,
) -> Result<(VNetOutput, StepReport, VNetState)> {
    let cfg = |in_channels| VNetConfig {
        in_channels,
        n_classes: 4,
        n_filters: 4,
    };
    let mut teacher = VNetState::init(cfg(4), 1);
    let student = VNetState::init(cfg(1), 2);
    let out = crate::engine::forward(compute, &mut teacher, image, false)?;
    let adam = AdamState::for_state(&student);
    let mut trainer = Trainer::new(compute, student, adam, Some(&teacher))?;
    let report = trainer.run(Step {
        image,
        labels,
        channels: &[2],
        cfg: &StepConfig::default(),
        grads: true,
    })?;
    Ok((out, report, trainer.state()?))
}
