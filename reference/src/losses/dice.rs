//! Soft Dice loss over the whole batch (the authors' `dice_loss`, applied per class).
//!
//! `p = softmax(s)` over the class axis, `g_c(i) = [y_i == c]` (one-hot labels), positions
//! `i = n * V + v` in the flat order of the `[N, D, H, W]` label map.
//!
//! # Forward, in order
//! 1. `p = softmax(logits)` ([`crate::layers::softmax::softmax`]).
//! 2. For each class `c` (ascending), three canonical reductions over the positions
//!    `i = 0 .. N*V` in increasing `i`, each term one fma on its lane
//!    (`g` is `1.0` or `0.0`, so `g * g` and `p * g` are exact):
//!    * `I_c = sum_i fma(p_c(i), g_c(i), acc)` (intersection),
//!    * `P_c = sum_i fma(p_c(i), p_c(i), acc)`,
//!    * `G_c = sum_i fma(g_c(i), g_c(i), acc)` (the voxel count of class `c`, exact below
//!      `2^24`).
//! 3. `num_c = 2 * I_c + 1e-5` (the product is exact, one rounding for the sum),
//!    `den_c = (G_c + P_c) + 1e-5`, `dice_c = num_c / den_c`.
//! 4. `L = (((0 + (1 - dice_0)) + (1 - dice_1)) + ...) / C`: a sequential sum over the
//!    classes from `+0.0`, each term `1 - dice_c` rounded on its own, then one IEEE division
//!    by `C as f32`.
//!
//! # Backward (gradient of `scale * L` w.r.t. the logits), in order
//! `dL/dp_c(i) = -(1/C) * (2 g_c den_c - 2 num_c p_c) / den_c^2`:
//! 1. Per class: `coef_c = -((scale / C) / (den_c * den_c))` (three roundings: `scale / C`,
//!    `den_c * den_c`, the quotient; the negation is exact); `a_c = 2 * den_c` and
//!    `b_c = 2 * num_c` (exact).
//! 2. Per element: `t = fma(-b_c, p_c(i), g_c(i) * a_c)` (`g * a_c` is exact: `a_c` or
//!    `+0.0`), then `dp_c(i) = coef_c * t`.
//! 3. `ds = softmax_backward(dp, p)` ([`crate::layers::softmax::softmax_backward`]).

use super::{check_labels, ncv, DICE_SMOOTH};
use crate::layers::softmax::{softmax_backward_on, softmax_on};
use crate::loops::{Loops, Plain};
use crate::real::Real;
use crate::{LabelMap, Tensor};
use rayon::prelude::*;

/// What the Dice forward computed: the loss and everything [`dice_backward`] needs.
#[derive(Clone, Debug)]
pub struct DiceForward<R: Real = f32> {
    /// `L = mean over classes of (1 - dice_c)`.
    pub loss: R,
    /// `p = softmax(logits)`, `[N, C, D, H, W]`.
    pub probs: Tensor<R>,
    /// `I_c = sum p_c * g_c`, per class.
    pub intersect: Vec<R>,
    /// `P_c = sum p_c * p_c`, per class.
    pub pred_sq: Vec<R>,
    /// `G_c = sum g_c * g_c` (the voxel count of class `c`), per class.
    pub label_sq: Vec<R>,
    /// `num_c = 2 * I_c + 1e-5`, per class.
    pub numerator: Vec<R>,
    /// `den_c = (G_c + P_c) + 1e-5`, per class.
    pub denominator: Vec<R>,
    /// `dice_c = num_c / den_c`, per class.
    pub dice: Vec<R>,
}

/// `1.0` where the label is `c`, else `0.0`.
#[inline]
fn onehot<R: Real>(y: u8, c: usize) -> R {
    if y as usize == c {
        R::ONE
    } else {
        R::ZERO
    }
}

/// The Dice loss of `logits` `[N, C, D, H, W]` against `labels` `[N, D, H, W]` (module docs).
pub fn dice_loss_on<R: Real>(
    l: &impl Loops<R>,
    logits: &Tensor<R>,
    labels: &LabelMap,
) -> DiceForward<R> {
    let (_, n_classes, v) = ncv(logits);
    check_labels("dice_loss", logits, labels, Some(n_classes));
    let probs = softmax_on(l, logits);
    let positions = labels.data.len();
    let p = &probs.data;
    let y = &labels.data;
    // Index of p_c at position i = n * V + vox.
    let at = |c: usize, i: usize| ((i / v) * n_classes + c) * v + i % v;

    let mut intersect = Vec::with_capacity(n_classes);
    let mut pred_sq = Vec::with_capacity(n_classes);
    let mut label_sq = Vec::with_capacity(n_classes);
    for c in 0..n_classes {
        intersect.push(l.reduce_with(positions, |acc, i| {
            p[at(c, i)].mul_add(onehot(y[i], c), acc)
        }));
        pred_sq.push(l.reduce_with(positions, |acc, i| {
            let pc = p[at(c, i)];
            pc.mul_add(pc, acc)
        }));
        label_sq.push(l.reduce_with(positions, |acc, i| {
            let g: R = onehot(y[i], c);
            g.mul_add(g, acc)
        }));
    }

    let mut numerator = Vec::with_capacity(n_classes);
    let mut denominator = Vec::with_capacity(n_classes);
    let mut dice = Vec::with_capacity(n_classes);
    let mut total = R::ZERO;
    for c in 0..n_classes {
        let num = R::from_f64(2.0) * intersect[c] + R::decimal(DICE_SMOOTH);
        let den = (label_sq[c] + pred_sq[c]) + R::decimal(DICE_SMOOTH);
        let d = num / den;
        total += R::ONE - d;
        numerator.push(num);
        denominator.push(den);
        dice.push(d);
    }
    let loss = total / R::from_usize(n_classes);

    DiceForward {
        loss,
        probs,
        intersect,
        pred_sq,
        label_sq,
        numerator,
        denominator,
        dice,
    }
}

/// Gradient of `scale * L_dice` w.r.t. the logits (module docs for the order).
pub fn dice_backward_on<R: Real>(
    l: &impl Loops<R>,
    fwd: &DiceForward<R>,
    labels: &LabelMap,
    scale: R,
) -> Tensor<R> {
    let (_, n_classes, v) = ncv(&fwd.probs);
    check_labels("dice_backward", &fwd.probs, labels, Some(n_classes));
    let coef: Vec<R> = fwd
        .denominator
        .iter()
        .map(|&den| -((scale / R::from_usize(n_classes)) / (den * den)))
        .collect();
    let a: Vec<R> = fwd
        .denominator
        .iter()
        .map(|&den| R::from_f64(2.0) * den)
        .collect();
    let b: Vec<R> = fwd
        .numerator
        .iter()
        .map(|&num| R::from_f64(2.0) * num)
        .collect();

    let mut dp = Tensor::zeros(&fwd.probs.shape);
    dp.data
        .par_chunks_mut(n_classes * v)
        .enumerate()
        .for_each(|(n, out)| {
            let y = &labels.data[n * v..(n + 1) * v];
            for c in 0..n_classes {
                let base = (n * n_classes + c) * v;
                for vox in 0..v {
                    let p = fwd.probs.data[base + vox];
                    let t = (-b[c]).mul_add(p, onehot::<R>(y[vox], c) * a[c]);
                    out[c * v + vox] = coef[c] * t;
                }
            }
        });
    softmax_backward_on(l, &dp, &fwd.probs)
}

/// [`dice_loss_on`] on the spec's loops ([`Plain`]).
pub fn dice_loss<R: Real>(logits: &Tensor<R>, labels: &LabelMap) -> DiceForward<R> {
    dice_loss_on(&Plain, logits, labels)
}

/// [`dice_backward_on`] on the spec's loops ([`Plain`]).
pub fn dice_backward<R: Real>(fwd: &DiceForward<R>, labels: &LabelMap, scale: R) -> Tensor<R> {
    dice_backward_on(&Plain, fwd, labels, scale)
}

// Verifies (every test in this file): R-MTH-5
#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const SHAPE: [usize; 5] = [2, 4, 4, 5, 6];
    const DIMS: [usize; 4] = [2, 4, 5, 6];

    /// Straightforward `f64` Dice.
    fn dice64(s: &Tensor, y: &LabelMap) -> f64 {
        let (n, c, v) = ncv(s);
        let (mut inter, mut pp, mut gg) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        for b in 0..n {
            for vox in 0..v {
                let (p, _) = softmax64(&column(s, b, vox));
                let label = y.data[b * v + vox] as usize;
                for k in 0..c {
                    let g = if k == label { 1.0 } else { 0.0 };
                    inter[k] += p[k] * g;
                    pp[k] += p[k] * p[k];
                    gg[k] += g * g;
                }
            }
        }
        (0..c)
            .map(|k| 1.0 - (2.0 * inter[k] + 1e-5) / (gg[k] + pp[k] + 1e-5))
            .sum::<f64>()
            / c as f64
    }

    #[test]
    fn forward_matches_f64() {
        for seed in 0..4 {
            let s = random_tensor(&SHAPE, 100 + seed, 3.0);
            let y = random_labels(DIMS, 4, 200 + seed);
            let got = dice_loss(&s, &y).loss as f64;
            let want = dice64(&s, &y);
            assert!(rel(got, want) < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn absent_class_gives_a_finite_loss() {
        let s = random_tensor(&SHAPE, 7, 3.0);
        let y = random_labels(DIMS, 3, 8); // class 3 never appears
        let f = dice_loss(&s, &y);
        assert_eq!(f.label_sq[3], 0.0);
        assert!(rel(f.loss as f64, dice64(&s, &y)) < 1e-5);
        assert!(dice_backward(&f, &y, 1.0).first_non_finite().is_none());
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
            let g = dice_backward(&dice_loss(&s, &y), &y, 1.0);
            assert_fd(&s, &g, &u, 3e-2, 2e-3, |x| dice_loss(x, &y).loss as f64);
            assert_fd(&s, &g, &u, 1e-3, 1e-5, |x| dice64(x, &y));
        }
    }

    #[test]
    fn scale_multiplies_the_gradient() {
        let s = random_tensor(&SHAPE, 600, 3.0);
        let y = random_labels(DIMS, 4, 601);
        let f = dice_loss(&s, &y);
        let g1 = dice_backward(&f, &y, 1.0);
        assert_exactly_doubled(&g1, &dice_backward(&f, &y, 2.0));
        assert_scaled(&g1, &dice_backward(&f, &y, 10.0), 10.0, 1e-6);
    }
}
