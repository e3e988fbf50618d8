//! Times ONE evaluation-mode forward of the fast CPU engine (protokd-cpu, the best SIMD copy
//! of this CPU) at the paper's training patch: a 4-channel VNet (n_filters 16) on
//! 1 x 4 x 96 x 128 x 128.
//!
//! `cargo run --release --example forward_speed` (rayon uses every core unless
//! `RAYON_NUM_THREADS` says otherwise). Prints the seconds taken.

use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::vnet::forward_eval_on;
use protokd_reference::Tensor;
use std::time::Instant;

fn main() {
    let cfg = VNetConfig {
        in_channels: 4,
        n_classes: 4,
        n_filters: 16,
    };
    let state = VNetState::init(cfg, 1);
    let shape = [1, 4, 96, 128, 128];
    let n: usize = shape.iter().product();
    // A seeded LCG; the values only need to be finite and not trivial.
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32) * (2.0 / (1u64 << 24) as f32) - 1.0
        })
        .collect();
    let image = Tensor::from_vec(&shape, data);
    let threads = rayon::current_num_threads();
    let t0 = Instant::now();
    let out = forward_eval_on(&protokd_cpu::Cpu::new(), &state, &image).expect("forward_eval");
    let secs = t0.elapsed().as_secs_f64();
    assert!(out.logits.data.iter().all(|v| v.is_finite()));
    println!(
        "forward_eval 1x4x96x128x128 n_filters 16, {threads} threads: {secs:.3} s (logits {:?})",
        out.logits.shape
    );
}
