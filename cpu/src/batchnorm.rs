//! Fast BatchNorm3d: the spec's order ([`protokd_reference::layers::batchnorm3d`]) with the
//! per-channel reductions of [`crate::reduce`] (channels in parallel) and the per-value passes
//! over whole `(n, c)` planes in parallel, each in the engine's SIMD context ([`Isa::run`]).
//! Every value is computed by the spec's own per-value functions (`normalize`, `input_grad`,
//! `inverse_std`, `grad_scale`, `update_running_statistics`), so the arithmetic is written once.
//!
//! The forward can apply the ReLU in the same pass (`Then::Relu`): `relu(fma(xhat, weight,
//! bias))` is written directly, and the BatchNorm output is never stored; the bits are those
//! of the two layers one after the other (the spec's definition of the VNet unit).

use crate::reduce::channel_reduction;
use crate::simd::Isa;
use protokd_reference::layers::batchnorm3d::{
    backward_dims, forward_dims, grad_scale, input_grad, inverse_std, normalize, training_values,
    update_running_statistics, BatchTooSmall, BnCache, Then,
};
use protokd_reference::reduce::ChannelStep as Step;
use protokd_reference::Tensor;
use rayon::prelude::*;

/// The spec's `batchnorm3d_forward_train`, then `then` on every output, on the copy `isa`.
/// The running statistics are `(running_mean, running_var, num_batches_tracked)`.
pub(crate) fn forward_train(
    isa: Isa,
    x: &Tensor,
    (weight, bias): (&Tensor, &Tensor),
    (running_mean, running_var, num_batches_tracked): (&mut Tensor, &mut Tensor, &mut i64),
    then: Then,
) -> Result<(Tensor, BnCache), BatchTooSmall> {
    let (n, c, v) = forward_dims(
        x,
        [weight, bias, &*running_mean, &*running_var],
        "batchnorm3d_forward_train",
    );
    let m = training_values(n, v)?;
    let mf = m as f32;
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = channel_reduction(isa, &x.data, &[], (n, c, v), ch, Step::Sum) / mf;
            let step = Step::SquaredDeviation(mean);
            let var = channel_reduction(isa, &x.data, &[], (n, c, v), ch, step) / mf;
            (mean, var)
        })
        .collect();
    let invstd: Vec<f32> = stats.iter().map(|&(_, var)| inverse_std(var)).collect();
    let mut xhat = Tensor::zeros(&x.shape);
    let mut y = Tensor::zeros(&x.shape);
    xhat.data
        .par_chunks_mut(v)
        .zip(y.data.par_chunks_mut(v))
        .zip(x.data.par_chunks(v))
        .enumerate()
        .for_each(|(nc, ((xh, yo), xi))| {
            let ch = nc % c;
            let (mean, is, wc, bc) = (stats[ch].0, invstd[ch], weight.data[ch], bias.data[ch]);
            isa.run(
                #[inline(always)]
                || {
                    for ((h, o), &xv) in xh.iter_mut().zip(yo.iter_mut()).zip(xi) {
                        let (hv, ov) = normalize(xv, mean, is, wc, bc);
                        *h = hv;
                        *o = then.apply(ov);
                    }
                },
            );
        });
    update_running_statistics(&stats, m, running_mean, running_var, num_batches_tracked);
    Ok((y, BnCache { xhat, invstd }))
}

/// The spec's `batchnorm3d_forward_eval`, then `then` on every output, on the copy `isa`.
/// The running statistics are `(running_mean, running_var)`.
pub(crate) fn forward_eval(
    isa: Isa,
    x: &Tensor,
    (weight, bias): (&Tensor, &Tensor),
    (running_mean, running_var): (&Tensor, &Tensor),
    then: Then,
) -> Tensor {
    let (_, c, v) = forward_dims(
        x,
        [weight, bias, running_mean, running_var],
        "batchnorm3d_forward_eval",
    );
    let invstd: Vec<f32> = running_var.data.iter().map(|&rv| inverse_std(rv)).collect();
    let mut y = Tensor::zeros(&x.shape);
    if v == 0 {
        return y;
    }
    y.data
        .par_chunks_mut(v)
        .zip(x.data.par_chunks(v))
        .enumerate()
        .for_each(|(nc, (yo, xi))| {
            let ch = nc % c;
            let (rm, is) = (running_mean.data[ch], invstd[ch]);
            let (wc, bc) = (weight.data[ch], bias.data[ch]);
            isa.run(
                #[inline(always)]
                || {
                    for (o, &xv) in yo.iter_mut().zip(xi) {
                        *o = then.apply(normalize(xv, rm, is, wc, bc).1);
                    }
                },
            );
        });
    y
}

/// The spec's `batchnorm3d_backward` on the copy `isa`: `(dx, dweight, dbias)`.
pub(crate) fn backward(
    isa: Isa,
    dy: &Tensor,
    weight: &Tensor,
    cache: &BnCache,
) -> (Tensor, Tensor, Tensor) {
    let (n, c, v) = backward_dims(dy, weight, cache);
    let mf = (n * v) as f32;
    let xh = &cache.xhat.data;
    let sums: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let db = channel_reduction(isa, &dy.data, &[], (n, c, v), ch, Step::Sum);
            let dw = channel_reduction(isa, &dy.data, xh, (n, c, v), ch, Step::Dot);
            (dw, db)
        })
        .collect();
    let mut dx = Tensor::zeros(&dy.shape);
    if v > 0 {
        dx.data
            .par_chunks_mut(v)
            .zip(dy.data.par_chunks(v))
            .zip(xh.par_chunks(v))
            .enumerate()
            .for_each(|(nc, ((o, g), h))| {
                let ch = nc % c;
                let (dw, db) = sums[ch];
                let k = grad_scale(weight.data[ch], cache.invstd[ch], mf);
                isa.run(
                    #[inline(always)]
                    || {
                        for ((ov, &gv), &hv) in o.iter_mut().zip(g).zip(h) {
                            *ov = input_grad(gv, hv, k, mf, dw, db);
                        }
                    },
                );
            });
    }
    let dweight = Tensor::from_vec(&[c], sums.iter().map(|s| s.0).collect());
    let dbias = Tensor::from_vec(&[c], sums.iter().map(|s| s.1).collect());
    (dx, dweight, dbias)
}
