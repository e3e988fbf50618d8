//! Whole-network benches at the paper's width (n_filters 16) on a 1 x 4 x 64^3 batch, on the
//! fast CPU engine (`cpu/vnet/...`, protokd-cpu on the best SIMD copy of this CPU) and, where a
//! CUDA GPU is present, on protokd-gpu (`cuda/vnet/...`; skipped cleanly without one):
//!
//! * `forward_eval_teacher_1x4x64^3_F16`: evaluation-mode forward of the 4-channel teacher (on
//!   a GPU: model and image uploaded once, each iteration waits for the device);
//! * `protokd_step_1x4x64^3_F16`: one whole ProtoKD training step (teacher forward in
//!   evaluation mode, student on T1ce in training mode, all losses, backward, Adam), as
//!   training runs it ([`protokd::engine::Trainer::step`]).
//!
//! Run with `cargo bench --bench vnet`. A CPU iteration takes seconds, so the benches use flat
//! sampling with 10 samples of one iteration each (see docs/performance.md for the figures).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use protokd::engine::{Compute, EngineKind, OnEngine, Resident, Trainer};
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::StepConfig;
use protokd_reference::vnet::forward_eval_on;
use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

const F: usize = 16;
const SIDE: usize = 64;
/// T1ce, in the channel order T1, T2, T1ce, FLAIR.
const STUDENT_CHANNELS: [usize; 1] = [2];

fn net(in_channels: usize, seed: u64) -> VNetState {
    VNetState::init(
        VNetConfig {
            in_channels,
            n_classes: 4,
            n_filters: F,
        },
        seed,
    )
}

/// The forward and step benches on `compute` (one engine, written once).
struct Benches<'a> {
    c: &'a mut Criterion,
    compute: &'a Compute,
}

impl OnEngine<'_> for Benches<'_> {
    type Output = ();
    fn run<E: Resident + ?Sized>(self, e: &E) {
        bench_on(self.c, self.compute, e)
    }
}

/// The benches on `compute`, whose engine is `e`: the model and the image are moved to the
/// engine once; a forward iteration ends when the engine has finished it.
fn bench_on<E: Resident + ?Sized>(c: &mut Criterion, compute: &Compute, e: &E) {
    let mut group = c.benchmark_group(format!("{}/vnet", compute.kind()));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));

    let teacher = net(4, 1);
    let image = protokd::audit::bench::uniform(&[1, 4, SIDE, SIDE, SIDE], 11, 1.0);
    let t = teacher
        .try_map(|_, t| e.upload(t).map(Cow::into_owned))
        .unwrap();
    let x = e.upload(&image).unwrap();
    group.bench_function("forward_eval_teacher_1x4x64^3_F16", |b| {
        b.iter(|| {
            black_box(forward_eval_on(e, &t, &x).unwrap());
            e.synchronize().unwrap()
        })
    });

    let labels = protokd::audit::bench::label_map(1, SIDE, SIDE, SIDE);
    let student = net(STUDENT_CHANNELS.len(), 2);
    let adam = AdamState::for_state(&student);
    let mut trainer = Trainer::new(compute, student, adam, Some(&teacher)).unwrap();
    let cfg = StepConfig::default();
    // The step updates the student and Adam in place; timing consecutive steps is what a
    // training loop does, so nothing is reset between iterations.
    group.bench_function("protokd_step_1x4x64^3_F16", |b| {
        b.iter(|| {
            trainer
                .step(black_box(&image), &labels, &STUDENT_CHANNELS, &cfg)
                .unwrap()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let cpu = EngineKind::Cpu.open().unwrap();
    cpu.run(Benches { c, compute: &cpu });
    match EngineKind::Cuda.open() {
        Ok(compute) => compute.run(Benches {
            c,
            compute: &compute,
        }),
        Err(e) => eprintln!("cuda benches skipped: {e}"),
    }
}

criterion_group!(all, benches);
criterion_main!(all);
