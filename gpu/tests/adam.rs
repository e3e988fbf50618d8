// Verifies (every test in this file): R-NUM-5, R-MTH-9
//! Adam's per-element update on the device gives the bits of the reference's
//! `AdamScalars::update` over chained steps (t = 1, 2, 7, 1000), with weight decay.

mod common;
use protokd_gpu::ops::adam::adam_update;
use protokd_gpu::{Device, GpuTensor};
use protokd_reference::adam::{AdamConfig, AdamScalars};
use protokd_reference::Tensor;

fn up(dev: &Device, t: &Tensor) -> GpuTensor {
    GpuTensor::upload(dev, t).unwrap()
}

fn down(dev: &Device, t: &GpuTensor) -> Tensor {
    t.download(dev).unwrap()
}

/// `s.update` on every element, on the host.
fn host_update(s: &AdamScalars, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> [Tensor; 3] {
    let mut out = [p.clone(), m.clone(), v.clone()];
    for i in 0..p.numel() {
        let (pi, mi, vi) = s.update(p.data[i], g.data[i], m.data[i], v.data[i]);
        (out[0].data[i], out[1].data[i], out[2].data[i]) = (pi, mi, vi);
    }
    out
}

#[test]
fn chained_steps_match_the_reference() {
    let dev = common::device();
    let configs = [
        AdamConfig::default(),
        AdamConfig {
            lr: 3e-2,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.05,
        },
    ];
    for (ci, cfg) in configs.iter().enumerate() {
        let shape = [3, 5, 7, 11];
        let seed = 10 * ci as u64;
        let mut p = common::random_tensor(&shape, seed, 1.0);
        // Zero parameters and gradients, and tiny ones (subnormal moments).
        p.data[0] = 0.0;
        p.data[1] = -0.0;
        p.data[2] = 1e-38;
        let (mut m, mut v) = (Tensor::zeros(&shape), Tensor::zeros(&shape));
        let (mut gp, mut gm, mut gv) = (up(&dev, &p), up(&dev, &m), up(&dev, &v));
        for (k, t) in [1u64, 2, 7, 1000].into_iter().enumerate() {
            let mut g = common::random_tensor(&shape, seed + 1 + k as u64, 0.5);
            g.data[0] = 0.0;
            g.data[2] = -1e-39;
            let s = AdamScalars::for_step(cfg, t);
            (gp, gm, gv) = adam_update(&dev, &gp, &up(&dev, &g), &gm, &gv, &s).unwrap();
            [p, m, v] = host_update(&s, &p, &g, &m, &v);
            let what = format!("config {ci}, step {t}");
            common::assert_same_bits(&format!("{what}: p"), &down(&dev, &gp), &p);
            common::assert_same_bits(&format!("{what}: m"), &down(&dev, &gm), &m);
            common::assert_same_bits(&format!("{what}: v"), &down(&dev, &gv), &v);
        }
    }
}

#[test]
#[should_panic(expected = "adam_update: exp_avg shape")]
fn moment_shapes_are_checked() {
    let dev = common::device();
    let p = GpuTensor::zeros(&dev, &[4]).unwrap();
    let m = GpuTensor::zeros(&dev, &[5]).unwrap();
    let s = AdamScalars::for_step(&AdamConfig::default(), 1);
    let _ = adam_update(&dev, &p, &p, &m, &p, &s);
}
