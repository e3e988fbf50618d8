//! Per-layer benches at the sizes of the VNet's first and last stage (n_filters 16, a 64^3
//! patch), on the fast CPU engine (`cpu/...`, protokd-cpu) and, where a CUDA GPU is present, on
//! protokd-gpu (`cuda/...`; each iteration waits for the device; skipped cleanly without one):
//!
//! * Conv3d 3x3x3, padding 1, 16 -> 16 on 1 x 16 x 64^3: forward, input gradient, weight
//!   gradient;
//! * ConvTranspose3d 2x2x2 stride 2, 32 -> 16, on 1 x 32 x 32^3 (output 1 x 16 x 64^3), forward,
//!   input gradient, weight gradient;
//! * BatchNorm3d, training mode, forward + backward on 1 x 16 x 64^3;
//! * BatchNorm3d -> ReLU, training mode, on 1 x 16 x 64^3: the two layers one after the other
//!   (`bn_then_relu_train_fwd`), the fused pass the VNet runs (`bn_relu_fused_train_fwd`) and
//!   the backward of the pair (`bn_relu_train_bwd`: ReLU backward, then BatchNorm backward);
//! * group `losses`: softmax, CE, Dice and KD (T = 10) on 1 x 4 x 64^3 logits, the prototype
//!   loss on 1 x 16 x 64^3 features, each value with its gradient, on the nested-sphere labels
//!   of `protokd bench`;
//! * group `conv3d_stage`: the 3x3x3 Conv3d forward of each VNet stage for a 64^3 patch
//!   (4 -> 16 at 64^3, then C -> C at 64^3 / (C / 16) for C = 32 .. 256), to show where a
//!   whole forward spends its time.
//!
//! Run with `cargo bench --bench layers`.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use protokd::engine::{EngineKind, OnEngine, Resident};
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::Tensor;
use std::hint::black_box;
use std::time::Duration;

const C: usize = 16;
const SIDE: usize = 64;

/// A tensor moved to engine `e`.
fn up<E: Resident + ?Sized>(e: &E, t: &Tensor) -> E::T {
    e.upload(t).unwrap().into_owned()
}

fn bench_layers<E: Resident + ?Sized>(c: &mut Criterion, e: &E) {
    let mut group = c.benchmark_group(format!("{}/layers", e.kind()));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    let mut bench = |name: &str, f: &mut dyn FnMut()| {
        group.bench_function(name, |b| {
            b.iter(|| {
                f();
                e.synchronize().unwrap()
            })
        });
    };

    // Conv3d 3x3x3, 16 -> 16, PyTorch default bound 1/sqrt(fan_in).
    let g3 = ConvGeom::cubic(3, 1, 1);
    let x = protokd::audit::bench::uniform(&[1, C, SIDE, SIDE, SIDE], 21, 1.0);
    let w = protokd::audit::bench::uniform(&[C, C, 3, 3, 3], 22, 1.0 / ((C * 27) as f32).sqrt());
    let dy = protokd::audit::bench::uniform(&[1, C, SIDE, SIDE, SIDE], 23, 1.0);
    let (x, w, dy) = (up(e, &x), up(e, &w), up(e, &dy));
    bench("conv3d_fwd_k3_16to16_1x16x64^3", &mut || {
        black_box(e.conv3d_forward(&x, &w, None, &g3).unwrap());
    });
    bench("conv3d_bwd_input_k3_16to16_1x16x64^3", &mut || {
        black_box(e.conv3d_backward_input(&dy, &w, &g3, [SIDE; 3]).unwrap());
    });
    bench("conv3d_bwd_weight_k3_16to16_1x16x64^3", &mut || {
        black_box(e.conv3d_backward_weight(&x, &dy, &g3).unwrap());
    });

    // ConvTranspose3d 2x2x2 stride 2, 32 -> 16 (weight [Cin, Cout, 2, 2, 2], fan_in 16 * 8).
    let g2 = ConvGeom::cubic(2, 2, 0);
    let xt = protokd::audit::bench::uniform(&[1, 2 * C, SIDE / 2, SIDE / 2, SIDE / 2], 31, 1.0);
    let bound = 1.0 / ((C * 8) as f32).sqrt();
    let wt = protokd::audit::bench::uniform(&[2 * C, C, 2, 2, 2], 32, bound);
    let bt = protokd::audit::bench::uniform(&[C], 33, bound);
    let (xt, wt, bt) = (up(e, &xt), up(e, &wt), up(e, &bt));
    bench("conv_transpose3d_fwd_k2s2_32to16_1x32x32^3", &mut || {
        black_box(
            e.conv_transpose3d_forward(&xt, &wt, Some(&bt), &g2)
                .unwrap(),
        );
    });
    bench(
        "conv_transpose3d_bwd_input_k2s2_32to16_1x32x32^3",
        &mut || {
            black_box(e.conv_transpose3d_backward_input(&dy, &wt, &g2).unwrap());
        },
    );
    bench(
        "conv_transpose3d_bwd_weight_k2s2_32to16_1x32x32^3",
        &mut || {
            black_box(e.conv_transpose3d_backward_weight(&xt, &dy, &g2).unwrap());
        },
    );

    // BatchNorm3d, training mode, forward + backward.
    let gamma = up(e, &Tensor::from_vec(&[C], vec![1.0; C]));
    let beta = up(e, &Tensor::zeros(&[C]));
    let mut running_mean = up(e, &Tensor::zeros(&[C]));
    let mut running_var = up(e, &Tensor::from_vec(&[C], vec![1.0; C]));
    let mut tracked = 0i64;
    bench("batchnorm3d_train_fwd_bwd_1x16x64^3", &mut || {
        let (y, cache) = e
            .batchnorm3d_forward_train(
                &x,
                &gamma,
                &beta,
                &mut running_mean,
                &mut running_var,
                &mut tracked,
            )
            .unwrap();
        black_box((y, e.batchnorm3d_backward(&dy, &gamma, &cache).unwrap()));
    });
    bench("bn_then_relu_train_fwd_1x16x64^3", &mut || {
        let (y, cache) = e
            .batchnorm3d_forward_train(
                &x,
                &gamma,
                &beta,
                &mut running_mean,
                &mut running_var,
                &mut tracked,
            )
            .unwrap();
        black_box((e.relu_forward(&y).unwrap(), cache));
    });
    bench("bn_relu_fused_train_fwd_1x16x64^3", &mut || {
        black_box(
            e.batchnorm3d_relu_forward_train(
                &x,
                &gamma,
                &beta,
                &mut running_mean,
                &mut running_var,
                &mut tracked,
            )
            .unwrap(),
        );
    });
    let (y, cache) = e
        .batchnorm3d_relu_forward_train(
            &x,
            &gamma,
            &beta,
            &mut running_mean,
            &mut running_var,
            &mut tracked,
        )
        .unwrap();
    bench("bn_relu_train_bwd_1x16x64^3", &mut || {
        let d = e.relu_backward(&dy, &y).unwrap();
        black_box(e.batchnorm3d_backward(&d, &gamma, &cache).unwrap());
    });
    group.finish();
}

/// Softmax and the four losses (value and gradient) at the VNet's output of a 64^3 patch.
fn bench_losses<E: Resident + ?Sized>(c: &mut Criterion, e: &E) {
    let mut group = c.benchmark_group(format!("{}/losses", e.kind()));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let student = up(
        e,
        &protokd::audit::bench::uniform(&[1, 4, SIDE, SIDE, SIDE], 61, 3.0),
    );
    let teacher = up(
        e,
        &protokd::audit::bench::uniform(&[1, 4, SIDE, SIDE, SIDE], 62, 3.0),
    );
    let fs = up(
        e,
        &protokd::audit::bench::uniform(&[1, C, SIDE, SIDE, SIDE], 63, 1.0),
    );
    let ft = up(
        e,
        &protokd::audit::bench::uniform(&[1, C, SIDE, SIDE, SIDE], 64, 1.0),
    );
    let labels = protokd::audit::bench::label_map(1, SIDE, SIDE, SIDE);
    let labels = e.upload_labels(&labels).unwrap();
    let mut bench = |name: &str, f: &mut dyn FnMut()| {
        group.bench_function(name, |b| {
            b.iter(|| {
                f();
                e.synchronize().unwrap()
            })
        });
    };
    bench("softmax_1x4x64^3", &mut || {
        black_box(e.softmax(&student).unwrap());
    });
    bench("ce_fwd_bwd_1x4x64^3", &mut || {
        black_box(e.ce(&student, &labels, 1.0).unwrap());
    });
    bench("dice_fwd_bwd_1x4x64^3", &mut || {
        black_box(e.dice(&student, &labels, 1.0).unwrap());
    });
    bench("kd_fwd_bwd_T10_1x4x64^3", &mut || {
        black_box(e.kd(&student, &teacher, 10.0, 10.0).unwrap());
    });
    bench("proto_fwd_bwd_1x16x64^3", &mut || {
        black_box(e.proto(&fs, &ft, &labels, 0.1).unwrap());
    });
    group.finish();
}

/// The 3x3x3 Conv3d forward of every VNet stage (n_filters 16, a 64^3 patch).
fn bench_conv_stages<E: Resident + ?Sized>(c: &mut Criterion, e: &E) {
    let mut group = c.benchmark_group(format!("{}/conv3d_stage", e.kind()));
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
        let x = protokd::audit::bench::uniform(&[1, cin, side, side, side], 40 + i as u64, 1.0);
        let w = protokd::audit::bench::uniform(
            &[cout, cin, 3, 3, 3],
            50 + i as u64,
            1.0 / ((cin * 27) as f32).sqrt(),
        );
        let (x, w) = (up(e, &x), up(e, &w));
        let name = format!("fwd_k3_{cin}to{cout}_1x{cin}x{side}^3");
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(e.conv3d_forward(&x, &w, None, &g3).unwrap());
                e.synchronize().unwrap()
            })
        });
    }
    group.finish();
}

/// The bench groups on one engine (each iteration ends when the engine has finished it).
struct Benches<'a>(&'a mut Criterion);

impl OnEngine<'_> for Benches<'_> {
    type Output = ();
    fn run<E: Resident + ?Sized>(self, e: &E) {
        bench_layers(self.0, e);
        bench_losses(self.0, e);
        bench_conv_stages(self.0, e);
    }
}

fn benches(c: &mut Criterion) {
    EngineKind::Cpu.open().unwrap().run(Benches(c));
    match EngineKind::Cuda.open() {
        Ok(cuda) => cuda.run(Benches(c)),
        Err(e) => eprintln!("cuda benches skipped: {e}"),
    }
}

criterion_group!(all, benches);
criterion_main!(all);
