//! Sliding-window inference (method page, section 7; the authors' `test_single_case`).
//!
//! # Order of operations (the numerics contract)
//! For an image `[C, D, H, W]` (already z-scored, W fastest) and a window with patch
//! `(pd, ph, pw)` and stride `(sd, sh, sw)`:
//!
//! 1. **Pad.** Each axis shorter than its patch is padded with `0.0` to the patch size,
//!    `pad / 2` voxels before and `pad - pad / 2` after (`pad = patch - dim`); other axes are
//!    left alone. Padding comes after the z-score, so padded voxels hold `0.0`, the z-scored
//!    mean intensity (as the authors' code, which pads the normalised array).
//! 2. **Window starts** per axis of the padded size `n`: `min(stride * i, n - patch)` for
//!    `i in 0 .. ceil((n - patch) / stride) + 1` ([`window_starts`]). With `1 <= stride <=
//!    patch` every voxel is covered at least once.
//! 3. **Windows in order**: z start outermost, then y, then x (row-major over the three start
//!    lists). Each window's patch `[1, C, pd, ph, pw]` goes through the predictor, which
//!    returns class probabilities `[1, K, pd, ph, pw]` (for [`predict`]: the VNet's
//!    evaluation-mode logits, then softmax over the classes, both from protokd-reference).
//! 4. **Accumulate** in that window order into two f32 maps over the padded volume, both
//!    starting at `+0.0`: `sum[k, v] = sum[k, v] + p[k, v]` and `count[v] = count[v] + 1.0`
//!    (one f32 addition per voxel and window; the count is an exact small integer). Because
//!    every voxel's additions happen in the fixed window order, the bits do not depend on the
//!    thread count (the voxels of one window are independent and may be updated in
//!    parallel).
//! 5. **Average**: `prob[k, v] = sum[k, v] / count[v]` (one IEEE f32 division), then the
//!    padding is cropped away.
//! 6. **Argmax** over the classes ([`argmax`]): the class with the largest probability, the
//!    lowest class index among equal maxima (NumPy's `argmax`).
//!
//! Windows run one after the other; each forward pass is itself parallel inside the engine.
//! This is exactly the f32 arithmetic of the authors' NumPy code (`score_map += y`,
//! `cnt += 1`, `score_map / cnt`, `argmax`), so a NumPy float32 transcription gives the same
//! bits for the same window probabilities (`tests/infer/sliding_window.rs`).

use crate::data::brats::{CaseFormat, LoadedCase};
use crate::data::preprocess::zscore;
use crate::engine::Net;
use crate::io::nifti::checked_size;
use crate::volume::Volume;
use anyhow::{bail, ensure, Context, Result};
use protokd_reference::Tensor;
use rayon::prelude::*;
use std::borrow::Cow;

/// Most voxels a sliding-window patch may have: 2^24 = 16,777,216, eleven times the paper's
/// patch (96 x 128 x 128) and enough for a whole BraTS volume in one window (160 x 240 x 240 =
/// 9,216,000). The VNet holds several activations of `n_filters` x patch f32 values per window
/// (with 16 filters, 1 GiB each at this limit), so a larger patch cannot run on a usual machine;
/// it is refused before the image is padded to it.
pub const MAX_PATCH_VOXELS: usize = 1 << 24;

/// Patch and stride of the sliding window, `(D, H, W)` = `(z, y, x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Patch size per axis.
    pub patch: [usize; 3],
    /// Distance between consecutive window starts per axis (the last start is moved back to
    /// end at the volume's edge).
    pub stride: [usize; 3],
}

impl Window {
    /// The paper's window: patch (96, 128, 128), stride (48, 64, 64).
    pub(crate) const PAPER: Window = Window {
        patch: [96, 128, 128],
        stride: [48, 64, 64],
    };

    /// Checks `1 <= stride <= patch` on every axis (a stride above the patch would leave voxels
    /// that no window covers) and that the patch has at most [`MAX_PATCH_VOXELS`] voxels.
    pub fn check(&self) -> Result<()> {
        checked_size(
            &self.patch,
            MAX_PATCH_VOXELS,
            "voxels",
            "window patch (D, H, W)",
        )?;
        for (a, axis) in AXES.iter().enumerate() {
            let (p, s) = (self.patch[a], self.stride[a]);
            ensure!(p >= 1, "window patch along {axis} is 0");
            ensure!(
                (1..=p).contains(&s),
                "window stride {s} along {axis} must be between 1 and the patch size {p} \
                 (a larger stride leaves voxels that no window covers)"
            );
        }
        Ok(())
    }

    /// The window from the CLI's `--patch D,H,W` (default: the paper's 96,128,128) and
    /// `--stride D,H,W` (default: half the patch, rounded down, at least 1: the paper's
    /// 48,64,64 for its patch), checked with [`Window::check`] and [`Window::check_vnet`] (the
    /// VNet needs multiples of 16).
    pub fn from_args(patch: Option<&str>, stride: Option<&str>) -> Result<Window> {
        let patch = patch.map_or(Ok(Window::PAPER.patch), |s| parse_triple(s, "--patch"))?;
        let stride = match stride {
            Some(s) => parse_triple(s, "--stride")?,
            None => patch.map(|p| (p / 2).max(1)),
        };
        let w = Window { patch, stride };
        w.check().context("--patch / --stride")?;
        w.check_vnet()?;
        Ok(w)
    }

    /// Checks that the VNet can take the patch: every size a multiple of 16 (it halves the
    /// resolution four times).
    pub(crate) fn check_vnet(&self) -> Result<()> {
        if let Some(a) = (0..3).find(|&a| !self.patch[a].is_multiple_of(16)) {
            bail!(
                "window patch {:?} (D, H, W): {} along {} is not a multiple of 16, which the VNet \
                 needs (it halves the resolution four times)",
                self.patch,
                self.patch[a],
                AXES[a]
            );
        }
        Ok(())
    }

    /// Number of windows over a volume of `dims` (before padding).
    pub fn count(&self, dims: [usize; 3]) -> usize {
        (0..3)
            .map(|a| window_starts(dims[a].max(self.patch[a]), self.patch[a], self.stride[a]).len())
            .product()
    }
}

/// Axis names in messages, `(D, H, W)` order.
const AXES: [&str; 3] = ["D (z)", "H (y)", "W (x)"];

/// Parses `a,b,c` (three positive integers) for the option `option`.
fn parse_triple(s: &str, option: &str) -> Result<[usize; 3]> {
    let bad = || {
        anyhow::anyhow!(
            "{option} `{s}`: expected three comma-separated positive sizes D,H,W (z, y, x), \
             for example 96,128,128"
        )
    };
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut out = [0usize; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse().map_err(|_| bad())?;
        if *o == 0 {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Window starts along one axis of (padded) size `dim >= patch`:
/// `min(stride * i, dim - patch)` for `i in 0 .. ceil((dim - patch) / stride) + 1`.
/// Panics if `dim < patch` or `stride == 0` (callers pad first and check the window).
pub fn window_starts(dim: usize, patch: usize, stride: usize) -> Vec<usize> {
    assert!(
        dim >= patch && stride > 0,
        "window_starts: dim {dim} < patch {patch} or stride 0"
    );
    let last = dim - patch;
    let n = last.div_ceil(stride) + 1;
    (0..n).map(|i| (stride * i).min(last)).collect()
}

/// Class per voxel of probabilities `[K, V]`: the first class with the largest value (a
/// comparison chain from class 0 that moves only on a strictly larger value, NumPy's
/// `argmax`).
pub fn argmax(probabilities: &[f32], classes: usize) -> Vec<u8> {
    assert!(
        (1..=256).contains(&classes) && probabilities.len().is_multiple_of(classes),
        "argmax: {} values for {classes} classes",
        probabilities.len()
    );
    let v = probabilities.len() / classes;
    (0..v)
        .into_par_iter()
        .map(|i| {
            let mut best = 0usize;
            for k in 1..classes {
                if probabilities[k * v + i] > probabilities[best * v + i] {
                    best = k;
                }
            }
            best as u8
        })
        .collect()
}

/// A box of a `[C, D, H, W]` volume: the volume's spatial size and the box's first voxel.
#[derive(Clone, Copy)]
struct At {
    dims: [usize; 3],
    start: [usize; 3],
}

impl At {
    /// The box starting at the first voxel of a volume of size `dims`.
    fn origin(dims: [usize; 3]) -> At {
        At {
            dims,
            start: [0; 3],
        }
    }
}

/// Copies a box of `size` voxels per channel from `src` (at `from`) to `dst` (at `to`), one
/// W-row at a time, channels, then z, then y.
fn copy_box(src: &[f32], from: At, dst: &mut [f32], to: At, channels: usize, size: [usize; 3]) {
    let offset = |at: At, c: usize, z: usize, y: usize| {
        ((c * at.dims[0] + at.start[0] + z) * at.dims[1] + at.start[1] + y) * at.dims[2]
            + at.start[2]
    };
    for c in 0..channels {
        for z in 0..size[0] {
            for y in 0..size[1] {
                let (s, d) = (offset(from, c, z, y), offset(to, c, z, y));
                dst[d..d + size[2]].copy_from_slice(&src[s..s + size[2]]);
            }
        }
    }
}

/// A zero volume `[C, out]` with the box `size` of `data` (at `from`) copied to `to` in it:
/// padding (the whole image into the middle of a larger volume) and extracting a window (a
/// box of the padded image into a volume of its own size).
fn boxed(data: &[f32], channels: usize, from: At, size: [usize; 3], to: At) -> Vec<f32> {
    let mut out = vec![0.0f32; channels * to.dims.iter().product::<usize>()];
    copy_box(data, from, &mut out, to, channels, size);
    out
}

/// Sliding-window prediction of `image` `[C, D, H, W]` (`C = channels`, `dims = (D, H, W)`,
/// already z-scored, W fastest): pads, runs `predict` on every window and averages the
/// probabilities exactly as the module docs say (steps 1-5). `predict` receives
/// `[1, C, pd, ph, pw]` and must return `[1, classes, pd, ph, pw]` probabilities. Returns the
/// averaged probabilities `[classes, D, H, W]` over the original (unpadded) dims.
///
/// Errors: an image whose length does not match, an invalid window, a predictor error or a
/// predictor output of the wrong shape.
pub fn sliding_window(
    image: &[f32],
    channels: usize,
    dims: [usize; 3],
    classes: usize,
    window: &Window,
    mut predict: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Vec<f32>> {
    window.check()?;
    ensure!(
        channels >= 1 && classes >= 1,
        "sliding_window: no channel or no class"
    );
    ensure!(
        dims.iter().all(|&n| n >= 1) && image.len() == channels * dims.iter().product::<usize>(),
        "image of {} values is not {channels} channel(s) of {dims:?} (D, H, W) voxels",
        image.len()
    );
    let patch = window.patch;
    // 1. Pad each axis shorter than the patch: pad / 2 before, the rest after.
    let padded: [usize; 3] = std::array::from_fn(|a| dims[a].max(patch[a]));
    let before: [usize; 3] = std::array::from_fn(|a| (padded[a] - dims[a]) / 2);
    let img: Cow<[f32]> = if padded == dims {
        Cow::Borrowed(image)
    } else {
        let to = At {
            dims: padded,
            start: before,
        };
        Cow::Owned(boxed(image, channels, At::origin(dims), dims, to))
    };
    // 2. Window starts per axis.
    let starts: [Vec<usize>; 3] =
        std::array::from_fn(|a| window_starts(padded[a], patch[a], window.stride[a]));
    // 3-4. Windows z, then y, then x; accumulate in that order.
    let [pd, ph, pw] = padded;
    let nvox = pd * ph * pw;
    let mut sum = vec![0.0f32; classes * nvox];
    let mut count = vec![0.0f32; nvox];
    let want = [1, classes, patch[0], patch[1], patch[2]];
    for &z0 in &starts[0] {
        for &y0 in &starts[1] {
            for &x0 in &starts[2] {
                let start = [z0, y0, x0];
                let from = At {
                    dims: padded,
                    start,
                };
                let x = Tensor::from_vec(
                    &[1, channels, patch[0], patch[1], patch[2]],
                    boxed(&img, channels, from, patch, At::origin(patch)),
                );
                let p = predict(&x).with_context(|| {
                    format!("window at (z, y, x) = ({z0}, {y0}, {x0}) of the padded volume")
                })?;
                ensure!(
                    p.shape == want,
                    "the predictor returned shape {:?} for the window at (z, y, x) = ({z0}, \
                     {y0}, {x0}); expected {want:?}",
                    p.shape
                );
                accumulate(&mut sum, &mut count, &p.data, classes, padded, start, patch);
            }
        }
    }
    // 5. Average (one f32 division per value), then crop the padding away.
    let [d, h, w] = dims;
    let mut out = Vec::with_capacity(classes * d * h * w);
    for k in 0..classes {
        for z in 0..d {
            for y in 0..h {
                let row = ((z + before[0]) * ph + y + before[1]) * pw + before[2];
                let s = &sum[k * nvox + row..k * nvox + row + w];
                let c = &count[row..row + w];
                out.extend(s.iter().zip(c).map(|(&s, &c)| s / c));
            }
        }
    }
    Ok(out)
}

/// Step 4 for one window: `sum[k, v] += p[k, v']` and `count[v] += 1` over the window's voxels
/// (`v` in the padded volume, `v'` in the patch). Rows of the window run in parallel; each
/// voxel gets exactly one addition per map, so the result is the same for any thread count.
fn accumulate(
    sum: &mut [f32],
    count: &mut [f32],
    p: &[f32],
    classes: usize,
    padded: [usize; 3],
    start: [usize; 3],
    patch: [usize; 3],
) {
    let [_, ph, pw] = padded;
    let nvox = padded.iter().product::<usize>();
    let pvox = patch.iter().product::<usize>();
    let row_of = |z: usize, y: usize| ((start[0] + z) * ph + start[1] + y) * pw + start[2];
    // Each z-plane of the padded volume is one chunk: planes are disjoint, so they can be
    // updated in parallel.
    let plane = ph * pw;
    for k in 0..classes {
        let sk = &mut sum[k * nvox..(k + 1) * nvox];
        sk.par_chunks_mut(plane)
            .enumerate()
            .skip(start[0])
            .take(patch[0])
            .for_each(|(zz, dst)| {
                let z = zz - start[0];
                for y in 0..patch[1] {
                    let r = row_of(z, y) - zz * plane;
                    let src = k * pvox + (z * patch[1] + y) * patch[2];
                    for (s, &v) in dst[r..r + patch[2]].iter_mut().zip(&p[src..src + patch[2]]) {
                        *s += v;
                    }
                }
            });
    }
    for z in 0..patch[0] {
        for y in 0..patch[1] {
            let r = row_of(z, y);
            for c in &mut count[r..r + patch[2]] {
                *c += 1.0;
            }
        }
    }
}

/// A segmentation in memory.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Prediction {
    /// `(D, H, W)` = `[nz, ny, nx]`, the input's dims.
    pub dims: [usize; 3],
    /// Averaged class probabilities `[K, D, H, W]`, W fastest.
    pub probabilities: Vec<f32>,
    /// Internal labels (`0 bg, 1 ET, 2 NCR/NET, 3 ED`), the [`argmax`] of the probabilities.
    pub labels: Vec<u8>,
}

impl Prediction {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.probabilities.len() / self.labels.len().max(1)
    }
}

/// The VNet's prediction for `image` `[C, D, H, W]` (`C = state.config.in_channels`, z-scored):
/// [`sliding_window`] with, per window, `softmax(forward_eval(state, patch).logits)` over the
/// classes (protokd-reference's evaluation-mode VNet and softmax, on the network's device:
/// [`Network::probabilities`](crate::engine::Network::probabilities)), then [`argmax`].
pub(crate) fn predict(
    net: &Net,
    image: &[f32],
    dims: [usize; 3],
    window: &Window,
) -> Result<Prediction> {
    window.check_vnet()?;
    let cfg = net.config();
    let probabilities = sliding_window(image, cfg.in_channels, dims, cfg.n_classes, window, |x| {
        Ok(net.probabilities(x)?)
    })?;
    check_finite(&probabilities, dims)?;
    let labels = argmax(&probabilities, cfg.n_classes);
    Ok(Prediction {
        dims,
        probabilities,
        labels,
    })
}

/// Refuses class probabilities `[K, D, H, W]` that are not all finite, naming the first such
/// value, its class and its voxel: a model whose weights pass the load checks can still
/// overflow in the forward pass, and no label map is made from such an output.
fn check_finite(probabilities: &[f32], dims: [usize; 3]) -> Result<()> {
    let Some(i) = probabilities.iter().position(|p| !p.is_finite()) else {
        return Ok(());
    };
    let nvox: usize = dims.iter().product();
    let (class, v) = (i / nvox, i % nvox);
    let (x, y, z) = (v % dims[2], v / dims[2] % dims[1], v / (dims[2] * dims[1]));
    bail!(
        "the model's output is not finite: the probability of class {class} at voxel (x, y, z) \
         = ({x}, {y}, {z}) is {}; its weights overflow f32 in the forward pass; nothing was \
         written",
        probabilities[i]
    )
}

/// The network input from raw images (one per input channel, in the model's channel order, all
/// of the same dims): each z-scored over its whole volume ([`crate::data::preprocess::zscore`]: mean
/// and population std over the voxels > 0, applied to every voxel), no crop, concatenated in
/// the given order into `[C, D, H, W]`. Errors (a z-score that cannot be computed, dims that
/// differ) name the input by its position (`input 1`, ...).
pub(crate) fn prepare_input(volumes: &[&Volume]) -> Result<Vec<f32>> {
    prepare_named(volumes, |i| format!("input {}", i + 1))
}

/// [`prepare_input`] with `name(i)` naming input `i` in errors.
fn prepare_named(volumes: &[&Volume], name: impl Fn(usize) -> String) -> Result<Vec<f32>> {
    let Some(first) = volumes.first() else {
        bail!("no input image");
    };
    let mut out = Vec::with_capacity(volumes.len() * first.data.len());
    for (i, v) in volumes.iter().enumerate() {
        ensure!(
            v.dims == first.dims,
            "{} has dims (z, y, x) {:?} but {} has {:?}; all inputs must have the same shape",
            name(i),
            v.dims,
            name(0),
            first.dims
        );
        let (z, _) = zscore(v).with_context(|| format!("{}: z-score", name(i)))?;
        out.extend_from_slice(&z.data);
    }
    Ok(out)
}

/// Segments a loaded case with the modalities `channels` (channel indices, `0 T1, 1 T2,
/// 2 T1ce, 3 FLAIR`, in the model's order): [`prepare_input`] on those images (images stored
/// already z-scored, the authors' `.npy`, are taken as they are), then [`predict`]. Errors name
/// the case (and the file of an image that cannot be normalised).
pub(crate) fn segment_case(
    net: &Net,
    case: &LoadedCase,
    channels: &[usize],
    window: &Window,
) -> Result<Prediction> {
    let id = &case.case.id;
    let in_channels = net.config().in_channels;
    ensure!(
        channels.len() == in_channels,
        "case {id}: the model takes {in_channels} input channel(s) but {} modalities were chosen",
        channels.len()
    );
    ensure!(
        channels.iter().all(|&c| c < 4),
        "case {id}: channels {channels:?} must be in 0..=3"
    );
    let images: Vec<&Volume> = channels.iter().map(|&c| &case.images[c]).collect();
    let input = if case.case.format == CaseFormat::AuthorsNpy {
        images.iter().flat_map(|v| v.data.iter().copied()).collect()
    } else {
        prepare_named(&images, |i| {
            format!("case {id}: {}", case.case.modalities[channels[i]].display())
        })?
    };
    predict(net, &input, case.dims(), window).with_context(|| format!("case {id}"))
}

// Verifies (every test in this file): R-MTH-10
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::tensor::Shaped;

    /// Hand-derived from `min(stride * i, dim - patch)`, `i < ceil((dim - patch) / stride) + 1`.
    #[test]
    fn window_starts_by_hand() {
        // The paper's window on BraTS: z 155 (patch 96, stride 48): last = 59, ceil(59/48) = 2.
        assert_eq!(window_starts(155, 96, 48), [0, 48, 59]);
        // y, x 240 (patch 128, stride 64): last = 112, ceil(112/64) = 2.
        assert_eq!(window_starts(240, 128, 64), [0, 64, 112]);
        // After the crop (140 x 192 x 192): z last 44 -> 1 + 1 windows; y last 64 -> exactly 2.
        assert_eq!(window_starts(140, 96, 48), [0, 44]);
        assert_eq!(window_starts(192, 128, 64), [0, 64]);
        // dim == patch: one window.
        assert_eq!(window_starts(96, 96, 48), [0]);
        // Exact multiple: last = 16, 16/8 = 2 -> 3 windows, none moved.
        assert_eq!(window_starts(32, 16, 8), [0, 8, 16]);
        // Stride 1 and stride == patch.
        assert_eq!(window_starts(5, 3, 1), [0, 1, 2]);
        assert_eq!(window_starts(10, 4, 4), [0, 4, 6]);
        // One voxel past: ceil(1/8) = 1 -> 2 windows, the second moved back to the edge.
        assert_eq!(window_starts(17, 16, 8), [0, 1]);
    }

    #[test]
    fn window_checks_and_counts() {
        assert_eq!(Window::PAPER.count([155, 240, 240]), 27);
        // Padded on z (20 -> 96): one window along z.
        assert_eq!(Window::PAPER.count([20, 240, 240]), 9);
        let w = Window::from_args(Some("16,32,48"), Some("8, 16, 48")).unwrap();
        assert_eq!(w.patch, [16, 32, 48]);
        assert_eq!(w.stride, [8, 16, 48]);
        assert_eq!(Window::from_args(None, None).unwrap(), Window::PAPER);
        let w = Window::from_args(Some("32,16,48"), None).unwrap();
        assert_eq!(w.stride, [16, 8, 24]);
        let e = Window::from_args(Some("16,16,16"), Some("8,8,17")).unwrap_err();
        assert!(format!("{e:#}").contains("stride 17"), "{e:#}");
        let e = Window::from_args(Some("16,20,16"), Some("8,8,8")).unwrap_err();
        assert!(e.to_string().contains("multiple of 16"), "{e}");
        for bad in ["16,16", "16,16,x", "0,16,16", "16,16,16,16"] {
            let e = Window::from_args(Some(bad), None).unwrap_err();
            assert!(e.to_string().contains("--patch"), "{e}");
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        // Two voxels, three classes: [0.2, 0.4, 0.4] -> 1 (tie: first), [0.5, 0.5, 0.0] -> 0.
        let p = [0.2, 0.5, 0.4, 0.5, 0.4, 0.0];
        assert_eq!(argmax(&p, 3), [1, 0]);
    }

    /// With a predictor returning the same constant probabilities everywhere, the average is that
    /// constant whatever the overlap, and padding does not leak into the output.
    #[test]
    fn constant_predictor_averages_to_itself() {
        let dims = [5, 9, 7];
        let image = vec![1.0f32; dims.iter().product()];
        let w = Window {
            patch: [8, 4, 4],
            stride: [8, 3, 2],
        };
        let probs = [0.25f32, 0.5, 0.125, 0.125];
        let mut calls = 0;
        let out = sliding_window(&image, 1, dims, 4, &w, |x| {
            calls += 1;
            let [_, _, d, h, ww] = x.dims5();
            let v = d * h * ww;
            let data = probs
                .iter()
                .flat_map(|&p| std::iter::repeat_n(p, v))
                .collect();
            Ok(Tensor::from_vec(&[1, 4, d, h, ww], data))
        })
        .unwrap();
        assert_eq!(calls, w.count(dims));
        assert_eq!(calls, 3 * 3);
        let v = dims.iter().product::<usize>();
        for k in 0..4 {
            assert!(out[k * v..(k + 1) * v].iter().all(|&x| x == probs[k]));
        }
    }

    // Verifies: R-CLI-1
    #[test]
    fn bad_predictor_output_and_bad_image_are_errors() {
        let w = Window {
            patch: [2, 2, 2],
            stride: [1, 1, 1],
        };
        let e = sliding_window(&[0.0; 8], 1, [2, 2, 2], 4, &w, |_| {
            Ok(Tensor::zeros(&[1, 3, 2, 2, 2]))
        })
        .unwrap_err();
        assert!(e.to_string().contains("expected [1, 4, 2, 2, 2]"), "{e}");
        let e = sliding_window(&[0.0; 7], 1, [2, 2, 2], 4, &w, |_| unreachable!()).unwrap_err();
        assert!(e.to_string().contains("7 values"), "{e}");
    }
}
