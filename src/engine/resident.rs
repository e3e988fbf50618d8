//! What the application needs of an engine besides its arithmetic ([`Engine`]): its name, and
//! moving tensors between the host and wherever the engine keeps them ([`Resident`]).
//!
//! Two implementations cover every engine: one for the host engines as one type
//! ([`HostEngine`]: the spec and the fast CPU engine; transfers are borrows and moves) and one
//! for protokd-gpu's engine (transfers are uploads and downloads). A new host engine needs only
//! [`Describe`].

use protokd_cpu::Cpu;
use protokd_gpu::{Gpu, GpuLabels, GpuTensor};
use protokd_reference::engine::{Engine, Spec};
use protokd_reference::error::EngineError;
use protokd_reference::layers::batchnorm3d::BnCache;
use protokd_reference::{LabelMap, Tensor};
use std::borrow::Cow;

/// How an engine names itself in logs, reports and provenance records.
pub trait Describe {
    /// `spec`, `cpu`, `cuda` or `emulated`.
    fn kind(&self) -> &'static str;
    /// What runs the arithmetic, in words.
    fn describe(&self) -> String;
    /// The SIMD copy the engine runs, where it has several (the fast CPU engine).
    fn simd(&self) -> Option<&'static str> {
        None
    }
    /// Device memory in use, in bytes, where the engine has its own memory.
    fn memory_in_use(&self) -> Result<Option<u64>, EngineError> {
        Ok(None)
    }
}

impl Describe for Spec {
    fn kind(&self) -> &'static str {
        "spec"
    }
    fn describe(&self) -> String {
        "spec (protokd-reference, plain loops)".to_string()
    }
}

impl Describe for Cpu {
    fn kind(&self) -> &'static str {
        "cpu"
    }
    fn describe(&self) -> String {
        format!("cpu (protokd-cpu, {} SIMD copy)", self.isa().name())
    }
    fn simd(&self) -> Option<&'static str> {
        Some(self.isa().name())
    }
}

impl Describe for Gpu {
    fn kind(&self) -> &'static str {
        self.dev.kind()
    }
    fn describe(&self) -> String {
        self.dev.describe()
    }
    fn memory_in_use(&self) -> Result<Option<u64>, EngineError> {
        Ok(self.dev.memory_in_use()?)
    }
}

/// An engine on host tensors (the spec or the fast CPU engine), as one type.
pub trait HostEngine:
    Engine<R = f32, T = Tensor, Labels = LabelMap, BnCache = BnCache> + Describe + Send + Sync
{
}

impl<
        E: Engine<R = f32, T = Tensor, Labels = LabelMap, BnCache = BnCache> + Describe + Send + Sync,
    > HostEngine for E
{
}

/// An engine whose tensors are made from, and read back into, host tensors. The application
/// is written once over this trait (see [`crate::engine::OnEngine`]).
pub trait Resident: Engine<R = f32, Labels: Clone> + Describe + Sync {
    /// `t` where the engine keeps its tensors (a borrow on the host).
    fn upload<'t>(&self, t: &'t Tensor) -> Result<Cow<'t, Self::T>, EngineError>;
    /// Labels where the engine keeps them (a borrow on the host).
    fn upload_labels<'t>(&self, l: &'t LabelMap) -> Result<Cow<'t, Self::Labels>, EngineError>;
    /// `t` on the host (a borrow on the host).
    fn download<'t>(&self, t: &'t Self::T) -> Result<Cow<'t, Tensor>, EngineError>;
    /// `t` on the host, consuming it (a move on the host).
    fn download_owned(&self, t: Self::T) -> Result<Tensor, EngineError>;
    /// Returns when every computation issued so far has finished (for timing).
    fn synchronize(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

impl Resident for dyn HostEngine + '_ {
    fn upload<'t>(&self, t: &'t Tensor) -> Result<Cow<'t, Tensor>, EngineError> {
        Ok(Cow::Borrowed(t))
    }
    fn upload_labels<'t>(&self, l: &'t LabelMap) -> Result<Cow<'t, LabelMap>, EngineError> {
        Ok(Cow::Borrowed(l))
    }
    fn download<'t>(&self, t: &'t Tensor) -> Result<Cow<'t, Tensor>, EngineError> {
        Ok(Cow::Borrowed(t))
    }
    fn download_owned(&self, t: Tensor) -> Result<Tensor, EngineError> {
        Ok(t)
    }
}

impl Resident for Gpu {
    fn upload<'t>(&self, t: &'t Tensor) -> Result<Cow<'t, GpuTensor>, EngineError> {
        Ok(Cow::Owned(GpuTensor::upload(&self.dev, t)?))
    }
    fn upload_labels<'t>(&self, l: &'t LabelMap) -> Result<Cow<'t, GpuLabels>, EngineError> {
        Ok(Cow::Owned(GpuLabels::upload(&self.dev, l)?))
    }
    fn download<'t>(&self, t: &'t GpuTensor) -> Result<Cow<'t, Tensor>, EngineError> {
        Ok(Cow::Owned(t.download(&self.dev)?))
    }
    fn download_owned(&self, t: GpuTensor) -> Result<Tensor, EngineError> {
        Ok(t.download(&self.dev)?)
    }
    fn synchronize(&self) -> Result<(), EngineError> {
        Ok(self.dev.synchronize()?)
    }
}
