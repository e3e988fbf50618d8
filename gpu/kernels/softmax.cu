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
//
// args: 0 x, 1 p (or 0), 2 logp (or 0), 3 positions N*V, 4 C, 5 V, 6 divisor (f32)
KERNEL(softmax_columns) {
    const float *x = ARG_PTR(const float, 0);
    float *probs = ARG_PTR(float, 1);
    float *logp = ARG_PTR(float, 2);
    long long positions = ARG_I64(3);
    long long classes = ARG_I64(4);
    long long voxels = ARG_I64(5);
    float divisor = ARG_F32(6);
    long long t = pk_global_index();
    if (t >= positions) return;
    long long base = (t / voxels) * classes * voxels + t % voxels;
    float m = __fdiv_rn(x[base], divisor);
    for (long long c = 0; c < classes; c++) {
        m = softmax_max(m, __fdiv_rn(x[base + c * voxels], divisor));
    }
    float total = 0.0f;
    for (long long c = 0; c < classes; c++) {
        float e = pk_exp(__fdiv_rn(x[base + c * voxels], divisor) - m);
        total = total + e;
        if (probs) probs[base + c * voxels] = e;
    }
    if (probs) {
        for (long long c = 0; c < classes; c++) {
            probs[base + c * voxels] = __fdiv_rn(probs[base + c * voxels], total);
        }
    }
    if (logp) {
        float ln_total = pk_ln(total);
        for (long long c = 0; c < classes; c++) {
            logp[base + c * voxels] = (__fdiv_rn(x[base + c * voxels], divisor) - m) - ln_total;
        }
    }
}

// Test hook for pk_exp and pk_ln: e[i] = pk_exp(x[i]), l[i] = pk_ln(x[i]).
//
// args: 0 x, 1 e, 2 l, 3 n
KERNEL(mathfn_map_exp_ln) {
    const float *x = ARG_PTR(const float, 0);
    float *e = ARG_PTR(float, 1);
    float *l = ARG_PTR(float, 2);
    long long n = ARG_I64(3);
    long long i = pk_global_index();
    if (i >= n) return;
    e[i] = pk_exp(x[i]);
    l[i] = pk_ln(x[i]);
}
