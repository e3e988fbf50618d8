//! The BraTS challenge metrics of one region: legacy Dice and HD95 with the challenge's
//! conventions, and the lesion-wise Dice and HD95 by which BraTS ranks since 2023, as the
//! official code defines them: `get_LesionWiseScores` and `get_LesionWiseResults` of
//! rachitsaluja/BraTS-2023-Metrics, `metrics.py` (commit 43c9052), re-implemented here.
//!
//! # Legacy metrics (whole region, prediction P against label map G)
//! * Dice `2|P ∩ G| / (|P| + |G|)`, 1 when both are empty.
//! * HD95: the robust Hausdorff distance of [`robust_hausdorff`] (surfels weighted by area), 0
//!   when both are empty and [`HD95_UNDEFINED`] (374) when exactly one is.
//! * Sensitivity `TP / (TP + FN)` and specificity `TN / (TN + FP)` (voxels; 0 when the
//!   denominator is 0, as the official `+ sys.float_info.min` gives), sensitivity 1 when both
//!   masks are empty (GaNDLF's convention, copied by the official code).
//!
//! # Lesion-wise metrics, in the official order
//! 1. Components of P and of G, 26-connected ([`components`]).
//! 2. G dilated `d` times with the 18-neighbour element (SciPy's `generate_binary_structure(3,
//!    2)`, outside the image counting as 0), and the 26-connected components of the dilation.
//!    A GT lesion is the set of G voxels in one component of the dilation: G components closer
//!    than the dilation reach merge into one lesion.
//! 3. For each GT lesion L: its own dilation by `d`; the prediction components that meet it are
//!    its matches (true positives); `P_L` is their union. Lesion Dice `2|P_L ∩ L| / (|P_L| +
//!    |L|)`, lesion HD95 the robust Hausdorff distance between L and `P_L` (374 when no
//!    component matched, which also makes its Dice 0). Lesion volume `|L| sx sy sz` (mm³).
//! 4. False positives: the prediction components that match no GT lesion.
//! 5. Lesions with volume <= the challenge's threshold are left out (neither counted nor
//!    penalised; the prediction components they matched are not false positives). With `n`
//!    lesions kept and `f` false positives: lesion-wise Dice `Σ Dice_L / (n + f)`, lesion-wise
//!    HD95 `(Σ HD95_L + 374 f) / (n + f)` (NumPy sums over the lesions in order); 1 and 0
//!    when `n + f = 0`.
//!
//! The counts reported are the official `Num_TP` (kept lesions with a match), `Num_FP` (`f`)
//! and `Num_FN` (kept lesions without one).
//!
//! All of it runs in the bounding box of `P ∪ G` grown by `d` voxels (clamped to the image):
//! dilations cannot leave it, components and distances inside it are those of the whole image.

use crate::eval::surface_distance::{numpy_sum, robust_hausdorff};
use anyhow::{bail, Result};
use std::fmt;

/// The value the BraTS challenge gives an undefined HD95 (one mask empty) and every
/// false-positive or missed lesion.
pub const HD95_UNDEFINED: f64 = 374.0;

/// A BraTS challenge, for its lesion-wise parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// Adult glioma (BraTS-GLI), the default: ProtoKD is a glioma model.
    #[default]
    Gli,
    /// Sub-Saharan Africa glioma (BraTS-SSA).
    Ssa,
    /// Meningioma (BraTS-MEN).
    Men,
    /// Paediatric tumours (BraTS-PED).
    Ped,
    /// Brain metastases (BraTS-MET).
    Met,
}

impl Challenge {
    /// Every challenge, in the official code's order.
    pub const ALL: [Challenge; 5] = [
        Challenge::Gli,
        Challenge::Ssa,
        Challenge::Men,
        Challenge::Ped,
        Challenge::Met,
    ];

    /// `BraTS-GLI` ...: the official `challenge_name`, and the case-id prefix of its files.
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Gli => "BraTS-GLI",
            Challenge::Ssa => "BraTS-SSA",
            Challenge::Men => "BraTS-MEN",
            Challenge::Ped => "BraTS-PED",
            Challenge::Met => "BraTS-MET",
        }
    }

    /// GT dilation factor (iterations of the 18-neighbour dilation).
    pub fn dilation(self) -> usize {
        match self {
            Challenge::Men | Challenge::Met => 1,
            Challenge::Gli | Challenge::Ssa | Challenge::Ped => 3,
        }
    }

    /// Lesions of at most this volume (mm³) are left out.
    pub fn volume_threshold(self) -> f64 {
        match self {
            Challenge::Met => 2.0,
            Challenge::Gli | Challenge::Ssa | Challenge::Men | Challenge::Ped => 50.0,
        }
    }

    /// Parses `--challenge`: `gli`, `ssa`, `men`, `ped`, `met` (or the official names).
    pub fn parse(s: &str) -> Result<Challenge> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_prefix("brats-").unwrap_or(&t);
        Ok(match t {
            "gli" => Challenge::Gli,
            "ssa" => Challenge::Ssa,
            "men" => Challenge::Men,
            "ped" => Challenge::Ped,
            "met" => Challenge::Met,
            _ => bail!("unknown BraTS challenge `{s}`; expected gli, ssa, men, ped or met"),
        })
    }

    /// The challenge whose case-id prefix (`BraTS-GLI-` ...) a file name or case id holds.
    pub fn from_name(name: &str) -> Option<Challenge> {
        Challenge::ALL
            .into_iter()
            .find(|c| name.contains(&format!("{}-", c.name())))
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (GT dilation {}, lesions > {} mm³)",
            self.name(),
            self.dilation(),
            self.volume_threshold()
        )
    }
}

/// The BraTS challenge metrics of one region (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChallengeMetrics {
    /// Legacy Dice (1 when both masks are empty).
    pub legacy_dice: f64,
    /// Legacy HD95 (0 when both masks are empty, 374 when one is).
    pub legacy_hd95: f64,
    /// Lesion-wise Dice.
    pub lesion_dice: f64,
    /// Lesion-wise HD95.
    pub lesion_hd95: f64,
    /// Kept GT lesions with a matching prediction component (`Num_TP`).
    pub lesions_tp: usize,
    /// Prediction components matching no GT lesion (`Num_FP`).
    pub lesions_fp: usize,
    /// Kept GT lesions without a match (`Num_FN`).
    pub lesions_fn: usize,
    /// Voxel sensitivity (1 when both masks are empty).
    pub sensitivity: f64,
    /// Voxel specificity.
    pub specificity: f64,
}

/// A box of the image: its origin `lo = [z, y, x]` and extent `dims = [nz, ny, nx]`.
#[derive(Clone, Copy)]
struct Box3 {
    lo: [usize; 3],
    dims: [usize; 3],
}

impl Box3 {
    /// The part of a whole-image array (`image` dims) inside the box, x fastest.
    fn crop<T: Copy>(&self, mask: &[T], image: [usize; 3]) -> Vec<T> {
        let mut out = Vec::with_capacity(self.dims.iter().product());
        for z in self.lo[0]..self.lo[0] + self.dims[0] {
            for y in self.lo[1]..self.lo[1] + self.dims[1] {
                let row = (z * image[1] + y) * image[2] + self.lo[2];
                out.extend_from_slice(&mask[row..row + self.dims[2]]);
            }
        }
        out
    }
}

/// The bounding box of the true voxels of two masks grown by `margin` on every side, clamped to
/// the image; `None` when both are empty.
fn grown_box(a: &[bool], b: &[bool], dims: [usize; 3], margin: usize) -> Option<Box3> {
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (i, _) in a.iter().zip(b).enumerate().filter(|(_, (x, y))| **x || **y) {
        let c = [
            i / (dims[1] * dims[2]),
            (i / dims[2]) % dims[1],
            i % dims[2],
        ];
        for k in 0..3 {
            lo[k] = lo[k].min(c[k]);
            hi[k] = hi[k].max(c[k]);
        }
    }
    if lo[0] == usize::MAX {
        return None;
    }
    let lo = lo.map(|v| v.saturating_sub(margin));
    let hi = [0, 1, 2].map(|k| (hi[k] + margin).min(dims[k] - 1));
    Some(Box3 {
        lo,
        dims: [0, 1, 2].map(|k| hi[k] - lo[k] + 1),
    })
}

/// The offsets `(dz, dy, dx)` of the neighbours of a voxel within `max_sum` of it in
/// city-block distance (each offset in -1..=1): 6 for 1, 18 for 2, 26 for 3.
fn neighbours(max_sum: i64) -> Vec<[i64; 3]> {
    let mut out = Vec::new();
    for dz in -1..=1i64 {
        for dy in -1..=1i64 {
            for dx in -1..=1i64 {
                let s = dz.abs() + dy.abs() + dx.abs();
                if s > 0 && s <= max_sum {
                    out.push([dz, dy, dx]);
                }
            }
        }
    }
    out
}

/// The neighbour of `(z, y, x)` at offset `o` inside `dims`, as a flat index.
fn step(dims: [usize; 3], z: usize, y: usize, x: usize, o: [i64; 3]) -> Option<usize> {
    let c = [z as i64 + o[0], y as i64 + o[1], x as i64 + o[2]];
    if (0..3).all(|k| c[k] >= 0 && (c[k] as usize) < dims[k]) {
        Some((c[0] as usize * dims[1] + c[1] as usize) * dims[2] + c[2] as usize)
    } else {
        None
    }
}

/// `iterations` binary dilations with the 18-neighbour element, outside the box counting as 0
/// (SciPy's `binary_dilation(mask, generate_binary_structure(3, 2), iterations)`).
fn dilate(mask: &[bool], dims: [usize; 3], iterations: usize) -> Vec<bool> {
    let offsets = neighbours(2);
    let mut cur = mask.to_vec();
    for _ in 0..iterations {
        let mut next = cur.clone();
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let i = (z * dims[1] + y) * dims[2] + x;
                    if cur[i] {
                        for &o in &offsets {
                            if let Some(j) = step(dims, z, y, x, o) {
                                next[j] = true;
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// 26-connected components of a mask: labels 1..=n in the order of each component's first
/// voxel (x fastest), 0 outside the mask; and n. Union-find over the 13 neighbours that
/// precede a voxel in that order.
pub(crate) fn components(mask: &[bool], dims: [usize; 3]) -> (Vec<u32>, u32) {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let before: Vec<[i64; 3]> = neighbours(3)
        .into_iter()
        .filter(|o| (o[0], o[1], o[2]) < (0, 0, 0))
        .collect();
    let mut parent: Vec<usize> = (0..mask.len()).collect();
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let i = (z * dims[1] + y) * dims[2] + x;
                if !mask[i] {
                    continue;
                }
                for &o in &before {
                    if let Some(j) = step(dims, z, y, x, o).filter(|&j| mask[j]) {
                        let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                        if ri != rj {
                            // The earlier voxel stays the root, so labels follow first voxels.
                            parent[ri.max(rj)] = ri.min(rj);
                        }
                    }
                }
            }
        }
    }
    let mut label = vec![0u32; mask.len()];
    let mut n = 0;
    for i in 0..mask.len() {
        if mask[i] {
            let r = root(&mut parent, i);
            if r == i {
                n += 1;
                label[i] = n;
            } else {
                label[i] = label[r];
            }
        }
    }
    (label, n)
}

/// Dice of two voxel counts and their overlap: `2 overlap / (a + b)`.
fn dice(overlap: usize, a: usize, b: usize) -> f64 {
    2.0 * overlap as f64 / (a + b) as f64
}

/// The BraTS challenge metrics of one region: prediction `pred` against label map `gt` (same
/// length, `dims = [nz, ny, nx]`, x fastest), spacing `spacing_xyz = [sx, sy, sz]` mm (module
/// docs).
pub fn challenge_metrics(
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    spacing_xyz: [f64; 3],
    challenge: Challenge,
) -> ChallengeMetrics {
    assert_eq!(pred.len(), gt.len(), "challenge_metrics: lengths differ");
    assert_eq!(pred.len(), dims.iter().product::<usize>(), "dims");
    let (mut tp, mut n_pred, mut n_gt) = (0usize, 0usize, 0usize);
    for (&p, &g) in pred.iter().zip(gt) {
        tp += usize::from(p && g);
        n_pred += usize::from(p);
        n_gt += usize::from(g);
    }
    let tn = pred.len() - (n_pred + n_gt - tp);
    let (fp, fn_) = (n_pred - tp, n_gt - tp);
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let both_empty = n_pred == 0 && n_gt == 0;
    let d = challenge.dilation();
    let Some(bx) = grown_box(pred, gt, dims, d) else {
        return ChallengeMetrics {
            legacy_dice: 1.0,
            legacy_hd95: 0.0,
            lesion_dice: 1.0,
            lesion_hd95: 0.0,
            lesions_tp: 0,
            lesions_fp: 0,
            lesions_fn: 0,
            sensitivity: 1.0,
            specificity: ratio(tn, tn + fp),
        };
    };
    let (p, g) = (bx.crop(pred, dims), bx.crop(gt, dims));
    let hd = |a: &[bool], b: &[bool]| {
        let h = robust_hausdorff(a, b, bx.dims, spacing_xyz, 95.0).unwrap_or(0.0);
        if h.is_infinite() {
            HD95_UNDEFINED
        } else {
            h
        }
    };
    // Steps 1 and 2.
    let (pred_cc, n_pred_cc) = components(&p, bx.dims);
    let mut pred_size = vec![0usize; n_pred_cc as usize + 1];
    for &l in &pred_cc {
        pred_size[l as usize] += 1;
    }
    let (dilated_cc, n_lesions) = components(&dilate(&g, bx.dims, d), bx.dims);
    let lesion_of: Vec<u32> = g
        .iter()
        .zip(&dilated_cc)
        .map(|(&v, &l)| if v { l } else { 0 })
        .collect();
    // Step 3.
    let voxel_volume = |n: usize| ((n as f64 * spacing_xyz[0]) * spacing_xyz[1]) * spacing_xyz[2];
    let mut matched = vec![false; n_pred_cc as usize + 1];
    let threshold = challenge.volume_threshold();
    let (mut dices, mut hds) = (Vec::new(), Vec::new());
    let (mut lesions_tp, mut lesions_fn) = (0, 0);
    for lesion in 1..=n_lesions {
        let l: Vec<bool> = lesion_of.iter().map(|&v| v == lesion).collect();
        // The lesion's dilation stays within its bounding box grown by `d`.
        let near = grown_box(&l, &l, bx.dims, d).expect("a lesion has a voxel");
        let reach = dilate(&near.crop(&l, bx.dims), near.dims, d);
        let mut hits = vec![false; n_pred_cc as usize + 1];
        for (&r, &c) in reach.iter().zip(&near.crop(&pred_cc, bx.dims)) {
            hits[c as usize] |= r && c != 0;
        }
        for (m, &h) in matched.iter_mut().zip(&hits) {
            *m |= h;
        }
        let size_l = l.iter().filter(|&&v| v).count();
        if voxel_volume(size_l) <= threshold {
            continue;
        }
        let p_l: Vec<bool> = pred_cc.iter().map(|&c| hits[c as usize]).collect();
        let size_p: usize = (1..pred_size.len())
            .filter(|&c| hits[c])
            .map(|c| pred_size[c])
            .sum();
        let overlap = l.iter().zip(&p_l).filter(|(a, b)| **a && **b).count();
        dices.push(dice(overlap, size_p, size_l));
        hds.push(hd(&l, &p_l));
        if hits.contains(&true) {
            lesions_tp += 1;
        } else {
            lesions_fn += 1;
        }
    }
    // Steps 4 and 5.
    let lesions_fp = matched.iter().skip(1).filter(|&&m| !m).count();
    let denominator = dices.len() + lesions_fp;
    let (lesion_dice, lesion_hd95) = if denominator == 0 {
        (1.0, 0.0)
    } else {
        (
            numpy_sum(&dices) / denominator as f64,
            (numpy_sum(&hds) + lesions_fp as f64 * HD95_UNDEFINED) / denominator as f64,
        )
    };
    ChallengeMetrics {
        legacy_dice: dice(tp, n_pred, n_gt),
        legacy_hd95: hd(&g, &p),
        lesion_dice,
        lesion_hd95,
        lesions_tp,
        lesions_fp,
        lesions_fn,
        sensitivity: if both_empty { 1.0 } else { ratio(tp, tp + fn_) },
        specificity: ratio(tn, tn + fp),
    }
}

// Verifies (every test in this file): R-MTH-11
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_26_connected() {
        // Two voxels touching at a corner are one component.
        let mut m = vec![false; 27];
        m[0] = true; // (0, 0, 0)
        m[13] = true; // (1, 1, 1)
        let (l, n) = components(&m, [3, 3, 3]);
        assert_eq!((n, l[0], l[13]), (1, 1, 1));
        // A gap of one voxel separates two.
        let (l, n) = components(&[true, false, true], [1, 1, 3]);
        assert_eq!((n, l), (2, vec![1, 0, 2]));
        // A U shape whose arms join late still gets one label.
        let dims = [1, 3, 3];
        let m = [true, false, true, true, false, true, true, true, true];
        let (l, n) = components(&m, dims);
        assert_eq!(n, 1);
        assert!(l.iter().zip(&m).all(|(&x, &v)| (x == 1) == v));
    }

    #[test]
    fn dilation_uses_the_18_neighbourhood() {
        let dims = [3, 3, 3];
        let mut m = vec![false; 27];
        m[13] = true;
        let d = dilate(&m, dims, 1);
        assert_eq!(d.iter().filter(|&&v| v).count(), 19);
        assert!(!d[0] && d[1] && d[4]);
        assert_eq!(dilate(&m, dims, 2).iter().filter(|&&v| v).count(), 27);
    }

    #[test]
    fn challenge_names_and_parameters() {
        assert_eq!(Challenge::parse("BraTS-MET").unwrap(), Challenge::Met);
        assert_eq!(Challenge::Met.dilation(), 1);
        assert_eq!(Challenge::Met.volume_threshold(), 2.0);
        assert_eq!(
            Challenge::from_name("BraTS-PED-00012-000-seg.nii.gz"),
            Some(Challenge::Ped)
        );
        assert_eq!(Challenge::from_name("Brats18_2013_2_1_seg.nii.gz"), None);
        assert!(Challenge::parse("xyz").is_err());
    }
}
