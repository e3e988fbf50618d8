//! Conv3d: forward, input gradient, weight gradient, bias gradient.
//!
//! Shapes: input `x` `[N, Cin, Di, Hi, Wi]`, weight `w` `[Cout, Cin, kd, kh, kw]` (PyTorch
//! layout), optional bias `[Cout]`, output `y` `[N, Cout, Do, Ho, Wo]` with
//! `Do = (Di + 2 pd - kd) / sd + 1` (integer division) and likewise for `H` and `W`
//! ([`ConvGeom::output_dims`]). Every tensor is row-major with `W` fastest.
//!
//! Notation: `s`, `p`, `k` are the stride, padding and kernel extent of one axis; an output
//! index `o` reads input index `o * s + k - p` for tap `k`. `X(n, c, d, h, w)` is
//! `x[n, c, d, h, w]` when the index is inside the input and `+0.0` when it falls in the zero
//! padding.
//!
//! # Forward ([`conv3d_forward`])
//! `y[n, co, od, oh, ow] = sum_{ci, a, b, c} X(n, ci, od sd + a - pd, oh sh + b - ph,
//! ow sw + c - pw) * w[co, ci, a, b, c] (+ bias[co])`.
//!
//! Order: each output is ONE sequential chain, starting at `acc = +0.0`, over the taps
//! `(ci, a, b, c)` in ascending lexicographic order (`ci` slowest, `c` fastest):
//! `acc = fma(X(..), w[co, ci, a, b, c], acc)`. EVERY tap is a step, including taps in the
//! padding, where the step is `fma(+0.0, w, acc)`. With a bias, `y = acc + bias[co]` (one
//! IEEE addition after the chain); without, `y = acc`.
//!
//! # Input gradient ([`conv3d_backward_input`])
//! `dx[n, ci, q] = sum_{co, k} dy[n, co, (q + p - k) / s] * w[co, ci, k]` (per axis, `q` and
//! `k` 3-D), over the taps with `(q + p - k)` divisible by `s` on every axis.
//!
//! Order: each `dx[n, ci, qd, qh, qw]` is ONE chain from `+0.0` over `(co, a, b, c)` in
//! ascending lexicographic order, restricted to the taps where `qd + pd - a` is divisible by
//! `sd`, `qh + ph - b` by `sh` and `qw + pw - c` by `sw` (divisibility in the mathematical
//! sense, negative values included): `acc = fma(DY, w[co, ci, a, b, c], acc)` where
//! `DY = dy[n, co, (qd + pd - a) / sd, (qh + ph - b) / sh, (qw + pw - c) / sw]` when that
//! output index lies in `[0, Do) x [0, Ho) x [0, Wo)` and `+0.0` otherwise (that term is
//! still an fma, like the padding in the forward). A `dx` with no such tap is `+0.0`.
//! With stride 1 on every axis, every tap is taken.
//!
//! # Weight gradient ([`conv3d_backward_weight`])
//! `dw[co, ci, a, b, c] = sum_{n, od, oh, ow} dy[n, co, od, oh, ow] * X(n, ci, od sd + a - pd,
//! oh sh + b - ph, ow sw + c - pw)`.
//!
//! Order: each `dw[co, ci, a, b, c]` is ONE canonical reduction ([`crate::reduce`]) of
//! `P = N Do Ho Wo` terms; term `i` is the output position with flat row-major index
//! `i = ((n Do + od) Ho + oh) Wo + ow`, and its chain step is
//! `lane = fma(dy[n, co, od, oh, ow], X(..), lane)`. Every position is a term (`X = +0.0` in
//! the padding).
//!
//! # Bias gradient ([`bias_backward`])
//! `db[c]` is the canonical sum ([`crate::reduce`]) over `(n, d, h, w)` in row-major order
//! (term `i = (n D + d) H W + h W + w`) of `dy[n, c, d, h, w]`.
//!
//! # How the code is written
//! Each function below is the documented order as plain loops: one loop nest per output,
//! the taps in chain order inside it, `acc = x.mul_add(w, acc)`, padding read as `+0.0`.
//! Threads (rayon) only split whole output planes (or, for the weight gradient, whole
//! `(co, ci)` pairs), so the result does not depend on the thread count. This is slow (no
//! blocking, a bounds check and an index computation per tap, `mul_add` through the C
//! library's `fmaf` on x86-64): the fast engine (crate `protokd-cpu`) computes the same
//! chains with register blocks and SIMD, and is held to these functions bit for bit.

use crate::real::Real;
use crate::reduce::{self, Partials};
use crate::tensor::Shaped;
use crate::Tensor;
use rayon::prelude::*;

/// Kernel extent, stride and zero padding of a 3-D convolution, per axis `[D, H, W]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Kernel extent per axis (each at least 1).
    pub kernel: [usize; 3],
    /// Stride per axis (each at least 1).
    pub stride: [usize; 3],
    /// Zero padding on both sides, per axis.
    pub padding: [usize; 3],
}

impl ConvGeom {
    /// The same kernel `k`, stride `s` and padding `p` on all three axes.
    pub fn cubic(k: usize, s: usize, p: usize) -> Self {
        let g = ConvGeom {
            kernel: [k; 3],
            stride: [s; 3],
            padding: [p; 3],
        };
        g.check();
        g
    }

    fn check(&self) {
        assert!(
            self.kernel.iter().all(|&k| k >= 1) && self.stride.iter().all(|&s| s >= 1),
            "ConvGeom: kernel and stride must be at least 1, got {self:?}"
        );
    }

    /// Output spatial size of the convolution: `(i + 2p - k) / s + 1` per axis (integer
    /// division). Panics if the padded input is smaller than the kernel.
    pub fn output_dims(&self, input: [usize; 3]) -> [usize; 3] {
        self.check();
        let mut out = [0; 3];
        for a in 0..3 {
            let padded = input[a] + 2 * self.padding[a];
            assert!(
                padded >= self.kernel[a],
                "conv3d: padded input extent {padded} is smaller than the kernel {} (axis {a})",
                self.kernel[a]
            );
            out[a] = (padded - self.kernel[a]) / self.stride[a] + 1;
        }
        out
    }

    /// Output spatial size of the transposed convolution (no output padding):
    /// `(i - 1) s - 2p + k` per axis. Panics if that is not positive.
    pub fn transposed_output_dims(&self, input: [usize; 3]) -> [usize; 3] {
        self.check();
        let mut out = [0; 3];
        for a in 0..3 {
            assert!(input[a] >= 1, "conv_transpose3d: empty input axis {a}");
            let full = (input[a] - 1) * self.stride[a] + self.kernel[a];
            assert!(
                full > 2 * self.padding[a],
                "conv_transpose3d: padding {} leaves no output on axis {a}",
                self.padding[a]
            );
            out[a] = full - 2 * self.padding[a];
        }
        out
    }
}

/// Checks a weight `w` (of any engine) against `g` and returns `[w0, w1]` (its two channel
/// extents). Panics with `what` in the message otherwise (a programming error).
pub fn weight_channels<T: Shaped>(w: &T, g: &ConvGeom, what: &str) -> [usize; 2] {
    let [c0, c1, kd, kh, kw] = match w.shape()[..] {
        [a, b, c, d, e] => [a, b, c, d, e],
        _ => panic!("{what}: weight must be 5-D, got shape {:?}", w.shape()),
    };
    assert_eq!(
        [kd, kh, kw],
        g.kernel,
        "{what}: weight kernel {:?} does not match the geometry {:?}",
        [kd, kh, kw],
        g.kernel
    );
    [c0, c1]
}

/// The shapes of a Conv3d forward (of any engine): `x` `[N, Cin, D, H, W]`, `w`
/// `[Cout, Cin, k..]` (kernel extents those of `g`), `bias` `[Cout]`. Returns `x`'s dims, `Cout`
/// and the output's spatial dims; panics otherwise (a programming error).
pub fn forward_dims<T: Shaped>(
    x: &T,
    w: &T,
    bias: Option<&T>,
    g: &ConvGeom,
) -> ([usize; 5], usize, [usize; 3]) {
    let dims @ [_, cin, di, hi, wi] = x.dims5();
    let [cout, wcin] = weight_channels(w, g, "conv3d_forward");
    assert_eq!(
        wcin, cin,
        "conv3d_forward: weight has {wcin} input channels, the input has {cin}"
    );
    if let Some(b) = bias {
        assert_eq!(b.shape(), [cout], "conv3d_forward: bias must be [{cout}]");
    }
    (dims, cout, g.output_dims([di, hi, wi]))
}

/// The shapes of a Conv3d input gradient (of any engine; `what` names the caller in
/// messages): `dy` `[N, Cout, Do, Ho, Wo]`, `w` `[Cout, Cin, k..]`, an optional `bias` `[Cin]`
/// (the transposed convolution's forward adds one), `g.output_dims(input_dims) == [Do, Ho, Wo]`.
/// Returns `dy`'s dims and `Cin`; panics otherwise.
pub fn backward_input_dims<T: Shaped>(
    dy: &T,
    w: &T,
    bias: Option<&T>,
    g: &ConvGeom,
    input_dims: [usize; 3],
    what: &str,
) -> ([usize; 5], usize) {
    let dims @ [_, cout, od, oh, ow] = dy.dims5();
    let [wcout, cin] = weight_channels(w, g, what);
    assert_eq!(
        wcout, cout,
        "{what}: weight has {wcout} output channels, dy has {cout}"
    );
    if let Some(b) = bias {
        assert_eq!(b.shape(), [cin], "{what}: bias must be [{cin}]");
    }
    assert_eq!(
        g.output_dims(input_dims),
        [od, oh, ow],
        "{what}: input dims {input_dims:?} do not give dy's spatial dims"
    );
    (dims, cin)
}

/// The shapes of a Conv3d weight gradient (of any engine): `x` `[N, Cin, Di, Hi, Wi]` and
/// `dy` `[N, Cout, Do, Ho, Wo]` with `g.output_dims([Di, Hi, Wi]) == [Do, Ho, Wo]`. Returns
/// both dims; panics otherwise.
pub fn backward_weight_dims<T: Shaped>(x: &T, dy: &T, g: &ConvGeom) -> ([usize; 5], [usize; 5]) {
    let xd @ [n, _, di, hi, wi] = x.dims5();
    let yd @ [ny, _, od, oh, ow] = dy.dims5();
    assert_eq!(
        n, ny,
        "conv3d_backward_weight: batch of x ({n}) and dy ({ny}) differ"
    );
    assert_eq!(
        g.output_dims([di, hi, wi]),
        [od, oh, ow],
        "conv3d_backward_weight: dy's spatial dims do not match the input and geometry"
    );
    (xd, yd)
}

/// `Some(t)` when `q + p - k` is divisible by `s` (`t` the exact quotient, possibly
/// negative), else `None`.
#[inline]
fn exact_quotient(q: usize, p: usize, k: usize, s: usize) -> Option<isize> {
    let v = q as isize + p as isize - k as isize;
    let s = s as isize;
    if v.rem_euclid(s) == 0 {
        Some(v.div_euclid(s))
    } else {
        None
    }
}

/// `X(n, c, idx)`: `x[n, c, idx]` when `idx` lies inside `x`'s spatial extent, else `+0.0`
/// (the zero padding).
#[inline]
fn value_or_zero<R: Real>(x: &Tensor<R>, n: usize, c: usize, idx: [isize; 3]) -> R {
    let [_, channels, d, h, w] = x.dims5();
    let dims = [d as isize, h as isize, w as isize];
    if (0..3).any(|a| idx[a] < 0 || idx[a] >= dims[a]) {
        return R::ZERO;
    }
    let [z, y, xx] = idx.map(|v| v as usize);
    x.data[(((n * channels + c) * d + z) * h + y) * w + xx]
}

/// The input index `o * s + k - p` that output index `o` reads for tap `k`, per axis.
#[inline]
fn input_index(g: &ConvGeom, o: [usize; 3], k: [usize; 3]) -> [isize; 3] {
    [0, 1, 2].map(|a| (o[a] * g.stride[a] + k[a]) as isize - g.padding[a] as isize)
}

/// Conv3d forward (see the module docs for the exact order). `x` `[N, Cin, D, H, W]`, `w`
/// `[Cout, Cin, kd, kh, kw]`, `bias` `[Cout]`; returns `[N, Cout, Do, Ho, Wo]`.
///
/// `y[n, co, o] = (sum over (ci, a, b, c) ascending of fma(X(n, ci, o s + k - p), w[co, ci, k],
/// acc)) + bias[co]`.
pub fn conv3d_forward<R: Real>(
    x: &Tensor<R>,
    w: &Tensor<R>,
    bias: Option<&Tensor<R>>,
    g: &ConvGeom,
) -> Tensor<R> {
    let ([n, cin, _, _, _], cout, [od_n, oh_n, ow_n]) = forward_dims(x, w, bias, g);
    let [kd, kh, kw] = g.kernel;
    let mut y = Tensor::zeros(&[n, cout, od_n, oh_n, ow_n]);
    if od_n * oh_n * ow_n == 0 {
        return y;
    }
    // One plane (n, co) per work item.
    y.data
        .par_chunks_mut(od_n * oh_n * ow_n)
        .enumerate()
        .for_each(|(plane, out)| {
            let (nn, co) = (plane / cout, plane % cout);
            let mut o = 0;
            for od in 0..od_n {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let mut acc = R::ZERO;
                        for ci in 0..cin {
                            for a in 0..kd {
                                for b in 0..kh {
                                    for c in 0..kw {
                                        let xv = value_or_zero(
                                            x,
                                            nn,
                                            ci,
                                            input_index(g, [od, oh, ow], [a, b, c]),
                                        );
                                        let wv =
                                            w.data[(((co * cin + ci) * kd + a) * kh + b) * kw + c];
                                        acc = xv.mul_add(wv, acc);
                                    }
                                }
                            }
                        }
                        out[o] = match bias {
                            Some(b) => acc + b.data[co],
                            None => acc,
                        };
                        o += 1;
                    }
                }
            }
        });
    y
}

/// Conv3d input gradient (see the module docs for the exact order). `dy`
/// `[N, Cout, Do, Ho, Wo]`, `w` `[Cout, Cin, kd, kh, kw]`; returns `dx`
/// `[N, Cin, input_dims]`. `input_dims` is needed because with a stride several input sizes
/// give the same output size; it must satisfy `g.output_dims(input_dims) == [Do, Ho, Wo]`.
///
/// `dx[n, ci, q] = sum over (co, a, b, c) ascending, where q + p - k is divisible by s on every
/// axis, of fma(DY(n, co, (q + p - k) / s), w[co, ci, k], acc)`, from `+0.0`.
pub fn conv3d_backward_input<R: Real>(
    dy: &Tensor<R>,
    w: &Tensor<R>,
    g: &ConvGeom,
    input_dims: [usize; 3],
) -> Tensor<R> {
    let ([n, cout, _, _, _], cin) =
        backward_input_dims(dy, w, None, g, input_dims, "conv3d_backward_input");
    let [di, hi, wi] = input_dims;
    let [kd, kh, kw] = g.kernel;
    let (s, p) = (g.stride, g.padding);
    let mut dx = Tensor::zeros(&[n, cin, di, hi, wi]);
    if di * hi * wi == 0 {
        return dx;
    }
    // One plane (n, ci) per work item.
    dx.data
        .par_chunks_mut(di * hi * wi)
        .enumerate()
        .for_each(|(plane, out)| {
            let (nn, ci) = (plane / cin, plane % cin);
            let mut o = 0;
            for qd in 0..di {
                for qh in 0..hi {
                    for qw in 0..wi {
                        let mut acc = R::ZERO;
                        for co in 0..cout {
                            for a in 0..kd {
                                for b in 0..kh {
                                    for c in 0..kw {
                                        let (Some(td), Some(th), Some(tw)) = (
                                            exact_quotient(qd, p[0], a, s[0]),
                                            exact_quotient(qh, p[1], b, s[1]),
                                            exact_quotient(qw, p[2], c, s[2]),
                                        ) else {
                                            continue;
                                        };
                                        let dyv = value_or_zero(dy, nn, co, [td, th, tw]);
                                        let wv =
                                            w.data[(((co * cin + ci) * kd + a) * kh + b) * kw + c];
                                        acc = dyv.mul_add(wv, acc);
                                    }
                                }
                            }
                        }
                        out[o] = acc;
                        o += 1;
                    }
                }
            }
        });
    dx
}

/// Conv3d weight gradient (see the module docs for the exact order). `x`
/// `[N, Cin, Di, Hi, Wi]`, `dy` `[N, Cout, Do, Ho, Wo]`; returns `dw` `[Cout, Cin, kd, kh, kw]`
/// (kernel from `g`).
///
/// `dw[co, ci, k]` = the canonical reduction ([`Partials`]) whose term `i` is the output
/// position `(n, od, oh, ow)` in row-major order, chain step
/// `lane = fma(dy[n, co, o], X(n, ci, o s + k - p), lane)`.
pub fn conv3d_backward_weight<R: Real>(x: &Tensor<R>, dy: &Tensor<R>, g: &ConvGeom) -> Tensor<R> {
    let ([n, cin, _, _, _], [_, cout, od_n, oh_n, ow_n]) = backward_weight_dims(x, dy, g);
    let [kd, kh, kw] = g.kernel;
    let positions = n * od_n * oh_n * ow_n;
    let mut dw = Tensor::zeros(&[cout, cin, kd, kh, kw]);
    // One (co, ci) pair, its kd kh kw weights, per work item.
    dw.data
        .par_chunks_mut(kd * kh * kw)
        .enumerate()
        .for_each(|(pair, out)| {
            let (co, ci) = (pair / cin, pair % cin);
            let mut t = 0;
            for a in 0..kd {
                for b in 0..kh {
                    for c in 0..kw {
                        let mut sum = Partials::new(positions);
                        let mut i = 0;
                        for nn in 0..n {
                            for od in 0..od_n {
                                for oh in 0..oh_n {
                                    for ow in 0..ow_n {
                                        let dyv = dy.data[(((nn * cout + co) * od_n + od) * oh_n
                                            + oh)
                                            * ow_n
                                            + ow];
                                        let xv = value_or_zero(
                                            x,
                                            nn,
                                            ci,
                                            input_index(g, [od, oh, ow], [a, b, c]),
                                        );
                                        sum.fma(i, dyv, xv);
                                        i += 1;
                                    }
                                }
                            }
                        }
                        out[t] = sum.finish();
                        t += 1;
                    }
                }
            }
        });
    dw
}

/// Bias gradient of a convolution (or any `[N, C, D, H, W]` per-channel offset): `db[c]` is
/// the canonical sum over `(n, d, h, w)` in row-major order. Returns `[C]`.
pub fn bias_backward<R: Real>(dy: &Tensor<R>) -> Tensor<R> {
    let [n, c, d, h, w] = dy.dims5();
    let v = d * h * w;
    let db: Vec<R> = (0..c)
        .into_par_iter()
        .map(|ch| reduce::channel_reduction(&dy.data, &[], (n, c, v), ch, reduce::ChannelStep::Sum))
        .collect();
    Tensor::from_vec(&[c], db)
}

// Verifies (every test in this file): R-MTH-3, R-NUM-1, R-NUM-2
#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::Partials;
    use crate::testutil::{directional_fd_check, dot_f64, random_tensor, rel_err_norm};

    /// `X(n, c, d, h, w)`: the input value, or `+0.0` outside the input.
    fn x_at(x: &Tensor, n: usize, c: usize, idx: [isize; 3]) -> f32 {
        let [_, cs, d, h, w] = x.dims5();
        let dims = [d as isize, h as isize, w as isize];
        if (0..3).any(|a| idx[a] < 0 || idx[a] >= dims[a]) {
            return 0.0;
        }
        let [z, y, xx] = idx.map(|v| v as usize);
        x.data[(((n * cs + c) * d + z) * h + y) * w + xx]
    }

    fn w_at(w: &Tensor, o: usize, i: usize, k: [usize; 3]) -> f32 {
        let [_, ci, kd, kh, kw] = w.dims5();
        w.data[(((o * ci + i) * kd + k[0]) * kh + k[1]) * kw + k[2]]
    }

    fn in_idx(g: &ConvGeom, o: [usize; 3], k: [usize; 3]) -> [isize; 3] {
        [0, 1, 2].map(|a| (o[a] * g.stride[a] + k[a]) as isize - g.padding[a] as isize)
    }

    /// Independent f64 forward: straight loops, f64 accumulation.
    fn naive_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &ConvGeom) -> Vec<f64> {
        let [n, cin, d, h, ww] = x.dims5();
        let cout = w.shape[0];
        let [od, oh, ow] = g.output_dims([d, h, ww]);
        let mut y = Vec::new();
        for nn in 0..n {
            for co in 0..cout {
                for z in 0..od {
                    for yy in 0..oh {
                        for xx in 0..ow {
                            let mut acc = b.map_or(0.0, |b| b.data[co] as f64);
                            for ci in 0..cin {
                                for k in kernel_taps(g) {
                                    let v = x_at(x, nn, ci, in_idx(g, [z, yy, xx], k)) as f64;
                                    acc += v * w_at(w, co, ci, k) as f64;
                                }
                            }
                            y.push(acc);
                        }
                    }
                }
            }
        }
        y
    }

    fn kernel_taps(g: &ConvGeom) -> Vec<[usize; 3]> {
        let mut v = Vec::new();
        for a in 0..g.kernel[0] {
            for b in 0..g.kernel[1] {
                for c in 0..g.kernel[2] {
                    v.push([a, b, c]);
                }
            }
        }
        v
    }

    fn out_positions(dims: [usize; 3]) -> Vec<[usize; 3]> {
        let mut v = Vec::new();
        for a in 0..dims[0] {
            for b in 0..dims[1] {
                for c in 0..dims[2] {
                    v.push([a, b, c]);
                }
            }
        }
        v
    }

    /// Independent f64 input gradient: scatter of every forward product.
    fn naive_backward_input(dy: &Tensor, w: &Tensor, g: &ConvGeom, dims: [usize; 3]) -> Vec<f64> {
        let [n, cout, od, oh, ow] = dy.dims5();
        let cin = w.shape[1];
        let mut dx = vec![0.0f64; n * cin * dims.iter().product::<usize>()];
        for nn in 0..n {
            for co in 0..cout {
                for (pi, o) in out_positions([od, oh, ow]).into_iter().enumerate() {
                    let g_out = dy.data[(nn * cout + co) * od * oh * ow + pi] as f64;
                    for ci in 0..cin {
                        for k in kernel_taps(g) {
                            let q = in_idx(g, o, k);
                            if (0..3).all(|a| q[a] >= 0 && (q[a] as usize) < dims[a]) {
                                let [z, y, x] = q.map(|v| v as usize);
                                let idx =
                                    (((nn * cin + ci) * dims[0] + z) * dims[1] + y) * dims[2] + x;
                                dx[idx] += g_out * w_at(w, co, ci, k) as f64;
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    /// Independent f64 weight gradient.
    fn naive_backward_weight(x: &Tensor, dy: &Tensor, g: &ConvGeom) -> Vec<f64> {
        let [n, cin, ..] = x.dims5();
        let [_, cout, od, oh, ow] = dy.dims5();
        let mut dw = Vec::new();
        for co in 0..cout {
            for ci in 0..cin {
                for k in kernel_taps(g) {
                    let mut acc = 0.0f64;
                    for nn in 0..n {
                        for (pi, o) in out_positions([od, oh, ow]).into_iter().enumerate() {
                            let d = dy.data[(nn * cout + co) * od * oh * ow + pi] as f64;
                            acc += d * x_at(x, nn, ci, in_idx(g, o, k)) as f64;
                        }
                    }
                    dw.push(acc);
                }
            }
        }
        dw
    }

    fn geometries() -> Vec<ConvGeom> {
        vec![
            ConvGeom::cubic(3, 1, 1),
            ConvGeom::cubic(2, 2, 0),
            ConvGeom::cubic(3, 2, 1),
            ConvGeom::cubic(1, 1, 0),
            ConvGeom {
                kernel: [2, 3, 1],
                stride: [1, 2, 3],
                padding: [1, 0, 0],
            },
        ]
    }

    const DIMS: [usize; 3] = [5, 6, 7];

    #[test]
    fn geometry_dims() {
        let g = ConvGeom::cubic(3, 1, 1);
        assert_eq!(g.output_dims([96, 128, 128]), [96, 128, 128]);
        let d = ConvGeom::cubic(2, 2, 0);
        assert_eq!(d.output_dims([96, 128, 127]), [48, 64, 63]);
        assert_eq!(d.transposed_output_dims([48, 64, 63]), [96, 128, 126]);
        let e = ConvGeom::cubic(3, 2, 1);
        assert_eq!(e.output_dims([5, 6, 7]), [3, 3, 4]);
        assert_eq!(e.transposed_output_dims([3, 3, 4]), [5, 5, 7]);
    }

    #[test]
    #[should_panic(expected = "smaller than the kernel")]
    fn kernel_larger_than_padded_input_panics() {
        ConvGeom::cubic(3, 1, 0).output_dims([2, 5, 5]);
    }

    /// The deepest levels of a VNet on small patches: 1 to 3 voxels per axis.
    #[test]
    fn tiny_volumes_match_naive_f64() {
        for (di, dims) in [[1, 1, 1], [2, 2, 2], [1, 2, 3], [2, 1, 2]]
            .into_iter()
            .enumerate()
        {
            for (gi, g) in geometries().iter().enumerate() {
                if (0..3).any(|a| dims[a] + 2 * g.padding[a] < g.kernel[a]) {
                    continue;
                }
                let seed = 1000 + 10 * di as u64 + gi as u64;
                let od = g.output_dims(dims);
                let x = random_tensor(&[2, 3, dims[0], dims[1], dims[2]], seed);
                let w = random_tensor(&[2, 3, g.kernel[0], g.kernel[1], g.kernel[2]], seed + 1);
                let dy = random_tensor(&[2, 2, od[0], od[1], od[2]], seed + 2);
                let what = format!("dims {dims:?}, geometry {g:?}");
                let e = rel_err_norm(
                    &conv3d_forward(&x, &w, None, g).data,
                    &naive_forward(&x, &w, None, g),
                );
                assert!(e < 1e-6, "forward, {what}: {e}");
                let e = rel_err_norm(
                    &conv3d_backward_input(&dy, &w, g, dims).data,
                    &naive_backward_input(&dy, &w, g, dims),
                );
                assert!(e < 1e-6, "backward input, {what}: {e}");
                let e = rel_err_norm(
                    &conv3d_backward_weight(&x, &dy, g).data,
                    &naive_backward_weight(&x, &dy, g),
                );
                assert!(e < 1e-6, "backward weight, {what}: {e}");
            }
        }
    }

    #[test]
    fn forward_matches_naive_f64() {
        for (gi, g) in geometries().iter().enumerate() {
            let seed = 100 + gi as u64;
            let x = random_tensor(&[2, 3, DIMS[0], DIMS[1], DIMS[2]], seed);
            let w = random_tensor(&[2, 3, g.kernel[0], g.kernel[1], g.kernel[2]], seed + 10);
            let b = random_tensor(&[2], seed + 20);
            for bias in [None, Some(&b)] {
                let y = conv3d_forward(&x, &w, bias, g);
                let want = naive_forward(&x, &w, bias, g);
                let err = rel_err_norm(&y.data, &want);
                assert!(err < 1e-6, "geometry {g:?}: relative error {err}");
            }
        }
    }

    #[test]
    fn backward_input_matches_naive_f64() {
        for (gi, g) in geometries().iter().enumerate() {
            let seed = 200 + gi as u64;
            let od = g.output_dims(DIMS);
            let dy = random_tensor(&[2, 2, od[0], od[1], od[2]], seed);
            let w = random_tensor(&[2, 3, g.kernel[0], g.kernel[1], g.kernel[2]], seed + 10);
            let dx = conv3d_backward_input(&dy, &w, g, DIMS);
            assert_eq!(dx.shape, [2, 3, DIMS[0], DIMS[1], DIMS[2]]);
            let want = naive_backward_input(&dy, &w, g, DIMS);
            let err = rel_err_norm(&dx.data, &want);
            assert!(err < 1e-6, "geometry {g:?}: relative error {err}");
        }
    }

    #[test]
    fn backward_weight_and_bias_match_naive_f64() {
        for (gi, g) in geometries().iter().enumerate() {
            let seed = 300 + gi as u64;
            let od = g.output_dims(DIMS);
            let x = random_tensor(&[2, 3, DIMS[0], DIMS[1], DIMS[2]], seed);
            let dy = random_tensor(&[2, 2, od[0], od[1], od[2]], seed + 10);
            let dw = conv3d_backward_weight(&x, &dy, g);
            assert_eq!(dw.shape, [2, 3, g.kernel[0], g.kernel[1], g.kernel[2]]);
            let err = rel_err_norm(&dw.data, &naive_backward_weight(&x, &dy, g));
            assert!(err < 1e-6, "geometry {g:?}: relative error {err}");
            let db = bias_backward(&dy);
            let v: usize = od.iter().product();
            let want: Vec<f64> = (0..2)
                .map(|c| {
                    (0..2)
                        .flat_map(|nn| (0..v).map(move |i| (nn, i)))
                        .map(|(nn, i)| dy.data[(nn * 2 + c) * v + i] as f64)
                        .sum()
                })
                .collect();
            assert!(rel_err_norm(&db.data, &want) < 1e-6);
        }
    }

    /// The forward chain written out by hand for every output: same bits.
    fn check_forward_bits(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &ConvGeom) {
        let y = conv3d_forward(x, w, b, g);
        let [n, cin, ..] = x.dims5();
        let [_, cout, od, oh, ow] = y.dims5();
        let mut idx = 0;
        for nn in 0..n {
            for co in 0..cout {
                for o in out_positions([od, oh, ow]) {
                    let mut acc = 0.0f32;
                    for ci in 0..cin {
                        for k in kernel_taps(g) {
                            acc = x_at(x, nn, ci, in_idx(g, o, k)).mul_add(w_at(w, co, ci, k), acc);
                        }
                    }
                    if let Some(b) = b {
                        acc += b.data[co];
                    }
                    assert_eq!(y.data[idx].to_bits(), acc.to_bits(), "y[{nn},{co},{o:?}]");
                    idx += 1;
                }
            }
        }
    }

    #[test]
    fn forward_follows_the_documented_chain_bit_for_bit() {
        for (gi, g) in geometries().iter().enumerate() {
            let seed = 400 + gi as u64;
            let x = random_tensor(&[2, 3, DIMS[0], DIMS[1], DIMS[2]], seed);
            let w = random_tensor(&[2, 3, g.kernel[0], g.kernel[1], g.kernel[2]], seed + 1);
            let b = random_tensor(&[2], seed + 2);
            check_forward_bits(&x, &w, Some(&b), g);
        }
        // Rows longer than one register block (64) plus a remainder, stride 1 and 2.
        for g in [ConvGeom::cubic(3, 1, 1), ConvGeom::cubic(2, 2, 0)] {
            let x = random_tensor(&[1, 2, 2, 3, 150], 450);
            let w = random_tensor(&[2, 2, g.kernel[0], g.kernel[1], g.kernel[2]], 451);
            check_forward_bits(&x, &w, None, &g);
        }
    }

    /// The input-gradient chain written out by hand for every dx: same bits.
    fn check_backward_input_bits(dy: &Tensor, w: &Tensor, g: &ConvGeom, dims: [usize; 3]) {
        let dx = conv3d_backward_input(dy, w, g, dims);
        let [n, cout, od, oh, ow] = dy.dims5();
        let cin = w.shape[1];
        let out = [od as isize, oh as isize, ow as isize];
        let mut idx = 0;
        for nn in 0..n {
            for ci in 0..cin {
                for q in out_positions(dims) {
                    let mut acc = 0.0f32;
                    for co in 0..cout {
                        for k in kernel_taps(g) {
                            let num: [isize; 3] =
                                [0, 1, 2].map(|a| (q[a] + g.padding[a]) as isize - k[a] as isize);
                            if (0..3).any(|a| num[a].rem_euclid(g.stride[a] as isize) != 0) {
                                continue;
                            }
                            let t: [isize; 3] =
                                [0, 1, 2].map(|a| num[a].div_euclid(g.stride[a] as isize));
                            let dyv = if (0..3).all(|a| t[a] >= 0 && t[a] < out[a]) {
                                let [z, y, x] = t.map(|v| v as usize);
                                dy.data[(((nn * cout + co) * od + z) * oh + y) * ow + x]
                            } else {
                                0.0
                            };
                            acc = dyv.mul_add(w_at(w, co, ci, k), acc);
                        }
                    }
                    assert_eq!(dx.data[idx].to_bits(), acc.to_bits(), "dx[{nn},{ci},{q:?}]");
                    idx += 1;
                }
            }
        }
    }

    #[test]
    fn backward_input_follows_the_documented_chain_bit_for_bit() {
        for (gi, g) in geometries().iter().enumerate() {
            let od = g.output_dims(DIMS);
            let dy = random_tensor(&[2, 2, od[0], od[1], od[2]], 500 + gi as u64);
            let w = random_tensor(
                &[2, 3, g.kernel[0], g.kernel[1], g.kernel[2]],
                510 + gi as u64,
            );
            check_backward_input_bits(&dy, &w, g, DIMS);
        }
        // A long row (register blocks + remainder) and a stride larger than the kernel.
        for (g, dims) in [
            (ConvGeom::cubic(3, 1, 1), [2, 3, 140]),
            (ConvGeom::cubic(1, 2, 0), [3, 4, 9]),
            (ConvGeom::cubic(2, 2, 0), [2, 2, 150]),
        ] {
            let od = g.output_dims(dims);
            let dy = random_tensor(&[1, 2, od[0], od[1], od[2]], 520);
            let w = random_tensor(&[2, 2, g.kernel[0], g.kernel[1], g.kernel[2]], 521);
            check_backward_input_bits(&dy, &w, &g, dims);
        }
    }

    /// The weight-gradient reductions done term by term with `Partials`: same bits. The
    /// second case has more than one reduction block and rows that straddle lane groups.
    #[test]
    fn backward_weight_follows_the_canonical_reduction_bit_for_bit() {
        let cases = [
            (ConvGeom::cubic(3, 1, 1), [2, 3, 5, 6, 7]),
            (ConvGeom::cubic(3, 1, 1), [2, 1, 8, 16, 20]),
            (ConvGeom::cubic(2, 2, 0), [2, 2, 10, 16, 38]),
            (ConvGeom::cubic(3, 2, 1), [1, 2, 5, 6, 7]),
        ];
        for (ci_case, (g, xs)) in cases.iter().enumerate() {
            let x = random_tensor(xs, 600 + ci_case as u64);
            let od = g.output_dims([xs[2], xs[3], xs[4]]);
            let cout = 2;
            let dy = random_tensor(&[xs[0], cout, od[0], od[1], od[2]], 610 + ci_case as u64);
            let dw = conv3d_backward_weight(&x, &dy, g);
            let db = bias_backward(&dy);
            let positions = out_positions(od);
            let total = xs[0] * positions.len();
            let mut idx = 0;
            for co in 0..cout {
                for ci in 0..xs[1] {
                    for k in kernel_taps(g) {
                        let mut p = Partials::new(total);
                        let mut i = 0;
                        for nn in 0..xs[0] {
                            for (pi, &o) in positions.iter().enumerate() {
                                let d = dy.data[(nn * cout + co) * positions.len() + pi];
                                p.fma(i, d, x_at(&x, nn, ci, in_idx(g, o, k)));
                                i += 1;
                            }
                        }
                        assert_eq!(dw.data[idx].to_bits(), p.finish().to_bits());
                        idx += 1;
                    }
                }
                let mut p = Partials::new(total);
                let mut i = 0;
                for nn in 0..xs[0] {
                    for pi in 0..positions.len() {
                        p.add(i, dy.data[(nn * cout + co) * positions.len() + pi]);
                        i += 1;
                    }
                }
                assert_eq!(db.data[co].to_bits(), p.finish().to_bits());
            }
        }
    }

    /// Directional finite differences of `L = sum(y * r)` for the input, weight and bias
    /// gradients. The layer is linear in each argument, so the central difference is exact up
    /// to f32 rounding of the forward; bound: relative error < 1e-3 with h = 1e-2.
    #[test]
    fn gradients_match_finite_differences() {
        for (gi, g) in geometries().iter().enumerate() {
            let seed = 700 + 10 * gi as u64;
            let xshape = [2, 3, DIMS[0], DIMS[1], DIMS[2]];
            let wshape = [2, 3, g.kernel[0], g.kernel[1], g.kernel[2]];
            let x = random_tensor(&xshape, seed);
            let w = random_tensor(&wshape, seed + 1);
            let b = random_tensor(&[2], seed + 2);
            let od = g.output_dims(DIMS);
            let r = random_tensor(&[2, 2, od[0], od[1], od[2]], seed + 3);
            let loss = |x: &Tensor, w: &Tensor, b: &Tensor| {
                dot_f64(&conv3d_forward(x, w, Some(b), g).data, &r.data)
            };
            let dx = conv3d_backward_input(&r, &w, g, DIMS);
            directional_fd_check(&x.data, &dx.data, 1e-2, seed + 4, |v| {
                loss(&Tensor::from_vec(&xshape, v.to_vec()), &w, &b)
            })
            .assert_within(1e-3, &format!("conv input {g:?}"));
            let dw = conv3d_backward_weight(&x, &r, g);
            directional_fd_check(&w.data, &dw.data, 1e-2, seed + 5, |v| {
                loss(&x, &Tensor::from_vec(&wshape, v.to_vec()), &b)
            })
            .assert_within(1e-3, &format!("conv weight {g:?}"));
            let db = bias_backward(&r);
            directional_fd_check(&b.data, &db.data, 1e-2, seed + 6, |v| {
                loss(&x, &w, &Tensor::from_vec(&[2], v.to_vec()))
            })
            .assert_within(1e-3, &format!("conv bias {g:?}"));
        }
    }

    // Verifies: R-NUM-4
    #[test]
    fn independent_of_thread_count() {
        let g = ConvGeom::cubic(3, 1, 1);
        let x = random_tensor(&[2, 3, 6, 9, 70], 800);
        let w = random_tensor(&[4, 3, 3, 3, 3], 801);
        let b = random_tensor(&[4], 802);
        let dy = random_tensor(&[2, 4, 6, 9, 70], 803);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    (
                        conv3d_forward(&x, &w, Some(&b), &g),
                        conv3d_backward_weight(&x, &dy, &g),
                        conv3d_backward_input(&dy, &w, &g, [6, 9, 70]),
                    )
                })
        };
        let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let one = run(1);
        for threads in [2, 7] {
            let other = run(threads);
            assert_eq!(bits(&one.0), bits(&other.0), "forward, {threads} threads");
            assert_eq!(
                bits(&one.1),
                bits(&other.1),
                "weight grad, {threads} threads"
            );
            assert_eq!(
                bits(&one.2),
                bits(&other.2),
                "input grad, {threads} threads"
            );
        }
    }

    #[test]
    #[should_panic(expected = "input channels")]
    fn channel_mismatch_panics() {
        let x = random_tensor(&[1, 2, 3, 3, 3], 1);
        let w = random_tensor(&[1, 3, 3, 3, 3], 2);
        conv3d_forward(&x, &w, None, &ConvGeom::cubic(3, 1, 1));
    }

    /// Timing of one 16 -> 16, 3x3x3 convolution on 1 x 16 x 96 x 128 x 128 (run with
    /// `cargo test --release -p protokd-reference -- --ignored --nocapture conv3d_forward_speed`).
    #[test]
    #[ignore]
    fn conv3d_forward_speed() {
        let g = ConvGeom::cubic(3, 1, 1);
        let x = random_tensor(&[1, 16, 96, 128, 128], 900);
        let w = random_tensor(&[16, 16, 3, 3, 3], 901);
        let t = std::time::Instant::now();
        let y = conv3d_forward(&x, &w, None, &g);
        let fwd = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let dx = conv3d_backward_input(&y, &w, &g, [96, 128, 128]);
        let bin = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let dw = conv3d_backward_weight(&x, &y, &g);
        let bw = t.elapsed().as_secs_f64();
        let gmac = 16.0 * 16.0 * 27.0 * 96.0 * 128.0 * 128.0 / 1e9;
        println!(
            "conv3d 16->16 k3 on 1x16x96x128x128 ({gmac:.1} GMAC), {} threads: forward {fwd:.3} s, \
             input grad {bin:.3} s, weight grad {bw:.3} s (checksums {} {} {})",
            rayon::current_num_threads(),
            y.data[12345],
            dx.data[54321],
            dw.data[7]
        );
    }
}
