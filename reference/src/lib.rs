//! # protokd-reference: the specification of ProtoKD
//!
//! This crate is the readable CPU specification of ProtoKD training and inference (Wang et al.,
//! ICASSP 2023, and the authors' PyTorch code; the method page in `shared/protokd-method.md`
//! restates every number). It is the specification and nothing else: one function per layer
//! direction whose body IS the documented order of operations, written as plain loops over the
//! outputs and their terms (`acc = x.mul_add(w, acc)`) beside the formula in its doc comment;
//! the canonical reduction as the plain loop it is; the VNet's forward and backward written out
//! layer call by layer call ([`vnet`]). No SIMD, no run-time CPU detection, no process-wide
//! switches, no fast paths, no autograd tape, no macros that hide arithmetic, no file I/O.
//! Threads (rayon) only ever split whole outputs (the convolutions' output planes), so they
//! cannot change a bit.
//!
//! Two other engines compute the same operations and are held to this crate bit for bit:
//! the fast CPU engine (crate `protokd-cpu`) and the CUDA engine (crate `protokd-gpu`, with its
//! emulated device). All three implement [`engine::Engine`]; [`engine::Spec`](type@engine::Spec) is this crate's.
//!
//! | module | holds |
//! |---|---|
//! | [`mathfn`] | our own `exp` and `ln` |
//! | [`real`] | [`Real`], the float type the spec is written over: `f32` (the product), `f64` (the accuracy yardstick) |
//! | [`reduce`] | the one canonical reduction |
//! | [`tensor`] | [`Tensor`] (`f32` unless said otherwise, row-major) and [`LabelMap`] |
//! | [`layers`] | Conv3d, ConvTranspose3d, BatchNorm3d, ReLU, the additive skip, softmax, forward and backward |
//! | [`loops`] | the column maps and canonical reductions softmax and the losses are written over, and [`loops::Plain`], the spec's |
//! | [`losses`] | Dice, weighted cross-entropy, pixel-wise KD, the prototype loss, forward and backward |
//! | [`adam`] | Adam with L2 weight decay as PyTorch's |
//! | [`engine`] | the operations the VNet and the steps are written in ([`engine::Engine`]), and [`engine::Spec`](type@engine::Spec), this crate's functions as an engine |
//! | [`state`] | the VNet's parameters under their PyTorch names, seeded initialisation |
//! | [`vnet`] | the VNet forward (training and evaluation mode) and backward |
//! | [`step`] | the ProtoKD, baseline and teacher-pretraining training steps |
//! | [`error`] | errors for user data reaching the engine |
//! | [`testutil`] | seeded test data, `f64` comparisons and finite-difference checks, for the tests of every engine |
//!
//! ## A reader's path: the method page, formula by formula
//!
//! | method page (`shared/protokd-method.md`) | open | functions |
//! |---|---|---|
//! | §4 conv (k3, padding 1, no bias), down (k2 s2, bias) | `layers/conv3d.rs` | `conv3d_forward`, `conv3d_backward_input`, `conv3d_backward_weight`, `bias_backward` |
//! | §4 up (ConvTranspose3d k2 s2, bias) | `layers/conv_transpose3d.rs` | defined as Conv3d identities: `conv_transpose3d_forward`, `_backward_input`, `_backward_weight` |
//! | §4 BatchNorm3d (eps 1e-5, momentum 0.1, biased/unbiased variance, eval mode) | `layers/batchnorm3d.rs` | `batchnorm3d_forward_train`, `batchnorm3d_forward_eval`, `batchnorm3d_backward` |
//! | §4 ReLU, additive skips | `layers/relu.rs` | `relu_forward`, `relu_backward`, `add_forward` |
//! | §4 the network, block by block, and its PyTorch names | `vnet.rs`, `state.rs` | `forward_train_on`, `forward_eval_on`, `backward_on`; `state_dict_spec`, `VNetState::init` |
//! | §5 softmax, log-softmax | `layers/softmax.rs`, `mathfn.rs` | `softmax`, `log_softmax` and their backwards; `exp`, `ln` |
//! | §5 Dice | `losses/dice.rs` | `dice_loss`, `dice_backward` |
//! | §5 weighted cross-entropy | `losses/ce.rs` | `ce_loss`, `ce_backward` |
//! | §5 pixel-wise KD (T = 10) | `losses/kd.rs` | `kd_loss`, `kd_backward` |
//! | §5 prototype loss | `losses/proto.rs` | `proto_loss`, `proto_backward` |
//! | §5 total loss and its weights | `step.rs` | `losses_and_gradients_on`, `StepConfig` |
//! | §6 Adam with L2 weight decay | `adam.rs`, `step.rs` | `AdamScalars::update` (one element), `adam_step_on` (every parameter) |
//! | every large sum | `reduce.rs` | `Partials`, `reduce_with`, `channel_reduction` |
//!
//! What holds the other engines to these functions:
//!
//! | engine | tests |
//! |---|---|
//! | fast CPU (`protokd-cpu`) | `cpu/tests/engine.rs`: every engine operation against [`engine::Spec`](type@engine::Spec) bit for bit on random shapes, for every SIMD copy the CPU has (forced by value) and 1, 2 and 7 threads; `cpu/src/conv3d.rs`: the register blocks and random geometries; `tests/engine/reproducibility.rs`: the recorded whole-step hash on both CPU engines |
//! | CUDA and emulated (`protokd-gpu`) | `gpu/tests/*.rs`: every kernel against this crate bit for bit (on the emulated device everywhere, on CUDA where a driver is present); `gpu/tests/vnet.rs`: whole steps |
//! | all | `protokd verify`: the golden suite on every available engine against the spec, one line per operation |
//!
//! ## Speed
//! The spec is slow on purpose: no blocking, a bounds check and an index computation per term,
//! and on x86-64 `f32::mul_add` compiled without FMA is a call into the C library's `fmaf`.
//! Measured with `protokd bench --engine spec` on a 2-core AMD EPYC (commit `4e905a7`): the
//! VNet forward at n_filters 4 on 1 x 4 x 32^3 (a golden patch) takes 0.26 s and a whole
//! ProtoKD step 1.3 s (the fast CPU engine: 0.013 s and 0.105 s); the forward at n_filters 16 on
//! 1 x 4 x 64^3 takes 24 s (fast engine 0.40 s), so the paper's 1 x 4 x 96 x 128 x 128 takes
//! minutes. That is fine: the spec runs the golden patches, the PyTorch parity fixtures, the
//! tests' small shapes and `protokd verify`, while training and segmentation run the fast CPU
//! or CUDA engine.
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
//!    Here `mul_add` is whatever the target gives (the C library's `fmaf` on x86-64 without
//!    FMA in the baseline, the `fmadd` instruction on aarch64); the fast engine's hardware
//!    `vfmadd`, `_mm512_fmadd_ps` and `vfmaq_f32` and CUDA's `__fmaf_rn` are the same
//!    correctly rounded operation, on several independent outputs at once.
//! 3. **One canonical reduction** ([`reduce`]) for every large sum (over batch and voxels:
//!    BatchNorm statistics, weight and bias gradients, loss sums, prototypes): blocks of 4096
//!    terms, 16 interleaved sequential lanes per block, a fixed pairwise tree over the lanes and
//!    then over the blocks. Its shape depends only on the number of terms, never on the thread
//!    count; threads (and GPU blocks) take whole blocks, a 16-lane SIMD loop takes the lanes.
//! 4. **Our own `exp` and `ln`** ([`mathfn`]): documented range reduction and polynomial, with
//!    fma; within 2 ulp of the correctly rounded result (measured in its tests). `sqrt` and
//!    division are IEEE (correctly rounded everywhere).
//! 5. **One text, two float types** ([`real`]). Every layer, loss, the canonical reduction, the
//!    VNet and the steps are written once over `R: `[`Real`] (`mul_add`, `sqrt`, `exp`, `ln`,
//!    the arithmetic operators, `decimal` for the constants, `from_usize` for counts):
//!    `Tensor<R = f32>`, `Partials<R = f32>`, `SpecOf<R>` with [`engine::Spec`](type@engine::Spec) `= SpecOf<f32>`.
//!    The `f32` instance IS the product: items 1-4 are its rules, and its bits are what every
//!    engine and every recorded hash hold. The `f64` instance is the yardstick of the accuracy
//!    report (`protokd audit forward|step --accuracy`): the same operations in the same order,
//!    each rounded to `f64`, with the platform's `f64` `exp` and `ln` (not bit-reproducible
//!    across machines, and not needed to be: it is a measuring rod, 2^29 times finer than what
//!    it measures). Its constants are the decimals the `f32` ones were written as
//!    ([`Real::decimal`]: `eps = 1e-5` exactly, as PyTorch's float64), and Adam's scalars stay in
//!    `f64`. Held to PyTorch float64 to 1e-10 on the parity fixtures, or to 4 times float64's own
//!    change under one-ulp moves of the inputs where that is larger (`tests/audit/accuracy.rs`).
//! 6. **Consequence, asserted by tests**: the same bits for every run, every thread count and
//!    every engine (the integration tests run a whole ProtoKD step on the spec and on the fast
//!    engine with 1, 2 and 7 threads and every SIMD copy, and compare one recorded hash), and
//!    the same bits from any other implementation that follows the orders written in each
//!    module's docs.
//!
//! **NaN payloads.** When one operand of an operation is NaN, the result is that NaN (quieted)
//! on every conforming machine, and the bits above hold. When two operands of one operation are
//! both NaN, IEEE 754 leaves open which payload (and sign) the result carries, and machines
//! differ: x86 and NEON, scalar and vector instructions pick different operands (seen under
//! qemu: the fast engine's NEON BatchNorm backward on a NaN-holding cache gave NaNs of bits
//! `0xffc00000` where the spec's bits differed). Such results are NaN on every engine, but their bits are
//! not part of the contract. The engines refuse non-finite inputs and weights
//! ([`error::EngineError::NonFinite`]), so in training and inference a NaN can only come from
//! an overflow, and the tests assert bit-identity on NaN-free data and on one-NaN operations
//! (ReLU and BatchNorm passing an input NaN on).
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
pub mod layers;
pub mod loops;
pub mod losses;
pub mod mathfn;
pub mod real;
pub mod reduce;
pub mod state;
pub mod step;
pub mod tensor;
pub mod vnet;

pub mod testutil;

pub use real::Real;
pub use tensor::{LabelMap, Tensor};
