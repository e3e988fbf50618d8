//! Fast Adam update: the spec's per-element update
//! ([`protokd_reference::adam::AdamScalars::update`]) on chunks of elements in parallel, each
//! in the engine's SIMD context ([`Isa::run`]). Elements are independent, so the bits are the
//! spec's.

use crate::simd::Isa;
use protokd_reference::adam::AdamScalars;
use protokd_reference::Tensor;
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

/// [`AdamScalars::update`] on every element: new `(p, m, v)` in place, on the copy `isa`.
pub(crate) fn update_tensor(
    isa: Isa,
    p: &mut Tensor,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    s: &AdamScalars,
) {
    p.data
        .par_chunks_mut(CHUNK)
        .zip(grad.data.par_chunks(CHUNK))
        .zip(m.data.par_chunks_mut(CHUNK))
        .zip(v.data.par_chunks_mut(CHUNK))
        .for_each(|(((ps, gs), ms), vs)| {
            isa.run(
                #[inline(always)]
                || {
                    for (((p, &grad), m), v) in
                        ps.iter_mut().zip(gs).zip(ms.iter_mut()).zip(vs.iter_mut())
                    {
                        (*p, *m, *v) = s.update(*p, grad, *m, *v);
                    }
                },
            )
        });
}
