//! The phantom's random numbers: ChaCha8 streams keyed by (seed, case index), with every
//! mapping from random words to numbers written out, so that the same seed gives the same
//! numbers on every machine.
//!
//! # Scheme
//! * Key (32 bytes): `seed` as u64 little-endian, then the case index `k` as u64
//!   little-endian, then the 16 ASCII bytes `protokd-phantom1` (the generator's domain tag
//!   and version).
//! * Each purpose draws from its own ChaCha stream (the 64-bit nonce, [`ChaCha8Rng::set_stream`]),
//!   starting at word 0; see [`Purpose`]. Rician noise uses one stream per
//!   (modality, slice): `NOISE_STREAM_BASE | modality << 16 | z`, so slices can be computed
//!   on any thread in any order.
//! * Words are the generator's `next_u32` outputs, in order.
//! * `unit_f32 = (w >> 8) as f32 * 2^-24` (in `[0, 1)`, exact);
//!   `unit_f64 = ((w1 as u64) << 21 | (w2 >> 11) as u64) as f64 * 2^-53` (two words, the
//!   first gives the high 32 bits; in `[0, 1)`, exact);
//!   `uniform(lo, hi) = lo + (hi - lo) * unit_f64` (f64, correctly rounded operations);
//!   `below(n) = ((w as u64 * n as u64) >> 32) as u32` (one word, in `0..n`).
//! * Normal deviates: Marsaglia's polar method in f32. Draw `u = (w1 >> 8) as f32 * 2^-23 - 1`
//!   and `v` likewise from the next word (both in `[-1, 1)`, exact), `s = u * u + v * v`
//!   (two roundings: `u * u` and `v * v` rounded, then their sum rounded; no fused
//!   multiply-add); reject and redraw while `s >= 1` or `s == 0`; then
//!   `f = sqrt(-2 * ln(s) / s)` with [`protokd_reference::mathfn::ln`], IEEE division and
//!   square root, and the pair is `(u * f, v * f)`.

use protokd_reference::mathfn;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Domain tag and version of the generator, the last 16 bytes of every key.
pub(crate) const KEY_TAG: &[u8; 16] = b"protokd-phantom1";

/// The streams of one case, by what they draw; the discriminant is the ChaCha8 stream number.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// The anatomy jitter (scale, rotation, translation): stream 0.
    Anatomy = 0,
    /// The tumour's shape parameters (kind, size, shape coefficients): stream 1.
    TumourShape = 1,
    /// The tumour's placement (rejection sampling of its centre): stream 2.
    TumourPlace = 2,
    /// The tumour's smooth noise lattices (boundaries, texture): stream 3.
    TumourNoise = 3,
    /// The T1ce vessel lattice: stream 4.
    Vessels = 4,
    /// The per-modality acquisition parameters (gain, bias field, noise level): stream 5.
    Acquisition = 5,
}
/// Base of the Rician noise streams: `NOISE_STREAM_BASE | modality << 16 | z`.
pub(crate) const NOISE_STREAM_BASE: u64 = 1 << 32;

/// One ChaCha8 stream with the documented mappings to numbers.
pub(crate) struct Stream(ChaCha8Rng);

impl Stream {
    /// The stream `stream` of case `case` of cohort `seed`.
    pub fn new(seed: u64, case: u64, stream: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&case.to_le_bytes());
        key[16..].copy_from_slice(KEY_TAG);
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream);
        Stream(rng)
    }

    /// The Rician noise stream of one modality (channel index) and slice.
    pub fn noise(seed: u64, case: u64, modality: usize, z: usize) -> Self {
        debug_assert!(modality < 4 && z < 1 << 16);
        Self::new(
            seed,
            case,
            NOISE_STREAM_BASE | (modality as u64) << 16 | z as u64,
        )
    }

    /// The next 32-bit word.
    #[inline]
    pub fn word(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// Uniform in `[0, 1)`: `(w >> 8) * 2^-24`.
    #[inline]
    pub(crate) fn unit_f32(&mut self) -> f32 {
        (self.word() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in `[-1, 1)` as f32: `2 * unit_f32 - 1` (exact).
    #[inline]
    pub(crate) fn signed_f32(&mut self) -> f32 {
        self.unit_f32() * 2.0 - 1.0
    }

    /// Uniform in `[0, 1)` with 53 random bits, from two words (first = high bits).
    pub(crate) fn unit_f64(&mut self) -> f64 {
        let hi = self.word() as u64;
        let lo = (self.word() >> 11) as u64;
        ((hi << 21) | lo) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `lo + (hi - lo) * unit_f64()`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit_f64()
    }

    /// An integer in `0..n` (`n >= 1`): `(w * n) >> 32` from one word.
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.word() as u64 * n as u64) >> 32) as u32
    }

    /// Two independent standard normal deviates (Marsaglia's polar method, f32).
    #[inline]
    pub(crate) fn normal_pair(&mut self) -> (f32, f32) {
        loop {
            let u = (self.word() >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0;
            let v = (self.word() >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0;
            let uu = u * u;
            let vv = v * v;
            let s = uu + vv;
            if s >= 1.0 || s == 0.0 {
                continue;
            }
            let f = (-2.0 * mathfn::ln(s) / s).sqrt();
            return (u * f, v * f);
        }
    }
}

// Verifies (every test in this file): R-DAT-4
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u32> = {
            let mut s = Stream::new(1, 2, 3);
            (0..8).map(|_| s.word()).collect()
        };
        let b: Vec<u32> = {
            let mut s = Stream::new(1, 2, 3);
            (0..8).map(|_| s.word()).collect()
        };
        assert_eq!(a, b);
        for (seed, case, stream) in [(2, 2, 3), (1, 3, 3), (1, 2, 4)] {
            let mut s = Stream::new(seed, case, stream);
            let c: Vec<u32> = (0..8).map(|_| s.word()).collect();
            assert_ne!(a, c);
        }
    }

    #[test]
    fn uniform_ranges_and_normal_moments() {
        let mut s = Stream::new(7, 0, 0);
        for _ in 0..10_000 {
            let u = s.unit_f32();
            assert!((0.0..1.0).contains(&u));
            let d = s.unit_f64();
            assert!((0.0..1.0).contains(&d));
            assert!(s.below(5) < 5);
        }
        let n = 200_000;
        let (mut m1, mut m2) = (0.0f64, 0.0f64);
        for _ in 0..n / 2 {
            let (a, b) = s.normal_pair();
            m1 += a as f64 + b as f64;
            m2 += (a as f64) * (a as f64) + (b as f64) * (b as f64);
        }
        let mean = m1 / n as f64;
        let var = m2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }
}
