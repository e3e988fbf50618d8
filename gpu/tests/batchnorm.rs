// Verifies (every test in this file): R-NUM-5, R-MTH-4, R-NUM-2
//! BatchNorm3d on the device gives the reference's bits: training forward (y, cache, running
//! statistics), evaluation forward and backward, on random shapes and on channels long enough
//! for several reduction blocks (an odd count, a one-term last block).

mod common;
use protokd_gpu::ops::batchnorm::{
    batchnorm3d_backward, batchnorm3d_forward_eval, batchnorm3d_forward_train, GpuBnCache,
};
use protokd_gpu::{Device, GpuTensor};
use protokd_reference::layers::batchnorm3d::{self as reference, Then};
use protokd_reference::Tensor;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// The spec's meaning of a fused pass: `then` applied to every BatchNorm output.
fn then_each(mut y: Tensor, then: reference::Then) -> Tensor {
    y.data.iter_mut().for_each(|v| *v = then.apply(*v));
    y
}

fn up(dev: &Device, t: &Tensor) -> GpuTensor {
    GpuTensor::upload(dev, t).unwrap()
}

fn down(dev: &Device, t: &GpuTensor) -> Tensor {
    t.download(dev).unwrap()
}

/// A batch with a per-channel offset and scale, so that the statistics differ per channel.
fn input(shape: [usize; 5], seed: u64) -> Tensor {
    let mut x = common::random_tensor(&shape, seed, 1.0);
    let v: usize = shape[2..].iter().product();
    for (nc, chunk) in x.data.chunks_mut(v.max(1)).enumerate() {
        let ch = (nc % shape[1]) as f32;
        for a in chunk {
            *a = *a * (1.0 + 0.5 * ch) + 0.75 * ch - 0.3;
        }
    }
    x
}

/// Training forward, evaluation forward (with the updated running statistics) and backward
/// on the device and in the reference, every output compared bit for bit; `then` what the
/// forwards apply in the same pass (nothing, or the fused ReLU).
fn check(dev: &Device, shape: [usize; 5], seed: u64, then: Then) {
    let what = format!("shape {shape:?}, then {then:?}");
    let c = shape[1];
    let x = input(shape, seed);
    let w = common::random_tensor(&[c], seed + 1, 2.0);
    let b = common::random_tensor(&[c], seed + 2, 1.0);
    let mut rm = common::random_tensor(&[c], seed + 3, 1.0);
    let mut rv = common::random_tensor(&[c], seed + 4, 0.5);
    rv.data.iter_mut().for_each(|a| *a += 1.0);
    let dy = common::random_tensor(&shape, seed + 5, 1.0);

    let (mut grm, mut grv, mut gnbt) = (up(dev, &rm), up(dev, &rv), 5i64);
    let (gy, gcache) = batchnorm3d_forward_train(
        dev,
        &up(dev, &x),
        &up(dev, &w),
        &up(dev, &b),
        &mut grm,
        &mut grv,
        &mut gnbt,
        then,
    )
    .unwrap();
    let mut nbt = 5i64;
    let (y, cache) =
        reference::batchnorm3d_forward_train(&x, &w, &b, &mut rm, &mut rv, &mut nbt).unwrap();
    let y = then_each(y, then);
    common::assert_same_bits(&format!("{what}: y"), &down(dev, &gy), &y);
    common::assert_same_bits(
        &format!("{what}: xhat"),
        &down(dev, &gcache.xhat),
        &cache.xhat,
    );
    common::assert_same_bits(
        &format!("{what}: invstd"),
        &down(dev, &gcache.invstd),
        &Tensor::from_vec(&[c], cache.invstd.clone()),
    );
    common::assert_same_bits(&format!("{what}: running_mean"), &down(dev, &grm), &rm);
    common::assert_same_bits(&format!("{what}: running_var"), &down(dev, &grv), &rv);
    assert_eq!(gnbt, nbt, "{what}: num_batches_tracked");

    let gy = batchnorm3d_forward_eval(
        dev,
        &up(dev, &x),
        &up(dev, &w),
        &up(dev, &b),
        &grm,
        &grv,
        then,
    )
    .unwrap();
    let y = then_each(
        reference::batchnorm3d_forward_eval(&x, &w, &b, &rm, &rv),
        then,
    );
    common::assert_same_bits(&format!("{what}: eval y"), &down(dev, &gy), &y);

    let (gdx, gdw, gdb) = batchnorm3d_backward(dev, &up(dev, &dy), &up(dev, &w), &gcache).unwrap();
    let (dx, dw, db) = reference::batchnorm3d_backward(&dy, &w, &cache);
    common::assert_same_bits(&format!("{what}: dx"), &down(dev, &gdx), &dx);
    common::assert_same_bits(&format!("{what}: dweight"), &down(dev, &gdw), &dw);
    common::assert_same_bits(&format!("{what}: dbias"), &down(dev, &gdb), &db);
}

#[test]
fn random_shapes_match_the_reference() {
    let dev = common::device();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut done = 0;
    let mut seed = 100;
    while done < 24 {
        let shape = [
            common::pick(&mut rng, 1, 3),
            common::pick(&mut rng, 1, 9),
            common::pick(&mut rng, 1, 12),
            common::pick(&mut rng, 1, 12),
            common::pick(&mut rng, 1, 12),
        ];
        if shape[0] * shape[2] * shape[3] * shape[4] < 2 {
            continue;
        }
        check(&dev, shape, seed, [Then::Nothing, Then::Relu][done % 2]);
        seed += 10;
        done += 1;
    }
}

#[test]
fn smallest_batches_match_the_reference() {
    let dev = common::device();
    for (i, shape) in [
        [2, 3, 1, 1, 1],
        [1, 2, 1, 1, 2],
        [1, 1, 2, 1, 1],
        [3, 1, 1, 1, 1],
        [2, 5, 1, 3, 1],
    ]
    .into_iter()
    .enumerate()
    {
        check(&dev, shape, 1000 + 10 * i as u64, Then::Relu);
    }
}

/// M = 2 * 5115 = 10230 values per channel (3 blocks, the last partial) and M = 16385
/// (5 blocks, the last one term): the lane chains cross sample boundaries and the block tree
/// carries an odd element.
#[test]
fn several_reduction_blocks_match_the_reference() {
    let dev = common::device();
    check(&dev, [2, 3, 5, 31, 33], 2000, Then::Nothing);
    check(&dev, [1, 2, 5, 29, 113], 2010, Then::Relu);
}

#[test]
#[should_panic(expected = "values per channel")]
fn one_value_per_channel_panics() {
    let dev = common::device();
    let x = common::random_tensor(&[1, 2, 1, 1, 1], 1, 1.0);
    let ones = Tensor::from_vec(&[2], vec![1.0; 2]);
    let (mut rm, mut rv, mut nbt) = (up(&dev, &ones), up(&dev, &ones), 0);
    let _ = batchnorm3d_forward_train(
        &dev,
        &up(&dev, &x),
        &up(&dev, &ones),
        &up(&dev, &ones),
        &mut rm,
        &mut rv,
        &mut nbt,
        Then::Nothing,
    );
}

#[test]
#[should_panic(expected = "cache and dy shapes differ")]
fn backward_checks_the_cache_shape() {
    let dev = common::device();
    let cache = GpuBnCache {
        xhat: GpuTensor::zeros(&dev, &[1, 2, 1, 1, 3]).unwrap(),
        invstd: GpuTensor::zeros(&dev, &[2]).unwrap(),
    };
    let dy = GpuTensor::zeros(&dev, &[1, 2, 1, 1, 2]).unwrap();
    let w = GpuTensor::zeros(&dev, &[2]).unwrap();
    let _ = batchnorm3d_backward(&dev, &dy, &w, &cache);
}
