//! Training-time sampling and augmentation (method page, section 3): a random crop, random flips
//! along each axis, a random intensity factor per channel, all drawn from a ChaCha8 generator
//! seeded from `(seed, epoch, case index)` alone, so that a case's patch in an epoch is the
//! same whatever the thread count, the batch it falls in or the order cases are loaded.
//!
//! ## The generator
//! [`rng_for`]`(seed, epoch, case_index)` is `ChaCha8Rng::from_seed(key)` (rand_chacha 0.9:
//! stream 0, word position 0) with the 32-byte key
//!
//! | bytes | value |
//! |---|---|
//! | 0..8 | `seed`, u64 little-endian |
//! | 8..16 | `epoch`, u64 little-endian |
//! | 16..24 | `case_index`, u64 little-endian: the case's position in the training case list (fixed for the run, not its position in the epoch's shuffled order) |
//! | 24..32 | the domain tag `b"pkd-aug1"` |
//!
//! [`epoch_permutation`] uses the same key layout with `case_index = 0` and the tag
//! `b"pkd-shuf"`, so the two never share a stream. Only `next_u32` is used.
//!
//! ## From `u32` to numbers
//! * **Integer in `0 .. n`** ([`uniform_below`], `1 <= n < 2^32`), Lemire's unbiased
//!   multiply-and-reject method: `x = next_u32(); m = x as u64 * n; l = m as u32`;
//!   if `l < n` { `t = (2^32 - n) % n`; while `l < t` { `x = next_u32(); m = x * n;
//!   l = m as u32` } }; return `m >> 32`. It consumes one `u32`, rarely more.
//! * **Coin with p = 1/2** ([`coin`]): `next_u32() >> 31 == 1` (the top bit).
//! * **U\[0, 1)** ([`unit_f32`]): `(next_u32() >> 8) as f32 * 2^-24` (exact: 24 random bits).
//! * **Intensity factor, U(0.9, 1.1)** ([`intensity_factor`]): `0.9_f32 + 0.2_f32 * u` with `u`
//!   from [`unit_f32`], an f32 multiplication then an f32 addition (two roundings, no fused
//!   multiply-add). Its values lie in `[0.9_f32, 1.0999999_f32]`, inside `[0.9, 1.1)` as f32
//!   (checked for all 2^24 values of `u` by a test).
//!
//! ## Draw order ([`draw_params`])
//! 1. Crop offsets along z, y, x in that order: `uniform_below(dim - crop)`; when
//!    `dim == crop` the offset is 0 and nothing is drawn. (`dim < crop` is an error.)
//! 2. Flips along z, y, x in that order: one [`coin`] each.
//! 3. For each channel `c = 0 .. C` in order: one [`coin`]; if it comes up, one
//!    [`intensity_factor`] draw; otherwise nothing more for that channel.
//!
//! ## Applying ([`apply`])
//! Crop at the offsets, then flip the patch along the drawn axes (output index `i` takes input
//! index `crop - 1 - i`), the same mapping for image and labels; then multiply each channel
//! with a drawn factor by it (`v * f`, one f32 rounding) — every voxel of the channel,
//! background included.

use crate::data::preprocess::PreparedCase;
use anyhow::{bail, Context, Result};
use protokd_reference::{LabelMap, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

/// The method page's training patch `(D, H, W)`.
pub const TRAIN_CROP: [usize; 3] = [96, 128, 128];

/// Domain tag of the augmentation streams.
pub(crate) const AUGMENT_TAG: [u8; 8] = *b"pkd-aug1";
/// Domain tag of the epoch-shuffle streams.
pub(crate) const SHUFFLE_TAG: [u8; 8] = *b"pkd-shuf";

/// The generator of `(seed, epoch, case_index)` under a domain tag (key layout in the module
/// docs).
pub(crate) fn rng_with_tag(seed: u64, epoch: u64, case_index: u64, tag: [u8; 8]) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&case_index.to_le_bytes());
    key[24..32].copy_from_slice(&tag);
    ChaCha8Rng::from_seed(key)
}

/// The augmentation generator of one case in one epoch.
pub fn rng_for(seed: u64, epoch: u64, case_index: u64) -> ChaCha8Rng {
    rng_with_tag(seed, epoch, case_index, AUGMENT_TAG)
}

/// An integer uniform in `0 .. n` (Lemire's method; see the module docs). Panics if `n == 0`.
pub(crate) fn uniform_below(rng: &mut impl RngCore, n: u32) -> u32 {
    assert!(n > 0, "uniform_below(0)");
    let mut m = rng.next_u32() as u64 * n as u64;
    let mut l = m as u32;
    if l < n {
        let t = n.wrapping_neg() % n;
        while l < t {
            m = rng.next_u32() as u64 * n as u64;
            l = m as u32;
        }
    }
    (m >> 32) as u32
}

/// True with probability 1/2: the top bit of one `u32`.
pub(crate) fn coin(rng: &mut impl RngCore) -> bool {
    rng.next_u32() >> 31 == 1
}

/// Uniform in `[0, 1)` from 24 bits: `(next_u32() >> 8) as f32 * 2^-24`.
pub(crate) fn unit_f32(rng: &mut impl RngCore) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The intensity factor of a uniform `u` in `[0, 1)`: `0.9 + 0.2 * u` in f32 (no fma).
pub(crate) fn factor_of_unit(u: f32) -> f32 {
    let scaled = 0.2f32 * u;
    0.9f32 + scaled
}

/// A factor uniform in `[0.9, 1.1)`: [`factor_of_unit`] of [`unit_f32`].
pub fn intensity_factor(rng: &mut impl RngCore) -> f32 {
    factor_of_unit(unit_f32(rng))
}

/// The random choices for one patch.
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentParams {
    /// Crop offset `(z, y, x)`.
    pub offset: [usize; 3],
    /// Flip along `(z, y, x)`.
    pub flip: [bool; 3],
    /// Per channel: the intensity factor, or `None` when the channel is left as it is.
    pub scale: Vec<Option<f32>>,
}

/// Draws the choices for a patch of `crop` out of a volume of `dims` with `channels` channels,
/// in the documented order.
pub fn draw_params(
    rng: &mut impl RngCore,
    dims: [usize; 3],
    crop: [usize; 3],
    channels: usize,
) -> Result<AugmentParams> {
    let mut offset = [0usize; 3];
    for a in 0..3 {
        if crop[a] == 0 || crop[a] > dims[a] {
            bail!("cannot take a random crop of (D, H, W) = {crop:?} from a volume of {dims:?}");
        }
        let room = dims[a] - crop[a];
        if room > 0 {
            let Ok(n) = u32::try_from(room) else {
                bail!("volume axis of {} voxels is too large", dims[a]);
            };
            offset[a] = uniform_below(rng, n) as usize;
        }
    }
    let flip = [coin(rng), coin(rng), coin(rng)];
    let scale = (0..channels)
        .map(|_| coin(rng).then(|| intensity_factor(rng)))
        .collect();
    Ok(AugmentParams {
        offset,
        flip,
        scale,
    })
}

/// An augmented training patch.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `(D, H, W)` of the patch.
    pub dims: [usize; 3],
    /// Number of channels.
    pub channels: usize,
    /// `[C, D, H, W]`, W fastest.
    pub image: Vec<f32>,
    /// `[D, H, W]` internal labels.
    pub labels: Vec<u8>,
}

/// Cuts and transforms one patch as `p` says (see the module docs): `image` is
/// `[channels, dims]`, `labels` is `[dims]`. Panics if the lengths or the parameters do not fit
/// (callers check; [`augment`] does).
pub fn apply(
    image: &[f32],
    labels: &[u8],
    channels: usize,
    dims: [usize; 3],
    crop: [usize; 3],
    p: &AugmentParams,
) -> Sample {
    let vox: usize = dims.iter().product();
    assert_eq!(image.len(), channels * vox, "augment::apply: image length");
    assert_eq!(labels.len(), vox, "augment::apply: labels length");
    assert_eq!(p.scale.len(), channels, "augment::apply: channels");
    for a in 0..3 {
        assert!(p.offset[a] + crop[a] <= dims[a], "augment::apply: offset");
    }
    let [cd, ch, cw] = crop;
    let src_index = |axis: usize, i: usize| -> usize {
        let j = if p.flip[axis] { crop[axis] - 1 - i } else { i };
        p.offset[axis] + j
    };
    // One output row (z, y) of a source volume `src` of `dims`.
    fn fill_row<T: Copy>(
        out: &mut [T],
        src: &[T],
        dims: [usize; 3],
        sz: usize,
        sy: usize,
        x0: usize,
        flip_x: bool,
    ) {
        let base = (sz * dims[1] + sy) * dims[2] + x0;
        let w = out.len();
        if flip_x {
            for (i, o) in out.iter_mut().enumerate() {
                *o = src[base + w - 1 - i];
            }
        } else {
            out.copy_from_slice(&src[base..base + w]);
        }
    }
    let patch_vox = cd * ch * cw;
    let mut out_image = vec![0f32; channels * patch_vox];
    out_image
        .par_chunks_mut(cw)
        .enumerate()
        .for_each(|(r, row)| {
            let c = r / (cd * ch);
            let z = (r / ch) % cd;
            let y = r % ch;
            let src = &image[c * vox..(c + 1) * vox];
            fill_row(
                row,
                src,
                dims,
                src_index(0, z),
                src_index(1, y),
                p.offset[2],
                p.flip[2],
            );
            if let Some(f) = p.scale[c] {
                for v in row.iter_mut() {
                    *v *= f;
                }
            }
        });
    let mut out_labels = vec![0u8; patch_vox];
    out_labels
        .par_chunks_mut(cw)
        .enumerate()
        .for_each(|(r, row)| {
            let z = r / ch;
            let y = r % ch;
            fill_row(
                row,
                labels,
                dims,
                src_index(0, z),
                src_index(1, y),
                p.offset[2],
                p.flip[2],
            );
        });
    Sample {
        dims: crop,
        channels,
        image: out_image,
        labels: out_labels,
    }
}

/// The training patch of a case in an epoch: [`draw_params`] from [`rng_for`]`(seed, epoch,
/// case_index)`, then [`apply`]. The case must have labels. Returns the patch and the choices.
pub fn augment(
    case: &PreparedCase,
    crop: [usize; 3],
    seed: u64,
    epoch: u64,
    case_index: u64,
) -> Result<(Sample, AugmentParams)> {
    let Some(labels) = &case.labels else {
        bail!("case {}: no segmentation; training needs one", case.id);
    };
    let channels = case.channels();
    let mut rng = rng_for(seed, epoch, case_index);
    let p = draw_params(&mut rng, case.dims, crop, channels)
        .with_context(|| format!("case {}", case.id))?;
    let s = apply(&case.image, labels, channels, case.dims, crop, &p);
    Ok((s, p))
}

/// Stacks patches into the training step's `image` `[N, C, D, H, W]` and `label`
/// `[N, D, H, W]`. All patches must have the same shape and channel count.
pub fn batch(samples: &[Sample]) -> Result<(Tensor, LabelMap)> {
    let Some(first) = samples.first() else {
        bail!("cannot make a batch of no patches");
    };
    for s in samples {
        if s.dims != first.dims || s.channels != first.channels {
            bail!(
                "patches of different shapes in one batch: {} x {:?} and {} x {:?}",
                first.channels,
                first.dims,
                s.channels,
                s.dims
            );
        }
    }
    let [d, h, w] = first.dims;
    let n = samples.len();
    let image: Vec<f32> = samples
        .iter()
        .flat_map(|s| s.image.iter().copied())
        .collect();
    let labels: Vec<u8> = samples
        .iter()
        .flat_map(|s| s.labels.iter().copied())
        .collect();
    Ok((
        Tensor::from_vec(&[n, first.channels, d, h, w], image),
        LabelMap::new([n, d, h, w], labels),
    ))
}

/// The order of the `n` training cases in an epoch: Fisher-Yates from the generator
/// `rng_with_tag(seed, epoch, 0, SHUFFLE_TAG)`, shuffled by [`shuffled`].
pub fn epoch_permutation(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    shuffled(n, &mut rng_with_tag(seed, epoch, 0, SHUFFLE_TAG))
}

/// `0, 1, .., n-1` shuffled by Fisher-Yates with `rng`: for `i` from `n - 1` down to 1:
/// `j = uniform_below(i + 1)`, swap positions `i` and `j`.
pub(crate) fn shuffled(n: usize, rng: &mut impl RngCore) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let bound = u32::try_from(i + 1).expect("fewer than 2^32 cases");
        let j = uniform_below(rng, bound) as usize;
        order.swap(i, j);
    }
    order
}

// Verifies (every test in this file): R-MTH-2
#[cfg(test)]
mod tests {
    use super::*;

    /// A generator that replays given words (to test the mappings).
    struct Replay(Vec<u32>, usize);
    impl RngCore for Replay {
        fn next_u32(&mut self) -> u32 {
            self.1 += 1;
            self.0[self.1 - 1]
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, _: &mut [u8]) {
            unimplemented!()
        }
    }

    #[test]
    fn factor_range_exhaustive() {
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for k in 0u32..(1 << 24) {
            let f = factor_of_unit(k as f32 * (1.0 / 16_777_216.0));
            lo = lo.min(f);
            hi = hi.max(f);
        }
        assert_eq!(lo, 0.9f32);
        assert!(hi < 1.1f32, "{hi}");
    }

    #[test]
    fn word_mappings() {
        let mut r = Replay(vec![0, u32::MAX, 1 << 31, (1 << 31) - 1], 0);
        assert_eq!(unit_f32(&mut r), 0.0);
        assert_eq!(unit_f32(&mut r), 1.0 - 1.0 / 16_777_216.0);
        assert!(coin(&mut r));
        assert!(!coin(&mut r));
        // Lemire: n = 3, t = 2^32 mod 3 = 1. x = 0 gives l = 0 < t: rejected; next x = 2^31
        // gives m = 3 * 2^31 -> 1.
        let mut r = Replay(vec![0, 1 << 31], 0);
        assert_eq!(uniform_below(&mut r, 3), 1);
        assert_eq!(r.1, 2);
        let mut r = Replay(vec![u32::MAX], 0);
        assert_eq!(uniform_below(&mut r, 3), 2);
        let mut r = Replay(vec![12345], 0);
        assert_eq!(uniform_below(&mut r, 1), 0);
    }

    #[test]
    fn draw_order() {
        // dims - crop = (0, 4, 1): z draws nothing, y one word, x one word (n = 1), then three
        // coins, then per channel a coin and maybe a factor.
        let words = vec![
            1 << 30,  // y: (2^30 * 4) >> 32 = 1
            7,        // x: n = 1 -> 0
            1 << 31,  // flip z
            0,        // no flip y
            u32::MAX, // flip x
            0,        // channel 0: no scale
            1 << 31,  // channel 1: scale
            1 << 31,  // factor u = 0.5 -> 1.0
        ];
        let mut r = Replay(words, 0);
        let p = draw_params(&mut r, [4, 8, 3], [4, 4, 2], 2).unwrap();
        assert_eq!(r.1, 8);
        assert_eq!(p.offset, [0, 1, 0]);
        assert_eq!(p.flip, [true, false, true]);
        assert_eq!(p.scale, vec![None, Some(1.0)]);
    }

    #[test]
    fn permutation_is_a_permutation_and_varies() {
        let p = epoch_permutation(3, 0, 50);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(p, epoch_permutation(3, 0, 50));
        assert_ne!(p, epoch_permutation(3, 1, 50));
        assert_ne!(p, epoch_permutation(4, 0, 50));
        assert!(epoch_permutation(1, 1, 0).is_empty());
    }
}
