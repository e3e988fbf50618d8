// The prototype (I2FV) loss, forward and backward: reference/src/losses/proto.rs (its module
// docs give every order followed here). Features are [N, F, V], labels [N, V] (one byte each);
// K is the list of kept classes (ascending), kk a position in it. Host side: gpu/src/ops/proto.rs.

// Generated constants used here (pk_shared.cuh): PK_LABEL_VALUES, the values a byte label can take
// (the reference counts every one of them); PK_PROTO_EPS (added to a count) and PK_COS_EPS (the
// norm clamp), the reference's losses::{PROTO_EPS, COS_EPS}.

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
    return norm < PK_COS_EPS ? PK_COS_EPS : norm;
}

// One component of norm_backward(â, |a|, dâ): dâ_c / 1e-5 where |a| < 1e-5, else
// fma(-â_c, s, dâ_c) / |a| with s = the chain fma(â_c, dâ_c, acc) from +0.0 over the channels.
static __device__ float proto_norm_backward(float unit, float d_unit, float norm, float s) {
    if (norm < PK_COS_EPS) return __fdiv_rn(d_unit, PK_COS_EPS);
    return __fdiv_rn(__fmaf_rn(-unit, s, d_unit), norm);
}

// Class counts, step 1 of 2: the histogram of the labels of one chunk of PK_BLOCK voxels of one
// sample, partial[(n * nchunks + chunk) * 256 + label]. One thread per (n, chunk). Integer
// counts: exact in any order.
KERNEL(proto_count_chunks, proto_count_chunks) {
    long long nchunks = (p.v + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= p.n * nchunks) return;
    long long b = t / nchunks;
    long long chunk = t % nchunks;
    unsigned int hist[PK_LABEL_VALUES];
    for (int k = 0; k < PK_LABEL_VALUES; k++) hist[k] = 0;
    const unsigned char *y = p.labels + b * p.v;
    for (long long i = chunk * PK_BLOCK; i < pk_block_end(p.v, chunk); i++) hist[y[i]]++;
    for (int k = 0; k < PK_LABEL_VALUES; k++) p.partial[t * PK_LABEL_VALUES + k] = hist[k];
}

// Class counts, step 2 of 2: counts[n * 256 + k] = sum over the chunks. One thread per (n, k).
KERNEL(proto_count_sum, proto_count_sum) {
    long long t = pk_global_index();
    if (t >= p.n * PK_LABEL_VALUES) return;
    long long b = t / PK_LABEL_VALUES;
    long long k = t % PK_LABEL_VALUES;
    unsigned int total = 0;
    for (long long c = 0; c < p.nchunks; c++) {
        total += p.partial[(b * p.nchunks + c) * PK_LABEL_VALUES + k];
    }
    p.counts[t] = total;
}

// Prototype sums (forward step 2), both networks in one launch: the lanes of the 2 * N * K * F
// canonical reductions r = ((side * N + n) * K + kk) * F + ch over the voxels v < V, lane step
// acc = acc + t_v, t_v = f[n, ch, v] where y[n, v] == K[kk] and +0.0 elsewhere; side 0 reads
// the student's features, side 1 the teacher's. One thread per (r, block, lane).
KERNEL(proto_sum_lanes, proto_sum_lanes) {
    long long nblocks = (p.v + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= 2 * p.n * p.nk * p.nf * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long r = t / (PK_LANES * nblocks);
    long long ch = r % p.nf;
    long long kk = (r / p.nf) % p.nk;
    long long b = (r / (p.nf * p.nk)) % p.n;
    long long side = r / (p.nf * p.nk * p.n);
    const float *x = (side == 0 ? p.fs : p.ft) + (b * p.nf + ch) * p.v;
    const unsigned char *y = p.labels + b * p.v;
    int k = p.kept[kk];
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(p.v, block); i += PK_LANES) {
        acc = acc + (y[i] == k ? x[i] : 0.0f);
    }
    p.partials[t] = acc;
}

// Prototypes and their normalisation (forward steps 2-3), one thread per (side, n, kk):
// den = count + 1e-5 (one rounding), proto_c = sum_c / den, |proto| and p̂_c = proto_c / m.
// Side 0 also writes den[n, kk] for the backward.
KERNEL(proto_prototypes, proto_prototypes) {
    long long t = pk_global_index();
    if (t >= 2 * p.n * p.nk) return;
    long long kk = t % p.nk;
    long long b = (t / p.nk) % p.n;
    float den = (float)p.counts[b * PK_LABEL_VALUES + p.kept[kk]] + PK_PROTO_EPS;
    if (t < p.n * p.nk) p.den_out[t] = den;
    const float *s = p.sums + t * p.nf;
    float acc = 0.0f;
    for (long long c = 0; c < p.nf; c++) {
        float p = __fdiv_rn(s[c], den);
        acc = __fmaf_rn(p, p, acc);
    }
    float norm = __fsqrt_rn(acc);
    float m = proto_clamp(norm);
    for (long long c = 0; c < p.nf; c++) p.unit[t * p.nf + c] = __fdiv_rn(__fdiv_rn(s[c], den), m);
    p.norms[t] = norm;
}

// Voxel normalisation and cosine maps (forward steps 3-5), one thread per (n, v): the norms of
// the student's and the teacher's feature columns, M[kk] = chain fma(â_ch, p̂[kk, ch], acc) from
// +0.0 over the channels for each side (â_ch = f_ch / m recomputed per use: the same bits), and
// d[n, kk, v] = M_s - M_t. Writes the student's norms for the backward.
KERNEL(proto_maps, proto_maps) {
    long long t = pk_global_index();
    if (t >= p.n * p.v) return;
    long long b = t / p.v;
    long long vox = t % p.v;
    const float *xs = p.fs + b * p.nf * p.v + vox;
    const float *xt = p.ft + b * p.nf * p.v + vox;
    float norm_s = proto_norm(xs, p.nf, p.v);
    float ms = proto_clamp(norm_s);
    float mt = proto_clamp(proto_norm(xt, p.nf, p.v));
    p.norms_s[t] = norm_s;
    for (long long kk = 0; kk < p.nk; kk++) {
        const float *ps = p.unit_protos + (b * p.nk + kk) * p.nf;
        const float *pt = p.unit_protos + ((p.n + b) * p.nk + kk) * p.nf;
        float map_s = 0.0f;
        float map_t = 0.0f;
        for (long long c = 0; c < p.nf; c++) {
            map_s = __fmaf_rn(__fdiv_rn(xs[c * p.v], ms), ps[c], map_s);
            map_t = __fmaf_rn(__fdiv_rn(xt[c * p.v], mt), pt[c], map_t);
        }
        p.diff[(b * p.nk + kk) * p.v + vox] = map_s - map_t;
    }
}

// The loss sum (forward step 5): the lanes of ONE canonical reduction over d[j], j < len, lane
// step acc = fma(d_j, d_j, acc). One thread per (block, lane).
KERNEL(proto_square_lanes, proto_square_lanes) {
    long long nblocks = (p.len + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES;
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(p.len, block); i += PK_LANES) {
        acc = __fmaf_rn(p.diff[i], p.diff[i], acc);
    }
    p.partials[t] = acc;
}

// dp̂ (backward step 3): the lanes of the N * K * F canonical reductions r = (n * K + kk) * F + ch
// over the voxels, lane step acc = fma(gM[n, kk, v], â[n, ch, v], acc) with gM = c * d (one
// rounding) and â = f / m of the student. One thread per (r, block, lane).
KERNEL(proto_dunit_lanes, proto_dunit_lanes) {
    long long nblocks = (p.v + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= p.n * p.nk * p.nf * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = (t / PK_LANES) % nblocks;
    long long r = t / (PK_LANES * nblocks);
    long long ch = r % p.nf;
    long long kk = (r / p.nf) % p.nk;
    long long b = r / (p.nf * p.nk);
    const float *x = p.fs + (b * p.nf + ch) * p.v;
    const float *nrm = p.norms + b * p.v;
    const float *d = p.diff + (b * p.nk + kk) * p.v;
    float acc = 0.0f;
    for (long long i = block * PK_BLOCK + lane; i < pk_block_end(p.v, block); i += PK_LANES) {
        acc = __fmaf_rn(p.c * d[i], __fdiv_rn(x[i], proto_clamp(nrm[i])), acc);
    }
    p.partials[t] = acc;
}

// The prototype term (backward step 3), one thread per (n, kk):
// e[n, kk, :] = norm_backward(p̂, |proto|, dp̂) / den (one IEEE division per component).
KERNEL(proto_prototype_grad, proto_prototype_grad) {
    long long t = pk_global_index();
    if (t >= p.count) return;
    const float *u = p.unit + t * p.nf;
    const float *g = p.d_unit + t * p.nf;
    float s = 0.0f;
    for (long long c = 0; c < p.nf; c++) s = __fmaf_rn(u[c], g[c], s);
    for (long long c = 0; c < p.nf; c++) {
        p.e[t * p.nf + c] = __fdiv_rn(proto_norm_backward(u[c], g[c], p.norms[t], s), p.den[t]);
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
KERNEL(proto_feature_grad, proto_feature_grad) {
    long long t = pk_global_index();
    if (t >= p.n * p.v) return;
    long long b = t / p.v;
    long long vox = t % p.v;
    const float *x = p.fs + b * p.nf * p.v + vox;
    const float *d = p.diff + b * p.nk * p.v + vox;
    const float *ph = p.unit_protos + b * p.nk * p.nf;
    float norm = p.norms[t];
    float m = proto_clamp(norm);
    float s = 0.0f;
    for (long long ch = 0; ch < p.nf; ch++) {
        float du = proto_voxel_dunit(d, ph, p.c, ch, p.nk, p.nf, p.v);
        s = __fmaf_rn(__fdiv_rn(x[ch * p.v], m), du, s);
    }
    int kk_label = p.kept_index[p.labels[t]];
    for (long long ch = 0; ch < p.nf; ch++) {
        float u = __fdiv_rn(x[ch * p.v], m);
        float du = proto_voxel_dunit(d, ph, p.c, ch, p.nk, p.nf, p.v);
        float da = proto_norm_backward(u, du, norm, s);
        float df = kk_label >= 0 ? da + p.e[(b * p.nk + kk_label) * p.nf + ch] : da;
        p.df[(b * p.nf + ch) * p.v + vox] = df;
    }
}
