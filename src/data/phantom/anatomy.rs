//! Anatomy: the MNI152 templates, resampled into the phantom's grid with a per-case rigid
//! jitter and scaling.
//!
//! # Templates
//! Three co-registered uint8 volumes: the T1 template (its non-zero voxels are the brain
//! mask: the template is skull-stripped), the grey-matter and the white-matter probability
//! maps (0..=255). They are kept as one interleaved array of `[gm, wm, brain, 0]` bytes per
//! voxel, with `gm` and `wm` set to 0 outside the brain mask and `brain = 255` inside, so
//! that after interpolation `gm + wm <= brain` and the CSF fraction is `brain - gm - wm`.
//!
//! # Mapping (target voxel to template voxel)
//! The phantom's field of view is always `240 x 240 x 155` mm (the BraTS grid at 1 mm); a grid
//! of `X x Y x Z` voxels has spacing `(240 / X, 240 / Y, 155 / Z)` mm. A point of the target
//! grid at continuous voxel position `(i, j, k)` (voxel centres at integers + 0.5 measured from
//! the grid's corner, so `p = ((i + 0.5) * sx, ...)` for voxel `i`) maps, all in f64 with
//! correctly rounded operations in this order:
//! 1. `q = p - fov / 2 - t` (mm; `t` the case's translation);
//! 2. `q_ras = (-q0, -q1, q2)` (the BraTS affine's axes point to -x, -y, +z of RAS world);
//! 3. `r = R q_ras` (row by row, each row `R[r][0] q0 + R[r][1] q1 + R[r][2] q2` left to right);
//! 4. template world `m = c + r / s` (`c` the centre of the template brain's bounding box in
//!    world mm, `s` the case's scale);
//! 5. template voxel `u = (m - offset) / diag` (the template affine must be diagonal).
//!
//! Trilinear interpolation in f32: `f = (u - floor(u)) as f32`, corners outside the template
//! count as 0, interpolation along x first (`a * (1 - f) + b * f`), then y, then z. With a
//! coarse grid (spacing above 1 mm), each voxel is the mean of `n = ceil(spacing)` sub-samples
//! per axis, at sub-positions `(a + 0.5) / n` of the voxel, summed z-major then y then x in
//! f32 and divided once by `n_x n_y n_z * 255`.

use super::rng::Stream;
use crate::volume::Image;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::Path;

/// File names of the three templates, in the order T1, GM, WM.
pub const TEMPLATE_FILES: [&str; 3] = [
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
];

/// Field of view of every phantom, mm along (x, y, z): the BraTS grid at 1 mm.
pub(crate) const FOV_MM: [f64; 3] = [240.0, 240.0, 155.0];

/// Height (mm, along z) the template brain is scaled to before the per-case jitter; BraTS
/// brains fill about 140 of their 155 slices.
pub(crate) const BRAIN_HEIGHT_MM: f64 = 140.0;
/// Largest in-plane extent (mm) of the scaled brain (the BraTS crop keeps 192 of 240).
pub(crate) const BRAIN_WIDTH_MM: f64 = 185.0;

/// The MNI152 templates, ready for resampling.
#[derive(Clone, Debug)]
pub struct Templates {
    /// `[nx, ny, nz]`.
    n: [usize; 3],
    /// `[gm, wm, brain, 0]` per voxel, x fastest.
    data: Vec<[u8; 4]>,
    /// World = `diag * index + offset`, per axis.
    diag: [f64; 3],
    offset: [f64; 3],
    /// World position of the centre of the brain's bounding box.
    centre: [f64; 3],
    /// Brain extent (mm) along the world axes.
    extent: [f64; 3],
}

impl Templates {
    /// Reads the three templates ([`TEMPLATE_FILES`]) from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "templates folder {}: not found (it should hold {}, {} and {})",
                dir.display(),
                TEMPLATE_FILES[0],
                TEMPLATE_FILES[1],
                TEMPLATE_FILES[2]
            );
        }
        let paths: Vec<_> = TEMPLATE_FILES.iter().map(|f| dir.join(f)).collect();
        for p in &paths {
            if !p.is_file() {
                bail!(
                    "templates folder {}: missing {}",
                    dir.display(),
                    p.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        let images: Vec<Result<Image>> = paths
            .par_iter()
            .map(|p| crate::io::nifti::read_image(p))
            .collect();
        let mut it = images.into_iter();
        let (t1, gm, wm) = (
            it.next().expect("three")?,
            it.next().expect("three")?,
            it.next().expect("three")?,
        );
        Self::from_images(
            &t1,
            &gm,
            &wm,
            &paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        )
        .with_context(|| format!("templates folder {}", dir.display()))
    }

    /// Templates from images in memory (T1, GM, WM; `names` name them in errors). All three
    /// must have the same shape and affine, a diagonal affine, and integer values in 0..=255.
    pub(crate) fn from_images(
        t1: &Image,
        gm: &Image,
        wm: &Image,
        names: &[String],
    ) -> Result<Self> {
        let imgs = [t1, gm, wm];
        let name = |i: usize| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| ["T1", "GM", "WM"][i].to_string())
        };
        for (i, img) in imgs.iter().enumerate().skip(1) {
            if img.volume.dims != t1.volume.dims {
                bail!(
                    "{}: shape {:?} (z, y, x) differs from {}'s {:?}",
                    name(i),
                    img.volume.dims,
                    name(0),
                    t1.volume.dims
                );
            }
            if img.geometry.affine != t1.geometry.affine {
                bail!("{}: affine differs from {}'s", name(i), name(0));
            }
        }
        let a = &t1.geometry.affine;
        for r in 0..3 {
            for c in 0..3 {
                if r != c && a[(r, c)] != 0.0 {
                    bail!(
                        "{}: the affine must be diagonal (axis-aligned), got {a}",
                        name(0)
                    );
                }
            }
            if a[(r, r)] == 0.0 || !a[(r, r)].is_finite() || !a[(r, 3)].is_finite() {
                bail!("{}: degenerate affine {a}", name(0));
            }
        }
        let [nz, ny, nx] = t1.volume.dims;
        if nx < 2 || ny < 2 || nz < 2 {
            bail!("{}: too small ({nx} x {ny} x {nz})", name(0));
        }
        let byte = |i: usize, v: f32, idx: usize| -> Result<u8> {
            if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
                let (z, y, x) = (idx / (ny * nx), (idx / nx) % ny, idx % nx);
                bail!(
                    "{}: value {v} at voxel (z, y, x) = ({z}, {y}, {x}) is not an integer in 0..=255",
                    name(i)
                );
            }
            Ok(v as u8)
        };
        let mut data = Vec::with_capacity(nx * ny * nz);
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for idx in 0..nx * ny * nz {
            let t = byte(0, t1.volume.data[idx], idx)?;
            let g = byte(1, gm.volume.data[idx], idx)?;
            let w = byte(2, wm.volume.data[idx], idx)?;
            if t > 0 {
                let (z, y, x) = (idx / (ny * nx), (idx / nx) % ny, idx % nx);
                for (ax, v) in [x, y, z].into_iter().enumerate() {
                    lo[ax] = lo[ax].min(v);
                    hi[ax] = hi[ax].max(v);
                }
                data.push([g, w, 255, 0]);
            } else {
                data.push([0, 0, 0, 0]);
            }
        }
        if lo[0] == usize::MAX {
            bail!("{}: no voxel above 0, so no brain mask", name(0));
        }
        let diag = [a[(0, 0)], a[(1, 1)], a[(2, 2)]];
        let offset = [a[(0, 3)], a[(1, 3)], a[(2, 3)]];
        let mut centre = [0.0; 3];
        let mut extent = [0.0; 3];
        for ax in 0..3 {
            centre[ax] = diag[ax] * ((lo[ax] + hi[ax]) as f64 * 0.5) + offset[ax];
            extent[ax] = diag[ax].abs() * ((hi[ax] - lo[ax] + 1) as f64);
        }
        Ok(Templates {
            n: [nx, ny, nz],
            data,
            diag,
            offset,
            centre,
            extent,
        })
    }

    /// The scale that fits the template brain into the field of view: its height becomes
    /// [`BRAIN_HEIGHT_MM`] unless its in-plane extent would then pass [`BRAIN_WIDTH_MM`].
    pub(crate) fn base_scale(&self) -> f64 {
        let s = BRAIN_HEIGHT_MM / self.extent[2];
        s.min(BRAIN_WIDTH_MM / self.extent[0])
            .min(BRAIN_WIDTH_MM / self.extent[1])
    }

    /// `[gm, wm, brain]` (0..=255 scale) at template voxel position `u` (x, y, z), trilinear.
    #[inline]
    fn sample(&self, u: [f64; 3]) -> [f32; 3] {
        let [nx, ny, nz] = self.n;
        let fl = [u[0].floor(), u[1].floor(), u[2].floor()];
        // Entirely outside (every corner out of range): zero.
        if fl[0] < -1.0
            || fl[1] < -1.0
            || fl[2] < -1.0
            || fl[0] >= nx as f64
            || fl[1] >= ny as f64
            || fl[2] >= nz as f64
        {
            return [0.0; 3];
        }
        let i0 = [fl[0] as isize, fl[1] as isize, fl[2] as isize];
        let f = [
            (u[0] - fl[0]) as f32,
            (u[1] - fl[1]) as f32,
            (u[2] - fl[2]) as f32,
        ];
        let g = [1.0 - f[0], 1.0 - f[1], 1.0 - f[2]];
        let get = |x: isize, y: isize, z: isize| -> [f32; 3] {
            if x < 0 || y < 0 || z < 0 || x >= nx as isize || y >= ny as isize || z >= nz as isize {
                return [0.0; 3];
            }
            let v = self.data[(z as usize * ny + y as usize) * nx + x as usize];
            [v[0] as f32, v[1] as f32, v[2] as f32]
        };
        let lerp = |a: [f32; 3], b: [f32; 3], g: f32, f: f32| -> [f32; 3] {
            [
                a[0] * g + b[0] * f,
                a[1] * g + b[1] * f,
                a[2] * g + b[2] * f,
            ]
        };
        let (x, y, z) = (i0[0], i0[1], i0[2]);
        let c00 = lerp(get(x, y, z), get(x + 1, y, z), g[0], f[0]);
        let c10 = lerp(get(x, y + 1, z), get(x + 1, y + 1, z), g[0], f[0]);
        let c01 = lerp(get(x, y, z + 1), get(x + 1, y, z + 1), g[0], f[0]);
        let c11 = lerp(get(x, y + 1, z + 1), get(x + 1, y + 1, z + 1), g[0], f[0]);
        let c0 = lerp(c00, c10, g[1], f[1]);
        let c1 = lerp(c01, c11, g[1], f[1]);
        lerp(c0, c1, g[2], f[2])
    }
}

/// A case's rigid jitter and scaling.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pose {
    /// Scale of the template brain (target mm per template mm).
    pub scale: f64,
    /// Rotation (row-major), from RAS target offsets to RAS template offsets.
    pub rotation: [[f64; 3]; 3],
    /// Translation of the brain in the target grid, mm along (x, y, z) of the voxel axes.
    pub translation: [f64; 3],
}

impl Pose {
    /// Draws a pose from the anatomy stream, in this order: scale factor `U(0.95, 1.03)` times
    /// the templates' base scale; quaternion vector part `(a, b, c)`, each `U(-0.03, 0.03)`
    /// (rotation `(1, a, b, c) / |.|`, up to about 3.4 degrees about each axis); translation
    /// `U(-3, 3)` mm per axis (x, y, z).
    pub fn draw(rng: &mut Stream, base_scale: f64) -> Pose {
        let scale = base_scale * rng.uniform(0.95, 1.03);
        let a = rng.uniform(-0.03, 0.03);
        let b = rng.uniform(-0.03, 0.03);
        let c = rng.uniform(-0.03, 0.03);
        let norm = (1.0 + a * a + b * b + c * c).sqrt();
        let (w, x, y, z) = (1.0 / norm, a / norm, b / norm, c / norm);
        let rotation = [
            [
                1.0 - 2.0 * (y * y + z * z),
                2.0 * (x * y - w * z),
                2.0 * (x * z + w * y),
            ],
            [
                2.0 * (x * y + w * z),
                1.0 - 2.0 * (x * x + z * z),
                2.0 * (y * z - w * x),
            ],
            [
                2.0 * (x * z - w * y),
                2.0 * (y * z + w * x),
                1.0 - 2.0 * (x * x + y * y),
            ],
        ];
        let translation = [
            rng.uniform(-3.0, 3.0),
            rng.uniform(-3.0, 3.0),
            rng.uniform(-3.0, 3.0),
        ];
        Pose {
            scale,
            rotation,
            translation,
        }
    }
}

/// Tissue fractions on the phantom's grid, `[nz, ny, nx]`, x fastest, each in `[0, 1]`.
#[derive(Clone, Debug)]
pub(crate) struct Anatomy {
    /// `[nz, ny, nx]`.
    pub dims: [usize; 3],
    /// Grey-matter fraction.
    pub gm: Vec<f32>,
    /// White-matter fraction.
    pub wm: Vec<f32>,
    /// Brain fraction (`gm + wm + csf`).
    pub brain: Vec<f32>,
}

/// Tissue classes of [`Anatomy::tissue`].
pub const BACKGROUND: u8 = 0;
/// Cerebrospinal fluid dominates.
pub const CSF: u8 = 1;
/// Grey matter dominates.
pub const GM: u8 = 2;
/// White matter dominates.
pub const WM: u8 = 3;
/// Inside the brain, no tissue makes up [`PURE`] of the voxel ([`Anatomy::pure_tissue`]).
pub(crate) const MIXED: u8 = 4;
/// Share of the brain fraction that makes a voxel pure in [`Anatomy::pure_tissue`].
pub(crate) const PURE: f32 = 0.6;

impl Anatomy {
    /// CSF fraction: `max(0, brain - gm - wm)` (in that order).
    #[inline]
    pub fn csf(&self, i: usize) -> f32 {
        (self.brain[i] - self.gm[i] - self.wm[i]).max(0.0)
    }

    /// Inside the brain mask: brain fraction at least 0.5.
    #[inline]
    pub(crate) fn in_mask(&self, i: usize) -> bool {
        self.brain[i] >= 0.5
    }

    /// Dominant tissue inside the mask ([`WM`] on ties with GM or CSF, then [`GM`]), else
    /// [`BACKGROUND`].
    #[inline]
    pub fn tissue(&self, i: usize) -> u8 {
        if !self.in_mask(i) {
            return BACKGROUND;
        }
        let (g, w, c) = (self.gm[i], self.wm[i], self.csf(i));
        if w >= g && w >= c {
            WM
        } else if g >= c {
            GM
        } else {
            CSF
        }
    }

    /// [`Anatomy::tissue`] where that tissue makes up at least [`PURE`] of the brain fraction,
    /// else [`MIXED`] (inside the mask) or [`BACKGROUND`].
    #[inline]
    pub(crate) fn pure_tissue(&self, i: usize) -> u8 {
        let t = self.tissue(i);
        let f = match t {
            BACKGROUND => return BACKGROUND,
            WM => self.wm[i],
            GM => self.gm[i],
            _ => self.csf(i),
        };
        if f >= PURE * self.brain[i] {
            t
        } else {
            MIXED
        }
    }
}

/// Resamples the templates into a grid of `size = [X, Y, Z]` voxels covering [`FOV_MM`].
pub(crate) fn resample(templates: &Templates, size: [usize; 3], pose: &Pose) -> Anatomy {
    let [nx, ny, nz] = size;
    let spacing = super::spacing(size);
    let sub: [usize; 3] = [0, 1, 2].map(|a| (spacing[a] - 1e-9).ceil().max(1.0) as usize);
    let count = (sub[0] * sub[1] * sub[2]) as f32 * 255.0;
    let half = [FOV_MM[0] * 0.5, FOV_MM[1] * 0.5, FOV_MM[2] * 0.5];
    let rot = pose.rotation;
    let map = |p: [f64; 3]| -> [f64; 3] {
        let q = [
            p[0] - half[0] - pose.translation[0],
            p[1] - half[1] - pose.translation[1],
            p[2] - half[2] - pose.translation[2],
        ];
        let qr = [-q[0], -q[1], q[2]];
        let mut u = [0.0; 3];
        for r in 0..3 {
            let rr = rot[r][0] * qr[0] + rot[r][1] * qr[1] + rot[r][2] * qr[2];
            let m = templates.centre[r] + rr / pose.scale;
            u[r] = (m - templates.offset[r]) / templates.diag[r];
        }
        u
    };
    let plane = nx * ny;
    let mut gm = vec![0f32; plane * nz];
    let mut wm = vec![0f32; plane * nz];
    let mut brain = vec![0f32; plane * nz];
    gm.par_chunks_mut(plane)
        .zip(wm.par_chunks_mut(plane))
        .zip(brain.par_chunks_mut(plane))
        .enumerate()
        .for_each(|(k, ((gs, ws), bs))| {
            for j in 0..ny {
                for i in 0..nx {
                    let mut acc = [0f32; 3];
                    for c in 0..sub[2] {
                        let pz = (k as f64 + (c as f64 + 0.5) / sub[2] as f64) * spacing[2];
                        for b in 0..sub[1] {
                            let py = (j as f64 + (b as f64 + 0.5) / sub[1] as f64) * spacing[1];
                            for a in 0..sub[0] {
                                let px = (i as f64 + (a as f64 + 0.5) / sub[0] as f64) * spacing[0];
                                let v = templates.sample(map([px, py, pz]));
                                acc[0] += v[0];
                                acc[1] += v[1];
                                acc[2] += v[2];
                            }
                        }
                    }
                    let idx = j * nx + i;
                    gs[idx] = (acc[0] / count).min(1.0);
                    ws[idx] = (acc[1] / count).min(1.0);
                    bs[idx] = (acc[2] / count).min(1.0);
                }
            }
        });
    Anatomy {
        dims: [nz, ny, nx],
        gm,
        wm,
        brain,
    }
}
