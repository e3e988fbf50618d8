// protokd GPU kernels: the common prelude, prepended to every kernel source.
//
// Every kernel file (kernels/*.cu) is compiled twice from the same text:
//  * by NVRTC for the Cuda device (`--fmad=false --prec-div=true --prec-sqrt=true --ftz=false`),
//    the source being this prelude followed by the file;
//  * by the host C++ compiler for the Emulated device (build.rs, `-include prelude.cuh`,
//    `-ffp-contract=off`), where emu.h supplies blockIdx/threadIdx and the intrinsics below.
//
// Conventions (gpu/README.md):
//  * A kernel is declared `KERNEL(name)` and takes ONE argument, `pk_args p`: 16 64-bit slots
//    read with ARG_PTR(type, i), ARG_I64(i) and ARG_F32(i) (the host packs them in the same
//    order, gpu/src/args.rs). So every launch has one signature on both devices.
//  * No shared memory, no __syncthreads, no warp intrinsics, no atomics: every thread computes
//    whole outputs on its own, so a launch is a plain loop over blocks and threads in emulation.
//  * Arithmetic is spelled with the IEEE intrinsics: fma is __fmaf_rn (never a contracted
//    a * b + c: fmad is off), division __fdiv_rn, square root __fsqrt_rn; `+`, `-`, `*` are
//    single IEEE operations. The orders are the reference crate's, written in its docs.

#ifndef __CUDACC__
#include "emu.h"
#endif

struct pk_args {
    unsigned long long a[16];
};

#define KERNEL(name) extern "C" __global__ void name(pk_args p)
#define ARG_PTR(type, i) ((type *)(p.a[i]))
#define ARG_I64(i) ((long long)(p.a[i]))
#define ARG_F32(i) (__uint_as_float((unsigned int)(p.a[i])))

// The flat index of this thread over a 1-D launch (blockIdx.x * blockDim.x + threadIdx.x),
// widened before the multiplication.
__device__ __forceinline__ long long pk_global_index() {
    return (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;
}

// The reference's ReLU of one value (layers::relu::relu): x if x > 0 or x is NaN (its bits
// passed on), else +0.0. Decided and selected on the bits: a float select `(x > 0 || x != x) ?
// x : 0` is compiled by NVRTC into max.NaN.f32, which returns the canonical NaN 0x7fffffff
// instead of x's payload (seen on an H200: docs/gpu-validation.md).
__device__ __forceinline__ float pk_relu(float x) {
    unsigned int u = __float_as_uint(x);
    unsigned int magnitude = u & 0x7fffffffu;
    // Sign clear and not zero (x > 0, +inf included), or a NaN of either sign.
    bool keep = ((u >> 31) == 0u && magnitude != 0u) || magnitude > 0x7f800000u;
    return __uint_as_float(keep ? u : 0u);
}

// The canonical reduction's shape (reference/src/reduce.rs): blocks of PK_BLOCK terms, term i of
// a block in lane i % PK_LANES, each lane a sequential chain from +0.0 in increasing i.
#define PK_LANES 16
#define PK_BLOCK 4096

// Lane tree of one block: (l0+l1), (l2+l3), ... then the same on the results, 16 -> 1.
// `l` is read at l[k * stride], k < 16, and overwritten.
__device__ __forceinline__ float pk_lane_tree(float *l, long long stride) {
    for (int width = PK_LANES / 2; width >= 1; width /= 2) {
        for (int j = 0; j < width; j++) {
            l[j * stride] = l[(2 * j) * stride] + l[(2 * j + 1) * stride];
        }
    }
    return l[0];
}

// The range of term indices of lane `lane` in block `block` of an n-term reduction:
// i = block * PK_BLOCK + lane + PK_LANES * j for i < min(n, (block + 1) * PK_BLOCK).
__device__ __forceinline__ long long pk_block_end(long long n, long long block) {
    long long end = (block + 1) * PK_BLOCK;
    return end < n ? end : n;
}
