//! The `--engine` switch of every command that computes ([`EngineArg`]) and the engine it
//! opens ([`EngineKind::open`]).

use super::compute::Compute;
use anyhow::{Context, Result};
use clap::ValueEnum;
use protokd_cpu::{Cpu, Isa};
use protokd_gpu::Gpu;
use protokd_reference::engine::Spec;
use std::sync::Arc;

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
        Ok(Compute::Host(Arc::new(
            Cpu::with_isa(isa).context("--simd")?,
        )))
    }
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
            EngineKind::Spec => Compute::Host(Arc::new(Spec)),
            EngineKind::Cpu => Compute::Host(Arc::new(Cpu::new())),
            EngineKind::Cuda => Compute::Gpu(Gpu::new(protokd_gpu::Device::cuda()?)),
            EngineKind::Emulated => Compute::Gpu(Gpu::new(protokd_gpu::Device::emulated())),
        })
    }
}
