// Verifies (every test in this file): R-MTH-12, R-MTH-3, R-MTH-4, R-MTH-5, R-MTH-6, R-MTH-7, R-MTH-8, R-MTH-9
//! Parity with PyTorch: fixtures written by `tools/parity/make_fixtures.py` (PyTorch 2.15, f32,
//! CPU, our own model code from the method page), BatchNorm statistics moved off their defaults:
//!
//! * A: VNet n_filters 4 on 2 x 4 x 16^3; B: n_filters 4 on 2 x 4 x 32 x 16 x 48 with class 2
//!   absent from one sample (the prototype loss's skip rule).
//! * C: n_filters 2 on 2 x 4 x 16 x 32 x 32 with every BatchNorm shift near 1.5: a
//!   well-conditioned case, held strictly to the bounds below.
//!
//! Bounds (norm-wise relative error `|a - b| / |b|`): 1e-4 for forward values and losses, 1e-3
//! for gradients and updated parameters; `num_batches_tracked` exactly.
//!
//! Why A and B need more: at PyTorch's initialisation and these sizes, the deepest BatchNorms
//! see 2 (A) or 12 (B) values per channel, nearly equal (variance far below eps), and the
//! gradients below them are ill-conditioned in float32: PyTorch's own float32 gradients differ
//! from its float64 ones by up to 3% (A) with oneDNN convolutions and by up to 100% (B) with
//! its native ones. No float32 implementation can meet 1e-3 there. The fixture script records,
//! for every tensor, the worse of PyTorch's two float32 errors against float64 (the
//! `*.conditioning.json` files), and A and B hold each tensor to
//! `max(bound, WIDEN * that error)` (see [`Conditioning::bound`]). Run with `--nocapture` to
//! see, per group, how many tensors needed the wider bound and the worst error.

use crate::common::rel_err;
use protokd::audit::replay::read_labels;
use protokd::io::checkpoint::read_state;
use protokd::io::tensorfile::TensorFile;
use protokd_reference::adam::AdamState;
use protokd_reference::losses::{ce, dice, kd, proto};
use protokd_reference::state::{VNetConfig, VNetState, Value};
use protokd_reference::step::{train_step, StepConfig, StepMode};
use protokd_reference::vnet::{forward_eval, forward_train};
use protokd_reference::{LabelMap, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

const FORWARD_BOUND: f64 = 1e-4;
const GRAD_BOUND: f64 = 1e-3;
const T1CE: usize = 2;
/// Where PyTorch's own float32 result is further than the bound from its float64 result, the
/// bound for that tensor is this multiple of PyTorch's float32 error.
const WIDEN: f64 = 8.0;
/// Bound for gradients that are zero in exact arithmetic, relative to their natural scale.
const ZERO_GRAD: f64 = 1e-4;

fn fixture(name: &str) -> TensorFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name);
    TensorFile::open(&p).unwrap()
}

/// PyTorch's own float32 error for each computed tensor of a fixture, `||t32 - t64|| / ||t64||`
/// (the same computation repeated in float64 by the fixture script).
/// `None`: strict, every tensor held to the bounds.
struct Conditioning(Option<HashMap<String, f64>>);

impl Conditioning {
    fn load(fixture: &str) -> Self {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parity")
            .join(fixture.replace(".safetensors", ".conditioning.json"));
        Conditioning(Some(
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap(),
        ))
    }
    fn of(&self, key: &str) -> f64 {
        match &self.0 {
            None => 0.0,
            Some(k) => *k
                .get(key)
                .unwrap_or_else(|| panic!("no conditioning figure for {key}")),
        }
    }

    /// The bound for tensor `key` given the issue's `base` bound: `max(base, WIDEN * kappa)`,
    /// and for a parameter updated by Adam at least the float32 error of the gradient that
    /// moved it (Adam divides the gradient by its own scale, so the update inherits the
    /// gradient's relative error; near-zero gradient entries can even flip the sign of a
    /// first step).
    fn bound(&self, key: &str, base: f64) -> f64 {
        let own = base.max(WIDEN * self.of(key));
        let grad_key = [
            ("step1.param.", "step.grad."),
            ("step3.param.", "step.grad."),
            ("teacherstep.param.", "teacherstep.grad."),
        ]
        .iter()
        .find_map(|(p, g)| key.strip_prefix(p).map(|name| format!("{g}{name}")));
        match (&self.0, grad_key) {
            (Some(k), Some(g)) => k.get(&g).map_or(own, |&kappa_grad| own.max(kappa_grad)),
            _ => own,
        }
    }
}

/// Records the worst error of a group and fails on any above its bound.
struct Group {
    cond: std::rc::Rc<Conditioning>,
    name: &'static str,
    bound: f64,
    worst: f64,
    worst_at: String,
    count: usize,
    widened: usize,
    zero_checked: usize,
}

impl Group {
    fn new(cond: &std::rc::Rc<Conditioning>, name: &'static str, bound: f64) -> Self {
        Group {
            cond: cond.clone(),
            name,
            bound,
            worst: 0.0,
            worst_at: String::new(),
            count: 0,
            widened: 0,
            zero_checked: 0,
        }
    }
    /// `ours` against PyTorch's `torch` (fixture key `what`): within `max(bound, WIDEN * kappa)`,
    /// where `kappa` is PyTorch's own float32 error for that tensor.
    fn check(&mut self, what: &str, ours: &Tensor, torch: &Tensor) {
        let kappa = self.cond.of(what);
        let bound = self.cond.bound(what, self.bound);
        let e = rel_err(ours, torch);
        if std::env::var("PARITY_DEBUG").is_ok() && e > bound {
            println!("DBG {what} ours {e:.3e} torch32 {kappa:.3e}");
        }
        assert!(
            e <= bound,
            "{}: {what}: relative error {e:.3e} > {bound:.1e} (PyTorch's own f32 error there: {kappa:.1e})",
            self.name
        );
        self.count += 1;
        self.widened += usize::from(bound > self.bound);
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
            "{:<20} {:>4} tensors ({} with a widened bound), worst relative error {:.3e} ({})",
            self.name, self.count, self.widened, self.worst, self.worst_at
        );
        if self.zero_checked > 0 {
            println!(
                "{:<20} {:>4} gradients that are zero in exact arithmetic, checked for size",
                "", self.zero_checked
            );
        }
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

/// Gradients against PyTorch's. The bias of a down or up conv feeds a training-mode BatchNorm,
/// which subtracts the channel mean, so its gradient is exactly zero in exact arithmetic and
/// both implementations return rounding noise: a relative error means nothing there. Those are
/// held instead to `|grad| <= ZERO_GRAD * |gradient of the BatchNorm shift right after|` (the
/// scale the bias gradient would have without the BatchNorm).
fn check_grads(
    g: &mut Group,
    file: &TensorFile,
    prefix: &str,
    state: &VNetState,
    grads: &[Tensor],
) {
    let names: Vec<&str> = state.parameters().map(|(n, _)| n).collect();
    for (name, grad) in names.iter().zip(grads) {
        let key = format!("{prefix}{name}");
        if name.ends_with("conv.0.bias") && (name.contains("_dw.") || name.contains("_up.")) {
            let bn_bias = name.replace("conv.0.bias", "conv.1.bias");
            let scale = norm(&grads[names.iter().position(|n| *n == bn_bias).unwrap()]);
            let ratio = norm(grad) / scale;
            assert!(
                ratio <= ZERO_GRAD,
                "{key}: |grad| = {ratio:.2e} * |d {bn_bias}|, expected about 0"
            );
            g.zero_checked += 1;
        } else {
            g.check(&key, grad, &file.f32(&key).unwrap());
        }
    }
}

fn norm(t: &Tensor) -> f64 {
    t.data
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt()
}

fn labels(file: &TensorFile) -> LabelMap {
    read_labels(file, 4).unwrap()
}

/// Runs every comparison on fixture `name`; `strict`: no bound is widened by conditioning.
fn parity(name: &str, strict: bool) {
    let f = fixture(name);
    let teacher = state(&f, "teacher.");
    let student0 = state(&f, "student.");
    let image = f.f32("image").unwrap();
    let y = labels(&f);
    let cond = std::rc::Rc::new(if strict {
        Conditioning(None)
    } else {
        Conditioning::load(name)
    });
    let mut fwd = Group::new(&cond, "forward values", FORWARD_BOUND);
    let mut loss = Group::new(&cond, "losses", FORWARD_BOUND);
    let mut grad = Group::new(&cond, "gradients", GRAD_BOUND);
    let mut param = Group::new(&cond, "updated parameters", GRAD_BOUND);

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
    loss.scalar("step.loss.dice", d.loss, &f.f32("step.loss.dice").unwrap());
    grad.check(
        "lossgrad.dice",
        &dice::dice_backward(&d, &y, 1.0),
        &f.f32("lossgrad.dice").unwrap(),
    );
    let c = ce::ce_loss(&s_logits, &y);
    loss.scalar("step.loss.ce", c.loss, &f.f32("step.loss.ce").unwrap());
    grad.check(
        "lossgrad.ce",
        &ce::ce_backward(&c, &y, 1.0),
        &f.f32("lossgrad.ce").unwrap(),
    );
    let k = kd::kd_loss(&s_logits, &t_logits, 10.0);
    loss.scalar("step.loss.kd", k.loss, &f.f32("step.loss.kd").unwrap());
    grad.check(
        "lossgrad.kd",
        &kd::kd_backward(&k, 1.0),
        &f.f32("lossgrad.kd").unwrap(),
    );
    let p = proto::proto_loss(&s_features, &t_features, &y);
    loss.scalar(
        "step.loss.proto",
        p.loss,
        &f.f32("step.loss.proto").unwrap(),
    );
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
    for (n, v) in r.losses.named() {
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
    parity("A.safetensors", false);
}

#[test]
fn parity_anisotropic_batch_with_a_missing_class() {
    parity("B.safetensors", false);
}

#[test]
fn parity_well_conditioned_batch() {
    parity("C.safetensors", true);
}
