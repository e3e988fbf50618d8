// The soft Dice loss over the batch (reference losses::dice), forward and backward. Positions
// i = n * V + v (the label map's flat order); p_c(i) = p[((i / V) * C + c) * V + i % V];
// g_c(i) = 1.0 where labels[i] == c, else 0.0.

// The lanes of the 3C canonical reductions over the positions (terms in increasing i):
// I_c = fma(p_c, g_c, acc) at reduction c, P_c = fma(p_c, p_c, acc) at C + c,
// G_c = fma(g_c, g_c, acc) at 2C + c. One thread per (class, block, lane), writing
// partials[3C][nblocks][16].
//
// args: 0 p, 1 labels (u8), 2 partials, 3 C, 4 V, 5 positions N*V
KERNEL(dice_lanes) {
    const float *probs = ARG_PTR(const float, 0);
    const unsigned char *labels = ARG_PTR(const unsigned char, 1);
    float *partials = ARG_PTR(float, 2);
    long long classes = ARG_I64(3);
    long long voxels = ARG_I64(4);
    long long positions = ARG_I64(5);
    long long nblocks = (positions + PK_BLOCK - 1) / PK_BLOCK;
    long long per_kind = classes * nblocks * PK_LANES;
    long long t = pk_global_index();
    if (t >= per_kind) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long c = t / (PK_LANES * nblocks);
    float inter = 0.0f, pred = 0.0f, label = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(positions, block); i += PK_LANES) {
        float pc = probs[((i / voxels) * classes + c) * voxels + i % voxels];
        float g = (long long)labels[i] == c ? 1.0f : 0.0f;
        inter = __fmaf_rn(pc, g, inter);
        pred = __fmaf_rn(pc, pc, pred);
        label = __fmaf_rn(g, g, label);
    }
    partials[t] = inter;
    partials[per_kind + t] = pred;
    partials[2 * per_kind + t] = label;
}

// The per-class scalars, one thread, classes ascending: num_c = 2 I_c + 1e-5,
// den_c = (G_c + P_c) + 1e-5, dice_c = num_c / den_c, total = total + (1 - dice_c) from +0.0,
// loss = total / C; for the backward coef_c = -((scale / C) / (den_c den_c)), a_c = 2 den_c,
// b_c = 2 num_c.
//
// args: 0 sums [I | P | G] (3C), 1 out [loss, coef[C], a[C], b[C]], 2 C, 3 scale (f32)
KERNEL(dice_classes) {
    const float *sums = ARG_PTR(const float, 0);
    float *out = ARG_PTR(float, 1);
    long long classes = ARG_I64(2);
    float scale = ARG_F32(3);
    if (pk_global_index() >= 1) return;
    const float smooth = 0x1.4f8b58p-17f; // DICE_SMOOTH = 1e-5 rounded to f32
    float nc = (float)classes;
    float total = 0.0f;
    for (long long c = 0; c < classes; c++) {
        float num = 2.0f * sums[c] + smooth;
        float den = (sums[2 * classes + c] + sums[classes + c]) + smooth;
        total = total + (1.0f - __fdiv_rn(num, den));
        out[1 + c] = -__fdiv_rn(__fdiv_rn(scale, nc), den * den);
        out[1 + classes + c] = 2.0f * den;
        out[1 + 2 * classes + c] = 2.0f * num;
    }
    out[0] = __fdiv_rn(total, nc);
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
//
// args: 0 p, 1 labels, 2 scalars (dice_classes' out), 3 ds, 4 C, 5 V, 6 positions
KERNEL(dice_backward) {
    const float *probs = ARG_PTR(const float, 0);
    const unsigned char *labels = ARG_PTR(const unsigned char, 1);
    const float *scalars = ARG_PTR(const float, 2);
    float *ds = ARG_PTR(float, 3);
    long long classes = ARG_I64(4);
    long long voxels = ARG_I64(5);
    long long positions = ARG_I64(6);
    long long t = pk_global_index();
    if (t >= positions) return;
    long long base = (t / voxels) * classes * voxels + t % voxels;
    long long y = labels[t];
    float big_g = 0.0f;
    for (long long c = 0; c < classes; c++) {
        float pc = probs[base + c * voxels];
        big_g = __fmaf_rn(pc, dice_dp(scalars, classes, c, pc, y), big_g);
    }
    for (long long c = 0; c < classes; c++) {
        float pc = probs[base + c * voxels];
        ds[base + c * voxels] = pc * (dice_dp(scalars, classes, c, pc, y) - big_g);
    }
}
