//! The `--engine` and `--simd` options of every command that computes.

use anyhow::Result;
use protokd::engine::{Compute, EngineKind};

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
    /// Opens the engine asked for ([`EngineKind::open_with_simd`]).
    pub fn open(&self) -> Result<Compute> {
        self.kind.open_with_simd(self.simd.as_deref())
    }
}
