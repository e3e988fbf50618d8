// Verifies (every test in this file): R-NUM-5, R-NUM-3
//! The device `exp` and `ln` (kernels/mathfn.cuh) give the reference's `mathfn::{exp, ln}` bits
//! on every 4099th `f32` bit pattern over all 2^32, on dense runs around the special points, and
//! on the special values themselves.

mod common;
use protokd_gpu::ops::losses::map_exp_ln;
use protokd_reference::mathfn::{exp, ln};

/// The `x` near `(k + 1/2) / log2(e)` for every half-integer `k + 1/2` that `exp` can meet
/// (17 patterns around each), among them every `x` whose `x * log2(e)` rounds to the tie itself:
/// there `exp`'s `round_ties_even` decides between two reductions.
fn ties() -> Vec<u32> {
    (-151..=128)
        .flat_map(|k| {
            let centre = ((k as f32 + 0.5) / std::f32::consts::LOG2_E).to_bits();
            (0..17u32).map(move |d| centre.wrapping_sub(8).wrapping_add(d))
        })
        .collect()
}

/// Bit patterns: `k * 4099` over all 2^32 (both signs, subnormals, infinities and NaNs), the
/// [`ties`], and 4096 consecutive patterns around the points where the functions change branch.
fn patterns() -> Vec<u32> {
    let mut bits: Vec<u32> = (0..=u32::MAX).step_by(4099).collect();
    let ties = ties();
    let exact_ties = ties
        .iter()
        .map(|&b| f32::from_bits(b) * std::f32::consts::LOG2_E)
        .filter(|y| y.fract().abs() == 0.5)
        .count();
    assert!(exact_ties > 100, "only {exact_ties} exact ties");
    bits.extend(ties);
    let specials: [f32; 14] = [
        0.0,
        -0.0,
        1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::from_bits(1),
        88.722_84,
        -103.972_08,
        std::f32::consts::SQRT_2,
        std::f32::consts::LN_2,
        0.5 * std::f32::consts::LN_2,
        -87.336_55,
    ];
    for s in specials {
        for sign in [0u32, 0x8000_0000] {
            let b = s.to_bits() ^ sign;
            bits.extend((0..4096u32).map(|d| b.wrapping_sub(2048).wrapping_add(d)));
        }
    }
    // NaNs: quiet, signalling, with payloads, negative.
    bits.extend([
        0x7fc0_0000,
        0x7f80_0001,
        0x7fa0_1234,
        0xffc0_0000,
        0xff80_0001,
        0x7fff_ffff,
    ]);
    bits
}

#[test]
fn exp_and_ln_match_the_reference_bit_for_bit() {
    let dev = common::device();
    let bits = patterns();
    let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
    let (e, l) = map_exp_ln(&dev, &dev.upload(&x).unwrap()).unwrap();
    let (e, l) = (dev.download(&e).unwrap(), dev.download(&l).unwrap());
    for (i, &xi) in x.iter().enumerate() {
        assert_eq!(
            e[i].to_bits(),
            exp(xi).to_bits(),
            "exp({xi:e} = {:#010x}): got {:#010x}, want {:#010x}",
            bits[i],
            e[i].to_bits(),
            exp(xi).to_bits()
        );
        assert_eq!(
            l[i].to_bits(),
            ln(xi).to_bits(),
            "ln({xi:e} = {:#010x}): got {:#010x}, want {:#010x}",
            bits[i],
            l[i].to_bits(),
            ln(xi).to_bits()
        );
    }
}
