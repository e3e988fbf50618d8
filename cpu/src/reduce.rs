//! Fast per-channel canonical reductions of `[N, C, V]` data (BatchNorm statistics and
//! gradients, bias gradients): the canonical shape of [`protokd_reference::reduce`] over the
//! `M = N V`
//! terms of one channel (term `i` is sample `i / V`, voxel `i % V`), with each group of 16
//! consecutive terms (one per lane) read as one contiguous run when `V` is a multiple of 16,
//! so the 16 lanes advance together as one vector step instead of 16 divided-index loads.
//! The chains, trees and results are the spec's.
//!
//! The block loop is plain Rust run through [`Isa::run`]: compiled for AVX2 and FMA on
//! x86-64 (the 16 lanes in two ymm registers) and for NEON on aarch64 (four q registers: each
//! step one `fadd`/`fsub`/`fmla` per register), or portable. Lane `q` of the vector is the
//! spec's chain of lane `q`; nothing is reassociated.

use crate::simd::Isa;
use protokd_reference::reduce::{
    channel_reduction as spec_channel_reduction, lane_tree, pairwise_tree, ChannelStep as Step,
    BLOCK, LANES,
};

/// The canonical reduction of channel `ch` of `a` (and `b` for [`Step::Dot`]), both
/// `[N, C, V]` with `n` samples and `c` channels, on the copy `isa`: the 16-lane loop below
/// when `V` is a multiple of 16, else the spec's term-by-term loop (groups of 16 terms would
/// straddle samples).
pub(crate) fn channel_reduction(
    isa: Isa,
    a: &[f32],
    b: &[f32],
    ncv: (usize, usize, usize),
    ch: usize,
    step: Step,
) -> f32 {
    channel(isa, a, b, ncv, ch, step).unwrap_or_else(|| spec_channel_reduction(a, b, ncv, ch, step))
}

/// [`channel_reduction`] when `V` is a multiple of 16; `None` otherwise.
fn channel(
    isa: Isa,
    a: &[f32],
    b: &[f32],
    (n, c, v): (usize, usize, usize),
    ch: usize,
    step: Step,
) -> Option<f32> {
    if !v.is_multiple_of(LANES) {
        return None;
    }
    let m = n * v;
    let blocks: Vec<f32> = (0..m.div_ceil(BLOCK))
        .map(|blk| {
            let (start, end) = (blk * BLOCK, ((blk + 1) * BLOCK).min(m));
            let lanes = isa.run(
                #[inline(always)]
                || {
                    let mut lanes = [0.0f32; LANES];
                    for i0 in (start..end).step_by(LANES) {
                        let base = ((i0 / v) * c + ch) * v + i0 % v;
                        let xs: &[f32; LANES] = a[base..base + LANES].try_into().expect("16");
                        match step {
                            Step::Sum => {
                                for q in 0..LANES {
                                    lanes[q] += xs[q];
                                }
                            }
                            Step::SquaredDeviation(mean) => {
                                for q in 0..LANES {
                                    let d = xs[q] - mean;
                                    lanes[q] = d.mul_add(d, lanes[q]);
                                }
                            }
                            Step::Dot => {
                                let ys: &[f32; LANES] =
                                    b[base..base + LANES].try_into().expect("16");
                                for q in 0..LANES {
                                    lanes[q] = xs[q].mul_add(ys[q], lanes[q]);
                                }
                            }
                        }
                    }
                    lanes
                },
            );
            lane_tree(lanes)
        })
        .collect();
    Some(pairwise_tree(blocks))
}

// Verifies (every test in this file): R-NUM-5, R-NUM-2
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::testutil::random_values;

    /// The fast per-channel reductions, on every copy this CPU can run, give the spec's
    /// term-by-term loop bit for bit, over several blocks and with a short last block; `V` not
    /// a multiple of 16 is left to the spec (`None`).
    #[test]
    fn channel_reductions_give_the_spec_bits() {
        for isa in Isa::usable() {
            for (n, c, v) in [(1, 1, 16), (2, 3, 48), (3, 2, 1392), (1, 2, 4096 + 32)] {
                let a = random_values(n * c * v, (n * 100 + v) as u64);
                let b = random_values(n * c * v, (n * 100 + v + 1) as u64);
                for ch in 0..c {
                    let mean = a[ch * v] * 0.5;
                    for step in [Step::Sum, Step::SquaredDeviation(mean), Step::Dot] {
                        let want = spec_channel_reduction(&a, &b, (n, c, v), ch, step);
                        let got = channel(isa, &a, &b, (n, c, v), ch, step).expect("V % 16 == 0");
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{} {step:?} {n}x{c}x{v} ch {ch}",
                            isa.name()
                        );
                    }
                }
            }
        }
        assert!(channel(Isa::Portable, &[0.0; 40], &[], (1, 2, 20), 0, Step::Sum).is_none());
    }
}
