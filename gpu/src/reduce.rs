//! The canonical reduction (reference `reduce`) on a device, in two launches:
//! 1. a kernel computes every lane of every block of `R` reductions of `n` terms into
//!    `partials[R][nblocks][16]` (one thread per lane: a sequential chain from `+0.0` over the
//!    lane's terms in increasing index), with the term of its operation;
//! 2. `reduce_finish` (one thread per reduction) applies the lane tree to each block, then the
//!    pairwise tree over the blocks.

use crate::args::Args;
use crate::device::{Buffer, Device};
use crate::error::GpuError;
use protokd_reference::reduce::{BLOCK, LANES};

/// Number of blocks of an `n`-term reduction.
pub fn nblocks(n: usize) -> usize {
    n.div_ceil(BLOCK)
}

/// Number of lane threads of `r` reductions of `n` terms (the lanes kernel's thread count).
pub fn lane_threads(r: usize, n: usize) -> usize {
    r * nblocks(n) * LANES
}

/// A zeroed partials buffer for `r` reductions of `n` terms.
pub fn partials(dev: &Device, r: usize, n: usize) -> Result<Buffer<f32>, GpuError> {
    dev.zeros(lane_threads(r, n).max(1))
}

/// Step 2: the trees, from `partials` (overwritten) into `out[r]`.
pub fn finish(
    dev: &Device,
    partials: &Buffer<f32>,
    out: &Buffer<f32>,
    r: usize,
    n: usize,
) -> Result<(), GpuError> {
    dev.launch(
        "reduce_finish",
        r,
        &Args::new().buf(partials).buf(out).int(r).int(nblocks(n)),
    )
}

/// `r` canonical sums over the rows of `x` (`[r, n]`, row-major): `out[j] = sum_i x[j n + i]`.
pub fn sum_rows(
    dev: &Device,
    x: &Buffer<f32>,
    r: usize,
    n: usize,
) -> Result<Buffer<f32>, GpuError> {
    let p = partials(dev, r, n)?;
    dev.launch(
        "reduce_rows_lanes",
        lane_threads(r, n),
        &Args::new().buf(x).buf(&p).int(r).int(n),
    )?;
    let out = dev.zeros(r)?;
    finish(dev, &p, &out, r, n)?;
    Ok(out)
}
