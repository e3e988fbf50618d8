//! The Cuda device: one context and one stream on one GPU, every kernel loaded from the module
//! NVRTC compiled for its architecture.

use crate::args::KernelArgs;
use crate::error::GpuError;
use crate::kernels::Kernel;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Whether a CUDA driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// An open GPU.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// The loaded kernels, in [`Kernel`] order.
    functions: Vec<CudaFunction>,
    description: String,
}

impl CudaDevice {
    /// Opens GPU `ordinal` (once per process: later calls return the same device).
    pub(crate) fn open(ordinal: usize) -> Result<Arc<CudaDevice>, GpuError> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let open = OPEN.get_or_init(Default::default);
        let mut open = open.lock().unwrap();
        if let Some(d) = open.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(Self::open_new(ordinal)?);
        open.insert(ordinal, d.clone());
        Ok(d)
    }

    fn open_new(ordinal: usize) -> Result<CudaDevice, GpuError> {
        if !driver_present() {
            return Err(GpuError::NoDriver {
                looked_for: cudarc::get_lib_name_candidates("cuda").join(", "),
            });
        }
        let count = CudaContext::device_count()
            .map_err(|e| GpuError::driver("counting CUDA devices", e))?
            .max(0) as usize;
        if ordinal >= count {
            return Err(GpuError::NoDevice { count, ordinal });
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| GpuError::driver(format!("opening CUDA device {ordinal}"), e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| GpuError::driver("reading the compute capability", e))?;
        let name = ctx
            .name()
            .map_err(|e| GpuError::driver("reading the device name", e))?;
        let mut driver = 0i32;
        // SAFETY: writes one int; the driver library is loaded (checked above).
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver) };
        let arch = format!("compute_{major}{minor}");
        let ptx = crate::nvrtc::compile(&arch)?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| GpuError::driver("loading the compiled kernels", e))?;
        let functions = Kernel::ALL
            .iter()
            .map(|k| {
                module
                    .load_function(k.name())
                    .map_err(|e| GpuError::driver(format!("loading kernel {}", k.name()), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.default_stream();
        Ok(CudaDevice {
            description: format!(
                "{name}, compute {major}.{minor}, driver API {}.{}, kernels built for {arch} by NVRTC",
                driver / 1000,
                (driver % 1000) / 10
            ),
            ctx,
            stream,
            functions,
        })
    }

    /// Name, compute capability, driver version.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(crate) fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        grid: u32,
        block: u32,
        args: &A,
    ) -> Result<(), GpuError> {
        let f = &self.functions[kernel as usize];
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(f);
        b.arg(args);
        // SAFETY: the kernel takes exactly one argument, its `pk_<family>_args` struct by value
        // (prelude.cuh), which `A` is (`TypedKernel<A>`, with the layout asserted on both
        // sides); its addresses are live device buffers sized for the launch by the caller.
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(|e| GpuError::driver(format!("launching {}", kernel.name()), e))
    }

    pub(crate) fn memory_in_use(&self) -> Result<u64, GpuError> {
        let during = "reading the memory in use";
        self.ctx
            .bind_to_thread()
            .map_err(|e| GpuError::driver(during, e))?;
        let (free, total) =
            cudarc::driver::result::mem_get_info().map_err(|e| GpuError::driver(during, e))?;
        Ok((total - free) as u64)
    }

    pub(crate) fn synchronize(&self) -> Result<(), GpuError> {
        self.ctx
            .synchronize()
            .map_err(|e| GpuError::driver("waiting for the device", e))
    }
}
