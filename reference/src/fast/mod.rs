//! Fast kernels: the same orders of operations as the spec kernels in [`crate::layers`], with
//! more outputs per register block, so the same bits (see [`crate::kernels`] for the switch).
pub mod conv3d;
pub mod reduce;
