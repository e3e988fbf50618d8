//! Fast per-channel canonical reductions of `[N, C, V]` data (BatchNorm statistics and
//! gradients, bias gradients): the canonical shape of [`crate::reduce`] over the `M = N V`
//! terms of one channel (term `i` is sample `i / V`, voxel `i % V`), with each group of 16
//! consecutive terms (one per lane) read as one contiguous run when `V` is a multiple of 16,
//! so the 16 lanes advance together as one vector step instead of 16 divided-index loads.
//! The chains, trees and results are the spec's.
//!
//! The block loop is plain Rust run through [`with_hardware_fma`]: compiled for AVX2 and FMA
//! on x86-64 (the 16 lanes in two ymm registers) and for NEON on aarch64 (four q registers:
//! each step one `fadd`/`fsub`/`fmla` per register), portable where the SIMD copies are
//! switched off. Lane `q` of the vector is the spec's chain of lane `q`; nothing is
//! reassociated.

use crate::layers::rowops::with_hardware_fma;
use crate::reduce::{lane_tree, pairwise_tree, ChannelStep as Step, BLOCK, LANES};

/// The canonical reduction of channel `ch` of `a` (and `b` for [`Step::Dot`]), both
/// `[N, C, V]` with `n` samples and `c` channels; `None` when `V` is not a multiple of 16
/// (groups of 16 terms would straddle samples: the caller runs the spec's loop).
pub fn channel(
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
            let lanes = with_hardware_fma(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::{reduce_with, sum_by};
    use crate::testutil::random_values;

    /// The fast per-channel reductions (on the copy selected for this CPU: AVX2+FMA, NEON or
    /// portable) give the spec's term-by-term loop bit for bit, over several blocks and with a
    /// short last block; `V` not a multiple of 16 is left to the spec (`None`).
    #[test]
    fn channel_reductions_give_the_spec_bits() {
        for (n, c, v) in [(1, 1, 16), (2, 3, 48), (3, 2, 1392), (1, 2, 4096 + 32)] {
            let a = random_values(n * c * v, (n * 100 + v) as u64);
            let b = random_values(n * c * v, (n * 100 + v + 1) as u64);
            let at = |d: &[f32], ch: usize, i: usize| d[((i / v) * c + ch) * v + i % v];
            for ch in 0..c {
                let mean = at(&a, ch, 0) * 0.5;
                let m = n * v;
                let spec = [
                    sum_by(m, |i| at(&a, ch, i)),
                    reduce_with(m, |acc, i| {
                        let d = at(&a, ch, i) - mean;
                        d.mul_add(d, acc)
                    }),
                    reduce_with(m, |acc, i| at(&a, ch, i).mul_add(at(&b, ch, i), acc)),
                ];
                let steps = [Step::Sum, Step::SquaredDeviation(mean), Step::Dot];
                for (step, want) in steps.into_iter().zip(spec) {
                    let got = channel(&a, &b, (n, c, v), ch, step).expect("V % 16 == 0");
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{step:?} {n}x{c}x{v} ch {ch}"
                    );
                }
            }
        }
        assert!(channel(&[0.0; 40], &[], (1, 2, 20), 0, Step::Sum).is_none());
    }
}
