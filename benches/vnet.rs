//! Whole-network benches of the reference engine (`protokd-reference`) at the paper's width
//! (n_filters 16) on a 1 x 4 x 64^3 batch:
//!
//! * `vnet/forward_eval_teacher_1x4x64^3_F16`: evaluation-mode forward of the 4-channel teacher;
//! * `vnet/protokd_step_1x4x64^3_F16`: one whole ProtoKD training step (teacher forward in
//!   evaluation mode, student on T1ce in training mode, all losses, backward, Adam).
//!
//! Run with `cargo bench --bench vnet`. Each iteration takes seconds, so the benches use flat
//! sampling with 10 samples of one iteration each (see docs/performance.md for the figures).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{train_step, StepConfig};
use protokd_reference::vnet::forward_eval;
use std::hint::black_box;
use std::time::Duration;

const F: usize = 16;
const SIDE: usize = 64;
/// T1ce, in the channel order T1, T2, T1ce, FLAIR.
const STUDENT_CHANNELS: [usize; 1] = [2];

fn teacher() -> VNetState {
    VNetState::init(
        VNetConfig {
            in_channels: 4,
            n_classes: 4,
            n_filters: F,
        },
        1,
    )
}

fn bench_vnet(c: &mut Criterion) {
    let mut group = c.benchmark_group("vnet");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));

    let teacher = teacher();
    let image = protokd::bench::uniform(&[1, 4, SIDE, SIDE, SIDE], 11, 1.0);

    group.bench_function("forward_eval_teacher_1x4x64^3_F16", |b| {
        b.iter(|| forward_eval(black_box(&teacher), black_box(&image)).unwrap())
    });

    let labels = protokd::bench::label_map(1, SIDE, SIDE, SIDE);
    let mut student = VNetState::init(
        VNetConfig {
            in_channels: STUDENT_CHANNELS.len(),
            n_classes: 4,
            n_filters: F,
        },
        2,
    );
    let mut adam = AdamState::for_state(&student);
    let cfg = StepConfig::default();
    // The step updates the student and Adam in place; timing consecutive steps is what a
    // training loop does, so nothing is reset between iterations.
    group.bench_function("protokd_step_1x4x64^3_F16", |b| {
        b.iter(|| {
            train_step(
                &mut student,
                &mut adam,
                Some(&teacher),
                black_box(&image),
                &labels,
                &STUDENT_CHANNELS,
                &cfg,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_vnet);
criterion_main!(benches);
