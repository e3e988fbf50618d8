//! Helpers for the tests of the spec and of the engines held to it: seeded random tensors,
//! `f64` comparisons and a directional finite-difference gradient check.

use crate::Tensor;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// `n` values uniform in `[-1, 1)` from a seeded ChaCha8 stream: each is
/// `((next_u32 >> 8) as f32) / 2^24 * 2 - 1` (exact in `f32`).
pub fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| ((rng.next_u32() >> 8) as f32) * (1.0 / 16_777_216.0) * 2.0 - 1.0)
        .collect()
}

/// A tensor of the given shape filled by [`random_values`].
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(shape, random_values(shape.iter().product(), seed))
}

/// `sum_i a_i b_i` accumulated in `f64` (for test losses such as `L = sum(y * r)`).
pub fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot_f64: length mismatch");
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Norm-wise relative error `||got - want|| / ||want||` (Euclidean norms in `f64`; an
/// all-zero `want` gives `||got||`).
pub fn rel_err_norm(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "rel_err_norm: length mismatch");
    let diff: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

/// The outcome of [`directional_fd_check`].
#[derive(Clone, Copy, Debug)]
pub struct FdCheck {
    /// `sum_i grad_i (x+_i - x-_i)`: the analytic change of the loss between the two points.
    pub analytic: f64,
    /// `loss(x+) - loss(x-)`: the measured change.
    pub numeric: f64,
}

impl FdCheck {
    /// `|analytic - numeric| / max(|analytic|, |numeric|)` (`0` when both are `0`).
    pub fn rel_err(&self) -> f64 {
        let scale = self.analytic.abs().max(self.numeric.abs());
        if scale == 0.0 {
            0.0
        } else {
            (self.analytic - self.numeric).abs() / scale
        }
    }

    /// Panics (naming `what` and both values) unless [`rel_err`](Self::rel_err) `<= tol`.
    pub fn assert_within(&self, tol: f64, what: &str) {
        assert!(
            self.rel_err() <= tol,
            "{what}: finite difference {:.9e} vs analytic {:.9e} (relative error {:.3e} > {tol:e})",
            self.numeric,
            self.analytic,
            self.rel_err()
        );
    }
}

/// Central-difference check of an analytic gradient along one random direction.
///
/// * `x`: the point (any flat parameter or input buffer);
/// * `grad`: the analytic gradient `dL/dx` at `x` (same length);
/// * `h`: the step; `seed`: seeds the direction `u` ([`random_values`], entries in `[-1, 1)`);
/// * `loss`: evaluates the loss at a perturbed copy of `x` (compute the model in `f32` as
///   usual, but accumulate the final loss sum in `f64`, e.g. with [`dot_f64`], so that the
///   difference of two nearby losses is not lost to rounding).
///
/// The two points are `x+ = x + h u` and `x- = x - h u`, each rounded to `f32`. The check
/// compares `loss(x+) - loss(x-)` with `sum_i grad_i (x+_i - x-_i)` (in `f64`): using the
/// displacement actually applied (after rounding) instead of `2 h u` removes the rounding of
/// the perturbation from the comparison. For a loss that is linear in `x` the two agree up to
/// the rounding of the forward pass; otherwise the central difference has an `O(h^2)` error.
pub fn directional_fd_check(
    x: &[f32],
    grad: &[f32],
    h: f32,
    seed: u64,
    loss: impl Fn(&[f32]) -> f64,
) -> FdCheck {
    fd_check_along(x, grad, &random_values(x.len(), seed), h, loss)
}

/// [`directional_fd_check`] along a given direction `u` (same length as `x`).
pub fn fd_check_along(
    x: &[f32],
    grad: &[f32],
    u: &[f32],
    h: f32,
    loss: impl Fn(&[f32]) -> f64,
) -> FdCheck {
    assert_eq!(x.len(), grad.len(), "fd_check_along: gradient length");
    assert_eq!(x.len(), u.len(), "fd_check_along: direction length");
    let plus: Vec<f32> = x.iter().zip(u).map(|(&v, &d)| v + h * d).collect();
    let minus: Vec<f32> = x.iter().zip(u).map(|(&v, &d)| v - h * d).collect();
    let analytic: f64 = grad
        .iter()
        .zip(plus.iter().zip(&minus))
        .map(|(&g, (&p, &m))| g as f64 * (p as f64 - m as f64))
        .sum();
    let numeric = loss(&plus) - loss(&minus);
    FdCheck { analytic, numeric }
}

/// One rayon pool per thread count, for tests that assert the same bits for every count.
pub fn thread_pools(counts: &[usize]) -> Vec<rayon::ThreadPool> {
    counts
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("a thread pool")
        })
        .collect()
}
