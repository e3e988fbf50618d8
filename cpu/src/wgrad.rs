//! The register block of the fast Conv3d weight gradient (module `conv3d`, output widths that
//! are multiples of 8): the canonical-reduction lanes of `C` output channels x `T` taps of one
//! input channel, kept in registers over a block of 16-position groups.
//!
//! # Order of operations (the spec's)
//! Each weight `dw[co, ci, tap]` is the canonical reduction over the output positions `i`
//! ([`protokd_reference::reduce`]: blocks of 4096 positions, in each block 16 lanes, lane
//! `i mod 16` a chain `lane = fma(dy[i], x[i + tap], lane)` in increasing `i` from `+0.0`, then
//! the fixed lane tree and pairwise tree). A group is 16 consecutive positions of one output
//! row starting at a multiple of 16, so lane `q` of a group is position `i` with
//! `i mod 16 = q`, and taking the groups of a block in increasing order gives every chain its
//! terms in increasing `i`. With rows of 8 a group is two rows' 8 positions (the output
//! volume a multiple of 16, so that a group never crosses a sample), read from two bases
//! ([`Group`]). The block below only advances `C x T` such chains side by side.
//!
//! # The block
//! For each group, the `C` vectors of `dy` are loaded once, and each of the `T` input vectors
//! once; the `C T` fused multiply-adds then reuse them (`C + T` loads for `C T` fmas; the
//! former one-channel block made `1 + T` loads for `T`). A 16-lane group is `16 / L` vectors of
//! `L` lanes, taken one after the other (lanes `0 .. L` of every group of the block, then the
//! next `L`: different chains, so their interleaving is free). Per SIMD copy:
//!
//! | copy | vector (`L` lanes) | `C` x `T` (3x3x3 kernel) | accumulators |
//! |---|---|---|---|
//! | AVX-512 | `__m512` (16) | 2 x 9 (three blocks) | 18 of 32 zmm |
//! | AVX2+FMA | `__m256` (8) | 2 x 6 (four blocks), then 2 x 3 | 12 a part; the compiler interleaves the two 8-lane parts and keeps some of their 24 on the stack |
//! | NEON | four q registers (16) | 2 x 3 (nine blocks) | 24 of 32 q |
//! | portable | `[f32; 16]` | 2 x 9 | (the compiler's choice) |
//!
//! The kernel's taps are split into blocks of the copy's sizes ([`tap_chunks`]), so no tap is
//! computed twice. The caller computes the groups' indices once per convolution, for output
//! channel 0 and input channel 0, and reaches a pair's channels by offsetting `dy` and `x`.
//!
//! On AVX2 the 2 x 6 block measured faster than 2 x 3, 2 x 4 and 2 x 5 (more taps per `dy`
//! load), and faster than the same 2 x 6 block called once per 8-lane part, whose 12
//! accumulators then all stay in registers (`docs/performance.md`).

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::float32x4x4_t;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m512};

use crate::simd::{Isa, Vector};
use protokd_reference::reduce::LANES;

/// Output channels per block (`C`).
pub(crate) const CHANNELS: usize = 2;

/// Half a group: positions `0 .. 8` and `8 .. 16` of a group each lie in one output row.
pub(crate) const HALF: usize = LANES / 2;

/// A 16-position group: `(dy index of its first position in channel 0, [x index of tap 0 of
/// position 0, of position 8])`.
pub(crate) type Group = (usize, [usize; 2]);

/// The tap counts of the blocks that together cover a kernel of `k3` taps on the copy `isa`,
/// in tap order: repeatedly the largest of the copy's sizes that fits the taps left
/// (AVX-512 and portable: 9, 8, 4, 3, 1; AVX2+FMA: 6, 4, 3, 2, 1; NEON: 3, 2, 1). A 3x3x3
/// kernel is 9 + 9 + 9 on AVX-512, 6 + 6 + 6 + 6 + 3 on AVX2+FMA and nine 3s on NEON; no tap
/// is computed twice.
pub(crate) fn tap_chunks(isa: Isa, k3: usize) -> Vec<usize> {
    let sizes: &[usize] = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &[9, 8, 4, 3, 1],
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => &[6, 4, 3, 2, 1],
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => &[3, 2, 1],
        Isa::Portable => &[9, 8, 4, 3, 1],
    };
    let mut chunks = Vec::new();
    let mut left = k3;
    while let Some(&t) = sizes.iter().find(|&&t| t <= left) {
        chunks.push(t);
        left -= t;
    }
    chunks
}

/// The chains of one block, for the [`CHANNELS`] output channels whose `dy` starts `dstride`
/// apart and the `taps.len()` taps (a size of [`tap_chunks`]) at offsets `taps`: for every group
/// `(d0, [x0, x1])` in order, channel `c`, tap `t`, lane `q`:
/// `lanes[c][t][q] = fma(dy[d0 + c dstride + q], x[xq + taps[t]], lanes[c][t][q])` with
/// `xq = x0 + q` for `q < 8` and `x1 + q - 8` for the others (a group's two halves may lie in
/// different rows: rows of 8). `lanes[c]` holds `taps.len() x 16` values. On the copy `isa`.
pub(crate) fn block(
    isa: Isa,
    (dy, dstride): (&[f32], usize),
    x: &[f32],
    groups: &[Group],
    taps: &[usize],
    lanes: [&mut [f32]; CHANNELS],
) {
    match taps.len() {
        9 => block_t::<9>(isa, (dy, dstride), x, groups, taps, lanes),
        8 => block_t::<8>(isa, (dy, dstride), x, groups, taps, lanes),
        6 => block_t::<6>(isa, (dy, dstride), x, groups, taps, lanes),
        4 => block_t::<4>(isa, (dy, dstride), x, groups, taps, lanes),
        3 => block_t::<3>(isa, (dy, dstride), x, groups, taps, lanes),
        2 => block_t::<2>(isa, (dy, dstride), x, groups, taps, lanes),
        1 => block_t::<1>(isa, (dy, dstride), x, groups, taps, lanes),
        t => panic!("wgrad::block: {t} taps is not a chunk size"),
    }
}

/// [`block`] for `T` taps.
fn block_t<const T: usize>(
    isa: Isa,
    dy: (&[f32], usize),
    x: &[f32],
    groups: &[Group],
    taps: &[usize],
    lanes: [&mut [f32]; CHANNELS],
) {
    let offs: [usize; T] = taps.try_into().expect("T taps");
    let mut acc = [[[0f32; LANES]; T]; CHANNELS];
    for (a, l) in acc.iter_mut().zip(&lanes) {
        for (at, from) in a.iter_mut().zip(l.chunks_exact(LANES)) {
            at.copy_from_slice(from);
        }
    }
    let job = Job {
        dy,
        x,
        groups,
        offs: &offs,
    };
    // Whether some group's halves are not 8 apart (rows of 8): then a vector of more than 8
    // lanes is loaded from both halves.
    let split = groups.iter().any(|&(_, [x0, x1])| x1 != x0 + HALF);
    // SAFETY (each SIMD arm): the engine only holds a copy the CPU can run (checked when it
    // was built).
    unsafe {
        match (isa, split) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, false) => block_avx512::<__m512, T, false>(&job, &mut acc),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, true) => block_avx512::<__m512, T, true>(&job, &mut acc),
            // 8 lanes: every vector lies in one half.
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2Fma, _) => block_avx2_fma::<__m256, T, false>(&job, &mut acc),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, false) => block_neon::<float32x4x4_t, T, false>(&job, &mut acc),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, true) => block_neon::<float32x4x4_t, T, true>(&job, &mut acc),
            (Isa::Portable, false) => block_on::<[f32; LANES], T, false>(&job, &mut acc),
            (Isa::Portable, true) => block_on::<[f32; LANES], T, true>(&job, &mut acc),
        }
    }
    for (a, l) in acc.iter().zip(lanes) {
        for (at, to) in a.iter().zip(l.chunks_exact_mut(LANES)) {
            to.copy_from_slice(at);
        }
    }
}

/// The inputs of one block.
struct Job<'a, const T: usize> {
    /// `dy`, and the distance between the block's channels in it.
    dy: (&'a [f32], usize),
    x: &'a [f32],
    /// The 16-position groups, in order.
    groups: &'a [Group],
    offs: &'a [usize; T],
}

/// [`block_on`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512<V: Vector, const T: usize, const SPLIT: bool>(
    job: &Job<T>,
    acc: &mut [[[f32; LANES]; T]; CHANNELS],
) {
    block_on::<V, T, SPLIT>(job, acc);
}

/// [`block_on`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2_fma<V: Vector, const T: usize, const SPLIT: bool>(
    job: &Job<T>,
    acc: &mut [[[f32; LANES]; T]; CHANNELS],
) {
    block_on::<V, T, SPLIT>(job, acc);
}

/// [`block_on`] compiled for NEON.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn block_neon<V: Vector, const T: usize, const SPLIT: bool>(
    job: &Job<T>,
    acc: &mut [[[f32; LANES]; T]; CHANNELS],
) {
    block_on::<V, T, SPLIT>(job, acc);
}

/// The block on the vector type `V` (see [`block`] and the module docs): for each `L`-lane
/// part `h` of the 16 lanes, the accumulators `acc[c][t][h ..]` are loaded into registers, every
/// group advances them, and they are stored back. A part of at most 8 lanes is read from its
/// half's row; a 16-lane part from both halves when `SPLIT` (else the halves are 8 apart and
/// one load reads both).
///
/// # Safety
/// The CPU must have `V`'s features: call only from a function compiled with them. (Every
/// read is checked against the buffers' lengths first.)
#[inline(always)]
unsafe fn block_on<V: Vector, const T: usize, const SPLIT: bool>(
    job: &Job<T>,
    acc: &mut [[[f32; LANES]; T]; CHANNELS],
) {
    let ((dy, dstride), x, groups, offs) = (job.dy, job.x, job.groups, job.offs);
    let max_d = groups.iter().map(|g| g.0).max().unwrap_or(0) + (CHANNELS - 1) * dstride;
    let max_x = groups.iter().map(|g| g.1[0].max(g.1[1])).max().unwrap_or(0)
        + offs.iter().max().unwrap_or(&0);
    assert!(
        LANES.is_multiple_of(V::LANES)
            && (SPLIT || V::LANES <= HALF || groups.iter().all(|&(_, [x0, x1])| x1 == x0 + HALF))
            && (groups.is_empty() || (max_d + LANES <= dy.len() && max_x + HALF <= x.len())),
        "wgrad: reads in range"
    );
    let xp = x.as_ptr();
    for h in (0..LANES).step_by(V::LANES) {
        let mut a: [[V; T]; CHANNELS] =
            std::array::from_fn(|c| std::array::from_fn(|t| V::load(acc[c][t].as_ptr().add(h))));
        for &(d0, xs) in groups {
            // SAFETY: d0 + c dstride + 16 <= dy.len() and xs[k] + offs[t] + 8 <= x.len(), with
            // xs[1] = xs[0] + 8 where a load of more than 8 lanes reads both halves from xs[0]
            // (asserted above).
            let dv: [V; CHANNELS] =
                std::array::from_fn(|c| V::load(dy.as_ptr().add(d0 + c * dstride + h)));
            for (t, &o) in offs.iter().enumerate() {
                let xv = if SPLIT && V::LANES > HALF {
                    V::load_halves(xp.add(xs[0] + o), xp.add(xs[1] + o))
                } else {
                    V::load(xp.add(xs[h / HALF] + h % HALF + o))
                };
                for (ac, dc) in a.iter_mut().zip(&dv) {
                    // fma(dy, x, lane): the spec's chain step.
                    ac[t] = dc.mul_add(xv, ac[t]);
                }
            }
        }
        for (ac, to) in a.iter().zip(acc.iter_mut()) {
            for (at, tt) in ac.iter().zip(to.iter_mut()) {
                at.store(tt.as_mut_ptr().add(h));
            }
        }
    }
}

// Verifies (every test in this file): R-NUM-1, R-NUM-4, R-NUM-5
#[cfg(test)]
mod tests {
    use super::*;
    use protokd_reference::testutil::random_values;

    /// The block of the copy `isa` against plain sequential `f32::mul_add` chains (the
    /// definition in [`block`]'s docs), called directly: every chunk size, 37 groups, with
    /// each group's halves 8 apart (rows of 16) and apart anywhere (rows of 8).
    #[test]
    fn every_copy_gives_the_chain_bits() {
        for (k, &isa) in Isa::usable().iter().enumerate() {
            for (ntaps, split) in [9, 8, 6, 4, 3, 2, 1]
                .into_iter()
                .flat_map(|t| [(t, false), (t, true)])
            {
                let seed = 100 * k as u64 + 2 * ntaps as u64 + u64::from(split);
                let offs: Vec<usize> = (0..ntaps).map(|t| (t * 11) % 37).collect();
                let dstride = 40 * LANES + 3;
                let dy = random_values(dstride + 40 * LANES, seed);
                let x = random_values(45 * LANES, seed + 1);
                let groups: Vec<Group> = (0..37)
                    .map(|g| {
                        let x0 = g * LANES + g % 5;
                        let x1 = if split {
                            (g * 7 + 3) % 40 * LANES + g % 3
                        } else {
                            x0 + HALF
                        };
                        (g * LANES, [x0, x1])
                    })
                    .collect();
                let init = random_values(CHANNELS * ntaps * LANES, seed + 2);
                let mut want = init.clone();
                for &(d0, [x0, x1]) in &groups {
                    for c in 0..CHANNELS {
                        for (t, &o) in offs.iter().enumerate() {
                            for q in 0..LANES {
                                let xq = if q < HALF { x0 + q } else { x1 + q - HALF };
                                let l = &mut want[(c * ntaps + t) * LANES + q];
                                *l = dy[d0 + c * dstride + q].mul_add(x[xq + o], *l);
                            }
                        }
                    }
                }
                let mut got = init.clone();
                let (l0, l1) = got.split_at_mut(ntaps * LANES);
                block(isa, (&dy, dstride), &x, &groups, &offs, [l0, l1]);
                let b = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    b(&got),
                    b(&want),
                    "{} taps {ntaps} split {split}",
                    isa.name()
                );
            }
        }
    }
}
