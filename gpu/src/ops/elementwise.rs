//! The elementwise layers (reference `layers::relu`: ReLU and the additive skip) and
//! `Tensor::select_channels`: one thread per output element.

use crate::args::{
    ElementwiseAddArgs, ElementwiseCountNonfiniteArgs, ElementwiseReluBackwardArgs,
    ElementwiseReluForwardArgs, ElementwiseSelectChannelsArgs, ElementwiseSumCountsArgs,
};
use crate::device::Device;
use crate::error::GpuError;
use crate::kernels;
use crate::tensor::GpuTensor;

/// As the reference's `relu_forward`: `y = x` where `x > 0` or `x` is NaN (its bits passed
/// on), else `+0.0` (also for `-0.0` and `-inf`).
pub fn relu_forward(dev: &Device, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    let n = x.numel();
    let y = dev.zeros(n)?;
    dev.launch(
        kernels::ELEMENTWISE_RELU_FORWARD,
        n,
        &ElementwiseReluForwardArgs {
            x: x.buf.ptr(),
            y: y.ptr(),
            n: n as i64,
        },
    )?;
    Ok(GpuTensor::from_buffer(&x.shape, y))
}

/// As the reference's `relu_backward`, from the forward's OUTPUT `y`: `dx = +0.0` where
/// `y <= 0`, else `dy` (so a NaN `y` passes `dy` through).
pub fn relu_backward(dev: &Device, dy: &GpuTensor, y: &GpuTensor) -> Result<GpuTensor, GpuError> {
    assert_eq!(dy.shape, y.shape, "relu_backward: dy and y shapes differ");
    let n = dy.numel();
    let dx = dev.zeros(n)?;
    dev.launch(
        kernels::ELEMENTWISE_RELU_BACKWARD,
        n,
        &ElementwiseReluBackwardArgs {
            dy: dy.buf.ptr(),
            y: y.buf.ptr(),
            dx: dx.ptr(),
            n: n as i64,
        },
    )?;
    Ok(GpuTensor::from_buffer(&dy.shape, dx))
}

/// As the reference's `add_forward`: `y = a + b` (one IEEE addition per element).
pub fn add(dev: &Device, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor, GpuError> {
    assert_eq!(a.shape, b.shape, "add_forward: operand shapes differ");
    let n = a.numel();
    let y = dev.zeros(n)?;
    dev.launch(
        kernels::ELEMENTWISE_ADD,
        n,
        &ElementwiseAddArgs {
            a: a.buf.ptr(),
            b: b.buf.ptr(),
            y: y.ptr(),
            n: n as i64,
        },
    )?;
    Ok(GpuTensor::from_buffer(&a.shape, y))
}

/// As the reference's `Tensor::select_channels`: channels `channels` (in this order, repeats
/// allowed) of a `[N, C, ...]` tensor. Panics on an out-of-range channel.
pub fn select_channels(
    dev: &Device,
    x: &GpuTensor,
    channels: &[usize],
) -> Result<GpuTensor, GpuError> {
    let (n, c) = (x.shape[0], x.shape[1]);
    let v: usize = x.shape[2..].iter().product();
    let k = channels.len();
    let index: Vec<u32> = channels
        .iter()
        .map(|&ch| {
            assert!(ch < c, "select_channels: channel {ch} of {c}");
            ch as u32
        })
        .collect();
    let mut shape = x.shape.clone();
    shape[1] = k;
    let total = n * k * v;
    let y = dev.zeros(total)?;
    let index = dev.upload(&index)?;
    dev.launch(
        kernels::ELEMENTWISE_SELECT_CHANNELS,
        total,
        &ElementwiseSelectChannelsArgs {
            x: x.buf.ptr(),
            channels: index.ptr(),
            y: y.ptr(),
            n: n as i64,
            c: c as i64,
            k: k as i64,
            v: v as i64,
        },
    )?;
    Ok(GpuTensor::from_buffer(&shape, y))
}

/// Number of NaN and infinite values in `x`, counted on the device (two launches, then 256
/// integers downloaded): `elementwise_count_nonfinite` with up to 65536 threads, each counting a
/// strided share, then `elementwise_sum_counts` folds those counts to 256. Integer counts are
/// exact in any order.
pub fn count_non_finite(dev: &Device, x: &GpuTensor) -> Result<u64, GpuError> {
    const THREADS: usize = 1 << 16;
    const SUMS: usize = 256;
    let n = x.numel();
    let threads = n.clamp(1, THREADS);
    let counts = dev.scratch::<u32>(threads)?;
    dev.launch(
        kernels::ELEMENTWISE_COUNT_NONFINITE,
        threads,
        &ElementwiseCountNonfiniteArgs {
            x: x.buf.ptr(),
            counts: counts.ptr(),
            n: n as i64,
            threads: threads as i64,
        },
    )?;
    let sums_len = threads.min(SUMS);
    let sums = dev.scratch::<u32>(sums_len)?;
    dev.launch(
        kernels::ELEMENTWISE_SUM_COUNTS,
        sums_len,
        &ElementwiseSumCountsArgs {
            counts: counts.ptr(),
            sums: sums.ptr(),
            total: threads as i64,
            out: sums_len as i64,
        },
    )?;
    Ok(dev.download(&sums)?.iter().map(|&c| c as u64).sum())
}
