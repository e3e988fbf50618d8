//! The simulated glioma: shape, sub-regions and placement.
//!
//! # Shape
//! All in physical mm on the phantom's grid (voxel centre `p = ((i + 0.5) sx, ...)`), in f64.
//! For a point `p` at distance `r = |p - c|` from the centre `c`, direction `d = (p - c) / r`
//! (`d = 0` at the centre):
//! * core radius `rc(d) = R * clamp(1 + sum_k a_k m_k(d), 0.5, 1.8)` with 15 fixed
//!   polynomials `m_k` of degree 1 to 3 in `d` (see [`basis`]; each within `[-1, 1]` on the unit
//!   sphere, summed in index order) and random coefficients `a_k`;
//! * `rho_c = r / rc(d) * (1 + 0.18 n_core(p))`, `n_core` a smooth noise field (a lattice of
//!   values in `[-1, 1)` every 7 mm, trilinear, see [`Lattice`]);
//! * the NCR/ET boundary `f = f_ncr * (1 + 0.25 n_ncr(p))` (lattice every 5 mm), so the
//!   enhancing rim's thickness varies;
//! * edema radius `re(d) = R * e * clamp(1 + sum_k b_k m_k(d), 0.5, 1.8)`,
//!   `rho_e = r / re(d) * (1 + 0.25 n_ed(p))` (lattice every 8 mm), and the edema's reach
//!   `q = 0.7 + 0.4 w` with `w` the voxel's white-matter fraction (edema follows white matter);
//! * sub-regions, nested: with `f_ncr < 1`, NCR/NET where `rho_c < f`, ET where
//!   `f <= rho_c < 1`; with `f_ncr = 1` (non-enhancing), NCR/NET where `rho_c < 1`; ED where
//!   `rho_c >= 1`, `rho_e < q` and CSF does not dominate the voxel, with strength
//!   `alpha = 0.6 + 0.4 min(1, (q - rho_e) / (0.5 q))`. Only voxels inside the brain mask are
//!   labelled.
//! * a texture field `t(p)` (lattice every 4 mm) makes the tumour's intensities heterogeneous.
//!
//! # Parameters (tumour-shape stream, drawn in this order)
//! `u = U(0, 1)` picks the kind: `u < 0.08` non-enhancing (no ET, `f_ncr = 1`), `u < 0.18`
//! thin enhancing rim (`f_ncr = U(0.86, 0.93)`), else typical (`f_ncr = U(0.45, 0.75)`); one
//! `U(0, 1)` is drawn for `f_ncr` in every case (`f_ncr = lo + (hi - lo) * that`); then
//! `R = U(12, 24)` mm, `e = U(1.3, 2.0)`, the 15 `a_k = U(-1, 1) * A_k` and the 15
//! `b_k = U(-1, 1) * 1.6 * A_k` with `A_k` = 0.10 (degree 1), 0.15 (degree 2), 0.10 (degree 3).
//! The noise lattices (tumour-noise stream) are drawn core, NCR boundary, edema, texture, each
//! covering the cube of half-side `bound` around the centre.
//!
//! # Placement (tumour-placement stream)
//! Rejection sampling of the centre among voxel centres: a voxel drawn uniformly in the brain
//! mask's bounding box (`below` per axis, x then y then z) is accepted when it is in the mask,
//! its white-matter fraction is at least 0.6, it lies in the upper 60 % of the brain's height
//! (supratentorial, as most gliomas), and the core with a margin fits in the mask: for each of
//! the 98 directions `(a, b, c) / |(a, b, c)|` with integers `a, b, c` in `-2..=2`, max-norm 2
//! (z-major order), the points at `0.35, 0.7` and `1.0` times `rc(d) / 0.82` (the core's
//! largest extent with its noise) from the centre
//! lie in the grid and in the mask (nearest voxel). After every 400 rejections `R` shrinks by
//! a factor 0.85 (at most 6 times).

use super::anatomy::{Anatomy, CSF};
use super::rng::Stream;
use anyhow::{bail, Result};

/// What kind of tumour a case has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TumourKind {
    /// NCR/NET core, enhancing rim, edema: all three labels.
    Typical,
    /// A thin enhancing rim (a few voxels of ET, or none on a coarse grid).
    ThinEnhancing,
    /// No enhancement at all (no ET label), as in some lower-grade gliomas.
    NonEnhancing,
}

impl TumourKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TumourKind::Typical => "typical",
            TumourKind::ThinEnhancing => "thin-enhancing",
            TumourKind::NonEnhancing => "non-enhancing",
        }
    }
}

/// Tumour sub-region of a voxel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Region {
    /// Necrotic / non-enhancing core (raw label 1).
    Ncr,
    /// Enhancing tumour (raw label 4, or 3 in BraTS 2023).
    Et,
    /// Peritumoral edema (raw label 2), with its strength `alpha` in `[0.6, 1]`: 1 near the
    /// core, falling to 0.6 at the edema's outer boundary.
    Ed(f32),
}

/// Amplitude of the core boundary's noise.
const CORE_NOISE: f64 = 0.18;
/// Amplitude of the NCR/ET boundary's noise (relative to `f_ncr`).
const NCR_NOISE: f64 = 0.25;
/// Amplitude of the edema boundary's noise.
const EDEMA_NOISE: f64 = 0.25;
/// Edema reach in pure grey matter and in pure white matter (`rho_e` threshold).
const EDEMA_REACH_MIN: f64 = 0.7;
const EDEMA_REACH_MAX: f64 = 1.1;

/// Number of shape polynomials.
pub(crate) const BASIS: usize = 15;

/// The 15 shape polynomials at direction `d` (a unit vector or 0).
#[inline]
pub(crate) fn basis(d: [f64; 3]) -> [f64; BASIS] {
    let [x, y, z] = d;
    let (xx, yy, zz) = (x * x, y * y, z * z);
    [
        x,
        y,
        z,
        2.0 * x * y,
        2.0 * y * z,
        2.0 * z * x,
        xx - yy,
        (3.0 * zz - 1.0) * 0.5,
        x * (xx - 3.0 * yy),
        y * (3.0 * xx - yy),
        5.0 * x * y * z,
        2.5 * z * (xx - yy),
        x * (5.0 * zz - 1.0) * 0.5,
        y * (5.0 * zz - 1.0) * 0.5,
        z * (5.0 * zz - 3.0) * 0.5,
    ]
}

/// Amplitude of shape coefficient `k` (by degree).
fn amplitude(k: usize) -> f64 {
    match k {
        0..=2 => 0.10,
        3..=7 => 0.15,
        _ => 0.10,
    }
}

/// A smooth random field: values in `[-1, 1)` on a regular lattice, trilinear in between,
/// clamped to the lattice at its edges.
#[derive(Clone, Debug)]
pub(crate) struct Lattice {
    origin: [f64; 3],
    step: f64,
    n: [usize; 3],
    values: Vec<f32>,
}

impl Lattice {
    /// A lattice with corner `origin`, spacing `step` mm, covering at least `extent` mm per
    /// axis; values `signed_f32` drawn z-major, then y, then x.
    pub fn draw(rng: &mut Stream, origin: [f64; 3], extent: [f64; 3], step: f64) -> Lattice {
        let n = extent.map(|e| ((e / step).ceil() as usize).max(1) + 2);
        let values = (0..n[0] * n[1] * n[2]).map(|_| rng.signed_f32()).collect();
        Lattice {
            origin,
            step,
            n,
            values,
        }
    }

    /// The field at `p` (mm): trilinear in f32 along x, then y, then z.
    #[inline]
    pub fn sample(&self, p: [f64; 3]) -> f32 {
        let mut i0 = [0usize; 3];
        let mut f = [0f32; 3];
        for a in 0..3 {
            let t = ((p[a] - self.origin[a]) / self.step).clamp(0.0, (self.n[a] - 1) as f64);
            let fl = t.floor().min((self.n[a] - 2) as f64);
            i0[a] = fl as usize;
            f[a] = (t - fl) as f32;
        }
        let [nx, ny, _] = self.n;
        let v = |x: usize, y: usize, z: usize| self.values[(z * ny + y) * nx + x];
        let lerp = |a: f32, b: f32, f: f32| a * (1.0 - f) + b * f;
        let (x, y, z) = (i0[0], i0[1], i0[2]);
        let c00 = lerp(v(x, y, z), v(x + 1, y, z), f[0]);
        let c10 = lerp(v(x, y + 1, z), v(x + 1, y + 1, z), f[0]);
        let c01 = lerp(v(x, y, z + 1), v(x + 1, y, z + 1), f[0]);
        let c11 = lerp(v(x, y + 1, z + 1), v(x + 1, y + 1, z + 1), f[0]);
        lerp(lerp(c00, c10, f[1]), lerp(c01, c11, f[1]), f[2])
    }
}

/// The tumour's random shape parameters (before placement).
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    /// Kind.
    pub kind: TumourKind,
    /// `f_ncr`: the core's NCR/ET boundary, as a fraction of the core radius.
    pub ncr_fraction: f64,
    /// `R` (mm).
    pub radius: f64,
    /// `e`: edema radius over core radius.
    pub edema_factor: f64,
    /// Core shape coefficients `a_k`.
    pub core: [f64; BASIS],
    /// Edema shape coefficients `b_k`.
    pub edema: [f64; BASIS],
}

impl Shape {
    /// Draws the shape (see the module documentation for the order).
    pub fn draw(rng: &mut Stream) -> Shape {
        let u = rng.unit_f64();
        let kind = if u < 0.08 {
            TumourKind::NonEnhancing
        } else if u < 0.18 {
            TumourKind::ThinEnhancing
        } else {
            TumourKind::Typical
        };
        let v = rng.unit_f64();
        let ncr_fraction = match kind {
            TumourKind::NonEnhancing => 1.0,
            TumourKind::ThinEnhancing => 0.86 + (0.93 - 0.86) * v,
            TumourKind::Typical => 0.45 + (0.75 - 0.45) * v,
        };
        let radius = rng.uniform(12.0, 24.0);
        let edema_factor = rng.uniform(1.3, 2.0);
        let mut core = [0.0; BASIS];
        for (k, c) in core.iter_mut().enumerate() {
            *c = rng.uniform(-1.0, 1.0) * amplitude(k);
        }
        let mut edema = [0.0; BASIS];
        for (k, c) in edema.iter_mut().enumerate() {
            *c = rng.uniform(-1.0, 1.0) * 1.6 * amplitude(k);
        }
        Shape {
            kind,
            ncr_fraction,
            radius,
            edema_factor,
            core,
            edema,
        }
    }

    /// `clamp(1 + sum_k coef_k m_k, 0.5, 1.8)`, summed in index order.
    #[inline]
    fn factor(coef: &[f64; BASIS], m: &[f64; BASIS]) -> f64 {
        let mut s = 1.0;
        for k in 0..BASIS {
            s += coef[k] * m[k];
        }
        s.clamp(0.5, 1.8)
    }

    /// Core radius along direction `d`.
    pub(crate) fn core_radius(&self, d: [f64; 3]) -> f64 {
        self.radius * Self::factor(&self.core, &basis(d))
    }
}

/// A placed tumour with its noise fields.
#[derive(Clone, Debug)]
pub(crate) struct Tumour {
    /// Shape parameters (with the radius after any shrinking during placement).
    pub shape: Shape,
    /// Centre (mm, on the phantom grid's axes).
    pub centre: [f64; 3],
    /// No label lies farther than this from the centre (mm).
    pub bound: f64,
    core_noise: Lattice,
    ncr_noise: Lattice,
    edema_noise: Lattice,
    texture: Lattice,
}

impl Tumour {
    /// Places `shape` in `anatomy` (tumour-placement stream) and draws its noise lattices
    /// (tumour-noise stream: core boundary, NCR boundary, edema boundary, texture, in that
    /// order).
    pub fn place(
        mut shape: Shape,
        anatomy: &Anatomy,
        spacing: [f64; 3],
        place_rng: &mut Stream,
        noise_rng: &mut Stream,
    ) -> Result<Tumour> {
        let [nz, ny, nx] = anatomy.dims;
        // Bounding box of the brain mask (x, y, z).
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    if anatomy.in_mask((z * ny + y) * nx + x) {
                        for (a, v) in [x, y, z].into_iter().enumerate() {
                            lo[a] = lo[a].min(v);
                            hi[a] = hi[a].max(v);
                        }
                    }
                }
            }
        }
        if lo[0] == usize::MAX {
            bail!("the resampled brain mask is empty");
        }
        let z_min = lo[2] + ((hi[2] - lo[2]) as f64 * 0.4) as usize;
        let mut dirs = Vec::with_capacity(98);
        for c in -2i32..=2 {
            for b in -2i32..=2 {
                for a in -2i32..=2 {
                    if a.abs().max(b.abs()).max(c.abs()) == 2 {
                        let (a, b, c) = (a as f64, b as f64, c as f64);
                        let n = (a * a + b * b + c * c).sqrt();
                        dirs.push([a / n, b / n, c / n]);
                    }
                }
            }
        }
        let voxel_of = |p: [f64; 3]| -> Option<usize> {
            let mut v = [0usize; 3];
            for a in 0..3 {
                let t = (p[a] / spacing[a]).floor();
                let n = [nx, ny, nz][a];
                if t < 0.0 || t >= n as f64 {
                    return None;
                }
                v[a] = t as usize;
            }
            Some((v[2] * ny + v[1]) * nx + v[0])
        };
        let mut found = None;
        'rounds: for round in 0..=6 {
            if round > 0 {
                shape.radius *= 0.85;
            }
            for _ in 0..400 {
                let x = lo[0] + place_rng.below((hi[0] - lo[0] + 1) as u32) as usize;
                let y = lo[1] + place_rng.below((hi[1] - lo[1] + 1) as u32) as usize;
                let z = lo[2] + place_rng.below((hi[2] - lo[2] + 1) as u32) as usize;
                let idx = (z * ny + y) * nx + x;
                if z < z_min || !anatomy.in_mask(idx) || anatomy.wm[idx] < 0.6 {
                    continue;
                }
                let c = [
                    (x as f64 + 0.5) * spacing[0],
                    (y as f64 + 0.5) * spacing[1],
                    (z as f64 + 0.5) * spacing[2],
                ];
                let fits = dirs.iter().all(|&d| {
                    let rc = shape.core_radius(d) / (1.0 - CORE_NOISE);
                    [0.35, 0.7, 1.0].iter().all(|&t| {
                        let p = [
                            c[0] + d[0] * (t * rc),
                            c[1] + d[1] * (t * rc),
                            c[2] + d[2] * (t * rc),
                        ];
                        voxel_of(p).is_some_and(|i| anatomy.in_mask(i))
                    })
                });
                if fits {
                    found = Some(c);
                    break 'rounds;
                }
            }
        }
        let Some(centre) = found else {
            bail!("cannot place a tumour inside this brain (no white-matter site fits)");
        };
        let sum_abs = |coef: &[f64; BASIS]| coef.iter().fold(0.0, |s, c| s + c.abs());
        let core_max = shape.radius * (1.0 + sum_abs(&shape.core)).min(1.8) / (1.0 - CORE_NOISE);
        let edema_max = shape.radius
            * shape.edema_factor
            * (1.0 + sum_abs(&shape.edema)).min(1.8)
            * EDEMA_REACH_MAX
            / (1.0 - EDEMA_NOISE);
        let bound = core_max.max(edema_max);
        let origin = centre.map(|c| c - bound);
        let extent = [2.0 * bound; 3];
        let core_noise = Lattice::draw(noise_rng, origin, extent, 7.0);
        let ncr_noise = Lattice::draw(noise_rng, origin, extent, 5.0);
        let edema_noise = Lattice::draw(noise_rng, origin, extent, 8.0);
        let texture = Lattice::draw(noise_rng, origin, extent, 4.0);
        Ok(Tumour {
            shape,
            centre,
            bound,
            core_noise,
            ncr_noise,
            edema_noise,
            texture,
        })
    }

    /// The sub-region at point `p` (mm) of voxel `idx`, if any; `None` outside the tumour.
    #[inline]
    pub fn region(&self, p: [f64; 3], idx: usize, anatomy: &Anatomy) -> Option<Region> {
        let d = [
            p[0] - self.centre[0],
            p[1] - self.centre[1],
            p[2] - self.centre[2],
        ];
        if d[0].abs() > self.bound || d[1].abs() > self.bound || d[2].abs() > self.bound {
            return None;
        }
        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        if r > self.bound || !anatomy.in_mask(idx) {
            return None;
        }
        let dir = if r > 0.0 {
            [d[0] / r, d[1] / r, d[2] / r]
        } else {
            [0.0; 3]
        };
        let m = basis(dir);
        let s = &self.shape;
        let rc = s.radius * Shape::factor(&s.core, &m);
        let rho_c = r / rc * (1.0 + CORE_NOISE * self.core_noise.sample(p) as f64);
        if s.ncr_fraction >= 1.0 {
            if rho_c < 1.0 {
                return Some(Region::Ncr);
            }
        } else {
            let f_ncr = s.ncr_fraction * (1.0 + NCR_NOISE * self.ncr_noise.sample(p) as f64);
            if rho_c < f_ncr {
                return Some(Region::Ncr);
            }
            if rho_c < 1.0 {
                return Some(Region::Et);
            }
        }
        if rho_c < 1.0 {
            return None;
        }
        let re = s.radius * s.edema_factor * Shape::factor(&s.edema, &m);
        let rho_e = r / re * (1.0 + EDEMA_NOISE * self.edema_noise.sample(p) as f64);
        let reach = EDEMA_REACH_MIN + (EDEMA_REACH_MAX - EDEMA_REACH_MIN) * anatomy.wm[idx] as f64;
        if rho_e < reach && anatomy.tissue(idx) != CSF {
            let alpha = 0.6 + 0.4 * ((reach - rho_e) / (0.5 * reach)).min(1.0);
            return Some(Region::Ed(alpha as f32));
        }
        None
    }

    /// The texture field at `p`, in `[-1, 1]`.
    #[inline]
    pub(crate) fn texture(&self, p: [f64; 3]) -> f32 {
        self.texture.sample(p)
    }
}
