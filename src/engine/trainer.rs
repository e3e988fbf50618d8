//! A student (with its Adam state and, for ProtoKD, its frozen teacher) being trained on an
//! engine ([`Trainer`]), written once for every engine ([`Resident`]). The states stay on the
//! engine between steps; what crosses is each batch's image and labels, the loss values, the
//! gradients when asked for, and the states when they are saved.

use super::compute::{Compute, OnEngine};
use super::net::{download_state, upload_state, Held, Net, ResidentNet};
use super::resident::Resident;
use anyhow::Result;
use protokd_reference::adam::AdamState;
use protokd_reference::error::EngineError;
use protokd_reference::state::VNetState;
use protokd_reference::step::{check_labels, train_step_on, Losses, StepConfig, StepReport};
use protokd_reference::{LabelMap, Tensor};
use std::borrow::Cow;

/// What the training loop, `audit step` and the golden suite need of a trainer.
pub trait Training {
    /// One training step ([`protokd_reference::step::train_step`]): check the labels, upload
    /// the batch, step on the engine; the gradients (before the update) come back to the host
    /// only when `step.grads`.
    fn run(&mut self, step: Step<'_>) -> Result<StepReport, EngineError>;
    /// The student's state on the host.
    fn state(&self) -> Result<VNetState, EngineError>;
    /// The optimiser state on the host.
    fn adam(&self) -> Result<AdamState, EngineError>;
    /// The student as a network for validation (no copy).
    fn net(&self) -> Net<'_>;
}

/// One step's batch and settings ([`Training::run`]).
pub struct Step<'a> {
    /// The batch `[N, 4, D, H, W]` (T1, T2, T1ce, FLAIR).
    pub image: &'a Tensor,
    /// Its internal labels `[N, D, H, W]`.
    pub labels: &'a LabelMap,
    /// The student's input channels of `image`.
    pub channels: &'a [usize],
    /// Losses and optimiser.
    pub cfg: &'a StepConfig,
    /// Whether the gradients come back to the host.
    pub grads: bool,
}

/// A trainer on some engine ([`Trainer::new`] chose it); its other methods are
/// [`Training`]'s.
pub type Trainer<'a> = Held<dyn Training + 'a>;

impl<'a> Trainer<'a> {
    /// A trainer on `compute` (the states are uploaded once where the engine keeps its tensors
    /// elsewhere).
    pub fn new(
        compute: &'a Compute,
        state: VNetState,
        adam: AdamState,
        teacher: Option<&VNetState>,
    ) -> Result<Trainer<'a>> {
        Ok(compute.run(Upload(&state, &adam, teacher))?)
    }

    /// One training step; returns the losses.
    pub fn step(
        &mut self,
        image: &Tensor,
        labels: &LabelMap,
        channels: &[usize],
        cfg: &StepConfig,
    ) -> Result<Losses, EngineError> {
        let grads = false;
        let step = Step {
            image,
            labels,
            channels,
            cfg,
            grads,
        };
        self.run(step).map(|r| r.losses)
    }
}

/// [`Trainer::new`]'s work on each engine.
struct Upload<'s>(&'s VNetState, &'s AdamState, Option<&'s VNetState>);

impl<'a> OnEngine<'a> for Upload<'_> {
    type Output = Result<Trainer<'a>, EngineError>;
    fn run<E: Resident + ?Sized>(self, engine: &'a E) -> Self::Output {
        let Upload(state, adam, teacher) = self;
        Ok(Held(Box::new(ResidentTrainer::new(
            engine, state, adam, teacher,
        )?)))
    }
}

/// The states of a training run, resident on `engine`.
pub(super) struct ResidentTrainer<'a, E: Resident + ?Sized> {
    engine: &'a E,
    state: VNetState<E::T>,
    adam: AdamState<E::T>,
    teacher: Option<VNetState<E::T>>,
}

impl<'a, E: Resident + ?Sized> ResidentTrainer<'a, E> {
    /// The host states moved to `engine` (uploaded once).
    pub(super) fn new(
        engine: &'a E,
        state: &VNetState,
        adam: &AdamState,
        teacher: Option<&VNetState>,
    ) -> Result<Self, EngineError> {
        Ok(ResidentTrainer {
            engine,
            state: upload_state(engine, state)?,
            adam: adam.try_map(|t| engine.upload(t).map(Cow::into_owned))?,
            teacher: teacher.map(|t| upload_state(engine, t)).transpose()?,
        })
    }
}

impl<E: Resident + ?Sized> Training for ResidentTrainer<'_, E> {
    fn run(&mut self, step: Step<'_>) -> Result<StepReport, EngineError> {
        let e = self.engine;
        let Step {
            image,
            labels,
            channels,
            cfg,
            grads,
        } = step;
        check_labels(labels, image, self.state.config.n_classes)?;
        let (x, y) = (e.upload(image)?, e.upload_labels(labels)?);
        let t = self.teacher.as_ref();
        let r = train_step_on(e, &mut self.state, &mut self.adam, t, &x, &y, channels, cfg)?;
        Ok(StepReport {
            losses: r.losses,
            grads: match grads {
                false => Vec::new(),
                true => r
                    .grads
                    .into_iter()
                    .map(|g| e.download_owned(g))
                    .collect::<Result<_, _>>()?,
            },
        })
    }

    fn state(&self) -> Result<VNetState, EngineError> {
        download_state(self.engine, &self.state)
    }

    fn adam(&self) -> Result<AdamState, EngineError> {
        let e = self.engine;
        self.adam.try_map(|t| e.download(t).map(Cow::into_owned))
    }

    fn net(&self) -> Net<'_> {
        Held(Box::new(ResidentNet {
            engine: self.engine,
            state: Cow::Borrowed(&self.state),
        }))
    }
}
