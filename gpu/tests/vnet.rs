// Verifies (every test in this file): R-NUM-5, R-MTH-3, R-MTH-8
//! The whole VNet and the training steps on the device give the CPU reference's bits: the
//! reference's own generic forward, backward and step run on the `Gpu` engine.

mod common;

use common::{assert_same_bits, device, random_labels, random_tensor};
use protokd_gpu::transfer::{download_adam, download_state, upload_adam, upload_state};
use protokd_gpu::{Gpu, GpuLabels, GpuTensor};
use protokd_reference::adam::AdamState;
use protokd_reference::engine::Spec;
use protokd_reference::state::{VNetConfig, VNetState, Value};
use protokd_reference::step::{train_step_on, StepConfig, StepMode};
use protokd_reference::vnet::forward_eval_on;

fn net(in_channels: usize, seed: u64) -> VNetState {
    VNetState::init(
        VNetConfig {
            in_channels,
            n_classes: 4,
            n_filters: 4,
        },
        seed,
    )
}

fn assert_same_state(what: &str, got: &VNetState, want: &VNetState) {
    for (g, w) in got.entries().iter().zip(want.entries()) {
        match (&g.value, &w.value) {
            (Value::F32(a), Value::F32(b)) => {
                assert_same_bits(&format!("{what}: {}", w.name), a, b)
            }
            (a, b) => assert_eq!(a, b, "{what}: {}", w.name),
        }
    }
}

#[test]
fn teacher_forward_matches_the_reference() {
    let gpu = Gpu::new(device());
    let teacher = net(4, 1);
    let x = random_tensor(&[2, 4, 16, 16, 32], 3, 2.0);
    let want = forward_eval_on(&Spec, &teacher, &x).unwrap();
    let t = upload_state(&gpu.dev, &teacher).unwrap();
    let got = forward_eval_on(&gpu, &t, &GpuTensor::upload(&gpu.dev, &x).unwrap()).unwrap();
    assert_same_bits(
        "features",
        &got.features.download(&gpu.dev).unwrap(),
        &want.features,
    );
    assert_same_bits(
        "logits",
        &got.logits.download(&gpu.dev).unwrap(),
        &want.logits,
    );
}

/// Two steps of each mode: losses, gradients, the updated state (parameters and BatchNorm
/// running statistics) and Adam's moments, bit for bit.
#[test]
fn training_steps_match_the_reference() {
    let gpu = Gpu::new(device());
    let image = random_tensor(&[2, 4, 16, 16, 32], 5, 2.0);
    let labels = random_labels([2, 16, 16, 32], 4, 6);
    let teacher = net(4, 1);
    for mode in [StepMode::ProtoKd, StepMode::Baseline, StepMode::Teacher] {
        let cfg = StepConfig {
            mode,
            ..StepConfig::default()
        };
        let mut student = net(if mode == StepMode::Teacher { 4 } else { 1 }, 2);
        let mut adam = AdamState::for_state(&student);
        let mut s_gpu = upload_state(&gpu.dev, &student).unwrap();
        let mut a_gpu = upload_adam(&gpu.dev, &adam).unwrap();
        let t_gpu = upload_state(&gpu.dev, &teacher).unwrap();
        let x = GpuTensor::upload(&gpu.dev, &image).unwrap();
        let y = GpuLabels::upload(&gpu.dev, &labels).unwrap();
        for step in 1..=2 {
            let what = format!("{mode:?} step {step}");
            let want = train_step_on(
                &Spec,
                &mut student,
                &mut adam,
                Some(&teacher),
                &image,
                &labels,
                &[2],
                &cfg,
            )
            .unwrap();
            let got = train_step_on(
                &gpu,
                &mut s_gpu,
                &mut a_gpu,
                Some(&t_gpu),
                &x,
                &y,
                &[2],
                &cfg,
            )
            .unwrap();
            let l = [got.losses, want.losses]
                .map(|l| [l.total, l.seg, l.dice, l.ce, l.kd, l.proto].map(f32::to_bits));
            assert_eq!(
                l[0], l[1],
                "{what}: losses {:?} vs {:?}",
                got.losses, want.losses
            );
            for ((g, w), (name, _)) in got.grads.iter().zip(&want.grads).zip(student.parameters()) {
                assert_same_bits(
                    &format!("{what}: grad {name}"),
                    &g.download(&gpu.dev).unwrap(),
                    w,
                );
            }
            assert_same_state(&what, &download_state(&gpu.dev, &s_gpu).unwrap(), &student);
            let a = download_adam(&gpu.dev, &a_gpu).unwrap();
            assert_eq!(a.step, adam.step);
            for (g, w) in a
                .exp_avg
                .iter()
                .chain(&a.exp_avg_sq)
                .zip(adam.exp_avg.iter().chain(&adam.exp_avg_sq))
            {
                assert_same_bits(&format!("{what}: Adam moment"), g, w);
            }
        }
    }
}
