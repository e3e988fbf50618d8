//! Softmax, log-softmax and the Dice, cross-entropy and KD losses on a device
//! (reference `layers::softmax` and `losses::{dice, ce, kd}`; the orders are those modules'
//! docs, the kernels `gpu/kernels/{softmax,dice,ce,kd}.cu`, `exp` and `ln` the reference's
//! `mathfn` ported to `gpu/kernels/mathfn.cuh`).
//!
//! Every sum over positions or elements is a canonical reduction (a lanes kernel, then
//! [`reduce::finish`]). Each loss returns `(loss, gradient of scale * loss)`; the loss crosses
//! to the host in one small download at the end. Host arithmetic (single IEEE operations on
//! `f32`, the reference's own expressions) is said where it happens.

use crate::args::{
    CeBackwardArgs, CeCountLanesArgs, CeLanesArgs, DevPtr, DiceBackwardArgs, DiceClassesArgs,
    DiceLanesArgs, KdBackwardArgs, KdLanesArgs, MathfnMapExpLnArgs, SoftmaxColumnsArgs,
};
use crate::device::{Buffer, Device};
use crate::error::GpuError;
use crate::kernels;
use crate::reduce;
use crate::tensor::{GpuLabels, GpuTensor};
use protokd_reference::tensor::Shaped;

/// `(N, C, V)` of a `[N, C, ...]` tensor (`V` the product of the trailing axes).
fn ncv(shape: &[usize], what: &str) -> (usize, usize, usize) {
    assert!(
        shape.len() >= 2,
        "{what}: need at least [N, C], got {shape:?}"
    );
    (shape[0], shape[1], shape[2..].iter().product())
}

/// `(N, C, V)` of `[N, C, D, H, W]` logits, asserting that `labels` is `[N, D, H, W]`.
fn ncv_labelled(logits: &GpuTensor, labels: &GpuLabels, what: &str) -> (usize, usize, usize) {
    let [n, c, d, h, w] = logits.dims5();
    assert_eq!(
        labels.dims,
        [n, d, h, w],
        "{what}: label map {:?} does not match logits {:?}",
        labels.dims,
        logits.shape
    );
    (n, c, d * h * w)
}

/// `softmax_columns`: `p` and/or `log p` of `x / divisor` over axis 1 (per position, classes
/// ascending: max chain, `exp(s - m)`, the sequential class sum `S`, then `e / S` and
/// `(s - m) - ln S`). `x / 1` is `x` exactly, so divisor 1 is the plain (log-)softmax.
fn softmax_columns(
    dev: &Device,
    x: &GpuTensor,
    divisor: f32,
    want_p: bool,
    want_logp: bool,
) -> Result<(Option<GpuTensor>, Option<GpuTensor>), GpuError> {
    let (n, c, v) = ncv(&x.shape, "softmax");
    let out = |want: bool| -> Result<Option<Buffer<f32>>, GpuError> {
        want.then(|| dev.zeros(x.numel())).transpose()
    };
    let (p, logp) = (out(want_p)?, out(want_logp)?);
    if x.numel() > 0 {
        let ptr = |b: &Option<Buffer<f32>>| b.as_ref().map_or(DevPtr::NULL, |b| b.ptr());
        let args = SoftmaxColumnsArgs {
            x: x.buf.ptr(),
            probs: ptr(&p),
            logp: ptr(&logp),
            positions: (n * v) as i64,
            classes: c as i64,
            voxels: v as i64,
            divisor,
        };
        dev.launch(kernels::SOFTMAX_COLUMNS, n * v, &args)?;
    }
    let wrap = |b: Option<Buffer<f32>>| b.map(|b| GpuTensor::from_buffer(&x.shape, b));
    Ok((wrap(p), wrap(logp)))
}

/// As the reference's `layers::softmax::softmax`: softmax over axis 1 of `[N, C, ...]`
/// (`m = max_c s_c`, `e_c = exp(s_c - m)`, `S = ((0 + e_0) + e_1) + ...`, `p_c = e_c / S`).
pub fn softmax(dev: &Device, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    Ok(softmax_columns(dev, x, 1.0, true, false)?.0.unwrap())
}

/// As the reference's `layers::softmax::log_softmax`: `(s_c - m) - ln S` (as [`softmax`]).
pub fn log_softmax(dev: &Device, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    Ok(softmax_columns(dev, x, 1.0, false, true)?.1.unwrap())
}

/// `(dice_loss(logits, labels).loss, dice_backward(&fwd, labels, scale))` of the reference
/// (`losses::dice`): `p = softmax(logits)`; `dice_lanes` + `reduce::finish`: the `3C` canonical
/// reductions `I_c`, `P_c`, `G_c` over the positions; `dice_classes` (one thread): `num_c`,
/// `den_c`, the loss, and the backward's `coef_c`, `a_c`, `b_c`; `dice_backward`: `dp_c`, then
/// the softmax backward per position. Nothing waits for the host until the loss is downloaded.
///
/// Labels must be in `0 .. C` (the engine checks user data; a label outside is a zero one-hot
/// row here, where the reference panics).
pub fn dice(
    dev: &Device,
    logits: &GpuTensor,
    labels: &GpuLabels,
    scale: f32,
) -> Result<(f32, GpuTensor), GpuError> {
    let (n, c, v) = ncv_labelled(logits, labels, "dice");
    let positions = n * v;
    let p = softmax(dev, logits)?;
    let partials = reduce::partials(dev, 3 * c, positions)?;
    dev.launch(
        kernels::DICE_LANES,
        reduce::lane_threads(c, positions),
        &DiceLanesArgs {
            probs: p.buf.ptr(),
            labels: labels.buf.ptr(),
            partials: partials.ptr(),
            classes: c as i64,
            voxels: v as i64,
            positions: positions as i64,
        },
    )?;
    let sums = dev.zeros(3 * c)?;
    reduce::finish(dev, &partials, &sums, 3 * c, positions)?;
    let scalars = dev.zeros(1 + 3 * c)?;
    dev.launch(
        kernels::DICE_CLASSES,
        1,
        &DiceClassesArgs {
            sums: sums.ptr(),
            out: scalars.ptr(),
            classes: c as i64,
            scale,
        },
    )?;
    let ds = dev.zeros(logits.numel())?;
    dev.launch(
        kernels::DICE_BACKWARD,
        positions,
        &DiceBackwardArgs {
            probs: p.buf.ptr(),
            labels: labels.buf.ptr(),
            scalars: scalars.ptr(),
            ds: ds.ptr(),
            classes: c as i64,
            voxels: v as i64,
            positions: positions as i64,
        },
    )?;
    let loss = dev.download(&scalars)?[0];
    Ok((loss, GpuTensor::from_buffer(&logits.shape, ds)))
}

/// `(ce_loss(logits, labels).loss, ce_backward(&fwd, labels, scale))` of the reference
/// (`losses::ce`):
/// 1. `ce_count_lanes`: exact class counts `n_c` (u32 lanes). **Host round trip:** the counts
///    are downloaded and added on the host (integers, exact), where the class weights
///    `w_c = 1 - (n_c as f32 / n as f32)` are computed with the reference's expression and
///    uploaded. A label outside `0 .. C` panics here, as in the reference.
/// 2. `W == 0` exactly when every class present has `w_c == 0` (a sum of non-negative terms is
///    `0` only if each term is): then, as the reference, the loss is `0` and the gradient all
///    `+0.0`, and nothing more is launched.
/// 3. `softmax_columns` (`p` and `log p`); `ce_lanes` + `reduce::finish`: `S` and `W`;
///    `ce_backward`: `a = (scale * w_y) / W`, then the log-softmax backward per position.
/// 4. `S` and `W` are downloaded and `L = S / W` is divided on the host (one IEEE division).
pub fn ce(
    dev: &Device,
    logits: &GpuTensor,
    labels: &GpuLabels,
    scale: f32,
) -> Result<(f32, GpuTensor), GpuError> {
    let (n, c, v) = ncv_labelled(logits, labels, "ce");
    let positions = n * v;
    assert!(
        u32::try_from(positions).is_ok(),
        "ce: {positions} positions do not fit the u32 class counts"
    );
    let lanes = reduce::lane_threads(c, positions);
    let count_lanes = dev.zeros::<u32>(lanes.max(1))?;
    dev.launch(
        kernels::CE_COUNT_LANES,
        lanes,
        &CeCountLanesArgs {
            labels: labels.buf.ptr(),
            counts: count_lanes.ptr(),
            classes: c as i64,
            positions: positions as i64,
        },
    )?;
    let count_lanes = dev.download(&count_lanes)?;
    let per_class = lanes / c.max(1);
    let counts: Vec<u64> = (0..c)
        .map(|k| {
            count_lanes[k * per_class..(k + 1) * per_class]
                .iter()
                .map(|&x| x as u64)
                .sum()
        })
        .collect();
    let counted: u64 = counts.iter().sum();
    assert_eq!(
        counted,
        positions as u64,
        "ce: {} labels are not in 0..{c}",
        positions as u64 - counted
    );
    let w: Vec<f32> = counts
        .iter()
        .map(|&nc| 1.0 - (nc as f32 / positions as f32))
        .collect();
    if (0..c).all(|k| counts[k] == 0 || w[k] == 0.0) {
        return Ok((0.0, GpuTensor::zeros(dev, &logits.shape)?));
    }
    let w = dev.upload(&w)?;

    let (p, logp) = softmax_columns(dev, logits, 1.0, true, true)?;
    let (p, logp) = (p.unwrap(), logp.unwrap());
    let partials = reduce::partials(dev, 2, positions)?;
    dev.launch(
        kernels::CE_LANES,
        reduce::lane_threads(1, positions),
        &CeLanesArgs {
            logp: logp.buf.ptr(),
            labels: labels.buf.ptr(),
            w: w.ptr(),
            partials: partials.ptr(),
            classes: c as i64,
            voxels: v as i64,
            positions: positions as i64,
        },
    )?;
    let sums = dev.zeros(2)?;
    reduce::finish(dev, &partials, &sums, 2, positions)?;
    let ds = dev.zeros(logits.numel())?;
    dev.launch(
        kernels::CE_BACKWARD,
        positions,
        &CeBackwardArgs {
            probs: p.buf.ptr(),
            labels: labels.buf.ptr(),
            w: w.ptr(),
            sums: sums.ptr(),
            ds: ds.ptr(),
            classes: c as i64,
            voxels: v as i64,
            positions: positions as i64,
            scale,
        },
    )?;
    let sums = dev.download(&sums)?;
    Ok((sums[0] / sums[1], GpuTensor::from_buffer(&logits.shape, ds)))
}

/// `(kd_loss(student_logits, teacher_logits, temperature).loss, kd_backward(&fwd, scale))` of
/// the reference (`losses::kd`): `softmax_columns` with divisor `T` gives `q`, `log q` (teacher)
/// and `ps`, `ls` (student); `kd_lanes` + `reduce::finish`: the one canonical reduction over the
/// elements; `kd_backward`: `k * (ps - q)` with `k = (scale / (N*C*V as f32)) / T` computed on
/// the host. The sum is downloaded and `L = sum / (N*C*V as f32)` divided on the host (one
/// IEEE division).
pub fn kd(
    dev: &Device,
    student_logits: &GpuTensor,
    teacher_logits: &GpuTensor,
    temperature: f32,
    scale: f32,
) -> Result<(f32, GpuTensor), GpuError> {
    assert_eq!(
        student_logits.shape, teacher_logits.shape,
        "kd: student and teacher logits differ in shape"
    );
    let [n, c, d, h, w] = student_logits.dims5();
    let count = n * c * d * h * w;
    let (q, log_q) = softmax_columns(dev, teacher_logits, temperature, true, true)?;
    let (ps, ls) = softmax_columns(dev, student_logits, temperature, true, true)?;
    let (q, log_q, ps, ls) = (q.unwrap(), log_q.unwrap(), ps.unwrap(), ls.unwrap());
    let partials = reduce::partials(dev, 1, count)?;
    dev.launch(
        kernels::KD_LANES,
        reduce::lane_threads(1, count),
        &KdLanesArgs {
            q: q.buf.ptr(),
            log_q: log_q.buf.ptr(),
            ls: ls.buf.ptr(),
            partials: partials.ptr(),
            n: count as i64,
        },
    )?;
    let total = dev.zeros(1)?;
    reduce::finish(dev, &partials, &total, 1, count)?;
    let k = (scale / count as f32) / temperature;
    let ds = dev.zeros(count)?;
    dev.launch(
        kernels::KD_BACKWARD,
        count,
        &KdBackwardArgs {
            ps: ps.buf.ptr(),
            q: q.buf.ptr(),
            ds: ds.ptr(),
            n: count as i64,
            k,
        },
    )?;
    let loss = dev.download(&total)?[0] / count as f32;
    Ok((loss, GpuTensor::from_buffer(&student_logits.shape, ds)))
}

/// Test hook for the device `exp` and `ln` (`mathfn.cuh`): `(pk_exp(x_i), pk_ln(x_i))` for
/// every element, to compare with the reference's `mathfn::{exp, ln}` bit for bit.
pub fn map_exp_ln(dev: &Device, x: &Buffer<f32>) -> Result<(Buffer<f32>, Buffer<f32>), GpuError> {
    let n = x.len();
    let (e, l) = (dev.zeros(n)?, dev.zeros(n)?);
    dev.launch(
        kernels::MATHFN_MAP_EXP_LN,
        n,
        &MathfnMapExpLnArgs {
            x: x.ptr(),
            e: e.ptr(),
            l: l.ptr(),
            n: n as i64,
        },
    )?;
    Ok((e, l))
}
