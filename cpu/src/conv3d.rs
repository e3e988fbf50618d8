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
//! Strides are folded into unit-stride reads by splitting each row of the padded input into the
//! `s2` phases of the width stride ([`Split`]: sub-row `r` holds the values at `s2 m + r`): tap
//! `(a, b, c)` of output `(od, oh, m)` reads row `(s0 od + a, s1 oh + b)`, sub-row `c mod s2`,
//! at `m + c div s2`; depth and height keep their row order, so the rows one output row reads
//! lie together in memory. The input gradient of a strided convolution is taken phase by phase
//! of its OUTPUT (`q = s m + r`): each phase is a unit-stride chain over the taps whose
//! `r + p - k` is divisible by `s`, in the spec's order, and the phases are then interleaved
//! into place.

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
use std::borrow::Cow;
use std::mem::MaybeUninit;

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
    let xp = Split::new(x, g.padding, g.padding, s);
    // Taps in chain order (ci, a, b, c).
    let mut taps = Vec::with_capacity(cin * kd * kh * kw);
    for ci in 0..cin {
        for a in 0..kd {
            for b in 0..kh {
                for c in 0..kw {
                    taps.push(xp.tap([a, b, c], ci));
                }
            }
        }
    }
    let weight = |co: usize, t: usize| w.data[co * taps.len() + t];
    let plan = Plan {
        sample_stride: xp.sample(),
        plane: xp.plane(),
        out_dims: g.output_dims([di, hi, wi]),
        out_channels: cout,
    };
    run(
        isa,
        &plan,
        n,
        &xp.data,
        &taps,
        weight,
        bias.map(|b| b.data.as_slice()),
    )
}

/// Conv3d input gradient with the spec's bits, any geometry, then `+ bias[ci]` once per value
/// when `bias` is given (the ConvTranspose3d forward, whose bias follows the chain). The
/// outputs are taken by phase `r = q mod s` (per axis): for `q = s m + r` the taps are the
/// `(co, a, b, c)` (ascending, the spec's order) with `r + p - k` divisible by `s` on each axis,
/// each reading `dy[m + (r + p - k) / s]` (zero outside `dy`); a phase with no tap gives `+0.0`
/// (then the bias). The phases are then interleaved into the result, each row written once, in
/// order. On the copy `isa`.
pub(crate) fn conv3d_backward_input(
    isa: Isa,
    dy: &Tensor,
    w: &Tensor,
    g: &ConvGeom,
    input_dims: [usize; 3],
    bias: Option<&[f32]>,
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
    let dyp = Split::new(dy, lo, hi, [1, 1, 1]);
    let k3 = kd * kh * kw;
    // The outputs of phase r, `[N, Cin, M]`, or None when the phase has no position.
    let phase = |r: [usize; 3]| -> Option<Tensor> {
        let m_dims = [0, 1, 2].map(|a| input_dims[a].saturating_sub(r[a]).div_ceil(s[a]));
        if m_dims.contains(&0) {
            return None;
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
                            taps.push(dyp.tap([td, th, tw], co));
                            tap_weights.push(co * cin * k3 + (a * kh + b) * kw + c);
                        }
                    }
                }
            }
        }
        // Tap (co, k) of input channel ci multiplies w[co, ci, k].
        let weight = |ci: usize, t: usize| w.data[tap_weights[t] + ci * k3];
        let plan = Plan {
            sample_stride: dyp.sample(),
            plane: dyp.plane(),
            out_dims: m_dims,
            out_channels: cin,
        };
        Some(run(isa, &plan, n, &dyp.data, &taps, weight, bias))
    };
    if s == [1, 1, 1] {
        return phase([0, 0, 0]).unwrap_or_else(|| {
            Tensor::zeros(&[n, cin, input_dims[0], input_dims[1], input_dims[2]])
        });
    }
    let parts: Vec<Option<Tensor>> = (0..s[0] * s[1] * s[2])
        .map(|k| phase([k / (s[1] * s[2]), (k / s[2]) % s[1], k % s[2]]))
        .collect();
    interleave_phases(&parts, [n, cin], input_dims, s)
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
    let xp = Split::new(x, g.padding, g.padding, s);
    let [plane_d, plane_h] = xp.plane();
    let out_chan = od_n * oh_n * ow_n;
    let k3 = kd * kh * kw;
    // Offset of tap (a, b, c) from the read of tap 0 (phase split: see the forward).
    let mut offsets = Vec::with_capacity(k3);
    for a in 0..kd {
        for b in 0..kh {
            for c in 0..kw {
                offsets.push(xp.tap([a, b, c], 0));
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
        (i / out_chan) * xp.sample() + (od * plane_d + oh) * plane_h + ow
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
            let (dy_pair, x_pair) = (&dy.data[co0 * out_chan..], &xp.data[ci * xp.chan()..]);
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
/// ([`fma_lanes_taps`], lane `i mod 16` of term `i`), reading the zero-padded input (a [`Split`]
/// of unit stride; the rows are read with the stride), so every weight gets exactly the spec's
/// chains and trees. Pairs run in parallel.
fn backward_weight_rows(isa: Isa, x: &Tensor, dy: &Tensor, g: &ConvGeom) -> Tensor {
    let ([n, cin, _, _, _], [_, cout, od_n, oh_n, ow_n]) = backward_weight_dims(x, dy, g);
    let [kd, kh, kw] = g.kernel;
    let s = g.stride;
    let xp = Split::new(x, g.padding, g.padding, [1, 1, 1]);
    let ([_, hp], wp, chan) = (xp.rows, xp.row(), xp.chan());
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

/// The tensor `[N, C, I]` whose value at `q = s m + r` (per axis) is `parts[r][.., m]` (phase
/// `r` at index `(r0 s1 + r1) s2 + r2`, `[N, C, M_r]`): written row by row, each value once,
/// in memory order. Every position has its phase (`m < M_r` for `q < I`), so no value is left
/// unwritten. Pure data movement.
fn interleave_phases(
    parts: &[Option<Tensor>],
    [n, c]: [usize; 2],
    dims: [usize; 3],
    s: [usize; 3],
) -> Tensor {
    let [d, h, w] = dims;
    let plane = d * h * w;
    let mut data: Vec<f32> = Vec::with_capacity(n * c * plane);
    let part = |r: [usize; 3]| {
        parts[(r[0] * s[1] + r[1]) * s[2] + r[2]]
            .as_ref()
            .expect("a position without its phase")
    };
    if plane > 0 {
        data.spare_capacity_mut()[..n * c * plane]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(nc, out)| {
                for z in 0..d {
                    for y in 0..h {
                        let row = &mut out[(z * h + y) * w..(z * h + y + 1) * w];
                        // Phase r2 of this row (at its row (z div s0, y div s1)) fills the
                        // positions r2, r2 + s2, ..: together every position of the row.
                        for r2 in 0..s[2].min(w) {
                            let p = part([z % s[0], y % s[1], r2]);
                            let [_, _, md, mh, mw] = p.dims5();
                            let at = ((nc * md + z / s[0]) * mh + y / s[1]) * mw;
                            let src = &p.data[at..at + mw];
                            for (v, &x) in row[r2..].iter_mut().step_by(s[2]).zip(src) {
                                v.write(x);
                            }
                        }
                    }
                }
            });
    }
    // SAFETY: every value of the first n c plane was written above: each row of each plane,
    // whole (its phases r2 < s2 cover the positions r2 + k s2 < w; phase r2 has
    // ceil((w - r2) / s2) values along the row, so the zip stops at the row's end).
    unsafe { data.set_len(n * c * plane) };
    Tensor::from_vec(&[n, c, d, h, w], data)
}

/// An input zero-padded and split for unit-stride reads: `x` with `lo` zeros before and `hi`
/// after each spatial axis, depth and height then rounded up to multiples of the stride `s`
/// with zeros, and each row split into the `s2` phases of the width stride (sub-row `r` holds
/// the padded row's values at `s2 m + r`, `m < Q = ceil(padded width / s2)`, zeros past its end),
/// as `[N, C, D', H', s2, Q]`, then `SLACK` zeros. With unit stride this is the plain
/// zero-padded input; with no padding either, and rows a multiple of 16 long, it is `x` itself,
/// borrowed (no run of a tile or group of the weight gradient then reads past a row's end, so
/// none reads past the buffer's). Pure data movement (no arithmetic).
struct Split<'a> {
    data: Cow<'a, [f32]>,
    /// Channels.
    c: usize,
    /// `[D', H']`: padded depth and height, multiples of `s0` and `s1`.
    rows: [usize; 2],
    /// `Q`, the length of a sub-row.
    q: usize,
    s: [usize; 3],
}

impl<'a> Split<'a> {
    fn new(x: &'a Tensor, lo: [usize; 3], hi: [usize; 3], s: [usize; 3]) -> Split<'a> {
        let [n, c, d, h, w] = x.dims5();
        let padded = |a: usize, len: usize| len + lo[a] + hi[a];
        let split = Split {
            data: Cow::Borrowed(&[]),
            c,
            rows: [
                padded(0, d).next_multiple_of(s[0]),
                padded(1, h).next_multiple_of(s[1]),
            ],
            q: padded(2, w).div_ceil(s[2]),
            s,
        };
        if lo == [0; 3] && hi == [0; 3] && s == [1; 3] && w % 16 == 0 {
            return Split {
                data: Cow::Borrowed(&x.data),
                ..split
            };
        }
        // Every value written once: each padded row whole (zeros, then the copied values of
        // each sub-row between zeros), then the slack.
        let total = n * split.sample();
        let mut data: Vec<f32> = Vec::with_capacity(total + SLACK);
        let zero = MaybeUninit::new(0f32);
        let (body, slack) = data.spare_capacity_mut()[..total + SLACK].split_at_mut(total);
        slack.fill(zero);
        let (row_len, q, s2) = (split.row(), split.q, s[2]);
        let rows_h = split.rows[1];
        if d * h * w == 0 {
            body.fill(zero);
        } else if total > 0 {
            // A task per (sample, channel): each input row read once, dealt to its sub-rows.
            body.par_chunks_mut(split.chan())
                .zip(x.data.par_chunks(d * h * w))
                .for_each(|(o, xs)| {
                    for (k, row) in o.chunks_mut(row_len).enumerate() {
                        let (z, y) = (
                            (k / rows_h).checked_sub(lo[0]),
                            (k % rows_h).checked_sub(lo[1]),
                        );
                        let (Some(z), Some(y)) = (z.filter(|&z| z < d), y.filter(|&y| y < h))
                        else {
                            row.fill(zero);
                            continue;
                        };
                        let xrow = &xs[(z * h + y) * w..(z * h + y + 1) * w];
                        for (r, sub) in row.chunks_mut(q).enumerate() {
                            // The first m whose s2 m + r is past the padding, its source, and
                            // how many values the row has for this sub-row.
                            let m0 = lo[2].saturating_sub(r).div_ceil(s2).min(q);
                            let from = s2 * m0 + r - lo[2];
                            let count = w.saturating_sub(from).div_ceil(s2).min(q - m0);
                            let (head, rest) = sub.split_at_mut(m0);
                            let (mid, tail) = rest.split_at_mut(count);
                            head.fill(zero);
                            for (v, &xv) in
                                mid.iter_mut().zip(xrow[from.min(w)..].iter().step_by(s2))
                            {
                                v.write(xv);
                            }
                            tail.fill(zero);
                        }
                    }
                });
        }
        // SAFETY: the body is `n C` channel planes of whole rows, each written above (or
        // filled with zeros when the input is empty), and the slack is filled.
        unsafe { data.set_len(total + SLACK) };
        Split {
            data: Cow::Owned(data),
            ..split
        }
    }

    /// Values per row (`s2` sub-rows).
    fn row(&self) -> usize {
        self.s[2] * self.q
    }

    /// Values per channel.
    fn chan(&self) -> usize {
        self.rows[0] * self.rows[1] * self.row()
    }

    /// Values per sample.
    fn sample(&self) -> usize {
        self.c * self.chan()
    }

    /// The [`Plan`] plane: tap 0 of output `(od, oh, m)` is at `(od plane[0] + oh) plane[1] + m`
    /// (row `(s0 od, s1 oh)`, sub-row 0).
    fn plane(&self) -> [usize; 2] {
        [self.s[0] * self.rows[1] / self.s[1], self.s[1] * self.row()]
    }

    /// Offset of tap `k = (a, b, c)` of channel `ci` from tap 0 of channel 0: row `(a, b)`
    /// further, sub-row `c mod s2`, `c div s2` along it.
    fn tap(&self, k: [usize; 3], ci: usize) -> usize {
        ci * self.chan()
            + (k[0] * self.rows[1] + k[1]) * self.row()
            + (k[2] % self.s[2]) * self.q
            + k[2] / self.s[2]
    }
}

// Verifies (every test in this file): R-NUM-1, R-NUM-4, R-NUM-5
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::layers::conv3d::{
        conv3d_backward_input as spec_backward_input,
        conv3d_backward_weight as spec_backward_weight, conv3d_forward as spec_forward,
    };
    use protokd_reference::layers::conv_transpose3d::add_channel_bias;
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

    /// Fast forward, input gradient (alone and with a bias after each chain, the transposed
    /// forward's) and weight gradient against the spec, bit for bit, on
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
            // The input gradient with a bias after each chain: the transposed forward's.
            let bx = random_tensor(&[x.shape[1]], 9000 + i);
            let mut spec_dx_bias = spec_dx.clone();
            add_channel_bias(&mut spec_dx_bias, &bx);
            for &isa in &isas {
                for pool in &pools {
                    let (fy, fdx, fdx_bias, fdw) = pool.install(|| {
                        (
                            conv3d_forward(isa, &x, &w, b.as_ref(), &g),
                            conv3d_backward_input(isa, &dy, &w, &g, [d, h, ww], None),
                            conv3d_backward_input(isa, &dy, &w, &g, [d, h, ww], Some(&bx.data)),
                            conv3d_backward_weight(isa, &x, &dy, &g),
                        )
                    });
                    let what = format!("{} {g:?} x {:?}", isa.name(), x.shape);
                    assert_eq!(bits(&fy), bits(&spec), "forward {what}");
                    assert_eq!(bits(&fdx), bits(&spec_dx), "input grad {what}");
                    assert_eq!(bits(&fdx_bias), bits(&spec_dx_bias), "+ bias {what}");
                    assert_eq!(bits(&fdw), bits(&spec_dw), "weight grad {what}");
                }
            }
        }
    }

    /// The VNet's own shapes at n_filters 16 on a 32^3 patch (64 channels deep down), and its
    /// out_conv, on the best copy of this CPU.
    #[test]
    fn vnet_shapes_give_the_spec_bits() {
        let g = ConvGeom::cubic(3, 1, 1);
        let isa = Isa::detected();
        for (c, s) in [(16, 32), (32, 16), (64, 8), (64, 4), (128, 2)] {
            let x = random_tensor(&[1, c, s, s, s], c as u64);
            let w = random_tensor(&[c, c, 3, 3, 3], 7);
            let y = conv3d_forward(isa, &x, &w, None, &g);
            assert_eq!(bits(&y), bits(&spec_forward(&x, &w, None, &g)));
            let dx = conv3d_backward_input(isa, &y, &w, &g, [s, s, s], None);
            assert_eq!(bits(&dx), bits(&spec_backward_input(&y, &w, &g, [s, s, s])));
            let dw = conv3d_backward_weight(isa, &x, &y, &g);
            assert_eq!(bits(&dw), bits(&spec_backward_weight(&x, &y, &g)));
        }
        // out_conv (1x1x1, 16 -> 4, bias): nothing to pad, rows of 32, so the input itself is
        // read (Split borrows it).
        let g1 = ConvGeom::cubic(1, 1, 0);
        let x = random_tensor(&[1, 16, 8, 8, 32], 11);
        let w = random_tensor(&[4, 16, 1, 1, 1], 12);
        let b = random_tensor(&[4], 13);
        let y = conv3d_forward(isa, &x, &w, Some(&b), &g1);
        assert_eq!(bits(&y), bits(&spec_forward(&x, &w, Some(&b), &g1)));
        let dx = conv3d_backward_input(isa, &y, &w, &g1, [8, 8, 32], None);
        assert_eq!(
            bits(&dx),
            bits(&spec_backward_input(&y, &w, &g1, [8, 8, 32]))
        );
        let dw = conv3d_backward_weight(isa, &x, &y, &g1);
        assert_eq!(bits(&dw), bits(&spec_backward_weight(&x, &y, &g1)));
    }
}
