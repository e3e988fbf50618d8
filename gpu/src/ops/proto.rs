//! The prototype (I2FV) loss on a device: `protokd_reference::losses::proto` (its module docs
//! give the formulas and every order; the kernels are `gpu/kernels/proto.cu`).
//!
//! Launch sequence of [`proto`]:
//! 1. `proto_count_chunks`, `proto_count_sum`: exact class counts `[N, 256]` (integers, so any
//!    order gives the same counts). **Host round trip:** the counts are downloaded, because the
//!    kept classes `K` are control flow (they fix the sizes of everything after); `K` and each
//!    label value's position in `K` are uploaded (at most 2 * 256 integers).
//! 2. `proto_sum_lanes` + `reduce::finish`: the `2 * N * |K| * F` prototype sums (student and
//!    teacher), each one canonical reduction over the sample's voxels.
//! 3. `proto_prototypes`: `den`, the prototypes, their norms and unit vectors.
//! 4. `proto_maps`: the voxel norms, both cosine maps and `d = M_s - M_t`.
//! 5. `proto_square_lanes` + `reduce::finish`: the loss sum. **Host round trip:** the sum is
//!    downloaded (the loss is returned as an `f32`) and divided by `N * |K| * V` on the host
//!    (one IEEE division, the reference's bits).
//! 6. Backward: `proto_dunit_lanes` + `reduce::finish` (`dp̂`), `proto_prototype_grad` (`e`),
//!    `proto_feature_grad` (`df`), with `c = (2 * scale) / (N * |K| * V)` computed on the host.

use crate::args::{
    ProtoCountChunksArgs, ProtoCountSumArgs, ProtoDunitLanesArgs, ProtoFeatureGradArgs,
    ProtoMapsArgs, ProtoPrototypeGradArgs, ProtoPrototypesArgs, ProtoSquareLanesArgs,
    ProtoSumLanesArgs,
};
use crate::device::{Buffer, Device};
use crate::error::GpuError;
use crate::kernels::{self, LABEL_VALUES as CLASSES};
use crate::reduce;
use crate::tensor::{GpuLabels, GpuTensor};
use protokd_reference::reduce::BLOCK;
use protokd_reference::tensor::Shaped;

/// `(proto_loss(student_features, teacher_features, labels).loss, proto_backward(&fwd, scale))`
/// of the reference: the prototype loss of the student features against the teacher features
/// (both `[N, F, D, H, W]`) with the shared labels `[N, D, H, W]`, and the gradient of
/// `scale * L` w.r.t. the student features. No class kept (or `F == 0`): `L = 0`, zero gradient.
pub fn proto(
    dev: &Device,
    student_features: &GpuTensor,
    teacher_features: &GpuTensor,
    labels: &GpuLabels,
    scale: f32,
) -> Result<(f32, GpuTensor), GpuError> {
    assert_eq!(
        student_features.shape, teacher_features.shape,
        "proto: student and teacher features differ in shape"
    );
    let [n, nf, d, h, w] = student_features.dims5();
    assert_eq!(
        labels.dims,
        [n, d, h, w],
        "proto: label map {:?} does not match features {:?}",
        labels.dims,
        student_features.shape
    );
    let v = labels.voxels();
    let (fs, ft, y) = (&*student_features.buf, &*teacher_features.buf, &*labels.buf);

    // Step 1: counts (downloaded: the kept classes are control flow).
    if n * v == 0 {
        return Ok((0.0, GpuTensor::zeros(dev, &student_features.shape)?));
    }
    assert!(
        u32::try_from(v).is_ok(),
        "proto: {v} voxels per sample overflow a u32 count"
    );
    let nchunks = v.div_ceil(BLOCK);
    let partial = dev.zeros::<u32>(n * nchunks * CLASSES)?;
    let args = ProtoCountChunksArgs {
        labels: y.ptr(),
        partial: partial.ptr(),
        n: n as i64,
        v: v as i64,
    };
    dev.launch(kernels::PROTO_COUNT_CHUNKS, n * nchunks, &args)?;
    let counts = dev.zeros::<u32>(n * CLASSES)?;
    let args = ProtoCountSumArgs {
        partial: partial.ptr(),
        counts: counts.ptr(),
        n: n as i64,
        nchunks: nchunks as i64,
    };
    dev.launch(kernels::PROTO_COUNT_SUM, n * CLASSES, &args)?;
    let counts_host = dev.download(&counts)?;
    let kept: Vec<i32> = (0..CLASSES)
        .filter(|&k| (0..n).all(|b| counts_host[b * CLASSES + k] > 0))
        .map(|k| k as i32)
        .collect();
    let nk = kept.len();
    if nk == 0 || nf == 0 {
        return Ok((0.0, GpuTensor::zeros(dev, &student_features.shape)?));
    }
    let mut kept_index = vec![-1i32; CLASSES];
    for (kk, &k) in kept.iter().enumerate() {
        kept_index[k as usize] = kk as i32;
    }
    let kept = dev.upload(&kept)?;
    let kept_index = dev.upload(&kept_index)?;
    let (n_, nf_, v_, nk_) = (n as i64, nf as i64, v as i64, nk as i64);

    // Step 2: prototype sums of both sides, [2, N, K, F].
    let r = 2 * n * nk * nf;
    let partials = reduce::partials(dev, r, v)?;
    let args = ProtoSumLanesArgs {
        fs: fs.ptr(),
        ft: ft.ptr(),
        labels: y.ptr(),
        kept: kept.ptr(),
        partials: partials.ptr(),
        n: n_,
        nf: nf_,
        v: v_,
        nk: nk_,
    };
    dev.launch(kernels::PROTO_SUM_LANES, reduce::lane_threads(r, v), &args)?;
    let sums = dev.zeros::<f32>(r)?;
    reduce::finish(dev, &partials, &sums, r, v)?;

    // Step 3: den [N, K], unit prototypes [2, N, K, F], prototype norms [2, N, K].
    let den = dev.zeros::<f32>(n * nk)?;
    let unit_protos = dev.zeros::<f32>(r)?;
    let proto_norms = dev.zeros::<f32>(2 * n * nk)?;
    let args = ProtoPrototypesArgs {
        sums: sums.ptr(),
        counts: counts.ptr(),
        kept: kept.ptr(),
        den_out: den.ptr(),
        unit: unit_protos.ptr(),
        norms: proto_norms.ptr(),
        n: n_,
        nf: nf_,
        nk: nk_,
    };
    dev.launch(kernels::PROTO_PROTOTYPES, 2 * n * nk, &args)?;

    // Step 4: student voxel norms [N, V] and d = M_s - M_t [N, K, V].
    let norms = dev.zeros::<f32>(n * v)?;
    let len = n * nk * v;
    let diff = dev.zeros::<f32>(len)?;
    let args = ProtoMapsArgs {
        fs: fs.ptr(),
        ft: ft.ptr(),
        unit_protos: unit_protos.ptr(),
        norms_s: norms.ptr(),
        diff: diff.ptr(),
        n: n_,
        nf: nf_,
        v: v_,
        nk: nk_,
    };
    dev.launch(kernels::PROTO_MAPS, n * v, &args)?;

    // Step 5: the loss.
    let sum = sum_of_squares(dev, &diff, len)?;
    let loss = sum / len as f32;

    // Backward: dp̂ [N, K, F] (the student's half of the prototype buffers comes first).
    let c = (2.0 * scale) / len as f32;
    let r = n * nk * nf;
    let partials = reduce::partials(dev, r, v)?;
    let args = ProtoDunitLanesArgs {
        fs: fs.ptr(),
        norms: norms.ptr(),
        diff: diff.ptr(),
        partials: partials.ptr(),
        c,
        n: n_,
        nf: nf_,
        v: v_,
        nk: nk_,
    };
    dev.launch(
        kernels::PROTO_DUNIT_LANES,
        reduce::lane_threads(r, v),
        &args,
    )?;
    let d_unit_protos = dev.zeros::<f32>(r)?;
    reduce::finish(dev, &partials, &d_unit_protos, r, v)?;

    // e [N, K, F].
    let e = dev.zeros::<f32>(r)?;
    let args = ProtoPrototypeGradArgs {
        d_unit: d_unit_protos.ptr(),
        unit: unit_protos.ptr(),
        norms: proto_norms.ptr(),
        den: den.ptr(),
        e: e.ptr(),
        count: (n * nk) as i64,
        nf: nf_,
    };
    dev.launch(kernels::PROTO_PROTOTYPE_GRAD, n * nk, &args)?;

    // df [N, F, D, H, W].
    let df = dev.zeros::<f32>(n * nf * v)?;
    let args = ProtoFeatureGradArgs {
        fs: fs.ptr(),
        norms: norms.ptr(),
        diff: diff.ptr(),
        unit_protos: unit_protos.ptr(),
        e: e.ptr(),
        labels: y.ptr(),
        kept_index: kept_index.ptr(),
        df: df.ptr(),
        c,
        n: n_,
        nf: nf_,
        v: v_,
        nk: nk_,
    };
    dev.launch(kernels::PROTO_FEATURE_GRAD, n * v, &args)?;
    Ok((loss, GpuTensor::from_buffer(&student_features.shape, df)))
}

/// The canonical sum of `d_j * d_j` over `j < len` (lane step `fma(d_j, d_j, acc)`), downloaded.
fn sum_of_squares(dev: &Device, diff: &Buffer<f32>, len: usize) -> Result<f32, GpuError> {
    let partials = reduce::partials(dev, 1, len)?;
    let args = ProtoSquareLanesArgs {
        diff: diff.ptr(),
        partials: partials.ptr(),
        len: len as i64,
    };
    dev.launch(
        kernels::PROTO_SQUARE_LANES,
        reduce::lane_threads(1, len),
        &args,
    )?;
    let out = dev.zeros::<f32>(1)?;
    reduce::finish(dev, &partials, &out, 1, len)?;
    Ok(dev.download(&out)?[0])
}
