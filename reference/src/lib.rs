//! # protokd-reference: the specification of ProtoKD
//!
//! This crate is the readable CPU specification of ProtoKD training and inference (Wang et al.,
//! ICASSP 2023, and the authors' PyTorch code; the method page in `shared/protokd-method.md`
//! restates every number). Every other implementation in the project (the fast CPU kernels, the
//! CUDA kernels) is checked against it bit for bit. It is written to be read: one function per
//! layer direction with the formula and the order of operations in its doc comment, explicit
//! buffers, and the VNet's forward and backward written out layer call by layer call
//! ([`vnet`]). No autograd tape, no macros that hide arithmetic, no file I/O.
//!
//! | module | holds |
//! |---|---|
//! | [`mathfn`] | our own `exp` and `ln` |
//! | [`reduce`] | the one canonical reduction |
//! | [`tensor`] | [`Tensor`] (f32, row-major) and [`LabelMap`] |
//! | [`layers`] | Conv3d, ConvTranspose3d, BatchNorm3d, ReLU, the additive skip, softmax, forward and backward |
//! | [`losses`] | Dice, weighted cross-entropy, pixel-wise KD, the prototype loss, forward and backward |
//! | [`adam`] | Adam with L2 weight decay as PyTorch's |
//! | [`engine`] | the operations the VNet and the steps are written in; [`engine::Cpu`] runs them here |
//! | [`state`] | the VNet's parameters under their PyTorch names, seeded initialisation |
//! | [`vnet`] | the VNet forward (training and evaluation mode) and backward |
//! | [`step`] | the ProtoKD, baseline and teacher-pretraining training steps |
//! | [`error`] | errors for user data reaching the engine |
//! | [`kernels`] | the switch between the spec kernels and the fast ones (same bits) |
//! | [`fast`] | fast kernels: the spec's orders with wider register blocks |
//!
//! The layer functions (`conv3d_forward`, ...) dispatch on [`kernels::kernels`]; the spec
//! kernels keep their readable form under `*_spec` names, and the fast ones must give their
//! bits, which property tests over random shapes, thread counts and SIMD on/off assert.
//!
//! ## The numerics contract
//!
//! The same inputs give the same output bits on every run, every thread count, every machine
//! (x86-64 with or without FMA hardware, aarch64) and every conforming implementation, because
//! every floating-point operation and its order are specified here:
//!
//! 1. **f32 storage and arithmetic.** No fast-math, no reassociation, no platform `libm`. Only
//!    the Adam step's scalar bias corrections are computed in f64 (as PyTorch does, from Python
//!    floats) and rounded once to f32 ([`adam`]).
//! 2. **Fused multiply-add, explicitly.** Every dot-product-like sum (conv taps, channel and
//!    class sums) is a chain of [`f32::mul_add`] (IEEE-754 `fma`: correctly rounded, hence the
//!    same bits everywhere; `__fmaf_rn` on CUDA) in a documented order from `+0.0`. Where a
//!    product is not part of such a chain it is a plain rounded multiplication; the compiler
//!    never contracts `a * b + c` on its own in Rust. Fast implementations vectorise ACROSS
//!    independent outputs, never across the terms of one output.
//!    Hardware FMA is selected at run time where present ([`layers::rowops`]); where absent,
//!    `mul_add` calls the C library's `fmaf`, which is correctly rounded too: same bits. The
//!    AVX-512 and NEON (aarch64) copies of the fast kernels ([`fast::simd`]) use the
//!    `_mm512_fmadd_ps` and `vfmaq_f32` intrinsics, the same IEEE fma on 16 (one zmm) or 4
//!    (one q register) independent outputs at once.
//! 3. **One canonical reduction** ([`reduce`]) for every large sum (over batch and voxels:
//!    BatchNorm statistics, weight and bias gradients, loss sums, prototypes): blocks of 4096
//!    terms, 16 interleaved sequential lanes per block, a fixed pairwise tree over the lanes and
//!    then over the blocks. Its shape depends only on the number of terms, never on the thread
//!    count; threads (and GPU blocks) take whole blocks, a 16-lane SIMD loop takes the lanes.
//! 4. **Our own `exp` and `ln`** ([`mathfn`]): documented range reduction and polynomial, with
//!    fma; within 2 ulp of the correctly rounded result (measured in its tests). `sqrt` and
//!    division are IEEE (correctly rounded everywhere).
//! 5. **Consequence, asserted by tests**: the same bits for every run and every thread count
//!    (the integration tests run a whole ProtoKD step with 1, 2 and 7 threads and compare one
//!    recorded hash), and the same bits from any other implementation that follows the orders
//!    written in each module's docs.
//!
//! Where this crate deviates from PyTorch on purpose (PyTorch is not bit-reproducible, and
//! returns NaN in a few corners), the module says so: the cross-entropy of a batch holding a
//! single class is 0 rather than NaN ([`losses::ce`]), and the prototype loss with no class
//! present in every sample is 0 rather than NaN ([`losses::proto`]). Against PyTorch (f32, CPU)
//! the parity tests hold forward values and losses to a norm-wise relative error of 1e-4 and
//! gradients and updated parameters to 1e-3.

pub mod adam;
pub mod engine;
pub mod error;
pub mod fast;
pub mod kernels;
pub mod layers;
pub mod losses;
pub mod mathfn;
pub mod reduce;
pub mod state;
pub mod step;
pub mod tensor;
pub mod vnet;

#[cfg(test)]
pub(crate) mod testutil;

pub use tensor::{LabelMap, Tensor};
