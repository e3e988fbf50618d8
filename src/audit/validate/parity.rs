//! OQ-5: the PyTorch parity fixtures (`tests/fixtures/parity/{A,B,C}.safetensors`, written by
//! `tools/parity/make_fixtures.py` from the authors' model code in PyTorch float32) held to their
//! bounds on this machine, with the bounds of `tests/engine/pytorch_parity.rs`.
//!
//! Per fixture, on the fast CPU engine (the spec's bits): the teacher's evaluation-mode forward
//! (features, logits), then one ProtoKD step of the student (T1ce) against it: the six losses,
//! every gradient and every updated parameter. Each tensor's error is norm-wise,
//! `|ours - torch| / |torch|` (`|ours - torch|` where `torch` is all zero), and must be at most
//! its bound:
//!
//! * [`FORWARD_BOUND`] for forward values and losses, [`GRAD_BOUND`] for gradients and
//!   parameters;
//! * for A and B (not C, held strictly), `max(bound, WIDEN x kappa)` where `kappa` is PyTorch's
//!   own float32 error for that tensor against its float64 run (`X.conditioning.json`), and for
//!   a parameter at least the `kappa` of the gradient that moved it;
//! * the bias of a down or up convolution feeds a training-mode BatchNorm, so its gradient is
//!   zero in exact arithmetic: it is held to `|grad| <= ZERO_GRAD x |gradient of the BatchNorm
//!   shift after it|` instead.
//!
//! The test suite runs more of each fixture (training-mode forward, three steps, the baseline
//! and teacher steps); validate runs the part that covers every operation once, to stay fast.

use super::Finding;
use crate::audit::replay::read_labels;
use crate::io::checkpoint::read_state;
use crate::io::tensorfile::TensorFile;
use anyhow::{Context, Result};
use protokd_cpu::Cpu;
use protokd_reference::adam::AdamState;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{train_step_on, StepConfig};
use protokd_reference::vnet::forward_eval_on;
use protokd_reference::Tensor;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// Bound for forward values and losses.
pub const FORWARD_BOUND: f64 = 1e-4;
/// Bound for gradients and updated parameters.
pub const GRAD_BOUND: f64 = 1e-3;
/// Where PyTorch's own float32 error exceeds the bound, the bound is this multiple of it.
pub const WIDEN: f64 = 8.0;
/// Bound for gradients that are zero in exact arithmetic, relative to their natural scale.
pub const ZERO_GRAD: f64 = 1e-4;
/// The fixtures, and whether each is held strictly (no widened bound).
const FIXTURES: [(&str, bool); 3] = [("A", false), ("B", false), ("C", true)];
/// The student's channel: T1ce.
const T1CE: usize = 2;

/// Norm-wise relative error of `a` against `b` (absolute where `b` is zero), in f64.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
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

fn norm(t: &Tensor) -> f64 {
    t.data
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The comparisons of one fixture: the bounds and the worst error so far.
struct Tally<'a> {
    file: &'a TensorFile,
    kappa: Option<HashMap<String, f64>>,
    compared: usize,
    worst: (f64, String),
    failures: Vec<String>,
}

impl Tally<'_> {
    /// The bound of tensor `key` given the `base` bound (see the module docs).
    fn bound(&self, key: &str, base: f64) -> f64 {
        let Some(k) = &self.kappa else {
            return base;
        };
        let own = base.max(WIDEN * k.get(key).copied().unwrap_or(0.0));
        match key.strip_prefix("step1.param.") {
            Some(name) => own.max(k.get(&format!("step.grad.{name}")).copied().unwrap_or(0.0)),
            None => own,
        }
    }

    /// `ours` against the fixture's tensor `key` within its bound.
    fn check(&mut self, key: &str, ours: &Tensor, base: f64) -> Result<()> {
        let torch = self.file.f32(key)?;
        let bound = self.bound(key, base);
        if ours.shape != torch.shape {
            self.failures.push(format!(
                "{key}: shape {:?}, PyTorch's {:?}",
                ours.shape, torch.shape
            ));
            return Ok(());
        }
        let e = rel_err(ours, &torch);
        self.compared += 1;
        if e.is_nan() || e > bound {
            self.failures
                .push(format!("{key}: relative error {e:.3e} > {bound:.1e}"));
        }
        if e >= self.worst.0 {
            self.worst = (e, key.to_string());
        }
        Ok(())
    }
}

fn config(file: &TensorFile, prefix: &str) -> Result<VNetConfig> {
    let w = file.shape(&format!("{prefix}block_one.conv.0.weight"))?;
    let o = file.shape(&format!("{prefix}out_conv.weight"))?;
    Ok(VNetConfig {
        in_channels: w[1],
        n_filters: w[0],
        n_classes: o[0],
    })
}

fn state(file: &TensorFile, prefix: &str) -> Result<VNetState> {
    read_state(file, prefix, config(file, prefix)?)
}

/// Runs fixture `path`'s forward and step (see the module docs).
fn one(path: &Path, strict: bool) -> Result<Finding> {
    let file = TensorFile::open(path)?;
    let kappa = if strict {
        None
    } else {
        let c = path.with_extension("conditioning.json");
        let text =
            std::fs::read_to_string(&c).with_context(|| format!("cannot read {}", c.display()))?;
        Some(serde_json::from_str(&text).with_context(|| format!("{} is not JSON", c.display()))?)
    };
    let mut t = Tally {
        file: &file,
        kappa,
        compared: 0,
        worst: (0.0, String::new()),
        failures: Vec::new(),
    };
    let cpu = Cpu::new();
    let teacher = state(&file, "teacher.")?;
    let student0 = state(&file, "student.")?;
    let image = file.f32("image")?;
    let labels = read_labels(&file, 4)?;
    let y = forward_eval_on(&cpu, &teacher, &image)?;
    t.check("eval.teacher.features", &y.features, FORWARD_BOUND)?;
    t.check("eval.teacher.logits", &y.logits, FORWARD_BOUND)?;

    let mut student = student0.clone();
    let mut adam = AdamState::for_state(&student);
    let cfg = StepConfig::default();
    let r = train_step_on(
        &cpu,
        &mut student,
        &mut adam,
        Some(&teacher),
        &image,
        &labels,
        &[T1CE],
        &cfg,
    )?;
    for (name, v) in r.losses.named() {
        t.check(
            &format!("step.loss.{name}"),
            &Tensor::from_vec(&[], vec![v]),
            FORWARD_BOUND,
        )?;
    }
    let names: Vec<&str> = student0.parameters().map(|(n, _)| n).collect();
    for (name, grad) in names.iter().zip(&r.grads) {
        let key = format!("step.grad.{name}");
        if name.ends_with("conv.0.bias") && (name.contains("_dw.") || name.contains("_up.")) {
            let shift = name.replace("conv.0.bias", "conv.1.bias");
            let at = names.iter().position(|n| *n == shift);
            let ratio = norm(grad) / at.map_or(f64::NAN, |i| norm(&r.grads[i]));
            if ratio.is_nan() || ratio > ZERO_GRAD {
                t.failures.push(format!(
                    "{key}: |grad| = {ratio:.2e} x |d {shift}|, expected about 0"
                ));
            }
        } else {
            t.check(&key, grad, GRAD_BOUND)?;
        }
    }
    for (name, p) in student.parameters() {
        t.check(&format!("step1.param.{name}"), p, GRAD_BOUND)?;
    }
    let rel = format!(
        "tests/fixtures/parity/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let detail = if t.failures.is_empty() {
        format!(
            "{} tensors within their bounds; worst relative error {:.2e} ({})",
            t.compared, t.worst.0, t.worst.1
        )
    } else {
        format!("{rel}: {}", t.failures.join("; "))
    };
    Ok(Finding::new(
        t.failures.is_empty(),
        detail,
        json!({
            "fixture": rel,
            "sha256": file.sha256(),
            "strict": strict,
            "compared": t.compared,
            "worst_relative_error": t.worst.0,
            "worst_at": t.worst.1,
            "failures": t.failures,
        }),
    ))
}

/// OQ-5: every fixture; one finding per fixture (a fixture that cannot be read fails, naming
/// the file).
pub fn fixtures(tree: &Path) -> Result<Vec<(String, Finding)>> {
    Ok(FIXTURES
        .iter()
        .map(|&(name, strict)| {
            let path = tree.join(format!("tests/fixtures/parity/{name}.safetensors"));
            let finding = one(&path, strict).unwrap_or_else(|e| {
                Finding::new(false, format!("{}: {e:#}", path.display()), json!(null))
            });
            (name.to_string(), finding)
        })
        .collect())
}
