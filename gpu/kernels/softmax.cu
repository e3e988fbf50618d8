// Softmax and log-softmax over the class axis of [N, C, V] (reference layers::softmax), one
// thread per position (n, v), v fastest; and the mathfn test hook.

// Rust's f32::max: the other operand where one is NaN, else the larger (the sign of a zero
// maximum never reaches an output: s - m is then +-0 and exp(+-0) = 1, and ln S > 0).
__device__ __forceinline__ float softmax_max(float a, float b) {
    if (a != a) return b;
    if (b != b) return a;
    return a > b ? a : b;
}

// Per position, classes ascending, s_c = x_c / divisor (IEEE; x / 1 is x exactly, so divisor 1
// is the plain softmax, and KD passes its temperature): m = fold(s_0, max) over s_c;
// e_c = pk_exp(s_c - m); S = ((0 + e_0) + e_1) + ...; p_c = e_c / S;
// logp_c = (s_c - m) - pk_ln(S). Either output pointer may be 0 (not computed).
KERNEL(softmax_columns, softmax_columns) {
    long long t = pk_global_index();
    if (t >= p.positions) return;
    long long base = (t / p.voxels) * p.classes * p.voxels + t % p.voxels;
    float m = __fdiv_rn(p.x[base], p.divisor);
    for (long long c = 0; c < p.classes; c++) {
        m = softmax_max(m, __fdiv_rn(p.x[base + c * p.voxels], p.divisor));
    }
    float total = 0.0f;
    for (long long c = 0; c < p.classes; c++) {
        float e = pk_exp(__fdiv_rn(p.x[base + c * p.voxels], p.divisor) - m);
        total = total + e;
        if (p.probs) p.probs[base + c * p.voxels] = e;
    }
    if (p.probs) {
        for (long long c = 0; c < p.classes; c++) {
            p.probs[base + c * p.voxels] = __fdiv_rn(p.probs[base + c * p.voxels], total);
        }
    }
    if (p.logp) {
        float ln_total = pk_ln(total);
        for (long long c = 0; c < p.classes; c++) {
            long long at = base + c * p.voxels;
            p.logp[at] = (__fdiv_rn(p.x[at], p.divisor) - m) - ln_total;
        }
    }
}

// Test hook for pk_exp and pk_ln: e[i] = pk_exp(x[i]), l[i] = pk_ln(x[i]).
KERNEL(mathfn_map_exp_ln, mathfn_map_exp_ln) {
    long long i = pk_global_index();
    if (i >= p.n) return;
    p.e[i] = pk_exp(p.x[i]);
    p.l[i] = pk_ln(p.x[i]);
}
