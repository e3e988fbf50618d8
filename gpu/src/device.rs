//! The two devices behind one interface, and their buffers.
//!
//! * [`Device::Cuda`]: an NVIDIA GPU through cudarc (driver API, one stream); the kernels are
//!   compiled by NVRTC once per process and architecture ([`crate::nvrtc`]).
//! * [`Device::Emulated`]: the same kernel text compiled by the host C++ compiler (build.rs);
//!   a launch runs every block's threads one after another, blocks spread over rayon threads.
//!   Kernels never cooperate between threads, so this computes exactly what the GPU computes.
//!
//! Buffers are typed ([`Buffer<T>`]); their contents cross between host and device only through
//! [`Device::upload`] and [`Device::download`].

use crate::args::{DevPtr, KernelArgs};
use crate::cuda::CudaDevice;
use crate::emulated::{HostVec, EMULATED};
use crate::error::GpuError;
use crate::kernels::TypedKernel;
use cudarc::driver::{CudaSlice, DevicePtr};
use std::sync::Arc;

/// Threads per block of every launch.
pub const BLOCK_THREADS: u32 = 256;

/// Element types a buffer may hold.
pub trait Elem:
    cudarc::driver::DeviceRepr
    + cudarc::driver::ValidAsZeroBits
    + Copy
    + Default
    + Send
    + Sync
    + 'static
{
}
impl Elem for f32 {}
impl Elem for u8 {}
impl Elem for i32 {}
impl Elem for u32 {}

/// Where kernels run.
#[derive(Clone)]
pub enum Device {
    /// An NVIDIA GPU.
    Cuda(Arc<CudaDevice>),
    /// The host, running the same kernel sources (for testing without a GPU).
    Emulated,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A typed device buffer. (A CUDA allocation holds at least one element, since the driver
/// refuses empty allocations; `len` is the buffer's logical length.)
pub struct Buffer<T: Elem> {
    inner: Inner<T>,
    len: usize,
}

enum Inner<T: Elem> {
    Cuda(CudaSlice<T>),
    Host(HostVec<T>),
}

impl<T: Elem> Buffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address a kernel sees, typed (for an argument struct's field).
    pub(crate) fn ptr(&self) -> DevPtr<T> {
        DevPtr::from_address(self.address())
    }

    /// The address a kernel sees.
    pub(crate) fn address(&self) -> u64 {
        match &self.inner {
            Inner::Cuda(s) => {
                let (ptr, _sync) = s.device_ptr(s.stream());
                ptr
            }
            Inner::Host(v) => v.address(),
        }
    }
}

impl Device {
    /// The first CUDA device (see [`Device::cuda_ordinal`]).
    pub fn cuda() -> Result<Device, GpuError> {
        Self::cuda_ordinal(0)
    }

    /// CUDA device `ordinal`, with the kernels compiled for it. A clear error where there is no
    /// driver, no NVRTC or no such device; never a fall-back.
    pub fn cuda_ordinal(ordinal: usize) -> Result<Device, GpuError> {
        Ok(Device::Cuda(CudaDevice::open(ordinal)?))
    }

    /// The emulated device.
    pub fn emulated() -> Device {
        Device::Emulated
    }

    /// `cuda (NVIDIA H100 ..., compute 9.0, driver ...)` or `emulated (host C++)`.
    pub fn describe(&self) -> String {
        match self {
            Device::Cuda(d) => format!("cuda ({})", d.description()),
            Device::Emulated => "emulated (the CUDA C kernels compiled for the host)".into(),
        }
    }

    /// `cuda` or `emulated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cuda(_) => "cuda",
            Device::Emulated => "emulated",
        }
    }

    /// A buffer of `n` zero elements.
    pub fn zeros<T: Elem>(&self, n: usize) -> Result<Buffer<T>, GpuError> {
        let inner = match self {
            Device::Cuda(d) => Inner::Cuda(
                d.stream()
                    .alloc_zeros::<T>(n.max(1))
                    .map_err(|e| GpuError::driver(format!("allocating {n} elements"), e))?,
            ),
            Device::Emulated => Inner::Host(HostVec::zeros(n)),
        };
        Ok(Buffer { inner, len: n })
    }

    /// A buffer of `n` elements whose contents are unspecified (not cleared): for outputs that a
    /// kernel writes entirely before anything reads them.
    pub fn scratch<T: Elem>(&self, n: usize) -> Result<Buffer<T>, GpuError> {
        match self {
            Device::Cuda(d) => Ok(Buffer {
                // SAFETY: the element types are plain numbers (any bits are a value), and the
                // caller's kernel writes every element before it is read.
                inner: Inner::Cuda(
                    unsafe { d.stream().alloc::<T>(n.max(1)) }
                        .map_err(|e| GpuError::driver(format!("allocating {n} elements"), e))?,
                ),
                len: n,
            }),
            Device::Emulated => self.zeros(n),
        }
    }

    /// Copies host values to a new buffer.
    pub fn upload<T: Elem>(&self, data: &[T]) -> Result<Buffer<T>, GpuError> {
        if data.is_empty() {
            return self.zeros(0);
        }
        let inner = match self {
            Device::Cuda(d) => Inner::Cuda(
                d.stream()
                    .clone_htod(data)
                    .map_err(|e| GpuError::driver("copying to the device", e))?,
            ),
            Device::Emulated => Inner::Host(HostVec::from_slice(data)),
        };
        Ok(Buffer {
            inner,
            len: data.len(),
        })
    }

    /// Copies a buffer's values to the host (waits for every launch before it).
    pub fn download<T: Elem>(&self, b: &Buffer<T>) -> Result<Vec<T>, GpuError> {
        match &b.inner {
            Inner::Cuda(s) => s
                .stream()
                .clone_dtoh(&s.slice(..b.len))
                .map_err(|e| GpuError::driver("copying from the device", e)),
            Inner::Host(v) => Ok(v.to_vec()),
        }
    }

    /// Launches `kernel` with its arguments `args` over `threads` threads (a 1-D grid of
    /// [`BLOCK_THREADS`]-thread blocks; threads past `threads` in the last block must return at
    /// once, which every kernel checks). Does nothing for `threads == 0`.
    pub fn launch<A: KernelArgs>(
        &self,
        kernel: TypedKernel<A>,
        threads: usize,
        args: &A,
    ) -> Result<(), GpuError> {
        let kernel = kernel.kernel();
        let name = kernel.name();
        if threads == 0 {
            return Ok(());
        }
        let blocks = threads.div_ceil(BLOCK_THREADS as usize);
        let grid = u32::try_from(blocks).map_err(|_| GpuError::Driver {
            during: format!("launching {name}"),
            message: format!("{threads} threads need {blocks} blocks, more than a grid holds"),
        })?;
        let profiling = crate::profile::enabled();
        if profiling {
            self.synchronize()?;
        }
        let t0 = std::time::Instant::now();
        match self {
            Device::Cuda(d) => d.launch(kernel, grid, BLOCK_THREADS, args)?,
            Device::Emulated => EMULATED.launch(kernel, grid, BLOCK_THREADS, args),
        }
        if profiling {
            self.synchronize()?;
            crate::profile::record(name, t0.elapsed());
        }
        Ok(())
    }

    /// Device memory in use (`total - free` as the driver reports it, every process on the
    /// GPU), or `None` when emulated.
    pub fn memory_in_use(&self) -> Result<Option<u64>, GpuError> {
        match self {
            Device::Cuda(d) => d.memory_in_use().map(Some),
            Device::Emulated => Ok(None),
        }
    }

    /// Waits until every launch so far has finished (a no-op when emulated).
    pub fn synchronize(&self) -> Result<(), GpuError> {
        match self {
            Device::Cuda(d) => d.synchronize(),
            Device::Emulated => Ok(()),
        }
    }
}
