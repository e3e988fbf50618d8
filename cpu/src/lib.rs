//! # protokd-cpu: the fast CPU engine of ProtoKD
//!
//! [`Cpu`] computes the operations of the specification (crate `protokd-reference`, the
//! `Engine` trait) with register blocks, SIMD and threads, and gives the spec's bits: every
//! output is the same chain of fused multiply-adds, or the same canonical reduction, in the
//! same order, only with several independent outputs (or lanes) computed at once. Where this
//! crate has no faster kernel it calls the spec's function; the spec never calls this crate.
//!
//! | module | holds |
//! |---|---|
//! | [`engine`] | [`Cpu`], the engine: a value holding the SIMD copy it runs |
//! | [`simd`] | [`Isa`]: the SIMD copies (AVX-512, AVX2+FMA, NEON, portable) and the vector trait the tiles are written on |
//! | `conv3d` | Conv3d forward, input and weight gradients (so ConvTranspose3d too): stride phases (the register tile in `tile`), 16-lane weight-gradient blocks |
//! | `tile` | the register tile of the forward and input gradient: `B` output channels x `R` vectors of outputs, per SIMD copy |
//! | `wgrad` | the register block of the weight gradient: the canonical lanes of 2 output channels x up to 9 taps |
//! | `rowops` | the row primitive of the canonical reduction for weight gradients of any output width |
//! | `reduce` | per-channel canonical reductions, 16 lanes per step |
//! | `batchnorm` | BatchNorm forward (fused with the ReLU where asked) and backward |
//! | `loops` | the column maps (softmax) and canonical reductions the losses are written over, in parallel and SIMD |
//! | `proto` | the prototype loss and its gradient: voxel chunks in parallel, SIMD chains across voxels |
//! | `adam` | the Adam update in parallel |
//!
//! ## Which SIMD copy runs
//! [`Cpu::new`] takes the best copy this CPU has ([`Isa::detected`]); [`Cpu::with_isa`] takes
//! a named one (refused if the CPU cannot run it). The copy is part of the engine value: there
//! is no process-wide switch, so tests run every copy side by side, in parallel threads.
//!
//! ## How it is held to the spec
//! `cpu/tests/engine.rs` runs every engine operation on random shapes on every copy this CPU
//! can run, with 1, 2 and 7 threads, against `protokd_reference::engine::Spec`, bit for bit;
//! the unit tests of `conv3d`, `tile`, `wgrad`, `rowops` and `reduce` do the same per kernel
//! and per register tile, every SIMD copy against plain `mul_add` chains; `tests/engine/reproducibility.rs` (root package) checks a whole recorded ProtoKD step, and
//! `protokd verify` the golden suite.

pub mod engine;
pub mod peak;
pub mod simd;

mod adam;
mod batchnorm;
mod conv3d;
mod loops;
mod proto;
mod reduce;
mod rowops;
mod tile;
mod wgrad;

pub use engine::{Cpu, IsaNotSupported};
pub use simd::Isa;
