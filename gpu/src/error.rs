//! Errors of the GPU path: each says what was looked for or what failed.

use thiserror::Error;

/// What went wrong on a device.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No CUDA driver library could be loaded.
    #[error("--engine cuda: no CUDA driver found (looked for the shared libraries {looked_for}); install the NVIDIA driver or put its library folder on LD_LIBRARY_PATH, or use --engine cpu or --engine emulated")]
    NoDriver {
        /// The file names tried.
        looked_for: String,
    },
    /// No NVRTC library could be loaded (it compiles the kernels at run time).
    #[error("--engine cuda: no NVRTC library found (looked for {looked_for}); install the CUDA toolkit's NVRTC (or the nvidia-cuda-nvrtc wheel) and put its folder on LD_LIBRARY_PATH")]
    NoNvrtc {
        /// The file names tried.
        looked_for: String,
    },
    /// The driver loaded but reports no device (or not the one asked for).
    #[error(
        "--engine cuda: the CUDA driver reports {count} device(s); device {ordinal} does not exist"
    )]
    NoDevice {
        /// Devices present.
        count: usize,
        /// Device asked for.
        ordinal: usize,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver error during {during}: {message}")]
    Driver {
        /// What was being done.
        during: String,
        /// The driver's message.
        message: String,
    },
    /// NVRTC refused the kernel sources.
    #[error("NVRTC could not compile the kernels for {arch}:\n{log}")]
    Compile {
        /// Target architecture.
        arch: String,
        /// NVRTC's log.
        log: String,
    },
}

impl GpuError {
    /// A driver error with context.
    pub(crate) fn driver(during: impl Into<String>, e: impl std::fmt::Debug) -> Self {
        GpuError::Driver {
            during: during.into(),
            message: format!("{e:?}"),
        }
    }
}

impl From<GpuError> for protokd_reference::error::EngineError {
    fn from(e: GpuError) -> Self {
        protokd_reference::error::EngineError::Device(e.to_string())
    }
}
