//! Per-layer benches of the reference engine (`protokd-reference`) at the sizes of the VNet's
//! first and last stage (n_filters 16, a 64^3 patch):
//!
//! * Conv3d 3x3x3, padding 1, 16 -> 16 on 1 x 16 x 64^3: forward, input gradient, weight
//!   gradient;
//! * ConvTranspose3d 2x2x2 stride 2, 32 -> 16, on 1 x 32 x 32^3 (output 1 x 16 x 64^3), forward;
//! * BatchNorm3d, training mode, forward + backward on 1 x 16 x 64^3;
//! * group `conv3d_stage`: the 3x3x3 Conv3d forward of each VNet stage for a 64^3 patch
//!   (4 -> 16 at 64^3, then C -> C at 64^3 / (C / 16) for C = 32 .. 256), to show where a
//!   whole forward spends its time (rows of `W` < 64 take the slower path of `rowops`).
//!
//! Run with `cargo bench --bench layers`.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use protokd_reference::layers::batchnorm3d::{batchnorm3d_backward, batchnorm3d_forward_train};
use protokd_reference::layers::conv3d::{
    conv3d_backward_input, conv3d_backward_weight, conv3d_forward, ConvGeom,
};
use protokd_reference::layers::conv_transpose3d::conv_transpose3d_forward;
use protokd_reference::Tensor;
use std::hint::black_box;
use std::time::Duration;

const C: usize = 16;
const SIDE: usize = 64;

fn bench_layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("layers");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));

    // Conv3d 3x3x3, 16 -> 16, PyTorch default bound 1/sqrt(fan_in).
    let g3 = ConvGeom::cubic(3, 1, 1);
    let x = protokd::bench::uniform(&[1, C, SIDE, SIDE, SIDE], 21, 1.0);
    let w = protokd::bench::uniform(&[C, C, 3, 3, 3], 22, 1.0 / ((C * 27) as f32).sqrt());
    let dy = protokd::bench::uniform(&[1, C, SIDE, SIDE, SIDE], 23, 1.0);
    group.bench_function("conv3d_fwd_k3_16to16_1x16x64^3", |b| {
        b.iter(|| conv3d_forward(black_box(&x), black_box(&w), None, &g3))
    });
    group.bench_function("conv3d_bwd_input_k3_16to16_1x16x64^3", |b| {
        b.iter(|| conv3d_backward_input(black_box(&dy), black_box(&w), &g3, [SIDE; 3]))
    });
    group.bench_function("conv3d_bwd_weight_k3_16to16_1x16x64^3", |b| {
        b.iter(|| conv3d_backward_weight(black_box(&x), black_box(&dy), &g3))
    });

    // ConvTranspose3d 2x2x2 stride 2, 32 -> 16 (weight [Cin, Cout, 2, 2, 2], fan_in 16 * 8).
    let g2 = ConvGeom::cubic(2, 2, 0);
    let xt = protokd::bench::uniform(&[1, 2 * C, SIDE / 2, SIDE / 2, SIDE / 2], 31, 1.0);
    let bound = 1.0 / ((C * 8) as f32).sqrt();
    let wt = protokd::bench::uniform(&[2 * C, C, 2, 2, 2], 32, bound);
    let bt = protokd::bench::uniform(&[C], 33, bound);
    group.bench_function("conv_transpose3d_fwd_k2s2_32to16_1x32x32^3", |b| {
        b.iter(|| conv_transpose3d_forward(black_box(&xt), black_box(&wt), Some(&bt), &g2))
    });

    // BatchNorm3d, training mode, forward + backward.
    let gamma = Tensor::from_vec(&[C], vec![1.0; C]);
    let beta = Tensor::zeros(&[C]);
    let mut running_mean = Tensor::zeros(&[C]);
    let mut running_var = Tensor::from_vec(&[C], vec![1.0; C]);
    let mut tracked = 0i64;
    group.bench_function("batchnorm3d_train_fwd_bwd_1x16x64^3", |b| {
        b.iter(|| {
            let (y, cache) = batchnorm3d_forward_train(
                black_box(&x),
                &gamma,
                &beta,
                &mut running_mean,
                &mut running_var,
                &mut tracked,
            )
            .unwrap();
            let grads = batchnorm3d_backward(black_box(&dy), &gamma, &cache);
            (y, grads)
        })
    });
    group.finish();
}

/// The 3x3x3 Conv3d forward of every VNet stage (n_filters 16, a 64^3 patch).
fn bench_conv_stages(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv3d_stage");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let g3 = ConvGeom::cubic(3, 1, 1);
    let stages = [
        (4, C, SIDE),
        (2 * C, 2 * C, SIDE / 2),
        (4 * C, 4 * C, SIDE / 4),
        (8 * C, 8 * C, SIDE / 8),
        (16 * C, 16 * C, SIDE / 16),
    ];
    for (i, &(cin, cout, side)) in stages.iter().enumerate() {
        let x = protokd::bench::uniform(&[1, cin, side, side, side], 40 + i as u64, 1.0);
        let w = protokd::bench::uniform(
            &[cout, cin, 3, 3, 3],
            50 + i as u64,
            1.0 / ((cin * 27) as f32).sqrt(),
        );
        let name = format!("fwd_k3_{cin}to{cout}_1x{cin}x{side}^3");
        group.bench_function(name, |b| {
            b.iter(|| conv3d_forward(black_box(&x), black_box(&w), None, &g3))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_layers, bench_conv_stages);
criterion_main!(benches);
