// Host shim for the Emulated device: what CUDA C provides built in, for the host C++ compiler.
// Only the subset the kernels use (see prelude.cuh); anything else fails to compile on the host,
// which is the point: the emulation must run exactly the kernel text NVRTC compiles.
#pragma once
#include <cmath>
#include <cstring>

struct pk_dim3 {
    unsigned int x, y, z;
};

// Set by the launch loop (emu_runtime.cpp) before each emulated thread runs.
extern thread_local pk_dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict

// IEEE-754 operations with round-to-nearest-even: the C library's fmaf is correctly rounded, and
// x86-64 / aarch64 host float arithmetic is IEEE single precision (no x87 excess precision,
// -ffp-contract=off so nothing is fused behind our back).
inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
