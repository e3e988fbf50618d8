//! The `--device` switch of every command that computes, and what it opens.
//!
//! * `cpu`: the reference engine (protokd-reference: spec or fast kernels, `--kernels`).
//! * `cuda`: an NVIDIA GPU through protokd-gpu (cudarc, kernels compiled by NVRTC at start-up).
//!   Where there is no driver, no NVRTC or no device, a clear error says what was looked for;
//!   there is never a silent fall-back to the CPU.
//! * `emulated`: protokd-gpu's kernels compiled for the host and run as loops over blocks and
//!   threads (the GPU path without a GPU; slow, for tests and audits).
//!
//! All three give the same bits (`protokd verify --device`).

use anyhow::Result;
use clap::ValueEnum;
use protokd_gpu::Gpu;

/// Where the arithmetic runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The reference engine (protokd-reference) on the CPU.
    Cpu,
    /// NVIDIA GPU through CUDA (protokd-gpu).
    Cuda,
    /// protokd-gpu's CUDA C kernels run on the host (no GPU needed; slow).
    Emulated,
}

/// An opened device.
#[derive(Clone, Debug)]
pub enum Compute {
    /// The CPU reference engine.
    Cpu,
    /// A protokd-gpu engine (CUDA or emulated).
    Gpu(Gpu),
}

impl Device {
    /// `cpu`, `cuda` or `emulated`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Emulated => "emulated",
        }
    }

    /// Opens the device (for `cuda`: loads the driver and NVRTC, compiles the kernels).
    pub fn open(self) -> Result<Compute> {
        Ok(match self {
            Device::Cpu => Compute::Cpu,
            Device::Cuda => Compute::Gpu(Gpu::new(protokd_gpu::Device::cuda()?)),
            Device::Emulated => Compute::Gpu(Gpu::new(protokd_gpu::Device::emulated())),
        })
    }
}

impl Compute {
    /// What runs the arithmetic, in words (for logs and provenance records).
    pub fn describe(&self) -> String {
        match self {
            Compute::Cpu => format!(
                "cpu (protokd-reference, {} kernels)",
                protokd_reference::kernels::kernels().name()
            ),
            Compute::Gpu(g) => g.dev.describe(),
        }
    }

    /// `cpu`, `cuda` or `emulated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Compute::Cpu => "cpu",
            Compute::Gpu(g) => g.dev.kind(),
        }
    }
}
