// Conv3d (reference layers::conv3d; ConvTranspose3d is defined through these, gpu/src/ops/conv.rs).
//
// Every kernel describes one convolution the same way: its input A `[n, cin, in]`, its output
// B `[n, cout, out]` (`out = (in + 2p - k) / s + 1` per axis) and the weight `[cout, cin, k]`;
// input index `o * s + k - p` of an axis is read by output `o` through tap `k`. The shape takes 12
// argument slots from `first` (conv3d_read_shape): n, cin, cout, in[D, H, W], out[D, H, W], then
// per axis `k | s << 16 | p << 32`.

struct conv3d_shape {
    long long n, cin, cout;
    long long in[3], out[3], k[3], s[3], pad[3];
};

static __device__ conv3d_shape conv3d_read_shape(pk_args p, int first) {
    conv3d_shape g;
    g.n = ARG_I64(first);
    g.cin = ARG_I64(first + 1);
    g.cout = ARG_I64(first + 2);
    for (int a = 0; a < 3; a++) {
        g.in[a] = ARG_I64(first + 3 + a);
        g.out[a] = ARG_I64(first + 6 + a);
        long long axis = ARG_I64(first + 9 + a);
        g.k[a] = axis & 0xffff;
        g.s[a] = (axis >> 16) & 0xffff;
        g.pad[a] = (axis >> 32) & 0xffff;
    }
    return g;
}

// Carries an index digit into the next one: lo in [0, ext) again, the excess added to hi.
static __device__ void conv3d_carry(long long *lo, long long ext, long long *hi) {
    if (*lo >= ext) {
        *hi += *lo / ext;
        *lo %= ext;
    }
}

// Forward (reference conv3d_forward_spec), one thread per output y[n, co, od, oh, ow]:
// acc = +0.0, then for (ci, a, b, c) ascending acc = fma(X, w[co, ci, a, b, c], acc) with X the
// input at (od sd + a - pd, oh sh + b - ph, ow sw + c - pw), or +0.0 outside the input (every tap
// is a step); then y = acc + bias[co] where bias is given (null: y = acc).
//
// args: 0 x [n, cin, in], 1 w [cout, cin, k], 2 bias [cout] or null, 3 y [n, cout, out],
// 4.. the shape
KERNEL(conv3d_fwd) {
    const float *x = ARG_PTR(const float, 0);
    const float *w = ARG_PTR(const float, 1);
    const float *bias = ARG_PTR(const float, 2);
    float *y = ARG_PTR(float, 3);
    conv3d_shape g = conv3d_read_shape(p, 4);
    long long vo = g.out[0] * g.out[1] * g.out[2];
    long long t = pk_global_index();
    if (t >= g.n * g.cout * vo) return;
    long long ow = t % g.out[2];
    long long oh = t / g.out[2] % g.out[1];
    long long od = t / (g.out[2] * g.out[1]) % g.out[0];
    long long co = t / vo % g.cout;
    long long n = t / (vo * g.cout);
    long long vi = g.in[0] * g.in[1] * g.in[2];
    const float *wt = w + co * g.cin * g.k[0] * g.k[1] * g.k[2];
    float acc = 0.0f;
    for (long long ci = 0; ci < g.cin; ci++) {
        const float *xc = x + (n * g.cin + ci) * vi;
        for (long long a = 0; a < g.k[0]; a++) {
            long long id = od * g.s[0] + a - g.pad[0];
            bool in_d = id >= 0 && id < g.in[0];
            for (long long b = 0; b < g.k[1]; b++) {
                long long ih = oh * g.s[1] + b - g.pad[1];
                bool in_dh = in_d && ih >= 0 && ih < g.in[1];
                for (long long c = 0; c < g.k[2]; c++) {
                    long long iw = ow * g.s[2] + c - g.pad[2];
                    float v = 0.0f;
                    if (in_dh && iw >= 0 && iw < g.in[2]) {
                        v = xc[(id * g.in[1] + ih) * g.in[2] + iw];
                    }
                    acc = __fmaf_rn(v, *wt++, acc);
                }
            }
        }
    }
    if (bias) acc = acc + bias[co];
    y[t] = acc;
}

// Input gradient (reference conv3d_backward_input_spec), one thread per dx[n, ci, qd, qh, qw]:
// acc = +0.0, then for (co, a, b, c) ascending, restricted to the taps with q + p - k divisible
// by s on every axis, acc = fma(DY, w[co, ci, a, b, c], acc) with DY = dy[n, co, (q + p - k) / s]
// where that index is inside dy, else +0.0; then dx = acc + bias[ci] where bias is given (used by
// the transposed convolution's forward; null: dx = acc). The divisible taps of an axis are
// k = (q + p) mod s, then every s-th.
//
// args: 0 dy [n, cout, out], 1 w [cout, cin, k], 2 bias [cin] or null, 3 dx [n, cin, in],
// 4.. the shape
KERNEL(conv3d_bwd_input) {
    const float *dy = ARG_PTR(const float, 0);
    const float *w = ARG_PTR(const float, 1);
    const float *bias = ARG_PTR(const float, 2);
    float *dx = ARG_PTR(float, 3);
    conv3d_shape g = conv3d_read_shape(p, 4);
    long long vi = g.in[0] * g.in[1] * g.in[2];
    long long t = pk_global_index();
    if (t >= g.n * g.cin * vi) return;
    long long qw = t % g.in[2];
    long long qh = t / g.in[2] % g.in[1];
    long long qd = t / (g.in[2] * g.in[1]) % g.in[0];
    long long ci = t / vi % g.cin;
    long long n = t / (vi * g.cin);
    long long vo = g.out[0] * g.out[1] * g.out[2];
    long long k3 = g.k[0] * g.k[1] * g.k[2];
    float acc = 0.0f;
    for (long long co = 0; co < g.cout; co++) {
        const float *dyc = dy + (n * g.cout + co) * vo;
        const float *wc = w + (co * g.cin + ci) * k3;
        for (long long a = (qd + g.pad[0]) % g.s[0]; a < g.k[0]; a += g.s[0]) {
            long long td = (qd + g.pad[0] - a) / g.s[0];
            bool in_d = td >= 0 && td < g.out[0];
            for (long long b = (qh + g.pad[1]) % g.s[1]; b < g.k[1]; b += g.s[1]) {
                long long th = (qh + g.pad[1] - b) / g.s[1];
                bool in_dh = in_d && th >= 0 && th < g.out[1];
                for (long long c = (qw + g.pad[2]) % g.s[2]; c < g.k[2]; c += g.s[2]) {
                    long long tw = (qw + g.pad[2] - c) / g.s[2];
                    float v = 0.0f;
                    if (in_dh && tw >= 0 && tw < g.out[2]) {
                        v = dyc[(td * g.out[1] + th) * g.out[2] + tw];
                    }
                    acc = __fmaf_rn(v, wc[(a * g.k[1] + b) * g.k[2] + c], acc);
                }
            }
        }
    }
    if (bias) acc = acc + bias[ci];
    dx[t] = acc;
}

// Weight gradient (reference conv3d_backward_weight_spec), the lanes of the canonical reduction
// of each dw[co, ci, a, b, c] (reduction r, flat in that order) over the P = n * Do * Ho * Wo
// output positions: term i = ((n Do + od) Ho + oh) Wo + ow, chain step
// lane = fma(dy[n, co, od, oh, ow], X, lane) with X the input at (od sd + a - pd, ..), +0.0
// outside. One thread per (r, block, lane), writing partials[(r * nblocks + block) * 16 + lane].
//
// args: 0 x [n, cin, in], 1 dy [n, cout, out], 2 partials, 3.. the shape
KERNEL(conv3d_bwd_weight_lanes) {
    const float *x = ARG_PTR(const float, 0);
    const float *dy = ARG_PTR(const float, 1);
    float *partials = ARG_PTR(float, 2);
    conv3d_shape g = conv3d_read_shape(p, 3);
    long long vo = g.out[0] * g.out[1] * g.out[2];
    long long vi = g.in[0] * g.in[1] * g.in[2];
    long long terms = g.n * vo;
    long long nblocks = (terms + PK_BLOCK - 1) / PK_BLOCK;
    long long k3 = g.k[0] * g.k[1] * g.k[2];
    long long t = pk_global_index();
    if (t >= g.cout * g.cin * k3 * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES % nblocks;
    long long r = t / (PK_LANES * nblocks);
    long long c = r % g.k[2];
    long long b = r / g.k[2] % g.k[1];
    long long a = r / (g.k[2] * g.k[1]) % g.k[0];
    long long ci = r / k3 % g.cin;
    long long co = r / (k3 * g.cin);
    // The first term's position, advanced by PK_LANES terms per step.
    long long i = block * PK_BLOCK + lane;
    long long ow = i % g.out[2];
    long long oh = i / g.out[2] % g.out[1];
    long long od = i / (g.out[2] * g.out[1]) % g.out[0];
    long long n = i / vo;
    float acc = 0.0f;
    for (long long end = pk_block_end(terms, block); i < end; i += PK_LANES) {
        long long id = od * g.s[0] + a - g.pad[0];
        long long ih = oh * g.s[1] + b - g.pad[1];
        long long iw = ow * g.s[2] + c - g.pad[2];
        float v = 0.0f;
        if (id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1] && iw >= 0 && iw < g.in[2]) {
            v = x[(n * g.cin + ci) * vi + (id * g.in[1] + ih) * g.in[2] + iw];
        }
        float d = dy[(n * g.cout + co) * vo + (od * g.out[1] + oh) * g.out[2] + ow];
        acc = __fmaf_rn(d, v, acc);
        ow += PK_LANES;
        conv3d_carry(&ow, g.out[2], &oh);
        conv3d_carry(&oh, g.out[1], &od);
        conv3d_carry(&od, g.out[0], &n);
    }
    partials[t] = acc;
}

// Bias gradient (reference bias_backward), the lanes of the canonical sum of each channel ch of
// dy [n, C, V] over its n * V values: term i = nn * V + v is dy[nn, ch, v], chain step
// lane = lane + term. One thread per (ch, block, lane), as conv3d_bwd_weight_lanes.
//
// args: 0 dy, 1 partials, 2 n, 3 C, 4 V
KERNEL(conv3d_bias_bwd_lanes) {
    const float *dy = ARG_PTR(const float, 0);
    float *partials = ARG_PTR(float, 1);
    long long n = ARG_I64(2);
    long long channels = ARG_I64(3);
    long long vol = ARG_I64(4);
    long long terms = n * vol;
    long long nblocks = (terms + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= channels * nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES % nblocks;
    long long ch = t / (PK_LANES * nblocks);
    long long i = block * PK_BLOCK + lane;
    long long v = i % vol;
    long long nn = i / vol;
    float acc = 0.0f;
    for (long long end = pk_block_end(terms, block); i < end; i += PK_LANES) {
        acc = acc + dy[(nn * channels + ch) * vol + v];
        v += PK_LANES;
        conv3d_carry(&v, vol, &nn);
    }
    partials[t] = acc;
}
