// The reference's own exp and ln (reference/src/mathfn.rs), operation for operation: the same
// constants (as hex literals, the exact bits of the Rust constants), the same fma chains through
// __fmaf_rn, IEEE division through __fdiv_rn, the same special cases. Same bits for every input.
//
// PK_LOG2E, PK_LN2_HI and PK_SQRT_2 are generated from std::f32::consts (pk_shared.cuh), the
// constants the reference uses. The others below mirror private constants of reference/src/
// mathfn.rs (and its polynomial coefficients) that build.rs cannot read: gpu/tests/mathfn.rs
// holds them together (pk_exp and pk_ln against the reference's exp and ln, bit for bit).

// ln 2 - PK_LN2_HI rounded to f32.
#define PK_LN2_LO -0x1.05c610p-29f
// exp overflows to +inf above 88.72284 and underflows to +0.0 below -103.97208.
#define PK_EXP_OVERFLOW 0x1.62e430p+6f
#define PK_EXP_UNDERFLOW -0x1.9fe368p+6f

// 2^k for -126 <= k <= 127, built from the exponent bits.
__device__ __forceinline__ float pk_pow2i(int k) {
    return __uint_as_float(((unsigned int)(k + 127)) << 23);
}

// Rust's round_ties_even for |y| < 2^23 (all pk_exp needs: |x * log2 e| <= 151 there): the
// magnitude plus 2^23 rounds to an integer (ties to even), minus 2^23 is exact; the sign of y is
// put back (so -0.3 gives -0.0, as in Rust).
__device__ __forceinline__ float pk_round_ties_even_small(float y) {
    unsigned int sign = __float_as_uint(y) & 0x80000000u;
    float mag = __uint_as_float(__float_as_uint(y) & 0x7fffffffu);
    float r = __fadd_rn(__fadd_rn(mag, 0x1p+23f), -0x1p+23f);
    return __uint_as_float(__float_as_uint(r) | sign);
}

// e^x (reference mathfn::exp): NaN gives x itself, x > 88.72284 gives +inf, x < -103.97208
// gives +0.0; k = round_ties_even(x * log2 e); r = fma(-k, LN2_HI, x), r = fma(-k, LN2_LO, r);
// degree-7 Taylor polynomial by Horner with fma from 1/5040 down to 1; p * 2^(k/2) * 2^(k-k/2).
__device__ __forceinline__ float pk_exp(float x) {
    if (x != x) return x;
    if (x > PK_EXP_OVERFLOW) return __uint_as_float(0x7f800000u);
    if (x < PK_EXP_UNDERFLOW) return 0.0f;
    float k = pk_round_ties_even_small(x * PK_LOG2E);
    float r = __fmaf_rn(-k, PK_LN2_HI, x);
    r = __fmaf_rn(-k, PK_LN2_LO, r);
    float p = 0x1.a01a02p-13f;          // 1/5040
    p = __fmaf_rn(p, r, 0x1.6c16c2p-10f); // 1/720
    p = __fmaf_rn(p, r, 0x1.111112p-7f);  // 1/120
    p = __fmaf_rn(p, r, 0x1.555556p-5f);  // 1/24
    p = __fmaf_rn(p, r, 0x1.555556p-3f);  // 1/6
    p = __fmaf_rn(p, r, 0.5f);
    p = __fmaf_rn(p, r, 1.0f);
    p = __fmaf_rn(p, r, 1.0f);
    int ki = (int)k;
    int k1 = ki / 2;
    int k2 = ki - k1;
    return p * pk_pow2i(k1) * pk_pow2i(k2);
}

// Natural logarithm (reference mathfn::ln): NaN or x < 0 gives NaN (0x7fc00000), +-0 gives -inf,
// +inf gives +inf; a subnormal x is scaled by 2^23 (e starts at -23); x = m 2^e with m in
// [1, 2), halved (e + 1) when m > sqrt 2; f = m - 1, s = f / (2 + f), z = s s;
// R = z * Horner(2/11 .. 2/3); hfsq = (0.5 f) f; ln1p = f - fma(s, -(hfsq + R), hfsq);
// ln x = fma(e, LN2_HI, fma(e, LN2_LO, ln1p)).
__device__ __forceinline__ float pk_ln(float x) {
    if (x != x || x < 0.0f) return __uint_as_float(0x7fc00000u);
    if (x == 0.0f) return __uint_as_float(0xff800000u);
    if (x == __uint_as_float(0x7f800000u)) return x;
    unsigned int bits;
    int e;
    if (x < 0x1p-126f) {
        bits = __float_as_uint(x * 0x1p+23f);
        e = -23;
    } else {
        bits = __float_as_uint(x);
        e = 0;
    }
    e += ((int)(bits >> 23)) - 127;
    bits = (bits & 0x007fffffu) | 0x3f800000u;
    float m = __uint_as_float(bits);
    if (m > PK_SQRT_2) {
        m *= 0.5f;
        e += 1;
    }
    float f = m - 1.0f;
    float s = __fdiv_rn(f, 2.0f + f);
    float z = s * s;
    float r = 0x1.745d18p-3f;           // 2/11
    r = __fmaf_rn(r, z, 0x1.c71c72p-3f); // 2/9
    r = __fmaf_rn(r, z, 0x1.24924ap-2f); // 2/7
    r = __fmaf_rn(r, z, 0x1.99999ap-2f); // 2/5
    r = __fmaf_rn(r, z, 0x1.555556p-1f); // 2/3
    r *= z;
    float hfsq = 0.5f * f * f;
    float ln1p = f - __fmaf_rn(s, -(hfsq + r), hfsq);
    float ef = (float)e;
    return __fmaf_rn(ef, PK_LN2_HI, __fmaf_rn(ef, PK_LN2_LO, ln1p));
}
