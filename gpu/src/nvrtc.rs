//! Run-time compilation of the kernels with NVRTC, once per process and architecture.
//!
//! The source NVRTC compiles is `kernels/prelude.cuh`, the other `kernels/*.cuh` headers, then
//! every `kernels/*.cu` file (in file-name order): the same text, file by file, that build.rs
//! gives the host compiler for the Emulated device. Options: `--fmad=false` (no contraction of `a * b + c`: every fma in the
//! kernels is an explicit `__fmaf_rn`), `--prec-div=true`, `--prec-sqrt=true`, `--ftz=false`
//! (IEEE division, square root and subnormals), and the target `compute_XY`.

use crate::error::GpuError;
use crate::kernels::{HEADERS, SOURCES};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The whole source NVRTC compiles.
pub fn source() -> String {
    let mut s = String::new();
    for (name, text) in HEADERS.iter().chain(SOURCES) {
        s.push_str(&format!("\n// ---- {name} ----\n"));
        s.push_str(text);
    }
    s
}

/// The NVRTC options for `arch` (for example `compute_90`).
pub fn options(arch: &str) -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(false),
        use_fast_math: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some("protokd_kernels.cu".into()),
        ..Default::default()
    }
}

/// Whether an NVRTC library can be loaded.
pub fn available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The library names tried for NVRTC.
pub fn looked_for() -> String {
    cudarc::get_lib_name_candidates("nvrtc").join(", ")
}

/// Compiles the kernels for `arch` (cached: each architecture is compiled once per process).
pub fn compile(arch: &str) -> Result<Ptx, GpuError> {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(ptx) = cache.lock().unwrap().get(arch) {
        return Ok(Ptx::from_src(ptx.clone()));
    }
    if !available() {
        return Err(GpuError::NoNvrtc {
            looked_for: looked_for(),
        });
    }
    let ptx = compile_ptx_with_opts(source(), options(arch)).map_err(|e| GpuError::Compile {
        arch: arch.to_string(),
        log: match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        },
    })?;
    let text = ptx.to_src();
    cache.lock().unwrap().insert(arch.to_string(), text.clone());
    Ok(Ptx::from_src(text))
}
