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

use crate::args::Args;
use crate::device::{Buffer, Device};
use crate::error::GpuError;
use crate::reduce;
use crate::tensor::{GpuLabels, GpuTensor};
use protokd_reference::reduce::BLOCK;
use protokd_reference::tensor::Shaped;

/// Label values a byte can hold (`proto_count_*` count each of them).
const CLASSES: usize = 256;

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
    let args = Args::new().buf(y).buf(&partial).int(n).int(v);
    dev.launch("proto_count_chunks", n * nchunks, &args)?;
    let counts = dev.zeros::<u32>(n * CLASSES)?;
    let args = Args::new().buf(&partial).buf(&counts).int(n).int(nchunks);
    dev.launch("proto_count_sum", n * CLASSES, &args)?;
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
    let sizes = |a: Args| a.int(n).int(nf).int(v).int(nk);

    // Step 2: prototype sums of both sides, [2, N, K, F].
    let r = 2 * n * nk * nf;
    let partials = reduce::partials(dev, r, v)?;
    let args = sizes(Args::new().buf(fs).buf(ft).buf(y).buf(&kept).buf(&partials));
    dev.launch("proto_sum_lanes", reduce::lane_threads(r, v), &args)?;
    let sums = dev.zeros::<f32>(r)?;
    reduce::finish(dev, &partials, &sums, r, v)?;

    // Step 3: den [N, K], unit prototypes [2, N, K, F], prototype norms [2, N, K].
    let den = dev.zeros::<f32>(n * nk)?;
    let unit_protos = dev.zeros::<f32>(r)?;
    let proto_norms = dev.zeros::<f32>(2 * n * nk)?;
    let args = Args::new()
        .buf(&sums)
        .buf(&counts)
        .buf(&kept)
        .buf(&den)
        .buf(&unit_protos)
        .buf(&proto_norms)
        .int(n)
        .int(nf)
        .int(nk);
    dev.launch("proto_prototypes", 2 * n * nk, &args)?;

    // Step 4: student voxel norms [N, V] and d = M_s - M_t [N, K, V].
    let norms = dev.zeros::<f32>(n * v)?;
    let len = n * nk * v;
    let diff = dev.zeros::<f32>(len)?;
    let args = sizes(
        Args::new()
            .buf(fs)
            .buf(ft)
            .buf(&unit_protos)
            .buf(&norms)
            .buf(&diff),
    );
    dev.launch("proto_maps", n * v, &args)?;

    // Step 5: the loss.
    let sum = sum_of_squares(dev, &diff, len)?;
    let loss = sum / len as f32;

    // Backward: dp̂ [N, K, F] (the student's half of the prototype buffers comes first).
    let c = (2.0 * scale) / len as f32;
    let r = n * nk * nf;
    let partials = reduce::partials(dev, r, v)?;
    let args = sizes(
        Args::new()
            .buf(fs)
            .buf(&norms)
            .buf(&diff)
            .buf(&partials)
            .f32(c),
    );
    dev.launch("proto_dunit_lanes", reduce::lane_threads(r, v), &args)?;
    let d_unit_protos = dev.zeros::<f32>(r)?;
    reduce::finish(dev, &partials, &d_unit_protos, r, v)?;

    // e [N, K, F].
    let e = dev.zeros::<f32>(r)?;
    let args = Args::new()
        .buf(&d_unit_protos)
        .buf(&unit_protos)
        .buf(&proto_norms)
        .buf(&den)
        .buf(&e)
        .int(n * nk)
        .int(nf);
    dev.launch("proto_prototype_grad", n * nk, &args)?;

    // df [N, F, D, H, W].
    let df = dev.zeros::<f32>(n * nf * v)?;
    let args = Args::new()
        .buf(fs)
        .buf(&norms)
        .buf(&diff)
        .buf(&unit_protos)
        .buf(&e)
        .buf(y)
        .buf(&kept_index)
        .buf(&df)
        .f32(c);
    dev.launch("proto_feature_grad", n * v, &sizes(args))?;
    Ok((loss, GpuTensor::from_buffer(&student_features.shape, df)))
}

/// The canonical sum of `d_j * d_j` over `j < len` (lane step `fma(d_j, d_j, acc)`), downloaded.
fn sum_of_squares(dev: &Device, diff: &Buffer<f32>, len: usize) -> Result<f32, GpuError> {
    let partials = reduce::partials(dev, 1, len)?;
    let args = Args::new().buf(diff).buf(&partials).int(len);
    dev.launch("proto_square_lanes", reduce::lane_threads(1, len), &args)?;
    let out = dev.zeros::<f32>(1)?;
    reduce::finish(dev, &partials, &out, 1, len)?;
    Ok(dev.download(&out)?[0])
}
