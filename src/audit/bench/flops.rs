//! The floating-point operations of the benched work, counted from the VNet's geometry: the
//! figure `protokd bench` divides by the time to give its GFLOP/s, on every engine.
//!
//! The rule is [`crate::engine::timed`]'s (what its per-call tally adds up to on a host
//! engine): two FLOPs per multiply-add of every convolution's dense definition, nothing for
//! bias, BatchNorm, ReLU, losses or Adam. Per unit of [`blocks`], with `V` the voxels per
//! sample at the unit's input and `N` the batch:
//! * Conv3d 3x3x3, padding 1: `2 * N * cin * cout * 27 * V`;
//! * Conv3d 2x2x2, stride 2 (down): `2 * N * cin * cout * 8 * V / 8` (`V / 8` outputs);
//! * ConvTranspose3d 2x2x2, stride 2 (up): `2 * N * cin * cout * 8 * V` (`V` inputs);
//! * `out_conv` 1x1x1: `2 * N * F * classes * V`.
//!
//! A ProtoKD step runs the four-channel teacher's forward, the one-channel student's forward,
//! and its backward: every weight gradient (the forward's count again) and every input
//! gradient but the first unit's (the image needs none).

use protokd_reference::state::{blocks, UnitKind, VNetConfig};

/// The FLOPs of one forward of a VNet with `cfg` on `n` samples of `dims` voxels (`D, H, W`,
/// multiples of 16).
pub fn forward(cfg: &VNetConfig, n: usize, dims: [usize; 3]) -> u64 {
    let mut voxels: usize = dims.iter().product();
    let mut flops = 0;
    for (_, kind, cin, cout, units) in blocks(cfg) {
        for j in 0..units {
            let cin = if j == 0 { cin } else { cout };
            let (kernel, positions) = match kind {
                UnitKind::Conv => (27, voxels),
                UnitKind::Down => (8, voxels / 8),
                UnitKind::Up => (8, voxels),
            };
            flops += 2 * (n * cin * cout * kernel * positions) as u64;
        }
        match kind {
            UnitKind::Conv => {}
            UnitKind::Down => voxels /= 8,
            UnitKind::Up => voxels *= 8,
        }
    }
    flops + 2 * (n * cfg.n_filters * cfg.n_classes * voxels) as u64
}

/// The FLOPs of one ProtoKD step (teacher on four channels, student on one) with `filters` on
/// `n` samples of `dims` voxels (see the module docs).
pub fn step(filters: usize, n: usize, dims: [usize; 3]) -> u64 {
    let cfg = |in_channels| VNetConfig {
        in_channels,
        n_classes: 4,
        n_filters: filters,
    };
    let voxels: usize = dims.iter().product();
    let first_unit = 2 * (n * filters * 27 * voxels) as u64;
    forward(&cfg(4), n, dims) + 3 * forward(&cfg(1), n, dims) - first_unit
}
