//! Class-weighted cross-entropy: PyTorch `cross_entropy(s, y, weight=w, reduction='mean')`
//! with the batch's own class weights `w_c = 1 - n_c / n` (the authors' code).
//!
//! Positions `i = n * V + v` in the flat order of the `[N, D, H, W]` label map.
//!
//! # Forward, in order
//! 1. Class counts `n_c` (exact integers) over the whole batch label, `n = N * V`;
//!    `w_c = 1 - (n_c as f32 / n as f32)` (each count rounded to `f32`, one IEEE division,
//!    one subtraction).
//! 2. `logp = log_softmax(logits)` ([`crate::layers::softmax::log_softmax`]).
//! 3. Two canonical reductions over the positions in increasing `i`:
//!    * `S = sum_i fma(w_{y_i}, -logp_{y_i}(i), acc)` (the negation is exact),
//!    * `W = sum_i (acc + w_{y_i})`.
//! 4. `L = S / W` (IEEE division).
//!
//! **Deliberate deviation from PyTorch:** if `W == 0` (possible only when the whole batch is
//! one class, whose weight is then `0`), PyTorch returns `0 / 0 = NaN`; we define `L = 0` and
//! a zero gradient, so one all-background batch cannot poison training.
//!
//! # Backward (gradient of `scale * L` w.r.t. the logits), in order
//! `ds_j(i) = scale * w_{y_i} / W * (p_j(i) - [j == y_i])`, computed through the
//! log-softmax backward:
//! 1. Per class: `a_c = (scale * w_c) / W` (two roundings).
//! 2. Upstream gradient on `logp`: `gl_j(i) = -a_{y_i}` at `j = y_i`, `+0.0` elsewhere.
//! 3. `ds = log_softmax_backward(gl, p)` with `p = softmax(logits)`
//!    ([`crate::layers::softmax::log_softmax_backward`]): `T = sum_c gl_c` sequentially from
//!    `+0.0` (which is `-a_{y_i}` exactly, all other terms being `+0.0`), then
//!    `ds_j = fma(-p_j, T, gl_j)`, i.e. `p_j * a_{y_i} - a_{y_i} [j == y_i]` with one rounding.
//!
//! If `W == 0` the gradient is all `+0.0`.

use super::{check_labels, ncv};
use crate::layers::softmax::{log_softmax_backward_on, log_softmax_on, softmax_on};
use crate::loops::{Loops, Plain};
use crate::real::Real;
use crate::{LabelMap, Tensor};
use rayon::prelude::*;

/// What the cross-entropy forward computed: the loss and everything [`ce_backward`] needs.
#[derive(Clone, Debug)]
pub struct CeForward<R: Real = f32> {
    /// `L = S / W` (or `0` when `W == 0`).
    pub loss: R,
    /// `p = softmax(logits)`, `[N, C, D, H, W]` (for the backward).
    pub probs: Tensor<R>,
    /// Exact voxel count of each class in the batch label.
    pub class_counts: Vec<u64>,
    /// `w_c = 1 - n_c / n`, per class.
    pub class_weights: Vec<R>,
    /// `S = sum_i w_{y_i} * (-logp_{y_i}(i))`.
    pub weighted_nll: R,
    /// `W = sum_i w_{y_i}`.
    pub weight_sum: R,
}

/// The class-weighted cross-entropy of `logits` `[N, C, D, H, W]` against `labels`
/// `[N, D, H, W]` (module docs).
pub fn ce_loss_on<R: Real>(
    l: &impl Loops<R>,
    logits: &Tensor<R>,
    labels: &LabelMap,
) -> CeForward<R> {
    let (_, n_classes, v) = ncv(logits);
    check_labels("ce_loss", logits, labels, Some(n_classes));
    let positions = labels.data.len();
    let y = &labels.data;

    let mut class_counts = vec![0u64; n_classes];
    for &label in y {
        class_counts[label as usize] += 1;
    }
    let class_weights: Vec<R> = class_counts
        .iter()
        .map(|&nc| R::ONE - (R::from_usize(nc as usize) / R::from_usize(positions)))
        .collect();

    let logp = log_softmax_on(l, logits);
    let w = &class_weights;
    let lp = &logp.data;
    let weighted_nll = l.reduce_with(positions, |acc, i| {
        let c = y[i] as usize;
        let at = ((i / v) * n_classes + c) * v + i % v;
        w[c].mul_add(-lp[at], acc)
    });
    let weight_sum = l.reduce_with(positions, |acc, i| acc + w[y[i] as usize]);
    let loss = if weight_sum == R::ZERO {
        R::ZERO
    } else {
        weighted_nll / weight_sum
    };

    CeForward {
        loss,
        probs: softmax_on(l, logits),
        class_counts,
        class_weights,
        weighted_nll,
        weight_sum,
    }
}

/// Gradient of `scale * L_ce` w.r.t. the logits (module docs for the order).
pub fn ce_backward_on<R: Real>(
    l: &impl Loops<R>,
    fwd: &CeForward<R>,
    labels: &LabelMap,
    scale: R,
) -> Tensor<R> {
    let (_, n_classes, v) = ncv(&fwd.probs);
    check_labels("ce_backward", &fwd.probs, labels, Some(n_classes));
    if fwd.weight_sum == R::ZERO {
        return Tensor::zeros(&fwd.probs.shape);
    }
    let a: Vec<R> = fwd
        .class_weights
        .iter()
        .map(|&wc| (scale * wc) / fwd.weight_sum)
        .collect();
    let mut gl = Tensor::zeros(&fwd.probs.shape);
    gl.data
        .par_chunks_mut(n_classes * v)
        .enumerate()
        .for_each(|(n, out)| {
            for vox in 0..v {
                let c = labels.data[n * v + vox] as usize;
                out[c * v + vox] = -a[c];
            }
        });
    log_softmax_backward_on(l, &gl, &fwd.probs)
}

/// [`ce_loss_on`] on the spec's loops ([`Plain`]).
pub fn ce_loss<R: Real>(logits: &Tensor<R>, labels: &LabelMap) -> CeForward<R> {
    ce_loss_on(&Plain, logits, labels)
}

/// [`ce_backward_on`] on the spec's loops ([`Plain`]).
pub fn ce_backward<R: Real>(fwd: &CeForward<R>, labels: &LabelMap, scale: R) -> Tensor<R> {
    ce_backward_on(&Plain, fwd, labels, scale)
}

// Verifies (every test in this file): R-MTH-5
#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const SHAPE: [usize; 5] = [2, 4, 4, 5, 6];
    const DIMS: [usize; 4] = [2, 4, 5, 6];

    /// Straightforward `f64` weighted cross-entropy (weights in `f64` too).
    fn ce64(s: &Tensor, y: &LabelMap) -> f64 {
        let (n, c, v) = ncv(s);
        let mut counts = vec![0.0f64; c];
        for &label in &y.data {
            counts[label as usize] += 1.0;
        }
        let total = y.data.len() as f64;
        let w: Vec<f64> = counts.iter().map(|nc| 1.0 - nc / total).collect();
        let (mut num, mut den) = (0.0, 0.0);
        for b in 0..n {
            for vox in 0..v {
                let (_, lp) = softmax64(&column(s, b, vox));
                let label = y.data[b * v + vox] as usize;
                num += w[label] * -lp[label];
                den += w[label];
            }
        }
        num / den
    }

    #[test]
    fn forward_matches_f64() {
        for seed in 0..4 {
            let s = random_tensor(&SHAPE, 100 + seed, 3.0);
            let y = random_labels(DIMS, 4, 200 + seed);
            let got = ce_loss(&s, &y).loss as f64;
            let want = ce64(&s, &y);
            assert!(rel(got, want) < 1e-5, "{got} vs {want}");
        }
    }

    /// Along random directions `u`: central differences of the `f32` forward with
    /// `h = 3e-2` (relative error below `2e-3`, dominated by the forward's rounding), and of the
    /// `f64` reference with `h = 1e-3` (relative error below `1e-5`: checks the derivation).
    #[test]
    fn backward_matches_finite_differences() {
        for seed in 0..3 {
            let s = random_tensor(&SHAPE, 300 + seed, 3.0);
            let y = random_labels(DIMS, 4, 400 + seed);
            let u = random_tensor(&SHAPE, 500 + seed, 1.0);
            let g = ce_backward(&ce_loss(&s, &y), &y, 1.0);
            assert_fd(&s, &g, &u, 3e-2, 2e-3, |x| ce_loss(x, &y).loss as f64);
            assert_fd(&s, &g, &u, 1e-3, 1e-5, |x| ce64(x, &y));
        }
    }

    #[test]
    fn scale_multiplies_the_gradient() {
        let s = random_tensor(&SHAPE, 600, 3.0);
        let y = random_labels(DIMS, 4, 601);
        let f = ce_loss(&s, &y);
        let g1 = ce_backward(&f, &y, 1.0);
        assert_exactly_doubled(&g1, &ce_backward(&f, &y, 2.0));
        assert_scaled(&g1, &ce_backward(&f, &y, 10.0), 10.0, 1e-6);
    }

    #[test]
    fn single_class_batch_gives_zero_loss_and_gradient() {
        let s = random_tensor(&SHAPE, 700, 3.0);
        let y = LabelMap::new(DIMS, vec![2; DIMS.iter().product()]);
        let f = ce_loss(&s, &y);
        assert_eq!(f.weight_sum, 0.0);
        assert_eq!(f.loss.to_bits(), 0.0f32.to_bits());
        let g = ce_backward(&f, &y, 1.0);
        assert!(g.data.iter().all(|&x| x.to_bits() == 0));
    }

    #[test]
    fn weights_follow_the_counts() {
        let mut data = vec![0u8; 120];
        data[..30].fill(1);
        data[30..36].fill(3);
        let y = LabelMap::new([1, 4, 5, 6], data);
        let f = ce_loss(&random_tensor(&[1, 4, 4, 5, 6], 9, 1.0), &y);
        assert_eq!(f.class_counts, vec![84, 30, 0, 6]);
        assert_eq!(f.class_weights, vec![0.3, 0.75, 1.0, 0.95]);
    }
}
