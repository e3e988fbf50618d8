//! Fast softmax over the class axis: the spec's column function
//! ([`protokd_reference::layers::softmax::softmax_column`]) at every position, chunks of
//! positions in parallel, each in the engine's SIMD context ([`Isa::run`]), into a
//! `[N, V, C]` buffer that is then transposed to `[N, C, V]`. Positions are independent, so
//! the bits are the spec's.

use crate::simd::Isa;
use protokd_reference::layers::softmax::softmax_column;
use protokd_reference::Tensor;
use rayon::prelude::*;

/// Positions per parallel work item.
const COLUMN_CHUNK: usize = 4096;

/// `softmax(x)` over axis 1 of a `[N, C, ...]` tensor, on the copy `isa`.
pub(crate) fn softmax(isa: Isa, x: &Tensor) -> Tensor {
    assert!(
        x.shape.len() >= 2,
        "softmax: need at least [N, C], got {:?}",
        x.shape
    );
    let (n, c) = (x.shape[0], x.shape[1]);
    let v: usize = x.shape[2..].iter().product();
    let mut out = Tensor::zeros(&x.shape);
    if n * c * v == 0 {
        return out;
    }
    let mut by_position = vec![0.0f32; n * v * c];
    by_position
        .par_chunks_mut(COLUMN_CHUNK * c)
        .enumerate()
        .for_each(|(chunk, o)| {
            isa.run(
                #[inline(always)]
                || {
                    let mut col = vec![0.0f32; c];
                    for (j, col_out) in o.chunks_mut(c).enumerate() {
                        let flat = chunk * COLUMN_CHUNK + j;
                        let (nn, p) = (flat / v, flat % v);
                        for (k, ck) in col.iter_mut().enumerate() {
                            *ck = x.data[(nn * c + k) * v + p];
                        }
                        softmax_column(&col, col_out);
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
