// The prototype (I2FV) loss, forward and backward: reference/src/losses/proto.rs (its module
// docs give every order followed here). Features are [N, F, V], labels [N, V] (one byte each);
// K is the list of kept classes (ascending), kk a position in it. Host side: gpu/src/ops/proto.rs.

// Label values a byte can hold (the reference counts every one of them).
#define PROTO_CLASSES 256
// PROTO_EPS (added to a count) and COS_EPS (the norm clamp) of reference/src/losses/mod.rs.
#define PROTO_COUNT_EPS 1e-5f
#define PROTO_COS_EPS 1e-5f

// |a| = sqrt of the fma chain acc = fma(a_c, a_c, acc) from +0.0 over a[c * stride], c < nf.
static __device__ float proto_norm(const float *a, long long nf, long long stride) {
    float acc = 0.0f;
    for (long long c = 0; c < nf; c++) {
        float x = a[c * stride];
        acc = __fmaf_rn(x, x, acc);
    }
    return __fsqrt_rn(acc);
}

// The divisor of the normalisation: 1e-5 where |a| < 1e-5, else |a|.
static __device__ float proto_clamp(float norm) {
    return norm < PROTO_COS_EPS ? PROTO_COS_EPS : norm;
}

// One component of norm_backward(â, |a|, dâ): dâ_c / 1e-5 where |a| < 1e-5, else
// fma(-â_c, s, dâ_c) / |a| with s = the chain fma(â_c, dâ_c, acc) from +0.0 over the channels.
static __device__ float proto_norm_backward(float unit, float d_unit, float norm, float s) {
    if (norm < PROTO_COS_EPS) return __fdiv_rn(d_unit, PROTO_COS_EPS);
    return __fdiv_rn(__fmaf_rn(-unit, s, d_unit), norm);
}

// Class counts, step 1 of 2: the histogram of the labels of one chunk of PK_BLOCK voxels of one
// sample, partial[(n * nchunks + chunk) * 256 + label]. One thread per (n, chunk). Integer
// counts: exact in any order.
//
// args: 0 labels (u8 [N, V]), 1 partial (u32), 2 N, 3 V
KERNEL(proto_count_chunks) {
    const unsigned char *labels = ARG_PTR(const unsigned char, 0);
    unsigned int *partial = ARG_PTR(unsigned int, 1);
    long long n = ARG_I64(2);
    long long v = ARG_I64(3);
    long long nchunks = (v + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= n * nchunks) return;
    long long b = t / nchunks;
    long long chunk = t % nchunks;
    unsigned int hist[PROTO_CLASSES];
    for (int k = 0; k < PROTO_CLASSES; k++) hist[k] = 0;
    const unsigned char *y = labels + b * v;
    for (long long i = chunk * PK_BLOCK; i < pk_block_end(v, chunk); i++) hist[y[i]]++;
    for (int k = 0; k < PROTO_CLASSES; k++) partial[t * PROTO_CLASSES + k] = hist[k];
}

// Class counts, step 2 of 2: counts[n * 256 + k] = sum over the chunks. One thread per (n, k).
//
// args: 0 partial (u32 [N, nchunks, 256]), 1 counts (u32 [N, 256]), 2 N, 3 nchunks
KERNEL(proto_count_sum) {
    const unsigned int *partial = ARG_PTR(const unsigned int, 0);
    unsigned int *counts = ARG_PTR(unsigned int, 1);
    long long n = ARG_I64(2);
    long long nchunks = ARG_I64(3);
    long long t = pk_global_index();
    if (t >= n * PROTO_CLASSES) return;
    long long b = t / PROTO_CLASSES;
    long long k = t % PROTO_CLASSES;
    unsigned int total = 0;
    for (long long c = 0; c < nchunks; c++) total += partial[(b * nchunks + c) * PROTO_CLASSES + k];
    counts[t] = total;
}

// Prototype sums (forward step 2), both networks in one launch: the lanes of the 2 * N * K * F
// canonical reductions r = ((side * N + n) * K + kk) * F + ch over the voxels v < V, lane step
// acc = acc + t_v, t_v = f[n, ch, v] where y[n, v] == K[kk] and +0.0 elsewhere; side 0 reads
// the student's features, side 1 the teacher's. One thread per (r, block, lane).
//
// args: 0 student f, 1 teacher f, 2 labels, 3 kept (int [K]), 4 partials, 5 N, 6 F, 7 V, 8 K
KERNEL(proto_sum_lanes) {
    const float *fs = ARG_PTR(const float, 0);
    const float *ft = ARG_PTR(const float, 1);
    const unsigned char *labels = ARG_PTR(const unsigned char, 2);
    const int *kept = ARG_PTR(const int, 3);
    float *partials = ARG_PTR(float, 4);
    long long n = ARG_I64(5);
    long long nf = ARG_I64(6);
    long long v = ARG_I64(7);
    long long nk = ARG_I64(8);
    long long nblocks = (v + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= 2 * n * nk * nf * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long r = t / (PK_LANES * nblocks);
    long long ch = r % nf;
    long long kk = (r / nf) % nk;
    long long b = (r / (nf * nk)) % n;
    long long side = r / (nf * nk * n);
    const float *x = (side == 0 ? fs : ft) + (b * nf + ch) * v;
    const unsigned char *y = labels + b * v;
    int k = kept[kk];
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(v, block); i += PK_LANES) {
        acc = acc + (y[i] == k ? x[i] : 0.0f);
    }
    partials[t] = acc;
}

// Prototypes and their normalisation (forward steps 2-3), one thread per (side, n, kk):
// den = count + 1e-5 (one rounding), proto_c = sum_c / den, |proto| and p̂_c = proto_c / m.
// Side 0 also writes den[n, kk] for the backward.
//
// args: 0 sums ([2, N, K, F]), 1 counts (u32 [N, 256]), 2 kept, 3 den out ([N, K]),
//       4 unit protos out ([2, N, K, F]), 5 proto norms out ([2, N, K]), 6 N, 7 F, 8 K
KERNEL(proto_prototypes) {
    const float *sums = ARG_PTR(const float, 0);
    const unsigned int *counts = ARG_PTR(const unsigned int, 1);
    const int *kept = ARG_PTR(const int, 2);
    float *den_out = ARG_PTR(float, 3);
    float *unit = ARG_PTR(float, 4);
    float *norms = ARG_PTR(float, 5);
    long long n = ARG_I64(6);
    long long nf = ARG_I64(7);
    long long nk = ARG_I64(8);
    long long t = pk_global_index();
    if (t >= 2 * n * nk) return;
    long long kk = t % nk;
    long long b = (t / nk) % n;
    float den = (float)counts[b * PROTO_CLASSES + kept[kk]] + PROTO_COUNT_EPS;
    if (t < n * nk) den_out[t] = den;
    const float *s = sums + t * nf;
    float acc = 0.0f;
    for (long long c = 0; c < nf; c++) {
        float p = __fdiv_rn(s[c], den);
        acc = __fmaf_rn(p, p, acc);
    }
    float norm = __fsqrt_rn(acc);
    float m = proto_clamp(norm);
    for (long long c = 0; c < nf; c++) unit[t * nf + c] = __fdiv_rn(__fdiv_rn(s[c], den), m);
    norms[t] = norm;
}

// Voxel normalisation and cosine maps (forward steps 3-5), one thread per (n, v): the norms of
// the student's and the teacher's feature columns, M[kk] = chain fma(â_ch, p̂[kk, ch], acc) from
// +0.0 over the channels for each side (â_ch = f_ch / m recomputed per use: the same bits), and
// d[n, kk, v] = M_s - M_t. Writes the student's norms for the backward.
//
// args: 0 student f, 1 teacher f, 2 unit protos ([2, N, K, F]), 3 student norms out ([N, V]),
//       4 d out ([N, K, V]), 5 N, 6 F, 7 V, 8 K
KERNEL(proto_maps) {
    const float *fs = ARG_PTR(const float, 0);
    const float *ft = ARG_PTR(const float, 1);
    const float *unit_protos = ARG_PTR(const float, 2);
    float *norms_s = ARG_PTR(float, 3);
    float *diff = ARG_PTR(float, 4);
    long long n = ARG_I64(5);
    long long nf = ARG_I64(6);
    long long v = ARG_I64(7);
    long long nk = ARG_I64(8);
    long long t = pk_global_index();
    if (t >= n * v) return;
    long long b = t / v;
    long long vox = t % v;
    const float *xs = fs + b * nf * v + vox;
    const float *xt = ft + b * nf * v + vox;
    float norm_s = proto_norm(xs, nf, v);
    float ms = proto_clamp(norm_s);
    float mt = proto_clamp(proto_norm(xt, nf, v));
    norms_s[t] = norm_s;
    for (long long kk = 0; kk < nk; kk++) {
        const float *ps = unit_protos + (b * nk + kk) * nf;
        const float *pt = unit_protos + ((n + b) * nk + kk) * nf;
        float map_s = 0.0f;
        float map_t = 0.0f;
        for (long long c = 0; c < nf; c++) {
            map_s = __fmaf_rn(__fdiv_rn(xs[c * v], ms), ps[c], map_s);
            map_t = __fmaf_rn(__fdiv_rn(xt[c * v], mt), pt[c], map_t);
        }
        diff[(b * nk + kk) * v + vox] = map_s - map_t;
    }
}

// The loss sum (forward step 5): the lanes of ONE canonical reduction over d[j], j < len, lane
// step acc = fma(d_j, d_j, acc). One thread per (block, lane).
//
// args: 0 d, 1 partials, 2 len
KERNEL(proto_square_lanes) {
    const float *diff = ARG_PTR(const float, 0);
    float *partials = ARG_PTR(float, 1);
    long long len = ARG_I64(2);
    long long nblocks = (len + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES;
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(len, block); i += PK_LANES) {
        acc = __fmaf_rn(diff[i], diff[i], acc);
    }
    partials[t] = acc;
}

// dp̂ (backward step 3): the lanes of the N * K * F canonical reductions r = (n * K + kk) * F + ch
// over the voxels, lane step acc = fma(gM[n, kk, v], â[n, ch, v], acc) with gM = c * d (one
// rounding) and â = f / m of the student. One thread per (r, block, lane).
//
// args: 0 student f, 1 student norms ([N, V]), 2 d, 3 partials, 4 c, 5 N, 6 F, 7 V, 8 K
KERNEL(proto_dunit_lanes) {
    const float *fs = ARG_PTR(const float, 0);
    const float *norms = ARG_PTR(const float, 1);
    const float *diff = ARG_PTR(const float, 2);
    float *partials = ARG_PTR(float, 3);
    float c = ARG_F32(4);
    long long n = ARG_I64(5);
    long long nf = ARG_I64(6);
    long long v = ARG_I64(7);
    long long nk = ARG_I64(8);
    long long nblocks = (v + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= n * nk * nf * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long r = t / (PK_LANES * nblocks);
    long long ch = r % nf;
    long long kk = (r / nf) % nk;
    long long b = r / (nf * nk);
    const float *x = fs + (b * nf + ch) * v;
    const float *nrm = norms + b * v;
    const float *d = diff + (b * nk + kk) * v;
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(v, block); i += PK_LANES) {
        acc = __fmaf_rn(c * d[i], __fdiv_rn(x[i], proto_clamp(nrm[i])), acc);
    }
    partials[t] = acc;
}

// The prototype term (backward step 3), one thread per (n, kk):
// e[n, kk, :] = norm_backward(p̂, |proto|, dp̂) / den (one IEEE division per component).
//
// args: 0 dp̂ ([N, K, F]), 1 student unit protos ([N, K, F]), 2 student proto norms ([N, K]),
//       3 den ([N, K]), 4 e out ([N, K, F]), 5 N * K, 6 F
KERNEL(proto_prototype_grad) {
    const float *d_unit = ARG_PTR(const float, 0);
    const float *unit = ARG_PTR(const float, 1);
    const float *norms = ARG_PTR(const float, 2);
    const float *den = ARG_PTR(const float, 3);
    float *e = ARG_PTR(float, 4);
    long long count = ARG_I64(5);
    long long nf = ARG_I64(6);
    long long t = pk_global_index();
    if (t >= count) return;
    const float *u = unit + t * nf;
    const float *g = d_unit + t * nf;
    float s = 0.0f;
    for (long long c = 0; c < nf; c++) s = __fmaf_rn(u[c], g[c], s);
    for (long long c = 0; c < nf; c++) {
        e[t * nf + c] = __fdiv_rn(proto_norm_backward(u[c], g[c], norms[t], s), den[t]);
    }
}

// dâ_ch of one voxel (backward step 2): the chain over kk of fma(gM[kk], p̂[kk, ch], acc) from
// +0.0, gM[kk] = c * d[kk * v] (one rounding), p̂ at ph[kk * nf + ch].
static __device__ float proto_voxel_dunit(const float *d, const float *ph, float c, long long ch,
                                          long long nk, long long nf, long long v) {
    float acc = 0.0f;
    for (long long kk = 0; kk < nk; kk++) acc = __fmaf_rn(c * d[kk * v], ph[kk * nf + ch], acc);
    return acc;
}

// The student's gradient (backward steps 2 and 4), one thread per (n, v):
// dâ (proto_voxel_dunit, computed again where used: the same bits), da = norm_backward(â, |a|,
// dâ), df[n, ch, v] = da_ch + e[n, kk(y), ch] where the label y[n, v] is kept (kept_index[y] =
// kk >= 0), da_ch elsewhere.
//
// args: 0 student f, 1 student norms, 2 d, 3 student unit protos ([N, K, F]), 4 e, 5 labels,
//       6 kept_index (int [256], -1 where not kept), 7 df out, 8 c, 9 N, 10 F, 11 V, 12 K
KERNEL(proto_feature_grad) {
    const float *fs = ARG_PTR(const float, 0);
    const float *norms = ARG_PTR(const float, 1);
    const float *diff = ARG_PTR(const float, 2);
    const float *unit_protos = ARG_PTR(const float, 3);
    const float *e = ARG_PTR(const float, 4);
    const unsigned char *labels = ARG_PTR(const unsigned char, 5);
    const int *kept_index = ARG_PTR(const int, 6);
    float *df = ARG_PTR(float, 7);
    float c = ARG_F32(8);
    long long n = ARG_I64(9);
    long long nf = ARG_I64(10);
    long long v = ARG_I64(11);
    long long nk = ARG_I64(12);
    long long t = pk_global_index();
    if (t >= n * v) return;
    long long b = t / v;
    long long vox = t % v;
    const float *x = fs + b * nf * v + vox;
    const float *d = diff + b * nk * v + vox;
    const float *ph = unit_protos + b * nk * nf;
    float norm = norms[t];
    float m = proto_clamp(norm);
    float s = 0.0f;
    for (long long ch = 0; ch < nf; ch++) {
        s = __fmaf_rn(__fdiv_rn(x[ch * v], m), proto_voxel_dunit(d, ph, c, ch, nk, nf, v), s);
    }
    int kk_label = kept_index[labels[t]];
    for (long long ch = 0; ch < nf; ch++) {
        float u = __fdiv_rn(x[ch * v], m);
        float da = proto_norm_backward(u, proto_voxel_dunit(d, ph, c, ch, nk, nf, v), norm, s);
        df[(b * nf + ch) * v + vox] = kk_label >= 0 ? da + e[(b * nk + kk_label) * nf + ch] : da;
    }
}
