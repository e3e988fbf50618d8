//! The four contrasts: tissue intensities with partial-volume mixing, the tumour's
//! appearance, T1ce vessel enhancement, a smooth multiplicative bias field and Rician noise.
//!
//! # Order of operations per voxel (f32 unless said; every product and sum rounded, no fused
//! multiply-add)
//! Outside the brain mask every image is exactly 0 and no noise is drawn. Inside, for
//! modality `m` (channel order T1, T2, T1ce, FLAIR), with fractions `w, g, c` (WM, GM, CSF)
//! and brain fraction `b`:
//! 1. healthy `h = w * T[WM][m] + g * T[GM][m] + c * (T[CSF][m] + v)`, summed left to right;
//!    `v` is the vessel enhancement (T1ce only, else 0):
//!    `v = 0.9 * max(0, n_v(p) - 0.55) / 0.45`, `n_v` a lattice noise every 4 mm.
//! 2. tumour: NCR or ET: `clean = b * T[region][m] * (1 + 0.12 t)`; ED with strength `alpha`:
//!    `clean = (1 - alpha) * h + alpha * (b * T[ED][m] * (1 + 0.06 t))`; else `clean = h`
//!    (`t` the tumour's texture field).
//! 3. `s = clean * bias_m(p) * (1000 * gain_m)`, `bias_m(p)` computed in f64 and rounded to
//!    f32: `1 + sum_k c'_k P_k(x̂)` over `P = (x, y, z, x², y², z², xy, yz, zx)` of the
//!    position scaled to `[-1, 1]` over the field of view, `c'_k = B c_k / sum_k |c_k|`, so the
//!    field stays within `[1 - B, 1 + B]`.
//! 4. Rician noise: `(n1, n2)` = the next normal pair of the (modality, slice) stream,
//!    `sigma = sigma_rel * 1000 * gain_m`,
//!    `value = sqrt((s + sigma * n1)^2 + (sigma * n2)^2)`.
//! 5. stored value `clamp(round(value), 1, 32767)` (int16; inside the brain never 0).
//!
//! Acquisition parameters (acquisition stream, per modality in channel order): `gain =
//! U(0.8, 1.2)`, `B = U(0.05, 0.20)`, nine `c_k = U(-1, 1)`, `sigma_rel = U(0.015, 0.04)`.

use super::anatomy::{Anatomy, FOV_MM};
use super::rng::Stream;
use super::tumour::{Region, Tumour};

/// Relative intensities (times 1000 * gain in the files), rows WM, GM, CSF, NCR/NET, ET, ED
/// (the order of `Row`), columns in channel order T1, T2, T1ce, FLAIR.
pub(crate) const INTENSITY: [[f32; 4]; 6] = [
    // T1    T2    T1ce  FLAIR
    [1.00, 0.42, 1.00, 0.50], // WM
    [0.74, 0.60, 0.76, 0.70], // GM
    [0.30, 1.00, 0.30, 0.12], // CSF
    [0.50, 0.92, 0.45, 0.90], // NCR/NET
    [0.52, 0.78, 1.55, 0.95], // ET
    [0.86, 0.98, 0.88, 1.10], // ED
];

/// The rows of [`INTENSITY`], in order.
#[derive(Clone, Copy)]
enum Row {
    Wm,
    Gm,
    Csf,
    Ncr,
    Et,
    Ed,
}

/// The intensity of tissue `row` in channel `m` ([`INTENSITY`]).
fn intensity(row: Row, m: usize) -> f32 {
    INTENSITY[row as usize][m]
}

/// The T1ce channel.
const T1CE: usize = 2;

/// Base scale of the stored intensities.
pub(crate) const SCALE: f32 = 1000.0;

/// One modality's acquisition: gain, bias field and noise level.
#[derive(Clone, Debug)]
pub(crate) struct Acquisition {
    /// Global intensity gain.
    pub gain: f64,
    /// `c'_k = B c_k / sum |c_k|`, the bias coefficients scaled by the bias-field strength `B`.
    pub bias: [f64; 9],
    /// Noise standard deviation relative to the scale.
    pub sigma_rel: f64,
}

impl Acquisition {
    /// Draws the four modalities' acquisitions (channel order).
    pub fn draw(rng: &mut Stream) -> [Acquisition; 4] {
        std::array::from_fn(|_| {
            let gain = rng.uniform(0.8, 1.2);
            let bias_strength = rng.uniform(0.05, 0.20);
            let mut c = [0.0; 9];
            for v in c.iter_mut() {
                *v = rng.uniform(-1.0, 1.0);
            }
            let sum = c.iter().fold(0.0, |s: f64, v| s + v.abs());
            let bias = c.map(|v| bias_strength * v / sum);
            let sigma_rel = rng.uniform(0.015, 0.04);
            Acquisition {
                gain,
                bias,
                sigma_rel,
            }
        })
    }

    /// The bias field at `p` (mm).
    #[inline]
    fn bias_at(&self, p: [f64; 3]) -> f32 {
        let x = p[0] / (FOV_MM[0] * 0.5) - 1.0;
        let y = p[1] / (FOV_MM[1] * 0.5) - 1.0;
        let z = p[2] / (FOV_MM[2] * 0.5) - 1.0;
        let terms = [x, y, z, x * x, y * y, z * z, x * y, y * z, z * x];
        let mut b = 1.0;
        for (c, t) in self.bias.iter().zip(terms) {
            b += c * t;
        }
        b as f32
    }
}

/// Raw label codes of one release: (NCR, ED, ET).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LabelCodes {
    /// NCR/NET.
    pub ncr: u8,
    /// Edema.
    pub ed: u8,
    /// Enhancing tumour.
    pub et: u8,
}

/// Everything one slice's synthesis reads.
pub(crate) struct Scene<'a> {
    /// Tissue fractions.
    pub anatomy: &'a Anatomy,
    /// The tumour.
    pub tumour: &'a Tumour,
    /// T1ce vessel lattice.
    pub vessels: &'a super::tumour::Lattice,
    /// Acquisitions in channel order.
    pub acquisitions: &'a [Acquisition; 4],
    /// Voxel spacing (mm).
    pub spacing: [f64; 3],
    /// Cohort seed and case index (for the noise streams).
    pub seed: u64,
    /// Case index.
    pub case: u64,
    /// Label codes.
    pub labels: LabelCodes,
}

/// One synthesised slice: labels and the four images, `ny * nx` each.
pub(crate) struct Slice {
    /// Raw labels.
    pub label: Vec<u8>,
    /// Images in channel order.
    pub images: [Vec<f32>; 4],
}

impl Scene<'_> {
    /// Synthesises slice `z`.
    pub fn slice(&self, z: usize) -> Slice {
        let [_, ny, nx] = self.anatomy.dims;
        let plane = ny * nx;
        let mut label = vec![0u8; plane];
        let mut images: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; plane]);
        let mut noise: [Stream; 4] =
            std::array::from_fn(|m| Stream::noise(self.seed, self.case, m, z));
        let a = self.anatomy;
        let scale: [f32; 4] = std::array::from_fn(|m| SCALE * self.acquisitions[m].gain as f32);
        let sigma: [f32; 4] = std::array::from_fn(|m| {
            (self.acquisitions[m].sigma_rel * SCALE as f64 * self.acquisitions[m].gain) as f32
        });
        let pz = (z as f64 + 0.5) * self.spacing[2];
        for y in 0..ny {
            let py = (y as f64 + 0.5) * self.spacing[1];
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                if !a.in_mask(i) {
                    continue;
                }
                let p = [(x as f64 + 0.5) * self.spacing[0], py, pz];
                let (w, g, c, b) = (a.wm[i], a.gm[i], a.csf(i), a.brain[i]);
                let vessel = {
                    let n = self.vessels.sample(p);
                    0.9 * (n - 0.55).max(0.0) / 0.45
                };
                let region = self.tumour.region(p, i, a);
                let t = if region.is_some() {
                    self.tumour.texture(p)
                } else {
                    0.0
                };
                let o = y * nx + x;
                label[o] = match region {
                    None => 0,
                    Some(Region::Ncr) => self.labels.ncr,
                    Some(Region::Et) => self.labels.et,
                    Some(Region::Ed(_)) => self.labels.ed,
                };
                for m in 0..4 {
                    let v = if m == T1CE { vessel } else { 0.0 };
                    let h = w * intensity(Row::Wm, m)
                        + g * intensity(Row::Gm, m)
                        + c * (intensity(Row::Csf, m) + v);
                    let clean = match region {
                        None => h,
                        Some(Region::Ncr) => b * intensity(Row::Ncr, m) * (1.0 + 0.12 * t),
                        Some(Region::Et) => b * intensity(Row::Et, m) * (1.0 + 0.12 * t),
                        Some(Region::Ed(alpha)) => {
                            (1.0 - alpha) * h
                                + alpha * (b * intensity(Row::Ed, m) * (1.0 + 0.06 * t))
                        }
                    };
                    let s = clean * self.acquisitions[m].bias_at(p) * scale[m];
                    let (n1, n2) = noise[m].normal_pair();
                    let re = s + sigma[m] * n1;
                    let im = sigma[m] * n2;
                    let value = (re * re + im * im).sqrt();
                    images[m][o] = value.round().clamp(1.0, 32767.0);
                }
            }
        }
        Slice { label, images }
    }
}
