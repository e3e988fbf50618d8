// Adam's per-element update (reference adam::AdamScalars::update), the step's scalars
// computed on the host (AdamScalars::for_step). Per element, in this order:
// g = fma(weight_decay, p, grad); m' = fma(1 - beta1, g - m, m);
// v' = fma((1 - beta2) * g, g, beta2 * v); denom = sqrt(v') / bc2_sqrt + eps;
// p' = fma(-step_size, m' / denom, p).
//
// args: 0 p, 1 grad, 2 m, 3 v, 4 p out, 5 m out, 6 v out, 7 n, 8 step_size, 9 bc2_sqrt,
//       10 1 - beta1, 11 1 - beta2, 12 beta2, 13 eps, 14 weight_decay
KERNEL(adam_update_elements) {
    const float *param = ARG_PTR(const float, 0);
    const float *grad = ARG_PTR(const float, 1);
    const float *m = ARG_PTR(const float, 2);
    const float *v = ARG_PTR(const float, 3);
    float *p_out = ARG_PTR(float, 4);
    float *m_out = ARG_PTR(float, 5);
    float *v_out = ARG_PTR(float, 6);
    long long n = ARG_I64(7);
    float step_size = ARG_F32(8);
    float bc2_sqrt = ARG_F32(9);
    float one_minus_b1 = ARG_F32(10);
    float one_minus_b2 = ARG_F32(11);
    float beta2 = ARG_F32(12);
    float eps = ARG_F32(13);
    float weight_decay = ARG_F32(14);
    long long t = pk_global_index();
    if (t >= n) return;
    float pv = param[t];
    float g = __fmaf_rn(weight_decay, pv, grad[t]);
    float mv = __fmaf_rn(one_minus_b1, g - m[t], m[t]);
    float vv = __fmaf_rn(one_minus_b2 * g, g, beta2 * v[t]);
    float denom = __fdiv_rn(__fsqrt_rn(vv), bc2_sqrt) + eps;
    p_out[t] = __fmaf_rn(-step_size, __fdiv_rn(mv, denom), pv);
    m_out[t] = mv;
    v_out[t] = vv;
}
