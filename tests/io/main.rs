//! The `io` stage (`src/io/`): NIfTI files against nibabel's reading of them, and checkpoints
//! exchanged with PyTorch in both directions.

#[path = "../common/bounded.rs"]
mod bounded;
#[path = "../common/mod.rs"]
mod common;

mod affine_corners;
mod checkpoint;
mod limits;
mod nifti;
mod torch_checkpoints;
