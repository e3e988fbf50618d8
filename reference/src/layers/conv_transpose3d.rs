//! ConvTranspose3d: forward, input gradient, weight gradient (bias gradient:
//! [`bias_backward`](super::conv3d::bias_backward)).
//!
//! Shapes: input `x` `[N, Cin, Di, Hi, Wi]`, weight `w` `[Cin, Cout, kd, kh, kw]` (PyTorch's
//! ConvTranspose3d layout), bias `[Cout]`, output `y` `[N, Cout, Do, Ho, Wo]` with
//! `Do = (Di - 1) sd - 2 pd + kd` ([`ConvGeom::transposed_output_dims`]; no output padding,
//! no groups, no dilation).
//!
//! Formula: `y[n, co, o] = sum_{ci, k : o = i s + k - p} x[n, ci, i] * w[ci, co, k] + bias[co]`
//! (per axis). This is exactly the input gradient of a Conv3d with the same geometry whose
//! weight `[Cout_conv, Cin_conv, k]` is this `w` (`Cout_conv = Cin`, `Cin_conv = Cout`), so
//! the transposed convolution has NO arithmetic loops of its own; it is defined by these
//! identities, and inherits their orders from [`super::conv3d`]:
//!
//! * forward: `y = conv3d_backward_input(x, w, g, transposed_output_dims)`, then, if there is
//!   a bias, `y = y + bias[co]` (one IEEE addition after each chain). So each `y[n, co, o]` is
//!   one fma chain from `+0.0` over `(ci, a, b, c)` ascending, restricted to the taps with
//!   `o + p - k` divisible by `s` on every axis, term `fma(X, w[ci, co, a, b, c], acc)` with
//!   `X = x[n, ci, (o + p - k) / s]` or `+0.0` outside the input.
//! * input gradient: `dx = conv3d_forward(dy, w, None, g)`: each `dx[n, ci, i]` is one chain
//!   from `+0.0` over `(co, a, b, c)` ascending of `fma(DY(n, co, i s + k - p), w[ci, co, k],
//!   acc)` (`DY = +0.0` outside `dy`, every tap a step).
//! * weight gradient: `dw = conv3d_backward_weight(dy, x, g)`, shape `[Cin, Cout, k]`:
//!   `dw[ci, co, k] = sum_{n, i} x[n, ci, i] * DY(n, co, i s + k - p)`, one canonical reduction
//!   per weight whose term index is the flat row-major position `(n, id, ih, iw)` of `x`, with
//!   chain step `fma(x[n, ci, i], DY(..), lane)`.
//! * bias gradient: `db = bias_backward(dy)` (canonical sum over `(n, d, h, w)`).

use super::conv3d::{conv3d_backward_input, conv3d_backward_weight, conv3d_forward, ConvGeom};
use crate::real::Real;
use crate::tensor::Shaped;
use crate::Tensor;

/// ConvTranspose3d forward (see the module docs). `x` `[N, Cin, D, H, W]`,
/// `w` `[Cin, Cout, kd, kh, kw]`, `bias` `[Cout]`; returns `[N, Cout, Do, Ho, Wo]`.
pub fn conv_transpose3d_forward<R: Real>(
    x: &Tensor<R>,
    w: &Tensor<R>,
    bias: Option<&Tensor<R>>,
    g: &ConvGeom,
) -> Tensor<R> {
    let out_dims = transposed_forward_dims(x, w, bias, g);
    let mut y = conv3d_backward_input(x, w, g, out_dims);
    if let Some(b) = bias {
        add_channel_bias(&mut y, b);
    }
    y
}

/// `y[n, c, ..] = y[n, c, ..] + bias[c]` (one IEEE addition per value) for `y`
/// `[N, C, ...]` and `bias` `[C]` (panics otherwise).
pub fn add_channel_bias<R: Real>(y: &mut Tensor<R>, bias: &Tensor<R>) {
    let c = y.shape[1];
    assert_eq!(
        bias.shape,
        [c],
        "conv_transpose3d_forward: bias must be [{c}]"
    );
    let plane: usize = y.shape[2..].iter().product();
    if plane == 0 {
        return;
    }
    // Plane (n, c) after plane, in memory order.
    for (nc, values) in y.data.chunks_mut(plane).enumerate() {
        let b = bias.data[nc % c];
        for v in values {
            *v += b;
        }
    }
}

/// ConvTranspose3d input gradient: `conv3d_forward(dy, w, None, g)` (see the module docs).
/// `dy` `[N, Cout, Do, Ho, Wo]`, `w` `[Cin, Cout, k..]`; returns `[N, Cin, Di, Hi, Wi]`.
pub fn conv_transpose3d_backward_input<R: Real>(
    dy: &Tensor<R>,
    w: &Tensor<R>,
    g: &ConvGeom,
) -> Tensor<R> {
    conv3d_forward(dy, w, None, g)
}

/// ConvTranspose3d weight gradient: `conv3d_backward_weight(dy, x, g)` (see the module docs).
/// `x` `[N, Cin, Di, Hi, Wi]`, `dy` `[N, Cout, Do, Ho, Wo]`; returns `[Cin, Cout, k..]`.
pub fn conv_transpose3d_backward_weight<R: Real>(
    x: &Tensor<R>,
    dy: &Tensor<R>,
    g: &ConvGeom,
) -> Tensor<R> {
    check_transposed_weight_grad(x, dy, g);
    conv3d_backward_weight(dy, x, g)
}

/// The shapes of a ConvTranspose3d forward (of any engine): `x` `[N, Cin, D, H, W]`, `w`
/// `[Cin, Cout, k..]`, `bias` (when given) `[Cout]`. Returns the output's spatial dims; panics
/// otherwise (the rest is checked by the input gradient it is made of).
pub fn transposed_forward_dims<T: Shaped>(
    x: &T,
    w: &T,
    bias: Option<&T>,
    g: &ConvGeom,
) -> [usize; 3] {
    let [_, cin, d, h, wd] = x.dims5();
    assert!(
        w.shape().len() == 5 && w.shape()[0] == cin,
        "conv_transpose3d_forward: weight {:?} must be [Cin = {cin}, Cout, kd, kh, kw]",
        w.shape()
    );
    if let Some(b) = bias {
        let c = w.shape()[1];
        assert_eq!(
            b.shape(),
            [c],
            "conv_transpose3d_forward: bias must be [{c}]"
        );
    }
    g.transposed_output_dims([d, h, wd])
}

/// The shapes of a ConvTranspose3d weight gradient (of any engine): `dy`'s spatial dims are
/// `g.transposed_output_dims` of `x`'s; panics otherwise.
pub fn check_transposed_weight_grad<T: Shaped>(x: &T, dy: &T, g: &ConvGeom) {
    let [_, _, d, h, w] = x.dims5();
    let [_, _, od, oh, ow] = dy.dims5();
    assert_eq!(
        g.transposed_output_dims([d, h, w]),
        [od, oh, ow],
        "conv_transpose3d_backward_weight: dy's spatial dims do not match x and the geometry"
    );
}

// Verifies (every test in this file): R-MTH-3, R-NUM-1, R-NUM-2
#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::conv3d::bias_backward;
    use crate::reduce::Partials;
    use crate::testutil::{directional_fd_check, dot_f64, random_tensor, rel_err_norm};

    /// Independent f64 transposed convolution: scatter `x[i] * w[k]` to `o = i s + k - p`.
    fn naive_forward(x: &Tensor, w: &Tensor, b: &Tensor, g: &ConvGeom) -> Vec<f64> {
        let [n, cin, d, h, wd] = x.dims5();
        let cout = w.shape[1];
        let o = g.transposed_output_dims([d, h, wd]);
        let [kd, kh, kw] = g.kernel;
        let plane = o[0] * o[1] * o[2];
        let mut y = vec![0.0f64; n * cout * plane];
        for nn in 0..n {
            for co in 0..cout {
                for v in &mut y[(nn * cout + co) * plane..(nn * cout + co + 1) * plane] {
                    *v = b.data[co] as f64;
                }
            }
        }
        for nn in 0..n {
            for ci in 0..cin {
                for (z, yy, xx) in (0..d)
                    .flat_map(|z| (0..h).flat_map(move |yy| (0..wd).map(move |xx| (z, yy, xx))))
                {
                    let xv = x.data[(((nn * cin + ci) * d + z) * h + yy) * wd + xx] as f64;
                    for co in 0..cout {
                        for a in 0..kd {
                            for bb in 0..kh {
                                for c in 0..kw {
                                    let q = [
                                        (z * g.stride[0] + a) as isize - g.padding[0] as isize,
                                        (yy * g.stride[1] + bb) as isize - g.padding[1] as isize,
                                        (xx * g.stride[2] + c) as isize - g.padding[2] as isize,
                                    ];
                                    if (0..3).any(|ax| q[ax] < 0 || q[ax] >= o[ax] as isize) {
                                        continue;
                                    }
                                    let [qz, qy, qx] = q.map(|v| v as usize);
                                    let wv = w.data
                                        [(((ci * cout + co) * kd + a) * kh + bb) * kw + c]
                                        as f64;
                                    y[(nn * cout + co) * plane + (qz * o[1] + qy) * o[2] + qx] +=
                                        xv * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn geometries() -> Vec<ConvGeom> {
        vec![
            ConvGeom::cubic(2, 2, 0),
            ConvGeom::cubic(3, 2, 1),
            ConvGeom::cubic(3, 1, 1),
        ]
    }

    #[test]
    fn forward_matches_naive_f64() {
        for (gi, g) in geometries().iter().enumerate() {
            let x = random_tensor(&[2, 3, 3, 4, 5], 10 + gi as u64);
            let w = random_tensor(
                &[3, 2, g.kernel[0], g.kernel[1], g.kernel[2]],
                20 + gi as u64,
            );
            let b = random_tensor(&[2], 30 + gi as u64);
            let y = conv_transpose3d_forward(&x, &w, Some(&b), g);
            let o = g.transposed_output_dims([3, 4, 5]);
            assert_eq!(y.shape, [2, 2, o[0], o[1], o[2]]);
            let err = rel_err_norm(&y.data, &naive_forward(&x, &w, &b, g));
            assert!(err < 1e-6, "{g:?}: relative error {err}");
        }
    }

    /// The k2 s2 up-convolution of the VNet: every output has exactly one tap per axis, so
    /// `y[n, co, o] = fma(x[n, ci=Cin-1, o/2], w[Cin-1, co, o%2], ...)`, a chain over ci only.
    #[test]
    fn up_conv_follows_the_documented_chain_bit_for_bit() {
        let g = ConvGeom::cubic(2, 2, 0);
        let x = random_tensor(&[2, 3, 2, 3, 4], 40);
        let w = random_tensor(&[3, 2, 2, 2, 2], 41);
        let b = random_tensor(&[2], 42);
        let y = conv_transpose3d_forward(&x, &w, Some(&b), &g);
        let [n, cout, od, oh, ow] = y.dims5();
        let mut idx = 0;
        for nn in 0..n {
            for co in 0..cout {
                for z in 0..od {
                    for yy in 0..oh {
                        for xx in 0..ow {
                            let mut acc = 0.0f32;
                            for ci in 0..3 {
                                let xv =
                                    x.data[(((nn * 3 + ci) * 2 + z / 2) * 3 + yy / 2) * 4 + xx / 2];
                                let wv =
                                    w.data[(((ci * 2 + co) * 2 + z % 2) * 2 + yy % 2) * 2 + xx % 2];
                                acc = xv.mul_add(wv, acc);
                            }
                            acc += b.data[co];
                            assert_eq!(y.data[idx].to_bits(), acc.to_bits());
                            idx += 1;
                        }
                    }
                }
            }
        }
    }

    /// The weight gradient's reduction index is the flat position of `x`.
    #[test]
    fn weight_gradient_follows_the_canonical_reduction_bit_for_bit() {
        let g = ConvGeom::cubic(2, 2, 0);
        let x = random_tensor(&[2, 2, 3, 4, 5], 50);
        let dy = random_tensor(&[2, 3, 6, 8, 10], 51);
        let dw = conv_transpose3d_backward_weight(&x, &dy, &g);
        assert_eq!(dw.shape, [2, 3, 2, 2, 2]);
        let mut idx = 0;
        for ci in 0..2 {
            for co in 0..3 {
                for k in 0..8 {
                    let (a, b, c) = (k / 4, (k / 2) % 2, k % 2);
                    let mut p = Partials::new(2 * 60);
                    let mut i = 0;
                    for nn in 0..2 {
                        for z in 0..3 {
                            for yy in 0..4 {
                                for xx in 0..5 {
                                    let xv = x.data[(((nn * 2 + ci) * 3 + z) * 4 + yy) * 5 + xx];
                                    let dv =
                                        dy.data[(((nn * 3 + co) * 6 + 2 * z + a) * 8 + 2 * yy + b)
                                            * 10
                                            + 2 * xx
                                            + c];
                                    p.fma(i, xv, dv);
                                    i += 1;
                                }
                            }
                        }
                    }
                    assert_eq!(dw.data[idx].to_bits(), p.finish().to_bits());
                    idx += 1;
                }
            }
        }
    }

    /// Directional finite differences of `L = sum(y * r)` (linear in each argument: bound
    /// relative error < 1e-3 with h = 1e-2).
    #[test]
    fn gradients_match_finite_differences() {
        for (gi, g) in geometries().iter().enumerate() {
            let seed = 60 + 10 * gi as u64;
            let xshape = [2, 3, 3, 4, 5];
            let wshape = [3, 2, g.kernel[0], g.kernel[1], g.kernel[2]];
            let x = random_tensor(&xshape, seed);
            let w = random_tensor(&wshape, seed + 1);
            let b = random_tensor(&[2], seed + 2);
            let o = g.transposed_output_dims([3, 4, 5]);
            let r = random_tensor(&[2, 2, o[0], o[1], o[2]], seed + 3);
            let loss = |x: &Tensor, w: &Tensor, b: &Tensor| {
                dot_f64(&conv_transpose3d_forward(x, w, Some(b), g).data, &r.data)
            };
            let dx = conv_transpose3d_backward_input(&r, &w, g);
            assert_eq!(dx.shape, xshape);
            directional_fd_check(&x.data, &dx.data, 1e-2, seed + 4, |v| {
                loss(&Tensor::from_vec(&xshape, v.to_vec()), &w, &b)
            })
            .assert_within(1e-3, &format!("conv-transpose input {g:?}"));
            let dw = conv_transpose3d_backward_weight(&x, &r, g);
            directional_fd_check(&w.data, &dw.data, 1e-2, seed + 5, |v| {
                loss(&x, &Tensor::from_vec(&wshape, v.to_vec()), &b)
            })
            .assert_within(1e-3, &format!("conv-transpose weight {g:?}"));
            let db = bias_backward(&r);
            directional_fd_check(&b.data, &db.data, 1e-2, seed + 6, |v| {
                loss(&x, &w, &Tensor::from_vec(&[2], v.to_vec()))
            })
            .assert_within(1e-3, &format!("conv-transpose bias {g:?}"));
        }
    }
}
