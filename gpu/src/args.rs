//! Kernel arguments: every kernel takes one `pk_args` struct of 16 64-bit slots
//! (`kernels/prelude.cuh`), so launches have one signature on the Cuda and Emulated devices.

use crate::device::{Buffer, Elem};

/// Maximum number of arguments of a kernel.
pub const SLOTS: usize = 16;

/// The argument struct as the kernels see it (`struct pk_args { unsigned long long a[16]; }`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelArgs {
    /// Slot values: device addresses, `long long` values, or `f32` bits in the low half.
    pub slots: [u64; SLOTS],
}

// SAFETY: a plain array of u64, the layout of `pk_args` on host and device.
unsafe impl cudarc::driver::DeviceRepr for KernelArgs {}

/// Builder for [`KernelArgs`], in the kernel's argument order.
#[derive(Clone, Debug, Default)]
pub struct Args {
    args: KernelArgs,
    len: usize,
}

impl Args {
    /// No arguments yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, v: u64) -> Self {
        assert!(self.len < SLOTS, "a kernel takes at most {SLOTS} arguments");
        self.args.slots[self.len] = v;
        self.len += 1;
        self
    }

    /// A buffer (read or written by the kernel).
    pub fn buf<T: Elem>(self, b: &Buffer<T>) -> Self {
        let a = b.address();
        self.push(a)
    }

    /// A `long long` value (sizes, strides, indices).
    pub fn int(self, v: usize) -> Self {
        self.push(v as u64)
    }

    /// A signed `long long` value.
    pub fn signed(self, v: i64) -> Self {
        self.push(v as u64)
    }

    /// An `f32` value (its bits in the slot's low half).
    pub fn f32(self, v: f32) -> Self {
        self.push(v.to_bits() as u64)
    }

    /// The packed struct.
    pub fn packed(&self) -> KernelArgs {
        self.args
    }
}
