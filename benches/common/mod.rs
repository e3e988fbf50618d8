//! Deterministic inputs shared by the benches (no RNG crate: a SplitMix64 stream).

#![allow(dead_code)]

use protokd_reference::{LabelMap, Tensor};

/// SplitMix64: a tiny, well-mixed, seeded stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) * (2.0 / (1u64 << 24) as f32) - 1.0
    }
}

/// A tensor of the given shape with seeded values uniform in `[-scale, scale)`.
pub fn uniform(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let mut rng = SplitMix64(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.next_f32() * scale).collect())
}

/// Nested spheres around the centre of each sample: radius (relative to the half-extent of
/// each axis) below 0.3 -> 2 (NCR/NET), below 0.5 -> 1 (ET), below 0.75 -> 3 (ED), else 0.
/// Every class is present in every sample for any extent of at least 8.
pub fn label_map(n: usize, d: usize, h: usize, w: usize) -> LabelMap {
    let mut data = Vec::with_capacity(n * d * h * w);
    let rel = |i: usize, e: usize| (i as f32 + 0.5 - e as f32 / 2.0) / (e as f32 / 2.0);
    for _ in 0..n {
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let (a, b, c) = (rel(z, d), rel(y, h), rel(x, w));
                    let r = (a * a + b * b + c * c).sqrt();
                    data.push(if r < 0.3 {
                        2
                    } else if r < 0.5 {
                        1
                    } else if r < 0.75 {
                        3
                    } else {
                        0
                    });
                }
            }
        }
    }
    LabelMap::new([n, d, h, w], data)
}
