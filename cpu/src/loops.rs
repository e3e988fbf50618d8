//! The fast CPU engine's column maps and canonical reductions
//! ([`protokd_reference::loops::Loops`]), which softmax and the losses are written over.
//!
//! * Column maps: chunks of [`COLUMN_CHUNK`] positions in parallel, each chunk in the engine's
//!   SIMD context ([`Isa::run`]), into a `[N, V, C]` buffer that is then transposed to
//!   `[N, C, V]`. Positions are independent and each runs the caller's column function, so
//!   every output has the spec's bits.
//! * Canonical reductions: the blocks of [`BLOCK`] terms in parallel, each block's 16 lanes
//!   filled in increasing term index inside the SIMD context, then the spec's lane tree per
//!   block and pairwise tree over the blocks: the spec's shape, hence its bits, for any thread
//!   count.

use crate::simd::Isa;
use protokd_reference::loops::{column_dims, load_columns, Loops};
use protokd_reference::reduce::{lane_tree, pairwise_tree, BLOCK, LANES};
use protokd_reference::Tensor;
use rayon::prelude::*;

/// Positions per parallel work item of a column map.
const COLUMN_CHUNK: usize = 4096;

/// The loops on the SIMD copy `isa` (one the CPU can run: built by the engine).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastLoops {
    pub(crate) isa: Isa,
}

impl Loops for FastLoops {
    fn map_columns(
        &self,
        inputs: &[&Tensor],
        f: impl Fn(&[Vec<f32>], &mut [f32]) + Sync,
    ) -> Tensor {
        let (n, c, v) = column_dims(inputs);
        let mut out = Tensor::zeros(&inputs[0].shape);
        if n * c * v == 0 {
            return out;
        }
        let mut by_position = vec![0.0f32; n * v * c];
        by_position
            .par_chunks_mut(COLUMN_CHUNK * c)
            .enumerate()
            .for_each(|(chunk, o)| {
                self.isa.run(
                    #[inline(always)]
                    || {
                        let mut cols = vec![vec![0.0f32; c]; inputs.len()];
                        for (j, col_out) in o.chunks_mut(c).enumerate() {
                            let flat = chunk * COLUMN_CHUNK + j;
                            let (nn, p) = (flat / v, flat % v);
                            load_columns(inputs, (nn, p), v, &mut cols);
                            f(&cols, col_out);
                        }
                    },
                )
            });
        out.data.par_chunks_mut(v).enumerate().for_each(|(nc, o)| {
            let (nn, k) = (nc / c, nc % c);
            for (p, ov) in o.iter_mut().enumerate() {
                *ov = by_position[(nn * v + p) * c + k];
            }
        });
        out
    }

    fn reduce_with(&self, n: usize, step: impl Fn(f32, usize) -> f32 + Sync) -> f32 {
        let blocks: Vec<f32> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
                lane_tree(self.isa.run(
                    #[inline(always)]
                    || {
                        let mut lanes = [0.0f32; LANES];
                        for i in start..end {
                            lanes[i % LANES] = step(lanes[i % LANES], i);
                        }
                        lanes
                    },
                ))
            })
            .collect();
        pairwise_tree(blocks)
    }
}
