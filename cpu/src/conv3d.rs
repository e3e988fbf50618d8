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
//! row's accumulators in memory once a row is shorter than 64. Here the forward and the input
//! gradient run register tiles of several output channels x several vectors of consecutive
//! outputs (module `tile`: 8 x 3 zmm on AVX-512, 6 x 2 ymm on AVX2): for each tap the input
//! vectors are loaded once and each weight broadcast once, so the accumulators never leave the
//! registers and each load feeds several fused multiply-adds. The weight gradient keeps the
//! canonical-reduction lanes of 2 output channels x up to 9 taps in registers over a block of
//! positions (module `wgrad`). Threads take `(sample, output depth)` planes (each for every
//! channel block, chunk of rows by chunk of rows), and `(output channel pair, input channel)`
//! pairs for the weight gradient.
//!
//! Strides are folded into unit-stride reads by splitting the padded input into the `s^3`
//! phases of the stride (`phase r` holds the values at `s m + r`): tap `k` of output `m` reads
//! phase `k mod s` at `m + k div s`. The input gradient of a strided convolution is taken phase
//! by phase of its OUTPUT (`q = s m + r`): each phase is a unit-stride chain over the taps whose
//! `r + p - k` is divisible by `s`, in the spec's order, and is then scattered into place.

use crate::rowops::{finish_lanes_taps, fma_lanes_taps, lane_blocks};
use crate::simd::Isa;
use crate::tile::{run, Plan};
use crate::wgrad::{self, Group, CHANNELS, HALF};
use protokd_reference::layers::conv3d::{
    backward_input_dims, backward_weight_dims, forward_dims, ConvGeom,
};
use protokd_reference::reduce::{BLOCK, LANES};
use protokd_reference::tensor::Shaped;
use protokd_reference::Tensor;
use rayon::prelude::*;

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
    let ([n, cout, dy_d, dy_h, dy_w], cin) =
        backward_input_dims(dy, w, None, g, input_dims, "conv3d_backward_input");
    let [kd, kh, kw] = g.kernel;
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    // Zeros around dy so that every read m + (r + p - k) / s lands inside: ceil((k - 1) / s)
    // before, and after, what the last m of the phases reads past dy's end: the largest
    // m + (r + p) / s + 1 (m < ceil((I - r) / s)) less dy's size.
    let lo = [0, 1, 2].map(|a| (k[a] - 1).div_ceil(s[a]));
    let dy_dims = [dy_d, dy_h, dy_w];
    let hi = [0, 1, 2].map(|a| {
        (0..s[a])
            .map(|r| input_dims[a].saturating_sub(r).div_ceil(s[a]) + (r + p[a]) / s[a])
            .max()
            .unwrap_or(0)
            .saturating_sub(dy_dims[a])
    });
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
/// of 2 output channels x several taps stay in registers for a whole block (module `wgrad`;
/// for a 3x3x3 kernel 9 taps at a time with AVX-512, 6 with AVX2, 3 with NEON), each
/// 16-position group of `dy` loaded once for all of them; strides are folded into unit-stride
/// reads by the phase split of the input (as the forward). Needs an output width that is a
/// multiple of 8 (so that each half of a 16-position group is one contiguous run of a row) and
/// an output volume that is a multiple of 16 (so that a group is 16 consecutive values of
/// `dy`); other shapes run [`backward_weight_rows`]. On the copy `isa`.
pub(crate) fn conv3d_backward_weight(isa: Isa, x: &Tensor, dy: &Tensor, g: &ConvGeom) -> Tensor {
    let ([n, cin, ..], [_, cout, od_n, oh_n, ow_n]) = backward_weight_dims(x, dy, g);
    if ow_n % HALF != 0 || (od_n * oh_n * ow_n) % LANES != 0 {
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
    let chunks = wgrad::tap_chunks(isa, k3);
    // The 16-position groups, in order, for output channel 0 and input channel 0 (see
    // `wgrad::Group`); block `blk` is groups `blk * BLOCK / 16 ..`. The same for every pair,
    // whose channels are reached by offsetting `dy` and `x`.
    let x_at = |i: usize| {
        let ow = i % ow_n;
        let oh = (i / ow_n) % oh_n;
        let od = (i / (ow_n * oh_n)) % od_n;
        (i / out_chan) * phases * cin * vol + (od * q[1] + oh) * q[2] + ow
    };
    let groups: Vec<Group> = (0..positions)
        .step_by(LANES)
        .map(|i| {
            let d0 = (i / out_chan) * cout * out_chan + i % out_chan;
            (d0, [x_at(i), x_at(i + HALF)])
        })
        .collect();
    // Pairs (channel group, ci): output channels co0 and co1 (co1 = co0 for the last group of
    // an odd cout: computed twice, kept once).
    let groups_n = cout.div_ceil(CHANNELS);
    let per_pair: Vec<[Vec<f32>; CHANNELS]> = (0..groups_n * cin)
        .into_par_iter()
        .map(|pair| {
            let (cg, ci) = (pair / cin, pair % cin);
            let co0 = cg * CHANNELS;
            let dstride = ((co0 + 1).min(cout - 1) - co0) * out_chan;
            let (dy_pair, x_pair) = (&dy.data[co0 * out_chan..], &xp[ci * vol..]);
            let mut lanes: [Vec<f32>; CHANNELS] =
                std::array::from_fn(|_| vec![0.0f32; nblocks * k3 * LANES]);
            for (blk, block_groups) in groups.chunks(BLOCK / LANES).enumerate() {
                let span = blk * k3 * LANES..(blk + 1) * k3 * LANES;
                let [l0, l1] = &mut lanes;
                let (b0, b1) = (&mut l0[span.clone()], &mut l1[span]);
                let mut t0 = 0;
                for &chunk in &chunks {
                    let part = t0 * LANES..(t0 + chunk) * LANES;
                    wgrad::block(
                        isa,
                        (dy_pair, dstride),
                        x_pair,
                        block_groups,
                        &offsets[t0..t0 + chunk],
                        [&mut b0[part.clone()], &mut b1[part]],
                    );
                    t0 += chunk;
                }
            }
            lanes.map(|l| finish_lanes_taps(&l, k3))
        })
        .collect();
    // dw[co, ci] is channel co % 2 of pair (co / 2, ci).
    let mut dw = Vec::with_capacity(cout * cin * k3);
    for co in 0..cout {
        for ci in 0..cin {
            dw.extend_from_slice(&per_pair[(co / CHANNELS) * cin + ci][co % CHANNELS]);
        }
    }
    Tensor::from_vec(&[cout, cin, kd, kh, kw], dw)
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

// Verifies (every test in this file): R-NUM-1, R-NUM-4, R-NUM-5
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::layers::conv3d::{
        conv3d_backward_input as spec_backward_input,
        conv3d_backward_weight as spec_backward_weight, conv3d_forward as spec_forward,
    };
    use protokd_reference::testutil::{random_tensor, thread_pools};
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
            // An output width of 8, 16, 24 or 32 (the weight gradient's blocked path, when the
            // output volume is a multiple of 16).
            let ow = 8 * pick(1, 4) as usize;
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
    /// random shapes with 1, 2, 3 and 7 threads, on every copy this CPU can run (AVX-512 and
    /// AVX2+FMA on x86-64, NEON on aarch64, and the portable one), each passed by value.
    #[test]
    fn fast_kernels_give_the_spec_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let pools = thread_pools(&[1, 2, 3, 7]);
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
