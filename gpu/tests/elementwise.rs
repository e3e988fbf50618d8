// Verifies (every test in this file): R-NUM-5
//! ReLU forward and backward, the additive skip and select_channels on the device give the
//! reference's bits, NaN, signed zeros and infinities included.

mod common;
use protokd_gpu::ops::elementwise::{add, relu_backward, relu_forward, select_channels};
use protokd_gpu::{Device, GpuTensor};
use protokd_reference::layers::relu as reference;
use protokd_reference::Tensor;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

fn up(dev: &Device, t: &Tensor) -> GpuTensor {
    GpuTensor::upload(dev, t).unwrap()
}

fn down(dev: &Device, t: &GpuTensor) -> Tensor {
    t.download(dev).unwrap()
}

/// A random 5-D shape with small, often odd, extents.
fn random_shape(rng: &mut ChaCha8Rng) -> [usize; 5] {
    [
        common::pick(rng, 1, 3),
        common::pick(rng, 1, 9),
        common::pick(rng, 1, 12),
        common::pick(rng, 1, 12),
        common::pick(rng, 1, 12),
    ]
}

/// Values a ReLU must handle exactly: signed zeros, infinities, subnormals, NaNs with payloads
/// and signs (passed on with their bits).
fn special_values() -> Vec<f32> {
    vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fc0_1234),
        f32::from_bits(0xffa0_0001),
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::MAX,
        f32::MIN,
        1.5,
        -2.0,
        1e-30,
    ]
}

/// A random tensor with the special values sprinkled through it.
fn with_specials(shape: &[usize], seed: u64) -> Tensor {
    let mut t = common::random_tensor(shape, seed, 2.0);
    for (i, s) in special_values().into_iter().enumerate() {
        let at = (i * 7 + seed as usize) % t.data.len();
        t.data[at] = s;
    }
    t
}

#[test]
fn relu_special_values_have_the_reference_bits() {
    let dev = common::device();
    let x = Tensor::from_vec(&[special_values().len()], special_values());
    let y = relu_forward(&dev, &up(&dev, &x)).unwrap();
    let want = reference::relu_forward(&x);
    common::assert_same_bits("relu forward", &down(&dev, &y), &want);
    // -0.0 and -inf give +0.0; NaNs keep their bits.
    assert_eq!(want.data[1].to_bits(), 0);
    assert_eq!(want.data[3].to_bits(), 0);
    assert_eq!(want.data[6].to_bits(), 0x7fc0_1234);

    let dy = Tensor::from_vec(
        &[x.numel()],
        (0..x.numel()).map(|i| i as f32 - 3.5).collect(),
    );
    let dx = relu_backward(&dev, &up(&dev, &dy), &y).unwrap();
    common::assert_same_bits(
        "relu backward",
        &down(&dev, &dx),
        &reference::relu_backward(&dy, &want),
    );
    // Against y values that relu_forward cannot give too: -0.0, negatives, -inf, NaN.
    let dx = relu_backward(&dev, &up(&dev, &dy), &up(&dev, &x)).unwrap();
    common::assert_same_bits(
        "relu backward, raw y",
        &down(&dev, &dx),
        &reference::relu_backward(&dy, &x),
    );
}

#[test]
fn relu_random_shapes_match_the_reference() {
    let dev = common::device();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for k in 0..16u64 {
        let shape = random_shape(&mut rng);
        let x = with_specials(&shape, 10 + k);
        let dy = with_specials(&shape, 40 + k);
        let gy = relu_forward(&dev, &up(&dev, &x)).unwrap();
        let y = reference::relu_forward(&x);
        common::assert_same_bits(&format!("{shape:?}: relu forward"), &down(&dev, &gy), &y);
        let gdx = relu_backward(&dev, &up(&dev, &dy), &gy).unwrap();
        let dx = reference::relu_backward(&dy, &y);
        common::assert_same_bits(&format!("{shape:?}: relu backward"), &down(&dev, &gdx), &dx);
    }
}

#[test]
fn add_matches_the_reference() {
    let dev = common::device();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for k in 0..16u64 {
        let shape = random_shape(&mut rng);
        let mut a = common::random_tensor(&shape, 100 + k, 3.0);
        let mut b = common::random_tensor(&shape, 200 + k, 3.0);
        // Signed zeros, infinities, subnormals and a cancellation (no NaN: a NaN made by
        // arithmetic has no portable bits, and the reference's add never makes one from numbers).
        let pairs = [
            (-0.0, -0.0),
            (-0.0, 0.0),
            (0.0, -0.0),
            (f32::INFINITY, 1.0),
            (f32::NEG_INFINITY, -1.0),
            (f32::from_bits(1), f32::from_bits(0x8000_0002)),
            (f32::MAX, f32::MAX),
            (1.0, -1.0),
        ];
        for (i, (p, q)) in pairs.into_iter().enumerate() {
            let at = (i * 5 + k as usize) % a.data.len();
            (a.data[at], b.data[at]) = (p, q);
        }
        let y = add(&dev, &up(&dev, &a), &up(&dev, &b)).unwrap();
        common::assert_same_bits(
            &format!("{shape:?}: add"),
            &down(&dev, &y),
            &reference::add_forward(&a, &b),
        );
    }
}

#[test]
fn select_channels_matches_the_reference() {
    let dev = common::device();
    let x = common::random_tensor(&[2, 4, 3, 5, 7], 3, 1.0);
    for channels in [
        &[0usize, 1, 2, 3][..],
        &[3],
        &[2, 0],
        &[1, 1, 3, 1],
        &[3, 2, 1, 0, 0],
    ] {
        let y = select_channels(&dev, &up(&dev, &x), channels).unwrap();
        common::assert_same_bits(
            &format!("channels {channels:?}"),
            &down(&dev, &y),
            &x.select_channels(channels),
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for k in 0..8u64 {
        let shape = random_shape(&mut rng);
        let x = common::random_tensor(&shape, 300 + k, 1.0);
        let channels: Vec<usize> = (0..common::pick(&mut rng, 1, 6))
            .map(|_| common::pick(&mut rng, 0, shape[1] - 1))
            .collect();
        let y = select_channels(&dev, &up(&dev, &x), &channels).unwrap();
        common::assert_same_bits(
            &format!("{shape:?} channels {channels:?}"),
            &down(&dev, &y),
            &x.select_channels(&channels),
        );
    }
    // Other ranks: [N, C] and [N, C, L].
    for shape in [&[3usize, 5][..], &[2, 3, 11]] {
        let x = common::random_tensor(shape, 5, 1.0);
        let y = select_channels(&dev, &up(&dev, &x), &[2, 0, 2]).unwrap();
        common::assert_same_bits(
            &format!("{shape:?}"),
            &down(&dev, &y),
            &x.select_channels(&[2, 0, 2]),
        );
    }
}

#[test]
#[should_panic(expected = "select_channels: channel 4 of 4")]
fn select_channels_refuses_a_missing_channel() {
    let dev = common::device();
    let x = GpuTensor::zeros(&dev, &[1, 4, 2, 2, 2]).unwrap();
    let _ = select_channels(&dev, &x, &[0, 4]);
}

#[test]
#[should_panic(expected = "operand shapes differ")]
fn add_refuses_different_shapes() {
    let dev = common::device();
    let a = GpuTensor::zeros(&dev, &[2, 3]).unwrap();
    let b = GpuTensor::zeros(&dev, &[3, 2]).unwrap();
    let _ = add(&dev, &a, &b);
}

/// The device-side count of NaNs and infinities equals a host count, on sizes around the
/// kernels' thread counts (65536 and 256), and the engine's finiteness check gives the spec
/// engine's error (first index and value) or none.
#[test]
fn non_finite_counts_and_the_engine_check_match_the_host() {
    use protokd_reference::engine::{Engine, Spec};
    let dev = common::device();
    let gpu = protokd_gpu::Gpu::new(dev.clone());
    let specials = special_values();
    for (k, &n) in [0usize, 1, 255, 257, 65535, 65537, 200_003]
        .iter()
        .enumerate()
    {
        let mut t = common::random_tensor(&[n], 70 + k as u64, 3.0);
        // Sprinkle specials (some finite, some not) at seeded positions.
        for (j, &v) in specials.iter().enumerate() {
            if n > 0 && j % (k + 1) == 0 {
                t.data[(j * 7919 + k * 104_729) % n] = v;
            }
        }
        let want = t.data.iter().filter(|v| !v.is_finite()).count() as u64;
        let x = up(&dev, &t);
        assert_eq!(
            protokd_gpu::ops::elementwise::count_non_finite(&dev, &x).unwrap(),
            want,
            "n {n}"
        );
        // (Compared as text: the error holds the value, and NaN != NaN.)
        let (g, c) = (gpu.check_finite("x", &x), Spec.check_finite("x", &t));
        assert_eq!(format!("{g:?}"), format!("{c:?}"), "n {n}");
        assert_eq!(g.is_ok(), want == 0, "n {n}");
    }
}
