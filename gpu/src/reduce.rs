//! The canonical reduction (reference `reduce`) on a device, in two launches:
//! 1. a kernel computes every lane of every block of `R` reductions of `n` terms into
//!    `partials[R][nblocks][16]` (one thread per lane: a sequential chain from `+0.0` over the
//!    lane's terms in increasing index), with the term of its operation;
//! 2. [`finish`]: `reduce_lane_trees` (one thread per block of each reduction) applies the lane
//!    tree, then `reduce_pairwise_level` runs once per level of the pairwise tree over the blocks
//!    (one thread per value of the next level), the last level writing the results.

use crate::args::{ReduceLaneTreesArgs, ReducePairwiseLevelArgs, ReduceRowsLanesArgs};
use crate::device::{Buffer, Device};
use crate::error::GpuError;
use crate::kernels;
use protokd_reference::reduce::{BLOCK, LANES};

/// Number of blocks of an `n`-term reduction.
pub fn nblocks(n: usize) -> usize {
    n.div_ceil(BLOCK)
}

/// Number of lane threads of `r` reductions of `n` terms (the lanes kernel's thread count).
pub fn lane_threads(r: usize, n: usize) -> usize {
    r * nblocks(n) * LANES
}

/// A partials buffer for `r` reductions of `n` terms (contents unspecified: the lanes kernel
/// writes every element).
pub fn partials(dev: &Device, r: usize, n: usize) -> Result<Buffer<f32>, GpuError> {
    dev.scratch(lane_threads(r, n).max(1))
}

/// Step 2: the trees, from `partials` (overwritten) into `out[r]` (left `+0.0` when `n == 0`:
/// `out` comes from [`Device::zeros`]).
pub fn finish(
    dev: &Device,
    partials: &Buffer<f32>,
    out: &Buffer<f32>,
    r: usize,
    n: usize,
) -> Result<(), GpuError> {
    let nb = nblocks(n);
    if nb == 0 {
        return Ok(());
    }
    let sums = [dev.scratch(r * nb)?, dev.scratch(r * nb)?];
    dev.launch(
        kernels::REDUCE_LANE_TREES,
        r * nb,
        &ReduceLaneTreesArgs {
            partials: partials.ptr(),
            sums: sums[0].ptr(),
            count: (r * nb) as i64,
        },
    )?;
    let (mut len, mut level) = (nb, 0);
    loop {
        let next = len.div_ceil(2);
        let last = next == 1;
        let dst = if last { out } else { &sums[(level + 1) % 2] };
        let dst_stride = if last { 1 } else { nb };
        dev.launch(
            kernels::REDUCE_PAIRWISE_LEVEL,
            r * next,
            &ReducePairwiseLevelArgs {
                src: sums[level % 2].ptr(),
                dst: dst.ptr(),
                count: r as i64,
                len: len as i64,
                src_stride: nb as i64,
                dst_stride: dst_stride as i64,
            },
        )?;
        if last {
            return Ok(());
        }
        (len, level) = (next, level + 1);
    }
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
        kernels::REDUCE_ROWS_LANES,
        lane_threads(r, n),
        &ReduceRowsLanesArgs {
            x: x.ptr(),
            partials: p.ptr(),
            count: r as i64,
            n: n as i64,
        },
    )?;
    let out = dev.zeros(r)?;
    finish(dev, &p, &out, r, n)?;
    Ok(out)
}
