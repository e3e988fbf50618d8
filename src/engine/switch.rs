//! The engines `--engine` names ([`EngineKind`]) and opening one ([`EngineKind::open`],
//! [`EngineKind::open_with_simd`]).

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

    /// Opens the engine; with `simd`, the fast CPU engine on that SIMD copy (`avx512`,
    /// `avx2+fma`, `neon`, `portable`), refused for another engine, an unknown name or a copy
    /// this CPU cannot run.
    pub fn open_with_simd(self, simd: Option<&str>) -> Result<Compute> {
        let Some(name) = simd else {
            return self.open();
        };
        anyhow::ensure!(
            self == EngineKind::Cpu,
            "--simd {name}: the SIMD copy is a setting of the fast CPU engine (--engine cpu), \
             not of --engine {}",
            self.name()
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
