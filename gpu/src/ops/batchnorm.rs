//! BatchNorm3d (reference `layers::batchnorm3d`): training forward with the running-statistics
//! update, evaluation forward, training backward. The orders are the reference module's docs.
//!
//! Per-channel sums (the mean, the squared deviations, `dbias`, `dweight`) are canonical
//! reductions: `bn_channel_lanes` (one thread per channel, block and lane; term `i` of channel
//! `c` is the value at `(i / V, c, i % V)`) then [`reduce::finish`]. The mean is computed on the
//! device and read by the squared-deviation lanes, so no operation here waits for the host.

use crate::args::{
    BnBackwardDxArgs, BnChannelLanesArgs, BnEvalInvstdArgs, BnMeanArgs, BnNormalizeArgs, BnStep,
    BnTrainStatsArgs, DevPtr,
};
use crate::device::{Buffer, Device};
use crate::error::GpuError;
use crate::kernels;
use crate::reduce;
use crate::tensor::GpuTensor;
use protokd_reference::layers::batchnorm3d::{bn_dims, Then};
use protokd_reference::tensor::Shaped;

/// What [`batchnorm3d_backward`] needs from [`batchnorm3d_forward_train`] (the reference's
/// `BnCache`).
#[derive(Clone)]
pub struct GpuBnCache {
    /// `(x - mean) * invstd`, shaped like `x`.
    pub xhat: GpuTensor,
    /// `1 / sqrt(var + eps)` per channel (biased batch variance), `[C]`.
    pub invstd: GpuTensor,
}

/// The `C` canonical per-channel reductions of `[N, C, V]` data `a` with chain step `step`
/// (`b` is read by [`BnStep::Dot`], `mean` by [`BnStep::SquaredDeviation`]; pass `a` otherwise).
fn channel_reduction(
    dev: &Device,
    a: &Buffer<f32>,
    b: &Buffer<f32>,
    mean: &Buffer<f32>,
    (n, c, v): (usize, usize, usize),
    step: BnStep,
) -> Result<Buffer<f32>, GpuError> {
    let m = n * v;
    let partials = reduce::partials(dev, c, m)?;
    dev.launch(
        kernels::BN_CHANNEL_LANES,
        reduce::lane_threads(c, m),
        &BnChannelLanesArgs {
            a: a.ptr(),
            b: b.ptr(),
            mean: mean.ptr(),
            partials: partials.ptr(),
            n: n as i64,
            c: c as i64,
            v: v as i64,
            step,
        },
    )?;
    let out = dev.zeros(c)?;
    reduce::finish(dev, &partials, &out, c, m)?;
    Ok(out)
}

/// `y = then(fma((x - shift) * invstd, weight, bias))` per element (`shift`, `invstd`,
/// `weight`, `bias` per channel; `then` the reference's `Then`: nothing, or the ReLU in the same
/// pass); with `keep_xhat`, also returns `xhat = (x - shift) * invstd`.
#[allow(clippy::too_many_arguments)]
fn normalize(
    dev: &Device,
    x: &GpuTensor,
    shift: &Buffer<f32>,
    invstd: &Buffer<f32>,
    weight: &GpuTensor,
    bias: &GpuTensor,
    keep_xhat: bool,
    then: Then,
) -> Result<(GpuTensor, Option<GpuTensor>), GpuError> {
    let [_, c, d, h, w] = x.dims5();
    let total = x.numel();
    let y = dev.zeros(total)?;
    let xhat = if keep_xhat {
        Some(dev.zeros(total)?)
    } else {
        None
    };
    dev.launch(
        kernels::BN_NORMALIZE,
        total,
        &BnNormalizeArgs {
            x: x.buf.ptr(),
            shift: shift.ptr(),
            invstd: invstd.ptr(),
            weight: weight.buf.ptr(),
            bias: bias.buf.ptr(),
            y: y.ptr(),
            xhat: xhat.as_ref().map_or(DevPtr::NULL, |b| b.ptr()),
            total: total as i64,
            c: c as i64,
            v: (d * h * w) as i64,
            relu: (then == Then::Relu) as i64,
        },
    )?;
    Ok((
        GpuTensor::from_buffer(&x.shape, y),
        xhat.map(|b| GpuTensor::from_buffer(&x.shape, b)),
    ))
}

/// Training-mode forward, as the reference's `batchnorm3d_forward_train`: per channel
/// `mean = S / Mf` (`S` the canonical sum of `x`), `var = Q / Mf` (`Q` the canonical reduction of
/// `fma(d, d, acc)`, `d = x - mean`), `invstd = 1 / sqrt(var + eps)`; per element
/// `xhat = (x - mean) * invstd`, `y = fma(xhat, weight, bias)`; new running statistics
/// `fma(0.1, mean, 0.9 * running_mean)` and `fma(0.1, var * (Mf / (M - 1)), 0.9 * running_var)`
/// replace `*running_mean` and `*running_var`, and `*num_batches_tracked` grows by one.
///
/// The caller has checked `M = N D H W >= 2` (the reference's `BatchTooSmall`); panics if not.
/// `then` as the reference's `batchnorm3d_forward_train_then` (`Then::Relu`: the ReLU of each
/// output in the same pass).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm3d_forward_train(
    dev: &Device,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    running_mean: &mut GpuTensor,
    running_var: &mut GpuTensor,
    num_batches_tracked: &mut i64,
    then: Then,
) -> Result<(GpuTensor, GpuBnCache), GpuError> {
    let dims @ (n, c, v) = bn_dims(
        x,
        &[
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
        "batchnorm3d_forward_train",
    );
    let m = n * v;
    assert!(
        m >= 2,
        "batchnorm3d_forward_train: {m} values per channel (needs at least 2)"
    );
    let mf = m as f32;
    let unbias = mf / (m - 1) as f32;

    let s = channel_reduction(dev, &x.buf, &x.buf, &x.buf, dims, BnStep::Sum)?;
    let mean = dev.zeros(c)?;
    dev.launch(
        kernels::BN_MEAN,
        c,
        &BnMeanArgs {
            s: s.ptr(),
            mean: mean.ptr(),
            c: c as i64,
            mf,
        },
    )?;
    let q = channel_reduction(dev, &x.buf, &x.buf, &mean, dims, BnStep::SquaredDeviation)?;

    let invstd = dev.zeros(c)?;
    let new_rm = dev.zeros(c)?;
    let new_rv = dev.zeros(c)?;
    dev.launch(
        kernels::BN_TRAIN_STATS,
        c,
        &BnTrainStatsArgs {
            q: q.ptr(),
            mean: mean.ptr(),
            rm: running_mean.buf.ptr(),
            rv: running_var.buf.ptr(),
            invstd: invstd.ptr(),
            rm_out: new_rm.ptr(),
            rv_out: new_rv.ptr(),
            c: c as i64,
            mf,
            unbias,
        },
    )?;

    let (y, xhat) = normalize(dev, x, &mean, &invstd, weight, bias, true, then)?;
    *running_mean = GpuTensor::from_buffer(&[c], new_rm);
    *running_var = GpuTensor::from_buffer(&[c], new_rv);
    *num_batches_tracked += 1;
    let cache = GpuBnCache {
        xhat: xhat.expect("normalize keeps xhat when asked"),
        invstd: GpuTensor::from_buffer(&[c], invstd),
    };
    Ok((y, cache))
}

/// Evaluation-mode forward, as the reference's `batchnorm3d_forward_eval`:
/// `invstd = 1 / sqrt(running_var + eps)` per channel, then per element
/// `y = then(fma((x - running_mean) * invstd, weight, bias))`.
pub fn batchnorm3d_forward_eval(
    dev: &Device,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    running_mean: &GpuTensor,
    running_var: &GpuTensor,
    then: Then,
) -> Result<GpuTensor, GpuError> {
    let (_, c, _) = bn_dims(
        x,
        &[
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
        "batchnorm3d_forward_eval",
    );
    let invstd = dev.zeros(c)?;
    dev.launch(
        kernels::BN_EVAL_INVSTD,
        c,
        &BnEvalInvstdArgs {
            rv: running_var.buf.ptr(),
            invstd: invstd.ptr(),
            c: c as i64,
        },
    )?;
    let (y, _) = normalize(
        dev,
        x,
        &running_mean.buf,
        &invstd,
        weight,
        bias,
        false,
        then,
    )?;
    Ok(y)
}

/// Training-mode backward, as the reference's `batchnorm3d_backward`; returns
/// `(dx, dweight, dbias)`: `dbias` the canonical sum of `dy`, `dweight` the canonical reduction
/// of `fma(dy, xhat, acc)`, then per element `k = (weight * invstd) / Mf`,
/// `dx = k * fma(-xhat, dweight, fma(Mf, dy, -dbias))`.
pub fn batchnorm3d_backward(
    dev: &Device,
    dy: &GpuTensor,
    weight: &GpuTensor,
    cache: &GpuBnCache,
) -> Result<(GpuTensor, GpuTensor, GpuTensor), GpuError> {
    let dims @ (n, c, v) = bn_dims(
        dy,
        &[("weight", weight), ("cache invstd", &cache.invstd)],
        "batchnorm3d_backward",
    );
    assert_eq!(
        cache.xhat.shape, dy.shape,
        "batchnorm3d_backward: cache and dy shapes differ"
    );
    let mf = (n * v) as f32;
    let xhat = &cache.xhat.buf;
    let dbias = channel_reduction(dev, &dy.buf, &dy.buf, &dy.buf, dims, BnStep::Sum)?;
    let dweight = channel_reduction(dev, &dy.buf, xhat, &dy.buf, dims, BnStep::Dot)?;
    let total = dy.numel();
    let dx = dev.zeros(total)?;
    dev.launch(
        kernels::BN_BACKWARD_DX,
        total,
        &BnBackwardDxArgs {
            dy: dy.buf.ptr(),
            xhat: xhat.ptr(),
            weight: weight.buf.ptr(),
            invstd: cache.invstd.buf.ptr(),
            dweight: dweight.ptr(),
            dbias: dbias.ptr(),
            dx: dx.ptr(),
            total: total as i64,
            c: c as i64,
            v: v as i64,
            mf,
        },
    )?;
    Ok((
        GpuTensor::from_buffer(&dy.shape, dx),
        GpuTensor::from_buffer(&[c], dweight),
        GpuTensor::from_buffer(&[c], dbias),
    ))
}
