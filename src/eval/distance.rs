//! The exact squared Euclidean distance transform shared by the metrics: the separable
//! lower-envelope algorithm of Felzenszwalb and Huttenlocher (2012), one 1-D pass per axis in
//! f64 (last axis first, then the middle, then the first) with the parabolas placed at
//! `index * spacing`. Every value is `(Δ·s)²` summed over axes for the true nearest feature
//! voxel, so its square root equals SciPy's `distance_transform_edt(..., sampling=spacing)` up
//! to the rounding of that sum (a few ulps).

/// The 1-D squared distance transform of Felzenszwalb and Huttenlocher: `out[p] = min_q
/// ((p - q)·s)² + f[q]`, `f` holding `+inf` where there is no feature. `v` and `z` are scratch.
fn dt1d(f: &[f64], s: f64, out: &mut [f64], v: &mut Vec<usize>, z: &mut Vec<f64>) {
    v.clear();
    z.clear();
    for (q, &fq) in f.iter().enumerate() {
        if fq == f64::INFINITY {
            continue;
        }
        let xq = q as f64 * s;
        while let (Some(&r), Some(&zl)) = (v.last(), z.last()) {
            let xr = r as f64 * s;
            let inter = ((fq + xq * xq) - (f[r] + xr * xr)) / (2.0 * (xq - xr));
            if inter <= zl {
                v.pop();
                z.pop();
            } else {
                z.push(inter);
                break;
            }
        }
        if v.is_empty() {
            z.push(f64::NEG_INFINITY);
        }
        v.push(q);
    }
    if v.is_empty() {
        out.fill(f64::INFINITY);
        return;
    }
    let mut k = 0;
    for (p, o) in out.iter_mut().enumerate() {
        let xp = p as f64 * s;
        while k + 1 < v.len() && z[k + 1] < xp {
            k += 1;
        }
        let d = (p as f64 - v[k] as f64) * s;
        *o = d * d + f[v[k]];
    }
}

/// Exact squared Euclidean distance transform of a box `dims = [n0, n1, n2]` (last axis
/// fastest, e.g. `[nz, ny, nx]`): `g` holds 0 at feature voxels and `+inf` elsewhere and
/// receives the squared distance to the nearest feature voxel, with voxel spacing
/// `[s0, s1, s2]` along the same axes.
pub(crate) fn squared_edt(g: &mut [f64], dims: [usize; 3], spacing: [f64; 3]) {
    let [nz, ny, nx] = dims;
    let n_max = nz.max(ny).max(nx);
    let (mut f, mut out) = (vec![0.0; n_max], vec![0.0; n_max]);
    let (mut v, mut zs) = (Vec::with_capacity(n_max), Vec::with_capacity(n_max));
    // Axis x (contiguous lanes).
    for lane in g.chunks_mut(nx) {
        f[..nx].copy_from_slice(lane);
        dt1d(&f[..nx], spacing[2], &mut out[..nx], &mut v, &mut zs);
        lane.copy_from_slice(&out[..nx]);
    }
    // Axis y.
    for z in 0..nz {
        for x in 0..nx {
            let base = z * ny * nx + x;
            for y in 0..ny {
                f[y] = g[base + y * nx];
            }
            dt1d(&f[..ny], spacing[1], &mut out[..ny], &mut v, &mut zs);
            for y in 0..ny {
                g[base + y * nx] = out[y];
            }
        }
    }
    // Axis z.
    for y in 0..ny {
        for x in 0..nx {
            let base = y * nx + x;
            for z in 0..nz {
                f[z] = g[base + z * ny * nx];
            }
            dt1d(&f[..nz], spacing[0], &mut out[..nz], &mut v, &mut zs);
            for z in 0..nz {
                g[base + z * ny * nx] = out[z];
            }
        }
    }
}
