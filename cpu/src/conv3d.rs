//! Fast Conv3d forward, input gradient and weight gradient: the same chains and canonical
//! reductions as the spec ([`protokd_reference::layers::conv3d`]), computed for a block of
//! output channels (or taps) at once.
//!
//! # What is the same
//! Every output is still ONE chain of `fma(x, w, acc)` from `+0.0` over its taps in the spec's
//! order (forward: `(ci, a, b, c)` ascending; input gradient with stride 1: `(co, a, b, c)`
//! ascending), every tap a step (zero padding included), then `+ bias` once. So each output
//! has the spec's bits, whatever the blocking or the thread count.
//!
//! # What is faster
//! The spec applies the taps of one output channel to one output row at a time, with the
//! row's accumulators in memory once a row is shorter than 64. Here a register block holds
//! [`CB`] output channels x `W` consecutive outputs along the width (`W` = 16, or 8 for rows
//! shorter than 16): for each tap, `W` input values are loaded once and multiplied into all
//! `CB` channels (one broadcast weight each), so the accumulators never leave the registers
//! and each input load feeds `CB` fused multiply-adds. Weights are packed per block as
//! `[tap][CB]` (channels past `Cout` are zero and their outputs dropped). Outputs past the
//! row's end are computed from whatever follows in the padded buffer and dropped; the buffer
//! has `SLACK` zeros at its end so that no read leaves it.
//!
//! The block body is plain Rust (`f32::mul_add` on arrays), compiled per SIMD copy
//! ([`Isa`], the engine's): inside `#[target_feature(enable = "avx2,fma")]` on x86-64 with
//! AVX2 and FMA, else portable. Rows of 16 outputs on AVX-512 and on NEON run the same
//! body written on the 16-lane vector type `F32x16` instead (`block_lanes16`: one zmm, or four
//! q registers, per output channel), because the compiler does not keep the generic body's
//! accumulators in registers there; the weight gradient likewise (`wgrad_lanes16`).
//! Threads take whole `(sample, channel block, output depth)` planes.
//!
//! Strides are folded into unit-stride reads by splitting the padded input into the `s^3`
//! phases of the stride (`phase r` holds the values at `s m + r`): tap `k` of output `m` reads
//! phase `k mod s` at `m + k div s`. The input gradient of a strided convolution is taken phase
//! by phase of its OUTPUT (`q = s m + r`): each phase is a unit-stride chain over the taps whose
//! `r + p - k` is divisible by `s`, in the spec's order, and is then scattered into place.

use crate::rowops::{finish_lanes_taps, fma_lanes_taps, lane_blocks};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use crate::simd::F32x16;
use crate::simd::Isa;
use protokd_reference::layers::conv3d::{
    backward_input_dims, backward_weight_dims, forward_dims, ConvGeom,
};
use protokd_reference::reduce::{BLOCK, LANES};
use protokd_reference::tensor::Shaped;
use protokd_reference::Tensor;
use rayon::prelude::*;

/// Output channels per register block (AVX2, NEON and portable copies: 8 ymm accumulators on
/// AVX2, 16 q registers on NEON).
pub const CB: usize = 4;
/// Output channels per register block of the AVX-512 copy (8 zmm accumulators).
pub const WIDE_CB: usize = 8;

/// Zeros after the padded input, so that a block's reads past the last row stay inside.
const SLACK: usize = 64;

/// Conv3d forward with the spec's bits (see the module docs), any geometry, on the copy `isa`.
pub(crate) fn conv3d_forward(
    isa: Isa,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
) -> Tensor {
    let ([n, cin, di, hi, wi], cout, _) = forward_dims(x, w, bias, g);
    let [kd, kh, kw] = g.kernel;
    let s = g.stride;
    let (xp, q) = pad_split(x, g.padding, g.padding, s);
    let phases = s[0] * s[1] * s[2];
    // Taps in chain order (ci, a, b, c); tap (a, b, c) of output m reads phase
    // (a % s, b % s, c % s) at m + (a / s, b / s, c / s).
    let mut taps = Vec::with_capacity(cin * kd * kh * kw);
    for ci in 0..cin {
        for a in 0..kd {
            for b in 0..kh {
                for c in 0..kw {
                    taps.push(phase_offset([a, b, c], ci, cin, s, q));
                }
            }
        }
    }
    let weight = |co: usize, t: usize| w.data[co * taps.len() + t];
    let plan = Plan {
        sample_stride: phases * cin * q[0] * q[1] * q[2],
        plane: [q[1], q[2]],
        out_dims: g.output_dims([di, hi, wi]),
        out_channels: cout,
    };
    run(
        isa,
        &plan,
        n,
        &xp,
        &taps,
        weight,
        bias.map(|b| b.data.as_slice()),
    )
}

/// Offset, in an input split into the phases of the stride `s` by [`pad_split`] (`cin`
/// channels, phase volumes `q`), of tap `k = (a, b, c)` of channel `ci` from the read of tap 0
/// of channel 0: phase `k mod s`, position `k div s`.
fn phase_offset(k: [usize; 3], ci: usize, cin: usize, s: [usize; 3], q: [usize; 3]) -> usize {
    let r = ((k[0] % s[0]) * s[1] + k[1] % s[1]) * s[2] + k[2] % s[2];
    (r * cin + ci) * q[0] * q[1] * q[2] + ((k[0] / s[0]) * q[1] + k[1] / s[1]) * q[2] + k[2] / s[2]
}

/// Conv3d input gradient with the spec's bits, any geometry. The outputs are taken by phase
/// `r = q mod s` (per axis): for `q = s m + r` the taps are the `(co, a, b, c)` (ascending,
/// the spec's order) with `r + p - k` divisible by `s` on each axis, each reading
/// `dy[m + (r + p - k) / s]` (zero outside `dy`); a phase with no tap gives `+0.0`. On the copy
/// `isa`.
pub(crate) fn conv3d_backward_input(
    isa: Isa,
    dy: &Tensor,
    w: &Tensor,
    g: &ConvGeom,
    input_dims: [usize; 3],
) -> Tensor {
    let ([n, cout, ..], cin) =
        backward_input_dims(dy, w, None, g, input_dims, "conv3d_backward_input");
    let [kd, kh, kw] = g.kernel;
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    // Zeros around dy so that every read m + (r + p - k) / s lands inside: ceil((k - 1) / s)
    // before, and (generously) enough after for the last m of every phase.
    let lo = [0, 1, 2].map(|a| (k[a] - 1).div_ceil(s[a]));
    let hi = [0, 1, 2].map(|a| input_dims[a].div_ceil(s[a]) + (s[a] + p[a]) / s[a] + 1);
    let (dyp, q) = pad_split(dy, lo, hi, [1, 1, 1]);
    let k3 = kd * kh * kw;
    let mut dx = Tensor::zeros(&[n, cin, input_dims[0], input_dims[1], input_dims[2]]);
    for phase in 0..s[0] * s[1] * s[2] {
        let r = [phase / (s[1] * s[2]), (phase / s[2]) % s[1], phase % s[2]];
        let m_dims = [0, 1, 2].map(|a| input_dims[a].saturating_sub(r[a]).div_ceil(s[a]));
        if m_dims.contains(&0) {
            continue;
        }
        // The read of tap kk along axis `ax`, or None when r + p - kk is not divisible by s.
        let read = |ax: usize, kk: usize| -> Option<usize> {
            let v = r[ax] as isize + p[ax] as isize - kk as isize;
            let st = s[ax] as isize;
            (v.rem_euclid(st) == 0).then(|| (v.div_euclid(st) + lo[ax] as isize) as usize)
        };
        let mut taps = Vec::new();
        let mut tap_weights = Vec::new();
        for co in 0..cout {
            for a in 0..kd {
                for b in 0..kh {
                    for c in 0..kw {
                        if let (Some(td), Some(th), Some(tw)) = (read(0, a), read(1, b), read(2, c))
                        {
                            taps.push(((co * q[0] + td) * q[1] + th) * q[2] + tw);
                            tap_weights.push(co * cin * k3 + (a * kh + b) * kw + c);
                        }
                    }
                }
            }
        }
        // Tap (co, k) of input channel ci multiplies w[co, ci, k].
        let weight = |ci: usize, t: usize| w.data[tap_weights[t] + ci * k3];
        let plan = Plan {
            sample_stride: cout * q[0] * q[1] * q[2],
            plane: [q[1], q[2]],
            out_dims: m_dims,
            out_channels: cin,
        };
        let part = run(isa, &plan, n, &dyp, &taps, weight, None);
        if s == [1, 1, 1] {
            return part;
        }
        scatter_phase(&mut dx, &part, r, s);
    }
    dx
}

/// Conv3d weight gradient with the spec's bits: each `dw[co, ci, a, b, c]` is the canonical
/// reduction over the output positions ([`protokd_reference::reduce`]: blocks of 4096
/// positions, lane `i mod 16`), exactly as the spec's `conv3d_backward_weight`. Here the lanes
/// of several taps stay
/// in registers for a whole block (all 27 taps of a 3x3x3 kernel with AVX-512, 6 at a time with AVX2 and NEON), each
/// 16-position group of `dy` loaded once for all of them; strides are folded into unit-stride
/// reads by the phase split of the input (as the forward). Needs an output width that is a
/// multiple of 16 (so that every 16-position group is one contiguous run of a row); other
/// shapes run [`backward_weight_rows`]. On the copy `isa`.
pub(crate) fn conv3d_backward_weight(isa: Isa, x: &Tensor, dy: &Tensor, g: &ConvGeom) -> Tensor {
    let ([n, cin, ..], [_, cout, od_n, oh_n, ow_n]) = backward_weight_dims(x, dy, g);
    if ow_n % LANES != 0 {
        return backward_weight_rows(isa, x, dy, g);
    }
    let [kd, kh, kw] = g.kernel;
    let s = g.stride;
    let (xp, q) = pad_split(x, g.padding, g.padding, s);
    let phases = s[0] * s[1] * s[2];
    let vol = q[0] * q[1] * q[2];
    let out_chan = od_n * oh_n * ow_n;
    let k3 = kd * kh * kw;
    // Offset of tap (a, b, c) from the read of tap 0 (phase split: see the forward).
    let mut offsets = Vec::with_capacity(k3);
    for a in 0..kd {
        for b in 0..kh {
            for c in 0..kw {
                offsets.push(phase_offset([a, b, c], 0, cin, s, q));
            }
        }
    }
    let positions = n * out_chan;
    let nblocks = positions.div_ceil(BLOCK);
    let wide = wide(isa);
    let chunk = if wide { WIDE_TAPS } else { NARROW_TAPS };
    let per_pair: Vec<Vec<f32>> = (0..cout * cin)
        .into_par_iter()
        .map(|pair| {
            let (co, ci) = (pair / cin, pair % cin);
            let mut lanes = vec![0.0f32; nblocks * k3 * LANES];
            let mut groups = Vec::with_capacity(BLOCK / LANES);
            for blk in 0..nblocks {
                // The 16-position groups of this block: (dy index, x index of tap 0).
                groups.clear();
                let end = ((blk + 1) * BLOCK).min(positions);
                for i in (blk * BLOCK..end).step_by(LANES) {
                    let ow = i % ow_n;
                    let oh = (i / ow_n) % oh_n;
                    let od = (i / (ow_n * oh_n)) % od_n;
                    let nn = i / out_chan;
                    let d0 = (nn * cout + co) * out_chan + (od * oh_n + oh) * ow_n + ow;
                    let x0 = (nn * phases * cin + ci) * vol + (od * q[1] + oh) * q[2] + ow;
                    groups.push((d0, x0));
                }
                let block_lanes = &mut lanes[blk * k3 * LANES..(blk + 1) * k3 * LANES];
                for t0 in (0..k3).step_by(chunk) {
                    let taps = &offsets[t0..(t0 + chunk).min(k3)];
                    let out = &mut block_lanes[t0 * LANES..(t0 + taps.len()) * LANES];
                    if wide {
                        wgrad_block::<WIDE_TAPS>(isa, &dy.data, &xp, &groups, taps, out);
                    } else {
                        wgrad_block::<NARROW_TAPS>(isa, &dy.data, &xp, &groups, taps, out);
                    }
                }
            }
            finish_lanes_taps(&lanes, k3)
        })
        .collect();
    Tensor::from_vec(&[cout, cin, kd, kh, kw], per_pair.concat())
}

/// Taps whose lanes stay in registers at once: 9 zmm with AVX-512 (27 spill: LLVM keeps the
/// loop rolled), 12 ymm (6 taps) with AVX2, 24 q registers (6 taps) with NEON.
const WIDE_TAPS: usize = 27;
const NARROW_TAPS: usize = 6;

/// Whether `isa` is the AVX-512 copy, which takes the wide blocks ([`WIDE_CB`] channels,
/// [`WIDE_TAPS`] taps).
fn wide(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa == Isa::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// One block of the weight gradient for up to `T` taps, on the copy `isa`: for every group
/// `(d0, x0)` in order and every tap `t`, `lanes[t][q] = fma(dy[d0 + q], x[x0 + offset_t + q],
/// lanes[t][q])` (`q < 16`). Taps past `taps.len()` are padding (they read offset 0 and are
/// dropped).
fn wgrad_block<const T: usize>(
    isa: Isa,
    dy: &[f32],
    x: &[f32],
    groups: &[(usize, usize)],
    taps: &[usize],
    lanes: &mut [f32],
) {
    let mut offs = [0usize; T];
    offs[..taps.len()].copy_from_slice(taps);
    let mut acc = [[0f32; LANES]; T];
    for (t, a) in acc.iter_mut().enumerate().take(taps.len()) {
        a.copy_from_slice(&lanes[t * LANES..(t + 1) * LANES]);
    }
    match isa {
        // SAFETY (each SIMD arm): the engine only holds a copy the CPU can run (checked when
        // it was built).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { wgrad_avx512::<T>(dy, x, groups, &offs, &mut acc) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { wgrad_avx2_fma::<T>(dy, x, groups, &offs, &mut acc) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { wgrad_neon::<T>(dy, x, groups, &offs, &mut acc) },
        Isa::Portable => wgrad_body::<T>(dy, x, groups, &offs, &mut acc),
    }
    for (t, a) in acc.iter().enumerate().take(taps.len()) {
        lanes[t * LANES..(t + 1) * LANES].copy_from_slice(a);
    }
}

/// [`wgrad_lanes16`] on zmm registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn wgrad_avx512<const T: usize>(
    dy: &[f32],
    x: &[f32],
    groups: &[(usize, usize)],
    offs: &[usize; T],
    acc: &mut [[f32; LANES]; T],
) {
    wgrad_lanes16::<std::arch::x86_64::__m512, T>(dy, x, groups, offs, acc);
}

/// [`wgrad_lanes16`] on NEON q registers (four per tap).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn wgrad_neon<const T: usize>(
    dy: &[f32],
    x: &[f32],
    groups: &[(usize, usize)],
    offs: &[usize; T],
    acc: &mut [[f32; LANES]; T],
) {
    wgrad_lanes16::<std::arch::aarch64::float32x4x4_t, T>(dy, x, groups, offs, acc);
}

/// [`wgrad_body`] written on the vector type `V`: one 16-lane vector per tap, kept in
/// registers over all the groups (the generic body spends more on index arithmetic and bounds
/// checks than on the fused multiply-adds). For every group `(d0, x0)` in order, `dy[d0 ..
/// d0 + 16]` is loaded once, and then for every tap `t` in order
/// `acc[t] = fma(dy[d0 ..], x[x0 + offs[t] ..], acc[t])`, lane by lane: the spec's chain step
/// of lane `q` for the position `d0 + q`.
///
/// # Safety
/// The CPU must have `V`'s features: call only from a function compiled with them.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn wgrad_lanes16<V: F32x16, const T: usize>(
    dy: &[f32],
    x: &[f32],
    groups: &[(usize, usize)],
    offs: &[usize; T],
    acc: &mut [[f32; LANES]; T],
) {
    let max_d = groups.iter().map(|g| g.0).max().unwrap_or(0);
    let max_x = groups.iter().map(|g| g.1).max().unwrap_or(0) + offs.iter().max().unwrap_or(&0);
    assert!(
        groups.is_empty() || (max_d + LANES <= dy.len() && max_x + LANES <= x.len()),
        "wgrad: reads in range"
    );
    let mut a: [V; T] = [V::splat(0.0); T];
    for (at, from) in a.iter_mut().zip(acc.iter()) {
        *at = V::load(from.as_ptr());
    }
    for &(d0, x0) in groups {
        // SAFETY: d0 + 16 <= dy.len() and x0 + offs[t] + 16 <= x.len() (asserted above).
        let dv = V::load(dy.as_ptr().add(d0));
        let xp = x.as_ptr().add(x0);
        for (at, &o) in a.iter_mut().zip(offs) {
            // fma(dy, x, lane): the spec's chain step.
            *at = dv.mul_add(V::load(xp.add(o)), *at);
        }
    }
    for (to, at) in acc.iter_mut().zip(&a) {
        at.store(to.as_mut_ptr());
    }
}

/// [`wgrad_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn wgrad_avx2_fma<const T: usize>(
    dy: &[f32],
    x: &[f32],
    groups: &[(usize, usize)],
    offs: &[usize; T],
    acc: &mut [[f32; LANES]; T],
) {
    wgrad_body::<T>(dy, x, groups, offs, acc);
}

/// The weight-gradient block of [`wgrad_block`] in plain Rust: for every group `(d0, x0)` in
/// order, every tap `t` in order, every lane `q`: `acc[t][q] = fma(dy[d0 + q],
/// x[x0 + offs[t] + q], acc[t][q])`.
#[inline(always)]
fn wgrad_body<const T: usize>(
    dy: &[f32],
    x: &[f32],
    groups: &[(usize, usize)],
    offs: &[usize; T],
    acc: &mut [[f32; LANES]; T],
) {
    let mut a = *acc;
    for &(d0, x0) in groups {
        let dv: &[f32; LANES] = dy[d0..d0 + LANES].try_into().expect("16 values");
        for t in 0..T {
            let xs: &[f32; LANES] = x[x0 + offs[t]..x0 + offs[t] + LANES]
                .try_into()
                .expect("16 values");
            for q in 0..LANES {
                a[t][q] = dv[q].mul_add(xs[q], a[t][q]);
            }
        }
    }
    *acc = a;
}

/// Conv3d weight gradient for any output width, on the copy `isa`: the `kd kh kw` canonical
/// reductions of one `(co, ci)` pair advance together along each output row
/// ([`fma_lanes_taps`], lane `i mod 16` of term `i`), reading a zero-padded copy of the input,
/// so every weight gets exactly the spec's chains and trees. Pairs run in parallel.
fn backward_weight_rows(isa: Isa, x: &Tensor, dy: &Tensor, g: &ConvGeom) -> Tensor {
    let ([n, cin, _, _, _], [_, cout, od_n, oh_n, ow_n]) = backward_weight_dims(x, dy, g);
    let [kd, kh, kw] = g.kernel;
    let s = g.stride;
    let xp = pad_spatial(x, g.padding, g.padding);
    let [_, _, dp, hp, wp] = xp.dims5();
    let chan = dp * hp * wp;
    let out_chan = od_n * oh_n * ow_n;
    let k3 = kd * kh * kw;
    // Offset of tap (a, b, c) from the base of an output row, in a padded channel.
    let mut offsets = Vec::with_capacity(k3);
    for a in 0..kd {
        for b in 0..kh {
            for c in 0..kw {
                offsets.push((a * hp + b) * wp + c);
            }
        }
    }
    let lane_len = lane_blocks(n * out_chan) * k3 * LANES;

    let per_pair: Vec<Vec<f32>> = (0..cout * cin)
        .into_par_iter()
        .map(|pair| {
            let (co, ci) = (pair / cin, pair % cin);
            // The partial sums of the k3 reductions of this (co, ci).
            let mut lanes = vec![0.0f32; lane_len];
            for nn in 0..n {
                let xs = &xp.data[(nn * cin + ci) * chan..(nn * cin + ci + 1) * chan];
                let dys = &dy.data[(nn * cout + co) * out_chan..(nn * cout + co + 1) * out_chan];
                for od in 0..od_n {
                    for oh in 0..oh_n {
                        let first = ((nn * od_n + od) * oh_n + oh) * ow_n;
                        let row = (od * oh_n + oh) * ow_n;
                        let base = (od * s[0] * hp + oh * s[1]) * wp;
                        fma_lanes_taps(
                            isa,
                            &mut lanes,
                            first,
                            &dys[row..row + ow_n],
                            &xs[base..],
                            s[2],
                            &offsets,
                        );
                    }
                }
            }
            finish_lanes_taps(&lanes, k3)
        })
        .collect();
    Tensor::from_vec(&[cout, cin, kd, kh, kw], per_pair.concat())
}

/// `x` copied into a larger zero buffer: `lo[a]` zeros before and `hi[a]` zeros after each
/// spatial axis `a`. Pure data movement (no arithmetic).
fn pad_spatial(x: &Tensor, lo: [usize; 3], hi: [usize; 3]) -> Tensor {
    let [n, c, d, h, w] = x.dims5();
    let (dp, hp, wp) = (d + lo[0] + hi[0], h + lo[1] + hi[1], w + lo[2] + hi[2]);
    let mut out = Tensor::zeros(&[n, c, dp, hp, wp]);
    if d * h * w == 0 {
        return out;
    }
    out.data
        .par_chunks_mut(dp * hp * wp)
        .zip(x.data.par_chunks(d * h * w))
        .for_each(|(o, src)| {
            for z in 0..d {
                for y in 0..h {
                    let from = (z * h + y) * w;
                    let to = ((z + lo[0]) * hp + y + lo[1]) * wp + lo[2];
                    o[to..to + w].copy_from_slice(&src[from..from + w]);
                }
            }
        });
    out
}

/// Writes `part` `[N, C, M]` into the phase `r` of `dx` `[N, C, I]`: `dx[.., s m + r] =
/// part[.., m]` on each axis.
fn scatter_phase(dx: &mut Tensor, part: &Tensor, r: [usize; 3], s: [usize; 3]) {
    let [_, _, d, h, w] = dx.dims5();
    let [_, _, md, mh, mw] = part.dims5();
    dx.data
        .par_chunks_mut(d * h * w)
        .zip(part.data.par_chunks(md * mh * mw))
        .for_each(|(out, src)| {
            for z in 0..md {
                for y in 0..mh {
                    let row = ((s[0] * z + r[0]) * h + s[1] * y + r[1]) * w;
                    for x in 0..mw {
                        out[row + s[2] * x + r[2]] = src[(z * mh + y) * mw + x];
                    }
                }
            }
        });
}

/// `x` zero-padded by `lo` before and `hi` after each spatial axis and split into the
/// `s0 s1 s2` phases of the stride `s`: phase `r` (index `(r0 s1 + r1) s2 + r2`) holds the
/// padded values at `s m + r`, as `[N, phase, C, Q0, Q1, Q2]` with `Q = ceil(padded / s)`
/// (zeros where `s m + r` is past the padded size), then `SLACK` zeros. Returns the buffer
/// and `Q`. With unit stride this is the plain zero-padded input.
fn pad_split(x: &Tensor, lo: [usize; 3], hi: [usize; 3], s: [usize; 3]) -> (Vec<f32>, [usize; 3]) {
    let [n, c, d, h, w] = x.dims5();
    let dims = [d, h, w];
    let q = [0, 1, 2].map(|a| (dims[a] + lo[a] + hi[a]).div_ceil(s[a]));
    let vol = q[0] * q[1] * q[2];
    let phases = s[0] * s[1] * s[2];
    let mut out = vec![0f32; n * phases * c * vol + SLACK];
    // Source index along an axis of the output index m in phase r, if inside the input.
    let src = |ax: usize, m: usize, r: usize| -> Option<usize> {
        (s[ax] * m + r)
            .checked_sub(lo[ax])
            .filter(|&i| i < dims[ax])
    };
    out[..n * phases * c * vol]
        .par_chunks_mut(vol)
        .enumerate()
        .for_each(|(plane, o)| {
            let ci = plane % c;
            let phase = (plane / c) % phases;
            let nn = plane / (c * phases);
            let r = [phase / (s[1] * s[2]), (phase / s[2]) % s[1], phase % s[2]];
            let xs = &x.data[(nn * c + ci) * d * h * w..(nn * c + ci + 1) * d * h * w];
            if phases == 1 {
                // Unit stride: whole rows, copied.
                for z in 0..d {
                    for y in 0..h {
                        let to = ((z + lo[0]) * q[1] + y + lo[1]) * q[2] + lo[2];
                        o[to..to + w].copy_from_slice(&xs[(z * h + y) * w..(z * h + y + 1) * w]);
                    }
                }
                return;
            }
            for mz in 0..q[0] {
                let Some(z) = src(0, mz, r[0]) else { continue };
                for my in 0..q[1] {
                    let Some(y) = src(1, my, r[1]) else { continue };
                    let row = &mut o[(mz * q[1] + my) * q[2]..(mz * q[1] + my + 1) * q[2]];
                    for (mx, v) in row.iter_mut().enumerate() {
                        if let Some(xi) = src(2, mx, r[2]) {
                            *v = xs[(z * h + y) * w + xi];
                        }
                    }
                }
            }
        });
    (out, q)
}

/// The geometry of one blocked convolution: outputs `[N, out_channels, out_dims]`, each output
/// `(od, oh, ow)` reading, for tap offset `t`, the input at
/// `n * sample_stride + (od * H' + oh) * W' + ow + t` (`plane = [H', W']`; strides are folded
/// into the tap offsets by the phase split).
struct Plan {
    sample_stride: usize,
    plane: [usize; 2],
    out_dims: [usize; 3],
    out_channels: usize,
}

/// Raw output pointer shared by the threads; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (distinct (sample, channel, depth) planes) and nothing
// reads the buffer until every task has finished.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Writes `v` at element `i`.
    ///
    /// # Safety
    /// `i` must lie inside the buffer, and no other thread may access element `i` meanwhile.
    unsafe fn write(&self, i: usize, v: f32) {
        *self.0.add(i) = v;
    }
}

/// Runs every output block of `plan`: chains over `taps` (offsets) with
/// `weight(out_channel, tap index)`, then `+ bias[out_channel]` when given.
fn run(
    isa: Isa,
    plan: &Plan,
    n: usize,
    x: &[f32],
    taps: &[usize],
    weight: impl Fn(usize, usize) -> f32 + Sync,
    bias: Option<&[f32]>,
) -> Tensor {
    if wide(isa) {
        run_blocked::<WIDE_CB>(plan, n, x, taps, weight, bias, isa)
    } else {
        run_blocked::<CB>(plan, n, x, taps, weight, bias, isa)
    }
}

/// [`run`] with blocks of `B` output channels, on the copy `isa`.
fn run_blocked<const B: usize>(
    plan: &Plan,
    n: usize,
    x: &[f32],
    taps: &[usize],
    weight: impl Fn(usize, usize) -> f32 + Sync,
    bias: Option<&[f32]>,
    isa: Isa,
) -> Tensor {
    let [od_n, oh_n, ow_n] = plan.out_dims;
    let cout = plan.out_channels;
    let blocks = cout.div_ceil(B);
    let nt = taps.len();
    let max_tap = taps.iter().copied().max().unwrap_or(0);
    // Packed weights: block `kb`, tap `t`, channel `j` at ((kb * nt) + t) * B + j.
    let mut packed = vec![0f32; blocks * nt * B];
    for (i, p) in packed.iter_mut().enumerate() {
        let (j, t, kb) = (i % B, (i / B) % nt, i / (B * nt));
        let co = kb * B + j;
        if co < cout {
            *p = weight(co, t);
        }
    }
    let mut y = Tensor::zeros(&[n, cout, od_n, oh_n, ow_n]);
    let out = Out(y.data.as_mut_ptr());
    let wide = ow_n >= 16;
    (0..n * blocks * od_n).into_par_iter().for_each(|task| {
        let od = task % od_n;
        let kb = (task / od_n) % blocks;
        let nn = task / (od_n * blocks);
        let wpk = &packed[kb * nt * B..(kb + 1) * nt * B];
        let xs = &x[nn * plan.sample_stride..];
        for oh in 0..oh_n {
            let row = (od * plan.plane[0] + oh) * plan.plane[1];
            let mut ow0 = 0;
            while ow0 < ow_n {
                let base = row + ow0;
                let width = if wide { 16 } else { 8 };
                let store = |acc: &[[f32; 16]; B]| {
                    for (j, lane) in acc.iter().enumerate() {
                        let co = kb * B + j;
                        if co >= cout {
                            break;
                        }
                        let b = bias.map(|b| b[co]);
                        let first = (((nn * cout + co) * od_n + od) * oh_n + oh) * ow_n + ow0;
                        for (i, &v) in lane.iter().take(width.min(ow_n - ow0)).enumerate() {
                            let v = match b {
                                Some(b) => v + b,
                                None => v,
                            };
                            // SAFETY: `first + i` lies inside `y` (co < cout, ow0 + i < ow_n),
                            // and only this task writes plane (nn, co, od).
                            unsafe { out.write(first + i, v) };
                        }
                    }
                };
                let mut acc = [[0f32; 16]; B];
                if wide {
                    block::<16, B>(isa, xs, base, (taps, max_tap), wpk, &mut acc);
                } else {
                    let mut acc8 = [[0f32; 8]; B];
                    block::<8, B>(isa, xs, base, (taps, max_tap), wpk, &mut acc8);
                    for (a, b) in acc.iter_mut().zip(&acc8) {
                        a[..8].copy_from_slice(b);
                    }
                }
                store(&acc);
                ow0 += width;
            }
        }
    });
    y
}

/// One register block: `acc[j][i] = fma(x[base + t + i], wpk[t * B + j], acc[j][i])` for
/// every tap offset `t` of `taps` in order (`max_tap` their largest), on the compiled copy `isa`.
fn block<const W: usize, const B: usize>(
    isa: Isa,
    x: &[f32],
    base: usize,
    (taps, max_tap): (&[usize], usize),
    wpk: &[f32],
    acc: &mut [[f32; W]; B],
) {
    match isa {
        // SAFETY (each SIMD arm): the engine only holds a copy the CPU can run (checked when
        // it was built).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { block_avx512::<W, B>(x, base, (taps, max_tap), wpk, acc) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { block_avx2_fma::<W, B>(x, base, taps, wpk, acc) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { block_neon::<W, B>(x, base, (taps, max_tap), wpk, acc) },
        Isa::Portable => {
            let _ = max_tap;
            block_body::<W, B>(x, base, taps, wpk, acc)
        }
    }
}

/// [`block_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2_fma<const W: usize, const B: usize>(
    x: &[f32],
    base: usize,
    taps: &[usize],
    wpk: &[f32],
    acc: &mut [[f32; W]; B],
) {
    block_body::<W, B>(x, base, taps, wpk, acc);
}

/// [`block_body`] compiled for AVX-512F; rows of 16 outputs run [`block_lanes16`] on zmm
/// registers (one per output channel), because LLVM does not keep `B` x 16 accumulators of
/// the generic body in registers once `B` reaches 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512<const W: usize, const B: usize>(
    x: &[f32],
    base: usize,
    taps: (&[usize], usize),
    wpk: &[f32],
    acc: &mut [[f32; W]; B],
) {
    if W == LANES {
        block_lanes16::<std::arch::x86_64::__m512, W, B>(x, base, taps, wpk, acc);
        return;
    }
    block_body::<W, B>(x, base, taps.0, wpk, acc);
}

/// [`block_body`] compiled for NEON; rows of 16 outputs run [`block_lanes16`] on q registers
/// (four per output channel: `B` = 4 channels keep 16 of the 32 in use).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn block_neon<const W: usize, const B: usize>(
    x: &[f32],
    base: usize,
    taps: (&[usize], usize),
    wpk: &[f32],
    acc: &mut [[f32; W]; B],
) {
    if W == LANES {
        block_lanes16::<std::arch::aarch64::float32x4x4_t, W, B>(x, base, taps, wpk, acc);
        return;
    }
    block_body::<W, B>(x, base, taps.0, wpk, acc);
}

/// [`block_body`] for rows of `W` = 16 outputs, written on the vector type `V`: one 16-lane
/// vector accumulator per output channel `j`, kept in registers over all the taps. For each
/// tap `t` in order, the 16 inputs `x[base + taps[t] ..]` are loaded once and, for each
/// channel `j`, `acc[j] = fma(x, splat(wpk[t * B + j]), acc[j])` lane by lane: the spec's
/// chain step of output `i` of channel `j` in lane `i`.
///
/// # Safety
/// The CPU must have `V`'s features: call only from a function compiled with them.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn block_lanes16<V: F32x16, const W: usize, const B: usize>(
    x: &[f32],
    base: usize,
    (taps, max_tap): (&[usize], usize),
    wpk: &[f32],
    acc: &mut [[f32; W]; B],
) {
    assert!(W == LANES, "block_lanes16: rows of 16");
    assert!(
        base + max_tap + W <= x.len() && wpk.len() >= taps.len() * B,
        "block: reads in range"
    );
    let mut a: [V; B] = [V::splat(0.0); B];
    for (aj, from) in a.iter_mut().zip(acc.iter()) {
        *aj = V::load(from.as_ptr());
    }
    for (t, &off) in taps.iter().enumerate() {
        // SAFETY: base + off + 16 <= x.len() for every tap (asserted above).
        let xv = V::load(x.as_ptr().add(base + off));
        for (j, aj) in a.iter_mut().enumerate() {
            // SAFETY: t * B + j < taps.len() * B <= wpk.len() (asserted above).
            let wv = V::splat(*wpk.get_unchecked(t * B + j));
            // fma(x, w, acc), one rounding: the spec's chain step.
            *aj = xv.mul_add(wv, *aj);
        }
    }
    for (j, aj) in a.iter().enumerate() {
        aj.store(acc[j].as_mut_ptr());
    }
}

/// One register block in plain Rust: for every tap `t` in order, every channel `j`, every
/// output `i`: `acc[j][i] = fma(x[base + taps[t] + i], wpk[t * B + j], acc[j][i])`.
#[inline(always)]
fn block_body<const W: usize, const B: usize>(
    x: &[f32],
    base: usize,
    taps: &[usize],
    wpk: &[f32],
    acc: &mut [[f32; W]; B],
) {
    let mut a = *acc;
    for (t, &off) in taps.iter().enumerate() {
        let xs: &[f32; W] = x[base + off..base + off + W].try_into().expect("W values");
        let ws: &[f32; B] = wpk[t * B..t * B + B].try_into().expect("B weights");
        for j in 0..B {
            for i in 0..W {
                a[j][i] = xs[i].mul_add(ws[j], a[j][i]);
            }
        }
    }
    *acc = a;
}

// Verifies (every test in this file): R-NUM-5, R-NUM-1
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::layers::conv3d::{
        conv3d_backward_input as spec_backward_input,
        conv3d_backward_weight as spec_backward_weight, conv3d_forward as spec_forward,
    };
    use protokd_reference::testutil::{random_tensor, random_values, thread_pools};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn bits(t: &Tensor) -> Vec<u32> {
        t.data.iter().map(|v| v.to_bits()).collect()
    }

    /// A random case: geometry, input, weight, bias.
    fn case(rng: &mut ChaCha8Rng, seed: u64) -> (ConvGeom, Tensor, Tensor, Option<Tensor>) {
        let mut pick = |lo: u32, hi: u32| lo + rng.next_u32() % (hi - lo + 1);
        let k = [pick(1, 3), pick(1, 3), pick(1, 3)].map(|v| v as usize);
        let s = [pick(1, 3), pick(1, 2), pick(1, 3)].map(|v| v as usize);
        let p = [0, 1, 2].map(|a| (pick(0, 2) as usize).min(k[a] - 1));
        let g = ConvGeom {
            kernel: k,
            stride: s,
            padding: p,
        };
        // Sizes 1..40 on one random axis (odd sizes included), small on the others.
        let big = pick(0, 2) as usize;
        let dims: [usize; 3] =
            std::array::from_fn(|a| if a == big { pick(1, 40) } else { pick(1, 9) } as usize);
        let mut dims = [0, 1, 2].map(|a| dims[a].max(k[a].saturating_sub(2 * p[a])));
        if pick(0, 1) == 1 {
            // An output width of 16 or 32 (the weight gradient's blocked path).
            let ow = 16 * pick(1, 2) as usize;
            dims[2] = (ow - 1) * s[2] + k[2] - 2 * p[2];
        }
        let (n, mut cin, mut cout) = (
            pick(1, 2) as usize,
            pick(1, 7) as usize,
            pick(1, 11) as usize,
        );
        if pick(0, 5) == 0 {
            // Channel counts up to 64, on a small grid.
            (cin, cout) = (pick(1, 64) as usize, pick(1, 64) as usize);
            dims = [0, 1, 2].map(|a| (pick(1, 4) as usize).max(k[a].saturating_sub(2 * p[a])));
        }
        let x = random_tensor(&[n, cin, dims[0], dims[1], dims[2]], seed);
        let w = random_tensor(&[cout, cin, k[0], k[1], k[2]], seed + 1);
        let b = (pick(0, 1) == 1).then(|| random_tensor(&[cout], seed + 2));
        (g, x, w, b)
    }

    /// Fast forward, input gradient and weight gradient against the spec, bit for bit, on
    /// random shapes with 1, 2 and 7 threads, on every copy this CPU can run (AVX-512 and
    /// AVX2+FMA on x86-64, NEON on aarch64, and the portable one), each passed by value.
    #[test]
    fn fast_kernels_give_the_spec_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let pools = thread_pools(&[1, 2, 7]);
        let isas = Isa::usable();
        #[cfg(target_arch = "aarch64")]
        assert_eq!(isas, [Isa::Neon, Isa::Portable]);
        for i in 0..60 {
            let (g, x, w, b) = case(&mut rng, 1000 + i);
            let spec = spec_forward(&x, &w, b.as_ref(), &g);
            let [_, _, d, h, ww] = x.dims5();
            let dy = random_tensor(&spec.shape, 5000 + i);
            let spec_dx = spec_backward_input(&dy, &w, &g, [d, h, ww]);
            let spec_dw = spec_backward_weight(&x, &dy, &g);
            for &isa in &isas {
                for pool in &pools {
                    let (fy, fdx, fdw) = pool.install(|| {
                        (
                            conv3d_forward(isa, &x, &w, b.as_ref(), &g),
                            conv3d_backward_input(isa, &dy, &w, &g, [d, h, ww]),
                            conv3d_backward_weight(isa, &x, &dy, &g),
                        )
                    });
                    let what = format!("{} {g:?} x {:?}", isa.name(), x.shape);
                    assert_eq!(bits(&fy), bits(&spec), "forward {what}");
                    assert_eq!(bits(&fdx), bits(&spec_dx), "input grad {what}");
                    assert_eq!(bits(&fdw), bits(&spec_dw), "weight grad {what}");
                }
            }
        }
    }

    /// The forward / input-gradient register block of every copy `isa` against the portable
    /// body, called directly: rows of `W` outputs, `B` channels, `taps.len()` taps.
    fn check_block<const W: usize, const B: usize>(isa: Isa, seed: u64) {
        let taps: Vec<usize> = (0..29).map(|t| (t * 7 + t / 3) % 53).collect();
        let max_tap = *taps.iter().max().unwrap();
        let x = random_values(max_tap + W + 5, seed);
        let wpk = random_values(taps.len() * B, seed + 1);
        let init = random_values(W * B, seed + 2);
        for base in [0, 3, 5] {
            let mut want = [[0f32; W]; B];
            for (j, row) in want.iter_mut().enumerate() {
                row.copy_from_slice(&init[j * W..(j + 1) * W]);
            }
            let mut got = want;
            block_body::<W, B>(&x, base, &taps, &wpk, &mut want);
            block::<W, B>(isa, &x, base, (&taps, max_tap), &wpk, &mut got);
            let b = |a: &[[f32; W]; B]| a.iter().flatten().map(|v| v.to_bits()).collect();
            let (got, want): (Vec<u32>, Vec<u32>) = (b(&got), b(&want));
            assert_eq!(got, want, "{} block W {W} B {B} base {base}", isa.name());
        }
    }

    /// The weight-gradient block of the copy `isa` against the portable body, called
    /// directly: `T` tap slots, `ntaps` of them used.
    fn check_wgrad<const T: usize>(isa: Isa, ntaps: usize, seed: u64) {
        let offs: Vec<usize> = (0..ntaps).map(|t| (t * 11) % 37).collect();
        let dy = random_values(40 * LANES, seed);
        let x = random_values(45 * LANES, seed + 1);
        let groups: Vec<(usize, usize)> = (0..37).map(|g| (g * LANES, g * LANES + g % 5)).collect();
        let init = random_values(ntaps * LANES, seed + 2);
        let mut got = init.clone();
        wgrad_block::<T>(isa, &dy, &x, &groups, &offs, &mut got);
        let mut slots = [0usize; T];
        slots[..ntaps].copy_from_slice(&offs);
        let mut acc = [[0f32; LANES]; T];
        for (t, a) in acc.iter_mut().enumerate().take(ntaps) {
            a.copy_from_slice(&init[t * LANES..(t + 1) * LANES]);
        }
        wgrad_body::<T>(&dy, &x, &groups, &slots, &mut acc);
        let want: Vec<u32> = acc[..ntaps].iter().flatten().map(|v| v.to_bits()).collect();
        let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{} wgrad T {T} taps {ntaps}", isa.name());
    }

    /// Every copy this CPU can run (NEON on aarch64; AVX-512 and AVX2+FMA on x86-64, as
    /// present) gives the portable bodies' bits in each register block, called directly
    /// (each passed by value): rows of 16 and 8 outputs with 4 and 8 channels, and
    /// weight-gradient blocks of 6 and 27 tap slots, full and partly padding.
    #[test]
    fn every_simd_copy_gives_the_portable_block_bits() {
        let isas = Isa::usable();
        #[cfg(target_arch = "aarch64")]
        assert_eq!(isas, [Isa::Neon, Isa::Portable]);
        for (k, &isa) in isas.iter().enumerate() {
            let seed = 100 * k as u64;
            check_block::<16, CB>(isa, seed);
            check_block::<16, WIDE_CB>(isa, seed + 10);
            check_block::<8, CB>(isa, seed + 20);
            check_block::<8, WIDE_CB>(isa, seed + 30);
            for ntaps in [1, 5, 6] {
                check_wgrad::<NARROW_TAPS>(isa, ntaps, seed + 40 + ntaps as u64);
            }
            for ntaps in [9, 27] {
                check_wgrad::<WIDE_TAPS>(isa, ntaps, seed + 50 + ntaps as u64);
            }
        }
        eprintln!(
            "copies checked: {:?}",
            isas.iter().map(|i| i.name()).collect::<Vec<_>>()
        );
    }

    /// The VNet's own shapes at n_filters 16 on a 32^3 patch (64 channels deep down), on the
    /// best copy of this CPU.
    #[test]
    fn vnet_shapes_give_the_spec_bits() {
        let g = ConvGeom::cubic(3, 1, 1);
        let isa = Isa::detected();
        for (c, s) in [(16, 32), (32, 16), (64, 8), (64, 4), (128, 2)] {
            let x = random_tensor(&[1, c, s, s, s], c as u64);
            let w = random_tensor(&[c, c, 3, 3, 3], 7);
            let y = conv3d_forward(isa, &x, &w, None, &g);
            assert_eq!(bits(&y), bits(&spec_forward(&x, &w, None, &g)));
            let dx = conv3d_backward_input(isa, &y, &w, &g, [s, s, s]);
            assert_eq!(bits(&dx), bits(&spec_backward_input(&y, &w, &g, [s, s, s])));
            let dw = conv3d_backward_weight(isa, &x, &y, &g);
            assert_eq!(bits(&dw), bits(&spec_backward_weight(&x, &y, &g)));
        }
    }
}
