//! Training steps: ProtoKD, the unimodal baseline and teacher pretraining (method page,
//! sections 5 and 6). One call = one forward, one backward, one Adam step; no augmentation.
//!
//! Order of a step:
//! 1. The student's input is the selected channels of the four-channel batch (all four for
//!    teacher pretraining); the student runs in training mode (BatchNorm running statistics
//!    are updated here, before the optimiser step, as in PyTorch).
//! 2. ProtoKD only: the teacher runs in evaluation mode on all four channels; nothing of it is
//!    differentiated or changed.
//! 3. Losses on the student's logits: `ce`, `dice`; ProtoKD also `kd` (student vs teacher
//!    logits) and `proto` (student vs teacher features). `seg = ce + dice`;
//!    `total = fma(proto_weight, proto, fma(kd_weight, kd, seg))` (ProtoKD) or `seg`.
//! 4. Gradient w.r.t. the student's logits: `(d_ce + d_dice) + d_kd` element by element, where
//!    each loss's backward has its weight multiplied in (1, 1, `kd_weight`); gradient w.r.t. the
//!    features: the prototype loss's backward with scale `proto_weight`.
//! 5. [`vnet::backward_on`](crate::vnet::backward_on), then
//!    [`adam_step_on`] over every parameter.
//!
//! Written once for every [`Engine`]: the `_on` functions take the engine, the others run on
//! the CPU.
//!
//! In the baseline and teacher modes `kd` and `proto` are reported as 0 and not computed.

use crate::adam::{AdamConfig, AdamScalars, AdamState};
use crate::engine::{Engine, Spec};
use crate::error::EngineError;
use crate::real::Real;
use crate::state::VNetState;
use crate::tensor::Shaped;
use crate::vnet::{backward_on, check_input, check_state, forward_eval_on, forward_train_on};
use crate::{LabelMap, Tensor};

/// Which training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepMode {
    /// Student: `L_seg + kd_weight * L_kd + proto_weight * L_proto` against a frozen teacher.
    ProtoKd,
    /// Unimodal baseline: `L_seg` on the student alone.
    Baseline,
    /// Teacher pretraining: `L_seg` on all four channels.
    Teacher,
}

/// Loss weights, temperature and optimiser of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepConfig {
    /// Which step.
    pub mode: StepMode,
    /// Weight of `L_kd` (10).
    pub kd_weight: f32,
    /// Weight of `L_proto` (0.1).
    pub proto_weight: f32,
    /// KD temperature (10).
    pub temperature: f32,
    /// Adam's hyperparameters.
    pub adam: AdamConfig,
}

impl Default for StepConfig {
    /// The paper's ProtoKD step.
    fn default() -> Self {
        StepConfig {
            mode: StepMode::ProtoKd,
            kd_weight: 10.0,
            proto_weight: 0.1,
            temperature: 10.0,
            adam: AdamConfig::default(),
        }
    }
}

/// The loss values of a step (before the update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses<R: Real = f32> {
    /// The weighted total that was differentiated.
    pub total: R,
    /// `ce + dice`.
    pub seg: R,
    /// Dice loss.
    pub dice: R,
    /// Class-weighted cross-entropy.
    pub ce: R,
    /// Pixel-wise KD (0 outside ProtoKD).
    pub kd: R,
    /// Prototype loss (0 outside ProtoKD).
    pub proto: R,
}

impl<R: Real> Losses<R> {
    /// The six values by name (`total`, `seg`, `dice`, `ce`, `kd`, `proto`), in the order the
    /// records of a step list them.
    pub fn named(&self) -> [(&'static str, R); 6] {
        [
            ("total", self.total),
            ("seg", self.seg),
            ("dice", self.dice),
            ("ce", self.ce),
            ("kd", self.kd),
            ("proto", self.proto),
        ]
    }
}

/// What a step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport<T = Tensor, R: Real = f32> {
    /// Loss values.
    pub losses: Losses<R>,
    /// Gradient of `total` w.r.t. every student parameter, in `parameters()` order (before the
    /// update).
    pub grads: Vec<T>,
}

/// Checks that labels fit a batch `[N, _, D, H, W]` and lie in `0 .. n_classes`.
pub fn check_labels(
    labels: &LabelMap,
    image: &Tensor,
    n_classes: usize,
) -> Result<(), EngineError> {
    let s = &image.shape;
    if s.len() != 5 || labels.dims != [s[0], s[2], s[3], s[4]] {
        return Err(EngineError::Shape {
            name: "label".into(),
            got: labels.dims.to_vec(),
            expected: format!(
                "[N, D, H, W] of the image, {:?}",
                s.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 1)
                    .map(|(_, d)| *d)
                    .collect::<Vec<_>>()
            ),
        });
    }
    match labels.data.iter().position(|&l| l as usize >= n_classes) {
        Some(index) => Err(EngineError::Label {
            name: "label".into(),
            index,
            value: labels.data[index] as f64,
            max: n_classes - 1,
        }),
        None => Ok(()),
    }
}

/// Steps 1-4 and the backward of step 5 on any engine: the losses and the gradient of `total`
/// w.r.t. every student parameter, without the optimiser update (the BatchNorm running
/// statistics of the student are updated, as by any training-mode forward). Arguments as
/// [`train_step`]; the labels must have been checked ([`check_labels`]) by the caller, which
/// holds them on the host.
pub fn losses_and_gradients_on<E: Engine + ?Sized>(
    e: &E,
    student: &mut VNetState<E::T>,
    teacher: Option<&VNetState<E::T>>,
    image: &E::T,
    labels: &E::Labels,
    channels: &[usize],
    cfg: &StepConfig,
) -> Result<StepReport<E::T, E::R>, EngineError> {
    check_input(
        e,
        &crate::state::VNetConfig {
            in_channels: 4,
            ..student.config
        },
        "image",
        image,
    )?;
    check_state(e, student)?;
    let x = match cfg.mode {
        StepMode::Teacher => image.clone(),
        _ => e.select_channels(image, channels)?,
    };
    let teacher_out = match cfg.mode {
        StepMode::ProtoKd => {
            let t = teacher.expect("ProtoKD step needs a teacher");
            check_state(e, t)?;
            Some(forward_eval_on(e, t, image)?)
        }
        _ => None,
    };
    let (out, cache) = forward_train_on(e, student, &x)?;

    // The configuration's weights in the engine's type: the f32 values themselves, or in
    // f64 the decimals they were given as (0.1, not 0.1f32 widened; [`Real::decimal`]).
    let [kd_weight, proto_weight, temperature] =
        [cfg.kd_weight, cfg.proto_weight, cfg.temperature].map(E::R::decimal);
    let (ce, d_ce) = e.ce(&out.logits, labels, E::R::ONE)?;
    let (dice, d_dice) = e.dice(&out.logits, labels, E::R::ONE)?;
    let mut losses = Losses {
        ce,
        dice,
        ..Default::default()
    };
    losses.seg = losses.ce + losses.dice;
    let mut d_logits = e.add(&d_ce, &d_dice)?;
    let mut d_features = None;
    if let Some(t) = &teacher_out {
        let (kd, d_kd) = e.kd(&out.logits, &t.logits, temperature, kd_weight)?;
        let (proto, d_proto) = e.proto(&out.features, &t.features, labels, proto_weight)?;
        losses.kd = kd;
        losses.proto = proto;
        losses.total = proto_weight.mul_add(losses.proto, kd_weight.mul_add(losses.kd, losses.seg));
        d_logits = e.add(&d_logits, &d_kd)?;
        d_features = Some(d_proto);
    } else {
        losses.total = losses.seg;
    }
    let grads = backward_on(e, student, &cache, &d_logits, d_features.as_ref())?;
    Ok(StepReport { losses, grads })
}

/// [`losses_and_gradients_on`] on the CPU, with the label check.
pub fn losses_and_gradients(
    student: &mut VNetState,
    teacher: Option<&VNetState>,
    image: &Tensor,
    labels: &LabelMap,
    channels: &[usize],
    cfg: &StepConfig,
) -> Result<StepReport, EngineError> {
    check_labels(labels, image, student.config.n_classes)?;
    losses_and_gradients_on(&Spec, student, teacher, image, labels, channels, cfg)
}

/// One training step on any engine: [`losses_and_gradients_on`], then [`adam_step_on`] over
/// every parameter. Returns the losses and gradients before the update.
#[allow(clippy::too_many_arguments)]
pub fn train_step_on<E: Engine + ?Sized>(
    e: &E,
    student: &mut VNetState<E::T>,
    adam: &mut AdamState<E::T>,
    teacher: Option<&VNetState<E::T>>,
    image: &E::T,
    labels: &E::Labels,
    channels: &[usize],
    cfg: &StepConfig,
) -> Result<StepReport<E::T, E::R>, EngineError> {
    let report = losses_and_gradients_on(e, student, teacher, image, labels, channels, cfg)?;
    adam_step_on(e, student.parameters_mut(), &report.grads, adam, &cfg.adam)?;
    Ok(report)
}

/// One training step on `student` (and `adam`), see the module docs. `image` is the
/// four-channel batch `[N, 4, D, H, W]` (T1, T2, T1ce, FLAIR); `channels` the student's
/// channels (ignored in teacher mode, where the student takes all four). `teacher` is required
/// in ProtoKD mode and ignored otherwise. Returns the losses and gradients before the update.
pub fn train_step(
    student: &mut VNetState,
    adam: &mut AdamState,
    teacher: Option<&VNetState>,
    image: &Tensor,
    labels: &LabelMap,
    channels: &[usize],
    cfg: &StepConfig,
) -> Result<StepReport, EngineError> {
    check_labels(labels, image, student.config.n_classes)?;
    train_step_on(&Spec, student, adam, teacher, image, labels, channels, cfg)
}

/// One Adam step over `params` with gradients `grads` (same order and shapes as the state), on
/// any engine: the step count, then [`AdamScalars::for_step`], then every parameter's update in
/// parameter order.
pub fn adam_step_on<'a, E: Engine + ?Sized>(
    engine: &E,
    params: impl IntoIterator<Item = &'a mut E::T>,
    grads: &[E::T],
    state: &mut AdamState<E::T>,
    cfg: &AdamConfig,
) -> Result<(), EngineError>
where
    E::T: 'a,
{
    state.step += 1;
    let s = AdamScalars::for_step(cfg, state.step);
    let mut count = 0;
    for (((p, g), m), v) in params
        .into_iter()
        .zip(grads)
        .zip(&mut state.exp_avg)
        .zip(&mut state.exp_avg_sq)
    {
        assert_eq!(p.shape(), g.shape(), "adam_step: gradient shape");
        count += 1;
        engine.adam_update(p, g, m, v, &s)?;
    }
    assert_eq!(count, grads.len(), "adam_step: parameter count");
    Ok(())
}

/// [`adam_step_on`] on the spec.
pub fn adam_step<'a>(
    params: impl IntoIterator<Item = &'a mut Tensor>,
    grads: &[Tensor],
    state: &mut AdamState,
    cfg: &AdamConfig,
) {
    adam_step_on(&Spec, params, grads, state, cfg).expect("the spec does not fail here");
}

// Verifies (every test in this file): R-MTH-8, R-MTH-9
#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VNetConfig;
    use crate::testutil::{fd_check_along, random_tensor};

    /// A 2 x 4 x S^3 batch (S = 64) whose labels are nested boxes, so every class is in both samples.
    fn batch() -> (Tensor, LabelMap) {
        const S: usize = 32;
        let image = random_tensor(&[2, 4, S, S, S], 5);
        let mut data = Vec::with_capacity(2 * S * S * S);
        for n in 0..2 {
            for z in 0..S {
                for y in 0..S {
                    for x in 0..S {
                        let r = [z, y, x]
                            .iter()
                            .map(|&c| (c as i64 - 15 - n as i64).unsigned_abs())
                            .max()
                            .unwrap();
                        data.push(match r {
                            0..=2 => 1,
                            3..=5 => 2,
                            6..=9 => 3,
                            _ => 0,
                        });
                    }
                }
            }
        }
        (image, LabelMap::new([2, S, S, S], data))
    }

    /// Every BatchNorm shift set to 1.5, so that most ReLUs are active and no feature vector is
    /// near zero: the loss is then smooth enough at the scale of a finite difference in f32.
    /// (At PyTorch's default initialisation, ReLU kinks and the prototype loss's `1 / |a|` for
    /// feature vectors of small norm make f32 central differences meaningless; PyTorch's own
    /// f32 and f64 gradients disagree by tens of percent there.)
    fn smooth(mut s: VNetState) -> VNetState {
        let names: Vec<String> = s
            .entries()
            .iter()
            .filter(|e| e.role == crate::state::Role::BnBias)
            .map(|e| e.name.clone())
            .collect();
        for n in names {
            s.tensor_mut(&n).data.iter_mut().for_each(|b| *b = 1.5);
        }
        s
    }

    /// Finite-difference check of the whole step's gradient, one parameter tensor at a time (so
    /// a wrong gradient in a small tensor cannot hide behind a large one), along the analytic
    /// gradient itself scaled to a largest entry of 1 (the direction with the most signal: a
    /// random direction's derivative is often below the f32 loss's resolution). `L` is the
    /// step's `total` (f32); the central difference uses the perturbation actually applied.
    /// The step `h` is chosen so that the loss changes by about 1e-4 (hundreds of f32 ulps), at
    /// most 1e-2 per parameter. Bound: relative error 3e-2 (measured: at most 6.1e-3, and
    /// 2.5e-2 for `block_four.conv.7.bias`, whose gradient is so small that even h = 1e-2
    /// changes the loss by only 2e-6, about 16 ulps).
    fn check_mode(mode: StepMode, names: &[&str]) {
        let cin = if mode == StepMode::Teacher { 4 } else { 1 };
        let student = smooth(VNetState::init(
            VNetConfig {
                in_channels: cin,
                n_classes: 4,
                n_filters: 4,
            },
            3,
        ));
        let teacher = smooth(VNetState::init(
            VNetConfig {
                in_channels: 4,
                n_classes: 4,
                n_filters: 4,
            },
            4,
        ));
        let (image, labels) = batch();
        let cfg = StepConfig {
            mode,
            ..StepConfig::default()
        };
        let run = |s: &VNetState| {
            let mut s = s.clone();
            losses_and_gradients(&mut s, Some(&teacher), &image, &labels, &[2], &cfg).unwrap()
        };
        let report = run(&student);
        let index: Vec<&str> = student.parameters().map(|(n, _)| n).collect();
        for name in names {
            let i = index.iter().position(|n| n == name).unwrap();
            let x = student.tensor(name).data.clone();
            let g = &report.grads[i].data;
            let gmax = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(gmax > 0.0, "{name}: zero gradient");
            let u: Vec<f32> = g.iter().map(|v| v / gmax).collect();
            // The step that changes the loss by about 1e-4 (hundreds of f32 ulps of a loss
            // near 2), at most 1e-2 per parameter.
            let slope: f64 = g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / gmax as f64;
            let h = (1e-4 / (2.0 * slope)).min(1e-2) as f32;
            let check = fd_check_along(&x, g, &u, h, |p| {
                let mut s = student.clone();
                s.tensor_mut(name).data.copy_from_slice(p);
                run(&s).losses.total as f64
            });
            check.assert_within(3e-2, &format!("{mode:?} step, d total / d {name}"));
        }
    }

    #[test]
    fn protokd_step_gradient_matches_finite_differences() {
        check_mode(
            StepMode::ProtoKd,
            &[
                "block_one.conv.0.weight",
                "block_one.conv.1.weight",
                "block_two_dw.conv.0.weight",
                "block_three.conv.3.weight",
                "block_four.conv.6.weight",
                "block_four.conv.7.bias",
                "block_five.conv.6.weight",
                "block_five_up.conv.0.weight",
                "block_seven_up.conv.1.bias",
                "block_eight.conv.3.weight",
                "block_nine.conv.0.weight",
                "block_nine.conv.1.weight",
                "out_conv.weight",
                "out_conv.bias",
            ],
        );
    }

    #[test]
    fn baseline_and_teacher_step_gradients_match_finite_differences() {
        check_mode(
            StepMode::Baseline,
            &[
                "block_one.conv.0.weight",
                "block_six.conv.0.weight",
                "block_nine.conv.0.weight",
                "out_conv.weight",
            ],
        );
        check_mode(
            StepMode::Teacher,
            &[
                "block_one.conv.0.weight",
                "block_eight_up.conv.0.weight",
                "out_conv.bias",
            ],
        );
    }

    /// The prototype term really reaches the parameters: with `proto_weight` 0 the gradient of
    /// an early layer changes.
    #[test]
    fn proto_and_kd_terms_contribute() {
        let student = VNetState::init(
            VNetConfig {
                in_channels: 1,
                n_classes: 4,
                n_filters: 2,
            },
            3,
        );
        let teacher = VNetState::init(
            VNetConfig {
                in_channels: 4,
                n_classes: 4,
                n_filters: 2,
            },
            4,
        );
        let (image, labels) = batch();
        let grads = |cfg: StepConfig| {
            let mut s = student.clone();
            losses_and_gradients(&mut s, Some(&teacher), &image, &labels, &[2], &cfg).unwrap()
        };
        let full = grads(StepConfig::default());
        let no_proto = grads(StepConfig {
            proto_weight: 0.0,
            ..StepConfig::default()
        });
        let no_kd = grads(StepConfig {
            kd_weight: 0.0,
            ..StepConfig::default()
        });
        assert!(full.losses.proto > 0.0 && full.losses.kd > 0.0);
        assert_ne!(full.grads[0], no_proto.grads[0]);
        assert_ne!(full.grads[0], no_kd.grads[0]);
        assert_eq!(full.losses.seg, full.losses.ce + full.losses.dice);
    }
}
