//! # protokd-gpu: ProtoKD on NVIDIA GPUs, bit-identical to the reference
//!
//! The operations of `protokd-reference` as CUDA C kernels (`gpu/kernels/*.cu`), compiled at run
//! time by NVRTC through cudarc (dynamic loading: the crate builds and its CPU-side logic runs
//! on machines with no CUDA at all), following the orders written in the reference crate's docs
//! with `--fmad=false` and explicit `__fmaf_rn`, so that every output has the reference's bits.
//!
//! Two devices sit behind one interface ([`Device`]): `Cuda`, and `Emulated`, which compiles the
//! same kernel sources with the host C++ compiler and runs each launch as a loop over blocks and
//! threads. The GPU test suite runs on `Emulated` in CI and on `Cuda` wherever a GPU exists.
//!
//! | module | holds |
//! |---|---|
//! | [`device`] | [`Device`] (Cuda or Emulated) and typed [`Buffer`]s |
//! | [`args`] | the kernels' argument structs (generated from `gpu/kernels/args.def`) |
//! | [`kernels`] | [`kernels::Kernel`] and the typed kernel handles (generated from `gpu/kernels/*.cu`) |
//! | [`nvrtc`] | run-time compilation (options, cache) |
//! | [`tensor`] | [`GpuTensor`]: a shape and a shared device buffer |
//! | [`reduce`] | the canonical reduction's finishing launch |
//! | [`ops`] | every operation of the reference on device tensors |
//! | [`engine`] | [`Gpu`]: the reference's `Engine` on a device, so the reference's own VNet and training steps run there |
//! | [`transfer`] | whole states between host and device |
//! | [`profile`] | per-kernel timing (`PROTOKD_GPU_PROFILE`) |
//!
//! ## Exactness
//! Every operation gives the reference's bits; there is no tolerance table because no operation
//! needs one (the tests compare bits on random shapes and on the golden patches, and
//! `protokd verify --engines cuda` does the same on any GPU).

pub mod args;
pub mod cuda;
pub mod device;
pub mod emulated;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod nvrtc;
pub mod ops;
pub mod profile;
pub mod reduce;
pub mod tensor;
pub mod transfer;

/// The name of every kernel in `gpu/kernels/*.cu` ([`kernels::Kernel::name`] of each).
pub fn kernel_names() -> &'static [&'static str] {
    &kernels::NAMES
}

pub use device::{Buffer, Device};
pub use engine::Gpu;
pub use error::GpuError;
pub use tensor::{GpuLabels, GpuTensor};
