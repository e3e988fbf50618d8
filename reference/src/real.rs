//! The float type the specification is written over: [`Real`], with `f32` (the product) and
//! `f64` (the yardstick).
//!
//! Every layer, loss, the canonical reduction, the VNet and the training steps are written once,
//! over `R: Real`. The product runs them on `f32`, and every bit the numerics contract promises
//! is the bits of that `f32` instance. The same text on `f64` is the yardstick the accuracy
//! report measures the product against (`protokd audit forward|step --accuracy`): the same
//! operations in the same order, each rounded to `f64` instead of `f32`.
//!
//! What an implementation supplies, and what each is for the two instances:
//!
//! | operation | `f32` (product) | `f64` (yardstick) |
//! |---|---|---|
//! | `+ - * /`, [`Real::sqrt`] | IEEE, correctly rounded | IEEE, correctly rounded |
//! | [`Real::mul_add`] | IEEE `fma` ([`f32::mul_add`]) | IEEE `fma` ([`f64::mul_add`]) |
//! | [`Real::exp`], [`Real::ln`] | our own ([`crate::mathfn`]) | the platform's ([`f64::exp`], [`f64::ln`]) |
//! | [`Real::decimal`] (the spec's constants: `eps`, momentum, smoothing) | the `f32` constant | its decimal, read in `f64` |
//! | [`Real::from_f64`] (Adam's scalars) | one rounding to nearest | exact |
//! | [`Real::from_usize`] (counts) | one rounding (exact below `2^24`) | exact below `2^53` |
//!
//! The yardstick's `exp` and `ln` are the platform's, hence not bit-reproducible across
//! machines; they are within an ulp of `f64`, far below what the report measures (the distance
//! of `f32` results from `f64` ones, `2^29` times larger).

use std::fmt::{Debug, Display};
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A float type the specification can be evaluated in; see the module docs.
pub trait Real:
    Copy
    + Debug
    + Display
    + Default
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// `+0.0`.
    const ZERO: Self;
    /// `1.0`.
    const ONE: Self;
    /// The type's name (`"f32"`, `"f64"`), for reports.
    const NAME: &'static str;

    /// `x` rounded to nearest (exact for `f64`).
    fn from_f64(x: f64) -> Self;
    /// A constant of the spec, written in the source as the decimal of an `f32` constant
    /// (`BN_EPS = 1e-5`, `BN_MOMENTUM = 0.1`): for `f32` the constant itself; for `f64` the
    /// shortest decimal that rounds to it, read in `f64` (`1e-5` exactly as PyTorch's float64
    /// `eps`, not the `f32` `1e-5` widened). The `f64` instance formats and parses a string.
    fn decimal(c: f32) -> Self;
    /// `x`, exactly (every `f32` is a value of both types).
    fn from_f32(x: f32) -> Self;
    /// A count, rounded to nearest (exact below `2^24` for `f32`).
    fn from_usize(n: usize) -> Self;
    /// The value as `f64`, exactly.
    fn to_f64(self) -> f64;
    /// `fma(self, a, b) = self * a + b` with one rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Correctly rounded square root.
    fn sqrt(self) -> Self;
    /// `e^self`: ours for `f32` ([`crate::mathfn::exp`]), the platform's for `f64`.
    fn exp(self) -> Self;
    /// Natural logarithm: ours for `f32` ([`crate::mathfn::ln`]), the platform's for `f64`.
    fn ln(self) -> Self;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// NaN.
    fn is_nan(self) -> bool;
    /// The larger of two numbers, ignoring a NaN operand (IEEE `maxNum`, as [`f32::max`]).
    fn max(self, other: Self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn decimal(c: f32) -> Self {
        c
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn from_usize(n: usize) -> Self {
        n as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        crate::mathfn::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        crate::mathfn::ln(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f64";

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    fn decimal(c: f32) -> Self {
        // `Display` of an f32 is the shortest decimal that reads back as the same f32.
        c.to_string()
            .parse()
            .expect("an f32's decimal reads as an f64")
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn from_usize(n: usize) -> Self {
        n as f64
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
}
