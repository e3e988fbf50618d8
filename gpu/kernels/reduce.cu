// The last two steps of the canonical reduction (reference/src/reduce.rs), for R reductions at
// once, in parallel. A kernel that computes a reduction's lanes writes them as
// partials[R][nblocks][16] (lane l of block b of reduction r at (r * nblocks + b) * 16 + l;
// each lane the sequential chain of its terms from +0.0, in increasing term index). Then:
//  1. reduce_lane_trees (one thread per (r, b)): the lane tree of block b of reduction r, into
//     sums[r * nblocks + b];
//  2. reduce_pairwise_level, once per level of the pairwise tree over the blocks (one thread per
//     (r, j)): element j of the next level is x[2j] + x[2j+1], an odd last element is carried
//     up unchanged; the last level writes the result.
// Each value is the same sum of the same operands as in the sequential tree, so the bits are
// the reference's.

KERNEL(reduce_lane_trees, reduce_lane_trees) {
    long long t = pk_global_index();
    if (t >= p.count) return;
    p.sums[t] = pk_lane_tree(p.partials + t * PK_LANES, 1);
}

// One level of the pairwise tree over `len` values per reduction: dst[r * dst_stride + j] for
// j < (len + 1) / 2 from src[r * src_stride + 2j] (+ src[r * src_stride + 2j + 1]).
KERNEL(reduce_pairwise_level, reduce_pairwise_level) {
    long long next = (p.len + 1) / 2;
    long long t = pk_global_index();
    if (t >= p.count * next) return;
    long long r = t / next;
    long long j = t % next;
    const float *x = p.src + r * p.src_stride;
    p.dst[r * p.dst_stride + j] = 2 * j + 1 < p.len ? x[2 * j] + x[2 * j + 1] : x[2 * j];
}

// The lanes of R plain sums over the rows of x: reduction r sums x[r * n + i], i < n.
// One thread per (r, block, lane).
KERNEL(reduce_rows_lanes, reduce_rows_lanes) {
    long long nblocks = (p.n + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= p.count * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long r = t / (PK_LANES * nblocks);
    const float *row = p.x + r * p.n;
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(p.n, block); i += PK_LANES) {
        acc = acc + row[i];
    }
    p.partials[t] = acc;
}
