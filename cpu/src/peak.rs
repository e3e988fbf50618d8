//! The fused multiply-add peak of this machine, measured ([`measure`]) and nominal
//! ([`nominal_gflops`]): what `protokd bench` divides its achieved GFLOP/s by.
//!
//! # How the peak is measured
//! Every thread of the current rayon pool runs, at the same time ([`rayon::broadcast`]),
//! [`CHAINS`] independent accumulator chains held in registers, each step of each chain one
//! fused multiply-add `a <- a * m + c` on a whole vector of the copy's width
//! ([`fma_lanes`]: 16 lanes for AVX-512, 8 for AVX2+FMA, 4 per NEON register, 1 for the
//! portable copy, whose `f32::mul_add` is the C library's `fmaf` on x86-64). Twelve chains cover
//! the latency of two FMA pipes of four cycles each (8 chains would do), and fit the 16 ymm
//! registers of AVX2 with the two constants. The peak is
//!
//! `2 * threads * iterations * CHAINS * lanes / seconds`
//!
//! over the whole broadcast (from before the first thread starts to after the last one
//! finishes), the best of five runs (the least disturbed by other processes). Nothing but the
//! chains runs in the loop: no loads or stores, so this is the arithmetic ceiling an exact
//! kernel can approach, not a memory-bound one. The measurement takes about 0.1 s per run on a
//! SIMD copy. On a machine shared with other work it is as low as the share of the cores this
//! process gets, like the timings it is compared with.
//!
//! # The nominal peak
//! `threads * lanes * 2 (flops per FMA) * 2 (FMA pipes per core) * GHz`: the textbook figure
//! for the cores of the last decade (two 256-bit FMA pipes on Haswell and later and on Zen; two
//! 512-bit pipes on AVX-512 server parts, where Zen 4 splits each 512-bit FMA in two halves).
//! Threads, not physical cores: with two hyper-threads per core the nominal figure is twice
//! what the core can do. The clock is the one the caller knows (for example `cpu MHz` of
//! `/proc/cpuinfo`), which turbo and power states move.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use crate::simd::Vector;
use crate::Isa;
use std::hint::black_box;
use std::time::Instant;

/// Independent accumulator chains per thread (see the module docs).
pub const CHAINS: usize = 12;

/// The f32 lanes one fused multiply-add instruction of `isa` computes (1 for the portable
/// copy).
pub fn fma_lanes(isa: Isa) -> usize {
    match isa {
        Isa::Portable => 1,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => 8,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => 16,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => 4,
    }
}

/// The nominal peak in GFLOP/s of `threads` threads at `ghz` on copy `isa` (see the module
/// docs); `None` for the portable copy, which has no vector FMA.
pub fn nominal_gflops(isa: Isa, threads: usize, ghz: f64) -> Option<f64> {
    isa.is_simd()
        .then(|| threads as f64 * fma_lanes(isa) as f64 * 2.0 * 2.0 * ghz)
}

/// The measured peak of copy `isa` on every thread of the current rayon pool, in GFLOP/s (see
/// the module docs). `isa` must be one this CPU can run ([`Isa::usable`]); `None` otherwise.
pub fn measure(isa: Isa) -> Option<f64> {
    if !Isa::usable().contains(&isa) {
        return None;
    }
    // About 0.05-0.1 s per run on one core of a SIMD copy at 2-3 GHz.
    let iterations = match isa {
        Isa::Portable => 1 << 21,
        _ => 1 << 22,
    };
    let threads = rayon::current_num_threads();
    let flops = 2.0 * (threads * iterations * CHAINS * fma_lanes(isa)) as f64;
    let best = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            rayon::broadcast(|_| black_box(chains(isa, black_box(iterations))));
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    Some(flops / best / 1e9)
}

/// Runs the chains of `isa` for `iterations` steps; returns the sum of their lanes (so that the
/// work cannot be left out).
fn chains(isa: Isa, iterations: usize) -> f32 {
    match isa {
        Isa::Portable => chains_scalar(iterations),
        // SAFETY: `measure` only runs copies of `Isa::usable()`, so the CPU has the features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { chains_avx2(iterations) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { chains_avx512(iterations) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { chains_neon(iterations) },
    }
}

/// The multiplier and addend of every chain: `a <- a * M + A` stays near `A / (1 - M)`.
const M: f32 = 0.999_999;
const A: f32 = 1e-6;

/// [`CHAINS`] scalar chains of `f32::mul_add`.
fn chains_scalar(iterations: usize) -> f32 {
    let mut acc = [0f32; CHAINS];
    let (m, a) = (black_box(M), black_box(A));
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = x.mul_add(m, a);
        }
    }
    acc.iter().sum()
}

/// [`CHAINS`] chains of `_mm256_fmadd_ps` (8 lanes each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(iterations: usize) -> f32 {
    chains_of::<std::arch::x86_64::__m256>(iterations, CHAINS)
}

/// `chains` chains on a vector of the fast kernels ([`Vector`]: one register, or four NEON q
/// registers), compiled into the caller's target features.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn chains_of<V: Vector>(iterations: usize, chains: usize) -> f32 {
    let zero = V::splat(0.0);
    let mut acc = [zero; CHAINS];
    let acc = &mut acc[..chains];
    let (m, a) = (V::splat(black_box(M)), V::splat(black_box(A)));
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = x.mul_add(m, a);
        }
    }
    let mut lanes = vec![0f32; V::LANES];
    let mut sum = 0.0;
    for x in acc.iter() {
        x.store(lanes.as_mut_ptr());
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

/// [`CHAINS`] chains of `_mm512_fmadd_ps` (16 lanes each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chains_avx512(iterations: usize) -> f32 {
    chains_of::<std::arch::x86_64::__m512>(iterations, CHAINS)
}

/// [`CHAINS`] chains of `vfmaq_f32` (4 lanes each): a 16-lane vector is four q registers, so
/// `CHAINS / 4` of them.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn chains_neon(iterations: usize) -> f32 {
    chains_of::<std::arch::aarch64::float32x4x4_t>(iterations, CHAINS / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every copy this CPU runs has a positive, finite peak, the SIMD copies above the
    /// portable one, and nothing for a copy it cannot run.
    // Verifies: R-WFL-4
    #[test]
    fn every_usable_copy_has_a_peak() {
        let portable = measure(Isa::Portable).unwrap();
        assert!(portable.is_finite() && portable > 0.0);
        for isa in Isa::usable() {
            let p = measure(isa).unwrap();
            eprintln!("{}: {p:.1} GFLOP/s", isa.name());
            assert!(p.is_finite() && p > 0.0, "{}", isa.name());
            if isa.is_simd() {
                assert!(p > portable, "{}: {p} <= portable {portable}", isa.name());
            }
        }
        assert_eq!(nominal_gflops(Isa::Portable, 2, 2.45), None);
    }
}
