//! Which SIMD copy of the fast kernels runs ([`Isa`]), and the one vector type their
//! intrinsic register blocks are written on (`Vector`).
//!
//! An [`Isa`] is a value held by the engine ([`crate::Cpu`]), chosen when the engine is built
//! (the best copy this CPU has, or one the caller names and the CPU can run); nothing in this
//! crate reads or writes process-wide state to decide which copy runs.
//!
//! # The copies
//! Each register-blocked kernel (modules `tile` and `wgrad`) has one body, written on the
//! vector trait `Vector` and instantiated per copy:
//! * **x86-64 with AVX-512F** (`Isa::Avx512`): on `__m512` (16 lanes, `_mm512_fmadd_ps`),
//!   inside `#[target_feature(enable = "avx512f,avx2,fma")]`;
//! * **x86-64 with AVX2 and FMA** (`Isa::Avx2Fma`): on `__m256` (8 lanes,
//!   `_mm256_fmadd_ps`), inside `#[target_feature(enable = "avx2,fma")]`;
//! * **aarch64 with NEON** (`Isa::Neon`): on `float32x4x4_t` (four q registers,
//!   `vfmaq_f32`), inside `#[target_feature(enable = "neon")]`;
//! * **portable** ([`Isa::Portable`]) on plain arrays `[f32; N]` (`f32::mul_add`), everywhere
//!   else, and wherever the engine is built with it ([`crate::Cpu::with_isa`]; the tests run
//!   every copy this way). Rows narrower than a copy's vector run on `[f32; 8]` inside the
//!   copy's function.
//!
//! The elementwise passes (BatchNorm, softmax columns, Adam, the per-channel reductions and the
//! row primitives) are plain Rust run through `Isa::run`: inside a function compiled for
//! AVX2 and FMA (x86-64, both SIMD copies) or NEON (aarch64), where `f32::mul_add` is the
//! hardware fused multiply-add.
//!
//! The CPU is asked at run time (`is_x86_feature_detected!`, `is_aarch64_feature_detected!`).
//! On aarch64 NEON and scalar FMA are part of the target's baseline, so the portable copy is
//! compiled with them too (the compiler may vectorise it on its own); what the switch turns
//! off there is the intrinsic register blocks.
//!
//! # Why every copy gives the same bits
//! Every lane operation of `Vector` acts on one lane of its operands only, and its
//! `Vector::mul_add` is IEEE-754 `fma` (one rounding of the exact `a * b + c`, the bits of
//! `f32::mul_add`). A kernel written on it therefore runs 16 independent chains, one per
//! lane, each in the order the kernel's code gives it: SIMD across outputs, never across the
//! terms of one output.

/// The compiled copies of the fast kernels (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain code: no SIMD copy (`mul_add` through the C library's `fmaf` on x86-64, the
    /// `fmadd` instruction on aarch64).
    Portable,
    /// x86-64, compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// x86-64, compiled for AVX-512F (intrinsic register blocks on zmm registers).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// aarch64, compiled for NEON (intrinsic register blocks on q registers).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// The best copy this CPU has.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                return if has!("avx512f") {
                    Isa::Avx512
                } else {
                    Isa::Avx2Fma
                };
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Isa::Neon;
        }
        Isa::Portable
    }

    /// Every copy this CPU can run, best first, [`Isa::Portable`] last.
    pub fn usable() -> Vec<Isa> {
        let mut v = vec![Isa::detected()];
        #[cfg(target_arch = "x86_64")]
        if v[0] == Isa::Avx512 {
            v.push(Isa::Avx2Fma);
        }
        if v[0] != Isa::Portable {
            v.push(Isa::Portable);
        }
        v
    }

    /// Parses a name of [`Isa::name`] (`portable`, `avx2+fma`, `avx512`, `neon`); `None` for
    /// any other name or a copy this build's architecture does not have.
    pub fn parse(name: &str) -> Option<Isa> {
        [
            Isa::Portable,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon,
        ]
        .into_iter()
        .find(|i| i.name() == name.trim().to_ascii_lowercase())
    }

    /// Whether this is a SIMD copy (anything but [`Isa::Portable`]).
    pub fn is_simd(self) -> bool {
        self != Isa::Portable
    }

    /// A short name: `portable`, `avx2+fma`, `avx512` or `neon`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
        }
    }

    /// Runs `f` inside a function compiled for this copy's features (AVX2 and FMA for both
    /// x86-64 SIMD copies, NEON on aarch64), so that the `f32::mul_add` of a loop inlined into
    /// it become the hardware fused multiply-add (`vfmadd`, `fmla`) instead of calls to the C
    /// library's `fmaf`; [`Isa::Portable`] runs `f` as it is. Both give the same bits (IEEE
    /// `fma`); only the speed differs.
    ///
    /// Only call it with a copy the CPU can run: the engine checks that when it is built
    /// ([`crate::Cpu::with_isa`]), and the crate's kernels take their `Isa` from the engine.
    #[inline(always)]
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            // SAFETY: the engine only holds a copy of `Isa::usable()` (checked at its
            // construction), so the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma | Isa::Avx512 => unsafe { call_avx2_fma(f) },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { call_neon(f) },
            Isa::Portable => f(),
        }
    }
}

/// `f()`, compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn call_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f()`, compiled for NEON.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn call_neon<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `LANES` f32 lanes in registers: one `__m512` (AVX-512, 16 lanes), one `__m256` (AVX2, 8
/// lanes), one `float32x4x4_t` (NEON, four q registers of 4 lanes; lanes `4k .. 4k + 3` in
/// register `k`), or a plain array `[f32; N]` (the portable copy, and rows narrower than a
/// register). The intrinsic register blocks of the `conv3d` and `tile` modules are written once
/// on this trait and instantiated per type.
///
/// Lane `q` of every result depends on lane `q` of the operands only (see the module docs).
///
/// # Safety
/// Every method may only run on a CPU with the type's features (AVX-512F, AVX2 and FMA, NEON;
/// none for arrays), that is from a function compiled with them (`#[target_feature]`, into
/// which the `#[inline(always)]` methods are inlined), with the engine's copy (checked against
/// the CPU when the engine was built); pointers must be valid for `LANES` values.
pub(crate) trait Vector: Copy {
    /// Lanes per vector.
    const LANES: usize;
    /// Lanes `p[0] .. p[LANES - 1]`.
    unsafe fn load(p: *const f32) -> Self;
    /// Lanes `lo[0] .. lo[LANES / 2 - 1]`, then `hi[0] .. hi[LANES / 2 - 1]`.
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self;
    /// Writes the lanes to `p[0] .. p[LANES - 1]`.
    unsafe fn store(self, p: *mut f32);
    /// `v` in every lane.
    unsafe fn splat(v: f32) -> Self;
    /// Per lane `fma(self, b, c)` = `self * b + c` rounded once: the bits of
    /// `f32::mul_add(self, b, c)` in each lane.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// Per lane `self + b`, rounded once (IEEE addition).
    unsafe fn add(self, b: Self) -> Self;
}

#[cfg(target_arch = "x86_64")]
impl Vector for std::arch::x86_64::__m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::arch::x86_64::_mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self {
        use std::arch::x86_64::*;
        // The upper 256 bits replaced by `hi`'s 8 lanes (as 4 doubles: AVX-512F has no
        // float insert of 8 lanes without AVX-512DQ; the bits move unchanged).
        let v = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(lo)));
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            v,
            _mm256_castps_pd(_mm256_loadu_ps(hi)),
        ))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::arch::x86_64::_mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        std::arch::x86_64::_mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // vfmadd: a * b + c, one rounding.
        std::arch::x86_64::_mm512_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        std::arch::x86_64::_mm512_add_ps(self, b)
    }
}

#[cfg(target_arch = "x86_64")]
impl Vector for std::arch::x86_64::__m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self {
        use std::arch::x86_64::{_mm256_set_m128, _mm_loadu_ps};
        _mm256_set_m128(_mm_loadu_ps(hi), _mm_loadu_ps(lo))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::arch::x86_64::_mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        std::arch::x86_64::_mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // vfmadd (FMA3): a * b + c, one rounding.
        std::arch::x86_64::_mm256_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        std::arch::x86_64::_mm256_add_ps(self, b)
    }
}

#[cfg(target_arch = "aarch64")]
impl Vector for std::arch::aarch64::float32x4x4_t {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        use std::arch::aarch64::{float32x4x4_t, vld1q_f32};
        float32x4x4_t(
            vld1q_f32(p),
            vld1q_f32(p.add(4)),
            vld1q_f32(p.add(8)),
            vld1q_f32(p.add(12)),
        )
    }
    #[inline(always)]
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self {
        use std::arch::aarch64::{float32x4x4_t, vld1q_f32};
        float32x4x4_t(
            vld1q_f32(lo),
            vld1q_f32(lo.add(4)),
            vld1q_f32(hi),
            vld1q_f32(hi.add(4)),
        )
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        use std::arch::aarch64::vst1q_f32;
        vst1q_f32(p, self.0);
        vst1q_f32(p.add(4), self.1);
        vst1q_f32(p.add(8), self.2);
        vst1q_f32(p.add(12), self.3);
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        use std::arch::aarch64::{float32x4x4_t, vdupq_n_f32};
        let r = vdupq_n_f32(v);
        float32x4x4_t(r, r, r, r)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        use std::arch::aarch64::{float32x4x4_t, vfmaq_f32};
        // vfmaq_f32(c, a, b) = c + a * b, one rounding (the fmla instruction).
        float32x4x4_t(
            vfmaq_f32(c.0, self.0, b.0),
            vfmaq_f32(c.1, self.1, b.1),
            vfmaq_f32(c.2, self.2, b.2),
            vfmaq_f32(c.3, self.3, b.3),
        )
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        use std::arch::aarch64::{float32x4x4_t, vaddq_f32};
        float32x4x4_t(
            vaddq_f32(self.0, b.0),
            vaddq_f32(self.1, b.1),
            vaddq_f32(self.2, b.2),
            vaddq_f32(self.3, b.3),
        )
    }
}

/// Plain arrays: each lane `f32::mul_add` (the hardware fma inside a function compiled for it,
/// else the C library's `fmaf`) and `+`; the compiler vectorises them as it can.
impl<const N: usize> Vector for [f32; N] {
    const LANES: usize = N;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::ptr::read_unaligned(p as *const [f32; N])
    }
    #[inline(always)]
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self {
        std::array::from_fn(|q| {
            if q < N / 2 {
                *lo.add(q)
            } else {
                *hi.add(q - N / 2)
            }
        })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; N], self)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        [v; N]
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        std::array::from_fn(|q| self[q].mul_add(b[q], c[q]))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        std::array::from_fn(|q| self[q] + b[q])
    }
}

// Verifies (every test in this file): R-NUM-1, R-NUM-5
#[cfg(test)]
mod tests {
    use super::*;

    /// On aarch64 the NEON copy is what a NEON CPU selects (the path the property tests of
    /// the fast kernels exercise there); on x86-64 with AVX2+FMA one of the x86 copies.
    #[test]
    fn the_simd_copy_of_this_machine_is_detected() {
        let isa = Isa::detected();
        #[cfg(target_arch = "aarch64")]
        assert_eq!(isa, Isa::Neon, "aarch64 without NEON?");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            assert!(isa.is_simd(), "{}", isa.name());
        }
        eprintln!("fast kernels: {} copy", isa.name());
    }

    /// Each lane of `mul_add` is `f32::mul_add` of that lane, including a case where the
    /// unfused `a * b + c` differs (so a non-fused implementation fails).
    #[test]
    fn mul_add_is_the_lanewise_fma() {
        // (1 + 2^-12)^2 - (1 + 2^-11) = 2^-24: lost by a rounded product, kept by fma.
        let e = 1.0f32 / 4096.0;
        let a: [f32; 16] = std::array::from_fn(|q| 1.0 + e * (1 + q % 3) as f32);
        let b: [f32; 16] = std::array::from_fn(|q| a[q] * (1 - 2 * (q as i32 % 2)) as f32);
        let c: [f32; 16] = std::array::from_fn(|q| -(1.0 + 2.0 * e * (1 + q % 3) as f32));
        let want: [u32; 16] = std::array::from_fn(|q| a[q].mul_add(b[q], c[q]).to_bits());
        assert_ne!(
            want[0],
            (a[0] * b[0] + c[0]).to_bits(),
            "the case tells fma apart"
        );
        #[allow(unused_mut)]
        let mut checked = 0;
        #[cfg(target_arch = "x86_64")]
        if Isa::detected() == Isa::Avx512 {
            // SAFETY: the CPU has AVX-512F.
            let got = unsafe { lanes_avx512(&a, &b, &c) };
            assert_eq!(got.map(f32::to_bits), want);
            checked += 1;
        }
        #[cfg(target_arch = "aarch64")]
        if Isa::detected() == Isa::Neon {
            // SAFETY: the CPU has NEON.
            let got = unsafe { lanes_neon(&a, &b, &c) };
            assert_eq!(got.map(f32::to_bits), want);
            checked += 1;
        }
        eprintln!("vector types checked: {checked}");
    }

    /// `load`, `mul_add` and `store` of `a * b + c` on the type `V`; checks `splat(0.0)` too.
    #[inline(always)]
    unsafe fn lanes<V: Vector>(a: &[f32; 16], b: &[f32; 16], c: &[f32; 16]) -> [f32; 16] {
        let mut out = [0.0f32; 16];
        let r = V::load(a.as_ptr()).mul_add(V::load(b.as_ptr()), V::load(c.as_ptr()));
        r.store(out.as_mut_ptr());
        let mut z = [1.0f32; 16];
        V::splat(0.0).store(z.as_mut_ptr());
        assert!(z.iter().all(|v| v.to_bits() == 0));
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn lanes_avx512(a: &[f32; 16], b: &[f32; 16], c: &[f32; 16]) -> [f32; 16] {
        lanes::<std::arch::x86_64::__m512>(a, b, c)
    }

    #[cfg(target_arch = "aarch64")]
    #[target_feature(enable = "neon")]
    unsafe fn lanes_neon(a: &[f32; 16], b: &[f32; 16], c: &[f32; 16]) -> [f32; 16] {
        lanes::<std::arch::aarch64::float32x4x4_t>(a, b, c)
    }
}
