//! ReLU and the additive skip connection (elementwise; no accumulation, so no order to fix).
//!
//! * [`relu_forward`]: `y = x` if `x > 0`; `y = x` if `x` is NaN (a NaN is passed on, as
//!   PyTorch does, never hidden); `y = +0.0` otherwise (so both `-0.0` and `+0.0` give `+0.0`,
//!   as do negative values and `-inf`).
//! * [`relu_backward`], from the forward OUTPUT `y` (PyTorch's `threshold_backward(dy, y, 0)`):
//!   `dx = +0.0` if `y <= 0`, else `dx = dy` (so a NaN `y` passes `dy` through, like PyTorch;
//!   since `y >= 0` or NaN, this is "`dy` where `y > 0`").
//! * [`add_forward`]: `y = a + b` (one IEEE addition per element); the VNet's additive skip.
//!   Its backward is the identity to both operands: `da = dy` and `db = dy`, unchanged (there
//!   is no function for it; the caller hands `dy` to both branches and, where a branch also
//!   receives a gradient from elsewhere, adds the two as its own documentation states).

use crate::real::Real;
use crate::Tensor;
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

/// The ReLU of one value: `x > 0 ? x : (x is NaN ? x : +0.0)`.
#[inline(always)]
pub fn relu<R: Real>(x: R) -> R {
    if x > R::ZERO || x.is_nan() {
        x
    } else {
        R::ZERO
    }
}

/// [`relu`] elementwise.
pub fn relu_forward<R: Real>(x: &Tensor<R>) -> Tensor<R> {
    let mut y = Tensor::zeros(&x.shape);
    y.data
        .par_chunks_mut(CHUNK)
        .zip(x.data.par_chunks(CHUNK))
        .for_each(|(o, i)| {
            for (ov, &xv) in o.iter_mut().zip(i) {
                *ov = relu(xv);
            }
        });
    y
}

/// `dx = y <= 0 ? +0.0 : dy` elementwise, with `y` the output of [`relu_forward`].
pub fn relu_backward<R: Real>(dy: &Tensor<R>, y: &Tensor<R>) -> Tensor<R> {
    assert_eq!(dy.shape, y.shape, "relu_backward: dy and y shapes differ");
    let mut dx = Tensor::zeros(&dy.shape);
    dx.data
        .par_chunks_mut(CHUNK)
        .zip(dy.data.par_chunks(CHUNK).zip(y.data.par_chunks(CHUNK)))
        .for_each(|(o, (g, yy))| {
            for ((ov, &gv), &yv) in o.iter_mut().zip(g).zip(yy) {
                *ov = if yv <= R::ZERO { R::ZERO } else { gv };
            }
        });
    dx
}

/// `y = a + b` elementwise (the additive skip). Backward: `dy` goes unchanged to both `a` and
/// `b`.
pub fn add_forward<R: Real>(a: &Tensor<R>, b: &Tensor<R>) -> Tensor<R> {
    assert_eq!(a.shape, b.shape, "add_forward: operand shapes differ");
    let mut y = Tensor::zeros(&a.shape);
    y.data
        .par_chunks_mut(CHUNK)
        .zip(a.data.par_chunks(CHUNK).zip(b.data.par_chunks(CHUNK)))
        .for_each(|(o, (av, bv))| {
            for ((ov, &x), &z) in o.iter_mut().zip(av).zip(bv) {
                *ov = x + z;
            }
        });
    y
}

// Verifies (every test in this file): R-MTH-3
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{directional_fd_check, dot_f64, random_tensor};

    #[test]
    fn forward_values_and_signed_zeros() {
        let x = Tensor::from_vec(
            &[7],
            vec![
                1.5,
                -2.0,
                0.0,
                -0.0,
                f32::NEG_INFINITY,
                f32::INFINITY,
                f32::NAN,
            ],
        );
        let y = relu_forward(&x);
        let bits: Vec<u32> = y.data.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            &bits[..6],
            &[1.5f32, 0.0, 0.0, 0.0, 0.0, f32::INFINITY].map(f32::to_bits)
        );
        assert!(y.data[6].is_nan(), "NaN must propagate");
    }

    #[test]
    fn backward_values() {
        let y = Tensor::from_vec(&[4], vec![2.0, 0.0, 0.5, f32::NAN]);
        let dy = Tensor::from_vec(&[4], vec![-1.0, 3.0, 0.25, 7.0]);
        let dx = relu_backward(&dy, &y);
        assert_eq!(dx.data, vec![-1.0, 0.0, 0.25, 7.0]);
    }

    /// Away from the kink (every |x| >= 0.05 > h), `L = sum(relu(x) * r)`: relative error
    /// < 1e-3 with h = 1e-2 (ReLU is linear on each side).
    #[test]
    fn backward_matches_finite_differences() {
        let shape = [2, 3, 4, 5, 6];
        let mut x = random_tensor(&shape, 1);
        for v in &mut x.data {
            *v += 0.05f32.copysign(*v);
        }
        let r = random_tensor(&shape, 2);
        let y = relu_forward(&x);
        let dx = relu_backward(&r, &y);
        directional_fd_check(&x.data, &dx.data, 1e-2, 3, |v| {
            dot_f64(
                &relu_forward(&Tensor::from_vec(&shape, v.to_vec())).data,
                &r.data,
            )
        })
        .assert_within(1e-3, "relu");
    }

    #[test]
    fn add_is_elementwise_sum() {
        let a = random_tensor(&[2, 3, 40, 50, 9], 4);
        let b = random_tensor(&[2, 3, 40, 50, 9], 5);
        let y = add_forward(&a, &b);
        for i in 0..a.numel() {
            assert_eq!(y.data[i].to_bits(), (a.data[i] + b.data[i]).to_bits());
        }
    }

    #[test]
    #[should_panic(expected = "shapes differ")]
    fn add_shape_mismatch_panics() {
        add_forward(&Tensor::<f32>::zeros(&[2, 3]), &Tensor::zeros(&[3, 2]));
    }
}
