//! Preprocessing of a case, done once (method page, section 2): per modality a z-score over the
//! voxels with value > 0 applied to every voxel, labels converted to internal (done by
//! [`crate::data::brats::load_case`]), then the crop `z 5..145, y 24..216, x 24..216` to
//! 140 x 192 x 192.
//!
//! ## Z-score arithmetic (deterministic, independent of the thread count)
//! For one modality with values `v` in array order (z, y, x), x fastest:
//! 1. **Pass 1.** For each row `(z, y)` (the `nx` values of one x line), sequentially in x
//!    order from `0.0_f64`: `s_row += v as f64` and `n_row += 1` over the values `v > 0`.
//!    Rows may be computed in parallel; the row results are then summed sequentially in row
//!    order (`z` outer, `y` inner) from `0.0_f64`: `S`, and `N = sum n_row` (exact).
//!    `mean = S / N` (f64). `N = 0` is an error (no voxel above 0).
//! 2. **Pass 2.** Likewise per row, sequentially in x order: `q_row += d * d` with
//!    `d = v as f64 - mean` over `v > 0`; rows summed sequentially in row order: `Q`.
//!    `std = sqrt(Q / N)` (population standard deviation, f64). `std = 0` (every voxel above 0
//!    has the same value) is an error.
//! 3. **Apply** to every voxel (background included): `((v as f64 - mean) / std) as f32`
//!    (f64 subtraction and division, one rounding to f32 at the end). [`preprocess`] applies it
//!    to the crop box only (the same values, less work); the statistics always come from the
//!    whole volume, as the method page orders the steps (normalise, then crop).
//!
//! Every value must be finite (a NaN or infinity is an error naming the voxel).
//!
//! ## Output for training
//! [`PreparedCase`] holds the cropped, normalised `[4, D, H, W]` image and `[D, H, W]` internal
//! labels; [`PreparedCase::image_tensor`] and [`PreparedCase::label_map`] give the engine's
//! `[1, 4, D, H, W]` [`Tensor`] and `[1, D, H, W]` [`LabelMap`]. Training draws random
//! patches from it with [`crate::data::augment`].

use crate::data::brats::{voxel_of, CaseFormat, LoadedCase};
use crate::volume::Volume;
use anyhow::{bail, Context, Result};
use protokd_reference::{LabelMap, Tensor};
use rayon::prelude::*;

/// A box of voxels `start[a] .. end[a]` (half-open) along each axis `a` of `(z, y, x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First voxel, `(z, y, x)`.
    pub start: [usize; 3],
    /// One past the last voxel, `(z, y, x)`.
    pub end: [usize; 3],
}

/// The method page's crop: `z 5..145, y 24..216, x 24..216` -> 140 x 192 x 192.
pub const BRATS_CROP: CropBox = CropBox {
    start: [5, 24, 24],
    end: [145, 216, 216],
};

impl CropBox {
    /// `(D, H, W)` of the cropped volume.
    pub fn shape(&self) -> [usize; 3] {
        [
            self.end[0].saturating_sub(self.start[0]),
            self.end[1].saturating_sub(self.start[1]),
            self.end[2].saturating_sub(self.start[2]),
        ]
    }

    /// Checks that the box is non-empty and fits a volume of `dims` `(z, y, x)`.
    pub fn check(&self, dims: [usize; 3]) -> Result<()> {
        for (a, axis) in AXES.iter().enumerate() {
            if self.start[a] >= self.end[a] {
                bail!("crop box {self} is empty along {axis}");
            }
        }
        if (0..3).any(|a| self.end[a] > dims[a]) {
            bail!(
                "a volume of (z, y, x) = {dims:?} voxels is smaller than the crop box {self} \
                 (it needs at least {:?})",
                self.end
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for CropBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "z {}..{}, y {}..{}, x {}..{}",
            self.start[0], self.end[0], self.start[1], self.end[1], self.start[2], self.end[2]
        )
    }
}

const AXES: [&str; 3] = ["z", "y", "x"];

/// The voxels of `data` (a `[nz, ny, nx]` volume, x fastest) inside `b`, in the same order.
pub fn crop<T: Copy>(data: &[T], dims: [usize; 3], b: &CropBox) -> Result<Vec<T>> {
    if data.len() != dims.iter().product::<usize>() {
        bail!(
            "crop: {} values do not make a volume of {dims:?}",
            data.len()
        );
    }
    b.check(dims)?;
    let [d, h, _] = b.shape();
    let rows: Vec<&[T]> = (0..d * h)
        .map(|r| {
            let (z, y) = (b.start[0] + r / h, b.start[1] + r % h);
            let row = (z * dims[1] + y) * dims[2];
            &data[row + b.start[2]..row + b.end[2]]
        })
        .collect();
    Ok(rows.concat())
}

/// [`crop`] of a [`Volume`].
pub fn crop_volume(v: &Volume, b: &CropBox) -> Result<Volume> {
    Ok(Volume::new(b.shape(), crop(&v.data, v.dims, b)?))
}

/// The inverse of [`crop`]: a `full` volume filled with `fill` and `data` (the box's values)
/// put back in the box; e.g. a predicted label map back onto the input's grid.
pub fn uncrop<T: Copy>(data: &[T], b: &CropBox, full: [usize; 3], fill: T) -> Result<Vec<T>> {
    b.check(full)?;
    let [d, h, w] = b.shape();
    if data.len() != d * h * w {
        bail!(
            "uncrop: {} values do not fill the crop box {b} ({:?})",
            data.len(),
            b.shape()
        );
    }
    let mut out = vec![fill; full.iter().product()];
    for (r, src) in data.chunks(w).enumerate() {
        let (z, y) = (b.start[0] + r / h, b.start[1] + r % h);
        let row = (z * full[1] + y) * full[2];
        out[row + b.start[2]..row + b.end[2]].copy_from_slice(src);
    }
    Ok(out)
}

/// Statistics of one modality's z-score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZscoreStats {
    /// Mean over the voxels > 0.
    pub mean: f64,
    /// Population standard deviation over the voxels > 0.
    pub std: f64,
    /// Number of voxels > 0 (0 for [`ZscoreStats::IDENTITY`]).
    pub count: usize,
}

impl ZscoreStats {
    /// The transform of images stored already z-scored (the authors' `.npy`,
    /// [`CaseFormat::AuthorsNpy`]): mean 0, std 1, so that [`zscore_value`] returns every value
    /// bit for bit (`x as f64` is exact, `- 0.0` and `/ 1.0` change nothing, and the result is
    /// an f32 value); no statistics are computed.
    pub const IDENTITY: ZscoreStats = ZscoreStats {
        mean: 0.0,
        std: 1.0,
        count: 0,
    };
}

/// Pass 1 over one row: the sum (f64, sequential in x order) and the count of the values > 0,
/// and the position of the first non-finite value. Written without branches on the data; adding
/// `+0.0` for a value <= 0 leaves the sum's bits unchanged (the sum starts at `+0.0`), so this is
/// exactly the sum over the values > 0 in x order.
fn row_pass1(row: &[f32]) -> (f64, usize, Option<usize>) {
    let mut s = 0.0f64;
    let mut n = 0usize;
    let mut finite = true;
    for &x in row {
        let pos = x > 0.0;
        s += if pos { x as f64 } else { 0.0 };
        n += pos as usize;
        finite &= x.is_finite();
    }
    let bad = if finite {
        None
    } else {
        row.iter().position(|x| !x.is_finite())
    };
    (s, n, bad)
}

/// Pass 2 over one row: the sum (f64, sequential in x order) of `(x - mean)^2` over the values
/// > 0 (branch-free as [`row_pass1`]).
fn row_pass2(row: &[f32], mean: f64) -> f64 {
    let mut q = 0.0f64;
    for &x in row {
        let d = x as f64 - mean;
        q += if x > 0.0 { d * d } else { 0.0 };
    }
    q
}

/// Mean and population std over the voxels > 0 (order of operations in the module docs).
/// Errors (without a file name; callers add it): a non-finite value, no voxel above 0, or all
/// voxels above 0 equal.
pub(crate) fn zscore_stats(v: &Volume) -> Result<ZscoreStats> {
    let nx = v.dims[2].max(1);
    // Rows in parallel, each sequential; then the rows summed sequentially in row order.
    let rows: Vec<(f64, usize, Option<usize>)> = v.data.par_chunks(nx).map(row_pass1).collect();
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (r, &(rs, rn, bad)) in rows.iter().enumerate() {
        if let Some(x) = bad {
            let i = r * nx + x;
            bail!(
                "value {} at voxel (z, y, x) = {:?} is not finite",
                v.data[i],
                voxel_of(v.dims, i)
            );
        }
        sum += rs;
        count += rn;
    }
    if count == 0 {
        bail!("no voxel above 0: the z-score over voxels > 0 would divide by zero");
    }
    let mean = sum / count as f64;
    let rows: Vec<f64> = v
        .data
        .par_chunks(nx)
        .map(|row| row_pass2(row, mean))
        .collect();
    let mut sq = 0.0f64;
    for rq in rows {
        sq += rq;
    }
    let std = (sq / count as f64).sqrt();
    if std.is_nan() || std <= 0.0 {
        bail!(
            "all {count} voxels above 0 have the same value {mean}: standard deviation 0, the \
             z-score would divide by zero"
        );
    }
    Ok(ZscoreStats { mean, std, count })
}

/// The transform of one value: `((x as f64 - mean) / std) as f32`.
#[inline]
pub(crate) fn zscore_value(x: f32, s: &ZscoreStats) -> f32 {
    ((x as f64 - s.mean) / s.std) as f32
}

/// [`zscore_value`] of every voxel.
pub(crate) fn apply_zscore(v: &Volume, s: &ZscoreStats) -> Volume {
    let data = v.data.par_iter().map(|&x| zscore_value(x, s)).collect();
    Volume::new(v.dims, data)
}

/// [`zscore_stats`] then [`apply_zscore`].
pub fn zscore(v: &Volume) -> Result<(Volume, ZscoreStats)> {
    let s = zscore_stats(v)?;
    Ok((apply_zscore(v, &s), s))
}

/// A case ready for training or inference: z-scored, cropped.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedCase {
    /// The case id.
    pub id: String,
    /// `(D, H, W)` after the crop.
    pub dims: [usize; 3],
    /// `[4, D, H, W]`, channel order T1, T2, T1ce, FLAIR, W fastest.
    pub image: Vec<f32>,
    /// `[D, H, W]` internal labels, when the case has a segmentation.
    pub labels: Option<Vec<u8>>,
    /// The z-score statistics per channel.
    pub stats: [ZscoreStats; 4],
    /// The crop applied.
    pub crop: CropBox,
    /// `[nz, ny, nx]` before the crop (to put predictions back with [`uncrop`]).
    pub full_dims: [usize; 3],
}

impl PreparedCase {
    /// Number of channels (4).
    pub fn channels(&self) -> usize {
        self.image.len() / self.dims.iter().product::<usize>().max(1)
    }

    /// The image as a `[1, 4, D, H, W]` tensor.
    pub fn image_tensor(&self) -> Tensor {
        let [d, h, w] = self.dims;
        Tensor::from_vec(&[1, self.channels(), d, h, w], self.image.clone())
    }

    /// The labels as a `[1, D, H, W]` label map, when present.
    pub fn label_map(&self) -> Option<LabelMap> {
        let [d, h, w] = self.dims;
        self.labels
            .as_ref()
            .map(|l| LabelMap::new([1, d, h, w], l.clone()))
    }
}

/// [`preprocess_with_crop`] with the method page's [`BRATS_CROP`].
pub fn preprocess(case: &LoadedCase) -> Result<PreparedCase> {
    preprocess_with_crop(case, &BRATS_CROP)
}

/// Z-scores each modality with statistics over its whole volume (four in parallel; each
/// deterministic) and crops the image and the labels to `b` (the statistics come from the whole
/// volume; the per-voxel transform is applied to the box only, which gives the same values as
/// transforming first). Images stored already z-scored (the authors' `.npy`) get
/// [`ZscoreStats::IDENTITY`]: they are only cropped. Errors name the case and the modality's
/// file.
pub fn preprocess_with_crop(case: &LoadedCase, b: &CropBox) -> Result<PreparedCase> {
    let dims = case.dims();
    let id = &case.case.id;
    b.check(dims)
        .with_context(|| format!("case {id}: cannot crop {}", case.case.dir.display()))?;
    let stored_zscored = case.case.format == CaseFormat::AuthorsNpy;
    let stats: Vec<Result<ZscoreStats>> = (0..4)
        .into_par_iter()
        .map(|c| {
            if stored_zscored {
                return Ok(ZscoreStats::IDENTITY);
            }
            zscore_stats(&case.images[c]).with_context(|| {
                format!(
                    "case {id}: z-score of {}",
                    case.case.modalities[c].display()
                )
            })
        })
        .collect();
    let stats: Vec<ZscoreStats> = stats.into_iter().collect::<Result<_>>()?;
    for img in &case.images {
        if img.dims != dims {
            bail!("case {id}: the four images differ in shape");
        }
    }
    // Crop and transform in one pass, straight into the `[4, D, H, W]` buffer: the transform
    // is per voxel, so transforming only the box gives the same values as transforming
    // everything and then cropping.
    let [d, h, w] = b.shape();
    let mut image = vec![0f32; 4 * d * h * w];
    image.par_chunks_mut(w).enumerate().for_each(|(r, out)| {
        let c = r / (d * h);
        let (z, y) = (b.start[0] + (r / h) % d, b.start[1] + r % h);
        let row = (z * dims[1] + y) * dims[2];
        let src = &case.images[c].data[row + b.start[2]..row + b.end[2]];
        let s = &stats[c];
        for (o, &x) in out.iter_mut().zip(src) {
            *o = zscore_value(x, s);
        }
    });
    let labels = match &case.labels {
        Some(l) => Some(crop(l, dims, b).with_context(|| format!("case {id}: cropping labels"))?),
        None => None,
    };
    Ok(PreparedCase {
        id: id.clone(),
        dims: b.shape(),
        image,
        labels,
        stats: [stats[0], stats[1], stats[2], stats[3]],
        crop: *b,
        full_dims: dims,
    })
}

// Verifies (every test in this file): R-MTH-1
#[cfg(test)]
mod tests {
    use super::*;

    fn vol(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
        let mut data = Vec::new();
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    data.push(f(z, y, x));
                }
            }
        }
        Volume::new(dims, data)
    }

    #[test]
    fn zscore_matches_direct_f64() {
        let v = vol([5, 6, 7], |z, y, x| {
            let t = (z * 42 + y * 7 + x) as f32;
            if (z + y + x) % 3 == 0 {
                -(t * 0.5) // background (<= 0), excluded from the statistics
            } else if (z + y) % 4 == 0 {
                0.0
            } else {
                1.0 + (t * 0.37).sin() * 100.0 + t
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
        let std = (pos.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (z, s) = zscore(&v).unwrap();
        assert_eq!(s.count, pos.len());
        assert!((s.mean - mean).abs() <= 1e-12 * mean.abs());
        assert!((s.std - std).abs() <= 1e-12 * std);
        for (a, b) in v.data.iter().zip(&z.data) {
            let want = ((*a as f64 - mean) / std) as f32;
            assert!((want - b).abs() <= 1e-6 * want.abs().max(1.0), "{want} {b}");
        }
        // Background voxels are transformed too: zero becomes -mean/std.
        let i = v.data.iter().position(|&x| x == 0.0).unwrap();
        assert_eq!(z.data[i], (-mean / std) as f32);
    }

    #[test]
    fn zscore_errors() {
        let e = zscore(&vol([2, 2, 2], |_, _, _| -1.0)).unwrap_err();
        assert!(e.to_string().contains("no voxel above 0"), "{e}");
        let e = zscore(&vol([2, 2, 2], |z, _, _| if z == 0 { 3.0 } else { 0.0 })).unwrap_err();
        assert!(e.to_string().contains("standard deviation 0"), "{e}");
        let e = zscore(&vol([2, 3, 4], |z, y, x| {
            if (z, y, x) == (1, 2, 3) {
                f32::NAN
            } else {
                1.0 + x as f32
            }
        }))
        .unwrap_err();
        assert!(e.to_string().contains("(1, 2, 3)"), "{e}");
    }

    #[test]
    fn crop_and_uncrop() {
        let dims = [6, 7, 8];
        let v = vol(dims, |z, y, x| (z * 100 + y * 10 + x) as f32);
        let b = CropBox {
            start: [1, 2, 3],
            end: [4, 6, 8],
        };
        let c = crop_volume(&v, &b).unwrap();
        assert_eq!(c.dims, [3, 4, 5]);
        for z in 0..3 {
            for y in 0..4 {
                for x in 0..5 {
                    assert_eq!(
                        c.data[c.index(z, y, x)],
                        ((z + 1) * 100 + (y + 2) * 10 + x + 3) as f32
                    );
                }
            }
        }
        let back = uncrop(&c.data, &b, dims, -1.0).unwrap();
        for z in 0..6 {
            for y in 0..7 {
                for x in 0..8 {
                    let inside = (1..4).contains(&z) && (2..6).contains(&y) && (3..8).contains(&x);
                    let want = if inside {
                        v.data[v.index(z, y, x)]
                    } else {
                        -1.0
                    };
                    assert_eq!(back[v.index(z, y, x)], want);
                }
            }
        }
        let e = crop_volume(&vol([6, 7, 7], |_, _, _| 0.0), &b).unwrap_err();
        assert!(e.to_string().contains("smaller than the crop box"), "{e}");
        assert_eq!(BRATS_CROP.shape(), [140, 192, 192]);
        assert_eq!(BRATS_CROP.to_string(), "z 5..145, y 24..216, x 24..216");
        assert!(BRATS_CROP.check([155, 240, 240]).is_ok());
        let e = BRATS_CROP.check([144, 240, 240]).unwrap_err().to_string();
        assert!(
            e.contains("[144, 240, 240]") && e.contains("z 5..145"),
            "{e}"
        );
    }
}
