//! Conv3d and ConvTranspose3d (reference `layers::conv3d` and `layers::conv_transpose3d`), with
//! the reference's shapes, checks and orders (`gpu/kernels/conv3d.cu`):
//!
//! * forward: one thread per output, the chain from `+0.0` over the taps `(ci, a, b, c)`
//!   ascending, every tap an fma (`+0.0` in the padding), then `+ bias[co]`;
//! * input gradient: one thread per input position, the chain over `(co, a, b, c)` ascending
//!   restricted to the taps with `q + p - k` divisible by `s`, `+0.0` where the output index
//!   falls outside `dy`;
//! * weight gradient: one canonical reduction per weight over the output positions (term index
//!   `((n Do + od) Ho + oh) Wo + ow`): a lanes kernel, then [`reduce::finish`];
//! * bias gradient: one canonical sum per channel over `(n, d, h, w)`, the same way.
//!
//! The transposed convolution has no kernels of its own: like the reference, it is the
//! convolution's input gradient (forward, with the bias added after each chain), forward (input
//! gradient) and weight gradient with `x` and `dy` exchanged.

use crate::args::Args;
use crate::device::Device;
use crate::error::GpuError;
use crate::reduce;
use crate::tensor::GpuTensor;
use protokd_reference::layers::conv3d::ConvGeom;

/// Appends the 12 shape slots of `conv3d.cu` (`conv3d_read_shape`): the convolution reads
/// `[n, cin, input]`, writes `[n, cout, output]`, with weight `[cout, cin, g.kernel]`.
fn shape_args(
    args: Args,
    [n, cin, cout]: [usize; 3],
    input: [usize; 3],
    output: [usize; 3],
    g: &ConvGeom,
) -> Args {
    let mut args = args.int(n).int(cin).int(cout);
    for v in input.into_iter().chain(output) {
        args = args.int(v);
    }
    for a in 0..3 {
        let (k, s, p) = (g.kernel[a], g.stride[a], g.padding[a]);
        assert!(
            k < 1 << 16 && s < 1 << 16 && p < 1 << 16,
            "conv3d: kernel, stride and padding must be below 65536, got {g:?}"
        );
        args = args.int(k | s << 16 | p << 32);
    }
    args
}

/// An optional tensor argument: its buffer, or a null pointer.
fn optional(args: Args, t: Option<&GpuTensor>) -> Args {
    match t {
        Some(t) => args.buf(&*t.buf),
        None => args.int(0),
    }
}

/// Checks `w` (5-D, kernel extents those of `g`) and returns its two channel extents.
fn weight_channels(w: &GpuTensor, g: &ConvGeom, what: &str) -> [usize; 2] {
    let [c0, c1, kd, kh, kw] = match w.shape[..] {
        [a, b, c, d, e] => [a, b, c, d, e],
        _ => panic!("{what}: weight must be 5-D, got shape {:?}", w.shape),
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

/// Conv3d forward, bits of the reference `conv3d_forward_spec`: `x` `[N, Cin, D, H, W]`, `w`
/// `[Cout, Cin, kd, kh, kw]`, `bias` `[Cout]`; returns `[N, Cout, Do, Ho, Wo]`
/// (`g.output_dims`). Each output is the fma chain from `+0.0` over `(ci, a, b, c)` ascending,
/// every tap a step (`+0.0` in the padding), then `+ bias[co]` (one addition) if given.
pub fn conv3d_forward(
    dev: &Device,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    g: &ConvGeom,
) -> Result<GpuTensor, GpuError> {
    let [n, cin, di, hi, wi] = x.dims5();
    let [cout, wcin] = weight_channels(w, g, "conv3d_forward");
    assert_eq!(
        wcin, cin,
        "conv3d_forward: weight has {wcin} input channels, the input has {cin}"
    );
    if let Some(b) = bias {
        assert_eq!(b.shape, [cout], "conv3d_forward: bias must be [{cout}]");
    }
    let out = g.output_dims([di, hi, wi]);
    let y = GpuTensor::from_buffer(
        &[n, cout, out[0], out[1], out[2]],
        dev.zeros(n * cout * out.iter().product::<usize>())?,
    );
    let args = optional(Args::new().buf(&*x.buf).buf(&*w.buf), bias).buf(&*y.buf);
    let args = shape_args(args, [n, cin, cout], [di, hi, wi], out, g);
    dev.launch("conv3d_fwd", y.numel(), &args)?;
    Ok(y)
}

/// Conv3d input gradient, bits of the reference `conv3d_backward_input_spec`: `dy`
/// `[N, Cout, Do, Ho, Wo]`, `w` `[Cout, Cin, kd, kh, kw]`; returns `dx` `[N, Cin, input_dims]`
/// (`g.output_dims(input_dims)` must be dy's spatial dims). Each `dx[n, ci, q]` is the fma
/// chain from `+0.0` over `(co, a, b, c)` ascending, restricted to the taps with `q + p - k`
/// divisible by `s` on every axis, of `dy[n, co, (q + p - k) / s]` (`+0.0` outside `dy`).
pub fn conv3d_backward_input(
    dev: &Device,
    dy: &GpuTensor,
    w: &GpuTensor,
    g: &ConvGeom,
    input_dims: [usize; 3],
) -> Result<GpuTensor, GpuError> {
    backward_input(dev, dy, w, None, g, input_dims, "conv3d_backward_input")
}

/// [`conv3d_backward_input`], then `+ bias[ci]` (one addition after each chain) if given: the
/// transposed convolution's forward.
fn backward_input(
    dev: &Device,
    dy: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    g: &ConvGeom,
    input_dims: [usize; 3],
    what: &str,
) -> Result<GpuTensor, GpuError> {
    let [n, cout, od, oh, ow] = dy.dims5();
    let [wcout, cin] = weight_channels(w, g, what);
    assert_eq!(
        wcout, cout,
        "{what}: weight has {wcout} output channels, dy has {cout}"
    );
    if let Some(b) = bias {
        assert_eq!(b.shape, [cin], "{what}: bias must be [{cin}]");
    }
    assert_eq!(
        g.output_dims(input_dims),
        [od, oh, ow],
        "{what}: input dims {input_dims:?} do not give dy's spatial dims"
    );
    let [di, hi, wi] = input_dims;
    let dx = GpuTensor::from_buffer(&[n, cin, di, hi, wi], dev.zeros(n * cin * di * hi * wi)?);
    let args = optional(Args::new().buf(&*dy.buf).buf(&*w.buf), bias).buf(&*dx.buf);
    let args = shape_args(args, [n, cin, cout], input_dims, [od, oh, ow], g);
    dev.launch("conv3d_bwd_input", dx.numel(), &args)?;
    Ok(dx)
}

/// Conv3d weight gradient, bits of the reference `conv3d_backward_weight_spec`: `x`
/// `[N, Cin, Di, Hi, Wi]`, `dy` `[N, Cout, Do, Ho, Wo]`; returns `dw` `[Cout, Cin, kd, kh, kw]`.
/// Each `dw[co, ci, a, b, c]` is one canonical reduction over the `N Do Ho Wo` output
/// positions (term index their flat row-major index) of `fma(dy[n, co, o], X(n, ci, o s + k -
/// p), lane)`, `X = +0.0` in the padding.
pub fn conv3d_backward_weight(
    dev: &Device,
    x: &GpuTensor,
    dy: &GpuTensor,
    g: &ConvGeom,
) -> Result<GpuTensor, GpuError> {
    let [n, cin, di, hi, wi] = x.dims5();
    let [ny, cout, od, oh, ow] = dy.dims5();
    assert_eq!(
        n, ny,
        "conv3d_backward_weight: batch of x ({n}) and dy ({ny}) differ"
    );
    assert_eq!(
        g.output_dims([di, hi, wi]),
        [od, oh, ow],
        "conv3d_backward_weight: dy's spatial dims do not match the input and geometry"
    );
    let [kd, kh, kw] = g.kernel;
    let count = cout * cin * kd * kh * kw;
    let terms = n * od * oh * ow;
    let partials = reduce::partials(dev, count, terms)?;
    let args = Args::new().buf(&*x.buf).buf(&*dy.buf).buf(&partials);
    let args = shape_args(args, [n, cin, cout], [di, hi, wi], [od, oh, ow], g);
    dev.launch(
        "conv3d_bwd_weight_lanes",
        reduce::lane_threads(count, terms),
        &args,
    )?;
    let dw = GpuTensor::from_buffer(&[cout, cin, kd, kh, kw], dev.zeros(count)?);
    reduce::finish(dev, &partials, &dw.buf, count, terms)?;
    Ok(dw)
}

/// Bias gradient, bits of the reference `bias_backward`: `dy` `[N, C, D, H, W]`; returns `[C]`,
/// `db[c]` the canonical sum of `dy[n, c, d, h, w]` over `(n, d, h, w)` in row-major order.
pub fn bias_backward(dev: &Device, dy: &GpuTensor) -> Result<GpuTensor, GpuError> {
    let [n, c, d, h, w] = dy.dims5();
    let vol = d * h * w;
    let partials = reduce::partials(dev, c, n * vol)?;
    dev.launch(
        "conv3d_bias_bwd_lanes",
        reduce::lane_threads(c, n * vol),
        &Args::new()
            .buf(&*dy.buf)
            .buf(&partials)
            .int(n)
            .int(c)
            .int(vol),
    )?;
    let db = GpuTensor::from_buffer(&[c], dev.zeros(c)?);
    reduce::finish(dev, &partials, &db.buf, c, n * vol)?;
    Ok(db)
}

/// ConvTranspose3d forward, bits of the reference `conv_transpose3d_forward`: `x`
/// `[N, Cin, D, H, W]`, `w` `[Cin, Cout, kd, kh, kw]`, `bias` `[Cout]`; returns
/// `[N, Cout, Do, Ho, Wo]` (`g.transposed_output_dims`). It is [`conv3d_backward_input`] of
/// `x` with weight `w` (a Conv3d weight `[Cin, Cout, k]`), then `+ bias[co]` after each chain.
pub fn conv_transpose3d_forward(
    dev: &Device,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    g: &ConvGeom,
) -> Result<GpuTensor, GpuError> {
    let [_, cin, d, h, wd] = x.dims5();
    assert!(
        w.shape.len() == 5 && w.shape[0] == cin,
        "conv_transpose3d_forward: weight {:?} must be [Cin = {cin}, Cout, kd, kh, kw]",
        w.shape
    );
    let out_dims = g.transposed_output_dims([d, h, wd]);
    backward_input(dev, x, w, bias, g, out_dims, "conv_transpose3d_forward")
}

/// ConvTranspose3d input gradient, bits of the reference `conv_transpose3d_backward_input`:
/// [`conv3d_forward`]`(dy, w, None, g)`. `dy` `[N, Cout, Do, Ho, Wo]`, `w` `[Cin, Cout, k..]`;
/// returns `[N, Cin, Di, Hi, Wi]`.
pub fn conv_transpose3d_backward_input(
    dev: &Device,
    dy: &GpuTensor,
    w: &GpuTensor,
    g: &ConvGeom,
) -> Result<GpuTensor, GpuError> {
    conv3d_forward(dev, dy, w, None, g)
}

/// ConvTranspose3d weight gradient, bits of the reference `conv_transpose3d_backward_weight`:
/// [`conv3d_backward_weight`]`(dy, x, g)`, one canonical reduction per weight over the flat
/// positions of `x`. `x` `[N, Cin, Di, Hi, Wi]`, `dy` `[N, Cout, Do, Ho, Wo]`; returns
/// `[Cin, Cout, k..]`.
pub fn conv_transpose3d_backward_weight(
    dev: &Device,
    x: &GpuTensor,
    dy: &GpuTensor,
    g: &ConvGeom,
) -> Result<GpuTensor, GpuError> {
    let [_, _, d, h, w] = x.dims5();
    let [_, _, od, oh, ow] = dy.dims5();
    assert_eq!(
        g.transposed_output_dims([d, h, w]),
        [od, oh, ow],
        "conv_transpose3d_backward_weight: dy's spatial dims do not match x and the geometry"
    );
    conv3d_backward_weight(dev, dy, x, g)
}
