//! BatchNorm3d: training forward (with the running-statistics update), evaluation forward,
//! and the training-mode backward.
//!
//! Shapes: `x` `[N, C, D, H, W]`; `weight`, `bias`, `running_mean`, `running_var` `[C]`.
//! Per channel `c` there are `M = N D H W` values; term `i` of every per-channel reduction is
//! the value at flat row-major position `i = (n D + d) H W + h W + w` of that channel.
//! `Mf` is `M` converted to `f32` (round to nearest). Constants: [`BN_EPS`] `= 1e-5`,
//! [`BN_MOMENTUM`] `= 0.1`, and `1 - momentum` is the `f32` constant `0.9`.
//!
//! # Training forward ([`batchnorm3d_forward_train`]), per channel, in this order
//! 1. `mean = S / Mf` with `S` the canonical sum ([`crate::reduce`]) of the `x` values.
//! 2. `var = Q / Mf` with `Q` the canonical reduction whose chain step for term `i` is
//!    `lane = fma(d_i, d_i, lane)`, `d_i = x_i - mean` (one rounded subtraction). This is the
//!    biased variance, used for normalising.
//! 3. `invstd = 1 / sqrt(var + eps)` (IEEE addition, IEEE square root, IEEE division).
//! 4. For every value: `xhat = (x - mean) * invstd` (subtraction, then multiplication),
//!    `y = fma(xhat, weight[c], bias[c])`.
//! 5. Running statistics (PyTorch's update, with the unbiased variance):
//!    `running_mean = fma(0.1, mean, 0.9 * running_mean)`;
//!    `unbiased = var * (Mf / (M - 1) as f32)` (the factor is one IEEE division, then one
//!    multiplication);
//!    `running_var = fma(0.1, unbiased, 0.9 * running_var)`;
//!    `num_batches_tracked += 1`.
//!
//! With `M < 2` the function returns [`BatchTooSmall`] and changes nothing (PyTorch refuses
//! the same input).
//!
//! # Evaluation forward ([`batchnorm3d_forward_eval`])
//! `invstd = 1 / sqrt(running_var + eps)`; for every value
//! `y = fma((x - running_mean) * invstd, weight, bias)` (subtraction, multiplication, fma).
//!
//! # Training backward ([`batchnorm3d_backward`]), per channel
//! The gradient of the training forward through the batch statistics (the running statistics
//! carry no gradient):
//! `dx = (weight invstd / M) (M dy - sum(dy) - xhat sum(dy xhat))`.
//! 1. `dbias = ` canonical sum of `dy`.
//! 2. `dweight = ` canonical reduction with chain step `lane = fma(dy_i, xhat_i, lane)`.
//! 3. `k = (weight * invstd) / Mf` (multiplication, then division).
//! 4. For every value: `dx = k * fma(-xhat, dweight, fma(Mf, dy, -dbias))` (inner fma first).
//!
//! Written as plain loops: channel by channel for the reductions, value by value for steps 4
//! (one thread; the fast engine, crate `protokd-cpu`, runs channels and planes in parallel
//! with SIMD, calling the per-value functions below, [`normalize`] and [`input_grad`]).

use crate::layers::relu::relu;
use crate::real::Real;
use crate::reduce::{channel_reduction, ChannelStep as Step};
use crate::tensor::Shaped;
use crate::Tensor;

/// BatchNorm epsilon (PyTorch default).
pub const BN_EPS: f32 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch default).
pub const BN_MOMENTUM: f32 = 0.1;
/// `1 - BN_MOMENTUM` as the `f32` constant used by the running-statistics update.
pub const BN_KEEP: f32 = 0.9;

/// Training-mode BatchNorm was given a batch with fewer than two values per channel (the
/// unbiased variance would divide by zero; PyTorch refuses it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "BatchNorm in training mode needs more than one value per channel, got {values_per_channel}"
)]
pub struct BatchTooSmall {
    /// `N * D * H * W` of the rejected input.
    pub values_per_channel: usize,
}

/// What the training backward needs from the training forward.
#[derive(Clone, Debug, PartialEq)]
pub struct BnCache<R: Real = f32> {
    /// The normalised input `(x - mean) * invstd`, shaped like `x`.
    pub xhat: Tensor<R>,
    /// `1 / sqrt(var + eps)` per channel (biased batch variance).
    pub invstd: Vec<R>,
}

/// `(N, C, V)` of an activation `x` (of any engine), and a check that the per-channel vectors
/// are `[C]`; panics with `what` in the message otherwise (a programming error).
pub fn bn_dims<T: Shaped>(x: &T, per_channel: &[(&str, &T)], what: &str) -> (usize, usize, usize) {
    let [n, c, d, h, w] = x.dims5();
    for (name, t) in per_channel {
        assert_eq!(
            t.shape(),
            [c],
            "{what}: {name} has shape {:?}, expected [{c}]",
            t.shape()
        );
    }
    (n, c, d * h * w)
}

/// The shapes of a BatchNorm forward (of any engine; `what` names the caller): [`bn_dims`] of
/// `x` with its four per-channel vectors `[weight, bias, running_mean, running_var]`.
pub fn forward_dims<T: Shaped>(x: &T, per_channel: [&T; 4], what: &str) -> (usize, usize, usize) {
    let names = ["weight", "bias", "running_mean", "running_var"];
    let named: Vec<(&str, &T)> = names.into_iter().zip(per_channel).collect();
    bn_dims(x, &named, what)
}

/// The shapes of a BatchNorm backward on host tensors: [`bn_dims`] of `dy` with `weight`, and
/// a cache of `dy`'s shape with one `invstd` per channel; panics otherwise.
pub fn backward_dims<R: Real>(
    dy: &Tensor<R>,
    weight: &Tensor<R>,
    cache: &BnCache<R>,
) -> (usize, usize, usize) {
    let (n, c, v) = bn_dims(dy, &[("weight", weight)], "batchnorm3d_backward");
    assert_eq!(
        cache.xhat.shape, dy.shape,
        "batchnorm3d_backward: cache and dy shapes differ"
    );
    assert_eq!(
        cache.invstd.len(),
        c,
        "batchnorm3d_backward: cache invstd length"
    );
    (n, c, v)
}

/// `M = n v`, the values per channel of a training forward, or [`BatchTooSmall`] when fewer
/// than two.
pub fn training_values(n: usize, v: usize) -> Result<usize, BatchTooSmall> {
    let m = n * v;
    if m < 2 {
        return Err(BatchTooSmall {
            values_per_channel: m,
        });
    }
    Ok(m)
}

/// What an engine applies to every BatchNorm output in the same pass (see
/// `Engine::batchnorm3d_relu_forward_train`): the VNet unit is `relu(batchnorm(x))`, and an
/// engine that fuses the two writes `then.apply(y)` for each output `y` instead of storing `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Nothing: the BatchNorm output.
    Nothing,
    /// [`relu`] of the BatchNorm output: the bits of the two layers one after the other.
    Relu,
}

impl Then {
    /// `y`, or `relu(y)`.
    #[inline(always)]
    pub fn apply<R: Real>(self, y: R) -> R {
        match self {
            Then::Nothing => y,
            Then::Relu => relu(y),
        }
    }
}

/// Step 3: `invstd = 1 / sqrt(var + eps)` (`eps` is `R::decimal(BN_EPS)`, [`Real::decimal`];
/// one call per channel).
#[inline(always)]
pub fn inverse_std<R: Real>(var: R) -> R {
    R::ONE / (var + R::decimal(BN_EPS)).sqrt()
}

/// Step 4 of the training forward (and the evaluation forward, with the running statistics):
/// `xhat = (x - mean) * invstd`, returned with `y = fma(xhat, weight, bias)`.
#[inline(always)]
pub fn normalize<R: Real>(x: R, mean: R, invstd: R, weight: R, bias: R) -> (R, R) {
    let xhat = (x - mean) * invstd;
    (xhat, xhat.mul_add(weight, bias))
}

/// Step 5: the running statistics of every channel from its batch `(mean, var)` (biased) over
/// `m` values per channel, then `num_batches_tracked += 1`.
pub fn update_running_statistics<R: Real>(
    stats: &[(R, R)],
    m: usize,
    running_mean: &mut Tensor<R>,
    running_var: &mut Tensor<R>,
    num_batches_tracked: &mut i64,
) {
    let unbias = R::from_usize(m) / R::from_usize(m - 1);
    let (momentum, keep) = (R::decimal(BN_MOMENTUM), R::decimal(BN_KEEP));
    for (ch, &(mean, var)) in stats.iter().enumerate() {
        let rm = &mut running_mean.data[ch];
        *rm = momentum.mul_add(mean, keep * *rm);
        let rv = &mut running_var.data[ch];
        *rv = momentum.mul_add(var * unbias, keep * *rv);
    }
    *num_batches_tracked += 1;
}

/// Backward step 3: `k = (weight * invstd) / Mf`.
#[inline(always)]
pub fn grad_scale<R: Real>(weight: R, invstd: R, mf: R) -> R {
    (weight * invstd) / mf
}

/// Backward step 4 for one value: `dx = k * fma(-xhat, dweight, fma(Mf, dy, -dbias))`.
#[inline(always)]
pub fn input_grad<R: Real>(dy: R, xhat: R, k: R, mf: R, dweight: R, dbias: R) -> R {
    k * (-xhat).mul_add(dweight, mf.mul_add(dy, -dbias))
}

/// Training-mode forward (see the module docs for the exact order). Updates the running
/// statistics and `num_batches_tracked`; returns `y` and the cache for the backward. Returns
/// [`BatchTooSmall`] (changing nothing) when `N * D * H * W < 2`.
pub fn batchnorm3d_forward_train<R: Real>(
    x: &Tensor<R>,
    weight: &Tensor<R>,
    bias: &Tensor<R>,
    running_mean: &mut Tensor<R>,
    running_var: &mut Tensor<R>,
    num_batches_tracked: &mut i64,
) -> Result<(Tensor<R>, BnCache<R>), BatchTooSmall> {
    let (n, c, v) = forward_dims(
        x,
        [weight, bias, &*running_mean, &*running_var],
        "batchnorm3d_forward_train",
    );
    let m = training_values(n, v)?;
    let mf = R::from_usize(m);
    // Steps 1-3, channel by channel.
    let mut stats = Vec::with_capacity(c);
    for ch in 0..c {
        let mean = channel_reduction(&x.data, &[], (n, c, v), ch, Step::Sum) / mf;
        let var = channel_reduction(&x.data, &[], (n, c, v), ch, Step::SquaredDeviation(mean)) / mf;
        stats.push((mean, var));
    }
    let invstd: Vec<R> = stats.iter().map(|&(_, var)| inverse_std(var)).collect();
    // Step 4, value by value (value i is in channel (i / V) % C).
    let mut xhat = Tensor::zeros(&x.shape);
    let mut y = Tensor::zeros(&x.shape);
    for (i, &xv) in x.data.iter().enumerate() {
        let ch = (i / v) % c;
        (xhat.data[i], y.data[i]) =
            normalize(xv, stats[ch].0, invstd[ch], weight.data[ch], bias.data[ch]);
    }
    update_running_statistics(&stats, m, running_mean, running_var, num_batches_tracked);
    Ok((y, BnCache { xhat, invstd }))
}

/// Evaluation-mode forward: normalises with the running statistics (see the module docs):
/// `y = fma((x - running_mean) * invstd, weight, bias)`, `invstd` from `running_var`.
pub fn batchnorm3d_forward_eval<R: Real>(
    x: &Tensor<R>,
    weight: &Tensor<R>,
    bias: &Tensor<R>,
    running_mean: &Tensor<R>,
    running_var: &Tensor<R>,
) -> Tensor<R> {
    let (_, c, v) = forward_dims(
        x,
        [weight, bias, running_mean, running_var],
        "batchnorm3d_forward_eval",
    );
    let invstd: Vec<R> = running_var.data.iter().map(|&rv| inverse_std(rv)).collect();
    let mut y = Tensor::zeros(&x.shape);
    for (i, &xv) in x.data.iter().enumerate() {
        let ch = (i / v) % c;
        let (rm, wc, bc) = (running_mean.data[ch], weight.data[ch], bias.data[ch]);
        y.data[i] = normalize(xv, rm, invstd[ch], wc, bc).1;
    }
    y
}

/// Training-mode backward (see the module docs for the exact order): returns
/// `(dx, dweight, dbias)`.
pub fn batchnorm3d_backward<R: Real>(
    dy: &Tensor<R>,
    weight: &Tensor<R>,
    cache: &BnCache<R>,
) -> (Tensor<R>, Tensor<R>, Tensor<R>) {
    let (n, c, v) = backward_dims(dy, weight, cache);
    let mf = R::from_usize(n * v);
    let xh = &cache.xhat.data;
    // Steps 1 and 2, channel by channel.
    let mut dweight = Tensor::zeros(&[c]);
    let mut dbias = Tensor::zeros(&[c]);
    for ch in 0..c {
        dbias.data[ch] = channel_reduction(&dy.data, &[], (n, c, v), ch, Step::Sum);
        dweight.data[ch] = channel_reduction(&dy.data, xh, (n, c, v), ch, Step::Dot);
    }
    // Steps 3 and 4, value by value.
    let mut dx = Tensor::zeros(&dy.shape);
    for (i, &g) in dy.data.iter().enumerate() {
        let ch = (i / v) % c;
        let k = grad_scale(weight.data[ch], cache.invstd[ch], mf);
        dx.data[i] = input_grad(g, xh[i], k, mf, dweight.data[ch], dbias.data[ch]);
    }
    (dx, dweight, dbias)
}

// Verifies (every test in this file): R-MTH-4, R-NUM-2
#[cfg(test)]
mod tests {
    use super::*;

    /// Value `i` (flat over `(n, voxel)`) of channel `ch` of a `[N, C, V]` buffer.
    fn chan_at(data: &[f32], c: usize, v: usize, ch: usize, i: usize) -> f32 {
        data[((i / v) * c + ch) * v + i % v]
    }
    use crate::reduce::Partials;
    use crate::testutil::{directional_fd_check, dot_f64, random_tensor, rel_err_norm};

    const SHAPE: [usize; 5] = [2, 3, 4, 5, 6];

    /// Per-channel f64 mean and biased variance of a `[N, C, ...]` tensor.
    fn stats_f64(x: &Tensor) -> Vec<(f64, f64)> {
        let [n, c, d, h, w] = x.dims5();
        let v = d * h * w;
        (0..c)
            .map(|ch| {
                let vals: Vec<f64> = (0..n * v)
                    .map(|i| chan_at(&x.data, c, v, ch, i) as f64)
                    .collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                (mean, var)
            })
            .collect()
    }

    /// A batch with a per-channel offset and scale, so that normalising matters.
    fn input(seed: u64) -> Tensor {
        let mut x = random_tensor(&SHAPE, seed);
        let v = SHAPE[2] * SHAPE[3] * SHAPE[4];
        for (nc, chunk) in x.data.chunks_mut(v).enumerate() {
            let ch = (nc % SHAPE[1]) as f32;
            for a in chunk {
                *a = *a * (1.0 + ch) + 0.5 * ch - 0.3;
            }
        }
        x
    }

    fn params(seed: u64) -> (Tensor, Tensor) {
        let w = random_tensor(&[3], seed);
        let b = random_tensor(&[3], seed + 1);
        (w, b)
    }

    #[test]
    fn train_forward_matches_f64() {
        let x = input(1);
        let (w, b) = params(2);
        let (mut rm, mut rv, mut nbt) =
            (Tensor::zeros(&[3]), Tensor::from_vec(&[3], vec![1.0; 3]), 0);
        let (y, cache) = batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap();
        let st = stats_f64(&x);
        let v = SHAPE[2] * SHAPE[3] * SHAPE[4];
        let want: Vec<f64> = x
            .data
            .iter()
            .enumerate()
            .map(|(i, &xv)| {
                let ch = (i / v) % 3;
                let (mean, var) = st[ch];
                (xv as f64 - mean) / (var + BN_EPS as f64).sqrt() * w.data[ch] as f64
                    + b.data[ch] as f64
            })
            .collect();
        let err = rel_err_norm(&y.data, &want);
        assert!(err < 1e-6, "relative error {err}");
        for (&got, &(_, var)) in cache.invstd.iter().zip(&st) {
            let want = 1.0 / (var + BN_EPS as f64).sqrt();
            assert!((got as f64 - want).abs() < 1e-6 * want);
        }
    }

    /// Mean, variance, invstd, y and the running statistics redone by hand in the documented
    /// order (canonical reductions via `Partials`): same bits.
    #[test]
    fn train_forward_follows_the_documented_order_bit_for_bit() {
        let x = input(3);
        let (w, b) = params(4);
        let rm0 = random_tensor(&[3], 5);
        let rv0 = Tensor::from_vec(&[3], vec![0.5, 1.0, 2.0]);
        let (mut rm, mut rv, mut nbt) = (rm0.clone(), rv0.clone(), 7i64);
        let (y, cache) = batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap();
        assert_eq!(nbt, 8);
        let v = SHAPE[2] * SHAPE[3] * SHAPE[4];
        let m = SHAPE[0] * v;
        let mf = m as f32;
        for ch in 0..3 {
            let vals: Vec<f32> = (0..m).map(|i| chan_at(&x.data, 3, v, ch, i)).collect();
            let mut s = Partials::new(m);
            for (i, &a) in vals.iter().enumerate() {
                s.add(i, a);
            }
            let mean = s.finish() / mf;
            let mut q = Partials::new(m);
            for (i, &a) in vals.iter().enumerate() {
                let d = a - mean;
                q.fma(i, d, d);
            }
            let var = q.finish() / mf;
            let invstd = 1.0 / (var + 1e-5f32).sqrt();
            assert_eq!(cache.invstd[ch].to_bits(), invstd.to_bits());
            for i in [0, 17, m - 1] {
                let (nn, p) = (i / v, i % v);
                let idx = (nn * 3 + ch) * v + p;
                let xhat = (vals[i] - mean) * invstd;
                assert_eq!(cache.xhat.data[idx].to_bits(), xhat.to_bits());
                assert_eq!(
                    y.data[idx].to_bits(),
                    xhat.mul_add(w.data[ch], b.data[ch]).to_bits()
                );
            }
            let want_rm = 0.1f32.mul_add(mean, 0.9f32 * rm0.data[ch]);
            let unbiased = var * (mf / (m - 1) as f32);
            let want_rv = 0.1f32.mul_add(unbiased, 0.9f32 * rv0.data[ch]);
            assert_eq!(rm.data[ch].to_bits(), want_rm.to_bits());
            assert_eq!(rv.data[ch].to_bits(), want_rv.to_bits());
        }
    }

    /// Running statistics against a direct f64 computation of PyTorch's update.
    #[test]
    fn running_statistics_match_direct_computation() {
        let x = input(6);
        let (w, b) = params(7);
        let rm0 = vec![0.25f32, -0.5, 1.0];
        let rv0 = vec![1.0f32, 0.5, 3.0];
        let mut rm = Tensor::from_vec(&[3], rm0.clone());
        let mut rv = Tensor::from_vec(&[3], rv0.clone());
        let mut nbt = 0i64;
        batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap();
        assert_eq!(nbt, 1);
        let m = (SHAPE[0] * SHAPE[2] * SHAPE[3] * SHAPE[4]) as f64;
        for (ch, &(mean, var)) in stats_f64(&x).iter().enumerate() {
            let want_rm = 0.9 * rm0[ch] as f64 + 0.1 * mean;
            let want_rv = 0.9 * rv0[ch] as f64 + 0.1 * var * m / (m - 1.0);
            assert!(
                (rm.data[ch] as f64 - want_rm).abs() < 1e-6,
                "running_mean[{ch}]"
            );
            assert!(
                (rv.data[ch] as f64 - want_rv).abs() < 1e-6 * want_rv,
                "running_var[{ch}]"
            );
        }
    }

    #[test]
    fn eval_forward_matches_f64_and_documented_order() {
        let x = input(8);
        let (w, b) = params(9);
        let rm = Tensor::from_vec(&[3], vec![0.1, -0.4, 0.7]);
        let rv = Tensor::from_vec(&[3], vec![0.9, 1.7, 0.3]);
        let y = batchnorm3d_forward_eval(&x, &w, &b, &rm, &rv);
        let v = SHAPE[2] * SHAPE[3] * SHAPE[4];
        let mut want = Vec::new();
        for (i, &xv) in x.data.iter().enumerate() {
            let ch = (i / v) % 3;
            want.push(
                (xv as f64 - rm.data[ch] as f64) / (rv.data[ch] as f64 + 1e-5).sqrt()
                    * w.data[ch] as f64
                    + b.data[ch] as f64,
            );
            let is = 1.0 / (rv.data[ch] + BN_EPS).sqrt();
            let bits = ((xv - rm.data[ch]) * is)
                .mul_add(w.data[ch], b.data[ch])
                .to_bits();
            assert_eq!(y.data[i].to_bits(), bits);
        }
        assert!(rel_err_norm(&y.data, &want) < 1e-6);
    }

    /// Directional finite differences of `L = sum(y * r)` through the training forward
    /// (fresh running statistics at each evaluation). The input path is nonlinear (the batch
    /// statistics depend on x): bound relative error < 1e-2 with h = 1e-2 (measured ~1e-4);
    /// weight and bias are linear: < 1e-3.
    #[test]
    fn backward_matches_finite_differences() {
        let x = input(10);
        let (w, b) = params(11);
        let r = random_tensor(&SHAPE, 12);
        let loss = |x: &Tensor, w: &Tensor, b: &Tensor| {
            let (mut rm, mut rv, mut nbt) = (Tensor::zeros(&[3]), Tensor::zeros(&[3]), 0);
            let (y, _) = batchnorm3d_forward_train(x, w, b, &mut rm, &mut rv, &mut nbt).unwrap();
            dot_f64(&y.data, &r.data)
        };
        let (mut rm, mut rv, mut nbt) = (Tensor::zeros(&[3]), Tensor::zeros(&[3]), 0);
        let (_, cache) = batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap();
        let (dx, dw, db) = batchnorm3d_backward(&r, &w, &cache);
        directional_fd_check(&x.data, &dx.data, 1e-2, 13, |v| {
            loss(&Tensor::from_vec(&SHAPE, v.to_vec()), &w, &b)
        })
        .assert_within(1e-2, "batchnorm input");
        directional_fd_check(&w.data, &dw.data, 1e-2, 14, |v| {
            loss(&x, &Tensor::from_vec(&[3], v.to_vec()), &b)
        })
        .assert_within(1e-3, "batchnorm weight");
        directional_fd_check(&b.data, &db.data, 1e-2, 15, |v| {
            loss(&x, &w, &Tensor::from_vec(&[3], v.to_vec()))
        })
        .assert_within(1e-3, "batchnorm bias");
    }

    /// The backward redone by hand in the documented order: same bits.
    #[test]
    fn backward_follows_the_documented_order_bit_for_bit() {
        let x = input(16);
        let (w, b) = params(17);
        let dy = random_tensor(&SHAPE, 18);
        let (mut rm, mut rv, mut nbt) = (Tensor::zeros(&[3]), Tensor::zeros(&[3]), 0);
        let (_, cache) = batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap();
        let (dx, dw, db) = batchnorm3d_backward(&dy, &w, &cache);
        let v = SHAPE[2] * SHAPE[3] * SHAPE[4];
        let m = SHAPE[0] * v;
        let mf = m as f32;
        for ch in 0..3 {
            let mut sb = Partials::new(m);
            let mut sw = Partials::new(m);
            for i in 0..m {
                let g = chan_at(&dy.data, 3, v, ch, i);
                sb.add(i, g);
                sw.fma(i, g, chan_at(&cache.xhat.data, 3, v, ch, i));
            }
            let (dbc, dwc) = (sb.finish(), sw.finish());
            assert_eq!(db.data[ch].to_bits(), dbc.to_bits());
            assert_eq!(dw.data[ch].to_bits(), dwc.to_bits());
            let k = (w.data[ch] * cache.invstd[ch]) / mf;
            for i in [0, 33, m - 1] {
                let idx = ((i / v) * 3 + ch) * v + i % v;
                let (g, h) = (dy.data[idx], cache.xhat.data[idx]);
                let want = k * (-h).mul_add(dwc, mf.mul_add(g, -dbc));
                assert_eq!(dx.data[idx].to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn one_value_per_channel_is_refused_without_side_effects() {
        let x = random_tensor(&[1, 2, 1, 1, 1], 19);
        let (w, b) = (Tensor::from_vec(&[2], vec![1.0; 2]), Tensor::zeros(&[2]));
        let (mut rm, mut rv, mut nbt) =
            (Tensor::zeros(&[2]), Tensor::from_vec(&[2], vec![1.0; 2]), 3);
        let err = batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap_err();
        assert_eq!(
            err,
            BatchTooSmall {
                values_per_channel: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "BatchNorm in training mode needs more than one value per channel, got 1"
        );
        assert_eq!(
            (rm.data.clone(), rv.data.clone(), nbt),
            (vec![0.0; 2], vec![1.0; 2], 3)
        );
        // Two values per channel (batch of 2, one voxel) is accepted.
        let x2 = random_tensor(&[2, 2, 1, 1, 1], 20);
        assert!(batchnorm3d_forward_train(&x2, &w, &b, &mut rm, &mut rv, &mut nbt).is_ok());
    }
}
