// Pixel-wise knowledge distillation (reference losses::kd): the canonical reduction of the loss
// and the student gradient. q, log q, log_softmax(s / T) and softmax(s / T) come from
// softmax_columns (with divisor T).

// The lanes of the one canonical reduction over the flat index e of [N, C, V] (increasing e),
// one thread per (block, lane): acc unchanged where q_e == 0, else
// acc = fma(q_e, log q_e - ls_e, acc) (the difference rounded first); partials[1][nblocks][16].
//
// args: 0 q, 1 log q, 2 ls, 3 partials, 4 n = N*C*V
KERNEL(kd_lanes) {
    const float *q = ARG_PTR(const float, 0);
    const float *log_q = ARG_PTR(const float, 1);
    const float *ls = ARG_PTR(const float, 2);
    float *partials = ARG_PTR(float, 3);
    long long n = ARG_I64(4);
    long long nblocks = (n + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES;
    float acc = 0.0f;
    for (long long e = block * PK_BLOCK + lane; e < pk_block_end(n, block); e += PK_LANES) {
        float qe = q[e];
        if (qe != 0.0f) acc = __fmaf_rn(qe, log_q[e] - ls[e], acc);
    }
    partials[t] = acc;
}

// The student gradient, one thread per element: ds_e = k * (ps_e - q_e), with
// k = (scale / (N*C*V)) / T from the host.
//
// args: 0 ps, 1 q, 2 ds, 3 n, 4 k (f32)
KERNEL(kd_backward) {
    const float *ps = ARG_PTR(const float, 0);
    const float *q = ARG_PTR(const float, 1);
    float *ds = ARG_PTR(float, 2);
    long long n = ARG_I64(3);
    float k = ARG_F32(4);
    long long e = pk_global_index();
    if (e >= n) return;
    ds[e] = k * (ps[e] - q[e]);
}
