// Adam's per-element update (reference adam::AdamScalars::update), the step's scalars
// computed on the host (AdamScalars::for_step). Per element, in this order:
// g = fma(weight_decay, p, grad); m' = fma(1 - beta1, g - m, m);
// v' = fma((1 - beta2) * g, g, beta2 * v); denom = sqrt(v') / bc2_sqrt + eps;
// p' = fma(-step_size, m' / denom, p).
KERNEL(adam_update_elements, adam_update_elements) {
    long long t = pk_global_index();
    if (t >= p.n) return;
    float pv = p.param[t];
    float g = __fmaf_rn(p.weight_decay, pv, p.grad[t]);
    float mv = __fmaf_rn(p.one_minus_b1, g - p.m[t], p.m[t]);
    float vv = __fmaf_rn(p.one_minus_b2 * g, g, p.beta2 * p.v[t]);
    float denom = __fdiv_rn(__fsqrt_rn(vv), p.bc2_sqrt) + p.eps;
    p.p_out[t] = __fmaf_rn(-p.step_size, __fdiv_rn(mv, denom), pv);
    p.m_out[t] = mv;
    p.v_out[t] = vv;
}
