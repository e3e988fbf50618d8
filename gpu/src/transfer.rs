//! Moving whole states between the host and a device: the only host-device copies of training
//! besides each batch's image and labels (and the loss values).

use crate::device::Device;
use crate::error::GpuError;
use crate::tensor::GpuTensor;
use protokd_reference::adam::AdamState;
use protokd_reference::state::VNetState;

/// Uploads every f32 entry of a state.
pub fn upload_state(dev: &Device, s: &VNetState) -> Result<VNetState<GpuTensor>, GpuError> {
    s.try_map(|_, t| GpuTensor::upload(dev, t))
}

/// Downloads every f32 entry of a device state.
pub fn download_state(dev: &Device, s: &VNetState<GpuTensor>) -> Result<VNetState, GpuError> {
    s.try_map(|_, t| t.download(dev))
}

/// Uploads Adam's moments.
pub fn upload_adam(dev: &Device, a: &AdamState) -> Result<AdamState<GpuTensor>, GpuError> {
    a.try_map(|t| GpuTensor::upload(dev, t))
}

/// Downloads Adam's moments.
pub fn download_adam(dev: &Device, a: &AdamState<GpuTensor>) -> Result<AdamState, GpuError> {
    a.try_map(|t| t.download(dev))
}
