//! Pixel-wise knowledge distillation with temperature `T` (the authors' code: no `T^2`).
//!
//! `L = mean over all N*C*D*H*W elements of q * (log q - log_softmax(s / T))`,
//! `q = softmax(t / T)`, with terms where `q == 0` contributing nothing.
//!
//! # Forward, in order
//! 1. `s / T` and `t / T` element by element (IEEE divisions).
//! 2. `q = softmax(t / T)`, `log q = log_softmax(t / T)`, `ls = log_softmax(s / T)`
//!    ([`crate::layers::softmax`]); also `ps = softmax(s / T)` for the backward.
//! 3. ONE canonical reduction over the flat index `e` of `[N, C, D, H, W]` in increasing
//!    `e`, lane step `acc = fma(q_e, log q_e - ls_e, acc)` (the difference rounded first),
//!    except that where `q_e == 0` the lane is left unchanged (so a `-inf` or NaN never meets
//!    a zero weight).
//! 4. `L = sum / (N*C*V as f32)` (the count rounded to `f32`, one IEEE division).
//!
//! # Backward (gradient of `scale * L` w.r.t. the student logits `s` only)
//! `dL/ds_j = 1/(N*C*V) * 1/T * (ps_j - q_j)` (from `sum_c q_c = 1`):
//! 1. `k = (scale / (N*C*V as f32)) / T` (two IEEE divisions, in that order).
//! 2. Per element: `ds_e = k * (ps_e - q_e)` (the difference rounded first).
//!
//! The teacher gets no gradient: there is no teacher output.

use super::ncv;
use crate::layers::softmax::{log_softmax_on, softmax_on};
use crate::loops::{Loops, Plain};
use crate::real::Real;
use crate::Tensor;
use rayon::prelude::*;

/// What the KD forward computed: the loss and everything [`kd_backward`] needs.
#[derive(Clone, Debug)]
pub struct KdForward<R: Real = f32> {
    /// `L = mean(q * (log q - log_softmax(s / T)))`.
    pub loss: R,
    /// The temperature `T`.
    pub temperature: R,
    /// `q = softmax(t / T)`, `[N, C, D, H, W]`.
    pub teacher_probs: Tensor<R>,
    /// `ps = softmax(s / T)`, `[N, C, D, H, W]`.
    pub student_probs: Tensor<R>,
}

/// `x / T` element by element.
fn divided<R: Real>(x: &Tensor<R>, temperature: R) -> Tensor<R> {
    let data = x.data.par_iter().map(|&a| a / temperature).collect();
    Tensor::from_vec(&x.shape, data)
}

/// The KD loss of the student logits against the teacher logits (both `[N, C, D, H, W]`) at
/// temperature `temperature` (module docs).
pub fn kd_loss_on<R: Real>(
    l: &impl Loops<R>,
    student_logits: &Tensor<R>,
    teacher_logits: &Tensor<R>,
    temperature: R,
) -> KdForward<R> {
    assert_eq!(
        student_logits.shape, teacher_logits.shape,
        "kd_loss: student and teacher logits differ in shape"
    );
    let (n, c, v) = ncv(student_logits);
    let s = divided(student_logits, temperature);
    let t = divided(teacher_logits, temperature);
    let q = softmax_on(l, &t);
    let log_q = log_softmax_on(l, &t);
    let ls = log_softmax_on(l, &s);
    let total = l.reduce_with(q.numel(), |acc, e| {
        let qe = q.data[e];
        if qe == R::ZERO {
            acc
        } else {
            qe.mul_add(log_q.data[e] - ls.data[e], acc)
        }
    });
    let loss = total / R::from_usize(n * c * v);
    KdForward {
        loss,
        temperature,
        teacher_probs: q,
        student_probs: softmax_on(l, &s),
    }
}

/// Gradient of `scale * L_kd` w.r.t. the student logits (module docs for the order).
pub fn kd_backward<R: Real>(fwd: &KdForward<R>, scale: R) -> Tensor<R> {
    let (n, c, v) = ncv(&fwd.student_probs);
    let k = (scale / R::from_usize(n * c * v)) / fwd.temperature;
    let data = fwd
        .student_probs
        .data
        .par_iter()
        .zip(&fwd.teacher_probs.data)
        .map(|(&ps, &q)| k * (ps - q))
        .collect();
    Tensor::from_vec(&fwd.student_probs.shape, data)
}

/// [`kd_loss_on`] on the spec's loops ([`Plain`]).
pub fn kd_loss<R: Real>(
    student_logits: &Tensor<R>,
    teacher_logits: &Tensor<R>,
    temperature: R,
) -> KdForward<R> {
    kd_loss_on(&Plain, student_logits, teacher_logits, temperature)
}

// Verifies (every test in this file): R-MTH-6
#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const SHAPE: [usize; 5] = [2, 4, 4, 5, 6];

    /// Straightforward `f64` KD.
    fn kd64(s: &Tensor, t: &Tensor, temp: f64) -> f64 {
        let (n, c, v) = ncv(s);
        let mut total = 0.0;
        for b in 0..n {
            for vox in 0..v {
                let ss: Vec<f64> = column(s, b, vox).iter().map(|x| x / temp).collect();
                let tt: Vec<f64> = column(t, b, vox).iter().map(|x| x / temp).collect();
                let (q, lq) = softmax64(&tt);
                let (_, ls) = softmax64(&ss);
                for k in 0..c {
                    if q[k] > 0.0 {
                        total += q[k] * (lq[k] - ls[k]);
                    }
                }
            }
        }
        total / (n * c * v) as f64
    }

    #[test]
    fn forward_matches_f64() {
        for (seed, temp) in [(0u64, 1.0f32), (1, 2.0), (2, 10.0), (3, 10.0)] {
            let s = random_tensor(&SHAPE, 100 + seed, 4.0);
            let t = random_tensor(&SHAPE, 200 + seed, 4.0);
            let got = kd_loss(&s, &t, temp).loss as f64;
            let want = kd64(&s, &t, temp as f64);
            assert!(rel(got, want) < 1e-5, "T = {temp}: {got} vs {want}");
        }
    }

    /// A teacher probability that underflows to `0` contributes nothing (no NaN).
    #[test]
    fn zero_teacher_probability_contributes_nothing() {
        let s = random_tensor(&SHAPE, 5, 4.0);
        let mut t = random_tensor(&SHAPE, 6, 4.0);
        t.data[0] = -2000.0; // q = exp(-200 - ...) underflows at T = 10
        let f = kd_loss(&s, &t, 10.0);
        assert_eq!(f.teacher_probs.data[0], 0.0);
        assert!(f.loss.is_finite());
        assert!(rel(f.loss as f64, kd64(&s, &t, 10.0)) < 1e-5);
    }

    /// Along random directions `u`: central differences of the `f32` forward with
    /// `h = 3e-2` (relative error below `2e-3`, dominated by the forward's rounding), and of the
    /// `f64` reference with `h = 1e-3` (relative error below `1e-5`: checks the derivation).
    #[test]
    fn backward_matches_finite_differences() {
        for (seed, temp) in [(0u64, 1.0f32), (1, 2.0), (2, 10.0)] {
            let s = random_tensor(&SHAPE, 300 + seed, 4.0);
            let t = random_tensor(&SHAPE, 400 + seed, 4.0);
            let u = random_tensor(&SHAPE, 500 + seed, 1.0);
            let g = kd_backward(&kd_loss(&s, &t, temp), 1.0);
            assert_fd(&s, &g, &u, 3e-2, 2e-3, |x| kd_loss(x, &t, temp).loss as f64);
            assert_fd(&s, &g, &u, 1e-3, 1e-5, |x| kd64(x, &t, temp as f64));
        }
    }

    #[test]
    fn scale_multiplies_the_gradient() {
        let s = random_tensor(&SHAPE, 600, 4.0);
        let t = random_tensor(&SHAPE, 601, 4.0);
        let f = kd_loss(&s, &t, 10.0);
        let g1 = kd_backward(&f, 1.0);
        assert_exactly_doubled(&g1, &kd_backward(&f, 2.0));
        assert_scaled(&g1, &kd_backward(&f, 10.0), 10.0, 1e-6);
    }

    #[test]
    fn identical_logits_give_zero_gradient() {
        let s = random_tensor(&SHAPE, 700, 4.0);
        let f = kd_loss(&s, &s, 10.0);
        assert!(f.loss.abs() < 1e-7);
        assert!(kd_backward(&f, 1.0).data.iter().all(|&x| x == 0.0));
    }
}
