//! Conv3d and ConvTranspose3d (reference `layers::conv3d` and `layers::conv_transpose3d`), with
//! the reference's shapes, checks and orders (`gpu/kernels/conv3d.cu`):
//!
//! * forward: per output, the chain from `+0.0` over the taps `(ci, a, b, c)` ascending, every
//!   tap an fma (`+0.0` in the padding), then `+ bias[co]`;
//! * input gradient: per input position, the chain over `(co, a, b, c)` ascending restricted
//!   to the taps with `q + p - k` divisible by `s`, `+0.0` where the output index falls outside
//!   `dy`;
//! * weight gradient: one canonical reduction per weight over the output positions (term index
//!   `((n Do + od) Ho + oh) Wo + ow`): a lanes kernel, then [`reduce::finish`];
//! * bias gradient: one canonical sum per channel over `(n, d, h, w)`, the same way.
//!
//! Forward and input gradient share one kernel (`conv3d_chains_g{G}v{V}`): a thread computes
//! the chains of `G` output channels at `V` positions along `W` (loads shared between chains,
//! each chain in its own order); the weight is first copied into groups of `G` channels
//! (`conv3d_group_weights`). The weight-gradient lanes kernel (`conv3d_weight_lanes_g{GC}k{K}`)
//! computes one lane of `GC` output channels times a `K x K x K` tile of taps per thread. The
//! tile sizes only choose which thread computes which output, never the order of any output.
//!
//! The transposed convolution has no kernels of its own: like the reference, it is the
//! convolution's input gradient (forward, with the bias added after each chain), forward (input
//! gradient) and weight gradient with `x` and `dy` exchanged.

use crate::args::Args;
use crate::device::Device;
use crate::error::GpuError;
use crate::reduce;
use crate::tensor::GpuTensor;
use protokd_reference::layers::conv3d::{
    backward_input_dims, backward_weight_dims, forward_dims, ConvGeom,
};
use protokd_reference::layers::conv_transpose3d::{
    check_transposed_weight_grad, transposed_forward_dims,
};
use protokd_reference::tensor::Shaped;

/// Appends the 9 shape slots of `conv3d.cu` (`conv3d_read_shape`): the convolution reads
/// `[n, cin, input]`, writes `[n, cout, output]`, with weight `[cout, cin, g.kernel]`.
fn shape_args(
    args: Args,
    [n, cin, cout]: [usize; 3],
    input: [usize; 3],
    output: [usize; 3],
    g: &ConvGeom,
) -> Args {
    // The kernels index inside one channel plane with 32-bit offsets.
    assert!(
        input.iter().product::<usize>() < 1 << 30 && output.iter().product::<usize>() < 1 << 30,
        "conv3d: a channel plane must hold fewer than 2^30 values, got {input:?} -> {output:?}"
    );
    let mut args = args.int(n).int(cin).int(cout);
    for a in 0..3 {
        args = args.int(input[a] | output[a] << 32);
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

/// Fewest threads the chains kernel keeps when it chooses a larger tile (an H100 or H200 runs
/// about 1024 threads on each of its 132 multiprocessors at once: with fewer, the long chains
/// of the deep layers leave it idle).
const MIN_CHAIN_THREADS: usize = 1 << 17;

/// The chains kernels' tiles `(G, V)`: G output channels and V positions along `W` per thread.
pub const CHAIN_TILES: [(usize, usize); 6] = [(4, 1), (8, 1), (16, 1), (4, 4), (8, 4), (16, 4)];

thread_local! {
    /// A tile forced by [`with_chain_tile`] on this thread.
    static FORCED_TILE: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the chains kernel's tile forced to `tile` (one of [`CHAIN_TILES`]) for the
/// forward and input-gradient launches made on this thread, instead of the tile chosen by size:
/// for tests that check every tile against the reference (each gives the same bits).
pub fn with_chain_tile<R>(tile: (usize, usize), f: impl FnOnce() -> R) -> R {
    assert!(
        CHAIN_TILES.contains(&tile),
        "no chains kernel for tile {tile:?}"
    );
    let before = FORCED_TILE.replace(Some(tile));
    let r = f();
    FORCED_TILE.set(before);
    r
}

/// The chains of the forward (`tr` false: `src` is `x` `[n, cin, input]`, `w` `[cout, cin, k]`,
/// `dst` `[n, cout, output]`, `bias` `[cout]`) or of the input gradient (`tr` true: `src` is
/// `dy` `[n, cout, output]`, `w` `[cout, cin, k]`, `dst` `[n, cin, input]`, `bias` `[cin]`),
/// all checked by the caller: `conv3d_group_weights`, then `conv3d_chains_g{G}v{V}`.
fn chains(
    dev: &Device,
    src: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    dst: &GpuTensor,
    g: &ConvGeom,
    tr: bool,
) -> Result<(), GpuError> {
    let [n, c_chain, s0, s1, s2] = src.dims5();
    let [_, c_out, t0, t1, t2] = dst.dims5();
    let te = [t0, t1, t2];
    let (channels, input, output) = if tr {
        ([n, c_out, c_chain], te, [s0, s1, s2])
    } else {
        ([n, c_chain, c_out], [s0, s1, s2], te)
    };
    if dst.numel() == 0 {
        return Ok(());
    }
    let k3: usize = g.kernel.iter().product();
    // Threads side by side along W; in the input gradient a multiple of s_w, so that a
    // thread's positions (that far apart) share their W taps.
    let lanes = |v: usize| {
        let l = te[2].div_ceil(v).min(32);
        if tr {
            l.next_multiple_of(g.stride[2])
        } else {
            l
        }
    };
    let threads = |gsize: usize, v: usize| {
        let lanes = lanes(v);
        n * te[0] * te[1] * c_out.div_ceil(gsize) * te[2].div_ceil(lanes * v) * lanes
    };
    // G output channels per thread (a multiple of 4: the grouped weights are read 4 at a time;
    // at most 16, and no more than the channels need) and V positions along W (4 or 1): the
    // largest tile, in the order (16, 4), (8, 4), (4, 4), (16, 1), (8, 1), that leaves
    // MIN_CHAIN_THREADS threads, else (4, 1), the most threads.
    let gmax = match c_out {
        0..=4 => 4,
        5..=8 => 8,
        _ => 16,
    };
    let (gsize, v) = FORCED_TILE.get().unwrap_or_else(|| {
        [(16, 4), (8, 4), (4, 4), (16, 1), (8, 1)]
            .into_iter()
            .find(|&(gs, v)| gs <= gmax && threads(gs, v) >= MIN_CHAIN_THREADS)
            .unwrap_or((4, 1))
    });
    let groups = c_out.div_ceil(gsize);

    // The grouped weights, 16-byte aligned (a host buffer is only 4-byte aligned: 3 floats of
    // slack); `wg` must outlive both launches, which get its address as a plain integer.
    let len = groups * c_chain * k3 * gsize;
    let wg = dev.zeros::<f32>(len + 3)?;
    let wg_addr = wg.address().next_multiple_of(16) as usize;
    dev.launch(
        "conv3d_group_weights",
        len,
        &Args::new()
            .buf(&*w.buf)
            .int(wg_addr)
            .int(gsize)
            .int(c_out)
            .int(c_chain)
            .int(k3)
            .int(tr as usize),
    )?;
    let args = optional(Args::new().buf(&*src.buf).int(wg_addr), bias).buf(&*dst.buf);
    let args = shape_args(args, channels, input, output, g)
        .int(tr as usize)
        .int(lanes(v));
    let name = match (gsize, v) {
        (4, 1) => "conv3d_chains_g4v1",
        (4, _) => "conv3d_chains_g4v4",
        (8, 1) => "conv3d_chains_g8v1",
        (8, _) => "conv3d_chains_g8v4",
        (_, 1) => "conv3d_chains_g16v1",
        _ => "conv3d_chains_g16v4",
    };
    dev.launch(name, threads(gsize, v), &args)?;
    drop(wg);
    Ok(())
}

/// An optional tensor argument: its buffer, or a null pointer.
fn optional(args: Args, t: Option<&GpuTensor>) -> Args {
    match t {
        Some(t) => args.buf(&*t.buf),
        None => args.int(0),
    }
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
    let ([n, ..], cout, out) = forward_dims(x, w, bias, g);
    let y = GpuTensor::from_buffer(
        &[n, cout, out[0], out[1], out[2]],
        dev.zeros(n * cout * out.iter().product::<usize>())?,
    );
    chains(dev, x, w, bias, &y, g, false)?;
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
    let ([n, ..], cin) = backward_input_dims(dy, w, bias, g, input_dims, what);
    let [di, hi, wi] = input_dims;
    let dx = GpuTensor::from_buffer(&[n, cin, di, hi, wi], dev.zeros(n * cin * di * hi * wi)?);
    chains(dev, dy, w, bias, &dx, g, true)?;
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
    let ([n, cin, di, hi, wi], [_, cout, od, oh, ow]) = backward_weight_dims(x, dy, g);
    let [kd, kh, kw] = g.kernel;
    let count = cout * cin * kd * kh * kw;
    let terms = n * od * oh * ow;
    let partials = reduce::partials(dev, count, terms)?;
    // GC output channels times a K x K x K tile of taps per thread.
    let (name, gc, k) = match g.kernel.iter().max() {
        Some(1) => ("conv3d_weight_lanes_g8k1", 8, 1),
        Some(2) => ("conv3d_weight_lanes_g8k2", 8, 2),
        _ => ("conv3d_weight_lanes_g4k3", 4, 3),
    };
    let tiles: usize = g.kernel.iter().map(|e| e.div_ceil(k)).product();
    let threads = reduce::lane_threads(cin * cout.div_ceil(gc) * tiles, terms);
    let args = Args::new().buf(&*x.buf).buf(&*dy.buf).buf(&partials);
    let args = shape_args(args, [n, cin, cout], [di, hi, wi], [od, oh, ow], g);
    dev.launch(name, threads, &args)?;
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
    let out_dims = transposed_forward_dims(x, w, g);
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
    check_transposed_weight_grad(x, dy, g);
    conv3d_backward_weight(dev, dy, x, g)
}
