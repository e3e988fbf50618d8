// BatchNorm3d (reference layers::batchnorm3d): per-channel canonical reductions over [N, C, V]
// data, the per-channel statistics, and the per-element normalisation and backward.
//
// Term i of channel c's reductions is the value at (i / V, c, i % V), M = N V terms.

// 1 / sqrt(var + eps) (PK_BN_EPS: the reference's BN_EPS, pk_shared.cuh): IEEE addition,
// square root, division.
static __device__ __forceinline__ float bn_invstd_of(float var) {
    return __fdiv_rn(1.0f, __fsqrt_rn(var + PK_BN_EPS));
}

// The lanes of C per-channel canonical reductions, partials[C][nblocks][16]; one thread per
// (channel, block, lane), its chain from +0.0 over i = block * 4096 + lane + 16 j in increasing
// i. Chain step by `step`: BN_STEP_SUM `acc + a_i`; BN_STEP_SQUARED_DEVIATION `fma(d, d, acc)` with
// `d = a_i - mean[c]`; BN_STEP_DOT `fma(a_i, b_i, acc)`. (`b` and `mean` are read only by the steps
// that use them.)
KERNEL(bn_channel_lanes, bn_channel_lanes) {
    long long m = p.n * p.v;
    long long nblocks = (m + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= p.c * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long ch = t / (PK_LANES * nblocks);
    long long i = block * PK_BLOCK + lane;
    long long end = pk_block_end(m, block);
    // Position (sample, voxel) of term i, advanced by 16 terms per step.
    long long sample = i / p.v;
    long long voxel = i % p.v;
    float mu = p.step == BN_STEP_SQUARED_DEVIATION ? p.mean[ch] : 0.0f;
    float acc = 0.0f;
    for (; i < end; i += PK_LANES) {
        long long at = (sample * p.c + ch) * p.v + voxel;
        if (p.step == BN_STEP_SUM) {
            acc = acc + p.a[at];
        } else if (p.step == BN_STEP_SQUARED_DEVIATION) {
            float d = p.a[at] - mu;
            acc = __fmaf_rn(d, d, acc);
        } else {
            acc = __fmaf_rn(p.a[at], p.b[at], acc);
        }
        voxel += PK_LANES;
        while (voxel >= p.v) {
            voxel -= p.v;
            sample += 1;
        }
    }
    p.partials[t] = acc;
}

// mean[c] = S[c] / Mf (IEEE division).
KERNEL(bn_mean, bn_mean) {
    long long ch = pk_global_index();
    if (ch >= p.c) return;
    p.mean[ch] = __fdiv_rn(p.s[ch], p.mf);
}

// The training statistics of channel c from Q (the squared-deviation sum) and the mean:
// var = Q / Mf; invstd = 1 / sqrt(var + eps);
// running_mean' = fma(0.1, mean, 0.9 * running_mean);
// running_var' = fma(0.1, var * unbias, 0.9 * running_var), unbias = Mf / (M - 1) (host).
KERNEL(bn_train_stats, bn_train_stats) {
    long long ch = pk_global_index();
    if (ch >= p.c) return;
    float var = __fdiv_rn(p.q[ch], p.mf);
    p.invstd[ch] = bn_invstd_of(var);
    p.rm_out[ch] = __fmaf_rn(PK_BN_MOMENTUM, p.mean[ch], PK_BN_KEEP * p.rm[ch]);
    p.rv_out[ch] = __fmaf_rn(PK_BN_MOMENTUM, var * p.unbias, PK_BN_KEEP * p.rv[ch]);
}

// invstd[c] = 1 / sqrt(running_var[c] + eps) (evaluation mode).
KERNEL(bn_eval_invstd, bn_eval_invstd) {
    long long ch = pk_global_index();
    if (ch >= p.c) return;
    p.invstd[ch] = bn_invstd_of(p.rv[ch]);
}

// Per element of [N, C, V]: xhat = (x - shift[c]) * invstd[c], y = fma(xhat, weight[c], bias[c]);
// shift is the batch mean (training) or the running mean (evaluation). xhat is stored only
// where its pointer is not null.
//
// With `relu` set, y = pk_relu(fma(..)) in the same pass (the VNet's BatchNorm -> ReLU).
KERNEL(bn_normalize, bn_normalize) {
    long long t = pk_global_index();
    if (t >= p.total) return;
    long long ch = (t / p.v) % p.c;
    float h = (p.x[t] - p.shift[ch]) * p.invstd[ch];
    float out = __fmaf_rn(h, p.weight[ch], p.bias[ch]);
    p.y[t] = p.relu ? pk_relu(out) : out;
    if (p.xhat) p.xhat[t] = h;
}

// Per element of [N, C, V]: k = (weight[c] * invstd[c]) / Mf,
// dx = k * fma(-xhat, dweight[c], fma(Mf, dy, -dbias[c])).
KERNEL(bn_backward_dx, bn_backward_dx) {
    long long t = pk_global_index();
    if (t >= p.total) return;
    long long ch = (t / p.v) % p.c;
    float k = __fdiv_rn(p.weight[ch] * p.invstd[ch], p.mf);
    p.dx[t] = k * __fmaf_rn(-p.xhat[t], p.dweight[ch], __fmaf_rn(p.mf, p.dy[t], -p.dbias[ch]));
}
