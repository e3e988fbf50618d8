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

// args: 0 partials (float, overwritten), 1 sums (float[R * nblocks]), 2 R * nblocks
KERNEL(reduce_lane_trees) {
    float *partials = ARG_PTR(float, 0);
    float *sums = ARG_PTR(float, 1);
    long long count = ARG_I64(2);
    long long t = pk_global_index();
    if (t >= count) return;
    sums[t] = pk_lane_tree(partials + t * PK_LANES, 1);
}

// One level of the pairwise tree over `len` values per reduction: dst[r * dst_stride + j] for
// j < (len + 1) / 2 from src[r * src_stride + 2j] (+ src[r * src_stride + 2j + 1]).
//
// args: 0 src, 1 dst, 2 R, 3 len, 4 src_stride, 5 dst_stride
KERNEL(reduce_pairwise_level) {
    const float *src = ARG_PTR(const float, 0);
    float *dst = ARG_PTR(float, 1);
    long long count = ARG_I64(2);
    long long len = ARG_I64(3);
    long long src_stride = ARG_I64(4);
    long long dst_stride = ARG_I64(5);
    long long next = (len + 1) / 2;
    long long t = pk_global_index();
    if (t >= count * next) return;
    long long r = t / next;
    long long j = t % next;
    const float *x = src + r * src_stride;
    dst[r * dst_stride + j] = 2 * j + 1 < len ? x[2 * j] + x[2 * j + 1] : x[2 * j];
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
