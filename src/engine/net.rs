//! A network ready for evaluation-mode forwards on an engine ([`Net`]), written once for every
//! engine ([`Resident`]): the state is moved to the engine once, each input is uploaded, and
//! only the class probabilities come back to the host.

use super::compute::{Compute, OnEngine};
use super::resident::Resident;
use anyhow::Result;
use protokd_reference::error::EngineError;
use protokd_reference::state::{VNetConfig, VNetState};
use protokd_reference::vnet::forward_eval_on;
use protokd_reference::Tensor;
use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

/// What the sliding window and validation need of a network.
pub trait Network {
    /// What the network is built for.
    fn config(&self) -> VNetConfig;
    /// `softmax(forward_eval(x).logits)` over the classes, on the host.
    fn probabilities(&self, x: &Tensor) -> Result<Tensor, EngineError>;
}

/// A network on some engine ([`Net::new`] chose it); its methods are [`Network`]'s.
pub type Net<'a> = Held<dyn Network + 'a>;

/// A network or a trainer held by whichever engine [`Compute::run`] chose ([`Net`],
/// [`crate::engine::Trainer`]); its methods are those of the trait object inside.
pub struct Held<T: ?Sized>(pub(super) Box<T>);

impl<T: ?Sized> Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<'a> Net<'a> {
    /// `state` on `compute` (uploaded once where the engine keeps its tensors elsewhere).
    pub fn new(compute: &'a Compute, state: &VNetState) -> Result<Net<'a>> {
        Ok(compute.run(Upload(state))?)
    }
}

/// [`Net::new`]'s work on each engine.
struct Upload<'s>(&'s VNetState);

impl<'a> OnEngine<'a> for Upload<'_> {
    type Output = Result<Net<'a>, EngineError>;
    fn run<E: Resident + ?Sized>(self, engine: &'a E) -> Self::Output {
        let state = Cow::Owned(upload_state(engine, self.0)?);
        Ok(Held(Box::new(ResidentNet { engine, state })))
    }
}

/// `state` (resident on `engine`: owned after an upload, or borrowed from a trainer).
pub(super) struct ResidentNet<'a, E: Resident + ?Sized> {
    pub(super) engine: &'a E,
    pub(super) state: Cow<'a, VNetState<E::T>>,
}

impl<E: Resident + ?Sized> Network for ResidentNet<'_, E> {
    fn config(&self) -> VNetConfig {
        self.state.config
    }

    /// Upload `x`; forward in evaluation mode; softmax on the engine; download.
    fn probabilities(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        let e = self.engine;
        let x = e.upload(x)?;
        let out = forward_eval_on(e, &self.state, &x)?;
        e.download_owned(e.softmax(&out.logits)?)
    }
}

/// Every f32 entry of a host state moved to `engine`.
pub(super) fn upload_state<E: Resident + ?Sized>(
    engine: &E,
    s: &VNetState,
) -> Result<VNetState<E::T>, EngineError> {
    s.try_map(|_, t| engine.upload(t).map(Cow::into_owned))
}

/// Every f32 entry of a resident state copied to the host.
pub(super) fn download_state<E: Resident + ?Sized>(
    engine: &E,
    s: &VNetState<E::T>,
) -> Result<VNetState, EngineError> {
    s.try_map(|_, t| engine.download(t).map(Cow::into_owned))
}
