// Pixel-wise knowledge distillation (reference losses::kd): the canonical reduction of the loss
// and the student gradient. q, log q, log_softmax(s / T) and softmax(s / T) come from
// softmax_columns (with divisor T).

// The lanes of the one canonical reduction over the flat index e of [N, C, V] (increasing e),
// one thread per (block, lane): acc unchanged where q_e == 0, else
// acc = fma(q_e, log q_e - ls_e, acc) (the difference rounded first); partials[1][nblocks][16].
KERNEL(kd_lanes, kd_lanes) {
    long long nblocks = (p.n + PK_BLOCK - 1) / PK_BLOCK;
    long long t = pk_global_index();
    if (t >= nblocks * PK_LANES) return;
    long long lane = t % PK_LANES;
    long long block = t / PK_LANES;
    float acc = 0.0f;
    for (long long e = block * PK_BLOCK + lane; e < pk_block_end(p.n, block); e += PK_LANES) {
        float qe = p.q[e];
        if (qe != 0.0f) acc = __fmaf_rn(qe, p.log_q[e] - p.ls[e], acc);
    }
    p.partials[t] = acc;
}

// The student gradient, one thread per element: ds_e = k * (ps_e - q_e), with
// k = (scale / (N*C*V)) / T from the host.
KERNEL(kd_backward, kd_backward) {
    long long e = pk_global_index();
    if (e >= p.n) return;
    p.ds[e] = p.k * (p.ps[e] - p.q[e]);
}
