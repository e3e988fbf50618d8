//! Fast kernels: the same orders of operations as the spec kernels in [`crate::layers`], with
//! more outputs per register block, so the same bits (see [`crate::kernels`] for the switch).
//! Their SIMD copies (AVX-512, AVX2+FMA, NEON, portable) are chosen at run time: [`simd`].
pub mod conv3d;
pub mod reduce;
pub mod simd;
