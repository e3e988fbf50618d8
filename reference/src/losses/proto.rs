//! The prototype loss (the intra-class and inter-class feature variation, "I2FV", map).
//!
//! Features `f` are `[N, F, D, H, W]` (`V = D * H * W` voxels), labels `[N, D, H, W]`; the
//! student's features `f_s` and the teacher's `f_t` share the labels and the shape.
//!
//! # Forward, in order
//! 1. **Kept classes** `K`: the label values (ascending) present in EVERY sample of the
//!    batch (the authors' code skips a class missing from any sample). If `K` is empty,
//!    `L = 0` and the gradient is zero.
//! 2. **Counts and prototypes.** `count[n,k]` = exact number of voxels of sample `n` with
//!    label `k`; `den[n,k] = count[n,k] as f32 + 1e-5` (one rounding). For each sample `n`,
//!    kept class `k` and channel `ch`: one canonical reduction over the sample's voxels
//!    `v = 0 .. V` in increasing `v` with lane step `acc = acc + t_v`,
//!    `t_v = f[n,ch,v]` where `y[n,v] == k` and `t_v = +0.0` elsewhere, then
//!    `proto[n,k,ch] = sum / den[n,k]`. (Skipping the other voxels instead of adding `+0.0`
//!    gives the same bits: a chain that starts at `+0.0` never holds `-0.0`, and `x + 0.0 == x`
//!    for every other `x`.)
//! 3. **Normalisation** of a vector `a` of `F` values (a voxel's feature column or a
//!    prototype): `|a| = sqrt(((0 + a_0 a_0) + a_1 a_1) + ...)` as a sequential fma chain
//!    `acc = fma(a_c, a_c, acc)` from `+0.0` in channel order, then one IEEE `sqrt`;
//!    `m = 1e-5` if `|a| < 1e-5`, else `m = |a|`; `â_c = a_c / m` (IEEE division per component).
//! 4. **Cosine maps.** `M[n,k,v] = â[n,:,v] . p̂[n,k,:]`, the fma chain
//!    `acc = fma(â_ch, p̂_ch, acc)` from `+0.0` in channel order. `M_s` from the student's
//!    features and prototypes, `M_t` from the teacher's.
//! 5. **Loss.** `d = M_s - M_t` (one rounding); ONE canonical reduction over the flat index
//!    `j = (n * |K| + kk) * V + v` of `[N, |K|, V]` (`kk` the position of `k` in `K`) in
//!    increasing `j`, lane step `acc = fma(d_j, d_j, acc)`; `L = sum / (N*|K|*V as f32)`.
//!
//! # Backward (gradient of `scale * L` w.r.t. the STUDENT features only)
//! The gradient flows through the student's voxel features directly and through its
//! prototypes to every voxel of the prototype's class. The teacher gets no gradient (there
//! is no teacher output at all), and the counts are constants.
//! 1. `c = (2 * scale) / (N*|K|*V as f32)`; for every `(n, k, v)`: `gM = c * d` (one rounding,
//!    recomputed identically wherever it is used).
//! 2. **Direct term**, per voxel `(n, v)`: `dâ_ch = sum over kept k ascending of
//!    fma(gM[n,k,v], p̂[n,k,ch], acc)` from `+0.0`; then `da = norm_backward(â, |a|, dâ)`.
//! 3. **Prototype term**, per `(n, k, ch)`: `dp̂[n,k,ch]` = one canonical reduction over the
//!    voxels `v = 0 .. V` in increasing `v` with lane step `acc = fma(gM[n,k,v], â[n,ch,v], acc)`;
//!    then `dproto[n,k,:] = norm_backward(p̂[n,k,:], |proto[n,k,:]|, dp̂[n,k,:])` and
//!    `e[n,k,ch] = dproto[n,k,ch] / den[n,k]` (IEEE division).
//! 4. `df[n,ch,v] = da_ch + e[n,y[n,v],ch]` (direct term first, one rounding) where the
//!    voxel's label is a kept class; `df[n,ch,v] = da_ch` elsewhere.
//!
//! `norm_backward(â, |a|, dâ)`, the gradient through `â = a / max(|a|, 1e-5)`:
//! * if `|a| < 1e-5` (the clamp is active, the divisor a constant): `da_c = dâ_c / 1e-5`;
//! * else: `s = sum_c fma(â_c, dâ_c, acc)` sequential from `+0.0` in channel order, then
//!   `da_c = fma(-â_c, s, dâ_c) / |a|` (one fma, one IEEE division), i.e.
//!   `(dâ - â (â . dâ)) / |a|`.
//!
//! Both branches are the exact derivative of the forward on their side of `|a| = 1e-5`; at
//! `|a| == 1e-5` exactly the unclamped branch is used, as PyTorch does. PyTorch 2.x differs
//! for `0 < |a| < 1e-5`: its `cosine_similarity` clamps the norm in place under `no_grad`,
//! so autograd still differentiates the norm there and gives
//! `dâ / 1e-5 - a (a . dâ) / (1e-10 |a|)` instead of `dâ / 1e-5` (not the derivative of its own
//! forward). At `|a| == 0` (for example a voxel whose ReLU features are all zero; PyTorch's
//! norm backward gives `0` there) and for `|a| >= 1e-5` the two agree.

use super::{check_labels, COS_EPS, PROTO_EPS};
use crate::loops::{Loops, Plain};
use crate::real::Real;
use crate::tensor::Shaped;
use crate::{LabelMap, Tensor};
use rayon::prelude::*;

/// What the prototype forward computed: the loss, the kept classes and everything
/// [`proto_backward`] needs.
#[derive(Clone, Debug)]
pub struct ProtoForward<R: Real = f32> {
    /// `L = mean((M_s - M_t)^2)` over samples, kept classes and voxels; `0` if none is kept.
    pub loss: R,
    /// The classes present in every sample, ascending.
    pub kept_classes: Vec<usize>,
    /// `[N, F, D, H, W]` of the features.
    shape: Vec<usize>,
    /// For each label value, its position in `kept_classes` (if kept).
    kept_index: Vec<Option<usize>>,
    /// The shared labels.
    labels: LabelMap,
    /// `den[n, kk] = count + 1e-5`, `[N, K]`.
    den: Vec<R>,
    /// The student's side of the forward.
    student: Side<R>,
    /// `d = M_s - M_t`, `[N, K, V]`.
    diff: Vec<R>,
}

/// One network's normalised features, prototypes and cosine map.
#[derive(Clone, Debug)]
struct Side<R: Real = f32> {
    /// `â`, `[N, F, V]`.
    unit_features: Vec<R>,
    /// `|a|` per voxel, `[N, V]`.
    feature_norms: Vec<R>,
    /// `p̂`, `[N, K, F]`.
    unit_protos: Vec<R>,
    /// `|proto|`, `[N, K]`.
    proto_norms: Vec<R>,
    /// `M`, `[N, K, V]`.
    map: Vec<R>,
}

/// Step 3: writes `â` into `out` and returns `|a|`.
#[inline]
pub fn normalise<R: Real>(a: &[R], out: &mut [R]) -> R {
    let mut sq = R::ZERO;
    for &x in a {
        sq = x.mul_add(x, sq);
    }
    let norm = sq.sqrt();
    let m = if norm < R::decimal(COS_EPS) {
        R::decimal(COS_EPS)
    } else {
        norm
    };
    for (o, &x) in out.iter_mut().zip(a) {
        *o = x / m;
    }
    norm
}

/// The gradient through step 3 (module docs): writes `da` into `out`.
#[inline]
pub fn norm_backward<R: Real>(unit: &[R], norm: R, d_unit: &[R], out: &mut [R]) {
    if norm < R::decimal(COS_EPS) {
        for (o, &g) in out.iter_mut().zip(d_unit) {
            *o = g / R::decimal(COS_EPS);
        }
    } else {
        let mut s = R::ZERO;
        for (&u, &g) in unit.iter().zip(d_unit) {
            s = u.mul_add(g, s);
        }
        for ((o, &u), &g) in out.iter_mut().zip(unit).zip(d_unit) {
            *o = (-u).mul_add(s, g) / norm;
        }
    }
}

/// Step 1 of the forward: the kept classes and the prototype denominators.
#[derive(Clone, Debug)]
pub struct KeptClasses<R: Real = f32> {
    /// The label values present in every sample, ascending.
    pub classes: Vec<usize>,
    /// For each label value `0 .. 256`, its position in `classes` (if kept).
    pub index: Vec<Option<usize>>,
    /// `den[n, kk] = count[n, classes[kk]] + 1e-5` (one rounding), `[N, K]`.
    pub den: Vec<R>,
}

/// Step 1 (module docs): exact counts per sample and label value, the classes present in every
/// sample, and `den`.
pub fn kept_classes<R: Real>(labels: &LabelMap) -> KeptClasses<R> {
    let n = labels.dims[0];
    let v = labels.voxels();
    let mut counts = vec![[0u64; 256]; n];
    for (b, sample_counts) in counts.iter_mut().enumerate() {
        for &y in &labels.data[b * v..(b + 1) * v] {
            sample_counts[y as usize] += 1;
        }
    }
    let classes: Vec<usize> = (0..256)
        .filter(|&k| n > 0 && counts.iter().all(|c| c[k] > 0))
        .collect();
    let mut index = vec![None; 256];
    for (kk, &k) in classes.iter().enumerate() {
        index[k] = Some(kk);
    }
    let den = counts
        .iter()
        .flat_map(|c| {
            classes
                .iter()
                .map(|&k| R::from_usize(c[k] as usize) + R::decimal(PROTO_EPS))
        })
        .collect();
    KeptClasses {
        classes,
        index,
        den,
    }
}

/// Step 2 for one network's features `[N, F, V]`: each prototype, one canonical reduction per
/// `(n, kk, ch)` divided by `den`, and its unit vector and norm (`normalise`): `(unit_protos,
/// proto_norms)`, `[N, K, F]` and `[N, K]`. The fast engine calls it with its own loops.
pub fn prototypes<R: Real>(
    l: &impl Loops<R>,
    f: &Tensor<R>,
    labels: &LabelMap,
    kept: &[usize],
    den: &[R],
) -> (Vec<R>, Vec<R>) {
    let [n, nf, ..] = f.dims5();
    let v = labels.voxels();
    let nk = kept.len();
    let protos: Vec<R> = (0..n * nk * nf)
        .into_par_iter()
        .map(|idx| {
            let (b, kk, ch) = (idx / (nk * nf), (idx / nf) % nk, idx % nf);
            let k = kept[kk];
            let y = &labels.data[b * v..(b + 1) * v];
            let x = &f.data[(b * nf + ch) * v..(b * nf + ch + 1) * v];
            // Inlined into an engine's SIMD-compiled loop (the fast engine's reductions).
            let sum = l.reduce_with(
                v,
                #[inline(always)]
                |acc, vox| {
                    acc + if y[vox] as usize == k {
                        x[vox]
                    } else {
                        R::ZERO
                    }
                },
            );
            sum / den[b * nk + kk]
        })
        .collect();
    let mut unit_protos = vec![R::ZERO; n * nk * nf];
    let proto_norms: Vec<R> = unit_protos
        .chunks_mut(nf)
        .zip(protos.chunks(nf))
        .map(|(out, p)| normalise(p, out))
        .collect();
    (unit_protos, proto_norms)
}

/// Steps 2-4 for one network's features `[N, F, V]`.
fn side<R: Real>(
    l: &impl Loops<R>,
    f: &Tensor<R>,
    labels: &LabelMap,
    kept: &[usize],
    den: &[R],
) -> Side<R> {
    let [n, nf, ..] = f.dims5();
    let v = labels.voxels();
    let nk = kept.len();

    let (unit_protos, proto_norms) = prototypes(l, f, labels, kept, den);

    // Step 3 for every voxel, step 4; samples in parallel.
    let per_sample: Vec<(Vec<R>, Vec<R>, Vec<R>)> = (0..n)
        .into_par_iter()
        .map(|b| {
            let x = &f.data[b * nf * v..(b + 1) * nf * v];
            let ph = &unit_protos[b * nk * nf..(b + 1) * nk * nf];
            let mut unit = vec![R::ZERO; nf * v];
            let mut norms = vec![R::ZERO; v];
            let mut map = vec![R::ZERO; nk * v];
            let mut col = vec![R::ZERO; nf];
            let mut col_unit = vec![R::ZERO; nf];
            for vox in 0..v {
                for ch in 0..nf {
                    col[ch] = x[ch * v + vox];
                }
                norms[vox] = normalise(&col, &mut col_unit);
                for ch in 0..nf {
                    unit[ch * v + vox] = col_unit[ch];
                }
                for kk in 0..nk {
                    let mut acc = R::ZERO;
                    for ch in 0..nf {
                        acc = col_unit[ch].mul_add(ph[kk * nf + ch], acc);
                    }
                    map[kk * v + vox] = acc;
                }
            }
            (unit, norms, map)
        })
        .collect();
    let mut side = Side {
        unit_features: Vec::with_capacity(n * nf * v),
        feature_norms: Vec::with_capacity(n * v),
        unit_protos,
        proto_norms,
        map: Vec::with_capacity(n * nk * v),
    };
    for (unit, norms, map) in per_sample {
        side.unit_features.extend(unit);
        side.feature_norms.extend(norms);
        side.map.extend(map);
    }
    side
}

/// The prototype loss of the student features against the teacher features (both
/// `[N, F, D, H, W]`) with the shared `labels` `[N, D, H, W]` (module docs).
pub fn proto_loss_on<R: Real>(
    l: &impl Loops<R>,
    student_features: &Tensor<R>,
    teacher_features: &Tensor<R>,
    labels: &LabelMap,
) -> ProtoForward<R> {
    assert_eq!(
        student_features.shape, teacher_features.shape,
        "proto_loss: student and teacher features differ in shape"
    );
    check_labels("proto_loss", student_features, labels, None);

    // Step 1.
    let KeptClasses {
        classes: kept_classes,
        index: kept_index,
        den,
    } = kept_classes(labels);
    let nk = kept_classes.len();

    let student = side(l, student_features, labels, &kept_classes, &den);
    let teacher = side(l, teacher_features, labels, &kept_classes, &den);

    // Step 5.
    let diff: Vec<R> = student
        .map
        .par_iter()
        .zip(&teacher.map)
        .map(|(&ms, &mt)| ms - mt)
        .collect();
    let loss = if nk == 0 {
        R::ZERO
    } else {
        let sum = l.reduce_with(diff.len(), |acc, j| diff[j].mul_add(diff[j], acc));
        sum / R::from_usize(diff.len())
    };

    ProtoForward {
        loss,
        kept_classes,
        shape: student_features.shape.clone(),
        kept_index,
        labels: labels.clone(),
        den,
        student,
        diff,
    }
}

/// Gradient of `scale * L_proto` w.r.t. the student features `[N, F, D, H, W]` (module docs
/// for the order). The teacher gets no gradient.
pub fn proto_backward_on<R: Real>(l: &impl Loops<R>, fwd: &ProtoForward<R>, scale: R) -> Tensor<R> {
    let mut df = Tensor::zeros(&fwd.shape);
    let nk = fwd.kept_classes.len();
    if nk == 0 {
        return df;
    }
    let [n, nf, ..] = df.dims5();
    let v = fwd.labels.voxels();
    let st = &fwd.student;
    let c = (R::from_f64(2.0) * scale) / R::from_usize(fwd.diff.len());
    let g_map = |b: usize, kk: usize, vox: usize| c * fwd.diff[(b * nk + kk) * v + vox];

    // Step 3 first (the direct term does not depend on it): e[n, kk, ch].
    let d_unit_protos: Vec<R> = (0..n * nk * nf)
        .into_par_iter()
        .map(|idx| {
            let (b, kk, ch) = (idx / (nk * nf), (idx / nf) % nk, idx % nf);
            let unit = &st.unit_features[(b * nf + ch) * v..(b * nf + ch + 1) * v];
            l.reduce_with(v, |acc, vox| g_map(b, kk, vox).mul_add(unit[vox], acc))
        })
        .collect();
    let mut e = vec![R::ZERO; n * nk * nf];
    for (j, out) in e.chunks_mut(nf).enumerate() {
        let unit = &st.unit_protos[j * nf..(j + 1) * nf];
        norm_backward(
            unit,
            st.proto_norms[j],
            &d_unit_protos[j * nf..(j + 1) * nf],
            out,
        );
        for x in out.iter_mut() {
            *x /= fwd.den[j];
        }
    }

    // Steps 2 and 4, samples in parallel.
    df.data
        .par_chunks_mut(nf * v)
        .enumerate()
        .for_each(|(b, out)| {
            let unit = &st.unit_features[b * nf * v..(b + 1) * nf * v];
            let ph = &st.unit_protos[b * nk * nf..(b + 1) * nk * nf];
            let mut col_unit = vec![R::ZERO; nf];
            let mut d_unit = vec![R::ZERO; nf];
            let mut da = vec![R::ZERO; nf];
            for vox in 0..v {
                for ch in 0..nf {
                    col_unit[ch] = unit[ch * v + vox];
                }
                for ch in 0..nf {
                    let mut acc = R::ZERO;
                    for kk in 0..nk {
                        acc = g_map(b, kk, vox).mul_add(ph[kk * nf + ch], acc);
                    }
                    d_unit[ch] = acc;
                }
                norm_backward(&col_unit, st.feature_norms[b * v + vox], &d_unit, &mut da);
                let label = fwd.labels.data[b * v + vox] as usize;
                match fwd.kept_index[label] {
                    Some(kk) => {
                        let ek = &e[(b * nk + kk) * nf..(b * nk + kk + 1) * nf];
                        for ch in 0..nf {
                            out[ch * v + vox] = da[ch] + ek[ch];
                        }
                    }
                    None => {
                        for ch in 0..nf {
                            out[ch * v + vox] = da[ch];
                        }
                    }
                }
            }
        });
    df
}

/// [`proto_loss_on`] on the spec's loops ([`Plain`]).
pub fn proto_loss<R: Real>(
    student_features: &Tensor<R>,
    teacher_features: &Tensor<R>,
    labels: &LabelMap,
) -> ProtoForward<R> {
    proto_loss_on(&Plain, student_features, teacher_features, labels)
}

/// [`proto_backward_on`] on the spec's loops ([`Plain`]).
pub fn proto_backward<R: Real>(fwd: &ProtoForward<R>, scale: R) -> Tensor<R> {
    proto_backward_on(&Plain, fwd, scale)
}

// Verifies (every test in this file): R-MTH-7
#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const SHAPE: [usize; 5] = [2, 3, 4, 5, 6];
    const DIMS: [usize; 4] = [2, 4, 5, 6];
    const V: usize = 120;

    /// `a / max(|a|, 1e-5)` in `f64`.
    fn unit64(a: &[f64]) -> Vec<f64> {
        let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        a.iter().map(|x| x / norm.max(1e-5)).collect()
    }

    /// Straightforward `f64` prototype loss, with its own kept-class rule.
    fn proto64(fs: &Tensor, ft: &Tensor, y: &LabelMap) -> f64 {
        let [n, nf, ..] = fs.dims5();
        let v = y.voxels();
        let kept: Vec<u8> = (0..=255u8)
            .filter(|&k| (0..n).all(|b| y.data[b * v..(b + 1) * v].contains(&k)))
            .collect();
        if kept.is_empty() {
            return 0.0;
        }
        let map = |f: &Tensor, b: usize, k: u8| -> Vec<f64> {
            let mut proto = vec![0.0f64; nf];
            let mut count = 0.0;
            for vox in 0..v {
                if y.data[b * v + vox] == k {
                    count += 1.0;
                    for (ch, p) in proto.iter_mut().enumerate() {
                        *p += f.data[(b * nf + ch) * v + vox] as f64;
                    }
                }
            }
            let proto: Vec<f64> = proto.iter().map(|p| p / (count + 1e-5)).collect();
            let ph = unit64(&proto);
            (0..v)
                .map(|vox| {
                    let a: Vec<f64> = (0..nf)
                        .map(|ch| f.data[(b * nf + ch) * v + vox] as f64)
                        .collect();
                    unit64(&a).iter().zip(&ph).map(|(x, p)| x * p).sum()
                })
                .collect()
        };
        let mut total = 0.0;
        for b in 0..n {
            for &k in &kept {
                let (ms, mt) = (map(fs, b, k), map(ft, b, k));
                total += ms
                    .iter()
                    .zip(&mt)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>();
            }
        }
        total / (n * kept.len() * v) as f64
    }

    fn data(seed: u64) -> (Tensor, Tensor, LabelMap) {
        (
            random_tensor(&SHAPE, 100 + seed, 1.0),
            random_tensor(&SHAPE, 200 + seed, 1.0),
            random_labels(DIMS, 4, 300 + seed),
        )
    }

    /// Checks the gradient along `u` against central differences of the `f32` forward with
    /// step `h` (relative error below `tol`) and of the `f64` reference with step `h / 10`
    /// (relative error below `1e-5`: checks the derivation).
    fn check_fd(fs: &Tensor, ft: &Tensor, y: &LabelMap, u: &Tensor, h: f32, tol: f64) {
        let g = proto_backward(&proto_loss(fs, ft, y), 1.0);
        assert_fd(fs, &g, u, h, tol, |x| proto_loss(x, ft, y).loss as f64);
        assert_fd(fs, &g, u, h / 10.0, 1e-5, |x| proto64(x, ft, y));
    }

    #[test]
    fn forward_matches_f64() {
        for seed in 0..4 {
            let (fs, ft, y) = data(seed);
            let f = proto_loss(&fs, &ft, &y);
            assert_eq!(f.kept_classes, vec![0, 1, 2, 3]);
            let want = proto64(&fs, &ft, &y);
            assert!(rel(f.loss as f64, want) < 1e-5, "{} vs {want}", f.loss);
        }
    }

    #[test]
    fn class_missing_from_one_sample_is_skipped() {
        let (fs, ft, mut y) = data(10);
        for l in &mut y.data[V..] {
            if *l == 2 {
                *l = 3;
            }
        }
        let f = proto_loss(&fs, &ft, &y);
        assert_eq!(f.kept_classes, vec![0, 1, 3]);
        let want = proto64(&fs, &ft, &y);
        assert!(rel(f.loss as f64, want) < 1e-5, "{} vs {want}", f.loss);
        let u = random_tensor(&SHAPE, 11, 1.0);
        check_fd(&fs, &ft, &y, &u, 1e-3, 1e-2);
    }

    #[test]
    fn no_kept_class_gives_zero_loss_and_gradient() {
        let (fs, ft, _) = data(20);
        let mut labels = vec![0u8; 2 * V];
        labels[V..].fill(1);
        let y = LabelMap::new(DIMS, labels);
        let f = proto_loss(&fs, &ft, &y);
        assert!(f.kept_classes.is_empty());
        assert_eq!(f.loss.to_bits(), 0.0f32.to_bits());
        let g = proto_backward(&f, 1.0);
        assert_eq!(g.shape, fs.shape);
        assert!(g.data.iter().all(|&x| x.to_bits() == 0));
    }

    /// Along random directions: `f32` forward with `h = 1e-3`, relative error below `1e-2`
    /// (the forward's rounding dominates: observed up to 2e-3); `f64` reference with `h = 1e-4`,
    /// below `1e-5`.
    #[test]
    fn backward_matches_finite_differences() {
        for seed in 0..4 {
            let (fs, ft, y) = data(30 + seed);
            let u = random_tensor(&SHAPE, 40 + seed, 1.0);
            check_fd(&fs, &ft, &y, &u, 1e-3, 1e-2);
        }
    }

    /// Direction `u` supported on the listed `(n, v)` voxels only.
    fn direction_on(voxels: &[(usize, usize)], seed: u64) -> Tensor {
        let r = random_tensor(&SHAPE, seed, 1.0);
        let mut u = Tensor::zeros(&SHAPE);
        for &(b, vox) in voxels {
            for ch in 0..SHAPE[1] {
                let i = (b * SHAPE[1] + ch) * V + vox;
                u.data[i] = r.data[i];
            }
        }
        u
    }

    /// A voxel with all-zero features (`|a| = 0 < 1e-5`): the forward is linear there
    /// (`â = a / 1e-5`), so central differences with `h = 2e-6` (`|h u| < 1e-5`) stay on the
    /// clamped side; relative error below `1e-3` (`f32`) and `1e-5` (`f64`). Also the whole
    /// gradient elsewhere.
    #[test]
    fn zero_feature_voxel_has_a_finite_matching_gradient() {
        let (mut fs, ft, y) = data(50);
        let (b, vox) = (1, 17);
        for ch in 0..SHAPE[1] {
            fs.data[(b * SHAPE[1] + ch) * V + vox] = 0.0;
        }
        let f = proto_loss(&fs, &ft, &y);
        assert_eq!(f.student.feature_norms[b * V + vox], 0.0);
        let u = direction_on(&[(b, vox)], 51);
        check_fd(&fs, &ft, &y, &u, 2e-6, 1e-3);
        let mut u_rest = random_tensor(&SHAPE, 52, 1.0);
        for ch in 0..SHAPE[1] {
            u_rest.data[(b * SHAPE[1] + ch) * V + vox] = 0.0;
        }
        check_fd(&fs, &ft, &y, &u_rest, 1e-3, 1e-2);
    }

    /// A class whose features are all zero in one sample: its prototype has norm `0` and the
    /// gradient goes through the clamped branch of the prototype normalisation too.
    #[test]
    fn zero_prototype_has_a_finite_matching_gradient() {
        let (mut fs, ft, y) = data(60);
        let b = 0;
        let voxels: Vec<(usize, usize)> = (0..V)
            .filter(|&v| y.data[b * V + v] == 2)
            .map(|v| (b, v))
            .collect();
        for &(b, vox) in &voxels {
            for ch in 0..SHAPE[1] {
                fs.data[(b * SHAPE[1] + ch) * V + vox] = 0.0;
            }
        }
        let f = proto_loss(&fs, &ft, &y);
        assert_eq!(f.student.proto_norms[b * 4 + 2], 0.0);
        assert!(rel(f.loss as f64, proto64(&fs, &ft, &y)) < 1e-5);
        let u = direction_on(&voxels, 61);
        check_fd(&fs, &ft, &y, &u, 2e-6, 1e-3);
    }

    #[test]
    fn scale_multiplies_the_gradient() {
        let (fs, ft, y) = data(70);
        let f = proto_loss(&fs, &ft, &y);
        let g1 = proto_backward(&f, 1.0);
        assert_exactly_doubled(&g1, &proto_backward(&f, 2.0));
        assert_scaled(&g1, &proto_backward(&f, 0.1), 0.1, 1e-6);
    }

    /// Identical student and teacher features give `L = 0` and a zero gradient.
    #[test]
    fn identical_features_give_zero() {
        let (fs, _, y) = data(80);
        let f = proto_loss(&fs, &fs, &y);
        assert_eq!(f.loss, 0.0);
        assert!(proto_backward(&f, 1.0).data.iter().all(|&x| x == 0.0));
    }
}
