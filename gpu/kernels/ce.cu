// Class-weighted cross-entropy (reference losses::ce), forward and backward. Positions
// i = n * V + v (the label map's flat order); the value of class c at position i is at
// ((i / V) * C + c) * V + i % V.

// Exact class counts, lanes-style: one thread per (class, block, lane) counts the positions
// i = block * 4096 + lane + 16 j (< the block's end) with labels[i] == c, into
// counts[C][nblocks][16] (u32; the host adds them, integers, so any order is exact).
KERNEL(ce_count_lanes, ce_count_lanes) {
    long long nblocks = (p.positions + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= p.classes * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long c = t / (PK_LANES * nblocks);
    unsigned int count = 0;
    long long end = pk_block_end(p.positions, block);
    for (long long i = block * PK_BLOCK + lane; i < end; i += PK_LANES) {
        count += (long long)p.labels[i] == c ? 1u : 0u;
    }
    p.counts[t] = count;
}

// The lanes of the two canonical reductions over the positions (terms in increasing i), one
// thread per (block, lane): S = fma(w_y, -logp_y(i), acc) at reduction 0, W = acc + w_y at
// reduction 1 (y = labels[i]), into partials[2][nblocks][16].
KERNEL(ce_lanes, ce_lanes) {
    long long nblocks = (p.positions + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES;
    float nll = 0.0f, weights = 0.0f;
    long long end = pk_block_end(p.positions, block);
    for (long long i = block * PK_BLOCK + lane; i < end; i += PK_LANES) {
        long long y = p.labels[i];
        float wy = p.w[y];
        long long at = ((i / p.voxels) * p.classes + y) * p.voxels + i % p.voxels;
        nll = __fmaf_rn(wy, -p.logp[at], nll);
        weights = weights + wy;
    }
    p.partials[t] = nll;
    p.partials[nblocks * PK_LANES + t] = weights;
}

// The gradient w.r.t. the logits, one thread per position (label y), for W = sums[1] != 0:
// a = (scale * w_y) / W; gl_c = -a at c == y, +0.0 elsewhere; the log-softmax backward:
// T = ((0 + gl_0) + gl_1) + ..., ds_j = fma(-p_j, T, gl_j).
KERNEL(ce_backward, ce_backward) {
    long long t = pk_global_index();
    if (t >= p.positions) return;
    long long base = (t / p.voxels) * p.classes * p.voxels + t % p.voxels;
    long long y = p.labels[t];
    float neg_a = -__fdiv_rn(p.scale * p.w[y], p.sums[1]);
    float total = 0.0f;
    for (long long c = 0; c < p.classes; c++) {
        total = total + (c == y ? neg_a : 0.0f);
    }
    for (long long c = 0; c < p.classes; c++) {
        long long at = base + c * p.voxels;
        p.ds[at] = __fmaf_rn(-p.probs[at], total, c == y ? neg_a : 0.0f);
    }
}
