// Verifies (every test in this file): R-NUM-5, R-NUM-1
//! Conv3d and ConvTranspose3d on the device give the reference's bits: random geometries
//! (odd sizes, kernels 1..3, strides 1..3, padding 0..2, per-axis different) and the VNet's own
//! convolutions.

mod common;
use common::{assert_same_bits, pick, random_tensor};
use protokd_gpu::ops::conv;
use protokd_gpu::{Device, GpuTensor};
use protokd_reference::layers::conv3d::{
    bias_backward, conv3d_backward_input, conv3d_backward_weight, conv3d_forward, ConvGeom,
};
use protokd_reference::layers::conv_transpose3d::{
    conv_transpose3d_backward_input, conv_transpose3d_backward_weight, conv_transpose3d_forward,
};
use protokd_reference::Tensor;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

fn up(dev: &Device, t: &Tensor) -> GpuTensor {
    GpuTensor::upload(dev, t).unwrap()
}

fn down(dev: &Device, t: GpuTensor) -> Tensor {
    t.download(dev).unwrap()
}

/// One Conv3d layer: input `x_shape`, `cout` output channels, geometry `g`: the forward (with
/// and without bias), the input, weight and bias gradients, all against the spec kernels.
fn check_conv3d(dev: &Device, x_shape: [usize; 5], cout: usize, g: &ConvGeom, seed: u64) {
    let [n, cin, d, h, w] = x_shape;
    let what = format!("conv3d x {x_shape:?} cout {cout} {g:?}");
    let od = g.output_dims([d, h, w]);
    let x = random_tensor(&x_shape, seed, 1.0);
    let wt = random_tensor(
        &[cout, cin, g.kernel[0], g.kernel[1], g.kernel[2]],
        seed + 1,
        1.0,
    );
    let b = random_tensor(&[cout], seed + 2, 1.0);
    let dy = random_tensor(&[n, cout, od[0], od[1], od[2]], seed + 3, 1.0);
    let (gx, gw, gb, gdy) = (up(dev, &x), up(dev, &wt), up(dev, &b), up(dev, &dy));

    for bias in [false, true] {
        let got = conv::conv3d_forward(dev, &gx, &gw, bias.then_some(&gb), g).unwrap();
        let want = conv3d_forward(&x, &wt, bias.then_some(&b), g);
        assert_same_bits(
            &format!("{what}: forward, bias {bias}"),
            &down(dev, got),
            &want,
        );
    }
    let got = conv::conv3d_backward_input(dev, &gdy, &gw, g, [d, h, w]).unwrap();
    let want = conv3d_backward_input(&dy, &wt, g, [d, h, w]);
    assert_same_bits(&format!("{what}: input gradient"), &down(dev, got), &want);
    let got = conv::conv3d_backward_weight(dev, &gx, &gdy, g).unwrap();
    let want = conv3d_backward_weight(&x, &dy, g);
    assert_same_bits(&format!("{what}: weight gradient"), &down(dev, got), &want);
    let got = conv::bias_backward(dev, &gdy).unwrap();
    assert_same_bits(
        &format!("{what}: bias gradient"),
        &down(dev, got),
        &bias_backward(&dy),
    );
}

/// One ConvTranspose3d layer: input `x_shape`, `cout` output channels, geometry `g`: the
/// forward (with and without bias), the input and weight gradients.
fn check_transpose(dev: &Device, x_shape: [usize; 5], cout: usize, g: &ConvGeom, seed: u64) {
    let [n, cin, d, h, w] = x_shape;
    let what = format!("conv_transpose3d x {x_shape:?} cout {cout} {g:?}");
    let od = g.transposed_output_dims([d, h, w]);
    let x = random_tensor(&x_shape, seed, 1.0);
    let wt = random_tensor(
        &[cin, cout, g.kernel[0], g.kernel[1], g.kernel[2]],
        seed + 1,
        1.0,
    );
    let b = random_tensor(&[cout], seed + 2, 1.0);
    let dy = random_tensor(&[n, cout, od[0], od[1], od[2]], seed + 3, 1.0);
    let (gx, gw, gb, gdy) = (up(dev, &x), up(dev, &wt), up(dev, &b), up(dev, &dy));

    for bias in [false, true] {
        let got = conv::conv_transpose3d_forward(dev, &gx, &gw, bias.then_some(&gb), g).unwrap();
        let want = conv_transpose3d_forward(&x, &wt, bias.then_some(&b), g);
        assert_same_bits(
            &format!("{what}: forward, bias {bias}"),
            &down(dev, got),
            &want,
        );
    }
    let got = conv::conv_transpose3d_backward_input(dev, &gdy, &gw, g).unwrap();
    let want = conv_transpose3d_backward_input(&dy, &wt, g);
    assert_same_bits(&format!("{what}: input gradient"), &down(dev, got), &want);
    let got = conv::conv_transpose3d_backward_weight(dev, &gx, &gdy, g).unwrap();
    let want = conv_transpose3d_backward_weight(&x, &dy, g);
    assert_same_bits(&format!("{what}: weight gradient"), &down(dev, got), &want);
}

/// A random geometry: kernel 1..3, stride 1..3, padding 0..2 on each axis independently.
fn random_geom(rng: &mut ChaCha8Rng) -> ConvGeom {
    let mut axis = || [pick(rng, 1, 3), pick(rng, 1, 3), pick(rng, 0, 2)];
    let [d, h, w] = [axis(), axis(), axis()];
    ConvGeom {
        kernel: [d[0], h[0], w[0]],
        stride: [d[1], h[1], w[1]],
        padding: [d[2], h[2], w[2]],
    }
}

/// Random input sizes 1..20 per axis (one axis at most 9, to keep the case small), batch 1..2,
/// channels 1..9.
fn random_input(rng: &mut ChaCha8Rng) -> ([usize; 5], usize) {
    let small = pick(rng, 0, 2);
    let mut dims = [0; 3];
    for (a, v) in dims.iter_mut().enumerate() {
        *v = pick(rng, 1, if a == small { 9 } else { 20 });
    }
    let shape = [pick(rng, 1, 2), pick(rng, 1, 9), dims[0], dims[1], dims[2]];
    (shape, pick(rng, 1, 9))
}

#[test]
fn conv3d_random_geometries_match_the_reference() {
    let dev = common::device();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut done = 0;
    while done < 60 {
        let g = random_geom(&mut rng);
        let (x_shape, cout) = random_input(&mut rng);
        // The padded input must hold the kernel.
        if (0..3).any(|a| x_shape[2 + a] + 2 * g.padding[a] < g.kernel[a]) {
            continue;
        }
        check_conv3d(&dev, x_shape, cout, &g, 1000 + 10 * done);
        // Every chains tile in turn (each case also ran with the tile chosen by size).
        let tile = conv::CHAIN_TILES[done as usize % conv::CHAIN_TILES.len()];
        conv::with_chain_tile(tile, || {
            check_conv3d(&dev, x_shape, cout, &g, 1000 + 10 * done)
        });
        done += 1;
    }
}

#[test]
fn conv_transpose3d_random_geometries_match_the_reference() {
    let dev = common::device();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut done = 0;
    while done < 60 {
        let g = random_geom(&mut rng);
        let (mut x_shape, cout) = random_input(&mut rng);
        // Inputs up to 10 per axis: the output is about stride times larger.
        for v in &mut x_shape[2..] {
            *v = (*v).div_ceil(2);
        }
        // The output must not be empty.
        if (0..3).any(|a| (x_shape[2 + a] - 1) * g.stride[a] + g.kernel[a] <= 2 * g.padding[a]) {
            continue;
        }
        check_transpose(&dev, x_shape, cout, &g, 5000 + 10 * done);
        let tile = conv::CHAIN_TILES[done as usize % conv::CHAIN_TILES.len()];
        conv::with_chain_tile(tile, || {
            check_transpose(&dev, x_shape, cout, &g, 5000 + 10 * done)
        });
        done += 1;
    }
}

/// Sizes where the canonical reductions have several blocks (P > 4096, not a multiple of it)
/// and rows longer than the 16 lanes, with strides that leave positions without taps.
#[test]
fn multi_block_reductions_match_the_reference() {
    let dev = common::device();
    check_conv3d(&dev, [2, 2, 11, 17, 19], 3, &ConvGeom::cubic(3, 1, 1), 30);
    let g = ConvGeom {
        kernel: [3, 2, 1],
        stride: [2, 3, 1],
        padding: [1, 0, 2],
    };
    check_conv3d(&dev, [2, 3, 20, 19, 33], 2, &g, 40);
    check_transpose(&dev, [2, 3, 12, 13, 15], 2, &ConvGeom::cubic(2, 2, 0), 50);
}

/// The VNet's convolutions at n_filters 4 on a 16^3 patch of 4 modalities: the 3x3x3 pad-1
/// convolution (no bias), the 2x2x2 stride-2 down convolution and up (transposed) convolution
/// with bias, and the 1x1x1 output convolution with bias.
#[test]
fn vnet_geometries_match_the_reference() {
    let dev = common::device();
    check_conv3d(&dev, [2, 4, 16, 16, 16], 4, &ConvGeom::cubic(3, 1, 1), 60);
    check_conv3d(&dev, [2, 4, 16, 16, 16], 8, &ConvGeom::cubic(2, 2, 0), 70);
    check_transpose(&dev, [2, 8, 8, 8, 8], 4, &ConvGeom::cubic(2, 2, 0), 80);
    check_conv3d(&dev, [2, 4, 16, 16, 16], 4, &ConvGeom::cubic(1, 1, 0), 90);
}

/// Large sizes with each thread given 4 positions along W and 4, 8 or 16 channels (forced
/// tiles), in the forward and the input gradient: a 3x3x3 convolution with a tail along W, a
/// 2x2x2 stride-2 one, one with strides 2 and 3 (the input gradient's threads a multiple of the
/// stride apart along W), a stride-2 transposed one.
#[test]
fn wide_tiles_match_the_reference() {
    let dev = common::device();
    let g = ConvGeom {
        kernel: [1, 3, 3],
        stride: [1, 2, 3],
        padding: [0, 1, 1],
    };
    for tile in [(4, 4), (8, 4), (16, 4)] {
        conv::with_chain_tile(tile, || {
            check_conv3d(&dev, [1, 9, 16, 256, 70], 2, &ConvGeom::cubic(3, 1, 1), 100);
            check_conv3d(
                &dev,
                [1, 6, 32, 1024, 66],
                5,
                &ConvGeom::cubic(2, 2, 0),
                110,
            );
            check_conv3d(&dev, [1, 2, 8, 512, 100], 3, &g, 120);
            check_transpose(&dev, [1, 9, 16, 512, 50], 1, &ConvGeom::cubic(2, 2, 0), 130);
        });
    }
}

/// Kernels larger than the weight gradient's 3 x 3 x 3 tile of taps per thread (several tiles,
/// the last ones cut at the kernel's edge).
#[test]
fn large_kernels_match_the_reference() {
    let dev = common::device();
    let g = ConvGeom {
        kernel: [5, 4, 7],
        stride: [2, 1, 3],
        padding: [2, 0, 3],
    };
    check_conv3d(&dev, [2, 3, 9, 10, 23], 5, &g, 140);
    check_transpose(&dev, [1, 2, 4, 5, 6], 3, &g, 150);
}

#[test]
#[should_panic(expected = "input channels")]
fn channel_mismatch_panics() {
    let dev = common::device();
    let x = up(&dev, &random_tensor(&[1, 2, 3, 3, 3], 1, 1.0));
    let w = up(&dev, &random_tensor(&[1, 3, 3, 3, 3], 2, 1.0));
    let _ = conv::conv3d_forward(&dev, &x, &w, None, &ConvGeom::cubic(3, 1, 1));
}

/// Timing on the device under test of the VNet's first-level convolutions at the paper's size,
/// batch 4 x 16 channels x 96 x 128 x 128 (for a GPU: `PROTOKD_TEST_DEVICE=cuda cargo test
/// --release -p protokd-gpu --test conv -- --ignored --nocapture conv_speed`).
#[test]
#[ignore]
fn conv_speed() {
    let dev = common::device();
    let g = ConvGeom::cubic(3, 1, 1);
    let x = up(&dev, &random_tensor(&[4, 16, 96, 128, 128], 900, 1.0));
    let w = up(&dev, &random_tensor(&[16, 16, 3, 3, 3], 901, 1.0));
    let time = |what: &str, f: &dyn Fn() -> GpuTensor| {
        f();
        dev.synchronize().unwrap();
        let t = std::time::Instant::now();
        f();
        dev.synchronize().unwrap();
        println!("{what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    };
    let y = conv::conv3d_forward(&dev, &x, &w, None, &g).unwrap();
    println!(
        "{}: conv 16 -> 16 on 4 x 16 x 96 x 128 x 128",
        dev.describe()
    );
    time("3x3x3 forward", &|| {
        conv::conv3d_forward(&dev, &x, &w, None, &g).unwrap()
    });
    time("3x3x3 input gradient", &|| {
        conv::conv3d_backward_input(&dev, &y, &w, &g, [96, 128, 128]).unwrap()
    });
    time("3x3x3 weight gradient", &|| {
        conv::conv3d_backward_weight(&dev, &x, &y, &g).unwrap()
    });
    time("bias gradient", &|| conv::bias_backward(&dev, &y).unwrap());
    let down = ConvGeom::cubic(2, 2, 0);
    let wd = up(&dev, &random_tensor(&[32, 16, 2, 2, 2], 902, 1.0));
    let yd = conv::conv3d_forward(&dev, &x, &wd, None, &down).unwrap();
    time("2x2x2 down forward (16 -> 32)", &|| {
        conv::conv3d_forward(&dev, &x, &wd, None, &down).unwrap()
    });
    time("2x2x2 down weight gradient", &|| {
        conv::conv3d_backward_weight(&dev, &x, &yd, &down).unwrap()
    });
    let wu = up(&dev, &random_tensor(&[32, 16, 2, 2, 2], 903, 1.0));
    time("2x2x2 up forward (32 -> 16)", &|| {
        conv::conv_transpose3d_forward(&dev, &yd, &wu, None, &down).unwrap()
    });
    time("2x2x2 up weight gradient", &|| {
        conv::conv_transpose3d_backward_weight(&dev, &yd, &x, &down).unwrap()
    });
}
