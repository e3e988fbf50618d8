//! The `engine` stage (`src/engine/`, and the engines it opens): parity of the spec with
//! PyTorch, bit-reproducibility of a whole step on every host engine and thread count, and the
//! same bytes from the commands on the fast CPU engine and on the emulated GPU device.

#[path = "../common/mod.rs"]
mod common;

mod devices;
mod pytorch_parity;
mod reproducibility;
