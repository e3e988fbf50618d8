// Conv3d (reference layers::conv3d; ConvTranspose3d is defined through these, gpu/src/ops/conv.rs).
//
// Every kernel describes one convolution the same way, `p.shape` (a conv3d_shape, args.def): its
// input A `[n, cin, input]`, its output B `[n, cout, output]` (`output = (input + 2 pad - k) / s
// + 1` per axis) and the weight `[cout, cin, k]`; input index `o * s + k - pad` of an axis is
// read by output `o` through tap `k`. The host checks that a channel plane of the input and of
// the output holds fewer than 2^30 values, so per-axis indices and offsets inside a plane fit
// 32 bits.
//
// Speed: a thread computes a register tile of whole outputs (several channels, several positions
// along W, several weight taps), so each value it loads feeds several independent chains; each
// chain still takes its terms in the reference's order, so the tiling never changes a bit.

#ifdef __CUDACC__
#define CONV3D_UNROLL _Pragma("unroll")
#else
#define CONV3D_UNROLL
#endif

// Carries an index digit into the next one after an increment of at most `PK_LANES`: lo in
// [0, ext) again, the excess added to hi.
template <typename T>
static __device__ void conv3d_carry(T *lo, T ext, T *hi) {
    while (*lo >= ext) {
        *lo -= ext;
        *hi += 1;
    }
}

// Four weights read at once: the grouped weight rows (conv3d_group_weights) are 16-byte aligned.
struct alignas(16) conv3d_vec4 {
    float v[4];
};

// The taps of one axis taken by output position o, in ascending order: tap k0 + j * kstep reads
// source index s0 + j * sstep, for j < *cnt.
// * forward (tr false): every tap, k0 = 0, kstep 1, s0 = o s - p, sstep +1;
// * input gradient (tr true): the taps with o + p - k divisible by s, k0 = (o + p) mod s,
//   kstep s, s0 = (o + p - k0) / s (exact), sstep -1.
static __device__ void conv3d_axis_taps(const conv3d_shape &g, int a, bool tr, long long o,
                                        int *k0, int *cnt, int *s0) {
    long long k = g.k[a], s = g.s[a], p = g.pad[a];
    if (!tr) {
        *k0 = 0;
        *cnt = (int)k;
        *s0 = (int)(o * s - p);
    } else {
        long long first = (o + p) % s;
        *k0 = (int)first;
        *cnt = first < k ? (int)((k - first + s - 1) / s) : 0;
        *s0 = (int)((o + p - first) / s);
    }
}

// The chains of the forward (reference conv3d_forward_spec) and of the input gradient
// (conv3d_backward_input_spec, also the transposed convolution's forward). Both read a source
// S `[n, C_chain, S-extents]` and write a destination `[n, C_out, T-extents]`:
// * forward (tr false): S = x, chain channels ci, outputs y[n, co, o];
// * input gradient (tr true): S = dy, chain channels co, outputs dx[n, ci, q].
// Each output is ONE chain from acc = +0.0 over (chain channel, a, b, c) ascending, restricted
// to the axis taps of conv3d_axis_taps, step acc = fma(S, w, acc) with S the source at the
// tap's index, or +0.0 outside the source (still a step); then out = acc + bias[channel] where
// bias is given (null: out = acc). An input-gradient position without taps is +0.0.
//
// Tiling: one thread per (n, od, oh, group of G output channels, V positions along W). The
// thread's W positions are o_w + v * L (v < V), L threads side by side (coalesced loads), and
// in the input gradient L is a multiple of s_w, so the V positions share their W taps. Each
// loaded source value feeds G chains, each loaded weight V chains.
// Thread order, fastest first: lane (< L), W chunk (of L * V positions), group, oh, od, n.
template <int G, int V>
static __device__ void conv3d_chains(const pk_conv3d_chains_args p) {
    static_assert(G % 4 == 0, "the grouped weights are read 4 at a time");
    const float *src = p.src;
    const conv3d_vec4 *wg = (const conv3d_vec4 *)p.wg;
    const float *bias = p.bias;
    float *dst = p.dst;
    const conv3d_shape g = p.shape;
    bool tr = p.tr != 0;
    long long lanes = p.lanes;
    long long c_chain = tr ? g.cout : g.cin;
    long long c_out = tr ? g.cin : g.cout;
    int se[3];
    long long te[3];
    for (int a = 0; a < 3; a++) {
        se[a] = (int)(tr ? g.output[a] : g.input[a]);
        te[a] = tr ? g.input[a] : g.output[a];
    }
    long long groups = (c_out + G - 1) / G;
    long long chunks = (te[2] + lanes * V - 1) / (lanes * V);
    long long t = pk_global_index();
    if (t >= g.n * te[0] * te[1] * groups * chunks * lanes) return;
    long long r = t / lanes;
    long long o[3];
    o[2] = r % chunks * lanes * V + t % lanes;
    r /= chunks;
    long long grp = r % groups;
    r /= groups;
    o[1] = r % te[1];
    r /= te[1];
    o[0] = r % te[0];
    long long n = r / te[0];

    int k0[3], cnt[3], s0[3], kstep[3];
    for (int a = 0; a < 3; a++) {
        conv3d_axis_taps(g, a, tr, o[a], &k0[a], &cnt[a], &s0[a]);
        kstep[a] = tr ? (int)g.s[a] : 1;
    }
    int sstep = tr ? -1 : 1;
    // The first W source index of each of the thread's positions (same taps for all).
    int s0w[V];
    CONV3D_UNROLL
    for (int v = 0; v < V; v++) {
        int k0v, cntv;
        conv3d_axis_taps(g, 2, tr, o[2] + v * lanes, &k0v, &cntv, &s0w[v]);
    }

    float acc[G][V];
    CONV3D_UNROLL
    for (int j = 0; j < G; j++) {
        CONV3D_UNROLL
        for (int v = 0; v < V; v++) acc[j][v] = 0.0f;
    }
    long long kh = g.k[1], kw = g.k[2];
    long long k3 = g.k[0] * kh * kw;
    long long svol = (long long)se[0] * se[1] * se[2];
    // Offsets inside one source plane (below 2^30) are unsigned: exact for every position read.
    const float *sc = src + n * c_chain * svol;
    const conv3d_vec4 *wc = wg + grp * c_chain * k3 * (G / 4);
    for (long long cc = 0; cc < c_chain; cc++, sc += svol, wc += k3 * (G / 4)) {
        for (int ja = 0; ja < cnt[0]; ja++) {
            int a = k0[0] + ja * kstep[0];
            int id = s0[0] + ja * sstep;
            bool in_d = (unsigned)id < (unsigned)se[0];
            for (int jb = 0; jb < cnt[1]; jb++) {
                int b = k0[1] + jb * kstep[1];
                int ih = s0[1] + jb * sstep;
                bool in_dh = in_d && (unsigned)ih < (unsigned)se[1];
                unsigned row = ((unsigned)id * se[1] + (unsigned)ih) * se[2];
                const conv3d_vec4 *wt = wc + ((a * kh + b) * kw + k0[2]) * (G / 4);
                for (int jc = 0; jc < cnt[2]; jc++, wt += kstep[2] * (G / 4)) {
                    float wv[G];
                    CONV3D_UNROLL
                    for (int q = 0; q < G / 4; q++) {
                        conv3d_vec4 w4 = wt[q];
                        CONV3D_UNROLL
                        for (int e = 0; e < 4; e++) wv[4 * q + e] = w4.v[e];
                    }
                    CONV3D_UNROLL
                    for (int v = 0; v < V; v++) {
                        int iw = s0w[v] + jc * sstep;
                        float sv = 0.0f;
                        if (in_dh && (unsigned)iw < (unsigned)se[2]) sv = sc[row + (unsigned)iw];
                        CONV3D_UNROLL
                        for (int j = 0; j < G; j++) acc[j][v] = __fmaf_rn(sv, wv[j], acc[j][v]);
                    }
                }
            }
        }
    }

    long long tvol = te[0] * te[1] * te[2];
    CONV3D_UNROLL
    for (int j = 0; j < G; j++) {
        long long ch = grp * G + j;
        if (ch >= c_out) break;
        float *out = dst + (n * c_out + ch) * tvol + (o[0] * te[1] + o[1]) * te[2];
        CONV3D_UNROLL
        for (int v = 0; v < V; v++) {
            long long ow = o[2] + v * lanes;
            if (ow < te[2]) out[ow] = bias ? acc[j][v] + bias[ch] : acc[j][v];
        }
    }
}

// The tiles (G, V) there are kernels for: the host's table of them (CONV3D_CHAINS_INSTANCES,
// gpu/src/ops/conv.rs) is generated from these lines.
KERNEL(conv3d_chains_g4v1, conv3d_chains) { conv3d_chains<4, 1>(p); }
KERNEL(conv3d_chains_g8v1, conv3d_chains) { conv3d_chains<8, 1>(p); }
KERNEL(conv3d_chains_g16v1, conv3d_chains) { conv3d_chains<16, 1>(p); }
KERNEL(conv3d_chains_g4v4, conv3d_chains) { conv3d_chains<4, 4>(p); }
KERNEL(conv3d_chains_g8v4, conv3d_chains) { conv3d_chains<8, 4>(p); }
KERNEL(conv3d_chains_g16v4, conv3d_chains) { conv3d_chains<16, 4>(p); }

// The weight in conv3d_chains' order (a copy, no arithmetic): wg[grp][cc][tap][j] is the
// weight of output channel grp * G + j and chain channel cc at flat tap (a, b, c), +0.0 past
// the last output channel. w is [C_out, C_chain, k3] (forward, tr 0) or [C_chain, C_out, k3]
// (input gradient, tr 1). One thread per wg element.
KERNEL(conv3d_group_weights, conv3d_group_weights) {
    bool tr = p.tr != 0;
    long long groups = (p.c_out + p.gsize - 1) / p.gsize;
    long long t = pk_global_index();
    if (t >= groups * p.c_chain * p.k3 * p.gsize) return;
    long long ch = t / (p.gsize * p.k3 * p.c_chain) * p.gsize + t % p.gsize;
    long long tap = t / p.gsize % p.k3;
    long long cc = t / (p.gsize * p.k3) % p.c_chain;
    float v = 0.0f;
    if (ch < p.c_out) v = p.w[(tr ? cc * p.c_out + ch : ch * p.c_chain + cc) * p.k3 + tap];
    p.wg[t] = v;
}

// Weight gradient (reference conv3d_backward_weight_spec), the lanes of the canonical reduction
// of each dw[co, ci, a, b, c] (reduction r, flat in that order) over the P = n * Do * Ho * Wo
// output positions: term i = ((n Do + od) Ho + oh) Wo + ow, chain step
// lane = fma(dy[n, co, od, oh, ow], X, lane) with X the input at (od sd + a - pd, ..), +0.0
// outside. Written to partials[(r * nblocks + block) * 16 + lane].
//
// Tiling: one thread per (group of GC output channels, ci, tile of K x K x K taps, block, lane)
// computes the lane of every (co, tap) of its tile: per term it reads GC dy values and the K^3
// inputs once, and each (co, tap) chain takes the lane's terms in increasing i as before. Taps
// past the kernel (a tile is cut at the kernel's edge) are computed but not written. The terms
// are walked one output row (n, od, oh) at a time, the tile's input rows found once per row.
// Thread order, fastest first: lane, ci, group, tile, block (threads of a block share dy and x).
template <int GC, int K>
static __device__ void conv3d_weight_lanes(const pk_conv3d_weight_lanes_args p) {
    const float *x = p.x;
    const float *dy = p.dy;
    float *partials = p.partials;
    const conv3d_shape g = p.shape;
    long long vo = g.output[0] * g.output[1] * g.output[2];
    long long vi = g.input[0] * g.input[1] * g.input[2];
    long long terms = g.n * vo;
    long long nblocks = (terms + PK_BLOCK - 1) / PK_BLOCK;
    long long groups = (g.cout + GC - 1) / GC;
    long long nt[3];
    for (int a = 0; a < 3; a++) nt[a] = (g.k[a] + K - 1) / K;
    long long tiles = nt[0] * nt[1] * nt[2];
    long long t = pk_global_index();
    if (t >= PK_LANES * g.cin * groups * tiles * nblocks) return;
    long long lane = t % PK_LANES;
    long long r = t / PK_LANES;
    long long ci = r % g.cin;
    r /= g.cin;
    long long grp = r % groups;
    r /= groups;
    long long tile = r % tiles;
    long long block = r / tiles;
    // The tile's first tap per axis.
    int t0[3];
    t0[2] = (int)(tile % nt[2] * K);
    t0[1] = (int)(tile / nt[2] % nt[1] * K);
    t0[0] = (int)(tile / (nt[2] * nt[1]) * K);
    // dy offsets of the group's channels (the last channel again past cout: not written).
    long long dyoff[GC];
    CONV3D_UNROLL
    for (int j = 0; j < GC; j++) {
        long long co = grp * GC + j;
        dyoff[j] = (co < g.cout ? co : g.cout - 1) * vo;
    }
    // Per axis: input extent, and the input index of the tile's first tap at output 0.
    unsigned ext[3];
    int base[3];
    for (int a = 0; a < 3; a++) {
        ext[a] = (unsigned)g.input[a];
        base[a] = t0[a] - (int)g.pad[a];
    }
    int sd = (int)g.s[0], sh = (int)g.s[1], sw = (int)g.s[2];

    float acc[GC][K * K * K];
    CONV3D_UNROLL
    for (int j = 0; j < GC; j++) {
        CONV3D_UNROLL
        for (int q = 0; q < K * K * K; q++) acc[j][q] = 0.0f;
    }
    // The first term's position, advanced by PK_LANES terms per step; xn is the input plane
    // (n, ci), dyn the element (n, 0, o) of dy.
    long long i = block * PK_BLOCK + lane;
    long long end = pk_block_end(terms, block);
    int wo = (int)g.output[2], ho = (int)g.output[1], dout = (int)g.output[0];
    int ow = (int)(i % wo);
    int oh = (int)(i / wo % ho);
    int od = (int)(i / (wo * (long long)ho) % dout);
    long long n = i / vo;
    const float *xn = x + (n * g.cin + ci) * vi;
    const float *dyn = dy + n * g.cout * vo + (i - n * vo);
    while (i < end) {
        // The input rows of the tile's taps (a, b) at the output row (n, od, oh): inside the
        // input or not, and their offsets in the input plane (0 outside). Offsets inside the
        // plane (below 2^30) are computed modulo 2^32: exact where the row is inside the input.
        int id0 = od * sd + base[0], ih0 = oh * sh + base[1];
        bool in_dh[K * K];
        unsigned roff[K * K];
        CONV3D_UNROLL
        for (int a = 0; a < K; a++) {
            CONV3D_UNROLL
            for (int b = 0; b < K; b++) {
                in_dh[a * K + b] =
                    (unsigned)(id0 + a) < ext[0] && (unsigned)(ih0 + b) < ext[1];
                unsigned off = ((unsigned)(id0 + a) * ext[1] + (unsigned)(ih0 + b)) * ext[2];
                roff[a * K + b] = in_dh[a * K + b] ? off : 0u;
            }
        }
        // The lane's terms in this output row, in increasing i.
        do {
            float d[GC];
            CONV3D_UNROLL
            for (int j = 0; j < GC; j++) d[j] = dyn[dyoff[j]];
            int iw0 = ow * sw + base[2];
            CONV3D_UNROLL
            for (int q = 0; q < K * K; q++) {
                // Element iw0 of the row (iw0 < 0 in the padding).
                const float *rp = xn + (int)(roff[q] + (unsigned)iw0);
                CONV3D_UNROLL
                for (int c = 0; c < K; c++) {
                    float xv = 0.0f;
                    if (in_dh[q] && (unsigned)(iw0 + c) < ext[2]) xv = rp[c];
                    CONV3D_UNROLL
                    for (int j = 0; j < GC; j++) {
                        acc[j][q * K + c] = __fmaf_rn(d[j], xv, acc[j][q * K + c]);
                    }
                }
            }
            ow += PK_LANES;
            i += PK_LANES;
            dyn += PK_LANES;
        } while (ow < wo && i < end);
        conv3d_carry(&ow, wo, &oh);
        conv3d_carry(&oh, ho, &od);
        while (od >= dout) {
            od -= dout;
            n++;
            xn += g.cin * vi;
            dyn += (g.cout - 1) * vo;
        }
    }

    CONV3D_UNROLL
    for (int j = 0; j < GC; j++) {
        long long co = grp * GC + j;
        if (co >= g.cout) break;
        CONV3D_UNROLL
        for (int a = 0; a < K; a++) {
            CONV3D_UNROLL
            for (int b = 0; b < K; b++) {
                CONV3D_UNROLL
                for (int c = 0; c < K; c++) {
                    long long ka = t0[0] + a, kb = t0[1] + b, kc = t0[2] + c;
                    if (ka < g.k[0] && kb < g.k[1] && kc < g.k[2]) {
                        long long rw = ((co * g.cin + ci) * g.k[0] + ka) * g.k[1] + kb;
                        partials[((rw * g.k[2] + kc) * nblocks + block) * PK_LANES + lane] =
                            acc[j][(a * K + b) * K + c];
                    }
                }
            }
        }
    }
}

// The tiles (GC, K) there are kernels for (the host's CONV3D_WEIGHT_LANES_INSTANCES).
KERNEL(conv3d_weight_lanes_g8k1, conv3d_weight_lanes) { conv3d_weight_lanes<8, 1>(p); }
KERNEL(conv3d_weight_lanes_g8k2, conv3d_weight_lanes) { conv3d_weight_lanes<8, 2>(p); }
KERNEL(conv3d_weight_lanes_g4k3, conv3d_weight_lanes) { conv3d_weight_lanes<4, 3>(p); }

// Bias gradient (reference bias_backward), the lanes of the canonical sum of each channel ch of
// dy [n, C, V] over its n * V values: term i = nn * V + v is dy[nn, ch, v], chain step
// lane = lane + term. One thread per (ch, block, lane), writing
// partials[(ch * nblocks + block) * 16 + lane].
KERNEL(conv3d_bias_bwd_lanes, conv3d_bias_bwd_lanes) {
    long long terms = p.n * p.vol;
    long long nblocks = (terms + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= p.channels * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES % nblocks;
    long long ch = t / (PK_LANES * nblocks);
    long long i = block * PK_BLOCK + lane;
    long long v = i % p.vol;
    long long nn = i / p.vol;
    float acc = 0.0f;
    for (long long end = pk_block_end(terms, block); i < end; i += PK_LANES) {
        acc = acc + p.dy[(nn * p.channels + ch) * p.vol + v];
        v += PK_LANES;
        conv3d_carry(&v, p.vol, &nn);
    }
    p.partials[t] = acc;
}
