//! The command line as a whole (`src/main.rs`): the switches that every computing command
//! shares (`--engine`, its older spelling `--device`, `--simd`) and the removed ones
//! (`--kernels`, `PROTOKD_KERNELS`), each refused with the new spelling; bad authors' `.npy`
//! arrays through `segment` and `train`.

#[path = "../common/bounded.rs"]
mod bounded;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/npy.rs"]
mod npy_files;

mod bench;
mod engine_switch;
mod limits;
mod npy;
mod torch_files;
