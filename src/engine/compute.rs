//! An opened engine ([`Compute`]) and the one place that tells the host engines from the GPU
//! engine ([`Compute::run`]): everything else in the application is written once, generic over
//! [`Resident`].

use super::resident::{Describe, HostEngine, Resident};
use protokd_gpu::Gpu;
use std::sync::Arc;

/// An opened engine: a host engine (the spec or the fast CPU engine) or a protokd-gpu engine.
/// The application is written once, generic over [`Resident`]; [`Compute::run`] is the one
/// place that tells the two apart.
#[derive(Clone)]
pub enum Compute {
    /// The spec or the fast CPU engine (host tensors).
    Host(Arc<dyn HostEngine>),
    /// A protokd-gpu engine, CUDA or emulated (device tensors).
    Gpu(Gpu),
}

/// Work written once for every engine: [`Compute::run`] calls [`OnEngine::run`] with the
/// engine it holds.
pub trait OnEngine<'e> {
    /// What the work returns.
    type Output;
    /// Does the work on `engine`.
    fn run<E: Resident + ?Sized>(self, engine: &'e E) -> Self::Output;
}

impl Compute {
    /// Runs `work` on this engine.
    pub fn run<'e, W: OnEngine<'e>>(&'e self, work: W) -> W::Output {
        match self {
            Compute::Host(e) => work.run(&**e),
            Compute::Gpu(g) => work.run(g),
        }
    }

    /// How the engine names itself ([`Describe`]: kind, description, SIMD copy, memory).
    pub fn info(&self) -> &dyn Describe {
        match self {
            Compute::Host(e) => e.as_ref(),
            Compute::Gpu(g) => g,
        }
    }

    /// `spec`, `cpu`, `cuda` or `emulated` ([`Describe::kind`]).
    pub fn kind(&self) -> &'static str {
        self.info().kind()
    }

    /// What runs the arithmetic, in words, for logs and provenance records
    /// ([`Describe::describe`]).
    pub fn describe(&self) -> String {
        self.info().describe()
    }
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
