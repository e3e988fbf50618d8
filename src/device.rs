//! The `--engine` switch of every command that computes, and the engine it opens.
//!
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
//! All four give the same bits (`protokd verify`). `--device cpu|cuda|emulated`, the spelling
//! of earlier versions, is still accepted and means the same engine.

use anyhow::Result;
use clap::ValueEnum;
use protokd_cpu::Cpu;
use protokd_gpu::Gpu;
use protokd_reference::engine::{Engine, Spec};
use protokd_reference::layers::batchnorm3d::BnCache;
use protokd_reference::{LabelMap, Tensor};

/// Which engine computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// The specification (protokd-reference): plain loops, slow.
    Spec,
    /// The fast CPU engine (protokd-cpu), the spec's bits.
    Cpu,
    /// NVIDIA GPU through CUDA (protokd-gpu).
    Cuda,
    /// protokd-gpu's CUDA C kernels run on the host (no GPU needed; slow).
    Emulated,
}

/// The `--engine` option of every command that computes.
#[derive(clap::Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineArg {
    /// Which engine computes: cpu (the fast CPU engine, default), spec (the specification's
    /// plain loops, slow), cuda or emulated; every engine gives the same bits. `--device` is
    /// the older spelling of the same option.
    #[arg(long = "engine", alias = "device", value_enum, default_value_t = EngineKind::Cpu,
          value_name = "ENGINE")]
    pub kind: EngineKind,
}

impl EngineArg {
    /// Opens the engine asked for ([`EngineKind::open`]).
    pub fn open(&self) -> Result<Compute> {
        self.kind.open()
    }
}

/// An engine on host tensors (the spec or the fast CPU engine), as one type.
pub trait HostEngine: Engine<T = Tensor, Labels = LabelMap, BnCache = BnCache> + Sync {}

impl<E: Engine<T = Tensor, Labels = LabelMap, BnCache = BnCache> + Sync> HostEngine for E {}

/// An opened engine.
#[derive(Clone, Debug)]
pub enum Compute {
    /// The specification.
    Spec,
    /// The fast CPU engine.
    Cpu(Cpu),
    /// A protokd-gpu engine (CUDA or emulated).
    Gpu(Gpu),
}

impl EngineKind {
    /// `spec`, `cpu`, `cuda` or `emulated`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Spec => "spec",
            EngineKind::Cpu => "cpu",
            EngineKind::Cuda => "cuda",
            EngineKind::Emulated => "emulated",
        }
    }

    /// Opens the engine (for `cuda`: loads the driver and NVRTC, compiles the kernels).
    pub fn open(self) -> Result<Compute> {
        Ok(match self {
            EngineKind::Spec => Compute::Spec,
            EngineKind::Cpu => Compute::Cpu(Cpu::new()),
            EngineKind::Cuda => Compute::Gpu(Gpu::new(protokd_gpu::Device::cuda()?)),
            EngineKind::Emulated => Compute::Gpu(Gpu::new(protokd_gpu::Device::emulated())),
        })
    }
}

impl Compute {
    /// What runs the arithmetic, in words (for logs and provenance records).
    pub fn describe(&self) -> String {
        match self {
            Compute::Spec => "spec (protokd-reference, plain loops)".to_string(),
            Compute::Cpu(c) => format!("cpu (protokd-cpu, {} SIMD copy)", c.isa().name()),
            Compute::Gpu(g) => g.dev.describe(),
        }
    }

    /// `spec`, `cpu`, `cuda` or `emulated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Compute::Spec => "spec",
            Compute::Cpu(_) => "cpu",
            Compute::Gpu(g) => g.dev.kind(),
        }
    }

    /// The engine when its tensors are host tensors (spec or fast CPU), else `None`.
    pub fn host(&self) -> Option<&dyn HostEngine> {
        match self {
            Compute::Spec => Some(&Spec),
            Compute::Cpu(c) => Some(c),
            Compute::Gpu(_) => None,
        }
    }
}
