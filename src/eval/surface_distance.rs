//! The surface distance of the BraTS challenge's legacy and lesion-wise HD95: DeepMind's
//! surface-distance package (`compute_surface_distances` and `compute_robust_hausdorff`) as
//! shipped in rachitsaluja/BraTS-2023-Metrics, `surface_distance/metrics.py`, re-implemented
//! here. It is not medpy's `hd95` of [`crate::eval::metrics`]: the surface is made of
//! surface elements ("surfels") on the voxel corners, each weighted by its area, and the
//! percentile is taken per direction, not over the union.
//!
//! # Order of operations (arrays in the official code's axis order x, y, z)
//! 1. Crop both masks to the bounding box of their union and pad one zero voxel after the end
//!    of every axis: box `(n0 + 1, n1 + 1, n2 + 1)`.
//! 2. Neighbour code of every corner point `p` of the padded box: the 2 x 2 x 2 voxels
//!    `p - 1 ..= p` (outside the box: 0), bit `128 >> (4 a + 2 b + c)` for the voxel
//!    `p - 1 + (a, b, c)` (SciPy's `correlate` with the kernel `[[[128, 64], [32, 16]], [[8, 4],
//!    [2, 1]]]`). A point is on the border when its code is neither 0 nor 255.
//! 3. Surfel area of a code: `Σ_normals |(n0 s1 s2, n1 s0 s2, n2 s0 s1)|` over the normals of
//!    [`NEIGHBOUR_CODE_TO_NORMALS`] (spacing `s` in mm along x, y, z).
//! 4. Distance of every border point of one mask to the nearest border point of the other
//!    (exact Euclidean transform with the spacing, [`squared_edt`]); `+inf` when the other has
//!    no border point.
//! 5. Per direction: sort the (distance, area) pairs (by distance, then area); the robust
//!    distance is the distance at the first index whose cumulative area (sequential sum)
//!    divided by the total area (NumPy's pairwise sum, [`numpy_sum`]) reaches `percent / 100`
//!    (NumPy's `searchsorted`, left), the last one at most; `+inf` for a mask with no border.
//! 6. The robust Hausdorff distance is the larger of the two directions.

use crate::eval::distance::squared_edt;
use crate::eval::surfel_normals::NEIGHBOUR_CODE_TO_NORMALS;

/// NumPy's `np.sum` of a float64 array: pairwise summation with eight partial sums on blocks of
/// at most 128 values (`pairwise_sum` of NumPy's `loops_utils.h`), so that totals have its
/// rounding.
pub(crate) fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, &v| s + v)
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// The surfel area of every neighbour code for spacing `s = [sx, sy, sz]` (step 3).
fn surfel_areas(s: [f64; 3]) -> [f64; 256] {
    let mut out = [0.0; 256];
    for (area, normals) in out.iter_mut().zip(NEIGHBOUR_CODE_TO_NORMALS.iter()) {
        *area = normals.iter().fold(0.0, |sum, n| {
            let v = [n[0] * s[1] * s[2], n[1] * s[0] * s[2], n[2] * s[0] * s[1]];
            sum + (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
        });
    }
    out
}

/// The robust Hausdorff distance (`percent`, e.g. 95) between two masks of `dims = [nz, ny,
/// nx]` (x fastest) with spacing `spacing_xyz = [sx, sy, sz]` mm, as `compute_robust_hausdorff(
/// compute_surface_distances(gt, pred, spacing), percent)` (module docs); `+inf` when exactly one
/// mask is empty, `None` when both are.
pub(crate) fn robust_hausdorff(
    gt: &[bool],
    pred: &[bool],
    dims: [usize; 3],
    spacing_xyz: [f64; 3],
    percent: f64,
) -> Option<f64> {
    let [_, ny, nx] = dims;
    // Step 1, in (x, y, z) order: the bounding box of the union.
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (i, _) in gt
        .iter()
        .zip(pred)
        .enumerate()
        .filter(|(_, (g, p))| **g || **p)
    {
        let c = [i % nx, (i / nx) % ny, i / (nx * ny)];
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
    }
    if lo[0] == usize::MAX {
        return None;
    }
    let b = [hi[0] - lo[0] + 2, hi[1] - lo[1] + 2, hi[2] - lo[2] + 2];
    let at = |m: &[bool], x: usize, y: usize, z: usize| -> bool {
        // Corner-box coordinates minus one: voxel (x - 1, y - 1, z - 1) of the crop.
        if x == 0 || y == 0 || z == 0 || x == b[0] || y == b[1] || z == b[2] {
            return false;
        }
        let (gx, gy, gz) = (lo[0] + x - 1, lo[1] + y - 1, lo[2] + z - 1);
        gx <= hi[0] && gy <= hi[1] && gz <= hi[2] && m[(gz * ny + gy) * nx + gx]
    };
    // Step 2: neighbour codes on the padded box (x slowest, as the official arrays).
    let codes = |m: &[bool]| -> Vec<u8> {
        let mut out = Vec::with_capacity(b[0] * b[1] * b[2]);
        for x in 0..b[0] {
            for y in 0..b[1] {
                for z in 0..b[2] {
                    let mut code = 0u8;
                    for (bit, (da, db, dc)) in (0..8).map(|k| (k, (k >> 2, (k >> 1) & 1, k & 1))) {
                        if at(m, x + da, y + db, z + dc) {
                            code |= 128 >> bit;
                        }
                    }
                    out.push(code);
                }
            }
        }
        out
    };
    let (cg, cp) = (codes(gt), codes(pred));
    let border = |c: &u8| *c != 0 && *c != 255;
    let areas = surfel_areas(spacing_xyz);
    // Step 4: distances from the border points of `from` to the border of `to`.
    let directed = |from: &[u8], to: &[u8]| -> Vec<(f64, f64)> {
        let mut g: Vec<f64> = to
            .iter()
            .map(|c| if border(c) { 0.0 } else { f64::INFINITY })
            .collect();
        // No border point in `to`: every distance stays `+inf`.
        squared_edt(&mut g, b, spacing_xyz);
        from.iter()
            .zip(&g)
            .filter(|(c, _)| border(c))
            .map(|(c, d)| (d.sqrt(), areas[*c as usize]))
            .collect()
    };
    // Step 5.
    let robust = |mut pairs: Vec<(f64, f64)>| -> f64 {
        if pairs.is_empty() {
            return f64::INFINITY;
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let area: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let total = numpy_sum(&area);
        let target = percent / 100.0;
        let mut cum = 0.0;
        let idx = area
            .iter()
            .position(|&a| {
                cum += a;
                cum / total >= target
            })
            .unwrap_or(pairs.len() - 1);
        pairs[idx].0
    };
    let gt_to_pred = robust(directed(&cg, &cp));
    let pred_to_gt = robust(directed(&cp, &cg));
    Some(gt_to_pred.max(pred_to_gt))
}

// Verifies (every test in this file): R-MTH-11
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_pairwise_sum_blocks() {
        // Below 8 values: a plain chain; exact integers make every order agree.
        assert_eq!(numpy_sum(&[1.0, 2.0, 3.0]), 6.0);
        let v: Vec<f64> = (0..300).map(f64::from).collect();
        assert_eq!(numpy_sum(&v), (0..300).sum::<i32>() as f64);
        // 1e16 and fifteen ones: a chain loses every one (ties to even); the eight partial sums
        // keep fourteen. NumPy 1.26: np.sum(np.array([1e16] + [1.0] * 15)) - 1e16 == 14.0.
        let mut w = vec![1.0; 16];
        w[0] = 1e16;
        assert_eq!(numpy_sum(&w), 1e16 + 14.0);
    }

    #[test]
    fn one_voxel_against_its_neighbour() {
        // Two single voxels one apart along x: every corner of one cube is within 1 of the
        // other cube's corners; the far corners are exactly 1 away.
        let mut a = vec![false; 27];
        let mut b = vec![false; 27];
        a[13] = true;
        b[14] = true;
        let d = robust_hausdorff(&a, &b, [3, 3, 3], [1.0; 3], 95.0).unwrap();
        assert_eq!(d, 1.0);
        assert_eq!(
            robust_hausdorff(&a, &a, [3, 3, 3], [1.0; 3], 95.0),
            Some(0.0)
        );
        let e = vec![false; 27];
        assert_eq!(
            robust_hausdorff(&a, &e, [3, 3, 3], [1.0; 3], 95.0),
            Some(f64::INFINITY)
        );
        assert_eq!(robust_hausdorff(&e, &e, [3, 3, 3], [1.0; 3], 95.0), None);
    }
}
