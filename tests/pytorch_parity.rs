//! Parity with PyTorch: fixtures written by `tools/parity/make_fixtures.py` (PyTorch 2.15, f32,
//! CPU, our own model code from the method page) for a VNet with n_filters 4 on batches
//! A = 2 x 4 x 16^3 and B = 2 x 4 x 32 x 16 x 48 (class 2 absent from one sample of B), with
//! BatchNorm statistics moved off their defaults.
//!
//! Bounds (norm-wise relative error `|a - b| / |b|`): 1e-4 for forward values and losses,
//! 1e-3 for gradients and updated parameters; `num_batches_tracked` exactly. Run with
//! `--nocapture` to see the worst figure of each group.

use protokd::audit::read_labels;
use protokd::checkpoint::read_state;
use protokd::tensorfile::TensorFile;
use protokd_reference::adam::AdamState;
use protokd_reference::losses::{ce, dice, kd, proto};
use protokd_reference::state::{VNetConfig, VNetState, Value};
use protokd_reference::step::{train_step, StepConfig, StepMode};
use protokd_reference::vnet::{forward_eval, forward_train};
use protokd_reference::{LabelMap, Tensor};
use std::path::PathBuf;

const FORWARD_BOUND: f64 = 1e-4;
const GRAD_BOUND: f64 = 1e-3;
const T1CE: usize = 2;

fn fixture(name: &str) -> TensorFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name);
    TensorFile::open(&p).unwrap()
}

/// `|a - b| / |b|` in f64 (absolute when `b` is all zero).
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape, b.shape, "shapes differ");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.data.iter().zip(&b.data) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Records the worst error of a group and fails on any above the bound.
struct Group {
    name: &'static str,
    bound: f64,
    worst: f64,
    worst_at: String,
    count: usize,
}

impl Group {
    fn new(name: &'static str, bound: f64) -> Self {
        Group {
            name,
            bound,
            worst: 0.0,
            worst_at: String::new(),
            count: 0,
        }
    }
    fn check(&mut self, what: &str, ours: &Tensor, torch: &Tensor) {
        let e = rel_err(ours, torch);
        if std::env::var("PARITY_DEBUG").is_ok() && e > self.bound {
            println!("BAD {what} {e:.3e}");
        } else {
            assert!(
                e <= self.bound,
                "{}: {what}: relative error {e:.3e} > {:.0e}",
                self.name,
                self.bound
            );
        }
        self.count += 1;
        if e >= self.worst {
            self.worst = e;
            self.worst_at = what.to_string();
        }
    }
    fn scalar(&mut self, what: &str, ours: f32, torch: &Tensor) {
        self.check(what, &Tensor::from_vec(&[], vec![ours]), torch)
    }
    fn report(&self) {
        println!(
            "{:<28} {:>4} tensors, worst relative error {:.3e} ({})",
            self.name, self.count, self.worst, self.worst_at
        );
    }
}

fn config(file: &TensorFile, prefix: &str) -> VNetConfig {
    let w = file
        .shape(&format!("{prefix}block_one.conv.0.weight"))
        .unwrap();
    let o = file.shape(&format!("{prefix}out_conv.weight")).unwrap();
    VNetConfig {
        in_channels: w[1],
        n_filters: w[0],
        n_classes: o[0],
    }
}

fn state(file: &TensorFile, prefix: &str) -> VNetState {
    read_state(file, prefix, config(file, prefix)).unwrap()
}

/// Every entry of `state` against `<prefix><name>` in the file: f32 to the bound, counts exactly.
fn check_state(g: &mut Group, file: &TensorFile, prefix: &str, state: &VNetState) {
    for e in state.entries() {
        let name = format!("{prefix}{}", e.name);
        match &e.value {
            Value::F32(t) => g.check(&name, t, &file.f32(&name).unwrap()),
            Value::I64(n) => assert_eq!(*n, file.i64_scalar(&name).unwrap(), "{name}"),
        }
    }
}

fn check_grads(
    g: &mut Group,
    file: &TensorFile,
    prefix: &str,
    state: &VNetState,
    grads: &[Tensor],
) {
    for ((name, _), grad) in state.parameters().zip(grads) {
        let key = format!("{prefix}{name}");
        g.check(&key, grad, &file.f32(&key).unwrap());
    }
}

fn labels(file: &TensorFile) -> LabelMap {
    read_labels(file, 4).unwrap()
}

fn parity(name: &str) {
    let f = fixture(name);
    let teacher = state(&f, "teacher.");
    let student0 = state(&f, "student.");
    let image = f.f32("image").unwrap();
    let y = labels(&f);
    let mut fwd = Group::new("forward values", FORWARD_BOUND);
    let mut loss = Group::new("losses", FORWARD_BOUND);
    let mut grad = Group::new("gradients", GRAD_BOUND);
    let mut param = Group::new("updated parameters", GRAD_BOUND);

    // Teacher forward, evaluation and training mode (running statistics after one batch).
    let t_eval = forward_eval(&teacher, &image).unwrap();
    fwd.check(
        "eval.teacher.features",
        &t_eval.features,
        &f.f32("eval.teacher.features").unwrap(),
    );
    fwd.check(
        "eval.teacher.logits",
        &t_eval.logits,
        &f.f32("eval.teacher.logits").unwrap(),
    );
    let mut t_train = teacher.clone();
    let (out, _) = forward_train(&mut t_train, &image).unwrap();
    fwd.check(
        "train.teacher.features",
        &out.features,
        &f.f32("train.teacher.features").unwrap(),
    );
    fwd.check(
        "train.teacher.logits",
        &out.logits,
        &f.f32("train.teacher.logits").unwrap(),
    );
    for e in t_train.entries() {
        let key = format!("train.teacher.after.{}", e.name);
        if f.contains(&key) {
            match &e.value {
                Value::F32(t) => fwd.check(&key, t, &f.f32(&key).unwrap()),
                Value::I64(n) => assert_eq!(*n, f.i64_scalar(&key).unwrap(), "{key}"),
            }
        }
    }

    // Each loss and its gradient, on PyTorch's own student outputs (isolates the losses).
    let s_logits = f.f32("step.student.logits").unwrap();
    let s_features = f.f32("step.student.features").unwrap();
    let t_logits = f.f32("eval.teacher.logits").unwrap();
    let t_features = f.f32("eval.teacher.features").unwrap();
    let d = dice::dice_loss(&s_logits, &y);
    loss.scalar("dice", d.loss, &f.f32("step.loss.dice").unwrap());
    grad.check(
        "lossgrad.dice",
        &dice::dice_backward(&d, &y, 1.0),
        &f.f32("lossgrad.dice").unwrap(),
    );
    let c = ce::ce_loss(&s_logits, &y);
    loss.scalar("ce", c.loss, &f.f32("step.loss.ce").unwrap());
    grad.check(
        "lossgrad.ce",
        &ce::ce_backward(&c, &y, 1.0),
        &f.f32("lossgrad.ce").unwrap(),
    );
    let k = kd::kd_loss(&s_logits, &t_logits, 10.0);
    loss.scalar("kd", k.loss, &f.f32("step.loss.kd").unwrap());
    grad.check(
        "lossgrad.kd",
        &kd::kd_backward(&k, 1.0),
        &f.f32("lossgrad.kd").unwrap(),
    );
    let p = proto::proto_loss(&s_features, &t_features, &y);
    loss.scalar("proto", p.loss, &f.f32("step.loss.proto").unwrap());
    grad.check(
        "lossgrad.proto",
        &proto::proto_backward(&p, 1.0),
        &f.f32("lossgrad.proto").unwrap(),
    );

    // The ProtoKD step, then two more on the same batch.
    let cfg = StepConfig::default();
    let mut student = student0.clone();
    let mut adam = AdamState::for_state(&student);
    let r = train_step(
        &mut student,
        &mut adam,
        Some(&teacher),
        &image,
        &y,
        &[T1CE],
        &cfg,
    )
    .unwrap();
    let l = r.losses;
    for (n, v) in [
        ("total", l.total),
        ("seg", l.seg),
        ("dice", l.dice),
        ("ce", l.ce),
        ("kd", l.kd),
        ("proto", l.proto),
    ] {
        loss.scalar(
            &format!("step.loss.{n}"),
            v,
            &f.f32(&format!("step.loss.{n}")).unwrap(),
        );
    }
    check_grads(&mut grad, &f, "step.grad.", &student0, &r.grads);
    check_state(&mut param, &f, "step1.param.", &student);
    for _ in 0..2 {
        train_step(
            &mut student,
            &mut adam,
            Some(&teacher),
            &image,
            &y,
            &[T1CE],
            &cfg,
        )
        .unwrap();
    }
    check_state(&mut param, &f, "step3.param.", &student);

    // Unimodal baseline and teacher pretraining.
    let mut base = student0.clone();
    let mut adam = AdamState::for_state(&base);
    let cfg_b = StepConfig {
        mode: StepMode::Baseline,
        ..cfg
    };
    let r = train_step(&mut base, &mut adam, None, &image, &y, &[T1CE], &cfg_b).unwrap();
    loss.scalar(
        "baseline.loss.total",
        r.losses.total,
        &f.f32("baseline.loss.total").unwrap(),
    );
    check_grads(&mut grad, &f, "baseline.grad.", &student0, &r.grads);
    let mut tt = teacher.clone();
    let mut adam = AdamState::for_state(&tt);
    let cfg_t = StepConfig {
        mode: StepMode::Teacher,
        ..cfg
    };
    let r = train_step(&mut tt, &mut adam, None, &image, &y, &[], &cfg_t).unwrap();
    loss.scalar(
        "teacherstep.loss.total",
        r.losses.total,
        &f.f32("teacherstep.loss.total").unwrap(),
    );
    check_grads(&mut grad, &f, "teacherstep.grad.", &teacher, &r.grads);
    check_state(&mut param, &f, "teacherstep.param.", &tt);

    println!("fixture {name}:");
    for g in [&fwd, &loss, &grad, &param] {
        g.report();
    }
}

#[test]
fn parity_cubic_batch() {
    parity("A.safetensors");
}

#[test]
fn parity_anisotropic_batch_with_a_missing_class() {
    parity("B.safetensors");
}
