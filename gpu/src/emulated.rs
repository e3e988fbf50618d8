//! The Emulated device: kernels compiled for the host from the same CUDA C (build.rs), and the
//! launch loop that runs them.

use crate::args::KernelArgs;
use crate::kernels::{host_entry, Kernel};
use rayon::prelude::*;
use std::cell::UnsafeCell;
use std::ffi::c_void;

extern "C" {
    /// `kernels/emu_runtime.cpp`: runs blocks `[begin, end)` of a grid, each block's threads in
    /// order, calling `kernel(args)` (a kernel's host entry point and its argument struct).
    fn pk_emu_run(
        kernel: unsafe extern "C" fn(*const c_void),
        args: *const c_void,
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
    pub(crate) fn launch<A: KernelArgs>(&self, kernel: Kernel, grid: u32, block: u32, args: &A) {
        let entry = host_entry(kernel);
        // The struct's address as an integer, to share it between threads (it is only read).
        let args = args as *const A as usize;
        let grid = grid as u64;
        let chunk = grid
            .div_ceil(4 * rayon::current_num_threads() as u64)
            .max(1);
        (0..grid.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let begin = c * chunk;
            let end = (begin + chunk).min(grid);
            // SAFETY: `entry` reads the struct of `kernel`, which `A` is (`TypedKernel<A>`, with
            // the layout asserted on both sides); every address in it is a live buffer sized
            // for the launch by its caller.
            unsafe {
                pk_emu_run(
                    entry,
                    args as *const c_void,
                    grid as u32,
                    1,
                    1,
                    block,
                    1,
                    1,
                    begin,
                    end,
                )
            };
        });
    }
}
