//! A network, or a training state, on whichever engine `--engine` opened ([`Compute`]).
//!
//! The arithmetic is the reference's generic VNet and training step
//! (`protokd_reference::{vnet, step}`) run on a host engine (the spec or the fast CPU engine,
//! [`HostEngine`]) or on protokd-gpu's engine; what differs is only where the tensors live. On a GPU the state stays on the device between
//! steps; host-device copies are each batch's image and labels, the loss values, and the state
//! when it is saved or validated.

use crate::engine::{Compute, HostEngine, Side};
use anyhow::Result;
use protokd_gpu::transfer::{download_adam, download_state, upload_adam, upload_state};
use protokd_gpu::{Gpu, GpuLabels, GpuTensor};
use protokd_reference::adam::AdamState;
use protokd_reference::engine::Engine;
use protokd_reference::error::EngineError;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::step::{check_labels, train_step_on, Losses, StepConfig, StepReport};
use protokd_reference::vnet::{forward_eval_on, forward_train_on, VNetOutput};
use protokd_reference::{LabelMap, Tensor};
use std::borrow::Cow;

/// A network ready for evaluation-mode forwards on a device.
pub enum Net<'a> {
    /// The host state, on a host engine.
    Host(&'a dyn HostEngine, &'a VNetState),
    /// A state on a GPU (uploaded, or borrowed from a [`Trainer`]).
    Gpu(&'a Gpu, Cow<'a, VNetState<GpuTensor>>),
}

impl<'a> Net<'a> {
    /// `state` on `compute` (uploaded once for a GPU).
    pub fn new(compute: &'a Compute, state: &'a VNetState) -> Result<Net<'a>> {
        Ok(match compute.side() {
            Side::Gpu(g) => Net::Gpu(g, Cow::Owned(upload_state(&g.dev, state)?)),
            Side::Host(e) => Net::Host(e, state),
        })
    }

    /// What the network is built for.
    pub fn config(&self) -> VNetConfig {
        match self {
            Net::Host(_, s) => s.config,
            Net::Gpu(_, s) => s.config,
        }
    }

    /// `softmax(forward_eval(x).logits)` over the classes, on the host (only the probabilities
    /// cross from a GPU).
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        match self {
            Net::Host(e, s) => e.softmax(&forward_eval_on(*e, s, x)?.logits),
            Net::Gpu(g, s) => {
                let out = forward_eval_on(*g, s, &GpuTensor::upload(&g.dev, x)?)?;
                Ok(g.softmax(&out.logits)?.download(&g.dev)?)
            }
        }
    }
}

/// A student (with its Adam state and, for ProtoKD, its teacher) being trained on a device.
pub enum Trainer<'a> {
    /// On a host engine.
    Host {
        /// The engine.
        engine: &'a dyn HostEngine,
        /// The student.
        state: VNetState,
        /// Its optimiser state.
        adam: AdamState,
        /// The frozen teacher (ProtoKD).
        teacher: Option<VNetState>,
    },
    /// On a GPU.
    Gpu {
        /// The engine.
        gpu: Gpu,
        /// The student.
        state: VNetState<GpuTensor>,
        /// Its optimiser state.
        adam: AdamState<GpuTensor>,
        /// The frozen teacher (ProtoKD).
        teacher: Option<VNetState<GpuTensor>>,
    },
}

impl<'a> Trainer<'a> {
    /// A trainer on `compute` (the states are uploaded once for a GPU).
    pub fn new(
        compute: &'a Compute,
        state: VNetState,
        adam: AdamState,
        teacher: Option<&VNetState>,
    ) -> Result<Trainer<'a>> {
        Ok(match compute.side() {
            Side::Gpu(g) => Trainer::Gpu {
                state: upload_state(&g.dev, &state)?,
                adam: upload_adam(&g.dev, &adam)?,
                teacher: teacher.map(|t| upload_state(&g.dev, t)).transpose()?,
                gpu: g.clone(),
            },
            Side::Host(engine) => Trainer::Host {
                engine,
                state,
                adam,
                teacher: teacher.cloned(),
            },
        })
    }

    /// One training step ([`protokd_reference::step::train_step`]); returns the losses.
    pub fn step(
        &mut self,
        image: &Tensor,
        labels: &LabelMap,
        channels: &[usize],
        cfg: &StepConfig,
    ) -> Result<Losses, EngineError> {
        self.run(image, labels, channels, cfg, false)
            .map(|r| r.losses)
    }

    /// [`Trainer::step`], also returning the gradients (before the update) on the host.
    pub fn step_report(
        &mut self,
        image: &Tensor,
        labels: &LabelMap,
        channels: &[usize],
        cfg: &StepConfig,
    ) -> Result<StepReport, EngineError> {
        self.run(image, labels, channels, cfg, true)
    }

    /// One step; the gradients are downloaded from a GPU only when `grads` (the training loop
    /// does not read them).
    fn run(
        &mut self,
        image: &Tensor,
        labels: &LabelMap,
        channels: &[usize],
        cfg: &StepConfig,
        grads: bool,
    ) -> Result<StepReport, EngineError> {
        match self {
            Trainer::Host {
                engine,
                state,
                adam,
                teacher,
            } => {
                check_labels(labels, image, state.config.n_classes)?;
                let t = teacher.as_ref();
                train_step_on(*engine, state, adam, t, image, labels, channels, cfg)
            }
            Trainer::Gpu {
                gpu,
                state,
                adam,
                teacher,
            } => {
                check_labels(labels, image, state.config.n_classes)?;
                let x = GpuTensor::upload(&gpu.dev, image)?;
                let y = GpuLabels::upload(&gpu.dev, labels)?;
                let t = teacher.as_ref();
                let r = train_step_on(&*gpu, state, adam, t, &x, &y, channels, cfg)?;
                Ok(StepReport {
                    losses: r.losses,
                    grads: match grads {
                        false => Vec::new(),
                        true => r
                            .grads
                            .iter()
                            .map(|g| g.download(&gpu.dev))
                            .collect::<Result<_, _>>()?,
                    },
                })
            }
        }
    }

    /// The student's state on the host (borrowed on the CPU, downloaded from a GPU).
    pub fn state(&self) -> Result<Cow<'_, VNetState>> {
        Ok(match self {
            Trainer::Host { state, .. } => Cow::Borrowed(state),
            Trainer::Gpu { gpu, state, .. } => Cow::Owned(download_state(&gpu.dev, state)?),
        })
    }

    /// The optimiser state on the host (borrowed on the CPU, downloaded from a GPU).
    pub fn adam(&self) -> Result<Cow<'_, AdamState>> {
        Ok(match self {
            Trainer::Host { adam, .. } => Cow::Borrowed(adam),
            Trainer::Gpu { gpu, adam, .. } => Cow::Owned(download_adam(&gpu.dev, adam)?),
        })
    }

    /// The student as a network for validation (no copy).
    pub fn net(&self) -> Net<'_> {
        match self {
            Trainer::Host { engine, state, .. } => Net::Host(*engine, state),
            Trainer::Gpu { gpu, state, .. } => Net::Gpu(gpu, Cow::Borrowed(state)),
        }
    }
}

/// One forward of `state` on `x` on `compute` (training mode when `train`: BatchNorm with the
/// batch statistics, and `state`'s running statistics updated), outputs on the host.
pub fn forward(
    compute: &Compute,
    state: &mut VNetState,
    x: &Tensor,
    train: bool,
) -> Result<VNetOutput, EngineError> {
    fn on<E: Engine + ?Sized>(
        e: &E,
        s: &mut VNetState<E::T>,
        x: &E::T,
        train: bool,
    ) -> Result<VNetOutput<E::T>, EngineError> {
        match train {
            true => forward_train_on(e, s, x).map(|(y, _)| y),
            false => forward_eval_on(e, s, x),
        }
    }
    match compute.side() {
        Side::Gpu(g) => {
            let mut s = upload_state(&g.dev, state)?;
            let y = on(g, &mut s, &GpuTensor::upload(&g.dev, x)?, train)?;
            *state = download_state(&g.dev, &s)?;
            Ok(VNetOutput {
                features: y.features.download(&g.dev)?,
                logits: y.logits.download(&g.dev)?,
            })
        }
        Side::Host(e) => on(e, state, x, train),
    }
}

/// An engine whose tensors are made from, and read back into, host tensors.
pub trait HostTensors: Engine {
    /// The host tensor on this engine.
    fn upload(&self, t: &Tensor) -> Result<Self::T, EngineError>;
    /// This engine's tensor on the host.
    fn download(&self, t: &Self::T) -> Result<Tensor, EngineError>;
}

impl HostTensors for dyn HostEngine + '_ {
    fn upload(&self, t: &Tensor) -> Result<Tensor, EngineError> {
        Ok(t.clone())
    }
    fn download(&self, t: &Tensor) -> Result<Tensor, EngineError> {
        Ok(t.clone())
    }
}

impl HostTensors for Gpu {
    fn upload(&self, t: &Tensor) -> Result<GpuTensor, EngineError> {
        Ok(GpuTensor::upload(&self.dev, t)?)
    }
    fn download(&self, t: &GpuTensor) -> Result<Tensor, EngineError> {
        Ok(t.download(&self.dev)?)
    }
}
