//! Row primitives of the canonical reduction: the chain steps of several weight-gradient
//! reductions at once along a row of terms (the weight gradient of outputs whose width is not
//! a multiple of 16, [`crate::conv3d`]).
//!
//! [`fma_lanes_taps`] applies fused multiply-adds to INDEPENDENT lane accumulators: the order
//! of operations on each single lane is the order of increasing term index, so the result is
//! the same bits whether the row runs one term at a time or sixteen at a time (SIMD across
//! lanes, never across the terms of one lane). Its body is compiled per SIMD copy
//! ([`Isa::run`]): inside `#[target_feature(enable = "avx2,fma")]` on x86-64 (where
//! `f32::mul_add` becomes `vfmadd`) or `"neon"` on aarch64, else as plain code, where
//! `mul_add` is the C library's `fmaf`. Both are IEEE-754 `fma(a, b, c)`: same bits.

use crate::simd::Isa;
use protokd_reference::reduce::{lane_tree, pairwise_tree, BLOCK, LANES};

/// Number of [`LANES`]-groups of chains a canonical reduction of `n` terms has: one per
/// block, `ceil(n / BLOCK)`.
pub fn lane_blocks(n: usize) -> usize {
    n.div_ceil(BLOCK)
}

/// Steps 3 and 4 of the canonical reduction for the `ntaps` reductions held in a lane buffer
/// filled by [`fma_lanes_taps`]: for each reduction, the lane tree of every block, then the
/// pairwise tree over the blocks. Gives exactly what [`Partials::finish`](protokd_reference::reduce::Partials::finish)
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
    isa: Isa,
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
    isa.run(
        #[inline(always)]
        || fma_lanes_taps_body(lanes, first, a, x, stride, offsets),
    );
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

// Verifies (every test in this file): R-NUM-1
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::reduce::Partials;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h as f32) * (1.0 / 16_777_216.0) * 2.0 - 1.0
            })
            .collect()
    }

    /// Rows of terms that start anywhere (not on a lane boundary) and cross block boundaries
    /// give the same bits as the spec's `Partials`, on every SIMD copy this CPU has and the
    /// portable one.
    #[test]
    fn fma_lanes_taps_matches_partials() {
        for isa in Isa::usable() {
            for &stride in &[1usize, 2, 3] {
                let n = 2 * BLOCK + 333;
                let row = 37;
                let a = values(n, 1);
                let offsets = [0usize, 3, 8];
                let x = values(n * stride + 16, 2);
                let mut lanes = vec![0.0f32; lane_blocks(n) * offsets.len() * LANES];
                let mut first = 0;
                while first < n {
                    let len = row.min(n - first);
                    let xrow = &x[first * stride..];
                    let arow = &a[first..first + len];
                    fma_lanes_taps(isa, &mut lanes, first, arow, xrow, stride, &offsets);
                    first += len;
                }
                let got = finish_lanes_taps(&lanes, offsets.len());
                for (t, &o) in offsets.iter().enumerate() {
                    let mut p = Partials::new(n);
                    for i in 0..n {
                        p.fma(i, a[i], x[o + i * stride]);
                    }
                    let want = p.finish().to_bits();
                    assert_eq!(
                        got[t].to_bits(),
                        want,
                        "{} stride {stride} reduction {t}",
                        isa.name()
                    );
                }
            }
        }
    }
}
