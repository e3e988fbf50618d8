//! The register tile of the fast Conv3d forward and input gradient (module `conv3d`): `B`
//! output channels x `R` vectors of `L` consecutive outputs, all kept in registers over every
//! tap of their chains.
//!
//! # Order of operations (the spec's)
//! Every output is ONE chain: `acc = +0.0`, then for each tap `t` in the order of the tap list
//! (the caller's: the spec's chain order) `acc = fma(x[base + t], w[t], acc)`, every tap a step
//! (zero padding included), then `acc + bias` once when there is a bias. The tile only computes
//! several such chains at once: lane `i` of vector `r` of channel `j` is the chain of output
//! `first[r] + i` of channel `j`, and no two lanes or vectors ever combine. So every output has
//! the spec's bits whatever the tile shape, the SIMD copy or the thread count.
//!
//! # The tile
//! For each tap, the `R` input vectors are loaded once and each of the `B` weights is
//! broadcast once; the `B x R` fused multiply-adds then reuse them (`R + B` loads for `B R`
//! fmas; the old 1-vector block made `1 + B` loads for `B`). The shapes per SIMD copy:
//!
//! | copy | vector (`L` lanes) | `B` x `R` | accumulators | channel remainder |
//! |---|---|---|---|---|
//! | AVX-512 | `__m512` (16) | 8 x 3 | 24 of 32 zmm | in an 8 x 3 tile |
//! | AVX2+FMA | `__m256` (8) | 6 x 2 | 12 of 16 ymm (+ 2 inputs, 1 weight; 4 x 3 and 3 x 4 spill one) | up to 4 channels in a 4 x 2 tile, 5 in a 6 x 2 |
//! | NEON | four q registers (16) | 4 x 1 | 16 of 32 q | in a 4 x 1 tile |
//! | portable | `[f32; 16]` | 4 x 1 | (the compiler's choice) | in a 4 x 1 tile |
//!
//! The output channels are cut into blocks of `B` ([`channel_blocks`]); the last block, when
//! it has fewer channels, takes the copy's remainder tile if they fit in it. A tile computes
//! all of its `B` channels, those past its block's end with zero weights, and drops them.
//!
//! Rows narrower than `L` run the same tile on `[f32; 8]` arrays (compiled for the copy).
//! The `R` vectors of a tile are consecutive runs of `L` outputs of one output plane (depth
//! `od`), in row-major order, so a tile may span several rows (rows of 16 on AVX-512 take 3
//! rows per tile); a run that passes the row's end computes from whatever follows in the
//! padded input and drops those lanes (the input buffer ends in zeros so that no read leaves
//! it). A chunk of runs whose count is not a multiple of `R` fills its last tile with repeats
//! of its first run, computed and dropped.
//!
//! # Threads and the cache
//! Threads take `(sample, output depth, group of channel blocks)` tasks (one group per plane
//! unless the planes are fewer than 4 a thread). A task goes along its plane in chunks of
//! whole rows of runs ([`CHUNK_RUNS`] runs at least) and computes each chunk for every channel
//! block of its group before the next chunk, so the input rows a chunk reads (every input
//! channel, the kernel's depth and height) are read from memory once for all the blocks and
//! then hit the cache. Weights are packed per channel block as `[tap][B]`.

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::float32x4x4_t;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m512};

use crate::simd::{Isa, Vector};
use protokd_reference::Tensor;
use rayon::prelude::*;

/// Lanes of the runs of rows narrower than a copy's vector.
const NARROW: usize = 8;

/// Fewest runs a task computes for one channel block before it takes the next block (see the
/// module docs).
const CHUNK_RUNS: usize = 32;

/// The geometry of one blocked convolution: outputs `[N, out_channels, out_dims]`, each output
/// `(od, oh, ow)` reading, for tap offset `t`, the input at
/// `n * sample_stride + (od * H' + oh) * W' + ow + t` (`plane = [H', W']`; strides are folded
/// into the tap offsets by the phase split of module `conv3d`).
pub(crate) struct Plan {
    pub(crate) sample_stride: usize,
    pub(crate) plane: [usize; 2],
    pub(crate) out_dims: [usize; 3],
    pub(crate) out_channels: usize,
}

/// Runs every output of `plan`: chains over `taps` (offsets, in chain order) with
/// `weight(out_channel, tap index)`, then `+ bias[out_channel]` when given, in tiles of the
/// copy `isa` (see the module docs).
pub(crate) fn run(
    isa: Isa,
    plan: &Plan,
    n: usize,
    x: &[f32],
    taps: &[usize],
    weight: impl Fn(usize, usize) -> f32 + Sync,
    bias: Option<&[f32]>,
) -> Tensor {
    let conv = Conv {
        plan,
        n,
        x,
        taps: (taps, taps.iter().copied().max().unwrap_or(0)),
        bias,
    };
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => run_tiles::<8, 3, 8, 3>(isa, &conv, weight),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => run_tiles::<6, 2, 4, 2>(isa, &conv, weight),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => run_tiles::<4, 1, 4, 1>(isa, &conv, weight),
        Isa::Portable => run_tiles::<4, 1, 4, 1>(isa, &conv, weight),
    }
}

/// What [`run`] was given, less the weights.
struct Conv<'a> {
    plan: &'a Plan,
    n: usize,
    x: &'a [f32],
    /// The tap offsets, and the largest.
    taps: (&'a [usize], usize),
    bias: Option<&'a [f32]>,
}

/// Lanes of the copy's vector (`L` of the module docs).
fn lanes(isa: Isa) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => 16,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => 8,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => 16,
        Isa::Portable => 16,
    }
}

/// The channel blocks of `cout` output channels: `(first channel, channels, width)`, blocks of
/// `b` channels and, when the last `cout mod b` channels fit in `b2`, one block of width `b2`
/// for them (a width is the tile's channel count; channels past `channels` are computed with
/// zero weights and dropped).
fn channel_blocks(cout: usize, b: usize, b2: usize) -> Vec<(usize, usize, usize)> {
    (0..cout)
        .step_by(b)
        .map(|c0| {
            let channels = b.min(cout - c0);
            (c0, channels, if channels <= b2 { b2 } else { b })
        })
        .collect()
}

/// [`run`] in tiles of `B` channels x `R` runs, and of `B2` x `R2` for the channel remainder
/// when it fits in `B2` (see [`channel_blocks`]).
fn run_tiles<const B: usize, const R: usize, const B2: usize, const R2: usize>(
    isa: Isa,
    conv: &Conv,
    weight: impl Fn(usize, usize) -> f32 + Sync,
) -> Tensor {
    let plan = conv.plan;
    let [od_n, oh_n, ow_n] = plan.out_dims;
    let cout = plan.out_channels;
    let blocks = channel_blocks(cout, B, B2);
    let nt = conv.taps.0.len();
    // Packed weights: block `kb` of width `bw` from `pack_at[kb]`, tap `t`, channel `j` at
    // `pack_at[kb] + t bw + j`.
    let pack_at: Vec<usize> = blocks
        .iter()
        .scan(0, |at, &(_, _, bw)| {
            let here = *at;
            *at += nt * bw;
            Some(here)
        })
        .collect();
    let mut packed = vec![0f32; blocks.iter().map(|&(_, _, bw)| nt * bw).sum()];
    for (&(c0, channels, bw), &at) in blocks.iter().zip(&pack_at) {
        for t in 0..nt {
            for j in 0..channels {
                packed[at + t * bw + j] = weight(c0 + j, t);
            }
        }
    }
    // The output, written by the tiles without zeroing it first: every output of every
    // channel block, row and plane is one tile's (see below). Test builds fill it with NaN
    // first, so that a value no tile wrote cannot pass for the spec's.
    let shape = [conv.n, cout, od_n, oh_n, ow_n];
    let len = shape.iter().product();
    let mut data: Vec<f32> = Vec::with_capacity(len);
    #[cfg(test)]
    data.spare_capacity_mut()
        .fill(std::mem::MaybeUninit::new(f32::NAN));
    let out = Out {
        ptr: data.as_mut_ptr(),
        len,
    };
    let planes = conv.n * od_n;
    if planes == 0 || blocks.is_empty() {
        // No sample, output depth or channel: nothing to write.
        return Tensor::from_vec(&shape, Vec::new());
    }
    let wide = ow_n >= lanes(isa);
    let l = if wide { lanes(isa) } else { NARROW };
    let runs = oh_n * ow_n.div_ceil(l);
    // Runs per chunk: whole rows, at least CHUNK_RUNS runs, a multiple of both tiles' R (so
    // that only a plane's last chunk has repeats).
    let row_runs = ow_n.div_ceil(l).max(1);
    let chunk = (CHUNK_RUNS.div_ceil(row_runs) * row_runs).next_multiple_of(R * R2);
    // Tasks: (sample, output depth, group of channel blocks), enough groups for 4 tasks a
    // thread where the planes alone are fewer.
    let groups = (4 * rayon::current_num_threads())
        .div_ceil(planes)
        .clamp(1, blocks.len());
    let per_group = blocks.len().div_ceil(groups);
    let groups = blocks.len().div_ceil(per_group);
    (0..planes * groups).into_par_iter().for_each(|task| {
        let (plane, group) = (task / groups, task % groups);
        let mine = group * per_group..((group + 1) * per_group).min(blocks.len());
        for k0 in (0..runs).step_by(chunk) {
            // The chunk's runs for every channel block of the group, while its input rows
            // are in the cache.
            for kb in mine.clone() {
                let (c0, channels, bw) = blocks[kb];
                let job = PlaneJob {
                    conv,
                    wide,
                    l,
                    nn: plane / od_n,
                    od: plane % od_n,
                    c0,
                    channels,
                    wpk: &packed[pack_at[kb]..pack_at[kb] + nt * bw],
                    out,
                    runs: k0..(k0 + chunk).min(runs),
                };
                if bw == B {
                    plane_tiles::<B, R>(isa, &job);
                } else {
                    plane_tiles::<B2, R2>(isa, &job);
                }
            }
        }
    });
    // SAFETY: the tasks cover every (sample, output depth) plane and every channel block, each
    // chunk of rows of its plane, each run of each row (`plane_tiles`), and a tile writes its
    // channels' kept lanes: every one of the `len` outputs.
    unsafe { data.set_len(len) };
    Tensor::from_vec(&shape, data)
}

/// Part of one task of [`run_tiles`]: runs `runs` of the output plane `od` of sample `nn`,
/// channels `c0 .. c0 + channels`.
struct PlaneJob<'a> {
    conv: &'a Conv<'a>,
    /// Vectors of the copy's lanes (else `[f32; 8]`), and the lanes `l` of a run.
    wide: bool,
    l: usize,
    nn: usize,
    od: usize,
    c0: usize,
    channels: usize,
    /// The block's packed weights `[tap][B]`.
    wpk: &'a [f32],
    out: Out,
    /// Which runs of the plane (row-major, `ceil(W / l)` a row).
    runs: std::ops::Range<usize>,
}

/// The tiles of `job`'s runs, `B` channels x `R` runs each, in row-major order of the runs;
/// a last tile past `job.runs.end` is filled with repeats of its first run, dropped.
fn plane_tiles<const B: usize, const R: usize>(isa: Isa, job: &PlaneJob) {
    let (conv, l) = (job.conv, job.l);
    let plan = conv.plan;
    let [od_n, oh_n, ow_n] = plan.out_dims;
    let plane_first = ((job.nn * plan.out_channels + job.c0) * od_n + job.od) * oh_n * ow_n;
    // Run k of the plane: (offset of tap 0 in the sample, output offset, lanes kept).
    let runs_per_row = ow_n.div_ceil(l);
    let run_at = |k: usize| {
        let (oh, ow0) = (k / runs_per_row, (k % runs_per_row) * l);
        let base = (job.od * plan.plane[0] + oh) * plan.plane[1] + ow0;
        (base, plane_first + oh * ow_n + ow0, l.min(ow_n - ow0))
    };
    let end = job.runs.end;
    for k0 in job.runs.clone().step_by(R) {
        let mut tile_job = Tile {
            x: &conv.x[job.nn * plan.sample_stride..],
            bases: [0; R],
            taps: conv.taps,
            wpk: job.wpk,
            out: job.out,
            first: [0; R],
            kept: [0; R],
            chan: od_n * oh_n * ow_n,
            channels: job.channels,
            bias: conv.bias.map(|b| &b[job.c0..job.c0 + job.channels]),
        };
        for r in 0..R {
            // Past the last run: a repeat of the tile's first run, dropped.
            let (base, first, kept) = run_at(if k0 + r < end { k0 + r } else { k0 });
            tile_job.bases[r] = base;
            tile_job.first[r] = first;
            tile_job.kept[r] = if k0 + r < end { kept } else { 0 };
        }
        tile::<B, R>(isa, job.wide, &tile_job);
    }
}

/// Raw output pointer shared by the threads; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: tasks write disjoint elements (distinct (sample, channel block, depth) planes) and
// nothing reads the buffer until every task has finished.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// One tile: `R` runs x `B` channels (see the module docs).
struct Tile<'a, const R: usize> {
    /// The input of one sample (padded, phase-split).
    x: &'a [f32],
    /// Offset in `x` of tap 0 of each run's first output.
    bases: [usize; R],
    /// Tap offsets in chain order, and the largest.
    taps: (&'a [usize], usize),
    /// Weights `[tap][B]`.
    wpk: &'a [f32],
    out: Out,
    /// Output index of each run's first output, channel 0 of the block.
    first: [usize; R],
    /// Outputs kept of each run (0 for a repeat).
    kept: [usize; R],
    /// Distance between channels in the output.
    chan: usize,
    /// Channels of the block that exist (`<= B`).
    channels: usize,
    /// `bias[j]` for the block's channels.
    bias: Option<&'a [f32]>,
}

/// Runs `job` on the copy `isa`: vectors of the copy's lanes when `wide`, else `[f32; 8]`.
fn tile<const B: usize, const R: usize>(isa: Isa, wide: bool, job: &Tile<R>) {
    // SAFETY (each SIMD arm): the engine only holds a copy the CPU can run (checked when it
    // was built).
    unsafe {
        match (isa, wide) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, true) => tile_avx512::<__m512, B, R>(job),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, false) => tile_avx512::<[f32; NARROW], B, R>(job),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2Fma, true) => tile_avx2_fma::<__m256, B, R>(job),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2Fma, false) => tile_avx2_fma::<[f32; NARROW], B, R>(job),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, true) => tile_neon::<float32x4x4_t, B, R>(job),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, false) => tile_neon::<[f32; NARROW], B, R>(job),
            (Isa::Portable, true) => tile_on::<[f32; 16], B, R>(job),
            (Isa::Portable, false) => tile_on::<[f32; NARROW], B, R>(job),
        }
    }
}

/// [`tile_on`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_avx512<V: Vector, const B: usize, const R: usize>(job: &Tile<R>) {
    tile_on::<V, B, R>(job);
}

/// [`tile_on`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2_fma<V: Vector, const B: usize, const R: usize>(job: &Tile<R>) {
    tile_on::<V, B, R>(job);
}

/// [`tile_on`] compiled for NEON.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn tile_neon<V: Vector, const B: usize, const R: usize>(job: &Tile<R>) {
    tile_on::<V, B, R>(job);
}

/// The tile on the vector type `V`: `acc[j][r]` starts at `+0.0`; for each tap `t` in order the
/// `R` vectors `x[bases[r] + t ..]` are loaded, and for each channel `j` the weight
/// `wpk[t B + j]` is broadcast and `acc[j][r] = fma(x_r, w, acc[j][r])` lane by lane; then
/// `acc[j][r] + bias[j]` (when given) and the kept lanes are stored at
/// `first[r] + j chan ..`.
///
/// # Safety
/// The CPU must have `V`'s features: call only from a function compiled with them. (Every
/// read and write is checked against the buffers' lengths first.)
#[inline(always)]
unsafe fn tile_on<V: Vector, const B: usize, const R: usize>(job: &Tile<R>) {
    let (x, (taps, max_tap), wpk) = (job.x, job.taps, job.wpk);
    assert!(
        job.bases.iter().all(|&b| b + max_tap + V::LANES <= x.len()) && wpk.len() >= taps.len() * B,
        "tile: reads in range"
    );
    assert!(
        V::LANES <= 16
            && job.channels <= B
            && (0..R).all(|r| job.kept[r] <= V::LANES
                && (job.kept[r] == 0
                    || job.first[r] + job.channels.saturating_sub(1) * job.chan + job.kept[r]
                        <= job.out.len)),
        "tile: writes in range"
    );
    let mut acc = [[V::splat(0.0); R]; B];
    let xp = x.as_ptr();
    for (t, &off) in taps.iter().enumerate() {
        // SAFETY: bases[r] + off + LANES <= x.len() (asserted above).
        let xv: [V; R] = std::array::from_fn(|r| V::load(xp.add(job.bases[r] + off)));
        // SAFETY: t * B + j < taps.len() * B <= wpk.len() (asserted above).
        let w = wpk.as_ptr().add(t * B);
        for (j, aj) in acc.iter_mut().enumerate() {
            let wv = V::splat(*w.add(j));
            for (a, xr) in aj.iter_mut().zip(&xv) {
                // fma(x, w, acc), one rounding: the spec's chain step.
                *a = xr.mul_add(wv, *a);
            }
        }
    }
    // Constant trip counts (channels past `job.channels` skipped inside), so that the
    // compiler keeps `acc` in registers instead of storing it at every tap.
    for (j, aj) in acc.iter().enumerate() {
        if j >= job.channels {
            continue;
        }
        let b = job.bias.map(|b| V::splat(b[j]));
        for (r, &a) in aj.iter().enumerate() {
            let v = match b {
                Some(b) => a.add(b),
                None => a,
            };
            // SAFETY: first[r] + j chan + kept[r] <= out.len (asserted above), and only this
            // task writes its plane.
            let dst = job.out.ptr.add(job.first[r] + j * job.chan);
            if job.kept[r] == V::LANES {
                v.store(dst);
            } else if job.kept[r] > 0 {
                let mut lanes = [0f32; 16];
                v.store(lanes.as_mut_ptr());
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, job.kept[r]);
            }
        }
    }
}

// Verifies (every test in this file): R-NUM-1, R-NUM-4, R-NUM-5
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::testutil::random_values;

    /// The tile of the copy `isa` (`B` x `R`, wide or narrow) against the same tile on plain
    /// arrays of `l` lanes in the portable copy, called directly: 29 taps, runs at scattered
    /// bases, with and without bias, some runs cut short or dropped.
    fn check_tile<const B: usize, const R: usize>(isa: Isa, wide: bool, seed: u64) {
        let l = if wide { lanes(isa) } else { NARROW };
        let taps: Vec<usize> = (0..29).map(|t| (t * 7 + t / 3) % 53).collect();
        let max_tap = *taps.iter().max().unwrap();
        let x = random_values(max_tap + 40 + 16 * R + 16, seed);
        let wpk = random_values(taps.len() * B, seed + 1);
        let bias = random_values(B, seed + 2);
        let chan = 16 * R + 3;
        for (case, channels) in [(0usize, B), (1, B.min(3)), (2, 1)] {
            let mut outs = [vec![f32::NAN; chan * B], vec![f32::NAN; chan * B]];
            for (k, o) in outs.iter_mut().enumerate() {
                let job = Tile {
                    x: &x,
                    bases: std::array::from_fn(|r| 3 * case + 5 * r + r / 2),
                    taps: (&taps, max_tap),
                    wpk: &wpk,
                    out: Out {
                        ptr: o.as_mut_ptr(),
                        len: o.len(),
                    },
                    first: std::array::from_fn(|r| 16 * r),
                    kept: std::array::from_fn(|r| match (r + case) % 3 {
                        0 => l,
                        1 => l - 1,
                        _ => l / 2 * usize::from(case != 1),
                    }),
                    chan,
                    channels,
                    bias: (case != 2).then_some(&bias[..channels]),
                };
                if k == 0 {
                    tile::<B, R>(isa, wide, &job);
                } else {
                    // SAFETY: plain arrays need no CPU feature.
                    unsafe {
                        match l {
                            16 => tile_on::<[f32; 16], B, R>(&job),
                            _ => tile_on::<[f32; 8], B, R>(&job),
                        }
                    }
                }
            }
            let b = |o: &Vec<f32>| o.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                b(&outs[0]),
                b(&outs[1]),
                "{} tile {B}x{R} wide {wide} case {case}",
                isa.name()
            );
        }
    }

    /// Every copy this CPU can run gives the portable arrays' bits in its own tile shape and in
    /// the shapes of the other copies, wide and narrow, each copy passed by value.
    #[test]
    fn every_simd_copy_gives_the_portable_tile_bits() {
        for (k, &isa) in Isa::usable().iter().enumerate() {
            for wide in [true, false] {
                let seed = 100 * k as u64 + u64::from(wide);
                check_tile::<8, 3>(isa, wide, seed);
                check_tile::<6, 2>(isa, wide, seed + 50);
                check_tile::<4, 3>(isa, wide, seed + 10);
                check_tile::<4, 2>(isa, wide, seed + 40);
                check_tile::<4, 1>(isa, wide, seed + 20);
                check_tile::<3, 2>(isa, wide, seed + 30);
            }
        }
    }
}
