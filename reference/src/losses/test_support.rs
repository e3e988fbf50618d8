//! Helpers for the loss tests: seeded random data, `f64` softmax, finite differences.
//! (Random values come from the crate's [`crate::testutil`].)

use crate::{LabelMap, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A tensor of values uniform in `[-amp, amp)`: [`crate::testutil::random_tensor`] times `amp`.
pub fn random_tensor(shape: &[usize], seed: u64, amp: f32) -> Tensor {
    let mut t = crate::testutil::random_tensor(shape, seed);
    for x in &mut t.data {
        *x *= amp;
    }
    t
}

/// Labels uniform in `0 .. n_classes`.
pub fn random_labels(dims: [usize; 4], n_classes: u8, seed: u64) -> LabelMap {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    let data = (0..n)
        .map(|_| (rng.next_u32() % n_classes as u32) as u8)
        .collect();
    LabelMap::new(dims, data)
}

/// `f64` softmax and log-softmax of one column (std `exp`/`ln`, max-shifted).
pub fn softmax64(s: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = s.iter().map(|x| (x - m).exp()).sum();
    let p = s.iter().map(|x| (x - m).exp() / total).collect();
    let lp = s.iter().map(|x| (x - m) - total.ln()).collect();
    (p, lp)
}

/// Column `(n, v)` of a `[N, C, V...]` tensor as `f64`.
pub fn column(t: &Tensor, n: usize, v: usize) -> Vec<f64> {
    let c = t.shape[1];
    let vox: usize = t.shape[2..].iter().product();
    (0..c)
        .map(|k| t.data[(n * c + k) * vox + v] as f64)
        .collect()
}

/// `|got - want| / |want|`.
pub fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

/// Panics unless the central difference of `f` along `u` (step `h`, the displacement actually
/// applied: [`crate::testutil::fd_check_along`]) agrees with the analytic change `g . dx` to
/// `tol` relative to the analytic change. `f` is the `f32` forward or an `f64` reference.
pub fn assert_fd(x: &Tensor, g: &Tensor, u: &Tensor, h: f32, tol: f64, f: impl Fn(&Tensor) -> f64) {
    assert!(g.first_non_finite().is_none(), "non-finite gradient");
    let check = crate::testutil::fd_check_along(&x.data, &g.data, &u.data, h, |p| {
        f(&Tensor::from_vec(&x.shape, p.to_vec()))
    });
    let err = rel(check.numeric, check.analytic);
    assert!(
        err < tol,
        "finite difference {:e} vs analytic {:e}: relative error {err:e}",
        check.numeric,
        check.analytic
    );
}

/// Asserts `b == 2 * a` bit for bit (the exact effect of doubling the upstream scale).
pub fn assert_exactly_doubled(a: &Tensor, b: &Tensor) {
    for (i, (&x, &y)) in a.data.iter().zip(&b.data).enumerate() {
        assert_eq!(
            (2.0 * x).to_bits(),
            y.to_bits(),
            "index {i}: 2 * {x} != {y}"
        );
    }
}

/// Asserts `b ~= s * a` to `tol` relative to the largest `|b|`.
pub fn assert_scaled(a: &Tensor, b: &Tensor, s: f32, tol: f64) {
    let big = b.data.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    assert!(big > 0.0);
    for (&x, &y) in a.data.iter().zip(&b.data) {
        let err = (s as f64 * x as f64 - y as f64).abs() / big;
        assert!(err < tol, "{s} * {x} vs {y}");
    }
}
