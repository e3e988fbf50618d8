//! Files: NIfTI images, safetensors tensors, checkpoints, atomic writes.

pub mod checkpoint;
pub mod files;
pub mod nifti;
pub mod tensorfile;
