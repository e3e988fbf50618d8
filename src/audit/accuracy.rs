//! Accuracy against float64: the spec run twice on the same inputs, in `f32` (the product's
//! bits) and in `f64` (the yardstick, [`SpecOf<f64>`]: the same text, every operation rounded
//! to `f64`), and every operation's `f32` output measured against its `f64` output.
//!
//! What is measured, for every output `y32` and its `f64` counterpart `y64` (inputs and
//! weights are the same values: the `f32` ones, widened exactly):
//! * the norm-wise relative error `||y32 - y64||_2 / ||y64||_2` (sums in `f64`; an all-zero
//!   `y64` gives the absolute `||y32||_2`);
//! * the largest distance in `f32` ulps between `y32` and `y64` rounded to `f32` (the number of
//!   `f32` values between them, so `0` means `y32` is `y64` correctly rounded).
//!
//! Where the report comes from, in order: the operations the VNet and the step are written in
//! ([`Engine`]) are recorded as they run, by a [`Recorder`] around the spec; the two runs make
//! the same calls in the same order, so the `k`-th output of one is the `k`-th of the other.
//! An operation is named by the state entry it reads (`block_two.conv.3 conv`, `teacher
//! block_two.conv.4 batchnorm`) or, without one, by the last named operation before it
//! (`add after block_five_up.conv.1`). The step then adds its losses, the gradient of every
//! parameter and every updated parameter by their PyTorch names.
//!
//! Conditioning notes (computed where they apply, shown where non-zero), because a large error
//! is often the input's doing, not the arithmetic's:
//! * **BatchNorm**: channels whose batch variance (in `f64`) is below `eps = 1e-5`: the
//!   normalisation divides by `sqrt(var + eps)` and amplifies the rounding of the mean.
//! * **ReLU**: inputs within [`RELU_ULPS`] ulp of `1.0` of zero (`|y64| <= 4 * 2^-23`), and
//!   how many of them fall on the other side of zero in `f32` (a flipped ReLU passes or blocks
//!   a whole gradient).
//! * **Prototype loss**: voxels whose feature norm `|a|` (in `f64`) is below the cosine clamp
//!   `1e-5` (`1/|a|` is replaced by `1e5`), and below [`NEAR_CLAMP`] times it (where `1/|a|`
//!   is large and the cosine amplifies the rounding of `a`).
//! * **Bias of a down or up conv**: it feeds a training-mode BatchNorm, which subtracts the
//!   channel mean, so its gradient is exactly zero in exact arithmetic and both precisions
//!   return rounding noise: its relative error means nothing.
//!
//! The run keeps every intermediate output of both runs in memory: it is meant for patches
//! (the golden 32^3 ones, the parity fixtures, a user's crop), as the spec's speed is.

use crate::audit::replay::{self, read_batch, read_image, step_modalities, step_teacher};
use crate::audit::verify::{ordered, patches};
use crate::io::checkpoint;
use anyhow::{Context, Result};
use protokd_reference::adam::{AdamScalars, AdamState};
use protokd_reference::engine::{Engine, SpecOf};
use protokd_reference::error::EngineError;
use protokd_reference::layers::batchnorm3d::{BnCache, BN_EPS};
use protokd_reference::layers::conv3d::ConvGeom;
use protokd_reference::layers::softmax::softmax;
use protokd_reference::losses::COS_EPS;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{check_labels, train_step_on, StepConfig};
use protokd_reference::tensor::Shaped;
use protokd_reference::vnet::{forward_eval_on, forward_train_on};
use protokd_reference::{LabelMap, Real, Tensor};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// The note of a row whose exact value is zero, so that both precisions give rounding noise
/// there (the summaries leave such rows out and count them).
pub const NOISE: &str = "its gradient is exactly zero in exact arithmetic (the bias feeds a training-mode BatchNorm): both precisions give rounding noise, which Adam's first step scales to the learning rate";
/// ReLU inputs within this many ulp of `1.0` (`2^-23` each) of zero are counted.
pub const RELU_ULPS: u32 = 4;
/// Feature norms below this multiple of the cosine clamp are counted as near it.
pub const NEAR_CLAMP: f64 = 10.0;

/// One operation's output, `f32` against `f64`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was computed (see the module docs for the names).
    pub operation: String,
    /// Number of values.
    pub elements: usize,
    /// `||y32 - y64||_2 / ||y64||_2` (absolute `||y32||_2` when `y64` is all zero).
    pub rel_err: f64,
    /// Largest distance in `f32` ulps between `y32` and `y64` rounded to `f32`.
    pub max_ulp: u64,
    /// Conditioning notes that explain a large error (module docs); empty when none applies.
    pub notes: Vec<String>,
}

/// The accuracy of one computation (a forward or a step) on one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyTable {
    /// What ran, on what (for the report's heading).
    pub title: String,
    /// Every operation in the order it ran, then (for a step) the losses, gradients and
    /// updated parameters.
    pub rows: Vec<Row>,
}

/// What one recorded output is, for its conditioning notes.
#[derive(Clone, Debug)]
enum Aux {
    /// Nothing to note.
    None,
    /// The input of a ReLU (the BatchNorm output of a unit), with the batch variance of each
    /// channel when the BatchNorm ran in training mode.
    ReluInput(Option<Vec<f64>>),
    /// A loss gradient of the prototype loss, with the feature norm of every voxel of the
    /// student and of the teacher.
    Proto(Vec<f64>, Vec<f64>),
}

/// One recorded output.
struct Record<R: Real> {
    operation: String,
    value: Tensor<R>,
    aux: Aux,
}

/// The spec in `R`, recording every output of the operations the VNet and the steps call
/// (module docs). `names` maps the address of a state entry's values to its name.
struct Recorder<R: Real> {
    spec: SpecOf<R>,
    names: HashMap<usize, String>,
    last: RefCell<String>,
    records: RefCell<Vec<Record<R>>>,
}

impl<R: Real> Recorder<R> {
    /// A recorder that names operations by the entries of `states` (`(prefix, state)`; the
    /// prefix is put before the entry name, e.g. `"teacher "`).
    fn new(states: &[(&str, &VNetState<Tensor<R>>)]) -> Self {
        let mut names = HashMap::new();
        for (prefix, state) in states {
            for e in state.entries() {
                if let protokd_reference::state::Value::F32(t) = &e.value {
                    let layer = e.name.rsplit_once('.').map_or(&*e.name, |(l, _)| l);
                    names.insert(t.data.as_ptr() as usize, format!("{prefix}{layer}"));
                }
            }
        }
        Recorder {
            spec: SpecOf::new(),
            names,
            last: RefCell::new(String::new()),
            records: RefCell::new(Vec::new()),
        }
    }

    /// The name of the layer whose entry `w` is, if it is one; it becomes the context of the
    /// next unnamed operations.
    fn layer(&self, w: &Tensor<R>) -> Option<String> {
        let name = self.names.get(&(w.data.as_ptr() as usize)).cloned();
        if let Some(n) = &name {
            *self.last.borrow_mut() = n.clone();
        }
        name
    }

    /// Records `value` as `op` of the layer of `w` (or after the last named layer).
    fn put(&self, w: Option<&Tensor<R>>, op: &str, value: &Tensor<R>, aux: Aux) {
        let operation = match w.and_then(|w| self.layer(w)) {
            Some(layer) => format!("{layer} {op}"),
            None => format!("{op} after {}", self.last.borrow()),
        };
        self.records.borrow_mut().push(Record {
            operation,
            value: value.clone(),
            aux,
        });
    }

    /// Records `value` under its own name (a loss, a loss gradient, a step's result).
    fn put_named(&self, operation: String, value: Tensor<R>, aux: Aux) {
        self.records.borrow_mut().push(Record {
            operation,
            value,
            aux,
        });
    }

    /// A scalar output (a loss value).
    fn put_scalar(&self, op: &str, v: R) {
        self.put_named(op.to_string(), Tensor::from_vec(&[], vec![v]), Aux::None);
    }

    /// The recorded outputs, in order.
    fn into_records(self) -> Vec<Record<R>> {
        self.records.into_inner()
    }
}

/// The batch variance of each channel from a training BatchNorm's cache:
/// `1 / invstd^2 - eps` (meaningful in `f64`).
fn batch_variance<R: Real>(cache: &BnCache<R>) -> Vec<f64> {
    let eps = f64::decimal(BN_EPS);
    cache
        .invstd
        .iter()
        .map(|&s| 1.0 / (s.to_f64() * s.to_f64()) - eps)
        .collect()
}

/// The Euclidean norm of the feature column of every voxel of `[N, F, D, H, W]` features.
fn voxel_norms<R: Real>(f: &Tensor<R>) -> Vec<f64> {
    let [n, c, d, h, w] = f.dims5();
    let v = d * h * w;
    (0..n * v)
        .map(|i| {
            let (b, p) = (i / v, i % v);
            (0..c)
                .map(|ch| f.data[(b * c + ch) * v + p].to_f64().powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

impl<R: Real> Engine for Recorder<R> {
    type R = R;
    type T = Tensor<R>;
    type Labels = LabelMap;
    type BnCache = BnCache<R>;

    fn conv3d_forward(
        &self,
        x: &Tensor<R>,
        w: &Tensor<R>,
        bias: Option<&Tensor<R>>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        let y = self.spec.conv3d_forward(x, w, bias, g)?;
        self.put(Some(w), "conv", &y, Aux::None);
        Ok(y)
    }
    fn conv3d_backward_input(
        &self,
        dy: &Tensor<R>,
        w: &Tensor<R>,
        g: &ConvGeom,
        input_dims: [usize; 3],
    ) -> Result<Tensor<R>, EngineError> {
        let dx = self.spec.conv3d_backward_input(dy, w, g, input_dims)?;
        self.put(Some(w), "conv input gradient", &dx, Aux::None);
        Ok(dx)
    }
    fn conv3d_backward_weight(
        &self,
        x: &Tensor<R>,
        dy: &Tensor<R>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        // Reported by parameter name with the step's gradients.
        self.spec.conv3d_backward_weight(x, dy, g)
    }
    fn bias_backward(&self, dy: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        // Reported by parameter name with the step's gradients.
        self.spec.bias_backward(dy)
    }
    fn conv_transpose3d_forward(
        &self,
        x: &Tensor<R>,
        w: &Tensor<R>,
        bias: Option<&Tensor<R>>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        let y = self.spec.conv_transpose3d_forward(x, w, bias, g)?;
        self.put(Some(w), "conv transpose", &y, Aux::None);
        Ok(y)
    }
    fn conv_transpose3d_backward_input(
        &self,
        dy: &Tensor<R>,
        w: &Tensor<R>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        let dx = self.spec.conv_transpose3d_backward_input(dy, w, g)?;
        self.put(Some(w), "conv transpose input gradient", &dx, Aux::None);
        Ok(dx)
    }
    fn conv_transpose3d_backward_weight(
        &self,
        x: &Tensor<R>,
        dy: &Tensor<R>,
        g: &ConvGeom,
    ) -> Result<Tensor<R>, EngineError> {
        self.spec.conv_transpose3d_backward_weight(x, dy, g)
    }
    fn batchnorm3d_forward_train(
        &self,
        x: &Tensor<R>,
        weight: &Tensor<R>,
        bias: &Tensor<R>,
        running_mean: &mut Tensor<R>,
        running_var: &mut Tensor<R>,
        num_batches_tracked: &mut i64,
    ) -> Result<(Tensor<R>, BnCache<R>), EngineError> {
        let (y, cache) = self.spec.batchnorm3d_forward_train(
            x,
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
        )?;
        let aux = Aux::ReluInput(Some(batch_variance(&cache)));
        self.put(Some(weight), "batchnorm", &y, aux);
        Ok((y, cache))
    }
    fn batchnorm3d_forward_eval(
        &self,
        x: &Tensor<R>,
        weight: &Tensor<R>,
        bias: &Tensor<R>,
        running_mean: &Tensor<R>,
        running_var: &Tensor<R>,
    ) -> Result<Tensor<R>, EngineError> {
        let y = self
            .spec
            .batchnorm3d_forward_eval(x, weight, bias, running_mean, running_var)?;
        self.put(Some(weight), "batchnorm", &y, Aux::ReluInput(None));
        Ok(y)
    }
    fn batchnorm3d_backward(
        &self,
        dy: &Tensor<R>,
        weight: &Tensor<R>,
        cache: &BnCache<R>,
    ) -> Result<(Tensor<R>, Tensor<R>, Tensor<R>), EngineError> {
        let (dx, dw, db) = self.spec.batchnorm3d_backward(dy, weight, cache)?;
        self.put(Some(weight), "batchnorm input gradient", &dx, Aux::None);
        Ok((dx, dw, db))
    }
    fn relu_forward(&self, x: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        let y = self.spec.relu_forward(x)?;
        self.put(None, "relu", &y, Aux::None);
        Ok(y)
    }
    fn relu_backward(&self, dy: &Tensor<R>, y: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        let dx = self.spec.relu_backward(dy, y)?;
        self.put(None, "relu input gradient", &dx, Aux::None);
        Ok(dx)
    }
    fn add(&self, a: &Tensor<R>, b: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        let y = self.spec.add(a, b)?;
        self.put(None, "add", &y, Aux::None);
        Ok(y)
    }
    fn select_channels(&self, x: &Tensor<R>, channels: &[usize]) -> Result<Tensor<R>, EngineError> {
        self.spec.select_channels(x, channels)
    }
    fn softmax(&self, x: &Tensor<R>) -> Result<Tensor<R>, EngineError> {
        let y = self.spec.softmax(x)?;
        self.put(None, "softmax", &y, Aux::None);
        Ok(y)
    }
    fn ce(
        &self,
        logits: &Tensor<R>,
        labels: &LabelMap,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let (l, g) = self.spec.ce(logits, labels, scale)?;
        self.put_scalar("loss ce", l);
        self.put_named("ce gradient (logits)".into(), g.clone(), Aux::None);
        Ok((l, g))
    }
    fn dice(
        &self,
        logits: &Tensor<R>,
        labels: &LabelMap,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let (l, g) = self.spec.dice(logits, labels, scale)?;
        self.put_scalar("loss dice", l);
        self.put_named("dice gradient (logits)".into(), g.clone(), Aux::None);
        Ok((l, g))
    }
    fn kd(
        &self,
        student_logits: &Tensor<R>,
        teacher_logits: &Tensor<R>,
        temperature: R,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let (l, g) = self
            .spec
            .kd(student_logits, teacher_logits, temperature, scale)?;
        self.put_scalar("loss kd", l);
        self.put_named("kd gradient (logits)".into(), g.clone(), Aux::None);
        Ok((l, g))
    }
    fn proto(
        &self,
        student_features: &Tensor<R>,
        teacher_features: &Tensor<R>,
        labels: &LabelMap,
        scale: R,
    ) -> Result<(R, Tensor<R>), EngineError> {
        let (l, g) = self
            .spec
            .proto(student_features, teacher_features, labels, scale)?;
        self.put_scalar("loss proto", l);
        let aux = Aux::Proto(voxel_norms(student_features), voxel_norms(teacher_features));
        self.put_named("proto gradient (features)".into(), g.clone(), aux);
        Ok((l, g))
    }
    fn adam_update(
        &self,
        p: &mut Tensor<R>,
        grad: &Tensor<R>,
        m: &mut Tensor<R>,
        v: &mut Tensor<R>,
        s: &AdamScalars<R>,
    ) -> Result<(), EngineError> {
        // Reported by parameter name once the step is done.
        self.spec.adam_update(p, grad, m, v, s)
    }
    fn check_finite(&self, name: &str, x: &Tensor<R>) -> Result<(), EngineError> {
        self.spec.check_finite(name, x)
    }
}

/// `||y32 - y64||_2 / ||y64||_2` and the largest ulp distance (module docs).
pub fn measure(y32: &[f32], y64: &[f64]) -> (f64, u64) {
    assert_eq!(y32.len(), y64.len(), "measure: lengths differ");
    let (mut diff, mut norm, mut ulp) = (0.0f64, 0.0f64, 0u64);
    for (&a, &b) in y32.iter().zip(y64) {
        diff += (a as f64 - b).powi(2);
        norm += b * b;
        ulp = ulp.max(ordered(a).abs_diff(ordered(b as f32)));
    }
    let rel = if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    };
    (rel, ulp)
}

/// The conditioning notes of one output (module docs).
fn notes(aux: &Aux, y32: &[f32], y64: &[f64]) -> Vec<String> {
    let mut out = Vec::new();
    match aux {
        Aux::None => {}
        Aux::ReluInput(variances) => {
            if let Some(var) = variances {
                let eps = f64::decimal(BN_EPS);
                let low: Vec<String> = (0..var.len())
                    .filter(|&c| var[c] < eps)
                    .map(|c| c.to_string())
                    .collect();
                if !low.is_empty() {
                    out.push(format!(
                        "{} of {} channels with batch variance < eps = 1e-5 (channels {})",
                        low.len(),
                        var.len(),
                        low.join(", ")
                    ));
                }
            }
            let near = RELU_ULPS as f64 * f32::EPSILON as f64;
            let close = y64.iter().filter(|v| v.abs() <= near).count();
            let flipped = y32
                .iter()
                .zip(y64)
                .filter(|(&a, &b)| (a > 0.0) != (b > 0.0))
                .count();
            if close + flipped > 0 {
                out.push(format!(
                    "{close} ReLU inputs within {RELU_ULPS} ulp of 1.0 of zero; {flipped} on the other side of zero in f32"
                ));
            }
        }
        Aux::Proto(student, teacher) => {
            let clamp = f64::decimal(COS_EPS);
            for (who, norms) in [("student", student), ("teacher", teacher)] {
                let hit = norms.iter().filter(|&&n| n < clamp).count();
                let near = norms.iter().filter(|&&n| n < NEAR_CLAMP * clamp).count();
                if near > 0 {
                    out.push(format!(
                        "{who}: {hit} of {} voxels with feature norm below the cosine clamp 1e-5, {near} below {NEAR_CLAMP} x 1e-5",
                        norms.len()
                    ));
                }
            }
        }
    }
    out
}

/// One row from the two runs' outputs.
fn row(operation: &str, y32: &Tensor<f32>, y64: &Tensor<f64>, aux: &Aux) -> Row {
    assert_eq!(y32.shape, y64.shape, "{operation}: shapes differ");
    let (rel_err, max_ulp) = measure(&y32.data, &y64.data);
    Row {
        operation: operation.to_string(),
        elements: y32.numel(),
        rel_err,
        max_ulp,
        notes: notes(aux, &y32.data, &y64.data),
    }
}

/// The rows of two recordings of the same calls.
fn rows_of(r32: &[Record<f32>], r64: &[Record<f64>]) -> Vec<Row> {
    assert_eq!(r32.len(), r64.len(), "the two runs made different calls");
    r32.iter()
        .zip(r64)
        .map(|(a, b)| {
            assert_eq!(
                a.operation, b.operation,
                "the two runs made different calls"
            );
            row(&a.operation, &a.value, &b.value, &b.aux)
        })
        .collect()
}

/// A state's values in `f64`, exactly.
fn widen(state: &VNetState) -> VNetState<Tensor<f64>> {
    state
        .try_map(|_, t| Ok::<_, std::convert::Infallible>(t.convert()))
        .unwrap_or_else(|e| match e {})
}

/// The accuracy of one VNet forward (evaluation mode, or training mode with `train`) of
/// `state` on `image`: every unit's outputs, the logits and the softmax probabilities.
pub fn forward_accuracy(
    state: &VNetState,
    image: &Tensor,
    train: bool,
) -> Result<AccuracyTable, EngineError> {
    fn run<R: Real>(
        state: &mut VNetState<Tensor<R>>,
        image: &Tensor<R>,
        train: bool,
    ) -> Result<Vec<Record<R>>, EngineError> {
        let rec = Recorder::new(&[("", state)]);
        let out = match train {
            true => forward_train_on(&rec, state, image)?.0,
            false => forward_eval_on(&rec, state, image)?,
        };
        let p = softmax(&out.logits);
        rec.put_named("probabilities (softmax of the logits)".into(), p, Aux::None);
        Ok(rec.into_records())
    }
    let r32 = run(&mut state.clone(), image, train)?;
    let r64 = run(&mut widen(state), &image.convert(), train)?;
    let mode = if train { "training" } else { "evaluation" };
    Ok(AccuracyTable {
        title: format!(
            "forward ({mode} mode) of a VNet ({} channels, {} classes, n_filters {}) on {:?}",
            state.config.in_channels, state.config.n_classes, state.config.n_filters, image.shape
        ),
        rows: rows_of(&r32, &r64),
    })
}

/// The inputs of one training step, as `protokd audit step` takes them.
#[derive(Clone, Copy, Debug)]
pub struct StepInputs<'a> {
    /// The student before the step.
    pub student: &'a VNetState,
    /// The teacher (ProtoKD only).
    pub teacher: Option<&'a VNetState>,
    /// `[N, 4, D, H, W]`.
    pub image: &'a Tensor,
    /// `[N, D, H, W]`, checked against the student's classes by the caller.
    pub labels: &'a LabelMap,
    /// The student's channels of `image`.
    pub channels: &'a [usize],
    /// Loss weights, temperature and Adam (a fresh Adam state, as `audit step` uses).
    pub config: &'a StepConfig,
}

/// The accuracy of one training step (losses, gradients and the Adam update; fresh Adam
/// state): every operation of the teacher's and the student's forward, every loss and loss
/// gradient, every operation of the backward, then the losses, the gradient of every
/// parameter and every updated parameter by name.
pub fn step_accuracy(a: &StepInputs) -> Result<AccuracyTable, EngineError> {
    check_labels(a.labels, a.image, a.student.config.n_classes)?;
    fn run<R: Real>(
        mut student: VNetState<Tensor<R>>,
        teacher: Option<VNetState<Tensor<R>>>,
        image: &Tensor<R>,
        a: &StepInputs,
    ) -> Result<Vec<Record<R>>, EngineError> {
        let mut states = vec![("", &student)];
        states.extend(teacher.as_ref().map(|t| ("teacher ", t)));
        let rec = Recorder::new(&states);
        let mut adam = AdamState::new(student.parameters().map(|(_, t)| t.shape.as_slice()))
            .try_map(|t: &Tensor| Ok::<_, EngineError>(t.convert::<R>()))?;
        let report = train_step_on(
            &rec,
            &mut student,
            &mut adam,
            teacher.as_ref(),
            image,
            a.labels,
            a.channels,
            a.config,
        )?;
        let l = report.losses;
        for (name, v) in [("seg", l.seg), ("total", l.total)] {
            rec.put_scalar(&format!("loss {name}"), v);
        }
        let names: Vec<String> = student.parameters().map(|(n, _)| n.to_string()).collect();
        for (name, g) in names.iter().zip(report.grads) {
            rec.put_named(format!("gradient {name}"), g, Aux::None);
        }
        for (name, p) in student.parameters() {
            rec.put_named(format!("updated {name}"), p.clone(), Aux::None);
        }
        Ok(rec.into_records())
    }
    let r32 = run(a.student.clone(), a.teacher.cloned(), a.image, a)?;
    let r64 = run(
        widen(a.student),
        a.teacher.map(widen),
        &a.image.convert(),
        a,
    )?;
    let mut rows = rows_of(&r32, &r64);
    for r in rows.iter_mut() {
        if (r.operation.starts_with("gradient ") || r.operation.starts_with("updated "))
            && r.operation.ends_with("conv.0.bias")
            && (r.operation.contains("_dw.") || r.operation.contains("_up."))
        {
            r.notes.push(NOISE.into());
        }
    }
    let c = a.student.config;
    Ok(AccuracyTable {
        title: format!(
            "training step ({:?}) of a VNet student ({} channels, {} classes, n_filters {}) on {:?}",
            a.config.mode, c.in_channels, c.n_classes, c.n_filters, a.image.shape
        ),
        rows,
    })
}

/// [`forward_accuracy`] on the files of `protokd audit forward` (read and checked as it
/// reads them).
pub fn forward_of_files(weights: &Path, input: &Path, train: bool) -> Result<AccuracyTable> {
    let state = checkpoint::load(weights)?.state;
    let channels = state.config.in_channels;
    let why = format!(
        "the network in {} takes {channels} input channels",
        weights.display()
    );
    let x = read_image(input, channels, &why)?;
    let mut table = forward_accuracy(&state, &x, train)
        .with_context(|| format!("{} on {}", weights.display(), input.display()))?;
    table.title = format!(
        "{} of {}: {}",
        input.display(),
        weights.display(),
        table.title
    );
    Ok(table)
}

/// [`step_accuracy`] on the files and settings of `protokd audit step` (read and checked as it
/// reads them).
pub fn step_of_files(a: &replay::StepArgs) -> Result<AccuracyTable> {
    let student = checkpoint::load(a.student)?;
    let cfg = student.state.config;
    let modalities = step_modalities(a, &student)?;
    let teacher = step_teacher(a, cfg)?;
    let (image, labels) = read_batch(a, cfg)?;
    let mut table = step_accuracy(&StepInputs {
        student: &student.state,
        teacher: teacher.as_ref(),
        image: &image,
        labels: &labels,
        channels: modalities.channels(),
        config: &a.config,
    })
    .with_context(|| format!("{}", a.batch.display()))?;
    table.title = format!(
        "{} of {}: {}",
        a.batch.display(),
        a.student.display(),
        table.title
    );
    Ok(table)
}

/// The golden computation ([`crate::audit::golden::seeded_run`]'s) on every golden patch of
/// `golden`: the four-channel teacher (n_filters 4, seed 1) in evaluation mode and one ProtoKD
/// step of a T1ce student (n_filters 4, seed 2) against it, with the paper's settings; one
/// table per patch, with the patch's name.
pub fn golden_accuracy(golden: &Path) -> Result<Vec<(String, AccuracyTable)>> {
    let cfg = |in_channels| VNetConfig {
        in_channels,
        n_classes: 4,
        n_filters: 4,
    };
    let teacher = VNetState::init(cfg(4), 1);
    let student = VNetState::init(cfg(1), 2);
    patches(golden)?
        .iter()
        .map(|(id, image, labels)| {
            let mut t = step_accuracy(&StepInputs {
                student: &student,
                teacher: Some(&teacher),
                image,
                labels,
                channels: &[2],
                config: &StepConfig::default(),
            })
            .with_context(|| format!("golden patch {id}"))?;
            t.title = format!("golden patch {id}: {}", t.title);
            Ok((id.clone(), t))
        })
        .collect()
}

/// The groups of rows a summary shows, by how their operation is named.
/// Whether an operation name belongs to a group.
type Member = fn(&str) -> bool;

const GROUPS: [(&str, Member); 5] = [
    ("teacher forward", |op| op.starts_with("teacher ")),
    ("losses", |op| op.starts_with("loss ")),
    ("parameter gradients", |op| op.starts_with("gradient ")),
    ("updated parameters", |op| op.starts_with("updated ")),
    ("forward and backward of the student", |op| {
        !["teacher ", "loss ", "gradient ", "updated "]
            .iter()
            .any(|p| op.starts_with(p))
    }),
];

/// Median and largest of a list (`(NaN, NaN)` for an empty one).
fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

impl AccuracyTable {
    /// A summary per group of operations: count, median and largest relative error, largest
    /// ulp distance; rows of rounding noise ([`NOISE`]) are left out and counted.
    pub fn summary_markdown(&self) -> String {
        let mut s = String::from(
            "| operations | count | median rel. error | max rel. error | max ulp | noise rows left out |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for (name, member) in GROUPS {
            let all: Vec<&Row> = self.rows.iter().filter(|r| member(&r.operation)).collect();
            let rows: Vec<&Row> = all
                .iter()
                .copied()
                .filter(|r| !r.notes.iter().any(|n| n == NOISE))
                .collect();
            if all.is_empty() {
                continue;
            }
            let (med, max) = median_max(rows.iter().map(|r| r.rel_err).collect());
            let ulp = rows.iter().map(|r| r.max_ulp).max().unwrap_or(0);
            let noise = all.len() - rows.len();
            writeln!(
                s,
                "| {name} | {} | {med:.2e} | {max:.2e} | {ulp} | {noise} |",
                rows.len()
            )
            .expect("writing to a String");
        }
        s
    }

    /// The whole table in Markdown: the title, the summary, then one line per operation.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### Accuracy against float64: {}\n\n{}\n| # | operation | values | rel. error | max ulp | conditioning |\n|---:|---|---:|---:|---:|---|\n",
            self.title,
            self.summary_markdown()
        );
        for (i, r) in self.rows.iter().enumerate() {
            writeln!(
                s,
                "| {i} | {} | {} | {:.2e} | {} | {} |",
                r.operation,
                r.elements,
                r.rel_err,
                r.max_ulp,
                r.notes.join("; ")
            )
            .expect("writing to a String");
        }
        s
    }
}
