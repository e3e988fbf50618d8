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
//! All four give the same bits (`protokd verify`). With `--engine cpu`, `--simd COPY` names the
//! fast kernels' SIMD copy (`avx512`, `avx2+fma`, `neon`, `portable`) instead of the best one,
//! for comparisons (for example the AVX2 path on an AVX-512 machine); the same bits again. `--device cpu|cuda|emulated`, the spelling
//! of earlier versions, is still accepted and means the same engine.

pub mod compute;

use anyhow::{Context, Result};
use clap::ValueEnum;
use protokd_cpu::{Cpu, Isa};
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
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct EngineArg {
    /// Which engine computes: cpu (the fast CPU engine, default), spec (the specification's
    /// plain loops, slow), cuda or emulated; every engine gives the same bits. `--device` is
    /// the older spelling of the same option.
    #[arg(long = "engine", alias = "device", value_enum, default_value_t = EngineKind::Cpu,
          value_name = "ENGINE")]
    pub kind: EngineKind,
    /// With `--engine cpu`: the SIMD copy of the fast kernels to run (avx512, avx2+fma, neon
    /// or portable; default: the best this CPU has). Every copy gives the same bits; portable
    /// runs as on a CPU without FMA hardware.
    #[arg(long, value_name = "COPY")]
    pub simd: Option<String>,
}

impl EngineArg {
    /// Opens the engine asked for ([`EngineKind::open`]; with `--simd`, the fast CPU engine on
    /// that copy, refused if the name is unknown or this CPU cannot run it).
    pub fn open(&self) -> Result<Compute> {
        let Some(name) = &self.simd else {
            return self.kind.open();
        };
        anyhow::ensure!(
            self.kind == EngineKind::Cpu,
            "--simd {name}: the SIMD copy is a setting of the fast CPU engine (--engine cpu), \
             not of --engine {}",
            self.kind.name()
        );
        let isa = Isa::parse(name).with_context(|| {
            let usable: Vec<&str> = Isa::usable().iter().map(|i| i.name()).collect();
            format!(
                "--simd {name}: unknown SIMD copy; this CPU can run {}",
                usable.join(", ")
            )
        })?;
        Ok(Compute::Cpu(Cpu::with_isa(isa).context("--simd")?))
    }
}

/// An engine on host tensors (the spec or the fast CPU engine), as one type.
pub trait HostEngine: Engine<T = Tensor, Labels = LabelMap, BnCache = BnCache> + Sync {}

impl<E: Engine<T = Tensor, Labels = LabelMap, BnCache = BnCache> + Sync> HostEngine for E {}

/// An opened engine, by where its tensors live ([`Compute::side`]).
#[derive(Clone, Copy)]
pub enum Side<'a> {
    /// The spec or the fast CPU engine: host tensors.
    Host(&'a dyn HostEngine),
    /// A protokd-gpu engine: device tensors.
    Gpu(&'a Gpu),
}

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

    /// The engine, by where its tensors live.
    pub fn side(&self) -> Side<'_> {
        match self {
            Compute::Spec => Side::Host(&Spec),
            Compute::Cpu(c) => Side::Host(c),
            Compute::Gpu(g) => Side::Gpu(g),
        }
    }
}
