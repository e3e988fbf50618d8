//! The Emulated device: kernels compiled for the host from the same CUDA C (build.rs), and the
//! launch loop that runs them.

use crate::args::{Args, KernelArgs};
use crate::error::GpuError;
use crate::kernels::host_entry;
use rayon::prelude::*;
use std::cell::UnsafeCell;

extern "C" {
    /// `kernels/emu_runtime.cpp`: runs blocks `[begin, end)` of a grid, each block's threads in
    /// order.
    fn pk_emu_run(
        kernel: unsafe extern "C" fn(KernelArgs),
        args: KernelArgs,
        grid_x: u32,
        grid_y: u32,
        grid_z: u32,
        block_x: u32,
        block_y: u32,
        block_z: u32,
        begin: u64,
        end: u64,
    );
}

/// Host memory written by emulated kernels through raw addresses.
pub(crate) struct HostVec<T> {
    data: UnsafeCell<Vec<T>>,
}

// SAFETY: kernels write disjoint elements from different threads (no thread cooperation), and
// the host reads a buffer only between launches.
unsafe impl<T: Send> Sync for HostVec<T> {}

impl<T: Copy + Default> HostVec<T> {
    pub(crate) fn zeros(n: usize) -> Self {
        HostVec {
            data: UnsafeCell::new(vec![T::default(); n]),
        }
    }
    pub(crate) fn from_slice(v: &[T]) -> Self {
        HostVec {
            data: UnsafeCell::new(v.to_vec()),
        }
    }
    pub(crate) fn address(&self) -> u64 {
        // SAFETY: taking the address does not access the elements.
        unsafe { (*self.data.get()).as_mut_ptr() as u64 }
    }
    pub(crate) fn to_vec(&self) -> Vec<T> {
        // SAFETY: launches are synchronous, so no kernel is writing now.
        unsafe { (*self.data.get()).clone() }
    }
}

/// The emulated device (stateless: the kernels are linked in).
pub(crate) struct Emulated;

/// The one instance.
pub(crate) static EMULATED: Emulated = Emulated;

impl Emulated {
    /// Runs a launch of `grid` blocks of `block` threads to completion. Blocks are shared out
    /// between rayon threads in contiguous ranges; each thread of each block runs once.
    pub(crate) fn launch(
        &self,
        name: &str,
        grid: u32,
        block: u32,
        args: &Args,
    ) -> Result<(), GpuError> {
        let kernel = host_entry(name).ok_or_else(|| GpuError::unknown_kernel(name))?;
        let packed = args.packed();
        let grid = grid as u64;
        let chunk = grid
            .div_ceil(4 * rayon::current_num_threads() as u64)
            .max(1);
        (0..grid.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let begin = c * chunk;
            let end = (begin + chunk).min(grid);
            // SAFETY: the kernel was compiled from gpu/kernels with its one `pk_args` argument;
            // every address in `packed` is a live buffer sized for the launch by its caller.
            unsafe { pk_emu_run(kernel, packed, grid as u32, 1, 1, block, 1, 1, begin, end) };
        });
        Ok(())
    }
}
