//! The two loops that softmax and the losses are written over, and who runs them.
//!
//! Softmax and every loss are sequences of two kinds of loop:
//! * a **column map**: a function applied at every position `(n, v)` to the values of the
//!   class (or channel) axis there, writing that position's outputs (softmax and its
//!   relatives, [`crate::layers::softmax`]);
//! * a **canonical reduction** of `n` terms given by a chain step ([`crate::reduce`]).
//!
//! The spec runs both as the plain loops of [`Plain`]: positions one after the other; the
//! terms of a reduction in increasing index into their lanes, then the two trees. What each
//! output is, and the order of every operation inside it, is fixed by the caller (the column
//! function, the chain step and the reduction's shape), so an engine may run the same loops
//! differently (positions on several threads, the reduction's blocks on several threads and
//! their 16 lanes at once, in a SIMD-compiled function) and keep every bit. The fast CPU engine
//! (crate `protokd-cpu`) does, and is held to [`Plain`] by its tests. The losses are written
//! once, over this trait (`*_on` functions), and the spec's functions without `_on` run them on
//! [`Plain`].

use crate::real::Real;
use crate::Tensor;

/// How the column maps and canonical reductions of softmax and the losses run; see the module
/// docs. Every implementation must give [`Plain`]'s bits. `R` is the float type ([`Real`]; the
/// product's `f32` unless said otherwise).
pub trait Loops<R: Real = f32>: Sync {
    /// A tensor shaped like `inputs[0]` (all `[N, C, ...]`, the same shape): at every position
    /// `(n, v)`, `f(columns_in, column_out)` with `columns_in[j][c] = inputs[j][n, c, v]`; `f`
    /// fills `column_out[c]`, the output at `[n, c, v]`.
    fn map_columns(
        &self,
        inputs: &[&Tensor<R>],
        f: impl Fn(&[Vec<R>], &mut [R]) + Sync,
    ) -> Tensor<R>;
    /// The canonical reduction of `n` terms with chain step `step(acc, i)` (which computes
    /// `acc + t_i` or `fma(a_i, b_i, acc)`).
    fn reduce_with(&self, n: usize, step: impl Fn(R, usize) -> R + Sync) -> R;
}

/// The shape check of a column map (of any [`Loops`]): every input shaped like `inputs[0]`,
/// `[N, C, ...]`; returns `(N, C, V)` with `V` the product of the trailing axes. Panics
/// otherwise (a programming error).
pub fn column_dims<R: Real>(inputs: &[&Tensor<R>]) -> (usize, usize, usize) {
    let shape = &inputs[0].shape;
    for t in inputs {
        assert_eq!(&t.shape, shape, "softmax: operand shapes differ");
    }
    assert!(
        shape.len() >= 2,
        "softmax: need at least [N, C], got {shape:?}"
    );
    (shape[0], shape[1], shape[2..].iter().product())
}

/// `cols[j][k] = inputs[j][n, k, p]` for every input `j` and class `k` (`v` the positions per
/// sample): the columns at position `(n, p)` that a column map hands to its function.
#[inline(always)]
pub fn load_columns<R: Real>(
    inputs: &[&Tensor<R>],
    (n, p): (usize, usize),
    v: usize,
    cols: &mut [Vec<R>],
) {
    for (col, t) in cols.iter_mut().zip(inputs) {
        let c = col.len();
        for (k, ck) in col.iter_mut().enumerate() {
            *ck = t.data[(n * c + k) * v + p];
        }
    }
}

/// The specification's loops, one position and one term at a time: the column map below, and
/// [`crate::reduce::reduce_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<R: Real> Loops<R> for Plain {
    fn map_columns(
        &self,
        inputs: &[&Tensor<R>],
        f: impl Fn(&[Vec<R>], &mut [R]) + Sync,
    ) -> Tensor<R> {
        let (n, c, v) = column_dims(inputs);
        let mut out = Tensor::zeros(&inputs[0].shape);
        let mut cols = vec![vec![R::ZERO; c]; inputs.len()];
        let mut col_out = vec![R::ZERO; c];
        for nn in 0..n {
            for p in 0..v {
                load_columns(inputs, (nn, p), v, &mut cols);
                f(&cols, &mut col_out);
                for (k, &o) in col_out.iter().enumerate() {
                    out.data[(nn * c + k) * v + p] = o;
                }
            }
        }
        out
    }
    fn reduce_with(&self, n: usize, step: impl Fn(R, usize) -> R + Sync) -> R {
        crate::reduce::reduce_with(n, step)
    }
}
