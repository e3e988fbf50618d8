// The soft Dice loss over the batch (reference losses::dice), forward and backward. Positions
// i = n * V + v (the label map's flat order); p_c(i) = p[((i / V) * C + c) * V + i % V];
// g_c(i) = 1.0 where labels[i] == c, else 0.0.

// The lanes of the 3C canonical reductions over the positions (terms in increasing i):
// I_c = fma(p_c, g_c, acc) at reduction c, P_c = fma(p_c, p_c, acc) at C + c,
// G_c = fma(g_c, g_c, acc) at 2C + c. One thread per (class, block, lane), writing
// partials[3C][nblocks][16].
KERNEL(dice_lanes, dice_lanes) {
    long long nblocks = (p.positions + PK_BLOCK - 1) / PK_BLOCK;
    long long per_kind = p.classes * nblocks * PK_LANES;
    long long t = pk_global_index();
    if (t >= per_kind) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long c = t / (PK_LANES * nblocks);
    float inter = 0.0f, pred = 0.0f, label = 0.0f;
    long long end = pk_block_end(p.positions, block);
    for (long long i = block * PK_BLOCK + lane; i < end; i += PK_LANES) {
        float pc = p.probs[((i / p.voxels) * p.classes + c) * p.voxels + i % p.voxels];
        float g = (long long)p.labels[i] == c ? 1.0f : 0.0f;
        inter = __fmaf_rn(pc, g, inter);
        pred = __fmaf_rn(pc, pc, pred);
        label = __fmaf_rn(g, g, label);
    }
    p.partials[t] = inter;
    p.partials[per_kind + t] = pred;
    p.partials[2 * per_kind + t] = label;
}

// The per-class scalars, one thread, classes ascending: num_c = 2 I_c + 1e-5,
// den_c = (G_c + P_c) + 1e-5, dice_c = num_c / den_c, total = total + (1 - dice_c) from +0.0,
// loss = total / C; for the backward coef_c = -((scale / C) / (den_c den_c)), a_c = 2 den_c,
// b_c = 2 num_c.
KERNEL(dice_classes, dice_classes) {
    if (pk_global_index() >= 1) return;
    float nc = (float)p.classes;
    float total = 0.0f;
    for (long long c = 0; c < p.classes; c++) {
        float num = 2.0f * p.sums[c] + PK_DICE_SMOOTH;
        float den = (p.sums[2 * p.classes + c] + p.sums[p.classes + c]) + PK_DICE_SMOOTH;
        total = total + (1.0f - __fdiv_rn(num, den));
        p.out[1 + c] = -__fdiv_rn(__fdiv_rn(p.scale, nc), den * den);
        p.out[1 + p.classes + c] = 2.0f * den;
        p.out[1 + 2 * p.classes + c] = 2.0f * num;
    }
    p.out[0] = __fdiv_rn(total, nc);
}

// dp_c = coef_c * fma(-b_c, p_c, g_c * a_c) at one position with label y.
__device__ __forceinline__ float dice_dp(const float *scalars, long long classes, long long c,
                                         float pc, long long y) {
    float g = y == c ? 1.0f : 0.0f;
    float t = __fmaf_rn(-scalars[1 + 2 * classes + c], pc, g * scalars[1 + classes + c]);
    return scalars[1 + c] * t;
}

// The gradient w.r.t. the logits, one thread per position: dp_c as dice_dp, then the softmax
// backward: G = fma(p_c, dp_c, G) over classes from +0.0, ds_j = p_j * (dp_j - G).
KERNEL(dice_backward, dice_backward) {
    long long t = pk_global_index();
    if (t >= p.positions) return;
    long long base = (t / p.voxels) * p.classes * p.voxels + t % p.voxels;
    long long y = p.labels[t];
    float big_g = 0.0f;
    for (long long c = 0; c < p.classes; c++) {
        float pc = p.probs[base + c * p.voxels];
        big_g = __fmaf_rn(pc, dice_dp(p.scalars, p.classes, c, pc, y), big_g);
    }
    for (long long c = 0; c < p.classes; c++) {
        float pc = p.probs[base + c * p.voxels];
        p.ds[base + c * p.voxels] = pc * (dice_dp(p.scalars, p.classes, c, pc, y) - big_g);
    }
}
