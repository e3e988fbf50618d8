// Verifies (every test in this file): R-NUM-5, R-MTH-7
//! The prototype loss on the device (`ops::proto::proto`) gives the bits of the reference's
//! `proto_loss(..).loss` and `proto_backward(..)`, loss and gradient.

mod common;
use common::{assert_same_bits, pick, random_labels, random_tensor};
use protokd_gpu::ops::proto::proto;
use protokd_gpu::{GpuLabels, GpuTensor};
use protokd_reference::losses::proto::{proto_backward, proto_loss};
use protokd_reference::tensor::Shaped;
use protokd_reference::{LabelMap, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// Runs both and compares the bits; returns the reference's kept classes.
fn check(what: &str, fs: &Tensor, ft: &Tensor, y: &LabelMap, scale: f32) -> Vec<usize> {
    let dev = common::device();
    let fwd = proto_loss(fs, ft, y);
    let want = proto_backward(&fwd, scale);
    let (loss, grad) = proto(
        &dev,
        &GpuTensor::upload(&dev, fs).unwrap(),
        &GpuTensor::upload(&dev, ft).unwrap(),
        &GpuLabels::upload(&dev, y).unwrap(),
        scale,
    )
    .unwrap();
    assert_eq!(
        loss.to_bits(),
        fwd.loss.to_bits(),
        "{what}: loss {loss:e} vs {:e}",
        fwd.loss
    );
    assert_same_bits(
        &format!("{what}: gradient"),
        &grad.download(&dev).unwrap(),
        &want,
    );
    fwd.kept_classes
}

/// Sets the feature column of voxel `vox` of sample `b` to `amp` times its values (0: all zero).
fn scale_column(f: &mut Tensor, b: usize, vox: usize, amp: f32) {
    let [_, nf, d, h, w] = f.dims5();
    let v = d * h * w;
    for ch in 0..nf {
        f.data[(b * nf + ch) * v + vox] *= amp;
    }
}

/// Random shapes (N 1..3, F 1..8, each spatial extent 1..12, every third case 1..2),
/// 2..4 classes (small volumes often miss a class in some sample, so it is not kept), features
/// with some all-zero voxels and some of norm below 1e-5 (the clamped branches), scale 0.1 and 1.
#[test]
fn random_shapes_match_the_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut partly_kept, mut none_kept) = (0, 0);
    for case in 0..60u64 {
        let n = pick(&mut rng, 1, 3);
        let nf = pick(&mut rng, 1, 8);
        let hi = if case % 3 == 0 { 2 } else { 12 };
        let dims = [
            n,
            pick(&mut rng, 1, hi),
            pick(&mut rng, 1, hi),
            pick(&mut rng, 1, hi),
        ];
        let shape = [n, nf, dims[1], dims[2], dims[3]];
        let classes = pick(&mut rng, 2, 4) as u8;
        let v = dims[1] * dims[2] * dims[3];
        let mut fs = random_tensor(&shape, 1000 + case, 1.0);
        let mut ft = random_tensor(&shape, 2000 + case, 2.0);
        for _ in 0..pick(&mut rng, 0, 3) {
            let (b, vox) = (pick(&mut rng, 0, n - 1), pick(&mut rng, 0, v - 1));
            scale_column(&mut fs, b, vox, 0.0);
            let (b, vox) = (pick(&mut rng, 0, n - 1), pick(&mut rng, 0, v - 1));
            scale_column(&mut fs, b, vox, 1e-6);
            let (b, vox) = (pick(&mut rng, 0, n - 1), pick(&mut rng, 0, v - 1));
            scale_column(&mut ft, b, vox, 0.0);
        }
        let y = random_labels(dims, classes, 3000 + case);
        let scale = if case % 2 == 0 { 0.1 } else { 1.0 };
        let kept = check(&format!("case {case} {shape:?}"), &fs, &ft, &y, scale);
        if kept.is_empty() {
            none_kept += 1;
        } else if kept.len() < classes as usize {
            partly_kept += 1;
        }
    }
    assert!(
        partly_kept > 0 && none_kept > 0,
        "partly kept {partly_kept}, none kept {none_kept}"
    );
}

/// A class present in one sample only is not kept; labels need not start at 0 (any byte value).
#[test]
fn class_missing_from_one_sample_is_not_kept() {
    let shape = [2, 5, 3, 4, 7];
    let v = 3 * 4 * 7;
    let fs = random_tensor(&shape, 1, 1.0);
    let ft = random_tensor(&shape, 2, 1.0);
    let mut y = random_labels([2, 3, 4, 7], 4, 3);
    for l in &mut y.data[v..] {
        if *l == 2 {
            *l = 3;
        }
    }
    assert_eq!(check("missing 2", &fs, &ft, &y, 1.0), vec![0, 1, 3]);
    for l in &mut y.data {
        *l = [7, 250, 9, 255][*l as usize];
    }
    assert_eq!(check("large labels", &fs, &ft, &y, 0.1), vec![7, 250, 255]);
}

/// No class in every sample: loss +0.0 and an all-zero gradient.
#[test]
fn no_kept_class_gives_zero() {
    let shape = [2, 3, 2, 3, 5];
    let mut labels = vec![0u8; 60];
    labels[30..].fill(1);
    let y = LabelMap::new([2, 2, 3, 5], labels);
    let fs = random_tensor(&shape, 4, 1.0);
    let ft = random_tensor(&shape, 5, 1.0);
    assert!(check("none kept", &fs, &ft, &y, 1.0).is_empty());
}

/// A class whose student features are all zero in one sample (prototype norm 0) and one whose
/// features are tiny there (0 < prototype norm < 1e-5): the clamped prototype branches.
#[test]
fn zero_and_tiny_prototypes_match() {
    let shape = [2, 4, 3, 5, 6];
    let v = 90;
    let mut fs = random_tensor(&shape, 6, 1.0);
    let ft = random_tensor(&shape, 7, 1.0);
    let y = random_labels([2, 3, 5, 6], 3, 8);
    for vox in 0..v {
        match y.data[v + vox] {
            0 => scale_column(&mut fs, 1, vox, 0.0),
            2 => scale_column(&mut fs, 1, vox, 1e-6),
            _ => {}
        }
    }
    assert_eq!(
        check("zero/tiny prototypes", &fs, &ft, &y, 1.0),
        vec![0, 1, 2]
    );
}

/// `N * V = 10240 > 8192` positions: several blocks in every reduction (prototypes and `dp̂`
/// over `V = 5120`, the loss over `N * |K| * V = 40960` terms).
#[test]
fn several_reduction_blocks_match() {
    let shape = [2, 3, 8, 16, 40];
    let fs = random_tensor(&shape, 9, 1.0);
    let ft = random_tensor(&shape, 10, 1.0);
    let y = random_labels([2, 8, 16, 40], 4, 11);
    for scale in [0.1, 1.0] {
        assert_eq!(check("several blocks", &fs, &ft, &y, scale).len(), 4);
    }
    let shape = [3, 2, 1, 1, 4097];
    let fs = random_tensor(&shape, 12, 1.0);
    let ft = random_tensor(&shape, 13, 1.0);
    let y = random_labels([3, 1, 1, 4097], 2, 14);
    check("V = 4097", &fs, &ft, &y, 1.0);
}
