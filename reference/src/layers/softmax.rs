//! Softmax and log-softmax over the class axis (axis 1) of `[N, C, ...]` tensors.
//!
//! For each position (`n`, voxel) independently, with the classes in ascending order:
//! 1. `m = max_c s_c` (a comparison chain from `c = 0`; exact).
//! 2. `e_c = exp(s_c - m)` with the crate's `mathfn::exp`.
//! 3. `S = ((0 + e_0) + e_1) + ...` sequentially in class order.
//! 4. `softmax_c = e_c / S`; `log_softmax_c = (s_c - m) - ln(S)` with the crate's
//!    `mathfn::ln`.
//!
//! Backward (upstream gradient `g`, forward output `p = softmax`):
//! * softmax: `ds_j = p_j * (g_j - G)` with `G = sum_c p_c * g_c`, a sequential fma chain over
//!   classes from `+0.0`: `G = fma(p_c, g_c, G)`.
//! * log-softmax: `ds_j = g_j - p_j * T` with `T = sum_c g_c` sequential over classes from
//!   `+0.0`, computed as `fma(-p_j, T, g_j)`.

use crate::loops::{Loops, Plain};

use crate::real::Real;
use crate::Tensor;

/// Steps 1-3 for one column: `(m, e, S)` with `e` written into `e_out`.
#[inline(always)]
fn shifted_exp<R: Real>(s: &[R], e_out: &mut [R]) -> (R, R) {
    let m = s.iter().copied().fold(s[0], R::max);
    let mut total = R::ZERO;
    for (k, &sk) in s.iter().enumerate() {
        e_out[k] = R::exp(sk - m);
        total += e_out[k];
    }
    (m, total)
}

/// The softmax of one column `s` (the classes at one position) into `p`.
#[inline(always)]
pub fn softmax_column<R: Real>(s: &[R], p: &mut [R]) {
    let (_, total) = shifted_exp(s, p);
    for pk in p.iter_mut() {
        *pk /= total;
    }
}

/// The log-softmax of one column `s` into `out`.
#[inline(always)]
pub fn log_softmax_column<R: Real>(s: &[R], out: &mut [R]) {
    let (m, total) = shifted_exp(s, out);
    let ln_total = R::ln(total);
    for (k, &sk) in s.iter().enumerate() {
        out[k] = (sk - m) - ln_total;
    }
}

/// The softmax gradient of one column: `ds_j = p_j * (g_j - G)`, `G = fma(p_c, g_c, G)` over
/// the classes from `+0.0`.
#[inline(always)]
pub fn softmax_backward_column<R: Real>(g: &[R], p: &[R], ds: &mut [R]) {
    let big_g = p
        .iter()
        .zip(g)
        .fold(R::ZERO, |acc, (&pc, &gc)| pc.mul_add(gc, acc));
    for (j, dsj) in ds.iter_mut().enumerate() {
        *dsj = p[j] * (g[j] - big_g);
    }
}

/// The log-softmax gradient of one column: `ds_j = fma(-p_j, T, g_j)`, `T = sum_c g_c` in
/// class order from `+0.0`.
#[inline(always)]
pub fn log_softmax_backward_column<R: Real>(g: &[R], p: &[R], ds: &mut [R]) {
    let t = g.iter().fold(R::ZERO, |acc, &gc| acc + gc);
    for (j, dsj) in ds.iter_mut().enumerate() {
        *dsj = (-p[j]).mul_add(t, g[j]);
    }
}

/// `softmax(x)` over axis 1, on `l`'s loops: [`softmax_column`] at every position.
pub fn softmax_on<R: Real>(l: &impl Loops<R>, x: &Tensor<R>) -> Tensor<R> {
    l.map_columns(&[x], |cols, p| softmax_column(&cols[0], p))
}

/// `log_softmax(x)` over axis 1, on `l`'s loops: [`log_softmax_column`] at every position.
pub fn log_softmax_on<R: Real>(l: &impl Loops<R>, x: &Tensor<R>) -> Tensor<R> {
    l.map_columns(&[x], |cols, out| log_softmax_column(&cols[0], out))
}

/// Gradient of [`softmax`] on `l`'s loops: [`softmax_backward_column`] at every position.
pub fn softmax_backward_on<R: Real>(l: &impl Loops<R>, g: &Tensor<R>, p: &Tensor<R>) -> Tensor<R> {
    l.map_columns(&[g, p], |cols, ds| {
        softmax_backward_column(&cols[0], &cols[1], ds)
    })
}

/// Gradient of [`log_softmax`] given `p = softmax(x)`, on `l`'s loops:
/// [`log_softmax_backward_column`] at every position.
pub fn log_softmax_backward_on<R: Real>(
    l: &impl Loops<R>,
    g: &Tensor<R>,
    p: &Tensor<R>,
) -> Tensor<R> {
    l.map_columns(&[g, p], |cols, ds| {
        log_softmax_backward_column(&cols[0], &cols[1], ds)
    })
}

/// [`softmax_on`] on the spec's loops.
pub fn softmax<R: Real>(x: &Tensor<R>) -> Tensor<R> {
    softmax_on(&Plain, x)
}

/// [`log_softmax_on`] on the spec's loops.
pub fn log_softmax<R: Real>(x: &Tensor<R>) -> Tensor<R> {
    log_softmax_on(&Plain, x)
}

/// [`softmax_backward_on`] on the spec's loops.
pub fn softmax_backward<R: Real>(g: &Tensor<R>, p: &Tensor<R>) -> Tensor<R> {
    softmax_backward_on(&Plain, g, p)
}

/// [`log_softmax_backward_on`] on the spec's loops.
pub fn log_softmax_backward<R: Real>(g: &Tensor<R>, p: &Tensor<R>) -> Tensor<R> {
    log_softmax_backward_on(&Plain, g, p)
}

// Verifies (every test in this file): R-MTH-5, R-MTH-6, R-NUM-3
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{directional_fd_check, dot_f64, random_tensor, rel_err_norm};

    const SHAPE: [usize; 5] = [2, 4, 3, 4, 5];

    /// Each column in f64 with std's exp and ln.
    fn reference(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
        let (n, c) = (x.shape[0], x.shape[1]);
        let v: usize = x.shape[2..].iter().product();
        let (mut p, mut lp) = (vec![0.0; x.numel()], vec![0.0; x.numel()]);
        for i in 0..n {
            for pos in 0..v {
                let at = |k: usize| (i * c + k) * v + pos;
                let m = (0..c)
                    .map(|k| x.data[at(k)] as f64)
                    .fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = (0..c).map(|k| (x.data[at(k)] as f64 - m).exp()).sum();
                for k in 0..c {
                    p[at(k)] = (x.data[at(k)] as f64 - m).exp() / total;
                    lp[at(k)] = (x.data[at(k)] as f64 - m) - total.ln();
                }
            }
        }
        (p, lp)
    }

    fn scaled(t: Tensor, s: f32) -> Tensor {
        Tensor::from_vec(&t.shape, t.data.iter().map(|v| v * s).collect())
    }

    #[test]
    fn forward_matches_f64() {
        let x = scaled(random_tensor(&SHAPE, 1), 8.0);
        let (p, lp) = reference(&x);
        assert!(rel_err_norm(&softmax(&x).data, &p) < 1e-6);
        assert!(rel_err_norm(&log_softmax(&x).data, &lp) < 1e-6);
    }

    /// Large logits do not overflow: the shift by the column maximum.
    #[test]
    fn large_logits_stay_finite() {
        let x = scaled(random_tensor(&SHAPE, 2), 500.0);
        assert!(softmax(&x).first_non_finite().is_none());
        assert!(log_softmax(&x).first_non_finite().is_none());
    }

    /// The documented order, bit for bit, on one column.
    #[test]
    fn follows_the_documented_order() {
        let x = random_tensor(&[1, 4, 1, 1, 1], 3);
        let s = &x.data;
        let m = s.iter().copied().fold(s[0], f32::max);
        let e: Vec<f32> = s.iter().map(|&v| crate::mathfn::exp(v - m)).collect();
        let total = ((e[0] + e[1]) + e[2]) + e[3];
        let p = softmax(&x);
        let lp = log_softmax(&x);
        for k in 0..4 {
            assert_eq!(p.data[k].to_bits(), (e[k] / total).to_bits());
            assert_eq!(
                lp.data[k].to_bits(),
                ((s[k] - m) - crate::mathfn::ln(total)).to_bits()
            );
        }
    }

    #[test]
    fn backwards_match_finite_differences() {
        let x = scaled(random_tensor(&SHAPE, 4), 3.0);
        let r = random_tensor(&SHAPE, 5);
        let p = softmax(&x);
        let g = softmax_backward(&r, &p);
        let check = directional_fd_check(&x.data, &g.data, 1e-2, 6, |v| {
            dot_f64(
                &softmax(&Tensor::from_vec(&SHAPE, v.to_vec())).data,
                &r.data,
            )
        });
        check.assert_within(1e-3, "softmax backward");
        let g = log_softmax_backward(&r, &p);
        let check = directional_fd_check(&x.data, &g.data, 1e-2, 7, |v| {
            dot_f64(
                &log_softmax(&Tensor::from_vec(&SHAPE, v.to_vec())).data,
                &r.data,
            )
        });
        check.assert_within(1e-3, "log-softmax backward");
    }
}
