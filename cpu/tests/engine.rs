// Verifies (every test in this file): R-NUM-5
//! The fast CPU engine against the specification, operation by operation and for a whole
//! ProtoKD step, bit for bit: on every SIMD copy this CPU can run (each engine built by value
//! with `Cpu::with_isa`) and with 1, 2 and 7 threads. Nothing here changes process state, so
//! the tests may run in parallel.

use protokd_cpu::{Cpu, Isa};
use protokd_reference::adam::{AdamConfig, AdamScalars, AdamState};
use protokd_reference::engine::{Engine, Spec};
use protokd_reference::error::EngineError;
use protokd_reference::layers::batchnorm3d::BnCache;
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{train_step_on, StepConfig, StepMode};
use protokd_reference::testutil::{random_tensor, thread_pools};
use protokd_reference::{LabelMap, Tensor};

fn bits(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

/// Every engine this CPU can run: one per SIMD copy.
fn engines() -> Vec<Cpu> {
    let isas = Isa::usable();
    assert_eq!(isas.last(), Some(&Isa::Portable));
    isas.into_iter()
        .map(|i| Cpu::with_isa(i).expect("a usable copy"))
        .collect()
}

/// Runs `f` in pools of 1, 2 and 7 threads.
fn in_pools<R>(mut f: impl FnMut() -> R + Send) -> Vec<R>
where
    R: Send,
{
    thread_pools(&[1, 2, 7])
        .iter()
        .map(|p| p.install(&mut f))
        .collect()
}

/// Labels with every class present: nested shells around the centre of each sample.
fn labels(dims: [usize; 4]) -> LabelMap {
    let [n, d, h, w] = dims;
    let mut data = Vec::with_capacity(n * d * h * w);
    for nn in 0..n {
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let r = [z * 2, y * 2, x * 2]
                        .iter()
                        .zip([d, h, w])
                        .map(|(&c, e)| (c as i64 - e as i64 - nn as i64).unsigned_abs())
                        .max()
                        .unwrap();
                    data.push((r * 4 / (d.max(h).max(w) as u64 + 1)).min(3) as u8);
                }
            }
        }
    }
    LabelMap::new(dims, data)
}

/// Every output of every engine operation on one engine, flattened, for one set of inputs
/// (shapes chosen so that widths of 16 take the blocked paths and 6 the others).
fn operations<E: Engine<R = f32, T = Tensor, Labels = LabelMap, BnCache = BnCache>>(
    e: &E,
    seed: u64,
    dims: [usize; 3],
) -> Vec<(&'static str, Vec<u32>)> {
    let [d, h, w] = dims;
    let x = random_tensor(&[2, 3, d, h, w], seed);
    let mut out = Vec::new();
    let mut put = |name: &'static str, parts: &[&Tensor]| {
        out.push((name, parts.iter().flat_map(|t| bits(t)).collect()));
    };
    let k3 = ConvGeom::cubic(3, 1, 1);
    let k2 = ConvGeom::cubic(2, 2, 0);
    let w3 = random_tensor(&[5, 3, 3, 3, 3], seed + 1);
    let b3 = random_tensor(&[5], seed + 2);
    let y3 = e.conv3d_forward(&x, &w3, Some(&b3), &k3).unwrap();
    let dy3 = random_tensor(&y3.shape, seed + 3);
    put("conv3d_forward k3", &[&y3]);
    let dx3 = e.conv3d_backward_input(&dy3, &w3, &k3, dims).unwrap();
    put("conv3d_backward_input k3", &[&dx3]);
    put(
        "conv3d_backward_weight k3",
        &[&e.conv3d_backward_weight(&x, &dy3, &k3).unwrap()],
    );
    put("bias_backward", &[&e.bias_backward(&dy3).unwrap()]);
    let w2 = random_tensor(&[4, 3, 2, 2, 2], seed + 4);
    let y2 = e.conv3d_forward(&x, &w2, None, &k2).unwrap();
    let dy2 = random_tensor(&y2.shape, seed + 5);
    put("conv3d_forward k2s2", &[&y2]);
    put(
        "conv3d_backward_input k2s2",
        &[&e.conv3d_backward_input(&dy2, &w2, &k2, dims).unwrap()],
    );
    put(
        "conv3d_backward_weight k2s2",
        &[&e.conv3d_backward_weight(&x, &dy2, &k2).unwrap()],
    );
    let wt = random_tensor(&[3, 2, 2, 2, 2], seed + 6);
    let bt = random_tensor(&[2], seed + 7);
    let yt = e.conv_transpose3d_forward(&x, &wt, Some(&bt), &k2).unwrap();
    let dyt = random_tensor(&yt.shape, seed + 8);
    put("conv_transpose3d_forward", &[&yt]);
    put(
        "conv_transpose3d_backward_input",
        &[&e.conv_transpose3d_backward_input(&dyt, &wt, &k2).unwrap()],
    );
    put(
        "conv_transpose3d_backward_weight",
        &[&e.conv_transpose3d_backward_weight(&x, &dyt, &k2).unwrap()],
    );

    let (gamma, beta) = (
        random_tensor(&[3], seed + 9),
        random_tensor(&[3], seed + 10),
    );
    let mut z = x.clone();
    z.data[5] = f32::NAN; // passed on by BatchNorm and ReLU alike
    let stats = || {
        (
            random_tensor(&[3], seed + 11),
            Tensor::from_vec(&[3], vec![0.5, 1.0, 2.0]),
        )
    };
    let (mut rm, mut rv) = stats();
    let mut nbt = 3;
    let (yb, cache) = e
        .batchnorm3d_forward_train(&z, &gamma, &beta, &mut rm, &mut rv, &mut nbt)
        .unwrap();
    put("batchnorm3d_forward_train", &[&yb, &rm, &rv, &cache.xhat]);
    let (mut rm2, mut rv2) = stats();
    let (yr, cache2) = e
        .batchnorm3d_relu_forward_train(&z, &gamma, &beta, &mut rm2, &mut rv2, &mut nbt)
        .unwrap();
    put(
        "batchnorm3d_relu_forward_train",
        &[&yr, &rm2, &rv2, &cache2.xhat],
    );
    assert_eq!(nbt, 5);
    put(
        "batchnorm3d_forward_eval",
        &[&e.batchnorm3d_forward_eval(&z, &gamma, &beta, &rm, &rv)
            .unwrap()],
    );
    put(
        "batchnorm3d_relu_forward_eval",
        &[
            &e.batchnorm3d_relu_forward_eval(&z, &gamma, &beta, &rm, &rv)
                .unwrap(),
        ],
    );
    // The backward from a NaN-free forward: with a NaN in the cache, two operands of one fma
    // can both be NaN, and which payload such a result carries is left open by IEEE 754 (x86
    // and NEON, scalar and vector instructions choose differently; see the reference crate's
    // numerics contract).
    let (mut rm3, mut rv3) = stats();
    let (_, clean) = e
        .batchnorm3d_forward_train(&x, &gamma, &beta, &mut rm3, &mut rv3, &mut nbt)
        .unwrap();
    let (dxb, dgb, dbb) = e.batchnorm3d_backward(&x, &gamma, &clean).unwrap();
    put("batchnorm3d_backward", &[&dxb, &dgb, &dbb]);
    let r = e.relu_forward(&z).unwrap();
    put("relu_forward", &[&r]);
    put("relu_backward", &[&e.relu_backward(&x, &r).unwrap()]);
    put("add", &[&e.add(&x, &dx3).unwrap()]);
    put(
        "select_channels",
        &[&e.select_channels(&x, &[2, 0]).unwrap()],
    );

    let logits = random_tensor(&[2, 4, d, h, w], seed + 12);
    let teacher = random_tensor(&[2, 4, d, h, w], seed + 13);
    let lab = labels([2, d, h, w]);
    put("softmax", &[&e.softmax(&logits).unwrap()]);
    for (name, (l, g)) in [
        ("ce", e.ce(&logits, &lab, 0.7).unwrap()),
        ("dice", e.dice(&logits, &lab, 1.0).unwrap()),
        ("kd", e.kd(&logits, &teacher, 10.0, 10.0).unwrap()),
        ("proto", e.proto(&x, &dx3, &lab, 0.1).unwrap()),
    ] {
        put(name, &[&Tensor::from_vec(&[1], vec![l]), &g]);
    }
    let s = AdamScalars::for_step(&AdamConfig::default(), 3);
    let (mut p, mut m, mut v) = (x.clone(), dx3.clone(), dxb.clone());
    for vv in &mut v.data {
        *vv = vv.abs();
    }
    e.adam_update(&mut p, &dy3.select_channels(&[0, 1, 2]), &mut m, &mut v, &s)
        .unwrap();
    put("adam_update", &[&p, &m, &v]);
    let err = e.check_finite("z", &z).unwrap_err();
    assert!(
        matches!(err, EngineError::NonFinite { index: 5, .. }),
        "{err}"
    );
    out
}

/// Every operation, on every copy and thread count, gives the spec's bits, on two shapes.
#[test]
fn every_operation_gives_the_spec_bits() {
    for (seed, dims) in [(10, [4, 6, 16]), (20, [6, 4, 6])] {
        let want = operations(&Spec, seed, dims);
        for cpu in engines() {
            for got in in_pools(|| operations(&cpu, seed, dims)) {
                assert_eq!(got.len(), want.len());
                for ((name, g), (_, w)) in got.iter().zip(&want) {
                    assert_eq!(g, w, "{name} on {} {dims:?}", cpu.isa().name());
                }
            }
        }
    }
}

/// One ProtoKD step on `e` from a seeded student: the total loss, the updated student and
/// Adam's moments, as bits.
fn step_bits<E: Engine<R = f32, T = Tensor, Labels = LabelMap>>(e: &E) -> Vec<u32> {
    let cfg = |cin| VNetConfig {
        in_channels: cin,
        n_classes: 4,
        n_filters: 4,
    };
    let teacher = VNetState::init(cfg(4), 1);
    let mut student = VNetState::init(cfg(1), 2);
    let mut adam = AdamState::for_state(&student);
    let image = random_tensor(&[2, 4, 16, 16, 32], 3);
    let lab = labels([2, 16, 16, 32]);
    let step = StepConfig {
        mode: StepMode::ProtoKd,
        ..StepConfig::default()
    };
    let r = train_step_on(
        e,
        &mut student,
        &mut adam,
        Some(&teacher),
        &image,
        &lab,
        &[2],
        &step,
    )
    .expect("step");
    let mut all = vec![r.losses.total.to_bits()];
    for (_, t) in student.parameters() {
        all.extend(bits(t));
    }
    for t in adam.exp_avg.iter().chain(&adam.exp_avg_sq) {
        all.extend(bits(t));
    }
    all
}

/// A whole ProtoKD step (teacher forward, student forward and backward, every loss, Adam) on
/// the VNet at n_filters 4 and a 16 x 16 x 32 batch of 2: the losses, the updated student and
/// Adam's moments are the spec's bits on every copy and thread count.
#[test]
fn a_protokd_step_gives_the_spec_bits() {
    let want = step_bits(&Spec);
    for cpu in engines() {
        for got in in_pools(|| step_bits(&cpu)) {
            assert!(got == want, "{} differs from the spec", cpu.isa().name());
        }
    }
}

/// A copy this CPU cannot run is refused with a message naming the ones it can.
// Verifies: R-CLI-7
#[test]
fn an_unusable_copy_is_refused() {
    let usable = Isa::usable();
    for isa in [
        Isa::Portable,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon,
    ] {
        match Cpu::with_isa(isa) {
            Ok(cpu) => assert!(usable.contains(&isa) && cpu.isa() == isa),
            Err(e) => {
                assert!(!usable.contains(&isa));
                assert!(e.to_string().contains("portable"), "{e}");
            }
        }
    }
    assert_eq!(Cpu::new().isa(), Isa::detected());
}
