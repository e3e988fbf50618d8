//! The `--device` switch of every command that computes.

use anyhow::{bail, Result};
use clap::ValueEnum;

/// Where the arithmetic runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The reference engine (protokd-reference) on the CPU.
    Cpu,
    /// NVIDIA GPU through CUDA.
    Cuda,
}

impl Device {
    /// Checks that this build can run on the device. The CUDA path (crate protokd-gpu) is not
    /// part of this build yet, so `cuda` is a clear error, never a silent fall-back to the CPU.
    pub fn require_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda => bail!(
                "--device cuda: this build of protokd has no CUDA path yet (the protokd-gpu \
                 crate is not built); use --device cpu"
            ),
        }
    }
}
