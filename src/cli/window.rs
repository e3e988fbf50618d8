//! `--patch` and `--stride`: the sliding-window options of the commands that segment
//! (`segment`, `evaluate`).

use anyhow::Result;
use clap::Args;
use protokd::infer::sliding_window::Window;

/// The sliding-window options of the commands that segment (`segment`, `evaluate`).
#[derive(Args, Debug, Clone)]
pub struct WindowArgs {
    /// Sliding-window patch D,H,W (z, y, x), multiples of 16 [default: 96,128,128].
    #[arg(long, value_name = "D,H,W")]
    patch: Option<String>,
    /// Sliding-window stride D,H,W, each between 1 and the patch size [default: half the
    /// patch, 48,64,64 for the default patch].
    #[arg(long, value_name = "D,H,W")]
    stride: Option<String>,
}

impl WindowArgs {
    /// The window these options give ([`Window::from_args`]).
    pub fn window(&self) -> Result<Window> {
        Window::from_args(self.patch.as_deref(), self.stride.as_deref())
    }
}
