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

use crate::args::{
    Conv3dBiasBwdLanesArgs, Conv3dChainsArgs, Conv3dGroupWeightsArgs, Conv3dShape,
    Conv3dWeightLanesArgs, DevPtr,
};
use crate::device::Device;
use crate::error::GpuError;
use crate::kernels::{self, TypedKernel, CONV3D_CHAINS_INSTANCES, CONV3D_WEIGHT_LANES_INSTANCES};
use crate::reduce;
use crate::tensor::GpuTensor;
use protokd_reference::layers::conv3d::{
    backward_input_dims, backward_weight_dims, forward_dims, ConvGeom,
};
use protokd_reference::layers::conv_transpose3d::{
    check_transposed_weight_grad, transposed_forward_dims,
};
use protokd_reference::tensor::Shaped;

/// The kernels' description of a convolution (`conv3d_shape`): it reads `[n, cin, input]`,
/// writes `[n, cout, output]`, with weight `[cout, cin, g.kernel]`.
fn conv_shape(
    [n, cin, cout]: [usize; 3],
    input: [usize; 3],
    output: [usize; 3],
    g: &ConvGeom,
) -> Conv3dShape {
    // The kernels index inside one channel plane with 32-bit offsets.
    assert!(
        input.iter().product::<usize>() < 1 << 30 && output.iter().product::<usize>() < 1 << 30,
        "conv3d: a channel plane must hold fewer than 2^30 values, got {input:?} -> {output:?}"
    );
    // ... and compute per-axis tap and source indices in 32-bit integers.
    assert!(
        (0..3).all(|a| g.kernel[a] < 1 << 16 && g.stride[a] < 1 << 16 && g.padding[a] < 1 << 16),
        "conv3d: kernel, stride and padding must be below 65536, got {g:?}"
    );
    let long = |e: [usize; 3]| e.map(|v| v as i64);
    Conv3dShape {
        n: n as i64,
        cin: cin as i64,
        cout: cout as i64,
        input: long(input),
        output: long(output),
        k: long(g.kernel),
        s: long(g.stride),
        pad: long(g.padding),
    }
}

/// Fewest threads the chains kernel keeps when it chooses a larger tile (an H100 or H200 runs
/// about 1024 threads on each of its 132 multiprocessors at once: with fewer, the long chains
/// of the deep layers leave it idle).
const MIN_CHAIN_THREADS: usize = 1 << 17;

/// The chains kernels' tiles `(G, V)`: G output channels and V positions along `W` per thread
/// (the template arguments of the `conv3d_chains_g{G}v{V}` kernels, generated from
/// `gpu/kernels/conv3d.cu`).
pub const CHAIN_TILES: [(usize, usize); CONV3D_CHAINS_INSTANCES.len()] = {
    let mut tiles = [(0, 0); CONV3D_CHAINS_INSTANCES.len()];
    let mut i = 0;
    while i < tiles.len() {
        let [g, v] = CONV3D_CHAINS_INSTANCES[i].0;
        tiles[i] = (g, v);
        i += 1;
    }
    tiles
};

/// The chains kernel of tile `(G, V)`.
fn chains_kernel((g, v): (usize, usize)) -> Option<TypedKernel<Conv3dChainsArgs>> {
    CONV3D_CHAINS_INSTANCES
        .iter()
        .find(|(tile, _)| *tile == [g, v])
        .map(|&(_, k)| k)
}

thread_local! {
    /// A tile forced by [`with_chain_tile`] on this thread.
    static FORCED_TILE: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the chains kernel's tile forced to `tile` (one of [`CHAIN_TILES`]) for the
/// forward and input-gradient launches made on this thread, instead of the tile chosen by size:
/// for tests that check every tile against the reference (each gives the same bits).
pub fn with_chain_tile<R>(tile: (usize, usize), f: impl FnOnce() -> R) -> R {
    assert!(
        chains_kernel(tile).is_some(),
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
    // no more than the channels need: at most the smallest G >= c_out) and V positions along W:
    // of the tiles by decreasing (V, G) (today (16, 4), (8, 4), (4, 4), (16, 1), (8, 1),
    // (4, 1)), the first that leaves MIN_CHAIN_THREADS threads, else the last, the most threads.
    let mut tiles = CHAIN_TILES;
    tiles.sort_by_key(|&(g, v)| std::cmp::Reverse((v, g)));
    let gmax = tiles
        .iter()
        .map(|&(g, _)| g)
        .filter(|&g| g >= c_out)
        .min()
        .unwrap_or_else(|| tiles.iter().map(|&(g, _)| g).max().unwrap());
    let (gsize, v) = FORCED_TILE.get().unwrap_or_else(|| {
        tiles
            .into_iter()
            .find(|&(gs, v)| gs <= gmax && threads(gs, v) >= MIN_CHAIN_THREADS)
            .unwrap_or(tiles[tiles.len() - 1])
    });
    let groups = c_out.div_ceil(gsize);

    // The grouped weights, 16-byte aligned (a host buffer is only 4-byte aligned: 3 floats of
    // slack); `wg` must outlive both launches, which get its address as a plain integer.
    let len = groups * c_chain * k3 * gsize;
    let wg = dev.zeros::<f32>(len + 3)?;
    let wg_aligned = DevPtr::from_address(wg.address().next_multiple_of(16));
    dev.launch(
        kernels::CONV3D_GROUP_WEIGHTS,
        len,
        &Conv3dGroupWeightsArgs {
            w: w.buf.ptr(),
            wg: wg_aligned,
            gsize: gsize as i64,
            c_out: c_out as i64,
            c_chain: c_chain as i64,
            k3: k3 as i64,
            tr: tr as i64,
        },
    )?;
    let kernel = chains_kernel((gsize, v)).expect("the tile is one of CHAIN_TILES");
    let args = Conv3dChainsArgs {
        src: src.buf.ptr(),
        wg: wg_aligned,
        bias: bias.map_or(DevPtr::NULL, |b| b.buf.ptr()),
        dst: dst.buf.ptr(),
        shape: conv_shape(channels, input, output, g),
        tr: tr as i64,
        lanes: lanes(v) as i64,
    };
    dev.launch(kernel, threads(gsize, v), &args)?;
    drop(wg);
    Ok(())
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
    // GC output channels times a K x K x K tile of taps per thread: the kernel of the largest K
    // not above the kernel's largest extent (the smallest K if none is).
    let kmax = g.kernel.into_iter().max().unwrap_or(0);
    let by_k = |&&([_, k], _): &&([usize; 2], _)| k;
    let &([gc, k], kernel) = CONV3D_WEIGHT_LANES_INSTANCES
        .iter()
        .filter(|&&([_, k], _)| k <= kmax)
        .max_by_key(by_k)
        .unwrap_or_else(|| {
            CONV3D_WEIGHT_LANES_INSTANCES
                .iter()
                .min_by_key(by_k)
                .unwrap()
        });
    let tiles: usize = g.kernel.iter().map(|e| e.div_ceil(k)).product();
    let threads = reduce::lane_threads(cin * cout.div_ceil(gc) * tiles, terms);
    let args = Conv3dWeightLanesArgs {
        x: x.buf.ptr(),
        dy: dy.buf.ptr(),
        partials: partials.ptr(),
        shape: conv_shape([n, cin, cout], [di, hi, wi], [od, oh, ow], g),
    };
    dev.launch(kernel, threads, &args)?;
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
        kernels::CONV3D_BIAS_BWD_LANES,
        reduce::lane_threads(c, n * vol),
        &Conv3dBiasBwdLanesArgs {
            dy: dy.buf.ptr(),
            partials: partials.ptr(),
            n: n as i64,
            channels: c as i64,
            vol: vol as i64,
        },
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
    let out_dims = transposed_forward_dims(x, w, bias, g);
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
