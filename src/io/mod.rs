//! Files: NIfTI images, safetensors tensors, PyTorch checkpoints, checkpoints, atomic writes, hashes, printing.

pub mod checkpoint;
pub mod console;
pub mod convert;
pub mod files;
pub mod hash;
pub mod nifti;
pub mod tensorfile;
pub mod torchfile;
