//! Which implementation of the heavy kernels runs: the **spec** kernels (`layers`, the readable
//! specification) or the **fast** kernels ([`crate::fast`]), which follow exactly the same
//! orders of operations with register blocking across more outputs, and so give the same bits
//! (asserted by property tests over random shapes, thread counts and with the SIMD copies off).
//!
//! The fast kernels are the default. [`set_kernels`] switches the whole process; the CLI's
//! `--kernels spec` and the environment variable [`KERNELS_ENV`] call it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Environment variable the CLI reads: `spec` or `fast`.
pub const KERNELS_ENV: &str = "PROTOKD_KERNELS";

/// The two implementations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The specification's kernels, as written in `layers`.
    Spec,
    /// The fast kernels of [`crate::fast`] (same bits).
    Fast,
}

impl Kernels {
    /// Parses `spec` or `fast`.
    pub fn parse(s: &str) -> Option<Kernels> {
        match s.trim().to_ascii_lowercase().as_str() {
            "spec" => Some(Kernels::Spec),
            "fast" => Some(Kernels::Fast),
            _ => None,
        }
    }

    /// `spec` or `fast` (what [`Kernels::parse`] reads).
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Spec => "spec",
            Kernels::Fast => "fast",
        }
    }
}

static FAST: AtomicBool = AtomicBool::new(true);

/// Selects the kernels for the whole process.
pub fn set_kernels(k: Kernels) {
    FAST.store(k == Kernels::Fast, Ordering::Relaxed);
}

/// The kernels in use.
pub fn kernels() -> Kernels {
    if FAST.load(Ordering::Relaxed) {
        Kernels::Fast
    } else {
        Kernels::Spec
    }
}
