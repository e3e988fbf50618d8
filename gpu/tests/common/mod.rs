//! Shared helpers of the GPU tests: the device under test, seeded random data, bit comparison.
//!
//! The device is the Emulated one unless `PROTOKD_TEST_DEVICE=cuda`, so the same tests run on a
//! real GPU (docs/gpu-validation.md).
#![allow(dead_code)]

use protokd_gpu::Device;
use protokd_reference::{LabelMap, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The device under test.
pub fn device() -> Device {
    match std::env::var("PROTOKD_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::cuda().unwrap_or_else(|e| panic!("{e}")),
        Ok("emulated") | Err(_) => Device::emulated(),
        Ok(other) => panic!("PROTOKD_TEST_DEVICE={other}: expected cuda or emulated"),
    }
}

/// A seeded tensor of values uniform in `[-amp, amp)`.
pub fn random_tensor(shape: &[usize], seed: u64, amp: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let u = (rng.next_u32() >> 8) as f32 / 16_777_216.0;
            (2.0 * u - 1.0) * amp
        })
        .collect();
    Tensor::from_vec(shape, data)
}

/// Seeded labels in `0 .. n_classes`.
pub fn random_labels(dims: [usize; 4], n_classes: u8, seed: u64) -> LabelMap {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    LabelMap::new(
        dims,
        (0..n)
            .map(|_| (rng.next_u32() % n_classes as u32) as u8)
            .collect(),
    )
}

/// A seeded small integer in `lo ..= hi`.
pub fn pick(rng: &mut ChaCha8Rng, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u32() as usize) % (hi - lo + 1)
}

/// Asserts that two tensors have the same shape and the same bits everywhere.
pub fn assert_same_bits(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    if let Some(i) = (0..want.data.len()).find(|&i| got.data[i].to_bits() != want.data[i].to_bits())
    {
        panic!(
            "{what}: element {i} differs: got {:e} ({:#010x}), want {:e} ({:#010x})",
            got.data[i],
            got.data[i].to_bits(),
            want.data[i],
            want.data[i].to_bits()
        );
    }
}
