//! The command line as a whole (`src/main.rs`): the switches that every computing command
//! shares (`--engine`, its older spelling `--device`, `--simd`) and the removed ones
//! (`--kernels`, `PROTOKD_KERNELS`), each refused with the new spelling.

#[path = "../common/bounded.rs"]
mod bounded;
#[path = "../common/mod.rs"]
mod common;

mod engine_switch;
mod limits;
mod torch_files;
