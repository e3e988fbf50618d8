// BatchNorm3d (reference layers::batchnorm3d): per-channel canonical reductions over [N, C, V]
// data, the per-channel statistics, and the per-element normalisation and backward.
//
// Term i of channel c's reductions is the value at (i / V, c, i % V), M = N V terms.

// Chain steps of bn_channel_lanes (reference reduce::ChannelStep).
enum bn_step { BN_SUM = 0, BN_SQUARED_DEVIATION = 1, BN_DOT = 2 };

// BatchNorm epsilon and the running-statistics constants (reference BN_EPS, BN_MOMENTUM,
// BN_KEEP).
static __device__ __forceinline__ float bn_eps() { return 1e-5f; }
static __device__ __forceinline__ float bn_momentum() { return 0.1f; }
static __device__ __forceinline__ float bn_keep() { return 0.9f; }

// 1 / sqrt(var + eps): IEEE addition, square root, division.
static __device__ __forceinline__ float bn_invstd_of(float var) {
    return __fdiv_rn(1.0f, __fsqrt_rn(var + bn_eps()));
}

// The lanes of C per-channel canonical reductions, partials[C][nblocks][16]; one thread per
// (channel, block, lane), its chain from +0.0 over i = block * 4096 + lane + 16 j in increasing
// i. Chain step by `step`: BN_SUM `acc + a_i`; BN_SQUARED_DEVIATION `fma(d, d, acc)` with
// `d = a_i - mean[c]`; BN_DOT `fma(a_i, b_i, acc)`. (`b` and `mean` are read only by the steps
// that use them.)
//
// args: 0 a, 1 b, 2 mean[C], 3 partials, 4 N, 5 C, 6 V, 7 step
KERNEL(bn_channel_lanes) {
    const float *a = ARG_PTR(const float, 0);
    const float *b = ARG_PTR(const float, 1);
    const float *mean = ARG_PTR(const float, 2);
    float *partials = ARG_PTR(float, 3);
    long long n = ARG_I64(4);
    long long c = ARG_I64(5);
    long long v = ARG_I64(6);
    long long step = ARG_I64(7);
    long long m = n * v;
    long long nblocks = (m + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= c * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long ch = t / (PK_LANES * nblocks);
    long long i = block * PK_BLOCK + lane;
    long long end = pk_block_end(m, block);
    // Position (sample, voxel) of term i, advanced by 16 terms per step.
    long long sample = i / v;
    long long voxel = i % v;
    float mu = step == BN_SQUARED_DEVIATION ? mean[ch] : 0.0f;
    float acc = 0.0f;
    for (; i < end; i += PK_LANES) {
        long long at = (sample * c + ch) * v + voxel;
        if (step == BN_SUM) {
            acc = acc + a[at];
        } else if (step == BN_SQUARED_DEVIATION) {
            float d = a[at] - mu;
            acc = __fmaf_rn(d, d, acc);
        } else {
            acc = __fmaf_rn(a[at], b[at], acc);
        }
        voxel += PK_LANES;
        while (voxel >= v) {
            voxel -= v;
            sample += 1;
        }
    }
    partials[t] = acc;
}

// mean[c] = S[c] / Mf (IEEE division).
//
// args: 0 S, 1 mean, 2 C, 3 Mf
KERNEL(bn_mean) {
    const float *s = ARG_PTR(const float, 0);
    float *mean = ARG_PTR(float, 1);
    long long c = ARG_I64(2);
    float mf = ARG_F32(3);
    long long ch = pk_global_index();
    if (ch >= c) return;
    mean[ch] = __fdiv_rn(s[ch], mf);
}

// The training statistics of channel c from Q (the squared-deviation sum) and the mean:
// var = Q / Mf; invstd = 1 / sqrt(var + eps);
// running_mean' = fma(0.1, mean, 0.9 * running_mean);
// running_var' = fma(0.1, var * unbias, 0.9 * running_var), unbias = Mf / (M - 1) (host).
//
// args: 0 Q, 1 mean, 2 running_mean, 3 running_var, 4 invstd out, 5 running_mean out,
//       6 running_var out, 7 C, 8 Mf, 9 unbias
KERNEL(bn_train_stats) {
    const float *q = ARG_PTR(const float, 0);
    const float *mean = ARG_PTR(const float, 1);
    const float *rm = ARG_PTR(const float, 2);
    const float *rv = ARG_PTR(const float, 3);
    float *invstd = ARG_PTR(float, 4);
    float *rm_out = ARG_PTR(float, 5);
    float *rv_out = ARG_PTR(float, 6);
    long long c = ARG_I64(7);
    float mf = ARG_F32(8);
    float unbias = ARG_F32(9);
    long long ch = pk_global_index();
    if (ch >= c) return;
    float var = __fdiv_rn(q[ch], mf);
    invstd[ch] = bn_invstd_of(var);
    rm_out[ch] = __fmaf_rn(bn_momentum(), mean[ch], bn_keep() * rm[ch]);
    rv_out[ch] = __fmaf_rn(bn_momentum(), var * unbias, bn_keep() * rv[ch]);
}

// invstd[c] = 1 / sqrt(running_var[c] + eps) (evaluation mode).
//
// args: 0 running_var, 1 invstd, 2 C
KERNEL(bn_eval_invstd) {
    const float *rv = ARG_PTR(const float, 0);
    float *invstd = ARG_PTR(float, 1);
    long long c = ARG_I64(2);
    long long ch = pk_global_index();
    if (ch >= c) return;
    invstd[ch] = bn_invstd_of(rv[ch]);
}

// Per element of [N, C, V]: xhat = (x - shift[c]) * invstd[c], y = fma(xhat, weight[c], bias[c]);
// shift is the batch mean (training) or the running mean (evaluation). xhat is stored only
// where its pointer is not null.
//
// With `relu` set, y = pk_relu(fma(..)) in the same pass (the VNet's BatchNorm -> ReLU).
//
// args: 0 x, 1 shift, 2 invstd, 3 weight, 4 bias, 5 y, 6 xhat (or 0), 7 N C V, 8 C, 9 V, 10 relu
KERNEL(bn_normalize) {
    const float *x = ARG_PTR(const float, 0);
    const float *shift = ARG_PTR(const float, 1);
    const float *invstd = ARG_PTR(const float, 2);
    const float *weight = ARG_PTR(const float, 3);
    const float *bias = ARG_PTR(const float, 4);
    float *y = ARG_PTR(float, 5);
    float *xhat = ARG_PTR(float, 6);
    long long total = ARG_I64(7);
    long long c = ARG_I64(8);
    long long v = ARG_I64(9);
    long long relu = ARG_I64(10);
    long long t = pk_global_index();
    if (t >= total) return;
    long long ch = (t / v) % c;
    float h = (x[t] - shift[ch]) * invstd[ch];
    float out = __fmaf_rn(h, weight[ch], bias[ch]);
    y[t] = relu ? pk_relu(out) : out;
    if (xhat) xhat[t] = h;
}

// Per element of [N, C, V]: k = (weight[c] * invstd[c]) / Mf,
// dx = k * fma(-xhat, dweight[c], fma(Mf, dy, -dbias[c])).
//
// args: 0 dy, 1 xhat, 2 weight, 3 invstd, 4 dweight, 5 dbias, 6 dx, 7 N C V, 8 C, 9 V, 10 Mf
KERNEL(bn_backward_dx) {
    const float *dy = ARG_PTR(const float, 0);
    const float *xhat = ARG_PTR(const float, 1);
    const float *weight = ARG_PTR(const float, 2);
    const float *invstd = ARG_PTR(const float, 3);
    const float *dweight = ARG_PTR(const float, 4);
    const float *dbias = ARG_PTR(const float, 5);
    float *dx = ARG_PTR(float, 6);
    long long total = ARG_I64(7);
    long long c = ARG_I64(8);
    long long v = ARG_I64(9);
    float mf = ARG_F32(10);
    long long t = pk_global_index();
    if (t >= total) return;
    long long ch = (t / v) % c;
    float k = __fdiv_rn(weight[ch] * invstd[ch], mf);
    dx[t] = k * __fmaf_rn(-xhat[t], dweight[ch], __fmaf_rn(mf, dy[t], -dbias[ch]));
}
