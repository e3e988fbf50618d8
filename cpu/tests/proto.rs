//! The fast prototype loss (`cpu/src/proto.rs`) against the spec, bit for bit: random
//! geometries with several voxel chunks and a partial last one, classes missing from a sample
//! (not kept), no class kept at all, feature columns of norm 0 and below the 1e-5 clamp, on every
//! SIMD copy this CPU can run and 1, 2 and 3 threads.

use protokd_cpu::{Cpu, Isa};
use protokd_reference::engine::{Engine, Spec};
use protokd_reference::testutil::{random_tensor, thread_pools};
use protokd_reference::{LabelMap, Tensor};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bits(loss: f32, g: &Tensor) -> Vec<u32> {
    std::iter::once(loss.to_bits())
        .chain(g.data.iter().map(|v| v.to_bits()))
        .collect()
}

/// Labels drawn from `classes`, except that sample 1 never holds `missing` (if given).
fn labels(rng: &mut ChaCha8Rng, dims: [usize; 4], classes: u8, missing: Option<u8>) -> LabelMap {
    let [n, d, h, w] = dims;
    let per = d * h * w;
    let data = (0..n * per)
        .map(|i| {
            let k = (rng.next_u32() % classes as u32) as u8;
            match missing {
                Some(m) if i / per == 1 && k == m => 0,
                _ => k,
            }
        })
        .collect();
    LabelMap::new(dims, data)
}

/// Features with some voxel columns set to zero and some scaled below the cosine clamp.
fn features(seed: u64, shape: [usize; 5], rng: &mut ChaCha8Rng) -> Tensor {
    let mut f = random_tensor(&shape, seed);
    let [n, nf, d, h, w] = shape;
    let v = d * h * w;
    for b in 0..n {
        for vox in 0..v {
            let scale = match rng.next_u32() % 16 {
                0 => 0.0,
                1 => 1e-7,
                2 => 4e-6,
                _ => continue,
            };
            for ch in 0..nf {
                f.data[(b * nf + ch) * v + vox] *= scale;
            }
        }
    }
    f
}

// Verifies: R-NUM-4, R-NUM-5, R-MTH-7
#[test]
fn proto_gives_the_spec_bits_on_random_geometries() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let cases: [([usize; 5], u8, Option<u8>); 5] = [
        ([1, 16, 9, 13, 17], 4, None),
        ([2, 5, 7, 11, 29], 4, Some(2)),
        ([2, 3, 4, 4, 70], 3, Some(1)),
        ([3, 1, 2, 3, 5], 2, None),
        ([1, 16, 16, 16, 16], 4, Some(3)),
    ];
    let isas = Isa::usable();
    for (i, (shape, classes, missing)) in cases.into_iter().enumerate() {
        let [n, _, d, h, w] = shape;
        let lab = labels(&mut rng, [n, d, h, w], classes, missing);
        let s = features(100 + i as u64, shape, &mut rng);
        let t = features(200 + i as u64, shape, &mut rng);
        let (l, g) = Spec.proto(&s, &t, &lab, 0.1).unwrap();
        let want = bits(l, &g);
        for &isa in &isas {
            let cpu = Cpu::with_isa(isa).unwrap();
            for pool in thread_pools(&[1, 2, 3]) {
                let (l, g) = pool.install(|| cpu.proto(&s, &t, &lab, 0.1).unwrap());
                assert!(
                    bits(l, &g) == want,
                    "proto on {} {shape:?} with {} threads",
                    isa.name(),
                    pool.current_num_threads()
                );
            }
        }
    }
}

// Verifies: R-NUM-5, R-MTH-7
#[test]
fn proto_with_no_kept_class_is_zero_on_every_copy() {
    // Sample 0 holds only label 1, sample 1 only label 2: no class is in every sample.
    let dims = [2, 3, 4, 5];
    let data = (0..120).map(|i| if i < 60 { 1 } else { 2 }).collect();
    let lab = LabelMap::new(dims, data);
    let s = random_tensor(&[2, 4, 3, 4, 5], 1);
    let t = random_tensor(&[2, 4, 3, 4, 5], 2);
    let (l, g) = Spec.proto(&s, &t, &lab, 1.0).unwrap();
    assert_eq!(l, 0.0);
    for isa in Isa::usable() {
        let (lc, gc) = Cpu::with_isa(isa)
            .unwrap()
            .proto(&s, &t, &lab, 1.0)
            .unwrap();
        assert_eq!(bits(lc, &gc), bits(l, &g), "{}", isa.name());
    }
}
