//! One VNet forward on whichever engine `--engine` opened (`audit forward`, the golden suite).

use super::compute::{Compute, OnEngine};
use super::net::{download_state, upload_state};
use super::resident::Resident;
use protokd_reference::error::EngineError;
use protokd_reference::state::VNetState;
use protokd_reference::vnet::{forward_eval_on, forward_train_on, VNetOutput};
use protokd_reference::Tensor;

/// One forward of `state` on `x` on `compute`, outputs on the host: upload the state and `x`;
/// forward (training mode when `train`: BatchNorm with the batch statistics, and the running
/// statistics updated); download the outputs and the state into `state`.
pub fn forward(
    compute: &Compute,
    state: &mut VNetState,
    x: &Tensor,
    train: bool,
) -> Result<VNetOutput, EngineError> {
    compute.run(Forward { state, x, train })
}

/// [`forward`]'s work on each engine.
struct Forward<'s> {
    state: &'s mut VNetState,
    x: &'s Tensor,
    train: bool,
}

impl OnEngine<'_> for Forward<'_> {
    type Output = Result<VNetOutput, EngineError>;
    fn run<E: Resident + ?Sized>(self, e: &E) -> Self::Output {
        let mut s = upload_state(e, self.state)?;
        let x = e.upload(self.x)?;
        let y = match self.train {
            true => forward_train_on(e, &mut s, &x).map(|(y, _)| y)?,
            false => forward_eval_on(e, &s, &x)?,
        };
        *self.state = download_state(e, &s)?;
        Ok(VNetOutput {
            features: e.download_owned(y.features)?,
            logits: e.download_owned(y.logits)?,
        })
    }
}
