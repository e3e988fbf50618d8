//! Row primitives: the only loops in the crate that the compiler is asked to vectorise.
//!
//! Every primitive here applies a list of fused multiply-adds to a row of INDEPENDENT
//! accumulators. The order of operations on each single accumulator is exactly the order
//! of the tap list (or, for [`fma_lanes_taps`], the order of increasing term index), so the
//! result is the same bits whether the row runs one element at a time or eight or sixteen
//! at a time: SIMD is used only ACROSS outputs, never across the terms of one output.
//!
//! Each primitive is one `#[inline(always)]` body compiled twice:
//! * as the **SIMD copy**, inside a function compiled for the CPU's SIMD features, called
//!   where they are present (checked at run time) and [`set_hardware_fma`] allows:
//!   - on x86-64 with AVX2 and FMA (`is_x86_feature_detected!`), inside
//!     `#[target_feature(enable = "avx2,fma")]`, where `f32::mul_add` becomes the hardware
//!     `vfmadd` instruction;
//!   - on aarch64 with NEON (`is_aarch64_feature_detected!`), inside
//!     `#[target_feature(enable = "neon")]`, where `f32::mul_add` is `fmadd`, or `fmla` on
//!     four outputs at once. (NEON and FMA are part of the aarch64 baseline, so the portable
//!     copy there is the same code; the copies that differ are the intrinsic register blocks
//!     of [`crate::fast`].)
//! * everywhere else, as plain code, where `f32::mul_add` is the C library's `fmaf` (or the
//!   native instruction on aarch64).
//!
//! Both are IEEE-754 `fma(a, b, c)` (one rounding of the exact `a * b + c`), so both give
//! the same bits; only the speed differs. There is no `unsafe` arithmetic: the `unsafe` is
//! only the call into the feature-enabled copy, made after the features were detected.

use crate::reduce::{lane_tree, pairwise_tree, BLOCK, LANES};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the SIMD copies may be used (where the CPU has the features).
static HARDWARE_FMA: AtomicBool = AtomicBool::new(true);

/// Allows (`true`, the default) or forbids, for the whole process, the SIMD copies of the row
/// primitives and of the fast kernels: AVX2+FMA and AVX-512 on x86-64, NEON on aarch64 (see
/// [`crate::fast::simd::Isa`]). With `false` everything runs the portable copy, as on a CPU
/// without these features: the results are the same bits (the tests assert it), only slower.
pub fn set_hardware_fma(enabled: bool) {
    HARDWARE_FMA.store(enabled, Ordering::Relaxed);
}

/// Whether the SIMD copies run: allowed by [`set_hardware_fma`] and present on this CPU
/// (AVX2 and FMA on x86-64, NEON on aarch64).
pub(crate) fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        HARDWARE_FMA.load(Ordering::Relaxed)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        HARDWARE_FMA.load(Ordering::Relaxed) && std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Runs `f` inside a function compiled for the CPU's SIMD features (AVX2 and FMA on x86-64,
/// NEON on aarch64) when the CPU has them and [`set_hardware_fma`] allows, so that the
/// `f32::mul_add` of a loop inlined into it become the hardware fused multiply-add
/// (`vfmadd`, `fmla`) instead of calls to the C library's `fmaf`; elsewhere runs `f` as it
/// is. Both give the same bits (IEEE `fma`); only the speed differs.
#[inline(always)]
pub fn with_hardware_fma<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if simd_available() {
        // SAFETY: the CPU has the features (checked by `simd_available`).
        return unsafe { call_simd(f) };
    }
    f()
}

/// `f()`, compiled for AVX2 and FMA (x86-64) or NEON (aarch64).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn call_simd<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// One tap of a multiply-accumulate row: read the input at `offset + j * stride` for output
/// `j` and multiply it by `weight`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tap {
    /// Offset of output `0`'s input value in the input slice.
    pub offset: usize,
    /// The weight multiplied with every input value of this tap.
    pub weight: f32,
}

/// Outputs per register block in [`fma_taps`] (eight 8-lane registers).
const CHUNK: usize = 64;

/// For every tap `t` in list order, then (independently) for every output `j`:
/// `acc[j] = fma(x[t.offset + j * stride], t.weight, acc[j])`.
///
/// Output `j` therefore receives exactly the chain
/// `acc = fma(x_0, w_0, acc); acc = fma(x_1, w_1, acc); ...` in tap order, from the value
/// it held on entry. (Internally the outputs are taken 64 at a time, which keeps them in
/// registers while all taps are applied; that changes nothing in any output's chain.)
///
/// Panics if a tap would read past the end of `x`, or if `stride == 0`.
pub fn fma_taps(acc: &mut [f32], x: &[f32], stride: usize, taps: &[Tap]) {
    fma_taps_on(simd_available(), acc, x, stride, taps);
}

/// [`fma_taps`] on the portable copy, whatever the CPU (for tests and comparisons).
pub fn fma_taps_portable(acc: &mut [f32], x: &[f32], stride: usize, taps: &[Tap]) {
    fma_taps_on(false, acc, x, stride, taps);
}

/// [`fma_taps`] on the SIMD copy when `hardware` (which the caller has checked), else on the
/// portable copy.
fn fma_taps_on(hardware: bool, acc: &mut [f32], x: &[f32], stride: usize, taps: &[Tap]) {
    assert!(stride >= 1, "fma_taps: stride must be at least 1");
    if acc.is_empty() || taps.is_empty() {
        return;
    }
    let span = (acc.len() - 1) * stride + 1;
    for t in taps {
        assert!(
            t.offset + span <= x.len(),
            "fma_taps: tap at offset {} reads {} values past a row of {}",
            t.offset,
            span,
            x.len()
        );
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if hardware {
        // SAFETY: `hardware` is only true where the CPU has the features (`simd_available`).
        unsafe { fma_taps_simd(acc, x, stride, taps) };
        return;
    }
    let _ = hardware;
    fma_taps_body(acc, x, stride, taps);
}

/// [`fma_taps_body`] compiled for AVX2 and FMA (x86-64) or NEON (aarch64).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn fma_taps_simd(acc: &mut [f32], x: &[f32], stride: usize, taps: &[Tap]) {
    fma_taps_body(acc, x, stride, taps);
}

#[inline(always)]
fn fma_taps_body(acc: &mut [f32], x: &[f32], stride: usize, taps: &[Tap]) {
    match stride {
        1 => fma_taps_const::<1>(acc, x, taps),
        2 => fma_taps_const::<2>(acc, x, taps),
        s => fma_taps_tail(acc, x, s, taps, 0),
    }
}

/// Register-blocked form for a compile-time stride: whole blocks of [`CHUNK`] outputs, then
/// the remainder.
#[inline(always)]
fn fma_taps_const<const S: usize>(acc: &mut [f32], x: &[f32], taps: &[Tap]) {
    let len = acc.len();
    let mut start = 0;
    while start + CHUNK <= len {
        let mut a = [0.0f32; CHUNK];
        a.copy_from_slice(&acc[start..start + CHUNK]);
        for t in taps {
            let base = t.offset + start * S;
            let xs = &x[base..base + (CHUNK - 1) * S + 1];
            for (j, aj) in a.iter_mut().enumerate() {
                *aj = xs[j * S].mul_add(t.weight, *aj);
            }
        }
        acc[start..start + CHUNK].copy_from_slice(&a);
        start += CHUNK;
    }
    fma_taps_tail(acc, x, S, taps, start);
}

/// Outputs `start..` one tap at a time (the accumulators stay in memory between taps).
#[inline(always)]
fn fma_taps_tail(acc: &mut [f32], x: &[f32], stride: usize, taps: &[Tap], start: usize) {
    let rest = &mut acc[start..];
    if rest.is_empty() {
        return;
    }
    let span = (rest.len() - 1) * stride + 1;
    for t in taps {
        let base = t.offset + start * stride;
        let xs = &x[base..base + span];
        if stride == 1 {
            for (aj, &xj) in rest.iter_mut().zip(xs) {
                *aj = xj.mul_add(t.weight, *aj);
            }
        } else {
            for (j, aj) in rest.iter_mut().enumerate() {
                *aj = xs[j * stride].mul_add(t.weight, *aj);
            }
        }
    }
}

/// Number of [`LANES`]-groups of chains a canonical reduction of `n` terms has: one per
/// block, `ceil(n / BLOCK)`.
pub fn lane_blocks(n: usize) -> usize {
    n.div_ceil(BLOCK)
}

/// Steps 3 and 4 of the canonical reduction for the `ntaps` reductions held in a lane buffer
/// filled by [`fma_lanes_taps`]: for each reduction, the lane tree of every block, then the
/// pairwise tree over the blocks. Gives exactly what [`crate::reduce::Partials::finish`]
/// gives for the same chains.
pub fn finish_lanes_taps(lanes: &[f32], ntaps: usize) -> Vec<f32> {
    assert!(
        ntaps > 0 && lanes.len().is_multiple_of(ntaps * LANES),
        "finish_lanes_taps: not whole blocks of lanes"
    );
    let nblocks = lanes.len() / (ntaps * LANES);
    (0..ntaps)
        .map(|t| {
            let blocks: Vec<f32> = (0..nblocks)
                .map(|b| {
                    let mut l = [0.0f32; LANES];
                    l.copy_from_slice(&lanes[(b * ntaps + t) * LANES..][..LANES]);
                    lane_tree(l)
                })
                .collect();
            pairwise_tree(blocks)
        })
        .collect()
}

/// The chain steps of `offsets.len()` canonical reductions at once, for the consecutive terms
/// `first .. first + a.len()`.
///
/// `lanes` is the buffer of all their partial sums, block-major: the 16 lanes of reduction
/// `t` in block `b` are `lanes[(b * ntaps + t) * LANES ..][.. LANES]` (`ntaps =
/// offsets.len()`; the buffer holds [`lane_blocks`]`(n) * ntaps * LANES` values, all `+0.0`
/// at the start, for reductions of `n` terms). For each term `j` (index `i = first + j`, in
/// increasing order) and each reduction `t`, with `b = i / BLOCK` and `l = i % LANES`:
/// `lanes[(b * ntaps + t) * LANES + l] = fma(a[j], x[offsets[t] + j * stride], ...)`.
///
/// Each chain (one reduction, one block, one lane) receives its terms in increasing `i`,
/// which is all the canonical reduction asks; how different chains interleave does not
/// matter. (Block-major keeps the lanes that one row of terms touches next to each other.)
///
/// Panics if a read falls outside `x` or a term outside the buffer.
pub fn fma_lanes_taps(
    lanes: &mut [f32],
    first: usize,
    a: &[f32],
    x: &[f32],
    stride: usize,
    offsets: &[usize],
) {
    fma_lanes_taps_on(simd_available(), lanes, first, a, x, stride, offsets);
}

/// [`fma_lanes_taps`] on the portable copy, whatever the CPU (for tests).
pub fn fma_lanes_taps_portable(
    lanes: &mut [f32],
    first: usize,
    a: &[f32],
    x: &[f32],
    stride: usize,
    offsets: &[usize],
) {
    fma_lanes_taps_on(false, lanes, first, a, x, stride, offsets);
}

/// [`fma_lanes_taps`] on the SIMD copy when `hardware` (which the caller has checked), else
/// on the portable copy.
fn fma_lanes_taps_on(
    hardware: bool,
    lanes: &mut [f32],
    first: usize,
    a: &[f32],
    x: &[f32],
    stride: usize,
    offsets: &[usize],
) {
    assert!(stride >= 1, "fma_lanes_taps: stride must be at least 1");
    if a.is_empty() || offsets.is_empty() {
        return;
    }
    let last = first + a.len() - 1;
    assert!(
        (last / BLOCK + 1) * offsets.len() * LANES <= lanes.len(),
        "fma_lanes_taps: term {last} is past the end of the lane buffer"
    );
    let span = (a.len() - 1) * stride + 1;
    for &o in offsets {
        assert!(
            o + span <= x.len(),
            "fma_lanes_taps: read past the input row"
        );
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if hardware {
        // SAFETY: `hardware` is only true where the CPU has the features (`simd_available`).
        unsafe { fma_lanes_taps_simd(lanes, first, a, x, stride, offsets) };
        return;
    }
    let _ = hardware;
    fma_lanes_taps_body(lanes, first, a, x, stride, offsets);
}

/// [`fma_lanes_taps_body`] compiled for AVX2 and FMA (x86-64) or NEON (aarch64).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn fma_lanes_taps_simd(
    lanes: &mut [f32],
    first: usize,
    a: &[f32],
    x: &[f32],
    stride: usize,
    offsets: &[usize],
) {
    fma_lanes_taps_body(lanes, first, a, x, stride, offsets);
}

#[inline(always)]
fn fma_lanes_taps_body(
    lanes: &mut [f32],
    first: usize,
    a: &[f32],
    x: &[f32],
    stride: usize,
    offsets: &[usize],
) {
    match stride {
        1 => fma_lanes_const::<1>(lanes, first, a, x, 1, offsets),
        2 => fma_lanes_const::<2>(lanes, first, a, x, 2, offsets),
        s => fma_lanes_const::<0>(lanes, first, a, x, s, offsets),
    }
}

/// The terms are taken in segments that stay inside one group of [`LANES`] consecutive
/// indices (so inside one block, since `BLOCK` is a multiple of `LANES`): a full segment of
/// 16 terms updates the 16 lanes of a block once each, as whole vectors, for each tap.
/// `S` is the stride when known at compile time, `0` for "use `stride`".
#[inline(always)]
fn fma_lanes_const<const S: usize>(
    lanes: &mut [f32],
    first: usize,
    a: &[f32],
    x: &[f32],
    stride: usize,
    offsets: &[usize],
) {
    let s = if S == 0 { stride } else { S };
    let ntaps = offsets.len();
    let n = a.len();
    let mut j = 0;
    while j < n {
        let i = first + j;
        let lane = i % LANES;
        let seg = (LANES - lane).min(n - j);
        let group = &mut lanes[(i / BLOCK) * ntaps * LANES..][..ntaps * LANES];
        let aseg = &a[j..j + seg];
        if seg == LANES {
            let mut av = [0.0f32; LANES];
            av.copy_from_slice(aseg);
            for (l, &o) in group.chunks_exact_mut(LANES).zip(offsets) {
                let base = o + j * s;
                let xs = &x[base..base + (LANES - 1) * s + 1];
                for q in 0..LANES {
                    l[q] = av[q].mul_add(xs[q * s], l[q]);
                }
            }
        } else {
            for (l, &o) in group.chunks_exact_mut(LANES).zip(offsets) {
                let base = o + j * s;
                let xs = &x[base..base + (seg - 1) * s + 1];
                let l = &mut l[lane..lane + seg];
                for q in 0..seg {
                    l[q] = aseg[q].mul_add(xs[q * s], l[q]);
                }
            }
        }
        j += seg;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::Partials;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h as f32) * (1.0 / 16_777_216.0) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every output's chain is the tap list in order, for strides 1, 2 and 3 and lengths
    /// that exercise the register blocks and the remainder; dispatched and portable agree.
    #[test]
    fn fma_taps_is_the_scalar_chain() {
        for &stride in &[1usize, 2, 3] {
            for &len in &[1usize, 5, 64, 130] {
                let x = values(len * stride + 40, 7);
                let taps: Vec<Tap> = (0..9)
                    .map(|t| Tap {
                        offset: (t * 5) % 37,
                        weight: values(9, 11)[t],
                    })
                    .collect();
                let init = values(len, 3);
                let mut fast = init.clone();
                fma_taps(&mut fast, &x, stride, &taps);
                let mut port = init.clone();
                fma_taps_portable(&mut port, &x, stride, &taps);
                for j in 0..len {
                    let mut acc = init[j];
                    for t in &taps {
                        acc = x[t.offset + j * stride].mul_add(t.weight, acc);
                    }
                    assert_eq!(fast[j].to_bits(), acc.to_bits(), "stride {stride} j {j}");
                    assert_eq!(port[j].to_bits(), acc.to_bits(), "stride {stride} j {j}");
                }
            }
        }
    }

    /// Rows of terms that start anywhere (not on a lane boundary) and cross block boundaries
    /// give the same bits as `Partials`.
    #[test]
    fn fma_lanes_taps_matches_partials() {
        for &stride in &[1usize, 2, 3] {
            let n = 2 * BLOCK + 333;
            let row = 37;
            let a = values(n, 1);
            let offsets = [0usize, 3, 8];
            let x = values(n * stride + 16, 2);
            let mut lanes = vec![0.0f32; lane_blocks(n) * offsets.len() * LANES];
            let mut lanes_p = lanes.clone();
            let mut first = 0;
            while first < n {
                let len = row.min(n - first);
                let xrow = &x[first * stride..];
                let arow = &a[first..first + len];
                fma_lanes_taps(&mut lanes, first, arow, xrow, stride, &offsets);
                fma_lanes_taps_portable(&mut lanes_p, first, arow, xrow, stride, &offsets);
                first += len;
            }
            let got = finish_lanes_taps(&lanes, offsets.len());
            let got_p = finish_lanes_taps(&lanes_p, offsets.len());
            for (t, &o) in offsets.iter().enumerate() {
                let mut p = Partials::new(n);
                for i in 0..n {
                    p.fma(i, a[i], x[o + i * stride]);
                }
                let want = p.finish().to_bits();
                assert_eq!(got[t].to_bits(), want, "stride {stride} reduction {t}");
                assert_eq!(got_p[t].to_bits(), want, "stride {stride} reduction {t}");
            }
        }
    }
}
