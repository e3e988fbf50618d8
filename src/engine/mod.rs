//! Engines as the application sees them: which one `--engine` opens, and the network and
//! trainer written once for all of them.
//!
//! | file | holds |
//! |---|---|
//! | `switch.rs` | [`EngineKind`]: the engines `--engine` names, and opening one (with `--simd`) |
//! | `compute.rs` | [`Compute`], [`OnEngine`]: an opened engine, and the one place that tells host from GPU |
//! | `resident.rs` | [`Resident`], [`Describe`], [`HostEngine`]: moving tensors to and from an engine, naming it |
//! | `net.rs` | [`Net`]: a network for evaluation-mode forwards (sliding window, validation) |
//! | `trainer.rs` | [`Trainer`]: a student, its Adam state and its teacher, stepping on an engine |
//! | `forward.rs` | [`forward()`]: one forward, outputs on the host (`audit forward`, golden suite) |
//! | `timed.rs` | [`Timed`]: a host engine whose calls are timed and their FLOPs counted (`protokd bench`'s breakdown) |
//!
//! The engines:
//! * `cpu` (the default): the fast CPU engine (crate protokd-cpu: register blocks, SIMD,
//!   threads) on the best SIMD copy of this CPU.
//! * `spec`: the specification itself (crate protokd-reference: plain loops; slow, for audits
//!   and comparisons).
//! * `cuda`: an NVIDIA GPU through protokd-gpu (cudarc, kernels compiled by NVRTC at start-up).
//!   Where there is no driver, no NVRTC or no device, a clear error says what was looked for;
//!   there is never a silent fall-back to the CPU.
//! * `emulated`: protokd-gpu's kernels compiled for the host and run as loops over blocks and
//!   threads (the GPU path without a GPU; slow, for tests and audits).
//!
//! All four give the same bits (`protokd verify`). With `--engine cpu`, `--simd COPY` names the
//! fast kernels' SIMD copy (`avx512`, `avx2+fma`, `neon`, `portable`) instead of the best one,
//! for comparisons (for example the AVX2 path on an AVX-512 machine); the same bits again.
//! `--device cpu|cuda|emulated`, the spelling of earlier versions, is still accepted and means
//! the same engine.
//!
//! A new host engine implements [`Describe`] and is opened by [`EngineKind::open`]; nothing
//! else in the application changes.

mod compute;
mod forward;
mod net;
mod resident;
mod switch;
pub mod timed;
mod trainer;

pub use compute::{Compute, OnEngine};
pub use forward::forward;
pub use net::{Held, Net, Network};
pub use resident::{Describe, HostEngine, Resident};
pub use switch::EngineKind;
pub use timed::Timed;
pub use trainer::{Step, Trainer, Training};
