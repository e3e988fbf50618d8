//! Fast per-channel canonical reductions of `[N, C, V]` data (BatchNorm statistics and
//! gradients, bias gradients): the canonical shape of [`crate::reduce`] over the `M = N V`
//! terms of one channel (term `i` is sample `i / V`, voxel `i % V`), with each group of 16
//! consecutive terms (one per lane) read as one contiguous run when `V` is a multiple of 16,
//! so the 16 lanes advance together as one vector step instead of 16 divided-index loads.
//! The chains, trees and results are the spec's.

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
