// The last two steps of the canonical reduction (reference/src/reduce.rs), for R reductions at
// once. A kernel that computes a reduction's lanes writes them as partials[R][nblocks][16]
// (lane l of block b of reduction r at (r * nblocks + b) * 16 + l; each lane the sequential
// chain of its terms from +0.0, in increasing term index). This kernel then computes, per
// reduction r (one thread each): the lane tree of every block, then the pairwise tree over the
// blocks. nblocks == 0 (no terms) gives +0.0.
//
// args: 0 partials (float, overwritten), 1 out (float[R]), 2 R, 3 nblocks
KERNEL(reduce_finish) {
    float *partials = ARG_PTR(float, 0);
    float *out = ARG_PTR(float, 1);
    long long count = ARG_I64(2);
    long long nblocks = ARG_I64(3);
    long long r = pk_global_index();
    if (r >= count) return;
    if (nblocks == 0) {
        out[r] = 0.0f;
        return;
    }
    float *base = partials + r * nblocks * PK_LANES;
    for (long long b = 0; b < nblocks; b++) {
        pk_lane_tree(base + b * PK_LANES, 1);
    }
    out[r] = pk_pairwise_tree(base, nblocks, PK_LANES);
}

// The lanes of R plain sums over the rows of x: reduction r sums x[r * n + i], i < n.
// One thread per (r, block, lane).
//
// args: 0 x, 1 partials, 2 R, 3 n
KERNEL(reduce_rows_lanes) {
    const float *x = ARG_PTR(const float, 0);
    float *partials = ARG_PTR(float, 1);
    long long count = ARG_I64(2);
    long long n = ARG_I64(3);
    long long nblocks = (n + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= count * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long r = t / (PK_LANES * nblocks);
    const float *row = x + r * n;
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(n, block); i += PK_LANES) {
        acc = acc + row[i];
    }
    partials[t] = acc;
}
