//! Segmentation metrics of the method page, section 7, and `protokd score`.
//!
//! `score` reports two families, each labelled with its definition: protokd's metrics below
//! ([`PROTOKD_DEFINITION`]) and the BraTS challenge's legacy and lesion-wise metrics
//! ([`crate::eval::lesionwise`], [`CHALLENGE_DEFINITION`]). Both files are read in one label
//! set ([`crate::eval::labels`]) and compared region by region.
//!
//! # Regions
//! On internal labels (`0` background, `1` ET, `2` NCR/NET, `3` ED): WT = label != 0,
//! TC = label 1 or 2, ET = label 1.
//!
//! # Metrics (per region, prediction A against label map B)
//! * Dice = 2|A ∩ B| / (|A| + |B|), 1 when both are empty.
//! * HD95 as medpy's `hd95`: a mask's surface is the voxels that one binary erosion with the
//!   face-connected (6-neighbour) structuring element removes, voxels outside the image counting
//!   as background (SciPy's `binary_erosion` default `border_value=0`); every surface voxel of A
//!   gets its Euclidean distance to the nearest surface voxel of B and vice versa; HD95 is the
//!   95th percentile of the union of both sets with NumPy's default linear interpolation.
//!   `None` when either mask is empty.
//! * Sensitivity TP / (TP + FN), specificity TN / (TN + FP), 0 when the denominator is 0.
//!
//! The distances come from the exact transform of [`crate::eval::distance`], run only over the
//! bounding box of the two masks: every feature point lies in the box, and the separable
//! transform on a box is exact for feature points inside it, so this changes no value and makes
//! a typical tumour in a 240 x 240 x 155 volume cost milliseconds.

use crate::data::brats::AFFINE_TOLERANCE;
use crate::eval::distance::squared_edt;
use crate::eval::labels::{infer_label_set, LabelSet};
use crate::eval::lesionwise::{challenge_metrics, Challenge, ChallengeMetrics};
use crate::io::nifti::read_image_hashed;
use crate::volume::Image;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::path::Path;

/// A BraTS evaluation region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Whole tumour: internal labels 1, 2, 3.
    Wt,
    /// Tumour core: internal labels 1 (ET) and 2 (NCR/NET).
    Tc,
    /// Enhancing tumour: internal label 1.
    Et,
}

impl Region {
    /// The three regions in report order.
    pub const ALL: [Region; 3] = [Region::Wt, Region::Tc, Region::Et];

    /// `WT`, `TC` or `ET`.
    pub fn name(self) -> &'static str {
        match self {
            Region::Wt => "WT",
            Region::Tc => "TC",
            Region::Et => "ET",
        }
    }

    /// Whether an internal label belongs to the region.
    pub fn contains(self, internal: u8) -> bool {
        match self {
            Region::Wt => internal != 0,
            Region::Tc => internal == 1 || internal == 2,
            Region::Et => internal == 1,
        }
    }
}

/// The metrics of one region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegionMetrics {
    /// Dice (1 when both masks are empty).
    pub dice: f64,
    /// HD95 in the units of the spacing; `None` when either mask is empty.
    pub hd95: Option<f64>,
    /// TP / (TP + FN), 0 when there is no positive voxel in the label map.
    pub sensitivity: f64,
    /// TN / (TN + FP), 0 when there is no negative voxel in the label map.
    pub specificity: f64,
}

/// Dice, HD95, sensitivity and specificity of binary masks `pred` and `label` (same length,
/// `dims = [nz, ny, nx]`, x fastest) with voxel spacing `spacing = [sz, sy, sx]`.
pub(crate) fn binary_metrics(
    pred: &[bool],
    label: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> RegionMetrics {
    assert_eq!(pred.len(), label.len(), "binary_metrics: lengths differ");
    assert_eq!(
        pred.len(),
        dims.iter().product::<usize>(),
        "binary_metrics: dims"
    );
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for (&p, &l) in pred.iter().zip(label) {
        match (p, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    RegionMetrics {
        dice: dice_of_counts(tp, tp + fp, tp + fn_),
        hd95: hd95(pred, label, dims, spacing),
        sensitivity: ratio(tp, tp + fn_),
        specificity: ratio(tn, tn + fp),
    }
}

/// Dice `2 tp / (n_pred + n_label)` from the overlap `tp` and the two mask sizes (f64), 1 when
/// both masks are empty.
pub(crate) fn dice_of_counts(tp: u64, n_pred: u64, n_label: u64) -> f64 {
    let sum = n_pred + n_label;
    if sum == 0 {
        1.0
    } else {
        2.0 * tp as f64 / sum as f64
    }
}

/// Dice of one region between a prediction and a label map in internal labels (no HD95: the
/// cheap score of validation during training).
pub fn region_dice(pred: &[u8], label: &[u8], region: Region) -> f64 {
    assert_eq!(pred.len(), label.len(), "region_dice: lengths differ");
    let (mut tp, mut np, mut nl) = (0u64, 0u64, 0u64);
    for (&p, &l) in pred.iter().zip(label) {
        let (p, l) = (region.contains(p), region.contains(l));
        tp += u64::from(p && l);
        np += u64::from(p);
        nl += u64::from(l);
    }
    dice_of_counts(tp, np, nl)
}

/// The metrics of every region, prediction and label map in internal labels.
pub(crate) fn region_metrics(
    pred: &[u8],
    label: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> [(Region, RegionMetrics); 3] {
    Region::ALL.map(|r| {
        let p: Vec<bool> = pred.iter().map(|&v| r.contains(v)).collect();
        let l: Vec<bool> = label.iter().map(|&v| r.contains(v)).collect();
        (r, binary_metrics(&p, &l, dims, spacing))
    })
}

/// The surface of a mask: mask voxels with a face neighbour outside the mask or outside the
/// image (what one erosion with the 6-neighbour element and `border_value = 0` removes).
pub(crate) fn surface(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    let [nz, ny, nx] = dims;
    let at = |z: usize, y: usize, x: usize| mask[(z * ny + y) * nx + x];
    let mut out = vec![false; mask.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                if !mask[i] {
                    continue;
                }
                out[i] = z == 0
                    || y == 0
                    || x == 0
                    || z + 1 == nz
                    || y + 1 == ny
                    || x + 1 == nx
                    || !at(z - 1, y, x)
                    || !at(z + 1, y, x)
                    || !at(z, y - 1, x)
                    || !at(z, y + 1, x)
                    || !at(z, y, x - 1)
                    || !at(z, y, x + 1);
            }
        }
    }
    out
}

/// NumPy's `percentile(values, q)` with the default linear method (`values` unsorted, not
/// empty), including NumPy's two-sided interpolation formula.
pub(crate) fn percentile_linear(values: &mut [f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "percentile of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let h = (n - 1) as f64 * (q / 100.0);
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = h - lo as f64;
    let (a, b) = (values[lo], values[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// medpy's `hd95(pred, label, voxelspacing=spacing)`; `None` when either mask is empty.
pub fn hd95(pred: &[bool], label: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Option<f64> {
    if !pred.contains(&true) || !label.contains(&true) {
        return None;
    }
    let sp = surface(pred, dims);
    let sl = surface(label, dims);
    // Bounding box of both surfaces (which is that of both masks).
    let [_, ny, nx] = dims;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for (i, _) in sp
        .iter()
        .zip(&sl)
        .enumerate()
        .filter(|(_, (a, b))| **a || **b)
    {
        let c = [i / (ny * nx), (i / nx) % ny, i % nx];
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
    }
    let bd = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
    let crop = |m: &[bool]| -> Vec<bool> {
        let mut out = Vec::with_capacity(bd.iter().product());
        for z in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                let row = (z * ny + y) * nx;
                out.extend_from_slice(&m[row + lo[2]..=row + hi[2]]);
            }
        }
        out
    };
    let (sp, sl) = (crop(&sp), crop(&sl));
    let directed = |from: &[bool], to: &[bool]| -> Vec<f64> {
        let mut g: Vec<f64> = to
            .iter()
            .map(|&t| if t { 0.0 } else { f64::INFINITY })
            .collect();
        squared_edt(&mut g, bd, spacing);
        from.iter()
            .zip(&g)
            .filter(|(f, _)| **f)
            .map(|(_, d)| d.sqrt())
            .collect()
    };
    let mut all = directed(&sp, &sl);
    all.extend(directed(&sl, &sp));
    Some(percentile_linear(&mut all, 95.0))
}

/// Options of [`score_files`].
#[derive(Clone, Copy, Debug)]
pub struct ScoreOptions {
    /// HD95 (and the challenge's lesion volumes) in voxels (spacing 1) instead of millimetres.
    pub voxel_units: bool,
    /// The label set of both maps (`--labels`); `None` infers it
    /// ([`crate::eval::labels::infer_label_set`]).
    pub labels: Option<LabelSet>,
    /// The challenge whose lesion-wise parameters to use; `None`: the one a file name names
    /// (`BraTS-MET-...`), else BraTS-GLI.
    pub challenge: Option<Challenge>,
}

/// The result of `protokd score`.
#[derive(Clone, Debug)]
pub struct ScoreReport {
    /// protokd's metrics per region, WT, TC, ET (module docs).
    pub regions: [(Region, RegionMetrics); 3],
    /// The BraTS challenge metrics per region, WT, TC, ET
    /// ([`crate::eval::lesionwise`]).
    pub challenge: [(Region, ChallengeMetrics); 3],
    /// The challenge whose parameters were used, and how it was chosen.
    pub challenge_params: (Challenge, &'static str),
    /// The label set the raw labels were read in.
    pub labels: LabelSet,
    /// How it was decided.
    pub labels_source: String,
    /// Spacing used for HD95, (x, y, z).
    pub spacing_xyz: [f64; 3],
    /// HD95 in voxels.
    pub voxel_units: bool,
    /// (path, SHA-256 of the file) of prediction and label map.
    pub inputs: [(String, String); 2],
}

/// What protokd's own metrics are (the `definition` in `score`'s JSON and table).
pub const PROTOKD_DEFINITION: &str = "Dice (1 when both masks are empty); HD95 as medpy's hd95 \
    (6-neighbour surface voxels, 95th percentile of both directions together, null when a mask \
    is empty); sensitivity and specificity (0 when the denominator is 0)";

/// What the challenge metrics are (the `definition` in `score`'s JSON and table).
pub const CHALLENGE_DEFINITION: &str = "BraTS 2023+ challenge metrics as the official code \
    rachitsaluja/BraTS-2023-Metrics metrics.py computes them: legacy Dice (1 when both masks \
    are empty) and legacy HD95 (surfel-area-weighted robust Hausdorff 95, 0 when both masks are \
    empty, 374 when one is); lesion-wise Dice and HD95 over 26-connected lesions after the \
    GT dilation, false-positive and missed lesions scoring Dice 0 and HD95 374, lesions at or \
    below the volume threshold left out";

/// The challenge metrics of every region, maps in region classes (internal labels).
pub(crate) fn region_challenge_metrics(
    pred: &[u8],
    label: &[u8],
    dims: [usize; 3],
    spacing_xyz: [f64; 3],
    challenge: Challenge,
) -> [(Region, ChallengeMetrics); 3] {
    Region::ALL.map(|r| {
        let p: Vec<bool> = pred.iter().map(|&v| r.contains(v)).collect();
        let l: Vec<bool> = label.iter().map(|&v| r.contains(v)).collect();
        (r, challenge_metrics(&p, &l, dims, spacing_xyz, challenge))
    })
}

/// Raw label values of an image as u8; an error names the file for a value that is not an
/// integer in 0..=255.
fn raw_labels(img: &Image, name: &str) -> Result<Vec<u8>> {
    img.volume
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
                Ok(v as u8)
            } else {
                let [_, ny, nx] = img.volume.dims;
                let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
                Err(anyhow!(
                    "{name}: value {v} at voxel (x, y, z) = ({x}, {y}, {z}) is not a label \
                     (an integer 0..255)"
                ))
            }
        })
        .collect()
}

/// Reads a prediction and a label map (raw BraTS labels), checks that they lie on the same
/// grid and scores them.
pub fn score_files(pred: &Path, label: &Path, opts: ScoreOptions) -> Result<ScoreReport> {
    let (pn, ln) = (pred.display().to_string(), label.display().to_string());
    let (pi, ph) = read_image_hashed(pred)?;
    let (li, lh) = read_image_hashed(label)?;
    if pi.volume.dims != li.volume.dims {
        let xyz = |d: [usize; 3]| format!("{} x {} x {}", d[2], d[1], d[0]);
        bail!(
            "the prediction {pn} is {} voxels (x, y, z) but the label map {ln} is {}; both \
             must lie on the same grid",
            xyz(pi.volume.dims),
            xyz(li.volume.dims)
        );
    }
    for r in 0..4 {
        for c in 0..4 {
            let (a, b) = (pi.geometry.affine[(r, c)], li.geometry.affine[(r, c)]);
            let d = (a - b).abs();
            if d.is_nan() || d > AFFINE_TOLERANCE {
                bail!(
                    "the affines of the prediction {pn} and the label map {ln} differ at \
                     element ({r}, {c}): {a} vs {b} (tolerance {AFFINE_TOLERANCE} mm); both \
                     must lie on the same grid"
                );
            }
        }
    }
    let spacing_xyz = li.geometry.spacing;
    if !opts.voxel_units {
        for (axis, s) in ["x", "y", "z"].iter().zip(spacing_xyz) {
            if !(s.is_finite() && s > 0.0) {
                bail!("{ln}: voxel size along {axis} is {s}, not a positive number of mm");
            }
        }
    }
    let pr = raw_labels(&pi, &pn)?;
    let lr = raw_labels(&li, &ln)?;
    let (labels, labels_source) = match opts.labels {
        Some(l) => (l, "given".to_string()),
        None => {
            let mut present = [false; 256];
            for &v in pr.iter().chain(&lr) {
                present[v as usize] = true;
            }
            infer_label_set([&pn, &ln], &present)?
        }
    };
    let pint = labels
        .to_region_classes(&pr)
        .map_err(|e| anyhow!("{pn}: {e}"))?;
    let lint = labels
        .to_region_classes(&lr)
        .map_err(|e| anyhow!("{ln}: {e}"))?;
    let spacing = if opts.voxel_units {
        [1.0; 3]
    } else {
        [spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]]
    };
    let challenge_params = match opts.challenge {
        Some(c) => (c, "given"),
        None => match Challenge::from_name(&pn).or_else(|| Challenge::from_name(&ln)) {
            Some(c) => (c, "from the file names"),
            None => (Challenge::Gli, "default"),
        },
    };
    let spacing_challenge = if opts.voxel_units {
        [1.0; 3]
    } else {
        spacing_xyz
    };
    let challenge = region_challenge_metrics(
        &pint,
        &lint,
        li.volume.dims,
        spacing_challenge,
        challenge_params.0,
    );
    let regions = region_metrics(&pint, &lint, li.volume.dims, spacing);
    Ok(ScoreReport {
        regions,
        challenge,
        challenge_params,
        labels,
        labels_source,
        spacing_xyz,
        voxel_units: opts.voxel_units,
        inputs: [(pn, ph), (ln, lh)],
    })
}

impl ChallengeMetrics {
    /// `{"legacy_dice", "legacy_hd95", "lesionwise_dice", "lesionwise_hd95", "lesions_tp",
    /// "lesions_fp", "lesions_fn", "sensitivity", "specificity"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "legacy_dice": self.legacy_dice,
            "legacy_hd95": self.legacy_hd95,
            "lesionwise_dice": self.lesion_dice,
            "lesionwise_hd95": self.lesion_hd95,
            "lesions_tp": self.lesions_tp,
            "lesions_fp": self.lesions_fp,
            "lesions_fn": self.lesions_fn,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
        })
    }
}

impl ScoreReport {
    /// `{"WT": {"dice", "hd95", "sensitivity", "specificity"}, "TC": .., "ET": .., "definition",
    /// "brats_challenge": {"WT": ChallengeMetrics::to_json, "TC": .., "ET": .., "definition",
    /// "challenge", "gt_dilation", "lesion_volume_threshold", "chosen"}, "meta": ..}`.
    pub fn to_json(&self) -> Value {
        let mut obj = serde_json::Map::new();
        for (r, m) in &self.regions {
            obj.insert(
                r.name().to_string(),
                json!({
                    "dice": m.dice,
                    "hd95": m.hd95,
                    "sensitivity": m.sensitivity,
                    "specificity": m.specificity,
                }),
            );
        }
        obj.insert("definition".to_string(), json!(PROTOKD_DEFINITION));
        let mut brats = serde_json::Map::new();
        for (r, m) in &self.challenge {
            brats.insert(r.name().to_string(), m.to_json());
        }
        let (c, how) = self.challenge_params;
        brats.insert("definition".to_string(), json!(CHALLENGE_DEFINITION));
        brats.insert("challenge".to_string(), json!(c.name()));
        brats.insert("challenge_source".to_string(), json!(how));
        brats.insert("gt_dilation".to_string(), json!(c.dilation()));
        brats.insert(
            "lesion_volume_threshold".to_string(),
            json!(c.volume_threshold()),
        );
        obj.insert("brats_challenge".to_string(), Value::Object(brats));
        let input = |(p, h): &(String, String)| json!({"path": p, "sha256": h});
        obj.insert(
            "meta".to_string(),
            json!({
                "tool": format!("protokd {}", env!("CARGO_PKG_VERSION")),
                "pred": input(&self.inputs[0]),
                "label": input(&self.inputs[1]),
                "release": self.labels.short_name(),
                "labels": self.labels.to_string(),
                "release_source": self.labels_source,
                "hd95_units": if self.voxel_units { "voxels" } else { "mm" },
                "lesion_volume_units": if self.voxel_units { "voxels" } else { "mm3" },
                "spacing_mm_xyz": self.spacing_xyz,
            }),
        );
        Value::Object(obj)
    }

    /// Two small tables, one line per region: protokd's metrics, then the challenge's.
    pub fn table(&self) -> String {
        let unit = if self.voxel_units { "vox" } else { "mm" };
        let mut s = format!("protokd metrics: {PROTOKD_DEFINITION}\n");
        s += &format!("region  dice      hd95({unit})  sensitivity  specificity\n");
        for (r, m) in &self.regions {
            let hd = m
                .hd95
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
            s.push_str(&format!(
                "{:<6}  {:<8.6}  {:<9}  {:<11.6}  {:.6}\n",
                r.name(),
                m.dice,
                hd,
                m.sensitivity,
                m.specificity
            ));
        }
        let (c, how) = self.challenge_params;
        s += &format!("\nBraTS challenge metrics, {c} ({how}): {CHALLENGE_DEFINITION}\n");
        s += &format!(
            "region  legacy dice  legacy hd95({unit})  lesion-wise dice  lesion-wise hd95({unit})  \
             lesions tp/fp/fn\n"
        );
        for (r, m) in &self.challenge {
            s.push_str(&format!(
                "{:<6}  {:<11.6}  {:<15.4}  {:<16.6}  {:<20.4}  {}/{}/{}\n",
                r.name(),
                m.legacy_dice,
                m.legacy_hd95,
                m.lesion_dice,
                m.lesion_hd95,
                m.lesions_tp,
                m.lesions_fp,
                m.lesions_fn
            ));
        }
        s.push_str(&format!("labels: {} ({})", self.labels, self.labels_source));
        s
    }
}

// Verifies (every test in this file): R-MTH-11
#[cfg(test)]
mod tests {
    use super::*;

    fn brute_hd95(a: &[bool], b: &[bool], dims: [usize; 3], s: [f64; 3]) -> f64 {
        let sa = surface(a, dims);
        let sb = surface(b, dims);
        let pts = |m: &[bool]| -> Vec<[f64; 3]> {
            m.iter()
                .enumerate()
                .filter(|(_, &v)| v)
                .map(|(i, _)| {
                    let c = [
                        i / (dims[1] * dims[2]),
                        (i / dims[2]) % dims[1],
                        i % dims[2],
                    ];
                    [c[0] as f64 * s[0], c[1] as f64 * s[1], c[2] as f64 * s[2]]
                })
                .collect()
        };
        let (pa, pb) = (pts(&sa), pts(&sb));
        let dir = |x: &[[f64; 3]], y: &[[f64; 3]]| -> Vec<f64> {
            x.iter()
                .map(|p| {
                    y.iter()
                        .map(|q| {
                            ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2))
                                .sqrt()
                        })
                        .fold(f64::INFINITY, f64::min)
                })
                .collect()
        };
        let mut all = dir(&pa, &pb);
        all.extend(dir(&pb, &pa));
        percentile_linear(&mut all, 95.0)
    }

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4, 10], 95) = 8.8; np.percentile([5], 95) = 5.
        assert!((percentile_linear(&mut [10.0, 2.0, 3.0, 1.0, 4.0], 95.0) - 8.8).abs() < 1e-12);
        assert_eq!(percentile_linear(&mut [5.0], 95.0), 5.0);
    }

    #[test]
    fn surface_counts_the_image_border_as_background() {
        // A full 3x3x3 mask: everything but the centre is surface.
        let m = vec![true; 27];
        let s = surface(&m, [3, 3, 3]);
        assert_eq!(s.iter().filter(|&&v| v).count(), 26);
        assert!(!s[13]);
    }

    #[test]
    fn hand_computed_tiny_cases() {
        // 1 x 1 x 5 line: pred voxel 0, label voxel 3, spacing 2 along x.
        let p = [true, false, false, false, false];
        let l = [false, false, false, true, false];
        let m = binary_metrics(&p, &l, [1, 1, 5], [1.0, 1.0, 2.0]);
        assert_eq!(m.dice, 0.0);
        assert_eq!(m.hd95, Some(6.0));
        assert_eq!(m.sensitivity, 0.0);
        assert_eq!(m.specificity, 3.0 / 4.0);
        // Overlap: pred {0, 1}, label {1, 2}: dice 0.5, distances {1, 0, 0, 1} -> p95 = 1.
        let p = [true, true, false, false, false];
        let l = [false, true, true, false, false];
        let m = binary_metrics(&p, &l, [1, 1, 5], [1.0; 3]);
        assert_eq!(m.dice, 0.5);
        assert_eq!(m.hd95, Some(1.0));
        assert_eq!(m.sensitivity, 0.5);
        assert_eq!(m.specificity, 2.0 / 3.0);
        // Diagonal with anisotropic spacing: (0,0,0) vs (1,1,1), spacing (3, 1.5, 1).
        let mut p = vec![false; 8];
        let mut l = vec![false; 8];
        p[0] = true;
        l[7] = true;
        let m = binary_metrics(&p, &l, [2, 2, 2], [3.0, 1.5, 1.0]);
        assert_eq!(m.hd95, Some((9.0f64 + 2.25 + 1.0).sqrt()));
    }

    #[test]
    fn empty_masks() {
        let e = [false; 4];
        let f = [true, false, false, false];
        let both = binary_metrics(&e, &e, [1, 2, 2], [1.0; 3]);
        assert_eq!(both.dice, 1.0);
        assert_eq!(both.hd95, None);
        assert_eq!(both.sensitivity, 0.0);
        assert_eq!(both.specificity, 1.0);
        let one = binary_metrics(&e, &f, [1, 2, 2], [1.0; 3]);
        assert_eq!(one.dice, 0.0);
        assert_eq!(one.hd95, None);
        let all = [true; 4];
        let m = binary_metrics(&all, &all, [1, 2, 2], [1.0; 3]);
        assert_eq!(m.specificity, 0.0);
        assert_eq!(m.hd95, Some(0.0));
    }

    #[test]
    fn edt_matches_brute_force_on_random_blobs() {
        use rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let dims = [7, 9, 11];
        for spacing in [[1.0, 1.0, 1.0], [3.0, 1.5, 1.0], [0.7, 2.3, 1.1]] {
            for density in [2u32, 10, 40] {
                let mut mk = || -> Vec<bool> {
                    (0..dims.iter().product::<usize>())
                        .map(|_| rng.next_u32() % 100 < density)
                        .collect()
                };
                let (a, b) = (mk(), mk());
                if !a.contains(&true) || !b.contains(&true) {
                    continue;
                }
                let fast = hd95(&a, &b, dims, spacing).unwrap();
                let slow = brute_hd95(&a, &b, dims, spacing);
                assert!(
                    (fast - slow).abs() <= 1e-12 * slow.max(1.0),
                    "{fast} vs {slow}"
                );
            }
        }
    }

    #[test]
    fn regions_from_internal_labels() {
        // Internal labels: 0 bg, 1 ET, 2 NCR, 3 ED.
        let pred = [0u8, 1, 2, 3];
        let label = [0u8, 1, 1, 1];
        let r = region_metrics(&pred, &label, [1, 1, 4], [1.0; 3]);
        assert_eq!(r[0].1.dice, 1.0); // WT
        assert_eq!(r[1].1.dice, 2.0 * 2.0 / 5.0); // TC: pred {1,2}, label {1,2,3}
        assert_eq!(r[2].1.dice, 2.0 * 1.0 / 4.0); // ET: pred {1}, label {1,2,3}
    }
}
