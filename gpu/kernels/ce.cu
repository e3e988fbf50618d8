// Class-weighted cross-entropy (reference losses::ce), forward and backward. Positions
// i = n * V + v (the label map's flat order); the value of class c at position i is at
// ((i / V) * C + c) * V + i % V.

// Exact class counts, lanes-style: one thread per (class, block, lane) counts the positions
// i = block * 4096 + lane + 16 j (< the block's end) with labels[i] == c, into
// counts[C][nblocks][16] (u32; the host adds them, integers, so any order is exact).
//
// args: 0 labels (u8), 1 counts (u32), 2 C, 3 positions
KERNEL(ce_count_lanes) {
    const unsigned char *labels = ARG_PTR(const unsigned char, 0);
    unsigned int *counts = ARG_PTR(unsigned int, 1);
    long long classes = ARG_I64(2);
    long long positions = ARG_I64(3);
    long long nblocks = (positions + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= classes * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long c = t / (PK_LANES * nblocks);
    unsigned int count = 0;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(positions, block); i += PK_LANES) {
        count += (long long)labels[i] == c ? 1u : 0u;
    }
    counts[t] = count;
}

// The lanes of the two canonical reductions over the positions (terms in increasing i), one
// thread per (block, lane): S = fma(w_y, -logp_y(i), acc) at reduction 0, W = acc + w_y at
// reduction 1 (y = labels[i]), into partials[2][nblocks][16].
//
// args: 0 logp, 1 labels, 2 w (C class weights), 3 partials, 4 C, 5 V, 6 positions
KERNEL(ce_lanes) {
    const float *logp = ARG_PTR(const float, 0);
    const unsigned char *labels = ARG_PTR(const unsigned char, 1);
    const float *w = ARG_PTR(const float, 2);
    float *partials = ARG_PTR(float, 3);
    long long classes = ARG_I64(4);
    long long voxels = ARG_I64(5);
    long long positions = ARG_I64(6);
    long long nblocks = (positions + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES;
    float nll = 0.0f, weights = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(positions, block); i += PK_LANES) {
        long long y = labels[i];
        float wy = w[y];
        nll = __fmaf_rn(wy, -logp[((i / voxels) * classes + y) * voxels + i % voxels], nll);
        weights = weights + wy;
    }
    partials[t] = nll;
    partials[nblocks * PK_LANES + t] = weights;
}

// The gradient w.r.t. the logits, one thread per position (label y), for W = sums[1] != 0:
// a = (scale * w_y) / W; gl_c = -a at c == y, +0.0 elsewhere; the log-softmax backward:
// T = ((0 + gl_0) + gl_1) + ..., ds_j = fma(-p_j, T, gl_j).
//
// args: 0 p, 1 labels, 2 w, 3 sums [S, W], 4 ds, 5 C, 6 V, 7 positions, 8 scale (f32)
KERNEL(ce_backward) {
    const float *probs = ARG_PTR(const float, 0);
    const unsigned char *labels = ARG_PTR(const unsigned char, 1);
    const float *w = ARG_PTR(const float, 2);
    const float *sums = ARG_PTR(const float, 3);
    float *ds = ARG_PTR(float, 4);
    long long classes = ARG_I64(5);
    long long voxels = ARG_I64(6);
    long long positions = ARG_I64(7);
    float scale = ARG_F32(8);
    long long t = pk_global_index();
    if (t >= positions) return;
    long long base = (t / voxels) * classes * voxels + t % voxels;
    long long y = labels[t];
    float neg_a = -__fdiv_rn(scale * w[y], sums[1]);
    float total = 0.0f;
    for (long long c = 0; c < classes; c++) {
        total = total + (c == y ? neg_a : 0.0f);
    }
    for (long long c = 0; c < classes; c++) {
        ds[base + c * voxels] = __fmaf_rn(-probs[base + c * voxels], total, c == y ? neg_a : 0.0f);
    }
}
